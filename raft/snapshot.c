/*
 * snapshot.c - log compaction (§7): taking a snapshot of the state machine
 * to discard the log before it, and InstallSnapshot (Figure 13), which
 * sends that snapshot in chunks to a follower that needs compacted entries.
 */
#include "raft/node.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SNAPSHOT_BYTES (1ull << 32) /* refuse anything larger from the wire */

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
    if (membership_snapshot_split(data, len, &s->members, &s->has_members,
                                  &s->state_offset) != 0) {
        free(data);
        free(s);
        return NULL;
    }
    return s;
}

struct snapshot_ref *snapshot_new_stored(uint64_t index, uint64_t term, size_t len,
                                         const struct raft_membership *members,
                                         size_t state_offset)
{
    struct snapshot_ref *s = calloc(1, sizeof(*s));
    if (s)
        *s = (struct snapshot_ref){.index = index, .term = term, .len = len, .refs = 1,
                                   .has_members = members != NULL,
                                   .state_offset = state_offset};
    if (s && members)
        s->members = *members;
    return s;
}

int snapshot_of_persisted(struct raft_node *n, struct raft_persisted *p,
                          struct snapshot_ref **out)
{
    if (p->snapshot) {
        *out = snapshot_new(p->snapshot_index, p->snapshot_term, p->snapshot, p->snapshot_len);
        p->snapshot = NULL;
        return *out ? 0 : -ENOMEM;
    }
    /* Left in storage: only its head is read, for the configuration (§7). */
    uint8_t head[MEMBERSHIP_SNAPSHOT_HEADER_MAX];
    size_t len = p->snapshot_len < sizeof(head) ? p->snapshot_len : sizeof(head);
    struct raft_membership m;
    bool found;
    size_t offset;
    int rc = n->storage.read_snapshot
                 ? n->storage.read_snapshot(n->storage.ctx, p->snapshot_index, 0, head, len)
                 : -EINVAL;
    if (rc == 0 && membership_snapshot_split(head, len, &m, &found, &offset) != 0)
        rc = -EBADMSG;
    *out = rc ? NULL : snapshot_new_stored(p->snapshot_index, p->snapshot_term,
                                           p->snapshot_len, found ? &m : NULL, offset);
    return rc ? rc : *out ? 0 : -ENOMEM;
}

/* The state machine's bytes of a snapshot, for restore to read in order. */
struct restore_source {
    struct raft_node *n;
    const struct snapshot_ref *s;
    size_t at; /* the next byte, counted from the snapshot's start */
};

static int read_restore_source(void *src, uint8_t *buf, size_t len)
{
    struct restore_source *r = src;
    const struct snapshot_ref *s = r->s;
    if (len > s->len - r->at)
        return -EINVAL;
    int rc = 0;
    if (s->data)
        memcpy(buf, s->data + r->at, len);
    else
        rc = r->n->storage.read_snapshot(r->n->storage.ctx, s->index, r->at, buf, len);
    r->at += len;
    return rc;
}

int snapshot_restore(struct raft_node *n, const struct snapshot_ref *s)
{
    struct restore_source src = {.n = n, .s = s, .at = s->state_offset};
    return n->fsm.restore(n->fsm.ctx, s->index, s->len - s->state_offset, read_restore_source,
                          &src);
}

/* Where the snapshotter's bytes go: straight to storage when it takes a
 * snapshot piece by piece; else into a buffer for save_snapshot, which the
 * node then keeps to send. */
struct snapshot_sink {
    const struct raft_storage *storage;
    void *writer; /* the storage's, or NULL: buffered */
    uint8_t *buf;
    size_t len, cap;
};

static int sink_write(void *ctx, const uint8_t *data, size_t len)
{
    struct snapshot_sink *k = ctx;
    if (k->writer) {
        k->len += len;
        return k->storage->write_snapshot(k->writer, data, len);
    }
    if (k->len + len > k->cap) {
        size_t cap = k->cap ? k->cap : 4096;
        while (cap < k->len + len)
            cap *= 2;
        uint8_t *b = realloc(k->buf, cap);
        if (!b)
            return -ENOMEM;
        k->buf = b;
        k->cap = cap;
    }
    memcpy(k->buf + k->len, data, len);
    k->len += len;
    return 0;
}

