/*
 * system_membership.c - every machine of a cluster replaced, one server at a
 * time (thesis ch. 4), with real `raft node` processes over TCP, driven by
 * the command line an operator would type, under a live load whose history
 * must be linearizable.
 *
 * Three nodes start from `--peers`; nodes 3, 4 and 5 start with `--listen`
 * only, in no configuration. Then: add 3, remove 0, add 4, remove 1, add 5,
 * remove 2, each with `raft client member ...`; a leader about to be
 * removed first hands its leadership over (`raft client transfer`). Each
 * removed node is stopped, as its machine would be. The cluster ends as
 * nodes 3, 4 and 5; every member is then restarted (its stored
 * configuration must come back) and every acknowledged put must be there.
 *
 * Runs the binary named by $RAFT_BIN (make test sets it).
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
#include <cmocka.h>

#include "tests/chaos/cluster.h"
#include "tests/chaos/lincheck.h"
#include "tests/chaos/workload.h"
#include "tests/support/clock.h"

/* Runs `raft client --cluster <every address> ARGS`, its output into out;
 * returns its exit status (-1 if it could not run). */
static int client(struct chaos_cluster *c, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int client(struct chaos_cluster *c, char *out, size_t cap, const char *fmt, ...)
{
    char args[256], cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "%s client --cluster %s %s 2>&1", c->bin, c->addr_list, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t len = fread(out, 1, cap - 1, p);
    out[len] = '\0';
    int status = pclose(p);
    printf("$ raft client ... %s -> exit %d%s%s", args,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1, len ? ": " : "\n", out);
    fflush(stdout);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void must(struct chaos_cluster *c, bool ok, const char *what)
{
    if (!ok) {
        chaos_cluster_failed(c, what);
        fail_msg("%s", what);
    }
}

/* The node that leads now, as the members still running see it. */
static int leader_among(struct chaos_cluster *c, uint32_t running)
{
    uint64_t deadline = test_now_ms() + 10000 * chaos_time_scale();
    while (test_now_ms() < deadline) {
        for (unsigned i = 0; i < c->n; i++) {
            struct client_reply st;
            if ((running >> i & 1) && chaos_cluster_status(c, i, 500, &st) == 0 &&
                st.role == RAFT_LEADER)
                return (int)i;
        }
        test_sleep_ms(50);
    }
    return -1;
}

/* Removes node id: first moves leadership away from it, if it leads. */
static void remove_node(struct chaos_cluster *c, unsigned id, uint32_t *running)
{
    char out[2048];
    int leader = leader_among(c, *running);
    must(c, leader >= 0, "no leader among the running members");
    if ((unsigned)leader == id)
        must(c, client(c, out, sizeof(out), "transfer") == 0,
             "transfer away from the leader about to be removed");
    must(c, client(c, out, sizeof(out), "member remove %u", id) == 0, "member remove");
    must(c, chaos_cluster_kill(c, id, SIGTERM) >= 0, "stopping the removed node");
    *running &= ~(1u << id);
}

static void add_node(struct chaos_cluster *c, unsigned id, uint32_t *running)
{
    char out[2048];
    must(c, client(c, out, sizeof(out), "member add %u %s", id, c->addr[id]) == 0,
         "member add");
    *running |= 1u << id;
}

/* `member list --json` names exactly the voters in `voters`, and no learner. */
static void expect_voters(struct chaos_cluster *c, uint32_t voters)
{
    char out[4096];
    must(c, client(c, out, sizeof(out), "member list --json") == 0, "member list");
    unsigned listed = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned id;
        char *at = strstr(line, "\"id\":");
        if (!at || sscanf(at + 5, " %u", &id) != 1)
            continue;
        listed++;
        must(c, id < 32 && (voters >> id & 1), "member list names a node that left");
        must(c, strstr(line, "\"voter\": true") != NULL, "member list shows a learner");
    }
    must(c, listed == (unsigned)__builtin_popcount(voters), "member list misses a member");
}

static void test_every_machine_replaced_one_by_one_under_load(void **state)
{
    struct chaos_cluster_options opt = {.nodes = 3, .direct = true, .name = "members",
                                        .snapshot_every = "2000"};
    struct chaos_cluster *c = chaos_cluster_start_or_fail(state, &opt);
    must(c, chaos_cluster_leader(c, 10000 * chaos_time_scale()) >= 0, "no first leader");
    for (unsigned k = 0; k < 3; k++) {
        unsigned id;
        must(c, chaos_cluster_add_node(c, &id) == 0, "starting a node with --listen");
    }
    struct lincheck_history *h = lincheck_new();
    struct chaos_workload *w;
    struct chaos_workload_options wopt = {.clients = 4, .seed = 7};
    must(c, chaos_workload_start(&w, c->addrs, c->n, &wopt, h) == 0, "workload");
    must(c, chaos_workload_wait_progress(w, 20, 10000) == 0, "no progress before the changes");

    uint32_t running = 0x7;
    uint64_t start = test_now_ms();
    for (unsigned k = 0; k < 3; k++) {
        add_node(c, 3 + k, &running);
        must(c, chaos_workload_wait_progress(w, 10, 10000) == 0, "no progress after an add");
        remove_node(c, k, &running);
        must(c, chaos_workload_wait_progress(w, 10, 10000) == 0, "no progress after a removal");
    }
    printf("six changes under load in %llu ms\n", (unsigned long long)(test_now_ms() - start));
    expect_voters(c, 0x38);

    /* The configuration is stored: a restart of every member keeps it. */
    for (unsigned id = 3; id < 6; id++)
        must(c, chaos_cluster_kill(c, id, SIGTERM) >= 0, "stopping a member");
    for (unsigned id = 3; id < 6; id++)
        chaos_cluster_start_node_or_fail(c, id);
    must(c, leader_among(c, running) >= 3, "no leader among 3, 4, 5 after the restart");
    must(c, chaos_workload_wait_progress(w, 10, 10000) == 0, "no progress after the restart");
    expect_voters(c, 0x38);

    chaos_workload_halt(w);
    char msg[512], line[160];
    chaos_workload_describe(w, line, sizeof(line));
    printf("load: %s\n", line);
    int rc = chaos_workload_verify(w, msg, sizeof(msg));
    chaos_workload_free(w);
    lincheck_free(h);
    must(c, rc == 0, msg);
    chaos_cluster_stop_or_fail(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_every_machine_replaced_one_by_one_under_load,
                                  chaos_cluster_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
