/*
 * unit_logs.c - the lines a node logs at info, where people learn from
 * them: a put followed from the request to every apply, the new leader's
 * no-op named, repeats condensed under load, a slow disk write named for
 * what it does to the cluster, and the lines that must not mislead (a
 * step-down with no leader to follow, a pre-vote's two terms, a former
 * leader's silence, a cut-off node asking again and again, a follower
 * that stops answering). One thread-free node
 * (tests/support/rules_node.h) on a clock the tests move by hand.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "raft/node.h"
#include "tests/support/rules_node.h"

/* Everything the node logged since the last clear_log(). */
static char logged[1 << 16];
static size_t logged_len;

static void capture_line(void *ctx, uint32_t node, enum raft_log_level level,
                         const char *line)
{
    (void)ctx, (void)node, (void)level;
    int w = snprintf(logged + logged_len, sizeof(logged) - logged_len, "%s\n", line);
    if (w > 0 && (size_t)w < sizeof(logged) - logged_len)
        logged_len += (size_t)w;
}

static void clear_log(void)
{
    logged[0] = '\0';
    logged_len = 0;
}

/* How many logged lines contain want. */
static unsigned lines_with(const char *want)
{
    unsigned count = 0;
    for (const char *p = strstr(logged, want); p; p = strstr(p + 1, want))
        count++;
    return count;
}

static void expect_logged(const char *want)
{
    if (!strstr(logged, want))
        fprintf(stderr, "no line contains '%s' in:\n%s", want, logged);
    assert_non_null(strstr(logged, want));
}

/* The rules node, logging at info into `logged`, past its quiet start. */
static int setup(void **state)
{
    rules_setup_follower(state);
    struct raft_node *n = *state;
    n->cfg.log_level = RAFT_LOG_INFO;
    n->cfg.log_line = capture_line;
    clear_log();
    return 0;
}

static void tick(struct raft_node *n)
{
    node_lock(n);
    node_tick_locked(n, rules_clock_ms);
    node_unlock(n);
}

static void tick_at_deadline(struct raft_node *n)
{
    rules_clock_ms = n->election_deadline_ms;
    tick(n);
}

static struct rpc prepare(struct raft_node *n, uint32_t peer)
{
    struct rpc r;
    node_lock(n);
    assert_true(node_prepare_request_locked(n, &n->peers[peer].lanes[0], rules_clock_ms, &r));
    node_unlock(n);
    return r;
}

static void answer(struct raft_node *n, struct rpc *sent, struct raft_msg reply)
{
    reply.from = sent->to;
    node_lock(n);
    node_handle_reply_locked(n, &n->peers[sent->to].lanes[0], sent, 0, &reply, rules_clock_ms);
    node_unlock(n);
}

static void grant_vote(struct raft_node *n, uint32_t peer, bool pre)
{
    struct rpc r = prepare(n, peer);
    answer(n, &r, rules_vote_reply(pre ? r.req.u.rv.term - 1 : r.req.u.rv.term, true, pre));
}

/* Node 0 wins T1 with n1's votes and writes its no-op (the syncer's job). */
static void make_leader(struct raft_node *n)
{
    tick_at_deadline(n);
    grant_vote(n, 1, true);
    grant_vote(n, 1, false);
    assert_int_equal(n->role, RAFT_LEADER);
    node_lock(n);
    assert_int_equal(n->storage.append(n->storage.ctx, 1, log_get(&n->log, 1), 1), 0);
    n->durable_index = 1;
    node_unlock(n);
}

static struct raft_msg receive(struct raft_node *n, struct raft_msg req)
{
    struct raft_msg reply;
    assert_int_equal(raft_receive(n, &req, &reply), 0);
    return reply;
}

/* ---- a put, end to end ---- */

static void test_leader_names_its_no_op_and_who_stored_it(void **state)
{
    struct raft_node *n = *state;
    make_leader(n);
    struct rpc r = prepare(n, 1);
    answer(n, &r, rules_append_reply(1, true, 1, 0, 0));
    expect_logged("commit 0 -> 1: this term's no-op (§8), stored on n0 n1 (majority of 3)");
}

static void test_leader_logs_the_request_and_its_index(void **state)
{
    struct raft_node *n = *state;
    make_leader(n);
    node_lock(n);
    assert_int_equal(node_propose_locked(n, (const uint8_t *)"abc", 3), 0);
    node_unlock(n);
    /* No state machine words here (the fake has no describe): bytes. */
    expect_logged("command (3 bytes) -> append at 2@T1");
}

static void test_follower_logs_the_redirect(void **state)
{
    struct raft_node *n = *state;
    receive(n, rules_append_request(1, 0, 0, 0, NULL, 0)); /* n1 leads T1 */
    node_lock(n);
    assert_int_equal(node_propose_locked(n, (const uint8_t *)"abc", 3), -EPERM);
    node_unlock(n);
    expect_logged("command (3 bytes) -> not leader, redirect to n1");
}

/* A follower names each batch it stores; past ten a second, one summary
 * covers the rest, printed once that second is over. */
