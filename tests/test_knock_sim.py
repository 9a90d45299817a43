"""The original idea through the real parts, wired as the daemon wires them: Debian's ``knock``
client → the knock listener → :class:`PlayerActions` → the real :class:`Player` (with its Library
and state) → the simulator output. The melody's tone/silence ticks come out of the simulated pin as
the expected square wave, and the pool is the player's current song like any other tune."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from conftest import need_program
from test_knock_helpers import pick_ports, settings

from pi_appliance.config import OutputSettings
from pi_appliance.knock.actions import PlayerActions
from pi_appliance.knock.service import KnockService
from pi_appliance.library import Library
from pi_appliance.output.select import open_output
from pi_appliance.player import Player, PlayState
from pi_appliance.state import StateStore

FREQ = 880.0
MELODY = "TTSTSSTTT"  # 0.2 s tone, 0.1 s rest, 0.1 s tone, 0.2 s rest, 0.3 s tone
EXPECTED = [(0, 200_000), (300_000, 400_000), (600_000, 900_000)]  # tone stretches, µs


def sim_edges(path: Path) -> list[tuple[int, int]]:
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "level" in rec and "t" in rec:
            out.append((int(rec["t"]), int(rec["level"])))
    return out


def tone_stretches(edges: list[tuple[int, int]], gap_us: int = 5000) -> list[tuple[int, int, float]]:
    """Rising edges → (first µs, last µs, mean frequency) of each stretch of square wave."""
    rising = [t for t, level in edges if level]
    assert rising, "no edges at all"
    out: list[tuple[int, int, float]] = []
    start = prev = rising[0]
    n = 1
    for t in [*rising[1:], None]:
        if t is None or t - prev > gap_us:
            out.append((start, prev, (n - 1) * 1e6 / (prev - start) if prev > start else 0.0))
            if t is None:
                break
            start, n = t, 0
        prev = t
        n += 1
    return out


def check_melody(edges: list[tuple[int, int]]) -> None:
    got = tone_stretches(edges)
    assert len(got) == len(EXPECTED), got
    period = 1e6 / FREQ
    t0 = got[0][0]
    for (first, last, freq), (start, end) in zip(got, EXPECTED, strict=True):
        assert abs((first - t0) - start) <= period / 2 + 2, got
        assert abs((last - t0) - (end - period)) <= period + 2, got  # the last rising edge: one period early
        assert abs(freq - FREQ) < 1.0, got


async def test_knock_melody_plays_on_the_simulated_pin(tmp_path: Path) -> None:
    knock = need_program("knock")
    pool = pick_ports(1, lo=30000, hi=32000)[0]
    output = await open_output(OutputSettings(kind="sim"), state_dir=tmp_path)
    try:
        player = Player(output, Library(tmp_path), StateStore(tmp_path))
        await player.start()
        table = {
            "bind": ["127.0.0.1"],
            "guard": 4,
            "pool": {
                "enabled": True,
                "sources": ["127.0.0.0/8"],
                "tone_port": pool,
                "silence_port": pool + 1,
                "play_port": pool + 2,
                "clear_port": pool + 3,
                "freq_hz": FREQ,
                "tick_ms": 100,
            },
        }
        svc = KnockService(settings(**table), PlayerActions(player), tmp_path)
        await svc.start()
        try:
            ports = [str(pool if t == "T" else pool + 1) for t in MELODY] + [str(pool + 2)]
            proc = await asyncio.create_subprocess_exec(knock, "-u", "127.0.0.1", *ports)
            assert await proc.wait() == 0
            await asyncio.sleep(0.3)
            st = player.status()
            cur = player.current()
            assert st.state is PlayState.PLAY and cur is not None, st
            assert cur.title == "knock pool (127.0.0.1)" and cur.uri == "knock:pool"
            assert st.duration_s == 0.9
            await asyncio.sleep(1.0)  # the 0.9 s tune ends
            assert player.status().state is PlayState.STOP
            # the same melody again: the queue keeps one knock-pool entry, not two
            proc = await asyncio.create_subprocess_exec(knock, "-u", "127.0.0.1", *ports)
            assert await proc.wait() == 0
            await asyncio.sleep(1.3)
            assert sum(1 for e in player.entries() if e.uri == "knock:pool") == 1
        finally:
            await svc.close()
        await player.close()
    finally:
        await output.close()
    edges = sim_edges(tmp_path / "sim-edges.jsonl")
    # two plays of the melody, each the expected three stretches at 880 Hz
    stretches = tone_stretches(edges)
    assert len(stretches) == 6, stretches
    split = stretches[3][0]
    check_melody([e for e in edges if e[0] < split])
    check_melody([e for e in edges if e[0] >= split])
