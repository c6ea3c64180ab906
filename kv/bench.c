/*
 * bench.c - the closed-loop benchmark behind `raft bench`.
 *
 * C client sessions, each with one request in flight, driven by event
 * loops (epoll), up to SESSIONS_PER_LOOP sessions per thread. A thread per
 * session, blocked in recv() until its reply, would cost a thread wake-up
 * per operation; on a small machine that time is taken from the cluster
 * being measured. Each session behaves as kv/client.c does: its own
 * session id and sequence numbers (a retried put keeps its number), it
 * follows leader hints, gives up on a node that is silent for ATTEMPT_MS,
 * and pauses RETRY_PAUSE_MS when nobody is known to lead. An operation's
 * latency runs from its first attempt to its final answer; one that gets
 * no final answer within the timeout counts as an error.
 */
#include "kv/bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kv/client.h"
#include "net/tcp.h"

#define SESSIONS_PER_LOOP 64
#define RETRY_PAUSE_MS 20
#define ATTEMPT_MS 1500
#define NS_PER_MS 1000000ull

enum session_state {
    PAUSED,     /* waits until resume_ns before its next attempt */
    CONNECTING, /* the connect is in progress */
    SENDING,    /* part of the request is still to be written */
    AWAITING,   /* the request is sent; reading the reply */
    FINISHED,   /* the run is over for this session */
};

struct loop;

struct session {
    struct loop *loop;
    struct kv_nodes nodes;
    uint64_t client_id, seq;
    uint64_t rng;
    int fd; /* connection to nodes.target, or -1 */
    enum session_state state;
    uint64_t op_start_ns, op_deadline_ns;
    uint64_t wake_ns; /* PAUSED: resume then; otherwise: the attempt's deadline */
    uint8_t *out;     /* the request frame, kept for retries */
    size_t out_len, out_sent, out_cap;
    uint8_t *in; /* the reply read so far */
    size_t in_have, in_cap;
};

struct loop {
    const struct bench_options *opt;
    pthread_t thread;
    int epfd;
    struct session *sessions;
    unsigned n, first_index;
    unsigned live; /* sessions not FINISHED */
    uint64_t stop_ns;
    char *value;
    struct bench_samples lat;
    uint64_t errors;
    int rc;
};

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need)
        cap2 *= 2;
    uint8_t *b = realloc(*buf, cap2);
    if (!b)
        return -ENOMEM;
    *buf = b;
    *cap = cap2;
    return 0;
}

static void disconnect(struct session *s)
{
    if (s->fd >= 0)
        close(s->fd); /* also takes it out of the epoll set */
    s->fd = -1;
}

static void watch(struct session *s, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = s};
    if (epoll_ctl(s->loop->epfd, EPOLL_CTL_MOD, s->fd, &ev) < 0)
        s->loop->rc = -errno;
}

static void start_op(struct session *s, uint64_t now);
static void attempt(struct session *s, uint64_t now);

/* The attempt failed or was turned away: try the next node, at once if
 * the reply named the leader, else after a pause. */
static void move_on(struct session *s, const struct client_reply *reply, uint64_t now)
{
    disconnect(s);
    if (kv_nodes_move_on(&s->nodes, reply)) {
        attempt(s, now);
        return;
    }
    s->state = PAUSED;
    s->wake_ns = now + RETRY_PAUSE_MS * NS_PER_MS;
}

/* The operation has its final answer (ok false: it failed for good). */
static void finish_op(struct session *s, bool ok, uint64_t now)
{
    struct loop *l = s->loop;
    if (!ok)
        l->errors++;
    else if (bench_samples_add(&l->lat, (double)(now - s->op_start_ns) / 1e6))
        l->rc = -ENOMEM;
    if (now >= l->stop_ns || l->rc) {
        disconnect(s);
        s->state = FINISHED;
        l->live--;
        return;
    }
    start_op(s, now);
}

static void flush(struct session *s, uint64_t now)
{
    while (s->out_sent < s->out_len) {
        ssize_t w = send(s->fd, s->out + s->out_sent, s->out_len - s->out_sent, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (s->state != SENDING)
                watch(s, EPOLLIN | EPOLLOUT);
            s->state = SENDING;
            return;
        }
        if (w < 0) {
            move_on(s, NULL, now);
            return;
        }
        s->out_sent += (size_t)w;
    }
    if (s->state == SENDING || s->state == CONNECTING)
        watch(s, EPOLLIN);
    s->state = AWAITING;
}

