"""multipart/form-data parsed from a spooled request body on disk.

The body is memory-mapped and searched for boundaries; the file part is copied to its own
temporary file in 1 MB slices, so a 50 MB upload is never held in memory as a whole.
"""

from __future__ import annotations

import mmap
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadRequest

MAX_FIELD_BYTES = 64 * 1024
_SLICE = 1 << 20
_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_PARAM = re.compile(r'(\w+\*?)=(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))')


@dataclass
class FilePart:
    name: str
    filename: str
    path: Path
    size: int


@dataclass
class FormData:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[FilePart] = field(default_factory=list)


def boundary_of(content_type: str) -> bytes:
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadRequest(
            "send the file as multipart/form-data with a part named 'file'",
            code="missing_file",
            details={"field": "file"},
        )
    match = _BOUNDARY.search(content_type)
    if not match:
        raise BadRequest("multipart/form-data without a boundary", code="invalid_multipart")
    return (match.group(1) or match.group(2)).encode("latin-1")


def _disposition(headers: bytes) -> dict[str, str]:
    for line in headers.decode("utf-8", errors="replace").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-disposition":
            return {
                m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
                for m in _PARAM.finditer(value)
            }
    return {}


def parse_multipart(body: Path, content_type: str, spool_dir: Path) -> FormData:
    """Fields and files of a multipart body stored at ``body``; file parts land in
    ``spool_dir`` (the caller deletes them)."""
    delimiter = b"--" + boundary_of(content_type)
    form = FormData()
    if body.stat().st_size == 0:
        return form
    with body.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = data.find(delimiter)
        if pos < 0:
            raise BadRequest("the multipart body has no boundary line", code="invalid_multipart")
        while True:
            pos += len(delimiter)
            if data[pos : pos + 2] == b"--":
                break
            head_end = data.find(b"\r\n\r\n", pos)
            if head_end < 0:
                raise BadRequest("a multipart part has no header end", code="invalid_multipart")
            params = _disposition(data[pos + 2 : head_end])
            start = head_end + 4
            end = data.find(b"\r\n" + delimiter, start)
            if end < 0:
                raise BadRequest("the multipart body is truncated", code="invalid_multipart")
            _take_part(form, params, data, start, end, spool_dir)
            pos = end + 2
    return form


def _take_part(
    form: FormData, params: dict[str, str], data: mmap.mmap, start: int, end: int, spool: Path
) -> None:
    name = params.get("name", "")
    if "filename" in params:
        with tempfile.NamedTemporaryFile(dir=spool, prefix="upload-part-", delete=False) as out:
            for offset in range(start, end, _SLICE):
                out.write(data[offset : min(offset + _SLICE, end)])
        form.files.append(FilePart(name, params["filename"], Path(out.name), end - start))
        return
    if end - start > MAX_FIELD_BYTES:
        raise BadRequest(
            f"form field {name!r} is {end - start} bytes; the limit is {MAX_FIELD_BYTES}",
            code="invalid_field",
            details={"field": name},
        )
    form.fields[name] = data[start:end].decode("utf-8", errors="replace")
