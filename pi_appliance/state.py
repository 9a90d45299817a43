"""The player's state on disk: queue, current song and elapsed time, modes and volume.

One JSON document, replaced atomically (:func:`pi_appliance.atomic.write_atomic`: temp file, fsync,
rename, fsync the directory) after every change, so whatever kill -9 or a power cut interrupts, the
file on disk is the old state or the new one, never half of either. Bursts of changes are coalesced
on the event loop: a change marks the state dirty and one write follows a short ``delay`` later with
the state as it is *then*; a change made while a write is under way marks it dirty again, so the
last change is always written. The writes run in a worker thread and never block the event loop.

A state file that cannot be read anyway (edited by hand, a disk that lies) is never trusted or
overwritten blindly: it is renamed to ``<name>.bad`` (kept for a human), logged, and the player
starts fresh.

The state names tunes, it does not hold them: library tunes by URI (resolved again at start),
inline tunes (``rtttl:...``, ``beep:...``) by their URI, which is their text. Tunes added as parsed
notes under some other URI (``Player.add_tune``) are stored with their notes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pi_appliance.atomic import clean_stale_temps, write_atomic
from pi_appliance.errors import StateError

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
FORMAT = "pi-appliance-state"
FORMAT_VERSION = 1

_SINGLE = ("0", "1", "oneshot")
_STATES = ("stop", "play", "pause")


@dataclass(frozen=True, slots=True)
class SavedEntry:
    """One queue entry: a URI, plus the notes when the URI alone cannot bring the tune back."""

    uri: str
    prio: int = 0
    title: str | None = None  # only with ``notes``
    notes: tuple[tuple[float, int], ...] | None = None  # (freq_hz, duration_us) per note
    source_format: str = "unknown"  # only with ``notes``


@dataclass(frozen=True, slots=True)
class SavedState:
    entries: tuple[SavedEntry, ...] = ()
    current: int | None = None  # queue position of the current song
    elapsed_us: int = 0
    state: str = "stop"  # "stop" | "play" | "pause"
    volume: int = 100
    repeat: bool = False
    random: bool = False
    single: str = "0"
    consume: str = "0"
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept for newer versions

    def __post_init__(self) -> None:
        if not isinstance(self.entries, tuple):
            object.__setattr__(self, "entries", tuple(self.entries))


def encode(state: SavedState) -> bytes:
    """The state as UTF-8 JSON (stable key order, one document)."""
    entries = []
    for e in state.entries:
        d: dict[str, Any] = {"uri": e.uri}
        if e.prio:
            d["prio"] = e.prio
        if e.notes is not None:
            d["title"] = e.title or ""
            d["notes"] = [[f, u] for f, u in e.notes]
            d["source_format"] = e.source_format
        entries.append(d)
    doc = {
        **state.extra,
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "queue": entries,
        "current": state.current,
        "elapsed_us": state.elapsed_us,
        "state": state.state,
        "volume": state.volume,
        "repeat": state.repeat,
        "random": state.random,
        "single": state.single,
        "consume": state.consume,
    }
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _want(cond: bool, what: str) -> None:
    if not cond:
        raise StateError(what)


def decode(data: bytes) -> SavedState:
    """Parse and check a state document; StateError says what is wrong."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StateError(f"not a JSON document: {e}") from None
    _want(isinstance(doc, dict), "not a JSON object")
    _want(doc.get("format") == FORMAT, "not a pi-appliance state file")
    version = doc.get("version")
    _want(isinstance(version, int) and version >= 1, "bad version")
    _want(version <= FORMAT_VERSION, f"written by a newer pi-appliance (version {version})")
    queue = doc.get("queue")
    _want(isinstance(queue, list), "queue: not a list")
    entries = []
    for i, d in enumerate(queue):
        _want(isinstance(d, dict) and isinstance(d.get("uri"), str), f"queue[{i}]: no uri")
        prio = d.get("prio", 0)
        _want(type(prio) is int and 0 <= prio <= 255, f"queue[{i}]: bad prio")
        notes = d.get("notes")
        if notes is not None:
            _want(isinstance(notes, list), f"queue[{i}]: notes: not a list")
            parsed = []
            for n in notes:
                _want(
                    isinstance(n, list)
                    and len(n) == 2
                    and isinstance(n[0], int | float)
                    and type(n[1]) is int
                    and n[1] >= 0
                    and 0 <= n[0] <= 20_000,
                    f"queue[{i}]: bad note {n!r}",
                )
                parsed.append((float(n[0]), n[1]))
            title = d.get("title", "")
            _want(isinstance(title, str), f"queue[{i}]: bad title")
            fmt = d.get("source_format", "unknown")
            _want(isinstance(fmt, str), f"queue[{i}]: bad source_format")
            entries.append(SavedEntry(d["uri"], prio, title, tuple(parsed), fmt))
        else:
            entries.append(SavedEntry(d["uri"], prio))
    current = doc.get("current")
    _want(current is None or (type(current) is int and 0 <= current < len(entries)), "current: bad position")
    elapsed = doc.get("elapsed_us", 0)
    _want(type(elapsed) is int and elapsed >= 0, "elapsed_us: bad value")
    state = doc.get("state", "stop")
    _want(state in _STATES, "state: bad value")
    volume = doc.get("volume", 100)
    _want(type(volume) is int and 0 <= volume <= 100, "volume: bad value")
    repeat, rnd = doc.get("repeat", False), doc.get("random", False)
    _want(isinstance(repeat, bool) and isinstance(rnd, bool), "repeat/random: not booleans")
    single, consume = doc.get("single", "0"), doc.get("consume", "0")
    _want(single in _SINGLE, "single: bad value")
    _want(consume in _SINGLE, "consume: bad value")
    known = {"format", "version", "queue", "current", "elapsed_us", "state", "volume", "repeat", "random"}
    known |= {"single", "consume"}
    extra = {k: v for k, v in doc.items() if k not in known}
    return SavedState(tuple(entries), current, elapsed, state, volume, repeat, rnd, single, consume, extra)


