/*
 * lab_clients_sessions.c - lab part "clients", sessions (Raft thesis §6.3):
 * a put carries its client's session id and sequence number, and a
 * retried put takes effect once, even when the retry reaches the log a
 * second time (duplicated messages, lost replies, leader changes).
 *
 * Every node runs the key-value state machine (cluster_opts.kv) and its
 * real service (kv/service.c, through tests/support/kvlab.h); the clerks
 * of tests/support/clerk.h are its clients. Histories are checked with the
 * linearizability checker of tests/chaos/lincheck.h. Snapshots are off
 * (snapshot_every 0): the harness's snapshots do not carry the store.
 *
 * Run one test: RAFT_TEST=test_retried_puts_apply_once build/tests/lab_clients_sessions
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
#include "tests/support/clerk.h"

/* ---- late copies of client requests ---- */

/* A client request delivered twice, whose second copy is handled late: the
 * service's session check and its proposal are not atomic, so a handler
 * that passed the check before the first copy was applied may propose its
 * copy any time later, after the client has moved on. Only the state
 * machine's session table can then keep it from taking effect. The copy
 * is proposed as that handler would: the same session and seq. */
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

/* The leader's clock, as the service stamps a put. */
static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void late_push(struct late_queue *q, uint64_t client, uint64_t seq, const char *key,
                      const char *value, uint64_t due_ms)
{
    uint32_t klen = (uint32_t)strlen(key), vlen = (uint32_t)strlen(value);
    size_t len = kv_put_size(klen, vlen);
    uint8_t *cmd = malloc(len);
    if (!cmd)
        abort();
    kv_encode_put(cmd, client, seq, wall_ms(), (const uint8_t *)key, klen,
                  (const uint8_t *)value, vlen);
    pthread_mutex_lock(&q->mu);
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 64;
        q->copies = realloc(q->copies, q->cap * sizeof(*q->copies));
        if (!q->copies)
            abort();
    }
    q->copies[q->n++] = (struct late_copy){.cmd = cmd, .len = len, .due_ms = due_ms};
    pthread_mutex_unlock(&q->mu);
}

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
            lab_sleep_ms(5);
            continue;
        }
        if (lab_now_ms() < l.due_ms) {
            lab_sleep_ms(2);
            continue;
        }
        int leader = lab_current_leader(q->c, NULL);
        uint64_t index = 0;
        if (leader >= 0)
            cluster_start_cmd(q->c, (unsigned)leader, l.cmd, l.len, &index, NULL);
        pthread_mutex_lock(&q->mu);
        q->copies[next].index = index;
        pthread_mutex_unlock(&q->mu);
        next++;
    }
}

static void late_free(struct late_queue *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->copies[i].cmd);
    free(q->copies);
    pthread_mutex_destroy(&q->mu);
}

/* ---- a retried put takes effect once ---- */

struct load {
    struct clerk k;
    atomic_bool *stop;
    unsigned n_keys;
    struct late_queue *late;
    unsigned late_permille; /* puts that get a late copy */
};

static void *load_main(void *arg)
{
    struct load *l = arg;
    struct clerk *k = &l->k;
    char key[16], value[48], *got;
    while (!atomic_load(l->stop)) {
        snprintf(key, sizeof(key), "k%u", (unsigned)clerk_rand(k, l->n_keys));
        if (clerk_rand(k, 100) >= 70) {
            if (clerk_get(k, key, &got) == 0)
                free(got);
            continue;
        }
        snprintf(value, sizeof(value), "c%d.%llu", k->id, (unsigned long long)k->seq + 1);
        if (clerk_rand(k, 1000) < l->late_permille)
            late_push(l->late, k->client_id, k->seq + 1, key, value,
                      lab_now_ms() + cluster_ms(k->c, 20 + (unsigned)clerk_rand(k, 480)));
        clerk_put(k, key, value, 10000);
    }
    return NULL;
}

