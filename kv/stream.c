/*
 * stream.c - see stream.h. Bytes are read a megabyte at a time (or more
 * for a single larger take), so the source is asked few times whatever
 * the decoder's steps.
 */
#include "kv/stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv/bytes.h"

#define STREAM_READ_BYTES (1u << 20)

void stream_init(struct stream *r, uint64_t total,
                 int (*read)(void *src, uint8_t *buf, size_t n), void *src)
{
    *r = (struct stream){.read = read, .src = src, .unread = total};
}

static int fail(struct stream *r, int rc)
{
    if (r->rc == 0)
        r->rc = rc;
    return r->rc;
}

/* At least n bytes in buf[pos..end), or a failure. */
static int fill(struct stream *r, size_t n)
{
    size_t have = r->end - r->pos;
    if (n - have > r->unread)
        return fail(r, -EBADMSG);
    if (have)
        memmove(r->buf, r->buf + r->pos, have);
    r->pos = 0;
    r->end = have;
    size_t want = n > STREAM_READ_BYTES ? n : STREAM_READ_BYTES;
    if (want > r->cap) {
        uint8_t *b = realloc(r->buf, want);
        if (!b)
            return fail(r, -ENOMEM);
        r->buf = b;
        r->cap = want;
    }
    size_t chunk = r->cap - have;
    if (chunk > r->unread)
        chunk = (size_t)r->unread;
    int rc = r->read(r->src, r->buf + have, chunk);
    if (rc)
        return fail(r, rc);
    r->unread -= chunk;
    r->end += chunk;
    return 0;
}

const uint8_t *stream_take(struct stream *r, size_t n)
{
    if (r->rc || (r->end - r->pos < n && fill(r, n)))
        return NULL;
    if (n == 0)
        return (const uint8_t *)""; /* buf may not exist yet */
    const uint8_t *p = r->buf + r->pos;
    r->pos += n;
    return p;
}

uint32_t stream_u32(struct stream *r)
{
    const uint8_t *p = stream_take(r, 4);
    return p ? get_u32(p) : 0;
}

uint64_t stream_u64(struct stream *r)
{
    const uint8_t *p = stream_take(r, 8);
    return p ? get_u64(p) : 0;
}

uint64_t stream_left(const struct stream *r)
{
    return r->unread + (r->end - r->pos);
}

int stream_finish(struct stream *r)
{
    if (r->rc == 0 && (r->unread || r->pos != r->end))
        r->rc = -EBADMSG;
    free(r->buf);
    r->buf = NULL;
    return r->rc;
}
