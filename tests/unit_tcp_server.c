/*
 * unit_tcp_server.c - the TCP server (net/tcp_server.c, net/tcp_conn.c)
 * over loopback.
 *
 * Each test starts its own echo server (tests/support/tcp_helpers.h) on a
 * free port of 127.0.0.1 and talks to it through tcp_roundtrip() or a raw
 * socket that sends whatever bytes the test wants: framing, deferred
 * replies, garbage, silence, the connection limit and stopping. Tests whose
 * names end in _timing_sensitive assert elapsed wall-clock time, with
 * generous bounds.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/support/tcp_helpers.h"

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

/* Connects, sends two requests in one write, and expects their answers in
 * order. Returns the connection. */
static int two_requests_in_one_write(struct tcp_test_fixture *f)
{
    int fd = tcp_dial(f->addr, 2000);
    assert_true(fd >= 0);
    uint8_t buf[512];
    size_t a = encode_get(buf, sizeof buf, "first");
    size_t b = encode_get(buf + a, sizeof buf - a, "second");
    tcp_test_send_raw(fd, buf, a + b);
    expect_echo(fd, "first");
    expect_echo(fd, "second");
    return fd;
}

/* The server reads whatever has arrived: two requests in one segment are
 * both answered, in order, and a request trickling in byte by byte is
 * answered once whole. */
static void test_requests_in_one_write_and_byte_by_byte(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 0, 0);
    int fd = two_requests_in_one_write(f);
    uint8_t buf[512];
    size_t c = encode_get(buf, sizeof buf, "slowly");
    for (size_t i = 0; i < c; i++) {
        tcp_test_send_raw(fd, buf + i, 1);
        tcp_test_sleep_ms(2);
    }
    expect_echo(fd, "slowly");
    assert_int_equal(tcp_test_client_get(fd, "and again", 2000), 0);
    close(fd);
    assert_int_equal(tcp_test_warn_count(&f->log), 0);
}

/* A reply deferred to another thread: the next request on the connection,
 * already received, is handled only once that reply is out, so replies keep
 * the order of their requests; a client that leaves while its reply is
 * pending costs nothing but that reply. */
static void test_deferred_replies_keep_their_order(void **state)
{
    struct tcp_test_fixture *f = *state;
    f->echo.defer_ms = 40;
    tcp_test_start_server(f, 0, 0);
    int fd = two_requests_in_one_write(f);
    uint8_t buf[512];
    size_t c = encode_get(buf, sizeof buf, "gone");
    tcp_test_send_raw(fd, buf, c);
    tcp_test_sleep_ms(5);
    close(fd);
    int n = atomic_load(&f->echo.n_repliers);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++)
        pthread_join(f->echo.repliers[i], NULL);
    assert_int_equal(tcp_test_warn_count(&f->log), 0);
}

static void test_garbage_frame_closes_only_that_connection(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 0, 0);
    int good = tcp_dial(f->addr, 2000);
    assert_true(good >= 0);
    assert_int_equal(tcp_test_client_get(good, "before", 2000), 0);

    /* A well-framed message of an unknown version. */
    int bad = tcp_dial(f->addr, 2000);
    assert_true(bad >= 0);
    static const uint8_t wrong_version[] = { 0, 0, 0, 6, 9, 1, 0, 0, 0, 0 };
    tcp_test_send_raw(bad, wrong_version, sizeof wrong_version);
    assert_true(tcp_test_wait_closed(bad, 2000) >= 0);
    close(bad);
    assert_int_equal(tcp_test_warn_count(&f->log), 1);
    assert_non_null(strstr(f->log.last_warn, "127.0.0.1"));

    /* A length field no frame can have. */
    bad = tcp_dial(f->addr, 2000);
    assert_true(bad >= 0);
    static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 1, 1 };
    tcp_test_send_raw(bad, huge, sizeof huge);
    assert_true(tcp_test_wait_closed(bad, 2000) >= 0);
    close(bad);
    assert_int_equal(tcp_test_warn_count(&f->log), 2);

    /* The other connection, and new ones, are served as before. */
    assert_int_equal(tcp_test_client_get(good, "after", 2000), 0);
    close(good);
    struct tcp_transport *t = tcp_test_transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg req = tcp_test_request_vote(3), reply;
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 2000), 0);
    tcp_transport_destroy(t);
}

