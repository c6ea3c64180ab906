/*
 * simnet.c - the simulated network (see simnet.h for what it does).
 *
 * One mutex (net->mu) guards every field; it is never held while a handler
 * runs. Three condition variables: `wake` for callers sleeping out a delay
 * (broadcast when a node crashes, so zombie threads return at once),
 * `idle` for simnet_crash waiting for in-flight handlers, and `work` for
 * the thread that delivers delayed duplicates.
 */
#include "tests/support/simnet.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct endpoint {
    struct simnet *net;
    unsigned id;
    unsigned incarnation;
    struct endpoint *next; /* all endpoints, freed with the network */
};

struct sim_node {
    struct raft_node *node; /* NULL while crashed or not yet attached */
    bool alive;             /* deliveries allowed */
    bool connected;         /* the lab's cfg.connected[i] */
    unsigned incarnation;   /* endpoints of older incarnations are zombies */
    unsigned inflight;      /* handlers running in this node */
};

/* A request waiting to be delivered a second time. */
struct delayed {
    uint64_t due_ms;
    unsigned from, to;
    struct raft_msg *msg;
    struct delayed *next; /* sorted by due_ms */
};

struct simnet {
    unsigned n;
    double scale;
    pthread_mutex_t mu;
    pthread_cond_t wake, idle, work;
    pthread_t worker;

