/*
 * client_members.c - the configuration through a client session (thesis
 * ch. 4): the leader's list of members, one server added or removed at a
 * time, and one node's own view, for status.
 *
 * A change may take longer than one attempt at a silent node
 * (KV_CLIENT_ATTEMPT_MS): a new voter first catches up (§4.2.1). So a
 * change waits on the leader for the whole time the session has, and the
 * leader is told how long that is.
 *
 * A change is not a put: it has no session number that makes a retry take
 * effect once. When an attempt may have been carried out (its connection
 * failed after it was sent, or the leader lost its leadership before the
 * change committed) and the retry is then refused ("n3 is already a
 * voter"), the refusal may be the first attempt's own doing. The session
 * then reads the leader's configuration: if it is what the change asked
 * for, and committed, the change is done.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv/client_internal.h"
#include "net/tcp_socket.h"

/* A change leaves this much of the session's time for the answer to
 * travel back, at most. */
#define CHANGE_MARGIN_MS 500

static int members_until(struct kv_client *c, uint64_t deadline,
                         struct raft_membership_view *v, int32_t *leader)
{
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT}, reply;
    req.u.request.op = CLIENT_MEMBER_LIST;
    int rc = kv_client_call_until(c, &req, &reply, deadline, 0, NULL);
    if (rc)
        return rc;
    const struct client_reply *r = &reply.u.reply;
    if (r->status != CLIENT_OK)
        return -EINVAL;
    if (wire_members_decode(v, r->value, r->value_len) != 0)
        return -EBADMSG;
    if (leader)
        *leader = r->leader_hint;
    return 0;
}

int kv_client_members(struct kv_client *c, struct raft_membership_view *v, int32_t *leader)
{
    return members_until(c, kv_client_now_ms() + c->timeout_ms, v, leader);
}

/* Whether the leader's configuration shows the change done: 0 yes (and
 * committed), 1 no (the refusal stands), or a negative errno when that
 * cannot be told in time. */
static int change_done(struct kv_client *c, const struct client_request *q, uint64_t deadline)
{
    for (;;) {
        struct raft_membership_view v;
        int rc = members_until(c, deadline, &v, NULL);
        if (rc)
            return rc;
        const struct raft_member *m = raft_membership_find(&v.config, q->member_id);
        bool wanted = q->op == CLIENT_MEMBER_ADD
                          ? m && m->voter == !q->learner
                          : !m && (v.config.removed >> q->member_id & 1);
        if (!wanted)
            return 1;
        if (v.committed)
            return 0;
        if (kv_client_now_ms() + KV_CLIENT_RETRY_PAUSE_MS >= deadline)
            return -ETIMEDOUT;
        kv_client_sleep_ms(KV_CLIENT_RETRY_PAUSE_MS); /* committing: look again */
    }
}

static int change(struct kv_client *c, struct client_request *q, char **why)
{
    uint64_t deadline = kv_client_now_ms() + c->timeout_ms;
    unsigned margin = c->timeout_ms / 10 < CHANGE_MARGIN_MS ? c->timeout_ms / 10
                                                            : CHANGE_MARGIN_MS;
    q->wait_ms = c->timeout_ms - margin;
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT}, reply;
    req.u.request = *q;
    bool maybe_done = false;
    *why = NULL;
    int rc = kv_client_call_until(c, &req, &reply, deadline, c->timeout_ms, &maybe_done);
    if (rc)
        return rc;
    const struct client_reply *r = &reply.u.reply;
    if (r->status == CLIENT_OK)
        return 0;
    if (r->status != CLIENT_REFUSED)
        return -EINVAL;
    *why = strndup(r->value ? (const char *)r->value : "", r->value_len);
    if (!maybe_done)
        return -EPERM;
    rc = change_done(c, q, deadline);
    if (rc == 1)
        return -EPERM;
    free(*why);
    *why = NULL;
    return rc;
}

int kv_client_member_add(struct kv_client *c, uint32_t id, const char *addr, bool learner,
                         char **why)
{
    struct client_request q = {.op = CLIENT_MEMBER_ADD, .member_id = id, .learner = learner,
                               .value = (uint8_t *)addr, .value_len = (uint32_t)strlen(addr)};
    return change(c, &q, why);
}

int kv_client_member_remove(struct kv_client *c, uint32_t id, char **why)
{
    struct client_request q = {.op = CLIENT_MEMBER_REMOVE, .member_id = id};
    return change(c, &q, why);
}

int kv_client_node_view(const char *addr, struct tls_ctx *tls, unsigned timeout_ms,
                        struct client_reply *status, struct raft_membership_view *v,
                        bool *has_view)
{
    struct tcp_link *link;
    *has_view = false;
    int rc = tcp_link_dial(&link, addr, tls, timeout_ms);
    if (rc < 0)
        return rc;
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT}, reply;
    req.u.request.op = CLIENT_STATUS;
    uint8_t *buf = NULL;
    size_t cap = 0;
    rc = tcp_link_roundtrip(link, &req, &reply, &buf, &cap, timeout_ms);
    tcp_link_close(link);
    if (rc == 0 && reply.type != WIRE_CLIENT_REPLY)
        rc = -EPROTO;
    if (rc == 0) {
        /* The byte strings point into buf, freed below: none is kept. */
        *status = reply.u.reply;
        *has_view = wire_members_decode(v, status->value, status->value_len) == 0;
        status->value = status->leader_addr = NULL;
        status->value_len = status->leader_addr_len = 0;
    }
    free(buf);
    return rc;
}
