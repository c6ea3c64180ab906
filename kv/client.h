/*
 * client.h - a client session of the key-value store.
 *
 * Given any nodes' addresses, it finds the leader (followers answer with a
 * hint), retries through elections and lost connections until its timeout,
 * and numbers its puts so that a retried put takes effect once (§6.3).
 */
#ifndef KV_CLIENT_H
#define KV_CLIENT_H

#include <stdint.h>

#include "net/wire.h"

struct kv_client;

/* addrs: "host:port" of the nodes, by node id. timeout_ms bounds each
 * operation, retries included. */
int kv_client_open(struct kv_client **out, char *const *addrs, uint32_t n_addrs,
                   unsigned timeout_ms);
void kv_client_close(struct kv_client *c);

/* 0 when acknowledged; -ETIMEDOUT when no leader answered in time (for a
 * put: the outcome is unknown); -EINVAL for a request the cluster refused. */
int kv_client_put(struct kv_client *c, const char *key, uint32_t key_len,
                  const char *value, uint32_t value_len);

/* 0 with a malloc'd *value; -ENOENT when the key does not exist;
 * -ETIMEDOUT or -EINVAL as for put. */
int kv_client_get(struct kv_client *c, const char *key, uint32_t key_len,
                  uint8_t **value, uint32_t *value_len);

/* Asks one node for its status; 0 or a negative errno if it did not answer. */
int kv_client_status(const char *addr, unsigned timeout_ms, struct client_reply *out);

#endif
