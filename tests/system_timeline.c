/*
 * system_timeline.c - traces and their picture, end to end: a real
 * `raft cluster --trace-dir` elects a leader and takes a put from
 * `raft client`; every receive in its traces pairs with a send of the same
 * message id; `raft timeline` writes the page and a ShiViz log whose vector
 * clocks count each host's own events 1, 2, 3, ...; and, where Chromium is
 * installed, a headless browser renders the page with every node named and
 * as many arrows as the page says it drew. Nodes crashed and restarted
 * onto the same trace files reuse no message id: each receive still pairs
 * with the one send it answers.
 *
 * Runs the binary named by $RAFT_BIN (make test sets it).
 */
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
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/chaos/ports.h"

#define NODES 3
#define MAX_IDS 20000
#define CHROMIUM "/usr/bin/chromium"

static const char *bin(void)
{
    return getenv("RAFT_BIN") ? getenv("RAFT_BIN") : "build/raft";
}

static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs a shell command; returns its exit status. */
static int run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

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

/* ---- the traced run ---- */

struct traced_run {
    char dir[64];
    struct port_reservation ports[NODES];
};

static void traced_cluster_with_a_put(struct traced_run *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(port_reserve_run(r->ports, NODES), 0);
    snprintf(r->dir, sizeof(r->dir), "/tmp/raft-timeline-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    char base[16], data[96], traces[96], log[96];
    snprintf(base, sizeof(base), "%d", r->ports[0].port);
    snprintf(data, sizeof(data), "%s/data", r->dir);
    snprintf(traces, sizeof(traces), "%s/traces", r->dir);
    snprintf(log, sizeof(log), "%s/cluster.log", r->dir);
    int keep_open[2]; /* its console sees no end of input until it is stopped */
    assert_int_equal(pipe(keep_open), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(keep_open[0], STDIN_FILENO);
        close(keep_open[1]);
        if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout))
            _exit(127);
        execl(bin(), bin(), "cluster", "--base-port", base, "--data-dir", data,
              "--trace-dir", traces, (char *)NULL);
        _exit(127);
    }
    close(keep_open[0]);
    int p = r->ports[0].port;
    /* The client gives up at once (exit 3) on ports nobody listens on yet:
     * a slow build (ThreadSanitizer) may still be starting its nodes. */
    int rc = 3;
    for (int tries = 0; rc == 3 && tries < 40; tries++) {
        if (tries)
            pause_ms(250);
        rc = run("%s client --cluster 127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d --timeout 10 "
                 "put greeting hello >/dev/null 2>&1", bin(), p, p + 1, p + 2);
    }
    pause_ms(300); /* the followers hear the new commit index */
    kill(pid, SIGTERM);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(keep_open[1]);
    assert_int_equal(rc, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Puts through the console of a traced cluster while n0, then n1, is
 * crashed and restarted: each restart appends to its node's trace. */
static void traced_cluster_with_restarts(struct traced_run *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(port_reserve_run(r->ports, NODES), 0);
    snprintf(r->dir, sizeof(r->dir), "/tmp/raft-timeline-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    /* quit once the last put is acknowledged (at most 30 s on), and the
     * restarted n1 has had half a second to answer the leader */
    int rc = run("printf 'put a 1\\ncrash 0\\nput b 2\\nrestart 0\\ncrash 1\\nput c 3\\n"
                 "restart 1\\nput d 4\\n' >%s/script && : >%s/out && (cat %s/script; i=0; "
                 "while ! grep -q 'ok: d = 4' %s/out && [ $i -lt 300 ]; do sleep 0.1; "
                 "i=$((i + 1)); done; sleep 0.5; echo quit) | "
                 "%s cluster --base-port %d --data-dir %s/data --trace-dir %s/traces "
                 ">>%s/out 2>%s/cluster.log", r->dir, r->dir, r->dir, r->dir, bin(),
                 r->ports[0].port, r->dir, r->dir, r->dir, r->dir);
    char path[96];
    snprintf(path, sizeof(path), "%s/out", r->dir);
    char *out = slurp(path);
    if (rc != 0 || !strstr(out, "ok: n1 restarted") || !strstr(out, "ok: d = 4"))
        fail_msg("the console run did not go as scripted (exit %d):\n%s", rc, out);
    assert_non_null(strstr(out, "ok: n0 restarted"));
    free(out);
}

static void traced_run_done(struct traced_run *r)
{
    for (int i = 0; i < NODES; i++)
        port_release(&r->ports[i]);
    if (run("rm -rf %s", r->dir) != 0)
        fprintf(stderr, "could not remove %s\n", r->dir);
}

/* ---- reading the traces back ---- */

struct ids {
    char v[MAX_IDS][32];
    size_t n;
};

/* The message id of a send or recv line into id; false for other lines. */
static bool line_id(const char *line, const char *ev, char *id, size_t cap)
{
    char want[32];
    snprintf(want, sizeof(want), "\"ev\":\"%s\"", ev);
    const char *p = strstr(line, want), *q = strstr(line, "\"msg\":{\"id\":\"");
    if (!p || !q)
        return false;
    q += strlen("\"msg\":{\"id\":\"");
    size_t len = strcspn(q, "\"");
    snprintf(id, cap, "%.*s", (int)len, q);
    return true;
}

static bool has_id(const struct ids *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], id))
            return true;
    return false;
}

