/*
 * tcp_transport.c - the pipelined outbound transport (struct raft_transport).
 *
 * Each peer has one connection carrying up to TCP_WINDOW requests in flight
 * (pipelining, thesis §10.2.2): requests go out in order and replies come
 * back in the same order, and any failure closes the connection and fails
 * every call on it, so that a late reply can never be read as the answer to
 * another.
 *
 * With TLS, a connection is used only once the handshake is done and the
 * peer's certificate names the node expected at that address: a peer list
 * that points at the wrong node, or an impostor holding another node's
 * certificate, gets no request. With a cluster identity, TLS or not, the
 * first frame is a hello (tcp_hello.c), and the connection is used only if
 * the peer answers it as the node expected, of the same cluster.
 *
 * Where each node listens comes from an address table: the addresses given
 * at creation (--peers), then every configuration the node uses (thesis
 * ch. 4: members join and leave, each with its address), handed over by
 * set_members. The node calls set_members with its own lock held, so the
 * table has a small mutex of its own, held only to copy an entry, never
 * across I/O. A lane (one peer's connection) copies its peer's entry before
 * each request; when the entry changed since the lane connected (the
 * member moved), the lane closes its connection then and there, and
 * connects to the new address. A peer no configuration gave an address is
 * not dialed at all.
 */
#include "net/tcp_transport.h"
#include "net/tcp_addrs.h"
#include "net/tcp_internal.h"
#include "net/tcp_socket.h"
#include "net/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TCP_BACKOFF_MIN_MS 10
#define TCP_BACKOFF_MAX_MS 200 /* below the election timeout: a restarted peer hears heartbeats in time */

/* Requests in flight on one peer connection (send before await). */
#define TCP_WINDOW 8


/* One request sent on a peer connection, until its caller takes the reply. */
struct tcp_slot {
    bool busy;         /* sent and not yet awaited */
    bool done;         /* the reply is in `reply`, or the call failed with rc */
    int rc;
    uint8_t req_type;  /* the reply must be of type req_type + 1 */
    struct raft_msg reply;
};

/* Requests leave in the order they are sent and the peer answers them in
 * that order, so the n-th reply frame on a connection answers ticket n.
 * One thread at a time writes (`sending`) and one reads (`reading`), each
 * without the mutex; the reader is whichever caller waits for a reply and
 * finds nobody reading, and it hands every frame it reads to its ticket's
 * slot. Any failure shuts the connection down and fails every call in
 * flight on it, so a late reply is never taken for another; the socket is
 * closed once neither the writer nor the reader uses it. */
struct tcp_peer {
    pthread_mutex_t mu;  /* guards everything below */
    /* Where the connection goes: the table's entry as of the last request,
     * whose generation is `gen` (tcp_peer_route_locked). */
    char host[TCP_HOST_MAX];
    uint16_t port;
    uint32_t gen;
    pthread_cond_t cond; /* a slot done, the writer or reader finished, or fd closed */
    int fd;              /* -1 when not connected */
    struct tls_conn *tls; /* fd's TLS session, or NULL (plain TCP) */
    bool sending, reading;
    bool broken;         /* fd is shut down; closed once nobody uses it */
    uint64_t next_ticket; /* of the next request sent */
    uint64_t next_reply;  /* the ticket the next reply frame answers */
    struct tcp_slot slots[TCP_WINDOW]; /* slot of ticket k: slots[k % TCP_WINDOW] */
    uint8_t *out;        /* the writer's request frame */
    size_t out_cap;
    uint8_t *in;         /* the reader's bytes, maybe past one frame */
    size_t in_cap, in_have;
    unsigned backoff_ms; /* wait after the next failed connect */
    int64_t retry_at;    /* monotonic ms: no connect attempt before this */
    int last_err;        /* returned at once while backing off */
    bool failing;        /* a failure was logged and nothing worked since */
};

struct tcp_transport {
    uint32_t self_id;
    struct tls_ctx *tls; /* NULL: plain TCP; not owned */
    struct cluster_ident *cluster; /* NULL: no hello; not owned */
    tcp_log_fn log;
    void *log_ctx;
    /* Taken with the node's lock held (set_members) or a lane's
     * (tcp_peer_route_locked), never the other way round. */
    struct tcp_addrs addrs;
    struct tcp_peer peers[TCP_MAX_PEERS]; /* a lane for every id a node can have */
};

