/*
 * unit_rules.c - the rules of Figure 2 (and Figure 13, and the thesis'
 * additions) one step at a time: the in-memory log, the vote and commit
 * rules, then one node built with node_create and no thread at all, driven
 * through its entry points (node_tick_locked, node_prepare_request_locked,
 * node_handle_reply_locked, raft_receive) on a clock the tests move by hand.
 * No thread runs and nothing races: each test is a sequence of rule steps.
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

/* ---- the in-memory log ---- */

static void append_terms(struct raft_log *l, const uint64_t *terms, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(log_append(l, terms[i], RAFT_ENTRY_COMMAND, (const uint8_t *)"x", 1), 0);
}

static void test_log_append_and_term_lookup(void **state)
{
    (void)state;
    struct raft_log l;
    log_init(&l);
    assert_int_equal(log_last_index(&l), 0);
    assert_int_equal(log_term_at(&l, 0), 0);
    append_terms(&l, (uint64_t[]){1, 1, 2, 3, 3}, 5);
    assert_int_equal(log_last_index(&l), 5);
    assert_int_equal(log_last_term(&l), 3);
    assert_int_equal(log_term_at(&l, 3), 2);
    assert_int_equal(log_term_at(&l, 6), 0); /* beyond the end */
    assert_int_equal(log_first_index_of_term(&l, 5), 4);
    assert_int_equal(log_first_index_of_term(&l, 2), 1);
    assert_int_equal(log_last_index_of_term(&l, 1), 2);
    assert_int_equal(log_last_index_of_term(&l, 4), 0);
    log_free(&l);
}

static void test_log_truncation_removes_the_suffix_only(void **state)
{
    (void)state;
    struct raft_log l;
    log_init(&l);
    append_terms(&l, (uint64_t[]){1, 1, 2, 2}, 4);
    log_truncate(&l, 3);
    assert_int_equal(log_last_index(&l), 2);
    assert_int_equal(log_last_term(&l), 1);
    log_truncate(&l, 9); /* nothing there: no change */
    assert_int_equal(log_last_index(&l), 2);
    log_free(&l);
}

static void test_log_compaction_keeps_indices(void **state)
{
    (void)state;
    struct raft_log l;
    log_init(&l);
    append_terms(&l, (uint64_t[]){1, 1, 2, 2, 3}, 5);
    log_compact(&l, 3, 2);
    assert_int_equal(l.base_index, 3);
    assert_int_equal(log_last_index(&l), 5);
    assert_null(log_get(&l, 3));
    assert_int_equal(log_term_at(&l, 3), 2); /* the base term is still known */
    assert_int_equal(log_term_at(&l, 4), 2);
    assert_int_equal(log_first_index_of_term(&l, 4), 4); /* not below the base */
    log_compact(&l, 9, 4); /* a snapshot past the end empties the log */
    assert_int_equal(log_last_index(&l), 9);
    assert_int_equal(log_last_term(&l), 4);
    log_free(&l);
}

/* §5.4.1: compare the last terms, then the lengths. */
static void test_vote_rule_compares_last_term_then_length(void **state)
{
    (void)state;
    /* mine: last term 3 at index 5 */
    assert_true(election_log_up_to_date(3, 5, 3, 5));  /* equal */
    assert_true(election_log_up_to_date(3, 5, 3, 6));  /* same term, longer */
    assert_false(election_log_up_to_date(3, 5, 3, 4)); /* same term, shorter */
    assert_true(election_log_up_to_date(3, 5, 4, 1));  /* later term beats length */
    assert_false(election_log_up_to_date(3, 5, 2, 99)); /* not length only */
}

/* Figure 2, leaders: N is stored on a majority of matchIndex[i]. */
static void test_quorum_index_is_the_majority_match(void **state)
{
    (void)state;
    assert_int_equal(commit_quorum_index((uint64_t[]){5, 3, 9}, 3), 5);
    assert_int_equal(commit_quorum_index((uint64_t[]){1, 7, 7, 2, 9}, 5), 7);
    assert_int_equal(commit_quorum_index((uint64_t[]){4}, 1), 4);
    assert_int_equal(commit_quorum_index((uint64_t[]){0, 0, 8, 8}, 4), 0); /* 2 of 4: none */
}

static void test_figure8_no_commit_by_counting_older_term_replicas(void **state)
{
    (void)state;
    /* Figure 8 (c): S1 leads in term 4; entry 2 of term 2 is on a majority.
     * Counting replicas must not commit it... */
    assert_int_equal(commit_next_index(1, 2, 2, 4), 1);
    /* ...(e): once an entry of term 4 is on a majority, both commit. */
    assert_int_equal(commit_next_index(1, 3, 4, 4), 3);
    assert_int_equal(commit_next_index(5, 3, 4, 4), 5); /* commitIndex never goes back */
}

/* ---- driving one node, with no thread (tests/support/rules_node.h) ---- */
#define HEARTBEAT(term, prev, prev_term) rules_append_request(term, prev, prev_term, 0, NULL, 0)

/* ---- the election timer (§5.2, thesis §9.6) ---- */

/* Thesis §9.6: a follower whose timer expires first asks for pre-votes for
 * the term it would campaign in, without raising or persisting its own. */
