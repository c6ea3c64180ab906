/*
 * replication.c - log replication (§5.3): the per-peer replicator threads
 * that send AppendEntries, the receiver's rules, the leader's commit index,
 * and the leader's disk syncer (thesis §10.2.1).
 */
#include "raft/node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- leader ---- */

void replication_become_leader_locked(struct raft_node *n)
{
    uint64_t now = raft_now_ms();
    n->role = RAFT_LEADER;
    n->leader_id = (int32_t)n->cfg.id;
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++) {
        struct peer *p = &n->peers[i];
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
    pthread_cond_broadcast(&n->peers_cond);
    pthread_cond_broadcast(&n->changed_cond);
}

void replication_advance_commit_locked(struct raft_node *n)
{
    uint64_t match[RAFT_MAX_NODES];
    for (uint32_t i = 0; i < n->cfg.n_nodes; i++)
        match[i] = n->peers[i].match_index;
    /* Thesis §10.2.1: the leader's own copy counts only once it is durable. */
    match[n->cfg.id] = n->durable_index;
    uint64_t q = commit_quorum_index(match, n->cfg.n_nodes);
    uint64_t next = commit_next_index(n->commit_index, q, log_term_at(&n->log, q),
                                      n->current_term);
    if (next == n->commit_index)
        return;
    node_log(n, RAFT_LOG_INFO, "commit %llu -> %llu (stored on a majority)",
             (unsigned long long)n->commit_index, (unsigned long long)next);
    bool noop_committed = n->commit_index < n->leader_first_index &&
                          next >= n->leader_first_index;
    n->commit_index = next;
    pthread_cond_signal(&n->applier_cond);
    if (noop_committed)
        node_wake_clients_locked(n, true); /* reads wait for the no-op */
}

/* Copies entries next_index.. (up to max_batch_bytes, at least one) into the
 * lane's reusable buffers, so that the call can run without the lock while
 * the log changes. Returns how many were copied. */
static uint32_t copy_batch_locked(struct raft_node *n, struct lane *l, uint64_t from)
{
    uint64_t last = log_last_index(&n->log);
    size_t count = 0, bytes = 0;
    while (from + count <= last) {
        const struct raft_entry *e = log_get(&n->log, from + count);
        /* Count each entry's framing too, so a batch of many small
         * entries also stays within one frame. */
        if (count > 0 && bytes + e->len + 16 > n->cfg.max_batch_bytes)
            break;
        bytes += e->len + 16;
        count++;
    }
    if (count > l->batch_cap) {
        struct raft_entry *b = realloc(l->batch, count * sizeof(*b));
        if (!b)
            return 0;
        l->batch = b;
        l->batch_cap = count;
    }
    if (bytes > l->bytes_cap) { /* a little more than needed: framing was counted */
        uint8_t *b = realloc(l->bytes, bytes);
        if (!b)
            return 0;
        l->bytes = b;
        l->bytes_cap = bytes;
    }
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        const struct raft_entry *e = log_get(&n->log, from + i);
        l->batch[i] = *e;
        l->batch[i].data = e->len ? l->bytes + off : NULL;
        if (e->len)
            memcpy(l->bytes + off, e->data, e->len);
        off += e->len;
    }
    return (uint32_t)count;
}

/* Fast backup (§5.3): skip the follower's whole conflicting term at once. */
static uint64_t back_up_locked(struct raft_node *n, struct peer *p, uint64_t prev,
                               const struct raft_append_entries_reply *r)
{
    uint64_t next = r->conflict_index;
    if (r->conflict_term != 0) {
        uint64_t last = log_last_index_of_term(&n->log, r->conflict_term);
        if (last != 0)
            next = last + 1;
    }
    if (next > prev)
        next = prev; /* always make progress */
    if (next < 1)
        next = 1;
    node_log(n, RAFT_LOG_DEBUG, "n%u rejected prev %llu (its conflict %llu@T%llu) -> next %llu",
             p->id, (unsigned long long)prev, (unsigned long long)r->conflict_index,
             (unsigned long long)r->conflict_term, (unsigned long long)next);
    return next;
}

