/*
 * unit_wire.c - the frame encoder and decoder (net/wire.c).
 *
 * Every message type must survive a round trip field for field, and the
 * decoder must refuse every malformed frame with the documented error, never
 * reading outside the buffer: each frame given to the decoder is copied into
 * a heap block of exactly its length, so that under ASan one byte too far is
 * a crash.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/wire.h"

/* ---- helpers ---- */

static uint8_t *encode_new(const struct wire_msg *m, size_t *size)
{
    *size = wire_size(m);
    assert_true(*size >= WIRE_HEADER);
    uint8_t *buf = malloc(*size);
    assert_non_null(buf);
    assert_int_equal(wire_encode(m, buf, *size), (long)*size);
    return buf;
}

/* Decodes a copy of exactly len bytes so that ASan sees any over-read. */
static int decode_exact(const uint8_t *frame, size_t len, struct wire_msg *out)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    if (len > 0)
        memcpy(copy, frame, len);
    int rc = wire_decode(copy, len, out);
    /* Pointers into the copy are dead after this; the callers that need them
     * decode the original buffer instead. */
    wire_msg_release(out);
    free(copy);
    return rc;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void set_length(uint8_t *frame, size_t total)
{
    put32(frame, (uint32_t)(total - 4));
}

/* Every prefix of a valid frame is refused: as given (the length field then
 * claims more than is present), and with the length field rewritten to match
 * the prefix (so that the body parser itself meets the missing bytes). */
static void check_every_truncation(const uint8_t *frame, size_t size)
{
    struct wire_msg out;
    uint8_t *copy = malloc(size);
    assert_non_null(copy);
    for (size_t len = 0; len < size; len++) {
        assert_int_equal(decode_exact(frame, len, &out), -EBADMSG);
        if (len < 4)
            continue;
        memcpy(copy, frame, len);
        set_length(copy, len);
        assert_int_equal(decode_exact(copy, len, &out), -EBADMSG);
    }
    free(copy);
}

static void check_raft_roundtrip(const struct raft_msg *m, struct wire_msg *out,
                                 uint8_t **frame)
{
    struct wire_msg w;
    size_t size;
    wire_from_raft(&w, m);
    *frame = encode_new(&w, &size);
    assert_int_equal(wire_decode(*frame, size, out), 0);
    assert_int_equal(out->type, m->type);
    assert_int_equal(out->from, m->from);
    assert_int_equal(out->u.raft.type, m->type);
    assert_int_equal(out->u.raft.from, m->from);
    assert_true(out->u.raft.id == m->id);
    check_every_truncation(*frame, size);
}

/* The message id travels last, big-endian, after the message's own fields. */
static void test_message_id_ends_the_frame(void **state)
{
    (void)state;
    struct raft_msg m = { .type = RAFT_MSG_TIMEOUT_NOW, .from = 3,
                          .id = 0x1122334455667788ull };
    m.u.tn.term = 2;
    struct wire_msg w, out;
    wire_from_raft(&w, &m);
    size_t size;
    uint8_t *frame = encode_new(&w, &size);
    assert_int_equal(size, WIRE_HEADER + 8 + 8);
    static const uint8_t id[8] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88 };
    assert_memory_equal(frame + size - 8, id, 8);
    assert_int_equal(wire_decode(frame, size, &out), 0);
    assert_true(out.u.raft.id == m.id);
    free(frame);
}

/* ---- round trips ---- */

static void test_request_vote_roundtrip(void **state)
{
    (void)state;
    struct raft_msg m = { .type = RAFT_MSG_REQUEST_VOTE, .from = 2, .id = 9001 };
    m.u.rv = (struct raft_request_vote){ .term = 0x0102030405060708ull,
                                         .last_log_index = 77,
                                         .last_log_term = UINT64_MAX,
                                         .pre_vote = 1 };
    struct wire_msg out;
    uint8_t *frame;
    check_raft_roundtrip(&m, &out, &frame);
    assert_true(out.u.raft.u.rv.term == m.u.rv.term);
    assert_true(out.u.raft.u.rv.last_log_index == 77);
    assert_true(out.u.raft.u.rv.last_log_term == UINT64_MAX);
    assert_int_equal(out.u.raft.u.rv.pre_vote, 1);
    free(frame);
}

