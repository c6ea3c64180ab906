/*
 * tcp_transport.h - the outbound transport: struct raft_transport over TCP.
 *
 * One persistent connection per peer, reconnected lazily with exponential
 * backoff, every call bounded by its timeout, with up to 8 requests in
 * flight on it (send, then await: thesis §10.2.2 pipelining). The frames
 * are those of net/wire.h; the peer's side is a tcp_server (tcp_server.h).
 *
 * Everything returns 0 or a negative errno. There is no global state:
 * several nodes may run in one process.
 */
#ifndef NET_TCP_TRANSPORT_H
#define NET_TCP_TRANSPORT_H

#include <stdint.h>

#include "raft/raft.h"

struct tcp_transport;

/* peer_addrs[i] is "host:port" of node i (IPv6 as "[addr]:port") for i
 * below n_peers (the --peers list; NULL when n_peers is 0, for a node that
 * waits to be added); the entry for self_id is not used. Every other node
 * (ids up to RAFT_MAX_ID) is dialed at the address the configurations
 * give it (set_members), and not at all while none does. The strings are
 * copied. log may be NULL. Nothing connects until the first call. Returns
 * 0 or -EINVAL / -ENOMEM. */
int tcp_transport_create(struct tcp_transport **out, uint32_t self_id,
                         char *const *peer_addrs, uint32_t n_peers,
                         void (*log)(void *ctx, enum raft_log_level lvl,
                                     const char *msg),
                         void *log_ctx);

/* Makes every connection mutual TLS (net/tls.h), used only once the peer's
 * certificate names the node id it is dialed as; NULL: plain TCP. Call
 * before the first call; tls is not owned and must outlive t. */
struct tls_ctx;
void tcp_transport_set_tls(struct tcp_transport *t, struct tls_ctx *tls);

/* Starts every connection with a hello carrying ci's cluster id
 * (net/hello.h), and uses it only if the peer welcomes it as the node
 * dialed; NULL: no hello. Call before the first call; ci is not owned and
 * must outlive t. */
struct cluster_ident;
void tcp_transport_set_cluster(struct tcp_transport *t, struct cluster_ident *ci);

/* Closes every connection and frees t. No call may be in progress. */
void tcp_transport_destroy(struct tcp_transport *t);

/* The table to hand to raft_start(), with call(), send(), await() and
 * set_members(). A call sends req with from = self_id and returns 0 with
 * the peer's reply, or -EINVAL (an id above RAFT_MAX_ID, this node's own,
 * or not a request), -EHOSTUNREACH (no address is known for the peer),
 * -ETIMEDOUT, -ECONNREFUSED (while backing off after a failed connect, the
 * error of that connect, at once),
 * -EBADMSG / -EPROTO (a reply that is malformed, of the wrong type, or from
 * another node than asked), or another -errno. After any failure the
 * connection is closed, so that a late reply is never read as the answer to
 * the next request. */
struct raft_transport tcp_transport_ops(struct tcp_transport *t);

#endif
