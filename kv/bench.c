/*
 * bench.c - the closed-loop benchmark behind `raft bench`.
 */
#include "kv/bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/client.h"

struct worker {
    const struct bench_options *opt;
    pthread_t thread;
    unsigned index;
    uint64_t stop_ns;
    double *latencies_ms; /* one per completed operation */
    size_t n, cap;
    uint64_t errors;
    int rc;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int record(struct worker *w, double ms)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4096;
        double *l = realloc(w->latencies_ms, cap * sizeof(*l));
        if (!l)
            return -ENOMEM;
        w->latencies_ms = l;
        w->cap = cap;
    }
    w->latencies_ms[w->n++] = ms;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct bench_options *opt = w->opt;
    struct kv_client *c;
    w->rc = kv_client_open(&c, opt->addrs, opt->n_addrs, opt->timeout_ms);
    if (w->rc)
        return NULL;
    char *value = malloc(opt->value_size + 1);
    if (!value) {
        kv_client_close(c);
        w->rc = -ENOMEM;
        return NULL;
    }
    memset(value, 'a' + (int)(w->index % 26), opt->value_size);
    uint64_t rng = 0x9e3779b97f4a7c15ull * (w->index + 1);
    while (now_ns() < w->stop_ns) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        char key[32];
        int key_len = snprintf(key, sizeof(key), "key-%llu",
                               (unsigned long long)(rng % opt->keys));
        bool read = (double)(rng >> 11) / (double)(1ull << 53) < opt->read_ratio;
        uint64_t start = now_ns();
        int rc;
        if (read) {
            uint8_t *v = NULL;
            uint32_t vl;
            rc = kv_client_get(c, key, (uint32_t)key_len, &v, &vl);
            free(v);
            if (rc == -ENOENT)
                rc = 0;
        } else {
            rc = kv_client_put(c, key, (uint32_t)key_len, value, opt->value_size);
        }
        if (rc) {
            w->errors++;
            continue;
        }
        if (record(w, (double)(now_ns() - start) / 1e6)) {
            w->rc = -ENOMEM;
            break;
        }
    }
    free(value);
    kv_client_close(c);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i];
}

static void summarise(struct worker *w, unsigned n_workers, double seconds,
                      struct bench_result *out)
{
    size_t total = 0;
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < n_workers; i++) {
        total += w[i].n;
        out->errors += w[i].errors;
    }
    double *all = malloc((total ? total : 1) * sizeof(*all));
    size_t k = 0;
    for (unsigned i = 0; i < n_workers && all; i++) {
        memcpy(all + k, w[i].latencies_ms, w[i].n * sizeof(*all));
        k += w[i].n;
    }
    if (all)
        qsort(all, total, sizeof(*all), cmp_double);
    out->ops = total;
    out->seconds = seconds;
    out->ops_per_sec = seconds > 0 ? (double)total / seconds : 0;
    if (all && total) {
        out->p50_ms = percentile(all, total, 0.50);
        out->p90_ms = percentile(all, total, 0.90);
        out->p99_ms = percentile(all, total, 0.99);
        out->max_ms = all[total - 1];
    }
    free(all);
}

int bench_run(const struct bench_options *opt, struct bench_result *out)
{
    if (opt->clients == 0 || opt->keys == 0 || opt->seconds <= 0)
        return -EINVAL;
    struct worker *w = calloc(opt->clients, sizeof(*w));
    if (!w)
        return -ENOMEM;
    uint64_t start = now_ns();
    uint64_t stop = start + (uint64_t)(opt->seconds * 1e9);
    unsigned started = 0;
    int rc = 0;
    for (; started < opt->clients; started++) {
        w[started] = (struct worker){.opt = opt, .index = started, .stop_ns = stop};
        if (pthread_create(&w[started].thread, NULL, worker_main, &w[started])) {
            rc = -EAGAIN;
            break;
        }
    }
    for (unsigned i = 0; i < started; i++) {
        pthread_join(w[i].thread, NULL);
        if (w[i].rc && !rc)
            rc = w[i].rc;
    }
    summarise(w, started, (double)(now_ns() - start) / 1e9, out);
    for (unsigned i = 0; i < started; i++)
        free(w[i].latencies_ms);
    free(w);
    return rc;
}

void bench_print(const struct bench_result *r, bool json, FILE *out)
{
    if (json) {
        fprintf(out, "{\"ops\": %llu, \"seconds\": %.3f, \"ops_per_sec\": %.1f, "
                "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
                "\"errors\": %llu}\n", (unsigned long long)r->ops, r->seconds,
                r->ops_per_sec, r->p50_ms, r->p90_ms, r->p99_ms, r->max_ms,
                (unsigned long long)r->errors);
        return;
    }
    fprintf(out, "%llu ops in %.2f s: %.0f ops/s; latency p50 %.3f ms, p90 %.3f ms, "
            "p99 %.3f ms, max %.3f ms; %llu errors\n", (unsigned long long)r->ops,
            r->seconds, r->ops_per_sec, r->p50_ms, r->p90_ms, r->p99_ms, r->max_ms,
            (unsigned long long)r->errors);
}
