/*
 * client_cli.c - the command line of `raft client`: its options, its
 * command words checked one by one (each mistake said in one sentence,
 * exit 2), and --help for the client or for one command
 * (`raft client member add --help`).
 */
#include "client_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_tls.h"
#include "client_cmd.h"
#include "net/tcp_socket.h"
#include "net/wire.h"

#define ARRAY_LEN(table) (sizeof(table) / sizeof((table)[0]))

struct client_options {
    const char *cluster;
    double timeout_s;
    bool json, learner;
    struct tls_flags tls;
    struct tls_ctx *tls_ctx; /* made from tls; NULL: plain TCP */
};

/* The commands of `raft client`: their words (a member command has two),
 * what they take, and what they do, for --help. */
static const struct client_word {
    const char *name, *sub, *args;
    int min_words, max_words; /* the command's words included */
    bool json;                /* --json goes with it */
    const char *summary;
} client_words[] = {
    {"put", NULL, "KEY VALUE", 3, 3, false, "Sets KEY to VALUE; exit 0 once committed."},
    {"get", NULL, "KEY", 2, 2, false,
     "Prints KEY's value, read linearizably from the leader; exit 1 if it does not exist."},
    {"delete", NULL, "KEY", 2, 2, false, "Deletes KEY; exit 1 if it did not exist."},
    {"cas", NULL, "KEY EXPECTED NEW", 4, 4, false,
     "Sets KEY to NEW if it holds EXPECTED; else prints what it holds and exits 1."},
    {"list", NULL, "[PREFIX]", 1, 2, true,
     "Prints the keys starting with PREFIX, sorted; --json: one object per key with its "
     "value."},
    {"status", NULL, "", 1, 1, true,
     "Prints each node's own view: role, term, leader, indexes and configuration. Given "
     "one address, it asks every member that node knows."},
    {"transfer", NULL, "[ID]", 1, 2, false,
     "Moves leadership to node ID (without ID: the most up-to-date voter); exit 0 once "
     "it leads, 5 if refused."},
    {"member", "list", "", 2, 2, true,
     "Prints the leader's configuration, one member per line: id, address, whether it "
     "votes, and its match index; --json: one object per member."},
    {"member", "add", "[--learner] ID HOST:PORT", 4, 4, false,
     "Adds server ID, listening at HOST:PORT (started with raft node --id ID --listen "
     "HOST:PORT): it catches up as a learner, then becomes a voter (--learner: it stays a "
     "learner). Exit 0 once committed, 5 if refused, 3 if it did not commit in time "
     "(give --timeout enough for a long log)."},
    {"member", "remove", "ID", 3, 3, false,
     "Removes server ID, the leader included (it steps down once the change commits). "
     "Exit 0 once committed, 5 if refused."},
};

#define CLIENT_COMMANDS "put KEY VALUE, get KEY, delete KEY, cas KEY EXPECTED NEW, " \
                        "list [PREFIX], status, transfer [ID], member list, " \
                        "member add [--learner] ID HOST:PORT and member remove ID"

/* The command the words name, or NULL. */
static const struct client_word *find_word(const struct cli_words *w)
{
    for (size_t i = 0; w->n > 0 && i < ARRAY_LEN(client_words); i++) {
        const struct client_word *c = &client_words[i];
        if (!strcmp(c->name, w->v[0]) && (!c->sub || (w->n > 1 && !strcmp(c->sub, w->v[1]))))
            return c;
    }
    return NULL;
}

static int check_id(const char *sub, const char *word)
{
    size_t digits = strspn(word, "0123456789");
    if (digits == 0 || digits != strlen(word) || digits > 2 || atoi(word) > RAFT_MAX_ID)
        return cli_usage_error(sub, "a node id is a number from 0 to %d; got %s", RAFT_MAX_ID,
                               word);
    return 0;
}

static int check_addr(const char *sub, const char *word)
{
    char host[256];
    uint16_t port;
    if (strlen(word) >= RAFT_ADDR_MAX || tcp_parse_addr(word, host, sizeof(host), &port))
        return cli_usage_error(sub, "HOST:PORT must be a host and a port from 1 to 65535, "
                               "at most %d bytes; got '%s'", RAFT_ADDR_MAX - 1, word);
    return 0;
}

