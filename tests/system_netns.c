/*
 * system_netns.c - three `raft node` processes on three "machines": each in
 * a network namespace of its own with its own address, joined by a bridge
 * (tests/support/netns.h), talking mutual TLS with certificates from `raft
 * certs --hosts` that name those addresses. The test's clients run in the
 * root namespace, as a fourth machine would, with the client certificate.
 *
 * Under a checked load (tests/chaos/workload.h: puts and gets of shared
 * keys, and write-once keys), the leader's cable is pulled: its port on
 * the switch goes down. The other two elect a leader and keep committing;
 * the cut-off leader, seen from inside its own namespace, steps down
 * (check-quorum, thesis §6.2). The cable goes back in: the old leader
 * follows the new one and catches up. Then every acknowledged put must be
 * there and the clients' history must be linearizable.
 *
 * Namespaces take root and the ip command: elsewhere the test is skipped
 * with one line saying why. Whatever happens, the namespaces and their
 * links are deleted in the teardown.
 *
 * Runs the binary named by $RAFT_BIN (make test sets it), with timeouts
 * multiplied by chaos_time_scale() for the slower sanitizer builds.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "kv/client.h"
#include "net/tls.h"
#include "raft/raft.h"
#include "tests/chaos/cluster.h"
#include "tests/chaos/lincheck.h"
#include "tests/chaos/workload.h"
#include "tests/support/clock.h"
#include "tests/support/files.h"
#include "tests/support/netns.h"

#define NODES 3
#define PORT 7000 /* every machine listens on the same port, as real ones would */
#define PROGRESS_PUTS 15 /* acknowledged puts asked for in each phase */

struct fixture {
    struct netns_net net;
    unsigned scale;
    const char *bin;
    char root[64]; /* logs, data directories and certificates */
    char certs[96];
    char addr[NODES][40];
    char *addrs[NODES + 1];
    char peers[NODES * 40];
    char log[NODES][112];
    pid_t pid[NODES];
    struct tls_ctx *client;
    struct lincheck_history *history;
    struct chaos_workload *load;
    bool skipped, passed;
};

/* ---- the machines and the nodes on them ---- */

static void make_network_or_skip(struct fixture *f)
{
    char why[512];
    enum netns_result r = netns_make(&f->net, NODES, why, sizeof(why));
    if (r == NETNS_UNAVAILABLE) {
        print_message("system_netns: skipped: %s\n", why);
        f->skipped = true;
        skip();
    }
    if (r != NETNS_OK)
        fail_msg("cannot make the test network: %s", why);
    size_t len = 0;
    for (unsigned i = 0; i < NODES; i++) {
        snprintf(f->addr[i], sizeof(f->addr[i]), "%s:%d", f->net.host_ip[i], PORT);
        f->addrs[i] = f->addr[i];
        len += (size_t)snprintf(f->peers + len, sizeof(f->peers) - len, "%s%s", i ? "," : "",
                                f->addr[i]);
    }
}

/* `raft certs` with every machine's address as a subject alternative name. */
static void make_certs(struct fixture *f)
{
    char hosts[NODES * 24] = "", out[128];
    for (unsigned i = 0; i < NODES; i++)
        snprintf(hosts + strlen(hosts), sizeof(hosts) - strlen(hosts), "%s%s", i ? "," : "",
                 f->net.host_ip[i]);
    snprintf(f->certs, sizeof(f->certs), "%s/certs", f->root);
    snprintf(out, sizeof(out), "%s/certs.out", f->root);
    char *argv[] = {(char *)f->bin, "certs", "--out", f->certs, "--nodes", "3",
                    "--hosts", hosts, NULL};
    if (test_run_to_file(argv, out, 10000) != 0)
        fail_msg("raft certs failed (its output is in %s)", out);
    char ca[128], cert[128], key[128], err[256];
    snprintf(ca, sizeof(ca), "%s/ca.crt", f->certs);
    snprintf(cert, sizeof(cert), "%s/client.crt", f->certs);
    snprintf(key, sizeof(key), "%s/client.key", f->certs);
    struct tls_files files = {.ca = ca, .cert = cert, .key = key};
    if (tls_ctx_new(&f->client, &files, err, sizeof(err)) != 0)
        fail_msg("cannot load the client certificate: %s", err);
}

