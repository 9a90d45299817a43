#!/usr/bin/env python3
"""Build the wheelhouse the Ansible role installs from: pi_appliance and every dependency as wheels.

The Pis never reach PyPI: the role copies this directory and runs pip with ``--no-index``.

    python3 deploy/build_wheelhouse.py                          # for Pis like this machine (tests, x86 labs)
    python3 deploy/build_wheelhouse.py --platform aarch64       # 64-bit Raspberry Pi OS, Bookworm (Python 3.11)
    python3 deploy/build_wheelhouse.py --platform aarch64 --python 3.13   # Trixie

For a foreign platform, pure-Python packages are built here (``pip wheel``) and the compiled ones
(zeroconf's Cython speed-ups) are downloaded as manylinux wheels for the Pi's CPU and Python.
32-bit Raspberry Pi OS (armv7l) has few manylinux wheels: add ``--extra-index-url`` of piwheels.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = {
    "aarch64": ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "armv7l": ["manylinux_2_28_armv7l", "manylinux_2_17_armv7l", "manylinux2014_armv7l", "linux_armv7l"],
}


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def build(out: Path, platform: str | None, python: str | None, extra_index: list[str], clean: bool) -> list[Path]:
    if clean and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    index = [a for url in extra_index for a in ("--extra-index-url", url)]
    # Everything as wheels for this machine first: sdists are built here (pure Python ones are py3-none-any).
    pip("wheel", "--quiet", "--wheel-dir", str(out), *index, str(ROOT))
    if platform:
        # Keep the pure wheels; fetch the compiled ones for the Pi instead of this machine's.
        for w in out.glob("*.whl"):
            if not w.name.endswith("-none-any.whl"):
                w.unlink()
        ours = sorted(out.glob("pi_appliance-*.whl"))[-1]
        tags = [a for t in PLATFORMS[platform] for a in ("--platform", t)]
        pyver = ["--python-version", python] if python else []
        pip("download", "--quiet", "--only-binary=:all:", *tags, *pyver, "--implementation", "cp",
            "--find-links", str(out), "--dest", str(out), *index, str(ours))  # fmt: skip
    add_fast(out, platform, python, index)
    return sorted(out.glob("*.whl"))


def add_fast(out: Path, platform: str | None, python: str | None, index: list[str]) -> None:
    """The ``fast`` extra (uvloop: the daemon's MPD round trips 15-30 % faster) when the Pi has a
    wheel for it; never built from source. 32-bit Raspberry Pi OS has none: the daemon then runs on
    asyncio's own loop, and the role installs pi-appliance without the extra."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        fast = tomllib.load(f)["project"]["optional-dependencies"]["fast"]
    target: list[str] = []
    if platform:
        target = [a for t in PLATFORMS[platform] for a in ("--platform", t)] + ["--implementation", "cp"]
        target += ["--python-version", python] if python else []
    try:
        pip("download", "--quiet", "--only-binary=:all:", *target, "--dest", str(out), *index, *fast)
    except subprocess.CalledProcessError:
        print(f"no wheel of {', '.join(fast)} for this Pi: the daemon will run on asyncio's own loop", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "dist" / "wheelhouse"), help="default: dist/wheelhouse")
    p.add_argument("--platform", choices=sorted(PLATFORMS), help="the Pi's CPU when it differs from this machine's")
    p.add_argument("--python", metavar="X.Y", help="the Pi's Python (Bookworm 3.11, Trixie 3.13) with --platform")
    p.add_argument("--extra-index-url", action="append", default=[], metavar="URL")
    p.add_argument("--keep", action="store_true", help="keep wheels already in --out")
    args = p.parse_args(argv)
    if args.python and not args.platform:
        p.error("--python goes with --platform (a native build uses this Python)")
    wheels = build(Path(args.out), args.platform, args.python, args.extra_index_url, clean=not args.keep)
    print(f"{len(wheels)} wheels in {args.out}:")
    for w in wheels:
        print(f"  {w.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
