/*
 * unit_storage_log.c - durable storage over real files, the log's life:
 * CRC-32C, round trips of term, vote and entries, truncation (Figure 2,
 * AppendEntries rule 3), snapshots (§7), and appends racing snapshots.
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

#include "raft/storage/crc32c.h"
#include "raft/storage/format.h"
#include "raft/storage/io.h"
#include "tests/support/storage_fixture.h"

/* ---- CRC32C ---- */

static void test_crc32c_matches_known_values(void **state)
{
    (void)state;
    uint8_t zeros[32] = { 0 }, ones[32], inc[32];
    memset(ones, 0xff, sizeof(ones));
    for (int i = 0; i < 32; i++)
        inc[i] = (uint8_t)i;
    /* The check value of the CRC catalogue, and RFC 3720 B.4's examples. */
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283);
    assert_int_equal(crc32c(0, zeros, 32), 0x8A9136AA);
    assert_int_equal(crc32c(0, ones, 32), 0x62A8AB43);
    assert_int_equal(crc32c(0, inc, 32), 0x46DD794E);
    assert_int_equal(crc32c(0, "", 0), 0);
    assert_int_equal(crc32c_portable(0, "123456789", 9), 0xE3069283);
    assert_int_equal(crc32c_portable(0, inc, 32), 0x46DD794E);
    /* Chaining over any split equals one pass, aligned or not. */
    for (size_t cut = 0; cut <= 9; cut++)
        assert_int_equal(crc32c(crc32c(0, "123456789", cut), "123456789" + cut, 9 - cut),
                         0xE3069283);
}

/* The processor's instruction (where crc32c uses it) and the tables agree
 * on every length and alignment, chained or not. */
static void test_crc32c_instruction_matches_tables(void **state)
{
    (void)state;
    uint8_t buf[4096 + 8];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len <= 300; len++) {
            uint32_t want = crc32c_portable(0, buf + off, len);
            assert_int_equal(crc32c(0, buf + off, len), want);
            size_t cut = len / 3;
            assert_int_equal(crc32c(crc32c(0, buf + off, cut), buf + off + cut, len - cut),
                             want);
        }
    assert_int_equal(crc32c(7, buf, 4096), crc32c_portable(7, buf, 4096));
    print_message("crc32c uses %s\n", crc32c_accelerated() ? "the processor's instruction"
                                                             : "lookup tables");
}

/* ---- round trips ---- */

static void test_empty_directory_loads_as_new_node(void **state)
{
    struct sfx *f = *state;
    struct raft_persisted p;
    assert_int_equal(f->st.load(f->st.ctx, &p), 0);
    assert_int_equal(p.term, 0);
    assert_int_equal(p.voted_for, RAFT_NO_NODE);
    assert_int_equal(p.snapshot_index, 0);
    assert_null(p.snapshot);
    assert_int_equal(p.n_entries, 0);
    raft_persisted_free(&p);
    struct stat st;
    assert_int_equal(stat(f->dir, &st), 0); /* created, with its parents */
    assert_true(S_ISDIR(st.st_mode));
}

static void test_term_and_vote_round_trip(void **state)
{
    struct sfx *f = *state;
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 1, RAFT_NO_NODE), 0);
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 7, 2), 0);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.term, 7);
    assert_int_equal(p.voted_for, 2);
    raft_persisted_free(&p);
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 8, RAFT_NO_NODE), 0);
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.term, 8);
    assert_int_equal(p.voted_for, RAFT_NO_NODE);
    raft_persisted_free(&p);
    char tmp[256];
    sfx_path(f, FMT_META_TMP_NAME, tmp, sizeof(tmp));
    assert_int_not_equal(access(tmp, F_OK), 0); /* renamed away */
}

static void test_append_load_round_trip_across_segments(void **state)
{
    struct sfx *f = *state;
    struct raft_persisted p;
    assert_int_equal(f->st.load(f->st.ctx, &p), 0);
    raft_persisted_free(&p);
    file_storage_set_segment_size(f->fs, 300);
    sfx_append_range(f, 1, 40, 1, 1);
    sfx_append_range(f, 41, 100, 2, 7);
    assert_true(sfx_count_segments(f) >= 5);
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, 100);
    sfx_check_range(&p, 1, 40, 1);
    sfx_check_range(&p, 41, 100, 2);
    raft_persisted_free(&p);
    /* Appending goes on where the log ends, after a restart too. */
    file_storage_set_segment_size(f->fs, 300);
    sfx_append_range(f, 101, 110, 3, 3);
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, 110);
    sfx_check_range(&p, 101, 110, 3);
    raft_persisted_free(&p);
}

