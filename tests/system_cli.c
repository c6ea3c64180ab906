/*
 * system_cli.c - the command line as users type it: every subcommand's
 * --help, the one-sentence usage errors with exit status 2, `--opt=value`
 * against `--opt value`, case-insensitive log levels, settings refused
 * because they cannot work, and `--` letting a client's value start with
 * dashes, against a `raft cluster` on free loopback ports.
 *
 * Runs the binary named by $RAFT_BIN (make test sets it).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "kv/client.h"
#include "tests/chaos/ports.h"

#define NODES 3
#define OUT_CAP 8192

static const char *bin(void)
{
    return getenv("RAFT_BIN") ? getenv("RAFT_BIN") : "build/raft";
}

/* ---- running the binary ---- */

struct result {
    int status; /* exit status, or -1 if it did not exit */
    char out[OUT_CAP], err[OUT_CAP];
};

static void slurp(int fd, char *buf)
{
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, OUT_CAP - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
}

static int temp_fd(void)
{
    char path[] = "/tmp/raft-cli-out-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

/* Runs `raft ARGS...` (NULL-terminated), capturing stdout and stderr. */
static void run_argv(struct result *r, char **args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)bin();
    for (; args[argc - 1] && argc < 31; argc++)
        argv[argc] = args[argc - 1];
    argv[argc] = NULL;
    int out = temp_fd(), err = temp_fd();
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    slurp(out, r->out);
    slurp(err, r->err);
}

static struct result *run(const char *first, ...)
{
    static struct result r;
    char *args[31];
    int n = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 30; a = va_arg(ap, const char *))
        args[n++] = (char *)a;
    va_end(ap);
    args[n] = NULL;
    run_argv(&r, args);
    return &r;
}

/* ---- help ---- */

/* The line of text that begins with prefix contains want. */
static void line_has(const char *text, const char *prefix, const char *want)
{
    for (const char *l = text; *l; l += strcspn(l, "\n") + (l[strcspn(l, "\n")] != '\0')) {
        size_t len = strcspn(l, "\n");
        if (strncmp(l, prefix, strlen(prefix)) != 0)
            continue;
        char line[512];
        snprintf(line, sizeof(line), "%.*s", (int)len, l);
        if (!strstr(line, want))
            fprintf(stderr, "line '%s' lacks '%s'\n", line, want);
        assert_non_null(strstr(line, want));
        return;
    }
    fprintf(stderr, "no line begins '%s' in:\n%s", prefix, text);
    fail();
}

static struct result *help_of(const char *sub)
{
    struct result *r = run(sub, "--help", NULL);
    if (r->status != 0)
        fprintf(stderr, "raft %s --help: %d\n%s", sub, r->status, r->err);
    assert_int_equal(r->status, 0);
    assert_string_equal(r->err, "");
    char usage[64];
    snprintf(usage, sizeof(usage), "usage: raft %s ", sub);
    assert_memory_equal(r->out, usage, strlen(usage));
    line_has(r->out, "  -h, --help", "print this help");
    return r;
}

