/*
 * snapshot.c - applying committed entries, taking snapshots to compact the
 * log, and InstallSnapshot (§7, Figure 13).
 */
#include "raft/node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SNAPSHOT_BYTES (1ull << 32) /* refuse anything larger from the wire */
#define APPLY_BATCH 256

struct snapshot_ref *snapshot_new(uint64_t index, uint64_t term, uint8_t *data, size_t len)
{
    struct snapshot_ref *s = calloc(1, sizeof(*s));
    if (!s) {
        free(data);
        return NULL;
    }
    s->index = index;
    s->term = term;
    s->data = data;
    s->len = len;
    s->refs = 1;
    return s;
}

/* Called with the node's lock held (refs are guarded by it). */
void snapshot_release(struct snapshot_ref *s)
{
    if (--s->refs > 0)
        return;
    free(s->data);
    free(s);
}

static void replace_snapshot_locked(struct raft_node *n, struct snapshot_ref *s)
{
    if (n->snapshot)
        snapshot_release(n->snapshot);
    n->snapshot = s;
}

/* ---- the applier ---- */

/* Buffers the applier reuses to hold a batch of entries outside the lock. */
struct apply_batch {
    struct raft_entry *entries;
    uint8_t *bytes;
    size_t bytes_cap;
};

static size_t copy_committed_locked(struct raft_node *n, struct apply_batch *b)
{
    uint64_t from = n->last_applied + 1;
    size_t count = n->commit_index - n->last_applied, bytes = 0;
    if (count > APPLY_BATCH)
        count = APPLY_BATCH;
    for (size_t i = 0; i < count; i++)
        bytes += log_get(&n->log, from + i)->len;
    if (bytes > b->bytes_cap) {
        uint8_t *nb = realloc(b->bytes, bytes);
        if (!nb)
            return 0;
        b->bytes = nb;
        b->bytes_cap = bytes;
    }
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        const struct raft_entry *e = log_get(&n->log, from + i);
        b->entries[i] = *e;
        b->entries[i].data = e->len ? b->bytes + off : NULL;
        if (e->len)
            memcpy(b->bytes + off, e->data, e->len);
        off += e->len;
    }
    return count;
}

/* §7: once enough applied entries sit in the log, snapshot the state
 * machine and discard them. The snapshot is written without the node's lock
 * held, so the node keeps answering meanwhile. */
static void maybe_snapshot_locked(struct raft_node *n)
{
    uint64_t index = n->last_applied;
    if (n->cfg.snapshot_every == 0 || n->snapshotting || n->disk_failed ||
        index - n->log.base_index < n->cfg.snapshot_every)
        return;
    /* A leader's followers can commit entries before the leader's own copy
     * is on its disk (thesis §10.2.1: its copy counts only once durable),
     * so it may apply entries its syncer has not written yet. Snapshot
     * only entries this node has stored itself (§7: a snapshot replaces a
     * prefix of the stored log): compacting past durable_index would take
     * them from under the syncer, which would then read a compacted entry
     * or append them behind the snapshot. The syncer wakes the applier
     * once it has written them. If its disk keeps lagging under a steady
     * load, the snapshot could be put off at every turn: once the log holds
     * twice the limit, stop applying until the disk catches up. */
    if (index > n->durable_index) {
        if (index - n->log.base_index < 2 * n->cfg.snapshot_every)
            return;
        while (index > n->durable_index && !n->stopping && !n->disk_failed)
            pthread_cond_wait(&n->changed_cond, &n->mu);
        if (n->stopping || n->disk_failed || n->snapshotting)
            return;
    }
    uint64_t term = log_term_at(&n->log, index);
    n->snapshotting = true;
    node_unlock(n);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = n->fsm.snapshot(n->fsm.ctx, &data, &len);
    if (rc == 0)
        rc = n->storage.save_snapshot(n->storage.ctx, index, term, data, len);
    pthread_mutex_lock(&n->mu);
    n->snapshotting = false;
    pthread_cond_broadcast(&n->changed_cond);
    if (rc) {
        free(data);
        node_disk_failed_locked(n, "writing a snapshot", rc);
        return;
    }
    node_wait_not_syncing_locked(n);
    if (index > n->log.base_index)
        log_compact(&n->log, index, term);
    replace_snapshot_locked(n, snapshot_new(index, term, data, len));
    node_log(n, RAFT_LOG_INFO, "snapshot taken at %llu@T%llu (%zu bytes) -> log now starts "
             "after it", (unsigned long long)index, (unsigned long long)term, len);
}

static void restore_locked(struct raft_node *n)
{
    struct snapshot_ref *s = n->to_restore;
    n->to_restore = NULL;
    node_unlock(n);
    int rc = n->fsm.restore(n->fsm.ctx, s->index, s->data, s->len);
    pthread_mutex_lock(&n->mu);
    if (rc)
        node_disk_failed_locked(n, "loading a received snapshot", rc);
    else if (s->index > n->last_applied)
        n->last_applied = s->index;
    snapshot_release(s);
    node_wake_clients_locked(n, false);
}

