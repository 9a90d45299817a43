"""Choosing and opening the output: auto, sim (in-process simulator with its recordings), errors."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from pi_appliance.config import OutputSettings
from pi_appliance.errors import OutputError
from pi_appliance.music import Note, Tune
from pi_appliance.output import select, waveplan
from pi_appliance.sim.record import read_vcd
from tests.conftest import free_port
from tests.fakes import Listener

TUNE = Tune("t", (Note(880.0, 60_000), Note(0.0, 20_000), Note(1320.0, 60_000)))


async def test_auto_without_a_pi_runs_the_embedded_simulator(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(select, "MODEL_FILES", (str(tmp_path / "no-model"),))
    caplog.set_level("INFO")
    settings = OutputSettings(
        kind="auto", record_vcd=str(tmp_path / "a.vcd"), record_wav=str(tmp_path / "a.wav"), sim_realtime=False
    )
    out = await select.open_output(settings, state_dir=tmp_path)
    try:
        assert out.info.kind == "sim" and "no Raspberry Pi" in out.info.reason
        assert "no Raspberry Pi found" in caplog.text
        lst = Listener()
        out.set_listener(lst)
        await out.play(TUNE)
        await asyncio.wait_for(lst.event.wait(), 10)
        assert lst.errors == []
        sim = out.sim
        start = sim.segments[0][2]
        assert [(t - start, lv) for t, lv in sim.edges(18)] == waveplan.timeline(TUNE)
    finally:
        await out.close()
    vcd, comments = read_vcd(tmp_path / "a.vcd")
    assert [(t - start, lv) for t, lv in vcd["gpio18"]] == waveplan.timeline(TUNE)
    assert (tmp_path / "a.wav").stat().st_size > 1000
    lines = [json.loads(x) for x in (tmp_path / select.SIM_EDGES_FILE).read_text().splitlines()]
    assert lines[0]["tick0_wall_ns"] == int(comments["tick0_wall_ns"])
    edges = [x for x in lines if "level" in x]
    assert len(edges) == len(waveplan.timeline(TUNE))
    assert all(e["wall_ns"] == lines[0]["tick0_wall_ns"] + e["t"] * 1000 for e in edges)


async def test_auto_on_a_pi5_picks_gpiozero(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    monkeypatch.setattr(select, "MODEL_FILES", (str(model),))
    out = await select.open_output(OutputSettings(kind="auto", gpiozero_pin_factory="mock"))
    try:
        assert out.info.kind == "gpiozero" and "RP1" in out.info.reason
    finally:
        await out.close()


async def test_auto_on_a_pi_without_pigpiod_falls_back_to_gpiozero_loudly(tmp_path, monkeypatch, caplog):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")
    monkeypatch.setattr(select, "MODEL_FILES", (str(model),))
    settings = OutputSettings(kind="auto", pigpio_port=free_port(), gpiozero_pin_factory="mock")
    out = await select.open_output(settings)
    try:
        assert out.info.kind == "gpiozero" and "cannot reach pigpiod" in out.info.reason
        assert "WARNING" in caplog.text
    finally:
        await out.close()


async def test_explicit_pigpio_that_is_not_there_raises():
    with pytest.raises(OutputError, match="cannot reach pigpiod"):
        await select.open_output(OutputSettings(kind="pigpio", pigpio_port=free_port()))


async def test_explicit_gpiozero_with_a_bad_factory_raises():
    with pytest.raises(OutputError, match="no pin factory"):
        await select.open_output(OutputSettings(kind="gpiozero", gpiozero_pin_factory="nosuch"))


def test_output_settings_errors_name_the_key(tmp_path):
    from pi_appliance import config
    from pi_appliance.errors import ConfigError

    for body, key in (
        ('[output]\nkind = "pigpio"\ngpio = 40\n', "output.gpio"),
        ("[output]\npigpio_port = 0\n", "output.pigpio_port"),
        ("[output]\nsim_port = 70000\n", "output.sim_port"),
        ('[output]\nkind = "buzzer"\n', "output.kind"),
    ):
        path = tmp_path / "c.toml"
        path.write_text(body)
        with pytest.raises(ConfigError) as e:
            config.load(path)
        assert e.value.key == key


async def test_four_simulated_outputs_start_together_at_a_wall_clock_instant(tmp_path):
    """What the fleet test does with four daemons: same at_ns, first edges within 2 ms in wall time."""
    outs = []
    try:
        for i in range(4):
            d = tmp_path / f"d{i}"
            d.mkdir()
            outs.append(await select.open_output(OutputSettings(kind="sim"), state_dir=d))
        listeners = [Listener() for _ in outs]
        for o, lst in zip(outs, listeners, strict=True):
            o.set_listener(lst)
        at = time.time_ns() + 500_000_000
        tune = Tune("t", (Note(1000.0, 100_000),))
        await asyncio.gather(*(o.play(tune, at_ns=at) for o in outs))
        await asyncio.gather(*(asyncio.wait_for(lst.event.wait(), 10) for lst in listeners))
        firsts = []
        for i, o in enumerate(outs):
            rise = next(t for t, lv in o.sim.edges(18) if lv)
            firsts.append(o.sim.wall_ns_of_tick(rise))
            # the same instant as the daemon's sim-edges.jsonl reports it
            lines = (tmp_path / f"d{i}" / select.SIM_EDGES_FILE).read_text().splitlines()
            first = next(x for x in map(json.loads, lines[1:]) if x.get("level") == 1)
            assert first["wall_ns"] == firsts[-1]
        assert max(firsts) - min(firsts) < 2_000_000
        assert all(abs(f - at) < 2_000_000 for f in firsts)
    finally:
        for o in outs:
            await o.close()
