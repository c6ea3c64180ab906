/*
 * unit_rules_membership.c - membership changes (thesis ch. 4) one rule
 * step at a time, on node 0 of a 3-node cluster with no thread and a clock
 * the tests move by hand (tests/support/rules_node.h): a configuration in
 * use once stored and rolled back with its entry, the one a snapshot
 * carries, who counts (voters only), a leader that removes itself, the
 * entry that tells a removed server, and the refusals.
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

static char why[200];

/* ids[i] with voter[i]; removed: a set of ids. */
static struct raft_membership config_of(const uint32_t *ids, const bool *voter, uint32_t n,
                                        uint64_t removed)
{
    struct raft_membership m;
    memset(&m, 0, sizeof(m));
    for (uint32_t i = 0; i < n; i++) {
        m.members[i].id = ids[i];
        m.members[i].voter = voter[i];
    }
    m.n = n;
    m.removed = removed;
    return m;
}

static uint8_t config_bytes[RAFT_MEMBERSHIP_MAX_BYTES];
static struct raft_entry append_buf[2];

/* An AppendEntries from n1: a command of `term` at prev+1 and, when m is
 * given, a configuration entry after it. */
static struct raft_msg append_with_config(uint64_t term, uint64_t prev, uint64_t prev_term,
                                          const struct raft_membership *m)
{
    struct raft_msg msg = {.type = RAFT_MSG_APPEND_ENTRIES, .from = 1};
    append_buf[0] = (struct raft_entry){.term = term, .type = RAFT_ENTRY_COMMAND, .len = 1,
                                        .data = (uint8_t *)"y"};
    uint32_t count = 1;
    if (m) {
        size_t len = raft_membership_encode(m, config_bytes);
        append_buf[1] = (struct raft_entry){.term = term, .type = RAFT_ENTRY_CONFIG,
                                            .len = (uint32_t)len, .data = config_bytes};
        count = 2;
    }
    msg.u.ae = (struct raft_append_entries){.term = term, .prev_log_index = prev,
                                            .prev_log_term = prev_term, .n_entries = count,
                                            .entries = append_buf};
    return msg;
}

/* What raft_add_member / raft_remove_member append, without waiting. */
static void leader_appends_config(struct raft_node *n, const struct raft_membership *m)
{
    uint8_t bytes[RAFT_MEMBERSHIP_MAX_BYTES];
    size_t len = raft_membership_encode(m, bytes);
    node_lock(n);
    assert_int_equal(log_append(&n->log, n->current_term, RAFT_ENTRY_CONFIG, bytes,
                                (uint32_t)len), 0);
    reconfigure_sync_locked(n);
    node_unlock(n);
}

/* Peer `peer` stores everything the leader sends it now. */
static void peer_acks(struct raft_node *n, uint32_t peer)
{
    struct rpc r = rules_prepare(n, peer);
    assert_int_equal(r.req.type, RAFT_MSG_APPEND_ENTRIES);
    uint64_t match = r.req.u.ae.prev_log_index + r.req.u.ae.n_entries;
    rules_answer(n, &r, rules_append_reply(n->current_term, true, match, 0, 0));
}

/* A leader of term 1 whose no-op (entry 1) is committed. */
static void lead_with_noop_committed(struct raft_node *n)
{
    rules_make_leader(n);
    rules_sync_leader_log(n, 1);
    peer_acks(n, 1);
    assert_int_equal(n->commit_index, 1);
}

static void expect_members(const struct raft_node *n, uint32_t count, uint64_t index)
{
    assert_int_equal(n->members.n, count);
    assert_int_equal(n->members_index, index);
}

/* §4.1: a configuration is used once it is in the log, committed or not,
 * and the one before it is used again when its entry is truncated away. */
static void test_stored_configuration_used_at_once_and_rolled_back(void **state)
{
    struct raft_node *n = *state;
    struct raft_membership grown =
        config_of((uint32_t[]){0, 1, 2, 3}, (bool[]){true, true, true, false}, 4, 0);
    rules_receive(n, append_with_config(1, 0, 0, &grown));
    expect_members(n, 4, 2);
    assert_false(raft_membership_find(&n->members, 3)->voter);
    assert_int_equal(n->commit_index, 0); /* in use although not committed */
    assert_int_equal(n->previous.n, 3);

    /* A leader of term 2 never had entry 2: the conflict truncates it. */
    rules_receive(n, append_with_config(2, 1, 1, NULL));
    expect_members(n, 3, 0);
    assert_null(raft_membership_find(&n->members, 3));
}

