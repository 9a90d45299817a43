"""Configuration: TOML (tomllib) → typed, frozen settings. Errors name the file and the key.

Each section is a dataclass; the loader checks every key against the fields, so a typo is an
error ("config.toml: mpd.prot: unknown key"), never silently ignored. Types are checked from the
annotations: ``int``, ``float``, ``bool``, ``str``, ``list[...]``, ``X | None``, nested sections and
lists of sections (``[[knock.sequence]]``). A section may validate further in ``check()``, raising
``ValueError("key: message")``, which is turned into a ConfigError naming that key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pi_appliance.errors import ConfigError

DEFAULT_CONFIG = "/etc/pi-appliance/config.toml"
DEFAULT_STATE_DIR = "/var/lib/pi-appliance"


@dataclass(frozen=True)
class MpdSettings:
    """The MPD-protocol control socket (MPD's own option names where they exist)."""

    bind: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    port: int = 6600
    socket: str = ""  # a Unix socket path, "" for none
    password: list[str] = field(default_factory=list)  # "secret@read,add,player,control,admin"
    default_permissions: str = ""  # "" = MPD's default (all, or none once a password is set)
    local_permissions: str = ""
    max_connections: int = 100
    connection_timeout: float = 60.0
    max_command_list_size: int = 2048 * 1024
    max_output_buffer_size: int = 8192 * 1024

    def check(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port: must be 0..65535")
        if self.max_connections < 1:
            raise ValueError("max_connections: must be at least 1")
        if self.connection_timeout <= 0:
            raise ValueError("connection_timeout: must be positive")


@dataclass(frozen=True)
class OutputSettings:
    """The buzzer. ``kind``: auto | pigpio | gpiozero | sim."""

    kind: str = "auto"
    gpio: int = 18
    pigpio_host: str = "localhost"
    pigpio_port: int = 8888
    gpiozero_pin_factory: str = ""  # "" = gpiozero's own choice (lgpio on a Pi 5)
    sim_port: int = 0  # the in-process simulator's TCP port; 0 picks a free one
    sim_realtime: bool = True
    record_vcd: str = ""  # simulator: write the pin's edges here (VCD)
    record_wav: str = ""  # simulator: write the square wave here (WAV)

    def check(self) -> None:
        if self.kind not in ("auto", "pigpio", "gpiozero", "sim"):
            raise ValueError(f"kind: must be auto, pigpio, gpiozero or sim, not {self.kind!r}")
        if not 0 <= self.gpio <= 53:
            raise ValueError("gpio: must be 0..53")
        if self.kind in ("auto", "pigpio", "sim") and self.gpio > 31:
            raise ValueError("gpio: pigpio waves drive gpios 0..31 only")
        if not 1 <= self.pigpio_port <= 65535:
            raise ValueError("pigpio_port: must be 1..65535")
        if not 0 <= self.sim_port <= 65535:
            raise ValueError("sim_port: must be 0..65535 (0 picks a free port)")


@dataclass(frozen=True)
class DiscoverySettings:
    """mDNS advertisement (``_mpd._tcp`` and ``_pi-appliance._tcp``). Loopback-only when MPD binds loopback only."""

    enabled: bool = True
    name: str = ""  # "" = "Buzzer @ <hostname>"
    groups: list[str] = field(default_factory=list)  # fleet groups, published in TXT (pictl --group NAME)
    poll_interval: float = 15.0  # seconds between looks at the interfaces (re-announce on a change); 0 = never
    interfaces: list[str] = field(default_factory=list)  # addresses zeroconf binds; [] = all (or 127.0.0.1)

    def check(self) -> None:
        if self.poll_interval < 0:
            raise ValueError("poll_interval: must be 0 (off) or positive")
        if len(self.name.encode()) > 63:
            raise ValueError("name: at most 63 bytes (a DNS label)")
        for g in self.groups:
            if not g or "," in g or len(g) > 63:
                raise ValueError(f"groups: {g!r} is not a group name (1-63 characters, no commas)")


_KNOCK_ACTIONS = ("play", "stop", "next", "volume", "open_pool")


def _knock_port(spec: str, key: str) -> tuple[int, str]:
    """``"7000:tcp"`` → ``(7000, "tcp")``; UDP when no protocol is given."""
    import re  # local imports keep this section one hunk of config.py

    m = re.fullmatch(r"([0-9]{1,5})(?::(tcp|udp))?", spec)
    if m is None or not 1 <= int(m.group(1)) <= 65535:
        raise ValueError(f"{key}: {spec!r} is not port[:tcp|udp] with port 1..65535")
    return int(m.group(1)), m.group(2) or "udp"


def _knock_action(action: str, arg: int) -> None:
    if action not in _KNOCK_ACTIONS:
        raise ValueError(f"action: must be one of {', '.join(_KNOCK_ACTIONS)}, not {action!r}")
    if action == "play" and arg < 1:
        raise ValueError("arg: the tune number to play (1-based, as pictl play N)")
    if action == "volume" and not 0 <= arg <= 100:
        raise ValueError("arg: volume must be 0..100")
    if action == "open_pool" and not 1 <= arg <= 3600:
        raise ValueError("arg: seconds the tick pool stays open for the knocker, 1..3600")


@dataclass(frozen=True)
class KnockSequenceSettings:
    """``[[knock.sequence]]``: a knockd-style sequence of ``port[:tcp|udp]`` (UDP when not said)."""

    name: str
    ports: list[str] = field(default_factory=list)
    timeout_ms: int = 3000  # the whole sequence, first to last knock, monotonic milliseconds
    action: str = "play"  # play | stop | next | volume | open_pool
    arg: int = 1  # tune number (1-based), volume 0..100, or seconds the pool stays open

    def check(self) -> None:
        if not self.name:
            raise ValueError("name: must not be empty")
        if not 1 <= len(self.ports) <= 16:
            raise ValueError("ports: 1..16 ports")
        parsed = [_knock_port(p, "ports") for p in self.ports]
        if any(parsed[i] == parsed[i + 1] for i in range(len(parsed) - 1)):
            raise ValueError("ports: the same port twice in a row cannot be told from a retransmit")
        if not 1 <= self.timeout_ms <= 60_000:
            raise ValueError("timeout_ms: must be 1..60000")
        _knock_action(self.action, self.arg)


@dataclass(frozen=True)
class KnockClockSequenceSettings:
    """``[[knock.clock_sequence]]``: ports derived from a shared secret and the time window (TOTP-like)."""

    name: str
    key_file: str  # 32+ random bytes, hex; mode 0600 (``pictl knock keygen FILE``)
    length: int = 3
    port_min: int = 40000
    port_max: int = 40999
    proto: str = "udp"
    window_s: int = 30
    skew_windows: int = 1  # windows either side of now that are still accepted
    timeout_ms: int = 3000
    action: str = "play"
    arg: int = 1

    def check(self) -> None:
        if not self.name:
            raise ValueError("name: must not be empty")
        if not 2 <= self.length <= 8:
            raise ValueError("length: must be 2..8")
        if not 1 <= self.port_min < self.port_max <= 65535 or self.port_max - self.port_min < 64:
            raise ValueError("port_max: port_min..port_max must be a range of at least 64 ports in 1..65535")
        if self.proto not in ("udp", "tcp"):
            raise ValueError("proto: must be udp or tcp")
        if not 5 <= self.window_s <= 3600:
            raise ValueError("window_s: must be 5..3600")
        if not 0 <= self.skew_windows <= 4:
            raise ValueError("skew_windows: must be 0..4")
        if not 1 <= self.timeout_ms <= 60_000:
            raise ValueError("timeout_ms: must be 1..60000")
        _knock_action(self.action, self.arg)


@dataclass(frozen=True)
class KnockKeySettings:
    """``[[knock.key]]``: a client key for authenticated single-packet knocks."""

    id: str
    file: str  # hex secret, mode 0600; the daemon refuses to start if others can read it

    def check(self) -> None:
        if not 1 <= len(self.id.encode()) <= 16 or not self.id.isprintable():
            raise ValueError("id: 1..16 printable bytes")


@dataclass(frozen=True)
class KnockPoolSettings:
    """``[knock.pool]``: the tick pool (tone tick, silence tick, play, clear). Off by default."""

    enabled: bool = False
    sources: list[str] = field(default_factory=list)  # networks allowed to use it, e.g. "192.168.1.0/24"
    open_by_knock: bool = False  # also require an ``open_pool`` sequence first
    tone_port: int = 1000
    silence_port: int = 1001
    play_port: int = 1002
    clear_port: int = 1003
    protocols: list[str] = field(default_factory=lambda: ["udp"])
    tick_ms: int = 100
    freq_hz: float = 880.0
    min_ticks: int = 5  # at least 5: no port scan, in any order, can fill a pool (README)
    max_ticks: int = 128
    max_play_ms: int = 10_000
    session_ms: int = 10_000  # a pool left alone this long is dropped

    def check(self) -> None:
        ports = [self.tone_port, self.silence_port, self.play_port, self.clear_port]
        if any(not 1 <= p <= 65535 for p in ports):
            raise ValueError("tone_port: pool ports must be 1..65535")
        if len(set(ports)) != 4:
            raise ValueError("play_port: tone, silence, play and clear ports must differ")
        if not self.protocols or any(p not in ("udp", "tcp") for p in self.protocols):
            raise ValueError("protocols: a list of udp and/or tcp")
        if self.enabled and not self.sources:
            raise ValueError("sources: the tick pool needs the networks it accepts (e.g. '192.168.1.0/24')")
        import ipaddress

        for i, net in enumerate(self.sources):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"sources[{i}]: {net!r} is not a network") from None
        if not 10 <= self.tick_ms <= 2000:
            raise ValueError("tick_ms: must be 10..2000")
        if not 20.0 <= self.freq_hz <= 20_000.0:
            raise ValueError("freq_hz: must be 20..20000")
        if self.min_ticks < 5:
            raise ValueError("min_ticks: must be at least 5, or a port scan could fill a pool (see README)")
        if not self.min_ticks <= self.max_ticks <= 1024:
            raise ValueError("max_ticks: must be min_ticks..1024")
        if not 100 <= self.max_play_ms <= 60_000:
            raise ValueError("max_play_ms: must be 100..60000")
        if not 100 <= self.session_ms <= 600_000:
            raise ValueError("session_ms: must be 100..600000")


@dataclass(frozen=True)
class KnockSettings:
    """The knock listener. Off unless ``enabled``; authenticated knocks are the secure default mode."""

    enabled: bool = False
    listener: str = "socket"  # socket: bound UDP sockets, unprivileged | packet: AF_PACKET + BPF, CAP_NET_RAW
    bind: list[str] = field(default_factory=lambda: ["0.0.0.0"])  # socket listener addresses
    interfaces: list[str] = field(default_factory=list)  # packet listener; [] = every interface
    auth_port: int = 62201  # authenticated single-packet knocks (UDP); 0 = off
    auth_window_s: int = 30
    key: list[KnockKeySettings] = field(default_factory=list)
    sequence: list[KnockSequenceSettings] = field(default_factory=list)
    clock_sequence: list[KnockClockSequenceSettings] = field(default_factory=list)
    pool: KnockPoolSettings = field(default_factory=KnockPoolSettings)
    guard: int = 32  # ports either side of each knock port that reset a source (tripwires)
    tolerance: int = 1  # foreign packets tolerated inside a sequence (one spoofed packet never cancels)
    max_sources: int = 1024  # per-source state entries (least recently used out)
    actions_per_source_per_min: int = 10
    actions_per_min: int = 30
    spray_sources_per_s: int = 50  # more new sources than this on plain ports: plain knocks pause
    spray_hold_ms: int = 10_000
    replay_cache_max: int = 65536
    log_lines_per_min: int = 30
    stats_interval_s: float = 60.0

    def check(self) -> None:
        if self.listener not in ("socket", "packet"):
            raise ValueError(f"listener: must be socket or packet, not {self.listener!r}")
        if not 0 <= self.auth_port <= 65535:
            raise ValueError("auth_port: must be 0..65535")
        if not 1 <= self.auth_window_s <= 30:
            raise ValueError("auth_window_s: must be 1..30")
        if self.auth_port and self.enabled and not self.key:
            raise ValueError("key: authenticated knocks need at least one [[knock.key]] (or auth_port = 0)")
        if len({k.id for k in self.key}) != len(self.key):
            raise ValueError("key: two keys with the same id")
        names = [s.name for s in self.sequence] + [s.name for s in self.clock_sequence]
        if len(set(names)) != len(names):
            raise ValueError("sequence: two sequences with the same name")
        if not 0 <= self.guard <= 256:
            raise ValueError("guard: must be 0..256")
        if not 0 <= self.tolerance <= 4 or (self.guard and self.guard <= self.tolerance):
            raise ValueError("tolerance: must be 0..4 and smaller than guard")
        for name, lo in (
            ("max_sources", 16),
            ("actions_per_source_per_min", 1),
            ("actions_per_min", 1),
            ("spray_sources_per_s", 1),
            ("replay_cache_max", 1024),
            ("log_lines_per_min", 1),
        ):
            if getattr(self, name) < lo:
                raise ValueError(f"{name}: must be at least {lo}")
        used: dict[tuple[int, str], str] = {}

        def claim(port: int, proto: str, what: str) -> None:
            other = used.get((port, proto))
            if other is not None and other != what:
                raise ValueError(f"sequence: port {port}/{proto} is used by both {other} and {what}")
            if proto == "tcp" and self.listener != "packet":
                raise ValueError(f"listener: {what} uses TCP port {port}; TCP knocks need listener = 'packet'")
            used[(port, proto)] = what

        if self.auth_port:
            claim(self.auth_port, "udp", "auth_port")
        if self.pool.enabled:
            for proto in self.pool.protocols:
                for p in (self.pool.tone_port, self.pool.silence_port, self.pool.play_port, self.pool.clear_port):
                    claim(p, proto, "pool")
        for i, seq in enumerate(self.sequence):
            parsed = [_knock_port(p, f"sequence[{i}].ports") for p in seq.ports]
            for port, proto in parsed:
                claim(port, proto, f"sequence {seq.name!r}")
            if len(parsed) > 1 and self.guard:
                gap = min(abs(a - b) for j, (a, _) in enumerate(parsed) for b, _ in parsed[j + 1 :])
                if gap < self.tolerance + 2:
                    raise ValueError(
                        f"sequence[{i}].ports: ports closer than {self.tolerance + 2} apart let a scan knock"
                    )
        if self.clock_sequence and self.listener == "socket":
            for i, cs in enumerate(self.clock_sequence):
                if cs.proto == "tcp":
                    raise ValueError(f"clock_sequence[{i}].proto: TCP knocks need listener = 'packet'")


@dataclass(frozen=True)
class Settings:
    state_dir: str = DEFAULT_STATE_DIR
    log_level: str = "info"
    mpd: MpdSettings = field(default_factory=MpdSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)
    knock: KnockSettings = field(default_factory=KnockSettings)
    source: str = "<defaults>"  # the file these came from (not a TOML key)

    def check(self) -> None:
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ValueError("log_level: must be debug, info, warning or error")


_NOT_KEYS = {"source"}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _convert(value: Any, tp: Any, path: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for a in args:
            try:
                return _convert(value, a, path, key)
            except ConfigError as e:
                errors.append(e.message)
        raise ConfigError(path, key, "; ".join(errors))
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(path, key, f"expected a list, got {type(value).__name__}")
        return [_convert(v, item_tp, path, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, key, f"expected a table, got {type(value).__name__}")
        _, vt = typing.get_args(tp)
        return {str(k): _convert(v, vt, path, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(path, key, f"expected a table, got {type(value).__name__}")
        return build_section(tp, value, path, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, key, f"expected a string, got {value!r}")
        return value
    raise ConfigError(path, key, f"unsupported setting type {_type_name(tp)}")


def build_section(cls: type, table: dict[str, Any], path: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a TOML table, naming ``path`` and the dotted key on any error."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _NOT_KEYS}
    kwargs: dict[str, Any] = {}
    for k, v in table.items():
        dotted = f"{prefix}.{k}" if prefix else k
        if k not in fields:
            raise ConfigError(path, dotted, "unknown key")
        kwargs[k] = _convert(v, hints[k], path, dotted)
    try:
        obj = cls(**kwargs)
    except TypeError as e:  # a required field missing
        raise ConfigError(path, prefix or "(top level)", str(e)) from None
    check = getattr(obj, "check", None)
    if check is not None:
        try:
            check()
        except ValueError as e:
            sub, _, msg = str(e).partition(": ")
            if not msg:
                sub, msg = "", str(e)
            dotted = ".".join(p for p in (prefix, sub) if p)
            raise ConfigError(path, dotted, msg) from None
    return obj


def load(path: str | Path | None, *, required: bool = False) -> Settings:
    """Load settings from ``path``.

    A missing default file gives the defaults; a missing named file is an error.
    """
    if path is None:
        path, required = DEFAULT_CONFIG, False
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(str(p), "", "no such file") from None
        return Settings()
    except OSError as e:
        raise ConfigError(str(p), "", e.strerror or str(e)) from None
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(str(p), "", f"not UTF-8 (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), "", f"TOML syntax: {e}") from None
    settings = build_section(Settings, table, str(p))
    return dataclasses.replace(settings, source=str(p))


def override(settings: Settings, **changes: Any) -> Settings:
    """Apply command-line overrides, dotted by section: ``override(s, **{"mpd.port": 6601})``."""
    for dotted, value in changes.items():
        if value is None:
            continue
        section, _, key = dotted.rpartition(".")
        if section:
            sub = dataclasses.replace(getattr(settings, section), **{key: value})
            settings = dataclasses.replace(settings, **{section: sub})
        else:
            settings = dataclasses.replace(settings, **{key: value})
    return settings