static void test_half_frame_then_silence_is_closed_timing_sensitive(
    void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 0, 300);
    int fd = tcp_dial(f->addr, 2000);
    assert_true(fd >= 0);
    /* A whole header announcing 100 bytes, then 3 of them, then nothing. */
    static const uint8_t half[] = { 0, 0, 0, 100, WIRE_VERSION, 1, 0, 0, 0, 0,
                                    1, 2, 3 };
    tcp_test_send_raw(fd, half, sizeof half);
    int64_t took = tcp_test_wait_closed(fd, 3000);
    assert_true(took >= 200 && took < 2000);
    close(fd);
    assert_int_equal(tcp_test_warn_count(&f->log), 1);
}

static void test_connection_limit_refuses_extra_connections(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 2, 0);
    int a = tcp_dial(f->addr, 2000), b = tcp_dial(f->addr, 2000);
    assert_true(a >= 0 && b >= 0);
    /* Answered, so both are being served (and counted) by now. */
    assert_int_equal(tcp_test_client_get(a, "a", 2000), 0);
    assert_int_equal(tcp_test_client_get(b, "b", 2000), 0);

    for (int i = 0; i < 3; i++) {
        int extra = tcp_dial(f->addr, 2000);
        assert_true(extra >= 0); /* accepted by the kernel... */
        /* ...then closed */
        assert_true(tcp_test_wait_closed(extra, 2000) >= 0);
        close(extra);
    }
    assert_int_equal(tcp_test_warn_count(&f->log), 1); /* one line, not three */
    assert_int_equal(tcp_test_client_get(a, "a again", 2000), 0);

    /* Once a connection ends, its slot is free again. */
    close(b);
    int rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) {
        int c = tcp_dial(f->addr, 2000);
        assert_true(c >= 0);
        rc = tcp_test_client_get(c, "c", 2000);
        close(c);
        if (rc != 0)
            tcp_test_sleep_ms(20);
    }
    assert_int_equal(rc, 0);
    close(a);
}

/* Connections that sit idle do not lock the server: at the limit, the one
 * idle longest (over half a second) is closed to admit a new one, while a
 * connection that keeps asking is never the one closed. */
static void test_connection_limit_evicts_the_longest_idle(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 2, 0);
    int idle = tcp_dial(f->addr, 2000), busy = tcp_dial(f->addr, 2000);
    assert_true(idle >= 0 && busy >= 0);
    assert_int_equal(tcp_test_client_get(idle, "idle", 2000), 0);
    for (int i = 0; i < 12; i++) { /* 600 ms during which busy keeps asking */
        assert_int_equal(tcp_test_client_get(busy, "busy", 2000), 0);
        tcp_test_sleep_ms(50);
    }
    int fresh = tcp_dial(f->addr, 2000);
    assert_true(fresh >= 0);
    /* fresh is admitted, idle made room for it, busy is untouched. */
    assert_int_equal(tcp_test_client_get(fresh, "fresh", 2000), 0);
    assert_true(tcp_test_wait_closed(idle, 2000) >= 0);
    assert_int_equal(tcp_test_client_get(busy, "busy again", 2000), 0);
    close(idle);
    close(busy);
    close(fresh);
}

static void test_stop_with_idle_connections_is_prompt_timing_sensitive(
    void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 0, 0); /* idle timeout: the default 30 s */
    int fds[5];
    for (int i = 0; i < 5; i++) {
        fds[i] = tcp_dial(f->addr, 2000);
        assert_true(fds[i] >= 0);
        assert_int_equal(tcp_test_client_get(fds[i], "k", 2000), 0);
    }
    int64_t start = tcp_test_now_ms();
    tcp_server_stop(f->server);
    f->server = NULL;
    assert_true(tcp_test_now_ms() - start < 1000);
    for (int i = 0; i < 5; i++) {
        assert_true(tcp_test_wait_closed(fds[i], 1000) >= 0);
        close(fds[i]);
    }
}

static void test_start_on_busy_port_fails_cleanly(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 0, 0);
    struct tcp_server_options opt = tcp_test_server_options(f, f->port);
    struct tcp_server *second = NULL;
    assert_int_equal(tcp_server_start(&second, &opt), -EADDRINUSE);
    assert_null(second);
    opt.handler = NULL;
    assert_int_equal(tcp_server_start(&second, &opt), -EINVAL);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_deferred_replies_keep_their_order,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_garbage_frame_closes_only_that_connection,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_half_frame_then_silence_is_closed_timing_sensitive,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_connection_limit_refuses_extra_connections,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_connection_limit_evicts_the_longest_idle,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_requests_in_one_write_and_byte_by_byte,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_stop_with_idle_connections_is_prompt_timing_sensitive,
            tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_start_on_busy_port_fails_cleanly,
            tcp_test_setup, tcp_test_teardown),
    };
    return cmocka_run_group_tests_name("unit_tcp_server", tests, NULL, NULL);
}
