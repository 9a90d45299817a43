"""Crash-safe file writes: temp file, fsync, rename, fsync the directory.

A reader sees either the old content or the new, never half of either, whatever kill -9 or a power
cut interrupts. Used for tunes, stored playlists, the player state and the knock replay cache.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    path = Path(path)
    directory = path.parent
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(directory)


def remove_durably(path: str | Path) -> None:
    path = Path(path)
    path.unlink()
    fsync_dir(path.parent)


def rename_durably(src: str | Path, dst: str | Path) -> None:
    src, dst = Path(src), Path(dst)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def clean_stale_temps(directory: str | Path) -> int:
    """Remove temp files a crash left behind (``.<name>.<pid>.tmp``); returns how many."""
    n = 0
    for p in Path(directory).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            n += 1
    return n
