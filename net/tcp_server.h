/*
 * tcp_server.h - the inbound side: a listener thread and one thread per
 * connection, each reading a request frame (net/wire.h), calling the
 * transport_handler (net/transport.h) and writing its reply, in a loop.
 * It serves peers (the other end of tcp_transport.h) and clients alike.
 *
 * Everything returns 0 or a negative errno. There is no global state:
 * several nodes may run in one process.
 */
#ifndef NET_TCP_SERVER_H
#define NET_TCP_SERVER_H

#include <stdint.h>

#include "net/transport.h"
#include "net/wire.h"
#include "raft/raft.h"

struct tcp_server_options {
    const char *host;  /* address to bind; NULL or "" for every interface */
    uint16_t port;     /* 0: an ephemeral port, see tcp_server_port() */
    /* 0: 256; more are accepted and closed. With TLS, at most half of them
     * may be in the handshake: a new one past that closes the oldest. */
    unsigned max_connections;
    /* A connection silent this long, idle or mid-frame, is closed (and so is
     * one that does not take a reply this long). 0: 30000. */
    unsigned idle_timeout_ms;
    /* Called from the connection threads, several at once. A client reply's
     * value is freed by the server after the handler returns, whatever it
     * returns (see net/transport.h). */
    /* With a context (net/tls.h), every connection is mutual TLS 1.3: the
     * handshake comes first, a peer message is served only from a node
     * certificate naming its sender, and a client certificate may send
     * client requests only. NULL: plain TCP. Not owned; outlives s. */
    struct tls_ctx *tls;
    /* With an identity (net/cluster_id.h), a connection may send peer
     * messages only after a hello (net/hello.h) that this node welcomed:
     * one from another cluster is refused before any Raft message is
     * read. node_id is this node's, for the answer. NULL: no hello is
     * asked for. Not owned; outlives s. */
    struct cluster_ident *cluster;
    uint32_t node_id;
    transport_handler handler;
    void *handler_ctx;
    /* may be NULL */
    void (*log)(void *ctx, enum raft_log_level lvl, const char *msg);
    void *log_ctx;
};

struct tcp_server;

/* Binds (SO_REUSEADDR), listens and starts the listener thread. Returns 0 or
 * -errno (-EADDRINUSE, -EINVAL, ...) having left nothing behind. */
int tcp_server_start(struct tcp_server **out,
                     const struct tcp_server_options *opt);

/* The port the server listens on (useful after binding port 0). */
uint16_t tcp_server_port(const struct tcp_server *s);

/* Closes the listener, shuts down every open connection, joins every thread
 * (waiting for handlers that are running, and for deferred replies) and
 * frees s. */
void tcp_server_stop(struct tcp_server *s);

/* Deferred replies. A handler that will answer from another thread calls
 * tcp_reply_later(conn) before anything that could make that thread answer,
 * and returns TCP_REPLY_LATER; the answer is then sent with tcp_reply(conn,
 * reply), exactly once (a client reply's value is freed by it). Meanwhile
 * the connection reads ahead but handles no other request, and it is not
 * closed. A reply that does not fit in the socket's buffer at once closes
 * the connection (the client is not reading). */
#define TCP_REPLY_LATER 1
void tcp_reply_later(struct tcp_conn *conn);
void tcp_reply(struct tcp_conn *conn, struct wire_msg *reply);

#endif
