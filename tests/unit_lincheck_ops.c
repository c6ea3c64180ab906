/*
 * unit_lincheck_ops.c - the linearizability checker's model of delete,
 * compare-and-swap and list, on hand-made histories.
 *
 * Times are small integers (nanoseconds), so that each history reads like
 * a timeline: op [call, return]. For each operation and each of its
 * outcomes there is a history a correct store may produce, which must
 * pass, and one it may not, which must fail: a model that got the
 * operation wrong fails one of the two. Generated histories, linearizable
 * by construction over several keys with every kind of operation, must
 * pass; the same with one operation from the future added must fail.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/chaos/lincheck.h"

#define T_UNKNOWN 0 /* the return time of an operation that never answered: ignored */

static void add(struct lincheck_history *h, struct lincheck_op op)
{
    assert_int_equal(lincheck_add(h, &op), 0);
}

static void put(struct lincheck_history *h, const char *key, const char *value, uint64_t call,
                uint64_t ret)
{
    add(h, (struct lincheck_op){.client = 1, .kind = LINCHECK_PUT, .key = key, .value = value,
                                .call_ns = call, .return_ns = ret, .outcome = LINCHECK_OK});
}

/* value NULL: the get found the key missing. */
static void get(struct lincheck_history *h, const char *key, const char *value, uint64_t call,
                uint64_t ret)
{
    add(h, (struct lincheck_op){.client = 2, .kind = LINCHECK_GET, .key = key, .value = value,
                                .call_ns = call, .return_ns = ret,
                                .outcome = value ? LINCHECK_OK : LINCHECK_MISSING});
}

/* outcome: LINCHECK_OK (deleted), _MISSING (it did not exist), _UNKNOWN. */
static void del(struct lincheck_history *h, const char *key, enum lincheck_outcome outcome,
                uint64_t call, uint64_t ret)
{
    add(h, (struct lincheck_op){.client = 3, .kind = LINCHECK_DELETE, .key = key,
                                .call_ns = call, .return_ns = ret, .outcome = outcome});
}

/* held: what a MISMATCH found (else NULL). */
static void cas(struct lincheck_history *h, const char *key, const char *expected,
                const char *value, enum lincheck_outcome outcome, const char *held,
                uint64_t call, uint64_t ret)
{
    add(h, (struct lincheck_op){.client = 4, .kind = LINCHECK_CAS, .key = key,
                                .expected = expected, .value = value, .held = held,
                                .call_ns = call, .return_ns = ret, .outcome = outcome});
}

/* keys: the result, NULL-terminated. */
static void list(struct lincheck_history *h, const char *prefix, const char *const *keys,
                 uint64_t call, uint64_t ret)
{
    size_t n = 0;
    while (keys[n])
        n++;
    add(h, (struct lincheck_op){.client = 5, .kind = LINCHECK_LIST, .key = prefix,
                                .listed = keys, .n_listed = n, .call_ns = call,
                                .return_ns = ret, .outcome = LINCHECK_OK});
}

static const char *const none[] = {NULL};

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

/* Not linearizable, naming key (and the key in the message). */
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

/* ---- delete ---- */

static void test_delete_removes_the_key(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, "k", "a", 0, 1);
    del(h, "k", LINCHECK_OK, 2, 3);
    get(h, "k", NULL, 4, 5);
    put(h, "k", "b", 6, 7);
    get(h, "k", "b", 8, 9);
    expect_ok(h);

    /* A read after an acknowledged delete that still sees the value. */
    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    del(h, "k", LINCHECK_OK, 2, 3);
    get(h, "k", "a", 4, 5);
    expect_bad(h, "k");
}

/* "Deleted" means the key existed at the delete's instant. */
static void test_delete_that_deleted_needs_the_key(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    del(h, "k", LINCHECK_OK, 0, 1);
    expect_bad(h, "k");

    /* Concurrent with the put, it must come after it: then the key is gone. */
    h = lincheck_new();
    put(h, "k", "a", 0, 10);
    del(h, "k", LINCHECK_OK, 1, 9);
    get(h, "k", NULL, 11, 12);
    expect_ok(h);

    h = lincheck_new();
    put(h, "k", "a", 0, 10);
    del(h, "k", LINCHECK_OK, 1, 9);
    get(h, "k", "a", 11, 12);
    expect_bad(h, "k");
}

