/*
 * unit_storage.c - durable storage over real files: round trips, truncation,
 * snapshots, every torn tail, corruption that must stop the node, disk errors
 * (a fault at every write or sync in turn), the dump tool, and concurrent use.
 *
 * Each test gets a fresh directory under /tmp and removes it afterwards.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "raft/storage/crc32c.h"
#include "raft/storage/storage.h"
#include "raft/storage/format.h"

/* ---- fixture: a temporary data directory ---- */

struct fixture {
    char root[64];      /* mkdtemp'd */
    char dir[128];      /* root/data/node-0: created by the storage */
    struct file_storage *fs;
    struct raft_storage st;
    char log[16384];    /* every log line, one per line */
};

static void capture_log(void *ctx, enum raft_log_level lvl, const char *msg)
{
    struct fixture *f = ctx;
    size_t used = strlen(f->log);
    snprintf(f->log + used, sizeof(f->log) - used, "%d %s\n", (int)lvl, msg);
}

static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[512];
            snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void open_storage(struct fixture *f)
{
    assert_int_equal(file_storage_open(&f->fs, f->dir, capture_log, f), 0);
    f->st = file_storage_ops(f->fs);
}

static void close_storage(struct fixture *f)
{
    file_storage_close(f->fs);
    f->fs = NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->root, "/tmp/raft-storage-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->dir, sizeof(f->dir), "%s/data/node-0", f->root);
    open_storage(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->fs)
        close_storage(f);
    remove_tree(f->root);
    free(f);
    return 0;
}

static void free_persisted(struct raft_persisted *p)
{
    for (size_t i = 0; i < p->n_entries; i++)
        free(p->entries[i].data);
    free(p->entries);
    free(p->snapshot);
    memset(p, 0, sizeof(*p));
}

/* Closes and reopens the storage (a restart), then loads. */
static int reload(struct fixture *f, struct raft_persisted *p)
{
    close_storage(f);
    f->log[0] = '\0';
    open_storage(f);
    return f->st.load(f->st.ctx, p);
}

static void path_in(const struct fixture *f, const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", f->dir, name);
}

static void segment_file(const struct fixture *f, uint64_t first, char *out, size_t size)
{
    char name[FMT_SEGMENT_NAME_LEN + 1];
    fmt_segment_name(name, first);
    path_in(f, name, out, size);
}

