"""A run's output bytes cut into text lines: ``LineSplitter``, one per pipe of the run's
process (``procs/pipes.py``). Pure: no I/O, no locks."""

from __future__ import annotations

import re

MAX_LINE_BYTES = 64 * 1024
CUT_MARKER = f" [line cut: longer than {MAX_LINE_BYTES} bytes]"

_SEPARATORS = re.compile(rb"\r\n|\r|\n")


class LineSplitter:
    """Bytes in, complete text lines out. Partial lines are held until their end arrives;
    ``\\r\\n``, ``\\r`` and ``\\n`` all end a line; invalid UTF-8 is replaced; a line longer
    than ``max_bytes`` is cut there (with a marker) and the rest of it is skipped."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = b""
        self._held_cr = False  # the last chunk ended in \r: a \n next is part of it
        self._skipping = False  # discarding the rest of a cut line

    def feed(self, data: bytes) -> list[str]:
        if self._held_cr:
            self._held_cr = False
            if data.startswith(b"\n"):
                data = data[1:]
        buffer = self._buffer + data if self._buffer else data
        if buffer.endswith(b"\r"):
            buffer = buffer[:-1]
            self._held_cr = True
        elif b"\r" not in buffer:
            lines = self._whole_lines(buffer)
            if lines is not None:
                return lines
        parts = _SEPARATORS.split(buffer) if b"\r" in buffer else buffer.split(b"\n")
        tail = b"" if self._held_cr else parts.pop()
        lines = self._complete(parts)
        if len(tail) > self.max_bytes:
            if not self._skipping:
                lines.append(self._decode(tail))
                self._skipping = True
            tail = b""
        self._buffer = tail
        return lines

    def _whole_lines(self, buffer: bytes) -> list[str] | None:
        """The common case, "\n" only and no line to cut: the complete lines decoded in one
        go and split as text (invalid UTF-8 is replaced the same, since "\n" never belongs
        to a multi-byte sequence). None when a line may be too long: see ``feed``."""
        end = buffer.rfind(b"\n")
        complete = buffer[:end] if end >= 0 else b""
        if len(complete) > self.max_bytes and max(map(len, complete.split(b"\n"))) > self.max_bytes:
            return None
        tail = buffer[end + 1 :]
        if len(tail) > self.max_bytes:
            return None
        self._buffer = tail
        if end < 0:
            return []
        text = complete.decode("utf-8", "replace")
        lines = (text.replace("\x00", "\ufffd") if "\x00" in text else text).split("\n")
        if self._skipping:  # the first line is the end of the line that was cut
            self._skipping = False
            del lines[0]
        return lines

    def finish(self) -> list[str]:
        """End of stream: whatever is held becomes the last line."""
        tail, self._buffer, self._held_cr = self._buffer, b"", False
        lines = [] if self._skipping or not tail else [self._decode(tail)]
        self._skipping = False
        return lines

    def _complete(self, parts: list[bytes]) -> list[str]:
        if self._skipping and parts:
            # the first complete part is the end of the line that was cut
            self._skipping = False
            parts = parts[1:]
        return [self._decode(part) for part in parts]

    def _decode(self, part: bytes) -> str:
        if len(part) > self.max_bytes:
            text = part[: self.max_bytes].decode("utf-8", "replace") + CUT_MARKER
        else:
            text = part.decode("utf-8", "replace")
        return text.replace("\x00", "\ufffd") if "\x00" in text else text
