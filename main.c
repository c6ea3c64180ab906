/*
 * main.c - the `raft` command line (a contract; see README.md):
 *
 *   raft cluster [--nodes N] [--base-port P] [--data-dir DIR] [--log-level L]
 *   raft node    --id I --peers HOST:PORT,... [--data-dir DIR] [--log-level L]
 *                [--election-timeout MIN-MAX] [--heartbeat MS] [--snapshot-every N]
 *   raft client  --cluster HOST:PORT,... [--timeout S] put KEY VALUE | get KEY | status [--json]
 *   raft bench   --cluster HOST:PORT,... [--clients C] [--seconds T] [--value-size B]
 *                [--keys K] [--read-ratio R] [--json]
 *   raft dump    DIR
 *
 * Exit codes: 0 done; 1 `get` of a missing key; 2 usage error; 3 unavailable
 * or timed out (for put: outcome unknown); 4 the node could not start.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/bench.h"
#include "kv/client.h"
#include "kv/server.h"
#include "net/tcp.h"
#include "raft/storage/storage.h"

#define EXIT_NOT_FOUND 1
#define EXIT_USAGE 2
#define EXIT_UNAVAILABLE 3
#define EXIT_START_FAILED 4

static const char usage_text[] =
    "usage:\n"
    "  raft cluster [--nodes N] [--base-port P] [--data-dir DIR] [--log-level L]\n"
    "  raft node    --id I --peers HOST:PORT,HOST:PORT,... [--data-dir DIR] [--log-level L]\n"
    "               [--election-timeout MIN-MAX] [--heartbeat MS] [--snapshot-every N]\n"
    "  raft client  --cluster HOST:PORT,... [--timeout S] put KEY VALUE | get KEY | status [--json]\n"
    "  raft bench   --cluster HOST:PORT,... [--clients C] [--seconds T] [--value-size B]\n"
    "               [--keys K] [--read-ratio R] [--json]\n"
    "  raft dump    DIR\n"
    "log levels: error, warn, info, debug, trace (default: $RAFT_LOG_LEVEL or info)\n";

static int usage(const char *problem, const char *arg)
{
    if (problem)
        fprintf(stderr, "raft: %s%s%s\n", problem, arg ? ": " : "", arg ? arg : "");
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

/* ---- option parsing ---- */

struct options {
    /* node and cluster */
    long id, nodes, base_port, heartbeat, snapshot_every;
    long et_min, et_max;
    const char *peers, *data_dir, *log_level;
    /* client and bench */
    const char *cluster;
    double timeout_s, seconds, read_ratio;
    long clients, value_size, keys;
    int json;
    /* what is left: the client's command and its arguments */
    char **rest;
    int n_rest;
};

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static int parse_range(const char *s, long *lo, long *hi)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", s);
    char *dash = strchr(buf, '-');
    if (!dash)
        return -1;
    *dash = '\0';
    if (parse_long(buf, 1, 600000, lo) || parse_long(dash + 1, 1, 600000, hi) || *hi < *lo)
        return -1;
    return 0;
}

static int parse_level(const char *s, enum raft_log_level *out)
{
    static const char *names[] = {"error", "warn", "info", "debug", "trace"};
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum raft_log_level)i;
            return 0;
        }
    return -1;
}

/* Parses --flags among argv[2..]; anything else is collected in o->rest.
 * Returns 0 or prints usage and returns EXIT_USAGE. */