/* The flags byte: pre_vote was a boolean before the transfer flag, so 0
 * and 1 decode as before; 2 is the transfer flag; unknown bits refused. */
static void test_request_vote_flags(void **state)
{
    (void)state;
    struct raft_msg m = { .type = RAFT_MSG_REQUEST_VOTE, .from = 1 };
    m.u.rv.term = 4;
    m.u.rv.transfer = 1;
    struct wire_msg w, out;
    wire_from_raft(&w, &m);
    size_t size;
    uint8_t *frame = encode_new(&w, &size);
    size_t at = WIRE_HEADER + 3 * 8;
    assert_int_equal(frame[at], 2);
    assert_int_equal(wire_decode(frame, size, &out), 0);
    assert_int_equal(out.u.raft.u.rv.transfer, 1);
    assert_int_equal(out.u.raft.u.rv.pre_vote, 0);
    frame[at] = 1;
    assert_int_equal(wire_decode(frame, size, &out), 0);
    assert_int_equal(out.u.raft.u.rv.transfer, 0);
    assert_int_equal(out.u.raft.u.rv.pre_vote, 1);
    static const uint8_t bad[] = { 4, 0x80, 0xff };
    for (size_t i = 0; i < sizeof bad; i++) {
        frame[at] = bad[i];
        assert_int_equal(decode_exact(frame, size, &out), -EBADMSG);
    }
    free(frame);
}

static void test_timeout_now_roundtrip(void **state)
{
    (void)state;
    struct raft_msg m = { .type = RAFT_MSG_TIMEOUT_NOW, .from = 0 };
    m.u.tn.term = 0x1122334455667788ull;
    struct wire_msg out;
    uint8_t *frame;
    check_raft_roundtrip(&m, &out, &frame);
    assert_true(out.u.raft.u.tn.term == m.u.tn.term);
    free(frame);
    m = (struct raft_msg){ .type = RAFT_MSG_TIMEOUT_NOW_REPLY, .from = 2 };
    m.u.tn_reply.term = 12;
    check_raft_roundtrip(&m, &out, &frame);
    assert_true(out.u.raft.u.tn_reply.term == 12);
    free(frame);
}

static void test_request_vote_reply_roundtrip(void **state)
{
    (void)state;
    struct raft_msg m = { .type = RAFT_MSG_REQUEST_VOTE_REPLY, .from = 0 };
    m.u.rv_reply = (struct raft_request_vote_reply){ .term = 9,
                                                     .vote_granted = 1,
                                                     .pre_vote = 0 };
    struct wire_msg out;
    uint8_t *frame;
    check_raft_roundtrip(&m, &out, &frame);
    assert_true(out.u.raft.u.rv_reply.term == 9);
    assert_int_equal(out.u.raft.u.rv_reply.vote_granted, 1);
    assert_int_equal(out.u.raft.u.rv_reply.pre_vote, 0);
    free(frame);
}

static void fill_entries(struct raft_entry *e, uint32_t n, uint8_t *pool)
{
    for (uint32_t i = 0; i < n; i++) {
        e[i].term = 100 + i;
        e[i].type = i % 3 == 0 ? RAFT_ENTRY_NOOP : RAFT_ENTRY_COMMAND;
        e[i].len = i % 3 == 0 ? 0 : i % 17 + 1;
        e[i].data = e[i].len > 0 ? pool + i : NULL;
    }
}

