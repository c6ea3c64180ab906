/*
 * storage.c - durable term, vote, log and snapshot of one node.
 *
 * ON-DISK FORMAT (version 1). All integers are big-endian. CRC is CRC-32C
 * (raft/crc32c.h). A data directory holds:
 *
 *   meta      currentTerm and votedFor, 24 bytes:
 *               0  u32 magic "RFTM"      4  u32 version (1)
 *               8  u64 term             16  i32 votedFor (-1: none)
 *              20  u32 crc of bytes 0..19
 *             Missing: term 0, no vote.
 *
 *   snapshot  the latest snapshot: a 40-byte header, then the data:
 *               0  u32 magic "RFTS"      4  u32 version (1)
 *               8  u64 last included index
 *              16  u64 last included term
 *              24  u64 data length      32  u32 crc of the data
 *              36  u32 crc of bytes 0..35
 *             Missing: no snapshot.
 *
 *   log-<16 hex digits>   a log segment; the digits are the index of its
 *             first record. Segments hold consecutive indices, and each one
 *             continues where the one before it ends. A segment is a plain
 *             sequence of records, with no file header:
 *               0  u32 crc of the length and the payload (bytes 4 .. 8+length-1)
 *               4  u32 length of the payload (18 + data length)
 *               8  u64 index   16  u64 term   24  u8 type   25  u8 flags
 *              26  data
 *             flags bit 0 marks the first record written by one append
 *             call (one batch). A new segment is started when the current one
 *             has passed the segment size (8 MiB); a batch is never split
 *             across segments.
 *
 *   meta.tmp, snapshot.tmp   a replacement being written; ignored on load.
 *
 * WRITING. meta and snapshot are replaced atomically: write the .tmp file,
 * fdatasync it, rename it over the old one, fsync the directory. An append
 * writes all its records with one write at the end of the last segment, then
 * one fdatasync (group commit); creating a segment also fsyncs the directory.
 * Only then does append return: Figure 2, "updated on stable storage before
 * responding to RPCs". Truncation and compaction are explained at their
 * functions, with the order of their steps.
 *
 * RECOVERY (load, in storage_recover.c). meta and snapshot must be whole and checksummed: a rename
 * only ever installs a file that was synced, so a defect there is corruption
 * and load fails with -EBADMSG. Then the segments are read in order.
 * Segments wholly covered by the snapshot are skipped and deleted, and
 * entries at or below the snapshot index are validated but not returned.
 *
 * A power cut can damage only the last append: it had not been synced,
 * while every earlier one was synced before the next began and before a new
 * segment was started. So a bad record (cut short, impossible length, bad
 * checksum) is a torn write when it is in the last segment and no good
 * record after it starts a later batch; it is cut off with ftruncate,
 * together with everything after it, and a warning gives the file, offset
 * and byte count. Anything else is corruption of data that had been synced
 * (a bad record in an earlier segment or followed by a later batch, a
 * record with the wrong index, a missing range of indices) and load fails
 * with -EBADMSG and an error naming the file and offset: never silently
 * wrong. Damage inside the last batch of the last segment cannot be told
 * apart from a torn write, and is cut like one.
 *
 * A last segment left empty (created just before a crash) is kept, and the
 * log continues in it.
 *
 * Finally load fdatasyncs the last segment and fsyncs the directory, so
 * that everything it reports is durable even when the previous process
 * crashed with writes still in the page cache.
 *
 * WHAT IS ASSUMED OF THE FILE SYSTEM: fdatasync makes a file's data and
 * size durable; a directory fsync makes its entries (creations, renames,
 * unlinks) durable; rename is atomic. Nothing else: unsynced writes may be
 * lost, reordered or torn, and unsynced directory changes may survive in any
 * combination (tests/unit_powerloss.c simulates exactly this). One more: a
 * crash does not expose the stale contents of freed blocks inside a file
 * (true of ext4 data=ordered, xfs, btrfs), else a torn append could show
 * records that truncate had removed.
 *
 * ERRORS. A failed write or sync marks the storage failed: every later
 * change returns -EIO. After a failed fsync the kernel may have dropped the
 * dirty pages, so a retry that succeeds proves nothing (fsyncgate); the node
 * must stop and restart from what is really on disk.
 */
