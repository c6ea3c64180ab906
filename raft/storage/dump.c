/*
 * dump.c - `raft dump DIR`: a data directory as text.
 *
 * Reads the files the way recovery does (format.h) but changes
 * nothing: a torn tail is reported, not cut. Configurations (thesis ch.
 * 4) are decoded wherever they are: the bootstrap file, the snapshot's
 * header, and configuration entries of the log. Problems are printed where
 * they are found, so that a learner sees what recovery would do and why.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "raft/membership.h"
#include "raft/storage/storage.h"
#include "raft/storage/format.h"

#define PREVIEW_BYTES 32

/* Reads a whole file; -ENOENT when it does not exist. */
static int slurp(const char *dir, const char *name, uint8_t **data, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *b = realloc(*data, cap);
            if (!b) {
                rc = -ENOMEM;
                break;
            }
            *data = b;
        }
        size_t n = fread(*data + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0) {
            rc = ferror(f) ? -EIO : 0;
            break;
        }
    }
    fclose(f);
    if (rc) {
        free(*data);
        *data = NULL;
        *len = 0;
    }
    return rc;
}

/* slurp, printing "<name>: cannot read (...)" for every failure but a
 * missing file, which the caller describes in its own words. */
static int slurp_or_say(const char *dir, const char *name, FILE *out, uint8_t **data,
                        size_t *len)
{
    int rc = slurp(dir, name, data, len);
    if (rc && rc != -ENOENT)
        fprintf(out, "%s: cannot read (%s)\n", name, strerror(-rc));
    return rc;
}

/* Printable ASCII as is, the rest escaped, at most PREVIEW_BYTES bytes. */
static void print_preview(FILE *out, const uint8_t *data, uint32_t len)
{
    fputc('"', out);
    for (uint32_t i = 0; i < len && i < PREVIEW_BYTES; i++) {
        uint8_t c = data[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, out);
        else
            fprintf(out, "\\x%02x", c);
    }
    fputc('"', out);
    if (len > PREVIEW_BYTES)
        fputs("...", out);
}

static const char *type_name(uint8_t type)
{
    switch (type) {
    case RAFT_ENTRY_NOOP: return "noop";
    case RAFT_ENTRY_COMMAND: return "command";
    case RAFT_ENTRY_CONFIG: return "config";
    default: return "unknown";
    }
}

/* "n0 n1 n3 (learner) [127.0.0.1:8000 127.0.0.1:8001 127.0.0.1:8003]",
 * then the ids removed for good, if any (thesis ch. 4). */
static void print_config(FILE *out, const struct raft_membership *m)
{
    char who[RAFT_MAX_NODES * 16];
    membership_describe(m, who, sizeof(who));
    fputs(who, out);
    for (uint32_t i = 0; i < m->n; i++)
        fprintf(out, "%s%s", i ? " " : " [", m->members[i].addr[0] ? m->members[i].addr : "?");
    if (m->n)
        fputc(']', out);
    for (uint32_t id = 0, first = 1; id <= RAFT_MAX_ID; id++)
        if (m->removed >> id & 1) {
            fprintf(out, "%sn%u", first ? ", removed " : " ", id);
            first = 0;
        }
}

/* The configuration the cluster started from (bootstrap.c). */
static int dump_bootstrap(const char *dir, FILE *out)
{
    uint8_t *buf;
    size_t len;
    int rc = slurp_or_say(dir, FMT_BOOTSTRAP_NAME, out, &buf, &len);
    if (rc == -ENOENT) {
        fprintf(out, "bootstrap: none recorded (started without --peers, or by an older "
                     "release)\n");
        return 0;
    }
    if (rc)
        return rc;
    struct raft_membership m;
    const char *why;
    size_t off;
    rc = fmt_bootstrap_decode(buf, len, &m, &why, &off);
    free(buf);
    if (rc) {
        fprintf(out, "bootstrap: %s at offset %zu (corrupt)\n", why, off);
        return rc;
    }
    fputs("bootstrap: ", out);
    print_config(out, &m);
    fputc('\n', out);
    return 0;
}

static int dump_meta(const char *dir, FILE *out)
{
    uint8_t *buf;
    size_t len;
    int rc = slurp_or_say(dir, FMT_META_NAME, out, &buf, &len);
    if (rc == -ENOENT) {
        fprintf(out, "term: 0\nvoted for: none\n(no meta file yet)\n");
        return 0;
    }
    if (rc)
        return rc;
    uint64_t term;
    int32_t vote;
    const char *why;
    size_t off;
    rc = fmt_meta_decode(buf, len, &term, &vote, &why, &off);
    free(buf);
    if (rc) {
        fprintf(out, "meta: %s at offset %zu (corrupt)\n", why, off);
        return rc;
    }
    fprintf(out, "term: %" PRIu64 "\n", term);
    if (vote == RAFT_NO_NODE)
        fprintf(out, "voted for: none\n");
    else
        fprintf(out, "voted for: n%d\n", vote);
    return 0;
}

/* §7: a snapshot "includes the latest configuration as of last included
 * index"; the state machine's bytes follow it. */
static int dump_snapshot_config(FILE *out, const uint8_t *data, size_t len)
{
    struct raft_membership m;
    bool found;
    size_t state_offset;
    if (membership_snapshot_split(data, len, &m, &found, &state_offset) != 0) {
        fprintf(out, "  config: not a configuration (corrupt)\n");
        return -EBADMSG;
    }
    if (!found) {
        fprintf(out, "  config: none (written before snapshots carried one)\n");
        return 0;
    }
    fputs("  config: ", out);
    print_config(out, &m);
    fprintf(out, "\n  state machine: %zu bytes from offset %zu of the data\n",
            len - state_offset, state_offset);
    return 0;
}

