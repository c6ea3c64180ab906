/*
 * main.c - the `raft` command line (a contract; see README.md):
 *
 *   raft cluster [--nodes N] [--base-port P] [--data-dir DIR] [--log-level L]
 *                [--election-timeout MIN-MAX] [--heartbeat MS] [--trace-dir DIR]
 *                (and a console on stdin that acts on its nodes: kv/console.h)
 *   raft node    --id I --peers HOST:PORT,... [--data-dir DIR] [--log-level L]
 *                [--election-timeout MIN-MAX] [--heartbeat MS] [--snapshot-every N]
 *                [--trace FILE]
 *   raft client  --cluster HOST:PORT,... [--timeout S] put KEY VALUE | get KEY | delete KEY |
 *                cas KEY EXPECTED NEW | list [PREFIX] [--json] | status [--json] | transfer [ID]
 *   raft bench   --cluster HOST:PORT,... [--clients C] [--seconds T] [--value-size B]
 *                [--keys K] [--read-ratio R] [--json]
 *   raft dump    DIR
 *   raft timeline [--out FILE.html] [--shiviz FILE] TRACE...
 *   raft SUB --help
 *
 * Each subcommand declares its options in a table (cli.h), which both
 * parses them and prints its --help.
 *
 * Exit codes: 0 done; 1 `get` or `delete` of a missing key, a `cas` that
 * found something else; 2 usage error; 3 unavailable or timed out (for a
 * write: outcome unknown); 4 the node could not start.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "client_cmd.h"
#include "cli_tls.h"
#include "kv/bench.h"
#include "kv/client.h"
#include "kv/console.h"
#include "kv/kv.h"
#include "kv/server.h"
#include "raft/storage/storage.h"
#include "timeline.h"

#define EXIT_USAGE CLI_EXIT_USAGE
#define EXIT_UNAVAILABLE 3
#define EXIT_START_FAILED 4

#define ARRAY_LEN(table) (sizeof(table) / sizeof((table)[0]))

/* ---- serving: node and cluster ---- */

