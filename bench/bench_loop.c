/*
 * bench_loop.c - the event loops under a closed-loop load (see bench_loop.h).
 */
#include "bench/bench_loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define NS_PER_MS 1000000ull

struct bench_loop {
    const struct bench_driver *d;
    pthread_t thread;
    int epfd;
    char *sessions; /* n of d->session_size bytes each */
    unsigned n, live;
    uint64_t stop_ns;
    struct bench_samples lat[BENCH_MAX_CLASSES]; /* by the operation's class */
    uint64_t errors[BENCH_MAX_CLASSES];
    int rc;
};

static struct bench_session *session_at(struct bench_loop *l, unsigned i)
{
    return (struct bench_session *)(l->sessions + (size_t)i * l->d->session_size);
}

const void *bench_ctx(const struct bench_session *s)
{
    return s->loop->d->ctx;
}

void bench_close(struct bench_session *s)
{
    if (s->fd >= 0)
        close(s->fd); /* also takes it out of the epoll set */
    s->fd = -1;
    s->watching = 0;
    s->io = BENCH_IDLE;
}

int bench_adopt(struct bench_session *s, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = s};
    if (epoll_ctl(s->loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    s->fd = fd;
    s->watching = ev.events;
    s->io = BENCH_CONNECTING;
    return 0;
}

static void watch(struct bench_session *s, uint32_t events)
{
    if (events == s->watching)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = s};
    if (epoll_ctl(s->loop->epfd, EPOLL_CTL_MOD, s->fd, &ev) < 0 && s->loop->rc == 0)
        s->loop->rc = -errno;
    s->watching = events;
}

static void broken(struct bench_session *s, uint64_t now)
{
    bench_close(s);
    s->loop->d->broken(s, now);
}

/* send() as the driver's write() would answer: the count or -errno. */
static long send_some(struct bench_session *s, const void *p, size_t n)
{
    ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);
    return w < 0 ? -errno : (long)w;
}

/* Writes what is left of the request without blocking; once all is out,
 * the session awaits its reply. */
static void flush(struct bench_session *s, uint64_t now)
{
    while (s->out_sent < s->out_len) {
        const char *p = (const char *)s->out + s->out_sent;
        size_t n = s->out_len - s->out_sent;
        long w = s->loop->d->write ? s->loop->d->write(s, p, n) : send_some(s, p, n);
        if (w == -EINTR)
            continue;
        if (w == -EAGAIN || w == -EWOULDBLOCK) {
            watch(s, EPOLLIN | EPOLLOUT);
            s->io = BENCH_SENDING;
            return;
        }
        if (w < 0) {
            broken(s, now);
            return;
        }
        s->out_sent += (size_t)w;
    }
    watch(s, EPOLLIN);
    s->io = BENCH_AWAITING;
}

void bench_request(struct bench_session *s, const void *buf, size_t len, uint64_t now)
{
    s->out = buf;
    s->out_len = len;
    s->out_sent = 0;
    if (s->io != BENCH_CONNECTING) /* else flushed once connected */
        flush(s, now);
}

static void on_event(struct bench_session *s, uint32_t events, uint64_t now)
{
    bool writable = events & (EPOLLOUT | EPOLLERR | EPOLLHUP);
    if (s->io == BENCH_CONNECTING && writable) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err)
            broken(s, now);
        else
            flush(s, now);
    } else if (s->io == BENCH_SENDING && writable) {
        flush(s, now);
    } else if (s->io == BENCH_AWAITING && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
        s->loop->d->readable(s, now);
    }
}

static void finish(struct bench_session *s)
{
    bench_close(s);
    s->finished = true;
    s->loop->live--;
}

void bench_op_done(struct bench_session *s, bool ok, uint64_t now)
{
    struct bench_loop *l = s->loop;
    unsigned c = s->op_class < BENCH_MAX_CLASSES ? s->op_class : 0;
    if (!ok)
        l->errors[c]++;
    else if (bench_samples_add(&l->lat[c], (double)(now - s->op_start_ns) / 1e6) && !l->rc)
        l->rc = -ENOMEM;
    if (now >= l->stop_ns || l->rc)
        finish(s);
    else
        l->d->start(s, now);
}

void bench_abort(struct bench_session *s, int rc, uint64_t now)
{
    if (!s->loop->rc)
        s->loop->rc = rc;
    bench_op_done(s, false, now);
}

/* Runs the timers that are due; returns how long epoll may wait, in ms. */
static int run_timers(struct bench_loop *l, uint64_t now)
{
    uint64_t next = now + 1000 * NS_PER_MS;
    for (unsigned i = 0; i < l->n; i++) {
        struct bench_session *s = session_at(l, i);
        if (!s->finished && now >= s->wake_ns)
            l->d->timer(s, now);
        if (!s->finished && s->wake_ns < next)
            next = s->wake_ns;
    }
    return next > now ? (int)((next - now + NS_PER_MS - 1) / NS_PER_MS) : 0;
}

