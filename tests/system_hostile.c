/*
 * system_hostile.c - hostile input against a live `raft node` over TCP.
 *
 * A node's port is open to anyone who can reach it. Whatever arrives there
 * - malformed frames, lengths beyond the maximum, unknown types, half a
 * frame and then silence, hundreds of idle connections, messages claiming
 * to come from an id no node can have - may cost the sender its
 * connection, and nothing else: afterwards the node still answers
 * `client status`, the cluster still accepts puts, and the history of a
 * client load that ran through it all is linearizable.
 *
 * Runs the binary named by $RAFT_BIN (make test sets it). CHAOS_ONLY='*idle*'
 * runs the matching tests alone; CHAOS_SEED and CHAOS_TIME_SCALE work as in
 * system_chaos.c.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/cluster_id.h"
#include "net/hello.h"
#include "net/tcp_socket.h"
#include "net/wire.h"
#include "raft/raft.h"
#include "tests/chaos/scenario.h"
#include "tests/support/clock.h"

#define NODES 3
#define CLOSE_WAIT_MS 3000 /* how long the node may take to drop a bad connection */
#define HUGE_TERM 1000000000ull

/* ---- raw connections ---- */

static int dial(struct scenario *t, unsigned node)
{
    int fd = tcp_dial(t->c->addr[node], 2000);
    scenario_expect(t, fd >= 0, "cannot connect to n%u at %s: %s", node, t->c->addr[node],
                    fd < 0 ? strerror(-fd) : "");
    return fd;
}

/* Sends all of buf (the socket is non-blocking: waits for room). */
static int send_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, 2000) <= 0)
                return -ETIMEDOUT;
            continue;
        }
        if (n < 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

enum fate { STILL_OPEN, CLOSED };

/* Reads (and throws away) what the node sends for up to timeout_ms, and
 * says whether it closed the connection. *got counts the bytes it sent. */
static enum fate wait_for_close(int fd, unsigned timeout_ms, size_t *got)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    *got = 0;
    for (;;) {
        uint64_t now = test_now_ms();
        if (now >= deadline)
            return STILL_OPEN;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now)) <= 0)
            continue;
        uint8_t buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return CLOSED;
        if (n > 0)
            *got += (size_t)n;
    }
}

