/*
 * unit_bench.c - the sessions of `raft bench` against scripted servers:
 * they follow a follower's leader hint, retry a put that got no answer
 * with the same sequence number (so that it takes effect once), and count
 * an operation with no answer within the timeout as an error; a mix of
 * operations is read from --mix's text, drawn in its shares and reported
 * per operation. And kv_client_status against such a server.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "kv/bench.h"
#include "kv/client.h"
#include "net/tcp_server.h"

#define MAX_SEEN 200000
#define CLIENTS 3

/* A node that answers by script: a follower names the leader; the leader
 * drops the connection on the first request of each session (as a leader
 * that crashed before answering would), then answers OK. It records every
 * put it was sent. */
struct fake_node {
    struct tcp_server *server;
    char addr[32];
    const char *leader_addr; /* a follower's hint; NULL for the leader */
    pthread_mutex_t mu;
    unsigned requests;
    unsigned by_op[16];   /* the leader's requests by client op code */
    uint64_t known[64];   /* the sessions heard from, whatever they sent first */
    unsigned n_known;
    bool cas_expects_its_value; /* every cas expected what it writes */
    struct {
        uint64_t client, seq;
    } seen[MAX_SEEN];
    unsigned n_seen;
};

/* Whether the session was heard from before; remembers it. */
static bool seen_before_locked(struct fake_node *f, uint64_t client)
{
    for (unsigned i = 0; i < f->n_known; i++)
        if (f->known[i] == client)
            return true;
    if (f->n_known < 64)
        f->known[f->n_known++] = client;
    return false;
}

static int fake_handler(void *ctx, const struct wire_msg *req, struct wire_msg *reply,
                        struct tcp_conn *conn)
{
    (void)conn;
    struct fake_node *f = ctx;
    memset(reply, 0, sizeof(*reply));
    reply->type = WIRE_CLIENT_REPLY;
    if (req->type != WIRE_CLIENT_REQUEST)
        return -EPROTO;
    const struct client_request *q = &req->u.request;
    pthread_mutex_lock(&f->mu);
    f->requests++;
    bool first = !seen_before_locked(f, q->client_id);
    if (!f->leader_addr && !first && q->op < 16)
        f->by_op[q->op]++;
    if (q->op == CLIENT_CAS && (q->expected_len != q->value_len ||
                                memcmp(q->expected, q->value, q->value_len) != 0))
        f->cas_expects_its_value = false;
    if (!f->leader_addr && q->op == CLIENT_PUT && f->n_seen < MAX_SEEN) {
        f->seen[f->n_seen].client = q->client_id;
        f->seen[f->n_seen].seq = q->seq;
        f->n_seen++;
    }
    pthread_mutex_unlock(&f->mu);
    if (f->leader_addr) {
        reply->u.reply.status = CLIENT_NOT_LEADER;
        reply->u.reply.leader_hint = 1;
        reply->u.reply.leader_addr = (uint8_t *)f->leader_addr;
        reply->u.reply.leader_addr_len = (uint32_t)strlen(f->leader_addr);
        return 0;
    }
    if (first)
        return -ECONNRESET; /* no answer: the connection is closed */
    reply->u.reply.status = CLIENT_OK;
    return 0;
}

static void fake_start(struct fake_node *f, const char *leader_addr)
{
    f->leader_addr = leader_addr;
    f->cas_expects_its_value = true;
    pthread_mutex_init(&f->mu, NULL);
    struct tcp_server_options opt = {.host = "127.0.0.1", .handler = fake_handler,
                                     .handler_ctx = f};
    assert_int_equal(tcp_server_start(&f->server, &opt), 0);
    snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%u", (unsigned)tcp_server_port(f->server));
}

static void fake_stop(struct fake_node *f)
{
    tcp_server_stop(f->server);
    pthread_mutex_destroy(&f->mu);
}