/* The configuration the snapshot covers, then the state machine's bytes
 * (§7), into storage; releases the view. The snapshot it made, or NULL
 * with *rc set. */
static struct snapshot_ref *store_snapshot(struct raft_node *n, const struct snapshot_job *job,
                                           int *rc)
{
    const struct raft_storage *st = &n->storage;
    struct snapshot_sink sink = {.storage = st};
    bool streamed = node_storage_streams(st);
    *rc = streamed ? st->begin_snapshot(st->ctx, job->index, job->term, &sink.writer) : 0;
    bool begun = streamed && *rc == 0;
    uint8_t header[MEMBERSHIP_SNAPSHOT_HEADER_MAX];
    size_t hlen = membership_snapshot_header(&job->members, header);
    if (*rc == 0)
        *rc = sink_write(&sink, header, hlen);
    if (*rc == 0)
        *rc = n->fsm.snapshot_serialize(n->fsm.ctx, job->view, sink_write, &sink);
    else
        n->fsm.snapshot_serialize(n->fsm.ctx, job->view, NULL, NULL);
    if (begun) {
        int end = st->end_snapshot(st->ctx, sink.writer, *rc == 0);
        if (*rc == 0)
            *rc = end;
    } else if (!streamed && *rc == 0) {
        *rc = st->save_snapshot(st->ctx, job->index, job->term, sink.buf, sink.len);
    }
    struct snapshot_ref *s = NULL;
    if (*rc == 0)
        s = streamed ? snapshot_new_stored(job->index, job->term, sink.len, &job->members, hlen)
                     : snapshot_new(job->index, job->term, sink.buf, sink.len);
    else
        free(sink.buf);
    if (*rc == 0 && !s)
        *rc = -ENOMEM;
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

void snapshot_leave_in_storage_locked(struct raft_node *n)
{
    struct snapshot_ref *s = n->snapshot;
    if (s && s->data && s->refs == 1 && n->storage.read_snapshot) {
        free(s->data);
        s->data = NULL;
    }
}

int snapshot_read_chunk_drops_lock(struct raft_node *n, struct lane *l, struct rpc *rpc)
{
    struct raft_install_snapshot *is = &rpc->req.u.is;
    if (rpc->req.type != RAFT_MSG_INSTALL_SNAPSHOT || rpc->snapshot->data || is->len == 0)
        return 0;
    if (is->len > l->bytes_cap) {
        uint8_t *b = realloc(l->bytes, is->len);
        if (!b)
            return -ENOMEM;
        l->bytes = b;
        l->bytes_cap = is->len;
    }
    node_unlock(n);
    int rc = n->storage.read_snapshot(n->storage.ctx, is->last_index, is->offset, l->bytes,
                                      is->len);
    node_lock(n);
    is->data = l->bytes;
    return rc;
}

/* When the log is long enough to snapshot, times `times` (§7). By size,
 * the default: once the log's applied entries (the ones a snapshot would
 * take away) hold snapshot_log_ratio times the
 * bytes of the last snapshot (and at least snapshot_log_min_bytes, so
 * that a small state still compacts). The ratio trades the log's space
 * on disk against the snapshots' writes (thesis §5.1.3 discusses it as an
 * "expansion factor"): the log holds up to ratio x S bytes beside a
 * snapshot of S bytes, and a snapshot is written once per ratio x S bytes
 * of log, so snapshots write 1 / ratio bytes per byte of log, whatever
 * the size of the state (with the default of 1: the log at most as large
 * as the state, and one byte of snapshot per byte of log). Memory does
 * not grow with the ratio when storage can read entries back: applied
 * entries then leave memory (apply.c). Otherwise the log is all in memory
 * and adds up to the ratio's share of the state. A fixed count of
 * entries, snapshot_every, instead makes a large state snapshot ever more
 * often in bytes. */
static bool log_outgrew_locked(const struct raft_node *n, uint64_t index, uint64_t times)
{
    if (n->cfg.snapshot_every > 0)
        return index - n->log.base_index >= times * n->cfg.snapshot_every;
    if (n->cfg.snapshot_log_min_bytes == 0)
        return false;
    double limit = n->snapshot ? n->cfg.snapshot_log_ratio * (double)n->snapshot->len : 0;
    if (limit < (double)n->cfg.snapshot_log_min_bytes)
        limit = (double)n->cfg.snapshot_log_min_bytes;
    uint64_t applied = n->log.bytes - log_bytes_after(&n->log, index);
    return (double)applied >= (double)times * limit;
}

/* §7: once enough applied entries sit in the log, snapshot the state
 * machine and discard them. The applier only captures the state (the
 * state machine's copy-on-write view, made between two applies); the
 * snapshotter thread writes it without the node's lock, so the node keeps
 * answering and applying meanwhile (thesis §5.1). */
void snapshot_take_if_due_drops_lock(struct raft_node *n)
{
    NODE_ASSERT_LOCKED(n);
    /* A snapshot received from the leader and not yet restored is newer
     * than the state machine: nothing it holds is worth a snapshot. */
    if (n->to_restore || n->last_applied <= n->log.base_index)
        return;
    /* LAB(snapshots): capture the state machine when the log is long enough (§7) */
    uint64_t index = n->last_applied;
    if (n->snapshotting || n->disk_failed || n->stopping || !log_outgrew_locked(n, index, 1))
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
        if (!log_outgrew_locked(n, index, 2))
            return;
        while (index > n->durable_index && !n->stopping && !n->disk_failed)
            node_wait_until(n, &n->changed_cond, 0);
        if (n->stopping || n->disk_failed || n->snapshotting || index != n->last_applied)
            return;
    }
    n->snapshotting = true;
    n->job.index = index;
    n->job.term = log_term_at(&n->log, index);
    reconfigure_as_of_locked(n, index, &n->job.members);
    /* The applier is the only thread that touches the state machine, and
     * it applies nothing while it captures: the view is as of `index`. */
    node_unlock(n);
    uint64_t start = node_now(n);
    void *view = NULL;
    int rc = n->fsm.snapshot_capture(n->fsm.ctx, &view);
    node_lock(n);
    n->job.capture_ms = node_now(n) - start;
    if (rc) {
        n->snapshotting = false;
        node_disk_failed_locked(n, "capturing the state for a snapshot", rc);
        return;
    }
    n->job.view = view;
    pthread_cond_signal(&n->snapshotter_cond);
    /* STUB: (void)log_outgrew_locked; */
    /* END LAB */
}

