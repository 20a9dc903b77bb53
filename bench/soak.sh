#!/usr/bin/env bash
# The long soak: natter-server under mixed load (broadcasts, DMs, clients arriving,
# registering and leaving) for DURATION seconds, sampling the server's RSS and latency every
# INTERVAL seconds; writes bench/results/soak-<UTC time>/{soak.jsonl,soak.png,machine.txt}.
#
#   bench/soak.sh                     # 30 minutes
#   DURATION=120 bench/soak.sh        # a short one
#
# Loopback only; the server runs with flood control off and loopback exempt from the
# per-address limits, as in compare.sh, because one load generator stands for many users.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DURATION:=1800}" "${INTERVAL:=5}" "${CLIENTS:=200}" "${SENDERS:=5}" "${PAIRS:=20}"
: "${RATE:=20}" "${CHURN:=20}" "${CHURN_LIFE:=2}" "${PORT:=18290}"

command -v gnuplot >/dev/null || { apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; }
cargo build --release --locked -p natter-server -p natter-bench
out="bench/results/soak-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc: $(nproc)"
    echo "memory: $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "kernel: $(uname -r)"
    echo "natter: $(git rev-parse --short HEAD)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "settings: DURATION=$DURATION INTERVAL=$INTERVAL CLIENTS=$CLIENTS SENDERS=$SENDERS PAIRS=$PAIRS RATE=$RATE CHURN=$CHURN CHURN_LIFE=$CHURN_LIFE"
} >"$out/machine.txt"

RUST_LOG=warn target/release/natter-server 127.0.0.1 "$PORT" \
    --flood-control false --exempt-loopback &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
# The server is ready once it accepts a connection.
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    sleep 0.1
done

target/release/natter-bench soak --target 127.0.0.1:"$PORT" --server-pid "$server" \
    --label natter --scenario soak --duration "$DURATION" --interval "$INTERVAL" \
    --clients "$CLIENTS" --senders "$SENDERS" --pairs "$PAIRS" --rate "$RATE" \
    --churn "$CHURN" --churn-life "$CHURN_LIFE" --json-out "$out/soak.jsonl" | tee "$out/summary.txt"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"

python3 - "$out" <<'PY'
import json, subprocess, sys
out = sys.argv[1]
run = json.loads(open(f"{out}/soak.jsonl").readline())
with open(f"{out}/soak.dat", "w") as f:
    for s in run["results"]["series"]:
        f.write(f'{s["t_s"] / 60:.2f} {s["rss_kib"] / 1024:.2f} {s["latency"]["p99_us"] / 1000:.2f} {s["connections"]}\n')
subprocess.run(["gnuplot"], text=True, check=True, input=f"""
set terminal pngcairo size 1200,480 font "sans,11"
set output "{out}/soak.png"
set xlabel "minutes"
set ylabel "server RSS (MiB)"
set y2label "p99 latency (ms)"
set yrange [0:*]
set y2range [0:*]
set ytics nomirror
set y2tics
set key top left
set title "natter-server soak: RSS and p99 latency per sample"
plot "{out}/soak.dat" using 1:2 with lines lw 2 title "RSS (MiB)", \\
     "{out}/soak.dat" using 1:3 axes x1y2 with lines title "p99 latency (ms)"
""")
print(f"wrote {out}/soak.png")
PY
