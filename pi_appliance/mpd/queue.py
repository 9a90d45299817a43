"""The queue (MPD protocol: "The Queue"). Positions are 0-based; ranges are ``START:END``."""

from __future__ import annotations

from pi_appliance.library import NoSuchTune
from pi_appliance.mpd.errors import Ack, MpdError
from pi_appliance.mpd.registry import INT, RANGE, UINT, Perm, Section, bounded_uint, opt, rest
from pi_appliance.mpd.session import Session
from pi_appliance.mpd.songs import is_inline, queue_song

SECTION = Section("queue")
command = SECTION.command


def _position(conn: Session, text: str | None) -> int | None:
    """An insert position: 0..length, "Number too large" beyond (MPD's ParseInsertPosition)."""
    if text is None:
        return None
    return bounded_uint(len(conn.player.entries()))(text)


def _uris_for(conn: Session, uri: str) -> list[str]:
    """A tune URI, an inline tune, or a directory of the library (added recursively)."""
    if is_inline(uri):
        return [uri]
    try:
        conn.library.lookup(uri)
        return [uri]
    except NoSuchTune:
        pass
    prefix = uri.strip("/")
    uris = [t.uri for t in conn.library.tunes() if not prefix or t.uri.startswith(prefix + "/")]
    if not uris and prefix not in conn.library.directories():
        raise MpdError(Ack.NO_EXIST, "No such directory")
    return uris


def _span(conn: Session, rng: tuple[int, int | None]) -> tuple[int, int]:
    start, end = rng
    length = len(conn.player.entries())
    if end is None:
        end = length
    if start > length or end > length:
        raise MpdError(Ack.ARG, "Bad song index")
    return start, end


@command("add", Perm.ADD, str, opt())
def add(conn: Session, uri: str, position: str | None = None) -> None:
    """Adds the file URI to the playlist (directories add recursively). URI can also be a single
    file, or an inline tune: ``rtttl:NAME:d=4,o=5,b=100:c,e,g`` or ``beep:-f 440 -l 200``."""
    pos = _position(conn, position)
    for i, u in enumerate(_uris_for(conn, uri)):
        conn.player.add(u, None if pos is None else pos + i)


@command("addid", Perm.ADD, str, opt())
def addid(conn: Session, uri: str, position: str | None = None) -> str:
    """Adds a song to the playlist (non-recursive) and returns the song id."""
    pos = _position(conn, position)
    if not is_inline(uri):
        conn.library.lookup(uri)  # a directory is not a song: No such directory
    return f"Id: {conn.player.add(uri, pos)}\n"


@command("clear", Perm.PLAYER)
def clear(conn: Session) -> None:
    """Clears the queue."""
    conn.player.clear()


@command("delete", Perm.PLAYER, RANGE)
def delete(conn: Session, rng: tuple[int, int | None]) -> None:
    """Deletes a song from the playlist (a position or a START:END range)."""
    start, end = _span(conn, rng)
    if start == end:
        return
    conn.player.delete(start, end)


@command("deleteid", Perm.PLAYER, UINT)
def deleteid(conn: Session, songid: int) -> None:
    """Deletes the song SONGID from the playlist."""
    conn.player.delete_id(songid)


@command("move", Perm.PLAYER, RANGE, UINT)
def move(conn: Session, rng: tuple[int, int | None], to: int) -> None:
    """Moves the song at FROM or range of songs at START:END to TO in the playlist."""
    start, end = _span(conn, rng)
    conn.player.move(start, end, to)


@command("moveid", Perm.PLAYER, UINT, UINT)
def moveid(conn: Session, songid: int, to: int) -> None:
    """Moves the song with FROM (songid) to TO (playlist index) in the playlist."""
    conn.player.move_id(songid, to)


@command("playlist", Perm.READ)
def playlist(conn: Session) -> str:
    """Displays the queue (deprecated: use playlistinfo)."""
    return "".join(f"{i}:file: {e.uri}\n" for i, e in enumerate(conn.player.entries()))


