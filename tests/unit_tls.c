/*
 * unit_tls.c - TLS over loopback in one process: the host check of a
 * dialer, the server's cap on connections in the handshake, and what it
 * says to a client of the other protocol.
 *
 * A dialer checks that the server's certificate was made for the host it
 * dialed (net/tls_names.c), besides the id check.
 * Linux routes all of 127.0.0.0/8 to the loopback interface, so a server
 * bound to 127.0.0.2 is "another host" for a certificate that names only
 * 127.0.0.1 and localhost (what `raft certs` writes without --hosts), and
 * the right host for one made with --hosts 127.0.0.2. Both the client's
 * link (tcp_link_dial) and a node's peer transport must refuse the first
 * and accept the second; the refusal names the host and the names the
 * certificate does carry.
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
#include "net/tls.h"
#include "net/tls_certs.h"
#include "tests/support/tcp_helpers.h"

struct hosts_fixture {
    struct tcp_test_fixture *tcp;
    char dir[64];
    char plain_certs[96]; /* raft certs: 127.0.0.1 and localhost only */
    char host_certs[96];  /* raft certs --hosts 127.0.0.2,node-two.test */
    struct tls_ctx *server;
    struct tls_ctx *client;
};

static struct tls_ctx *load(const char *dir, const char *name)
{
    char ca[128], cert[128], key[128], err[256];
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    snprintf(cert, sizeof cert, "%s/%s.crt", dir, name);
    snprintf(key, sizeof key, "%s/%s.key", dir, name);
    struct tls_files f = {.ca = ca, .cert = cert, .key = key};
    struct tls_ctx *ctx = NULL;
    if (tls_ctx_new(&ctx, &f, err, sizeof err) != 0)
        fail_msg("cannot load %s/%s: %s", dir, name, err);
    return ctx;
}

static int setup(void **state)
{
    struct hosts_fixture *h = calloc(1, sizeof *h);
    assert_non_null(h);
    assert_int_equal(tcp_test_setup((void **)&h->tcp), 0);
    strcpy(h->dir, "/tmp/raft-tls-hosts-XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    snprintf(h->plain_certs, sizeof h->plain_certs, "%s/plain", h->dir);
    snprintf(h->host_certs, sizeof h->host_certs, "%s/hosts", h->dir);
    char err[512];
    if (tls_certs_make(h->plain_certs, 2, NULL, err, sizeof err) != 0 ||
        tls_certs_make(h->host_certs, 2, "127.0.0.2,node-two.test", err, sizeof err) != 0)
        fail_msg("raft certs failed: %s", err);
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    struct hosts_fixture *h = *state;
    void *tcp = h->tcp;
    tcp_test_teardown(&tcp);
    tls_ctx_free(h->server);
    tls_ctx_free(h->client);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", h->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", h->dir);
    free(h);
    return 0;
}

/* The echo server as node 1 with certs' node-1 certificate, listening on
 * host with at most max_conns connections (0: the default); the client
 * context is certs' client certificate. */
static void serve_limited(struct hosts_fixture *h, const char *certs, const char *host,
                          unsigned max_conns)
{
    h->server = load(certs, "node-1");
    h->client = load(certs, "client");
    struct tcp_test_fixture *f = h->tcp;
    struct tcp_server_options opt = tcp_test_server_options(f, 0);
    opt.host = host;
    opt.tls = h->server;
    opt.max_connections = max_conns;
    int rc = -EADDRINUSE;
    unsigned base = 20000 + (unsigned)(getpid() * 7919u) % 30000;
    for (unsigned i = 0; i < 200 && rc == -EADDRINUSE; i++) {
        opt.port = (uint16_t)(base + i * 13);
        rc = tcp_server_start(&f->server, &opt);
    }
    assert_int_equal(rc, 0);
    f->port = tcp_server_port(f->server);
    snprintf(f->addr, sizeof f->addr, "%s:%u", host, (unsigned)f->port);
}

static void serve(struct hosts_fixture *h, const char *certs, const char *host)
{
    serve_limited(h, certs, host, 0);
}

/* A client get over a TLS link to addr: tcp_link_dial_why()'s result, with
 * its reason in why. */
