"""Small test doubles of the Player and the Library for the protocol's unit tests (the real ones
are exercised by the loopback tests). They follow the fixed APIs in player.py and library.py and
MPD's queue semantics closely enough for the protocol layer to be tested on its own."""

from __future__ import annotations

import random as _random
from collections.abc import Callable

from pi_appliance.library import BadName, LibraryTune, NoSuchPlaylist, NoSuchTune, PlaylistExists, PlaylistInfo
from pi_appliance.music import Note, Tune
from pi_appliance.player import BadSongIndex, NoSuchSong, NotPlaying, PlayerStatus, PlayState, QueueEntry


def tune(title: str, seconds: float) -> Tune:
    return Tune(title, (Note(440.0, int(seconds * 1_000_000)),), "rtttl")


class FakeLibrary:
    def __init__(self, tunes: dict[str, tuple[str, float]] | None = None) -> None:
        tunes = tunes or {
            "builtin/01-demo.rtttl": ("Demo", 60.0),
            "builtin/02-scale.rtttl": ("Scale", 45.0),
            "tunes/tagged.rtttl": ("Tagged Tune", 90.0),
        }
        self._tunes = {uri: LibraryTune(uri, t, tune(t, s), 1_700_000_000.0) for uri, (t, s) in tunes.items()}
        self._playlists: dict[str, list[str]] = {}
        self.rescans = 0

    def builtins(self) -> list[LibraryTune]:
        return [t for u, t in self._tunes.items() if u.startswith("builtin/")]

    def tunes(self) -> list[LibraryTune]:
        return list(self._tunes.values())

    def lookup(self, uri: str) -> LibraryTune:
        try:
            return self._tunes[uri]
        except KeyError:
            raise NoSuchTune(uri) from None

    def directories(self) -> list[str]:
        return ["builtin", "tunes"]

    def rescan(self) -> bool:
        self.rescans += 1
        return False

    def _check(self, name: str) -> None:
        if not name or "/" in name or name.startswith("."):
            raise BadName(name)

    def playlists(self) -> list[PlaylistInfo]:
        return [PlaylistInfo(n, 1_700_000_000.0) for n in sorted(self._playlists)]

    def playlist(self, name: str) -> list[str]:
        self._check(name)
        if name not in self._playlists:
            raise NoSuchPlaylist(name)
        return list(self._playlists[name])

    def save_playlist(self, name: str, uris: list[str], *, replace: bool = False) -> None:
        self._check(name)
        if name in self._playlists and not replace:
            raise PlaylistExists(name)
        self._playlists[name] = list(uris)

    def delete_playlist(self, name: str) -> None:
        self.playlist(name)
        del self._playlists[name]

    def rename_playlist(self, old: str, new: str) -> None:
        uris = self.playlist(old)
        self._check(new)
        if new in self._playlists:
            raise PlaylistExists(new)
        del self._playlists[old]
        self._playlists[new] = uris

    def playlist_add(self, name: str, uri: str) -> None:
        self._check(name)
        self._playlists.setdefault(name, []).append(uri)

    def playlist_clear(self, name: str) -> None:
        self._check(name)
        self._playlists[name] = []

    def playlist_delete(self, name: str, pos: int) -> None:
        del self._playlists[name][pos]

    def playlist_move(self, name: str, from_pos: int, to_pos: int) -> None:
        pl = self._playlists[name]
        pl.insert(to_pos, pl.pop(from_pos))


