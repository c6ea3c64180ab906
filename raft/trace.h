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
 * send, recv, role (with "was" and "was_term"; none on the first line of a
 * node's life), commit ("index", "was") or apply ("from", "to"). A message
 * id is "<sender>-<n>", n counting the sender's messages from 1 (requests
 * and replies alike); the receiver's recv of it carries the same id.
 *
 * Lines are buffered (stdio, behind a small mutex of the writer's own) and
 * reach the file at least every TRACE_FLUSH_MS and when the node stops. A
 * node without a trace pays one NULL check per hook.
 */
#ifndef RAFT_TRACE_H
#define RAFT_TRACE_H

#include "raft/node.h"

#define TRACE_FLUSH_MS 200

/* Opens path for appending (a restarted node goes on where it stopped). */
int trace_open(struct trace_writer **out, const char *path);
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