/* One iteration: load a received snapshot, or hand the next committed
 * entries to the state machine, in order and outside the lock; then
 * snapshot if the log has grown enough. The only thread that touches the
 * state machine, so entries are applied exactly once and without gaps. */
void *applier_main(void *arg)
{
    struct raft_node *n = arg;
    struct apply_batch b = {.entries = calloc(APPLY_BATCH, sizeof(struct raft_entry))};
    pthread_mutex_lock(&n->mu);
    while (!n->stopping && b.entries) {
        if (n->async_done) {
            node_call_async_done_locked(n);
            continue;
        }
        if (n->to_restore) {
            restore_locked(n);
            continue;
        }
        if (n->last_applied >= n->commit_index || n->disk_failed) {
            maybe_snapshot_locked(n);
            /* After a disk failure there is nothing to do even with entries
             * left to apply: sleep, or this loop would spin holding mu. */
            if (!n->to_restore && !n->async_done &&
                (n->last_applied >= n->commit_index || n->disk_failed) && !n->stopping)
                pthread_cond_wait(&n->applier_cond, &n->mu);
            continue;
        }
        uint64_t from = n->last_applied + 1;
        size_t count = copy_committed_locked(n, &b);
        node_unlock(n);
        for (size_t i = 0; i < count; i++)
            n->fsm.apply(n->fsm.ctx, from + i, &b.entries[i]);
        pthread_mutex_lock(&n->mu);
        if (n->last_applied == from - 1)
            n->last_applied = from + count - 1;
        node_wake_clients_locked(n, false);
        maybe_snapshot_locked(n); /* also under steady load, or the log grows unbounded */
    }
    node_unlock(n);
    free(b.entries);
    free(b.bytes);
    return NULL;
}

/* ---- InstallSnapshot, leader side ---- */

void snapshot_send_locked(struct raft_node *n, struct peer *p)
{
    struct snapshot_ref *s = n->snapshot;
    if (!s) { /* cannot happen: the log base comes from a snapshot */
        p->next_index = n->log.base_index + 1;
        return;
    }
    if (p->snapshot_offset > s->len)
        p->snapshot_offset = 0;
    size_t chunk = s->len - p->snapshot_offset;
    if (chunk > n->cfg.snapshot_chunk_bytes)
        chunk = n->cfg.snapshot_chunk_bytes;
    struct raft_msg req = {.type = RAFT_MSG_INSTALL_SNAPSHOT, .from = n->cfg.id}, reply;
    struct raft_install_snapshot *is = &req.u.is;
    uint64_t term = n->current_term;
    is->term = term;
    is->last_index = s->index;
    is->last_term = s->term;
    is->offset = p->snapshot_offset;
    is->total = s->len;
    is->len = (uint32_t)chunk;
    is->data = s->data + p->snapshot_offset;
    is->done = p->snapshot_offset + chunk == s->len;
    uint64_t round = n->read_round;
    p->sent_round = round;
    p->heartbeat_due_ms = raft_now_ms() + n->cfg.heartbeat_ms;
    s->refs++; /* keeps the data alive while unlocked */
    if (is->offset == 0)
        node_log(n, RAFT_LOG_INFO, "n%u needs entry %llu, compacted away -> send snapshot "
                 "up to %llu (%zu bytes)", p->id, (unsigned long long)p->next_index,
                 (unsigned long long)s->index, s->len);

    node_unlock(n);
    int rc = n->transport.call(n->transport.ctx, p->id, &req, &reply,
                               n->cfg.election_timeout_max_ms * 2);
    pthread_mutex_lock(&n->mu);
    uint64_t index = s->index;
    snapshot_release(s);

    if (rc == 0 && reply.type == RAFT_MSG_INSTALL_SNAPSHOT_REPLY &&
        reply.u.is_reply.term > n->current_term) {
        node_is_stale_term_locked(n, reply.u.is_reply.term, p->id);
        return;
    }
    if (n->current_term != term || n->role != RAFT_LEADER)
        return;
    if (rc != 0 || reply.type != RAFT_MSG_INSTALL_SNAPSHOT_REPLY) {
        p->retry_at_ms = raft_now_ms() + n->cfg.heartbeat_ms;
        return;
    }
    p->failures = 0;
    p->last_ack_ms = raft_now_ms();
    node_note_read_ack_locked(n, p, round);
    if (reply.u.is_reply.next_offset < is->total) {
        p->snapshot_offset = reply.u.is_reply.next_offset;
        return;
    }
    p->snapshot_offset = 0;
    if (index > p->match_index)
        p->match_index = index;
    p->next_index = p->match_index + 1;
    node_log(n, RAFT_LOG_INFO, "n%u installed the snapshot up to %llu",
             p->id, (unsigned long long)index);
    replication_advance_commit_locked(n);
}

/* ---- InstallSnapshot, follower side (Figure 13) ---- */

static int reply_install(struct raft_node *n, struct raft_msg *reply, uint64_t next_offset)
{
    reply->u.is_reply.term = n->current_term;
    reply->u.is_reply.next_offset = next_offset;
    return 0;
}

/* Figure 13 rules 2-5: gather chunks in order; a chunk that does not follow
 * what we hold restarts the transfer. Returns true when the snapshot is
 * complete. */