/* Writes the captured state as the snapshot at job.index, then compacts
 * the log before it. The node counts as snapshotting until the log is
 * compacted: were the applier to see the log still long meanwhile, it
 * would take a second snapshot of nearly the same state. Returns the
 * bytes of entries the compaction freed. */
static uint64_t write_snapshot_drops_lock(struct raft_node *n)
{
    /* LAB(snapshots): serialize the captured state, store it, compact the log (§7) */
    struct snapshot_job job = n->job;
    n->job.view = NULL;
    node_unlock(n);
    uint64_t start = node_now(n);
    int rc;
    struct snapshot_ref *s = store_snapshot(n, &job, &rc);
    node_lock(n);
    while (rc == 0 && n->syncing) /* it reads the entries that compaction frees */
        node_wait_until(n, &n->changed_cond, 0);
    n->snapshotting = false;
    pthread_cond_broadcast(&n->changed_cond);
    /* While this node wrote, a newer snapshot may have been installed from
     * the leader (storage then refuses this one with -ESTALE, and the log
     * starts after it by now): it covers this one, which is dropped. */
    if ((rc == -ESTALE || rc == 0) && job.index <= n->log.base_index) {
        if (s)
            snapshot_release(s);
        node_log(n, RAFT_LOG_DEBUG, "snapshot at %llu dropped: the one received from the "
                 "leader covers it", (unsigned long long)job.index);
        return 0;
    }
    if (rc) {
        node_disk_failed_locked(n, "writing a snapshot", rc);
        return 0;
    }
    n->base_members = job.members;
    uint64_t resident = n->log.resident;
    log_compact(&n->log, job.index, job.term);
    uint64_t freed = resident - n->log.resident;
    reconfigure_sync_locked(n);
    replace_snapshot_locked(n, s);
    snapshot_leave_in_storage_locked(n);
    node_log(n, RAFT_LOG_INFO, "snapshot taken at %llu@T%llu (%zu bytes; state captured in "
             "%llu ms, then written in %llu ms while entries were applied) -> log now starts "
             "after it", (unsigned long long)job.index, (unsigned long long)job.term, s->len,
             (unsigned long long)job.capture_ms, (unsigned long long)(node_now(n) - start));
    return freed;
    /* STUB: (void)replace_snapshot_locked; (void)store_snapshot; */
    /* END LAB: n->fsm.snapshot_serialize(n->fsm.ctx, n->job.view, NULL, NULL), n->job.view = NULL, n->snapshotting = false, pthread_cond_broadcast(&n->changed_cond); return 0; */
}