static int count_segments(const struct fixture *f)
{
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    uint64_t first;
    while ((e = readdir(d)) != NULL)
        if (fmt_parse_segment_name(e->d_name, &first))
            n++;
    closedir(d);
    return n;
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static void append_bytes(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

/* ---- entries with checkable contents ---- */

/* The data of entry `index` in `term`: its length varies with the index, and
 * index 7 of every 7 is empty. */
static uint32_t entry_data(uint64_t index, uint64_t term, uint8_t *buf)
{
    if (index % 7 == 0)
        return 0;
    int n = snprintf((char *)buf, 64, "k%" PRIu64 "=v%" PRIu64 "-t%" PRIu64, index, index, term);
    uint32_t len = (uint32_t)n + (uint32_t)(index % 13);
    for (uint32_t i = (uint32_t)n; i < len; i++)
        buf[i] = (uint8_t)(index * 31 + i); /* some binary bytes too */
    return len;
}

static uint32_t entry_size(uint64_t index)
{
    uint8_t buf[128];
    return (uint32_t)fmt_record_size(entry_data(index, 1, buf));
}

/* Appends first..last in `term`, `batch` entries per call. */
static void append_range(struct fixture *f, uint64_t first, uint64_t last, uint64_t term,
                         size_t batch)
{
    static uint8_t bufs[16][128];
    struct raft_entry e[16];
    assert_true(batch >= 1 && batch <= 16);
    for (uint64_t i = first; i <= last;) {
        size_t n = 0;
        for (; n < batch && i + n <= last; n++) {
            e[n].term = term;
            e[n].type = (i + n) % 5 == 0 ? RAFT_ENTRY_NOOP : RAFT_ENTRY_COMMAND;
            e[n].len = entry_data(i + n, term, bufs[n]);
            e[n].data = e[n].len ? bufs[n] : NULL;
        }
        assert_int_equal(f->st.append(f->st.ctx, i, e, n), 0);
        i += n;
    }
}

/* Checks that p holds entries first..last in `term` (from p's first entry
 * on, which must be first). */
static void check_range(const struct raft_persisted *p, uint64_t first, uint64_t last,
                        uint64_t term)
{
    for (uint64_t i = first; i <= last; i++) {
        size_t k = (size_t)(i - p->snapshot_index - 1);
        assert_true(k < p->n_entries);
        const struct raft_entry *e = &p->entries[k];
        uint8_t buf[128];
        uint32_t len = entry_data(i, term, buf);
        assert_int_equal(e->term, term);
        assert_int_equal(e->type, i % 5 == 0 ? RAFT_ENTRY_NOOP : RAFT_ENTRY_COMMAND);
        assert_int_equal(e->len, len);
        if (len)
            assert_memory_equal(e->data, buf, len);
        else
            assert_null(e->data);
    }
}

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
    /* Chaining over any split equals one pass, aligned or not. */
    for (size_t cut = 0; cut <= 9; cut++)
        assert_int_equal(crc32c(crc32c(0, "123456789", cut), "123456789" + cut, 9 - cut),
                         0xE3069283);
}

/* ---- round trips ---- */

static void test_empty_directory_loads_as_new_node(void **state)
{
    struct fixture *f = *state;
    struct raft_persisted p;
    assert_int_equal(f->st.load(f->st.ctx, &p), 0);
    assert_int_equal(p.term, 0);
    assert_int_equal(p.voted_for, RAFT_NO_NODE);
    assert_int_equal(p.snapshot_index, 0);
    assert_null(p.snapshot);
    assert_int_equal(p.n_entries, 0);
    free_persisted(&p);
    struct stat st;
    assert_int_equal(stat(f->dir, &st), 0); /* created, with its parents */
    assert_true(S_ISDIR(st.st_mode));
}

static void test_term_and_vote_round_trip(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 1, RAFT_NO_NODE), 0);
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 7, 2), 0);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.term, 7);
    assert_int_equal(p.voted_for, 2);
    free_persisted(&p);
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 8, RAFT_NO_NODE), 0);
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.term, 8);
    assert_int_equal(p.voted_for, RAFT_NO_NODE);
    free_persisted(&p);
    char tmp[256];
    path_in(f, FMT_META_TMP_NAME, tmp, sizeof(tmp));
    assert_int_not_equal(access(tmp, F_OK), 0); /* renamed away */
}

static void test_append_load_round_trip_across_segments(void **state)
{
    struct fixture *f = *state;
    struct raft_persisted p;
    assert_int_equal(f->st.load(f->st.ctx, &p), 0);
    free_persisted(&p);
    file_storage_set_segment_size(f->fs, 300);
    append_range(f, 1, 40, 1, 1);
    append_range(f, 41, 100, 2, 7);
    assert_true(count_segments(f) >= 5);
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, 100);
    check_range(&p, 1, 40, 1);
    check_range(&p, 41, 100, 2);
    free_persisted(&p);
    /* Appending goes on where the log ends, after a restart too. */
    file_storage_set_segment_size(f->fs, 300);
    append_range(f, 101, 110, 3, 3);
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, 110);
    check_range(&p, 101, 110, 3);
    free_persisted(&p);
}

static void test_append_must_continue_the_log(void **state)
{
    struct fixture *f = *state;
    append_range(f, 1, 3, 1, 3);
    uint8_t x = 'x';
    struct raft_entry e = { .term = 1, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &x };
    assert_int_equal(f->st.append(f->st.ctx, 5, &e, 1), -EINVAL); /* a gap */
    assert_int_equal(f->st.append(f->st.ctx, 3, &e, 1), -EINVAL); /* an overwrite */
    assert_non_null(strstr(file_storage_error(f->fs), "the log ends at 3"));
    assert_int_equal(f->st.append(f->st.ctx, 4, &e, 1), 0); /* not a failed storage */
}

/* ---- truncation ---- */

