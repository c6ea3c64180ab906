/*
 * transport.h - how the server hands an incoming request to its owner.
 *
 * Outbound, Raft sends its RPCs through `struct raft_transport`
 * (raft/raft.h); net/tcp_transport.h implements it over TCP, and the lab
 * harness's simulated network (tests/support/simnet.h) in memory, calling
 * the target's raft_receive() directly.
 *
 * Inbound, the TCP server (net/tcp_server.h) decodes each request frame and
 * passes it to a handler with the signature below; the key-value server's
 * (kv/server.c) gives Raft messages to raft_receive() and answers client
 * requests itself. The server never interprets a message beyond its frame.
 */
#ifndef NET_TRANSPORT_H
#define NET_TRANSPORT_H

#include "net/wire.h"

struct tcp_conn;

/* Handles one decoded request and fills in the reply. Returns 0 to send the
 * reply, or a negative errno to drop the connection without answering; or
 * TCP_REPLY_LATER to answer later from another thread (net/tcp_server.h:
 * tcp_reply_later, tcp_reply on conn). A client reply's value, when not
 * NULL, is malloc'd by the handler and freed by the server once the reply
 * is encoded. */
typedef int (*transport_handler)(void *ctx, const struct wire_msg *req,
                                 struct wire_msg *reply, struct tcp_conn *conn);

#endif
