/*
 * system_membership_cli.c - changing a running cluster's members from the
 * command line, with real `raft node` processes over TCP (thesis ch. 4):
 * `member list` as text and as JSON; a node started with --listen only
 * joins as a learner, serves a client, is promoted, takes the leadership,
 * and a client given another node's address finds it although it was not
 * in --cluster; a voter is removed and says so in its log; `status` given
 * one address asks every member; and every refusal the contract names
 * exits 5 with its sentence.
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
#include <cmocka.h>

#include "kv/client.h"
#include "tests/support/procs.h"

static struct procs_result res;

/* The command ended with status, and its stream holds want. */
static void expect(const struct procs_result *r, int status, const char *stream,
                   const char *want)
{
    const char *text = stream[0] == 'o' ? r->out : r->err;
    if (r->status != status || (want && !strstr(text, want)))
        fprintf(stderr, "wanted exit %d and '%s' on std%s; got exit %d\nstdout:\n%s\n"
                "stderr:\n%s\n", status, want ? want : "", stream, r->status, r->out, r->err);
    assert_int_equal(r->status, status);
    if (want)
        assert_non_null(strstr(text, want));
}

static unsigned wait_ms(const struct procs *p, unsigned ms)
{
    return ms * p->scale;
}

/* Nodes 0, 1 and 2 from one --peers list, and a leader among them. */
static struct procs *three_nodes(void **state, const char *name)
{
    struct procs *p = procs_new(name, 3);
    *state = p;
    for (unsigned i = 0; i < 3; i++)
        procs_start(p, i, false, NULL, NULL);
    assert_true(procs_wait_leader(p, 07, wait_ms(p, 10000)) >= 0);
    return p;
}

/* `raft client --cluster <p's peers> ARGS...` */
static void client(struct procs *p, struct procs_result *r, const char *a1, const char *a2,
                   const char *a3, const char *a4, const char *a5)
{
    const char *args[] = {"client", "--cluster", p->peers, "--timeout", "20", a1, a2, a3, a4,
                          a5, NULL};
    procs_runv(p, r, wait_ms(p, 30000), args);
}

static void test_member_list_shows_every_member_as_text_and_json(void **state)
{
    struct procs *p = three_nodes(state, "member-list");
    client(p, &res, "member", "list", NULL, NULL, NULL);
    expect(&res, 0, "out", NULL);
    char want[128];
    const char *line = res.out;
    for (unsigned i = 0; i < 3; i++) {
        snprintf(want, sizeof(want), "id=%u addr=%s voter=true match=", i, p->node[i].addr);
        assert_memory_equal(line, want, strlen(want));
        line += strlen(want);
        assert_true(strtoul(line, (char **)&line, 10) >= 1); /* the leader's no-op at least */
        assert_int_equal(*line++, '\n');
    }
    assert_int_equal(*line, '\0'); /* one line per member, nothing else */

    client(p, &res, "member", "list", "--json", NULL, NULL);
    expect(&res, 0, "out", NULL);
    line = res.out;
    for (unsigned i = 0; i < 3; i++) {
        snprintf(want, sizeof(want), "{\"id\": %u, \"addr\": \"%s\", \"voter\": true, "
                 "\"match\": ", i, p->node[i].addr);
        assert_memory_equal(line, want, strlen(want));
        line = strchr(line, '\n');
        assert_non_null(line);
        assert_int_equal(line[-1], '}');
        line++;
    }
    assert_int_equal(*line, '\0');
    procs_finish_or_fail(state);
}

/* The leader's commit index, as the leader tells it. */
static uint64_t leader_commit(struct procs *p)
{
    int leader = procs_wait_leader(p, 0xff, wait_ms(p, 10000));
    assert_true(leader >= 0);
    struct client_reply r;
    assert_int_equal(kv_client_status(p->node[leader].addr, 1000, &r), 0);
    return r.commit;
}

