/*
 * unit_proxy.c - the fault-injecting proxy (tests/chaos/proxy.h) against a
 * small echo server in the same process: it forwards faithfully, a cut
 * resets open connections and blackholes new ones, a heal restores
 * forwarding, a delay holds data for as long as asked (in order), a reset
 * reaches both ends, and a dead target looks dead.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/tcp_socket.h"
#include "tests/chaos/proxy.h"
#include "tests/support/clock.h"

/* ---- an echo server: every byte it reads, it writes back ---- */

struct echo {
    int listen_fd;
    uint16_t port;
    int stop[2];
    pthread_t thread;
    char addr[32];
};

static void *echo_conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    close(fd);
    return NULL;
}

static void *echo_main(void *arg)
{
    struct echo *e = arg;
    for (;;) {
        struct pollfd fds[2] = {{.fd = e->listen_fd, .events = POLLIN},
                                {.fd = e->stop[0], .events = POLLIN}};
        if (poll(fds, 2, -1) < 0)
            continue;
        if (fds[1].revents)
            return NULL;
        int fd = accept(e->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        if (pthread_create(&t, NULL, echo_conn_main, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
}

static struct echo *echo_start(void)
{
    struct echo *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    e->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(e->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(e->listen_fd, 64), 0);
    assert_int_equal(getsockname(e->listen_fd, (struct sockaddr *)&a, &len), 0);
    snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%u", ntohs(a.sin_port));
    assert_int_equal(pipe(e->stop), 0);
    assert_int_equal(pthread_create(&e->thread, NULL, echo_main, e), 0);
    return e;
}

static void echo_stop(struct echo *e)
{
    assert_int_equal(write(e->stop[1], "", 1), 1);
    pthread_join(e->thread, NULL);
    close(e->listen_fd);
    close(e->stop[0]);
    close(e->stop[1]);
    free(e);
}

/* ---- a client side ---- */

static int dial(const char *addr)
{
    int fd = tcp_dial(addr, 2000);
    assert_true(fd >= 0);
    return fd;
}

/* Sends n bytes and reads them back within timeout_ms. Returns the bytes
 * read back, or -errno (-ECONNRESET, -ETIMEDOUT). */
static long echo_roundtrip(int fd, size_t n, unsigned timeout_ms)
{
    uint8_t *out = malloc(n), *in = malloc(n);
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(i * 31 + 7);
    uint64_t deadline = test_now_ms() + timeout_ms;
    size_t sent = 0, got = 0;
    long rc = 0;
    while (got < n) {
        uint64_t now = test_now_ms();
        if (now >= deadline) {
            rc = -ETIMEDOUT;
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
        if (poll(&p, 1, (int)(deadline - now)) <= 0)
            continue;
        if ((p.revents & POLLOUT) && sent < n) {
            ssize_t w = send(fd, out + sent, n - sent, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN) {
                rc = -errno;
                break;
            }
            sent += w > 0 ? (size_t)w : 0;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, in + got, n - got, 0);
            if (r == 0) {
                rc = -ECONNRESET;
                break;
            }
            if (r < 0 && errno != EAGAIN) {
                rc = -errno;
                break;
            }
            got += r > 0 ? (size_t)r : 0;
        }
    }
    if (rc == 0)
        rc = memcmp(in, out, n) == 0 ? (long)n : -EILSEQ;
    free(out);
    free(in);
    return rc;
}

struct rig {
    struct echo *echo;
    struct chaos_proxy *proxy;
};

static int setup(void **state)
{
    struct rig *r = calloc(1, sizeof(*r));
    r->echo = echo_start();
    if (chaos_proxy_start(&r->proxy, "127.0.0.1:0", r->echo->addr, 42) != 0)
        return -1;
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    struct rig *r = *state;
    chaos_proxy_stop(r->proxy);
    echo_stop(r->echo);
    free(r);
    return 0;
}

static void test_forwards_bytes_both_ways(void **state)
{
    struct rig *r = *state;
    int fd = dial(chaos_proxy_addr(r->proxy));
    assert_int_equal(echo_roundtrip(fd, 10, 2000), 10);
    assert_int_equal(echo_roundtrip(fd, 3 << 20, 5000), 3 << 20); /* more than a chunk */
    close(fd);
    /* The pumps count a chunk just after writing it: wait for the last. */
    struct chaos_proxy_stats st;
    uint64_t t0 = test_now_ms();
    do
        chaos_proxy_get_stats(r->proxy, &st);
    while (st.bytes_forwarded < 2 * (10 + (3 << 20)) && test_now_ms() - t0 < 2000);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.bytes_forwarded, 2 * (10 + (3 << 20)));
}

static void test_cut_resets_open_connections_and_blackholes_new_ones(void **state)
{
    struct rig *r = *state;
    int open_fd = dial(chaos_proxy_addr(r->proxy));
    assert_int_equal(echo_roundtrip(open_fd, 100, 2000), 100);
    chaos_proxy_cut(r->proxy);
    assert_true(chaos_proxy_is_cut(r->proxy));
    long rc = echo_roundtrip(open_fd, 100, 2000);
    assert_true(rc == -ECONNRESET || rc == -EPIPE);
    close(open_fd);
    /* A new connection is accepted, then nothing comes back. */
    int fd = dial(chaos_proxy_addr(r->proxy));
    assert_int_equal(echo_roundtrip(fd, 100, 300), -ETIMEDOUT);
    struct chaos_proxy_stats st;
    uint64_t t0 = test_now_ms();
    do
        chaos_proxy_get_stats(r->proxy, &st);
    while (st.bytes_dropped < 100 && test_now_ms() - t0 < 2000);
    assert_int_equal(st.blackholed, 1);
    assert_int_equal(st.bytes_dropped, 100);
    /* Healing resets the blackholed connection and forwards new ones. */
    chaos_proxy_heal(r->proxy);
    rc = echo_roundtrip(fd, 10, 2000);
    assert_true(rc == -ECONNRESET || rc == -EPIPE);
    close(fd);
    fd = dial(chaos_proxy_addr(r->proxy));
    assert_int_equal(echo_roundtrip(fd, 100, 2000), 100);
    close(fd);
}

static void test_delay_holds_data_in_order(void **state)
{
    struct rig *r = *state;
    chaos_proxy_set_delay(r->proxy, 100, 150);
    int fd = dial(chaos_proxy_addr(r->proxy));
    uint64_t t0 = test_now_ms();
    assert_int_equal(echo_roundtrip(fd, 1000, 3000), 1000);
    uint64_t took = test_now_ms() - t0;
    /* Both directions are delayed: at least 2 x 100 ms, and not absurdly
     * more (a loaded machine may add some). */
    assert_true(took >= 200);
    assert_true(took < 2000);
    /* Many small writes in a row arrive whole and in order. */
    assert_int_equal(echo_roundtrip(fd, 200000, 5000), 200000);
    chaos_proxy_set_delay(r->proxy, 0, 0);
    t0 = test_now_ms();
    assert_int_equal(echo_roundtrip(fd, 10, 2000), 10);
    assert_true(test_now_ms() - t0 < 100);
    close(fd);
}

static void test_reset_some_reaches_both_ends(void **state)
{
    struct rig *r = *state;
    int fds[10];
    for (int i = 0; i < 10; i++) {
        fds[i] = dial(chaos_proxy_addr(r->proxy));
        assert_int_equal(echo_roundtrip(fds[i], 10, 2000), 10);
    }
    assert_int_equal(chaos_proxy_reset_some(r->proxy, 0), 0);
    assert_int_equal(chaos_proxy_reset_some(r->proxy, 100), 10);
    for (int i = 0; i < 10; i++) {
        long rc = echo_roundtrip(fds[i], 10, 2000);
        assert_true(rc == -ECONNRESET || rc == -EPIPE);
        close(fds[i]);
    }
    /* The proxy reaps them; nothing stays open. */
    uint64_t t0 = test_now_ms();
    struct chaos_proxy_stats st;
    do {
        test_sleep_ms(10);
        chaos_proxy_get_stats(r->proxy, &st);
    } while (st.open > 0 && test_now_ms() - t0 < 2000);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.resets, 10);
}

static void test_dead_target_looks_dead(void **state)
{
    (void)state;
    /* A port nobody listens on: bind one, close it. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    char target[32];
    snprintf(target, sizeof(target), "127.0.0.1:%u", ntohs(a.sin_port));
    struct chaos_proxy *p;
    assert_int_equal(chaos_proxy_start(&p, "127.0.0.1:0", target, 1), 0);
    int fd = dial(chaos_proxy_addr(p));
    long rc = echo_roundtrip(fd, 10, 2000);
    assert_true(rc == -ECONNRESET || rc == -EPIPE);
    close(fd);
    struct chaos_proxy_stats st;
    chaos_proxy_get_stats(p, &st);
    assert_int_equal(st.refused, 1);
    chaos_proxy_stop(p);
}

static void test_bad_addresses_are_refused(void **state)
{
    (void)state;
    struct chaos_proxy *p;
    assert_int_equal(chaos_proxy_start(&p, "127.0.0.1:0", "nonsense", 1), -EINVAL);
    assert_int_equal(chaos_proxy_start(&p, "127.0.0.1", "127.0.0.1:1", 1), -EINVAL);
    assert_int_equal(chaos_proxy_start(&p, ":0", "127.0.0.1:1", 1), -EINVAL);
}

/* Stopping the proxy with connections open (forwarding, blackholed, and
 * with data held back by a delay) joins everything and resets the clients. */
static void test_stop_with_everything_in_flight(void **state)
{
    struct rig *r = *state;
    int a = dial(chaos_proxy_addr(r->proxy));
    assert_int_equal(echo_roundtrip(a, 10, 2000), 10);
    chaos_proxy_set_delay(r->proxy, 5000, 5000);
    assert_int_equal(echo_roundtrip(a, 10, 100), -ETIMEDOUT); /* held for 5 s */
    chaos_proxy_cut(r->proxy);
    int b = dial(chaos_proxy_addr(r->proxy));
    assert_int_equal(echo_roundtrip(b, 10, 100), -ETIMEDOUT);
    uint64_t t0 = test_now_ms();
    chaos_proxy_stop(r->proxy);
    assert_true(test_now_ms() - t0 < 1000);
    r->proxy = NULL;
    assert_true(echo_roundtrip(b, 10, 1000) < 0);
    close(a);
    close(b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_forwards_bytes_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_resets_open_connections_and_blackholes_new_ones,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_holds_data_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_some_reaches_both_ends, setup, teardown),
        cmocka_unit_test(test_dead_target_looks_dead),
        cmocka_unit_test(test_bad_addresses_are_refused),
        cmocka_unit_test_setup_teardown(test_stop_with_everything_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests_name("proxy: the chaos suites' fault-injecting TCP proxy",
                                       tests, NULL, NULL);
}
