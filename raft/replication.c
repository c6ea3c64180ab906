/*
 * replication.c - log replication (§5.3): the AppendEntries a leader sends
 * a follower, what it makes of the reply (matchIndex, nextIndex, fast
 * backup), and the follower's rules for receiving it. The peer lanes
 * (peer.c) carry the requests; the commit index moves in role.c.
 */
#include "raft/node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- leader ---- */

/* Copies entries next_index.. (up to max_batch_bytes, at least one) into the
 * lane's reusable buffers, so that the call can run without the lock while
 * the log changes. Returns how many were copied. A batch is all in memory
 * or all evicted; for an evicted one only the entries' terms and lengths
 * are copied, and the lane reads their data back from storage. */
static uint32_t copy_batch_locked(struct raft_node *n, struct lane *l, uint64_t from)
{
    uint64_t last = log_last_index(&n->log);
    bool stored = log_evicted(&n->log, from);
    size_t count = 0, bytes = 0;
    while (from + count <= last && stored == log_evicted(&n->log, from + count)) {
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
    l->batch_in_storage = stored && count > 0;
    for (size_t i = 0; stored && i < count; i++) {
        const struct raft_entry *e = log_get(&n->log, from + i);
        l->batch[i] = (struct raft_entry){.term = e->term, .type = e->type, .len = e->len};
    }
    if (!stored && log_copy(&n->log, from, count, l->batch, &l->bytes, &l->bytes_cap))
        return 0;
    return (uint32_t)count;
}

int replication_read_batch_drops_lock(struct raft_node *n, struct lane *l, struct rpc *rpc)
{
    struct raft_append_entries *ae = &rpc->req.u.ae;
    if (rpc->req.type != RAFT_MSG_APPEND_ENTRIES || !l->batch_in_storage)
        return 0;
    uint64_t from = ae->prev_log_index + 1;
    node_unlock(n);
    int rc = n->storage.read_entries(n->storage.ctx, from, ae->n_entries, l->batch, &l->bytes,
                                     &l->bytes_cap);
    node_lock(n);
    /* Evicted entries are applied, so committed: they cannot change (State
     * Machine Safety, §5.4.3), and storage gives back the same entries,
     * unless a snapshot took them meanwhile (the peer then gets it). The
     * terms must match what the log holds (Log Matching, §5.3). */
    for (uint32_t i = 0; rc == 0 && i < ae->n_entries; i++) {
        uint64_t term = log_term_at(&n->log, from + i);
        if (term != 0 && term != l->batch[i].term)
            rc = -EIO;
    }
    if (rc && rc != -ESTALE)
        node_disk_failed_locked(n, "reading entries back to send them", rc);
    return rc;
}

/* Fast backup (§5.3): skip the follower's whole conflicting term at once. */
static uint64_t back_up_locked(struct raft_node *n, struct peer *p, uint64_t prev,
                               const struct raft_append_entries_reply *r)
{
    /* LAB(agreement): the next nextIndex after a refusal, a term at a time (§5.3 fast backup) */
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
    /* STUB: (void)n; (void)p; (void)r; */
    /* END LAB: return prev; */
}

static void note_call_failed_locked(struct raft_node *n, struct peer *p, int rc,
                                    uint64_t now)
{
    /* Throttled: the first failure, then every 20th. */
    if (p->failures++ % 20 == 0)
        node_log(n, RAFT_LOG_DEBUG, "n%u unreachable (%s)%s", p->id, strerror(-rc),
                 p->failures > 1 ? ", still" : "");
    p->retry_at_ms = now + n->cfg.heartbeat_ms;
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

/* The AppendEntries lane l sends next: every entry the follower lacks, up
 * to max_batch_bytes, or none (a heartbeat). With pipelining, the next lane
 * sends what follows this batch without waiting for this reply. */
void replication_prepare_append_locked(struct raft_node *n, struct lane *l, uint64_t now,
                                       struct rpc *out)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(election): build the heartbeat: term, prevLogIndex, when the next one is due (§5.2) */
    struct peer *p = l->peer;
    uint64_t prev = p->next_index - 1;
    struct raft_append_entries *ae = &out->req.u.ae;
    out->req.type = RAFT_MSG_APPEND_ENTRIES;
    ae->term = n->current_term;
    ae->prev_log_index = prev;
    /* LAB(agreement): prevLogTerm, leaderCommit and the entries (Figure 2 AppendEntries, §5.3) */
    ae->prev_log_term = log_term_at(&n->log, prev);
    ae->leader_commit = n->commit_index;
    ae->n_entries = copy_batch_locked(n, l, p->next_index);
    ae->entries = l->batch;
    p->next_index += ae->n_entries;
    p->backlog = p->next_index <= log_last_index(&n->log);
    /* END LAB: (void)copy_batch_locked; */
    out->round = p->sent_round = n->read_round;
    out->timeout_ms = n->cfg.election_timeout_min_ms;
    p->heartbeat_due_ms = now + n->cfg.heartbeat_ms;
    node_log(n, ae->n_entries ? RAFT_LOG_DEBUG : RAFT_LOG_TRACE,
             "-> n%u AppendEntries prev %llu@T%llu, %u entries, commit %llu", p->id,
             (unsigned long long)prev, (unsigned long long)ae->prev_log_term,
             ae->n_entries, (unsigned long long)ae->leader_commit);
    /* STUB: (void)l; (void)now; (void)out; (void)copy_batch_locked; */
    /* END LAB */
}

/* The reply to an AppendEntries sent in this term as leader. */
void replication_handle_append_reply_locked(struct raft_node *n, struct peer *p,
                                            const struct rpc *sent, int rc,
                                            const struct raft_msg *reply, uint64_t now)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(election): a failed call is retried later; a reply is an acknowledgement (thesis §6.2) */
    const struct raft_append_entries *ae = &sent->req.u.ae;
    uint64_t prev = ae->prev_log_index;
    if (rc != 0) {
        note_call_failed_locked(n, p, rc, now);
        stop_pipelining_locked(p, prev + 1);
        return;
    }
    node_note_ack_locked(n, p, sent, now);
    /* LAB(agreement): matchIndex and nextIndex from the reply, then the commit index (Figure 2 leaders, §5.3) */
    const struct raft_append_entries_reply *r = &reply->u.ae_reply;
    if (!r->success) {
        stop_pipelining_locked(p, back_up_locked(n, p, prev, r));
        return;
    }
    /* matchIndex comes from what was sent, never from current state. So
     * does nextIndex: a follower that lost its disk refuses entries that
     * matchIndex says it holds, and nextIndex must follow what it stores
     * now, batch after batch, not jump back to matchIndex. */
    uint64_t match = prev + ae->n_entries;
    if (match > p->match_index)
        p->match_index = match;
    if (match + 1 > p->next_index)
        p->next_index = match + 1;
    p->replicating = true;
    node_log_peer_progress_locked(n, p);
    node_advance_commit_locked(n);
    /* END LAB: (void)reply; (void)back_up_locked; */
    /* STUB: (void)p; (void)sent; (void)rc; (void)reply; (void)now; */
    /* STUB: (void)note_call_failed_locked; (void)stop_pipelining_locked; (void)back_up_locked; */
    /* END LAB */
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
    /* LAB(agreement): the consistency check and the hint for fast backup (Figure 2 rule 2, §5.3) */
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
    /* STUB: (void)n; (void)prev; (void)prev_term; (void)reply; */
    /* END LAB: return false; */
}

