"""The security rules of API.md against a live server per database: names that could be paths,
traversal on artifact routes, symlinks a run leaves behind, xlsx zip bombs, formula injection
in exports, text served as text, and tokens kept out of the server log."""

from __future__ import annotations

import csv
import io
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import requests
import websocket

from ..conftest import BACKENDS
from .conftest import OPERATOR_TOKEN
from .seed import MARKET_CSV, post, seed, upload_script, wait_run
from .servers import LiveServer, live_server

UPLOAD = "datasets/market-snapshot/uploads"
PATH_NAMES = ["../evil", "sub/evil", "sub\\evil", "ev\x00il", "..", "a/../../evil"]
PASSWD_MARK = b"root:"
GiB = 1 << 30


@dataclass
class Env:
    server: LiveServer
    symlink_run: int
    bombs: dict[str, Path]


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp(f"security-{request.param}")
    bombs = {
        "honest": zip_bomb(root / "honest.xlsx", declared_truthfully=True),
        "lying": zip_bomb(root / "lying.xlsx", declared_truthfully=False),
    }
    with live_server(
        root / "server",
        request.param,
        energyops={"max_upload_bytes": 20_000_000},
        server_app={"log_level": "DEBUG"},
    ) as server:
        seed(server)
        script = upload_script(server, "test_links.py", LINKS_SCRIPT)
        run = post(server, f"scripts/{script['id']}/runs", json={}).json()
        assert wait_run(server, run["id"])["status"] == "succeeded"
        yield Env(server, run["id"], bombs)


LINKS_SCRIPT = b"""import os, pathlib
out = pathlib.Path(os.environ["ENERGYOPS_OUTPUT_DIR"])
out.mkdir(parents=True, exist_ok=True)
(out / "ok.txt").write_text("fine")
(out / "passwd").symlink_to("/etc/passwd")
(out / "etc").symlink_to("/etc")
(out / "inner").symlink_to(out / "ok.txt")
print("links made")
"""


def get(server: LiveServer, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(server.url(path), headers=server.headers, timeout=30, **kwargs)


def multipart(
    filename: bytes, content: bytes, fields: dict[str, str] | None = None
) -> tuple[bytes, str]:
    """A multipart body with the filename bytes exactly as given (clients escape NUL, quotes
    and backslashes; an attacker need not)."""
    boundary = "energyopsboundary7d2f"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in (fields or {}).items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="'.encode()
        + filename
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + content
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post_raw(server: LiveServer, path: str, body: bytes, content_type: str) -> requests.Response:
    headers = {**server.headers, "Content-Type": content_type}
    return requests.post(server.url(path), data=body, headers=headers, timeout=60)


def assert_refused(
    response: requests.Response, what: str, statuses: tuple[int, ...] = (400,)
) -> None:
    assert response.status_code in statuses, f"{what}: {response.status_code} {response.text}"
    assert response.json()["error"]["status"] == response.status_code
    assert PASSWD_MARK not in response.content


# --- names that could be paths ---


@pytest.mark.parametrize("name", PATH_NAMES, ids=repr)
def test_upload_names_that_are_paths_are_400(env: Env, name: str) -> None:
    server = env.server
    raw = name.encode()
    script, ctype = multipart(raw + b"_test.py", b"print(1)\n", {"kind": "test"})
    assert_refused(post_raw(server, "scripts", script, ctype), f"script file {name!r}")
    data, ctype = multipart(raw + b".csv", MARKET_CSV)
    assert_refused(post_raw(server, UPLOAD, data, ctype), f"dataset file {name!r}")
    data, ctype = multipart(b"market.csv", MARKET_CSV, {"sheet": name})
    assert_refused(post_raw(server, UPLOAD, data, ctype), f"sheet {name!r}")
    sheet = requests.post(
        server.url(UPLOAD),
        headers=server.headers,
        params={"sheet": name},
        files={"file": ("market.xlsx", MARKET_CSV)},
        timeout=30,
    )
    # Tornado strips control characters from query arguments: a NUL never reaches the check.
    assert_refused(sheet, f"sheet {name!r} in the query", (400,) if "\x00" not in name else (422,))


def test_rfc2231_encoded_filenames_are_decoded_before_the_check(env: Env) -> None:
    for path in ("scripts", UPLOAD):
        boundary = "b0undary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f"filename*=UTF-8''..%2F..%2Fevil_test.py\r\n\r\nprint(1)\r\n--{boundary}--\r\n"
        ).encode()
        response = post_raw(env.server, path, body, f"multipart/form-data; boundary={boundary}")
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        assert response.status_code not in (200, 201)


