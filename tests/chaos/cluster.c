/*
 * cluster.c - `raft node` processes behind one proxy per directed link
 * (see cluster.h).
 */
#include "tests/chaos/cluster.h"

#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "raft/raft.h"

#define STOP_TIMEOUT_MS 10000

uint64_t chaos_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void chaos_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

unsigned chaos_rounds(unsigned dflt)
{
    const char *s = getenv("CHAOS_ROUNDS");
    char *end;
    long v = s ? strtol(s, &end, 10) : -1;
    return s && *s && !*end && v > 0 && v < 100000 ? (unsigned)v : dflt;
}

unsigned chaos_time_scale(void)
{
    const char *s = getenv("CHAOS_TIME_SCALE");
    char *end;
    long v = s ? strtol(s, &end, 10) : -1;
    if (s && *s && !*end && v >= 1 && v <= 20)
        return (unsigned)v;
    const char *bin = getenv("RAFT_BIN");
    return bin && strstr(bin, "tsan") ? 3 : 1;
}

uint32_t chaos_cluster_all(const struct chaos_cluster *c)
{
    return (1u << c->n) - 1;
}

int chaos_cluster_start_node(struct chaos_cluster *c, unsigned i)
{
    if (c->pids[i] > 0)
        return -EALREADY;
    char id[8], data[96], log[96], timeout[32], heartbeat[16];
    snprintf(id, sizeof(id), "%u", i);
    snprintf(data, sizeof(data), "%s/node-%u", c->dir, i);
    snprintf(log, sizeof(log), "%s/node-%u.log", c->dir, i);
    snprintf(timeout, sizeof(timeout), "%u-%u", c->opt.election_min_ms, c->opt.election_max_ms);
    snprintf(heartbeat, sizeof(heartbeat), "%u", c->opt.heartbeat_ms);
    const char *argv[20];
    int argc = 0;
    argv[argc++] = c->bin;
    argv[argc++] = "node";
    argv[argc++] = "--id";
    argv[argc++] = id;
    argv[argc++] = "--peers";
    argv[argc++] = c->peers[i];
    argv[argc++] = "--data-dir";
    argv[argc++] = data;
    argv[argc++] = "--log-level";
    argv[argc++] = c->opt.log_level ? c->opt.log_level : "info";
    if (c->opt.election_min_ms) {
        argv[argc++] = "--election-timeout";
        argv[argc++] = timeout;
    }
    if (c->opt.heartbeat_ms) {
        argv[argc++] = "--heartbeat";
        argv[argc++] = heartbeat;
    }
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        if (!freopen(log, "a", stderr))
            _exit(127);
        if (!freopen("/dev/null", "w", stdout))
            _exit(127);
        execv(c->bin, (char *const *)argv);
        _exit(127);
    }
    c->pids[i] = pid;
    return 0;
}

int chaos_cluster_kill(struct chaos_cluster *c, unsigned i, int sig)
{
    if (c->pids[i] <= 0)
        return -1;
    kill(c->pids[i], sig);
    if (sig != SIGKILL && sig != SIGTERM)
        return 0;
    int status = 0;
    uint64_t deadline = chaos_now_ms() + STOP_TIMEOUT_MS;
    pid_t got;
    /* A node must stop promptly on SIGTERM; one that hangs is killed, so
     * that a test never waits forever, and the caller sees SIGKILL in the
     * status. */
    while ((got = waitpid(c->pids[i], &status, WNOHANG)) == 0 || (got < 0 && errno == EINTR)) {
        if (sig == SIGTERM && chaos_now_ms() > deadline) {
            printf("note: node %u did not stop within %u ms of SIGTERM: SIGKILL\n", i,
                   STOP_TIMEOUT_MS);
            kill(c->pids[i], SIGKILL);
            sig = SIGKILL;
        }
        chaos_sleep_ms(5);
    }
    c->pids[i] = 0;
    return status;
}

