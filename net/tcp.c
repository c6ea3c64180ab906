/*
 * tcp.c - frames over TCP: the outbound transport, the server, client helpers.
 *
 * Every socket is non-blocking with TCP_NODELAY, and every wait is a poll()
 * bounded by a deadline on CLOCK_MONOTONIC, so that no call can hang past
 * its timeout and a stopping server can wake its threads by shutting their
 * sockets down.
 *
 * Outbound, each peer has one connection carrying up to TCP_WINDOW requests
 * in flight (pipelining): requests go out in order and replies come back in
 * the same order, and any failure closes the connection and fails every call
 * on it, so that a late reply can never be read as the answer to another.
 *
 * Inbound, a listener thread accepts and starts one thread per connection.
 * A finished connection thread marks itself done and pokes the listener
 * through a pipe; the listener joins it and closes its socket. A socket is
 * closed only after its thread is joined, so tcp_server_stop() can shut down
 * every listed socket without racing a close and a reused descriptor.
 */
#include "net/tcp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TCP_BACKOFF_MIN_MS 10
#define TCP_BACKOFF_MAX_MS 200 /* below the election timeout: a restarted peer hears heartbeats in time */
#define TCP_DEFAULT_MAX_CONNECTIONS 256
#define TCP_DEFAULT_IDLE_MS 30000
/* At the connection limit, a connection that has waited this long for its
 * next request gives its place to a new one (see tcp_server_admit_locked). */
#define TCP_EVICT_IDLE_MS 500
#define TCP_LISTEN_BACKLOG 128
#define TCP_HOST_MAX 256
#define TCP_PEER_NAME_MAX (NI_MAXHOST + NI_MAXSERV + 4) /* "[host]:serv" */
/* After accept() fails for lack of descriptors or memory, wait this long
 * rather than spin on a listener that stays readable. */
#define TCP_ACCEPT_PAUSE_MS 100

#ifdef SOCK_CLOEXEC
#define TCP_SOCK_FLAGS SOCK_CLOEXEC
#else
#define TCP_SOCK_FLAGS 0
#endif

typedef void (*tcp_log_fn)(void *ctx, enum raft_log_level lvl,
                           const char *msg);

/* ---- small helpers ---- */

static void tcp_log(tcp_log_fn log, void *ctx, enum raft_log_level lvl,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void tcp_log(tcp_log_fn log, void *ctx, enum raft_log_level lvl,
                    const char *fmt, ...)
{
    if (log == NULL)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log(ctx, lvl, line);
}

/* strerror() may share a static buffer between threads; this does not. */
static const char *tcp_errstr(int err, char *buf, size_t cap)
{
    if (strerror_r(err < 0 ? -err : err, buf, cap) != 0)
        snprintf(buf, cap, "error %d", err);
    return buf;
}

static int64_t tcp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int tcp_reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap > 0 ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (p == NULL)
        return -ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

static int tcp_set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* Non-blocking, close-on-exec, and TCP_NODELAY: a request is one small write
 * awaiting a reply, exactly the case Nagle's algorithm would delay. */
static int tcp_socket_setup(int fd)
{
    int one = 1;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || tcp_set_nonblock(fd) < 0)
        return -errno;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return -errno;
    return 0;
}

static int tcp_gai_errno(int rc)
{
    switch (rc) {
    case EAI_SYSTEM:
        return errno != 0 ? -errno : -EIO;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_AGAIN:
        return -EAGAIN;
    default:
        return -EHOSTUNREACH; /* no such host, or no usable address */
    }
}

/* "addr:port", or "[addr]:port" for IPv6, for log lines. */
static void tcp_format_addr(const struct sockaddr *sa, socklen_t len,
                            char *out, size_t cap)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, cap, "(unknown address)");
        return;
    }
    if (sa->sa_family == AF_INET6)
        snprintf(out, cap, "[%s]:%s", host, serv);
    else
        snprintf(out, cap, "%s:%s", host, serv);
}