/* Logs the first failure only; the next success logs "reconnected". */
static void tcp_peer_failed_locked(struct tcp_transport *t, uint32_t id,
                                   const char *what, int err)
{
    struct tcp_peer *p = &t->peers[id];
    if (p->failing)
        return;
    p->failing = true;
    char e[96];
    tcp_log(t->log, t->log_ctx, RAFT_LOG_WARN,
            "%s n%u at %s:%u: %s (retrying with backoff; logged again when "
            "it answers)", what, (unsigned)id, p->host, (unsigned)p->port,
            tcp_errstr(err, e, sizeof e));
}

/* The handshake on a fresh connection to peer id, and the check that its
 * certificate is node id's. Logs a refusal once, as a failed connect. */
static int tcp_peer_secure_locked(struct tcp_transport *t, uint32_t id, int fd,
                                  int64_t deadline)
{
    struct tcp_peer *p = &t->peers[id];
    struct tls_identity who;
    char why[160];
    int rc = tls_conn_connect(&p->tls, t->tls, fd, p->host, deadline, &who, why,
                              sizeof why);
    if (rc == 0 && (who.role != TLS_ROLE_NODE || who.id != id)) {
        char name[32];
        snprintf(why, sizeof why, "its certificate names %s, not node-%u",
                 tls_identity_str(who, name, sizeof name), (unsigned)id);
        tls_conn_free(p->tls);
        p->tls = NULL;
        rc = -EACCES;
    }
    if (rc < 0 && !p->failing) {
        p->failing = true;
        tcp_log(t->log, t->log_ctx, RAFT_LOG_WARN,
                "refusing n%u at %s:%u: %s (retrying with backoff; logged again when it "
                "answers)", (unsigned)id, p->host, (unsigned)p->port, why);
    }
    return rc;
}

/* Returned by tcp_peer_route_locked: the peer's address changed while
 * the lane was connected, so the connection must be closed first. */
#define TCP_ROUTE_MOVED 1

/* Copies the peer's entry of the address table into the lane. Returns 0,
 * TCP_ROUTE_MOVED, or -EHOSTUNREACH when no address is known for the peer
 * (no configuration this node has seen gave it one). */
static int tcp_peer_route_locked(struct tcp_transport *t, uint32_t id)
{
    struct tcp_peer *p = &t->peers[id];
    struct tcp_addr a = tcp_addrs_get(&t->addrs, id);
    if (a.gen == p->gen)
        return a.known ? 0 : -EHOSTUNREACH;
    bool connected = p->fd >= 0;
    p->gen = a.gen;
    if (!a.known)
        return connected ? TCP_ROUTE_MOVED : -EHOSTUNREACH;
    memcpy(p->host, a.host, sizeof p->host);
    p->port = a.port;
    /* A new address is tried at once, not after the old one's backoff. */
    p->retry_at = 0;
    p->backoff_ms = TCP_BACKOFF_MIN_MS;
    p->failing = false;
    if (!connected)
        return 0;
    tcp_log(t->log, t->log_ctx, RAFT_LOG_INFO,
            "n%u moved to %s:%u: closing the connection to its old address", (unsigned)id,
            p->host, (unsigned)p->port);
    return TCP_ROUTE_MOVED;
}

/* The hello on a fresh (and secured) connection to peer id: it must
 * answer as node id, of this node's cluster. Logs a refusal once, as a
 * failed connect. */
static int tcp_peer_greet_locked(struct tcp_transport *t, uint32_t id, int fd,
                                 int64_t deadline)
{
    struct tcp_peer *p = &t->peers[id];
    struct tcp_stream io = { .fd = fd, .tls = p->tls };
    char why[320];
    int rc = tcp_hello_dial(&io, t->self_id, id, t->cluster, deadline, why, sizeof why);
    if (rc < 0 && !p->failing) {
        p->failing = true;
        tcp_log(t->log, t->log_ctx, RAFT_LOG_WARN,
                "%s n%u at %s:%u: %s (retrying with backoff; logged again when it "
                "answers)", rc == -EACCES ? "refusing" : "cannot greet", (unsigned)id,
                p->host, (unsigned)p->port, why);
    }
    return rc;
}

