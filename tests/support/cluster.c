/*
 * cluster.c - the lab harness's life cycle, parameters and faults (see
 * cluster.h); the test-facing operations and the lab's helpers are in
 * cluster_ops.c, the log rings and failure reports in cluster_report.c, the
 * checks and the state machine in checks.c.
 *
 * It follows the lab's config.go: start1 builds a fresh node over the saved
 * storage with a fresh network endpoint and does not connect it; crash1
 * disconnects the node, waits until no handler runs in it, cuts its storage
 * off (what was acknowledged stays), then stops it.
 */
#include "tests/support/cluster_internal.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

uint64_t lab_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_real_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- parameters ---- */

unsigned cluster_n(struct cluster *c)
{
    return c->n;
}

uint64_t cluster_seed(struct cluster *c)
{
    return c->seed;
}

unsigned cluster_rand(struct cluster *c, unsigned bound)
{
    pthread_mutex_lock(&c->rng_mu);
    uint64_t x = splitmix(&c->rng);
    pthread_mutex_unlock(&c->rng_mu);
    return bound ? (unsigned)(x % bound) : 0;
}

unsigned cluster_ms(struct cluster *c, unsigned lab_ms)
{
    return (unsigned)(lab_ms * c->scale + 0.5);
}

void cluster_sleep(struct cluster *c, unsigned lab_ms)
{
    uint64_t until = lab_now_ms() + cluster_ms(c, lab_ms);
    for (;;) {
        cluster_check(c);
        uint64_t now = lab_now_ms();
        if (now >= until)
            return;
        sleep_real_ms(until - now < 20 ? (unsigned)(until - now) : 20);
    }
}

static uint64_t pick_seed(void)
{
    const char *env = getenv("RAFT_SEED");
    if (env && *env)
        return strtoull(env, NULL, 0);
    static uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec +
                 ((uint64_t)getpid() << 40) + ++counter;
    return splitmix(&s) % 1000000000ull; /* short enough to type */
}

static double env_scale(void)
{
    const char *env = getenv("RAFT_TIME_SCALE");
    double x = env && *env ? strtod(env, NULL) : 1.0;
    return x > 0.05 ? x : 1.0;
}

/* ---- nodes ---- */

static struct raft_config node_config(struct cluster *c, unsigned i, unsigned incarnation)
{
    struct raft_config cfg;
    /* The first n_boot nodes share the bootstrap configuration; a node that
     * joined later has none and learns its configuration from the leader,
     * or from its own storage once it has one (thesis ch. 4). */
    raft_config_defaults(&cfg, i, i < c->n_boot ? c->n_boot : 0);
    cfg.heartbeat_ms = cluster_ms(c, LAB_HEARTBEAT_MS);
    cfg.election_timeout_min_ms = cluster_ms(c, LAB_ELECTION_MIN_MS);
    cfg.election_timeout_max_ms = cluster_ms(c, LAB_ELECTION_MAX_MS);
    cfg.snapshot_every = c->opts.snapshot_every;
    if (cfg.snapshot_every == 0)
        cfg.snapshot_log_min_bytes = 0; /* never */
    if (c->opts.snapshot_chunk_bytes)
        cfg.snapshot_chunk_bytes = c->opts.snapshot_chunk_bytes;
    if (c->opts.max_batch_bytes)
        cfg.max_batch_bytes = c->opts.max_batch_bytes;
    cfg.pre_vote = !c->opts.no_pre_vote;
    cfg.check_quorum = !c->opts.no_check_quorum;
    cfg.lease_reads = !c->opts.no_lease_reads;
    cfg.seed = c->seed * 1000003u + incarnation * 7919u; /* the node adds its id */
    cfg.log_level = c->level;
    cfg.log_line = lab_log_line;
    cfg.log_ctx = &c->slots[i];
    cfg.trace_path = lab_trace_path(c, i);
    return cfg;
}

void cluster_crash(struct cluster *c, unsigned i)
{
    struct slot *s = &c->slots[i];
    simnet_disconnect(c->net, i);
    /* No handler runs in the node after this, and its endpoint is dead. */
    simnet_crash(c->net, i);
    struct raft_node *n = s->node;
    if (!n)
        return;
    cluster_note_node(c, i, "crash n%u (its storage keeps what it acknowledged)", i);
    raft_begin_stop(n);
    memstore_crash(s->store); /* the power goes: later writes are lost */
    pthread_rwlock_wrlock(&s->lock);
    s->node = NULL;
    pthread_rwlock_unlock(&s->lock);
    atomic_store(&c->stopping_since_ms, lab_now_ms());
    atomic_store(&c->stopping_node, (int)i);
    raft_stop(n);
    atomic_store(&c->stopping_node, -1);
}