static void test_follower_past_its_deadline_becomes_pre_candidate_keeping_its_term(void **state)
{
    struct raft_node *n = *state;
    uint64_t deadline = n->election_deadline_ms;
    assert_in_range(deadline, RULES_START_MS + RULES_MIN_MS, RULES_START_MS + RULES_MAX_MS);
    rules_clock_ms = deadline - 1;
    rules_tick(n);
    rules_expect_node(n, RAFT_FOLLOWER, 0); /* not yet */
    rules_tick_at_deadline(n);
    rules_expect_node(n, RAFT_PRE_CANDIDATE, 0);
    assert_int_equal(n->voted_for, RAFT_NO_NODE);
    assert_int_equal(rules_store.term_vote_saves, 0);
    assert_true(n->election_deadline_ms >= rules_clock_ms + RULES_MIN_MS); /* timer reset */
    struct rpc r = rules_prepare(n, 2);
    assert_int_equal(r.req.type, RAFT_MSG_REQUEST_VOTE);
    assert_true(r.req.u.rv.pre_vote);
    assert_int_equal(r.req.u.rv.term, 1);
    assert_false(rules_try_prepare(n, 2, &r)); /* one request per peer and election */
}

/* Thesis §9.6, then Figure 2, candidates: a pre-vote won (itself and one of
 * two peers) starts the real election: currentTerm+1 and the vote for
 * itself, persisted before any RequestVote goes out. */
static void test_granted_pre_vote_from_one_peer_of_three_makes_a_candidate(void **state)
{
    struct raft_node *n = *state;
    rules_tick_at_deadline(n);
    struct rpc denied = rules_prepare(n, 2);
    rules_answer(n, &denied, rules_vote_reply(0, false, true));
    rules_expect_node(n, RAFT_PRE_CANDIDATE, 0); /* only its own vote */
    rules_grant_vote(n, 1, true);
    rules_expect_node(n, RAFT_CANDIDATE, 1);
    assert_int_equal(n->voted_for, 0);
    rules_expect_saved(1, 0);
    assert_int_equal(rules_store.term_vote_saves, 1);
    assert_int_equal(n->votes, 1u << 0); /* a fresh count for the real election */
    struct rpc r = rules_prepare(n, 2);
    assert_false(r.req.u.rv.pre_vote);
    assert_int_equal(r.req.u.rv.term, 1);
}

/* Figure 2, candidates: "If election timeout elapses: start new election". */
static void test_candidate_whose_election_times_out_starts_the_next_term(void **state)
{
    struct raft_node *n = *state;
    rules_tick_at_deadline(n);
    rules_grant_vote(n, 1, true);
    rules_tick_at_deadline(n);
    rules_expect_node(n, RAFT_CANDIDATE, 2); /* no pre-vote again: straight to T2 */
    rules_expect_saved(2, 0);
    assert_int_equal(rules_store.term_vote_saves, 2);
    assert_true(n->election_deadline_ms > rules_clock_ms);
    struct rpc r = rules_prepare(n, 1);
    assert_false(r.req.u.rv.pre_vote);
    assert_int_equal(r.req.u.rv.term, 2);
}

/* ---- RequestVote receiver (Figure 2, §5.4.1, thesis §9.6 and §4.2.3) ---- */

/* Rule 2, and Figure 2: votedFor is on stable storage before the answer. */
static void test_vote_granted_once_per_term_and_persisted_first(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep = rules_receive(n, rules_vote_request(1, 5, 0, 0, false));
    assert_true(rep.u.rv_reply.vote_granted);
    assert_int_equal(rep.u.rv_reply.term, 5);
    rules_expect_saved(5, 1);
    assert_true(n->election_deadline_ms >= rules_clock_ms + RULES_MIN_MS); /* timer reset */
    /* Already voted for n1 in T5; the same candidate may ask again. */
    assert_false(rules_receive(n, rules_vote_request(2, 5, 0, 0, false)).u.rv_reply.vote_granted);
    rules_expect_saved(5, 1);
    assert_true(rules_receive(n, rules_vote_request(1, 5, 0, 0, false)).u.rv_reply.vote_granted);
}

/* Thesis §6.4.1: a node that just started may have answered a leader's
 * heartbeat before it went down, without remembering it, and that leader
 * may serve reads on a lease that counts on it. So for the minimum election
 * timeout after its start it helps elect nobody. */
static void test_node_votes_for_nobody_right_after_start(void **state)
{
    struct raft_node *n = *state;
    rules_clock_ms += RULES_MIN_MS - 1;
    assert_false(rules_receive(n, rules_vote_request(1, 5, 0, 0, true)).u.rv_reply.vote_granted);
    assert_false(rules_receive(n, rules_vote_request(1, 5, 0, 0, false)).u.rv_reply.vote_granted);
    rules_expect_node(n, RAFT_FOLLOWER, 0);
    assert_int_equal(rules_store.term_vote_saves, 0); /* nothing stored: no term, no vote */
    rules_clock_ms += 1;
    assert_true(rules_receive(n, rules_vote_request(1, 5, 0, 0, false)).u.rv_reply.vote_granted);
    rules_expect_saved(5, 1);
}

