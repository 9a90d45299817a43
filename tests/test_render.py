"""``pictl render``: the planner's edges as WAV and VCD, offline."""

from __future__ import annotations

import array
import itertools
import subprocess
import wave

from pi_appliance.music import Note, Tune
from pi_appliance.output import waveplan
from pi_appliance.render import render_main, render_tune
from pi_appliance.sim.record import read_vcd
from tests.conftest import ROOT, need_program

TUNE = Tune("t", (Note(440.0, 500_000), Note(0.0, 250_000), Note(880.0, 250_000)))


def test_render_writes_exactly_the_planned_edges(tmp_path):
    wav, vcd = tmp_path / "t.wav", tmp_path / "t.vcd"
    n = render_tune(TUNE, wav, vcd, volume=60)
    planned = waveplan.timeline(TUNE, volume=60)
    assert n == len(planned)
    edges, _ = read_vcd(vcd)
    assert edges["gpio18"] == planned
    r = subprocess.run([need_program("soxi"), "-D", str(wav)], capture_output=True, text=True, check=True)
    assert abs(float(r.stdout) - 1.0) < 0.001
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        samples = array.array("h", w.readframes(w.getnframes()))
    half = max(samples) // 2
    rises = [i for i, (a, b) in enumerate(itertools.pairwise([0, *samples])) if a < half <= b]
    assert sum(1 for i in rises if i < rate // 2) == 220  # 440 Hz for 0.5 s
    assert all(s == 0 for s in samples[int(0.51 * rate) : int(0.74 * rate)])  # the rest is silent
    assert sum(1 for i in rises if i >= rate * 3 // 4) == 220  # 880 Hz for 0.25 s


def test_render_main_reports_bad_input_in_one_line(tmp_path, capsys):
    assert render_main([str(tmp_path / "missing.rtttl"), "-o", str(tmp_path / "x.wav")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pictl render: ") and "missing.rtttl" in err and err.count("\n") == 1
    assert render_main(["rtttl:x:d=4:c", "-o", str(tmp_path / "x.wav"), "--volume", "150"]) == 2


def test_render_main_reads_files_and_inline_tunes(tmp_path, capsys):
    from pi_appliance.music import parse_tune

    src = ROOT / "pi_appliance" / "builtin_tunes" / "02-ode-to-joy.rtttl"
    tune = parse_tune(src.read_bytes())
    wav, vcd = tmp_path / "ode.wav", tmp_path / "ode.vcd"
    assert render_main([str(src), "-o", str(wav), "--vcd", str(vcd), "--volume", "30"]) == 0
    assert "edges" in capsys.readouterr().out
    edges, _ = read_vcd(vcd)
    assert edges["gpio18"] == waveplan.timeline(tune, volume=30)
    r = subprocess.run([need_program("soxi"), "-D", str(wav)], capture_output=True, text=True, check=True)
    assert abs(float(r.stdout) - tune.duration_s) < 0.001
    assert render_main(["rtttl:x:d=4,o=5,b=120:c,e,g", "-o", str(tmp_path / "x.wav")]) == 0
    assert render_main(["rtttl:x:d=4,o=5,b=120:c,q,g", "-o", str(tmp_path / "y.wav")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pictl render: inline tune: ") and "(at " in err


def test_vcd_opens_in_libsigrok_as_pulseview_reads_it(tmp_path):
    """sigrok-cli uses libsigrok's VCD input, the one PulseView uses: it must see the same pin."""
    tune = Tune("t", (Note(1000.0, 5_000), Note(0.0, 2_000), Note(2000.0, 3_000)))
    vcd = tmp_path / "t.vcd"
    render_tune(tune, None, vcd)
    r = subprocess.run(
        [need_program("sigrok-cli"), "-I", "vcd", "-i", str(vcd), "-O", "csv"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    samples = [int(x) for x in r.stdout.splitlines() if x in ("0", "1")]
    assert len(samples) == 10_000  # one sample per µs, 1 MHz
    level, expected, edges = 0, [], dict(waveplan.timeline(tune))
    for t in range(10_000):
        level = edges.get(t, level)
        expected.append(level)
    assert samples == expected
