/*
 * lab_persistence.c - lab part 3C (2C before 2024): persistence, over the
 * simulated network, with the lab's scenarios and numbers (see
 * tests/README-lab.md): crash and restart of all nodes, of
 * leaders and of followers; Figure 8 with crashed and with disconnected
 * leaders; agreement over an unreliable network; churn with concurrent
 * clients.
 *
 * A crash (cluster_crash, the lab's crash1) keeps exactly what the node's
 * storage acknowledged; a restart builds a new node over it. Beyond the
 * lab, every crash here checks that the term and vote the node showed just
 * before were on its disk, and every restart checks that the new
 * incarnation starts from what was stored (Figure 2: currentTerm, votedFor
 * and log[] are persistent state): the same term, the same vote and the
 * same last log index, before it hears from anybody.
 *
 * No-op entries: a new leader appends a no-op of its term first (§8), so
 * where the lab names an index ("wait(4, ...)") this suite uses the index
 * that one() returned for the command in question.
 *
 * Every test also runs the harness's standing checks (tests/support/
 * cluster.h): one leader per term, Leader Append-Only, Log Matching, Leader
 * Completeness, State Machine Safety (which, across restarts, is what
 * catches a node that forgot an entry it had acknowledged).
 *
 * Run one test: RAFT_TEST=test_figure8 build/tests/lab_persistence
 * The lab's 1000 Figure 8 iterations: RAFT_FIGURE8_ITERS=1000 (see below).
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
#include <cmocka.h>

#include "tests/support/cluster.h"

#define PART "3C"

/* Figure 8 iterations. The lab runs 1000 of each; with its sleeps (10%
 * below 500 ms, 90% below 13 ms) that is about 30 s per test. The reliable
 * Figure 8 runs 300 here by default (about 11 s, some 20 leader crashes),
 * which keeps the whole file well under two minutes on a 2-core machine;
 * RAFT_FIGURE8_ITERS=1000 runs the lab's count. The unreliable one keeps
 * the lab's 1000, since its long reordering only starts at iteration 200. */
#define FIGURE8_ITERS 300
#define FIGURE8_UNRELIABLE_ITERS 1000
#define FIGURE8_UNRELIABLE_REORDER_FROM 200

/* Threads a test starts (the lab's goroutines). The teardown stops and
 * joins them before the cluster is freed, also when the test failed while
 * they ran: a helper that finds the failure ends its thread at once. */
#define MAX_WORKERS 256

static struct {
    pthread_t threads[MAX_WORKERS];
    unsigned n;
    atomic_bool stop;
} workers;

static void workers_spawn(struct cluster *c, void *(*fn)(void *), void *arg)
{
    if (workers.n == MAX_WORKERS)
        cluster_fatal(c, "test bug: more than %d threads", MAX_WORKERS);
    if (pthread_create(&workers.threads[workers.n], NULL, fn, arg) != 0)
        cluster_fatal(c, "pthread_create failed");
    workers.n++;
}

static void workers_join(void)
{
    atomic_store(&workers.stop, true);
    for (unsigned k = 0; k < workers.n; k++)
        pthread_join(workers.threads[k], NULL);
    workers.n = 0;
    atomic_store(&workers.stop, false);
}

static int teardown(void **state)
{
    workers_join();
    return cluster_teardown(state);
}

static struct cluster *start(void **state, const char *desc, unsigned n, bool unreliable)
{
    struct cluster_opts opts = {.n = n, .unreliable = unreliable};
    workers.n = 0;
    atomic_store(&workers.stop, false);
    return cluster_new(state, PART, desc, &opts);
}

static int figure8_iters(void)
{
    const char *env = getenv("RAFT_FIGURE8_ITERS");
    int n = env && *env ? atoi(env) : 0;
    return n > 0 ? n : FIGURE8_ITERS;
}

static uint64_t random_cmd(struct cluster *c)
{
    return cluster_rand(c, 1u << 30);
}

/* The lab's crash1. Also checks that the term and vote node i reported
 * just before the crash were on its disk (Figure 2: currentTerm and
 * votedFor are "updated on stable storage before responding to RPCs"; a
 * node that shows them has acted on them, e.g. granted the vote). The node
 * may move on between the two reads, but only forward: a later term, or a
 * vote where it had none. */
