#!/bin/sh
# make bench: starts a 3-node cluster (fdatasync on, as always) in a
# temporary directory and runs the standard set: 64-byte values with 1, 16
# and 64 clients writing, then 64 clients with 90% reads. Prints a table.
#
#   bench/run.sh [path/to/raft]     SECONDS=5 BASE_PORT=18100 to change
set -eu
BIN=${1:-build/raft}
SECONDS_EACH=${SECONDS:-5}
PORT=${BASE_PORT:-18100}
DIR=$(mktemp -d /tmp/raft-bench-XXXXXX)
CLUSTER=127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))

"$BIN" cluster --base-port "$PORT" --data-dir "$DIR" --log-level warn 2>"$DIR/cluster.log" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT INT TERM

# Wait for a leader: a put that succeeds.
"$BIN" client --cluster "$CLUSTER" --timeout 10 put warmup 1 >/dev/null

printf '%-28s %10s %9s %9s %9s %9s %7s\n' "workload" "ops/s" "p50 ms" "p90 ms" "p99 ms" "max ms" "errors"
run() { # name clients read-ratio
    out=$("$BIN" bench --cluster "$CLUSTER" --clients "$2" --seconds "$SECONDS_EACH" \
          --value-size 64 --keys 1000 --read-ratio "$3" --json)
    echo "$out" | sed -e 's/[{}"]//g' -e 's/, /\n/g' | awk -F': ' -v name="$1" '
        { v[$1] = $2 }
        END { printf "%-28s %10.0f %9.3f %9.3f %9.3f %9.3f %7d\n", name, v["ops_per_sec"],
              v["p50_ms"], v["p90_ms"], v["p99_ms"], v["max_ms"], v["errors"] }'
}
run "writes, 1 client" 1 0
run "writes, 16 clients" 16 0
run "writes, 64 clients" 64 0
run "90% reads, 64 clients" 64 0.9