static void check_append_entries(uint32_t n)
{
    uint8_t pool[256];
    for (size_t i = 0; i < sizeof pool; i++)
        pool[i] = (uint8_t)(i * 7 + 1);
    struct raft_entry *entries = calloc(n > 0 ? n : 1, sizeof *entries);
    assert_non_null(entries);
    fill_entries(entries, n, pool);

    struct raft_msg m = { .type = RAFT_MSG_APPEND_ENTRIES, .from = 1 };
    m.u.ae = (struct raft_append_entries){ .term = 5, .prev_log_index = 10,
                                           .prev_log_term = 4,
                                           .leader_commit = 9,
                                           .n_entries = n,
                                           .entries = n > 0 ? entries : NULL };
    struct wire_msg out;
    uint8_t *frame;
    check_raft_roundtrip(&m, &out, &frame);
    const struct raft_append_entries *ae = &out.u.raft.u.ae;
    assert_true(ae->term == 5 && ae->prev_log_index == 10);
    assert_true(ae->prev_log_term == 4 && ae->leader_commit == 9);
    assert_int_equal(ae->n_entries, n);
    if (n == 0)
        assert_null(ae->entries);
    for (uint32_t i = 0; i < n; i++) {
        assert_true(ae->entries[i].term == entries[i].term);
        assert_int_equal(ae->entries[i].type, entries[i].type);
        assert_int_equal(ae->entries[i].len, entries[i].len);
        if (entries[i].len == 0) {
            assert_null(ae->entries[i].data);
            continue;
        }
        /* Zero copy: the data points into the frame itself. */
        assert_true(ae->entries[i].data > frame);
        assert_memory_equal(ae->entries[i].data, entries[i].data,
                            entries[i].len);
    }
    wire_msg_release(&out);
    assert_null(out.u.raft.u.ae.entries);
    free(frame);
    free(entries);
}

static void test_append_entries_roundtrip_none(void **state)
{
    (void)state;
    check_append_entries(0);
}

static void test_append_entries_roundtrip_one(void **state)
{
    (void)state;
    check_append_entries(1);
}

static void test_append_entries_roundtrip_many(void **state)
{
    (void)state;
    check_append_entries(100);
}

static void test_append_entries_reply_roundtrip(void **state)
{
    (void)state;
    struct raft_msg m = { .type = RAFT_MSG_APPEND_ENTRIES_REPLY, .from = 8 };
    m.u.ae_reply = (struct raft_append_entries_reply){ .term = 3,
                                                       .success = 0,
                                                       .match_index = 1,
                                                       .conflict_term = 2,
                                                       .conflict_index = 40 };
    struct wire_msg out;
    uint8_t *frame;
    check_raft_roundtrip(&m, &out, &frame);
    const struct raft_append_entries_reply *r = &out.u.raft.u.ae_reply;
    assert_true(r->term == 3 && r->success == 0 && r->match_index == 1);
    assert_true(r->conflict_term == 2 && r->conflict_index == 40);
    free(frame);
}

static void test_install_snapshot_roundtrip(void **state)
{
    (void)state;
    uint8_t data[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i ^ 0x5a);
    struct raft_msg m = { .type = RAFT_MSG_INSTALL_SNAPSHOT, .from = 3 };
    m.u.is = (struct raft_install_snapshot){ .term = 6, .last_index = 500,
                                             .last_term = 5, .offset = 4096,
                                             .total = 10000,
                                             .len = sizeof data, .data = data,
                                             .done = 1 };
    struct wire_msg out;
    uint8_t *frame;
    check_raft_roundtrip(&m, &out, &frame);
    const struct raft_install_snapshot *is = &out.u.raft.u.is;
    assert_true(is->term == 6 && is->last_index == 500 && is->last_term == 5);
    assert_true(is->offset == 4096 && is->total == 10000 && is->done == 1);
    assert_int_equal(is->len, sizeof data);
    assert_memory_equal(is->data, data, sizeof data);
    free(frame);
}

static void test_install_snapshot_reply_roundtrip(void **state)
{
    (void)state;
    struct raft_msg m = { .type = RAFT_MSG_INSTALL_SNAPSHOT_REPLY, .from = 1 };
    m.u.is_reply = (struct raft_install_snapshot_reply){ .term = 6,
                                                         .next_offset = 8192 };
    struct wire_msg out;
    uint8_t *frame;
    check_raft_roundtrip(&m, &out, &frame);
    assert_true(out.u.raft.u.is_reply.term == 6);
    assert_true(out.u.raft.u.is_reply.next_offset == 8192);
    free(frame);
}