static void crash(struct cluster *c, unsigned i)
{
    struct raft_status st;
    if (!cluster_status(c, i, &st))
        return;
    cluster_crash(c, i);
    uint64_t term;
    int32_t vote;
    memstore_term_vote(cluster_store(c, i), &term, &vote);
    if (term < st.term || (term == st.term && st.voted_for != RAFT_NO_NODE &&
                           vote != st.voted_for))
        cluster_fatal(c, "n%u was in T%llu with vote %d, but after its crash its storage holds "
                      "T%llu vote %d: term and vote must be stored before they are used",
                      i, (unsigned long long)st.term, (int)st.voted_for,
                      (unsigned long long)term, (int)vote);
}

/* The lab's start1: crash node i if it runs, then start a new incarnation
 * over its storage (not connected). Checks that the node comes back with
 * the term, vote and last log index its storage holds: Figure 2's
 * persistent state, restored before the node answers anything. Returns its
 * status right after the start. */
static struct raft_status restart(struct cluster *c, unsigned i)
{
    crash(c, i);
    struct memstore_view v;
    memstore_view(cluster_store(c, i), &v);
    uint64_t stored_last = v.first_index + v.n_entries - 1;
    uint64_t stored_term = v.term;
    int32_t stored_vote = v.voted_for;
    memstore_view_free(&v);

    cluster_start1(c, i);
    struct raft_status st;
    if (!cluster_status(c, i, &st))
        cluster_fatal(c, "n%u is not running right after its restart", i);
    /* Not connected, and pre-vote keeps a lone node from raising its term,
     * so nothing can have moved these since the start. */
    if (st.term != stored_term || st.voted_for != stored_vote || st.last_index != stored_last)
        cluster_fatal(c, "n%u restarted as T%llu vote %d last index %llu, but its storage "
                      "holds T%llu vote %d last index %llu (Figure 2: persistent state "
                      "must be restored)", i, (unsigned long long)st.term, (int)st.voted_for,
                      (unsigned long long)st.last_index, (unsigned long long)stored_term,
                      (int)stored_vote, (unsigned long long)stored_last);
    return st;
}

/* The lab's start1 followed by connect. */
static struct raft_status restart_connect(struct cluster *c, unsigned i)
{
    struct raft_status st = restart(c, i);
    cluster_connect(c, i);
    return st;
}

/* TestPersist1: crash and restart of all, of the leader, of a follower,
 * with agreement in between. */
static void test_persist1(void **state)
{
    struct cluster *c = start(state, "basic persistence", 3, false);
    unsigned servers = cluster_n(c);
    uint64_t index11 = cluster_one_int(c, 11, servers, true);
    uint64_t term11 = cluster_check_terms(c);

    /* Crash and re-start all. Every node applied 11, so every node must
     * come back with it in its log, and with a term no lower. */
    for (unsigned i = 0; i < servers; i++) {
        struct raft_status st = restart(c, i);
        if (st.last_index < index11)
            cluster_fatal(c, "n%u came back with last index %llu, but it had applied command "
                          "11 at index %llu before the crash", i,
                          (unsigned long long)st.last_index, (unsigned long long)index11);
        if (st.term < term11)
            cluster_fatal(c, "n%u came back in T%llu, but it was in T%llu before the crash",
                          i, (unsigned long long)st.term, (unsigned long long)term11);
    }
    for (unsigned i = 0; i < servers; i++) {
        cluster_disconnect(c, i);
        cluster_connect(c, i);
    }
    uint64_t index12 = cluster_one_int(c, 12, servers, true);
    if (index12 <= index11)
        cluster_fatal(c, "command 12 went to index %llu, not after 11 at %llu: the restarted "
                      "cluster forgot its log", (unsigned long long)index12,
                      (unsigned long long)index11);

    unsigned leader1 = cluster_check_one_leader(c);
    cluster_disconnect(c, leader1);
    restart_connect(c, leader1);
    cluster_one_int(c, 13, servers, true);

    unsigned leader2 = cluster_check_one_leader(c);
    cluster_disconnect(c, leader2);
    uint64_t index14 = cluster_one_int(c, 14, servers - 1, true);
    restart_connect(c, leader2);
    /* Wait for leader2 to join before killing i3 (the lab's wait(4, ...)). */
    if (cluster_wait(c, index14, servers, -1) != 14)
        cluster_fatal(c, "index %llu is not command 14", (unsigned long long)index14);

    unsigned i3 = (cluster_check_one_leader(c) + 1) % servers;
    cluster_disconnect(c, i3);
    cluster_one_int(c, 15, servers - 1, true);
    restart_connect(c, i3);
    uint64_t index16 = cluster_one_int(c, 16, servers, true);

    /* Every node, in its current incarnation, replays the whole log. */
    for (unsigned i = 0; i < servers; i++) {
        struct raft_status st;
        for (int k = 0; k < 100 && cluster_status(c, i, &st) && st.applied < index16; k++)
            cluster_sleep(c, 20);
        if (!cluster_status(c, i, &st) || st.applied < index16)
            cluster_fatal(c, "n%u has applied only up to %llu of %llu committed entries", i,
                          (unsigned long long)st.applied, (unsigned long long)index16);
    }
    cluster_end(c);
}

