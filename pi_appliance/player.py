"""The queue and the play state machine, with MPD's semantics. (API fixed here; bodies are the
player work's.)

Positions are 0-based (as on MPD's wire); ids are stable per queue entry. Every change raises one
or more idle subsystems ("player", "playlist", "mixer", "options", "stored_playlist", "database",
"output", "update") through the callbacks given to :meth:`Player.subscribe`. The player talks to
the buzzer only through :class:`pi_appliance.output.base.Output` and to disk only through
:mod:`pi_appliance.state` and :class:`pi_appliance.library.Library`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from pi_appliance.errors import ApplianceError, OutputError, StateError
from pi_appliance.library import LibraryTune
from pi_appliance.music import Note, Tune
from pi_appliance.output.base import Output
from pi_appliance.state import SavedEntry, SavedState, StateStore

log = logging.getLogger(__name__)


class PlayerError(ApplianceError):
    """Base of player errors; the MPD layer maps each to an ACK code and text."""


class BadSongIndex(PlayerError):
    """ACK 2 "Bad song index"."""

    def __init__(self, message: str = "Bad song index") -> None:
        super().__init__(message)


class NoSuchSong(PlayerError):
    """ACK 50 "No such song"."""

    def __init__(self, message: str = "No such song") -> None:
        super().__init__(message)


class NotPlaying(PlayerError):
    """ACK 55 "Not playing"."""

    def __init__(self, message: str = "Not playing") -> None:
        super().__init__(message)


class BadArgument(PlayerError):
    """ACK 2 with the given text (e.g. a bad range, a seek past the end)."""


class PlayState(enum.StrEnum):
    STOP = "stop"
    PLAY = "play"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: int
    uri: str  # library URI or inline "rtttl:..."/"beep:..."
    title: str
    tune: Tune
    prio: int = 0
    version: int = 0  # queue version when this entry last changed (plchanges)


@dataclass(slots=True)
class PlayerStatus:
    """Everything MPD's ``status`` reports, in player terms (the MPD layer formats it).

    A fresh snapshot per call, never kept by the player: not frozen, because a frozen dataclass
    sets its 15 fields through ``object.__setattr__`` (2 us more per MPD ``status``)."""

    volume: int
    repeat: bool
    random: bool
    single: str  # "0" | "1" | "oneshot"
    consume: str  # "0" | "1" | "oneshot"
    playlist_version: int
    playlist_length: int
    state: PlayState
    song: int | None  # position of the current entry
    songid: int | None
    elapsed_s: float | None  # only while playing or paused
    duration_s: float | None
    nextsong: int | None
    nextsongid: int | None
    error: str | None


Subscriber = Callable[[str], None]  # called with an idle subsystem name


class PlaylistTooLarge(PlayerError):
    """ACK 51 "Playlist is too large" (the queue holds at most ``max_length`` entries)."""

    def __init__(self, message: str = "Playlist is too large") -> None:
        super().__init__(message)


INLINE_SCHEMES = ("rtttl:", "beep:")
SINGLE_MODES = ("0", "1", "oneshot")
CONSUME_MODES = ("0", "1", "oneshot")
MAX_PRIO = 255
#: Largest queue, as MPD's max_playlist_length default.
DEFAULT_MAX_LENGTH = 16384
#: Bounds on what the queue may hold in all, whatever the number of entries: notes, and the text of
#: URIs (inline tunes carry their text in the URI). They keep memory and the state file bounded.
DEFAULT_MAX_NOTES = 250_000
DEFAULT_MAX_URI_BYTES = 4 * 1024 * 1024
#: While playing, the elapsed time is saved this often (seconds), so a power cut loses little.
CHECKPOINT_INTERVAL = 10.0


def is_inline(uri: str) -> bool:
    """True for the URIs that carry their tune: ``rtttl:...`` and ``beep:...`` (any case)."""
    return uri[:6].lower().startswith(INLINE_SCHEMES)


def _default_parse_inline(uri: str) -> Tune | None:
    from pi_appliance.music import parse_inline  # the music work's parser (imported when first needed)

    return parse_inline(uri)


class _LibraryLike(Protocol):
    def builtins(self) -> list[LibraryTune]: ...

    def lookup(self, uri: str) -> LibraryTune: ...


class Player:
    """One queue, one current song, one output.

    MPD's model, kept as MPD keeps it (``src/queue/``): the queue in position order, an *order*
    (the play order: the positions themselves, or a shuffle of them in random mode, higher
    priorities first), and a current song (kept while stopped). Every change of state happens
    synchronously in the calling method; the output only ever hears the result, through one
    chain of output operations run in order (so a ``play`` right after a ``stop`` can never
    overtake it). The async methods return once their output operation is done.

    ``output`` must not be shared: the player registers itself as its listener. ``library``
    resolves library URIs and gives the built-in tunes for a first start. ``store`` (optional)
    saves the state after every change and restores it in :meth:`start`. ``clock`` (monotonic
    seconds) estimates the elapsed time while the output cannot tell (an operation in flight);
    ``rng`` drives random mode and shuffle. ``restore_paused``: a state saved while playing
    comes back paused at its position (True, the default: an appliance should not start beeping
    by itself after a power cut) or playing (False, MPD's default).
    """

    def __init__(
        self,
        output: Output,
        library: _LibraryLike,
        store: StateStore | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_notes: int = DEFAULT_MAX_NOTES,
        max_uri_bytes: int = DEFAULT_MAX_URI_BYTES,
        restore_paused: bool = True,
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
        parse_inline: Callable[[str], Tune | None] | None = None,
    ) -> None:
        self._output = output
        self._library = library
        self._store = store
        self._clock = clock
        self._rng = rng or random.Random()
        self._max_length = max_length
        self._max_notes = max_notes
        self._max_uri_bytes = max_uri_bytes
        self._notes_total = 0
        self._uri_bytes_total = 0
        self._saved: dict[int, SavedEntry] = {}  # snapshot cache of notes-only entries
        self._restore_paused = restore_paused
        self._checkpoint_interval = checkpoint_interval
        self._parse_inline = parse_inline or _default_parse_inline
        self._subscribers: list[Subscriber] = []
        # the queue
        self._entries: list[QueueEntry] = []
        # The true version of each entry, by position. An entry object may carry an older one
        # until it is handed out (_fresh): shifting thousands of entries by an insert then costs
        # a list write each, not a new object each.
        self._ver: list[int] = []
        self._order: list[int] = []  # entry ids in play order
        self._pos_of: dict[int, int] | None = {}  # id -> position (None: rebuild)
        self._ord_of: dict[int, int] | None = {}  # id -> order index (None: rebuild)
        self._version = 1
        self._next_id = 1
        self._current: int | None = None  # id of the current entry
        self._note_ids: set[int] = set()  # entries added as notes (add_tune), saved with them
        # modes
        self._volume = 100
        self._repeat = False
        self._random = False
        self._single = "0"
        self._consume = "0"
        # playback
        self._st = PlayState.STOP
        self._play_time = 0.0  # seconds spent playing (stats playtime)
        self._play_since: float | None = None
        self._error: str | None = None
        self._paused_us = 0  # where a paused song stands
        self._start_us = 0  # where the output was told to start the current song
        self._started_at: float | None = None  # clock() when it was told (None: waiting for at_ns)
        self._tail: asyncio.Future[None] | None = None  # the last output operation
        self._transport_ops = 0  # play/stop operations not yet done
        self._tasks: set[asyncio.Future[None]] = set()
        self._checkpoint: asyncio.TimerHandle | None = None
        self._closed = False
        output.set_listener(self)
        if store is not None:
            store.attach(self.snapshot)

    @property
    def _state(self) -> PlayState:
        return self._st

    @_state.setter
    def _state(self, new: PlayState) -> None:
        if new is PlayState.PLAY and self._play_since is None:
            self._play_since = self._clock()
        elif new is not PlayState.PLAY and self._play_since is not None:
            self._play_time += self._clock() - self._play_since
            self._play_since = None
        self._st = new

    # ------------------------------------------------------------------ events
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(subsystem)`` on every change; returns an unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, subsystem: str) -> None:
        if subsystem in ("player", "playlist", "mixer", "options"):
            self._dirty()
        for cb in list(self._subscribers):
            try:
                cb(subsystem)
            except Exception:  # a broken subscriber must not break the player
                log.exception("idle subscriber failed on %s", subsystem)

    def _dirty(self) -> None:
        if self._store is not None and not self._closed:
            self._store.mark_dirty()

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        """Restore the saved state (first start: the built-in tunes fill the queue)."""
        saved = self._store.load() if self._store is not None else None
        if saved is None:
            for t in self._library.builtins():
                self._append(QueueEntry(0, t.uri, t.title, t.tune))
            self._modified()
        else:
            self._restore(saved)
        await self._output.set_volume(self._volume)
        if saved is not None and saved.state != "stop" and self._current is not None:
            entry = self._entry(self._current)
            pos = min(saved.elapsed_us, entry.tune.duration_us)
            if saved.state == "play" and not self._restore_paused:
                self._state = PlayState.PLAY
                await self._start_output(entry, pos)
            else:
                self._state = PlayState.PAUSE
                self._paused_us = pos

    def _restore(self, saved: SavedState) -> None:
        self._volume = saved.volume
        self._repeat, self._random = saved.repeat, saved.random
        self._single, self._consume = saved.single, saved.consume
        kept: list[int | None] = []  # saved position -> id (None: dropped)
        for e in saved.entries:
            try:
                if e.notes is not None:
                    tune = Tune(e.title or e.uri, tuple(Note(f, d) for f, d in e.notes), e.source_format)
                    title = e.title or e.uri
                else:
                    title, tune = self._resolve(e.uri)
            except Exception as exc:  # a tune deleted or now unreadable: drop it, as MPD does
                log.warning("dropping %s from the restored queue: %s", e.uri[:80], exc)
                kept.append(None)
                continue
            if not self._fits(QueueEntry(0, e.uri, title, tune)):
                log.warning("the restored queue is over its limits: dropping %s", e.uri[:80])
                kept.append(None)
                continue
            songid = self._append(QueueEntry(0, e.uri, title, tune, prio=e.prio))
            if e.notes is not None:
                self._note_ids.add(songid)
            kept.append(songid)
        if self._random:
            self._shuffle_order(0, len(self._order))
        self._modified()
        if saved.current is not None and kept[saved.current] is not None:
            self._current = kept[saved.current]

    async def close(self) -> None:
        """Stop the output and save the state."""
        if self._closed:
            return
        self._cancel_checkpoint()
        if self._store is not None:
            if self._state is not PlayState.STOP:
                self._store.mark_dirty()  # the elapsed time moved on without an event
            try:
                await self._store.flush()  # the state as it is (playing: comes back at this position)
            except StateError as e:  # already logged by the store; the output must still stop
                log.error("the last player state was not saved: %s", e)
        self._closed = True
        self._output.set_listener(None)
        await self._run(self._output.stop, transport=True)

    # ------------------------------------------------------------------ state snapshot
    def snapshot(self) -> SavedState:
        """What :mod:`pi_appliance.state` saves."""
        entries = []
        for e in self._entries:
            if is_inline(e.uri) or not self._from_notes(e):
                entries.append(SavedEntry(e.uri, e.prio))
            else:
                saved = self._saved.get(e.id)
                if saved is None:
                    notes = tuple((n.freq_hz, n.duration_us) for n in e.tune.notes)
                    saved = SavedEntry(e.uri, e.prio, e.tune.title, notes, e.tune.source_format)
                    self._saved[e.id] = saved
                if saved.prio != e.prio:
                    saved = replace(saved, prio=e.prio)
                entries.append(saved)
        return SavedState(
            entries=tuple(entries),
            current=self._position(self._current) if self._current is not None else None,
            elapsed_us=self._elapsed_us() if self._state is not PlayState.STOP else 0,
            state=self._state.value,
            volume=self._volume,
            repeat=self._repeat,
            random=self._random,
            single=self._single,
            consume=self._consume,
        )

    def _from_notes(self, e: QueueEntry) -> bool:
        """True if ``e`` was added as notes (add_tune) under a URI the library does not know."""
        return e.id in self._note_ids

    # ------------------------------------------------------------------ queue internals
    def _rebuild(self) -> None:
        self._pos_of = {e.id: i for i, e in enumerate(self._entries)}

    def _position(self, songid: int) -> int:
        if self._pos_of is None:
            self._rebuild()
        assert self._pos_of is not None
        return self._pos_of[songid]

    def _order_index(self, songid: int) -> int:
        if self._ord_of is None:
            self._ord_of = {sid: i for i, sid in enumerate(self._order)}
        return self._ord_of[songid]

    def _entry(self, songid: int) -> QueueEntry:
        return self._entries[self._position(songid)]

    def _has_id(self, songid: int) -> bool:
        if self._pos_of is None:
            self._rebuild()
        assert self._pos_of is not None
        return songid in self._pos_of

    def _invalidate(self) -> None:
        self._pos_of = None
        self._ord_of = None

    def _new_id(self) -> int:
        while True:
            songid = self._next_id
            self._next_id = self._next_id + 1 if self._next_id < 2**31 - 1 else 1
            if not self._has_id(songid):
                return songid

    def _fits(self, entry: QueueEntry) -> bool:
        return (
            len(self._entries) < self._max_length
            and self._notes_total + len(entry.tune.notes) <= self._max_notes
            and self._uri_bytes_total + len(entry.uri) <= self._max_uri_bytes
        )

    def _forget(self, e: QueueEntry) -> None:
        """Bookkeeping for an entry leaving the queue."""
        self._notes_total -= len(e.tune.notes)
        self._uri_bytes_total -= len(e.uri)
        self._note_ids.discard(e.id)
        self._saved.pop(e.id, None)

    def _append(self, entry: QueueEntry) -> int:
        """Append to the queue and to the end of the order; returns the new id."""
        self._notes_total += len(entry.tune.notes)
        self._uri_bytes_total += len(entry.uri)
        songid = self._new_id()
        self._entries.append(replace(entry, id=songid, version=self._version))
        self._ver.append(self._version)
        if self._pos_of is not None:
            self._pos_of[songid] = len(self._entries) - 1
        self._order.append(songid)
        if self._ord_of is not None:
            self._ord_of[songid] = len(self._order) - 1
        return songid

    def _set_order(self, order: list[int]) -> None:
        self._order = order
        self._ord_of = None

    def _restore_order(self) -> None:
        self._set_order([e.id for e in self._entries])

    def _fresh(self, pos: int) -> QueueEntry:
        """The entry at ``pos`` carrying its true version."""
        e = self._entries[pos]
        v = self._ver[pos]
        if e.version != v:
            e = self._entries[pos] = QueueEntry(e.id, e.uri, e.title, e.tune, e.prio, v)
        return e

    def _modified(self) -> None:
        """The queue changed: next version, ``playlist`` event (MPD's OnModified)."""
        self._version += 1
        if self._version >= 2**31 - 1:
            self._ver = [0] * len(self._entries)
            self._version = 1
        self._emit("playlist")

    @contextlib.contextmanager
    def _editing(self) -> Iterator[None]:
        old = {e.id: (i, self._ver[i]) for i, e in enumerate(self._entries)}
        yield
        self._invalidate()
        if not self._random:
            self._restore_order()
        # Every entry whose position changed (or that is new, or changed in place) gets the
        # current version, as MPD's MoveItemTo does.
        v = self._version
        ver = []
        for i, e in enumerate(self._entries):
            was = old.get(e.id)
            ver.append(was[1] if was is not None and was[0] == i and e.version != v else v)
        self._ver = ver
        self._modified()

    def _next_order(self, o: int, *, single: str | None = None, n: int | None = None) -> int:
        """MPD's Queue::GetNextOrder: the order index after ``o`` (-1: end of the queue)."""
        single = self._single if single is None else single
        n = len(self._order) if n is None else n
        if single != "0" and self._repeat and self._consume == "0":
            return o
        if o + 1 < n:
            return o + 1
        if self._repeat and (o > 0 or self._consume == "0"):
            return 0
        return -1

    # --- random order (MPD's Queue order functions, on ids) ---
    def _prio_of_order(self, o: int) -> int:
        return self._entry(self._order[o]).prio

    def _shuffle_order(self, start: int, end: int) -> None:
        """Group order[start:end] by priority (highest first), then shuffle each group."""
        part = self._order[start:end]
        if not part:
            return
        part.sort(key=lambda sid: -self._entry(sid).prio)
        out: list[int] = []
        i = 0
        while i < len(part):
            j = i
            p = self._entry(part[i]).prio
            while j < len(part) and self._entry(part[j]).prio == p:
                j += 1
            group = part[i:j]
            self._rng.shuffle(group)
            out.extend(group)
            i = j
        self._set_order(self._order[:start] + out + self._order[end:])

    def _reshuffle_keep_current(self) -> None:
        self._shuffle_order(0, len(self._order))

    def _move_order(self, from_o: int, to_o: int) -> int:
        order = list(self._order)
        sid = order.pop(from_o)
        order.insert(to_o, sid)
        self._set_order(order)
        return to_o

    def _move_order_to_current(self, o: int) -> int:
        """MPD's MoveOrderToCurrent: where a song chosen by the user goes in random order."""
        if not self._random:
            return o
        cur = self._order_index(self._current) if self._current is not None else -1
        if self._state is not PlayState.STOP and cur >= 0:
            return self._move_order(o, cur + (1 if o > cur else 0))  # after the current song
        if cur >= 0:
            return self._move_order(o, cur - (1 if o < cur else 0))  # before it
        return self._move_order(o, 0)

    def _shuffle_new_last(self, start: int) -> None:
        """MPD's ShuffleOrderLastWithPriority: put the song just appended at a random place
        among the songs still to play, within its priority group."""
        end = len(self._order)
        if start >= end:
            return
        last_prio = self._prio_of_order(end - 1)
        while self._prio_of_order(start) != last_prio:
            start += 1
        j = self._rng.randint(start, end - 1)
        order = self._order  # in place: called for every add in random mode
        order[end - 1], order[j] = order[j], order[end - 1]
        if self._ord_of is not None:
            self._ord_of[order[end - 1]] = end - 1
            self._ord_of[order[j]] = j

    def _set_priority(self, pos: int, prio: int, after_o: int, reorder: bool = True) -> bool:
        """MPD's Queue::SetPriority (with its random-order placement)."""
        e = self._entries[pos]
        old = e.prio
        if old == prio:
            return False
        self._entries[pos] = replace(e, prio=prio, version=self._version)
        self._ver[pos] = self._version
        if not self._random or not reorder:
            return True
        o = self._order_index(e.id)
        if after_o >= 0:
            if o == after_o:
                return True  # never reorder the current song
            if o < after_o:
                # played already: enqueue again only if it now outranks the current song
                after_prio = self._prio_of_order(after_o)
                if prio <= old or prio <= after_prio:
                    return True
        n = len(self._order)
        before = n
        for i in range(after_o + 1, n):
            if self._prio_of_order(i) <= prio and i != o:
                before = i
                break
        new_o = before - 1 if before > o else before
        self._move_order(o, new_o)
        count = 0
        for i in range(new_o, n):
            if self._prio_of_order(i) != prio:
                break
            count += 1
        j = self._rng.randint(new_o, new_o + max(count, 1) - 1)
        order = list(self._order)
        order[new_o], order[j] = order[j], order[new_o]
        self._set_order(order)
        return True

    # ------------------------------------------------------------------ queue
    def entries(self) -> list[QueueEntry]:
        return [self._fresh(i) for i in range(len(self._entries))]

    @property
    def version(self) -> int:
        """The queue version (MPD's ``playlist`` in status)."""
        return self._version

    def changes_since(self, version: int) -> list[tuple[int, QueueEntry]]:
        """(position, entry) of entries changed after queue ``version`` (plchanges)."""
        if version > self._version:  # a version from before a restart: everything
            return list(enumerate(self.entries()))
        return [(i, self._fresh(i)) for i, v in enumerate(self._ver) if v >= version or v == 0]

    def _resolve(self, uri: str) -> tuple[str, Tune]:
        if is_inline(uri):
            tune = self._parse_inline(uri)
            if tune is not None:
                return tune.title or uri, tune
        t = self._library.lookup(uri)
        return t.title, t.tune

    def add(self, uri: str, pos: int | None = None) -> int:
        """Append (or insert at ``pos``) the tune at a library URI or an inline URI; returns the id."""
        title, tune = self._resolve(uri)  # NoSuchTune / TuneError before anything changes
        return self._add(QueueEntry(0, uri, title, tune), pos, from_notes=False)

    def add_tune(self, tune: Tune, uri: str, pos: int | None = None) -> int:
        """Append (or insert at ``pos``) an already parsed tune, shown as ``uri``."""
        return self._add(QueueEntry(0, uri, tune.title or uri, tune), pos, from_notes=not is_inline(uri))

    def _add(self, entry: QueueEntry, pos: int | None, *, from_notes: bool) -> int:
        n = len(self._entries)
        if pos is not None and not 0 <= pos <= n:
            raise BadSongIndex()
        if not self._fits(entry):
            raise PlaylistTooLarge()
        # Not through _editing: an append moves nothing, so it stays O(1) (a load of thousands).
        songid = self._append(entry)
        if from_notes:
            self._note_ids.add(songid)
        if self._random:
            cur = self._order_index(self._current) if self._current is not None else -1
            self._shuffle_new_last(cur + 1)
        if pos is not None and pos != n:
            e = self._entries.pop()
            self._entries.insert(pos, e)
            self._ver.pop()
            self._ver[pos:] = [self._version] * (len(self._entries) - pos)  # moved one down: changed
            self._invalidate()
            if not self._random:
                self._restore_order()
        self._modified()
        return songid

    def _delete_positions(self, positions: list[int]) -> None:
        """Delete entries (positions in descending order) as MPD's DeleteInternal does one by
        one, then apply what that means for playback. O(n) however many are deleted."""
        restart: QueueEntry | None = None
        stop = False
        deleted: set[int] = set()
        for pos in positions:
            sid = self._entries[pos].id
            if self._current == sid:
                if self._state is not PlayState.STOP:
                    order = [x for x in self._order if x not in deleted]  # as it is at this step
                    o = order.index(sid)
                    nxt = self._next_order(o, n=len(order))
                    nxt_id = order[nxt] if nxt >= 0 and nxt != o else None
                    self._current = nxt_id
                    if nxt_id is not None and self._state is PlayState.PLAY:
                        restart = self._entry(nxt_id)
                        stop = False
                    else:
                        self._state = PlayState.STOP
                        restart, stop = None, True
                else:
                    self._current = None
            deleted.add(sid)
        kept = []
        for e in self._entries:
            if e.id in deleted:
                self._forget(e)
            else:
                kept.append(e)
        self._entries = kept
        self._set_order([x for x in self._order if x not in deleted])
        self._invalidate()
        if restart is not None and self._current == restart.id:
            self._song_started()
            self._start_output(restart, 0)
            self._emit("player")
        elif stop:
            self._stop_output()
            self._emit("player")

    def delete(self, start: int, end: int | None = None) -> None:
        """Delete the entry at ``start``, or the range ``start:end`` (end exclusive; None with a
        range means to the end is the MPD layer's business: pass ``len``)."""
        n = len(self._entries)
        if end is None:
            if not 0 <= start < n:
                raise BadSongIndex()
            positions = [start]
        else:
            if start < 0 or end < start or start > n:
                raise BadSongIndex()
            end = min(end, n)
            if start == end:
                return
            positions = list(range(end - 1, start - 1, -1))
        with self._editing():
            self._delete_positions(positions)

    def delete_id(self, songid: int) -> None:
        if not self._has_id(songid):
            raise NoSuchSong()
        self.delete(self._position(songid))

    def move(self, start: int, end: int | None, to: int) -> None:
        """Move the entry at ``start`` (or the range ``start:end``) so it begins at ``to``.
        A negative ``to`` is relative to the current song (MPD: ``move 3 -1``)."""
        n = len(self._entries)
        if end is None:
            end = start + 1
        if not (0 <= start < n and start < end <= n):
            raise BadSongIndex()
        count = end - start
        if to < 0:
            if self._current is None:
                raise BadSongIndex()
            cur = self._position(self._current)
            if start <= cur < end:
                return  # cannot be moved relative to itself
            to = (cur + -to) % n
            if start < to:
                to -= count
            to = max(0, to)
        if to + count - 1 >= n:
            raise BadSongIndex()
        if start == to:
            return
        with self._editing():
            block = self._entries[start:end]
            rest = self._entries[:start] + self._entries[end:]
            self._entries = rest[:to] + block + rest[to:]

    def move_id(self, songid: int, to: int) -> None:
        if not self._has_id(songid):
            raise NoSuchSong()
        pos = self._position(songid)
        self.move(pos, pos + 1, to)

    def swap(self, a: int, b: int) -> None:
        n = len(self._entries)
        if not (0 <= a < n and 0 <= b < n):
            raise BadSongIndex()
        with self._editing():
            ents = self._entries
            ents[a], ents[b] = ents[b], ents[a]
            v = self._version
            ents[a] = replace(ents[a], version=v)
            ents[b] = replace(ents[b], version=v)

    def swap_id(self, a: int, b: int) -> None:
        if not (self._has_id(a) and self._has_id(b)):
            raise NoSuchSong()
        self.swap(self._position(a), self._position(b))

    def clear(self) -> None:
        if self._state is not PlayState.STOP:
            self._state = PlayState.STOP
            self._stop_output()
            self._emit("player")
        self._cancel_checkpoint()
        self._entries = []
        self._ver = []
        self._note_ids.clear()
        self._saved.clear()
        self._notes_total = self._uri_bytes_total = 0
        self._set_order([])
        self._invalidate()
        self._current = None
        self._modified()

    def shuffle(self, start: int | None = None, end: int | None = None) -> None:
        n = len(self._entries)
        start = 0 if start is None else start
        end = n if end is None else min(end, n)
        if start < 0 or start > end:
            raise BadSongIndex()
        if end - start < 2:
            return
        with self._editing():
            if self._state is not PlayState.STOP and self._current is not None:
                cur = self._position(self._current)
                if start <= cur < end:  # the playing song goes first, the rest is shuffled
                    ents = self._entries
                    ents[start], ents[cur] = ents[cur], ents[start]
                    start += 1
            elif self._state is PlayState.STOP:
                self._current = None
            part = self._entries[start:end]
            self._rng.shuffle(part)
            self._entries[start:end] = part
            self._invalidate()

    def prio(self, priority: int, ranges: list[tuple[int, int]]) -> None:
        """Set ``priority`` (0..255) on the ranges ``(start, end)`` (end exclusive)."""
        if not 0 <= priority <= MAX_PRIO:
            raise BadArgument("Number too large" if priority > MAX_PRIO else "Number is negative")
        n = len(self._entries)
        for start, end in ranges:
            if start < 0 or end < start or start > n:
                raise BadSongIndex()
        if all(min(end, n) <= start for start, end in ranges):
            return  # nothing to change: MPD raises no event either
        with self._editing():
            for start, end in ranges:
                for pos in range(start, min(end, n)):
                    after = self._order_index(self._current) if self._current is not None else -1
                    self._set_priority(pos, priority, after)

    def prio_id(self, priority: int, songids: list[int]) -> None:
        for songid in songids:
            if not self._has_id(songid):
                raise NoSuchSong()
        self.prio(priority, [(p, p + 1) for p in (self._position(s) for s in songids)])

    def _song_started(self) -> None:
        """MPD resets a song's priority when it starts playing."""
        if self._current is None:
            return
        pos = self._position(self._current)
        if self._entries[pos].prio:
            self._set_priority(pos, 0, -1, reorder=False)
            self._modified()

    # ------------------------------------------------------------------ output plumbing
    def _run(self, fn: Callable[[], Awaitable[None]], *, transport: bool) -> asyncio.Future[None]:
        """Chain an output operation behind the previous one; failures land in ``error``."""
        prev = self._tail

        async def op() -> None:
            try:
                if prev is not None and not prev.done():
                    await asyncio.wait([prev])  # its outcome is its own; our cancellation still counts
                try:
                    await fn()
                except OutputError as e:
                    self._output_failed(str(e))
                except Exception as e:  # an output bug must not take the player down
                    log.exception("output operation failed")
                    self._output_failed(f"output failed: {e}")
            finally:
                if transport:
                    self._transport_ops -= 1

        if transport:
            self._transport_ops += 1
        task = asyncio.ensure_future(op())
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)
        self._tail = task
        return task

    def _start_output(self, entry: QueueEntry, start_us: int, at_ns: int | None = None) -> asyncio.Future[None]:
        self._start_us = start_us
        self._started_at = self._clock() if at_ns is None else None
        self._schedule_checkpoint()
        tune = entry.tune
        if start_us >= tune.duration_us:
            # seeking to (or past) the end: the song is over at once, as MPD clamps and ends it
            async def finish() -> None:
                await self._output.stop()
                loop = asyncio.get_running_loop()
                loop.call_soon(self._finished_now, entry.id)

            return self._run(finish, transport=True)
        return self._run(lambda: self._output.play(tune, start_us, at_ns=at_ns), transport=True)

    def _finished_now(self, songid: int) -> None:
        if self._state is PlayState.PLAY and self._current == songid and self._transport_ops == 0:
            self._advance()

    def _stop_output(self) -> asyncio.Future[None]:
        self._cancel_checkpoint()
        return self._run(self._output.stop, transport=True)

    def _output_failed(self, message: str) -> None:
        self._error = message
        if self._state is not PlayState.STOP:
            self._state = PlayState.STOP
            self._cancel_checkpoint()
        self._emit("player")

    # OutputListener
    def output_finished(self) -> None:
        """The output's tune ended by itself: go on as MPD does at a song border."""
        if self._closed or self._state is not PlayState.PLAY or self._current is None:
            return
        if self._transport_ops:
            return  # a play/stop is on its way: this end belongs to the tune it replaces
        self._advance()

    def output_error(self, message: str) -> None:
        """The output failed while playing: stop, and keep the message until clear_error."""
        if self._closed:
            return
        log.error("output error: %s", message)
        self._output_failed(message)

    def _advance(self) -> None:
        """The current song ended by itself (MPD: the player crossed a song border)."""
        assert self._current is not None
        old = self._current
        o = self._order_index(old)
        nxt = self._next_order(o)
        border_pause = self._single != "0" and not self._repeat
        if nxt < 0:
            # end of the queue: stop, no current song
            self._state = PlayState.STOP
            self._current = None
            self._cancel_checkpoint()
            if self._single == "oneshot":
                self._single = "0"
                self._emit("options")
        else:
            if nxt == 0 and self._random and self._single == "0" and len(self._order) > 1:
                self._reshuffle_keep_current()  # a new order each time round (repeat)
            new = self._order[nxt]
            self._current = new
            entry = self._entry(new)
            if border_pause:
                self._state = PlayState.PAUSE
                self._paused_us = 0
                self._cancel_checkpoint()
                if self._single == "oneshot":
                    self._single = "0"
                    self._emit("options")
            else:
                self._start_output(entry, 0)
            self._song_started()
        self._consume_song(old)
        self._emit("player")

    def _consume_song(self, songid: int) -> None:
        if self._consume == "0" or not self._has_id(songid):
            return
        with self._editing():
            pos = self._position(songid)
            e = self._entries.pop(pos)
            self._forget(e)
            order = list(self._order)
            order.remove(e.id)
            self._set_order(order)
            self._invalidate()
            if self._current == songid:
                self._current = None
        if self._consume == "oneshot":
            self._consume = "0"
            self._emit("options")

    # ------------------------------------------------------------------ playback
    def _elapsed_us(self) -> int:
        if self._state is PlayState.STOP or self._current is None:
            return 0
        duration = self._entry(self._current).tune.duration_us
        if self._state is PlayState.PAUSE:
            return min(self._paused_us, duration)
        pos = None if self._transport_ops else self._output.position_us()
        if pos is None:
            if self._started_at is None:
                pos = self._start_us
            else:
                pos = self._start_us + int((self._clock() - self._started_at) * 1e6)
        return max(0, min(pos, duration))

    async def _play_order(self, o: int, at_ns: int | None = None, start_us: int = 0) -> None:
        self._current = self._order[o]
        self._state = PlayState.PLAY
        entry = self._entry(self._current)
        self._song_started()
        fut = self._start_output(entry, start_us, at_ns)
        self._emit("player")
        await fut

    async def play(self, pos: int | None = None, *, at_ns: int | None = None) -> None:
        """``at_ns``: a time.time_ns() instant for the first edge (fleet start, pictl --at)."""
        self._error = None  # MPD clears the player error on play
        if pos is None:
            if not self._entries:
                return
            if self._state is not PlayState.STOP:
                await self._pause(False, at_ns)  # resumes (at ``at_ns`` if given)
                return
            o = self._order_index(self._current) if self._current is not None else 0
        else:
            if not 0 <= pos < len(self._entries):
                raise BadSongIndex()
            o = self._order_index(self._entries[pos].id) if self._random else pos
        if self._random:
            o = self._move_order_to_current(o)
        await self._play_order(o, at_ns)

    async def play_id(self, songid: int | None = None) -> None:
        if songid is None:
            await self.play()
            return
        if not self._has_id(songid):
            raise NoSuchSong()
        await self.play(self._position(songid))

    async def pause(self, flag: bool | None = None) -> None:
        """None toggles (the deprecated bare ``pause``)."""
        await self._pause(flag)

    async def _pause(self, flag: bool | None, at_ns: int | None = None) -> None:
        if self._state is PlayState.STOP or self._current is None:
            return
        if flag is None:
            flag = self._state is PlayState.PLAY
        if flag and self._state is PlayState.PLAY:
            self._paused_us = self._elapsed_us()
            self._state = PlayState.PAUSE
            fut = self._stop_output()
            self._emit("player")
            await fut
        elif not flag and self._state is PlayState.PAUSE:
            self._state = PlayState.PLAY
            fut = self._start_output(self._entry(self._current), self._paused_us, at_ns)
            self._emit("player")
            await fut

    async def stop(self) -> None:
        if self._state is PlayState.STOP:
            return
        self._state = PlayState.STOP
        if self._random:
            self._reshuffle_keep_current()  # the next play starts a new order
        fut = self._stop_output()
        self._emit("player")
        await fut

    async def next(self) -> None:
        if self._state is PlayState.STOP or self._current is None:
            raise NotPlaying()
        old = self._current
        o = self._order_index(old)
        nxt = self._next_order(o, single="0")  # a user's "next" ignores single mode
        if nxt < 0:
            self._state = PlayState.STOP
            self._current = None
            fut = self._stop_output()
            self._emit("player")
            self._consume_song(old)
            await fut
            return
        if nxt == 0 and self._random:
            self._reshuffle_keep_current()
        self._current = self._order[nxt]
        self._state = PlayState.PLAY
        self._song_started()
        fut = self._start_output(self._entry(self._current), 0)
        self._emit("player")
        if old != self._current:
            self._consume_song(old)
        await fut

    async def previous(self) -> None:
        if self._state is PlayState.STOP or self._current is None:
            raise NotPlaying()
        o = self._order_index(self._current)
        if o > 0:
            o -= 1
        elif self._repeat:
            o = len(self._order) - 1
        await self._play_order(o)

    async def _seek_order(self, o: int, seconds: float) -> None:
        if seconds < 0 or seconds != seconds:
            raise BadArgument("Bad seek time")
        self._error = None
        target = self._order[o]
        start_us = round(seconds * 1e6)
        if self._state is PlayState.STOP or self._current != target:
            o = self._move_order_to_current(o)
            target = self._order[o]
            if self._state is PlayState.STOP:
                self._state = PlayState.PLAY
            self._current = target
            self._song_started()
        entry = self._entry(target)
        start_us = min(start_us, entry.tune.duration_us)
        if self._state is PlayState.PAUSE:
            self._paused_us = start_us  # MPD keeps a paused song paused when seeking
            self._dirty()
            self._emit("player")
            return
        fut = self._start_output(entry, start_us)
        self._emit("player")
        await fut

    async def seek(self, pos: int, seconds: float) -> None:
        if not 0 <= pos < len(self._entries):
            raise BadSongIndex()
        await self._seek_order(self._order_index(self._entries[pos].id), seconds)

    async def seek_id(self, songid: int, seconds: float) -> None:
        if not self._has_id(songid):
            raise NoSuchSong()
        await self.seek(self._position(songid), seconds)

    async def seek_cur(self, seconds: float, relative: bool = False) -> None:
        """Seek in the current song; ``relative``: ``seconds`` is added to the elapsed time."""
        if self._state is PlayState.STOP or self._current is None:
            raise NotPlaying()
        if relative:
            seconds = self._elapsed_us() / 1e6 + seconds
        seconds = max(0.0, seconds)
        await self._seek_order(self._order_index(self._current), seconds)

    # ------------------------------------------------------------------ modes and mixer
    async def set_volume(self, volume: int) -> None:
        if not 0 <= volume <= 100:
            raise BadArgument("Number too large" if volume > 100 else "Number is negative")
        self._volume = volume
        fut = self._run(lambda: self._output.set_volume(volume), transport=False)
        self._emit("mixer")  # MPD raises mixer even when the value does not change
        await fut

    @property
    def volume(self) -> int:
        return self._volume

    def set_repeat(self, on: bool) -> None:
        if on == self._repeat:
            return
        self._repeat = on
        self._emit("options")

    def set_random(self, on: bool) -> None:
        if on == self._random:
            return
        self._random = on
        if on:
            self._shuffle_order(0, len(self._order))
            if self._current is not None and self._state is not PlayState.STOP:
                self._move_order(self._order_index(self._current), 0)  # the rest plays after it
            else:
                self._current = None  # as MPD: stopped, random starts from no current song
        else:
            self._restore_order()
        self._emit("options")

    def set_single(self, mode: str) -> None:
        mode = str(mode)
        if mode not in SINGLE_MODES:
            raise BadArgument(f"Boolean (0/1) or 'oneshot' expected: {mode}")
        if mode == self._single:
            return
        self._single = mode
        self._emit("options")

    def set_consume(self, mode: str) -> None:
        mode = str(mode)
        if mode not in CONSUME_MODES:
            raise BadArgument(f"Boolean (0/1) or 'oneshot' expected: {mode}")
        if mode == self._consume:
            return
        self._consume = mode
        self._emit("options")

    def _next_position(self) -> int | None:
        """MPD's GetNextPosition (status ``nextsong``)."""
        if self._current is None:
            return None
        o = self._order_index(self._current)
        if self._single != "0" and self._repeat:
            sid = self._current
        elif o + 1 < len(self._order):
            sid = self._order[o + 1]
        elif self._repeat:
            sid = self._order[0]
        else:
            return None
        return self._position(sid)

    def status(self) -> PlayerStatus:
        song = songid = nextsong = nextsongid = None
        elapsed = duration = None
        if self._current is not None:
            songid = self._current
            song = self._position(songid)
            nextsong = self._next_position()
            if nextsong is not None:
                nextsongid = self._entries[nextsong].id
            if self._state is not PlayState.STOP:
                elapsed = self._elapsed_us() / 1e6
                duration = self._entries[song].tune.duration_s
        return PlayerStatus(
            volume=self._volume,
            repeat=self._repeat,
            random=self._random,
            single=self._single,
            consume=self._consume,
            playlist_version=self._version,
            playlist_length=len(self._entries),
            state=self._state,
            song=song,
            songid=songid,
            elapsed_s=elapsed,
            duration_s=duration,
            nextsong=nextsong,
            nextsongid=nextsongid,
            error=self._error,
        )

    def current(self) -> QueueEntry | None:
        return self._fresh(self._position(self._current)) if self._current is not None else None

    # --- additions to the pinned API (for the MPD layer and the daemon) ---
    def entry_by_id(self, songid: int) -> tuple[int, QueueEntry]:
        """(position, entry) of the entry with id ``songid`` (playlistid); NoSuchSong if none."""
        if not self._has_id(songid):
            raise NoSuchSong()
        pos = self._position(songid)
        return pos, self._fresh(pos)

    @property
    def play_time_s(self) -> float:
        """Seconds spent playing since this player was made (MPD's stats ``playtime``)."""
        extra = self._clock() - self._play_since if self._play_since is not None else 0.0
        return self._play_time + extra

    @property
    def output(self) -> Output:
        """The output this player drives (``outputs``, mDNS TXT)."""
        return self._output

    def clear_error(self) -> None:
        self._error = None

    # ------------------------------------------------------------------ checkpoints
    def _schedule_checkpoint(self) -> None:
        """While playing, save the elapsed time now and then (no event: nothing a client sees)."""
        if self._store is None or self._checkpoint is not None or self._checkpoint_interval <= 0:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._checkpoint = loop.call_later(self._checkpoint_interval, self._on_checkpoint)

    def _on_checkpoint(self) -> None:
        self._checkpoint = None
        if self._state is PlayState.PLAY and not self._closed:
            self._dirty()
            self._schedule_checkpoint()

    def _cancel_checkpoint(self) -> None:
        if self._checkpoint is not None:
            self._checkpoint.cancel()
            self._checkpoint = None
