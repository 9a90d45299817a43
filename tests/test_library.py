"""The tune library: built-ins, stored tunes (validated, atomic), stored playlists and their errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pi_appliance.library import (
    BadIndex,
    BadName,
    Library,
    LibraryFull,
    NoSuchPlaylist,
    NoSuchTune,
    PlaylistExists,
    PlaylistTooLarge,
)
from pi_appliance.music import TuneError, parse_tune


@pytest.fixture
def lib(tmp_path: Path) -> Library:
    return Library(tmp_path / "state")


def test_builtins_in_order_demo_first_and_short(lib: Library) -> None:
    builtins = lib.builtins()
    assert len(builtins) >= 5
    uris = [t.uri for t in builtins]
    assert uris == sorted(uris)
    assert uris[0] == "builtin/01-demo.rtttl"
    assert all(u.startswith("builtin/") and u.endswith(".rtttl") for u in uris)
    assert 4_000_000 <= builtins[0].duration_us <= 10_000_000  # the demo finishes fast
    titles = " ".join(t.title for t in builtins)
    for melody in ("Ode to Joy", "Fur Elise", "Moonlight Sonata"):
        assert melody in titles
    for t in builtins:
        assert t.tune.source_format == "rtttl"
        assert t.duration_us == t.tune.duration_us > 0
        assert lib.lookup(t.uri) == t


def test_lookup_unknown(lib: Library) -> None:
    for uri in ("builtin/99-none.rtttl", "tunes/none.rtttl", "nowhere", "", "tunes/../x.rtttl"):
        with pytest.raises(NoSuchTune):
            lib.lookup(uri)


def test_directories(lib: Library) -> None:
    assert lib.directories() == ["builtin", "tunes"]


def test_add_tune_stores_and_lists_after_builtins(lib: Library) -> None:
    lt = lib.add_tune("zeta", "Zeta:d=4,o=5,b=120:c,e,g")
    assert lt.uri == "tunes/zeta.rtttl" and lt.title == "Zeta"
    assert lt.duration_us == 1_500_000
    beep = lib.add_tune("alpha.beep", "-f 880 -l 100 -r 2")
    assert beep.uri == "tunes/alpha.beep" and beep.title == "alpha"
    uris = [t.uri for t in lib.tunes()]
    assert uris[-2:] == ["tunes/alpha.beep", "tunes/zeta.rtttl"]
    assert uris[: len(lib.builtins())] == [t.uri for t in lib.builtins()]
    # stored on disk, found by a fresh Library over the same state dir
    again = Library(lib.state_dir)
    assert again.lookup("tunes/zeta.rtttl").tune == lt.tune
    assert (lib.state_dir / "tunes" / "zeta.rtttl").read_text() == "Zeta:d=4,o=5,b=120:c,e,g\n"


def test_add_tune_validates_before_writing(lib: Library) -> None:
    lib.add_tune("keep", "Keep:d=4:c")
    with pytest.raises(TuneError) as ei:
        lib.add_tune("keep.rtttl", "Keep:d=4:c,junk")
    assert ei.value.position == 11
    assert lib.lookup("tunes/keep.rtttl").tune.notes[0].freq_hz > 0
    assert (lib.state_dir / "tunes" / "keep.rtttl").read_text() == "Keep:d=4:c\n"
    with pytest.raises(TuneError):
        lib.add_tune("x.beep", "Keep:d=4:c")  # the suffix fixes the format
    with pytest.raises(TuneError):
        lib.add_tune("knocks", "1100")  # knock pools are not stored tunes
    assert sorted(p.name for p in (lib.state_dir / "tunes").iterdir()) == ["keep.rtttl"]


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "a\nb", "x" * 300, "back\\slash", "nul\0"])
def test_add_tune_bad_names(lib: Library, name: str) -> None:
    with pytest.raises(BadName):
        lib.add_tune(name, "A:d=4:c")


def test_library_limit(tmp_path: Path) -> None:
    lib = Library(tmp_path, max_tunes=2)
    lib.add_tune("a", "A:d=4:c")
    lib.add_tune("b", "B:d=4:c")
    lib.add_tune("a", "A:d=4:d")  # replacing is fine
    with pytest.raises(LibraryFull):
        lib.add_tune("c", "C:d=4:c")


def test_remove_tune(lib: Library) -> None:
    lib.add_tune("gone", "G:d=4:c")
    lib.remove_tune("tunes/gone.rtttl")
    with pytest.raises(NoSuchTune):
        lib.lookup("tunes/gone.rtttl")
    assert not (lib.state_dir / "tunes" / "gone.rtttl").exists()
    with pytest.raises(NoSuchTune):
        lib.remove_tune("tunes/gone.rtttl")
    with pytest.raises(BadName):
        lib.remove_tune("builtin/01-demo.rtttl")


def test_rescan_sees_outside_changes_and_skips_bad_files(lib: Library) -> None:
    assert lib.rescan() is False
    tunes = lib.state_dir / "tunes"
    (tunes / "new.rtttl").write_text("New:d=8:c,d,e")
    (tunes / "bad.rtttl").write_text("Bad:d=8:c,zz")
    (tunes / ".new.rtttl.123.tmp").write_text("half")
    assert lib.rescan() is True
    uris = [t.uri for t in lib.tunes()]
    assert "tunes/new.rtttl" in uris and "tunes/bad.rtttl" not in uris
    assert lib.rescan() is False
    (tunes / "new.rtttl").unlink()
    assert lib.rescan() is True
    assert "tunes/new.rtttl" not in [t.uri for t in lib.tunes()]


def test_lookup_finds_a_file_copied_in_since_the_last_scan(lib: Library) -> None:
    (lib.state_dir / "tunes" / "late.beep").write_text("-f 1000")
    assert lib.lookup("tunes/late.beep").tune.notes[0].freq_hz == 1000.0


# --- crash safety -------------------------------------------------------------------------------

_CRASHER = textwrap.dedent(
    """
    import os, sys
    import pi_appliance.atomic as atomic
    from pi_appliance.library import Library

    real_replace = os.replace

    def die_before_rename(src, dst):
        # the temp file is written and fsynced; the process dies before the rename
        os.kill(os.getpid(), 9)

    atomic.os.replace = die_before_rename
    Library(sys.argv[1]).add_tune("song", "New:d=4,o=5,b=100:" + ",".join(["c"] * 2000))
    """
)


def test_a_crash_mid_write_never_leaves_half_a_tune(lib: Library) -> None:
    old = lib.add_tune("song", "Old:d=4:c,d,e")
    proc = subprocess.run([sys.executable, "-c", _CRASHER, str(lib.state_dir)], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    tunes = lib.state_dir / "tunes"
    leftovers = [p.name for p in tunes.iterdir() if p.name.endswith(".tmp")]
    assert leftovers, "the crash should have left the temp file behind"
    # the old tune is intact, and a restart cleans the temp file away
    assert (tunes / "song.rtttl").read_text() == "Old:d=4:c,d,e\n"
    again = Library(lib.state_dir)
    assert again.lookup("tunes/song.rtttl").tune == old.tune
    assert not [p for p in tunes.iterdir() if p.name.endswith(".tmp")]


def test_a_killed_writer_leaves_old_or_new_never_a_mix(lib: Library) -> None:
    """kill -9 a process that rewrites one tune in a loop; every read sees a whole tune."""
    lib.add_tune("loop", "A:d=4:c")
    script = textwrap.dedent(
        """
        import sys
        from pi_appliance.library import Library
        lib = Library(sys.argv[1])
        i = 0
        print("ready", flush=True)
        while True:
            i += 1
            lib.add_tune("loop", ("B" if i % 2 else "A") + ":d=4:" + ",".join(["c"] * (1 + i % 500)))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(lib.state_dir)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        path = lib.state_dir / "tunes" / "loop.rtttl"
        for _ in range(200):
            text = path.read_text()
            assert text.endswith("\n")
            parse_tune(text)  # a whole tune, old or new
    finally:
        os.kill(proc.pid, 9)
        proc.wait(timeout=30)
    assert Library(lib.state_dir).lookup("tunes/loop.rtttl").tune.notes


