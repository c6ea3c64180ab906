/*
 * netns.c - a private network of namespaces, made and unmade with the ip
 * command (see netns.h).
 */
#define _GNU_SOURCE /* setns() and CLONE_NEWNET */
#include "tests/support/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/clock.h"

#define NETNS_DIR "/var/run/netns/" /* where `ip netns add` names a namespace */
#define NETNS_SUBNETS 512           /* the /24s of 198.18.0.0/15 */
#define NETNS_TEXT_CAP 65536

/* Runs a shell command (made by the test from its own names, never from
 * input) with its stdout and stderr in out; its exit status, or -1. */
static int sh(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof(cmd) - 8, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(cmd) - 8)
        return -1;
    strcat(cmd, " 2>&1");
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t len = 0;
    char scratch[256];
    char *buf = out ? out : scratch;
    size_t room = out ? cap : sizeof(scratch);
    for (size_t got; (got = fread(buf + len, 1, room - 1 - len, p)) > 0;)
        len += got;
    buf[len] = '\0';
    while (len > 0 && buf[len - 1] == '\n')
        buf[--len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* One step of making the network: on failure, why names the command and
 * what ip said. */
static bool step(char *why, size_t cap, const char *fmt, ...)
{
    char cmd[256], out[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (sh(out, sizeof(out), "%s", cmd) == 0)
        return true;
    snprintf(why, cap, "`%s` failed: %s", cmd, out[0] ? out : "(no message)");
    return false;
}

/* A namespace "rt<pid>-<hh>-..." left by a run whose process is gone, or by
 * an earlier process that had this one's pid; sets *pid. */
static bool is_stale(const char *name, long *pid)
{
    if (strncmp(name, "rt", 2) != 0)
        return false;
    char *end;
    *pid = strtol(name + 2, &end, 10);
    if (end == name + 2 || *pid <= 0 || end[0] != '-' || !end[1] || !end[2] || end[3] != '-')
        return false;
    if (*pid == (long)getpid())
        return true; /* this process has made none yet */
    return kill((pid_t)*pid, 0) < 0 && errno == ESRCH;
}

static void remove_leftovers(void)
{
    char *list = malloc(NETNS_TEXT_CAP);
    if (!list || sh(list, NETNS_TEXT_CAP, "ip netns list") != 0) {
        free(list);
        return;
    }
    for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        long pid;
        if (sscanf(line, "%63s", name) == 1 && is_stale(name, &pid) &&
            sh(NULL, 0, "ip netns del %s", name) == 0)
            fprintf(stderr, "netns: removed %s, left by a run that ended (pid %ld)\n", name,
                    pid);
    }
    free(list);
}

/* A /24 of 198.18.0.0/15 that no address or route of this namespace
 * touches, starting from a place that differs from run to run. */
static bool choose_subnet(struct netns_net *net, unsigned start)
{
    char *text = malloc(NETNS_TEXT_CAP);
    if (!text || sh(text, NETNS_TEXT_CAP, "ip -4 addr show; ip -4 route show table all") != 0) {
        free(text);
        return false;
    }
    bool found = false;
    for (unsigned k = 0; k < NETNS_SUBNETS && !found; k++) {
        unsigned idx = (start + k) % NETNS_SUBNETS;
        char dotted[20];
        snprintf(net->subnet, sizeof(net->subnet), "198.%u.%u", 18 + idx / 256, idx % 256);
        snprintf(dotted, sizeof(dotted), "%s.", net->subnet);
        found = strstr(text, dotted) == NULL;
    }
    free(text);
    return found;
}

static void name_everything(struct netns_net *net, unsigned n)
{
    unsigned nonce = (unsigned)(test_now_ns() >> 10) & 0xff;
    snprintf(net->prefix, sizeof(net->prefix), "rt%ld-%02x", (long)getpid(), nonce);
    snprintf(net->switch_ns, sizeof(net->switch_ns), "%s-sw", net->prefix);
    snprintf(net->root_ip, sizeof(net->root_ip), "%s.1", net->subnet);
    for (unsigned i = 0; i < n; i++) {
        snprintf(net->host_ns[i], sizeof(net->host_ns[i]), "%s-h%u", net->prefix, i);
        snprintf(net->host_ip[i], sizeof(net->host_ip[i]), "%s.%u", net->subnet, 10 + i);
    }
}

/* The switch, and the root namespace's port on it. */
static bool make_switch(struct netns_net *net, char *why, size_t cap)
{
    char link[32], cidr[32];
    snprintf(link, sizeof(link), "%sc", net->prefix);
    snprintf(cidr, sizeof(cidr), "%s/24", net->root_ip);
    const char *sw = net->switch_ns;
    return step(why, cap, "ip -n %s link add br0 type bridge", sw) &&
           step(why, cap, "ip -n %s link set br0 up", sw) &&
           step(why, cap, "ip link add %s type veth peer name root netns %s", link, sw) &&
           step(why, cap, "ip -n %s link set root master br0 up", sw) &&
           step(why, cap, "ip addr add %s dev %s", cidr, link) &&
           step(why, cap, "ip link set %s up", link);
}

/* Machine i: its namespace, its cable to port hI of the switch, its
 * address. */
static bool make_host(struct netns_net *net, unsigned i, char *why, size_t cap)
{
    char port[16], cidr[32];
    snprintf(port, sizeof(port), "h%u", i);
    snprintf(cidr, sizeof(cidr), "%s/24", net->host_ip[i]);
    const char *ns = net->host_ns[i], *sw = net->switch_ns;
    if (!step(why, cap, "ip netns add %s", ns))
        return false;
    net->n = i + 1;
    return step(why, cap, "ip -n %s link add %s type veth peer name eth0 netns %s", sw, port,
                ns) &&
           step(why, cap, "ip -n %s link set %s master br0 up", sw, port) &&
           step(why, cap, "ip -n %s addr add %s dev eth0", ns, cidr) &&
           step(why, cap, "ip -n %s link set eth0 up", ns) &&
           step(why, cap, "ip -n %s link set lo up", ns);
}

enum netns_result netns_make(struct netns_net *net, unsigned n, char *why, size_t cap)
{
    memset(net, 0, sizeof(*net));
    if (n == 0 || n > NETNS_MAX_HOSTS) {
        snprintf(why, cap, "between 1 and %d machines, not %u", NETNS_MAX_HOSTS, n);
        return NETNS_FAILED;
    }
    if (geteuid() != 0) {
        snprintf(why, cap, "making network namespaces takes root, and this test runs as uid %ld",
                 (long)geteuid());
        return NETNS_UNAVAILABLE;
    }
    if (sh(NULL, 0, "command -v ip") != 0) {
        snprintf(why, cap, "the ip command (iproute2) is not installed");
        return NETNS_UNAVAILABLE;
    }
    remove_leftovers();
    if (!choose_subnet(net, (unsigned)getpid() * 31u + (unsigned)(test_now_ns() >> 20))) {
        snprintf(why, cap, "every /24 of 198.18.0.0/15 is in use on this machine");
        return NETNS_UNAVAILABLE;
    }
    name_everything(net, n);
    char first[320];
    if (!step(first, sizeof(first), "ip netns add %s", net->switch_ns)) {
        snprintf(why, cap, "cannot make a network namespace here: %s", first);
        return NETNS_UNAVAILABLE;
    }
    net->switch_made = true;
    if (!make_switch(net, why, cap))
        return NETNS_FAILED;
    for (unsigned i = 0; i < n; i++)
        if (!make_host(net, i, why, cap))
            return NETNS_FAILED;
    return NETNS_OK;
}

void netns_destroy(struct netns_net *net)
{
    for (unsigned i = 0; i < net->n; i++) {
        char out[256];
        if (sh(out, sizeof(out), "ip netns del %s", net->host_ns[i]) != 0)
            fprintf(stderr, "netns: could not delete %s: %s\n", net->host_ns[i], out);
    }
    net->n = 0;
    if (net->switch_made) {
        char out[256];
        if (sh(out, sizeof(out), "ip netns del %s", net->switch_ns) != 0)
            fprintf(stderr, "netns: could not delete %s: %s\n", net->switch_ns, out);
    }
    net->switch_made = false;
}

int netns_set_link(struct netns_net *net, unsigned i, bool up)
{
    char out[256];
    if (i >= net->n)
        return -1;
    int rc = sh(out, sizeof(out), "ip -n %s link set h%u %s", net->switch_ns, i,
                up ? "up" : "down");
    if (rc != 0)
        fprintf(stderr, "netns: could not take port h%u %s: %s\n", i, up ? "up" : "down", out);
    return rc == 0 ? 0 : -1;
}

/* In a child between fork and exec: only async-signal-safe calls. */
static void enter_and_exec(const char *ns_path, int out_fd, int err_fd, const char *const *argv)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the test killed: what it started goes too */
    int ns = open(ns_path, O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) {
        static const char msg[] = "netns: cannot enter the machine's network namespace\n";
        if (write(err_fd, msg, sizeof(msg) - 1) < 0)
            _exit(126);
        _exit(126);
    }
    if (dup2(out_fd, STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0)
        _exit(126);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

pid_t netns_spawn(const struct netns_net *net, unsigned i, const char *log,
                  const char *const *argv)
{
    if (i >= net->n)
        return -1;
    char path[96];
    snprintf(path, sizeof(path), NETNS_DIR "%s", net->host_ns[i]);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        enter_and_exec(path, fd, fd, argv);
    close(fd);
    return pid;
}

int netns_run(const struct netns_net *net, unsigned i, const char *const *argv, char *out,
              size_t cap, unsigned timeout_ms)
{
    if (i >= net->n || cap == 0)
        return -1;
    char path[96], tmp[] = "/tmp/raft-netns-out-XXXXXX";
    snprintf(path, sizeof(path), NETNS_DIR "%s", net->host_ns[i]);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return -1;
    unlink(tmp);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        enter_and_exec(path, fd, STDERR_FILENO, argv);
    int status = 0;
    bool exited = pid > 0;
    uint64_t deadline = test_now_ms() + timeout_ms;
    while (pid > 0 && waitpid(pid, &status, WNOHANG) == 0) {
        if (test_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            exited = false;
            break;
        }
        test_sleep_ms(5);
    }
    ssize_t n = pread(fd, out, cap - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    return exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
