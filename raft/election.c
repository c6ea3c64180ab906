/*
 * election.c - leader election (§5.2, §5.4.1) with pre-vote (thesis §9.6)
 * and check-quorum (thesis §6.2).
 *
 * The rules of an election: what the timer's expiry leads to, the vote
 * request a candidate sends to each peer, how it counts the replies, and
 * how a node answers a vote request. The timer thread (timer.c) and the
 * peer lanes (peer.c) only schedule them.
 */
#include "raft/node.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* §5.4.1: "If the logs have last entries with different terms, then the log
 * with the later term is more up-to-date. If the logs end with the same
 * term, then whichever log is longer is more up-to-date." */
bool election_log_up_to_date(uint64_t my_last_term, uint64_t my_last_index,
                             uint64_t their_last_term, uint64_t their_last_index)
{
    /* LAB(election): compare the last entries' terms, then the logs' lengths (§5.4.1) */
    if (their_last_term != my_last_term)
        return their_last_term > my_last_term;
    return their_last_index >= my_last_index;
    /* STUB: (void)my_last_term; (void)my_last_index; */
    /* STUB: (void)their_last_term; (void)their_last_index; */
    /* END LAB: return false; */
}

static void describe_peers(struct raft_node *n, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < n->members.n && off < cap; i++) {
        const struct raft_member *m = &n->members.members[i];
        if (m->voter && m->id != n->cfg.id)
            off += (size_t)snprintf(buf + off, cap - off, " n%u", m->id);
    }
}

static void become_leader_if_won_locked(struct raft_node *n, uint64_t now);

/* Figure 2, candidates: on election timeout start a new election. */
static void start_real_election_locked(struct raft_node *n, uint64_t now)
{
    /* LAB(election): become candidate, log it, win at once if alone (Figure 2 candidates, §5.2) */
    bool split_vote = n->role == RAFT_CANDIDATE; /* its last election found no winner */
    if (node_become_candidate_locked(n))
        return;
    /* §5.2 separates candidates by the random timeout alone. When the range
     * is narrow (or MIN equals MAX), candidates that split the vote would
     * split it again every round, in step: after a failed election, wait a
     * further random part of the minimum timeout. */
    if (split_vote)
        n->election_deadline_ms += node_random(n) % (n->cfg.election_timeout_min_ms / 2 + 1);
    char peers[64];
    describe_peers(n, peers, sizeof(peers));
    node_log(n, RAFT_LOG_INFO, "election started: voted for self, asking%s (last log %llu@T%llu)",
             peers, (unsigned long long)log_last_index(&n->log),
             (unsigned long long)log_last_term(&n->log));
    become_leader_if_won_locked(n, now); /* a one-node cluster wins at once */
    /* STUB: (void)n; (void)now; (void)describe_peers; (void)become_leader_if_won_locked; */
    /* END LAB */
}

/* Thesis §9.6: before raising its term, a node asks whether it could win.
 * A node that was cut off cannot get pre-votes, so when it returns its term
 * is unchanged and it does not depose the healthy leader. */
static void start_pre_vote_locked(struct raft_node *n, uint64_t now)
{
    /* LAB(election): become pre-candidate and ask for pre-votes (thesis §9.6) */
    /* A node that led until lately heard no leader because it was one. */
    bool was_leader = n->has_led && n->stopped_leading_ms > n->last_leader_contact_ms;
    uint64_t silent_ms = now - (was_leader ? n->stopped_leading_ms : n->last_leader_contact_ms);
    node_become_pre_candidate_locked(n);
    char peers[64], note[96];
    if (node_log_pre_vote_attempt_locked(n, now, note, sizeof(note))) {
        describe_peers(n, peers, sizeof(peers));
        node_log(n, RAFT_LOG_INFO, "%s %llu ms%s -> pre-vote for T%llu (still at T%llu), "
                 "asking%s (last log %llu@T%llu)%s",
                 was_leader ? "was leader until" : "no leader heard for",
                 (unsigned long long)silent_ms, was_leader ? " ago, no leader since" : "",
                 (unsigned long long)n->current_term + 1, (unsigned long long)n->current_term,
                 peers,
                 (unsigned long long)log_last_index(&n->log),
                 (unsigned long long)log_last_term(&n->log), note);
    }
    become_leader_if_won_locked(n, now);
    /* STUB: (void)n; (void)now; (void)describe_peers; (void)become_leader_if_won_locked; */
    /* END LAB */
}

static void describe_votes(struct raft_node *n, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i <= RAFT_MAX_ID && off < cap; i++)
        if (n->votes >> i & 1)
            off += (size_t)snprintf(buf + off, cap - off, " n%u", i);
}

