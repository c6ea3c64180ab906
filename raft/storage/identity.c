/*
 * identity.c - whose data directory this is.
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
#include <stdlib.h>
#include <string.h>

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
