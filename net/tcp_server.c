/*
 * tcp_server.c - the server: a listener thread that accepts connections and
 * starts a thread for each (tcp_conn.c), within a connection limit that
 * evicts the longest idle connection to make room; and start and stop.
 *
 * The listener's poll() also watches a pipe, so that a finished connection
 * (or tcp_server_stop()) can wake it to join threads at once.
 */
#include "net/tcp_internal.h"
#include "net/tcp_server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TCP_DEFAULT_MAX_CONNECTIONS 256
#define TCP_DEFAULT_IDLE_MS 30000
/* At the connection limit, a connection that has waited this long for its
 * next request gives its place to a new one (see tcp_server_admit_locked). */
#define TCP_EVICT_IDLE_MS 500
#define TCP_LISTEN_BACKLOG 128
/* After accept() fails for lack of descriptors or memory, wait this long
 * rather than spin on a listener that stays readable. */
#define TCP_ACCEPT_PAUSE_MS 100

static void tcp_server_wake(struct tcp_server *s)
{
    /* A full pipe already guarantees a wake-up, so EAGAIN is fine. */
    ssize_t rc;
    do
        rc = write(s->wake[1], "", 1);
    while (rc < 0 && errno == EINTR);
}

bool tcp_server_stopping(struct tcp_server *s)
{
    pthread_mutex_lock(&s->mu);
    bool stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return stopping;
}

bool tcp_server_conn_evicted(struct tcp_server *s, struct tcp_conn *c)
{
    pthread_mutex_lock(&s->mu);
    bool evicted = c->evicted;
    pthread_mutex_unlock(&s->mu);
    return evicted;
}

void tcp_server_log_refusal(struct tcp_server *s, const char *peer, const char *why)
{
    unsigned long n = atomic_fetch_add(&s->refusals, 1) + 1;
    int64_t now = tcp_now_ms();
    int64_t last = atomic_load(&s->refusal_logged_ms);
    /* The first; then one a second at most: of several threads due in the
     * same second, the one whose exchange succeeds logs. */
    bool due = n == 1 || (now - last >= 1000 &&
                          atomic_compare_exchange_strong(&s->refusal_logged_ms, &last, now));
    if (!due)
        return;
    atomic_store(&s->refusal_logged_ms, now);
    tcp_log(s->opt.log, s->opt.log_ctx, RAFT_LOG_WARN,
            "closing connection from %s: %s (refusal %lu since start; at most one a second "
            "is logged)", peer, why, n);
}

void tcp_server_handshake_over(struct tcp_server *s, struct tcp_conn *c)
{
    pthread_mutex_lock(&s->mu);
    if (c->handshaking)
        s->n_handshaking--;
    c->handshaking = false;
    pthread_mutex_unlock(&s->mu);
}

void tcp_server_conn_done(struct tcp_server *s, struct tcp_conn *c)
{
    pthread_mutex_lock(&s->mu);
    if (c->handshaking)
        s->n_handshaking--;
    c->handshaking = false;
    c->done = true;
    s->n_open--;
    if (c->evicted)
        s->n_evicting--;
    s->refusing = false;
    pthread_mutex_unlock(&s->mu);
    tcp_server_wake(s); /* so that the listener joins this thread soon */
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

/* Shuts c down to make room (its thread sees end-of-file and ends; the fd
 * stays open until it is joined, so this cannot touch a reused
 * descriptor). */
static void tcp_server_evict_locked(struct tcp_server *s, struct tcp_conn *c)
{
    shutdown(c->fd, SHUT_RDWR);
    c->evicted = true;
    s->n_evicting++;
    if (c->handshaking)
        s->n_handshaking--;
    c->handshaking = false;
}

/* The connection longest in the TLS handshake; NULL if none. */
static struct tcp_conn *tcp_server_oldest_handshake_locked(struct tcp_server *s)
{
    struct tcp_conn *oldest = NULL;
    for (struct tcp_conn *c = s->conns; c != NULL; c = c->next)
        if (c->handshaking && !c->done &&
            (oldest == NULL || c->handshake_since_ms < oldest->handshake_since_ms))
            oldest = c;
    return oldest;
}

/* A TLS handshake takes a round trip or two; one that is still going is
 * most likely a connection that will never finish it. So connections in
 * the handshake may hold only a share of the limit, and a new one past it
 * takes the place of the oldest: a flood of half-open handshakes cannot
 * keep a peer or a client that reconnects from getting in, and costs the
 * node a bounded number of threads. */
static void tcp_server_cap_handshakes_locked(struct tcp_server *s, const char *peer)
{
    unsigned cap = s->opt.max_connections / TCP_HANDSHAKE_SHARE;
    if (s->opt.tls == NULL || s->n_handshaking < (cap > 0 ? cap : 1))
        return;
    struct tcp_conn *old = tcp_server_oldest_handshake_locked(s);
    if (old == NULL)
        return;
    char why[TCP_PEER_NAME_MAX + 160];
    snprintf(why, sizeof why, "%u connections are in the TLS handshake, the most allowed; "
             "the oldest (this one, %lld ms into it) makes room for %s", s->n_handshaking,
             (long long)(tcp_now_ms() - old->handshake_since_ms), peer);
    tcp_server_evict_locked(s, old);
    tcp_server_log_refusal(s, old->peer, why);
}

/* At the limit, the connection idle longest makes room, so that connections
 * that never send anything cannot lock the node's peers and clients out.
 * If every connection is busy, the new one is accepted and closed at once,
 * so that the client learns now rather than waiting in the backlog; that is
 * logged once until a connection ends. */
static bool tcp_server_admit_locked(struct tcp_server *s, const char *peer)
{
    tcp_server_cap_handshakes_locked(s, peer);
    if (s->n_open < s->opt.max_connections + s->n_evicting)
        return true;
    int64_t idle_ms;
    struct tcp_conn *idle = tcp_server_longest_idle_locked(s, &idle_ms);
    if (idle != NULL) {
        tcp_server_evict_locked(s, idle);
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
    struct tcp_conn *c = tcp_conn_new(s, fd, peer);
    if (c == NULL)
        return -ENOMEM;
    /* Linked before the thread can finish, so its wake-up finds it listed. */
    pthread_mutex_lock(&s->mu);
    /* In the handshake from the start: it counts against the cap before
     * its thread has run. */
    c->handshaking = s->opt.tls != NULL;
    c->handshake_since_ms = tcp_now_ms();
    int rc = -pthread_create(&c->thread, NULL, tcp_conn_main, c);
    if (rc == 0) {
        c->next = s->conns;
        s->conns = c;
        s->n_open++;
        s->n_handshaking += c->handshaking;
    }
    pthread_mutex_unlock(&s->mu);
    if (rc < 0)
        tcp_conn_free(c);
    return rc;
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

static bool tcp_is_loopback(const char *host)
{
    return host != NULL && (strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
                            strcmp(host, "localhost") == 0);
}

/* Plain TCP off loopback lets anyone who can reach the port rewrite the
 * log with a high term, or read and write every key: say so at start. */
static void tcp_server_warn_plain(const struct tcp_server_options *opt)
{
    if (opt->tls != NULL || tcp_is_loopback(opt->host))
        return;
    tcp_log(opt->log, opt->log_ctx, RAFT_LOG_WARN,
            "listening on %s without TLS: anyone who can reach port %u can act as a "
            "peer or a client (give --tls-dir, or --tls-ca, --tls-cert and --tls-key)",
            opt->host != NULL && opt->host[0] != '\0' ? opt->host : "every interface",
            (unsigned)opt->port);
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
    tcp_server_warn_plain(opt);
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