class FakePlayer:
    """A queue and a state machine with a settable clock (``elapsed``)."""

    def __init__(self, library: FakeLibrary) -> None:
        self.library = library
        self._subs: list[Callable[[str], None]] = []
        self._entries: list[QueueEntry] = []
        self._next_id = 1
        self.version = 1
        self.state = PlayState.STOP
        self.cur: int | None = None
        self.elapsed = 0.0
        self.volume = 100
        self.repeat = False
        self.random = False
        self.single = "0"
        self.consume = "0"
        self.error: str | None = None
        self.played_at: list[int | None] = []

    def _emit(self, *subs: str) -> None:
        for s in subs:
            for cb in list(self._subs):
                cb(s)

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        self._subs.append(callback)
        return lambda: self._subs.remove(callback)

    async def start(self) -> None:
        for t in self.library.builtins():
            self.add(t.uri)

    async def close(self) -> None:
        pass

    def entries(self) -> list[QueueEntry]:
        return list(self._entries)

    def _bump(self) -> None:
        self.version += 1
        self._emit("playlist")

    def _touch(self, start: int) -> None:
        for i in range(start, len(self._entries)):
            e = self._entries[i]
            self._entries[i] = QueueEntry(e.id, e.uri, e.title, e.tune, e.prio, self.version + 1)

    def changes_since(self, version: int) -> list[tuple[int, QueueEntry]]:
        return [(i, e) for i, e in enumerate(self._entries) if e.version > version]

    def add(self, uri: str, pos: int | None = None) -> int:
        if uri.startswith(("rtttl:", "beep:")):
            t = tune(uri.split(":")[1] or "inline", 2.0)
        else:
            lt = self.library.lookup(uri)
            t = lt.tune
        return self.add_tune(t, uri, pos)

    def add_tune(self, tune: Tune, uri: str, pos: int | None = None) -> int:
        if pos is not None and pos > len(self._entries):
            raise BadSongIndex()
        e = QueueEntry(self._next_id, uri, tune.title, tune, 0, self.version + 1)
        self._next_id += 1
        if pos is None:
            self._entries.append(e)
        else:
            self._entries.insert(pos, e)
            self._touch(pos)
            if self.cur is not None and pos <= self.cur:
                self.cur += 1
        self._bump()
        return e.id

    def delete(self, start: int, end: int | None = None) -> None:
        end = start + 1 if end is None else end
        if start >= len(self._entries) or end > len(self._entries) or start > end:
            raise BadSongIndex()
        del self._entries[start:end]
        if self.cur is not None:
            if start <= self.cur < end:
                self.cur = None
                self.state = PlayState.STOP
                self._emit("player")
            elif self.cur >= end:
                self.cur -= end - start
        self._touch(start)
        self._bump()

    def _pos(self, songid: int) -> int:
        for i, e in enumerate(self._entries):
            if e.id == songid:
                return i
        raise NoSuchSong()

    def delete_id(self, songid: int) -> None:
        self.delete(self._pos(songid))

    def move(self, start: int, end: int | None, to: int) -> None:
        end = start + 1 if end is None else end
        if start >= len(self._entries) or end > len(self._entries) or to + (end - start) > len(self._entries):
            raise BadSongIndex()
        cur_id = self._entries[self.cur].id if self.cur is not None else None
        chunk = self._entries[start:end]
        del self._entries[start:end]
        self._entries[to:to] = chunk
        if cur_id is not None:
            self.cur = self._pos(cur_id)
        self._touch(0)
        self._bump()

    def move_id(self, songid: int, to: int) -> None:
        self.move(self._pos(songid), None, to)

    def swap(self, a: int, b: int) -> None:
        n = len(self._entries)
        if a >= n or b >= n:
            raise BadSongIndex()
        self._entries[a], self._entries[b] = self._entries[b], self._entries[a]
        self._touch(0)
        self._bump()

    def swap_id(self, a: int, b: int) -> None:
        self.swap(self._pos(a), self._pos(b))

    def clear(self) -> None:
        self._entries.clear()
        if self.state != PlayState.STOP:
            self.state = PlayState.STOP
            self._emit("player")
        self.cur = None
        self._bump()

    def shuffle(self, start: int | None = None, end: int | None = None) -> None:
        start = start or 0
        end = len(self._entries) if end is None else end
        part = self._entries[start:end]
        _random.Random(1).shuffle(part)
        self._entries[start:end] = part
        self._touch(0)
        self._bump()

    def prio(self, priority: int, ranges: list[tuple[int, int]]) -> None:
        for a, b in ranges:
            for i in range(a, b):
                e = self._entries[i]
                self._entries[i] = QueueEntry(e.id, e.uri, e.title, e.tune, priority, self.version + 1)
        self._bump()

    def prio_id(self, priority: int, songids: list[int]) -> None:
        self.prio(priority, [(self._pos(i), self._pos(i) + 1) for i in songids])

    async def play(self, pos: int | None = None, *, at_ns: int | None = None) -> None:
        if pos is None:
            if not self._entries:
                return
            if self.state == PlayState.PAUSE:
                self.state = PlayState.PLAY
                self._emit("player")
                return
            pos = self.cur or 0
        if pos < 0 or pos >= len(self._entries):
            raise BadSongIndex()
        self.cur, self.state, self.elapsed, self.error = pos, PlayState.PLAY, 0.0, None
        self.played_at.append(at_ns)
        self._emit("player")

    async def play_id(self, songid: int | None = None) -> None:
        await self.play(None if songid is None else self._pos(songid))

    async def pause(self, flag: bool | None = None) -> None:
        if self.state == PlayState.STOP:
            return
        if flag is None:
            flag = self.state == PlayState.PLAY
        self.state = PlayState.PAUSE if flag else PlayState.PLAY
        self._emit("player")

    async def stop(self) -> None:
        self.state = PlayState.STOP
        self._emit("player")

    async def next(self) -> None:
        if self.cur is None or self.state == PlayState.STOP:
            return
        if self.cur + 1 >= len(self._entries):
            self.state = PlayState.STOP
        else:
            self.cur += 1
            self.elapsed = 0.0
        self._emit("player")

    async def previous(self) -> None:
        if self.cur is None or self.state == PlayState.STOP:
            return
        self.cur = max(0, self.cur - 1)
        self.elapsed = 0.0
        self._emit("player")

    async def seek(self, pos: int, seconds: float) -> None:
        if pos >= len(self._entries):
            raise BadSongIndex()
        self.cur, self.elapsed = pos, seconds
        if self.state == PlayState.STOP:
            self.state = PlayState.PLAY
        self._emit("player")

    async def seek_id(self, songid: int, seconds: float) -> None:
        await self.seek(self._pos(songid), seconds)

    async def seek_cur(self, seconds: float, relative: bool = False) -> None:
        if self.state == PlayState.STOP:
            raise NotPlaying()
        self.elapsed = self.elapsed + seconds if relative else seconds
        self._emit("player")

    async def set_volume(self, volume: int) -> None:
        self.volume = volume
        self._emit("mixer")

    def set_repeat(self, on: bool) -> None:
        self.repeat = on
        self._emit("options")

    def set_random(self, on: bool) -> None:
        self.random = on
        self._emit("options")

    def set_single(self, mode: str) -> None:
        self.single = mode
        self._emit("options")

    def set_consume(self, mode: str) -> None:
        self.consume = mode
        self._emit("options")

    def status(self) -> PlayerStatus:
        cur = self.cur if self._entries else None
        e = self._entries[cur] if cur is not None and cur < len(self._entries) else None
        nxt = cur + 1 if cur is not None and cur + 1 < len(self._entries) else None
        playing = self.state != PlayState.STOP and e is not None
        return PlayerStatus(
            volume=self.volume,
            repeat=self.repeat,
            random=self.random,
            single=self.single,
            consume=self.consume,
            playlist_version=self.version,
            playlist_length=len(self._entries),
            state=self.state,
            song=cur if e else None,
            songid=e.id if e else None,
            elapsed_s=self.elapsed if playing else None,
            duration_s=e.tune.duration_s if playing else None,
            nextsong=nxt,
            nextsongid=self._entries[nxt].id if nxt is not None else None,
            error=self.error,
        )

    def current(self) -> QueueEntry | None:
        if self.cur is None or self.cur >= len(self._entries):
            return None
        return self._entries[self.cur]

    def clear_error(self) -> None:
        self.error = None