static void test_truncate_then_append_then_load(void **state)
{
    struct fixture *f = *state;
    file_storage_set_segment_size(f->fs, 200);
    append_range(f, 1, 30, 1, 2);
    int before = count_segments(f);
    /* Inside the last segment. */
    assert_int_equal(f->st.truncate(f->st.ctx, 29), 0);
    append_range(f, 29, 32, 2, 2);
    /* Several segments back, in the middle of one. */
    assert_int_equal(f->st.truncate(f->st.ctx, 12), 0);
    assert_true(count_segments(f) < before);
    append_range(f, 12, 20, 3, 4);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, 20);
    check_range(&p, 1, 11, 1);
    check_range(&p, 12, 20, 3);
    free_persisted(&p);
    /* At the very first index of a segment: the whole file goes. */
    file_storage_set_segment_size(f->fs, 200);
    char seg[256];
    segment_file(f, 12, seg, sizeof(seg));
    assert_int_equal(access(seg, F_OK), 0);
    assert_int_equal(f->st.truncate(f->st.ctx, 12), 0);
    assert_int_not_equal(access(seg, F_OK), 0);
    /* Beyond the end: nothing to do. */
    assert_int_equal(f->st.truncate(f->st.ctx, 50), 0);
    append_range(f, 12, 13, 4, 1);
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, 13);
    check_range(&p, 1, 11, 1);
    check_range(&p, 12, 13, 4);
    free_persisted(&p);
}

static void test_truncate_everything(void **state)
{
    struct fixture *f = *state;
    file_storage_set_segment_size(f->fs, 150);
    append_range(f, 1, 12, 1, 3);
    assert_int_equal(f->st.truncate(f->st.ctx, 1), 0);
    assert_int_equal(count_segments(f), 0);
    append_range(f, 1, 2, 2, 2);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, 2);
    check_range(&p, 1, 2, 2);
    free_persisted(&p);
}

/* ---- snapshots ---- */

static void test_snapshot_then_load(void **state)
{
    struct fixture *f = *state;
    file_storage_set_segment_size(f->fs, 200);
    append_range(f, 1, 40, 1, 2);
    int before = count_segments(f);
    char first_seg[256];
    segment_file(f, 1, first_seg, sizeof(first_seg));
    const uint8_t snap[] = "state at 25";
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 25, 1, snap, sizeof(snap)), 0);
    assert_true(count_segments(f) < before);
    assert_int_not_equal(access(first_seg, F_OK), 0); /* whole segments deleted */
    append_range(f, 41, 45, 2, 5);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.snapshot_index, 25);
    assert_int_equal(p.snapshot_term, 1);
    assert_int_equal(p.snapshot_len, sizeof(snap));
    assert_memory_equal(p.snapshot, snap, sizeof(snap));
    assert_int_equal(p.n_entries, 20); /* 26..45; nothing at or before 25 */
    check_range(&p, 26, 40, 1);
    check_range(&p, 41, 45, 2);
    free_persisted(&p);
    /* A truncation cannot reach into the snapshot. */
    assert_int_equal(f->st.truncate(f->st.ctx, 25), -EINVAL);
    /* An empty snapshot is a snapshot too. */
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 30, 1, NULL, 0), 0);
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.snapshot_index, 30);
    assert_int_equal(p.snapshot_len, 0);
    assert_int_equal(p.n_entries, 15);
    check_range(&p, 31, 40, 1);
    free_persisted(&p);
}

static void test_snapshot_beyond_log_end(void **state)
{
    struct fixture *f = *state;
    file_storage_set_segment_size(f->fs, 200);
    append_range(f, 1, 10, 1, 3);
    const uint8_t snap[] = "installed";
    /* InstallSnapshot: the snapshot covers more than the log holds. */
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 100, 4, snap, sizeof(snap)), 0);
    assert_int_equal(count_segments(f), 0);
    uint8_t x = 'x';
    struct raft_entry e = { .term = 4, .type = RAFT_ENTRY_COMMAND, .len = 1, .data = &x };
    assert_int_equal(f->st.append(f->st.ctx, 11, &e, 1), -EINVAL);
    append_range(f, 101, 103, 4, 3);
    char seg[256];
    segment_file(f, 101, seg, sizeof(seg));
    assert_int_equal(access(seg, F_OK), 0); /* a fresh segment at index + 1 */
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.snapshot_index, 100);
    assert_int_equal(p.snapshot_term, 4);
    assert_int_equal(p.n_entries, 3);
    check_range(&p, 101, 103, 4);
    free_persisted(&p);
    /* And again with nothing appended after it. */
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 200, 5, snap, sizeof(snap)), 0);
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.snapshot_index, 200);
    assert_int_equal(p.n_entries, 0);
    free_persisted(&p);
    append_range(f, 201, 201, 5, 1);
}

