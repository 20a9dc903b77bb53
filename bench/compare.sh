#!/usr/bin/env bash
# natter side by side with Debian's IRC servers (ngIRCd, InspIRCd, ircd-hybrid): the same
# natter-bench workloads against each, interleaved and repeated, then one table of medians
# and ratios (bench/table.py) and a plot (bench/plot.py). Everything listens on 127.0.0.1 only.
#
#   bench/compare.sh                       # install, build, run, print the table
#   REPEATS=5 DURATION=10 bench/compare.sh # a longer run on a quiet machine
#
# Must run as root (apt-get, useradd, a private mount namespace for ircd-hybrid); the servers
# themselves run as the unprivileged user $BENCH_USER. Every knob below is an environment
# variable; BENCHMARKS.md has the command used for the recorded run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Targets, in the order they run within each round. Each has a row in target_info below;
# natter-irc is natter's IRC side and natter-ws its WebSocket side (the line protocol, one
# line a message, at /ws), on the same port (natter tells the protocols apart). With
# PREV_BIN=path/to/an/earlier/natter-server, natter-prev, natter-irc-prev and natter-ws-prev
# run that binary the same way, so a change is measured against the build before it in the
# same run (table.py adds a "vs previous build" column for each).
: "${TARGETS:=ngircd inspircd hybrid natter natter-irc natter-ws}"
: "${REPEATS:=3}"                 # rounds; every round runs every scenario on every target
: "${WARMUP:=1}"                  # seconds of warm-up before each measured window
: "${DURATION:=3}"                # seconds of each measured window
: "${FANOUT_CLIENTS:=100 1000}"   # fan-out as fast as possible, with these client counts
: "${FANOUT_SENDERS:=10}"
: "${WINDOW:=16}"                 # messages in flight per sender (ngIRCd: 32 KiB write buffer)
: "${RATE_CLIENTS:=100}"          # fan-out at a fixed rate: clients, and msg/s per sender
: "${RATE:=10}"
: "${DM_PAIRS:=50}"
: "${IDLE_CLIENTS:=10000}"        # connect: idle registered clients (RSS per connection)
: "${JOIN_CLIENTS:=0}"            # join: clients that register and join one channel, as
                                  # natives are in Everyone, then one broadcast (0: skip)
: "${MAX_CLIENTS:=19000}"         # most clients at once, with one broadcast (0: skip)
: "${SOAK_DURATION:=10}"          # soak: seconds (0: skip)
: "${PARALLEL:=256}"              # registrations in flight while connecting clients
: "${NGIRCD_PARALLEL:=8}"         # ngIRCd listens with a backlog of 10: more SYNs get dropped
: "${ONLY:=}"                     # run only scenarios whose name matches this regex
: "${MAXCONN_TARGETS:=natter}"    # targets of the MAX_CLIENTS scenario (IRC: a JOIN storm)
: "${BASE_PORT:=16660}"
: "${BENCH_USER:=natterbench}"
: "${OUT:=$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}"
: "${SKIP_INSTALL:=0}"
: "${CARGO_TARGET_DIR:=$ROOT/target}"
: "${PREV_BIN:=}"                 # an earlier natter-server, for the *-prev targets
export CARGO_TARGET_DIR

TMP=$(mktemp -d /tmp/natter-bench.XXXXXX)
chmod 755 "$TMP"
mkdir -p "$OUT"
RUNS="$OUT/runs.jsonl"
LOG="$OUT/compare.log"
SERVER_PID=""
DNS_PID=""

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

