/*
 * bench.h - a closed-loop load generator: C client sessions, each with one
 * request in flight, for T seconds; reports throughput and latency.
 */
#ifndef KV_BENCH_H
#define KV_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bench/bench_stats.h" /* struct bench_result, bench_print */

struct tls_ctx;

struct bench_options {
    char *const *addrs;
    uint32_t n_addrs;
    unsigned clients;    /* default 16 */
    double seconds;      /* default 5 */
    unsigned value_size; /* default 64 */
    unsigned keys;       /* default 1000 */
    double read_ratio;   /* 0..1, default 0 */
    unsigned timeout_ms; /* per request, retries included */
    struct tls_ctx *tls; /* mutual TLS (net/tls.h); NULL: plain TCP */
};

int bench_run(const struct bench_options *opt, struct bench_result *out);

#endif
