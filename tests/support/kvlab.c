/*
 * kvlab.c - every lab node's key-value service (see kvlab.h).
 */
#include "tests/support/kvlab.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "tests/support/cluster_internal.h"

/* The service of one node incarnation. */
struct incarnation_service {
    struct kv_service *svc;
    unsigned incarnation;
    struct incarnation_service *next;
};

struct kvlab {
    struct cluster *c;
    pthread_mutex_t mu; /* guards the two below (a leaf, under slot->lock) */
    struct incarnation_service *current[RAFT_MAX_NODES];
    struct incarnation_service *all; /* freed at the end: answers may come late */
};

/* One request's answer, awaited by kvlab_call. */
struct call {
    pthread_mutex_t mu;
    pthread_cond_t answered_cond;
    bool answered;  /* mu */
    bool abandoned; /* mu: the caller stopped waiting; the answer frees it */
    struct kv_reply reply;
};

static void call_free(struct call *k)
{
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->answered_cond);
    free(k);
}

static struct call *call_new(void)
{
    struct call *k = calloc(1, sizeof(*k));
    if (!k)
        abort();
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&k->answered_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&k->mu, NULL);
    return k;
}

/* The service's deferred answer, from the node's applier (or the caller's
 * thread, when the proposal was refused). */
static void on_answer(void *ctx, void *token, const struct kv_reply *r)
{
    (void)ctx;
    struct call *k = token;
    pthread_mutex_lock(&k->mu);
    if (k->abandoned) {
        pthread_mutex_unlock(&k->mu);
        call_free(k);
        return;
    }
    k->reply = *r;
    k->answered = true;
    pthread_cond_signal(&k->answered_cond);
    pthread_mutex_unlock(&k->mu);
}

struct kvlab *kvlab_new(struct cluster *c)
{
    struct kvlab *l = calloc(1, sizeof(*l));
    if (!l)
        abort();
    l->c = c;
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

void kvlab_free(struct kvlab *l)
{
    for (unsigned i = 0; i < cluster_n(l->c); i++)
        cluster_crash(l->c, i);
    while (l->all) {
        struct incarnation_service *e = l->all;
        l->all = e->next;
        kv_service_free(e->svc);
        free(e);
    }
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* Node i's service for its running incarnation, made on first use. The
 * caller holds the slot's lock, with the node up. */
static struct kv_service *service_of(struct kvlab *l, struct slot *s)
{
    pthread_mutex_lock(&l->mu);
    struct incarnation_service *e = l->current[s->id];
    if (!e || e->incarnation != s->incarnation) {
        e = calloc(1, sizeof(*e));
        struct kv_service_config cfg = {
            .node = s->node, .kv = s->kv, .id = s->id, .n_nodes = cluster_n(l->c),
            .read_wait_ms = cluster_ms(l->c, 1000), .answer = on_answer,
        };
        if (!e || kv_service_new(&e->svc, &cfg) != 0)
            abort();
        e->incarnation = s->incarnation;
        e->next = l->all;
        l->all = e;
        l->current[s->id] = e;
    }
    pthread_mutex_unlock(&l->mu);
    return e->svc;
}

/* Waits for a deferred answer until deadline; gives the call up after. */
static int await_answer(struct call *k, unsigned wait_ms, struct kv_reply *r)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&k->mu);
    while (!k->answered &&
           pthread_cond_timedwait(&k->answered_cond, &k->mu, &until) != ETIMEDOUT)
        ;
    bool answered = k->answered;
    if (answered)
        *r = k->reply;
    else
        k->abandoned = true;
    pthread_mutex_unlock(&k->mu);
    if (answered)
        call_free(k);
    return answered ? 0 : -ETIMEDOUT;
}

/* A crash takes the slot's write lock only after raft_begin_stop, which
 * makes a read barrier return: holding the read lock while it blocks is
 * safe (as in cluster_read_barrier). */
int kvlab_call(struct kvlab *l, unsigned i, const struct kv_request *q, unsigned wait_ms,
               struct kv_reply *r)
{
    struct slot *s = &l->c->slots[i];
    struct call *k = call_new();
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? kv_service_handle(service_of(l, s), q, r, k) : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    if (rc == KV_SERVICE_LATER)
        return await_answer(k, wait_ms, r);
    call_free(k);
    return rc;
}
