/*
 * quorum.c - who counts (thesis §4.1): the voters of the configuration in
 * use decide elections and commitment; learners and servers outside it
 * only receive the log.
 */
#include "raft/node.h"

bool node_is_voter(const struct raft_node *n)
{
    return membership_is_voter(&n->members, n->cfg.id);
}

bool node_is_majority(const struct raft_node *n, uint64_t ids)
{
    return membership_is_majority(&n->members, ids);
}

uint64_t node_quorum_value(const struct raft_node *n, const uint64_t *by_id)
{
    /* LAB(membership): the value a majority of the voters reached: learners do not count (§4.1) */
    uint64_t values[RAFT_MAX_NODES];
    uint32_t k = 0;
    for (uint32_t i = 0; i < n->members.n; i++)
        if (n->members.members[i].voter)
            values[k++] = by_id[n->members.members[i].id];
    return k ? commit_quorum_index(values, k) : 0;
    /* STUB: uint64_t all[RAFT_MAX_NODES]; */
    /* STUB: for (uint32_t m = 0; m < n->members.n; m++) all[m] = by_id[n->members.members[m].id]; */
    /* END LAB: return n->members.n ? commit_quorum_index(all, n->members.n) : 0; */
}

bool node_serves_peer_locked(const struct raft_node *n, const struct peer *p)
{
    if (p->id == n->cfg.id)
        return false;
    if (raft_membership_find(&n->members, p->id))
        return true;
    /* LAB(membership): a server just removed still gets the entry that removes it (§4.2.2) */
    return raft_membership_find(&n->previous, p->id) && p->match_index < n->members_index;
    /* END LAB: return false; */
}

