/*
 * unit_wire_members.c - the frames of membership changes (net/wire.h):
 * a member add or remove carries its id, learner flag and wait after the
 * value, the other ops keep the bytes they always had, and a view of a
 * configuration (net/wire_members.c) survives a round trip member for
 * member, while every malformed view is refused without reading past its
 * bytes (each is decoded from a heap copy of exactly its length, for ASan).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/wire.h"

static uint8_t *encode_new(const struct wire_msg *m, size_t *size)
{
    *size = wire_size(m);
    assert_true(*size >= WIRE_HEADER);
    uint8_t *buf = malloc(*size);
    assert_non_null(buf);
    assert_int_equal(wire_encode(m, buf, *size), (long)*size);
    return buf;
}

static struct wire_msg member_request(uint8_t op, uint32_t id, const char *addr, bool learner)
{
    struct wire_msg m = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT};
    m.u.request = (struct client_request){
        .op = op, .member_id = id, .learner = learner, .wait_ms = 30000,
        .value = (uint8_t *)addr, .value_len = addr ? (uint32_t)strlen(addr) : 0};
    return m;
}

static void test_member_add_carries_id_learner_and_wait(void **state)
{
    (void)state;
    struct wire_msg m = member_request(CLIENT_MEMBER_ADD, 63, "10.0.0.4:8004", true), out;
    size_t size;
    uint8_t *frame = encode_new(&m, &size);
    assert_int_equal(wire_decode(frame, size, &out), 0);
    const struct client_request *q = &out.u.request;
    assert_int_equal(q->op, CLIENT_MEMBER_ADD);
    assert_int_equal(q->member_id, 63);
    assert_int_equal(q->learner, 1);
    assert_int_equal(q->wait_ms, 30000);
    assert_int_equal(q->value_len, 13);
    assert_memory_equal(q->value, "10.0.0.4:8004", 13);
    /* Every shorter frame, its length field made to match, is refused. */
    uint8_t *copy = malloc(size);
    for (size_t len = WIRE_HEADER; len < size; len++) {
        memcpy(copy, frame, len);
        uint32_t body = (uint32_t)(len - 4);
        copy[0] = (uint8_t)(body >> 24);
        copy[1] = (uint8_t)(body >> 16);
        copy[2] = (uint8_t)(body >> 8);
        copy[3] = (uint8_t)body;
        assert_int_equal(wire_decode(copy, len, &out), -EBADMSG);
    }
    /* The learner flag is a boolean: 2 is refused. */
    memcpy(copy, frame, size);
    copy[size - 5] = 2;
    assert_int_equal(wire_decode(copy, size, &out), -EBADMSG);
    free(copy);
    free(frame);
}

static void test_member_remove_roundtrip(void **state)
{
    (void)state;
    struct wire_msg m = member_request(CLIENT_MEMBER_REMOVE, 7, NULL, false), out;
    size_t size;
    uint8_t *frame = encode_new(&m, &size);
    assert_int_equal(wire_decode(frame, size, &out), 0);
    assert_int_equal(out.u.request.op, CLIENT_MEMBER_REMOVE);
    assert_int_equal(out.u.request.member_id, 7);
    assert_int_equal(out.u.request.learner, 0);
    assert_int_equal(out.u.request.wait_ms, 30000);
    free(frame);
}

/* The member fields belong to the two change ops alone: a list, a put or a
 * status is the frame it was before membership changes existed. */
static void test_other_ops_carry_no_member_fields(void **state)
{
    (void)state;
    const uint8_t ops[] = {CLIENT_MEMBER_LIST, CLIENT_PUT, CLIENT_STATUS, CLIENT_TRANSFER};
    for (size_t i = 0; i < sizeof(ops); i++) {
        struct wire_msg m = member_request(ops[i], 5, "x:1", true), out;
        size_t size;
        uint8_t *frame = encode_new(&m, &size);
        assert_int_equal(size, WIRE_HEADER + 1 + 8 + 8 + 4 + 0 + 4 + 3);
        assert_int_equal(wire_decode(frame, size, &out), 0);
        assert_int_equal(out.u.request.member_id, 0);
        assert_int_equal(out.u.request.learner, 0);
        assert_int_equal(out.u.request.wait_ms, 0);
        free(frame);
    }
}

static struct raft_membership_view sample_view(void)
{
    struct raft_membership_view v = {.index = 4242, .committed = true};
    v.config.removed = 1ull << 2 | 1ull << 62;
    const char *addrs[] = {"127.0.0.1:8000", "[::1]:8001", ""};
    const uint32_t ids[] = {0, 1, 63};
    for (uint32_t i = 0; i < 3; i++) {
        v.config.members[i].id = ids[i];
        v.config.members[i].voter = i != 2;
        snprintf(v.config.members[i].addr, RAFT_ADDR_MAX, "%s", addrs[i]);
        v.match[i] = 4242 - i;
    }
    v.config.n = 3;
    return v;
}

