/*
 * unit_kv_ops.c - delete, compare-and-set and list in the key-value state
 * machine: what each does, that a retried one is answered as its first copy
 * was (thesis §6.3), that a snapshot keeps those answers, and that a write
 * which cannot be applied for lack of memory changes nothing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kv/kv.h"
#include "tests/support/eager_snapshot.h"

static uint64_t next_index;

static int apply(struct raft_fsm *f, uint8_t op, uint64_t client, uint64_t seq, const char *key,
                 const char *expected, const char *value)
{
    struct kv_command c = {.op = op, .client_id = client, .seq = seq, .time_ms = 1000,
                           .key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key)};
    if (expected) {
        c.expected = (const uint8_t *)expected;
        c.expected_len = (uint32_t)strlen(expected);
    }
    if (value) {
        c.value = (const uint8_t *)value;
        c.value_len = (uint32_t)strlen(value);
    }
    uint8_t buf[512];
    size_t len = kv_encode_command(buf, &c);
    assert_int_equal(len, kv_command_size(&c));
    struct raft_entry e = {.term = 1, .type = RAFT_ENTRY_COMMAND, .len = (uint32_t)len,
                           .data = buf};
    return f->apply(f->ctx, ++next_index, &e);
}

static void put(struct raft_fsm *f, uint64_t client, uint64_t seq, const char *k, const char *v)
{
    assert_int_equal(apply(f, KV_OP_PUT, client, seq, k, NULL, v), 0);
}

static void assert_value(struct kv *kv, const char *key, const char *want)
{
    uint8_t *v = NULL;
    uint32_t len = 0;
    int rc = kv_get(kv, (const uint8_t *)key, (uint32_t)strlen(key), &v, &len);
    if (!want) {
        assert_int_equal(rc, -ENOENT);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(v, want, len);
    free(v);
}

/* The saved answer of the session's last request; held must be as given. */
static void assert_result(struct kv *kv, uint64_t client, uint64_t seq, enum kv_result want,
                          const char *held_want)
{
    enum kv_result r;
    uint8_t *held;
    uint32_t held_len;
    assert_int_equal(kv_request_result(kv, client, seq, &r, &held, &held_len), 0);
    assert_int_equal(r, want);
    if (held_want) {
        assert_non_null(held);
        assert_int_equal(held_len, strlen(held_want));
        assert_memory_equal(held, held_want, held_len);
    } else {
        assert_null(held);
    }
    free(held);
}

static void test_delete_removes_and_reports_a_missing_key(void **state)
{
    (void)state;
    struct kv *kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm f = kv_fsm(kv);
    put(&f, 7, 1, "a", "1");
    assert_int_equal(apply(&f, KV_OP_DELETE, 7, 2, "a", NULL, NULL), 0);
    assert_value(kv, "a", NULL);
    assert_result(kv, 7, 2, KV_RESULT_DONE, NULL);
    assert_int_equal(apply(&f, KV_OP_DELETE, 7, 3, "a", NULL, NULL), 0);
    assert_result(kv, 7, 3, KV_RESULT_ABSENT, NULL);
    kv_free(kv);
}

/* Linear probing: deleting must not hide keys stored past the hole. With
 * many keys in few slots, delete every other one and find the rest. */
static void test_delete_keeps_every_other_key_reachable(void **state)
{
    (void)state;
    struct kv *kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm f = kv_fsm(kv);
    char k[16];
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        put(&f, 7, 1 + (uint64_t)i, k, k);
    }
    for (int i = 0; i < 2000; i += 2) {
        snprintf(k, sizeof(k), "k%d", i);
        assert_int_equal(apply(&f, KV_OP_DELETE, 7, 3000 + (uint64_t)i, k, NULL, NULL), 0);
    }
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        assert_value(kv, k, i % 2 ? k : NULL);
    }
    struct kv_stats st;
    kv_get_stats(kv, &st);
    assert_int_equal(st.keys, 1000);
    kv_free(kv);
}

static void test_cas_swaps_only_the_expected_value(void **state)
{
    (void)state;
    struct kv *kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm f = kv_fsm(kv);
    put(&f, 7, 1, "lock", "free");
    assert_int_equal(apply(&f, KV_OP_CAS, 7, 2, "lock", "free", "mine"), 0);
    assert_value(kv, "lock", "mine");
    assert_result(kv, 7, 2, KV_RESULT_DONE, NULL);
    /* Another client expects "free" too late: nothing changes, it learns
     * what the key holds. */
    assert_int_equal(apply(&f, KV_OP_CAS, 8, 1, "lock", "free", "theirs"), 0);
    assert_value(kv, "lock", "mine");
    assert_result(kv, 8, 1, KV_RESULT_MISMATCH, "mine");
    assert_int_equal(apply(&f, KV_OP_CAS, 8, 2, "nokey", "x", "y"), 0);
    assert_value(kv, "nokey", NULL);
    assert_result(kv, 8, 2, KV_RESULT_ABSENT, NULL);
    kv_free(kv);
}

/* §6.3: a cas retried after its first copy was applied is not applied
 * again (it would now mismatch), and its answer is the first one's. */
