/*
 * io.h - the file system calls raft/storage/ makes, as a table.
 *
 * Every call that creates, changes, syncs or removes durable data goes
 * through `struct storage_io`, and so do the reads that recovery makes. The
 * `raft` program uses the POSIX implementation; tests substitute their own
 * to inject errors (ENOSPC, EIO on fsync) or to simulate a power cut that
 * drops, applies or tears every write not yet synced (tests/unit_powerloss*.c).
 *
 * Conventions: paths are full paths (directory + "/" + name); functions
 * return 0, a count or a file descriptor on success and a negative errno on
 * failure, never -1 with errno set. `flags` are the usual O_* open flags.
 */
#ifndef RAFT_STORAGE_IO_H
#define RAFT_STORAGE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct storage_io {
    void *ctx;
    /* Returns a file descriptor, or -errno. */
    int (*open)(void *ctx, const char *path, int flags, mode_t mode);
    int (*close)(void *ctx, int fd);
    /* Return the number of bytes moved (possibly short), or -errno. */
    ssize_t (*pread)(void *ctx, int fd, void *buf, size_t len, off_t off);
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t len, off_t off);
    /* Makes the file's data and size durable: a persistence point. */
    int (*fdatasync)(void *ctx, int fd);
    /* Optional (NULL: not offered). Starts writing the range's dirty pages
     * to the disk and, with wait, waits until they are written. Not a
     * persistence point: nothing is durable before fdatasync, which also
     * flushes the disk's own cache. A long file can so reach the disk as
     * it is written, without a cache flush at each step. */
    int (*write_back)(void *ctx, int fd, off_t off, off_t len, bool wait);
    int (*ftruncate)(void *ctx, int fd, off_t len);
    int (*file_size)(void *ctx, int fd, off_t *size);
    /* Directory changes; each is durable only after fsync_dir. */
    int (*rename)(void *ctx, const char *from, const char *to);
    int (*unlink)(void *ctx, const char *path);
    int (*mkdir)(void *ctx, const char *path, mode_t mode);
    /* Makes the directory's entries durable (creations, renames, unlinks):
     * a persistence point. */
    int (*fsync_dir)(void *ctx, const char *path);
    /* Calls each(arg, name) for every entry of the directory except "." and
     * "..", in no particular order; stops early and returns what `each`
     * returned if that is not 0. */
    int (*list_dir)(void *ctx, const char *path,
                    int (*each)(void *arg, const char *name), void *arg);
};

/* The real thing: open(2), pwrite(2), fdatasync(2), ... Retries EINTR and
 * nothing else; in particular a failed fdatasync is never retried. */
const struct storage_io *storage_io_posix(void);

#endif
