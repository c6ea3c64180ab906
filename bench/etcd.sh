#!/bin/sh
# make bench-etcd: the standard set of bench/run.sh, against etcd. Starts a
# 3-member etcd cluster on loopback in a temporary directory (fsync on, as
# etcd always does; client ports 23791-23793, peer ports 23801-23803),
# waits until every member is healthy, builds bench/etcd_load.c (the same
# load as `raft bench`, over etcd's HTTP/JSON gateway) into build/, and runs
# 64-byte values with 1, 16 and 64 clients writing, then 64 clients with 90%
# reads. Prints the table of bench/run.sh, the generator's CPU use in its
# last column. Stops etcd and removes the directory on the way out.
#
#   bench/etcd.sh      SECONDS=5 ETCD_PORT=23791 ETCD=etcd BUILD=build CC=cc
set -eu
cd "$(dirname "$0")/.."
SECONDS_EACH=${SECONDS:-5}
PORT=${ETCD_PORT:-23791}
ETCD=${ETCD:-etcd}
BUILD=${BUILD:-build}
CC=${CC:-cc}

if ! command -v "$ETCD" >/dev/null 2>&1; then
    echo "etcd is not installed: on Debian or Ubuntu, run apt-get install etcd-server (or set ETCD=/path/to/etcd)." >&2
    exit 2
fi

DIR=$(mktemp -d /tmp/etcd-bench-XXXXXX)
PIDS=""
stop_etcd() {
    [ -n "$PIDS" ] || return 0
    kill $PIDS 2>/dev/null || true
    # A member still running 10 s after SIGTERM is killed.
    (sleep 10 && kill -9 $PIDS 2>/dev/null) &
    watchdog=$!
    wait $PIDS 2>/dev/null || true
    kill $watchdog 2>/dev/null || true
    wait $watchdog 2>/dev/null || true
    PIDS=""
}
trap 'stop_etcd; rm -rf "$DIR"' EXIT
trap 'exit 130' INT TERM

# The generator, built as the Makefile builds everything else.
mkdir -p "$BUILD"
"$CC" -O2 -g -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -I. \
    -pthread -o "$BUILD/etcd-load" bench/etcd_load.c bench/etcd_http.c bench/bench_stats.c bench/bench_loop.c

CLUSTER=""
INITIAL=""
for i in 0 1 2; do
    CLUSTER="$CLUSTER${CLUSTER:+,}127.0.0.1:$((PORT + i))"
    INITIAL="$INITIAL${INITIAL:+,}m$i=http://127.0.0.1:$((PORT + 10 + i))"
done
for i in 0 1 2; do
    client=http://127.0.0.1:$((PORT + i))
    peer=http://127.0.0.1:$((PORT + 10 + i))
    "$ETCD" --name m$i --data-dir "$DIR/m$i" \
        --listen-client-urls "$client" --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$INITIAL" --initial-cluster-state new \
        --initial-cluster-token etcd-bench --quota-backend-bytes 8589934592 \
        --logger zap --log-outputs stderr --log-level warn 2>"$DIR/m$i.log" &
    PIDS="$PIDS $!"
done

# Healthy: every member commits a proposal (etcdctl endpoint health); then a
# put through the generator, which also finds the leader.
healthy=no
i=0
while [ $i -lt 30 ]; do
    if ! command -v etcdctl >/dev/null 2>&1 ||
        ETCDCTL_API=3 etcdctl --endpoints "$CLUSTER" --command-timeout 2s endpoint health \
            >/dev/null 2>&1; then
        if "$BUILD/etcd-load" --cluster "$CLUSTER" --clients 1 --seconds 0.2 --json \
            >/dev/null 2>&1; then
            healthy=yes
            break
        fi
    fi
    sleep 1
    i=$((i + 1))
done
if [ $healthy = no ]; then
    echo "etcd did not become healthy within 30 s; the end of each member's log:" >&2
    for i in 0 1 2; do tail -n 5 "$DIR/m$i.log" >&2; done
    exit 1
fi

. bench/table.sh
table_header
run() { # name clients read-ratio
    table_run "$1" "$BUILD/etcd-load" --cluster "$CLUSTER" --clients "$2" \
        --seconds "$SECONDS_EACH" --value-size 64 --keys 1000 --read-ratio "$3" --json
}
run "writes, 1 client" 1 0
run "writes, 16 clients" 16 0
run "writes, 64 clients" 64 0
run "90% reads, 64 clients" 64 0.9
