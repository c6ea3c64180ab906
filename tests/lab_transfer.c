/*
 * lab_transfer.c - lab part "transfer": leadership transfer (Raft thesis
 * §3.10) over the simulated network. The leader stops taking puts, brings
 * the target up to date, sends TimeoutNow; the target campaigns at once
 * with the transfer flag, which voters honour although they hear from the
 * leader. Scenarios: an up-to-date target (done within one election
 * timeout), a target 1,000 entries behind, the first TimeoutNow lost, puts
 * arriving during transfers, refusals, and reads on the old leader while
 * the new one takes writes (no stale read).
 *
 * Every test also runs the harness's standing checks (tests/support/
 * cluster.h): one leader per term, Leader Append-Only, Log Matching, Leader
 * Completeness, State Machine Safety.
 *
 * Run one test: RAFT_TEST=test_transfer_to_up_to_date_follower build/tests/lab_transfer
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

#include "tests/support/clerk.h"

#define PART "transfer"

static struct cluster *start(void **state, const char *desc, bool kv)
{
    struct cluster_opts opts = {.n = 3, .kv = kv};
    return cluster_new(state, PART, desc, &opts);
}

/* raft_transfer on `from`, which must succeed with `target` leading. */
static void transfer_ok(struct cluster *c, unsigned from, unsigned target, unsigned wait_ms)
{
    char why[160] = "";
    int32_t hint = RAFT_NO_NODE;
    int rc = cluster_transfer(c, from, (int32_t)target, wait_ms, &hint, why, sizeof(why));
    if (rc != 0 || hint != (int32_t)target)
        cluster_fatal(c, "transfer n%u -> n%u: %s (%s), leader hint n%d", from, target,
                      lab_err_name(rc), why, hint);
}

/* §3.10: with the target already holding the whole log, the transfer is
 * one TimeoutNow and one election: well within an election timeout. */
static void test_transfer_to_up_to_date_follower(void **state)
{
    struct cluster *c = start(state, "transfer to an up-to-date follower", false);
    for (int round = 0; round < 3; round++) {
        unsigned leader = cluster_check_one_leader(c);
        cluster_one_int(c, 100 + round, 3, true); /* every follower holds the log */
        unsigned target = (leader + 1 + cluster_rand(c, 2)) % 3;
        uint64_t t0 = lab_now_ms();
        transfer_ok(c, leader, target, cluster_ms(c, 2 * LAB_ET));
        uint64_t took = lab_now_ms() - t0;
        if (took >= cluster_ms(c, LAB_ELECTION_MAX_MS))
            cluster_fatal(c, "transfer n%u -> n%u took %llu ms, more than an election "
                          "timeout", leader, target, (unsigned long long)took);
        printf("  n%u -> n%u in %llu ms\n", leader, target, (unsigned long long)took);
        if (cluster_check_one_leader(c) != target)
            cluster_fatal(c, "n%u does not lead after the transfer", target);
    }
    cluster_one_int(c, 200, 3, true);
    cluster_end(c);
}

/* The target first receives the 1,000 entries it missed (the usual
 * replication), then TimeoutNow; it wins with all of them. */
static void test_transfer_to_lagging_follower(void **state)
{
    struct cluster *c = start(state, "transfer to a follower 1,000 entries behind", false);
    unsigned leader = cluster_check_one_leader(c);
    unsigned target = (leader + 1) % 3;
    cluster_disconnect(c, target);
    uint64_t index = 0, term;
    for (uint64_t x = 1; x <= 1000; x++)
        if (!cluster_start_int(c, leader, x, &index, &term))
            cluster_fatal(c, "n%u refused entry %llu", leader, (unsigned long long)x);
    cluster_wait(c, index, 2, -1);
    cluster_connect(c, target);
    transfer_ok(c, leader, target, cluster_ms(c, 2 * LAB_ET));
    struct raft_status st;
    if (!cluster_status(c, target, &st) || st.last_index <= index)
        cluster_fatal(c, "n%u leads with log end %llu, without the entries up to %llu",
                      target, (unsigned long long)st.last_index, (unsigned long long)index);
    cluster_one_int(c, 5000, 3, true);
    cluster_end(c);
}

struct transfer_call {
    struct cluster *c;
    unsigned from, target;
    int rc;
    int32_t hint;
    char why[160];
};

static void *transfer_main(void *arg)
{
    struct transfer_call *t = arg;
    t->rc = cluster_transfer(t->c, t->from, (int32_t)t->target, cluster_ms(t->c, 2 * LAB_ET),
                             &t->hint, t->why, sizeof(t->why));
    return NULL;
}

/* The first TimeoutNow is lost (the link from leader to target is cut when
 * the transfer begins); the leader sends it again at heartbeat pace and the
 * transfer completes once the link is back. */
