"""The player state on disk: what is saved, what comes back, coalescing, and unreadable files."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path

import pytest
from fakes import FakeLibrary, FakeOutput, VirtualClock, fake_parse_inline, tune

from pi_appliance.errors import StateError
from pi_appliance.player import Player, PlayState
from pi_appliance.state import SavedEntry, SavedState, StateStore, decode, encode


def make(state_dir: Path, lib: FakeLibrary | None = None, delay: float = 0.0, **kw) -> tuple[Player, FakeOutput]:
    clock = VirtualClock()
    out = FakeOutput(clock)
    lib = lib or FakeLibrary({f"tunes/t{i}.rtttl": tune(f"T{i}", 1.0 + i) for i in range(5)})
    store = StateStore(state_dir, delay=delay)
    p = Player(out, lib, store, clock=clock, rng=random.Random(2), parse_inline=fake_parse_inline, **kw)
    return p, out


async def until(pred, timeout: float = 5.0) -> None:
    """Wait for ``pred()`` (a write runs in a worker thread: its timing is the machine's)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_encode_decode_round_trip():
    s = SavedState(
        entries=(SavedEntry("tunes/a.rtttl", 3), SavedEntry("gen:x", 0, "X", ((440.0, 1000), (0.0, 500)))),
        current=1,
        elapsed_us=1234,
        state="pause",
        volume=33,
        repeat=True,
        random=True,
        single="oneshot",
        consume="1",
    )
    assert decode(encode(s)) == s


@pytest.mark.parametrize(
    "doc",
    [
        b"",
        b"{",
        b"\xff\xfe",
        b"[]",
        b'{"format": "other"}',
        b'{"format": "pi-appliance-state", "version": 99, "queue": []}',
        b'{"format": "pi-appliance-state", "version": 1, "queue": [{"uri": 5}]}',
        b'{"format": "pi-appliance-state", "version": 1, "queue": [], "current": 0}',
        b'{"format": "pi-appliance-state", "version": 1, "queue": [], "volume": 101}',
        b'{"format": "pi-appliance-state", "version": 1, "queue": [], "single": "2"}',
        b'{"format": "pi-appliance-state", "version": 1, "queue": [{"uri": "x", "notes": [[1e9, 1]]}]}',
    ],
)
def test_decode_rejects_what_it_cannot_trust(doc):
    with pytest.raises(StateError):
        decode(doc)


async def test_first_start_saves_the_builtins_and_a_restart_restores_everything(tmp_path):
    p, out = make(tmp_path)
    await p.start()
    assert [e.title for e in p.entries()] == ["B1", "B2", "B3"]
    p.clear()
    for i in range(4):
        p.add(f"tunes/t{i}.rtttl")
    p.add("rtttl:Inline:d=4:c")
    p.add_tune(tune("Midi voice", 2.0, notes=3), "midi:song.mid#1")
    p.prio(7, [(3, 4)])
    p.set_repeat(True)
    p.set_single("oneshot")
    p.set_consume("1")
    await p.set_volume(42)
    await p.play(2)
    out.advance(1.5)
    await p.pause(True)
    await p.close()
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["state"] == "pause" and saved["elapsed_us"] == 1_500_000 and saved["current"] == 2

    q, out2 = make(tmp_path)
    await q.start()
    assert [(e.uri, e.title, e.prio) for e in q.entries()] == [(e.uri, e.title, e.prio) for e in p.entries()]
    midi = q.entries()[5]
    assert midi.tune == tune("Midi voice", 2.0, notes=3)  # stored as notes, not as a URI
    st = q.status()
    assert (st.state, st.song, st.elapsed_s) == (PlayState.PAUSE, 2, 1.5)
    assert (st.volume, st.repeat, st.single, st.consume) == (42, True, "oneshot", "1")
    assert out2.volume == 42
    await q.play()
    assert out2.plays() == [("T2", 1_500_000)]
    await q.close()
    # and once more: what was restored is saved the same way again
    r, _ = make(tmp_path)
    await r.start()
    assert [(e.uri, e.tune) for e in r.entries()] == [(e.uri, e.tune) for e in q.entries()]


async def test_a_state_saved_while_playing_comes_back_paused_or_playing(tmp_path):
    p, out = make(tmp_path)
    await p.start()
    await p.play(1)
    out.advance(0.5)
    await p.close()
    q, _ = make(tmp_path)
    await q.start()
    assert q.status().state is PlayState.PAUSE and q.status().elapsed_s == 0.5
    r, out3 = make(tmp_path, restore_paused=False)
    await r.start()
    assert r.status().state is PlayState.PLAY and out3.plays() == [("B2", 500_000)]


async def test_tunes_gone_from_the_library_are_dropped_on_restore(tmp_path):
    lib = FakeLibrary({"tunes/a.rtttl": tune("A"), "tunes/b.rtttl": tune("B")})
    p, _ = make(tmp_path, lib)
    await p.start()
    p.clear()
    p.add("tunes/a.rtttl")
    p.add("tunes/b.rtttl")
    await p.play(1)
    await p.close()
    lib.remove("tunes/a.rtttl")
    q, _ = make(tmp_path, lib)
    await q.start()
    assert [e.title for e in q.entries()] == ["B"] and q.status().song == 0


async def test_an_unreadable_state_file_is_kept_aside_and_the_player_starts_fresh(tmp_path, caplog):
    (tmp_path / "state.json").write_bytes(b'{"format": "pi-appliance-state", "vers')
    p, _ = make(tmp_path)
    with caplog.at_level(logging.ERROR, logger="pi_appliance.state"):
        await p.start()
    assert (tmp_path / "state.json.bad").read_bytes() == b'{"format": "pi-appliance-state", "vers'
    assert "unreadable" in caplog.text and "state.json.bad" in caplog.text
    assert [e.title for e in p.entries()] == ["B1", "B2", "B3"]
    await p.close()
    assert decode((tmp_path / "state.json").read_bytes()).entries[0].uri.startswith("builtin/")


async def test_stale_temp_files_of_an_interrupted_write_are_removed(tmp_path):
    (tmp_path / ".state.json.12345.tmp").write_bytes(b"half")
    p, _ = make(tmp_path)
    await p.start()
    assert not (tmp_path / ".state.json.12345.tmp").exists()
    await p.close()


async def test_bursts_are_coalesced_and_the_last_change_is_never_lost(tmp_path):
    p, _ = make(tmp_path, delay=0.02)
    await p.start()
    store = p._store
    await store.flush()
    before = store.writes
    for i in range(200):  # a burst: 600 changes within one turn of the event loop
        p.add("tunes/t1.rtttl")
        p.set_repeat(i % 2 == 0)
        p.prio(i % 7, [(0, 1)])
    assert store.writes == before  # nothing written while the burst runs
    await until(lambda: not store.pending)
    assert store.writes - before == 1  # one write for the whole burst
    saved = decode((tmp_path / "state.json").read_bytes())
    assert len(saved.entries) == 3 + 200 and saved.repeat is False and saved.entries[0].prio == 199 % 7


async def test_a_change_during_a_write_is_written_after_it(tmp_path, monkeypatch):
    p, _ = make(tmp_path, delay=0.0)
    await p.start()
    store = p._store
    await store.flush()
    import threading

    import pi_appliance.state as state_mod

    gate = threading.Event()
    real = state_mod.write_atomic

    def slow_write(path, data, mode=0o600):
        gate.wait(5)
        real(path, data, mode)

    monkeypatch.setattr(state_mod, "write_atomic", slow_write)
    await p.set_volume(10)
    await until(lambda: store._writing is not None)  # the write of volume 10 is under way, held
    await p.set_volume(11)  # changed while writing
    gate.set()
    await asyncio.wait_for(store.flush(), 5)
    await until(lambda: not store.pending)
    assert decode((tmp_path / "state.json").read_bytes()).volume == 11


async def test_a_failing_disk_is_logged_and_retried(tmp_path, monkeypatch, caplog):
    p, _ = make(tmp_path, delay=0.0)
    await p.start()
    store = p._store
    await store.flush()
    import pi_appliance.state as state_mod

    real = state_mod.write_atomic
    calls = []

    def failing(path, data, mode=0o600):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real(path, data, mode)

    monkeypatch.setattr(state_mod, "write_atomic", failing)
    with caplog.at_level(logging.ERROR, logger="pi_appliance.state"):
        await p.set_volume(5)
        await until(lambda: "No space left" in caplog.text)
    assert store.pending  # retried later (not in a tight loop), or at once on flush
    await store.flush()
    assert decode((tmp_path / "state.json").read_bytes()).volume == 5


async def test_elapsed_is_checkpointed_while_playing(tmp_path):
    p, out = make(tmp_path, checkpoint_interval=0.05)
    await p.start()
    await p.play(2)
    out.advance(1.0)  # no event: only the checkpoint saves the new elapsed time
    state = tmp_path / "state.json"
    await until(lambda: state.exists() and decode(state.read_bytes()).elapsed_us == 1_000_000)
    assert decode((tmp_path / "state.json").read_bytes()).state == "play"
    await p.close()


async def test_the_queue_is_bounded_in_notes_and_text_too(tmp_path):
    from pi_appliance.player import PlaylistTooLarge

    p, _ = make(tmp_path, max_notes=10, max_uri_bytes=60)
    await p.start()
    p.clear()
    p.add_tune(tune("a", notes=8), "gen:a")
    with pytest.raises(PlaylistTooLarge):
        p.add_tune(tune("b", notes=3), "gen:b")
    p.delete(0)
    p.add_tune(tune("b", notes=3), "gen:b")
    with pytest.raises(PlaylistTooLarge):
        p.add("rtttl:" + "x" * 60)
    p.clear()
    p.add("rtttl:" + "x" * 50)
    await p.close()