static void test_stored_batches_are_condensed_under_load(void **state)
{
    struct raft_node *n = *state;
    receive(n, rules_append_request(1, 0, 0, 0, (uint64_t[]){1, 1}, 2));
    expect_logged("stored 1..2 from leader n1\n");
    for (uint64_t i = 3; i <= 40; i++)
        receive(n, rules_append_request(1, i - 1, 1, 0, (uint64_t[]){1}, 1));
    assert_int_equal(lines_with("stored "), 10);
    rules_clock_ms += 1000;
    receive(n, rules_append_request(1, 40, 1, 0, NULL, 0)); /* a heartbeat */
    expect_logged("stored 12..40 from leader n1 (29 batches, condensed");
    assert_int_equal(lines_with("stored "), 11);
}

/* A follower answers no one while it stores entries: a write that lasts
 * half the minimum election timeout (75 ms here) is named with what it
 * means for the cluster; a shorter one is not worth a line. */
static void test_follower_warns_of_a_slow_disk_write(void **state)
{
    struct raft_node *n = *state;
    rules_store.append_ms = RULES_MIN_MS / 2 - 1;
    receive(n, rules_append_request(1, 0, 0, 0, (uint64_t[]){1, 1}, 2));
    assert_int_equal(lines_with("on disk took"), 0);
    rules_store.append_ms = RULES_MIN_MS / 2 + 5;
    receive(n, rules_append_request(1, 2, 1, 0, (uint64_t[]){1}, 1));
    expect_logged("warning: storing 3..3 on disk took 80 ms (the election timeout is "
                  "150-300 ms): this node answered no one meanwhile, so its leader may count "
                  "it as gone\n");
    assert_int_equal(lines_with("on disk took"), 1);
}

/* ---- lines that must not mislead ---- */

static void test_check_quorum_step_down_knows_no_leader(void **state)
{
    struct raft_node *n = *state;
    make_leader(n);
    clear_log();
    rules_clock_ms += 2 * RULES_MAX_MS;
    tick(n);
    assert_int_equal(n->role, RAFT_FOLLOWER);
    expect_logged("(check-quorum) -> step down, no leader known");
    assert_int_equal(lines_with("follow it"), 0);
    /* The next timeout: it heard no leader because it was one. */
    tick_at_deadline(n);
    expect_logged("was leader until ");
    expect_logged("ago, no leader since -> pre-vote for T2 (still at T1)");
}

static void test_pre_vote_reply_shows_both_terms(void **state)
{
    struct raft_node *n = *state;
    receive(n, rules_vote_request(1, 1, 0, 0, true));
    expect_logged("pre-vote from n1, could it win T1 (I am at T0)? -> grant");
}

/* A node cut off from the others asks for pre-votes every election
 * timeout: the first is logged, then one line per few seconds with the
 * count, not one every 150-300 ms. */
static void test_repeated_pre_votes_are_condensed(void **state)
{
    struct raft_node *n = *state;
    uint64_t start = rules_clock_ms;
    unsigned attempts = 0;
    while (rules_clock_ms < start + 10000) {
        tick_at_deadline(n);
        attempts++;
    }
    assert_true(attempts > 30);
    unsigned lines = lines_with("-> pre-vote for T1");
    assert_true(lines >= 2 && lines <= 3);
    expect_logged(" attempt, no leader for ");
    expect_logged("s, none answered)");
}

/* The leader says once that a follower stopped answering, and once that
 * it answers again. */
static void test_leader_notes_a_silent_follower_once(void **state)
{
    struct raft_node *n = *state;
    make_leader(n);
    struct rpc to1 = prepare(n, 1);
    for (int i = 0; i < 3; i++) {
        rules_clock_ms += RULES_MAX_MS / 2;
        answer(n, &to1, rules_append_reply(1, true, 1, 0, 0)); /* n1 answers, n2 not */
        tick_at_deadline(n);
    }
    assert_int_equal(n->role, RAFT_LEADER);
    assert_int_equal(lines_with("n2 stopped answering"), 1);
    assert_int_equal(lines_with("n1 stopped answering"), 0);
    struct rpc to2 = prepare(n, 2);
    answer(n, &to2, rules_append_reply(1, true, 1, 0, 0));
    expect_logged("n2 answers again, after ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_leader_names_its_no_op_and_who_stored_it, setup,
                                        rules_teardown_node),
        cmocka_unit_test_setup_teardown(test_leader_logs_the_request_and_its_index, setup,
                                        rules_teardown_node),
        cmocka_unit_test_setup_teardown(test_follower_logs_the_redirect, setup,
                                        rules_teardown_node),
        cmocka_unit_test_setup_teardown(test_stored_batches_are_condensed_under_load, setup,
                                        rules_teardown_node),
        cmocka_unit_test_setup_teardown(test_follower_warns_of_a_slow_disk_write, setup,
                                        rules_teardown_node),
        cmocka_unit_test_setup_teardown(test_check_quorum_step_down_knows_no_leader, setup,
                                        rules_teardown_node),
        cmocka_unit_test_setup_teardown(test_pre_vote_reply_shows_both_terms, setup,
                                        rules_teardown_node),
        cmocka_unit_test_setup_teardown(test_repeated_pre_votes_are_condensed, setup,
                                        rules_teardown_node),
        cmocka_unit_test_setup_teardown(test_leader_notes_a_silent_follower_once, setup,
                                        rules_teardown_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