static void test_first_timeout_now_dropped(void **state)
{
    struct cluster *c = start(state, "transfer whose first TimeoutNow is lost", false);
    unsigned leader = cluster_check_one_leader(c);
    unsigned target = (leader + 2) % 3;
    cluster_one_int(c, 1, 3, true);
    struct simnet_stats before, during, after;
    simnet_set_link(cluster_net(c), leader, target, false);
    simnet_stats(cluster_net(c), &before);
    struct transfer_call t = {.c = c, .from = leader, .target = target};
    pthread_t th;
    pthread_create(&th, NULL, transfer_main, &t);
    cluster_sleep(c, 150); /* three heartbeats: at least one TimeoutNow lost */
    simnet_stats(cluster_net(c), &during);
    simnet_set_link(cluster_net(c), leader, target, true);
    pthread_join(th, NULL);
    simnet_stats(cluster_net(c), &after);
    uint64_t lost = during.by_type[RAFT_MSG_TIMEOUT_NOW] - before.by_type[RAFT_MSG_TIMEOUT_NOW];
    uint64_t sent = after.by_type[RAFT_MSG_TIMEOUT_NOW] - before.by_type[RAFT_MSG_TIMEOUT_NOW];
    printf("  %llu TimeoutNow sent while the link was cut, %llu in all\n",
           (unsigned long long)lost, (unsigned long long)sent);
    if (lost < 1)
        cluster_fatal(c, "no TimeoutNow was sent while the link was cut");
    if (t.rc != 0 || t.hint != (int32_t)target)
        cluster_fatal(c, "transfer n%u -> n%u: %s (%s)", leader, target, lab_err_name(t.rc),
                      t.why);
    if (sent <= lost)
        cluster_fatal(c, "the transfer completed with no TimeoutNow after the link came back");
    cluster_one_int(c, 2, 3, true);
    cluster_end(c);
}

/* Refused: a transfer to the leader itself or to no member; asked of a
 * follower, the answer names the leader. Nothing changes: the term stays,
 * puts go on. */
static void test_transfer_refusals(void **state)
{
    struct cluster *c = start(state, "transfer to itself or to no member: refused", false);
    unsigned leader = cluster_check_one_leader(c);
    uint64_t term = cluster_check_terms(c);
    char why[160];
    int32_t hint;
    int rc = cluster_transfer(c, leader, (int32_t)leader, 1000, &hint, why, sizeof(why));
    if (rc != -EINVAL || !strstr(why, "already leads"))
        cluster_fatal(c, "transfer to itself: %s (%s), want refused", lab_err_name(rc), why);
    printf("  to itself: %s\n", why);
    rc = cluster_transfer(c, leader, 7, 1000, &hint, why, sizeof(why));
    if (rc != -EINVAL || !strstr(why, "not a member"))
        cluster_fatal(c, "transfer to n7: %s (%s), want refused", lab_err_name(rc), why);
    printf("  to n7: %s\n", why);
    unsigned follower = (leader + 1) % 3;
    rc = cluster_transfer(c, follower, (int32_t)leader, 1000, &hint, why, sizeof(why));
    if (rc != -EPERM || hint != (int32_t)leader)
        cluster_fatal(c, "transfer asked of follower n%u: %s, hint n%d", follower,
                      lab_err_name(rc), hint);
    cluster_one_int(c, 1, 3, false);
    if (cluster_check_terms(c) != term)
        cluster_fatal(c, "a refused transfer moved the term");
    cluster_end(c);
}

/* ---- with the key-value service: puts and reads during transfers ---- */

struct load {
    struct cluster *c;
    struct kvlab *kl;
    struct lincheck_history *h;
    int id;
    atomic_bool stop; /* set by the test thread, read by the writer */
    unsigned acked;
    char last[32];
};

/* One clerk puts its own key, values 1, 2, ... each once acknowledged. */
static void *writer_main(void *arg)
{
    struct load *l = arg;
    struct clerk k;
    clerk_init(&k, l->c, l->kl, l->h, l->id);
    char key[16], value[32];
    snprintf(key, sizeof(key), "k%d", l->id);
    for (unsigned v = 1; !atomic_load(&l->stop); v++) {
        snprintf(value, sizeof(value), "%u", v);
        if (clerk_put(&k, key, value, 10000) != 0)
            cluster_fatal(l->c, "put %s=%s not acknowledged within 10 s", key, value);
        l->acked = v;
        snprintf(l->last, sizeof(l->last), "%s", value);
        lab_sleep_ms(1); /* a steady load, not a busy loop */
    }
    return NULL;
}

/* §3.10: puts that arrive during a transfer are refused with the target as
 * hint and retried there: none is lost, none takes effect twice (the
 * history is linearizable, and each key ends at its last acknowledged
 * value). */
