/*
 * unit_kv.c - the key-value state machine: puts, client sessions (a retried
 * request applies once), session expiry by log time, snapshot round trips,
 * a put that cannot be applied for lack of memory, and the words the node
 * logs for a put.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "kv/kv.h"
#include "tests/support/eager_snapshot.h"

static void apply_put(struct raft_fsm *f, uint64_t index, uint64_t client, uint64_t seq,
                      uint64_t time_ms, const char *key, const char *value)
{
    uint8_t buf[256];
    size_t len = kv_encode_put(buf, client, seq, time_ms, (const uint8_t *)key,
                               (uint32_t)strlen(key), (const uint8_t *)value,
                               (uint32_t)strlen(value));
    assert_int_equal(len, kv_put_size((uint32_t)strlen(key), (uint32_t)strlen(value)));
    struct raft_entry e = {.term = 1, .type = RAFT_ENTRY_COMMAND, .len = (uint32_t)len, .data = buf};
    assert_int_equal(f->apply(f->ctx, index, &e), 0);
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

static void test_put_then_get(void **state)
{
    (void)state;
    struct kv *kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm f = kv_fsm(kv);
    assert_value(kv, "a", NULL);
    apply_put(&f, 1, 7, 1, 1000, "a", "1");
    apply_put(&f, 2, 7, 2, 1000, "a", "2");
    assert_value(kv, "a", "2");
    for (int i = 0; i < 1000; i++) { /* enough to grow the tables */
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        apply_put(&f, 3 + (uint64_t)i, 8, 1 + (uint64_t)i, 1000, k, k);
    }
    assert_value(kv, "k999", "k999");
    struct kv_stats st;
    kv_get_stats(kv, &st);
    assert_int_equal(st.keys, 1001);
    assert_int_equal(st.applied_index, 1002);
    kv_free(kv);
}

static void test_retried_request_applies_once(void **state)
{
    (void)state;
    struct kv *kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm f = kv_fsm(kv);
    apply_put(&f, 1, 7, 1, 1000, "x", "first");
    assert_true(kv_applied_request(kv, 7, 1));
    assert_false(kv_applied_request(kv, 7, 2));
    apply_put(&f, 2, 9, 1, 1000, "x", "other");
    /* The client's first put, retried after a lost reply, lands again. */
    apply_put(&f, 3, 7, 1, 1000, "x", "first");
    assert_value(kv, "x", "other");
    kv_free(kv);
}

static void test_sessions_expire_by_log_time(void **state)
{
    (void)state;
    struct kv *kv = kv_new(10000);
    struct raft_fsm f = kv_fsm(kv);
    apply_put(&f, 1, 7, 1, 100000, "x", "1");
    apply_put(&f, 2, 8, 1, 105000, "y", "1");
    assert_true(kv_applied_request(kv, 7, 1));
    apply_put(&f, 3, 8, 2, 112000, "y", "2"); /* 12 s after client 7's last put */
    assert_false(kv_applied_request(kv, 7, 1));
    assert_true(kv_applied_request(kv, 8, 2));
    struct kv_stats st;
    kv_get_stats(kv, &st);
    assert_int_equal(st.sessions, 1);
    kv_free(kv);
}

/* A snapshot is as of its capture: the writes applied while it is
 * serialized (overwrites, new keys, even a restore) do not show
 * in it, and the bytes they replace stay readable until it is done (under
 * AddressSanitizer, a use after free fails here). */
static void test_snapshot_is_as_of_its_capture(void **state)
{
    (void)state;
    struct kv *a = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS), *b = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct kv *twin = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm fa = kv_fsm(a), fb = kv_fsm(b), ft = kv_fsm(twin);
    uint64_t index = 0;
    for (int i = 0; i < 100; i++) {
        char k[16], v[16];
        snprintf(k, sizeof(k), "k%d", i);
        snprintf(v, sizeof(v), "v%d", i);
        index++;
        apply_put(&fa, index, 1, index, 5000, k, v);
        apply_put(&ft, index, 1, index, 5000, k, v);
    }
    void *view;
    assert_int_equal(fa.snapshot_capture(fa.ctx, &view), 0);
    for (int i = 0; i < 200; i++) { /* overwrites k0..k99, then new keys */
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        index++;
        apply_put(&fa, index, 2, index, 6000, k, "later");
    }
    uint8_t *other;
    size_t other_len;
    assert_int_equal(fsm_snapshot_bytes(&fa, &other, &other_len), 0);
    assert_int_equal(fsm_restore_bytes(&fa, index, other, other_len), 0); /* frees every item */
    free(other);
    uint8_t *snap;
    size_t len;
    assert_int_equal(fsm_view_bytes(&fa, view, &snap, &len), 0);
    assert_int_equal(fsm_restore_bytes(&fb, 100, snap, len), 0);
    free(snap);
    struct kv_stats sb, st;
    kv_get_stats(b, &sb);
    kv_get_stats(twin, &st);
    assert_int_equal(sb.keys, 100);
    assert_int_equal(sb.hash, st.hash);
    assert_value(b, "k7", "v7");
    assert_value(b, "k150", NULL);
    assert_value(a, "k7", "later");
    kv_free(a);
    kv_free(b);
    kv_free(twin);
}

