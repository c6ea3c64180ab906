/*
 * main.c - the `raft` command line (a contract; see README.md):
 *
 *   raft cluster [--nodes N] [--base-port P] [--data-dir DIR] [--log-level L]
 *                [--election-timeout MIN-MAX] [--heartbeat MS] [--trace-dir DIR]
 *                (and a console on stdin that acts on its nodes: kv/console.h)
 *   raft node    --id I --peers HOST:PORT,... [--listen HOST:PORT] [--data-dir DIR]
 *                [--log-level L] [--election-timeout MIN-MAX] [--heartbeat MS]
 *                [--snapshot-every N] [--trace FILE]
 *   raft node    --id I --listen HOST:PORT [...]   (in no configuration: waits to be added)
 *   raft client  --cluster HOST:PORT,... [--timeout S] put KEY VALUE | get KEY | delete KEY |
 *                cas KEY EXPECTED NEW | list [PREFIX] [--json] | status [--json] |
 *                transfer [ID] | member list [--json] | member add [--learner] ID HOST:PORT |
 *                member remove ID       (client_cli.c)
 *   raft bench   --cluster HOST:PORT,... [--clients C] [--seconds T] [--value-size B]
 *                [--keys K] [--read-ratio R | --mix OP=PCT,...] [--json]
 *   raft dump    DIR
 *   raft timeline [--out FILE.html] [--shiviz FILE] TRACE...
 *   raft SUB --help
 *
 * Each subcommand declares its options in a table (cli.h), which both
 * parses them and prints its --help.
 *
 * Exit codes: 0 done; 1 `get` or `delete` of a missing key, a `cas` that
 * found something else; 2 usage error; 3 unavailable or timed out (for a
 * write: outcome unknown); 4 the node could not start; 5 the cluster
 * refused the request (with one sentence why).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "client_cli.h"
#include "cli_tls.h"
#include "kv/bench.h"
#include "kv/client.h"
#include "kv/console.h"
#include "kv/kv.h"
#include "kv/server.h"
#include "net/tcp_socket.h"
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
    const char *peers, *listen; /* node */
    const char *cluster_name;   /* node, cluster: the cluster's id comes from it */
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
        .nodes = 3, .base_port = 8000, .id = -1, .snapshot_every = -1,
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
    if (o->snapshot_every == 0)
        sc->raft.snapshot_log_min_bytes = 0; /* never */
    else if (o->snapshot_every > 0)
        sc->raft.snapshot_every = (uint64_t)o->snapshot_every;
}

/* The console's `quit`: wakes the main thread's sigwait() as a stop
 * signal would. */
static void console_quit(void *ctx)
{
    pthread_kill(*(pthread_t *)ctx, SIGUSR1);
}

/* Runs the nodes until a stop signal, or the console's quit (with_console:
 * commands on standard input act on the nodes meanwhile; new_node, for its
 * member add, may be NULL). */
static int serve(struct kv_server_config *configs, uint32_t count, bool with_console,
                 int (*new_node)(void *ctx, uint32_t id, struct kv_server_config *out),
                 void *new_node_ctx)
{
    sigset_t set;
    block_stop_signals(&set);
    if (with_console) {
        sigaddset(&set, SIGUSR1); /* the console's quit; blocked before any thread starts */
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    }
    pthread_t self = pthread_self();
    struct kv_server *servers[RAFT_MAX_ID + 1] = {0}; /* by id: member add fills more */
    struct kv_console *console = NULL;
    int rc = 0;
    for (uint32_t i = 0; i < count && rc == 0; i++)
        rc = kv_server_start(&servers[i], &configs[i]);
    struct kv_console_config cc = {.servers = servers, .configs = configs, .n = count,
                                   .new_node = new_node, .new_node_ctx = new_node_ctx,
                                   .in_fd = STDIN_FILENO,
                                   .out = stdout, .quit = console_quit, .ctx = &self};
    if (rc == 0 && with_console && (rc = kv_console_start(&console, &cc)) != 0)
        fprintf(stderr, "raft: cannot start the console: %s\n", strerror(-rc));
    if (rc == 0) {
        int sig;
        sigwait(&set, &sig);
        fprintf(stderr, "raft: %s, stopping\n", sig == SIGINT ? "SIGINT received"
                : sig == SIGTERM ? "SIGTERM received" : "quit typed on the console");
    }
    kv_console_stop(console); /* first: it may be crashing or restarting a node */
    for (uint32_t i = 0; i <= RAFT_MAX_ID; i++)
        if (servers[i])
            kv_server_stop(servers[i]);
    return rc ? EXIT_START_FAILED : 0;
}