static void test_vote_denied_to_an_older_term_or_staler_log(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(3, 0, 0, 0, (uint64_t[]){3, 3}, 2));
    struct raft_msg rep = rules_receive(n, rules_vote_request(2, 2, 9, 2, false)); /* older term */
    assert_false(rep.u.rv_reply.vote_granted);
    assert_int_equal(rep.u.rv_reply.term, 3);
    rules_clock_ms += RULES_MIN_MS; /* the leader fell silent (thesis §4.2.3) */
    rep = rules_receive(n, rules_vote_request(2, 4, 9, 2, false)); /* rule 2: longer, older last term */
    assert_false(rep.u.rv_reply.vote_granted);
    assert_int_equal(rep.u.rv_reply.term, 4); /* but it adopted the newer term */
    rules_expect_saved(4, RAFT_NO_NODE);
}

/* Thesis §9.6: no pre-vote while a leader was heard from within the
 * minimum election timeout; once it falls silent, granted, changing nothing. */
static void test_pre_vote_denied_while_a_leader_is_heard_and_granted_after(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, HEARTBEAT(1, 0, 0));
    unsigned saves = rules_store.term_vote_saves;
    rules_clock_ms += RULES_MIN_MS - 1;
    assert_false(rules_receive(n, rules_vote_request(2, 2, 0, 0, true)).u.rv_reply.vote_granted);
    rules_clock_ms += 1;
    struct raft_msg rep = rules_receive(n, rules_vote_request(2, 2, 0, 0, true));
    assert_true(rep.u.rv_reply.vote_granted);
    assert_true(rep.u.rv_reply.pre_vote);
    assert_int_equal(rep.u.rv_reply.term, 1);
    rules_expect_node(n, RAFT_FOLLOWER, 1); /* a pre-vote changes no state */
    assert_int_equal(n->voted_for, RAFT_NO_NODE);
    assert_int_equal(rules_store.term_vote_saves, saves);
}

/* A grant from an earlier pre-vote round of the same term does not count
 * for the next one: in between, the node heard from a leader, which that
 * grant knew nothing of (thesis §9.6). */
static void test_late_pre_vote_grant_of_an_earlier_round_is_not_counted(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, HEARTBEAT(1, 0, 0));
    rules_tick_at_deadline(n); /* round 1, in T1 */
    rules_expect_node(n, RAFT_PRE_CANDIDATE, 1);
    struct rpc first = rules_prepare(n, 1);
    rules_receive(n, HEARTBEAT(1, 0, 0)); /* the leader of T1 after all */
    rules_expect_node(n, RAFT_FOLLOWER, 1);
    rules_tick_at_deadline(n);            /* it falls silent: round 2, same term */
    rules_expect_node(n, RAFT_PRE_CANDIDATE, 1);
    rules_answer(n, &first, rules_vote_reply(1, true, true));
    rules_expect_node(n, RAFT_PRE_CANDIDATE, 1); /* one grant of round 2 would win */
}

/* A message of an older term changes nothing stored: it is answered even
 * while the leader's syncer writes (raft_receive does not wait for it). */
static void test_stale_append_is_answered_while_the_syncer_writes(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, HEARTBEAT(3, 0, 0));
    node_lock(n);
    n->syncing = true; /* no syncer thread runs here: it would never end */
    node_unlock(n);
    struct raft_msg rep = rules_receive(n, HEARTBEAT(2, 0, 0));
    assert_false(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.term, 3);
    node_lock(n);
    n->syncing = false;
    node_unlock(n);
}

/* Thesis §4.2.3 (with check-quorum): a node that hears from a leader
 * ignores RequestVote of a newer term; it does not even adopt the term. */
static void test_request_vote_of_newer_term_ignored_while_hearing_from_a_leader(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, HEARTBEAT(1, 0, 0));
    unsigned saves = rules_store.term_vote_saves;
    rules_clock_ms += 10;
    struct raft_msg rep = rules_receive(n, rules_vote_request(2, 5, 0, 0, false));
    assert_false(rep.u.rv_reply.vote_granted);
    assert_int_equal(rep.u.rv_reply.term, 1); /* neither in the reply nor here */
    rules_expect_node(n, RAFT_FOLLOWER, 1);
    assert_int_equal(n->leader_id, 1);
    assert_int_equal(rules_store.term_vote_saves, saves);
}

/* ---- AppendEntries receiver (Figure 2) ---- */

/* Rule 2 applies to heartbeats too: an empty AppendEntries is a check. */
static void test_heartbeat_is_a_consistency_check(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep = rules_receive(n, rules_append_request(1, 3, 1, 3, NULL, 0));
    assert_false(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.conflict_term, 0);
    assert_int_equal(rep.u.ae_reply.conflict_index, 1);
    assert_int_equal(n->commit_index, 0); /* and it must not move the commit index */
    assert_int_equal(n->leader_id, 1);
}

/* Rule 3 deletes only a conflicting entry and what follows it: a delayed,
 * shorter copy of an earlier AppendEntries takes nothing back. */