cleanup() {
    stop_server
    if [ -n "$DNS_PID" ]; then kill "$DNS_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# ---------------------------------------------------------------- install and build

install_peers() {
    log "installing peers (apt-get)"
    apt-get update -qq
    # No service may start on install: Debian's postinst would start them on 0.0.0.0.
    local own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        ngircd inspircd libltdl7 dnsmasq-base util-linux python3 gnuplot-nox >/dev/null
    if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    # ircd-hybrid conflicts with ngircd as a package: unpack it privately instead.
    local hy="$ROOT/bench/.peers/ircd-hybrid"
    if [ ! -x "$hy/usr/sbin/ircd-hybrid" ]; then
        mkdir -p "$hy" "$ROOT/bench/.peers/deb"
        (cd "$ROOT/bench/.peers/deb" && apt-get download -qq ircd-hybrid)
        dpkg-deb -x "$ROOT"/bench/.peers/deb/ircd-hybrid_*.deb "$hy"
    fi
    id "$BENCH_USER" >/dev/null 2>&1 ||
        useradd --system --no-create-home --shell /usr/sbin/nologin "$BENCH_USER"
}

build() {
    log "building natter-server and natter-bench (release)"
    cargo build --release -q -p natter-server -p natter-bench
}

# ---------------------------------------------------------------- targets

# target_info NAME: sets PORT, PROTO, START (the function that starts the server) and PAR
# (registrations in flight while connecting).
target_info() {
    PAR=$PARALLEL
    TRANSPORT=tcp
    NATTER_ARGS=()
    NATTER_BIN="$CARGO_TARGET_DIR/release/natter-server"
    local name=$1
    if [[ $name == natter*-prev ]]; then
        if [ -z "$PREV_BIN" ]; then echo "$name needs PREV_BIN" >&2; exit 2; fi
        NATTER_BIN=$PREV_BIN
        name=${name%-prev}
    fi
    case "$name" in
        natter)     PORT=$BASE_PORT;         PROTO=natter; START=start_natter ;;
        natter-irc) PORT=$BASE_PORT;         PROTO=irc;    START=start_natter ;;
        # natter's IRC side with IRC users left out of Everyone: like the peers' connect,
        # a registration tells nobody else.
        natter-irc-nojoin) PORT=$BASE_PORT;  PROTO=irc;    START=start_natter
                    NATTER_ARGS=(--irc-auto-join false) ;;
        # natter's IRC side with every arrival announced in the everyone channel however
        # large it grows (as before the channel went quiet beyond --irc-everyone-presence).
        natter-irc-loud) PORT=$BASE_PORT;    PROTO=irc;    START=start_natter
                    NATTER_ARGS=(--irc-everyone-presence 1000000000) ;;
        natter-ws)  PORT=$BASE_PORT;         PROTO=natter; START=start_natter
                    TRANSPORT=ws ;;
        ngircd)     PORT=$((BASE_PORT + 1)); PROTO=irc;    START=start_ngircd
                    PAR=$NGIRCD_PARALLEL ;;
        inspircd)   PORT=$((BASE_PORT + 2)); PROTO=irc;    START=start_inspircd ;;
        hybrid)     PORT=$((BASE_PORT + 3)); PROTO=irc;    START=start_hybrid ;;
        *) echo "unknown target $1" >&2; exit 2 ;;
    esac
    # The load generator shares the two cores: while it reads a crowd's presence, some of its
    # upgrade requests come more than the default 100 ms after their connect, and the server
    # then greets them as line clients. A longer wait only changes what happens to those.
    # (Builds before the setting existed waited 100 ms.)
    if [ "$name" = natter-ws ] && [ "$NATTER_BIN" != "$PREV_BIN" ]; then
        NATTER_ARGS+=(--sniff-wait-ms 1000)
    fi
}

# Runs a command as $BENCH_USER by exec (no fork), so $! is the server's own pid (for RSS).
AS_USER=(setpriv --reuid="$BENCH_USER" --regid="$BENCH_USER" --clear-groups --)

fill() { # fill TEMPLATE OUT: substitute the @VARS@
    sed -e "s|@PORT@|$PORT|g" -e "s|@DIR@|$DIR|g" -e "s|@MAXCONN@|$MAXCONN|g" \
        -e "s|@MODULES@|$ROOT/bench/.peers/ircd-hybrid/usr/lib/ircd-hybrid/modules|g" \
        "$ROOT/bench/peers/$1" > "$2"
}

start_natter() {
    # The store is the default kind (a SQLite file), fresh, where the server's user may
    # write. (Builds before the store existed have no --store.)
    local store=()
    if "$NATTER_BIN" --help 2>/dev/null | grep -q -- '--store'; then
        mkdir -p "$DIR/store" && chown "$BENCH_USER" "$DIR/store"
        rm -f "$DIR/store"/natter.db*
        store=(--store "sqlite:$DIR/store/natter.db")
    fi
    RUST_LOG=warn "${AS_USER[@]}" "$NATTER_BIN" 127.0.0.1 "$PORT" \
        --shutdown-grace-secs 1 --flood-control false --exempt-loopback "${store[@]}" "${NATTER_ARGS[@]}" \
        > "$DIR/natter.log" 2>&1 &
    SERVER_PID=$!
}