/* "It did not exist" means it did not; a delete applied twice (a retry
 * that a session failed to recognise) answers this after deleting. */
static void test_delete_of_a_missing_key(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    del(h, "k", LINCHECK_MISSING, 0, 1);
    put(h, "k", "a", 2, 3);
    del(h, "k", LINCHECK_OK, 4, 5);
    del(h, "k", LINCHECK_MISSING, 6, 7);
    expect_ok(h);

    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    del(h, "k", LINCHECK_MISSING, 2, 3);
    expect_bad(h, "k");
}

/* A delete that timed out may take effect at any time after its call, or
 * never, but once its effect is seen it is not undone. */
static void test_unknown_delete(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, "k", "a", 0, 1);
    del(h, "k", LINCHECK_UNKNOWN, 2, T_UNKNOWN);
    get(h, "k", "a", 3, 4);
    get(h, "k", NULL, 5, 6);
    expect_ok(h);

    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    del(h, "k", LINCHECK_UNKNOWN, 2, T_UNKNOWN);
    get(h, "k", "a", 3, 4);
    get(h, "k", "a", 5, 6);
    expect_ok(h);

    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    del(h, "k", LINCHECK_UNKNOWN, 2, T_UNKNOWN);
    get(h, "k", NULL, 3, 4);
    get(h, "k", "a", 5, 6);
    expect_bad(h, "k");

    /* Not before its call. */
    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    get(h, "k", NULL, 2, 3);
    del(h, "k", LINCHECK_UNKNOWN, 4, T_UNKNOWN);
    expect_bad(h, "k");
}

/* ---- compare-and-swap ---- */

static void test_cas_swaps_what_it_expects(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "a", "b", LINCHECK_OK, NULL, 2, 3);
    get(h, "k", "b", 4, 5);
    cas(h, "k", "b", "c", LINCHECK_OK, NULL, 6, 7);
    get(h, "k", "c", 8, 9);
    expect_ok(h);

    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "a", "b", LINCHECK_OK, NULL, 2, 3);
    get(h, "k", "a", 4, 5); /* the swap was lost */
    expect_bad(h, "k");
}

/* A swap needs the expected value at its instant. */
static void test_cas_swap_needs_the_expected_value(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, "k", "a", 0, 1);
    put(h, "k", "c", 2, 3);
    cas(h, "k", "a", "b", LINCHECK_OK, NULL, 4, 5); /* k holds c */
    expect_bad(h, "k");

    /* Expecting a value nobody wrote never swaps. */
    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "zz", "b", LINCHECK_OK, NULL, 2, 3);
    expect_bad(h, "k");

    /* Two swaps from the same value, both acknowledged: one found the
     * other's value instead. */
    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "a", "b", LINCHECK_OK, NULL, 2, 10);
    cas(h, "k", "a", "c", LINCHECK_OK, NULL, 3, 9);
    expect_bad(h, "k");

    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "a", "b", LINCHECK_OK, NULL, 2, 10);
    cas(h, "k", "a", "c", LINCHECK_MISMATCH, "b", 3, 9);
    get(h, "k", "b", 11, 12);
    expect_ok(h);
}

/* A mismatch reports what the key held at its instant: not what it
 * expected, not a stale value, not nothing. */
static void test_cas_mismatch_reports_what_the_key_held(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "x", "b", LINCHECK_MISMATCH, "a", 2, 3);
    get(h, "k", "a", 4, 5);
    expect_ok(h);

    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    put(h, "k", "c", 2, 3);
    cas(h, "k", "x", "b", LINCHECK_MISMATCH, "a", 4, 5); /* stale: k holds c */
    expect_bad(h, "k");

    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "a", "b", LINCHECK_MISMATCH, "a", 2, 3); /* it held what it expected */
    expect_bad(h, "k");

    /* A cas applied twice answers "mismatch" with its own new value. */
    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "a", "b", LINCHECK_MISMATCH, "b", 2, 3);
    expect_bad(h, "k");

    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "a", "b", LINCHECK_MISMATCH, "zz", 2, 3);
    struct lincheck_result r;
    assert_int_equal(check(h, &r), -1);
    assert_non_null(strstr(r.message, "no write on this key (put or cas) ever wrote"));
    lincheck_free(h);
}

