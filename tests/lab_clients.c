/*
 * lab_clients.c - lab part "clients": the two guarantees a Raft key-value
 * store gives its clients (Raft thesis chapter 6), over the simulated
 * network, with every node running the key-value state machine (kv/kv.h,
 * cluster_opts.kv) next to the harness's checks.
 *
 *   §6.3  a put carries its client's session id and sequence number, and a
 *         retried put takes effect once, even when the retry reaches the
 *         log a second time (duplicated messages, lost replies, leader
 *         changes);
 *   §6.4  a read (ReadIndex, raft_read_barrier) sees every put that was
 *         acknowledged before it began: a new leader first commits its
 *         no-op, a deposed leader that does not know it yet cannot confirm
 *         its leadership with a majority, and concurrent reads share one
 *         round of heartbeats;
 *   §6.4.1 a leader reads on a lease only while no other leader can have
 *         been elected.
 *
 * The "server" here is kv/server.c's put and get, called in-process on a
 * node: put = session shortcut, propose, wait until applied, session check;
 * get = read barrier, then the node's own store. Histories are checked with
 * the linearizability checker of tests/chaos/lincheck.h. Snapshots are off
 * (snapshot_every 0): the harness's snapshots do not carry the store.
 *
 * Run one test: RAFT_TEST=test_retried_puts_apply_once build/tests/lab_clients
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "kv/kv.h"
#include "tests/chaos/lincheck.h"
#include "tests/support/cluster.h"

#define PART "clients"
#define MAX_PROPOSALS 8 /* log indices remembered per request */

static struct cluster *start(void **state, const char *desc, const struct cluster_opts *o)
{
    struct cluster_opts opts = *o;
    opts.kv = true;
    return cluster_new(state, PART, desc, &opts);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static uint64_t now_ms(void)
{
    return lincheck_now_ns() / 1000000;
}

/* kv/server.c stamps each put with the leader's wall clock (session expiry). */
static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *err_name(int rc)
{
    switch (rc) {
    case 0: return "0";
    case -EPERM: return "-EPERM";
    case -ETIMEDOUT: return "-ETIMEDOUT";
    case -ECANCELED: return "-ECANCELED";
    case -ESHUTDOWN: return "-ESHUTDOWN";
    case -EIO: return "-EIO";
    case -EAGAIN: return "-EAGAIN";
    default: return "an error";
    }
}

/* ---- the server side, as kv/server.c does it ---- */

/* handle_put on node i: a request already applied is answered from the
 * session table; otherwise it is proposed, and answered once applied and
 * found in the session table (the entry at its index may be another
 * leader's). Returns 0, -EPERM (not leader), -ETIMEDOUT, -ECANCELED or
 * -EAGAIN (applied, but not this request); *index is set when proposed. */
static int serve_put(struct cluster *c, unsigned i, const uint8_t *cmd, size_t len,
                     uint64_t client, uint64_t seq, unsigned wait_ms, uint64_t *index)
{
    *index = 0;
    if (!cluster_alive(c, i))
        return -ESHUTDOWN;
    struct kv *kv = cluster_kv(c, i);
    if (kv_applied_request(kv, client, seq))
        return 0;
    uint64_t term;
    if (!cluster_start_cmd(c, i, cmd, len, index, &term))
        return -EPERM;
    int rc = cluster_wait_applied(c, i, *index, term, wait_ms);
    if (rc == 0 && !kv_applied_request(kv, client, seq))
        rc = -EAGAIN;
    return rc;
}

/* handle_get on node i: a read barrier (§6.4), then the node's own store.
 * Returns 0 with *value (malloc'd, NUL-terminated), -ENOENT, or the
 * barrier's error. */
static int serve_get(struct cluster *c, unsigned i, const char *key, unsigned timeout_ms,
                     char **value)
{
    *value = NULL;
    int32_t hint;
    int rc = cluster_read_barrier(c, i, timeout_ms, &hint);
    if (rc)
        return rc;
    uint8_t *v;
    uint32_t vlen;
    rc = kv_get(cluster_kv(c, i), (const uint8_t *)key, (uint32_t)strlen(key), &v, &vlen);
    if (rc)
        return rc;
    *value = malloc(vlen + 1);
    if (!*value)
        abort();
    memcpy(*value, v, vlen);
    (*value)[vlen] = '\0';
    free(v);
    return 0;
}

/* ---- late copies of client requests ---- */

/* A client request delivered twice, whose second copy is handled late: in
 * kv/server.c the session check and the proposal are not atomic, so a
 * handler that passed the check before the first copy was applied may
 * propose its copy any time later, after the client has moved on. Only the
 * state machine's session table can then keep it from taking effect. */
struct late_copy {
    uint8_t *cmd;
    size_t len;
    uint64_t due_ms;
    uint64_t index; /* where it was proposed; 0: not yet, or refused */
};

struct late_queue {
    struct cluster *c;
    pthread_mutex_t mu;
    struct late_copy *copies; /* under mu */
    size_t n, cap;
    atomic_bool stop;         /* no more copies will come */
};

static void late_push(struct late_queue *q, const uint8_t *cmd, size_t len, uint64_t due_ms)
{
    pthread_mutex_lock(&q->mu);
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 64;
        q->copies = realloc(q->copies, q->cap * sizeof(*q->copies));
        if (!q->copies)
            abort();
    }
    struct late_copy *l = &q->copies[q->n++];
    l->cmd = malloc(len);
    if (!l->cmd)
        abort();
    memcpy(l->cmd, cmd, len);
    l->len = len;
    l->due_ms = due_ms;
    l->index = 0;
    pthread_mutex_unlock(&q->mu);
}

