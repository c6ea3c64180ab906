/*
 * tls_certs.h - a CA and the certificates mutual TLS needs (net/tls.h),
 * made with OpenSSL's API, for `raft certs`.
 *
 * In DIR: ca.crt and ca.key (the CA, valid ten years; its key signs new
 * certificates and belongs offline), node-I.crt/.key for I in 0..N-1
 * (CN=node-I, server and client use, the given hosts and 127.0.0.1 and
 * localhost as subject alternative names) and client.crt/.key (CN=client,
 * client use only). Keys are ECDSA P-256, written mode 0600; certificates
 * are signed with SHA-256 and valid two years.
 */
#ifndef NET_TLS_CERTS_H
#define NET_TLS_CERTS_H

#include <stddef.h>

/* hosts: a comma-separated list of names or IP addresses, or NULL. Makes
 * dir (0700) if missing; refuses a dir that already holds a ca.crt.
 * Returns 0, or -EINVAL (a bad host, an existing CA) / -errno, with one
 * sentence in err. */
int tls_certs_make(const char *dir, unsigned n_nodes, const char *hosts, char *err,
                   size_t err_cap);

#endif
