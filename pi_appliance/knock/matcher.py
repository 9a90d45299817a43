"""Knock sequences, knockd's idea made safe to leave on. Pure: no sockets, no clocks (time is an
argument, in monotonic milliseconds).

A source's recent knocks sit in a short history (a few entries, per source, least recently used
source out past ``max_sources``). A sequence completes when the packet just seen is its last port
and, looking back within ``timeout_ms``, the history holds its ports in order with at most
``tolerance`` other packets in between. So:

- one spoofed packet inside a knock does not cancel it (tolerance 1);
- a scan does not complete it: tripwire ports around every knock port (``guard`` either side) are
  watched too, and a scan walking towards the next knock port crosses more than ``tolerance`` of
  them (the configuration refuses knock ports too close together for that to hold);
- a retransmit or a duplicated datagram (same protocol, source port and port) counts once;
- the knocks used by a completion are spent: they never complete anything again.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

Step = tuple[int, str]  # (port, "udp" | "tcp")


@dataclass(frozen=True, slots=True)
class SeqSpec:
    """One sequence to match. ``window`` is set for clock-derived candidates (else None)."""

    name: str
    steps: tuple[Step, ...]
    timeout_ms: int
    window: int | None = None


@dataclass(slots=True)
class _Knock:
    t: int
    step: Step
    sport: int
    spent: bool = False


@dataclass(slots=True)
class _Source:
    history: deque[_Knock] = field(default_factory=deque)


def dup_window_ms(proto: str) -> int:
    """How long a packet with the same protocol, source port and port is taken for a copy.

    A TCP SYN retransmit keeps its source port and comes 1, 3, 7... s later. UDP has no
    retransmits, only duplicated datagrams, which arrive together; the ``knock`` client picks a
    random source port per UDP knock, so a long window would eat real knocks that collide.
    """
    return 60_000 if proto == "tcp" else 100


class SequenceMatcher:
    """Per-source sequence state, bounded; fed one packet at a time."""

    def __init__(self, *, tolerance: int = 1, max_sources: int = 1024) -> None:
        self.tolerance = tolerance
        self.max_sources = max_sources
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._by_last: dict[Step, list[SeqSpec]] = {}
        self._doors: set[Step] = set()
        self._depth = 2
        self.evicted = 0
        self.duplicates = 0

    def set_sequences(self, specs: Iterable[SeqSpec]) -> None:
        """Replace the sequences (clock-derived ones change every window); state is kept."""
        by_last: dict[Step, list[SeqSpec]] = {}
        doors: set[Step] = set()
        longest = 1
        for spec in specs:
            by_last.setdefault(spec.steps[-1], []).append(spec)
            doors.update(spec.steps)
            longest = max(longest, len(spec.steps))
        self._by_last, self._doors = by_last, doors
        # Room for a whole sequence, the tolerated extras, and a little memory for duplicates.
        self._depth = longest + self.tolerance + 4

    def is_door(self, step: Step) -> bool:
        return step in self._doors

    def __len__(self) -> int:
        return len(self._sources)

    def forget(self, src: str) -> None:
        self._sources.pop(src, None)

    def feed(self, src: str, step: Step, sport: int, now_ms: int) -> SeqSpec | None:
        """One packet from ``src`` to ``step`` (a knock port or a tripwire); the sequence it completes."""
        state = self._sources.get(src)
        if state is None:
            state = _Source(deque(maxlen=self._depth))
            self._sources[src] = state
            if len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)  # O(1): the least recently used source goes
                self.evicted += 1
        else:
            self._sources.move_to_end(src)
        hist = state.history
        if hist.maxlen != self._depth:
            hist = state.history = deque(hist, maxlen=self._depth)
        window = dup_window_ms(step[1])
        for k in hist:
            if k.sport == sport and k.step == step and now_ms - k.t <= window:
                self.duplicates += 1  # a retransmit or a duplicated datagram: counted once
                return None
        knock = _Knock(now_ms, step, sport)
        hist.append(knock)
        for spec in self._by_last.get(step, ()):
            used = self._match(spec, hist, now_ms)
            if used is not None:
                for k in used:
                    k.spent = True
                return spec
        return None

    def _match(self, spec: SeqSpec, hist: deque[_Knock], now_ms: int) -> list[_Knock] | None:
        need = len(spec.steps) - 1
        extras = 0
        used: list[_Knock] = []
        for k in reversed(hist):
            if k.spent or now_ms - k.t > spec.timeout_ms:
                return None
            if k.step == spec.steps[need]:
                used.append(k)
                need -= 1
                if need < 0:
                    return used
            else:
                extras += 1
                if extras > self.tolerance:
                    return None
        return None
