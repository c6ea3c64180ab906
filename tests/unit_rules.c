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
    assert_int_equal(commit_quorum_index((uint64_t[]){0, 0, 8, 8}, 4), 0); /* 2 of 4 is no majority */
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

/* ---- one node, no threads: fake storage, fsm, transport and clock ---- */

static uint64_t clock_now; /* the node's clock, in ms, moved by the tests */

static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return clock_now;
}

/* What the node asked storage to do. */
static struct store {
    uint64_t term;
    int32_t vote;
    unsigned term_vote_saves;
    uint64_t stored_last;       /* index of the last entry on "disk" */
    unsigned appends, truncates;
    unsigned misplaced_appends; /* storage contract: first == stored last + 1 */
    unsigned snapshot_saves;
    uint64_t snapshot_index, snapshot_term;
    uint8_t snapshot[16];
    size_t snapshot_len;
} store;

static int store_load(void *ctx, struct raft_persisted *out)
{
    (void)ctx;
    memset(out, 0, sizeof(*out));
    out->voted_for = RAFT_NO_NODE;
    return 0;
}

static int store_save_term_vote(void *ctx, uint64_t term, int32_t vote)
{
    (void)ctx;
    store.term = term;
    store.vote = vote;
    store.term_vote_saves++;
    return 0;
}

static int store_append(void *ctx, uint64_t first, const struct raft_entry *e, size_t n)
{
    (void)ctx, (void)e;
    if (first != store.stored_last + 1)
        store.misplaced_appends++;
    store.appends++;
    store.stored_last = first + n - 1;
    return 0;
}

static int store_truncate(void *ctx, uint64_t from)
{
    (void)ctx;
    store.truncates++;
    if (store.stored_last >= from)
        store.stored_last = from - 1;
    return 0;
}

static int store_save_snapshot(void *ctx, uint64_t index, uint64_t term,
                               const uint8_t *data, size_t len)
{
    (void)ctx;
    assert_true(len <= sizeof(store.snapshot));
    store.snapshot_saves++;
    store.snapshot_index = index;
    store.snapshot_term = term;
    memcpy(store.snapshot, data, len);
    store.snapshot_len = len;
    if (store.stored_last < index) /* it drops the entries it covers */
        store.stored_last = index;
    return 0;
}

static void fsm_apply(void *ctx, uint64_t index, const struct raft_entry *e)
{
    (void)ctx, (void)index, (void)e;
}

static int fsm_snapshot(void *ctx, uint8_t **data, size_t *len)
{
    (void)ctx;
    *data = NULL;
    *len = 0;
    return 0;
}

static int fsm_restore(void *ctx, uint64_t index, const uint8_t *data, size_t len)
{
    (void)ctx, (void)index, (void)data, (void)len;
    return 0;
}

/* The tests hand replies to the node themselves: the transport is never used. */
static int never_call(void *ctx, uint32_t peer, const struct raft_msg *req,
                      struct raft_msg *reply, unsigned timeout_ms)
{
    (void)ctx, (void)peer, (void)req, (void)reply, (void)timeout_ms;
    fail_msg("the transport was called");
    return -EIO;
}

#define MIN_MS 150u
#define MAX_MS 300u

/* Node 0 of a 3-node cluster, with pre-vote, check-quorum and read leases,
 * just started at time 1000. */
static int create_node(void **state)
{
    memset(&store, 0, sizeof(store));
    clock_now = 1000;
    struct raft_config cfg;
    raft_config_defaults(&cfg, 0, 3);
    cfg.election_timeout_min_ms = MIN_MS;
    cfg.election_timeout_max_ms = MAX_MS;
    cfg.heartbeat_ms = 50;
    cfg.seed = 42;
    cfg.log_level = RAFT_LOG_ERROR;
    cfg.clock_ms = fake_clock;
    struct raft_transport t = {.call = never_call};
    struct raft_storage s = {.load = store_load, .save_term_vote = store_save_term_vote,
                             .append = store_append, .truncate = store_truncate,
                             .save_snapshot = store_save_snapshot};
    struct raft_fsm f = {.apply = fsm_apply, .snapshot = fsm_snapshot, .restore = fsm_restore};
    struct raft_node *n;
    assert_int_equal(node_create(&n, &cfg, &t, &s, &f), 0);
    *state = n;
    return 0;
}

/* The same node once the minimum election timeout has passed since its
 * start: it no longer refuses votes for the quiet time after a start. */
static int create_follower(void **state)
{
    create_node(state);
    clock_now += MIN_MS;
    return 0;
}

static int destroy_node(void **state)
{
    node_destroy(*state);
    return 0;
}

/* ---- driving the rules ---- */

static void tick(struct raft_node *n)
{
    node_lock(n);
    node_tick_locked(n, clock_now);
    node_unlock(n);
}

/* Moves the clock to the node's election deadline and ticks. */
static void tick_at_deadline(struct raft_node *n)
{
    node_lock(n);
    uint64_t deadline = n->election_deadline_ms;
    node_unlock(n);
    assert_true(deadline >= clock_now);
    clock_now = deadline;
    tick(n);
}

/* The request node n's first lane to `peer` sends now. */
static struct rpc prepare(struct raft_node *n, uint32_t peer)
{
    struct rpc r;
    node_lock(n);
    bool some = node_prepare_request_locked(n, &n->peers[peer].lanes[0], clock_now, &r);
    node_unlock(n);
    assert_true(some);
    return r;
}

