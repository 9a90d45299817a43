"""The tick pool, the idea this appliance grew from: a packet on the tone port appends a tone tick,
one on the silence port a silence tick, one on the play port plays the pool, one on the clear port
empties it. Pure: no sockets, no clocks (time is an argument, monotonic milliseconds).

Why no port scan ever makes a sound (the README says it at length):

- a pool plays only with at least ``min_ticks`` (≥ 5) ticks, one of them a tone;
- every packet on the play port ends the pool, played or not; so does one on the clear port, a
  tripwire hit (the ports either side of the pool's), and ``session_ms`` of quiet;
- a scan probes each (port, protocol) once per pass, and there are at most four tick (port,
  protocol) pairs, so one pass, in any order, leaves at most four ticks before it reaches play;
  a scanner that retries unanswered probes visits play once per round too, so between two play
  visits it leaves at most two ticks per tick port: four again, with the one protocol a socket
  listener watches (a packet listener leaves the ports closed, the kernel answers every probe and
  scanners do not retry);
- TCP SYN retransmits (same source port) count once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from pi_appliance.knock.matcher import dup_window_ms
from pi_appliance.music.knock import parse_ticks
from pi_appliance.music.model import Tune

TONE, SILENCE = "T", "S"


@dataclass(frozen=True, slots=True)
class PoolSpec:
    tone_port: int = 1000
    silence_port: int = 1001
    play_port: int = 1002
    clear_port: int = 1003
    protocols: frozenset[str] = frozenset({"udp"})
    tick_ms: int = 100
    freq_hz: float = 880.0
    min_ticks: int = 5
    max_ticks: int = 128
    max_play_ms: int = 10_000
    session_ms: int = 10_000
    max_sources: int = 1024

    def __post_init__(self) -> None:
        if self.min_ticks < 5:
            raise ValueError("min_ticks must be at least 5 (see the module docstring)")

    @property
    def ports(self) -> tuple[int, int, int, int]:
        return (self.tone_port, self.silence_port, self.play_port, self.clear_port)


@dataclass(slots=True)
class _Pool:
    last_ms: int
    ticks: list[str] = field(default_factory=list)
    seen: dict[tuple[int, int], int] = field(default_factory=dict)  # (sport, port) -> ms, TCP only


@dataclass(frozen=True, slots=True)
class PoolResult:
    """What a packet did to a pool: ``ticks`` is set when it played (the ticks, in order)."""

    event: str  # "tick", "full", "play", "short", "clear", "dup", "tripwire", "ignored"
    ticks: str = ""


class TickPool:
    """One pool per source, bounded in sources (LRU), ticks and play time."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self._pools: OrderedDict[str, _Pool] = OrderedDict()
        self.evicted = 0
        self._tick_cap = min(spec.max_ticks, spec.max_play_ms // spec.tick_ms)

    def is_pool_port(self, port: int, proto: str) -> bool:
        return proto in self.spec.protocols and port in self.spec.ports

    def __len__(self) -> int:
        return len(self._pools)

    def discard(self, src: str) -> bool:
        """A tripwire: drop whatever ``src`` collected."""
        return self._pools.pop(src, None) is not None

    def feed(self, src: str, port: int, proto: str, sport: int, now_ms: int) -> PoolResult:
        s = self.spec
        if not self.is_pool_port(port, proto):
            return PoolResult("ignored")
        pool = self._pools.get(src)
        if pool is not None and now_ms - pool.last_ms > s.session_ms:
            del self._pools[src]
            pool = None
        if port == s.clear_port:
            self._pools.pop(src, None)
            return PoolResult("clear")
        if port == s.play_port:
            self._pools.pop(src, None)
            if pool is None or len(pool.ticks) < s.min_ticks or TONE not in pool.ticks:
                return PoolResult("short")
            return PoolResult("play", "".join(pool.ticks))
        if pool is None:
            pool = _Pool(now_ms)
            self._pools[src] = pool
            if len(self._pools) > s.max_sources:
                self._pools.popitem(last=False)
                self.evicted += 1
        else:
            self._pools.move_to_end(src)
        pool.last_ms = now_ms
        if proto == "tcp":
            key = (sport, port)
            seen = pool.seen.get(key)
            if seen is not None and now_ms - seen <= dup_window_ms(proto):
                return PoolResult("dup")
            if len(pool.seen) < 2 * s.max_ticks:
                pool.seen[key] = now_ms
        if len(pool.ticks) >= self._tick_cap:
            return PoolResult("full")
        pool.ticks.append(TONE if port == s.tone_port else SILENCE)
        return PoolResult("tick")


def ticks_to_tune(ticks: str, tick_ms: int, freq_hz: float, title: str = "knock pool") -> Tune:
    """``"TTST"`` → a tune, through the music package's knock-pool parser: runs of equal ticks
    become one note (tone) or one rest (silence)."""
    return parse_ticks(ticks.replace(TONE, "1").replace(SILENCE, "0"), tick_ms=tick_ms, freq_hz=freq_hz, title=title)
