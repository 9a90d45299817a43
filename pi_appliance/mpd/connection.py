"""Connection settings (MPD protocol: "Connection settings", "Client to client" aside)."""

from __future__ import annotations

from pi_appliance.mpd.errors import Ack, MpdError
from pi_appliance.mpd.registry import UINT, Perm, Section, rest
from pi_appliance.mpd.session import Close, Session

SECTION = Section("connection")
command = SECTION.command


@command("close", Perm.NONE)
def close(conn: Session) -> None:
    """Closes the connection to MPD. MPD will try to send the remaining output buffer before it
    actually closes the connection, but that cannot be guaranteed."""
    raise Close


@command("ping", Perm.NONE)
def ping(conn: Session) -> None:
    """Does nothing but return "OK"."""


@command("password", Perm.NONE, str)
def password(conn: Session, secret: str) -> None:
    """This is used for authentication with the server. PASSWORD is simply the plaintext password."""
    perm = conn.app.passwords.get(secret)
    if perm is None:
        raise MpdError(Ack.PASSWORD, "incorrect password")
    conn.permission = perm


@command("binarylimit", Perm.NONE, UINT)
def binarylimit(conn: Session, size: int) -> None:
    """Set the maximum binary response size for the current connection to the specified number of
    bytes."""
    if size < 64:
        raise MpdError(Ack.ARG, "Value too small")
    if size > conn.app.settings.max_output_buffer_size - 4096:
        raise MpdError(Ack.ARG, f"Number too large: {size}")
    conn.binary_limit = size


@command("tagtypes", Perm.NONE, rest())
def tagtypes(conn: Session, args: list[str]) -> str:
    """Shows a list of available tag types (the ones this connection has enabled). ``clear``,
    ``all``, ``enable NAME...`` and ``disable NAME...`` change the connection's mask."""
    from pi_appliance.mpd.app import TAG_BY_LOWER, TAG_TYPES

    if not args:
        return "".join(f"tagtype: {t}\n" for t in TAG_TYPES if t in conn.tag_mask)
    sub, names = args[0], args[1:]
    if sub == "clear":
        conn.tag_mask = frozenset()
        return ""
    if sub == "all":
        conn.tag_mask = conn.app.all_tags
        return ""
    if sub not in ("enable", "disable"):
        raise MpdError(Ack.ARG, "Unknown sub command")
    if not names:
        raise MpdError(Ack.ARG, "Not enough arguments")
    tags = set()
    for n in names:
        tag = TAG_BY_LOWER.get(n.lower())
        if tag is None:
            raise MpdError(Ack.ARG, "Unknown tag type")
        tags.add(tag)
    conn.tag_mask = conn.tag_mask | tags if sub == "enable" else conn.tag_mask - tags
    return ""
