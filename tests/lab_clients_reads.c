/*
 * lab_clients_reads.c - lab part "clients", reads (Raft thesis §6.4): a
 * read sees every put that was acknowledged before it began. A new leader
 * first commits its no-op; a deposed leader that does not know it yet
 * cannot confirm its leadership with a majority; concurrent reads share
 * one round of heartbeats; and (§6.4.1) a leader reads on a lease only
 * while no other leader can have been elected.
 *
 * Every node runs the key-value state machine (cluster_opts.kv) and its
 * real service (kv/service.c, through tests/support/kvlab.h): a get is the
 * service's read barrier, then the node's own store. Snapshots are off
 * (snapshot_every 0): the harness's snapshots do not carry the store.
 *
 * Run one test: RAFT_TEST=test_deposed_leader_refuses_reads build/tests/lab_clients_reads
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/support/clerk.h"

static struct cluster *start(void **state, const char *desc, const struct cluster_opts *o)
{
    struct cluster_opts opts = *o;
    opts.kv = true;
    return cluster_new(state, "clients", desc, &opts);
}

/* ---- reads see every acknowledged put ---- */

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
    struct kvlab *kl = kvlab_new(c);
    cluster_check_one_leader(c);
    struct lincheck_history *h = lincheck_new();
    struct clerk k;
    clerk_init(&k, c, kl, h, 0);
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
                cluster_fatal(c, "read of x on leader n%u failed: %s", k.leader, lab_err_name(rc));
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
        unsigned nl = lab_await_new_leader(c, st.term, &st);
        changes++;
        stale_commit += stale;
        uint64_t noop = st.last_index; /* nothing proposed since it won */
        k.leader = nl;
        int rc = clerk_get(&k, "x", &got); /* recorded in the history */
        struct raft_status after;
        cluster_status(c, nl, &after);
        if (rc == 0 && after.applied < noop)
            cluster_fatal(c, "new leader n%u (T%llu) read x with %llu applied, "
                          "before its no-op at %llu", nl, (unsigned long long)st.term,
                          (unsigned long long)after.applied, (unsigned long long)noop);
        if (rc != 0) {
            cluster_note(c, "read on new leader n%u: %s", nl, lab_err_name(rc));
        } else {
            if (strcmp(got, value) != 0)
                cluster_fatal(c, "new leader n%u read x=\"%s\" at once after its election, "
                              "but x=%s was acknowledged before", nl, got, value);
            free(got);
        }
        k.leader = nl;
        cluster_connect(c, old);
    }
    printf("  %u leader changes; in %u of them a follower had not yet learned that the "
           "last acknowledged put was committed\n", changes, stale_commit);
    lab_check_linearizable(c, h);
    lincheck_free(h);
    cluster_end(c);
    kvlab_free(kl);
}

