/*
 * segments.c - the log on disk: the list of segment files, and the two
 * ways the log changes, append at its end and truncation of a suffix.
 *
 * Each function here runs with s->mu held on a storage that load has
 * recovered and that has not failed (storage.c checks both first), but
 * storage_delete_dropped, which runs without it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/storage/format.h"
#include "raft/storage/internal.h"

/* ---- the segment list ---- */

struct segment *storage_tail_segment(struct file_storage *s)
{
    return s->n_segs ? &s->segs[s->n_segs - 1] : NULL;
}

int storage_push_segment(struct file_storage *s, uint64_t first)
{
    if (s->n_segs == s->cap_segs) {
        size_t cap = s->cap_segs ? 2 * s->cap_segs : 16;
        struct segment *segs = realloc(s->segs, cap * sizeof(*segs));
        if (!segs)
            return -ENOMEM;
        s->segs = segs;
        s->cap_segs = cap;
    }
    s->segs[s->n_segs++] = (struct segment){ .first = first, .last = first - 1, .size = 0 };
    return 0;
}

int storage_reserve_offsets(struct segment *seg, uint64_t last)
{
    size_t want = (size_t)(last - seg->first + 1);
    if (want <= seg->offsets_cap)
        return 0;
    size_t cap = seg->offsets_cap ? seg->offsets_cap : 256;
    while (cap < want)
        cap *= 2;
    uint64_t *o = realloc(seg->offsets, cap * sizeof(*o));
    if (!o)
        return -ENOMEM;
    seg->offsets = o;
    seg->offsets_cap = cap;
    return 0;
}

void storage_free_offsets(struct segment *segs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(segs[i].offsets);
        segs[i].offsets = NULL;
        segs[i].offsets_cap = 0;
    }
}

void storage_close_tail(struct file_storage *s)
{
    if (s->tail_fd >= 0)
        s->io->close(s->io->ctx, s->tail_fd);
    s->tail_fd = -1;
}

/* Opens the last segment for writing, if it is not open yet. */
int storage_open_tail(struct file_storage *s)
{
    if (s->tail_fd >= 0)
        return 0;
    char path[PATH_MAX];
    storage_segment_path(s, storage_tail_segment(s)->first, path);
    int fd = s->io->open(s->io->ctx, path, O_WRONLY, 0);
    if (fd < 0)
        return storage_fail(s, fd, "opening for writing", path);
    s->tail_fd = fd;
    return 0;
}

/* Unlinks the files of segs[0..n); on failure returns -errno with the
 * failing file's path in path. */
static int unlink_files(const struct file_storage *s, const struct segment *segs, size_t n,
                        char path[PATH_MAX])
{
    for (size_t i = 0; i < n; i++) {
        storage_segment_path(s, segs[i].first, path);
        int rc = s->io->unlink(s->io->ctx, path);
        if (rc && rc != -ENOENT)
            return rc;
    }
    return 0;
}

/* §7 log compaction: takes the segments whose entries are all in the
 * snapshot (called only once it is durable) off the list, and hands them
 * to *dropped, whose files storage_delete_dropped deletes once the caller
 * has released the mutex: deleting a file of megabytes takes milliseconds,
 * a large log has dozens, and appends must not wait for them. With no
 * memory to list them (or dropped NULL), the files are deleted at once.
 * Any of them surviving a crash is harmless: load ignores entries the
 * snapshot covers, and deletes their files. */
int storage_drop_compacted(struct file_storage *s, struct dropped_files *dropped)
{
    size_t n = 0;
    while (n < s->n_segs && s->segs[n].last <= s->snapshot_index)
        n++;
    if (n == 0)
        return 0;
    if (n == s->n_segs)
        storage_close_tail(s);
    storage_free_offsets(s->segs, n);
    struct segment *later = dropped ? malloc(n * sizeof(*later)) : NULL;
    if (later) {
        memcpy(later, s->segs, n * sizeof(*later));
        dropped->segs = later;
        dropped->n = n;
    } else {
        char path[PATH_MAX];
        int rc = unlink_files(s, s->segs, n, path);
        if (rc)
            return storage_fail(s, rc, "unlink", path);
    }
    memmove(s->segs, s->segs + n, (s->n_segs - n) * sizeof(*s->segs));
    s->n_segs -= n;
    return later ? 0 : storage_sync_dir(s);
}

/* A replaced snapshot is cut down this much at a time before it is closed
 * (and freed): each cut frees its blocks in a journal transaction of its
 * own, so that the log's syncs, which wait for the transaction running
 * when they are called, never wait for all of a large file at once. */
#define SHRINK_STEP ((off_t)32 << 20)

static void free_replaced_snapshot(const struct file_storage *s, int fd)
{
    off_t size = 0;
    if (s->io->file_size(s->io->ctx, fd, &size) == 0) {
        for (off_t len = size - SHRINK_STEP; len > 0; len -= SHRINK_STEP)
            if (s->io->ftruncate(s->io->ctx, fd, len) != 0)
                break; /* it is unlinked: whatever is left goes at close */
    }
    s->io->close(s->io->ctx, fd);
}

