/*
 * procs.h - `raft node` processes started one by one, as an operator
 * starts them, and `raft` commands run to their end with what they print:
 * for the system suites about the command line of membership changes
 * (system_membership_cli, system_bootstrap), where nodes join with
 * --listen only and others start from a --peers list.
 *
 * Every node listens on a reserved loopback port (tests/chaos/ports.h),
 * logs to ROOT/node-ID.log and keeps its data in ROOT/node-ID, ROOT being
 * a fresh /tmp/raft-NAME-XXXXXX removed by procs_free unless the test
 * failed or $CHAOS_KEEP is set. Nodes run the binary $RAFT_BIN (default
 * build/raft), with timeouts multiplied by chaos_time_scale().
 */
#ifndef TESTS_SUPPORT_PROCS_H
#define TESTS_SUPPORT_PROCS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/chaos/ports.h"

#define PROCS_MAX 8
#define PROCS_OUT_CAP 16384

struct procs_node {
    pid_t pid; /* 0: not running */
    struct port_reservation port;
    char addr[32], dir[96], log[112];
};

struct procs {
    char root[64];
    const char *bin;
    unsigned scale; /* chaos_time_scale() */
    char election[32], heartbeat[16];
    struct procs_node node[PROCS_MAX]; /* by node id */
    char peers[PROCS_MAX * 32];        /* addresses of nodes 0 .. n-1, comma-separated */
    bool failed;
};

/* What a command printed, and how it ended. */
struct procs_result {
    int status; /* exit status; -1 if it did not exit by itself */
    char out[PROCS_OUT_CAP], err[PROCS_OUT_CAP];
};

/* A fresh root and a reserved port for every id; peers lists the first
 * n_peers of them. Fails the test when it cannot. */
struct procs *procs_new(const char *name, unsigned n_peers);
/* Stops every node (SIGTERM, then waits); removes the root unless failed. */
void procs_free(struct procs *p);

/* Starts node id: with --peers (peers NULL: p->peers) unless listen_only,
 * in which case with --listen at its address alone. extra: more
 * arguments, NULL-terminated, may be NULL. */
void procs_start(struct procs *p, unsigned id, bool listen_only, const char *peers,
                 const char *const *extra);
/* SIGTERM and wait: its exit status as waitpid gives it. */
int procs_stop(struct procs *p, unsigned id);

/* Runs `raft ARGS...` (NULL-terminated) to its end, at most timeout_ms. */
void procs_run(struct procs *p, struct procs_result *r, unsigned timeout_ms, ...);
/* The same with an argument vector. */
void procs_runv(struct procs *p, struct procs_result *r, unsigned timeout_ms,
                const char *const *args);

/* The id of the node that leads, as the nodes in `among` (bitmask) tell
 * it, or -1 after timeout_ms. */
int procs_wait_leader(struct procs *p, uint32_t among, unsigned timeout_ms);
/* Waits until node id has applied at least index: 0, or -1 after timeout_ms. */
int procs_wait_applied(struct procs *p, unsigned id, uint64_t index, unsigned timeout_ms);
/* How many lines of node id's log contain needle. */
int procs_log_count(struct procs *p, unsigned id, const char *needle);

/* Marks the run failed (the root is kept) and prints each log's tail. */
void procs_failed(struct procs *p);

/* For a cmocka test that keeps its procs in *state: the end of a test
 * that passed (every running node stops with exit status 0 and no log
 * holds a sanitizer report, or the test fails; then procs_free), and the
 * teardown (after a failed assertion: logs printed, root kept). */
void procs_finish_or_fail(void **state);
int procs_teardown(void **state);

#endif
