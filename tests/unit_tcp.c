/*
 * unit_tcp.c - the TCP transport and server (net/tcp.c) over loopback.
 *
 * Each test starts its own server on a free port of 127.0.0.1 and talks to it
 * through the Raft transport, tcp_roundtrip(), or a raw socket that sends
 * whatever bytes the test wants. Tests whose names end in _timing_sensitive
 * assert elapsed wall-clock time, with generous bounds.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/tcp_server.h"
#include "net/tcp_socket.h"
#include "net/tcp_transport.h"

/* ---- fixtures ---- */

struct log_capture {
    pthread_mutex_t mu;
    int warns; /* lines at warn level or worse */
    char last_warn[512];
    int verbose; /* TCP_TEST_LOG set: echo every line to stderr */
};

static void capture_log(void *ctx, enum raft_log_level lvl, const char *msg)
{
    struct log_capture *cap = ctx;
    pthread_mutex_lock(&cap->mu);
    if (lvl <= RAFT_LOG_WARN) {
        cap->warns++;
        snprintf(cap->last_warn, sizeof cap->last_warn, "%s", msg);
    }
    if (cap->verbose)
        fprintf(stderr, "    [log %d] %s\n", (int)lvl, msg);
    pthread_mutex_unlock(&cap->mu);
}

static int warn_count(struct log_capture *cap)
{
    pthread_mutex_lock(&cap->mu);
    int n = cap->warns;
    pthread_mutex_unlock(&cap->mu);
    return n;
}

/* The handler answers every Raft request with the matching reply, computed
 * from the request so the test can tell which request a reply answers. */
struct echo {
    uint32_t id;              /* the node id the replies carry */
    unsigned sleep_first_ms;  /* the first request is answered this late */
    atomic_int calls;
    /* Client requests are answered from a thread of their own (a deferred
     * reply), the first this late, the others a quarter of it, when not 0. */
    unsigned defer_ms;
    pthread_t repliers[8];
    atomic_int n_repliers;
};

struct deferred {
    struct tcp_conn *conn;
    uint32_t id;
    unsigned delay_ms;
    uint8_t *key;
    uint32_t key_len;
};

static void sleep_ms(unsigned ms);

static void *reply_later_main(void *arg)
{
    struct deferred *d = arg;
    sleep_ms(d->delay_ms);
    struct wire_msg reply = { .type = WIRE_CLIENT_REPLY, .from = d->id };
    reply.u.reply.status = CLIENT_OK;
    reply.u.reply.leader_hint = (int32_t)d->id;
    reply.u.reply.value = d->key; /* freed by tcp_reply */
    reply.u.reply.value_len = d->key_len;
    tcp_reply(d->conn, &reply);
    free(d);
    return NULL;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000,
                           .tv_nsec = (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int64_t now_ms(void)
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
    struct echo *e = ctx;
    bool first = atomic_fetch_add(&e->calls, 1) == 0;
    if (first && e->sleep_first_ms > 0)
        sleep_ms(e->sleep_first_ms);
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

struct fixture {
    struct log_capture log;
    struct echo echo;
    struct tcp_server *server;
    uint16_t port;
    char addr[32];
};

static unsigned port_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned)ts.tv_nsec ^ (unsigned)getpid() * 2654435761u;
}

/* Tries ports from a random base until one binds. */
static void start_server(struct fixture *f, unsigned max_conns,
                         unsigned idle_ms)
{
    struct tcp_server_options opt = {
        .host = "127.0.0.1", .max_connections = max_conns,
        .idle_timeout_ms = idle_ms, .handler = echo_handler,
        .handler_ctx = &f->echo, .log = capture_log, .log_ctx = &f->log };
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

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
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

static int teardown(void **state)
{
    struct fixture *f = *state;
    tcp_server_stop(f->server);
    pthread_mutex_destroy(&f->log.mu);
    free(f);
    return 0;
}

/* A transport of node 0 whose peer 1 is addr. */
static struct tcp_transport *transport_to(struct fixture *f, const char *addr)
{
    char *peers[2] = { "127.0.0.1:1", (char *)addr };
    struct tcp_transport *t;
    assert_int_equal(tcp_transport_create(&t, 0, peers, 2, capture_log,
                                          &f->log), 0);
    return t;
}

static struct raft_msg request_vote(uint64_t term)
{
    struct raft_msg m = { .type = RAFT_MSG_REQUEST_VOTE, .from = 0 };
    m.u.rv.term = term;
    m.u.rv.last_log_index = 4;
    m.u.rv.last_log_term = 2;
    return m;
}

/* Waits for the peer to close fd; returns the wait in ms, or -1 on timeout. */
static int64_t wait_closed(int fd, unsigned timeout_ms)
{
    int64_t start = now_ms(), deadline = start + timeout_ms;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        char b[256];
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return now_ms() - start;
    }
}

