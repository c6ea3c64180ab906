/*
 * failing_disk.c - a disk that fails on command (see failing_disk.h).
 */
#include "tests/support/failing_disk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/clock.h"

static bool matches_locked(struct failing_disk *f, int fd)
{
    return fd >= 0 && fd < FAILING_DISK_MAX_FDS && f->path_of[fd] &&
           strstr(strrchr(f->path_of[fd], '/'), f->match) != NULL;
}

static int fio_open(void *ctx, const char *path, int flags, mode_t mode)
{
    struct failing_disk *f = ctx;
    int fd = f->real->open(f->real->ctx, path, flags, mode);
    if (fd >= 0 && fd < FAILING_DISK_MAX_FDS) {
        pthread_mutex_lock(&f->mu);
        free(f->path_of[fd]);
        f->path_of[fd] = strdup(path);
        pthread_mutex_unlock(&f->mu);
    }
    return fd;
}

static int fio_close(void *ctx, int fd)
{
    struct failing_disk *f = ctx;
    if (fd >= 0 && fd < FAILING_DISK_MAX_FDS) {
        pthread_mutex_lock(&f->mu);
        free(f->path_of[fd]);
        f->path_of[fd] = NULL;
        pthread_mutex_unlock(&f->mu);
    }
    return f->real->close(f->real->ctx, fd);
}

static ssize_t fio_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
    struct failing_disk *f = ctx;
    return f->real->pread(f->real->ctx, fd, buf, len, off);
}

/* Decides the fate of one matching call: 0 to pass it on, 1 to fail it,
 * 2 to cut it short (the first failing write). */
static int fate_locked(struct failing_disk *f, enum failing_disk_op op, int fd, size_t len)
{
    if (f->op != op || !matches_locked(f, fd))
        return 0;
    if (f->failing) {
        if (op == FAIL_PWRITE)
            f->writes_after++;
        else
            f->syncs_after++;
        f->injected++;
        return 1;
    }
    if (f->pass > 0) {
        f->pass--;
        return 0;
    }
    f->injected++;
    if (op == FAIL_PWRITE && len >= 2 && !f->cut_short) {
        f->cut_short = true; /* the caller's next write meets the full disk */
        return 2;
    }
    f->failing = true;
    return 1;
}

static ssize_t fio_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    struct failing_disk *f = ctx;
    pthread_mutex_lock(&f->mu);
    int fate = fate_locked(f, FAIL_PWRITE, fd, len);
    int err = f->err;
    pthread_mutex_unlock(&f->mu);
    if (fate == 1)
        return err;
    if (fate == 2) /* the disk fills up half way through */
        return f->real->pwrite(f->real->ctx, fd, buf, len / 2, off);
    return f->real->pwrite(f->real->ctx, fd, buf, len, off);
}

static int fio_fdatasync(void *ctx, int fd)
{
    struct failing_disk *f = ctx;
    pthread_mutex_lock(&f->mu);
    int fate = fate_locked(f, FAIL_FDATASYNC, fd, 0);
    int err = f->err;
    pthread_mutex_unlock(&f->mu);
    return fate ? err : f->real->fdatasync(f->real->ctx, fd);
}

static int fio_ftruncate(void *ctx, int fd, off_t len)
{
    struct failing_disk *f = ctx;
    return f->real->ftruncate(f->real->ctx, fd, len);
}

static int fio_file_size(void *ctx, int fd, off_t *size)
{
    struct failing_disk *f = ctx;
    return f->real->file_size(f->real->ctx, fd, size);
}

static int fio_rename(void *ctx, const char *from, const char *to)
{
    struct failing_disk *f = ctx;
    return f->real->rename(f->real->ctx, from, to);
}

static int fio_unlink(void *ctx, const char *path)
{
    struct failing_disk *f = ctx;
    return f->real->unlink(f->real->ctx, path);
}

static int fio_mkdir(void *ctx, const char *path, mode_t mode)
{
    struct failing_disk *f = ctx;
    return f->real->mkdir(f->real->ctx, path, mode);
}

static int fio_fsync_dir(void *ctx, const char *path)
{
    struct failing_disk *f = ctx;
    return f->real->fsync_dir(f->real->ctx, path);
}

static int fio_list_dir(void *ctx, const char *path, int (*each)(void *, const char *),
                        void *arg)
{
    struct failing_disk *f = ctx;
    return f->real->list_dir(f->real->ctx, path, each, arg);
}

void failing_disk_init(struct failing_disk *f, struct storage_io *io)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    f->real = storage_io_posix();
    *io = (struct storage_io){
        .ctx = f, .open = fio_open, .close = fio_close, .pread = fio_pread,
        .pwrite = fio_pwrite, .fdatasync = fio_fdatasync, .ftruncate = fio_ftruncate,
        .file_size = fio_file_size, .rename = fio_rename, .unlink = fio_unlink,
        .mkdir = fio_mkdir, .fsync_dir = fio_fsync_dir, .list_dir = fio_list_dir,
    };
}

void failing_disk_free(struct failing_disk *f)
{
    for (int i = 0; i < FAILING_DISK_MAX_FDS; i++)
        free(f->path_of[i]);
    pthread_mutex_destroy(&f->mu);
}

/* From now on, after `pass` more matching calls, the disk fails. */
void failing_disk_arm(struct failing_disk *f, enum failing_disk_op op, int err,
                      const char *match, unsigned pass)
{
    pthread_mutex_lock(&f->mu);
    f->op = op;
    f->err = err;
    snprintf(f->match, sizeof(f->match), "%s", match);
    f->pass = pass;
    f->cut_short = f->failing = false;
    pthread_mutex_unlock(&f->mu);
}

bool failing_disk_struck(struct failing_disk *f)
{
    pthread_mutex_lock(&f->mu);
    bool struck = f->failing;
    pthread_mutex_unlock(&f->mu);
    return struck;
}

bool failing_disk_wait_struck(struct failing_disk *f, unsigned timeout_ms)
{
    uint64_t deadline = test_now_ms() + timeout_ms;
    while (!failing_disk_struck(f) && test_now_ms() < deadline)
        test_sleep_ms(5);
    return failing_disk_struck(f);
}
