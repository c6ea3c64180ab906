/*
 * tls_names.h - what a certificate's names say: the role and node id in
 * its subject's common name, and the hosts in its subject alternative
 * names (RFC 5280 §4.2.1.6), for net/tls.c; not for use outside net/ and
 * the fuzz targets.
 *
 * Two checks, both needed. The common name says who the certificate speaks
 * for ("node-2"): a node dials peer 2 only if the certificate shown there
 * names node-2. The subject alternative names say where it may be served
 * from: a dialer also checks that they cover the host it dialed (RFC 6125
 * §6: the "reference identity" is the name the client was given), so that
 * node 2's certificate and key, copied to another machine, cannot stand in
 * for node 2 at an address that is not its own.
 */
#ifndef NET_TLS_NAMES_H
#define NET_TLS_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/tls.h"

/* The role and id the certificate's subject common name gives. */
struct tls_identity tls_cert_identity(X509 *cert);

/* Its subject alternative names, for a log line: "DNS:localhost, IP:127.0.0.1",
 * or "no subject alternative names". Always NUL-terminated. */
void tls_cert_names(X509 *cert, char *buf, size_t cap);

/* Has the handshake on ssl check that the server's certificate covers host
 * (an IPv4 or IPv6 address against its IP names, else a DNS name against
 * its DNS names, wildcards only as a whole left-most label). 0, or -ENOMEM. */
int tls_expect_host(SSL *ssl, const char *host);

/* For the fuzz target: parses DER bytes as a certificate and fills in the
 * identity and the names (as tls_cert_names). 0, or -EBADMSG when the bytes
 * are not a certificate. */
int tls_der_identity(const uint8_t *der, size_t len, struct tls_identity *id, char *names,
                     size_t names_cap);

#endif
