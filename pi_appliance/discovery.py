"""mDNS with python-zeroconf: advertise the appliance, and browse for appliances (pictl).

Two services are published for one daemon, both named after the host ("Buzzer @ <hostname>"):

* ``_mpd._tcp``, as MPD itself does, so MPD clients with discovery (M.A.L.P., ``avahi-browse``) find it;
* ``_pi-appliance._tcp``, with TXT records for pictl: ``version``, ``id`` (stable), ``output`` (the
  buzzer output kind), ``knock`` (the knock modes that are on, comma-separated, or ``off``) and
  ``groups`` (comma-separated fleet groups).

Addresses come from ifaddr and never include loopback unless the daemon itself only listens on loopback,
in which case the advertisement is *loopback-only*: zeroconf binds 127.0.0.1 alone, so nothing reaches
the LAN (the demo and the tests use this). Interfaces are polled (python-zeroconf's sockets are a
startup snapshot): on a change the sockets are rebuilt (``async_update_interfaces``) and the new address
records announced (``async_update_service``). Name conflicts are settled by zeroconf's renaming
(``allow_name_change``); the shutdown sends goodbyes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import ifaddr
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from pi_appliance import __version__

if TYPE_CHECKING:
    from pi_appliance.config import Settings

log = logging.getLogger(__name__)

MPD_TYPE = "_mpd._tcp.local."
APPLIANCE_TYPE = "_pi-appliance._tcp.local."
LOOPBACK_INTERFACES = ["127.0.0.1"]
WILDCARDS = {"", "0.0.0.0", "::", "*", "any"}
#: Seconds between two looks at the interfaces (the research suggests 10-30 s on a Pi).
DEFAULT_POLL_S = 15.0


def hostname() -> str:
    """The short host name, as MPD's ``%h`` (no domain)."""
    return socket.gethostname().split(".")[0] or "localhost"


def default_instance_name(host: str | None = None) -> str:
    return f"Buzzer @ {host or hostname()}"


def stable_id(salt: str = "") -> str:
    """A short id that survives restarts: a hash of /etc/machine-id (or the host name) and ``salt``.

    The daemon salts it with its state directory so that several daemons on one machine differ.
    The machine id itself is never published (machine-id(5) asks for that).
    """
    base = ""
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            base = Path(p).read_text().strip()
            if base:
                break
    base = base or socket.gethostname()
    return hashlib.sha256(f"pi-appliance:{base}:{salt}".encode()).hexdigest()[:12]


def _is_loopback(ip: str) -> bool:
    try:
        a = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return False
    return a.is_loopback or (a.version == 4 and str(a).startswith("127."))


def is_loopback_only(bind: Iterable[str]) -> bool:
    """True when every bind address is a loopback one (then nothing may be advertised to the LAN)."""
    binds = [b.strip("[]") for b in bind]
    if not binds:
        return False
    if any(b in WILDCARDS for b in binds):
        return False
    resolved: list[str] = []
    for b in binds:
        if b == "localhost":
            resolved.append("127.0.0.1")
        else:
            resolved.append(b)
    return all(_is_loopback(b) for b in resolved)


def lan_addresses(bind: Iterable[str] = ("0.0.0.0",), adapters: Sequence[ifaddr.Adapter] | None = None) -> list[str]:
    """The non-loopback addresses the daemon can be reached at, given its bind list.

    IPv6 link-local addresses keep no scope (the record is per interface anyway). Sorted, so that two
    polls can be compared.
    """
    binds = {b.strip("[]") for b in bind}
    wildcard = bool(binds & WILDCARDS) or not binds
    out: set[str] = set()
    for adapter in adapters if adapters is not None else ifaddr.get_adapters():
        for ip in adapter.ips:
            addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            addr = addr.split("%")[0]
            if _is_loopback(addr):
                continue
            if wildcard or addr in binds:
                out.add(addr)
    return sorted(out)