static int tcp_peer_connect_locked(struct tcp_transport *t, uint32_t id,
                                   int64_t deadline)
{
    struct tcp_peer *p = &t->peers[id];
    /* Backing off: fail fast instead of hammering a peer that is down. */
    if (tcp_now_ms() < p->retry_at)
        return p->last_err;
    int fd = tcp_connect(p->host, p->port, deadline);
    int rc = 0;
    if (fd >= 0 && t->tls != NULL)
        rc = tcp_peer_secure_locked(t, id, fd, deadline);
    if (fd >= 0 && rc == 0 && t->cluster != NULL)
        rc = tcp_peer_greet_locked(t, id, fd, deadline);
    if (rc < 0) {
        tls_conn_free(p->tls);
        p->tls = NULL;
        close(fd);
        fd = rc;
    }
    if (fd >= 0) {
        p->fd = fd;
        p->in_have = 0;
        p->backoff_ms = TCP_BACKOFF_MIN_MS;
        p->retry_at = 0;
        return 0;
    }
    p->last_err = fd;
    p->retry_at = tcp_now_ms() + p->backoff_ms;
    p->backoff_ms = p->backoff_ms * 2 > TCP_BACKOFF_MAX_MS
                        ? TCP_BACKOFF_MAX_MS : p->backoff_ms * 2;
    tcp_peer_failed_locked(t, id, "cannot connect to", fd); /* unless logged above */
    return fd;
}

/* Closes a shut-down connection once neither writer nor reader uses it;
 * the caller wakes the waiters. */
static void tcp_peer_close_if_unused_locked(struct tcp_peer *p)
{
    if (!p->broken || p->sending || p->reading)
        return;
    tls_conn_free(p->tls);
    p->tls = NULL;
    close(p->fd);
    p->fd = -1;
    p->broken = false;
}

/* Fails every call in flight on the connection with rc and shuts it down.
 * The caller then closes it if unused and wakes the waiters. */
static void tcp_peer_break_locked(struct tcp_transport *t, uint32_t id, int rc)
{
    struct tcp_peer *p = &t->peers[id];
    if (p->fd < 0 || p->broken)
        return;
    shutdown(p->fd, SHUT_RDWR); /* wakes a writer or reader blocked on it */
    p->broken = true;
    for (; p->next_reply < p->next_ticket; p->next_reply++) {
        struct tcp_slot *s = &p->slots[p->next_reply % TCP_WINDOW];
        s->done = true;
        s->rc = rc;
    }
    char e[96];
    tcp_log(t->log, t->log_ctx, RAFT_LOG_DEBUG,
            "call to n%u failed: %s; connection closed", (unsigned)id,
            tcp_errstr(rc, e, sizeof e));
    if (rc == -EBADMSG || rc == -EMSGSIZE || rc == -EPROTO)
        tcp_peer_failed_locked(t, id, "bad reply from", rc);
}

/* Waits on the peer's condition until the deadline: -ETIMEDOUT after it. */
static int tcp_peer_wait_locked(struct tcp_peer *p, int64_t deadline)
{
    if (tcp_now_ms() >= deadline)
        return -ETIMEDOUT;
    struct timespec ts = { .tv_sec = deadline / 1000,
                           .tv_nsec = (long)(deadline % 1000) * 1000000 };
    int rc = pthread_cond_timedwait(&p->cond, &p->mu, &ts);
    return rc == ETIMEDOUT ? -ETIMEDOUT : 0;
}

/* Reads the next reply frame (keeping any bytes after it for the next one)
 * and decodes it into *r, checking that it answers a request of req_type
 * and comes from the node asked: a mismatch means a misconfigured address
 * list or a confused peer. */
static int tcp_peer_read_reply(struct tcp_peer *p, const struct tcp_stream *io,
                               uint32_t id, uint8_t req_type, struct raft_msg *r,
                               int64_t deadline)
{
    long size = tcp_recv_frame(io, &p->in, &p->in_cap, &p->in_have, deadline);
    if (size < 0)
        return (int)size;
    struct wire_msg w;
    int rc = wire_decode(p->in, (size_t)size, &w);
    if (rc == 0 && (w.type != req_type + 1 || w.from != id))
        rc = -EPROTO;
    if (rc == 0)
        *r = w.u.raft; /* Raft replies hold no pointers into the buffer */
    wire_msg_release(&w);
    p->in_have -= (size_t)size;
    memmove(p->in, p->in + size, p->in_have);
    return rc;
}

