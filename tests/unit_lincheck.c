/*
 * unit_lincheck.c - the linearizability checker on hand-made histories.
 *
 * Times are small integers (nanoseconds) so that each history reads like a
 * timeline: put(k, v) [call, return]. Histories that a correct store may
 * produce must pass; stale reads, lost writes and reads of values nobody
 * wrote must fail, with a message that names the key.
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

#include "tests/chaos/lincheck.h"

static void put(struct lincheck_history *h, int client, const char *key, const char *value,
                uint64_t call, uint64_t ret)
{
    struct lincheck_op op = {.client = client, .kind = LINCHECK_PUT, .key = key,
                             .value = value, .call_ns = call, .return_ns = ret,
                             .outcome = LINCHECK_OK};
    assert_int_equal(lincheck_add(h, &op), 0);
}

static void put_unknown(struct lincheck_history *h, int client, const char *key,
                        const char *value, uint64_t call)
{
    struct lincheck_op op = {.client = client, .kind = LINCHECK_PUT, .key = key,
                             .value = value, .call_ns = call, .outcome = LINCHECK_UNKNOWN};
    assert_int_equal(lincheck_add(h, &op), 0);
}

/* value NULL: the get found the key missing. */
static void get(struct lincheck_history *h, int client, const char *key, const char *value,
                uint64_t call, uint64_t ret)
{
    struct lincheck_op op = {.client = client, .kind = LINCHECK_GET, .key = key,
                             .value = value, .call_ns = call, .return_ns = ret,
                             .outcome = value ? LINCHECK_OK : LINCHECK_MISSING};
    assert_int_equal(lincheck_add(h, &op), 0);
}

static int check(struct lincheck_history *h, struct lincheck_result *r)
{
    int rc = lincheck_check(h, r);
    if (rc != 0)
        printf("    (checker says: %s)\n", r->message);
    return rc;
}

static void expect_ok(struct lincheck_history *h)
{
    struct lincheck_result r;
    assert_int_equal(check(h, &r), 0);
    assert_true(r.ok);
    assert_string_equal(r.message, "");
    lincheck_free(h);
}

static void expect_bad(struct lincheck_history *h, const char *key)
{
    struct lincheck_result r;
    assert_int_equal(check(h, &r), -1);
    assert_false(r.ok);
    assert_false(r.gave_up);
    assert_string_equal(r.bad_key, key);
    assert_non_null(strstr(r.message, key));
    lincheck_free(h);
}

static void test_empty_history_is_linearizable(void **state)
{
    (void)state;
    expect_ok(lincheck_new());
}

static void test_sequential_puts_and_gets(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    get(h, 1, "k", NULL, 0, 1);
    put(h, 1, "k", "a", 2, 3);
    get(h, 2, "k", "a", 4, 5);
    put(h, 2, "k", "b", 6, 7);
    get(h, 1, "k", "b", 8, 9);
    expect_ok(h);
}

/* The classic failure of a deposed leader answering reads by itself. */
static void test_stale_read_fails(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, 1, "k", "a", 0, 1);
    put(h, 1, "k", "b", 2, 3);
    get(h, 2, "k", "a", 4, 5);
    expect_bad(h, "k");
}

/* An acknowledged put that a later read does not see was lost. */
static void test_lost_write_fails(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, 1, "k", "a", 0, 1);
    get(h, 2, "k", NULL, 2, 3);
    expect_bad(h, "k");
}

static void test_lost_write_behind_a_later_value_fails(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, 1, "k", "a", 0, 1);
    put(h, 2, "k", "b", 2, 3);
    get(h, 3, "k", "b", 4, 5);
    put(h, 1, "k", "c", 6, 7);
    get(h, 3, "k", "b", 8, 9); /* c was acknowledged before this read began */
    expect_bad(h, "k");
}

static void test_read_of_a_value_never_written_fails(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, 1, "k", "a", 0, 1);
    get(h, 2, "k", "zz", 2, 3);
    struct lincheck_result r;
    assert_int_equal(check(h, &r), -1);
    assert_non_null(strstr(r.message, "no write on this key (put or cas) ever wrote"));
    assert_non_null(strstr(r.message, "'zz'"));
    lincheck_free(h);
}