/* Compaction frees the log's entries, which lie scattered among the
 * state machine's own allocations. glibc keeps memory freed inside its
 * heaps (it gives back only what is free at a heap's top), so the process
 * would go on holding as much memory as its log ever held, besides the
 * state: with 300 MB of state, a leader held 1.5 times it. malloc_trim
 * hands every whole free page back to the system. It takes tens of
 * milliseconds over a gigabyte of heap, and the pages are faulted in
 * again when reused, so it runs only after a compaction that freed enough
 * to matter, and without the node's lock. */
#define GIVE_BACK_MIN_BYTES (64ull << 20)

static void give_back_freed_memory_drops_lock(struct raft_node *n, uint64_t freed)
{
#ifdef __GLIBC__
    if (freed < GIVE_BACK_MIN_BYTES)
        return;
    node_unlock(n);
    uint64_t start = node_now(n);
    malloc_trim(0);
    uint64_t took = node_now(n) - start;
    node_lock(n);
    node_log(n, RAFT_LOG_DEBUG, "compaction freed %llu MB of entries: handed the free memory "
             "back to the system in %llu ms", (unsigned long long)(freed >> 20),
             (unsigned long long)took);
#else
    (void)n;
    (void)freed;
#endif
}

/* The snapshotter thread: writes each state the applier captured. */
void *snapshotter_main(void *arg)
{
    struct raft_node *n = arg;
    node_lock(n);
    while (!n->stopping) {
        if (n->job.view)
            give_back_freed_memory_drops_lock(n, write_snapshot_drops_lock(n));
        else
            node_wait_until(n, &n->snapshotter_cond, 0);
    }
    /* A state captured as the node stopped is not written; whoever waits
     * for the snapshot to be done must not wait for ever. */
    if (n->job.view) {
        n->fsm.snapshot_serialize(n->fsm.ctx, n->job.view, NULL, NULL);
        n->job.view = NULL;
        n->snapshotting = false;
        pthread_cond_broadcast(&n->changed_cond);
    }
    node_unlock(n);
    return NULL;
}

/* ---- InstallSnapshot, leader side ---- */

/* The next chunk of the latest snapshot for peer p, which needs entries
 * that were compacted away. The request holds a reference to the data, so
 * that it stays alive while the chunk is on its way. */
void snapshot_prepare_install_locked(struct raft_node *n, struct peer *p, uint64_t now,
                                     struct rpc *out)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(snapshots): the next chunk of the snapshot (Figure 13 arguments) */
    struct snapshot_ref *s = n->snapshot;
    if (p->snapshot_offset > s->len)
        p->snapshot_offset = 0;
    size_t chunk = s->len - p->snapshot_offset;
    if (chunk > n->cfg.snapshot_chunk_bytes)
        chunk = n->cfg.snapshot_chunk_bytes;
    struct raft_install_snapshot *is = &out->req.u.is;
    out->req.type = RAFT_MSG_INSTALL_SNAPSHOT;
    is->term = n->current_term;
    is->last_index = s->index;
    is->last_term = s->term;
    is->offset = p->snapshot_offset;
    is->total = s->len;
    is->len = (uint32_t)chunk;
    is->data = s->data ? s->data + p->snapshot_offset : NULL; /* else read by the lane */
    is->done = p->snapshot_offset + chunk == s->len;
    out->round = p->sent_round = n->read_round;
    out->timeout_ms = n->cfg.election_timeout_max_ms * 2;
    p->heartbeat_due_ms = now + n->cfg.heartbeat_ms;
    s->refs++;
    out->snapshot = s;
    if (is->offset == 0)
        node_log(n, RAFT_LOG_INFO, "n%u needs entry %llu, compacted away -> send snapshot "
                 "up to %llu (%zu bytes)", p->id, (unsigned long long)p->next_index,
                 (unsigned long long)s->index, s->len);
    /* END LAB: (void)p; (void)now; (void)out; */
}

