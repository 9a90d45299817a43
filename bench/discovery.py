"""Discovery and start-up latency of pictl, side by side with its peers, printed as ratios.

Figures (medians over ``--runs``, process start included every time):

* time to the first appliance found: ``pictl ls --first`` (one-shot unicast browse) against a plain
  python-zeroconf browser as most clients write it (multicast questions on port 5353);
* ``play 1`` end to end, from the client's process start to the first edge of the note on the
  simulator's pin: Debian's ``mpc play 1`` (host given), ``pictl play 1`` (host given) and
  ``pictl play 1`` finding the appliance over mDNS;
* a fleet of four daemons: spread of the first edges after ``pictl --all play 1 --at +1s``.

Everything runs in a network namespace of its own (root needed) with only ``lo``, so mDNS reaches
nobody else. Run: ``sudo .venv/bin/python bench/discovery.py [--runs 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

NAIVE_BROWSE = """
import asyncio, sys
from zeroconf import ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

async def main() -> None:
    found = asyncio.Event()
    async with AsyncZeroconf(interfaces=["127.0.0.1"]) as azc:
        def on(zeroconf, service_type, name, state_change):
            if state_change is ServiceStateChange.Added:
                found.set()
        b = AsyncServiceBrowser(azc.zeroconf, ["_pi-appliance._tcp.local."], handlers=[on])
        await asyncio.wait_for(found.wait(), 10)
        await b.async_cancel()