static void become_leader_if_won_locked(struct raft_node *n, uint64_t now)
{
    /* LAB(election): on a majority, a pre-candidate starts the real election, a candidate leads (§5.2) */
    if (!node_is_majority(n, n->votes)) /* among the voters (thesis §4.1) */
        return;
    char who[64];
    describe_votes(n, who, sizeof(who));
    if (n->role == RAFT_PRE_CANDIDATE) {
        node_log(n, RAFT_LOG_INFO, "pre-vote won with%s -> start a real election", who);
        start_real_election_locked(n, now);
    } else if (n->role == RAFT_CANDIDATE) {
        node_log(n, RAFT_LOG_INFO, "won election with votes%s", who);
        node_become_leader_locked(n);
    }
    /* STUB: (void)n; (void)now; (void)describe_votes; (void)start_real_election_locked; */
    /* END LAB */
}

/* Thesis §6.2: a leader that has not heard from a majority for an election
 * timeout steps down, so clients stop waiting on a leader that cannot
 * commit. */
static void check_quorum_locked(struct raft_node *n, uint64_t now)
{
    /* LAB(election): step down unless a majority answered within the window (thesis §6.2) */
    uint64_t heard = 1ull << n->cfg.id;
    uint64_t window = n->cfg.election_timeout_max_ms;
    for (uint32_t i = 0; i < n->members.n; i++) {
        uint32_t id = n->members.members[i].id;
        if (id != n->cfg.id && now - n->peers[id].last_ack_ms <= window)
            heard |= 1ull << id;
    }
    if (!node_is_majority(n, heard)) {
        char why[96];
        snprintf(why, sizeof(why), "heard from only %d of %u voters in %llu ms (check-quorum)",
                 __builtin_popcountll(heard), membership_voters(&n->members),
                 (unsigned long long)window);
        node_become_follower_locked(n, n->current_term, RAFT_NO_NODE, why);
    }
    /* END LAB: (void)n; (void)now; */
}

/* The election timeout passed: a follower or pre-candidate asks for
 * pre-votes (or, without pre-vote, starts an election), a candidate starts
 * a new election, and a leader checks that a majority still answers. */
void election_tick_locked(struct raft_node *n, uint64_t now)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(election): the timer's decision, by role (Figure 2 followers and candidates, §5.2) */
    if (n->disk_failed) {
        n->election_deadline_ms = now + n->cfg.election_timeout_max_ms;
    } else if (n->role == RAFT_LEADER) {
        node_log_silent_peers_locked(n, now);
        if (n->cfg.check_quorum)
            check_quorum_locked(n, now);
        n->election_deadline_ms = now + n->cfg.election_timeout_max_ms;
    } else if (n->cfg.pre_vote && n->role != RAFT_CANDIDATE) {
        start_pre_vote_locked(n, now);
    } else {
        start_real_election_locked(n, now);
    }
    /* STUB: n->election_deadline_ms = now + n->cfg.election_timeout_max_ms; */
    /* STUB: (void)check_quorum_locked; */
    /* END LAB: (void)start_pre_vote_locked; (void)start_real_election_locked; */
}

/* The vote request for peer p in this (pre-)election. */
void election_prepare_vote_locked(struct raft_node *n, struct peer *p, struct rpc *out)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(election): fill in RequestVote (Figure 2 RequestVote arguments; pre-vote §9.6) */
    bool pre = n->role == RAFT_PRE_CANDIDATE;
    struct raft_request_vote *rv = &out->req.u.rv;
    out->req.type = RAFT_MSG_REQUEST_VOTE;
    /* A pre-vote asks about the term it would campaign in (§9.6). */
    rv->term = pre ? n->current_term + 1 : n->current_term;
    rv->last_log_index = log_last_index(&n->log);
    rv->last_log_term = log_last_term(&n->log);
    rv->pre_vote = pre;
    rv->transfer = !pre && n->transfer_campaign_term == n->current_term;
    out->timeout_ms = n->cfg.election_timeout_min_ms;
    p->vote_needed = false;
    node_log(n, RAFT_LOG_DEBUG, "-> n%u %sRequestVote T%llu", p->id, pre ? "pre-" : "",
             (unsigned long long)rv->term);
    /* END LAB: (void)p; (void)out; */
}

/* Counts a vote of this election (node_handle_reply_locked checked that
 * the election is still the one the request was sent in). */
void election_handle_vote_reply_locked(struct raft_node *n, struct peer *p,
                                       const struct rpc *sent, int rc,
                                       const struct raft_msg *reply, uint64_t now)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(election): count a granted vote, retry a failed call (Figure 2 candidates, §5.2) */
    bool pre = sent->req.u.rv.pre_vote;
    if (rc != 0) {
        p->vote_needed = true; /* ask again after a pause */
        p->retry_at_ms = now + n->cfg.heartbeat_ms;
        return;
    }
    const struct raft_request_vote_reply *r = &reply->u.rv_reply;
    if (r->pre_vote != pre)
        return;
    if (pre)
        n->pre_votes.replies++;
    if (r->vote_granted) {
        n->votes |= 1ull << p->id;
        become_leader_if_won_locked(n, now);
    } else {
        node_log(n, RAFT_LOG_DEBUG, "n%u denied its %svote", p->id, pre ? "pre-" : "");
    }
    /* STUB: (void)p; (void)sent; (void)rc; (void)reply; (void)now; */
    /* END LAB: (void)become_leader_if_won_locked; */
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
static bool heard_from_leader_recently_locked(struct raft_node *n, uint64_t now)
{
    if (n->role == RAFT_LEADER)
        return true;
    return now - n->last_leader_contact_ms < n->cfg.election_timeout_min_ms;
}