static void test_cas_on_a_missing_key(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    cas(h, "k", "a", "b", LINCHECK_MISSING, NULL, 0, 1);
    put(h, "k", "a", 2, 3);
    del(h, "k", LINCHECK_OK, 4, 5);
    cas(h, "k", "a", "b", LINCHECK_MISSING, NULL, 6, 7);
    expect_ok(h);

    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "a", "b", LINCHECK_MISSING, NULL, 2, 3);
    expect_bad(h, "k");

    /* Nor does a missing key swap. */
    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    del(h, "k", LINCHECK_OK, 2, 3);
    cas(h, "k", "a", "b", LINCHECK_OK, NULL, 4, 5);
    expect_bad(h, "k");
}

/* A cas that timed out swaps at some instant after its call if the key
 * then holds what it expects, or never. */
static void test_unknown_cas(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "a", "b", LINCHECK_UNKNOWN, NULL, 2, T_UNKNOWN);
    get(h, "k", "a", 3, 4);
    get(h, "k", "b", 5, 6);
    expect_ok(h);

    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    cas(h, "k", "a", "b", LINCHECK_UNKNOWN, NULL, 2, T_UNKNOWN);
    get(h, "k", "b", 3, 4);
    get(h, "k", "a", 5, 6);
    expect_bad(h, "k");

    /* It cannot swap once the key holds something else for good. */
    h = lincheck_new();
    put(h, "k", "a", 0, 1);
    put(h, "k", "c", 2, 3);
    cas(h, "k", "a", "b", LINCHECK_UNKNOWN, NULL, 4, T_UNKNOWN);
    get(h, "k", "b", 5, 6);
    expect_bad(h, "k");

    /* But it can when the expected value comes back. */
    h = lincheck_new();
    put(h, "k", "c", 0, 1);
    cas(h, "k", "a", "b", LINCHECK_UNKNOWN, NULL, 2, T_UNKNOWN);
    put(h, "k", "a", 3, 4);
    get(h, "k", "b", 5, 6);
    expect_ok(h);
}

/* ---- list ---- */

static void test_list_returns_the_keys_with_the_prefix(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    list(h, "k", none, 0, 1);
    put(h, "k1", "a", 2, 3);
    put(h, "k2", "b", 4, 5);
    put(h, "other", "c", 6, 7);
    list(h, "k", (const char *const[]){"k1", "k2", NULL}, 8, 9);
    list(h, "k2", (const char *const[]){"k2", NULL}, 10, 11);
    list(h, "", (const char *const[]){"k1", "k2", "other", NULL}, 12, 13);
    del(h, "k1", LINCHECK_OK, 14, 15);
    list(h, "k", (const char *const[]){"k2", NULL}, 16, 17);
    expect_ok(h);
}

static void test_list_missing_a_key_or_keeping_a_deleted_one_fails(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, "k1", "a", 0, 1);
    put(h, "k2", "b", 2, 3);
    list(h, "k", (const char *const[]){"k1", NULL}, 4, 5);
    expect_bad(h, "k2");

    h = lincheck_new();
    put(h, "k1", "a", 0, 1);
    put(h, "k2", "b", 2, 3);
    del(h, "k1", LINCHECK_OK, 4, 5);
    list(h, "k", (const char *const[]){"k1", "k2", NULL}, 6, 7);
    expect_bad(h, "k1");

    /* An empty result once a key exists. */
    h = lincheck_new();
    put(h, "k1", "a", 0, 1);
    list(h, "", none, 2, 3);
    expect_bad(h, "k1");
}