class MemoryWriter:
    """The writing half of an in-memory stream."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.data += data

    def close(self) -> None:
        self.closed = True


class MemoryClient:
    """A session over an in-memory stream: feed bytes, read what the session wrote."""

    def __init__(self, app, *, local: bool = False) -> None:  # type: ignore[no-untyped-def]
        import asyncio

        from pi_appliance.mpd.session import Session

        self.app = app
        self.reader = asyncio.StreamReader()
        self.writer = MemoryWriter()
        self.session = Session(app, self.writer, local=local, peer="memory")
        app.sessions.add(self.session)
        self.task = asyncio.ensure_future(self.session.run(self.reader))
        self._seen = 0

    async def settle(self) -> None:
        import asyncio

        for _ in range(10):
            await asyncio.sleep(0)

    async def send(self, data: bytes | str) -> str:
        """Feed raw bytes; return everything the session wrote since the last call."""
        self.reader.feed_data(data.encode() if isinstance(data, str) else data)
        await self.settle()
        return self.take()

    async def cmd(self, *lines: str) -> str:
        return await self.send("".join(line + "\n" for line in lines))

    def take(self) -> str:
        out = bytes(self.writer.data[self._seen :]).decode("utf-8", "surrogateescape")
        self._seen = len(self.writer.data)
        return out

    @property
    def closed(self) -> bool:
        return self.writer.closed

    async def eof(self) -> None:
        self.reader.feed_eof()
        await self.settle()
        self.app.sessions.discard(self.session)