static void test_help_of_each_subcommand_lists_options_and_defaults(void **state)
{
    (void)state;
    const char *o = help_of("cluster")->out;
    line_has(o, "  --nodes N ", "(default: 3)");
    line_has(o, "  --base-port P ", "(default: 8000)");
    line_has(o, "  --data-dir DIR ", "(default: data)");
    line_has(o, "  --log-level L ", "info");
    line_has(o, "  --election-timeout MIN-MAX ", "(default: 150-300)");
    line_has(o, "  --heartbeat MS ", "(default: 50)");
    o = help_of("node")->out;
    line_has(o, "  --id I ", "(required)");
    line_has(o, "  --peers HOST:PORT,... ", "(default: none: the node waits to be added)");
    line_has(o, "  --listen HOST:PORT ", "(default: its address in --peers)");
    line_has(o, "  --data-dir DIR ", "(default: data/node-I)");
    line_has(o, "  --election-timeout MIN-MAX ", "(default: 150-300)");
    line_has(o, "  --heartbeat MS ", "(default: 50)");
    line_has(o, "  --snapshot-every N ",
             "(default: when the log holds a quarter of the last snapshot's size, and at least "
             "16 MiB)");
    o = help_of("client")->out;
    line_has(o, "usage: raft client ", "put KEY VALUE | get KEY | delete KEY | cas KEY EXPECTED NEW | list [PREFIX] | status | transfer [ID] | member list | member add [--learner] ID HOST:PORT | member remove ID");
    line_has(o, "  --cluster HOST:PORT,... ", "(required)");
    line_has(o, "  --timeout S ", "(default: 5)");
    line_has(o, "  --json ", "status");
    line_has(o, "  --learner ", "member add");
    o = help_of("bench")->out;
    line_has(o, "  --clients C ", "(default: 16)");
    line_has(o, "  --seconds T ", "(default: 5)");
    line_has(o, "  --value-size B ", "(default: 64)");
    line_has(o, "  --keys K ", "(default: 1000)");
    line_has(o, "  --read-ratio R ", "(default: 0)");
    line_has(o, "  --mix OP=PCT,... ", "(default: put=100; with --read-ratio, put and get)");
    help_of("dump");

    /* -h and `raft help SUB` print the same page. */
    char node_help[OUT_CAP];
    snprintf(node_help, sizeof(node_help), "%s", help_of("node")->out);
    assert_string_equal(run("node", "-h", NULL)->out, node_help);
    assert_string_equal(run("help", "node", NULL)->out, node_help);

    /* The top level lists the subcommands, one per line. */
    const char *tops[] = {"--help", "-h", "help"};
    for (int i = 0; i < 3; i++) {
        struct result *r = run(tops[i], NULL);
        assert_int_equal(r->status, 0);
        line_has(r->out, "  cluster ", "nodes");
        line_has(r->out, "  node ", "node");
        line_has(r->out, "  client ", "put");
        line_has(r->out, "  bench ", "throughput");
        line_has(r->out, "  dump ", "data directory");
    }
}

/* ---- usage errors ---- */

/* Exit 2, nothing on stdout, and on stderr exactly the sentence and the
 * line that points to the subcommand's help. */
static void refused(const char *sentence, const char *sub, ...)
{
    char *args[31];
    int n = 0;
    args[n++] = (char *)sub;
    va_list ap;
    va_start(ap, sub);
    for (const char *a; n < 30 && (a = va_arg(ap, const char *)) != NULL;)
        args[n++] = (char *)a;
    va_end(ap);
    args[n] = NULL;
    static struct result r;
    run_argv(&r, args);
    char want[1024];
    snprintf(want, sizeof(want), "raft %s: %s\nsee raft %s --help\n", sub, sentence, sub);
    if (r.status != 2 || strcmp(r.err, want) != 0)
        fprintf(stderr, "raft %s %s ...: exit %d\n%swanted\n%s", sub, args[1], r.status,
                r.err, want);
    assert_int_equal(r.status, 2);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, want);
}

