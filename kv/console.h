/*
 * console.h - the console of `raft cluster`: commands read from a file
 * descriptor (standard input: a terminal or a pipe) that act on the nodes
 * running in this process, with one-line replies.
 *
 *   help            the commands
 *   status          one line per node: role, term, leader, commit, applied,
 *                   last index (or down, or isolated)
 *   put K V         through the leader, as a client does (V: the rest of
 *                   the line)
 *   get K           likewise: a linearizable read (thesis §6.4)
 *   crash N         stops node N as a crash would (kv_server_crash)
 *   restart N       starts node N again from its data directory
 *   isolate N       drops node N's messages to and from its peers
 *   heal            undoes every isolate
 *   transfer N      moves leadership to node N (thesis §3.10)
 *   member list     the leader's configuration, one line per member
 *   member add N    starts node N in this process on the next free port,
 *                   with its own data directory, and adds it to the
 *                   cluster (thesis ch. 4: a learner first, a voter once
 *                   it caught up)
 *   member remove N removes node N from the configuration (it runs on, a
 *                   member no more, until crash N)
 *   quit            asks the owner to stop everything
 *
 * Errors are replies too: one line starting with "error: ". End of input
 * ends the console, not the cluster.
 */
#ifndef KV_CONSOLE_H
#define KV_CONSOLE_H

#include <stdint.h>
#include <stdio.h>

#include "kv/server.h"

struct kv_console_config {
    /* servers[i] is node i (RAFT_MAX_ID + 1 slots), NULL while it is down
     * or was never started; the console replaces entries as it crashes,
     * restarts and adds nodes, until kv_console_stop. */
    struct kv_server **servers;
    const struct kv_server_config *configs; /* how to restart node i, for i < n */
    uint32_t n;                             /* nodes 0 .. n-1 were started by the owner */
    /* member add N: fills in how to start node N, in no configuration yet
     * (its address, its data directory; the strings must outlive the
     * console). Returns 0 or a negative errno. NULL: no member add. */
    int (*new_node)(void *ctx, uint32_t id, struct kv_server_config *out);
    void *new_node_ctx;
    int in_fd;               /* commands */
    FILE *out;               /* replies */
    unsigned client_timeout_ms; /* for put and get; 0: enough to wait out an election */
    void (*quit)(void *ctx); /* called from the console's thread on `quit` */
    void *ctx;
};

struct kv_console;

/* Starts the console's thread; on a terminal it first prints a hint.
 * Returns 0 or a negative errno. */
int kv_console_start(struct kv_console **out, const struct kv_console_config *cfg);

/* Lets the command in progress finish, joins the thread and frees c; the
 * servers are then the caller's again. c may be NULL. */
void kv_console_stop(struct kv_console *c);

#endif
