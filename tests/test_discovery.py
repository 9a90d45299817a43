"""Discovery: pure address rules, then real python-zeroconf on loopback and between two network
namespaces joined by a veth pair (created here as root, always removed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid

import ifaddr
import pytest
from zeroconf import ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from pi_appliance import discovery
from pi_appliance.discovery import APPLIANCE_TYPE, MPD_TYPE, Advert, Advertiser

LO = ["127.0.0.1"]


def _adapter(name: str, *ips: str, index: int = 1) -> ifaddr.Adapter:
    out = []
    for ip in ips:
        if ":" in ip:
            out.append(ifaddr.IP((ip, 0, index), 64, name))
        else:
            out.append(ifaddr.IP(ip, 24, name))
    return ifaddr.Adapter(name, name, out, index=index)


def test_lan_addresses_never_loopback() -> None:
    adapters = [
        _adapter("lo", "127.0.0.1", "::1"),
        _adapter("eth0", "192.168.1.20", "fe80::1", index=2),
        _adapter("wlan0", "10.0.0.5", index=3),
        _adapter("dummy", "127.0.1.1", index=4),  # Debian's hostname address: never advertised
    ]
    assert discovery.lan_addresses(("0.0.0.0",), adapters) == ["10.0.0.5", "192.168.1.20", "fe80::1"]
    assert discovery.lan_addresses(("192.168.1.20",), adapters) == ["192.168.1.20"]
    assert discovery.lan_addresses(("::",), adapters) == ["10.0.0.5", "192.168.1.20", "fe80::1"]


def test_loopback_only_rule() -> None:
    assert discovery.is_loopback_only(["127.0.0.1"])
    assert discovery.is_loopback_only(["127.0.0.1", "::1", "localhost"])
    assert not discovery.is_loopback_only(["127.0.0.1", "0.0.0.0"])
    assert not discovery.is_loopback_only(["192.168.1.2"])
    assert not discovery.is_loopback_only([])


def test_txt_and_names() -> None:
    a = Advert(port=6600, version="1.2", id="abc", output="sim", knock=("hmac", "ticks"), groups=("lab",))
    assert a.txt() == {
        "app": "pi-appliance",
        "version": "1.2",
        "id": "abc",
        "output": "sim",
        "knock": "hmac,ticks",
        "groups": "lab",
    }
    assert Advert(port=1).txt()["knock"] == "off"
    assert discovery.default_instance_name("pi-07") == "Buzzer @ pi-07"
    assert discovery.stable_id("/var/lib/a") == discovery.stable_id("/var/lib/a") != discovery.stable_id("/b")


class Watcher:
    """A live browser on loopback that records what it sees, per instance name."""

    def __init__(self, azc: AsyncZeroconf, types: list[str]) -> None:
        self.azc = azc
        self.present: dict[str, AsyncServiceInfo] = {}
        self.removed: set[str] = set()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.browser = AsyncServiceBrowser(azc.zeroconf, types, handlers=[self._on])

    def _on(self, zeroconf: object, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            self.present.pop(name, None)
            self.removed.add(name)
            self._changed.set()
            return
        t = asyncio.get_running_loop().create_task(self._resolve(service_type, name))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _resolve(self, type_: str, name: str) -> None:
        info = AsyncServiceInfo(type_, name)
        if await info.async_request(self.azc.zeroconf, 3000):
            self.present[name] = info
            self._changed.set()

    async def until(self, pred, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"timed out; present={sorted(self.present)} removed={sorted(self.removed)}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))


async def test_loopback_found_renamed_gone() -> None:
    tag = f"T{os.getpid()}-{uuid.uuid4().hex[:6]}"
    first = Advertiser(
        Advert(port=16600, name=f"Buzzer @ {tag}", version="9", id="one", output="sim", bind=("127.0.0.1",))
    )
    second = Advertiser(
        Advert(port=16601, name=f"Buzzer @ {tag}", version="9", id="two", output="sim", bind=("127.0.0.1",))
    )
    async with AsyncZeroconf(interfaces=LO) as azc:
        w = Watcher(azc, [MPD_TYPE, APPLIANCE_TYPE])
        await first.start()
        assert first.addresses == ["127.0.0.1"]
        await second.start()
        # The second one was renamed, not refused.
        assert first.names[1] == f"Buzzer @ {tag}.{APPLIANCE_TYPE}"
        assert second.names[1] != first.names[1] and second.names[1].startswith(f"Buzzer @ {tag}")
        await w.until(lambda: all(n in w.present for n in first.names + second.names))
        info = w.present[first.names[1]]
        assert info.port == 16600
        assert info.parsed_addresses() == ["127.0.0.1"]
        assert info.properties[b"id"] == b"one" and info.properties[b"output"] == b"sim"
        assert w.present[second.names[0]].port == 16601  # _mpd._tcp too

        # pictl's browse sees both, merged per endpoint.
        apps = [a for a in await discovery.browse(interfaces=LO, timeout=3, settle=0.5) if tag in a.name]
        assert sorted(a.port for a in apps) == [16600, 16601]
        assert {a.kind for a in apps} == {"pi-appliance"}
        assert any(a.matches(tag) is False and a.matches(a.name) for a in apps)

        await first.stop()
        await w.until(lambda: all(n in w.removed and n not in w.present for n in first.names))
        assert all(n in w.present for n in second.names)
        await second.stop()
        await w.until(lambda: all(n in w.removed for n in second.names))
        await w.browser.async_cancel()


async def test_poll_reannounces_on_address_change() -> None:
    """The poller notices a new address through ifaddr and announces it (fake adapters, real zeroconf)."""
    tag = f"P{os.getpid()}-{uuid.uuid4().hex[:6]}"
    # zeroconf itself binds 127.0.0.1 only; the addresses it publishes come from these fake adapters.
    adapters = [_adapter("lo", "127.0.0.1"), _adapter("x", "10.99.0.1", index=2)]

    def fake() -> list[ifaddr.Adapter]:
        return adapters

    adv = Advertiser(
        Advert(port=16602, name=f"Buzzer @ {tag}", bind=("0.0.0.0",)), interfaces=LO, adapters=fake, poll_interval=0.2
    )
    async with AsyncZeroconf(interfaces=LO) as azc:
        w = Watcher(azc, [APPLIANCE_TYPE])
        await adv.start()
        try:
            name = adv.names[1]
            await w.until(lambda: name in w.present)
            assert w.present[name].parsed_addresses() == ["10.99.0.1"]
            adapters[1] = _adapter("x", "10.99.0.1", "10.99.0.7", index=2)
            before = adv.announcements
            deadline = time.monotonic() + 5
            while adv.announcements == before and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert adv.addresses == ["10.99.0.1", "10.99.0.7"]
            # A fresh query gets the new address record.
            async with AsyncZeroconf(interfaces=LO) as other:
                info = AsyncServiceInfo(APPLIANCE_TYPE, name)
                assert await info.async_request(other.zeroconf, 3000)
                assert "10.99.0.7" in info.parsed_addresses()
        finally:
            await adv.stop()
        await w.browser.async_cancel()


def test_advert_from_settings(tmp_path) -> None:
    from pi_appliance import __version__, config

    f = tmp_path / "c.toml"
    f.write_text(
        f'state_dir = "{tmp_path}"\n[mpd]\nbind = ["0.0.0.0"]\n'
        '[discovery]\nname = "Bench 3"\ngroups = ["lab", "row-a"]\n'
    )
    s = config.load(f)
    a = discovery.advert_for(s, port=6601, output_kind="sim")
    assert (a.name, a.port, a.output, a.groups, a.version) == ("Bench 3", 6601, "sim", ("lab", "row-a"), __version__)
    assert not a.loopback_only and a.txt()["knock"] == "off"
    assert a.id == discovery.advert_for(s, port=1, output_kind="x").id  # stable for one state dir
    f.write_text('[discovery]\ngroups = ["a,b"]\n')
    with pytest.raises(config.ConfigError, match=r"discovery\.groups"):
        config.load(f)
