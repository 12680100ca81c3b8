"""multipart/form-data parsed while the request body streams in.

``StreamingForm`` drives python-multipart's push parser: each chunk of the body is parsed as it
arrives (``feed``, no I/O, cheap enough for the event loop), form fields are kept in memory up
to ``MAX_FIELD_BYTES``, and the bytes of file parts are buffered until ``flush`` writes them to
one spool file per part (from a worker thread). A file part is on disk once, in its own file,
the moment its body has arrived; nothing copies it again. Limits and malformed bodies raise
the domain errors (413 ``TooLarge``, 400 ``BadRequest``) as soon as the offending byte is seen.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from .errors import BadRequest, TooLarge, format_size

MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 100
FLUSH_BYTES = 1 << 20


@dataclass
class FilePart:
    name: str
    filename: str
    path: Path | None = None  # the spool file, from the first flush after the part began
    size: int = 0


@dataclass
class FormData:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[FilePart] = field(default_factory=list)


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type (400 for anything else)."""
    media, options = parse_options_header(content_type)
    if media != b"multipart/form-data":
        raise BadRequest(
            "send the file as multipart/form-data with a part named 'file'",
            code="missing_file",
            details={"field": "file"},
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary", code="invalid_multipart")
    return boundary


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    file: FilePart | None = None
    value: bytearray = field(default_factory=bytearray)


class StreamingForm:
    """One request's form: ``feed`` each chunk, ``flush`` in a thread when ``buffered`` is
    large, ``finish`` after the last chunk, ``close`` to remove the spool files."""

    def __init__(
        self, content_type: str, spool_dir: Path, max_body_bytes: int, limit_text: str
    ) -> None:
        self.spool_dir = spool_dir
        self.max_body_bytes = max_body_bytes
        self.limit_text = limit_text  # the limit as the client should read it in a 413
        self.form = FormData()
        self.received = 0
        self.buffered = 0
        self._pending: list[tuple[FilePart, bytes]] = []
        self._handles: dict[int, IO[bytes]] = {}
        self._part: _Part | None = None
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._parts = 0
        self._file_ended = False
        self._io = threading.Lock()  # a flush may still run in its thread when close comes
        self._closed = False
        try:
            self._parser = MultipartParser(
                boundary_of(content_type),
                {
                    "on_part_begin": self._on_part_begin,
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                    "on_part_data": self._on_part_data,
                    "on_part_end": self._on_part_end,
                },
            )
        except FormParserError as exc:
            raise BadRequest(
                f"unreadable multipart body: {exc}", code="invalid_multipart"
            ) from None

    # --- the request side ---

    @property
    def needs_flush(self) -> bool:
        """Enough file bytes are buffered, or a file part has ended: its file is completed
        on disk while the rest of the body streams in."""
        return self.buffered >= FLUSH_BYTES or self._file_ended

    def feed(self, chunk: bytes) -> None:
        """Parse one chunk of the body (no I/O)."""
        self.received += len(chunk)
        if self.received > self.max_body_bytes:
            raise TooLarge(
                f"the upload is over {format_size(self.received)}; the limit is {self.limit_text}",
                details={"limit": self.max_body_bytes},
            )
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise BadRequest(
                f"the multipart body is malformed at byte {self.received - len(chunk) + exc.offset}"
                f": {exc}",
                code="invalid_multipart",
            ) from None

    def flush(self) -> None:
        """Write the buffered bytes of file parts to their spool files (blocking I/O)."""
        pending, self._pending, self.buffered = self._pending, [], 0
        self._file_ended = False
        with self._io:
            if self._closed:
                return
            for part, data in pending:
                handle = self._handles.get(id(part))
                if handle is None:
                    handle = self._open(part)
                handle.write(data)
            for key in [k for k in self._handles if self._done(k)]:
                self._handles.pop(key).close()

    def finish(self) -> FormData:
        """The form once the whole body is in (blocking I/O: the last flush)."""
        if self.received and self._parser.state != MultipartState.END:
            raise BadRequest("the multipart body is truncated", code="invalid_multipart")
        self.flush()
        return self.form

    def close(self) -> None:
        """Close and remove every spool file (blocking I/O)."""
        with self._io:
            self._closed = True
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()
            for part in self.form.files:
                if part.path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        part.path.unlink()

    # --- parser callbacks ---

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise BadRequest(f"the form has more than {MAX_PARTS} parts", code="invalid_multipart")
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        assert self._part is not None
        name = self._header_name.decode("latin-1").strip().lower()
        self._part.headers[name] = self._header_value.decode("latin-1")
        self._header_name, self._header_value = bytearray(), bytearray()

    def _on_headers_finished(self) -> None:
        part = self._part
        assert part is not None
        _media, params = parse_options_header(part.headers.get("content-disposition", ""))
        # Header bytes went through latin-1 unchanged; clients send names as UTF-8.
        part.name = params.get(b"name", b"").decode("utf-8", errors="replace")
        if b"filename" in params:
            filename = params[b"filename"].decode("utf-8", errors="replace")
            part.file = FilePart(part.name, filename)
            self.form.files.append(part.file)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        assert part is not None
        if part.file is not None:
            self._pending.append((part.file, data[start:end]))
            part.file.size += end - start
            self.buffered += end - start
            return
        part.value += data[start:end]
        if len(part.value) > MAX_FIELD_BYTES:
            raise BadRequest(
                f"form field {part.name!r} is over {MAX_FIELD_BYTES} bytes; "
                f"the limit is {MAX_FIELD_BYTES}",
                code="invalid_field",
                details={"field": part.name},
            )

    def _on_part_end(self) -> None:
        part, self._part = self._part, None
        assert part is not None
        if part.file is None:
            self.form.fields[part.name] = part.value.decode("utf-8", errors="replace")
        else:
            self._file_ended = True
            if part.file.size == 0:
                self._pending.append((part.file, b""))  # an empty file gets a spool file too

    # --- spool files ---

    def _open(self, part: FilePart) -> IO[bytes]:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in flush or close
            dir=self.spool_dir, prefix="upload-part-", delete=False
        )
        part.path = Path(handle.name)
        self._handles[id(part)] = handle
        return handle

    def _done(self, key: int) -> bool:
        """A spool file can be closed once its part has ended (it is not the current one)."""
        current = self._part.file if self._part is not None else None
        return current is None or id(current) != key