static void test_snapshot_round_trip(void **state)
{
    (void)state;
    struct kv *a = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS), *b = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm fa = kv_fsm(a), fb = kv_fsm(b);
    for (int i = 0; i < 300; i++) {
        char k[16], v[16];
        snprintf(k, sizeof(k), "k%d", i % 97);
        snprintf(v, sizeof(v), "v%d", i);
        apply_put(&fa, 1 + (uint64_t)i, 1 + (uint64_t)(i % 5), 1 + (uint64_t)(i / 5), 5000, k, v);
    }
    apply_put(&fb, 1, 99, 1, 1, "stale", "gone after restore");
    uint8_t *snap;
    size_t len;
    assert_int_equal(fsm_snapshot_bytes(&fa, &snap, &len), 0);
    assert_int_equal(fsm_restore_bytes(&fb, 300, snap, len), 0);
    struct kv_stats sa, sb;
    kv_get_stats(a, &sa);
    kv_get_stats(b, &sb);
    assert_int_equal(sa.hash, sb.hash);
    assert_int_equal(sa.keys, sb.keys);
    assert_int_equal(sa.sessions, sb.sessions);
    assert_int_equal(sb.applied_index, 300);
    assert_value(b, "stale", NULL);
    assert_true(kv_applied_request(b, 1, 60));
    /* A corrupt snapshot is refused, never half-loaded silently. */
    snap[0] ^= 0xff;
    assert_int_equal(fsm_restore_bytes(&fb, 300, snap, len), -EBADMSG);
    assert_int_equal(fsm_restore_bytes(&fb, 300, snap, 3), -EBADMSG);
    free(snap);
    kv_free(a);
    kv_free(b);
}

/* A snapshot is restored from a stream read a megabyte at a time: keys and
 * values that straddle the reads, and one value larger than a read. */
static void test_large_snapshot_restores_piece_by_piece(void **state)
{
    (void)state;
    struct kv *a = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS), *b = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm fa = kv_fsm(a), fb = kv_fsm(b);
    char v[200];
    for (int i = 0; i < 20000; i++) { /* about 3 MB */
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        snprintf(v, sizeof(v), "%0*d", 100 + i % 97, i);
        apply_put(&fa, 1 + (uint64_t)i, 1 + (uint64_t)(i % 5), 1 + (uint64_t)(i / 5), 5000, k, v);
    }
    uint32_t big_len = 3u << 19; /* 1.5 MiB */
    uint8_t *big = malloc(big_len), *cmd = malloc(kv_put_size(3, big_len));
    for (uint32_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 7);
    size_t cmd_len = kv_encode_put(cmd, 6, 1, 5000, (const uint8_t *)"big", 3, big, big_len);
    struct raft_entry e = {.term = 1, .type = RAFT_ENTRY_COMMAND, .len = (uint32_t)cmd_len,
                           .data = cmd};
    assert_int_equal(fa.apply(fa.ctx, 20001, &e), 0);
    uint8_t *snap;
    size_t len;
    assert_int_equal(fsm_snapshot_bytes(&fa, &snap, &len), 0);
    assert_true(len > 4u << 20);
    assert_int_equal(fsm_restore_bytes(&fb, 20001, snap, len), 0);
    struct kv_stats sa, sb;
    kv_get_stats(a, &sa);
    kv_get_stats(b, &sb);
    assert_int_equal(sa.hash, sb.hash);
    assert_int_equal(sb.keys, 20001);
    uint8_t *got;
    uint32_t got_len;
    assert_int_equal(kv_get(b, (const uint8_t *)"big", 3, &got, &got_len), 0);
    assert_int_equal(got_len, big_len);
    assert_memory_equal(got, big, big_len);
    free(got);
    /* Cut anywhere, even past the first megabyte, it is refused. */
    assert_int_equal(fsm_restore_bytes(&fb, 20001, snap, (3u << 20) + 5), -EBADMSG);
    free(snap);
    free(big);
    free(cmd);
    kv_free(a);
    kv_free(b);
}

