/*
 * unit_lab_traces.c - the lab harness keeps the traces of a test that
 * fails (tests/support/lab_traces.c). This binary runs itself as a helper
 * (LAB_TRACES_HELPER=name runs only that helper test) and reads what the
 * helper printed and left behind: a failed test names its directory of
 * traces beside its seed, the files in it pair every receive with exactly
 * one send, and the `raft timeline` command it prints draws them; a test
 * that fails by a plain assertion says the same; a test that passes
 * leaves nothing, unless RAFT_TRACE=keep; RAFT_TRACE=off writes nothing,
 * and a value RAFT_TRACE does not take is refused in one sentence.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/cluster.h"
#include "tests/support/files.h"

#define HELPER_TIMEOUT_MS 60000
#define SEED "4242"
#define MAX_IDS 20000

static const char *self; /* this binary, to run as a helper */

/* ---- the helpers: lab tests, run in a child process ---- */

static void helper_fails_after_an_agreement(void **state)
{
    struct cluster_opts opts = {.n = 3};
    struct cluster *c = cluster_new(state, "helper", "deliberate failure", &opts);
    cluster_check_one_leader(c);
    cluster_one_int(c, 101, 3, false);
    cluster_fatal(c, "this test fails on purpose, after one agreement");
}

static void helper_fails_an_assertion(void **state)
{
    struct cluster_opts opts = {.n = 1};
    struct cluster *c = cluster_new(state, "helper", "failed assertion", &opts);
    cluster_one_int(c, 7, 1, false);
    assert_true(cluster_n(c) == 2); /* fails: a plain cmocka assertion */
}

static void helper_passes(void **state)
{
    struct cluster_opts opts = {.n = 1};
    struct cluster *c = cluster_new(state, "helper", "passing test", &opts);
    cluster_one_int(c, 7, 1, false);
    cluster_end(c);
}

static int run_helper(const char *name)
{
    const struct CMUnitTest all[] = {
        cmocka_unit_test_teardown(helper_fails_after_an_agreement, cluster_teardown),
        cmocka_unit_test_teardown(helper_fails_an_assertion, cluster_teardown),
        cmocka_unit_test_teardown(helper_passes, cluster_teardown),
    };
    cmocka_set_test_filter(name);
    return cmocka_run_group_tests_name("helper", all, NULL, NULL);
}

/* ---- running one ---- */

struct helper_run {
    char dir[64];     /* RAFT_TRACE_DIR */
    char out[96];     /* what it printed */
    int rc;
    char *text;
};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* Runs helper `name` with RAFT_TRACE set to trace (NULL: unset). */
static void run(struct helper_run *r, const char *name, const char *trace)
{
    snprintf(r->dir, sizeof(r->dir), "/tmp/raft-lab-traces-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    memcpy(r->out, r->dir, sizeof(r->dir)); /* out is the longer */
    strcat(r->out, ".out");
    setenv("LAB_TRACES_HELPER", name, 1);
    setenv("RAFT_TRACE_DIR", r->dir, 1);
    setenv("RAFT_SEED", SEED, 1);
    if (trace)
        setenv("RAFT_TRACE", trace, 1);
    char *argv[] = {(char *)self, NULL};
    r->rc = test_run_to_file(argv, r->out, HELPER_TIMEOUT_MS);
    unsetenv("LAB_TRACES_HELPER");
    unsetenv("RAFT_TRACE_DIR");
    unsetenv("RAFT_SEED");
    unsetenv("RAFT_TRACE");
    r->text = slurp(r->out);
    /* A sanitizer's report in the helper would hide behind its failure. */
    static const char *reports[] = {"WARNING: ThreadSanitizer", "ERROR: AddressSanitizer",
                                    "runtime error:", "ERROR: LeakSanitizer"};
    for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++)
        if (strstr(r->text, reports[i]))
            fail_msg("the helper %s reported \"%s\":\n%s", name, reports[i], r->text);
}

static void run_done(struct helper_run *r)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", r->dir, r->out);
    assert_int_equal(system(cmd), 0);
    free(r->text);
}

/* How many entries the directory holds, . and .. aside. */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int k = 0;
    for (struct dirent *e; (e = readdir(d));)
        k += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return k;
}

/* ---- reading the traces ---- */

struct ids {
    char v[MAX_IDS][32];
    size_t n;
};

static int by_string(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The ids of the ev lines (send or recv) of nodes 0..n-1, sorted. */
static void read_ids(const char *dir, unsigned n, const char *ev, struct ids *out)
{
    char want[48];
    snprintf(want, sizeof(want), "\"ev\":\"%s\",\"msg\":{\"id\":\"", ev);
    out->n = 0;
    for (unsigned i = 0; i < n; i++) {
        char path[160], line[1024];
        snprintf(path, sizeof(path), "%s/node-%u.jsonl", dir, i);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f)) {
            const char *p = strstr(line, want);
            if (!p || out->n == MAX_IDS)
                continue;
            p += strlen(want);
            snprintf(out->v[out->n++], sizeof(out->v[0]), "%.*s", (int)strcspn(p, "\""), p);
        }
        fclose(f);
    }
    qsort(out->v, out->n, sizeof(out->v[0]), by_string);
}