static void test_usage_errors_are_one_sentence_and_a_pointer_to_help(void **state)
{
    (void)state;
    const char *peers = "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3";
    refused("--id must be 0-2, the position of this node in --peers; got 7", "node", "--id",
            "7", "--peers", peers, NULL);
    refused("unknown option --foo", "node", "--foo", NULL);
    refused("unknown option --foo", "node", "--foo=bar", NULL);
    refused("needs --peers HOST:PORT,... (the first configuration of a new cluster) or "
            "--listen HOST:PORT (a node that waits to be added)", "node", "--id", "0", NULL);
    refused("--id must be a node id from 0 to 63; got '64'", "node", "--id", "64", "--listen",
            "127.0.0.1:1", NULL);
    refused("--listen must be HOST:PORT (port 1-65535); got 'nowhere'", "node", "--id", "3",
            "--listen", "nowhere", NULL);
    refused("--peers must be a comma-separated list of HOST:PORT (port 1-65535); "
            "'nowhere' is not one", "node", "--id", "0", "--peers", "nowhere", NULL);
    refused("--nodes must be an integer from 1 to 9; got '12'", "cluster", "--nodes", "12",
            NULL);
    refused("--log-level must be one of error, warn, info, debug, trace; got 'loud'",
            "cluster", "--log-level", "loud", NULL);
    refused("--election-timeout MIN must not exceed MAX; got 300-150", "cluster",
            "--election-timeout", "300-150", NULL);
    refused("--election-timeout must be MIN-MAX, two integers from 1 to 600000; got '300'",
            "node", "--id", "0", "--peers", peers, "--election-timeout", "300", NULL);
    refused("--election-timeout must be MIN-MAX, two integers from 1 to 600000; got 'a-b'",
            "cluster", "--election-timeout", "a-b", NULL);
    refused("--timeout must be a number of seconds from 0.001 to 86400; got 'soon'", "client",
            "--cluster", peers, "--timeout", "soon", "status", NULL);
    refused("--cluster needs a value, a comma-separated list of HOST:PORT", "client",
            "--cluster", NULL);
    refused("--cluster HOST:PORT,... is required: the address of one node or more", "bench",
            NULL);
    refused("--json takes no value; got --json=yes", "client", "--json=yes", NULL);
    refused("--c is ambiguous: --cluster or --clients?", "bench", "--c", "x", NULL);
    refused("--mix percents must add up to 100; 'put=50,get=30' adds up to 80", "bench",
            "--cluster", "127.0.0.1:1", "--mix", "put=50,get=30", NULL);
    refused("--mix must be OP=PERCENT pairs separated by commas, OP one of put, get, cas, "
            "delete, list, each PERCENT an integer from 0 to 100, adding up to 100; got "
            "'scan=100' in 'scan=100'", "bench", "--cluster", "127.0.0.1:1", "--mix=scan=100",
            NULL);
    refused("unknown command frob; the commands are put KEY VALUE, get KEY, delete KEY, cas "
            "KEY EXPECTED NEW, list [PREFIX], status, transfer [ID], member list, member add "
            "[--learner] ID HOST:PORT and member remove ID", "client", "--cluster", peers,
            "frob", NULL);
    refused("put takes KEY VALUE; got 1 argument", "client", "--cluster", peers, "put", "k",
            NULL);
    refused("--json goes with status, list and member list only, not with get", "client",
            "--cluster", peers, "get", "k", "--json", NULL);
    refused("unexpected argument extra; cluster takes options only", "cluster", "extra", NULL);
    refused("expects one data directory, DIR; got 0 arguments", "dump", NULL);

    struct result *r = run("frobnicate", NULL);
    assert_int_equal(r->status, 2);
    assert_string_equal(r->err, "raft: unknown subcommand frobnicate\nsee raft --help\n");
}

/* The member commands' words, each mistake in one sentence; and --help
 * after a command's words is that command's page. */
static void test_member_commands_check_their_words_and_have_help(void **state)
{
    (void)state;
    const char *c = "127.0.0.1:1";
    refused("member takes list, add [--learner] ID HOST:PORT or remove ID; got frob", "client",
            "--cluster", c, "member", "frob", NULL);
    refused("member takes list, add [--learner] ID HOST:PORT or remove ID; got nothing",
            "client", "--cluster", c, "member", NULL);
    refused("member add takes [--learner] ID HOST:PORT; got 1 argument", "client", "--cluster",
            c, "member", "add", "3", NULL);
    refused("member list takes no arguments; got 1 argument", "client", "--cluster", c,
            "member", "list", "x", NULL);
    refused("a node id is a number from 0 to 63; got 64", "client", "--cluster", c, "member",
            "add", "64", "127.0.0.1:9", NULL);
    refused("a node id is a number from 0 to 63; got n3", "client", "--cluster", c, "member",
            "remove", "n3", NULL);
    refused("HOST:PORT must be a host and a port from 1 to 65535, at most 63 bytes; got "
            "'nowhere'", "client", "--cluster", c, "member", "add", "3", "nowhere", NULL);
    refused("--learner goes with member add only, not with member remove", "client",
            "--cluster", c, "member", "remove", "2", "--learner", NULL);
    refused("--json goes with status, list and member list only, not with member add",
            "client", "--cluster", c, "--json", "member", "add", "3", "127.0.0.1:9", NULL);

    struct result *r = run("client", "member", "add", "--help", NULL);
    assert_int_equal(r->status, 0);
    line_has(r->out, "usage: raft client ", "[options] member add [--learner] ID HOST:PORT");
    line_has(r->out, "Adds server ID", "Exit 0 once committed, 5 if refused");
    line_has(r->out, "  --timeout S ", "(default: 5)");
    r = run("client", "--cluster", c, "member", "remove", "-h", NULL);
    line_has(r->out, "usage: raft client ", "member remove ID");
    r = run("client", "status", "--help", NULL);
    line_has(r->out, "Prints each node's own view", "configuration");
    /* Before any command word, --help is the client's page. */
    r = run("client", "--help", "member", NULL);
    line_has(r->out, "usage: raft client ", "| member remove ID");
}

