/*
 * bench.c - the closed-loop benchmark behind `raft bench`.
 */
#include "kv/bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kv/client.h"

struct worker {
    const struct bench_options *opt;
    pthread_t thread;
    unsigned index;
    uint64_t stop_ns;
    struct bench_samples lat;
    uint64_t errors;
    int rc;
};

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
    while (bench_now_ns() < w->stop_ns) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        char key[32];
        int key_len = snprintf(key, sizeof(key), "key-%llu",
                               (unsigned long long)(rng % opt->keys));
        bool read = (double)(rng >> 11) / (double)(1ull << 53) < opt->read_ratio;
        uint64_t start = bench_now_ns();
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
        if (bench_samples_add(&w->lat, (double)(bench_now_ns() - start) / 1e6)) {
            w->rc = -ENOMEM;
            break;
        }
    }
    free(value);
    kv_client_close(c);
    return NULL;
}

static void summarise(struct worker *w, unsigned n_workers, double seconds,
                      struct bench_result *out)
{
    size_t total = 0;
    uint64_t errors = 0;
    for (unsigned i = 0; i < n_workers; i++) {
        total += w[i].lat.n;
        errors += w[i].errors;
    }
    double *all = malloc((total ? total : 1) * sizeof(*all));
    size_t k = 0;
    for (unsigned i = 0; i < n_workers && all; i++) {
        memcpy(all + k, w[i].lat.ms, w[i].lat.n * sizeof(*all));
        k += w[i].lat.n;
    }
    bench_summarise(all, total, errors, seconds, out);
    free(all);
}

int bench_run(const struct bench_options *opt, struct bench_result *out)
{
    if (opt->clients == 0 || opt->keys == 0 || opt->seconds <= 0)
        return -EINVAL;
    struct worker *w = calloc(opt->clients, sizeof(*w));
    if (!w)
        return -ENOMEM;
    uint64_t start = bench_now_ns();
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
    summarise(w, started, (double)(bench_now_ns() - start) / 1e9, out);
    for (unsigned i = 0; i < started; i++)
        free(w[i].lat.ms);
    free(w);
    return rc;
}
