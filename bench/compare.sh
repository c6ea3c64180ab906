#!/bin/sh
# make bench-compare: our store and etcd under the same load, back to back in
# one sitting: the standard set of bench/run.sh, then the same set against
# etcd (bench/etcd.sh), then, per workload, the ratio of our ops/s to
# etcd's and each load generator's CPU use. Each side runs alone on the
# machine; neither cluster is up while the other is measured.
#
#   bench/compare.sh [path/to/raft]     SECONDS=5, and the variables of
#                                       bench/run.sh and bench/etcd.sh
set -eu
cd "$(dirname "$0")/.."
BIN=${1:-build/raft}
DIR=$(mktemp -d /tmp/raft-compare-XXXXXX)
trap 'rm -rf "$DIR"' EXIT
trap 'exit 130' INT TERM

if [ ! -x "$BIN" ]; then
    echo "$BIN is not built: run make first." >&2
    exit 2
fi
echo "== our store ($BIN), ${SECONDS:-5} s per workload"
# A pipeline's status is tee's: each side's own status goes through a file.
{ bench/run.sh "$BIN" || echo $? >"$DIR/failed"; } | tee "$DIR/raft.txt"
[ ! -e "$DIR/failed" ] || exit "$(cat "$DIR/failed")"
echo
echo "== etcd $(${ETCD:-etcd} --version 2>/dev/null | sed -n 's/^etcd Version: //p'), ${SECONDS:-5} s per workload"
{ bench/etcd.sh || echo $? >"$DIR/failed"; } | tee "$DIR/etcd.txt"
[ ! -e "$DIR/failed" ] || exit "$(cat "$DIR/failed")"
echo

# Rows are "%-28s %10.0f ...": the workload in columns 1-28, ops/s in
# 30-39, and the generator's CPU last.
printf '%-28s %10s %10s %7s %9s %9s\n' "workload" "ours ops/s" "etcd ops/s" "ratio" \
    "our gen" "etcd gen"
awk '
    FNR == 1 { next }
    {
        name = substr($0, 1, 28)
        ops = substr($0, 30, 10) + 0
        if (NR == FNR) { ours[name] = ops; our_cpu[name] = $NF; order[++n] = name }
        else { theirs[name] = ops; their_cpu[name] = $NF }
    }
    END {
        for (i = 1; i <= n; i++) {
            w = order[i]
            if (!(w in theirs))
                continue
            ratio = theirs[w] > 0 ? sprintf("%.2fx", ours[w] / theirs[w]) : "-"
            printf "%-28s %10.0f %10.0f %7s %9s %9s\n", w, ours[w], theirs[w], ratio,
                our_cpu[w], their_cpu[w]
        }
    }' "$DIR/raft.txt" "$DIR/etcd.txt"
