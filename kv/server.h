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
    /* id, n_nodes, timeouts, logging. The bootstrap configuration is
     * raft.bootstrap when it has members, else peers[0 .. n_nodes-1] as ids
     * 0 .. n_nodes-1; it is recorded in the data directory the first time
     * and the recorded one is used from then on (a different one given
     * later is logged as a warning and ignored). With none, the node waits
     * to be added (thesis ch. 4). */
    struct raft_config raft;
    char *const *peers;      /* "host:port" of nodes 0 .. n_nodes-1; NULL when n_nodes is 0 */
    /* Where to listen, "host:port"; NULL: this node's address in the
     * bootstrap configuration. */
    const char *listen;
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
    bool cluster_named; /* it came from --cluster-name, not from --peers */
};

struct kv_server;

/* Opens the data directory, recovers, and starts serving. Returns 0 or a
 * negative errno, having logged why. */
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
