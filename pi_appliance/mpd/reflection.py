"""Reflection and audio outputs (MPD protocol: "Reflection", "Audio output devices")."""

from __future__ import annotations

from pi_appliance.mpd.registry import Perm, Section
from pi_appliance.mpd.session import Session

SECTION = Section("reflection")
command = SECTION.command

#: What the daemon can play: tunes in the store and inline tunes (``add "rtttl:..."``).
DECODERS = (("rtttl", ("rtttl", "rtx", "txt")), ("beep", ("beep",)))
URL_HANDLERS = ("beep:", "rtttl:")


@command("commands", Perm.NONE)
def commands(conn: Session) -> str:
    """Shows which commands the current user has access to."""
    return "".join(f"command: {name}\n" for name in conn.app.registry.allowed(conn.permission))


@command("notcommands", Perm.NONE)
def notcommands(conn: Session) -> str:
    """Shows which commands the current user does not have access to."""
    return "".join(f"command: {name}\n" for name in conn.app.registry.denied(conn.permission))


@command("decoders", Perm.READ)
def decoders(conn: Session) -> str:
    """Print a list of decoder plugins, followed by their supported suffixes and MIME types."""
    out = []
    for plugin, suffixes in DECODERS:
        out.append(f"plugin: {plugin}\n")
        out.extend(f"suffix: {s}\n" for s in suffixes)
    return "".join(out)


@command("urlhandlers", Perm.READ)
def urlhandlers(conn: Session) -> str:
    """Gets a list of available URL handlers."""
    return "".join(f"handler: {h}\n" for h in URL_HANDLERS)


@command("outputs", Perm.READ)
def outputs(conn: Session) -> str:
    """Shows information about all outputs: the one buzzer."""
    info = conn.app.output_info
    name = info.name if info is not None else "buzzer"
    plugin = info.kind if info is not None else "none"
    return f"outputid: 0\noutputname: {name}\nplugin: {plugin}\noutputenabled: 1\n"