/* A heartbeat as long as the shortest election timeout lets followers
 * time out under a live leader: refused before any node starts. */
static void test_settings_that_cannot_work_are_refused(void **state)
{
    (void)state;
    refused("--heartbeat (500 ms) must be below the minimum --election-timeout (150 ms), or "
            "followers time out between heartbeats", "cluster", "--heartbeat", "500", NULL);
    refused("--heartbeat (50 ms) must be below the minimum --election-timeout (40 ms), or "
            "followers time out between heartbeats", "node", "--id", "0", "--peers",
            "127.0.0.1:1", "--election-timeout", "40-80", NULL);
    refused("--heartbeat (150 ms) must be below the minimum --election-timeout (150 ms), or "
            "followers time out between heartbeats", "cluster", "--heartbeat=150", NULL);
}

/* `--opt=value` is `--opt value`: the same verdicts, word for word. */
static void test_equals_form_is_the_spaced_form(void **state)
{
    (void)state;
    const char *spaced[][8] = {
        {"node", "--id", "7", "--peers", "127.0.0.1:1", NULL},
        {"cluster", "--heartbeat", "500", "--election-timeout", "100-200", NULL},
        {"client", "--cluster", "127.0.0.1:1", "--timeout", "-1", "status", NULL},
        {"bench", "--cluster", "127.0.0.1:1", "--read-ratio", "2", NULL},
    };
    const char *joined[][8] = {
        {"node", "--id=7", "--peers=127.0.0.1:1", NULL},
        {"cluster", "--heartbeat=500", "--election-timeout=100-200", NULL},
        {"client", "--cluster=127.0.0.1:1", "--timeout=-1", "status", NULL},
        {"bench", "--cluster=127.0.0.1:1", "--read-ratio=2", NULL},
    };
    for (int i = 0; i < 4; i++) {
        struct result a, b;
        run_argv(&a, (char **)spaced[i]);
        run_argv(&b, (char **)joined[i]);
        assert_int_equal(a.status, 2);
        assert_int_equal(b.status, 2);
        assert_string_equal(a.err, b.err);
        assert_non_null(strstr(a.err, "see raft "));
    }
    /* A word after "--" is the same word: dump reaches the directory and
     * fails to read it (exit 4), not to parse its command line. */
    struct result a, b;
    run_argv(&a, (char *[]){"dump", "--", "/nonexistent-raft-dir", NULL});
    run_argv(&b, (char *[]){"dump", "/nonexistent-raft-dir", NULL});
    assert_int_equal(a.status, 4);
    assert_int_equal(b.status, 4);
    assert_string_equal(a.err, b.err);
}

