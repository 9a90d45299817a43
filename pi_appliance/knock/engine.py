"""Everything a knock packet can do, decided in one place. Pure: packets and clock readings in,
decisions out; no sockets, no clocks, no player.

Order per packet: authenticated port (HMAC first), then the tick pool, then sequences and their
tripwires. Before any decision leaves: the spray shield (plain sequences and the pool pause while
more than ``spray_sources_per_s`` new sources knock on them per second: they are unauthenticated,
so a spray from spoofed sources must not play anything) and the action budget (per source and in
total, per minute). Every refusal is counted.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter, OrderedDict
from dataclasses import dataclass

from pi_appliance.config import KnockSettings
from pi_appliance.knock import auth
from pi_appliance.knock.matcher import SeqSpec, SequenceMatcher, Step
from pi_appliance.knock.packet import Hit, port_ranges
from pi_appliance.knock.pool import PoolSpec, TickPool, ticks_to_tune
from pi_appliance.music.model import Tune

PERSIST_VERSION = 1


@dataclass(frozen=True, slots=True)
class Decision:
    """An action to run: ``kind`` play | stop | next | volume | open_pool | pool."""

    kind: str
    arg: int = 0
    via: str = ""  # "auth:<key id>", "sequence:<name>", "clock:<name>", "pool"
    src: str = ""
    tune: Tune | None = None


@dataclass(frozen=True, slots=True)
class _Action:
    kind: str
    arg: int


class _Bucket:
    """Token bucket: ``rate`` tokens per minute, holding at most ``rate``."""

    __slots__ = ("t", "tokens")

    def __init__(self, tokens: float, t: int) -> None:
        self.tokens = tokens
        self.t = t

    def take(self, rate: int, now_ms: int) -> bool:
        self.tokens = min(float(rate), self.tokens + (now_ms - self.t) * rate / 60_000.0)
        self.t = now_ms
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class SprayShield:
    """Counts distinct sources per second on the unauthenticated ports; trips above a threshold."""

    def __init__(self, threshold: int, hold_ms: int) -> None:
        self.threshold = threshold
        self.hold_ms = hold_ms
        self._second = -1
        self._seen: set[str] = set()
        self._until = -1
        self.trips = 0

    def note(self, src: str, now_ms: int) -> None:
        second = now_ms // 1000
        if second != self._second:
            self._second = second
            self._seen.clear()
        if len(self._seen) <= self.threshold:
            self._seen.add(src)
            if len(self._seen) > self.threshold:
                if now_ms >= self._until:
                    self.trips += 1
                self._until = now_ms + self.hold_ms
        elif now_ms + self.hold_ms > self._until:
            self._until = now_ms + self.hold_ms

    def active(self, now_ms: int) -> bool:
        return now_ms < self._until


@dataclass(frozen=True, slots=True)
class _ClockSeq:
    name: str
    key: bytes
    length: int
    port_min: int
    port_max: int
    proto: str
    window_s: int
    skew: int
    timeout_ms: int
    action: _Action


@dataclass(frozen=True, slots=True)
class PortPlan:
    """Which ports the listeners watch: (lo, hi) ranges per protocol, and the auth port."""

    udp: tuple[tuple[int, int], ...]
    tcp: tuple[tuple[int, int], ...]
    auth_port: int
    doors: frozenset[Step]  # knock ports proper (binding these must succeed)


class Engine:
    def __init__(
        self,
        settings: KnockSettings,
        keys: dict[str, bytes],
        clock_keys: dict[str, bytes] | None = None,
        *,
        packet_mode: bool | None = None,
    ) -> None:
        self.settings = s = settings
        self.packet_mode = settings.listener == "packet" if packet_mode is None else packet_mode
        self.keys = dict(keys)
        self.counters: Counter[str] = Counter()
        self.replay = auth.ReplayCache(s.auth_window_s * 1000, s.replay_cache_max)
        self.clock_used: dict[str, int] = {}
        self.dirty = False
        self.matcher = SequenceMatcher(tolerance=s.tolerance, max_sources=s.max_sources)
        self._plain: list[tuple[SeqSpec, _Action]] = []
        for seq in s.sequence:
            steps = tuple(_step(p) for p in seq.ports)
            self._plain.append((SeqSpec(seq.name, steps, seq.timeout_ms), _Action(seq.action, seq.arg)))
        self._actions: dict[str, _Action] = {spec.name: a for spec, a in self._plain}
        self._clock: list[_ClockSeq] = []
        for cs in s.clock_sequence:
            key = (clock_keys or {}).get(cs.name)
            if key is None:
                raise auth.KnockError(f"clock sequence {cs.name!r}: no key loaded")
            self._clock.append(
                _ClockSeq(
                    cs.name,
                    key,
                    cs.length,
                    cs.port_min,
                    cs.port_max,
                    cs.proto,
                    cs.window_s,
                    cs.skew_windows,
                    cs.timeout_ms,
                    _Action(cs.action, cs.arg),
                )
            )
            self._actions[cs.name] = _Action(cs.action, cs.arg)
        self._clock_windows: dict[str, int] = {}
        self._clock_specs: list[SeqSpec] = []
        self.pool: TickPool | None = None
        self._pool_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        if s.pool.enabled:
            p = s.pool
            self.pool = TickPool(
                PoolSpec(
                    p.tone_port,
                    p.silence_port,
                    p.play_port,
                    p.clear_port,
                    frozenset(p.protocols),
                    p.tick_ms,
                    p.freq_hz,
                    p.min_ticks,
                    p.max_ticks,
                    p.max_play_ms,
                    p.session_ms,
                    s.max_sources,
                )
            )
            self._pool_nets = [ipaddress.ip_network(n, strict=False) for n in p.sources]
        self._pool_open: OrderedDict[str, int] = OrderedDict()  # src -> open until (ms)
        self._guard: set[Step] = set()
        self._plain_doors: set[Step] = {st for spec, _ in self._plain for st in spec.steps}
        self.shield = SprayShield(s.spray_sources_per_s, s.spray_hold_ms)
        self._per_source: OrderedDict[str, _Bucket] = OrderedDict()
        self._total: _Bucket | None = None
        self._rebuild()

    # --- configuration that moves with the clock ---

    def tick(self, wall_ms: int) -> bool:
        """Recompute clock-derived sequences for the current window; True if the ports changed."""
        windows = {c.name: wall_ms // (c.window_s * 1000) for c in self._clock}
        if windows == self._clock_windows:
            return False
        self._clock_windows = windows
        specs = []
        for c in self._clock:
            now_w = windows[c.name]
            used = self.clock_used.get(c.name, -1)
            for w in range(now_w - c.skew, now_w + c.skew + 1):
                if w <= used:
                    continue
                ports = auth.derive_ports(
                    c.key, c.name, w, c.length, c.port_min, c.port_max, self.settings.tolerance + 2
                )
                specs.append(SeqSpec(c.name, tuple((p, c.proto) for p in ports), c.timeout_ms, w))
        self._clock_specs = specs
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        self.matcher.set_sequences([spec for spec, _ in self._plain] + self._clock_specs)
        g = self.settings.guard
        doors: set[Step] = set(self._plain_doors)
        for spec in self._clock_specs:
            doors.update(spec.steps)
        if self.pool is not None:
            doors.update((p, proto) for p in self.pool.spec.ports for proto in self.pool.spec.protocols)
        guard: set[Step] = set()
        for port, proto in doors:
            for q in range(max(1, port - g), min(65535, port + g) + 1):
                guard.add((q, proto))
        if self.packet_mode:  # the whole range of a clock sequence is tripwire
            for c in self._clock:
                guard.update((q, c.proto) for q in range(c.port_min, c.port_max + 1))
        auth_step = (self.settings.auth_port, "udp")
        guard -= doors
        guard.discard(auth_step)
        self._doors = doors
        self._guard = guard

    def plan(self) -> PortPlan:
        watched = self._doors | self._guard
        udp = port_ranges(p for p, proto in watched if proto == "udp")
        tcp = port_ranges(p for p, proto in watched if proto == "tcp")
        return PortPlan(tuple(udp), tuple(tcp), self.settings.auth_port, frozenset(self._doors))

    # --- packets ---

    def feed(self, hit: Hit, mono_ms: int, wall_ms: int) -> list[Decision]:
        """One packet; the decisions it causes (usually none)."""
        self.counters["packets"] += 1
        step = (hit.dport, hit.proto)
        if hit.proto == "udp" and hit.dport == self.settings.auth_port and self.settings.auth_port:
            return self._auth(hit, mono_ms, wall_ms)
        pool = self.pool
        if pool is not None and pool.is_pool_port(hit.dport, hit.proto):
            return self._pool(hit, mono_ms)
        if step in self._doors:
            if step in self._plain_doors:
                self.shield.note(hit.src, mono_ms)
            spec = self.matcher.feed(hit.src, step, hit.sport, mono_ms)
            if spec is None:
                self.counters["knocks"] += 1
                return []
            return self._sequence_done(spec, hit.src, mono_ms)
        if step in self._guard:
            self.counters["tripwire"] += 1
            self.matcher.feed(hit.src, step, hit.sport, mono_ms)
            if pool is not None and pool.discard(hit.src):
                self.counters["pool_tripwire"] += 1
            return []
        self.counters["ignored"] += 1
        return []

    def _auth(self, hit: Hit, mono_ms: int, wall_ms: int) -> list[Decision]:
        key_id = auth.verify_mac(hit.payload, self.keys)
        if key_id is None:
            self.counters["auth_bad_mac"] += 1
            return []
        got = auth.decode(hit.payload, key_id)
        if isinstance(got, str):
            self.counters[f"auth_bad_{got}"] += 1
            return []
        if abs(got.ts_ms - wall_ms) > self.settings.auth_window_s * 1000:
            self.counters["auth_stale"] += 1
            return []
        if got.mac in self.replay:
            self.counters["auth_replay"] += 1
            return []
        if not self._budget(hit.src, mono_ms):
            return []  # not cached: the sender may try again once the budget refills
        if not self.replay.add(got.mac, got.ts_ms, wall_ms):
            self.counters["auth_cache_full"] += 1
            return []
        self.dirty = True
        self.counters["auth_ok"] += 1
        return [Decision(got.action, got.arg, f"auth:{key_id}", hit.src)]

    def _pool(self, hit: Hit, mono_ms: int) -> list[Decision]:
        pool = self.pool
        assert pool is not None
        if not self._pool_allowed(hit.src, mono_ms):
            self.counters["pool_refused_source"] += 1
            return []
        self.shield.note(hit.src, mono_ms)
        res = pool.feed(hit.src, hit.dport, hit.proto, hit.sport, mono_ms)
        self.counters[f"pool_{res.event}"] += 1
        if res.event != "play":
            return []
        if self.shield.active(mono_ms):
            self.counters["shielded"] += 1
            return []
        if not self._budget(hit.src, mono_ms):
            return []
        spec = pool.spec
        tune = ticks_to_tune(res.ticks, spec.tick_ms, spec.freq_hz, f"knock pool ({hit.src})")
        return [Decision("pool", len(res.ticks), "pool", hit.src, tune)]

    def _pool_allowed(self, src: str, mono_ms: int) -> bool:
        try:
            addr = ipaddress.ip_address(src)
        except ValueError:
            return False
        if not any(addr in net for net in self._pool_nets):
            return False
        if not self.settings.pool.open_by_knock:
            return True
        until = self._pool_open.get(src)
        return until is not None and mono_ms < until

    def _sequence_done(self, spec: SeqSpec, src: str, mono_ms: int) -> list[Decision]:
        action = self._actions[spec.name]
        if spec.window is not None:
            via = f"clock:{spec.name}"
            if spec.window <= self.clock_used.get(spec.name, -1):
                self.counters["clock_reused"] += 1
                return []
        else:
            via = f"sequence:{spec.name}"
            if self.shield.active(mono_ms):
                self.counters["shielded"] += 1
                return []
        if not self._budget(src, mono_ms):
            return []
        if spec.window is not None:
            # Each window's sequence works once; earlier windows die with it.
            self.clock_used[spec.name] = spec.window
            self.dirty = True
            self._clock_windows = {}
            self._clock_specs = [
                c
                for c in self._clock_specs
                if not (c.name == spec.name and c.window is not None and c.window <= spec.window)
            ]
            self._rebuild()
        self.counters["sequence_ok"] += 1
        if action.kind == "open_pool":
            self._pool_open[src] = mono_ms + action.arg * 1000
            self._pool_open.move_to_end(src)
            while len(self._pool_open) > self.settings.max_sources:
                self._pool_open.popitem(last=False)
        return [Decision(action.kind, action.arg, via, src)]

    def _budget(self, src: str, mono_ms: int) -> bool:
        s = self.settings
        if self._total is None:
            self._total = _Bucket(float(s.actions_per_min), mono_ms)
        b = self._per_source.get(src)
        if b is None:
            b = self._per_source[src] = _Bucket(float(s.actions_per_source_per_min), mono_ms)
            while len(self._per_source) > s.max_sources:
                self._per_source.popitem(last=False)
        else:
            self._per_source.move_to_end(src)
        # The source's own budget first, so one noisy source cannot spend the shared one.
        if not b.take(s.actions_per_source_per_min, mono_ms):
            self.counters["budget_source"] += 1
            return False
        if not self._total.take(s.actions_per_min, mono_ms):
            self.counters["budget_total"] += 1
            return False
        return True

    # --- state that outlives restarts ---

    def snapshot(self, wall_ms: int) -> bytes:
        self.replay.prune(wall_ms)
        doc = {
            "version": PERSIST_VERSION,
            "auth": [[mac.hex(), ts] for mac, ts in self.replay.items()],
            "clock_used": self.clock_used,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    def restore(self, data: bytes, wall_ms: int) -> None:
        """Load a snapshot; a damaged one raises ValueError (the caller refuses to start)."""
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != PERSIST_VERSION:
            raise ValueError("unknown replay cache format")
        for mac_hex, ts in doc.get("auth", []):
            self.replay.add(bytes.fromhex(mac_hex), int(ts), wall_ms)
        self.replay.prune(wall_ms)
        used = doc.get("clock_used", {})
        if not isinstance(used, dict):
            raise ValueError("bad clock_used")
        self.clock_used = {str(k): int(v) for k, v in used.items()}
        self._clock_windows = {}
        self.tick(wall_ms)

    def state_sizes(self) -> dict[str, int]:
        return {
            "sequence_sources": len(self.matcher),
            "pool_sources": len(self.pool) if self.pool else 0,
            "budget_sources": len(self._per_source),
            "pool_open": len(self._pool_open),
            "replay_cache": len(self.replay),
        }


def _step(spec: str) -> Step:
    port, _, proto = spec.partition(":")
    return int(port), proto or "udp"