/* Every recv has exactly one send of its id. Returns how many recvs. */
static size_t check_pairs(const char *dir, unsigned n)
{
    static struct ids sends, recvs;
    read_ids(dir, n, "send", &sends);
    read_ids(dir, n, "recv", &recvs);
    assert_true(recvs.n > 10);
    for (size_t i = 0; i < recvs.n; i++) {
        char *hit = bsearch(recvs.v[i], sends.v, sends.n, sizeof(sends.v[0]), by_string);
        if (!hit)
            fail_msg("recv of message %s, which no trace sent", recvs.v[i]);
        size_t k = (size_t)(hit - sends.v[0]) / sizeof(sends.v[0]);
        bool twice = (k > 0 && !strcmp(sends.v[k - 1], hit)) ||
                     (k + 1 < sends.n && !strcmp(sends.v[k + 1], hit));
        if (twice)
            fail_msg("message id %s sent twice", hit);
    }
    return recvs.n;
}

/* The text after `key` on its line, into out. */
static void line_after(const char *text, const char *key, char *out, size_t cap)
{
    const char *p = strstr(text, key);
    if (!p)
        fail_msg("no line has \"%s\" in:\n%s", key, text);
    p += strlen(key);
    snprintf(out, cap, "%.*s", (int)strcspn(p, "\n"), p);
}

/* ---- the tests ---- */

static void test_a_failed_test_names_traces_that_pair_and_draw(void **state)
{
    (void)state;
    struct helper_run r;
    run(&r, "helper_fails_after_an_agreement", NULL);
    assert_int_not_equal(r.rc, 0);
    char dir[128], want[256];
    snprintf(dir, sizeof(dir), "%s/unit_lab_traces-deliberate-failure-" SEED, r.dir);
    /* Beside the seed and the replay command. */
    snprintf(want, sizeof(want), "    seed " SEED ": replay with RAFT_SEED=" SEED "\n"
             "    trace: %s/node-I.jsonl, I = 0..2 (complete once the test ends)\n"
             "    draw it: ", dir);
    if (!strstr(r.text, want))
        fail_msg("no \"%s\" in:\n%s", want, r.text);
    size_t received = check_pairs(dir, 3);
    /* The command as printed draws them. */
    char draw[512];
    line_after(r.text, "    draw it: ", draw, sizeof(draw));
    assert_non_null(strstr(draw, " timeline --out "));
    strncat(draw, " >/dev/null", sizeof(draw) - strlen(draw) - 1);
    assert_int_equal(system(draw), 0);
    char page[160];
    snprintf(page, sizeof(page), "%s/run.html", dir);
    char *html = slurp(page);
    char matched[32];
    snprintf(matched, sizeof(matched), "data-matched=\"%zu\"", received);
    assert_non_null(strstr(html, matched));
    free(html);
    run_done(&r);
}

static void test_a_failed_assertion_names_its_traces(void **state)
{
    (void)state;
    struct helper_run r;
    run(&r, "helper_fails_an_assertion", NULL);
    assert_int_not_equal(r.rc, 0);
    char want[256];
    snprintf(want, sizeof(want), "=== \"failed assertion\" (helper) did not pass; seed " SEED
             ": replay with RAFT_SEED=" SEED "\n    trace: %s/unit_lab_traces-failed-"
             "assertion-" SEED "/node-I.jsonl, I = 0..0\n", r.dir);
    if (!strstr(r.text, want))
        fail_msg("no \"%s\" in:\n%s", want, r.text);
    char path[160];
    snprintf(path, sizeof(path), "%s/unit_lab_traces-failed-assertion-" SEED "/node-0.jsonl",
             r.dir);
    assert_int_equal(access(path, R_OK), 0);
    run_done(&r);
}

static void test_a_passed_test_leaves_no_traces_unless_kept(void **state)
{
    (void)state;
    struct helper_run r;
    run(&r, "helper_passes", NULL);
    assert_int_equal(r.rc, 0);
    assert_null(strstr(r.text, "trace:"));
    assert_int_equal(entries(r.dir), 0);
    run_done(&r);

    run(&r, "helper_passes", "keep");
    assert_int_equal(r.rc, 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/unit_lab_traces-passing-test-" SEED, r.dir);
    assert_non_null(strstr(r.text, path));
    strncat(path, "/node-0.jsonl", sizeof(path) - strlen(path) - 1);
    char *trace = slurp(path);
    assert_non_null(strstr(trace, "\"ev\":\"apply\""));
    free(trace);
    run_done(&r);
}

static void test_traces_can_be_turned_off(void **state)
{
    (void)state;
    struct helper_run r;
    run(&r, "helper_fails_an_assertion", "off");
    assert_int_not_equal(r.rc, 0);
    assert_non_null(strstr(r.text, "(no traces: RAFT_TRACE=off)"));
    assert_int_equal(entries(r.dir), 0);
    run_done(&r);

    run(&r, "helper_passes", "always");
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.text, "RAFT_TRACE takes keep (keep every test's traces) or off "
                                   "(write none); got \"always\".\n"));
    run_done(&r);
}

int main(int argc, char **argv)
{
    (void)argc;
    self = argv[0];
    const char *helper = getenv("LAB_TRACES_HELPER");
    if (helper && *helper)
        return run_helper(helper);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_failed_test_names_traces_that_pair_and_draw),
        cmocka_unit_test(test_a_failed_assertion_names_its_traces),
        cmocka_unit_test(test_a_passed_test_leaves_no_traces_unless_kept),
        cmocka_unit_test(test_traces_can_be_turned_off),
    };
    return cmocka_run_group_tests_name("unit_lab_traces", tests, NULL, NULL);
}
