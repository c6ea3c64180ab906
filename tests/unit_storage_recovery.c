/*
 * unit_storage_recovery.c - what load makes of a damaged data directory:
 * every torn tail is cut, and corruption of synced data stops the node with
 * the file and offset named (the rules at the top of raft/storage/format.c);
 * `raft dump` shows the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "raft/storage/format.h"
#include "tests/support/storage_fixture.h"

/* ---- torn tails ---- */

static void test_every_torn_tail_is_cut(void **state)
{
    struct sfx *f = *state;
    enum { N = 6 };
    sfx_append_range(f, 1, N, 1, 1); /* one record per append */
    char seg[256];
    sfx_segment_path(f, 1, seg, sizeof(seg));
    off_t end = sfx_file_size(seg);
    off_t start = end - sfx_entry_size(N);
    FILE *in = fopen(seg, "rb");
    assert_non_null(in);
    uint8_t whole[4096];
    assert_int_equal(fread(whole, 1, (size_t)end, in), (size_t)end);
    fclose(in);
    for (off_t cut = start; cut < end; cut++) {
        FILE *out = fopen(seg, "wb");
        assert_non_null(out);
        assert_int_equal(fwrite(whole, 1, (size_t)cut, out), (size_t)cut);
        fclose(out);
        struct raft_persisted p;
        assert_int_equal(sfx_reload(f, &p), 0);
        assert_int_equal(p.n_entries, N - 1);
        sfx_check_range(&p, 1, N - 1, 1);
        raft_persisted_free(&p);
        assert_int_equal(sfx_file_size(seg), start);
        if (cut > start) {
            char expect[128];
            snprintf(expect, sizeof(expect), "%jd bytes from offset %jd", (intmax_t)(cut - start),
                     (intmax_t)start);
            assert_non_null(strstr(f->log, expect));
            assert_non_null(strstr(f->log, seg));
        } else {
            assert_null(strstr(f->log, "torn"));
        }
    }
    /* After the cut, appending continues in place. */
    sfx_append_range(f, N, N, 2, 1);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, N);
    sfx_check_range(&p, N, N, 2);
    raft_persisted_free(&p);
}

static void test_torn_batch_keeps_its_whole_records(void **state)
{
    struct sfx *f = *state;
    sfx_append_range(f, 1, 2, 1, 2);
    sfx_append_range(f, 3, 6, 1, 4); /* the last batch: 3..6 */
    char seg[256];
    sfx_segment_path(f, 1, seg, sizeof(seg));
    off_t cut = sfx_file_size(seg) - sfx_entry_size(6) - sfx_entry_size(5) / 2;
    assert_int_equal(truncate(seg, cut), 0);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, 4);
    sfx_check_range(&p, 1, 4, 1);
    raft_persisted_free(&p);
}

static void test_bad_checksum_in_last_record_is_cut(void **state)
{
    struct sfx *f = *state;
    sfx_append_range(f, 1, 5, 1, 1);
    char seg[256];
    sfx_segment_path(f, 1, seg, sizeof(seg));
    off_t end = sfx_file_size(seg);
    sfx_flip_byte(seg, end - 3);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, 4);
    raft_persisted_free(&p);
    assert_non_null(strstr(f->log, "a bad checksum"));
}

static void test_junk_after_valid_records_is_cut(void **state)
{
    struct sfx *f = *state;
    sfx_append_range(f, 1, 5, 1, 2);
    char seg[256];
    sfx_segment_path(f, 1, seg, sizeof(seg));
    off_t end = sfx_file_size(seg);
    uint8_t junk[100];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 97 + 13);
    sfx_append_bytes(seg, junk, sizeof(junk));
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, 5);
    sfx_check_range(&p, 1, 5, 1);
    raft_persisted_free(&p);
    assert_int_equal(sfx_file_size(seg), end);
    char expect[64];
    snprintf(expect, sizeof(expect), "100 bytes from offset %jd", (intmax_t)end);
    assert_non_null(strstr(f->log, expect));
    /* Zeros, as a file system may leave after a crash, are junk too. */
    uint8_t zeros[4096] = { 0 };
    sfx_append_bytes(seg, zeros, sizeof(zeros));
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, 5);
    raft_persisted_free(&p);
    assert_int_equal(sfx_file_size(seg), end);
}

