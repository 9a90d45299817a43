"""The player's MPD semantics, step by step on a virtual clock (tests/fakes.py).

Each expectation is MPD 0.23's behaviour (src/queue/Playlist*.cxx, Queue.cxx) unless a comment says
otherwise; the MPD layer's own tests check the same through real clients.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from fakes import FakeLibrary, FakeOutput, VirtualClock, fake_parse_inline, settle, tune

from pi_appliance.library import NoSuchTune
from pi_appliance.player import (
    BadArgument,
    BadSongIndex,
    NoSuchSong,
    NotPlaying,
    Player,
    PlayState,
)


class Rig:
    def __init__(self, n: int = 0, seed: int = 1, **kw) -> None:
        self.clock = VirtualClock()
        self.out = FakeOutput(self.clock)
        self.lib = FakeLibrary({f"tunes/t{i}.rtttl": tune(f"T{i}", 1.0 + i) for i in range(8)})
        self.player = Player(
            self.out, self.lib, clock=self.clock, rng=random.Random(seed), parse_inline=fake_parse_inline, **kw
        )
        self.events: list[str] = []
        self.player.subscribe(self.events.append)
        self.n = n

    async def start(self) -> Rig:
        await self.player.start()
        self.player.clear()
        for i in range(self.n):
            self.player.add(f"tunes/t{i}.rtttl")
        self.events.clear()
        self.out.calls.clear()
        return self

    def titles(self) -> list[str]:
        return [e.title for e in self.player.entries()]

    async def run(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, in small steps, letting the player react."""
        steps = round(seconds / 0.05)
        for _ in range(steps):
            self.out.advance(0.05)
            await settle()

    def take(self) -> list[str]:
        ev, self.events[:] = list(self.events), []
        return ev


async def rig(n: int = 4, **kw) -> Rig:
    return await Rig(n, **kw).start()


# ---------------------------------------------------------------- start, queue


async def test_first_start_queue_holds_the_builtins_and_play_0_plays_tune_1():
    clock = VirtualClock()
    out = FakeOutput(clock)
    lib = FakeLibrary()
    p = Player(out, lib, clock=clock)
    await p.start()
    assert [e.uri for e in p.entries()] == [t.uri for t in lib.builtins()]
    assert out.volume == 100
    await p.play(0)
    assert out.playing == "B1"
    st = p.status()
    assert (st.state, st.song, st.songid) == (PlayState.PLAY, 0, p.entries()[0].id)


async def test_ids_are_stable_and_versions_track_changes():
    r = await rig(0)
    p = r.player
    ids = [p.add(f"tunes/t{i}.rtttl") for i in range(3)]
    assert len(set(ids)) == 3
    v = p.status().playlist_version
    p.delete(0)
    assert p.status().playlist_version == v + 1
    assert [e.id for e in p.entries()] == ids[1:]
    # both survivors moved up one position: both changed since v
    assert [pos for pos, _ in p.changes_since(v)] == [0, 1]
    v2 = p.status().playlist_version
    p.add("tunes/t5.rtttl")
    assert [(pos, e.title) for pos, e in p.changes_since(v2)] == [(2, "T5")]
    assert p.changes_since(0) == list(enumerate(p.entries()))
    assert p.changes_since(v2 + 100) == list(enumerate(p.entries()))  # unknown future version: all
    assert r.take() == ["playlist"] * 5


async def test_add_inserts_at_position_and_rejects_bad_input_without_changing_anything():
    r = await rig(3)
    p = r.player
    sid = p.add("tunes/t7.rtttl", 1)
    assert r.titles() == ["T0", "T7", "T1", "T2"]
    assert p.entries()[1].id == sid
    p.add("tunes/t6.rtttl", 4)  # == length: append
    assert r.titles()[-1] == "T6"
    v = p.status().playlist_version
    with pytest.raises(BadSongIndex):
        p.add("tunes/t5.rtttl", 9)
    with pytest.raises(NoSuchTune):
        p.add("tunes/nope.rtttl")
    with pytest.raises(ValueError):  # TuneError
        p.add("rtttl:")
    assert p.status().playlist_version == v and len(p.entries()) == 5


