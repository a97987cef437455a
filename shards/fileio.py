"""The project's one way to write a file atomically and to checksum one.

* `atomic_write(path, data)`: the bytes (or text, or whatever a writer callback puts into the
  open binary file) go to `path + ".tmp"`, are fsynced, then renamed over `path`: a reader sees
  the old file or the whole new one, never a prefix, even after a crash or `kill -9`.
* Out-of-space errors inside the write become a `DiskFullError` that names the file (one line
  for the user; only the `.tmp` is left behind and a rerun resumes).
* `sha256_file(path)`: hex sha256 of a file's bytes, read in 4 MiB chunks.

Ground floor: imports nothing of the project, so `shards/`, `train/` and `corpus/` all share it.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from typing import IO, Any, Callable, Iterator, Union

_CHUNK = 1 << 22


class DiskFullError(Exception):
    """The disk (or the file-size limit) ran out while writing; names the file. Only `.tmp`
    files can be left behind, and a rerun of the same build resumes once space is freed."""


_FULL = {28, 27, 122}  # ENOSPC, EFBIG, EDQUOT


@contextmanager
def writing(path: str) -> Iterator[None]:
    """Turn out-of-space errors inside the block into a DiskFullError naming `path`."""
    try:
        yield
    except OSError as e:
        short_write = e.errno is None and "written" in str(e)  # numpy's tofile reports a short fwrite so
        if e.errno in _FULL or short_write:
            why = os.strerror(e.errno) if e.errno else str(e)
            raise DiskFullError(f"out of disk space while writing {path} ({why}); "
                                "free space and rerun the same command to resume") from None
        raise


def fsync_rename(tmp: str, final: str) -> None:
    """fsync an already written `tmp`, then rename it to `final` (the commit point)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


Payload = Union[bytes, str, Callable[[IO[bytes]], Any]]


def atomic_write(path: str, data: Payload) -> None:
    """Write `data` (bytes, UTF-8 text, or a callback given the open binary file) to `path`
    under a `.tmp` name, fsync, rename."""
    tmp = path + ".tmp"
    with writing(tmp), open(tmp, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_file(path: str) -> str:
    """Hex sha256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
