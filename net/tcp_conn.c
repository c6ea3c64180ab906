/*
 * tcp_conn.c - one connection of the server, served by its own thread: read
 * a request frame, hand it to the handler, write the reply (or let another
 * thread write it later), in a loop until the first error.
 *
 * A peer that sends garbage loses its connection only; why it was closed is
 * logged at warn level when the peer was at fault, at debug level when it
 * merely went away.
 *
 * With TLS the thread first runs the handshake, bounded by
 * TCP_HANDSHAKE_MS, and then serves a request only if the certificate's
 * role allows it: the peer protocol to a node certificate naming the
 * message's sender, client requests to any certificate of the CA. With a
 * cluster identity, peer messages also wait for a welcomed hello
 * (tcp_hello.c).
 */
#include "net/tcp_internal.h"
#include "net/tcp_server_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net/opening.h"
#include "net/tls.h"

/* A handshake must be done within this, or the connection is dropped: a
 * TLS 1.3 handshake takes one round trip and two for the TCP connection,
 * milliseconds on a LAN and well under a second across the world. */
#define TCP_HANDSHAKE_MS 3000

static struct tcp_stream tcp_conn_stream(const struct tcp_conn *c)
{
    return (struct tcp_stream){ .fd = c->fd, .tls = c->tls };
}

/* Logs why a connection is being closed: at warn level when the peer did
 * something wrong, at debug level when it merely went away or was idle. */
