/*
 * system_identity.c - who may be a member, seen from real `raft node`
 * processes.
 *
 * An impostor: node 1's certificate (and key, stolen or copied) in a
 * process at node 2's address, claiming to be node 2. Nodes 0 and 1 run
 * with TLS; the leader dials node 2's address, sees node 1's certificate
 * there, and sends nothing; the impostor dials them as node 2 with node
 * 1's certificate, and every message it sends is refused. It never
 * receives an entry, and the two real nodes keep committing. Our own
 * binary refuses to start that way at all (exit 4); the impostor here is
 * the network library run by the test, as a modified binary would be.
 *
 * Another cluster: cluster A's nodes, in a higher term than cluster B's,
 * restarted with one of B's nodes in their --peers (a copy-paste slip).
 * A's leader dials it; the hello carries A's cluster id, B's node refuses
 * it, and B keeps its leader and its term: nothing of A's reached B's Raft,
 * and nothing of B's reached A's. A node of A started with B's --peers
 * on its own data directory does not start at all (exit 4).
 *
 * Runs the binary named by $RAFT_BIN (make test sets it).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "kv/client.h"
#include "net/tcp_server.h"
#include "net/tcp_socket.h"
#include "net/tcp_transport.h"
#include "net/tls.h"
#include "net/tls_certs.h"
#include "tests/chaos/cluster.h"
#include "tests/support/clock.h"
#include "tests/support/files.h"

#define HUGE_TERM 1000000000ull

struct fixture {
    char certs[64]; /* raft certs --nodes 3 */
    struct chaos_cluster *c, *c2; /* stopped by teardown after a failure */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->certs, "/tmp/raft-identity-certs-XXXXXX");
    assert_non_null(mkdtemp(f->certs));
    char err[512];
    if (tls_certs_make(f->certs, 3, NULL, err, sizeof(err)) != 0)
        fail_msg("raft certs: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    struct chaos_cluster *left[] = {f->c, f->c2};
    for (int i = 0; i < 2; i++) {
        if (!left[i])
            continue;
        chaos_cluster_failed(left[i], "the test ended before it stopped its cluster");
        chaos_cluster_stop(left[i]);
    }
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->certs);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", f->certs);
    free(f);
    return 0;
}

