"""A client for the EnergyOps REST API, usable from any kernel (Lab, Voila, a script).

It finds the server from ``ENERGYOPS_URL`` / ``ENERGYOPS_TOKEN`` (exported by the extension to
the kernels it starts, passed by ``jupyter energyops up`` to Voila) or from the Jupyter servers
running on this machine. Tabular answers come back as pandas DataFrames; every error is an
:class:`EnergyOpsAPIError` carrying the API's status, code and message.
"""

from __future__ import annotations

import json
import mimetypes
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pandas as pd

from .format import display_zone, use_display_zone, zone_from_health

if TYPE_CHECKING:
    from .events import EventStream

API = "energyops/api/"
FINISHED = frozenset({"succeeded", "failed", "killed", "timed_out", "lost"})

FileArg = str | os.PathLike[str] | bytes | IO[bytes]


class EnergyOpsAPIError(Exception):
    """An error answer of the API (or no answer at all: status 0, code ``unreachable``)."""

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})


@dataclass(frozen=True)
class ServerInfo:
    url: str
    token: str


def _normal_url(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def find_server(url: str | None = None, token: str | None = None) -> ServerInfo:
    """The server to talk to: arguments, then the environment, then running Jupyter servers."""
    url = url or os.environ.get("ENERGYOPS_URL")
    token = token if token is not None else os.environ.get("ENERGYOPS_TOKEN")
    if url:
        return ServerInfo(_normal_url(url), token or "")
    for info in _running_servers():
        candidate = ServerInfo(_normal_url(str(info.get("url", ""))), str(info.get("token", "")))
        if _answers_health(candidate):
            return candidate
    raise EnergyOpsAPIError(
        0,
        "no_server",
        "no EnergyOps server found: set ENERGYOPS_URL (and ENERGYOPS_TOKEN) or start "
        "`jupyter energyops up`",
    )


def _running_servers() -> list[dict[str, Any]]:
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return []
    return list(list_running_servers())


def _answers_health(server: ServerInfo) -> bool:
    request = urllib.request.Request(
        server.url + API + "health", headers=_auth_headers(server.token)
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"} if token else {}


def encode_multipart(
    fields: Mapping[str, Any], files: Mapping[str, tuple[str, bytes]]
) -> tuple[bytes, str]:
    """``multipart/form-data`` body and its Content-Type. ``files``: field → (filename, bytes).

    The file name goes out percent-escaped of quotes and line breaks so it cannot break the
    part headers; the server checks it again."""
    boundary = "energyops-" + secrets.token_hex(16)
    parts: list[bytes] = []
    for name, value in fields.items():
        if value is None:
            continue
        text = json.dumps(value) if isinstance(value, dict | list) else _form_text(value)
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'
        parts.append(head.encode() + text.encode("utf-8") + b"\r\n")
    for name, (filename, content) in files.items():
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"; '
                f'filename="{_quote(filename)}"\r\nContent-Type: {ctype}\r\n\r\n'
            ).encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _form_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _read_file(file: FileArg, filename: str | None) -> tuple[str, bytes]:
    if isinstance(file, bytes):
        if not filename:
            raise ValueError("filename= is required when the file is given as bytes")
        return filename, file
    if isinstance(file, str | os.PathLike):
        path = Path(file)
        return filename or path.name, path.read_bytes()
    content = file.read()
    return filename or Path(str(getattr(file, "name", "upload"))).name, content


def _date_params(
    day: date | str | None, start: date | str | None, end: date | str | None
) -> dict[str, str]:
    params: dict[str, str] = {}
    if day is not None:
        params["date"] = str(day)
    if start is not None:
        params["from"] = str(start)
    if end is not None:
        params["to"] = str(end)
    return params


def _frame(items: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(list(items))


def _items(answer: Any) -> list[dict[str, Any]]:
    if isinstance(answer, list):
        return answer
    for key in ("items", "rows", "lines"):
        if isinstance(answer, dict) and isinstance(answer.get(key), list):
            return list(answer[key])
    return []


class EnergyOpsClient:
    """The REST API as Python calls; ``events()`` opens the live event stream."""

    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0
    ) -> None:
        server = find_server(url, token)
        self.url = server.url
        self.token = server.token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"EnergyOpsClient({self.url!r})"

    # --- transport ---

    def api_url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        url = self.url + API + path.lstrip("/")
        query = {k: _form_text(v) for k, v in (params or {}).items() if v is not None}
        return url + ("?" + urllib.parse.urlencode(query) if query else "")

    def request_raw(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        headers = _auth_headers(self.token)
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(
            self.api_url(path, params), data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as exc:
            raise _api_error(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EnergyOpsAPIError(
                0, "unreachable", f"{method} {path}: server not reachable ({reason})"
            ) from None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        _status, _headers, content = self.request_raw(method, path, **kwargs)
        return json.loads(content) if content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def _upload(
        self, path: str, file: FileArg, filename: str | None, fields: Mapping[str, Any]
    ) -> Any:
        name, content = _read_file(file, filename)
        body, ctype = encode_multipart(fields, {"file": (name, content)})
        return self.request("POST", path, body=body, content_type=ctype)

    # --- health, feeds ---

    def health(self) -> dict[str, Any]:
        return dict(self.get("health"))

    def display_zone(self) -> ZoneInfo:
        """The zone the server's ``display_timezone`` names (from /health), made the zone in
        which this kernel's tables and cards show times. A server that cannot be asked now
        leaves the zone as it is: a dashboard still opens, and says it is offline."""
        try:
            health = self.health()
        except EnergyOpsAPIError:
            return display_zone()
        return use_display_zone(zone_from_health(health))

    def activities(self, limit: int = 50, **params: Any) -> pd.DataFrame:
        return _frame(_items(self.get("activities", limit=limit, **params)))

    def notifications(self, limit: int = 50, **params: Any) -> pd.DataFrame:
        return _frame(_items(self.get("notifications", limit=limit, **params)))

    def mark_notification(
        self, notification_id: int, *, is_read: bool | None = None, is_archived: bool | None = None
    ) -> dict[str, Any]:
        change = {
            k: v for k, v in (("is_read", is_read), ("is_archived", is_archived)) if v is not None
        }
        return dict(self.request("PATCH", f"notifications/{notification_id}", json_body=change))

    # --- datasets and market ---

    def datasets(self) -> Any:
        return self.get("datasets")

    def upload_dataset(
        self,
        kind: str,
        file: FileArg,
        *,
        filename: str | None = None,
        sheet: str | None = None,
        mode: str | None = None,
        dry_run: bool = False,
        strict: bool = False,
        **defaults: Any,
    ) -> dict[str, Any]:
        """Upload a dataset file; returns the upload report (rows read/inserted/rejected …)."""
        fields = {"sheet": sheet, "mode": mode, "dry_run": dry_run, "strict": strict, **defaults}
        return dict(self._upload(f"datasets/{kind}/uploads", file, filename, fields))

    def uploads(self, kind: str, **params: Any) -> pd.DataFrame:
        return _frame(_items(self.get(f"datasets/{kind}/uploads", **params)))

    def upload_report(self, upload_id: int) -> dict[str, Any]:
        return dict(self.get(f"uploads/{upload_id}"))

    def dataset_rows(self, kind: str, **params: Any) -> pd.DataFrame:
        """Rows of a dataset (``from``/``to`` may be given as ``start``/``end``), every page."""
        params = {**params}
        if "start" in params:
            params["from"] = params.pop("start")
        if "end" in params:
            params["to"] = params.pop("end")
        rows: list[dict[str, Any]] = []
        while True:
            answer = self.get(f"datasets/{kind}/rows", **params)
            rows.extend(_items(answer))
            cursor = answer.get("next_cursor") if isinstance(answer, dict) else None
            if not cursor:
                return _frame(rows)
            params["cursor"] = cursor

    def market_snapshot(
        self,
        day: date | str | None = None,
        *,
        start: date | str | None = None,
        end: date | str | None = None,
    ) -> pd.DataFrame:
        return _frame(_items(self.get("market/snapshot", **_date_params(day, start, end))))

    def market_stats(
        self,
        day: date | str | None = None,
        *,
        start: date | str | None = None,
        end: date | str | None = None,
    ) -> dict[str, Any]:
        return dict(self.get("market/stats", **_date_params(day, start, end)))

    def market_stats_frame(self, day: date | str | None = None, **kwargs: Any) -> pd.DataFrame:
        return pd.DataFrame([self.market_stats(day, **kwargs)])

    def market_export(
        self,
        day: date | str | None = None,
        *,
        start: date | str | None = None,
        end: date | str | None = None,
        format: str = "csv",
    ) -> bytes:
        params = {"format": format, **_date_params(day, start, end)}
        return self.request_raw("GET", "market/export", params=params)[2]

    # --- scripts ---

    def scripts(self, **params: Any) -> pd.DataFrame:
        return _frame(_items(self.get("scripts", **params)))

    def script(self, script_id: int) -> dict[str, Any]:
        return dict(self.get(f"scripts/{script_id}"))

    def script_source(self, script_id: int) -> str:
        return self.request_raw("GET", f"scripts/{script_id}/source")[2].decode("utf-8")

    def upload_script(
        self,
        file: FileArg,
        *,
        filename: str | None = None,
        kind: str = "model",
        model_type: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        fields = {"kind": kind, "model_type": model_type, "description": description}
        return dict(self._upload("scripts", file, filename, fields))

    def update_script(self, script_id: int, **changes: Any) -> dict[str, Any]:
        return dict(self.request("PATCH", f"scripts/{script_id}", json_body=changes))

    def archive_script(self, script_id: int) -> dict[str, Any]:
        return self.update_script(script_id, status="archived")

    def delete_script(self, script_id: int, *, force: bool = False) -> None:
        self.request("DELETE", f"scripts/{script_id}", params={"force": force or None})

    # --- runs ---

    def start_run(
        self,
        script_id: int,
        *,
        args: Iterable[str] = (),
        config: Mapping[str, Any] | None = None,
        inputs: Any = None,
        timeout_s: int | None = None,
        priority: int | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"args": list(args), "config": dict(config or {})}
        for key, value in (
            ("inputs", inputs),
            ("timeout_s", timeout_s),
            ("priority", priority),
            ("parameters", dict(parameters) if parameters is not None else None),
        ):
            if value is not None:
                body[key] = value
        return dict(self.request("POST", f"scripts/{script_id}/runs", json_body=body))

    def runs(self, **params: Any) -> pd.DataFrame:
        return _frame(_items(self.get("runs", **params)))

    def run(self, run_id: int) -> dict[str, Any]:
        return dict(self.get(f"runs/{run_id}"))

    def kill_run(self, run_id: int) -> dict[str, Any]:
        return dict(self.request("DELETE", f"runs/{run_id}") or {})

    def stop_run(self, run_id: int) -> dict[str, Any]:
        """Ask the model to stop and keep its best solution (POST /runs/{id}/stop)."""
        return dict(self.request("POST", f"runs/{run_id}/stop") or {})

    def compare_runs(self, a: int, b: int) -> dict[str, Any]:
        return dict(self.get("runs/compare", ids=f"{a},{b}"))

    def run_notebook(self, run_id: int, fmt: str = "ipynb") -> bytes:
        """The executed notebook of a notebook run: ipynb bytes, or sanitized HTML."""
        return self.request_raw("GET", f"runs/{run_id}/notebook", params={"format": fmt})[2]

    def wait_run(self, run_id: int, timeout: float = 300.0, poll: float = 0.5) -> dict[str, Any]:
        """Poll until the run has finished; returns it. TimeoutError past ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run.get("status") in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run.get('status')} after {timeout} s")
            time.sleep(poll)

    def logs(
        self, run_id: int, *, after: int = 0, limit: int = 1000, **params: Any
    ) -> pd.DataFrame:
        return _frame(_items(self.get(f"runs/{run_id}/logs", after=after, limit=limit, **params)))

    def log_text(self, run_id: int) -> str:
        content = self.request_raw("GET", f"runs/{run_id}/logs", params={"format": "text"})[2]
        return content.decode("utf-8", "replace")

    def artifacts(self, run_id: int) -> pd.DataFrame:
        return _frame(_items(self.get(f"runs/{run_id}/artifacts")))

    def artifact(self, run_id: int, name: str) -> bytes:
        quoted = urllib.parse.quote(name, safe="")
        return self.request_raw("GET", f"runs/{run_id}/artifacts/{quoted}")[2]

    # --- live events ---

    def events(
        self, topics: Iterable[str] = (), since: Mapping[str, int] | None = None
    ) -> EventStream:
        """A started :class:`EventStream` on ``topics`` (its own thread; call ``close()``)."""
        from .events import EventStream

        stream = EventStream(self.url, self.token, topics, since=since)
        stream.start()
        return stream


def _api_error(status: int, content: bytes) -> EnergyOpsAPIError:
    try:
        error = json.loads(content)["error"]
        return EnergyOpsAPIError(
            int(error.get("status", status)),
            str(error.get("code", "error")),
            str(error.get("message", "")),
            error.get("details"),
        )
    except (ValueError, KeyError, TypeError):
        text = content.decode("utf-8", "replace").strip()[:300]
        return EnergyOpsAPIError(status, "http_error", text or f"HTTP {status}")