void cluster_start1(struct cluster *c, unsigned i)
{
    struct slot *s = &c->slots[i];
    if (s->node)
        cluster_crash(c, i);
    unsigned incarnation = s->incarnation + 1;
    cluster_note_node(c, i, "start n%u (incarnation %u) from its storage", i, incarnation);
    struct raft_config cfg = node_config(c, i, incarnation);
    struct raft_transport transport = simnet_endpoint(c->net, i);
    struct raft_storage storage = votes_tap(c, i, memstore_storage(s->store));
    struct raft_fsm fsm = lab_fsm_new(c, i, incarnation);
    struct raft_node *n = NULL;
    pthread_rwlock_wrlock(&s->lock);
    s->incarnation = incarnation;
    s->kv = ((struct lab_fsm *)fsm.ctx)->kv;
    pthread_rwlock_unlock(&s->lock);
    int rc = raft_start(&n, &cfg, &transport, &storage, &fsm);
    if (rc)
        cluster_fatal(c, "raft_start of n%u failed: %s", i, strerror(-rc));
    pthread_rwlock_wrlock(&s->lock);
    s->node = n;
    pthread_rwlock_unlock(&s->lock);
    simnet_attach(c->net, i, n);
}

unsigned cluster_start_joining(struct cluster *c)
{
    int id = simnet_add_node(c->net);
    if (id < 0)
        cluster_fatal(c, "cannot start another node: the harness holds %d at most",
                      RAFT_MAX_NODES);
    cluster_note(c, "n%d joins: a server in no configuration, waiting to be added", id);
    atomic_store(&c->n, (unsigned)id + 1); /* its slot was made ready by cluster_new */
    cluster_start1(c, (unsigned)id);
    cluster_connect(c, (unsigned)id);
    return (unsigned)id;
}

void cluster_connect(struct cluster *c, unsigned i)
{
    cluster_note_node(c, i, "connect n%u", i);
    simnet_connect(c->net, i);
}

void cluster_disconnect(struct cluster *c, unsigned i)
{
    cluster_note_node(c, i, "disconnect n%u", i);
    simnet_disconnect(c->net, i);
}

bool cluster_alive(struct cluster *c, unsigned i)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    bool up = s->node != NULL;
    pthread_rwlock_unlock(&s->lock);
    return up;
}

bool cluster_connected(struct cluster *c, unsigned i)
{
    return cluster_alive(c, i) && simnet_is_connected(c->net, i);
}

void cluster_partition(struct cluster *c, const unsigned *group_of)
{
    char buf[64];
    size_t off = 0;
    for (unsigned i = 0; i < c->n && off < sizeof(buf); i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, " n%u:%u", i, group_of[i]);
    cluster_note(c, "partition (node:group)%s", buf);
    simnet_partition(c->net, group_of);
}

void cluster_set_reliable(struct cluster *c, bool reliable)
{
    cluster_note(c, "network %s", reliable ? "reliable" : "unreliable");
    simnet_set_reliable(c->net, reliable);
}

void cluster_set_long_reordering(struct cluster *c, bool on)
{
    cluster_note(c, "long reordering %s", on ? "on" : "off");
    simnet_set_long_reordering(c->net, on);
}

void cluster_set_duplicate(struct cluster *c, unsigned permille)
{
    cluster_note(c, "duplicate %u per mille of requests", permille);
    simnet_set_duplicate(c->net, permille);
}

struct simnet *cluster_net(struct cluster *c)
{
    return c->net;
}

struct memstore *cluster_store(struct cluster *c, unsigned i)
{
    return c->slots[i].store;
}

/* ---- life cycle ---- */