static void send_raw(int fd, const void *p, size_t n)
{
    assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static int client_get(int fd, const char *key, unsigned timeout_ms)
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

/* Encodes a client get of key at buf; returns the frame's size. */
static size_t encode_get(uint8_t *buf, size_t cap, const char *key)
{
    struct wire_msg req = { .type = WIRE_CLIENT_REQUEST,
                            .from = WIRE_FROM_CLIENT };
    req.u.request.op = CLIENT_GET;
    req.u.request.key = (uint8_t *)key;
    req.u.request.key_len = (uint32_t)strlen(key);
    long n = wire_encode(&req, buf, cap);
    assert_true(n > 0);
    return (size_t)n;
}

/* Reads one reply frame from fd and checks it echoes key. */
static void expect_echo(int fd, const char *key)
{
    uint8_t buf[256];
    size_t have = 0, size = 0;
    while (size == 0 || have < size) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_true(poll(&p, 1, 2000) == 1);
        /* Exactly one frame: read the header, then the rest of it. */
        ssize_t n = recv(fd, buf + have, (size == 0 ? 4 : size) - have, 0);
        assert_true(n > 0);
        have += (size_t)n;
        if (size == 0 && have == 4) {
            long len = wire_frame_size(buf);
            assert_true(len > 4 && (size_t)len <= sizeof buf);
            size = (size_t)len;
        }
    }
    struct wire_msg reply;
    assert_int_equal(wire_decode(buf, size, &reply), 0);
    assert_int_equal(reply.type, WIRE_CLIENT_REPLY);
    assert_int_equal(reply.u.reply.value_len, strlen(key));
    assert_memory_equal(reply.u.reply.value, key, strlen(key));
    wire_msg_release(&reply);
}

/* ---- tests ---- */

/* The server reads whatever has arrived: two requests in one segment are
 * both answered, in order, and a request trickling in byte by byte is
 * answered once whole. */
/* Connects, sends two requests in one write, and expects their answers in
 * order. Returns the connection. */
static int two_requests_in_one_write(struct fixture *f)
{
    int fd = tcp_dial(f->addr, 2000);
    assert_true(fd >= 0);
    uint8_t buf[512];
    size_t a = encode_get(buf, sizeof buf, "first");
    size_t b = encode_get(buf + a, sizeof buf - a, "second");
    send_raw(fd, buf, a + b);
    expect_echo(fd, "first");
    expect_echo(fd, "second");
    return fd;
}

static void test_requests_in_one_write_and_byte_by_byte(void **state)
{
    struct fixture *f = *state;
    start_server(f, 0, 0);
    int fd = two_requests_in_one_write(f);
    uint8_t buf[512];
    size_t c = encode_get(buf, sizeof buf, "slowly");
    for (size_t i = 0; i < c; i++) {
        send_raw(fd, buf + i, 1);
        sleep_ms(2);
    }
    expect_echo(fd, "slowly");
    assert_int_equal(client_get(fd, "and again", 2000), 0);
    close(fd);
    assert_int_equal(warn_count(&f->log), 0);
}

/* A reply deferred to another thread: the next request on the connection,
 * already received, is handled only once that reply is out, so replies keep
 * the order of their requests; a client that leaves while its reply is
 * pending costs nothing but that reply. */
static void test_deferred_replies_keep_their_order(void **state)
{
    struct fixture *f = *state;
    f->echo.defer_ms = 40;
    start_server(f, 0, 0);
    int fd = two_requests_in_one_write(f);
    uint8_t buf[512];
    size_t c = encode_get(buf, sizeof buf, "gone");
    send_raw(fd, buf, c);
    sleep_ms(5);
    close(fd);
    int n = atomic_load(&f->echo.n_repliers);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++)
        pthread_join(f->echo.repliers[i], NULL);
    assert_int_equal(warn_count(&f->log), 0);
}

