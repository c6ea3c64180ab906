/*
 * system_tls.c - a `raft cluster` with mutual TLS, certificates from `raft
 * certs`, against honest and hostile clients.
 *
 * A TLS client puts and gets. Whoever cannot show a certificate of the
 * cluster's CA - a plaintext client, a client of another CA, garbage, a
 * handshake cut off half-way - loses its connection and nothing else; a
 * client certificate cannot speak the peer protocol, and a node
 * certificate cannot speak for another node. After each, the cluster still
 * serves, in the term it was in.
 *
 * Runs the binary named by $RAFT_BIN (make test sets it).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/ssl.h>

#include "kv/client.h"
#include "net/tcp_socket.h"
#include "net/tls.h"
#include "net/wire.h"
#include "tests/chaos/cluster.h"
#include "tests/support/clock.h"

#define NODES 3
#define HUGE_TERM 1000000000ull
#define HANDSHAKE_BOUND_MS 3000 /* the node's (net/tcp_conn.c) */
#define CLOSE_WAIT_MS (HANDSHAKE_BOUND_MS + 2000)

struct fixture {
    char dir[64];
    char addr[NODES][32];
    char *addrs[NODES + 1];
    pid_t pid;
    struct tls_ctx *client; /* of the cluster's CA */
    uint64_t term;          /* the leader's term once the cluster is up */
};

static const char *raft_bin(void)
{
    const char *b = getenv("RAFT_BIN");
    return b && *b ? b : "build/raft";
}

