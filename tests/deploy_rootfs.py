"""A debootstrap'd Debian root for the deploy tests, built once and cached.

The cache lives under ``/var/cache/pi-appliance-tests/`` (override with ``PI_APPLIANCE_TEST_CACHE``),
keyed by suite, variant, architecture and package list: change the list and a new root is built.
A build takes about 95 s; it happens when the cache is absent, under a lock so that two test runs
never build the same root at once. Tests never write to the cached root: they get an overlay on it.

On top of it: the wheelhouse built from this checkout, ``ansible-playbook`` runs of ``ansible/site.yml``
over the chroot connection, and :class:`Machine`, a ``systemd-nspawn`` boot of a root with a real
systemd as PID 1 (``--private-network``: the container has only its own loopback).

Run ``python tests/deploy_rootfs.py`` to build (or find) the cached root and print its path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = REPO / "ansible"

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


@contextlib.contextmanager
def scratch_root(workdir: Path) -> Iterator[Path]:
    """A writable root over the cached one: an overlay mount (instant; the cache is its read-only lower
    layer, never written), or a full copy where overlayfs is not available. Removed afterwards."""
    src = cached_root()
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "root"
    upper, work = workdir / "upper", workdir / "work"
    for d in (root, upper, work):
        d.mkdir()
    opts = f"lowerdir={src},upperdir={upper},workdir={work}"
    mounted = (
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(root)], capture_output=True).returncode
        == 0
    )
    if not mounted:
        root.rmdir()
        subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(root)], check=True)
    try:
        yield root
    finally:
        # A booted container can leave a mount stacked on the root: take them all off, then the files.
        for _ in range(8):
            if not os.path.ismount(root):
                break
            subprocess.run(["umount", "-l", str(root)], capture_output=True)
        if os.path.ismount(root):
            print(f"deploy_rootfs: could not unmount {root}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def build_wheelhouse(out: Path) -> list[Path]:
    """The wheelhouse the role installs from, built from this checkout by deploy/build_wheelhouse.py."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "build_wheelhouse.py"), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the wheelhouse failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return sorted(out.glob("*.whl"))


def ansible_env() -> dict[str, str]:
    """The controller's environment without what must not leak into the target (pip's settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    env["ANSIBLE_CONFIG"] = str(ANSIBLE_DIR / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_DEPRECATION_WARNINGS"] = "0"
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


@dataclass
class PlaybookRun:
    rc: int
    output: str
    recap: dict[str, int]
    seconds: float

    def describe(self) -> str:
        return f"rc={self.rc} " + " ".join(f"{k}={v}" for k, v in self.recap.items()) + f" ({self.seconds:.0f} s)"


def parse_recap(output: str, host: str) -> dict[str, int]:
    m = re.search(rf"^{re.escape(host)}\s*:\s*(.*)$", output.split("PLAY RECAP")[-1], re.MULTILINE)
    if not m:
        return {}
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def run_playbook(inventory: Path, host: str, *extra: str, playbook: str = "site.yml") -> PlaybookRun:
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), playbook, *extra],
        cwd=ANSIBLE_DIR,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    return PlaybookRun(proc.returncode, out, parse_recap(out, host), time.monotonic() - t0)


def chroot_inventory(path: Path, root: Path, wheelhouse: Path, **host_vars: object) -> Path:
    """An inventory with one host reached through community.general.chroot (no systemd running there)."""
    lines = [
        "pi_appliances:",
        "  hosts:",
        "    pi-chroot:",
        "      ansible_connection: community.general.chroot",
        f"      ansible_host: {root}",
        "      ansible_python_interpreter: /usr/bin/python3",
        "      ansible_become: false",
        f"      pi_appliance_wheelhouse: {wheelhouse}",
        "      pi_appliance_start_services: false",
    ]
    lines += [f"      {k}: {json.dumps(v)}" for k, v in host_vars.items()]  # JSON is YAML
    path.write_text("\n".join(lines) + "\n")
    return path


class Machine:
    """A root booted with ``systemd-nspawn -b``: real systemd as PID 1, commands run through nsenter."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def start(self, timeout: float = 90.0) -> None:
        nspawn = shutil.which("systemd-nspawn")
        if nspawn is None:
            raise RuntimeError("systemd-nspawn is not installed (Debian package systemd-container)")
        # --register=no --keep-unit: this host's PID 1 is not systemd (no machined, no bus to ask).
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [nspawn, "-q", "--register=no", "--keep-unit", "--private-network", "-D", str(self.root), "-b"],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.leader:
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-3000:]
                raise RuntimeError(f"systemd-nspawn exited with {self.proc.returncode}:\n{tail}")
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            with contextlib.suppress(OSError):
                pids = children.read_text().split()
                if pids:
                    self.leader = int(pids[0])
            if time.monotonic() > deadline:
                raise RuntimeError("the container's init did not appear")
            time.sleep(0.1)
        state = ""
        while time.monotonic() < deadline:
            r = self.run("systemctl", "is-system-running", check=False)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the container did not finish booting (state {state!r}):\n{self.log.read_text()[-3000:]}")

    def run(self, *cmd: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_PAGER": ""},
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} -> rc {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def unit(self, name: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", "-p", ",".join(props), name).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "-u", unit, "--no-pager", "-o", "short-monotonic", check=False).stdout

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(Exception):
            self.run("systemctl", "poweroff", check=False, timeout=10)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


if __name__ == "__main__":
    print(cached_root(log=lambda m: print(m, file=sys.stderr)))
