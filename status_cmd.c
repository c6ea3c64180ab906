/*
 * status_cmd.c - `raft client status`: every node asked on its own for
 * its view (role, term, leader, indexes, and the configuration it uses,
 * thesis ch. 4), so that a learner sees where the nodes disagree: a
 * follower behind, a node that has not yet heard of a change, a removed
 * node that still runs.
 *
 * Given one address, status asks that node for its configuration, then
 * every member in it: `--cluster` need not name nodes added since.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_cmd.h"
#include "kv/client.h"

/* A node to ask: where, and the id it is known by until it answers. */
struct status_target {
    char addr[RAFT_ADDR_MAX];
    uint32_t id;
};

struct status_row {
    int rc;
    struct client_reply r;
    struct raft_membership_view v;
    bool has_view;
};

/* "n0 n1 n3 (learner) [entry 7, not committed]" */
static void describe_view(const struct raft_membership_view *v, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < v->config.n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%sn%u%s", i ? " " : "",
                                 v->config.members[i].id,
                                 v->config.members[i].voter ? "" : " (learner)");
    if (v->config.n == 0 && used < cap)
        used += (size_t)snprintf(buf + used, cap - used, "no members");
    if (v->index && used < cap)
        snprintf(buf + used, cap - used, " [entry %" PRIu64 "%s]", v->index,
                 v->committed ? "" : ", not committed");
}

static void print_config_json(const struct status_row *row)
{
    const struct raft_membership_view *v = &row->v;
    printf(", \"config\": {\"index\": %" PRIu64 ", \"committed\": %s, \"members\": [",
           v->index, v->committed ? "true" : "false");
    for (uint32_t i = 0; i < v->config.n; i++) {
        const struct raft_member *m = &v->config.members[i];
        printf("%s{\"id\": %u, \"addr\": ", i ? ", " : "", m->id);
        client_cmd_print_json_string((const uint8_t *)m->addr, (uint32_t)strlen(m->addr));
        printf(", \"voter\": %s}", m->voter ? "true" : "false");
    }
    printf("]}");
}

static void print_json(const struct status_target *t, const struct status_row *row)
{
    printf("{\"id\": %u, \"addr\": ", t->id);
    client_cmd_print_json_string((const uint8_t *)t->addr, (uint32_t)strlen(t->addr));
    if (row->rc) {
        printf(", \"reachable\": false}\n");
        return;
    }
    const struct client_reply *r = &row->r;
    char leader[16] = "null";
    if (r->leader >= 0)
        snprintf(leader, sizeof(leader), "%d", r->leader);
    printf(", \"reachable\": true, \"role\": \"%s\", \"term\": %" PRIu64 ", \"leader\": %s, "
           "\"commit\": %" PRIu64 ", \"applied\": %" PRIu64 ", \"last_index\": %" PRIu64,
           raft_role_name((enum raft_role)r->role), r->term, leader, r->commit, r->applied,
           r->last_index);
    if (row->has_view)
        print_config_json(row);
    printf("}\n");
}

static void print_text(const struct status_target *t, const struct status_row *row)
{
    if (row->rc) {
        printf("%-3u %-22s %-14s\n", t->id, t->addr, "unreachable");
        return;
    }
    const struct client_reply *r = &row->r;
    char leader[16] = "-", config[RAFT_MAX_NODES * 16 + 64] = "-";
    if (r->leader >= 0)
        snprintf(leader, sizeof(leader), "n%d", r->leader);
    if (row->has_view)
        describe_view(&row->v, config, sizeof(config));
    printf("%-3u %-22s %-14s %6" PRIu64 "  %-6s %8" PRIu64 " %8" PRIu64 " %8" PRIu64 "  %s\n",
           t->id, t->addr, raft_role_name((enum raft_role)r->role), r->term, leader, r->commit,
           r->applied, r->last_index, config);
}

/* Adds the members of a view that are not asked yet. */
static void add_members(struct status_target *t, uint32_t *n, uint32_t cap,
                        const struct raft_membership_view *v)
{
    for (uint32_t i = 0; i < v->config.n && *n < cap; i++) {
        const struct raft_member *m = &v->config.members[i];
        bool listed = m->addr[0] == '\0';
        for (uint32_t k = 0; k < *n && !listed; k++)
            listed = t[k].id == m->id || !strcmp(t[k].addr, m->addr);
        if (listed)
            continue;
        snprintf(t[*n].addr, sizeof(t[*n].addr), "%s", m->addr);
        t[(*n)++].id = m->id;
    }
}

int client_cmd_status(const struct client_cmd *cmd, char *const *addrs, uint32_t n_addrs)
{
    enum { MAX_TARGETS = 2 * RAFT_MAX_NODES };
    struct status_target t[MAX_TARGETS];
    uint32_t n = 0;
    for (; n < n_addrs && n < MAX_TARGETS; n++) {
        snprintf(t[n].addr, sizeof(t[n].addr), "%s", addrs[n]);
        t[n].id = n; /* addresses are given by id */
    }
    if (!cmd->json)
        printf("%-3s %-22s %-14s %6s  %-6s %8s %8s %8s  %s\n", "id", "addr", "role", "term",
               "leader", "commit", "applied", "last", "config");
    unsigned timeout_ms = (unsigned)(cmd->timeout_s * 1000);
    unsigned each = timeout_ms < 1000 ? timeout_ms : 1000;
    bool any = false;
    for (uint32_t i = 0; i < n; i++) {
        struct status_row row;
        row.rc = kv_client_node_view(t[i].addr, cmd->tls, each, &row.r, &row.v,
                                     &row.has_view);
        if (row.rc == 0)
            t[i].id = row.r.id;
        any |= row.rc == 0;
        (cmd->json ? print_json : print_text)(&t[i], &row);
        if (n_addrs == 1 && row.rc == 0 && row.has_view)
            add_members(t, &n, MAX_TARGETS, &row.v);
    }
    if (!any)
        fprintf(stderr, "No node of the cluster answered.\n");
    return any ? 0 : CLIENT_EXIT_UNAVAILABLE;
}
