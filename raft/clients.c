/*
 * clients.c - what client threads wait for: their entry applied (a put) or
 * a read confirmed and applied (a lease, or ReadIndex: thesis §6.4).
 *
 * Each waiting thread sleeps on its own condition variable, under its own
 * small mutex, and says what it waits for. Whoever makes progress (the
 * applier, the replicator that completes a read round) takes the satisfied
 * waiters off the list and wakes them, and they return without taking the
 * node's lock again. With one shared condition variable, every apply batch
 * woke every waiting client thread; with the node's lock as the condition's
 * mutex, every woken thread then queued for that lock while the waker still
 * held it. With 64 clients both herds cost more CPU than the work.
 */
#include "raft/node.h"

#include <errno.h>
#include <time.h>

enum wake { WOKE_DONE, WOKE_RECHECK, WOKE_TIMEOUT };

/* A waiter is done once every condition it set holds. One with none set
 * is only woken to recheck (see clients_wake_locked). */
static bool satisfied_locked(const struct raft_node *n, const struct client_waiter *w)
{
    if (!w->applied && !w->round)
        return false;
    return n->last_applied >= w->applied && n->confirmed_round >= w->round;
}

static void unlink_locked(struct raft_node *n, struct client_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        n->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->listed = false;
}

static int applied_status_locked(const struct raft_node *n, uint64_t index, uint64_t term);

/* Moves the async puts that are over to async_done, for the applier to
 * call back without the lock. */
static void settle_async_locked(struct raft_node *n)
{
    struct raft_async **pp = &n->async;
    bool moved = false;
    while (*pp) {
        struct raft_async *a = *pp;
        a->rc = applied_status_locked(n, a->index, a->term);
        if (a->rc == -EAGAIN) {
            pp = &a->next;
            continue;
        }
        *pp = a->next;
        a->next = n->async_done;
        n->async_done = a;
        moved = true;
    }
    if (moved)
        node_wake_applier_locked(n);
}

void clients_call_async_done_drops_lock(struct raft_node *n)
{
    while (n->async_done) {
        struct raft_async *a = n->async_done;
        n->async_done = NULL;
        node_unlock(n);
        while (a) {
            struct raft_async *next = a->next; /* done() may free a */
            a->done(a, a->rc);
            a = next;
        }
        node_lock(n);
    }
}

int raft_propose_async(struct raft_node *n, const uint8_t *data, uint32_t len,
                       struct raft_async *a, int32_t *leader_hint)
{
    node_lock(n);
    int rc = node_propose_locked(n, data, len);
    *leader_hint = rc == -EBUSY ? n->transfer_target : n->leader_id;
    if (rc == 0) {
        a->index = log_last_index(&n->log);
        a->term = n->current_term;
        a->next = n->async;
        n->async = a;
    }
    node_unlock(n);
    return rc;
}

void clients_wake_locked(struct raft_node *n, bool all)
{
    settle_async_locked(n);
    struct client_waiter *w = n->waiters;
    while (w != NULL) {
        struct client_waiter *next = w->next;
        bool done = satisfied_locked(n, w);
        if (done || all) {
            unlink_locked(n, w);
            /* Signalled under its own mutex: once that is released, the
             * waiter may return, and its memory (on its stack) be gone. */
            pthread_mutex_lock(&w->mu);
            w->woken = done ? WOKE_DONE : WOKE_RECHECK;
            pthread_cond_signal(&w->cond);
            pthread_mutex_unlock(&w->mu);
        }
        w = next;
    }
}

/* Called with the node's lock held; returns without it. Sleeps until woken
 * or the deadline. After WOKE_RECHECK or WOKE_TIMEOUT the caller takes the
 * lock again and looks at the node itself. */
static enum wake wait_unlocking(struct raft_node *n, struct client_waiter *w,
                                uint64_t deadline_ms)
{
    w->prev = NULL;
    w->next = n->waiters;
    if (n->waiters)
        n->waiters->prev = w;
    n->waiters = w;
    w->listed = true;
    w->woken = -1;
    pthread_mutex_lock(&w->mu);
    node_unlock(n);
    struct timespec ts = node_deadline_timespec(n, deadline_ms);
    while (w->woken < 0 && pthread_cond_timedwait(&w->cond, &w->mu, &ts) != ETIMEDOUT)
        ;
    int woken = w->woken;
    pthread_mutex_unlock(&w->mu);
    if (woken >= 0)
        return (enum wake)woken;
    /* Timed out: off the list, unless a waker took it off meanwhile. */
    node_lock(n);
    if (w->listed) {
        unlink_locked(n, w);
        woken = WOKE_TIMEOUT;
    } else {
        pthread_mutex_lock(&w->mu);
        woken = w->woken;
        pthread_mutex_unlock(&w->mu);
    }
    node_unlock(n);
    return (enum wake)woken;
}

static void waiter_init(struct client_waiter *w)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* node_deadline_timespec */
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    w->applied = w->round = 0;
    w->listed = false;
}

static void waiter_destroy(struct client_waiter *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
}

/* Where a put's entry stands: 0 applied, -EAGAIN not yet, or why the
 * caller should stop waiting. */
