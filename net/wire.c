/*
 * wire.c - encode and decode frames (layout of the header: net/wire.h).
 *
 * Every integer is big-endian and fixed width; a "bytes" field is a u32
 * length followed by that many bytes. Booleans are one byte, 0 or 1. The body
 * of each message follows its header, fields in the order of its struct:
 *
 *   1  RequestVote         u64 term, u64 last_log_index, u64 last_log_term,
 *                          u8 flags: 1 pre_vote, 2 transfer         (25 bytes)
 *   2  RequestVote reply   u64 term, u8 vote_granted, u8 pre_vote   (10 bytes)
 *   3  AppendEntries       u64 term, u64 prev_log_index, u64 prev_log_term,
 *                          u64 leader_commit, u32 n_entries, then n_entries
 *                          times { u64 term, u8 type, u32 len, len bytes }
 *   4  AppendEntries reply u64 term, u8 success, u64 match_index,
 *                          u64 conflict_term, u64 conflict_index    (33 bytes)
 *   5  InstallSnapshot     u64 term, u64 last_index, u64 last_term,
 *                          u64 offset, u64 total, bytes data, u8 done
 *   6  InstallSnapshot reply  u64 term, u64 next_offset             (16 bytes)
 *   7  TimeoutNow          u64 term                                  (8 bytes)
 *   8  TimeoutNow reply    u64 term                                  (8 bytes)
 *  16  client request      u8 op, u64 client_id, u64 seq, bytes key,
 *                          bytes value, then for a cas: bytes expected;
 *                          for a member add or remove: u32 member_id,
 *                          u8 learner, u32 wait_ms
 *  17  client reply        u8 status, i32 leader_hint, bytes leader_addr,
 *                          bytes value, u32 id,
 *                          u8 role, u64 term, i32 leader, u64 commit,
 *                          u64 applied, u64 last_index
 *
 * Every Raft message (types 1..8) ends with a u64 message id after the
 * fields above (8 more bytes than the sizes given): the sender's number for
 * it, which traces use to pair a send with its receive.
 *
 * Signed fields (leader_hint, leader) travel as their two's complement u32.
 *
 * The flags byte of RequestVote was a boolean (pre_vote) before leadership
 * transfer: its values 0 and 1 mean what they meant, so frames of older
 * senders decode unchanged. Bits this decoder does not know are refused.
 *
 * The decoder trusts nothing: the length field must match the bytes given,
 * every field is read through a bounds-checked cursor, every length is
 * checked against what is left before it is used, and the entry count of an
 * AppendEntries is checked against the smallest possible encoding of that
 * many entries before the array is allocated, so a small frame can never
 * make us allocate a large array.
 */
#include "net/wire.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Smallest encoding of one AppendEntries entry: term, type, len, no data. */
#define WIRE_ENTRY_MIN (8 + 1 + 4)

/* ---- writing (the caller has checked the size) ---- */

static uint8_t *wire_put_u8(uint8_t *p, uint8_t v)
{
    *p = v;
    return p + 1;
}

static uint8_t *wire_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static uint8_t *wire_put_u64(uint8_t *p, uint64_t v)
{
    p = wire_put_u32(p, (uint32_t)(v >> 32));
    return wire_put_u32(p, (uint32_t)v);
}

static uint8_t *wire_put_bytes(uint8_t *p, const uint8_t *data, uint32_t len)
{
    p = wire_put_u32(p, len);
    if (len > 0)
        memcpy(p, data, len);
    return p + len;
}

/* A boolean is sent as 0 or 1 whatever non-zero value the struct holds, so
 * that our own frames always pass our own decoder. */
static uint8_t *wire_put_bool(uint8_t *p, uint8_t v)
{
    return wire_put_u8(p, v != 0);
}

#define WIRE_VOTE_PRE_VOTE 1u
#define WIRE_VOTE_TRANSFER 2u

