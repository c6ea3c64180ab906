/*
 * unit_rules_transfer.c - leadership transfer (thesis §3.10) one rule step
 * at a time, on node 0 of a 3-node cluster with no thread and a clock the
 * tests move by hand (tests/support/rules_node.h): the leader's side
 * (catch-up, TimeoutNow, its resending, proposals and leases off, giving
 * up), the target's (campaign at once with the flag) and the voters'.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "raft/node.h"
#include "tests/support/rules_node.h"

static char why[160];

static int start_transfer(struct raft_node *n, int32_t target)
{
    why[0] = '\0';
    node_lock(n);
    int rc = transfer_start_locked(n, target, rules_clock_ms, why, sizeof(why));
    node_unlock(n);
    return rc;
}

static bool in_transfer(struct raft_node *n)
{
    node_lock(n);
    bool on = node_transfer_in_progress_locked(n);
    node_unlock(n);
    return on;
}

static bool holds_lease(struct raft_node *n)
{
    node_lock(n);
    bool lease = clients_holds_lease_locked(n, rules_clock_ms);
    node_unlock(n);
    return lease;
}

/* Peer `peer` takes the AppendEntries it is sent now and holds the
 * leader's whole log afterwards (the batch carries every entry). */
static void catch_up(struct raft_node *n, uint32_t peer)
{
    struct rpc r = rules_prepare(n, peer);
    assert_int_equal(r.req.type, RAFT_MSG_APPEND_ENTRIES);
    uint64_t match = r.req.u.ae.prev_log_index + r.req.u.ae.n_entries;
    rules_answer(n, &r, rules_append_reply(n->current_term, true, match, 0, 0));
    assert_int_equal(n->peers[peer].match_index, match);
}

static struct raft_msg timeout_now(uint32_t from, uint64_t term)
{
    struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .from = from};
    m.u.tn.term = term;
    return m;
}

/* §3.10: "the prior leader ... transfers its log entries to the target
 * server" first, and sends TimeoutNow only once the target holds them all;
 * the other follower gets only AppendEntries. */
static void test_timeout_now_goes_only_to_a_caught_up_target(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n); /* T1, its no-op at 1 */
    rules_propose(n, 3);
    assert_int_equal(start_transfer(n, 2), 0);
    assert_true(in_transfer(n));
    catch_up(n, 2); /* before: match 0, so AppendEntries with entries 1..4 */
    struct rpc r = rules_prepare(n, 2);
    assert_int_equal(r.req.type, RAFT_MSG_TIMEOUT_NOW);
    assert_int_equal(r.req.u.tn.term, 1);
    r = rules_prepare(n, 1);
    assert_int_equal(r.req.type, RAFT_MSG_APPEND_ENTRIES);
}

/* A lagging target gets entries, never TimeoutNow, until its match is the
 * leader's last index. */
static void test_lagging_target_gets_entries_first(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    rules_propose(n, 4); /* last index 5 */
    n->cfg.max_batch_bytes = 17; /* one entry per AppendEntries */
    assert_int_equal(start_transfer(n, 1), 0);
    for (int i = 0; i < 4; i++) {
        catch_up(n, 1);
        assert_true(n->peers[1].match_index < 5);
    }
    catch_up(n, 1);
    assert_int_equal(n->peers[1].match_index, 5);
    assert_int_equal(rules_prepare(n, 1).req.type, RAFT_MSG_TIMEOUT_NOW);
}

/* §3.10: the leader stops accepting new client requests during a transfer,
 * and names the target so that clients wait for it. */
static void test_proposals_refused_during_transfer_with_the_target_as_hint(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    assert_int_equal(start_transfer(n, 2), 0);
    uint64_t index = 0, term = 0;
    int32_t hint = RAFT_NO_NODE;
    assert_int_equal(raft_propose(n, (const uint8_t *)"c", 1, &index, &term, &hint), -EBUSY);
    assert_int_equal(hint, 2);
    assert_int_equal(log_last_index(&n->log), 1); /* only the no-op */
}

