/*
 * storage_internal.h - what storage.c (writing) and storage_recover.c
 * (loading) share: the state of one data directory and the small helpers
 * both use. Not for use outside raft/storage*.c.
 */
#ifndef RAFT_STORAGE_INTERNAL_H
#define RAFT_STORAGE_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "raft/storage/storage.h"

struct segment {
    uint64_t first; /* the index in its name */
    uint64_t last;  /* of its last record; first - 1 while it has none */
    uint64_t size;  /* bytes of good records */
};

struct file_storage {
    pthread_mutex_t mu; /* guards everything below: one call at a time */
    char *dir;
    const struct storage_io *io;
    file_storage_log_fn log;
    void *log_ctx;
    size_t segment_size;

    bool recovered; /* the fields below describe the directory */
    bool failed;    /* a write or sync failed: refuse every change */
    uint64_t snapshot_index;
    uint64_t snapshot_term;
    /* The log's last index; snapshot_index when the log is empty. Invariant:
     * no segments, or the last one ends at last_index. */
    uint64_t last_index;
    struct segment *segs;
    size_t n_segs;
    size_t cap_segs;
    int tail_fd; /* the last segment, open for writing, or -1 */
    uint8_t *buf; /* one append batch, reused */
    size_t buf_cap;
    char err[768];
};

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
/* A whole file in a malloc'd buffer; -ENOENT when it does not exist. */
int storage_read_file(struct file_storage *s, const char *path, uint8_t **data, size_t *len);
/* fsync of the data directory; marks the storage failed if it fails. */
int storage_sync_dir(struct file_storage *s);

/* The segment list. */
struct segment *storage_tail_segment(struct file_storage *s);
int storage_push_segment(struct file_storage *s, uint64_t first);
void storage_close_tail(struct file_storage *s);
int storage_open_tail(struct file_storage *s);
/* Deletes the segments wholly covered by the (durable) snapshot. */
int storage_drop_compacted(struct file_storage *s);

/* Reads the directory back (storage_recover.c): repairs a torn tail, sets
 * up the state for appending, fills *out when it is not NULL. */
int storage_recover_locked(struct file_storage *s, struct raft_persisted *out);

#endif
