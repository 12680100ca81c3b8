"""Uploads are parsed while the body streams in, over a real socket on both databases.

The client here writes raw HTTP/1.1 to the server's port and controls how much of the body has
been sent when it looks: a file part is on disk before the body has ended, an over-limit
stream and a malformed body are answered while the rest of the body is still unsent, and the
server then closes the connection instead of reading on.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from energyops_ext.services import Services
from tests.ingest_files import days_from, snapshot_csv

from .conftest import Fetch, body

UPLOAD = "energyops/api/datasets/market-snapshot/uploads"
BOUNDARY = "streamingboundary42"
LIMIT = 200_000
WAIT_S = 20.0
DAY = date(2024, 4, 13)


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return {"max_upload_bytes": LIMIT, "max_test_script_bytes": 2_000, "max_model_bytes": 3_000}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawClient:
    """One HTTP/1.1 request written by hand, in pieces, on its own connection."""

    def __init__(self, port: int, base_url: str, auth: dict[str, str]) -> None:
        self.port, self.base_url, self.auth = port, base_url, auth
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self, path: str, headers: dict[str, str]) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        lines = [f"POST {self.base_url}{path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in {**self.auth, **headers}.items()]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def send_chunk(self, data: bytes) -> None:
        """One chunk of a ``Transfer-Encoding: chunked`` body."""
        await self.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    async def response(self) -> Response:
        assert self.reader is not None
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT_S)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        data = await asyncio.wait_for(self.reader.readexactly(length), WAIT_S)
        return Response(int(status_line.split()[1]), headers, data)

    async def closed_by_server(self) -> bool:
        """True once the server has closed its side (the rest of the body will not be read)."""
        assert self.reader is not None
        try:
            rest = await asyncio.wait_for(self.reader.read(), WAIT_S)
        except ConnectionResetError:
            return True
        return rest == b""

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@pytest.fixture
def raw_client(
    api: Fetch, jp_http_port: int, jp_base_url: str, jp_auth_header: dict[str, str]
) -> Any:
    clients: list[RawClient] = []

    def make() -> RawClient:
        client = RawClient(jp_http_port, jp_base_url, jp_auth_header)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def file_part(filename: str, data: bytes) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode() + data


def field_part(name: str, value: str) -> bytes:
    return (
        f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()
    )


CLOSING = f"\r\n--{BOUNDARY}--\r\n".encode()
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def spool_files(services: Services) -> list[Path]:
    spool = services.settings.data_dir / "tmp"
    return sorted(spool.glob("upload-*")) if spool.exists() else []


async def until(condition: Any, what: str) -> None:
    """Wait for a condition the server brings about, with a deadline (not a fixed sleep)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_slow_body_is_parsed_as_it_comes(
    raw_client: Any, services: Services, api: Fetch
) -> None:
    data = snapshot_csv([DAY])
    first = file_part("slow.csv", data) + field_part("mode", "upsert")
    rest = CLOSING
    client = raw_client()
    await client.start(
        UPLOAD, {"Content-Type": MULTIPART, "Content-Length": str(len(first) + len(rest))}
    )
    for offset in range(0, len(first), 1000):  # the first part, in small pieces
        await client.send(first[offset : offset + 1000])

    def file_on_disk() -> bool:
        return any(p.read_bytes() == data for p in spool_files(services))

    # The file part is complete on disk while the body's last bytes are still unsent.
    await until(file_on_disk, "the file part in its spool file")
    await client.send(rest)
    response = await client.response()
    assert response.status == 201, response.body
    report = response.json()
    assert report["rows_inserted"] == 96 and report["filename"] == "slow.csv", report
    rows = body(await api("GET", "datasets/market-snapshot/rows", params={"limit": "200"}))
    assert len(rows["items"]) == 96
    await until(lambda: not spool_files(services), "the spool file to be removed")