/* Voters grant the target although they answered this leader within the
 * minimum election timeout: the lease, which counts on them not to, must
 * end when the transfer begins. */
static void test_no_lease_during_transfer(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    catch_up(n, 1);
    assert_true(holds_lease(n));
    assert_int_equal(start_transfer(n, 1), 0);
    assert_false(holds_lease(n));
}

/* A lost TimeoutNow is sent again at heartbeat pace; in between the target
 * gets heartbeats. */
static void test_lost_timeout_now_is_sent_again_at_heartbeat_pace(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    catch_up(n, 2);
    assert_int_equal(start_transfer(n, 2), 0);
    struct rpc r = rules_prepare(n, 2);
    assert_int_equal(r.req.type, RAFT_MSG_TIMEOUT_NOW);
    struct raft_msg none = {0};
    node_lock(n);
    node_handle_reply_locked(n, &n->peers[2].lanes[0], &r, -ETIMEDOUT, &none, rules_clock_ms);
    bool due = transfer_timeout_now_due_locked(n, &n->peers[2], rules_clock_ms);
    node_unlock(n);
    assert_false(due);
    rules_clock_ms += 49;
    assert_int_equal(rules_prepare(n, 2).req.type, RAFT_MSG_APPEND_ENTRIES);
    rules_clock_ms += 1;
    assert_int_equal(rules_prepare(n, 2).req.type, RAFT_MSG_TIMEOUT_NOW);
    assert_true(in_transfer(n));
}

/* §3.10: "If the transfer does not complete within ... an election
 * timeout, the prior leader aborts the transfer and resumes accepting
 * client requests"; its lease counts only acknowledgements that follow. */
static void test_transfer_abandoned_after_an_election_timeout(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    rules_clock_ms += 10;
    catch_up(n, 1); /* keeps check-quorum content */
    uint64_t began = rules_clock_ms;
    assert_int_equal(start_transfer(n, 2), 0);
    assert_true(n->election_deadline_ms <= began + RULES_MAX_MS);
    rules_clock_ms = began + RULES_MAX_MS - 1;
    rules_tick(n);
    assert_true(in_transfer(n));
    assert_int_equal(n->election_deadline_ms, began + RULES_MAX_MS); /* wakes to abandon */
    rules_tick_at_deadline(n);
    rules_expect_node(n, RAFT_LEADER, 1);
    assert_false(in_transfer(n));
    rules_propose(n, 1);
    assert_false(holds_lease(n)); /* n1's acknowledgement came before */
    catch_up(n, 1);
    assert_true(holds_lease(n));
}

/* §3.10: the target "starts a new election" at once: no pre-vote (thesis
 * §9.6), and its requests carry the flag; it answers in its new term. */
static void test_target_campaigns_at_once_skipping_pre_vote_with_the_flag(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(1, 0, 0, 0, NULL, 0));
    rules_expect_node(n, RAFT_FOLLOWER, 1);
    struct raft_msg rep = rules_receive(n, timeout_now(1, 1));
    assert_int_equal(rep.type, RAFT_MSG_TIMEOUT_NOW_REPLY);
    assert_int_equal(rep.u.tn_reply.term, 2);
    rules_expect_node(n, RAFT_CANDIDATE, 2);
    rules_expect_saved(2, 0);
    struct rpc r = rules_prepare(n, 2);
    assert_int_equal(r.req.type, RAFT_MSG_REQUEST_VOTE);
    assert_int_equal(r.req.u.rv.term, 2);
    assert_false(r.req.u.rv.pre_vote);
    assert_true(r.req.u.rv.transfer);
    /* The election that follows a failed one is its own: no flag. */
    rules_tick_at_deadline(n);
    rules_expect_node(n, RAFT_CANDIDATE, 3);
    assert_false(rules_prepare(n, 2).req.u.rv.transfer);
}

/* Thesis §4.2.3 ignores a vote request while the leader is heard; the
 * transfer flag lifts that rule (§3.10), for followers and for the leader
 * that asked. */