static void test_matching_entries_are_never_truncated(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(1, 0, 0, 0, (uint64_t[]){1, 1, 1}, 3));
    struct raft_msg rep = rules_receive(n, rules_append_request(1, 0, 0, 0, (uint64_t[]){1}, 1));
    assert_true(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.match_index, 1);
    assert_int_equal(log_last_index(&n->log), 3);
    assert_int_equal(rules_store.stored_last, 3);
    assert_int_equal(rules_store.truncates, 0);
    assert_int_equal(rules_store.appends, 1);
}

/* Rules 2-4, and §5.3's fast backup hint. */
static void test_conflict_truncates_and_reports_the_term(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(2, 0, 0, 0, (uint64_t[]){1, 2, 2, 2}, 4));
    /* A leader of T3 whose entry 3 is of T3: the follower names its
     * conflicting term 2 and that term's first index 2. */
    struct raft_msg rep = rules_receive(n, HEARTBEAT(3, 3, 3));
    assert_false(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.conflict_term, 2);
    assert_int_equal(rep.u.ae_reply.conflict_index, 2);
    struct raft_msg ok = rules_receive(n, rules_append_request(3, 1, 1, 0, (uint64_t[]){3}, 1));
    assert_true(ok.u.ae_reply.success);
    assert_int_equal(log_last_index(&n->log), 2);
    assert_int_equal(log_term_at(&n->log, 2), 3);
    assert_int_equal(rules_store.truncates, 1);
    assert_int_equal(rules_store.stored_last, 2);
    assert_int_equal(rules_store.misplaced_appends, 0);
}

/* Rule 5: commitIndex = min(leaderCommit, index of last new entry), not
 * the end of the follower's (possibly stale) log. */
static void test_follower_commit_is_capped_by_the_last_new_entry(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(1, 0, 0, 0, (uint64_t[]){1, 1, 1, 1, 1}, 5));
    rules_receive(n, rules_append_request(1, 1, 1, 9, (uint64_t[]){1}, 1));
    assert_int_equal(n->commit_index, 2);
}

/* Rule 1: reply false if term < currentTerm. */
static void test_stale_term_append_is_refused(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_vote_request(2, 4, 0, 0, false));
    struct raft_msg rep = rules_receive(n, rules_append_request(3, 0, 0, 0, (uint64_t[]){3}, 1));
    assert_false(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.term, 4);
    assert_int_equal(log_last_index(&n->log), 0);
    assert_int_equal(n->leader_id, RAFT_NO_NODE);
    assert_int_equal(rules_store.appends, 0);
}

/* A server follows a leader outside its configuration (thesis §4.1: n7
 * may be adding it), but votes for no candidate outside it, and takes
 * nothing from itself, an id beyond the range, or an id that was removed
 * (§4.2.3). */
static void test_senders_refused_only_when_impossible_or_removed(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    struct raft_msg beyond = rules_vote_request(RAFT_MAX_ID + 1, 1, 0, 0, false);
    struct raft_msg from_itself = rules_vote_request(0, 1, 0, 0, false);
    struct raft_msg from_removed = rules_vote_request(5, 1, 0, 0, false);
    n->members.removed |= 1ull << 5;
    assert_int_equal(raft_receive(n, &beyond, &rep), -EINVAL);
    assert_int_equal(raft_receive(n, &from_itself, &rep), -EINVAL);
    assert_int_equal(raft_receive(n, &from_removed, &rep), -EINVAL);
    assert_int_equal(rules_store.term_vote_saves, 0);
    struct raft_msg vote_from7 = rules_vote_request(7, 9, 0, 0, false);
    assert_int_equal(raft_receive(n, &vote_from7, &rep), -EINVAL);
    assert_int_equal(n->current_term, 0);
    struct raft_msg append_from7 = rules_append_request(1, 0, 0, 0, (uint64_t[]){1}, 1);
    append_from7.from = 7;
    assert_int_equal(raft_receive(n, &append_from7, &rep), 0);
    assert_true(rep.u.ae_reply.success);
    assert_int_equal(n->leader_id, 7);
}

/* ---- a deposed leader settles its log (thesis §10.2.1) ---- */

/* The followers committed entries 1..2 before the leader's own disk write
 * covered them; then it was deposed. As a follower it writes the committed
 * ones and drops only the rest: its log never ends below its commit index. */
static void test_deposed_leader_keeps_committed_unwritten_entries(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n); /* T1, its no-op at 1 */
    rules_propose(n, 1);
    struct rpc to1 = rules_prepare(n, 1), to2 = rules_prepare(n, 2); /* entries 1..2 */
    rules_propose(n, 1);
    rules_answer(n, &to1, rules_append_reply(1, true, 2, 0, 0));
    rules_answer(n, &to2, rules_append_reply(1, true, 2, 0, 0));
    assert_int_equal(n->commit_index, 2);
    assert_int_equal(n->durable_index, 0); /* its syncer never ran */
    assert_true(rules_receive(n, HEARTBEAT(2, 0, 0)).u.ae_reply.success);
    rules_expect_node(n, RAFT_FOLLOWER, 2);
    assert_int_equal(log_last_index(&n->log), 2); /* entry 3 was never acknowledged */
    assert_int_equal(n->commit_index, 2);
    assert_int_equal(rules_store.stored_last, 2); /* written before answering */
    assert_int_equal(rules_store.misplaced_appends, 0);
}

