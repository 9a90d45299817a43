"""The player driving the real output: the pigpio output streaming waves to the embedded
pigpiod-compatible simulator (``open_output`` kind "sim"), on real time with short tunes.

What is checked is what the pin did (the simulator records every edge) and what the player says
about it: songs follow each other on the output's own end-of-tune report, elapsed time is the
output's position, pause stops the edges and resume carries on from where it was, stop leaves
the pin low, a fleet start lands on its wall-clock instant, and a dying pigpiod becomes the
player's ``error``.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from fakes import FakeLibrary

from pi_appliance.config import OutputSettings
from pi_appliance.music import Note, Tune
from pi_appliance.output.select import open_output
from pi_appliance.player import Player, PlayState


def square(title: str, freq: float, seconds: float) -> Tune:
    return Tune(title, (Note(freq, round(seconds * 1e6)),), "test")


A = square("A", 500.0, 0.5)  # half period 1000 µs
B = square("B", 1000.0, 0.5)  # half period 500 µs
LONG = Tune("Long", (Note(1e6 / 1400, 5_000_000),), "test")  # half period 700 µs, 5 s


@pytest.fixture
async def rig(tmp_path):
    out = await open_output(OutputSettings(kind="sim", sim_port=0, sim_realtime=True), state_dir=tmp_path)
    player = Player(out, FakeLibrary())
    await player.start()
    player.clear()
    player.add_tune(A, "gen:a")
    player.add_tune(B, "gen:b")
    events: asyncio.Queue[str] = asyncio.Queue()
    player.subscribe(events.put_nowait)
    try:
        yield player, out, events
    finally:
        await player.close()
        await out.close()


def edges(out) -> list[tuple[int, int]]:
    return list(out.sim.edges(out.gpio))


def half_periods(es: list[tuple[int, int]]) -> list[int]:
    return [b[0] - a[0] for a, b in itertools.pairwise(es)]


async def wait_for(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


async def test_songs_follow_each_other_on_the_outputs_end_report(rig):
    player, out, _ = rig
    await player.play(0)
    await wait_for(lambda: player.status().song == 1)
    assert player.status().state is PlayState.PLAY
    await wait_for(lambda: player.status().state is PlayState.STOP)
    assert player.current() is None
    es = edges(out)
    hp = half_periods(es)
    # the pin played A (1000 µs half periods) and then B (500 µs), nothing else
    assert sum(1 for h in hp if abs(h - 1000) <= 2) >= 0.35 * 2 * 500
    assert sum(1 for h in hp if abs(h - 500) <= 2) >= 0.35 * 2 * 1000
    first_b = next(i for i, h in enumerate(hp) if abs(h - 500) <= 2)
    assert all(abs(h - 1000) <= 2 for h in hp[: first_b - 1])
    assert es[-1][1] == 0  # the pin is left low


async def test_elapsed_is_the_outputs_position_and_pause_resumes_there(rig):
    player, out, _ = rig
    player.add_tune(LONG, "gen:long")  # long enough that a slow machine cannot outrun it
    await player.play(2)
    await asyncio.sleep(0.15)
    e1 = player.status().elapsed_s
    assert 0.0 < e1 < LONG.duration_s and player.status().song == 2
    await player.pause(True)
    paused_at = player.status().elapsed_s
    n = len(edges(out))
    await asyncio.sleep(0.2)
    assert len(edges(out)) == n  # paused: the pin is quiet
    assert player.status().elapsed_s == paused_at
    assert edges(out)[-1][1] == 0
    await player.pause(False)
    await asyncio.sleep(0.05)
    assert len(edges(out)) > n
    assert player.status().elapsed_s >= paused_at
    resumed = edges(out)[n:]
    assert all(abs(h - 700) <= 2 for h in half_periods(resumed)[1:])  # the same tune, carrying on


async def test_stop_leaves_the_pin_low_and_quiet(rig):
    player, out, _ = rig
    player.add_tune(LONG, "gen:long")
    await player.play(2)
    await asyncio.sleep(0.1)
    await player.stop()
    n = len(edges(out))
    await asyncio.sleep(0.15)
    assert len(edges(out)) == n and edges(out)[-1][1] == 0
    st = player.status()
    assert (st.state, st.song, st.elapsed_s) == (PlayState.STOP, 2, None)


async def test_seek_plays_from_that_position(rig):
    player, out, _ = rig
    await player.seek(0, 0.4)  # stopped: starts A at 0.4 s, 0.1 s before its end
    assert player.status().elapsed_s >= 0.4
    await wait_for(lambda: player.status().song == 1, timeout=3.0)
    await asyncio.sleep(0.05)
    hp = half_periods(edges(out))
    a = sum(1 for h in hp if abs(h - 1000) <= 2)
    assert 70 <= a <= 110  # the pin played A's last 0.1 s (100 half periods), not all 0.5 s (500)


async def test_a_fleet_start_lands_on_its_wall_clock_instant(rig):
    player, out, _ = rig
    at_ns = time.time_ns() + 300_000_000
    n = len(edges(out))
    await player.play(1, at_ns=at_ns)
    await wait_for(lambda: len(edges(out)) > n + 2, timeout=2.0)
    first = edges(out)[n]
    rising = first if first[1] == 1 else edges(out)[n + 1]
    error_ms = (out.sim.wall_ns_of_tick(rising[0]) - at_ns) / 1e6
    print(f"fleet start: first edge {error_ms:+.3f} ms from at_ns")
    assert abs(error_ms) < 20.0, error_ms  # the precision itself is the timing tests' business


async def test_a_dying_pigpiod_becomes_the_players_error(rig):
    player, out, _ = rig
    await player.play(0)
    await asyncio.sleep(0.05)
    await asyncio.to_thread(out.server.stop)
    await wait_for(lambda: player.status().error is not None, timeout=8.0)
    st = player.status()
    assert st.state is PlayState.STOP and st.song == 0
    player.clear_error()
    assert player.status().error is None
