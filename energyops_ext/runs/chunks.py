"""How a run's log lines are stored: many consecutive lines to a row (a chunk).

One ``log_chunks`` row holds the lines ``first_seq``..``last_seq`` of one run:

- ``texts``: the texts joined by "\\n". Only a system line can hold a "\\n" itself; such a line
  is stored alone, in a chunk of one line, so splitting a chunk never cuts a text.
- ``codes``: one ``LINE_CODE`` letter per line, its stream and level.
- ``stamps``: the timestamps, run-length coded: ``count@ts`` pieces joined by ",".
- ``kinds``: one bit per (stream, level) pair present in the chunk, so a filtered read skips,
  in SQL, the chunks that hold no matching line.

Packing costs a few C-level joins per group of lines instead of a row per line: the database
sees a few hundred rows where it saw a few hundred thousand. Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from .levels import LEVEL_RANK, LEVELS
from .logs import LINE_CODE, STREAMS, LineGroup

MAX_LINES = 1024  # lines per chunk: a page read decodes at most this much beyond its need
MAX_CHARS = 256 * 1024  # text per chunk, so a few very long lines do not make one huge row

_STREAM_OF = {code: stream for (stream, _), code in LINE_CODE.items()}
_LEVEL_OF = {code: level for (_, level), code in LINE_CODE.items()}
_BIT = {code: 1 << (ord(code) - ord("a")) for code in LINE_CODE.values()}


class Chunk(NamedTuple):
    """One stored row (without its run id)."""

    first_seq: int
    last_seq: int
    kinds: int
    codes: str
    stamps: str
    texts: str


class Wanted(NamedTuple):
    """A stream / level filter as the letters it keeps and the ``kinds`` bits of them."""

    mask: int
    pattern: re.Pattern[str]


def wanted(stream: str | None, level: str | None) -> Wanted | None:
    """The filter of a read (``level`` means that level and above); None keeps every line."""
    if stream is None and level is None:
        return None
    streams = STREAMS if stream is None else (stream,)
    rank = LEVEL_RANK[level] if level is not None else 0
    codes = [LINE_CODE[s, v] for s in streams for v in LEVELS if LEVEL_RANK[v] >= rank]
    mask = 0
    for code in codes:
        mask |= _BIT[code]
    return Wanted(mask, re.compile(f"[{''.join(codes)}]"))


# --- writing ---


def pack(groups: Iterable[LineGroup]) -> list[Chunk]:
    """The groups (consecutive seqs, in order) as chunks of at most MAX_LINES lines."""
    chunks: list[Chunk] = []
    parts: list[tuple[LineGroup, int, int]] = []  # (group, start, end) of the chunk being built
    size = 0
    for group in groups:
        if parts and parts[-1][0].last_seq + 1 != group.first_seq:
            chunks.extend(_chunks_of(parts))  # a gap in seq: a chunk never spans one
            parts, size = [], 0
        start, count = 0, len(group.texts)
        while start < count:
            end = min(count, start + MAX_LINES - size)
            parts.append((group, start, end))
            size += end - start
            start = end
            if size == MAX_LINES:
                chunks.extend(_chunks_of(parts))
                parts, size = [], 0
    if parts:
        chunks.extend(_chunks_of(parts))
    return chunks


def _chunks_of(parts: list[tuple[LineGroup, int, int]]) -> list[Chunk]:
    texts: list[str] = []
    for group, start, end in parts:
        texts.extend(group.texts[start:end] if start or end < len(group.texts) else group.texts)
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1 or (len(joined) > MAX_CHARS and len(texts) > 1):
        return _split(parts)
    codes = "".join([group.codes[start:end] for group, start, end in parts])
    first = parts[0][0].first_seq + parts[0][1]
    return [Chunk(first, first + len(texts) - 1, kinds_of(codes), codes, _stamps(parts), joined)]


def _split(parts: list[tuple[LineGroup, int, int]]) -> list[Chunk]:
    """The rare chunk with a text holding "\\n", or too long: cut it before MAX_CHARS and
    around every such text (stored alone). One line at a time, which only such input pays."""
    chunks: list[Chunk] = []
    run: list[tuple[LineGroup, int, int]] = []
    size = 0

    def close() -> None:
        nonlocal run, size
        if run:
            chunks.append(_chunk(run))
        run, size = [], 0

    for group, start, end in parts:
        for index in range(start, end):
            text = group.texts[index]
            if "\n" in text:
                close()
                chunks.append(_chunk([(group, index, index + 1)]))
                continue
            if run and size + len(text) + 1 > MAX_CHARS:
                close()
            if run and run[-1][0] is group and run[-1][2] == index:
                run[-1] = (group, run[-1][1], index + 1)
            else:
                run.append((group, index, index + 1))
            size += len(text) + 1
    close()
    return chunks


def _chunk(parts: list[tuple[LineGroup, int, int]]) -> Chunk:
    texts = [text for group, start, end in parts for text in group.texts[start:end]]
    codes = "".join([group.codes[start:end] for group, start, end in parts])
    first = parts[0][0].first_seq + parts[0][1]
    joined = "\n".join(texts)
    return Chunk(first, first + len(texts) - 1, kinds_of(codes), codes, _stamps(parts), joined)


def _stamps(parts: list[tuple[LineGroup, int, int]]) -> str:
    pieces: list[str] = []
    last_ts, count = "", 0
    for group, start, end in parts:
        if group.ts == last_ts:
            count += end - start
            continue
        if count:
            pieces.append(f"{count}@{last_ts}")
        last_ts, count = group.ts, end - start
    pieces.append(f"{count}@{last_ts}")
    return ",".join(pieces)


def kinds_of(codes: str) -> int:
    kinds = 0
    for code in set(codes):
        kinds |= _BIT[code]
    return kinds


# --- reading ---


def unpack(chunk: Chunk, after_seq: int = 0, keep: Wanted | None = None) -> list[dict[str, Any]]:
    """The chunk's lines (``Line`` shapes) with seq > ``after_seq`` that ``keep`` keeps, in
    seq order."""
    first, codes = chunk.first_seq, chunk.codes
    start = max(0, after_seq - first + 1)
    if start >= len(codes):
        return []
    indices: Iterable[int]
    if keep is None:
        indices = range(start, len(codes))
    else:
        indices = [match.start() for match in keep.pattern.finditer(codes, start)]
        if not indices:
            return []
    texts = [chunk.texts] if len(codes) == 1 else chunk.texts.split("\n")
    stamps = expand_stamps(chunk.stamps)
    return [
        {
            "seq": first + i,
            "stream": _STREAM_OF[codes[i]],
            "level": _LEVEL_OF[codes[i]],
            "ts": stamps[i],
            "text": texts[i],
        }
        for i in indices
    ]


def expand_stamps(stamps: str) -> list[str]:
    expanded: list[str] = []
    for piece in stamps.split(","):
        count, _, ts = piece.partition("@")
        expanded.extend([ts] * int(count))
    return expanded