/* Deposed with entries 1..2 on disk, 3 not yet, and only 1 committed: what
 * is on disk stays in the log, so the next append goes where storage ends. */
static void test_deposed_leader_keeps_what_its_disk_holds(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    rules_sync_leader_log(n, 1);
    struct rpc to1 = rules_prepare(n, 1);
    rules_answer(n, &to1, rules_append_reply(1, true, 1, 0, 0));
    assert_int_equal(n->commit_index, 1);
    rules_propose(n, 2);
    rules_sync_leader_log(n, 2);
    rules_receive(n, HEARTBEAT(2, 0, 0));
    assert_int_equal(log_last_index(&n->log), 2);
    struct raft_msg ok = rules_receive(n, rules_append_request(2, 1, 1, 0, (uint64_t[]){2}, 1));
    assert_true(ok.u.ae_reply.success);
    assert_int_equal(log_term_at(&n->log, 2), 2);
    assert_int_equal(rules_store.stored_last, 2);
    assert_int_equal(rules_store.truncates, 1); /* its entry 2@T1 gave way to 2@T2 */
    assert_int_equal(rules_store.misplaced_appends, 0);
}

/* A leader deposed by the very AppendEntries it receives settles its log
 * before the consistency check: its unwritten entry 2 is not "matched". */
static void test_leader_deposed_by_append_settles_first(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    rules_sync_leader_log(n, 1);
    rules_propose(n, 1); /* entry 2@T1, not written */
    struct raft_msg rep = rules_receive(n, rules_append_request(2, 2, 1, 0, (uint64_t[]){2}, 1));
    assert_false(rep.u.ae_reply.success); /* entry 2 was never stored */
    assert_int_equal(rep.u.ae_reply.conflict_index, 2);
    rules_expect_node(n, RAFT_FOLLOWER, 2);
    assert_int_equal(rules_store.term, 2);
    assert_int_equal(log_last_index(&n->log), 1);
    assert_int_equal(rules_store.stored_last, 1);
    assert_int_equal(rules_store.misplaced_appends, 0);
}

/* ---- replies: one of an older term is dropped, a newer term deposes ---- */

/* A candidate of T1 asks both peers; before they answer, its election
 * times out and it starts T2. Their grants are for T1 and must not make it
 * leader of T2. */
static void test_vote_reply_from_an_older_term_is_not_counted(void **state)
{
    struct raft_node *n = *state;
    rules_tick_at_deadline(n);
    rules_grant_vote(n, 1, true);
    struct rpc to1 = rules_prepare(n, 1), to2 = rules_prepare(n, 2);
    rules_tick_at_deadline(n);
    rules_answer(n, &to1, rules_vote_reply(1, true, false));
    rules_answer(n, &to2, rules_vote_reply(1, true, false));
    rules_expect_node(n, RAFT_CANDIDATE, 2);
    assert_int_equal(n->votes, 1u << 0);
    rules_grant_vote(n, 2, false); /* a grant for T2 does count */
    rules_expect_node(n, RAFT_LEADER, 2);
}

/* A leader of T1 sends its no-op; before the answers come back it has been
 * deposed and elected again, for T3. Success for the T1 requests says
 * nothing about its T3 log: matchIndex must not move. */
static void test_append_reply_from_an_older_term_is_ignored(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    rules_sync_leader_log(n, 1);
    struct rpc to1 = rules_prepare(n, 1), to2 = rules_prepare(n, 2);
    assert_int_equal(to1.req.u.ae.n_entries, 1);
    rules_receive(n, HEARTBEAT(2, 1, 1));
    rules_make_leader(n);
    assert_int_equal(n->current_term, 3);
    rules_answer(n, &to1, rules_append_reply(1, true, 1, 0, 0));
    rules_answer(n, &to2, rules_append_reply(1, true, 1, 0, 0));
    assert_int_equal(n->peers[1].match_index, 0);
    assert_int_equal(n->peers[2].match_index, 0);
    assert_int_equal(n->commit_index, 0);
}

/* Figure 2, all servers: a reply carrying term T > currentTerm makes a
 * candidate or a leader a follower of T, persisted. */
static void test_reply_with_newer_term_makes_candidate_and_leader_step_down(void **state)
{
    struct raft_node *n = *state;
    rules_tick_at_deadline(n);
    rules_grant_vote(n, 1, true);
    struct rpc r = rules_prepare(n, 2);
    rules_answer(n, &r, rules_vote_reply(4, false, false));
    rules_expect_node(n, RAFT_FOLLOWER, 4);
    rules_expect_saved(4, RAFT_NO_NODE);
    rules_make_leader(n);
    r = rules_prepare(n, 2);
    rules_answer(n, &r, rules_append_reply(7, false, 0, 0, 0));
    rules_expect_node(n, RAFT_FOLLOWER, 7);
    assert_int_equal(n->leader_id, RAFT_NO_NODE);
    rules_expect_saved(7, RAFT_NO_NODE);
}

/* ---- the leader (Figure 2, leaders; Figure 8; §5.3) ---- */

/* matchIndex = prevLogIndex + the entries that request carried, whatever
 * the log holds by then or the reply claims; commitIndex moves only to an
 * entry of the current term (Figure 8), and older ones commit with it. */