static int current_leader(struct cluster *c, uint64_t *term);

/* Proposes each copy when it is due, on whichever node leads then, and does
 * not wait for it (its client is long gone). Ends when told to stop and
 * every copy is out. */
static void *late_main(void *arg)
{
    struct late_queue *q = arg;
    size_t next = 0;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        bool more = next < q->n;
        struct late_copy l = more ? q->copies[next] : (struct late_copy){0};
        pthread_mutex_unlock(&q->mu);
        if (!more) {
            if (atomic_load(&q->stop))
                return NULL;
            sleep_ms(5);
            continue;
        }
        if (now_ms() < l.due_ms) {
            sleep_ms(2);
            continue;
        }
        int leader = current_leader(q->c, NULL);
        uint64_t index = 0;
        if (leader >= 0)
            cluster_start_cmd(q->c, (unsigned)leader, l.cmd, l.len, &index, NULL);
        pthread_mutex_lock(&q->mu);
        q->copies[next].index = index;
        pthread_mutex_unlock(&q->mu);
        next++;
    }
}

/* ---- a client (a "clerk" in the lab's words) ---- */

struct request {
    uint8_t *cmd; /* the encoded put, the same bytes on every retry */
    size_t len;
    uint64_t index[MAX_PROPOSALS]; /* where its proposals went */
    unsigned n_index;
};

struct clerk {
    struct cluster *c;
    struct lincheck_history *h; /* NULL: not recorded */
    int id;
    uint64_t client_id;
    uint64_t seq;
    unsigned leader;  /* where it sends next */
    uint32_t allowed; /* nodes it may reach (bit i) */
    uint64_t rng;
    unsigned wait_min_ms, wait_max_ms; /* per attempt, before RAFT_TIME_SCALE */
    unsigned lose_permille;            /* acknowledgements it pretends to lose */
    struct late_queue *late;           /* where late copies go (NULL: none) */
    unsigned late_permille;            /* requests that get a late copy */
    /* what happened */
    unsigned puts, gets, attempts, lost, redirects, unknown;
    struct request *reqs;
    size_t n_reqs, cap_reqs;
};

