/*
 * unit_tcp_members.c - the outbound transport follows the configuration
 * (net/tcp_transport.c, net/tcp_addrs.c): a member added later is dialed
 * at the address its configuration gives, a member that moved is dialed
 * at its new address and its old connection is closed by the next request
 * to it, a member that left is still reached at its last address (the
 * leader tells it it was removed), an id no configuration named is not
 * dialed, and a member listed with no address, or with another one, keeps
 * the one --peers gave.
 *
 * Servers are the echo server of tests/support/tcp_helpers.h, and a bare
 * socket that answers one RequestVote by hand, whose end of the
 * connection shows when the transport closes its own.
 */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/support/tcp_helpers.h"

static struct raft_membership members_at(uint32_t n, const uint32_t *ids, const char *const *addrs)
{
    struct raft_membership m = {.n = n};
    for (uint32_t i = 0; i < n; i++) {
        m.members[i] = (struct raft_member){.id = ids[i], .voter = true};
        snprintf(m.members[i].addr, RAFT_ADDR_MAX, "%s", addrs[i]);
    }
    return m;
}

static void test_member_added_later_is_dialed_at_its_address(void **state)
{
    struct tcp_test_fixture *f = *state;
    f->echo.id = 5;
    tcp_test_start_server(f, 0, 0);
    struct tcp_transport *t;
    /* A node started with --listen only: no peer known. */
    assert_int_equal(tcp_transport_create(&t, 9, NULL, 0, tcp_test_capture_log, &f->log), 0);
    struct raft_transport ops = tcp_transport_ops(t);
    assert_non_null(ops.set_members);
    struct raft_msg req = tcp_test_request_vote(3), reply;
    assert_int_equal(ops.call(ops.ctx, 5, &req, &reply, 500), -EHOSTUNREACH);

    const uint32_t ids[] = {5, 9};
    const char *addrs[] = {f->addr, "127.0.0.1:1"};
    struct raft_membership m = members_at(2, ids, addrs);
    ops.set_members(ops.ctx, &m);
    assert_int_equal(ops.call(ops.ctx, 5, &req, &reply, 2000), 0);
    assert_int_equal(reply.from, 5);
    assert_true(reply.u.rv_reply.term == 4);
    tcp_transport_destroy(t);
}

/* A member listed without an address (a configuration built from a count
 * of nodes) keeps the address --peers gave it. */
static void test_member_without_address_keeps_the_known_one(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 0, 0);
    struct tcp_transport *t = tcp_test_transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);
    const uint32_t ids[] = {0, 1};
    const char *addrs[] = {"", ""};
    struct raft_membership m = members_at(2, ids, addrs);
    ops.set_members(ops.ctx, &m);
    struct raft_msg req = tcp_test_request_vote(1), reply;
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 2000), 0);
    tcp_transport_destroy(t);
}

/* ---- a peer answered by hand ---- */

static int listen_loopback(char *addr, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(addr, cap, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    return fd;
}

/* Reads one whole frame from fd into buf; returns its size. */
static size_t read_frame(int fd, uint8_t *buf, size_t cap)
{
    size_t have = 0;
    long size = -1;
    while (size < 0 || have < (size_t)size) {
        ssize_t n = recv(fd, buf + have, cap - have, 0);
        assert_true(n > 0);
        have += (size_t)n;
        if (size < 0 && have >= 4)
            size = wire_frame_size(buf);
        assert_true(size < 0 || (size_t)size <= cap);
    }
    return (size_t)size;
}

/* Accepts the transport's connection, reads its RequestVote and answers
 * it as node `id`; returns the accepted socket, left open. */
static int answer_one_vote(int listener, uint32_t id)
{
    int fd = accept(listener, NULL, NULL);
    assert_true(fd >= 0);
    uint8_t buf[4096];
    size_t size = read_frame(fd, buf, sizeof buf);
    struct wire_msg req;
    assert_int_equal(wire_decode(buf, size, &req), 0);
    assert_int_equal(req.type, RAFT_MSG_REQUEST_VOTE);
    struct raft_msg r = {.type = RAFT_MSG_REQUEST_VOTE_REPLY, .from = id};
    r.u.rv_reply.term = req.u.raft.u.rv.term;
    struct wire_msg w;
    wire_from_raft(&w, &r);
    long n = wire_encode(&w, buf, sizeof buf);
    assert_true(n > 0);
    tcp_test_send_raw(fd, buf, (size_t)n);
    return fd;
}

/* --peers says how this node reaches n1; the configuration, written by a
 * leader that reaches n1 another way (through its own proxy, or across an
 * address translation), does not change it. */
static void test_address_from_peers_stays_when_a_configuration_gives_another(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 0, 0);
    struct tcp_transport *t = tcp_test_transport_to(f, f->addr);
    struct raft_transport ops = tcp_transport_ops(t);
    char leaders_view[32];
    int listener = listen_loopback(leaders_view, sizeof leaders_view);
    const uint32_t ids[] = {0, 1};
    const char *addrs[] = {"127.0.0.1:1", leaders_view};
    struct raft_membership m = members_at(2, ids, addrs);
    ops.set_members(ops.ctx, &m);
    struct raft_msg req = tcp_test_request_vote(1), reply;
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 2000), 0);
    assert_int_equal(atomic_load(&f->echo.calls), 1);
    close(listener);
    tcp_transport_destroy(t);
}

