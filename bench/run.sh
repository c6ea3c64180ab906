#!/bin/sh
# make bench: starts a 3-node cluster (fdatasync on, as always) in a
# temporary directory and runs the standard set: 64-byte values with 1, 16
# and 64 clients writing, then 64 clients with 90% reads. Prints a table
# (bench/table.sh), with the load generator's CPU use in its last column.
#
#   bench/run.sh [path/to/raft]     SECONDS=5 BASE_PORT=18100 to change
#   TRACE=1   the nodes also write their traces (--trace-dir), to measure
#             what tracing costs; the traces' size is printed at the end
set -eu
BIN=${1:-build/raft}
SECONDS_EACH=${SECONDS:-5}
PORT=${BASE_PORT:-18100}
DIR=$(mktemp -d /tmp/raft-bench-XXXXXX)
CLUSTER=127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))
TRACE_ARGS=
if [ "${TRACE:-}" = 1 ]; then
    TRACE_ARGS="--trace-dir $DIR/traces"
fi

# shellcheck disable=SC2086 # TRACE_ARGS is empty or two words
"$BIN" cluster --base-port "$PORT" --data-dir "$DIR" --log-level warn $TRACE_ARGS \
    2>"$DIR/cluster.log" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT INT TERM

# Wait for a leader: a put that succeeds.
"$BIN" client --cluster "$CLUSTER" --timeout 10 put warmup 1 >/dev/null

. "$(dirname "$0")/table.sh"
table_header
run() { # name clients read-ratio
    table_run "$1" "$BIN" bench --cluster "$CLUSTER" --clients "$2" --seconds "$SECONDS_EACH" \
        --value-size 64 --keys 1000 --read-ratio "$3" --json
}
run "writes, 1 client" 1 0
run "writes, 16 clients" 16 0
run "writes, 64 clients" 64 0
run "90% reads, 64 clients" 64 0.9
if [ -n "$TRACE_ARGS" ]; then
    echo "traces: $(du -sh "$DIR/traces" | cut -f1) in $(cat "$DIR"/traces/*.jsonl | wc -l) lines"
fi
