/*
 * service.h - the key-value service of one node, with no transport: it
 * takes a decoded client request, drives the Raft node and the key-value
 * state machine, and produces a decoded reply. kv/server.c puts it behind
 * TCP; the lab harness calls it in-process (tests/support/kvlab.h).
 *
 *   put     proposed as a log entry and answered once applied (Raft paper
 *           §8: a client is answered only after its command is committed
 *           and applied). The session (client id, seq) makes a retry take
 *           effect once (thesis §6.3). The answer comes later, from the
 *           node's applier (raft_propose_async), so that no thread waits
 *           per put.
 *   get     served by the leader from its store, without writing to the
 *           log: on its lease (thesis §6.4.1) or after a ReadIndex round
 *           (§6.4).
 *   status  this node's view: role, term, leader, commit, applied, log end.
 *   transfer  leadership to the node whose decimal id is the key (empty:
 *           the most up-to-date voter), thesis §3.10: OK once it leads
 *           (leader_hint), REFUSED with one sentence why in value, RETRY
 *           when it did not take over in time. Puts meanwhile get RETRY
 *           with the target as leader_hint.
 *   member list, add, remove  the configuration (thesis ch. 4), by the
 *           leader: list after a read barrier (§6.4), so that it shows at
 *           least every change committed before it was asked; add and
 *           remove answered OK once the change is committed, REFUSED with
 *           one sentence why, NOT_LEADER with the leader, RETRY when the
 *           outcome is unknown (this node stopped leading, or the wait ran
 *           out). A status and a list carry the configuration.
 *
 * A redirect names the leader's address as the configuration gives it, so
 * that a client finds a leader that joined after it was given its list.
 */
#ifndef KV_SERVICE_H
#define KV_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "kv/kv.h"
#include "raft/raft.h"

/* How long a read may wait on the cluster by default: less than a client
 * waits for one answer (KV_CLIENT_ATTEMPT_MS, kv/client.h), so that it hears "retry"
 * first. A put has no such limit: it is answered once applied, or "retry"
 * once this node stops leading (check-quorum steps a leader that cannot
 * commit down within an election timeout). */
#define KV_SERVICE_READ_WAIT_MS 1000

/* The largest listing a list answers with: what one client reply holds. */
#define KV_SERVICE_MAX_LISTING (1u << 20)

/* How long a member add or remove may wait for its commit: by default,
 * and at most (a request asks for its own wait, within this). */
#define KV_SERVICE_CHANGE_WAIT_MS 10000
#define KV_SERVICE_CHANGE_WAIT_MAX_MS 600000

enum kv_request_op {
    KV_REQUEST_PUT = 1,
    KV_REQUEST_GET,
    KV_REQUEST_STATUS,
    KV_REQUEST_DELETE,      /* a write like put: through the log, once per session seq */
    KV_REQUEST_CAS,         /* likewise: value replaces expected, or nothing changes */
    KV_REQUEST_LIST,        /* a read like get: the keys starting with key, sorted */
    KV_REQUEST_LIST_VALUES, /* the same, with their values */
    KV_REQUEST_TRANSFER,    /* key: the target's id in decimal, or empty for any */
    KV_REQUEST_MEMBER_LIST,
    KV_REQUEST_MEMBER_ADD,    /* member_id, learner, wait_ms; value: its "host:port" */
    KV_REQUEST_MEMBER_REMOVE, /* member_id, wait_ms */
};

struct kv_request {
    enum kv_request_op op;
    uint64_t client_id; /* the session (thesis §6.3); puts only */
    uint64_t seq;       /* numbers the session's puts from 1 */
    const uint8_t *key; /* borrowed, as is value */
    uint32_t key_len;
    const uint8_t *value;
    uint32_t value_len;
    const uint8_t *expected; /* cas */
    uint32_t expected_len;
    uint32_t member_id; /* member add and remove */
    bool learner;       /* member add: as a learner */
    uint32_t wait_ms;   /* member add and remove: how long to wait for the commit */
};

enum kv_answer {
    KV_ANSWER_OK,
    KV_ANSWER_NOT_FOUND,   /* get of a key that does not exist */
    KV_ANSWER_NOT_LEADER,  /* ask leader_hint (or another node) */
    KV_ANSWER_RETRY,       /* no outcome yet (election, lost leadership): retry */
    KV_ANSWER_BAD_REQUEST, /* a write without session, seq or key; an unknown op */
    KV_ANSWER_MISMATCH,    /* cas: the key held another value (in value) */
    KV_ANSWER_TOO_LARGE,   /* list: more than fits in one reply */
    KV_ANSWER_REFUSED,     /* the cluster will not do it: value says why */
};

struct kv_reply {
    enum kv_answer answer;
    int32_t leader_hint;     /* RAFT_NO_NODE when unknown */
    /* NOT_LEADER, RETRY: leader_hint's address, or NULL; the service's,
     * valid until kv_service_free */
    const char *leader_addr;
    uint8_t *value;          /* get, list, cas mismatch, REFUSED: malloc'd, the caller's to free */
    uint32_t value_len;
    struct raft_status status; /* status, member list */
    bool has_members;          /* status, member list: */
    struct raft_membership_view members; /* this node's configuration */
};

struct kv_service_config {
    struct raft_node *node;
    struct kv *kv; /* the node's state machine */
    uint32_t id, n_nodes;
    /* "host:port" by id, for redirects to a node the configuration gives
     * no address; may be NULL */
    char *const *peers;
    unsigned read_wait_ms; /* 0: KV_SERVICE_READ_WAIT_MS */
    /* Deferred answers. For a write that goes to the log, defer(ctx, token)
     * is called before the node could answer (may be NULL), then
     * answer(ctx, token, reply) exactly once, from the node's applier
     * thread or the calling one; a cas mismatch's reply carries the value
     * held, which answer must free. */
    void (*defer)(void *ctx, void *token);
    void (*answer)(void *ctx, void *token, const struct kv_reply *reply);
    void *ctx;
};

struct kv_service;

/* 0 or -ENOMEM. The service must outlive the node's threads (raft_stop),
 * which may still answer deferred puts. */
int kv_service_new(struct kv_service **out, const struct kv_service_config *cfg);
void kv_service_free(struct kv_service *s);

/* Handles one request. Returns 0 with the answer in *r, or KV_SERVICE_LATER
 * when cfg.answer will be called with token instead. Blocks for a get
 * (up to read_wait_ms); never for a put. */
#define KV_SERVICE_LATER 1
int kv_service_handle(struct kv_service *s, const struct kv_request *q, struct kv_reply *r,
                      void *token);

#endif
