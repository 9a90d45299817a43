"""Test doubles for the player's pure state-machine tests: a virtual clock, an output that plays on
it, and a small library. The real parts (the simulator output, the Library) have their own tests;
these only let the player's MPD semantics be checked step by step, without waiting.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pi_appliance.errors import OutputError
from pi_appliance.library import LibraryTune, NoSuchTune
from pi_appliance.music import Note, Tune
from pi_appliance.output.base import Output, OutputInfo


class Listener:
    """An output's listener that records what the output reported; ``wait`` for the next report."""

    def __init__(self) -> None:
        self.finished = 0
        self.errors: list[str] = []
        self.event = asyncio.Event()

    def output_finished(self) -> None:
        self.finished += 1
        self.event.set()

    def output_error(self, message: str) -> None:
        self.errors.append(message)
        self.event.set()

    async def wait(self, timeout: float = 30) -> None:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()


class VirtualClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def tune(title: str, seconds: float = 1.0, notes: int = 2, freq: float = 440.0) -> Tune:
    """A tune of ``notes`` equal notes lasting ``seconds`` in all."""
    each = round(seconds * 1e6 / notes)
    return Tune(title, tuple(Note(freq + 10 * i, each) for i in range(notes)), "test")


@dataclass
class FakeOutput(Output):
    """Plays on a VirtualClock: ``advance(s)`` moves the clock and reports the end of the tune."""

    clock: VirtualClock = field(default_factory=VirtualClock)
    calls: list[tuple] = field(default_factory=list)
    fail_next_play: str | None = None
    volume: int | None = None
    tune: Tune | None = None
    start_us: int = 0
    t0: float = 0.0

    kind = "fake"

    def __post_init__(self) -> None:
        super().__init__()

    async def play(self, tune: Tune, start_us: int = 0, *, at_ns: int | None = None) -> None:
        self.calls.append(("play", tune.title, start_us, at_ns))
        if self.fail_next_play is not None:
            msg, self.fail_next_play = self.fail_next_play, None
            self.tune = None
            raise OutputError(msg)
        self.tune, self.start_us, self.t0 = tune, start_us, self.clock.t

    async def stop(self) -> None:
        self.calls.append(("stop",))
        self.tune = None

    def position_us(self) -> int | None:
        if self.tune is None:
            return None
        return min(self.start_us + round((self.clock.t - self.t0) * 1e6), self.tune.duration_us)

    async def set_volume(self, percent: int) -> None:
        self.calls.append(("volume", percent))
        self.volume = percent

    @property
    def info(self) -> OutputInfo:
        return OutputInfo("fake", "virtual-clock test output")

    @property
    def playing(self) -> str | None:
        return self.tune.title if self.tune is not None else None

    def advance(self, seconds: float) -> None:
        """Move the clock; if the tune reaches its end, tell the listener (as a real output does)."""
        self.clock.t += seconds
        if self.tune is not None and self.position_us() == self.tune.duration_us:
            self.tune = None
            if self._listener is not None:
                self._listener.output_finished()

    def fail(self, message: str) -> None:
        """The device failed while playing."""
        self.tune = None
        if self._listener is not None:
            self._listener.output_error(message)

    def plays(self) -> list[tuple[str, int]]:
        return [(c[1], c[2]) for c in self.calls if c[0] == "play"]


class FakeLibrary:
    """The Library methods the player uses, over a dict of tunes."""

    def __init__(self, tunes: dict[str, Tune] | None = None, builtin: int = 3) -> None:
        self._tunes: dict[str, LibraryTune] = {}
        for i in range(builtin):
            uri = f"builtin/{i + 1:02d}-b{i + 1}.rtttl"
            self._tunes[uri] = LibraryTune(uri, f"B{i + 1}", tune(f"B{i + 1}", 1.0 + i), 0.0)
        for uri, t in (tunes or {}).items():
            self.put(uri, t)

    def put(self, uri: str, t: Tune) -> None:
        self._tunes[uri] = LibraryTune(uri, t.title, t, 0.0)

    def remove(self, uri: str) -> None:
        del self._tunes[uri]

    def builtins(self) -> list[LibraryTune]:
        return [t for u, t in sorted(self._tunes.items()) if u.startswith("builtin/")]

    def tunes(self) -> list[LibraryTune]:
        return list(self._tunes.values())

    def lookup(self, uri: str) -> LibraryTune:
        try:
            return self._tunes[uri]
        except KeyError:
            raise NoSuchTune(uri) from None


def fake_parse_inline(uri: str) -> Tune:
    """Stands in for pi_appliance.music.parse_inline in pure tests: ``rtttl:NAME:...`` -> a 1 s tune."""
    scheme, _, rest = uri.partition(":")
    if scheme not in ("rtttl", "beep") or not rest:
        from pi_appliance.music import TuneError

        raise TuneError("bad inline tune", 0)
    return tune(rest.split(":", 1)[0] or scheme, 1.0)


async def settle(rounds: int = 20) -> None:
    """Let the player's chained output operations run."""
    for _ in range(rounds):
        await asyncio.sleep(0)
