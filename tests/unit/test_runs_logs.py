"""Line splitting, levels, result markers and the pending-line buffer."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from energyops_ext.runs.levels import classify_level
from energyops_ext.runs.line_splitter import CUT_MARKER, LineSplitter
from energyops_ext.runs.logs import Line, RunLog
from energyops_ext.runs.markers import parse_marker


def split_all(chunks: list[bytes], max_bytes: int = 64 * 1024) -> list[str]:
    splitter = LineSplitter(max_bytes)
    lines = []
    for chunk in chunks:
        lines.extend(splitter.feed(chunk))
    return lines + splitter.finish()


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nb\n"], ["a", "b"]),
        ([b"par", b"tial\nrest"], ["partial", "rest"]),
        ([b"crlf\r\nnext\r\n"], ["crlf", "next"]),
        ([b"split\r", b"\nafter\n"], ["split", "after"]),
        ([b"progress 1\rprogress 2\rdone\n"], ["progress 1", "progress 2", "done"]),
        ([b"\n\n"], ["", ""]),
        ([b"bad \xff byte\n"], ["bad \ufffd byte"]),
        ([b"\xe2\x82", b"\xac euro\n"], ["\u20ac euro"]),
        ([b"nul\x00here\n"], ["nul\ufffdhere"]),
        ([b"no newline at end"], ["no newline at end"]),
        ([], []),
    ],
)
def test_splitter(chunks: list[bytes], expected: list[str]) -> None:
    assert split_all(chunks) == expected


def reference_lines(data: bytes, max_bytes: int) -> list[str]:
    """The splitter's contract over a whole stream, line by line."""
    parts = re.split(rb"\r\n|\r|\n", data)
    if not parts[-1]:
        parts.pop()  # the stream ended with a line end: no partial last line
    lines = []
    for part in parts:
        text = part[:max_bytes].decode("utf-8", "replace")
        text += CUT_MARKER if len(part) > max_bytes else ""
        lines.append(text.replace("\x00", "\ufffd"))
    return lines


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([b"\n", b"\r", b"a", b"bc", b"\xe2\x82", b"\xac", b"\xff", b"\x00"])),
    st.lists(st.integers(1, 12), max_size=20),
    st.sampled_from([4, 10, 64 * 1024]),
)
@example([b"abcbcbc", b"a\n", b"bc\n"], [7], 4)  # a cut line whose end comes in a later chunk
def test_splitter_in_any_chunks_keeps_its_contract(
    pieces: list[bytes], cuts: list[int], max_bytes: int
) -> None:
    data = b"".join(pieces)
    chunks, at = [], 0
    for cut in cuts:
        chunks.append(data[at : at + cut])
        at += cut
    chunks.append(data[at:])
    assert split_all(chunks, max_bytes) == reference_lines(data, max_bytes)


def test_long_lines_are_cut_once_and_the_rest_skipped() -> None:
    long = b"x" * 25
    assert split_all([long + b"\nshort\n"], max_bytes=10) == ["x" * 10 + CUT_MARKER, "short"]
    # the same line arriving in pieces, longer than the limit before its end is seen
    pieces = [b"y" * 8, b"y" * 8, b"y" * 8, b"\nok\n"]
    assert split_all(pieces, max_bytes=10) == ["y" * 10 + CUT_MARKER, "ok"]


@pytest.mark.parametrize(
    ("stream", "text", "level"),
    [
        ("stdout", "all good", "info"),
        ("stderr", "progress on stderr", "warning"),
        ("stdout", "WARNING: low reserve", "warning"),
        ("stdout", "ValueError: bad input", "error"),
        ("stderr", "Traceback (most recent call last):", "error"),
        ("stdout", "unhandled exception in solver", "error"),
        ("stdout", "FATAL: license expired", "error"),
        ("system", "run ended: failed", "info"),
    ],
)
def test_levels(stream: str, text: str, level: str) -> None:
    assert classify_level(stream, text) == level


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('::energyops {"progress": 40}', {"progress": 40.0}),
        (
            '::energyops {"objective": 125436.78, "results": 500, "solver_time_ms": 812}',
            {"objective_value": 125436.78, "results_count": 500, "solver_time_ms": 812},
        ),
        ('::energyops {"progress": 250}', {"progress": 100.0}),
        ("::energyops not json", None),
        ('::energyops {"progress": "lots"}', None),
        ("Objective value: 125436.78", {"objective_value": 125436.78}),
        ("objective = -1,250.5", {"objective_value": -1250.5}),
        ("Results written: 500 records", {"results_count": 500}),
        ("Progress: 40%", {"progress": 40.0}),
        ("Solver time: 1.5 s", {"solver_time_ms": 1500}),
        ("Solver time: 812 ms", {"solver_time_ms": 812}),
        ("progress is slow", None),
        ("plain output", None),
    ],
)
def test_markers(text: str, found: dict[str, Any] | None) -> None:
    assert parse_marker(text) == found


def test_runlog_numbers_publishes_and_keeps_lines_until_committed() -> None:
    published: list[list[Line]] = []
    metrics: list[dict[str, Any]] = []
    log = RunLog(7, published.append, metrics.append)
    log.add("stdout", ["a", "Progress: 50%"])
    log.add("stderr", ["oops error"])
    assert [line["seq"] for batch in published for line in batch] == [1, 2, 3]
    assert metrics == [{"progress": 50.0}]
    assert (log.line_count, log.error_count) == (3, 1)
    batch = log.take()
    assert batch is not None and [r["seq"] for r in batch.records] == [1, 2, 3]
    assert [r["text"] for r in batch.errors] == ["oops error"]
    log.add("stdout", ["late"])
    # taken but not committed: still replayable
    assert [r["seq"] for r in log.snapshot(1)] == [2, 3, 4]
    log.committed(batch)
    assert [r["seq"] for r in log.snapshot(0)] == [4]
    second = log.take()
    assert second is not None and [r["seq"] for r in second.records] == [4]
    log.release(second)  # a failed write gives its lines back
    third = log.take()
    assert third is not None and [r["seq"] for r in third.records] == [4]
    assert log.take() is None


def test_runlog_seq_has_no_gaps_across_threads() -> None:
    log = RunLog(1, lambda lines: None)

    def writer(stream: str) -> None:
        for i in range(200):
            log.add(stream, [f"{stream} {i}", f"{stream} {i}b"])

    threads = [threading.Thread(target=writer, args=(s,)) for s in ("stdout", "stderr")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = log.snapshot(0)
    assert [r["seq"] for r in lines] == list(range(1, 801))
    stdout = [r["text"] for r in lines if r["stream"] == "stdout"]
    assert stdout[:4] == ["stdout 0", "stdout 0b", "stdout 1", "stdout 1b"]
