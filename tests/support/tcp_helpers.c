/*
 * tcp_helpers.c - the echo server, log capture and socket helpers of the
 * TCP suites (see tcp_helpers.h).
 */
#include "tests/support/tcp_helpers.h"

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

void tcp_test_capture_log(void *ctx, enum raft_log_level lvl,
                          const char *msg)
{
    struct tcp_test_log *cap = ctx;
    pthread_mutex_lock(&cap->mu);
    if (lvl <= RAFT_LOG_WARN) {
        cap->warns++;
        snprintf(cap->last_warn, sizeof cap->last_warn, "%s", msg);
        size_t used = strlen(cap->warned);
        snprintf(cap->warned + used, sizeof cap->warned - used, "%s\n", msg);
    }
    if (cap->verbose)
        fprintf(stderr, "    [log %d] %s\n", (int)lvl, msg);
    pthread_mutex_unlock(&cap->mu);
}

int tcp_test_warn_count(struct tcp_test_log *cap)
{
    pthread_mutex_lock(&cap->mu);
    int n = cap->warns;
    pthread_mutex_unlock(&cap->mu);
    return n;
}

/* A client reply the echo handler deferred, for its replier thread. */
struct deferred {
    struct tcp_conn *conn;
    uint32_t id;
    unsigned delay_ms;
    uint8_t *key;
    uint32_t key_len;
};

static void *reply_later_main(void *arg)
{
    struct deferred *d = arg;
    tcp_test_sleep_ms(d->delay_ms);
    struct wire_msg reply = { .type = WIRE_CLIENT_REPLY, .from = d->id };
    reply.u.reply.status = CLIENT_OK;
    reply.u.reply.leader_hint = (int32_t)d->id;
    reply.u.reply.value = d->key; /* freed by tcp_reply */
    reply.u.reply.value_len = d->key_len;
    tcp_reply(d->conn, &reply);
    free(d);
    return NULL;
}

void tcp_test_sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000,
                           .tv_nsec = (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int64_t tcp_test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void echo_raft(const struct raft_msg *req, struct raft_msg *reply)
{
    reply->type = req->type + 1;
    switch (req->type) {
    case RAFT_MSG_REQUEST_VOTE:
        reply->u.rv_reply.term = req->u.rv.term + 1;
        reply->u.rv_reply.vote_granted = 1;
        reply->u.rv_reply.pre_vote = req->u.rv.pre_vote;
        break;
    case RAFT_MSG_APPEND_ENTRIES: {
        uint64_t bytes = 0;
        for (uint32_t i = 0; i < req->u.ae.n_entries; i++)
            bytes += req->u.ae.entries[i].len;
        reply->u.ae_reply.term = req->u.ae.term;
        reply->u.ae_reply.success = 1;
        reply->u.ae_reply.match_index =
            req->u.ae.prev_log_index + req->u.ae.n_entries;
        reply->u.ae_reply.conflict_index = bytes;
        break;
    }
    default:
        reply->u.is_reply.term = req->u.is.term;
        reply->u.is_reply.next_offset = req->u.is.offset + req->u.is.len;
        break;
    }
}

static int echo_handler(void *ctx, const struct wire_msg *req,
                        struct wire_msg *reply, struct tcp_conn *conn)
{
    struct tcp_test_echo *e = ctx;
    bool first = atomic_fetch_add(&e->calls, 1) == 0;
    if (first && e->sleep_first_ms > 0)
        tcp_test_sleep_ms(e->sleep_first_ms);
    if (req->type == WIRE_CLIENT_REQUEST && e->defer_ms > 0) {
        struct deferred *d = malloc(sizeof *d);
        if (d == NULL)
            return -ENOMEM;
        /* The first reply is the slowest: it must still go out first. */
        *d = (struct deferred){ .conn = conn, .id = e->id,
                                .delay_ms = first ? e->defer_ms : e->defer_ms / 4,
                                .key = malloc(req->u.request.key_len + 1),
                                .key_len = req->u.request.key_len };
        memcpy(d->key, req->u.request.key, req->u.request.key_len);
        tcp_reply_later(conn);
        int i = atomic_fetch_add(&e->n_repliers, 1);
        assert_int_equal(pthread_create(&e->repliers[i], NULL, reply_later_main, d), 0);
        return TCP_REPLY_LATER;
    }
    if (req->type == WIRE_CLIENT_REQUEST) {
        /* The value is malloc'd: the server must free it (LSan checks). */
        const struct client_request *q = &req->u.request;
        reply->type = WIRE_CLIENT_REPLY;
        reply->from = e->id;
        reply->u.reply.status = CLIENT_OK;
        reply->u.reply.leader_hint = (int32_t)e->id;
        reply->u.reply.value = malloc(q->key_len + 1);
        if (reply->u.reply.value == NULL)
            return -ENOMEM;
        if (q->key_len > 0)
            memcpy(reply->u.reply.value, q->key, q->key_len);
        reply->u.reply.value_len = q->key_len;
        return 0;
    }
    if (req->type == WIRE_CLIENT_REPLY)
        return -EINVAL;
    struct raft_msg r;
    memset(&r, 0, sizeof r);
    echo_raft(&req->u.raft, &r);
    r.from = e->id;
    wire_from_raft(reply, &r);
    return 0;
}

static unsigned port_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned)ts.tv_nsec ^ (unsigned)getpid() * 2654435761u;
}