/* ---- addresses ---- */

static int tcp_parse_port(const char *s, uint16_t *port)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || strspn(s, "0123456789") != n)
        return -EINVAL;
    long v = strtol(s, NULL, 10);
    if (v < 1 || v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

int tcp_parse_addr(const char *host_port, char *host, size_t host_cap,
                   uint16_t *port)
{
    if (host_port == NULL || host == NULL || port == NULL || host_cap == 0)
        return -EINVAL;
    const char *h = host_port;
    const char *colon;
    size_t hlen;
    if (h[0] == '[') {
        const char *end = strchr(h, ']');
        if (end == NULL || end[1] != ':')
            return -EINVAL;
        h++;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(h, ':');
        if (colon == NULL)
            return -EINVAL;
        hlen = (size_t)(colon - h);
        if (memchr(h, ':', hlen) != NULL)
            return -EINVAL; /* a bare IPv6 address needs its brackets */
    }
    if (hlen == 0 || hlen >= host_cap)
        return -EINVAL;
    int rc = tcp_parse_port(colon + 1, port);
    if (rc < 0)
        return rc;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    return 0;
}

/* ---- bounded I/O ---- */

/* Waits until fd is ready for `events` (or in error: the next I/O call says
 * which) or the deadline passes. */
static int tcp_wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - tcp_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = { .fd = fd, .events = events };
        int rc = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (rc > 0)
            return 0;
        if (rc == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int tcp_send_all(int fd, const uint8_t *p, size_t n, int64_t deadline)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(fd, p + done, n - done, MSG_NOSIGNAL);
        if (w >= 0) {
            done += (size_t)w;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = tcp_wait(fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Reads until at least `want` bytes are in *buf (*have so far), taking
 * whatever else has arrived too, so that a small frame costs one recv.
 * The data may be there already: recv first, poll only when it is not. */
static int tcp_recv_at_least(int fd, uint8_t **buf, size_t *cap, size_t *have,
                             size_t want, int64_t deadline)
{
    int rc = tcp_reserve(buf, cap, want);
    while (rc == 0 && *have < want) {
        ssize_t r = recv(fd, *buf + *have, *cap - *have, 0);
        if (r > 0)
            *have += (size_t)r;
        else if (r == 0)
            rc = -ECONNRESET;
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            rc = tcp_wait(fd, POLLIN, deadline);
        else if (errno != EINTR)
            rc = -errno;
    }
    return rc;
}

/* Reads the one reply to a request just sent. The reply cannot be there yet,
 * so it waits first, then takes whatever has arrived: usually the whole
 * frame in one recv. A peer that sends more than one frame breaks the
 * protocol (one reply per request). Returns the frame's size, or -errno. */
static long tcp_recv_reply(int fd, uint8_t **buf, size_t *cap, int64_t deadline)
{
    size_t have = 0;
    int rc = tcp_wait(fd, POLLIN, deadline);
    if (rc == 0)
        rc = tcp_recv_at_least(fd, buf, cap, &have, 4, deadline);
    long size = rc < 0 ? rc : wire_frame_size(*buf);
    if (size > 0)
        rc = tcp_recv_at_least(fd, buf, cap, &have, (size_t)size, deadline);
    if (rc < 0)
        return rc;
    return size > 0 && have > (size_t)size ? -EPROTO : size;
}

/* Encodes req into *buf, sends it, and reads and decodes one reply frame
 * into *buf: reply points into *buf afterwards. */
static int tcp_exchange(int fd, const struct wire_msg *req,
                        struct wire_msg *reply, uint8_t **buf, size_t *cap,
                        int64_t deadline)
{
    size_t size = wire_size(req);
    if (size == 0)
        return -EINVAL;
    if (size > WIRE_MAX_FRAME)
        return -EMSGSIZE;
    int rc = tcp_reserve(buf, cap, size);
    if (rc < 0)
        return rc;
    long n = wire_encode(req, *buf, *cap);
    if (n < 0)
        return (int)n;
    rc = tcp_send_all(fd, *buf, (size_t)n, deadline);
    if (rc < 0)
        return rc;
    long frame = tcp_recv_reply(fd, buf, cap, deadline);
    if (frame < 0)
        return (int)frame;
    return wire_decode(*buf, (size_t)frame, reply);
}

/* ---- connecting ---- */

/* Starts a non-blocking connect to ai. Returns the fd, connected or (with
 * *pending set) still connecting, or -errno. An EINTR leaves the connect
 * going on in the background, like EINPROGRESS. */
static int tcp_connect_start(const struct addrinfo *ai, bool *pending)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | TCP_SOCK_FLAGS,
                    ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = tcp_socket_setup(fd);
    if (rc == 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        *pending = false;
        return fd;
    }
    if (rc == 0)
        rc = errno == EINPROGRESS || errno == EINTR ? 0 : -errno;
    if (rc == 0) {
        *pending = true;
        return fd;
    }
    close(fd);
    return rc;
}

/* How a non-blocking connect ended, once the fd is writable: 0 or -errno. */
static int tcp_dial_result(int fd)
{
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    return -soerr;
}

static int tcp_connect_addr(const struct addrinfo *ai, int64_t deadline)
{
    bool pending;
    int fd = tcp_connect_start(ai, &pending);
    if (fd < 0 || !pending)
        return fd;
    int rc = tcp_wait(fd, POLLOUT, deadline);
    if (rc == 0)
        rc = tcp_dial_result(fd);
    if (rc == 0)
        return fd;
    close(fd);
    return rc;
}

static int tcp_resolve(const char *host, uint16_t port, struct addrinfo **list)
{
    char serv[8];
    snprintf(serv, sizeof serv, "%u", (unsigned)port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    int rc = getaddrinfo(host, serv, &hints, list);
    return rc == 0 ? 0 : tcp_gai_errno(rc);
}

/* Tries each address of host in turn until one connects or time runs out.
 * Returns the fd or -errno. (Name lookup itself is not bounded by the
 * deadline; peers are normally given as numeric addresses.) */
static int tcp_connect(const char *host, uint16_t port, int64_t deadline)
{
    struct addrinfo *list;
    int rc = tcp_resolve(host, port, &list);
    if (rc != 0)
        return rc;
    rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        rc = tcp_connect_addr(ai, deadline);
        if (rc >= 0 || rc == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(list);
    return rc;
}

int tcp_dial(const char *host_port, unsigned timeout_ms)
{
    char host[TCP_HOST_MAX];
    uint16_t port;
    int rc = tcp_parse_addr(host_port, host, sizeof host, &port);
    if (rc < 0)
        return rc;
    return tcp_connect(host, port, tcp_now_ms() + timeout_ms);
}

int tcp_dial_start(const char *host_port)
{
    char host[TCP_HOST_MAX];
    uint16_t port;
    struct addrinfo *list;
    int rc = tcp_parse_addr(host_port, host, sizeof host, &port);
    if (rc == 0)
        rc = tcp_resolve(host, port, &list);
    if (rc < 0)
        return rc;
    bool pending;
    rc = tcp_connect_start(list, &pending);
    freeaddrinfo(list);
    return rc;
}

int tcp_roundtrip(int fd, const struct wire_msg *req, struct wire_msg *reply,
                  uint8_t **buf, size_t *cap, unsigned timeout_ms)
{
    if (fd < 0 || req == NULL || reply == NULL || buf == NULL || cap == NULL)
        return -EINVAL;
    memset(reply, 0, sizeof *reply);
    return tcp_exchange(fd, req, reply, buf, cap, tcp_now_ms() + timeout_ms);
}

/* ---- outbound: the transport ---- */

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
    char host[TCP_HOST_MAX]; /* immutable after create */
    uint16_t port;
    pthread_mutex_t mu;  /* guards everything below */
    pthread_cond_t cond; /* a slot done, the writer or reader finished, or fd closed */
    int fd;              /* -1 when not connected */
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
    uint32_t n_peers;
    tcp_log_fn log;
    void *log_ctx;
    struct tcp_peer peers[]; /* index = node id */
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

static int tcp_peer_connect_locked(struct tcp_transport *t, uint32_t id,
                                   int64_t deadline)
{
    struct tcp_peer *p = &t->peers[id];
    /* Backing off: fail fast instead of hammering a peer that is down. */
    if (tcp_now_ms() < p->retry_at)
        return p->last_err;
    int fd = tcp_connect(p->host, p->port, deadline);
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
    tcp_peer_failed_locked(t, id, "cannot connect to", fd);
    return fd;
}

/* Closes a shut-down connection once neither writer nor reader uses it;
 * the caller wakes the waiters. */
static void tcp_peer_close_if_unused_locked(struct tcp_peer *p)
{
    if (!p->broken || p->sending || p->reading)
        return;
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
static int tcp_peer_read_reply(struct tcp_peer *p, int fd, uint32_t id,
                               uint8_t req_type, struct raft_msg *r,
                               int64_t deadline)
{
    int rc = tcp_recv_at_least(fd, &p->in, &p->in_cap, &p->in_have, 4, deadline);
    long size = rc < 0 ? rc : wire_frame_size(p->in);
    if (size > 0)
        rc = tcp_recv_at_least(fd, &p->in, &p->in_cap, &p->in_have,
                               (size_t)size, deadline);
    if (rc < 0 || size < 0)
        return rc < 0 ? rc : (int)size;
    struct wire_msg w;
    rc = wire_decode(p->in, (size_t)size, &w);
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
           type == RAFT_MSG_INSTALL_SNAPSHOT;
}

/* Writes req on the peer's connection (connecting first if needed) and
 * gives it a ticket for tcp_transport_await(). */
static int tcp_transport_send(void *ctx, uint32_t id, const struct raft_msg *req,
                              uint64_t *ticket, unsigned timeout_ms)
{
    struct tcp_transport *t = ctx;
    if (id >= t->n_peers || id == t->self_id || req == NULL ||
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
    while (rc == 0 && (p->sending || p->broken ||
                       p->slots[p->next_ticket % TCP_WINDOW].busy))
        rc = tcp_peer_wait_locked(p, deadline);
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
    int fd = p->fd;
    pthread_mutex_unlock(&p->mu);

    rc = tcp_reserve(&p->out, &p->out_cap, size);
    long n = rc < 0 ? rc : wire_encode(&w, p->out, p->out_cap);
    rc = n < 0 ? (int)n : tcp_send_all(fd, p->out, (size_t)n, deadline);

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
    if (id >= t->n_peers || id == t->self_id || reply == NULL)
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
        int fd = p->fd;
        p->reading = true;
        pthread_mutex_unlock(&p->mu);
        int rc = tcp_peer_read_reply(p, fd, id, next->req_type, &r, deadline);
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
        if (p->fd >= 0)
            close(p->fd);
        free(p->out);
        free(p->in);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cond);
    }
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
    if (out == NULL || peer_addrs == NULL || self_id >= n_peers)
        return -EINVAL;
    struct tcp_transport *t =
        calloc(1, sizeof *t + (size_t)n_peers * sizeof t->peers[0]);
    if (t == NULL)
        return -ENOMEM;
    t->self_id = self_id;
    t->n_peers = n_peers;
    t->log = log;
    t->log_ctx = log_ctx;
    for (uint32_t i = 0; i < n_peers; i++) {
        struct tcp_peer *p = &t->peers[i];
        int rc = 0;
        if (i != self_id)
            rc = tcp_parse_addr(peer_addrs[i], p->host, sizeof p->host,
                                &p->port);
        if (rc < 0)
            tcp_log(log, log_ctx, RAFT_LOG_ERROR,
                    "address of n%u \"%s\" is not host:port", (unsigned)i,
                    peer_addrs[i] ? peer_addrs[i] : "(null)");
        if (rc == 0)
            rc = tcp_peer_init(p);
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
        tcp_transport_free(t, t->n_peers);
}

struct raft_transport tcp_transport_ops(struct tcp_transport *t)
{
    return (struct raft_transport){ .ctx = t, .call = tcp_transport_call,
                                    .send = tcp_transport_send,
                                    .await = tcp_transport_await };
}

/* ---- inbound: the server ---- */

struct tcp_conn {
    struct tcp_server *srv;
    int fd;            /* closed by whoever joins the thread, never before */
    pthread_t thread;
    char peer[TCP_PEER_NAME_MAX]; /* "addr:port", for log lines */
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
    bool stopping;
    bool refusing;      /* the connection limit was logged; reset on a close */
};

static void tcp_server_wake(struct tcp_server *s)
{
    /* A full pipe already guarantees a wake-up, so EAGAIN is fine. */
    ssize_t rc;
    do
        rc = write(s->wake[1], "", 1);
    while (rc < 0 && errno == EINTR);
}

static bool tcp_server_stopping(struct tcp_server *s)
{
    pthread_mutex_lock(&s->mu);
    bool stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return stopping;
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
    if (tcp_server_stopping(s)) {
        tcp_conn_log(c, false, "the server is stopping");
    } else if (rc == -EBADMSG || rc == -EMSGSIZE) {
        unsigned long len = (unsigned long)header[0] << 24 |
                            (unsigned long)header[1] << 16 |
                            (unsigned long)header[2] << 8 | header[3];
        tcp_conn_log(c, true, "bad frame length %lu (%s)", len,
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
    size_t size = wire_size(reply);
    int rc = size == 0 ? -EPROTO : size > WIRE_MAX_FRAME ? -EMSGSIZE : 0;
    if (rc == 0)
        rc = tcp_reserve(&c->out, &c->out_cap, size);
    long n = rc == 0 ? wire_encode(reply, c->out, c->out_cap) : rc;
    if (n < 0) {
        char e[96];
        tcp_log(c->srv->opt.log, c->srv->opt.log_ctx, RAFT_LOG_ERROR,
                "cannot encode the reply (type %u) to %s: %s; closing",
                (unsigned)reply->type, c->peer, tcp_errstr((int)n, e, sizeof e));
        return (int)n;
    }
    rc = tcp_send_all(c->fd, c->out, (size_t)n, deadline);
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

/* Reads one request, has the handler answer it, writes the reply (unless
 * the handler deferred it). */
static int tcp_conn_serve_one(struct tcp_conn *c)
{
    struct tcp_server *s = c->srv;
    int64_t now = tcp_now_ms();
    atomic_store_explicit(&c->waiting_since_ms, now, memory_order_relaxed);
    /* A client sends its next request only after our reply: unless it is
     * already here, wait first and save a recv that would find nothing. */
    int rc = c->in_have ? 0 : tcp_wait(c->fd, POLLIN, now + s->opt.idle_timeout_ms);
    if (rc == 0)
        rc = tcp_recv_at_least(c->fd, &c->in, &c->in_cap, &c->in_have, 4,
                               now + s->opt.idle_timeout_ms);
    atomic_store_explicit(&c->waiting_since_ms, 0, memory_order_relaxed);
    long size = rc < 0 ? rc : wire_frame_size(c->in);
    if (size < 0) {
        tcp_conn_read_failed(c, (int)size, c->in_have, c->in);
        return (int)size;
    }
    /* The idle clock restarts once a frame has begun to arrive. */
    rc = tcp_recv_at_least(c->fd, &c->in, &c->in_cap, &c->in_have, (size_t)size,
                           tcp_now_ms() + s->opt.idle_timeout_ms);
    if (rc < 0) {
        tcp_conn_read_failed(c, rc, c->in_have, c->in);
        return rc;
    }

    struct wire_msg req, reply;
    tcp_conn_wait_reply_sent(c); /* the previous request's, if deferred */
    rc = wire_decode(c->in, (size_t)size, &req);
    if (rc < 0) {
        tcp_conn_log(c, true, "malformed frame (type %u, %ld bytes): %s",
                     (unsigned)c->in[5], size, tcp_decode_reason(rc));
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
    /* Keep what arrived after this frame: the start of the next one. */
    c->in_have -= (size_t)size;
    memmove(c->in, c->in + size, c->in_have);
    return rc;
}

static void *tcp_conn_main(void *arg)
{
    struct tcp_conn *c = arg;
    struct tcp_server *s = c->srv;
    /* One iteration: one request in, one reply out. Any error ends it. */
    while (tcp_conn_serve_one(c) == 0)
        ;
    tcp_conn_wait_reply_sent(c);
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;

    pthread_mutex_lock(&s->mu);
    c->done = true;
    s->n_open--;
    if (c->evicted)
        s->n_evicting--;
    s->refusing = false;
    pthread_mutex_unlock(&s->mu);
    tcp_server_wake(s); /* so that the listener joins this thread soon */
    return NULL;
}

static void tcp_conn_free(struct tcp_conn *c)
{
    pthread_mutex_destroy(&c->reply_mu);
    pthread_cond_destroy(&c->reply_sent);
    free(c);
}

/* Joins and frees the finished connections, or all of them. */
static void tcp_server_reap(struct tcp_server *s, bool all)
{
    struct tcp_conn *dead = NULL;
    pthread_mutex_lock(&s->mu);
    for (struct tcp_conn **pp = &s->conns; *pp != NULL;) {
        struct tcp_conn *c = *pp;
        if (!all && !c->done) {
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        c->next = dead;
        dead = c;
    }
    pthread_mutex_unlock(&s->mu);
    while (dead != NULL) {
        struct tcp_conn *c = dead;
        dead = c->next;
        pthread_join(c->thread, NULL);
        close(c->fd);
        tcp_conn_free(c);
    }
}

/* The connection that has waited longest for a request, if that is at
 * least TCP_EVICT_IDLE_MS; NULL if none. */
static struct tcp_conn *tcp_server_longest_idle_locked(struct tcp_server *s, int64_t *idle_ms)
{
    struct tcp_conn *oldest = NULL;
    int64_t now = tcp_now_ms();
    *idle_ms = TCP_EVICT_IDLE_MS - 1;
    for (struct tcp_conn *c = s->conns; c != NULL; c = c->next) {
        int64_t since = atomic_load_explicit(&c->waiting_since_ms, memory_order_relaxed);
        if (since == 0 || c->done || c->evicted || now - since <= *idle_ms)
            continue;
        oldest = c;
        *idle_ms = now - since;
    }
    return oldest;
}

/* At the limit, the connection idle longest makes room, so that connections
 * that never send anything cannot lock the node's peers and clients out.
 * If every connection is busy, the new one is accepted and closed at once,
 * so that the client learns now rather than waiting in the backlog; that is
 * logged once until a connection ends. */
static bool tcp_server_admit_locked(struct tcp_server *s, const char *peer)
{
    if (s->n_open < s->opt.max_connections + s->n_evicting)
        return true;
    int64_t idle_ms;
    struct tcp_conn *idle = tcp_server_longest_idle_locked(s, &idle_ms);
    if (idle != NULL) {
        /* Its thread sees end-of-file and ends; the fd stays open until it
         * is joined, so this cannot touch a reused descriptor. */
        shutdown(idle->fd, SHUT_RDWR);
        idle->evicted = true;
        s->n_evicting++;
        tcp_log(s->opt.log, s->opt.log_ctx, RAFT_LOG_INFO,
                "connection limit (%u) reached: closing the connection from %s, idle "
                "for %lld ms, to admit %s", s->opt.max_connections, idle->peer,
                (long long)idle_ms, peer);
        return true;
    }
    if (!s->refusing) {
        s->refusing = true;
        tcp_log(s->opt.log, s->opt.log_ctx, RAFT_LOG_WARN,
                "connection limit (%u) reached: refusing %s and any other new "
                "connection until one closes", s->opt.max_connections, peer);
    }
    return false;
}

static int tcp_server_add_conn(struct tcp_server *s, int fd, const char *peer)
{
    struct tcp_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    c->srv = s;
    c->fd = fd;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    pthread_mutex_init(&c->reply_mu, NULL);
    pthread_cond_init(&c->reply_sent, NULL);
    /* Linked before the thread can finish, so its wake-up finds it listed. */
    pthread_mutex_lock(&s->mu);
    int rc = -pthread_create(&c->thread, NULL, tcp_conn_main, c);
    if (rc == 0) {
        c->next = s->conns;
        s->conns = c;
        s->n_open++;
    }
    pthread_mutex_unlock(&s->mu);
    if (rc < 0)
        tcp_conn_free(c);
    return rc;
}

/* Returns 0, or -errno from accept() for the listener to act on. */
static int tcp_server_accept(struct tcp_server *s)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    int fd = accept(s->listen_fd, (struct sockaddr *)&sa, &len);
    if (fd < 0)
        return -errno;
    char peer[TCP_PEER_NAME_MAX];
    tcp_format_addr((struct sockaddr *)&sa, len, peer, sizeof peer);

    pthread_mutex_lock(&s->mu);
    bool admit = tcp_server_admit_locked(s, peer);
    pthread_mutex_unlock(&s->mu);
    int rc = admit ? tcp_socket_setup(fd) : 0;
    if (admit && rc == 0)
        rc = tcp_server_add_conn(s, fd, peer);
    if (admit && rc == 0)
        return 0;
    if (rc < 0) {
        char e[96];
        tcp_log(s->opt.log, s->opt.log_ctx, RAFT_LOG_ERROR,
                "cannot serve connection from %s: %s", peer,
                tcp_errstr(rc, e, sizeof e));
    }
    close(fd);
    return 0;
}

static void tcp_drain(int fd)
{
    char junk[64];
    while (read(fd, junk, sizeof junk) > 0)
        ;
}

static void *tcp_listener_main(void *arg)
{
    struct tcp_server *s = arg;
    bool paused = false; /* accept() lacked descriptors or memory */
    bool logged_pause = false;
    /* One iteration: wait for a connection or a wake-up, join finished
     * connection threads, then accept or stop. */
    for (;;) {
        struct pollfd fds[2] = {
            { .fd = paused ? -1 : s->listen_fd, .events = POLLIN },
            { .fd = s->wake[0], .events = POLLIN },
        };
        int n = poll(fds, 2, paused ? TCP_ACCEPT_PAUSE_MS : -1);
        paused = false;
        if (n < 0 && errno != EINTR)
            paused = true; /* cannot happen with valid fds; do not spin */
        if (n > 0 && fds[1].revents != 0)
            tcp_drain(s->wake[0]);
        tcp_server_reap(s, false);
        if (tcp_server_stopping(s))
            break;
        if (n <= 0 || (fds[0].revents & POLLIN) == 0)
            continue;
        int rc = tcp_server_accept(s);
        if (rc == -EMFILE || rc == -ENFILE || rc == -ENOBUFS || rc == -ENOMEM) {
            paused = true;
            if (!logged_pause) {
                char e[96];
                tcp_log(s->opt.log, s->opt.log_ctx, RAFT_LOG_ERROR,
                        "accept failed: %s; pausing new connections briefly",
                        tcp_errstr(rc, e, sizeof e));
            }
            logged_pause = true;
        } else if (rc == 0) {
            logged_pause = false;
        }
    }
    return NULL;
}

/* Binds the first address of host that works. Returns the fd or -errno. */
static int tcp_listen(const char *host, uint16_t port, uint16_t *bound)
{
    char serv[8];
    snprintf(serv, sizeof serv, "%u", (unsigned)port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *list;
    int rc = getaddrinfo(host != NULL && host[0] != '\0' ? host : NULL, serv,
                         &hints, &list);
    if (rc != 0)
        return tcp_gai_errno(rc);
    rc = -EADDRNOTAVAIL;
    int fd = -1;
    for (struct addrinfo *ai = list; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | TCP_SOCK_FLAGS,
                    ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        /* A restarted node can rebind at once despite TIME_WAIT sockets. */
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
            listen(fd, TCP_LISTEN_BACKLOG) < 0) {
            rc = -errno;
            close(fd);
            fd = -1;
            continue;
        }
        rc = tcp_set_nonblock(fd); /* accept() must not block after poll() */
        if (rc < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(list);
    if (fd < 0)
        return rc;
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        *bound = ntohs(sa.ss_family == AF_INET6
                           ? ((struct sockaddr_in6 *)&sa)->sin6_port
                           : ((struct sockaddr_in *)&sa)->sin_port);
    return fd;
}

static int tcp_make_wake_pipe(int p[2])
{
    if (pipe(p) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        if (fcntl(p[i], F_SETFD, FD_CLOEXEC) < 0 || tcp_set_nonblock(p[i]) < 0) {
            int rc = -errno;
            close(p[0]);
            close(p[1]);
            return rc;
        }
    }
    return 0;
}

int tcp_server_start(struct tcp_server **out,
                     const struct tcp_server_options *opt)
{
    if (out == NULL || opt == NULL || opt->handler == NULL)
        return -EINVAL;
    struct tcp_server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->opt = *opt;
    s->opt.host = NULL; /* the caller's string need not outlive this call */
    if (s->opt.max_connections == 0)
        s->opt.max_connections = TCP_DEFAULT_MAX_CONNECTIONS;
    if (s->opt.idle_timeout_ms == 0)
        s->opt.idle_timeout_ms = TCP_DEFAULT_IDLE_MS;

    int rc = tcp_listen(opt->host, opt->port, &s->port);
    if (rc < 0)
        goto err_after_alloc;
    s->listen_fd = rc;
    rc = tcp_make_wake_pipe(s->wake);
    if (rc < 0)
        goto err_after_listen;
    rc = -pthread_mutex_init(&s->mu, NULL);
    if (rc < 0)
        goto err_after_pipe;
    rc = -pthread_create(&s->listener, NULL, tcp_listener_main, s);
    if (rc < 0)
        goto err_after_mutex;
    *out = s;
    return 0;

err_after_mutex:
    pthread_mutex_destroy(&s->mu);
err_after_pipe:
    close(s->wake[0]);
    close(s->wake[1]);
err_after_listen:
    close(s->listen_fd);
err_after_alloc:
    free(s);
    return rc;
}

uint16_t tcp_server_port(const struct tcp_server *s)
{
    return s->port;
}

void tcp_server_stop(struct tcp_server *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
    tcp_server_wake(s);
    pthread_join(s->listener, NULL);
    close(s->listen_fd);

    /* Wake every connection thread: its poll() sees the shutdown, and a
     * handler still running finds its reply undeliverable. The descriptors
     * stay open (and so cannot be reused) until the threads are joined. */
    pthread_mutex_lock(&s->mu);
    for (struct tcp_conn *c = s->conns; c != NULL; c = c->next)
        shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&s->mu);
    tcp_server_reap(s, true);

    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
