"""A log line's level: ``debug``, ``info``, ``warning`` or ``error``, found from its stream and
words, for one line (``classify_level``) or for a group of lines at once (``classify_lines``).

The group scans here and in ``markers.py`` search the texts joined by "\n" once instead of
line by line: ``lines_matching`` and ``one_per_line`` map the matches back to the lines.
"""

from __future__ import annotations

import re

LEVELS = ("debug", "info", "warning", "error")
LEVEL_RANK = {name: rank for rank, name in enumerate(LEVELS)}


def classify_level(stream: str, text: str) -> str:
    """error / exception / traceback / fatal → error; warn or stderr → warning; else info.
    (Substring tests on the lowered text: several times faster than a regex per line.)"""
    low = text.lower()
    if stream == "system":
        return "warning" if "warn" in low else "info"
    if "error" in low or "exception" in low or "traceback" in low or "fatal" in low:
        return "error"
    if stream == "stderr" or "warn" in low:
        return "warning"
    return "info"


# the words classify_level looks for; a line without any of them has its stream's default level
_LEVEL_WORDS = ("error", "exception", "traceback", "fatal", "warn")
_LEVEL_WORD = re.compile("|".join(_LEVEL_WORDS))


def lines_matching(joined: str, pattern: re.Pattern[str]) -> list[int]:
    """Indices of the lines of ``joined`` (lines joined by "\n") where ``pattern`` matches;
    the patterns hold no "\n", so a match never spans two lines."""
    found: list[int] = []
    line, at = 0, 0
    for match in pattern.finditer(joined):
        start = match.start()
        line += joined.count("\n", at, start)
        at = start
        if not found or found[-1] != line:
            found.append(line)
    return found


def one_per_line(joined: str, texts: list[str]) -> bool:
    """No text holds a "\n" itself (only a system line can), so lines of ``joined`` are
    the texts."""
    return joined.count("\n") == len(texts) - 1


def classify_lines(stream: str, texts: list[str]) -> tuple[str, dict[int, str]]:
    """``classify_level`` of every text at once: the level most lines get, and the index and
    level of each line that differs. The texts are searched joined and lowered once (in C),
    and only lines holding one of the words are classified one by one, so a run of plain
    lines costs a few nanoseconds a line instead of a lower() and four searches each."""
    default = "warning" if stream == "stderr" else "info"
    low = "\n".join(texts).lower()
    if not any(word in low for word in _LEVEL_WORDS):
        return default, {}
    one_each = one_per_line(low, texts)
    odd = {}
    for index in lines_matching(low, _LEVEL_WORD) if one_each else range(len(texts)):
        level = classify_level(stream, texts[index])
        if level != default:
            odd[index] = level
    return default, odd