/* TestPersist2: five rounds of a leader and followers going away and
 * coming back restarted; each time only one of the nodes that form the
 * next majority holds the latest committed entry, so it must win the
 * election (§5.4.1) and the others must have kept their logs. */
static void test_persist2(void **state)
{
    struct cluster *c = start(state, "more persistence", 5, false);
    unsigned servers = cluster_n(c);
    uint64_t index = 1;
    for (int iters = 0; iters < 5; iters++) {
        cluster_one_int(c, 10 + index, servers, true);
        index++;

        unsigned leader1 = cluster_check_one_leader(c);
        cluster_disconnect(c, (leader1 + 1) % servers);
        cluster_disconnect(c, (leader1 + 2) % servers);
        cluster_one_int(c, 10 + index, servers - 2, true);
        index++;

        cluster_disconnect(c, (leader1 + 0) % servers);
        cluster_disconnect(c, (leader1 + 3) % servers);
        cluster_disconnect(c, (leader1 + 4) % servers);

        restart(c, (leader1 + 1) % servers);
        restart(c, (leader1 + 2) % servers);
        cluster_connect(c, (leader1 + 1) % servers);
        cluster_connect(c, (leader1 + 2) % servers);
        cluster_sleep(c, LAB_ET);

        /* Only L+3 holds the entry just committed: the majority it forms
         * with L+1 and L+2 must elect it, restarted as it is. */
        restart_connect(c, (leader1 + 3) % servers);
        cluster_one_int(c, 10 + index, servers - 2, true);
        index++;

        cluster_connect(c, (leader1 + 4) % servers);
        cluster_connect(c, (leader1 + 0) % servers);
    }
    cluster_one_int(c, 1000, servers, true);
    cluster_end(c);
}

/* TestPersist3: a partitioned leader and one follower crash, the leader
 * restarts, and the cut-off follower has to catch up from it. */
static void test_persist3(void **state)
{
    struct cluster *c = start(state, "partitioned leader and one follower crash, leader restarts",
                              3, false);
    unsigned servers = cluster_n(c);
    cluster_one_int(c, 101, 3, true);

    unsigned leader = cluster_check_one_leader(c);
    cluster_disconnect(c, (leader + 2) % servers);
    uint64_t index102 = cluster_one_int(c, 102, 2, true);

    crash(c, (leader + 0) % servers);
    crash(c, (leader + 1) % servers);
    cluster_connect(c, (leader + 2) % servers);
    struct raft_status st = restart_connect(c, (leader + 0) % servers);
    if (st.last_index < index102)
        cluster_fatal(c, "the old leader n%u came back with last index %llu, without command "
                      "102 at %llu that it had committed", (leader + 0) % servers,
                      (unsigned long long)st.last_index, (unsigned long long)index102);

    /* Only the restarted old leader has 102: it must win and keep it. */
    uint64_t index103 = cluster_one_int(c, 103, 2, true);
    if (index103 <= index102)
        cluster_fatal(c, "command 103 went to index %llu, at or below 102's %llu",
                      (unsigned long long)index103, (unsigned long long)index102);

    restart_connect(c, (leader + 1) % servers);
    cluster_one_int(c, 104, servers, true);
    cluster_end(c);
}

/* Sleeps as the Figure 8 tests do between iterations: 10% of the time up to
 * half an election timeout (long enough for a leader to commit), else up to
 * 13 ms (a leader crashes almost at once). */
