/*
 * tcp_server_internal.h - what the server (tcp_server.c: listener, the
 * connection limit, start and stop) and its connections (tcp_conn.c: one
 * thread serving one socket) share; not for use outside net/.
 *
 * A finished connection thread marks itself done and pokes the listener
 * through a pipe; the listener joins it and closes its socket. A socket is
 * closed only after its thread is joined, so tcp_server_stop() can shut down
 * every listed socket without racing a close and a reused descriptor.
 */
#ifndef NET_TCP_SERVER_INTERNAL_H
#define NET_TCP_SERVER_INTERNAL_H

#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/tcp_server.h"
#include "net/tls.h"

#define TCP_PEER_NAME_MAX (NI_MAXHOST + NI_MAXSERV + 4) /* "[host]:serv" */

struct tcp_conn {
    struct tcp_server *srv;
    int fd;            /* closed by whoever joins the thread, never before */
    pthread_t thread;
    char peer[TCP_PEER_NAME_MAX]; /* "addr:port", for log lines */
    /* With TLS: the session, set up by the thread before its first read,
     * and who the peer's certificate names. */
    struct tls_conn *tls;
    struct tls_identity who;
    /* With a cluster identity: a hello was welcomed, from node greeted_as. */
    bool greeted;
    uint32_t greeted_as;
    uint8_t *in, *out; /* request and reply frames; the thread's own */
    size_t in_cap, out_cap;
    size_t in_have;    /* bytes received into in, maybe past one frame */
    /* When it began waiting for its next request; 0 while serving one. */
    atomic_llong waiting_since_ms;
    /* A reply the handler deferred (tcp_reply_later): until it is sent,
     * out belongs to the thread that sends it, and no other request is
     * handled, so that replies keep the order of their requests. */
    pthread_mutex_t reply_mu;
    pthread_cond_t reply_sent;
    bool reply_pending; /* reply_mu */
    bool evicted;           /* srv->mu: shut down to make room */
    /* srv->mu: in the TLS handshake and counted in srv->n_handshaking;
     * handshake_since_ms is when it began (tcp_now_ms()). */
    bool handshaking;
    int64_t handshake_since_ms;
    bool done;              /* srv->mu: the thread is about to return */
    struct tcp_conn *next;  /* srv->mu */
};

struct tcp_server {
    struct tcp_server_options opt; /* immutable; opt.host not kept */
    int listen_fd;
    uint16_t port;
    int wake[2]; /* pipe: a byte wakes the listener (stop, or a conn done) */
    pthread_t listener;
    pthread_mutex_t mu; /* guards everything below */
    struct tcp_conn *conns;
    unsigned n_open;    /* connections whose thread has not finished */
    unsigned n_evicting; /* of those, shut down to make room and ending */
    unsigned n_handshaking; /* of those, in the TLS handshake and not evicted */
    bool stopping;
    bool refusing;      /* the connection limit was logged; reset on a close */
    /* Refused connections (failed handshakes, refused certificates,
     * handshakes closed to make room), to throttle their logs. */
    atomic_ulong refusals;
    atomic_llong refusal_logged_ms; /* when one was last logged */
};

/* tcp_conn.c */

/* A connection of s on fd from peer, not yet listed or running; NULL when
 * out of memory. */
struct tcp_conn *tcp_conn_new(struct tcp_server *s, int fd, const char *peer);

/* The connection's thread: serves requests until the first error, then
 * tells the server with tcp_server_conn_done(). */
void *tcp_conn_main(void *arg);

/* Frees c once its thread is joined; does not close its socket. */
void tcp_conn_free(struct tcp_conn *c);

/* tcp_hello.c */

/* Answers the hello frame (len bytes at frame) on c: 0 once welcomed, or
 * a negative errno (logged) after which the connection is closed. */
int tcp_conn_greet(struct tcp_conn *c, const uint8_t *frame, size_t len);

/* Whether req may be served on c as far as the hello goes: client
 * requests always; peer messages only from the node welcomed (when the
 * server has a cluster identity). -EACCES (logged) otherwise. */
int tcp_conn_check_greeted(struct tcp_conn *c, const struct wire_msg *req);

/* tcp_server.c */

bool tcp_server_stopping(struct tcp_server *s);

/* Whether c was shut down to make room for another connection. */
bool tcp_server_conn_evicted(struct tcp_server *s, struct tcp_conn *c);

/* Logs a refused connection: the first, then at most one a second, each
 * with the count so far, so that a flood of bad handshakes cannot flood
 * the log. */
void tcp_server_log_refusal(struct tcp_server *s, const char *peer, const char *why);

/* With TLS, at most this share of the connection limit may be in the
 * handshake at once (see tcp_server_admit_locked). */
#define TCP_HANDSHAKE_SHARE 2 /* one half */

/* The handshake of c is over (done or failed): it no longer counts
 * against the cap on connections in the handshake. */
void tcp_server_handshake_over(struct tcp_server *s, struct tcp_conn *c);

/* Counts c out of the open connections and wakes the listener to join it. */
void tcp_server_conn_done(struct tcp_server *s, struct tcp_conn *c);

#endif