/* A value written under another key does not count. */
static void test_read_of_another_keys_value_fails(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, 1, "x", "a", 0, 1);
    get(h, 2, "y", "a", 2, 3);
    expect_bad(h, "y");
}

/* A put concurrent with two reads: either may see it, but once one read
 * has seen it, a read that starts later cannot miss it. */
static void test_concurrent_put_allows_either_order(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, 1, "k", "a", 0, 10);
    get(h, 2, "k", NULL, 1, 2);
    get(h, 3, "k", "a", 3, 4);
    expect_ok(h);

    h = lincheck_new();
    put(h, 1, "k", "a", 0, 10);
    get(h, 2, "k", "a", 1, 2);
    get(h, 3, "k", NULL, 3, 4); /* after a read that saw the put */
    expect_bad(h, "k");
}

static void test_concurrent_puts_either_wins(void **state)
{
    (void)state;
    const char *winners[] = {"a", "b"};
    for (int w = 0; w < 2; w++) {
        struct lincheck_history *h = lincheck_new();
        put(h, 1, "k", "a", 0, 10);
        put(h, 2, "k", "b", 1, 9);
        get(h, 3, "k", winners[w], 11, 12);
        get(h, 3, "k", winners[w], 13, 14);
        expect_ok(h);
    }
    /* But not both, one after the other, once both puts are over. */
    struct lincheck_history *h = lincheck_new();
    put(h, 1, "k", "a", 0, 10);
    put(h, 2, "k", "b", 1, 9);
    get(h, 3, "k", "a", 11, 12);
    get(h, 3, "k", "b", 13, 14);
    expect_bad(h, "k");
}

/* Reads during two overlapping puts may flip once, not back and forth. */
static void test_reads_during_overlapping_puts(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, 1, "k", "a", 0, 100);
    put(h, 2, "k", "b", 0, 100);
    get(h, 3, "k", "a", 10, 20);
    get(h, 3, "k", "b", 30, 40);
    expect_ok(h);

    h = lincheck_new();
    put(h, 1, "k", "a", 0, 100);
    put(h, 2, "k", "b", 0, 100);
    get(h, 3, "k", "a", 10, 20);
    get(h, 3, "k", "b", 30, 40);
    get(h, 3, "k", "a", 50, 60);
    expect_bad(h, "k");
}

/* Operations that touch (one returns at the instant the other is called)
 * count as concurrent: timestamps from different threads are not exact. */
static void test_touching_operations_overlap(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, 1, "k", "a", 0, 5);
    get(h, 2, "k", NULL, 5, 6);
    expect_ok(h);
}

/* A put that timed out may take effect at any time after its call... */
static void test_unknown_put_may_take_effect_late(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put_unknown(h, 1, "k", "a", 5);
    get(h, 2, "k", NULL, 10, 11);
    get(h, 2, "k", NULL, 20, 21);
    get(h, 3, "k", "a", 1000, 1001);
    expect_ok(h);
}

/* ... or never. */
static void test_unknown_put_may_never_take_effect(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, 1, "k", "a", 0, 1);
    put_unknown(h, 2, "k", "b", 2);
    get(h, 3, "k", "a", 10, 11);
    get(h, 3, "k", "a", 20, 21);
    expect_ok(h);
}

/* But not before its call, and not undone once seen. */
static void test_unknown_put_is_bounded_by_its_call(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    get(h, 2, "k", "a", 1, 2);
    put_unknown(h, 1, "k", "a", 5);
    expect_bad(h, "k");

    h = lincheck_new();
    put_unknown(h, 1, "k", "a", 5);
    get(h, 2, "k", "a", 10, 11);
    get(h, 2, "k", NULL, 12, 13);
    expect_bad(h, "k");
}

/* A get with no answer says nothing; a refused put has no effect. */
static void test_unknown_get_and_refused_put(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    struct lincheck_op g = {.client = 1, .kind = LINCHECK_GET, .key = "k", .call_ns = 0,
                            .outcome = LINCHECK_UNKNOWN};
    assert_int_equal(lincheck_add(h, &g), 0);
    put(h, 1, "k", "a", 1, 2);
    get(h, 1, "k", "a", 3, 4);
    expect_ok(h);

    h = lincheck_new();
    struct lincheck_op p = {.client = 1, .kind = LINCHECK_PUT, .key = "k", .value = "a",
                            .call_ns = 0, .return_ns = 1, .outcome = LINCHECK_FAILED};
    assert_int_equal(lincheck_add(h, &p), 0);
    get(h, 2, "k", "a", 2, 3);
    expect_bad(h, "k");
}