static void start_node(struct fixture *f, unsigned i)
{
    char id[8], data[96], election[32], heartbeat[16];
    snprintf(id, sizeof(id), "%u", i);
    snprintf(data, sizeof(data), "%s/node-%u", f->root, i);
    snprintf(election, sizeof(election), "%u-%u", 150 * f->scale, 300 * f->scale);
    snprintf(heartbeat, sizeof(heartbeat), "%u", 50 * f->scale);
    snprintf(f->log[i], sizeof(f->log[i]), "%s/node-%u.log", f->root, i);
    const char *argv[] = {f->bin, "node", "--id", id, "--peers", f->peers, "--data-dir", data,
                          "--tls-dir", f->certs, "--election-timeout", election,
                          "--heartbeat", heartbeat, NULL};
    f->pid[i] = netns_spawn(&f->net, i, f->log[i], argv);
    if (f->pid[i] <= 0)
        fail_msg("cannot start node %u in %s", i, f->net.host_ns[i]);
}

/* SIGTERM, then SIGKILL if it is still running after bound_ms: its wait
 * status, or -1 if it was not running. */
static int stop_node(struct fixture *f, unsigned i, unsigned bound_ms)
{
    if (f->pid[i] <= 0)
        return -1;
    kill(f->pid[i], SIGTERM);
    int status = 0;
    uint64_t deadline = test_now_ms() + bound_ms;
    while (waitpid(f->pid[i], &status, WNOHANG) == 0) {
        if (test_now_ms() > deadline) {
            kill(f->pid[i], SIGKILL);
            waitpid(f->pid[i], &status, 0);
            break;
        }
        test_sleep_ms(10);
    }
    f->pid[i] = 0;
    return status;
}

static void print_log_tails(struct fixture *f)
{
    for (unsigned i = 0; i < NODES; i++) {
        char cmd[160];
        if (access(f->log[i], R_OK) != 0)
            continue;
        fprintf(stderr, "---- %s (last lines)\n", f->log[i]);
        snprintf(cmd, sizeof(cmd), "tail -n 30 %s >&2", f->log[i]);
        if (system(cmd) != 0)
            fprintf(stderr, "(could not print it)\n");
    }
}

/* ---- what the nodes say ---- */

static int status_of(struct fixture *f, unsigned i, struct client_reply *r)
{
    return kv_client_status_tls(f->addr[i], f->client, 500 * f->scale, r);
}

/* The node among `among` (a bitmask) that leads in a term >= min_term, as
 * seen from the root namespace; -1 after timeout_ms. */
static int wait_leader(struct fixture *f, uint32_t among, uint64_t min_term,
                       unsigned timeout_ms, uint64_t *term)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    while (test_now_ms() < deadline) {
        for (unsigned i = 0; i < NODES; i++) {
            struct client_reply r;
            if ((among >> i & 1) && status_of(f, i, &r) == 0 && r.role == RAFT_LEADER &&
                r.term >= min_term) {
                *term = r.term;
                return (int)i;
            }
        }
        test_sleep_ms(50);
    }
    return -1;
}

/* Node i's role as it tells it through `raft client status --json` run
 * inside its own namespace (the only place it can be reached from while
 * its cable is out), into role; false if it did not answer. */
