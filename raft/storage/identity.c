/*
 * identity.c - whose data directory this is: which node's, and which
 * cluster's.
 *
 * A directory holds one node's term, vote and log. Started under another
 * id by mistake (a copied directory, a swapped --id), the node would vote
 * and append as someone it is not: two members with one log, or one
 * member's promises (its vote in a term) broken by the other. So the
 * directory records the id of the node that first started on it, in the
 * file node-id (format.c), and a start under another id is refused before
 * anything is read or written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft/storage/crc32c.h"
#include "raft/storage/format.h"
#include "raft/storage/internal.h"

/* Records `id`: a new directory, or one from a release that kept no
 * node-id file. */
static int record_id_locked(struct file_storage *s, uint32_t id)
{
    uint8_t buf[FMT_NODE_ID_SIZE];
    fmt_node_id_encode(buf, id);
    int rc = storage_replace_file(s, FMT_NODE_ID_TMP_NAME, FMT_NODE_ID_NAME, buf, sizeof(buf),
                                  NULL, 0);
    if (rc == 0)
        storage_say(s, RAFT_LOG_INFO, "%s: recorded as the data directory of node %u", s->dir,
                    id);
    return rc;
}

static int claim_locked(struct file_storage *s, uint32_t id)
{
    char path[PATH_MAX];
    storage_path(s, FMT_NODE_ID_NAME, path);
    uint8_t *buf;
    size_t len;
    int rc = storage_read_file(s, path, &buf, &len);
    if (rc == -ENOENT)
        return record_id_locked(s, id);
    if (rc)
        return storage_errorf(s, rc, "%s: cannot read (%s)", path, strerror(-rc));
    uint32_t owner;
    const char *why;
    size_t off;
    rc = fmt_node_id_decode(buf, len, &owner, &why, &off);
    free(buf);
    if (rc)
        return storage_errorf(s, rc,
                              "%s: %s at offset %zu; whose directory this is is unknown, so "
                              "the node must not start",
                              path, why, off);
    if (owner != id)
        return storage_errorf(s, -EEXIST,
                              "%s: the data directory belongs to node %u, and node %u was "
                              "asked to start on it; give each node its own directory",
                              s->dir, owner, id);
    return 0;
}