static size_t encode(const struct wire_msg *m, uint8_t *buf, size_t cap)
{
    long n = wire_encode(m, buf, cap);
    assert_true(n > 0);
    return (size_t)n;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The node answers status, promptly, on a fresh connection. */
static void answers_status(struct scenario *t, unsigned node, const char *after)
{
    struct client_reply r;
    int rc = chaos_cluster_status(t->c, node, 2000, &r);
    scenario_expect(t, rc == 0, "after %s, n%u does not answer status: %s", after, node,
                    strerror(-rc));
    scenario_expect(t, r.term < HUGE_TERM, "after %s, n%u is in term %llu: a hostile message "
                    "changed its state", after, node, (unsigned long long)r.term);
}

/* ---- frames ---- */

struct attack {
    const char *what;
    uint8_t bytes[96];
    size_t len;
};

static void vote_request(struct wire_msg *m, uint32_t from, uint64_t term)
{
    struct raft_msg r = {.type = RAFT_MSG_REQUEST_VOTE, .from = from};
    r.u.rv = (struct raft_request_vote){.term = term, .last_log_index = 1u << 30,
                                        .last_log_term = term};
    wire_from_raft(m, &r);
}

/* Frames that must cost the sender its connection: each is sent on a
 * fresh connection, which the node must close. */
static size_t make_attacks(struct attack *a, size_t cap, uint32_t self)
{
    size_t n = 0;
    struct wire_msg m;
    uint8_t buf[96];

    a[n] = (struct attack){.what = "an HTTP request"};
    memcpy(a[n].bytes, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    a[n++].len = 27;

    a[n] = (struct attack){.what = "a length beyond the maximum frame (4 GiB)", .len = 10};
    memset(a[n++].bytes, 0xff, 10);

    a[n] = (struct attack){.what = "a length just over the maximum frame", .len = 10};
    put_be32(a[n].bytes, WIRE_MAX_FRAME - 4 + 1);
    a[n].bytes[4] = WIRE_VERSION;
    a[n++].bytes[5] = RAFT_MSG_APPEND_ENTRIES;

    a[n] = (struct attack){.what = "a length too short for a header", .len = 6};
    put_be32(a[n++].bytes, 2);

    a[n] = (struct attack){.what = "a zero length", .len = 4};
    n++;

    vote_request(&m, 1, 5);
    size_t len = encode(&m, buf, sizeof(buf));
    a[n] = (struct attack){.what = "an unknown protocol version", .len = len};
    memcpy(a[n].bytes, buf, len);
    a[n++].bytes[4] = 99;

    a[n] = (struct attack){.what = "an unknown message type (99)", .len = len};
    memcpy(a[n].bytes, buf, len);
    a[n++].bytes[5] = 99;

    a[n] = (struct attack){.what = "a boolean that is neither 0 nor 1", .len = len};
    memcpy(a[n].bytes, buf, len);
    a[n++].bytes[len - 1 - 8] = 7; /* the flags byte, before the message id */

    a[n] = (struct attack){.what = "a frame with a trailing byte", .len = len + 1};
    memcpy(a[n].bytes, buf, len);
    put_be32(a[n++].bytes, (uint32_t)(len + 1 - 4));

    /* An AppendEntries announcing four billion entries in a small frame:
     * the decoder must refuse before allocating. */
    struct raft_msg ae = {.type = RAFT_MSG_APPEND_ENTRIES, .from = 1};
    ae.u.ae.term = 1;
    wire_from_raft(&m, &ae);
    len = encode(&m, buf, sizeof(buf));
    a[n] = (struct attack){.what = "an AppendEntries claiming 2^32-1 entries", .len = len};
    memcpy(a[n].bytes, buf, len);
    put_be32(a[n++].bytes + len - 4 - 8, 0xffffffffu); /* n_entries, before the id */

    /* A client request whose key length runs past the frame. */
    m = (struct wire_msg){.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT};
    m.u.request = (struct client_request){.op = CLIENT_GET, .client_id = 1, .key_len = 1,
                                          .key = (uint8_t *)"k"};
    len = encode(&m, buf, sizeof(buf));
    a[n] = (struct attack){.what = "a client request whose key runs past the frame",
                           .len = len};
    memcpy(a[n].bytes, buf, len);
    put_be32(a[n++].bytes + WIRE_HEADER + 17, 5000);

    /* Replies sent as if they were requests. */
    static const uint8_t reply_types[] = {RAFT_MSG_REQUEST_VOTE_REPLY,
                                          RAFT_MSG_APPEND_ENTRIES_REPLY,
                                          RAFT_MSG_INSTALL_SNAPSHOT_REPLY};
    static const char *reply_names[] = {"a RequestVote reply sent as a request",
                                        "an AppendEntries reply sent as a request",
                                        "an InstallSnapshot reply sent as a request"};
    for (int i = 0; i < 3; i++) {
        struct raft_msg r = {.type = reply_types[i], .from = 1};
        wire_from_raft(&m, &r);
        len = encode(&m, buf, sizeof(buf));
        a[n] = (struct attack){.what = reply_names[i], .len = len};
        memcpy(a[n++].bytes, buf, len);
    }
    m = (struct wire_msg){.type = WIRE_CLIENT_REPLY, .from = 1};
    len = encode(&m, buf, sizeof(buf));
    a[n] = (struct attack){.what = "a client reply sent as a request", .len = len};
    memcpy(a[n++].bytes, buf, len);

    /* Senders no node can be (ids run from 0 to RAFT_MAX_ID), or the node
     * itself. (An id within that range but outside the configuration is
     * heard, as thesis §4.1 has it: a leader adding this node, or one that
     * joined after this node's log ends.) */
    vote_request(&m, RAFT_MAX_ID + 1, HUGE_TERM);
    len = encode(&m, buf, sizeof(buf));
    a[n] = (struct attack){.what = "a RequestVote in a huge term from node 64, an id no node "
                                   "can have", .len = len};
    memcpy(a[n++].bytes, buf, len);
    vote_request(&m, 0xfffffffeu, HUGE_TERM);
    len = encode(&m, buf, sizeof(buf));
    a[n] = (struct attack){.what = "a RequestVote from node 4294967294", .len = len};
    memcpy(a[n++].bytes, buf, len);
    vote_request(&m, self, HUGE_TERM);
    len = encode(&m, buf, sizeof(buf));
    a[n] = (struct attack){.what = "a RequestVote claiming to come from the node itself",
                           .len = len};
    memcpy(a[n++].bytes, buf, len);
    ae = (struct raft_msg){.type = RAFT_MSG_APPEND_ENTRIES, .from = RAFT_MAX_ID + 1};
    ae.u.ae = (struct raft_append_entries){.term = HUGE_TERM, .leader_commit = HUGE_TERM};
    wire_from_raft(&m, &ae);
    len = encode(&m, buf, sizeof(buf));
    a[n] = (struct attack){.what = "an AppendEntries in a huge term from node 64, an id no "
                                   "node can have", .len = len};
    memcpy(a[n++].bytes, buf, len);
    struct raft_msg is = {.type = RAFT_MSG_INSTALL_SNAPSHOT, .from = 1000};
    is.u.is = (struct raft_install_snapshot){.term = HUGE_TERM, .last_index = HUGE_TERM,
                                             .last_term = HUGE_TERM, .total = 4, .len = 4,
                                             .data = (uint8_t *)"evil", .done = 1};
    wire_from_raft(&m, &is);
    len = encode(&m, buf, sizeof(buf));
    a[n] = (struct attack){.what = "an InstallSnapshot in a huge term from node 1000",
                           .len = len};
    memcpy(a[n++].bytes, buf, len);
    assert_true(n <= cap);
    return n;
}

/* ---- the tests ---- */

/* Says hello as node `from` of the cluster (its id made from its name, as
 * the nodes make it), so that what follows passes the door and meets the
 * checks behind it; the node must welcome it. */
static void greet(struct scenario *t, int fd, uint32_t from)
{
    struct hello h = {.type = WIRE_HELLO, .from = from};
    assert_int_equal(cluster_id_derive(&h.cluster, t->c->cluster_name, NULL, 0), 0);
    uint8_t buf[HELLO_REPLY_SIZE];
    long n = hello_encode(&h, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(send_all(fd, buf, (size_t)n), 0);
    size_t have = 0;
    while (have < HELLO_REPLY_SIZE) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_true(poll(&p, 1, 2000) == 1);
        ssize_t r = recv(fd, buf + have, HELLO_REPLY_SIZE - have, 0);
        assert_true(r > 0);
        have += (size_t)r;
    }
    struct hello reply;
    assert_int_equal(hello_decode(buf, have, &reply), 0);
    scenario_expect(t, reply.verdict == CLUSTER_WELCOME, "a hello with the cluster's id "
                    "was refused (verdict %u)", reply.verdict);
}

/* The sender a frame claims, for greeting as it. */
static uint32_t claimed_sender(const struct attack *a)
{
    return a->len >= WIRE_HEADER ? wire_be32(a->bytes + 6) : 1;
}

/* Every malformed or unauthorised frame, against the leader and against a
 * follower, each on a fresh connection, sent as it is and again after a
 * welcomed hello as its claimed sender (so that it meets the checks behind
 * the hello): each costs its connection, and nothing else. */
static void test_bad_frames_cost_only_their_connection(void **state)
{
    struct scenario *t = *state;
    scenario_start_cluster(t, NODES, 200, 400, 50);
    uint64_t term;
    int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
    scenario_start_clients(t, 3, 3000);
    scenario_progress(t, 5, "before the attack");
    unsigned targets[2] = {(unsigned)leader, ((unsigned)leader + 1) % NODES};
    for (int k = 0; k < 2; k++) {
        unsigned node = targets[k];
        struct attack a[32];
        size_t n = make_attacks(a, 32, node);
        for (size_t i = 0; i < 2 * n; i++) {
            const struct attack *at = &a[i % n];
            int fd = dial(t, node);
            if (i >= n)
                greet(t, fd, claimed_sender(at));
            int rc = send_all(fd, at->bytes, at->len);
            size_t got = 0;
            unsigned wait = CLOSE_WAIT_MS * t->scale;
            enum fate f = rc == 0 ? wait_for_close(fd, wait, &got) : CLOSED;
            close(fd);
            const char *after = i >= n ? " after a hello" : "";
            scenario_expect(t, f == CLOSED, "n%u kept the connection open for %u ms after %s%s",
                            node, wait, at->what, after);
            scenario_expect(t, got == 0, "n%u answered %s%s with %zu bytes", node, at->what,
                            after, got);
            answers_status(t, node, at->what);
        }
        printf("    n%u (%s): %zu kinds of bad frame, with and without a hello first, each "
               "closed its connection; the node still answers\n", node,
               k == 0 ? "leader" : "follower", n);
    }
    /* The leader was never disturbed: same leader, same term. */
    uint64_t now_term;
    int now = scenario_leader(t, chaos_cluster_all(t->c), 0, &now_term);
    scenario_expect(t, now == leader && now_term == term,
                    "the leader moved from n%d T%llu to n%d T%llu during the attack", leader,
                    (unsigned long long)term, now, (unsigned long long)now_term);
    scenario_progress(t, 5, "after the attack");
    scenario_finish(t);
}

/* A request the node can decode but does not understand is answered, not
 * punished: a client request with an unknown operation gets BAD_REQUEST and
 * the connection stays usable. */
static void test_unknown_client_operation_is_answered(void **state)
{
    struct scenario *t = *state;
    scenario_start_cluster(t, NODES, 200, 400, 50);
    int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, NULL);
    int fd = dial(t, (unsigned)leader);
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT}, reply;
    req.u.request = (struct client_request){.op = 77, .client_id = 5, .seq = 1};
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rc = tcp_roundtrip(fd, &req, &reply, &buf, &cap, 2000);
    scenario_expect(t, rc == 0 && reply.type == WIRE_CLIENT_REPLY &&
                           reply.u.reply.status == CLIENT_BAD_REQUEST,
                    "an unknown client operation got rc %d, type %u, status %u", rc,
                    reply.type, reply.u.reply.status);
    /* The same connection still serves. */
    req.u.request = (struct client_request){.op = CLIENT_STATUS};
    rc = tcp_roundtrip(fd, &req, &reply, &buf, &cap, 2000);
    scenario_expect(t, rc == 0 && reply.u.reply.status == CLIENT_OK,
                    "status on the same connection afterwards: rc %d", rc);
    /* A put without a session or a key is refused the same way. */
    req.u.request = (struct client_request){.op = CLIENT_PUT, .value_len = 1,
                                            .value = (uint8_t *)"v"};
    rc = tcp_roundtrip(fd, &req, &reply, &buf, &cap, 2000);
    scenario_expect(t, rc == 0 && reply.u.reply.status == CLIENT_BAD_REQUEST,
                    "a put with no session and no key: rc %d, status %u", rc,
                    reply.u.reply.status);
    free(buf);
    close(fd);
    scenario_shutdown(t);
}

