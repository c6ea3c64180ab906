/*
 * client.c - leader discovery, retries and sessions for clients.
 */
#include "kv/client.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net/tcp_socket.h"


struct kv_client {
    struct kv_nodes nodes;
    unsigned timeout_ms;
    struct tcp_link *link; /* connection to nodes.target, or NULL */
    struct tls_ctx *tls;   /* NULL: plain TCP; not owned */
    uint64_t client_id;
    uint64_t seq;
    uint8_t *buf; /* reply frames */
    size_t cap;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
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

/* The position of a leader's address in the list, added if new (the
 * client may have been given one node only); -1 if unusable. */
static int learn_addr(struct kv_nodes *k, const uint8_t *addr, uint32_t len)
{
    if (len == 0)
        return -1;
    for (uint32_t i = 0; i < k->n; i++)
        if (strlen(k->addrs[i]) == len && memcmp(k->addrs[i], addr, len) == 0)
            return (int)i;
    if (k->n == KV_MAX_ADDRS)
        return -1;
    char *copy = strndup((const char *)addr, len);
    if (!copy)
        return -1;
    k->addrs[k->n] = copy;
    return (int)k->n++;
}

bool kv_nodes_move_on(struct kv_nodes *k, const struct client_reply *reply)
{
    int hint = reply && reply->status == CLIENT_NOT_LEADER
                   ? learn_addr(k, reply->leader_addr, reply->leader_addr_len)
                   : -1;
    if (hint >= 0 && (uint32_t)hint != k->target) {
        k->target = (uint32_t)hint;
        return true;
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

/* Sends req to the leader, following hints and retrying until a final
 * answer (OK, NOT_FOUND, BAD_REQUEST) or the deadline. */
static int call_leader(struct kv_client *c, const struct wire_msg *req, struct wire_msg *reply)
{
    uint64_t deadline = now_ms() + c->timeout_ms;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        unsigned left = (unsigned)(deadline - now);
        if (!c->link) {
            int rc = tcp_link_dial(&c->link, c->nodes.addrs[c->nodes.target], c->tls,
                                   left < 500 ? left : 500);
            if (rc < 0) {
                kv_nodes_move_on(&c->nodes, NULL);
                sleep_ms(KV_CLIENT_RETRY_PAUSE_MS);
                continue;
            }
        }
        /* A node that stopped answering (frozen, cut off) costs one attempt,
         * not the whole timeout: another node may lead by now. */
        int rc = tcp_link_roundtrip(c->link, req, reply, &c->buf, &c->cap,
                               left < KV_CLIENT_ATTEMPT_MS ? left : KV_CLIENT_ATTEMPT_MS);
        if (rc != 0 || reply->type != WIRE_CLIENT_REPLY) {
            if (rc == 0)
                wire_msg_release(reply);
            disconnect(c);
            kv_nodes_move_on(&c->nodes, NULL);
            sleep_ms(KV_CLIENT_RETRY_PAUSE_MS);
            continue;
        }
        uint8_t status = reply->u.reply.status;
        if (status == CLIENT_OK || status == CLIENT_NOT_FOUND || status == CLIENT_BAD_REQUEST)
            return 0;
        disconnect(c);
        if (!kv_nodes_move_on(&c->nodes, &reply->u.reply))
            sleep_ms(KV_CLIENT_RETRY_PAUSE_MS); /* an election is probably under way */
    }
}

int kv_client_put(struct kv_client *c, const char *key, uint32_t key_len,
                  const char *value, uint32_t value_len)
{
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT}, reply;
    struct client_request *q = &req.u.request;
    q->op = CLIENT_PUT;
    q->client_id = c->client_id;
    q->seq = ++c->seq; /* the same number on every retry of this put */
    q->key = (uint8_t *)key;
    q->key_len = key_len;
    q->value = (uint8_t *)value;
    q->value_len = value_len;
    int rc = call_leader(c, &req, &reply);
    if (rc)
        return rc;
    return reply.u.reply.status == CLIENT_OK ? 0 : -EINVAL;
}

int kv_client_get(struct kv_client *c, const char *key, uint32_t key_len,
                  uint8_t **value, uint32_t *value_len)
{
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT}, reply;
    struct client_request *q = &req.u.request;
    q->op = CLIENT_GET;
    q->client_id = c->client_id;
    q->key = (uint8_t *)key;
    q->key_len = key_len;
    int rc = call_leader(c, &req, &reply);
    if (rc)
        return rc;
    if (reply.u.reply.status == CLIENT_NOT_FOUND)
        return -ENOENT;
    if (reply.u.reply.status != CLIENT_OK)
        return -EINVAL;
    *value = malloc(reply.u.reply.value_len + 1);
    if (!*value)
        return -ENOMEM;
    memcpy(*value, reply.u.reply.value, reply.u.reply.value_len);
    (*value)[reply.u.reply.value_len] = '\0';
    *value_len = reply.u.reply.value_len;
    return 0;
}

int kv_client_status(const char *addr, unsigned timeout_ms, struct client_reply *out)
{
    return kv_client_status_tls(addr, NULL, timeout_ms, out);
}

int kv_client_status_tls(const char *addr, struct tls_ctx *tls, unsigned timeout_ms,
                         struct client_reply *out)
{
    struct tcp_link *link;
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
    /* The reply's byte strings point into buf, freed below: *out keeps
     * none of them (a status names its leader by id). */
    if (rc == 0) {
        *out = reply.u.reply;
        out->value = NULL;
        out->value_len = 0;
        out->leader_addr = NULL;
        out->leader_addr_len = 0;
    }
    free(buf);
    return rc;
}
