/*
 * lab_election.c - lab part 3A (2A before 2024): leader election, over the
 * simulated network, with the lab's scenarios and numbers (see
 * tests/README-lab.md), plus checks the lab cannot make: with pre-vote and
 * check-quorum the term of a healthy cluster never moves, an isolated
 * leader steps down, a rejoining follower does not depose the leader, and a
 * vote is on disk before it is granted.
 *
 * Every test also runs the harness's standing checks (tests/support/
 * cluster.h): one leader per term, Leader Append-Only, Log Matching, Leader
 * Completeness, State Machine Safety.
 *
 * Run one test: RAFT_TEST=test_re_election build/tests/lab_election
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/support/cluster.h"

#define PART "3A"

static struct cluster *start(void **state, const char *desc, unsigned n)
{
    struct cluster_opts opts = {.n = n};
    return cluster_new(state, PART, desc, &opts);
}

/* TestInitialElection: one leader; all agree on the term; with no
 * failures the term stays put. The lab only warns if it moves; with
 * pre-vote and check-quorum nothing can move it, so here it is an error. */
static void test_initial_election(void **state)
{
    struct cluster *c = start(state, "initial election", 3);
    cluster_check_one_leader(c);

    /* Sleep a bit to avoid racing with followers learning of the election,
     * then check that all peers agree on the term. */
    cluster_sleep(c, 50);
    uint64_t term1 = cluster_check_terms(c);
    if (term1 < 1)
        cluster_fatal(c, "term is %llu, but should be at least 1", (unsigned long long)term1);

    /* Does the leader and term stay the same if there is no network failure? */
    cluster_sleep(c, 2 * LAB_ET);
    uint64_t term2 = cluster_check_terms(c);
    if (term1 != term2)
        cluster_fatal(c, "term changed from %llu to %llu with no failures (pre-vote and "
                      "check-quorum should keep it)", (unsigned long long)term1,
                      (unsigned long long)term2);

    /* There should still be a leader. */
    cluster_check_one_leader(c);
    cluster_end(c);
}

/* TestReElection: a new leader when the old one goes; the old one's return
 * does not disturb it; no leader without a quorum; a leader again as soon
 * as a quorum is back. */
static void test_re_election(void **state)
{
    struct cluster *c = start(state, "election after network failure", 3);
    unsigned n = cluster_n(c);
    unsigned leader1 = cluster_check_one_leader(c);

    /* If the leader disconnects, a new one should be elected. */
    cluster_disconnect(c, leader1);
    cluster_check_one_leader(c);

    /* If the old leader rejoins, that shouldn't disturb the new leader, and
     * the old leader should switch to follower. */
    cluster_connect(c, leader1);
    unsigned leader2 = cluster_check_one_leader(c);

    /* If there's no quorum, no new leader should be elected. */
    cluster_disconnect(c, leader2);
    cluster_disconnect(c, (leader2 + 1) % n);
    cluster_sleep(c, 2 * LAB_ET);
    /* Check that the one connected server does not think it is the leader. */
    cluster_check_no_leader(c);

    /* If a quorum arises, it should elect a leader. */
    cluster_connect(c, (leader2 + 1) % n);
    cluster_check_one_leader(c);

    /* Re-join of the last node shouldn't prevent a leader from existing. */
    cluster_connect(c, leader2);
    cluster_check_one_leader(c);
    cluster_end(c);
}

/* TestManyElections: 7 nodes; 9 rounds of cutting off 3 random ids
 * (repeats allowed) and checking that a leader exists among the rest. */
static void test_many_elections(void **state)
{
    struct cluster *c = start(state, "multiple elections", 7);
    unsigned n = cluster_n(c);
    cluster_check_one_leader(c);
    for (int round = 1; round < 10; round++) {
        /* Disconnect three nodes. */
        unsigned i1 = cluster_rand(c, n), i2 = cluster_rand(c, n), i3 = cluster_rand(c, n);
        cluster_disconnect(c, i1);
        cluster_disconnect(c, i2);
        cluster_disconnect(c, i3);

        /* Either the current leader should still be alive, or the remaining
         * four should elect a new one. */
        cluster_check_one_leader(c);

        cluster_connect(c, i1);
        cluster_connect(c, i2);
        cluster_connect(c, i3);
    }
    cluster_check_one_leader(c);
    cluster_end(c);
}

/* Not in the lab: a cluster of one is its own majority. */
static void test_one_node_cluster_elects_itself_and_commits_alone(void **state)
{
    struct cluster *c = start(state, "one-node cluster", 1);
    assert_int_equal(cluster_check_one_leader(c), 0);
    uint64_t i1 = cluster_one_int(c, 101, 1, false);
    uint64_t i2 = cluster_one_int(c, 102, 1, false);
    if (i2 != i1 + 1)
        cluster_fatal(c, "second command at index %llu, expected %llu",
                      (unsigned long long)i2, (unsigned long long)i1 + 1);
    uint64_t term;
    bool leader;
    assert_true(cluster_get_state(c, 0, &term, &leader));
    assert_true(leader);
    cluster_end(c);
}

/* Not in the lab: thesis §9.6 (pre-vote). A follower cut off for several
 * election timeouts cannot win pre-votes, so it does not raise its term,
 * and on its return the healthy leader keeps leading in the same term. */