static int parse_options(int argc, char **argv, const char *const *allowed, struct options *o)
{
    o->rest = calloc((size_t)argc, sizeof(char *));
    if (!o->rest)
        return EXIT_USAGE;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || strlen(a) == 2) {
            o->rest[o->n_rest++] = argv[i];
            continue;
        }
        bool known = false;
        for (const char *const *k = allowed; *k; k++)
            known |= strcmp(a, *k) == 0;
        if (!known)
            return usage("unknown option", a);
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (i + 1 >= argc)
            return usage("missing value for", a);
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(a, "--id")) bad = parse_long(v, 0, RAFT_MAX_NODES - 1, &o->id);
        else if (!strcmp(a, "--nodes")) bad = parse_long(v, 1, RAFT_MAX_NODES, &o->nodes);
        else if (!strcmp(a, "--base-port")) bad = parse_long(v, 1, 65535 - RAFT_MAX_NODES, &o->base_port);
        else if (!strcmp(a, "--heartbeat")) bad = parse_long(v, 1, 60000, &o->heartbeat);
        else if (!strcmp(a, "--snapshot-every")) bad = parse_long(v, 0, 1L << 40, &o->snapshot_every);
        else if (!strcmp(a, "--election-timeout")) bad = parse_range(v, &o->et_min, &o->et_max);
        else if (!strcmp(a, "--peers")) o->peers = v;
        else if (!strcmp(a, "--data-dir")) o->data_dir = v;
        else if (!strcmp(a, "--log-level")) { enum raft_log_level l; bad = parse_level(v, &l); o->log_level = v; }
        else if (!strcmp(a, "--cluster")) o->cluster = v;
        else if (!strcmp(a, "--timeout")) bad = parse_double(v, 0.001, 86400, &o->timeout_s);
        else if (!strcmp(a, "--seconds")) bad = parse_double(v, 0.001, 86400, &o->seconds);
        else if (!strcmp(a, "--read-ratio")) bad = parse_double(v, 0, 1, &o->read_ratio);
        else if (!strcmp(a, "--clients")) bad = parse_long(v, 1, 4096, &o->clients);
        else if (!strcmp(a, "--value-size")) bad = parse_long(v, 0, CLIENT_MAX_VALUE, &o->value_size);
        else if (!strcmp(a, "--keys")) bad = parse_long(v, 1, 100000000, &o->keys);
        if (bad)
            return usage("bad value", a);
    }
    return 0;
}

/* Splits "a,b,c" into a NULL-terminated array (malloc'd, in place). */
static char **split_addrs(char *list, uint32_t *n)
{
    char **v = calloc(RAFT_MAX_NODES + 1, sizeof(char *));
    *n = 0;
    if (!v)
        return NULL;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char host[256];
        uint16_t port;
        if (*n == RAFT_MAX_NODES || tcp_parse_addr(tok, host, sizeof(host), &port)) {
            free(v);
            return NULL;
        }
        v[(*n)++] = tok;
    }
    if (*n == 0) {
        free(v);
        return NULL;
    }
    return v;
}

static enum raft_log_level log_level_of(const struct options *o)
{
    enum raft_log_level level = RAFT_LOG_INFO;
    const char *env = getenv("RAFT_LOG_LEVEL");
    if (o->log_level)
        parse_level(o->log_level, &level);
    else if (env && parse_level(env, &level) != 0)
        fprintf(stderr, "raft: ignoring RAFT_LOG_LEVEL=%s (not a level)\n", env);
    return level;
}

/* ---- serving: node and cluster ---- */

/* Blocks SIGINT and SIGTERM in every thread, so that the main thread alone
 * receives them through sigwait() and stops the nodes cleanly. */
static void block_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void configure_node(struct kv_server_config *sc, const struct options *o,
                           uint32_t id, uint32_t n)
{
    raft_config_defaults(&sc->raft, id, n);
    sc->raft.log_level = log_level_of(o);
    if (o->et_min) {
        sc->raft.election_timeout_min_ms = (unsigned)o->et_min;
        sc->raft.election_timeout_max_ms = (unsigned)o->et_max;
    }
    if (o->heartbeat)
        sc->raft.heartbeat_ms = (unsigned)o->heartbeat;
    if (o->snapshot_every >= 0)
        sc->raft.snapshot_every = (uint64_t)o->snapshot_every;
}