TRAVERSALS = [
    "..%2F..%2Fetc%2Fpasswd",
    "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "..%5C..%5Cetc%5Cpasswd",
    "%2Fetc%2Fpasswd",
    "passwd%00.txt",
    "..",
    "%2e%2e",
    "etc%2Fpasswd",
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_artifact_traversal_is_refused(env: Env, name: str) -> None:
    for run_id in (1, env.symlink_run):
        url = f"{env.server.url(f'runs/{run_id}/artifacts')}/{name}"
        response = requests.get(url, headers=env.server.headers, timeout=10)
        assert response.status_code in (400, 404), (name, response.status_code)
        assert PASSWD_MARK not in response.content


def test_symlinks_a_run_leaves_are_not_served(env: Env) -> None:
    run = env.symlink_run
    ok = get(env.server, f"runs/{run}/artifacts/ok.txt")
    assert ok.status_code == 200 and ok.content == b"fine"
    assert ok.headers["Content-Type"] == "application/octet-stream"
    assert ok.headers["X-Content-Type-Options"] == "nosniff"
    assert ok.headers["Content-Disposition"].startswith("attachment")
    for name in ("passwd", "etc", "inner"):
        response = get(env.server, f"runs/{run}/artifacts/{name}")
        assert_refused(response, f"symlink {name}", (404,))
    listing = get(env.server, f"runs/{run}/artifacts").json()["items"]
    for item in listing:
        served = get(env.server, f"runs/{run}/artifacts/{item['name']}")
        assert served.status_code == 200, f"listed but not served: {item}"
        assert PASSWD_MARK not in served.content


def test_text_is_served_as_text(env: Env) -> None:
    log = get(env.server, "runs/1/logs", params={"format": "text"})
    assert log.status_code == 200
    assert log.headers["Content-Type"].startswith("text/plain")
    assert log.headers["X-Content-Type-Options"] == "nosniff"
    source = get(env.server, "scripts/1/source")
    assert source.headers["Content-Type"].startswith("text/plain")
    assert source.headers["X-Content-Type-Options"] == "nosniff"


def test_runs_do_not_see_the_server_token(env: Env) -> None:
    server = env.server
    script = upload_script(server, "test_environ.py", ENVIRON_SCRIPT)
    run = post(server, f"scripts/{script['id']}/runs", json={}).json()
    assert wait_run(server, run["id"])["status"] == "succeeded"
    log = get(server, f"runs/{run['id']}/logs", params={"format": "text"}).text
    assert "ENERGYOPS_RUN_ID=" in log
    assert server.token not in log
    assert "ENERGYOPS_TOKEN" not in log and "JUPYTER" not in log


ENVIRON_SCRIPT = b"""import os
for key, value in sorted(os.environ.items()):
    print(f"{key}={value}")
"""


# --- zip bombs ---


def zip_bomb(path: Path, *, declared_truthfully: bool, unpacked: int = 2 * GiB) -> Path:
    """An xlsx-shaped archive whose sheet XML inflates to ``unpacked`` bytes of blanks. Built
    from one deflate block repeated (a full flush resets the compressor, so the same bytes
    decode again and again): seconds to make, ~2 MB on disk. The lying variant's directory
    claims the sheet is 1 KB."""
    chunk_size = 1 << 20
    head = b'<?xml version="1.0"?><worksheet><sheetData>'
    tail = b"</sheetData></worksheet>"
    blanks = b" " * chunk_size
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(blanks) + compressor.flush(zlib.Z_FULL_FLUSH)
    last = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
    count = (unpacked - len(head) - len(tail)) // chunk_size
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(blanks, crc)
    crc = zlib.crc32(tail, crc)
    size = len(head) + count * chunk_size + len(tail)
    sheet = (first, block, count, last)
    entries: list[tuple[str, Any, int, int]] = [
        ("[Content_Types].xml", CONTENT_TYPES, 0, 0),
        ("_rels/.rels", RELS, 0, 0),
        ("xl/workbook.xml", WORKBOOK, 0, 0),
        ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS, 0, 0),
        ("xl/worksheets/sheet1.xml", sheet, crc, size if declared_truthfully else 1024),
    ]
    with path.open("wb") as fh:
        write_zip(fh, entries)
    return path


