/*
 * tcp.h - the TCP transport: frames of net/wire.h over TCP sockets.
 *
 *   outbound   struct tcp_transport implements struct raft_transport: one
 *              persistent connection per peer, reconnected lazily with
 *              exponential backoff, every call bounded by its timeout, with
 *              up to 8 requests in flight on it (send, then await).
 *   inbound    struct tcp_server: a listener thread and one handler thread
 *              per connection, each reading a request frame, calling the
 *              transport_handler and writing its reply, in a loop.
 *   clients    tcp_dial() and tcp_roundtrip() for the command-line client
 *              and the benchmark.
 *
 * Everything returns 0 (or a count, or an fd) or a negative errno. There is
 * no global state: several nodes may run in one process. Sockets are sent
 * to with MSG_NOSIGNAL, so a closed peer never raises SIGPIPE.
 */
#ifndef NET_TCP_H
#define NET_TCP_H

#include <stddef.h>
#include <stdint.h>

#include "net/transport.h"
#include "net/wire.h"
#include "raft/raft.h"

/* ---- outbound: struct raft_transport over TCP ---- */

struct tcp_transport;

/* peer_addrs[i] is "host:port" of node i (IPv6 as "[addr]:port"); the entry
 * for self_id is not used. The strings are copied. log may be NULL. Nothing
 * connects until the first call. Returns 0 or -EINVAL / -ENOMEM. */
int tcp_transport_create(struct tcp_transport **out, uint32_t self_id,
                         char *const *peer_addrs, uint32_t n_peers,
                         void (*log)(void *ctx, enum raft_log_level lvl,
                                     const char *msg),
                         void *log_ctx);

/* Closes every connection and frees t. No call may be in progress. */
void tcp_transport_destroy(struct tcp_transport *t);

/* The table to hand to raft_start(), with call(), send() and await(). A
 * call sends req with from = self_id and returns 0 with the peer's reply,
 * or -EINVAL (bad peer or message type),
 * -ETIMEDOUT, -ECONNREFUSED (while backing off after a failed connect, the
 * error of that connect, at once),
 * -EBADMSG / -EPROTO (a reply that is malformed, of the wrong type, or from
 * another node than asked), or another -errno. After any failure the
 * connection is closed, so that a late reply is never read as the answer to
 * the next request. */
struct raft_transport tcp_transport_ops(struct tcp_transport *t);

/* ---- inbound: the server ---- */

struct tcp_server_options {
    const char *host;  /* address to bind; NULL or "" for every interface */
    uint16_t port;     /* 0: an ephemeral port, see tcp_server_port() */
    unsigned max_connections; /* 0: 256; more are accepted and closed */
    /* A connection silent this long, idle or mid-frame, is closed (and so is
     * one that does not take a reply this long). 0: 30000. */
    unsigned idle_timeout_ms;
    /* Called from the connection threads, several at once. A client reply's
     * value is freed by the server after the handler returns, whatever it
     * returns (see net/transport.h). */
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

/* ---- clients ---- */

/* Splits "host:port" or "[v6addr]:port". Returns 0, or -EINVAL when the host
 * is empty or does not fit in host_cap, or the port is not 1..65535. */
int tcp_parse_addr(const char *host_port, char *host, size_t host_cap,
                   uint16_t *port);

/* Connects within timeout_ms. Returns a non-blocking, close-on-exec fd with
 * TCP_NODELAY set (for tcp_roundtrip()), or -errno. */
int tcp_dial(const char *host_port, unsigned timeout_ms);

/* For event loops: starts connecting to the first address of host_port and
 * returns at once a non-blocking fd set up as tcp_dial()'s, or -errno. The
 * connect may still be in progress: once the fd is writable, SO_ERROR says
 * how it ended. (A host name is looked up before it returns; give numeric
 * addresses to never block.) */
int tcp_dial_start(const char *host_port);

/* Sends req and reads one reply frame into *buf (grown with realloc; the
 * caller frees it), all within timeout_ms. Pointers in *reply point into
 * *buf, so req must not; an AppendEntries reply must be released with
 * wire_msg_release(). Returns 0 or -errno; after a failure the stream is out
 * of step and the caller must close fd. */
int tcp_roundtrip(int fd, const struct wire_msg *req, struct wire_msg *reply,
                  uint8_t **buf, size_t *cap, unsigned timeout_ms);

#endif
