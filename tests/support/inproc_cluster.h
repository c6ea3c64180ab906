/*
 * inproc_cluster.h - a few real Raft nodes in one process, over real files
 * in a temporary directory, each file system call going through the node's
 * own failing disk (tests/support/failing_disk.h). Nodes talk by calling
 * each other's raft_receive() directly; the state machine is a list of
 * 8-byte numbers, so that a test can tell exactly which puts were applied.
 * Every line a node and its storage log is kept, to be counted.
 *
 *     struct inproc_cluster *w = inproc_cluster_new(3, 0);
 *     *state = w;                      // inproc_cluster_teardown frees it
 *     for (unsigned i = 0; i < 3; i++)
 *         inproc_node_up(w, i, true);
 *     int leader = inproc_wait_leader(w, 0, 5000);
 *     inproc_put_number(w, leader, 1, 2000);
 *
 * The helpers that check something fail the cmocka test when it is not so.
 */
#ifndef TESTS_SUPPORT_INPROC_CLUSTER_H
#define TESTS_SUPPORT_INPROC_CLUSTER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"
#include "raft/storage/storage.h"
#include "tests/support/failing_disk.h"

#define INPROC_MAX_NODES 3

/* The state machine: the numbers applied, in order. mu guards all. */
struct inproc_numbers {
    pthread_mutex_t mu;
    unsigned snapshot_delay_ms; /* a slow state machine, to widen races */
    uint64_t fail_apply_at;     /* apply fails from this index on (0: never) */
    uint64_t applied;
    uint64_t *v;
    size_t n, cap;
};

/* Every line a node and its storage log, as "L who text\n" (L the level's
 * letter, EWIDT). mu guards all. */
struct inproc_log {
    pthread_mutex_t mu;
    char *text;
    size_t len, cap;
};

struct inproc_node {
    struct inproc_cluster *world;
    uint32_t id;
    char dir[128];
    struct failing_disk disk;
    struct storage_io io; /* through disk */
    struct file_storage *fs;
    struct raft_node *raft; /* NULL while the node is down */
    struct inproc_numbers fsm;
    struct inproc_log log;
    /* The gate other nodes' calls pass through, so that the node can be
     * stopped while they call it. gate_mu guards up and inflight. */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cond;
    bool up;
    unsigned inflight;
};

struct inproc_cluster {
    unsigned n;
    uint64_t snapshot_every;
    char root[64];
    struct inproc_node nodes[INPROC_MAX_NODES];
};

/* n nodes (none started yet) in a fresh directory under /tmp; a snapshot
 * every snapshot_every applied entries (0: never). */
struct inproc_cluster *inproc_cluster_new(unsigned n, uint64_t snapshot_every);
/* Stops every node and removes the directory. */
void inproc_cluster_free(struct inproc_cluster *w);
/* A cmocka teardown for a test that keeps its cluster in *state. */
int inproc_cluster_teardown(void **state);

/* Starts node i over its directory; faulty: through its failing disk,
 * else straight to POSIX (the disk has been fixed). */
void inproc_node_up(struct inproc_cluster *w, unsigned i, bool faulty);
/* Stops node i, waiting for the calls other nodes are making into it. */
void inproc_node_down(struct inproc_cluster *w, unsigned i);

struct raft_status inproc_status(struct inproc_cluster *w, unsigned i);

/* The one node that leads (in the highest term), or -1 after timeout_ms;
 * nodes that are down or listed in `skip` (a bit mask) are not asked. */
int inproc_wait_leader(struct inproc_cluster *w, unsigned skip, unsigned timeout_ms);

/* Proposes the number x on node i and waits for it to be applied there:
 * 0 when it was (acknowledged), else why not. */
int inproc_put_number(struct inproc_cluster *w, unsigned i, uint64_t x, unsigned timeout_ms);
/* The same through raft_propose_async(): returns what its callback said
 * (called once, or the test fails), or -EPERM if it was refused. */
int inproc_put_number_async(struct inproc_cluster *w, unsigned i, uint64_t x,
                            unsigned timeout_ms);

/* A copy of the numbers applied so far; returns how many (at most max). */
size_t inproc_numbers_copy(struct inproc_numbers *s, uint64_t *out, size_t max);
/* Waits until node i has applied at least n numbers; returns how many. */
size_t inproc_wait_numbers(struct inproc_cluster *w, unsigned i, size_t n, unsigned timeout_ms);
/* Node i's state machine holds 1, 2, ..., at least `acked` of them, and
 * nothing else but perhaps up to `maybe` more in the same sequence. */
void inproc_expect_numbers(struct inproc_cluster *w, unsigned i, uint64_t acked,
                           uint64_t maybe);

/* Lines of the node's log at `level` from `who` ("raft" or "storage")
 * that contain `needle` ("" for all). */
int inproc_count_log(struct inproc_node *t, enum raft_log_level level, const char *who,
                     const char *needle);
/* Prints the node's error lines, indented. */
void inproc_print_errors(struct inproc_node *t);

/* After a disk fault: node i no longer leads, refuses proposals and reads,
 * stays quiet (no campaigns, no retries) for several election timeouts,
 * and said so in one error line, which contains `what`. */
void inproc_expect_stepped_down(struct inproc_cluster *w, unsigned i, const char *what);

/* What a fresh storage over a node's directory loads (with the POSIX
 * disk): the numbers in its log after its snapshot, and whether load
 * complained. */
struct inproc_reloaded {
    int rc;
    uint64_t term;
    uint64_t snapshot_index;
    size_t n_numbers;
    uint64_t numbers[256];
    int warnings;
};
void inproc_reload(struct inproc_node *t, struct inproc_reloaded *r);

/* Whether the node's directory holds a file of that name. */
bool inproc_file_exists(struct inproc_node *t, const char *name);

#endif
