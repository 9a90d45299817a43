"""pictl against our own running daemon (simulator output), every command, plus the CLI's manners."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pi_appliance.cli import pictl
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
PICTL = [sys.executable, "-m", "pi_appliance.cli.pictl"]
SHORT = "rtttl:Short:d=8,o=6,b=240:c,e,g"  # 3 eighths at 240 bpm: 0.375 s


def start_daemon(state: Path, port: int, *extra: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """``pi-appliance`` on 127.0.0.1:port with the simulator; returns once it accepts connections."""
    log = (state.parent / f"{state.name}.log").open("wb")
    p = subprocess.Popen(
        [*prefix, sys.executable, "-m", "pi_appliance.daemon", "--bind", "127.0.0.1", "--port", str(port),
         "--state-dir", str(state), "--output", "sim", "--log-level", "info", *extra],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 20
    while True:
        if p.poll() is not None:
            pytest.fail(f"the daemon exited: {(state.parent / f'{state.name}.log').read_text()[-2000:]}")
        probe = [*prefix, sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"]
        if prefix:
            ok = subprocess.run(probe, capture_output=True).returncode == 0
        else:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                ok = True
            except OSError:
                ok = False
        if ok:
            return p
        if time.monotonic() > deadline:
            p.kill()
            pytest.fail("the daemon did not open its MPD port")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    p = start_daemon(tmp_path_factory.mktemp("d") / "state", port, "--no-mdns")
    try:
        yield port
    finally:
        p.terminate()
        p.wait(15)


def pc(port: int, *args: str) -> tuple[str, str, int]:
    """pictl's main() in this process against 127.0.0.1:port."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = pictl.main(["--host", "127.0.0.1", "--port", str(port), *args])
    return out.getvalue(), err.getvalue(), rc


def ok(port: int, *args: str) -> str:
    out, err, rc = pc(port, *args)
    assert rc == 0, f"pictl {' '.join(args)}: {err}"
    return out


def test_queue_commands(daemon: int, tmp_path: Path) -> None:
    p = daemon
    assert ok(p, "version") == "mpd version: 0.23.5\n"
    assert ok(p, "clear") == "volume:100%   repeat: off   random: off   single: off   consume: off\n"
    assert ok(p, "playlist") == ""
    ok(p, "add", "rtttl:Inline:d=4,o=5,b=200:c,e,g")
    (tmp_path / "tune.rtttl").write_text("From File:d=8,o=5,b=180:a,b,c6\n")
    (tmp_path / "tune.beep").write_text("beep -f 440 -l 100 -n -f 880 -l 100\n")
    import mido

    mid = mido.MidiFile()
    track = mido.MidiTrack()
    for n in (60, 64, 67):
        track += [mido.Message("note_on", note=n, velocity=64, time=0), mido.Message("note_off", note=n, time=240)]
    mid.tracks.append(track)
    mid.save(tmp_path / "tune.mid")
    ok(p, "add", str(tmp_path / "tune.rtttl"), str(tmp_path / "tune.beep"))
    ok(p, "add", str(tmp_path / "tune.mid"))
    lines = ok(p, "playlist").splitlines()
    assert len(lines) == 4 and lines[:2] == ["Inline", "From File"]

    # a malformed file: one line naming file:line:column, nothing sent
    (tmp_path / "bad.rtttl").write_text("Bad:d=4,o=5,b=120:c,zz,e\n")
    _, err, rc = pc(p, "add", str(tmp_path / "bad.rtttl"))
    assert rc == 1 and err == f"pictl: {tmp_path / 'bad.rtttl'}:1:21: note 2: cannot parse 'zz'\n"
    assert len(ok(p, "playlist").splitlines()) == 4
    _, err, rc = pc(p, "add", "nosuch/tune.rtttl")
    assert rc == 1 and err.startswith("error adding nosuch/tune.rtttl: ")

    # stored playlists
    assert ok(p, "save", "mine") == ""
    assert "mine" in ok(p, "lsplaylists").splitlines()
    ok(p, "clear")
    assert ok(p, "load", "mine") == "loading: mine\n"
    assert len(ok(p, "playlist").splitlines()) == 4
    assert ok(p, "del", "1") == ""
    assert ok(p, "playlist").splitlines()[0] == "From File"
    ok(p, "del", "2-3")
    assert ok(p, "playlist").splitlines() == ["From File"]


