/*
 * procs.c - node processes started one by one, and commands run to their
 * end (see procs.h).
 */
#include "tests/support/procs.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "kv/client.h"
#include "tests/chaos/cluster.h"
#include "tests/support/clock.h"

struct procs *procs_new(const char *name, unsigned n_peers)
{
    struct procs *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->bin = getenv("RAFT_BIN") ? getenv("RAFT_BIN") : "build/raft";
    p->scale = chaos_time_scale();
    snprintf(p->election, sizeof(p->election), "%u-%u", 150 * p->scale, 300 * p->scale);
    snprintf(p->heartbeat, sizeof(p->heartbeat), "%u", 50 * p->scale);
    snprintf(p->root, sizeof(p->root), "/tmp/raft-%s-XXXXXX", name);
    assert_non_null(mkdtemp(p->root));
    for (unsigned i = 0; i < PROCS_MAX; i++) {
        struct procs_node *n = &p->node[i];
        assert_int_equal(port_reserve(&n->port), 0);
        snprintf(n->addr, sizeof(n->addr), "127.0.0.1:%d", n->port.port);
        snprintf(n->dir, sizeof(n->dir), "%s/node-%u", p->root, i);
        snprintf(n->log, sizeof(n->log), "%s/node-%u.log", p->root, i);
    }
    for (unsigned i = 0; i < n_peers; i++)
        snprintf(p->peers + strlen(p->peers), sizeof(p->peers) - strlen(p->peers), "%s%s",
                 i ? "," : "", p->node[i].addr);
    return p;
}

void procs_free(struct procs *p)
{
    if (!p)
        return;
    for (unsigned i = 0; i < PROCS_MAX; i++) {
        if (p->node[i].pid > 0)
            procs_stop(p, i);
        port_release(&p->node[i].port);
    }
    if (p->failed || getenv("CHAOS_KEEP")) {
        fprintf(stderr, "kept %s\n", p->root);
    } else {
        char cmd[96];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", p->root);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", p->root);
    }
    free(p);
}

void procs_start(struct procs *p, unsigned id, bool listen_only, const char *peers,
                 const char *const *extra)
{
    struct procs_node *n = &p->node[id];
    assert_true(id < PROCS_MAX && n->pid == 0);
    char id_s[8];
    snprintf(id_s, sizeof(id_s), "%u", id);
    const char *argv[32];
    int argc = 0;
    argv[argc++] = p->bin;
    argv[argc++] = "node";
    argv[argc++] = "--id";
    argv[argc++] = id_s;
    argv[argc++] = listen_only ? "--listen" : "--peers";
    argv[argc++] = listen_only ? n->addr : peers ? peers : p->peers;
    argv[argc++] = "--data-dir";
    argv[argc++] = n->dir;
    argv[argc++] = "--election-timeout";
    argv[argc++] = p->election;
    argv[argc++] = "--heartbeat";
    argv[argc++] = p->heartbeat;
    for (int i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the test killed: its nodes go with it */
#endif
        int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(p->bin, (char *const *)argv);
        _exit(127);
    }
    n->pid = pid;
}

int procs_stop(struct procs *p, unsigned id)
{
    struct procs_node *n = &p->node[id];
    if (n->pid <= 0)
        return -1;
    kill(n->pid, SIGTERM);
    int status;
    uint64_t deadline = test_now_ms() + 20000;
    while (waitpid(n->pid, &status, WNOHANG) == 0) {
        if (test_now_ms() > deadline) {
            kill(n->pid, SIGKILL);
            waitpid(n->pid, &status, 0);
            break;
        }
        test_sleep_ms(10);
    }
    n->pid = 0;
    return status;
}

static int temp_fd(void)
{
    char path[] = "/tmp/raft-procs-out-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static void slurp(int fd, char *buf)
{
    ssize_t n = pread(fd, buf, PROCS_OUT_CAP - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
}

void procs_runv(struct procs *p, struct procs_result *r, unsigned timeout_ms,
                const char *const *args)
{
    const char *argv[40];
    int argc = 0;
    argv[argc++] = p->bin;
    for (int i = 0; args[i] && argc < 39; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    int out = temp_fd(), err = temp_fd();
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    uint64_t deadline = test_now_ms() + timeout_ms;
    bool killed = false;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (test_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            killed = true;
            break;
        }
        test_sleep_ms(5);
    }
    r->status = !killed && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    slurp(out, r->out);
    slurp(err, r->err);
}

void procs_run(struct procs *p, struct procs_result *r, unsigned timeout_ms, ...)
{
    const char *args[32];
    int n = 0;
    va_list ap;
    va_start(ap, timeout_ms);
    for (const char *a; n < 31 && (a = va_arg(ap, const char *)) != NULL;)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    procs_runv(p, r, timeout_ms, args);
}

int procs_wait_leader(struct procs *p, uint32_t among, unsigned timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    while (test_now_ms() < deadline) {
        for (unsigned i = 0; i < PROCS_MAX; i++) {
            struct client_reply r;
            if ((among >> i & 1) && p->node[i].pid > 0 &&
                kv_client_status(p->node[i].addr, 300, &r) == 0 && r.role == RAFT_LEADER)
                return (int)i;
        }
        test_sleep_ms(50);
    }
    return -1;
}

int procs_wait_applied(struct procs *p, unsigned id, uint64_t index, unsigned timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    while (test_now_ms() < deadline) {
        struct client_reply r;
        if (kv_client_status(p->node[id].addr, 300, &r) == 0 && r.applied >= index)
            return 0;
        test_sleep_ms(20);
    }
    return -1;
}

int procs_log_count(struct procs *p, unsigned id, const char *needle)
{
    FILE *f = fopen(p->node[id].log, "r");
    if (!f)
        return 0;
    char line[4096];
    int count = 0;
    while (fgets(line, sizeof(line), f))
        count += strstr(line, needle) != NULL;
    fclose(f);
    return count;
}

void procs_failed(struct procs *p)
{
    p->failed = true;
    for (unsigned i = 0; i < PROCS_MAX; i++) {
        char cmd[160];
        if (access(p->node[i].log, R_OK) != 0)
            continue;
        fprintf(stderr, "---- %s (last lines)\n", p->node[i].log);
        snprintf(cmd, sizeof(cmd), "tail -n 25 %s >&2", p->node[i].log);
        if (system(cmd) != 0)
            fprintf(stderr, "(could not print it)\n");
    }
}

/* A sanitizer's report in node id's log, or NULL. */
static const char *report_in_log(struct procs *p, unsigned id)
{
    if (procs_log_count(p, id, "Sanitizer") > 0)
        return "a sanitizer report";
    if (procs_log_count(p, id, "runtime error:") > 0)
        return "an undefined-behaviour report";
    return NULL;
}

void procs_finish_or_fail(void **state)
{
    struct procs *p = *state;
    for (unsigned i = 0; i < PROCS_MAX; i++) {
        if (p->node[i].pid <= 0)
            continue;
        int status = procs_stop(p, i);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            procs_failed(p);
            fail_msg("n%u did not stop cleanly (wait status %d)", i, status);
        }
    }
    for (unsigned i = 0; i < PROCS_MAX; i++) {
        const char *report = report_in_log(p, i);
        if (report) {
            procs_failed(p);
            fail_msg("n%u's log %s holds %s", i, p->node[i].log, report);
        }
    }
    procs_free(p);
    *state = NULL;
}

int procs_teardown(void **state)
{
    struct procs *p = *state;
    if (p) {
        procs_failed(p);
        procs_free(p);
    }
    *state = NULL;
    return 0;
}