static int client_get(struct hosts_fixture *h, const char *addr, char *why, size_t cap)
{
    struct tcp_link *link;
    int rc = tcp_link_dial_why(&link, addr, h->client, 2000, why, cap);
    if (rc != 0)
        return rc;
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT}, reply;
    req.u.request.op = CLIENT_GET;
    req.u.request.key = (uint8_t *)"k";
    req.u.request.key_len = 1;
    uint8_t *buf = NULL;
    size_t buf_cap = 0;
    rc = tcp_link_roundtrip(link, &req, &reply, &buf, &buf_cap, 2000);
    if (rc == 0) {
        assert_int_equal(reply.type, WIRE_CLIENT_REPLY);
        assert_int_equal(reply.u.reply.value_len, 1);
        wire_msg_release(&reply);
    }
    free(buf);
    tcp_link_close(link);
    return rc;
}

/* Node 0's transport, with certs' node-0 certificate, dialing node 1 at
 * addr: the result of one RequestVote. */
static int peer_call(struct hosts_fixture *h, const char *certs, const char *addr)
{
    struct tls_ctx *node0 = load(certs, "node-0");
    struct tcp_transport *t = tcp_test_transport_to(h->tcp, addr);
    tcp_transport_set_tls(t, node0);
    struct raft_transport ops = tcp_transport_ops(t);
    struct raft_msg req = tcp_test_request_vote(3), reply;
    int rc = ops.call(ops.ctx, 1, &req, &reply, 2000);
    if (rc == 0)
        assert_int_equal(reply.u.rv_reply.term, 4);
    tcp_transport_destroy(t);
    tls_ctx_free(node0);
    return rc;
}

static void test_client_accepts_a_certificate_for_the_host_it_dialed(void **state)
{
    struct hosts_fixture *h = *state;
    serve(h, h->plain_certs, "127.0.0.1");
    char why[256];
    assert_int_equal(client_get(h, h->tcp->addr, why, sizeof why), 0);
    /* A DNS name the certificate lists is as good as the address. */
    char by_name[64];
    snprintf(by_name, sizeof by_name, "localhost:%u", (unsigned)h->tcp->port);
    assert_int_equal(client_get(h, by_name, why, sizeof why), 0);
}

static void test_client_refuses_a_certificate_made_for_another_host(void **state)
{
    struct hosts_fixture *h = *state;
    serve(h, h->plain_certs, "127.0.0.2"); /* its certificate: 127.0.0.1, localhost */
    char why[256];
    assert_int_equal(client_get(h, h->tcp->addr, why, sizeof why), -EPROTO);
    /* The reason names the host dialed and the names the certificate has. */
    assert_non_null(strstr(why, "not for 127.0.0.2"));
    assert_non_null(strstr(why, "IP:127.0.0.1"));
    assert_non_null(strstr(why, "--hosts"));
}

static void test_client_accepts_a_certificate_made_with_hosts(void **state)
{
    struct hosts_fixture *h = *state;
    serve(h, h->host_certs, "127.0.0.2");
    char why[256];
    assert_int_equal(client_get(h, h->tcp->addr, why, sizeof why), 0);
    assert_string_equal(why, "");
}

/* A client session gives up at once, rather than at its timeout, and can
 * say why: waiting does not change a certificate. */
static void test_session_gives_up_naming_the_refusal(void **state)
{
    struct hosts_fixture *h = *state;
    serve(h, h->plain_certs, "127.0.0.2");
    char *addrs[] = {h->tcp->addr, NULL};
    struct kv_client *c;
    assert_int_equal(kv_client_open(&c, addrs, 1, 10000), 0);
    kv_client_set_tls(c, h->client);
    int64_t start = tcp_test_now_ms();
    assert_int_equal(kv_client_put(c, "k", 1, "v", 1), -EACCES);
    assert_true(tcp_test_now_ms() - start < 5000);
    const char *why = kv_client_tls_refusal(c);
    assert_non_null(why);
    assert_non_null(strstr(why, h->tcp->addr));
    assert_non_null(strstr(why, "not for 127.0.0.2"));
    kv_client_close(c);
}

static void test_peer_refuses_a_certificate_made_for_another_host(void **state)
{
    struct hosts_fixture *h = *state;
    serve(h, h->plain_certs, "127.0.0.2");
    int warns = tcp_test_warn_count(&h->tcp->log);
    /* node-1's certificate, shown where node 1 is dialed: the id is right,
     * the host is not. */
    assert_int_equal(peer_call(h, h->plain_certs, h->tcp->addr), -EPROTO);
    assert_true(tcp_test_warn_count(&h->tcp->log) > warns);
    /* The accepting side logs its end of the failed handshake too, in
     * either order: look for the dialer's line among all of them. */
    pthread_mutex_lock(&h->tcp->log.mu);
    char warned[4096];
    snprintf(warned, sizeof warned, "%s", h->tcp->log.warned);
    pthread_mutex_unlock(&h->tcp->log.mu);
    const char *line = strstr(warned, "refusing n1");
    const char *end = line ? strchr(line, '\n') : NULL;
    const char *why = line ? strstr(line, "not for 127.0.0.2") : NULL;
    if (!line || !why || (end && why > end))
        fail_msg("the transport's refusal does not say why: %s", warned);
    /* The echo handler never ran: nothing reached the other side. */
    assert_int_equal(atomic_load(&h->tcp->echo.calls), 0);
}