static void read_ids(const char *dir, const char *ev, struct ids *out)
{
    out->n = 0;
    for (int k = 0; k < NODES; k++) {
        char path[128], line[1024];
        snprintf(path, sizeof(path), "%s/traces/node-%d.jsonl", dir, k);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f)) {
            assert_true(strchr(line, '\n') != NULL); /* whole lines only */
            if (out->n < MAX_IDS && line_id(line, ev, out->v[out->n], sizeof(out->v[0])))
                out->n++;
        }
        fclose(f);
    }
}

/* Every recv has the send of its id; no sender used an id twice. Returns
 * how many messages were received. */
static size_t check_pairs(const char *dir)
{
    static struct ids sends, recvs;
    read_ids(dir, "send", &sends);
    read_ids(dir, "recv", &recvs);
    assert_true(sends.n > 10 && recvs.n > 10);
    for (size_t i = 0; i < recvs.n; i++)
        if (!has_id(&sends, recvs.v[i]))
            fail_msg("recv of message %s, which no trace sent", recvs.v[i]);
    for (size_t i = 1; i < sends.n; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(sends.v[i], sends.v[j]))
                fail_msg("message id %s sent twice", sends.v[i]);
    return recvs.n;
}

/* Each host's own component goes 1, 2, 3, ... down the log. */
static void check_shiviz(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    assert_non_null(fgets(line, sizeof(line), f));
    assert_non_null(strstr(line, "(?<host>"));
    assert_non_null(strstr(line, "(?<clock>"));
    assert_non_null(fgets(line, sizeof(line), f)); /* the executions delimiter: none */
    unsigned long seen[NODES] = {0};
    size_t events = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned host;
        assert_int_equal(sscanf(line, "n%u {", &host), 1);
        assert_true(host < NODES);
        char key[16];
        snprintf(key, sizeof(key), "\"n%u\":", host);
        const char *own = strstr(line, key);
        assert_non_null(own);
        unsigned long count = strtoul(own + strlen(key), NULL, 10);
        if (count != seen[host] + 1)
            fail_msg("n%u's clock went from %lu to %lu", host, seen[host], count);
        seen[host] = count;
        events++;
        assert_non_null(fgets(line, sizeof(line), f)); /* the event */
    }
    fclose(f);
    assert_true(events > 10);
    for (int k = 0; k < NODES; k++)
        assert_true(seen[k] > 0);
}

static long attr(const char *html, const char *name)
{
    char want[48];
    snprintf(want, sizeof(want), "%s=\"", name);
    const char *p = strstr(html, want);
    assert_non_null(p);
    return strtol(p + strlen(want), NULL, 10);
}

/* ---- the tests ---- */

static void test_traces_pair_and_draw(void **state)
{
    (void)state;
    struct traced_run r;
    traced_cluster_with_a_put(&r);
    size_t received = check_pairs(r.dir);
    assert_int_equal(run("%s timeline --out %s/t.html --shiviz %s/s.log %s/traces/node-0.jsonl "
                         "%s/traces/node-1.jsonl %s/traces/node-2.jsonl >/dev/null", bin(),
                         r.dir, r.dir, r.dir, r.dir, r.dir), 0);
    char path[128];
    snprintf(path, sizeof(path), "%s/t.html", r.dir);
    char *html = slurp(path);
    assert_int_equal(attr(html, "data-matched"), (long)received);
    assert_int_equal(attr(html, "data-drawn") + attr(html, "data-thinned"), (long)received);
    /* Self-contained: nothing for a browser to fetch. */
    assert_null(strstr(html, "src=\""));
    assert_null(strstr(html, "href=\""));
    assert_null(strstr(html, "<link"));
    snprintf(path, sizeof(path), "%s/s.log", r.dir);
    check_shiviz(path);
    if (access(CHROMIUM, X_OK) != 0) {
        fprintf(stderr, "skipped: %s is not installed, so the page was not rendered\n",
                CHROMIUM);
    } else {
        assert_int_equal(run("%s --headless --disable-gpu --no-sandbox --dump-dom "
                             "file://%s/t.html >%s/dom.html 2>/dev/null", CHROMIUM, r.dir,
                             r.dir), 0);
        snprintf(path, sizeof(path), "%s/dom.html", r.dir);
        char *dom = slurp(path);
        for (int k = 0; k < NODES; k++) {
            char name[32];
            snprintf(name, sizeof(name), ">n%d</text>", k);
            assert_non_null(strstr(dom, name));
        }
        assert_int_equal(attr(dom, "data-rendered"), attr(html, "data-drawn"));
        free(dom);
    }
    free(html);
    traced_run_done(&r);
}

