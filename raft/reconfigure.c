/*
 * reconfigure.c - membership changes (thesis ch. 4).
 */
#include "raft/node.h"
#include "raft/membership.h"

#include <errno.h>
#include <string.h>

void raft_get_membership(struct raft_node *n, struct raft_membership_view *out)
{
    memset(out, 0, sizeof(*out));
    node_lock(n);
    raft_membership_of_size(&out->config, n->cfg.n_nodes, NULL);
    out->committed = true;
    node_unlock(n);
}

int raft_add_member(struct raft_node *n, uint32_t id, const char *addr, bool voter,
                    unsigned timeout_ms, int32_t *leader_hint, char *why, size_t why_cap)
{
    (void)n; (void)id; (void)addr; (void)voter; (void)timeout_ms; (void)why; (void)why_cap;
    *leader_hint = RAFT_NO_NODE;
    return -ENOSYS;
}

int raft_remove_member(struct raft_node *n, uint32_t id, unsigned timeout_ms,
                       int32_t *leader_hint, char *why, size_t why_cap)
{
    (void)n; (void)id; (void)timeout_ms; (void)why; (void)why_cap;
    *leader_hint = RAFT_NO_NODE;
    return -ENOSYS;
}
