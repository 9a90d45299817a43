"""The player with the real Library (built-in tunes, stored tunes) and the real inline parsers."""

from __future__ import annotations

import pytest
from fakes import FakeOutput, VirtualClock

from pi_appliance.library import Library, NoSuchTune
from pi_appliance.music import TuneError
from pi_appliance.player import Player, PlayState
from pi_appliance.state import StateStore


def make(state_dir):
    clock = VirtualClock()
    out = FakeOutput(clock)
    lib = Library(state_dir)
    return Player(out, lib, StateStore(state_dir, delay=0.0), clock=clock), out, lib


async def test_a_fresh_appliance_plays_tune_1_on_play_0(tmp_path):
    p, out, lib = make(tmp_path)
    await p.start()
    builtins = lib.builtins()
    assert len(builtins) >= 1
    assert [e.uri for e in p.entries()] == [t.uri for t in builtins]
    await p.play(0)
    assert out.tune is builtins[0].tune and out.tune.duration_us > 0
    st = p.status()
    assert (st.state, st.song, st.duration_s) == (PlayState.PLAY, 0, pytest.approx(builtins[0].tune.duration_s))
    await p.close()
    assert (tmp_path / "state.json").exists()


async def test_inline_tunes_are_parsed_by_the_music_parsers(tmp_path):
    p, out, _ = make(tmp_path)
    await p.start()
    p.clear()
    sid = p.add("rtttl:Scale:d=8,o=5,b=120:c,d,e,f,g")
    e = p.entries()[0]
    assert (e.id, e.title, len(e.tune.notes)) == (sid, "Scale", 5)
    p.add("beep:-f 440 -l 200 -n -f 660 -l 100")
    assert p.entries()[1].tune.duration_us == 300_000
    p.add("RTTTL:Upper:d=4,o=5,b=100:a")  # the scheme in any case
    with pytest.raises(TuneError) as exc:
        p.add("rtttl:Bad:d=4,o=5,b=100:c,x9,d")
    assert exc.value.position is not None  # the error names the place
    with pytest.raises(NoSuchTune):
        p.add("tunes/missing.rtttl")
    assert len(p.entries()) == 3
    await p.play(0)
    assert out.playing == "Scale"
    await p.close()


async def test_stored_and_inline_tunes_come_back_after_a_restart(tmp_path):
    p, _, lib = make(tmp_path)
    await p.start()
    stored = lib.add_tune("mine.rtttl", "Mine:d=4,o=5,b=140:c,e,g")
    p.clear()
    p.add(stored.uri)
    p.add("rtttl:Inline:d=4,o=5,b=100:a,b")
    p.add(lib.builtins()[0].uri)
    await p.play(1)
    await p.close()

    q, out, _ = make(tmp_path)
    await q.start()
    assert [e.uri for e in q.entries()] == [e.uri for e in p.entries()]
    assert [e.tune for e in q.entries()] == [e.tune for e in p.entries()]
    assert q.status().song == 1 and q.status().state is PlayState.PAUSE
    await q.play()
    assert out.playing == "Inline"
    await q.close()