/* A crash between the snapshot's rename and the deletion of the segments
 * it covers leaves them behind: load skips and removes them. */
static void test_leftover_covered_segments_are_ignored(void **state)
{
    struct fixture *f = *state;
    file_storage_set_segment_size(f->fs, 200);
    append_range(f, 1, 30, 1, 2);
    /* Save a copy of the first segment, snapshot, then put it back. */
    char seg[256];
    segment_file(f, 1, seg, sizeof(seg));
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
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.snapshot_index, 20);
    assert_int_equal(p.n_entries, 10);
    check_range(&p, 21, 30, 1);
    free_persisted(&p);
    assert_int_not_equal(access(seg, F_OK), 0);
}

/* ---- torn tails ---- */

static void test_every_torn_tail_is_cut(void **state)
{
    struct fixture *f = *state;
    enum { N = 6 };
    append_range(f, 1, N, 1, 1); /* one record per append */
    char seg[256];
    segment_file(f, 1, seg, sizeof(seg));
    off_t end = file_size(seg);
    off_t start = end - entry_size(N);
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
        assert_int_equal(reload(f, &p), 0);
        assert_int_equal(p.n_entries, N - 1);
        check_range(&p, 1, N - 1, 1);
        free_persisted(&p);
        assert_int_equal(file_size(seg), start);
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
    append_range(f, N, N, 2, 1);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, N);
    check_range(&p, N, N, 2);
    free_persisted(&p);
}

static void test_torn_batch_keeps_its_whole_records(void **state)
{
    struct fixture *f = *state;
    append_range(f, 1, 2, 1, 2);
    append_range(f, 3, 6, 1, 4); /* the last batch: 3..6 */
    char seg[256];
    segment_file(f, 1, seg, sizeof(seg));
    off_t cut = file_size(seg) - entry_size(6) - entry_size(5) / 2;
    assert_int_equal(truncate(seg, cut), 0);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, 4);
    check_range(&p, 1, 4, 1);
    free_persisted(&p);
}

static void test_bad_checksum_in_last_record_is_cut(void **state)
{
    struct fixture *f = *state;
    append_range(f, 1, 5, 1, 1);
    char seg[256];
    segment_file(f, 1, seg, sizeof(seg));
    off_t end = file_size(seg);
    flip_byte(seg, end - 3);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, 4);
    free_persisted(&p);
    assert_non_null(strstr(f->log, "a bad checksum"));
}

static void test_junk_after_valid_records_is_cut(void **state)
{
    struct fixture *f = *state;
    append_range(f, 1, 5, 1, 2);
    char seg[256];
    segment_file(f, 1, seg, sizeof(seg));
    off_t end = file_size(seg);
    uint8_t junk[100];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 97 + 13);
    append_bytes(seg, junk, sizeof(junk));
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, 5);
    check_range(&p, 1, 5, 1);
    free_persisted(&p);
    assert_int_equal(file_size(seg), end);
    char expect[64];
    snprintf(expect, sizeof(expect), "100 bytes from offset %jd", (intmax_t)end);
    assert_non_null(strstr(f->log, expect));
    /* Zeros, as a file system may leave after a crash, are junk too. */
    uint8_t zeros[4096] = { 0 };
    append_bytes(seg, zeros, sizeof(zeros));
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, 5);
    free_persisted(&p);
    assert_int_equal(file_size(seg), end);
}

