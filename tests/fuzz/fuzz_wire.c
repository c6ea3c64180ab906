/*
 * fuzz_wire.c - libFuzzer target for the frame decoder (net/wire.c).
 *
 * What a peer or a client sends us is arbitrary bytes; the decoder must
 * treat them as such: a bad frame costs only its connection. For every input:
 *
 *   1. wire_frame_size() on the first four bytes either refuses them or
 *      names a size between WIRE_HEADER and WIRE_MAX_FRAME;
 *   2. wire_decode() either fails with one of its documented errors, or
 *      succeeds; it never reads outside the buffer (ASan) and never leaks
 *      (LSan, after wire_msg_release());
 *   3. anything that decodes re-encodes to exactly the same bytes (the
 *      encoding is canonical: fixed-width fields, booleans 0 or 1, no
 *      trailing bytes), and decoding those bytes gives the same message,
 *      field by field;
 *   4. a client reply's value that decodes as a configuration (the value
 *      of a status or member list reply, net/wire_members.c) re-encodes to
 *      the same bytes, within WIRE_MEMBERS_MAX.
 *
 * A violated property aborts with a line saying which, so that libFuzzer
 * saves the input as a crash-* file.
 *
 * Build and run: tests/fuzz/run.sh (make fuzz).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/wire.h"

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_wire: property violated: %s\n", what);
    abort();
}

static bool bytes_equal(const uint8_t *a, uint32_t a_len, const uint8_t *b, uint32_t b_len)
{
    return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

static bool raft_equal(const struct raft_msg *a, const struct raft_msg *b)
{
    if (a->type != b->type || a->from != b->from || a->id != b->id)
        return false;
    switch (a->type) {
    case RAFT_MSG_REQUEST_VOTE:
        return a->u.rv.term == b->u.rv.term &&
               a->u.rv.last_log_index == b->u.rv.last_log_index &&
               a->u.rv.last_log_term == b->u.rv.last_log_term &&
               a->u.rv.pre_vote == b->u.rv.pre_vote && a->u.rv.transfer == b->u.rv.transfer;
    case RAFT_MSG_REQUEST_VOTE_REPLY:
        return a->u.rv_reply.term == b->u.rv_reply.term &&
               a->u.rv_reply.vote_granted == b->u.rv_reply.vote_granted &&
               a->u.rv_reply.pre_vote == b->u.rv_reply.pre_vote;
    case RAFT_MSG_APPEND_ENTRIES: {
        const struct raft_append_entries *x = &a->u.ae, *y = &b->u.ae;
        if (x->term != y->term || x->prev_log_index != y->prev_log_index ||
            x->prev_log_term != y->prev_log_term || x->leader_commit != y->leader_commit ||
            x->n_entries != y->n_entries)
            return false;
        for (uint32_t i = 0; i < x->n_entries; i++) {
            const struct raft_entry *e = &x->entries[i], *f = &y->entries[i];
            if (e->term != f->term || e->type != f->type ||
                !bytes_equal(e->data, e->len, f->data, f->len))
                return false;
        }
        return true;
    }
    case RAFT_MSG_APPEND_ENTRIES_REPLY:
        return a->u.ae_reply.term == b->u.ae_reply.term &&
               a->u.ae_reply.success == b->u.ae_reply.success &&
               a->u.ae_reply.match_index == b->u.ae_reply.match_index &&
               a->u.ae_reply.conflict_term == b->u.ae_reply.conflict_term &&
               a->u.ae_reply.conflict_index == b->u.ae_reply.conflict_index;
    case RAFT_MSG_INSTALL_SNAPSHOT:
        return a->u.is.term == b->u.is.term && a->u.is.last_index == b->u.is.last_index &&
               a->u.is.last_term == b->u.is.last_term && a->u.is.offset == b->u.is.offset &&
               a->u.is.total == b->u.is.total && a->u.is.done == b->u.is.done &&
               bytes_equal(a->u.is.data, a->u.is.len, b->u.is.data, b->u.is.len);
    case RAFT_MSG_INSTALL_SNAPSHOT_REPLY:
        return a->u.is_reply.term == b->u.is_reply.term &&
               a->u.is_reply.next_offset == b->u.is_reply.next_offset;
    case RAFT_MSG_TIMEOUT_NOW:
        return a->u.tn.term == b->u.tn.term;
    case RAFT_MSG_TIMEOUT_NOW_REPLY:
        return a->u.tn_reply.term == b->u.tn_reply.term;
    default:
        return false;
    }
}

static bool msg_equal(const struct wire_msg *a, const struct wire_msg *b)
{
    if (a->type != b->type || a->from != b->from)
        return false;
    if (a->type == WIRE_CLIENT_REQUEST) {
        const struct client_request *x = &a->u.request, *y = &b->u.request;
        return x->op == y->op && x->client_id == y->client_id && x->seq == y->seq &&
               bytes_equal(x->key, x->key_len, y->key, y->key_len) &&
               bytes_equal(x->value, x->value_len, y->value, y->value_len) &&
               bytes_equal(x->expected, x->expected_len, y->expected, y->expected_len) &&
               x->member_id == y->member_id && x->learner == y->learner &&
               x->wait_ms == y->wait_ms;
    }
    if (a->type == WIRE_CLIENT_REPLY) {
        const struct client_reply *x = &a->u.reply, *y = &b->u.reply;
        return x->status == y->status && x->leader_hint == y->leader_hint &&
               bytes_equal(x->leader_addr, x->leader_addr_len, y->leader_addr,
                           y->leader_addr_len) &&
               bytes_equal(x->value, x->value_len, y->value, y->value_len) && x->id == y->id &&
               x->role == y->role && x->term == y->term && x->leader == y->leader &&
               x->commit == y->commit && x->applied == y->applied &&
               x->last_index == y->last_index;
    }
    return raft_equal(&a->u.raft, &b->u.raft);
}

/* The decoder's limits, checked on what it accepted. */
static void check_limits(const struct wire_msg *m)
{
    if (m->type == WIRE_CLIENT_REQUEST &&
        (m->u.request.key_len > CLIENT_MAX_KEY || m->u.request.value_len > CLIENT_MAX_VALUE))
        fail("a client request over the key or value limit was accepted");
    if (m->type == WIRE_CLIENT_REPLY &&
        (m->u.reply.value_len > CLIENT_MAX_VALUE ||
         m->u.reply.leader_addr_len > CLIENT_MAX_ADDR))
        fail("a client reply over the value or address limit was accepted");
    if (m->type != WIRE_CLIENT_REQUEST && m->type != WIRE_CLIENT_REPLY &&
        (m->u.raft.type != m->type || m->u.raft.from != m->from))
        fail("the Raft message does not carry the frame's type and sender");
}

