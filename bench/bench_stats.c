/*
 * bench_stats.c - latency samples, summary and printing for load generators.
 */
#include "bench/bench_stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int bench_samples_add(struct bench_samples *s, double ms)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        double *l = realloc(s->ms, cap * sizeof(*l));
        if (!l)
            return -ENOMEM;
        s->ms = l;
        s->cap = cap;
    }
    s->ms[s->n++] = ms;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the sample at p of the way from the fastest to the slowest. */
static double percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i];
}

void bench_summarise(double *ms, size_t n, uint64_t errors, double seconds,
                     struct bench_result *out)
{
    memset(out, 0, sizeof(*out));
    out->errors = errors;
    out->ops = n;
    out->seconds = seconds;
    out->ops_per_sec = seconds > 0 ? (double)n / seconds : 0;
    if (!ms || n == 0)
        return;
    qsort(ms, n, sizeof(*ms), cmp_double);
    out->p50_ms = percentile(ms, n, 0.50);
    out->p90_ms = percentile(ms, n, 0.90);
    out->p99_ms = percentile(ms, n, 0.99);
    out->max_ms = ms[n - 1];
}

void bench_print_json_members(const struct bench_result *r, FILE *out)
{
    fprintf(out, "\"ops\": %llu, \"seconds\": %.3f, \"ops_per_sec\": %.1f, "
            "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
            "\"errors\": %llu", (unsigned long long)r->ops, r->seconds,
            r->ops_per_sec, r->p50_ms, r->p90_ms, r->p99_ms, r->max_ms,
            (unsigned long long)r->errors);
}

void bench_print(const struct bench_result *r, bool json, FILE *out)
{
    if (json) {
        fprintf(out, "{");
        bench_print_json_members(r, out);
        fprintf(out, "}\n");
        return;
    }
    fprintf(out, "%llu ops in %.2f s: %.0f ops/s; latency p50 %.3f ms, p90 %.3f ms, "
            "p99 %.3f ms, max %.3f ms; %llu errors\n", (unsigned long long)r->ops,
            r->seconds, r->ops_per_sec, r->p50_ms, r->p90_ms, r->p99_ms, r->max_ms,
            (unsigned long long)r->errors);
}