struct serve_options {
    long nodes, base_port;     /* cluster */
    long id, snapshot_every;   /* node */
    const char *peers;         /* node */
    const char *cluster_name;  /* node, cluster: the cluster's id comes from it */
    const char *data_dir;
    const char *trace;         /* node: the trace file; cluster: a directory of them */
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

/* The console's `quit`: wakes the main thread's sigwait() as a stop
 * signal would. */
static void console_quit(void *ctx)
{
    pthread_kill(*(pthread_t *)ctx, SIGUSR1);
}

/* Runs the nodes until a stop signal, or the console's quit (with_console:
 * commands on standard input act on the nodes meanwhile). */
static int serve(struct kv_server_config *configs, uint32_t count, bool with_console)
{
    sigset_t set;
    block_stop_signals(&set);
    if (with_console) {
        sigaddset(&set, SIGUSR1); /* the console's quit; blocked before any thread starts */
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    }
    pthread_t self = pthread_self();
    struct kv_server *servers[RAFT_MAX_NODES] = {0};
    struct kv_console *console = NULL;
    int rc = 0;
    for (uint32_t i = 0; i < count && rc == 0; i++)
        rc = kv_server_start(&servers[i], &configs[i]);
    struct kv_console_config cc = {.servers = servers, .configs = configs, .n = count,
                                   .in_fd = STDIN_FILENO, .out = stdout,
                                   .quit = console_quit, .ctx = &self};
    if (rc == 0 && with_console && (rc = kv_console_start(&console, &cc)) != 0)
        fprintf(stderr, "raft: cannot start the console: %s\n", strerror(-rc));
    if (rc == 0) {
        int sig;
        sigwait(&set, &sig);
        fprintf(stderr, "raft: %s, stopping\n", sig == SIGINT ? "SIGINT received"
                : sig == SIGTERM ? "SIGTERM received" : "quit typed on the console");
    }
    kv_console_stop(console); /* first: it may be crashing or restarting a node */
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
        CLI_CLUSTER_NAME_OPTION(&o->cluster_name),
        {.name = "trace", .kind = CLI_STRING, .metavar = "FILE", .dest = &o->trace,
         .help = "append every message, role change, commit and apply to FILE as JSON "
                 "lines (for raft timeline)", .shown_default = "no trace"},
    };
    const struct cli_command cmd = {
        .name = "node", .synopsis = "--id I --peers HOST:PORT,... [options]",
        .summary = "Runs one node of a cluster until SIGINT or SIGTERM; logs go to stderr.",
        .options = opts, .n_options = ARRAY_LEN(opts)};
    int rc = cli_parse_options(&cmd, argc, argv);
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
    if (cli_cluster_id("node", o.cluster_name, peers.v, peers.n, &sc.cluster))
        return EXIT_USAGE;
    configure_node(&sc, &o, (uint32_t)o.id, peers.n);
    sc.raft.log_wall_clock = true; /* logs of several processes sort together */
    sc.raft.trace_path = o.trace;
    return serve(&sc, 1, false);
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
        CLI_CLUSTER_NAME_OPTION(&o->cluster_name),
        {.name = "trace-dir", .kind = CLI_STRING, .metavar = "DIR", .dest = &o->trace,
         .help = "node I traces its messages and events to DIR/node-I.jsonl (for raft "
                 "timeline)", .shown_default = "no trace"},
    };
    const struct cli_command cmd = {
        .name = "cluster", .synopsis = "[options]",
        .summary = "Runs N nodes in this process on 127.0.0.1 until SIGINT, SIGTERM or "
                   "quit; logs go to stderr. Commands on stdin act on the nodes (type help).",
        .options = opts, .n_options = ARRAY_LEN(opts)};
    int rc = cli_parse_options(&cmd, argc, argv);
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
    char addr_buf[RAFT_MAX_NODES][32], dirs[RAFT_MAX_NODES][512], traces[RAFT_MAX_NODES][512];
    if (o.trace && mkdir(o.trace, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "raft cluster: cannot create the trace directory %s: %s\n", o.trace,
                strerror(errno));
        return EXIT_START_FAILED;
    }
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
    struct cluster_id cluster;
    if (cli_cluster_id("cluster", o.cluster_name, addrs, n, &cluster))
        return EXIT_USAGE;
    for (uint32_t i = 0; i < n; i++) {
        snprintf(dirs[i], sizeof(dirs[i]), "%s/node-%u", o.data_dir ? o.data_dir : "data", i);
        sc[i] = (struct kv_server_config){.peers = addrs, .data_dir = dirs[i],
                                          .tls = tls[i].files, .cluster = cluster};
        configure_node(&sc[i], &o, i, n);
        snprintf(traces[i], sizeof(traces[i]), "%s/node-%u.jsonl", o.trace ? o.trace : "", i);
        sc[i].raft.trace_path = o.trace ? traces[i] : NULL;
    }
    return serve(sc, n, true);
}

/* ---- client ---- */

struct client_options {
    const char *cluster;
    double timeout_s;
    bool json;
    struct tls_flags tls;
    struct tls_ctx *tls_ctx; /* made from tls; NULL: plain TCP */
};

/* The commands of `raft client`: their words (the command's included)
 * and what they take. */
static const struct client_word {
    const char *name, *args;
    int min_words, max_words;
    bool json; /* --json goes with it */
} client_words[] = {
    {"put", "KEY VALUE", 3, 3, false},
    {"get", "KEY", 2, 2, false},
    {"delete", "KEY", 2, 2, false},
    {"cas", "KEY EXPECTED NEW", 4, 4, false},
    {"list", "[PREFIX]", 1, 2, true},
    {"status", "no arguments", 1, 1, true},
    {"transfer", "[ID]", 1, 2, false},
};

#define CLIENT_COMMANDS "put KEY VALUE, get KEY, delete KEY, cas KEY EXPECTED NEW, " \
                        "list [PREFIX], status and transfer [ID]"

