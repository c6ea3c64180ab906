/*
 * main.c - the `raft` command line (a contract; see README.md):
 *
 *   raft cluster [--nodes N] [--base-port P] [--data-dir DIR] [--log-level L]
 *                [--election-timeout MIN-MAX] [--heartbeat MS]
 *   raft node    --id I --peers HOST:PORT,... [--data-dir DIR] [--log-level L]
 *                [--election-timeout MIN-MAX] [--heartbeat MS] [--snapshot-every N]
 *   raft client  --cluster HOST:PORT,... [--timeout S] put KEY VALUE | get KEY | status [--json]
 *   raft bench   --cluster HOST:PORT,... [--clients C] [--seconds T] [--value-size B]
 *                [--keys K] [--read-ratio R] [--json]
 *   raft dump    DIR
 *   raft SUB --help
 *
 * Each subcommand declares its options in a table (cli.h), which both
 * parses them and prints its --help.
 *
 * Exit codes: 0 done; 1 `get` of a missing key; 2 usage error; 3 unavailable
 * or timed out (for put: outcome unknown); 4 the node could not start.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_tls.h"
#include "kv/bench.h"
#include "kv/client.h"
#include "kv/server.h"
#include "raft/storage/storage.h"

#define EXIT_NOT_FOUND 1
#define EXIT_USAGE CLI_EXIT_USAGE
#define EXIT_UNAVAILABLE 3
#define EXIT_START_FAILED 4

#define ARRAY_LEN(table) (sizeof(table) / sizeof((table)[0]))

/* ---- serving: node and cluster ---- */

struct serve_options {
    long nodes, base_port;     /* cluster */
    long id, snapshot_every;   /* node */
    const char *peers;         /* node */
    const char *data_dir;
    struct cli_range election; /* election timeout, ms */
    long heartbeat;            /* ms */
    int log_level;             /* an enum raft_log_level; -1 until given */
    struct tls_flags tls;
};

/* The defaults are raft's own, so that --help shows what a node will use. */
static void serve_defaults(struct serve_options *o)
{
    struct raft_config d;
    raft_config_defaults(&d, 0, 1);
    *o = (struct serve_options){
        .nodes = 3, .base_port = 8000, .id = -1, .snapshot_every = (long)d.snapshot_every,
        .election = {d.election_timeout_min_ms, d.election_timeout_max_ms},
        .heartbeat = d.heartbeat_ms, .log_level = -1};
}

#define OPT_LOG_LEVEL(o)                                                                   \
    {.name = "log-level", .kind = CLI_LEVEL, .metavar = "L", .dest = &(o)->log_level,      \
     .help = "error, warn, info, debug or trace, in any case",                            \
     .shown_default = "$RAFT_LOG_LEVEL, else info"}
#define OPT_ELECTION(o)                                                                    \
    {.name = "election-timeout", .kind = CLI_RANGE, .metavar = "MIN-MAX",                 \
     .dest = &(o)->election, .lo = 1, .hi = 600000,                                       \
     .help = "ms a follower waits for a leader, drawn at random in [MIN, MAX]"}
#define OPT_HEARTBEAT(o)                                                                   \
    {.name = "heartbeat", .kind = CLI_LONG, .metavar = "MS", .dest = &(o)->heartbeat,      \
     .lo = 1, .hi = 60000, .help = "ms between a leader's heartbeats, below MIN"}

/* Without --log-level, $RAFT_LOG_LEVEL, read here once for all the nodes
 * of the process; a value that is not a level is said once and ignored. */
static void resolve_log_level(struct serve_options *o)
{
    if (o->log_level >= 0)
        return;
    enum raft_log_level level = RAFT_LOG_INFO;
    const char *env = getenv("RAFT_LOG_LEVEL");
    if (env && cli_parse_level(env, &level) != 0)
        fprintf(stderr, "raft: ignoring RAFT_LOG_LEVEL=%s (not a level)\n", env);
    o->log_level = (int)level;
}

/* Settings that parse but cannot work: a follower whose election timeout
 * can pass between two heartbeats starts elections against a live leader. */
static int check_timing(const char *sub, const struct serve_options *o)
{
    if (o->heartbeat >= o->election.min)
        return cli_usage_error(sub, "--heartbeat (%ld ms) must be below the minimum "
                               "--election-timeout (%ld ms), or followers time out between "
                               "heartbeats", o->heartbeat, o->election.min);
    return 0;
}

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

