/*
 * console_members.c - the console's commands that change who leads and
 * who is a member (thesis §3.10, ch. 4): transfer N, member list, member
 * add N (which first starts node N in this process, in no configuration,
 * on the next free port and with its own data directory) and member
 * remove N. They go through the console's client session, as `raft
 * client` does: the leader is found by hints, and what is shown is what
 * the leader answers.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/client.h"
#include "kv/console_internal.h"

static double timeout_s(const struct kv_console *c)
{
    return c->cfg.client_timeout_ms / 1000.0;
}

/* Any node id (a member need not be one this console started). */
static int id_arg(struct kv_console *c, const char *cmd, char *args, uint32_t *id)
{
    char *w = console_next_word(&args);
    char *extra = console_next_word(&args);
    char *end = NULL;
    long v = w ? strtol(w, &end, 10) : -1;
    if (!w || extra || *end || v < 0 || v > RAFT_MAX_ID) {
        console_reply(c, "error: %s takes one node number, from 0 to %d; got %s.", cmd,
                      RAFT_MAX_ID, !w ? "none" : extra ? "more than one argument" : w);
        return -EINVAL;
    }
    *id = (uint32_t)v;
    return 0;
}

void console_cmd_transfer(struct kv_console *c, char *args)
{
    uint32_t id;
    if (id_arg(c, "transfer", args, &id))
        return;
    int32_t leader = RAFT_NO_NODE;
    char *why = NULL;
    int rc = kv_client_transfer(c->client, (int32_t)id, &leader, &why);
    if (rc == 0)
        console_reply(c, "ok: n%d leads", leader);
    else if (rc == -EPERM)
        console_reply(c, "error: the cluster refused the transfer: %s", why ? why : "");
    else
        console_reply(c, "error: no transfer finished within %.1f s.", timeout_s(c));
    free(why);
}

static void member_list(struct kv_console *c)
{
    struct raft_membership_view v;
    int32_t leader;
    int rc = kv_client_members(c->client, &v, &leader);
    if (rc) {
        console_reply(c, "error: no leader answered within %.1f s.", timeout_s(c));
        return;
    }
    for (uint32_t i = 0; i < v.config.n; i++) {
        const struct raft_member *m = &v.config.members[i];
        console_reply(c, "n%u addr=%s voter=%s match=%" PRIu64, m->id, m->addr,
                      m->voter ? "true" : "false", v.match[i]);
    }
}

/* A change's outcome, in one reply line. */
static void change_reply(struct kv_console *c, int rc, const char *why, const char *done)
{
    if (rc == 0)
        console_reply(c, "ok: %s", done);
    else if (rc == -EPERM)
        console_reply(c, "error: the cluster refused the change: %s", why ? why : "");
    else
        console_reply(c, "error: the change did not commit within %.1f s; it may still take "
                      "effect (member list shows where it stands).", timeout_s(c));
}

static void stop_new_node(struct kv_console *c, uint32_t id)
{
    kv_server_stop(c->cfg.servers[id]);
    c->cfg.servers[id] = NULL;
    c->known[id] = false;
}

static void member_add(struct kv_console *c, char *args)
{
    uint32_t id;
    if (id_arg(c, "member add", args, &id))
        return;
    if (c->known[id]) {
        console_reply(c, "error: n%u is a node of this cluster already; member add takes a "
                      "new number.", id);
        return;
    }
    struct kv_server_config cfg;
    int rc = c->cfg.new_node ? c->cfg.new_node(c->cfg.new_node_ctx, id, &cfg) : -ENOTSUP;
    if (rc == 0)
        rc = kv_server_start(&c->cfg.servers[id], &cfg);
    if (rc) {
        c->cfg.servers[id] = NULL;
        console_reply(c, "error: n%u could not start (%s); the log says why.", id,
                      strerror(-rc));
        return;
    }
    c->known[id] = true;
    c->configs[id] = cfg;
    char *why = NULL, done[256];
    rc = kv_client_member_add(c->client, id, cfg.listen, false, &why);
    snprintf(done, sizeof(done), "n%u started on %s (data in %s) and added: it caught up as "
             "a learner, then became a voter", id, cfg.listen, cfg.data_dir);
    change_reply(c, rc, why, done);
    if (rc == -EPERM)
        stop_new_node(c, id); /* refused: it would only wait */
    free(why);
}

static void member_remove(struct kv_console *c, char *args)
{
    uint32_t id;
    if (id_arg(c, "member remove", args, &id))
        return;
    char *why = NULL, done[160];
    int rc = kv_client_member_remove(c->client, id, &why);
    if (id <= RAFT_MAX_ID && c->known[id] && c->cfg.servers[id])
        snprintf(done, sizeof(done), "n%u removed; it runs on, a member no more, until "
                 "crash %u", id, id);
    else
        snprintf(done, sizeof(done), "n%u removed", id);
    change_reply(c, rc, why, done);
    free(why);
}

void console_cmd_member(struct kv_console *c, char *args)
{
    char *sub = console_next_word(&args);
    if (sub && !strcmp(sub, "list") && console_rest_of_line(args))
        console_reply(c, "error: member list takes no arguments.");
    else if (sub && !strcmp(sub, "list"))
        member_list(c);
    else if (sub && !strcmp(sub, "add"))
        member_add(c, args);
    else if (sub && !strcmp(sub, "remove"))
        member_remove(c, args);
    else
        console_reply(c, "error: member takes list, add N or remove N%s%s.",
                      sub ? "; got " : "", sub ? sub : "");
}
