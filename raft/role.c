/*
 * role.c - part of the hub: every change of a node's role and term, what is
 * persisted before it, the election timer's deadline, acknowledgements from
 * peers, and the leader's commit index.
 */
#include "raft/node.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- the election timer ---- */

/* §5.2: "election timeouts are chosen randomly from a fixed interval" so
 * that split votes are rare and resolve quickly. */
void node_reset_election_timer_locked(struct raft_node *n)
{
    NODE_ASSERT_LOCKED(n);
    /* Read now, not taken from the rule that asked: the reset may follow a
     * disk write under the lock (a vote, a new term), and a deadline
     * counted from before a slow write could already have passed. */
    uint64_t now = node_now(n);
    unsigned lo = n->cfg.election_timeout_min_ms;
    unsigned span = n->cfg.election_timeout_max_ms - lo + 1;
    uint64_t old = n->election_deadline_ms;
    n->election_deadline_ms = now + lo + node_random(n) % span;
    /* The timer thread sleeps until the old deadline and then looks again,
     * so it needs waking only when the deadline moved earlier: a follower
     * resets its timer on every AppendEntries, and waking the thread each
     * time would cost a context switch per message. */
    if (n->election_deadline_ms < old)
        pthread_cond_signal(&n->timer_cond);
}

/* ---- persistence ---- */

/* The node can no longer keep its promises (Figure 2's durable state, or
 * a state machine equal to the others'): it stops answering, acknowledging
 * and applying, as if it had crashed, and says so once. */
static void fail_stop_locked(struct raft_node *n)
{
    n->disk_failed = true;
    if (n->role != RAFT_FOLLOWER) {
        n->role = RAFT_FOLLOWER;
        n->leader_id = RAFT_NO_NODE;
    }
    node_wake_all_locked(n);
}

void node_disk_failed_locked(struct raft_node *n, const char *what, int rc)
{
    NODE_ASSERT_LOCKED(n);
    if (!n->disk_failed)
        node_log(n, RAFT_LOG_ERROR, "%s failed on disk (%s) -> this node stops "
                 "answering and acknowledging; restart it once the disk is fixed",
                 what, strerror(-rc));
    fail_stop_locked(n);
}

void node_apply_failed_locked(struct raft_node *n, uint64_t index, int rc)
{
    NODE_ASSERT_LOCKED(n);
    if (!n->disk_failed)
        node_log(n, RAFT_LOG_ERROR, "the state machine cannot apply committed entry %llu (%s) "
                 "-> this node stops rather than go on without it; restart it once the "
                 "cause is fixed", (unsigned long long)index, strerror(-rc));
    fail_stop_locked(n);
}

/* Figure 2: currentTerm and votedFor reach stable storage before the node
 * answers anything that depends on them. */
int node_persist_term_vote_locked(struct raft_node *n, uint64_t term, int32_t vote)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(persistence): save term and vote before they count (Figure 2 persistent state) */
    if (n->disk_failed)
        return -EIO;
    int rc = n->storage.save_term_vote(n->storage.ctx, term, vote);
    if (rc) {
        node_disk_failed_locked(n, "saving term and vote", rc);
        return rc;
    }
    /* END LAB */
    n->current_term = term;
    n->voted_for = vote;
    return 0;
}

/* ---- role changes ---- */

/* Figure 2, all servers: "if RPC request or response contains term T >
 * currentTerm: set currentTerm = T, convert to follower". Also used when a
 * candidate learns of the leader of its own term. */
void node_become_follower_locked(struct raft_node *n, uint64_t term, int32_t leader,
                                 const char *why)
{
    NODE_ASSERT_LOCKED(n);
    enum raft_role old = n->role;
    uint64_t old_term = n->current_term;
    if (term > n->current_term &&
        node_persist_term_vote_locked(n, term, RAFT_NO_NODE) != 0)
        return;
    n->role = RAFT_FOLLOWER;
    n->leader_id = leader;
    if (old == RAFT_LEADER) {
        n->stopped_leading_ms = node_now(n);
        n->has_led = true;
    }
    if (old != RAFT_FOLLOWER || term != old_term)
        node_log(n, RAFT_LOG_INFO, "%s -> %s%s", why,
                 old == RAFT_FOLLOWER ? "" : "step down, ",
                 term != old_term ? "adopt the newer term" :
                 leader == RAFT_NO_NODE ? "no leader known" : "follow it");
    if (old != RAFT_FOLLOWER) {
        node_reset_election_timer_locked(n);
        node_wake_all_locked(n);
    }
}

