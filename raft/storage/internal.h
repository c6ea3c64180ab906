/*
 * internal.h - the state of one data directory and the layers below the
 * storage table, for raft/storage/ only.
 *
 * Calls go one way, top to bottom:
 *   storage.c   the raft_storage table, open and close, term/vote, snapshot
 *   recover.c   load: reads the directory back, cuts a torn tail
 *   segments.c  the segment list; append and truncate of the log
 *   identity.c  the node the directory belongs to
 *   bootstrap.c the configuration its cluster started from
 *   lock.c      the directory's one owner
 *   files.c     paths, whole-file reads and replacements, errors
 * and all of them use format.c for the bytes. Nothing here calls upwards.
 */
#ifndef RAFT_STORAGE_INTERNAL_H
#define RAFT_STORAGE_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "raft/storage/format.h"
#include "raft/storage/storage.h"

#define STORAGE_FILE_MODE 0644

struct segment {
    uint64_t first; /* the index in its name */
    uint64_t last;  /* of its last record; first - 1 while it has none */
    uint64_t size;  /* bytes of good records */
    /* Where each record starts: offsets[i] for index first + i, so that
     * entries can be read back one range at a time (read_entries). */
    uint64_t *offsets;
    size_t offsets_cap;
};

struct file_storage {
    pthread_mutex_t mu; /* guards everything below: one call at a time */
    char *dir;
    const struct storage_io *io;
    file_storage_log_fn log;
    void *log_ctx;
    size_t segment_size;
    bool entries_on_disk; /* load leaves entries' data in the files */

    bool recovered; /* the fields below describe the directory */
    bool failed;    /* a write or sync failed: refuse every change */
    bool snapshot_tmp_busy[FMT_SNAPSHOT_WRITERS]; /* being written (storage.c) */
    uint64_t snapshot_index;
    uint64_t snapshot_term;
    /* The log's last index; snapshot_index when the log is empty. Invariant:
     * no segments, or the last one ends at last_index. */
    uint64_t last_index;
    struct segment *segs;
    size_t n_segs;
    size_t cap_segs;
    int tail_fd; /* the last segment, open for writing, or -1 */
    int lock_fd; /* the flock'ed lock file, or -1 (lock.c) */
    uint8_t *buf; /* one append batch, reused */
    size_t buf_cap;
    char err[768];
};

/* ---- files.c ---- */

/* Logs one line through the user's callback (stderr for warnings and
 * errors when there is none). */
void storage_say(struct file_storage *s, enum raft_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records the error for file_storage_error(), logs it, returns rc. */
int storage_errorf(struct file_storage *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A write or sync failed: records it and marks the storage failed. */
int storage_fail(struct file_storage *s, int rc, const char *call, const char *path);

void storage_path(const struct file_storage *s, const char *name, char out[PATH_MAX]);
void storage_segment_path(const struct file_storage *s, uint64_t first, char out[PATH_MAX]);
/* Writes all len bytes at off, retrying short writes. */
int storage_write_all(const struct file_storage *s, int fd, const uint8_t *buf, size_t len,
                      off_t off);
/* Reads all len bytes at off; -EIO if the file ends first. */
int storage_read_all(const struct file_storage *s, int fd, uint8_t *buf, size_t len, off_t off);
/* A whole file in a malloc'd buffer; -ENOENT when it does not exist. */
int storage_read_file(struct file_storage *s, const char *path, uint8_t **data, size_t *len);
/* Renames tmp_name (written and synced) over name and syncs the
 * directory: the second half of storage_replace_file. */
int storage_install_tmp(struct file_storage *s, const char *tmp_name, const char *name);
/* Atomically replaces `name` with the bytes a then b, by way of tmp_name. */
int storage_replace_file(struct file_storage *s, const char *tmp_name, const char *name,
                         const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);
/* fsync of the data directory; marks the storage failed if it fails. */
int storage_sync_dir(struct file_storage *s);

/* ---- segments.c ---- */

struct segment *storage_tail_segment(struct file_storage *s);
int storage_push_segment(struct file_storage *s, uint64_t first);
/* Makes room for the offsets of records up to index `last` in seg. */
int storage_reserve_offsets(struct segment *seg, uint64_t last);
/* Frees the offsets of segs[0..n). */
void storage_free_offsets(struct segment *segs, size_t n);
void storage_close_tail(struct file_storage *s);
int storage_open_tail(struct file_storage *s);
/* What installing a snapshot leaves to delete once the mutex is released
 * (segments.c): the segments it covers, and the replaced snapshot, held
 * open (or -1). */
struct dropped_files {
    struct segment *segs;
    size_t n;
    int old_snapshot_fd;
};
/* The segments wholly covered by the (durable) snapshot leave the list;
 * their files are deleted at once, or, with dropped, are left to
 * storage_delete_dropped, called without the mutex. */
int storage_drop_compacted(struct file_storage *s, struct dropped_files *dropped);
int storage_delete_dropped(struct file_storage *s, struct dropped_files *dropped);
/* The log operations, on a recovered storage that has not failed. */
int storage_append_locked(struct file_storage *s, uint64_t first,
                          const struct raft_entry *entries, size_t n);
int storage_truncate_locked(struct file_storage *s, uint64_t from);
/* Where the records of index .. index+*n-1 lie, for reading them back
 * without the mutex: the segment's file (path), opened (*fd), and the
 * bytes [*start, *end) in it; *n is cut to the records it holds. -ESTALE
 * when the snapshot covers index. */
int storage_locate_records_locked(struct file_storage *s, uint64_t index, size_t *n,
                                  char path[PATH_MAX], int *fd, uint64_t *start,
                                  uint64_t *end);

/* ---- lock.c ---- */

/* Takes the directory's lock for this storage: -EBUSY, with the holder's
 * pid in the error, when another open storage holds it. */
int storage_lock_dir(struct file_storage *s);
void storage_unlock_dir(struct file_storage *s);

/* ---- recover.c ---- */

/* Reads the directory back: repairs a torn tail, sets up the state for
 * appending, fills *out when it is not NULL. */
int storage_recover_locked(struct file_storage *s, struct raft_persisted *out);

#endif