def write_zip(fh: io.BufferedWriter, entries: list[tuple[str, Any, int, int]]) -> None:
    central = []
    for name, content, crc, size in entries:
        if isinstance(content, bytes):
            crc, size = zlib.crc32(content), len(content)
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            pieces: list[bytes] = [compressor.compress(content) + compressor.flush()]
            repeat = (b"", 0)
        else:
            first, block, count, last = content
            pieces, repeat = [first], (block, count)
        compressed = sum(map(len, pieces)) + len(repeat[0]) * repeat[1]
        if not isinstance(content, bytes):
            compressed += len(last)
        offset = fh.tell()
        encoded = name.encode()
        fh.write(
            struct.pack(
                "<4s5H3L2H",
                b"PK\x03\x04",
                20,
                0,
                8,
                0,
                0x21,
                crc,
                compressed,
                size,
                len(encoded),
                0,
            )
        )
        fh.write(encoded)
        for piece in pieces:
            fh.write(piece)
        for _ in range(repeat[1]):
            fh.write(repeat[0])
        if not isinstance(content, bytes):
            fh.write(last)
        central.append(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0,
                8,
                0,
                0x21,
                crc,
                compressed,
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + encoded
        )
    start = fh.tell()
    directory = b"".join(central)
    fh.write(directory)
    fh.write(
        struct.pack(
            "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), start, 0
        )
    )


CONTENT_TYPES = (
    b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    b'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-'
    b'package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
    b'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
    b'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.'
    b'worksheet+xml"/></Types>'
)
RELS = (
    b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
    b'2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    b'officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
    b"</Relationships>"
)
WORKBOOK = (
    b'<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
    b'2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    b'<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
    b'2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    b'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    b"</Relationships>"
)


@pytest.mark.parametrize("variant", ["honest", "lying"])
def test_zip_bomb_is_413_fast_and_the_server_stays_up(env: Env, variant: str) -> None:
    bomb = env.bombs[variant]
    assert bomb.stat().st_size < 4_500_000
    started = time.monotonic()
    with bomb.open("rb") as fh:
        response = requests.post(
            env.server.url(UPLOAD),
            headers=env.server.headers,
            files={"file": ("bomb.xlsx", fh)},
            timeout=60,
        )
    elapsed = time.monotonic() - started
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"].endswith("too_large")
    assert elapsed < 10, f"refusing the bomb took {elapsed:.1f}s"
    started = time.monotonic()
    health = get(env.server, "health")
    assert health.status_code == 200
    assert time.monotonic() - started < 1.0


# --- formula injection in exports ---

FORMULAS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "=cmd|' /C calc'!A0"]


def formula_csv() -> bytes:
    lines = ["Date,Block,Plant,Contract,DAM Price,Scheduled MW,Plant Name,Contract Name"]
    for i, text in enumerate(FORMULAS, start=1):
        quoted = '"' + text.replace('"', '""') + '"'
        lines.append(f"2025-11-03,{i},F{i},K{i},{3000 + i},{100 + i},{quoted},{quoted}")
    return ("\n".join(lines) + "\n").encode()


