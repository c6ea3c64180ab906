/*
 * proxy.c - the fault-injecting TCP proxy (what it does: proxy.h).
 *
 * A listener thread accepts connections. Each connection gets a thread
 * that connects to the target and then pumps client -> target, and a
 * second thread that pumps target -> client. A pump reads whatever
 * arrives, stamps it with the time it may be passed on (now + delay, never
 * before the chunk ahead of it), and writes it out when that time comes;
 * poll() with a deadline does all the waiting, so one pump thread needs no
 * timer of its own. When the client half-closes, the pump passes the
 * half-close on (shutdown SHUT_WR) once its queue is empty, so a clean
 * close stays clean.
 *
 * Tearing a connection down ("reset") is a byte written to the
 * connection's own wake-up pipe: both pumps poll it, stop, and the last one
 * closes both sockets with SO_LINGER {on, 0}, which makes close() send RST
 * instead of FIN: each end sees ECONNRESET, as when a middlebox drops the
 * connection. Sockets are closed only by the connection's own thread, after
 * its partner is joined, so no descriptor is ever used after close.
 *
 * Finished connections poke the listener through the proxy's wake-up pipe;
 * it joins and frees them (the same scheme as the server in net/tcp_server.c).
 */
#include "tests/chaos/proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/clock.h"

#define CHUNK_MAX (64 * 1024)
#define QUEUE_MAX ((size_t)4 << 20) /* per direction: stop reading beyond this */
#define CONNECT_TIMEOUT_MS 2000
#define MAX_CONNS 1024

struct chunk {
    struct chunk *next;
    uint64_t due_ms; /* not written before this time */
    size_t len, off;
    uint8_t data[];
};

struct pconn {
    struct chaos_proxy *p;
    int down_fd;    /* the client's connection, accepted here */
    int up_fd;      /* ours to the target; -1 when blackholed or not yet */
    int wake[2];    /* a byte in wake[1]: tear down now */
    bool blackhole; /* accepted while cut: read and discard */
    pthread_t thread;
    /* p->mu guards the fields below */
    bool killed; /* being torn down: close with RST */
    bool done;   /* its thread has finished; the listener may join it */
    struct pconn *next;
};

struct chaos_proxy {
    char addr[300], target[300];
    struct sockaddr_storage target_sa;
    socklen_t target_len;
    int listen_fd;
    int wake[2]; /* a byte wakes the listener: stop, or a connection finished */
    pthread_t listener;
    pthread_mutex_t mu; /* guards everything below */
    bool stopping, cut;
    unsigned delay_min_ms, delay_max_ms;
    uint64_t rng;
    struct pconn *conns;
    struct chaos_proxy_stats st;
};

static uint64_t next_rand_locked(struct chaos_proxy *p)
{
    /* xorshift64*, seeded per proxy so that a run can be repeated. */
    p->rng ^= p->rng >> 12;
    p->rng ^= p->rng << 25;
    p->rng ^= p->rng >> 27;
    return p->rng * 0x2545f4914f6cdd1dull;
}

static void poke(int fd)
{
    ssize_t rc;
    do
        rc = write(fd, "", 1);
    while (rc < 0 && errno == EINTR);
}

static int make_pipe(int p[2])
{
    if (pipe(p) < 0)
        return -errno;
    for (int i = 0; i < 2; i++)
        if (fcntl(p[i], F_SETFD, FD_CLOEXEC) < 0 ||
            fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK) < 0) {
            int rc = -errno;
            close(p[0]);
            close(p[1]);
            return rc;
        }
    return 0;
}

static void socket_setup(int fd)
{
    int one = 1;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* close() that sends RST rather than FIN. */
static void close_with_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* "host:port" or "[v6]:port" -> host and port strings. */
static int split_addr(const char *addr, char *host, size_t host_cap, char *port, size_t port_cap)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1] || strlen(colon + 1) >= port_cap)
        return -EINVAL;
    const char *h = addr;
    size_t len = (size_t)(colon - addr);
    if (h[0] == '[' && len >= 2 && h[len - 1] == ']') {
        h++;
        len -= 2;
    }
    if (len == 0 || len >= host_cap)
        return -EINVAL;
    memcpy(host, h, len);
    host[len] = '\0';
    snprintf(port, port_cap, "%s", colon + 1);
    return 0;
}