static bool tcp_is_raft_request(uint8_t type)
{
    return type == RAFT_MSG_REQUEST_VOTE || type == RAFT_MSG_APPEND_ENTRIES ||
           type == RAFT_MSG_INSTALL_SNAPSHOT || type == RAFT_MSG_TIMEOUT_NOW;
}

/* Writes req on the peer's connection (connecting first if needed) and
 * gives it a ticket for tcp_transport_await(). */
static int tcp_transport_send(void *ctx, uint32_t id, const struct raft_msg *req,
                              uint64_t *ticket, unsigned timeout_ms)
{
    struct tcp_transport *t = ctx;
    if (id >= TCP_MAX_PEERS || id == t->self_id || req == NULL ||
        ticket == NULL || !tcp_is_raft_request(req->type))
        return -EINVAL;
    struct wire_msg w;
    wire_from_raft(&w, req);
    w.from = t->self_id;
    w.u.raft.from = t->self_id;
    /* Our own mistake: refuse it here, before it can cost the connection. */
    size_t size = wire_size(&w);
    if (size == 0 || size > WIRE_MAX_FRAME)
        return size ? -EMSGSIZE : -EINVAL;
    int64_t deadline = tcp_now_ms() + timeout_ms;
    struct tcp_peer *p = &t->peers[id];
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    for (;;) {
        while (rc == 0 && (p->sending || p->broken ||
                           p->slots[p->next_ticket % TCP_WINDOW].busy))
            rc = tcp_peer_wait_locked(p, deadline);
        if (rc == 0)
            rc = tcp_peer_route_locked(t, id);
        if (rc != TCP_ROUTE_MOVED)
            break;
        /* The connection goes where the peer no longer is: the calls in
         * flight on it fail, and it closes once nobody uses it. */
        tcp_peer_break_locked(t, id, -ECONNRESET);
        tcp_peer_close_if_unused_locked(p);
        pthread_cond_broadcast(&p->cond);
        rc = 0;
    }
    if (rc == 0 && p->fd < 0)
        rc = tcp_peer_connect_locked(t, id, deadline);
    if (rc < 0) {
        pthread_mutex_unlock(&p->mu);
        return rc;
    }
    uint64_t k = p->next_ticket++;
    struct tcp_slot *s = &p->slots[k % TCP_WINDOW];
    *s = (struct tcp_slot){ .busy = true, .req_type = req->type };
    p->sending = true;
    struct tcp_stream io = { .fd = p->fd, .tls = p->tls };
    pthread_mutex_unlock(&p->mu);

    long n = tcp_encode(&w, &p->out, &p->out_cap);
    rc = n < 0 ? (int)n : tcp_send_all(&io, p->out, (size_t)n, deadline);

    pthread_mutex_lock(&p->mu);
    p->sending = false;
    if (rc < 0) {
        tcp_peer_break_locked(t, id, rc);
        s->busy = false; /* failed: nobody awaits it */
    }
    tcp_peer_close_if_unused_locked(p);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    *ticket = k;
    return rc;
}

/* Waits for the reply to a ticket, reading the connection for every waiter
 * while nobody else does. */
