/*
 * unit_dump_config.c - `raft dump` shows configurations (thesis ch. 4)
 * wherever a data directory holds them: configuration entries of the log
 * decoded ("config: n0 n1 n3 (learner)" with the addresses), the
 * snapshot's configuration and where the state machine's bytes start, and
 * the bootstrap configuration; a damaged configuration is named corrupt
 * and the dump fails.
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

#include "raft/membership.h"
#include "tests/support/storage_fixture.h"

/* Members 0, 1 and 3, n3 a learner; n2 removed. */
static struct raft_membership three_of_four(void)
{
    const char *addrs[] = {"127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8003"};
    struct raft_membership m;
    raft_membership_of_size(&m, 3, addrs);
    m.members[2].id = 3;
    m.members[2].voter = false;
    m.removed = 1u << 2;
    return m;
}

static char *dump_text(struct sfx *f, int want_rc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(file_storage_dump(f->dir, out, NULL), want_rc);
    fclose(out);
    return text;
}

static void test_config_entries_are_decoded_with_addresses(void **state)
{
    struct sfx *f = *state;
    struct raft_membership m = three_of_four();
    uint8_t conf[RAFT_MEMBERSHIP_MAX_BYTES];
    uint32_t conf_len = (uint32_t)raft_membership_encode(&m, conf);
    struct raft_entry e[2] = {
        {.term = 2, .type = RAFT_ENTRY_NOOP},
        {.term = 2, .type = RAFT_ENTRY_CONFIG, .len = conf_len, .data = conf},
    };
    assert_int_equal(f->st.append(f->st.ctx, 1, e, 2), 0);
    char *text = dump_text(f, 0);
    char want[256];
    snprintf(want, sizeof(want), "\n         2      2  config  %8u  config: n0 n1 n3 (learner) "
             "[127.0.0.1:8000 127.0.0.1:8001 127.0.0.1:8003], removed n2\n", conf_len);
    if (!strstr(text, want))
        fprintf(stderr, "%s", text);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "bootstrap: none recorded"));
    free(text);
}

/* A configuration entry whose bytes are not one is shown as bytes. */
static void test_config_entry_that_does_not_decode_is_shown_as_bytes(void **state)
{
    struct sfx *f = *state;
    struct raft_entry e = {.term = 1, .type = RAFT_ENTRY_CONFIG, .len = 3,
                           .data = (uint8_t *)"\x09xy"};
    assert_int_equal(f->st.append(f->st.ctx, 1, &e, 1), 0);
    char *text = dump_text(f, 0);
    assert_non_null(strstr(text, "  config         3  \"\\x09xy\"\n"));
    free(text);
}

static void test_snapshot_config_and_state_offset_are_shown(void **state)
{
    struct sfx *f = *state;
    struct raft_membership m = three_of_four();
    uint8_t data[MEMBERSHIP_SNAPSHOT_HEADER_MAX + 5];
    size_t head = membership_snapshot_header(&m, data);
    memcpy(data + head, "state", 5);
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 9, 3, data, head + 5), 0);
    char *text = dump_text(f, 0);
    char want[256];
    snprintf(want, sizeof(want), "  config: n0 n1 n3 (learner) [127.0.0.1:8000 "
             "127.0.0.1:8001 127.0.0.1:8003], removed n2\n  state machine: 5 bytes from "
             "offset %zu of the data\n", head);
    if (!strstr(text, want))
        fprintf(stderr, "%s", text);
    assert_non_null(strstr(text, want));
    free(text);

    /* A snapshot of an older release has the state machine's bytes alone. */
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 10, 3, (const uint8_t *)"bare", 4), 0);
    text = dump_text(f, 0);
    assert_non_null(strstr(text, "  config: none (written before snapshots carried one)\n"));
    free(text);

    /* A configuration header that does not decode is corruption. */
    data[8] = 9; /* the configuration's version byte */
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 11, 3, data, head + 5), 0);
    text = dump_text(f, -EBADMSG);
    assert_non_null(strstr(text, "  config: not a configuration (corrupt)\n"));
    free(text);
}

static void test_bootstrap_configuration_is_shown(void **state)
{
    struct sfx *f = *state;
    const char *addrs[] = {"10.0.0.1:8000", "10.0.0.2:8000"};
    struct raft_membership m, used;
    raft_membership_of_size(&m, 2, addrs);
    assert_int_equal(file_storage_bootstrap(f->fs, &m, &used), 0);
    char *text = dump_text(f, 0);
    assert_non_null(strstr(text, "bootstrap: n0 n1 [10.0.0.1:8000 10.0.0.2:8000]\n"));
    free(text);
    char path[256];
    sfx_path(f, "bootstrap", path, sizeof(path));
    sfx_flip_byte(path, 20);
    text = dump_text(f, -EBADMSG);
    assert_non_null(strstr(text, "bootstrap: bad checksum at offset 0 (corrupt)\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        IN_FRESH_DIR(test_config_entries_are_decoded_with_addresses),
        IN_FRESH_DIR(test_config_entry_that_does_not_decode_is_shown_as_bytes),
        IN_FRESH_DIR(test_snapshot_config_and_state_offset_are_shown),
        IN_FRESH_DIR(test_bootstrap_configuration_is_shown),
    };
    return cmocka_run_group_tests_name("unit_dump_config", tests, NULL, NULL);
}
