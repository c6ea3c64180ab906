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
    /* servers[i] is node i, NULL while it is down; the console replaces
     * entries as it crashes and restarts nodes, until kv_console_stop. */
    struct kv_server **servers;
    const struct kv_server_config *configs; /* how to restart node i */
    uint32_t n;
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