async def test_inline_uris_are_parsed_and_keep_their_uri():
    r = await rig(0)
    sid = r.player.add("rtttl:Zelda:d=4:c")
    e = r.player.entries()[0]
    assert (e.id, e.uri, e.title) == (sid, "rtttl:Zelda:d=4:c", "Zelda")


async def test_queue_is_bounded():
    r = await rig(0, max_length=3)
    for i in range(3):
        r.player.add(f"tunes/t{i}.rtttl")
    from pi_appliance.player import PlaylistTooLarge

    with pytest.raises(PlaylistTooLarge):
        r.player.add("tunes/t3.rtttl")


async def test_delete_ranges_and_ids():
    r = await rig(6)
    p = r.player
    p.delete(1, 3)
    assert r.titles() == ["T0", "T3", "T4", "T5"]
    p.delete(2, 99)  # MPD clips the end of a range
    assert r.titles() == ["T0", "T3"]
    with pytest.raises(BadSongIndex):
        p.delete(2)
    with pytest.raises(BadSongIndex):
        p.delete(3, 4)
    with pytest.raises(NoSuchSong):
        p.delete_id(999)
    p.delete_id(p.entries()[0].id)
    assert r.titles() == ["T3"]


async def test_deleting_the_playing_song_plays_the_next_one():
    r = await rig(3)
    p = r.player
    await p.play(1)
    p.delete(1)
    await settle()
    assert r.out.playing == "T2"
    st = p.status()
    assert (st.state, st.song) == (PlayState.PLAY, 1)
    assert "player" in r.take()


async def test_deleting_the_paused_song_stops_with_the_next_one_current():
    r = await rig(3)
    p = r.player
    await p.play(0)
    await p.pause(True)
    p.delete(0)
    await settle()
    st = p.status()
    assert (st.state, st.song, p.current().title) == (PlayState.STOP, 0, "T1")
    assert r.out.playing is None


async def test_deleting_the_current_song_while_stopped_leaves_no_current_song():
    r = await rig(3)
    p = r.player
    await p.play(1)
    await p.stop()
    p.delete(1)
    assert p.current() is None and p.status().song is None


async def test_move_swap_and_the_current_song_follows():
    r = await rig(5)
    p = r.player
    await p.play(1)
    r.take()
    p.move(0, 2, 3)  # [T0 T1] to 3
    assert r.titles() == ["T2", "T3", "T4", "T0", "T1"]
    assert p.status().song == 4 and p.current().title == "T1"
    p.move(4, None, 0)
    assert r.titles() == ["T1", "T2", "T3", "T4", "T0"]
    with pytest.raises(BadSongIndex):
        p.move(0, 2, 4)  # the range would run past the end
    p.move_id(p.entries()[4].id, 1)
    assert r.titles() == ["T1", "T0", "T2", "T3", "T4"]
    p.swap(0, 4)
    assert r.titles() == ["T4", "T0", "T2", "T3", "T1"]
    assert p.current().title == "T1" and p.status().song == 4
    p.swap_id(p.entries()[0].id, p.entries()[1].id)
    assert r.titles()[:2] == ["T0", "T4"]
    with pytest.raises(NoSuchSong):
        p.swap_id(1, 999)
    with pytest.raises(BadSongIndex):
        p.swap(0, 5)
    assert r.out.playing == "T1"  # moving never interrupts playback
    assert set(r.take()) == {"playlist"}


async def test_move_to_a_negative_position_is_relative_to_the_current_song():
    r = await rig(5)
    p = r.player
    await p.play(1)
    p.move(4, None, -1)  # right after the current song
    assert r.titles() == ["T0", "T1", "T4", "T2", "T3"]