static void test_append_success_sets_match_from_what_was_sent_and_commits_by_figure8(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(1, 0, 0, 0, (uint64_t[]){1, 1}, 2));
    rules_make_leader(n); /* T2, its no-op at 3 */
    rules_sync_leader_log(n, 3);
    n->cfg.max_batch_bytes = 17; /* one entry per AppendEntries */
    struct rpc r = rules_prepare(n, 1);
    rules_answer(n, &r, rules_append_reply(2, false, 0, 0, 2)); /* n1 holds entry 1 only */
    assert_int_equal(n->peers[1].next_index, 2);
    r = rules_prepare(n, 1);
    assert_int_equal(r.req.u.ae.prev_log_index, 1);
    assert_int_equal(r.req.u.ae.n_entries, 1);
    rules_propose(n, 1); /* entry 4: the log grows while the request is out */
    rules_answer(n, &r, rules_append_reply(2, true, 99, 0, 0));
    assert_int_equal(n->peers[1].match_index, 2);
    assert_int_equal(n->peers[1].next_index, 3);
    assert_int_equal(n->commit_index, 0); /* entry 2 (T1) is on a majority, not committed */
    r = rules_prepare(n, 1); /* entry 3, the no-op of T2 */
    rules_answer(n, &r, rules_append_reply(2, true, 3, 0, 0));
    assert_int_equal(n->peers[1].match_index, 3);
    assert_int_equal(n->commit_index, 3);
}

/* A follower that lost its disk (restarted empty) refuses what matchIndex
 * says it holds; nextIndex then follows what it acknowledges, batch after
 * batch, rather than jump back past matchIndex to where it is refused. */
static void test_next_index_follows_a_follower_behind_its_stale_match_index(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(1, 0, 0, 0, (uint64_t[]){1, 1, 1, 1}, 4));
    rules_make_leader(n); /* T2, its no-op at 5 */
    rules_sync_leader_log(n, 5);
    struct rpc r = rules_prepare(n, 1);
    rules_answer(n, &r, rules_append_reply(2, true, 5, 0, 0));
    assert_int_equal(n->peers[1].match_index, 5);
    n->cfg.max_batch_bytes = 17; /* one entry per AppendEntries */
    r = rules_prepare(n, 1);
    rules_answer(n, &r, rules_append_reply(2, false, 0, 0, 1)); /* its log is empty now */
    assert_int_equal(n->peers[1].next_index, 1);
    for (uint64_t i = 1; i <= 5; i++) {
        r = rules_prepare(n, 1);
        assert_int_equal(r.req.u.ae.prev_log_index, i - 1);
        assert_int_equal(r.req.u.ae.n_entries, 1);
        rules_answer(n, &r, rules_append_reply(2, true, i, 0, 0));
        assert_int_equal(n->peers[1].next_index, i + 1);
    }
    assert_int_equal(n->peers[1].match_index, 5);
}

/* §5.3 fast backup: the follower names its conflicting term and that term's
 * first index; the leader skips to after its own last entry of that term,
 * or to the follower's index if it has none. */
static void test_failure_reply_moves_next_index_by_fast_backup(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(3, 0, 0, 0, (uint64_t[]){1, 1, 1, 3, 3}, 5));
    rules_make_leader(n); /* T4: log 1 1 1 3 3 4 */
    struct rpc r = rules_prepare(n, 1);
    assert_int_equal(r.req.u.ae.prev_log_index, 5);
    rules_answer(n, &r, rules_append_reply(4, false, 0, 2, 2)); /* n1's T2 starts at 2; no T2 here */
    assert_int_equal(n->peers[1].next_index, 2);
    r = rules_prepare(n, 1);
    rules_answer(n, &r, rules_append_reply(4, false, 0, 0, 1)); /* n1's log is empty */
    assert_int_equal(n->peers[1].next_index, 1);
    assert_int_equal(n->peers[1].match_index, 0);
    assert_false(n->peers[1].replicating);
    r = rules_prepare(n, 2);
    rules_answer(n, &r, rules_append_reply(4, false, 0, 1, 1)); /* n2 has T1 at 5; here T1 ends at 3 */
    assert_int_equal(n->peers[2].next_index, 4);
}

/* Thesis §6.2: a leader that has not heard from a majority within
 * election_timeout_max steps down at its tick, in the same term. */
static void test_check_quorum_leader_hearing_from_no_peer_steps_down(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    uint64_t elected = rules_clock_ms;
    unsigned saves = rules_store.term_vote_saves;
    rules_tick_at_deadline(n); /* acks count from its election: still within the window */
    assert_int_equal(rules_clock_ms, elected + RULES_MAX_MS);
    rules_expect_node(n, RAFT_LEADER, 1);
    rules_tick_at_deadline(n);
    rules_expect_node(n, RAFT_FOLLOWER, 1);
    assert_int_equal(n->leader_id, RAFT_NO_NODE);
    assert_int_equal(rules_store.term_vote_saves, saves);
}

