/*
 * unit_storage_identity.c - a data directory belongs to one node id: the
 * first start records it, a start under another id is refused with one
 * sentence naming the directory and both ids (and nothing on disk changes),
 * a directory of an older release takes the id given, and a damaged record
 * stops the start rather than being guessed at.
 *
 * And to one cluster: the same, for the cluster id a bootstrapping node
 * brings; a node not yet in a cluster brings none and learns the
 * directory's, or records the one it adopts.
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

static void node_id_path(const struct sfx *f, char *out, size_t cap)
{
    sfx_path(f, "node-id", out, cap);
}

/* The file's bytes, for comparing before and after. */
static size_t read_bytes(const char *path, uint8_t *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, cap);
    close(fd);
    assert_true(n >= 0);
    return (size_t)n;
}

static void test_first_start_records_the_id_and_the_same_id_starts_again(void **state)
{
    struct sfx *f = *state;
    char path[256];
    node_id_path(f, path, sizeof(path));
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(file_storage_claim_id(f->fs, 2), 0);
    assert_int_equal(sfx_file_size(path), 16);
    assert_non_null(strstr(f->log, "recorded as the data directory of node 2"));

    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    raft_persisted_free(&p);
    assert_int_equal(file_storage_claim_id(f->fs, 2), 0);
    assert_null(strstr(f->log, "recorded")); /* written once, not at every start */
}

static void test_another_id_is_refused_naming_directory_and_both_ids(void **state)
{
    struct sfx *f = *state;
    assert_int_equal(file_storage_claim_id(f->fs, 0), 0);
    char path[256];
    node_id_path(f, path, sizeof(path));
    uint8_t before[64], after[64];
    size_t n_before = read_bytes(path, before, sizeof(before));

    sfx_close(f);
    sfx_open(f);
    f->log[0] = '\0';
    assert_int_equal(file_storage_claim_id(f->fs, 1), -EEXIST);
    const char *err = file_storage_error(f->fs);
    assert_non_null(strstr(err, f->dir));
    assert_non_null(strstr(err, "belongs to node 0"));
    assert_non_null(strstr(err, "node 1 was asked"));
    assert_non_null(strstr(f->log, err)); /* and it was logged, as one line */
    assert_null(strchr(err, '\n'));

    size_t n_after = read_bytes(path, after, sizeof(after));
    assert_int_equal(n_after, n_before);
    assert_memory_equal(after, before, n_before);
    /* The rightful owner still starts. */
    assert_int_equal(file_storage_claim_id(f->fs, 0), 0);
}

/* An older release wrote term, vote and log but no node-id file: the id
 * given takes the directory, and what it held is still there. */
static void test_directory_of_an_older_release_takes_the_id_given(void **state)
{
    struct sfx *f = *state;
    struct raft_persisted p;
    assert_int_equal(f->st.load(f->st.ctx, &p), 0);
    raft_persisted_free(&p);
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 7, 1), 0);
    sfx_append_range(f, 1, 5, 7, 2);

    assert_int_equal(sfx_reload(f, &p), 0);
    raft_persisted_free(&p);
    assert_int_equal(file_storage_claim_id(f->fs, 1), 0);
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.term, 7);
    assert_int_equal(p.voted_for, 1);
    assert_int_equal(p.n_entries, 5);
    raft_persisted_free(&p);
    assert_int_equal(file_storage_claim_id(f->fs, 1), 0);
    assert_int_equal(file_storage_claim_id(f->fs, 0), -EEXIST);
}

static void test_damaged_record_stops_the_start(void **state)
{
    struct sfx *f = *state;
    assert_int_equal(file_storage_claim_id(f->fs, 3), 0);
    char path[256];
    node_id_path(f, path, sizeof(path));
    sfx_flip_byte(path, 9); /* inside the id: only the checksum tells */
    assert_int_equal(file_storage_claim_id(f->fs, 3), -EBADMSG);
    assert_non_null(strstr(file_storage_error(f->fs), path));
    assert_non_null(strstr(file_storage_error(f->fs), "bad checksum"));
}

/* A crash before the rename leaves only node-id.tmp: no record yet, so the
 * next start records its id as a first start would. */
static void test_leftover_temp_file_is_no_record(void **state)
{
    struct sfx *f = *state;
    char tmp[256];
    sfx_path(f, "node-id.tmp", tmp, sizeof(tmp));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "RFTN", 4), 4); /* cut short */
    close(fd);
    assert_int_equal(file_storage_claim_id(f->fs, 4), 0);
    assert_int_equal(file_storage_claim_id(f->fs, 5), -EEXIST);
}

/* ---- the cluster id ---- */