static uint8_t *wire_put_vote_flags(uint8_t *p, const struct raft_request_vote *rv)
{
    return wire_put_u8(p, (uint8_t)((rv->pre_vote ? WIRE_VOTE_PRE_VOTE : 0) |
                                    (rv->transfer ? WIRE_VOTE_TRANSFER : 0)));
}

/* ---- reading: a cursor whose first error sticks ---- */

struct wire_reader {
    const uint8_t *p;
    size_t left;
    int err; /* 0, or the first error met; later reads return zeroes */
};

static bool wire_have(struct wire_reader *r, size_t n)
{
    if (r->err)
        return false;
    if (r->left < n) {
        r->err = -EBADMSG; /* truncated */
        return false;
    }
    return true;
}

static uint8_t wire_get_u8(struct wire_reader *r)
{
    if (!wire_have(r, 1))
        return 0;
    uint8_t v = r->p[0];
    r->p += 1;
    r->left -= 1;
    return v;
}

uint32_t wire_be32(const uint8_t p[4])
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint32_t wire_get_u32(struct wire_reader *r)
{
    if (!wire_have(r, 4))
        return 0;
    uint32_t v = wire_be32(r->p);
    r->p += 4;
    r->left -= 4;
    return v;
}

static uint64_t wire_get_u64(struct wire_reader *r)
{
    uint64_t hi = wire_get_u32(r);
    uint64_t lo = wire_get_u32(r);
    return hi << 32 | lo;
}

static uint8_t wire_get_bool(struct wire_reader *r)
{
    uint8_t v = wire_get_u8(r);
    if (v > 1 && !r->err)
        r->err = -EBADMSG;
    return v;
}

/* Reads a byte string of at most max bytes. The data is not copied: *data
 * points into the frame (NULL for an empty string). */
static void wire_get_bytes(struct wire_reader *r, uint32_t max, uint32_t *len,
                           uint8_t **data)
{
    uint32_t n = wire_get_u32(r);
    *len = 0;
    *data = NULL;
    if (r->err)
        return;
    if (n > max) {
        r->err = -EMSGSIZE;
        return;
    }
    if (!wire_have(r, n))
        return;
    /* The struct fields are not const (the same structs are filled in by
     * senders); receivers treat them as read-only borrowed bytes. */
    *data = n > 0 ? (uint8_t *)r->p : NULL;
    *len = n;
    r->p += n;
    r->left -= n;
}

/* ---- sizes ---- */

/* The ops that carry member_id, learner and wait_ms after the value. */
#define WIRE_MEMBER_CHANGE_SIZE (4 + 1 + 4)

static bool wire_is_member_change(uint8_t op)
{
    return op == CLIENT_MEMBER_ADD || op == CLIENT_MEMBER_REMOVE;
}

static uint64_t wire_body_size(const struct wire_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_REQUEST_VOTE:
        return 3 * 8 + 1;
    case RAFT_MSG_REQUEST_VOTE_REPLY:
        return 8 + 1 + 1;
    case RAFT_MSG_APPEND_ENTRIES: {
        const struct raft_append_entries *ae = &m->u.raft.u.ae;
        uint64_t n = 4 * 8 + 4;
        for (uint32_t i = 0; i < ae->n_entries; i++)
            n += WIRE_ENTRY_MIN + (uint64_t)ae->entries[i].len;
        return n;
    }
    case RAFT_MSG_APPEND_ENTRIES_REPLY:
        return 8 + 1 + 3 * 8;
    case RAFT_MSG_INSTALL_SNAPSHOT:
        return 5 * 8 + 4 + (uint64_t)m->u.raft.u.is.len + 1;
    case RAFT_MSG_INSTALL_SNAPSHOT_REPLY:
        return 2 * 8;
    case RAFT_MSG_TIMEOUT_NOW:
    case RAFT_MSG_TIMEOUT_NOW_REPLY:
        return 8;
    case WIRE_CLIENT_REQUEST:
        return 1 + 8 + 8 + 4 + (uint64_t)m->u.request.key_len + 4 +
               m->u.request.value_len +
               (m->u.request.op == CLIENT_CAS ? 4 + (uint64_t)m->u.request.expected_len : 0) +
               (wire_is_member_change(m->u.request.op) ? WIRE_MEMBER_CHANGE_SIZE : 0);
    case WIRE_CLIENT_REPLY:
        return 1 + 4 + 4 + (uint64_t)m->u.reply.leader_addr_len +
               4 + (uint64_t)m->u.reply.value_len + 4 + 1 + 8 + 4 +
               3 * 8;
    default:
        return 0;
    }
}

