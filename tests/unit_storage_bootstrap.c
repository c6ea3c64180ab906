/*
 * unit_storage_bootstrap.c - the configuration a cluster started from
 * (raft/storage/bootstrap.c): the first --peers is recorded, later starts
 * get the recorded one whatever they give, a directory with no record (an
 * older release, or a node that waits to be added) takes what is given or
 * nothing, and a damaged record stops the start with the file and offset.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/storage_fixture.h"

static struct raft_membership peers_of(uint32_t n, uint16_t base_port)
{
    char buf[RAFT_MAX_NODES][32];
    const char *addrs[RAFT_MAX_NODES];
    for (uint32_t i = 0; i < n; i++) {
        snprintf(buf[i], sizeof(buf[i]), "127.0.0.1:%u", (unsigned)(base_port + i));
        addrs[i] = buf[i];
    }
    struct raft_membership m;
    raft_membership_of_size(&m, n, addrs);
    return m;
}

static void assert_same(const struct raft_membership *a, const struct raft_membership *b)
{
    assert_int_equal(a->n, b->n);
    for (uint32_t i = 0; i < a->n; i++) {
        assert_int_equal(a->members[i].id, b->members[i].id);
        assert_int_equal(a->members[i].voter, b->members[i].voter);
        assert_string_equal(a->members[i].addr, b->members[i].addr);
    }
}

static void test_first_peers_are_recorded_and_win_later(void **state)
{
    struct sfx *f = *state;
    struct raft_membership first = peers_of(3, 8000), used;
    assert_int_equal(file_storage_bootstrap(f->fs, &first, &used), 0);
    assert_same(&used, &first);
    assert_non_null(strstr(f->log, "recorded the bootstrap configuration (3 nodes)"));

    /* A restart with another list gets the first one back. */
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    raft_persisted_free(&p);
    struct raft_membership other = peers_of(5, 9000);
    assert_int_equal(file_storage_bootstrap(f->fs, &other, &used), 0);
    assert_same(&used, &first);
    /* So does one with none (started with --listen only). */
    struct raft_membership none = {0};
    assert_int_equal(file_storage_bootstrap(f->fs, &none, &used), 0);
    assert_same(&used, &first);
}

/* Without a record and without --peers, the node is in no configuration,
 * and nothing is written: a later --peers is still the first. */
static void test_no_peers_and_no_record_is_no_configuration(void **state)
{
    struct sfx *f = *state;
    struct raft_membership none = {0}, used = peers_of(2, 1);
    assert_int_equal(file_storage_bootstrap(f->fs, &none, &used), 0);
    assert_int_equal(used.n, 0);
    char path[256];
    sfx_path(f, "bootstrap", path, sizeof(path));
    assert_int_equal(access(path, F_OK), -1);
    struct raft_membership later = peers_of(3, 7000);
    assert_int_equal(file_storage_bootstrap(f->fs, &later, &used), 0);
    assert_same(&used, &later);
    assert_int_equal(access(path, F_OK), 0);
}

/* A directory an older release wrote (log, term, no record) starts from
 * the --peers given, which is recorded, and its log is untouched. */
static void test_directory_of_an_older_release_takes_the_peers_given(void **state)
{
    struct sfx *f = *state;
    struct raft_persisted p;
    assert_int_equal(f->st.load(f->st.ctx, &p), 0);
    raft_persisted_free(&p);
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 4, 0), 0);
    sfx_append_range(f, 1, 10, 4, 3);
    assert_int_equal(sfx_reload(f, &p), 0);
    raft_persisted_free(&p);

    struct raft_membership given = peers_of(3, 8000), used;
    assert_int_equal(file_storage_bootstrap(f->fs, &given, &used), 0);
    assert_same(&used, &given);
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.term, 4);
    sfx_check_range(&p, 1, 10, 4);
    raft_persisted_free(&p);
}

static void damaged_record_is_refused(struct sfx *f, off_t flip, const char *what,
                                      const char *offset)
{
    struct raft_membership given = peers_of(3, 8000), used;
    assert_int_equal(file_storage_bootstrap(f->fs, &given, &used), 0);
    char path[256];
    sfx_path(f, "bootstrap", path, sizeof(path));
    sfx_flip_byte(path, flip);
    assert_int_equal(file_storage_bootstrap(f->fs, &given, &used), -EBADMSG);
    const char *err = file_storage_error(f->fs);
    if (!strstr(err, what) || !strstr(err, offset))
        fprintf(stderr, "error: %s\n", err);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, what));
    assert_non_null(strstr(err, offset));
    assert_null(strchr(err, '\n'));
}

static void test_flipped_address_byte_is_a_bad_checksum(void **state)
{
    damaged_record_is_refused(*state, 30, "bad checksum", "at offset 0");
}

static void test_flipped_length_is_named_with_its_offset(void **state)
{
    damaged_record_is_refused(*state, 11, "longer than its header says", "at offset 8");
}

static void test_flipped_magic_is_not_a_bootstrap_file(void **state)
{
    damaged_record_is_refused(*state, 0, "not a bootstrap file", "at offset 0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        IN_FRESH_DIR(test_first_peers_are_recorded_and_win_later),
        IN_FRESH_DIR(test_no_peers_and_no_record_is_no_configuration),
        IN_FRESH_DIR(test_directory_of_an_older_release_takes_the_peers_given),
        IN_FRESH_DIR(test_flipped_address_byte_is_a_bad_checksum),
        IN_FRESH_DIR(test_flipped_length_is_named_with_its_offset),
        IN_FRESH_DIR(test_flipped_magic_is_not_a_bootstrap_file),
    };
    return cmocka_run_group_tests_name("unit_storage_bootstrap", tests, NULL, NULL);
}
