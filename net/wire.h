/*
 * wire.h - the framed binary format of every message, peer and client.
 *
 * Frame layout (all integers big-endian, fixed width):
 *
 *   u32 length      bytes that follow this field (version .. end of body)
 *   u8  version     WIRE_VERSION
 *   u8  type        enum wire_type
 *   u32 from        sender's node id, or WIRE_FROM_CLIENT
 *   ... body        fields of the message, in the order of its struct
 *
 * Byte strings are a u32 length followed by the bytes. A frame is at most
 * WIRE_MAX_FRAME bytes including the length field. Decoding is a pure
 * function over a buffer: every length is checked against the bytes present
 * and the maximum before anything is read or allocated, and a frame with
 * trailing bytes is refused.
 */
#ifndef NET_WIRE_H
#define NET_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

#define WIRE_VERSION 1
#define WIRE_MAX_FRAME (8u << 20)
#define WIRE_HEADER 10 /* length + version + type + from */
#define WIRE_FROM_CLIENT 0xffffffffu

enum wire_type {
    /* 1..6 are the Raft RPCs, numbered as enum raft_msg_type */
    WIRE_CLIENT_REQUEST = 16,
    WIRE_CLIENT_REPLY = 17,
    /* The first frame of a peer connection and its answer: net/hello.h
     * (wire_decode() does not take them). */
    WIRE_HELLO = 18,
    WIRE_HELLO_REPLY = 19,
};

enum client_op {
    CLIENT_PUT = 1,
    CLIENT_GET = 2,
    CLIENT_STATUS = 3,
    CLIENT_TRANSFER = 4, /* key: the target's id in decimal, or empty for any */
    CLIENT_DELETE = 5,
    CLIENT_CAS = 6,         /* the only op that carries `expected` */
    CLIENT_LIST = 7,        /* key: the prefix; the reply's value: a listing (kv/kv.h) */
    CLIENT_LIST_VALUES = 8, /* the same, with each key's value */
    /* Membership (thesis ch. 4), answered by the leader only. The reply's
     * value: the leader's configuration (wire_members_encode). */
    CLIENT_MEMBER_LIST = 9,
    CLIENT_MEMBER_ADD = 10,    /* member_id, learner, wait_ms; value: its "host:port" */
    CLIENT_MEMBER_REMOVE = 11, /* member_id, wait_ms (learner: 0, unused) */
};

enum client_status {
    CLIENT_OK = 0,
    CLIENT_NOT_FOUND = 1,   /* get of a key that does not exist */
    CLIENT_NOT_LEADER = 2,  /* try leader_hint (or another node) */
    CLIENT_RETRY = 3,       /* no outcome yet (election, timeout): retry */
    CLIENT_BAD_REQUEST = 4, /* malformed or oversized request */
    CLIENT_REFUSED = 5,     /* the cluster refused it; value: one sentence why */
    CLIENT_MISMATCH = 6,    /* cas: the key held another value (in value) */
    CLIENT_TOO_LARGE = 7,   /* list: the answer would exceed CLIENT_MAX_VALUE */
};

#define CLIENT_MAX_KEY 1024
#define CLIENT_MAX_VALUE (1u << 20)
#define CLIENT_MAX_ADDR 255

struct client_request {
    uint8_t op; /* enum client_op */
    uint64_t client_id; /* a session (thesis §6.3); 0 for status */
    uint64_t seq;       /* numbers the session's requests from 1 */
    uint32_t key_len;
    uint8_t *key; /* borrowed */
    uint32_t value_len;
    uint8_t *value; /* borrowed */
    uint32_t expected_len; /* CLIENT_CAS only: encoded after value */
    uint8_t *expected;     /* borrowed */
    /* CLIENT_MEMBER_ADD and CLIENT_MEMBER_REMOVE only, encoded after value */
    uint32_t member_id; /* the server added or removed, 0 .. RAFT_MAX_ID */
    uint8_t learner;    /* add: as a learner (it never votes); else a voter */
    uint32_t wait_ms;   /* how long the leader may wait for the change to commit */
};

/* The value of an OK reply to CLIENT_STATUS (the node's own view) and to
 * CLIENT_MEMBER_LIST (the leader's): a configuration, encoded by
 * wire_members_encode (layout in net/wire_members.c). */
struct client_reply {
    uint8_t status;      /* enum client_status */
    int32_t leader_hint; /* RAFT_NO_NODE when unknown */
    uint32_t leader_addr_len;
    uint8_t *leader_addr; /* "host:port" of leader_hint as this node knows it; borrowed */
    uint32_t value_len;
    uint8_t *value; /* borrowed */
    /* filled in for CLIENT_STATUS */
    uint32_t id;
    uint8_t role; /* enum raft_role */
    uint64_t term;
    int32_t leader;
    uint64_t commit;
    uint64_t applied;
    uint64_t last_index;
};

struct wire_msg {
    uint8_t type; /* enum raft_msg_type or enum wire_type */
    uint32_t from;
    union {
        struct raft_msg raft; /* raft.type == type, raft.from == from */
        struct client_request request;
        struct client_reply reply;
    } u;
};

/* Size of the encoded frame of msg, length field included. */
size_t wire_size(const struct wire_msg *msg);

/* Encodes msg into buf (at least wire_size(msg) bytes). Returns the number of
 * bytes written, or -EMSGSIZE if the frame would exceed WIRE_MAX_FRAME. */
long wire_encode(const struct wire_msg *msg, uint8_t *buf, size_t cap);

/* Reads a big-endian u32, such as the length field of a frame. */
uint32_t wire_be32(const uint8_t p[4]);

/* Reads the length field of a frame header: the total frame size, or
 * -EMSGSIZE / -EBADMSG when it is too large or too small to be a frame. */
long wire_frame_size(const uint8_t header[4]);

/* Decodes one whole frame of exactly len bytes. Pointers in *msg point into
 * buf (no copy); the only allocation is the array of AppendEntries entries,
 * released with wire_msg_release(). Returns 0 or -EBADMSG / -EMSGSIZE /
 * -EPROTO (unknown version or type). */
int wire_decode(const uint8_t *buf, size_t len, struct wire_msg *msg);

void wire_msg_release(struct wire_msg *msg);

/* Wraps a Raft message in a wire message. */
void wire_from_raft(struct wire_msg *w, const struct raft_msg *m);

/* A node's view of its configuration as the bytes of a reply's value.
 * WIRE_MEMBERS_MAX bounds the encoding; encode returns its length. decode
 * returns 0, or -EBADMSG for bytes that are not one (a bounds-checked,
 * pure function, as wire_decode: ids above RAFT_MAX_ID, one id twice, more
 * than RAFT_MAX_NODES members or trailing bytes are refused). */
#define WIRE_MEMBERS_MAX (8 + 1 + 8 + 1 + RAFT_MAX_NODES * (4 + 1 + 8 + 1 + RAFT_ADDR_MAX))
size_t wire_members_encode(const struct raft_membership_view *v, uint8_t *buf);
int wire_members_decode(struct raft_membership_view *v, const uint8_t *buf, size_t len);

#endif