static void figure8_sleep(struct cluster *c)
{
    if (cluster_rand(c, 1000) < 100)
        cluster_sleep(c, cluster_rand(c, LAB_ET / 2));
    else
        cluster_sleep(c, cluster_rand(c, 13));
}

/* TestFigure8: leaders crash at random moments, often right after they
 * appended entries that only some followers have; restarted nodes rejoin.
 * Committing an entry of an earlier term by counting replicas (Figure 8)
 * would let two nodes apply different commands at one index, which the
 * standing checks catch. At the end, with everybody back, one command must
 * still reach all five. */
static void test_figure8(void **state)
{
    struct cluster *c = start(state, "Figure 8", 5, false);
    unsigned servers = cluster_n(c);
    cluster_one_int(c, random_cmd(c), 1, true);

    int n_iters = figure8_iters();
    unsigned nup = servers, crashes = 0, restarts = 0;
    for (int iters = 0; iters < n_iters; iters++) {
        int leader = -1;
        for (unsigned i = 0; i < servers; i++)
            if (cluster_alive(c, i) && cluster_start_int(c, i, random_cmd(c), NULL, NULL))
                leader = (int)i;

        figure8_sleep(c);

        if (leader != -1) {
            crash(c, (unsigned)leader);
            nup--;
            crashes++;
        }
        if (nup < 3) {
            unsigned s = cluster_rand(c, servers);
            if (!cluster_alive(c, s)) {
                restart_connect(c, s);
                nup++;
                restarts++;
            }
        }
    }
    for (unsigned i = 0; i < servers; i++)
        if (!cluster_alive(c, i)) {
            restart_connect(c, i);
            restarts++;
        }
    printf("  %d iterations (the lab's 1000): %u leaders crashed, %u restarts, %llu indices "
           "applied\n", n_iters, crashes, restarts,
           (unsigned long long)cluster_max_applied(c));
    if (crashes == 0)
        cluster_fatal(c, "no leader was ever crashed in %d iterations: the test did not test "
                      "anything", n_iters);
    cluster_one_int(c, random_cmd(c), servers, true);
    cluster_end(c);
}

struct agree_worker {
    struct cluster *c;
    uint64_t cmd;
    atomic_bool done;
};

static void *agree_worker_main(void *arg)
{
    struct agree_worker *w = arg;
    cluster_one_int(w->c, w->cmd, 1, true);
    atomic_store(&w->done, true);
    return NULL;
}

/* TestUnreliableAgree: 49 rounds of four concurrent one()s and one
 * sequential one() (245 commands) over a network that drops, delays and
 * reorders; every one of them must commit. */
static void test_unreliable_agree(void **state)
{
    struct cluster *c = start(state, "unreliable agreement", 5, true);
    unsigned servers = cluster_n(c);
    static struct agree_worker w[49 * 4];
    unsigned nw = 0;
    for (unsigned iters = 1; iters < 50; iters++) {
        for (unsigned j = 0; j < 4; j++) {
            w[nw] = (struct agree_worker){.c = c, .cmd = 100 * iters + j};
            workers_spawn(c, agree_worker_main, &w[nw]);
            nw++;
        }
        cluster_one_int(c, iters, 1, true);
    }
    cluster_set_reliable(c, true);
    workers_join();
    cluster_check(c);
    for (unsigned k = 0; k < nw; k++)
        if (!atomic_load(&w[k].done))
            cluster_fatal(c, "one(%llu) on a client thread did not finish",
                          (unsigned long long)w[k].cmd);
    cluster_one_int(c, 100, servers, true);
    cluster_end(c);
}

/* TestFigure8Unreliable: Figure 8 with leaders disconnected (not crashed)
 * half of the time, over an unreliable network, with long reordering of
 * replies from iteration 200 on. The final one() must still succeed within
 * its 10 s while replies are being reordered, which needs a leader that
 * backs up over conflicting follower logs quickly. */
