"""The pigpio output driving the simulator through the real ``pigpio`` module."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pi_appliance.errors import OutputError
from pi_appliance.music import Note, Tune
from pi_appliance.output import waveplan
from pi_appliance.output.pigpio import PigpioOutput
from pi_appliance.output.waveplan import Limits
from pi_appliance.sim import SimServer
from tests.conftest import free_port
from tests.fakes import Listener

GPIO = 18


def melody(n: int = 40, dur: int = 130_000) -> Tune:
    freqs = [440.0, 493.88, 523.25, 587.33, 659.26, 0.0, 783.99, 1046.5, 2093.0, 0.0, 3520.0]
    return Tune("m", tuple(Note(freqs[i % len(freqs)], dur + 7 * i) for i in range(n)))


@pytest.fixture
def vsim() -> Iterator[SimServer]:
    with SimServer(realtime=False, gpios=[GPIO]) as srv:
        yield srv


@pytest.fixture
async def out(vsim: SimServer) -> AsyncIterator[tuple[PigpioOutput, Listener]]:
    o = PigpioOutput("127.0.0.1", vsim.port, GPIO, poll_s=0.0002)
    lst = Listener()
    o.set_listener(lst)
    await o.open()
    yield o, lst
    await o.close()


def recorded_from_start(srv: SimServer) -> list[tuple[int, int]]:
    """The pin's edges relative to the start of the tune's first wave (after its 20 µs lead-in)."""
    sim = srv.sim
    first_start = next(s[2] for s in sim.segments)
    return [(t - first_start, lv) for t, lv in sim.edges(GPIO)]


async def test_recorded_edges_match_the_planned_timeline_exactly(vsim, out):
    o, lst = out
    tune = melody()
    await o.play(tune)
    await lst.wait()
    assert lst.finished == 1 and lst.errors == []
    assert recorded_from_start(vsim) == waveplan.timeline(tune)
    segs = list(vsim.sim.segments)
    assert len(segs) == len(list(waveplan.Planner(tune, GPIO).slices())) > 10
    # every slice joined its predecessor with no gap: the DMA never went idle
    assert all(b[2] == a[3] for a, b in itertools.pairwise(segs))
    assert segs[-1][3] - segs[0][2] == tune.duration_us
    assert vsim.sim.levels >> GPIO & 1 == 0  # the pin ends low
    assert vsim.sim.faults == [] and vsim.sim.underruns == 0 and o.underruns == 0
    assert len(vsim.sim.waves) == 0  # every slice deleted, ids back to none
    assert vsim.sim.high_live_waves == 3  # the output caps live wave ids itself
    assert o.position_us() is None
    # again, right after a tune that ended by itself: the stale SYNC tail (the last slice's id, which
    # the first slice of the next tune reuses) must not make it loop forever (pigpio #457 d)
    n = len(vsim.sim.edges(GPIO))
    await o.play(tune)
    await lst.wait()
    assert lst.finished == 2 and vsim.sim.faults == []
    assert len(vsim.sim.edges(GPIO)) == 2 * n


async def test_seek_plays_the_rest_of_the_timeline(vsim, out):
    o, lst = out
    tune = melody(12)
    await o.play(tune, start_us=555_555)
    await lst.wait()
    edges = recorded_from_start(vsim)
    assert [(t + 555_555, lv) for t, lv in edges] == waveplan.timeline(tune, start_us=555_555)


async def test_stop_mid_tune_leaves_the_pin_low_and_the_next_play_works(vsim, out):
    o, lst = out
    await o.play(melody(200))
    for _ in range(50):
        await asyncio.sleep(0.001)
    pos = o.position_us()
    assert pos is not None and pos >= 0
    await o.stop()
    assert vsim.sim.levels >> GPIO & 1 == 0
    assert not vsim.sim.busy()
    assert lst.finished == 0 and lst.errors == []
    assert len(vsim.sim.waves) == 0
    await o.play(melody(5))
    await lst.wait()
    assert lst.finished == 1
    assert vsim.sim.faults == []


async def test_volume_is_the_duty_cycle(vsim, out):
    o, lst = out
    tune = Tune("t", (Note(1000.0, 100_000),))
    await o.set_volume(20)
    await o.play(tune)
    await lst.wait()
    edges = recorded_from_start(vsim)
    assert edges[:4] == [(0, 1), (100, 0), (1000, 1), (1100, 0)]
    assert edges == waveplan.timeline(tune, volume=20)


async def test_a_tune_longer_than_the_wave_store_streams_through_three_ids(vsim, out):
    o, lst = out
    # 8 s of 5 kHz: 80 000 edges, far more than one wave or all pigpiod's CBs hold at once
    tune = Tune("dense", (Note(5000.0, 8_000_000),))
    await o.play(tune)
    await lst.wait(120)
    assert lst.errors == []
    ids = {s[0] for s in vsim.sim.segments}
    assert ids == {0, 1, 2}
    edges = vsim.sim.edges(GPIO)
    assert len(edges) == len(waveplan.timeline(tune))
    assert vsim.sim.faults == []


async def test_unreachable_pigpiod_is_a_clear_error():
    o = PigpioOutput("127.0.0.1", free_port(), GPIO)
    with pytest.raises(OutputError, match="cannot reach pigpiod"):
        await o.open()


async def test_underrun_is_detected_and_the_tune_still_ends():
    # real-time simulator, 2 ms slices and a feeder that looks every 30 ms: the DMA runs dry
    with SimServer(realtime=True, gpios=[GPIO]) as srv:
        o = PigpioOutput("127.0.0.1", srv.port, GPIO, poll_s=0.03, limits=Limits(max_slice_us=2_000))
        lst = Listener()
        o.set_listener(lst)
        await o.open()
        try:
            await o.play(Tune("t", (Note(1000.0, 300_000),)))
            await lst.wait()
            assert lst.finished == 1
            assert srv.sim.underruns > 0
            assert o.underruns > 0
        finally:
            await o.close()


async def test_start_at_a_wall_clock_instant():
    with SimServer(realtime=True, gpios=[GPIO]) as srv:
        o = PigpioOutput("127.0.0.1", srv.port, GPIO, poll_s=0.005)
        lst = Listener()
        o.set_listener(lst)
        await o.open()
        try:
            at = time.time_ns() + 400_000_000
            await o.play(Tune("t", (Note(0.0, 50_000), Note(880.0, 100_000))), at_ns=at)
            await lst.wait()
            first_rise = next(t for t, lv in srv.sim.edges(GPIO) if lv)
            # the tune's first instant (a 50 ms rest) is at_ns, so the first edge is 50 ms later
            err_ms = (srv.sim.wall_ns_of_tick(first_rise) - (at + 50_000_000)) / 1e6
            assert abs(err_ms) < 2, err_ms
        finally:
            await o.close()


def start_sim_process(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pi_appliance.sim", "-p", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and "listening" in proc.stdout.readline()
    return proc


async def test_simulator_killed_mid_tune_then_restarted():
    port = free_port()
    proc = start_sim_process(port)
    o = PigpioOutput("127.0.0.1", port, GPIO, poll_s=0.01)
    lst = Listener()
    o.set_listener(lst)
    try:
        await o.open()
        await o.play(melody(60))
        await asyncio.sleep(0.3)
        assert o.position_us() is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        await lst.wait(10)
        assert lst.errors and "127.0.0.1" in lst.errors[0] and lst.finished == 0
        assert o.position_us() is None
        # nothing spins on the dead socket (pigpio.py's notify thread would, if left running)
        cpu = time.process_time()
        await asyncio.sleep(0.5)
        assert time.process_time() - cpu < 0.25
        with pytest.raises(OutputError):
            await o.play(melody(3))  # pigpiod still gone: play says so
        proc = start_sim_process(port)
        await o.play(melody(3, 50_000))  # back: reconnects
        await lst.wait(10)
        assert lst.finished == 1 and len(lst.errors) == 1
    finally:
        await o.close()
        proc.kill()
        proc.wait(timeout=10)


async def test_simulator_killed_while_idle_costs_nothing_and_play_reconnects():
    port = free_port()
    proc = start_sim_process(port)
    o = PigpioOutput("127.0.0.1", port, GPIO, poll_s=0.01)
    lst = Listener()
    o.set_listener(lst)
    try:
        await o.open()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        cpu = time.process_time()
        await asyncio.sleep(0.5)
        assert time.process_time() - cpu < 0.25  # no thread spinning on the dead socket
        with pytest.raises(OutputError, match=r"127\.0\.0\.1"):
            await o.play(melody(3))
        proc = start_sim_process(port)
        await o.play(melody(3, 50_000))
        await lst.wait(10)
        assert lst.finished == 1
    finally:
        await o.close()
        proc.kill()
        proc.wait(timeout=10)


async def test_a_hung_pigpiod_is_reported_not_waited_for():
    port = free_port()
    proc = start_sim_process(port)
    o = PigpioOutput("127.0.0.1", port, GPIO, poll_s=0.01, socket_timeout=0.5)
    lst = Listener()
    o.set_listener(lst)
    try:
        await o.open()
        await o.play(melody(60))
        os.kill(proc.pid, signal.SIGSTOP)
        await lst.wait(10)
        assert lst.errors and "timed out" in lst.errors[0]
        os.kill(proc.pid, signal.SIGCONT)
        await o.play(melody(3, 50_000))  # a fresh connection
        await lst.wait(10)
        assert lst.finished == 1
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        await o.close()
        proc.kill()
        proc.wait(timeout=10)


async def test_a_slice_dropped_by_pigpiod_is_detected_and_resent(vsim, out):
    """pigpio #457: a SYNC send racing the DMA's last CB is silently lost, with what queues behind it."""
    o, lst = out
    tune = melody()
    planned = waveplan.timeline(tune)
    vsim.sim.drop_sync_sends = {vsim.sim.sync_sends + 6}
    await o.play(tune)
    await lst.wait()
    assert lst.finished == 1 and lst.errors == []
    assert vsim.sim.dropped >= 1 and o.drops == 1
    edges = recorded_from_start(vsim)
    # nothing lost: every planned edge came, those after the drop uniformly late by the gap
    assert len(edges) == len(planned)
    shifts = sorted({e[0] - p[0] for e, p in zip(edges, planned, strict=True)})
    assert shifts[0] == 0 and len(shifts) == 2 and shifts[1] > 0
    assert [lv for _, lv in edges] == [lv for _, lv in planned]