start_ngircd() {
    fill ngircd.conf.in "$DIR/ngircd.conf"
    "${AS_USER[@]}" /usr/sbin/ngircd --nodaemon --config "$DIR/ngircd.conf" > "$DIR/ngircd.log" 2>&1 &
    SERVER_PID=$!
}

start_inspircd() {
    fill inspircd.conf.in "$DIR/inspircd.conf"
    "${AS_USER[@]}" /usr/sbin/inspircd --nofork --config="$DIR/inspircd.conf" \
        > "$DIR/inspircd.out" 2>&1 &
    SERVER_PID=$!
}

start_hybrid() {
    fill ircd-hybrid.conf.in "$DIR/ircd.conf"
    start_dns
    # A private mount namespace, where resolv.conf names only the loopback dnsmasq and the
    # unpacked modules sit where the binary looks for them (their paths are compiled in).
    printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$DIR/resolv.conf"
    local hy="$ROOT/bench/.peers/ircd-hybrid"
    mkdir -p /usr/lib/ircd-hybrid
    unshare --mount --propagation private -- sh -c '
        mount --bind "$1/resolv.conf" /etc/resolv.conf &&
        mount --bind "$3/usr/lib/ircd-hybrid" /usr/lib/ircd-hybrid &&
        exec setpriv --reuid="$2" --regid="$2" --clear-groups -- \
            "$3/usr/sbin/ircd-hybrid" -foreground -configfile "$1/ircd.conf" \
            -pidfile "$1/ircd.pid" -logfile "$1/ircd.log" -klinefile "$1/kline.db" \
            -dlinefile "$1/dline.db" -xlinefile "$1/xline.db" -resvfile "$1/resv.db"' sh "$DIR" "$BENCH_USER" "$hy" \
        > "$DIR/hybrid.log" 2>&1 &
    SERVER_PID=$!
}

start_dns() {
    if [ -n "$DNS_PID" ] && kill -0 "$DNS_PID" 2>/dev/null; then return; fi
    # Answers from /etc/hosts (127.0.0.1 localhost) only: no upstream servers at all.
    dnsmasq --keep-in-foreground --no-resolv --no-poll --listen-address=127.0.0.1 \
        --bind-interfaces --port=53 --user="$BENCH_USER" --pid-file= \
        --log-facility=- > "$TMP/dnsmasq.log" 2>&1 &
    DNS_PID=$!
    sleep 0.3
}

