#!/bin/sh
# Failover time: kills the leader of a 3-node cluster with SIGKILL, TRIALS
# times, and measures how long until a client's put is acknowledged again
# (failure detection + election + the new leader's no-op + the put). The
# killed node is restarted and the cluster settles between trials. Prints
# each trial and the median, in milliseconds.
#
#   bench/failover.sh [path/to/raft]   TRIALS=10 BASE_PORT=18300
#   ELECTION_TIMEOUT=150-300 HEARTBEAT=50 (the node defaults)
set -eu
BIN=${1:-build/raft}
TRIALS=${TRIALS:-10}
PORT=${BASE_PORT:-18300}
ET=${ELECTION_TIMEOUT:-150-300}
HB=${HEARTBEAT:-50}
DIR=$(mktemp -d /tmp/raft-failover-XXXXXX)
PEERS=127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))
PIDS="- - -"

start_node() { # id
    "$BIN" node --id "$1" --peers "$PEERS" --data-dir "$DIR/n$1" --log-level warn \
        --election-timeout "$ET" --heartbeat "$HB" 2>>"$DIR/n$1.log" &
    PIDS=$(echo "$PIDS" | awk -v i="$1" -v p=$! '{ $(i + 1) = p; print }')
}
stop_all() {
    for p in $PIDS; do [ "$p" != - ] && kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap stop_all EXIT INT TERM
now_ms() { date +%s%3N; }
leader_id() { # the id of the node that says it leads, or nothing
    "$BIN" client --cluster "$PEERS" --timeout 1 status --json 2>/dev/null |
        awk -F'"id": |, "addr"' '/"role": "leader"/ { print $2; exit }'
}

for i in 0 1 2; do start_node "$i"; done
"$BIN" client --cluster "$PEERS" --timeout 10 put warmup 1 >/dev/null

results=""
trial=1
while [ "$trial" -le "$TRIALS" ]; do
    leader=$(leader_id)
    if [ -z "$leader" ]; then sleep 0.2; continue; fi
    pid=$(echo "$PIDS" | awk -v i="$leader" '{ print $(i + 1) }')
    t0=$(now_ms)
    kill -KILL "$pid"
    "$BIN" client --cluster "$PEERS" --timeout 10 put "after-kill-$trial" x >/dev/null
    ms=$(( $(now_ms) - t0 ))
    echo "trial $trial: killed leader n$leader, put acknowledged after $ms ms"
    results="$results $ms"
    wait "$pid" 2>/dev/null || true
    start_node "$leader"
    sleep 1.5 # the restarted node catches up; heartbeats resume
    trial=$((trial + 1))
done
echo "$results" | tr ' ' '\n' | sed '/^$/d' | sort -n |
    ET=$ET HB=$HB awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
          printf "failover over %d trials (election timeout %s ms, heartbeat %s ms): median %d ms, min %d, max %d\n",
                 NR, ENVIRON["ET"], ENVIRON["HB"], m, v[1], v[NR] }'
