"""Timing benchmark: the pigpio output (DMA-timed waves) against software-timed peers, in one run.

    .venv/bin/python bench/timing.py            # 10-minute tune; ~2-4 minutes on a small machine
    .venv/bin/python bench/timing.py --quick    # 1-minute tune, shorter peers (a smoke run)

Side by side:

* **pigpio → simulator**: a 10-minute tune through :class:`PigpioOutput` into ``pi-appliance-sim``
  running in its own process on a virtual clock (10 ms of DMA time per poll), so the figures are the
  feeder's alone and the edges are what a Pi's DMA would emit;
* **gpiozero output → MockFactory** (real clock): our software fallback, absolute deadlines;
* **gpiozero TonalBuzzer + sleep per note** (real clock): how every peer player times notes.

For each: pitch error per note in cents (max, p99; from a least-squares fit of the rising edges for
the pigpio path, from the frequency written for the others), note onset error (max, µs), drift at
the end, the longest gap at a slice join, the feeder's CPU share (CPU seconds per second of music)
and RSS while playing, and RSS playing a 1-hour tune against a 1-minute one. Each measurement runs
in a fresh child interpreter so RSS figures do not mix. Targets for the pigpio path: pitch within
865.6/period_µs cents, onset 0 µs, drift 0 µs, no gap at a join, RSS independent of tune length
(within 2 MB), feeder CPU under 3 % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pi_appliance.music import Note, Tune  # noqa: E402
from pi_appliance.output import waveplan  # noqa: E402

GPIO = 18


# ------------------------------------------------------------------------------------ the tunes
def make_tune(seconds: float, *, lo_midi: int = 45, hi_midi: int = 108, seed: int = 7) -> Tune:
    """A deterministic pseudo-random melody: A2..C8, odd durations included, rests now and then."""
    rng = random.Random(seed)
    notes: list[Note] = []
    total = 0
    target = int(seconds * 1e6)
    durs = [62_500, 125_000, 187_500, 250_000, 375_000, 500_000, 123_457, 333_333]
    while total < target:
        d = min(rng.choice(durs), target - total)
        if rng.random() < 0.1:
            notes.append(Note.rest(d))
        else:
            m = rng.randint(lo_midi, hi_midi)
            notes.append(Note(440.0 * 2 ** ((m - 69) / 12), d))
        total += d
    return Tune(f"bench {seconds:.0f} s", tuple(notes))


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.peak = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.period):
            self.peak = max(self.peak, rss_kb())


class Done:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.errors: list[str] = []

    def output_finished(self) -> None:
        self.event.set()

    def output_error(self, message: str) -> None:
        self.errors.append(message)
        self.event.set()


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(q * len(s)) - 1)]


# ------------------------------------------------------------------------------------ children
def start_sim(trace: str, step_us: int) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, "-m", "pi_appliance.sim", "-p", "0", "--virtual", "--poll-step-us", str(step_us),
           "--gpios", str(GPIO), "--log-level", "warning"]  # fmt: skip
    if trace:
        cmd += ["--trace", trace]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, int(line.rsplit(":", 1)[1])


def child_pigpio(seconds: float, trace: str, step_us: int) -> dict:
    from pi_appliance.output.pigpio import PigpioOutput

    tune = make_tune(seconds)
    proc, port = start_sim(trace, step_us)
    result: dict = {"seconds": tune.duration_us / 1e6, "notes": len(tune.notes)}

    async def play() -> None:
        out = PigpioOutput("127.0.0.1", port, GPIO, poll_s=0.0005)
        done = Done()
        out.set_listener(done)
        await out.open()
        sampler = RssSampler()
        sampler.start()
        result["rss_base_kb"] = rss_kb()  # the tune is built, the output open: before playing
        cpu0, wall0 = time.process_time(), time.monotonic()
        await out.play(tune)
        await done.event.wait()
        result["cpu_s"] = time.process_time() - cpu0
        result["wall_s"] = time.monotonic() - wall0
        sampler.halt.set()
        result["rss_kb"] = max(sampler.peak, rss_kb())
        result["underruns"] = out.underruns
        result["errors"] = done.errors
        await out.close()

    asyncio.run(play())
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    result["cpu_share"] = result["cpu_s"] / result["seconds"]
    return result


def analyse_pigpio(seconds: float, trace: str) -> dict:
    """Compare the simulator's recorded edges and wave joins with the score."""
    tune = make_tune(seconds)
    edges: list[tuple[int, int]] = []
    segs: list[tuple[int, int, int, int]] = []
    with open(trace) as f:
        next(f)
        for line in f:
            d = json.loads(line)
            if "level" in d:
                edges.append((d["t"], d["level"]))
            else:
                segs.append((d["wave"], d["sent"], d["start"], d["end"]))
    t0 = segs[0][2]  # the first slice's first instant (after its 20 µs lead-in) is tune time 0
    rel = [(t - t0, lv) for t, lv in edges]
    planned = waveplan.timeline(tune)
    joins = [b[2] - a[3] for a, b in itertools.pairwise(segs)]
    rises = [t for t, lv in rel if lv]
    cents: list[float] = []
    over_bound = 0
    onsets: list[int] = []
    i = 0
    t_k = 0
    for note in tune.notes:
        end = t_k + note.duration_us
        r = []
        while i < len(rises) and rises[i] < end:
            if rises[i] >= t_k:
                r.append(rises[i])
            i += 1
        if not note.is_rest and len(r) >= 2:
            onsets.append(r[0] - t_k)
            n = len(r)
            mx = (n - 1) / 2
            my = sum(r) / n
            slope = sum((j - mx) * (y - my) for j, y in enumerate(r)) / sum((j - mx) ** 2 for j in range(n))
            err = abs(1200 * math.log2((1e6 / slope) / note.freq_hz))
            cents.append(err)
            if err > 865.6 / (1e6 / note.freq_hz):
                over_bound += 1
        t_k = end
    return {
        "edges": len(rel),
        "edges_match_plan": rel == planned,
        "cents_max": max(cents),
        "cents_p99": pct(cents, 0.99),
        "notes_over_bound": over_bound,
        "onset_max_us": max(abs(e) for e in onsets),
        "drift_us": onsets[-1],
        "end_error_us": segs[-1][3] - t0 - tune.duration_us,
        "join_gap_max_us": max(joins) if joins else 0,
        "joins": len(joins),
        "slices": len(segs),
    }