/* Decodes a heap copy of exactly len bytes, so that ASan sees an over-read. */
static int decode_exact(struct raft_membership_view *v, const uint8_t *buf, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    int rc = wire_members_decode(v, copy, len);
    free(copy);
    return rc;
}

static void test_view_roundtrip_member_for_member(void **state)
{
    (void)state;
    struct raft_membership_view v = sample_view(), out;
    uint8_t buf[WIRE_MEMBERS_MAX], again[WIRE_MEMBERS_MAX];
    size_t len = wire_members_encode(&v, buf);
    assert_int_equal(decode_exact(&out, buf, len), 0);
    assert_true(out.index == 4242 && out.committed);
    assert_true(out.config.removed == v.config.removed);
    assert_int_equal(out.config.n, 3);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(out.config.members[i].id, v.config.members[i].id);
        assert_int_equal(out.config.members[i].voter, v.config.members[i].voter);
        assert_string_equal(out.config.members[i].addr, v.config.members[i].addr);
        assert_true(out.match[i] == v.match[i]);
    }
    assert_int_equal(wire_members_encode(&out, again), len);
    assert_memory_equal(again, buf, len);
    /* Every prefix is refused, and so is a byte too many. */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(decode_exact(&out, buf, cut), -EBADMSG);
    buf[len] = 0;
    assert_int_equal(decode_exact(&out, buf, len + 1), -EBADMSG);
}

/* The largest view fits in WIRE_MEMBERS_MAX, and so in a reply's value. */
static void test_largest_view_fits_its_bound(void **state)
{
    (void)state;
    struct raft_membership_view v = {0}, out;
    for (uint32_t i = 0; i < RAFT_MAX_NODES; i++) {
        v.config.members[i].id = RAFT_MAX_ID - i;
        memset(v.config.members[i].addr, 'a', RAFT_ADDR_MAX - 1);
        v.match[i] = UINT64_MAX;
    }
    v.config.n = RAFT_MAX_NODES;
    uint8_t buf[WIRE_MEMBERS_MAX];
    size_t len = wire_members_encode(&v, buf);
    assert_int_equal(len, WIRE_MEMBERS_MAX - RAFT_MAX_NODES);
    assert_true(len <= CLIENT_MAX_VALUE);
    assert_int_equal(decode_exact(&out, buf, len), 0);
    assert_int_equal(strlen(out.config.members[8].addr), RAFT_ADDR_MAX - 1);
}

/* Offsets in the encoding of sample_view(): the header is 18 bytes, a
 * member 14 plus its address. */
#define VIEW_COMMITTED 8
#define VIEW_N 17
#define MEMBER0 18

static void refuse_patched(size_t at, uint8_t byte)
{
    struct raft_membership_view v = sample_view(), out;
    uint8_t buf[WIRE_MEMBERS_MAX];
    size_t len = wire_members_encode(&v, buf);
    buf[at] = byte;
    assert_int_equal(decode_exact(&out, buf, len), -EBADMSG);
    assert_int_equal(out.config.n, 0); /* nothing half-decoded is left behind */
}

static void test_malformed_views_are_refused(void **state)
{
    (void)state;
    refuse_patched(VIEW_COMMITTED, 2);        /* committed is a boolean */
    refuse_patched(VIEW_N, RAFT_MAX_NODES + 1); /* more members than a configuration holds */
    refuse_patched(VIEW_N, 4);                /* more members than the bytes hold */
    refuse_patched(MEMBER0 + 3, RAFT_MAX_ID + 1); /* an id beyond RAFT_MAX_ID */
    refuse_patched(MEMBER0 + 4, 7);           /* voter is a boolean */
    refuse_patched(MEMBER0 + 13, RAFT_ADDR_MAX); /* an address too long to hold */
    refuse_patched(MEMBER0 + 14, '\0');       /* an address with a NUL inside */
    /* Member 1 given member 0's id. */
    struct raft_membership_view v = sample_view(), out;
    v.config.members[1].id = 0;
    uint8_t buf[WIRE_MEMBERS_MAX];
    size_t len = wire_members_encode(&v, buf);
    assert_int_equal(decode_exact(&out, buf, len), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_add_carries_id_learner_and_wait),
        cmocka_unit_test(test_member_remove_roundtrip),
        cmocka_unit_test(test_other_ops_carry_no_member_fields),
        cmocka_unit_test(test_view_roundtrip_member_for_member),
        cmocka_unit_test(test_largest_view_fits_its_bound),
        cmocka_unit_test(test_malformed_views_are_refused),
    };
    return cmocka_run_group_tests_name("unit: membership frames", tests, NULL, NULL);
}
