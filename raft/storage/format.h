/*
 * format.h - the bytes of a data directory (internal to storage).
 *
 * Pure functions over buffers: encode and decode log records, the `meta`
 * file and the snapshot header, and walk a segment's records. No file
 * system calls here; the rest of raft/storage/ does those. The layout, and
 * what recovery does with a torn tail, are described at the top of
 * format.c.
 */
#ifndef RAFT_STORAGE_FORMAT_H
#define RAFT_STORAGE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

#define FMT_VERSION 1

#define FMT_META_NAME "meta"
#define FMT_META_TMP_NAME "meta.tmp"
#define FMT_SNAPSHOT_NAME "snapshot"
#define FMT_SNAPSHOT_TMP_NAME "snapshot.tmp"
#define FMT_SNAPSHOT_TMP2_NAME "snapshot-2.tmp" /* a second one written at the same time */
#define FMT_SNAPSHOT_WRITERS 2
#define FMT_LOCK_NAME "lock"
#define FMT_NODE_ID_NAME "node-id"
#define FMT_NODE_ID_TMP_NAME "node-id.tmp"
#define FMT_BOOTSTRAP_NAME "bootstrap"
#define FMT_BOOTSTRAP_TMP_NAME "bootstrap.tmp"
#define FMT_SEGMENT_PREFIX "log-"
#define FMT_SEGMENT_NAME_LEN 20 /* "log-" and 16 hex digits */

#define FMT_META_SIZE 24
#define FMT_SNAPSHOT_HEADER_SIZE 40
#define FMT_NODE_ID_SIZE 16
#define FMT_BOOTSTRAP_MAX_SIZE (16 + RAFT_MEMBERSHIP_MAX_BYTES)

/* A record: [u32 crc][u32 length][u64 index][u64 term][u8 type][u8 flags][data] */
#define FMT_RECORD_HEADER_SIZE 8 /* crc and length */
#define FMT_RECORD_FIXED_SIZE 18 /* index, term, type, flags: the payload before the data */
#define FMT_RECORD_MIN_SIZE (FMT_RECORD_HEADER_SIZE + FMT_RECORD_FIXED_SIZE)
#define FMT_RECORD_MAX_DATA (UINT32_MAX - FMT_RECORD_FIXED_SIZE)
#define FMT_FLAG_BATCH_START 0x01 /* first record written by one append call */

/* ---- segment names ---- */

/* Writes "log-%016llx" into name (at least FMT_SEGMENT_NAME_LEN + 1 bytes). */
void fmt_segment_name(char *name, uint64_t first_index);
/* True when name is exactly "log-" and 16 hex digits; sets *first_index. */
bool fmt_parse_segment_name(const char *name, uint64_t *first_index);

/* ---- log records ---- */

size_t fmt_record_size(uint32_t data_len);
/* Writes the record for entry e at `index` into out (fmt_record_size bytes). */
void fmt_record_encode(uint8_t *out, uint64_t index, const struct raft_entry *e,
                       uint8_t flags);

enum fmt_status {
    FMT_OK,
    FMT_END,           /* no bytes left: a clean end */
    FMT_SHORT_HEADER,  /* fewer than 8 bytes left */
    FMT_BAD_LENGTH,    /* the length cannot be a record's */
    FMT_SHORT_RECORD,  /* the length runs past the end of the file */
    FMT_BAD_CHECKSUM,
};

/* "a bad checksum", "a header cut short", ... for "<text> in the record at
 * offset N". */
const char *fmt_status_text(enum fmt_status st);

struct fmt_record {
    size_t offset; /* where the record starts in its file */
    size_t size;   /* header included */
    uint64_t index;
    uint64_t term;
    uint8_t type;
    uint8_t flags;
    uint32_t len;
    const uint8_t *data; /* points into the buffer that was decoded */
};

/* Decodes the record at buf[off..len). */
enum fmt_status fmt_record_decode(const uint8_t *buf, size_t len, size_t off,
                                  struct fmt_record *r);

/* The result of walking a segment's records from its start. */
struct fmt_scan {
    enum fmt_status status; /* FMT_END, or what was wrong at bad_offset */
    size_t end;             /* offset just past the last good record */
    uint64_t next_index;    /* the index the next record must have */
    uint64_t n_records;
    /* A record whose checksum was right but whose index was not next_index:
     * never a torn write, always an inconsistency. */
    bool wrong_index;
    uint64_t found_index;
};

/* Calls fn for each good record (stops and returns fn's value if it is not
 * 0), and describes where and why the walk stopped. */
int fmt_scan_segment(const uint8_t *buf, size_t len, uint64_t first_index,
                     int (*fn)(void *arg, const struct fmt_record *r), void *arg,
                     struct fmt_scan *scan);

/* Recovery's test for a bad record at bad_offset that should have had index
 * `bad_index`, in the last segment: is there, further on, a good record that
 * starts a later append batch? If so the bad record was written before an
 * append that completed, so it had been synced: corruption, not a torn
 * write. Sets *later_offset to that record's offset. */
bool fmt_later_batch_follows(const uint8_t *buf, size_t len, size_t bad_offset,
                             uint64_t bad_index, size_t *later_offset);

/* ---- meta: term and vote ---- */

void fmt_meta_encode(uint8_t out[FMT_META_SIZE], uint64_t term, int32_t voted_for);
/* Returns 0, or -EBADMSG with *why and *bad_offset describing the defect. */
int fmt_meta_decode(const uint8_t *buf, size_t len, uint64_t *term, int32_t *voted_for,
                    const char **why, size_t *bad_offset);

/* ---- node-id: whose directory this is ---- */

void fmt_node_id_encode(uint8_t out[FMT_NODE_ID_SIZE], uint32_t id);
/* Returns 0, or -EBADMSG with *why and *bad_offset describing the defect. */
int fmt_node_id_decode(const uint8_t *buf, size_t len, uint32_t *id, const char **why,
                       size_t *bad_offset);

/* ---- bootstrap: the configuration the cluster started from ---- */

/* Writes the file's bytes into out (FMT_BOOTSTRAP_MAX_SIZE at least);
 * returns their number. */
size_t fmt_bootstrap_encode(uint8_t *out, const struct raft_membership *m);
/* Returns 0, or -EBADMSG with *why and *bad_offset describing the defect. */
int fmt_bootstrap_decode(const uint8_t *buf, size_t len, struct raft_membership *m,
                         const char **why, size_t *bad_offset);

/* ---- snapshot ---- */

struct fmt_snapshot_header {
    uint64_t index;
    uint64_t term;
    uint64_t len;
    uint32_t data_crc;
};

void fmt_snapshot_header_encode(uint8_t out[FMT_SNAPSHOT_HEADER_SIZE],
                                const struct fmt_snapshot_header *h);
/* Checks the header of a snapshot file of file_len bytes (its first
 * FMT_SNAPSHOT_HEADER_SIZE bytes at buf), but not the data's checksum. */
int fmt_snapshot_header_decode(const uint8_t *buf, size_t file_len,
                               struct fmt_snapshot_header *h, const char **why,
                               size_t *bad_offset);
/* Checks a whole snapshot file of file_len bytes: its header, and its data
 * (at buf + FMT_SNAPSHOT_HEADER_SIZE) against the data checksum. Returns 0,
 * or -EBADMSG with *why and *bad_offset describing the defect. */
int fmt_snapshot_decode(const uint8_t *buf, size_t file_len, struct fmt_snapshot_header *h,
                        const char **why, size_t *bad_offset);

#endif