def test_playback_and_options(daemon: int) -> None:
    p = daemon
    ok(p, "-q", "clear")
    for title in ("One", "Two", "Three"):
        ok(p, "add", f"rtttl:{title}:d=1,o=5,b=30:c,e,g,c6")  # 4 whole notes at 30 bpm: 32 s
    out = ok(p, "play", "2")
    assert out.splitlines()[:2] == ["Two", "[playing] #2/3   0:00/0:32 (0%)"]
    assert ok(p, "current") == "Two\n"
    assert ok(p, "pause").splitlines()[1].startswith("[paused]  #2/3")
    assert ok(p, "toggle").splitlines()[1].startswith("[playing] #2/3")
    assert ok(p, "toggle").splitlines()[1].startswith("[paused]  #2/3")
    assert ok(p, "next").splitlines()[0] == "Three"
    assert ok(p, "prev").splitlines()[0] == "Two"
    ok(p, "pause")
    assert ok(p, "seek", "0:10").splitlines()[1] == "[paused]  #2/3   0:10/0:32 (31%)"
    assert ok(p, "seek", "+4").splitlines()[1] == "[paused]  #2/3   0:14/0:32 (43%)"
    assert ok(p, "seek", "50%").splitlines()[1] == "[paused]  #2/3   0:16/0:32 (50%)"
    assert ok(p, "volume", "30").splitlines()[-1].startswith("volume: 30%")
    ok(p, "volume", "+5")
    assert ok(p, "volume") == "volume: 35%\n"
    assert "repeat: on " in ok(p, "repeat", "on")
    assert "random: on " in ok(p, "random")
    assert "single: once" in ok(p, "single", "once")
    assert "consume: on " in ok(p, "consume", "on")
    last = ok(p, "consume", "off").splitlines()[-1]
    assert last == "volume: 35%   repeat: on    random: on    single: once  consume: off"
    for mode in ("repeat", "random", "single"):
        ok(p, "-q", mode, "off")
    out, err, rc = pc(p, "play", "99")
    assert (err, rc) == ("MPD error: Bad song index\n", 1)
    assert ok(p, "stop") == "volume: 35%   repeat: off   random: off   single: off   consume: off\n"
    assert ok(p, "current") == ""
    assert ok(p, "outputs").startswith("Output 1 (sim GPIO18 @ 127.0.0.1:")
    stats = ok(p, "stats").splitlines()
    assert stats[2].startswith("Songs:") and stats[4].startswith("Play Time:    0 days, ")
    ok(p, "-q", "volume", "100")


