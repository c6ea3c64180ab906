/*
 * system_failover.c - how long a client waits when its leader is cut off:
 * three `raft node` processes at their default timing, a proxy on every
 * link, and a client session already talking to the leader. The leader is
 * cut off from both followers (the client still reaches it), and one put
 * is timed from the cut until it is acknowledged, three times. The session
 * found the leader through a follower's hint, whose address (the
 * follower's route to its peer, here a proxy) the cut takes down.
 *
 * A leader that steps down answers the puts it holds at once, with its
 * best hint, and the client moves on at once: so the wait is about one
 * check-quorum period (thesis §6.2) plus an election, not the client's
 * per-node wait (KV_CLIENT_ATTEMPT_MS).
 *
 * Tests named *_timing_sensitive assert a bound on time: a machine loaded
 * enough to stall a node for an election timeout can fail them. The bound
 * is generous; the real times are printed.
 *
 * Runs the binary named by $RAFT_BIN (make test sets it).
 */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "kv/client.h"
#include "raft/raft.h"
#include "tests/chaos/cluster.h"
#include "tests/support/clock.h"

#define TRIALS 3
/* The bound asserted on the median, ms (times chaos_time_scale()): about
 * twice the ~0.6 s expected, and under the client's per-node wait
 * (KV_CLIENT_ATTEMPT_MS), which is what a session that waits out the old
 * leader, or a route to it that is down, costs at least. */
#define MEDIAN_BOUND_MS (KV_CLIENT_ATTEMPT_MS - 150)

static void put_or_fail(struct chaos_cluster *c, struct kv_client *kc, const char *key)
{
    int rc = kv_client_put(kc, key, (uint32_t)strlen(key), "v", 1);
    if (rc) {
        fprintf(stderr, "put %s: %s\n", key, strerror(-rc));
        chaos_cluster_failed(c, "a put failed");
    }
    assert_int_equal(rc, 0);
}

/* Whether one line of node i's log has both a and b. */
static bool log_has_line(const struct chaos_cluster *c, unsigned i, const char *a,
                         const char *b)
{
    char path[256], line[1024];
    chaos_cluster_log_path(c, i, path, sizeof(path));
    FILE *f = fopen(path, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f))
        found = strstr(line, a) && strstr(line, b);
    if (f)
        fclose(f);
    return found;
}

/* A session that has just written through the leader, having found it by
 * a follower's hint (as two sessions in three do: each starts at a node
 * of its own), so that its connection is open to the leader. Sessions
 * that happened to start at the leader are closed and another is opened. */
static struct kv_client *session_via_hint(struct chaos_cluster *c, int leader, unsigned trial)
{
    for (unsigned attempt = 0; attempt < 30; attempt++) {
        struct kv_client *kc;
        assert_int_equal(kv_client_open(&kc, c->addrs, c->n, 10000 * chaos_time_scale()), 0);
        char key[32], put[48];
        snprintf(key, sizeof(key), "warm-%u-%u", trial, attempt);
        put_or_fail(c, kc, key);
        snprintf(put, sizeof(put), "put %s from", key);
        for (unsigned i = 0; i < c->n; i++)
            if ((int)i != leader && log_has_line(c, i, put, "redirect to"))
                return kc;
        kv_client_close(kc);
    }
    chaos_cluster_failed(c, "30 sessions in a row started at the leader");
    fail();
    return NULL;
}

/* `raft client put KEY v`, a fresh session that starts at a node of its
 * own choosing; fails the test unless it exits 0. */
static void cli_put_or_fail(struct chaos_cluster *c, const char *key)
{
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 1);
        execl(c->bin, c->bin, "client", "--cluster", c->addr_list, "put", key, "v",
              (char *)NULL);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        chaos_cluster_failed(c, "raft client put failed after the cut");
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* One trial: the cut, then one timed put, by a session that reached the
 * leader through a hint before the cut (cli false) or by `raft client`
 * started after it (cli true). Returns the ms from the cut to the
 * acknowledgement; heals and waits for a leader agreed by all three. */
static uint64_t time_one_cut(struct chaos_cluster *c, unsigned trial, bool cli)
{
    int leader = chaos_cluster_leader(c, 10000 * chaos_time_scale());
    if (leader < 0)
        chaos_cluster_failed(c, "no leader within 10 s");
    assert_true(leader >= 0);
    struct kv_client *kc = cli ? NULL : session_via_hint(c, leader, trial);
    char key[32];
    snprintf(key, sizeof(key), "cut-%s-%u", cli ? "cli" : "session", trial);

    chaos_cluster_isolate(c, (unsigned)leader);
    uint64_t t0 = test_now_ms();
    if (cli)
        cli_put_or_fail(c, key);
    else
        put_or_fail(c, kc, key);
    uint64_t took = test_now_ms() - t0;
    kv_client_close(kc);

    chaos_cluster_heal(c);
    /* The old leader rejoins as a follower before the next trial. */
    int next = chaos_cluster_wait_leader(c, chaos_cluster_all(c), 0, 10000 * chaos_time_scale(),
                                         NULL);
    printf("    trial %u: n%d cut off from both followers -> %s put acknowledged after "
           "%llu ms; n%d leads after the heal\n",
           trial, leader, cli ? "`raft client`" : "a session's", (unsigned long long)took,
           next);
    assert_true(next >= 0);
    return took;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void three_trials(void **state, bool cli)
{
    struct chaos_cluster_options o = {.nodes = 3, .name = "failover"};
    struct chaos_cluster *c = chaos_cluster_start_or_fail(state, &o);
    uint64_t took[TRIALS];
    for (unsigned i = 0; i < TRIALS; i++)
        took[i] = time_one_cut(c, i + 1, cli);
    qsort(took, TRIALS, sizeof(took[0]), cmp_u64);
    uint64_t median = took[TRIALS / 2];
    printf("    median of %d trials: %llu ms (bound %u ms)\n", TRIALS,
           (unsigned long long)median, MEDIAN_BOUND_MS * chaos_time_scale());
    if (median >= MEDIAN_BOUND_MS * chaos_time_scale())
        chaos_cluster_failed(c, "a put waited too long after the cut");
    assert_true(median < MEDIAN_BOUND_MS * chaos_time_scale());
    chaos_cluster_stop_or_fail(state);
}

static void test_session_reaches_new_leader_soon_after_cut_timing_sensitive(void **state)
{
    three_trials(state, false);
}

static void test_cli_put_after_cut_reaches_new_leader_soon_timing_sensitive(void **state)
{
    three_trials(state, true);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_session_reaches_new_leader_soon_after_cut_timing_sensitive,
            chaos_cluster_teardown),
        cmocka_unit_test_teardown(
            test_cli_put_after_cut_reaches_new_leader_soon_timing_sensitive,
            chaos_cluster_teardown),
    };
    return cmocka_run_group_tests_name("system: a client's failover when its leader is cut off",
                                       tests, NULL, NULL);
}
