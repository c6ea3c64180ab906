/*
 * config.c - a node's settings: the defaults, what is accepted, and the
 * limits applied to what was given.
 */
#include "raft/node.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

void raft_config_defaults(struct raft_config *cfg, uint32_t id, uint32_t n_nodes)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->id = id;
    cfg->n_nodes = n_nodes;
    cfg->election_timeout_min_ms = 150;
    cfg->election_timeout_max_ms = 300;
    cfg->heartbeat_ms = 50;
    cfg->snapshot_log_min_bytes = 16u << 20;
    cfg->snapshot_log_ratio = 1;
    cfg->seed = (uint64_t)time(NULL) * 1000003u + (uint64_t)getpid() * 31u + id;
    cfg->pre_vote = true;
    cfg->check_quorum = true;
    cfg->lease_reads = true;
    cfg->max_batch_bytes = 1u << 20;
    cfg->pipeline_depth = RAFT_DEFAULT_PIPELINE;
    cfg->snapshot_chunk_bytes = 512u << 10;
    cfg->log_level = RAFT_LOG_INFO;
}

bool config_is_valid(const struct raft_config *cfg)
{
    bool bootstrap_ok = cfg->bootstrap.n > 0 ? cfg->bootstrap.n <= RAFT_MAX_NODES
                                             : cfg->n_nodes <= RAFT_MAX_NODES &&
                                                   (cfg->n_nodes == 0 || cfg->id < cfg->n_nodes);
    return bootstrap_ok && cfg->id <= RAFT_MAX_ID && cfg->election_timeout_min_ms > 0 &&
           cfg->election_timeout_max_ms >= cfg->election_timeout_min_ms &&
           cfg->heartbeat_ms > 0;
}

void config_apply(struct raft_config *out, const struct raft_config *cfg,
                  const struct raft_transport *transport)
{
    *out = *cfg;
    if (out->bootstrap.n == 0)
        raft_membership_of_size(&out->bootstrap, out->n_nodes, NULL);
    /* Batches and chunks must fit in one wire frame (8 MiB). */
    if (out->max_batch_bytes == 0 || out->max_batch_bytes > (4u << 20))
        out->max_batch_bytes = 1u << 20;
    if (out->snapshot_chunk_bytes == 0 || out->snapshot_chunk_bytes > (4u << 20))
        out->snapshot_chunk_bytes = 512u << 10;
    if (out->pipeline_depth == 0 || out->pipeline_depth > RAFT_MAX_PIPELINE)
        out->pipeline_depth = RAFT_DEFAULT_PIPELINE;
    if (!transport->send || !transport->await)
        out->pipeline_depth = 1;
}

