#!/usr/bin/env bash
# Accounts, measured: creating accounts, a storm of logins beside guests registering,
# fan-out and DMs with everyone logged in beside guests, and idle memory per logged-in
# connection. One natter-server (release) on a fresh SQLite store; natter-bench drives it.
# Each comparison runs both sides against the same server in the same run, REPEATS times,
# interleaved. Results: one JSON line per run in bench/results/accounts-STAMP/runs.jsonl.
#
#   bench/accounts.sh                 # ~10 minutes on a 2-core machine
#   IDLE_CLIENTS=2000 bench/accounts.sh
set -euo pipefail
cd "$(dirname "$0")/.."

: "${ACCOUNTS:=1000}"         # accounts for the login storm and the messaging runs
: "${IDLE_CLIENTS:=10000}"    # logged-in idle connections for the memory figure
: "${REPEATS:=3}"
: "${PORT:=18790}"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="bench/results/accounts-$STAMP"
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/natter-accounts.XXXXXX)
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$TMP"' EXIT
ulimit -n "$(ulimit -Hn)"

cargo build --release -q -p natter-server -p natter-bench
BIN=target/release
start_server() { # start_server NAME: a fresh server on a fresh store
    "$BIN/natter-server" 127.0.0.1 "$PORT" --store "sqlite:$TMP/$1.db" --exempt-loopback \
        --flood-control false --shutdown-grace-secs 1 > "$OUT/server-$1.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do
        (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
}
start_server natter

bench() { # bench LABEL ARGS...: one run, its JSON line kept, its summary shown
    local label=$1; shift
    "$BIN/natter-bench" --json-out "$OUT/runs.jsonl" "$@" -t "127.0.0.1:$PORT" --label "$label" \
        --server-pid "$SERVER" 2>&1 >/dev/null | sed "s/^/  /"
}

echo "== creating $ACCOUNTS accounts (REGISTER, then ACCOUNT CREATE: one Argon2id hash each)"
bench create connect -c "$ACCOUNTS" --prefix acc --accounts create --parallel 64 --scenario create
echo "== one login at a time: what a hash costs"
bench login-1 connect -c 50 --prefix acc --accounts login --parallel 1 --scenario login-serial
for r in $(seq "$REPEATS"); do
    echo "== round $r: $ACCOUNTS at once, logging in / registering as guests"
    bench login connect -c "$ACCOUNTS" --prefix acc --accounts login --parallel "$ACCOUNTS" --scenario storm
    bench guest connect -c "$ACCOUNTS" --prefix gst --parallel "$ACCOUNTS" --scenario storm
    echo "== round $r: fan-out, $ACCOUNTS clients, 10 senders"
    bench login fanout -c "$ACCOUNTS" --senders 10 --window 16 --warmup 1 --duration 3 \
        --prefix acc --accounts login --scenario fanout
    bench guest fanout -c "$ACCOUNTS" --senders 10 --window 16 --warmup 1 --duration 3 \
        --prefix gst --scenario fanout
    echo "== round $r: DMs, 50 pairs"
    bench login dm --pairs 50 --window 16 --warmup 1 --duration 3 --prefix acc --accounts login --scenario dm
    bench guest dm --pairs 50 --window 16 --warmup 1 --duration 3 --prefix gst --scenario dm
done
if [ "$IDLE_CLIENTS" -gt 0 ]; then
    # Guests, then the same number each making its name an account (so logged in when
    # measured), each on a server that has not yet held a crowd.
    echo "== $IDLE_CLIENTS idle connections: guests, then accounts (each made as it connects)"
    # Each on a fresh server: after a crowd, RSS falls as the allocator gives memory back,
    # and that would be measured instead.
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
    start_server idle-guests
    bench guest connect -c "$IDLE_CLIENTS" --prefix gid --parallel 64 --settle 2 --scenario idle
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
    start_server idle-accounts
    bench login connect -c "$IDLE_CLIENTS" --prefix idl --accounts create --parallel 64 \
        --connect-timeout 1200 --settle 2 --scenario idle
fi
python3 bench/accounts_table.py "$OUT/runs.jsonl" | tee "$OUT/table.md"
