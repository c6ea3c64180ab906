/*
 * unit_dump_describe.c - puts in words: kv_describe_entry (key, value,
 * client, seq; escaped and cut where needed; anything else refused), and
 * `raft dump` printing a data directory's commands through it, with the
 * raw bytes kept for what it cannot describe.
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

#include "kv/kv.h"
#include "tests/support/storage_fixture.h"

/* An encoded put; returns its length. */
static uint32_t encode(uint8_t *buf, uint64_t client, uint64_t seq, const char *key,
                       uint32_t key_len, const char *value, uint32_t value_len)
{
    assert_true(kv_put_size(key_len, value_len) <= 512);
    return (uint32_t)kv_encode_put(buf, client, seq, 1234, (const uint8_t *)key, key_len,
                                   (const uint8_t *)value, value_len);
}

static void test_a_put_is_described_with_its_session(void **state)
{
    (void)state;
    uint8_t buf[512];
    char words[256];
    uint32_t len = encode(buf, 0xff, 7, "greeting", 8, "hello", 5);
    int n = kv_describe_entry(words, sizeof(words), buf, len);
    assert_string_equal(words, "put greeting = hello  (client 00000000000000ff, seq 7)");
    assert_int_equal(n, (int)strlen(words));

}

static void test_delete_and_cas_are_described_too(void **state)
{
    (void)state;
    uint8_t buf[512];
    char words[256];
    struct kv_command c = {.op = KV_OP_DELETE, .client_id = 2, .seq = 3,
                           .key = (const uint8_t *)"old", .key_len = 3};
    uint32_t len = (uint32_t)kv_encode_command(buf, &c);
    kv_describe_entry(words, sizeof(words), buf, len);
    assert_string_equal(words, "delete old  (client 0000000000000002, seq 3)");
    c = (struct kv_command){.op = KV_OP_CAS, .client_id = 2, .seq = 4,
                            .key = (const uint8_t *)"lock", .key_len = 4,
                            .expected = (const uint8_t *)"free", .expected_len = 4,
                            .value = (const uint8_t *)"mine", .value_len = 4};
    len = (uint32_t)kv_encode_command(buf, &c);
    kv_describe_entry(words, sizeof(words), buf, len);
    assert_string_equal(words, "cas lock if free = mine  (client 0000000000000002, seq 4)");
}

static void test_unprintable_bytes_are_escaped_and_long_values_cut(void **state)
{
    (void)state;
    uint8_t buf[512];
    char words[256], value[100];
    uint32_t len = encode(buf, 1, 1, "a\nb\\", 4, "", 0);
    kv_describe_entry(words, sizeof(words), buf, len);
    assert_string_equal(words, "put a\\x0ab\\x5c =   (client 0000000000000001, seq 1)");

    memset(value, 'v', sizeof(value));
    len = encode(buf, 1, 2, "k", 1, value, sizeof(value));
    kv_describe_entry(words, sizeof(words), buf, len);
    char want[128];
    snprintf(want, sizeof(want), "put k = %.64s...(100 bytes)  (client", value);
    assert_memory_equal(words, want, strlen(want));

    /* A buffer too small still ends in a NUL, and says how much it holds. */
    char small[10];
    assert_int_equal(kv_describe_entry(small, sizeof(small), buf, len), 9);
    assert_string_equal(small, "put k = v");
}

static void test_what_is_not_a_put_is_not_described(void **state)
{
    (void)state;
    uint8_t buf[512];
    char words[64];
    uint32_t len = encode(buf, 1, 1, "key", 3, "value", 5);
    assert_int_equal(kv_describe_entry(words, sizeof(words), buf, len - 1), -EBADMSG);
    buf[0] = 9; /* an operation that does not exist */
    assert_int_equal(kv_describe_entry(words, sizeof(words), buf, len), -EBADMSG);
    assert_int_equal(kv_describe_entry(words, sizeof(words), NULL, 0), -EBADMSG);
}

static void test_dump_prints_puts_in_words_and_other_bytes_as_they_are(void **state)
{
    struct sfx *f = *state;
    uint8_t put[512];
    uint32_t put_len = encode(put, 0xabc, 1, "greeting", 8, "hello", 5);
    struct raft_entry e[3] = {
        {.term = 1, .type = RAFT_ENTRY_NOOP},
        {.term = 1, .type = RAFT_ENTRY_COMMAND, .len = put_len, .data = put},
        {.term = 1, .type = RAFT_ENTRY_COMMAND, .len = 3, .data = (uint8_t *)"odd"},
    };
    assert_int_equal(f->st.append(f->st.ctx, 1, e, 3), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(file_storage_dump(f->dir, out, kv_describe_entry), 0);
    fclose(out);
    assert_non_null(strstr(text, "\n         1      1  noop           0  \"\"\n"));
    assert_non_null(strstr(text, "  command       46  put greeting = hello  "
                                 "(client 0000000000000abc, seq 1)\n"));
    assert_non_null(strstr(text, "\n         3      1  command        3  \"odd\"\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_put_is_described_with_its_session),
        cmocka_unit_test(test_delete_and_cas_are_described_too),
        cmocka_unit_test(test_unprintable_bytes_are_escaped_and_long_values_cut),
        cmocka_unit_test(test_what_is_not_a_put_is_not_described),
        IN_FRESH_DIR(test_dump_prints_puts_in_words_and_other_bytes_as_they_are),
    };
    return cmocka_run_group_tests_name("unit_dump_describe", tests, NULL, NULL);
}
