"""One client connection: the session rules of MPD's ``client/Process.cxx``.

The greeting; a line whose first byte is not ``a``-``z`` closes the connection; command lists
(``list_OK`` per command in ``_ok_`` mode, stop at the first ACK, byte budget); idle/noidle
(events kept per connection, a stray ``noidle`` answers nothing, any other command while idling
closes); the input line limit and the output buffer limit (both close silently, as MPD does).

Transport-free: :meth:`Session.run` reads from anything with ``async read(n)`` and writes to
anything with ``write(bytes)``/``close()``, so tests drive it over an in-memory stream.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from pi_appliance.mpd.errors import Ack, MpdError, to_ack
from pi_appliance.mpd.registry import ALL_PERMS, Perm
from pi_appliance.mpd.tokenizer import TokenError, strip_line, tokenize

if TYPE_CHECKING:
    from pi_appliance.mpd.app import App

log = logging.getLogger(__name__)

GREETING = b"OK MPD 0.23.5\n"
INPUT_BUFFER = 8192  # MPD's BufferedSocket: a line may be at most 8191 bytes plus "\n"
DEFAULT_BINARY_LIMIT = 8192

#: Idle subsystems in the order MPD lists them in an idle reply (``IdleFlags.cxx``).
IDLE_NAMES = (
    "database",
    "stored_playlist",
    "playlist",
    "player",
    "mixer",
    "output",
    "options",
    "sticker",
    "update",
    "subscription",
    "message",
    "neighbor",
    "mount",
    "partition",
)
IDLE_BITS = {name: 1 << i for i, name in enumerate(IDLE_NAMES)}
ALL_IDLE = (1 << len(IDLE_NAMES)) - 1


class Reader(Protocol):
    async def read(self, n: int) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class Outcome(enum.Enum):
    OK = 0
    ERROR = 1
    IDLE = 2
    CLOSE = 3


class Idle:
    """Returned by the ``idle`` handler: the session enters idle with this subscription mask."""

    __slots__ = ("mask",)

    def __init__(self, mask: int) -> None:
        self.mask = mask


class Close(Exception):  # a control-flow signal, not an error
    """Raised by ``close``: end the connection without a reply."""


class Session:
    """The state of one connection (permissions, tag mask, idle, command list)."""

    def __init__(self, app: App, writer: Writer, *, local: bool = False, peer: str = "") -> None:
        self.app = app
        self.player = app.player
        self.library = app.library
        self.writer = writer
        self.peer = peer
        self.local = local
        self.permission: Perm = app.local_permission if local else app.default_permission
        self.tag_mask: frozenset[str] = app.all_tags
        self.binary_limit = DEFAULT_BINARY_LIMIT
        # idle
        self.idle_flags = 0
        self.idle_subscriptions = 0
        self.idle_waiting = False
        # command list
        self._list: list[str] | None = None
        self._list_ok = False
        self._list_size = 0
        # output is gathered here while a line is processed and written when it is done
        self._out: list[str] = []
        self._busy = False
        self._buf = b""  # received, not yet a whole line
        self._pending = _buffered_getter(writer)  # bytes written, not yet sent
        self.closed = False
        self.lines = 0  # request lines received (tests, logs)
        self.last_activity = time.monotonic()

    # --- output ---

    def _flush(self) -> None:
        if not self._out or self.closed:
            self._out.clear()
            return
        out = self._out
        data = (out[0] if len(out) == 1 else "".join(out)).encode("utf-8", "surrogateescape")
        out.clear()
        limit = self.app.settings.max_output_buffer_size + 16 * 1024
        if len(data) + (self._pending() if self._pending is not None else 0) > limit:
            # MPD: "Output buffer is full" → the connection is closed, nothing more is sent.
            log.warning("[%s] output buffer is full, closing", self.peer)
            self.close(discard=True)
            return
        self.writer.write(data)

    def close(self, *, reset: bool = False, discard: bool = False) -> None:
        """Close; ``reset`` drops what the peer sent and we did not read, as MPD's close does
        when its input buffer is full (the peer sees a reset, not an orderly end). ``discard``
        also drops what we wrote and the peer has not taken (MPD on a full output buffer): the
        connection ends now instead of when a peer that does not read gets round to it."""
        if not self.closed:
            self.closed = True
            self.idle_waiting = False
            if reset or discard:
                sock = getattr(self.writer, "get_extra_info", lambda _name: None)("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            abort = getattr(getattr(self.writer, "transport", self.writer), "abort", None) if discard else None
            with contextlib.suppress(Exception):  # a transport already gone
                if abort is not None:
                    abort()
                else:
                    self.writer.close()

    # --- idle ---

    def idle_add(self, bits: int) -> None:
        """An event happened (called by the app for every session, from the event loop)."""
        if self.closed:
            return
        self.idle_flags |= bits
        if self.idle_waiting and self.idle_flags & self.idle_subscriptions:
            self._idle_notify()
            if not self._busy:
                self._flush()

    def _idle_notify(self) -> None:
        flags, self.idle_flags = self.idle_flags, 0
        self.idle_waiting = False
        flags &= self.idle_subscriptions
        out = self._out
        for name, bit in IDLE_BITS.items():
            if flags & bit:
                out.append(f"changed: {name}\n")
        out.append("OK\n")
        self.last_activity = time.monotonic()

    def _idle_wait(self, mask: int) -> None:
        self.idle_waiting = True
        self.idle_subscriptions = mask
        if self.idle_flags & mask:
            self._idle_notify()

    # --- the connection loop ---

    async def run(self, reader: Reader) -> None:
        """Greet, then read lines until EOF, a limit, ``close`` or a protocol violation."""
        self.writer.write(GREETING)
        try:
            while not self.closed:
                data = await reader.read(65536)
                if not data:
                    break
                pending = self.feed(data)
                while pending is not None:
                    pending = self.resume(await pending)
        finally:
            self.close()

    def feed(self, data: bytes) -> Coroutine[Any, Any, bool] | None:
        """Process the complete lines received so far, synchronously as long as no command has to
        wait. When one does, its coroutine is returned: the caller awaits it, reads nothing more
        meanwhile, and hands its result to :meth:`resume`, which goes on with the lines after it."""
        self.last_activity = time.monotonic()
        self._buf = self._buf + data if self._buf else data
        return self._drain()

    def resume(self, keep: bool) -> Coroutine[Any, Any, bool] | None:
        """The line that had to wait is done (``keep``: False closes); go on with the next ones."""
        if not keep:
            self._flush()
            self.close()
            self._busy = False
            return None
        self._flush()
        return self._drain()

    def _drain(self) -> Coroutine[Any, Any, bool] | None:
        buf = self._buf
        start = 0
        self._busy = True
        try:
            while not self.closed:
                nl = buf.find(b"\n", start)
                if nl < 0:
                    break
                if nl - start >= INPUT_BUFFER:
                    log.warning("[%s] input buffer is full, closing", self.peer)
                    self._flush()
                    self.close(reset=True)
                    break
                line = buf[start:nl]
                start = nl + 1
                keep = self._line(line)
                if keep is True:
                    self._flush()
                elif keep is False:
                    self._flush()
                    self.close()
                    break
                else:  # a command that waits: the rest of the buffer waits for it
                    self._buf = buf[start:]
                    start = -1
                    return keep
        finally:
            if start >= 0:
                self._busy = False
                self._flush()
        buf = self._buf = buf[start:]
        if len(buf) >= INPUT_BUFFER and not self.closed:
            log.warning("[%s] input buffer is full, closing", self.peer)
            self.close(reset=True)
        return None

    async def line(self, raw: bytes) -> bool:
        """Process one request line (without its "\\n"); False closes the connection."""
        keep = self._line(raw)
        if keep is True or keep is False:
            return keep
        return await keep

    def _line(self, raw: bytes) -> bool | Coroutine[Any, Any, bool]:
        """:meth:`line`, done here and now unless a command has to wait (then: its coroutine)."""
        self.lines += 1
        text = raw.decode("utf-8", "surrogateescape")
        if not text or text[-1] <= " " or "\0" in text:  # most lines need no stripping
            text = strip_line(text)
        if not text or not "a" <= text[0] <= "z":
            # Not the MPD protocol (an HTTP request, a blank line): MPD closes without a word.
            return False
        if text == "noidle":
            if self.idle_waiting:
                self.idle_waiting = False
                self._out.append("OK\n")
            return True  # not idling: the idle reply already went out; nothing at all
        if self.idle_waiting:
            return False  # anything but noidle while idling closes the connection
        if self._list is not None:
            if text == "command_list_end":
                commands, ok_mode = self._list, self._list_ok
                self._list = None
                return self._run_list(commands, ok_mode, 0)
            self._list_size += len(text) + 1
            if self._list_size > self.app.settings.max_command_list_size:
                log.warning("[%s] command list is larger than the maximum, closing", self.peer)
                return False
            self._list.append(text)
            return True
        if text == "command_list_begin" or text == "command_list_ok_begin":
            self._list = []
            self._list_ok = text == "command_list_ok_begin"
            self._list_size = 0
            return True
        outcome = self._execute(text, 0)
        if outcome is None:
            return self._line_async(text)
        if outcome is Outcome.OK:
            self._out.append("OK\n")
        return outcome is not Outcome.CLOSE

    async def _line_async(self, text: str) -> bool:
        outcome = await self.execute(text, 0)
        if outcome is Outcome.OK:
            self._out.append("OK\n")
        return outcome is not Outcome.CLOSE

    def _run_list(self, commands: list[str], ok_mode: bool, first: int) -> bool | Coroutine[Any, Any, bool]:
        outcome = Outcome.OK
        out = self._out
        for i in range(first, len(commands)):
            o = self._execute(commands[i], i)
            if o is None:
                return self._run_list_async(commands, ok_mode, i)
            outcome = o
            if outcome is not Outcome.OK or self.closed:
                break
            if ok_mode:
                out.append("list_OK\n")
        if outcome is Outcome.OK:
            out.append("OK\n")
        return outcome is not Outcome.CLOSE

    async def _run_list_async(self, commands: list[str], ok_mode: bool, i: int) -> bool:
        """The rest of a command list from ``i``, whose command has to wait."""
        outcome = await self.execute(commands[i], i)
        if outcome is not Outcome.OK or self.closed:
            if outcome is Outcome.OK:
                self._out.append("OK\n")
            return outcome is not Outcome.CLOSE
        if ok_mode:
            self._out.append("list_OK\n")
        rest = self._run_list(commands, ok_mode, i + 1)
        if rest is True or rest is False:
            return rest
        return await rest

    def _execute(self, text: str, index: int) -> Outcome | None:
        """:meth:`execute` for a command that does not wait; None (having done nothing) if it would."""
        try:
            name, args = tokenize(text)
        except TokenError as e:
            return self._token_error(e, index)
        cmd = self.app.registry.get(name)
        if cmd is not None and cmd.is_async:
            return None
        try:
            if cmd is None:
                cmd = self.app.registry.lookup(name)  # raises: unknown command
            cmd.check(self.permission, len(args))
            result: Any = cmd.handler(self, *cmd.convert(args)) if cmd.args else cmd.handler(self)
        except Exception as e:
            return self._error(e, text, index, name)
        return self._result(result)

    def _token_error(self, e: TokenError, index: int) -> Outcome:
        if e.too_many:
            self._out.append(f"ACK [{int(Ack.ARG)}@{index}] {{}} {e.message}\n")
            return Outcome.ERROR
        self._out.append(f"ACK [{int(Ack.UNKNOWN)}@{index}] {{}} {e.message}\n")
        return Outcome.CLOSE if e.fatal else Outcome.ERROR

    def _error(self, e: Exception, text: str, index: int, name: str) -> Outcome:
        """What a command raised: ``Close``, an ACK of its own, or any other failure as an ACK (never
        a crash)."""
        if isinstance(e, Close):
            return Outcome.CLOSE
        if isinstance(e, MpdError):
            self._out.append(e.line(index, name).decode())
            return Outcome.ERROR
        ack = to_ack(e)
        if ack.code == Ack.UNKNOWN:
            log.exception("[%s] %r failed", self.peer, text)
        self._out.append(ack.line(index, name).decode())
        return Outcome.ERROR

    def _result(self, result: Any) -> Outcome:
        if result is None:
            return Outcome.OK
        if isinstance(result, str):
            self._out.append(result)
            return Outcome.OK
        if isinstance(result, Idle):
            self._idle_wait(result.mask)
            return Outcome.IDLE
        self._out.append(format_pairs(result))
        return Outcome.OK

    async def execute(self, text: str, index: int) -> Outcome:
        """Run one command; its reply lines (or its ACK) go to the output. No final OK."""
        try:
            name, args = tokenize(text)
        except TokenError as e:
            return self._token_error(e, index)
        try:
            cmd = self.app.registry.lookup(name)
            cmd.check(self.permission, len(args))
            converted = cmd.convert(args) if cmd.args else ()
            result: Any = cmd.handler(self, *converted)
            if cmd.is_async:
                result = await result
        except Exception as e:
            return self._error(e, text, index, name)
        return self._result(result)


def format_pairs(pairs: Iterable[tuple[str, object]]) -> str:
    """``key: value`` lines, the one place replies are formatted."""
    return "".join([f"{k}: {v}\n" for k, v in pairs])


def _buffered_getter(writer: Writer) -> Callable[[], int] | None:
    """How many bytes written to ``writer`` are not yet sent (a StreamWriter's transport, or a
    transport itself); None if it cannot tell (in-memory writers)."""
    get = getattr(getattr(writer, "transport", writer), "get_write_buffer_size", None)
    if get is None:
        return None

    def pending() -> int:
        try:
            return int(get())
        except Exception:  # a closed transport
            return 0

    return pending


__all__ = ["ALL_IDLE", "ALL_PERMS", "GREETING", "IDLE_BITS", "IDLE_NAMES", "Close", "Idle", "Session"]