static void test_append_must_continue_the_log(void **state)
{
    struct sfx *f = *state;
    sfx_append_range(f, 1, 3, 1, 3);
    uint8_t x = 'x';
    struct raft_entry e = { .term = 1, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &x };
    assert_int_equal(f->st.append(f->st.ctx, 5, &e, 1), -EINVAL); /* a gap */
    assert_int_equal(f->st.append(f->st.ctx, 3, &e, 1), -EINVAL); /* an overwrite */
    assert_non_null(strstr(file_storage_error(f->fs), "the log ends at 3"));
    assert_int_equal(f->st.append(f->st.ctx, 4, &e, 1), 0); /* not a failed storage */
}

/* ---- entries read back ---- */

/* read_entries gives back first..last exactly as appended, in `term`. */
static void check_read_back(struct sfx *f, uint64_t first, uint64_t last, uint64_t term)
{
    size_t n = (size_t)(last - first + 1);
    struct raft_entry *out = calloc(n, sizeof(*out));
    uint8_t *buf = NULL;
    size_t cap = 0;
    assert_int_equal(f->st.read_entries(f->st.ctx, first, n, out, &buf, &cap), 0);
    struct raft_persisted p = {.snapshot_index = first - 1, .entries = out, .n_entries = n};
    sfx_check_range(&p, first, last, term);
    free(out);
    free(buf);
}

static void test_entries_read_back_across_segments_and_truncation(void **state)
{
    struct sfx *f = *state;
    file_storage_set_segment_size(f->fs, 300);
    sfx_append_range(f, 1, 40, 1, 3);
    sfx_append_range(f, 41, 60, 2, 5);
    assert_true(sfx_count_segments(f) >= 4);
    check_read_back(f, 1, 40, 1);
    check_read_back(f, 41, 60, 2);
    check_read_back(f, 17, 17, 1);
    /* A cut in the middle of a segment, then new entries where it was. */
    assert_int_equal(f->st.truncate(f->st.ctx, 50), 0);
    sfx_append_range(f, 50, 55, 3, 2);
    check_read_back(f, 50, 55, 3);
    check_read_back(f, 41, 49, 2);
    /* After a restart the offsets come from the recovery scan. */
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    raft_persisted_free(&p);
    check_read_back(f, 30, 40, 1);
    check_read_back(f, 50, 55, 3);
    struct raft_entry e[2];
    uint8_t *buf = NULL;
    size_t cap = 0;
    assert_int_equal(f->st.read_entries(f->st.ctx, 55, 2, e, &buf, &cap), -EINVAL);
    uint8_t snap[8] = {0};
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 45, 2, snap, sizeof(snap)), 0);
    assert_int_equal(f->st.read_entries(f->st.ctx, 45, 1, e, &buf, &cap), -ESTALE);
    check_read_back(f, 46, 49, 2);
    free(buf);
}

static void test_entries_left_on_disk_at_load(void **state)
{
    struct sfx *f = *state;
    sfx_append_range(f, 1, 9, 1, 9);
    uint8_t members[4] = {1, 2, 3, 4};
    struct raft_entry config = {.term = 1, .type = RAFT_ENTRY_CONFIG, .len = 4, .data = members};
    assert_int_equal(f->st.append(f->st.ctx, 10, &config, 1), 0);
    sfx_close(f);
    sfx_open(f);
    file_storage_leave_entries_on_disk(f->fs);
    struct raft_persisted p;
    assert_int_equal(f->st.load(f->st.ctx, &p), 0);
    assert_int_equal(p.n_entries, 10);
    for (size_t i = 0; i < 9; i++) {
        assert_null(p.entries[i].data);
        assert_int_equal(p.entries[i].len, sfx_entry_data(i + 1, 1, (uint8_t[128]){0}));
    }
    assert_memory_equal(p.entries[9].data, members, 4); /* configurations stay */
    raft_persisted_free(&p);
    check_read_back(f, 1, 9, 1);
}