/* A segment created, with nothing in it yet, when the power went. */
static void test_empty_last_segment_is_reused(void **state)
{
    struct sfx *f = *state;
    sfx_append_range(f, 1, 3, 1, 3);
    char seg[256];
    sfx_segment_path(f, 4, seg, sizeof(seg));
    FILE *out = fopen(seg, "wb");
    assert_non_null(out);
    fclose(out);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, 3);
    raft_persisted_free(&p);
    /* It is where the log continues. */
    sfx_append_range(f, 4, 4, 1, 1);
    assert_int_equal(sfx_file_size(seg), sfx_entry_size(4));
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, 4);
    sfx_check_range(&p, 1, 4, 1);
    raft_persisted_free(&p);
}

/* ---- corruption: refuse, naming file and offset ---- */

static void test_flipped_byte_in_earlier_record_fails(void **state)
{
    struct sfx *f = *state;
    sfx_append_range(f, 1, 6, 1, 1);
    char seg[256];
    sfx_segment_path(f, 1, seg, sizeof(seg));
    off_t rec3 = sfx_entry_size(1) + sfx_entry_size(2);
    sfx_flip_byte(seg, rec3 + 20); /* inside record 3's term */
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), -EBADMSG);
    assert_int_equal(p.n_entries, 0); /* nothing corrupt handed out */
    assert_null(p.entries);
    char expect[320];
    snprintf(expect, sizeof(expect), "%s: a bad checksum in the record at offset %jd", seg,
             (intmax_t)rec3);
    assert_non_null(strstr(file_storage_error(f->fs), expect));
    assert_non_null(strstr(f->log, expect)); /* and logged */
    assert_int_equal(sfx_file_size(seg), rec3 + sfx_entry_size(3) + sfx_entry_size(4) + sfx_entry_size(5) +
                                         sfx_entry_size(6)); /* nothing cut */
}

static void test_corruption_in_earlier_segment_fails(void **state)
{
    struct sfx *f = *state;
    file_storage_set_segment_size(f->fs, 100);
    sfx_append_range(f, 1, 12, 1, 1);
    assert_true(sfx_count_segments(f) >= 3);
    char seg[256];
    sfx_segment_path(f, 1, seg, sizeof(seg));
    off_t last = sfx_file_size(seg) - 2; /* the tail of a segment that is not the last */
    sfx_flip_byte(seg, last);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), -EBADMSG);
    assert_non_null(strstr(file_storage_error(f->fs), seg));
    assert_non_null(strstr(file_storage_error(f->fs), "later segments follow"));
}

static void test_length_corruption_is_not_mistaken_for_a_torn_tail(void **state)
{
    struct sfx *f = *state;
    sfx_append_range(f, 1, 6, 1, 1);
    char seg[256];
    sfx_segment_path(f, 1, seg, sizeof(seg));
    /* A flipped high bit of record 2's length sends it past the end. */
    sfx_flip_byte(seg, sfx_entry_size(1) + 5);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), -EBADMSG);
    char expect[64];
    snprintf(expect, sizeof(expect), "at offset %u", sfx_entry_size(1));
    assert_non_null(strstr(file_storage_error(f->fs), expect));
}

static void test_missing_segment_is_a_gap(void **state)
{
    struct sfx *f = *state;
    file_storage_set_segment_size(f->fs, 100);
    sfx_append_range(f, 1, 12, 1, 1);
    assert_true(sfx_count_segments(f) >= 3);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    raft_persisted_free(&p);
    /* Find the second segment and remove it. */
    uint64_t second = 0;
    for (uint64_t i = 2; i <= 12 && !second; i++) {
        char seg[256];
        sfx_segment_path(f, i, seg, sizeof(seg));
        if (access(seg, F_OK) == 0) {
            second = i;
            assert_int_equal(unlink(seg), 0);
        }
    }
    assert_true(second > 0);
    assert_int_equal(sfx_reload(f, &p), -EBADMSG);
    assert_non_null(strstr(file_storage_error(f->fs), "the log has a gap"));
}

