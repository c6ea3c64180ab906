/*
 * unit_cluster_id.c - cluster identity (net/cluster_id.c, net/hello.c,
 * net/tcp_hello.c) in one process.
 *
 * The id: the same --peers (or --cluster-name) give the same id, anything
 * else another. The hello: it round-trips, and malformed ones are refused.
 * The rule: same cluster welcome, another refused, a dialer without an id
 * refused, a node without one adopts the first it is given (recorded
 * first). Over loopback: a transport of another cluster gets no message
 * through (the server's handler never runs), and neither does a raw peer
 * message before a hello. And with three real nodes (kv_server), one
 * started with no cluster id joins the others' cluster when their leader
 * contacts it, keeps the id in its data directory, and replicates.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kv/client.h"
#include "kv/server.h"
#include "net/cluster_id.h"
#include "net/hello.h"
#include "raft/storage/storage.h"
#include "tests/chaos/ports.h"
#include "tests/support/tcp_helpers.h"

static struct cluster_id derive(const char *name, const char *a, const char *b)
{
    char *peers[] = {(char *)a, (char *)b};
    struct cluster_id id;
    assert_int_equal(cluster_id_derive(&id, name, peers, 2), 0);
    assert_true(id.known);
    return id;
}

/* ---- the id ---- */

static void test_same_peers_same_id_anything_else_another(void **state)
{
    (void)state;
    struct cluster_id a = derive(NULL, "10.0.0.1:8000", "10.0.0.2:8000");
    struct cluster_id again = derive(NULL, "10.0.0.1:8000", "10.0.0.2:8000");
    assert_true(cluster_id_equal(&a, &again));
    struct cluster_id other = derive(NULL, "10.0.0.1:8000", "10.0.0.3:8000");
    assert_false(cluster_id_equal(&a, &other));
    /* The parts cannot run together into the same bytes. */
    struct cluster_id split1 = derive(NULL, "a:1,b", "c:2");
    struct cluster_id split2 = derive(NULL, "a:1", "b,c:2");
    assert_false(cluster_id_equal(&split1, &split2));
    /* A name decides alone: --peers may differ (proxies) and change. */
    struct cluster_id named = derive("prod", "10.0.0.1:8000", "10.0.0.2:8000");
    struct cluster_id named_other_peers = derive("prod", "127.0.0.1:9100", "10.0.0.2:8000");
    assert_true(cluster_id_equal(&named, &named_other_peers));
    assert_false(cluster_id_equal(&named, &a));
    struct cluster_id none;
    assert_int_equal(cluster_id_derive(&none, NULL, NULL, 0), -EINVAL);
    assert_false(none.known);
    char buf[16];
    assert_string_equal(cluster_id_str(&none, buf, sizeof buf), "none yet");
    assert_int_equal(strlen(cluster_id_str(&a, buf, sizeof buf)), 12);
}

/* ---- the hello ---- */

static void test_hello_round_trips_and_malformed_ones_are_refused(void **state)
{
    (void)state;
    struct hello h = {.type = WIRE_HELLO, .from = 7, .cluster = derive("x", "a:1", "b:2")};
    uint8_t buf[HELLO_REPLY_SIZE + 1];
    assert_int_equal(hello_encode(&h, buf, sizeof buf), HELLO_SIZE);
    struct hello back;
    assert_int_equal(hello_decode(buf, HELLO_SIZE, &back), 0);
    assert_int_equal(back.type, WIRE_HELLO);
    assert_int_equal(back.from, 7);
    assert_true(cluster_id_equal(&back.cluster, &h.cluster));
    assert_int_equal(hello_decode(buf, HELLO_SIZE - 1, &back), -EBADMSG);
    buf[WIRE_HEADER] = 2; /* "known" is 0 or 1 */
    assert_int_equal(hello_decode(buf, HELLO_SIZE, &back), -EBADMSG);
    buf[WIRE_HEADER] = 0; /* unknown, yet id bytes that are not zero */
    assert_int_equal(hello_decode(buf, HELLO_SIZE, &back), -EBADMSG);
    buf[4] = 9;
    assert_int_equal(hello_decode(buf, HELLO_SIZE, &back), -EPROTO);

    struct hello r = {.type = WIRE_HELLO_REPLY, .from = 1, .verdict = CLUSTER_OTHER};
    assert_int_equal(hello_encode(&r, buf, sizeof buf), HELLO_REPLY_SIZE);
    assert_int_equal(hello_decode(buf, HELLO_REPLY_SIZE, &back), 0);
    assert_int_equal(back.verdict, CLUSTER_OTHER);
    assert_false(back.cluster.known);
    buf[WIRE_HEADER] = CLUSTER_VERDICT_MAX + 1;
    assert_int_equal(hello_decode(buf, HELLO_REPLY_SIZE, &back), -EBADMSG);
    r.verdict = CLUSTER_VERDICT_MAX + 1;
    assert_int_equal(hello_encode(&r, buf, sizeof buf), -EINVAL);
}

/* ---- the rule ---- */