static void check_client_request(uint8_t op, const char *key, const char *value)
{
    struct wire_msg m = { .type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT };
    m.u.request = (struct client_request){
        .op = op, .client_id = 0xabcdef0123ull, .seq = 42,
        .key_len = key ? (uint32_t)strlen(key) : 0, .key = (uint8_t *)key,
        .value_len = value ? (uint32_t)strlen(value) : 0,
        .value = (uint8_t *)value };
    size_t size;
    uint8_t *frame = encode_new(&m, &size);
    struct wire_msg out;
    assert_int_equal(wire_decode(frame, size, &out), 0);
    assert_int_equal(out.type, WIRE_CLIENT_REQUEST);
    assert_true(out.from == WIRE_FROM_CLIENT);
    const struct client_request *q = &out.u.request;
    assert_int_equal(q->op, op);
    assert_true(q->client_id == 0xabcdef0123ull && q->seq == 42);
    assert_int_equal(q->key_len, m.u.request.key_len);
    assert_int_equal(q->value_len, m.u.request.value_len);
    if (key)
        assert_memory_equal(q->key, key, q->key_len);
    else
        assert_null(q->key);
    if (value)
        assert_memory_equal(q->value, value, q->value_len);
    else
        assert_null(q->value);
    check_every_truncation(frame, size);
    free(frame);
}

static void test_client_request_roundtrip(void **state)
{
    (void)state;
    check_client_request(CLIENT_PUT, "colour", "blue");
    check_client_request(CLIENT_GET, "colour", NULL);
    check_client_request(CLIENT_STATUS, NULL, NULL);
}

/* Only a cas carries `expected`, after its value; other ops do not. */
static void test_cas_request_carries_expected(void **state)
{
    (void)state;
    struct wire_msg m = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT};
    m.u.request = (struct client_request){
        .op = CLIENT_CAS, .client_id = 9, .seq = 4, .key_len = 4, .key = (uint8_t *)"lock",
        .value_len = 4, .value = (uint8_t *)"mine", .expected_len = 4,
        .expected = (uint8_t *)"free"};
    size_t size;
    uint8_t *frame = encode_new(&m, &size);
    struct wire_msg out;
    assert_int_equal(wire_decode(frame, size, &out), 0);
    assert_int_equal(out.u.request.op, CLIENT_CAS);
    assert_int_equal(out.u.request.expected_len, 4);
    assert_memory_equal(out.u.request.expected, "free", 4);
    assert_memory_equal(out.u.request.value, "mine", 4);
    wire_msg_release(&out);
    free(frame);
    m.u.request.op = CLIENT_PUT; /* the same fields, but a put has no expected */
    frame = encode_new(&m, &size);
    assert_int_equal(wire_decode(frame, size, &out), 0);
    assert_int_equal(out.u.request.expected_len, 0);
    assert_null(out.u.request.expected);
    wire_msg_release(&out);
    free(frame);
}

static void test_client_reply_roundtrip(void **state)
{
    (void)state;
    static const char value[] = "the value";
    struct wire_msg m = { .type = WIRE_CLIENT_REPLY, .from = 2 };
    m.u.reply = (struct client_reply){
        .status = CLIENT_NOT_LEADER, .leader_hint = RAFT_NO_NODE,
        .leader_addr_len = 14, .leader_addr = (uint8_t *)"127.0.0.1:8001",
        .value_len = sizeof value - 1, .value = (uint8_t *)value, .id = 2,
        .role = RAFT_LEADER, .term = 12, .leader = -1, .commit = 99,
        .applied = 98, .last_index = 100 };
    size_t size;
    uint8_t *frame = encode_new(&m, &size);
    struct wire_msg out;
    assert_int_equal(wire_decode(frame, size, &out), 0);
    const struct client_reply *r = &out.u.reply;
    assert_int_equal(out.type, WIRE_CLIENT_REPLY);
    assert_int_equal(out.from, 2);
    assert_int_equal(r->status, CLIENT_NOT_LEADER);
    assert_int_equal(r->leader_hint, RAFT_NO_NODE);
    assert_int_equal(r->leader_addr_len, 14);
    assert_memory_equal(r->leader_addr, "127.0.0.1:8001", 14);
    assert_int_equal(r->value_len, sizeof value - 1);
    assert_memory_equal(r->value, value, sizeof value - 1);
    assert_int_equal(r->id, 2);
    assert_int_equal(r->role, RAFT_LEADER);
    assert_true(r->term == 12 && r->commit == 99);
    assert_true(r->applied == 98 && r->last_index == 100);
    assert_int_equal(r->leader, -1);
    check_every_truncation(frame, size);
    free(frame);
}

/* ---- rejections ---- */