#include "raft/storage/storage.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "raft/storage/crc32c.h"
#include "raft/storage/format.h"
#include "raft/storage/internal.h"

#define DEFAULT_SEGMENT_SIZE ((size_t)8 << 20)
#define FILE_MODE 0644
#define DIR_MODE 0755
/* Room after the directory for "/" and the longest file name. */
#define NAME_ROOM 32

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

/* A write or sync failed: from now on the storage refuses every change. */
int storage_fail(struct file_storage *s, int rc, const char *call, const char *path)
{
    s->failed = true;
    return storage_errorf(s, rc,
                          "%s: %s failed (%s); the storage refuses further changes "
                          "until the node restarts",
                          path, call, strerror(-rc));
}

static int refuse_if_failed(struct file_storage *s)
{
    if (!s->failed)
        return 0;
    storage_say(s, RAFT_LOG_ERROR, "refusing a change: %s", s->err);
    return -EIO;
}

/* ---- paths and small file operations ---- */

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

static int write_all(struct file_storage *s, int fd, const uint8_t *buf, size_t len, off_t off)
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

static int read_all(struct file_storage *s, int fd, uint8_t *buf, size_t len)
{
    off_t off = 0;
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
        rc = *data ? read_all(s, fd, *data, (size_t)size) : -ENOMEM;
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

/* Atomically replaces `name` with (a, b): write name.tmp, fdatasync it,
 * rename it over `name`, fsync the directory. A crash leaves either the old
 * file or the new one, whole, because the rename only installs synced data. */
static int replace_file(struct file_storage *s, const char *tmp_name, const char *name,
                        const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    storage_path(s, tmp_name, tmp);
    storage_path(s, name, final);
    int fd = s->io->open(s->io->ctx, tmp, O_WRONLY | O_CREAT | O_TRUNC, FILE_MODE);
    if (fd < 0)
        return storage_fail(s, fd, "creating", tmp);
    int rc = write_all(s, fd, a, a_len, 0);
    if (rc == 0 && b_len > 0)
        rc = write_all(s, fd, b, b_len, (off_t)a_len);
    if (rc) {
        s->io->close(s->io->ctx, fd);
        s->io->unlink(s->io->ctx, tmp); /* best effort: load ignores it anyway */
        return storage_fail(s, rc, "writing", tmp);
    }
    rc = s->io->fdatasync(s->io->ctx, fd);
    s->io->close(s->io->ctx, fd);
    if (rc)
        return storage_fail(s, rc, "fdatasync", tmp);
    rc = s->io->rename(s->io->ctx, tmp, final);
    if (rc)
        return storage_fail(s, rc, "rename to its final name", tmp);
    return storage_sync_dir(s);
}

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

/* Unlinks the first n segments (all wholly covered by the snapshot), then
 * fsyncs the directory once. Oldest first, but any subset surviving a crash
 * is harmless: load ignores entries the snapshot covers. */
static int unlink_leading_segments(struct file_storage *s, size_t n)
{
    if (n == 0)
        return 0;
    if (n == s->n_segs)
        storage_close_tail(s);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        storage_segment_path(s, s->segs[i].first, path);
        int rc = s->io->unlink(s->io->ctx, path);
        if (rc && rc != -ENOENT)
            return storage_fail(s, rc, "unlink", path);
    }
    memmove(s->segs, s->segs + n, (s->n_segs - n) * sizeof(*s->segs));
    s->n_segs -= n;
    return storage_sync_dir(s);
}

/* §7 log compaction: drops the segments whose entries are all in the
 * snapshot. Called only once the snapshot is durable. */