static void answer(struct raft_node *n, struct rpc *sent, struct raft_msg reply)
{
    reply.from = sent->to;
    node_lock(n);
    node_handle_reply_locked(n, &n->peers[sent->to].lanes[0], sent, 0, &reply, clock_now);
    node_unlock(n);
}

static struct raft_msg vote_reply(uint64_t term, bool granted, bool pre)
{
    struct raft_msg m = {.type = RAFT_MSG_REQUEST_VOTE_REPLY};
    m.u.rv_reply = (struct raft_request_vote_reply){.term = term, .vote_granted = granted,
                                                    .pre_vote = pre};
    return m;
}

static struct raft_msg append_reply(uint64_t term, bool success, uint64_t match,
                                    uint64_t conflict_term, uint64_t conflict_index)
{
    struct raft_msg m = {.type = RAFT_MSG_APPEND_ENTRIES_REPLY};
    m.u.ae_reply = (struct raft_append_entries_reply){
        .term = term, .success = success, .match_index = match,
        .conflict_term = conflict_term, .conflict_index = conflict_index};
    return m;
}

/* Peer `peer` grants the (pre-)vote node n asks it for now. */
static void grant_vote(struct raft_node *n, uint32_t peer, bool pre)
{
    struct rpc r = prepare(n, peer);
    assert_int_equal(r.req.type, RAFT_MSG_REQUEST_VOTE);
    assert_int_equal(r.req.u.rv.pre_vote, pre);
    answer(n, &r, vote_reply(pre ? r.req.u.rv.term - 1 : r.req.u.rv.term, true, pre));
}

/* Elects node n by the rules: its timer expires, peer 1 grants the pre-vote,
 * then the vote. */
static void make_leader(struct raft_node *n)
{
    tick_at_deadline(n);
    assert_int_equal(n->role, RAFT_PRE_CANDIDATE);
    grant_vote(n, 1, true);
    assert_int_equal(n->role, RAFT_CANDIDATE);
    grant_vote(n, 1, false);
    assert_int_equal(n->role, RAFT_LEADER);
}

/* What the leader's disk syncer does (syncer.c): writes the entries up to
 * `upto`, then counts them towards commitment. */
static void sync_leader_log(struct raft_node *n, uint64_t upto)
{
    node_lock(n);
    uint64_t from = n->durable_index + 1;
    assert_int_equal(n->storage.append(n->storage.ctx, from, log_get(&n->log, from),
                                       (size_t)(upto - n->durable_index)), 0);
    n->durable_index = upto;
    if (n->role == RAFT_LEADER)
        node_advance_commit_locked(n);
    node_unlock(n);
}

static void propose(struct raft_node *n, unsigned count)
{
    node_lock(n);
    for (unsigned i = 0; i < count; i++)
        assert_int_equal(node_propose_locked(n, (const uint8_t *)"c", 1), 0);
    node_unlock(n);
}

static struct raft_msg vote_request(uint32_t from, uint64_t term, uint64_t last_index,
                                    uint64_t last_term, bool pre)
{
    struct raft_msg m = {.type = RAFT_MSG_REQUEST_VOTE, .from = from};
    m.u.rv = (struct raft_request_vote){.term = term, .last_log_index = last_index,
                                        .last_log_term = last_term, .pre_vote = pre};
    return m;
}

static struct raft_entry entries_buf[8];

/* AppendEntries from n1, the leader. */
static struct raft_msg append_request(uint64_t term, uint64_t prev, uint64_t prev_term,
                                      uint64_t commit, const uint64_t *terms, uint32_t n)
{
    struct raft_msg m = {.type = RAFT_MSG_APPEND_ENTRIES, .from = 1};
    for (uint32_t i = 0; i < n; i++)
        entries_buf[i] = (struct raft_entry){.term = terms[i], .type = RAFT_ENTRY_COMMAND,
                                             .len = 1, .data = (uint8_t *)"y"};
    m.u.ae = (struct raft_append_entries){.term = term, .prev_log_index = prev,
                                          .prev_log_term = prev_term, .leader_commit = commit,
                                          .n_entries = n, .entries = entries_buf};
    return m;
}

/* InstallSnapshot from n1: `len` bytes of `data` at `offset`. */
static struct raft_msg install_request(uint64_t term, uint64_t index, uint64_t index_term,
                                       uint64_t offset, const char *data, uint32_t len,
                                       uint64_t total)
{
    struct raft_msg m = {.type = RAFT_MSG_INSTALL_SNAPSHOT, .from = 1};
    m.u.is = (struct raft_install_snapshot){
        .term = term, .last_index = index, .last_term = index_term, .offset = offset,
        .total = total, .len = len, .data = (uint8_t *)data, .done = offset + len == total};
    return m;
}

static void receive_ok(struct raft_node *n, const struct raft_msg *req, struct raft_msg *reply)
{
    assert_int_equal(raft_receive(n, req, reply), 0);
}

/* ---- the election timer (§5.2, thesis §9.6) ---- */

/* Thesis §9.6: a follower whose timer expires first asks for pre-votes,
 * for the term it would campaign in, without raising or persisting its own. */
