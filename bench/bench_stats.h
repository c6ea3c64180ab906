/*
 * bench_stats.h - the statistics of `raft bench`: each client thread's
 * latency samples, their summary (throughput and nearest-rank percentiles)
 * and how the summary is printed. It uses nothing else in the tree, so that
 * another load generator (bench/etcd_load.c) can link bench/bench_stats.c and
 * report exactly as `raft bench` does.
 */
#ifndef BENCH_BENCH_STATS_H
#define BENCH_BENCH_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct bench_result {
    uint64_t ops;
    uint64_t errors;
    double seconds;
    double ops_per_sec;
    double p50_ms, p90_ms, p99_ms, max_ms;
};

/* One client thread's latencies, one per completed operation. */
struct bench_samples {
    double *ms;
    size_t n, cap;
};

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* Appends one latency; -ENOMEM if the array cannot grow. */
int bench_samples_add(struct bench_samples *s, double ms);

/* Fills *out from the latencies of every completed operation, ms[0..n),
 * which it sorts in place; ms may be NULL (no memory to gather them), and
 * then only the counts are filled in. */
void bench_summarise(double *ms, size_t n, uint64_t errors, double seconds,
                     struct bench_result *out);

/* One JSON object on one line, or one line of text. */
void bench_print(const struct bench_result *r, bool json, FILE *out);

/* The JSON object's members alone, `"ops": 12, ... "errors": 0`, for an
 * object that holds more. */
void bench_print_json_members(const struct bench_result *r, FILE *out);

#endif
