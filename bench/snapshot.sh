#!/bin/sh
# bench/snapshot.sh: does log compaction keep a node small under a long
# write load, and how fast does an empty follower catch up by snapshot?
#
# Starts three `raft node` processes (separate, so that each one's memory
# can be read) with --snapshot-every 1000, writes 1,000,000 puts of 100-byte
# values over 1,000 keys with `raft bench --clients 64`, and prints for each
# node its peak resident memory (VmHWM in /proc/PID/status), its data
# directory's size at the end and the largest seen during the load. Then it
# stops a follower, wipes its directory, restarts it and times how long it
# takes to apply everything the leader has committed (InstallSnapshot, then
# the entries after it).
#
#   bench/snapshot.sh [path/to/raft]
#   OPS=1000000 SNAPSHOT_EVERY=1000 CLIENTS=64 CHUNK_SECONDS=20 BASE_PORT=18200
#
# Targets: peak RSS under 64 MB and data directory under 10 MB per node.
set -eu
BIN=${1:-build/raft}
OPS=${OPS:-1000000}
EVERY=${SNAPSHOT_EVERY:-1000}
CLIENTS=${CLIENTS:-64}
CHUNK=${CHUNK_SECONDS:-20}
PORT=${BASE_PORT:-18200}
DIR=$(mktemp -d /tmp/raft-snapbench-XXXXXX)
PEERS=127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))
PIDS="- - -"

pid_of() { echo "$PIDS" | cut -d' ' -f$(($1 + 1)); }
set_pid() { # node pid
    PIDS=$(echo "$PIDS" | awk -v i=$(($1 + 1)) -v p="$2" '{ $i = p; print }')
}
start_node() { # id log-level
    "$BIN" node --id "$1" --peers "$PEERS" --data-dir "$DIR/node-$1" \
        --snapshot-every "$EVERY" --log-level "$2" 2>>"$DIR/node-$1.log" &
    set_pid "$1" $!
}
stop_node() {
    p=$(pid_of "$1")
    [ "$p" = - ] && return 0
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    set_pid "$1" -
}
cleanup() {
    [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null
    for i in 0 1 2; do stop_node $i; done
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

hwm_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$(pid_of "$1")/status"; }
dir_bytes() { du -sb "$DIR/node-$1" | cut -f1; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
now() { date +%s.%N; }
# One node's status field (a number) from `raft client status --json`.
field() { # node field
    "$BIN" client --cluster "127.0.0.1:$((PORT + $1))" --timeout 1 status --json 2>/dev/null |
        sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p"
}
role() {
    "$BIN" client --cluster "127.0.0.1:$((PORT + $1))" --timeout 1 status --json 2>/dev/null |
        sed -n 's/.*"role": "\([a-z-]*\)".*/\1/p'
}
leader() {
    for i in 0 1 2; do [ "$(role $i)" = leader ] && { echo $i; return; }; done
    echo -
}

for i in 0 1 2; do start_node $i warn; done
"$BIN" client --cluster "$PEERS" --timeout 10 put warmup 1 >/dev/null

# The largest size of each data directory, sampled every half second.
sample() {
    m0=0 m1=0 m2=0
    while :; do
        for i in 0 1 2; do
            b=$(du -sb "$DIR/node-$i" 2>/dev/null | cut -f1)
            eval "m=\$m$i"
            [ "${b:-0}" -gt "$m" ] && eval "m$i=$b"
        done
        echo "$m0 $m1 $m2" >"$DIR/max.tmp" && mv "$DIR/max.tmp" "$DIR/max"
        sleep 0.5
    done
}
sample &
SAMPLER=$!

echo "writing $OPS puts: $CLIENTS clients, 100-byte values, 1000 keys, --snapshot-every $EVERY"
done_ops=0
t0=$(now)
while [ "$done_ops" -lt "$OPS" ]; do
    out=$("$BIN" bench --cluster "$PEERS" --clients "$CLIENTS" --seconds "$CHUNK" \
          --value-size 100 --keys 1000 --json)
    ops=$(echo "$out" | sed -n 's/.*"ops": \([0-9]*\).*/\1/p')
    errors=$(echo "$out" | sed -n 's/.*"errors": \([0-9]*\).*/\1/p')
    done_ops=$((done_ops + ops))
    printf '  %8d puts so far (%s ops/s in the last %s s, %s errors)\n' "$done_ops" \
        "$(echo "$out" | sed -n 's/.*"ops_per_sec": \([0-9.]*\).*/\1/p')" "$CHUNK" "$errors"
done
t1=$(now)
kill "$SAMPLER" 2>/dev/null; SAMPLER=
L=$(leader)
echo "done in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s; leader n$L," \
     "commit index $(field "$L" commit)"
echo
printf '%-5s %-9s %14s %17s %19s\n' node role "peak RSS (MB)" "data dir (MB)" "largest seen (MB)"
for i in 0 1 2; do
    end=$(dir_bytes $i)
    max=$(cut -d' ' -f$((i + 1)) "$DIR/max")
    [ "$end" -gt "$max" ] && max=$end
    printf '%-5s %-9s %14s %17s %19s\n' "n$i" "$(role $i)" "$(hwm_mb $i)" "$(mb "$end")" "$(mb "$max")"
done
echo
for i in 0 1 2; do
    printf 'n%d: %s\n' "$i" "$(ls "$DIR/node-$i" | tr '\n' ' ')"
done

# An empty follower catches up.
F=$(( (L + 1) % 3 ))
stop_node $F
rm -rf "$DIR/node-$F"
target=$(field "$L" commit)
t0=$(now)
start_node $F info
while :; do
    applied=$(field $F applied)
    [ -n "$applied" ] && [ "$applied" -ge "$target" ] && break
    sleep 0.01
done
t1=$(now)
echo
echo "n$F restarted with an empty data directory: applied $target (the leader's commit) after" \
     "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }') ms," \
     "peak RSS $(hwm_mb $F) MB, data dir $(mb "$(dir_bytes $F)") MB"
grep -h "installed snapshot" "$DIR/node-$F.log" | sed 's/^/  /'
