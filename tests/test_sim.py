"""The simulator against real clients: Debian's ``pigs`` and the ``pigpio`` Python module."""

from __future__ import annotations

import array
import contextlib
import io
import itertools
import os
import socket
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Iterator

import pigpio
import pytest

from pi_appliance.sim import SimServer
from pi_appliance.sim.record import read_vcd
from tests.conftest import need_program


@pytest.fixture
def vsim() -> Iterator[SimServer]:
    with SimServer(realtime=False, gpios=[4, 18]) as srv:
        yield srv


@pytest.fixture
def pi(vsim: SimServer) -> Iterator[pigpio.pi]:
    with contextlib.redirect_stdout(io.StringIO()):
        p = pigpio.pi("127.0.0.1", vsim.port)
    assert p.connected
    yield p
    p.stop()


def pigs(srv: SimServer, *args: str) -> subprocess.CompletedProcess[str]:
    exe = need_program("pigs")
    env = dict(os.environ, PIGPIO_ADDR="127.0.0.1", PIGPIO_PORT=str(srv.port))
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=20)


def test_pigs_basic_commands_are_answered(vsim):
    r = pigs(vsim, "m", "4", "w", "w", "4", "1", "r", "4", "mg", "4", "pigpv", "hwver")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1", "79", str(0xA02082)]
    assert vsim.sim.edges(4)[-1][1] == 1
    r = pigs(vsim, "w", "4", "0", "t")
    assert r.returncode == 0 and int(r.stdout) >= 0


def test_pigs_builds_and_sends_a_wave_and_a_chain(vsim):
    r = pigs(vsim, "wvclr", "wvag", "16", "0", "1136", "0", "16", "1137", "wvcre", "wvsp", "0", "wvsc", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "0", "0", str(25016)]
    # loop wave 0 440 times (0x01b8), then a 5000 µs delay
    r = pigs(vsim, "wvcha", "255", "0", "0", "255", "1", "0xB8", "0x01", "255", "2", "0x88", "0x13", "wvbsy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1"]
    vsim.sim.advance(2_000_000)
    rises = [t for t, lv in vsim.sim.edges(4) if lv]
    assert len(rises) == 440
    assert rises[1] - rises[0] == 2273 and rises[0] >= 20  # the chain's 20 µs lead-in


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["wvdel", "7"], -66, "non existent wave id"),
        (["wvgo"], -120, "deprecated"),
        (["hp", "4", "440", "500000"], -95, "no hardware PWM"),
        (["w", "4", "2"], -5, "level not 0-1"),
        (["m", "60", "w"], -3, "GPIO not 0-53"),
        (["wvtxm", "0", "2"], -66, "non existent wave id"),
    ],
)
def test_pigs_errors_carry_pigpiods_codes(vsim, args, code, text):
    r = pigs(vsim, *args)
    assert r.returncode == 253
    assert r.stdout.split() == [str(code)]
    assert text in r.stderr


def test_pigs_cannot_connect_exits_255(vsim):
    port = vsim.port
    vsim.stop()
    env = dict(os.environ, PIGPIO_ADDR="127.0.0.1", PIGPIO_PORT=str(port))
    r = subprocess.run([need_program("pigs"), "t"], env=env, capture_output=True, text=True, timeout=20)
    assert r.returncode == 255


