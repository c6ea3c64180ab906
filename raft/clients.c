/*
 * clients.c - what client threads wait for: their entry applied (a put) or
 * a read confirmed (ReadIndex, thesis §6.4).
 *
 * Each waiting thread sleeps on its own condition variable and says what it
 * waits for, so that an apply or a confirmed heartbeat round wakes only the
 * threads it satisfies. With one shared condition variable, every apply
 * batch would wake every waiting client thread, most of them to go back to
 * sleep: with 64 clients that herd of wake-ups cost more CPU than the work.
 */
#include "raft/node.h"

#include <errno.h>
#include <time.h>

static bool satisfied_locked(const struct raft_node *n, const struct client_waiter *w)
{
    return (w->applied && n->last_applied >= w->applied) ||
           (w->round && n->confirmed_round >= w->round);
}

void node_wake_clients_locked(struct raft_node *n, bool all)
{
    for (struct client_waiter *w = n->waiters; w != NULL; w = w->next)
        if (all || satisfied_locked(n, w))
            pthread_cond_signal(&w->cond);
}

/* Sleeps until woken (see node_wake_clients_locked) or the deadline.
 * Returns ETIMEDOUT once past the deadline; the caller re-checks its state
 * either way. */
static int wait_locked(struct raft_node *n, struct client_waiter *w, uint64_t deadline_ms)
{
    w->prev = NULL;
    w->next = n->waiters;
    if (n->waiters)
        n->waiters->prev = w;
    n->waiters = w;
    int rc = node_wait_until_locked(n, &w->cond, deadline_ms);
    if (w->prev)
        w->prev->next = w->next;
    else
        n->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    return rc;
}

static void waiter_init(struct client_waiter *w)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* deadlines use raft_now_ms */
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    w->applied = w->round = 0;
}

int raft_wait_applied(struct raft_node *n, uint64_t index, uint64_t term,
                      unsigned timeout_ms)
{
    uint64_t deadline = raft_now_ms() + timeout_ms;
    struct client_waiter w;
    waiter_init(&w);
    w.applied = index;
    int rc = 0;
    pthread_mutex_lock(&n->mu);
    while (n->last_applied < index) {
        if (n->disk_failed) {
            rc = -EIO;
            break;
        }
        /* Leadership lost (a new term, or a check-quorum step-down within
         * the same term): a later leader may replace the entry, so the
         * caller must not wait for it here (§5.4.2). */
        if (n->stopping || n->current_term != term || n->role != RAFT_LEADER) {
            rc = -ECANCELED;
            break;
        }
        if (wait_locked(n, &w, deadline) == ETIMEDOUT) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    node_unlock(n);
    pthread_cond_destroy(&w.cond);
    return rc;
}

/* Whether this node may still answer a read begun as leader of `term`. */
static int still_leading_locked(const struct raft_node *n, uint64_t term)
{
    return n->role == RAFT_LEADER && n->current_term == term && !n->stopping &&
           !n->disk_failed ? 0 : -EPERM;
}

/* Thesis §6.4.1: whether this leader holds a read lease. Let t be the
 * latest time such that a majority (this node included) answered requests
 * sent at t or later. None of them helps elect another leader before
 * t + the minimum election timeout (election.c), and any new leader needs
 * the vote of one of them: until then this node is the only leader and may
 * answer reads without a round. The lease ends a tenth earlier, to allow
 * for clocks that run at slightly different rates. */
static bool holds_lease_locked(const struct raft_node *n)
{
    if (!n->cfg.lease_reads || !n->cfg.check_quorum)
        return false;
    uint64_t now = node_lease_clock_ms(), sent[RAFT_MAX_NODES];
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++)
        sent[i] = i == n->cfg.id ? now : n->peers[i].lease_sent_ms;
    uint64_t since = commit_quorum_index(sent, n->cfg.n_nodes);
    uint64_t lease_ms = n->cfg.election_timeout_min_ms - n->cfg.election_timeout_min_ms / 10;
    return since > 0 && now < since + lease_ms;
}

/* Thesis §6.4 (ReadIndex): note the commit index, confirm leadership with a
 * round of heartbeats acknowledged by a majority, then wait until that index
 * is applied. Concurrent reads share rounds: one heartbeat confirms every
 * read that started before it was sent. With a read lease the round is not
 * needed (§6.4.1). */
int raft_read_barrier(struct raft_node *n, unsigned timeout_ms,
                      int32_t *leader_hint)
{
    uint64_t deadline = raft_now_ms() + timeout_ms;
    struct client_waiter w;
    waiter_init(&w);
    pthread_mutex_lock(&n->mu);
    uint64_t term = n->current_term;
    int rc = still_leading_locked(n, term);
    /* §6.4 step 1: a new leader's commit index is only known to be current
     * once an entry of its own term (the no-op) has committed; the commit
     * of the no-op wakes every waiter. */
    while (rc == 0 && n->commit_index < n->leader_first_index) {
        rc = still_leading_locked(n, term);
        if (rc == 0 && wait_locked(n, &w, deadline) == ETIMEDOUT)
            rc = -ETIMEDOUT;
    }
    uint64_t read_index = n->commit_index;
    if (rc == 0 && !holds_lease_locked(n)) {
        /* A replicator already woken for an earlier round has not sent yet
         * and will carry this one too: one wake-up per round, not per read. */
        bool was_sent = node_some_peer_sent_round_locked(n);
        w.round = ++n->read_round;
        if (n->majority == 1)
            n->confirmed_round = w.round; /* a one-node cluster confirms itself */
        if (was_sent)
            pthread_cond_broadcast(&n->peers_cond);
    }
    while (rc == 0 && n->confirmed_round < w.round) {
        rc = still_leading_locked(n, term);
        if (rc == 0 && wait_locked(n, &w, deadline) == ETIMEDOUT)
            rc = -ETIMEDOUT;
    }
    w.round = 0;
    w.applied = read_index;
    while (rc == 0 && n->last_applied < read_index) {
        if (n->stopping)
            rc = -ECANCELED;
        else if (wait_locked(n, &w, deadline) == ETIMEDOUT)
            rc = -ETIMEDOUT;
    }
    *leader_hint = n->leader_id;
    node_unlock(n);
    pthread_cond_destroy(&w.cond);
    return rc;
}