void snapshot_handle_install_reply_locked(struct raft_node *n, struct peer *p,
                                         const struct rpc *sent, int rc,
                                         const struct raft_msg *reply, uint64_t now)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(snapshots): the next offset, or matchIndex once it is installed (Figure 13, §7) */
    const struct raft_install_snapshot *is = &sent->req.u.is;
    if (rc != 0) {
        p->retry_at_ms = now + n->cfg.heartbeat_ms;
        return;
    }
    node_note_ack_locked(n, p, sent, now);
    if (reply->u.is_reply.next_offset < is->total) {
        p->snapshot_offset = reply->u.is_reply.next_offset;
        return;
    }
    p->snapshot_offset = 0;
    if (is->last_index > p->match_index)
        p->match_index = is->last_index;
    p->next_index = p->match_index + 1;
    node_log(n, RAFT_LOG_INFO, "n%u installed the snapshot up to %llu",
             p->id, (unsigned long long)is->last_index);
    node_advance_commit_locked(n);
    /* END LAB: (void)p; (void)sent; (void)rc; (void)reply; (void)now; */
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
    /* LAB(snapshots): gather the chunks in order (Figure 13 receiver rules 2-5) */
    struct incoming_snapshot *in = &n->incoming;
    int rc = 0;
    if (is->offset == 0) {
        rc = incoming_begin_locked(n, is->last_index, is->last_term);
    } else if (!in->open || is->last_index != in->index || is->last_term != in->term ||
               is->offset != in->len) {
        bool same = in->open && is->last_index == in->index && is->last_term == in->term;
        reply_install(n, reply, same ? in->len : 0);
        return false;
    }
    if (rc == 0) {
        uint64_t started = node_now(n);
        rc = incoming_append_locked(n, is->data, is->len, is->total);
        node_warn_slow_disk_locked(n, node_now(n) - started, false,
                                   "writing %u bytes of the snapshot up to %llu", is->len,
                                   (unsigned long long)is->last_index);
    }
    if (rc) {
        incoming_abort_locked(n);
        if (rc != -ENOMEM) /* out of memory: the leader starts over */
            node_disk_failed_locked(n, "receiving a snapshot", rc);
        reply_install(n, reply, 0);
        return false;
    }
    if (!is->done) {
        reply_install(n, reply, in->len);
        return false;
    }
    return true;
    /* STUB: (void)n; (void)is; (void)reply; */
    /* END LAB: return false; */
}

static bool carries_valid_configuration(const struct raft_node *n)
{
    struct raft_membership m;
    bool found;
    size_t offset;
    return incoming_configuration(n, &m, &found, &offset) == 0;
}

/* The snapshot received, stored, and the reference to it; NULL with *rc
 * set on failure. */
static struct snapshot_ref *store_received_locked(struct raft_node *n, int *rc)
{
    const struct incoming_snapshot *in = &n->incoming;
    struct raft_membership m;
    bool found;
    size_t offset;
    uint8_t *data;
    struct snapshot_ref *s = NULL;
    *rc = incoming_configuration(n, &m, &found, &offset);
    if (*rc == 0)
        *rc = incoming_store_locked(n, &data);
    if (*rc == 0) {
        s = data ? snapshot_new(in->index, in->term, data, (size_t)in->len)
                 : snapshot_new_stored(in->index, in->term, (size_t)in->len,
                                       found ? &m : NULL, offset);
        if (!s)
            *rc = -ENOMEM;
    }
    incoming_abort_locked(n);
    return s;
}

/* Rules 6-8: keep the log suffix after the snapshot if the log has the
 * snapshot's last entry; otherwise discard the whole log. Then the state
 * machine is reset from the snapshot (by the applier). */