/* §7: a snapshot carries the configuration as of its last entry. */
static void test_installed_snapshot_brings_its_configuration(void **state)
{
    struct raft_node *n = *state;
    struct raft_membership m =
        config_of((uint32_t[]){0, 1, 4}, (bool[]){true, true, true}, 3, 1ull << 2);
    uint8_t data[MEMBERSHIP_SNAPSHOT_HEADER_MAX + 5];
    size_t len = membership_snapshot_header(&m, data);
    memcpy(data + len, "state", 5);
    len += 5;
    rules_receive(n, rules_install_request(1, 10, 1, 0, (const char *)data, (uint32_t)len, len));
    expect_members(n, 3, 0);
    assert_non_null(raft_membership_find(&n->members, 4));
    assert_true(n->members.removed >> 2 & 1);
    assert_int_equal(n->snapshot->state_offset, len - 5);

    /* Nothing from the removed n2 is taken any more (§4.2.3). */
    struct raft_msg req = rules_vote_request(2, 5, 10, 1, false), rep;
    assert_int_equal(raft_receive(n, &req, &rep), -EINVAL);
    assert_int_equal(n->current_term, 1);
}

/* A snapshot written before snapshots carried a configuration keeps the
 * bootstrap one. */
static void test_snapshot_without_configuration_keeps_the_bootstrap(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_install_request(1, 10, 1, 0, "KVS2....", 8, 8));
    expect_members(n, 3, 0);
    assert_int_equal(n->snapshot->state_offset, 0);
}

/* §4.2.2: a leader removing itself leads without counting itself until
 * the change commits, then steps down; it never campaigns again. */
static void test_leader_removing_itself_steps_down_once_committed(void **state)
{
    struct raft_node *n = *state;
    lead_with_noop_committed(n);
    struct raft_membership without_me =
        config_of((uint32_t[]){1, 2}, (bool[]){true, true}, 2, 1ull << 0);
    leader_appends_config(n, &without_me);
    rules_sync_leader_log(n, 2);
    peer_acks(n, 1);
    assert_int_equal(n->commit_index, 1); /* n0's copy no longer counts: 1 of 2 */
    assert_int_equal(n->role, RAFT_LEADER);
    peer_acks(n, 2);
    assert_int_equal(n->commit_index, 2);
    assert_int_equal(n->role, RAFT_FOLLOWER);

    uint64_t term = n->current_term;
    rules_tick_at_deadline(n);
    rules_tick_at_deadline(n);
    rules_expect_node(n, RAFT_FOLLOWER, term);
}

/* A learner neither campaigns nor counts (§4.2.1). */
static void test_learner_never_campaigns(void **state)
{
    struct raft_node *n = *state;
    struct raft_membership m =
        config_of((uint32_t[]){1, 2, 0}, (bool[]){true, true, false}, 3, 0);
    rules_receive(n, append_with_config(1, 0, 0, &m));
    rules_tick_at_deadline(n);
    rules_tick_at_deadline(n);
    rules_expect_node(n, RAFT_FOLLOWER, 1);
    assert_int_equal(rules_store.term_vote_saves, 1); /* only the term adopted from n1 */
}

/* Election Safety over the voters: learners are not asked, and a grant
 * from one is not counted (§4.1). */
static void test_votes_count_only_among_voters(void **state)
{
    struct raft_node *n = *state;
    struct raft_membership m = config_of((uint32_t[]){0, 1, 2, 3, 4},
                                         (bool[]){true, true, true, false, false}, 5, 0);
    rules_receive(n, append_with_config(1, 0, 0, &m));
    rules_tick_at_deadline(n);
    rules_expect_node(n, RAFT_PRE_CANDIDATE, 1);
    struct rpc r;
    assert_false(rules_try_prepare(n, 3, &r));
    struct rpc to1 = rules_prepare(n, 1);
    for (uint32_t learner = 3; learner <= 4; learner++) {
        struct rpc fake = to1;
        fake.to = learner;
        rules_answer(n, &fake, rules_vote_reply(1, true, true));
    }
    rules_expect_node(n, RAFT_PRE_CANDIDATE, 1);
    rules_answer(n, &to1, rules_vote_reply(1, true, true));
    rules_expect_node(n, RAFT_CANDIDATE, 2);
}

/* §4.2.2: the server a change removes is still sent the entry removing it,
 * so that it learns of it; then it is sent nothing more. */