static void tcp_conn_log(struct tcp_conn *c, bool peer_at_fault,
                         const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void tcp_conn_log(struct tcp_conn *c, bool peer_at_fault,
                         const char *fmt, ...)
{
    struct tcp_server *s = c->srv;
    if (s->opt.log == NULL)
        return;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    /* While stopping, every connection ends in an error: not worth a warn. */
    enum raft_log_level lvl = peer_at_fault && !tcp_server_stopping(s)
                                  ? RAFT_LOG_WARN : RAFT_LOG_DEBUG;
    tcp_log(s->opt.log, s->opt.log_ctx, lvl, "closing connection from %s: %s",
            c->peer, why);
}

static const char *tcp_decode_reason(int rc)
{
    switch (rc) {
    case -EPROTO:
        return "unknown version or message type";
    case -EMSGSIZE:
        return "a field is over its size limit";
    case -ENOMEM:
        return "out of memory decoding it";
    default:
        return "truncated or inconsistent fields";
    }
}

static void tcp_conn_read_failed(struct tcp_conn *c, int rc, size_t got,
                                 const uint8_t *header)
{
    struct tcp_server *s = c->srv;
    char e[96];
    const char *tls_here = got >= 1 ? opening_refusal(opening_classify(header, got), false)
                                    : NULL;
    if (tcp_server_stopping(s)) {
        tcp_conn_log(c, false, "the server is stopping");
    } else if ((rc == -EBADMSG || rc == -EMSGSIZE) && tls_here != NULL) {
        tcp_conn_log(c, true, "%s", tls_here);
    } else if (rc == -EBADMSG || rc == -EMSGSIZE) {
        tcp_conn_log(c, true, "bad frame length %lu (%s)",
                     (unsigned long)wire_be32(header),
                     rc == -EMSGSIZE ? "over the maximum" : "too short");
    } else if (got == 0 && rc == -ECONNRESET) {
        tcp_conn_log(c, false, "closed by the peer");
    } else if (got == 0 && rc == -ETIMEDOUT) {
        tcp_conn_log(c, false, "idle for %u ms", s->opt.idle_timeout_ms);
    } else if (rc == -ETIMEDOUT) {
        tcp_conn_log(c, true, "silent for %u ms in the middle of a frame",
                     s->opt.idle_timeout_ms);
    } else {
        tcp_conn_log(c, got > 0, "%s%s", tcp_errstr(rc, e, sizeof e),
                     got > 0 ? " in the middle of a frame" : "");
    }
}

static int tcp_conn_send_reply(struct tcp_conn *c, const struct wire_msg *reply,
                               int64_t deadline)
{
    long n = tcp_encode(reply, &c->out, &c->out_cap);
    if (n < 0) {
        char e[96];
        tcp_log(c->srv->opt.log, c->srv->opt.log_ctx, RAFT_LOG_ERROR,
                "cannot encode the reply (type %u) to %s: %s; closing",
                (unsigned)reply->type, c->peer, tcp_errstr((int)n, e, sizeof e));
        return (int)n;
    }
    struct tcp_stream io = tcp_conn_stream(c);
    int rc = tcp_send_all(&io, c->out, (size_t)n, deadline);
    if (rc < 0) {
        char e[96];
        tcp_conn_log(c, rc == -ETIMEDOUT, "sending the reply: %s",
                     tcp_errstr(rc, e, sizeof e));
    }
    return rc;
}

void tcp_reply_later(struct tcp_conn *c)
{
    pthread_mutex_lock(&c->reply_mu);
    c->reply_pending = true;
    pthread_mutex_unlock(&c->reply_mu);
}

void tcp_reply(struct tcp_conn *c, struct wire_msg *reply)
{
    /* The reply is small and the client waits for it, so it fits in the
     * socket's buffer at once; a client that does not read loses its
     * connection rather than hold up the thread answering it. */
    if (tcp_conn_send_reply(c, reply, tcp_now_ms()) < 0)
        shutdown(c->fd, SHUT_RDWR); /* its thread ends the connection */
    if (reply->type == WIRE_CLIENT_REPLY) {
        free(reply->u.reply.value);
        reply->u.reply.value = NULL;
    }
    pthread_mutex_lock(&c->reply_mu);
    c->reply_pending = false;
    pthread_cond_signal(&c->reply_sent);
    pthread_mutex_unlock(&c->reply_mu);
}

static void tcp_conn_wait_reply_sent(struct tcp_conn *c)
{
    pthread_mutex_lock(&c->reply_mu);
    while (c->reply_pending)
        pthread_cond_wait(&c->reply_sent, &c->reply_mu);
    pthread_mutex_unlock(&c->reply_mu);
}

/* What the peer's certificate allows (with TLS): client requests from any
 * certificate of the CA; the peer protocol only from a node certificate,
 * and only as the node it names, so that a node cannot speak for another
 * and a client cannot speak for any (Consul CVE-2021-37219). */
static int tcp_conn_authorize(struct tcp_conn *c, const struct wire_msg *req)
{
    if (c->tls == NULL || req->type == WIRE_CLIENT_REQUEST)
        return 0;
    char who[32], why[128];
    tls_identity_str(c->who, who, sizeof who);
    if (c->who.role != TLS_ROLE_NODE)
        snprintf(why, sizeof why, "a %s certificate may not send peer messages (type %u)",
                 who, (unsigned)req->type);
    else if (req->from != c->who.id)
        snprintf(why, sizeof why, "the certificate of %s sent a message claiming to be "
                 "from n%u", who, (unsigned)req->from);
    else
        return 0;
    /* Throttled: an impostor retrying cannot flood the log. */
    tcp_server_log_refusal(c->srv, c->peer, why);
    return -EACCES;
}

/* Keeps what arrived after the frame of size bytes just served: the start
 * of the next one. */
static void tcp_conn_consume(struct tcp_conn *c, size_t size)
{
    c->in_have -= size;
    memmove(c->in, c->in + size, c->in_have);
}

/* Reads one request, has the handler answer it, writes the reply (unless
 * the handler deferred it). */
static int tcp_conn_serve_one(struct tcp_conn *c)
{
    struct tcp_server *s = c->srv;
    struct tcp_stream io = tcp_conn_stream(c);
    int64_t now = tcp_now_ms();
    atomic_store_explicit(&c->waiting_since_ms, now, memory_order_relaxed);
    /* A client sends its next request only after our reply: unless it is
     * already here, wait first and save a recv that would find nothing. */
    int rc = c->in_have ? 0 : tcp_wait_input(&io, now + s->opt.idle_timeout_ms);
    if (rc == 0)
        rc = tcp_recv_at_least(&io, &c->in, &c->in_cap, &c->in_have, 4,
                               now + s->opt.idle_timeout_ms);
    atomic_store_explicit(&c->waiting_since_ms, 0, memory_order_relaxed);
    long size = rc < 0 ? rc : wire_frame_size(c->in);
    if (size < 0) {
        tcp_conn_read_failed(c, (int)size, c->in_have, c->in);
        return (int)size;
    }
    /* The idle clock restarts once a frame has begun to arrive. */
    rc = tcp_recv_at_least(&io, &c->in, &c->in_cap, &c->in_have, (size_t)size,
                           tcp_now_ms() + s->opt.idle_timeout_ms);
    if (rc < 0) {
        tcp_conn_read_failed(c, rc, c->in_have, c->in);
        return rc;
    }

    struct wire_msg req, reply;
    tcp_conn_wait_reply_sent(c); /* the previous request's, if deferred */
    if (c->in[5] == WIRE_HELLO || c->in[5] == WIRE_HELLO_REPLY) {
        rc = tcp_conn_greet(c, c->in, (size_t)size);
        tcp_conn_consume(c, (size_t)size);
        return rc;
    }
    rc = wire_decode(c->in, (size_t)size, &req);
    if (rc < 0) {
        tcp_conn_log(c, true, "malformed frame (type %u, %ld bytes): %s",
                     (unsigned)c->in[5], size, tcp_decode_reason(rc));
        return rc;
    }
    rc = tcp_conn_authorize(c, &req);
    if (rc == 0)
        rc = tcp_conn_check_greeted(c, &req);
    if (rc < 0) {
        wire_msg_release(&req);
        return rc;
    }
    memset(&reply, 0, sizeof reply);
    rc = s->opt.handler(s->opt.handler_ctx, &req, &reply, c);
    wire_msg_release(&req);
    if (rc == 0)
        rc = tcp_conn_send_reply(c, &reply, tcp_now_ms() + s->opt.idle_timeout_ms);
    else if (rc == TCP_REPLY_LATER)
        rc = 0;
    else
        tcp_conn_log(c, false, "the handler refused a request of type %u",
                     (unsigned)req.type);
    /* transport.h: a client reply's value belongs to the transport now. */
    if (reply.type == WIRE_CLIENT_REPLY)
        free(reply.u.reply.value);
    tcp_conn_consume(c, (size_t)size);
    return rc;
}

/* Looks at the first bytes without taking them (MSG_PEEK): 0 when they
 * may open a TLS handshake, else a refusal with its reason in why. */
static int tcp_conn_sniff(struct tcp_conn *c, int64_t deadline, unsigned limit, char *why,
                          size_t cap)
{
    int rc = tcp_wait(c->fd, POLLIN, deadline);
    if (rc == -ETIMEDOUT) {
        snprintf(why, cap, "it sent nothing in the %u ms a TLS handshake may take", limit);
        return rc;
    }
    uint8_t head[8];
    ssize_t n = rc < 0 ? -1 : recv(c->fd, head, sizeof head, MSG_PEEK);
    if (n < 0 && rc == 0 && (errno == EAGAIN || errno == EINTR))
        return 0; /* woken for nothing: the handshake waits on */
    if (n <= 0) {
        snprintf(why, cap, "closed before its TLS handshake");
        return -ECONNRESET;
    }
    const char *refusal = opening_refusal(opening_classify(head, (size_t)n), true);
    if (refusal == NULL)
        return 0;
    snprintf(why, cap, "%s", refusal);
    return -EPROTO;
}

/* The TLS handshake, before any byte is read as a frame. While it runs the
 * connection counts as idle, so that at the connection limit a pile of
 * half-open handshakes gives way to new connections. */
static int tcp_conn_secure(struct tcp_conn *c)
{
    struct tcp_server *s = c->srv;
    int64_t now = tcp_now_ms();
    unsigned limit = s->opt.idle_timeout_ms < TCP_HANDSHAKE_MS ? s->opt.idle_timeout_ms
                                                               : TCP_HANDSHAKE_MS;
    atomic_store_explicit(&c->waiting_since_ms, now, memory_order_relaxed);
    char why[200];
    int rc = tcp_conn_sniff(c, now + limit, limit, why, sizeof why);
    if (rc == 0)
        rc = tls_conn_accept(&c->tls, s->opt.tls, c->fd, now + limit, &c->who, why,
                             sizeof why);
    atomic_store_explicit(&c->waiting_since_ms, 0, memory_order_relaxed);
    tcp_server_handshake_over(s, c);
    if (rc == 0 && c->who.role == TLS_ROLE_NONE) {
        snprintf(why, sizeof why, "its certificate names no role (CN=node-I or CN=client)");
        rc = -EACCES;
    }
    /* A connection shut down to make room was logged by whoever did it. */
    if (rc < 0 && !tcp_server_stopping(s) && !tcp_server_conn_evicted(s, c))
        tcp_server_log_refusal(s, c->peer, why);
    return rc;
}

void *tcp_conn_main(void *arg)
{
    struct tcp_conn *c = arg;
    int rc = c->srv->opt.tls != NULL ? tcp_conn_secure(c) : 0;
    /* One iteration: one request in, one reply out. Any error ends it. */
    while (rc == 0 && (rc = tcp_conn_serve_one(c)) == 0)
        ;
    tcp_conn_wait_reply_sent(c);
    tls_conn_free(c->tls);
    c->tls = NULL;
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    tcp_server_conn_done(c->srv, c);
    return NULL;
}

struct tcp_conn *tcp_conn_new(struct tcp_server *s, int fd, const char *peer)
{
    struct tcp_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->srv = s;
    c->fd = fd;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    pthread_mutex_init(&c->reply_mu, NULL);
    pthread_cond_init(&c->reply_sent, NULL);
    return c;
}

void tcp_conn_free(struct tcp_conn *c)
{
    pthread_mutex_destroy(&c->reply_mu);
    pthread_cond_destroy(&c->reply_sent);
    free(c);
}