static bool wire_known_type(uint8_t type)
{
    return (type >= RAFT_MSG_REQUEST_VOTE &&
            type <= RAFT_MSG_TIMEOUT_NOW_REPLY) ||
           type == WIRE_CLIENT_REQUEST || type == WIRE_CLIENT_REPLY;
}

/* 0 for a message of unknown type, which cannot be encoded. */
size_t wire_size(const struct wire_msg *msg)
{
    if (!wire_known_type(msg->type))
        return 0;
    uint64_t n = WIRE_HEADER + wire_body_size(msg);
    if (msg->type != WIRE_CLIENT_REQUEST && msg->type != WIRE_CLIENT_REPLY)
        n += 8; /* the message id */
    return n > SIZE_MAX ? SIZE_MAX : (size_t)n;
}

/* ---- encoding ---- */

static uint8_t *wire_put_raft(uint8_t *p, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_REQUEST_VOTE:
        p = wire_put_u64(p, m->u.rv.term);
        p = wire_put_u64(p, m->u.rv.last_log_index);
        p = wire_put_u64(p, m->u.rv.last_log_term);
        return wire_put_vote_flags(p, &m->u.rv);
    case RAFT_MSG_REQUEST_VOTE_REPLY:
        p = wire_put_u64(p, m->u.rv_reply.term);
        p = wire_put_bool(p, m->u.rv_reply.vote_granted);
        return wire_put_bool(p, m->u.rv_reply.pre_vote);
    case RAFT_MSG_APPEND_ENTRIES:
        p = wire_put_u64(p, m->u.ae.term);
        p = wire_put_u64(p, m->u.ae.prev_log_index);
        p = wire_put_u64(p, m->u.ae.prev_log_term);
        p = wire_put_u64(p, m->u.ae.leader_commit);
        p = wire_put_u32(p, m->u.ae.n_entries);
        for (uint32_t i = 0; i < m->u.ae.n_entries; i++) {
            const struct raft_entry *e = &m->u.ae.entries[i];
            p = wire_put_u64(p, e->term);
            p = wire_put_u8(p, e->type);
            p = wire_put_bytes(p, e->data, e->len);
        }
        return p;
    case RAFT_MSG_APPEND_ENTRIES_REPLY:
        p = wire_put_u64(p, m->u.ae_reply.term);
        p = wire_put_bool(p, m->u.ae_reply.success);
        p = wire_put_u64(p, m->u.ae_reply.match_index);
        p = wire_put_u64(p, m->u.ae_reply.conflict_term);
        return wire_put_u64(p, m->u.ae_reply.conflict_index);
    case RAFT_MSG_INSTALL_SNAPSHOT:
        p = wire_put_u64(p, m->u.is.term);
        p = wire_put_u64(p, m->u.is.last_index);
        p = wire_put_u64(p, m->u.is.last_term);
        p = wire_put_u64(p, m->u.is.offset);
        p = wire_put_u64(p, m->u.is.total);
        p = wire_put_bytes(p, m->u.is.data, m->u.is.len);
        return wire_put_bool(p, m->u.is.done);
    case RAFT_MSG_TIMEOUT_NOW:
        return wire_put_u64(p, m->u.tn.term);
    case RAFT_MSG_TIMEOUT_NOW_REPLY:
        return wire_put_u64(p, m->u.tn_reply.term);
    default: /* RAFT_MSG_INSTALL_SNAPSHOT_REPLY */
        p = wire_put_u64(p, m->u.is_reply.term);
        return wire_put_u64(p, m->u.is_reply.next_offset);
    }
}