/* Rules 3 and 4: delete a conflicting entry and all that follow it, then
 * append the entries not already in the log. Entries that match are kept:
 * a delayed or duplicated AppendEntries must never take back entries that a
 * later one added. Returns 0 or -EIO. */
static int store_entries_locked(struct raft_node *n, uint64_t prev, uint32_t count,
                                const struct raft_entry *entries, uint64_t now)
{
    /* LAB(agreement): truncate at the first conflict only, append the rest (Figure 2 rules 3, 4) */
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
        /* LAB(persistence): truncate the stored log too (Figure 2 persistent state) */
        int rc = n->storage.truncate(n->storage.ctx, index);
        if (rc) {
            node_disk_failed_locked(n, "truncating the log", rc);
            return -EIO;
        }
        /* END LAB */
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
    /* LAB(persistence): store the new entries before answering (Figure 2 persistent state) */
    /* Figure 2: new entries are durable before the reply says success. */
    uint64_t started = node_now(n);
    int rc = n->storage.append(n->storage.ctx, first, entries + i, count - i);
    if (rc) {
        log_truncate(&n->log, first);
        node_disk_failed_locked(n, "appending to the log", rc);
        return -EIO;
    }
    node_warn_slow_disk_locked(n, node_now(n) - started, false, "storing %llu..%llu",
                               (unsigned long long)first, (unsigned long long)(prev + count));
    /* END LAB */
    n->durable_index = log_last_index(&n->log);
    if (node_log_admit_locked(n, LOG_STORED, now, first, prev + count)) {
        /* A batch of one says what it is: a single put is easy to follow. */
        char what[96] = "";
        if (count - i == 1) {
            what[0] = ':';
            what[1] = ' ';
            node_describe_entry(n, entries[i].type, entries[i].data, entries[i].len, what + 2,
                                sizeof(what) - 2);
        }
        node_log(n, RAFT_LOG_INFO, "stored %llu..%llu from leader n%d%s",
                 (unsigned long long)first, (unsigned long long)(prev + count), n->leader_id,
                 what);
    }
    return 0;
    /* STUB: (void)n; (void)prev; (void)count; (void)entries; (void)now; */
    /* END LAB: return -ENOSYS; */
}

