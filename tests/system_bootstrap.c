/*
 * system_bootstrap.c - the first --peers of a data directory, seen from
 * the command line: it is recorded, and a node restarted with another
 * list logs a warning and starts from the recorded one (a one-node
 * cluster goes on committing alone, which the two-node list it was given
 * would not let it); a directory without the record, as the release
 * before membership changes wrote it, starts from --peers and keeps its
 * data; a damaged record stops the node (exit 4) naming the file and the
 * offset; `raft dump` shows the record.
 *
 * Runs the binary named by $RAFT_BIN (make test sets it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/clock.h"
#include "tests/support/procs.h"

static struct procs_result res;

static unsigned wait_ms(const struct procs *p, unsigned ms)
{
    return ms * p->scale;
}

static void expect(const struct procs_result *r, int status, const char *out)
{
    if (r->status != status || (out && strcmp(r->out, out) != 0))
        fprintf(stderr, "wanted exit %d and '%s'; got exit %d\nstdout:\n%s\nstderr:\n%s\n",
                status, out ? out : "", r->status, r->out, r->err);
    assert_int_equal(r->status, status);
    if (out)
        assert_string_equal(r->out, out);
}

/* A client command against node 0 alone. */
static void client0(struct procs *p, const char *a1, const char *a2, const char *a3)
{
    procs_run(p, &res, wait_ms(p, 20000), "client", "--cluster", p->node[0].addr, "--timeout",
              "5", a1, a2, a3, NULL);
}

/* Node 0 with --peers naming itself alone: a cluster of one, leading. */
static struct procs *one_node(void **state, const char *name)
{
    struct procs *p = procs_new(name, 1);
    *state = p;
    procs_start(p, 0, false, NULL, NULL);
    assert_int_equal(procs_wait_leader(p, 1, wait_ms(p, 10000)), 0);
    return p;
}

static void test_first_peers_are_kept_and_another_list_is_ignored(void **state)
{
    struct procs *p = one_node(state, "bootstrap-kept");
    client0(p, "put", "k", "1");
    expect(&res, 0, "");
    assert_int_equal(procs_log_count(p, 0, "recorded the bootstrap configuration (1 node)"), 1);
    assert_int_equal(WEXITSTATUS(procs_stop(p, 0)), 0);

    /* Restarted with a second node in --peers that does not exist: were
     * that the configuration, nothing could commit without it. */
    char two[80];
    snprintf(two, sizeof(two), "%s,%s", p->node[0].addr, p->node[1].addr);
    procs_start(p, 0, false, two, NULL);
    assert_int_equal(procs_wait_leader(p, 1, wait_ms(p, 10000)), 0);
    client0(p, "put", "k", "2");
    expect(&res, 0, "");
    client0(p, "get", "k", NULL);
    expect(&res, 0, "2\n");
    assert_int_equal(procs_log_count(p, 0, "differs from the configuration this data "
                                           "directory's cluster started from"), 1);
    assert_int_equal(procs_log_count(p, 0, "--peers is ignored"), 1);
    procs_run(p, &res, wait_ms(p, 10000), "client", "--cluster", p->node[0].addr, "member",
              "list", NULL);
    char want[64];
    snprintf(want, sizeof(want), "id=0 addr=%s voter=true match=", p->node[0].addr);
    assert_memory_equal(res.out, want, strlen(want));
    assert_null(strstr(res.out, "id=1 "));
    procs_finish_or_fail(state);
}

/* The release before membership changes kept no bootstrap file; its
 * directories are this one without it. */
static void test_directory_without_the_record_starts_from_peers(void **state)
{
    struct procs *p = one_node(state, "bootstrap-old");
    client0(p, "put", "kept", "yes");
    expect(&res, 0, "");
    assert_int_equal(WEXITSTATUS(procs_stop(p, 0)), 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/bootstrap", p->node[0].dir);
    assert_int_equal(unlink(path), 0);

    procs_start(p, 0, false, NULL, NULL);
    assert_int_equal(procs_wait_leader(p, 1, wait_ms(p, 10000)), 0);
    client0(p, "get", "kept", NULL);
    expect(&res, 0, "yes\n");
    assert_int_equal(procs_log_count(p, 0, "recorded the bootstrap configuration"), 2);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(procs_log_count(p, 0, "--peers is ignored"), 0);
    procs_finish_or_fail(state);
}

static void test_damaged_record_stops_the_node_naming_file_and_offset(void **state)
{
    struct procs *p = one_node(state, "bootstrap-damaged");
    assert_int_equal(WEXITSTATUS(procs_stop(p, 0)), 0);
    procs_run(p, &res, wait_ms(p, 10000), "dump", p->node[0].dir, NULL);
    char want[96];
    snprintf(want, sizeof(want), "bootstrap: n0 [%s]\n", p->node[0].addr);
    assert_int_equal(res.status, 0);
    assert_non_null(strstr(res.out, want));

    char path[160];
    snprintf(path, sizeof(path), "%s/bootstrap", p->node[0].dir);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 8, SEEK_SET), 0); /* the length of the configuration */
    assert_int_equal(fputc(0x7f, f), 0x7f);
    fclose(f);

    procs_start(p, 0, false, NULL, NULL);
    uint64_t deadline = test_now_ms() + wait_ms(p, 10000);
    int status = -1;
    while (test_now_ms() < deadline && waitpid(p->node[0].pid, &status, WNOHANG) == 0)
        test_sleep_ms(20);
    assert_true(WIFEXITED(status));
    p->node[0].pid = 0;
    assert_int_equal(WEXITSTATUS(status), 4);
    char line[256];
    snprintf(line, sizeof(line), "%s: the configuration is cut short at offset 8", path);
    assert_int_equal(procs_log_count(p, 0, line), 1);
    procs_run(p, &res, wait_ms(p, 10000), "dump", p->node[0].dir, NULL);
    assert_int_equal(res.status, 4);
    assert_non_null(strstr(res.out, "bootstrap: the configuration is cut short at offset 8 "
                                    "(corrupt)\n"));
    procs_finish_or_fail(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_first_peers_are_kept_and_another_list_is_ignored,
                                  procs_teardown),
        cmocka_unit_test_teardown(test_directory_without_the_record_starts_from_peers,
                                  procs_teardown),
        cmocka_unit_test_teardown(test_damaged_record_stops_the_node_naming_file_and_offset,
                                  procs_teardown),
    };
    return cmocka_run_group_tests_name("system: the bootstrap configuration", tests, NULL,
                                       NULL);
}
