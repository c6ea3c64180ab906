/*
 * bench.h - a closed-loop load generator: C client sessions, each with one
 * request in flight, for T seconds; reports throughput and latency, in all
 * and for each kind of operation in the mix.
 */
#ifndef KV_BENCH_H
#define KV_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bench/bench_stats.h" /* struct bench_result, bench_print */

struct tls_ctx;

/* The operations a run mixes, in the order `--mix` and the report list
 * them. A put writes the run's one value; a cas expects that value and
 * writes it again (so it swaps whenever the key exists); a delete removes
 * the key; a list reads the keys that share a random key's number but its
 * last digit ("key-42" lists key-42 and key-420..429). Each runs through
 * the log or the read barrier as `raft client` would. */
enum bench_op { BENCH_OP_PUT, BENCH_OP_GET, BENCH_OP_CAS, BENCH_OP_DELETE, BENCH_OP_LIST,
                BENCH_N_OPS };

/* Each operation's share of the requests, in percent, adding up to 100;
 * all zero means put=100. */
struct bench_mix {
    double percent[BENCH_N_OPS];
};

struct bench_options {
    char *const *addrs;
    uint32_t n_addrs;
    unsigned clients;    /* default 16 */
    double seconds;      /* default 5 */
    unsigned value_size; /* default 64 */
    unsigned keys;       /* default 1000 */
    struct bench_mix mix;
    unsigned timeout_ms; /* per request, retries included */
    struct tls_ctx *tls; /* mutual TLS (net/tls.h); NULL: plain TCP */
};

/* A run's result: all operations together, and each kind on its own. */
struct bench_report {
    struct bench_result total;
    struct bench_result by_op[BENCH_N_OPS];
};

int bench_run(const struct bench_options *opt, struct bench_report *out);

/* "put", "get", ... */
const char *bench_op_name(enum bench_op op);

/* The mix of `raft bench`: text, the value of --mix (NULL when not given:
 * then gets in the share read_ratio, the rest puts), as
 * "put=50,get=30,cas=10,delete=5,list=5": each operation at most once, an
 * integer percent from 0 to 100, adding up to 100, the others 0. Returns 0,
 * or -EINVAL with one sentence in why that names --mix and what it
 * accepts. */
int bench_mix_choose(const char *text, double read_ratio, struct bench_mix *out, char *why,
                     size_t cap);

/* The operation at u (uniform in [0, 1)) of the mix's cumulative shares. */
enum bench_op bench_mix_pick(const struct bench_mix *mix, double u);

/* The total, and when the mix has more than one kind, a line (or with
 * json a member "by_op" of the object) for each kind in it. */
void bench_report_print(const struct bench_report *r, const struct bench_mix *mix, bool json,
                        FILE *out);

#endif