static void configure_node(struct kv_server_config *sc, const struct serve_options *o,
                           uint32_t id, uint32_t n)
{
    raft_config_defaults(&sc->raft, id, n);
    sc->raft.log_level = (enum raft_log_level)o->log_level;
    sc->raft.election_timeout_min_ms = (unsigned)o->election.min;
    sc->raft.election_timeout_max_ms = (unsigned)o->election.max;
    sc->raft.heartbeat_ms = (unsigned)o->heartbeat;
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

static int node_options(int argc, char **argv, struct serve_options *o, struct cli_addrs *peers)
{
    const struct cli_option opts[] = {
        {.name = "id", .kind = CLI_LONG, .metavar = "I", .dest = &o->id, .required = true,
         .lo = 0, .hi = 1e9, .accepts = "a position in --peers: 0, 1, 2, ...",
         .help = "this node's position in --peers, from 0"},
        {.name = "peers", .kind = CLI_STRING, .metavar = "HOST:PORT,...", .dest = &o->peers,
         .required = true, .accepts = "a comma-separated list of HOST:PORT",
         .help = "every node's address, by id: the first configuration"},
        {.name = "data-dir", .kind = CLI_STRING, .metavar = "DIR", .dest = &o->data_dir,
         .help = "where the node keeps its term, vote, log and snapshots",
         .shown_default = "data/node-I"},
        OPT_LOG_LEVEL(o),
        OPT_ELECTION(o),
        OPT_HEARTBEAT(o),
        {.name = "snapshot-every", .kind = CLI_LONG, .metavar = "N", .dest = &o->snapshot_every,
         .lo = 0, .hi = (double)(1L << 40),
         .help = "snapshot once N applied entries are in the log; 0: never"},
        CLI_TLS_OPTIONS(&o->tls),
    };
    const struct cli_command cmd = {
        .name = "node", .synopsis = "--id I --peers HOST:PORT,... [options]",
        .summary = "Runs one node of a cluster until SIGINT or SIGTERM; logs go to stderr.",
        .options = opts, .n_options = ARRAY_LEN(opts)};
    struct cli_words w;
    int rc = cli_parse(&cmd, argc, argv, &w);
    if (rc == 0)
        rc = cli_no_words(&cmd, &w);
    if (rc == 0)
        rc = check_timing(cmd.name, o);
    if (rc == 0)
        rc = cli_parse_addrs(cmd.name, "peers", o->peers, peers);
    if (rc == 0 && o->id >= (long)peers->n)
        rc = cli_usage_error(cmd.name, "--id must be 0-%u, the position of this node in "
                             "--peers; got %ld", peers->n - 1, o->id);
    return rc;
}

static int cmd_node(int argc, char **argv)
{
    struct serve_options o;
    serve_defaults(&o);
    struct cli_addrs peers;
    int rc = node_options(argc, argv, &o, &peers);
    if (rc)
        return cli_exit_code(rc);
    resolve_log_level(&o);
    char dir[512];
    snprintf(dir, sizeof(dir), "data/node-%ld", o.id);
    char name[32];
    snprintf(name, sizeof(name), "node-%ld", o.id);
    struct tls_paths tls;
    if (cli_tls_paths("node", &o.tls, name, &tls))
        return EXIT_USAGE;
    struct kv_server_config sc = {.peers = peers.v, .data_dir = o.data_dir ? o.data_dir : dir,
                                  .tls = tls.files};
    configure_node(&sc, &o, (uint32_t)o.id, peers.n);
    return serve(&sc, 1);
}

static int cluster_options(int argc, char **argv, struct serve_options *o)
{
    const struct cli_option opts[] = {
        {.name = "nodes", .kind = CLI_LONG, .metavar = "N", .dest = &o->nodes, .lo = 1,
         .hi = RAFT_MAX_NODES, .help = "how many nodes to run"},
        {.name = "base-port", .kind = CLI_LONG, .metavar = "P", .dest = &o->base_port, .lo = 1,
         .hi = 65535, .help = "node I listens on 127.0.0.1:P+I"},
        {.name = "data-dir", .kind = CLI_STRING, .metavar = "DIR", .dest = &o->data_dir,
         .help = "node I keeps its state in DIR/node-I", .shown_default = "data"},
        OPT_LOG_LEVEL(o),
        OPT_ELECTION(o),
        OPT_HEARTBEAT(o),
        CLI_TLS_OPTIONS(&o->tls),
    };
    const struct cli_command cmd = {
        .name = "cluster", .synopsis = "[options]",
        .summary = "Runs N nodes in this process on 127.0.0.1 until SIGINT or SIGTERM; "
                   "logs go to stderr.",
        .options = opts, .n_options = ARRAY_LEN(opts)};
    struct cli_words w;
    int rc = cli_parse(&cmd, argc, argv, &w);
    if (rc == 0)
        rc = cli_no_words(&cmd, &w);
    if (rc == 0)
        rc = check_timing(cmd.name, o);
    if (rc == 0 && o->base_port + o->nodes - 1 > 65535)
        rc = cli_usage_error(cmd.name, "--base-port must leave room for %ld ports up to "
                             "65535; got %ld", o->nodes, o->base_port);
    return rc;
}

static int cmd_cluster(int argc, char **argv)
{
    struct serve_options o;
    serve_defaults(&o);
    int rc = cluster_options(argc, argv, &o);
    if (rc)
        return cli_exit_code(rc);
    resolve_log_level(&o);
    uint32_t n = (uint32_t)o.nodes;
    char addr_buf[RAFT_MAX_NODES][32], dirs[RAFT_MAX_NODES][512];
    char *addrs[RAFT_MAX_NODES + 1] = {0};
    struct kv_server_config sc[RAFT_MAX_NODES];
    static struct tls_paths tls[RAFT_MAX_NODES]; /* node I uses node-I's certificate */
    for (uint32_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "node-%u", i);
        if (cli_tls_paths("cluster", &o.tls, name, &tls[i]))
            return EXIT_USAGE;
    }
    for (uint32_t i = 0; i < n; i++) {
        snprintf(addr_buf[i], sizeof(addr_buf[i]), "127.0.0.1:%ld", o.base_port + (long)i);
        addrs[i] = addr_buf[i];
    }
    for (uint32_t i = 0; i < n; i++) {
        snprintf(dirs[i], sizeof(dirs[i]), "%s/node-%u", o.data_dir ? o.data_dir : "data", i);
        sc[i] = (struct kv_server_config){.peers = addrs, .data_dir = dirs[i],
                                          .tls = tls[i].files};
        configure_node(&sc[i], &o, i, n);
    }
    return serve(sc, n);
}

