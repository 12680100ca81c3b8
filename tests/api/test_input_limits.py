"""What a client may send: JSON bodies (size, depth, finite numbers) on every JSON route, event
socket frames, and dataset file extensions; and what the server sends back is strict JSON."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse
from tornado.websocket import WebSocketClientConnection

from energyops_ext.events import RUNS
from energyops_ext.events.protocol import (
    MAX_JSON_DEPTH,
    BadFrame,
    JSONTooDeep,
    NonFiniteNumber,
    UnreadableJSON,
    decode_json,
    encode_frame,
    encode_json,
    parse_client_frame,
)
from energyops_ext.handlers.base import MAX_JSON_BODY_BYTES, dumps
from energyops_ext.services import Services

from .conftest import Fetch, assert_error, body
from .runs_helpers import FAST_RUNS, script_id, wait_for
from .seed import MARKET_CSV
from .wsclient import EventsClient

WsFetch = Callable[..., Awaitable[WebSocketClientConnection]]

JSON_ROUTES = [
    ("POST", "scripts/1/runs"),
    ("PATCH", "scripts/1"),
    ("PATCH", "notifications/1"),
]
PARSER_CODES = {"invalid_json", "too_deep", "body_too_large", "non_finite_number"}


def strict_loads(text: str | bytes) -> Any:
    """What a strict JSON parser (a browser's JSON.parse, Go, Rust) accepts."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def nested(depth: int, kind: str = "array") -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def in_config(value: str) -> bytes:
    return f'{{"config": {{"x": {value}}}}}'.encode()


LIMIT_MB = MAX_JSON_BODY_BYTES // 1_000_000

# (name, body, status, code, message: exact, or a fragment when it ends with "...")
BAD_BODIES: list[tuple[str, bytes, int, str, str]] = [
    (
        "NUL in text",
        b'{"description": "a\\u0000b"}',
        422,
        "nul_in_text",
        "description must not contain NUL (U+0000) characters",
    ),
    (
        "NUL in a key",
        in_config('{"a\\u0000": 1}'),
        422,
        "nul_in_text",
        "config.x.a\\u0000 must not contain...",
    ),
    (
        "3000-deep arrays",
        in_config(nested(3000)),
        400,
        "too_deep",
        f"request body is nested more than {MAX_JSON_DEPTH} levels deep; "
        f"the limit is {MAX_JSON_DEPTH} levels",
    ),
    ("3000-deep objects", nested(3000, "object").encode(), 400, "too_deep", "the limit is 32..."),
    ("33 levels", in_config(nested(MAX_JSON_DEPTH - 1)), 400, "too_deep", "the limit is 32..."),
    ("unclosed 3000 levels", b"[" * 3000, 400, "too_deep", "nested more than 32..."),
    (
        "2 MB body",
        b'{"config": {"blob": "' + b"x" * 2_000_000 + b'"}}',
        413,
        "body_too_large",
        f"request body is 2 MB; the limit for JSON bodies is {LIMIT_MB} MB",
    ),
    (
        "NaN",
        in_config("NaN"),
        422,
        "non_finite_number",
        "config.x must be a finite number; got NaN",
    ),
    (
        "Infinity",
        b'{"priority": Infinity}',
        422,
        "non_finite_number",
        "priority must be a finite number; got Infinity",
    ),
    (
        "-Infinity",
        b'{"timeout_s": -Infinity}',
        422,
        "non_finite_number",
        "timeout_s must be a finite number; got -Infinity",
    ),
    (
        "1e400",
        b'{"priority": 1e400}',
        422,
        "non_finite_number",
        "priority must be a finite number; got 1e400",
    ),
    (
        "-1e400 in a list",
        b'{"config": {"weights": [0.5, 1, -1e400]}}',
        422,
        "non_finite_number",
        "config.weights[2] must be a finite number; got -1e400",
    ),
    (
        "nested NaN in config",
        b'{"config": {"solver": {"gap": [{"tol": NaN}]}}}',
        422,
        "non_finite_number",
        "config.solver.gap[0].tol must be a finite number; got NaN",
    ),
    (
        "a key that is not a name",
        b'{"config": {"a b": NaN}}',
        422,
        "non_finite_number",
        'config["a b"] must be a finite number; got NaN',
    ),
    ("not JSON", b"{nope", 400, "invalid_json", "request body is not valid JSON: ..."),
]


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return dict(FAST_RUNS)


@pytest.fixture
def script(api: Fetch, jp_asyncio_loop: asyncio.AbstractEventLoop) -> int:
    """Script 1 exists, so a body that passed would start a run."""
    sid = jp_asyncio_loop.run_until_complete(script_id(api, "test_limits.py", "print('ok')\n"))
    assert sid == 1
    return sid


def assert_message(response: HTTPResponse, status: int, code: str, message: str) -> None:
    if message.endswith("..."):
        assert_error(response, status, code, message[:-3])
    else:
        assert assert_error(response, status, code)["message"] == message


@pytest.mark.parametrize(
    ("name", "payload", "status", "code", "message"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
async def test_bad_json_bodies_are_refused_on_every_json_route(
    api: Fetch, script: int, name: str, payload: bytes, status: int, code: str, message: str
) -> None:
    for method, path in JSON_ROUTES:
        response = await api(method, path, body=payload)
        try:
            assert_message(response, status, code, message)
        except AssertionError as exc:
            raise AssertionError(f"{method} {path}: {exc}") from None
    # nothing was stored that a strict parser cannot read back
    for path in ("runs", "scripts", "scripts/1", "notifications"):
        response = await api("GET", path)
        assert response.code == 200
        strict_loads(response.body)
    assert body(await api("GET", "runs"))["total"] == 0


@pytest.mark.parametrize(
    "payload",
    [
        in_config(nested(MAX_JSON_DEPTH - 2)),  # 32 levels with the body and config
        in_config('"[[[[{{{{ NaN Infinity 1e400"'),
        in_config('"' + "[" * 5000 + '"'),
        in_config('"\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\"'),
        in_config("1e308"),
        in_config("-1e-400"),
        in_config("123456789012345678901234567890"),
        b'{"config": {"blob": "' + b"x" * (MAX_JSON_BODY_BYTES - 40) + b'"}}',
    ],
    ids=[
        "32 levels",
        "words",
        "brackets in a string",
        "escaped quotes",
        "1e308",
        "tiny",
        "big int",
        "1 MB",
    ],
)
async def test_bodies_within_the_limits_pass_the_parser(
    api: Fetch, script: int, payload: bytes
) -> None:
    assert len(payload) <= MAX_JSON_BODY_BYTES
    for method, path in JSON_ROUTES:
        response = await api(method, path, body=payload)
        if response.code >= 400:
            code = body(response)["error"]["code"]
            assert code not in PARSER_CODES, f"{method} {path}: {response.body[:300]!r}"


async def test_a_run_accepts_a_32_level_config_and_shows_it_as_sent(
    api: Fetch, script: int
) -> None:
    config = json.loads(nested(MAX_JSON_DEPTH - 2, "object"))
    response = await api("POST", "scripts/1/runs", body=json.dumps({"config": config}))
    assert response.code == 202, response.body
    assert strict_loads(response.body)["config"] == config


def test_decoding_names_the_path_and_never_recurses() -> None:
    with pytest.raises(NonFiniteNumber) as caught:
        decode_json('{"since": {"run:42": NaN}}', "frame")
    assert caught.value.path == "since.run:42"
    assert caught.value.message == "since.run:42 must be a finite number; got NaN"
    with pytest.raises(JSONTooDeep):
        decode_json("[" * 1_000_000, "frame")
    with pytest.raises(JSONTooDeep):
        decode_json(nested(MAX_JSON_DEPTH + 1).encode(), "frame")
    assert decode_json(nested(MAX_JSON_DEPTH), "frame") == json.loads(nested(MAX_JSON_DEPTH))
    assert decode_json(b'{"x": 1.5, "y": "NaN"}', "frame") == {"x": 1.5, "y": "NaN"}
    long = "9" * 500 + ".0"
    with pytest.raises(NonFiniteNumber) as caught:
        decode_json(f'{{"x": {long}}}', "frame")
    assert caught.value.message == f"x must be a finite number; got {long[:40]}…"
    # a repeated key replaced the NaN: what the parser keeps is finite
    assert decode_json('{"x": NaN, "x": 1}', "frame") == {"x": 1}


@pytest.mark.parametrize(
    "text",
    [
        # each ends in an unterminated string holding brackets, which nest nothing
        '["' + "[" * 5000,
        '"' + '\\"' * 500_000 + "[" * 40,
        "[" + '"' * 1_000_001 + "[" * 40,
        '["' + "\\" * 1_000_000 + "[" * 40,
    ],
    ids=["brackets in an open string", "escaped quotes", "quotes", "backslashes"],
)
def test_malformed_json_is_invalid_not_too_deep_and_scanned_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(UnreadableJSON) as caught:
        decode_json(text, "request body")
    assert type(caught.value) is UnreadableJSON
    assert caught.value.message.startswith("request body is not valid JSON: ")
    assert time.perf_counter() - started < 1.0


# --- what the server sends ---


def test_non_finite_numbers_are_sent_as_null() -> None:
    data = {"objective_value": float("inf"), "gap": [float("nan"), 1.5], "n": -float("inf")}
    assert strict_loads(dumps(data)) == {"objective_value": None, "gap": [None, 1.5], "n": None}
    assert strict_loads(encode_json(data)) == strict_loads(dumps(data))
    frame = encode_frame("runs", "run.finished", {"objective_value": float("nan")})
    assert strict_loads(frame) == {
        "topic": "runs",
        "type": "run.finished",
        "data": {"objective_value": None},
    }
    assert dumps({"x": 1.5}) == '{"x":1.5}'


OVERFLOWING_MODEL = "print('Objective value: 1e400')\n"


async def test_a_non_finite_number_a_run_stored_reaches_clients_as_null(
    api: Fetch, services: Services, connect: Callable[..., Awaitable[EventsClient]]
) -> None:
    """A model's output can hold a number no float holds (1e400 is inf); the run keeps it,
    and every client still gets strict JSON."""
    client = await connect()
    await client.subscribe(RUNS)
    sid = await script_id(api, "test_overflow.py", OVERFLOWING_MODEL)
    started = await api("POST", f"scripts/{sid}/runs", body=b"{}")
    assert started.code == 202, started.body
    run_id = strict_loads(started.body)["id"]
    done = await wait_for(api, run_id)
    assert done["status"] == "succeeded", done
    finished = await client.until(lambda f: f["type"] == "run.finished")
    assert finished[-1]["data"]["objective_value"] is None
    for path in (f"runs/{run_id}", "runs", "scripts", f"scripts/{sid}"):
        response = await api("GET", path)
        assert response.code == 200
        strict_loads(response.body)
    assert strict_loads((await api("GET", f"runs/{run_id}")).body)["objective_value"] is None


# --- event socket frames ---


@pytest.fixture
def connect(services: Services, jp_ws_fetch: WsFetch) -> Iterator[Callable[..., Awaitable[Any]]]:
    clients: list[EventsClient] = []

    async def open_client(**kwargs: Any) -> EventsClient:
        client = EventsClient(await jp_ws_fetch("energyops", "api", "events", **kwargs))
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


BAD_FRAMES = [
    ('{"op": "ping", "x": NaN}', "non_finite_number", "x must be a finite number; got NaN"),
    (
        '{"op": "subscribe", "topics": ["run:1"], "since": {"run:1": Infinity}}',
        "non_finite_number",
        "since.run:1 must be a finite number; got Infinity",
    ),
    (
        '{"op": "subscribe", "topics": ["run:1"], "since": {"run:1": 1e400}}',
        "non_finite_number",
        "since.run:1 must be a finite number; got 1e400",
    ),
    ('{"op": "ping", "x": [-Infinity]}', "non_finite_number", "x[0] must be a finite number"),
    (
        '{"op": "ping", "x": ' + nested(3000) + "}",
        "too_deep",
        "frame is nested more than 32 levels deep; the limit is 32 levels",
    ),
    ('{"op": "ping", "x": ' + nested(3000, "object") + "}", "too_deep", "the limit is 32"),
]


@pytest.mark.parametrize(("frame", "code", "fragment"), BAD_FRAMES)
def test_bad_frames_are_refused_by_the_protocol(frame: str, code: str, fragment: str) -> None:
    with pytest.raises(BadFrame) as caught:
        parse_client_frame(frame)
    assert caught.value.code == code
    assert fragment in caught.value.message


async def test_bad_frames_get_error_frames_and_the_socket_stays(
    connect: Callable[..., Awaitable[EventsClient]],
) -> None:
    client = await connect()
    for frame, code, fragment in BAD_FRAMES:
        await client.send(frame)
        error = await client.recv()
        assert error is not None, f"socket closed after {frame[:60]}"
        assert error["type"] == "error" and error["data"]["code"] == code, error
        assert fragment in error["data"]["message"]
    await client.send({"op": "ping"})
    assert await client.recv() == {"topic": None, "type": "pong", "data": {}}


# --- dataset file extensions ---

UPLOAD = "datasets/market-snapshot/uploads"
ALLOWED = ".xlsx, .xls or .csv"


def multipart(filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "energyopslimits"
    payload = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return payload, f"multipart/form-data; boundary={boundary}"


async def post_file(api: Fetch, filename: str, data: bytes = MARKET_CSV) -> HTTPResponse:
    payload, content_type = multipart(filename, data)
    return await api("POST", UPLOAD, body=payload, headers={"Content-Type": content_type})


def stored_files(services: Services) -> list[Path]:
    roots = [services.settings.files_dir, services.settings.data_dir / "tmp"]
    return sorted(p for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("x.txt", f"'x.txt' has the extension .txt; dataset files must be {ALLOWED}"),
        ("MARKET.TXT", f"'MARKET.TXT' has the extension .TXT; dataset files must be {ALLOWED}"),
        ("market", f"'market' has no extension; dataset files must be {ALLOWED}"),
        ("market.", f"'market.' has no extension; dataset files must be {ALLOWED}"),
        ("x.xlsx.exe", f"'x.xlsx.exe' has the extension .exe; dataset files must be {ALLOWED}"),
        ("x.xlsm", f"'x.xlsm' has the extension .xlsm; dataset files must be {ALLOWED}"),
        ("x.csv.txt", f"'x.csv.txt' has the extension .txt; dataset files must be {ALLOWED}"),
    ],
)
async def test_a_wrong_extension_is_415_and_nothing_is_stored(
    api: Fetch, services: Services, filename: str, message: str
) -> None:
    response = await post_file(api, filename)
    assert assert_error(response, 415, "unsupported_media_type")["message"] == message
    assert body(await api("GET", UPLOAD))["total"] == 0
    rows = body(await api("GET", "datasets/market-snapshot/rows"))
    assert rows["items"] == []
    for _ in range(100):  # the spooled request body is removed after the response
        if not stored_files(services):
            break
        await asyncio.sleep(0.02)
    assert stored_files(services) == []


@pytest.mark.parametrize("filename", ["market.csv", "MARKET.CSV", "Market.Csv"])
async def test_allowed_extensions_in_any_case_are_stored(api: Fetch, filename: str) -> None:
    response = await post_file(api, filename)
    assert response.code == 201, response.body
    assert body(response)["rows_inserted"] == 96