static void test_keys_are_checked_separately(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, 1, "good", "a", 0, 1);
    get(h, 2, "good", "a", 2, 3);
    put(h, 1, "bad", "a", 0, 1);
    put(h, 1, "bad", "b", 2, 3);
    get(h, 2, "bad", "a", 4, 5);
    struct lincheck_result r;
    assert_int_equal(check(h, &r), -1);
    assert_string_equal(r.bad_key, "bad");
    assert_int_equal(r.n_keys, 2);
    assert_int_equal(r.n_ops, 5);
    lincheck_free(h);
}

static void test_add_refuses_nonsense(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    struct lincheck_op op = {.kind = LINCHECK_PUT, .key = "k", .value = "v", .call_ns = 10,
                             .return_ns = 5, .outcome = LINCHECK_OK};
    assert_int_equal(lincheck_add(h, &op), -EINVAL); /* returned before its call */
    op.return_ns = 20;
    op.value = NULL;
    assert_int_equal(lincheck_add(h, &op), -EINVAL); /* a put of nothing */
    op.value = "v";
    op.key = NULL;
    assert_int_equal(lincheck_add(h, &op), -EINVAL);
    assert_int_equal(lincheck_size(h), 0);
    lincheck_free(h);
}

/* ---- generated histories ---- */

static uint64_t rng = 88172645463325252ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

struct gen_op {
    int client;
    bool is_put;
    int value;
    uint64_t call, ret, point;
    bool unknown;
};

static int cmp_point(const void *a, const void *b)
{
    const struct gen_op *x = a, *y = b;
    return x->point < y->point ? -1 : x->point > y->point;
}

/* n_clients clients, each doing ops_each operations one after the other on
 * one key; every operation takes effect at a random instant inside its
 * interval, applied to a real register in that order: linearizable by
 * construction. Some puts time out (their effect may still happen). */
static struct lincheck_history *generate(int n_clients, int ops_each, int unknown_percent,
                                         struct gen_op **out_ops, int *out_n)
{
    int n = n_clients * ops_each;
    struct gen_op *ops = calloc((size_t)n, sizeof(*ops));
    int k = 0, next_value = 1;
    for (int c = 0; c < n_clients; c++) {
        uint64_t t = next_rand() % 50;
        for (int i = 0; i < ops_each; i++, k++) {
            struct gen_op *o = &ops[k];
            o->client = c;
            o->is_put = next_rand() % 2;
            o->value = o->is_put ? next_value++ : 0;
            o->call = t;
            o->ret = t + 1 + next_rand() % 100;
            o->point = o->call + next_rand() % (o->ret - o->call + 1);
            o->unknown = o->is_put && (int)(next_rand() % 100) < unknown_percent;
            if (o->unknown && next_rand() % 3 == 0)
                o->point = UINT64_MAX - 1; /* it never took effect */
            t = o->ret + 1 + next_rand() % 20;
        }
    }
    qsort(ops, (size_t)n, sizeof(*ops), cmp_point);
    int reg = 0;
    for (int i = 0; i < n; i++) {
        if (ops[i].is_put && ops[i].point != UINT64_MAX - 1)
            reg = ops[i].value;
        else if (!ops[i].is_put)
            ops[i].value = reg;
    }
    struct lincheck_history *h = lincheck_new();
    for (int i = 0; i < n; i++) {
        char v[32];
        snprintf(v, sizeof(v), "v%d", ops[i].value);
        struct lincheck_op op = {
            .client = ops[i].client, .kind = ops[i].is_put ? LINCHECK_PUT : LINCHECK_GET,
            .key = "k", .value = ops[i].value ? v : NULL, .call_ns = ops[i].call,
            .return_ns = ops[i].ret,
            .outcome = ops[i].unknown ? LINCHECK_UNKNOWN
                       : !ops[i].is_put && ops[i].value == 0 ? LINCHECK_MISSING
                                                             : LINCHECK_OK,
        };
        assert_int_equal(lincheck_add(h, &op), 0);
    }
    *out_ops = ops;
    *out_n = n;
    return h;
}