static void note_call_failed_locked(struct raft_node *n, struct peer *p, int rc)
{
    /* Throttled: the first failure, then every 20th. */
    if (p->failures++ % 20 == 0)
        node_log(n, RAFT_LOG_DEBUG, "n%u unreachable (%s)%s", p->id, strerror(-rc),
                 p->failures > 1 ? ", still" : "");
    p->retry_at_ms = raft_now_ms() + n->cfg.heartbeat_ms;
}

/* A reply in the current term proves this node was still leader when the
 * peer answered: check-quorum, read rounds and read leases count it. */
static void note_ack_locked(struct raft_node *n, struct peer *p, uint64_t round,
                            uint64_t sent_ms)
{
    p->failures = 0;
    p->last_ack_ms = raft_now_ms();
    if (sent_ms > p->lease_sent_ms)
        p->lease_sent_ms = sent_ms;
    node_note_read_ack_locked(n, p, round);
}

/* While a request to p is in flight, another lane may send an AppendEntries
 * to a follower that is keeping up; probing for a match, snapshots and
 * votes go one at a time. */
static bool may_pipeline_locked(struct raft_node *n, struct peer *p)
{
    return n->role == RAFT_LEADER && p->replicating && p->next_index > n->log.base_index;
}

/* What is worth sending before the reply to the request in flight: the
 * rest of a backlog larger than one batch (a follower catching up), a read
 * round, or a heartbeat that is due. Entries that trickle in meanwhile wait
 * for the reply and then go together, so that the follower writes them
 * with one fdatasync: on a fast network that beats sending each at once. */
static bool worth_pipelining_locked(struct raft_node *n, struct peer *p, uint64_t now)
{
    return p->backlog || n->read_round > p->sent_round || now >= p->heartbeat_due_ms;
}

static bool has_work_locked(struct raft_node *n, struct peer *p, uint64_t now)
{
    if (now < p->retry_at_ms || p->sending)
        return false;
    if (p->in_flight > 0 &&
        (!may_pipeline_locked(n, p) || !worth_pipelining_locked(n, p, now)))
        return false;
    if (n->role == RAFT_PRE_CANDIDATE || n->role == RAFT_CANDIDATE)
        return p->vote_needed;
    if (n->role != RAFT_LEADER)
        return false;
    return p->next_index <= log_last_index(&n->log) || now >= p->heartbeat_due_ms ||
           n->read_round > p->sent_round;
}

/* When to look again if there is no work now (0: only when woken). Must
 * agree with has_work_locked, or the thread would spin. */
static uint64_t next_wakeup_locked(struct raft_node *n, struct peer *p)
{
    if (p->sending || (p->in_flight > 0 && !may_pipeline_locked(n, p)))
        return 0; /* the lane in flight does the rest */
    if (n->role == RAFT_LEADER)
        return p->retry_at_ms > p->heartbeat_due_ms ? p->retry_at_ms : p->heartbeat_due_ms;
    if ((n->role == RAFT_PRE_CANDIDATE || n->role == RAFT_CANDIDATE) && p->vote_needed)
        return p->retry_at_ms;
    return 0;
}

/* Sends req to p and waits for its reply, without the lock. With a
 * pipelining transport, the request is handed over while p->sending is set,
 * so requests to a peer leave in the order their lanes built them; the wait
 * for the reply runs without it, so that other lanes may send meanwhile. */
static int exchange_locked(struct raft_node *n, struct peer *p, const struct raft_msg *req,
                           struct raft_msg *reply, unsigned timeout_ms)
{
    const struct raft_transport *t = &n->transport;
    int rc;
    if (n->cfg.pipeline_depth == 1) {
        node_unlock(n);
        rc = t->call(t->ctx, p->id, req, reply, timeout_ms);
        pthread_mutex_lock(&n->mu);
        return rc;
    }
    uint64_t ticket;
    p->sending = true;
    node_unlock(n);
    rc = t->send(t->ctx, p->id, req, &ticket, timeout_ms);
    pthread_mutex_lock(&n->mu);
    p->sending = false;
    if (has_work_locked(n, p, raft_now_ms()))
        pthread_cond_broadcast(&n->peers_cond); /* for the next lane */
    if (rc)
        return rc;
    node_unlock(n);
    rc = t->await(t->ctx, p->id, ticket, reply, timeout_ms);
    pthread_mutex_lock(&n->mu);
    return rc;
}