struct caller {
    struct raft_transport ops;
    uint64_t term;
    int rc;
    struct raft_msg reply;
};

static void *call_main(void *arg)
{
    struct caller *c = arg;
    struct raft_msg req = tcp_test_request_vote(c->term);
    c->rc = c->ops.call(c->ops.ctx, 1, &req, &c->reply, 3000);
    return NULL;
}

static void test_moved_member_is_dialed_anew_and_left_member_still_reached(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 0, 0); /* where n1 moves to */
    char old_addr[32];
    int listener = listen_loopback(old_addr, sizeof old_addr);
    /* n1 is known from a configuration, not from --peers. */
    struct tcp_transport *t;
    assert_int_equal(tcp_transport_create(&t, 0, NULL, 0, tcp_test_capture_log, &f->log), 0);
    const uint32_t ids[] = {0, 1};
    const char *first[] = {"127.0.0.1:1", old_addr};
    struct raft_membership m = members_at(2, ids, first);
    struct caller c = {.ops = tcp_transport_ops(t), .term = 7};
    c.ops.set_members(c.ops.ctx, &m);

    /* The first call goes to the old address, answered by hand. */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, call_main, &c), 0);
    int old_conn = answer_one_vote(listener, 1);
    pthread_join(th, NULL);
    assert_int_equal(c.rc, 0);
    assert_true(c.reply.u.rv_reply.term == 7);

    /* n1 moves: the next call reaches the echo server, and the connection
     * to the old address is closed on the way. */
    const char *moved[] = {"127.0.0.1:1", f->addr};
    m = members_at(2, ids, moved);
    c.ops.set_members(c.ops.ctx, &m);
    struct raft_msg req = tcp_test_request_vote(8), reply;
    assert_int_equal(c.ops.call(c.ops.ctx, 1, &req, &reply, 2000), 0);
    assert_true(reply.u.rv_reply.term == 9); /* the echo server's answer */
    assert_int_equal(atomic_load(&f->echo.calls), 1);
    assert_true(tcp_test_wait_closed(old_conn, 2000) >= 0);
    close(old_conn);

    /* n1 leaves the configuration: it keeps its last address, where the
     * leader tells it that it was removed (thesis §4.2.2). */
    m = members_at(1, ids, moved);
    c.ops.set_members(c.ops.ctx, &m);
    assert_int_equal(c.ops.call(c.ops.ctx, 1, &req, &reply, 2000), 0);
    assert_int_equal(atomic_load(&f->echo.calls), 2);
    close(listener);
    tcp_transport_destroy(t);
}

/* Addresses that are not host:port in a configuration are not taken: the
 * member keeps the address it had, and a warning names it. */
static void test_unusable_address_in_a_configuration_is_not_taken(void **state)
{
    struct tcp_test_fixture *f = *state;
    tcp_test_start_server(f, 0, 0);
    struct tcp_transport *t;
    assert_int_equal(tcp_transport_create(&t, 0, NULL, 0, tcp_test_capture_log, &f->log), 0);
    struct raft_transport ops = tcp_transport_ops(t);
    const uint32_t ids[] = {0, 1};
    const char *usable[] = {"", f->addr};
    struct raft_membership m = members_at(2, ids, usable);
    ops.set_members(ops.ctx, &m);
    const char *unusable[] = {"", "no-port-here"};
    m = members_at(2, ids, unusable);
    ops.set_members(ops.ctx, &m);
    assert_int_equal(tcp_test_warn_count(&f->log), 1);
    struct raft_msg req = tcp_test_request_vote(1), reply;
    assert_int_equal(ops.call(ops.ctx, 1, &req, &reply, 2000), 0);
    tcp_transport_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_member_added_later_is_dialed_at_its_address,
                                        tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(test_member_without_address_keeps_the_known_one,
                                        tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_address_from_peers_stays_when_a_configuration_gives_another, tcp_test_setup,
            tcp_test_teardown),
        cmocka_unit_test_setup_teardown(
            test_moved_member_is_dialed_anew_and_left_member_still_reached, tcp_test_setup,
            tcp_test_teardown),
        cmocka_unit_test_setup_teardown(test_unusable_address_in_a_configuration_is_not_taken,
                                        tcp_test_setup, tcp_test_teardown),
    };
    return cmocka_run_group_tests_name("unit: the transport follows the configuration", tests,
                                       NULL, NULL);
}
