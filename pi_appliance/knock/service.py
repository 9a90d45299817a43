"""The knock listener as the daemon runs it: keys, engine, listeners, the action worker, persistence.

Fails closed: a missing key, a key file others can read, a damaged replay cache, a knock port it
may not bind or a packet socket it may not open stop the start with a :class:`KnockError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from pi_appliance import atomic
from pi_appliance.config import KnockSettings
from pi_appliance.knock.actions import KnockActions
from pi_appliance.knock.auth import KnockError, load_key
from pi_appliance.knock.engine import Decision, Engine
from pi_appliance.knock.listeners import PacketListener, SocketListener
from pi_appliance.knock.packet import Hit
from pi_appliance.knock.ratelog import RateLimitedLog

log = logging.getLogger("pi_appliance.knock")

REPLAY_FILE = "knock-replay.json"
QUEUE_MAX = 16
ACTION_TIMEOUT_S = 30.0


def _mono_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class KnockService:
    def __init__(
        self,
        settings: KnockSettings,
        actions: KnockActions,
        state_dir: str | Path,
        *,
        mono_ms: Callable[[], int] = _mono_ms,
        wall_ms: Callable[[], int] = _wall_ms,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self.settings = settings
        self.actions = actions
        self.state_dir = Path(state_dir)
        self.mono_ms = mono_ms
        self.wall_ms = wall_ms
        self.on_decision = on_decision
        self.engine: Engine | None = None
        self.rlog = RateLimitedLog(log, settings.log_lines_per_min, lambda: self.mono_ms() / 1000.0)
        self._queue: asyncio.Queue[Decision] = asyncio.Queue(QUEUE_MAX)
        self._tasks: list[asyncio.Task[None]] = []
        self._socket: SocketListener | None = None
        self._packet: PacketListener | None = None
        self.errors = 0

    @property
    def replay_path(self) -> Path:
        return self.state_dir / REPLAY_FILE

    async def start(self) -> None:
        s = self.settings
        keys = {k.id: load_key(k.file) for k in s.key} if s.auth_port else {}
        clock_keys = {c.name: load_key(c.key_file) for c in s.clock_sequence}
        engine = Engine(s, keys, clock_keys)
        try:
            data = self.replay_path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as e:
            raise KnockError(f"{self.replay_path}: {e.strerror}") from None
        if data is not None:
            try:
                engine.restore(data, self.wall_ms())
            except (ValueError, TypeError, KeyError) as e:
                raise KnockError(f"{self.replay_path}: damaged replay cache ({e}); refusing to start") from None
        engine.tick(self.wall_ms())
        self.engine = engine
        if s.listener == "packet":
            self._packet = PacketListener(s.interfaces, self._on_hit)
            self._packet.open()
        else:
            self._socket = SocketListener(s.bind, self._on_hit, auth_port=s.auth_port)
        self._apply_plan()
        self._tasks = [
            asyncio.create_task(self._worker(), name="knock-actions"),
            asyncio.create_task(self._housekeeping(), name="knock-housekeeping"),
        ]
        plan = engine.plan()
        log.info(
            "knock listener (%s): auth port %s, %d sequences, %d clock sequences, pool %s; watching udp %s tcp %s",
            s.listener,
            s.auth_port or "off",
            len(s.sequence),
            len(s.clock_sequence),
            "on" if s.pool.enabled else "off",
            _ranges(plan.udp),
            _ranges(plan.tcp),
        )

    def _apply_plan(self, *, strict: bool = True) -> None:
        assert self.engine is not None
        plan = self.engine.plan()
        if self._packet is not None:
            self._packet.set_filter(plan.udp, plan.tcp, plan.auth_port)
        if self._socket is not None:
            doors = {p for p, proto in plan.doors if proto == "udp"}
            if plan.auth_port:
                doors.add(plan.auth_port)
            watched = {p for lo, hi in plan.udp for p in range(lo, hi + 1)}
            self._socket.set_ports(doors, watched - doors, strict=strict)

    def _on_hit(self, hit: Hit) -> None:
        engine = self.engine
        if engine is None:
            return
        try:
            decisions = engine.feed(hit, self.mono_ms(), self.wall_ms())
            if engine.dirty:
                self._persist()  # before acting: a crash right after must not let a replay through
        except Exception:  # a bug must cost one packet, never the listener
            self.errors += 1
            engine.counters["internal_error"] += 1
            self.rlog.log(logging.ERROR, "knock: internal error on a packet from %s", hit.src, exc_info=True)
            return
        for d in decisions:
            self.rlog.log(logging.INFO, "knock: %s %s from %s", d.via, d.kind, d.src)
            if self.on_decision is not None:
                self.on_decision(d)
            try:
                self._queue.put_nowait(d)
            except asyncio.QueueFull:
                engine.counters["queue_full"] += 1

    def _persist(self) -> None:
        assert self.engine is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_atomic(self.replay_path, self.engine.snapshot(self.wall_ms()), 0o600)
        self.engine.dirty = False

    async def _worker(self) -> None:
        while True:
            d = await self._queue.get()
            try:
                # One action at a time, in order (a stop then a play must not swap); a player call
                # that never returns must not stop every later knock, so it gets a time limit.
                async with asyncio.timeout(ACTION_TIMEOUT_S):
                    await self._run(d)
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                self.errors += 1
                self.rlog.log(logging.WARNING, "knock: %s %s took over %s s; given up", d.via, d.kind, ACTION_TIMEOUT_S)
            except Exception as e:
                self.errors += 1
                self.rlog.log(logging.WARNING, "knock: %s %s failed: %s", d.via, d.kind, e)

    async def _run(self, d: Decision) -> None:
        a = self.actions
        if d.kind == "play":
            await a.play(d.arg)
        elif d.kind == "stop":
            await a.stop()
        elif d.kind == "next":
            await a.next()
        elif d.kind == "volume":
            await a.volume(d.arg)
        elif d.kind == "pool" and d.tune is not None:
            await a.play_tune(d.tune, d.tune.title)
        # open_pool is the engine's own business: nothing to tell the player

    async def _housekeeping(self) -> None:
        last_stats = self.mono_ms()
        while True:
            await asyncio.sleep(1.0)
            engine = self.engine
            assert engine is not None
            try:
                if engine.tick(self.wall_ms()):
                    self._apply_plan(strict=False)
                if engine.dirty:
                    self._persist()
            except KnockError as e:
                self.rlog.log(logging.ERROR, "knock: %s", e)
            except OSError as e:
                self.rlog.log(logging.ERROR, "knock: saving the replay cache: %s", e)
            if self.mono_ms() - last_stats >= self.settings.stats_interval_s * 1000:
                last_stats = self.mono_ms()
                self.rlog.summary(engine.counters, engine.state_sizes())

    def stats(self) -> dict[str, int]:
        assert self.engine is not None
        out = dict(self.engine.counters)
        out.update(self.engine.state_sizes())
        out["log_dropped"] = self.rlog.dropped
        out["errors"] = self.errors
        return out

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)  # never hang a shutdown on our own tasks
        self._tasks = []
        if self._socket is not None:
            self._socket.close()
        if self._packet is not None:
            self._packet.close()
        if self.engine is not None and self.engine.dirty:
            with contextlib.suppress(OSError):
                self._persist()


def _ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    return ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in ranges) or "-"
