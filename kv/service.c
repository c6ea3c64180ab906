/*
 * service.c - client requests on one node: writes (put, delete, cas) through
 * the log, reads (get, list) through a read barrier, status from the node,
 * membership changes through the leader (see service.h).
 */
#include "kv/service.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* An address handed out in a reply: kept until the service is freed, as a
 * reply still being encoded may point at it after the member moved. */
struct known_addr {
    struct known_addr *next;
    char addr[RAFT_ADDR_MAX];
};

struct kv_service {
    struct kv_service_config cfg;
    pthread_mutex_t mu; /* guards the two below */
    const char *addr_of[RAFT_MAX_ID + 1]; /* the latest address seen per id, or NULL */
    struct known_addr *known;             /* every address handed out */
};

/* A write waiting for its entry to be applied. */
struct pending_write {
    struct raft_async async; /* first: the callback gets its address */
    struct kv_service *s;
    void *token;
    uint64_t client_id, seq;
};

int kv_service_new(struct kv_service **out, const struct kv_service_config *cfg)
{
    struct kv_service *s = malloc(sizeof(*s));
    if (!s)
        return -ENOMEM;
    *s = (struct kv_service){.cfg = *cfg};
    if (!s->cfg.read_wait_ms)
        s->cfg.read_wait_ms = KV_SERVICE_READ_WAIT_MS;
    int rc = pthread_mutex_init(&s->mu, NULL);
    if (rc) {
        free(s);
        return -rc;
    }
    *out = s;
    return 0;
}