static void test_puts_during_transfers(void **state)
{
    struct cluster *c = start(state, "puts arriving during transfers", true);
    struct kvlab *kl = kvlab_new(c);
    cluster_check_one_leader(c);
    struct lincheck_history *h = lincheck_new();
    struct load w[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (struct load){.c = c, .kl = kl, .h = h, .id = i};
        pthread_create(&th[i], NULL, writer_main, &w[i]);
    }
    for (int round = 0; round < 6; round++) {
        cluster_sleep(c, 200);
        unsigned leader = cluster_check_one_leader(c);
        transfer_ok(c, leader, (leader + 1) % 3, cluster_ms(c, 2 * LAB_ET));
    }
    cluster_sleep(c, 200);
    for (int i = 0; i < 3; i++) {
        atomic_store(&w[i].stop, true);
        pthread_join(th[i], NULL);
    }
    struct clerk k;
    clerk_init(&k, c, kl, h, 10);
    unsigned total = 0;
    for (int i = 0; i < 3; i++) {
        char key[16], *got;
        snprintf(key, sizeof(key), "k%d", i);
        if (clerk_read(&k, key, 5000, &got) != 0 || strcmp(got, w[i].last) != 0)
            cluster_fatal(c, "%s ends at \"%s\", its last acknowledged put was %s", key,
                          got ? got : "(no value)", w[i].last);
        free(got);
        total += w[i].acked;
    }
    printf("  %u puts acknowledged across 6 transfers\n", total);
    lab_check_linearizable(c, h);
    lincheck_free(h);
    cluster_end(c);
    kvlab_free(kl);
}

/* One clerk reads x on the old leader, over and over (recorded). */
static void *reader_main(void *arg)
{
    struct load *l = arg;
    struct clerk k;
    clerk_init(&k, l->c, l->kl, l->h, l->id);
    k.leader = (unsigned)l->acked; /* the old leader */
    while (!l->stop) {
        char *got = NULL;
        int32_t hint;
        int rc = lab_get(l->kl, (unsigned)l->acked, "x", &got, &hint);
        (void)rc;
        free(got);
        clerk_get(&k, "x", &got); /* recorded; follows redirects */
        free(got);
        k.leader = (unsigned)l->acked;
    }
    return NULL;
}

/* The old leader must stop its lease reads when it sends TimeoutNow: the
 * voters grant the target at once, and the new leader takes writes while a
 * lease of the old one would still run. Here the old leader is cut off
 * right after the transfer, clients keep reading there, and the new leader
 * takes new values: every read in the history must be linearizable. */
static void test_no_stale_read_after_transfer_and_cut_off(void **state)
{
    struct cluster *c = start(state, "transfer, then the old leader cut off while clients "
                              "read (no stale read)", true);
    struct kvlab *kl = kvlab_new(c);
    struct lincheck_history *h = lincheck_new();
    struct clerk wr;
    clerk_init(&wr, c, kl, h, 0);
    char value[32];
    for (int round = 0; round < 3; round++) {
        unsigned old = cluster_check_one_leader(c);
        snprintf(value, sizeof(value), "a%d", round);
        if (clerk_put(&wr, "x", value, 10000) != 0)
            cluster_fatal(c, "put x=%s not acknowledged", value);
        struct load r = {.c = c, .kl = kl, .h = h, .id = 1 + round, .acked = old};
        pthread_t th;
        pthread_create(&th, NULL, reader_main, &r);
        unsigned target = (old + 1) % 3;
        transfer_ok(c, old, target, cluster_ms(c, 2 * LAB_ET));
        cluster_disconnect(c, old);
        for (int j = 0; j < 5; j++) {
            snprintf(value, sizeof(value), "b%d.%d", round, j);
            if (clerk_put(&wr, "x", value, 10000) != 0)
                cluster_fatal(c, "put x=%s on the new leader not acknowledged", value);
        }
        r.stop = true;
        pthread_join(th, NULL);
        cluster_connect(c, old);
    }
    lab_check_linearizable(c, h);
    lincheck_free(h);
    cluster_end(c);
    kvlab_free(kl);
}

#define LAB_TEST(t) cmocka_unit_test_teardown(t, cluster_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        LAB_TEST(test_transfer_to_up_to_date_follower),
        LAB_TEST(test_transfer_to_lagging_follower),
        LAB_TEST(test_first_timeout_now_dropped),
        LAB_TEST(test_transfer_refusals),
        LAB_TEST(test_puts_during_transfers),
        LAB_TEST(test_no_stale_read_after_transfer_and_cut_off),
    };
    const char *only = getenv("RAFT_TEST");
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests_name("lab_transfer", tests, NULL, NULL);
}
