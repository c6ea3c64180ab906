/*
 * cluster.c - the lab harness's life cycle, faults and helpers (see
 * cluster.h); the checks and the state machine are in checks.c.
 *
 * It follows the lab's config.go: start1 builds a fresh node over the saved
 * storage with a fresh network endpoint and does not connect it; crash1
 * disconnects the node, waits until no handler runs in it, cuts its storage
 * off (what was acknowledged stays), then stops it.
 */
#include "tests/support/cluster_internal.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
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

/* ---- log rings ---- */

static void ring_init(struct ring *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
}

void ring_push(struct ring *r, const char *line)
{
    pthread_mutex_lock(&r->mu);
    snprintf(r->lines[r->next], RING_LINE_MAX, "%s", line);
    r->next = (r->next + 1) % RING_LINES;
    if (r->count < RING_LINES)
        r->count++;
    pthread_mutex_unlock(&r->mu);
}

void ring_print(struct ring *r, const char *title)
{
    pthread_mutex_lock(&r->mu);
    fprintf(stderr, "--- %s (last %u lines)\n", title, r->count);
    for (unsigned k = 0; k < r->count; k++)
        fprintf(stderr, "%s\n", r->lines[(r->next + RING_LINES - r->count + k) % RING_LINES]);
    pthread_mutex_unlock(&r->mu);
}

static void on_log_line(void *ctx, uint32_t node, enum raft_log_level level, const char *line)
{
    (void)level;
    struct slot *s = ctx;
    ring_push(&s->ring, line);
    if (s->c->verbose)
        raft_print_log_line(node, line);
}