static void test_generated_linearizable_histories_pass(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        struct gen_op *ops;
        int n;
        struct lincheck_history *h = generate(2 + round % 5, 200, round % 2 ? 10 : 0, &ops, &n);
        struct lincheck_result r;
        assert_int_equal(check(h, &r), 0);
        lincheck_free(h);
        free(ops);
    }
}

/* Five clients, 2000 operations each, on one key: fast enough for a
 * chaos test's history. */
static void test_large_history_is_checked_quickly(void **state)
{
    (void)state;
    struct gen_op *ops;
    int n;
    struct lincheck_history *h = generate(5, 2000, 5, &ops, &n);
    uint64_t t0 = lincheck_now_ns();
    struct lincheck_result r;
    assert_int_equal(check(h, &r), 0);
    printf("    %zu operations checked in %.3f s\n", r.n_ops,
           (double)(lincheck_now_ns() - t0) / 1e9);
    lincheck_free(h);
    free(ops);
}

/* A read far in the past of a value written much later cannot be right. */
static void test_generated_history_with_a_read_from_the_future_fails(void **state)
{
    (void)state;
    struct gen_op *ops;
    int n;
    struct lincheck_history *h = generate(3, 100, 0, &ops, &n);
    int last_put = 0;
    uint64_t last_call = 0;
    for (int i = 0; i < n; i++)
        if (ops[i].is_put && ops[i].call > last_call) {
            last_call = ops[i].call;
            last_put = ops[i].value;
        }
    char v[32];
    snprintf(v, sizeof(v), "v%d", last_put);
    get(h, 9, "k", v, 0, 1);
    expect_bad(h, "k");
    free(ops);
}

static void test_search_budget_gives_up_honestly(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    /* Many overlapping puts, then a read nobody could have seen last. */
    char v[16];
    for (int i = 0; i < 12; i++) {
        snprintf(v, sizeof(v), "v%d", i);
        put(h, i, "k", v, 0, 100);
    }
    get(h, 20, "k", "v0", 101, 102);
    get(h, 20, "k", "v1", 103, 104);
    lincheck_set_budget(h, 16);
    struct lincheck_result r;
    assert_int_equal(lincheck_check(h, &r), -E2BIG);
    assert_true(r.gave_up);
    assert_non_null(strstr(r.message, "gave up"));
    lincheck_set_budget(h, 0);
    assert_int_equal(lincheck_check(h, &r), -1);
    lincheck_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_history_is_linearizable),
        cmocka_unit_test(test_sequential_puts_and_gets),
        cmocka_unit_test(test_stale_read_fails),
        cmocka_unit_test(test_lost_write_fails),
        cmocka_unit_test(test_lost_write_behind_a_later_value_fails),
        cmocka_unit_test(test_read_of_a_value_never_written_fails),
        cmocka_unit_test(test_read_of_another_keys_value_fails),
        cmocka_unit_test(test_concurrent_put_allows_either_order),
        cmocka_unit_test(test_concurrent_puts_either_wins),
        cmocka_unit_test(test_reads_during_overlapping_puts),
        cmocka_unit_test(test_touching_operations_overlap),
        cmocka_unit_test(test_unknown_put_may_take_effect_late),
        cmocka_unit_test(test_unknown_put_may_never_take_effect),
        cmocka_unit_test(test_unknown_put_is_bounded_by_its_call),
        cmocka_unit_test(test_unknown_get_and_refused_put),
        cmocka_unit_test(test_keys_are_checked_separately),
        cmocka_unit_test(test_add_refuses_nonsense),
        cmocka_unit_test(test_generated_linearizable_histories_pass),
        cmocka_unit_test(test_large_history_is_checked_quickly),
        cmocka_unit_test(test_generated_history_with_a_read_from_the_future_fails),
        cmocka_unit_test(test_search_budget_gives_up_honestly),
    };
    return cmocka_run_group_tests_name("lincheck: linearizability of key-value histories",
                                       tests, NULL, NULL);
}
