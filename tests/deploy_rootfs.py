"""A debootstrap'd Debian root for the deploy tests, built once and cached.

The cache lives under ``/var/cache/pi-appliance-tests/`` (override with ``PI_APPLIANCE_TEST_CACHE``),
keyed by suite, variant, architecture and package list: change the list and a new root is built.
A build takes about 95 s; it happens when the cache is absent, under a lock so that two test runs
never build the same root at once. Tests never touch the cached root itself: they get a copy.

Run ``python tests/deploy_rootfs.py`` to build (or find) the cached root and print its path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

SUITE = "bookworm"  # Raspberry Pi OS Bookworm is Debian Bookworm underneath (Python 3.11)
VARIANT = "minbase"
MIRROR = "http://deb.debian.org/debian"
# What a fresh Raspberry Pi OS Lite has that the role relies on; the role itself installs the rest
# (chrony, python3-venv, python3-packaging), so the converge test shows that it does.
PACKAGES = ("systemd", "dbus", "python3", "python3-apt", "ca-certificates")

CACHE = Path(os.environ.get("PI_APPLIANCE_TEST_CACHE", "/var/cache/pi-appliance-tests"))


def cache_key() -> str:
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout
    text = "\n".join([SUITE, VARIANT, arch.strip(), MIRROR, *sorted(PACKAGES)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_root(log=print) -> Path:
    """The path of the cached pristine root, building it with debootstrap when absent."""
    if os.geteuid() != 0:
        raise RuntimeError("building a debootstrap root needs root (the tests run as root in CI)")
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise RuntimeError("debootstrap is not installed: tools/test.sh installs it (tools/apt-packages.txt)")
    key = cache_key()
    final = CACHE / f"debootstrap-{SUITE}-{key}"
    with _locked(CACHE / f".lock-{key}"):
        if (final / "root" / "etc" / "os-release").exists() and (final / "complete").exists():
            return final / "root"
        log(f"building the debootstrap root {final} (about 95 s, once; cached afterwards)")
        work = Path(tempfile.mkdtemp(prefix=f"build-{key}-", dir=CACHE))
        root = work / "root"
        cmd = [
            debootstrap,
            f"--variant={VARIANT}",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(root),
            MIRROR,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-3000:]
            shutil.rmtree(work, ignore_errors=True)
            raise RuntimeError(f"debootstrap failed (rc {proc.returncode}):\n{tail}")
        # Leave the apt lists out of the cache: the role's own apt task must fetch them.
        (work / "complete").write_text(" ".join(cmd) + "\n")
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
        return final / "root"


def copy_root(dest: Path) -> Path:
    """A fresh, writable copy of the cached root at ``dest`` (a few seconds: hard work is cached)."""
    src = cached_root()
    subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(dest)], check=True)
    return dest


if __name__ == "__main__":
    print(cached_root(log=lambda m: print(m, file=sys.stderr)))