def child_gpiozero(seconds: float, which: str) -> dict:
    from gpiozero import TonalBuzzer
    from gpiozero.pins.mock import MockFactory, MockPWMPin
    from gpiozero.tones import Tone

    from pi_appliance.output.gpiozero import GpiozeroOutput

    tune = make_tune(seconds, lo_midi=57, hi_midi=81)  # A3..A5: TonalBuzzer's default range
    log: list[tuple[int, float]] = []
    result: dict = {"seconds": tune.duration_us / 1e6, "notes": len(tune.notes)}
    sampler = RssSampler()
    sampler.start()
    if which == "gpiozero":

        class Recording(GpiozeroOutput):
            def _set(self, freq: float, duty: float) -> None:
                super()._set(freq, duty)
                log.append((time.monotonic_ns(), freq))

        async def play() -> int:
            out = Recording(GPIO, MockFactory(pin_class=MockPWMPin))
            done = Done()
            out.set_listener(done)
            await out.open()
            cpu0 = time.process_time()
            await out.play(tune)
            t0 = out._t0_ns
            await done.event.wait()
            result["cpu_s"] = time.process_time() - cpu0
            await out.close()
            return t0

        t0 = asyncio.run(play())
        log = log[: len(tune.notes)]  # the final "pin low" is not a note
    else:
        factory = MockFactory(pin_class=MockPWMPin)
        bz = TonalBuzzer(GPIO, pin_factory=factory)
        cpu0 = time.process_time()
        t0 = time.monotonic_ns()
        for note in tune.notes:
            if note.is_rest:
                bz.stop()
            else:
                bz.play(Tone.from_frequency(note.freq_hz))
            log.append((time.monotonic_ns(), note.freq_hz))
            time.sleep(note.duration_us / 1e6)
        bz.stop()
        result["cpu_s"] = time.process_time() - cpu0
        bz.close()
    sampler.halt.set()
    result["rss_kb"] = max(sampler.peak, rss_kb())
    onsets = []
    t_k = 0
    cents_mock: list[float] = []
    cents_lgpio: list[float] = []
    for (t, f), note in zip(log, tune.notes, strict=True):
        onsets.append((t - t0) / 1000 - t_k)
        if not note.is_rest:
            cents_mock.append(abs(1200 * math.log2(f / note.freq_hz)))
            period = round(1e6 / f)  # lgpio's tx_pwm works in whole µs
            cents_lgpio.append(abs(1200 * math.log2((1e6 / period) / note.freq_hz)))
        t_k += note.duration_us
    result.update(
        cents_max=max(cents_mock),
        cents_p99=pct(cents_mock, 0.99),
        cents_lgpio_max=max(cents_lgpio),
        onset_max_us=max(abs(e) for e in onsets),
        onset_p99_us=pct([abs(e) for e in onsets], 0.99),
        drift_us=onsets[-1],
        cpu_share=result["cpu_s"] / result["seconds"],
    )
    return result


