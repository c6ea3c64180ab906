/*
 * storage.c - the raft_storage table over a data directory: open and
 * close, load, currentTerm and votedFor, snapshots, and the checks every
 * change passes first. The bytes on disk, and what recovery makes of them,
 * are described at the top of format.c; the log's own writes are in
 * segments.c, loading in recover.c.
 *
 * ERRORS. A failed write or sync marks the storage failed: every later
 * change returns -EIO, and the node must stop and restart from what is
 * really on disk (files.c, storage_fail, says why a retry proves nothing).
 */
#include "raft/storage/storage.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "raft/storage/crc32c.h"
#include "raft/storage/format.h"
#include "raft/storage/internal.h"

#define DEFAULT_SEGMENT_SIZE ((size_t)8 << 20)
#define DIR_MODE 0755
/* Room after the directory for "/" and the longest file name. */
#define NAME_ROOM 32

static int refuse_if_failed(struct file_storage *s)
{
    if (!s->failed)
        return 0;
    storage_say(s, RAFT_LOG_ERROR, "refusing a change: %s", s->err);
    return -EIO;
}

/* A change to the log or the snapshot needs to know the directory's
 * contents: a storage not loaded yet recovers them first. */
static int ready_for_change(struct file_storage *s)
{
    int rc = refuse_if_failed(s);
    if (rc == 0 && !s->recovered)
        rc = storage_recover_locked(s, NULL);
    return rc;
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
 *
 * A snapshot may be large: it is written to its temporary file without
 * the mutex, so that appends to the log go on meanwhile; only the checks,
 * the rename and taking the compacted segments off the list take it (their
 * files are deleted after it is released). Two snapshots may be written at
 * once (a node's own, and one its leader is sending), each to a temporary
 * file of its own. A snapshot older than the stored one is refused with
 * -ESTALE and changes nothing: it has been overtaken, which is no failure.
 */
static const char *const snapshot_tmp_names[FMT_SNAPSHOT_WRITERS] = {
    FMT_SNAPSHOT_TMP_NAME, FMT_SNAPSHOT_TMP2_NAME,
};

static int check_snapshot_locked(struct file_storage *s, uint64_t index)
{
    int rc = ready_for_change(s);
    if (rc)
        return rc;
    if (index == 0)
        return storage_errorf(s, -EINVAL, "a snapshot at index 0");
    return index < s->snapshot_index ? -ESTALE : 0;
}

static int install_snapshot_locked(struct file_storage *s, const char *tmp_name,
                                   uint64_t index, uint64_t term,
                                   struct dropped_files *dropped)
{
    int rc = check_snapshot_locked(s, index);
    if (rc)
        return rc;
    /* Held open across the rename, the snapshot it replaces is freed only
     * when storage_delete_dropped closes it, without the mutex: ext4 takes
     * about as long to free a file of hundreds of megabytes as to sync it,
     * and appends must not wait meanwhile. Until the rename is durable the
     * file is still the snapshot, and is closed untouched. */
    char old[PATH_MAX];
    storage_path(s, FMT_SNAPSHOT_NAME, old);
    int old_fd = s->io->open(s->io->ctx, old, O_WRONLY, 0);
    rc = storage_install_tmp(s, tmp_name, FMT_SNAPSHOT_NAME);
    if (rc) {
        if (old_fd >= 0)
            s->io->close(s->io->ctx, old_fd);
        return rc;
    }
    dropped->old_snapshot_fd = old_fd;
    s->snapshot_index = index;
    s->snapshot_term = term;
    if (index > s->last_index)
        s->last_index = index;
    return storage_drop_compacted(s, dropped);
}

/* A snapshot written piece by piece: its temporary file gets the data as
 * it comes after room for the header, which is written last, once the
 * length and the checksum are known; then the file is synced and renamed
 * over the snapshot. The calls of one writer may come from different
 * threads, one at a time. */
struct snapshot_writer {
    struct file_storage *s;
    int fd;
    unsigned slot; /* which temporary file */
    uint64_t index, term, len;
    off_t started; /* the file's bytes before it are being written back */
    off_t waited;  /* ... and those before it have reached the disk */
    uint32_t crc;
    int rc;                  /* the first failure; later writes do nothing */
    const char *failed_call; /* what failed, for storage_fail */
};

static const char *writer_tmp_name(const struct snapshot_writer *w)
{
    return snapshot_tmp_names[w->slot];
}

/* A free temporary file, or -EBUSY when every one is being written. */
static int take_tmp_slot_locked(struct file_storage *s, unsigned *slot)
{
    for (unsigned i = 0; i < FMT_SNAPSHOT_WRITERS; i++) {
        if (!s->snapshot_tmp_busy[i]) {
            s->snapshot_tmp_busy[i] = true;
            *slot = i;
            return 0;
        }
    }
    return storage_errorf(s, -EBUSY, "a snapshot begun while %d are being written",
                          FMT_SNAPSHOT_WRITERS);
}

static int op_begin_snapshot(void *ctx, uint64_t index, uint64_t term, void **out)
{
    struct file_storage *s = ctx;
    struct snapshot_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    *w = (struct snapshot_writer){.s = s, .fd = -1, .index = index, .term = term,
                                 .started = FMT_SNAPSHOT_HEADER_SIZE,
                                 .waited = FMT_SNAPSHOT_HEADER_SIZE};
    pthread_mutex_lock(&s->mu);
    int rc = check_snapshot_locked(s, index);
    if (rc == 0)
        rc = take_tmp_slot_locked(s, &w->slot);
    pthread_mutex_unlock(&s->mu);
    char tmp[PATH_MAX];
    storage_path(s, writer_tmp_name(w), tmp);
    if (rc == 0) {
        w->fd = s->io->open(s->io->ctx, tmp, O_WRONLY | O_CREAT | O_TRUNC, STORAGE_FILE_MODE);
        if (w->fd < 0) {
            pthread_mutex_lock(&s->mu);
            s->snapshot_tmp_busy[w->slot] = false;
            rc = storage_fail(s, w->fd, "creating", tmp);
            pthread_mutex_unlock(&s->mu);
        }
    }
    if (rc) {
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* A large snapshot reaches the disk a window of SNAPSHOT_SYNC_BYTES at a
 * time as it is written: left to the end, hundreds of megabytes would
 * reach the disk at once, and the log's own syncs (each put waits for one)
 * would queue behind them. Where the I/O layer writes back without a
 * persistence point (sync_file_range on Linux), the window just written is
 * started and the one before it waited for, so that the disk writes one
 * window while the next is produced, and the disk's cache is flushed once,
 * by the fdatasync that ends the file; otherwise each window is synced. */
#define SNAPSHOT_SYNC_BYTES (1u << 20)

static int write_back_window(struct snapshot_writer *w, off_t end)
{
    const struct storage_io *io = w->s->io;
    int rc;
    if (!io->write_back) {
        rc = io->fdatasync(io->ctx, w->fd);
        w->failed_call = "fdatasync";
        w->started = w->waited = end;
        return rc;
    }
    w->failed_call = "sync_file_range";
    rc = io->write_back(io->ctx, w->fd, w->started, end - w->started, false);
    if (rc == 0 && w->waited < w->started)
        rc = io->write_back(io->ctx, w->fd, w->waited, w->started - w->waited, true);
    w->waited = w->started;
    w->started = end;
    return rc;
}

static int op_write_snapshot(void *writer, const uint8_t *data, size_t len)
{
    struct snapshot_writer *w = writer;
    if (w->rc == 0) {
        w->rc = storage_write_all(w->s, w->fd, data, len,
                                  (off_t)(FMT_SNAPSHOT_HEADER_SIZE + w->len));
        w->failed_call = "writing";
    }
    w->crc = crc32c(w->crc, data, len);
    w->len += len;
    off_t end = (off_t)(FMT_SNAPSHOT_HEADER_SIZE + w->len);
    if (w->rc == 0 && end - w->started >= (off_t)SNAPSHOT_SYNC_BYTES)
        w->rc = write_back_window(w, end);
    return w->rc;
}

/* The header, once the data is written, and the sync. */
static int finish_snapshot_file(struct snapshot_writer *w)
{
    struct fmt_snapshot_header h = {.index = w->index, .term = w->term, .len = w->len,
                                    .data_crc = w->crc};
    uint8_t header[FMT_SNAPSHOT_HEADER_SIZE];
    fmt_snapshot_header_encode(header, &h);
    int rc = storage_write_all(w->s, w->fd, header, sizeof(header), 0);
    w->failed_call = "writing";
    if (rc == 0) {
        rc = w->s->io->fdatasync(w->s->io->ctx, w->fd);
        w->failed_call = "fdatasync";
    }
    return rc;
}

static int op_end_snapshot(void *ctx, void *writer, bool commit)
{
    struct file_storage *s = ctx;
    struct snapshot_writer *w = writer;
    int rc = w->rc;
    if (commit && rc == 0)
        rc = finish_snapshot_file(w);
    s->io->close(s->io->ctx, w->fd);
    char tmp[PATH_MAX];
    storage_path(s, writer_tmp_name(w), tmp);
    struct dropped_files dropped = {.old_snapshot_fd = -1};
    pthread_mutex_lock(&s->mu);
    if (rc) /* a write of ours failed, whether or not the caller saw it */
        rc = storage_fail(s, rc, w->failed_call, tmp);
    else if (commit)
        rc = install_snapshot_locked(s, writer_tmp_name(w), w->index, w->term, &dropped);
    if (!commit || rc)
        s->io->unlink(s->io->ctx, tmp); /* best effort: load ignores it anyway */
    s->snapshot_tmp_busy[w->slot] = false;
    pthread_mutex_unlock(&s->mu);
    free(w);
    int deleted = storage_delete_dropped(s, &dropped);
    return rc ? rc : deleted;
}

static int op_save_snapshot(void *ctx, uint64_t index, uint64_t term, const uint8_t *data,
                            size_t len)
{
    struct file_storage *s = ctx;
    if (len > 0 && !data) {
        pthread_mutex_lock(&s->mu);
        int rc = storage_errorf(s, -EINVAL, "save_snapshot: %zu bytes but no data", len);
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    void *w;
    int rc = op_begin_snapshot(ctx, index, term, &w);
    if (rc)
        return rc;
    op_write_snapshot(w, data, len);
    return op_end_snapshot(ctx, w, true);
}

/* The chunks a leader sends come from the file, not from memory (the
 * node need not hold a snapshot as large as its state). Reads take no
 * mutex: a snapshot installed meanwhile replaces the file by a rename, and
 * the header says which snapshot the file holds; an open descriptor keeps
 * reading the old one until its deletion cuts it short (-ESTALE). */
static int op_read_snapshot(void *ctx, uint64_t index, uint64_t offset, uint8_t *buf,
                            size_t len)
{
    struct file_storage *s = ctx;
    char path[PATH_MAX];
    storage_path(s, FMT_SNAPSHOT_NAME, path);
    int fd = s->io->open(s->io->ctx, path, O_RDONLY, 0);
    if (fd < 0)
        return fd == -ENOENT ? -ESTALE : fd;
    off_t size = 0;
    uint8_t header[FMT_SNAPSHOT_HEADER_SIZE];
    struct fmt_snapshot_header h;
    const char *why;
    size_t bad;
    int rc = s->io->file_size(s->io->ctx, fd, &size);
    if (rc == 0)
        rc = storage_read_all(s, fd, header, sizeof(header), 0);
    if (rc == 0 && fmt_snapshot_header_decode(header, (size_t)size, &h, &why, &bad) != 0)
        rc = -EBADMSG;
    if (rc == 0 && h.index != index)
        rc = -ESTALE;
    if (rc == 0 && (offset > h.len || len > h.len - offset))
        rc = -EINVAL;
    if (rc == 0)
        rc = storage_read_all(s, fd, buf, len, (off_t)(FMT_SNAPSHOT_HEADER_SIZE + offset));
    /* A snapshot replaced while it is read is cut down before it is freed
     * (segments.c): a read cut short by that is a stale snapshot, not a
     * failing disk. */
    if (rc == -EIO && s->io->file_size(s->io->ctx, fd, &size) == 0 &&
        size < (off_t)(FMT_SNAPSHOT_HEADER_SIZE + offset + len))
        rc = -ESTALE;
    s->io->close(s->io->ctx, fd);
    return rc;
}

/* ---- entries read back ---- */

static int grow_buffer(uint8_t **buf, size_t *cap, size_t want)
{
    if (want <= *cap)
        return 0;
    uint8_t *b = realloc(*buf, want);
    if (!b)
        return -ENOMEM;
    *buf = b;
    *cap = want;
    return 0;
}

/* Reads the records of index .. index+*n-1 that one segment holds (*n is
 * cut to them) to the end of *buf, at *used, and checks each one. */
static int read_segment_records(struct file_storage *s, uint64_t index, size_t *n,
                                struct raft_entry *out, uint8_t **buf, size_t *cap, size_t *used)
{
    int fd;
    uint64_t start, end;
    char path[PATH_MAX];
    pthread_mutex_lock(&s->mu);
    int rc = refuse_if_failed(s);
    if (rc == 0)
        rc = storage_locate_records_locked(s, index, n, path, &fd, &start, &end);
    pthread_mutex_unlock(&s->mu);
    if (rc)
        return rc;
    size_t len = (size_t)(end - start);
    rc = grow_buffer(buf, cap, *used + len);
    if (rc == 0)
        rc = storage_read_all(s, fd, *buf + *used, len, (off_t)start);
    s->io->close(s->io->ctx, fd);
    size_t off = 0;
    for (size_t i = 0; rc == 0 && i < *n; i++) {
        struct fmt_record r;
        enum fmt_status st = fmt_record_decode(*buf + *used, len, off, &r);
        if (st != FMT_OK || r.index != index + i) {
            pthread_mutex_lock(&s->mu);
            rc = storage_errorf(s, -EBADMSG, "%s: %s in the record of entry %" PRIu64
                                " at offset %" PRIu64 ", read back to send it", path,
                                st != FMT_OK ? fmt_status_text(st) : "a wrong index",
                                index + i, start + off);
            pthread_mutex_unlock(&s->mu);
            break;
        }
        out[i] = (struct raft_entry){.term = r.term, .type = r.type, .len = r.len};
        off += r.size;
    }
    *used += len;
    return rc;
}

/* A node need not keep in memory the entries it has applied: it reads
 * them back from here to send a follower that lags behind. The mutex is
 * held only to find the records and open their file, not while they are
 * read: a stored record changes only by truncation, which never reaches
 * applied entries, and a segment deleted by compaction meanwhile stays
 * readable through the descriptor. */
static int op_read_entries(void *ctx, uint64_t first_index, size_t n, struct raft_entry *out,
                           uint8_t **buf, size_t *cap)
{
    struct file_storage *s = ctx;
    size_t done = 0, used = 0;
    while (done < n) {
        size_t k = n - done;
        int rc = read_segment_records(s, first_index + done, &k, out + done, buf, cap, &used);
        if (rc)
            return rc;
        done += k;
    }
    /* The records lie one after the other in *buf, which may have moved
     * as it grew: point each entry at its data only now. */
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        out[i].data = out[i].len ? *buf + at + FMT_RECORD_MIN_SIZE : NULL;
        at += fmt_record_size(out[i].len);
    }
    return 0;
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
    return storage_replace_file(s, FMT_META_TMP_NAME, FMT_META_NAME, meta, sizeof(meta), NULL, 0);
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
    int rc = ready_for_change(s);
    if (rc == 0)
        rc = storage_append_locked(s, first_index, entries, n);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int op_truncate(void *ctx, uint64_t from_index)
{
    struct file_storage *s = ctx;
    pthread_mutex_lock(&s->mu);
    int rc = ready_for_change(s);
    if (rc == 0)
        rc = storage_truncate_locked(s, from_index);
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
        .read_snapshot = op_read_snapshot,
        .read_entries = op_read_entries,
        .begin_snapshot = op_begin_snapshot,
        .write_snapshot = op_write_snapshot,
        .end_snapshot = op_end_snapshot,
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
    s->lock_fd = -1;
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
    int rc = file_storage_open_with_io(out, dir, log, log_ctx, storage_io_posix());
    if (rc == 0 && (rc = storage_lock_dir(*out)) != 0) {
        file_storage_close(*out);
        *out = NULL;
    }
    return rc;
}

void file_storage_close(struct file_storage *s)
{
    if (!s)
        return;
    storage_close_tail(s);
    storage_unlock_dir(s);
    pthread_mutex_destroy(&s->mu);
    storage_free_offsets(s->segs, s->n_segs);
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

void file_storage_leave_entries_on_disk(struct file_storage *s)
{
    pthread_mutex_lock(&s->mu);
    s->entries_on_disk = true;
    pthread_mutex_unlock(&s->mu);
}

const char *file_storage_error(const struct file_storage *s)
{
    return s->err;
}