static void test_removed_follower_is_told_then_left_alone(void **state)
{
    struct raft_node *n = *state;
    lead_with_noop_committed(n);
    peer_acks(n, 2);
    struct raft_membership without_2 =
        config_of((uint32_t[]){0, 1}, (bool[]){true, true}, 2, 1ull << 2);
    leader_appends_config(n, &without_2);
    assert_true(node_serves_peer_locked(n, &n->peers[2]));
    struct rpc r = rules_prepare(n, 2);
    assert_int_equal(r.req.u.ae.n_entries, 1);
    assert_int_equal(r.req.u.ae.entries[0].type, RAFT_ENTRY_CONFIG);
    rules_answer(n, &r, rules_append_reply(1, true, 2, 0, 0));
    assert_false(node_serves_peer_locked(n, &n->peers[2]));
    assert_true(node_serves_peer_locked(n, &n->peers[1]));
}

static int add(struct raft_node *n, uint32_t id, bool voter, unsigned timeout_ms)
{
    int32_t hint;
    why[0] = '\0';
    return raft_add_member(n, id, "", voter, timeout_ms, &hint, why, sizeof(why));
}

static int remove_id(struct raft_node *n, uint32_t id)
{
    int32_t hint;
    why[0] = '\0';
    return raft_remove_member(n, id, 0, &hint, why, sizeof(why));
}

static void expect_why(int rc, int want, const char *words)
{
    assert_int_equal(rc, want);
    if (!strstr(why, words))
        fail_msg("expected \"%s\" in \"%s\"", words, why);
}

/* The refusals, each with its sentence, each changing nothing. */
static void test_refused_changes_say_why(void **state)
{
    struct raft_node *n = *state;
    int32_t hint;
    assert_int_equal(raft_add_member(n, 3, "", true, 0, &hint, why, sizeof(why)), -EPERM);
    rules_make_leader(n);
    /* The 2015 single-server bug: no change before an entry of this term
     * commits. */
    expect_why(add(n, 3, true, 0), -ETIMEDOUT, "not yet committed an entry of its term");
    rules_sync_leader_log(n, 1);
    peer_acks(n, 1);
    expect_why(add(n, 1, true, 0), -EINVAL, "already a voter");
    expect_why(add(n, RAFT_MAX_ID + 1, true, 0), -EINVAL, "ids run from 0");
    expect_why(remove_id(n, 7), -EINVAL, "not a member");
    uint64_t last = log_last_index(&n->log);

    struct raft_membership with_learner =
        config_of((uint32_t[]){0, 1, 2, 3}, (bool[]){true, true, true, false}, 4, 1ull << 5);
    leader_appends_config(n, &with_learner);
    expect_why(add(n, 4, true, 0), -EBUSY, "already under way");
    expect_why(remove_id(n, 2), -EBUSY, "already under way");
    assert_int_equal(log_last_index(&n->log), last + 1); /* only the one appended above */
    rules_sync_leader_log(n, last + 1);
    peer_acks(n, 1);
    assert_int_equal(n->commit_index, last + 1);
    expect_why(add(n, 5, true, 0), -EINVAL, "removed from this cluster before");
    expect_why(add(n, 3, false, 0), -EINVAL, "already a learner");
    expect_why(remove_id(n, 5), -EINVAL, "removed already");
    assert_int_equal(log_last_index(&n->log), last + 1);
}

static void test_last_voter_cannot_be_removed(void **state)
{
    struct raft_node *n = *state;
    lead_with_noop_committed(n);
    struct raft_membership alone = config_of((uint32_t[]){0, 1}, (bool[]){true, false}, 2, 0);
    node_lock(n);
    reconfigure_set_base_locked(n, &alone);
    node_unlock(n);
    expect_why(remove_id(n, 0), -EINVAL, "last voter");
}

#define NODE_TEST(f, setup) cmocka_unit_test_setup_teardown(f, setup, rules_teardown_node)

int main(void)
{
    const struct CMUnitTest tests[] = {
        NODE_TEST(test_stored_configuration_used_at_once_and_rolled_back, rules_setup_follower),
        NODE_TEST(test_installed_snapshot_brings_its_configuration, rules_setup_follower),
        NODE_TEST(test_snapshot_without_configuration_keeps_the_bootstrap,
                  rules_setup_follower),
        NODE_TEST(test_leader_removing_itself_steps_down_once_committed, rules_setup_follower),
        NODE_TEST(test_learner_never_campaigns, rules_setup_follower),
        NODE_TEST(test_votes_count_only_among_voters, rules_setup_follower),
        NODE_TEST(test_removed_follower_is_told_then_left_alone, rules_setup_follower),
        NODE_TEST(test_refused_changes_say_why, rules_setup_follower),
        NODE_TEST(test_last_voter_cannot_be_removed, rules_setup_follower),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