static void test_check_quorum_leader_hearing_from_one_of_two_peers_stays(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    rules_tick_at_deadline(n);
    rules_clock_ms += 10;
    struct rpc r = rules_prepare(n, 1);
    rules_answer(n, &r, rules_append_reply(1, true, 1, 0, 0));
    rules_tick_at_deadline(n); /* n1 answered MAX-10 ms ago, n2 never */
    rules_expect_node(n, RAFT_LEADER, 1);
    assert_int_equal(n->election_deadline_ms, rules_clock_ms + RULES_MAX_MS);
}

/* Thesis §6.4.1: the lease lasts 0.9 x the minimum election timeout from
 * the send time of the latest requests a majority answered. */
static void test_lease_lasts_until_sent_plus_min_less_a_tenth(void **state)
{
    struct raft_node *n = *state;
    rules_make_leader(n);
    node_lock(n);
    assert_false(clients_holds_lease_locked(n, rules_clock_ms)); /* no majority answered yet */
    node_unlock(n);
    uint64_t sent = rules_clock_ms += 5;
    struct rpc r = rules_prepare(n, 1);
    rules_clock_ms += 20;
    rules_answer(n, &r, rules_append_reply(1, true, 1, 0, 0));
    uint64_t end = sent + RULES_MIN_MS - RULES_MIN_MS / 10;
    node_lock(n);
    assert_true(clients_holds_lease_locked(n, end - 1));
    assert_false(clients_holds_lease_locked(n, end));
    n->cfg.lease_reads = false;
    assert_false(clients_holds_lease_locked(n, rules_clock_ms));
    node_unlock(n);
}

/* ---- InstallSnapshot receiver (Figure 13) ---- */

/* Rules 2-5: chunks are gathered in order; a chunk at another offset gets
 * the expected offset back; the last one (done) installs the snapshot. */
static void test_install_snapshot_gathers_chunks_in_order_and_installs(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep = rules_receive(n, rules_install_request(1, 5, 1, 0, "abc", 3, 6));
    assert_int_equal(rep.u.is_reply.next_offset, 3);
    assert_int_equal(rep.u.is_reply.term, 1);
    rep = rules_receive(n, rules_install_request(1, 5, 1, 4, "ef", 2, 6)); /* out of place */
    assert_int_equal(rep.u.is_reply.next_offset, 3);
    assert_int_equal(rules_store.snapshot_saves, 0);
    rep = rules_receive(n, rules_install_request(1, 5, 1, 3, "def", 3, 6));
    assert_int_equal(rep.u.is_reply.next_offset, 6);
    assert_int_equal(rules_store.snapshot_saves, 1);
    assert_int_equal(rules_store.snapshot_index, 5);
    assert_int_equal(rules_store.snapshot_term, 1);
    assert_int_equal(rules_store.snapshot_len, 6);
    assert_memory_equal(rules_store.snapshot, "abcdef", 6);
    assert_int_equal(n->log.base_index, 5);
    assert_int_equal(log_last_term(&n->log), 1);
    assert_int_equal(n->commit_index, 5);
    assert_non_null(n->to_restore); /* for the applier to load */
    assert_int_equal(n->to_restore->index, 5);
}

/* Rule 6: if the log has an entry matching the snapshot's last one, the
 * entries after it are kept. */
static void test_install_snapshot_keeps_a_matching_suffix(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(1, 0, 0, 0, (uint64_t[]){1, 1, 1, 1}, 4));
    struct raft_msg rep = rules_receive(n, rules_install_request(1, 2, 1, 0, "s", 1, 1));
    assert_int_equal(rep.u.is_reply.next_offset, 1);
    assert_int_equal(rules_store.snapshot_index, 2);
    assert_int_equal(rules_store.truncates, 0);
    assert_int_equal(n->log.base_index, 2);
    assert_int_equal(log_last_index(&n->log), 4);
    assert_non_null(log_get(&n->log, 3));
    assert_int_equal(n->commit_index, 2);
}

/* Rule 7: otherwise the whole log is discarded. */
static void test_install_snapshot_discards_a_conflicting_log(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(1, 0, 0, 0, (uint64_t[]){1, 1, 1}, 3));
    assert_int_equal(rules_receive(n, rules_install_request(2, 2, 2, 0, "t", 1, 1)).u.is_reply.term, 2);
    assert_int_equal(rules_store.truncates, 1);
    assert_int_equal(rules_store.snapshot_index, 2);
    assert_int_equal(rules_store.snapshot_term, 2);
    assert_int_equal(rules_store.stored_last, 2);
    assert_int_equal(n->log.base_index, 2);
    assert_int_equal(log_last_index(&n->log), 2);
    assert_int_equal(log_last_term(&n->log), 2);
    assert_int_equal(n->commit_index, 2);
}

/* A log that ends before the snapshot needs no truncation: the snapshot
 * replaces it whole when saved. */
static void test_install_snapshot_past_the_log_truncates_nothing(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(1, 0, 0, 0, (uint64_t[]){1, 1}, 2));
    rules_receive(n, rules_install_request(2, 5, 2, 0, "u", 1, 1));
    assert_int_equal(rules_store.truncates, 0);
    assert_int_equal(rules_store.snapshot_index, 5);
    assert_int_equal(n->log.base_index, 5);
    assert_int_equal(log_last_index(&n->log), 5);
    assert_false(n->disk_failed);
}