/* After a failed or refused request, sending resumes from what it carried
 * (or from the follower's hint), one request at a time. Not clamped to
 * matchIndex: a follower whose disk lost a torn tail refuses entries it
 * once acknowledged, and must be sent them again. */
static void stop_pipelining_locked(struct peer *p, uint64_t next)
{
    p->replicating = false;
    if (next < p->next_index)
        p->next_index = next;
}

static void send_append_entries_locked(struct raft_node *n, struct lane *l)
{
    struct peer *p = l->peer;
    uint64_t prev = p->next_index - 1;
    struct raft_msg req = {.type = RAFT_MSG_APPEND_ENTRIES, .from = n->cfg.id}, reply;
    struct raft_append_entries *ae = &req.u.ae;
    uint64_t term = n->current_term;
    ae->term = term;
    ae->prev_log_index = prev;
    ae->prev_log_term = log_term_at(&n->log, prev);
    ae->leader_commit = n->commit_index;
    ae->n_entries = copy_batch_locked(n, l, p->next_index);
    ae->entries = l->batch;
    /* Pipelining: the next lane sends what follows this batch. */
    p->next_index += ae->n_entries;
    p->backlog = p->next_index <= log_last_index(&n->log);
    uint64_t round = n->read_round, sent_ms = node_lease_clock_ms();
    p->sent_round = round;
    p->heartbeat_due_ms = raft_now_ms() + n->cfg.heartbeat_ms;
    node_log(n, ae->n_entries ? RAFT_LOG_DEBUG : RAFT_LOG_TRACE,
             "-> n%u AppendEntries prev %llu@T%llu, %u entries, commit %llu", p->id,
             (unsigned long long)prev, (unsigned long long)ae->prev_log_term,
             ae->n_entries, (unsigned long long)ae->leader_commit);

    int rc = exchange_locked(n, p, &req, &reply, n->cfg.election_timeout_min_ms);

    /* Act on the reply only if nothing changed while unlocked (LABS: "drop
     * a reply if currentTerm differs from the term it was sent in"). */
    if (rc == 0 && reply.type == RAFT_MSG_APPEND_ENTRIES_REPLY &&
        reply.u.ae_reply.term > n->current_term) {
        node_is_stale_term_locked(n, reply.u.ae_reply.term, p->id);
        return;
    }
    if (n->current_term != term || n->role != RAFT_LEADER)
        return;
    if (rc != 0 || reply.type != RAFT_MSG_APPEND_ENTRIES_REPLY) {
        note_call_failed_locked(n, p, rc ? rc : -EPROTO);
        stop_pipelining_locked(p, prev + 1);
        return;
    }
    note_ack_locked(n, p, round, sent_ms);
    const struct raft_append_entries_reply *r = &reply.u.ae_reply;
    if (r->success) {
        /* matchIndex comes from what was sent, never from current state. */
        uint64_t match = prev + ae->n_entries;
        if (match > p->match_index)
            p->match_index = match;
        if (p->match_index + 1 > p->next_index)
            p->next_index = p->match_index + 1;
        p->replicating = true;
        replication_advance_commit_locked(n);
    } else {
        stop_pipelining_locked(p, back_up_locked(n, p, prev, r));
    }
}

/* One iteration of a lane: wait until this peer needs something (a vote
 * request, new entries, a heartbeat, a read confirmation), then send it and
 * handle the reply. Each request carries every entry the peer lacks (up to
 * max_batch_bytes), so batches grow with load; with pipelining, another lane
 * sends what is appended meanwhile without waiting for this reply. */
void *peer_replicator_main(void *arg)
{
    struct lane *l = arg;
    struct peer *p = l->peer;
    struct raft_node *n = p->node;
    pthread_mutex_lock(&n->mu);
    while (!n->stopping) {
        uint64_t now = raft_now_ms();
        if (!has_work_locked(n, p, now)) {
            node_wait_until_locked(n, &n->peers_cond, next_wakeup_locked(n, p));
            continue;
        }
        p->in_flight++;
        if (n->role != RAFT_LEADER)
            election_send_vote_locked(n, p);
        else if (p->next_index <= n->log.base_index)
            snapshot_send_locked(n, p);
        else
            send_append_entries_locked(n, l);
        p->in_flight--;
    }
    node_unlock(n);
    return NULL;
}

