#!/usr/bin/env bash
# bench/idle_guests.sh BIN LABEL: 10,000 idle native guests on a fresh server (its own port and
# store), the server's RSS growth per connection; for comparing two builds side by side.
# ACCOUNTS=create: each makes its name an account as it connects (logged in when measured;
# one Argon2id hash each, so about ten minutes on two cores).
set -euo pipefail
BIN=$1; LABEL=$2; PORT=${PORT:-18795}
TMP=$(mktemp -d /tmp/natter-g.XXXXXX)
ulimit -n "$(ulimit -Hn)"
EXTRA=()
if "$BIN" --help 2>&1 | grep -q -- '--store'; then EXTRA=(--store "sqlite:$TMP/natter.db"); fi
"$BIN" 127.0.0.1 "$PORT" "${EXTRA[@]}" --exempt-loopback --flood-control false --shutdown-grace-secs 1 > "$TMP/log" 2>&1 &
S=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
MODE=()
if [ -n "${ACCOUNTS:-}" ]; then MODE=(--accounts "$ACCOUNTS" --connect-timeout 1800); fi
"$(dirname "$0")/../target/release/natter-bench" connect -c 10000 --prefix g --parallel 64 --settle 2 "${MODE[@]}" -t "127.0.0.1:$PORT" --label "$LABEL" --server-pid "$S" 2>&1 >/dev/null | sed "s/^/$LABEL /"
kill $S; wait $S 2>/dev/null || true; rm -rf "$TMP"
