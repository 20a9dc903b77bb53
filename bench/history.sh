#!/usr/bin/env bash
# bench/history.sh: what keeping history costs fan-out. The same release build three ways,
# interleaved, ROUNDS times: history on a SQLite file (the default), history on the memory
# store, and history off. Fan-out with C clients and 10 senders, each sender with a window of
# 16 messages: a sender's OK now waits for its message's commit, so the commit's latency is
# on the senders' path. Results: one JSON line per run in bench/results/history-STAMP/.
#
#   bench/history.sh                  # C=100, ROUNDS=3: about 5 minutes
#   C=1000 bench/history.sh
#   C=100 SENDERS=100 RATE=10 MODES="sqlite off" DURATION=20 bench/history.sh   # light load
set -euo pipefail
cd "$(dirname "$0")/.."
: "${C:=100}" "${ROUNDS:=3}" "${PORT:=18810}" "${DURATION:=5}" "${SENDERS:=10}" "${WINDOW:=16}"
: "${MODES:=sqlite memory off}" "${RATE:=}"
PACE=()
if [ -n "$RATE" ]; then PACE=(--rate "$RATE"); fi
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="bench/results/history-$STAMP"
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/natter-history.XXXXXX)
S=
trap 'if [ -n "$S" ]; then kill "$S" 2>/dev/null || true; fi; rm -rf "$TMP"' EXIT
ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p natter-server -p natter-bench
for r in $(seq "$ROUNDS"); do
    for mode in $MODES; do
        rm -rf "${TMP:?}/$mode"; mkdir -p "$TMP/$mode"
        case $mode in
            sqlite) A=(--store "sqlite:$TMP/$mode/natter.db") ;;
            memory) A=(--store memory) ;;
            off) A=(--store "sqlite:$TMP/$mode/natter.db" --history false) ;;
        esac
        target/release/natter-server 127.0.0.1 "$PORT" "${A[@]}" --exempt-loopback \
            --flood-control false --shutdown-grace-secs 1 > "$TMP/$mode/log" 2>&1 &
        S=$!
        for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
        target/release/natter-bench --json-out "$OUT/runs.jsonl" fanout -c "$C" --senders "$SENDERS" \
            --window "$WINDOW" "${PACE[@]}" --warmup 1 --duration "$DURATION" -t "127.0.0.1:$PORT" \
            --label "$mode" --server-pid "$S" 2>&1 >/dev/null | sed -n "1,2s/^/round $r /p"
        echo "round $r $mode $(curl -s "127.0.0.1:$PORT/metrics" | grep -E '^natter_(history_kept|history_waits|store_commits)' | tr '\n' ' ')"
        kill "$S"; wait "$S" 2>/dev/null || true
    done
done | tee "$OUT/summary.txt"
