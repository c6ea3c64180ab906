/*
 * system_data_dir.c - one data directory, one node, seen from the command
 * line: `raft node` on a directory another live process holds exits 4
 * naming the directory and the holder's pid; on a directory that belongs
 * to another node id it exits 4 naming the directory and both ids; and
 * neither refusal disturbs the rightful owner.
 *
 * Runs the binary named by $RAFT_BIN (make test sets it).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/chaos/cluster.h"
#include "tests/support/clock.h"

/* A refused start ends at once; a node that did start would run on. */
#define REFUSAL_WAIT_MS 10000

struct run {
    int status; /* as waitpid() gives it; -1: still running, killed */
    char out[8192]; /* its stdout and stderr */
};

/* Waits up to ms for pid; kills it if it is still running. */
static int wait_or_kill(pid_t pid, unsigned ms)
{
    uint64_t deadline = test_now_ms() + ms;
    int status;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (test_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        test_sleep_ms(10);
    }
    return status;
}

/* Runs argv with its output in r->out. */
static void run_node(const char **argv, struct run *r)
{
    char path[] = "/tmp/raft-data-dir-out-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    r->status = wait_or_kill(pid, REFUSAL_WAIT_MS);
    ssize_t n = pread(fd, r->out, sizeof(r->out) - 1, 0);
    r->out[n > 0 ? n : 0] = '\0';
    close(fd);
}

static void assert_refused_with(const struct run *r, const char *want1, const char *want2)
{
    if (r->status == -1 || !WIFEXITED(r->status) || WEXITSTATUS(r->status) != 4 ||
        !strstr(r->out, want1) || !strstr(r->out, want2))
        fprintf(stderr, "expected exit 4 naming '%s' and '%s'; status %d, output:\n%s\n",
                want1, want2, r->status, r->out);
    assert_true(r->status != -1 && WIFEXITED(r->status));
    assert_int_equal(WEXITSTATUS(r->status), 4);
    assert_non_null(strstr(r->out, want1));
    assert_non_null(strstr(r->out, want2));
}

static struct chaos_cluster *start_three(void **state)
{
    struct chaos_cluster_options o = {.nodes = 3, .name = "data-dir", .direct = true};
    struct chaos_cluster *c = chaos_cluster_start_or_fail(state, &o);
    if (chaos_cluster_leader(c, 10000 * chaos_time_scale()) < 0)
        chaos_cluster_failed(c, "no leader within 10 s");
    return c;
}

/* The owner keeps leading or following: it still answers status. */
static void assert_still_serving(struct chaos_cluster *c, unsigned i)
{
    struct client_reply r;
    assert_int_equal(chaos_cluster_status(c, i, 2000, &r), 0);
    assert_int_equal(r.id, i);
}

static void test_second_process_on_a_live_directory_exits_4_naming_the_holder(void **state)
{
    struct chaos_cluster *c = start_three(state);
    const char *argv[CHAOS_NODE_ARGV];
    struct chaos_node_args buf;
    chaos_cluster_node_argv(c, 0, argv, &buf);
    struct run r;
    run_node(argv, &r);
    char holder[64];
    snprintf(holder, sizeof(holder), "in use by process %ld", (long)c->pids[0]);
    assert_refused_with(&r, buf.data, holder);
    assert_still_serving(c, 0);
    chaos_cluster_stop_or_fail(state);
}

static void test_directory_of_another_node_exits_4_naming_both_ids(void **state)
{
    struct chaos_cluster *c = start_three(state);
    chaos_cluster_stop_node_or_fail(c, 0);
    const char *argv[CHAOS_NODE_ARGV];
    struct chaos_node_args buf;
    chaos_cluster_node_argv(c, 0, argv, &buf);
    snprintf(buf.id, sizeof(buf.id), "1"); /* node 0's directory, under --id 1 */
    struct run r;
    run_node(argv, &r);
    assert_refused_with(&r, buf.data, "belongs to node 0, and node 1 was asked");
    /* Nothing changed: node 0 starts on it again and serves. */
    chaos_cluster_start_node_or_fail(c, 0);
    assert_true(chaos_cluster_wait_caught_up(c, 0, 10000 * chaos_time_scale()) >= 0);
    assert_still_serving(c, 0);
    chaos_cluster_stop_or_fail(state);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_second_process_on_a_live_directory_exits_4_naming_the_holder,
            chaos_cluster_teardown),
        cmocka_unit_test_teardown(test_directory_of_another_node_exits_4_naming_both_ids,
                                  chaos_cluster_teardown),
    };
    return cmocka_run_group_tests_name("system: one data directory, one node", tests, NULL,
                                       NULL);
}
