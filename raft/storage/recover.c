/*
 * recover.c - load(): read a data directory back after a restart.
 *
 * What counts as a torn write and what as corruption is set out at the top
 * of format.c, next to the format it applies to. Recovery works below the
 * storage table: it uses the file and segment layers (files.c,
 * segments.c) and nothing above them.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/storage/crc32c.h"
#include "raft/storage/format.h"
#include "raft/storage/internal.h"

static void reset_state(struct file_storage *s)
{
    storage_close_tail(s);
    storage_free_offsets(s->segs, s->n_segs);
    s->n_segs = 0;
    s->recovered = false;
    s->snapshot_index = s->snapshot_term = s->last_index = 0;
}

/* Reads the file `name` whole, its path in `path`. Returns -ENOENT, with
 * nothing reported, when it does not exist: for meta and snapshot that is
 * a valid state. */
static int read_whole(struct file_storage *s, const char *name, char path[PATH_MAX],
                      uint8_t **buf, size_t *len)
{
    storage_path(s, name, path);
    int rc = storage_read_file(s, path, buf, len);
    if (rc && rc != -ENOENT)
        return storage_errorf(s, rc, "%s: cannot read (%s)", path, strerror(-rc));
    return rc;
}

static int load_meta(struct file_storage *s, uint64_t *term, int32_t *vote)
{
    char path[PATH_MAX];
    uint8_t *buf;
    size_t len;
    int rc = read_whole(s, FMT_META_NAME, path, &buf, &len);
    if (rc == -ENOENT)
        return 0; /* a new node: term 0, no vote */
    if (rc)
        return rc;
    const char *why;
    size_t off;
    rc = fmt_meta_decode(buf, len, term, vote, &why, &off);
    free(buf);
    if (rc)
        return storage_errorf(s, rc,
                              "%s: %s at offset %zu; currentTerm and votedFor are lost, "
                              "so the node must not start",
                              path, why, off);
    return 0;
}

#define SNAPSHOT_CHECK_PIECE (1u << 20)

/* Checks the data of the snapshot at fd against the header's checksum, a
 * piece at a time. */
static int check_snapshot_data(struct file_storage *s, int fd, const char *path,
                               const struct fmt_snapshot_header *h)
{
    uint8_t *piece = malloc(SNAPSHOT_CHECK_PIECE);
    if (!piece)
        return -ENOMEM;
    uint32_t crc = 0;
    int rc = 0;
    for (uint64_t at = 0; rc == 0 && at < h->len; at += SNAPSHOT_CHECK_PIECE) {
        size_t n = h->len - at < SNAPSHOT_CHECK_PIECE ? (size_t)(h->len - at)
                                                      : SNAPSHOT_CHECK_PIECE;
        rc = storage_read_all(s, fd, piece, n, (off_t)(FMT_SNAPSHOT_HEADER_SIZE + at));
        crc = crc32c(crc, piece, n);
    }
    free(piece);
    if (rc)
        return storage_errorf(s, rc, "%s: cannot read (%s)", path, strerror(-rc));
    if (crc != h->data_crc)
        return storage_errorf(s, -EBADMSG, "%s: bad checksum in the data at offset %d", path,
                              FMT_SNAPSHOT_HEADER_SIZE);
    return 0;
}

/* Checks the snapshot file and reports where it is, not its bytes: the
 * node reads them through read_snapshot, so that a state of gigabytes is
 * not whole in memory a second time while a restart restores it. */
static int load_snapshot(struct file_storage *s, struct raft_persisted *p)
{
    char path[PATH_MAX];
    storage_path(s, FMT_SNAPSHOT_NAME, path);
    int fd = s->io->open(s->io->ctx, path, O_RDONLY, 0);
    if (fd == -ENOENT)
        return 0; /* no snapshot yet */
    if (fd < 0)
        return storage_errorf(s, fd, "%s: cannot read (%s)", path, strerror(-fd));
    off_t size = 0;
    uint8_t header[FMT_SNAPSHOT_HEADER_SIZE] = {0};
    int rc = s->io->file_size(s->io->ctx, fd, &size);
    if (rc == 0 && size > 0)
        rc = storage_read_all(s, fd, header,
                              size < FMT_SNAPSHOT_HEADER_SIZE ? (size_t)size : sizeof(header), 0);
    if (rc)
        rc = storage_errorf(s, rc, "%s: cannot read (%s)", path, strerror(-rc));
    struct fmt_snapshot_header h;
    const char *why;
    size_t off;
    if (rc == 0 && fmt_snapshot_header_decode(header, (size_t)size, &h, &why, &off) != 0)
        rc = storage_errorf(s, -EBADMSG, "%s: %s at offset %zu", path, why, off);
    if (rc == 0)
        rc = check_snapshot_data(s, fd, path, &h);
    s->io->close(s->io->ctx, fd);
    if (rc)
        return rc;
    p->snapshot = NULL;
    p->snapshot_len = h.len;
    p->snapshot_index = h.index;
    p->snapshot_term = h.term;
    return 0;
}

