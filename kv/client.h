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
 * put: the outcome is unknown); -EINVAL for a request the cluster refused.
 * A session that has not yet reached any node gives up at once, with the
 * request not sent, when every node refuses the connection (-ECONNREFUSED)
 * or some have hosts that do not resolve and the rest refuse
 * (-EHOSTUNREACH; kv_client_unresolved names one). */
int kv_client_put(struct kv_client *c, const char *key, uint32_t key_len,
                  const char *value, uint32_t value_len);

/* 0 with a malloc'd *value; -ENOENT when the key does not exist;
 * -ETIMEDOUT or -EINVAL as for put. */
int kv_client_get(struct kv_client *c, const char *key, uint32_t key_len,
                  uint8_t **value, uint32_t *value_len);

/* Moves leadership to node `target` (RAFT_NO_NODE: the most up-to-date
 * voter), thesis §3.10. 0 once it leads (*leader); -EPERM when the cluster
 * refused, with one malloc'd sentence in *why; -ETIMEDOUT when no transfer
 * finished in time; -EINVAL for a request the cluster found malformed. */
int kv_client_transfer(struct kv_client *c, int32_t target, int32_t *leader, char **why);

/* 0 deleted; -ENOENT it did not exist; -ETIMEDOUT or -EINVAL as for put. */
int kv_client_delete(struct kv_client *c, const char *key, uint32_t key_len);

/* Sets key to value if it holds expected: 0 swapped; -ENOENT the key does
 * not exist; -EEXIST it held another value, a malloc'd copy in *held (NUL
 * terminated); -ETIMEDOUT or -EINVAL as for put. */
int kv_client_cas(struct kv_client *c, const char *key, uint32_t key_len,
                  const char *expected, uint32_t expected_len,
                  const char *value, uint32_t value_len, uint8_t **held, uint32_t *held_len);

/* The keys starting with prefix, sorted, with their values if asked: 0
 * with a malloc'd listing (kv_listing_next in kv/kv.h reads it after its
 * u32 count); -EMSGSIZE when it would not fit in one reply; -ETIMEDOUT or
 * -EINVAL as for get. */
int kv_client_list(struct kv_client *c, const char *prefix, uint32_t prefix_len, bool values,
                   uint8_t **listing, uint32_t *listing_len);

/* ---- membership (thesis ch. 4; kv/client_members.c) ---- */

/* The leader's configuration, read after a read barrier: 0 with *v (each
 * member's matchIndex in v->match) and the leader's id in *leader (may be
 * NULL); -ETIMEDOUT when no leader answered in time; -EBADMSG for an
 * answer that is no configuration; -EINVAL as for get. */
int kv_client_members(struct kv_client *c, struct raft_membership_view *v, int32_t *leader);

/* Adds server id, listening at addr ("host:port"), as a voter (it joins
 * as a learner and is promoted once caught up) or as a learner: 0 once
 * that configuration is committed; -EPERM when the cluster refused, one
 * malloc'd sentence in *why; -ETIMEDOUT when it did not commit in time
 * (it may still); -EINVAL for a request the cluster found malformed. The
 * whole timeout may go to one attempt: a new voter first catches up. */
int kv_client_member_add(struct kv_client *c, uint32_t id, const char *addr, bool learner,
                         char **why);
/* Removes server id (the leader included): as kv_client_member_add. */
int kv_client_member_remove(struct kv_client *c, uint32_t id, char **why);

/* Asks the node at addr for its status and its own view of the
 * configuration (*has_view false from a node that sent none): 0 or a
 * negative errno if it did not answer. *status holds no pointers. */
int kv_client_node_view(const char *addr, struct tls_ctx *tls, unsigned timeout_ms,
                        struct client_reply *status, struct raft_membership_view *v,
                        bool *has_view);

/* After -EHOSTUNREACH: a host name of the cluster that does not resolve. */
const char *kv_client_unresolved(const struct kv_client *c);

/* Why TLS refused the last node it refused, as "HOST:PORT: why" (its
 * certificate is of another CA, not a node's, or not made for that host),
 * or NULL. A session that never reached a node and was refused by TLS by
 * every one gives up with -EACCES. */
const char *kv_client_tls_refusal(const struct kv_client *c);

/* ---- the parts of a session, for clients that drive their own I/O ---- */

/* A fresh session id: random, so that no other client picks it. */
uint64_t kv_client_new_id(void);

/* The nodes a client knows - those it was given, then leaders learnt from
 * hints - and the one it tries now. */
#define KV_MAX_ADDRS (2 * RAFT_MAX_NODES)
struct kv_nodes {
    char *addrs[KV_MAX_ADDRS]; /* owned */
    /* The node id each address answers as: the position in the list given
     * (addresses are given by node id) until a reply says otherwise;
     * RAFT_NO_NODE for a learnt one not heard from yet. */
    int32_t ids[KV_MAX_ADDRS];
    uint32_t n;
    uint32_t target;
};

/* Copies addrs (n >= 1); starts at addrs[first % n]. 0 or -ENOMEM. */
int kv_nodes_init(struct kv_nodes *k, char *const *addrs, uint32_t n, uint64_t first);
void kv_nodes_free(struct kv_nodes *k);

/* The target did not answer finally: moves to the leader a NOT_LEADER
 * reply names (reply may be NULL), at the address this client has reached
 * it at if any, else at the address in the reply; or else to the next
 * node. Returns true
 * when it moved to a named leader, to be tried at once; false when nobody
 * is known to lead (an election is probably under way: pause first). */
bool kv_nodes_move_on(struct kv_nodes *k, const struct client_reply *reply);

/* The target answered as node `from` (the reply frame's sender), so that a
 * later hint naming that node leads back to this address. */
void kv_nodes_heard(struct kv_nodes *k, uint32_t from);

/* Asks one node for its status; 0 or a negative errno if it did not answer.
 * *out holds no pointers: value and leader_addr are NULL. */
int kv_client_status(const char *addr, unsigned timeout_ms, struct client_reply *out);
/* The same over TLS when tls is not NULL. */
int kv_client_status_tls(const char *addr, struct tls_ctx *tls, unsigned timeout_ms,
                         struct client_reply *out);

#endif