/* A list sees every key at one instant. x is written before y; a list
 * that overlaps both and sees y without x fits each key on its own (before
 * x's put, after y's) but no single instant: checked key by key, this
 * history would pass. */
static void test_list_sees_all_keys_at_one_instant(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, "x", "a", 0, 10);
    put(h, "y", "b", 11, 20);
    list(h, "", (const char *const[]){"y", NULL}, 5, 25);
    struct lincheck_result r;
    assert_int_equal(check(h, &r), -1);
    assert_int_equal(r.n_groups, 1);
    assert_string_equal(r.bad_key, "x");
    assert_non_null(strstr(r.message, "keys x, y"));
    lincheck_free(h);

    h = lincheck_new();
    put(h, "x", "a", 0, 10);
    put(h, "y", "b", 11, 20);
    list(h, "", (const char *const[]){"x", NULL}, 5, 25);
    list(h, "", (const char *const[]){"x", "y", NULL}, 26, 27);
    expect_ok(h);
}

/* Concurrent with a put, a list may or may not see its key; not both ways
 * round in sequence. */
static void test_list_concurrent_with_a_put(void **state)
{
    (void)state;
    for (int seen = 0; seen < 2; seen++) {
        struct lincheck_history *h = lincheck_new();
        put(h, "k", "a", 0, 10);
        list(h, "k", seen ? (const char *const[]){"k", NULL} : none, 2, 3);
        expect_ok(h);
    }
    struct lincheck_history *h = lincheck_new();
    put(h, "k", "a", 0, 10);
    list(h, "k", (const char *const[]){"k", NULL}, 2, 3);
    list(h, "k", none, 4, 5);
    expect_bad(h, "k");
}

/* A result must be a set of created keys, each with the prefix. */
static void test_list_result_is_checked_before_the_search(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, "k1", "a", 0, 1);
    list(h, "k", (const char *const[]){"k1", "k9", NULL}, 2, 3);
    struct lincheck_result r;
    assert_int_equal(check(h, &r), -1);
    assert_string_equal(r.bad_key, "k9");
    assert_non_null(strstr(r.message, "no put ever created"));
    lincheck_free(h);

    h = lincheck_new();
    put(h, "k1", "a", 0, 1);
    put(h, "j1", "a", 0, 1);
    list(h, "k", (const char *const[]){"k1", "j1", NULL}, 2, 3);
    assert_int_equal(check(h, &r), -1);
    assert_string_equal(r.bad_key, "j1");
    assert_non_null(strstr(r.message, "does not start with 'k'"));
    lincheck_free(h);

    h = lincheck_new();
    put(h, "k1", "a", 0, 1);
    list(h, "k", (const char *const[]){"k1", "k1", NULL}, 2, 3);
    assert_int_equal(check(h, &r), -1);
    assert_non_null(strstr(r.message, "twice"));
    lincheck_free(h);
}

/* A put that timed out but whose key a list returned took effect; one
 * whose key no list returned may never have. */
static void test_unknown_put_seen_by_a_list(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    add(h, (struct lincheck_op){.client = 1, .kind = LINCHECK_PUT, .key = "k", .value = "a",
                                .call_ns = 0, .outcome = LINCHECK_UNKNOWN});
    list(h, "k", none, 1, 2);
    list(h, "k", (const char *const[]){"k", NULL}, 3, 4);
    del(h, "k", LINCHECK_MISSING, 5, 6); /* but nothing deleted it */
    expect_bad(h, "k");

    h = lincheck_new();
    add(h, (struct lincheck_op){.client = 1, .kind = LINCHECK_PUT, .key = "k", .value = "a",
                                .call_ns = 0, .outcome = LINCHECK_UNKNOWN});
    list(h, "k", none, 1, 2);
    list(h, "k", (const char *const[]){"k", NULL}, 3, 4);
    del(h, "k", LINCHECK_OK, 5, 6);
    list(h, "k", none, 7, 8);
    expect_ok(h);
}

/* Keys no list reads together stay apart; reads that never answered and
 * refused operations say nothing. */
