/*
 * apply.c - the applier thread: it hands committed entries to the state
 * machine in index order, outside the lock, and loads snapshots received
 * from the leader. The only thread that touches the state machine, so
 * entries are applied exactly once and without gaps (Figure 2, all
 * servers: "if commitIndex > lastApplied: increment lastApplied, apply
 * log[lastApplied] to state machine").
 */
#include "raft/node.h"

#include <errno.h>
#include <stdlib.h>

#define APPLY_BATCH 256

/* Buffers the applier reuses to hold a batch of entries outside the lock. */
struct apply_batch {
    struct raft_entry *entries;
    uint8_t *bytes;
    size_t bytes_cap;
    bool in_storage; /* the entries' data is to be read back (after a restart) */
};

static size_t copy_committed_locked(struct raft_node *n, struct apply_batch *b)
{
    uint64_t from = n->last_applied + 1;
    size_t count = n->commit_index - n->last_applied;
    if (count > APPLY_BATCH)
        count = APPLY_BATCH;
    b->in_storage = log_evicted(&n->log, from);
    if (!b->in_storage)
        return log_copy(&n->log, from, count, b->entries, &b->bytes, &b->bytes_cap) ? 0 : count;
    /* Entries loaded at a restart stay on disk until applied (lifecycle.c). */
    if (count > n->log.evicted_index - from + 1)
        count = (size_t)(n->log.evicted_index - from + 1);
    return count;
}

/* Without the lock: the data of a batch left on disk, from storage. -ESTALE
 * when a snapshot received meanwhile covers it (the applier loads that). */
static int read_back_batch(struct raft_node *n, struct apply_batch *b, uint64_t from,
                           size_t count)
{
    if (!b->in_storage || count == 0)
        return 0;
    return n->storage.read_entries(n->storage.ctx, from, count, b->entries, &b->bytes,
                                   &b->bytes_cap);
}

/* "applied 12: put greeting from client 7 seq 3", one line per entry while
 * they are few (logging.c condenses the rest). After the batch, under the
 * lock, from the copies the state machine was handed. */
static void log_applied_locked(struct raft_node *n, const struct apply_batch *b,
                               uint64_t from, size_t applied)
{
    if (!node_logs(n, RAFT_LOG_INFO))
        return;
    uint64_t now = node_now(n);
    for (size_t i = 0; i < applied; i++) {
        if (!node_log_admit_locked(n, LOG_APPLIED, now, from + i, from + i))
            continue;
        const struct raft_entry *e = &b->entries[i];
        char what[160];
        node_describe_entry(n, e->type, e->data, e->len, what, sizeof(what));
        node_log(n, RAFT_LOG_INFO, "applied %llu: %s", (unsigned long long)(from + i), what);
    }
}

/* An entry applied and stored is read again only to send it to a
 * follower that lags behind, which storage can do: with read_entries, the
 * log keeps no copy of it, and holds in memory only what is not yet
 * applied or on disk. The state machine, not the log, then bounds the
 * node's memory, whatever the snapshot policy lets the log grow to. */
static void evict_applied_locked(struct raft_node *n)
{
    if (!n->storage.read_entries)
        return;
    uint64_t index = n->last_applied < n->durable_index ? n->last_applied : n->durable_index;
    log_evict_through(&n->log, index);
}

static void restore_drops_lock(struct raft_node *n)
{
    struct snapshot_ref *s = n->to_restore;
    n->to_restore = NULL;
    node_unlock(n);
    int rc = snapshot_restore(n, s);
    node_lock(n);
    /* A newer snapshot received meanwhile replaced this one in storage:
     * the applier loads that one next, over what this left. */
    if (rc == -ESTALE && n->to_restore)
        node_log(n, RAFT_LOG_INFO, "snapshot up to %llu replaced by a newer one while "
                 "loading it -> load that one", (unsigned long long)s->index);
    else if (rc)
        node_disk_failed_locked(n, "loading a received snapshot", rc);
    else if (s->index > n->last_applied)
        n->last_applied = s->index;
    snapshot_release(s);
    snapshot_leave_in_storage_locked(n);
    clients_wake_locked(n, false);
}

/* One iteration: call back finished async puts, load a received snapshot,
 * or apply the next batch of committed entries; then snapshot if the log
 * has grown enough. */
void *applier_main(void *arg)
{
    struct raft_node *n = arg;
    struct apply_batch b = {.entries = calloc(APPLY_BATCH, sizeof(struct raft_entry))};
    node_lock(n);
    while (!n->stopping && b.entries) {
        if (n->async_done) {
            clients_call_async_done_drops_lock(n);
            continue;
        }
        if (n->to_restore) {
            restore_drops_lock(n);
            continue;
        }
        if (n->last_applied >= n->commit_index || n->disk_failed) {
            snapshot_take_if_due_drops_lock(n);
            /* After a disk failure there is nothing to do even with entries
             * left to apply: sleep, or this loop would spin holding mu. */
            if (!n->to_restore && !n->async_done &&
                (n->last_applied >= n->commit_index || n->disk_failed) && !n->stopping)
                node_wait_until(n, &n->applier_cond, 0);
            continue;
        }
        /* LAB(agreement): apply the next committed entries in order, without the lock (Figure 2 all servers) */
        uint64_t from = n->last_applied + 1;
        size_t count = copy_committed_locked(n, &b);
        node_unlock(n);
        size_t applied = 0;
        int rc = read_back_batch(n, &b, from, count);
        while (applied < count && rc == 0)
            if ((rc = n->fsm.apply(n->fsm.ctx, from + applied, &b.entries[applied])) == 0)
                applied++;
        node_lock(n);
        log_applied_locked(n, &b, from, applied);
        if (n->last_applied == from - 1)
            n->last_applied = from + applied - 1;
        if (rc && rc != -ESTALE)
            node_apply_failed_locked(n, from + applied, rc);
        clients_wake_locked(n, false);
        /* STUB: (void)copy_committed_locked; (void)read_back_batch; (void)log_applied_locked; */
        /* END LAB: node_wait_until(n, &n->applier_cond, 0); */
        evict_applied_locked(n);
        snapshot_take_if_due_drops_lock(n); /* also under steady load, or the log grows unbounded */
    }
    node_unlock(n);
    free(b.entries);
    free(b.bytes);
    return NULL;
}