/* ---- a deposed leader refuses reads; a new one waits for its no-op ---- */

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
    struct kvlab *kl = kvlab_new(c);
    unsigned servers = cluster_n(c);
    unsigned old = cluster_check_one_leader(c);
    uint32_t all = (1u << servers) - 1;
    lab_put_via(c, kl, all, 1, "x", "old");
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

    char *got = NULL;
    int rc;
    if (check_quorum) {
        /* At once, before check-quorum steps it down. */
        rc = lab_get(kl, old, "x", &got, NULL);
        if (rc == 0)
            cluster_fatal(c, "cut-off leader n%u served a read of x=%s", old, got);
        printf("  read on the cut-off leader at once: %s\n", lab_err_name(rc));
    }

    unsigned nl = lab_await_new_leader(c, old_term, &(struct raft_status){0});
    if (!(majority & (1u << nl)))
        cluster_fatal(c, "n%u of the minority leads a new term", nl);
    lab_put_via(c, kl, majority, 2, "x", "new");

    uint64_t term;
    if (!cluster_get_state(c, old, &term, &leads))
        cluster_fatal(c, "n%u is down", old);
    if (!check_quorum && (!leads || term != old_term))
        cluster_fatal(c, "n%u should still believe it leads T%llu (no check-quorum, no "
                      "message from the majority), but is %s in T%llu", old,
                      (unsigned long long)old_term, leads ? "leader" : "not leader",
                      (unsigned long long)term);
    rc = lab_get(kl, old, "x", &got, NULL);
    if (rc == 0)
        cluster_fatal(c, "deposed leader n%u (%s T%llu) served a read of x=%s after the "
                      "majority acknowledged x=new", old,
                      leads ? "still leading" : "follower in", (unsigned long long)term, got);
    printf("  read on the deposed leader (%s T%llu) after the majority wrote: %s\n",
           leads ? "still leading" : "follower in", (unsigned long long)term, lab_err_name(rc));

    for (unsigned i = 0; i < servers; i++)
        cluster_connect(c, i);
    lab_put_via(c, kl, all, 3, "y", "1");
    struct clerk k;
    clerk_init(&k, c, kl, NULL, 4);
    k.leader = old;
    rc = clerk_read(&k, "x", 5000, &got);
    if (rc != 0 || strcmp(got, "new") != 0)
        cluster_fatal(c, "after healing, x reads as %s (%s), expected \"new\"",
                      got ? got : "nothing", lab_err_name(rc));
    free(got);
    cluster_end(c);
    kvlab_free(kl);
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
    struct kvlab *kl = kvlab_new(c);
    unsigned servers = cluster_n(c);
    unsigned old = cluster_check_one_leader(c);
    lab_put_via(c, kl, (1u << servers) - 1, 1, "x", "old");
    uint64_t old_term;
    bool leads;
    cluster_get_state(c, old, &old_term, &leads);
    unsigned group_of[RAFT_MAX_NODES];
    for (unsigned i = 0; i < servers; i++)
        group_of[i] = i == old || i == (old + 1) % servers ? 0 : 1;
    cluster_partition(c, group_of);
    uint64_t cut = lab_now_ms(); /* every request sent after this fails */

    int served = 0;
    uint64_t last_served = 0;
    bool new_leader = false;
    while (!new_leader || last_served == 0 || lab_now_ms() < cut + cluster_ms(c, 1000)) {
        for (unsigned i = 0; i < servers && !new_leader; i++) {
            uint64_t t;
            new_leader = group_of[i] == 1 && cluster_get_state(c, i, &t, &leads) && leads &&
                         t > old_term;
        }
        uint64_t begun = lab_now_ms();
        char *got;
        int rc = lab_get(kl, old, "x", &got, NULL);
        if (rc == 0 && new_leader)
            cluster_fatal(c, "n%u served a read on its lease of T%llu while a newer leader "
                          "existed", old, (unsigned long long)old_term);
        if (rc == 0) {
            free(got);
            served++;
            last_served = begun;
        }
        if (lab_now_ms() > cut + cluster_ms(c, 10000))
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
    kvlab_free(kl);
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
    struct kvlab *kl = kvlab_new(c);
    unsigned servers = cluster_n(c);
    unsigned old = cluster_check_one_leader(c);
    unsigned next = (old + 1) % servers, behind = (old + 2) % servers;
    uint32_t all = (1u << servers) - 1;
    lab_put_via(c, kl, all, 1, "x", "1");
    cluster_disconnect(c, behind);
    lab_put_via(c, kl, all & ~(1u << behind), 2, "x", "2");
    cluster_sleep(c, 200); /* next learns that x=2 is committed */

    unsigned delay = cluster_ms(c, 800);
    memstore_set_write_delay(cluster_store(c, next), delay);
    uint64_t old_term;
    bool leads;
    cluster_get_state(c, old, &old_term, &leads);
    cluster_disconnect(c, old);
    cluster_connect(c, behind);

    struct raft_status st;
    unsigned nl = lab_await_new_leader(c, old_term, &st);
    if (nl != next)
        cluster_fatal(c, "n%u won, but its log lacks x=2 that n%u has", nl, next);
    uint64_t noop = st.last_index;
    uint64_t t0 = lab_now_ms();
    char *got = NULL;
    int rc;
    /* A read waits on the cluster for 1000 lab ms at most, then is retried. */
    while ((rc = lab_get(kl, nl, "x", &got, NULL)) == -EAGAIN &&
           lab_now_ms() < t0 + cluster_ms(c, 5000))
        ;
    uint64_t took = lab_now_ms() - t0;
    struct raft_status after;
    cluster_status(c, nl, &after);
    if (rc != 0)
        cluster_fatal(c, "read on new leader n%u failed: %s", nl, lab_err_name(rc));
    printf("  read on the new leader returned after %llu ms (its disk takes %u ms per write)\n",
           (unsigned long long)took, delay);
    if (after.applied < noop)
        cluster_fatal(c, "new leader n%u read x with %llu applied, before its "
                      "no-op at %llu", nl, (unsigned long long)after.applied,
                      (unsigned long long)noop);
    /* The no-op cannot commit before its write lands, which began at the
     * earliest when n%u became leader, just before it was seen leading. */
    if (took < delay / 2)
        cluster_fatal(c, "new leader n%u answered a read %llu ms after it was seen leading, "
                      "before its no-op could be on its disk (%u ms a write)", nl,
                      (unsigned long long)took, delay);
    if (strcmp(got, "2") != 0)
        cluster_fatal(c, "new leader n%u read x=%s, not the acknowledged x=2", nl, got);
    free(got);

    memstore_set_write_delay(cluster_store(c, next), 0);
    cluster_connect(c, old);
    lab_put_via(c, kl, all, 3, "x", "3");
    cluster_end(c);
    kvlab_free(kl);
}

