"""Which appliance(s) a pictl command talks to: ``--host``/``MPD_HOST``, mDNS names, groups, ``--all``.

A :class:`Target` is an address to connect to; :func:`resolve_one` and :func:`resolve_many` turn what
the user typed (or did not type) into targets, browsing mDNS only when needed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pi_appliance.errors import ApplianceError

if TYPE_CHECKING:  # zeroconf is imported only when pictl has to browse (it costs ~0.2 s at start)
    from pi_appliance.discovery import Appliance

DEFAULT_PORT = 6600


class TargetError(ApplianceError):
    """No appliance, several where one was needed, an unknown name or group."""


@dataclass(frozen=True)
class Target:
    host: str  # an address, a DNS name, or a Unix socket path ("/..." or "@abstract")
    port: int = DEFAULT_PORT
    password: str | None = None
    label: str = ""  # what to call it in messages (the mDNS instance name when found that way)

    @property
    def name(self) -> str:
        return self.label or self.endpoint

    @property
    def endpoint(self) -> str:
        if self.host.startswith(("/", "@")):
            return self.host
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}"


@dataclass(frozen=True)
class Browsing:
    """How to browse: how long, and on which interfaces (``PICTL_MDNS_INTERFACES=127.0.0.1`` in tests)."""

    timeout: float = 3.0
    settle: float = 0.4
    interfaces: str | None = None

    def find(self, *, first: bool = False, include_mpd: bool = False) -> list[Appliance]:
        from pi_appliance import discovery

        return asyncio.run(
            discovery.browse(
                timeout=self.timeout,
                settle=self.settle,
                first=first,
                include_mpd=include_mpd,
                interfaces=discovery.browse_interfaces(self.interfaces),
            )
        )


def split_password(spec: str) -> tuple[str | None, str]:
    """``password@host`` -> (password, host), as mpc reads MPD_HOST.

    A leading ``@`` is an abstract socket, not a password; an mDNS instance name such as
    ``Buzzer @ pi-01`` has a space before its ``@`` and is kept whole.
    """
    at = spec.find("@")
    if at <= 0:
        return None, spec
    before = spec[:at]
    if any(c.isspace() for c in before):
        return None, spec
    return before, spec[at + 1 :]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return True


def from_appliance(app: Appliance, password: str | None = None) -> Target:
    return Target(app.address, app.port, password, app.name)


def lookup(name: str, port: int | None, password: str | None, browsing: Browsing) -> Target:
    """One host spec -> a Target: a socket path, an address, a DNS name, or an appliance's mDNS name."""
    host, _, maybe_port = name.rpartition(":") if name.count(":") == 1 and not name.startswith("/") else ("", "", "")
    if host and maybe_port.isdigit():
        name, port = host, int(maybe_port)
    if name.startswith(("/", "@")) or _is_ip(name):
        return Target(name, port or DEFAULT_PORT, password)
    mdns_looking = name.lower().rstrip(".").endswith(".local") or any(c.isspace() for c in name)
    if not mdns_looking and _resolves(name):
        return Target(name, port or DEFAULT_PORT, password)
    apps = [a for a in browsing.find(include_mpd=True) if a.matches(name)]
    if not apps:
        raise TargetError(f"no appliance called {name!r} answered on the LAN (try: pictl ls)")
    if len(apps) > 1:
        listing = "; ".join(f"{a.name} ({a.address}:{a.port})" for a in apps)
        raise TargetError(f"{name!r} matches several appliances: {listing}")
    t = from_appliance(apps[0], password)
    return Target(t.host, port or t.port, password, t.label)


def choose(apps: Sequence[Appliance], ask: Callable[[str], str] | None) -> Appliance:
    """Several appliances and no host given: ask which (numbered list), or fail listing them."""
    lines = [f"{i}) {a.name}  {a.address}:{a.port}" for i, a in enumerate(apps, 1)]
    if ask is None:
        raise TargetError("several appliances on the LAN, pick one with --host NAME (or --all): " + "; ".join(lines))
    print("Several appliances answered:", *lines, sep="\n", file=sys.stderr)
    reply = ask(f"Which one [1-{len(apps)}]? ").strip()
    try:
        idx = int(reply)
    except ValueError:
        matching = [a for a in apps if a.matches(reply)]
        if len(matching) == 1:
            return matching[0]
        raise TargetError(f"no appliance {reply!r} in the list") from None
    if not 1 <= idx <= len(apps):
        raise TargetError(f"no appliance {idx} in the list")
    return apps[idx - 1]


def _interactive_ask() -> Callable[[str], str] | None:
    if not sys.stdin.isatty():
        return None

    def ask(prompt: str) -> str:
        print(prompt, end="", file=sys.stderr, flush=True)
        return sys.stdin.readline()

    return ask


def resolve_one(
    host: str | None,
    port: int | None,
    browsing: Browsing,
    env: dict[str, str] | None = None,
    ask: Callable[[str], str] | bool | None = True,
) -> Target:
    """``--host``, else ``MPD_HOST``, else the one appliance on the LAN (asking when several)."""
    env = dict(os.environ) if env is None else env
    if port is None and env.get("MPD_PORT"):
        try:
            port = int(env["MPD_PORT"])
        except ValueError:
            raise TargetError(f"MPD_PORT is not a number: {env['MPD_PORT']!r}") from None
    spec = host if host is not None else env.get("MPD_HOST")
    if spec:
        password, name = split_password(spec)
        return lookup(name, port, password, browsing)
    apps = browsing.find(include_mpd=False)
    if not apps:
        raise TargetError("no appliance found on the LAN (give --host, or set MPD_HOST)")
    app = apps[0] if len(apps) == 1 else choose(apps, _interactive_ask() if ask is True else ask or None)
    t = from_appliance(app)
    return Target(t.host, port or t.port, None, t.label)


# ------------------------------------------------------------------------------------------- groups


def config_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get("PICTL_CONFIG"):
        return Path(env["PICTL_CONFIG"])
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "pictl" / "config.toml"


def load_groups(path: Path) -> dict[str, list[str]]:
    """``[groups]`` of pictl's config: ``lab = ["pi-01", "10.0.0.7:6600", "Buzzer @ pi-03"]``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise TargetError(f"{path}: {e}") from None
    groups = data.get("groups", {})
    if not isinstance(groups, dict):
        raise TargetError(f"{path}: groups: expected a table")
    out: dict[str, list[str]] = {}
    for name, members in groups.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise TargetError(f"{path}: groups.{name}: expected a list of host names")
        out[name] = members
    return out


def resolve_many(
    *,
    all_: bool,
    group: str | None,
    browsing: Browsing,
    password: str | None = None,
    env: dict[str, str] | None = None,
) -> list[Target]:
    """Targets for ``--all`` (every appliance found) or ``--group NAME`` (TXT ``groups`` and config)."""
    apps = browsing.find(include_mpd=False)
    if all_:
        if not apps:
            raise TargetError("no appliance found on the LAN")
        return [from_appliance(a, password) for a in apps]
    assert group is not None
    path = config_path(env)
    configured = load_groups(path).get(group, [])
    targets = [from_appliance(a, password) for a in apps if group in a.groups]
    for spec in configured:
        pw, name = split_password(spec)
        matched = [a for a in apps if a.matches(name)]
        t = from_appliance(matched[0], pw or password) if matched else lookup(name, None, pw or password, browsing)
        if all(t.endpoint != x.endpoint for x in targets):
            targets.append(t)
    if not targets:
        raise TargetError(f"group {group!r}: no appliance announces it and {path} does not list it")
    return targets
