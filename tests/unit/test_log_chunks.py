"""The stored log format (many lines to a row) and the per-group classification it relies on:
each checked against the line-by-line functions it replaces."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from energyops_ext.runs import chunks
from energyops_ext.runs.levels import LEVEL_RANK, LEVELS, classify_level, classify_lines
from energyops_ext.runs.log_writer import format_file_line, format_file_lines
from energyops_ext.runs.logs import STREAMS, Line, LineGroup, RunLog, group_records, new_line
from energyops_ext.runs.markers import might_report, reporting_lines

# words that change a level or mark a result, in several cases, and text around them
WORDS = ["error", "ERROR", "Warn", "exception", "TraceBack", "fatal", "ok", "Progress: 5%"]
WORDS += ["::energyops {}", "objective = 3", "results written: 4", "Σ", "İ", "x", " ", ":", "="]
texts = st.lists(st.sampled_from(WORDS), max_size=6).map("".join)


@given(st.sampled_from(STREAMS), st.lists(texts, max_size=30))
def test_classify_lines_is_classify_level_of_each_line(stream: str, lines: list[str]) -> None:
    default, odd = classify_lines(stream, lines)
    assert [odd.get(i, default) for i in range(len(lines))] == [
        classify_level(stream, text) for text in lines
    ]


@given(st.lists(texts, max_size=30))
def test_reporting_lines_are_the_lines_that_might_report(lines: list[str]) -> None:
    assert reporting_lines(lines) == [i for i, text in enumerate(lines) if might_report(text)]


def groups_of(parts: list[tuple[str, list[str], int]]) -> list[LineGroup]:
    """Groups as RunLog makes them (one per add), with a gap of ``skip`` seqs before each."""
    groups: list[LineGroup] = []
    seq = 0
    for stream, lines, skip in parts:
        seq += skip
        log = RunLog(1, lambda lines: None, start_seq=seq)
        log.add(stream, lines)
        batch = log.take()
        if batch is not None:
            groups.extend(batch.groups)
        seq += len(lines)
    return groups


line_texts = st.one_of(texts, st.sampled_from(["", "tab\there", "back\\slash", "é ü 中"]))
system_texts = st.one_of(line_texts, st.sampled_from(["two\nlines", "\n", "cr\rlf\r\n"]))
group_parts = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["stdout", "stderr"]), st.lists(line_texts, max_size=40)),
        st.tuples(st.just("system"), st.lists(system_texts, min_size=1, max_size=3)),
    ).flatmap(lambda p: st.tuples(st.just(p[0]), st.just(p[1]), st.sampled_from([0, 0, 0, 3]))),
    max_size=12,
)


def records_of(groups: list[LineGroup]) -> list[Line]:
    return [record for group in groups for record in group.records]


@settings(max_examples=200)
@given(group_parts)
def test_chunks_hold_every_line_once_and_read_back_the_same(
    parts: list[tuple[str, list[str], int]],
) -> None:
    groups = groups_of(parts)
    packed = chunks.pack(groups)
    assert [line for chunk in packed for line in chunks.unpack(chunk)] == records_of(groups)
    for chunk in packed:
        assert len(chunk.codes) == chunk.last_seq - chunk.first_seq + 1 <= chunks.MAX_LINES
        if "\n" in chunk.texts.replace("\n", "", len(chunk.codes) - 1):
            assert len(chunk.codes) == 1  # a text holding "\n" is stored alone
    assert all(a.last_seq < b.first_seq for a, b in itertools.pairwise(packed))


@settings(max_examples=100)
@given(
    group_parts,
    st.sampled_from([None, *STREAMS]),
    st.sampled_from([None, *LEVELS]),
    st.integers(0, 200),
)
def test_a_filtered_read_keeps_what_a_line_by_line_filter_keeps(
    parts: list[tuple[str, list[str], int]], stream: str | None, level: str | None, after: int
) -> None:
    groups = groups_of(parts)
    keep = chunks.wanted(stream, level)
    packed = chunks.pack(groups)
    read = [line for chunk in packed for line in chunks.unpack(chunk, after, keep)]
    assert read == [r for r in records_of(groups) if r["seq"] > after and kept(r, stream, level)]
    for chunk in packed:
        holds = any(kept(r, stream, level) for r in chunks.unpack(chunk))
        assert keep is None or bool(chunk.kinds & keep.mask) == holds


def kept(record: Line | dict[str, Any], stream: str | None, level: str | None) -> bool:
    return (stream is None or record["stream"] == stream) and (
        level is None or LEVEL_RANK[record["level"]] >= LEVEL_RANK[level]
    )


def test_a_big_group_is_cut_into_chunks_of_max_lines() -> None:
    groups = groups_of([("stdout", [f"line {i}" for i in range(2500)], 0)])
    packed = chunks.pack(groups)
    assert [(c.first_seq, c.last_seq) for c in packed] == [(1, 1024), (1025, 2048), (2049, 2500)]
    assert packed[0].stamps == f"1024@{groups[0].ts}"


def test_long_texts_are_cut_before_max_chars() -> None:
    long = "x" * (chunks.MAX_CHARS // 3)
    packed = chunks.pack(groups_of([("stdout", [long] * 7, 0)]))
    assert [len(c.codes) for c in packed] == [2, 2, 2, 1]
    assert all(len(c.texts) <= chunks.MAX_CHARS for c in packed)


def test_lines_made_one_by_one_group_by_stream_and_time() -> None:
    records = [
        new_line(1, "system", "a"),
        new_line(2, "system", "b two\nlines"),
        new_line(3, "stdout", "c"),
        new_line(5, "stdout", "d"),
    ]
    records[1]["ts"] = records[0]["ts"]
    groups = group_records(records)
    assert [(g.first_seq, g.texts) for g in groups] == [
        (1, ["a", "b two\nlines"]),
        (3, ["c"]),
        (5, ["d"]),
    ]
    packed = chunks.pack(groups)
    assert [(c.first_seq, c.last_seq) for c in packed] == [(1, 1), (2, 2), (3, 3), (5, 5)]
    assert [line for c in packed for line in chunks.unpack(c)] == records


@pytest.mark.parametrize(
    ("stream", "level", "letters"),
    [
        ("stderr", None, "efgh"),
        (None, "error", "dhl"),
        ("system", "warning", "kl"),
        ("stdout", "debug", "abcd"),
    ],
)
def test_wanted_letters(stream: str | None, level: str | None, letters: str) -> None:
    keep = chunks.wanted(stream, level)
    assert keep is not None
    assert [c for c in "abcdefghijkl" if keep.pattern.fullmatch(c)] == list(letters)
    assert keep.mask == sum(1 << (ord(c) - ord("a")) for c in letters)


@given(group_parts)
def test_the_log_file_is_written_line_by_line_as_before(
    parts: list[tuple[str, list[str], int]],
) -> None:
    groups = groups_of(parts)
    expected = "".join(format_file_line(r) for r in records_of(groups))
    assert format_file_lines(groups) == expected