static void test_groups_and_ignored_operations(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    put(h, "a1", "x", 0, 1);
    put(h, "a2", "y", 0, 1);
    put(h, "b1", "z", 0, 1);
    list(h, "a", (const char *const[]){"a1", "a2", NULL}, 2, 3);
    add(h, (struct lincheck_op){.client = 5, .kind = LINCHECK_LIST, .key = "",
                                .call_ns = 4, .outcome = LINCHECK_UNKNOWN});
    add(h, (struct lincheck_op){.client = 3, .kind = LINCHECK_DELETE, .key = "b1",
                                .call_ns = 4, .return_ns = 5, .outcome = LINCHECK_FAILED});
    get(h, "b1", "z", 6, 7);
    struct lincheck_result r;
    assert_int_equal(check(h, &r), 0);
    assert_int_equal(r.n_keys, 3);
    assert_int_equal(r.n_groups, 2);
    assert_int_equal(r.n_ops, 5);
    lincheck_free(h);
}

static void test_add_refuses_incomplete_operations(void **state)
{
    (void)state;
    struct lincheck_history *h = lincheck_new();
    struct lincheck_op op = {.kind = LINCHECK_CAS, .key = "k", .value = "b", .call_ns = 0,
                             .return_ns = 1, .outcome = LINCHECK_OK};
    assert_int_equal(lincheck_add(h, &op), -EINVAL); /* no expected value */
    op.expected = "a";
    op.outcome = LINCHECK_MISMATCH;
    assert_int_equal(lincheck_add(h, &op), -EINVAL); /* a mismatch that held nothing */
    op = (struct lincheck_op){.kind = LINCHECK_DELETE, .key = "k", .call_ns = 0,
                              .return_ns = 1, .outcome = LINCHECK_MISMATCH};
    assert_int_equal(lincheck_add(h, &op), -EINVAL);
    op = (struct lincheck_op){.kind = LINCHECK_LIST, .key = "k", .n_listed = 1,
                              .call_ns = 0, .return_ns = 1, .outcome = LINCHECK_OK};
    assert_int_equal(lincheck_add(h, &op), -EINVAL); /* one key, but no array */
    op.outcome = LINCHECK_MISSING;
    op.n_listed = 0;
    assert_int_equal(lincheck_add(h, &op), -EINVAL);
    assert_int_equal(lincheck_size(h), 0);
    lincheck_free(h);
}

/* ---- generated histories ---- */

#define GEN_KEYS 4

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* One generated operation; values are numbers ("v7"), 0 for none. */
struct gen_op {
    int client;
    enum lincheck_kind kind;
    int key;        /* list: -1 for every key ("k"), else that key alone ("k2") */
    int value, expected, held;
    bool listed[GEN_KEYS];
    uint64_t call, ret, point;
    bool unknown, never; /* never: an unknown write that did not take effect */
    enum lincheck_outcome outcome;
};

static int cmp_point(const void *a, const void *b)
{
    const struct gen_op *x = a, *y = b;
    return x->point < y->point ? -1 : x->point > y->point;
}

/* Applies o to the map at its instant and records what it answered. */
static void apply(struct gen_op *o, int *map, const int *written, int n_written)
{
    int *v = o->kind == LINCHECK_LIST ? NULL : &map[o->key];
    o->outcome = LINCHECK_OK;
    switch (o->kind) {
    case LINCHECK_PUT:
        *v = o->value;
        break;
    case LINCHECK_GET:
        o->value = *v;
        o->outcome = *v ? LINCHECK_OK : LINCHECK_MISSING;
        break;
    case LINCHECK_DELETE:
        o->outcome = *v ? LINCHECK_OK : LINCHECK_MISSING;
        *v = 0;
        break;
    case LINCHECK_CAS:
        /* Mostly what the key holds, so that swaps happen. */
        o->expected = *v && next_rand() % 3 ? *v
                      : n_written ? written[next_rand() % (unsigned)n_written] : 1;
        o->outcome = !*v ? LINCHECK_MISSING
                     : *v == o->expected ? LINCHECK_OK : LINCHECK_MISMATCH;
        o->held = *v;
        if (*v == o->expected)
            *v = o->value;
        break;
    case LINCHECK_LIST:
        for (int k = 0; k < GEN_KEYS; k++)
            o->listed[k] = (o->key < 0 || o->key == k) && map[k];
        break;
    }
    if (o->unknown)
        o->outcome = LINCHECK_UNKNOWN;
}

