#!/usr/bin/env bash
# The README's main-job command: run the daemon on the simulated buzzer, play tune 1 with pictl,
# and leave a WAV (and a VCD) of exactly what the buzzer pin did.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-venv.sh
out=${DEMO_DIR:-demo-out}
mkdir -p "$out/state"
port=${DEMO_PORT:-6600}
.venv/bin/pi-appliance --output sim --state-dir "$out/state" --bind 127.0.0.1 --port "$port" --no-mdns \
    --record-wav "$out/buzzer.wav" --record-vcd "$out/buzzer.vcd" >"$out/daemon.log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    .venv/bin/pictl --host 127.0.0.1 --port "$port" version >/dev/null 2>&1 && break
    kill -0 $daemon 2>/dev/null || { cat "$out/daemon.log" >&2; exit 1; }
    sleep 0.1
done
export MPD_HOST=127.0.0.1 MPD_PORT=$port
.venv/bin/pictl play 1 --wait
.venv/bin/pictl status
kill $daemon; wait $daemon || true
trap - EXIT
echo "the buzzer played: $out/buzzer.wav (listen) and $out/buzzer.vcd (PulseView, GTKWave)"
