/*
 * simnet.h - the lab harness's simulated network: N Raft nodes in one
 * process, each with its own struct raft_transport.
 *
 * A call deep-copies the request (entries, their data, snapshot chunks), so
 * that sender and receiver share nothing, hands the copy to the target's
 * raft_receive() in the calling thread, and copies the reply back. Between
 * the two it can do what the lab's labrpc does to a message:
 *
 *   link off / node crashed   fail after a random delay in [0, timeout_ms]
 *                             (the lab's 0-7 s "long delay", scaled to the
 *                             caller's own timeout)
 *   unreliable                0-26 ms before the request; 10% of requests
 *                             dropped; 10% of replies dropped after the
 *                             handler ran, so its side effects stay
 *   long reordering           about 2/3 of replies held back 200 ms to 2.2 s;
 *                             a reply held past timeout_ms is -ETIMEDOUT
 *                             after timeout_ms
 *   duplication (not in lab)  the request reaches the handler twice: at once,
 *                             or again later from a background thread, after
 *                             newer messages
 *
 * Links are directed: connect/disconnect a node (both ways, as in the lab),
 * partition into groups, cut a single direction, or lose only some types
 * of request on one direction (simnet_block_types).
 *
 * Growing: a node's address is its id. simnet_new makes ids 0..n_nodes-1;
 * simnet_add_node adds the next id, disconnected until simnet_connect, for
 * a server that joins the cluster (thesis ch. 4).
 *
 * Crash safety: simnet_crash() stops new deliveries into a node, waits until
 * every handler already running in it has returned, and turns the endpoint
 * that the crashed incarnation holds into a zombie whose calls fail at once.
 * Only then may the node be stopped and freed. A restarted node gets a new
 * endpoint (simnet_endpoint), like the lab's fresh endpoint names.
 *
 * Pipelining: send() copies the request and await() delivers it as a call
 * would, so requests in flight together may overtake each other.
 *
 * Randomness: one generator per directed link, seeded from the test's seed.
 * A link's choices repeat with the seed as far as its calls come in the
 * same order (with pipelining, several may be in flight at once).
 *
 * Times given to simnet_new are multiplied by time_scale (RAFT_TIME_SCALE).
 */
#ifndef TESTS_SUPPORT_SIMNET_H
#define TESTS_SUPPORT_SIMNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

#define SIMNET_MAX_NODES RAFT_MAX_NODES

struct simnet;

struct simnet *simnet_new(unsigned n_nodes, uint64_t seed, double time_scale);

/* Every node must have been crashed (simnet_crash) before. */
void simnet_free(struct simnet *net);

/* A transport for the next incarnation of node id: calls through an endpoint
 * of an earlier incarnation fail at once with -ESHUTDOWN. */
struct raft_transport simnet_endpoint(struct simnet *net, unsigned id);

/* Makes room for one more node, the next id, which starts disconnected.
 * Returns the id, or -1 when SIMNET_MAX_NODES are there already. */
int simnet_add_node(struct simnet *net);
/* How many ids the network has: 0 .. simnet_n()-1. */
unsigned simnet_n(struct simnet *net);

/* From now on, calls to node id are delivered to `node`. */
void simnet_attach(struct simnet *net, unsigned id, struct raft_node *node);

/* Refuses new calls to node id, waits for the handlers running in it to
 * return, and makes its current endpoint a zombie. Afterwards the node may
 * be stopped: the network never calls into it again. */
void simnet_crash(struct simnet *net, unsigned id);

/* ---- links ---- */

/* The lab's connect: enable id <-> j for every connected j. */
void simnet_connect(struct simnet *net, unsigned id);
/* The lab's disconnect: disable id <-> j for every j. */
void simnet_disconnect(struct simnet *net, unsigned id);
bool simnet_is_connected(struct simnet *net, unsigned id);
/* Every node connected; links enabled exactly within a group
 * (group_of[i] names node i's group). */
void simnet_partition(struct simnet *net, const unsigned *group_of);
/* One direction only: from -> to. */
void simnet_set_link(struct simnet *net, unsigned from, unsigned to, bool enabled);
/* Requests from -> to whose type (enum raft_msg_type) has its bit set in
 * `types` are lost as on a disabled link; the others pass. 0: none lost.
 * Lets a script cut, say, AppendEntries to a node but not its votes. */
void simnet_block_types(struct simnet *net, unsigned from, unsigned to, uint32_t types);
bool simnet_link(struct simnet *net, unsigned from, unsigned to);

/* ---- faults ---- */

void simnet_set_reliable(struct simnet *net, bool reliable);
void simnet_set_long_reordering(struct simnet *net, bool on);
/* Per mille of delivered requests that are delivered a second time. */
void simnet_set_duplicate(struct simnet *net, unsigned permille);

/* ---- counters ---- */

struct simnet_stats {
    uint64_t rpcs;  /* calls made by every node (the lab's rpcTotal) */
    uint64_t bytes; /* request bytes at send time + delivered reply bytes */
    uint64_t rpcs_in[SIMNET_MAX_NODES];  /* reached node i's handler (rpcCount) */
    uint64_t rpcs_out[SIMNET_MAX_NODES]; /* calls made by node i */
    uint64_t bytes_out[SIMNET_MAX_NODES];
    uint64_t by_type[8]; /* calls per request type (enum raft_msg_type) */
    uint64_t dropped;    /* requests or replies dropped by unreliable mode */
    uint64_t failed;     /* calls on a disabled link or to a crashed node */
    uint64_t duplicated; /* second deliveries */
    unsigned max_pipelined; /* most requests sent and not yet answered on one link */
};

void simnet_stats(struct simnet *net, struct simnet_stats *out);

/* The estimated encoded size of a message: header, fields, entry data. */
size_t simnet_msg_bytes(const struct raft_msg *m);

#endif
