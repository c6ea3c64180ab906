/*
 * rules_node.c - a node with no thread and fakes around it (rules_node.h).
 */
#include "tests/support/rules_node.h"
#include "tests/support/eager_snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

uint64_t rules_clock_ms;
struct rules_store rules_store;

static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return rules_clock_ms;
}

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
    rules_store.term = term;
    rules_store.vote = vote;
    rules_store.term_vote_saves++;
    return 0;
}

static int store_append(void *ctx, uint64_t first, const struct raft_entry *e, size_t n)
{
    (void)ctx, (void)e;
    if (first != rules_store.stored_last + 1)
        rules_store.misplaced_appends++;
    rules_store.appends++;
    rules_store.stored_last = first + n - 1;
    rules_clock_ms += rules_store.append_ms;
    return 0;
}

static int store_truncate(void *ctx, uint64_t from)
{
    (void)ctx;
    if (from <= rules_store.snapshot_index)
        return -EINVAL; /* as the file storage: the snapshot's entries stay */
    rules_store.truncates++;
    if (rules_store.stored_last >= from)
        rules_store.stored_last = from - 1;
    return 0;
}

static int store_save_snapshot(void *ctx, uint64_t index, uint64_t term,
                               const uint8_t *data, size_t len)
{
    (void)ctx;
    rules_store.snapshot_saves++;
    rules_store.snapshot_index = index;
    rules_store.snapshot_term = term;
    rules_store.snapshot_len = len;
    memcpy(rules_store.snapshot, data,
           len < sizeof(rules_store.snapshot) ? len : sizeof(rules_store.snapshot));
    if (rules_store.stored_last < index) /* it drops the entries it covers */
        rules_store.stored_last = index;
    return 0;
}

static int fsm_apply(void *ctx, uint64_t index, const struct raft_entry *e)
{
    (void)ctx, (void)index, (void)e;
    return 0;
}

static int fsm_snapshot(void *ctx, uint8_t **data, size_t *len)
{
    (void)ctx;
    *data = NULL;
    *len = 0;
    return 0;
}

static int fsm_capture(void *ctx, void **view)
{
    return eager_snapshot_capture(fsm_snapshot, ctx, view);
}

static int fsm_restore(void *ctx, uint64_t index, uint64_t len,
                       int (*read)(void *src, uint8_t *buf, size_t n), void *src)
{
    (void)ctx, (void)index;
    uint8_t *data;
    int rc = eager_restore_read_all(len, read, src, &data);
    free(data);
    return rc;
}

static int never_call(void *ctx, uint32_t peer, const struct raft_msg *req,
                      struct raft_msg *reply, unsigned timeout_ms)
{
    (void)ctx, (void)peer, (void)req, (void)reply, (void)timeout_ms;
    rules_store.transport_calls++;
    return -ECONNREFUSED;
}

int rules_node_create(struct raft_node **out)
{
    memset(&rules_store, 0, sizeof(rules_store));
    rules_clock_ms = RULES_START_MS;
    struct raft_config cfg;
    raft_config_defaults(&cfg, 0, 3);
    cfg.election_timeout_min_ms = RULES_MIN_MS;
    cfg.election_timeout_max_ms = RULES_MAX_MS;
    cfg.heartbeat_ms = 50;
    cfg.seed = 42;
    cfg.log_level = RAFT_LOG_ERROR;
    cfg.clock_ms = fake_clock;
    struct raft_transport t = {.call = never_call};
    struct raft_storage s = {.load = store_load, .save_term_vote = store_save_term_vote,
                             .append = store_append, .truncate = store_truncate,
                             .save_snapshot = store_save_snapshot};
    struct raft_fsm f = {.apply = fsm_apply, .snapshot_capture = fsm_capture,
                         .snapshot_serialize = eager_snapshot_serialize, .restore = fsm_restore};
    return node_create(out, &cfg, &t, &s, &f);
}

int rules_setup_node(void **state)
{
    struct raft_node *n;
    assert_int_equal(rules_node_create(&n), 0);
    *state = n;
    return 0;
}

int rules_setup_follower(void **state)
{
    rules_setup_node(state);
    rules_clock_ms += RULES_MIN_MS;
    return 0;
}

int rules_teardown_node(void **state)
{
    node_destroy(*state);
    assert_int_equal(rules_store.transport_calls, 0);
    assert_int_equal(rules_store.misplaced_appends, 0);
    return 0;
}

struct raft_msg rules_vote_request(uint32_t from, uint64_t term, uint64_t last_index,
                                   uint64_t last_term, bool pre_vote)
{
    struct raft_msg m = {.type = RAFT_MSG_REQUEST_VOTE, .from = from};
    m.u.rv = (struct raft_request_vote){.term = term, .last_log_index = last_index,
                                        .last_log_term = last_term, .pre_vote = pre_vote};
    return m;
}

static struct raft_entry entries_buf[8];

struct raft_msg rules_append_request(uint64_t term, uint64_t prev, uint64_t prev_term,
                                     uint64_t commit, const uint64_t *terms, uint32_t n)
{
    struct raft_msg m = {.type = RAFT_MSG_APPEND_ENTRIES, .from = 1};
    if (n > sizeof(entries_buf) / sizeof(entries_buf[0]))
        n = sizeof(entries_buf) / sizeof(entries_buf[0]);
    for (uint32_t i = 0; i < n; i++)
        entries_buf[i] = (struct raft_entry){.term = terms[i], .type = RAFT_ENTRY_COMMAND,
                                             .len = 1, .data = (uint8_t *)"y"};
    m.u.ae = (struct raft_append_entries){.term = term, .prev_log_index = prev,
                                          .prev_log_term = prev_term, .leader_commit = commit,
                                          .n_entries = n, .entries = entries_buf};
    return m;
}