static void test_corrupt_entry_read_back_names_file_and_offset(void **state)
{
    struct sfx *f = *state;
    sfx_append_range(f, 1, 5, 1, 5);
    char path[256];
    sfx_segment_path(f, 1, path, sizeof(path));
    off_t third = sfx_entry_size(1) + sfx_entry_size(2);
    sfx_flip_byte(path, third + 30);
    struct raft_entry e[5];
    uint8_t *buf = NULL;
    size_t cap = 0;
    assert_int_equal(f->st.read_entries(f->st.ctx, 1, 5, e, &buf, &cap), -EBADMSG);
    char want[320];
    snprintf(want, sizeof(want), "%s: a bad checksum in the record of entry 3 at offset %lld",
             path, (long long)third);
    assert_non_null(strstr(file_storage_error(f->fs), want));
    free(buf);
}

/* ---- truncation ---- */

static void test_truncate_then_append_then_load(void **state)
{
    struct sfx *f = *state;
    file_storage_set_segment_size(f->fs, 200);
    sfx_append_range(f, 1, 30, 1, 2);
    int before = sfx_count_segments(f);
    /* Inside the last segment. */
    assert_int_equal(f->st.truncate(f->st.ctx, 29), 0);
    sfx_append_range(f, 29, 32, 2, 2);
    /* Several segments back, in the middle of one. */
    assert_int_equal(f->st.truncate(f->st.ctx, 12), 0);
    assert_true(sfx_count_segments(f) < before);
    sfx_append_range(f, 12, 20, 3, 4);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, 20);
    sfx_check_range(&p, 1, 11, 1);
    sfx_check_range(&p, 12, 20, 3);
    raft_persisted_free(&p);
    /* At the very first index of a segment: the whole file goes. */
    file_storage_set_segment_size(f->fs, 200);
    char seg[256];
    sfx_segment_path(f, 12, seg, sizeof(seg));
    assert_int_equal(access(seg, F_OK), 0);
    assert_int_equal(f->st.truncate(f->st.ctx, 12), 0);
    assert_int_not_equal(access(seg, F_OK), 0);
    /* Beyond the end: nothing to do. */
    assert_int_equal(f->st.truncate(f->st.ctx, 50), 0);
    sfx_append_range(f, 12, 13, 4, 1);
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, 13);
    sfx_check_range(&p, 1, 11, 1);
    sfx_check_range(&p, 12, 13, 4);
    raft_persisted_free(&p);
}

static void test_truncate_everything(void **state)
{
    struct sfx *f = *state;
    file_storage_set_segment_size(f->fs, 150);
    sfx_append_range(f, 1, 12, 1, 3);
    assert_int_equal(f->st.truncate(f->st.ctx, 1), 0);
    assert_int_equal(sfx_count_segments(f), 0);
    sfx_append_range(f, 1, 2, 2, 2);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.n_entries, 2);
    sfx_check_range(&p, 1, 2, 2);
    raft_persisted_free(&p);
}

/* ---- snapshots ---- */

static void test_snapshot_then_load(void **state)
{
    struct sfx *f = *state;
    file_storage_set_segment_size(f->fs, 200);
    sfx_append_range(f, 1, 40, 1, 2);
    int before = sfx_count_segments(f);
    char first_seg[256];
    sfx_segment_path(f, 1, first_seg, sizeof(first_seg));
    const uint8_t snap[] = "state at 25";
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 25, 1, snap, sizeof(snap)), 0);
    assert_true(sfx_count_segments(f) < before);
    assert_int_not_equal(access(first_seg, F_OK), 0); /* whole segments deleted */
    sfx_append_range(f, 41, 45, 2, 5);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.snapshot_index, 25);
    assert_int_equal(p.snapshot_term, 1);
    assert_int_equal(p.snapshot_len, sizeof(snap));
    assert_null(p.snapshot); /* checked, and left in the file */
    uint8_t back[sizeof(snap)];
    assert_int_equal(f->st.read_snapshot(f->st.ctx, 25, 0, back, sizeof(back)), 0);
    assert_memory_equal(back, snap, sizeof(snap));
    assert_int_equal(p.n_entries, 20); /* 26..45; nothing at or before 25 */
    sfx_check_range(&p, 26, 40, 1);
    sfx_check_range(&p, 41, 45, 2);
    raft_persisted_free(&p);
    /* A truncation cannot reach into the snapshot. */
    assert_int_equal(f->st.truncate(f->st.ctx, 25), -EINVAL);
    /* An empty snapshot is a snapshot too. */
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 30, 1, NULL, 0), 0);
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.snapshot_index, 30);
    assert_int_equal(p.snapshot_len, 0);
    assert_int_equal(p.n_entries, 15);
    sfx_check_range(&p, 31, 40, 1);
    raft_persisted_free(&p);
}

