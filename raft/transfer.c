/*
 * transfer.c - leadership transfer (thesis §3.10): the leader hands its
 * role to another voter, for instance before its machine is maintained.
 *
 * The steps, on the leader:
 *   1. stop taking proposals, so that the log stops growing and the target
 *      can catch up with it (clients are told to retry at the target);
 *   2. bring the target up to date: the replication it already does, until
 *      the target's matchIndex reaches the leader's last index;
 *   3. send it TimeoutNow, again at heartbeat pace until this node learns
 *      of a newer term (a lost TimeoutNow must not stall the transfer);
 *   4. give up an election timeout after step 1: take proposals again.
 * The leader holds no read lease from step 1 on. Voters grant the target's
 * vote although they heard from this leader recently (the flag of its
 * RequestVote), so a lease counting on them would no longer be safe.
 *
 * On the target: a TimeoutNow from the leader of its current term makes it
 * campaign at once, skipping pre-vote (thesis §9.6): the leader asked, so
 * there is no disruption to guard against.
 */
#include "raft/node.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>


/* The voter whose log matches the leader's furthest: it needs the fewest
 * entries before it can take over (ties: the first listed). */
static int32_t most_up_to_date_locked(const struct raft_node *n)
{
    int32_t best = RAFT_NO_NODE;
    for (uint32_t i = 0; i < n->members.n; i++) {
        const struct raft_member *m = &n->members.members[i];
        if (m->voter && m->id != n->cfg.id &&
            (best == RAFT_NO_NODE || n->peers[m->id].match_index > n->peers[best].match_index))
            best = (int32_t)m->id;
    }
    return best;
}

int transfer_start_locked(struct raft_node *n, int32_t target, uint64_t now,
                          char *why, size_t why_cap)
{
    NODE_ASSERT_LOCKED(n);
    if (n->role != RAFT_LEADER)
        return -EPERM;
    if (target == RAFT_NO_NODE)
        target = most_up_to_date_locked(n);
    if (target == (int32_t)n->cfg.id) {
        node_say_why(why, why_cap, "n%d already leads; there is nothing to transfer.", target);
        return -EINVAL;
    }
    const struct raft_member *m =
        target >= 0 && target <= RAFT_MAX_ID ? raft_membership_find(&n->members, (uint32_t)target)
                                             : NULL;
    if (!m || !m->voter) {
        char members[160];
        membership_describe(&n->members, members, sizeof(members));
        if (target == RAFT_NO_NODE)
            node_say_why(why, why_cap, "There is no other voter to transfer leadership to.");
        else if (m)
            node_say_why(why, why_cap, "n%d is a learner, which cannot lead: promote it first.", target);
        else
            node_say_why(why, why_cap, "n%d is not a member of this cluster (its members are %s).",
                         target, members);
        return -EINVAL;
    }
    if (n->adding != RAFT_NO_NODE || n->members_index > n->commit_index) {
        node_say_why(why, why_cap, "A configuration change is under way: transfer once it is over.");
        return -EBUSY;
    }
    if (node_transfer_in_progress_locked(n)) {
        if (n->transfer_target == target)
            return 0; /* the same request again: wait for the one under way */
        node_say_why(why, why_cap, "A transfer to n%d is already under way.", n->transfer_target);
        return -EBUSY;
    }
    const struct peer *p = &n->peers[target];
    n->transfer_target = target;
    n->transfer_term = n->current_term;
    n->transfer_deadline_ms = now + n->cfg.election_timeout_max_ms;
    n->transfer_next_send_ms = 0;
    node_log(n, RAFT_LOG_INFO, "transfer to n%d requested -> stop taking puts, bring n%d up to "
             "date (match %llu of %llu), no lease reads (§3.10)", target, target,
             (unsigned long long)p->match_index, (unsigned long long)log_last_index(&n->log));
    /* The timer thread sleeps until the election deadline: make it wake in
     * time to abandon the transfer. */
    if (n->transfer_deadline_ms < n->election_deadline_ms) {
        n->election_deadline_ms = n->transfer_deadline_ms;
        pthread_cond_signal(&n->timer_cond);
    }
    node_wake_peers_locked(n); /* a target already caught up gets TimeoutNow now */
    return 0;
}