static uint64_t clerk_rand(struct clerk *k, uint64_t bound)
{
    uint64_t z = (k->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return bound ? z % bound : 0;
}

static void clerk_init(struct clerk *k, struct cluster *c, struct lincheck_history *h, int id)
{
    memset(k, 0, sizeof(*k));
    k->c = c;
    k->h = h;
    k->id = id;
    k->client_id = 1000 + (uint64_t)id;
    k->allowed = (1u << cluster_n(c)) - 1;
    k->rng = cluster_seed(c) * 31 + (uint64_t)id;
    k->wait_min_ms = k->wait_max_ms = 2000;
}

static void clerk_free(struct clerk *k)
{
    for (size_t r = 0; r < k->n_reqs; r++)
        free(k->reqs[r].cmd);
    free(k->reqs);
}

/* Moves on to the node the current one names as leader, or the next one. */
static void clerk_redirect(struct clerk *k)
{
    struct raft_status st;
    unsigned n = cluster_n(k->c);
    k->redirects++;
    if (cluster_status(k->c, k->leader, &st) && st.leader >= 0 &&
        (unsigned)st.leader != k->leader && (k->allowed & (1u << st.leader))) {
        k->leader = (unsigned)st.leader;
        return;
    }
    do
        k->leader = (k->leader + 1) % n;
    while (!(k->allowed & (1u << k->leader)));
    sleep_ms(2);
}

static void record(struct clerk *k, enum lincheck_kind kind, const char *key, const char *value,
                   uint64_t call_ns, enum lincheck_outcome outcome)
{
    if (!k->h)
        return;
    struct lincheck_op op = {.client = k->id, .kind = kind, .key = key, .value = value,
                             .call_ns = call_ns, .return_ns = lincheck_now_ns(),
                             .outcome = outcome};
    if (lincheck_add(k->h, &op) != 0)
        abort();
}

/* Puts key=value under the next sequence number, retrying the same request
 * (same bytes, same session and seq) until a node acknowledges it, or
 * giving up after deadline_lab_ms (the outcome is then unknown). Returns 0
 * or -ETIMEDOUT. */
static int clerk_put(struct clerk *k, const char *key, const char *value, unsigned deadline_lab_ms)
{
    struct cluster *c = k->c;
    uint64_t seq = ++k->seq;
    if (k->n_reqs == k->cap_reqs) {
        k->cap_reqs = k->cap_reqs ? 2 * k->cap_reqs : 64;
        k->reqs = realloc(k->reqs, k->cap_reqs * sizeof(*k->reqs));
        if (!k->reqs)
            abort();
    }
    struct request *r = &k->reqs[k->n_reqs++];
    memset(r, 0, sizeof(*r));
    uint32_t klen = (uint32_t)strlen(key), vlen = (uint32_t)strlen(value);
    r->len = kv_put_size(klen, vlen);
    r->cmd = malloc(r->len);
    if (!r->cmd)
        abort();
    kv_encode_put(r->cmd, k->client_id, seq, wall_ms(), (const uint8_t *)key, klen,
                  (const uint8_t *)value, vlen);
    k->puts++;
    if (k->late && clerk_rand(k, 1000) < k->late_permille)
        late_push(k->late, r->cmd, r->len,
                  now_ms() + cluster_ms(c, 20 + (unsigned)clerk_rand(k, 480)));

    uint64_t call_ns = lincheck_now_ns();
    uint64_t give_up = now_ms() + cluster_ms(c, deadline_lab_ms);
    unsigned timeouts_here = 0;
    while (now_ms() < give_up) {
        unsigned wait = k->wait_min_ms +
                        (unsigned)clerk_rand(k, k->wait_max_ms - k->wait_min_ms + 1);
        uint64_t index;
        k->attempts++;
        int rc = serve_put(c, k->leader, r->cmd, r->len, k->client_id, seq,
                           cluster_ms(c, wait), &index);
        if (index && r->n_index < MAX_PROPOSALS)
            r->index[r->n_index++] = index;
        if (rc == 0 && clerk_rand(k, 1000) < k->lose_permille) {
            k->lost++; /* the reply is lost: the client retries the same request */
            continue;
        }
        if (rc == 0) {
            record(k, LINCHECK_PUT, key, value, call_ns, LINCHECK_OK);
            return 0;
        }
        /* A timeout may be a slow commit: retry the same node a few times,
         * then try elsewhere (it may be a leader that was cut off). */
        if (rc == -ETIMEDOUT || rc == -EAGAIN) {
            if (++timeouts_here < 3)
                continue;
        }
        timeouts_here = 0;
        clerk_redirect(k);
    }
    k->unknown++;
    record(k, LINCHECK_PUT, key, value, call_ns, LINCHECK_UNKNOWN);
    return -ETIMEDOUT;
}

/* Reads key from the node it believes leads; one attempt. Returns 0 with
 * *value, -ENOENT, or the read barrier's error. Records what it saw. */
static int clerk_get(struct clerk *k, const char *key, unsigned timeout_lab_ms, char **value)
{
    uint64_t call_ns = lincheck_now_ns();
    k->gets++;
    int rc = serve_get(k->c, k->leader, key, cluster_ms(k->c, timeout_lab_ms), value);
    if (rc == 0)
        record(k, LINCHECK_GET, key, *value, call_ns, LINCHECK_OK);
    else if (rc == -ENOENT)
        record(k, LINCHECK_GET, key, NULL, call_ns, LINCHECK_MISSING);
    else if (rc == -EPERM || rc == -ESHUTDOWN)
        clerk_redirect(k);
    return rc;
}

/* clerk_get, retried (other nodes, 10 ms apart) for up to deadline_lab_ms
 * until it returns a value or -ENOENT. */
static int clerk_read(struct clerk *k, const char *key, unsigned deadline_lab_ms, char **value)
{
    uint64_t give_up = now_ms() + cluster_ms(k->c, deadline_lab_ms);
    int rc;
    while ((rc = clerk_get(k, key, 1000, value)) != 0 && rc != -ENOENT && now_ms() < give_up)
        sleep_ms(10);
    return rc;
}

/* How many of its requests reached the log more than once, each copy
 * committed (counted over the first MAX_PROPOSALS proposals). */
static unsigned clerk_committed_twice(struct clerk *k)
{
    unsigned twice = 0;
    for (size_t r = 0; r < k->n_reqs; r++) {
        const struct request *q = &k->reqs[r];
        unsigned copies = 0;
        for (unsigned j = 0; j < q->n_index; j++)
            copies += cluster_committed_is(k->c, q->index[j], q->cmd, q->len);
        twice += copies > 1;
    }
    return twice;
}

/* Fails with the checker's explanation and the operations on the key. */
static void check_linearizable(struct cluster *c, struct lincheck_history *h)
{
    struct lincheck_result r;
    int rc = lincheck_check(h, &r);
    printf("  history: %zu operations on %zu keys (%zu puts of unknown outcome): %s\n",
           r.n_ops, r.n_keys, r.n_unknown, rc == 0 ? "linearizable" : "NOT linearizable");
    if (rc == -1) {
        lincheck_print_key(h, r.bad_key, stderr);
        cluster_fatal(c, "client history is not linearizable: %s", r.message);
    }
    if (rc != 0)
        cluster_fatal(c, "the linearizability checker gave up (%d): %s", rc, r.message);
}

/* The leader of the highest term among connected nodes, or -1. */
static int current_leader(struct cluster *c, uint64_t *term)
{
    int best = -1;
    uint64_t best_term = 0;
    for (unsigned i = 0; i < cluster_n(c); i++) {
        struct raft_status st;
        if (cluster_connected(c, i) && cluster_status(c, i, &st) && st.role == RAFT_LEADER &&
            st.term > best_term) {
            best = (int)i;
            best_term = st.term;
        }
    }
    if (term)
        *term = best_term;
    return best;
}

/* Polls every millisecond (up to 10 s) for a connected leader of a term
 * above after_term; returns it, with its status as first seen. */
static unsigned await_new_leader(struct cluster *c, uint64_t after_term, struct raft_status *st)
{
    uint64_t until = now_ms() + cluster_ms(c, 10000);
    while (now_ms() < until) {
        for (unsigned i = 0; i < cluster_n(c); i++)
            if (cluster_connected(c, i) && cluster_status(c, i, st) &&
                st->role == RAFT_LEADER && st->term > after_term)
                return i;
        sleep_ms(1);
    }
    cluster_fatal(c, "no new leader after T%llu within 10 s", (unsigned long long)after_term);
}

/* ---- 1. a retried put takes effect once ---- */

struct load {
    struct clerk k;
    atomic_bool *stop;
    unsigned n_keys;
};

static void *load_main(void *arg)
{
    struct load *l = arg;
    struct clerk *k = &l->k;
    char key[16], value[48], *got;
    while (!atomic_load(l->stop)) {
        snprintf(key, sizeof(key), "k%u", (unsigned)clerk_rand(k, l->n_keys));
        if (clerk_rand(k, 100) < 70) {
            snprintf(value, sizeof(value), "c%d.%llu", k->id, (unsigned long long)k->seq + 1);
            clerk_put(k, key, value, 10000);
        } else if (clerk_get(k, key, 300, &got) == 0) {
            free(got);
        }
    }
    return NULL;
}

/* §6.3 under duplicated requests, dropped requests and replies, leader
 * changes, clients whose patience is shorter than a commit, and replies
 * lost on the way to the client: every retry carries the same session and
 * sequence number, many reach the log twice, and each must take effect
 * once. A put applied a second time would overwrite a later put to its key
 * and show up in the history; every store must end up the same. */
static void test_retried_puts_apply_once(void **state)
{
    struct cluster_opts opts = {.n = 3, .unreliable = true};
    struct cluster *c = start(state, "a retried put takes effect once", &opts);
    unsigned servers = cluster_n(c);
    cluster_set_duplicate(c, 200);
    cluster_check_one_leader(c);

    enum { CLIENTS = 4, KEYS = 3 };
    struct lincheck_history *h = lincheck_new();
    atomic_bool stop;
    atomic_init(&stop, false);
    struct late_queue late = {.c = c};
    pthread_mutex_init(&late.mu, NULL);
    atomic_init(&late.stop, false);
    pthread_t late_thread;
    if (pthread_create(&late_thread, NULL, late_main, &late))
        abort();
    struct load loads[CLIENTS];
    pthread_t threads[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        clerk_init(&loads[i].k, c, h, i);
        loads[i].k.wait_min_ms = 5; /* often shorter than a commit: retried */
        loads[i].k.wait_max_ms = 150;
        loads[i].k.lose_permille = 150;
        loads[i].k.late = &late;
        loads[i].k.late_permille = 100;
        loads[i].stop = &stop;
        loads[i].n_keys = KEYS;
        if (pthread_create(&threads[i], NULL, load_main, &loads[i]))
            abort();
    }

    /* Leader changes: cut the leader off for a while, three times. */
    for (int round = 0; round < 3; round++) {
        cluster_sleep(c, 1200 + cluster_rand(c, 400));
        int leader = current_leader(c, NULL);
        if (leader < 0)
            continue;
        cluster_disconnect(c, (unsigned)leader);
        cluster_sleep(c, 800);
        cluster_connect(c, (unsigned)leader);
    }
    cluster_sleep(c, 1000);
    atomic_store(&stop, true);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(threads[i], NULL);
    atomic_store(&late.stop, true);
    pthread_join(late_thread, NULL);
    cluster_check(c);

    /* Quiet network; one more put that every node applies, and a last
     * read of each key. */
    cluster_set_duplicate(c, 0);
    cluster_set_reliable(c, true);
    struct clerk fin;
    clerk_init(&fin, c, h, CLIENTS);
    if (clerk_put(&fin, "k0", "final", 10000) != 0)
        cluster_fatal(c, "the last put was not acknowledged within 10 s");
    char key[16], *got;
    for (unsigned i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        int rc = clerk_read(&fin, key, 5000, &got);
        if (rc != 0 && rc != -ENOENT)
            cluster_fatal(c, "the last read of %s on the leader n%u failed: %s", key,
                          fin.leader, err_name(rc));
        free(got);
    }
    struct raft_status st;
    if (!cluster_status(c, fin.leader, &st))
        cluster_fatal(c, "n%u is down", fin.leader);
    cluster_wait(c, st.commit, servers, -1);

    unsigned puts = 0, gets = 0, attempts = 0, lost = 0, twice = 0, unknown = 0;
    for (int i = 0; i < CLIENTS; i++) {
        puts += loads[i].k.puts;
        gets += loads[i].k.gets;
        attempts += loads[i].k.attempts;
        lost += loads[i].k.lost;
        unknown += loads[i].k.unknown;
        twice += clerk_committed_twice(&loads[i].k);
    }
    unsigned late_committed = 0;
    for (size_t i = 0; i < late.n; i++) {
        const struct late_copy *l = &late.copies[i];
        late_committed += l->index && cluster_committed_is(c, l->index, l->cmd, l->len);
    }
    struct simnet_stats ns;
    simnet_stats(cluster_net(c), &ns);
    printf("  %u puts in %u attempts (%u acknowledgements lost, %u unknown), %u gets; "
           "%u puts committed twice or more by retries, %u late copies committed; "
           "%llu Raft requests duplicated by the network\n", puts, attempts, lost, unknown,
           gets, twice, late_committed, (unsigned long long)ns.duplicated);
    check_linearizable(c, h);

    /* Every store applied the same puts, once each. */
    struct kv_stats first;
    kv_get_stats(cluster_kv(c, 0), &first);
    for (unsigned i = 1; i < servers; i++) {
        struct kv_stats s;
        kv_get_stats(cluster_kv(c, i), &s);
        if (s.hash != first.hash || s.keys != first.keys || s.sessions != first.sessions)
            cluster_fatal(c, "stores differ: n0 has %llu keys, %llu sessions, hash %016llx at "
                          "index %llu; n%u has %llu keys, %llu sessions, hash %016llx at %llu",
                          (unsigned long long)first.keys, (unsigned long long)first.sessions,
                          (unsigned long long)first.hash,
                          (unsigned long long)first.applied_index, i,
                          (unsigned long long)s.keys, (unsigned long long)s.sessions,
                          (unsigned long long)s.hash, (unsigned long long)s.applied_index);
    }
    if (first.sessions != CLIENTS + 1)
        cluster_fatal(c, "%llu client sessions in the store, expected %d",
                      (unsigned long long)first.sessions, CLIENTS + 1);
    /* The test means something only if retries did reach the log twice. */
    if (twice == 0 || late_committed == 0)
        cluster_fatal(c, "sessions not exercised: %u puts committed twice by retries, %u late "
                      "copies committed", twice, late_committed);
    if (lost == 0 || ns.duplicated == 0)
        cluster_fatal(c, "no acknowledgement lost (%u) or no request duplicated (%llu)", lost,
                      (unsigned long long)ns.duplicated);
    for (int i = 0; i < CLIENTS; i++)
        clerk_free(&loads[i].k);
    clerk_free(&fin);
    for (size_t i = 0; i < late.n; i++)
        free(late.copies[i].cmd);
    free(late.copies);
    pthread_mutex_destroy(&late.mu);
    lincheck_free(h);
    cluster_end(c);
}

/* ---- 2. reads see every acknowledged put ---- */

/* §6.4: a read that starts after a put was acknowledged returns that put's
 * value (one writer here, so nothing later). Also at once after a leader
 * change: the old leader is cut off right after acknowledging, often before
 * its followers hear the new commit index, and the new leader is asked the
 * moment it appears. It must answer only once its no-op has committed,
 * which commits the acknowledged put too. */
static void test_reads_see_acknowledged_puts(void **state)
{
    struct cluster_opts opts = {.n = 3};
    struct cluster *c = start(state, "reads see every acknowledged put, across leader changes",
                              &opts);
    cluster_check_one_leader(c);
    struct lincheck_history *h = lincheck_new();
    struct clerk k;
    clerk_init(&k, c, h, 0);
    char value[32], *got;
    unsigned stale_commit = 0, changes = 0;

    for (int round = 0; round < 4; round++) {
        for (int j = 0; j <= 8; j++) {
            snprintf(value, sizeof(value), "v%d.%d", round, j);
            if (clerk_put(&k, "x", value, 10000) != 0)
                cluster_fatal(c, "put x=%s not acknowledged within 10 s", value);
            if (j == 8 && round < 3)
                break; /* no read: its round would tell the followers the commit */
            int rc = clerk_read(&k, "x", 5000, &got);
            if (rc != 0)
                cluster_fatal(c, "read of x on leader n%u failed: %s", k.leader, err_name(rc));
            if (strcmp(got, value) != 0)
                cluster_fatal(c, "read of x on n%u returned \"%s\" after put x=%s was "
                              "acknowledged", k.leader, got, value);
            free(got);
        }
        if (round == 3)
            break;

        /* The last put was just acknowledged by k.leader: cut it off before
         * the next heartbeat tells its followers that it committed. */
        unsigned old = k.leader;
        struct raft_status st;
        if (!cluster_status(c, old, &st))
            cluster_fatal(c, "n%u is down", old);
        uint64_t acked_index = st.applied;
        cluster_disconnect(c, old);
        bool stale = false; /* a follower does not know the put committed */
        for (unsigned i = 0; i < cluster_n(c); i++) {
            struct raft_status f;
            stale |= i != old && cluster_status(c, i, &f) && f.commit < acked_index;
        }
        unsigned nl = await_new_leader(c, st.term, &st);
        changes++;
        stale_commit += stale;
        uint64_t noop = st.last_index; /* nothing proposed since it won */
        uint64_t call_ns = lincheck_now_ns();
        int32_t hint;
        int rc = cluster_read_barrier(c, nl, cluster_ms(c, 3000), &hint);
        struct raft_status after;
        cluster_status(c, nl, &after);
        if (rc == 0 && after.applied < noop)
            cluster_fatal(c, "new leader n%u (T%llu) passed a read barrier with %llu applied, "
                          "before its no-op at %llu", nl, (unsigned long long)st.term,
                          (unsigned long long)after.applied, (unsigned long long)noop);
        if (rc != 0) {
            cluster_note(c, "read on new leader n%u: %s", nl, err_name(rc));
        } else {
            uint8_t *v;
            uint32_t vlen;
            if (kv_get(cluster_kv(c, nl), (const uint8_t *)"x", 1, &v, &vlen) != 0)
                cluster_fatal(c, "new leader n%u has no x after its read barrier", nl);
            bool same = vlen == strlen(value) && memcmp(v, value, vlen) == 0;
            if (!same)
                cluster_fatal(c, "new leader n%u read x=\"%.*s\" at once after its election, "
                              "but x=%s was acknowledged before", nl, (int)vlen, (char *)v,
                              value);
            record(&k, LINCHECK_GET, "x", value, call_ns, LINCHECK_OK);
            free(v);
        }
        k.leader = nl;
        cluster_connect(c, old);
    }
    printf("  %u leader changes; in %u of them a follower had not yet learned that the "
           "last acknowledged put was committed\n", changes, stale_commit);
    check_linearizable(c, h);
    clerk_free(&k);
    lincheck_free(h);
    cluster_end(c);
}

/* ---- 3. a deposed leader refuses reads; a new one waits for its no-op ---- */

/* Puts key=value through nodes in `allowed` only. */
static void put_via(struct cluster *c, uint32_t allowed, int id, const char *key,
                    const char *value)
{
    struct clerk k;
    clerk_init(&k, c, NULL, id);
    k.allowed = allowed;
    k.wait_min_ms = k.wait_max_ms = 500;
    while (!(allowed & (1u << k.leader)))
        k.leader++;
    if (clerk_put(&k, key, value, 10000) != 0)
        cluster_fatal(c, "put %s=%s not acknowledged within 10 s", key, value);
    clerk_free(&k);
}

/* The old leader is cut off with one follower from the three others, which
 * elect a leader and acknowledge a new value. Without check-quorum the old
 * leader still believes it leads; its store holds the old value. A read
 * barrier there must fail (§6.4: leadership is confirmed with a majority
 * first), never succeed with the stale value. */
static void deposed_leader_case(void **state, bool check_quorum)
{
    struct cluster_opts opts = {.n = 5, .no_check_quorum = !check_quorum,
                                .no_lease_reads = true};
    struct cluster *c = start(state, check_quorum
        ? "a cut-off leader refuses reads at once (check-quorum on)"
        : "a deposed leader that does not know it refuses reads", &opts);
    unsigned servers = cluster_n(c);
    unsigned old = cluster_check_one_leader(c);
    uint32_t all = (1u << servers) - 1;
    put_via(c, all, 1, "x", "old");
    uint64_t old_term;
    bool leads;
    cluster_get_state(c, old, &old_term, &leads);

    unsigned group_of[RAFT_MAX_NODES];
    uint32_t majority = 0;
    for (unsigned i = 0; i < servers; i++) {
        bool minority = i == old || i == (old + 1) % servers;
        group_of[i] = minority ? 0 : 1;
        majority |= minority ? 0 : 1u << i;
    }
    cluster_partition(c, group_of);

    int32_t hint;
    int rc;
    if (check_quorum) {
        /* At once, before check-quorum steps it down. */
        rc = cluster_read_barrier(c, old, cluster_ms(c, 1000), &hint);
        if (rc == 0)
            cluster_fatal(c, "cut-off leader n%u passed a read barrier", old);
        printf("  read on the cut-off leader at once: %s\n", err_name(rc));
    }

    unsigned nl = await_new_leader(c, old_term, &(struct raft_status){0});
    if (!(majority & (1u << nl)))
        cluster_fatal(c, "n%u of the minority leads a new term", nl);
    put_via(c, majority, 2, "x", "new");

    uint64_t term;
    if (!cluster_get_state(c, old, &term, &leads))
        cluster_fatal(c, "n%u is down", old);
    if (!check_quorum && (!leads || term != old_term))
        cluster_fatal(c, "n%u should still believe it leads T%llu (no check-quorum, no "
                      "message from the majority), but is %s in T%llu", old,
                      (unsigned long long)old_term, leads ? "leader" : "not leader",
                      (unsigned long long)term);
    rc = cluster_read_barrier(c, old, cluster_ms(c, 1000), &hint);
    if (rc == 0) {
        uint8_t *v;
        uint32_t vlen;
        int g = kv_get(cluster_kv(c, old), (const uint8_t *)"x", 1, &v, &vlen);
        cluster_fatal(c, "deposed leader n%u (%s T%llu) passed a read barrier after the "
                      "majority acknowledged x=new; its store has x=%.*s", old,
                      leads ? "still leading" : "follower in", (unsigned long long)term,
                      g == 0 ? (int)vlen : 1, g == 0 ? (char *)v : "?");
    }
    printf("  read on the deposed leader (%s T%llu) after the majority wrote: %s\n",
           leads ? "still leading" : "follower in", (unsigned long long)term, err_name(rc));

    for (unsigned i = 0; i < servers; i++)
        cluster_connect(c, i);
    put_via(c, all, 3, "y", "1");
    struct clerk k;
    clerk_init(&k, c, NULL, 4);
    k.leader = old;
    char *got = NULL;
    rc = clerk_read(&k, "x", 5000, &got);
    if (rc != 0 || strcmp(got, "new") != 0)
        cluster_fatal(c, "after healing, x reads as %s (%s), expected \"new\"",
                      got ? got : "nothing", err_name(rc));
    free(got);
    clerk_free(&k);
    cluster_end(c);
}

/* Thesis §6.4.1: a cut-off leader goes on reading on its lease for a
 * while, but never once another leader exists. Before each read the test
 * looks for a leader of a newer term among the majority; if there was one,
 * the read must fail. The reads it served came within the lease: 0.9 x the
 * minimum election timeout after the cut at most. */
static void test_cut_off_leader_reads_only_within_its_lease(void **state)
{
    struct cluster_opts opts = {.n = 5};
    struct cluster *c = start(state, "a cut-off leader reads on its lease, never beside a "
                                     "new leader", &opts);
    unsigned servers = cluster_n(c);
    unsigned old = cluster_check_one_leader(c);
    put_via(c, (1u << servers) - 1, 1, "x", "old");
    uint64_t old_term;
    bool leads;
    cluster_get_state(c, old, &old_term, &leads);
    unsigned group_of[RAFT_MAX_NODES];
    for (unsigned i = 0; i < servers; i++)
        group_of[i] = i == old || i == (old + 1) % servers ? 0 : 1;
    cluster_partition(c, group_of);
    uint64_t cut = now_ms(); /* every request sent after this fails */

    int served = 0;
    uint64_t last_served = 0;
    bool new_leader = false;
    while (!new_leader || last_served == 0 || now_ms() < cut + cluster_ms(c, 1000)) {
        for (unsigned i = 0; i < servers && !new_leader; i++) {
            uint64_t t;
            new_leader = group_of[i] == 1 && cluster_get_state(c, i, &t, &leads) && leads &&
                         t > old_term;
        }
        uint64_t begun = now_ms();
        int32_t hint;
        int rc = cluster_read_barrier(c, old, cluster_ms(c, 20), &hint);
        if (rc == 0 && new_leader)
            cluster_fatal(c, "n%u served a read on its lease of T%llu while a newer leader "
                          "existed", old, (unsigned long long)old_term);
        if (rc == 0) {
            served++;
            last_served = begun;
        }
        if (now_ms() > cut + cluster_ms(c, 10000))
            cluster_fatal(c, "no new leader within 10 s of the cut");
    }
    uint64_t lease = cluster_ms(c, LAB_ELECTION_MIN_MS) * 9 / 10;
    printf("  %d reads served on the lease, the last %llu ms after the cut (lease %llu ms)\n",
           served, (unsigned long long)(last_served - cut), (unsigned long long)lease);
    if (served == 0)
        cluster_fatal(c, "the cut-off leader served no read on its lease");
    if (last_served > cut + lease)
        cluster_fatal(c, "a read began %llu ms after the cut, past the lease of %llu ms",
                      (unsigned long long)(last_served - cut), (unsigned long long)lease);
    for (unsigned i = 0; i < servers; i++)
        cluster_connect(c, i);
    cluster_end(c);
}

static void test_deposed_leader_refuses_reads(void **state)
{
    deposed_leader_case(state, false);
}

static void test_cut_off_leader_refuses_reads_at_once(void **state)
{
    deposed_leader_case(state, true);
}

/* §6.4 step 1: a new leader's commit index is current only once an entry
 * of its own term has committed. The new leader's disk is made slow, and
 * the only other node it can reach cannot win (its log is behind), so the
 * no-op commits only when the slow write lands, while heartbeats are
 * answered at once. A read asked the moment it leads must wait for the
 * no-op: it returns no earlier than the disk allows, with the no-op
 * applied and the last acknowledged value. */
static void test_new_leader_reads_after_its_noop(void **state)
{
    struct cluster_opts opts = {.n = 3};
    struct cluster *c = start(state, "a new leader serves reads only after its no-op commits",
                              &opts);
    unsigned servers = cluster_n(c);
    unsigned old = cluster_check_one_leader(c);
    unsigned next = (old + 1) % servers, behind = (old + 2) % servers;
    uint32_t all = (1u << servers) - 1;
    put_via(c, all, 1, "x", "1");
    cluster_disconnect(c, behind);
    put_via(c, all & ~(1u << behind), 2, "x", "2");
    cluster_sleep(c, 200); /* next learns that x=2 is committed */

    unsigned delay = cluster_ms(c, 800);
    memstore_set_write_delay(cluster_store(c, next), delay);
    uint64_t old_term;
    bool leads;
    cluster_get_state(c, old, &old_term, &leads);
    cluster_disconnect(c, old);
    cluster_connect(c, behind);

    struct raft_status st;
    unsigned nl = await_new_leader(c, old_term, &st);
    if (nl != next)
        cluster_fatal(c, "n%u won, but its log lacks x=2 that n%u has", nl, next);
    uint64_t noop = st.last_index;
    uint64_t t0 = now_ms();
    int32_t hint;
    int rc = cluster_read_barrier(c, nl, cluster_ms(c, 5000), &hint);
    uint64_t took = now_ms() - t0;
    struct raft_status after;
    cluster_status(c, nl, &after);
    if (rc != 0)
        cluster_fatal(c, "read barrier on new leader n%u failed: %s", nl, err_name(rc));
    printf("  read on the new leader returned after %llu ms (its disk takes %u ms per write)\n",
           (unsigned long long)took, delay);
    if (after.applied < noop)
        cluster_fatal(c, "new leader n%u passed a read barrier with %llu applied, before its "
                      "no-op at %llu", nl, (unsigned long long)after.applied,
                      (unsigned long long)noop);
    /* The no-op cannot commit before its write lands, which began at the
     * earliest when n%u became leader, just before it was seen leading. */
    if (took < delay / 2)
        cluster_fatal(c, "new leader n%u answered a read %llu ms after it was seen leading, "
                      "before its no-op could be on its disk (%u ms a write)", nl,
                      (unsigned long long)took, delay);
    uint8_t *v;
    uint32_t vlen;
    if (kv_get(cluster_kv(c, nl), (const uint8_t *)"x", 1, &v, &vlen) != 0 || vlen != 1 ||
        v[0] != '2')
        cluster_fatal(c, "new leader n%u does not read x=2 after its read barrier", nl);
    free(v);

    memstore_set_write_delay(cluster_store(c, next), 0);
    cluster_connect(c, old);
    put_via(c, all, 3, "x", "3");
    cluster_end(c);
}

/* ---- 4. concurrent reads share rounds ---- */

struct reader {
    struct cluster *c;
    pthread_barrier_t *go;
    unsigned leader, reads, failures;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    pthread_barrier_wait(r->go);
    for (unsigned i = 0; i < r->reads; i++) {
        int32_t hint;
        if (cluster_read_barrier(r->c, r->leader, cluster_ms(r->c, 2000), &hint) != 0)
            r->failures++;
    }
    return NULL;
}

/* Sends `readers` threads doing `each` read barriers on the leader at once;
 * returns the RPCs the leader sent meanwhile (-1 when a read failed). */
static long read_burst(struct cluster *c, unsigned leader, unsigned readers, unsigned each,
                       uint64_t *ms)
{
    struct reader r[64];
    pthread_t t[64];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, readers + 1);
    for (unsigned i = 0; i < readers; i++) {
        r[i] = (struct reader){.c = c, .go = &go, .leader = leader, .reads = each};
        if (pthread_create(&t[i], NULL, reader_main, &r[i]))
            abort();
    }
    struct simnet_stats s0, s1;
    simnet_stats(cluster_net(c), &s0);
    uint64_t t0 = now_ms();
    pthread_barrier_wait(&go); /* all readers start together */
    unsigned failures = 0;
    for (unsigned i = 0; i < readers; i++) {
        pthread_join(t[i], NULL);
        failures += r[i].failures;
    }
    *ms = now_ms() - t0;
    simnet_stats(cluster_net(c), &s1);
    pthread_barrier_destroy(&go);
    cluster_check(c);
    return failures ? -1 : (long)(s1.rpcs_out[leader] - s0.rpcs_out[leader]);
}

