/*
 * workload.c - client threads that record a history (see workload.h).
 */
#include "tests/chaos/workload.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/client.h"
#include "tests/chaos/cluster.h"
#include "tests/support/clock.h"

#define MAX_CLIENTS 64
#define VERIFY_TIMEOUT_MS 5000

/* A put to a write-once key, kept for the final read-back. */
struct once {
    char key[48], value[48];
    bool acked; /* false: its outcome is unknown */
};

struct worker {
    struct chaos_workload *w;
    int id;
    pthread_t thread;
    uint64_t rng;
    unsigned n; /* values written so far */
    struct once *once; /* this thread's only */
    size_t n_once, cap_once;
};

struct chaos_workload {
    struct chaos_workload_options opt;
    char *addrs[CHAOS_MAX_NODES + 1];
    unsigned n_addrs;
    struct lincheck_history *h;
    struct worker workers[MAX_CLIENTS];
    unsigned started;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t progress;
    bool stop;
    struct chaos_workload_stats st;
};

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static bool stopping(struct chaos_workload *w)
{
    pthread_mutex_lock(&w->mu);
    bool s = w->stop;
    pthread_mutex_unlock(&w->mu);
    return s;
}

static void record(struct chaos_workload *w, int client, enum lincheck_kind kind, const char *key,
                   const char *value, uint64_t call, enum lincheck_outcome outcome)
{
    struct lincheck_op op = {.client = client, .kind = kind, .key = key, .value = value,
                             .call_ns = call, .return_ns = lincheck_now_ns(),
                             .outcome = outcome};
    if (lincheck_add(w->h, &op) != 0)
        fprintf(stderr, "workload: could not record an operation (out of memory)\n");
}

static void count_put(struct chaos_workload *w, int rc)
{
    pthread_mutex_lock(&w->mu);
    if (rc == 0) {
        w->st.puts_ok++;
        w->st.last_ack_ms = test_now_ms();
        pthread_cond_broadcast(&w->progress);
    } else if (rc == -ETIMEDOUT) {
        w->st.puts_unknown++;
    } else {
        w->st.puts_failed++;
    }
    pthread_mutex_unlock(&w->mu);
}

static void count_get(struct chaos_workload *w, int rc)
{
    pthread_mutex_lock(&w->mu);
    if (rc == 0)
        w->st.gets_ok++;
    else if (rc == -ENOENT)
        w->st.gets_missing++;
    else if (rc == -ETIMEDOUT)
        w->st.gets_unknown++;
    else
        w->st.gets_failed++;
    pthread_mutex_unlock(&w->mu);
}

static enum lincheck_outcome put_outcome(int rc)
{
    return rc == 0 ? LINCHECK_OK : rc == -EINVAL ? LINCHECK_FAILED : LINCHECK_UNKNOWN;
}

/* -EINVAL is a refusal; anything else but success may have taken effect. */
static int do_put(struct worker *k, struct kv_client *kc, const char *key, const char *value)
{
    uint64_t t = lincheck_now_ns();
    int rc = kv_client_put(kc, key, (uint32_t)strlen(key), value, (uint32_t)strlen(value));
    record(k->w, k->id, LINCHECK_PUT, key, value, t, put_outcome(rc));
    count_put(k->w, rc);
    return rc;
}

static int do_get(struct chaos_workload *w, int client, struct kv_client *kc, const char *key,
                  char *out, size_t cap)
{
    uint64_t t = lincheck_now_ns();
    uint8_t *v = NULL;
    uint32_t len = 0;
    int rc = kv_client_get(kc, key, (uint32_t)strlen(key), &v, &len);
    if (rc == 0) {
        char *s = malloc((size_t)len + 1);
        if (s) {
            memcpy(s, v, len);
            s[len] = '\0';
            record(w, client, LINCHECK_GET, key, s, t, LINCHECK_OK);
            snprintf(out, cap, "%s", s);
            free(s);
        }
    } else {
        record(w, client, LINCHECK_GET, key, NULL, t,
               rc == -ENOENT ? LINCHECK_MISSING
               : rc == -ETIMEDOUT ? LINCHECK_UNKNOWN : LINCHECK_FAILED);
    }
    free(v);
    count_get(w, rc);
    return rc;
}

