# bench/table.sh: the table that bench/run.sh and bench/etcd.sh print, one
# row per workload; both source this file, so the two tables match column
# for column. Needs $DIR, a scratch directory.
#
# "gen cpu" is the load generator's CPU time (user + system) over the
# run's wall time, in % of one core: the machine has 2 cores, so a heavy
# generator takes CPU from the servers it measures. It comes from the
# shell's `times` (CPU of the children it has waited for) before and after
# the generator runs. `times` writes to a file because in a $(...) subshell
# it would see none of this shell's children; servers started in the
# background are not waited for until the end, so they are not counted.

table_header() {
    printf '%-28s %10s %9s %9s %9s %9s %7s %8s\n' "workload" "ops/s" "p50 ms" "p90 ms" \
        "p99 ms" "max ms" "errors" "gen cpu"
}

# table_run NAME COMMAND...: runs COMMAND, a generator that prints one JSON
# object like `raft bench --json`, and prints its row.
table_run() {
    name=$1
    shift
    times >"$DIR/times.before"
    out=$("$@")
    times >"$DIR/times.after"
    # The second line of `times` is the children's "user system", each as
    # "XmY.YYYs".
    awk -v name="$name" -v json="$out" '
        function cpu(user_sys,   f, a, i, n) {
            split(user_sys, f, " ")
            for (i = 1; i <= 2; i++) {
                split(f[i], a, "m")
                sub("s", "", a[2])
                n += a[1] * 60 + a[2]
            }
            return n
        }
        FNR == 2 { if (NR == FNR) before = cpu($0); else after = cpu($0) }
        END {
            gsub(/[{}"\n]/, "", json)
            n = split(json, kv, ", ")
            for (i = 1; i <= n; i++) {
                split(kv[i], p, ": ")
                v[p[1]] = p[2]
            }
            pct = v["seconds"] > 0 ? 100 * (after - before) / v["seconds"] : 0
            printf "%-28s %10.0f %9.3f %9.3f %9.3f %9.3f %7d %7.0f%%\n", name,
                v["ops_per_sec"], v["p50_ms"], v["p90_ms"], v["p99_ms"], v["max_ms"],
                v["errors"], pct
        }' "$DIR/times.before" "$DIR/times.after"
}