static void test_call_roundtrip_through_transport(void **state)
{
    struct fixture *f = *state;
    start_server(f, 0, 0);
    struct tcp_transport *t = transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);

    struct raft_msg req = request_vote(7), reply;
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 2000), 0);
    assert_int_equal(reply.type, RAFT_MSG_REQUEST_VOTE_REPLY);
    assert_int_equal(reply.from, 1);
    assert_true(reply.u.rv_reply.term == 8);
    assert_int_equal(reply.u.rv_reply.vote_granted, 1);

    /* AppendEntries with entries, on the same connection. */
    uint8_t data[3000];
    memset(data, 0xab, sizeof data);
    struct raft_entry entries[3] = {
        { .term = 7, .type = RAFT_ENTRY_NOOP },
        { .term = 7, .type = RAFT_ENTRY_COMMAND, .len = 1000, .data = data },
        { .term = 7, .type = RAFT_ENTRY_COMMAND, .len = 2000, .data = data },
    };
    req = (struct raft_msg){ .type = RAFT_MSG_APPEND_ENTRIES };
    req.u.ae = (struct raft_append_entries){ .term = 7, .prev_log_index = 10,
                                             .n_entries = 3,
                                             .entries = entries };
    for (int i = 0; i < 20; i++) {
        assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 2000), 0);
        assert_int_equal(reply.type, RAFT_MSG_APPEND_ENTRIES_REPLY);
        assert_true(reply.u.ae_reply.match_index == 13);
        assert_true(reply.u.ae_reply.conflict_index == 3000);
    }

    req = (struct raft_msg){ .type = RAFT_MSG_INSTALL_SNAPSHOT };
    req.u.is = (struct raft_install_snapshot){ .term = 7, .offset = 100,
                                               .len = sizeof data,
                                               .data = data, .done = 1 };
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 2000), 0);
    assert_int_equal(reply.type, RAFT_MSG_INSTALL_SNAPSHOT_REPLY);
    assert_true(reply.u.is_reply.next_offset == 100 + sizeof data);
    assert_int_equal(warn_count(&f->log), 0);
    tcp_transport_destroy(t);
}

static struct raft_msg append_entries(uint64_t prev, uint32_t n,
                                      struct raft_entry *entries)
{
    struct raft_msg m = { .type = RAFT_MSG_APPEND_ENTRIES };
    m.u.ae = (struct raft_append_entries){ .term = 3, .prev_log_index = prev,
                                           .n_entries = n, .entries = entries };
    return m;
}

/* Pipelining: eight requests go out before any reply is taken, over one
 * connection (the server admits only one), and each ticket gets the reply
 * to its own request even when they are awaited in the reverse order. */
static void test_pipelined_requests_get_their_own_replies(void **state)
{
    struct fixture *f = *state;
    start_server(f, 1, 0);
    struct tcp_transport *t = transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);
    uint8_t data[100] = {0};
    struct raft_entry e[8];
    for (int i = 0; i < 8; i++)
        e[i] = (struct raft_entry){ .term = 3, .type = RAFT_ENTRY_COMMAND,
                                    .len = sizeof data, .data = data };

    for (int round = 0; round < 50; round++) {
        uint64_t ticket[8];
        for (uint32_t i = 0; i < 8; i++) {
            struct raft_msg req = append_entries(100 * i, i + 1, e);
            assert_int_equal(ops.send(ops.ctx, 1, &req, &ticket[i], 2000), 0);
        }
        for (int i = 7; i >= 0; i--) {
            struct raft_msg reply;
            assert_int_equal(ops.await(ops.ctx, 1, ticket[i], &reply, 2000), 0);
            assert_int_equal(reply.type, RAFT_MSG_APPEND_ENTRIES_REPLY);
            /* echo_raft: match = prev + n, conflict_index = bytes carried */
            assert_true(reply.u.ae_reply.match_index == 100u * i + i + 1);
            assert_true(reply.u.ae_reply.conflict_index == (i + 1) * sizeof data);
        }
    }
    assert_int_equal(atomic_load(&f->echo.calls), 400);
    assert_int_equal(warn_count(&f->log), 0);
    tcp_transport_destroy(t);
}

struct caller {
    struct raft_transport ops;
    uint64_t first_term;
    int wrong; /* replies that did not answer the caller's own request */
};

static void *call_many(void *arg)
{
    struct caller *c = arg;
    for (uint64_t k = 0; k < 300; k++) {
        struct raft_msg req = request_vote(c->first_term + k), reply;
        if (c->ops.call(c->ops.ctx, 1, &req, &reply, 5000) != 0 ||
            reply.u.rv_reply.term != c->first_term + k + 1)
            c->wrong++;
    }
    return NULL;
}