static uint8_t *wire_put_request(uint8_t *p, const struct client_request *q)
{
    p = wire_put_u8(p, q->op);
    p = wire_put_u64(p, q->client_id);
    p = wire_put_u64(p, q->seq);
    p = wire_put_bytes(p, q->key, q->key_len);
    p = wire_put_bytes(p, q->value, q->value_len);
    if (q->op == CLIENT_CAS)
        return wire_put_bytes(p, q->expected, q->expected_len);
    if (!wire_is_member_change(q->op))
        return p;
    p = wire_put_u32(p, q->member_id);
    p = wire_put_bool(p, q->learner);
    return wire_put_u32(p, q->wait_ms);
}

static uint8_t *wire_put_reply(uint8_t *p, const struct client_reply *r)
{
    p = wire_put_u8(p, r->status);
    p = wire_put_u32(p, (uint32_t)r->leader_hint);
    p = wire_put_bytes(p, r->leader_addr, r->leader_addr_len);
    p = wire_put_bytes(p, r->value, r->value_len);
    p = wire_put_u32(p, r->id);
    p = wire_put_u8(p, r->role);
    p = wire_put_u64(p, r->term);
    p = wire_put_u32(p, (uint32_t)r->leader);
    p = wire_put_u64(p, r->commit);
    p = wire_put_u64(p, r->applied);
    return wire_put_u64(p, r->last_index);
}

/* A sender must not produce what a receiver would refuse. */
static int wire_check_limits(const struct wire_msg *msg)
{
    if (msg->type == WIRE_CLIENT_REQUEST &&
        (msg->u.request.key_len > CLIENT_MAX_KEY ||
         msg->u.request.value_len > CLIENT_MAX_VALUE ||
         msg->u.request.expected_len > CLIENT_MAX_VALUE))
        return -EMSGSIZE;
    if (msg->type == WIRE_CLIENT_REPLY &&
        (msg->u.reply.value_len > CLIENT_MAX_VALUE ||
         msg->u.reply.leader_addr_len > CLIENT_MAX_ADDR))
        return -EMSGSIZE;
    return 0;
}

/* Besides -EMSGSIZE: -EPROTO for an unknown type, -ENOSPC when cap is smaller
 * than wire_size(msg). */
long wire_encode(const struct wire_msg *msg, uint8_t *buf, size_t cap)
{
    if (!wire_known_type(msg->type))
        return -EPROTO;
    size_t size = wire_size(msg);
    if (size > WIRE_MAX_FRAME)
        return -EMSGSIZE;
    int rc = wire_check_limits(msg);
    if (rc < 0)
        return rc;
    if (cap < size)
        return -ENOSPC;

    uint8_t *p = wire_put_u32(buf, (uint32_t)(size - 4));
    p = wire_put_u8(p, WIRE_VERSION);
    p = wire_put_u8(p, msg->type);
    p = wire_put_u32(p, msg->from);
    if (msg->type == WIRE_CLIENT_REQUEST)
        p = wire_put_request(p, &msg->u.request);
    else if (msg->type == WIRE_CLIENT_REPLY)
        p = wire_put_reply(p, &msg->u.reply);
    else
        p = wire_put_u64(wire_put_raft(p, &msg->u.raft), msg->u.raft.id);
    return (long)(p - buf);
}

/* ---- decoding ---- */

long wire_frame_size(const uint8_t header[4])
{
    uint64_t total = (uint64_t)wire_be32(header) + 4;
    if (total < WIRE_HEADER)
        return -EBADMSG; /* too short to hold version, type and from */
    if (total > WIRE_MAX_FRAME)
        return -EMSGSIZE;
    return (long)total;
}

