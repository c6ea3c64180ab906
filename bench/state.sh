#!/bin/sh
# bench/state.sh: how writes, latency and memory hold up as the state
# grows (make bench-state).
#
# For each state size, three `raft node` processes with the default
# settings (separate processes, so that each one's memory can be read)
# are filled with KEYS keys of VALUE bytes (random puts until about 95% of
# the keys exist), then `raft bench --clients 16` writes for SECONDS over
# the same keys. Printed per size: the live data (the size of the latest
# snapshot, which holds every key, value and client session), writes/s,
# p99 and the slowest request, each node's resident memory against the
# data; then a follower is stopped, its directory wiped and the node
# restarted, and the time until it has applied the leader's commit index
# is set beside the time `cp -r` takes to copy the leader's directory,
# with the peak memory of both sides during the catch-up.
#
#   bench/state.sh [path/to/raft]
#   SIZES="1000 300000" VALUE=1000 CLIENTS=16 BENCH_SECONDS=20 BASE_PORT=18300
#   (SIZES="1000 1000000" for a state of 1 GB: about ten minutes)
set -eu
BIN=${1:-build/raft}
SIZES=${SIZES:-1000 300000}
VALUE=${VALUE:-1000}
CLIENTS=${CLIENTS:-16}
SECONDS_EACH=${BENCH_SECONDS:-20}
PORT=${BASE_PORT:-18300}
PEERS=127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))
DIR=
PIDS="- - -"
SAMPLER=

pid_of() { echo "$PIDS" | cut -d' ' -f$(($1 + 1)); }
set_pid() { PIDS=$(echo "$PIDS" | awk -v i=$(($1 + 1)) -v p="$2" '{ $i = p; print }'); }
start_node() { # id log-level
    "$BIN" node --id "$1" --peers "$PEERS" --data-dir "$DIR/node-$1" --log-level "$2" \
        2>>"$DIR/node-$1.log" &
    set_pid "$1" $!
}
stop_node() {
    p=$(pid_of "$1")
    [ "$p" = - ] && return 0
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    set_pid "$1" -
}
stop_all() {
    if [ -n "$SAMPLER" ]; then kill "$SAMPLER" 2>/dev/null || true; fi
    SAMPLER=
    for i in 0 1 2; do stop_node $i; done
}
cleanup() {
    stop_all
    if [ -n "$DIR" ]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kb() { awk -v f="$2" '$1 == f ":" { print $2 }' "/proc/$(pid_of "$1")/status"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
json() { echo "$1" | sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p"; }
status() { "$BIN" client --cluster "127.0.0.1:$((PORT + $1))" --timeout 1 status --json 2>/dev/null; }
# A field of node $1's own row (status given one address lists every member).
field() { status "$1" | grep "^{\"id\": $1," | sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p"; }
leader() {
    for i in 0 1 2; do
        status $i | grep "^{\"id\": $i," | grep -q '"role": "leader"' && { echo $i; return; }
    done
    echo -
}
snapshot_bytes() { # the largest snapshot file of the three
    for i in 0 1 2; do stat -c %s "$DIR/node-$i/snapshot" 2>/dev/null || echo 0; done |
        sort -n | tail -1
}

# The largest resident memory of node $1 (in KiB) while the sampler runs,
# written to $DIR/peak-$1.
sample_rss() {
    : >"$DIR/peak-$1"
    m=0
    while :; do
        r=$(kb "$1" VmRSS 2>/dev/null || echo 0)
        [ "${r:-0}" -gt "$m" ] && m=$r && echo "$m" >"$DIR/peak-$1"
        sleep 0.05
    done
}

fill() { # keys
    want=$(( $1 * 3 )) # 1 - e^-3: about 95% of the keys written
    done_ops=0
    while [ "$done_ops" -lt "$want" ]; do
        out=$("$BIN" bench --cluster "$PEERS" --clients 64 --seconds 10 --value-size "$VALUE" \
              --keys "$1" --json)
        done_ops=$((done_ops + $(json "$out" ops)))
    done
}

ROWS=
CATCHUP=
for keys in $SIZES; do
    DIR=$(mktemp -d /tmp/raft-statebench-XXXXXX)
    for i in 0 1 2; do start_node $i info; done
    "$BIN" client --cluster "$PEERS" --timeout 10 put warmup 1 >/dev/null
    echo "$keys keys of $VALUE bytes: filling..." >&2
    t0=$(now)
    fill "$keys"
    echo "  filled in $(elapsed "$t0" "$(now)") s; $CLIENTS clients write for $SECONDS_EACH s" >&2
    out=$("$BIN" bench --cluster "$PEERS" --clients "$CLIENTS" --seconds "$SECONDS_EACH" \
          --value-size "$VALUE" --keys "$keys" --json)
    data=$(snapshot_bytes)
    rss=
    for i in 0 1 2; do
        r=$(( $(kb $i VmRSS) * 1024 ))
        rss="$rss $(mb $r) ($(ratio $r "$data")x)"
    done
    ROWS="$ROWS$(printf '| %s | %s | %s | %s | %s | %s | %s |' "$keys" "$(mb "$data")" \
        "$(json "$out" ops_per_sec)" "$(json "$out" p99_ms)" "$(json "$out" max_ms)" \
        "$(json "$out" errors)" "$rss")
"
    # An empty follower catches up, beside a plain copy of the leader's directory.
    L=$(leader)
    F=$(( (L + 1) % 3 ))
    stop_node $F
    rm -rf "$DIR/node-$F"
    t0=$(now)
    cp -r "$DIR/node-$L" "$DIR/copy" && sync
    copy_s=$(elapsed "$t0" "$(now)")
    rm -rf "$DIR/copy"
    target=$(field "$L" commit)
    sample_rss "$L" &
    SAMPLER=$!
    t0=$(now)
    start_node $F info
    sleep 0.05
    sample_rss "$F" &
    FS=$!
    while :; do
        applied=$(field $F applied)
        [ -n "$applied" ] && [ "$applied" -ge "$target" ] && break
        sleep 0.05
    done
    catch_s=$(elapsed "$t0" "$(now)")
    kill "$SAMPLER" "$FS" 2>/dev/null
    SAMPLER=
    CATCHUP="$CATCHUP$(printf '| %s | %s | %s | %s (%sx) | %s (%sx) |' "$keys" "$catch_s" \
        "$copy_s" "$(mb $(( $(cat "$DIR/peak-$L") * 1024 )))" \
        "$(ratio $(( $(cat "$DIR/peak-$L") * 1024 )) "$data")" \
        "$(mb $(( $(cat "$DIR/peak-$F") * 1024 )))" \
        "$(ratio $(( $(cat "$DIR/peak-$F") * 1024 )) "$data")")
"
    grep -h "snapshot taken" "$DIR"/node-*.log | tail -2 | sed 's/^/  /' >&2 || true
    stop_all
    rm -rf "$DIR"
    DIR=
    PIDS="- - -"
done

echo
echo "| keys | data MB | writes/s | p99 ms | max ms | errors | RSS MB per node (x data) |"
echo "|---|---|---|---|---|---|---|"
printf '%s' "$ROWS"
echo
echo "| keys | empty follower caught up, s | cp -r of the leader's directory, s | leader peak RSS MB | follower peak RSS MB |"
echo "|---|---|---|---|---|"
printf '%s' "$CATCHUP"
