/*
 * unit_storage_diskerror.c - a disk error (ENOSPC, EIO) at every write or
 * sync in turn: the call fails, the storage refuses every later change,
 * and a restart finds every acknowledged entry.
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

#include "raft/storage/io.h"
#include "tests/support/storage_fixture.h"

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
static int workload_step(struct sfx *f, int step, struct acked *a)
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
        e[i].len = sfx_entry_data(first + i, term, bufs[i]);
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
        uint32_t len = sfx_entry_data(i, a->terms[i], buf);
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
    struct sfx *f = *state;
    const int errors[] = { -EIO, -ENOSPC };
    for (size_t k = 0; k < 2; k++)
        for (int fail_at = 1;; fail_at++) {
            sfx_close(f);
            sfx_remove_tree(f->root);
            assert_int_equal(mkdir(f->root, 0700), 0);
            struct faulty_io t;
            faulty_io_init(&t, fail_at, errors[k]);
            int rc = file_storage_open_with_io(&f->fs, f->dir, sfx_capture_log, f, &t.io);
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
            raft_persisted_free(&p);
            for (int step = 0; rc == 0; step++)
                rc = workload_step(f, step, &a);
            if (t.failures == 0) {
                assert_int_equal(rc, 1); /* no call left to fail: the sweep is done */
                assert_true(fail_at > 20);
                sfx_close(f); /* before t goes out of scope */
                break;
            }
            assert_int_equal(rc, errors[k]);
            assert_non_null(strstr(file_storage_error(f->fs), "refuses further changes"));
            assert_int_equal(f->st.save_term_vote(f->st.ctx, 9, 1), -EIO);
            assert_int_equal(f->st.truncate(f->st.ctx, 2), -EIO);
            /* A restart reads what is really on disk. */
            sfx_close(f);
            sfx_open(f);
            rc = f->st.load(f->st.ctx, &p);
            if (rc)
                fail_msg("fault %d (%d): load failed: %s", fail_at, errors[k],
                         file_storage_error(f->fs));
            check_acked(&p, &a);
            raft_persisted_free(&p);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        IN_FRESH_DIR(test_disk_error_at_every_call_fails_cleanly),
    };
    return cmocka_run_group_tests_name("unit_storage_diskerror", tests, NULL, NULL);
}