static int resolve(const char *addr, bool passive, struct sockaddr_storage *sa, socklen_t *len)
{
    char host[256], port[16];
    int rc = split_addr(addr, host, sizeof(host), port, sizeof(port));
    if (rc)
        return rc;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    struct addrinfo *list;
    if (getaddrinfo(host, port, &hints, &list) != 0)
        return -EINVAL;
    memcpy(sa, list->ai_addr, list->ai_addrlen);
    *len = list->ai_addrlen;
    freeaddrinfo(list);
    return 0;
}

/* ---- the connections ---- */

/* Marks c for teardown and wakes its threads. p->mu held. */
static void kill_conn_locked(struct pconn *c)
{
    if (c->killed)
        return;
    c->killed = true;
    c->p->st.resets++;
    poke(c->wake[1]);
}

static void kill_conn(struct pconn *c)
{
    pthread_mutex_lock(&c->p->mu);
    kill_conn_locked(c);
    pthread_mutex_unlock(&c->p->mu);
}

static unsigned random_delay(struct chaos_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    unsigned lo = p->delay_min_ms, hi = p->delay_max_ms;
    unsigned d = hi > lo ? lo + (unsigned)(next_rand_locked(p) % (hi - lo + 1)) : lo;
    pthread_mutex_unlock(&p->mu);
    return d;
}

static void count(struct chaos_proxy *p, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&p->mu);
    *field += n;
    pthread_mutex_unlock(&p->mu);
}

enum pump_end { PUMP_EOF, PUMP_KILLED, PUMP_ERROR };

/* Moves bytes from src to dst (dst -1: throw them away) until src ends and
 * everything read has been written, the connection is killed, or a socket
 * fails. One iteration: wait for input, for the head chunk's time, or for
 * room to write it; then read once and write once. */
static enum pump_end pump(struct pconn *c, int src, int dst)
{
    struct chaos_proxy *p = c->p;
    struct chunk *head = NULL, *tail = NULL;
    size_t queued = 0;
    bool src_eof = false;
    enum pump_end end = PUMP_EOF;
    uint8_t *buf = malloc(CHUNK_MAX);
    if (!buf)
        return PUMP_ERROR;
    for (;;) {
        if (src_eof && !head) {
            if (dst >= 0)
                shutdown(dst, SHUT_WR); /* pass the half-close on */
            break;
        }
        uint64_t now = test_now_ms();
        bool due = head && head->due_ms <= now;
        struct pollfd fds[3] = {
            {.fd = c->wake[0], .events = POLLIN},
            {.fd = !src_eof && queued < QUEUE_MAX ? src : -1, .events = POLLIN},
            {.fd = due ? dst : -1, .events = POLLOUT},
        };
        int timeout = head && !due ? (int)(head->due_ms - now) : -1;
        int n = poll(fds, 3, timeout);
        if (n < 0 && errno != EINTR) {
            end = PUMP_ERROR;
            break;
        }
        if (n <= 0)
            continue;
        if (fds[0].revents) {
            end = PUMP_KILLED;
            break;
        }
        if (fds[1].revents) {
            ssize_t got = read(src, buf, CHUNK_MAX);
            if (got == 0) {
                src_eof = true;
            } else if (got < 0 && errno != EAGAIN && errno != EINTR) {
                end = PUMP_ERROR;
                break;
            } else if (got > 0 && dst < 0) {
                count(p, &p->st.bytes_dropped, (uint64_t)got);
            } else if (got > 0) {
                struct chunk *ch = malloc(sizeof(*ch) + (size_t)got);
                if (!ch) {
                    end = PUMP_ERROR;
                    break;
                }
                memcpy(ch->data, buf, (size_t)got);
                ch->len = (size_t)got;
                ch->off = 0;
                ch->next = NULL;
                ch->due_ms = test_now_ms() + random_delay(p);
                if (tail && ch->due_ms < tail->due_ms)
                    ch->due_ms = tail->due_ms; /* TCP keeps order */
                if (tail)
                    tail->next = ch;
                else
                    head = ch;
                tail = ch;
                queued += (size_t)got;
            }
        }
        if (due && fds[2].revents) {
            ssize_t put = send(dst, head->data + head->off, head->len - head->off, MSG_NOSIGNAL);
            if (put < 0 && errno != EAGAIN && errno != EINTR) {
                end = PUMP_ERROR;
                break;
            }
            if (put > 0) {
                count(p, &p->st.bytes_forwarded, (uint64_t)put);
                head->off += (size_t)put;
                queued -= (size_t)put;
                if (head->off == head->len) {
                    struct chunk *done = head;
                    head = head->next;
                    if (!head)
                        tail = NULL;
                    free(done);
                }
            }
        }
    }
    while (head) {
        struct chunk *next = head->next;
        free(head);
        head = next;
    }
    free(buf);
    return end;
}