/* The node's own snapshotter may have stored a snapshot of committed
 * entries that the log has not been compacted to yet: the conflicting
 * suffix is cut after it, never into it. */
static void test_install_snapshot_beside_the_nodes_own_snapshot_being_stored(void **state)
{
    struct raft_node *n = *state;
    rules_receive(n, rules_append_request(1, 0, 0, 2, (uint64_t[]){1, 1, 1, 1}, 4));
    assert_int_equal(n->commit_index, 2);
    rules_store.snapshot_index = 2; /* stored by the snapshotter, not yet compacted */
    rules_store.snapshot_term = 1;
    rules_receive(n, rules_install_request(2, 4, 2, 0, "v", 1, 1));
    assert_false(n->disk_failed);
    assert_int_equal(rules_store.truncates, 1);
    assert_int_equal(rules_store.snapshot_index, 4);
    assert_int_equal(rules_store.snapshot_term, 2);
    assert_int_equal(n->log.base_index, 4);
    assert_int_equal(log_last_term(&n->log), 2);
}

#define NODE_TEST(t, setup) cmocka_unit_test_setup_teardown(t, setup, rules_teardown_node)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_append_and_term_lookup),
        cmocka_unit_test(test_log_truncation_removes_the_suffix_only),
        cmocka_unit_test(test_log_compaction_keeps_indices),
        cmocka_unit_test(test_vote_rule_compares_last_term_then_length),
        cmocka_unit_test(test_quorum_index_is_the_majority_match),
        cmocka_unit_test(test_figure8_no_commit_by_counting_older_term_replicas),
        NODE_TEST(test_follower_past_its_deadline_becomes_pre_candidate_keeping_its_term,
                  rules_setup_node),
        NODE_TEST(test_granted_pre_vote_from_one_peer_of_three_makes_a_candidate, rules_setup_node),
        NODE_TEST(test_candidate_whose_election_times_out_starts_the_next_term, rules_setup_node),
        NODE_TEST(test_vote_granted_once_per_term_and_persisted_first, rules_setup_follower),
        NODE_TEST(test_node_votes_for_nobody_right_after_start, rules_setup_node),
        NODE_TEST(test_vote_denied_to_an_older_term_or_staler_log, rules_setup_follower),
        NODE_TEST(test_pre_vote_denied_while_a_leader_is_heard_and_granted_after, rules_setup_follower),
        NODE_TEST(test_late_pre_vote_grant_of_an_earlier_round_is_not_counted, rules_setup_follower),
        NODE_TEST(test_stale_append_is_answered_while_the_syncer_writes, rules_setup_follower),
        NODE_TEST(test_request_vote_of_newer_term_ignored_while_hearing_from_a_leader,
                  rules_setup_follower),
        NODE_TEST(test_heartbeat_is_a_consistency_check, rules_setup_follower),
        NODE_TEST(test_matching_entries_are_never_truncated, rules_setup_follower),
        NODE_TEST(test_conflict_truncates_and_reports_the_term, rules_setup_follower),
        NODE_TEST(test_follower_commit_is_capped_by_the_last_new_entry, rules_setup_follower),
        NODE_TEST(test_stale_term_append_is_refused, rules_setup_follower),
        NODE_TEST(test_senders_refused_only_when_impossible_or_removed, rules_setup_follower),
        NODE_TEST(test_deposed_leader_keeps_committed_unwritten_entries, rules_setup_node),
        NODE_TEST(test_deposed_leader_keeps_what_its_disk_holds, rules_setup_node),
        NODE_TEST(test_leader_deposed_by_append_settles_first, rules_setup_node),
        NODE_TEST(test_vote_reply_from_an_older_term_is_not_counted, rules_setup_node),
        NODE_TEST(test_append_reply_from_an_older_term_is_ignored, rules_setup_node),
        NODE_TEST(test_reply_with_newer_term_makes_candidate_and_leader_step_down, rules_setup_node),
        NODE_TEST(test_append_success_sets_match_from_what_was_sent_and_commits_by_figure8,
                  rules_setup_follower),
        NODE_TEST(test_next_index_follows_a_follower_behind_its_stale_match_index, rules_setup_follower),
        NODE_TEST(test_failure_reply_moves_next_index_by_fast_backup, rules_setup_follower),
        NODE_TEST(test_check_quorum_leader_hearing_from_no_peer_steps_down, rules_setup_node),
        NODE_TEST(test_check_quorum_leader_hearing_from_one_of_two_peers_stays, rules_setup_node),
        NODE_TEST(test_lease_lasts_until_sent_plus_min_less_a_tenth, rules_setup_node),
        NODE_TEST(test_install_snapshot_gathers_chunks_in_order_and_installs, rules_setup_follower),
        NODE_TEST(test_install_snapshot_keeps_a_matching_suffix, rules_setup_follower),
        NODE_TEST(test_install_snapshot_discards_a_conflicting_log, rules_setup_follower),
        NODE_TEST(test_install_snapshot_past_the_log_truncates_nothing, rules_setup_follower),
        NODE_TEST(test_install_snapshot_beside_the_nodes_own_snapshot_being_stored,
                  rules_setup_follower),
    };
    return cmocka_run_group_tests_name("unit: Raft rules", tests, NULL, NULL);
}