/* Several threads calling one peer at once share its connection: whichever
 * waits reads for all, and every reply reaches the thread that asked. */
static void test_concurrent_callers_share_one_connection(void **state)
{
    struct fixture *f = *state;
    start_server(f, 1, 0);
    struct tcp_transport *t = transport_to(f, f->addr);
    struct caller callers[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        callers[i] = (struct caller){ .ops = tcp_transport_ops(t),
                                      .first_term = 1000u * (i + 1) };
        assert_int_equal(pthread_create(&threads[i], NULL, call_many, &callers[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(callers[i].wrong, 0);
    }
    assert_int_equal(atomic_load(&f->echo.calls), 1200);
    tcp_transport_destroy(t);
}

/* A reply that does not come in time fails every request in flight on the
 * connection and closes it: the late replies are never taken for the
 * answers to requests sent afterwards. */
static void test_timeout_fails_every_request_in_flight_timing_sensitive(void **state)
{
    struct fixture *f = *state;
    f->echo.sleep_first_ms = 800;
    start_server(f, 0, 0);
    struct tcp_transport *t = transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg a = request_vote(1), b = request_vote(2), reply;
    uint64_t ta, tb;
    assert_int_equal(ops.send(ops.ctx, 1, &a, &ta, 2000), 0);
    assert_int_equal(ops.send(ops.ctx, 1, &b, &tb, 2000), 0);
    int64_t start = now_ms();
    assert_int_equal(ops.await(ops.ctx, 1, tb, &reply, 200), -ETIMEDOUT);
    assert_true(now_ms() - start < 700);
    assert_int_equal(ops.await(ops.ctx, 1, ta, &reply, 2000), -ETIMEDOUT);

    struct raft_msg c = request_vote(5);
    assert_int_equal(ops.call(ops.ctx, 1, &c, &reply, 3000), 0);
    assert_true(reply.u.rv_reply.term == 6);
    tcp_transport_destroy(t);
}

static void test_call_refuses_bad_peer_or_type(void **state)
{
    struct fixture *f = *state;
    struct tcp_transport *t = transport_to(f, "127.0.0.1:9");
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg req = request_vote(1), reply;
    assert_int_equal(ops.call(ops.ctx, 0, &req, &reply, 100), -EINVAL);
    assert_int_equal(ops.call(ops.ctx, 2, &req, &reply, 100), -EINVAL);
    req.type = RAFT_MSG_REQUEST_VOTE_REPLY;
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 100), -EINVAL);
    tcp_transport_destroy(t);

    char *bad[2] = { "127.0.0.1:1", "no-port" };
    assert_int_equal(tcp_transport_create(&t, 0, bad, 2, NULL, NULL), -EINVAL);
    assert_int_equal(tcp_transport_create(&t, 2, bad, 2, NULL, NULL), -EINVAL);
}

/* A port that was free a moment ago: bound by the kernel's choice, closed. */
static uint16_t unused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_call_to_closed_port_fails_fast_timing_sensitive(void **state)
{
    struct fixture *f = *state;
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)unused_port());
    struct tcp_transport *t = transport_to(f, addr);
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg req = request_vote(1), reply;

    for (int i = 0; i < 5; i++) {
        int64_t start = now_ms();
        int rc = ops.call(ops.ctx, 1, &req, &reply, 3000);
        assert_true(rc < 0);
        assert_true(now_ms() - start < 1000);
    }
    /* Repeated failures are logged once, not once per attempt. */
    assert_int_equal(warn_count(&f->log), 1);
    tcp_transport_destroy(t);
}

static void test_reconnects_after_server_restart(void **state)
{
    struct fixture *f = *state;
    start_server(f, 0, 0);
    struct tcp_transport *t = transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg req = request_vote(1), reply;
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 2000), 0);

    struct tcp_server_options opt = {
        .host = "127.0.0.1", .port = f->port, .handler = echo_handler,
        .handler_ctx = &f->echo, .log = capture_log, .log_ctx = &f->log };
    tcp_server_stop(f->server);
    f->server = NULL;
    assert_true(ops.call(ops.ctx, 1, &req, &reply, 500) < 0);
    assert_int_equal(tcp_server_start(&f->server, &opt), 0);
    /* Within a few backoff periods the transport reconnects by itself. */
    int rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) {
        rc = ops.call(ops.ctx, 1, &req, &reply, 500);
        if (rc != 0)
            sleep_ms(20);
    }
    assert_int_equal(rc, 0);
    assert_true(reply.u.rv_reply.term == 2);
    tcp_transport_destroy(t);
}