static void test_follower_past_its_deadline_becomes_pre_candidate_keeping_its_term(void **state)
{
    struct raft_node *n = *state;
    uint64_t deadline = n->election_deadline_ms;
    assert_in_range(deadline, 1000 + MIN_MS, 1000 + MAX_MS);
    clock_now = deadline - 1;
    tick(n);
    assert_int_equal(n->role, RAFT_FOLLOWER); /* not yet */
    clock_now = deadline;
    tick(n);
    assert_int_equal(n->role, RAFT_PRE_CANDIDATE);
    assert_int_equal(n->current_term, 0);
    assert_int_equal(n->voted_for, RAFT_NO_NODE);
    assert_int_equal(store.term_vote_saves, 0);
    assert_true(n->election_deadline_ms >= clock_now + MIN_MS); /* timer reset */
    struct rpc r = prepare(n, 2);
    assert_int_equal(r.req.type, RAFT_MSG_REQUEST_VOTE);
    assert_true(r.req.u.rv.pre_vote);
    assert_int_equal(r.req.u.rv.term, 1);
    node_lock(n);
    bool again = node_prepare_request_locked(n, &n->peers[2].lanes[0], clock_now, &r);
    node_unlock(n);
    assert_false(again); /* one request per peer and election */
}

/* Thesis §9.6, then Figure 2, candidates: a pre-vote won (self plus one of
 * two peers) starts the real election: currentTerm+1, persisted with the
 * vote for itself before any RequestVote goes out. */
static void test_granted_pre_vote_from_one_peer_of_three_makes_a_candidate(void **state)
{
    struct raft_node *n = *state;
    tick_at_deadline(n);
    struct rpc denied = prepare(n, 2);
    answer(n, &denied, vote_reply(0, false, true));
    assert_int_equal(n->role, RAFT_PRE_CANDIDATE); /* one vote (its own) of three */
    grant_vote(n, 1, true);
    assert_int_equal(n->role, RAFT_CANDIDATE);
    assert_int_equal(n->current_term, 1);
    assert_int_equal(n->voted_for, 0);
    assert_int_equal(store.term, 1);
    assert_int_equal(store.vote, 0);
    assert_int_equal(store.term_vote_saves, 1);
    assert_int_equal(n->votes, 1u << 0);
    struct rpc r = prepare(n, 2);
    assert_false(r.req.u.rv.pre_vote);
    assert_int_equal(r.req.u.rv.term, 1);
}

/* Figure 2, candidates: "If election timeout elapses: start new election". */
static void test_candidate_whose_election_times_out_starts_the_next_term(void **state)
{
    struct raft_node *n = *state;
    tick_at_deadline(n);
    grant_vote(n, 1, true);
    assert_int_equal(n->role, RAFT_CANDIDATE);
    tick_at_deadline(n);
    assert_int_equal(n->role, RAFT_CANDIDATE); /* no pre-vote again: straight to T2 */
    assert_int_equal(n->current_term, 2);
    assert_int_equal(store.term, 2);
    assert_int_equal(store.vote, 0);
    assert_int_equal(store.term_vote_saves, 2);
    assert_true(n->election_deadline_ms > clock_now);
    struct rpc r = prepare(n, 1);
    assert_false(r.req.u.rv.pre_vote);
    assert_int_equal(r.req.u.rv.term, 2);
}

/* ---- RequestVote receiver (Figure 2, §5.4.1, thesis §9.6 and §4.2.3) ---- */

static void test_vote_granted_once_per_term_and_persisted_first(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg req = vote_request(1, 5, 0, 0, false), reply;
    receive_ok(n, &req, &reply);
    assert_true(reply.u.rv_reply.vote_granted);
    assert_int_equal(reply.u.rv_reply.term, 5);
    /* Figure 2: the vote reached storage before the answer. */
    assert_int_equal(store.term, 5);
    assert_int_equal(store.vote, 1);
    assert_true(n->election_deadline_ms >= clock_now + MIN_MS); /* granting resets the timer */
    req = vote_request(2, 5, 0, 0, false);
    receive_ok(n, &req, &reply);
    assert_false(reply.u.rv_reply.vote_granted); /* already voted for n1 in T5 */
    assert_int_equal(store.vote, 1);
    req = vote_request(1, 5, 0, 0, false);
    receive_ok(n, &req, &reply);
    assert_true(reply.u.rv_reply.vote_granted); /* the same candidate may ask again */
    assert_int_equal(n->voted_for, 1);
}

/* Thesis §6.4.1: a node that just started may have answered a leader's
 * heartbeat before it went down, without remembering it, and that leader
 * may serve reads on a lease that counts on it. So for the minimum election
 * timeout after its start it helps elect nobody. */
static void test_node_votes_for_nobody_right_after_start(void **state)
{
    struct raft_node *n = *state;
    clock_now += MIN_MS - 1;
    struct raft_msg req = vote_request(1, 5, 0, 0, true), reply;
    receive_ok(n, &req, &reply);
    assert_false(reply.u.rv_reply.vote_granted);
    req.u.rv.pre_vote = 0;
    receive_ok(n, &req, &reply);
    assert_false(reply.u.rv_reply.vote_granted);
    assert_int_equal(store.term_vote_saves, 0); /* nothing stored: no term, no vote */
    assert_int_equal(n->current_term, 0);
    clock_now += 1; /* the timeout has passed since the start */
    receive_ok(n, &req, &reply);
    assert_true(reply.u.rv_reply.vote_granted);
    assert_int_equal(store.vote, 1);
}