def test_idle_and_idleloop(daemon: int) -> None:
    p = daemon
    result: list[tuple[str, str, int]] = []
    t = threading.Thread(target=lambda: result.append(pc(p, "idle", "mixer")))
    t.start()
    time.sleep(0.5)
    ok(p, "-q", "volume", "90")
    t.join(10)
    assert result == [("mixer\n", "", 0)]

    env = {**os.environ, "MPD_HOST": "127.0.0.1", "MPD_PORT": str(p)}
    loop = subprocess.Popen([*PICTL, "idleloop"], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        time.sleep(1.0)
        ok(p, "-q", "volume", "100")
        assert loop.stdout is not None and loop.stdout.readline() == "mixer\n"
        ok(p, "-q", "repeat", "on")
        ok(p, "-q", "repeat", "off")
        assert loop.stdout.readline() == "options\n"
    finally:
        loop.terminate()
        loop.wait(5)


def test_play_wait_shows_progress_until_the_end(daemon: int) -> None:
    p = daemon
    ok(p, "-q", "clear")
    ok(p, "add", SHORT)
    t0 = time.monotonic()
    r = subprocess.run(
        [*PICTL, "--host", "127.0.0.1", "--port", str(p), "play", "--wait", "1"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert took >= 0.375
    bars = r.stderr.splitlines()
    assert bars[0].startswith("[---") and bars[-1] == "[" + "#" * 30 + "] 0:00/0:00 100%"
    assert ok(p, "status") == "volume:100%   repeat: off   random: off   single: off   consume: off\n"


def test_render_knock_completion(tmp_path: Path) -> None:
    (tmp_path / "t.rtttl").write_text("T:d=8,o=6,b=240:c,e\n")
    out, err, rc = pc(0, "render", str(tmp_path / "t.rtttl"), "-o", str(tmp_path / "t.wav"))
    assert rc == 0, err
    assert (tmp_path / "t.wav").stat().st_size > 44
    out, err, rc = pc(0, "knock", "--help")
    assert rc == 0 and "usage: " in out, err
    r = subprocess.run([*PICTL, "completion", "bash"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "complete " in r.stdout and "pictl" in r.stdout
    # bash itself, with the script loaded, completes "pictl idl" (the installed pictl answers)
    script = (
        'source <(pictl completion bash); COMP_WORDS=(pictl idl); COMP_CWORD=1; COMP_LINE="pictl idl"; '
        'COMP_POINT=9; _python_argcomplete pictl; echo "${COMPREPLY[@]}"'
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    assert r.stdout.split() == ["idle", "idleloop"], r.stderr


def test_errors_are_one_line(tmp_path: Path) -> None:
    closed = free_port()
    r = subprocess.run(
        [*PICTL, "--host", "127.0.0.1", "--port", str(closed), "status"], capture_output=True, text=True, cwd=ROOT
    )
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "pictl: Connection refused\n")
    r = subprocess.run(
        [*PICTL, "--debug", "--host", "127.0.0.1", "--port", str(closed), "status"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr
    assert r.stderr.endswith("pictl: Connection refused\n")
    r = subprocess.run([*PICTL, "seek"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "usage:" in r.stderr


def test_orchestra_reads_voices(tmp_path: Path) -> None:
    """MIDI tracks become voices (music's parse_score), a text file gives one voice a line."""
    import mido

    from pi_appliance.errors import ApplianceError

    mid = mido.MidiFile(ticks_per_beat=480)
    for notes in ((72, 74, 76), (60, 62, 64), (48, 50, 52)):
        track = mido.MidiTrack()
        for n in notes:
            track += [mido.Message("note_on", note=n, velocity=64, time=0), mido.Message("note_off", note=n, time=480)]
        mid.tracks.append(track)
    mid.save(tmp_path / "trio.mid")
    _, voices = pictl.read_voices(str(tmp_path / "trio.mid"))
    assert len(voices) == 3
    assert sorted(round(v.notes[0].freq_hz) for v in voices) == [131, 262, 523]

    (tmp_path / "duet.txt").write_text("# a duet\nA:d=4,o=5,b=120:c,e\n\nbeep -f 440 -l 200\n")
    _, voices = pictl.read_voices(str(tmp_path / "duet.txt"))
    assert [round(v.notes[0].freq_hz) for v in voices] == [523, 440]
    (tmp_path / "bad.txt").write_text("A:d=4,o=5,b=120:c,e\nB:d=4,o=5,b=120:c,qq\n")
    with pytest.raises(ApplianceError, match=r"bad\.txt:2:19: "):
        pictl.read_voices(str(tmp_path / "bad.txt"))


def test_add_a_broken_midi_names_the_byte(tmp_path: Path) -> None:
    """Parsed locally before any connection: a truncated MIDI file is one line naming the byte."""
    (tmp_path / "cut.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x20\x00\x90")
    out, err, rc = pc(free_port(), "add", str(tmp_path / "cut.mid"))
    assert rc == 1 and out == ""
    assert err.startswith(f"pictl: {tmp_path / 'cut.mid'}: byte ") and err.count("\n") == 1


def test_daemon_serves_on_when_mdns_cannot_start(tmp_path: Path) -> None:
    """mDNS that cannot bind (no such address here) is one error line; the MPD port still answers."""
    conf = tmp_path / "c.toml"
    conf.write_text('[discovery]\ninterfaces = ["10.9.9.9"]\n')
    port = free_port()
    p = start_daemon(tmp_path / "state", port, "--config", str(conf))
    try:
        assert ok(port, "version") == "mpd version: 0.23.5\n"
        deadline = time.monotonic() + 10
        log = tmp_path / "state.log"
        while "mDNS: not advertising" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "mDNS: not advertising (OSError" in log.read_text()
        assert ok(port, "version") == "mpd version: 0.23.5\n"
    finally:
        p.terminate()
        p.wait(15)
