/*
 * cluster.h - real `raft node` processes on loopback ports, for every suite
 * that runs the program itself (system_cluster, system_durability_*,
 * system_chaos, system_hostile): start, kill, restart, wait for a leader,
 * read the logs.
 *
 * With proxies (the default), every directed link i -> j (i != j) gets its
 * own proxy (tests/chaos/proxy.h) that forwards to node j. Node i is
 * started with a --peers list that names its own address at position i
 * and, at every other position j, the proxy for i -> j. So the test can
 * cut, delay or reset any link in either direction, while clients (and the
 * test's status polls) reach every node directly at its own address.
 * Without proxies (`direct`), every node's --peers lists the nodes
 * themselves, as an operator would start them, and the network functions
 * below do nothing.
 *
 * Nodes run the binary named by $RAFT_BIN (default build/raft), each with
 * its log (stdout and stderr) in DIR/node-I.log and its data in
 * DIR/node-I, DIR being a fresh directory /tmp/raft-NAME-XXXXXX that
 * chaos_cluster_stop() removes, unless chaos_cluster_failed() was called
 * or $CHAOS_KEEP is set (then its path is printed, logs and data intact).
 */
#ifndef TESTS_CHAOS_CLUSTER_H
#define TESTS_CHAOS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kv/client.h"
#include "tests/chaos/ports.h"
#include "tests/chaos/proxy.h"

#define CHAOS_MAX_NODES 7

struct chaos_cluster_options {
    unsigned nodes;           /* 3 or 5, at most CHAOS_MAX_NODES */
    unsigned election_min_ms; /* --election-timeout MIN-MAX; 0: the node's default */
    unsigned election_max_ms;
    unsigned heartbeat_ms;    /* --heartbeat; 0: the node's default */
    const char *snapshot_every; /* --snapshot-every; NULL: the node's default */
    const char *log_level;    /* NULL: "info" */
    const char *name;         /* in the directory's name; NULL: "chaos" */
    bool direct;              /* no proxies: the nodes reach each other directly */
    /* --tls-dir for every node, and DIR/client.crt for the kit's own
     * status polls; NULL: plain TCP. */
    const char *tls_dir;
    /* --cluster-name for every node; NULL: none when direct (the id comes
     * from --peers, the same on every node), else the directory's name,
     * since through proxies every node's --peers differs. */
    const char *cluster_name;
    uint64_t seed;            /* for the proxies */
};

/* The strings of one node's command line. */
struct chaos_node_args {
    char id[8], data[96], timeout[32], heartbeat[16];
};

/* The longest command line a node is started with, NULL included. */
#define CHAOS_NODE_ARGV 24

struct chaos_cluster {
    struct chaos_cluster_options opt;
    unsigned n;
    const char *bin;
    char dir[64];
    char addr[CHAOS_MAX_NODES][32]; /* where node i listens */
    struct port_reservation port[CHAOS_MAX_NODES]; /* held until the cluster stops */
    char *addrs[CHAOS_MAX_NODES + 1]; /* the same, for kv_client_open() */
    char addr_list[CHAOS_MAX_NODES * 32]; /* the same, comma-separated: `client --cluster` */
    struct chaos_proxy *link[CHAOS_MAX_NODES][CHAOS_MAX_NODES]; /* i -> j */
    char peers[CHAOS_MAX_NODES][CHAOS_MAX_NODES * 32];          /* node i's --peers */
    pid_t pids[CHAOS_MAX_NODES]; /* 0: not running */
    struct tls_ctx *tls; /* the client certificate of opt.tls_dir, or NULL */
    char cluster_name[64]; /* its --cluster-name, or "" for none */
    bool failed;
};

/* Starts the proxies and every node. Returns 0 or a negative errno. */
int chaos_cluster_start(struct chaos_cluster **out, const struct chaos_cluster_options *opt);

/* SIGTERM to every node (and waits), stops the proxies, removes the
 * directory unless the cluster failed or $CHAOS_KEEP is set. */
void chaos_cluster_stop(struct chaos_cluster *c);

/* Stops every running node with SIGTERM, then reads every node's log for
 * sanitizer reports ("Sanitizer", "runtime error:"). Returns 0, or -1 with
 * the first problem (a node that did not exit with status 0, or a report)
 * described in msg. A node killed with SIGKILL never reaches its
 * exit-time report, but what it reported while it ran is in its log. */
int chaos_cluster_shutdown(struct chaos_cluster *c, char *msg, size_t cap);

/* Marks the run as failed: the directory is kept, and the last lines of
 * every node's log are printed now. */
void chaos_cluster_failed(struct chaos_cluster *c, const char *why);

/* Starts one more node, id c->n (returned in *id), on a new port, in no
 * configuration (`raft node --listen`): it waits to be added. Without
 * proxies only. 0 or a negative errno. */
int chaos_cluster_add_node(struct chaos_cluster *c, unsigned *id);