@command("playlistid", Perm.READ, opt(UINT))
def playlistid(conn: Session, songid: int | None = None) -> str:
    """Displays a list of songs in the playlist. SONGID is optional and specifies a single song."""
    out: list[str] = []
    entries = conn.player.entries()
    if songid is None:
        for i, e in enumerate(entries):
            queue_song(conn, e, i, out)
        return "".join(out)
    for i, e in enumerate(entries):
        if e.id == songid:
            queue_song(conn, e, i, out)
            return "".join(out)
    raise MpdError(Ack.NO_EXIST, "No such song")


@command("playlistinfo", Perm.READ, opt(RANGE))
def playlistinfo(conn: Session, rng: tuple[int, int | None] | None = None) -> str:
    """Displays a list of all songs in the playlist, or if the optional argument is given,
    displays information only for the song SONGPOS or the range of songs START:END."""
    entries = conn.player.entries()
    start, end = 0, len(entries)
    if rng is not None:
        start = rng[0]
        end = len(entries) if rng[1] is None else min(rng[1], len(entries))
        if start > end:  # MPD's playlist_print_info: an invalid start is fatal
            raise MpdError(Ack.ARG, "Bad song index")
    out: list[str] = []
    for i in range(start, end):
        queue_song(conn, entries[i], i, out)
    return "".join(out)


def _changes(conn: Session, version: int, rng: tuple[int, int | None] | None) -> list[tuple[int, object]]:
    changes = conn.player.changes_since(version)
    if rng is not None:
        start, end = rng
        changes = [(p, e) for p, e in changes if p >= start and (end is None or p < end)]
    return changes  # type: ignore[return-value]


@command("plchanges", Perm.READ, UINT, opt(RANGE))
def plchanges(conn: Session, version: int, rng: tuple[int, int | None] | None = None) -> str:
    """Displays changed songs currently in the playlist since VERSION."""
    out: list[str] = []
    for pos, entry in _changes(conn, version, rng):
        queue_song(conn, entry, pos, out)  # type: ignore[arg-type]
    return "".join(out)


@command("plchangesposid", Perm.READ, UINT, opt(RANGE))
def plchangesposid(conn: Session, version: int, rng: tuple[int, int | None] | None = None) -> str:
    """Displays changed songs currently in the playlist since VERSION, positions and ids only."""
    return "".join(f"cpos: {pos}\nId: {e.id}\n" for pos, e in _changes(conn, version, rng))  # type: ignore[attr-defined]


@command("prio", Perm.PLAYER, bounded_uint(255), rest(RANGE, at_least=1))
def prio(conn: Session, priority: int, ranges: list[tuple[int, int | None]]) -> None:
    """Set the priority of the specified songs (0..255; higher plays first in random mode)."""
    conn.player.prio(priority, [_span(conn, r) for r in ranges])


@command("prioid", Perm.PLAYER, bounded_uint(255), rest(UINT, at_least=1))
def prioid(conn: Session, priority: int, songids: list[int]) -> None:
    """Same as prio, but address the songs with their id."""
    conn.player.prio_id(priority, songids)


@command("shuffle", Perm.PLAYER, opt(RANGE))
def shuffle(conn: Session, rng: tuple[int, int | None] | None = None) -> None:
    """Shuffles the queue. START:END is optional and specifies a range of songs."""
    if rng is None:
        conn.player.shuffle()
    else:
        start, end = _span(conn, rng)
        conn.player.shuffle(start, end)


@command("swap", Perm.PLAYER, UINT, UINT)
def swap(conn: Session, a: int, b: int) -> None:
    """Swaps the positions of SONG1 and SONG2."""
    conn.player.swap(a, b)


@command("swapid", Perm.PLAYER, UINT, UINT)
def swapid(conn: Session, a: int, b: int) -> None:
    """Swaps the positions of SONG1 and SONG2 (both song ids)."""
    conn.player.swap_id(a, b)


__all__ = ["INT", "SECTION"]