struct recorder {
    int calls, rc;
    struct cluster_id got;
};

static int record(void *ctx, const struct cluster_id *id)
{
    struct recorder *r = ctx;
    r->calls++;
    r->got = *id;
    return r->rc;
}

static enum cluster_verdict judge(const struct cluster_id *mine, const struct cluster_id *theirs,
                                  struct recorder *r, bool *adopted, struct cluster_id *after)
{
    struct cluster_ident *ci;
    assert_int_equal(cluster_ident_new(&ci, mine, record, r), 0);
    char why[256];
    struct cluster_id now;
    enum cluster_verdict v = cluster_ident_judge(ci, theirs, &now, adopted, why, sizeof why);
    assert_true(v == CLUSTER_WELCOME ? why[0] == '\0' : strlen(why) > 20);
    *after = cluster_ident_get(ci);
    assert_true(cluster_id_equal(after, &now));
    cluster_ident_free(ci);
    return v;
}

static void test_judge_welcomes_its_own_refuses_others_adopts_when_it_has_none(void **state)
{
    (void)state;
    struct cluster_id a = derive("a", "x:1", "y:2"), b = derive("b", "x:1", "y:2");
    struct cluster_id none = {.known = false}, after;
    struct recorder r = {0};
    bool adopted;
    assert_int_equal(judge(&a, &a, &r, &adopted, &after), CLUSTER_WELCOME);
    assert_false(adopted);
    assert_int_equal(judge(&a, &b, &r, &adopted, &after), CLUSTER_OTHER);
    assert_true(cluster_id_equal(&after, &a)); /* a refusal changes nothing */
    assert_int_equal(judge(&a, &none, &r, &adopted, &after), CLUSTER_NONE_YET);
    assert_int_equal(judge(&none, &none, &r, &adopted, &after), CLUSTER_WELCOME);
    assert_int_equal(r.calls, 0);
    assert_int_equal(judge(&none, &b, &r, &adopted, &after), CLUSTER_WELCOME);
    assert_true(adopted);
    assert_int_equal(r.calls, 1);
    assert_true(cluster_id_equal(&r.got, &b));
    assert_true(cluster_id_equal(&after, &b));
    /* Not kept, not taken. */
    r.rc = -EIO;
    assert_int_equal(judge(&none, &b, &r, &adopted, &after), CLUSTER_NOT_RECORDED);
    assert_false(adopted);
    assert_false(after.known);
}

/* ---- over loopback ---- */

/* The echo server as node 1 with identity ci. */
static void serve(struct tcp_test_fixture *f, struct cluster_ident *ci, uint32_t node_id)
{
    struct tcp_server_options opt = tcp_test_server_options(f, 0);
    opt.cluster = ci;
    opt.node_id = node_id;
    struct port_reservation port;
    assert_int_equal(port_reserve(&port), 0);
    opt.port = (uint16_t)port.port;
    assert_int_equal(tcp_server_start(&f->server, &opt), 0);
    port_release(&port);
    f->port = tcp_server_port(f->server);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%u", (unsigned)f->port);
}

/* One RequestVote from node 0 speaking for cluster `mine` to f's server. */
static int call(struct tcp_test_fixture *f, const struct cluster_id *mine)
{
    struct cluster_ident *ci;
    assert_int_equal(cluster_ident_new(&ci, mine, NULL, NULL), 0);
    struct tcp_transport *t = tcp_test_transport_to(f, f->addr);
    tcp_transport_set_cluster(t, ci);
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg req = tcp_test_request_vote(5), reply;
    int rc = ops.call(ops.ctx, 1, &req, &reply, 2000);
    tcp_transport_destroy(t);
    cluster_ident_free(ci);
    return rc;
}

static bool last_warn_has(struct tcp_test_fixture *f, const char *needle)
{
    pthread_mutex_lock(&f->log.mu);
    bool has = strstr(f->log.last_warn, needle) != NULL;
    pthread_mutex_unlock(&f->log.mu);
    return has;
}

static void test_another_cluster_gets_no_message_through(void **state)
{
    struct tcp_test_fixture *f = *state;
    struct cluster_id a = derive("a", "x:1", "y:2"), b = derive("b", "x:1", "y:2");
    struct cluster_ident *ci;
    assert_int_equal(cluster_ident_new(&ci, &a, NULL, NULL), 0);
    serve(f, ci, 1);
    assert_int_equal(call(f, &a), 0);
    assert_int_equal(atomic_load(&f->echo.calls), 1);
    assert_int_equal(call(f, &b), -EACCES);
    assert_true(last_warn_has(f, "belongs to cluster"));
    struct cluster_id none = {.known = false};
    assert_int_equal(call(f, &none), -EACCES);
    assert_int_equal(atomic_load(&f->echo.calls), 1); /* neither reached the handler */
    tcp_server_stop(f->server);
    f->server = NULL;
    cluster_ident_free(ci);
}

