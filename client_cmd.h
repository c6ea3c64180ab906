/*
 * client_cmd.h - the commands of `raft client` (put, get, delete, cas, list,
 * transfer, status, member ...), run once their words have been checked
 * (client_cli.c).
 */
#ifndef CLIENT_CMD_H
#define CLIENT_CMD_H

#include <stdbool.h>
#include <stdint.h>

struct tls_ctx;

struct client_cmd {
    char *const *words; /* the command word, then its arguments */
    int n_words;
    bool json;        /* list: keys with values, as JSON; status, member list: JSON lines */
    bool learner;     /* member add: as a learner */
    double timeout_s; /* for the whole operation, retries included */
    const char *cluster; /* as given, for messages */
    struct tls_ctx *tls; /* NULL: plain TCP */
};

/* status: each node's own view, one line (or one JSON object) per node;
 * given one address, every member that node knows is asked too. Exit 0 if
 * any answered, else 3. */
int client_cmd_status(const struct client_cmd *cmd, char *const *addrs, uint32_t n_addrs);

/* Runs the command against the cluster; returns the process's exit code. */
int client_cmd_run(const struct client_cmd *cmd, char *const *addrs, uint32_t n_addrs);

/* The member commands (member_cmd.c), through the session c. */
struct kv_client;
int member_cmd_run(struct kv_client *c, const struct client_cmd *cmd);

/* The exit code of what a session returned, saying why on stderr. */
int client_cmd_outcome(int rc, const struct client_cmd *cmd, const struct kv_client *c);

/* A JSON string on stdout: quotes, backslashes and control characters
 * escaped. */
void client_cmd_print_json_string(const uint8_t *b, uint32_t n);

#define CLIENT_EXIT_NO 1
#define CLIENT_EXIT_MALFORMED 2
#define CLIENT_EXIT_UNAVAILABLE 3
#define CLIENT_EXIT_REFUSED 5

#endif