static uint8_t *request_vote_frame(size_t *size)
{
    struct raft_msg m = { .type = RAFT_MSG_REQUEST_VOTE, .from = 1 };
    m.u.rv.term = 3;
    struct wire_msg w;
    wire_from_raft(&w, &m);
    return encode_new(&w, size);
}

static void test_length_beyond_bytes_present_is_refused(void **state)
{
    (void)state;
    size_t size;
    uint8_t *frame = request_vote_frame(&size);
    struct wire_msg out;
    set_length(frame, size + 1);
    assert_int_equal(decode_exact(frame, size, &out), -EBADMSG);
    put32(frame, UINT32_MAX);
    assert_int_equal(decode_exact(frame, size, &out), -EMSGSIZE);
    free(frame);
}

static void test_frame_size_limits(void **state)
{
    (void)state;
    uint8_t h[4];
    put32(h, WIRE_HEADER - 4);
    assert_int_equal(wire_frame_size(h), WIRE_HEADER);
    put32(h, WIRE_HEADER - 5);
    assert_int_equal(wire_frame_size(h), -EBADMSG);
    put32(h, 0);
    assert_int_equal(wire_frame_size(h), -EBADMSG);
    put32(h, WIRE_MAX_FRAME - 4);
    assert_int_equal(wire_frame_size(h), WIRE_MAX_FRAME);
    put32(h, WIRE_MAX_FRAME - 3);
    assert_int_equal(wire_frame_size(h), -EMSGSIZE);
    put32(h, UINT32_MAX);
    assert_int_equal(wire_frame_size(h), -EMSGSIZE);
}

static void test_frame_over_max_is_refused(void **state)
{
    (void)state;
    /* A frame really WIRE_MAX_FRAME + 1 bytes long, consistent otherwise. */
    size_t size = WIRE_MAX_FRAME + 1;
    uint8_t *frame = calloc(1, size);
    assert_non_null(frame);
    set_length(frame, size);
    frame[4] = WIRE_VERSION;
    frame[5] = RAFT_MSG_INSTALL_SNAPSHOT;
    struct wire_msg out;
    assert_int_equal(wire_decode(frame, size, &out), -EMSGSIZE);
    free(frame);

    /* And the encoder will not build one. */
    static uint8_t big[WIRE_MAX_FRAME];
    struct raft_msg m = { .type = RAFT_MSG_INSTALL_SNAPSHOT };
    m.u.is.len = sizeof big;
    m.u.is.data = big;
    struct wire_msg w;
    wire_from_raft(&w, &m);
    assert_true(wire_size(&w) > WIRE_MAX_FRAME);
    uint8_t small[64];
    assert_int_equal(wire_encode(&w, small, sizeof small), -EMSGSIZE);
}

static void test_unknown_version_is_refused(void **state)
{
    (void)state;
    size_t size;
    uint8_t *frame = request_vote_frame(&size);
    struct wire_msg out;
    frame[4] = 0;
    assert_int_equal(decode_exact(frame, size, &out), -EPROTO);
    frame[4] = WIRE_VERSION + 1;
    assert_int_equal(decode_exact(frame, size, &out), -EPROTO);
    free(frame);
}

static void test_unknown_type_is_refused(void **state)
{
    (void)state;
    static const uint8_t bad[] = { 0, 9, 15, 18, 255 };
    size_t size;
    uint8_t *frame = request_vote_frame(&size);
    struct wire_msg out;
    for (size_t i = 0; i < sizeof bad; i++) {
        frame[5] = bad[i];
        assert_int_equal(decode_exact(frame, size, &out), -EPROTO);
    }
    free(frame);

    struct wire_msg w = { .type = 9 };
    uint8_t buf[64];
    assert_int_equal(wire_size(&w), 0);
    assert_int_equal(wire_encode(&w, buf, sizeof buf), -EPROTO);
}

static void test_trailing_bytes_are_refused(void **state)
{
    (void)state;
    size_t size;
    uint8_t *frame = request_vote_frame(&size);
    uint8_t *longer = calloc(1, size + 1);
    assert_non_null(longer);
    memcpy(longer, frame, size);
    struct wire_msg out;
    /* Past the end of the frame its length field describes... */
    assert_int_equal(decode_exact(longer, size + 1, &out), -EBADMSG);
    /* ...and inside the frame, after the last field of the body. */
    set_length(longer, size + 1);
    assert_int_equal(decode_exact(longer, size + 1, &out), -EBADMSG);
    free(longer);
    free(frame);
}

