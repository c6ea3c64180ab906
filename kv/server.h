/*
 * server.h - one node of the replicated key-value store: a Raft node, its
 * data directory, the key-value state machine, and a TCP listener that
 * answers both its peers (Raft RPCs) and clients (put, get, status).
 */
#ifndef KV_SERVER_H
#define KV_SERVER_H

#include "net/cluster_id.h"
#include "net/tls.h"
#include "raft/raft.h"

struct kv_server_config {
    struct raft_config raft; /* id, n_nodes, timeouts, logging */
    char *const *peers;      /* "host:port" of every node, by id */
    const char *data_dir;
    uint64_t session_timeout_ms;
    /* Mutual TLS for peers and clients when tls.ca is set; the certificate
     * must be node-<id>'s. All NULL: plain TCP. */
    struct tls_files tls;
    /* The cluster this node bootstraps (net/cluster_id.h), derived by the
     * command line from --peers or --cluster-name. Not known: a node not
     * yet in a cluster, which joins the cluster of the first peer to
     * contact it; or whatever its data directory already records. */
    struct cluster_id cluster;
};

struct kv_server;

/* Opens the data directory, recovers, and starts serving on peers[id].
 * Returns 0 or a negative errno, having logged why. */
int kv_server_start(struct kv_server **out, const struct kv_server_config *cfg);
void kv_server_stop(struct kv_server *s);

/* Stops the node as a crash would: no thread of it survives, nothing more
 * is written, and what it held only in memory is lost. kv_server_start on
 * the same config restarts it from its data directory. */
void kv_server_crash(struct kv_server *s);

/* Cuts the node off from its peers (true) or reconnects it (false): while
 * cut, the Raft messages it sends fail at once and those that reach it are
 * refused, but clients are still answered. */
void kv_server_isolate(struct kv_server *s, bool isolated);
bool kv_server_isolated(struct kv_server *s);

/* The node's own view: role, term, leader, commit, applied, last index. */
void kv_server_status(struct kv_server *s, struct raft_status *st);

#endif
