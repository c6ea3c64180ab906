/*
 * peer.c - the lanes: threads that carry requests to one peer. A lane waits
 * until its peer needs something (a vote request, entries, a heartbeat, a
 * read round, a snapshot chunk), asks the hub to build the request, sends
 * it without the lock, and hands the reply back. What to send and what a
 * reply means are the rules' business (election.c, replication.c,
 * snapshot.c); this file decides only when, and moves the request.
 */
#include "raft/node.h"
#include "raft/trace.h"

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
    if (now < p->retry_at_ms || p->sending || !node_serves_peer_locked(n, p))
        return false;
    if (p->in_flight > 0 &&
        (!may_pipeline_locked(n, p) || !worth_pipelining_locked(n, p, now)))
        return false;
    if (n->role == RAFT_PRE_CANDIDATE || n->role == RAFT_CANDIDATE)
        return p->vote_needed;
    if (n->role != RAFT_LEADER)
        return false;
    return p->next_index <= log_last_index(&n->log) || now >= p->heartbeat_due_ms ||
           n->read_round > p->sent_round || transfer_timeout_now_due_locked(n, p, now);
}

/* When to look again if there is no work now (0: only when woken). Must
 * agree with has_work_locked, or the thread would spin. */
static uint64_t next_wakeup_locked(struct raft_node *n, struct peer *p)
{
    if (p->sending || (p->in_flight > 0 && !may_pipeline_locked(n, p)) ||
        !node_serves_peer_locked(n, p))
        return 0; /* the lane in flight does the rest, or a change wakes it */
    if (n->role == RAFT_LEADER) {
        uint64_t due = p->heartbeat_due_ms, timeout_now = transfer_next_send_locked(n, p);
        if (timeout_now && timeout_now < due)
            due = timeout_now; /* resent at heartbeat pace (transfer.c) */
        return p->retry_at_ms > due ? p->retry_at_ms : due;
    }
    if ((n->role == RAFT_PRE_CANDIDATE || n->role == RAFT_CANDIDATE) && p->vote_needed)
        return p->retry_at_ms;
    return 0;
}

/* Sends the request to p and waits for its reply, without the lock, which
 * is taken again before it returns. With a pipelining transport, an
 * AppendEntries is handed over while p->sending is set, so requests to a
 * peer leave in the order their lanes built them; the wait for the reply
 * runs without it, so that other lanes may send meanwhile. */
static int exchange_drops_lock(struct raft_node *n, struct peer *p, const struct rpc *rpc,
                               struct raft_msg *reply)
{
    const struct raft_transport *t = &n->transport;
    int rc;
    if (n->cfg.pipeline_depth == 1 || rpc->req.type != RAFT_MSG_APPEND_ENTRIES) {
        node_unlock(n);
        rc = t->call(t->ctx, p->id, &rpc->req, reply, rpc->timeout_ms);
        node_lock(n);
        return rc;
    }
    uint64_t ticket;
    p->sending = true;
    node_unlock(n);
    rc = t->send(t->ctx, p->id, &rpc->req, &ticket, rpc->timeout_ms);
    node_lock(n);
    p->sending = false;
    if (has_work_locked(n, p, node_now(n)))
        node_wake_peers_locked(n); /* for the next lane */
    if (rc)
        return rc;
    node_unlock(n);
    rc = t->await(t->ctx, p->id, ticket, reply, rpc->timeout_ms);
    node_lock(n);
    return rc;
}

/* One iteration of a lane: wait until this peer needs something, then send
 * it and hand the reply to its rule. Each AppendEntries carries every entry
 * the peer lacks (up to max_batch_bytes), so batches grow with load. */
void *peer_lane_main(void *arg)
{
    struct lane *l = arg;
    struct peer *p = l->peer;
    struct raft_node *n = p->node;
    node_lock(n);
    while (!n->stopping) {
        uint64_t now = node_now(n);
        if (!has_work_locked(n, p, now)) {
            node_wait_until(n, &n->peers_cond, next_wakeup_locked(n, p));
            continue;
        }
        struct rpc rpc;
        if (!node_prepare_request_locked(n, l, now, &rpc))
            continue;
        rpc.req.id = ++n->msg_seq;
        trace_send_locked(n, &rpc.req, p->id);
        p->in_flight++;
        struct raft_msg reply;
        int rc = snapshot_read_chunk_drops_lock(n, l, &rpc);
        if (rc == 0)
            rc = replication_read_batch_drops_lock(n, l, &rpc);
        if (rc == 0)
            rc = exchange_drops_lock(n, p, &rpc, &reply);
        if (rc == 0)
            trace_recv_locked(n, &reply);
        node_handle_reply_locked(n, l, &rpc, rc, &reply, node_now(n));
        p->in_flight--;
    }
    node_unlock(n);
    return NULL;
}
