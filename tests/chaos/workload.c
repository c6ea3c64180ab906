/*
 * workload.c - client threads that record a history (see workload.h); the
 * operations themselves are in workload_ops.c.
 */
#include "tests/chaos/workload.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/chaos/workload_internal.h"
#include "tests/support/clock.h"

#define VERIFY_TIMEOUT_MS 5000

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

static void remember_once(struct chaos_worker *k, const char *key, const char *value, bool acked)
{
    if (k->n_once == k->cap_once) {
        size_t cap = k->cap_once ? 2 * k->cap_once : 64;
        struct chaos_once *o = realloc(k->once, cap * sizeof(*o));
        if (!o)
            return;
        k->once = o;
        k->cap_once = cap;
    }
    struct chaos_once *o = &k->once[k->n_once++];
    snprintf(o->key, sizeof(o->key), "%s", key);
    snprintf(o->value, sizeof(o->value), "%s", value);
    o->acked = acked;
}

/* A put: to a write-once key now and then, else to a shared key i. */
static void put_step(struct chaos_worker *k, struct kv_client *kc, unsigned i)
{
    struct chaos_workload *w = k->w;
    char key[CHAOS_VALUE_CAP], value[CHAOS_VALUE_CAP];
    bool once = next_rand(&k->rng) % 100 < w->opt.once_percent;
    k->n++;
    if (once)
        snprintf(key, sizeof(key), "once-%d-%u", k->id, k->n);
    else
        snprintf(key, sizeof(key), "k%u", i);
    snprintf(value, sizeof(value), "c%d-%u", k->id, k->n);
    int rc = chaos_do_put(w, k->id, kc, key, value);
    if (once && rc != -EINVAL)
        remember_once(k, key, value, rc == 0);
    if (!once && rc == 0)
        snprintf(k->seen[i], CHAOS_VALUE_CAP, "%s", value);
}

/* A cas on shared key i from the value this client last saw there (or
 * from one nobody wrote, if it saw none) to a new one. */
static void cas_step(struct chaos_worker *k, struct kv_client *kc, unsigned i, const char *key)
{
    char value[CHAOS_VALUE_CAP], held[CHAOS_VALUE_CAP];
    char *seen = k->seen[i];
    snprintf(value, sizeof(value), "c%d-%u", k->id, ++k->n);
    int rc = chaos_do_cas(k->w, k->id, kc, key, seen[0] ? seen : "none", value, held,
                          sizeof(held));
    if (rc == 0)
        snprintf(seen, CHAOS_VALUE_CAP, "%s", value);
    else if (rc == -EEXIST)
        snprintf(seen, CHAOS_VALUE_CAP, "%s", held);
    else if (rc == -ENOENT)
        seen[0] = '\0';
}

/* One operation on a random shared key (or a list of them), chosen by
 * the options' shares. */
static void step(struct chaos_worker *k, struct kv_client *kc)
{
    const struct chaos_workload_options *o = &k->w->opt;
    unsigned dice = (unsigned)(next_rand(&k->rng) % 100);
    unsigned i = (unsigned)(next_rand(&k->rng) % o->keys);
    char key[CHAOS_VALUE_CAP], got[CHAOS_VALUE_CAP];
    snprintf(key, sizeof(key), "k%u", i);
    if (dice < o->get_percent) {
        int rc = chaos_do_get(k->w, k->id, kc, key, got, sizeof(got));
        if (rc == 0 || rc == -ENOENT)
            snprintf(k->seen[i], CHAOS_VALUE_CAP, "%s", got);
        return;
    }
    dice -= o->get_percent;
    if (dice < o->list_percent) {
        /* Mostly every shared key at once; now and then one alone. */
        chaos_do_list(k->w, k->id, kc, next_rand(&k->rng) % 4 ? "k" : key);
        return;
    }
    dice -= o->list_percent;
    if (dice < o->delete_percent) {
        if (chaos_do_delete(k->w, k->id, kc, key) == 0)
            k->seen[i][0] = '\0';
        return;
    }
    dice -= o->delete_percent;
    if (dice < o->cas_percent)
        cas_step(k, kc, i, key);
    else
        put_step(k, kc, i);
}

/* One iteration: one operation, then a short pause. */
static void *worker_main(void *arg)
{
    struct chaos_worker *k = arg;
    struct chaos_workload *w = k->w;
    struct kv_client *kc;
    if (kv_client_open(&kc, w->addrs, w->n_addrs, w->opt.op_timeout_ms) != 0)
        return NULL;
    kv_client_set_tls(kc, w->opt.tls);
    while (!stopping(w)) {
        step(k, kc);
        if (w->opt.think_ms)
            test_sleep_ms(w->opt.think_ms);
    }
    kv_client_close(kc);
    return NULL;
}