static void test_flagged_request_granted_despite_a_leader_unflagged_ignored(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(1, 0, 0, 0, NULL, 0));
    struct raft_msg plain = rules_vote_request(2, 2, 0, 0, false);
    struct raft_msg rep = rules_receive(n, plain);
    assert_false(rep.u.rv_reply.vote_granted);
    rules_expect_node(n, RAFT_FOLLOWER, 1);
    struct raft_msg flagged = plain;
    flagged.u.rv.transfer = 1;
    rep = rules_receive(n, flagged);
    assert_true(rep.u.rv_reply.vote_granted);
    rules_expect_saved(2, 2);
}

static void test_leader_grants_the_flagged_request_of_its_target(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    catch_up(n, 1);
    assert_int_equal(start_transfer(n, 1), 0);
    struct raft_msg rv = rules_vote_request(1, 2, 1, 1, false);
    rv.u.rv.transfer = 1;
    struct raft_msg rep = rules_receive(n, rv);
    assert_true(rep.u.rv_reply.vote_granted);
    rules_expect_node(n, RAFT_FOLLOWER, 2);
    assert_false(in_transfer(n));
}

/* A TimeoutNow of an older term is not from the current leader: ignored,
 * nothing written. */
static void test_timeout_now_of_a_stale_term_is_ignored(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(3, 0, 0, 0, NULL, 0));
    unsigned saves = rules_store.term_vote_saves;
    struct raft_msg rep = rules_receive(n, timeout_now(2, 2));
    assert_int_equal(rep.u.tn_reply.term, 3);
    rules_expect_node(n, RAFT_FOLLOWER, 3);
    assert_int_equal(n->leader_id, 1);
    assert_int_equal(rules_store.term_vote_saves, saves);
}

/* Refused: this node itself, an id outside the cluster; only a leader
 * transfers. Without a target, the peer with the highest match. */
static void test_refusals_and_the_default_target(void **state)
{
    struct raft_node *n = *state;
    assert_int_equal(start_transfer(n, 1), -EPERM);
    rules_make_leader(n);
    assert_int_equal(start_transfer(n, 0), -EINVAL);
    assert_non_null(strstr(why, "already leads"));
    assert_int_equal(start_transfer(n, 7), -EINVAL);
    assert_non_null(strstr(why, "not a member"));
    assert_false(in_transfer(n));
    catch_up(n, 2);
    assert_int_equal(start_transfer(n, RAFT_NO_NODE), 0);
    assert_int_equal(n->transfer_target, 2);
    assert_int_equal(start_transfer(n, 2), 0); /* the same again: waits for it */
    assert_int_equal(start_transfer(n, 1), -EBUSY);
}

#define NODE_TEST(t, setup) cmocka_unit_test_setup_teardown(t, setup, rules_teardown_node)

int main(void)
{
    const struct CMUnitTest tests[] = {
        NODE_TEST(test_timeout_now_goes_only_to_a_caught_up_target, rules_setup_follower),
        NODE_TEST(test_lagging_target_gets_entries_first, rules_setup_follower),
        NODE_TEST(test_proposals_refused_during_transfer_with_the_target_as_hint,
                  rules_setup_follower),
        NODE_TEST(test_no_lease_during_transfer, rules_setup_follower),
        NODE_TEST(test_lost_timeout_now_is_sent_again_at_heartbeat_pace, rules_setup_follower),
        NODE_TEST(test_transfer_abandoned_after_an_election_timeout, rules_setup_follower),
        NODE_TEST(test_target_campaigns_at_once_skipping_pre_vote_with_the_flag,
                  rules_setup_follower),
        NODE_TEST(test_flagged_request_granted_despite_a_leader_unflagged_ignored,
                  rules_setup_follower),
        NODE_TEST(test_leader_grants_the_flagged_request_of_its_target, rules_setup_follower),
        NODE_TEST(test_timeout_now_of_a_stale_term_is_ignored, rules_setup_follower),
        NODE_TEST(test_refusals_and_the_default_target, rules_setup_follower),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