static void test_call_times_out_when_handler_is_slow_timing_sensitive(
    void **state)
{
    struct fixture *f = *state;
    f->echo.sleep_first_ms = 800;
    start_server(f, 0, 0);
    struct tcp_transport *t = transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);

    struct raft_msg req = request_vote(1), reply;
    int64_t start = now_ms();
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 200), -ETIMEDOUT);
    int64_t took = now_ms() - start;
    assert_true(took >= 150 && took < 700);

    /* The late answer to term 1 must not be taken for the answer to term 5:
     * the timed-out connection was closed, the next call uses a new one. */
    req = request_vote(5);
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 3000), 0);
    assert_true(reply.u.rv_reply.term == 6);
    tcp_transport_destroy(t);
}

static void test_garbage_frame_closes_only_that_connection(void **state)
{
    struct fixture *f = *state;
    start_server(f, 0, 0);
    int good = tcp_dial(f->addr, 2000);
    assert_true(good >= 0);
    assert_int_equal(client_get(good, "before", 2000), 0);

    /* A well-framed message of an unknown version. */
    int bad = tcp_dial(f->addr, 2000);
    assert_true(bad >= 0);
    static const uint8_t wrong_version[] = { 0, 0, 0, 6, 9, 1, 0, 0, 0, 0 };
    send_raw(bad, wrong_version, sizeof wrong_version);
    assert_true(wait_closed(bad, 2000) >= 0);
    close(bad);
    assert_int_equal(warn_count(&f->log), 1);
    assert_non_null(strstr(f->log.last_warn, "127.0.0.1"));

    /* A length field no frame can have. */
    bad = tcp_dial(f->addr, 2000);
    assert_true(bad >= 0);
    static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 1, 1 };
    send_raw(bad, huge, sizeof huge);
    assert_true(wait_closed(bad, 2000) >= 0);
    close(bad);
    assert_int_equal(warn_count(&f->log), 2);

    /* The other connection, and new ones, are served as before. */
    assert_int_equal(client_get(good, "after", 2000), 0);
    close(good);
    struct tcp_transport *t = transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg req = request_vote(3), reply;
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 2000), 0);
    tcp_transport_destroy(t);
}

static void test_half_frame_then_silence_is_closed_timing_sensitive(
    void **state)
{
    struct fixture *f = *state;
    start_server(f, 0, 300);
    int fd = tcp_dial(f->addr, 2000);
    assert_true(fd >= 0);
    /* A whole header announcing 100 bytes, then 3 of them, then nothing. */
    static const uint8_t half[] = { 0, 0, 0, 100, WIRE_VERSION, 1, 0, 0, 0, 0,
                                    1, 2, 3 };
    send_raw(fd, half, sizeof half);
    int64_t took = wait_closed(fd, 3000);
    assert_true(took >= 200 && took < 2000);
    close(fd);
    assert_int_equal(warn_count(&f->log), 1);
}

static void test_connection_limit_refuses_extra_connections(void **state)
{
    struct fixture *f = *state;
    start_server(f, 2, 0);
    int a = tcp_dial(f->addr, 2000), b = tcp_dial(f->addr, 2000);
    assert_true(a >= 0 && b >= 0);
    /* Answered, so both are being served (and counted) by now. */
    assert_int_equal(client_get(a, "a", 2000), 0);
    assert_int_equal(client_get(b, "b", 2000), 0);

    for (int i = 0; i < 3; i++) {
        int extra = tcp_dial(f->addr, 2000);
        assert_true(extra >= 0); /* accepted by the kernel... */
        assert_true(wait_closed(extra, 2000) >= 0); /* ...then closed */
        close(extra);
    }
    assert_int_equal(warn_count(&f->log), 1); /* one line, not three */
    assert_int_equal(client_get(a, "a again", 2000), 0);

    /* Once a connection ends, its slot is free again. */
    close(b);
    int rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) {
        int c = tcp_dial(f->addr, 2000);
        assert_true(c >= 0);
        rc = client_get(c, "c", 2000);
        close(c);
        if (rc != 0)
            sleep_ms(20);
    }
    assert_int_equal(rc, 0);
    close(a);
}