/* A segment created, with nothing in it yet, when the power went. */
static void test_empty_last_segment_is_reused(void **state)
{
    struct fixture *f = *state;
    append_range(f, 1, 3, 1, 3);
    char seg[256];
    segment_file(f, 4, seg, sizeof(seg));
    FILE *out = fopen(seg, "wb");
    assert_non_null(out);
    fclose(out);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, 3);
    free_persisted(&p);
    /* It is where the log continues. */
    append_range(f, 4, 4, 1, 1);
    assert_int_equal(file_size(seg), entry_size(4));
    assert_int_equal(reload(f, &p), 0);
    assert_int_equal(p.n_entries, 4);
    check_range(&p, 1, 4, 1);
    free_persisted(&p);
}

/* ---- corruption: refuse, naming file and offset ---- */

static void test_flipped_byte_in_earlier_record_fails(void **state)
{
    struct fixture *f = *state;
    append_range(f, 1, 6, 1, 1);
    char seg[256];
    segment_file(f, 1, seg, sizeof(seg));
    off_t rec3 = entry_size(1) + entry_size(2);
    flip_byte(seg, rec3 + 20); /* inside record 3's term */
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), -EBADMSG);
    assert_int_equal(p.n_entries, 0); /* nothing corrupt handed out */
    assert_null(p.entries);
    char expect[320];
    snprintf(expect, sizeof(expect), "%s: a bad checksum in the record at offset %jd", seg,
             (intmax_t)rec3);
    assert_non_null(strstr(file_storage_error(f->fs), expect));
    assert_non_null(strstr(f->log, expect)); /* and logged */
    assert_int_equal(file_size(seg), rec3 + entry_size(3) + entry_size(4) + entry_size(5) +
                                         entry_size(6)); /* nothing cut */
}

static void test_corruption_in_earlier_segment_fails(void **state)
{
    struct fixture *f = *state;
    file_storage_set_segment_size(f->fs, 100);
    append_range(f, 1, 12, 1, 1);
    assert_true(count_segments(f) >= 3);
    char seg[256];
    segment_file(f, 1, seg, sizeof(seg));
    off_t last = file_size(seg) - 2; /* the tail of a segment that is not the last */
    flip_byte(seg, last);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), -EBADMSG);
    assert_non_null(strstr(file_storage_error(f->fs), seg));
    assert_non_null(strstr(file_storage_error(f->fs), "later segments follow"));
}

static void test_length_corruption_is_not_mistaken_for_a_torn_tail(void **state)
{
    struct fixture *f = *state;
    append_range(f, 1, 6, 1, 1);
    char seg[256];
    segment_file(f, 1, seg, sizeof(seg));
    /* A flipped high bit of record 2's length sends it past the end. */
    flip_byte(seg, entry_size(1) + 5);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), -EBADMSG);
    char expect[64];
    snprintf(expect, sizeof(expect), "at offset %u", entry_size(1));
    assert_non_null(strstr(file_storage_error(f->fs), expect));
}

static void test_missing_segment_is_a_gap(void **state)
{
    struct fixture *f = *state;
    file_storage_set_segment_size(f->fs, 100);
    append_range(f, 1, 12, 1, 1);
    assert_true(count_segments(f) >= 3);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), 0);
    free_persisted(&p);
    /* Find the second segment and remove it. */
    uint64_t second = 0;
    for (uint64_t i = 2; i <= 12 && !second; i++) {
        char seg[256];
        segment_file(f, i, seg, sizeof(seg));
        if (access(seg, F_OK) == 0) {
            second = i;
            assert_int_equal(unlink(seg), 0);
        }
    }
    assert_true(second > 0);
    assert_int_equal(reload(f, &p), -EBADMSG);
    assert_non_null(strstr(file_storage_error(f->fs), "the log has a gap"));
}

static void test_corrupt_meta_fails_clearly(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 5, 2), 0);
    char meta[256];
    path_in(f, FMT_META_NAME, meta, sizeof(meta));
    flip_byte(meta, 12);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), -EBADMSG);
    char expect[320];
    snprintf(expect, sizeof(expect), "%s: bad checksum at offset 0", meta);
    assert_non_null(strstr(file_storage_error(f->fs), expect));
    /* Cut short. */
    assert_int_equal(truncate(meta, 10), 0);
    assert_int_equal(reload(f, &p), -EBADMSG);
    assert_non_null(strstr(file_storage_error(f->fs), "cut short at offset 10"));
}