static void *pump_back_main(void *arg)
{
    struct pconn *c = arg;
    if (pump(c, c->up_fd, c->down_fd) != PUMP_EOF)
        kill_conn(c);
    return NULL;
}

/* Connects to the target within CONNECT_TIMEOUT_MS, or until killed. */
static int connect_target(struct pconn *c)
{
    struct chaos_proxy *p = c->p;
    int fd = socket(p->target_sa.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    socket_setup(fd);
    if (connect(fd, (struct sockaddr *)&p->target_sa, p->target_len) < 0 &&
        errno != EINPROGRESS) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    struct pollfd fds[2] = {{.fd = fd, .events = POLLOUT}, {.fd = c->wake[0], .events = POLLIN}};
    int n;
    do
        n = poll(fds, 2, CONNECT_TIMEOUT_MS);
    while (n < 0 && errno == EINTR);
    int err = 0;
    socklen_t len = sizeof(err);
    if (n <= 0 || fds[1].revents)
        err = n == 0 ? ETIMEDOUT : ECANCELED;
    else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        close(fd);
        return -err;
    }
    return fd;
}

/* One connection: connect, pump both ways (this thread client -> target,
 * a second one back), then close both sockets, with RST if killed. */
static void *conn_main(void *arg)
{
    struct pconn *c = arg;
    struct chaos_proxy *p = c->p;
    if (c->blackhole) {
        if (pump(c, c->down_fd, -1) != PUMP_EOF)
            kill_conn(c);
    } else {
        int fd = connect_target(c);
        if (fd < 0) {
            count(p, &p->st.refused, 1);
            kill_conn(c); /* the client sees a reset, as from a dead node */
        } else {
            c->up_fd = fd;
            pthread_t back;
            if (pthread_create(&back, NULL, pump_back_main, c) != 0) {
                kill_conn(c);
            } else {
                if (pump(c, c->down_fd, c->up_fd) != PUMP_EOF)
                    kill_conn(c);
                pthread_join(back, NULL);
            }
        }
    }
    pthread_mutex_lock(&p->mu);
    bool killed = c->killed;
    pthread_mutex_unlock(&p->mu);
    if (killed) {
        close_with_reset(c->down_fd);
        if (c->up_fd >= 0)
            close_with_reset(c->up_fd);
    } else {
        close(c->down_fd);
        if (c->up_fd >= 0)
            close(c->up_fd);
    }
    c->down_fd = c->up_fd = -1;
    pthread_mutex_lock(&p->mu);
    c->done = true;
    p->st.open--;
    pthread_mutex_unlock(&p->mu);
    poke(p->wake[1]);
    return NULL;
}