def child_rss(kind: str, seconds: float, play_s: float) -> dict:
    """RSS while playing a tune of ``seconds`` (pigpio: all of it, virtual clock; gpiozero: ``play_s``)."""
    if kind == "pigpio":
        r = child_pigpio(seconds, "", 100_000)
        return {k: r[k] for k in ("rss_kb", "rss_base_kb", "cpu_share", "wall_s")}
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from pi_appliance.output.gpiozero import GpiozeroOutput

    tune = make_tune(seconds, lo_midi=57, hi_midi=81)

    base = 0

    async def play() -> int:
        nonlocal base
        out = GpiozeroOutput(GPIO, MockFactory(pin_class=MockPWMPin))
        await out.open()
        base = rss_kb()
        await out.play(tune)
        peak = 0
        for _ in range(int(play_s / 0.1)):
            await asyncio.sleep(0.1)
            peak = max(peak, rss_kb())
        await out.close()
        return peak

    peak = asyncio.run(play())
    return {"rss_kb": peak, "rss_base_kb": base}


def run_child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ report
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1-minute pigpio tune, 10 s peers, 10-minute RSS tune")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "pigpio":
            r = child_pigpio(float(rest[0]), rest[1], 10_000)
        elif kind in ("gpiozero", "tonal"):
            r = child_gpiozero(float(rest[0]), kind)
        else:
            r = child_rss(kind.removesuffix("-rss"), float(rest[0]), float(rest[1]))
        print(json.dumps(r))
        return 0

    minutes = 1 if args.quick else 10
    peer_s = 10 if args.quick else 30
    long_s = 600 if args.quick else 3600
    print(f"bench/timing.py: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        trace = str(Path(tmp) / "trace.jsonl")
        print(f"pigpio output → simulator (virtual clock): {minutes}-minute tune ...", flush=True)
        pg = run_child("pigpio", str(minutes * 60), trace)
        pg.update(analyse_pigpio(minutes * 60, trace))
    print(f"gpiozero output → MockFactory (real clock): {peer_s} s tune ...", flush=True)
    gz = run_child("gpiozero", str(peer_s))
    print(f"gpiozero TonalBuzzer + sleep per note (real clock): {peer_s} s tune ...", flush=True)
    tb = run_child("tonal", str(peer_s))
    print(f"RSS: 1-minute vs {long_s // 60}-minute tunes ...", flush=True)
    pg_short = run_child("pigpio-rss", "60", "0")
    pg_long = run_child("pigpio-rss", str(long_s), "0")
    gz_short = run_child("gpiozero-rss", "60", "3")
    gz_long = run_child("gpiozero-rss", str(long_s), "3")

    def us(v: float) -> str:
        return f"{v:,.0f} µs"

    rows = [
        ("tune length", f"{pg['seconds']:.0f} s ({pg['notes']} notes)", f"{gz['seconds']:.0f} s ({gz['notes']} notes)",
         f"{tb['seconds']:.0f} s ({tb['notes']} notes)"),
        ("pitch error max / p99", f"{pg['cents_max']:.4f} / {pg['cents_p99']:.4f} cents",
         f"{gz['cents_max']:.4f} / {gz['cents_p99']:.4f} cents*",
         f"{tb['cents_max']:.4f} / {tb['cents_p99']:.4f} cents*"),
        ("onset error max", us(pg["onset_max_us"]), us(gz["onset_max_us"]), us(tb["onset_max_us"])),
        ("drift at the end", us(pg["drift_us"]), us(gz["drift_us"]), us(tb["drift_us"])),
        ("longest gap at a slice join", us(pg["join_gap_max_us"]) + f" ({pg['joins']} joins)", "n/a (no slices)",
         "n/a (no slices)"),
        ("feeder CPU share", f"{100 * pg['cpu_share']:.2f} %", f"{100 * gz['cpu_share']:.2f} %",
         f"{100 * tb['cpu_share']:.2f} %"),
        ("RSS while playing", f"{pg['rss_kb'] / 1024:.1f} MB", f"{gz['rss_kb'] / 1024:.1f} MB",
         f"{tb['rss_kb'] / 1024:.1f} MB"),
        (f"RSS 1-min vs {long_s // 60}-min tune",
         f"{pg_short['rss_kb'] / 1024:.1f} vs {pg_long['rss_kb'] / 1024:.1f} MB",
         f"{gz_short['rss_kb'] / 1024:.1f} vs {gz_long['rss_kb'] / 1024:.1f} MB", "-"),
    ]  # fmt: skip
    w0 = max(len(r[0]) for r in rows)
    w = [max(len(r[i]) for r in rows) for i in (1, 2, 3)]
    head = ("", "pigpio → sim (DMA)", "gpiozero output", "TonalBuzzer+sleep")
    print()
    print(f"{head[0]:<{w0}}  {head[1]:<{w[0]}}  {head[2]:<{w[1]}}  {head[3]:<{w[2]}}")
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:<{w[0]}}  {r[2]:<{w[1]}}  {r[3]:<{w[2]}}")
    print()
    print(f"pigpio path: {pg['edges']:,} edges in {pg['slices']} slices, recorded edges == planned timeline: "
          f"{pg['edges_match_plan']}; notes over 865.6/P cents: {pg['notes_over_bound']}; "
          f"end of last slice vs score: {pg['end_error_us']} µs; underruns {pg['underruns']}; "
          f"{pg['wall_s']:.1f} s wall for {pg['seconds']:.0f} s of music")  # fmt: skip
    print(f"* MockFactory stores the frequency as given; lgpio's tx_pwm on a Pi 5 rounds the period to whole µs: "
          f"max {gz['cents_lgpio_max']:.3f} cents for these notes (A3..A5)")  # fmt: skip
    print(
        f"  software onsets, p99: gpiozero output {us(gz['onset_p99_us'])}, TonalBuzzer+sleep {us(tb['onset_p99_us'])}"
    )
    ratio = abs(tb["drift_us"]) / max(1.0, abs(gz["drift_us"]))
    print(f"  drift ratio TonalBuzzer+sleep / gpiozero output (absolute deadlines): {ratio:.0f}x; "
          f"pigpio path drift {pg['drift_us']} µs")  # fmt: skip
    print(f"  RSS growth, 1-minute → {long_s // 60}-minute tune: pigpio "
          f"{(pg_long['rss_kb'] - pg_short['rss_kb']) / 1024:+.2f} MB (target within 2 MB), gpiozero "
          f"{(gz_long['rss_kb'] - gz_short['rss_kb']) / 1024:+.2f} MB")  # fmt: skip
    grow = {k: (v["rss_kb"] - v["rss_base_kb"]) / 1024 for k, v in
            (("p1", pg_short), ("pL", pg_long), ("g1", gz_short), ("gL", gz_long))}  # fmt: skip
    print(f"  RSS growth while playing (peak − before play): pigpio {grow['p1']:+.2f} MB (1 min) vs "
          f"{grow['pL']:+.2f} MB ({long_s // 60} min); gpiozero {grow['g1']:+.2f} vs {grow['gL']:+.2f} MB; "
          f"the rest of the difference is the longer Tune's notes themselves")  # fmt: skip
    targets = {
        "pitch within 865.6/P": pg["notes_over_bound"] == 0,
        "onset 0 µs": pg["onset_max_us"] == 0,
        "drift 0 µs": pg["drift_us"] == 0 and pg["end_error_us"] == 0,
        "no gap at any join": pg["join_gap_max_us"] == 0,
        "RSS within 2 MB": abs(pg_long["rss_kb"] - pg_short["rss_kb"]) <= 2048,
        "feeder CPU < 3 %": pg["cpu_share"] < 0.03,
    }
    print("pigpio path targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
