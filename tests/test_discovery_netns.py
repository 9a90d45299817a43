"""Discovery between two network namespaces joined by a veth pair: the LAN case, on real sockets.

Needs root (CAP_NET_ADMIN) and iproute2; the namespaces are named after this process and always
deleted. The advertiser runs in namespace A as it would on a Pi (all interfaces, bind 0.0.0.0); the
watcher runs in B and reports what it sees as JSON lines.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_program

ADVERTISE = textwrap.dedent(
    """
    import asyncio, json, logging, signal, sys
    logging.basicConfig(level=logging.INFO)
    from pi_appliance.discovery import Advert, Advertiser

    async def main() -> None:
        adv = Advertiser(Advert(port=int(sys.argv[1]), name=sys.argv[2], version="t", id=sys.argv[3],
                                output="sim", bind=("0.0.0.0",)), poll_interval=0.3)
        await adv.start()
        print(json.dumps({"names": adv.names, "addresses": adv.addresses}), flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        n = adv.announcements
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 0.1)
            except TimeoutError:
                pass
            if adv.announcements != n:
                n = adv.announcements
                print(json.dumps({"reannounced": adv.addresses}), flush=True)
        await adv.stop()
        print(json.dumps({"stopped": True}), flush=True)

    asyncio.run(main())
    """
)

WATCH = textwrap.dedent(
    """
    import asyncio, json
    from zeroconf import ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    async def main() -> None:
        async with AsyncZeroconf() as azc:
            async def resolve(ev, type_, name):
                info = AsyncServiceInfo(type_, name)
                ok = await info.async_request(azc.zeroconf, 3000)
                print(json.dumps({"ev": ev, "name": name, "ok": ok, "port": info.port,
                                  "addrs": info.parsed_scoped_addresses() if ok else [],
                                  "id": (info.properties or {}).get(b"id", b"").decode()}), flush=True)

            def on(zeroconf, service_type, name, state_change):
                if state_change is ServiceStateChange.Removed:
                    print(json.dumps({"ev": "removed", "name": name}), flush=True)
                else:
                    asyncio.get_running_loop().create_task(resolve(state_change.name.lower(), service_type, name))

            browser = AsyncServiceBrowser(azc.zeroconf, ["_pi-appliance._tcp.local."], handlers=[on])
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def netns() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.fail("the namespace discovery test needs root (CAP_NET_ADMIN)")
    need_program("ip")
    a, b = f"fleet{os.getpid()}a", f"fleet{os.getpid()}b"
    try:
        _ip("netns", "add", a)
        _ip("netns", "add", b)
        _ip("link", "add", "va", "netns", a, "type", "veth", "peer", "name", "vb", "netns", b)
        _ip("-n", a, "addr", "add", "10.77.0.1/24", "dev", "va")
        _ip("-n", b, "addr", "add", "10.77.0.2/24", "dev", "vb")
        for n, dev in ((a, "va"), (b, "vb")):
            _ip("-n", n, "link", "set", "lo", "up")
            _ip("-n", n, "link", "set", dev, "up")
        yield a, b
    finally:
        for n in (a, b):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


class Proc:
    """A child in a namespace whose stdout JSON lines are read by a thread."""

    def __init__(self, ns: str, code: str, *args: str) -> None:
        root = Path(__file__).resolve().parent.parent
        self.err = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            cwd=root,
        )
        self.q: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.q.put(json.loads(line))

    def expect(self, pred, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.err.seek(0)
                err = self.err.read()[-3000:]
                raise AssertionError(f"nothing matching within {timeout}s {err}")
            try:
                msg = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if pred(msg):
                return msg

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.err.close()


@pytest.mark.root
def test_between_namespaces(netns: tuple[str, str]) -> None:
    a, b = netns
    name = "Buzzer @ pi-lab-01"
    adv = Proc(a, ADVERTISE, "6600", name, "id-a")
    rival = watcher = None
    try:
        reg = adv.expect(lambda m: "names" in m)
        full = f"{name}._pi-appliance._tcp.local."
        assert reg["names"][1] == full
        assert "10.77.0.1" in reg["addresses"] and not any(x.startswith("127.") for x in reg["addresses"])

        # A second appliance with the same name boots on the other side of the link: renamed.
        # (A responder multicasts a record at most once a second (RFC 6762 6.), and python-zeroconf's
        # probing only notices a conflict from an answer, so two boots in the same second may both win.)
        time.sleep(1.2)
        rival = Proc(b, ADVERTISE, "6601", name, "id-b")
        rreg = rival.expect(lambda m: "names" in m)
        assert rreg["names"][1] != full and rreg["names"][1].startswith(name)

        # Both found from namespace B, over the veth, with LAN addresses and TXT.
        watcher = Proc(b, WATCH)
        seen = watcher.expect(lambda m: m.get("name") == full and m.get("ok"))
        assert "10.77.0.1" in seen["addrs"] and seen["port"] == 6600 and seen["id"] == "id-a"
        assert not any(x.startswith("127.") for x in seen["addrs"])
        seen2 = watcher.expect(lambda m: m.get("name") == rreg["names"][1] and m.get("ok"))
        assert seen2["id"] == "id-b" and "10.77.0.2" in seen2["addrs"]

        # The address changes (DHCP gave another one): the poller re-announces, the watcher sees it.
        # (another subnet: deleting a primary address takes the secondaries of its subnet with it)
        _ip("-n", a, "addr", "add", "10.78.0.9/24", "dev", "va")
        _ip("-n", a, "addr", "del", "10.77.0.1/24", "dev", "va")
        re = adv.expect(lambda m: "reannounced" in m and "10.78.0.9" in m["reannounced"])
        assert "10.77.0.1" not in re["reannounced"]
        upd = watcher.expect(lambda m: m.get("name") == full and "10.78.0.9" in m.get("addrs", []))
        assert upd["ok"]

        # Shutdown: goodbyes reach the other namespace.
        adv.p.terminate()
        adv.expect(lambda m: "stopped" in m, 5)
        watcher.expect(lambda m: m.get("ev") == "removed" and m.get("name") == full)
    finally:
        for p in (adv, rival, watcher):
            if p is not None:
                p.stop()