static void remember_once(struct worker *k, const char *key, const char *value, bool acked)
{
    if (k->n_once == k->cap_once) {
        size_t cap = k->cap_once ? 2 * k->cap_once : 64;
        struct once *o = realloc(k->once, cap * sizeof(*o));
        if (!o)
            return;
        k->once = o;
        k->cap_once = cap;
    }
    struct once *o = &k->once[k->n_once++];
    snprintf(o->key, sizeof(o->key), "%s", key);
    snprintf(o->value, sizeof(o->value), "%s", value);
    o->acked = acked;
}

/* One iteration: one operation on a random key, then a short pause. */
static void *worker_main(void *arg)
{
    struct worker *k = arg;
    struct chaos_workload *w = k->w;
    struct kv_client *kc;
    if (kv_client_open(&kc, w->addrs, w->n_addrs, w->opt.op_timeout_ms) != 0)
        return NULL;
    kv_client_set_tls(kc, w->opt.tls);
    while (!stopping(w)) {
        char key[48], value[48], got[64];
        unsigned dice = (unsigned)(next_rand(&k->rng) % 100);
        if (dice < w->opt.get_percent) {
            snprintf(key, sizeof(key), "k%u", (unsigned)(next_rand(&k->rng) % w->opt.keys));
            do_get(w, k->id, kc, key, got, sizeof(got));
        } else {
            bool once = next_rand(&k->rng) % 100 < w->opt.once_percent;
            k->n++;
            if (once)
                snprintf(key, sizeof(key), "once-%d-%u", k->id, k->n);
            else
                snprintf(key, sizeof(key), "k%u", (unsigned)(next_rand(&k->rng) % w->opt.keys));
            snprintf(value, sizeof(value), "c%d-%u", k->id, k->n);
            int rc = do_put(k, kc, key, value);
            if (once && rc != -EINVAL)
                remember_once(k, key, value, rc == 0);
        }
        if (w->opt.think_ms)
            test_sleep_ms(w->opt.think_ms);
    }
    kv_client_close(kc);
    return NULL;
}

int chaos_workload_start(struct chaos_workload **out, char *const *addrs, unsigned n_addrs,
                         const struct chaos_workload_options *opt, struct lincheck_history *h)
{
    if (n_addrs == 0 || n_addrs > CHAOS_MAX_NODES)
        return -EINVAL;
    struct chaos_workload *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->opt = *opt;
    if (!w->opt.clients)
        w->opt.clients = 4;
    if (w->opt.clients > MAX_CLIENTS)
        w->opt.clients = MAX_CLIENTS;
    if (!w->opt.keys)
        w->opt.keys = 5;
    if (!w->opt.op_timeout_ms)
        w->opt.op_timeout_ms = 2000;
    if (!w->opt.think_ms)
        w->opt.think_ms = 5;
    if (!w->opt.once_percent)
        w->opt.once_percent = 20;
    if (!w->opt.get_percent)
        w->opt.get_percent = 40;
    for (unsigned i = 0; i < n_addrs; i++)
        w->addrs[i] = addrs[i];
    w->n_addrs = n_addrs;
    w->h = h;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->progress, NULL);
    for (unsigned i = 0; i < w->opt.clients; i++) {
        struct worker *k = &w->workers[i];
        k->w = w;
        k->id = (int)i;
        k->rng = (opt->seed + 1) * 0x9e3779b97f4a7c15ull + i * 7919 + 1;
        if (pthread_create(&k->thread, NULL, worker_main, k) != 0)
            break;
        w->started++;
    }
    *out = w;
    return w->started ? 0 : -EAGAIN;
}

void chaos_workload_halt(struct chaos_workload *w)
{
    pthread_mutex_lock(&w->mu);
    bool already = w->stop;
    w->stop = true;
    pthread_mutex_unlock(&w->mu);
    if (already)
        return;
    for (unsigned i = 0; i < w->started; i++)
        pthread_join(w->workers[i].thread, NULL);
}