/* ---- concurrent reads share rounds ---- */

struct reader {
    struct kvlab *kl;
    pthread_barrier_t *go;
    unsigned leader, reads, failures;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    pthread_barrier_wait(r->go);
    for (unsigned i = 0; i < r->reads; i++) {
        char *got;
        if (lab_get(r->kl, r->leader, "x", &got, NULL) != 0)
            r->failures++;
        else
            free(got);
    }
    return NULL;
}

/* Sends `readers` threads doing `each` gets on the leader at once; returns
 * the RPCs the leader sent meanwhile (-1 when a read failed). */
static long read_burst(struct cluster *c, struct kvlab *kl, unsigned leader, unsigned readers, unsigned each,
                       uint64_t *ms)
{
    struct reader r[64];
    pthread_t t[64];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, readers + 1);
    for (unsigned i = 0; i < readers; i++) {
        r[i] = (struct reader){.kl = kl, .go = &go, .leader = leader, .reads = each};
        if (pthread_create(&t[i], NULL, reader_main, &r[i]))
            abort();
    }
    struct simnet_stats s0, s1;
    simnet_stats(cluster_net(c), &s0);
    uint64_t t0 = lab_now_ms();
    pthread_barrier_wait(&go); /* all readers start together */
    unsigned failures = 0;
    for (unsigned i = 0; i < readers; i++) {
        pthread_join(t[i], NULL);
        failures += r[i].failures;
    }
    *ms = lab_now_ms() - t0;
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
    struct kvlab *kl = kvlab_new(c);
    unsigned servers = cluster_n(c);
    lab_put_via(c, kl, (1u << servers) - 1, 1, "x", "1");
    for (int attempt = 0; attempt < 3; attempt++) {
        unsigned leader = cluster_check_one_leader(c);
        uint64_t ms1, ms2;
        long seq = read_burst(c, kl, leader, 1, 50, &ms1);
        long con = read_burst(c, kl, leader, 32, 25, &ms2);
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
        kvlab_free(kl);
        return;
    }
    cluster_fatal(c, "reads kept failing: the leader kept changing");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
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
    return cmocka_run_group_tests_name("lab_clients_reads", tests, NULL, NULL);
}
