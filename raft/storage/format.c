/*
 * format.c - the bytes of a data directory: encode and decode them.
 *
 * ON-DISK FORMAT (version 1). All integers are big-endian, written byte by
 * byte, so the files are the same on every host. CRC is CRC-32C
 * (crc32c.h). A data directory holds:
 *
 *   meta      currentTerm and votedFor, 24 bytes:
 *               0  u32 magic "RFTM"      4  u32 version (1)
 *               8  u64 term             16  i32 votedFor (-1: none)
 *              20  u32 crc of bytes 0..19
 *             Missing: term 0, no vote.
 *
 *   node-id   the id of the node the directory belongs to, 16 bytes:
 *               0  u32 magic "RFTN"      4  u32 version (1)
 *               8  u32 node id          12  u32 crc of bytes 0..11
 *             Written once, when a node first starts on the directory;
 *             checked on every start after (identity.c): a node started
 *             with another id is refused. Missing: a new directory, or
 *             one written by a release that did not record the id; the
 *             id given takes it and is recorded.
 *
 *   bootstrap the configuration the cluster started from (`raft node
 *             --peers`: ids 0 .. n-1 by position), 16 bytes and a
 *             configuration entry's bytes (raft_membership_encode):
 *               0  u32 magic "RFTB"      4  u32 version (1)
 *               8  u32 length L         12  L bytes of configuration
 *            12+L  u32 crc of bytes 0 .. 12+L-1
 *             Written once, the first time a node starts on the directory
 *             with --peers (bootstrap.c); from then on the node starts from
 *             it whatever --peers says. The log's and the snapshot's
 *             configurations, once there are any, win over it (thesis
 *             §4.1: a server uses the latest configuration it has).
 *             Missing: the node was started without --peers (it waits to
 *             be added), or by a release that did not record it.
 *
 *   snapshot  the latest snapshot: a 40-byte header, then the data:
 *               0  u32 magic "RFTS"      4  u32 version (1)
 *               8  u64 last included index
 *              16  u64 last included term
 *              24  u64 data length      32  u32 crc of the data
 *              36  u32 crc of bytes 0..35
 *             Missing: no snapshot.
 *
 *   log-<16 hex digits>   a log segment; the digits (lower case) are the
 *             index of its first record. Segments hold consecutive indices,
 *             and each one continues where the one before it ends. A
 *             segment is a plain sequence of records, with no file header:
 *               0  u32 crc of the length and the payload (bytes 4 .. 8+length-1)
 *               4  u32 length of the payload (18 + data length)
 *               8  u64 index   16  u64 term   24  u8 type   25  u8 flags
 *              26  data
 *             flags bit 0 marks the first record written by one append
 *             call (one batch). A new segment is started once the current
 *             one has reached the segment size (8 MiB by default); a batch
 *             is never split across segments.
 *
 *   meta.tmp, snapshot.tmp, snapshot-2.tmp, node-id.tmp, bootstrap.tmp
 *             a replacement being written (a node may write two snapshots
 *             at once: its own and one received); ignored on load.
 *
 *   lock      the pid of the process that has the directory open, as
 *             decimal text; flock'ed while it is open (lock.c). Not data:
 *             ignored on load, never synced.
 *
 * WRITING (storage.c, segments.c, identity.c, bootstrap.c). meta, snapshot,
 * node-id and bootstrap are replaced atomically: write the .tmp file, fdatasync it, rename it
 * over the old one, fsync the directory. An append writes all its records with one
 * write at the end of the last segment, then one fdatasync; creating a
 * segment also fsyncs the directory. Only then does append return.
 *
 * RECOVERY (recover.c; node-id in identity.c, bootstrap in bootstrap.c).
 * meta, snapshot, node-id and bootstrap must be whole and checksummed: a rename only ever installs a file that
 * was synced, so a defect there is corruption and load (or the start, for
 * node-id) fails with -EBADMSG. Then the segments are read in
 * order. Segments wholly covered by the snapshot are skipped and deleted,
 * and entries at or below the snapshot index are validated but not
 * returned.
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
 * combination (tests/unit_powerloss*.c simulate exactly this). One more: a
 * crash does not expose the stale contents of freed blocks inside a file
 * (true of ext4 data=ordered, xfs, btrfs), else a torn append could show
 * records that truncate had removed.
 */
#include "raft/storage/format.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "raft/storage/crc32c.h"

