/*
 * election.c - leader election (§5.2, §5.4.1) with pre-vote (thesis §9.6)
 * and check-quorum (thesis §6.2).
 *
 * The election timer thread starts elections; the per-peer replicator
 * threads carry the vote requests (election_send_vote_locked) so that a
 * slow or dead peer never delays the others.
 */
#include "raft/node.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static uint64_t next_random(struct raft_node *n)
{
    /* xorshift64*: small, fast, and seeded per node so runs can be replayed. */
    n->rng ^= n->rng >> 12;
    n->rng ^= n->rng << 25;
    n->rng ^= n->rng >> 27;
    return n->rng * 0x2545f4914f6cdd1dull;
}

/* §5.2: "election timeouts are chosen randomly from a fixed interval" so
 * that split votes are rare and resolve quickly. */
void election_reset_timer_locked(struct raft_node *n)
{
    unsigned lo = n->cfg.election_timeout_min_ms;
    unsigned span = n->cfg.election_timeout_max_ms - lo + 1;
    uint64_t old = n->election_deadline_ms;
    n->election_deadline_ms = raft_now_ms() + lo + next_random(n) % span;
    /* The timer thread sleeps until the old deadline and then looks again,
     * so it needs waking only when the deadline moved earlier: a follower
     * resets its timer on every AppendEntries, and waking the thread each
     * time would cost a context switch per message. */
    if (n->election_deadline_ms < old)
        pthread_cond_signal(&n->timer_cond);
}

/* §5.4.1: "If the logs have last entries with different terms, then the log
 * with the later term is more up-to-date. If the logs end with the same
 * term, then whichever log is longer is more up-to-date." */
bool election_log_up_to_date(uint64_t my_last_term, uint64_t my_last_index,
                             uint64_t their_last_term, uint64_t their_last_index)
{
    if (their_last_term != my_last_term)
        return their_last_term > my_last_term;
    return their_last_index >= my_last_index;
}

static void describe_peers(struct raft_node *n, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < n->cfg.n_nodes && off < cap; i++)
        if (i != n->cfg.id)
            off += (size_t)snprintf(buf + off, cap - off, " n%u", i);
}

static void become_leader_if_won_locked(struct raft_node *n);

static void ask_for_votes_locked(struct raft_node *n)
{
    n->votes = 1u << n->cfg.id;
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++)
        n->peers[i].vote_needed = (i != n->cfg.id);
    pthread_cond_broadcast(&n->peers_cond);
    become_leader_if_won_locked(n); /* a one-node cluster wins at once */
}

/* Figure 2, candidates: increment currentTerm, vote for self, reset the
 * election timer, send RequestVote to all other servers. */
static void start_real_election_locked(struct raft_node *n)
{
    bool split_vote = n->role == RAFT_CANDIDATE; /* its last election found no winner */
    if (node_persist_term_vote_locked(n, n->current_term + 1, (int32_t)n->cfg.id))
        return;
    n->role = RAFT_CANDIDATE;
    n->leader_id = RAFT_NO_NODE;
    election_reset_timer_locked(n);
    /* §5.2 separates candidates by the random timeout alone. When the range
     * is narrow (or MIN equals MAX), candidates that split the vote would
     * split it again every round, in step: after a failed election, wait a
     * further random part of the minimum timeout. */
    if (split_vote)
        n->election_deadline_ms += next_random(n) % (n->cfg.election_timeout_min_ms / 2 + 1);
    char peers[64];
    describe_peers(n, peers, sizeof(peers));
    node_log(n, RAFT_LOG_INFO, "election started: voted for self, asking%s (last log %llu@T%llu)",
             peers, (unsigned long long)log_last_index(&n->log),
             (unsigned long long)log_last_term(&n->log));
    ask_for_votes_locked(n);
}

/* Thesis §9.6: before raising its term, a node asks whether it could win.
 * A node that was cut off cannot get pre-votes, so when it returns its term
 * is unchanged and it does not depose the healthy leader. */
static void start_pre_vote_locked(struct raft_node *n, uint64_t silent_ms)
{
    n->role = RAFT_PRE_CANDIDATE;
    n->leader_id = RAFT_NO_NODE;
    election_reset_timer_locked(n);
    char peers[64];
    describe_peers(n, peers, sizeof(peers));
    node_log(n, RAFT_LOG_INFO, "no leader heard for %llu ms -> pre-vote for T%llu, asking%s "
             "(last log %llu@T%llu)", (unsigned long long)silent_ms,
             (unsigned long long)n->current_term + 1, peers,
             (unsigned long long)log_last_index(&n->log),
             (unsigned long long)log_last_term(&n->log));
    ask_for_votes_locked(n);
}

static void describe_votes(struct raft_node *n, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < n->cfg.n_nodes && off < cap; i++)
        if (n->votes & (1u << i))
            off += (size_t)snprintf(buf + off, cap - off, " n%u", i);
}

