/*
 * hello.h - the first frame of every peer connection, and its answer: who
 * dials, and for which cluster (net/cluster_id.h).
 *
 * Both are frames of net/wire.h (the same 10-byte header: length, version,
 * type, from), of fixed size, all integers big-endian:
 *
 *   WIRE_HELLO (18), 27 bytes     header, u8 known (0 or 1), 16 bytes id
 *   WIRE_HELLO_REPLY (19), 28 bytes   header, u8 verdict (enum
 *                                 cluster_verdict), u8 known, 16 bytes id
 *
 * `from` is the dialer's node id in a hello, the server's in the reply;
 * `known` 0 means the sender has no cluster id yet, and then the id's
 * bytes must be zero. The encoding is canonical: a frame that decodes
 * re-encodes to the same bytes. A server with a cluster identity serves
 * peer messages on a connection only after a hello it welcomed; client
 * requests need none.
 */
#ifndef NET_HELLO_H
#define NET_HELLO_H

#include <stddef.h>
#include <stdint.h>

#include "net/cluster_id.h"
#include "net/wire.h"

#define HELLO_SIZE (WIRE_HEADER + 1 + CLUSTER_ID_SIZE)
#define HELLO_REPLY_SIZE (HELLO_SIZE + 1)

struct hello {
    uint8_t type;  /* WIRE_HELLO or WIRE_HELLO_REPLY */
    uint32_t from; /* the sender's node id */
    uint8_t verdict; /* WIRE_HELLO_REPLY only: enum cluster_verdict */
    struct cluster_id cluster; /* the sender's */
};

/* Encodes h into buf (at least HELLO_REPLY_SIZE bytes). Returns the size,
 * or -EINVAL for a type that is not a hello's or a verdict out of range. */
long hello_encode(const struct hello *h, uint8_t *buf, size_t cap);

/* Decodes one whole frame of exactly len bytes: 0, -EPROTO (not a hello
 * or its reply, or another version), -EBADMSG (a wrong length, a flag that
 * is not 0 or 1, an unknown id with bytes that are not zero, an unknown
 * verdict). */
int hello_decode(const uint8_t *buf, size_t len, struct hello *h);

#endif