static int serve(struct kv_server_config *configs, uint32_t count)
{
    sigset_t set;
    block_stop_signals(&set);
    struct kv_server *servers[RAFT_MAX_NODES] = {0};
    int rc = 0;
    for (uint32_t i = 0; i < count && rc == 0; i++)
        rc = kv_server_start(&servers[i], &configs[i]);
    if (rc == 0) {
        int sig;
        sigwait(&set, &sig);
        fprintf(stderr, "raft: %s received, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    for (uint32_t i = 0; i < count; i++)
        if (servers[i])
            kv_server_stop(servers[i]);
    return rc ? EXIT_START_FAILED : 0;
}

static int cmd_node(int argc, char **argv)
{
    static const char *const allowed[] = {"--id", "--peers", "--data-dir", "--log-level",
        "--election-timeout", "--heartbeat", "--snapshot-every", NULL};
    struct options o = {.id = -1, .snapshot_every = -1};
    int rc = parse_options(argc, argv, allowed, &o);
    if (rc == 0 && o.n_rest)
        rc = usage("unexpected argument", o.rest[0]);
    if (rc == 0 && (o.id < 0 || !o.peers))
        rc = usage("node needs --id and --peers", NULL);
    char *peers = rc ? NULL : strdup(o.peers);
    uint32_t n = 0;
    char **addrs = peers ? split_addrs(peers, &n) : NULL;
    if (rc == 0 && !addrs)
        rc = usage("bad --peers list", o.peers);
    if (rc == 0 && (uint32_t)o.id >= n)
        rc = usage("--id must be a position in --peers", NULL);
    if (rc == 0) {
        char dir[512];
        snprintf(dir, sizeof(dir), "data/node-%ld", o.id);
        struct kv_server_config sc = {.peers = addrs, .data_dir = o.data_dir ? o.data_dir : dir};
        configure_node(&sc, &o, (uint32_t)o.id, n);
        rc = serve(&sc, 1);
    }
    free(addrs);
    free(peers);
    free(o.rest);
    return rc;
}

static int cmd_cluster(int argc, char **argv)
{
    static const char *const allowed[] = {"--nodes", "--base-port", "--data-dir",
                                          "--log-level", NULL};
    struct options o = {.nodes = 3, .base_port = 8000, .snapshot_every = -1};
    int rc = parse_options(argc, argv, allowed, &o);
    if (rc == 0 && o.n_rest)
        rc = usage("unexpected argument", o.rest[0]);
    if (rc == 0) {
        uint32_t n = (uint32_t)o.nodes;
        char addr_buf[RAFT_MAX_NODES][32], dirs[RAFT_MAX_NODES][512];
        char *addrs[RAFT_MAX_NODES + 1] = {0};
        struct kv_server_config sc[RAFT_MAX_NODES];
        for (uint32_t i = 0; i < n; i++) {
            snprintf(addr_buf[i], sizeof(addr_buf[i]), "127.0.0.1:%ld", o.base_port + (long)i);
            addrs[i] = addr_buf[i];
        }
        for (uint32_t i = 0; i < n; i++) {
            snprintf(dirs[i], sizeof(dirs[i]), "%s/node-%u", o.data_dir ? o.data_dir : "data", i);
            sc[i] = (struct kv_server_config){.peers = addrs, .data_dir = dirs[i]};
            configure_node(&sc[i], &o, i, n);
        }
        rc = serve(sc, n);
    }
    free(o.rest);
    return rc;
}

/* ---- client ---- */

static void print_status_json(const char *addr, uint32_t id, int rc, const struct client_reply *r)
{
    if (rc) {
        printf("{\"id\": %u, \"addr\": \"%s\", \"reachable\": false}\n", id, addr);
        return;
    }
    char leader[16] = "null";
    if (r->leader >= 0)
        snprintf(leader, sizeof(leader), "%d", r->leader);
    printf("{\"id\": %u, \"addr\": \"%s\", \"reachable\": true, \"role\": \"%s\", "
           "\"term\": %llu, \"leader\": %s, \"commit\": %llu, \"applied\": %llu, "
           "\"last_index\": %llu}\n", id, addr, raft_role_name((enum raft_role)r->role),
           (unsigned long long)r->term, leader, (unsigned long long)r->commit,
           (unsigned long long)r->applied, (unsigned long long)r->last_index);
}

static void print_status_row(const char *addr, uint32_t id, int rc, const struct client_reply *r)
{
    if (rc) {
        printf("%-3u %-22s %-14s\n", id, addr, "unreachable");
        return;
    }
    char leader[16] = "-";
    if (r->leader >= 0)
        snprintf(leader, sizeof(leader), "n%d", r->leader);
    printf("%-3u %-22s %-14s %6llu  %-6s %8llu %8llu %8llu\n", id, addr,
           raft_role_name((enum raft_role)r->role), (unsigned long long)r->term, leader,
           (unsigned long long)r->commit, (unsigned long long)r->applied,
           (unsigned long long)r->last_index);
}

static int client_status(char **addrs, uint32_t n, unsigned timeout_ms, bool json)
{
    if (!json)
        printf("%-3s %-22s %-14s %6s  %-6s %8s %8s %8s\n", "id", "addr", "role", "term",
               "leader", "commit", "applied", "last");
    unsigned each = timeout_ms < 1000 ? timeout_ms : 1000;
    bool any = false;
    for (uint32_t i = 0; i < n; i++) {
        struct client_reply r;
        int rc = kv_client_status(addrs[i], each, &r);
        any |= rc == 0;
        (json ? print_status_json : print_status_row)(addrs[i], i, rc, &r);
    }
    if (!any)
        fprintf(stderr, "No node of the cluster answered.\n");
    return any ? 0 : EXIT_UNAVAILABLE;
}

static int client_run(struct options *o, char **addrs, uint32_t n)
{
    const char *cmd = o->rest[0];
    unsigned timeout_ms = (unsigned)(o->timeout_s * 1000);
    if (!strcmp(cmd, "status") && o->n_rest == 1)
        return client_status(addrs, n, timeout_ms, o->json);
    bool put = !strcmp(cmd, "put") && o->n_rest == 3;
    bool get = !strcmp(cmd, "get") && o->n_rest == 2;
    if (!put && !get)
        return usage("client expects: put KEY VALUE | get KEY | status [--json]", NULL);
    const char *key = o->rest[1];
    if (strlen(key) == 0 || strlen(key) > CLIENT_MAX_KEY)
        return usage("a key must have 1 to 1024 bytes", NULL);
    if (put && strlen(o->rest[2]) > CLIENT_MAX_VALUE)
        return usage("a value must have at most 1 MiB", NULL);
    struct kv_client *c;
    if (kv_client_open(&c, addrs, n, timeout_ms))
        return EXIT_UNAVAILABLE;
    int rc;
    if (put) {
        rc = kv_client_put(c, key, (uint32_t)strlen(key), o->rest[2], (uint32_t)strlen(o->rest[2]));
    } else {
        uint8_t *value = NULL;
        uint32_t len = 0;
        rc = kv_client_get(c, key, (uint32_t)strlen(key), &value, &len);
        if (rc == 0) {
            fwrite(value, 1, len, stdout);
            fputc('\n', stdout);
        }
        free(value);
    }
    kv_client_close(c);
    if (rc == -ENOENT) {
        fprintf(stderr, "The key %s does not exist.\n", key);
        return EXIT_NOT_FOUND;
    }
    if (rc == -EINVAL) {
        fprintf(stderr, "The cluster refused the request as malformed.\n");
        return EXIT_USAGE;
    }
    if (rc) {
        fprintf(stderr, put ? "No leader acknowledged the put within %.1f s; it may or may "
                              "not have taken effect.\n"
                            : "No leader answered within %.1f s.\n", o->timeout_s);
        return EXIT_UNAVAILABLE;
    }
    return 0;
}

static int cmd_client(int argc, char **argv)
{
    static const char *const allowed[] = {"--cluster", "--timeout", "--json", NULL};
    struct options o = {.timeout_s = 5};
    int rc = parse_options(argc, argv, allowed, &o);
    if (rc == 0 && !o.cluster)
        rc = usage("client needs --cluster", NULL);
    if (rc == 0 && o.n_rest == 0)
        rc = usage("client needs a command", NULL);
    if (rc == 0 && o.json && strcmp(o.rest[0], "status") != 0)
        rc = usage("--json goes with status", NULL);
    char *list = rc ? NULL : strdup(o.cluster);
    uint32_t n = 0;
    char **addrs = list ? split_addrs(list, &n) : NULL;
    if (rc == 0 && !addrs)
        rc = usage("bad --cluster list", o.cluster);
    if (rc == 0)
        rc = client_run(&o, addrs, n);
    free(addrs);
    free(list);
    free(o.rest);
    return rc;
}

/* ---- bench and dump ---- */

static int cmd_bench(int argc, char **argv)
{
    static const char *const allowed[] = {"--cluster", "--clients", "--seconds", "--value-size",
                                          "--keys", "--read-ratio", "--json", NULL};
    struct options o = {.clients = 16, .seconds = 5, .value_size = 64, .keys = 1000};
    int rc = parse_options(argc, argv, allowed, &o);
    if (rc == 0 && o.n_rest)
        rc = usage("unexpected argument", o.rest[0]);
    if (rc == 0 && !o.cluster)
        rc = usage("bench needs --cluster", NULL);
    char *list = rc ? NULL : strdup(o.cluster);
    uint32_t n = 0;
    char **addrs = list ? split_addrs(list, &n) : NULL;
    if (rc == 0 && !addrs)
        rc = usage("bad --cluster list", o.cluster);
    if (rc == 0) {
        signal(SIGPIPE, SIG_IGN);
        struct bench_options bo = {.addrs = addrs, .n_addrs = n, .clients = (unsigned)o.clients,
                                   .seconds = o.seconds, .value_size = (unsigned)o.value_size,
                                   .keys = (unsigned)o.keys, .read_ratio = o.read_ratio,
                                   .timeout_ms = 5000};
        struct bench_result r;
        rc = bench_run(&bo, &r);
        bench_print(&r, o.json, stdout);
        if (rc) {
            fprintf(stderr, "The benchmark could not run: %s.\n", strerror(-rc));
            rc = EXIT_UNAVAILABLE;
        } else if (r.ops == 0) {
            fprintf(stderr, "No request succeeded: is the cluster up?\n");
            rc = EXIT_UNAVAILABLE;
        }
    }
    free(addrs);
    free(list);
    free(o.rest);
    return rc;
}

static int cmd_dump(int argc, char **argv)
{
    if (argc != 3 || argv[2][0] == '-')
        return usage("dump expects one data directory", NULL);
    int rc = file_storage_dump(argv[2], stdout);
    if (rc) {
        fprintf(stderr, "Cannot read the data directory %s: %s.\n", argv[2], strerror(-rc));
        return EXIT_START_FAILED;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(NULL, NULL);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "cluster") || !strcmp(cmd, "node")) {
        /* From the first instant, so that a stop signal arriving while the
         * nodes start is still a clean stop, not a kill. */
        sigset_t set;
        block_stop_signals(&set);
    }
    if (!strcmp(cmd, "cluster")) return cmd_cluster(argc, argv);
    if (!strcmp(cmd, "node")) return cmd_node(argc, argv);
    if (!strcmp(cmd, "client")) return cmd_client(argc, argv);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc, argv);
    if (!strcmp(cmd, "dump")) return cmd_dump(argc, argv);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    return usage("unknown command", cmd);
}