static struct tls_ctx *load(const char *dir, const char *name)
{
    char ca[128], cert[128], key[128], err[256];
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    snprintf(cert, sizeof(cert), "%s/%s.crt", dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    struct tls_files files = {.ca = ca, .cert = cert, .key = key};
    struct tls_ctx *ctx = NULL;
    if (tls_ctx_new(&ctx, &files, err, sizeof(err)) != 0)
        fail_msg("cannot load %s/%s: %s", dir, name, err);
    return ctx;
}

/* ---- the impostor: node 1's certificate at node 2's address ---- */

struct impostor {
    struct tls_ctx *tls;
    struct tcp_server *server;
    struct tcp_transport *transport;
    atomic_int received; /* Raft messages that reached its handler */
    atomic_int entries;  /* log entries among them */
    atomic_bool stop;
    int sent_ok, sent_refused;
    pthread_t thread;
};

/* Answers as a willing node 2 would: grants, accepts, counts. */
static int impostor_handle(void *ctx, const struct wire_msg *req, struct wire_msg *reply,
                           struct tcp_conn *conn)
{
    (void)conn;
    struct impostor *im = ctx;
    if (req->type == WIRE_CLIENT_REQUEST || req->type == WIRE_CLIENT_REPLY)
        return -EINVAL;
    atomic_fetch_add(&im->received, 1);
    struct raft_msg r = {.type = req->type + 1, .from = 2};
    if (req->type == RAFT_MSG_APPEND_ENTRIES) {
        atomic_fetch_add(&im->entries, (int)req->u.raft.u.ae.n_entries);
        r.u.ae_reply = (struct raft_append_entries_reply){
            .term = req->u.raft.u.ae.term, .success = 1,
            .match_index = req->u.raft.u.ae.prev_log_index + req->u.raft.u.ae.n_entries};
    } else if (req->type == RAFT_MSG_REQUEST_VOTE) {
        r.u.rv_reply = (struct raft_request_vote_reply){.term = req->u.raft.u.rv.term,
                                                        .vote_granted = 1};
    }
    wire_from_raft(reply, &r);
    return 0;
}

/* As node 2, asks nodes 0 and 1 for their votes in a huge term, and
 * tells them it leads in it, every 50 ms. */
static void *impostor_main(void *arg)
{
    struct impostor *im = arg;
    struct raft_transport ops = tcp_transport_ops(im->transport);
    while (!atomic_load(&im->stop)) {
        for (uint32_t to = 0; to < 2; to++) {
            struct raft_msg vote = {.type = RAFT_MSG_REQUEST_VOTE, .from = 2}, reply;
            vote.u.rv = (struct raft_request_vote){.term = HUGE_TERM,
                                                   .last_log_index = HUGE_TERM,
                                                   .last_log_term = HUGE_TERM};
            struct raft_entry e = {.term = HUGE_TERM, .type = RAFT_ENTRY_COMMAND,
                                   .data = (uint8_t *)"evil", .len = 4};
            struct raft_msg append = {.type = RAFT_MSG_APPEND_ENTRIES, .from = 2};
            append.u.ae = (struct raft_append_entries){.term = HUGE_TERM, .n_entries = 1,
                                                       .entries = &e};
            int a = ops.call(ops.ctx, to, &vote, &reply, 500);
            int b = ops.call(ops.ctx, to, &append, &reply, 500);
            im->sent_ok += (a == 0) + (b == 0);
            im->sent_refused += (a != 0) + (b != 0);
        }
        test_sleep_ms(50);
    }
    return NULL;
}

static void impostor_start(struct impostor *im, struct fixture *f)
{
    struct chaos_cluster *c = f->c;
    im->tls = load(f->certs, "node-1");
    char host[64];
    uint16_t port;
    assert_int_equal(tcp_parse_addr(c->addr[2], host, sizeof(host), &port), 0);
    struct tcp_server_options opt = {.host = host, .port = port, .tls = im->tls,
                                     .handler = impostor_handle, .handler_ctx = im};
    assert_int_equal(tcp_server_start(&im->server, &opt), 0);
    assert_int_equal(tcp_transport_create(&im->transport, 2, c->addrs, 3, NULL, NULL), 0);
    tcp_transport_set_tls(im->transport, im->tls);
    assert_int_equal(pthread_create(&im->thread, NULL, impostor_main, im), 0);
}

static void impostor_stop(struct impostor *im)
{
    atomic_store(&im->stop, true);
    pthread_join(im->thread, NULL);
    tcp_server_stop(im->server);
    tcp_transport_destroy(im->transport);
    tls_ctx_free(im->tls);
}

/* n puts through nodes 0 and 1 over TLS; every one must be acknowledged. */
static void puts_succeed(struct fixture *f, unsigned n, const char *prefix)
{
    struct kv_client *k;
    assert_int_equal(kv_client_open(&k, f->c->addrs, 2, 5000), 0);
    kv_client_set_tls(k, f->c->tls);
    for (unsigned i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof(key), "%s-%u", prefix, i);
        int rc = kv_client_put(k, key, (uint32_t)strlen(key), "v", 1);
        if (rc)
            fail_msg("put %s through nodes 0 and 1: %s", key, strerror(-rc));
    }
    kv_client_close(k);
}