static void test_vote_denied_to_an_older_term_or_staler_log(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    struct raft_msg ae = append_request(3, 0, 0, 0, (uint64_t[]){3, 3}, 2);
    receive_ok(n, &ae, &rep);
    assert_true(rep.u.ae_reply.success);
    struct raft_msg req = vote_request(2, 2, 9, 2, false); /* rule 1: older term */
    receive_ok(n, &req, &rep);
    assert_false(rep.u.rv_reply.vote_granted);
    assert_int_equal(rep.u.rv_reply.term, 3);
    clock_now += MIN_MS; /* the leader fell silent (thesis §4.2.3) */
    req = vote_request(2, 4, 9, 2, false); /* rule 2: longer log, older last term */
    receive_ok(n, &req, &rep);
    assert_false(rep.u.rv_reply.vote_granted);
    assert_int_equal(rep.u.rv_reply.term, 4); /* but it adopted the newer term */
    assert_int_equal(store.term, 4);
    assert_int_equal(store.vote, RAFT_NO_NODE);
}

/* Thesis §9.6: no pre-vote while a leader was heard from within the
 * minimum election timeout; once it falls silent, granted, changing nothing. */
static void test_pre_vote_denied_while_a_leader_is_heard_and_granted_after(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep, ae = append_request(1, 0, 0, 0, NULL, 0);
    receive_ok(n, &ae, &rep);
    unsigned saves = store.term_vote_saves;
    clock_now += MIN_MS - 1;
    struct raft_msg req = vote_request(2, 2, 0, 0, true);
    receive_ok(n, &req, &rep);
    assert_false(rep.u.rv_reply.vote_granted);
    assert_true(rep.u.rv_reply.pre_vote);
    clock_now += 1;
    receive_ok(n, &req, &rep);
    assert_true(rep.u.rv_reply.vote_granted);
    assert_true(rep.u.rv_reply.pre_vote);
    assert_int_equal(rep.u.rv_reply.term, 1);
    assert_int_equal(n->current_term, 1); /* a pre-vote changes no state */
    assert_int_equal(n->voted_for, RAFT_NO_NODE);
    assert_int_equal(store.term_vote_saves, saves);
}

/* Thesis §4.2.3 (with check-quorum): a node that hears from a leader
 * ignores RequestVote of a newer term; it does not even adopt the term. */
static void test_request_vote_of_newer_term_ignored_while_hearing_from_a_leader(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep, ae = append_request(1, 0, 0, 0, NULL, 0);
    receive_ok(n, &ae, &rep);
    unsigned saves = store.term_vote_saves;
    clock_now += 10;
    struct raft_msg req = vote_request(2, 5, 0, 0, false);
    receive_ok(n, &req, &rep);
    assert_false(rep.u.rv_reply.vote_granted);
    assert_int_equal(rep.u.rv_reply.term, 1);
    assert_int_equal(n->current_term, 1);
    assert_int_equal(n->role, RAFT_FOLLOWER);
    assert_int_equal(n->leader_id, 1);
    assert_int_equal(store.term_vote_saves, saves);
}

/* ---- AppendEntries receiver (Figure 2) ---- */

static void test_heartbeat_is_a_consistency_check(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    /* Rule 2: an empty AppendEntries whose prevLogIndex the follower lacks fails. */
    struct raft_msg hb = append_request(1, 3, 1, 3, NULL, 0);
    receive_ok(n, &hb, &rep);
    assert_false(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.conflict_term, 0);
    assert_int_equal(rep.u.ae_reply.conflict_index, 1);
    assert_int_equal(n->commit_index, 0); /* and it must not move the commit index */
    assert_int_equal(n->leader_id, 1);
}

/* Rule 3 deletes only a conflicting entry and what follows it. */
static void test_matching_entries_are_never_truncated(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    struct raft_msg ae = append_request(1, 0, 0, 0, (uint64_t[]){1, 1, 1}, 3);
    receive_ok(n, &ae, &rep);
    assert_int_equal(store.stored_last, 3);
    ae = append_request(1, 0, 0, 0, (uint64_t[]){1}, 1); /* a delayed, shorter copy */
    receive_ok(n, &ae, &rep);
    assert_true(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.match_index, 1);
    assert_int_equal(log_last_index(&n->log), 3);
    assert_int_equal(store.truncates, 0);
    assert_int_equal(store.appends, 1);
}

static void test_conflict_truncates_and_reports_the_term(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    struct raft_msg ae = append_request(2, 0, 0, 0, (uint64_t[]){1, 2, 2, 2}, 4);
    receive_ok(n, &ae, &rep);
    /* A leader of term 3 whose entry 3 has term 3: the follower reports the
     * conflicting term 2 and its first index 2 (fast backup, §5.3). */
    ae = append_request(3, 3, 3, 0, NULL, 0);
    receive_ok(n, &ae, &rep);
    assert_false(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.conflict_term, 2);
    assert_int_equal(rep.u.ae_reply.conflict_index, 2);
    ae = append_request(3, 1, 1, 0, (uint64_t[]){3}, 1);
    receive_ok(n, &ae, &rep);
    assert_true(rep.u.ae_reply.success);
    assert_int_equal(log_last_index(&n->log), 2);
    assert_int_equal(log_term_at(&n->log, 2), 3);
    assert_int_equal(store.truncates, 1);
    assert_int_equal(store.stored_last, 2);
    assert_int_equal(store.misplaced_appends, 0);
}

