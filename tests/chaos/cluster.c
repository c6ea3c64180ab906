/*
 * cluster.c - `raft node` processes, each link through its own proxy or
 * direct (see cluster.h).
 */
#include "tests/chaos/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "net/tls.h"
#include "raft/raft.h"
#include "tests/support/clock.h"
#include "tests/support/files.h"

#define STOP_TIMEOUT_MS 10000

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

void chaos_cluster_node_dir(const struct chaos_cluster *c, unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/node-%u", c->dir, i);
}

void chaos_cluster_log_path(const struct chaos_cluster *c, unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/node-%u.log", c->dir, i);
}

void chaos_cluster_node_argv(struct chaos_cluster *c, unsigned i, const char **argv,
                             struct chaos_node_args *buf)
{
    snprintf(buf->id, sizeof(buf->id), "%u", i);
    chaos_cluster_node_dir(c, i, buf->data, sizeof(buf->data));
    snprintf(buf->timeout, sizeof(buf->timeout), "%u-%u", c->opt.election_min_ms,
             c->opt.election_max_ms);
    snprintf(buf->heartbeat, sizeof(buf->heartbeat), "%u", c->opt.heartbeat_ms);
    int argc = 0;
    argv[argc++] = c->bin;
    argv[argc++] = "node";
    argv[argc++] = "--id";
    argv[argc++] = buf->id;
    /* A node that joined later has no bootstrap configuration: it learns
     * one from the leader that adds it. */
    argv[argc++] = c->peers[i][0] ? "--peers" : "--listen";
    argv[argc++] = c->peers[i][0] ? c->peers[i] : c->addr[i];
    argv[argc++] = "--data-dir";
    argv[argc++] = buf->data;
    argv[argc++] = "--log-level";
    argv[argc++] = c->opt.log_level ? c->opt.log_level : "info";
    if (c->opt.election_min_ms) {
        argv[argc++] = "--election-timeout";
        argv[argc++] = buf->timeout;
    }
    if (c->opt.heartbeat_ms) {
        argv[argc++] = "--heartbeat";
        argv[argc++] = buf->heartbeat;
    }
    if (c->opt.snapshot_every) {
        argv[argc++] = "--snapshot-every";
        argv[argc++] = c->opt.snapshot_every;
    }
    if (c->opt.tls_dir) {
        argv[argc++] = "--tls-dir";
        argv[argc++] = c->opt.tls_dir;
    }
    if (c->cluster_name[0]) {
        argv[argc++] = "--cluster-name";
        argv[argc++] = c->cluster_name;
    }
    argv[argc] = NULL;
}

int chaos_cluster_start_node(struct chaos_cluster *c, unsigned i)
{
    if (c->pids[i] > 0)
        return -EALREADY;
    char log[96];
    chaos_cluster_log_path(c, i, log, sizeof(log));
    struct chaos_node_args buf;
    const char *argv[CHAOS_NODE_ARGV];
    chaos_cluster_node_argv(c, i, argv, &buf);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
#ifdef __linux__
        /* If the test itself is killed (a timeout), its nodes go with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
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
    uint64_t deadline = test_now_ms() + STOP_TIMEOUT_MS;
    pid_t got;
    /* A node must stop promptly on SIGTERM; one that hangs is killed, so
     * that a test never waits forever, and the caller sees SIGKILL in the
     * status. */
    while ((got = waitpid(c->pids[i], &status, WNOHANG)) == 0 || (got < 0 && errno == EINTR)) {
        if (sig == SIGTERM && test_now_ms() > deadline) {
            printf("note: node %u did not stop within %u ms of SIGTERM: SIGKILL\n", i,
                   STOP_TIMEOUT_MS);
            kill(c->pids[i], SIGKILL);
            sig = SIGKILL;
        }
        test_sleep_ms(5);
    }
    c->pids[i] = 0;
    return status;
}