void transfer_tick_locked(struct raft_node *n, uint64_t now)
{
    NODE_ASSERT_LOCKED(n);
    if (!node_transfer_in_progress_locked(n))
        return;
    if (now < n->transfer_deadline_ms) {
        if (n->transfer_deadline_ms < n->election_deadline_ms)
            n->election_deadline_ms = n->transfer_deadline_ms;
        return;
    }
    const struct peer *p = &n->peers[n->transfer_target];
    node_log(n, RAFT_LOG_INFO, "transfer to n%d abandoned: it did not take over within %u ms "
             "(match %llu of %llu) -> take puts again", n->transfer_target,
             n->cfg.election_timeout_max_ms, (unsigned long long)p->match_index,
             (unsigned long long)log_last_index(&n->log));
    n->transfer_target = RAFT_NO_NODE;
    /* A lease counts acknowledgements of requests sent since some time t;
     * voters may have granted the target's flagged vote after answering
     * requests sent before now. Only requests sent from now on count. */
    for (uint32_t i = 0; i <= RAFT_MAX_ID; i++)
        n->peers[i].lease_sent_ms = 0;
    pthread_cond_broadcast(&n->changed_cond); /* raft_transfer sees it over */
}

/* Thesis §3.10: TimeoutNow goes only to a target holding every entry of the
 * leader's log, or it could lose the election (§5.4.1) or win it and drop
 * entries the leader had not yet replicated to it. */
bool transfer_timeout_now_due_locked(const struct raft_node *n, const struct peer *p,
                                     uint64_t now)
{
    return node_transfer_in_progress_locked(n) && (int32_t)p->id == n->transfer_target &&
           p->match_index == log_last_index(&n->log) && now >= n->transfer_next_send_ms;
}

uint64_t transfer_next_send_locked(const struct raft_node *n, const struct peer *p)
{
    if (!node_transfer_in_progress_locked(n) || (int32_t)p->id != n->transfer_target ||
        p->match_index != log_last_index(&n->log))
        return 0;
    return n->transfer_next_send_ms;
}

void transfer_prepare_timeout_now_locked(struct raft_node *n, struct peer *p, uint64_t now,
                                         struct rpc *out)
{
    NODE_ASSERT_LOCKED(n);
    out->req.type = RAFT_MSG_TIMEOUT_NOW;
    out->req.u.tn.term = n->current_term;
    out->timeout_ms = n->cfg.heartbeat_ms;
    if (n->transfer_next_send_ms == 0)
        node_log(n, RAFT_LOG_INFO, "n%u caught up (match %llu) -> send TimeoutNow: it "
                 "campaigns at once", p->id, (unsigned long long)p->match_index);
    else
        node_log(n, RAFT_LOG_INFO, "n%u has not campaigned yet -> send TimeoutNow again",
                 p->id);
    /* Sent again at heartbeat pace until a newer term deposes this node. */
    n->transfer_next_send_ms = now + n->cfg.heartbeat_ms;
}

/* A reply says only that the target heard: whether it won shows in the
 * newer term of its RequestVote. A lost one is sent again when due. */
void transfer_handle_timeout_now_reply_locked(struct raft_node *n, struct peer *p, int rc)
{
    NODE_ASSERT_LOCKED(n);
    if (rc != 0)
        node_log(n, RAFT_LOG_INFO, "TimeoutNow to n%u lost (%s) -> send it again in %u ms",
                 p->id, strerror(-rc), n->cfg.heartbeat_ms);
}

/* On the target. A TimeoutNow of the current term comes from the leader of
 * that term (one leader per term, §5.2); an older one is stale: its sender
 * no longer leads, and campaigning on its word could depose a leader that
 * never asked for it. */
