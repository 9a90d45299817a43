"""``pi-appliance``: the daemon. Wiring only: config → output → player → servers.

Floors, top to bottom: daemon → mpd, knock, discovery → player → output, library → music.
Each part is started by one call here and stopped in reverse order; nothing below imports this.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pi_appliance import __version__, config
from pi_appliance.errors import ApplianceError

log = logging.getLogger("pi_appliance")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pi-appliance",
        description="Play tunes on a GPIO piezo buzzer with DMA timing, driven over the MPD protocol.",
    )
    p.add_argument("--config", metavar="FILE", help=f"TOML configuration (default {config.DEFAULT_CONFIG})")
    p.add_argument("--bind", metavar="ADDR", action="append", help="address for the MPD socket (repeatable)")
    p.add_argument("--port", metavar="N", type=int, help="MPD TCP port (default 6600)")
    p.add_argument("--state-dir", metavar="DIR", help=f"queue, playlists, tunes (default {config.DEFAULT_STATE_DIR})")
    p.add_argument("--output", choices=["auto", "pigpio", "gpiozero", "sim"], help="the buzzer output")
    p.add_argument("--record-wav", metavar="FILE", help="simulator: write what the pin did as a WAV")
    p.add_argument("--record-vcd", metavar="FILE", help="simulator: write what the pin did as a VCD")
    p.add_argument("--no-mdns", action="store_true", help="do not advertise over mDNS")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--check-config", action="store_true", help="load the configuration, print it, exit")
    p.add_argument("--version", action="version", version=f"pi-appliance {__version__}")
    return p.parse_args(argv)


def load_settings(args: argparse.Namespace) -> config.Settings:
    settings = config.load(args.config, required=args.config is not None)
    return config.override(
        settings,
        **{
            "state_dir": args.state_dir,
            "log_level": args.log_level,
            "mpd.bind": args.bind,
            "mpd.port": args.port,
            "output.kind": args.output,
            "output.record_wav": args.record_wav,
            "output.record_vcd": args.record_vcd,
            "discovery.enabled": False if args.no_mdns else None,
        },
    )


async def run(settings: config.Settings) -> int:
    """Start every part, wait for SIGTERM/SIGINT, stop them in reverse order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    state_dir = Path(settings.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as parts:
        # the buzzer
        from pi_appliance.output.select import open_output

        # kind sim: the in-process simulator's edges go live to <state_dir>/sim-edges.jsonl
        output = await open_output(settings.output, state_dir=state_dir)
        parts.push_async_callback(output.close)
        # tunes, the queue and its saved state
        from pi_appliance.library import Library
        from pi_appliance.player import Player
        from pi_appliance.state import StateStore

        library = Library(state_dir)
        player = Player(output, library, StateStore(state_dir))
        await player.start()
        parts.push_async_callback(player.close)
        # the MPD-protocol control socket
        from pi_appliance.mpd.app import App
        from pi_appliance.mpd.server import MpdServer

        mpd_app = App(player, library, settings.mpd, output_info=output.info)
        parts.callback(mpd_app.close)
        from pi_appliance import sdnotify

        # socket activation (systemd/pi-appliance.socket): systemd's bound sockets, else [mpd] bind/port
        mpd_server = await parts.enter_async_context(MpdServer(mpd_app, sockets=sdnotify.listen_sockets()))
        # knocks (off unless configured)
        if settings.knock.enabled:
            from pi_appliance.knock.actions import PlayerActions
            from pi_appliance.knock.service import KnockService

            knock = KnockService(settings.knock, PlayerActions(player), state_dir)
            await knock.start()  # fails closed (KnockError) on a readable key, a port it may not bind...
            parts.push_async_callback(knock.close)
        # mDNS advertisement
        if settings.discovery.enabled:
            from pi_appliance.discovery import Advertiser, advert_for

            advertiser = Advertiser(
                # the port actually bound (the configured one, or the one port 0 picked)
                advert_for(settings, port=(mpd_server.ports or [settings.mpd.port])[0], output_kind=output.info.kind),
                poll_interval=settings.discovery.poll_interval,
                interfaces=settings.discovery.interfaces or None,
            )
            try:
                await advertiser.start()
            except Exception as e:  # the appliance stays usable by address: say so, do not die
                log.error("mDNS: not advertising (%s: %s); pictl needs --host or MPD_HOST", type(e).__name__, e)
            else:
                parts.push_async_callback(advertiser.stop)
        # systemd's notify protocol
        # READY=1 only now that every socket is bound; the watchdog is fed from this event loop, so a
        # stuck loop gets the daemon restarted; STOPPING=1 first on the way out (the stack unwinds).
        port = (mpd_server.ports or [settings.mpd.port])[0]
        await parts.enter_async_context(sdnotify.lifecycle(status=f"serving MPD on port {port}"))
        await stop.wait()
    return 0


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (MPD round trips 15-30 % faster), else
    asyncio's own (None); ``PI_APPLIANCE_LOOP=asyncio`` forces asyncio's."""
    if os.environ.get("PI_APPLIANCE_LOOP", "") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(args)
    except ApplianceError as e:
        print(f"pi-appliance: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if args.check_config:
        print(settings)
        return 0
    factory = event_loop_factory()
    log.info("event loop: %s", "uvloop" if factory is not None else "asyncio")
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(run(settings))
    except ApplianceError as e:
        log.error("%s", e)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