static void ask_every_peer_locked(struct raft_node *n)
{
    n->election++;
    n->votes = 1ull << n->cfg.id;
    for (uint32_t i = 0; i <= RAFT_MAX_ID; i++)
        n->peers[i].vote_needed = false;
    /* Thesis §4.1: the voters of the latest configuration decide. */
    for (uint32_t i = 0; i < n->members.n; i++) {
        const struct raft_member *m = &n->members.members[i];
        n->peers[m->id].vote_needed = m->voter && m->id != n->cfg.id;
    }
    node_wake_peers_locked(n);
}

/* Thesis §9.6: before raising its term, a node asks whether it could win. */
void node_become_pre_candidate_locked(struct raft_node *n)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(election): become pre-candidate and ask every peer (thesis §9.6) */
    n->role = RAFT_PRE_CANDIDATE;
    n->leader_id = RAFT_NO_NODE;
    node_reset_election_timer_locked(n);
    ask_every_peer_locked(n);
    /* END LAB: (void)ask_every_peer_locked; */
}

/* Figure 2, candidates: increment currentTerm, vote for self, reset the
 * election timer, send RequestVote to all other servers. */
int node_become_candidate_locked(struct raft_node *n)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(election): new term, vote for self, reset the timer, ask every peer (Figure 2) */
    int rc = node_persist_term_vote_locked(n, n->current_term + 1, (int32_t)n->cfg.id);
    if (rc)
        return rc;
    n->role = RAFT_CANDIDATE;
    n->leader_id = RAFT_NO_NODE;
    node_reset_election_timer_locked(n);
    ask_every_peer_locked(n);
    return 0;
    /* STUB: (void)ask_every_peer_locked; */
    /* END LAB: return -ENOSYS; */
}

void node_become_leader_locked(struct raft_node *n)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(election): lead: reset nextIndex/matchIndex, append a no-op, heartbeat at once (Figure 2, §8) */
    uint64_t now = node_now(n); /* after the vote's write, as in the timer reset */
    n->role = RAFT_LEADER;
    n->leader_id = (int32_t)n->cfg.id;
    for (uint32_t t = 0; t < n->n_targets; t++) {
        struct peer *p = &n->peers[n->targets[t]];
        /* Figure 2: nextIndex starts just after the leader's last entry,
         * matchIndex at 0. */
        p->next_index = log_last_index(&n->log) + 1;
        p->match_index = 0;
        p->heartbeat_due_ms = now; /* announce leadership at once */
        p->retry_at_ms = 0;
        p->last_ack_ms = now;      /* check-quorum counts from here */
        p->lease_sent_ms = 0;      /* no lease until a majority answers */
        p->snapshot_offset = 0;
        p->replicating = false; /* one request at a time until one succeeds */
        p->silent_logged = p->behind_logged = false;
    }
    /* §8: a new leader commits a no-op entry of its term at once, so that
     * entries of earlier terms commit and reads know the commit index. */
    if (log_append(&n->log, n->current_term, RAFT_ENTRY_NOOP, NULL, 0) != 0) {
        node_become_follower_locked(n, n->current_term, RAFT_NO_NODE, "out of memory");
        return;
    }
    n->leader_first_index = log_last_index(&n->log);
    n->election_deadline_ms = now + n->cfg.election_timeout_max_ms;
    pthread_cond_signal(&n->syncer_cond);
    node_wake_peers_locked(n);
    pthread_cond_broadcast(&n->changed_cond);
    /* END LAB */
}