/* Every store applied the same puts, once each. */
static void check_stores_agree(struct cluster *c, uint64_t sessions)
{
    struct kv_stats first;
    kv_get_stats(cluster_kv(c, 0), &first);
    for (unsigned i = 1; i < cluster_n(c); i++) {
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
    if (first.sessions != sessions)
        cluster_fatal(c, "%llu client sessions in the store, expected %llu",
                      (unsigned long long)first.sessions, (unsigned long long)sessions);
}

/* §6.3 under duplicated requests, dropped requests and replies, leader
 * changes, clients whose patience is shorter than a commit, and replies
 * lost on the way to the client: every retry carries the same session and
 * sequence number, many reach the log twice, and each must take effect
 * once. A put applied a second time would overwrite a later put to its key
 * and show up in the history; every store must end up the same. */
static void test_retried_puts_apply_once(void **state)
{
    struct cluster_opts opts = {.n = 3, .unreliable = true, .kv = true};
    struct cluster *c = cluster_new(state, "clients", "a retried put takes effect once", &opts);
    struct kvlab *kl = kvlab_new(c);
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
        clerk_init(&loads[i].k, c, kl, h, i);
        loads[i].k.wait_min_ms = 5; /* often shorter than a commit: retried */
        loads[i].k.wait_max_ms = 150;
        loads[i].k.lose_permille = 150;
        loads[i].stop = &stop;
        loads[i].n_keys = KEYS;
        loads[i].late = &late;
        loads[i].late_permille = 100;
        if (pthread_create(&threads[i], NULL, load_main, &loads[i]))
            abort();
    }

    /* Leader changes: cut the leader off for a while, three times. */
    for (int round = 0; round < 3; round++) {
        cluster_sleep(c, 1200 + cluster_rand(c, 400));
        int leader = lab_current_leader(c, NULL);
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
    clerk_init(&fin, c, kl, h, CLIENTS);
    if (clerk_put(&fin, "k0", "final", 10000) != 0)
        cluster_fatal(c, "the last put was not acknowledged within 10 s");
    char key[16], *got;
    for (unsigned i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        int rc = clerk_read(&fin, key, 5000, &got);
        if (rc != 0 && rc != -ENOENT)
            cluster_fatal(c, "the last read of %s on the leader n%u failed: %s", key,
                          fin.leader, lab_err_name(rc));
        free(got);
    }
    struct raft_status st;
    if (!cluster_status(c, fin.leader, &st))
        cluster_fatal(c, "n%u is down", fin.leader);
    cluster_wait(c, st.commit, servers, -1);

    unsigned puts = 0, gets = 0, attempts = 0, lost = 0, unknown = 0, late_committed = 0;
    for (int i = 0; i < CLIENTS; i++) {
        puts += loads[i].k.puts;
        gets += loads[i].k.gets;
        attempts += loads[i].k.attempts;
        lost += loads[i].k.lost;
        unknown += loads[i].k.unknown;
    }
    for (size_t i = 0; i < late.n; i++) {
        const struct late_copy *l = &late.copies[i];
        late_committed += l->index && cluster_committed_is(c, l->index, l->cmd, l->len);
    }
    struct kv_stats ks;
    kv_get_stats(cluster_kv(c, fin.leader), &ks);
    struct simnet_stats ns;
    simnet_stats(cluster_net(c), &ns);
    printf("  %u puts in %u attempts (%u acknowledgements lost, %u unknown), %u gets; "
           "%llu committed copies refused by the session table, %u of them late copies; "
           "%llu Raft requests duplicated by the network\n", puts, attempts, lost, unknown,
           gets, (unsigned long long)ks.duplicates, late_committed,
           (unsigned long long)ns.duplicated);
    lab_check_linearizable(c, h);
    check_stores_agree(c, CLIENTS + 1);
    /* The test means something only if retries did reach the log twice:
     * more copies refused than the late ones (one of which may have been
     * its request's only committed copy). */
    if (late_committed == 0 || ks.duplicates <= late_committed)
        cluster_fatal(c, "sessions not exercised: %llu committed copies refused, %u late "
                      "copies committed", (unsigned long long)ks.duplicates, late_committed);
    if (lost == 0 || ns.duplicated == 0)
        cluster_fatal(c, "no acknowledgement lost (%u) or no request duplicated (%llu)", lost,
                      (unsigned long long)ns.duplicated);
    late_free(&late);
    lincheck_free(h);
    cluster_end(c);
    kvlab_free(kl);
}

/* A put the service cannot take: no session, no sequence number or no key
 * is refused as a bad request, and nothing reaches the log (in one term:
 * a new leader would append its no-op). */
static void test_put_without_session_is_refused(void **state)
{
    struct cluster_opts opts = {.n = 3, .kv = true};
    struct cluster *c = cluster_new(state, "clients", "a put without a session is refused",
                                    &opts);
    struct kvlab *kl = kvlab_new(c);
    unsigned leader = cluster_check_one_leader(c);
    struct raft_status before, after;
    cluster_status(c, leader, &before);
    const struct kv_request bad[] = {
        {.op = KV_REQUEST_PUT, .seq = 1, .key = (const uint8_t *)"k", .key_len = 1},
        {.op = KV_REQUEST_PUT, .client_id = 7, .key = (const uint8_t *)"k", .key_len = 1},
        {.op = KV_REQUEST_PUT, .client_id = 7, .seq = 1},
        {.op = 0},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct kv_reply r;
        int rc = kvlab_call(kl, leader, &bad[i], cluster_ms(c, 1000), &r);
        if (rc != 0 || r.answer != KV_ANSWER_BAD_REQUEST)
            cluster_fatal(c, "request %zu: %s, answer %d; expected a bad request", i,
                          lab_err_name(rc), rc == 0 ? (int)r.answer : -1);
    }
    cluster_status(c, leader, &after);
    if (after.term == before.term && after.last_index != before.last_index)
        cluster_fatal(c, "refused requests reached the log (%llu -> %llu)",
                      (unsigned long long)before.last_index,
                      (unsigned long long)after.last_index);
    cluster_end(c);
    kvlab_free(kl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_retried_puts_apply_once, cluster_teardown),
        cmocka_unit_test_teardown(test_put_without_session_is_refused, cluster_teardown),
    };
    const char *only = getenv("RAFT_TEST");
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests_name("lab_clients_sessions", tests, NULL, NULL);
}