static int dump_snapshot(const char *dir, FILE *out, uint64_t *snapshot_index)
{
    uint8_t *buf;
    size_t len;
    *snapshot_index = 0;
    int rc = slurp_or_say(dir, FMT_SNAPSHOT_NAME, out, &buf, &len);
    if (rc == -ENOENT) {
        fprintf(out, "snapshot: none\n");
        return 0;
    }
    if (rc)
        return rc;
    struct fmt_snapshot_header h;
    const char *why;
    size_t off;
    rc = fmt_snapshot_decode(buf, len, &h, &why, &off);
    if (rc) {
        free(buf);
        fprintf(out, "snapshot: %s at offset %zu (corrupt)\n", why, off);
        return rc;
    }
    fprintf(out, "snapshot: index %" PRIu64 ", term %" PRIu64 ", %" PRIu64 " bytes\n",
            h.index, h.term, h.len);
    *snapshot_index = h.index;
    rc = dump_snapshot_config(out, buf + FMT_SNAPSHOT_HEADER_SIZE, (size_t)h.len);
    free(buf);
    return rc;
}

struct print_ctx {
    FILE *out;
    uint64_t snapshot_index;
    file_storage_describe_fn describe;
};

/* A command in the state machine's words if it has some for it, else a
 * preview of its bytes. */
static void print_data(const struct print_ctx *p, const struct fmt_record *r)
{
    char words[512];
    struct raft_membership m;
    if (r->type == RAFT_ENTRY_CONFIG && raft_membership_decode(&m, r->data, r->len) == 0) {
        fputs("config: ", p->out);
        print_config(p->out, &m);
    } else if (r->type == RAFT_ENTRY_COMMAND && p->describe &&
               p->describe(words, sizeof(words), r->data, r->len) >= 0) {
        fputs(words, p->out);
    } else {
        print_preview(p->out, r->data, r->len);
    }
}

static int print_record(void *arg, const struct fmt_record *r)
{
    struct print_ctx *p = arg;
    fprintf(p->out, "  %8" PRIu64 " %6" PRIu64 "  %-7s %8" PRIu32 "  ", r->index, r->term,
            type_name(r->type), r->len);
    print_data(p, r);
    if (r->index <= p->snapshot_index)
        fputs("  (in the snapshot)", p->out);
    fputc('\n', p->out);
    return 0;
}

/* Says what recovery would make of the place where a segment's scan
 * stopped. Returns -EBADMSG for corruption, 0 otherwise. */
static int print_scan_end(FILE *out, const uint8_t *buf, size_t len, bool is_last,
                          const struct fmt_scan *scan)
{
    size_t later;
    if (scan->wrong_index) {
        fprintf(out, "  offset %zu: a record with index %" PRIu64 ", expected %" PRIu64
                " (corrupt)\n", scan->end, scan->found_index, scan->next_index);
        return -EBADMSG;
    }
    if (scan->status == FMT_END)
        return 0;
    if (!is_last || fmt_later_batch_follows(buf, len, scan->end, scan->next_index, &later)) {
        fprintf(out, "  offset %zu: %s (corrupt: written before data that follows)\n",
                scan->end, fmt_status_text(scan->status));
        return -EBADMSG;
    }
    fprintf(out, "  offset %zu: %s, a torn write: load will cut these %zu bytes\n",
            scan->end, fmt_status_text(scan->status), len - scan->end);
    return 0;
}

static int dump_segment(const char *dir, FILE *out, uint64_t first, bool is_last,
                        struct print_ctx *p)
{
    char name[FMT_SEGMENT_NAME_LEN + 1];
    fmt_segment_name(name, first);
    uint8_t *buf;
    size_t len;
    int rc = slurp_or_say(dir, name, out, &buf, &len);
    if (rc)
        return rc;
    fprintf(out, "%s: %zu bytes\n", name, len);
    fprintf(out, "     index   term  type      length  data\n");
    struct fmt_scan scan;
    fmt_scan_segment(buf, len, first, print_record, p, &scan);
    rc = print_scan_end(out, buf, len, is_last, &scan);
    free(buf);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The first indices of the directory's segments, sorted. */
static int list_segments(const char *dir, uint64_t **firsts, size_t *n)
{
    *firsts = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    size_t cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t first;
        if (!fmt_parse_segment_name(e->d_name, &first))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            uint64_t *f = realloc(*firsts, cap * sizeof(*f));
            if (!f) {
                rc = -ENOMEM;
                break;
            }
            *firsts = f;
        }
        (*firsts)[(*n)++] = first;
    }
    closedir(d);
    if (rc == 0 && *n > 1)
        qsort(*firsts, *n, sizeof(**firsts), cmp_u64);
    return rc;
}

int file_storage_dump(const char *dir, FILE *out, file_storage_describe_fn describe)
{
    uint64_t *firsts;
    size_t n;
    int rc = list_segments(dir, &firsts, &n);
    if (rc) {
        fprintf(out, "%s: cannot read the directory (%s)\n", dir, strerror(-rc));
        return rc;
    }
    fprintf(out, "data directory: %s\n", dir);
    int bad = dump_meta(dir, out);
    rc = dump_bootstrap(dir, out);
    if (rc && !bad)
        bad = rc;
    struct print_ctx p = {.out = out, .describe = describe};
    rc = dump_snapshot(dir, out, &p.snapshot_index);
    if (rc && !bad)
        bad = rc;
    for (size_t i = 0; i < n; i++) {
        rc = dump_segment(dir, out, firsts[i], i + 1 == n, &p);
        if (rc && !bad)
            bad = rc;
    }
    if (n == 0)
        fprintf(out, "log: no segments\n");
    free(firsts);
    return bad;
}
