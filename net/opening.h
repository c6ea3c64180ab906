/*
 * opening.h - what the first bytes of a connection say it speaks, before
 * anything else reads them: the server's TLS-or-plaintext decision.
 *
 * A TLS port is dialed now and then by a client without TLS flags, and a
 * plain port by one with them. Both fail either way; what this adds is the
 * reason a student can act on, in the log line of the refusal, instead of
 * OpenSSL's "wrong version number" or a frame length of 369 MB.
 *
 * A TLS connection opens with a handshake record (RFC 8446 §5.1): content
 * type 22, then the legacy version 0x03 0x01..0x04. A frame of net/wire.h
 * opens with a length below WIRE_MAX_FRAME (so a zero first byte) and
 * WIRE_VERSION at offset 4.
 */
#ifndef NET_OPENING_H
#define NET_OPENING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum opening {
    OPENING_TLS,   /* a TLS handshake record, as far as the bytes go */
    OPENING_FRAME, /* a frame of net/wire.h: plain TCP */
    OPENING_TEXT,  /* printable text: an HTTP request, a telnet */
    OPENING_OTHER,
};

/* Classifies the first n bytes (n >= 1; fewer than 6 may not tell a frame
 * from other bytes, and then say OPENING_OTHER). */
enum opening opening_classify(const uint8_t *p, size_t n);

/* The end of the log line refusing such a connection on a TLS port
 * (tls_port) or a plain one; NULL when there is nothing to refuse
 * (TLS on a TLS port, a frame on a plain one). */
const char *opening_refusal(enum opening o, bool tls_port);

#endif
