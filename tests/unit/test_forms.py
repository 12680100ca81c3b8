"""The streaming form parser without a server: chunks in, fields and spool files out."""

from __future__ import annotations

from pathlib import Path

import pytest

from energyops_ext.errors import BadRequest, EnergyOpsError, TooLarge
from energyops_ext.forms import MAX_FIELD_BYTES, StreamingForm

BOUNDARY = "unitboundary"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (
        f'; filename="{filename}"' if filename is not None else ""
    )
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def feed_all(form: StreamingForm, data: bytes, size: int) -> None:
    for offset in range(0, len(data), size):
        form.feed(data[offset : offset + size])
        if form.needs_flush:
            form.flush()


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1 << 20])
def test_fields_and_files_in_any_chunking(tmp_path: Path, chunk: int) -> None:
    content = bytes(range(256)) * 40 + f"\r\n--{BOUNDARY}x".encode()  # a near-boundary inside
    data = body(
        part("mode", b"replace"),
        part("file", content, "prices.csv"),
        part("note", "d\u00e9j\u00e0".encode()),
        part("empty", b"", "nothing.csv"),
    )
    form = StreamingForm(CTYPE, tmp_path, 10**9, "1 GB")
    feed_all(form, data, chunk)
    result = form.finish()
    assert result.fields == {"mode": "replace", "note": "d\u00e9j\u00e0"}
    assert [(f.name, f.filename, f.size) for f in result.files] == [
        ("file", "prices.csv", len(content)),
        ("empty", "nothing.csv", 0),
    ]
    assert [f.path.read_bytes() for f in result.files if f.path] == [content, b""]
    form.close()
    assert list(tmp_path.iterdir()) == []


def test_a_file_part_is_on_disk_as_soon_as_it_ends(tmp_path: Path) -> None:
    data = body(part("file", b"a,b\n1,2\n", "x.csv"), part("mode", b"upsert"))
    cut = data.index(b'name="mode"')
    form = StreamingForm(CTYPE, tmp_path, 10**9, "1 GB")
    form.feed(data[:cut])
    assert form.needs_flush
    form.flush()
    (spooled,) = tmp_path.iterdir()
    assert spooled.read_bytes() == b"a,b\n1,2\n"
    form.feed(data[cut:])
    assert form.finish().fields == {"mode": "upsert"}
    form.close()


def test_large_file_parts_are_written_in_slices(tmp_path: Path) -> None:
    content = b"x" * (3 << 20)
    form = StreamingForm(CTYPE, tmp_path, 10**9, "1 GB")
    head = part("file", content, "big.csv")
    form.feed(head[: 2 << 20])
    assert form.needs_flush and form.buffered >= 1 << 20
    form.flush()
    assert form.buffered == 0
    (spooled,) = tmp_path.iterdir()
    assert spooled.stat().st_size > 1 << 20  # written while the part is still coming
    form.feed(head[2 << 20 :] + f"--{BOUNDARY}--\r\n".encode())
    assert form.finish().files[0].path == spooled and spooled.read_bytes() == content


# (what, content type, body, error, code, message fragment)
BAD: list[tuple[str, str, bytes, type[EnergyOpsError], str, str]] = [
    ("not multipart", "application/json", b"{}", BadRequest, "missing_file", "multipart"),
    ("no boundary", "multipart/form-data", b"", BadRequest, "invalid_multipart", "boundary"),
    ("no boundary line", CTYPE, b"hello\r\n", BadRequest, "invalid_multipart", "malformed"),
    (
        "header without a colon",
        CTYPE,
        f"--{BOUNDARY}\r\nbroken header\r\n\r\n".encode(),
        BadRequest,
        "invalid_multipart",
        "malformed",
    ),
    ("truncated", CTYPE, part("file", b"1,2", "a.csv"), BadRequest, "invalid_multipart", "trunc"),
    (
        "a field past the limit",
        CTYPE,
        part("sheet", b"x" * (MAX_FIELD_BYTES + 1)),
        BadRequest,
        "invalid_field",
        "form field 'sheet' is over 65536 bytes",
    ),
    (
        "too many parts",
        CTYPE,
        body(*[part(f"f{i}", b"1") for i in range(101)]),
        BadRequest,
        "invalid_multipart",
        "more than 100 parts",
    ),
    (
        "a body past the limit",
        CTYPE,
        part("file", b"x" * 5000, "a.csv"),
        TooLarge,
        "too_large",
        "the upload is over 5.1 KB; the limit is 4 KB",  # the body so far, chunk by chunk
    ),
]


@pytest.mark.parametrize(
    ("what", "ctype", "data", "error", "code", "fragment"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_bodies(
    tmp_path: Path,
    what: str,
    ctype: str,
    data: bytes,
    error: type[EnergyOpsError],
    code: str,
    fragment: str,
) -> None:
    with pytest.raises(error) as caught:
        form = StreamingForm(ctype, tmp_path, 5000 if error is TooLarge else 10**9, "4 KB")
        feed_all(form, data, 1000)
        form.finish()
    assert caught.value.code == code, what
    assert fragment in caught.value.message, (what, caught.value.message)


def test_an_empty_body_is_an_empty_form(tmp_path: Path) -> None:
    form = StreamingForm(CTYPE, tmp_path, 5000, "4 KB")
    result = form.finish()
    assert result.fields == {} and result.files == []


def test_close_while_a_part_is_open_removes_its_file(tmp_path: Path) -> None:
    form = StreamingForm(CTYPE, tmp_path, 10**9, "1 GB")
    form.feed(part("file", b"y" * (2 << 20), "a.csv")[:-100])
    form.flush()
    assert len(list(tmp_path.iterdir())) == 1
    form.close()
    form.flush()  # a flush that was still on its way does nothing after close
    assert list(tmp_path.iterdir()) == []
