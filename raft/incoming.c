/*
 * incoming.c - a snapshot being received from the leader, InstallSnapshot
 * chunk by chunk (Figure 13). With a storage that writes snapshots piece
 * by piece (begin_snapshot), each chunk goes to the storage's temporary
 * file as it arrives, so a follower never holds a snapshot as large as the
 * state in memory; with any other storage the chunks gather in a buffer
 * for save_snapshot. Either way the configuration at the snapshot's head
 * (§7: a snapshot carries the configuration it covers) is kept aside, to
 * be checked before anything is installed.
 */
#include "raft/node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void incoming_abort_locked(struct raft_node *n)
{
    struct incoming_snapshot *in = &n->incoming;
    if (in->writer)
        n->storage.end_snapshot(n->storage.ctx, in->writer, false);
    free(in->buf);
    *in = (struct incoming_snapshot){0};
}

int incoming_begin_locked(struct raft_node *n, uint64_t index, uint64_t term)
{
    incoming_abort_locked(n);
    struct incoming_snapshot *in = &n->incoming;
    if (node_storage_streams(&n->storage)) {
        int rc = n->storage.begin_snapshot(n->storage.ctx, index, term, &in->writer);
        if (rc)
            return rc;
    }
    in->open = true;
    in->index = index;
    in->term = term;
    return 0;
}

static int buffer(struct incoming_snapshot *in, const uint8_t *data, size_t len,
                  uint64_t total)
{
    size_t want = (size_t)in->len + len;
    if (want > in->cap) {
        size_t cap = total > want ? (size_t)total : want;
        uint8_t *b = realloc(in->buf, cap ? cap : 1);
        if (!b)
            return -ENOMEM;
        in->buf = b;
        in->cap = cap;
    }
    if (len)
        memcpy(in->buf + in->len, data, len);
    return 0;
}

int incoming_append_locked(struct raft_node *n, const uint8_t *data, size_t len,
                           uint64_t total)
{
    struct incoming_snapshot *in = &n->incoming;
    if (in->len < sizeof(in->head)) {
        size_t k = sizeof(in->head) - (size_t)in->len;
        memcpy(in->head + in->len, data, k < len ? k : len);
    }
    int rc = in->writer ? n->storage.write_snapshot(in->writer, data, len)
                        : buffer(in, data, len, total);
    if (rc == 0)
        in->len += len;
    return rc;
}

int incoming_configuration(const struct raft_node *n, struct raft_membership *m,
                           bool *found, size_t *state_offset)
{
    const struct incoming_snapshot *in = &n->incoming;
    size_t have = in->len < sizeof(in->head) ? (size_t)in->len : sizeof(in->head);
    return membership_snapshot_split(in->head, have, m, found, state_offset);
}

int incoming_store_locked(struct raft_node *n, uint8_t **data)
{
    struct incoming_snapshot *in = &n->incoming;
    *data = NULL;
    int rc;
    if (in->writer) {
        rc = n->storage.end_snapshot(n->storage.ctx, in->writer, true);
        in->writer = NULL;
    } else {
        rc = n->storage.save_snapshot(n->storage.ctx, in->index, in->term, in->buf,
                                      (size_t)in->len);
        if (rc == 0) {
            *data = in->buf;
            in->buf = NULL;
        }
    }
    return rc;
}