def test_wave_limits_are_refused_with_pigpiods_error_codes(pi, vsim):
    pi.wave_clear()
    with pytest.raises(pigpio.error, match="non existent wave id"):
        pi.wave_delete(42)
    with pytest.raises(pigpio.error, match="attempt to create an empty waveform"):
        pi.wave_create()
    # more pulses than one wave holds: appending needs a leading delay (pulses merge by time from 0)
    batch = [pigpio.pulse(1 << 4, 0, 5), pigpio.pulse(0, 1 << 4, 5)] * 2000
    assert pi.wave_add_generic(batch) == 4000
    assert pi.wave_add_generic([pigpio.pulse(0, 0, 20_000), *batch]) == 8000
    assert pi.wave_add_generic(batch) == 8000  # same instants: merged, not added
    with pytest.raises(pigpio.error, match="too many pulses"):
        pi.wave_add_generic([pigpio.pulse(0, 0, 40_000), *batch])
    # a 33 % pad takes at most 3932 two-CB pulses
    pi.wave_clear()
    pi.wave_add_generic([pigpio.pulse(1 << 4, 0, 5), pigpio.pulse(0, 1 << 4, 5)] * 2000)
    with pytest.raises(pigpio.error, match="No more CBs for waveform"):
        pi.wave_create_and_pad(33)
    with pytest.raises(pigpio.error):
        pi.wave_create_and_pad(101)
    pi.wave_clear()
    pi.wave_add_generic([pigpio.pulse(1 << 4, 0, 5), pigpio.pulse(0, 1 << 4, 5)])
    ids = [pi.wave_create_and_pad(33)]
    for _ in range(2):
        pi.wave_add_generic([pigpio.pulse(1 << 4, 0, 5), pigpio.pulse(0, 1 << 4, 5)])
        ids.append(pi.wave_create_and_pad(33))
    assert ids == [0, 1, 2]
    pi.wave_add_generic([pigpio.pulse(1 << 4, 0, 5), pigpio.pulse(0, 1 << 4, 5)])
    with pytest.raises(pigpio.error, match="No more CBs"):
        pi.wave_create_and_pad(33)  # a fourth 33 % slot does not fit
    pi.wave_delete(1)  # not the top: only marked, and reused by the next same-size create
    assert pi.wave_create_and_pad(33) == 1
    with pytest.raises(pigpio.error, match="waveform mode not 0-1"):
        pi.wave_send_using_mode(0, 4)
    # the 251st wave id: real pigpiod would corrupt itself; the simulator refuses and says so
    pi.wave_clear()
    for _ in range(250):
        pi.wave_add_generic([pigpio.pulse(1 << 4, 0, 5)])
        pi.wave_create()
    pi.wave_add_generic([pigpio.pulse(1 << 4, 0, 5)])
    with pytest.raises(pigpio.error, match="No more waveform ids"):
        pi.wave_create()
    assert any("251st" in f for f in vsim.sim.faults)


def test_chain_limits_are_refused_with_pigpiods_error_codes(pi):
    pi.wave_clear()
    pi.wave_add_generic([pigpio.pulse(1 << 4, 0, 500), pigpio.pulse(0, 1 << 4, 500)])
    w = pi.wave_create()
    loop = [255, 0, w, 255, 1, 2, 0]  # each loop of count ≥ 2 takes a counter
    with pytest.raises(pigpio.error, match="too many chain counters"):
        pi.wave_chain(loop * 21)
    pi.wave_chain(loop * 20)
    with pytest.raises(pigpio.error, match="nested too deeply"):
        pi.wave_chain([255, 0] * 11 + [w] + [255, 1, 1, 0] * 11)
    with pytest.raises(pigpio.error, match="chain is too long"):
        pi.wave_chain([w] * 599)
    with pytest.raises(pigpio.error, match="empty chain loop"):
        pi.wave_chain([255, 0, 255, 1, 2, 0])
    with pytest.raises(pigpio.error, match="loop forever must be last"):
        pi.wave_chain([255, 0, w, 255, 3, w])
    with pytest.raises(pigpio.error, match="non existent wave id"):
        pi.wave_chain([w + 1])
    with pytest.raises(ValueError):  # pigpio.py itself refuses ids ≥ 256 (bytearray)
        pi.wave_chain([300])


def test_sync_sends_join_without_gap_and_a_self_requeue_loops_forever(pi, vsim):
    pi.wave_clear()
    pi.set_mode(18, pigpio.OUTPUT)
    ids = []
    for width in (100, 200):
        pi.wave_add_generic([pigpio.pulse(1 << 18, 0, width), pigpio.pulse(0, 1 << 18, width)])
        ids.append(pi.wave_create())
    pi.wave_send_using_mode(ids[0], pigpio.WAVE_MODE_ONE_SHOT_SYNC)
    pi.wave_send_using_mode(ids[1], pigpio.WAVE_MODE_ONE_SHOT_SYNC)
    vsim.sim.advance(10_000)
    t0 = vsim.sim.segments[0][2]
    assert [(t - t0, lv) for t, lv in vsim.sim.edges(18)] == [(0, 1), (100, 0), (200, 1), (400, 0)]
    assert pi.wave_tx_busy() == 0
    # SYNC-sending the tail again (it is still the tail: nothing cleared it) loops it forever (#457)
    pi.wave_send_using_mode(ids[1], pigpio.WAVE_MODE_ONE_SHOT_SYNC)
    vsim.sim.advance(100_000)
    assert pi.wave_tx_busy() == 1
    assert any("loops forever" in f for f in vsim.sim.faults)
    pi.wave_tx_stop()
    assert pi.wave_tx_busy() == 0


