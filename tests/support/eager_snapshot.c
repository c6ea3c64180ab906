/*
 * eager_snapshot.c - see eager_snapshot.h.
 */
#include "tests/support/eager_snapshot.h"

#include <errno.h>
#include <stdlib.h>

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

int eager_snapshot_serialize(void *ctx, void *view, uint8_t **data, size_t *len)
{
    (void)ctx;
    struct eager_view *v = view;
    if (data) {
        *data = v->data;
        *len = v->len;
    } else {
        free(v->data);
    }
    free(v);
    return 0;
}