/* Starts node i (again) on its data directory. */
int chaos_cluster_start_node(struct chaos_cluster *c, unsigned i);

/* Node i's command line, NULL-terminated, into argv (its strings live in
 * c and in the buffers given); for a suite that runs a node itself. */
void chaos_cluster_node_argv(struct chaos_cluster *c, unsigned i, const char **argv,
                             struct chaos_node_args *buf);

/* Where node i keeps its data, and its log. */
void chaos_cluster_node_dir(const struct chaos_cluster *c, unsigned i, char *out, size_t cap);
void chaos_cluster_log_path(const struct chaos_cluster *c, unsigned i, char *out, size_t cap);

/* For a cmocka test that owns one cluster at a time: starts it into
 * *state, or fails the test. */
struct chaos_cluster *chaos_cluster_start_or_fail(void **state,
                                                  const struct chaos_cluster_options *opt);
/* Stops the cluster in *state and sets *state to NULL; fails the test
 * unless chaos_cluster_shutdown() found every node clean. */
void chaos_cluster_stop_or_fail(void **state);
/* Starts node i (again), or fails the test. */
void chaos_cluster_start_node_or_fail(struct chaos_cluster *c, unsigned i);
/* Stops node i with SIGTERM; fails the test unless it exits with 0. */
void chaos_cluster_stop_node_or_fail(struct chaos_cluster *c, unsigned i);
/* The teardown of such a test: after a failed assertion, the nodes' logs
 * are printed and the cluster is stopped, its directory kept. */
int chaos_cluster_teardown(void **state);

/* Sends sig to node i and, for SIGKILL and SIGTERM, waits for it to end.
 * Returns its exit status as waitpid() gives it, or -1 if it was not
 * running. */
int chaos_cluster_kill(struct chaos_cluster *c, unsigned i, int sig);

/* Network faults (none without proxies). A partition cuts every link,
 * both directions, between a node in `side` (a bitmask of node ids) and a
 * node outside it; links inside each side are left as they are. */
void chaos_cluster_partition(struct chaos_cluster *c, uint32_t side);
void chaos_cluster_isolate(struct chaos_cluster *c, unsigned i);
/* Cuts (or heals) both directions between nodes i and j. */
void chaos_cluster_cut_pair(struct chaos_cluster *c, unsigned i, unsigned j, bool cut);
/* Cuts (or heals) one direction: the requests node i sends to node j (and
 * j's replies to them); j's own requests to i still get through. */
void chaos_cluster_cut_link(struct chaos_cluster *c, unsigned i, unsigned j, bool cut);
/* Heals every link (delays stay as they are). */
void chaos_cluster_heal(struct chaos_cluster *c);
/* Every link delays its data by min..max ms (0, 0: none). */
void chaos_cluster_set_delay(struct chaos_cluster *c, unsigned min_ms, unsigned max_ms);
/* Resets about `percent` % of the connections of every link. */
unsigned chaos_cluster_reset_links(struct chaos_cluster *c, unsigned percent);

/* Node i's own view (role, term, leader, commit...), asked directly. */
int chaos_cluster_status(struct chaos_cluster *c, unsigned i, unsigned timeout_ms,
                         struct client_reply *out);

/* Waits until, among the running nodes in `among` (bitmask), one claims to
 * lead in the highest term any of them reports, in a term >= min_term, and
 * a majority of the whole cluster is in that term and agrees on it (so that
 * it can commit). Returns its id, or -1 after timeout_ms. *term_out (if not
 * NULL) receives its term. */
int chaos_cluster_wait_leader(struct chaos_cluster *c, uint32_t among, uint64_t min_term,
                              unsigned timeout_ms, uint64_t *term_out);

/* Waits until node i has applied everything a leader has committed (the
 * leader found afresh each time). Returns the time it took in ms, or -1
 * after timeout_ms. */
long chaos_cluster_wait_caught_up(struct chaos_cluster *c, unsigned i, unsigned timeout_ms);

/* How many lines of node i's log contain `needle`. */
int chaos_cluster_log_count(const struct chaos_cluster *c, unsigned i, const char *needle);

/* chaos_cluster_wait_leader() among all the nodes, in any term. */
int chaos_cluster_leader(struct chaos_cluster *c, unsigned timeout_ms);

/* All node ids as a bitmask. */
uint32_t chaos_cluster_all(const struct chaos_cluster *c);

/* $CHAOS_ROUNDS, or dflt when unset or not a number. */
unsigned chaos_rounds(unsigned dflt);

/* How much slower than native the nodes run: $CHAOS_TIME_SCALE (1-20), else
 * 3 when $RAFT_BIN names a ThreadSanitizer build ("tsan" in its path), else
 * 1. Suites multiply election timeouts, heartbeats and waits by it, so
 * that a sanitizer's slowness is not mistaken for a failure. */
unsigned chaos_time_scale(void);

#endif