static void test_peer_accepts_a_certificate_made_with_hosts(void **state)
{
    struct hosts_fixture *h = *state;
    serve(h, h->host_certs, "127.0.0.2");
    assert_int_equal(peer_call(h, h->host_certs, h->tcp->addr), 0);
    assert_int_equal(atomic_load(&h->tcp->echo.calls), 1);
}

/* Connections that never start their handshake may hold half of the
 * connection limit: a new one past that closes the oldest at once (not
 * after the half second an idle connection is given), and a real client
 * still gets in. */
static void test_half_open_handshakes_hold_half_the_limit(void **state)
{
    struct hosts_fixture *h = *state;
    serve_limited(h, h->plain_certs, "127.0.0.1", 8); /* 4 may be in the handshake */
    enum { SILENT = 6 };
    int fds[SILENT];
    for (int i = 0; i < SILENT; i++) {
        fds[i] = tcp_dial(h->tcp->addr, 1000);
        assert_true(fds[i] >= 0);
        tcp_test_sleep_ms(20); /* accepted in this order */
    }
    /* The 5th and 6th took the places of the 1st and 2nd. */
    assert_true(tcp_test_wait_closed(fds[0], 300) >= 0);
    assert_true(tcp_test_wait_closed(fds[1], 300) >= 0);
    assert_int_equal(tcp_test_wait_closed(fds[2], 100), -1);
    char why[256];
    assert_int_equal(client_get(h, h->tcp->addr, why, sizeof why), 0);
    /* Logged once: the second eviction came within the same second. */
    assert_int_equal(tcp_test_warn_count(&h->tcp->log), 1);
    pthread_mutex_lock(&h->tcp->log.mu);
    bool says = strstr(h->tcp->log.last_warn, "in the TLS handshake, the most allowed");
    pthread_mutex_unlock(&h->tcp->log.mu);
    assert_true(says);
    for (int i = 0; i < SILENT; i++)
        close(fds[i]);
}

/* A client that speaks the other protocol than the port hears a reason it
 * can act on, not OpenSSL's "wrong version number". */
static void test_plain_and_tls_mixed_up_are_told_so(void **state)
{
    struct hosts_fixture *h = *state;
    serve(h, h->plain_certs, "127.0.0.1");
    int fd = tcp_dial(h->tcp->addr, 1000);
    assert_true(fd >= 0);
    assert_int_not_equal(tcp_test_client_get(fd, "k", 2000), 0);
    close(fd);
    pthread_mutex_lock(&h->tcp->log.mu);
    bool plain = strstr(h->tcp->log.last_warn, "plain-TCP frame to this TLS port") != NULL;
    pthread_mutex_unlock(&h->tcp->log.mu);
    assert_true(plain);

    /* And a TLS client at a plain node. */
    tcp_server_stop(h->tcp->server);
    h->tcp->server = NULL;
    tcp_test_start_server(h->tcp, 0, 0);
    char why[256];
    assert_int_not_equal(client_get(h, h->tcp->addr, why, sizeof why), 0);
    /* The server logged before it closed the connection the client saw end. */
    pthread_mutex_lock(&h->tcp->log.mu);
    bool tls = strstr(h->tcp->log.last_warn, "it speaks TLS, and this node plain TCP") != NULL;
    pthread_mutex_unlock(&h->tcp->log.mu);
    assert_true(tls);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* OpenSSL writes to a socket the other end may have closed */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_client_accepts_a_certificate_for_the_host_it_dialed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_refuses_a_certificate_made_for_another_host,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_accepts_a_certificate_made_with_hosts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_session_gives_up_naming_the_refusal, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_peer_refuses_a_certificate_made_for_another_host,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_accepts_a_certificate_made_with_hosts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_half_open_handshakes_hold_half_the_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_plain_and_tls_mixed_up_are_told_so, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("unit: TLS in one process (the host check, the cap on "
                                       "handshakes)", tests, NULL, NULL);
}
