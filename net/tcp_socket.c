/*
 * tcp_socket.c - socket set-up, bounded reads and writes, dialing, and the
 * client's one request-reply exchange. The transport (tcp_transport.c) and
 * the server (tcp_server.c) are built on the helpers here (declared in
 * tcp_internal.h).
 */
#include "net/tcp_socket.h"
#include "net/tcp_internal.h"
#include "net/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ---- */

void tcp_log(tcp_log_fn log, void *ctx, enum raft_log_level lvl,
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

const char *tcp_errstr(int err, char *buf, size_t cap)
{
    if (strerror_r(err < 0 ? -err : err, buf, cap) != 0)
        snprintf(buf, cap, "error %d", err);
    return buf;
}

int64_t tcp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tcp_reserve(uint8_t **buf, size_t *cap, size_t need)
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

int tcp_set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* Non-blocking, close-on-exec, and TCP_NODELAY: a request is one small write
 * awaiting a reply, exactly the case Nagle's algorithm would delay. */
int tcp_socket_setup(int fd)
{
    int one = 1;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || tcp_set_nonblock(fd) < 0)
        return -errno;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return -errno;
    return 0;
}

int tcp_gai_errno(int rc)
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
int tcp_wait(int fd, short events, int64_t deadline)
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

int tcp_wait_input(const struct tcp_stream *s, int64_t deadline)
{
    if (s->tls != NULL && tls_conn_pending(s->tls))
        return 0;
    return tcp_wait(s->fd, POLLIN, deadline);
}

/* One non-blocking write: the count, or -EAGAIN with the events to wait
 * for, or -errno. */
static long tcp_write_some(const struct tcp_stream *s, const uint8_t *p, size_t n,
                           short *events)
{
    if (s->tls != NULL)
        return tls_conn_write(s->tls, p, n, events);
    ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);
    if (w >= 0)
        return (long)w;
    *events = POLLOUT;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* One non-blocking read, as tcp_write_some(); -ECONNRESET at the end. */