@dataclass(frozen=True)
class Advert:
    """What the daemon publishes."""

    port: int
    name: str = ""  # the instance name; "" = "Buzzer @ <hostname>"
    host: str = ""  # "" = this host's name
    version: str = ""
    id: str = ""
    output: str = ""
    knock: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    bind: tuple[str, ...] = ("0.0.0.0",)

    @property
    def loopback_only(self) -> bool:
        return is_loopback_only(self.bind)

    def txt(self) -> dict[str, str]:
        t = {
            "app": "pi-appliance",
            "version": self.version,
            "id": self.id,
            "output": self.output,
            "knock": ",".join(self.knock) or "off",
        }
        if self.groups:
            t["groups"] = ",".join(self.groups)
        return t


def knock_modes(knock: object) -> tuple[str, ...]:
    """Which knock modes a ``[knock]`` section turns on, for TXT ``knock`` (read defensively: no knock import)."""
    if not getattr(knock, "enabled", False):
        return ()
    modes = []
    if getattr(knock, "auth_port", 0) and getattr(knock, "key", ()):
        modes.append("hmac")
    if getattr(knock, "clock_sequence", ()):
        modes.append("clock")
    if getattr(knock, "sequence", ()):
        modes.append("sequence")
    if getattr(getattr(knock, "pool", None), "enabled", False):
        modes.append("pool")
    return tuple(modes) or ("on",)


def advert_for(settings: Settings, *, port: int, output_kind: str) -> Advert:
    """The daemon's advertisement from its settings, the port actually bound and the output chosen."""
    d = settings.discovery
    return Advert(
        port=port,
        name=d.name,
        version=__version__,
        id=stable_id(str(Path(settings.state_dir).resolve())),
        output=output_kind,
        knock=knock_modes(settings.knock),
        groups=tuple(d.groups),
        bind=tuple(settings.mpd.bind),
    )