struct cluster *cluster_new(void **state, const char *part, const char *desc,
                            const struct cluster_opts *opts)
{
    struct cluster *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->opts = *opts;
    assert_true(opts->n >= 1 && opts->n <= RAFT_MAX_NODES);
    atomic_init(&c->n, opts->n);
    c->n_boot = opts->n;
    /* A snapshot holds only the checker's state, not the key-value store. */
    assert_true(!opts->kv || opts->snapshot_every == 0);
    snprintf(c->part, sizeof(c->part), "%s", part);
    snprintf(c->desc, sizeof(c->desc), "%s", desc);
    c->seed = pick_seed();
    c->rng = c->seed;
    c->test_thread = pthread_self();
    pthread_mutex_init(&c->rng_mu, NULL);
    c->scale = env_scale();
    const char *v = getenv("RAFT_VERBOSE");
    c->verbose = v && *v ? atoi(v) : 0;
    c->level = c->verbose >= 3 ? RAFT_LOG_TRACE : c->verbose == 2 ? RAFT_LOG_DEBUG : RAFT_LOG_INFO;
    pthread_mutex_init(&c->ck, NULL);
    pthread_mutex_init(&c->leaders_mu, NULL);
    pthread_mutex_init(&c->votes_mu, NULL);
    pthread_mutex_init(&c->fail_mu, NULL);
    pthread_mutex_init(&c->mon_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->mon_cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&c->failed, false);
    atomic_init(&c->stopping_node, -1);
    atomic_init(&c->stopping_since_ms, 0);
    ring_init(&c->events);
    /* Every slot is ready from the start, for nodes that join later too. */
    for (unsigned i = 0; i < RAFT_MAX_NODES; i++) {
        struct slot *s = &c->slots[i];
        s->id = i;
        s->c = c;
        pthread_rwlock_init(&s->lock, NULL);
        ring_init(&s->ring);
        s->store = memstore_new(i, checks_storage_violation, s);
        checks_watch_store(c, s->store);
    }
    c->net = simnet_new(c->n, c->seed, c->scale);
    if (!c->net)
        abort();
    simnet_set_reliable(c->net, !opts->unreliable);
    *state = c;
    lab_traces_begin(c);
    fatal_banner_set(c);
    fatal_handler_install();

    printf("Test (%s): %s ...\n", part, desc);
    printf("  seed %llu (replay: RAFT_SEED=%llu)%s\n", (unsigned long long)c->seed,
           (unsigned long long)c->seed, c->scale != 1.0 ? ", time scaled" : "");
    fflush(stdout);
    c->t0_ms = lab_now_ms();
    cluster_note(c, "%u nodes, %s network, seed %llu", c->n,
                 opts->unreliable ? "unreliable" : "reliable", (unsigned long long)c->seed);
    monitor_start(c);
    for (unsigned i = 0; i < c->n; i++) {
        cluster_start1(c, i);
        cluster_connect(c, i);
    }
    return c;
}

static void cluster_free(struct cluster *c)
{
    for (unsigned i = 0; i < c->n; i++)
        cluster_crash(c, i);
    lab_traces_end(c); /* the nodes have closed their traces */
    monitor_stop(c);
    simnet_free(c->net);
    for (unsigned i = 0; i < RAFT_MAX_NODES; i++) {
        memstore_free(c->slots[i].store);
        pthread_rwlock_destroy(&c->slots[i].lock);
        pthread_mutex_destroy(&c->slots[i].ring.mu);
    }
    checks_free(c);
    pthread_mutex_destroy(&c->events.mu);
    pthread_mutex_destroy(&c->ck);
    pthread_mutex_destroy(&c->rng_mu);
    pthread_mutex_destroy(&c->leaders_mu);
    pthread_mutex_destroy(&c->votes_mu);
    pthread_mutex_destroy(&c->fail_mu);
    pthread_mutex_destroy(&c->mon_mu);
    pthread_cond_destroy(&c->mon_cond);
    free(c);
}

int cluster_teardown(void **state)
{
    struct cluster *c = *state;
    if (c) {
        fatal_handler_install(); /* cmocka's own is in place again (cluster_report.c) */
        cluster_free(c);
    }
    fatal_banner_clear();
    *state = NULL;
    return 0;
}

void cluster_end(struct cluster *c)
{
    cluster_check(c);
    checks_log_matching(c);
    cluster_check(c);
    struct simnet_stats st;
    simnet_stats(c->net, &st);
    double secs = (lab_now_ms() - c->t0_ms) / 1000.0;
    printf("  ... Passed --  %5.1f s  %u peers  %5llu RPCs  %9llu bytes  %4llu agreements\n",
           secs, c->n, (unsigned long long)(st.rpcs - c->rpcs0),
           (unsigned long long)(st.bytes - c->bytes0),
           (unsigned long long)(cluster_max_applied(c) - c->max0));
    fflush(stdout);
    c->ended = true;
}