int storage_delete_dropped(struct file_storage *s, struct dropped_files *dropped)
{
    if (dropped->old_snapshot_fd >= 0)
        free_replaced_snapshot(s, dropped->old_snapshot_fd);
    dropped->old_snapshot_fd = -1;
    if (dropped->n == 0)
        return 0;
    char path[PATH_MAX];
    const char *call = "unlink";
    int rc = unlink_files(s, dropped->segs, dropped->n, path);
    if (rc == 0) {
        call = "fsync of the directory";
        snprintf(path, PATH_MAX, "%s", s->dir);
        rc = s->io->fsync_dir(s->io->ctx, s->dir);
    }
    free(dropped->segs);
    dropped->segs = NULL;
    dropped->n = 0;
    if (rc) {
        pthread_mutex_lock(&s->mu);
        rc = storage_fail(s, rc, call, path);
        pthread_mutex_unlock(&s->mu);
    }
    return rc;
}

/* ---- append ---- */

/* Encodes the batch into s->buf; returns its size in *total. */
static int encode_batch(struct file_storage *s, uint64_t first, const struct raft_entry *entries,
                        size_t n, size_t *total)
{
    size_t size = 0;
    for (size_t i = 0; i < n; i++) {
        if (entries[i].len > FMT_RECORD_MAX_DATA || (entries[i].len && !entries[i].data))
            return storage_errorf(s, -EINVAL,
                                  "append: entry %" PRIu64 " has an invalid length "
                                  "or no data",
                                  first + i);
        size_t rec = fmt_record_size(entries[i].len);
        if (size > SIZE_MAX - rec)
            return storage_errorf(s, -EFBIG, "append: the batch is too large");
        size += rec;
    }
    if (size > s->buf_cap) {
        uint8_t *b = realloc(s->buf, size);
        if (!b)
            return -ENOMEM;
        s->buf = b;
        s->buf_cap = size;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        fmt_record_encode(s->buf + off, first + i, &entries[i], i == 0 ? FMT_FLAG_BATCH_START : 0);
        off += fmt_record_size(entries[i].len);
    }
    *total = size;
    return 0;
}

/* Starts a new segment for records from `first` on. The directory is
 * fsync'ed after the first write is synced, before append returns. */
static int start_segment(struct file_storage *s, uint64_t first)
{
    storage_close_tail(s);
    char path[PATH_MAX];
    storage_segment_path(s, first, path);
    /* O_EXCL: no file of that name may exist; one would be stale. */
    int fd = s->io->open(s->io->ctx, path, O_WRONLY | O_CREAT | O_EXCL, STORAGE_FILE_MODE);
    if (fd < 0)
        return storage_fail(s, fd, "creating", path);
    int rc = storage_push_segment(s, first);
    if (rc) {
        s->io->close(s->io->ctx, fd);
        s->io->unlink(s->io->ctx, path);
        return rc;
    }
    s->tail_fd = fd;
    return 0;
}

/* After a failed append: take the partial batch back out, best effort, so
 * that the file holds no half-written records. If even this fails, load
 * treats what is left as a torn tail. */
static void undo_append(struct file_storage *s, bool fresh, uint64_t old_size)
{
    if (fresh) {
        char path[PATH_MAX];
        storage_segment_path(s, storage_tail_segment(s)->first, path);
        storage_close_tail(s);
        s->io->unlink(s->io->ctx, path);
        storage_free_offsets(storage_tail_segment(s), 1);
        s->n_segs--;
        return;
    }
    if (s->io->ftruncate(s->io->ctx, s->tail_fd, (off_t)old_size) == 0)
        s->io->fdatasync(s->io->ctx, s->tail_fd);
}

/* Figure 2: new entries are on stable storage before the node answers. One
 * write and one fdatasync for the whole batch (group commit); a new segment
 * also fsyncs the directory, so that its name survives a power cut. */
int storage_append_locked(struct file_storage *s, uint64_t first,
                          const struct raft_entry *entries, size_t n)
{
    if (n == 0)
        return 0;
    if (first != s->last_index + 1)
        return storage_errorf(s, -EINVAL,
                              "append at index %" PRIu64 ", but the log ends at %" PRIu64, first,
                              s->last_index);
    size_t total = 0;
    int rc = encode_batch(s, first, entries, n, &total);
    if (rc)
        return rc;
    struct segment *tail = storage_tail_segment(s);
    bool fresh = !tail || tail->size >= s->segment_size;
    rc = fresh ? start_segment(s, first) : storage_open_tail(s);
    if (rc)
        return rc;
    tail = storage_tail_segment(s);
    if ((rc = storage_reserve_offsets(tail, first + n - 1)) != 0) {
        undo_append(s, fresh, tail->size);
        return rc;
    }
    char path[PATH_MAX];
    storage_segment_path(s, tail->first, path);
    rc = storage_write_all(s, s->tail_fd, s->buf, total, (off_t)tail->size);
    if (rc) {
        undo_append(s, fresh, tail->size);
        return storage_fail(s, rc, "write", path);
    }
    rc = s->io->fdatasync(s->io->ctx, s->tail_fd);
    if (rc) {
        undo_append(s, fresh, tail->size);
        return storage_fail(s, rc, "fdatasync", path);
    }
    if (fresh && (rc = storage_sync_dir(s)) != 0)
        return rc;
    uint64_t at = tail->size;
    for (size_t i = 0; i < n; i++) {
        tail->offsets[first + i - tail->first] = at;
        at += fmt_record_size(entries[i].len);
    }
    tail->size += total;
    tail->last = first + n - 1;
    s->last_index = tail->last;
    return 0;
}

