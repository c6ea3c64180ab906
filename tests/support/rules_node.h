/*
 * rules_node.h - one Raft node built with node_create and no thread, for
 * tests that drive its rules by hand (tests/unit_rules.c): in-memory
 * storage that records what it was asked to write, a state machine that
 * does nothing (no applier runs), a transport that must never be called
 * (the tests hand replies to the node themselves), and a clock that moves
 * only when a test moves it. Also builders for the messages of Figure 2
 * and Figure 13.
 */
#ifndef TESTS_SUPPORT_RULES_NODE_H
#define TESTS_SUPPORT_RULES_NODE_H

#include "raft/node.h"

#define RULES_MIN_MS 150u /* election_timeout_min_ms */
#define RULES_MAX_MS 300u /* election_timeout_max_ms */
#define RULES_START_MS 1000u

/* The node's clock, in ms. */
extern uint64_t rules_clock_ms;

/* What the node asked storage to do. */
struct rules_store {
    uint64_t term;
    int32_t vote;
    unsigned term_vote_saves, appends, truncates, snapshot_saves;
    uint64_t stored_last;       /* index of the last entry on "disk" */
    unsigned misplaced_appends; /* storage contract: first == stored last + 1 */
    uint64_t snapshot_index, snapshot_term;
    uint8_t snapshot[16];       /* the first bytes of the latest snapshot */
    size_t snapshot_len;
    unsigned transport_calls;   /* must stay 0 */
    uint64_t append_ms;         /* how far an append moves the clock */
};
extern struct rules_store rules_store;

/* Node 0 of a 3-node cluster (pre-vote, check-quorum and read leases on,
 * fixed seed), with empty storage, created at RULES_START_MS. Returns 0 or
 * the error of node_create. */
int rules_node_create(struct raft_node **out);

/* cmocka fixtures: *state is such a node, just started (rules_setup_node)
 * or once the minimum election timeout has passed since its start, so that
 * it no longer refuses votes for the quiet time after a start
 * (rules_setup_follower). The teardown frees it and fails the test if the
 * transport was called or an append did not start where storage ended. */
int rules_setup_node(void **state);
int rules_setup_follower(void **state);
int rules_teardown_node(void **state);

/* Messages from n1 (from for vote requests), as the network delivers them. */
struct raft_msg rules_vote_request(uint32_t from, uint64_t term, uint64_t last_index,
                                   uint64_t last_term, bool pre_vote);
/* n_entries entries of the given terms, one byte each. */
struct raft_msg rules_append_request(uint64_t term, uint64_t prev, uint64_t prev_term,
                                     uint64_t commit, const uint64_t *terms, uint32_t n);
/* A chunk of `len` bytes of `data` at `offset` (done when it is the last). */
struct raft_msg rules_install_request(uint64_t term, uint64_t index, uint64_t index_term,
                                      uint64_t offset, const char *data, uint32_t len,
                                      uint64_t total);
struct raft_msg rules_vote_reply(uint64_t term, bool granted, bool pre_vote);
struct raft_msg rules_append_reply(uint64_t term, bool success, uint64_t match,
                                   uint64_t conflict_term, uint64_t conflict_index);

/* ---- driving the node, one rule step at a time ---- */

/* The election timer's turn at the present time; rules_tick_at_deadline
 * first moves the clock to the node's election deadline. */
void rules_tick(struct raft_node *n);
void rules_tick_at_deadline(struct raft_node *n);
/* What node n's first lane to `peer` sends now: false if nothing;
 * rules_prepare fails the test then. */
bool rules_try_prepare(struct raft_node *n, uint32_t peer, struct rpc *r);
struct rpc rules_prepare(struct raft_node *n, uint32_t peer);
/* The reply to `sent` arrives now. */
void rules_answer(struct raft_node *n, struct rpc *sent, struct raft_msg reply);
/* Peer `peer` grants the (pre-)vote node n asks it for now. */
void rules_grant_vote(struct raft_node *n, uint32_t peer, bool pre);
void rules_expect_node(const struct raft_node *n, enum raft_role role, uint64_t term);
void rules_expect_saved(uint64_t term, int32_t vote);
/* Elects node n: its timer expires, peer 1 grants the pre-vote, the vote. */
void rules_make_leader(struct raft_node *n);
/* What the leader's disk syncer does: writes its entries up to `upto`,
 * then counts them towards commitment. */
void rules_sync_leader_log(struct raft_node *n, uint64_t upto);
void rules_propose(struct raft_node *n, unsigned count);
/* Hands req to the node as the network would and returns its reply. */
struct raft_msg rules_receive(struct raft_node *n, struct raft_msg req);

#endif