static void vnote(struct cluster *c, int node, const char *fmt, va_list ap)
{
    char msg[200], line[RING_LINE_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    snprintf(line, sizeof(line), "%7.3f  harness: %s", raft_uptime(), msg);
    ring_push(&c->events, line);
    if (node >= 0)
        ring_push(&c->slots[node].ring, line);
    if (c->verbose)
        fprintf(stderr, "%s\n", line);
}

void cluster_note(struct cluster *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(c, -1, fmt, ap);
    va_end(ap);
}

static void note_node(struct cluster *c, unsigned i, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void note_node(struct cluster *c, unsigned i, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(c, (int)i, fmt, ap);
    va_end(ap);
}

/* ---- failures ---- */

static void print_rings_locked(struct cluster *c, uint32_t nodes)
{
    ring_print(&c->events, "harness steps");
    for (unsigned i = 0; i < c->n; i++)
        if (nodes & (1u << i)) {
            char title[32];
            snprintf(title, sizeof(title), "n%u log", i);
            ring_print(&c->slots[i].ring, title);
        }
}

static void print_header_locked(struct cluster *c, const char *what, const char *msg)
{
    fflush(stdout);
    fprintf(stderr, "\n=== %s in \"%s\" (%s), %.1f s in: %s\n", what, c->desc, c->part,
            (lab_now_ms() - c->t0_ms) / 1000.0, msg);
    fprintf(stderr, "    seed %llu: replay with RAFT_SEED=%llu\n",
            (unsigned long long)c->seed, (unsigned long long)c->seed);
}

void cluster_violation(struct cluster *c, uint32_t nodes, const char *fmt, ...)
{
    char msg[sizeof(c->fail_msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->fail_mu);
    c->violations++;
    if (!atomic_load(&c->failed)) {
        snprintf(c->fail_msg, sizeof(c->fail_msg), "%s", msg);
        print_header_locked(c, "CHECK FAILED", msg);
        print_rings_locked(c, nodes);
        fprintf(stderr, "=== end of report\n");
        atomic_store(&c->failed, true);
    } else if (c->violations <= 10) {
        fprintf(stderr, "=== and also: %s\n", msg);
    }
    pthread_mutex_unlock(&c->fail_mu);
}

/* cmocka's failure unwinds the test thread; any other thread that finds a
 * failure just ends, and the test fails at its next check (it joins its
 * threads first). */
static void fail_here(struct cluster *c, const char *msg) __attribute__((noreturn));

static void fail_here(struct cluster *c, const char *msg)
{
    if (!pthread_equal(pthread_self(), c->test_thread))
        pthread_exit(NULL);
    fail_msg("%s (seed %llu)", msg, (unsigned long long)c->seed);
    abort(); /* fail_msg does not return */
}

void cluster_check(struct cluster *c)
{
    if (atomic_load(&c->failed)) {
        char msg[sizeof(c->fail_msg)];
        pthread_mutex_lock(&c->fail_mu);
        snprintf(msg, sizeof(msg), "%s", c->fail_msg);
        pthread_mutex_unlock(&c->fail_mu);
        fail_here(c, msg);
    }
}

static void print_status_table(struct cluster *c)
{
    fprintf(stderr, "--- nodes\n");
    for (unsigned i = 0; i < c->n; i++) {
        struct raft_status st;
        uint64_t term;
        int32_t vote;
        memstore_term_vote(c->slots[i].store, &term, &vote);
        if (cluster_status(c, i, &st))
            fprintf(stderr, "  n%u  %-13s T%-4llu commit %-5llu applied %-5llu last %-5llu "
                    "snapshot %-5llu %s\n", i, raft_role_name(st.role),
                    (unsigned long long)st.term, (unsigned long long)st.commit,
                    (unsigned long long)st.applied, (unsigned long long)st.last_index,
                    (unsigned long long)st.snapshot_index,
                    simnet_is_connected(c->net, i) ? "connected" : "disconnected");
        else
            fprintf(stderr, "  n%u  crashed (stored T%llu)\n", i, (unsigned long long)term);
    }
}

void cluster_fatal(struct cluster *c, const char *fmt, ...)
{
    char msg[sizeof(c->fail_msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->fail_mu);
    print_header_locked(c, "FAILED", msg);
    if (atomic_load(&c->failed))
        fprintf(stderr, "    (after an earlier failed check: %s)\n", c->fail_msg);
    pthread_mutex_unlock(&c->fail_mu);
    print_status_table(c); /* takes node locks: not under fail_mu */
    pthread_mutex_lock(&c->fail_mu);
    print_rings_locked(c, (1u << c->n) - 1);
    fprintf(stderr, "=== end of report\n");
    if (!atomic_load(&c->failed)) {
        snprintf(c->fail_msg, sizeof(c->fail_msg), "%s", msg);
        atomic_store(&c->failed, true);
    }
    pthread_mutex_unlock(&c->fail_mu);
    fail_here(c, msg);
}

/* ---- fatal signals ----
 *
 * A crash in any thread (a node's, the network's, the monitor's) ends the
 * whole suite binary; the handler names the test that was running before
 * the process dies. It only write(2)s a buffer cluster_new filled, then
 * restores the default action and re-raises the signal, so the exit status
 * still shows the crash. cmocka 1.1 sets its own handlers for SIGSEGV,
 * SIGBUS, SIGFPE and SIGILL around every test, setup and teardown, and puts
 * back the previous ones after each: cluster_new and cluster_teardown
 * therefore install this one again each time. */

static char fatal_banner[512];
static atomic_size_t fatal_banner_len;
static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

static void write_all(const char *p, size_t len)
{
    while (len) {
        ssize_t k = write(STDERR_FILENO, p, len);
        if (k <= 0)
            return;
        p += k;
        len -= (size_t)k;
    }
}

static void write_str(const char *p)
{
    size_t len = 0;
    while (p[len])
        len++;
    write_all(p, len);
}

static void on_fatal_signal(int sig)
{
    const char *name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS"
                       : sig == SIGFPE ? "SIGFPE" : sig == SIGILL ? "SIGILL"
                       : sig == SIGABRT ? "SIGABRT" : "signal";
    char num[8];
    size_t k = sizeof(num);
    num[--k] = '\0';
    unsigned v = (unsigned)sig;
    do
        num[--k] = (char)('0' + v % 10);
    while ((v /= 10) && k);
    write_str("\n=== FATAL ");
    write_str(name);
    write_str(" (signal ");
    write_str(num + k);
    write_str(") in the test:\n");
    size_t len = atomic_load(&fatal_banner_len);
    if (len)
        write_all(fatal_banner, len);
    else
        write_str("    (no test was running)\n");
    write_str("=== the process dies of it; the tests after this one do not run\n");
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_fatal_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NODEFER; /* the re-raise takes effect at once */
    for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++)
        sigaction(fatal_signals[i], &sa, NULL);
}

/* What the handler prints: the banner and seed cluster_new printed. */
static void set_fatal_banner(struct cluster *c)
{
    atomic_store(&fatal_banner_len, 0);
    int k = snprintf(fatal_banner, sizeof(fatal_banner),
                     "    Test (%s): %s\n    seed %llu (replay: RAFT_SEED=%llu)\n", c->part,
                     c->desc, (unsigned long long)c->seed, (unsigned long long)c->seed);
    if (k < 0)
        return;
    atomic_store(&fatal_banner_len, (size_t)k < sizeof(fatal_banner) ? (size_t)k
                                                                     : sizeof(fatal_banner) - 1);
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
    raft_config_defaults(&cfg, i, c->n);
    cfg.heartbeat_ms = cluster_ms(c, LAB_HEARTBEAT_MS);
    cfg.election_timeout_min_ms = cluster_ms(c, LAB_ELECTION_MIN_MS);
    cfg.election_timeout_max_ms = cluster_ms(c, LAB_ELECTION_MAX_MS);
    cfg.snapshot_every = c->opts.snapshot_every;
    if (c->opts.snapshot_chunk_bytes)
        cfg.snapshot_chunk_bytes = c->opts.snapshot_chunk_bytes;
    if (c->opts.max_batch_bytes)
        cfg.max_batch_bytes = c->opts.max_batch_bytes;
    cfg.pre_vote = !c->opts.no_pre_vote;
    cfg.check_quorum = !c->opts.no_check_quorum;
    cfg.lease_reads = !c->opts.no_lease_reads;
    cfg.seed = c->seed * 1000003u + incarnation * 7919u; /* the node adds its id */
    cfg.log_level = c->level;
    cfg.log_line = on_log_line;
    cfg.log_ctx = &c->slots[i];
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
    note_node(c, i, "crash n%u (its storage keeps what it acknowledged)", i);
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
    note_node(c, i, "start n%u (incarnation %u) from its storage", i, incarnation);
    struct raft_config cfg = node_config(c, i, incarnation);
    struct raft_transport transport = simnet_endpoint(c->net, i);
    struct raft_storage storage = memstore_storage(s->store);
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

void cluster_connect(struct cluster *c, unsigned i)
{
    note_node(c, i, "connect n%u", i);
    simnet_connect(c->net, i);
}

void cluster_disconnect(struct cluster *c, unsigned i)
{
    note_node(c, i, "disconnect n%u", i);
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
    c->n = opts->n;
    assert_true(c->n >= 1 && c->n <= RAFT_MAX_NODES);
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
    for (unsigned i = 0; i < c->n; i++) {
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
    set_fatal_banner(c);
    install_fatal_handler();

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
    monitor_stop(c);
    simnet_free(c->net);
    for (unsigned i = 0; i < c->n; i++) {
        memstore_free(c->slots[i].store);
        pthread_rwlock_destroy(&c->slots[i].lock);
        pthread_mutex_destroy(&c->slots[i].ring.mu);
    }
    checks_free(c);
    pthread_mutex_destroy(&c->events.mu);
    pthread_mutex_destroy(&c->ck);
    pthread_mutex_destroy(&c->rng_mu);
    pthread_mutex_destroy(&c->leaders_mu);
    pthread_mutex_destroy(&c->fail_mu);
    pthread_mutex_destroy(&c->mon_mu);
    pthread_cond_destroy(&c->mon_cond);
    free(c);
}

int cluster_teardown(void **state)
{
    struct cluster *c = *state;
    if (c) {
        install_fatal_handler(); /* cmocka's own is in place again (see above) */
        cluster_free(c);
    }
    atomic_store(&fatal_banner_len, 0);
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
}

/* ---- observation ---- */

bool cluster_status(struct cluster *c, unsigned i, struct raft_status *st)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    bool up = s->node != NULL;
    if (up)
        raft_get_status(s->node, st);
    pthread_rwlock_unlock(&s->lock);
    if (up && st->role == RAFT_LEADER)
        checks_record_leader(c, i, st->term);
    return up;
}

bool cluster_get_state(struct cluster *c, unsigned i, uint64_t *term, bool *is_leader)
{
    struct raft_status st;
    if (!cluster_status(c, i, &st))
        return false;
    *term = st.term;
    *is_leader = st.role == RAFT_LEADER;
    return true;
}

int cluster_deliver(struct cluster *c, unsigned i, const struct raft_msg *req,
                    struct raft_msg *reply)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_receive(s->node, req, reply) : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

struct kv *cluster_kv(struct cluster *c, unsigned i)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    struct kv *kv = s->kv;
    pthread_rwlock_unlock(&s->lock);
    if (!kv)
        cluster_fatal(c, "cluster_kv(n%u) without opts.kv", i);
    return kv;
}

/* A crash takes the slot's write lock only after raft_begin_stop, which
 * makes these calls return: holding the read lock while they block is safe. */
int cluster_read_barrier(struct cluster *c, unsigned i, unsigned timeout_ms,
                         int32_t *leader_hint)
{
    struct slot *s = &c->slots[i];
    *leader_hint = RAFT_NO_NODE;
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_read_barrier(s->node, timeout_ms, leader_hint) : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int cluster_wait_applied(struct cluster *c, unsigned i, uint64_t index, uint64_t term,
                         unsigned timeout_ms)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_wait_applied(s->node, index, term, timeout_ms) : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int cluster_transfer(struct cluster *c, unsigned i, int32_t target, unsigned timeout_ms,
                     int32_t *leader_hint, char *why, size_t why_cap)
{
    struct slot *s = &c->slots[i];
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_transfer(s->node, target, timeout_ms, leader_hint, why, why_cap)
                     : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

unsigned cluster_check_one_leader(struct cluster *c)
{
    for (int iters = 0; iters < 10; iters++) {
        cluster_sleep(c, 450 + cluster_rand(c, 100));
        uint64_t terms[RAFT_MAX_NODES];
        unsigned leaders = 0;
        for (unsigned i = 0; i < c->n; i++) {
            struct raft_status st;
            if (cluster_connected(c, i) && cluster_status(c, i, &st) &&
                st.role == RAFT_LEADER)
                terms[leaders++] = st.term | (uint64_t)i << 56;
        }
        uint64_t best_term = 0;
        int best = -1;
        for (unsigned a = 0; a < leaders; a++) {
            uint64_t term = terms[a] & ((1ull << 56) - 1);
            unsigned same = 0;
            for (unsigned b = 0; b < leaders; b++)
                same += (terms[b] & ((1ull << 56) - 1)) == term;
            if (same > 1)
                cluster_fatal(c, "term %llu has %u (>1) leaders", (unsigned long long)term, same);
            if (best < 0 || term > best_term) {
                best_term = term;
                best = (int)(terms[a] >> 56);
            }
        }
        if (best >= 0)
            return (unsigned)best;
    }
    cluster_fatal(c, "expected one leader, got none");
}

uint64_t cluster_check_terms(struct cluster *c)
{
    int64_t term = -1;
    for (unsigned i = 0; i < c->n; i++) {
        struct raft_status st;
        if (!cluster_connected(c, i) || !cluster_status(c, i, &st))
            continue;
        if (term == -1)
            term = (int64_t)st.term;
        else if ((uint64_t)term != st.term)
            cluster_fatal(c, "servers disagree on term: T%lld and n%u's T%llu", (long long)term,
                          i, (unsigned long long)st.term);
    }
    return term < 0 ? 0 : (uint64_t)term;
}

void cluster_check_no_leader(struct cluster *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        struct raft_status st;
        if (cluster_connected(c, i) && cluster_status(c, i, &st) && st.role == RAFT_LEADER)
            cluster_fatal(c, "expected no leader among connected servers, but n%u claims to "
                          "lead T%llu", i, (unsigned long long)st.term);
    }
}

/* ---- commands ---- */

void lab_cmd_int(uint8_t out[8], uint64_t x)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(x >> (8 * i));
}

unsigned cluster_n_committed(struct cluster *c, uint64_t index)
{
    cluster_check(c); /* the lab's nCommitted fails on any applyErr first */
    unsigned count = 0;
    pthread_mutex_lock(&c->ck);
    for (unsigned i = 0; i < c->n; i++)
        count += c->max_applied[i] >= index;
    pthread_mutex_unlock(&c->ck);
    return count;
}

bool cluster_committed_is(struct cluster *c, uint64_t index, const void *cmd, size_t len)
{
    pthread_mutex_lock(&c->ck);
    bool same = false;
    if (index < c->applied_cap && c->applied[index].set) {
        const struct applied_entry *a = &c->applied[index];
        same = a->type == RAFT_ENTRY_COMMAND && a->len == len &&
               (len == 0 || memcmp(a->data, cmd, len) == 0);
    }
    pthread_mutex_unlock(&c->ck);
    return same;
}

uint64_t cluster_max_applied(struct cluster *c)
{
    pthread_mutex_lock(&c->ck);
    uint64_t m = c->max_index;
    pthread_mutex_unlock(&c->ck);
    return m;
}

bool cluster_start_cmd(struct cluster *c, unsigned i, const void *cmd, size_t len,
                       uint64_t *index, uint64_t *term)
{
    struct slot *s = &c->slots[i];
    int32_t hint;
    uint64_t idx = 0, t = 0;
    pthread_rwlock_rdlock(&s->lock);
    int rc = s->node ? raft_propose(s->node, cmd, (uint32_t)len, &idx, &t, &hint) : -ESHUTDOWN;
    pthread_rwlock_unlock(&s->lock);
    if (index)
        *index = idx;
    if (term)
        *term = t;
    return rc == 0;
}

bool cluster_start_int(struct cluster *c, unsigned i, uint64_t x, uint64_t *index,
                       uint64_t *term)
{
    uint8_t cmd[8];
    lab_cmd_int(cmd, x);
    return cluster_start_cmd(c, i, cmd, sizeof(cmd), index, term);
}

uint64_t cluster_one(struct cluster *c, const void *cmd, size_t len, unsigned n, bool retry)
{
    char what[64];
    checks_describe_cmd(RAFT_ENTRY_COMMAND, cmd, (uint32_t)len, what, sizeof(what));
    uint64_t t0 = lab_now_ms();
    unsigned starts = 0;
    while (lab_now_ms() - t0 < cluster_ms(c, 10000)) {
        cluster_check(c);
        /* Try every connected node until one accepts the command. */
        uint64_t index = 0;
        for (unsigned si = 0; si < c->n; si++) {
            starts = (starts + 1) % c->n;
            uint64_t idx;
            if (cluster_connected(c, starts) &&
                cluster_start_cmd(c, starts, cmd, len, &idx, NULL)) {
                index = idx;
                break;
            }
        }
        if (index == 0) {
            cluster_sleep(c, 50);
            continue;
        }
        /* Somebody claimed to be leader and accepted it: wait a while for
         * agreement on exactly this command at this index. */
        uint64_t t1 = lab_now_ms();
        while (lab_now_ms() - t1 < cluster_ms(c, 2000)) {
            unsigned nd = cluster_n_committed(c, index);
            if (nd > 0 && nd >= n && cluster_committed_is(c, index, cmd, len))
                return index;
            cluster_sleep(c, 20);
        }
        if (!retry)
            cluster_fatal(c, "one(%s) failed to reach agreement on %u nodes at index %llu",
                          what, n, (unsigned long long)index);
    }
    cluster_fatal(c, "one(%s) failed to reach agreement on %u nodes within 10 s", what, n);
}

uint64_t cluster_one_int(struct cluster *c, uint64_t x, unsigned n, bool retry)
{
    uint8_t cmd[8];
    lab_cmd_int(cmd, x);
    return cluster_one(c, cmd, sizeof(cmd), n, retry);
}

int64_t cluster_wait(struct cluster *c, uint64_t index, unsigned n, int64_t start_term)
{
    unsigned to = 10;
    for (int iters = 0; iters < 30; iters++) {
        if (cluster_n_committed(c, index) >= n)
            break;
        cluster_sleep(c, to);
        if (to < 1000)
            to *= 2;
        if (start_term > -1)
            for (unsigned i = 0; i < c->n; i++) {
                uint64_t term;
                bool leader;
                if (cluster_get_state(c, i, &term, &leader) && term > (uint64_t)start_term)
                    return LAB_WAIT_TERM_CHANGED; /* someone moved on: can't be sure */
            }
    }
    unsigned nd = cluster_n_committed(c, index);
    if (nd < n)
        cluster_fatal(c, "only %u decided for index %llu; wanted %u", nd,
                      (unsigned long long)index, n);
    int64_t value = LAB_WAIT_NOT_INT;
    pthread_mutex_lock(&c->ck);
    const struct applied_entry *a = &c->applied[index];
    if (a->set && a->type == RAFT_ENTRY_COMMAND && a->len == 8) {
        uint64_t x = 0;
        for (int i = 7; i >= 0; i--)
            x = x << 8 | a->data[i];
        value = (int64_t)(x & INT64_MAX);
    }
    pthread_mutex_unlock(&c->ck);
    return value;
}

/* ---- counters ---- */

uint64_t cluster_rpc_count(struct cluster *c, unsigned i)
{
    struct simnet_stats st;
    simnet_stats(c->net, &st);
    return st.rpcs_in[i];
}

uint64_t cluster_rpc_total(struct cluster *c)
{
    struct simnet_stats st;
    simnet_stats(c->net, &st);
    return st.rpcs;
}

uint64_t cluster_bytes_total(struct cluster *c)
{
    struct simnet_stats st;
    simnet_stats(c->net, &st);
    return st.bytes;
}

size_t cluster_log_size(struct cluster *c)
{
    size_t max = 0;
    for (unsigned i = 0; i < c->n; i++) {
        size_t s = memstore_raft_state_size(c->slots[i].store);
        if (s > max)
            max = s;
    }
    return max;
}