int storage_drop_compacted(struct file_storage *s)
{
    size_t n = 0;
    while (n < s->n_segs && s->segs[n].last <= s->snapshot_index)
        n++;
    return unlink_leading_segments(s, n);
}

static int ensure_recovered(struct file_storage *s)
{
    return s->recovered ? 0 : storage_recover_locked(s, NULL);
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
    int fd = s->io->open(s->io->ctx, path, O_WRONLY | O_CREAT | O_EXCL, FILE_MODE);
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
        s->n_segs--;
        return;
    }
    if (s->io->ftruncate(s->io->ctx, s->tail_fd, (off_t)old_size) == 0)
        s->io->fdatasync(s->io->ctx, s->tail_fd);
}

static int append_locked(struct file_storage *s, uint64_t first, const struct raft_entry *entries,
                         size_t n)
{
    int rc = refuse_if_failed(s);
    if (rc == 0)
        rc = ensure_recovered(s);
    if (rc || n == 0)
        return rc;
    if (first != s->last_index + 1)
        return storage_errorf(s, -EINVAL,
                              "append at index %" PRIu64 ", but the log ends at %" PRIu64, first,
                              s->last_index);
    size_t total = 0;
    rc = encode_batch(s, first, entries, n, &total);
    if (rc)
        return rc;
    struct segment *tail = storage_tail_segment(s);
    bool fresh = !tail || tail->size >= s->segment_size;
    rc = fresh ? start_segment(s, first) : storage_open_tail(s);
    if (rc)
        return rc;
    tail = storage_tail_segment(s);
    char path[PATH_MAX];
    storage_segment_path(s, tail->first, path);
    /* Group commit: one write and one fdatasync for the whole batch. */
    rc = write_all(s, s->tail_fd, s->buf, total, (off_t)tail->size);
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
    tail->size += total;
    tail->last = first + n - 1;
    s->last_index = tail->last;
    return 0;
}

/* ---- truncate ---- */

struct find_offset {
    uint64_t index;
    size_t offset;
};

static int stop_at_index(void *arg, const struct fmt_record *r)
{
    struct find_offset *f = arg;
    if (r->index != f->index)
        return 0;
    f->offset = r->offset;
    return 1;
}

/* The byte offset of the record for `index` in the last segment. */
static int offset_of(struct file_storage *s, uint64_t index, size_t *offset)
{
    char path[PATH_MAX];
    storage_segment_path(s, storage_tail_segment(s)->first, path);
    uint8_t *buf;
    size_t len;
    int rc = storage_read_file(s, path, &buf, &len);
    if (rc)
        return storage_fail(s, rc, "reading", path);
    struct find_offset f = { .index = index, .offset = 0 };
    struct fmt_scan scan;
    rc = fmt_scan_segment(buf, len, storage_tail_segment(s)->first, stop_at_index, &f, &scan);
    free(buf);
    if (rc != 1)
        return storage_fail(s, -EIO, "finding the record to truncate at", path);
    *offset = f.offset;
    return 0;
}