async def test_clear_stops_playback():
    r = await rig(3)
    await r.player.play(0)
    r.take()
    r.player.clear()
    await settle()
    assert r.player.entries() == [] and r.player.status().state is PlayState.STOP
    assert r.out.playing is None
    assert r.take() == ["player", "playlist"]


async def test_shuffle_keeps_the_playing_song_first():
    r = await rig(8)
    p = r.player
    await p.play(5)
    p.shuffle()
    assert r.titles()[0] == "T5" and sorted(r.titles()) == sorted(f"T{i}" for i in range(8))
    assert p.status().song == 0 and r.out.playing == "T5"
    before = r.titles()
    p.shuffle(6, 7)  # fewer than two entries: nothing happens
    assert r.titles() == before


async def test_prio_validation_and_events():
    r = await rig(4)
    p = r.player
    p.prio(10, [(1, 3)])
    assert [e.prio for e in p.entries()] == [0, 10, 10, 0]
    p.prio_id(5, [p.entries()[0].id])
    assert p.entries()[0].prio == 5
    with pytest.raises(BadArgument):
        p.prio(256, [(0, 1)])
    with pytest.raises(BadSongIndex):
        p.prio(1, [(5, 6)])
    with pytest.raises(NoSuchSong):
        p.prio_id(1, [999])
    assert r.take() == ["playlist", "playlist"]


async def test_random_mode_plays_higher_priorities_first_and_resets_prio_when_played():
    r = await rig(6, seed=7)
    p = r.player
    p.set_random(True)
    p.prio(50, [(4, 5)])
    p.prio(20, [(2, 3)])
    await p.play(0)
    played = [r.out.playing]
    for _ in range(5):
        await p.next()
        played.append(r.out.playing)
    assert played[:3] == ["T0", "T4", "T2"]
    assert sorted(played) == [f"T{i}" for i in range(6)]  # each once
    assert all(e.prio == 0 for e in p.entries())


# ---------------------------------------------------------------- playback


async def test_play_stop_pause_and_their_events():
    r = await rig(3)
    p = r.player
    await p.play(2)
    assert r.out.playing == "T2" and r.take() == ["player"]
    await p.play()  # already playing: nothing
    assert r.take() == []
    await p.pause()  # toggle
    assert p.status().state is PlayState.PAUSE and r.out.playing is None
    await p.pause(True)  # already paused: nothing
    assert r.take() == ["player"]
    await p.play()  # resumes
    assert p.status().state is PlayState.PLAY and r.take() == ["player"]
    await p.stop()
    st = p.status()
    assert (st.state, st.song, st.elapsed_s, st.duration_s) == (PlayState.STOP, 2, None, None)
    await p.stop()
    await p.pause()  # stopped: pause does nothing
    assert r.take() == ["player"]
    await p.play()  # plays the current song from its start
    assert r.out.plays()[-1] == ("T2", 0)


async def test_play_errors():
    r = await rig(2)
    with pytest.raises(BadSongIndex):
        await r.player.play(2)
    with pytest.raises(BadSongIndex):
        await r.player.play(-1)
    with pytest.raises(NoSuchSong):
        await r.player.play_id(999)
    await r.player.play_id(r.player.entries()[1].id)
    assert r.out.playing == "T1"


async def test_play_on_an_empty_queue_does_nothing():
    r = await rig(0)
    await r.player.play()
    assert r.player.status().state is PlayState.STOP and r.take() == []


async def test_elapsed_comes_from_the_output_and_pause_resumes_where_it_was():
    r = await rig(3)
    p = r.player
    await p.play(2)  # T2: 3 s
    r.out.advance(1.25)
    st = p.status()
    assert st.elapsed_s == pytest.approx(1.25) and st.duration_s == pytest.approx(3.0)
    await p.pause(True)
    r.out.advance(10)  # paused: time stands still
    assert p.status().elapsed_s == pytest.approx(1.25)
    await p.pause(False)
    assert r.out.plays()[-1] == ("T2", 1_250_000)
    r.out.advance(0.5)
    assert p.status().elapsed_s == pytest.approx(1.75)