static void test_sessions_follow_hints_and_retry_puts_with_their_number(void **state)
{
    (void)state;
    struct fake_node *leader = calloc(1, sizeof(*leader));
    struct fake_node *follower = calloc(1, sizeof(*follower));
    assert_non_null(leader);
    assert_non_null(follower);
    fake_start(leader, NULL);
    fake_start(follower, leader->addr);
    char *addrs[] = {follower->addr}; /* the leader is only learnt from the hint */
    struct bench_options opt = {.addrs = addrs, .n_addrs = 1, .clients = CLIENTS,
                                .seconds = 0.1, .value_size = 8, .keys = 10,
                                .timeout_ms = 5000};
    struct bench_report report;
    assert_int_equal(bench_run(&opt, &report), 0);
    const struct bench_result r = report.total;
    fake_stop(follower);
    fake_stop(leader);
    printf("    %llu puts acknowledged, %llu errors; the follower answered %u requests\n",
           (unsigned long long)r.ops, (unsigned long long)r.errors, follower->requests);
    assert_true(r.ops > 0);
    assert_int_equal(r.errors, 0);
    assert_true(follower->requests >= CLIENTS);

    /* Each session's puts reached the leader numbered 1, 1 (the retry of
     * the one dropped), 2, 3, ...: the retry kept its number, and no
     * number was skipped or sent twice otherwise. */
    uint64_t clients[CLIENTS];
    unsigned n_clients = 0;
    for (unsigned i = 0; i < leader->n_seen; i++) {
        uint64_t c = leader->seen[i].client;
        unsigned k = 0;
        while (k < n_clients && clients[k] != c)
            k++;
        if (k == n_clients) {
            assert_true(n_clients < CLIENTS);
            clients[n_clients++] = c;
        }
    }
    assert_int_equal(n_clients, CLIENTS);
    unsigned acknowledged = 0;
    for (unsigned k = 0; k < n_clients; k++) {
        uint64_t want = 1;
        unsigned nth = 0;
        for (unsigned i = 0; i < leader->n_seen; i++) {
            if (leader->seen[i].client != clients[k])
                continue;
            if (nth++ == 1)
                want = 1; /* the retry of the dropped put */
            if (leader->seen[i].seq != want)
                fail_msg("session %u: put %u reached the leader numbered %llu, expected %llu",
                         k, nth, (unsigned long long)leader->seen[i].seq,
                         (unsigned long long)want);
            want++;
        }
        assert_true(nth >= 2);
        acknowledged += nth - 1;
    }
    /* Every put the leader answered is one the bench counted. */
    assert_int_equal(acknowledged, r.ops);
    free(leader);
    free(follower);
}

/* A node that accepts connections (the kernel does, from its backlog) but
 * never reads them: every operation must end as an error at its timeout,
 * and the run must end on time. */
static void test_unanswered_operations_are_errors_at_their_timeout(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    char *addrs[] = {addr};
    struct bench_options opt = {.addrs = addrs, .n_addrs = 1, .clients = 2, .seconds = 0.5,
                                .value_size = 8, .keys = 10, .timeout_ms = 200};
    struct bench_report report;
    uint64_t t0 = bench_now_ns();
    assert_int_equal(bench_run(&opt, &report), 0);
    const struct bench_result r = report.total;
    double took_ms = (double)(bench_now_ns() - t0) / 1e6;
    close(fd);
    printf("    %llu errors, %llu ops, in %.0f ms\n", (unsigned long long)r.errors,
           (unsigned long long)r.ops, took_ms);
    assert_int_equal(r.ops, 0);
    /* Each session: timeouts at about 200 and 400 ms, and the one under
     * way at 0.5 s ends at about 600 ms (a slow machine may start it late). */
    assert_true(r.errors >= 4 && r.errors <= 6);
    assert_true(took_ms >= 550 && took_ms < 2000);
}

/* kv_client_status reads the reply into a buffer of its own and frees it:
 * the reply it hands back must not point into that buffer. A node that
 * answers with a leader's address (as a follower redirects) shows it. */
static void test_status_reply_points_into_no_freed_buffer(void **state)
{
    (void)state;
    struct fake_node *follower = calloc(1, sizeof(*follower));
    assert_non_null(follower);
    fake_start(follower, "127.0.0.1:7");
    struct client_reply r;
    assert_int_equal(kv_client_status(follower->addr, 2000, &r), 0);
    fake_stop(follower);
    free(follower);
    assert_int_equal(r.status, CLIENT_NOT_LEADER);
    assert_null(r.leader_addr);
    assert_int_equal(r.leader_addr_len, 0);
    assert_null(r.value);
}

/* A client given one follower only (not the cluster in id order): the
 * follower's hint that n0 leads must take it to n0's address, not back to
 * the follower it was given first. */
static void test_a_hint_from_the_only_node_given_leads_elsewhere(void **state)
{
    (void)state;
    char *given[] = {"127.0.0.1:9101"};
    struct kv_nodes k;
    assert_int_equal(kv_nodes_init(&k, given, 1, 0), 0);
    struct client_reply r = {.status = CLIENT_NOT_LEADER, .leader_hint = 0,
                             .leader_addr = (uint8_t *)"127.0.0.1:9100",
                             .leader_addr_len = 14};
    assert_true(kv_nodes_move_on(&k, &r));
    assert_string_equal(k.addrs[k.target], "127.0.0.1:9100");
    kv_nodes_free(&k);
}

/* ---- the mix ---- */

