/*
 * server.h - one node of the replicated key-value store: a Raft node, its
 * data directory, the key-value state machine, and a TCP listener that
 * answers both its peers (Raft RPCs) and clients (put, get, status).
 */
#ifndef KV_SERVER_H
#define KV_SERVER_H

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
};

struct kv_server;

/* Opens the data directory, recovers, and starts serving on peers[id].
 * Returns 0 or a negative errno, having logged why. */
int kv_server_start(struct kv_server **out, const struct kv_server_config *cfg);
void kv_server_stop(struct kv_server *s);

#endif