static void test_peer_message_before_hello_is_refused(void **state)
{
    struct tcp_test_fixture *f = *state;
    struct cluster_id a = derive("a", "x:1", "y:2");
    struct cluster_ident *ci;
    assert_int_equal(cluster_ident_new(&ci, &a, NULL, NULL), 0);
    serve(f, ci, 1);
    int fd = tcp_dial(f->addr, 1000);
    assert_true(fd >= 0);
    struct wire_msg m;
    struct raft_msg rv = tcp_test_request_vote(9);
    wire_from_raft(&m, &rv);
    uint8_t buf[128];
    long n = wire_encode(&m, buf, sizeof buf);
    tcp_test_send_raw(fd, buf, (size_t)n);
    assert_true(tcp_test_wait_closed(fd, 2000) >= 0);
    close(fd);
    assert_int_equal(atomic_load(&f->echo.calls), 0);
    assert_true(last_warn_has(f, "before its hello"));
    /* A client needs no hello. */
    fd = tcp_dial(f->addr, 1000);
    assert_int_equal(tcp_test_client_get(fd, "k", 2000), 0);
    close(fd);
    tcp_server_stop(f->server);
    f->server = NULL;
    cluster_ident_free(ci);
}

static void test_a_node_answering_as_another_is_refused(void **state)
{
    struct tcp_test_fixture *f = *state;
    struct cluster_id a = derive("a", "x:1", "y:2");
    struct cluster_ident *ci;
    assert_int_equal(cluster_ident_new(&ci, &a, NULL, NULL), 0);
    serve(f, ci, 2); /* dialed as node 1, it is node 2 */
    assert_int_equal(call(f, &a), -EACCES);
    assert_true(last_warn_has(f, "answers as n2, not n1"));
    assert_int_equal(atomic_load(&f->echo.calls), 0);
    tcp_server_stop(f->server);
    f->server = NULL;
    cluster_ident_free(ci);
}

/* ---- three real nodes, one of them not yet in a cluster ---- */

static void test_a_node_with_no_cluster_joins_the_first_that_contacts_it(void **state)
{
    (void)state;
    char root[] = "/tmp/raft-cluster-id-XXXXXX";
    assert_non_null(mkdtemp(root));
    struct port_reservation ports[3];
    char addr[3][32], dirs[3][96];
    char *peers[4] = {0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(port_reserve(&ports[i]), 0);
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", ports[i].port);
        snprintf(dirs[i], sizeof dirs[i], "%s/node-%d", root, i);
        peers[i] = addr[i];
    }
    struct cluster_id ours;
    assert_int_equal(cluster_id_derive(&ours, NULL, peers, 3), 0);
    struct kv_server_config cfg[3];
    struct kv_server *srv[3];
    for (uint32_t i = 0; i < 3; i++) {
        cfg[i] = (struct kv_server_config){.peers = peers, .data_dir = dirs[i]};
        raft_config_defaults(&cfg[i].raft, i, 3);
        cfg[i].raft.log_level = RAFT_LOG_WARN;
        cfg[i].cluster = i < 2 ? ours : (struct cluster_id){.known = false};
        assert_int_equal(kv_server_start(&srv[i], &cfg[i]), 0);
    }
    struct kv_client *c;
    assert_int_equal(kv_client_open(&c, peers, 2, 10000), 0);
    assert_int_equal(kv_client_put(c, "k", 1, "v", 1), 0);
    kv_client_close(c);
    /* Node 2 replicates: the leader's hello gave it the cluster id. */
    struct raft_status st;
    for (int tries = 0; tries < 200; tries++) {
        kv_server_status(srv[2], &st);
        if (st.commit >= 1 && st.applied >= 1)
            break;
        tcp_test_sleep_ms(10);
    }
    assert_true(st.applied >= 1);
    for (int i = 2; i >= 0; i--)
        kv_server_stop(srv[i]);
    /* ...and keeps it: its directory belongs to the cluster now. */
    struct file_storage *fs;
    assert_int_equal(file_storage_open(&fs, dirs[2], NULL, NULL), 0);
    uint8_t id[FILE_STORAGE_CLUSTER_ID_SIZE];
    bool known = false;
    assert_int_equal(file_storage_claim_cluster(fs, NULL, id, &known), 0);
    assert_true(known);
    assert_memory_equal(id, ours.bytes, CLUSTER_ID_SIZE);
    file_storage_close(fs);
    for (int i = 0; i < 3; i++)
        port_release(&ports[i]);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_peers_same_id_anything_else_another),
        cmocka_unit_test(test_hello_round_trips_and_malformed_ones_are_refused),
        cmocka_unit_test(test_judge_welcomes_its_own_refuses_others_adopts_when_it_has_none),
        cmocka_unit_test_setup_teardown(test_another_cluster_gets_no_message_through,
                                        tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(test_peer_message_before_hello_is_refused,
                                        tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test_setup_teardown(test_a_node_answering_as_another_is_refused,
                                        tcp_test_setup, tcp_test_teardown),
        cmocka_unit_test(test_a_node_with_no_cluster_joins_the_first_that_contacts_it),
    };
    return cmocka_run_group_tests_name("unit: cluster identity", tests, NULL, NULL);
}