static bool own_view(struct fixture *f, unsigned i, char *role, size_t cap)
{
    char timeout[16], out[4096], want[24];
    snprintf(timeout, sizeof(timeout), "%u", f->scale);
    const char *argv[] = {f->bin, "client", "--cluster", f->addr[i], "--tls-dir", f->certs,
                          "--timeout", timeout, "status", "--json", NULL};
    if (netns_run(&f->net, i, argv, out, sizeof(out), 5000 * f->scale) != 0)
        return false;
    snprintf(want, sizeof(want), "{\"id\": %u,", i);
    const char *line = strstr(out, want);
    const char *at = line ? strstr(line, "\"role\": \"") : NULL;
    if (!at)
        return false;
    at += strlen("\"role\": \"");
    size_t n = strcspn(at, "\"");
    snprintf(role, cap, "%.*s", (int)(n < cap ? n : cap - 1), at);
    return true;
}

/* Waits until node i, seen from inside its namespace, no longer leads. */
static bool wait_stepped_down(struct fixture *f, unsigned i, unsigned timeout_ms, char *role,
                              size_t cap)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    snprintf(role, cap, "(no answer)");
    while (test_now_ms() < deadline) {
        if (own_view(f, i, role, cap) && strcmp(role, "leader") != 0)
            return true;
        test_sleep_ms(100);
    }
    return false;
}

/* Waits until node i follows `leader` in a term >= term and has applied
 * what the leader had committed when the wait began. */
static bool wait_follows_and_caught_up(struct fixture *f, unsigned i, unsigned leader,
                                       uint64_t term, unsigned timeout_ms)
{
    struct client_reply lr, r;
    uint64_t deadline = test_now_ms() + timeout_ms;
    while (status_of(f, leader, &lr) != 0) {
        if (test_now_ms() > deadline)
            return false;
        test_sleep_ms(50);
    }
    while (test_now_ms() < deadline) {
        if (status_of(f, i, &r) == 0 && r.role == RAFT_FOLLOWER && r.term >= term &&
            r.leader == (int32_t)leader && r.applied >= lr.commit)
            return true;
        test_sleep_ms(50);
    }
    return false;
}

/* ---- the load ---- */

static void start_load(struct fixture *f)
{
    f->history = lincheck_new();
    assert_non_null(f->history);
    struct chaos_workload_options opt = {.clients = 3, .op_timeout_ms = 3000 * f->scale,
                                         .seed = (uint64_t)getpid(), .tls = f->client};
    assert_int_equal(chaos_workload_start(&f->load, f->addrs, NODES, &opt, f->history), 0);
}

static void progress_or_fail(struct fixture *f, const char *phase)
{
    if (chaos_workload_wait_progress(f->load, PROGRESS_PUTS, 8000 * f->scale) != 0) {
        char what[256];
        chaos_workload_describe(f->load, what, sizeof(what));
        fail_msg("no %d acknowledged puts %s (%s)", PROGRESS_PUTS, phase, what);
    }
}

/* The command line from the fourth machine: a put and a get over TLS. */
static void cli_put_get(struct fixture *f)
{
    char out[128], text[256];
    snprintf(out, sizeof(out), "%s/client.out", f->root);
    char *put[] = {(char *)f->bin, "client", "--cluster", f->peers, "--tls-dir", f->certs,
                   "put", "machines", "three", NULL};
    char *get[] = {(char *)f->bin, "client", "--cluster", f->peers, "--tls-dir", f->certs,
                   "get", "machines", NULL};
    assert_int_equal(test_run_to_file(put, out, 10000 * f->scale), 0);
    assert_int_equal(test_run_to_file(get, out, 10000 * f->scale), 0);
    FILE *in = fopen(out, "r");
    assert_non_null(in);
    size_t n = fread(text, 1, sizeof(text) - 1, in);
    fclose(in);
    text[n] = '\0';
    assert_string_equal(text, "three\n");
}