static int wire_get_entries(struct wire_reader *r,
                            struct raft_append_entries *ae)
{
    uint32_t n = wire_get_u32(r);
    if (r->err)
        return r->err;
    /* Refuse before allocating: n entries need at least n * 13 bytes. */
    if (n > r->left / WIRE_ENTRY_MIN)
        return -EBADMSG;
    if (n == 0)
        return 0;
    ae->entries = calloc(n, sizeof *ae->entries);
    if (ae->entries == NULL)
        return -ENOMEM;
    ae->n_entries = n;
    for (uint32_t i = 0; i < n && !r->err; i++) {
        struct raft_entry *e = &ae->entries[i];
        e->term = wire_get_u64(r);
        e->type = wire_get_u8(r);
        /* The frame bounds each entry; no separate per-entry maximum. */
        wire_get_bytes(r, UINT32_MAX, &e->len, &e->data);
    }
    return r->err;
}

static int wire_get_vote_flags(struct wire_reader *r, struct raft_request_vote *rv)
{
    uint8_t flags = wire_get_u8(r);
    if (r->err)
        return r->err;
    if (flags & ~(WIRE_VOTE_PRE_VOTE | WIRE_VOTE_TRANSFER))
        return -EBADMSG;
    rv->pre_vote = (flags & WIRE_VOTE_PRE_VOTE) != 0;
    rv->transfer = (flags & WIRE_VOTE_TRANSFER) != 0;
    return 0;
}

static int wire_get_raft(struct wire_reader *r, struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_REQUEST_VOTE:
        m->u.rv.term = wire_get_u64(r);
        m->u.rv.last_log_index = wire_get_u64(r);
        m->u.rv.last_log_term = wire_get_u64(r);
        return wire_get_vote_flags(r, &m->u.rv);
    case RAFT_MSG_REQUEST_VOTE_REPLY:
        m->u.rv_reply.term = wire_get_u64(r);
        m->u.rv_reply.vote_granted = wire_get_bool(r);
        m->u.rv_reply.pre_vote = wire_get_bool(r);
        return r->err;
    case RAFT_MSG_APPEND_ENTRIES:
        m->u.ae.term = wire_get_u64(r);
        m->u.ae.prev_log_index = wire_get_u64(r);
        m->u.ae.prev_log_term = wire_get_u64(r);
        m->u.ae.leader_commit = wire_get_u64(r);
        return wire_get_entries(r, &m->u.ae);
    case RAFT_MSG_APPEND_ENTRIES_REPLY:
        m->u.ae_reply.term = wire_get_u64(r);
        m->u.ae_reply.success = wire_get_bool(r);
        m->u.ae_reply.match_index = wire_get_u64(r);
        m->u.ae_reply.conflict_term = wire_get_u64(r);
        m->u.ae_reply.conflict_index = wire_get_u64(r);
        return r->err;
    case RAFT_MSG_INSTALL_SNAPSHOT:
        m->u.is.term = wire_get_u64(r);
        m->u.is.last_index = wire_get_u64(r);
        m->u.is.last_term = wire_get_u64(r);
        m->u.is.offset = wire_get_u64(r);
        m->u.is.total = wire_get_u64(r);
        wire_get_bytes(r, UINT32_MAX, &m->u.is.len, &m->u.is.data);
        m->u.is.done = wire_get_bool(r);
        return r->err;
    case RAFT_MSG_TIMEOUT_NOW:
        m->u.tn.term = wire_get_u64(r);
        return r->err;
    case RAFT_MSG_TIMEOUT_NOW_REPLY:
        m->u.tn_reply.term = wire_get_u64(r);
        return r->err;
    default: /* RAFT_MSG_INSTALL_SNAPSHOT_REPLY */
        m->u.is_reply.term = wire_get_u64(r);
        m->u.is_reply.next_offset = wire_get_u64(r);
        return r->err;
    }
}