start_server() { # start_server TARGET
    target_info "$1"
    DIR="$TMP/$1"
    rm -rf "$DIR"
    mkdir -p "$DIR"
    chown "$BENCH_USER" "$DIR"
    MAXCONN=$(( $(ulimit -n) - 100 ))
    "$START"
    local i
    for i in $(seq 1 100); do
        if ss -Hltn "sport = :$PORT" | grep -q .; then
            sleep 0.2
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    log "$1 did not start; its logs:"
    tail -n 20 "$DIR"/*.log "$DIR"/*.out 2>/dev/null >&2 || true
    return 1
}

stop_server() {
    if [ -z "$SERVER_PID" ]; then return; fi
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# ---------------------------------------------------------------- workloads

bench() { # bench TARGET SCENARIO WORKLOAD ARGS...
    local target=$1 scenario=$2 workload=$3
    shift 3
    if ! start_server "$target"; then
        echo "{\"label\":\"$target\",\"scenario\":\"$scenario\",\"error\":\"server did not start\"}" >> "$RUNS"
        return 0
    fi
    log "$scenario on $target"
    local out
    if out=$(timeout 600 "$CARGO_TARGET_DIR/release/natter-bench" "$workload" \
        --target "127.0.0.1:$PORT" --proto "$PROTO" --transport "$TRANSPORT" --label "$target" \
        --scenario "$scenario" --server-pid "$SERVER_PID" --parallel "$PAR" "$@" \
        2>>"$LOG"); then
        echo "$out" >> "$RUNS"
    else
        log "$scenario on $target failed (see $LOG)"
        echo "{\"label\":\"$target\",\"scenario\":\"$scenario\",\"error\":\"failed\"}" >> "$RUNS"
    fi
    stop_server
}

# One scenario a line: NAME WORKLOAD ARGS... (the workload's own options).
scenario_list() {
    local c
    for c in $FANOUT_CLIENTS; do
        echo "fanout-max-$c fanout --clients $c --senders $FANOUT_SENDERS --window $WINDOW --warmup $WARMUP --duration $DURATION"
    done
    echo "fanout-rate-$RATE_CLIENTS fanout --clients $RATE_CLIENTS --senders $FANOUT_SENDERS --rate $RATE --window $WINDOW --warmup $WARMUP --duration $DURATION"
    echo "dm-max-$DM_PAIRS dm --pairs $DM_PAIRS --window $WINDOW --warmup $WARMUP --duration $DURATION"
    echo "connect-$IDLE_CLIENTS connect --clients $IDLE_CLIENTS --settle 2"
    if [ "$JOIN_CLIENTS" != 0 ]; then
        echo "join-$JOIN_CLIENTS connect --clients $JOIN_CLIENTS --broadcast --settle 2"
    fi
    if [ "$SOAK_DURATION" != 0 ]; then
        echo "soak soak --duration $SOAK_DURATION --interval 1"
    fi
}

# ---------------------------------------------------------------- main

if [ "$(id -u)" != 0 ]; then
    echo "compare.sh must run as root (it installs packages and starts servers as $BENCH_USER)" >&2
    exit 2
fi
ulimit -n "$(ulimit -Hn)"
if [ "$SKIP_INSTALL" != 1 ]; then install_peers; fi
build
log "targets: $TARGETS; repeats: $REPEATS; results in $OUT"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
    echo "kernel: $(uname -r)"
    echo "fd limit: $(ulimit -n)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "ngircd: $(dpkg-query -W -f='${Version}' ngircd 2>/dev/null)"
    echo "inspircd: $(dpkg-query -W -f='${Version}' inspircd 2>/dev/null)"
    echo "ircd-hybrid: $(ls "$ROOT"/bench/.peers/deb/ 2>/dev/null | sed 's/ircd-hybrid_//; s/_amd64.deb//; s/%3a/:/')"
    echo "natter: $(git -C "$ROOT" rev-parse --short HEAD)"
    if [ -n "$PREV_BIN" ]; then echo "previous build: $PREV_BIN"; fi
    echo "settings: TARGETS='$TARGETS' REPEATS=$REPEATS WARMUP=$WARMUP DURATION=$DURATION" \
        "FANOUT_CLIENTS='$FANOUT_CLIENTS' FANOUT_SENDERS=$FANOUT_SENDERS WINDOW=$WINDOW" \
        "RATE_CLIENTS=$RATE_CLIENTS RATE=$RATE DM_PAIRS=$DM_PAIRS IDLE_CLIENTS=$IDLE_CLIENTS" \
        "JOIN_CLIENTS=$JOIN_CLIENTS" \
        "MAX_CLIENTS=$MAX_CLIENTS MAXCONN_TARGETS='$MAXCONN_TARGETS' SOAK_DURATION=$SOAK_DURATION" \
        "PARALLEL=$PARALLEL NGIRCD_PARALLEL=$NGIRCD_PARALLEL"
} > "$OUT/machine.txt"

mapfile -t SCENARIOS < <(scenario_list | grep -E -- "^(${ONLY:-.})" || true)
for round in $(seq 1 "$REPEATS"); do
    log "round $round of $REPEATS"
    # Interleaved: each scenario on every target in turn, so drift hits everyone alike.
    for line in "${SCENARIOS[@]}"; do
        read -r -a words <<< "$line"
        for t in $TARGETS; do
            bench "$t" "${words[@]}"
        done
    done
done
if [ "$MAX_CLIENTS" != 0 ] && [[ "maxconn-$MAX_CLIENTS" =~ ${ONLY:-.} ]]; then
    for t in $MAXCONN_TARGETS; do
        bench "$t" "maxconn-$MAX_CLIENTS" connect --clients "$MAX_CLIENTS" --broadcast \
            --settle 2 --connect-timeout 400 --broadcast-timeout 60
    done
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
echo "run took: $SECONDS s" >> "$OUT/machine.txt"
python3 "$ROOT/bench/table.py" "$RUNS" "$OUT/machine.txt" | tee "$OUT/table.md"
if command -v gnuplot >/dev/null; then python3 "$ROOT/bench/plot.py" "$OUT" || true; fi
log "done: $OUT/table.md"