_freqs = st.one_of(st.just(0.0), st.floats(min_value=30.0, max_value=12_000.0))
_tunes = st.lists(st.builds(Note, _freqs, st.integers(min_value=1, max_value=300_000)), min_size=1, max_size=8)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(notes=_tunes, volume=st.integers(min_value=0, max_value=100), start=st.integers(min_value=0, max_value=10**6))
def test_any_tune_through_pigpio_records_exactly_its_timeline(notes, volume, start):
    tune = Tune("h", tuple(notes))
    start_us = min(start, tune.duration_us - 1)

    async def go() -> None:
        with SimServer(realtime=False, gpios=[GPIO]) as srv:
            o = PigpioOutput("127.0.0.1", srv.port, GPIO, poll_s=0.0001)
            lst = Listener()
            o.set_listener(lst)
            await o.open()
            try:
                await o.set_volume(volume)
                await o.play(tune, start_us=start_us)
                await lst.wait()
                assert lst.errors == []
                edges = [(t + start_us, lv) for t, lv in recorded_from_start(srv)]
                assert edges == waveplan.timeline(tune, start_us=start_us, volume=volume)
                segs = list(srv.sim.segments)
                assert segs[-1][3] - segs[0][2] == tune.duration_us - start_us
                assert srv.sim.levels >> GPIO & 1 == 0 and srv.sim.faults == []
            finally:
                await o.close()

    asyncio.run(go())