/* One iteration: when the node has entries its leader role appended but not
 * yet written, write them all with one append (group commit) without the
 * lock, then let them count towards commitment. Followers write their
 * entries themselves before answering, so only (ex-)leaders need this. */
void *disk_syncer_main(void *arg)
{
    struct raft_node *n = arg;
    struct raft_entry *batch = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&n->mu);
    while (!n->stopping) {
        uint64_t last = log_last_index(&n->log);
        if (n->disk_failed || n->durable_index >= last) {
            pthread_cond_wait(&n->syncer_cond, &n->mu);
            continue;
        }
        uint64_t from = n->durable_index + 1;
        size_t count = last - n->durable_index;
        if (count > cap) {
            struct raft_entry *b = realloc(batch, count * sizeof(*b));
            if (!b) {
                node_disk_failed_locked(n, "allocating a write batch", -ENOMEM);
                continue;
            }
            batch = b;
            cap = count;
        }
        /* The entries' data stays put while syncing is set: truncation and
         * compaction wait for it (node_wait_not_syncing_locked). */
        for (size_t i = 0; i < count; i++)
            batch[i] = *log_get(&n->log, from + i);
        n->syncing = true;
        node_unlock(n);
        int rc = n->storage.append(n->storage.ctx, from, batch, count);
        pthread_mutex_lock(&n->mu);
        n->syncing = false;
        pthread_cond_broadcast(&n->changed_cond);
        if (rc) {
            node_disk_failed_locked(n, "appending to the log", rc);
            continue;
        }
        n->durable_index = from + count - 1;
        /* A snapshot put off until these applied entries were stored
         * (maybe_snapshot_locked) can be taken now. */
        if (from <= n->last_applied)
            pthread_cond_signal(&n->applier_cond);
        if (n->role == RAFT_LEADER)
            replication_advance_commit_locked(n);
    }
    node_unlock(n);
    free(batch);
    return NULL;
}

/* ---- follower ---- */

static int reply_append(struct raft_node *n, struct raft_msg *reply, bool success,
                        uint64_t match, uint64_t conflict_term, uint64_t conflict_index)
{
    struct raft_append_entries_reply *r = &reply->u.ae_reply;
    r->term = n->current_term;
    r->success = success;
    r->match_index = match;
    r->conflict_term = conflict_term;
    r->conflict_index = conflict_index;
    return 0;
}

/* Figure 2, AppendEntries receiver rule 2: reply false if the log has no
 * entry at prevLogIndex whose term matches prevLogTerm. This applies to
 * heartbeats too: an empty AppendEntries is a consistency check. */
static bool consistency_check_locked(struct raft_node *n, uint64_t prev, uint64_t prev_term,
                                     struct raft_msg *reply)
{
    uint64_t last = log_last_index(&n->log);
    if (prev > last) {
        reply_append(n, reply, false, 0, 0, last + 1);
        return false;
    }
    uint64_t mine = log_term_at(&n->log, prev);
    if (mine != prev_term) {
        reply_append(n, reply, false, 0, mine, log_first_index_of_term(&n->log, prev));
        return false;
    }
    return true;
}

/* Rules 3 and 4: delete a conflicting entry and all that follow it, then
 * append the entries not already in the log. Entries that match are kept:
 * a delayed or duplicated AppendEntries must never take back entries that a
 * later one added. Returns 0 or -EIO. */