struct tcp_server_options tcp_test_server_options(struct tcp_test_fixture *f,
                                                  uint16_t port)
{
    return (struct tcp_server_options){
        .host = "127.0.0.1", .port = port, .handler = echo_handler,
        .handler_ctx = &f->echo, .log = tcp_test_capture_log,
        .log_ctx = &f->log };
}

/* Tries ports from a random base until one binds. */
void tcp_test_start_server(struct tcp_test_fixture *f, unsigned max_conns,
                           unsigned idle_ms)
{
    struct tcp_server_options opt = tcp_test_server_options(f, 0);
    opt.max_connections = max_conns;
    opt.idle_timeout_ms = idle_ms;
    unsigned base = 20000 + port_seed() % 30000;
    int rc = -EADDRINUSE;
    for (unsigned i = 0; i < 200 && rc == -EADDRINUSE; i++) {
        opt.port = (uint16_t)(base + i);
        rc = tcp_server_start(&f->server, &opt);
    }
    assert_int_equal(rc, 0);
    f->port = tcp_server_port(f->server);
    assert_int_equal(f->port, opt.port);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%u", (unsigned)f->port);
}

int tcp_test_setup(void **state)
{
    struct tcp_test_fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    pthread_mutex_init(&f->log.mu, NULL);
    f->log.verbose = getenv("TCP_TEST_LOG") != NULL;
    f->echo.id = 1;
    atomic_init(&f->echo.calls, 0);
    atomic_init(&f->echo.n_repliers, 0);
    *state = f;
    return 0;
}

int tcp_test_teardown(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_server_stop(f->server);
    pthread_mutex_destroy(&f->log.mu);
    free(f);
    return 0;
}

struct tcp_transport *tcp_test_transport_to(struct tcp_test_fixture *f,
                                            const char *addr)
{
    char *peers[2] = { "127.0.0.1:1", (char *)addr };
    struct tcp_transport *t;
    assert_int_equal(tcp_transport_create(&t, 0, peers, 2,
                                          tcp_test_capture_log, &f->log), 0);
    return t;
}

struct raft_msg tcp_test_request_vote(uint64_t term)
{
    struct raft_msg m = { .type = RAFT_MSG_REQUEST_VOTE, .from = 0 };
    m.u.rv.term = term;
    m.u.rv.last_log_index = 4;
    m.u.rv.last_log_term = 2;
    return m;
}

int64_t tcp_test_wait_closed(int fd, unsigned timeout_ms)
{
    int64_t start = tcp_test_now_ms(), deadline = start + timeout_ms;
    for (;;) {
        int64_t left = deadline - tcp_test_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        char b[256];
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return tcp_test_now_ms() - start;
    }
}

void tcp_test_send_raw(int fd, const void *p, size_t n)
{
    assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

int tcp_test_client_get(int fd, const char *key, unsigned timeout_ms)
{
    struct wire_msg req = { .type = WIRE_CLIENT_REQUEST,
                            .from = WIRE_FROM_CLIENT };
    req.u.request.op = CLIENT_GET;
    req.u.request.key = (uint8_t *)key;
    req.u.request.key_len = (uint32_t)strlen(key);
    struct wire_msg reply;
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rc = tcp_roundtrip(fd, &req, &reply, &buf, &cap, timeout_ms);
    if (rc == 0) {
        assert_int_equal(reply.type, WIRE_CLIENT_REPLY);
        assert_int_equal(reply.u.reply.value_len, strlen(key));
        assert_memory_equal(reply.u.reply.value, key, strlen(key));
        wire_msg_release(&reply);
    }
    free(buf);
    return rc;
}