static const uint8_t cluster_a[16] = {0xaa, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                      0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
static const uint8_t cluster_b[16] = {0xbb, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                      0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};

static void test_bootstrap_records_the_cluster_and_it_starts_again(void **state)
{
    struct sfx *f = *state;
    uint8_t id[16];
    bool known;
    assert_int_equal(file_storage_claim_cluster(f->fs, cluster_a, id, &known), 0);
    assert_true(known);
    assert_memory_equal(id, cluster_a, 16);
    char path[256];
    sfx_path(f, "cluster-id", path, sizeof(path));
    assert_int_equal(sfx_file_size(path), 28);
    assert_non_null(strstr(f->log, "recorded as a data directory of cluster aa0102030405"));
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    raft_persisted_free(&p);
    memset(id, 0, sizeof(id));
    assert_int_equal(file_storage_claim_cluster(f->fs, cluster_a, id, &known), 0);
    assert_memory_equal(id, cluster_a, 16);
    assert_null(strstr(f->log, "recorded"));
    /* Started with no cluster of its own (joining later): it learns it. */
    memset(id, 0, sizeof(id));
    assert_int_equal(file_storage_claim_cluster(f->fs, NULL, id, &known), 0);
    assert_true(known);
    assert_memory_equal(id, cluster_a, 16);
}

static void test_another_cluster_is_refused_naming_directory_and_both(void **state)
{
    struct sfx *f = *state;
    uint8_t id[16];
    bool known;
    assert_int_equal(file_storage_claim_cluster(f->fs, cluster_a, id, &known), 0);
    char path[256];
    sfx_path(f, "cluster-id", path, sizeof(path));
    uint8_t before[64], after[64];
    size_t n_before = read_bytes(path, before, sizeof(before));
    assert_int_equal(file_storage_claim_cluster(f->fs, cluster_b, id, &known), -EEXIST);
    const char *why = file_storage_error(f->fs);
    assert_non_null(strstr(why, f->dir));
    assert_non_null(strstr(why, "belongs to cluster aa0102030405"));
    assert_non_null(strstr(why, "started for cluster bb0102030405"));
    assert_null(strchr(why, '\n'));
    size_t n_after = read_bytes(path, after, sizeof(after));
    assert_int_equal(n_after, n_before);
    assert_memory_equal(after, before, n_before);
    /* Nor can a node adopt a second cluster later. */
    assert_int_equal(file_storage_record_cluster(f->fs, cluster_b), -EEXIST);
    assert_int_equal(file_storage_record_cluster(f->fs, cluster_a), 0);
}

static void test_no_cluster_yet_then_adopted(void **state)
{
    struct sfx *f = *state;
    uint8_t id[16];
    bool known = true;
    assert_int_equal(file_storage_claim_cluster(f->fs, NULL, id, &known), 0);
    assert_false(known);
    char path[256];
    sfx_path(f, "cluster-id", path, sizeof(path));
    assert_int_equal(access(path, F_OK), -1); /* nothing written for no cluster */
    assert_int_equal(file_storage_record_cluster(f->fs, cluster_b), 0);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    raft_persisted_free(&p);
    assert_int_equal(file_storage_claim_cluster(f->fs, NULL, id, &known), 0);
    assert_true(known);
    assert_memory_equal(id, cluster_b, 16);
    assert_int_equal(file_storage_claim_cluster(f->fs, cluster_a, id, &known), -EEXIST);
}

static void test_damaged_cluster_record_stops_the_start(void **state)
{
    struct sfx *f = *state;
    uint8_t id[16];
    bool known;
    assert_int_equal(file_storage_claim_cluster(f->fs, cluster_a, id, &known), 0);
    char path[256];
    sfx_path(f, "cluster-id", path, sizeof(path));
    sfx_flip_byte(path, 12); /* inside the id: only the checksum tells */
    assert_int_equal(file_storage_claim_cluster(f->fs, cluster_a, id, &known), -EBADMSG);
    assert_non_null(strstr(file_storage_error(f->fs), path));
    assert_non_null(strstr(file_storage_error(f->fs), "bad checksum"));
    assert_int_equal(file_storage_claim_cluster(f->fs, NULL, id, &known), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        IN_FRESH_DIR(test_first_start_records_the_id_and_the_same_id_starts_again),
        IN_FRESH_DIR(test_another_id_is_refused_naming_directory_and_both_ids),
        IN_FRESH_DIR(test_directory_of_an_older_release_takes_the_id_given),
        IN_FRESH_DIR(test_damaged_record_stops_the_start),
        IN_FRESH_DIR(test_leftover_temp_file_is_no_record),
        IN_FRESH_DIR(test_bootstrap_records_the_cluster_and_it_starts_again),
        IN_FRESH_DIR(test_another_cluster_is_refused_naming_directory_and_both),
        IN_FRESH_DIR(test_no_cluster_yet_then_adopted),
        IN_FRESH_DIR(test_damaged_cluster_record_stops_the_start),
    };
    return cmocka_run_group_tests_name("unit_storage_identity", tests, NULL, NULL);
}
