"""kill -9 during state writes never leaves a state file that fails to load, and never loses a
write that was reported durable.

A driver process (this file run as a script) restores the Player from the state directory, then
changes queue, modes, volume and playback as fast as it can, the store writing after every change
(delay 0, so a write is nearly always under way). It prints ``durable N`` after each completed
flush. The test SIGKILLs it at random moments (during start-up and restore too), then loads the
state file: it must decode, must not have been set aside as ``.bad``, must restore into a Player,
and must hold at least the last step reported durable. The next round starts from what the
killed one left behind, as a real restart does.
"""

from __future__ import annotations

import asyncio
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fakes import FakeLibrary, FakeOutput, VirtualClock, fake_parse_inline, tune  # noqa: E402

from pi_appliance.player import Player  # noqa: E402
from pi_appliance.state import StateStore, decode  # noqa: E402

KILLS = 100
LIBRARY = {f"tunes/t{i}.rtttl": tune(f"T{i}", 0.5 + i / 10) for i in range(6)}


def steps_in(entries) -> list[int]:
    return [int(e.uri.split(":", 1)[1]) for e in entries if e.uri.startswith("gen:")]


async def drive(state_dir: str, seed: int) -> None:
    clock = VirtualClock()
    out = FakeOutput(clock)
    store = StateStore(state_dir, delay=0.0)
    p = Player(out, FakeLibrary(LIBRARY), store, clock=clock, rng=random.Random(seed), parse_inline=fake_parse_inline)
    await p.start()
    step = max(steps_in(p.entries()), default=0)
    print("ready", step, flush=True)
    rng = random.Random(seed)
    while True:
        step += 1
        p.add_tune(tune(f"step {step}", 0.3, notes=rng.randint(1, 40)), f"gen:{step}")
        if len(p.entries()) > 60:
            p.delete(0, 20)  # oldest first: the newest step stays in the queue
        r = rng.random()
        if r < 0.2:
            await p.set_volume(step % 101)
        elif r < 0.3:
            p.set_repeat(not p.status().repeat)
        elif r < 0.35:
            p.set_single(rng.choice(["0", "1", "oneshot"]))
        elif r < 0.4:
            p.set_random(not p.status().random)
        elif r < 0.5:
            await p.play(rng.randrange(len(p.entries())))
        elif r < 0.6:
            await p.pause()
        elif r < 0.65 and p.status().state.value != "stop":
            await p.seek_cur(0.1)
        elif r < 0.7:
            p.add(rng.choice(sorted(LIBRARY)))
        elif r < 0.75 and len(p.entries()) > 2:
            p.swap(0, 1)  # (never the newest, at the end: the check looks for it)
        if step % 5 == 0:
            await store.flush()
            print("durable", step, flush=True)
        else:
            await asyncio.sleep(0)


def _readline(proc: subprocess.Popen, deadline: float) -> str | None:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if r:
            return proc.stdout.readline().decode()
    return None


def test_kill_9_during_state_writes_never_leaves_an_unloadable_state(tmp_path):
    rng = random.Random(int(os.environ.get("KILL_SEED", "4242")))
    state_dir = tmp_path / "state"
    state = state_dir / "state.json"
    last_durable = 0
    interrupted_writes = 0  # kills that left a temp file: the kill landed inside a write
    t_start = time.monotonic()
    for i in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, __file__, str(state_dir), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0.0, 0.25))  # anywhere: start-up, restore, first writes
        else:
            line = _readline(proc, time.monotonic() + 20)
            assert line and line.startswith("ready"), (line, proc.stderr.read() if proc.poll() is not None else "")
            time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
        complete = proc.stdout.read().decode().split("\n")[:-1]  # the kill may cut the last line
        for line in complete:
            if line.startswith("durable"):
                last_durable = max(last_durable, int(line.split()[1]))
        proc.stdout.close()
        proc.stderr.close()
        if list(state_dir.glob(".state.json.*.tmp")):
            interrupted_writes += 1
        # the must-show: the file loads, was never set aside, and holds every durable step
        assert not (state_dir / "state.json.bad").exists(), f"round {i}: state set aside as unreadable"
        if state.exists():
            saved = decode(state.read_bytes())
            steps = [int(e.uri.split(":", 1)[1]) for e in saved.entries if e.uri.startswith("gen:")]
            assert max(steps, default=0) >= last_durable, f"round {i}: lost durable step {last_durable}"
        else:
            assert last_durable == 0, f"round {i}: the state file vanished"
    # and the final state restores into a player with everything in it
    store = StateStore(state_dir)
    saved = store.load()
    assert saved is not None and not list(state_dir.glob(".state.json.*.tmp"))
    clock = VirtualClock()
    p = Player(FakeOutput(clock), FakeLibrary(LIBRARY), store, clock=clock, parse_inline=fake_parse_inline)
    asyncio.run(p.start())
    assert len(p.entries()) == len(saved.entries)
    assert max(steps_in(p.entries())) >= last_durable > 0
    elapsed = time.monotonic() - t_start
    print(f"{KILLS} kills in {elapsed:.1f} s, {interrupted_writes} inside a write, last durable step {last_durable}")
    assert interrupted_writes >= 1, "no kill landed inside a write: the test did not test anything"


if __name__ == "__main__":
    asyncio.run(drive(sys.argv[1], int(sys.argv[2])))