void kv_service_free(struct kv_service *s)
{
    if (!s)
        return;
    while (s->known) {
        struct known_addr *k = s->known;
        s->known = k->next;
        free(k);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* The leader's clock, carried in each put: session expiry is judged by it
 * (kv/kv.h), so that every replica expires the same sessions. */
static uint64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void answer(struct kv_reply *r, enum kv_answer a, int32_t hint)
{
    r->answer = a;
    r->leader_hint = hint;
}

/* A copy of addr that outlives the reply, as node id's latest address. */
static const char *keep_addr(struct kv_service *s, uint32_t id, const char *addr)
{
    pthread_mutex_lock(&s->mu);
    const char *kept = s->addr_of[id];
    if (!kept || strcmp(kept, addr) != 0) {
        struct known_addr *k = malloc(sizeof(*k));
        if (k) {
            snprintf(k->addr, sizeof(k->addr), "%s", addr);
            k->next = s->known;
            s->known = k;
            s->addr_of[id] = k->addr;
        }
        kept = k ? k->addr : NULL;
    }
    pthread_mutex_unlock(&s->mu);
    return kept;
}

/* Where node id listens: as the configuration says (it may have joined
 * after this node started), else as --peers said, else as the
 * configuration said last time, if it ever did. */
static const char *addr_of(struct kv_service *s, int32_t id)
{
    if (id < 0 || id > RAFT_MAX_ID)
        return NULL;
    struct raft_membership_view v;
    raft_get_membership(s->cfg.node, &v);
    const struct raft_member *m = raft_membership_find(&v.config, (uint32_t)id);
    if (m && m->addr[0])
        return keep_addr(s, (uint32_t)id, m->addr);
    if (s->cfg.peers && (uint32_t)id < s->cfg.n_nodes)
        return s->cfg.peers[id];
    pthread_mutex_lock(&s->mu);
    const char *kept = s->addr_of[id];
    pthread_mutex_unlock(&s->mu);
    return kept;
}

/* Redirects the client: the leader's id and its address, which the client
 * may not have been given. A RETRY may name one too: the node that takes
 * over after a leadership transfer. */
static void answer_with_addr(struct kv_service *s, struct kv_reply *r, enum kv_answer a,
                             int32_t hint)
{
    answer(r, a, hint);
    r->leader_addr = addr_of(s, hint);
}

/* The answer to a refused request: one sentence why, in value. */
static void answer_refused(struct kv_reply *r, const char *why)
{
    answer(r, KV_ANSWER_REFUSED, RAFT_NO_NODE);
    r->value = (uint8_t *)strdup(why);
    r->value_len = r->value ? (uint32_t)strlen(why) : 0;
}

/* The answer to a write the session table says was applied: a retry
 * whose first copy was applied is answered as that copy was. */
static void answer_applied(struct kv_service *s, uint64_t client_id, uint64_t seq,
                           struct kv_reply *r)
{
    enum kv_result result;
    int rc = kv_request_result(s->cfg.kv, client_id, seq, &result, &r->value, &r->value_len);
    if (rc == 0 && result == KV_RESULT_DONE)
        answer(r, KV_ANSWER_OK, (int32_t)s->cfg.id);
    else if (rc == 0 && result == KV_RESULT_ABSENT)
        answer(r, KV_ANSWER_NOT_FOUND, (int32_t)s->cfg.id);
    else if (rc == 0)
        answer(r, KV_ANSWER_MISMATCH, (int32_t)s->cfg.id);
    else if (kv_applied_request(s->cfg.kv, client_id, seq))
        answer(r, KV_ANSWER_OK, (int32_t)s->cfg.id); /* a put the session moved past */
    else
        answer(r, KV_ANSWER_RETRY, RAFT_NO_NODE);
}

/* A write this node held when it stopped leading: the client is sent on
 * at once, to the leader this node knows of by now if any (a step-down for
 * a newer term often names it), rather than left to wait on a node that
 * cannot commit. It retries with the same number, so a copy that the new
 * leader commits after all is applied once (§6.3). */
static void answer_deposed(struct kv_service *s, struct kv_reply *r)
{
    struct raft_status st;
    raft_get_status(s->cfg.node, &st);
    int32_t hint = st.leader == (int32_t)s->cfg.id ? RAFT_NO_NODE : st.leader;
    answer_with_addr(s, r, KV_ANSWER_NOT_LEADER, hint);
}

/* Called back by the node (its applier) once the entry is applied, or
 * cannot be. The session table says whether this request was applied: the
 * entry at its index may be another leader's. */
static void write_done(struct raft_async *a, int rc)
{
    struct pending_write *p = (struct pending_write *)a;
    struct kv_service *s = p->s;
    struct kv_reply r = {0};
    if (rc == 0 && kv_applied_request(s->cfg.kv, p->client_id, p->seq))
        answer_applied(s, p->client_id, p->seq, &r);
    else if (rc == -ECANCELED)
        answer_deposed(s, &r);
    else
        answer(&r, KV_ANSWER_RETRY, RAFT_NO_NODE);
    void *token = p->token;
    free(p);
    s->cfg.answer(s->cfg.ctx, token, &r);
}

static const uint8_t command_op[] = {
    [KV_REQUEST_PUT] = KV_OP_PUT,
    [KV_REQUEST_DELETE] = KV_OP_DELETE,
    [KV_REQUEST_CAS] = KV_OP_CAS,
};

static int handle_write(struct kv_service *s, const struct kv_request *q, struct kv_reply *r,
                        void *token)
{
    if (q->client_id == 0 || q->seq == 0 || q->key_len == 0) {
        answer(r, KV_ANSWER_BAD_REQUEST, RAFT_NO_NODE);
        return 0;
    }
    /* A retry of a request that was already applied gets the same answer. */
    if (kv_applied_request(s->cfg.kv, q->client_id, q->seq)) {
        answer_applied(s, q->client_id, q->seq, r);
        return 0;
    }
    struct kv_command c = {.op = command_op[q->op], .client_id = q->client_id, .seq = q->seq,
                           .time_ms = wall_clock_ms(), .key = q->key, .key_len = q->key_len,
                           .expected = q->expected, .expected_len = q->expected_len,
                           .value = q->value, .value_len = q->value_len};
    size_t len = kv_command_size(&c);
    uint8_t *cmd = malloc(len);
    struct pending_write *p = malloc(sizeof(*p));
    if (!cmd || !p) {
        free(cmd);
        free(p);
        answer(r, KV_ANSWER_RETRY, RAFT_NO_NODE);
        return 0;
    }
    kv_encode_command(cmd, &c);
    *p = (struct pending_write){.async.done = write_done, .s = s, .token = token,
                              .client_id = q->client_id, .seq = q->seq};
    if (s->cfg.defer)
        s->cfg.defer(s->cfg.ctx, token); /* before the applier can answer */
    int32_t hint;
    int rc = raft_propose_async(s->cfg.node, cmd, (uint32_t)len, &p->async, &hint);
    free(cmd);
    if (rc == 0)
        return KV_SERVICE_LATER;
    free(p);
    /* The caller was told the answer comes later: it comes through answer. */
    struct kv_reply refused = {0};
    if (rc == -EPERM)
        answer_with_addr(s, &refused, KV_ANSWER_NOT_LEADER, hint);
    else if (rc == -EBUSY) /* a transfer: the target leads soon */
        answer_with_addr(s, &refused, KV_ANSWER_RETRY, hint);
    else
        answer(&refused, KV_ANSWER_RETRY, RAFT_NO_NODE);
    s->cfg.answer(s->cfg.ctx, token, &refused);
    return KV_SERVICE_LATER;
}

/* A linearizable read (thesis §6.4): 0 once this node may answer from its
 * store, else the answer is in *r. */
static int read_barrier(struct kv_service *s, struct kv_reply *r)
{
    int32_t hint;
    int rc = raft_read_barrier(s->cfg.node, s->cfg.read_wait_ms, &hint);
    if (rc == -EPERM)
        answer_with_addr(s, r, KV_ANSWER_NOT_LEADER, hint);
    else if (rc != 0)
        answer(r, KV_ANSWER_RETRY, RAFT_NO_NODE);
    return rc;
}

static void handle_get(struct kv_service *s, const struct kv_request *q, struct kv_reply *r)
{
    if (read_barrier(s, r))
        return;
    int rc = kv_get(s->cfg.kv, q->key, q->key_len, &r->value, &r->value_len);
    answer(r, rc == 0 ? KV_ANSWER_OK : rc == -ENOENT ? KV_ANSWER_NOT_FOUND : KV_ANSWER_RETRY,
           (int32_t)s->cfg.id);
}

static void handle_list(struct kv_service *s, const struct kv_request *q, struct kv_reply *r)
{
    if (read_barrier(s, r))
        return;
    int rc = kv_list(s->cfg.kv, q->key, q->key_len, q->op == KV_REQUEST_LIST_VALUES,
                     KV_SERVICE_MAX_LISTING, &r->value, &r->value_len);
    answer(r, rc == 0 ? KV_ANSWER_OK : rc == -EMSGSIZE ? KV_ANSWER_TOO_LARGE : KV_ANSWER_RETRY,
           (int32_t)s->cfg.id);
}

/* This node's view of its configuration goes with the reply. */
static void attach_members(struct kv_service *s, struct kv_reply *r)
{
    raft_get_membership(s->cfg.node, &r->members);
    r->has_members = true;
}

static void handle_status(struct kv_service *s, struct kv_reply *r)
{
    raft_get_status(s->cfg.node, &r->status);
    answer(r, KV_ANSWER_OK, r->status.leader);
    attach_members(s, r);
}

/* The target's id from its decimal text; RAFT_NO_NODE for none; -2 when
 * it is not a number. */
static int32_t parse_target(const uint8_t *key, uint32_t len)
{
    if (len == 0)
        return RAFT_NO_NODE;
    int32_t id = 0;
    for (uint32_t i = 0; i < len; i++) {
        if (key[i] < '0' || key[i] > '9' || len > 9)
            return -2;
        id = id * 10 + (key[i] - '0');
    }
    return id;
}

static void handle_transfer(struct kv_service *s, const struct kv_request *q,
                            struct kv_reply *r)
{
    int32_t target = parse_target(q->key, q->key_len), hint;
    if (target == -2) {
        answer(r, KV_ANSWER_BAD_REQUEST, RAFT_NO_NODE);
        return;
    }
    char why[160];
    int rc = raft_transfer(s->cfg.node, target, s->cfg.read_wait_ms, &hint, why, sizeof(why));
    if (rc == 0) {
        answer_with_addr(s, r, KV_ANSWER_OK, hint);
    } else if (rc == -EPERM) {
        answer_with_addr(s, r, KV_ANSWER_NOT_LEADER, hint);
    } else if (rc == -EINVAL || rc == -EBUSY) {
        answer_refused(r, why);
    } else {
        answer(r, KV_ANSWER_RETRY, RAFT_NO_NODE);
    }
}

/* ---- membership (thesis ch. 4) ---- */

/* The leader's configuration: after a read barrier (§6.4), so that no
 * deposed leader answers with a configuration the cluster moved past. */
static void handle_member_list(struct kv_service *s, struct kv_reply *r)
{
    if (read_barrier(s, r))
        return;
    raft_get_status(s->cfg.node, &r->status);
    answer(r, KV_ANSWER_OK, (int32_t)s->cfg.id);
    attach_members(s, r);
}

/* What raft_add_member or raft_remove_member returned, as an answer. */
static void answer_change(struct kv_service *s, struct kv_reply *r, int rc, int32_t hint,
                          const char *why)
{
    if (rc == 0)
        answer(r, KV_ANSWER_OK, (int32_t)s->cfg.id);
    else if (rc == -EPERM)
        answer_with_addr(s, r, KV_ANSWER_NOT_LEADER, hint);
    else if (rc == -EINVAL || rc == -EBUSY)
        answer_refused(r, why);
    else /* -ETIMEDOUT, -ECANCELED: it may still take effect; the client asks again */
        answer_with_addr(s, r, KV_ANSWER_RETRY, rc == -ECANCELED ? hint : RAFT_NO_NODE);
}

static unsigned change_wait_ms(const struct kv_request *q)
{
    if (q->wait_ms == 0)
        return KV_SERVICE_CHANGE_WAIT_MS;
    return q->wait_ms < KV_SERVICE_CHANGE_WAIT_MAX_MS ? q->wait_ms : KV_SERVICE_CHANGE_WAIT_MAX_MS;
}

static void handle_member_change(struct kv_service *s, const struct kv_request *q,
                                 struct kv_reply *r)
{
    char why[256] = "";
    char addr[RAFT_ADDR_MAX];
    int32_t hint = RAFT_NO_NODE;
    int rc;
    if (q->op == KV_REQUEST_MEMBER_ADD) {
        /* An address is a short "host:port" (the client checked its form). */
        if (q->value_len == 0 || q->value_len >= sizeof(addr) ||
            memchr(q->value, '\0', q->value_len)) {
            answer(r, KV_ANSWER_BAD_REQUEST, RAFT_NO_NODE);
            return;
        }
        memcpy(addr, q->value, q->value_len);
        addr[q->value_len] = '\0';
        rc = raft_add_member(s->cfg.node, q->member_id, addr, !q->learner, change_wait_ms(q),
                             &hint, why, sizeof(why));
    } else {
        rc = raft_remove_member(s->cfg.node, q->member_id, change_wait_ms(q), &hint, why,
                                sizeof(why));
    }
    answer_change(s, r, rc, hint, why);
}

int kv_service_handle(struct kv_service *s, const struct kv_request *q, struct kv_reply *r,
                      void *token)
{
    *r = (struct kv_reply){.leader_hint = RAFT_NO_NODE};
    switch (q->op) {
    case KV_REQUEST_PUT:
    case KV_REQUEST_DELETE:
    case KV_REQUEST_CAS: return handle_write(s, q, r, token);
    case KV_REQUEST_GET: handle_get(s, q, r); break;
    case KV_REQUEST_LIST:
    case KV_REQUEST_LIST_VALUES: handle_list(s, q, r); break;
    case KV_REQUEST_STATUS: handle_status(s, r); break;
    case KV_REQUEST_TRANSFER: handle_transfer(s, q, r); break;
    case KV_REQUEST_MEMBER_LIST: handle_member_list(s, r); break;
    case KV_REQUEST_MEMBER_ADD:
    case KV_REQUEST_MEMBER_REMOVE: handle_member_change(s, q, r); break;
    default: answer(r, KV_ANSWER_BAD_REQUEST, RAFT_NO_NODE);
    }
    return 0;
}
