/*
 * timer.c - the election timer thread: it sleeps until the node's election
 * deadline and then lets the rules decide (election.c). Receiving from a
 * leader, or granting a vote, moves the deadline on.
 */
#include "raft/node.h"

void *election_timer_main(void *arg)
{
    struct raft_node *n = arg;
    node_lock(n);
    while (!n->stopping) {
        uint64_t now = node_now(n);
        if (now < n->election_deadline_ms)
            node_wait_until(n, &n->timer_cond, n->election_deadline_ms);
        else
            node_tick_locked(n, now);
    }
    node_unlock(n);
    return NULL;
}