/* Rule 5: commitIndex = min(leaderCommit, index of last new entry). */
static void test_follower_commit_is_capped_by_the_last_new_entry(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    struct raft_msg ae = append_request(1, 0, 0, 0, (uint64_t[]){1, 1, 1, 1, 1}, 5);
    receive_ok(n, &ae, &rep);
    /* The leader says commit 9 but only vouches up to entry 2. */
    ae = append_request(1, 1, 1, 9, (uint64_t[]){1}, 1);
    receive_ok(n, &ae, &rep);
    assert_int_equal(n->commit_index, 2);
}

/* Figure 2, rule 1: reply false if term < currentTerm. */
static void test_stale_term_append_is_refused(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep, req = vote_request(2, 4, 0, 0, false);
    receive_ok(n, &req, &rep);
    struct raft_msg ae = append_request(3, 0, 0, 0, (uint64_t[]){3}, 1);
    receive_ok(n, &ae, &rep);
    assert_false(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.term, 4);
    assert_int_equal(log_last_index(&n->log), 0);
    assert_int_equal(n->leader_id, RAFT_NO_NODE);
    assert_int_equal(store.appends, 0);
}

static void test_unknown_sender_is_refused(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg req = vote_request(7, 1, 0, 0, false), rep;
    assert_int_equal(raft_receive(n, &req, &rep), -EINVAL);
    req = vote_request(0, 1, 0, 0, false); /* itself */
    assert_int_equal(raft_receive(n, &req, &rep), -EINVAL);
    assert_int_equal(store.term_vote_saves, 0);
}

/* ---- a deposed leader settles its log (thesis §10.2.1) ---- */

/* The followers committed entries 1..2 before the leader's own disk write
 * covered them; then it was deposed. As a follower it writes the committed
 * ones and drops only the rest: its log never ends below its commit index. */
static void test_deposed_leader_keeps_committed_unwritten_entries(void **state)
{
    struct raft_node *n = *state;
    make_leader(n); /* T1, no-op at 1 */
    propose(n, 1);
    struct rpc to1 = prepare(n, 1), to2 = prepare(n, 2); /* entries 1..2 */
    propose(n, 1);                                       /* entry 3 */
    answer(n, &to1, append_reply(1, true, 2, 0, 0));
    answer(n, &to2, append_reply(1, true, 2, 0, 0));
    assert_int_equal(n->commit_index, 2);
    assert_int_equal(n->durable_index, 0); /* its syncer never ran */
    struct raft_msg rep, hb = append_request(2, 0, 0, 0, NULL, 0);
    receive_ok(n, &hb, &rep);
    assert_true(rep.u.ae_reply.success);
    assert_int_equal(n->role, RAFT_FOLLOWER);
    assert_int_equal(log_last_index(&n->log), 2); /* entry 3 was never acknowledged */
    assert_int_equal(n->commit_index, 2);
    assert_int_equal(store.stored_last, 2); /* written before answering */
    assert_int_equal(store.misplaced_appends, 0);
}

/* Deposed with entries 1..2 on disk, 3 not yet, and only 1 committed: what
 * is on disk stays in the log, so the next append goes where storage ends. */
static void test_deposed_leader_keeps_what_its_disk_holds(void **state)
{
    struct raft_node *n = *state;
    make_leader(n);
    sync_leader_log(n, 1);
    struct rpc to1 = prepare(n, 1);
    answer(n, &to1, append_reply(1, true, 1, 0, 0));
    assert_int_equal(n->commit_index, 1);
    propose(n, 2);
    sync_leader_log(n, 2);
    struct raft_msg rep, hb = append_request(2, 0, 0, 0, NULL, 0);
    receive_ok(n, &hb, &rep);
    assert_int_equal(log_last_index(&n->log), 2);
    struct raft_msg ae = append_request(2, 1, 1, 0, (uint64_t[]){2}, 1);
    receive_ok(n, &ae, &rep);
    assert_true(rep.u.ae_reply.success);
    assert_int_equal(log_term_at(&n->log, 2), 2);
    assert_int_equal(store.stored_last, 2);
    assert_int_equal(store.truncates, 1); /* its entry 2@T1 gave way to 2@T2 */
    assert_int_equal(store.misplaced_appends, 0);
}

/* A leader deposed by the very AppendEntries it receives settles its log
 * before the consistency check: its unwritten entry 2 is not "matched". */
static void test_leader_deposed_by_append_settles_first(void **state)
{
    struct raft_node *n = *state;
    make_leader(n);
    sync_leader_log(n, 1);
    propose(n, 1); /* entry 2@T1, not written */
    struct raft_msg rep, ae = append_request(2, 2, 1, 0, (uint64_t[]){2}, 1);
    receive_ok(n, &ae, &rep);
    assert_false(rep.u.ae_reply.success); /* entry 2 was never stored */
    assert_int_equal(rep.u.ae_reply.conflict_index, 2);
    assert_int_equal(n->role, RAFT_FOLLOWER);
    assert_int_equal(store.term, 2);
    assert_int_equal(log_last_index(&n->log), 1);
    assert_int_equal(store.stored_last, 1);
    assert_int_equal(store.misplaced_appends, 0);
}