/* Thesis §9.6: grant a pre-vote if the candidate could win a real election
 * (its term would be newer and its log is up to date) and this node has not
 * heard from a leader within the minimum election timeout. Changes no state. */
static int recv_pre_vote_locked(struct raft_node *n, const struct raft_request_vote *rv,
                                uint32_t from, uint64_t now, struct raft_msg *reply)
{
    /* LAB(election): the pre-vote rule, changing no state (thesis §9.6) */
    uint64_t my_term = log_last_term(&n->log), my_index = log_last_index(&n->log);
    const char *denied = NULL;
    if (rv->term < n->current_term)
        denied = "its term is behind mine";
    else if (n->role == RAFT_LEADER)
        denied = "I am the leader of this term";
    else if (heard_from_leader_recently_locked(n, now))
        denied = n->leader_id == RAFT_NO_NODE ? "I started less than an election timeout ago"
                                              : "I still hear from a leader";
    else if (!election_log_up_to_date(my_term, my_index, rv->last_log_term, rv->last_log_index))
        denied = "my log is more up to date";
    node_log(n, RAFT_LOG_INFO, "pre-vote from n%u, could it win T%llu (I am at T%llu)? -> %s "
             "(its log %llu@T%llu, mine %llu@T%llu)%s%s",
             from, (unsigned long long)rv->term, (unsigned long long)n->current_term,
             denied ? "deny" : "grant",
             (unsigned long long)rv->last_log_index, (unsigned long long)rv->last_log_term,
             (unsigned long long)my_index, (unsigned long long)my_term,
             denied ? ": " : "", denied ? denied : "");
    return reply_vote(n, reply, denied == NULL, true);
    /* STUB: (void)rv; (void)from; (void)now; (void)heard_from_leader_recently_locked; */
    /* END LAB: return reply_vote(n, reply, false, true); */
}

/* Figure 2, RequestVote receiver:
 * 1. Reply false if term < currentTerm.
 * 2. If votedFor is null or candidateId, and the candidate's log is at
 *    least as up-to-date as the receiver's log, grant the vote. */
int election_recv_request_vote_locked(struct raft_node *n, const struct raft_msg *req,
                                      uint64_t now, struct raft_msg *reply)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(election): the vote rule (Figure 2 RequestVote receiver, §5.2, §5.4.1) */
    const struct raft_request_vote *rv = &req->u.rv;
    if (rv->pre_vote)
        return recv_pre_vote_locked(n, rv, req->from, now, reply);
    /* Thesis §3.10: a candidate that the leader told to campaign carries
     * a flag, and the rule below does not apply to it: the leader itself
     * wants it elected (and holds no lease that counts on this vote). */
    if (rv->transfer && rv->term > n->current_term && heard_from_leader_recently_locked(n, now))
        node_log(n, RAFT_LOG_INFO, "RequestVote from n%u T%llu is a leadership transfer -> "
                 "consider it although I heard from a leader recently (§3.10)", req->from,
                 (unsigned long long)rv->term);
    /* Thesis §4.2.3: while a node hears from a current leader it ignores
     * vote requests, so a server removed or cut off cannot disrupt it. */
    if (n->cfg.check_quorum && rv->term > n->current_term && !rv->transfer &&
        heard_from_leader_recently_locked(n, now)) {
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
        node_reset_election_timer_locked(n); /* granting a vote resets the timer */
    char voted[32] = "";
    if (denied && n->voted_for != (int32_t)req->from && n->voted_for != RAFT_NO_NODE)
        snprintf(voted, sizeof(voted), " for n%d", n->voted_for);
    node_log(n, RAFT_LOG_INFO, "RequestVote from n%u -> %s (its log %llu@T%llu, mine %llu@T%llu)%s%s%s",
             req->from, denied ? "deny" : "grant",
             (unsigned long long)rv->last_log_index, (unsigned long long)rv->last_log_term,
             (unsigned long long)my_index, (unsigned long long)my_term,
             denied ? ": " : "", denied ? denied : "", voted);
    return reply_vote(n, reply, denied == NULL, false);
    /* STUB: (void)req; (void)now; (void)recv_pre_vote_locked; */
    /* END LAB: return reply_vote(n, reply, false, false); */
}

void election_campaign_now_locked(struct raft_node *n, uint64_t now)
{
    NODE_ASSERT_LOCKED(n);
    start_real_election_locked(n, now);
    if (n->role == RAFT_CANDIDATE)
        n->transfer_campaign_term = n->current_term; /* its vote requests say so */
}