static void test_corrupt_snapshot_fails_clearly(void **state)
{
    struct fixture *f = *state;
    append_range(f, 1, 5, 1, 5);
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 3, 1, (const uint8_t *)"abcdef", 6), 0);
    char snap[256];
    path_in(f, FMT_SNAPSHOT_NAME, snap, sizeof(snap));
    flip_byte(snap, FMT_SNAPSHOT_HEADER_SIZE + 2);
    struct raft_persisted p;
    assert_int_equal(reload(f, &p), -EBADMSG);
    assert_null(p.snapshot);
    assert_non_null(strstr(file_storage_error(f->fs), "bad checksum in the data at offset 40"));
    assert_non_null(strstr(file_storage_error(f->fs), snap));
}

/* ---- disk errors ---- */

/* An I/O table that passes everything to POSIX but fails the fail_at-th
 * changing call (write, sync, truncate, rename, unlink, create) with
 * `error`. A failing write first writes half of what it was given. */
struct faulty_io {
    struct storage_io io;
    const struct storage_io *real;
    int calls;
    int fail_at;
    int error;
    int failures;
};

static bool fault_now(struct faulty_io *t)
{
    if (++t->calls != t->fail_at)
        return false;
    t->failures++;
    return true;
}

static int faulty_open(void *ctx, const char *path, int flags, mode_t mode)
{
    struct faulty_io *t = ctx;
    if ((flags & O_CREAT) && fault_now(t))
        return t->error;
    return t->real->open(t->real->ctx, path, flags, mode);
}
static int faulty_close(void *ctx, int fd)
{
    struct faulty_io *t = ctx;
    return t->real->close(t->real->ctx, fd);
}
static ssize_t faulty_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
    struct faulty_io *t = ctx;
    return t->real->pread(t->real->ctx, fd, buf, len, off);
}
static ssize_t faulty_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    struct faulty_io *t = ctx;
    if (fault_now(t)) {
        if (len > 1)
            t->real->pwrite(t->real->ctx, fd, buf, len / 2, off);
        return t->error;
    }
    return t->real->pwrite(t->real->ctx, fd, buf, len, off);
}
static int faulty_fdatasync(void *ctx, int fd)
{
    struct faulty_io *t = ctx;
    return fault_now(t) ? t->error : t->real->fdatasync(t->real->ctx, fd);
}
static int faulty_ftruncate(void *ctx, int fd, off_t len)
{
    struct faulty_io *t = ctx;
    return fault_now(t) ? t->error : t->real->ftruncate(t->real->ctx, fd, len);
}
static int faulty_file_size(void *ctx, int fd, off_t *size)
{
    struct faulty_io *t = ctx;
    return t->real->file_size(t->real->ctx, fd, size);
}
static int faulty_rename(void *ctx, const char *from, const char *to)
{
    struct faulty_io *t = ctx;
    return fault_now(t) ? t->error : t->real->rename(t->real->ctx, from, to);
}
static int faulty_unlink(void *ctx, const char *path)
{
    struct faulty_io *t = ctx;
    return fault_now(t) ? t->error : t->real->unlink(t->real->ctx, path);
}
static int faulty_mkdir(void *ctx, const char *path, mode_t mode)
{
    struct faulty_io *t = ctx;
    return t->real->mkdir(t->real->ctx, path, mode);
}
static int faulty_fsync_dir(void *ctx, const char *path)
{
    struct faulty_io *t = ctx;
    return fault_now(t) ? t->error : t->real->fsync_dir(t->real->ctx, path);
}
static int faulty_list_dir(void *ctx, const char *path,
                           int (*each)(void *arg, const char *name), void *arg)
{
    struct faulty_io *t = ctx;
    return t->real->list_dir(t->real->ctx, path, each, arg);
}

static void faulty_io_init(struct faulty_io *t, int fail_at, int error)
{
    memset(t, 0, sizeof(*t));
    t->real = storage_io_posix();
    t->fail_at = fail_at;
    t->error = error;
    t->io = (struct storage_io){
        .ctx = t, .open = faulty_open, .close = faulty_close, .pread = faulty_pread,
        .pwrite = faulty_pwrite, .fdatasync = faulty_fdatasync, .ftruncate = faulty_ftruncate,
        .file_size = faulty_file_size, .rename = faulty_rename, .unlink = faulty_unlink,
        .mkdir = faulty_mkdir, .fsync_dir = faulty_fsync_dir, .list_dir = faulty_list_dir,
    };
}

