/*
 * client.c - leader discovery, retries and sessions for clients.
 */
#include "kv/client.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kv/client_internal.h"
#include "net/tcp_socket.h"

uint64_t kv_client_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void kv_client_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

uint64_t kv_client_new_id(void)
{
    uint64_t id = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &id, sizeof(id)) != (ssize_t)sizeof(id))
            id = 0;
        close(fd);
    }
    if (id == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid() << 16;
    }
    return id ? id : 1;
}

int kv_nodes_init(struct kv_nodes *k, char *const *addrs, uint32_t n, uint64_t first)
{
    memset(k, 0, sizeof(*k));
    for (uint32_t i = 0; i < n && i < KV_MAX_ADDRS; i++) {
        k->ids[i] = (int32_t)i;
        k->addrs[i] = strdup(addrs[i]);
        if (!k->addrs[i]) {
            kv_nodes_free(k);
            return -ENOMEM;
        }
        k->n++;
    }
    k->target = n ? (uint32_t)(first % k->n) : 0;
    return 0;
}

void kv_nodes_free(struct kv_nodes *k)
{
    for (uint32_t i = 0; i < k->n; i++)
        free(k->addrs[i]);
    k->n = 0;
}

/* Where a learnt address goes when the list is full: a slot other than
 * the target's, preferring one never heard from (members come and go, so
 * a long session may learn more addresses than the list holds). */
static uint32_t slot_to_reuse(const struct kv_nodes *k)
{
    uint32_t fallback = k->target == k->n - 1 ? k->n - 2 : k->n - 1;
    for (uint32_t i = 0; i < k->n; i++)
        if (i != k->target && k->ids[i] == RAFT_NO_NODE)
            return i;
    return fallback;
}

/* The position of a leader's address in the list, added if new (the
 * client may have been given one node only); -1 if unusable. */
static int learn_addr(struct kv_nodes *k, const uint8_t *addr, uint32_t len)
{
    if (len == 0)
        return -1;
    for (uint32_t i = 0; i < k->n; i++)
        if (strlen(k->addrs[i]) == len && memcmp(k->addrs[i], addr, len) == 0)
            return (int)i;
    char *copy = strndup((const char *)addr, len);
    if (!copy)
        return -1;
    uint32_t slot;
    if (k->n < KV_MAX_ADDRS) {
        slot = k->n++;
    } else {
        slot = slot_to_reuse(k);
        free(k->addrs[slot]);
    }
    k->addrs[slot] = copy;
    k->ids[slot] = RAFT_NO_NODE;
    return (int)slot;
}

void kv_nodes_heard(struct kv_nodes *k, uint32_t from)
{
    if (from <= RAFT_MAX_ID)
        k->ids[k->target] = (int32_t)from;
}

/* Where to find the leader a refusal names, or -1. The client's own route
 * to that node comes first: the address in the reply is the one the
 * answering node dials its peer at, which a client on another network (or
 * behind other links) may not reach, and waiting out an attempt on a route
 * that is down costs more than the whole failover. */
static int hinted(struct kv_nodes *k, const struct client_reply *reply)
{
    if (!reply || (reply->status != CLIENT_NOT_LEADER && reply->status != CLIENT_RETRY))
        return -1;
    if (reply->leader_hint >= 0) {
        /* The target refused, so it is not the node it names: if the list
         * was not given in id order (a client given one follower only, say),
         * the guess that made it that node was wrong. */
        if (k->ids[k->target] == reply->leader_hint)
            k->ids[k->target] = RAFT_NO_NODE;
        for (uint32_t i = 0; i < k->n; i++)
            if (k->ids[i] == reply->leader_hint)
                return (int)i;
    }
    return learn_addr(k, reply->leader_addr, reply->leader_addr_len);
}