def test_notifications_report_edges_to_pigpio_callbacks(vsim):
    with SimServer(realtime=True, gpios=[18]) as srv:
        with contextlib.redirect_stdout(io.StringIO()):
            p = pigpio.pi("127.0.0.1", srv.port)
        try:
            seen: list[tuple[int, int, int]] = []
            cb = p.callback(18, pigpio.EITHER_EDGE, lambda g, lv, tick: seen.append((g, lv, tick)))
            p.set_mode(18, pigpio.OUTPUT)
            p.wave_clear()
            p.wave_add_generic([pigpio.pulse(1 << 18, 0, 1000), pigpio.pulse(0, 1 << 18, 1000)] * 3)
            p.wave_send_once(p.wave_create())
            deadline = time.monotonic() + 5
            while len(seen) < 6 and time.monotonic() < deadline:
                time.sleep(0.01)
            cb.cancel()
            assert [lv for _, lv, _ in seen] == [1, 0] * 3
            ticks = [t for _, _, t in seen]
            assert [b - a for a, b in itertools.pairwise(ticks)] == [1000] * 5
        finally:
            p.stop()


def test_oversized_extension_closes_the_socket_as_pigpiod_does(vsim):
    with socket.create_connection(("127.0.0.1", vsim.port)) as s:
        s.sendall(struct.pack("<IIII", 28, 0, 0, 70000))
        s.settimeout(5)
        assert s.recv(16) == b""


def test_vcd_and_wav_record_the_pin(tmp_path):
    vcd, wav = tmp_path / "a.vcd", tmp_path / "a.wav"
    with SimServer(realtime=False, gpios=[18], record_vcd=str(vcd), record_wav=str(wav)) as srv:
        with contextlib.redirect_stdout(io.StringIO()):
            p = pigpio.pi("127.0.0.1", srv.port)
        p.wave_add_generic([pigpio.pulse(1 << 18, 0, 1136), pigpio.pulse(0, 1 << 18, 1137)] * 440)
        p.wave_send_once(p.wave_create())
        while p.wave_tx_busy():
            pass
        p.stop()
    edges, comments = read_vcd(vcd)
    assert len(edges["gpio18"]) == 880 and edges["gpio18"][0] == (20, 1)
    assert int(comments["tick0_wall_ns"]) > 1_600_000_000 * 10**9
    show = subprocess.run([need_program("sigrok-cli"), "-I", "vcd", "-i", str(vcd), "--show"],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert "gpio18: logic" in show.stdout and "Samplerate: 1000000" in show.stdout
    r = subprocess.run([need_program("soxi"), "-D", str(wav)], capture_output=True, text=True, timeout=20, check=True)
    assert abs(float(r.stdout) - 1.0) < 0.02  # sox reads it: one second of audio
    with wave.open(str(wav)) as w:
        samples = array.array("h", w.readframes(w.getnframes()))
    half = max(samples) // 2
    rises = sum(1 for a, b in itertools.pairwise(samples) if a < half <= b)
    assert rises == 440


def test_cli_runs_and_stops_on_sigterm(tmp_path):
    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pi_appliance.sim", "-p", str(port), "--trace", str(tmp_path / "t.jsonl")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in proc.stdout.readline()
        srv = type("S", (), {"port": port})()
        r = pigs(srv, "pigpv")
        assert r.stdout.strip() == "79"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert (tmp_path / "t.jsonl").read_text().startswith('{"tick0_wall_ns"')
