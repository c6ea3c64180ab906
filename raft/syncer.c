/*
 * syncer.c - the leader's disk syncer (thesis §10.2.1): the leader writes
 * its own new entries in parallel with sending them to the followers, and
 * counts its own copy towards commitment only once it is durable.
 */
#include "raft/node.h"

#include <errno.h>
#include <stdlib.h>

/* Grows *batch to hold count entries; false when memory ran out. */
static bool reserve_batch(struct raft_entry **batch, size_t *cap, size_t count)
{
    if (count <= *cap)
        return true;
    struct raft_entry *b = realloc(*batch, count * sizeof(*b));
    if (!b)
        return false;
    *batch = b;
    *cap = count;
    return true;
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
    node_lock(n);
    while (!n->stopping) {
        uint64_t last = log_last_index(&n->log);
        if (n->disk_failed || n->durable_index >= last) {
            node_wait_until(n, &n->syncer_cond, 0);
            continue;
        }
        uint64_t from = n->durable_index + 1;
        size_t count = last - n->durable_index;
        if (!reserve_batch(&batch, &cap, count)) {
            node_disk_failed_locked(n, "allocating a write batch", -ENOMEM);
            continue;
        }
        /* The entries' data stays put while syncing is set: truncation and
         * compaction wait for it. */
        for (size_t i = 0; i < count; i++)
            batch[i] = *log_get(&n->log, from + i);
        n->syncing = true;
        uint64_t started = node_now(n);
        node_unlock(n);
        int rc = n->storage.append(n->storage.ctx, from, batch, count);
        node_lock(n);
        n->syncing = false;
        pthread_cond_broadcast(&n->changed_cond);
        if (rc) {
            node_disk_failed_locked(n, "appending to the log", rc);
            continue;
        }
        node_warn_slow_disk_locked(n, node_now(n) - started, true, "storing %llu..%llu",
                                   (unsigned long long)from,
                                   (unsigned long long)(from + count - 1));
        n->durable_index = from + count - 1;
        /* A snapshot put off until these applied entries were stored can
         * be taken now. */
        if (from <= n->last_applied)
            node_wake_applier_locked(n);
        if (n->role == RAFT_LEADER)
            node_advance_commit_locked(n);
    }
    node_unlock(n);
    free(batch);
    return NULL;
}