static void test_node_1_certificate_claiming_id_2_never_receives_an_entry(void **state)
{
    struct fixture *f = *state;
    unsigned scale = chaos_time_scale();
    struct chaos_cluster_options o = {.nodes = 3, .name = "impostor", .direct = true,
                                      .tls_dir = f->certs, .election_min_ms = 150 * scale,
                                      .election_max_ms = 300 * scale,
                                      .heartbeat_ms = 50 * scale};
    assert_int_equal(chaos_cluster_start(&f->c, &o), 0);
    struct chaos_cluster *c = f->c;
    /* Node 2 is the impostor: the real one is gone before it can serve. */
    chaos_cluster_kill(c, 2, SIGKILL);
    struct impostor im = {0};
    impostor_start(&im, f);
    uint64_t term;
    int leader = chaos_cluster_wait_leader(c, 3, 0, 10000 * scale, &term);
    assert_true(leader >= 0);
    puts_succeed(f, 20, "while-impostor");
    test_sleep_ms(300 * scale); /* heartbeats and retries towards "node 2" */
    impostor_stop(&im);

    uint64_t now_term;
    int now = chaos_cluster_wait_leader(c, 3, 0, 2000 * scale, &now_term);
    char log[96];
    chaos_cluster_log_path(c, (unsigned)leader, log, sizeof(log));
    int refused_out = test_file_count_lines(log, "its certificate names node-1, not node-2");
    int refused_in = chaos_cluster_log_count(c, 0, "the certificate of node-1 sent a message "
                                                   "claiming to be from n2") +
                     chaos_cluster_log_count(c, 1, "the certificate of node-1 sent a message "
                                                   "claiming to be from n2");
    printf("    the impostor received %d Raft messages (%d entries); of its %d messages as "
           "node 2, %d were answered; the leader n%d T%llu logged %d refusal(s) of it, the "
           "nodes %d of its messages; now n%d leads T%llu\n",
           atomic_load(&im.received), atomic_load(&im.entries), im.sent_ok + im.sent_refused,
           im.sent_ok, leader, (unsigned long long)term, refused_out, refused_in, now,
           (unsigned long long)now_term);
    assert_int_equal(atomic_load(&im.entries), 0);
    assert_int_equal(atomic_load(&im.received), 0);
    assert_int_equal(im.sent_ok, 0);
    assert_true(im.sent_refused > 0);
    assert_true(refused_out >= 1);
    assert_true(refused_in >= 1);
    assert_true(refused_in <= 2 * 4); /* at most once a second per node, over ~2 s */
    assert_int_equal(now, leader);
    assert_true(now_term == term && now_term < HUGE_TERM);
    char msg[600];
    if (chaos_cluster_shutdown(c, msg, sizeof(msg)) != 0)
        fail_msg("%s", msg);
    chaos_cluster_stop(c);
    f->c = NULL;
}

/* ---- another cluster ---- */

/* Moves A's leadership around until its term passes min_term. */
static uint64_t push_term_past(struct chaos_cluster *a, uint64_t min_term)
{
    struct kv_client *k;
    assert_int_equal(kv_client_open(&k, a->addrs, a->n, 5000), 0);
    uint64_t term = 0;
    for (int round = 0; round < 20 && term <= min_term; round++) {
        int32_t leader;
        char *why = NULL;
        int rc = kv_client_transfer(k, RAFT_NO_NODE, &leader, &why);
        free(why);
        if (rc == 0 && chaos_cluster_wait_leader(a, chaos_cluster_all(a), term + 1,
                                                 5000 * chaos_time_scale(), &term) < 0)
            fail_msg("no leader in cluster A after a transfer");
    }
    kv_client_close(k);
    assert_true(term > min_term);
    return term;
}