/* What the workload below has been told is durable. */
struct acked {
    uint64_t term;
    int32_t vote;
    uint64_t snapshot_index;
    uint64_t last;          /* the log's last index */
    uint64_t terms[64];     /* term of each index, 1-based */
};

/* One step of a short workload over every kind of change; returns what the
 * storage returned, and on success updates *a. */
static int workload_step(struct fixture *f, int step, struct acked *a)
{
    static uint8_t bufs[8][128];
    struct raft_entry e[8];
    uint64_t first = 0, term = 0;
    size_t n = 0;
    int rc;
    switch (step) {
    case 0: rc = f->st.save_term_vote(f->st.ctx, 1, 0);
            if (!rc) { a->term = 1; a->vote = 0; }
            return rc;
    case 1: first = 1; n = 4; term = 1; break;
    case 2: first = 5; n = 3; term = 1; break;
    case 3: rc = f->st.truncate(f->st.ctx, 6);
            a->last = 5; /* even if it failed, 6 and 7 may be gone */
            return rc;
    case 4: rc = f->st.save_term_vote(f->st.ctx, 2, 1);
            if (!rc) { a->term = 2; a->vote = 1; }
            return rc;
    case 5: first = 6; n = 5; term = 2; break;
    case 6: rc = f->st.save_snapshot(f->st.ctx, 7, 2, (const uint8_t *)"snap7", 5);
            if (!rc) a->snapshot_index = 7;
            return rc;
    case 7: first = 11; n = 2; term = 2; break;
    case 8: rc = f->st.save_snapshot(f->st.ctx, 20, 3, (const uint8_t *)"snap20", 6);
            if (!rc) { a->snapshot_index = 20; a->last = 20; }
            return rc;
    case 9: first = 21; n = 3; term = 3; break;
    default: return 1; /* done */
    }
    for (size_t i = 0; i < n; i++) {
        e[i].term = term;
        e[i].type = RAFT_ENTRY_COMMAND;
        e[i].len = entry_data(first + i, term, bufs[i]);
        e[i].data = e[i].len ? bufs[i] : NULL;
    }
    rc = f->st.append(f->st.ctx, first, e, n);
    if (!rc) {
        for (size_t i = 0; i < n; i++)
            a->terms[first + i] = term;
        a->last = first + n - 1;
    }
    return rc;
}

static void check_acked(const struct raft_persisted *p, const struct acked *a)
{
    assert_true(p->term >= a->term);
    if (p->term == a->term)
        assert_int_equal(p->voted_for, a->vote);
    assert_true(p->snapshot_index >= a->snapshot_index);
    for (uint64_t i = p->snapshot_index + 1; i <= a->last; i++) {
        size_t k = (size_t)(i - p->snapshot_index - 1);
        assert_true(k < p->n_entries);
        assert_int_equal(p->entries[k].term, a->terms[i]);
        uint8_t buf[128];
        uint32_t len = entry_data(i, a->terms[i], buf);
        assert_int_equal(p->entries[k].len, len);
        if (len)
            assert_memory_equal(p->entries[k].data, buf, len);
    }
}

/* Fails each changing call of the workload in turn, with EIO and with
 * ENOSPC: the call that meets the fault returns it, every later change is
 * refused, and a restart finds everything acknowledged, intact. */