int transfer_recv_timeout_now_locked(struct raft_node *n, const struct raft_msg *req,
                                     uint64_t now, struct raft_msg *reply)
{
    NODE_ASSERT_LOCKED(n);
    uint64_t term = req->u.tn.term;
    reply->type = RAFT_MSG_TIMEOUT_NOW_REPLY;
    if (node_is_stale_term_locked(n, term, req->from) || term < n->current_term) {
        if (n->disk_failed)
            return -EIO;
        node_log(n, RAFT_LOG_INFO, "TimeoutNow from n%u of T%llu -> ignore: my term is T%llu",
                 req->from, (unsigned long long)term, (unsigned long long)n->current_term);
    } else if (n->role != RAFT_FOLLOWER) {
        node_log(n, RAFT_LOG_INFO, "TimeoutNow from n%u -> ignore: I am already %s in T%llu",
                 req->from, raft_role_name(n->role), (unsigned long long)n->current_term);
    } else {
        node_log(n, RAFT_LOG_INFO, "TimeoutNow from leader n%u of T%llu -> campaign now, "
                 "skipping pre-vote (§3.10)", req->from, (unsigned long long)term);
        election_campaign_now_locked(n, now);
        if (n->disk_failed)
            return -EIO;
    }
    reply->u.tn_reply.term = n->current_term;
    return 0;
}

/* Whether the transfer raft_transfer waits for is over: 0 (the target
 * leads), -EAGAIN (not yet), or why not. */
static int transfer_outcome_locked(const struct raft_node *n, int32_t target,
                                   uint64_t term, char *why, size_t cap)
{
    if (n->stopping || n->disk_failed) {
        node_say_why(why, cap, "The node stopped during the transfer.");
        return -ECANCELED;
    }
    if (n->current_term > term && n->leader_id == target)
        return 0;
    if (n->current_term > term && n->leader_id != RAFT_NO_NODE) {
        node_say_why(why, cap, "n%d took over instead of n%d.", n->leader_id, target);
        return -ETIMEDOUT;
    }
    if (n->current_term == term && !node_transfer_in_progress_locked(n)) {
        node_say_why(why, cap, "n%d did not take over within %u ms; the transfer was abandoned.",
                     target, n->cfg.election_timeout_max_ms);
        return -ETIMEDOUT;
    }
    return -EAGAIN;
}

int raft_transfer(struct raft_node *n, int32_t target, unsigned timeout_ms,
                  int32_t *leader_hint, char *why, size_t why_cap)
{
    node_say_why(why, why_cap, "%s", "");
    node_lock(n);
    uint64_t now = node_now(n), deadline = now + timeout_ms;
    uint64_t term = n->current_term;
    *leader_hint = n->leader_id;
    int rc = transfer_start_locked(n, target, now, why, why_cap);
    if (rc == 0)
        target = n->transfer_target;
    /* Waits by polling: nothing signals a follower that learns its leader,
     * and a few milliseconds do not matter next to an election. */
    if (rc == 0)
        rc = transfer_outcome_locked(n, target, term, why, why_cap);
    while (rc == -EAGAIN) {
        now = node_now(n);
        if (now >= deadline) {
            node_say_why(why, why_cap, "n%d did not take over within %u ms.", target, timeout_ms);
            rc = -ETIMEDOUT;
            break;
        }
        uint64_t poll = now + 5;
        node_wait_until(n, &n->changed_cond, poll < deadline ? poll : deadline);
        rc = transfer_outcome_locked(n, target, term, why, why_cap);
    }
    if (rc == 0) {
        *leader_hint = target;
        node_log(n, RAFT_LOG_INFO, "transfer done: n%d leads T%llu", target,
                 (unsigned long long)n->current_term);
    } else if (rc != -EPERM) {
        node_log(n, RAFT_LOG_INFO, "transfer not done: %s", why ? why : strerror(-rc));
    }
    node_unlock(n);
    return rc;
}