static int check_sizes(const char *sub, const struct client_word *c, const struct cli_words *w)
{
    if (!strcmp(c->name, "transfer")) {
        size_t digits = strspn(w->v[1], "0123456789");
        if (digits == 0 || digits != strlen(w->v[1]) || digits > 9)
            return cli_usage_error(sub, "a node id is a number; got %s", w->v[1]);
        return 0;
    }
    if (c->sub && !strcmp(c->sub, "add")) {
        int rc = check_id(sub, w->v[2]);
        return rc ? rc : check_addr(sub, w->v[3]);
    }
    if (c->sub && !strcmp(c->sub, "remove"))
        return check_id(sub, w->v[2]);
    if (strcmp(c->name, "list") && (strlen(w->v[1]) == 0 || strlen(w->v[1]) > CLIENT_MAX_KEY))
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
    const struct client_word *c = find_word(w);
    if (!c && !strcmp(w->v[0], "member"))
        return cli_usage_error(sub, "member takes list, add [--learner] ID HOST:PORT or "
                               "remove ID; got %s", w->n > 1 ? w->v[1] : "nothing");
    if (!c)
        return cli_usage_error(sub, "unknown command %s; the commands are " CLIENT_COMMANDS,
                               w->v[0]);
    char name[32];
    snprintf(name, sizeof(name), "%s%s%s", c->name, c->sub ? " " : "", c->sub ? c->sub : "");
    int given = w->n - (c->sub ? 2 : 1);
    if (w->n < c->min_words || w->n > c->max_words)
        return cli_usage_error(sub, "%s takes %s; got %d argument%s", name,
                               *c->args ? c->args : "no arguments", given,
                               given == 1 ? "" : "s");
    if (o->json && !c->json)
        return cli_usage_error(sub, "--json goes with status, list and member list only, not "
                               "with %s", name);
    if (o->learner && !(c->sub && !strcmp(c->sub, "add")))
        return cli_usage_error(sub, "--learner goes with member add only, not with %s", name);
    return w->n > (c->sub ? 2 : 1) ? check_sizes(sub, c, w) : 0;
}

/* --help after a command's words: that command's usage and what it does. */
static void client_help(const struct cli_command *cmd, const struct cli_words *w, FILE *out)
{
    const struct client_word *c = find_word(w);
    if (!c) {
        cli_help(cmd, out);
        return;
    }
    fprintf(out, "usage: raft client --cluster HOST:PORT,... [options] %s%s%s%s%s\n%s\n\n",
            c->name, c->sub ? " " : "", c->sub ? c->sub : "", *c->args ? " " : "", c->args,
            c->summary);
    cli_help_options(cmd, out);
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
         .help = "with status and member list: one JSON object per line; with list: keys "
                 "with their values"},
        {.name = "learner", .kind = CLI_FLAG, .dest = &o->learner,
         .help = "with member add: the server joins as a learner and stays one (it never "
                 "votes)"},
        CLI_TLS_OPTIONS(&o->tls),
    };
    const struct cli_command cmd = {
        .name = "client", .synopsis = "--cluster HOST:PORT,... [options] "
                                      "put KEY VALUE | get KEY | delete KEY | "
                                      "cas KEY EXPECTED NEW | list [PREFIX] | status | "
                                      "transfer [ID] | member list | "
                                      "member add [--learner] ID HOST:PORT | member remove ID",
        .summary = "Talks to a running cluster. A value that starts with a dash goes after "
                   "--, as in: put KEY -- --VALUE. COMMAND --help says what one command "
                   "does.",
        .options = opts, .n_options = ARRAY_LEN(opts), .dash_words = true,
        .help = client_help};
    int rc = cli_parse(&cmd, argc, argv, w);
    if (rc == 0)
        rc = client_check_words(o, w);
    if (rc == 0)
        rc = cli_parse_addrs(cmd.name, "cluster", o->cluster, addrs);
    if (rc == 0)
        rc = cli_tls_client(cmd.name, &o->tls, &o->tls_ctx);
    return rc;
}

int cli_cmd_client(int argc, char **argv)
{
    struct client_options o = {.timeout_s = 5};
    struct cli_words w;
    struct cli_addrs addrs;
    int rc = client_options(argc, argv, &o, &w, &addrs);
    if (rc)
        return cli_exit_code(rc);
    struct client_cmd cmd = {.words = w.v, .n_words = w.n, .json = o.json,
                             .learner = o.learner, .timeout_s = o.timeout_s,
                             .cluster = o.cluster, .tls = o.tls_ctx};
    if (!strcmp(w.v[0], "status"))
        rc = client_cmd_status(&cmd, addrs.v, addrs.n);
    else
        rc = client_cmd_run(&cmd, addrs.v, addrs.n);
    tls_ctx_free(o.tls_ctx);
    return rc;
}