static void test_rejoining_follower_does_not_disrupt_the_leader(void **state)
{
    struct cluster *c = start(state, "rejoining follower keeps the leader (pre-vote)", 3);
    unsigned leader = cluster_check_one_leader(c);
    cluster_one_int(c, 1, 3, true);
    uint64_t term = cluster_check_terms(c);
    unsigned follower = (leader + 1) % 3;

    cluster_disconnect(c, follower);
    cluster_sleep(c, 3 * LAB_ET);
    uint64_t fterm;
    bool fleads;
    assert_true(cluster_get_state(c, follower, &fterm, &fleads));
    if (fterm != term || fleads)
        cluster_fatal(c, "n%u, cut off, went from T%llu to T%llu%s: pre-vote should keep its "
                      "term", follower, (unsigned long long)term, (unsigned long long)fterm,
                      fleads ? " and leads" : "");

    cluster_connect(c, follower);
    cluster_sleep(c, 2 * LAB_ET);
    if (cluster_check_one_leader(c) != leader || cluster_check_terms(c) != term)
        cluster_fatal(c, "the rejoining follower n%u disturbed leader n%u of T%llu", follower,
                      leader, (unsigned long long)term);
    cluster_one_int(c, 2, 3, false);
    cluster_end(c);
}

/* Not in the lab: thesis §6.2 (check-quorum). A leader that stops hearing
 * from a majority steps down by itself within about two election timeouts,
 * even though nobody can tell it about a newer term. */
static void test_isolated_leader_steps_down(void **state)
{
    struct cluster *c = start(state, "isolated leader steps down (check-quorum)", 3);
    unsigned leader = cluster_check_one_leader(c);
    cluster_disconnect(c, leader);
    cluster_sleep(c, 2 * LAB_ET);
    uint64_t term;
    bool leads;
    assert_true(cluster_get_state(c, leader, &term, &leads));
    if (leads)
        cluster_fatal(c, "n%u still leads T%llu after %u ms without a majority", leader,
                      (unsigned long long)term, cluster_ms(c, 2 * LAB_ET));
    unsigned leader2 = cluster_check_one_leader(c);
    assert_int_not_equal(leader2, leader);
    cluster_connect(c, leader);
    cluster_one_int(c, 7, 3, true);
    cluster_end(c);
}

/* Beyond the course lab: Figure 2, "updated on stable storage
 * before responding to RPCs". n2 grants a vote; the power goes the moment
 * the reply is back; after a restart n2 must still know it voted in that
 * term and refuse a second candidate. */
static void test_vote_is_durable_before_it_is_granted(void **state)
{
    struct cluster *c = start(state, "vote on disk before it is granted", 3);
    /* n0 and n1 stop before any election timeout can pass; n2 is left
     * alone (its pre-votes fail, so its term stays). */
    cluster_crash(c, 0);
    cluster_crash(c, 1);
    cluster_sleep(c, LAB_ET); /* longer than the election timeout: no leader heard */

    struct raft_status st;
    assert_true(cluster_status(c, 2, &st));
    uint64_t term = st.term + 1;
    struct raft_msg req = {.type = RAFT_MSG_REQUEST_VOTE, .from = 0};
    req.u.rv.term = term;
    req.u.rv.last_log_index = st.last_index + 10; /* at least as up to date */
    req.u.rv.last_log_term = st.term;
    struct raft_msg reply;
    int rc = cluster_deliver(c, 2, &req, &reply);
    memstore_crash(cluster_store(c, 2)); /* the power goes right after the answer */
    assert_int_equal(rc, 0);
    if (!reply.u.rv_reply.vote_granted)
        cluster_fatal(c, "n2 denied a vote to n0 for T%llu with a longer log",
                      (unsigned long long)term);

    uint64_t stored_term;
    int32_t stored_vote;
    memstore_term_vote(cluster_store(c, 2), &stored_term, &stored_vote);
    if (stored_term != term || stored_vote != 0)
        cluster_fatal(c, "n2 granted n0 its vote for T%llu, but its storage holds T%llu, vote %d",
                      (unsigned long long)term, (unsigned long long)stored_term, stored_vote);

    cluster_crash(c, 2);
    cluster_start1(c, 2);
    req.from = 1; /* a second candidate, same term, same log */
    rc = cluster_deliver(c, 2, &req, &reply);
    assert_int_equal(rc, 0);
    if (reply.u.rv_reply.vote_granted)
        cluster_fatal(c, "n2 voted twice in T%llu: for n0, then after a restart for n1",
                      (unsigned long long)term);
    /* The same candidate asking again is fine (its request may be a resend). */
    req.from = 0;
    assert_int_equal(cluster_deliver(c, 2, &req, &reply), 0);
    assert_true(reply.u.rv_reply.vote_granted);
    cluster_end(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_initial_election, cluster_teardown),
        cmocka_unit_test_teardown(test_re_election, cluster_teardown),
        cmocka_unit_test_teardown(test_many_elections, cluster_teardown),
        cmocka_unit_test_teardown(test_one_node_cluster_elects_itself_and_commits_alone,
                                  cluster_teardown),
        cmocka_unit_test_teardown(test_rejoining_follower_does_not_disrupt_the_leader,
                                  cluster_teardown),
        cmocka_unit_test_teardown(test_isolated_leader_steps_down, cluster_teardown),
        cmocka_unit_test_teardown(test_vote_is_durable_before_it_is_granted, cluster_teardown),
    };
    const char *only = getenv("RAFT_TEST");
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests_name("lab_election", tests, NULL, NULL);
}
