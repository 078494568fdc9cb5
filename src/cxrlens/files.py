"""Files written atomically: a reader sees the old file or the new one, never a part, even if the writer is killed.

:func:`atomic_write_bytes` writes into an unnamed ``O_TMPFILE`` inode (a named temp file where the file system lacks
it) in the target's directory, fsyncs, and links/renames it into place. Every artefact file of every stage goes
through here (:mod:`cxrlens.workspace` builds whole artefact directories on top of it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_parquet",
    "atomic_write_text",
    "dir_size",
    "file_sha256",
    "fsync_dir",
]


def fsync_dir(directory: Path) -> None:
    """fsync a directory (so a rename inside it is durable); errors are ignored (not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400


def _link_fd(fd: int, dest: Path) -> None:
    """Give the unnamed ``O_TMPFILE`` inode ``fd`` the name ``dest`` (``linkat`` through ``/proc/self/fd``).

    ``os.link`` calls plain ``link(2)``, which does not follow the ``/proc`` magic link, hence ctypes.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    src = f"/proc/self/fd/{fd}".encode()
    if libc.linkat(_AT_FDCWD, src, _AT_FDCWD, os.fsencode(dest), _AT_SYMLINK_FOLLOW) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(dest))


def atomic_write_bytes(path: str | Path, data: bytes | Iterable[bytes]) -> Path:
    """Write ``data`` (bytes or an iterable of chunks) to ``path`` atomically; returns ``path``.

    The content is written to an unnamed inode in the same directory (``O_TMPFILE``), fsynced, linked under a
    temporary name and renamed over ``path``. If the process dies before the rename, nothing is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        fd = os.open(path.parent, os.O_TMPFILE | os.O_WRONLY, 0o644)
    except (AttributeError, OSError) as exc:  # no O_TMPFILE (macOS, some file systems)
        if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        return path
    try:
        with os.fdopen(fd, "wb", closefd=False) as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fd)
        tmp_name = path.parent / f".{path.name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp_name.unlink()
        _link_fd(fd, tmp_name)
        os.replace(tmp_name, path)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text, written atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Pretty JSON (sorted keys, UTF-8, trailing newline), written atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def atomic_write_parquet(path: str | Path, table: Any) -> Path:
    """A pandas DataFrame or pyarrow Table as parquet (zstd), written atomically."""

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return atomic_write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """For writers that need a file name: yields a temp path beside ``path``; renamed over it on success.

    On an exception the temp file is removed. A SIGKILL can leave ``.<name>.<pid>.tmp`` behind (never ``path``
    itself); such leftovers of dead processes are removed by the next :func:`cxrlens.workspace.run_stage` in that
    directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def dir_size(path: str | Path) -> int:
    """Total bytes of regular files under ``path`` (0 if missing)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


# -------------------------------------------------------------------------------------------------------- locking