/* §6.4: the leader batches reads: one round of heartbeats confirms every
 * read that arrived before it was sent. One reader at a time costs about a
 * round per read; 32 readers at once must cost far less per read. The
 * network is the lab's unreliable one, for its 0-26 ms delays (a round
 * trip that takes time, as on a real network) and its drops (each a retry
 * that costs an RPC). The bound: a quarter of a round per read, plus the
 * heartbeats the interval carries anyway. */
static void test_concurrent_reads_share_rounds(void **state)
{
    struct cluster_opts opts = {.n = 3, .unreliable = true, .no_lease_reads = true};
    struct cluster *c = start(state, "concurrent reads share heartbeat rounds", &opts);
    unsigned servers = cluster_n(c);
    put_via(c, (1u << servers) - 1, 1, "x", "1");
    for (int attempt = 0; attempt < 3; attempt++) {
        unsigned leader = cluster_check_one_leader(c);
        uint64_t ms1, ms2;
        long seq = read_burst(c, leader, 1, 50, &ms1);
        long con = read_burst(c, leader, 32, 25, &ms2);
        if (seq < 0 || con < 0) {
            cluster_note(c, "a read failed (leader change?): again");
            continue;
        }
        unsigned reads = 32 * 25;
        uint64_t heartbeats = (servers - 1) * (ms2 / cluster_ms(c, LAB_HEARTBEAT_MS) + 1);
        uint64_t bound = (servers - 1) * reads / 4 + heartbeats;
        printf("  one reader: %ld RPCs for 50 reads in %llu ms; 32 readers: %ld RPCs for %u "
               "reads in %llu ms (%.1f reads per round; bound %llu RPCs)\n", seq,
               (unsigned long long)ms1, con, reads, (unsigned long long)ms2,
               con ? (double)reads * (servers - 1) / (double)con : 0.0,
               (unsigned long long)bound);
        if (seq < 50)
            cluster_fatal(c, "50 reads one after another cost only %ld RPCs: each should "
                          "need its own round", seq);
        if ((uint64_t)con > bound)
            cluster_fatal(c, "%u concurrent reads cost %ld RPCs (bound %llu): they do not "
                          "share rounds", reads, con, (unsigned long long)bound);
        cluster_end(c);
        return;
    }
    cluster_fatal(c, "reads kept failing: the leader kept changing");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_retried_puts_apply_once, cluster_teardown),
        cmocka_unit_test_teardown(test_reads_see_acknowledged_puts, cluster_teardown),
        cmocka_unit_test_teardown(test_deposed_leader_refuses_reads, cluster_teardown),
        cmocka_unit_test_teardown(test_cut_off_leader_refuses_reads_at_once, cluster_teardown),
        cmocka_unit_test_teardown(test_cut_off_leader_reads_only_within_its_lease,
                                  cluster_teardown),
        cmocka_unit_test_teardown(test_new_leader_reads_after_its_noop, cluster_teardown),
        cmocka_unit_test_teardown(test_concurrent_reads_share_rounds, cluster_teardown),
    };
    const char *only = getenv("RAFT_TEST");
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests_name("lab_clients", tests, NULL, NULL);
}