static bool gather_chunk_locked(struct raft_node *n, const struct raft_install_snapshot *is,
                                struct raft_msg *reply)
{
    if (is->offset == 0) {
        free(n->incoming);
        n->incoming = NULL;
        n->incoming_len = n->incoming_cap = 0;
        n->incoming_index = is->last_index;
        n->incoming_term = is->last_term;
    } else if (is->last_index != n->incoming_index || is->last_term != n->incoming_term ||
               is->offset != n->incoming_len) {
        bool same = is->last_index == n->incoming_index && is->last_term == n->incoming_term;
        reply_install(n, reply, same ? n->incoming_len : 0);
        return false;
    }
    size_t want = n->incoming_len + is->len;
    if (want > n->incoming_cap) {
        size_t cap = is->total > want ? (size_t)is->total : want;
        uint8_t *b = realloc(n->incoming, cap ? cap : 1);
        if (!b) {
            reply_install(n, reply, 0);
            return false;
        }
        n->incoming = b;
        n->incoming_cap = cap;
    }
    if (is->len)
        memcpy(n->incoming + n->incoming_len, is->data, is->len);
    n->incoming_len = want;
    if (!is->done) {
        reply_install(n, reply, n->incoming_len);
        return false;
    }
    return true;
}

/* Rules 6-8: keep the log suffix after the snapshot if the log has the
 * snapshot's last entry; otherwise discard the whole log. Then the state
 * machine is reset from the snapshot (by the applier). */
static int install_locked(struct raft_node *n, uint64_t index, uint64_t term)
{
    bool keep_suffix = log_term_at(&n->log, index) == term && index <= log_last_index(&n->log);
    if (!keep_suffix) {
        /* Truncate before saving the snapshot: a crash in between leaves a
         * shorter log, never a log whose suffix contradicts the snapshot. */
        int rc = n->storage.truncate(n->storage.ctx, n->log.base_index + 1);
        if (rc) {
            node_disk_failed_locked(n, "truncating the log", rc);
            return -EIO;
        }
        log_truncate(&n->log, n->log.base_index + 1);
    }
    uint8_t *data = n->incoming;
    size_t len = n->incoming_len;
    int rc = n->storage.save_snapshot(n->storage.ctx, index, term, data, len);
    if (rc) {
        node_disk_failed_locked(n, "saving a received snapshot", rc);
        return -EIO;
    }
    n->incoming = NULL;
    n->incoming_len = n->incoming_cap = 0;
    log_compact(&n->log, index, term);
    n->durable_index = log_last_index(&n->log);
    struct snapshot_ref *s = snapshot_new(index, term, data, len);
    if (!s)
        return -ENOMEM;
    replace_snapshot_locked(n, s);
    if (n->to_restore)
        snapshot_release(n->to_restore);
    s->refs++;
    n->to_restore = s;
    if (index > n->commit_index)
        n->commit_index = index;
    pthread_cond_signal(&n->applier_cond);
    node_log(n, RAFT_LOG_INFO, "installed snapshot up to %llu@T%llu from n%d (%zu bytes), %s",
             (unsigned long long)index, (unsigned long long)term, n->leader_id, len,
             keep_suffix ? "kept the log after it" : "discarded the whole log");
    return 0;
}

int snapshot_recv_install_locked(struct raft_node *n, const struct raft_msg *req,
                                 struct raft_msg *reply)
{
    const struct raft_install_snapshot *is = &req->u.is;
    if (is->total > MAX_SNAPSHOT_BYTES || is->offset > is->total ||
        is->len > is->total - is->offset)
        return -EINVAL;
    /* Rule 1: reply immediately if term < currentTerm. */
    if (node_is_stale_term_locked(n, is->term, req->from) || is->term < n->current_term) {
        if (n->disk_failed)
            return -EIO;
        return reply_install(n, reply, 0);
    }
    if (n->role != RAFT_FOLLOWER || n->leader_id != (int32_t)req->from) {
        char why[64];
        snprintf(why, sizeof(why), "n%u leads T%llu", req->from, (unsigned long long)is->term);
        node_become_follower_locked(n, is->term, (int32_t)req->from, why);
    }
    n->leader_id = (int32_t)req->from;
    n->last_leader_contact_ms = raft_now_ms();
    election_reset_timer_locked(n);
    /* Only now: this very message may have deposed this node as leader.
     * Both waits may drop the lock, so look at the node again afterwards. */
    node_settle_log_locked(n);
    while (n->snapshotting)
        pthread_cond_wait(&n->changed_cond, &n->mu);
    if (n->disk_failed)
        return -EIO;
    if (n->current_term != is->term || n->role != RAFT_FOLLOWER)
        return reply_install(n, reply, 0);
    /* Already covered by what this node has committed: nothing to do. */
    if (is->last_index <= n->commit_index)
        return reply_install(n, reply, is->total);
    if (!gather_chunk_locked(n, is, reply))
        return 0;
    int rc = install_locked(n, is->last_index, is->last_term);
    if (rc)
        return rc;
    return reply_install(n, reply, is->total);
}
