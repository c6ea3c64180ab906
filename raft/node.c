/*
 * node.c - the hub: a node's lock and clock, and the entry points that
 * hand work to the rules: the timer's tick, the request a peer lane sends
 * and its reply, and incoming RPCs. Role changes live beside it, in
 * role.c; creating, starting and stopping a node in lifecycle.c.
 */
#include "raft/node.h"
#include "raft/trace.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void raft_persisted_free(struct raft_persisted *p)
{
    for (size_t i = 0; i < p->n_entries; i++)
        free(p->entries[i].data);
    free(p->entries);
    free(p->snapshot);
    memset(p, 0, sizeof(*p));
}

/* ---- time, randomness and the lock ---- */

uint64_t node_now(const struct raft_node *n)
{
    return n->cfg.clock_ms ? n->cfg.clock_ms(n->cfg.clock_ctx) : raft_now_ms();
}

uint64_t node_random(struct raft_node *n)
{
    /* xorshift64*: small, fast, and seeded per node so runs can be replayed. */
    n->rng ^= n->rng >> 12;
    n->rng ^= n->rng << 25;
    n->rng ^= n->rng >> 27;
    return n->rng * 0x2545f4914f6cdd1dull;
}

#ifdef RAFT_CHECK_INVARIANTS
void node_assert_locked(const struct raft_node *n)
{
    if (!n->owned || !pthread_equal(n->owner, pthread_self())) {
        fprintf(stderr, "n%u: a _locked function was called without the node's lock\n",
                n->cfg.id);
        abort();
    }
}

static void note_owner(struct raft_node *n, bool owned)
{
    n->owner = pthread_self();
    n->owned = owned;
}

/* LogCabin-style invariant checker, run at every unlock in checked builds. */
static void check_invariants_locked(struct raft_node *n)
{
    const struct raft_log *l = &n->log;
    uint64_t last = log_last_index(l);
    int bad = 0;
    if (n->commit_index > last && n->to_restore == NULL)
        bad = 1;
    if (n->last_applied > n->commit_index)
        bad = 2;
    if (n->role == RAFT_LEADER && n->voted_for != (int32_t)n->cfg.id)
        bad = 3;
    if (log_last_term(l) > n->current_term)
        bad = 4;
    /* Terms never decrease along the log; checking the tail keeps it cheap. */
    for (uint64_t i = last; i > l->base_index + 1 && i + 16 > last; i--)
        if (log_term_at(l, i - 1) > log_term_at(l, i))
            bad = 5;
    if (bad) {
        fprintf(stderr, "raft invariant %d violated on n%u: term %llu commit "
                "%llu applied %llu last %llu\n", bad, n->cfg.id,
                (unsigned long long)n->current_term,
                (unsigned long long)n->commit_index,
                (unsigned long long)n->last_applied, (unsigned long long)last);
        abort();
    }
}
#else
static void note_owner(struct raft_node *n, bool owned)
{
    (void)n;
    (void)owned;
}

static void check_invariants_locked(struct raft_node *n)
{
    (void)n;
}
#endif

void node_lock(struct raft_node *n)
{
    pthread_mutex_lock(&n->mu);
    note_owner(n, true);
}

void node_unlock(struct raft_node *n)
{
    trace_observe_locked(n);
    check_invariants_locked(n);
    note_owner(n, false);
    pthread_mutex_unlock(&n->mu);
}