/* Half a frame, then silence; a header announcing a large frame, then a
 * trickle; both held open while the cluster works around them. */
static void test_half_frames_and_silence(void **state)
{
    struct scenario *t = *state;
    scenario_start_cluster(t, NODES, 200, 400, 50);
    int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, NULL);
    scenario_start_clients(t, 3, 3000);
    scenario_progress(t, 5, "before the attack");
    enum { HELD = 30 };
    int fds[NODES][HELD];
    uint8_t frame[64];
    struct wire_msg m;
    vote_request(&m, 1, 1);
    size_t len = encode(&m, frame, sizeof(frame));
    uint8_t *big = calloc(1, 1u << 20);
    assert_non_null(big);
    for (unsigned node = 0; node < NODES; node++) {
        for (int i = 0; i < HELD; i++) {
            fds[node][i] = dial(t, node);
            size_t part;
            switch (i % 3) {
            case 0: part = 2; break;        /* half a length field */
            case 1: part = len - 5; break;  /* most of a frame */
            default: part = 0; break;       /* a large frame's start, below */
            }
            if (part) {
                scenario_expect(t, send_all(fds[node][i], frame, part) == 0,
                                "cannot send half a frame to n%u", node);
                continue;
            }
            /* 8 MiB announced, 1 MiB sent: the node holds a buffer for it. */
            put_be32(big, WIRE_MAX_FRAME - 4);
            big[4] = WIRE_VERSION;
            big[5] = RAFT_MSG_APPEND_ENTRIES;
            scenario_expect(t, send_all(fds[node][i], big, 1u << 20) == 0,
                            "cannot send a megabyte to n%u", node);
        }
    }
    free(big);
    /* While they hang: every node answers, and writes go on. */
    for (unsigned node = 0; node < NODES; node++)
        answers_status(t, node, "half frames held open");
    scenario_progress(t, 20, "while half frames are held open on every node");
    uint64_t term;
    int now = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
    printf("    %d connections per node hold half a frame (a third of them 1 MiB into an "
           "8 MiB frame); all nodes answer, 20 writes acknowledged, leader n%d (was n%d)\n",
           HELD, now, leader);
    for (unsigned node = 0; node < NODES; node++)
        for (int i = 0; i < HELD; i++)
            close(fds[node][i]);
    for (unsigned node = 0; node < NODES; node++)
        answers_status(t, node, "the half frames were abandoned");
    scenario_finish(t);
}