/* Each restart starts a boot: n0's second boot numbers its messages
 * "0-2.N", and they pair as the first boot's do. */
static void test_a_restart_reuses_no_message_id(void **state)
{
    (void)state;
    struct traced_run r;
    traced_cluster_with_restarts(&r);
    size_t received = check_pairs(r.dir);
    char path[128];
    char *trace[NODES];
    for (int k = 0; k < NODES; k++) {
        snprintf(path, sizeof(path), "%s/traces/node-%d.jsonl", r.dir, k);
        trace[k] = slurp(path);
    }
    assert_null(strstr(trace[2], "\"boot\":2}")); /* n2 never restarted */
    for (int k = 0; k < 2; k++) {
        char sent[64], heard[64];
        snprintf(sent, sizeof(sent), "\"ev\":\"send\",\"msg\":{\"id\":\"%d-2.", k);
        snprintf(heard, sizeof(heard), "\"ev\":\"recv\",\"msg\":{\"id\":\"%d-2.", k);
        assert_non_null(strstr(trace[k], "\"boot\":2}"));
        assert_non_null(strstr(trace[k], sent));
        /* Its second boot was heard (by the leader, at least). */
        assert_true(strstr(trace[(k + 1) % NODES], heard) || strstr(trace[(k + 2) % NODES], heard));
    }
    for (int k = 0; k < NODES; k++)
        free(trace[k]);
    assert_int_equal(run("%s timeline --out %s/t.html %s/traces/node-0.jsonl "
                         "%s/traces/node-1.jsonl %s/traces/node-2.jsonl >/dev/null", bin(),
                         r.dir, r.dir, r.dir, r.dir), 0);
    snprintf(path, sizeof(path), "%s/t.html", r.dir);
    char *html = slurp(path);
    assert_int_equal(attr(html, "data-matched"), (long)received);
    free(html);
    traced_run_done(&r);
}

/* A hand-written trace: n1's receive merges n0's clock at the send. */
static void test_shiviz_receive_merges_the_senders_clock(void **state)
{
    (void)state;
    char dir[] = "/tmp/raft-shiviz-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(run("printf '%%s\\n' "
        "'{\"t\":1.000,\"node\":0,\"term\":1,\"role\":\"leader\",\"ev\":\"commit\",\"index\":1,\"was\":0}' "
        "'{\"t\":2.000,\"node\":0,\"term\":1,\"role\":\"leader\",\"ev\":\"send\",\"msg\":{\"id\":\"0-1\",\"type\":\"AppendEntries\",\"from\":0,\"to\":1,\"term\":1,\"prev\":0,\"prev_term\":0,\"commit\":1,\"entries\":1}}' "
        ">%s/a.jsonl && printf '%%s\\n' "
        "'{\"t\":1.500,\"node\":1,\"term\":1,\"role\":\"follower\",\"ev\":\"apply\",\"from\":1,\"to\":1}' "
        "'{\"t\":2.500,\"node\":1,\"term\":1,\"role\":\"follower\",\"ev\":\"recv\",\"msg\":{\"id\":\"0-1\",\"type\":\"AppendEntries\",\"from\":0,\"to\":1,\"term\":1,\"prev\":0,\"prev_term\":0,\"commit\":1,\"entries\":1}}' "
        ">%s/b.jsonl", dir, dir), 0);
    assert_int_equal(run("%s timeline --out %s/t.html --shiviz %s/s.log %s/a.jsonl %s/b.jsonl "
                         ">/dev/null", bin(), dir, dir, dir, dir), 0);
    char path[64];
    snprintf(path, sizeof(path), "%s/s.log", dir);
    char *log = slurp(path);
    assert_non_null(strstr(log, "n0 {\"n0\":2}\nsend AppendEntries to n1"));
    assert_non_null(strstr(log, "n1 {\"n0\":2, \"n1\":2}\nrecv AppendEntries from n0"));
    snprintf(path, sizeof(path), "%s/t.html", dir);
    char *html = slurp(path);
    assert_int_equal(attr(html, "data-matched"), 1);
    assert_non_null(strstr(html, "data-id=\"0-1\""));
    free(html);
    free(log);
    assert_int_equal(run("rm -rf %s", dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shiviz_receive_merges_the_senders_clock),
        cmocka_unit_test(test_traces_pair_and_draw),
        cmocka_unit_test(test_a_restart_reuses_no_message_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
