/*
 * trace.h - a node's trace: every message it sends and receives, every
 * change of role or term, every commit and apply, as one JSON object a line
 * (NDJSON), for `raft timeline` to draw.
 *
 *   {"t":1712345678901.234,"node":0,"term":2,"role":"leader","ev":"send",
 *    "msg":{"id":"0-17","type":"AppendEntries","from":0,"to":1,"term":2,
 *           "prev":4,"prev_term":2,"commit":4,"entries":1}}
 *
 * t is wall-clock time (CLOCK_REALTIME) in milliseconds, to the
 * microsecond, so that the traces of several processes line up. ev is
 * send, recv, role (with "was" and "was_term"), commit ("index", "was") or
 * apply ("from", "to"). The first line of each start of the node is a role
 * line without "was": it gives the commit and applied indexes recovered,
 * and "boot", which start of this node in this file it is (1, 2, ...).
 *
 * A message id is "<sender>-<n>" in the sender's first boot and
 * "<sender>-<boot>.<n>" after it, n counting the boot's messages from 1
 * (requests and replies alike); the receiver's recv of it carries the same
 * id. So a node restarted onto the file it wrote before never reuses an
 * id, and raft timeline pairs each recv with the one send it answers. In
 * struct raft_msg the id is one number: the boot less one, shifted left by
 * TRACE_BOOT_SHIFT, plus n.
 *
 * Lines are buffered (behind a small mutex of the writer's own) and reach
 * the file when the buffer fills, at least every TRACE_FLUSH_MS, and when
 * the node stops: a process killed outright loses at most its last
 * TRACE_FLUSH_MS of lines, never a boot's start line (written at once).
 * A node without a trace pays one NULL check per hook.
 */
#ifndef RAFT_TRACE_H
#define RAFT_TRACE_H

#include "raft/node.h"

#define TRACE_FLUSH_MS 200
#define TRACE_BOOT_SHIFT 40 /* 2^40 messages a boot, 2^24 boots a file */

/* Opens path for appending (a restarted node goes on where it stopped),
 * reading from its end which boot this one is. */
int trace_open(struct trace_writer **out, const char *path);
/* What n->msg_seq starts at: the first message of the boot is one more.
 * 0 without a trace. */
uint64_t trace_first_msg_seq(const struct trace_writer *t);
/* Flushes and closes; NULL is fine. */
void trace_close(struct trace_writer *t);

/* The hooks, all called with n->mu held. A send gives the peer it goes to;
 * a recv is of a message addressed to this node. */
void trace_send_locked(struct raft_node *n, const struct raft_msg *m, uint32_t to);
void trace_recv_locked(struct raft_node *n, const struct raft_msg *m);
/* Writes what changed since the last line: role or term, commit, applied.
 * Called before each message line and whenever the lock is let go, so that
 * every change is written before anything it caused. */
void trace_observe_locked(struct raft_node *n);
/* The first line of the node's life, once it has recovered its state. */
void trace_start_locked(struct raft_node *n);

#endif
