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


@dataclass(frozen=True)
class KnockSettings:
    """The knock listener. Filled in by the knock work; off unless configured."""

    enabled: bool = False


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