static void *loop_main(void *arg)
{
    struct bench_loop *l = arg;
    uint64_t now = bench_now_ns();
    for (unsigned i = 0; i < l->n && !l->rc; i++) {
        struct bench_session *s = session_at(l, i);
        int rc = l->d->init(s);
        if (rc) {
            l->rc = rc;
            break;
        }
        s->finished = false;
        l->live++;
        l->d->start(s, now);
    }
    struct epoll_event ev[BENCH_SESSIONS_PER_LOOP];
    for (;;) {
        int wait_ms = run_timers(l, bench_now_ns());
        if (l->live == 0 || l->rc)
            break;
        int n = epoll_wait(l->epfd, ev, BENCH_SESSIONS_PER_LOOP, wait_ms);
        if (n < 0 && errno != EINTR) {
            l->rc = -errno;
            break;
        }
        now = bench_now_ns();
        for (int i = 0; i < n; i++) {
            struct bench_session *s = ev[i].data.ptr;
            if (!s->finished)
                on_event(s, ev[i].events, now);
        }
    }
    return NULL;
}

static int loop_init(struct bench_loop *l, const struct bench_driver *d, unsigned first,
                     unsigned n, uint64_t stop_ns)
{
    *l = (struct bench_loop){.d = d, .n = n, .stop_ns = stop_ns, .epfd = -1};
    l->sessions = calloc(n, d->session_size);
    if (!l->sessions)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        struct bench_session *s = session_at(l, i);
        s->loop = l;
        s->index = first + i;
        s->fd = -1;
        s->finished = true; /* until init() succeeds */
    }
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    return l->epfd < 0 ? -errno : 0;
}

static void loop_free(struct bench_loop *l)
{
    for (unsigned i = 0; l->sessions && i < l->n; i++) {
        struct bench_session *s = session_at(l, i);
        bench_close(s);
        l->d->free(s);
    }
    free(l->sessions);
    for (unsigned c = 0; c < BENCH_MAX_CLASSES; c++)
        free(l->lat[c].ms);
    if (l->epfd >= 0)
        close(l->epfd);
}

/* The latencies of the classes [first, last) of every loop, summarised. */
static void summarise(struct bench_loop *l, unsigned n_loops, unsigned first, unsigned last,
                      double seconds, struct bench_result *out)
{
    size_t total = 0;
    uint64_t errors = 0;
    for (unsigned i = 0; i < n_loops; i++)
        for (unsigned c = first; c < last; c++) {
            total += l[i].lat[c].n;
            errors += l[i].errors[c];
        }
    double *all = malloc((total ? total : 1) * sizeof(*all));
    size_t k = 0;
    for (unsigned i = 0; i < n_loops && all; i++)
        for (unsigned c = first; c < last; c++) {
            if (l[i].lat[c].n)
                memcpy(all + k, l[i].lat[c].ms, l[i].lat[c].n * sizeof(*all));
            k += l[i].lat[c].n;
        }
    bench_summarise(all, total, errors, seconds, out);
    free(all);
}

int bench_loops_run(const struct bench_driver *d, unsigned clients, double seconds,
                    struct bench_result *out)
{
    return bench_loops_run_classes(d, clients, seconds, 1, out, NULL);
}

int bench_loops_run_classes(const struct bench_driver *d, unsigned clients, double seconds,
                            unsigned n_classes, struct bench_result *out,
                            struct bench_result *by_class)
{
    if (n_classes == 0 || n_classes > BENCH_MAX_CLASSES)
        return -EINVAL;
    unsigned n_loops = (clients + BENCH_SESSIONS_PER_LOOP - 1) / BENCH_SESSIONS_PER_LOOP;
    struct bench_loop *l = calloc(n_loops ? n_loops : 1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    uint64_t start = bench_now_ns();
    uint64_t stop = start + (uint64_t)(seconds * 1e9);
    unsigned started = 0;
    int rc = 0;
    for (; started < n_loops; started++) {
        unsigned first = started * BENCH_SESSIONS_PER_LOOP;
        unsigned n = clients - first < BENCH_SESSIONS_PER_LOOP ? clients - first
                                                                : BENCH_SESSIONS_PER_LOOP;
        rc = loop_init(&l[started], d, first, n, stop);
        if (rc == 0 && pthread_create(&l[started].thread, NULL, loop_main, &l[started]))
            rc = -EAGAIN;
        if (rc) {
            loop_free(&l[started]);
            break;
        }
    }
    for (unsigned i = 0; i < started; i++) {
        pthread_join(l[i].thread, NULL);
        if (l[i].rc && !rc)
            rc = l[i].rc;
    }
    double took = (double)(bench_now_ns() - start) / 1e9;
    summarise(l, started, 0, n_classes, took, out);
    for (unsigned c = 0; by_class && c < n_classes; c++)
        summarise(l, started, c, c + 1, took, &by_class[c]);
    for (unsigned i = 0; i < started; i++)
        loop_free(&l[i]);
    free(l);
    return rc;
}