static void test_a_learner_joins_is_promoted_and_a_voter_leaves(void **state)
{
    struct procs *p = three_nodes(state, "member-change");
    client(p, &res, "put", "colour", "blue", NULL, NULL);
    expect(&res, 0, "out", NULL);

    /* n3 starts with --listen only: in no configuration, it waits. */
    procs_start(p, 3, true, NULL, NULL);
    const char *n3 = p->node[3].addr;
    client(p, &res, "member", "add", "--learner", "3", n3);
    expect(&res, 0, "out", "n3 (");
    assert_non_null(strstr(res.out, ") is a learner\n"));
    client(p, &res, "member", "list", NULL, NULL, NULL);
    char want[128];
    snprintf(want, sizeof(want), "id=3 addr=%s voter=false match=", n3);
    expect(&res, 0, "out", want);

    /* It holds the log; asked directly, it sends the client to the leader.
     * (A learner is added without waiting for it: it started in no
     * configuration, and said so.) */
    assert_int_equal(procs_wait_applied(p, 3, leader_commit(p), wait_ms(p, 10000)), 0);
    assert_int_equal(procs_log_count(p, 3, "in no configuration yet"), 1);
    procs_run(p, &res, wait_ms(p, 20000), "client", "--cluster", n3, "get", "colour", NULL);
    expect(&res, 0, "out", "blue\n");

    client(p, &res, "member", "add", "3", n3, NULL);
    expect(&res, 0, "out", ") is a voter\n");
    client(p, &res, "member", "list", NULL, NULL, NULL);
    snprintf(want, sizeof(want), "id=3 addr=%s voter=true match=", n3);
    expect(&res, 0, "out", want);

    /* n3 leads; a client given n1 alone reaches it through n1's hint,
     * although n3 is in no list the client was given. */
    client(p, &res, "transfer", "3", NULL, NULL, NULL);
    expect(&res, 0, "out", "n3 leads\n");
    procs_run(p, &res, wait_ms(p, 20000), "client", "--cluster", p->node[1].addr, "put",
              "shape", "round", NULL);
    expect(&res, 0, "out", NULL);
    procs_run(p, &res, wait_ms(p, 20000), "client", "--cluster", p->node[1].addr, "get",
              "shape", NULL);
    expect(&res, 0, "out", "round\n");

    client(p, &res, "member", "remove", "0", NULL, NULL);
    expect(&res, 0, "out", "n0 removed\n");
    client(p, &res, "member", "list", NULL, NULL, NULL);
    expect(&res, 0, "out", "id=3 ");
    assert_null(strstr(res.out, "id=0 "));
    assert_true(procs_log_count(p, 0, "this node is no longer a member") >= 1);

    /* Given one address, status asks every member that node knows. */
    procs_run(p, &res, wait_ms(p, 20000), "client", "--cluster", p->node[1].addr, "status",
              NULL);
    expect(&res, 0, "out", n3);
    snprintf(want, sizeof(want), "%-3u %-22s %-14s", 3, n3, "leader");
    assert_non_null(strstr(res.out, want));
    assert_non_null(strstr(res.out, "n1 n2 n3"));
    assert_null(strstr(res.out, p->node[0].addr)); /* n0 is no member any more */
    procs_run(p, &res, wait_ms(p, 20000), "client", "--cluster", n3, "status", "--json", NULL);
    expect(&res, 0, "out", "\"config\": {\"index\": ");
    assert_non_null(strstr(res.out, "\"members\": [{\"id\": 1, "));
    procs_finish_or_fail(state);
}

static void test_refused_changes_exit_5_with_their_reason(void **state)
{
    struct procs *p = three_nodes(state, "member-refused");
    procs_start(p, 3, true, NULL, NULL);
    client(p, &res, "member", "add", "--learner", "3", p->node[3].addr);
    expect(&res, 0, "out", NULL);

    client(p, &res, "member", "add", "1", p->node[1].addr, NULL);
    expect(&res, 5, "err", "The cluster refused the change: n1 is already a voter.");
    client(p, &res, "member", "add", "--learner", "3", p->node[3].addr);
    expect(&res, 5, "err", "n3 is already a learner.");
    client(p, &res, "member", "remove", "9", NULL, NULL);
    expect(&res, 5, "err", "n9 is not a member");
    client(p, &res, "transfer", "3", NULL, NULL, NULL);
    expect(&res, 5, "err", "The cluster refused the transfer: ");

    client(p, &res, "member", "remove", "2", NULL, NULL);
    expect(&res, 0, "out", "n2 removed\n");
    client(p, &res, "member", "add", "2", p->node[2].addr, NULL);
    expect(&res, 5, "err", "n2 was removed from this cluster before, and ids are never reused");
    client(p, &res, "member", "remove", "2", NULL, NULL);
    expect(&res, 5, "err", "n2 was removed already.");

    /* A voter that never answers cannot catch up: it stays a learner. */
    client(p, &res, "member", "add", "4", p->node[4].addr, NULL);
    expect(&res, 5, "err", "n4 could not catch up");
    client(p, &res, "member", "list", NULL, NULL, NULL);
    char want[96];
    snprintf(want, sizeof(want), "id=4 addr=%s voter=false", p->node[4].addr);
    expect(&res, 0, "out", want);
    client(p, &res, "member", "remove", "4", NULL, NULL);
    expect(&res, 0, "out", "n4 removed\n");
    procs_finish_or_fail(state);
}

static void test_removing_the_last_voter_is_refused(void **state)
{
    struct procs *p = procs_new("last-voter", 1);
    *state = p;
    procs_start(p, 0, false, NULL, NULL);
    assert_int_equal(procs_wait_leader(p, 1, wait_ms(p, 10000)), 0);
    procs_run(p, &res, wait_ms(p, 20000), "client", "--cluster", p->peers, "member", "remove",
              "0", NULL);
    expect(&res, 5, "err", "n0 is the last voter");
    procs_finish_or_fail(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_member_list_shows_every_member_as_text_and_json,
                                  procs_teardown),
        cmocka_unit_test_teardown(test_a_learner_joins_is_promoted_and_a_voter_leaves,
                                  procs_teardown),
        cmocka_unit_test_teardown(test_refused_changes_exit_5_with_their_reason,
                                  procs_teardown),
        cmocka_unit_test_teardown(test_removing_the_last_voter_is_refused, procs_teardown),
    };
    return cmocka_run_group_tests_name("system: membership from the command line", tests, NULL,
                                       NULL);
}