static int store_entries_locked(struct raft_node *n, uint64_t prev, uint32_t count,
                                const struct raft_entry *entries)
{
    uint32_t i = 0;
    for (; i < count; i++) {
        uint64_t index = prev + 1 + i;
        if (index > log_last_index(&n->log))
            break;
        if (log_term_at(&n->log, index) == entries[i].term)
            continue;
        node_log(n, RAFT_LOG_INFO, "entry %llu conflicts (mine T%llu, leader's T%llu) -> "
                 "delete %llu..%llu", (unsigned long long)index,
                 (unsigned long long)log_term_at(&n->log, index),
                 (unsigned long long)entries[i].term, (unsigned long long)index,
                 (unsigned long long)log_last_index(&n->log));
        int rc = n->storage.truncate(n->storage.ctx, index);
        if (rc) {
            node_disk_failed_locked(n, "truncating the log", rc);
            return -EIO;
        }
        log_truncate(&n->log, index);
        if (n->durable_index >= index)
            n->durable_index = index - 1;
        break;
    }
    if (i == count)
        return 0;
    uint64_t first = prev + 1 + i;
    for (uint32_t j = i; j < count; j++)
        if (log_append(&n->log, entries[j].term, entries[j].type, entries[j].data,
                       entries[j].len) != 0) {
            log_truncate(&n->log, first);
            return -ENOMEM;
        }
    /* Figure 2: new entries are durable before the reply says success. */
    int rc = n->storage.append(n->storage.ctx, first, entries + i, count - i);
    if (rc) {
        log_truncate(&n->log, first);
        node_disk_failed_locked(n, "appending to the log", rc);
        return -EIO;
    }
    n->durable_index = log_last_index(&n->log);
    node_log(n, RAFT_LOG_DEBUG, "appended entries %llu..%llu from n%d",
             (unsigned long long)first, (unsigned long long)(prev + count), n->leader_id);
    return 0;
}

int replication_recv_append_entries_locked(struct raft_node *n, const struct raft_msg *req,
                                           struct raft_msg *reply)
{
    const struct raft_append_entries *ae = &req->u.ae;
    /* Rule 1: reply false if term < currentTerm. */
    if (node_is_stale_term_locked(n, ae->term, req->from) || ae->term < n->current_term) {
        if (n->disk_failed)
            return -EIO;
        return reply_append(n, reply, false, 0, 0, 0);
    }
    /* §5.2: a candidate that hears from the leader of its term steps down. */
    if (n->role != RAFT_FOLLOWER || n->leader_id != (int32_t)req->from) {
        char why[64];
        snprintf(why, sizeof(why), "n%u leads T%llu", req->from,
                 (unsigned long long)ae->term);
        if (n->role == RAFT_FOLLOWER)
            node_log(n, RAFT_LOG_INFO, "%s -> follow it", why);
        node_become_follower_locked(n, ae->term, (int32_t)req->from, why);
    }
    n->leader_id = (int32_t)req->from;
    n->last_leader_contact_ms = raft_now_ms();
    election_reset_timer_locked(n);
    /* Only now: this very message may have deposed this node as leader.
     * Settling may wait for the disk syncer without the lock, so look at
     * the node again afterwards. */
    node_settle_log_locked(n);
    if (n->disk_failed)
        return -EIO;
    if (n->current_term != ae->term || n->role != RAFT_FOLLOWER)
        return reply_append(n, reply, false, 0, 0, ae->prev_log_index); /* try again */

    uint64_t prev = ae->prev_log_index, prev_term = ae->prev_log_term;
    uint32_t count = ae->n_entries;
    const struct raft_entry *entries = ae->entries;
    /* Entries up to the snapshot base are committed, so they match. */
    if (prev < n->log.base_index) {
        uint64_t skip = n->log.base_index - prev;
        if (skip >= count)
            return reply_append(n, reply, true, prev + count, 0, 0);
        entries += skip;
        count -= (uint32_t)skip;
        prev = n->log.base_index;
        prev_term = n->log.base_term;
    }
    if (!consistency_check_locked(n, prev, prev_term, reply))
        return 0;
    int rc = store_entries_locked(n, prev, count, entries);
    if (rc)
        return rc;
    /* Rule 5: commitIndex = min(leaderCommit, index of last new entry). */
    uint64_t last_new = prev + count;
    uint64_t commit = ae->leader_commit < last_new ? ae->leader_commit : last_new;
    if (commit > n->commit_index) {
        node_log(n, RAFT_LOG_INFO, "commit %llu -> %llu (from leader n%u)",
                 (unsigned long long)n->commit_index, (unsigned long long)commit, req->from);
        n->commit_index = commit;
        pthread_cond_signal(&n->applier_cond);
    }
    return reply_append(n, reply, true, last_new, 0, 0);
}