/* ---- truncate ---- */

/* Removes the last segment: unlink, then fsync the directory. */
static int remove_tail_segment(struct file_storage *s)
{
    char path[PATH_MAX];
    storage_segment_path(s, storage_tail_segment(s)->first, path);
    storage_close_tail(s);
    int rc = s->io->unlink(s->io->ctx, path);
    if (rc)
        return storage_fail(s, rc, "unlink", path);
    storage_free_offsets(storage_tail_segment(s), 1);
    s->n_segs--;
    return storage_sync_dir(s);
}

/* Cuts the last segment just before the record for `from`, durably. */
static int cut_tail_segment(struct file_storage *s, uint64_t from)
{
    struct segment *tail = storage_tail_segment(s);
    char path[PATH_MAX];
    storage_segment_path(s, tail->first, path);
    uint64_t off = tail->offsets[from - tail->first];
    int rc = storage_open_tail(s);
    if (rc)
        return rc;
    rc = s->io->ftruncate(s->io->ctx, s->tail_fd, (off_t)off);
    if (rc)
        return storage_fail(s, rc, "ftruncate", path);
    rc = s->io->fdatasync(s->io->ctx, s->tail_fd);
    if (rc)
        return storage_fail(s, rc, "fdatasync", path);
    tail->size = off;
    tail->last = from - 1;
    return 0;
}

/*
 * Figure 2, AppendEntries receiver rule 3: "delete the existing entry and
 * all that follow it". The order of the steps keeps every crash state a
 * prefix of the log as it was before the call:
 *   1. unlink the segments that lie wholly at or after `from`, the newest
 *      first, each followed by a directory fsync, so that a crash never
 *      leaves a later segment without the one before it (a gap);
 *   2. ftruncate the segment that holds `from` at that record's offset, and
 *      fdatasync it.
 * A crash anywhere leaves the old log cut at some point >= from - 1, a state
 * the node could have crashed in before the call. Nothing new is written at
 * `from` before both steps are durable (append comes after we return), so
 * entries that were cut can never reappear after, or among, the entries
 * that replace them.
 */
int storage_truncate_locked(struct file_storage *s, uint64_t from)
{
    if (from > s->last_index)
        return 0; /* nothing at or after `from` */
    if (from <= s->snapshot_index)
        return storage_errorf(s, -EINVAL,
                              "truncate at %" PRIu64 ": entries up to %" PRIu64
                              " are in the snapshot and committed",
                              from, s->snapshot_index);
    int rc;
    while (s->n_segs > 0 && storage_tail_segment(s)->first >= from)
        if ((rc = remove_tail_segment(s)) != 0)
            return rc;
    struct segment *tail = storage_tail_segment(s);
    if (tail && tail->last >= from && (rc = cut_tail_segment(s, from)) != 0)
        return rc;
    s->last_index = from - 1;
    return 0;
}

/* ---- reading back ---- */

int storage_locate_records_locked(struct file_storage *s, uint64_t index, size_t *n,
                                  char path[PATH_MAX], int *fd, uint64_t *start, uint64_t *end)
{
    if (index <= s->snapshot_index)
        return -ESTALE; /* compacted meanwhile: the caller sends the snapshot */
    if (*n == 0 || index > s->last_index || *n > s->last_index - index + 1)
        return storage_errorf(s, -EINVAL,
                              "read_entries: %" PRIu64 "..+%zu is not in the stored log (it "
                              "ends at %" PRIu64 ")", index, *n, s->last_index);
    size_t lo = 0, hi = s->n_segs; /* the last segment starting at or before index */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->segs[mid].first <= index)
            lo = mid;
        else
            hi = mid;
    }
    const struct segment *seg = &s->segs[lo];
    if (index < seg->first || !seg->offsets)
        return storage_errorf(s, -EIO, "read_entries: no segment holds entry %" PRIu64, index);
    if (*n > seg->last - index + 1)
        *n = (size_t)(seg->last - index + 1);
    uint64_t after = index + *n;
    *start = seg->offsets[index - seg->first];
    *end = after > seg->last ? seg->size : seg->offsets[after - seg->first];
    storage_segment_path(s, seg->first, path);
    *fd = s->io->open(s->io->ctx, path, O_RDONLY, 0);
    return *fd < 0 ? storage_errorf(s, *fd, "%s: cannot open to read entries back", path) : 0;
}