static int tcp_transport_await(void *ctx, uint32_t id, uint64_t ticket,
                               struct raft_msg *reply, unsigned timeout_ms)
{
    struct tcp_transport *t = ctx;
    if (id >= TCP_MAX_PEERS || id == t->self_id || reply == NULL)
        return -EINVAL;
    int64_t deadline = tcp_now_ms() + timeout_ms;
    struct tcp_peer *p = &t->peers[id];
    struct tcp_slot *s = &p->slots[ticket % TCP_WINDOW];
    pthread_mutex_lock(&p->mu);
    while (!s->done) {
        if (p->reading) {
            if (tcp_peer_wait_locked(p, deadline) < 0)
                tcp_peer_break_locked(t, id, -ETIMEDOUT);
            continue;
        }
        /* Not done and not failed: the connection is up with our request
         * on it, and the next frame answers the oldest ticket in flight. */
        struct tcp_slot *next = &p->slots[p->next_reply % TCP_WINDOW];
        struct raft_msg r;
        struct tcp_stream io = { .fd = p->fd, .tls = p->tls };
        p->reading = true;
        pthread_mutex_unlock(&p->mu);
        int rc = tcp_peer_read_reply(p, &io, id, next->req_type, &r, deadline);
        pthread_mutex_lock(&p->mu);
        p->reading = false;
        if (rc == 0 && !p->broken) {
            next->reply = r;
            next->done = true;
            p->next_reply++;
        } else if (rc < 0) {
            tcp_peer_break_locked(t, id, rc);
        }
        tcp_peer_close_if_unused_locked(p);
        pthread_cond_broadcast(&p->cond);
    }
    int rc = s->rc;
    if (rc == 0)
        *reply = s->reply;
    s->busy = false;
    pthread_cond_broadcast(&p->cond); /* a sender may wait for this slot */
    if (rc == 0 && p->failing) {
        p->failing = false;
        tcp_log(t->log, t->log_ctx, RAFT_LOG_INFO, "reconnected to n%u at %s:%u",
                (unsigned)id, p->host, (unsigned)p->port);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static int tcp_transport_call(void *ctx, uint32_t id, const struct raft_msg *req,
                              struct raft_msg *reply, unsigned timeout_ms)
{
    int64_t deadline = tcp_now_ms() + timeout_ms;
    uint64_t ticket;
    int rc = tcp_transport_send(ctx, id, req, &ticket, timeout_ms);
    if (rc < 0)
        return rc;
    int64_t left = deadline - tcp_now_ms();
    return tcp_transport_await(ctx, id, ticket, reply, left > 0 ? (unsigned)left : 0);
}

static void tcp_transport_free(struct tcp_transport *t, uint32_t n_inited)
{
    for (uint32_t i = 0; i < n_inited; i++) {
        struct tcp_peer *p = &t->peers[i];
        tls_conn_free(p->tls);
        if (p->fd >= 0)
            close(p->fd);
        free(p->out);
        free(p->in);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cond);
    }
    tcp_addrs_destroy(&t->addrs);
    free(t);
}

static int tcp_peer_init(struct tcp_peer *p)
{
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc == 0)
        rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc == 0 && (rc = pthread_mutex_init(&p->mu, NULL)) != 0)
        pthread_cond_destroy(&p->cond);
    if (rc != 0)
        return -rc;
    p->fd = -1;
    p->backoff_ms = TCP_BACKOFF_MIN_MS;
    p->last_err = -ECONNREFUSED;
    return 0;
}

int tcp_transport_create(struct tcp_transport **out, uint32_t self_id,
                         char *const *peer_addrs, uint32_t n_peers,
                         void (*log)(void *ctx, enum raft_log_level lvl,
                                     const char *msg),
                         void *log_ctx)
{
    if (out == NULL)
        return -EINVAL;
    struct tcp_transport *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    t->self_id = self_id;
    t->log = log;
    t->log_ctx = log_ctx;
    int rc = tcp_addrs_init(&t->addrs, self_id, peer_addrs, n_peers, log, log_ctx);
    if (rc < 0) {
        free(t);
        return rc;
    }
    for (uint32_t i = 0; i < TCP_MAX_PEERS; i++) {
        rc = tcp_peer_init(&t->peers[i]);
        if (rc < 0) {
            tcp_transport_free(t, i);
            return rc;
        }
    }
    *out = t;
    return 0;
}

void tcp_transport_destroy(struct tcp_transport *t)
{
    if (t != NULL)
        tcp_transport_free(t, TCP_MAX_PEERS);
}

void tcp_transport_set_tls(struct tcp_transport *t, struct tls_ctx *tls)
{
    t->tls = tls;
}

/* Called by the node, its lock held, with every configuration it uses:
 * only the table changes here; each lane notices on its next request. */
static void tcp_transport_set_members(void *ctx, const struct raft_membership *m)
{
    struct tcp_transport *t = ctx;
    tcp_addrs_set_members(&t->addrs, m);
}

void tcp_transport_set_cluster(struct tcp_transport *t, struct cluster_ident *ci)
{
    t->cluster = ci;
}

struct raft_transport tcp_transport_ops(struct tcp_transport *t)
{
    return (struct raft_transport){ .ctx = t, .call = tcp_transport_call,
                                    .send = tcp_transport_send,
                                    .await = tcp_transport_await,
                                    .set_members = tcp_transport_set_members };
}