async def test_at_ns_reaches_the_output():
    r = await rig(2)
    await r.player.play(1, at_ns=1_900_000_000_000_000_000)
    assert r.out.calls[-1] == ("play", "T1", 0, 1_900_000_000_000_000_000)
    assert r.player.status().elapsed_s == 0.0  # waiting for the instant
    r.out.advance(0.25)
    await r.player.pause(True)
    await r.player.play(at_ns=1_900_000_000_500_000_000)  # a paused fleet resumes together too
    assert r.out.calls[-1] == ("play", "T1", 250_000, 1_900_000_000_500_000_000)


async def test_next_and_previous():
    r = await rig(3)
    p = r.player
    with pytest.raises(NotPlaying):
        await p.next()
    with pytest.raises(NotPlaying):
        await p.previous()
    await p.play(0)
    await p.previous()  # first song, no repeat: starts it again
    assert r.out.plays()[-1] == ("T0", 0)
    await p.next()
    await p.next()
    assert r.out.playing == "T2" and p.status().nextsong is None
    r.take()
    await p.next()  # past the end: stop, no current song
    st = p.status()
    assert (st.state, st.song) == (PlayState.STOP, None) and r.take() == ["player"]
    await p.play(0)
    p.set_repeat(True)
    await p.previous()  # repeat: wraps to the last
    assert r.out.playing == "T2"
    await p.next()
    assert r.out.playing == "T0"


async def test_next_from_pause_plays():
    r = await rig(2)
    await r.player.play(0)
    await r.player.pause(True)
    await r.player.next()
    assert r.player.status().state is PlayState.PLAY and r.out.playing == "T1"


async def test_seek_semantics():
    r = await rig(3)
    p = r.player
    with pytest.raises(NotPlaying):
        await p.seek_cur(1.0)
    await p.seek(1, 0.5)  # stopped: seek starts that song there
    assert r.out.plays()[-1] == ("T1", 500_000) and p.status().state is PlayState.PLAY
    await p.seek_cur(0.25, relative=True)
    assert r.out.plays()[-1] == ("T1", 750_000)
    await p.seek_cur(-5, relative=True)  # clamps at 0
    assert r.out.plays()[-1] == ("T1", 0)
    await p.pause(True)
    await p.seek_cur(1.5)  # paused: stays paused, at the new place
    assert p.status().state is PlayState.PAUSE and p.status().elapsed_s == pytest.approx(1.5)
    await p.pause(False)
    assert r.out.plays()[-1] == ("T1", 1_500_000)
    await p.seek_id(p.entries()[2].id, 2.0)
    assert r.out.plays()[-1] == ("T2", 2_000_000)
    with pytest.raises(BadSongIndex):
        await p.seek(7, 1.0)
    with pytest.raises(NoSuchSong):
        await p.seek_id(999, 1.0)
    with pytest.raises(BadArgument):
        await p.seek(0, -1.0)


async def test_seek_past_the_end_ends_the_song():
    r = await rig(3)
    p = r.player
    await p.play(0)
    await p.seek_cur(99.0)
    await settle()
    assert r.out.playing == "T1" and p.status().song == 1


# ---------------------------------------------------------------- song borders and modes


async def test_songs_follow_each_other_and_the_queue_ends_stopped():
    r = await rig(3)
    p = r.player
    await p.play(0)
    await r.run(1.0)
    assert r.out.playing == "T1" and p.status().song == 1
    await r.run(2.0 + 3.0)
    assert p.status().state is PlayState.STOP and p.current() is None
    assert [t for t, _ in r.out.plays()] == ["T0", "T1", "T2"]


async def test_repeat_wraps_around():
    r = await rig(2)
    p = r.player
    p.set_repeat(True)
    await p.play(1)
    await r.run(2.0)
    assert r.out.playing == "T0"