bool kv_nodes_move_on(struct kv_nodes *k, const struct client_reply *reply)
{
    int hint = hinted(k, reply);
    if (hint >= 0 && (uint32_t)hint != k->target) {
        k->target = (uint32_t)hint;
        /* A RETRY names the node about to lead (a leadership transfer):
         * it is asked next, after the pause, once it has taken over. */
        return reply->status == CLIENT_NOT_LEADER;
    }
    k->target = (k->target + 1) % k->n;
    return false;
}

int kv_client_open(struct kv_client **out, char *const *addrs, uint32_t n_addrs,
                   unsigned timeout_ms)
{
    if (n_addrs == 0)
        return -EINVAL;
    struct kv_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->client_id = kv_client_new_id();
    /* Clients start at different nodes, to spread them out. */
    if (kv_nodes_init(&c->nodes, addrs, n_addrs, c->client_id) != 0) {
        free(c);
        return -ENOMEM;
    }
    c->timeout_ms = timeout_ms;
    *out = c;
    return 0;
}

void kv_client_set_tls(struct kv_client *c, struct tls_ctx *tls)
{
    c->tls = tls;
}

static void disconnect(struct kv_client *c)
{
    tcp_link_close(c->link);
    c->link = NULL;
}

void kv_client_close(struct kv_client *c)
{
    if (!c)
        return;
    disconnect(c);
    kv_nodes_free(&c->nodes);
    free(c->buf);
    free(c);
}

/* Whether host_port names a host that does not exist (as opposed to one
 * the resolver could not ask about just now); if so, remembers the host. */
static bool unresolvable(struct kv_client *c, const char *host_port)
{
    char host[sizeof(c->unresolved)];
    uint16_t port;
    if (tcp_parse_addr(host_port, host, sizeof(host), &port) != 0)
        return false;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *list;
    int rc = getaddrinfo(host, NULL, &hints, &list);
    if (rc == 0) {
        freeaddrinfo(list);
        return false;
    }
    if (rc == EAI_AGAIN || rc == EAI_MEMORY || rc == EAI_SYSTEM)
        return false;
    memcpy(c->unresolved, host, sizeof(c->unresolved));
    return true;
}

/* A failed connect that waiting will not mend, as far as a session that
 * never reached any node can tell: nothing listens there, or no such host.
 * (A session that did reach a node keeps trying: its cluster may be
 * restarting.) */
static bool hopeless(struct kv_client *c, int rc)
{
    if (c->reached)
        return false;
    /* A certificate refused (of another CA, not a node's, not for that
     * host) stays refused however long one waits. */
    if (rc == -ECONNREFUSED || rc == -EPROTO || rc == -EACCES)
        return true;
    return rc == -EHOSTUNREACH && unresolvable(c, c->nodes.addrs[c->nodes.target]);
}

