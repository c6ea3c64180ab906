/*
 * client_cmd.h - the data commands of `raft client` (put, get, delete, cas,
 * list), run once their words have been checked (main.c).
 */
#ifndef CLIENT_CMD_H
#define CLIENT_CMD_H

#include <stdbool.h>
#include <stdint.h>

struct tls_ctx;

struct client_cmd {
    char *const *words; /* the command word, then its arguments */
    int n_words;
    bool json;        /* list: keys with values, as JSON */
    double timeout_s; /* for the whole operation, retries included */
    const char *cluster; /* as given, for messages */
    struct tls_ctx *tls; /* NULL: plain TCP */
};

/* status: each node's view, one line (or one JSON object) per node; exit
 * 0 if any answered, else 3. */
int client_cmd_status(char *const *addrs, uint32_t n_addrs, unsigned timeout_ms, bool json,
                      struct tls_ctx *tls);

/* Runs the command against the cluster; returns the process's exit code. */
int client_cmd_run(const struct client_cmd *cmd, char *const *addrs, uint32_t n_addrs);

#endif