static int cmp_segment(const void *a, const void *b)
{
    const struct segment *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

static int add_segment_name(void *arg, const char *name)
{
    struct file_storage *s = arg;
    uint64_t first;
    if (!fmt_parse_segment_name(name, &first))
        return 0; /* meta, snapshot, *.tmp or a stranger's file */
    if (first == 0)
        return storage_errorf(s, -EBADMSG, "%s/%s: a segment cannot start at index 0", s->dir,
                              name);
    return storage_push_segment(s, first);
}

static int list_segments(struct file_storage *s)
{
    int rc = s->io->list_dir(s->io->ctx, s->dir, add_segment_name, s);
    if (rc == -EBADMSG)
        return rc; /* a bad segment name, already reported */
    if (rc)
        return storage_errorf(s, rc, "%s: cannot list the directory (%s)", s->dir, strerror(-rc));
    if (s->n_segs > 1)
        qsort(s->segs, s->n_segs, sizeof(*s->segs), cmp_segment);
    return 0;
}

/* Collects entries above the snapshot into a growing array. */
struct collector {
    struct segment *seg;      /* the one being read: its records' offsets */
    struct raft_persisted *p; /* NULL: validate only */
    bool data_on_disk;        /* copy only configuration entries' data */
    size_t cap;
    uint64_t snapshot_index;
};

static int collect_entry(void *arg, const struct fmt_record *r)
{
    struct collector *c = arg;
    if (storage_reserve_offsets(c->seg, r->index) != 0)
        return -ENOMEM;
    c->seg->offsets[r->index - c->seg->first] = r->offset;
    if (!c->p || r->index <= c->snapshot_index)
        return 0;
    struct raft_persisted *p = c->p;
    if (p->n_entries == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        struct raft_entry *e = realloc(p->entries, cap * sizeof(*e));
        if (!e)
            return -ENOMEM;
        p->entries = e;
        c->cap = cap;
    }
    struct raft_entry *e = &p->entries[p->n_entries];
    e->term = r->term;
    e->type = r->type;
    e->len = r->len;
    e->data = NULL;
    if (r->len && (!c->data_on_disk || r->type == RAFT_ENTRY_CONFIG)) {
        e->data = malloc(r->len);
        if (!e->data)
            return -ENOMEM;
        memcpy(e->data, r->data, r->len);
    }
    p->n_entries++;
    return 0;
}

/* The last segment ends in a torn write: cut it off (the top of format.c
 * says why this is safe), durably, and say so. */
static int cut_torn_tail(struct file_storage *s, struct segment *seg, const char *path,
                         size_t file_len, const struct fmt_scan *scan)
{
    storage_say(s, RAFT_LOG_WARN,
                "%s: cut a torn write at the tail: %zu bytes from offset %zu "
                "(%s); they were never acknowledged",
                path, file_len - scan->end, scan->end, fmt_status_text(scan->status));
    int rc = storage_open_tail(s);
    if (rc)
        return rc;
    rc = s->io->ftruncate(s->io->ctx, s->tail_fd, (off_t)scan->end);
    if (rc)
        return storage_fail(s, rc, "ftruncate", path);
    seg->size = scan->end;
    return 0;
}

/* Reads one segment that the snapshot does not wholly cover. */
static int load_segment(struct file_storage *s, size_t i, struct collector *c)
{
    struct segment *seg = &s->segs[i];
    bool is_last = i + 1 == s->n_segs;
    char path[PATH_MAX];
    storage_segment_path(s, seg->first, path);
    uint8_t *buf;
    size_t len;
    int rc = storage_read_file(s, path, &buf, &len);
    if (rc)
        return storage_errorf(s, rc, "%s: cannot read (%s)", path, strerror(-rc));
    struct fmt_scan scan;
    c->seg = seg;
    rc = fmt_scan_segment(buf, len, seg->first, collect_entry, c, &scan);
    size_t later;
    if (rc) {
        storage_errorf(s, rc, "%s: out of memory while loading", path);
    } else if (scan.wrong_index) {
        rc = storage_errorf(s, -EBADMSG,
                            "%s: the record at offset %zu has index %" PRIu64 ", expected %" PRIu64,
                            path, scan.end, scan.found_index, scan.next_index);
    } else if (scan.status != FMT_END && !is_last) {
        rc = storage_errorf(s, -EBADMSG,
                            "%s: %s in the record at offset %zu, in a segment "
                            "that later segments follow",
                            path, fmt_status_text(scan.status), scan.end);
    } else if (scan.status != FMT_END &&
               fmt_later_batch_follows(buf, len, scan.end, scan.next_index, &later)) {
        rc = storage_errorf(s, -EBADMSG,
                            "%s: %s in the record at offset %zu, followed by "
                            "records written after it (at offset %zu)",
                            path, fmt_status_text(scan.status), scan.end, later);
    } else if (scan.status != FMT_END) {
        rc = cut_torn_tail(s, seg, path, len, &scan);
    }
    free(buf);
    if (rc)
        return rc;
    seg->last = scan.next_index - 1;
    seg->size = scan.end;
    return 0;
}

/* Reads the segments in order and checks that they fit together: the
 * first entry after the snapshot is snapshot_index + 1, and each segment
 * starts where the one before it ends. */
static int load_segments(struct file_storage *s, struct raft_persisted *p)
{
    struct collector c = { .p = p, .data_on_disk = s->entries_on_disk, .cap = 0,
                           .snapshot_index = s->snapshot_index };
    uint64_t next = 0; /* the index the next segment must start at; 0: none read yet */
    for (size_t i = 0; i < s->n_segs; i++) {
        struct segment *seg = &s->segs[i];
        if (i + 1 < s->n_segs && s->segs[i + 1].first - 1 <= s->snapshot_index) {
            /* Wholly covered by the snapshot (a crash during compaction
             * left it): skip it unread, it is deleted below. */
            seg->last = s->segs[i + 1].first - 1;
            continue;
        }
        char path[PATH_MAX];
        storage_segment_path(s, seg->first, path);
        if (next == 0 && seg->first > s->snapshot_index + 1)
            return storage_errorf(s, -EBADMSG,
                                  "%s: the log starts at index %" PRIu64 " but the "
                                  "snapshot ends at %" PRIu64 ": entries in between are missing",
                                  path, seg->first, s->snapshot_index);
        if (next != 0 && seg->first != next)
            return storage_errorf(s, -EBADMSG,
                                  "%s: starts at index %" PRIu64 " but the segment "
                                  "before it ends at %" PRIu64 ": the log has a gap",
                                  path, seg->first, next - 1);
        int rc = load_segment(s, i, &c);
        if (rc)
            return rc;
        next = seg->last + 1;
    }
    return 0;
}

/* Makes what load read durable: the last segment's data (the previous
 * process may have died with it in the page cache) and every directory
 * entry (renames, cuts, unlinks). Then it is safe to report as stored. */
static int sync_recovered_state(struct file_storage *s)
{
    if (s->n_segs > 0) {
        int rc = storage_open_tail(s);
        if (rc)
            return rc;
        rc = s->io->fdatasync(s->io->ctx, s->tail_fd);
        if (rc) {
            char path[PATH_MAX];
            storage_segment_path(s, storage_tail_segment(s)->first, path);
            return storage_fail(s, rc, "fdatasync", path);
        }
    }
    return storage_sync_dir(s);
}

static void free_persisted(struct raft_persisted *p)
{
    for (size_t i = 0; i < p->n_entries; i++)
        free(p->entries[i].data);
    free(p->entries);
    free(p->snapshot);
    memset(p, 0, sizeof(*p));
}

/* One line for the log, readable without the format in mind. */
static void log_recovered(struct file_storage *s, const struct raft_persisted *p)
{
    char vote[16] = "none", snap[64] = "no snapshot", log[64] = "log empty";
    if (p->voted_for != RAFT_NO_NODE)
        snprintf(vote, sizeof(vote), "n%d", p->voted_for);
    if (s->snapshot_index > 0)
        snprintf(snap, sizeof(snap), "snapshot up to %" PRIu64 "@T%" PRIu64, s->snapshot_index,
                 s->snapshot_term);
    if (s->last_index > s->snapshot_index)
        snprintf(log, sizeof(log), "log %" PRIu64 "..%" PRIu64 " in %zu segment%s",
                 s->snapshot_index + 1, s->last_index, s->n_segs, s->n_segs == 1 ? "" : "s");
    storage_say(s, RAFT_LOG_INFO, "%s: recovered term %" PRIu64 ", vote %s, %s, %s", s->dir,
                p->term, vote, snap, log);
}

/* Reads the whole directory, repairs a torn tail, and sets up the state
 * for appending. Fills *out when it is not NULL. */
int storage_recover_locked(struct file_storage *s, struct raft_persisted *out)
{
    reset_state(s);
    s->err[0] = '\0';
    struct raft_persisted p;
    memset(&p, 0, sizeof(p));
    p.voted_for = RAFT_NO_NODE;
    int rc = load_meta(s, &p.term, &p.voted_for);
    if (rc == 0)
        rc = load_snapshot(s, &p);
    if (rc == 0) {
        s->snapshot_index = p.snapshot_index;
        s->snapshot_term = p.snapshot_term;
        rc = list_segments(s);
    }
    if (rc == 0)
        rc = load_segments(s, out ? &p : NULL);
    if (rc == 0)
        rc = storage_drop_compacted(s, NULL); /* a crash during compaction left them */
    if (rc == 0)
        rc = sync_recovered_state(s);
    if (rc) {
        free_persisted(&p);
        reset_state(s);
        return rc;
    }
    struct segment *tail = storage_tail_segment(s);
    s->last_index = tail ? tail->last : s->snapshot_index;
    s->recovered = true;
    log_recovered(s, &p);
    if (out)
        *out = p;
    else
        free_persisted(&p);
    return 0;
}