static int node_options(int argc, char **argv, struct serve_options *o, struct cli_addrs *peers)
{
    const struct cli_option opts[] = {
        {.name = "id", .kind = CLI_LONG, .metavar = "I", .dest = &o->id, .required = true,
         .lo = 0, .hi = RAFT_MAX_ID, .accepts = "a node id from 0 to 63",
         .help = "this node's id: its position in --peers, from 0; or, to join a running "
                 "cluster, an id it never had"},
        {.name = "peers", .kind = CLI_STRING, .metavar = "HOST:PORT,...", .dest = &o->peers,
         .accepts = "a comma-separated list of HOST:PORT",
         .help = "every node's address, by id: the first configuration, recorded in the data "
                 "directory the first time and used from then on",
         .shown_default = "none: the node waits to be added"},
        {.name = "listen", .kind = CLI_STRING, .metavar = "HOST:PORT", .dest = &o->listen,
         .accepts = "HOST:PORT",
         .help = "where to listen; without --peers, a node in no configuration, which waits "
                 "for a leader to add it (raft client member add I HOST:PORT)",
         .shown_default = "its address in --peers"},
        {.name = "data-dir", .kind = CLI_STRING, .metavar = "DIR", .dest = &o->data_dir,
         .help = "where the node keeps its term, vote, log and snapshots",
         .shown_default = "data/node-I"},
        OPT_LOG_LEVEL(o),
        OPT_ELECTION(o),
        OPT_HEARTBEAT(o),
        {.name = "snapshot-every", .kind = CLI_LONG, .metavar = "N", .dest = &o->snapshot_every,
         .lo = 0, .hi = (double)(1L << 40),
         .help = "snapshot once N applied entries are in the log; 0: never",
         .shown_default = "when the log holds a quarter of the last snapshot's size, and at "
                          "least 16 MiB"},
        CLI_TLS_OPTIONS(&o->tls),
        CLI_CLUSTER_NAME_OPTION(&o->cluster_name),
        {.name = "trace", .kind = CLI_STRING, .metavar = "FILE", .dest = &o->trace,
         .help = "append every message, role change, commit and apply to FILE as JSON "
                 "lines (for raft timeline)", .shown_default = "no trace"},
    };
    const struct cli_command cmd = {
        .name = "node", .synopsis = "--id I (--peers HOST:PORT,... | --listen HOST:PORT) "
                                    "[options]",
        .summary = "Runs one node of a cluster until SIGINT or SIGTERM; logs go to stderr.",
        .options = opts, .n_options = ARRAY_LEN(opts)};
    int rc = cli_parse_options(&cmd, argc, argv);
    if (rc == 0)
        rc = check_timing(cmd.name, o);
    if (rc == 0 && !o->peers && !o->listen)
        rc = cli_usage_error(cmd.name, "needs --peers HOST:PORT,... (the first configuration "
                             "of a new cluster) or --listen HOST:PORT (a node that waits to "
                             "be added)");
    *peers = (struct cli_addrs){.n = 0};
    if (rc == 0 && o->peers)
        rc = cli_parse_addrs(cmd.name, "peers", o->peers, peers);
    if (rc == 0 && o->peers && o->id >= (long)peers->n)
        rc = cli_usage_error(cmd.name, "--id must be 0-%u, the position of this node in "
                             "--peers; got %ld", peers->n - 1, o->id);
    char host[256];
    uint16_t port;
    if (rc == 0 && o->listen && tcp_parse_addr(o->listen, host, sizeof(host), &port))
        rc = cli_usage_error(cmd.name, "--listen must be HOST:PORT (port 1-65535); got '%s'",
                             o->listen);
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
    struct kv_server_config sc = {.peers = peers.n ? peers.v : NULL, .listen = o.listen,
                                  .data_dir = o.data_dir ? o.data_dir : dir,
                                  .tls = tls.files, .cluster_named = o.cluster_name != NULL};
    if (cli_cluster_id("node", o.cluster_name, peers.v, peers.n, &sc.cluster))
        return EXIT_USAGE;
    configure_node(&sc, &o, (uint32_t)o.id, peers.n);
    sc.raft.log_wall_clock = true; /* logs of several processes sort together */
    sc.raft.trace_path = o.trace;
    return serve(&sc, 1, false, NULL, NULL);
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

/* The nodes of `raft cluster`, by id: those it starts, and those the
 * console's member add starts later. */
struct cluster_nodes {
    struct serve_options o;
    long top_port; /* the highest port a node of it listens on */
    char addr[RAFT_MAX_ID + 1][32], dir[RAFT_MAX_ID + 1][512], trace[RAFT_MAX_ID + 1][512];
    struct tls_paths tls[RAFT_MAX_ID + 1]; /* node I uses node-I's certificate */
    struct kv_server_config sc[RAFT_MAX_ID + 1];
    struct cluster_id cluster; /* every node's, those added later included */
};

/* Node id's data directory, trace file and TLS files. */
static int cluster_node_files(struct cluster_nodes *cl, uint32_t id)
{
    char name[32];
    snprintf(name, sizeof(name), "node-%u", id);
    if (cli_tls_paths("cluster", &cl->o.tls, name, &cl->tls[id]))
        return -EINVAL;
    const char *base = cl->o.data_dir ? cl->o.data_dir : "data";
    snprintf(cl->dir[id], sizeof(cl->dir[id]), "%s/node-%u", base, id);
    snprintf(cl->trace[id], sizeof(cl->trace[id]), "%s/node-%u.jsonl",
             cl->o.trace ? cl->o.trace : "", id);
    return 0;
}

/* The first port after the cluster's own that nothing listens on. */
static long next_free_port(long from)
{
    for (long port = from; port <= 65535 && port < from + 100; port++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&a, sizeof(a));
        if (fd >= 0)
            close(fd);
        if (rc == 0)
            return port;
    }
    return -1;
}