/* ---- replies (Figure 2, all servers; "drop a reply of another term") ---- */

/* A candidate of T1 asks both peers; before they answer, its election
 * times out and it starts T2. Their grants are for T1 and must not make it
 * leader of T2. */
static void test_vote_reply_from_an_older_term_is_not_counted(void **state)
{
    struct raft_node *n = *state;
    tick_at_deadline(n);
    grant_vote(n, 1, true);
    assert_int_equal(n->current_term, 1);
    struct rpc to1 = prepare(n, 1), to2 = prepare(n, 2);
    tick_at_deadline(n);
    assert_int_equal(n->current_term, 2);
    answer(n, &to1, vote_reply(1, true, false));
    answer(n, &to2, vote_reply(1, true, false));
    assert_int_equal(n->role, RAFT_CANDIDATE);
    assert_int_equal(n->votes, 1u << 0);
    grant_vote(n, 2, false); /* a grant for T2 does count */
    assert_int_equal(n->role, RAFT_LEADER);
    assert_int_equal(n->current_term, 2);
}

/* A leader of T1 sends its no-op; before the answers come back it has been
 * deposed and elected again, for T3. Success for the T1 requests says
 * nothing about its T3 log: matchIndex must not move. */
static void test_append_reply_from_an_older_term_is_ignored(void **state)
{
    struct raft_node *n = *state;
    make_leader(n);
    sync_leader_log(n, 1);
    struct rpc to1 = prepare(n, 1), to2 = prepare(n, 2);
    assert_int_equal(to1.req.u.ae.n_entries, 1);
    struct raft_msg rep, hb = append_request(2, 1, 1, 0, NULL, 0);
    receive_ok(n, &hb, &rep);
    assert_int_equal(n->current_term, 2);
    make_leader(n);
    assert_int_equal(n->current_term, 3);
    answer(n, &to1, append_reply(1, true, 1, 0, 0));
    answer(n, &to2, append_reply(1, true, 1, 0, 0));
    assert_int_equal(n->peers[1].match_index, 0);
    assert_int_equal(n->peers[2].match_index, 0);
    assert_int_equal(n->commit_index, 0);
}

/* Figure 2, all servers: a reply carrying term T > currentTerm makes a
 * candidate or a leader a follower of T, persisted. */
static void test_reply_with_newer_term_makes_candidate_and_leader_step_down(void **state)
{
    struct raft_node *n = *state;
    tick_at_deadline(n);
    grant_vote(n, 1, true);
    struct rpc r = prepare(n, 2);
    answer(n, &r, vote_reply(4, false, false));
    assert_int_equal(n->role, RAFT_FOLLOWER);
    assert_int_equal(n->current_term, 4);
    assert_int_equal(store.term, 4);
    assert_int_equal(store.vote, RAFT_NO_NODE);
    make_leader(n);
    assert_int_equal(n->current_term, 5);
    r = prepare(n, 2);
    answer(n, &r, append_reply(7, false, 0, 0, 0));
    assert_int_equal(n->role, RAFT_FOLLOWER);
    assert_int_equal(n->leader_id, RAFT_NO_NODE);
    assert_int_equal(n->current_term, 7);
    assert_int_equal(store.term, 7);
    assert_int_equal(store.vote, RAFT_NO_NODE);
}

/* ---- the leader (Figure 2, leaders; Figure 8; §5.3) ---- */

/* matchIndex = prevLogIndex + the entries that request carried, whatever
 * the log holds by then or the reply claims; commitIndex moves only to an
 * entry of the current term (Figure 8), then takes older ones with it. */
static void test_append_success_sets_match_from_what_was_sent_and_commits_by_figure8(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep, ae = append_request(1, 0, 0, 0, (uint64_t[]){1, 1}, 2);
    receive_ok(n, &ae, &rep);
    make_leader(n); /* T2, no-op at 3 */
    sync_leader_log(n, 3);
    node_lock(n);
    n->cfg.max_batch_bytes = 17; /* one entry per AppendEntries */
    node_unlock(n);
    struct rpc r = prepare(n, 1);
    answer(n, &r, append_reply(2, false, 0, 0, 2)); /* n1 holds entry 1 only */
    assert_int_equal(n->peers[1].next_index, 2);
    r = prepare(n, 1);
    assert_int_equal(r.req.u.ae.prev_log_index, 1);
    assert_int_equal(r.req.u.ae.n_entries, 1);
    propose(n, 1); /* entry 4: the log grows while the request is out */
    answer(n, &r, append_reply(2, true, 99, 0, 0));
    assert_int_equal(n->peers[1].match_index, 2);
    assert_int_equal(n->peers[1].next_index, 3);
    assert_int_equal(n->commit_index, 0); /* entry 2 is of T1: on a majority, not committed */
    r = prepare(n, 1); /* entry 3, the no-op of T2 */
    answer(n, &r, append_reply(2, true, 3, 0, 0));
    assert_int_equal(n->peers[1].match_index, 3);
    assert_int_equal(n->commit_index, 3);
}