static void test_encode_into_small_buffer_is_refused(void **state)
{
    (void)state;
    size_t size;
    uint8_t *frame = request_vote_frame(&size);
    struct raft_msg m = { .type = RAFT_MSG_REQUEST_VOTE };
    struct wire_msg w;
    wire_from_raft(&w, &m);
    assert_int_equal(wire_encode(&w, frame, size - 1), -ENOSPC);
    free(frame);
}

/* An AppendEntries whose entry count promises more entries than its bytes can
 * hold is refused before the array is allocated. */
static void test_entry_count_beyond_bytes_is_refused(void **state)
{
    (void)state;
    struct raft_entry e = { .term = 1, .type = RAFT_ENTRY_NOOP };
    struct raft_msg m = { .type = RAFT_MSG_APPEND_ENTRIES };
    m.u.ae.n_entries = 1;
    m.u.ae.entries = &e;
    struct wire_msg w, out;
    wire_from_raft(&w, &m);
    size_t size;
    uint8_t *frame = encode_new(&w, &size);
    const size_t count_at = WIRE_HEADER + 4 * 8;
    static const uint32_t counts[] = { 2, 1000, 0x7fffffff, UINT32_MAX };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        put32(frame + count_at, counts[i]);
        assert_int_equal(decode_exact(frame, size, &out), -EBADMSG);
    }
    free(frame);
}

/* Builds a client request frame by hand, since the encoder refuses to. */
static uint8_t *oversized_request(uint32_t key_len, uint32_t value_len,
                                  size_t *size)
{
    *size = WIRE_HEADER + 1 + 8 + 8 + 4 + (size_t)key_len + 4 + value_len;
    uint8_t *f = calloc(1, *size);
    assert_non_null(f);
    set_length(f, *size);
    f[4] = WIRE_VERSION;
    f[5] = WIRE_CLIENT_REQUEST;
    put32(f + 6, WIRE_FROM_CLIENT);
    uint8_t *p = f + WIRE_HEADER;
    p[0] = CLIENT_PUT;
    p += 1 + 8 + 8;
    put32(p, key_len);
    put32(p + 4 + key_len, value_len);
    return f;
}

static void test_key_and_value_over_max_are_refused(void **state)
{
    (void)state;
    struct wire_msg out;
    size_t size;
    uint8_t *f = oversized_request(CLIENT_MAX_KEY, CLIENT_MAX_VALUE, &size);
    assert_int_equal(decode_exact(f, size, &out), 0); /* the limits are fine */
    free(f);
    f = oversized_request(CLIENT_MAX_KEY + 1, 0, &size);
    assert_int_equal(decode_exact(f, size, &out), -EMSGSIZE);
    free(f);
    f = oversized_request(1, CLIENT_MAX_VALUE + 1, &size);
    assert_int_equal(decode_exact(f, size, &out), -EMSGSIZE);
    free(f);

    /* A reply's value has the same limit: its length field follows status,
     * leader_hint and an empty leader_addr. */
    static uint8_t value[CLIENT_MAX_VALUE + 1];
    struct wire_msg w = { .type = WIRE_CLIENT_REPLY };
    w.u.reply.value_len = CLIENT_MAX_VALUE;
    w.u.reply.value = value;
    uint8_t *frame = encode_new(&w, &size);
    uint8_t *longer = calloc(1, size + 1);
    assert_non_null(longer);
    const size_t len_at = WIRE_HEADER + 1 + 4 + 4;
    memcpy(longer, frame, len_at + 4 + CLIENT_MAX_VALUE);
    memcpy(longer + len_at + 4 + CLIENT_MAX_VALUE + 1,
           frame + len_at + 4 + CLIENT_MAX_VALUE,
           size - (len_at + 4 + CLIENT_MAX_VALUE));
    put32(longer + len_at, CLIENT_MAX_VALUE + 1);
    set_length(longer, size + 1);
    assert_int_equal(decode_exact(longer, size + 1, &out), -EMSGSIZE);
    free(longer);
    free(frame);

    /* The encoder refuses them too. */
    uint8_t buf[64];
    struct wire_msg q = { .type = WIRE_CLIENT_REQUEST };
    q.u.request.key_len = CLIENT_MAX_KEY + 1;
    q.u.request.key = value;
    assert_int_equal(wire_encode(&q, buf, sizeof buf), -EMSGSIZE);
    w.u.reply.value_len = CLIENT_MAX_VALUE + 1;
    assert_int_equal(wire_encode(&w, buf, sizeof buf), -EMSGSIZE);
}