async def test_single_pauses_at_the_next_song():
    # MPD >= 0.21: "border pause": the next song becomes current, paused at 0
    r = await rig(3)
    p = r.player
    p.set_single("1")
    await p.play(0)
    await r.run(1.0)
    st = p.status()
    assert (st.state, st.song, st.elapsed_s) == (PlayState.PAUSE, 1, 0.0)
    assert r.out.playing is None and p.status().single == "1"
    await p.play()
    assert r.out.plays()[-1] == ("T1", 0)


async def test_single_oneshot_pauses_once_then_switches_itself_off():
    r = await rig(3)
    p = r.player
    p.set_single("oneshot")
    await p.play(0)
    r.take()
    await r.run(1.0)
    st = p.status()
    assert (st.state, st.song, st.single) == (PlayState.PAUSE, 1, "0")
    assert set(r.take()) == {"player", "options"}


async def test_single_with_repeat_repeats_the_song():
    r = await rig(3)
    p = r.player
    p.set_single("1")
    p.set_repeat(True)
    await p.play(1)
    assert p.status().nextsong == 1
    await r.run(2.0)
    assert r.out.playing == "T1" and r.out.plays() == [("T1", 0), ("T1", 0)]


async def test_single_at_the_last_song_stops():
    r = await rig(2)
    p = r.player
    p.set_single("1")
    await p.play(1)
    await r.run(2.0)
    assert p.status().state is PlayState.STOP


async def test_consume_removes_played_songs():
    r = await rig(3)
    p = r.player
    p.set_consume("1")
    await p.play(0)
    await r.run(1.0)
    assert r.titles() == ["T1", "T2"] and r.out.playing == "T1" and p.status().song == 0
    await p.next()
    assert r.titles() == ["T2"]
    await r.run(3.0)
    assert r.titles() == [] and p.status().state is PlayState.STOP


async def test_consume_oneshot_removes_one_song_then_switches_off():
    r = await rig(3)
    p = r.player
    p.set_consume("oneshot")
    await p.play(0)
    await r.run(1.0)
    await r.run(2.0)
    assert r.titles() == ["T1", "T2"] and p.status().consume == "0"


async def test_random_plays_every_song_once_then_stops():
    r = await rig(6, seed=3)
    p = r.player
    p.set_random(True)
    await p.play()
    await r.run(sum(1.0 + i for i in range(6)) + 1)
    played = [t for t, _ in r.out.plays()]
    assert sorted(played) == [f"T{i}" for i in range(6)] and played != sorted(played)
    assert p.status().state is PlayState.STOP


async def test_random_on_while_playing_keeps_the_current_song_and_off_restores_order():
    r = await rig(6, seed=5)
    p = r.player
    await p.play(2)
    p.set_random(True)
    assert p.status().song == 2 and r.out.playing == "T2"
    p.set_random(False)
    assert p.status().nextsong == 3


async def test_random_on_while_stopped_forgets_the_current_song():
    r = await rig(3)
    await r.player.play(1)
    await r.player.stop()
    r.player.set_random(True)
    assert r.player.status().song is None


async def test_modes_raise_options_only_on_change_and_validate():
    r = await rig(1)
    p = r.player
    p.set_repeat(True)
    p.set_repeat(True)
    p.set_random(False)
    p.set_single("oneshot")
    p.set_consume("1")
    assert r.take() == ["options", "options", "options"]
    with pytest.raises(BadArgument):
        p.set_single("2")
    with pytest.raises(BadArgument):
        p.set_consume("yes")
    st = p.status()
    assert (st.repeat, st.random, st.single, st.consume) == (True, False, "oneshot", "1")


async def test_volume_is_the_outputs_and_always_raises_mixer():
    r = await rig(1)
    p = r.player
    await p.set_volume(40)
    await p.set_volume(40)
    assert r.out.volume == 40 and p.status().volume == 40
    assert r.take() == ["mixer", "mixer"]
    with pytest.raises(BadArgument):
        await p.set_volume(101)
    with pytest.raises(BadArgument):
        await p.set_volume(-1)