/* §5.3 fast backup: the follower names its conflicting term and that term's
 * first index; the leader skips to after its own last entry of that term,
 * or to the follower's index if it has none. */
static void test_failure_reply_moves_next_index_by_fast_backup(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep, ae = append_request(3, 0, 0, 0, (uint64_t[]){1, 1, 1, 3, 3}, 5);
    receive_ok(n, &ae, &rep);
    make_leader(n); /* T4: log 1 1 1 3 3 4 */
    assert_int_equal(n->peers[1].next_index, 6);
    struct rpc r = prepare(n, 1);
    assert_int_equal(r.req.u.ae.prev_log_index, 5);
    answer(n, &r, append_reply(4, false, 0, 2, 2)); /* n1's T2 starts at 2; the leader has no T2 */
    assert_int_equal(n->peers[1].next_index, 2);
    r = prepare(n, 1);
    answer(n, &r, append_reply(4, false, 0, 0, 1)); /* n1's log is empty */
    assert_int_equal(n->peers[1].next_index, 1);
    assert_int_equal(n->peers[1].match_index, 0);
    assert_false(n->peers[1].replicating);
    r = prepare(n, 2);
    answer(n, &r, append_reply(4, false, 0, 1, 1)); /* n2's entry 5 is T1: the leader's T1 ends at 3 */
    assert_int_equal(n->peers[2].next_index, 4);
}

/* Thesis §6.2: a leader that has not heard from a majority for an election
 * timeout (election_timeout_max) steps down at its tick. */
static void test_check_quorum_leader_hearing_from_no_peer_steps_down(void **state)
{
    struct raft_node *n = *state;
    make_leader(n);
    uint64_t elected = clock_now;
    unsigned saves = store.term_vote_saves;
    tick_at_deadline(n); /* acks count from its election: still within the window */
    assert_int_equal(clock_now, elected + MAX_MS);
    assert_int_equal(n->role, RAFT_LEADER);
    tick_at_deadline(n);
    assert_int_equal(n->role, RAFT_FOLLOWER);
    assert_int_equal(n->leader_id, RAFT_NO_NODE);
    assert_int_equal(n->current_term, 1);
    assert_int_equal(store.term_vote_saves, saves);
}

static void test_check_quorum_leader_hearing_from_one_of_two_peers_stays(void **state)
{
    struct raft_node *n = *state;
    make_leader(n);
    tick_at_deadline(n);
    clock_now += 10;
    struct rpc r = prepare(n, 1);
    answer(n, &r, append_reply(1, true, 1, 0, 0));
    tick_at_deadline(n); /* n1 answered MAX-10 ms ago, n2 never */
    assert_int_equal(n->role, RAFT_LEADER);
    assert_true(n->election_deadline_ms == clock_now + MAX_MS);
}

/* Thesis §6.4.1: the lease lasts from the send time of the latest requests
 * a majority answered for 0.9 x the minimum election timeout. */
static void test_lease_lasts_until_sent_plus_min_less_a_tenth(void **state)
{
    struct raft_node *n = *state;
    make_leader(n);
    node_lock(n);
    assert_false(clients_holds_lease_locked(n, clock_now)); /* no majority acked yet */
    node_unlock(n);
    clock_now += 5;
    uint64_t sent = clock_now;
    struct rpc r = prepare(n, 1);
    clock_now += 20;
    answer(n, &r, append_reply(1, true, 1, 0, 0));
    uint64_t end = sent + MIN_MS - MIN_MS / 10;
    node_lock(n);
    assert_true(clients_holds_lease_locked(n, clock_now));
    assert_true(clients_holds_lease_locked(n, end - 1));
    assert_false(clients_holds_lease_locked(n, end));
    n->cfg.lease_reads = false;
    assert_false(clients_holds_lease_locked(n, clock_now));
    node_unlock(n);
}

/* ---- InstallSnapshot receiver (Figure 13) ---- */

/* Rules 2-5: chunks are gathered in order; a chunk at another offset gets
 * the expected offset back; the last one (done) installs the snapshot. */
static void test_install_snapshot_gathers_chunks_in_order_and_installs(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep, is = install_request(1, 5, 1, 0, "abc", 3, 6);
    receive_ok(n, &is, &rep);
    assert_int_equal(rep.u.is_reply.next_offset, 3);
    assert_int_equal(rep.u.is_reply.term, 1);
    assert_int_equal(store.snapshot_saves, 0);
    is = install_request(1, 5, 1, 4, "ef", 2, 6); /* a chunk out of place */
    receive_ok(n, &is, &rep);
    assert_int_equal(rep.u.is_reply.next_offset, 3);
    assert_int_equal(store.snapshot_saves, 0);
    is = install_request(1, 5, 1, 3, "def", 3, 6);
    receive_ok(n, &is, &rep);
    assert_int_equal(rep.u.is_reply.next_offset, 6);
    assert_int_equal(store.snapshot_saves, 1);
    assert_int_equal(store.snapshot_index, 5);
    assert_int_equal(store.snapshot_term, 1);
    assert_int_equal(store.snapshot_len, 6);
    assert_memory_equal(store.snapshot, "abcdef", 6);
    assert_int_equal(n->log.base_index, 5);
    assert_int_equal(n->log.base_term, 1);
    assert_int_equal(log_last_index(&n->log), 5);
    assert_int_equal(n->commit_index, 5);
    assert_non_null(n->to_restore); /* for the applier to load */
    assert_int_equal(n->to_restore->index, 5);
}