static void test_mix_is_read_or_refused_in_one_sentence(void **state)
{
    (void)state;
    struct bench_mix m;
    char why[512];
    assert_int_equal(bench_mix_choose("put=50,get=30,cas=10,delete=5,list=5", 0, &m, why,
                                      sizeof(why)), 0);
    const double want[BENCH_N_OPS] = {50, 30, 10, 5, 5};
    for (int i = 0; i < BENCH_N_OPS; i++)
        assert_true(m.percent[i] == want[i]);
    assert_int_equal(bench_mix_choose("list=100", 0, &m, why, sizeof(why)), 0);
    assert_true(m.percent[BENCH_OP_LIST] == 100 && m.percent[BENCH_OP_PUT] == 0);
    /* Without --mix: puts, and gets as --read-ratio says. */
    assert_int_equal(bench_mix_choose(NULL, 0.25, &m, why, sizeof(why)), 0);
    assert_true(m.percent[BENCH_OP_GET] == 25 && m.percent[BENCH_OP_PUT] == 75);

    const struct {
        const char *mix;
        const char *sentence;
    } bad[] = {
        {"put=50,get=30", "--mix percents must add up to 100; 'put=50,get=30' adds up to 80"},
        {"put=50,scan=50", "--mix must be OP=PERCENT pairs separated by commas, OP one of put, "
                           "get, cas, delete, list, each PERCENT an integer from 0 to 100, "
                           "adding up to 100; got 'scan=50' in 'put=50,scan=50'"},
        {"put=5x,get=95", "--mix must give each operation an integer percent from 0 to 100; got "
                          "'5x' for put"},
        {"put=-1", "--mix must give each operation an integer percent from 0 to 100; got '-1' "
                   "for put"},
        {"get=50,get=50", "--mix must name each operation once; 'get=50,get=50' names get "
                          "twice"},
        {"put=100,", "--mix must be OP=PERCENT pairs separated by commas, OP one of put, get, "
                     "cas, delete, list, each PERCENT an integer from 0 to 100, adding up to "
                     "100; got '' in 'put=100,'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        assert_int_equal(bench_mix_choose(bad[i].mix, 0, &m, why, sizeof(why)), -EINVAL);
        assert_string_equal(why, bad[i].sentence);
    }
    assert_int_equal(bench_mix_choose("put=100", 0.5, &m, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "--mix and --read-ratio cannot be given together"));
}

/* Uniform draws land in each operation in proportion to its share. */
static void test_mix_draws_follow_the_shares(void **state)
{
    (void)state;
    struct bench_mix m;
    char why[256];
    assert_int_equal(bench_mix_choose("put=50,get=30,delete=20", 0, &m, why, sizeof(why)), 0);
    unsigned n[BENCH_N_OPS] = {0};
    for (int i = 0; i < 1000; i++)
        n[bench_mix_pick(&m, (i + 0.5) / 1000)]++;
    assert_int_equal(n[BENCH_OP_PUT], 500);
    assert_int_equal(n[BENCH_OP_GET], 300);
    assert_int_equal(n[BENCH_OP_CAS], 0);
    assert_int_equal(n[BENCH_OP_DELETE], 200);
    assert_int_equal(n[BENCH_OP_LIST], 0);
    struct bench_mix none = {{0}};
    assert_int_equal(bench_mix_pick(&none, 0.7), BENCH_OP_PUT);
}

/* A mixed run sends each kind of request and reports each apart; the
 * kinds add up to the total. */
static void test_a_mixed_run_reports_each_operation(void **state)
{
    (void)state;
    struct fake_node *leader = calloc(1, sizeof(*leader));
    assert_non_null(leader);
    fake_start(leader, NULL);
    char *addrs[] = {leader->addr};
    struct bench_options opt = {.addrs = addrs, .n_addrs = 1, .clients = CLIENTS,
                                .seconds = 0.2, .value_size = 8, .keys = 100,
                                .timeout_ms = 5000};
    char why[256];
    assert_int_equal(bench_mix_choose("put=40,get=20,cas=20,list=20", 0, &opt.mix, why,
                                      sizeof(why)), 0);
    struct bench_report r;
    assert_int_equal(bench_run(&opt, &r), 0);
    fake_stop(leader);
    uint64_t sum = 0;
    for (int i = 0; i < BENCH_N_OPS; i++) {
        printf("    %-6s %llu ops, %llu errors\n", bench_op_name((enum bench_op)i),
               (unsigned long long)r.by_op[i].ops, (unsigned long long)r.by_op[i].errors);
        assert_int_equal(r.by_op[i].errors, 0);
        assert_true((r.by_op[i].ops > 0) == (opt.mix.percent[i] > 0));
        sum += r.by_op[i].ops;
    }
    assert_int_equal(sum, r.total.ops);
    assert_int_equal(r.total.errors, 0);
    assert_int_equal(leader->by_op[CLIENT_PUT], r.by_op[BENCH_OP_PUT].ops);
    assert_int_equal(leader->by_op[CLIENT_GET], r.by_op[BENCH_OP_GET].ops);
    assert_int_equal(leader->by_op[CLIENT_CAS], r.by_op[BENCH_OP_CAS].ops);
    assert_int_equal(leader->by_op[CLIENT_LIST], r.by_op[BENCH_OP_LIST].ops);
    assert_int_equal(leader->by_op[CLIENT_DELETE], 0);
    assert_true(leader->cas_expects_its_value);
    free(leader);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sessions_follow_hints_and_retry_puts_with_their_number),
        cmocka_unit_test(test_unanswered_operations_are_errors_at_their_timeout),
        cmocka_unit_test(test_status_reply_points_into_no_freed_buffer),
        cmocka_unit_test(test_a_hint_from_the_only_node_given_leads_elsewhere),
        cmocka_unit_test(test_mix_is_read_or_refused_in_one_sentence),
        cmocka_unit_test(test_mix_draws_follow_the_shares),
        cmocka_unit_test(test_a_mixed_run_reports_each_operation),
    };
    return cmocka_run_group_tests_name("unit: the sessions of raft bench", tests, NULL, NULL);
}