static int wire_get_request(struct wire_reader *r, struct client_request *q)
{
    q->op = wire_get_u8(r);
    q->client_id = wire_get_u64(r);
    q->seq = wire_get_u64(r);
    wire_get_bytes(r, CLIENT_MAX_KEY, &q->key_len, &q->key);
    wire_get_bytes(r, CLIENT_MAX_VALUE, &q->value_len, &q->value);
    q->expected_len = 0;
    q->expected = NULL;
    if (q->op == CLIENT_CAS)
        wire_get_bytes(r, CLIENT_MAX_VALUE, &q->expected_len, &q->expected);
    q->member_id = 0;
    q->learner = 0;
    q->wait_ms = 0;
    if (wire_is_member_change(q->op)) {
        q->member_id = wire_get_u32(r);
        q->learner = wire_get_bool(r);
        q->wait_ms = wire_get_u32(r);
    }
    return r->err;
}

static int wire_get_reply(struct wire_reader *r, struct client_reply *c)
{
    c->status = wire_get_u8(r);
    c->leader_hint = (int32_t)wire_get_u32(r);
    wire_get_bytes(r, CLIENT_MAX_ADDR, &c->leader_addr_len, &c->leader_addr);
    wire_get_bytes(r, CLIENT_MAX_VALUE, &c->value_len, &c->value);
    c->id = wire_get_u32(r);
    c->role = wire_get_u8(r);
    c->term = wire_get_u64(r);
    c->leader = (int32_t)wire_get_u32(r);
    c->commit = wire_get_u64(r);
    c->applied = wire_get_u64(r);
    c->last_index = wire_get_u64(r);
    return r->err;
}

static int wire_get_body(struct wire_reader *r, struct wire_msg *msg)
{
    switch (msg->type) {
    case WIRE_CLIENT_REQUEST:
        return wire_get_request(r, &msg->u.request);
    case WIRE_CLIENT_REPLY:
        return wire_get_reply(r, &msg->u.reply);
    default:
        msg->u.raft.type = msg->type;
        msg->u.raft.from = msg->from;
        int rc = wire_get_raft(r, &msg->u.raft);
        if (rc)
            return rc;
        msg->u.raft.id = wire_get_u64(r);
        return r->err;
    }
}

int wire_decode(const uint8_t *buf, size_t len, struct wire_msg *msg)
{
    /* Zeroed first so that wire_msg_release() is safe after any failure. */
    memset(msg, 0, sizeof *msg);
    if (len < 4)
        return -EBADMSG;
    long size = wire_frame_size(buf);
    if (size < 0)
        return (int)size;
    if ((size_t)size != len)
        return -EBADMSG; /* truncated, or bytes after the frame */
    if (buf[4] != WIRE_VERSION)
        return -EPROTO;
    if (!wire_known_type(buf[5]))
        return -EPROTO;
    msg->type = buf[5];
    msg->from = wire_be32(buf + 6);

    struct wire_reader r = { .p = buf + WIRE_HEADER, .left = len - WIRE_HEADER };
    int rc = wire_get_body(&r, msg);
    if (rc == 0 && r.left != 0)
        rc = -EBADMSG; /* trailing bytes after the last field */
    if (rc < 0)
        wire_msg_release(msg);
    return rc;
}

/* Only for messages filled in by wire_decode(): frees the entries array. */
void wire_msg_release(struct wire_msg *msg)
{
    if (msg->type != RAFT_MSG_APPEND_ENTRIES)
        return;
    free(msg->u.raft.u.ae.entries);
    msg->u.raft.u.ae.entries = NULL;
    msg->u.raft.u.ae.n_entries = 0;
}

void wire_from_raft(struct wire_msg *w, const struct raft_msg *m)
{
    memset(w, 0, sizeof *w);
    w->type = m->type;
    w->from = m->from;
    w->u.raft = *m;
}