static void test_figure8_unreliable(void **state)
{
    struct cluster *c = start(state, "Figure 8 (unreliable)", 5, true);
    unsigned servers = cluster_n(c);
    cluster_one_int(c, cluster_rand(c, 10000), 1, true);

    unsigned nup = servers, cuts = 0;
    for (int iters = 0; iters < FIGURE8_UNRELIABLE_ITERS; iters++) {
        if (iters == FIGURE8_UNRELIABLE_REORDER_FROM)
            cluster_set_long_reordering(c, true);
        int leader = -1;
        for (unsigned i = 0; i < servers; i++)
            if (cluster_start_int(c, i, cluster_rand(c, 10000), NULL, NULL) &&
                cluster_connected(c, i))
                leader = (int)i;

        figure8_sleep(c);

        if (leader != -1 && cluster_rand(c, 1000) < LAB_ET / 2) {
            cluster_disconnect(c, (unsigned)leader);
            nup--;
            cuts++;
        }
        if (nup < 3) {
            unsigned s = cluster_rand(c, servers);
            if (!cluster_connected(c, s)) {
                cluster_connect(c, s);
                nup++;
            }
        }
    }
    for (unsigned i = 0; i < servers; i++)
        if (!cluster_connected(c, i))
            cluster_connect(c, i);
    printf("  %d iterations: %u leaders disconnected, %llu indices applied\n",
           FIGURE8_UNRELIABLE_ITERS, cuts, (unsigned long long)cluster_max_applied(c));
    if (cuts == 0)
        cluster_fatal(c, "no leader was ever disconnected in %d iterations: the test did not "
                      "test anything", FIGURE8_UNRELIABLE_ITERS);
    /* Long reordering is still on, as in the lab. */
    cluster_one_int(c, cluster_rand(c, 10000), servers, true);
    cluster_end(c);
}

/* ---- churn ---- */

#define CHURN_CLIENTS 3
#define CHURN_MAX_SEEN 100000

struct seen {
    uint64_t index, value;
};

struct churn_client {
    struct cluster *c;
    unsigned me;
    struct seen *seen; /* what this client saw committed */
    size_t n_seen;
    atomic_bool done;  /* it returned normally (not ended by a failure) */
};

/* The lab's churn client: Start a fresh value on every running node (one of
 * them may lead); if one accepted, poll for a while whether that index got
 * committed, and if it holds this value, remember both. Values are unique
 * (client id, counter), so each can be found again in the final log. */
static void *churn_client_main(void *arg)
{
    struct churn_client *cl = arg;
    struct cluster *c = cl->c;
    unsigned servers = cluster_n(c);
    static const unsigned backoff[] = {10, 20, 50, 100, 200};
    uint64_t counter = 0;
    while (!atomic_load(&workers.stop)) {
        uint64_t x = (uint64_t)(cl->me + 1) << 40 | ++counter;
        uint64_t index = 0;
        bool ok = false;
        for (unsigned i = 0; i < servers; i++) {
            uint64_t index1;
            if (cluster_start_int(c, i, x, &index1, NULL)) {
                ok = true;
                index = index1;
            }
        }
        if (!ok) {
            cluster_sleep(c, 79 + cl->me * 17);
            continue;
        }
        /* Maybe the leader will commit the value, maybe not; do not wait
         * forever. */
        for (size_t k = 0; k < sizeof(backoff) / sizeof(backoff[0]); k++) {
            if (cluster_n_committed(c, index) > 0) {
                uint8_t cmd[8];
                lab_cmd_int(cmd, x);
                if (cluster_committed_is(c, index, cmd, sizeof(cmd)) &&
                    cl->n_seen < CHURN_MAX_SEEN)
                    cl->seen[cl->n_seen++] = (struct seen){.index = index, .value = x};
                break;
            }
            cluster_sleep(c, backoff[k]);
        }
    }
    atomic_store(&cl->done, true);
    return NULL;
}

/* TestReliableChurn / TestUnreliableChurn: three clients submit all the
 * time while, for 20 rounds of 700 ms, nodes are disconnected (20%),
 * restarted or reconnected (50%) and crashed (20%). Then everything is
 * healed; every value a client saw committed, at the index where it saw
 * it, must be in the final log that all five nodes applied. */