/* The chunks a leader sends are read back from the stored snapshot; a
 * read for a snapshot that was replaced meanwhile says so. */
static void test_snapshot_read_back_in_chunks(void **state)
{
    struct sfx *f = *state;
    uint8_t snap[3000];
    for (size_t i = 0; i < sizeof(snap); i++)
        snap[i] = (uint8_t)(i * 7);
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 12, 2, snap, sizeof(snap)), 0);
    uint8_t got[sizeof(snap)];
    for (size_t off = 0; off < sizeof(snap); off += 1024) {
        size_t len = sizeof(snap) - off < 1024 ? sizeof(snap) - off : 1024;
        assert_int_equal(f->st.read_snapshot(f->st.ctx, 12, off, got + off, len), 0);
    }
    assert_memory_equal(got, snap, sizeof(snap));
    assert_int_equal(f->st.read_snapshot(f->st.ctx, 12, 2999, got, 2), -EINVAL);
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 20, 2, snap, 10), 0);
    assert_int_equal(f->st.read_snapshot(f->st.ctx, 12, 0, got, 10), -ESTALE);
    assert_int_equal(f->st.read_snapshot(f->st.ctx, 20, 0, got, 10), 0);
    assert_memory_equal(got, snap, 10);
}

/* A streamed snapshot reaches the disk as it is written, a window at a
 * time, never more than two windows ahead of the disk, and is synced once
 * at its end; an I/O layer without write-back syncs each window instead.
 * Either way it loads back byte for byte. */
struct writeback_probe {
    const struct storage_io *posix;
    bool writing;       /* between begin_snapshot and end_snapshot */
    int snapshot_fd;    /* the last file opened for writing */
    off_t written;      /* its end */
    off_t waited;       /* what the last waiting write-back covered */
    off_t max_ahead;    /* the most written and not yet waited for */
    int syncs_while_writing, write_backs;
};

static struct writeback_probe probe;

static int probe_open(void *ctx, const char *path, int flags, mode_t mode)
{
    int fd = probe.posix->open(ctx, path, flags, mode);
    if (fd >= 0 && (flags & O_CREAT) && strstr(path, "snapshot")) {
        probe.snapshot_fd = fd;
        probe.written = probe.waited = FMT_SNAPSHOT_HEADER_SIZE; /* the header comes last */
    }
    return fd;
}

static ssize_t probe_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    ssize_t n = probe.posix->pwrite(ctx, fd, buf, len, off);
    if (fd == probe.snapshot_fd && n > 0 && off + n > probe.written) {
        probe.written = off + n;
        if (probe.written - probe.waited > probe.max_ahead)
            probe.max_ahead = probe.written - probe.waited;
    }
    return n;
}

static int probe_fdatasync(void *ctx, int fd)
{
    if (probe.writing && fd == probe.snapshot_fd) {
        probe.syncs_while_writing++;
        probe.waited = probe.written;
    }
    return probe.posix->fdatasync(ctx, fd);
}

static int probe_write_back(void *ctx, int fd, off_t off, off_t len, bool wait)
{
    assert_int_equal(fd, probe.snapshot_fd);
    probe.write_backs++;
    if (wait) {
        assert_true(off <= probe.waited); /* the windows are waited for in order */
        probe.waited = off + len;
    }
    return probe.posix->write_back(ctx, fd, off, len, wait);
}