static void record(struct lincheck_history *h, const struct gen_op *o)
{
    char key[16] = "k", value[16], expected[16], held[16], names[GEN_KEYS][16];
    const char *listed[GEN_KEYS];
    size_t n = 0;
    if (o->kind != LINCHECK_LIST || o->key >= 0)
        snprintf(key, sizeof(key), "k%d", o->key);
    snprintf(value, sizeof(value), "v%d", o->value);
    snprintf(expected, sizeof(expected), "v%d", o->expected);
    snprintf(held, sizeof(held), "v%d", o->held);
    for (int k = 0; k < GEN_KEYS; k++)
        if (o->listed[k]) {
            snprintf(names[k], sizeof(names[k]), "k%d", k);
            listed[n++] = names[k];
        }
    add(h, (struct lincheck_op){.client = o->client, .kind = o->kind, .key = key,
                                .value = o->value ? value : NULL, .expected = expected,
                                .held = held, .listed = listed, .n_listed = n,
                                .call_ns = o->call, .return_ns = o->ret,
                                .outcome = o->outcome});
}

/* n_clients clients, each doing ops_each operations one after the other
 * on GEN_KEYS keys: puts, gets, deletes, cas and lists. Every operation
 * takes effect at a random instant inside its interval, applied to a real
 * map in that order: linearizable by construction. Some writes time out;
 * a third of those never take effect. Calls start at 100. */
static struct lincheck_history *generate(int n_clients, int ops_each, int unknown_percent,
                                         struct gen_op **out, int *out_n)
{
    int n = n_clients * ops_each, k = 0, next_value = 1;
    struct gen_op *ops = calloc((size_t)n, sizeof(*ops));
    int *written = calloc((size_t)n, sizeof(*written)), n_written = 0;
    assert_non_null(ops);
    assert_non_null(written);
    static const enum lincheck_kind kinds[] = {
        LINCHECK_PUT, LINCHECK_PUT, LINCHECK_PUT, LINCHECK_GET, LINCHECK_GET,
        LINCHECK_DELETE, LINCHECK_CAS, LINCHECK_CAS, LINCHECK_LIST, LINCHECK_LIST};
    for (int c = 0; c < n_clients; c++) {
        uint64_t t = 100 + next_rand() % 50;
        for (int i = 0; i < ops_each; i++, k++) {
            struct gen_op *o = &ops[k];
            o->client = c;
            o->kind = kinds[next_rand() % 10];
            o->key = (int)(next_rand() % GEN_KEYS);
            if (o->kind == LINCHECK_LIST && next_rand() % 2)
                o->key = -1;
            if (o->kind == LINCHECK_PUT || o->kind == LINCHECK_CAS)
                o->value = next_value++;
            o->call = t;
            o->ret = t + 1 + next_rand() % 100;
            o->point = o->call + next_rand() % (o->ret - o->call + 1);
            bool write = o->kind != LINCHECK_GET && o->kind != LINCHECK_LIST;
            o->unknown = write && (int)(next_rand() % 100) < unknown_percent;
            o->never = o->unknown && next_rand() % 3 == 0;
            t = o->ret + 1 + next_rand() % 20;
        }
    }
    qsort(ops, (size_t)n, sizeof(*ops), cmp_point);
    int map[GEN_KEYS] = {0};
    for (int i = 0; i < n; i++) {
        if (ops[i].never)
            ops[i].outcome = LINCHECK_UNKNOWN;
        else
            apply(&ops[i], map, written, n_written);
        if (ops[i].kind == LINCHECK_PUT || ops[i].kind == LINCHECK_CAS)
            written[n_written++] = ops[i].value;
    }
    struct lincheck_history *h = lincheck_new();
    for (int i = 0; i < n; i++)
        record(h, &ops[i]);
    free(written);
    *out = ops;
    *out_n = n;
    return h;
}