class Advertiser:
    """Publishes ``_mpd._tcp`` and ``_pi-appliance._tcp`` for one daemon, keeps them current, withdraws them.

    ``async with Advertiser(advert):`` or ``start()``/``stop()``. ``interfaces`` overrides which
    addresses zeroconf binds (tests, demos); by default all interfaces, or 127.0.0.1 alone when the
    daemon listens on loopback only.
    """

    def __init__(
        self,
        advert: Advert,
        *,
        poll_interval: float = DEFAULT_POLL_S,
        interfaces: list[str] | None = None,
        adapters: Callable[[], Sequence[ifaddr.Adapter]] = ifaddr.get_adapters,
    ) -> None:
        self.advert = advert
        self.poll_interval = poll_interval
        self._adapters = adapters
        self._interfaces = interfaces
        self._zc: AsyncZeroconf | None = None
        self._infos: list[AsyncServiceInfo] = []
        self._addresses: list[str] = []
        self._poller: asyncio.Task[None] | None = None
        self.announcements = 0  # how many times the address records were (re)announced

    @property
    def names(self) -> list[str]:
        """The registered full service names (after any renaming on conflict)."""
        return [i.name for i in self._infos]

    @property
    def addresses(self) -> list[str]:
        return list(self._addresses)

    def _current_addresses(self) -> list[str]:
        if self.advert.loopback_only:
            return ["127.0.0.1"]
        return lan_addresses(self.advert.bind, self._adapters())

    async def start(self) -> None:
        a = self.advert
        host = a.host or hostname()
        instance = a.name or default_instance_name(host)
        if a.loopback_only:
            interfaces: list[str] | InterfaceChoice = self._interfaces or LOOPBACK_INTERFACES
            ip_version = IPVersion.V4Only
        else:
            interfaces = self._interfaces or InterfaceChoice.All
            ip_version = IPVersion.All
        self._zc = AsyncZeroconf(interfaces=interfaces, ip_version=ip_version)
        self._addresses = self._current_addresses()
        if not self._addresses:
            log.warning("mDNS: no non-loopback address yet; advertising once one appears")
        server = f"{host}.local."
        txt = a.txt()
        infos = [
            AsyncServiceInfo(
                type_,
                f"{instance}.{type_}",
                port=a.port,
                properties=txt,
                server=server,
                parsed_addresses=self._addresses,
            )
            for type_ in (MPD_TYPE, APPLIANCE_TYPE)
        ]
        zc = self._zc

        async def register(info: AsyncServiceInfo) -> None:
            # allow_name_change: a second "Buzzer @ host" becomes "Buzzer @ host-2" instead of failing.
            await (await zc.async_register_service(info, allow_name_change=True))

        try:
            # Both probes run at once: they take ~0.6 s each (three probes 250 ms apart).
            await asyncio.gather(*(register(i) for i in infos))
            self._infos = infos
            self.announcements += 1
        except BaseException:
            await self.stop()
            raise
        log.info("mDNS: advertising %s on %s port %d", ", ".join(self.names), ", ".join(self._addresses), a.port)
        if not a.loopback_only and self.poll_interval > 0:
            self._poller = asyncio.create_task(self._poll(), name="mdns-poll")

    async def check_interfaces(self) -> bool:
        """Look at the interfaces once; on a change rebind and re-announce. True if something changed."""
        if self._zc is None:
            return False
        now = self._current_addresses()
        if now == self._addresses:
            return False
        log.info("mDNS: addresses changed %s -> %s; re-announcing", self._addresses, now)
        self._addresses = now
        await self._zc.async_update_interfaces()
        for info in self._infos:
            info.addresses = [socket.inet_pton(_family(ip), ip) for ip in now]
            await (await self._zc.async_update_service(info))
        self.announcements += 1
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                # Bounded: a poll that hangs must not stop the ones after it.
                await asyncio.wait_for(self.check_interfaces(), max(10.0, 2 * self.poll_interval))
            except Exception:  # one bad poll must not end the advertising
                log.exception("mDNS: re-announcing failed")

    async def stop(self) -> None:
        """Withdraw (goodbye packets) and close. Safe to call twice."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        zc, self._zc = self._zc, None
        if zc is None:
            return
        for info in self._infos:
            with contextlib.suppress(Exception):
                await (await zc.async_unregister_service(info))
        self._infos.clear()
        await zc.async_close()

    async def __aenter__(self) -> Advertiser:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


# ---------------------------------------------------------------------------------------------- browsing


@dataclass(frozen=True)
class Appliance:
    """One appliance (or a plain MPD server) found on the LAN."""

    name: str  # instance name, e.g. "Buzzer @ pi-01"
    host: str  # server name without ".local.", e.g. "pi-01"
    addresses: tuple[str, ...]
    port: int
    txt: dict[str, str] = field(default_factory=dict)
    kind: str = "pi-appliance"  # or "mpd" for an MPD server that is not one of ours

    @property
    def id(self) -> str:
        return self.txt.get("id", "")

    @property
    def version(self) -> str:
        return self.txt.get("version", "")

    @property
    def output(self) -> str:
        return self.txt.get("output", "")

    @property
    def knock(self) -> str:
        return self.txt.get("knock", "")

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(g for g in self.txt.get("groups", "").split(",") if g)

    @property
    def address(self) -> str:
        """The address to connect to: IPv4 first, then IPv6 (link-local ones carry their scope)."""
        for a in self.addresses:
            if ":" not in a:
                return a
        return self.addresses[0] if self.addresses else self.host + ".local"

    def matches(self, name: str) -> bool:
        """Whether ``name`` designates this appliance: instance name, host (with or without .local), or id."""
        n = name.rstrip(".").casefold()
        if n.endswith(".local"):
            n = n[: -len(".local")]
        return n in {self.name.casefold(), self.host.casefold(), self.id.casefold()} and n != ""

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "host": self.host,
            "address": self.address,
            "addresses": list(self.addresses),
            "port": self.port,
            "kind": self.kind,
            "id": self.id,
            "version": self.version,
            "output": self.output,
            "knock": self.knock,
            "groups": list(self.groups),
        }


def _instance(name: str, type_: str) -> str:
    return name[: -len(type_) - 1] if name.endswith("." + type_) else name


def _decode_txt(props: dict[bytes, bytes | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in props.items():
        try:
            out[k.decode()] = (v or b"").decode()
        except UnicodeDecodeError:
            continue
    return out


def browse_interfaces(spec: str | None) -> list[str] | InterfaceChoice:
    """Parse a comma-separated list of addresses to browse on (e.g. ``127.0.0.1``); empty = all."""
    if not spec:
        return InterfaceChoice.All
    return [s.strip() for s in spec.split(",") if s.strip()]


async def browse(
    *,
    timeout: float = 3.0,
    settle: float = 0.5,
    first: bool = False,
    include_mpd: bool = True,
    interfaces: list[str] | InterfaceChoice = InterfaceChoice.All,
    on_found: Callable[[Appliance], None] | None = None,
) -> list[Appliance]:
    """Find appliances on the LAN.

    Waits at most ``timeout`` seconds; once something is found, ``settle`` seconds more after the
    last arrival (mDNS answers arrive within ~120 ms of a query, so this is enough to see a row of
    Pis), or returns at once with ``first``. Plain MPD servers (``_mpd._tcp`` without our
    ``_pi-appliance._tcp``) are listed with ``kind == "mpd"`` when ``include_mpd``.
    """
    types = [APPLIANCE_TYPE, MPD_TYPE] if include_mpd else [APPLIANCE_TYPE]
    ip_version = IPVersion.V4Only if isinstance(interfaces, list) else IPVersion.All
    found: dict[tuple[str, str], Appliance] = {}
    changed = asyncio.Event()
    pending: set[asyncio.Task[None]] = set()

    async with AsyncZeroconf(interfaces=interfaces, ip_version=ip_version) as azc:

        async def resolve(type_: str, name: str) -> None:
            info = AsyncServiceInfo(type_, name)
            if not await info.async_request(azc.zeroconf, int(max(timeout, 0.5) * 1000)):
                return
            addrs = tuple(info.parsed_scoped_addresses())
            if not addrs or info.port is None:
                return
            host = (info.server or "").removesuffix(".").removesuffix(".local")
            app = Appliance(
                name=_instance(name, type_),
                host=host,
                addresses=addrs,
                port=info.port,
                txt=_decode_txt(info.properties),
                kind="pi-appliance" if type_ == APPLIANCE_TYPE else "mpd",
            )
            if app.txt.get("app") == "pi-appliance":
                app = dataclasses.replace(app, kind="pi-appliance")
            found[(type_, name)] = app
            changed.set()

        def on_change(zeroconf: object, service_type: str, name: str, state_change: ServiceStateChange) -> None:
            if state_change is ServiceStateChange.Removed:
                found.pop((service_type, name), None)
                return
            t = asyncio.get_running_loop().create_task(resolve(service_type, name))
            pending.add(t)
            t.add_done_callback(pending.discard)

        browser = AsyncServiceBrowser(azc.zeroconf, types, handlers=[on_change])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    break
                wait = left if not found else min(left, settle)
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), wait)
                except TimeoutError:
                    if found:
                        break
                    continue
                if on_found is not None:
                    for app in list(found.values())[seen:]:
                        on_found(app)
                seen = len(found)
                if first and found:
                    break
        finally:
            await browser.async_cancel()
            for t in list(pending):
                t.cancel()
    return merge(found.values())


def merge(apps: Iterable[Appliance]) -> list[Appliance]:
    """One entry per appliance: its ``_pi-appliance`` record wins over its ``_mpd`` one."""
    by_endpoint: dict[tuple[frozenset[str], int], Appliance] = {}
    for app in sorted(apps, key=lambda a: a.kind != "pi-appliance"):
        key = (frozenset(app.addresses), app.port)
        if key not in by_endpoint:
            by_endpoint[key] = app
    return sorted(by_endpoint.values(), key=lambda a: (a.name.casefold(), a.port))


__all__ = [
    "APPLIANCE_TYPE",
    "MPD_TYPE",
    "Advert",
    "Advertiser",
    "Appliance",
    "advert_for",
    "browse",
    "browse_interfaces",
    "default_instance_name",
    "hostname",
    "is_loopback_only",
    "knock_modes",
    "lan_addresses",
    "merge",
    "stable_id",
]