/* The console's member add: node id, on the next free port, in no
 * configuration until the leader adds it. */
static int cluster_new_node(void *ctx, uint32_t id, struct kv_server_config *out)
{
    struct cluster_nodes *cl = ctx;
    long port = next_free_port(cl->top_port + 1);
    if (port < 0)
        return -EADDRINUSE;
    int rc = cluster_node_files(cl, id);
    if (rc)
        return rc;
    cl->top_port = port;
    snprintf(cl->addr[id], sizeof(cl->addr[id]), "127.0.0.1:%ld", port);
    *out = (struct kv_server_config){.listen = cl->addr[id], .data_dir = cl->dir[id],
                                     .tls = cl->tls[id].files, .cluster = cl->cluster,
                                     .cluster_named = cl->o.cluster_name != NULL};
    configure_node(out, &cl->o, id, 0);
    out->raft.trace_path = cl->o.trace ? cl->trace[id] : NULL;
    return 0;
}

static int cmd_cluster(int argc, char **argv)
{
    static struct cluster_nodes cl; /* lives as long as its nodes */
    serve_defaults(&cl.o);
    int rc = cluster_options(argc, argv, &cl.o);
    if (rc)
        return cli_exit_code(rc);
    resolve_log_level(&cl.o);
    uint32_t n = (uint32_t)cl.o.nodes;
    if (cl.o.trace && mkdir(cl.o.trace, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "raft cluster: cannot create the trace directory %s: %s\n",
                cl.o.trace, strerror(errno));
        return EXIT_START_FAILED;
    }
    static char *addrs[RAFT_MAX_NODES + 1];
    for (uint32_t i = 0; i < n; i++) {
        if (cluster_node_files(&cl, i))
            return EXIT_USAGE;
        snprintf(cl.addr[i], sizeof(cl.addr[i]), "127.0.0.1:%ld", cl.o.base_port + (long)i);
        addrs[i] = cl.addr[i];
    }
    cl.top_port = cl.o.base_port + (long)n - 1;
    if (cli_cluster_id("cluster", cl.o.cluster_name, addrs, n, &cl.cluster))
        return EXIT_USAGE;
    for (uint32_t i = 0; i < n; i++) {
        cl.sc[i] = (struct kv_server_config){.peers = addrs, .data_dir = cl.dir[i],
                                             .tls = cl.tls[i].files, .cluster = cl.cluster,
                                             .cluster_named = cl.o.cluster_name != NULL};
        configure_node(&cl.sc[i], &cl.o, i, n);
        cl.sc[i].raft.trace_path = cl.o.trace ? cl.trace[i] : NULL;
    }
    return serve(cl.sc, n, true, cluster_new_node, &cl);
}

/* ---- bench and dump ---- */

#define OPT_CLUSTER(o)                                                                     \
    {.name = "cluster", .kind = CLI_STRING, .metavar = "HOST:PORT,...", .dest = &(o)->cluster, \
     .required = true, .accepts = "a comma-separated list of HOST:PORT",                  \
     .help = "the address of one node or more"}

struct bench_cli {
    const char *cluster, *mix;
    long clients, value_size, keys;
    double seconds, read_ratio;
    struct bench_mix mixed; /* from --mix or --read-ratio */
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
        {.name = "mix", .kind = CLI_STRING, .metavar = "OP=PCT,...", .dest = &o->mix,
         .accepts = "OP=PERCENT pairs such as put=50,get=30,cas=10,delete=5,list=5",
         .shown_default = "put=100; with --read-ratio, put and get",
         .help = "each operation's share of the requests in percent: put, get, cas, delete, list"},
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
    char why[512];
    if (rc == 0 && bench_mix_choose(o->mix, o->read_ratio, &o->mixed, why, sizeof(why)))
        rc = cli_usage_error(cmd.name, "%s", why);
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
                               .mix = o.mixed, .timeout_ms = 5000};
    if (cli_tls_client("bench", &o.tls, &bo.tls))
        return EXIT_USAGE;
    struct bench_report r;
    rc = bench_run(&bo, &r);
    tls_ctx_free(bo.tls);
    bench_report_print(&r, &bo.mix, o.json, stdout);
    if (rc) {
        fprintf(stderr, "The benchmark could not run: %s.\n", strerror(-rc));
        rc = EXIT_UNAVAILABLE;
    } else if (r.total.ops == 0) {
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
    {"client", "put, get, delete, cas, list, status, transfer or member against a running "
     "cluster", cli_cmd_client, false},
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
           "start; 5 the cluster refused the request.\n");
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