static int check_sizes(const char *sub, const struct cli_words *w)
{
    if (!strcmp(w->v[0], "transfer")) {
        size_t digits = strspn(w->v[1], "0123456789");
        if (digits == 0 || digits != strlen(w->v[1]) || digits > 9)
            return cli_usage_error(sub, "a node id is a number; got %s", w->v[1]);
        return 0;
    }
    if (strcmp(w->v[0], "list") && (strlen(w->v[1]) == 0 || strlen(w->v[1]) > CLIENT_MAX_KEY))
        return cli_usage_error(sub, "a key must have 1 to %d bytes; got %zu", CLIENT_MAX_KEY,
                               strlen(w->v[1]));
    for (int i = 2; i < w->n; i++)
        if (strlen(w->v[i]) > CLIENT_MAX_VALUE)
            return cli_usage_error(sub, "a value must have at most %d bytes; got %zu",
                                   CLIENT_MAX_VALUE, strlen(w->v[i]));
    return 0;
}

/* The command words, checked against client_words. Returns 0 or -EINVAL. */
static int client_check_words(const struct client_options *o, const struct cli_words *w)
{
    static const char *const sub = "client";
    if (w->n == 0)
        return cli_usage_error(sub, "needs a command: " CLIENT_COMMANDS);
    const struct client_word *c = NULL;
    for (size_t i = 0; i < ARRAY_LEN(client_words) && !c; i++)
        if (!strcmp(client_words[i].name, w->v[0]))
            c = &client_words[i];
    if (!c)
        return cli_usage_error(sub, "unknown command %s; the commands are " CLIENT_COMMANDS,
                               w->v[0]);
    if (w->n < c->min_words || w->n > c->max_words)
        return cli_usage_error(sub, "%s takes %s; got %d argument%s", c->name, c->args,
                               w->n - 1, w->n == 2 ? "" : "s");
    if (o->json && !c->json)
        return cli_usage_error(sub, "--json goes with status and list only, not with %s",
                               c->name);
    return w->n > 1 ? check_sizes(sub, w) : 0;
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
         .help = "with status: one JSON object per node per line; with list: keys "
                 "with their values"},
        CLI_TLS_OPTIONS(&o->tls),
    };
    const struct cli_command cmd = {
        .name = "client", .synopsis = "--cluster HOST:PORT,... [options] "
                                      "put KEY VALUE | get KEY | delete KEY | "
                                      "cas KEY EXPECTED NEW | list [PREFIX] | status | "
                                      "transfer [ID]",
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
    if (!strcmp(w.v[0], "status")) {
        rc = client_cmd_status(addrs.v, addrs.n, (unsigned)(o.timeout_s * 1000), o.json, o.tls_ctx);
    } else {
        struct client_cmd cmd = {.words = w.v, .n_words = w.n, .json = o.json,
                                 .timeout_s = o.timeout_s, .cluster = o.cluster,
                                 .tls = o.tls_ctx};
        rc = client_cmd_run(&cmd, addrs.v, addrs.n);
    }
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
    int rc = cli_parse_options(&cmd, argc, argv);
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
    rc = file_storage_dump(w.v[0], stdout, kv_describe_entry);
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
    {"client", "put, get, delete, cas, list, status or transfer against a running cluster",
     cmd_client, false},
    {"bench", "measure a running cluster's throughput and latency", cmd_bench, false},
    {"dump", "print a data directory as text", cmd_dump, false},
    {"certs", "make a CA and certificates for mutual TLS", cli_cmd_certs, false},
    {"timeline", "draw traces as a space-time diagram (HTML) or a ShiViz log", cmd_timeline,
     false},
};

static void print_commands(void)
{
    printf("usage: raft SUBCOMMAND [options]\n\nsubcommands:\n");
    for (size_t i = 0; i < ARRAY_LEN(commands); i++)
        printf("  %-8s %s\n", commands[i].name, commands[i].summary);
    printf("\n`raft SUBCOMMAND --help` lists a subcommand's options.\n"
           "Exit codes: 0 done; 1 get or delete of a missing key, a cas that found "
           "something else; 2 usage error; 3 unavailable or timed out; 4 a node could not "
           "start.\n");
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
                                             "bench, dump or timeline"));
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
