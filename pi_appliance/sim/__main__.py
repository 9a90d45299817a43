"""``pi-appliance-sim``: run the pigpiod-compatible simulator on a TCP port until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from pi_appliance.sim.server import SimServer


def _gpios(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="pi-appliance-sim",
        description="A pigpiod-compatible simulator: the pigpio module and pigs work against it unchanged.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("-p", "--port", type=int, default=8888, help="TCP port (pigpiod's -p; default 8888, 0 = any)")
    p.add_argument("--virtual", action="store_true", help="virtual clock: moves on each wave_tx_at/busy poll")
    p.add_argument("--poll-step-us", type=int, default=10_000, help="virtual clock step per poll (default 10000)")
    p.add_argument("-x", "--permit", type=lambda s: int(s, 0), help="permitted gpio mask (pigpiod's -x)")
    p.add_argument("--gpios", type=_gpios, default=None, help="gpios to record, e.g. 18 or 2-27 (default 0-27)")
    p.add_argument("--vcd", default="", help="write edges as VCD (PulseView, GTKWave)")
    p.add_argument("--wav", default="", help="write the first recorded gpio as a WAV")
    p.add_argument("--trace", default="", help="write edges and finished waves as JSON lines")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        server = SimServer(
            args.host,
            args.port,
            realtime=not args.virtual,
            poll_step_us=args.poll_step_us,
            gpios=args.gpios,
            record_vcd=args.vcd,
            record_wav=args.wav,
            record_jsonl=args.trace,
            keep_edges=0,
            permitted=args.permit,
        )
    except OSError as e:
        print(f"pi-appliance-sim: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    server.start()
    print(f"pi-appliance-sim listening on {server.host}:{server.port}", flush=True)
    done.wait()
    server.stop()
    if server.sim.faults:
        for f in server.sim.faults:
            print(f"pi-appliance-sim: fault: {f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