void chaos_workload_free(struct chaos_workload *w)
{
    if (!w)
        return;
    chaos_workload_halt(w);
    for (unsigned i = 0; i < w->started; i++)
        free(w->workers[i].once);
    pthread_cond_destroy(&w->progress);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

void chaos_workload_get_stats(struct chaos_workload *w, struct chaos_workload_stats *st)
{
    pthread_mutex_lock(&w->mu);
    *st = w->st;
    pthread_mutex_unlock(&w->mu);
}

int chaos_workload_wait_progress(struct chaos_workload *w, unsigned more, unsigned timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    pthread_mutex_lock(&w->mu);
    uint64_t target = w->st.puts_ok + more;
    while (w->st.puts_ok < target && test_now_ms() < deadline) {
        pthread_mutex_unlock(&w->mu);
        test_sleep_ms(10);
        pthread_mutex_lock(&w->mu);
    }
    int rc = w->st.puts_ok >= target ? 0 : -ETIMEDOUT;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void chaos_workload_describe(struct chaos_workload *w, char *buf, size_t cap)
{
    struct chaos_workload_stats s;
    chaos_workload_get_stats(w, &s);
    snprintf(buf, cap,
             "puts %llu ok / %llu unknown / %llu refused, gets %llu ok / %llu missing / "
             "%llu unknown / %llu refused",
             (unsigned long long)s.puts_ok, (unsigned long long)s.puts_unknown,
             (unsigned long long)s.puts_failed, (unsigned long long)s.gets_ok,
             (unsigned long long)s.gets_missing, (unsigned long long)s.gets_unknown,
             (unsigned long long)s.gets_failed);
}

int chaos_workload_verify(struct chaos_workload *w, char *msg, size_t cap)
{
    msg[0] = '\0';
    struct kv_client *kc;
    if (kv_client_open(&kc, w->addrs, w->n_addrs, VERIFY_TIMEOUT_MS) != 0) {
        snprintf(msg, cap, "cannot open a client for the final reads");
        return -1;
    }
    kv_client_set_tls(kc, w->opt.tls);
    int client = (int)w->opt.clients; /* the verifier's own client number */
    int bad = 0;
    char got[64];
    /* Final reads of the shared keys: part of the history. */
    for (unsigned i = 0; i < w->opt.keys && !bad; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%u", i);
        int rc = do_get(w, client, kc, key, got, sizeof(got));
        if (rc != 0 && rc != -ENOENT) {
            snprintf(msg, cap, "final read of %s failed (%s): the healed cluster does not serve",
                     key, strerror(-rc));
            bad = -1;
        }
    }
    /* Every acknowledged write-once put must be there. */
    size_t checked = 0;
    for (unsigned i = 0; i < w->started && !bad; i++) {
        struct worker *k = &w->workers[i];
        for (size_t j = 0; j < k->n_once && !bad; j++) {
            struct once *o = &k->once[j];
            got[0] = '\0';
            int rc = do_get(w, client, kc, o->key, got, sizeof(got));
            checked++;
            if (rc != 0 && rc != -ENOENT) {
                snprintf(msg, cap, "read-back of %s failed (%s)", o->key, strerror(-rc));
                bad = -1;
            } else if (o->acked && (rc != 0 || strcmp(got, o->value) != 0)) {
                snprintf(msg, cap, "acknowledged put %s = '%s' was lost: the key now %s%s%s",
                         o->key, o->value, rc ? "does not exist" : "holds '", rc ? "" : got,
                         rc ? "" : "'");
                bad = -1;
            } else if (rc == 0 && strcmp(got, o->value) != 0) {
                snprintf(msg, cap, "%s holds '%s', a value nobody wrote to it", o->key, got);
                bad = -1;
            }
        }
    }
    kv_client_close(kc);
    if (bad)
        return bad;
    struct lincheck_result r;
    int rc = lincheck_check(w->h, &r);
    if (rc != 0) {
        snprintf(msg, cap, "%s", r.message[0] ? r.message : "the checker ran out of memory");
        return -1;
    }
    (void)checked;
    return 0;
}
