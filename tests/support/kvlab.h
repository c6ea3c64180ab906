/*
 * kvlab.h - the key-value service (kv/service.h) of every lab node, called
 * in-process the way kv/server.c calls it for a TCP frame: the lab's
 * clients test the code that serves real clients.
 *
 * Each incarnation of a node gets its own service, over that incarnation's
 * Raft node and store (cluster_kv). A put's answer comes from the node's
 * applier; kvlab_call waits for it as a client waits for its reply.
 */
#ifndef TESTS_SUPPORT_KVLAB_H
#define TESTS_SUPPORT_KVLAB_H

#include "kv/service.h"
#include "tests/support/cluster.h"

struct kvlab;

/* For a cluster started with opts.kv. Reads wait up to 1000 lab ms. */
struct kvlab *kvlab_new(struct cluster *c);
/* Crashes every node, so that no answer can come later, then frees. */
void kvlab_free(struct kvlab *l);

/* Hands q to node i's service and waits up to wait_ms (real milliseconds)
 * for the answer. Returns 0 with *r (a get's value is malloc'd, the
 * caller's), -ETIMEDOUT when a put's answer did not come in time (it is
 * dropped when it does), or -ESHUTDOWN when node i is down. */
int kvlab_call(struct kvlab *l, unsigned i, const struct kv_request *q, unsigned wait_ms,
               struct kv_reply *r);

#endif
