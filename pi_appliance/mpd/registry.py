"""The command table (MPD ``command/AllCommands.cxx``; mopidy-mpd's ``@commands.add``).

Each command has a name, a permission, argument converters (which fix min/max counts) and a
handler. ``commands``, ``notcommands``, the permission check and the argument-count errors all
come from this one table. Sections (one module per protocol section) fill a :class:`Section`;
:func:`build_registry` merges them explicitly, nothing registers itself by being imported.
"""

from __future__ import annotations

import enum
import inspect
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pi_appliance.mpd.errors import Ack, MpdError


class Perm(enum.IntFlag):
    """MPD's permission bits (``Permission.hxx``); ``player`` is new in 0.23, implied by control."""

    NONE = 0
    READ = 1
    ADD = 2
    CONTROL = 4
    ADMIN = 8
    PLAYER = 16


ALL_PERMS = Perm.READ | Perm.ADD | Perm.CONTROL | Perm.ADMIN | Perm.PLAYER
_PERM_NAMES = {"read": Perm.READ, "add": Perm.ADD, "control": Perm.CONTROL, "admin": Perm.ADMIN, "player": Perm.PLAYER}


def parse_permissions(text: str) -> Perm:
    """``"read,add,player"`` → bits; ``control`` implies ``player`` as in MPD 0.23. ValueError if unknown."""
    perm = Perm.NONE
    for word in text.split(","):
        word = word.strip()
        if not word:
            continue
        if word not in _PERM_NAMES:
            raise ValueError(f"unknown permission {word!r}")
        perm |= _PERM_NAMES[word]
        if word == "control":
            perm |= Perm.PLAYER
    return perm


# --- argument converters: MPD's ArgParser, with its texts ---


def _int(text: str) -> int:
    """C's strtol on the whole argument (leading space and a sign allowed, nothing after)."""
    s = text.lstrip(" \t\n\v\f\r")
    body = s[1:] if s[:1] in "+-" else s
    if not body or not body.isascii() or not body.isdigit():
        raise MpdError(Ack.ARG, f"Integer expected: {text}")
    return int(s)


INT_MAX = 2**31 - 1


def INT(text: str) -> int:  # converters read like types in the table
    value = _int(text)
    if not -INT_MAX - 1 <= value <= INT_MAX:
        raise MpdError(Ack.ARG, f"Number too large: {text}")
    return value


def UINT(text: str) -> int:
    """MPD's ParseUnsigned: a negative number wraps round, so MPD says it is too large."""
    value = _int(text)
    if value < 0 or value > 2**32 - 1:
        raise MpdError(Ack.ARG, f"Number too large: {text}")
    return value