static int applied_status_locked(const struct raft_node *n, uint64_t index, uint64_t term)
{
    if (n->last_applied >= index)
        return 0;
    if (n->disk_failed)
        return -EIO;
    /* Leadership lost (a new term, or a check-quorum step-down within the
     * same term): a later leader may replace the entry, so the caller must
     * not wait for it here (§5.4.2). */
    if (n->stopping || n->current_term != term || n->role != RAFT_LEADER)
        return -ECANCELED;
    return -EAGAIN;
}

int raft_wait_applied(struct raft_node *n, uint64_t index, uint64_t term,
                      unsigned timeout_ms)
{
    uint64_t deadline = node_now(n) + timeout_ms;
    struct client_waiter w;
    waiter_init(&w);
    w.applied = index;
    node_lock(n);
    int rc;
    for (;;) {
        rc = applied_status_locked(n, index, term);
        if (rc == -EAGAIN && node_now(n) >= deadline)
            rc = -ETIMEDOUT;
        if (rc != -EAGAIN) {
            node_unlock(n);
            break;
        }
        if (wait_unlocking(n, &w, deadline) == WOKE_DONE) {
            rc = 0; /* applied; the lock is not held */
            break;
        }
        node_lock(n);
    }
    waiter_destroy(&w);
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
bool clients_holds_lease_locked(const struct raft_node *n, uint64_t now)
{
    NODE_ASSERT_LOCKED(n);
    if (!n->cfg.lease_reads || !n->cfg.check_quorum)
        return false;
    /* Thesis §3.10: voters grant the transfer target's vote although they
     * answered this leader recently, so once TimeoutNow may be on its way
     * a new leader can take writes before this lease would run out. */
    if (node_transfer_in_progress_locked(n))
        return false;
    uint64_t sent[RAFT_MAX_ID + 1];
    for (uint32_t i = 0; i < n->members.n; i++) {
        uint32_t id = n->members.members[i].id;
        sent[id] = id == n->cfg.id ? now : n->peers[id].lease_sent_ms;
    }
    uint64_t since = node_quorum_value(n, sent);
    uint64_t lease_ms = n->cfg.election_timeout_min_ms - n->cfg.election_timeout_min_ms / 10;
    return since > 0 && now < since + lease_ms;
}

/* Where a read stands once it knows its read index (and round, if it
 * needs one): 0 done, -EAGAIN to keep waiting. Until a majority confirmed
 * the round, the node must still lead the term the read began in; after
 * that, the read only waits for the read index to be applied. */
static int read_status_locked(const struct raft_node *n, const struct client_waiter *w,
                              uint64_t term, uint64_t deadline)
{
    if (satisfied_locked(n, w))
        return 0;
    if (n->confirmed_round < w->round && still_leading_locked(n, term))
        return -EPERM;
    if (n->stopping)
        return -ECANCELED;
    if (node_now(n) >= deadline)
        return -ETIMEDOUT;
    return -EAGAIN;
}

/* Thesis §6.4 (ReadIndex): note the commit index, confirm leadership with a
 * round of heartbeats acknowledged by a majority, then wait until that index
 * is applied. Concurrent reads share rounds: one heartbeat confirms every
 * read that started before it was sent. With a read lease the round is not
 * needed (§6.4.1). */
int raft_read_barrier(struct raft_node *n, unsigned timeout_ms,
                      int32_t *leader_hint)
{
    uint64_t deadline = node_now(n) + timeout_ms;
    struct client_waiter w;
    waiter_init(&w);
    node_lock(n);
    uint64_t term = n->current_term;
    int rc = still_leading_locked(n, term);
    /* §6.4 step 1: a new leader's commit index is only known to be current
     * once an entry of its own term (the no-op) has committed. With no
     * condition set, the waiter is woken by the recheck that the no-op's
     * commit sends to every waiter. */
    while (rc == 0 && n->commit_index < n->leader_first_index) {
        enum wake k = wait_unlocking(n, &w, deadline);
        node_lock(n);
        rc = still_leading_locked(n, term);
        if (rc == 0 && k == WOKE_TIMEOUT)
            rc = -ETIMEDOUT;
    }
    if (rc == 0) {
        w.applied = n->commit_index; /* the read index */
        if (!clients_holds_lease_locked(n, node_now(n))) {
            /* A replicator already woken for an earlier round has not sent
             * yet and will carry this one too: one wake-up per round. */
            bool was_sent = node_some_peer_sent_round_locked(n);
            w.round = ++n->read_round;
            if (node_is_voter(n) && membership_voters(&n->members) == 1)
                n->confirmed_round = w.round; /* a sole voter confirms itself */
            if (was_sent)
                node_wake_peers_locked(n);
        }
        rc = read_status_locked(n, &w, term, deadline);
    }
    while (rc == -EAGAIN) {
        if (wait_unlocking(n, &w, deadline) == WOKE_DONE) {
            waiter_destroy(&w);
            *leader_hint = (int32_t)n->cfg.id;
            return 0;
        }
        node_lock(n);
        rc = read_status_locked(n, &w, term, deadline);
    }
    *leader_hint = rc == 0 ? (int32_t)n->cfg.id : n->leader_id;
    node_unlock(n);
    waiter_destroy(&w);
    return rc;
}
