/*
 * commit.c - the leader's commit rule (§5.3, §5.4.2, Figure 8).
 */
#include "raft/node.h"

#include <string.h>

/* The highest index stored on a majority: with match indices sorted in
 * descending order, the one at position majority-1. */
uint64_t commit_quorum_index(const uint64_t *match, uint32_t n_nodes)
{
    uint64_t sorted[RAFT_MAX_NODES];
    memcpy(sorted, match, n_nodes * sizeof(*match));
    for (uint32_t i = 1; i < n_nodes; i++) /* insertion sort, descending */
        for (uint32_t j = i; j > 0 && sorted[j] > sorted[j - 1]; j--) {
            uint64_t t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    return sorted[n_nodes / 2];
}

/* Figure 2, leaders: "If there exists an N such that N > commitIndex, a
 * majority of matchIndex[i] >= N, and log[N].term == currentTerm: set
 * commitIndex = N." Figure 8 shows why the term check matters: an entry of
 * an older term can be stored on a majority and still be overwritten, so
 * such entries commit only indirectly, under an entry of the current term.
 * Terms never decrease along the log, so checking the highest candidate N
 * is enough. */
uint64_t commit_next_index(uint64_t commit, uint64_t quorum_index,
                           uint64_t term_at_quorum, uint64_t current_term)
{
    /* LAB(agreement): the Figure 8 rule: only entries of the current term commit by counting (§5.4.2) */
    if (quorum_index > commit && term_at_quorum == current_term)
        return quorum_index;
    return commit;
    /* STUB: (void)quorum_index; (void)term_at_quorum; (void)current_term; */
    /* END LAB: return commit; */
}
