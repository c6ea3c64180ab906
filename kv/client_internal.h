/*
 * client_internal.h - a client session's state, shared by kv/client.c
 * (data commands) and kv/client_members.c (membership); not for use
 * outside kv/.
 */
#ifndef KV_CLIENT_INTERNAL_H
#define KV_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/client.h"

struct kv_client {
    struct kv_nodes nodes;
    unsigned timeout_ms;
    struct tcp_link *link; /* connection to nodes.target, or NULL */
    struct tls_ctx *tls;   /* NULL: plain TCP; not owned */
    bool reached;          /* some node accepted a connection of this session */
    char unresolved[256];  /* a host that does not resolve, or "" */
    char tls_refusal[320]; /* "ADDR: why" of the last node TLS refused, or "" */
    uint64_t client_id;
    uint64_t seq;
    uint8_t *buf; /* reply frames */
    size_t cap;
};

/* Milliseconds on CLOCK_MONOTONIC, and a pause. */
uint64_t kv_client_now_ms(void);
void kv_client_sleep_ms(unsigned ms);

/* Sends req to the leader, following hints and retrying until a final
 * answer (OK, NOT_FOUND, BAD_REQUEST, REFUSED, MISMATCH, TOO_LARGE) or the
 * deadline (kv_client_now_ms), giving up on a node silent for attempt_ms
 * (0: KV_CLIENT_ATTEMPT_MS); or until every node has refused the
 * connection or has an unknown host (-ECONNREFUSED, -EHOSTUNREACH), which
 * no wait would change. *maybe_done (may be NULL) is set when an earlier
 * attempt may have been carried out: a link that failed after the request
 * went out, or a RETRY. The reply's byte strings point into the session's
 * buffer, valid until its next call. */
int kv_client_call_until(struct kv_client *c, const struct wire_msg *req,
                         struct wire_msg *reply, uint64_t deadline, unsigned attempt_ms,
                         bool *maybe_done);

#endif