int kv_client_call_until(struct kv_client *c, const struct wire_msg *req,
                         struct wire_msg *reply, uint64_t deadline, unsigned attempt_ms,
                         bool *maybe_done)
{
    uint32_t unreachable = 0; /* nodes in a row for which hopeless() held */
    if (attempt_ms == 0)
        attempt_ms = KV_CLIENT_ATTEMPT_MS;
    c->unresolved[0] = '\0';
    c->tls_refusal[0] = '\0';
    for (;;) {
        uint64_t now = kv_client_now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        unsigned left = (unsigned)(deadline - now);
        if (!c->link) {
            const char *addr = c->nodes.addrs[c->nodes.target];
            char why[256];
            int rc = tcp_link_dial_why(&c->link, addr, c->tls, left < 500 ? left : 500, why,
                                       sizeof(why));
            if (rc < 0 && why[0])
                snprintf(c->tls_refusal, sizeof(c->tls_refusal), "%s: %s", addr, why);
            if (rc < 0) {
                if (!hopeless(c, rc))
                    unreachable = 0;
                else if (++unreachable >= c->nodes.n)
                    return c->unresolved[0] ? -EHOSTUNREACH
                           : c->tls_refusal[0] ? -EACCES : -ECONNREFUSED;
                kv_nodes_move_on(&c->nodes, NULL);
                kv_client_sleep_ms(KV_CLIENT_RETRY_PAUSE_MS);
                continue;
            }
            c->reached = true;
        }
        /* A node that stopped answering (frozen, cut off) costs one attempt,
         * not the whole timeout: another node may lead by now. */
        int rc = tcp_link_roundtrip(c->link, req, reply, &c->buf, &c->cap,
                                    left < attempt_ms ? left : attempt_ms);
        if (rc != 0 || reply->type != WIRE_CLIENT_REPLY) {
            if (rc == 0)
                wire_msg_release(reply);
            if (maybe_done)
                *maybe_done = true; /* it may have reached a leader before the link failed */
            disconnect(c);
            kv_nodes_move_on(&c->nodes, NULL);
            kv_client_sleep_ms(KV_CLIENT_RETRY_PAUSE_MS);
            continue;
        }
        kv_nodes_heard(&c->nodes, reply->from);
        uint8_t status = reply->u.reply.status;
        if (status == CLIENT_OK || status == CLIENT_NOT_FOUND || status == CLIENT_BAD_REQUEST ||
            status == CLIENT_REFUSED || status == CLIENT_MISMATCH || status == CLIENT_TOO_LARGE)
            return 0;
        if (status == CLIENT_RETRY && maybe_done)
            *maybe_done = true; /* a leader took it, and may still carry it out */
        disconnect(c);
        if (!kv_nodes_move_on(&c->nodes, &reply->u.reply))
            kv_client_sleep_ms(KV_CLIENT_RETRY_PAUSE_MS); /* an election is probably under way */
    }
}

/* Sends req to the leader, following hints and retrying until a final
 * answer (OK, NOT_FOUND, BAD_REQUEST, REFUSED, MISMATCH, TOO_LARGE) or the
 * deadline; or until every node has refused the connection or has an
 * unknown host (-ECONNREFUSED, -EHOSTUNREACH), which no wait would change. */
static int call_leader(struct kv_client *c, const struct wire_msg *req, struct wire_msg *reply)
{
    return kv_client_call_until(c, req, reply, kv_client_now_ms() + c->timeout_ms, 0, NULL);
}

/* A copy of the reply's value, NUL terminated for printing. */
static int copy_value(const struct client_reply *r, uint8_t **value, uint32_t *value_len)
{
    *value = malloc(r->value_len + 1);
    if (!*value)
        return -ENOMEM;
    if (r->value_len)
        memcpy(*value, r->value, r->value_len);
    (*value)[r->value_len] = '\0';
    *value_len = r->value_len;
    return 0;
}

/* One request through the leader. Writes take the session's next number,
 * the same on every retry of it (thesis §6.3). Returns the reply's status
 * (>= 0), or -ETIMEDOUT; value_out (may be NULL) gets a copy of the value. */
static int request(struct kv_client *c, struct client_request *q, uint8_t **value_out,
                   uint32_t *value_len)
{
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT}, reply;
    q->client_id = c->client_id;
    if (q->op == CLIENT_PUT || q->op == CLIENT_DELETE || q->op == CLIENT_CAS)
        q->seq = ++c->seq;
    req.u.request = *q;
    int rc = call_leader(c, &req, &reply);
    if (rc)
        return rc;
    uint8_t status = reply.u.reply.status;
    if (value_out && (status == CLIENT_OK || status == CLIENT_MISMATCH) &&
        copy_value(&reply.u.reply, value_out, value_len))
        return -ENOMEM;
    return status;
}

int kv_client_put(struct kv_client *c, const char *key, uint32_t key_len,
                  const char *value, uint32_t value_len)
{
    struct client_request q = {.op = CLIENT_PUT, .key = (uint8_t *)key, .key_len = key_len,
                               .value = (uint8_t *)value, .value_len = value_len};
    int st = request(c, &q, NULL, NULL);
    return st < 0 ? st : st == CLIENT_OK ? 0 : -EINVAL;
}