int file_storage_claim_id(struct file_storage *s, uint32_t id)
{
    pthread_mutex_lock(&s->mu);
    int rc = claim_locked(s, id);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- the cluster the directory belongs to ----
 *
 * cluster-id  the id of the cluster the node belongs to (net/cluster_id.h),
 *             28 bytes, all integers big-endian:
 *               0  u32 magic "RFTC"      4  u32 version (1)
 *               8  16 bytes: the id     24  u32 crc32c of bytes 0..23
 *             Written at the first start of a node that bootstraps a
 *             cluster (its id derived from --peers or --cluster-name), or
 *             when a node that was not yet in a cluster adopts the id of
 *             the first peer to contact it. Replaced atomically like
 *             node-id (cluster-id.tmp, fdatasync, rename, directory fsync).
 *             Missing: not yet in a cluster, or a directory written by a
 *             release that kept no cluster id.
 *
 * A node started for another cluster than its directory's is refused
 * before anything is read: its log would be another cluster's history.
 */

#define CLUSTER_ID_NAME "cluster-id"
#define CLUSTER_ID_TMP_NAME "cluster-id.tmp"
#define CLUSTER_ID_MAGIC 0x52465443u /* "RFTC" */
#define CLUSTER_ID_FILE_SIZE (8 + FILE_STORAGE_CLUSTER_ID_SIZE + 4)

static void cluster_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t cluster_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The first 12 hex digits, as the logs of the network show a cluster id. */
static const char *cluster_hex(const uint8_t id[FILE_STORAGE_CLUSTER_ID_SIZE], char buf[16])
{
    for (int i = 0; i < 6; i++)
        snprintf(buf + 2 * i, 3, "%02x", id[i]);
    return buf;
}

static void cluster_encode(uint8_t out[CLUSTER_ID_FILE_SIZE],
                           const uint8_t id[FILE_STORAGE_CLUSTER_ID_SIZE])
{
    cluster_put_be32(out, CLUSTER_ID_MAGIC);
    cluster_put_be32(out + 4, FMT_VERSION);
    memcpy(out + 8, id, FILE_STORAGE_CLUSTER_ID_SIZE);
    cluster_put_be32(out + 24, crc32c(0, out, 24));
}

/* The checksum is checked before the version, so that a damaged version
 * reads as damage rather than as a format from the future. */
static int cluster_decode(const uint8_t *buf, size_t len,
                          uint8_t id[FILE_STORAGE_CLUSTER_ID_SIZE], const char **why,
                          size_t *off)
{
    *off = 0;
    if (len != CLUSTER_ID_FILE_SIZE) {
        *why = len < CLUSTER_ID_FILE_SIZE ? "the file is cut short" : "the file is too long";
        *off = len < CLUSTER_ID_FILE_SIZE ? len : CLUSTER_ID_FILE_SIZE;
        return -EBADMSG;
    }
    *why = cluster_get_be32(buf) != CLUSTER_ID_MAGIC ? "not a cluster-id file (bad magic number)"
           : crc32c(0, buf, 24) != cluster_get_be32(buf + 24) ? "bad checksum"
           : cluster_get_be32(buf + 4) != FMT_VERSION ? "unsupported format version" : NULL;
    if (*why != NULL) {
        *off = strcmp(*why, "unsupported format version") == 0 ? 4 : 0;
        return -EBADMSG;
    }
    memcpy(id, buf + 8, FILE_STORAGE_CLUSTER_ID_SIZE);
    return 0;
}

static int record_cluster_locked(struct file_storage *s,
                                 const uint8_t id[FILE_STORAGE_CLUSTER_ID_SIZE])
{
    uint8_t buf[CLUSTER_ID_FILE_SIZE];
    cluster_encode(buf, id);
    int rc = storage_replace_file(s, CLUSTER_ID_TMP_NAME, CLUSTER_ID_NAME, buf, sizeof(buf),
                                  NULL, 0);
    char hex[16];
    if (rc == 0)
        storage_say(s, RAFT_LOG_INFO, "%s: recorded as a data directory of cluster %s", s->dir,
                    cluster_hex(id, hex));
    return rc;
}

/* The directory's id into stored: 0, -ENOENT (none recorded) or -EBADMSG
 * / -errno (said in the storage's error). */
static int read_cluster_locked(struct file_storage *s,
                               uint8_t stored[FILE_STORAGE_CLUSTER_ID_SIZE])
{
    char path[PATH_MAX];
    storage_path(s, CLUSTER_ID_NAME, path);
    uint8_t *buf;
    size_t len;
    int rc = storage_read_file(s, path, &buf, &len);
    if (rc == -ENOENT)
        return rc;
    if (rc)
        return storage_errorf(s, rc, "%s: cannot read (%s)", path, strerror(-rc));
    const char *why;
    size_t off;
    rc = cluster_decode(buf, len, stored, &why, &off);
    free(buf);
    if (rc)
        return storage_errorf(s, rc,
                              "%s: %s at offset %zu; which cluster this directory belongs to "
                              "is unknown, so the node must not start",
                              path, why, off);
    return 0;
}

static int claim_cluster_locked(struct file_storage *s, const uint8_t *derived,
                                uint8_t out[FILE_STORAGE_CLUSTER_ID_SIZE], bool *known)
{
    uint8_t stored[FILE_STORAGE_CLUSTER_ID_SIZE];
    int rc = read_cluster_locked(s, stored);
    *known = false;
    if (rc == -ENOENT && derived == NULL)
        return 0;
    if (rc == -ENOENT) {
        rc = record_cluster_locked(s, derived);
        memcpy(stored, derived, FILE_STORAGE_CLUSTER_ID_SIZE);
    }
    if (rc)
        return rc;
    char a[16], b[16];
    if (derived != NULL && memcmp(derived, stored, FILE_STORAGE_CLUSTER_ID_SIZE) != 0)
        return storage_errorf(s, -EEXIST,
                              "%s: the data directory belongs to cluster %s, and this node "
                              "was started for cluster %s (from its --peers, or "
                              "--cluster-name); start it as it was first started, or give "
                              "it its own directory",
                              s->dir, cluster_hex(stored, a), cluster_hex(derived, b));
    memcpy(out, stored, FILE_STORAGE_CLUSTER_ID_SIZE);
    *known = true;
    return 0;
}

int file_storage_claim_cluster(struct file_storage *s, const uint8_t *derived,
                               uint8_t out[FILE_STORAGE_CLUSTER_ID_SIZE], bool *known)
{
    pthread_mutex_lock(&s->mu);
    int rc = claim_cluster_locked(s, derived, out, known);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int file_storage_record_cluster(struct file_storage *s,
                                const uint8_t id[FILE_STORAGE_CLUSTER_ID_SIZE])
{
    pthread_mutex_lock(&s->mu);
    uint8_t stored[FILE_STORAGE_CLUSTER_ID_SIZE];
    int rc = read_cluster_locked(s, stored);
    char a[16], b[16];
    if (rc == 0 && memcmp(stored, id, FILE_STORAGE_CLUSTER_ID_SIZE) != 0)
        rc = storage_errorf(s, -EEXIST, "%s: the data directory belongs to cluster %s already, "
                            "not %s", s->dir, cluster_hex(stored, a), cluster_hex(id, b));
    else if (rc == -ENOENT)
        rc = record_cluster_locked(s, id);
    pthread_mutex_unlock(&s->mu);
    return rc;
}
