/*
 * client_cmd.c - the commands of `raft client` that go through a session:
 * put, get, delete, cas, list and transfer (and the member commands of
 * member_cmd.c), each through one client session (kv/client.h), with the
 * exit codes of the command line: 0 done; 1 a missing key (get, delete), a
 * cas that found something else; 2 a request the cluster refused as
 * malformed; 3 unavailable or timed out (for a write: outcome unknown); 5
 * the cluster refused it (a list too large, a transfer or a membership
 * change it will not do).
 */
#include "client_cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/client.h"
#include "kv/kv.h"

#define EXIT_NO CLIENT_EXIT_NO
#define EXIT_MALFORMED CLIENT_EXIT_MALFORMED
#define EXIT_UNAVAILABLE CLIENT_EXIT_UNAVAILABLE
#define EXIT_REFUSED CLIENT_EXIT_REFUSED

static uint32_t len_of(const char *s)
{
    return (uint32_t)strlen(s);
}

static void print_bytes(const uint8_t *b, uint32_t n)
{
    fwrite(b, 1, n, stdout);
    fputc('\n', stdout);
}

void client_cmd_print_json_string(const uint8_t *b, uint32_t n)
{
    fputc('"', stdout);
    for (uint32_t i = 0; i < n; i++) {
        if (b[i] == '"' || b[i] == '\\')
            printf("\\%c", b[i]);
        else if (b[i] < 0x20)
            printf("\\u%04x", b[i]);
        else
            fputc(b[i], stdout);
    }
    fputc('"', stdout);
}

int client_cmd_outcome(int rc, const struct client_cmd *cmd, const struct kv_client *c)
{
    if (rc == 0)
        return 0;
    if (rc == -ECONNREFUSED) {
        fprintf(stderr, "Connection refused by every node: is the cluster running at %s?\n",
                cmd->cluster);
        return EXIT_UNAVAILABLE;
    }
    if (rc == -EHOSTUNREACH) {
        fprintf(stderr, "Cannot resolve %s, and no other node accepted a connection.\n",
                kv_client_unresolved(c));
        return EXIT_UNAVAILABLE;
    }
    if (rc == -EACCES) {
        fprintf(stderr, "Every node failed the TLS checks (the last, %s).\n",
                kv_client_tls_refusal(c));
        return EXIT_UNAVAILABLE;
    }
    if (rc == -EINVAL) {
        fprintf(stderr, "The cluster refused the request as malformed.\n");
        return EXIT_MALFORMED;
    }
    bool write = !strcmp(cmd->words[0], "put") || !strcmp(cmd->words[0], "delete") ||
                 !strcmp(cmd->words[0], "cas");
    if (write)
        fprintf(stderr, "No leader acknowledged the %s within %.1f s; it may or may not have "
                "taken effect.\n", cmd->words[0], cmd->timeout_s);
    else
        fprintf(stderr, "No leader answered within %.1f s.\n", cmd->timeout_s);
    return EXIT_UNAVAILABLE;
}

static int run_put(struct kv_client *c, const struct client_cmd *cmd)
{
    const char *k = cmd->words[1], *v = cmd->words[2];
    return client_cmd_outcome(kv_client_put(c, k, len_of(k), v, len_of(v)), cmd, c);
}

static int run_get(struct kv_client *c, const struct client_cmd *cmd)
{
    const char *k = cmd->words[1];
    uint8_t *value = NULL;
    uint32_t len = 0;
    int rc = kv_client_get(c, k, len_of(k), &value, &len);
    if (rc == 0)
        print_bytes(value, len);
    free(value);
    if (rc == -ENOENT) {
        fprintf(stderr, "The key %s does not exist.\n", k);
        return EXIT_NO;
    }
    return client_cmd_outcome(rc, cmd, c);
}

static int run_delete(struct kv_client *c, const struct client_cmd *cmd)
{
    const char *k = cmd->words[1];
    int rc = kv_client_delete(c, k, len_of(k));
    if (rc == -ENOENT) {
        fprintf(stderr, "The key %s did not exist.\n", k);
        return EXIT_NO;
    }
    return client_cmd_outcome(rc, cmd, c);
}

/* cas KEY EXPECTED NEW: a mismatch prints what the key held (nothing if
 * it does not exist) and exits 1. */