def bounded_uint(maximum: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = UINT(text)
        if value > maximum:
            raise MpdError(Ack.ARG, f"Number too large: {text}")
        return value

    return convert


def bounded_int(minimum: int, maximum: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = _int(text)
        if not minimum <= value <= maximum:
            raise MpdError(Ack.ARG, f"Number too large: {text}")
        return value

    return convert


def BOOL(text: str) -> bool:
    s = text.lstrip(" \t\n\v\f\r")
    if s.isascii() and s.isdigit() and int(s) in (0, 1):
        return bool(int(s))
    raise MpdError(Ack.ARG, f"Boolean (0/1) expected: {text}")


_FLOAT = re.compile(r"[ \t\n\v\f\r]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def FLOAT(text: str) -> float:
    """C's strtof on the whole argument (decimal forms only: no inf, nan or hex)."""
    if not _FLOAT.fullmatch(text):
        raise MpdError(Ack.ARG, f"Float expected: {text}")
    value = float(text)
    if not math.isfinite(value):
        raise MpdError(Ack.ARG, f"Float expected: {text}")
    return value


def RANGE(text: str) -> tuple[int, int | None]:
    """``N`` (one song), ``A:B`` or ``A:`` (open end); MPD's ParseCommandArgRange."""
    start_text, colon, end_text = text.partition(":")
    if not colon:
        n = _parse_range_int(text, text)
        if n < 0:
            if n == -1:  # MPD: "-1" means everything (the deprecated spelling)
                return 0, None
            raise MpdError(Ack.ARG, f"Number is negative: {text}")
        return n, n + 1
    start = _parse_range_int(start_text, text)
    if start < 0:
        raise MpdError(Ack.ARG, f"Number is negative: {text}")
    if not end_text:
        return start, None
    end = _parse_range_int(end_text, text)
    if end < 0:
        raise MpdError(Ack.ARG, f"Number is negative: {text}")
    if end < start:
        raise MpdError(Ack.ARG, f"Malformed range: {text}")
    return start, end


def _parse_range_int(part: str, whole: str) -> int:
    s = part.lstrip(" \t\n\v\f\r")
    body = s[1:] if s[:1] in "+-" else s
    if not body or not body.isascii() or not body.isdigit():
        raise MpdError(Ack.ARG, f"Integer or range expected: {whole}")
    value = int(s)
    if value > INT_MAX:
        raise MpdError(Ack.ARG, f"Number too large: {whole}")
    return value


def STR(text: str) -> str:
    return text


# --- the table ---

Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Arg:
    convert: Callable[[str], Any] = STR
    optional: bool = False
    rest: bool = False  # takes every remaining argument (a list)
    at_least: int = 0  # for ``rest``: how many it needs


def opt(convert: Callable[[str], Any] = STR) -> Arg:
    return Arg(convert, optional=True)


def rest(convert: Callable[[str], Any] = STR, *, at_least: int = 0) -> Arg:
    """Every remaining argument, converted, as one list (at least ``at_least`` of them)."""
    return Arg(convert, optional=True, rest=True, at_least=at_least)


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    permission: Perm
    handler: Handler
    args: tuple[Arg, ...]
    min_args: int
    max_args: int  # -1: no limit
    is_async: bool
    listed: bool = True  # hidden commands still work but do not show in ``commands``

    def check(self, permission: Perm, nargs: int) -> None:
        """Permission first, then the argument count, with MPD's texts."""
        need = self.permission._value_  # plain ints: IntFlag's operators cost more than the command
        if need & int(permission) != need:
            raise MpdError(Ack.PERMISSION, f'you don\'t have permission for "{self.name}"')
        if self.min_args == self.max_args and nargs != self.max_args:
            raise MpdError(Ack.ARG, f'wrong number of arguments for "{self.name}"')
        if nargs < self.min_args:
            raise MpdError(Ack.ARG, f'too few arguments for "{self.name}"')
        if self.max_args >= 0 and nargs > self.max_args:
            raise MpdError(Ack.ARG, f'too many arguments for "{self.name}"')

    def convert(self, raw: Sequence[str]) -> list[Any]:
        out: list[Any] = []
        spec = self.args
        for i, text in enumerate(raw):
            a = spec[min(i, len(spec) - 1)]
            if a.rest:
                out.append([a.convert(t) for t in raw[i:]])
                return out
            out.append(a.convert(text))
        if spec and spec[-1].rest and len(out) == len(spec) - 1:
            out.append([])
        return out


@dataclass
class Section:
    """The commands of one protocol section, added with the :meth:`command` decorator."""

    name: str
    commands: list[Command] = field(default_factory=list)

    def command(
        self, name: str, permission: Perm, *args: Arg | Callable[[str], Any], listed: bool = True
    ) -> Callable[[Handler], Handler]:
        spec = [a if isinstance(a, Arg) else Arg(a) for a in args]
        required = sum(1 for a in spec if not a.optional) + sum(a.at_least for a in spec)
        maximum = -1 if any(a.rest for a in spec) else len(spec)

        def decorate(fn: Handler) -> Handler:
            self.commands.append(
                Command(
                    name=name,
                    permission=permission,
                    handler=fn,
                    args=tuple(spec),
                    min_args=required,
                    max_args=maximum,
                    is_async=inspect.iscoroutinefunction(fn),
                    listed=listed,
                )
            )
            return fn

        return decorate


class Registry:
    """Name → Command, sorted as MPD's table (``commands`` lists them in this order)."""

    def __init__(self, sections: Iterable[Section]) -> None:
        table: dict[str, Command] = {}
        for section in sections:
            for cmd in section.commands:
                if cmd.name in table:
                    raise ValueError(f"command {cmd.name!r} registered twice")
                table[cmd.name] = cmd
        self._table = dict(sorted(table.items()))

    def lookup(self, name: str) -> Command:
        try:
            return self._table[name]
        except KeyError:
            raise MpdError(Ack.UNKNOWN, f'unknown command "{name}"', command="") from None

    def get(self, name: str) -> Command | None:
        return self._table.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._table

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._table.values())

    def __len__(self) -> int:
        return len(self._table)

    def allowed(self, permission: Perm) -> list[str]:
        return [c.name for c in self._table.values() if c.listed and c.permission & permission == c.permission]

    def denied(self, permission: Perm) -> list[str]:
        return [c.name for c in self._table.values() if c.listed and c.permission & permission != c.permission]


def build_registry() -> Registry:
    """The server's table: every protocol section, merged."""
    from pi_appliance.mpd import connection, database, playback, queue, reflection, status, stored

    return Registry(s.SECTION for s in (connection, status, playback, queue, stored, database, reflection))


Result = Iterable[tuple[str, object]] | None
AsyncResult = Awaitable[Result]
