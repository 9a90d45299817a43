"""``pictl render TUNE -o FILE.wav [--vcd FILE] [--volume N]``: what the pin will do, offline.

The edges come from the same wave planner the pigpio output streams (one absolute µs timeline), so
the WAV is the square wave the buzzer gets and the VCD the pin's exact edges (tick 0 = the tune's
first instant; a real DMA start adds its fixed 20 µs lead-in before it). TUNE is a file (RTTTL, beep,
MIDI; detected by ``pi_appliance.music.parse_tune``) or an inline ``rtttl:...``/``beep:...`` string.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pi_appliance.errors import ApplianceError
from pi_appliance.music import Tune, TuneError
from pi_appliance.output.waveplan import Planner
from pi_appliance.sim.record import VcdWriter, WavWriter

INLINE = ("rtttl:", "beep:")


def render_tune(
    tune: Tune,
    wav: str | Path | None,
    vcd: str | Path | None = None,
    *,
    volume: int = 100,
    gpio: int = 18,
    rate: int = 48_000,
) -> int:
    """Write the tune's pin as WAV and/or VCD; returns the number of edges."""
    wav_w = WavWriter(wav, rate=rate) if wav else None
    vcd_w = VcdWriter(vcd, [gpio]) if vcd else None
    n = 0
    try:
        for t, level in Planner(tune, gpio, volume=volume).edges():
            n += 1
            if wav_w:
                wav_w.edge(t, level)
            if vcd_w:
                vcd_w.edge(t, gpio, level)
    finally:
        end = tune.duration_us
        if wav_w:
            wav_w.close(end)
        if vcd_w:
            vcd_w.close(end)
    return n


def load_tune(arg: str) -> Tune:
    """A tune from an inline URI or a file path."""
    import pi_appliance.music as music

    data = b""
    if not arg.startswith(INLINE):
        try:
            data = Path(arg).read_bytes()
        except OSError as e:
            raise ApplianceError(f"{arg}: {e.strerror or e}") from None
    parse_tune = getattr(music, "parse_tune", None)
    if parse_tune is None:
        raise ApplianceError("this build has no tune parsers (pi_appliance.music.parse_tune)")
    try:
        if arg.startswith(INLINE):
            parse_inline = getattr(music, "parse_inline", None)
            tune = parse_inline(arg) if parse_inline is not None else None
            if tune is None:
                scheme, _, body = arg.partition(":")
                tune = parse_tune(body, scheme)
            return tune
        return parse_tune(data)
    except TuneError as e:
        raise ApplianceError(f"{'inline tune' if arg.startswith(INLINE) else arg}: {e}") from None


def render_main(argv: Sequence[str]) -> int:
    """Render TUNE to a WAV (and a VCD) exactly as the pin will play it."""
    p = argparse.ArgumentParser(prog="pictl render", description=render_main.__doc__)
    p.add_argument("tune", metavar="TUNE", help="a tune file (RTTTL, beep, MIDI) or an inline rtttl:... string")
    p.add_argument("-o", "--output", metavar="FILE.wav", required=True, help="the WAV to write")
    p.add_argument("--vcd", metavar="FILE", help="also write the pin's edges as a VCD (PulseView, GTKWave)")
    p.add_argument("--volume", metavar="N", type=int, default=100, help="0..100 (the duty cycle; default 100)")
    p.add_argument("--rate", metavar="HZ", type=int, default=48_000, help="WAV sample rate (default 48000)")
    try:
        args = p.parse_args(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    if not 0 <= args.volume <= 100:
        print("pictl render: --volume must be 0..100", file=sys.stderr)
        return 2
    try:
        tune = load_tune(args.tune)
        edges = render_tune(tune, args.output, args.vcd, volume=args.volume, rate=args.rate)
    except (ApplianceError, TuneError) as e:
        print(f"pictl render: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"pictl render: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"{args.output}: {tune.duration_us / 1e6:.3f} s, {edges} edges" + (f"; {args.vcd}" if args.vcd else ""))
    return 0