/* Sends the current request to the target, connecting first if need be. */
static void attempt(struct session *s, uint64_t now)
{
    s->wake_ns = now + ATTEMPT_MS * NS_PER_MS;
    s->out_sent = 0;
    s->in_have = 0;
    if (s->fd >= 0) {
        s->state = AWAITING;
        flush(s, now);
        return;
    }
    s->fd = tcp_dial_start(s->nodes.addrs[s->nodes.target]);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = s};
    if (s->fd >= 0 && epoll_ctl(s->loop->epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
        s->loop->rc = -errno;
        disconnect(s);
    }
    if (s->fd < 0) {
        move_on(s, NULL, now);
        return;
    }
    s->state = CONNECTING;
}

/* Picks the next operation (a get with probability read_ratio), encodes
 * it and makes its first attempt. */
static void start_op(struct session *s, uint64_t now)
{
    const struct bench_options *opt = s->loop->opt;
    s->rng ^= s->rng << 13, s->rng ^= s->rng >> 7, s->rng ^= s->rng << 17;
    char key[32];
    int key_len = snprintf(key, sizeof(key), "key-%llu", (unsigned long long)(s->rng % opt->keys));
    bool read = (double)(s->rng >> 11) / (double)(1ull << 53) < opt->read_ratio;
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT};
    struct client_request *q = &req.u.request;
    q->op = read ? CLIENT_GET : CLIENT_PUT;
    q->client_id = s->client_id;
    q->seq = read ? 0 : ++s->seq; /* the same number on every retry of this put */
    q->key = (uint8_t *)key;
    q->key_len = (uint32_t)key_len;
    if (!read) {
        q->value = (uint8_t *)s->loop->value;
        q->value_len = opt->value_size;
    }
    long n = grow(&s->out, &s->out_cap, wire_size(&req)) ? -ENOMEM
                                                         : wire_encode(&req, s->out, s->out_cap);
    if (n < 0) {
        s->loop->rc = (int)n;
        finish_op(s, false, now);
        return;
    }
    s->out_len = (size_t)n;
    s->op_start_ns = now;
    s->op_deadline_ns = now + (uint64_t)opt->timeout_ms * NS_PER_MS;
    attempt(s, now);
}

/* The reply is whole in s->in: a final answer ends the operation, anything
 * else sends it elsewhere. */
static void on_reply(struct session *s, size_t frame, uint64_t now)
{
    struct wire_msg reply;
    if (s->in_have != frame || wire_decode(s->in, frame, &reply) != 0 ||
        reply.type != WIRE_CLIENT_REPLY) {
        move_on(s, NULL, now); /* out of step: this connection is done */
        return;
    }
    uint8_t status = reply.u.reply.status;
    if (status == CLIENT_OK || status == CLIENT_NOT_FOUND || status == CLIENT_BAD_REQUEST) {
        finish_op(s, status != CLIENT_BAD_REQUEST, now);
        return;
    }
    move_on(s, &reply.u.reply, now);
}

static void on_readable(struct session *s, uint64_t now)
{
    for (;;) {
        size_t need = WIRE_HEADER;
        long frame = 0;
        if (s->in_have >= 4) {
            frame = wire_frame_size(s->in);
            if (frame < 0) {
                move_on(s, NULL, now);
                return;
            }
            need = (size_t)frame;
        }
        if (s->in_have >= need && frame > 0) {
            on_reply(s, (size_t)frame, now);
            return;
        }
        if (grow(&s->in, &s->in_cap, need) != 0) {
            s->loop->rc = -ENOMEM;
            move_on(s, NULL, now);
            return;
        }
        ssize_t r = recv(s->fd, s->in + s->in_have, s->in_cap - s->in_have, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            move_on(s, NULL, now); /* closed or reset */
            return;
        }
        s->in_have += (size_t)r;
    }
}

