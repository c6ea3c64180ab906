/*
 * client.h - a client session of the key-value store.
 *
 * Given any nodes' addresses, it finds the leader (followers answer with a
 * hint), retries through elections and lost connections until its timeout,
 * and numbers its puts so that a retried put takes effect once (§6.3).
 */
#ifndef KV_CLIENT_H
#define KV_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "net/wire.h"
#include "raft/raft.h"

struct kv_client;

/* How a session retries (kv/client.c, kv/bench.c): it gives up on a node
 * silent for an attempt, and pauses between attempts when nobody is known
 * to lead. */
#define KV_CLIENT_ATTEMPT_MS 1500
#define KV_CLIENT_RETRY_PAUSE_MS 20

/* addrs: "host:port" of the nodes, by node id. timeout_ms bounds each
 * operation, retries included. */
int kv_client_open(struct kv_client **out, char *const *addrs, uint32_t n_addrs,
                   unsigned timeout_ms);
void kv_client_close(struct kv_client *c);

/* Talks mutual TLS (net/tls.h) from the next connection on; NULL: plain
 * TCP. tls is not owned and must outlive c. */
struct tls_ctx;
void kv_client_set_tls(struct kv_client *c, struct tls_ctx *tls);

/* 0 when acknowledged; -ETIMEDOUT when no leader answered in time (for a
 * put: the outcome is unknown); -EINVAL for a request the cluster refused. */
int kv_client_put(struct kv_client *c, const char *key, uint32_t key_len,
                  const char *value, uint32_t value_len);

/* 0 with a malloc'd *value; -ENOENT when the key does not exist;
 * -ETIMEDOUT or -EINVAL as for put. */
int kv_client_get(struct kv_client *c, const char *key, uint32_t key_len,
                  uint8_t **value, uint32_t *value_len);

/* ---- the parts of a session, for clients that drive their own I/O ---- */

/* A fresh session id: random, so that no other client picks it. */
uint64_t kv_client_new_id(void);

/* The nodes a client knows - those it was given, then leaders learnt from
 * hints - and the one it tries now. */
#define KV_MAX_ADDRS (2 * RAFT_MAX_NODES)
struct kv_nodes {
    char *addrs[KV_MAX_ADDRS]; /* owned */
    uint32_t n;
    uint32_t target;
};

/* Copies addrs (n >= 1); starts at addrs[first % n]. 0 or -ENOMEM. */
int kv_nodes_init(struct kv_nodes *k, char *const *addrs, uint32_t n, uint64_t first);
void kv_nodes_free(struct kv_nodes *k);

/* The target did not answer finally: moves to the leader a NOT_LEADER
 * reply names (reply may be NULL) or else to the next node. Returns true
 * when it moved to a named leader, to be tried at once; false when nobody
 * is known to lead (an election is probably under way: pause first). */
bool kv_nodes_move_on(struct kv_nodes *k, const struct client_reply *reply);

/* Asks one node for its status; 0 or a negative errno if it did not answer.
 * *out holds no pointers: value and leader_addr are NULL. */
int kv_client_status(const char *addr, unsigned timeout_ms, struct client_reply *out);
/* The same over TLS when tls is not NULL. */
int kv_client_status_tls(const char *addr, struct tls_ctx *tls, unsigned timeout_ms,
                         struct client_reply *out);

#endif