void node_follow_leader_locked(struct raft_node *n, uint32_t leader, uint64_t term,
                               uint64_t now)
{
    NODE_ASSERT_LOCKED(n);
    /* §5.2: a candidate that hears from the leader of its term steps down. */
    if (n->role != RAFT_FOLLOWER || n->leader_id != (int32_t)leader) {
        char why[64];
        snprintf(why, sizeof(why), "n%u leads T%llu", leader, (unsigned long long)term);
        if (n->role == RAFT_FOLLOWER)
            node_log(n, RAFT_LOG_INFO, "%s -> follow it", why);
        node_become_follower_locked(n, term, (int32_t)leader, why);
    }
    n->leader_id = (int32_t)leader;
    n->last_leader_contact_ms = now;
    node_reset_election_timer_locked(n);
    /* Only now: this very message may have deposed this node as leader. */
    node_settle_log_locked(n);
}

bool node_is_stale_term_locked(struct raft_node *n, uint64_t term, uint32_t from)
{
    NODE_ASSERT_LOCKED(n);
    if (term < n->current_term)
        return true;
    if (term > n->current_term) {
        char why[96];
        snprintf(why, sizeof(why), "n%u is at T%llu (mine T%llu)", from,
                 (unsigned long long)term, (unsigned long long)n->current_term);
        node_become_follower_locked(n, term, RAFT_NO_NODE, why);
    }
    return n->disk_failed;
}

/* Before a follower reads or changes its log (after any step-down the
 * message caused): entries appended as leader but not yet written are
 * settled, so that the log in memory matches the log on disk (answering
 * "match" for entries that exist only in memory would break Figure 2's
 * rule of persisting before responding). The caller made sure the syncer
 * is not writing (raft_receive).
 * - Committed ones are written now, as a follower writes what it receives:
 *   the followers can commit an entry before the leader's own copy is on
 *   its disk (thesis §10.2.1), and it may even have been applied here, so
 *   it must stay in the log (commitIndex never passes the log's end).
 * - The rest were never acknowledged to anyone (the leader counts its own
 *   copy only once durable), so they are dropped, as a crash would. */
void node_settle_log_locked(struct raft_node *n)
{
    NODE_ASSERT_LOCKED(n);
    uint64_t last = log_last_index(&n->log);
    if (n->role == RAFT_LEADER || n->durable_index >= last || n->disk_failed)
        return;
    uint64_t keep = n->commit_index < last ? n->commit_index : last;
    if (keep < n->durable_index)
        keep = n->durable_index; /* what is on disk stays in memory too */
    if (keep > n->durable_index) {
        uint64_t from = n->durable_index + 1;
        int rc = n->storage.append(n->storage.ctx, from, log_get(&n->log, from),
                                   (size_t)(keep - n->durable_index));
        if (rc) {
            node_disk_failed_locked(n, "appending to the log", rc);
            return;
        }
        n->durable_index = keep;
        /* A snapshot put off until applied entries were stored can be
         * taken now. */
        if (from <= n->last_applied) {
            node_wake_applier_locked(n);
            pthread_cond_broadcast(&n->changed_cond);
        }
    }
    if (keep < last) {
        node_log(n, RAFT_LOG_INFO, "dropping unwritten entries %llu..%llu appended as leader",
                 (unsigned long long)keep + 1, (unsigned long long)last);
        log_truncate(&n->log, keep + 1);
    }
}

/* ---- what peers acknowledge ---- */

/* A reply in the current term proves this node was still leader when the
 * peer answered: check-quorum, read rounds and read leases count it. */
void node_note_ack_locked(struct raft_node *n, struct peer *p, const struct rpc *sent,
                          uint64_t now)
{
    NODE_ASSERT_LOCKED(n);
    p->failures = 0;
    node_log_peer_answered_locked(n, p, now);
    p->last_ack_ms = now;
    if (sent->sent_ms > p->lease_sent_ms)
        p->lease_sent_ms = sent->sent_ms;
    node_note_read_ack_locked(n, p, sent->round);
}

/* A peer answered a request sent at read round `round` in the current term.
 * Wakes readers only when a majority has confirmed a newer round, so that
 * one heartbeat round costs one wake-up per waiting reader. */
