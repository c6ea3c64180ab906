/*
 * tls.h - mutually authenticated TLS 1.3 (OpenSSL) under the frames of
 * net/wire.h, for peers and clients alike.
 *
 * Both ends present a certificate of the cluster's CA, and both verify the
 * other's (RFC 8446 §4.4.2: the server asks with CertificateRequest, and a
 * handshake without a client certificate fails). Who a certificate speaks
 * for is in its subject's common name: "node-I" for node I, "client" for
 * a client. Being signed by the CA proves only that it belongs to the
 * cluster; what it may do is decided by that role (the lesson of Consul's
 * CVE-2021-37219, where any certificate of the CA reached server-only RPC).
 *
 * A struct tls_conn wraps a connected, non-blocking socket after connect()
 * or accept(). Its reads and writes never block; the caller polls the
 * socket for the events they ask for (net/tcp_socket.c does, within its
 * deadlines). One thread may read while another writes: each OpenSSL call
 * is made under the connection's own lock, never held while waiting.
 *
 * Everything returns 0 (or a count) or a negative errno.
 */
#ifndef NET_TLS_H
#define NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* PEM files; all NULL means plain TCP. */
struct tls_files {
    const char *ca;   /* the CA certificate(s) that sign every peer's */
    const char *cert; /* this end's certificate */
    const char *key;  /* its private key */
};

enum tls_role {
    TLS_ROLE_NONE = 0, /* a certificate of the CA naming no known role */
    TLS_ROLE_NODE,     /* CN=node-I */
    TLS_ROLE_CLIENT,   /* CN=client */
};

struct tls_identity {
    enum tls_role role;
    uint32_t id; /* the node id, for TLS_ROLE_NODE */
};

/* The command line's TLS flags as given: --tls-dir DIR, or --tls-ca,
 * --tls-cert and --tls-key together (NULL when absent). */
struct tls_flags {
    const char *dir, *ca, *cert, *key;
};

#define TLS_PATH_MAX 1024
struct tls_paths {
    char ca[TLS_PATH_MAX], cert[TLS_PATH_MAX], key[TLS_PATH_MAX];
    struct tls_files files; /* pointing into the above, or all NULL */
};

/* The files the flags name for a certificate called `name` ("node-2",
 * "client"): DIR/ca.crt, DIR/name.crt and DIR/name.key for --tls-dir.
 * No flag at all: 0 with every file NULL (plain TCP). Flags half given or
 * mixed: -EINVAL with one sentence in err naming them. */
int tls_flags_resolve(const struct tls_flags *f, const char *name, struct tls_paths *out,
                      char *err, size_t err_cap);

struct tls_ctx;
struct tls_conn;

/* Loads the CA, the certificate and its key (checked to match), for TLS 1.3
 * only with peer verification both ways. On failure *err holds one
 * sentence naming the file at fault. */
int tls_ctx_new(struct tls_ctx **out, const struct tls_files *files, char *err,
                size_t err_cap);
void tls_ctx_free(struct tls_ctx *ctx);

/* Who this end's own certificate says it is. */
struct tls_identity tls_ctx_identity(const struct tls_ctx *ctx);

/* Parses a common name: "node-I" (I a decimal id) or "client". */
struct tls_identity tls_identity_parse(const char *common_name);

/* "node-3", "client" or "no known role", for log lines. */
const char *tls_identity_str(struct tls_identity id, char *buf, size_t cap);

/* Runs the handshake on fd (connected, non-blocking) as the server,
 * until done or the deadline (ms on CLOCK_MONOTONIC, as tcp_now_ms()). On
 * success *out owns the session (not fd) and *peer is who the verified
 * certificate names. On failure *err says why in a few words: -ETIMEDOUT,
 * -ECONNRESET (closed mid-way), -EPROTO (not TLS, refused or
 * unverifiable), -ENOMEM. */
int tls_conn_accept(struct tls_conn **out, struct tls_ctx *ctx, int fd, int64_t deadline,
                    struct tls_identity *peer, char *err, size_t err_cap);

/* The same as the client of host, the name or address it dialed: the
 * server's certificate must also list host among its subject alternative
 * names (net/tls_names.h), or the handshake fails with -EPROTO and err
 * names the host and the names the certificate does carry. */
int tls_conn_connect(struct tls_conn **out, struct tls_ctx *ctx, int fd, const char *host,
                     int64_t deadline, struct tls_identity *peer, char *err,
                     size_t err_cap);

/* Frees the session; the socket stays open (its owner closes it). */
void tls_conn_free(struct tls_conn *c);

/* Reads up to n bytes. Returns the count (> 0), or -EAGAIN with *events
 * set to what to poll for before trying again, or -ECONNRESET at the end
 * of the stream, or -EPROTO / -errno. */
long tls_conn_read(struct tls_conn *c, void *buf, size_t n, short *events);

/* Writes up to n bytes (n > 0), as tls_conn_read() reads. After -EAGAIN
 * the same bytes must be offered again. */
long tls_conn_write(struct tls_conn *c, const void *buf, size_t n, short *events);

/* Bytes already decrypted and waiting to be read: poll() on the socket
 * cannot see them. */
bool tls_conn_pending(struct tls_conn *c);

#endif
