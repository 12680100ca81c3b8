"""Where uploaded files live: one fsspec filesystem under one root, shared by every server.

``storage_url`` chooses it: ``""`` (the data dir's ``files/``), a path or ``file:///shared/dir``
(a directory several servers mount), ``s3://bucket/prefix`` (through s3fs). Keys are generated
here; user-given names never become paths. Every method blocks: callers use threads.

A reader on another server sees a file whole or not at all: local writes go to a temp file in
the same directory and are renamed over the target; an object store publishes an object only
when its upload completes (a failed multipart upload is aborted).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import urlsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem

CHUNK = 1024 * 1024
# Same shape as the sweep in `jupyter energyops cleanup` (runs/cli.py TEMP_FILE).
_TEMP_NAME = re.compile(r"^\..+\.tmp-\d+$")


class Storage(Protocol):
    """A key → bytes store with '/'-separated keys (a directory, or a bucket prefix)."""

    def new_key(self, prefix: str, suffix: str = "") -> str: ...
    def put(self, key: str, data: bytes) -> None: ...
    def put_stream(self, key: str, stream: BinaryIO) -> int: ...
    def put_file(self, key: str, local_path: Path) -> None: ...
    def get(self, key: str) -> bytes: ...
    def get_file(self, key: str, local_path: Path) -> None: ...
    def open(self, key: str) -> BinaryIO: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[tuple[str, int]]: ...
    def url(self, key: str) -> str: ...
    def local_path(self, key: str) -> Path | None: ...
    def path(self, key: str) -> Path: ...


def check_key(key: str) -> str:
    """``key`` if it stays below the root, else ValueError (keys come from new_key, but the
    database or a caller could still hand over anything)."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\x00" in key
        or "\\" in key
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def _temp_sibling(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp-{os.getpid()}")


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A temp path beside ``target``, renamed over it when the block succeeds, removed if not."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class FsspecStorage:
    """Files below ``root`` of an fsspec filesystem (``root`` in the filesystem's own
    spelling: ``/srv/files`` for a local one, ``bucket/prefix`` for S3)."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self._local: Path | None = None
        if isinstance(fs, LocalFileSystem):
            self._local = Path(self.root)
            self._local.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root_url!r})"

    @property
    def root_url(self) -> str:
        """The root as a URL, for logs (never carries credentials)."""
        return str(self.fs.unstrip_protocol(self.root))

    # keys and names

    def new_key(self, prefix: str, suffix: str = "") -> str:
        if suffix and not suffix.startswith("."):
            suffix = "." + suffix
        return check_key(f"{prefix}/{secrets.token_hex(12)}{suffix}")

    def _full(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{check_key(key)}"

    def url(self, key: str) -> str:
        return str(self.fs.unstrip_protocol(self._full(key)))

    def local_path(self, key: str) -> Path | None:
        check_key(key)
        return None if self._local is None else self._local / key

    def path(self, key: str) -> Path:
        """The local path of ``key``; ValueError when the storage is not a local directory.
        Kept for older callers: ``local_path`` says the same without raising."""
        local = self.local_path(key)
        if local is None:
            raise ValueError(f"{self.root_url} is not a local directory")
        return local

    # writes

    def put(self, key: str, data: bytes) -> None:
        local = self.local_path(key)
        if local is None:
            self.fs.pipe_file(self._full(key), data)
            return
        with _replacing(local) as tmp:
            tmp.write_bytes(data)

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        local = self.local_path(key)
        if local is None:
            return self._upload(self._full(key), lambda out: _copy(stream, out))
        with _replacing(local) as tmp, tmp.open("wb") as out:
            return _copy(stream, out)

    def put_file(self, key: str, local_path: Path) -> None:
        local = self.local_path(key)
        if local is None:
            # s3fs uploads big files in parts and aborts the upload when a part fails.
            self.fs.put_file(str(local_path), self._full(key))
            return
        with _replacing(local) as tmp:
            shutil.copyfile(local_path, tmp)

    def _upload(self, path: str, write: Callable[[BinaryIO], int]) -> int:
        # autocommit=False: nothing is published until commit(), so a stream that fails
        # halfway leaves no partial object behind (close() alone would publish it).
        out = self.fs.open(path, "wb", autocommit=False)
        try:
            size = write(out)
            out.close()
            out.commit()
        except BaseException:
            out.discard()
            out.closed = True  # its __del__ would otherwise try to flush again
            raise
        return size

    # reads

    def get(self, key: str) -> bytes:
        local = self.local_path(key)
        if local is not None:
            return local.read_bytes()
        data: bytes = self.fs.cat_file(self._full(key))
        return data

    def get_file(self, key: str, local_path: Path) -> None:
        source = self.local_path(key)
        with _replacing(local_path) as tmp:
            if source is not None:
                shutil.copyfile(source, tmp)
            else:
                self.fs.get_file(self._full(key), str(tmp))

    def open(self, key: str) -> BinaryIO:
        local = self.local_path(key)
        if local is not None:
            return local.open("rb")
        return cast(BinaryIO, self.fs.open(self._full(key), "rb"))

    def exists(self, key: str) -> bool:
        local = self.local_path(key)
        if local is not None:
            return local.is_file()
        return bool(self.fs.isfile(self._full(key)))

    def list(self, prefix: str) -> list[tuple[str, int]]:
        """(name, size) of the files directly under ``prefix`` ("" for the root), by name;
        no directories, no temp files of writes in progress."""
        prefix = prefix.strip("/")
        base = self.root.rstrip("/") + ("/" + check_key(prefix) if prefix else "")
        if self._local is not None:
            return _list_local(Path(base))
        try:
            entries = self.fs.ls(base, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        found = [
            (str(e["name"]).rstrip("/").rsplit("/", 1)[-1], int(e["size"]))
            for e in entries
            if e["type"] == "file" and str(e["name"]).rstrip("/") != base
        ]
        return sorted(found)

    # deletes

    def delete(self, key: str) -> None:
        local = self.local_path(key)
        if local is not None:
            local.unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._full(key))

    def delete_prefix(self, prefix: str) -> None:
        """Remove ``prefix`` and every key below it; nothing there is fine."""
        local = self.local_path(prefix.rstrip("/"))
        if local is not None:
            if local.is_dir() and not local.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    shutil.rmtree(local)
            else:
                local.unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._full(prefix.rstrip("/")), recursive=True)


class LocalStorage(FsspecStorage):
    """Files under one local directory (the default: ``<data_dir>/files``)."""

    def __init__(self, root: Path) -> None:
        super().__init__(LocalFileSystem(), str(Path(root).expanduser().resolve()))


def open_storage(url: str, *, default_root: Path, options: dict[str, Any] | None = None) -> Storage:
    """The storage ``url`` names: ``""`` → ``default_root``; a path or ``file:///dir`` → that
    directory; ``proto://...`` (``s3://bucket/prefix``) → that fsspec filesystem, built with
    ``options`` (s3fs also reads the usual AWS_* variables). Credentials belong in ``options``
    or the environment, never in the URL."""
    if not url:
        return LocalStorage(default_root)
    if "://" not in url:
        return LocalStorage(Path(url))
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError(
            "storage_url must not carry credentials; use storage_options or the environment"
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ValueError(f"storage_url {url!r}: expected file:///absolute/dir")
        return LocalStorage(Path(parts.path))
    kwargs = dict(options or {})
    # Other servers write here too: a cached listing would hide their files.
    kwargs.setdefault("use_listings_cache", False)
    kwargs.setdefault("skip_instance_cache", True)
    try:
        fs, root = fsspec.core.url_to_fs(url, **kwargs)
    except (ImportError, ValueError) as exc:
        raise ValueError(f"storage_url {url!r}: {exc}") from exc
    if not str(root).strip("/"):
        raise ValueError(f"storage_url {url!r}: no bucket or directory")
    return FsspecStorage(fs, str(root))


def _copy(source: BinaryIO, out: BinaryIO) -> int:
    size = 0
    while chunk := source.read(CHUNK):
        out.write(chunk)
        size += len(chunk)
    return size


def _list_local(directory: Path) -> list[tuple[str, int]]:
    try:
        with os.scandir(directory) as entries:
            return sorted(
                (e.name, e.stat(follow_symlinks=False).st_size)
                for e in entries
                if e.is_file(follow_symlinks=False) and not _TEMP_NAME.match(e.name)
            )
    except (FileNotFoundError, NotADirectoryError):
        return []


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