# ---------------------------------------------------------------- errors and races


async def test_output_error_stops_and_stays_until_clear_error():
    r = await rig(2)
    p = r.player
    await p.play(0)
    r.take()
    r.out.fail("pigpiod went away")
    st = p.status()
    assert (st.state, st.error, st.song) == (PlayState.STOP, "pigpiod went away", 0)
    assert r.take() == ["player"]
    await p.set_volume(20)
    assert p.status().error == "pigpiod went away"
    p.clear_error()
    assert p.status().error is None


async def test_a_failing_play_sets_error_and_the_next_play_clears_it():
    r = await rig(2)
    p = r.player
    r.out.fail_next_play = "wave limit reached"
    await p.play(0)
    st = p.status()
    assert (st.state, st.error) == (PlayState.STOP, "wave limit reached")
    await p.play(1)
    assert p.status().error is None and r.out.playing == "T1"


async def test_an_end_reported_while_a_play_is_on_its_way_is_ignored():
    r = await rig(3)
    p = r.player
    await p.play(0)
    task = asyncio.ensure_future(p.play(2))
    await asyncio.sleep(0)  # the player has decided; its output operation has not run yet
    assert p.status().song == 2 and r.out.playing == "T0"
    r.out._listener.output_finished()  # the old tune's end, arriving late
    await task
    await settle()
    assert r.out.playing == "T2" and p.status().song == 2
    assert [t for t, _ in r.out.plays()] == ["T0", "T2"]


async def test_status_reports_next_song_and_stopped_current_song():
    r = await rig(3)
    p = r.player
    st = p.status()
    assert (st.song, st.nextsong, st.playlist_length) == (None, None, 3)
    await p.play(0)
    st = p.status()
    assert (st.song, st.songid, st.nextsong, st.nextsongid) == (0, p.entries()[0].id, 1, p.entries()[1].id)
    await p.stop()
    st = p.status()
    assert (st.song, st.nextsong, st.elapsed_s) == (0, 1, None)
    assert p.current().title == "T0"


async def test_a_broken_subscriber_does_not_break_the_player():
    r = await rig(1)

    def boom(_: str) -> None:
        raise RuntimeError("boom")

    unsub = r.player.subscribe(boom)
    await r.player.play(0)
    assert r.take() == ["player"]
    unsub()
    unsub()


async def test_entry_by_id_and_play_time():
    r = await rig(2)
    p = r.player
    sid = p.entries()[1].id
    assert p.entry_by_id(sid) == (1, p.entries()[1])
    with pytest.raises(NoSuchSong):
        p.entry_by_id(999)
    assert p.output is r.out
    await p.play(1)
    r.clock.t += 0.75
    assert p.play_time_s == pytest.approx(0.75)
    await p.pause(True)
    r.clock.t += 5
    assert p.play_time_s == pytest.approx(0.75)


async def test_plchanges_sees_every_entry_an_edit_moved():
    r = await rig(5)
    p = r.player
    v = p.status().playlist_version
    p.add("tunes/t7.rtttl", 1)  # inserting moves everything after it down
    assert [pos for pos, _ in p.changes_since(v)] == [1, 2, 3, 4, 5]
    assert all(e.version == v for _, e in p.changes_since(v))
    v = p.status().playlist_version
    p.move(4, None, 2)  # 4 -> 2: positions 2..4 change
    assert [pos for pos, _ in p.changes_since(v)] == [2, 3, 4]
    v = p.status().playlist_version
    p.swap(0, 5)
    assert [pos for pos, _ in p.changes_since(v)] == [0, 5]
    v = p.status().playlist_version
    p.prio(3, [(2, 3)])
    assert [pos for pos, _ in p.changes_since(v)] == [2]
    assert [e.version for e in p.entries()] == [p.entries()[i].version for i in range(6)]
    assert p.changes_since(p.status().playlist_version) == []
