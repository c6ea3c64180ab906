/*
 * member_cmd.c - `raft client member list | add | remove`: the cluster's
 * configuration, changed one server at a time (thesis ch. 4), through one
 * client session that finds the leader. Exit codes as every client
 * command: 0 done (a change: committed); 3 no leader answered in time
 * (for a change: it may still take effect); 5 the cluster refused, with
 * its sentence why.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_cmd.h"
#include "kv/client.h"

/* member list: one line per member, `id=0 addr=127.0.0.1:8000 voter=true
 * match=12`, in the leader's view; --json: one object per member. */
static int run_list(struct kv_client *c, const struct client_cmd *cmd)
{
    struct raft_membership_view v;
    int32_t leader = RAFT_NO_NODE;
    int rc = kv_client_members(c, &v, &leader);
    if (rc == -EBADMSG) {
        fprintf(stderr, "The leader answered with something that is no configuration.\n");
        return CLIENT_EXIT_UNAVAILABLE;
    }
    if (rc)
        return client_cmd_outcome(rc, cmd, c);
    for (uint32_t i = 0; i < v.config.n; i++) {
        const struct raft_member *m = &v.config.members[i];
        if (cmd->json) {
            printf("{\"id\": %u, \"addr\": ", m->id);
            client_cmd_print_json_string((const uint8_t *)m->addr, (uint32_t)strlen(m->addr));
            printf(", \"voter\": %s, \"match\": %" PRIu64 "}\n", m->voter ? "true" : "false",
                   v.match[i]);
        } else {
            printf("id=%u addr=%s voter=%s match=%" PRIu64 "\n", m->id,
                   m->addr[0] ? m->addr : "-", m->voter ? "true" : "false", v.match[i]);
        }
    }
    if (!v.committed)
        fprintf(stderr, "(n%d's configuration, entry %" PRIu64 ", is not committed yet: a "
                "change is under way)\n", leader, v.index);
    return 0;
}

/* The exit code of a change, saying why on stderr. */
static int change_outcome(int rc, char *why, const struct client_cmd *cmd,
                          const struct kv_client *c)
{
    if (rc == -EPERM)
        fprintf(stderr, "The cluster refused the change: %s\n", why && *why ? why
                                                                          : "no reason given.");
    else if (rc == -ETIMEDOUT)
        fprintf(stderr, "The change did not commit within %.1f s; it may still take effect "
                "(member list shows where it stands).\n", cmd->timeout_s);
    free(why);
    if (rc == -EPERM)
        return CLIENT_EXIT_REFUSED;
    return rc == -ETIMEDOUT ? CLIENT_EXIT_UNAVAILABLE : client_cmd_outcome(rc, cmd, c);
}

static int run_add(struct kv_client *c, const struct client_cmd *cmd)
{
    uint32_t id = (uint32_t)atoi(cmd->words[2]);
    const char *addr = cmd->words[3];
    char *why = NULL;
    int rc = kv_client_member_add(c, id, addr, cmd->learner, &why);
    if (rc == 0)
        printf("n%u (%s) is a %s\n", id, addr, cmd->learner ? "learner" : "voter");
    return change_outcome(rc, why, cmd, c);
}

static int run_remove(struct kv_client *c, const struct client_cmd *cmd)
{
    uint32_t id = (uint32_t)atoi(cmd->words[2]);
    char *why = NULL;
    int rc = kv_client_member_remove(c, id, &why);
    if (rc == 0)
        printf("n%u removed\n", id);
    return change_outcome(rc, why, cmd, c);
}

int member_cmd_run(struct kv_client *c, const struct client_cmd *cmd)
{
    const char *sub = cmd->words[1];
    if (!strcmp(sub, "list"))
        return run_list(c, cmd);
    if (!strcmp(sub, "add"))
        return run_add(c, cmd);
    return run_remove(c, cmd);
}