static void on_event(struct session *s, uint32_t events, uint64_t now)
{
    if (s->state == CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        if (tcp_dial_result(s->fd) != 0) {
            move_on(s, NULL, now);
            return;
        }
        s->state = SENDING;
    }
    if (s->state == SENDING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        flush(s, now);
        return;
    }
    if (s->state == AWAITING && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        on_readable(s, now);
}

/* Ends operations past their timeout and attempts past ATTEMPT_MS, resumes
 * paused sessions; returns how long epoll may wait, in ms. */
static int check_timers(struct loop *l, uint64_t now)
{
    uint64_t next = now + 1000 * NS_PER_MS;
    for (unsigned i = 0; i < l->n; i++) {
        struct session *s = &l->sessions[i];
        if (s->state == FINISHED)
            continue;
        if (now >= s->op_deadline_ns) {
            disconnect(s); /* a late reply must not answer the next request */
            finish_op(s, false, now);
        } else if (now >= s->wake_ns) {
            if (s->state == PAUSED)
                attempt(s, now);
            else
                move_on(s, NULL, now); /* a silent node costs one attempt */
        }
        if (s->state == FINISHED)
            continue;
        if (s->wake_ns < next)
            next = s->wake_ns;
        if (s->op_deadline_ns < next)
            next = s->op_deadline_ns;
    }
    return next > now ? (int)((next - now + NS_PER_MS - 1) / NS_PER_MS) : 0;
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    uint64_t now = bench_now_ns();
    for (unsigned i = 0; i < l->n && !l->rc; i++) {
        struct session *s = &l->sessions[i];
        s->loop = l;
        s->fd = -1;
        s->client_id = kv_client_new_id();
        s->rng = 0x9e3779b97f4a7c15ull * (l->first_index + i + 1);
        /* Sessions start at different nodes, to spread them out. */
        if (kv_nodes_init(&s->nodes, l->opt->addrs, l->opt->n_addrs, s->client_id)) {
            l->rc = -ENOMEM;
            break;
        }
        l->live++;
        start_op(s, now);
    }
    struct epoll_event ev[SESSIONS_PER_LOOP];
    for (;;) {
        int wait_ms = check_timers(l, bench_now_ns());
        if (l->live == 0 || l->rc)
            break;
        int n = epoll_wait(l->epfd, ev, SESSIONS_PER_LOOP, wait_ms);
        if (n < 0 && errno != EINTR) {
            l->rc = -errno;
            break;
        }
        now = bench_now_ns();
        for (int i = 0; i < n; i++)
            on_event(ev[i].data.ptr, ev[i].events, now);
    }
    return NULL;
}

static void loop_free(struct loop *l)
{
    for (unsigned i = 0; l->sessions && i < l->n; i++) {
        struct session *s = &l->sessions[i];
        disconnect(s);
        kv_nodes_free(&s->nodes);
        free(s->out);
        free(s->in);
    }
    free(l->sessions);
    free(l->value);
    free(l->lat.ms);
    if (l->epfd >= 0)
        close(l->epfd);
}

static int loop_init(struct loop *l, const struct bench_options *opt, unsigned first,
                     unsigned n, uint64_t stop_ns)
{
    *l = (struct loop){.opt = opt, .n = n, .first_index = first, .stop_ns = stop_ns};
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->sessions = calloc(n, sizeof(*l->sessions));
    l->value = malloc(opt->value_size + 1);
    if (l->epfd < 0 || !l->sessions || !l->value)
        return l->epfd < 0 ? -errno : -ENOMEM;
    for (unsigned i = 0; i < n; i++)
        l->sessions[i].fd = -1;
    memset(l->value, 'a' + (int)(first % 26), opt->value_size);
    return 0;
}

static void summarise(struct loop *l, unsigned n_loops, double seconds, struct bench_result *out)
{
    size_t total = 0;
    uint64_t errors = 0;
    for (unsigned i = 0; i < n_loops; i++) {
        total += l[i].lat.n;
        errors += l[i].errors;
    }
    double *all = malloc((total ? total : 1) * sizeof(*all));
    size_t k = 0;
    for (unsigned i = 0; i < n_loops && all; i++) {
        memcpy(all + k, l[i].lat.ms, l[i].lat.n * sizeof(*all));
        k += l[i].lat.n;
    }
    bench_summarise(all, total, errors, seconds, out);
    free(all);
}

int bench_run(const struct bench_options *opt, struct bench_result *out)
{
    if (opt->clients == 0 || opt->keys == 0 || opt->seconds <= 0 || opt->n_addrs == 0)
        return -EINVAL;
    unsigned n_loops = (opt->clients + SESSIONS_PER_LOOP - 1) / SESSIONS_PER_LOOP;
    struct loop *l = calloc(n_loops, sizeof(*l));
    if (!l)
        return -ENOMEM;
    uint64_t start = bench_now_ns();
    uint64_t stop = start + (uint64_t)(opt->seconds * 1e9);
    unsigned started = 0;
    int rc = 0;
    for (; started < n_loops && rc == 0; started++) {
        unsigned first = started * SESSIONS_PER_LOOP;
        unsigned n = opt->clients - first < SESSIONS_PER_LOOP ? opt->clients - first
                                                               : SESSIONS_PER_LOOP;
        rc = loop_init(&l[started], opt, first, n, stop);
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
    summarise(l, started, (double)(bench_now_ns() - start) / 1e9, out);
    for (unsigned i = 0; i < started; i++)
        loop_free(&l[i]);
    free(l);
    return rc;
}
