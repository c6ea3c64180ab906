/*
 * files.c - the small file operations of a data directory: paths, reading
 * a whole file, replacing one atomically, syncing the directory, and the
 * error sentences all of raft/storage/ reports through.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/storage/format.h"
#include "raft/storage/internal.h"

/* ---- messages ---- */

void storage_say(struct file_storage *s, enum raft_log_level lvl, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->log)
        s->log(s->log_ctx, lvl, msg);
    else if (lvl <= RAFT_LOG_WARN)
        fprintf(stderr, "storage: %s\n", msg);
}

int storage_errorf(struct file_storage *s, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    storage_say(s, RAFT_LOG_ERROR, "%s", s->err);
    return rc;
}

/* A write or sync failed: from now on the storage refuses every change.
 * After a failed fsync the kernel may have dropped the dirty pages, so a
 * retry that succeeds proves nothing ("fsyncgate"); only a restart, which
 * reads back what really reached the disk, can be trusted. */
int storage_fail(struct file_storage *s, int rc, const char *call, const char *path)
{
    s->failed = true;
    return storage_errorf(s, rc,
                          "%s: %s failed (%s); the storage refuses further changes "
                          "until the node restarts",
                          path, call, strerror(-rc));
}

/* ---- paths ---- */

void storage_path(const struct file_storage *s, const char *name, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/%s", s->dir, name);
}

void storage_segment_path(const struct file_storage *s, uint64_t first, char out[PATH_MAX])
{
    char name[FMT_SEGMENT_NAME_LEN + 1];
    fmt_segment_name(name, first);
    storage_path(s, name, out);
}

/* ---- reads and writes ---- */

int storage_write_all(const struct file_storage *s, int fd, const uint8_t *buf, size_t len,
                      off_t off)
{
    while (len > 0) {
        ssize_t n = s->io->pwrite(s->io->ctx, fd, buf, len, off);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO; /* no progress: do not spin */
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

int storage_read_all(const struct file_storage *s, int fd, uint8_t *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t n = s->io->pread(s->io->ctx, fd, buf, len, off);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO; /* the file shrank while we read it */
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Reads a whole file into a malloc'd buffer (NULL when empty). Returns 0,
 * -ENOENT when it does not exist, or another -errno. */
int storage_read_file(struct file_storage *s, const char *path, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = s->io->open(s->io->ctx, path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    off_t size = 0;
    int rc = s->io->file_size(s->io->ctx, fd, &size);
    if (rc == 0 && size > 0) {
        *data = malloc((size_t)size);
        rc = *data ? storage_read_all(s, fd, *data, (size_t)size, 0) : -ENOMEM;
        if (rc) {
            free(*data);
            *data = NULL;
        } else {
            *len = (size_t)size;
        }
    }
    s->io->close(s->io->ctx, fd);
    return rc;
}

int storage_sync_dir(struct file_storage *s)
{
    int rc = s->io->fsync_dir(s->io->ctx, s->dir);
    return rc ? storage_fail(s, rc, "fsync of the directory", s->dir) : 0;
}

/* Writes the bytes a then b to tmp_name and syncs them; on failure
 * *failed_call names what failed. */
static int write_tmp(const struct file_storage *s, const char *tmp_name, const uint8_t *a,
                     size_t a_len, const uint8_t *b, size_t b_len, const char **failed_call)
{
    char tmp[PATH_MAX];
    storage_path(s, tmp_name, tmp);
    *failed_call = "creating";
    int fd = s->io->open(s->io->ctx, tmp, O_WRONLY | O_CREAT | O_TRUNC, STORAGE_FILE_MODE);
    if (fd < 0)
        return fd;
    *failed_call = "writing";
    int rc = storage_write_all(s, fd, a, a_len, 0);
    if (rc == 0 && b_len > 0)
        rc = storage_write_all(s, fd, b, b_len, (off_t)a_len);
    if (rc == 0) {
        *failed_call = "fdatasync";
        rc = s->io->fdatasync(s->io->ctx, fd);
    }
    s->io->close(s->io->ctx, fd);
    if (rc)
        s->io->unlink(s->io->ctx, tmp); /* best effort: load ignores it anyway */
    return rc;
}

int storage_install_tmp(struct file_storage *s, const char *tmp_name, const char *name)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    storage_path(s, tmp_name, tmp);
    storage_path(s, name, final);
    int rc = s->io->rename(s->io->ctx, tmp, final);
    if (rc)
        return storage_fail(s, rc, "rename to its final name", tmp);
    return storage_sync_dir(s);
}

/* Write name.tmp, fdatasync it, rename it over `name`, fsync the
 * directory. A crash leaves either the old file or the new one, whole,
 * because the rename only installs synced data. */
int storage_replace_file(struct file_storage *s, const char *tmp_name, const char *name,
                         const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    const char *call;
    int rc = write_tmp(s, tmp_name, a, a_len, b, b_len, &call);
    if (rc) {
        char tmp[PATH_MAX];
        storage_path(s, tmp_name, tmp);
        return storage_fail(s, rc, call, tmp);
    }
    return storage_install_tmp(s, tmp_name, name);
}