static void write_streamed_snapshot(struct sfx *f, bool offer_write_back)
{
    if (!storage_io_posix()->write_back)
        skip(); /* not Linux: nothing offers write-back */
    struct storage_io io = *storage_io_posix();
    io.open = probe_open;
    io.pwrite = probe_pwrite;
    io.fdatasync = probe_fdatasync;
    io.write_back = offer_write_back ? probe_write_back : NULL;
    probe = (struct writeback_probe){.posix = storage_io_posix(), .snapshot_fd = -1};
    sfx_close(f);
    assert_int_equal(file_storage_open_with_io(&f->fs, f->dir, sfx_capture_log, f, &io), 0);
    f->st = file_storage_ops(f->fs);
    struct raft_persisted p;
    assert_int_equal(f->st.load(f->st.ctx, &p), 0);
    raft_persisted_free(&p);

    enum { PIECE = 64 * 1024, TOTAL = 5 * 1024 * 1024 + 100 };
    uint8_t *snap = malloc(TOTAL);
    assert_non_null(snap);
    for (size_t i = 0; i < TOTAL; i++)
        snap[i] = (uint8_t)(i * 31 + (i >> 12));
    void *w;
    assert_int_equal(f->st.begin_snapshot(f->st.ctx, 40, 3, &w), 0);
    probe.writing = true;
    for (size_t off = 0; off < TOTAL; off += PIECE)
        assert_int_equal(f->st.write_snapshot(w, snap + off,
                                              TOTAL - off < PIECE ? TOTAL - off : PIECE), 0);
    int syncs_before_end = probe.syncs_while_writing;
    assert_int_equal(f->st.end_snapshot(f->st.ctx, w, true), 0);
    probe.writing = false;

    const off_t window = 1 << 20;
    if (offer_write_back) {
        assert_int_equal(syncs_before_end, 0);
        assert_true(probe.write_backs >= 2 * (TOTAL / window) - 1);
        assert_true(probe.max_ahead <= 2 * (window + PIECE));
    } else {
        assert_int_equal(syncs_before_end, TOTAL / window);
        assert_true(probe.max_ahead <= window + PIECE);
    }
    assert_true(probe.syncs_while_writing > syncs_before_end); /* the end is synced */

    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.snapshot_index, 40);
    assert_int_equal(p.snapshot_len, TOTAL);
    uint8_t *got = malloc(TOTAL);
    assert_non_null(got);
    for (size_t off = 0; off < TOTAL; off += PIECE) {
        size_t len = TOTAL - off < PIECE ? TOTAL - off : PIECE;
        assert_int_equal(f->st.read_snapshot(f->st.ctx, 40, off, got + off, len), 0);
    }
    assert_memory_equal(got, snap, TOTAL);
    raft_persisted_free(&p);
    free(got);
    free(snap);
}

static void test_streamed_snapshot_is_written_back_as_it_grows(void **state)
{
    write_streamed_snapshot(*state, true);
}

static void test_streamed_snapshot_without_write_back_syncs_each_window(void **state)
{
    write_streamed_snapshot(*state, false);
}

static void test_snapshot_beyond_log_end(void **state)
{
    struct sfx *f = *state;
    file_storage_set_segment_size(f->fs, 200);
    sfx_append_range(f, 1, 10, 1, 3);
    const uint8_t snap[] = "installed";
    /* InstallSnapshot: the snapshot covers more than the log holds. */
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 100, 4, snap, sizeof(snap)), 0);
    assert_int_equal(sfx_count_segments(f), 0);
    uint8_t x = 'x';
    struct raft_entry e = { .term = 4, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &x };
    assert_int_equal(f->st.append(f->st.ctx, 11, &e, 1), -EINVAL);
    sfx_append_range(f, 101, 103, 4, 3);
    char seg[256];
    sfx_segment_path(f, 101, seg, sizeof(seg));
    assert_int_equal(access(seg, F_OK), 0); /* a fresh segment at index + 1 */
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.snapshot_index, 100);
    assert_int_equal(p.snapshot_term, 4);
    assert_int_equal(p.n_entries, 3);
    sfx_check_range(&p, 101, 103, 4);
    raft_persisted_free(&p);
    /* And again with nothing appended after it. */
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 200, 5, snap, sizeof(snap)), 0);
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.snapshot_index, 200);
    assert_int_equal(p.n_entries, 0);
    raft_persisted_free(&p);
    sfx_append_range(f, 201, 201, 5, 1);
}

/* A crash between the snapshot's rename and the deletion of the segments
 * it covers leaves them behind: load skips and removes them. */