/* Runs argv to completion with its output in log; its exit status. */
static int run(const char *log, const char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A base port P with P, P+1 and P+2 free on 127.0.0.1 just now. */
static int free_base_port(void)
{
    for (int attempt = 0; attempt < 200; attempt++) {
        int base = 20000 + (int)((getpid() * 7919 + attempt * 104729) % 30000);
        int fds[NODES], n = 0;
        for (; n < NODES; n++) {
            struct sockaddr_in sa = {.sin_family = AF_INET,
                                     .sin_port = htons((uint16_t)(base + n)),
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            fds[n] = socket(AF_INET, SOCK_STREAM, 0);
            if (bind(fds[n], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fds[n]);
                break;
            }
        }
        for (int i = 0; i < n; i++)
            close(fds[i]);
        if (n == NODES)
            return base;
    }
    return -1;
}

/* A context trusting ca_dir's CA, with dir's certificate `name`. */
static struct tls_ctx *load_ctx_trusting(const char *ca_dir, const char *dir, const char *name)
{
    char ca[128], cert[128], key[128], err[256];
    snprintf(ca, sizeof(ca), "%s/ca.crt", ca_dir);
    snprintf(cert, sizeof(cert), "%s/%s.crt", dir, name);
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    struct tls_files f = {.ca = ca, .cert = cert, .key = key};
    struct tls_ctx *ctx = NULL;
    int rc = tls_ctx_new(&ctx, &f, err, sizeof(err));
    if (rc)
        fail_msg("cannot load %s/%s: %s", dir, name, err);
    return ctx;
}

static struct tls_ctx *load_ctx(const char *dir, const char *name)
{
    return load_ctx_trusting(dir, dir, name);
}

/* The term of the leader, once one of the nodes reports one over TLS. */
static uint64_t wait_leader(struct fixture *f, unsigned timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    while (test_now_ms() < deadline) {
        for (unsigned i = 0; i < NODES; i++) {
            struct client_reply r;
            if (kv_client_status_tls(f->addr[i], f->client, 500, &r) == 0 &&
                r.role == RAFT_LEADER)
                return r.term;
        }
        usleep(50 * 1000);
    }
    fail_msg("no leader within %u ms (logs in %s)", timeout_ms, f->dir);
    return 0;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/raft-tls-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char certs[96], other[96], log[96], data[96], base_s[16];
    snprintf(certs, sizeof(certs), "%s/certs", f->dir);
    snprintf(other, sizeof(other), "%s/other", f->dir);
    snprintf(log, sizeof(log), "%s/certs.log", f->dir);
    const char *mk[] = {raft_bin(), "certs", "--out", certs, "--nodes", "3", NULL};
    const char *mk2[] = {raft_bin(), "certs", "--out", other, "--nodes", "3", NULL};
    assert_int_equal(run(log, mk), 0);
    assert_int_equal(run(log, mk2), 0);
    int base = free_base_port();
    assert_true(base > 0);
    for (unsigned i = 0; i < NODES; i++) {
        snprintf(f->addr[i], sizeof(f->addr[i]), "127.0.0.1:%d", base + (int)i);
        f->addrs[i] = f->addr[i];
    }
    snprintf(base_s, sizeof(base_s), "%d", base);
    snprintf(data, sizeof(data), "%s/data", f->dir);
    snprintf(log, sizeof(log), "%s/cluster.log", f->dir);
    fflush(stdout);
    f->pid = fork();
    if (f->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execl(raft_bin(), raft_bin(), "cluster", "--tls-dir", certs, "--base-port", base_s,
              "--data-dir", data, (char *)NULL);
        _exit(127);
    }
    f->client = load_ctx(certs, "client");
    f->term = wait_leader(f, 10000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kill(f->pid, SIGTERM);
    int st;
    waitpid(f->pid, &st, 0);
    tls_ctx_free(f->client);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (getenv("TLS_KEEP") == NULL && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", f->dir);
    free(f);
    return 0;
}

/* ---- checks ---- */

/* Every node answers status over TLS, in no term a hostile message set. */
static void cluster_unharmed(struct fixture *f, const char *after)
{
    for (unsigned i = 0; i < NODES; i++) {
        struct client_reply r;
        int rc = kv_client_status_tls(f->addr[i], f->client, 2000, &r);
        if (rc)
            fail_msg("after %s, n%u does not answer status over TLS: %s", after, i,
                     strerror(-rc));
        if (r.term >= HUGE_TERM)
            fail_msg("after %s, n%u is in term %llu: a refused message reached Raft", after,
                     i, (unsigned long long)r.term);
    }
}

static void put_get(struct fixture *f, const char *key, const char *value)
{
    struct kv_client *c;
    assert_int_equal(kv_client_open(&c, f->addrs, NODES, 5000), 0);
    kv_client_set_tls(c, f->client);
    assert_int_equal(kv_client_put(c, key, (uint32_t)strlen(key), value,
                                   (uint32_t)strlen(value)), 0);
    uint8_t *got = NULL;
    uint32_t len = 0;
    assert_int_equal(kv_client_get(c, key, (uint32_t)strlen(key), &got, &len), 0);
    assert_int_equal(len, strlen(value));
    assert_memory_equal(got, value, len);
    free(got);
    kv_client_close(c);
}

/* Reads what arrives for up to timeout_ms: true when the node closed. */
static bool closed_within(int fd, unsigned timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    while (test_now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - test_now_ms())) <= 0)
            continue;
        uint8_t buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return true;
    }
    return false;
}

static void send_raw(int fd, const void *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* A peer message that would take over the cluster if it were accepted. */
static void hostile_vote(struct wire_msg *m, uint32_t from)
{
    memset(m, 0, sizeof(*m));
    m->type = RAFT_MSG_REQUEST_VOTE;
    m->from = from;
    m->u.raft.type = RAFT_MSG_REQUEST_VOTE;
    m->u.raft.from = from;
    m->u.raft.u.rv.term = HUGE_TERM;
    m->u.raft.u.rv.last_log_index = HUGE_TERM;
    m->u.raft.u.rv.last_log_term = HUGE_TERM;
}

/* ---- tests ---- */

static void test_certs_keys_are_private(void **state)
{
    struct fixture *f = *state;
    const char *names[] = {"ca", "node-0", "node-2", "client"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[128];
        struct stat st;
        snprintf(path, sizeof(path), "%s/certs/%s.key", f->dir, names[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }
}

static void test_tls_client_puts_and_gets(void **state)
{
    struct fixture *f = *state;
    put_get(f, "secret", "kept");
    char certs[96], log[96];
    snprintf(certs, sizeof(certs), "%s/certs", f->dir);
    snprintf(log, sizeof(log), "%s/client.log", f->dir);
    char cluster[128];
    snprintf(cluster, sizeof(cluster), "%s,%s,%s", f->addr[0], f->addr[1], f->addr[2]);
    const char *get[] = {raft_bin(), "client", "--cluster", cluster, "--tls-dir", certs,
                         "get", "secret", NULL};
    assert_int_equal(run(log, get), 0);
}

static void test_plaintext_client_gets_nothing(void **state)
{
    struct fixture *f = *state;
    int fd = tcp_dial(f->addr[0], 2000);
    assert_true(fd >= 0);
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT}, reply;
    req.u.request.op = CLIENT_STATUS;
    uint8_t *buf = NULL;
    size_t cap = 0;
    assert_int_not_equal(tcp_roundtrip(fd, &req, &reply, &buf, &cap, 2000), 0);
    free(buf);
    close(fd);
    cluster_unharmed(f, "a plaintext client");
    put_get(f, "after-plain", "1");
}

static void test_client_of_another_ca_is_refused(void **state)
{
    struct fixture *f = *state;
    char other[96], certs[96];
    snprintf(other, sizeof(other), "%s/other", f->dir);
    snprintf(certs, sizeof(certs), "%s/certs", f->dir);
    /* It trusts the cluster's CA, so the node is the one that must refuse. */
    struct tls_ctx *stranger = load_ctx_trusting(certs, other, "client");
    struct client_reply r;
    assert_int_not_equal(kv_client_status_tls(f->addr[1], stranger, 2000, &r), 0);
    /* Nor may a node of another cluster's CA join this one. */
    struct tls_ctx *node = load_ctx_trusting(certs, other, "node-2");
    struct tcp_link *link;
    /* TLS 1.3: the client's handshake ends before the server has checked
     * the client's certificate, so the refusal may come with the reply. */
    int rc = tcp_link_dial(&link, f->addr[0], node, 2000);
    if (rc == 0) {
        struct wire_msg m, reply;
        hostile_vote(&m, 2);
        uint8_t *buf = NULL;
        size_t cap = 0;
        assert_int_not_equal(tcp_link_roundtrip(link, &m, &reply, &buf, &cap, 2000), 0);
        free(buf);
        tcp_link_close(link);
    }
    tls_ctx_free(node);
    tls_ctx_free(stranger);
    cluster_unharmed(f, "another CA's certificates");
}

static void test_client_cert_cannot_speak_peer_protocol(void **state)
{
    struct fixture *f = *state;
    struct tcp_link *link;
    assert_int_equal(tcp_link_dial(&link, f->addr[0], f->client, 2000), 0);
    struct wire_msg m, reply;
    hostile_vote(&m, 1);
    uint8_t *buf = NULL;
    size_t cap = 0;
    assert_int_not_equal(tcp_link_roundtrip(link, &m, &reply, &buf, &cap, 2000), 0);
    free(buf);
    tcp_link_close(link);
    cluster_unharmed(f, "a client certificate on the peer protocol");
}

static void test_node_cert_cannot_claim_another_id(void **state)
{
    struct fixture *f = *state;
    char certs[96];
    snprintf(certs, sizeof(certs), "%s/certs", f->dir);
    struct tls_ctx *node1 = load_ctx(certs, "node-1");
    struct tcp_link *link;
    assert_int_equal(tcp_link_dial(&link, f->addr[0], node1, 2000), 0);
    struct wire_msg m, reply;
    hostile_vote(&m, 2); /* node 1's certificate, claiming to be node 2 */
    uint8_t *buf = NULL;
    size_t cap = 0;
    assert_int_not_equal(tcp_link_roundtrip(link, &m, &reply, &buf, &cap, 2000), 0);
    free(buf);
    tcp_link_close(link);
    tls_ctx_free(node1);
    cluster_unharmed(f, "node 1's certificate claiming id 2");
}

static void test_garbage_before_handshake_costs_its_connection(void **state)
{
    struct fixture *f = *state;
    int fd = tcp_dial(f->addr[2], 2000);
    assert_true(fd >= 0);
    char junk[300];
    memset(junk, 0x16, sizeof(junk)); /* looks like a handshake record, is not */
    send_raw(fd, junk, sizeof(junk));
    assert_true(closed_within(fd, CLOSE_WAIT_MS));
    close(fd);
    cluster_unharmed(f, "garbage before the handshake");
}

/* The first half of a real ClientHello, then silence: the node's
 * handshake bound closes it. */
static void test_truncated_handshake_costs_its_connection(void **state)
{
    struct fixture *f = *state;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
    assert_int_equal(SSL_do_handshake(ssl), -1); /* wants the server's answer */
    char *hello;
    long len = BIO_get_mem_data(wbio, &hello);
    assert_true(len > 20);
    int fd = tcp_dial(f->addr[1], 2000);
    assert_true(fd >= 0);
    send_raw(fd, hello, (size_t)len / 2);
    uint64_t start = test_now_ms();
    assert_true(closed_within(fd, CLOSE_WAIT_MS));
    assert_true(test_now_ms() - start >= 1000); /* it waited for the rest */
    close(fd);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    cluster_unharmed(f, "a truncated handshake");
    put_get(f, "after-hostile", "still");
}

/* ---- hundreds of half-open handshakes ---- */

#define HALF_OPEN 300
/* The slowest put (or fresh connection) allowed meanwhile, times
 * chaos_time_scale() (3 under ThreadSanitizer): below the handshake bound,
 * so a put never waits for the flood to time out, with room for an
 * AddressSanitizer build doing 300 handshakes on a loaded machine (1.0 s
 * was seen there). */
#define PUT_BOUND_MS 2000

/* A client that keeps writing, through one session, while the node it
 * writes to is flooded; every fifth put it also opens a fresh connection
 * (status), which must find room among the half-open ones. */
struct writer {
    struct fixture *f;
    unsigned target;
    atomic_bool stop;
    atomic_uint puts; /* read by the test while the writer runs */
    unsigned failures, fresh;
    uint64_t worst_ms;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct kv_client *c;
    if (kv_client_open(&c, w->f->addrs, NODES, 5000) != 0)
        return NULL;
    kv_client_set_tls(c, w->f->client);
    while (!atomic_load(&w->stop)) {
        char key[32];
        unsigned n = atomic_load(&w->puts);
        snprintf(key, sizeof(key), "flood-%u", n);
        uint64_t start = test_now_ms();
        int rc = kv_client_put(c, key, (uint32_t)strlen(key), "v", 1);
        if (rc == 0 && n % 5 == 0) {
            /* A fresh connection, dialed again if its handshake was the
             * oldest in progress when the flood filled the cap: the node
             * drops the oldest to make room, and a client dials again. */
            struct client_reply r;
            for (int attempt = 0; attempt < 2; attempt++) {
                rc = kv_client_status_tls(w->f->addr[w->target], w->f->client, 2000, &r);
                if (rc == 0)
                    break;
            }
            w->fresh += rc == 0;
        }
        uint64_t took = test_now_ms() - start;
        w->worst_ms = took > w->worst_ms ? took : w->worst_ms;
        w->failures += rc != 0;
        atomic_fetch_add(&w->puts, 1);
    }
    kv_client_close(c);
    return NULL;
}

/* The node that leads now, by asking each. */
static unsigned leader_index(struct fixture *f)
{
    for (unsigned i = 0; i < NODES; i++) {
        struct client_reply r;
        if (kv_client_status_tls(f->addr[i], f->client, 1000, &r) == 0 &&
            r.role == RAFT_LEADER)
            return i;
    }
    fail_msg("no node leads");
    return 0;
}

/* How many lines of the cluster's log hold needle. */
static int log_lines(struct fixture *f, const char *needle)
{
    char path[96], line[1024];
    snprintf(path, sizeof(path), "%s/cluster.log", f->dir);
    FILE *in = fopen(path, "r");
    int n = 0;
    while (in && fgets(line, sizeof(line), in))
        n += strstr(line, needle) != NULL;
    if (in)
        fclose(in);
    return n;
}

/* Half of a real ClientHello, in hello (its length returned). */
static size_t half_client_hello(uint8_t *hello, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
    assert_int_equal(SSL_do_handshake(ssl), -1);
    char *bytes;
    long len = BIO_get_mem_data(wbio, &bytes);
    assert_true(len > 20 && (size_t)len / 2 <= cap);
    memcpy(hello, bytes, (size_t)len / 2);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return (size_t)len / 2;
}

/* Waits until every fd in fds has been closed by the node; the time at
 * which the last one was, in ms since start, or 0 if some stay open. */
static uint64_t all_closed_within(int *fds, unsigned n, uint64_t start, unsigned timeout_ms)
{
    uint64_t last = 0;
    unsigned open = n;
    while (open > 0 && test_now_ms() - start < timeout_ms) {
        for (unsigned i = 0; i < n; i++) {
            if (fds[i] < 0)
                continue;
            uint8_t buf[256];
            ssize_t r = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                close(fds[i]);
                fds[i] = -1;
                open--;
                last = test_now_ms() - start;
            }
        }
        usleep(20 * 1000);
    }
    return open == 0 ? last : 0;
}

/* 300 connections to the leader that send nothing, or half a ClientHello,
 * and hang. Meanwhile a client keeps putting and opening fresh
 * connections: each succeeds within PUT_BOUND_MS, because connections in
 * the handshake hold only half of the connection limit (the oldest makes
 * room for a new one). The node closes every one of them within its
 * handshake bound, and logs them at most once a second. */
static void test_hundreds_of_half_open_handshakes(void **state)
{
    struct fixture *f = *state;
    struct writer w = {.f = f, .target = leader_index(f)};
    int logged_before = log_lines(f, "at most one a second is logged");
    pthread_t writer;
    assert_int_equal(pthread_create(&writer, NULL, writer_main, &w), 0);
    usleep(200 * 1000);
    unsigned puts_before = atomic_load(&w.puts);

    uint8_t hello[2048];
    size_t hello_len = half_client_hello(hello, sizeof(hello));
    int fds[HALF_OPEN];
    uint64_t start = test_now_ms();
    for (unsigned i = 0; i < HALF_OPEN; i++) {
        fds[i] = tcp_dial(f->addr[w.target], 2000);
        assert_true(fds[i] >= 0);
        if (i % 2)
            send_raw(fds[i], hello, hello_len);
    }
    /* At once, while the flood holds more than the connection limit and
     * none of it has been idle long enough to give way as idle: a new
     * connection still gets in, in the place of the oldest handshake. */
    struct client_reply r;
    uint64_t fresh_start = test_now_ms();
    int fresh = kv_client_status_tls(f->addr[w.target], f->client, 2000, &r);
    uint64_t fresh_ms = test_now_ms() - fresh_start;
    uint64_t last_closed = all_closed_within(fds, HALF_OPEN, start,
                                             HANDSHAKE_BOUND_MS + 3000);
    atomic_store(&w.stop, true);
    pthread_join(writer, NULL);
    for (unsigned i = 0; i < HALF_OPEN; i++)
        if (fds[i] >= 0)
            close(fds[i]);

    int logged = log_lines(f, "at most one a second is logged") - logged_before;
    printf("    %d half-open handshakes to the leader n%u: the last closed after %llu ms; "
           "a new connection right after them answered in %llu ms; meanwhile %u puts (%u "
           "with a fresh connection), %u failed, the slowest %llu ms; %d log lines about "
           "them\n", HALF_OPEN, w.target, (unsigned long long)last_closed,
           (unsigned long long)fresh_ms, atomic_load(&w.puts) - puts_before, w.fresh, w.failures,
           (unsigned long long)w.worst_ms, logged);
    assert_int_equal(fresh, 0);
    unsigned bound = PUT_BOUND_MS * chaos_time_scale();
    assert_true(fresh_ms < bound);
    assert_true(last_closed > 0); /* every one closed... */
    assert_true(last_closed <= HANDSHAKE_BOUND_MS + 3000); /* ...by the bound, and soon */
    assert_int_equal(w.failures, 0);
    assert_true(atomic_load(&w.puts) - puts_before >= 10);
    assert_true(w.fresh >= 2);
    assert_true(w.worst_ms < bound);
    /* Once a second at most over the flood, plus the first. */
    assert_true(logged >= 1);
    assert_true(logged <= (int)(last_closed / 1000) + 2);
    cluster_unharmed(f, "300 half-open handshakes");
}

static void test_half_given_tls_flags_are_a_usage_error(void **state)
{
    struct fixture *f = *state;
    char ca[96], log[96];
    snprintf(ca, sizeof(ca), "%s/certs/ca.crt", f->dir);
    snprintf(log, sizeof(log), "%s/usage.log", f->dir);
    const char *half[] = {raft_bin(), "client", "--cluster", f->addr[0], "--tls-ca", ca,
                          "status", NULL};
    assert_int_equal(run(log, half), 2);
    const char *node[] = {raft_bin(), "node", "--id", "0", "--peers", f->addr[0],
                          "--tls-key", ca, NULL};
    assert_int_equal(run(log, node), 2);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_certs_keys_are_private),
        cmocka_unit_test(test_tls_client_puts_and_gets),
        cmocka_unit_test(test_plaintext_client_gets_nothing),
        cmocka_unit_test(test_client_of_another_ca_is_refused),
        cmocka_unit_test(test_client_cert_cannot_speak_peer_protocol),
        cmocka_unit_test(test_node_cert_cannot_claim_another_id),
        cmocka_unit_test(test_garbage_before_handshake_costs_its_connection),
        cmocka_unit_test(test_truncated_handshake_costs_its_connection),
        cmocka_unit_test(test_hundreds_of_half_open_handshakes),
        cmocka_unit_test(test_half_given_tls_flags_are_a_usage_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
