/*
 * unit_tcp_transport.c - the outbound TCP transport (net/tcp_transport.c)
 * and the address helpers (net/tcp_socket.c), over loopback.
 *
 * Each test starts its own echo server (tests/support/tcp_helpers.h) on a
 * free port of 127.0.0.1 and calls it through the Raft transport: single
 * calls, pipelined ones, several threads at once, timeouts, refused
 * connections and a restarted peer. Tests whose names end in
 * _timing_sensitive assert elapsed wall-clock time, with generous bounds.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/support/tcp_helpers.h"

static void test_call_roundtrip_through_transport(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 0, 0);
    struct tcp_transport *t = tcp_test_transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);

    struct raft_msg req = tcp_test_request_vote(7), reply;
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
    assert_int_equal(tcp_test_warn_count(&f->log), 0);
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
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 1, 0);
    struct tcp_transport *t = tcp_test_transport_to(f, f->addr);
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
    assert_int_equal(tcp_test_warn_count(&f->log), 0);
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
        struct raft_msg req = tcp_test_request_vote(c->first_term + k), reply;
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
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 1, 0);
    struct tcp_transport *t = tcp_test_transport_to(f, f->addr);
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
    struct tcp_test_fixture *f = *state;
    f->echo.sleep_first_ms = 800;
    tcp_test_start_server(f, 0, 0);
    struct tcp_transport *t = tcp_test_transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg a = tcp_test_request_vote(1);
    struct raft_msg b = tcp_test_request_vote(2), reply;
    uint64_t ta, tb;
    assert_int_equal(ops.send(ops.ctx, 1, &a, &ta, 2000), 0);
    assert_int_equal(ops.send(ops.ctx, 1, &b, &tb, 2000), 0);
    int64_t start = tcp_test_now_ms();
    assert_int_equal(ops.await(ops.ctx, 1, tb, &reply, 200), -ETIMEDOUT);
    assert_true(tcp_test_now_ms() - start < 700);
    assert_int_equal(ops.await(ops.ctx, 1, ta, &reply, 2000), -ETIMEDOUT);

    struct raft_msg c = tcp_test_request_vote(5);
    assert_int_equal(ops.call(ops.ctx, 1, &c, &reply, 3000), 0);
    assert_true(reply.u.rv_reply.term == 6);
    tcp_transport_destroy(t);
}

static void test_call_refuses_bad_peer_or_type(void **state)
{
    struct tcp_test_fixture *f = *state;
    struct tcp_transport *t = tcp_test_transport_to(f, "127.0.0.1:9");
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg req = tcp_test_request_vote(1), reply;
    assert_int_equal(ops.call(ops.ctx, 0, &req, &reply, 100), -EINVAL);
    assert_int_equal(ops.call(ops.ctx, RAFT_MAX_ID + 1, &req, &reply, 100), -EINVAL);
    /* An id no configuration gave an address: nobody to dial. */
    assert_int_equal(ops.call(ops.ctx, 2, &req, &reply, 100), -EHOSTUNREACH);
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
    struct tcp_test_fixture *f = *state;
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)unused_port());
    struct tcp_transport *t = tcp_test_transport_to(f, addr);
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg req = tcp_test_request_vote(1), reply;

    for (int i = 0; i < 5; i++) {
        int64_t start = tcp_test_now_ms();
        int rc = ops.call(ops.ctx, 1, &req, &reply, 3000);
        assert_true(rc < 0);
        assert_true(tcp_test_now_ms() - start < 1000);
    }
    /* Repeated failures are logged once, not once per attempt. */
    assert_int_equal(tcp_test_warn_count(&f->log), 1);
    tcp_transport_destroy(t);
}

static void test_reconnects_after_server_restart(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 0, 0);
    struct tcp_transport *t = tcp_test_transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg req = tcp_test_request_vote(1), reply;
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 2000), 0);

    struct tcp_server_options opt = tcp_test_server_options(f, f->port);
    tcp_server_stop(f->server);
    f->server = NULL;
    assert_true(ops.call(ops.ctx, 1, &req, &reply, 500) < 0);
    assert_int_equal(tcp_server_start(&f->server, &opt), 0);
    /* Within a few backoff periods the transport reconnects by itself. */
    int rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) {
        rc = ops.call(ops.ctx, 1, &req, &reply, 500);
        if (rc != 0)
            tcp_test_sleep_ms(20);
    }
    assert_int_equal(rc, 0);
    assert_true(reply.u.rv_reply.term == 2);
    tcp_transport_destroy(t);
}

static void test_call_times_out_when_handler_is_slow_timing_sensitive(
    void **state)
{
    struct tcp_test_fixture *f = *state;
    f->echo.sleep_first_ms = 800;
    tcp_test_start_server(f, 0, 0);
    struct tcp_transport *t = tcp_test_transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);

    struct raft_msg req = tcp_test_request_vote(1), reply;
    int64_t start = tcp_test_now_ms();
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 200), -ETIMEDOUT);
    int64_t took = tcp_test_now_ms() - start;
    assert_true(took >= 150 && took < 700);

    /* The late answer to term 1 must not be taken for the answer to term 5:
     * the timed-out connection was closed, the next call uses a new one. */
    req = tcp_test_request_vote(5);
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 3000), 0);
    assert_true(reply.u.rv_reply.term == 6);
    tcp_transport_destroy(t);
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
        cmocka_unit_test_setup_teardown(
            test_call_roundtrip_through_transport,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_pipelined_requests_get_their_own_replies,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_concurrent_callers_share_one_connection,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_timeout_fails_every_request_in_flight_timing_sensitive,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_call_refuses_bad_peer_or_type,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_call_to_closed_port_fails_fast_timing_sensitive,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_reconnects_after_server_restart,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_call_times_out_when_handler_is_slow_timing_sensitive,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test(test_parse_addr),
    };
    return cmocka_run_group_tests_name("unit_tcp_transport", tests, NULL, NULL);
}
