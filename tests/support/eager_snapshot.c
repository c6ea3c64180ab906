/*
 * eager_snapshot.c - see eager_snapshot.h.
 */
#include "tests/support/eager_snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "raft/raft.h"

struct eager_view {
    uint8_t *data;
    size_t len;
};

int eager_snapshot_capture(int (*serialize)(void *ctx, uint8_t **data, size_t *len), void *ctx,
                           void **view)
{
    struct eager_view *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    int rc = serialize(ctx, &v->data, &v->len);
    if (rc) {
        free(v);
        return rc;
    }
    *view = v;
    return 0;
}

int eager_snapshot_serialize(void *ctx, void *view,
                             int (*write)(void *sink, const uint8_t *data, size_t len),
                             void *sink)
{
    (void)ctx;
    struct eager_view *v = view;
    int rc = write && v->len ? write(sink, v->data, v->len) : 0;
    free(v->data);
    free(v);
    return rc;
}

struct buffer {
    uint8_t *data;
    size_t len;
};

static int append(void *sink, const uint8_t *data, size_t len)
{
    struct buffer *b = sink;
    uint8_t *p = realloc(b->data, b->len + len);
    if (!p)
        return -ENOMEM;
    memcpy(p + b->len, data, len);
    b->data = p;
    b->len += len;
    return 0;
}

int fsm_view_bytes(const struct raft_fsm *f, void *view, uint8_t **data, size_t *len)
{
    struct buffer b = {0};
    int rc = f->snapshot_serialize(f->ctx, view, append, &b);
    if (rc) {
        free(b.data);
        return rc;
    }
    *data = b.data;
    *len = b.len;
    return 0;
}

int fsm_snapshot_bytes(const struct raft_fsm *f, uint8_t **data, size_t *len)
{
    void *view;
    int rc = f->snapshot_capture(f->ctx, &view);
    return rc ? rc : fsm_view_bytes(f, view, data, len);
}

/* A snapshot in memory, read in order. */
struct memory_source {
    const uint8_t *data;
    size_t len, at;
};

static int read_memory(void *src, uint8_t *buf, size_t n)
{
    struct memory_source *m = src;
    if (n > m->len - m->at)
        return -EINVAL;
    memcpy(buf, m->data + m->at, n);
    m->at += n;
    return 0;
}

int fsm_restore_bytes(const struct raft_fsm *f, uint64_t index, const uint8_t *data,
                      size_t len)
{
    struct memory_source m = {.data = data, .len = len};
    return f->restore(f->ctx, index, len, read_memory, &m);
}

int eager_restore_read_all(uint64_t len, int (*read)(void *src, uint8_t *buf, size_t n),
                           void *src, uint8_t **data)
{
    *data = malloc(len ? (size_t)len : 1);
    if (!*data)
        return -ENOMEM;
    int rc = read(src, *data, (size_t)len);
    if (rc) {
        free(*data);
        *data = NULL;
    }
    return rc;
}