int chaos_cluster_start(struct chaos_cluster **out, const struct chaos_cluster_options *opt)
{
    if (opt->nodes < 1 || opt->nodes > CHAOS_MAX_NODES)
        return -EINVAL;
    struct chaos_cluster *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->opt = *opt;
    c->n = opt->nodes;
    c->bin = getenv("RAFT_BIN") ? getenv("RAFT_BIN") : "build/raft";
    snprintf(c->dir, sizeof(c->dir), "/tmp/raft-chaos-XXXXXX");
    if (!mkdtemp(c->dir)) {
        free(c);
        return -errno;
    }
    int rc = 0;
    for (unsigned i = 0; i < CHAOS_MAX_NODES; i++)
        c->port[i].fd = -1;
    for (unsigned i = 0; i < c->n && rc == 0; i++) {
        rc = port_reserve(&c->port[i]);
        snprintf(c->addr[i], sizeof(c->addr[i]), "127.0.0.1:%d", c->port[i].port);
        c->addrs[i] = c->addr[i];
    }
    for (unsigned i = 0; i < c->n && rc == 0; i++)
        for (unsigned j = 0; j < c->n && rc == 0; j++)
            if (i != j)
                rc = chaos_proxy_start(&c->link[i][j], "127.0.0.1:0", c->addr[j],
                                       opt->seed * 131 + i * CHAOS_MAX_NODES + j + 1);
    for (unsigned i = 0; i < c->n && rc == 0; i++) {
        size_t off = 0;
        for (unsigned j = 0; j < c->n; j++)
            off += (size_t)snprintf(c->peers[i] + off, sizeof(c->peers[i]) - off, "%s%s",
                                    j ? "," : "",
                                    i == j ? c->addr[j] : chaos_proxy_addr(c->link[i][j]));
    }
    for (unsigned i = 0; i < c->n && rc == 0; i++)
        rc = chaos_cluster_start_node(c, i);
    if (rc) {
        c->failed = true;
        chaos_cluster_stop(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void print_logs(struct chaos_cluster *c, unsigned lines)
{
    for (unsigned i = 0; i < c->n; i++) {
        char cmd[200];
        printf("--- node %u (%s), last %u lines of its log:\n", i, c->addr[i], lines);
        fflush(stdout);
        snprintf(cmd, sizeof(cmd), "tail -n %u %s/node-%u.log", lines, c->dir, i);
        if (system(cmd) != 0)
            printf("(no log)\n");
    }
    fflush(stdout);
}

/* Says which nodes died without the test stopping them (one that could not
 * listen on its port, say), so that a failure is not blamed on Raft. */
static void report_dead_nodes(struct chaos_cluster *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        int status;
        if (c->pids[i] <= 0 || waitpid(c->pids[i], &status, WNOHANG) != c->pids[i])
            continue;
        c->pids[i] = 0;
        if (WIFEXITED(status))
            printf("note: node %u had exited by itself, status %d (its log says why)\n", i,
                   WEXITSTATUS(status));
        else
            printf("note: node %u had died of signal %d\n", i, WTERMSIG(status));
    }
}

void chaos_cluster_failed(struct chaos_cluster *c, const char *why)
{
    printf("FAILED: %s\n", why);
    report_dead_nodes(c);
    if (!c->failed)
        print_logs(c, 30);
    c->failed = true;
}

/* The first line of node i's log that holds `needle`, copied to line. */
static bool log_has(struct chaos_cluster *c, unsigned i, const char *needle, char *line,
                    size_t cap)
{
    char path[96];
    snprintf(path, sizeof(path), "%s/node-%u.log", c->dir, i);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool found = false;
    while (!found && fgets(line, (int)cap, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    if (found)
        line[strcspn(line, "\n")] = '\0';
    return found;
}

int chaos_cluster_shutdown(struct chaos_cluster *c, char *msg, size_t cap)
{
    int rc = 0;
    msg[0] = '\0';
    for (unsigned i = 0; i < c->n; i++) {
        if (c->pids[i] <= 0)
            continue;
        int status = chaos_cluster_kill(c, i, SIGTERM);
        if ((!WIFEXITED(status) || WEXITSTATUS(status) != 0) && rc == 0) {
            snprintf(msg, cap, "node %u did not exit cleanly on SIGTERM (%s %d)", i,
                     WIFEXITED(status) ? "exit status" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            rc = -1;
        }
    }
    static const char *const needles[] = {"Sanitizer", "runtime error:"};
    for (unsigned i = 0; i < c->n && rc == 0; i++)
        for (int k = 0; k < 2 && rc == 0; k++) {
            char line[400];
            if (log_has(c, i, needles[k], line, sizeof(line))) {
                snprintf(msg, cap, "node %u's log has a sanitizer report: %s", i, line);
                rc = -1;
            }
        }
    return rc;
}

void chaos_cluster_stop(struct chaos_cluster *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->pids[i] <= 0)
            continue;
        int status = chaos_cluster_kill(c, i, SIGTERM);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            printf("note: node %u did not exit cleanly on SIGTERM (status 0x%x)\n", i, status);
    }
    for (unsigned i = 0; i < c->n; i++)
        for (unsigned j = 0; j < c->n; j++)
            chaos_proxy_stop(c->link[i][j]);
    for (unsigned i = 0; i < c->n; i++)
        port_release(&c->port[i]);
    if (c->failed || getenv("CHAOS_KEEP")) {
        printf("logs and data kept in %s\n", c->dir);
    } else {
        char cmd[96];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
        if (system(cmd) != 0)
            printf("could not remove %s\n", c->dir);
    }
    free(c);
}

void chaos_cluster_cut_link(struct chaos_cluster *c, unsigned i, unsigned j, bool cut)
{
    if (i == j)
        return;
    if (cut)
        chaos_proxy_cut(c->link[i][j]);
    else
        chaos_proxy_heal(c->link[i][j]);
}

void chaos_cluster_cut_pair(struct chaos_cluster *c, unsigned i, unsigned j, bool cut)
{
    chaos_cluster_cut_link(c, i, j, cut);
    chaos_cluster_cut_link(c, j, i, cut);
}

void chaos_cluster_partition(struct chaos_cluster *c, uint32_t side)
{
    for (unsigned i = 0; i < c->n; i++)
        for (unsigned j = i + 1; j < c->n; j++)
            if (((side >> i) & 1) != ((side >> j) & 1))
                chaos_cluster_cut_pair(c, i, j, true);
}

void chaos_cluster_isolate(struct chaos_cluster *c, unsigned i)
{
    chaos_cluster_partition(c, 1u << i);
}

void chaos_cluster_heal(struct chaos_cluster *c)
{
    for (unsigned i = 0; i < c->n; i++)
        for (unsigned j = 0; j < c->n; j++)
            if (c->link[i][j])
                chaos_proxy_heal(c->link[i][j]);
}

void chaos_cluster_set_delay(struct chaos_cluster *c, unsigned min_ms, unsigned max_ms)
{
    for (unsigned i = 0; i < c->n; i++)
        for (unsigned j = 0; j < c->n; j++)
            if (c->link[i][j])
                chaos_proxy_set_delay(c->link[i][j], min_ms, max_ms);
}

unsigned chaos_cluster_reset_links(struct chaos_cluster *c, unsigned percent)
{
    unsigned n = 0;
    for (unsigned i = 0; i < c->n; i++)
        for (unsigned j = 0; j < c->n; j++)
            if (c->link[i][j])
                n += chaos_proxy_reset_some(c->link[i][j], percent);
    return n;
}

int chaos_cluster_status(struct chaos_cluster *c, unsigned i, unsigned timeout_ms,
                         struct client_reply *out)
{
    if (c->pids[i] <= 0)
        return -ESRCH;
    return kv_client_status(c->addr[i], timeout_ms, out);
}

int chaos_cluster_wait_leader(struct chaos_cluster *c, uint32_t among, uint64_t min_term,
                              unsigned timeout_ms, uint64_t *term_out)
{
    uint64_t deadline = chaos_now_ms() + timeout_ms;
    unsigned majority = c->n / 2 + 1;
    do {
        struct client_reply st[CHAOS_MAX_NODES];
        bool up[CHAOS_MAX_NODES];
        for (unsigned i = 0; i < c->n; i++)
            up[i] = chaos_cluster_status(c, i, 300, &st[i]) == 0;
        for (unsigned l = 0; l < c->n; l++) {
            if (!((among >> l) & 1) || !up[l] || st[l].role != RAFT_LEADER ||
                st[l].term < min_term)
                continue;
            unsigned agree = 0;
            for (unsigned i = 0; i < c->n; i++)
                agree += up[i] && st[i].term == st[l].term &&
                         (i == l || (st[i].role == RAFT_FOLLOWER && st[i].leader == (int32_t)l));
            if (agree >= majority) {
                if (term_out)
                    *term_out = st[l].term;
                return (int)l;
            }
        }
        chaos_sleep_ms(20);
    } while (chaos_now_ms() < deadline);
    return -1;
}
