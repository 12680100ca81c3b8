"""Storage: one behaviour suite over a local directory, a directory shared by two servers and S3.

Each case hands out a writer and a reader: for the shared directory and S3 they are two separate
Storage objects on the same files, as two servers would have.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from energyops_ext.config import EnergyOps, Settings
from energyops_ext.storage import FsspecStorage, LocalStorage, Storage, check_key, open_storage
from tests.s3 import make_bucket, moto_s3

MB = 1024 * 1024


@dataclass
class S3Server:
    endpoint_url: str
    options: dict[str, Any]
    bucket: str


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on loopback with one bucket, for the whole test session."""
    with moto_s3() as (endpoint_url, options):
        yield S3Server(endpoint_url, options, make_bucket(options))


@dataclass
class Pair:
    writer: Storage
    reader: Storage
    kind: str


@pytest.fixture(params=["local", "shared", "s3"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    if request.param == "local":
        storage = open_storage("", default_root=tmp_path / "files")
        return Pair(storage, storage, "local")
    if request.param == "shared":
        url = f"file://{tmp_path / 'shared'}"
        return Pair(
            open_storage(url, default_root=tmp_path / "a"),
            open_storage(url, default_root=tmp_path / "b"),
            "shared",
        )
    s3: S3Server = request.getfixturevalue("s3_server")
    url = f"s3://{s3.bucket}/{secrets.token_hex(4)}"
    return Pair(
        open_storage(url, default_root=tmp_path, options=s3.options),
        open_storage(url, default_root=tmp_path, options=s3.options),
        "s3",
    )


class FailingStream(io.RawIOBase):
    """Gives ``good`` bytes, then fails like a dropped client connection."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise ConnectionResetError("client went away")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def test_put_then_get_on_the_other_server(pair: Pair) -> None:
    key = pair.writer.new_key("scripts", ".py")
    pair.writer.put(key, b"print(1)\n")
    assert pair.reader.get(key) == b"print(1)\n"
    pair.writer.put(key, b"print(2)\n")
    assert pair.reader.get(key) == b"print(2)\n"
    pair.writer.put("empty/file", b"")
    assert pair.reader.get("empty/file") == b""


def test_put_stream_returns_the_size(pair: Pair) -> None:
    data = os.urandom(3 * MB + 17)
    assert pair.writer.put_stream("uploads/a.xlsx", io.BytesIO(data)) == len(data)
    assert pair.reader.get("uploads/a.xlsx") == data
    assert pair.writer.put_stream("uploads/empty.csv", io.BytesIO(b"")) == 0
    assert pair.reader.get("uploads/empty.csv") == b""


def test_a_stream_that_fails_leaves_nothing(pair: Pair) -> None:
    with pytest.raises(ConnectionResetError):
        pair.writer.put_stream("uploads/half.csv", io.BufferedReader(FailingStream(2 * MB)))
    assert not pair.reader.exists("uploads/half.csv")
    assert pair.reader.list("uploads") == []
    local = pair.writer.local_path("uploads")
    if local is not None and local.exists():
        assert list(local.iterdir()) == []  # no temp file left behind


def test_put_file_and_get_file(pair: Pair, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(b"\x00\x01binary\xff" * 1000)
    pair.writer.put_file("inputs/7/prices.bin", source)
    target = tmp_path / "out" / "prices.bin"
    target.parent.mkdir()
    pair.reader.get_file("inputs/7/prices.bin", target)
    assert target.read_bytes() == source.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["prices.bin"]


def test_get_of_a_missing_key_raises_file_not_found(pair: Pair, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        pair.reader.get("scripts/missing.py")
    with pytest.raises(FileNotFoundError):
        pair.reader.open("scripts/missing.py")
    with pytest.raises(FileNotFoundError):
        pair.reader.get_file("scripts/missing.py", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_open_reads_in_chunks(pair: Pair) -> None:
    data = os.urandom(MB + 5)
    pair.writer.put("artifacts/1/result.parquet", data)
    chunks = []
    with pair.reader.open("artifacts/1/result.parquet") as stream:
        while chunk := stream.read(64 * 1024):
            chunks.append(chunk)
    assert b"".join(chunks) == data
    assert len(chunks) == 17


def test_list_gives_direct_children_with_sizes(pair: Pair) -> None:
    pair.writer.put("runs/1/b.csv", b"12345")
    pair.writer.put("runs/1/a.txt", b"1")
    pair.writer.put("runs/1/deeper/c.txt", b"123")
    pair.writer.put("runs/10/d.txt", b"1234")
    assert pair.reader.list("runs/1") == [("a.txt", 1), ("b.csv", 5)]
    assert pair.reader.list("runs/1/") == [("a.txt", 1), ("b.csv", 5)]
    assert pair.reader.list("runs/1/deeper") == [("c.txt", 3)]
    assert pair.reader.list("runs") == []
    assert pair.reader.list("nothing/here") == []
    assert pair.reader.list("") == []


def test_list_hides_writes_in_progress(pair: Pair) -> None:
    pair.writer.put("runs/1/a.txt", b"1")
    local = pair.writer.local_path("runs/1/a.txt")
    if local is not None:  # an object store has no temp files
        (local.parent / ".b.txt.0a1b2c3d.tmp-4242").write_bytes(b"half")
    assert pair.reader.list("runs/1") == [("a.txt", 1)]


def test_delete_and_exists(pair: Pair) -> None:
    pair.writer.put("scripts/a.py", b"x")
    assert pair.reader.exists("scripts/a.py")
    assert not pair.reader.exists("scripts")  # a prefix is not a file
    pair.reader.delete("scripts/a.py")
    assert not pair.writer.exists("scripts/a.py")
    pair.reader.delete("scripts/a.py")  # already gone: fine
    pair.reader.delete("never/was.py")


def test_delete_prefix_removes_everything_below_it_only(pair: Pair) -> None:
    for key in ("runs/1/a", "runs/1/deep/er/b", "runs/10/c", "runs/1x"):
        pair.writer.put(key, b"data")
    pair.reader.delete_prefix("runs/1")
    for key in ("runs/1/a", "runs/1/deep/er/b"):
        assert not pair.writer.exists(key)
    assert pair.writer.exists("runs/10/c")
    assert pair.writer.exists("runs/1x")
    pair.reader.delete_prefix("runs/1")  # gone already: fine
    pair.reader.delete_prefix("never/was")


def test_new_keys_are_fresh_and_valid(pair: Pair) -> None:
    keys = {pair.writer.new_key("uploads", "xlsx") for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith("uploads/") and key.endswith(".xlsx")
        assert check_key(key) == key
    assert pair.writer.new_key("scripts").count(".") == 0


BAD_KEYS = ["", "/etc/passwd", "../x", "a/../../x", "a/..", "a\x00b", "a\\b", "a//b", "./a", "a/"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(pair: Pair, key: str, tmp_path: Path) -> None:
    calls: list[Callable[[], object]] = [
        lambda: pair.writer.put(key, b"x"),
        lambda: pair.writer.put_stream(key, io.BytesIO(b"x")),
        lambda: pair.writer.put_file(key, tmp_path / "any"),
        lambda: pair.writer.get(key),
        lambda: pair.writer.get_file(key, tmp_path / "out"),
        lambda: pair.writer.open(key),
        lambda: pair.writer.delete(key),
        lambda: pair.writer.exists(key),
        lambda: pair.writer.url(key),
        lambda: pair.writer.local_path(key),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="invalid storage key"):
            call()


@pytest.mark.parametrize("prefix", ["", "/", "../x", "a/../b", "a\\b"])
def test_bad_prefixes_are_refused(pair: Pair, prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        pair.writer.delete_prefix(prefix)
    with pytest.raises(ValueError, match="invalid storage key"):
        pair.writer.new_key(prefix)


def test_url_names_the_file_without_secrets(pair: Pair, tmp_path: Path) -> None:
    url = pair.writer.url("scripts/a.py")
    assert url.endswith("/scripts/a.py")
    assert "testing" not in url
    if pair.kind == "s3":
        assert url.startswith("s3://energyops-")
    else:
        assert url.startswith("file:///") and str(tmp_path) in url


def test_local_path_only_for_a_local_directory(pair: Pair) -> None:
    pair.writer.put("scripts/a.py", b"x")
    local = pair.reader.local_path("scripts/a.py")
    if pair.kind == "s3":
        assert local is None
        with pytest.raises(ValueError, match="not a local directory"):
            pair.reader.path("scripts/a.py")
    else:
        assert local is not None and local.read_bytes() == b"x"
        assert pair.reader.path("scripts/a.py") == local


@pytest.mark.slow
def test_a_big_file_goes_through_put_file_and_open(pair: Pair, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with source.open("wb") as out:
        for _ in range(20):
            block = os.urandom(MB)
            digest.update(block)
            out.write(block)
    pair.writer.put_file("artifacts/big.bin", source)
    assert pair.reader.list("artifacts") == [("big.bin", 20 * MB)]
    read = hashlib.sha256()
    with pair.reader.open("artifacts/big.bin") as stream:
        while chunk := stream.read(MB):
            assert len(chunk) <= MB
            read.update(chunk)
    assert read.hexdigest() == digest.hexdigest()


# open_storage and settings


def test_empty_url_is_the_default_directory(tmp_path: Path) -> None:
    storage = open_storage("", default_root=tmp_path / "files")
    assert isinstance(storage, LocalStorage)
    assert storage.local_path("a/b") == tmp_path / "files" / "a" / "b"
    assert (tmp_path / "files").is_dir()


@pytest.mark.parametrize("form", ["plain", "file"])
def test_a_path_or_file_url_is_that_directory(tmp_path: Path, form: str) -> None:
    shared = tmp_path / "shared dir"
    url = str(shared) if form == "plain" else f"file://{shared}"
    storage = open_storage(url, default_root=tmp_path / "unused")
    assert storage.local_path("k") == shared / "k"
    assert not (tmp_path / "unused").exists()


def test_s3_url_opens_the_bucket_prefix(s3_server: S3Server, tmp_path: Path) -> None:
    url = f"s3://{s3_server.bucket}/some/prefix/"
    storage = open_storage(url, default_root=tmp_path, options=s3_server.options)
    assert isinstance(storage, FsspecStorage)
    assert storage.url("k") == f"s3://{s3_server.bucket}/some/prefix/k"
    storage.put("k", b"v")
    assert "endpoint" not in repr(storage) and "testing" not in repr(storage)


def test_s3_reads_credentials_from_the_environment(s3_server: S3Server, tmp_path: Path) -> None:
    # moto_s3() set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL: no options.
    storage = open_storage(f"s3://{s3_server.bucket}/env", default_root=tmp_path)
    storage.put("k", b"v")
    assert storage.get("k") == b"v"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("s3://AKIA:secret@bucket/prefix", "must not carry credentials"),
        ("file://otherhost/dir", "expected file:///absolute/dir"),
        ("nosuchproto://x/y", "nosuchproto"),
        ("s3://", "no bucket or directory"),
    ],
)
def test_bad_storage_urls(url: str, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        open_storage(url, default_root=tmp_path)
    assert "secret" not in str(info.value) or "AKIA" not in url


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("scripts/abc.py", True),
        ("a", True),
        ("a/b/c.d.e", True),
        ("a/..b", True),
        *((bad, False) for bad in BAD_KEYS),
    ],
)
def test_check_key(key: str, ok: bool) -> None:
    if ok:
        assert check_key(key) == key
    else:
        with pytest.raises(ValueError, match="invalid storage key"):
            check_key(key)


def test_storage_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENERGYOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ENERGYOPS_STORAGE_URL", raising=False)
    settings = EnergyOps().to_settings()
    assert (settings.storage_url, settings.storage_options) == ("", {})
    monkeypatch.setenv("ENERGYOPS_STORAGE_URL", "s3://from-env/files")
    assert EnergyOps().to_settings().storage_url == "s3://from-env/files"
    config = Config(
        {"EnergyOps": {"storage_url": "file:///srv/eo", "storage_options": {"anon": True}}}
    )
    settings = EnergyOps(config=config).to_settings()
    assert (settings.storage_url, settings.storage_options) == ("file:///srv/eo", {"anon": True})
    assert hash(settings) == hash(settings)
    assert Settings.for_data_dir(tmp_path).storage_options == {}


def test_s3_multipart_stream_is_published_only_when_complete(
    s3_server: S3Server, tmp_path: Path
) -> None:
    # 5 MiB parts (the S3 minimum) so a 12 MiB stream takes a multipart upload.
    options = {**s3_server.options, "default_block_size": 5 * MB}
    url = f"s3://{s3_server.bucket}/{secrets.token_hex(4)}"
    storage = open_storage(url, default_root=tmp_path, options=options)
    data = os.urandom(12 * MB)
    assert storage.put_stream("uploads/big.csv", io.BytesIO(data)) == len(data)
    assert storage.get("uploads/big.csv") == data

    with pytest.raises(ConnectionResetError):
        storage.put_stream("uploads/half.csv", io.BufferedReader(FailingStream(12 * MB)))
    assert storage.list("uploads") == [("big.csv", len(data))]
    assert isinstance(storage, FsspecStorage)
    pending = storage.fs.call_s3("list_multipart_uploads", Bucket=s3_server.bucket)
    assert pending.get("Uploads", []) == []