static void churn(void **state, bool unreliable)
{
    struct cluster *c = start(state, unreliable ? "unreliable churn" : "churn", 5, unreliable);
    unsigned servers = cluster_n(c);

    static struct churn_client clients[CHURN_CLIENTS];
    for (unsigned k = 0; k < CHURN_CLIENTS; k++) {
        free(clients[k].seen);
        clients[k] = (struct churn_client){.c = c, .me = k};
        clients[k].seen = calloc(CHURN_MAX_SEEN, sizeof(struct seen));
        if (!clients[k].seen)
            cluster_fatal(c, "out of memory");
        workers_spawn(c, churn_client_main, &clients[k]);
    }

    for (int iters = 0; iters < 20; iters++) {
        if (cluster_rand(c, 1000) < 200) {
            unsigned i = cluster_rand(c, servers);
            cluster_disconnect(c, i);
        }
        if (cluster_rand(c, 1000) < 500) {
            unsigned i = cluster_rand(c, servers);
            if (!cluster_alive(c, i))
                restart(c, i);
            cluster_connect(c, i);
        }
        if (cluster_rand(c, 1000) < 200) {
            unsigned i = cluster_rand(c, servers);
            if (cluster_alive(c, i))
                crash(c, i);
        }
        /* Often enough that the peers cannot settle between changes, rarely
         * enough that they often keep up: below an election timeout, but
         * not hugely below. */
        cluster_sleep(c, LAB_ET * 7 / 10);
    }

    cluster_sleep(c, LAB_ET);
    cluster_set_reliable(c, true);
    for (unsigned i = 0; i < servers; i++) {
        if (!cluster_alive(c, i))
            restart(c, i);
        cluster_connect(c, i);
    }
    workers_join();
    cluster_check(c);
    size_t total = 0;
    for (unsigned k = 0; k < CHURN_CLIENTS; k++) {
        if (!atomic_load(&clients[k].done))
            cluster_fatal(c, "client %u failed", k);
        total += clients[k].n_seen;
    }

    cluster_sleep(c, LAB_ET);
    uint64_t last_index = cluster_one_int(c, random_cmd(c), servers, true);

    int64_t *really = calloc(last_index + 1, sizeof(*really));
    if (!really)
        cluster_fatal(c, "out of memory");
    for (uint64_t index = 1; index <= last_index; index++)
        really[index] = cluster_wait(c, index, servers, -1);

    for (unsigned k = 0; k < CHURN_CLIENTS; k++)
        for (size_t s = 0; s < clients[k].n_seen; s++) {
            const struct seen *v = &clients[k].seen[s];
            if (v->index <= last_index && really[v->index] == (int64_t)v->value)
                continue;
            uint64_t elsewhere = 0;
            for (uint64_t index = 1; index <= last_index && !elsewhere; index++)
                if (really[index] == (int64_t)v->value)
                    elsewhere = index;
            int64_t there = v->index <= last_index ? really[v->index] : LAB_WAIT_NOT_INT;
            free(really);
            if (elsewhere)
                cluster_fatal(c, "client %u saw value %#llx committed at index %llu, but the "
                              "final log has it at %llu", k, (unsigned long long)v->value,
                              (unsigned long long)v->index, (unsigned long long)elsewhere);
            cluster_fatal(c, "client %u saw value %#llx committed at index %llu, but the final "
                          "log (last index %llu) does not have it; index %llu holds %lld", k,
                          (unsigned long long)v->value, (unsigned long long)v->index,
                          (unsigned long long)last_index, (unsigned long long)v->index,
                          (long long)there);
        }
    free(really);

    printf("  %zu values seen committed by %d clients, all in the final log of %llu entries\n",
           total, CHURN_CLIENTS, (unsigned long long)last_index);
    if (total == 0)
        cluster_fatal(c, "no client saw any value committed during the churn: no progress");
    for (unsigned k = 0; k < CHURN_CLIENTS; k++) {
        free(clients[k].seen);
        clients[k].seen = NULL;
    }
    cluster_end(c);
}

static void test_reliable_churn(void **state)
{
    churn(state, false);
}

static void test_unreliable_churn(void **state)
{
    churn(state, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_persist1, teardown),
        cmocka_unit_test_teardown(test_persist2, teardown),
        cmocka_unit_test_teardown(test_persist3, teardown),
        cmocka_unit_test_teardown(test_figure8, teardown),
        cmocka_unit_test_teardown(test_unreliable_agree, teardown),
        cmocka_unit_test_teardown(test_figure8_unreliable, teardown),
        cmocka_unit_test_teardown(test_reliable_churn, teardown),
        cmocka_unit_test_teardown(test_unreliable_churn, teardown),
    };
    const char *only = getenv("RAFT_TEST");
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests_name("lab_persistence", tests, NULL, NULL);
}
