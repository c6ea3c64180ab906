#!/bin/sh
# grade.sh [PART...] - runs every test of the lab parts' suites RUNS times,
# JOBS at a time, one test per process (RAFT_TEST), and prints per test:
# runs passed, median and worst time, and for each failed run its seed, the
# first line of what failed and the command that replays it; then a score
# per part. Exits 0 only if every run passed. A failed run's traces (one
# node-I.jsonl per node, for raft timeline) are kept in OUTDIR/traces.
#   RUNS=N (1)  JOBS=J (2)  BUILD=dir (build)
#   STOP=1      run one at a time, in order, and stop at the first failure
# Parts: election agreement persistence snapshots membership clients
# transfer (default: the first four). Each part is the suites
# tests/lab_*PART*.c.
set -eu
BUILD=${BUILD:-build}
RUNS=${RUNS:-1}
JOBS=${JOBS:-2}
STOP=${STOP:-}
cd "$(dirname "$0")/../.."

if [ "${1:-}" = "--one" ]; then
    # --one OUTDIR SUITE TEST RUN: one run of one test, recorded in files.
    out=$2/$3.$4.$5
    start=$(date +%s%N)
    rc=0
    RAFT_TEST=$4 RAFT_TRACE_DIR=$2/traces "$BUILD/tests/$3" >"$out.log" 2>&1 </dev/null || rc=$?
    end=$(date +%s%N)
    # A filter that matched no test runs nothing: that is a failure too.
    grep -q '^\[  PASSED  \] 1 test' "$out.log" || [ $rc -ne 0 ] || rc=1
    echo "$rc $(( (end - start) / 1000000 ))" >"$out.res"
    exit 0
fi

[ $# -gt 0 ] || set -- election agreement persistence snapshots
out=$BUILD/grade
rm -rf "$out"
mkdir -p "$out"

# The jobs: "part suite test run", in suite order.
jobs=$out/jobs
: >"$jobs"
for part in "$@"; do
    found=no
    for src in tests/lab_*"$part"*.c; do
        [ -f "$src" ] || continue
        found=yes
        suite=$(basename "$src" .c)
        [ -x "$BUILD/tests/$suite" ] || { echo "grade: $BUILD/tests/$suite is not built" >&2; exit 2; }
        tests=$(sed -n 's/.*\(cmocka_unit_test[a-z_]*\|LAB_TEST\)( *\(test_[A-Za-z0-9_]*\).*/\2/p' "$src")
        for t in $tests; do
            r=1
            while [ $r -le "$RUNS" ]; do
                echo "$part $suite $t $r" >>"$jobs"
                r=$((r + 1))
            done
        done
    done
    [ $found = yes ] || { echo "grade: no lab suite for part '$part'" >&2; exit 2; }
done

total=$(wc -l <"$jobs")
echo "grade: $total runs ($RUNS of each test), $( [ -n "$STOP" ] && echo "one at a time, stopping at the first failure" || echo "$JOBS at a time"); logs in $out"
if [ -n "$STOP" ]; then
    while read -r part suite t r; do
        sh "$0" --one "$out" "$suite" "$t" "$r"
        rc=$(cut -d' ' -f1 "$out/$suite.$t.$r.res")
        [ "$rc" -eq 0 ] || break
    done <"$jobs"
else
    # xargs -P runs JOBS at a time (GNU and BSD xargs both have it).
    awk '{ print $2, $3, $4 }' "$jobs" |
        xargs -P "$JOBS" -n 3 sh "$0" --one "$out"
fi

# The table, from the jobs and their results.
while read -r part suite t r; do
    res=$out/$suite.$t.$r.res
    if [ -f "$res" ]; then
        set -- $(cat "$res")
        rc=$1 ms=$2
        seed=$(sed -n 's/.*seed \([0-9][0-9]*\) (replay: RAFT_SEED=.*/\1/p' "$out/$suite.$t.$r.log" | head -n 1)
        why=$(grep -m 1 -E '^=== (CHECK )?FAILED|^=== FATAL|^\[  ERROR   \] --- |^ERROR: ' "$out/$suite.$t.$r.log" | cut -c1-150 || true)
        traces=$(sed -n 's|^    trace: \(.*\)/node-I\.jsonl.*|\1|p' "$out/$suite.$t.$r.log" | head -n 1)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$part" "$suite" "$t" "$r" "$rc" "$ms" "${seed:--}" "${why:-exit status $rc, see the log}" "${traces:--}"
    else
        printf '%s\t%s\t%s\t%s\tskip\t-\t-\t-\t-\n' "$part" "$suite" "$t" "$r"
    fi
done <"$jobs" | awk -F'\t' -v build="$BUILD" -v out="$out" '
function median(list, k,   a, n, i, j, x) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++)                 # insertion sort, a few values
        for (j = i; j > 1 && a[j] + 0 < a[j - 1] + 0; j--) { x = a[j]; a[j] = a[j - 1]; a[j - 1] = x }
    return n ? a[int((n + 1) / 2)] : 0
}
{
    key = $1 SUBSEP $3
    if (!(key in runs)) { order[++ntests] = key; tpart[key] = $1; tsuite[key] = $2; tname[key] = $3 }
    if (!($1 in partseen)) { partseen[$1] = 1; parts[++nparts] = $1 }
    if ($5 == "skip") { skipped[key]++; next }
    runs[key]++
    times[key] = times[key] " " $6 / 1000
    if ($6 / 1000 > worst[key]) worst[key] = $6 / 1000
    if ($5 == 0) passed[key]++
    else {
        fails[key] = fails[key] sprintf("      run %d: %s\n        seed %s, replay: RAFT_SEED=%s RAFT_TEST=%s %s/tests/%s\n        log: %s/%s.%s.%d.log\n", $4, $8, $7, $7, $3, build, $2, out, $2, $3, $4)
        if ($9 != "-")
            fails[key] = fails[key] sprintf("        draw its traces: %s/raft timeline --out %s/run.html %s/node-*.jsonl\n", build, $9, $9)
    }
}
END {
    bad = 0
    for (p = 1; p <= nparts; p++) {
        part = parts[p]
        printf "\n%-58s %7s %8s %8s\n", "part " part, "passed", "median", "worst"
        ok = 0; n = 0; rp = 0; rn = 0
        for (i = 1; i <= ntests; i++) {
            key = order[i]
            if (tpart[key] != part) continue
            n++
            rn += runs[key]; rp += passed[key]
            if (runs[key] && passed[key] == runs[key] && !skipped[key]) ok++
            else bad = 1
            label = tname[key]
            if (skipped[key]) label = label " (" skipped[key] " not run)"
            if (runs[key])
                printf "  %-56s %3d/%-3d %7.1fs %7.1fs\n", label, passed[key], runs[key], median(times[key]), worst[key]
            else
                printf "  %-56s %7s %8s %8s\n", label, "-", "-", "-"
            printf "%s", fails[key]
        }
        printf "  score %s: %d/%d tests passed every run (%d/%d runs)\n", part, ok, n, rp, rn
    }
    exit bad
}'