static void test_corrupt_meta_fails_clearly(void **state)
{
    struct sfx *f = *state;
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 5, 2), 0);
    char meta[256];
    sfx_path(f, FMT_META_NAME, meta, sizeof(meta));
    sfx_flip_byte(meta, 12);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), -EBADMSG);
    char expect[320];
    snprintf(expect, sizeof(expect), "%s: bad checksum at offset 0", meta);
    assert_non_null(strstr(file_storage_error(f->fs), expect));
    /* Cut short. */
    assert_int_equal(truncate(meta, 10), 0);
    assert_int_equal(sfx_reload(f, &p), -EBADMSG);
    assert_non_null(strstr(file_storage_error(f->fs), "cut short at offset 10"));
}

static void test_corrupt_snapshot_fails_clearly(void **state)
{
    struct sfx *f = *state;
    sfx_append_range(f, 1, 5, 1, 5);
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 3, 1, (const uint8_t *)"abcdef", 6), 0);
    char snap[256];
    sfx_path(f, FMT_SNAPSHOT_NAME, snap, sizeof(snap));
    sfx_flip_byte(snap, FMT_SNAPSHOT_HEADER_SIZE + 2);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), -EBADMSG);
    assert_null(p.snapshot);
    assert_non_null(strstr(file_storage_error(f->fs), "bad checksum in the data at offset 40"));
    assert_non_null(strstr(file_storage_error(f->fs), snap));
}

/* ---- dump ---- */

static void test_dump_prints_the_directory(void **state)
{
    struct sfx *f = *state;
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 3, 1), 0);
    sfx_append_range(f, 1, 6, 2, 3);
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 2, 2, (const uint8_t *)"hello", 5), 0);
    char seg[256];
    sfx_segment_path(f, 1, seg, sizeof(seg));
    sfx_append_bytes(seg, "junk", 4);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(file_storage_dump(f->dir, out, NULL), 0);
    fclose(out);
    char line[256];
    snprintf(line, sizeof(line), "data directory: %s\n", f->dir);
    assert_non_null(strstr(text, line));
    assert_non_null(strstr(text, "\nterm: 3\n"));
    assert_non_null(strstr(text, "\nvoted for: n1\n"));
    assert_non_null(strstr(text, "\nsnapshot: index 2, term 2, 5 bytes\n"));
    assert_non_null(strstr(text, "\nlog-0000000000000001: "));
    assert_non_null(
        strstr(text, "\n         1      2  command        9  \"k1=v1-t2'\"  (in the snapshot)\n"));
    assert_non_null(strstr(text, "  (in the snapshot)\n         3      2  command"));
    assert_non_null(strstr(text, "\n         5      2  noop          13  \"k5=v5-t2\\xa3\\xa4"));
    assert_non_null(strstr(text, "a header cut short, a torn write: load will cut "
                                 "these 4 bytes\n"));
    free(text);
    /* Corruption makes it say so, and fail. */
    sfx_flip_byte(seg, 30);
    out = open_memstream(&text, &len);
    assert_int_equal(file_storage_dump(f->dir, out, NULL), -EBADMSG);
    fclose(out);
    assert_non_null(strstr(text, "offset 0: a bad checksum (corrupt"));
    free(text);
    out = open_memstream(&text, &len);
    assert_int_equal(file_storage_dump("/nonexistent/raft-dir", out, NULL), -ENOENT);
    fclose(out);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        IN_FRESH_DIR(test_every_torn_tail_is_cut),
        IN_FRESH_DIR(test_torn_batch_keeps_its_whole_records),
        IN_FRESH_DIR(test_bad_checksum_in_last_record_is_cut),
        IN_FRESH_DIR(test_junk_after_valid_records_is_cut),
        IN_FRESH_DIR(test_empty_last_segment_is_reused),
        IN_FRESH_DIR(test_flipped_byte_in_earlier_record_fails),
        IN_FRESH_DIR(test_corruption_in_earlier_segment_fails),
        IN_FRESH_DIR(test_length_corruption_is_not_mistaken_for_a_torn_tail),
        IN_FRESH_DIR(test_missing_segment_is_a_gap),
        IN_FRESH_DIR(test_corrupt_meta_fails_clearly),
        IN_FRESH_DIR(test_corrupt_snapshot_fails_clearly),
        IN_FRESH_DIR(test_dump_prints_the_directory),
    };
    return cmocka_run_group_tests_name("unit_storage_recovery", tests, NULL, NULL);
}