/* Out of memory, every step of a put fails cleanly: the put is not applied
 * and its seq is not recorded, so that applying it again once memory is
 * back takes effect. */
static void test_put_that_cannot_be_applied_is_not_recorded(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = kv_encode_put(buf, 7, 1, 1000, (const uint8_t *)"b", 1,
                               (const uint8_t *)"2", 1);
    struct raft_entry e = {.term = 1, .type = RAFT_ENTRY_COMMAND, .len = (uint32_t)len,
                           .data = buf};
    /* A fresh store allocates its session table, key table, the value and
     * the key: make each one fail in turn. */
    for (long n = 0; n < 4; n++) {
        struct kv *kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
        kv_fail_allocations_after(kv, n);
        assert_int_equal(kv_apply_entry(kv, 1, &e), -ENOMEM);
        assert_false(kv_applied_request(kv, 7, 1));
        assert_value(kv, "b", NULL);
        struct kv_stats st;
        kv_get_stats(kv, &st);
        assert_int_equal(st.applied_index, 0);
        assert_int_equal(st.sessions, 0);
        kv_fail_allocations_after(kv, -1);
        assert_int_equal(kv_apply_entry(kv, 1, &e), 0);
        assert_true(kv_applied_request(kv, 7, 1));
        assert_value(kv, "b", "2");
        kv_free(kv);
    }
}

/* A replica that cannot apply a committed put must not go on without it
 * (the others applied it: the stores would diverge). The state machine
 * tells the node, which stops (unit_diskfail_cluster checks that part). */
static void test_put_that_cannot_be_applied_is_reported_to_the_node(void **state)
{
    (void)state;
    struct kv *kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm f = kv_fsm(kv);
    apply_put(&f, 1, 7, 1, 1000, "a", "1");
    kv_fail_allocations_after(kv, 0);
    uint8_t buf[256];
    size_t len = kv_encode_put(buf, 7, 2, 1000, (const uint8_t *)"b", 1, (const uint8_t *)"2", 1);
    struct raft_entry e = {.term = 1, .type = RAFT_ENTRY_COMMAND, .len = (uint32_t)len, .data = buf};
    assert_int_equal(f.apply(f.ctx, 2, &e), -ENOMEM);
    assert_false(kv_applied_request(kv, 7, 2));
    kv_free(kv);
}

/* The node's log lines say what a put is in the store's words: its key
 * (unprintable bytes escaped, a long key cut short), client and seq. */
static void test_describe_names_the_put(void **state)
{
    (void)state;
    struct kv *kv = kv_new(KV_DEFAULT_SESSION_TIMEOUT_MS);
    struct raft_fsm f = kv_fsm(kv);
    uint8_t buf[256];
    char words[128];
    size_t len = kv_encode_put(buf, 7, 3, 1000, (const uint8_t *)"greeting", 8,
                               (const uint8_t *)"hello", 5);
    f.describe(f.ctx, buf, (uint32_t)len, words, sizeof(words));
    assert_string_equal(words, "put greeting from client 0000000000000007 seq 3");
    len = kv_encode_put(buf, 7, 4, 1000, (const uint8_t *)"a\nb", 3, NULL, 0);
    f.describe(f.ctx, buf, (uint32_t)len, words, sizeof(words));
    assert_string_equal(words, "put a\\x0ab from client 0000000000000007 seq 4");
    const char *key = "0123456789abcdef0123456789abcdefXYZ";
    len = kv_encode_put(buf, 1, 1, 1000, (const uint8_t *)key, 35, NULL, 0);
    f.describe(f.ctx, buf, (uint32_t)len, words, sizeof(words));
    assert_string_equal(words, "put 0123456789abcdef0123456789abcdef... from client 0000000000000001 seq 1");
    words[0] = '\0';
    f.describe(f.ctx, buf, 5, words, sizeof(words)); /* cut short: no words */
    assert_string_equal(words, "");
    kv_free(kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_then_get),
        cmocka_unit_test(test_retried_request_applies_once),
        cmocka_unit_test(test_sessions_expire_by_log_time),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_snapshot_is_as_of_its_capture),
        cmocka_unit_test(test_large_snapshot_restores_piece_by_piece),
        cmocka_unit_test(test_put_that_cannot_be_applied_is_not_recorded),
        cmocka_unit_test(test_put_that_cannot_be_applied_is_reported_to_the_node),
        cmocka_unit_test(test_describe_names_the_put),
    };
    return cmocka_run_group_tests_name("unit: key-value state machine", tests, NULL, NULL);
}
