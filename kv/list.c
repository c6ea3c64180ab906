/*
 * list.c - the keys of the store that start with a prefix, sorted, as a
 * listing (kv.h): what `raft client list` reads.
 */
#include "kv/kv.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kv/bytes.h"
#include "kv/store.h"

static int compare_items(const void *a, const void *b)
{
    const struct kv_item *x = *(const struct kv_item *const *)a;
    const struct kv_item *y = *(const struct kv_item *const *)b;
    uint32_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static bool has_prefix(const struct kv_item *it, const uint8_t *prefix, uint32_t len)
{
    return it->key && it->key_len >= len && (len == 0 || memcmp(it->key, prefix, len) == 0);
}

/* Encodes the items, sorted, into a malloc'd listing of at most max bytes. */
static int encode_listing(struct kv_item **found, size_t n, bool values, size_t max,
                          uint8_t **out, uint32_t *out_len)
{
    size_t size = 4;
    for (size_t i = 0; i < n; i++)
        size += 4 + found[i]->key_len + (values ? 4 + found[i]->value_len : 0);
    if (size > max)
        return -EMSGSIZE;
    uint8_t *buf = malloc(size), *p = buf;
    if (!buf)
        return -ENOMEM;
    put_u32(p, (uint32_t)n);
    p += 4;
    for (size_t i = 0; i < n; i++) {
        p = put_bytes(p, found[i]->key, found[i]->key_len);
        if (values)
            p = put_bytes(p, found[i]->value, found[i]->value_len);
    }
    *out = buf;
    *out_len = (uint32_t)size;
    return 0;
}

int kv_list(struct kv *kv, const uint8_t *prefix, uint32_t prefix_len, bool values,
            size_t max, uint8_t **out, uint32_t *out_len)
{
    pthread_mutex_lock(&kv->mu);
    struct kv_item **found = malloc((kv->n_items ? kv->n_items : 1) * sizeof(*found));
    int rc = found ? 0 : -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; found && i < kv->items_cap; i++)
        if (has_prefix(&kv->items[i], prefix, prefix_len))
            found[n++] = &kv->items[i];
    if (found) {
        qsort(found, n, sizeof(*found), compare_items);
        rc = encode_listing(found, n, values, max, out, out_len);
    }
    pthread_mutex_unlock(&kv->mu);
    free(found);
    return rc;
}