    /* mu guards everything below */
    bool closing;
    bool reliable;
    bool long_reordering;
    unsigned dup_permille;
    bool link[SIMNET_MAX_NODES][SIMNET_MAX_NODES]; /* from -> to enabled */
    uint64_t rng[SIMNET_MAX_NODES][SIMNET_MAX_NODES];
    unsigned pipelined[SIMNET_MAX_NODES][SIMNET_MAX_NODES]; /* sent, not yet awaited */
    uint32_t blocked[SIMNET_MAX_NODES][SIMNET_MAX_NODES];   /* bit t: requests of type t lost */
    struct sim_node nodes[SIMNET_MAX_NODES];
    struct endpoint *endpoints;
    struct delayed *queue;
    struct simnet_stats stats;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned below(uint64_t *rng, unsigned bound)
{
    return bound ? (unsigned)(splitmix(rng) % bound) : 0;
}

static unsigned scaled(struct simnet *net, unsigned ms)
{
    return (unsigned)(ms * net->scale + 0.5);
}

/* ---- message size and deep copy ---- */

size_t simnet_msg_bytes(const struct raft_msg *m)
{
    size_t bytes = 10; /* length, version, type, sender: as on the wire */
    switch (m->type) {
    case RAFT_MSG_REQUEST_VOTE:
        return bytes + 3 * 8 + 1;
    case RAFT_MSG_REQUEST_VOTE_REPLY:
        return bytes + 8 + 2;
    case RAFT_MSG_APPEND_ENTRIES:
        bytes += 4 * 8 + 4;
        for (uint32_t i = 0; i < m->u.ae.n_entries; i++)
            bytes += 8 + 1 + 4 + m->u.ae.entries[i].len;
        return bytes;
    case RAFT_MSG_APPEND_ENTRIES_REPLY:
        return bytes + 8 + 1 + 3 * 8;
    case RAFT_MSG_INSTALL_SNAPSHOT:
        return bytes + 5 * 8 + 4 + 1 + m->u.is.len;
    case RAFT_MSG_INSTALL_SNAPSHOT_REPLY:
        return bytes + 2 * 8;
    }
    return bytes;
}

static void msg_free(struct raft_msg *m)
{
    if (!m)
        return;
    if (m->type == RAFT_MSG_APPEND_ENTRIES) {
        for (uint32_t i = 0; i < m->u.ae.n_entries; i++)
            free(m->u.ae.entries[i].data);
        free(m->u.ae.entries);
    } else if (m->type == RAFT_MSG_INSTALL_SNAPSHOT) {
        free(m->u.is.data);
    }
    free(m);
}

static void *copy_bytes(const void *src, size_t len)
{
    if (len == 0)
        return NULL;
    void *dst = malloc(len);
    if (!dst)
        abort(); /* the harness does not survive out of memory */
    memcpy(dst, src, len);
    return dst;
}

/* A deep copy: the receiver must not see the sender's buffers, which the
 * sender reuses as soon as the call returns (like gob in the lab). */
static struct raft_msg *msg_clone(const struct raft_msg *src)
{
    struct raft_msg *m = copy_bytes(src, sizeof(*src));
    if (m->type == RAFT_MSG_APPEND_ENTRIES) {
        uint32_t count = src->u.ae.n_entries;
        m->u.ae.entries = count ? copy_bytes(src->u.ae.entries, count * sizeof(struct raft_entry))
                                : NULL;
        for (uint32_t i = 0; i < count; i++)
            m->u.ae.entries[i].data = copy_bytes(src->u.ae.entries[i].data,
                                                 src->u.ae.entries[i].len);
    } else if (m->type == RAFT_MSG_INSTALL_SNAPSHOT) {
        m->u.is.data = copy_bytes(src->u.is.data, src->u.is.len);
    }
    return m;
}

/* ---- state queries (net->mu held) ---- */

static bool endpoint_live_locked(struct simnet *net, const struct endpoint *ep)
{
    return !net->closing && ep->incarnation == net->nodes[ep->id].incarnation;
}

static bool usable_locked(struct simnet *net, unsigned from, unsigned to)
{
    return net->link[from][to] && net->nodes[to].alive && net->nodes[to].node;
}

/* A request the link carries: the link is up and its type is not blocked. */
static bool carries_locked(struct simnet *net, unsigned from, unsigned to, uint8_t type)
{
    return usable_locked(net, from, to) && !(type < 32 && (net->blocked[from][to] >> type & 1));
}

/* Sleeps until deadline_ms unless the caller's incarnation dies first.
 * Returns false if it did. */
static bool sleep_locked(struct simnet *net, const struct endpoint *ep, uint64_t deadline_ms)
{
    while (endpoint_live_locked(net, ep)) {
        if (now_ms() >= deadline_ms)
            return true;
        struct timespec ts = {.tv_sec = (time_t)(deadline_ms / 1000),
                              .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
        pthread_cond_timedwait(&net->wake, &net->mu, &ts);
    }
    return false;
}

static void delivered_locked(struct simnet *net, unsigned to)
{
    if (--net->nodes[to].inflight == 0)
        pthread_cond_broadcast(&net->idle);
}

static void enqueue_locked(struct simnet *net, struct delayed *d)
{
    struct delayed **p = &net->queue;
    while (*p && (*p)->due_ms <= d->due_ms)
        p = &(*p)->next;
    d->next = *p;
    *p = d;
    pthread_cond_signal(&net->work);
}

/* ---- the call ---- */

static int sim_call(void *ctx, uint32_t peer, const struct raft_msg *req,
                    struct raft_msg *reply, unsigned timeout_ms)
{
    struct endpoint *ep = ctx;
    struct simnet *net = ep->net;
    unsigned from = ep->id;
    uint64_t start = now_ms(), deadline = start + timeout_ms;
    size_t req_bytes = simnet_msg_bytes(req);

    pthread_mutex_lock(&net->mu);
    /* net->n grows as nodes join (simnet_add_node): read it locked. */
    if (peer >= net->n || peer == from) {
        pthread_mutex_unlock(&net->mu);
        return -EINVAL;
    }
    if (!endpoint_live_locked(net, ep)) {
        pthread_mutex_unlock(&net->mu);
        return -ESHUTDOWN; /* a zombie thread of a crashed node */
    }
    uint64_t *rng = &net->rng[from][peer];
    net->stats.rpcs++;
    net->stats.bytes += req_bytes;
    net->stats.rpcs_out[from]++;
    net->stats.bytes_out[from] += req_bytes;
    if (req->type < 8)
        net->stats.by_type[req->type]++;

    if (!net->reliable) {
        /* labrpc: a short delay, then 10% of requests are lost. */
        if (!sleep_locked(net, ep, now_ms() + scaled(net, below(rng, 27))))
            goto zombie;
        if (below(rng, 1000) < 100) {
            net->stats.dropped++;
            pthread_mutex_unlock(&net->mu);
            return -ETIMEDOUT;
        }
    }
    if (!carries_locked(net, from, peer, req->type)) {
        /* labrpc's long delay on a disabled end: the caller learns nothing
         * for a while, so a leader that calls peers one after the other
         * falls behind. */
        net->stats.failed++;
        uint64_t until = start + below(rng, timeout_ms + 1);
        if (!sleep_locked(net, ep, until))
            goto zombie;
        pthread_mutex_unlock(&net->mu);
        return until >= deadline ? -ETIMEDOUT : -ECONNREFUSED;
    }
    struct sim_node *target = &net->nodes[peer];
    struct raft_node *node = target->node;
    unsigned incarnation = target->incarnation;
    target->inflight++;
    net->stats.rpcs_in[peer]++;
    int dup = 0; /* 1: again at once, 2: again later */
    if (net->dup_permille && below(rng, 1000) < net->dup_permille)
        dup = 1 + (int)below(rng, 2);
    unsigned dup_delay = below(rng, 2 * timeout_ms + 1);
    pthread_mutex_unlock(&net->mu);

    struct raft_msg *copy = msg_clone(req);
    int rc = raft_receive(node, copy, reply);
    if (dup == 1) {
        /* The second copy's reply is the one the caller sees: as if the
         * first reply had been lost and the request sent again. */
        rc = raft_receive(node, copy, reply);
    }

    pthread_mutex_lock(&net->mu);
    if (dup == 1) {
        net->stats.duplicated++;
        net->stats.rpcs_in[peer]++;
    }
    delivered_locked(net, peer);
    if (dup == 2) {
        struct delayed *d = calloc(1, sizeof(*d));
        if (!d)
            abort();
        d->due_ms = now_ms() + dup_delay;
        d->from = from;
        d->to = peer;
        d->msg = copy;
        enqueue_locked(net, d);
        copy = NULL;
    }
    if (!endpoint_live_locked(net, ep))
        goto zombie_free;
    /* labrpc: the caller gets a failure if the server died or the link went
     * down while the handler ran; the handler's effects stay. */
    if (target->incarnation != incarnation || !usable_locked(net, from, peer)) {
        net->stats.failed++;
        pthread_mutex_unlock(&net->mu);
        msg_free(copy);
        return -ECONNRESET;
    }
    if (rc != 0) {
        pthread_mutex_unlock(&net->mu);
        msg_free(copy);
        return rc;
    }
    if (!net->reliable && below(rng, 1000) < 100) {
        net->stats.dropped++;
        pthread_mutex_unlock(&net->mu);
        msg_free(copy);
        return -ETIMEDOUT;
    }
    if (net->long_reordering && below(rng, 900) < 600) {
        /* labrpc: 200 ms plus a delay skewed short, up to about 2.2 s. */
        unsigned ms = scaled(net, 200 + below(rng, 1 + below(rng, 2000)));
        uint64_t until = now_ms() + ms;
        bool late = until > deadline;
        if (!sleep_locked(net, ep, late ? deadline : until))
            goto zombie_free;
        if (late) {
            pthread_mutex_unlock(&net->mu);
            msg_free(copy);
            return -ETIMEDOUT;
        }
    }
    net->stats.bytes += simnet_msg_bytes(reply);
    pthread_mutex_unlock(&net->mu);
    msg_free(copy);
    return 0;

zombie_free:
    pthread_mutex_unlock(&net->mu);
    msg_free(copy);
    return -ESHUTDOWN;
zombie:
    pthread_mutex_unlock(&net->mu);
    return -ESHUTDOWN;
}

/* One iteration: wait for the earliest delayed duplicate to fall due, then
 * deliver it if its link still works (its reply goes nowhere). */
static void *duplicate_worker_main(void *arg)
{
    struct simnet *net = arg;
    pthread_mutex_lock(&net->mu);
    while (!net->closing) {
        struct delayed *d = net->queue;
        if (!d) {
            pthread_cond_wait(&net->work, &net->mu);
            continue;
        }
        uint64_t now = now_ms();
        if (now < d->due_ms) {
            struct timespec ts = {.tv_sec = (time_t)(d->due_ms / 1000),
                                  .tv_nsec = (long)(d->due_ms % 1000) * 1000000};
            pthread_cond_timedwait(&net->work, &net->mu, &ts);
            continue;
        }
        net->queue = d->next;
        if (carries_locked(net, d->from, d->to, d->msg->type)) {
            struct sim_node *target = &net->nodes[d->to];
            struct raft_node *node = target->node;
            target->inflight++;
            net->stats.rpcs_in[d->to]++;
            net->stats.duplicated++;
            pthread_mutex_unlock(&net->mu);
            struct raft_msg reply;
            raft_receive(node, d->msg, &reply);
            pthread_mutex_lock(&net->mu);
            delivered_locked(net, d->to);
        }
        msg_free(d->msg);
        free(d);
    }
    pthread_mutex_unlock(&net->mu);
    return NULL;
}

/* ---- life cycle ---- */

struct simnet *simnet_new(unsigned n_nodes, uint64_t seed, double time_scale)
{
    if (n_nodes == 0 || n_nodes > SIMNET_MAX_NODES)
        return NULL;
    struct simnet *net = calloc(1, sizeof(*net));
    if (!net)
        return NULL;
    net->n = n_nodes;
    net->scale = time_scale > 0 ? time_scale : 1.0;
    net->reliable = true;
    pthread_mutex_init(&net->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&net->wake, &ca);
    pthread_cond_init(&net->idle, &ca);
    pthread_cond_init(&net->work, &ca);
    pthread_condattr_destroy(&ca);
    /* Every link gets its generator now, those of nodes that join later
     * (simnet_add_node) too; only the first n_nodes start connected. */
    for (unsigned i = 0; i < SIMNET_MAX_NODES; i++) {
        net->nodes[i].connected = i < n_nodes;
        for (unsigned j = 0; j < SIMNET_MAX_NODES; j++) {
            net->link[i][j] = i != j && i < n_nodes && j < n_nodes;
            uint64_t s = seed ^ (0x51ed2701ull * (i * SIMNET_MAX_NODES + j + 1));
            net->rng[i][j] = splitmix(&s);
        }
    }
    if (pthread_create(&net->worker, NULL, duplicate_worker_main, net)) {
        free(net);
        return NULL;
    }
    return net;
}

void simnet_free(struct simnet *net)
{
    if (!net)
        return;
    pthread_mutex_lock(&net->mu);
    net->closing = true;
    pthread_cond_broadcast(&net->wake);
    pthread_cond_broadcast(&net->work);
    pthread_mutex_unlock(&net->mu);
    pthread_join(net->worker, NULL);
    while (net->queue) {
        struct delayed *d = net->queue;
        net->queue = d->next;
        msg_free(d->msg);
        free(d);
    }
    while (net->endpoints) {
        struct endpoint *ep = net->endpoints;
        net->endpoints = ep->next;
        free(ep);
    }
    pthread_cond_destroy(&net->wake);
    pthread_cond_destroy(&net->idle);
    pthread_cond_destroy(&net->work);
    pthread_mutex_destroy(&net->mu);
    free(net);
}

/* Pipelining: send() only copies the request; await() delivers it like a
 * call. Requests in flight at once therefore race to the peer and may
 * arrive in any order, as on the lab's network. */
struct sim_ticket {
    uint32_t peer;
    struct raft_msg *req;
};

static int sim_send(void *ctx, uint32_t peer, const struct raft_msg *req, uint64_t *ticket,
                    unsigned timeout_ms)
{
    (void)timeout_ms;
    struct endpoint *ep = ctx;
    struct simnet *net = ep->net;
    pthread_mutex_lock(&net->mu);
    if (peer >= net->n || peer == ep->id) {
        pthread_mutex_unlock(&net->mu);
        return -EINVAL;
    }
    struct sim_ticket *t = malloc(sizeof(*t));
    if (!t)
        abort();
    t->peer = peer;
    t->req = msg_clone(req);
    *ticket = (uint64_t)(uintptr_t)t;
    unsigned *n = &net->pipelined[ep->id][peer];
    if (++*n > net->stats.max_pipelined)
        net->stats.max_pipelined = *n;
    pthread_mutex_unlock(&net->mu);
    return 0;
}

static int sim_await(void *ctx, uint32_t peer, uint64_t ticket, struct raft_msg *reply,
                     unsigned timeout_ms)
{
    struct endpoint *ep = ctx;
    struct sim_ticket *t = (struct sim_ticket *)(uintptr_t)ticket;
    int rc = t->peer == peer ? sim_call(ctx, peer, t->req, reply, timeout_ms) : -EINVAL;
    pthread_mutex_lock(&ep->net->mu);
    ep->net->pipelined[ep->id][t->peer]--;
    pthread_mutex_unlock(&ep->net->mu);
    msg_free(t->req);
    free(t);
    return rc;
}

struct raft_transport simnet_endpoint(struct simnet *net, unsigned id)
{
    struct endpoint *ep = calloc(1, sizeof(*ep));
    if (!ep)
        abort();
    pthread_mutex_lock(&net->mu);
    ep->net = net;
    ep->id = id;
    ep->incarnation = net->nodes[id].incarnation;
    ep->next = net->endpoints;
    net->endpoints = ep;
    pthread_mutex_unlock(&net->mu);
    struct raft_transport t = {.ctx = ep, .call = sim_call, .send = sim_send,
                               .await = sim_await};
    return t;
}

int simnet_add_node(struct simnet *net)
{
    pthread_mutex_lock(&net->mu);
    int id = net->n < SIMNET_MAX_NODES ? (int)net->n++ : -1;
    pthread_mutex_unlock(&net->mu);
    return id;
}

unsigned simnet_n(struct simnet *net)
{
    pthread_mutex_lock(&net->mu);
    unsigned n = net->n;
    pthread_mutex_unlock(&net->mu);
    return n;
}

void simnet_attach(struct simnet *net, unsigned id, struct raft_node *node)
{
    pthread_mutex_lock(&net->mu);
    net->nodes[id].node = node;
    net->nodes[id].alive = true;
    pthread_mutex_unlock(&net->mu);
}

void simnet_crash(struct simnet *net, unsigned id)
{
    pthread_mutex_lock(&net->mu);
    struct sim_node *sn = &net->nodes[id];
    sn->alive = false;
    sn->incarnation++;
    pthread_cond_broadcast(&net->wake); /* zombie sleepers return now */
    while (sn->inflight > 0)
        pthread_cond_wait(&net->idle, &net->mu);
    sn->node = NULL;
    pthread_mutex_unlock(&net->mu);
}

/* ---- links ---- */

void simnet_connect(struct simnet *net, unsigned id)
{
    pthread_mutex_lock(&net->mu);
    net->nodes[id].connected = true;
    for (unsigned j = 0; j < net->n; j++)
        if (j != id && net->nodes[j].connected)
            net->link[id][j] = net->link[j][id] = true;
    pthread_mutex_unlock(&net->mu);
}

void simnet_disconnect(struct simnet *net, unsigned id)
{
    pthread_mutex_lock(&net->mu);
    net->nodes[id].connected = false;
    for (unsigned j = 0; j < net->n; j++)
        net->link[id][j] = net->link[j][id] = false;
    pthread_mutex_unlock(&net->mu);
}

bool simnet_is_connected(struct simnet *net, unsigned id)
{
    pthread_mutex_lock(&net->mu);
    bool c = net->nodes[id].connected;
    pthread_mutex_unlock(&net->mu);
    return c;
}

void simnet_partition(struct simnet *net, const unsigned *group_of)
{
    pthread_mutex_lock(&net->mu);
    for (unsigned i = 0; i < net->n; i++) {
        net->nodes[i].connected = true;
        for (unsigned j = 0; j < net->n; j++)
            net->link[i][j] = i != j && group_of[i] == group_of[j];
    }
    pthread_mutex_unlock(&net->mu);
}

void simnet_set_link(struct simnet *net, unsigned from, unsigned to, bool enabled)
{
    pthread_mutex_lock(&net->mu);
    if (from != to)
        net->link[from][to] = enabled;
    pthread_mutex_unlock(&net->mu);
}

void simnet_block_types(struct simnet *net, unsigned from, unsigned to, uint32_t types)
{
    pthread_mutex_lock(&net->mu);
    net->blocked[from][to] = types;
    pthread_mutex_unlock(&net->mu);
}

bool simnet_link(struct simnet *net, unsigned from, unsigned to)
{
    pthread_mutex_lock(&net->mu);
    bool on = net->link[from][to];
    pthread_mutex_unlock(&net->mu);
    return on;
}

/* ---- faults and counters ---- */

void simnet_set_reliable(struct simnet *net, bool reliable)
{
    pthread_mutex_lock(&net->mu);
    net->reliable = reliable;
    pthread_mutex_unlock(&net->mu);
}

void simnet_set_long_reordering(struct simnet *net, bool on)
{
    pthread_mutex_lock(&net->mu);
    net->long_reordering = on;
    pthread_mutex_unlock(&net->mu);
}

void simnet_set_duplicate(struct simnet *net, unsigned permille)
{
    pthread_mutex_lock(&net->mu);
    net->dup_permille = permille > 1000 ? 1000 : permille;
    pthread_mutex_unlock(&net->mu);
}

void simnet_stats(struct simnet *net, struct simnet_stats *out)
{
    pthread_mutex_lock(&net->mu);
    *out = net->stats;
    pthread_mutex_unlock(&net->mu);
}