/* Property 4, on a reply's value. */
static void check_members_value(const struct wire_msg *m)
{
    struct raft_membership_view v;
    if (m->type != WIRE_CLIENT_REPLY ||
        wire_members_decode(&v, m->u.reply.value, m->u.reply.value_len) != 0)
        return;
    if (v.config.n > RAFT_MAX_NODES)
        fail("a configuration of more than RAFT_MAX_NODES members was accepted");
    uint8_t again[WIRE_MEMBERS_MAX];
    size_t n = wire_members_encode(&v, again);
    if (n != m->u.reply.value_len || memcmp(again, m->u.reply.value, n) != 0)
        fail("re-encoding a decoded configuration gave different bytes");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 4) {
        long fs = wire_frame_size(data);
        if (fs >= 0 && (fs < WIRE_HEADER || fs > (long)WIRE_MAX_FRAME))
            fail("wire_frame_size returned a size outside [WIRE_HEADER, WIRE_MAX_FRAME]");
        if (fs < 0 && fs != -EBADMSG && fs != -EMSGSIZE)
            fail("wire_frame_size returned an undocumented error");
    }

    struct wire_msg m;
    int rc = wire_decode(data, size, &m);
    if (rc != 0) {
        if (rc != -EBADMSG && rc != -EMSGSIZE && rc != -EPROTO && rc != -ENOMEM)
            fail("wire_decode returned an undocumented error");
        wire_msg_release(&m); /* documented as safe after any failure */
        return 0;
    }
    check_limits(&m);
    check_members_value(&m);

    size_t n = wire_size(&m);
    if (n != size)
        fail("wire_size of a decoded frame differs from the frame's size");
    uint8_t *buf = malloc(n);
    if (!buf)
        abort();
    long w = wire_encode(&m, buf, n);
    if (w < 0 || (size_t)w != n)
        fail("a decoded frame did not re-encode");
    if (memcmp(buf, data, n) != 0)
        fail("re-encoding a decoded frame gave different bytes");
    struct wire_msg again;
    if (wire_decode(buf, n, &again) != 0)
        fail("a re-encoded frame did not decode");
    if (!msg_equal(&m, &again))
        fail("a re-encoded frame decoded to a different message");
    wire_msg_release(&again);
    wire_msg_release(&m);
    free(buf);
    return 0;
}