/* ---- the test ---- */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->scale = chaos_time_scale();
    f->bin = getenv("RAFT_BIN") && *getenv("RAFT_BIN") ? getenv("RAFT_BIN") : "build/raft";
    snprintf(f->root, sizeof(f->root), "/tmp/raft-netns-XXXXXX");
    if (!mkdtemp(f->root)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

/* Runs after the test whatever its end: a failed assertion, a skip or a
 * pass. The nodes go first, so that no process keeps a namespace alive. */
static int teardown(void **state)
{
    struct fixture *f = *state;
    chaos_workload_free(f->load);
    lincheck_free(f->history);
    if (!f->passed && !f->skipped)
        print_log_tails(f);
    for (unsigned i = 0; i < NODES; i++)
        stop_node(f, i, 5000 * f->scale);
    netns_destroy(&f->net);
    tls_ctx_free(f->client);
    char cmd[96];
    if ((!f->passed && !f->skipped) || getenv("CHAOS_KEEP")) {
        fprintf(stderr, "kept %s\n", f->root);
    } else {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->root);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", f->root);
    }
    free(f);
    return 0;
}

/* Every node stops on SIGTERM with status 0, and no log holds a sanitizer
 * report. */
static void stop_cleanly(struct fixture *f)
{
    for (unsigned i = 0; i < NODES; i++) {
        int status = stop_node(f, i, 20000);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("n%u did not stop cleanly (wait status %d)", i, status);
    }
    for (unsigned i = 0; i < NODES; i++)
        if (test_file_count_lines(f->log[i], "Sanitizer") ||
            test_file_count_lines(f->log[i], "runtime error:"))
            fail_msg("n%u's log %s holds a sanitizer report", i, f->log[i]);
}

static void test_tls_across_namespaces_keeps_every_acknowledged_put(void **state)
{
    struct fixture *f = *state;
    make_network_or_skip(f);
    make_certs(f);
    for (unsigned i = 0; i < NODES; i++)
        start_node(f, i);
    uint64_t term;
    int old = wait_leader(f, (1u << NODES) - 1, 1, 10000 * f->scale, &term);
    if (old < 0)
        fail_msg("no leader within %u ms across %s", 10000 * f->scale, f->peers);
    print_message("n%d leads T%llu at %s\n", old, (unsigned long long)term, f->addr[old]);
    cli_put_get(f);
    start_load(f);
    progress_or_fail(f, "before the cut");

    assert_int_equal(netns_set_link(&f->net, (unsigned)old, false), 0);
    uint64_t cut_at = test_now_ms(), new_term;
    uint32_t others = ((1u << NODES) - 1) & ~(1u << old);
    int leader = wait_leader(f, others, term + 1, 10000 * f->scale, &new_term);
    if (leader < 0)
        fail_msg("with n%d's cable out, the other two elected no leader", old);
    print_message("cable of n%d out: n%d leads T%llu after %llu ms\n", old, leader,
                  (unsigned long long)new_term, (unsigned long long)(test_now_ms() - cut_at));
    char role[32];
    if (!wait_stepped_down(f, (unsigned)old, 5000 * f->scale, role, sizeof(role)))
        fail_msg("cut off, n%d still says it leads (its own view: %s)", old, role);
    print_message("n%d, seen from inside its namespace: %s\n", old, role);
    progress_or_fail(f, "while the old leader was cut off");

    assert_int_equal(netns_set_link(&f->net, (unsigned)old, true), 0);
    if (!wait_follows_and_caught_up(f, (unsigned)old, (unsigned)leader, new_term,
                                    10000 * f->scale))
        fail_msg("cable back in, n%d did not follow n%d and catch up", old, leader);
    progress_or_fail(f, "after the cable went back in");

    chaos_workload_halt(f->load);
    char msg[512], what[256];
    chaos_workload_describe(f->load, what, sizeof(what));
    print_message("%s\n", what);
    if (chaos_workload_verify(f->load, msg, sizeof(msg)) != 0)
        fail_msg("%s", msg);
    stop_cleanly(f);
    f->passed = true;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tls_across_namespaces_keeps_every_acknowledged_put,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