static void test_disk_error_at_every_call_fails_cleanly(void **state)
{
    struct fixture *f = *state;
    const int errors[] = { -EIO, -ENOSPC };
    for (size_t k = 0; k < 2; k++)
        for (int fail_at = 1;; fail_at++) {
            close_storage(f);
            remove_tree(f->root);
            assert_int_equal(mkdir(f->root, 0700), 0);
            struct faulty_io t;
            faulty_io_init(&t, fail_at, errors[k]);
            int rc = file_storage_open_with_io(&f->fs, f->dir, capture_log, f, &t.io);
            if (rc) {
                /* Creating the directory met the fault. */
                assert_int_equal(rc, errors[k]);
                assert_null(f->fs);
                continue;
            }
            file_storage_set_segment_size(f->fs, 120);
            f->st = file_storage_ops(f->fs);
            struct raft_persisted p;
            struct acked a = { .vote = RAFT_NO_NODE };
            rc = f->st.load(f->st.ctx, &p);
            free_persisted(&p);
            for (int step = 0; rc == 0; step++)
                rc = workload_step(f, step, &a);
            if (t.failures == 0) {
                assert_int_equal(rc, 1); /* no call left to fail: the sweep is done */
                assert_true(fail_at > 20);
                close_storage(f); /* before t goes out of scope */
                break;
            }
            assert_int_equal(rc, errors[k]);
            assert_non_null(strstr(file_storage_error(f->fs), "refuses further changes"));
            assert_int_equal(f->st.save_term_vote(f->st.ctx, 9, 1), -EIO);
            assert_int_equal(f->st.truncate(f->st.ctx, 2), -EIO);
            /* A restart reads what is really on disk. */
            close_storage(f);
            open_storage(f);
            rc = f->st.load(f->st.ctx, &p);
            if (rc)
                fail_msg("fault %d (%d): load failed: %s", fail_at, errors[k],
                         file_storage_error(f->fs));
            check_acked(&p, &a);
            free_persisted(&p);
        }
}

/* ---- dump ---- */

static void test_dump_prints_the_directory(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->st.save_term_vote(f->st.ctx, 3, 1), 0);
    append_range(f, 1, 6, 2, 3);
    assert_int_equal(f->st.save_snapshot(f->st.ctx, 2, 2, (const uint8_t *)"hello", 5), 0);
    char seg[256];
    segment_file(f, 1, seg, sizeof(seg));
    append_bytes(seg, "junk", 4);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(file_storage_dump(f->dir, out), 0);
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
    flip_byte(seg, 30);
    out = open_memstream(&text, &len);
    assert_int_equal(file_storage_dump(f->dir, out), -EBADMSG);
    fclose(out);
    assert_non_null(strstr(text, "offset 0: a bad checksum (corrupt"));
    free(text);
    out = open_memstream(&text, &len);
    assert_int_equal(file_storage_dump("/nonexistent/raft-dir", out), -ENOENT);
    fclose(out);
    free(text);
}

/* ---- concurrency ---- */

struct race {
    struct fixture *f;
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
    struct fixture *f = *state;
    file_storage_set_segment_size(f->fs, 256);
    struct race r = { .f = f, .appended = 0, .done = false };
    pthread_mutex_init(&r.mu, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, snapshotter_main, &r), 0);
    for (uint64_t i = 1; i <= 300; i += 3) {
        append_range(f, i, i + 2, 1, 3);
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
    assert_int_equal(reload(f, &p), 0);
    assert_true(p.snapshot_index > 0 && p.snapshot_index < 300);
    assert_int_equal(p.n_entries, 300 - p.snapshot_index);
    check_range(&p, p.snapshot_index + 1, 300, 1);
    free_persisted(&p);
}

/* Every test below runs in its own fresh directory. */
#define IN_FRESH_DIR(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_matches_known_values),
        IN_FRESH_DIR(test_empty_directory_loads_as_new_node),
        IN_FRESH_DIR(test_term_and_vote_round_trip),
        IN_FRESH_DIR(test_append_load_round_trip_across_segments),
        IN_FRESH_DIR(test_append_must_continue_the_log),
        IN_FRESH_DIR(test_truncate_then_append_then_load),
        IN_FRESH_DIR(test_truncate_everything),
        IN_FRESH_DIR(test_snapshot_then_load),
        IN_FRESH_DIR(test_snapshot_beyond_log_end),
        IN_FRESH_DIR(test_leftover_covered_segments_are_ignored),
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
        IN_FRESH_DIR(test_disk_error_at_every_call_fails_cleanly),
        IN_FRESH_DIR(test_dump_prints_the_directory),
        IN_FRESH_DIR(test_concurrent_append_and_snapshot),
    };
    return cmocka_run_group_tests_name("unit_storage", tests, NULL, NULL);
}
