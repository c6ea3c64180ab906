/*
 * system_console.c - `raft cluster` driven through its console, as a
 * learner at `make run` (or a script behind a pipe) drives it: put, get,
 * status, crash the leader and see another elected, restart it and see it
 * catch up, isolate a follower and heal it, add a node, hand it the
 * leadership and remove an original one, quit. Then `raft dump` of a
 * node's directory shows the put decoded, and `raft client` against closed
 * ports gives up at once, with a sentence that says why.
 *
 * Runs the binary named by $RAFT_BIN (make test sets it).
 */
#include <errno.h>
#include <poll.h>
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
#define REPLY_WAIT_MS 15000 /* a put may wait out an election */
#define SETTLE_MS 10000     /* for an election, a catch-up */

static const char *bin(void)
{
    return getenv("RAFT_BIN") ? getenv("RAFT_BIN") : "build/raft";
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static char *file_text(const char *path)
{
    static char buf[1 << 17];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

/* ---- the cluster behind a pipe ---- */

struct console {
    pid_t pid;
    int in, out;     /* its standard input and output */
    char buf[8192];  /* what it printed and we have not read yet */
    size_t have;
    char dir[64], log[96];
    struct port_reservation ports[NODES];
};

static void start_cluster(struct console *c)
{
    memset(c, 0, sizeof(*c));
    assert_int_equal(port_reserve_run(c->ports, NODES), 0);
    snprintf(c->dir, sizeof(c->dir), "/tmp/raft-console-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    snprintf(c->log, sizeof(c->log), "%s/cluster.log", c->dir);
    char base[16], data[96];
    snprintf(base, sizeof(base), "%d", c->ports[0].port);
    snprintf(data, sizeof(data), "%s/data", c->dir);
    int to[2], from[2];
    assert_int_equal(pipe(to), 0);
    assert_int_equal(pipe(from), 0);
    fflush(NULL);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        dup2(to[0], STDIN_FILENO);
        dup2(from[1], STDOUT_FILENO);
        close(to[1]);
        close(from[0]);
        if (!freopen(c->log, "w", stderr))
            _exit(127);
        execl(bin(), bin(), "cluster", "--base-port", base, "--data-dir", data,
              "--election-timeout", "300-600", "--heartbeat", "100", (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    c->in = to[1];
    c->out = from[0];
}

static void say(struct console *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Types one command. */
static void say(struct console *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    line[n++] = '\n';
    assert_int_equal(write(c->in, line, (size_t)n), n);
}

/* Reads one reply line into line (without its newline). */
static void hear(struct console *c, char *line, size_t cap)
{
    uint64_t deadline = now_ms() + REPLY_WAIT_MS;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->have);
        if (nl) {
            size_t len = (size_t)(nl - c->buf);
            snprintf(line, cap, "%.*s", (int)len, c->buf);
            c->have -= len + 1;
            memmove(c->buf, nl + 1, c->have);
            return;
        }
        uint64_t now = now_ms();
        struct pollfd p = {.fd = c->out, .events = POLLIN};
        if (now >= deadline || poll(&p, 1, (int)(deadline - now)) <= 0) {
            fprintf(stderr, "no reply from the console; its log:\n%s", file_text(c->log));
            fail();
        }
        ssize_t n = read(c->out, c->buf + c->have, sizeof(c->buf) - 1 - c->have);
        if (n <= 0) {
            fprintf(stderr, "the console closed its output; its log:\n%s", file_text(c->log));
            fail();
        }
        c->have += (size_t)n;
    }
}

/* Types a command and checks that its reply begins with want. */
static void expect(struct console *c, const char *command, const char *want)
{
    char line[512];
    say(c, "%s", command);
    hear(c, line, sizeof(line));
    if (strncmp(line, want, strlen(want)) != 0)
        fail_msg("%s: the reply '%s' does not begin with '%s'", command, line, want);
}

static void stop_cluster(struct console *c)
{
    if (c->in >= 0)
        close(c->in);
    close(c->out);
    for (int i = 0; i < NODES; i++)
        port_release(&c->ports[i]);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", c->dir);
}

/* ---- status ---- */

struct view {
    char role[16]; /* "down" for a crashed node */
    int leader;    /* -1: none */
    unsigned long long term, commit, applied, last;
    bool isolated;
};

static void parse_view(const char *line, unsigned id, struct view *v)
{
    memset(v, 0, sizeof(*v));
    v->leader = -1;
    unsigned got_id;
    char leader[16] = "";
    if (sscanf(line, "n%u role=%15s", &got_id, v->role) != 2 || got_id != id)
        fail_msg("status line '%s' is not about n%u", line, id);
    if (!strcmp(v->role, "down"))
        return;
    if (sscanf(line, "n%*u role=%*s term=%llu leader=%15s commit=%llu applied=%llu "
               "last_index=%llu", &v->term, leader, &v->commit, &v->applied, &v->last) != 5)
        fail_msg("status line '%s' lacks a field", line);
    if (leader[0] == 'n')
        v->leader = atoi(leader + 1);
    v->isolated = strstr(line, " isolated") != NULL;
}

static void status(struct console *c, struct view *v)
{
    say(c, "status");
    for (unsigned i = 0; i < NODES; i++) {
        char line[512];
        hear(c, line, sizeof(line));
        parse_view(line, i, &v[i]);
    }
}

/* The one node that leads and is followed by every other live, connected
 * node in its term; -1 if there is none (yet). */
static int agreed_leader(const struct view *v)
{
    int leader = -1;
    for (int i = 0; i < NODES; i++)
        if (!strcmp(v[i].role, "leader") && !v[i].isolated)
            leader = leader < 0 ? i : -2;
    if (leader < 0)
        return -1;
    for (int i = 0; i < NODES; i++)
        if (strcmp(v[i].role, "down") && !v[i].isolated &&
            (v[i].leader != leader || v[i].term != v[leader].term))
            return -1;
    return leader;
}

/* Polls status until a leader other than `not` is agreed on. */
static int wait_leader(struct console *c, struct view *v, int not)
{
    uint64_t deadline = now_ms() + SETTLE_MS;
    for (;;) {
        status(c, v);
        int leader = agreed_leader(v);
        if (leader >= 0 && leader != not)
            return leader;
        if (now_ms() > deadline)
            fail_msg("no new leader after %d ms; the log:\n%s", SETTLE_MS, file_text(c->log));
        pause_ms(100);
    }
}

/* Polls status until node id follows and has applied index. */
static void wait_applied(struct console *c, struct view *v, int id, unsigned long long index)
{
    uint64_t deadline = now_ms() + SETTLE_MS;
    for (;;) {
        status(c, v);
        if (!strcmp(v[id].role, "follower") && v[id].applied >= index && !v[id].isolated)
            return;
        if (now_ms() > deadline)
            fail_msg("n%d did not apply %llu (role %s, applied %llu)", id, index, v[id].role,
                     v[id].applied);
        pause_ms(100);
    }
}

/* ---- the tests ---- */

static void check_dump(const struct console *c, int node)
{
    char cmd[256], path[128];
    snprintf(path, sizeof(path), "%s/dump.txt", c->dir);
    snprintf(cmd, sizeof(cmd), "%s dump %s/data/node-%d > %s", bin(), c->dir, node, path);
    assert_int_equal(system(cmd), 0);
    const char *text = file_text(path);
    if (!strstr(text, "put greeting = hello") || !strstr(text, "seq 1"))
        fail_msg("the dump does not show the put decoded:\n%s", text);
}

/* The walkthrough of the README, asserted. */
static void test_console_crash_restart_isolate_heal(void **state)
{
    (void)state;
    struct console con, *c = &con;
    struct view v[NODES];
    char line[512];
    start_cluster(c);
    /* On a pipe, no hint comes first: the first line is help's reply. */
    expect(c, "help", "commands: status | put K V | get K | crash N | restart N |");
    int leader = wait_leader(c, v, -1);

    expect(c, "put greeting hello", "ok: greeting = hello");
    expect(c, "get greeting", "hello");
    status(c, v);
    unsigned long long put_index = v[leader].commit, first_term = v[leader].term;
    assert_true(put_index >= 2); /* the leader's no-op, then the put */

    /* Usage errors name the command and what it takes. */
    expect(c, "frob 1", "error: unknown command frob; the commands are help,");
    expect(c, "crash 7", "error: crash takes one node number, from 0 to 2; got 7.");
    expect(c, "put lonely", "error: put takes a key and a value");
    expect(c, "heal now", "error: heal takes no arguments.");

    snprintf(line, sizeof(line), "crash %d", leader);
    expect(c, line, "ok: n");
    int second = wait_leader(c, v, leader);
    assert_string_equal(v[leader].role, "down");
    assert_true(v[second].term > first_term);
    expect(c, "get greeting", "hello");

    snprintf(line, sizeof(line), "restart %d", leader);
    expect(c, line, "ok: n");
    wait_applied(c, v, leader, put_index);

    int follower = (second + 1) % NODES;
    snprintf(line, sizeof(line), "isolate %d", follower);
    expect(c, line, "ok: n");
    /* The other two still commit; the isolated one hears nothing of it. */
    expect(c, "put k2 v2", "ok: k2 = v2");
    status(c, v);
    assert_true(v[follower].isolated);
    assert_true(v[follower].applied < v[second].commit);
    expect(c, "heal", "ok: healed n");
    wait_applied(c, v, follower, v[second].commit);
    expect(c, "get k2", "v2");

    expect(c, "quit", "ok: stopping");
    int st;
    assert_int_equal(waitpid(c->pid, &st, 0), c->pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    check_dump(c, follower);
    stop_cluster(c);
}

/* The console grows the cluster: member add starts a node on the next
 * free port and adds it, transfer hands it the leadership, member remove
 * takes an original node out; member list shows each step. */
static void test_console_member_add_transfer_remove(void **state)
{
    (void)state;
    struct console con, *c = &con;
    struct view v[NODES];
    char line[512];
    start_cluster(c);
    expect(c, "help", "commands: status | put K V | get K | crash N | restart N | isolate N | "
                      "heal | transfer N | member list | member add N | member remove N | quit");
    wait_leader(c, v, -1);
    expect(c, "member add 3", "ok: n3 started on 127.0.0.1:");
    say(c, "member list");
    for (int i = 0; i < 4; i++) {
        hear(c, line, sizeof(line));
        char want[32];
        snprintf(want, sizeof(want), "n%d addr=127.0.0.1:", i);
        if (strncmp(line, want, strlen(want)) || !strstr(line, " voter=true match="))
            fail_msg("member list line %d is '%s'", i, line);
    }
    expect(c, "member add 3", "error: n3 is a node of this cluster already");
    expect(c, "transfer 3", "ok: n3 leads");
    expect(c, "put after transfer", "ok: after = transfer");
    expect(c, "member remove 0", "ok: n0 removed; it runs on, a member no more");
    say(c, "member list");
    for (int i = 1; i < 4; i++) {
        hear(c, line, sizeof(line));
        char want[32];
        snprintf(want, sizeof(want), "n%d addr=", i);
        if (strncmp(line, want, strlen(want)))
            fail_msg("member list line '%s' is not about n%d", line, i);
    }
    expect(c, "crash 4", "error: crash takes one node number, from 0 to 3; got 4.");
    expect(c, "member remove 0", "error: the cluster refused the change: n0 was removed already.");
    expect(c, "get after", "transfer");
    expect(c, "quit", "ok: stopping");
    int st;
    assert_int_equal(waitpid(c->pid, &st, 0), c->pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/data/node-3/node-id", c->dir);
    assert_int_equal(access(path, F_OK), 0); /* its own data directory */
    stop_cluster(c);
}

/* The end of the commands is not the end of the cluster: it runs on,
 * serving clients, until a stop signal. */
static void test_end_of_input_leaves_the_cluster_running(void **state)
{
    (void)state;
    struct console con, *c = &con;
    struct view v[NODES];
    start_cluster(c);
    wait_leader(c, v, -1);
    close(c->in);
    c->in = -1;
    pause_ms(500);
    int st;
    assert_int_equal(waitpid(c->pid, &st, WNOHANG), 0);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%s client --cluster 127.0.0.1:%d put after-eof yes "
             ">/dev/null 2>&1", bin(), c->ports[0].port);
    st = system(cmd);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(kill(c->pid, SIGTERM), 0);
    assert_int_equal(waitpid(c->pid, &st, 0), c->pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_non_null(strstr(file_text(c->log), "raft: SIGTERM received, stopping"));
    stop_cluster(c);
}

/* No node listens: the client says so at once instead of retrying for its
 * whole --timeout. */
static void test_client_refused_by_every_node_fails_fast(void **state)
{
    (void)state;
    struct port_reservation ports[NODES];
    assert_int_equal(port_reserve_run(ports, NODES), 0); /* bound, never listening */
    char cmd[512], path[] = "/tmp/raft-console-client-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    snprintf(cmd, sizeof(cmd), "%s client --cluster 127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d "
             "--timeout 10 put k v 2> %s", bin(), ports[0].port, ports[1].port, ports[2].port,
             path);
    uint64_t start = now_ms();
    int st = system(cmd);
    uint64_t took = now_ms() - start;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 3);
    assert_true(took < 1000);
    assert_non_null(strstr(file_text(path), "Connection refused by every node"));

    snprintf(cmd, sizeof(cmd), "%s client --cluster no-such-host.invalid:8000 --timeout 10 "
             "get k 2> %s", bin(), path);
    start = now_ms();
    st = system(cmd);
    took = now_ms() - start;
    assert_int_equal(WEXITSTATUS(st), 3);
    assert_true(took < 1000);
    assert_non_null(strstr(file_text(path), "Cannot resolve no-such-host.invalid"));
    unlink(path);
    for (int i = 0; i < NODES; i++)
        port_release(&ports[i]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_console_crash_restart_isolate_heal),
        cmocka_unit_test(test_console_member_add_transfer_remove),
        cmocka_unit_test(test_end_of_input_leaves_the_cluster_running),
        cmocka_unit_test(test_client_refused_by_every_node_fails_fast),
    };
    return cmocka_run_group_tests_name("system: the console of raft cluster", tests, NULL, NULL);
}