static int run_cas(struct kv_client *c, const struct client_cmd *cmd)
{
    const char *k = cmd->words[1], *expected = cmd->words[2], *v = cmd->words[3];
    uint8_t *held = NULL;
    uint32_t held_len = 0;
    int rc = kv_client_cas(c, k, len_of(k), expected, len_of(expected), v, len_of(v),
                           &held, &held_len);
    if (rc == -EEXIST) {
        print_bytes(held, held_len);
        fprintf(stderr, "The key %s held another value; nothing changed.\n", k);
    } else if (rc == -ENOENT) {
        fprintf(stderr, "The key %s does not exist; nothing changed.\n", k);
    }
    free(held);
    return rc == -EEXIST || rc == -ENOENT ? EXIT_NO : client_cmd_outcome(rc, cmd, c);
}

static int print_listing(const uint8_t *listing, uint32_t len, bool json)
{
    const uint8_t *p = listing + 4, *key, *value = NULL;
    size_t left = len - 4;
    uint32_t count = (uint32_t)listing[0] << 24 | (uint32_t)listing[1] << 16 |
                     (uint32_t)listing[2] << 8 | listing[3];
    uint32_t key_len, value_len = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (kv_listing_next(&p, &left, json, &key, &key_len, &value, &value_len)) {
            fprintf(stderr, "The cluster answered the list with a malformed listing.\n");
            return EXIT_UNAVAILABLE;
        }
        if (!json) {
            print_bytes(key, key_len);
            continue;
        }
        fputs("{\"key\": ", stdout);
        client_cmd_print_json_string(key, key_len);
        fputs(", \"value\": ", stdout);
        client_cmd_print_json_string(value, value_len);
        fputs("}\n", stdout);
    }
    return 0;
}

/* list [PREFIX]: the keys, sorted, one per line; with --json one object
 * per key with its value. A linearizable read, like get. */
static int run_list(struct kv_client *c, const struct client_cmd *cmd)
{
    const char *prefix = cmd->n_words > 1 ? cmd->words[1] : "";
    uint8_t *listing = NULL;
    uint32_t len = 0;
    int rc = kv_client_list(c, prefix, len_of(prefix), cmd->json, &listing, &len);
    if (rc == -EMSGSIZE) {
        fprintf(stderr, "The keys%s%s fill more than one reply (%u bytes); give a longer "
                "prefix.\n", *prefix ? " starting with " : "", prefix, CLIENT_MAX_VALUE);
        return EXIT_REFUSED;
    }
    int code = rc == 0 && len >= 4 ? print_listing(listing, len, cmd->json) : client_cmd_outcome(rc, cmd, c);
    free(listing);
    return code;
}

/* transfer [ID]: thesis §3.10, leadership moves to ID (or the most
 * up-to-date voter); exit 0 once it leads, 5 if the cluster refused. */
static int run_transfer(struct kv_client *c, const struct client_cmd *cmd)
{
    int32_t target = cmd->n_words > 1 ? (int32_t)atol(cmd->words[1]) : RAFT_NO_NODE;
    int32_t leader = RAFT_NO_NODE;
    char *why = NULL;
    int rc = kv_client_transfer(c, target, &leader, &why);
    if (rc == 0)
        printf("n%d leads\n", leader);
    else if (rc == -EPERM)
        fprintf(stderr, "The cluster refused the transfer: %s\n", why ? why : "no reason given.");
    else if (rc == -ETIMEDOUT)
        fprintf(stderr, "No transfer finished within %.1f s.\n", cmd->timeout_s);
    free(why);
    if (rc == -EPERM)
        return EXIT_REFUSED;
    return rc == -ETIMEDOUT ? EXIT_UNAVAILABLE : client_cmd_outcome(rc, cmd, c);
}

static const struct {
    const char *name;
    int (*run)(struct kv_client *c, const struct client_cmd *cmd);
} commands[] = {
    {"put", run_put}, {"get", run_get}, {"delete", run_delete}, {"cas", run_cas},
    {"list", run_list}, {"transfer", run_transfer}, {"member", member_cmd_run},
};

int client_cmd_run(const struct client_cmd *cmd, char *const *addrs, uint32_t n_addrs)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, cmd->words[0]) != 0)
            continue;
        struct kv_client *c;
        if (kv_client_open(&c, addrs, n_addrs, (unsigned)(cmd->timeout_s * 1000))) {
            fprintf(stderr, "Out of memory.\n");
            return EXIT_UNAVAILABLE;
        }
        kv_client_set_tls(c, cmd->tls);
        int code = commands[i].run(c, cmd);
        kv_client_close(c);
        return code;
    }
    fprintf(stderr, "raft client: no such data command %s.\n", cmd->words[0]);
    return EXIT_REFUSED;
}