static void check_bool_at(const struct raft_msg *m, size_t offset)
{
    struct wire_msg w, out;
    wire_from_raft(&w, m);
    size_t size;
    uint8_t *frame = encode_new(&w, &size);
    assert_true(offset < size);
    assert_true(frame[offset] <= 1);
    static const uint8_t bad[] = { 2, 0x80, 0xff };
    for (size_t i = 0; i < sizeof bad; i++) {
        frame[offset] = bad[i];
        assert_int_equal(decode_exact(frame, size, &out), -EBADMSG);
    }
    free(frame);
}

static void test_booleans_other_than_0_or_1_are_refused(void **state)
{
    (void)state;
    struct raft_msg m = { .type = RAFT_MSG_REQUEST_VOTE_REPLY };
    check_bool_at(&m, WIRE_HEADER + 8);     /* vote_granted */
    check_bool_at(&m, WIRE_HEADER + 8 + 1); /* pre_vote */
    m = (struct raft_msg){ .type = RAFT_MSG_APPEND_ENTRIES_REPLY };
    check_bool_at(&m, WIRE_HEADER + 8); /* success */
    m = (struct raft_msg){ .type = RAFT_MSG_INSTALL_SNAPSHOT };
    check_bool_at(&m, WIRE_HEADER + 5 * 8 + 4); /* done, after empty data */
}

static void test_encoder_sends_booleans_as_0_or_1(void **state)
{
    (void)state;
    struct raft_msg m = { .type = RAFT_MSG_REQUEST_VOTE_REPLY };
    m.u.rv_reply.vote_granted = 7;
    struct wire_msg w, out;
    wire_from_raft(&w, &m);
    size_t size;
    uint8_t *frame = encode_new(&w, &size);
    assert_int_equal(wire_decode(frame, size, &out), 0);
    assert_int_equal(out.u.raft.u.rv_reply.vote_granted, 1);
    free(frame);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_vote_roundtrip),
        cmocka_unit_test(test_message_id_ends_the_frame),
        cmocka_unit_test(test_request_vote_flags),
        cmocka_unit_test(test_timeout_now_roundtrip),
        cmocka_unit_test(test_request_vote_reply_roundtrip),
        cmocka_unit_test(test_append_entries_roundtrip_none),
        cmocka_unit_test(test_append_entries_roundtrip_one),
        cmocka_unit_test(test_append_entries_roundtrip_many),
        cmocka_unit_test(test_append_entries_reply_roundtrip),
        cmocka_unit_test(test_install_snapshot_roundtrip),
        cmocka_unit_test(test_install_snapshot_reply_roundtrip),
        cmocka_unit_test(test_client_request_roundtrip),
        cmocka_unit_test(test_cas_request_carries_expected),
        cmocka_unit_test(test_client_reply_roundtrip),
        cmocka_unit_test(test_length_beyond_bytes_present_is_refused),
        cmocka_unit_test(test_frame_size_limits),
        cmocka_unit_test(test_frame_over_max_is_refused),
        cmocka_unit_test(test_unknown_version_is_refused),
        cmocka_unit_test(test_unknown_type_is_refused),
        cmocka_unit_test(test_trailing_bytes_are_refused),
        cmocka_unit_test(test_encode_into_small_buffer_is_refused),
        cmocka_unit_test(test_entry_count_beyond_bytes_is_refused),
        cmocka_unit_test(test_key_and_value_over_max_are_refused),
        cmocka_unit_test(test_booleans_other_than_0_or_1_are_refused),
        cmocka_unit_test(test_encoder_sends_booleans_as_0_or_1),
    };
    return cmocka_run_group_tests_name("unit_wire", tests, NULL, NULL);
}