/* Removes the last segment: unlink, then fsync the directory. */
static int remove_tail_segment(struct file_storage *s)
{
    char path[PATH_MAX];
    storage_segment_path(s, storage_tail_segment(s)->first, path);
    storage_close_tail(s);
    int rc = s->io->unlink(s->io->ctx, path);
    if (rc)
        return storage_fail(s, rc, "unlink", path);
    s->n_segs--;
    return storage_sync_dir(s);
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
static int truncate_locked(struct file_storage *s, uint64_t from)
{
    int rc = refuse_if_failed(s);
    if (rc == 0)
        rc = ensure_recovered(s);
    if (rc || from > s->last_index)
        return rc; /* nothing at or after `from` */
    if (from <= s->snapshot_index)
        return storage_errorf(s, -EINVAL,
                              "truncate at %" PRIu64 ": entries up to %" PRIu64
                              " are in the snapshot and committed",
                              from, s->snapshot_index);
    while (s->n_segs > 0 && storage_tail_segment(s)->first >= from)
        if ((rc = remove_tail_segment(s)) != 0)
            return rc;
    struct segment *tail = storage_tail_segment(s);
    if (tail && tail->last >= from) {
        size_t off = 0;
        char path[PATH_MAX];
        storage_segment_path(s, tail->first, path);
        if ((rc = offset_of(s, from, &off)) != 0 || (rc = storage_open_tail(s)) != 0)
            return rc;
        rc = s->io->ftruncate(s->io->ctx, s->tail_fd, (off_t)off);
        if (rc)
            return storage_fail(s, rc, "ftruncate", path);
        rc = s->io->fdatasync(s->io->ctx, s->tail_fd);
        if (rc)
            return storage_fail(s, rc, "fdatasync", path);
        tail->size = off;
        tail->last = from - 1;
    }
    s->last_index = from - 1;
    return 0;
}

/* ---- snapshot ---- */

/*
 * §7: the snapshot replaces the entries it covers. Order: the snapshot file
 * is durable (written, synced, renamed, directory synced) before any segment
 * is deleted, so a crash leaves either the old snapshot with the whole log,
 * or the new snapshot with some of the covered segments still there, which
 * load ignores. Entries after `index` stay (Figure 13, rule 6); a caller
 * that must discard the whole log (rule 7) truncates it as well. When the
 * snapshot ends beyond the log, every segment goes and the next append
 * starts a fresh one at index + 1.
 */
static int snapshot_locked(struct file_storage *s, uint64_t index, uint64_t term,
                           const uint8_t *data, size_t len)
{
    int rc = refuse_if_failed(s);
    if (rc == 0)
        rc = ensure_recovered(s);
    if (rc)
        return rc;
    if (index == 0 || (len > 0 && !data))
        return storage_errorf(s, -EINVAL, "save_snapshot: index 0 or no data");
    if (index < s->snapshot_index)
        return storage_errorf(s, -EINVAL,
                              "save_snapshot at %" PRIu64 ": older than the stored "
                              "snapshot at %" PRIu64,
                              index, s->snapshot_index);
    struct fmt_snapshot_header h = {
        .index = index,
        .term = term,
        .len = len,
        .data_crc = crc32c(0, data, len),
    };
    uint8_t header[FMT_SNAPSHOT_HEADER_SIZE];
    fmt_snapshot_header_encode(header, &h);
    rc = replace_file(s, FMT_SNAPSHOT_TMP_NAME, FMT_SNAPSHOT_NAME, header, sizeof(header), data,
                      len);
    if (rc)
        return rc;
    s->snapshot_index = index;
    s->snapshot_term = term;
    if (index > s->last_index)
        s->last_index = index;
    return storage_drop_compacted(s);
}

/* ---- term and vote ---- */

/* Figure 2: currentTerm and votedFor are on stable storage before the node
 * answers; replaced atomically, so a crash never leaves a new term with an
 * old vote or half of either. */
static int term_vote_locked(struct file_storage *s, uint64_t term, int32_t voted_for)
{
    int rc = refuse_if_failed(s);
    if (rc)
        return rc;
    if (voted_for < RAFT_NO_NODE)
        return storage_errorf(s, -EINVAL, "save_term_vote: impossible vote %d", voted_for);
    uint8_t meta[FMT_META_SIZE];
    fmt_meta_encode(meta, term, voted_for);
    return replace_file(s, FMT_META_TMP_NAME, FMT_META_NAME, meta, sizeof(meta), NULL, 0);
}

/* ---- the raft_storage table ---- */

static int op_load(void *ctx, struct raft_persisted *out)
{
    struct file_storage *s = ctx;
    memset(out, 0, sizeof(*out));
    out->voted_for = RAFT_NO_NODE;
    pthread_mutex_lock(&s->mu);
    int rc = refuse_if_failed(s);
    if (rc == 0)
        rc = storage_recover_locked(s, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int op_save_term_vote(void *ctx, uint64_t term, int32_t voted_for)
{
    struct file_storage *s = ctx;
    pthread_mutex_lock(&s->mu);
    int rc = term_vote_locked(s, term, voted_for);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int op_append(void *ctx, uint64_t first_index, const struct raft_entry *entries, size_t n)
{
    struct file_storage *s = ctx;
    pthread_mutex_lock(&s->mu);
    int rc = append_locked(s, first_index, entries, n);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int op_truncate(void *ctx, uint64_t from_index)
{
    struct file_storage *s = ctx;
    pthread_mutex_lock(&s->mu);
    int rc = truncate_locked(s, from_index);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int op_save_snapshot(void *ctx, uint64_t index, uint64_t term, const uint8_t *data,
                            size_t len)
{
    struct file_storage *s = ctx;
    pthread_mutex_lock(&s->mu);
    int rc = snapshot_locked(s, index, term, data, len);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

struct raft_storage file_storage_ops(struct file_storage *s)
{
    return (struct raft_storage){
        .ctx = s,
        .load = op_load,
        .save_term_vote = op_save_term_vote,
        .append = op_append,
        .truncate = op_truncate,
        .save_snapshot = op_save_snapshot,
    };
}

/* ---- open and close ---- */

/* fsync the directory that holds `path`, so that a new entry in it is
 * durable. */
static int fsync_parent(const struct storage_io *io, char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash)
        return io->fsync_dir(io->ctx, ".");
    if (slash == path)
        return io->fsync_dir(io->ctx, "/");
    *slash = '\0';
    int rc = io->fsync_dir(io->ctx, path);
    *slash = '/';
    return rc;
}

/* Creates `dir` and its missing parents, like mkdir -p. Each directory
 * created is made durable in its parent: otherwise a power cut could lose
 * the whole data directory after files in it were synced. */
static int make_dirs(const struct storage_io *io, const char *dir)
{
    char *path = strdup(dir);
    if (!path)
        return -ENOMEM;
    int rc = 0;
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        rc = io->mkdir(io->ctx, path, DIR_MODE);
        if (rc == 0)
            rc = fsync_parent(io, path);
        else if (rc == -EEXIST)
            rc = 0;
        *p = saved;
        if (rc || saved == '\0')
            break;
    }
    free(path);
    return rc;
}

int file_storage_open_with_io(struct file_storage **out, const char *dir, file_storage_log_fn log,
                              void *log_ctx, const struct storage_io *io)
{
    *out = NULL;
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--; /* "data/" and "data" are the same directory */
    if (len == 0)
        return -EINVAL;
    if (len + NAME_ROOM >= PATH_MAX)
        return -ENAMETOOLONG;
    struct file_storage *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->dir = strndup(dir, len);
    if (!s->dir) {
        free(s);
        return -ENOMEM;
    }
    s->io = io;
    s->log = log;
    s->log_ctx = log_ctx;
    s->segment_size = DEFAULT_SEGMENT_SIZE;
    s->tail_fd = -1;
    int rc = make_dirs(io, s->dir);
    if (rc) {
        storage_say(s, RAFT_LOG_ERROR, "%s: cannot create the data directory (%s)", s->dir,
                    strerror(-rc));
        free(s->dir);
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return 0;
}

int file_storage_open(struct file_storage **out, const char *dir, file_storage_log_fn log,
                      void *log_ctx)
{
    return file_storage_open_with_io(out, dir, log, log_ctx, storage_io_posix());
}

void file_storage_close(struct file_storage *s)
{
    if (!s)
        return;
    storage_close_tail(s);
    pthread_mutex_destroy(&s->mu);
    free(s->segs);
    free(s->buf);
    free(s->dir);
    free(s);
}

void file_storage_set_segment_size(struct file_storage *s, size_t bytes)
{
    pthread_mutex_lock(&s->mu);
    s->segment_size = bytes ? bytes : 1;
    pthread_mutex_unlock(&s->mu);
}

const char *file_storage_error(const struct file_storage *s)
{
    return s->err;
}