#define META_MAGIC 0x5246544Du     /* "RFTM" */
#define SNAPSHOT_MAGIC 0x52465453u /* "RFTS" */
#define NODE_ID_MAGIC 0x5246544Eu  /* "RFTN" */
#define BOOTSTRAP_MAGIC 0x52465442u /* "RFTB" */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* ---- segment names ---- */

void fmt_segment_name(char *name, uint64_t first_index)
{
    snprintf(name, FMT_SEGMENT_NAME_LEN + 1, FMT_SEGMENT_PREFIX "%016llx",
             (unsigned long long)first_index);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is never written, so it is not ours */
}

bool fmt_parse_segment_name(const char *name, uint64_t *first_index)
{
    size_t prefix = strlen(FMT_SEGMENT_PREFIX);
    if (strlen(name) != FMT_SEGMENT_NAME_LEN || strncmp(name, FMT_SEGMENT_PREFIX, prefix) != 0)
        return false;
    uint64_t v = 0;
    for (const char *p = name + prefix; *p; p++) {
        int d = hex_digit(*p);
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *first_index = v;
    return true;
}

/* ---- log records ---- */

size_t fmt_record_size(uint32_t data_len)
{
    return FMT_RECORD_MIN_SIZE + (size_t)data_len;
}

void fmt_record_encode(uint8_t *out, uint64_t index, const struct raft_entry *e,
                       uint8_t flags)
{
    uint32_t payload_len = FMT_RECORD_FIXED_SIZE + e->len;
    put_be32(out + 4, payload_len);
    put_be64(out + 8, index);
    put_be64(out + 16, e->term);
    out[24] = e->type;
    out[25] = flags;
    if (e->len)
        memcpy(out + FMT_RECORD_MIN_SIZE, e->data, e->len);
    /* The checksum covers the length too: a flipped length bit must not
     * send the reader to a wrong but well-formed record boundary. */
    put_be32(out, crc32c(0, out + 4, 4 + (size_t)payload_len));
}

const char *fmt_status_text(enum fmt_status st)
{
    switch (st) {
    case FMT_OK: return "a good record";
    case FMT_END: return "the end of the file";
    case FMT_SHORT_HEADER: return "a header cut short";
    case FMT_BAD_LENGTH: return "an impossible length";
    case FMT_SHORT_RECORD: return "a length past the end of the file";
    case FMT_BAD_CHECKSUM: return "a bad checksum";
    }
    return "an unknown defect";
}

enum fmt_status fmt_record_decode(const uint8_t *buf, size_t len, size_t off,
                                  struct fmt_record *r)
{
    if (off == len)
        return FMT_END;
    size_t left = len - off;
    if (left < FMT_RECORD_HEADER_SIZE)
        return FMT_SHORT_HEADER;
    const uint8_t *p = buf + off;
    uint32_t payload_len = get_be32(p + 4);
    if (payload_len < FMT_RECORD_FIXED_SIZE)
        return FMT_BAD_LENGTH;
    if ((uint64_t)payload_len > left - FMT_RECORD_HEADER_SIZE)
        return FMT_SHORT_RECORD;
    if (crc32c(0, p + 4, 4 + (size_t)payload_len) != get_be32(p))
        return FMT_BAD_CHECKSUM;
    r->offset = off;
    r->size = FMT_RECORD_HEADER_SIZE + (size_t)payload_len;
    r->index = get_be64(p + 8);
    r->term = get_be64(p + 16);
    r->type = p[24];
    r->flags = p[25];
    r->len = payload_len - FMT_RECORD_FIXED_SIZE;
    r->data = p + FMT_RECORD_MIN_SIZE;
    return FMT_OK;
}

int fmt_scan_segment(const uint8_t *buf, size_t len, uint64_t first_index,
                     int (*fn)(void *arg, const struct fmt_record *r), void *arg,
                     struct fmt_scan *scan)
{
    memset(scan, 0, sizeof(*scan));
    scan->next_index = first_index;
    size_t off = 0;
    for (;;) {
        struct fmt_record r;
        enum fmt_status st = fmt_record_decode(buf, len, off, &r);
        if (st != FMT_OK) {
            scan->status = st;
            break;
        }
        /* Records hold consecutive indices from the one in the file name. */
        if (r.index != scan->next_index) {
            scan->status = FMT_OK;
            scan->wrong_index = true;
            scan->found_index = r.index;
            break;
        }
        if (fn) {
            int rc = fn(arg, &r);
            if (rc)
                return rc;
        }
        off += r.size;
        scan->end = off;
        scan->next_index++;
        scan->n_records++;
    }
    return 0;
}

/* A cheap test before the checksum: could a record that starts at `off`,
 * after a bad one that should have had index `bad_index`, be real? Its
 * length must fit and its index must lie ahead, within the number of
 * records that fit in the bytes between. Random garbage almost never
 * passes, so the scan below does not run a checksum at every byte. */
static bool plausible_record_at(const uint8_t *buf, size_t len, size_t off,
                                size_t bad_offset, uint64_t bad_index)
{
    if (len - off < FMT_RECORD_MIN_SIZE)
        return false;
    uint32_t payload_len = get_be32(buf + off + 4);
    if (payload_len < FMT_RECORD_FIXED_SIZE ||
        (uint64_t)payload_len > len - off - FMT_RECORD_HEADER_SIZE)
        return false;
    uint64_t index = get_be64(buf + off + 8);
    uint64_t most_between = (off - bad_offset) / FMT_RECORD_MIN_SIZE;
    return index > bad_index && index - bad_index <= most_between;
}

bool fmt_later_batch_follows(const uint8_t *buf, size_t len, size_t bad_offset,
                             uint64_t bad_index, size_t *later_offset)
{
    /* A torn write can damage only the last append: it was not synced, and
     * every earlier append was synced before the next one began. Records of
     * that same append may survive after the damage, but none of them starts
     * a batch (its first record is at or before the damage). A good record
     * that starts a batch, after the damage, proves the damage was synced. */
    size_t off = bad_offset + 1;
    while (off + FMT_RECORD_MIN_SIZE <= len) {
        struct fmt_record r;
        if (!plausible_record_at(buf, len, off, bad_offset, bad_index) ||
            fmt_record_decode(buf, len, off, &r) != FMT_OK) {
            off++;
            continue;
        }
        if (r.flags & FMT_FLAG_BATCH_START) {
            *later_offset = off;
            return true;
        }
        off += r.size; /* a good record: walk on record by record */
    }
    return false;
}

/* ---- meta ---- */

void fmt_meta_encode(uint8_t out[FMT_META_SIZE], uint64_t term, int32_t voted_for)
{
    put_be32(out, META_MAGIC);
    put_be32(out + 4, FMT_VERSION);
    put_be64(out + 8, term);
    put_be32(out + 16, (uint32_t)voted_for);
    put_be32(out + 20, crc32c(0, out, 20));
}

static int defect(const char **why, size_t *bad_offset, const char *text, size_t offset)
{
    *why = text;
    *bad_offset = offset;
    return -EBADMSG;
}

/* The head that meta and the snapshot header share: the magic number, the
 * checksum of the crc_at bytes before it (stored at crc_at), the version.
 * The checksum comes before the version, so that a damaged version field
 * reads as damage rather than as a format from the future. */
static int check_header(const uint8_t *buf, uint32_t magic, size_t crc_at, const char *not_ours,
                        const char *bad_crc, const char **why, size_t *bad_offset)
{
    if (get_be32(buf) != magic)
        return defect(why, bad_offset, not_ours, 0);
    if (crc32c(0, buf, crc_at) != get_be32(buf + crc_at))
        return defect(why, bad_offset, bad_crc, 0);
    if (get_be32(buf + 4) != FMT_VERSION)
        return defect(why, bad_offset, "unsupported format version", 4);
    return 0;
}

int fmt_meta_decode(const uint8_t *buf, size_t len, uint64_t *term, int32_t *voted_for,
                    const char **why, size_t *bad_offset)
{
    if (len != FMT_META_SIZE)
        return defect(why, bad_offset, len < FMT_META_SIZE ? "the file is cut short"
                                                           : "the file is too long",
                      len < FMT_META_SIZE ? len : FMT_META_SIZE);
    int rc = check_header(buf, META_MAGIC, 20, "not a meta file (bad magic number)",
                          "bad checksum", why, bad_offset);
    if (rc)
        return rc;
    *term = get_be64(buf + 8);
    *voted_for = (int32_t)get_be32(buf + 16);
    if (*voted_for < RAFT_NO_NODE)
        return defect(why, bad_offset, "impossible votedFor", 16);
    return 0;
}

/* ---- node-id ---- */

void fmt_node_id_encode(uint8_t out[FMT_NODE_ID_SIZE], uint32_t id)
{
    put_be32(out, NODE_ID_MAGIC);
    put_be32(out + 4, FMT_VERSION);
    put_be32(out + 8, id);
    put_be32(out + 12, crc32c(0, out, 12));
}

int fmt_node_id_decode(const uint8_t *buf, size_t len, uint32_t *id, const char **why,
                       size_t *bad_offset)
{
    if (len != FMT_NODE_ID_SIZE)
        return defect(why, bad_offset, len < FMT_NODE_ID_SIZE ? "the file is cut short"
                                                              : "the file is too long",
                      len < FMT_NODE_ID_SIZE ? len : FMT_NODE_ID_SIZE);
    int rc = check_header(buf, NODE_ID_MAGIC, 12, "not a node-id file (bad magic number)",
                          "bad checksum", why, bad_offset);
    if (rc == 0)
        *id = get_be32(buf + 8);
    return rc;
}

/* ---- bootstrap ---- */

size_t fmt_bootstrap_encode(uint8_t *out, const struct raft_membership *m)
{
    size_t len = raft_membership_encode(m, out + 12);
    put_be32(out, BOOTSTRAP_MAGIC);
    put_be32(out + 4, FMT_VERSION);
    put_be32(out + 8, (uint32_t)len);
    put_be32(out + 12 + len, crc32c(0, out, 12 + len));
    return 16 + len;
}

int fmt_bootstrap_decode(const uint8_t *buf, size_t len, struct raft_membership *m,
                         const char **why, size_t *bad_offset)
{
    if (len < 16)
        return defect(why, bad_offset, "the file is cut short", len);
    if (get_be32(buf) != BOOTSTRAP_MAGIC)
        return defect(why, bad_offset, "not a bootstrap file (bad magic number)", 0);
    uint32_t conf_len = get_be32(buf + 8);
    if ((uint64_t)conf_len + 16 != len)
        return defect(why, bad_offset, (uint64_t)conf_len + 16 > len ? "the configuration is cut short"
                                                           : "the file is longer than its "
                                                             "header says", 8);
    int rc = check_header(buf, BOOTSTRAP_MAGIC, 12 + (size_t)conf_len,
                          "not a bootstrap file (bad magic number)", "bad checksum", why,
                          bad_offset);
    if (rc)
        return rc;
    if (raft_membership_decode(m, buf + 12, conf_len) != 0 || m->n == 0)
        return defect(why, bad_offset, "not a configuration", 12);
    return 0;
}

/* ---- snapshot ---- */

void fmt_snapshot_header_encode(uint8_t out[FMT_SNAPSHOT_HEADER_SIZE],
                                const struct fmt_snapshot_header *h)
{
    put_be32(out, SNAPSHOT_MAGIC);
    put_be32(out + 4, FMT_VERSION);
    put_be64(out + 8, h->index);
    put_be64(out + 16, h->term);
    put_be64(out + 24, h->len);
    put_be32(out + 32, h->data_crc);
    put_be32(out + 36, crc32c(0, out, 36));
}

int fmt_snapshot_header_decode(const uint8_t *buf, size_t file_len,
                               struct fmt_snapshot_header *h, const char **why,
                               size_t *bad_offset)
{
    if (file_len < FMT_SNAPSHOT_HEADER_SIZE)
        return defect(why, bad_offset, "the header is cut short", file_len);
    int rc = check_header(buf, SNAPSHOT_MAGIC, 36, "not a snapshot file (bad magic number)",
                          "bad checksum in the header", why, bad_offset);
    if (rc)
        return rc;
    h->index = get_be64(buf + 8);
    h->term = get_be64(buf + 16);
    h->len = get_be64(buf + 24);
    h->data_crc = get_be32(buf + 32);
    if (h->len != file_len - FMT_SNAPSHOT_HEADER_SIZE)
        return defect(why, bad_offset,
                      h->len > file_len - FMT_SNAPSHOT_HEADER_SIZE
                          ? "the data is cut short" : "the file is longer than its header says",
                      h->len > file_len - FMT_SNAPSHOT_HEADER_SIZE ? file_len
                          : FMT_SNAPSHOT_HEADER_SIZE + (size_t)h->len);
    if (h->index == 0)
        return defect(why, bad_offset, "impossible snapshot index 0", 8);
    return 0;
}

int fmt_snapshot_decode(const uint8_t *buf, size_t file_len, struct fmt_snapshot_header *h,
                        const char **why, size_t *bad_offset)
{
    int rc = fmt_snapshot_header_decode(buf, file_len, h, why, bad_offset);
    if (rc == 0 && crc32c(0, buf + FMT_SNAPSHOT_HEADER_SIZE, h->len) != h->data_crc)
        rc = defect(why, bad_offset, "bad checksum in the data", FMT_SNAPSHOT_HEADER_SIZE);
    return rc;
}
