"""How tunes look on the wire: MPD song objects (``file``, ``Last-Modified``, tags, ``Time``,
``duration``, ``Pos``, ``Id``, ``Prio``) and directory entries."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pi_appliance.library import LibraryTune
    from pi_appliance.mpd.session import Session
    from pi_appliance.player import QueueEntry

INLINE_SCHEMES = ("rtttl:", "beep:")


def is_inline(uri: str) -> bool:
    return uri.startswith(INLINE_SCHEMES)


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def round_s(seconds: float) -> int:
    """MPD's RoundS: to the nearest second, halves up."""
    return int(seconds + 0.5)


def _song(session: Session, uri: str, title: str, duration_us: int, mtime: float | None, out: list[str]) -> None:
    out.append(f"file: {uri}\n")
    if mtime is not None:
        out.append(f"Last-Modified: {iso(mtime)}\n")
    if title and "Title" in session.tag_mask:
        out.append(f"Title: {title}\n")
    seconds = duration_us / 1e6
    out.append(f"Time: {round_s(seconds)}\nduration: {seconds:.3f}\n")


def library_song(session: Session, tune: LibraryTune, out: list[str]) -> None:
    _song(session, tune.uri, tune.title, tune.duration_us, tune.mtime, out)


def queue_song(session: Session, entry: QueueEntry, pos: int, out: list[str]) -> None:
    mtime = None
    if not is_inline(entry.uri):
        try:
            mtime = session.library.lookup(entry.uri).mtime
        except Exception:  # a tune removed from the store still plays from the queue
            mtime = None
    _song(session, entry.uri, entry.title, entry.tune.duration_us, mtime, out)
    out.append(f"Pos: {pos}\nId: {entry.id}\n")
    if entry.prio:
        out.append(f"Prio: {entry.prio}\n")
