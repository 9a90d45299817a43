"""pictl against Debian's real mpd, side by side with Debian's mpc: same output, same exit codes.

Two identical mpd instances get the same command sequence, one from mpc, one from pictl, so that
toggling commands see the same state on both. Songs stay paused where elapsed time would differ.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from pi_appliance.cli import pictl
from tests.conftest import free_port, need_program


def _wav(path: Path, secs: float, freq: float, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(int(secs * rate))
            )
        )


def _mpd(root: Path, port: int) -> subprocess.Popen[bytes]:
    music = root / "music"
    (root / "playlists").mkdir(parents=True)
    music.mkdir()
    _wav(music / "beep_a.wav", 60, 440)
    _wav(music / "beep_b.wav", 45, 523)
    subprocess.run(
        [need_program("sox"), "-n", "-r", "8000", "-c", "1", "-b", "16", "--comment", "ARTIST=Test Artist",
         "--add-comment", "TITLE=Tagged Tune", str(music / "tagged.flac"), "synth", "90", "sine", "330"],
        check=True,
    )  # fmt: skip
    conf = root / "mpd.conf"
    conf.write_text(
        f'music_directory "{music}"\nplaylist_directory "{root}/playlists"\ndb_file "{root}/db"\n'
        f'state_file "{root}/state"\nlog_file "{root}/log"\nbind_to_address "127.0.0.1"\nport "{port}"\n'
        'zeroconf_enabled "no"\nauto_update "no"\n'
        'audio_output {\n type "null"\n name "null"\n mixer_type "software"\n}\n'
    )
    p = subprocess.Popen(
        [need_program("mpd"), "--no-daemon", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while subprocess.run(["mpc", "-p", str(port), "version"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            p.kill()
            pytest.fail("mpd did not start")
        time.sleep(0.05)
    subprocess.run(["mpc", "-p", str(port), "-q", "update", "--wait"], check=True)
    return p


@pytest.fixture
def two_mpds(tmp_path: Path) -> Iterator[tuple[int, int]]:
    need_program("mpc")
    ports = free_port(), free_port()
    procs = [_mpd(tmp_path / f"m{i}", port) for i, port in enumerate(ports)]
    try:
        yield ports
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def run(prog: list[str], port: int, args: list[str]) -> tuple[str, str, int]:
    if prog == PICTL:
        return run_inproc(port, args)
    env = {k: v for k, v in os.environ.items() if k not in ("MPD_HOST", "MPD_PORT")}
    env.update(MPD_HOST="127.0.0.1", MPD_PORT=str(port))
    r = subprocess.run([*prog, *args], capture_output=True, text=True, env=env, timeout=30)
    return r.stdout, r.stderr.strip(), r.returncode


PICTL = [sys.executable, "-m", "pi_appliance.cli.pictl"]


def run_inproc(port: int, args: list[str]) -> tuple[str, str, int]:
    """pictl's main() in this process (a new interpreter per command would cost 0.5 s each)."""
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in ("MPD_HOST", "MPD_PORT")}
    os.environ.update(MPD_HOST="127.0.0.1", MPD_PORT=str(port))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = pictl.main(args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out.getvalue(), err.getvalue().strip(), rc


SEQUENCE = [
    [],
    ["add", "beep_a.wav"],
    ["add", "tagged.flac"],
    ["add", "beep_b.wav"],
    ["playlist"],
    ["status"],
    ["play", "2"],
    ["pause"],
    ["seek", "0:30"],
    ["status"],
    [],
    ["current"],
    ["volume"],
    ["volume", "50"],
    ["volume", "+10"],
    ["volume", "-5"],
    ["repeat"],
    ["random", "on"],
    ["single", "once"],
    ["single"],
    ["consume"],
    ["consume", "off"],
    ["seek", "+5"],
    ["seek", "50%"],
    ["outputs"],
    ["version"],
    ["lsplaylists"],
    ["save", "mine"],
    ["lsplaylists"],
    ["del", "1"],
    ["playlist"],
    ["play", "9"],
    ["add", "nosuch"],
    ["single", "foo"],
    ["next"],
    ["pause"],
    ["prev"],
    ["pause"],
    ["stop"],
    ["status"],
    ["current"],
    ["seek", "10%"],
    ["clear"],
    ["load", "mine"],
    ["playlist"],
]


def test_same_output_as_mpc(two_mpds: tuple[int, int]) -> None:
    mpc = need_program("mpc")
    a, b = two_mpds
    for args in SEQUENCE:
        want = run([mpc], a, args)
        got = run(PICTL, b, args)
        assert got[0] == want[0], f"stdout of {args}"
        assert got[2] == want[2], f"exit code of {args}: {got[1]!r} vs mpc {want[1]!r}"
        assert got[1] == want[1], f"stderr of {args}"
    # the stats layout (uptimes differ, so compare the labels)
    want = run([mpc], a, ["stats"])[0].splitlines()
    got = run(PICTL, b, ["stats"])[0].splitlines()
    assert [w.split(":")[0] for w in want] == [g.split(":")[0] for g in got]
    assert want[:3] == got[:3]


def test_idle_reports_the_change(two_mpds: tuple[int, int]) -> None:
    _, b = two_mpds
    env = {**os.environ, "MPD_HOST": "127.0.0.1", "MPD_PORT": str(b)}
    idle = subprocess.Popen([*PICTL, "idle", "mixer"], stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(1.0)
    run(PICTL, b, ["volume", "30"])
    out, _ = idle.communicate(timeout=10)
    assert out == "mixer\n"


def test_password_in_mpd_host(two_mpds: tuple[int, int]) -> None:
    """MPD_HOST=password@host sends ``password`` first; mpd refuses a wrong one with ACK 3."""
    _, b = two_mpds
    env = {**os.environ, "MPD_HOST": "wrong@127.0.0.1", "MPD_PORT": str(b)}
    r = subprocess.run([*PICTL, "status"], capture_output=True, text=True, env=env)  # the real entry point
    assert r.returncode == 1
    assert r.stderr == "MPD error: incorrect password\n"
