/*
 * stream.h - a bounds-checked reader over bytes that arrive in pieces (a
 * snapshot restored from storage a megabyte at a time), for decoders that
 * want a few contiguous bytes at a time.
 *
 *     struct stream r;
 *     stream_init(&r, total, read, src);
 *     uint32_t n = stream_u32(&r);
 *     const uint8_t *key = stream_take(&r, n);  // valid until the next call
 *     ...
 *     int rc = stream_finish(&r);               // 0, -EBADMSG or read's error
 */
#ifndef KV_STREAM_H
#define KV_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct stream {
    int (*read)(void *src, uint8_t *buf, size_t n);
    void *src;
    uint64_t unread; /* bytes of the source not read into buf yet */
    uint8_t *buf;
    size_t cap, pos, end; /* buf[pos..end) is read and not yet taken */
    int rc;               /* the first failure: nothing more is taken */
};

/* A stream of `total` bytes, which read(src, buf, n) copies in order. */
void stream_init(struct stream *r, uint64_t total,
                 int (*read)(void *src, uint8_t *buf, size_t n), void *src);
/* The next n bytes, contiguous, valid until the next call; NULL once the
 * stream has failed or ends before them. */
const uint8_t *stream_take(struct stream *r, size_t n);
uint32_t stream_u32(struct stream *r); /* big-endian; 0 on failure */
uint64_t stream_u64(struct stream *r);
/* The bytes not taken yet. */
uint64_t stream_left(const struct stream *r);
/* Frees the buffer: 0 if every byte was taken and nothing failed,
 * -EBADMSG if bytes were missing or left over, or read's error. */
int stream_finish(struct stream *r);

#endif