static void become_leader_if_won_locked(struct raft_node *n)
{
    if ((unsigned)__builtin_popcount(n->votes) < n->majority)
        return;
    char who[64];
    describe_votes(n, who, sizeof(who));
    if (n->role == RAFT_PRE_CANDIDATE) {
        node_log(n, RAFT_LOG_INFO, "pre-vote won with%s -> start a real election", who);
        start_real_election_locked(n);
    } else if (n->role == RAFT_CANDIDATE) {
        node_log(n, RAFT_LOG_INFO, "won election with votes%s", who);
        replication_become_leader_locked(n);
    }
}

/* Thesis §6.2: a leader that has not heard from a majority for an election
 * timeout steps down, so clients stop waiting on a leader that cannot
 * commit. */
static void check_quorum_locked(struct raft_node *n, uint64_t now)
{
    unsigned heard = 1;
    uint64_t window = n->cfg.election_timeout_max_ms;
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++)
        if (i != n->cfg.id && now - n->peers[i].last_ack_ms <= window)
            heard++;
    if (heard < n->majority) {
        node_log(n, RAFT_LOG_INFO, "heard from only %u of %u nodes in %llu ms -> step down "
                 "(check-quorum)", heard, n->cfg.n_nodes, (unsigned long long)window);
        node_become_follower_locked(n, n->current_term, RAFT_NO_NODE, "lost quorum");
    }
}

/* One iteration: sleep until the deadline; then a follower or candidate
 * starts an election, and a leader checks that a majority still answers. */
void *election_timer_main(void *arg)
{
    struct raft_node *n = arg;
    pthread_mutex_lock(&n->mu);
    while (!n->stopping) {
        uint64_t now = raft_now_ms();
        if (now < n->election_deadline_ms) {
            node_wait_until_locked(n, &n->timer_cond, n->election_deadline_ms);
            continue;
        }
        if (n->disk_failed) {
            n->election_deadline_ms = now + n->cfg.election_timeout_max_ms;
        } else if (n->role == RAFT_LEADER) {
            if (n->cfg.check_quorum)
                check_quorum_locked(n, now);
            n->election_deadline_ms = now + n->cfg.election_timeout_max_ms;
        } else if (n->cfg.pre_vote && n->role != RAFT_CANDIDATE) {
            start_pre_vote_locked(n, now - n->last_leader_contact_ms);
        } else {
            start_real_election_locked(n);
        }
    }
    node_unlock(n);
    return NULL;
}

/* Called by the replicator of peer p while the node is a (pre-)candidate:
 * sends one vote request without the lock and counts the answer. */
void election_send_vote_locked(struct raft_node *n, struct peer *p)
{
    struct raft_msg req = {.type = RAFT_MSG_REQUEST_VOTE, .from = n->cfg.id}, reply;
    bool pre = n->role == RAFT_PRE_CANDIDATE;
    uint64_t term = n->current_term;
    req.u.rv.term = pre ? term + 1 : term;
    req.u.rv.last_log_index = log_last_index(&n->log);
    req.u.rv.last_log_term = log_last_term(&n->log);
    req.u.rv.pre_vote = pre;
    enum raft_role role = n->role;
    p->vote_needed = false;
    node_log(n, RAFT_LOG_DEBUG, "-> n%u %sRequestVote T%llu", p->id, pre ? "pre-" : "",
             (unsigned long long)req.u.rv.term);

    node_unlock(n);
    int rc = n->transport.call(n->transport.ctx, p->id, &req, &reply,
                               n->cfg.election_timeout_min_ms);
    pthread_mutex_lock(&n->mu);

    /* The world may have moved while unlocked: act only if this is still the
     * same election (same term and role). */
    if (rc != 0) {
        if (n->current_term == term && n->role == role) {
            p->vote_needed = true; /* ask again after a pause */
            p->retry_at_ms = raft_now_ms() + n->cfg.heartbeat_ms;
        }
        return;
    }
    const struct raft_request_vote_reply *r = &reply.u.rv_reply;
    if (reply.type != RAFT_MSG_REQUEST_VOTE_REPLY)
        return;
    if (r->term > n->current_term && !(pre && r->vote_granted)) {
        node_is_stale_term_locked(n, r->term, p->id);
        return;
    }
    if (n->current_term != term || n->role != role || r->pre_vote != pre)
        return;
    if (r->vote_granted) {
        n->votes |= 1u << p->id;
        become_leader_if_won_locked(n);
    } else {
        node_log(n, RAFT_LOG_DEBUG, "n%u denied its %svote", p->id, pre ? "pre-" : "");
    }
}

static int reply_vote(struct raft_node *n, struct raft_msg *reply, bool granted,
                      bool pre)
{
    reply->u.rv_reply.term = n->current_term;
    reply->u.rv_reply.vote_granted = granted;
    reply->u.rv_reply.pre_vote = pre;
    return 0;
}