# --- stored playlists ---------------------------------------------------------------------------


def test_playlists_crud(lib: Library) -> None:
    assert lib.playlists() == []
    lib.save_playlist("mix", ["builtin/01-demo.rtttl", "rtttl:A:d=4:c"])
    assert lib.playlist("mix") == ["builtin/01-demo.rtttl", "rtttl:A:d=4:c"]
    assert [p.name for p in lib.playlists()] == ["mix"]
    assert (lib.state_dir / "playlists" / "mix.m3u").read_text() == "builtin/01-demo.rtttl\nrtttl:A:d=4:c\n"
    with pytest.raises(PlaylistExists):
        lib.save_playlist("mix", [])
    lib.save_playlist("mix", ["a"], replace=True)
    assert lib.playlist("mix") == ["a"]
    lib.playlist_add("mix", "b")
    lib.playlist_add("fresh", "x")  # created on the fly, as MPD's playlistadd
    assert lib.playlist("fresh") == ["x"]
    lib.playlist_add("mix", "c")
    lib.playlist_move("mix", 0, 2)
    assert lib.playlist("mix") == ["b", "c", "a"]
    lib.playlist_move("mix", 1, 1)
    lib.playlist_delete("mix", 1)
    assert lib.playlist("mix") == ["b", "a"]
    lib.rename_playlist("mix", "renamed")
    assert [p.name for p in lib.playlists()] == ["fresh", "renamed"]
    with pytest.raises(PlaylistExists):
        lib.rename_playlist("renamed", "fresh")
    lib.playlist_clear("renamed")
    assert lib.playlist("renamed") == []
    lib.playlist_clear("brandnew")
    assert lib.playlist("brandnew") == []
    lib.delete_playlist("renamed")
    with pytest.raises(NoSuchPlaylist):
        lib.playlist("renamed")