int kv_client_get(struct kv_client *c, const char *key, uint32_t key_len,
                  uint8_t **value, uint32_t *value_len)
{
    struct client_request q = {.op = CLIENT_GET, .key = (uint8_t *)key, .key_len = key_len};
    int st = request(c, &q, value, value_len);
    return st < 0 ? st : st == CLIENT_OK ? 0 : st == CLIENT_NOT_FOUND ? -ENOENT : -EINVAL;
}

int kv_client_delete(struct kv_client *c, const char *key, uint32_t key_len)
{
    struct client_request q = {.op = CLIENT_DELETE, .key = (uint8_t *)key, .key_len = key_len};
    int st = request(c, &q, NULL, NULL);
    return st < 0 ? st : st == CLIENT_OK ? 0 : st == CLIENT_NOT_FOUND ? -ENOENT : -EINVAL;
}

int kv_client_cas(struct kv_client *c, const char *key, uint32_t key_len,
                  const char *expected, uint32_t expected_len,
                  const char *value, uint32_t value_len, uint8_t **held, uint32_t *held_len)
{
    struct client_request q = {.op = CLIENT_CAS, .key = (uint8_t *)key, .key_len = key_len,
                               .expected = (uint8_t *)expected, .expected_len = expected_len,
                               .value = (uint8_t *)value, .value_len = value_len};
    *held = NULL;
    int st = request(c, &q, held, held_len);
    if (st == CLIENT_OK) {
        free(*held); /* an OK reply carries no value; nothing to keep */
        *held = NULL;
    }
    return st < 0 ? st : st == CLIENT_OK ? 0 : st == CLIENT_NOT_FOUND ? -ENOENT
                                          : st == CLIENT_MISMATCH ? -EEXIST : -EINVAL;
}

int kv_client_list(struct kv_client *c, const char *prefix, uint32_t prefix_len, bool values,
                   uint8_t **listing, uint32_t *listing_len)
{
    struct client_request q = {.op = values ? CLIENT_LIST_VALUES : CLIENT_LIST,
                               .key = (uint8_t *)prefix, .key_len = prefix_len};
    int st = request(c, &q, listing, listing_len);
    return st < 0 ? st : st == CLIENT_OK ? 0 : st == CLIENT_TOO_LARGE ? -EMSGSIZE : -EINVAL;
}

int kv_client_transfer(struct kv_client *c, int32_t target, int32_t *leader, char **why)
{
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT}, reply;
    char id[16] = "";
    if (target != RAFT_NO_NODE)
        snprintf(id, sizeof(id), "%d", target);
    req.u.request.op = CLIENT_TRANSFER;
    req.u.request.key = (uint8_t *)id;
    req.u.request.key_len = (uint32_t)strlen(id);
    *why = NULL;
    int rc = call_leader(c, &req, &reply);
    if (rc)
        return rc;
    const struct client_reply *r = &reply.u.reply;
    if (r->status == CLIENT_REFUSED) {
        *why = strndup(r->value ? (const char *)r->value : "", r->value_len);
        return -EPERM;
    }
    if (r->status != CLIENT_OK)
        return -EINVAL;
    *leader = r->leader_hint;
    return 0;
}

const char *kv_client_unresolved(const struct kv_client *c)
{
    return c->unresolved[0] ? c->unresolved : NULL;
}

const char *kv_client_tls_refusal(const struct kv_client *c)
{
    return c->tls_refusal[0] ? c->tls_refusal : NULL;
}

int kv_client_status(const char *addr, unsigned timeout_ms, struct client_reply *out)
{
    return kv_client_status_tls(addr, NULL, timeout_ms, out);
}

int kv_client_status_tls(const char *addr, struct tls_ctx *tls, unsigned timeout_ms,
                         struct client_reply *out)
{
    struct raft_membership_view view;
    bool has_view;
    return kv_client_node_view(addr, tls, timeout_ms, out, &view, &has_view);
}
