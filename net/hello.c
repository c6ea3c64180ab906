/*
 * hello.c - encode and decode the hello frames of hello.h: pure functions
 * over buffers, every length checked before a byte is read.
 */
#include "net/hello.h"

#include <errno.h>
#include <string.h>

static void hello_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

long hello_encode(const struct hello *h, uint8_t *buf, size_t cap)
{
    bool reply = h->type == WIRE_HELLO_REPLY;
    if ((!reply && h->type != WIRE_HELLO) || (reply && h->verdict > CLUSTER_VERDICT_MAX))
        return -EINVAL;
    size_t size = reply ? HELLO_REPLY_SIZE : HELLO_SIZE;
    if (cap < size)
        return -EMSGSIZE;
    hello_put_be32(buf, (uint32_t)(size - 4));
    buf[4] = WIRE_VERSION;
    buf[5] = h->type;
    hello_put_be32(buf + 6, h->from);
    uint8_t *p = buf + WIRE_HEADER;
    if (reply)
        *p++ = h->verdict;
    *p++ = h->cluster.known ? 1 : 0;
    if (h->cluster.known)
        memcpy(p, h->cluster.bytes, CLUSTER_ID_SIZE);
    else
        memset(p, 0, CLUSTER_ID_SIZE);
    return (long)size;
}

static bool hello_all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

int hello_decode(const uint8_t *buf, size_t len, struct hello *h)
{
    memset(h, 0, sizeof *h);
    if (len < WIRE_HEADER)
        return -EBADMSG;
    if (buf[4] != WIRE_VERSION || (buf[5] != WIRE_HELLO && buf[5] != WIRE_HELLO_REPLY))
        return -EPROTO;
    bool reply = buf[5] == WIRE_HELLO_REPLY;
    size_t size = reply ? HELLO_REPLY_SIZE : HELLO_SIZE;
    if (len != size || wire_be32(buf) != size - 4)
        return -EBADMSG;
    h->type = buf[5];
    h->from = wire_be32(buf + 6);
    const uint8_t *p = buf + WIRE_HEADER;
    if (reply) {
        h->verdict = *p++;
        if (h->verdict > CLUSTER_VERDICT_MAX)
            return -EBADMSG;
    }
    uint8_t known = *p++;
    if (known > 1 || (known == 0 && !hello_all_zero(p, CLUSTER_ID_SIZE)))
        return -EBADMSG;
    h->cluster.known = known == 1;
    if (h->cluster.known)
        memcpy(h->cluster.bytes, p, CLUSTER_ID_SIZE);
    return 0;
}