static void test_leftover_covered_segments_are_ignored(void **state)
{
    struct sfx *f = *state;
    file_storage_set_segment_size(f->fs, 200);
    sfx_append_range(f, 1, 30, 1, 2);
    /* Save a copy of the first segment, snapshot, then put it back. */
    char seg[256];
    sfx_segment_path(f, 1, seg, sizeof(seg));
    FILE *in = fopen(seg, "rb");
    assert_non_null(in);
    uint8_t copy[4096];
    size_t n = fread(copy, 1, sizeof(copy), in);
    fclose(in);
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 20, 1, (const uint8_t *)"s", 1), 0);
    assert_int_not_equal(access(seg, F_OK), 0);
    FILE *out = fopen(seg, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(copy, 1, n, out), n);
    fclose(out);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_int_equal(p.snapshot_index, 20);
    assert_int_equal(p.n_entries, 10);
    sfx_check_range(&p, 21, 30, 1);
    raft_persisted_free(&p);
    assert_int_not_equal(access(seg, F_OK), 0);
}

/* ---- concurrency ---- */

struct race {
    struct sfx *f;
    pthread_mutex_t mu;
    uint64_t appended; /* guarded by mu */
    bool done;
};

static void *snapshotter_main(void *arg)
{
    struct race *r = arg;
    uint64_t last_snap = 0;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        uint64_t upto = r->appended;
        bool done = r->done;
        pthread_mutex_unlock(&r->mu);
        if (done)
            break;
        if (upto > last_snap + 10) {
            assert_int_equal(r->f->st.save_snapshot(r->f->st.ctx, upto - 5, 1,
                                                    (const uint8_t *)"s", 1), 0);
            last_snap = upto - 5;
        }
    }
    return NULL;
}

/* The node never calls two functions at once, but the storage must not
 * break if it did: appends race with snapshots here. */
static void test_concurrent_append_and_snapshot(void **state)
{
    struct sfx *f = *state;
    file_storage_set_segment_size(f->fs, 256);
    struct race r = { .f = f, .appended = 0, .done = false };
    pthread_mutex_init(&r.mu, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, snapshotter_main, &r), 0);
    for (uint64_t i = 1; i <= 300; i += 3) {
        sfx_append_range(f, i, i + 2, 1, 3);
        pthread_mutex_lock(&r.mu);
        r.appended = i + 2;
        pthread_mutex_unlock(&r.mu);
    }
    pthread_mutex_lock(&r.mu);
    r.done = true;
    pthread_mutex_unlock(&r.mu);
    pthread_join(th, NULL);
    pthread_mutex_destroy(&r.mu);
    struct raft_persisted p;
    assert_int_equal(sfx_reload(f, &p), 0);
    assert_true(p.snapshot_index > 0 && p.snapshot_index < 300);
    assert_int_equal(p.n_entries, 300 - p.snapshot_index);
    sfx_check_range(&p, p.snapshot_index + 1, 300, 1);
    raft_persisted_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_matches_known_values),
        cmocka_unit_test(test_crc32c_instruction_matches_tables),
        IN_FRESH_DIR(test_empty_directory_loads_as_new_node),
        IN_FRESH_DIR(test_term_and_vote_round_trip),
        IN_FRESH_DIR(test_append_load_round_trip_across_segments),
        IN_FRESH_DIR(test_append_must_continue_the_log),
        IN_FRESH_DIR(test_entries_read_back_across_segments_and_truncation),
        IN_FRESH_DIR(test_entries_left_on_disk_at_load),
        IN_FRESH_DIR(test_corrupt_entry_read_back_names_file_and_offset),
        IN_FRESH_DIR(test_truncate_then_append_then_load),
        IN_FRESH_DIR(test_truncate_everything),
        IN_FRESH_DIR(test_snapshot_then_load),
        IN_FRESH_DIR(test_snapshot_read_back_in_chunks),
        IN_FRESH_DIR(test_streamed_snapshot_is_written_back_as_it_grows),
        IN_FRESH_DIR(test_streamed_snapshot_without_write_back_syncs_each_window),
        IN_FRESH_DIR(test_snapshot_beyond_log_end),
        IN_FRESH_DIR(test_leftover_covered_segments_are_ignored),
        IN_FRESH_DIR(test_concurrent_append_and_snapshot),
    };
    return cmocka_run_group_tests_name("unit_storage_log", tests, NULL, NULL);
}