asyncio.run(main())
"""


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ns = f"pabench{os.getpid()}{uuid.uuid4().hex[:4]}"
        self.prefix = ["ip", "netns", "exec", self.ns]
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.env = {k: v for k, v in os.environ.items() if k not in ("MPD_HOST", "MPD_PORT")}
        self.env["PICTL_MDNS_INTERFACES"] = "127.0.0.1"

    def __enter__(self) -> Bench:
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.daemons:
            p.terminate()
        for p in self.daemons:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["ip", "netns", "del", self.ns], check=False)

    def daemon(self, i: int) -> None:
        conf = self.tmp / f"d{i}.toml"
        conf.write_text(f'[discovery]\nname = "Bench @ d{i}"\n')
        log = (self.tmp / f"d{i}.log").open("wb")
        self.daemons.append(
            subprocess.Popen(
                [
                    *self.prefix,
                    PY,
                    "-m",
                    "pi_appliance.daemon",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(6601 + i),
                    "--state-dir",
                    str(self.tmp / f"s{i}"),
                    "--output",
                    "sim",
                    "--config",
                    str(conf),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        )

    def wait_for(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.run(["-m", "pi_appliance.cli.pictl", "ls", "--json"])
            if r.returncode == 0 and len(json.loads(r.stdout)) >= n:
                return
            time.sleep(0.5)
        raise SystemExit(f"the daemons did not show up; see {self.tmp}/d*.log")

    def run(self, argv: list[str], env: dict[str, str] | None = None, exe: str = PY) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.prefix, exe, *argv], capture_output=True, text=True, env={**self.env, **(env or {})}, cwd=ROOT
        )

    def timed(self, argv: list[str], env: dict[str, str] | None = None, exe: str = PY) -> float:
        t = time.perf_counter()
        r = self.run(argv, env, exe)
        if r.returncode != 0:
            raise SystemExit(f"{exe} {' '.join(argv)}: {r.stderr.strip()}")
        return time.perf_counter() - t

    def first_edge_ns(self, i: int, after_ns: int, timeout: float = 5.0) -> int:
        path = self.tmp / f"s{i}" / "sim-edges.jsonl"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in path.read_text().splitlines():
                e = json.loads(line)
                if "level" in e and e["wall_ns"] >= after_ns:
                    return e["wall_ns"]
            time.sleep(0.02)
        raise SystemExit(f"no edge on daemon {i}")

    def play_latency(self, argv: list[str], env: dict[str, str] | None = None, exe: str = PY) -> float:
        """Process start of the client -> the first edge on daemon 0's pin, in seconds."""
        self.run(["-m", "pi_appliance.cli.pictl", "-h", "127.0.0.1", "-p", "6601", "-q", "stop"])
        time.sleep(0.1)
        t0 = time.time_ns()
        r = self.run(argv, env, exe)
        if r.returncode != 0:
            raise SystemExit(f"{exe} {' '.join(argv)}: {r.stderr.strip()}")
        return (self.first_edge_ns(0, t0) - t0) / 1e9


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("-v", "--verbose", action="store_true", help="print each fleet round")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/discovery.py needs root (it makes a network namespace)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pa-bench-") as tmp, Bench(Path(tmp)) as b:
        for i in range(4):
            b.daemon(i)
        b.wait_for(4)
        pictl = ["-m", "pi_appliance.cli.pictl"]
        results: dict[str, list[float]] = {k: [] for k in ("ls", "naive", "mpc", "pictl_host", "pictl_mdns")}
        for _ in range(args.runs):
            # 1.1 s apart: a responder multicasts a record at most once a second (RFC 6762 6), and also
            # multicasts what it unicasts to a QU question, so neither may run in the other's shadow.
            results["ls"].append(b.timed([*pictl, "ls", "--first"]))
            time.sleep(1.1)
            results["naive"].append(b.timed(["-c", NAIVE_BROWSE]))
            time.sleep(1.1)
        host = {"MPD_HOST": "127.0.0.1", "MPD_PORT": "6601"}
        for _ in range(args.runs):
            results["mpc"].append(b.play_latency(["play", "1"], host, exe="mpc"))
            results["pictl_host"].append(b.play_latency([*pictl, "play", "1"], host))
            results["pictl_mdns"].append(b.play_latency([*pictl, "--host", "Bench @ d0", "play", "1"]))
        b.run([*pictl, "--all", "-q", "stop"])  # the last play above is still sounding
        time.sleep(0.5)
        spreads = []
        for _ in range(args.runs):
            t0 = time.time_ns()
            b.timed([*pictl, "--all", "-q", "play", "1", "--at", "+1s"])
            # (from t0 + 0.5 s: the instant is at least 1 s after t0, and the last round's slices may
            # still be ending just after t0)
            starts = [b.first_edge_ns(i, t0 + 500_000_000) for i in range(4)]
            spreads.append((max(starts) - min(starts)) / 1e6)
            if args.verbose:
                print("first edges (ms after the earliest):", [round((x - min(starts)) / 1e6, 3) for x in starts])
            b.run([*pictl, "--all", "-q", "stop"])
            time.sleep(0.5)
        b.run([*pictl, "--all", "-q", "stop"])

    r = {k: med(v) * 1000 for k, v in results.items()}
    w = 26
    print(f"pi-appliance discovery bench, {args.runs} runs each, medians (ms), process start included")
    print(f"  first appliance found: {'pictl ls --first':{w}} {r['ls']:8.1f}")
    print(f"                         {'python-zeroconf browse':{w}} {r['naive']:8.1f}", end="")
    print(f"   pictl/peer {r['ls'] / r['naive']:.2f}")
    print(f"  play 1 -> first edge:  {'mpc play 1 (host given)':{w}} {r['mpc']:8.1f}")
    for key, label in (("pictl_host", "pictl play 1 (host given)"), ("pictl_mdns", "pictl play 1 (mDNS name)")):
        print(f"                         {label:{w}} {r[key]:8.1f}   pictl/mpc {r[key] / r['mpc']:.2f}")
    sp = sorted(spreads)
    print(f"  fleet of 4, --all play 1 --at +1s, first-edge spread (ms): median {med(sp):.3f}, "
          f"worst {sp[-1]:.3f}, within 2 ms in {sum(x <= 2 for x in sp)}/{len(sp)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