static void test_retried_cas_keeps_its_first_answer(void **state)
{
    (void)state;
    struct kv *kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm f = kv_fsm(kv);
    put(&f, 7, 1, "n", "1");
    assert_int_equal(apply(&f, KV_OP_CAS, 7, 2, "n", "1", "2"), 0);
    assert_int_equal(apply(&f, KV_OP_CAS, 7, 2, "n", "1", "2"), 0); /* the retry */
    assert_value(kv, "n", "2");
    assert_result(kv, 7, 2, KV_RESULT_DONE, NULL);
    struct kv_stats st;
    kv_get_stats(kv, &st);
    assert_int_equal(st.duplicates, 1);
    kv_free(kv);
}

static void test_snapshot_keeps_the_saved_answers(void **state)
{
    (void)state;
    struct kv *a = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS), *b = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm fa = kv_fsm(a), fb = kv_fsm(b);
    put(&fa, 7, 1, "k", "v");
    assert_int_equal(apply(&fa, KV_OP_CAS, 8, 1, "k", "other", "w"), 0);
    assert_int_equal(apply(&fa, KV_OP_DELETE, 9, 1, "gone", NULL, NULL), 0);
    uint8_t *snap;
    size_t len;
    assert_int_equal(fsm_snapshot_bytes(&fa, &snap, &len), 0);
    assert_int_equal(fsm_restore_bytes(&fb, next_index, snap, len), 0);
    free(snap);
    assert_result(b, 8, 1, KV_RESULT_MISMATCH, "v");
    assert_result(b, 9, 1, KV_RESULT_ABSENT, NULL);
    struct kv_stats sa, sb;
    kv_get_stats(a, &sa);
    kv_get_stats(b, &sb);
    assert_int_equal(sa.hash, sb.hash);
    kv_free(a);
    kv_free(b);
}

/* A listing's keys, joined by spaces, with "=value" when it has values. */
static void listing_text(const uint8_t *l, uint32_t len, bool values, char *out, size_t cap)
{
    const uint8_t *p = l + 4, *key, *value;
    size_t left = len - 4, off = 0;
    uint32_t count = (uint32_t)l[0] << 24 | (uint32_t)l[1] << 16 | (uint32_t)l[2] << 8 | l[3];
    uint32_t key_len, value_len;
    out[0] = '\0';
    for (uint32_t i = 0; i < count; i++) {
        assert_int_equal(kv_listing_next(&p, &left, values, &key, &key_len, &value,
                                         &value_len), 0);
        off += (size_t)snprintf(out + off, cap - off, "%s%.*s", i ? " " : "", (int)key_len,
                                (const char *)key);
        if (values)
            off += (size_t)snprintf(out + off, cap - off, "=%.*s", (int)value_len,
                                    (const char *)value);
    }
    assert_int_equal(left, 0);
}

static void test_list_is_sorted_and_filtered_by_prefix(void **state)
{
    (void)state;
    struct kv *kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm f = kv_fsm(kv);
    const char *keys[] = {"user/b", "user/a", "admin", "user/ab", "user"};
    for (uint64_t i = 0; i < 5; i++)
        put(&f, 7, 1 + i, keys[i], "x");
    uint8_t *l;
    uint32_t len;
    char text[256];
    assert_int_equal(kv_list(kv, (const uint8_t *)"user/", 5, false, 1 << 20, &l, &len), 0);
    listing_text(l, len, false, text, sizeof(text));
    assert_string_equal(text, "user/a user/ab user/b");
    free(l);
    assert_int_equal(kv_list(kv, NULL, 0, true, 1 << 20, &l, &len), 0);
    listing_text(l, len, true, text, sizeof(text));
    assert_string_equal(text, "admin=x user=x user/a=x user/ab=x user/b=x");
    free(l);
    assert_int_equal(kv_list(kv, NULL, 0, true, 16, &l, &len), -EMSGSIZE);
    kv_free(kv);
}

/* Every allocation of a cas that mismatches (its saved answer) failing in
 * turn: nothing is recorded, and applying it again later works. */
static void test_write_that_cannot_be_applied_changes_nothing(void **state)
{
    (void)state;
    struct kv *kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm f = kv_fsm(kv);
    put(&f, 7, 1, "k", "v");
    kv_fail_allocations_after(kv, 0);
    assert_int_equal(apply(&f, KV_OP_CAS, 7, 2, "k", "other", "w"), -ENOMEM);
    assert_false(kv_applied_request(kv, 7, 2));
    kv_fail_allocations_after(kv, -1);
    assert_int_equal(apply(&f, KV_OP_CAS, 7, 2, "k", "other", "w"), 0);
    assert_result(kv, 7, 2, KV_RESULT_MISMATCH, "v");
    kv_free(kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delete_removes_and_reports_a_missing_key),
        cmocka_unit_test(test_delete_keeps_every_other_key_reachable),
        cmocka_unit_test(test_cas_swaps_only_the_expected_value),
        cmocka_unit_test(test_retried_cas_keeps_its_first_answer),
        cmocka_unit_test(test_snapshot_keeps_the_saved_answers),
        cmocka_unit_test(test_list_is_sorted_and_filtered_by_prefix),
        cmocka_unit_test(test_write_that_cannot_be_applied_changes_nothing),
    };
    return cmocka_run_group_tests_name("unit: delete, cas and list", tests, NULL, NULL);
}
