/*
 * io.c - the POSIX implementation of struct storage_io.
 *
 * Thin wrappers that turn "-1 and errno" into "-errno". EINTR is retried for
 * reads and writes only: a failed fdatasync must not be retried, because the
 * kernel may already have dropped the dirty pages it could not write
 * ("fsyncgate", PostgreSQL 2018), so a second, successful call would prove
 * nothing.
 */
#ifdef __linux__
#define _GNU_SOURCE /* sync_file_range */
#endif
#include "raft/storage/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int posix_open(void *ctx, const char *path, int flags, mode_t mode)
{
    (void)ctx;
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

static int posix_close(void *ctx, int fd)
{
    (void)ctx;
    /* Not retried on EINTR: on Linux the descriptor is gone either way. */
    return close(fd) < 0 ? -errno : 0;
}

static ssize_t posix_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
    (void)ctx;
    ssize_t n;
    do
        n = pread(fd, buf, len, off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static ssize_t posix_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off)
{
    (void)ctx;
    ssize_t n;
    do
        n = pwrite(fd, buf, len, off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static int posix_fdatasync(void *ctx, int fd)
{
    (void)ctx;
    return fdatasync(fd) < 0 ? -errno : 0;
}

#ifdef __linux__
static int posix_write_back(void *ctx, int fd, off_t off, off_t len, bool wait)
{
    (void)ctx;
    unsigned flags = SYNC_FILE_RANGE_WRITE;
    if (wait)
        flags |= SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER;
    return sync_file_range(fd, off, len, flags) < 0 ? -errno : 0;
}
#endif

static int posix_ftruncate(void *ctx, int fd, off_t len)
{
    (void)ctx;
    int rc;
    do
        rc = ftruncate(fd, len);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

static int posix_file_size(void *ctx, int fd, off_t *size)
{
    (void)ctx;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    *size = st.st_size;
    return 0;
}

static int posix_rename(void *ctx, const char *from, const char *to)
{
    (void)ctx;
    return rename(from, to) < 0 ? -errno : 0;
}

static int posix_unlink(void *ctx, const char *path)
{
    (void)ctx;
    return unlink(path) < 0 ? -errno : 0;
}

static int posix_mkdir(void *ctx, const char *path, mode_t mode)
{
    (void)ctx;
    return mkdir(path, mode) < 0 ? -errno : 0;
}

/* A directory's entries become durable when the directory itself is
 * fsync'ed; fsync on a file does not cover the name that points to it. */
static int posix_fsync_dir(void *ctx, const char *path)
{
    (void)ctx;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int posix_list_dir(void *ctx, const char *path,
                          int (*each)(void *arg, const char *name), void *arg)
{
    (void)ctx;
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            rc = errno ? -errno : 0;
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        rc = each(arg, e->d_name);
        if (rc)
            break;
    }
    closedir(d);
    return rc;
}

static const struct storage_io posix_io = {
    .ctx = NULL,
    .open = posix_open,
    .close = posix_close,
    .pread = posix_pread,
    .pwrite = posix_pwrite,
    .fdatasync = posix_fdatasync,
#ifdef __linux__
    .write_back = posix_write_back,
#endif
    .ftruncate = posix_ftruncate,
    .file_size = posix_file_size,
    .rename = posix_rename,
    .unlink = posix_unlink,
    .mkdir = posix_mkdir,
    .fsync_dir = posix_fsync_dir,
    .list_dir = posix_list_dir,
};

const struct storage_io *storage_io_posix(void)
{
    return &posix_io;
}