async def test_an_over_limit_stream_is_cut_with_413_without_reading_the_rest(
    raw_client: Any, services: Services, api: Fetch
) -> None:
    data = snapshot_csv(days_from(DAY, 90))
    assert len(data) > 2 * LIMIT
    body_bytes = file_part("big.csv", data) + CLOSING
    client = raw_client()
    # Chunked: no Content-Length to refuse up front, the stream itself passes the limit.
    await client.start(UPLOAD, {"Content-Type": MULTIPART, "Transfer-Encoding": "chunked"})
    sent = 0
    while sent <= LIMIT + 64 * 1024:
        await client.send_chunk(body_bytes[sent : sent + 16 * 1024])
        sent += 16 * 1024
    assert sent < len(body_bytes)  # the rest of the body (and its last chunk) is never sent
    response = await client.response()
    assert response.status == 413, response.body
    error = response.json()["error"]
    assert error["code"] == "too_large" and "the limit is 200 KB" in error["message"], error
    assert await client.closed_by_server()
    assert body(await api("GET", "datasets/market-snapshot/uploads"))["total"] == 0
    await until(lambda: not spool_files(services), "the spool files to be removed")


@pytest.mark.parametrize(
    ("path", "limit_text"),
    [(UPLOAD, "the limit is 200 KB"), ("energyops/api/scripts", "the limit is 3 KB")],
)
async def test_a_content_length_over_the_limit_is_413_before_any_body(
    raw_client: Any, path: str, limit_text: str
) -> None:
    client = raw_client()
    await client.start(path, {"Content-Type": MULTIPART, "Content-Length": str(10 * LIMIT)})
    response = await client.response()  # not one byte of the body was sent
    assert response.status == 413, response.body
    assert limit_text in response.json()["error"]["message"]
    assert await client.closed_by_server()


MALFORMED = [
    ("no boundary line", b"this is not multipart at all\r\n" * 10),
    ("a header line without a colon", f"--{BOUNDARY}\r\nno colon here\r\n\r\n".encode()),
    ("a form field past 64 KB", field_part("market", "x" * 70_000)[2:]),
]


@pytest.mark.parametrize(("what", "start"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_a_malformed_body_is_400_while_the_rest_is_unsent(
    raw_client: Any, services: Services, what: str, start: bytes
) -> None:
    client = raw_client()
    length = len(start) + 100_000  # announced, never sent
    await client.start(UPLOAD, {"Content-Type": MULTIPART, "Content-Length": str(length)})
    await client.send(start)
    response = await client.response()
    assert response.status == 400, (what, response.body)
    error = response.json()["error"]
    assert error["code"] in ("invalid_multipart", "invalid_field"), (what, error)
    assert await client.closed_by_server()
    await until(lambda: not spool_files(services), "the spool files to be removed")


async def test_a_truncated_body_is_400(raw_client: Any) -> None:
    payload = file_part("cut.csv", snapshot_csv([DAY]))  # no closing boundary
    client = raw_client()
    await client.start(UPLOAD, {"Content-Type": MULTIPART, "Content-Length": str(len(payload))})
    await client.send(payload)
    response = await client.response()
    assert response.status == 400, response.body
    assert response.json()["error"]["message"] == "the multipart body is truncated"


async def test_a_script_streams_in_pieces_too(raw_client: Any) -> None:
    source = b"print('streamed')\n" * 20
    payload = (
        field_part("kind", "test")[2:] + b"\r\n" + file_part("test_streamed.py", source) + CLOSING
    )
    client = raw_client()
    await client.start(
        "energyops/api/scripts", {"Content-Type": MULTIPART, "Content-Length": str(len(payload))}
    )
    for offset in range(0, len(payload), 7):
        await client.send(payload[offset : offset + 7])
    response = await client.response()
    assert response.status == 201, response.body
    script = response.json()
    assert (script["name"], script["kind"], script["size"]) == (
        "test_streamed.py",
        "test",
        len(source),
    )
