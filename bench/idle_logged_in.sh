#!/usr/bin/env bash
# bench/idle_logged_in.sh BIN LABEL: 10,000 idle native connections, each logged into its own
# account, on a server that already holds the 10,000 accounts (read at start), against the
# same server's start: the server's RSS growth per logged-in connection. Also how much the
# accounts themselves cost at start (the cache of reserved names and their lookalike index)
# against a server on an empty store.
#
# The accounts are made quickly: one is created through the server (one Argon2id hash), and
# its row is copied with the other 9,999 names, so each has the same password (and salt; the
# server verifies every LOGIN with a full hash all the same).
set -euo pipefail
BIN=$1; LABEL=$2; PORT=${PORT:-18796}; N=${N:-10000}
BENCH="$(dirname "$0")/../target/release/natter-bench"
TMP=$(mktemp -d /tmp/natter-li.XXXXXX)
trap 'kill "$S" 2>/dev/null || true; rm -rf "$TMP"' EXIT
ulimit -n "$(ulimit -Hn)"
start() { # start DB: a server on that store, its pid in S, once it listens
    "$BIN" 127.0.0.1 "$PORT" --store "sqlite:$1" --exempt-loopback --flood-control false \
        --shutdown-grace-secs 1 > "$TMP/log" 2>&1 &
    S=$!
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    sleep 2 # let the start settle (threads, the allocator's first arenas) before RSS is read
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
stop() { kill "$S"; wait "$S" 2>/dev/null || true; }

start "$TMP/empty.db"; EMPTY=$(rss "$S"); stop
start "$TMP/natter.db"
"$BENCH" connect -c 2 --prefix idl --accounts create --parallel 1 -t "127.0.0.1:$PORT" >/dev/null 2>&1
stop
python3 - "$TMP/natter.db" "$N" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
(h, created) = db.execute("SELECT hash, created FROM accounts WHERE key = 'idl0'").fetchone()
db.executemany("INSERT OR IGNORE INTO accounts (key, name, hash, created) VALUES (?, ?, ?, ?)",
               ((f"idl{i}", f"idl{i}", h, created) for i in range(int(sys.argv[2]))))
db.commit()
EOF
start "$TMP/natter.db"; LOADED=$(rss "$S")
echo "$LABEL start RSS: empty store $EMPTY KiB, $N accounts $LOADED KiB =" \
    "$(( (LOADED - EMPTY) * 1024 / N )) bytes per account"
"$BENCH" connect -c "$N" --prefix idl --accounts login --parallel 64 --settle 2 \
    --connect-timeout 1800 -t "127.0.0.1:$PORT" --label "$LABEL" --server-pid "$S" 2>&1 >/dev/null |
    sed "s/^/$LABEL /"