/* Hundreds of connections that never send a byte, against a follower: the
 * node's connection limit turns the excess away at once; the cluster keeps
 * committing (the leader's connection to it was opened before); a new
 * connection half a second later is served, the longest idle one making
 * room for it; and once they go, the follower answers again. */
static void test_hundreds_of_idle_connections(void **state)
{
    struct scenario *t = *state;
    scenario_start_cluster(t, NODES, 200, 400, 50);
    uint64_t term;
    int leader = scenario_leader(t, chaos_cluster_all(t->c), 0, &term);
    unsigned f = ((unsigned)leader + 1) % NODES;
    scenario_start_clients(t, 3, 3000);
    scenario_progress(t, 5, "before the attack");
    enum { IDLE = 400 };
    int *fds = calloc(IDLE, sizeof(int));
    assert_non_null(fds);
    unsigned opened = 0;
    for (unsigned i = 0; i < IDLE; i++) {
        fds[i] = tcp_dial(t->c->addr[f], 2000);
        opened += fds[i] >= 0;
    }
    /* Give the node a moment to accept them all and turn away the excess. */
    test_sleep_ms(500);
    unsigned dropped = 0;
    for (unsigned i = 0; i < IDLE; i++) {
        size_t got;
        if (fds[i] >= 0 && wait_for_close(fds[i], 1, &got) == CLOSED)
            dropped++;
    }
    struct client_reply r;
    int during = chaos_cluster_status(t->c, f, 1000, &r);
    scenario_expect(t, during == 0, "follower n%u refuses a new connection while idle "
                    "connections hold every slot", f);
    scenario_progress(t, 20, "while a follower holds hundreds of idle connections");
    uint64_t t_term;
    int still = scenario_leader(t, chaos_cluster_all(t->c), 0, &t_term);
    printf("    %u idle connections to follower n%u: %u turned away by its connection limit; "
           "status on a new connection %s while they are held; 20 writes acknowledged; leader "
           "n%d T%llu (was n%d T%llu)\n",
           opened, f, dropped, during == 0 ? "answered" : "refused", still,
           (unsigned long long)t_term, leader, (unsigned long long)term);
    for (unsigned i = 0; i < IDLE; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    /* Once they are gone, the follower answers again and keeps up. */
    uint64_t t0 = test_now_ms();
    int rc;
    while ((rc = chaos_cluster_status(t->c, f, 500, &r)) != 0 && test_now_ms() - t0 < 5000)
        test_sleep_ms(50);
    scenario_expect(t, rc == 0, "follower n%u does not answer 5 s after the idle connections "
                    "closed", f);
    printf("    after they closed, n%u answered within %llu ms\n", f,
           (unsigned long long)(test_now_ms() - t0));
    scenario_finish(t);
}

/* Random bytes, 1 to 2000 of them, on 300 fresh connections, some closed
 * at once and some left open a moment. */
static void test_random_garbage(void **state)
{
    struct scenario *t = *state;
    scenario_start_cluster(t, NODES, 200, 400, 50);
    scenario_leader(t, chaos_cluster_all(t->c), 0, NULL);
    scenario_start_clients(t, 3, 3000);
    scenario_progress(t, 5, "before the attack");
    uint8_t buf[2000];
    unsigned closed = 0;
    for (unsigned i = 0; i < 300; i++) {
        unsigned node = (unsigned)(scenario_rand(t) % NODES);
        size_t len = 1 + (size_t)(scenario_rand(t) % sizeof(buf));
        for (size_t k = 0; k < len; k++)
            buf[k] = (uint8_t)scenario_rand(t);
        if (i % 2 == 0 && len >= 6) {
            /* Half of them look like a frame of the right size. */
            put_be32(buf, (uint32_t)(len - 4));
            buf[4] = WIRE_VERSION;
            buf[5] = (uint8_t)(1 + scenario_rand(t) % 17);
        }
        int fd = dial(t, node);
        send_all(fd, buf, len);
        size_t got;
        if (i % 3 == 0 && wait_for_close(fd, 200, &got) == CLOSED)
            closed++;
        close(fd);
    }
    for (unsigned node = 0; node < NODES; node++)
        answers_status(t, node, "300 connections of random bytes");
    scenario_progress(t, 10, "after 300 connections of random bytes");
    printf("    300 connections of random bytes (%u of those watched were closed by the node "
           "within 200 ms); all nodes answer\n", closed);
    scenario_finish(t);
}

#define SCENARIO(f) cmocka_unit_test_setup_teardown(f, scenario_setup, scenario_teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (getenv("CHAOS_ONLY"))
        cmocka_set_test_filter(getenv("CHAOS_ONLY")); /* e.g. CHAOS_ONLY='*bridge*' */
    const struct CMUnitTest tests[] = {
        SCENARIO(test_bad_frames_cost_only_their_connection),
        SCENARIO(test_unknown_client_operation_is_answered),
        SCENARIO(test_half_frames_and_silence),
        SCENARIO(test_hundreds_of_idle_connections),
        SCENARIO(test_random_garbage),
    };
    return cmocka_run_group_tests_name("system: hostile input against live nodes", tests, NULL,
                                       NULL);
}