struct raft_msg rules_install_request(uint64_t term, uint64_t index, uint64_t index_term,
                                      uint64_t offset, const char *data, uint32_t len,
                                      uint64_t total)
{
    struct raft_msg m = {.type = RAFT_MSG_INSTALL_SNAPSHOT, .from = 1};
    m.u.is = (struct raft_install_snapshot){
        .term = term, .last_index = index, .last_term = index_term, .offset = offset,
        .total = total, .len = len, .data = (uint8_t *)data, .done = offset + len == total};
    return m;
}

struct raft_msg rules_vote_reply(uint64_t term, bool granted, bool pre_vote)
{
    struct raft_msg m = {.type = RAFT_MSG_REQUEST_VOTE_REPLY};
    m.u.rv_reply = (struct raft_request_vote_reply){.term = term, .vote_granted = granted,
                                                    .pre_vote = pre_vote};
    return m;
}

struct raft_msg rules_append_reply(uint64_t term, bool success, uint64_t match,
                                   uint64_t conflict_term, uint64_t conflict_index)
{
    struct raft_msg m = {.type = RAFT_MSG_APPEND_ENTRIES_REPLY};
    m.u.ae_reply = (struct raft_append_entries_reply){
        .term = term, .success = success, .match_index = match,
        .conflict_term = conflict_term, .conflict_index = conflict_index};
    return m;
}

/* ---- driving the node ---- */
/* The election timer's turn, at the present time. */
void rules_tick(struct raft_node *n)
{
    node_lock(n);
    node_tick_locked(n, rules_clock_ms);
    node_unlock(n);
}

/* Moves the clock to the node's election deadline and ticks. */
void rules_tick_at_deadline(struct raft_node *n)
{
    assert_true(n->election_deadline_ms >= rules_clock_ms);
    rules_clock_ms = n->election_deadline_ms;
    rules_tick(n);
}

/* What node n's first lane to `peer` sends now; false if nothing. */
bool rules_try_prepare(struct raft_node *n, uint32_t peer, struct rpc *r)
{
    node_lock(n);
    bool some = node_prepare_request_locked(n, &n->peers[peer].lanes[0], rules_clock_ms, r);
    node_unlock(n);
    return some;
}

struct rpc rules_prepare(struct raft_node *n, uint32_t peer)
{
    struct rpc r;
    assert_true(rules_try_prepare(n, peer, &r));
    return r;
}

/* The reply to `sent` arrives now. */
void rules_answer(struct raft_node *n, struct rpc *sent, struct raft_msg reply)
{
    reply.from = sent->to;
    node_lock(n);
    node_handle_reply_locked(n, &n->peers[sent->to].lanes[0], sent, 0, &reply, rules_clock_ms);
    node_unlock(n);
}

/* Peer `peer` grants the (pre-)vote node n asks it for now. */
void rules_grant_vote(struct raft_node *n, uint32_t peer, bool pre)
{
    struct rpc r = rules_prepare(n, peer);
    assert_int_equal(r.req.type, RAFT_MSG_REQUEST_VOTE);
    assert_int_equal(r.req.u.rv.pre_vote, pre);
    rules_answer(n, &r, rules_vote_reply(pre ? r.req.u.rv.term - 1 : r.req.u.rv.term, true, pre));
}

void rules_expect_node(const struct raft_node *n, enum raft_role role, uint64_t term)
{
    assert_int_equal(n->role, role);
    assert_int_equal(n->current_term, term);
}

void rules_expect_saved(uint64_t term, int32_t vote)
{
    assert_int_equal(rules_store.term, term);
    assert_int_equal(rules_store.vote, vote);
}

/* Elects node n by the rules: its timer expires, peer 1 grants the
 * pre-vote, then the vote. */
void rules_make_leader(struct raft_node *n)
{
    uint64_t term = n->current_term;
    rules_tick_at_deadline(n);
    rules_expect_node(n, RAFT_PRE_CANDIDATE, term);
    rules_grant_vote(n, 1, true);
    rules_expect_node(n, RAFT_CANDIDATE, term + 1);
    rules_grant_vote(n, 1, false);
    rules_expect_node(n, RAFT_LEADER, term + 1);
}

/* What the leader's disk syncer does (syncer.c): writes its entries up to
 * `upto`, then counts them towards commitment. */
void rules_sync_leader_log(struct raft_node *n, uint64_t upto)
{
    node_lock(n);
    uint64_t from = n->durable_index + 1;
    assert_int_equal(n->storage.append(n->storage.ctx, from, log_get(&n->log, from),
                                       (size_t)(upto - n->durable_index)), 0);
    n->durable_index = upto;
    node_advance_commit_locked(n);
    node_unlock(n);
}

void rules_propose(struct raft_node *n, unsigned count)
{
    node_lock(n);
    for (unsigned i = 0; i < count; i++)
        assert_int_equal(node_propose_locked(n, (const uint8_t *)"c", 1), 0);
    node_unlock(n);
}

/* Hands req to the node as the network would, and returns its reply. */
struct raft_msg rules_receive(struct raft_node *n, struct raft_msg req)
{
    struct raft_msg reply;
    assert_int_equal(raft_receive(n, &req, &reply), 0);
    return reply;
}