/* ---- client ---- */

struct client_options {
    const char *cluster;
    double timeout_s;
    bool json;
    struct tls_flags tls;
    struct tls_ctx *tls_ctx; /* made from tls; NULL: plain TCP */
};

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

static int client_status(const struct cli_addrs *addrs, unsigned timeout_ms, bool json,
                         struct tls_ctx *tls)
{
    if (!json)
        printf("%-3s %-22s %-14s %6s  %-6s %8s %8s %8s\n", "id", "addr", "role", "term",
               "leader", "commit", "applied", "last");
    unsigned each = timeout_ms < 1000 ? timeout_ms : 1000;
    bool any = false;
    for (uint32_t i = 0; i < addrs->n; i++) {
        struct client_reply r;
        int rc = kv_client_status_tls(addrs->v[i], tls, each, &r);
        any |= rc == 0;
        (json ? print_status_json : print_status_row)(addrs->v[i], i, rc, &r);
    }
    if (!any)
        fprintf(stderr, "No node of the cluster answered.\n");
    return any ? 0 : EXIT_UNAVAILABLE;
}

/* put or get, once the words are known to be well formed. */
static int client_put_get(const struct client_options *o, const struct cli_addrs *addrs,
                          const struct cli_words *w)
{
    bool put = w->n == 3;
    const char *key = w->v[1];
    struct kv_client *c;
    if (kv_client_open(&c, addrs->v, addrs->n, (unsigned)(o->timeout_s * 1000)))
        return EXIT_UNAVAILABLE;
    kv_client_set_tls(c, o->tls_ctx);
    int rc;
    if (put) {
        rc = kv_client_put(c, key, (uint32_t)strlen(key), w->v[2], (uint32_t)strlen(w->v[2]));
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

/* The command words: put KEY VALUE | get KEY | status. Returns 0 or -EINVAL. */
static int client_check_words(const struct client_options *o, const struct cli_words *w)
{
    static const char *const sub = "client";
    if (w->n == 0)
        return cli_usage_error(sub, "needs a command: put KEY VALUE, get KEY or status");
    const char *cmd = w->v[0];
    int want = !strcmp(cmd, "put") ? 3 : !strcmp(cmd, "get") ? 2 : !strcmp(cmd, "status") ? 1 : 0;
    if (want == 0)
        return cli_usage_error(sub, "unknown command %s; the commands are put KEY VALUE, "
                               "get KEY and status", cmd);
    if (w->n != want)
        return cli_usage_error(sub, "%s takes %s; got %d argument%s", cmd,
                               want == 3 ? "KEY VALUE" : want == 2 ? "KEY" : "no arguments",
                               w->n - 1, w->n == 2 ? "" : "s");
    if (o->json && want != 1)
        return cli_usage_error(sub, "--json goes with status only, not with %s", cmd);
    if (want > 1 && (strlen(w->v[1]) == 0 || strlen(w->v[1]) > CLIENT_MAX_KEY))
        return cli_usage_error(sub, "a key must have 1 to %d bytes; got %zu", CLIENT_MAX_KEY,
                               strlen(w->v[1]));
    if (want == 3 && strlen(w->v[2]) > CLIENT_MAX_VALUE)
        return cli_usage_error(sub, "a value must have at most %d bytes; got %zu",
                               CLIENT_MAX_VALUE, strlen(w->v[2]));
    return 0;
}

#define OPT_CLUSTER(o)                                                                     \
    {.name = "cluster", .kind = CLI_STRING, .metavar = "HOST:PORT,...", .dest = &(o)->cluster, \
     .required = true, .accepts = "a comma-separated list of HOST:PORT",                  \
     .help = "the address of one node or more"}

static int client_options(int argc, char **argv, struct client_options *o,
                          struct cli_words *w, struct cli_addrs *addrs)
{
    const struct cli_option opts[] = {
        OPT_CLUSTER(o),
        {.name = "timeout", .kind = CLI_DOUBLE, .metavar = "S", .dest = &o->timeout_s,
         .lo = 0.001, .hi = 86400, .accepts = "a number of seconds from 0.001 to 86400",
         .help = "seconds to keep trying, through elections; then exit 3"},
        {.name = "json", .kind = CLI_FLAG, .dest = &o->json,
         .help = "with status: one JSON object per node per line"},
        CLI_TLS_OPTIONS(&o->tls),
    };
    const struct cli_command cmd = {
        .name = "client", .synopsis = "--cluster HOST:PORT,... [options] "
                                      "put KEY VALUE | get KEY | status",
        .summary = "Talks to a running cluster. A value that starts with a dash goes after "
                   "--, as in: put KEY -- --VALUE.",
        .options = opts, .n_options = ARRAY_LEN(opts), .dash_words = true};
    int rc = cli_parse(&cmd, argc, argv, w);
    if (rc == 0)
        rc = client_check_words(o, w);
    if (rc == 0)
        rc = cli_parse_addrs(cmd.name, "cluster", o->cluster, addrs);
    if (rc == 0)
        rc = cli_tls_client(cmd.name, &o->tls, &o->tls_ctx);
    return rc;
}

static int cmd_client(int argc, char **argv)
{
    struct client_options o = {.timeout_s = 5};
    struct cli_words w;
    struct cli_addrs addrs;
    int rc = client_options(argc, argv, &o, &w, &addrs);
    if (rc)
        return cli_exit_code(rc);
    if (!strcmp(w.v[0], "status"))
        rc = client_status(&addrs, (unsigned)(o.timeout_s * 1000), o.json, o.tls_ctx);
    else
        rc = client_put_get(&o, &addrs, &w);
    tls_ctx_free(o.tls_ctx);
    return rc;
}

/* ---- bench and dump ---- */

struct bench_cli {
    const char *cluster;
    long clients, value_size, keys;
    double seconds, read_ratio;
    bool json;
    struct tls_flags tls;
};

static int bench_options(int argc, char **argv, struct bench_cli *o, struct cli_addrs *addrs)
{
    const struct cli_option opts[] = {
        OPT_CLUSTER(o),
        {.name = "clients", .kind = CLI_LONG, .metavar = "C", .dest = &o->clients, .lo = 1,
         .hi = 4096, .help = "client sessions, each with one request in flight"},
        {.name = "seconds", .kind = CLI_DOUBLE, .metavar = "T", .dest = &o->seconds,
         .lo = 0.001, .hi = 86400, .help = "how long to run"},
        {.name = "value-size", .kind = CLI_LONG, .metavar = "B", .dest = &o->value_size,
         .lo = 0, .hi = CLIENT_MAX_VALUE, .help = "bytes per value"},
        {.name = "keys", .kind = CLI_LONG, .metavar = "K", .dest = &o->keys, .lo = 1,
         .hi = 100000000, .help = "how many distinct keys"},
        {.name = "read-ratio", .kind = CLI_DOUBLE, .metavar = "R", .dest = &o->read_ratio,
         .lo = 0, .hi = 1, .help = "the fraction of requests that are gets"},
        {.name = "json", .kind = CLI_FLAG, .dest = &o->json,
         .help = "print the result as one JSON object"},
        CLI_TLS_OPTIONS(&o->tls),
    };
    const struct cli_command cmd = {
        .name = "bench", .synopsis = "--cluster HOST:PORT,... [options]",
        .summary = "Runs a closed-loop load against a running cluster and prints its "
                   "throughput and latency.",
        .options = opts, .n_options = ARRAY_LEN(opts)};
    struct cli_words w;
    int rc = cli_parse(&cmd, argc, argv, &w);
    if (rc == 0)
        rc = cli_no_words(&cmd, &w);
    if (rc == 0)
        rc = cli_parse_addrs(cmd.name, "cluster", o->cluster, addrs);
    return rc;
}

static int cmd_bench(int argc, char **argv)
{
    struct bench_cli o = {.clients = 16, .seconds = 5, .value_size = 64, .keys = 1000};
    struct cli_addrs addrs;
    int rc = bench_options(argc, argv, &o, &addrs);
    if (rc)
        return cli_exit_code(rc);
    signal(SIGPIPE, SIG_IGN);
    struct bench_options bo = {.addrs = addrs.v, .n_addrs = addrs.n,
                               .clients = (unsigned)o.clients, .seconds = o.seconds,
                               .value_size = (unsigned)o.value_size, .keys = (unsigned)o.keys,
                               .read_ratio = o.read_ratio, .timeout_ms = 5000};
    if (cli_tls_client("bench", &o.tls, &bo.tls))
        return EXIT_USAGE;
    struct bench_result r;
    rc = bench_run(&bo, &r);
    tls_ctx_free(bo.tls);
    bench_print(&r, o.json, stdout);
    if (rc) {
        fprintf(stderr, "The benchmark could not run: %s.\n", strerror(-rc));
        rc = EXIT_UNAVAILABLE;
    } else if (r.ops == 0) {
        fprintf(stderr, "No request succeeded: is the cluster up?\n");
        rc = EXIT_UNAVAILABLE;
    }
    return rc;
}

static int cmd_dump(int argc, char **argv)
{
    const struct cli_command cmd = {
        .name = "dump", .synopsis = "DIR",
        .summary = "Prints a node's data directory as text."};
    struct cli_words w;
    int rc = cli_parse(&cmd, argc, argv, &w);
    if (rc == 0 && w.n != 1)
        rc = cli_usage_error(cmd.name, "expects one data directory, DIR; got %d arguments", w.n);
    if (rc)
        return cli_exit_code(rc);
    rc = file_storage_dump(w.v[0], stdout);
    if (rc) {
        fprintf(stderr, "Cannot read the data directory %s: %s.\n", w.v[0], strerror(-rc));
        return EXIT_START_FAILED;
    }
    return 0;
}

/* ---- subcommands ---- */

static const struct {
    const char *name, *summary;
    int (*run)(int argc, char **argv);
    bool serves; /* runs nodes until a stop signal */
} commands[] = {
    {"cluster", "run N nodes in this process, on 127.0.0.1", cmd_cluster, true},
    {"node", "run one node of a cluster", cmd_node, true},
    {"client", "put, get or status against a running cluster", cmd_client, false},
    {"bench", "measure a running cluster's throughput and latency", cmd_bench, false},
    {"dump", "print a data directory as text", cmd_dump, false},
    {"certs", "make a CA and certificates for mutual TLS", cli_cmd_certs, false},
};

static void print_commands(void)
{
    printf("usage: raft SUBCOMMAND [options]\n\nsubcommands:\n");
    for (size_t i = 0; i < ARRAY_LEN(commands); i++)
        printf("  %-8s %s\n", commands[i].name, commands[i].summary);
    printf("\n`raft SUBCOMMAND --help` lists a subcommand's options.\n"
           "Exit codes: 0 done; 1 get of a missing key; 2 usage error; 3 unavailable or "
           "timed out; 4 a node could not start.\n");
}

static int run_command(const char *name, int argc, char **argv)
{
    for (size_t i = 0; i < ARRAY_LEN(commands); i++) {
        if (strcmp(name, commands[i].name) != 0)
            continue;
        if (commands[i].serves) {
            /* From the first instant, so that a stop signal arriving while
             * the nodes start is still a clean stop, not a kill. */
            sigset_t set;
            block_stop_signals(&set);
        }
        return commands[i].run(argc, argv);
    }
    return cli_exit_code(cli_usage_error(NULL, "unknown subcommand %s", name));
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return cli_exit_code(cli_usage_error(NULL, "needs a subcommand: cluster, node, client, "
                                             "bench or dump"));
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") && argc == 3) {
        char *help_argv[] = {argv[2], "--help", NULL};
        return run_command(argv[2], 2, help_argv);
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        print_commands();
        return 0;
    }
    return run_command(cmd, argc - 1, argv + 1);
}