static long tcp_read_some(const struct tcp_stream *s, uint8_t *p, size_t n,
                          short *events)
{
    if (s->tls != NULL)
        return tls_conn_read(s->tls, p, n, events);
    ssize_t r = recv(s->fd, p, n, 0);
    if (r > 0)
        return (long)r;
    *events = POLLIN;
    if (r == 0)
        return -ECONNRESET;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

int tcp_send_all(const struct tcp_stream *s, const uint8_t *p, size_t n,
                 int64_t deadline)
{
    size_t done = 0;
    while (done < n) {
        short events = POLLOUT;
        long w = tcp_write_some(s, p + done, n - done, &events);
        if (w >= 0) {
            done += (size_t)w;
            continue;
        }
        if (w == -EINTR)
            continue;
        if (w != -EAGAIN)
            return (int)w;
        int rc = tcp_wait(s->fd, events, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Reads until at least `want` bytes are in *buf (*have so far), taking
 * whatever else has arrived too, so that a small frame costs one recv.
 * The data may be there already: recv first, poll only when it is not. */
int tcp_recv_at_least(const struct tcp_stream *s, uint8_t **buf, size_t *cap,
                      size_t *have, size_t want, int64_t deadline)
{
    int rc = tcp_reserve(buf, cap, want);
    while (rc == 0 && *have < want) {
        short events = POLLIN;
        long r = tcp_read_some(s, *buf + *have, *cap - *have, &events);
        if (r > 0)
            *have += (size_t)r;
        else if (r == -EAGAIN)
            rc = tcp_wait(s->fd, events, deadline);
        else if (r != -EINTR)
            rc = (int)r;
    }
    return rc;
}

long tcp_recv_frame(const struct tcp_stream *s, uint8_t **buf, size_t *cap,
                    size_t *have, int64_t deadline)
{
    int rc = tcp_recv_at_least(s, buf, cap, have, 4, deadline);
    long size = rc < 0 ? rc : wire_frame_size(*buf);
    if (size > 0)
        rc = tcp_recv_at_least(s, buf, cap, have, (size_t)size, deadline);
    return rc < 0 ? rc : size;
}

long tcp_encode(const struct wire_msg *msg, uint8_t **buf, size_t *cap)
{
    size_t size = wire_size(msg);
    if (size == 0)
        return -EPROTO;
    if (size > WIRE_MAX_FRAME)
        return -EMSGSIZE;
    int rc = tcp_reserve(buf, cap, size);
    return rc < 0 ? rc : wire_encode(msg, *buf, *cap);
}

/* Reads the one reply to a request just sent. The reply cannot be there yet,
 * so it waits first, then takes whatever has arrived: usually the whole
 * frame in one recv. A peer that sends more than one frame breaks the
 * protocol (one reply per request). Returns the frame's size, or -errno. */
static long tcp_recv_reply(const struct tcp_stream *s, uint8_t **buf, size_t *cap,
                           int64_t deadline)
{
    size_t have = 0;
    int rc = tcp_wait_input(s, deadline);
    long size = rc < 0 ? rc : tcp_recv_frame(s, buf, cap, &have, deadline);
    return size > 0 && have > (size_t)size ? -EPROTO : size;
}

/* Encodes req into *buf, sends it, and reads and decodes one reply frame
 * into *buf: reply points into *buf afterwards. */
static int tcp_exchange(const struct tcp_stream *s, const struct wire_msg *req,
                        struct wire_msg *reply, uint8_t **buf, size_t *cap,
                        int64_t deadline)
{
    long n = tcp_encode(req, buf, cap);
    int rc = n < 0 ? (int)n : tcp_send_all(s, *buf, (size_t)n, deadline);
    if (rc < 0)
        return rc;
    long frame = tcp_recv_reply(s, buf, cap, deadline);
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
int tcp_connect(const char *host, uint16_t port, int64_t deadline)
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

static int tcp_stream_roundtrip(const struct tcp_stream *s, const struct wire_msg *req,
                                struct wire_msg *reply, uint8_t **buf, size_t *cap,
                                unsigned timeout_ms)
{
    if (s->fd < 0 || req == NULL || reply == NULL || buf == NULL || cap == NULL)
        return -EINVAL;
    memset(reply, 0, sizeof *reply);
    if (wire_size(req) == 0)
        return -EINVAL; /* a type no frame can carry */
    return tcp_exchange(s, req, reply, buf, cap, tcp_now_ms() + timeout_ms);
}

int tcp_roundtrip(int fd, const struct wire_msg *req, struct wire_msg *reply,
                  uint8_t **buf, size_t *cap, unsigned timeout_ms)
{
    struct tcp_stream s = { .fd = fd };
    return tcp_stream_roundtrip(&s, req, reply, buf, cap, timeout_ms);
}

/* ---- links: a client's connection, plain or TLS ---- */

struct tcp_link {
    struct tcp_stream s;
};

/* A client talks only to nodes: a server whose certificate is the CA's
 * but names a client (or no role) is not one. */
static int tcp_link_secure(struct tcp_link *l, struct tls_ctx *tls, const char *host_port,
                           int64_t deadline, char *why, size_t why_cap)
{
    char host[TCP_HOST_MAX];
    uint16_t port;
    int rc = tcp_parse_addr(host_port, host, sizeof host, &port);
    if (rc < 0)
        return rc;
    struct tls_identity peer;
    rc = tls_conn_connect(&l->s.tls, tls, l->s.fd, host, deadline, &peer, why, why_cap);
    if (rc == 0 && peer.role != TLS_ROLE_NODE) {
        char name[32];
        snprintf(why, why_cap, "its certificate names %s, not a node",
                 tls_identity_str(peer, name, sizeof name));
        tls_conn_free(l->s.tls);
        l->s.tls = NULL;
        rc = -EACCES;
    }
    return rc;
}

int tcp_link_dial(struct tcp_link **out, const char *host_port, struct tls_ctx *tls,
                  unsigned timeout_ms)
{
    char why[256];
    return tcp_link_dial_why(out, host_port, tls, timeout_ms, why, sizeof why);
}

int tcp_link_dial_why(struct tcp_link **out, const char *host_port, struct tls_ctx *tls,
                      unsigned timeout_ms, char *why, size_t why_cap)
{
    if (why_cap > 0)
        why[0] = '\0';
    struct tcp_link *l = calloc(1, sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    int64_t deadline = tcp_now_ms() + timeout_ms;
    l->s.fd = tcp_dial(host_port, timeout_ms);
    int rc = l->s.fd < 0 ? l->s.fd : 0;
    if (rc == 0 && tls != NULL)
        rc = tcp_link_secure(l, tls, host_port, deadline, why, why_cap);
    if (rc < 0) {
        if (l->s.fd >= 0)
            close(l->s.fd);
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

int tcp_link_roundtrip(struct tcp_link *l, const struct wire_msg *req,
                       struct wire_msg *reply, uint8_t **buf, size_t *cap,
                       unsigned timeout_ms)
{
    if (l == NULL)
        return -EINVAL;
    return tcp_stream_roundtrip(&l->s, req, reply, buf, cap, timeout_ms);
}

void tcp_link_close(struct tcp_link *l)
{
    if (l == NULL)
        return;
    tls_conn_free(l->s.tls);
    close(l->s.fd);
    free(l);
}