void node_note_read_ack_locked(struct raft_node *n, struct peer *p, uint64_t round)
{
    if (round <= p->acked_round)
        return;
    p->acked_round = round;
    uint64_t acked[RAFT_MAX_ID + 1];
    for (uint32_t i = 0; i < n->members.n; i++) {
        uint32_t id = n->members.members[i].id;
        acked[id] = id == n->cfg.id ? n->read_round : n->peers[id].acked_round;
    }
    uint64_t confirmed = node_quorum_value(n, acked);
    if (confirmed > n->confirmed_round) {
        n->confirmed_round = confirmed;
        clients_wake_locked(n, false);
    }
}

/* "commit 11 -> 12: stored on n0 n1 (majority of 3)", naming the nodes
 * whose stored log reaches the new commit index, and this term's no-op
 * (§8) when it is among the entries committed. */
static void log_commit_locked(struct raft_node *n, const uint64_t *match, uint64_t next)
{
    char who[96] = "";
    size_t off = 0;
    for (uint32_t i = 0; i < n->members.n && off < sizeof(who); i++) {
        const struct raft_member *m = &n->members.members[i];
        if (m->voter && match[m->id] >= next)
            off += (size_t)snprintf(who + off, sizeof(who) - off, " n%u", m->id);
    }
    const char *noop = "";
    if (n->commit_index < n->leader_first_index && next >= n->leader_first_index)
        noop = n->commit_index + 1 == n->leader_first_index
                   ? " this term's no-op (§8),"
                   : " earlier terms' entries with this term's no-op (§8, Figure 8),";
    node_log(n, RAFT_LOG_INFO, "commit %llu -> %llu:%s stored on%s (majority of %u)",
             (unsigned long long)n->commit_index, (unsigned long long)next, noop, who,
             membership_voters(&n->members));
}

/* §4.2.2: a leader that is not in the committed configuration steps
 * down; until then it managed the cluster without counting itself. */
static void step_down_if_removed_locked(struct raft_node *n)
{
    /* LAB(membership): a leader outside the committed configuration steps down (§4.2.2) */
    if (n->role == RAFT_LEADER && n->members_index <= n->commit_index && !node_is_voter(n)) {
        char why[96];
        snprintf(why, sizeof(why), "the configuration without this node committed (entry %llu)",
                 (unsigned long long)n->members_index);
        node_become_follower_locked(n, n->current_term, RAFT_NO_NODE, why);
    }
    /* END LAB: (void)n; */
}

/* Figure 2, leaders: advance commitIndex to the highest index stored on a
 * majority, under the rule of Figure 8 (commit.c). */
void node_advance_commit_locked(struct raft_node *n)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(agreement): commit what a majority stores, under Figure 8's rule (Figure 2 leaders, §5.3, §5.4.2) */
    uint64_t match[RAFT_MAX_ID + 1];
    for (uint32_t i = 0; i < n->members.n; i++) {
        uint32_t id = n->members.members[i].id;
        match[id] = n->peers[id].match_index;
    }
    /* Thesis §10.2.1: the leader's own copy counts only once it is durable;
     * §4.2.2: and only while it is a voter (a leader being removed does
     * not count itself). */
    match[n->cfg.id] = n->durable_index;
    uint64_t q = node_quorum_value(n, match);
    uint64_t next = commit_next_index(n->commit_index, q, log_term_at(&n->log, q),
                                      n->current_term);
    if (next == n->commit_index)
        return;
    if (node_logs(n, RAFT_LOG_INFO) &&
        node_log_admit_locked(n, LOG_COMMIT, node_now(n), n->commit_index, next))
        log_commit_locked(n, match, next);
    bool noop_committed = n->commit_index < n->leader_first_index &&
                          next >= n->leader_first_index;
    n->commit_index = next;
    node_wake_applier_locked(n);
    if (noop_committed)
        clients_wake_locked(n, true); /* reads wait for the no-op */
    /* STUB: (void)log_commit_locked; */
    /* END LAB */
    step_down_if_removed_locked(n);
}
