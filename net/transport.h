/*
 * transport.h - how messages reach a peer.
 *
 * The Raft code sends RPCs through `struct raft_transport` (raft/raft.h): one
 * function, call(peer, request, reply, timeout). This file names the
 * implementations of it:
 *
 *   net/tcp.h        real TCP sockets (the `raft` program)
 *   tests/simnet.h   the lab harness's simulated, unreliable network
 *
 * Both deliver an incoming request to a handler with the signature below,
 * which for a Raft node is raft_receive() and for a key-value server also
 * answers client requests. A transport never interprets a message beyond
 * its frame.
 */
#ifndef NET_TRANSPORT_H
#define NET_TRANSPORT_H

#include "net/wire.h"

struct tcp_conn;

/* Handles one decoded request and fills in the reply. Returns 0 to send the
 * reply, or a negative errno to drop the connection without answering; or,
 * over TCP, TCP_REPLY_LATER to answer later from another thread (net/tcp.h:
 * tcp_reply_later, tcp_reply on conn). A client reply's value, when not
 * NULL, is malloc'd by the handler and freed by the transport once the
 * reply is encoded. */
typedef int (*transport_handler)(void *ctx, const struct wire_msg *req,
                                 struct wire_msg *reply, struct tcp_conn *conn);

#endif
