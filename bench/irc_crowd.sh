#!/usr/bin/env bash
# A crowd of IRC clients registering with natter's defaults (each put into the everyone
# channel, so each arrival is announced to all those before it and gets their NAMES), for one
# or more builds, alternating, each round on a fresh server and a fresh store.
#
#   bench/irc_crowd.sh BIN [BIN...]          # e.g. an earlier build, then this one
#   bench/irc_crowd.sh "BIN --flag value" BIN # a binary with flags of its own
#
# CLIENTS (10000), ROUNDS (3), PORT (7690), BENCH (target/release/natter-bench).
# Prints one JSON line per run (natter-bench's), tagged with the binary's label, and keeps
# them in bench/results/irc-crowd-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CLIENTS:=10000}" "${ROUNDS:=3}" "${PORT:=7690}" "${BENCH:=target/release/natter-bench}"
[ $# -ge 1 ] || { echo "usage: $0 BIN [BIN...]" >&2; exit 2; }
out="bench/results/irc-crowd-$(date -u +%Y%m%dT%H%MZ)"
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"
for round in $(seq 1 "$ROUNDS"); do
    for run in "$@"; do
        read -r bin flags <<<"$run"
        label="$(basename "$(dirname "$(dirname "$bin")")")-$(basename "$bin")${flags:+ $flags}"
        store="$(mktemp -d)"
        RUST_LOG=warn "$bin" 127.0.0.1 "$PORT" --flood-control false --exempt-loopback \
            --store "sqlite:$store/natter.db" --shutdown-grace-secs 1 $flags >"$out/server.log" 2>&1 &
        pid=$!
        for _ in $(seq 1 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
            sleep 0.1
        done
        "$BENCH" connect --proto irc --target "127.0.0.1:$PORT" --clients "$CLIENTS" \
            --server-pid "$pid" --label "$label round $round" --json-out "$out/runs.jsonl" |
            tail -1
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        rm -rf "$store"
    done
done
echo "results: $out/runs.jsonl"