/* Connections that sit idle do not lock the server: at the limit, the one
 * idle longest (over half a second) is closed to admit a new one, while a
 * connection that keeps asking is never the one closed. */
static void test_connection_limit_evicts_the_longest_idle(void **state)
{
    struct fixture *f = *state;
    start_server(f, 2, 0);
    int idle = tcp_dial(f->addr, 2000), busy = tcp_dial(f->addr, 2000);
    assert_true(idle >= 0 && busy >= 0);
    assert_int_equal(client_get(idle, "idle", 2000), 0);
    for (int i = 0; i < 12; i++) { /* 600 ms during which busy keeps asking */
        assert_int_equal(client_get(busy, "busy", 2000), 0);
        sleep_ms(50);
    }
    int fresh = tcp_dial(f->addr, 2000);
    assert_true(fresh >= 0);
    assert_int_equal(client_get(fresh, "fresh", 2000), 0); /* admitted */
    assert_true(wait_closed(idle, 2000) >= 0);                /* made room */
    assert_int_equal(client_get(busy, "busy again", 2000), 0); /* untouched */
    close(idle);
    close(busy);
    close(fresh);
}

static void test_stop_with_idle_connections_is_prompt_timing_sensitive(
    void **state)
{
    struct fixture *f = *state;
    start_server(f, 0, 0); /* idle timeout: the default 30 s */
    int fds[5];
    for (int i = 0; i < 5; i++) {
        fds[i] = tcp_dial(f->addr, 2000);
        assert_true(fds[i] >= 0);
        assert_int_equal(client_get(fds[i], "k", 2000), 0);
    }
    int64_t start = now_ms();
    tcp_server_stop(f->server);
    f->server = NULL;
    assert_true(now_ms() - start < 1000);
    for (int i = 0; i < 5; i++) {
        assert_true(wait_closed(fds[i], 1000) >= 0);
        close(fds[i]);
    }
}

static void test_start_on_busy_port_fails_cleanly(void **state)
{
    struct fixture *f = *state;
    start_server(f, 0, 0);
    struct tcp_server_options opt = { .host = "127.0.0.1", .port = f->port,
                                      .handler = echo_handler,
                                      .handler_ctx = &f->echo };
    struct tcp_server *second = NULL;
    assert_int_equal(tcp_server_start(&second, &opt), -EADDRINUSE);
    assert_null(second);
    opt.handler = NULL;
    assert_int_equal(tcp_server_start(&second, &opt), -EINVAL);
}

static void test_parse_addr(void **state)
{
    (void)state;
    char host[64];
    uint16_t port;
    assert_int_equal(tcp_parse_addr("127.0.0.1:8000", host, sizeof host,
                                    &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8000);
    assert_int_equal(tcp_parse_addr("[::1]:65535", host, sizeof host, &port),
                     0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 65535);
    assert_int_equal(tcp_parse_addr("localhost:1", host, sizeof host, &port),
                     0);

    static const char *bad[] = { "", "host", "host:", ":80", "host:0",
                                 "host:65536", "host:80x", "host:-1",
                                 "::1:80", "[::1]80", "[::1:80",
                                 "host:123456" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tcp_parse_addr(bad[i], host, sizeof host, &port),
                         -EINVAL);
    assert_int_equal(tcp_parse_addr("abcdef:1", host, 6, &port), -EINVAL);
    assert_int_equal(tcp_dial("nonsense", 100), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_call_roundtrip_through_transport,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_deferred_replies_keep_their_order, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_pipelined_requests_get_their_own_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_concurrent_callers_share_one_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_timeout_fails_every_request_in_flight_timing_sensitive,
            setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_refuses_bad_peer_or_type,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_call_to_closed_port_fails_fast_timing_sensitive, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_reconnects_after_server_restart,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_call_times_out_when_handler_is_slow_timing_sensitive, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_garbage_frame_closes_only_that_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_half_frame_then_silence_is_closed_timing_sensitive, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_connection_limit_refuses_extra_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_connection_limit_evicts_the_longest_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_requests_in_one_write_and_byte_by_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_stop_with_idle_connections_is_prompt_timing_sensitive, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_start_on_busy_port_fails_cleanly,
                                        setup, teardown),
        cmocka_unit_test(test_parse_addr),
    };
    return cmocka_run_group_tests_name("unit_tcp", tests, NULL, NULL);
}