/* Whether this node heard from a leader (or started) less than the minimum
 * election timeout ago. Such a node helps elect nobody: a leader whose
 * heartbeat it answered may be serving reads on a lease that counts on it
 * (thesis §6.4.1). A node that restarted does not remember whom it
 * answered, so it waits the timeout out from its start. */
static bool heard_from_leader_recently_locked(struct raft_node *n)
{
    if (n->role == RAFT_LEADER)
        return true;
    return raft_now_ms() - n->last_leader_contact_ms < n->cfg.election_timeout_min_ms;
}

/* Thesis §9.6: grant a pre-vote if the candidate could win a real election
 * (its term would be newer and its log is up to date) and this node has not
 * heard from a leader within the minimum election timeout. Changes no state. */
static int recv_pre_vote_locked(struct raft_node *n, const struct raft_request_vote *rv,
                                uint32_t from, struct raft_msg *reply)
{
    uint64_t my_term = log_last_term(&n->log), my_index = log_last_index(&n->log);
    const char *denied = NULL;
    if (rv->term < n->current_term)
        denied = "its term is behind mine";
    else if (n->role == RAFT_LEADER)
        denied = "I am the leader of this term";
    else if (heard_from_leader_recently_locked(n))
        denied = n->leader_id == RAFT_NO_NODE ? "I started less than an election timeout ago"
                                              : "I still hear from a leader";
    else if (!election_log_up_to_date(my_term, my_index, rv->last_log_term, rv->last_log_index))
        denied = "my log is more up to date";
    node_log(n, RAFT_LOG_INFO, "pre-vote from n%u for T%llu -> %s (its log %llu@T%llu, mine %llu@T%llu)%s%s",
             from, (unsigned long long)rv->term, denied ? "deny" : "grant",
             (unsigned long long)rv->last_log_index, (unsigned long long)rv->last_log_term,
             (unsigned long long)my_index, (unsigned long long)my_term,
             denied ? ": " : "", denied ? denied : "");
    return reply_vote(n, reply, denied == NULL, true);
}

/* Figure 2, RequestVote receiver:
 * 1. Reply false if term < currentTerm.
 * 2. If votedFor is null or candidateId, and the candidate's log is at
 *    least as up-to-date as the receiver's log, grant the vote. */
int election_recv_request_vote_locked(struct raft_node *n, const struct raft_msg *req,
                                      struct raft_msg *reply)
{
    const struct raft_request_vote *rv = &req->u.rv;
    if (rv->pre_vote)
        return recv_pre_vote_locked(n, rv, req->from, reply);
    /* Thesis §4.2.3: while a node hears from a current leader it ignores
     * vote requests, so a server removed or cut off cannot disrupt it. */
    if (n->cfg.check_quorum && rv->term > n->current_term &&
        heard_from_leader_recently_locked(n)) {
        if (n->leader_id == RAFT_NO_NODE)
            node_log(n, RAFT_LOG_INFO, "RequestVote from n%u T%llu -> ignore: I started less "
                     "than an election timeout ago", req->from, (unsigned long long)rv->term);
        else
            node_log(n, RAFT_LOG_INFO, "RequestVote from n%u T%llu -> ignore: I hear from "
                     "leader n%d", req->from, (unsigned long long)rv->term, n->leader_id);
        return reply_vote(n, reply, false, false);
    }
    if (node_is_stale_term_locked(n, rv->term, req->from) || rv->term < n->current_term) {
        if (n->disk_failed)
            return -EIO;
        node_log(n, RAFT_LOG_INFO, "RequestVote from n%u T%llu -> deny: its term is older than mine",
                 req->from, (unsigned long long)rv->term);
        return reply_vote(n, reply, false, false);
    }
    uint64_t my_term = log_last_term(&n->log), my_index = log_last_index(&n->log);
    const char *denied = NULL;
    if (n->voted_for != RAFT_NO_NODE && n->voted_for != (int32_t)req->from)
        denied = "already voted in this term";
    else if (!election_log_up_to_date(my_term, my_index, rv->last_log_term, rv->last_log_index))
        denied = "my log is more up to date (§5.4.1)";
    if (!denied && node_persist_term_vote_locked(n, n->current_term, (int32_t)req->from))
        return -EIO;
    if (!denied)
        election_reset_timer_locked(n); /* granting a vote resets the timer */
    char voted[32] = "";
    if (denied && n->voted_for != (int32_t)req->from && n->voted_for != RAFT_NO_NODE)
        snprintf(voted, sizeof(voted), " for n%d", n->voted_for);
    node_log(n, RAFT_LOG_INFO, "RequestVote from n%u -> %s (its log %llu@T%llu, mine %llu@T%llu)%s%s%s",
             req->from, denied ? "deny" : "grant",
             (unsigned long long)rv->last_log_index, (unsigned long long)rv->last_log_term,
             (unsigned long long)my_index, (unsigned long long)my_term,
             denied ? ": " : "", denied ? denied : "", voted);
    return reply_vote(n, reply, denied == NULL, false);
}