static int install_locked(struct raft_node *n, uint64_t index, uint64_t term)
{
    /* LAB(snapshots): keep or discard the log, save, compact, restore (Figure 13 rules 6-8) */
    bool keep_suffix = log_term_at(&n->log, index) == term && index <= log_last_index(&n->log);
    if (!keep_suffix && index <= log_last_index(&n->log)) {
        /* Another entry at the snapshot's last index: it and every entry
         * after it come from another history (Log Matching, §5.3) and are
         * cut before the snapshot is saved, so that a crash in between
         * never leaves a log whose suffix contradicts the snapshot. The
         * entries before it the snapshot replaces when it is saved (and
         * those up to commitIndex are in the snapshot as they are here:
         * they may even be in this node's own snapshot, being stored at
         * this moment by the snapshotter). */
        int rc = n->storage.truncate(n->storage.ctx, index);
        if (rc) {
            node_disk_failed_locked(n, "truncating the log", rc);
            return -EIO;
        }
        log_truncate(&n->log, index);
    }
    int rc;
    uint64_t started = node_now(n);
    struct snapshot_ref *s = store_received_locked(n, &rc);
    if (rc) {
        node_disk_failed_locked(n, "saving a received snapshot", rc);
        return -EIO;
    }
    node_warn_slow_disk_locked(n, node_now(n) - started, false,
                               "saving the snapshot up to %llu", (unsigned long long)index);
    log_compact(&n->log, index, term);
    n->durable_index = log_last_index(&n->log);
    replace_snapshot_locked(n, s);
    /* §7: the configuration the snapshot covers is now the log's base. */
    if (s->has_members)
        reconfigure_set_base_locked(n, &s->members);
    if (n->to_restore)
        snapshot_release(n->to_restore);
    s->refs++;
    n->to_restore = s;
    if (index > n->commit_index)
        n->commit_index = index;
    node_wake_applier_locked(n);
    node_log(n, RAFT_LOG_INFO, "installed snapshot up to %llu@T%llu from n%d (%zu bytes), %s",
             (unsigned long long)index, (unsigned long long)term, n->leader_id, s->len,
             keep_suffix ? "kept the log after it" : "discarded the whole log");
    return 0;
    /* STUB: (void)n; (void)index; (void)term; (void)store_received_locked; */
    /* END LAB: return -ENOSYS; */
}

int snapshot_recv_install_locked(struct raft_node *n, const struct raft_msg *req,
                                 uint64_t now, struct raft_msg *reply)
{
    NODE_ASSERT_LOCKED(n);
    const struct raft_install_snapshot *is = &req->u.is;
    if (is->total > MAX_SNAPSHOT_BYTES || is->offset > is->total ||
        is->len > is->total - is->offset)
        return -EINVAL;
    /* LAB(snapshots): Figure 13 receiver: the term check, then the chunk (rule 1, §7) */
    /* Rule 1: reply immediately if term < currentTerm. */
    if (node_is_stale_term_locked(n, is->term, req->from) || is->term < n->current_term) {
        if (n->disk_failed)
            return -EIO;
        return reply_install(n, reply, 0);
    }
    node_follow_leader_locked(n, req->from, is->term, now);
    if (n->disk_failed)
        return -EIO;
    /* Already covered by what this node has committed: nothing to do, and
     * a snapshot being received that is no newer need not go on. */
    if (is->last_index <= n->commit_index) {
        if (n->incoming.open && n->incoming.index <= n->commit_index)
            incoming_abort_locked(n);
        return reply_install(n, reply, is->total);
    }
    if (!gather_chunk_locked(n, is, reply))
        return n->disk_failed ? -EIO : 0;
    if (!carries_valid_configuration(n)) {
        incoming_abort_locked(n);
        node_log(n, RAFT_LOG_WARN, "snapshot up to %llu from n%u has a malformed configuration "
                 "-> refused", (unsigned long long)is->last_index, req->from);
        return -EINVAL;
    }
    int rc = install_locked(n, is->last_index, is->last_term);
    if (rc)
        return rc;
    return reply_install(n, reply, is->total);
    /* STUB: (void)now; (void)gather_chunk_locked; (void)install_locked; */
    /* STUB: (void)carries_valid_configuration; */
    /* END LAB: return reply_install(n, reply, 0); */
}
