"""Dataset uploads, upload history and rows.

The upload body is streamed to a temporary file as it arrives (``@web.stream_request_body``,
written in 1 MB batches from a worker thread) and the multipart form is parsed from disk, so a
large file is never held in memory twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import IO, Any

from jupyter_core.utils import ensure_async
from tornado import web
from tornado.http1connection import HTTP1Connection

from ..errors import BadRequest, TooLarge, check_name, format_size
from ..ingest.market import date_range
from ..ingest.multipart import FormData, parse_multipart
from ..ingest.queries import get_upload, list_kinds, list_rows, list_uploads
from ..ingest.read import file_format
from ..ingest.schemas import get_kind
from ..ingest.service import UploadRequest
from .base import AUTH_RESOURCE, EnergyOpsHandler, allow

MULTIPART_SLACK = 64 * 1024
_FLUSH_BYTES = 1 << 20
OPTIONS = ("sheet", "mode", "dry_run", "strict")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@web.stream_request_body
class DatasetUploadsHandler(EnergyOpsHandler):
    """POST a file (streamed to disk), GET the upload history of a kind."""

    _spool: IO[bytes] | None = None
    _spool_path: Path | None = None
    _pending: list[bytes]
    _received = 0
    _parts: list[Path]

    async def prepare(self) -> None:  # type: ignore[override]
        self._pending, self._parts = [], []
        await super().prepare()
        if self.request.method != "POST":
            return
        user = self.current_user
        if not user or not await ensure_async(
            self.authorizer.is_authorized(self, user, "write", AUTH_RESOURCE)
        ):
            raise web.HTTPError(
                403, f"User is not authorized to write on resource: {AUTH_RESOURCE}."
            )
        get_kind(self.path_args[0])
        limit = self.services.settings.max_upload_bytes
        length = int(self.request.headers.get("Content-Length") or 0)
        if length > limit + MULTIPART_SLACK:
            raise TooLarge(
                f"the upload is {format_size(length)}; the limit is {format_size(limit)}",
                details={"limit": limit},
            )
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)
        connection.set_max_body_size(limit + MULTIPART_SLACK)
        spool_dir = self.services.settings.data_dir / "tmp"
        self._spool = await asyncio.to_thread(_open_spool, spool_dir)
        self._spool_path = Path(self._spool.name)

    async def data_received(self, chunk: bytes) -> None:
        if self._spool is None:
            return
        self._received += len(chunk)
        limit = self.services.settings.max_upload_bytes
        if self._received > limit + MULTIPART_SLACK:
            raise TooLarge(
                f"the upload is over {format_size(self._received)}; the limit is "
                f"{format_size(limit)}",
                details={"limit": limit},
            )
        self._pending.append(chunk)
        if sum(map(len, self._pending)) >= _FLUSH_BYTES:
            await self._flush_spool()

    async def _flush_spool(self) -> None:
        data, self._pending = b"".join(self._pending), []
        if data and self._spool is not None:
            await asyncio.to_thread(self._spool.write, data)

    @allow("read")
    async def get(self, kind_name: str) -> None:
        kind = get_kind(kind_name)
        limit, offset = self.page_args()
        self.write_json(await self.services.db.read(lambda s: list_uploads(s, kind, limit, offset)))

    @allow("write")
    async def post(self, kind_name: str) -> None:
        kind = get_kind(kind_name)
        await self._flush_spool()
        assert self._spool is not None and self._spool_path is not None
        await asyncio.to_thread(self._spool.close)
        form = await asyncio.to_thread(
            parse_multipart,
            self._spool_path,
            self.request.headers.get("Content-Type", ""),
            self._spool_path.parent,
        )
        self._parts = [f.path for f in form.files]
        request = self._upload_request(kind.name, form)
        report = await self.services.ingest.upload(request)
        self.write_json(report, 201)

    def _upload_request(self, kind: str, form: FormData) -> UploadRequest:
        parts = [f for f in form.files if f.name == "file"]
        if not parts:
            raise BadRequest(
                "no file: send the dataset as a multipart part named 'file'",
                code="missing_file",
                details={"field": "file"},
            )
        part = parts[0]
        check_name(part.filename, "filename")
        file_format(part.filename)  # a wrong extension is a 415 before anything is stored
        limit = self.services.settings.max_upload_bytes
        if part.size > limit:
            raise TooLarge(
                f"the file is {format_size(part.size)}; the limit is {format_size(limit)}",
                details={"limit": limit},
            )
        values = {**form.fields}
        for name in OPTIONS:
            query = self.get_query_argument(name, None)
            if query is not None:
                values[name] = query
        sheet = values.pop("sheet", None) or None
        if sheet is not None:
            check_name(sheet, "sheet")
        return UploadRequest(
            kind=kind,
            path=part.path,
            filename=part.filename,
            user=self.user_name,
            sheet=sheet,
            mode=(values.pop("mode", None) or "upsert").strip().lower(),
            dry_run=_flag("dry_run", values.pop("dry_run", None)),
            strict=_flag("strict", values.pop("strict", None)),
            defaults={k: v.strip() for k, v in values.items() if v.strip()},
        )

    def on_finish(self) -> None:
        self._cleanup()

    def on_connection_close(self) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        paths = [p for p in [self._spool_path, *self._parts] if p is not None]
        spool, self._spool, self._spool_path, self._parts = self._spool, None, None, []
        if paths or spool is not None:
            asyncio.get_running_loop().run_in_executor(None, _remove, spool, paths)


def _open_spool(directory: Path) -> IO[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    return tempfile.NamedTemporaryFile(dir=directory, prefix="upload-body-", delete=False)


def _remove(spool: IO[bytes] | None, paths: list[Path]) -> None:
    if spool is not None:
        spool.close()
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _flag(name: str, raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(
        f"{name} must be true or false, got {raw!r}",
        code="invalid_parameter",
        details={"field": name},
    )


class DatasetsHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self) -> None:
        self.write_json(await self.services.db.read(list_kinds))


class UploadHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, upload_id: str) -> None:
        uid = int(upload_id)
        self.write_json(await self.services.db.read(lambda s: get_upload(s, uid)))


class DatasetRowsHandler(EnergyOpsHandler):
    @allow("read")
    async def get(self, kind_name: str) -> None:
        kind = get_kind(kind_name)
        span = date_range(
            None, self.get_query_argument("from", None), self.get_query_argument("to", None)
        )
        limit = self.int_arg("limit", 100, minimum=1, maximum=5000)
        assert limit is not None
        cursor = self.get_query_argument("cursor", None) or None
        filters: dict[str, Any] = {}
        for key in kind.key:
            if key == "date":
                continue
            raw = self.get_query_argument(key, None)
            if raw is not None:
                filters[key] = self.int_arg(key, minimum=1, maximum=96) if key == "block" else raw
        self.write_json(
            await self.services.db.read(lambda s: list_rows(s, kind, span, filters, limit, cursor))
        )


routes = [
    (r"/datasets", DatasetsHandler),
    (r"/datasets/([^/]+)/uploads", DatasetUploadsHandler),
    (r"/datasets/([^/]+)/rows", DatasetRowsHandler),
    (r"/uploads/(\d+)", UploadHandler),
]