def test_playlist_errors(lib: Library) -> None:
    for call in (
        lambda: lib.playlist("none"),
        lambda: lib.delete_playlist("none"),
        lambda: lib.rename_playlist("none", "other"),
        lambda: lib.playlist_delete("none", 0),
        lambda: lib.playlist_move("none", 0, 0),
    ):
        with pytest.raises(NoSuchPlaylist):
            call()
    lib.save_playlist("p", ["a", "b"])
    for call in (
        lambda: lib.playlist_delete("p", 2),
        lambda: lib.playlist_delete("p", -1),
        lambda: lib.playlist_move("p", 0, 5),
        lambda: lib.playlist_move("p", 7, 0),
    ):
        with pytest.raises(BadIndex):
            call()
    for bad in ("", "a/b", ".x", "line\nbreak"):
        with pytest.raises(BadName):
            lib.save_playlist(bad, [])
    with pytest.raises(BadName):
        lib.playlist_add("p", "two\nlines")
    assert lib.playlist("p") == ["a", "b"]


def test_playlist_length_limit(tmp_path: Path) -> None:
    lib = Library(tmp_path, max_playlist_length=2)
    lib.playlist_add("p", "a")
    lib.playlist_add("p", "b")
    with pytest.raises(PlaylistTooLarge):
        lib.playlist_add("p", "c")
    with pytest.raises(PlaylistTooLarge):
        lib.save_playlist("q", ["a", "b", "c"])
    assert lib.playlist("p") == ["a", "b"]


# --- playlists against a model (hypothesis) -----------------------------------------------------

_names = st.sampled_from(["a", "b", "c"])
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("save"), _names, st.lists(st.sampled_from(["x", "y", "z"]), max_size=3), st.booleans()),
        st.tuples(st.just("add"), _names, st.sampled_from(["x", "y"])),
        st.tuples(st.just("delete"), _names),
        st.tuples(st.just("rename"), _names, _names),
        st.tuples(st.just("clear"), _names),
        st.tuples(st.just("del_at"), _names, st.integers(-1, 3)),
        st.tuples(st.just("move"), _names, st.integers(-1, 3), st.integers(-1, 3)),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_playlists_behave_like_a_dict_of_lists(tmp_path_factory: pytest.TempPathFactory, ops: list[tuple]) -> None:
    lib = Library(tmp_path_factory.mktemp("pl"), max_playlist_length=4)
    model: dict[str, list[str]] = {}
    for op, name, *args in ops:
        expected: type[Exception] | None = None
        if op == "save":
            uris, replace = args
            if name in model and not replace:
                expected = PlaylistExists
            elif len(uris) > 4:
                expected = PlaylistTooLarge
            else:
                model[name] = list(uris)
            method, call_args, kw = "save_playlist", (name, uris), {"replace": replace}
        elif op == "add":
            if len(model.get(name, [])) >= 4:
                expected = PlaylistTooLarge
            else:
                model.setdefault(name, []).append(args[0])
            method, call_args, kw = "playlist_add", (name, args[0]), {}
        elif op == "delete":
            if name not in model:
                expected = NoSuchPlaylist
            model.pop(name, None)
            method, call_args, kw = "delete_playlist", (name,), {}
        elif op == "rename":
            new = args[0]
            if name not in model:
                expected = NoSuchPlaylist
            elif new in model:
                expected = PlaylistExists
            else:
                model[new] = model.pop(name)
            method, call_args, kw = "rename_playlist", (name, new), {}
        elif op == "clear":
            model[name] = []
            method, call_args, kw = "playlist_clear", (name,), {}
        elif op == "del_at":
            pos = args[0]
            if name not in model:
                expected = NoSuchPlaylist
            elif not 0 <= pos < len(model[name]):
                expected = BadIndex
            else:
                del model[name][pos]
            method, call_args, kw = "playlist_delete", (name, pos), {}
        else:
            a, b = args
            if name not in model:
                expected = NoSuchPlaylist
            elif not (0 <= a < len(model[name]) and 0 <= b < len(model[name])):
                expected = BadIndex
            else:
                model[name].insert(b, model[name].pop(a))
            method, call_args, kw = "playlist_move", (name, a, b), {}
        if expected is None:
            getattr(lib, method)(*call_args, **kw)
        else:
            with pytest.raises(expected):
                getattr(lib, method)(*call_args, **kw)
        assert {p.name: lib.playlist(p.name) for p in lib.playlists()} == model
