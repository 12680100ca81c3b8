"""A 100,000-line run through the stored log (chunks of many lines): every reader returns what
the child printed, as a line-by-line reference computed from the child's own record of it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from tornado.websocket import WebSocketClientConnection

from energyops_ext.events import run_topic
from energyops_ext.runs.levels import LEVEL_RANK, classify_level
from energyops_ext.runs.log_writer import format_file_line
from energyops_ext.services import Services

from .conftest import Fetch, body
from .runs_helpers import FAST_RUNS, script_id, start_run, wait_for
from .wsclient import EventsClient

WsFetch = Callable[..., Awaitable[WebSocketClientConnection]]
Line = dict[str, Any]

LINES = 100_000
# every third line on stderr; words that change the level or report a result; a line the child
# writes is recorded per stream in printed.json, the reference of this test
PRINTER = """
import json, sys
from energyops_ext import sdk
total = int(sys.argv[1])
words = ["plain", "an error here", "WARNING: low", "Traceback (most recent call last):",
         "tab\\there back\\\\slash", "é ü 中", "progress: 12%", "fatal: license", ""]
printed = {"stdout": [], "stderr": []}
for i in range(total):
    stream = "stderr" if i % 3 == 0 else "stdout"
    text = "" if i % 997 == 0 else f"{i} {words[i % len(words)]}"
    (sys.stderr if stream == "stderr" else sys.stdout).write(text + "\\n")
    printed[stream].append(text)
    if i % 20_000 == 0:
        sys.stdout.flush()
(sdk.output_dir() / "printed.json").write_text(json.dumps(printed))
"""


@pytest.fixture
def energyops_config() -> dict[str, Any]:
    return dict(FAST_RUNS)


@pytest.fixture
def connect(services: Services, jp_ws_fetch: WsFetch) -> Iterator[Callable[[], Any]]:
    clients: list[EventsClient] = []

    async def open_client() -> EventsClient:
        client = EventsClient(await jp_ws_fetch("energyops", "api", "events"))
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


async def read_all(api: Fetch, run_id: int, limit: int = 10_000, **filters: str) -> list[Line]:
    """Every line through REST paging by seq (``after`` = the last ``next_after``)."""
    lines: list[Line] = []
    after = 0
    while True:
        params = {"after": str(after), "limit": str(limit), **filters}
        page = body(await api("GET", f"runs/{run_id}/logs", params=params))
        lines.extend(page["items"])
        if len(page["items"]) < limit:
            return lines
        after = page["next_after"]


def kept(line: Line, stream: str | None, level: str | None) -> bool:
    """The reference filter: the level of a line is classify_level of the printed text."""
    reference_level = classify_level(line["stream"], line["text"])
    return (stream is None or line["stream"] == stream) and (
        level is None or LEVEL_RANK[reference_level] >= LEVEL_RANK[level]
    )


async def test_a_100k_line_run_reads_back_as_printed_through_every_reader(
    api: Fetch, connect: Callable[[], Any]
) -> None:
    sid = await script_id(api, "test_printer.py", PRINTER)
    run = await wait_for(api, (await start_run(api, sid, args=[str(LINES)]))["id"], timeout_s=120)
    assert run["status"] == "succeeded", run
    run_id, total = run["id"], run["line_count"]
    printed = json.loads((await api("GET", f"runs/{run_id}/artifacts/printed.json")).body)

    lines = await read_all(api, run_id)
    assert [line["seq"] for line in lines] == list(range(1, total + 1))
    for stream in ("stdout", "stderr"):
        assert [line["text"] for line in lines if line["stream"] == stream] == printed[stream]
    assert total - LINES == sum(1 for line in lines if line["stream"] == "system") >= 2
    assert [line["level"] for line in lines] == [
        classify_level(line["stream"], line["text"]) for line in lines
    ]
    assert run["error_count"] == sum(1 for line in lines if line["level"] == "error")

    filtered: list[tuple[str | None, str | None, int]] = [
        ("stderr", None, 3_000),
        ("system", None, 3_000),
        (None, "error", 3_000),
        ("stderr", "error", 500),
    ]
    for only, at_least, limit in filtered:
        filters = {k: v for k, v in (("stream", only), ("level", at_least)) if v is not None}
        expected = [line for line in lines if kept(line, only, at_least)]
        assert await read_all(api, run_id, limit, **filters) == expected, filters

    for after in (0, 1, 1023, 1024, 1025, 2047, 50_000, total - 1, total):
        params = {"after": str(after), "limit": "100"}
        page = body(await api("GET", f"runs/{run_id}/logs", params=params))
        assert page["items"] == lines[after : after + 100], after

    download = await api("GET", f"runs/{run_id}/logs", params={"format": "text"})
    assert download.body.decode() == "".join(format_file_line(line) for line in lines)  # type: ignore[arg-type]

    topic = run_topic(run_id)
    client = await connect()
    replayed = await client.subscribe(topic, since={topic: total - 5_000})
    assert [line for frame in replayed for line in frame["data"]["lines"]] == lines[-5_000:]