/* Rule 6: if an entry matching the snapshot's last one is in the log, the
 * entries after it are kept. */
static void test_install_snapshot_keeps_a_matching_suffix(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep, ae = append_request(1, 0, 0, 0, (uint64_t[]){1, 1, 1, 1}, 4);
    receive_ok(n, &ae, &rep);
    struct raft_msg is = install_request(1, 2, 1, 0, "s", 1, 1);
    receive_ok(n, &is, &rep);
    assert_int_equal(rep.u.is_reply.next_offset, 1);
    assert_int_equal(store.snapshot_index, 2);
    assert_int_equal(store.truncates, 0);
    assert_int_equal(n->log.base_index, 2);
    assert_int_equal(log_last_index(&n->log), 4);
    assert_non_null(log_get(&n->log, 3));
    assert_int_equal(n->commit_index, 2);
    assert_int_equal(n->durable_index, 4);
}

/* Rule 7: otherwise the whole log is discarded. */
static void test_install_snapshot_discards_a_conflicting_log(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep, ae = append_request(1, 0, 0, 0, (uint64_t[]){1, 1, 1}, 3);
    receive_ok(n, &ae, &rep);
    struct raft_msg is = install_request(2, 2, 2, 0, "t", 1, 1);
    receive_ok(n, &is, &rep);
    assert_int_equal(rep.u.is_reply.term, 2);
    assert_int_equal(store.truncates, 1);
    assert_int_equal(store.snapshot_index, 2);
    assert_int_equal(store.snapshot_term, 2);
    assert_int_equal(store.stored_last, 2);
    assert_int_equal(n->log.base_index, 2);
    assert_int_equal(n->log.base_term, 2);
    assert_int_equal(log_last_index(&n->log), 2);
    assert_null(log_get(&n->log, 3));
    assert_int_equal(n->commit_index, 2);
}

#define NODE_TEST(t, setup) cmocka_unit_test_setup_teardown(t, setup, destroy_node)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_append_and_term_lookup),
        cmocka_unit_test(test_log_truncation_removes_the_suffix_only),
        cmocka_unit_test(test_log_compaction_keeps_indices),
        cmocka_unit_test(test_vote_rule_compares_last_term_then_length),
        cmocka_unit_test(test_quorum_index_is_the_majority_match),
        cmocka_unit_test(test_figure8_no_commit_by_counting_older_term_replicas),
        NODE_TEST(test_follower_past_its_deadline_becomes_pre_candidate_keeping_its_term, create_node),
        NODE_TEST(test_granted_pre_vote_from_one_peer_of_three_makes_a_candidate, create_node),
        NODE_TEST(test_candidate_whose_election_times_out_starts_the_next_term, create_node),
        NODE_TEST(test_vote_granted_once_per_term_and_persisted_first, create_follower),
        NODE_TEST(test_node_votes_for_nobody_right_after_start, create_node),
        NODE_TEST(test_vote_denied_to_an_older_term_or_staler_log, create_follower),
        NODE_TEST(test_pre_vote_denied_while_a_leader_is_heard_and_granted_after, create_follower),
        NODE_TEST(test_request_vote_of_newer_term_ignored_while_hearing_from_a_leader, create_follower),
        NODE_TEST(test_heartbeat_is_a_consistency_check, create_follower),
        NODE_TEST(test_matching_entries_are_never_truncated, create_follower),
        NODE_TEST(test_conflict_truncates_and_reports_the_term, create_follower),
        NODE_TEST(test_follower_commit_is_capped_by_the_last_new_entry, create_follower),
        NODE_TEST(test_stale_term_append_is_refused, create_follower),
        NODE_TEST(test_unknown_sender_is_refused, create_follower),
        NODE_TEST(test_deposed_leader_keeps_committed_unwritten_entries, create_node),
        NODE_TEST(test_deposed_leader_keeps_what_its_disk_holds, create_node),
        NODE_TEST(test_leader_deposed_by_append_settles_first, create_node),
        NODE_TEST(test_vote_reply_from_an_older_term_is_not_counted, create_node),
        NODE_TEST(test_append_reply_from_an_older_term_is_ignored, create_node),
        NODE_TEST(test_reply_with_newer_term_makes_candidate_and_leader_step_down, create_node),
        NODE_TEST(test_append_success_sets_match_from_what_was_sent_and_commits_by_figure8,
                  create_follower),
        NODE_TEST(test_failure_reply_moves_next_index_by_fast_backup, create_follower),
        NODE_TEST(test_check_quorum_leader_hearing_from_no_peer_steps_down, create_node),
        NODE_TEST(test_check_quorum_leader_hearing_from_one_of_two_peers_stays, create_node),
        NODE_TEST(test_lease_lasts_until_sent_plus_min_less_a_tenth, create_node),
        NODE_TEST(test_install_snapshot_gathers_chunks_in_order_and_installs, create_follower),
        NODE_TEST(test_install_snapshot_keeps_a_matching_suffix, create_follower),
        NODE_TEST(test_install_snapshot_discards_a_conflicting_log, create_follower),
    };
    return cmocka_run_group_tests_name("unit: Raft rules", tests, NULL, NULL);
}