/* ---- against a running cluster ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Holds a given port as ports.h explains; 0 or -errno. */
static int port_hold(int port, struct port_reservation *r)
{
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    r->port = port;
    if (r->fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    if (setsockopt(r->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(r->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int err = errno;
        port_release(r);
        return -err;
    }
    return 0;
}

/* `raft cluster` listens on base, base+1, ...: NODES consecutive ports. */
static void reserve_consecutive(struct port_reservation *p)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        assert_int_equal(port_reserve(&p[0]), 0);
        int i = 1;
        while (i < NODES && p[0].port + i <= 65535 && port_hold(p[0].port + i, &p[i]) == 0)
            i++;
        if (i == NODES)
            return;
        while (i-- > 0)
            port_release(&p[i]);
    }
    fail_msg("no %d consecutive free ports", NODES);
}

static int leader_of(char **addrs)
{
    for (int i = 0; i < NODES; i++) {
        struct client_reply r;
        if (kv_client_status(addrs[i], 300, &r) == 0 && r.role == RAFT_LEADER)
            return i;
    }
    return -1;
}

static char *file_text(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

/* Starts `raft cluster` written with --opt=value, in slow motion; it
 * elects, takes a put whose value starts with dashes after `--`, reads it
 * back, and stops cleanly on SIGTERM. The log level was given in capitals
 * and is debug: the votes asked for are logged. */
static void test_cluster_and_client_with_dashed_values(void **state)
{
    (void)state;
    struct port_reservation ports[NODES];
    reserve_consecutive(ports);
    char dir[] = "/tmp/raft-cli-XXXXXX", base[32], data[64], log[96], addr_buf[NODES][32];
    char cluster[128] = "", *addrs[NODES + 1] = {0};
    assert_non_null(mkdtemp(dir));
    snprintf(base, sizeof(base), "--base-port=%d", ports[0].port);
    snprintf(data, sizeof(data), "--data-dir=%s", dir);
    snprintf(log, sizeof(log), "%s/cluster.log", dir);
    for (int i = 0; i < NODES; i++) {
        snprintf(addr_buf[i], sizeof(addr_buf[i]), "127.0.0.1:%d", ports[i].port);
        addrs[i] = addr_buf[i];
        snprintf(cluster + strlen(cluster), sizeof(cluster) - strlen(cluster), "%s%s",
                 i ? "," : "", addr_buf[i]);
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen(log, "w", stderr))
            _exit(127);
        execl(bin(), bin(), "cluster", base, data, "--log-level=DEBUG",
              "--election-timeout=300-600", "--heartbeat=100", (char *)NULL);
        _exit(127);
    }
    uint64_t deadline = now_ms() + 8000;
    int leader = -1;
    while (leader < 0 && now_ms() < deadline) {
        struct timespec pause = {.tv_nsec = 50 * 1000000};
        nanosleep(&pause, NULL);
        leader = leader_of(addrs);
    }
    if (leader < 0)
        fprintf(stderr, "no leader; the log:\n%s", file_text(log));
    assert_true(leader >= 0);

    assert_int_equal(run("client", "--cluster", cluster, "put", "k", "--", "--dashed", NULL)
                         ->status, 0);
    struct result *r = run("client", "--cluster", cluster, "get", "k", NULL);
    assert_int_equal(r->status, 0);
    assert_string_equal(r->out, "--dashed\n");
    assert_int_equal(run("client", "--cluster", cluster, "put", "--", "k2", "--v", NULL)->status,
                     0);
    /* Options may follow the words; a value may be a negative number. */
    assert_int_equal(run("client", "put", "neg", "-5", "--cluster", cluster, NULL)->status, 0);
    r = run("client", "get", "k2", "--cluster", cluster, "--timeout=2", NULL);
    assert_string_equal(r->out, "--v\n");
    r = run("client", "--cluster", cluster, "get", "neg", NULL);
    assert_string_equal(r->out, "-5\n");
    r = run("client", "--cluster", cluster, "get", "--", "--dashed", NULL);
    assert_int_equal(r->status, 1);

    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(strstr(file_text(log), "RequestVote T"));
    for (int i = 0; i < NODES; i++)
        port_release(&ports[i]);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_of_each_subcommand_lists_options_and_defaults),
        cmocka_unit_test(test_usage_errors_are_one_sentence_and_a_pointer_to_help),
        cmocka_unit_test(test_member_commands_check_their_words_and_have_help),
        cmocka_unit_test(test_settings_that_cannot_work_are_refused),
        cmocka_unit_test(test_equals_form_is_the_spaced_form),
        cmocka_unit_test(test_cluster_and_client_with_dashed_values),
    };
    return cmocka_run_group_tests_name("system: the raft command line", tests, NULL, NULL);
}
