/*
 * bootstrap.c - the configuration a cluster started from.
 *
 * `raft node --peers A,B,C` names the first configuration: ids 0, 1, 2 by
 * position, all voters. Once the cluster runs, members join and leave
 * (thesis ch. 4) and --peers goes stale; an operator who restarts a node
 * with the command line it was first given, or with a list edited since,
 * must not make the node start from another configuration than the one
 * its cluster started from: its log, written under that configuration,
 * would be read under another one. So the first --peers is recorded in the
 * file `bootstrap` (format.c) next to node-id, and every later start uses
 * the recorded one. The configuration in the log or the snapshot, when
 * there is one, wins over both (the node does that, thesis §4.1).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "raft/storage/format.h"
#include "raft/storage/internal.h"

static int record_locked(struct file_storage *s, const struct raft_membership *m)
{
    uint8_t buf[FMT_BOOTSTRAP_MAX_SIZE];
    size_t len = fmt_bootstrap_encode(buf, m);
    int rc = storage_replace_file(s, FMT_BOOTSTRAP_TMP_NAME, FMT_BOOTSTRAP_NAME, buf, len, NULL,
                                  0);
    if (rc == 0)
        storage_say(s, RAFT_LOG_INFO, "%s: recorded the bootstrap configuration (%u node%s): "
                    "every later start uses it, whatever --peers says", s->dir, m->n,
                    m->n == 1 ? "" : "s");
    return rc;
}

static int bootstrap_locked(struct file_storage *s, const struct raft_membership *given,
                            struct raft_membership *used)
{
    char path[PATH_MAX];
    storage_path(s, FMT_BOOTSTRAP_NAME, path);
    uint8_t *buf;
    size_t len;
    int rc = storage_read_file(s, path, &buf, &len);
    if (rc == -ENOENT) {
        *used = *given;
        return given->n > 0 ? record_locked(s, given) : 0;
    }
    if (rc)
        return storage_errorf(s, rc, "%s: cannot read (%s)", path, strerror(-rc));
    const char *why;
    size_t off;
    rc = fmt_bootstrap_decode(buf, len, used, &why, &off);
    free(buf);
    if (rc)
        return storage_errorf(s, rc,
                              "%s: %s at offset %zu; the configuration this node started "
                              "from is unknown, so it must not start",
                              path, why, off);
    return 0;
}

int file_storage_bootstrap(struct file_storage *s, const struct raft_membership *given,
                           struct raft_membership *used)
{
    pthread_mutex_lock(&s->mu);
    int rc = bootstrap_locked(s, given, used);
    pthread_mutex_unlock(&s->mu);
    return rc;
}
