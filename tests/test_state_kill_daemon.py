"""kill -9 of the real daemon while MPD clients change its state: the state file always loads.

The daemon (``pi-appliance --output sim``) is started on a free loopback port with one state
directory kept across rounds; a client pipelines queue, mode, volume and playback commands at it,
and the test SIGKILLs the daemon at a random moment (sometimes during start-up and restore). After
every kill the state file must decode, must never have been set aside as ``.bad``, and must hold
only what clients put there; the next round's daemon must start from it, and a last one must serve
the queue and volume the file holds. The daemon coalesces writes (50 ms), so only some kills land
inside a write; test_state_kill.py drives the Player and its store with a write always under way
and also checks that no write reported durable is lost.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port

from pi_appliance.state import decode

ROUNDS = 100


def _connect(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the daemon exited with {proc.returncode}")
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            if s.recv(64).startswith(b"OK MPD "):
                return s
            s.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the daemon never greeted")
        time.sleep(0.01)


def _daemon(tmp_path: Path, state_dir: Path, port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "pi_appliance.daemon", "--config", str(tmp_path / "config.toml")),
        *("--output", "sim", "--state-dir", str(state_dir), "--port", str(port), "--no-mdns"),
    ]


def _commands(rng: random.Random, round_no: int) -> bytes:
    lines = ["command_list_begin"]
    for k in range(60):
        r = rng.random()
        if r < 0.35:
            lines.append(f'add "rtttl:R{round_no}K{k}:d=16,o=5,b=240:c,e,g"')
        elif r < 0.5:
            lines.append(f"setvol {rng.randint(0, 100)}")
        elif r < 0.6:
            lines.append(f"repeat {rng.randint(0, 1)}")
        elif r < 0.65:
            lines.append(f"single {rng.choice(['0', '1', 'oneshot'])}")
        elif r < 0.7:
            lines.append(f"random {rng.randint(0, 1)}")
        elif r < 0.8:
            lines.append("play 0")
        elif r < 0.85:
            lines.append("pause")
        elif r < 0.9:
            lines.append("delete 0")
        else:
            lines.append("next")
    lines.append("command_list_end")
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.slow
def test_kill_9_of_the_daemon_never_leaves_an_unloadable_state(tmp_path):
    rng = random.Random(int(os.environ.get("KILL_SEED", "99")))
    state_dir = tmp_path / "state"
    state = state_dir / "state.json"
    (tmp_path / "config.toml").write_text("")
    killed_after_greeting = 0
    interrupted_writes = 0
    t_start = time.monotonic()
    for i in range(ROUNDS):
        port = free_port()
        cmd = _daemon(tmp_path, state_dir, port)
        with open(tmp_path / "daemon.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0.0, 0.6))  # start-up, restore, the first write
            else:
                s = _connect(port, proc)
                s.settimeout(5)
                # lists of changes back to back; the kill lands somewhere among their writes
                t_kill = time.monotonic() + rng.uniform(0.02, 0.25)
                while time.monotonic() < t_kill:
                    s.sendall(_commands(rng, i))
                    buf = b""
                    while not (buf.endswith(b"OK\n") or b"ACK [" in buf):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                killed_after_greeting += 1
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, (tmp_path / "daemon.log").read_text()[-2000:]
        if list(state_dir.glob(".state.json.*.tmp")):
            interrupted_writes += 1  # the kill landed inside a write (its temp file is left)
        assert not (state_dir / "state.json.bad").exists(), f"round {i}: the state was set aside"
        if state.exists():
            saved = decode(state.read_bytes())
            for e in saved.entries:
                assert e.uri.startswith(("builtin/", "rtttl:R")), e.uri
    # a last daemon starts from it and serves the queue it left
    port = free_port()
    proc = subprocess.Popen(_daemon(tmp_path, state_dir, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        saved = decode(state.read_bytes())
        s = _connect(port, proc)
        s.sendall(b"status\n")
        buf = b""
        while not buf.endswith(b"OK\n"):
            buf += s.recv(65536)
        length = int(buf.split(b"playlistlength: ")[1].split(b"\n")[0])
        assert length == len(saved.entries)
        assert f"volume: {saved.volume}\n".encode() in buf
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    print(
        f"{ROUNDS} daemon kills in {time.monotonic() - t_start:.1f} s, {killed_after_greeting} while clients "
        f"were changing its state, {interrupted_writes} inside a write"
    )
    assert killed_after_greeting >= ROUNDS // 2
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log and "unreadable" not in log and "could not save" not in log, log[-3000:]
    assert not Path(state_dir / "state.json.bad").exists()