int replication_recv_append_entries_locked(struct raft_node *n, const struct raft_msg *req,
                                           uint64_t now, struct raft_msg *reply)
{
    NODE_ASSERT_LOCKED(n);
    /* LAB(election): refuse a stale leader, else follow it (Figure 2 rule 1, §5.2) */
    const struct raft_append_entries *ae = &req->u.ae;
    /* Rule 1: reply false if term < currentTerm. */
    if (node_is_stale_term_locked(n, ae->term, req->from) || ae->term < n->current_term) {
        if (n->disk_failed)
            return -EIO;
        return reply_append(n, reply, false, 0, 0, 0);
    }
    node_follow_leader_locked(n, req->from, ae->term, now);
    if (n->disk_failed)
        return -EIO;

    /* LAB(agreement): rules 2-5: check, store, commit (Figure 2 AppendEntries receiver, §5.3) */
    uint64_t prev = ae->prev_log_index, prev_term = ae->prev_log_term;
    uint32_t count = ae->n_entries;
    const struct raft_entry *entries = ae->entries;
    /* LAB(snapshots): entries up to the snapshot base match (§7) */
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
    /* END LAB */
    if (!consistency_check_locked(n, prev, prev_term, reply))
        return 0;
    int rc = store_entries_locked(n, prev, count, entries, now);
    if (rc)
        return rc;
    /* Rule 5: commitIndex = min(leaderCommit, index of last new entry). */
    uint64_t last_new = prev + count;
    uint64_t commit = ae->leader_commit < last_new ? ae->leader_commit : last_new;
    if (commit > n->commit_index) {
        if (node_log_admit_locked(n, LOG_COMMIT, now, n->commit_index, commit))
            node_log(n, RAFT_LOG_INFO, "commit %llu -> %llu (from leader n%u)",
                     (unsigned long long)n->commit_index, (unsigned long long)commit,
                     req->from);
        n->commit_index = commit;
        node_wake_applier_locked(n);
    }
    return reply_append(n, reply, true, last_new, 0, 0);
    /* STUB: (void)consistency_check_locked; (void)store_entries_locked; */
    /* END LAB: return reply_append(n, reply, false, 0, 0, 0); */
    /* STUB: (void)req; (void)now; (void)consistency_check_locked; (void)store_entries_locked; */
    /* END LAB: return reply_append(n, reply, false, 0, 0, 0); */
}