class StateStore:
    """The state file in a directory, written coalesced and atomically.

    ``delay`` is how long a change waits for more changes before it is written (seconds).
    """

    def __init__(self, state_dir: str | Path, *, name: str = STATE_FILE, delay: float = 0.05) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / name
        self.delay = delay
        self._snapshot: Callable[[], SavedState] | None = None
        self._dirty = False
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cost = 0.0  # seconds the last save took (encoding on the loop + writing)
        self.writes = 0  # completed writes (tests, benchmarks)
        self.last_error: str | None = None

    # --- reading ---
    def load(self) -> SavedState | None:
        """The saved state, or None on a first start (or after setting an unreadable file aside)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        stale = clean_stale_temps(self.dir)
        if stale:
            log.info("removed %d temp file(s) an interrupted write left in %s", stale, self.dir)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"{self.path}: {e.strerror or e}") from None
        try:
            return decode(data)
        except StateError as e:
            bad = self.path.with_name(self.path.name + ".bad")
            os.replace(self.path, bad)
            log.error("%s is unreadable (%s): kept it as %s and starting with a fresh state", self.path, e, bad)
            return None

    # --- writing ---
    def attach(self, snapshot: Callable[[], SavedState]) -> None:
        """Where the state to write comes from (the player); called at write time, on the loop."""
        self._snapshot = snapshot

    def save_now(self, state: SavedState | None = None) -> None:
        """Write synchronously (start-up, tests); ``state`` defaults to the attached snapshot."""
        if state is None:
            state = self._take()
        self._dirty = False
        self._write(encode(state))

    def mark_dirty(self) -> None:
        """Something changed: write the state soon (coalescing further changes)."""
        self._dirty = True
        if self._timer is not None or self._writing is not None:
            return  # a write is already coming; it (or its follow-up) takes the newest state
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): write at once
            self.save_now()
            return
        self._timer = self._loop.call_later(self._next_delay(), self._kick)

    def _next_delay(self) -> float:
        # A big queue costs more to save: keep saving to at most about a fifth of the time.
        return max(self.delay, 4 * self._cost)

    async def flush(self) -> None:
        """Wait until everything marked dirty so far is on disk."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._writing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writing)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._dirty and self._snapshot is not None:
            self._start_write()
            assert self._writing is not None
            await asyncio.shield(self._writing)
            if self.last_error:
                raise StateError(self.last_error)

    @property
    def pending(self) -> bool:
        return self._dirty or self._writing is not None

    def _take(self) -> SavedState:
        if self._snapshot is None:
            raise StateError("no state attached to save")
        return self._snapshot()

    def _kick(self) -> None:
        self._timer = None
        if self._writing is None and self._dirty:
            self._start_write()

    def _start_write(self) -> None:
        assert self._loop is not None or self._writing is None
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        t0 = time.monotonic()
        data = encode(self._take())  # the state as it is now, taken on the loop
        self._cost = time.monotonic() - t0
        self._dirty = False
        # One write at a time: write_atomic's temp name is per process, and the order matters.
        self._writing = loop.run_in_executor(None, self._write, data)
        self._writing.add_done_callback(self._written)

    def _written(self, fut: asyncio.Future[None]) -> None:
        self._writing = None
        exc = fut.exception() if not fut.cancelled() else None
        if exc is not None:
            self.last_error = f"{self.path}: {exc}"
            log.error("could not save the player state: %s", self.last_error)
            self._dirty = True
            delay = max(self.delay, 1.0)  # retry, without spinning on a full or broken disk
        else:
            delay = self._next_delay()
        if self._dirty and self._timer is None and self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_later(delay, self._kick)

    def _write(self, data: bytes) -> None:
        t0 = time.monotonic()
        write_atomic(self.path, data)
        self._cost += time.monotonic() - t0
        self.writes += 1
        self.last_error = None
