"""Stored playlists (MPD protocol: "Stored playlists"). They live in the state directory as
``playlists/NAME.m3u``; every change raises ``stored_playlist``."""

from __future__ import annotations

from pi_appliance.library import BadName, NoSuchTune
from pi_appliance.mpd.errors import Ack, MpdError
from pi_appliance.mpd.registry import RANGE, UINT, Perm, Section, opt
from pi_appliance.mpd.session import Session
from pi_appliance.mpd.songs import is_inline, iso, library_song
from pi_appliance.music import TuneError

SECTION = Section("stored")
command = SECTION.command


def _bad_name(fn):  # type: ignore[no-untyped-def]
    """Library BadName → MPD's own text for playlist names."""

    def wrapper(conn: Session, *args):  # type: ignore[no-untyped-def]
        try:
            return fn(conn, *args)
        except BadName as e:
            if type(e) is not BadName:  # the library's BadIndex: a position, not a name
                raise
            raise MpdError(Ack.ARG, "Bad playlist name") from None

    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


@command("listplaylists", Perm.READ)
def listplaylists(conn: Session) -> str:
    """Prints a list of the playlist directory. After each playlist name the server sends its last
    modification time as attribute "Last-Modified" in ISO 8601 format."""
    return "".join(f"playlist: {p.name}\nLast-Modified: {iso(p.mtime)}\n" for p in conn.library.playlists())


@command("listplaylist", Perm.READ, str)
@_bad_name
def listplaylist(conn: Session, name: str) -> str:
    """Lists the songs in the playlist. Playlist plugins are supported."""
    return "".join(f"file: {uri}\n" for uri in conn.library.playlist(name))


@command("listplaylistinfo", Perm.READ, str)
@_bad_name
def listplaylistinfo(conn: Session, name: str) -> str:
    """Lists the songs with metadata in the playlist."""
    out: list[str] = []
    for uri in conn.library.playlist(name):
        try:
            tune = None if is_inline(uri) else conn.library.lookup(uri)
        except NoSuchTune:
            tune = None
        if tune is None:
            out.append(f"file: {uri}\n")
        else:
            library_song(conn, tune, out)
    return "".join(out)


@command("load", Perm.ADD, str, opt(RANGE), opt(UINT))
@_bad_name
def load(conn: Session, name: str, rng: tuple[int, int | None] | None = None, position: int | None = None) -> None:
    """Loads the playlist into the current queue. A range loads only part of it; POSITION inserts
    there. Songs that are no longer there are skipped (MPD does the same)."""
    uris = conn.library.playlist(name)
    if rng is not None:
        start, end = rng
        if start > len(uris) or (end is not None and end > len(uris)):
            raise MpdError(Ack.ARG, "Bad song index")
        uris = uris[start:end]
    if position is not None and position > len(conn.player.entries()):
        raise MpdError(Ack.ARG, "Bad song index")
    for i, uri in enumerate(uris):
        try:
            conn.player.add(uri, None if position is None else position + i)
        except (NoSuchTune, TuneError):
            continue


@command("playlistadd", Perm.CONTROL, str, str, opt(UINT))
@_bad_name
def playlistadd(conn: Session, name: str, uri: str, position: int | None = None) -> None:
    """Adds URI to the playlist NAME.m3u. NAME.m3u will be created if it does not exist."""
    if not is_inline(uri):
        conn.library.lookup(uri)
    if position is None:
        conn.library.playlist_add(name, uri)
    else:
        uris = conn.library.playlist(name)
        if position > len(uris):
            raise MpdError(Ack.ARG, "Bad song index")
        uris.insert(position, uri)
        conn.library.save_playlist(name, uris, replace=True)
    conn.app.emit("stored_playlist")


@command("playlistclear", Perm.CONTROL, str)
@_bad_name
def playlistclear(conn: Session, name: str) -> None:
    """Clears the playlist NAME.m3u."""
    conn.library.playlist_clear(name)
    conn.app.emit("stored_playlist")


@command("playlistdelete", Perm.CONTROL, str, UINT)
@_bad_name
def playlistdelete(conn: Session, name: str, pos: int) -> None:
    """Deletes SONGPOS from the playlist NAME.m3u."""
    if pos >= len(conn.library.playlist(name)):
        raise MpdError(Ack.ARG, "Bad song index")
    conn.library.playlist_delete(name, pos)
    conn.app.emit("stored_playlist")


@command("playlistmove", Perm.CONTROL, str, UINT, UINT)
@_bad_name
def playlistmove(conn: Session, name: str, from_pos: int, to_pos: int) -> None:
    """Moves the song at position FROM in the playlist NAME.m3u to the position TO."""
    n = len(conn.library.playlist(name))
    if from_pos >= n or to_pos >= n:
        raise MpdError(Ack.ARG, "Bad song index")
    conn.library.playlist_move(name, from_pos, to_pos)
    conn.app.emit("stored_playlist")


@command("rename", Perm.CONTROL, str, str)
@_bad_name
def rename(conn: Session, old: str, new: str) -> None:
    """Renames the playlist NAME.m3u to NEW_NAME.m3u."""
    conn.library.rename_playlist(old, new)
    conn.app.emit("stored_playlist")


@command("rm", Perm.CONTROL, str)
@_bad_name
def rm(conn: Session, name: str) -> None:
    """Removes the playlist NAME.m3u from the playlist directory."""
    conn.library.delete_playlist(name)
    conn.app.emit("stored_playlist")


@command("save", Perm.CONTROL, str)
@_bad_name
def save(conn: Session, name: str) -> None:
    """Saves the queue to NAME.m3u in the playlist directory."""
    conn.library.save_playlist(name, [e.uri for e in conn.player.entries()])
    conn.app.emit("stored_playlist")