/* Joins and frees finished connections (all of them when `all`). */
static void reap(struct chaos_proxy *p, bool all)
{
    struct pconn *dead = NULL;
    pthread_mutex_lock(&p->mu);
    for (struct pconn **pp = &p->conns; *pp;) {
        struct pconn *c = *pp;
        if (!all && !c->done) {
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        c->next = dead;
        dead = c;
    }
    pthread_mutex_unlock(&p->mu);
    while (dead) {
        struct pconn *c = dead;
        dead = c->next;
        pthread_join(c->thread, NULL);
        close(c->wake[0]);
        close(c->wake[1]);
        free(c);
    }
}

static void accept_one(struct chaos_proxy *p)
{
    int fd = accept(p->listen_fd, NULL, NULL);
    if (fd < 0)
        return;
    socket_setup(fd);
    struct pconn *c = calloc(1, sizeof(*c));
    if (!c || make_pipe(c->wake) != 0) {
        free(c);
        close_with_reset(fd);
        return;
    }
    c->p = p;
    c->down_fd = fd;
    c->up_fd = -1;
    pthread_mutex_lock(&p->mu);
    bool full = p->st.open >= MAX_CONNS;
    c->blackhole = p->cut;
    if (!full && pthread_create(&c->thread, NULL, conn_main, c) == 0) {
        c->next = p->conns;
        p->conns = c;
        p->st.open++;
        p->st.accepted++;
        p->st.blackholed += c->blackhole;
        c = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (c) {
        close(c->wake[0]);
        close(c->wake[1]);
        free(c);
        close_with_reset(fd);
    }
}

static void *listener_main(void *arg)
{
    struct chaos_proxy *p = arg;
    /* One iteration: wait for a connection or a wake-up, join finished
     * connections, then accept or stop. */
    for (;;) {
        struct pollfd fds[2] = {{.fd = p->listen_fd, .events = POLLIN},
                                {.fd = p->wake[0], .events = POLLIN}};
        int n = poll(fds, 2, -1);
        if (n > 0 && fds[1].revents) {
            char junk[64];
            while (read(p->wake[0], junk, sizeof(junk)) > 0)
                ;
        }
        reap(p, false);
        pthread_mutex_lock(&p->mu);
        bool stopping = p->stopping;
        pthread_mutex_unlock(&p->mu);
        if (stopping)
            break;
        if (n > 0 && (fds[0].revents & POLLIN))
            accept_one(p);
    }
    return NULL;
}

/* ---- the API ---- */

int chaos_proxy_start(struct chaos_proxy **out, const char *listen_addr, const char *target,
                      uint64_t seed)
{
    struct chaos_proxy *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
    snprintf(p->target, sizeof(p->target), "%s", target);
    struct sockaddr_storage sa;
    socklen_t len;
    int rc = resolve(target, false, &p->target_sa, &p->target_len);
    if (rc == 0)
        rc = resolve(listen_addr, true, &sa, &len);
    if (rc) {
        free(p);
        return rc;
    }
    p->listen_fd = socket(sa.ss_family, SOCK_STREAM, 0);
    int one = 1;
    if (p->listen_fd < 0 ||
        setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(p->listen_fd, (struct sockaddr *)&sa, len) < 0 || listen(p->listen_fd, 128) < 0 ||
        getsockname(p->listen_fd, (struct sockaddr *)&sa, &len) < 0) {
        rc = -errno;
        if (p->listen_fd >= 0)
            close(p->listen_fd);
        free(p);
        return rc;
    }
    fcntl(p->listen_fd, F_SETFD, FD_CLOEXEC);
    fcntl(p->listen_fd, F_SETFL, fcntl(p->listen_fd, F_GETFL) | O_NONBLOCK);
    char host[256], port[16];
    getnameinfo((struct sockaddr *)&sa, len, host, sizeof(host), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(p->addr, sizeof(p->addr), sa.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
             port);
    pthread_mutex_init(&p->mu, NULL);
    rc = make_pipe(p->wake);
    if (rc == 0 && (rc = -pthread_create(&p->listener, NULL, listener_main, p)) != 0) {
        close(p->wake[0]);
        close(p->wake[1]);
    }
    if (rc) {
        pthread_mutex_destroy(&p->mu);
        close(p->listen_fd);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void chaos_proxy_stop(struct chaos_proxy *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    for (struct pconn *c = p->conns; c; c = c->next)
        kill_conn_locked(c);
    pthread_mutex_unlock(&p->mu);
    poke(p->wake[1]);
    pthread_join(p->listener, NULL);
    reap(p, true);
    close(p->listen_fd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

const char *chaos_proxy_addr(const struct chaos_proxy *p)
{
    return p->addr;
}

const char *chaos_proxy_target(const struct chaos_proxy *p)
{
    return p->target;
}

void chaos_proxy_cut(struct chaos_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    p->cut = true;
    for (struct pconn *c = p->conns; c; c = c->next)
        if (!c->blackhole)
            kill_conn_locked(c);
    pthread_mutex_unlock(&p->mu);
}

void chaos_proxy_heal(struct chaos_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    p->cut = false;
    for (struct pconn *c = p->conns; c; c = c->next)
        if (c->blackhole)
            kill_conn_locked(c);
    pthread_mutex_unlock(&p->mu);
}

int chaos_proxy_is_cut(struct chaos_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    int cut = p->cut;
    pthread_mutex_unlock(&p->mu);
    return cut;
}

void chaos_proxy_set_delay(struct chaos_proxy *p, unsigned min_ms, unsigned max_ms)
{
    pthread_mutex_lock(&p->mu);
    p->delay_min_ms = min_ms;
    p->delay_max_ms = max_ms < min_ms ? min_ms : max_ms;
    pthread_mutex_unlock(&p->mu);
}

unsigned chaos_proxy_reset_some(struct chaos_proxy *p, unsigned percent)
{
    unsigned n = 0;
    pthread_mutex_lock(&p->mu);
    for (struct pconn *c = p->conns; c; c = c->next)
        if (!c->killed && !c->done && next_rand_locked(p) % 100 < percent) {
            kill_conn_locked(c);
            n++;
        }
    pthread_mutex_unlock(&p->mu);
    return n;
}

void chaos_proxy_get_stats(struct chaos_proxy *p, struct chaos_proxy_stats *st)
{
    pthread_mutex_lock(&p->mu);
    *st = p->st;
    pthread_mutex_unlock(&p->mu);
}
