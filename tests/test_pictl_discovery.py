"""pictl finding appliances over mDNS: real mpd servers advertised by our Advertiser, all inside a
network namespace of the test's own (lo only), so no other test's appliances can answer."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pi_appliance.cli import targets
from pi_appliance.discovery import Appliance
from tests.conftest import need_program
from tests.test_pictl_mpd import start_mpd

ADVERTISE = textwrap.dedent(
    """
    import asyncio, signal, sys
    from pi_appliance.discovery import Advert, Advertiser

    async def main() -> None:
        port, name, groups = int(sys.argv[1]), sys.argv[2], tuple(g for g in sys.argv[3].split(",") if g)
        adv = Advertiser(Advert(port=port, name=name, version="t", id=f"id{port}", output="sim",
                                groups=groups, bind=("127.0.0.1",)))
        await adv.start()
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await adv.stop()

    asyncio.run(main())
    """
)


class Lan:
    """Things running in the namespace ``ns``."""

    def __init__(self, ns: str, tmp: Path) -> None:
        self.ns = ns
        self.tmp = tmp
        self.prefix = ["ip", "netns", "exec", ns]
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.env = {**{k: v for k, v in os.environ.items() if k not in ("MPD_HOST", "MPD_PORT")}}
        self.env.update(PICTL_MDNS_INTERFACES="127.0.0.1", PICTL_CONFIG=str(tmp / "pictl.toml"))

    def advertise(self, port: int, name: str, groups: str = "") -> None:
        p = subprocess.Popen(
            [*self.prefix, sys.executable, "-c", ADVERTISE, str(port), name, groups],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        self.procs[name] = p

    def withdraw(self, name: str) -> None:
        p = self.procs.pop(name)
        p.terminate()
        p.wait(10)

    def pictl(
        self, *args: str, env: dict[str, str] | None = None, stdin: int = subprocess.DEVNULL
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, sys.executable, "-m", "pi_appliance.cli.pictl", "--browse-timeout", "2", *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            stdin=stdin,
            timeout=60,
        )

    def mpc(self, port: int, *args: str) -> str:
        return subprocess.run(
            [*self.prefix, "mpc", "-p", str(port), *args], capture_output=True, text=True, check=True
        ).stdout

    def close(self) -> None:
        for name in list(self.procs):
            self.withdraw(name)


@pytest.mark.root
def test_pictl_finds_appliances(lo_netns: str, tmp_path: Path) -> None:
    need_program("mpc")
    lan = Lan(lo_netns, tmp_path)
    mpds = [start_mpd(tmp_path / f"m{port}", port, lan.prefix) for port in (6601, 6602)]
    try:
        # Nothing on the LAN, no host given: a one-line error saying what to do.
        r = lan.pictl("status")
        assert (r.returncode, r.stdout) == (1, "")
        assert r.stderr == "pictl: no appliance found on the LAN (give --host, or set MPD_HOST)\n"

        # One appliance on the LAN: used without --host.
        lan.advertise(6601, "Buzzer @ alpha", "lab")
        r = lan.pictl("status")
        assert r.returncode == 0, r.stderr
        assert r.stdout == lan.mpc(6601, "status")
        r = lan.pictl("ls", "--json")
        (entry,) = json.loads(r.stdout)
        assert (entry["name"], entry["port"], entry["address"], entry["groups"]) == (
            "Buzzer @ alpha", 6601, "127.0.0.1", ["lab"]
        )  # fmt: skip
        assert entry["id"] == "id6601" and entry["output"] == "sim"

        # Two: without a terminal pictl will not guess, it lists them.
        lan.advertise(6602, "Buzzer @ beta", "lab,row2")
        r = lan.pictl("status")
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and "several appliances" in r.stderr
        assert "Buzzer @ alpha" in r.stderr and "Buzzer @ beta" in r.stderr
        # On a terminal it lists them and asks.
        master, slave = pty.openpty()
        try:
            os.write(master, b"2\n")
            r = lan.pictl("volume", "33", stdin=slave)
        finally:
            os.close(master)
            os.close(slave)
        assert r.returncode == 0, r.stderr
        assert "1) Buzzer @ alpha  127.0.0.1:6601" in r.stderr and "Which one [1-2]? " in r.stderr
        assert lan.mpc(6602, "volume") == "volume: 33%\n" and lan.mpc(6601, "volume") == "volume:100%\n"
        table = lan.pictl("ls").stdout.splitlines()
        assert table[0].split()[:2] == ["NAME", "ADDRESS"] and len(table) == 3
        assert table[1].startswith("Buzzer @ alpha") and "6601" in table[1] and "lab" in table[1]

        # --host takes the mDNS instance name (or the id); MPD_HOST too, with a password@.
        r = lan.pictl("--host", "Buzzer @ beta", "volume", "40")
        assert r.returncode == 0, r.stderr
        assert lan.mpc(6602, "volume") == "volume: 40%\n" and lan.mpc(6601, "volume") == "volume:100%\n"
        assert lan.pictl("--host", "id6601", "current").returncode == 0
        r = lan.pictl("version", env={"MPD_HOST": "Buzzer @ beta"})
        assert r.stdout.startswith("mpd version: ")
        r = lan.pictl("--host", "Buzzer @ nobody", "status")
        assert r.returncode == 1 and "no appliance called 'Buzzer @ nobody'" in r.stderr

        # --all fans out and says who answered.
        r = lan.pictl("--all", "volume", "20")
        assert r.returncode == 0, r.stderr
        assert "2 of 2 answered: Buzzer @ alpha, Buzzer @ beta" in r.stderr
        assert lan.mpc(6601, "volume") == lan.mpc(6602, "volume") == "volume: 20%\n"
        assert "[Buzzer @ alpha] volume: 20%" in r.stdout

        # A third appliance is advertised but its server is down: named in the summary, exit 1.
        lan.advertise(6609, "Buzzer @ gamma")
        r = lan.pictl("--all", "status")
        assert r.returncode == 1
        assert "2 of 3 answered" in r.stderr and "no answer from Buzzer @ gamma (127.0.0.1:6609)" in r.stderr
        assert r.stdout.count("[Buzzer @ beta] volume: 20%") == 1

        # Groups: from TXT, and from pictl's config file.
        assert lan.pictl("--group", "row2", "volume", "55").returncode == 0
        assert lan.mpc(6602, "volume") == "volume: 55%\n" and lan.mpc(6601, "volume") == "volume: 20%\n"
        (tmp_path / "pictl.toml").write_text('[groups]\nops = ["Buzzer @ alpha"]\n')
        r = lan.pictl("--group", "ops", "volume", "66")
        assert r.returncode == 0 and "1 of 1 answered: Buzzer @ alpha" in r.stderr
        assert lan.mpc(6601, "volume") == "volume: 66%\n" and lan.mpc(6602, "volume") == "volume: 55%\n"
        r = lan.pictl("--group", "nosuch", "status")
        assert r.returncode == 1 and "group 'nosuch'" in r.stderr

        # Withdrawn (goodbye on shutdown): no longer listed.
        lan.withdraw("Buzzer @ gamma")
        lan.withdraw("Buzzer @ alpha")
        names = [a["name"] for a in json.loads(lan.pictl("ls", "--json").stdout)]
        assert names == ["Buzzer @ beta"]
    finally:
        lan.close()
        for p in mpds:
            p.terminate()
            p.wait(10)


def test_choosing_among_several() -> None:
    apps = [Appliance(f"Buzzer @ {n}", n, (f"10.0.0.{i}",), 6600) for i, n in enumerate(["a", "b", "c"], 1)]
    assert targets.choose(apps, lambda prompt: "2\n").name == "Buzzer @ b"
    assert targets.choose(apps, lambda prompt: "Buzzer @ c").name == "Buzzer @ c"
    with pytest.raises(targets.TargetError, match="no appliance 7"):
        targets.choose(apps, lambda prompt: "7")
    with pytest.raises(targets.TargetError, match=r"1\) Buzzer @ a  10\.0\.0\.1:6600; 2\)"):
        targets.choose(apps, None)


def test_host_specs() -> None:
    assert targets.split_password("secret@pi-01") == ("secret", "pi-01")
    assert targets.split_password("Buzzer @ pi-01") == (None, "Buzzer @ pi-01")
    assert targets.split_password("pw@Buzzer @ pi-01") == ("pw", "Buzzer @ pi-01")
    assert targets.split_password("@abstract") == (None, "@abstract")
    b = targets.Browsing(timeout=0.1)
    assert targets.lookup("10.1.2.3:6601", None, None, b) == targets.Target("10.1.2.3", 6601)
    assert targets.lookup("/run/mpd/socket", None, "pw", b) == targets.Target("/run/mpd/socket", 6600, "pw")
    assert targets.lookup("localhost", 7000, None, b).endpoint == "localhost:7000"
    t = targets.resolve_one(None, None, b, env={"MPD_HOST": "pw@127.0.0.1", "MPD_PORT": "6611"})
    assert (t.host, t.port, t.password) == ("127.0.0.1", 6611, "pw")
    with pytest.raises(targets.TargetError, match="MPD_PORT"):
        targets.resolve_one(None, None, b, env={"MPD_PORT": "x"})


def test_at_parsing() -> None:
    from pi_appliance.cli.pictl import UsageError, parse_at

    assert parse_at("+2s", now=1000.0) == 1002_000_000_000
    assert parse_at("+250ms", now=1000.0) == 1000_250_000_000
    assert parse_at("1790000000.5") == 1790000000_500_000_000
    with pytest.raises(UsageError):
        parse_at("soon")