static void apply_defaults(struct chaos_workload_options *o)
{
    if (!o->clients)
        o->clients = 4;
    if (o->clients > CHAOS_MAX_CLIENTS)
        o->clients = CHAOS_MAX_CLIENTS;
    if (!o->keys)
        o->keys = 5;
    if (!o->op_timeout_ms)
        o->op_timeout_ms = 2000;
    if (!o->think_ms)
        o->think_ms = 5;
    if (!o->once_percent)
        o->once_percent = 20;
    if (!o->get_percent)
        o->get_percent = 30;
    if (!o->list_percent)
        o->list_percent = 10;
    if (!o->delete_percent)
        o->delete_percent = 10;
    if (!o->cas_percent)
        o->cas_percent = 15;
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
    apply_defaults(&w->opt);
    if (w->opt.get_percent + w->opt.list_percent + w->opt.delete_percent +
            w->opt.cas_percent > 100) {
        free(w);
        return -EINVAL;
    }
    for (unsigned i = 0; i < n_addrs; i++)
        w->addrs[i] = addrs[i];
    w->n_addrs = n_addrs;
    w->h = h;
    pthread_mutex_init(&w->mu, NULL);
    for (unsigned i = 0; i < w->opt.clients; i++) {
        struct chaos_worker *k = &w->workers[i];
        k->w = w;
        k->id = (int)i;
        k->rng = (opt->seed + 1) * 0x9e3779b97f4a7c15ull + i * 7919 + 1;
        k->seen = calloc(w->opt.keys, sizeof(*k->seen));
        if (!k->seen || pthread_create(&k->thread, NULL, worker_main, k) != 0)
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
    for (unsigned i = 0; i < CHAOS_MAX_CLIENTS; i++) {
        free(w->workers[i].once);
        free(w->workers[i].seen);
    }
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
    uint64_t target = w->st.writes_acked + more;
    while (w->st.writes_acked < target && test_now_ms() < deadline) {
        pthread_mutex_unlock(&w->mu);
        test_sleep_ms(10);
        pthread_mutex_lock(&w->mu);
    }
    int rc = w->st.writes_acked >= target ? 0 : -ETIMEDOUT;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void chaos_workload_describe(struct chaos_workload *w, char *buf, size_t cap)
{
    struct chaos_workload_stats s;
    chaos_workload_get_stats(w, &s);
    const struct chaos_op_counts *p = &s.puts, *g = &s.gets, *d = &s.deletes, *c = &s.cas,
                                 *l = &s.lists;
    unsigned long long refused = p->failed + g->failed + d->failed + c->failed + l->failed;
    snprintf(buf, cap,
             "puts %llu ok / %llu unknown, gets %llu ok / %llu missing / %llu unknown, "
             "deletes %llu done / %llu missing / %llu unknown, cas %llu swapped / %llu "
             "mismatch / %llu missing / %llu unknown, lists %llu ok / %llu unknown; %llu "
             "refused",
             (unsigned long long)p->ok, (unsigned long long)p->unknown,
             (unsigned long long)g->ok, (unsigned long long)g->missing,
             (unsigned long long)g->unknown, (unsigned long long)d->ok,
             (unsigned long long)d->missing, (unsigned long long)d->unknown,
             (unsigned long long)c->ok, (unsigned long long)c->mismatch,
             (unsigned long long)c->missing, (unsigned long long)c->unknown,
             (unsigned long long)l->ok, (unsigned long long)l->unknown, refused);
}

/* The final reads, recorded like the others: every shared key, then all
 * of them in one list, then each client's write-once keys in one list. */
static int final_reads(struct chaos_workload *w, struct kv_client *kc, char *msg, size_t cap)
{
    int client = (int)w->opt.clients; /* the verifier's own client number */
    char got[CHAOS_VALUE_CAP];
    for (unsigned i = 0; i < w->opt.keys; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%u", i);
        int rc = chaos_do_get(w, client, kc, key, got, sizeof(got));
        if (rc != 0 && rc != -ENOENT) {
            snprintf(msg, cap, "final read of %s failed (%s): the healed cluster does not serve",
                     key, strerror(-rc));
            return -1;
        }
    }
    for (unsigned i = 0; i <= w->started; i++) {
        char prefix[32] = "k";
        if (i < w->started)
            snprintf(prefix, sizeof(prefix), "once-%u-", i);
        int rc = chaos_do_list(w, client, kc, prefix);
        if (rc != 0) {
            snprintf(msg, cap, "final list of '%s' failed (%s): the healed cluster does not "
                     "serve", prefix, strerror(-rc));
            return -1;
        }
    }
    return 0;
}

/* Every acknowledged write-once put must be there; one that timed out
 * holds its value or nothing. */
static int read_back_once(struct chaos_workload *w, struct kv_client *kc, char *msg, size_t cap)
{
    int client = (int)w->opt.clients;
    char got[CHAOS_VALUE_CAP];
    for (unsigned i = 0; i < w->started; i++) {
        struct chaos_worker *k = &w->workers[i];
        for (size_t j = 0; j < k->n_once; j++) {
            struct chaos_once *o = &k->once[j];
            int rc = chaos_do_get(w, client, kc, o->key, got, sizeof(got));
            if (rc != 0 && rc != -ENOENT) {
                snprintf(msg, cap, "read-back of %s failed (%s)", o->key, strerror(-rc));
                return -1;
            }
            if (o->acked && (rc != 0 || strcmp(got, o->value) != 0)) {
                snprintf(msg, cap, "acknowledged put %s = '%s' was lost: the key now %s%s%s",
                         o->key, o->value, rc ? "does not exist" : "holds '", rc ? "" : got,
                         rc ? "" : "'");
                return -1;
            }
            if (rc == 0 && strcmp(got, o->value) != 0) {
                snprintf(msg, cap, "%s holds '%s', a value nobody wrote to it", o->key, got);
                return -1;
            }
        }
    }
    return 0;
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
    int bad = final_reads(w, kc, msg, cap);
    if (!bad)
        bad = read_back_once(w, kc, msg, cap);
    kv_client_close(kc);
    if (bad)
        return bad;
    pthread_mutex_lock(&w->mu);
    unsigned malformed = w->malformed_lists;
    pthread_mutex_unlock(&w->mu);
    if (malformed) {
        snprintf(msg, cap, "%u lists were answered with a listing the client could not read",
                 malformed);
        return -1;
    }
    struct lincheck_result r;
    if (lincheck_check(w->h, &r) != 0) {
        snprintf(msg, cap, "%s", r.message[0] ? r.message : "the checker ran out of memory");
        return -1;
    }
    return 0;
}