struct timespec node_deadline_timespec(const struct raft_node *n, uint64_t deadline_ms)
{
    /* Condition variables wait on CLOCK_MONOTONIC; the node's clock may be
     * another one, so the deadline is carried over as a distance. */
    uint64_t now = node_now(n);
    uint64_t wait_ms = deadline_ms > now ? deadline_ms - now : 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(wait_ms / 1000);
    ts.tv_nsec += (long)(wait_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

void node_wait_until(struct raft_node *n, pthread_cond_t *cond, uint64_t deadline_ms)
{
    NODE_ASSERT_LOCKED(n);
    trace_observe_locked(n);
    note_owner(n, false);
    if (deadline_ms == 0) {
        pthread_cond_wait(cond, &n->mu);
    } else if (node_now(n) < deadline_ms) {
        struct timespec ts = node_deadline_timespec(n, deadline_ms);
        pthread_cond_timedwait(cond, &n->mu, &ts);
    }
    note_owner(n, true);
}

/* ---- waking the threads ---- */

void node_wake_peers_locked(struct raft_node *n)
{
    pthread_cond_broadcast(&n->peers_cond);
}

void node_wake_applier_locked(struct raft_node *n)
{
    pthread_cond_signal(&n->applier_cond);
}

void node_wake_all_locked(struct raft_node *n)
{
    pthread_cond_broadcast(&n->timer_cond);
    pthread_cond_broadcast(&n->peers_cond);
    pthread_cond_broadcast(&n->applier_cond);
    pthread_cond_broadcast(&n->syncer_cond);
    pthread_cond_broadcast(&n->changed_cond);
    pthread_cond_broadcast(&n->snapshotter_cond);
    clients_wake_locked(n, true);
}

bool node_some_peer_idle_locked(const struct raft_node *n)
{
    for (uint32_t t = 0; t < n->n_targets; t++) {
        const struct peer *p = &n->peers[n->targets[t]];
        if (p->in_flight == 0 && p->next_index > log_last_index(&n->log))
            return true;
    }
    return false;
}

bool node_some_peer_sent_round_locked(const struct raft_node *n)
{
    for (uint32_t t = 0; t < n->n_targets; t++)
        if (n->peers[n->targets[t]].sent_round >= n->read_round)
            return true;
    return false;
}

/* Thesis §3.10: a leader transferring its leadership (transfer.c) takes
 * no proposals and serves no lease reads until the transfer ends. */
bool node_transfer_in_progress_locked(const struct raft_node *n)
{
    return n->role == RAFT_LEADER && n->transfer_target != RAFT_NO_NODE &&
           n->transfer_term == n->current_term;
}

void node_start_lanes_locked(struct raft_node *n, struct peer *p)
{
    if (!n->threads_started || n->stopping)
        return;
    for (uint32_t k = 0; k < n->cfg.pipeline_depth; k++) {
        struct lane *l = &p->lanes[k];
        if (!l->started && pthread_create(&l->thread, NULL, peer_lane_main, l) == 0)
            l->started = true;
    }
}

/* ---- what the threads call: the rules, dispatched ---- */

/* The election timer's deadline passed (election.c decides what follows). */
void node_tick_locked(struct raft_node *n, uint64_t now)
{
    NODE_ASSERT_LOCKED(n);
    if (now < n->election_deadline_ms)
        return;
    /* Thesis §4.2.1, §4.2.2: a learner, a removed server and one not yet
     * added never campaign (a leader being removed still leads). */
    if (n->role != RAFT_LEADER && !node_is_voter(n)) {
        n->election_deadline_ms = now + n->cfg.election_timeout_max_ms;
        return;
    }
    election_tick_locked(n, now);
    transfer_tick_locked(n, now); /* abandoned after an election timeout */
}

/* Builds the request lane l sends next: a vote request while campaigning,
 * InstallSnapshot to a follower that needs compacted entries, otherwise
 * AppendEntries. Returns false when there is nothing to send. */
bool node_prepare_request_locked(struct raft_node *n, struct lane *l, uint64_t now,
                                 struct rpc *out)
{
    NODE_ASSERT_LOCKED(n);
    struct peer *p = l->peer;
    node_log_flush_locked(n, now); /* a leader sends every heartbeat interval */
    memset(out, 0, sizeof(*out));
    out->to = p->id;
    out->term = n->current_term;
    out->role = n->role;
    out->election = n->election;
    out->sent_ms = now;
    out->req.from = n->cfg.id;
    if (n->role == RAFT_PRE_CANDIDATE || n->role == RAFT_CANDIDATE) {
        if (!p->vote_needed)
            return false;
        election_prepare_vote_locked(n, p, out);
    } else if (n->role != RAFT_LEADER) {
        return false;
    } else if (p->next_index <= n->log.base_index) {
        if (!n->snapshot) { /* cannot happen: the log base comes from a snapshot */
            p->next_index = n->log.base_index + 1;
            return false;
        }
        snapshot_prepare_install_locked(n, p, now, out);
    } else if (transfer_timeout_now_due_locked(n, p, now)) {
        transfer_prepare_timeout_now_locked(n, p, now, out);
    } else {
        replication_prepare_append_locked(n, l, now, out);
    }
    return true;
}

static uint64_t reply_term(const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_REQUEST_VOTE_REPLY: return m->u.rv_reply.term;
    case RAFT_MSG_APPEND_ENTRIES_REPLY: return m->u.ae_reply.term;
    case RAFT_MSG_INSTALL_SNAPSHOT_REPLY: return m->u.is_reply.term;
    case RAFT_MSG_TIMEOUT_NOW_REPLY: return m->u.tn_reply.term;
    }
    return 0;
}

/* The one check every reply passes before its handler sees it. The world
 * may have moved while the request was out: a reply of a newer term makes
 * this node a follower (Figure 2, all servers), and a reply to a request
 * sent in another term or role is dropped. A granted pre-vote may carry a
 * newer term (the voter may be ahead without a leader): it is counted, not
 * obeyed (thesis §9.6). */
static bool accepts_sender_locked(const struct raft_node *n, uint32_t from);

static bool reply_is_current_locked(struct raft_node *n, const struct rpc *sent, int rc,
                                    const struct raft_msg *reply)
{
    bool granted_pre_vote = rc == 0 && reply->type == RAFT_MSG_REQUEST_VOTE_REPLY &&
                            reply->u.rv_reply.pre_vote && reply->u.rv_reply.vote_granted;
    /* A removed server is still sent the entry that removes it (§4.2.2);
     * if it campaigned meanwhile, the newer term of its reply is no reason
     * to step down (§4.2.3). */
    if (rc == 0 && reply_term(reply) > n->current_term && !accepts_sender_locked(n, sent->to))
        return false;
    if (rc == 0 && reply_term(reply) > n->current_term && !granted_pre_vote) {
        node_is_stale_term_locked(n, reply_term(reply), sent->to);
        return false;
    }
    /* Two pre-vote rounds can share a term and a role: a grant from an
     * earlier round (late, after the node heard a leader again) is not one
     * for this round. */
    if (sent->req.type == RAFT_MSG_REQUEST_VOTE && sent->election != n->election)
        return false;
    return n->current_term == sent->term && n->role == sent->role;
}

void node_handle_reply_locked(struct raft_node *n, struct lane *l, struct rpc *sent,
                              int rc, const struct raft_msg *reply, uint64_t now)
{
    NODE_ASSERT_LOCKED(n);
    struct peer *p = l->peer;
    uint8_t want = (uint8_t)(sent->req.type + 1); /* each reply type follows its request's */
    if (rc == 0 && reply->type != want)
        rc = -EPROTO;
    bool current = reply_is_current_locked(n, sent, rc, reply);
    if (current && sent->req.type == RAFT_MSG_REQUEST_VOTE)
        election_handle_vote_reply_locked(n, p, sent, rc, reply, now);
    else if (current && sent->req.type == RAFT_MSG_APPEND_ENTRIES)
        replication_handle_append_reply_locked(n, p, sent, rc, reply, now);
    else if (current && sent->req.type == RAFT_MSG_INSTALL_SNAPSHOT)
        snapshot_handle_install_reply_locked(n, p, sent, rc, reply, now);
    else if (current && sent->req.type == RAFT_MSG_TIMEOUT_NOW)
        transfer_handle_timeout_now_reply_locked(n, p, rc);
    if (sent->snapshot)
        snapshot_release(sent->snapshot);
    sent->snapshot = NULL;
    snapshot_leave_in_storage_locked(n);
}

/* Thesis §4.1: a server takes requests from servers outside its
 * configuration (a leader adding it, a candidate it does not know of yet),
 * but never from an id that was removed: ids are not reused, so such a
 * message is stale or from a server that must not disrupt (§4.2.3). */
static bool accepts_sender_locked(const struct raft_node *n, uint32_t from)
{
    return from <= RAFT_MAX_ID && from != n->cfg.id && !(n->members.removed >> from & 1);
}

static int dispatch_locked(struct raft_node *n, const struct raft_msg *req, uint64_t now,
                           struct raft_msg *reply);

int node_receive_locked(struct raft_node *n, const struct raft_msg *req, uint64_t now,
                        struct raft_msg *reply)
{
    int rc = dispatch_locked(n, req, now, reply);
    reconfigure_sync_locked(n); /* the message may have changed the log's configurations */
    return rc;
}

static int dispatch_locked(struct raft_node *n, const struct raft_msg *req, uint64_t now,
                           struct raft_msg *reply)
{
    NODE_ASSERT_LOCKED(n);
    if (!accepts_sender_locked(n, req->from))
        return -EINVAL;
    memset(reply, 0, sizeof(*reply));
    reply->from = n->cfg.id;
    if (n->stopping || n->disk_failed)
        return -ESHUTDOWN;
    node_log_flush_locked(n, now); /* a follower hears every heartbeat interval */
    switch (req->type) {
    case RAFT_MSG_REQUEST_VOTE:
        /* A candidate outside this node's configuration gets no vote and
         * no say over its term: a stray or stale server could otherwise
         * raise the term of a cluster it is not part of. (Thesis §4.1
         * would grant it, for a server added by an entry this node lacks;
         * that server is voted in by the members that have the entry.) */
        if (n->members.n > 0 && !raft_membership_find(&n->members, req->from))
            return -EINVAL;
        reply->type = RAFT_MSG_REQUEST_VOTE_REPLY;
        return election_recv_request_vote_locked(n, req, now, reply);
    case RAFT_MSG_APPEND_ENTRIES:
        reply->type = RAFT_MSG_APPEND_ENTRIES_REPLY;
        return replication_recv_append_entries_locked(n, req, now, reply);
    case RAFT_MSG_INSTALL_SNAPSHOT:
        reply->type = RAFT_MSG_INSTALL_SNAPSHOT_REPLY;
        return snapshot_recv_install_locked(n, req, now, reply);
    case RAFT_MSG_TIMEOUT_NOW:
        return transfer_recv_timeout_now_locked(n, req, now, reply);
    }
    return -EINVAL;
}

/* ---- entry points of raft.h ---- */

/* The rules never wait. A message that may change the stored log waits
 * here until no thread writes it outside the lock: the leader's syncer
 * (a deposed leader settles its log first), and for InstallSnapshot a
 * snapshot being taken. Holding the lock from then on, neither starts. A
 * newer term deposes this node first (Figure 2, all servers), so that it
 * stops taking proposals that would keep its syncer writing; a message of
 * an older term is answered without waiting (it changes nothing). */
static void wait_for_stored_log_locked(struct raft_node *n, const struct raft_msg *req)
{
    uint64_t term = req->type == RAFT_MSG_APPEND_ENTRIES ? req->u.ae.term : req->u.is.term;
    if (!accepts_sender_locked(n, req->from) || n->stopping ||
        n->disk_failed || term < n->current_term)
        return;
    if (term > n->current_term)
        node_is_stale_term_locked(n, term, req->from);
    while (n->syncing || (req->type == RAFT_MSG_INSTALL_SNAPSHOT && n->snapshotting))
        node_wait_until(n, &n->changed_cond, 0);
}

int raft_receive(struct raft_node *n, const struct raft_msg *req, struct raft_msg *reply)
{
    node_lock(n);
    if (req->type == RAFT_MSG_APPEND_ENTRIES || req->type == RAFT_MSG_INSTALL_SNAPSHOT)
        wait_for_stored_log_locked(n, req);
    trace_recv_locked(n, req);
    int rc = node_receive_locked(n, req, node_now(n), reply);
    reply->id = ++n->msg_seq;
    if (rc == 0)
        trace_send_locked(n, reply, req->from);
    node_unlock(n);
    return rc;
}

int node_propose_locked(struct raft_node *n, const uint8_t *data, uint32_t len)
{
    NODE_ASSERT_LOCKED(n);
    if (n->disk_failed || n->stopping)
        return -EPERM;
    if (n->role != RAFT_LEADER) {
        node_log_proposal_locked(n, data, len, false);
        return -EPERM;
    }
    /* Thesis §3.10: during a transfer the log must stop growing, or the
     * target might never catch up with it. */
    if (node_transfer_in_progress_locked(n))
        return -EBUSY;
    /* Leader Append-Only: the leader only ever appends to its log. The
     * syncer makes it durable; replicators send it at once. */
    bool some_idle = node_some_peer_idle_locked(n);
    int rc = log_append(&n->log, n->current_term, RAFT_ENTRY_COMMAND, data, len);
    if (rc)
        return rc;
    node_log_proposal_locked(n, data, len, true);
    pthread_cond_signal(&n->syncer_cond);
    /* A replicator already woken for earlier entries, or waiting for a
     * reply, sends this one with them: one wake-up per batch, not per entry. */
    if (some_idle)
        node_wake_peers_locked(n);
    return 0;
}

int raft_propose(struct raft_node *n, const uint8_t *data, uint32_t len,
                 uint64_t *index, uint64_t *term, int32_t *leader_hint)
{
    node_lock(n);
    int rc = node_propose_locked(n, data, len);
    *leader_hint = rc == -EBUSY ? n->transfer_target : n->leader_id;
    if (rc == 0) {
        *index = log_last_index(&n->log);
        *term = n->current_term;
    }
    node_unlock(n);
    return rc;
}

void raft_get_status(struct raft_node *n, struct raft_status *st)
{
    node_lock(n);
    st->id = n->cfg.id;
    st->role = n->role;
    st->term = n->current_term;
    st->leader = n->leader_id;
    st->voted_for = n->voted_for;
    st->commit = n->commit_index;
    st->applied = n->last_applied;
    st->last_index = log_last_index(&n->log);
    st->snapshot_index = n->log.base_index;
    node_unlock(n);
}
