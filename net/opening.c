/*
 * opening.c - the first bytes of a connection (see opening.h).
 */
#include "net/opening.h"

#include "net/wire.h"

#define TLS_HANDSHAKE_RECORD 22 /* RFC 8446 §5.1, ContentType handshake */

static bool opening_is_tls(const uint8_t *p, size_t n)
{
    return p[0] == TLS_HANDSHAKE_RECORD && (n < 2 || p[1] == 0x03) &&
           (n < 3 || (p[2] >= 0x01 && p[2] <= 0x04));
}

static bool opening_is_text(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] < 0x20 || p[i] > 0x7e) && p[i] != '\r' && p[i] != '\n' && p[i] != '\t')
            return false;
    return true;
}

enum opening opening_classify(const uint8_t *p, size_t n)
{
    if (n == 0)
        return OPENING_OTHER;
    if (opening_is_tls(p, n))
        return OPENING_TLS;
    if (n >= 6 && wire_frame_size(p) > 0 && p[4] == WIRE_VERSION)
        return OPENING_FRAME;
    return opening_is_text(p, n) ? OPENING_TEXT : OPENING_OTHER;
}

const char *opening_refusal(enum opening o, bool tls_port)
{
    if (!tls_port)
        return o == OPENING_TLS ? "it speaks TLS, and this node plain TCP (give the node "
                                  "--tls-dir, or the client no TLS flags)"
                                : NULL;
    switch (o) {
    case OPENING_TLS:
        return NULL;
    case OPENING_FRAME:
        return "it sent a plain-TCP frame to this TLS port (give the client --tls-dir, or "
               "--tls-ca, --tls-cert and --tls-key)";
    case OPENING_TEXT:
        return "it sent text (an HTTP request?), not a TLS handshake";
    default:
        return "its first bytes are not a TLS handshake";
    }
}