def test_exports_neutralize_formula_text(env: Env) -> None:
    upload = post(env.server, UPLOAD, files={"file": ("formulas.csv", formula_csv(), "text/csv")})
    assert upload.status_code == 201
    params = {"date": "2025-11-03", "group": "plant"}
    exported = get(env.server, "market/export", params={**params, "format": "csv"})
    assert exported.status_code == 200, exported.text
    assert exported.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    text_cells = check_cells(rows)
    assert {f"'{f}" for f in FORMULAS} <= text_cells, text_cells

    book = get(env.server, "market/export", params={**params, "format": "xlsx"})
    assert book.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(book.content), read_only=True).worksheets[0]
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert {f"'{f}" for f in FORMULAS} <= check_cells(cells)


def check_cells(rows: list[list[Any]]) -> set[str]:
    """Every text cell that starts like a formula must be a number; returns the text cells."""
    texts = set()
    for row in rows:
        for cell in row:
            if not isinstance(cell, str):
                continue
            texts.add(cell)
            if cell[:1] in ("=", "+", "-", "@"):
                try:
                    float(cell)
                except ValueError:
                    pytest.fail(f"formula-like text exported as is: {cell!r}")
    return texts


# --- XSRF and CORS stay as jupyter_server sets them ---


def test_xsrf_and_origin_checks_are_not_overridden() -> None:
    package = Path(__file__).resolve().parents[2] / "energyops_ext"
    widening = (
        "check_xsrf_cookie",
        "check_origin",
        "skip_check_origin",
        "allow_origin",
        "xsrf_cookies",
        "Access-Control-Allow",
    )
    for path in package.rglob("*.py"):
        text = path.read_text("utf-8")
        found = [word for word in widening if word in text]
        assert not found, f"{path.relative_to(package)} touches {found}"


def test_cross_origin_cookie_requests_are_refused(env: Env) -> None:
    server = env.server
    session = requests.Session()
    assert session.get(f"{server.base}/api/status", headers=server.headers).status_code == 200
    session.get(f"{server.base}/login")
    evil = {"Origin": "http://evil.example"}
    xsrf = session.cookies.get("_xsrf") or ""
    read = session.get(server.url("health"), headers=evil, timeout=10)
    write = session.patch(
        server.url("scripts/1"),
        headers={**evil, "X-XSRFToken": xsrf},
        json={"description": "cross-origin"},
        timeout=10,
    )
    for response in (read, write):
        assert response.status_code in (403, 404), response.status_code
        assert response.headers.get("Access-Control-Allow-Origin") in (None, "")
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.get_dict().items())
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            server.url("events").replace("http://", "ws://", 1),
            cookie=cookie,
            origin="http://evil.example",
            timeout=10,
        )
    assert refused.value.status_code in (403, 404)
    plain = get(server, "events")
    assert plain.status_code == 400 and plain.json()["error"]["code"] == "websocket_required"


# --- tokens stay out of the log (runs last: it reads everything logged above) ---


def test_tokens_never_reach_the_log(env: Env) -> None:
    server = env.server
    for token in (server.token, OPERATOR_TOKEN):
        for path in (
            "health",
            "no/such/route",
            "runs/999999",
            "runs/1/artifacts/..%2Fx",
            "activities?limit=zz",
            "scripts/1/runs",
        ):
            url = server.url(path) + ("&" if "?" in path else "?") + f"token={token}"
            requests.get(url, timeout=10)
            requests.delete(url, timeout=10)
        requests.post(server.url(f"scripts?token={token}"), data=b"x", timeout=10)
        ws = websocket.create_connection(
            server.url(f"events?token={token}").replace("http://", "ws://", 1), timeout=10
        )
        ws.close()
    log = server.log_text()
    assert "is running at" in log
    for token in (server.token, OPERATOR_TOKEN):
        assert token not in log, [line for line in log.splitlines() if token in line][:5]