/* The client certificate of tls_dir, for the kit's own status polls. */
static int load_client_tls(struct chaos_cluster *c, const char *tls_dir)
{
    char ca[160], cert[160], key[160], err[256];
    snprintf(ca, sizeof(ca), "%s/ca.crt", tls_dir);
    snprintf(cert, sizeof(cert), "%s/client.crt", tls_dir);
    snprintf(key, sizeof(key), "%s/client.key", tls_dir);
    struct tls_files f = {.ca = ca, .cert = cert, .key = key};
    int rc = tls_ctx_new(&c->tls, &f, err, sizeof(err));
    if (rc)
        printf("chaos: cannot load the client certificate of %s: %s\n", tls_dir, err);
    return rc;
}

/* Node i's --peers: itself at position i, and at every other position j
 * the proxy for i -> j, or node j itself without proxies. */
static void peers_of(struct chaos_cluster *c, unsigned i)
{
    size_t off = 0;
    for (unsigned j = 0; j < c->n; j++) {
        const char *a = i == j || !c->link[i][j] ? c->addr[j] : chaos_proxy_addr(c->link[i][j]);
        off += (size_t)snprintf(c->peers[i] + off, sizeof(c->peers[i]) - off, "%s%s",
                                j ? "," : "", a);
    }
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
    const char *bin = getenv("RAFT_BIN");
    c->bin = bin && *bin ? bin : "build/raft";
    snprintf(c->dir, sizeof(c->dir), "/tmp/raft-%s-XXXXXX", opt->name ? opt->name : "chaos");
    if (!mkdtemp(c->dir)) {
        free(c);
        return -errno;
    }
    if (opt->cluster_name || !opt->direct)
        snprintf(c->cluster_name, sizeof(c->cluster_name), "%s",
                 opt->cluster_name ? opt->cluster_name : c->dir + strlen("/tmp/"));
    int rc = opt->tls_dir ? load_client_tls(c, opt->tls_dir) : 0;
    for (unsigned i = 0; i < CHAOS_MAX_NODES; i++)
        c->port[i].fd = -1;
    size_t off = 0;
    for (unsigned i = 0; i < c->n && rc == 0; i++) {
        rc = port_reserve(&c->port[i]);
        snprintf(c->addr[i], sizeof(c->addr[i]), "127.0.0.1:%d", c->port[i].port);
        c->addrs[i] = c->addr[i];
        off += (size_t)snprintf(c->addr_list + off, sizeof(c->addr_list) - off, "%s%s",
                                i ? "," : "", c->addr[i]);
    }
    for (unsigned i = 0; i < c->n && rc == 0 && !opt->direct; i++)
        for (unsigned j = 0; j < c->n && rc == 0; j++)
            if (i != j)
                rc = chaos_proxy_start(&c->link[i][j], "127.0.0.1:0", c->addr[j],
                                       opt->seed * 131 + i * CHAOS_MAX_NODES + j + 1);
    for (unsigned i = 0; i < c->n && rc == 0; i++)
        peers_of(c, i);
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

int chaos_cluster_add_node(struct chaos_cluster *c, unsigned *id)
{
    if (c->n == CHAOS_MAX_NODES)
        return -ENOSPC;
    unsigned i = c->n;
    int rc = port_reserve(&c->port[i]);
    if (rc)
        return rc;
    snprintf(c->addr[i], sizeof(c->addr[i]), "127.0.0.1:%d", c->port[i].port);
    c->addrs[i] = c->addr[i];
    size_t off = strlen(c->addr_list);
    snprintf(c->addr_list + off, sizeof(c->addr_list) - off, ",%s", c->addr[i]);
    c->peers[i][0] = '\0';
    c->n++;
    *id = i;
    return chaos_cluster_start_node(c, i);
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

/* The nodes' warnings that their disk was slow (the last ten of each), so
 * that a leader change the test did not cause is not blamed on Raft. */
static void report_slow_disks(struct chaos_cluster *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "grep -h 'on disk took' %s/node-%u.log | tail -n 10", c->dir,
                 i);
        fflush(stdout);
        if (system(cmd) == -1)
            printf("(could not read node %u's log)\n", i);
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
    if (!c->failed) {
        print_logs(c, 30);
        report_slow_disks(c);
    }
    c->failed = true;
}

/* The first line of node i's log that holds `needle`, copied to line. */
static bool log_has(struct chaos_cluster *c, unsigned i, const char *needle, char *line,
                    size_t cap)
{
    char path[96];
    chaos_cluster_log_path(c, i, path, sizeof(path));
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
    tls_ctx_free(c->tls);
    free(c);
}

struct chaos_cluster *chaos_cluster_start_or_fail(void **state,
                                                  const struct chaos_cluster_options *opt)
{
    struct chaos_cluster *c = NULL;
    int rc = chaos_cluster_start(&c, opt);
    if (rc)
        fail_msg("could not start %u nodes: %s", opt->nodes, strerror(-rc));
    *state = c;
    return c;
}

void chaos_cluster_stop_or_fail(void **state)
{
    struct chaos_cluster *c = *state;
    char msg[600];
    if (chaos_cluster_shutdown(c, msg, sizeof(msg)) != 0) {
        chaos_cluster_failed(c, msg);
        fail_msg("%s", msg);
    }
    chaos_cluster_stop(c);
    *state = NULL;
}

void chaos_cluster_start_node_or_fail(struct chaos_cluster *c, unsigned i)
{
    int rc = chaos_cluster_start_node(c, i);
    if (rc)
        fail_msg("could not start node %u: %s", i, strerror(-rc));
}

void chaos_cluster_stop_node_or_fail(struct chaos_cluster *c, unsigned i)
{
    int status = chaos_cluster_kill(c, i, SIGTERM);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("node %u did not stop cleanly on SIGTERM (status 0x%x)", i, status);
}

int chaos_cluster_teardown(void **state)
{
    struct chaos_cluster *c = *state;
    if (c) {
        chaos_cluster_failed(c, "the test ended before it stopped its cluster");
        chaos_cluster_stop(c);
    }
    *state = NULL;
    return 0;
}

void chaos_cluster_cut_link(struct chaos_cluster *c, unsigned i, unsigned j, bool cut)
{
    if (i == j || !c->link[i][j])
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
    return kv_client_status_tls(c->addr[i], c->tls, timeout_ms, out);
}

int chaos_cluster_wait_leader(struct chaos_cluster *c, uint32_t among, uint64_t min_term,
                              unsigned timeout_ms, uint64_t *term_out)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
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
        test_sleep_ms(20);
    } while (test_now_ms() < deadline);
    return -1;
}

int chaos_cluster_leader(struct chaos_cluster *c, unsigned timeout_ms)
{
    return chaos_cluster_wait_leader(c, chaos_cluster_all(c), 0, timeout_ms, NULL);
}

long chaos_cluster_wait_caught_up(struct chaos_cluster *c, unsigned i, unsigned timeout_ms)
{
    uint64_t start = test_now_ms(), deadline = start + timeout_ms;
    while (test_now_ms() < deadline) {
        int leader = chaos_cluster_leader(c, 1000);
        struct client_reply lead, mine;
        if (leader >= 0 && chaos_cluster_status(c, (unsigned)leader, 500, &lead) == 0 &&
            chaos_cluster_status(c, i, 500, &mine) == 0 && mine.applied >= lead.commit &&
            lead.commit > 0)
            return (long)(test_now_ms() - start);
        test_sleep_ms(25);
    }
    return -1;
}

int chaos_cluster_log_count(const struct chaos_cluster *c, unsigned i, const char *needle)
{
    char path[96];
    chaos_cluster_log_path(c, i, path, sizeof(path));
    return test_file_count_lines(path, needle);
}