static void test_cluster_b_keeps_leader_and_term_when_a_node_of_a_points_at_it(void **state)
{
    struct fixture *f = *state;
    unsigned scale = chaos_time_scale();
    struct chaos_cluster_options ob = {.nodes = 3, .name = "cluster-b", .direct = true,
                                       .election_min_ms = 150 * scale,
                                       .election_max_ms = 300 * scale,
                                       .heartbeat_ms = 50 * scale};
    struct chaos_cluster_options oa = ob;
    oa.name = "cluster-a";
    oa.cluster_name = "cluster-a"; /* its id, whatever its --peers become */
    struct chaos_cluster *b, *a;
    assert_int_equal(chaos_cluster_start(&b, &ob), 0);
    f->c = b;
    assert_int_equal(chaos_cluster_start(&a, &oa), 0);
    f->c2 = a;
    uint64_t tb, ta;
    int lb = chaos_cluster_wait_leader(b, chaos_cluster_all(b), 0, 10000 * scale, &tb);
    assert_true(lb >= 0);
    assert_true(chaos_cluster_wait_leader(a, chaos_cluster_all(a), 0, 10000 * scale, &ta) >= 0);
    ta = push_term_past(a, tb + 1);

    /* An operator of A adds B's node 2 to A by mistake, as n5: A's
     * leader, in a later term than B's, dials it. */
    struct kv_client *ka;
    char *why = NULL;
    assert_int_equal(kv_client_open(&ka, a->addrs, 3, 5000), 0);
    assert_int_equal(kv_client_member_add(ka, 5, b->addr[2], true, &why), 0);
    free(why);
    kv_client_close(ka);
    uint64_t ta2;
    int la = chaos_cluster_wait_leader(a, chaos_cluster_all(a), ta, 10000 * scale, &ta2);
    assert_true(la >= 0);
    test_sleep_ms(600 * scale); /* A's heartbeats and retries towards "n5" */

    uint64_t tb2;
    int lb2 = chaos_cluster_wait_leader(b, chaos_cluster_all(b), 0, 2000 * scale, &tb2);
    struct client_reply b2;
    assert_int_equal(chaos_cluster_status(b, 2, 2000, &b2), 0);
    int refused_by_b = chaos_cluster_log_count(b, 2, "it belongs to cluster");
    int refused_by_a = chaos_cluster_log_count(a, (unsigned)la, "refusing n5");
    printf("    cluster A leads in T%llu (n%d), past B's T%llu; A's leader dialing B's n2: "
           "refused %d time(s) in B's n2's log, %d in A's leader's; B's leader n%d T%llu "
           "before, n%d T%llu after; B's n2 in T%llu\n", (unsigned long long)ta2, la,
           (unsigned long long)tb, refused_by_b, refused_by_a, lb, (unsigned long long)tb,
           lb2, (unsigned long long)tb2, (unsigned long long)b2.term);
    assert_int_equal(lb2, lb);
    assert_true(tb2 == tb);
    assert_true(b2.term == tb);
    assert_true(refused_by_b >= 1);
    assert_true(refused_by_a == 1); /* once, until it answers */
    char *one[] = {b->addrs[0], b->addrs[1], b->addrs[2], NULL};
    struct kv_client *k;
    assert_int_equal(kv_client_open(&k, one, 3, 5000), 0);
    assert_int_equal(kv_client_put(k, "b-still", 7, "writes", 6), 0);
    kv_client_close(k);

    /* A's node 2, on its own directory, started for another cluster: its
     * directory is cluster A's, its --cluster-name says otherwise. (A
     * different --peers alone would be ignored with a warning: once a
     * directory records its configuration and cluster, those win.) */
    char dir[96], out[128];
    chaos_cluster_stop_node_or_fail(a, 2);
    chaos_cluster_node_dir(a, 2, dir, sizeof(dir));
    snprintf(out, sizeof(out), "%s/wrong-cluster.out", f->certs);
    char *argv[] = {(char *)a->bin, "node", "--id", "2", "--peers", b->peers[2],
                    "--cluster-name", "cluster-b", "--data-dir", dir, NULL};
    assert_int_equal(test_run_to_file(argv, out, 10000), 4);
    assert_int_equal(test_file_count_lines(out, "the data directory belongs to cluster"), 1);

    char msg[600];
    if (chaos_cluster_shutdown(a, msg, sizeof(msg)) != 0 ||
        chaos_cluster_shutdown(b, msg, sizeof(msg)) != 0)
        fail_msg("%s", msg);
    chaos_cluster_stop(a);
    chaos_cluster_stop(b);
    f->c = f->c2 = NULL;
}

/* Our binary will not even start as node 2 with node 1's certificate. */
static void test_raft_node_refuses_to_start_with_another_nodes_certificate(void **state)
{
    struct fixture *f = *state;
    char ca[96], cert[96], key[96], out[128];
    snprintf(ca, sizeof(ca), "%s/ca.crt", f->certs);
    snprintf(cert, sizeof(cert), "%s/node-1.crt", f->certs);
    snprintf(key, sizeof(key), "%s/node-1.key", f->certs);
    snprintf(out, sizeof(out), "%s/node-2.out", f->certs);
    char data[96];
    snprintf(data, sizeof(data), "%s/data-2", f->certs);
    const char *bin = getenv("RAFT_BIN") && *getenv("RAFT_BIN") ? getenv("RAFT_BIN")
                                                                : "build/raft";
    char *argv[] = {(char *)bin, "node", "--id", "2", "--peers",
                    "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "--data-dir", data, "--tls-ca", ca,
                    "--tls-cert", cert, "--tls-key", key, NULL};
    assert_int_equal(test_run_to_file(argv, out, 10000), 4);
    assert_true(test_file_count_lines(out, "names node-1, not node-2") == 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_node_1_certificate_claiming_id_2_never_receives_an_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_raft_node_refuses_to_start_with_another_nodes_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_cluster_b_keeps_leader_and_term_when_a_node_of_a_points_at_it, setup,
            teardown),
    };
    return cmocka_run_group_tests_name("system: who may be a member", tests, NULL, NULL);
}
