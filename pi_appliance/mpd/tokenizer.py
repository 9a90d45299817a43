"""MPD's request tokenizer (MPD ``util/Tokenizer.cxx``). Pure: text in, words out.

- The command word is ``[A-Za-z][A-Za-z0-9_]*`` and must be followed by whitespace or the end.
- Arguments are separated by runs of control characters and spaces (bytes 0x01-0x20).
- An unquoted argument is any run of characters above 0x20 except ``"`` and ``'``.
- A quoted argument is ``"..."``; a backslash escapes the next character, whatever it is; the
  closing quote must be followed by whitespace or the end of the line.
- At most :data:`MAX_ARGS` arguments (MPD's COMMAND_ARGV_MAX).

Errors carry MPD's texts. A bad command word is *fatal*: MPD answers it and closes the
connection (the peer does not speak the protocol); an argument error is not.
"""

from __future__ import annotations

import re

MAX_ARGS = 64  # MPD's COMMAND_ARGV_MAX: the 64th argument is refused

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_UNQUOTED = re.compile(r"[^\x00-\x20\"']+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SPACE = re.compile(r"[\x01-\x20]*")
# A line needing none of the careful work: a word and plain unquoted arguments separated by spaces.
_SIMPLE = re.compile(r"[a-z][A-Za-z0-9_]*(?: [^\x00-\x20\"']+)*")


_TRAILING = "".join(chr(c) for c in range(1, 33))


class TokenError(Exception):
    """A line MPD's tokenizer refuses; ``fatal`` errors close the connection after the ACK."""

    def __init__(self, message: str, *, fatal: bool = False, too_many: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.fatal = fatal
        self.too_many = too_many


def strip_line(line: str) -> str:
    """What MPD does to a received line: cut at a NUL (C strings), strip trailing whitespace."""
    nul = line.find("\0")
    if nul >= 0:
        line = line[:nul]
    return line.rstrip(_TRAILING)


def tokenize(line: str, max_args: int = MAX_ARGS) -> tuple[str, list[str]]:
    """Split a stripped request line into the command word and its arguments."""
    if line.isascii() and line.isidentifier() and line[0] != "_":  # a bare command word: most requests
        return line, []
    if _SIMPLE.fullmatch(line):
        words = line.split(" ")
        if len(words) - 1 >= max_args:
            raise TokenError("Too many arguments", too_many=True)
        return words[0], words[1:]
    m = _WORD.match(line)
    if m is None:
        raise TokenError("Letter expected" if line else "No command given", fatal=True)
    n = len(line)
    pos = m.end()
    if pos < n and line[pos] > " ":
        raise TokenError("Invalid word character", fatal=True)
    word = m.group()
    args: list[str] = []
    pos = _SPACE.match(line, pos).end()  # type: ignore[union-attr]
    while pos < n:
        if len(args) >= max_args:
            raise TokenError("Too many arguments", too_many=True)
        if line[pos] == '"':
            q = _QUOTED.match(line, pos)
            if q is None:
                raise TokenError("Missing closing '\"'")
            end = q.end()
            if end < n and line[end] > " ":
                raise TokenError("Space expected after closing '\"'")
            body = q.group(1)
            args.append(_ESCAPE.sub(r"\1", body) if "\\" in body else body)
        else:
            u = _UNQUOTED.match(line, pos)
            if u is None:
                raise TokenError("Invalid unquoted character")
            end = u.end()
            if end < n and line[end] > " ":
                raise TokenError("Invalid unquoted character")
            args.append(u.group())
        pos = _SPACE.match(line, end).end()  # type: ignore[union-attr]
    if len(args) >= max_args:
        raise TokenError("Too many arguments", too_many=True)
    return word, args


def quote(arg: str) -> str:
    """Quote an argument the way python-mpd2 and mpc do (for clients and tests)."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
