#!/usr/bin/env bash
# bench/history_scale.sh: the message log at scale, on SQLite and on PostgreSQL.
#
# For each store: 10 clients, every one sending to Everyone as fast as its commits allow,
# for 60 s (messages kept per second, from the server's own counter); then, on the log that
# run left (millions of messages), one client's HISTORY of the latest 100 and SEARCH for a
# word a few messages hold (a sequence number: one message per sender), each timed to its
# answer (natter-bench query), once the words of the flood are indexed (the first search
# waits for that: its time is the indexing backlog's); then the bytes the store uses per
# message.
# PostgreSQL is a throwaway server (initdb in a temporary directory, as user postgres, on a
# Unix socket). Results: one JSON line per run in bench/results/history-scale-STAMP/.
#
#   bench/history_scale.sh            # about 5 minutes
#   STORES=sqlite DURATION=20 bench/history_scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${STORES:=sqlite postgres}" "${DURATION:=60}" "${PORT:=18830}" "${C:=10}"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="bench/results/history-scale-$STAMP"
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/natter-scale.XXXXXX)
chmod 755 "$TMP"
S=
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
stop_pg() { [ -d "$TMP/pg" ] && su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $TMP/pg/data -m immediate stop" >/dev/null 2>&1 || true; }
trap 'if [ -n "$S" ]; then kill "$S" 2>/dev/null || true; fi; stop_pg; rm -rf "$TMP"' EXIT
ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p natter-server -p natter-bench
metric() { curl -s "127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
for store in $STORES; do
    if (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        echo "port $PORT is taken: stop what listens there first" >&2; exit 1
    fi
    case $store in
        sqlite) A=(--store "sqlite:$TMP/natter.db") ;;
        postgres)
            mkdir -p "$TMP/pg" && chown postgres "$TMP/pg"
            su postgres -s /bin/sh -c "$PGBIN/initdb -D $TMP/pg/data -A trust -U natter" >/dev/null
            su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $TMP/pg/data -o '-k $TMP/pg -c listen_addresses=' -l $TMP/pg/log start -w" >/dev/null
            A=(--store "postgres://natter@%2F${TMP//\//%2F}%2Fpg/postgres")
            ;;
    esac
    target/release/natter-server 127.0.0.1 "$PORT" "${A[@]}" --exempt-loopback \
        --flood-control false --shutdown-grace-secs 1 > "$TMP/$store.log" 2>&1 &
    S=$!
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    k0=$(metric natter_history_kept_total); t0=$(date +%s.%N)
    target/release/natter-bench --json-out "$OUT/runs.jsonl" fanout -c "$C" --senders "$C" \
        --window 256 --warmup 1 --duration "$DURATION" -t "127.0.0.1:$PORT" \
        --label "$store" --scenario store --server-pid "$S" 2>&1 >/dev/null | sed -n '1,2p'
    k1=$(metric natter_history_kept_total); t1=$(date +%s.%N)
    kept=$((k1 - k0))
    echo "$store kept $kept messages in $(echo "$t1 - $t0" | bc) s: $(echo "$kept / ($t1 - $t0)" | bc) per second; waits $(metric natter_history_waits_total), failed $(metric natter_history_failed_total), commits $(metric natter_store_commits_total)"
    t2=$(date +%s.%N)
    target/release/natter-bench query -t "127.0.0.1:$PORT" --ask "SEARCH backlog" -n 1 \
        --warmup 0 --timeout 1800 --name "indexer$RANDOM" > /dev/null 2>&1
    echo "$store the first search, behind the flood's indexing: $(echo "$(date +%s.%N) - $t2" | bc) s"
    for ask in "HISTORY * 100" "SEARCH {n}"; do
        target/release/natter-bench --json-out "$OUT/runs.jsonl" query -t "127.0.0.1:$PORT" \
            --label "$store" --scenario "$ask" --ask "$ask" --spread 100000 -n 2000 \
            --name "asker$RANDOM" 2>&1 >/dev/null | sed "s/^/$store /"
    done
    if ! kill "$S" 2>/dev/null; then
        echo "$store: the server had stopped; its log:"; tail -20 "$TMP/$store.log"
    fi
    wait "$S" 2>/dev/null || true; S=
    cp "$TMP/$store.log" "$OUT/server-$store.log"
    case $store in
        sqlite)
            bytes=$(du -cb "$TMP"/natter.db* | tail -1 | cut -f1)
            rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from messages').fetchone()[0])" "$TMP/natter.db")
            ;;
        postgres)
            q() { su postgres -s /bin/sh -c "$PGBIN/../bin/psql -h $TMP/pg -U natter -d postgres -Atc \"$1\""; }
            bytes=$(q "select pg_database_size('postgres')")
            rows=$(q "select count(*) from messages")
            stop_pg
            ;;
    esac
    echo "$store disk: $bytes bytes for $rows messages: $((bytes / rows)) bytes per message"
done | tee "$OUT/summary.txt"