static void test_generated_linearizable_histories_pass(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        struct gen_op *ops;
        int n;
        struct lincheck_history *h = generate(2 + round % 4, 150, round % 2 ? 10 : 0, &ops, &n);
        struct lincheck_result r;
        assert_int_equal(check(h, &r), 0);
        assert_int_equal(r.n_groups, 1); /* lists read every key */
        lincheck_free(h);
        free(ops);
    }
}

/* An operation before every other (calls start at 100) that saw a write
 * made later cannot be placed: a list that saw a key, a delete that found
 * one, a cas that found a value. */
static void test_generated_history_with_an_answer_from_the_future_fails(void **state)
{
    (void)state;
    for (int which = 0; which < 3; which++) {
        struct gen_op *ops;
        int n;
        struct lincheck_history *h = generate(3, 100, 5, &ops, &n);
        int first_put = -1;
        for (int i = 0; i < n && first_put < 0; i++)
            if (ops[i].kind == LINCHECK_PUT && !ops[i].unknown && ops[i].key == 0)
                first_put = i;
        assert_true(first_put >= 0);
        char v[16];
        snprintf(v, sizeof(v), "v%d", ops[first_put].value);
        if (which == 0)
            list(h, "k0", (const char *const[]){"k0", NULL}, 0, 1);
        else if (which == 1)
            del(h, "k0", LINCHECK_OK, 0, 1);
        else
            cas(h, "k0", "v0", "new", LINCHECK_MISMATCH, v, 0, 1);
        expect_bad(h, "k0");
        free(ops);
    }
}

/* Five clients, 2000 operations each, on four keys that lists read
 * together: one group, fast enough for a chaos test's history. */
static void test_large_mixed_history_is_checked_quickly(void **state)
{
    (void)state;
    struct gen_op *ops;
    int n;
    struct lincheck_history *h = generate(5, 2000, 5, &ops, &n);
    uint64_t t0 = lincheck_now_ns();
    struct lincheck_result r;
    assert_int_equal(check(h, &r), 0);
    printf("    %zu operations (%zu with an unknown outcome) on %zu keys checked in %.3f s\n",
           r.n_ops, r.n_unknown, r.n_keys, (double)(lincheck_now_ns() - t0) / 1e9);
    lincheck_free(h);
    free(ops);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delete_removes_the_key),
        cmocka_unit_test(test_delete_that_deleted_needs_the_key),
        cmocka_unit_test(test_delete_of_a_missing_key),
        cmocka_unit_test(test_unknown_delete),
        cmocka_unit_test(test_cas_swaps_what_it_expects),
        cmocka_unit_test(test_cas_swap_needs_the_expected_value),
        cmocka_unit_test(test_cas_mismatch_reports_what_the_key_held),
        cmocka_unit_test(test_cas_on_a_missing_key),
        cmocka_unit_test(test_unknown_cas),
        cmocka_unit_test(test_list_returns_the_keys_with_the_prefix),
        cmocka_unit_test(test_list_missing_a_key_or_keeping_a_deleted_one_fails),
        cmocka_unit_test(test_list_sees_all_keys_at_one_instant),
        cmocka_unit_test(test_list_concurrent_with_a_put),
        cmocka_unit_test(test_list_result_is_checked_before_the_search),
        cmocka_unit_test(test_unknown_put_seen_by_a_list),
        cmocka_unit_test(test_groups_and_ignored_operations),
        cmocka_unit_test(test_add_refuses_incomplete_operations),
        cmocka_unit_test(test_generated_linearizable_histories_pass),
        cmocka_unit_test(test_generated_history_with_an_answer_from_the_future_fails),
        cmocka_unit_test(test_large_mixed_history_is_checked_quickly),
    };
    return cmocka_run_group_tests_name("lincheck: delete, cas and list in the model", tests,
                                       NULL, NULL);
}
