/*
 * tls.c - the TLS 1.3 context and sessions of tls.h, over OpenSSL.
 *
 * One SSL_CTX serves both directions: a node accepts with the same
 * certificate it dials with. Session tickets and the session cache are off:
 * connections are long-lived, and resumption would skip the client
 * certificate check that decides what a connection may do.
 */
#include "net/tls.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/tcp_internal.h"
#include "net/tls_names.h"

struct tls_ctx {
    SSL_CTX *ssl_ctx;
    struct tls_identity self;
};

struct tls_conn {
    SSL *ssl;
    pthread_mutex_t mu; /* one OpenSSL call at a time on ssl */
};

/* OpenSSL's reason for the oldest queued error, in a few words. */
static void tls_reason(char *err, size_t cap, const char *what)
{
    unsigned long e = ERR_get_error();
    const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;
    snprintf(err, cap, "%s%s%s", what, why ? ": " : "", why ? why : "");
    ERR_clear_error();
}

/* ---- the command line's files ---- */

static int tls_flags_explicit(const struct tls_flags *f, struct tls_paths *out, char *err,
                              size_t cap)
{
    if (!f->ca || !f->cert || !f->key) {
        snprintf(err, cap, "--tls-ca, --tls-cert and --tls-key go together (or give "
                 "--tls-dir DIR alone); missing %s", !f->ca ? "--tls-ca"
                 : !f->cert ? "--tls-cert" : "--tls-key");
        return -EINVAL;
    }
    snprintf(out->ca, sizeof out->ca, "%s", f->ca);
    snprintf(out->cert, sizeof out->cert, "%s", f->cert);
    snprintf(out->key, sizeof out->key, "%s", f->key);
    return 0;
}

int tls_flags_resolve(const struct tls_flags *f, const char *name, struct tls_paths *out,
                      char *err, size_t err_cap)
{
    memset(out, 0, sizeof *out);
    bool any_file = f->ca || f->cert || f->key;
    if (!f->dir && !any_file)
        return 0;
    if (f->dir && any_file) {
        snprintf(err, err_cap, "--tls-dir stands for --tls-ca, --tls-cert and --tls-key; "
                 "give either --tls-dir or those three");
        return -EINVAL;
    }
    if (f->dir && strlen(f->dir) + strlen(name) + 6 >= TLS_PATH_MAX) {
        snprintf(err, err_cap, "--tls-dir must be a directory path under %d bytes",
                 TLS_PATH_MAX - 32);
        return -EINVAL;
    }
    if (f->dir) {
        snprintf(out->ca, sizeof out->ca, "%s/ca.crt", f->dir);
        snprintf(out->cert, sizeof out->cert, "%s/%s.crt", f->dir, name);
        snprintf(out->key, sizeof out->key, "%s/%s.key", f->dir, name);
    } else if (tls_flags_explicit(f, out, err, err_cap) < 0) {
        return -EINVAL;
    }
    out->files = (struct tls_files){ .ca = out->ca, .cert = out->cert, .key = out->key };
    return 0;
}

/* ---- the context ---- */

static int tls_ctx_load(struct tls_ctx *c, const struct tls_files *f, char *err, size_t cap)
{
    SSL_CTX *s = c->ssl_ctx;
    if (SSL_CTX_load_verify_locations(s, f->ca, NULL) != 1) {
        tls_reason(err, cap, "cannot read the CA certificate");
        return -EINVAL;
    }
    if (SSL_CTX_use_certificate_chain_file(s, f->cert) != 1) {
        tls_reason(err, cap, "cannot read the certificate");
        return -EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(s, f->key, SSL_FILETYPE_PEM) != 1) {
        tls_reason(err, cap, "cannot read the private key");
        return -EINVAL;
    }
    if (SSL_CTX_check_private_key(s) != 1) {
        tls_reason(err, cap, "the private key does not match the certificate");
        return -EINVAL;
    }
    c->self = tls_cert_identity(SSL_CTX_get0_certificate(s));
    if (c->self.role == TLS_ROLE_NONE) {
        snprintf(err, cap, "the certificate's subject names no role "
                 "(CN=node-I or CN=client)");
        return -EINVAL;
    }
    return 0;
}

static int tls_ctx_setup(SSL_CTX *s)
{
    if (SSL_CTX_set_min_proto_version(s, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION) != 1)
        return -EINVAL;
    /* Both ways: a peer without a certificate of the CA fails the handshake. */
    SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    /* A peer that closes without close_notify has simply gone: every frame
     * carries its own length, so a cut-off stream cannot pass for a whole
     * message, and the log should say "closed by the peer". */
    SSL_CTX_set_options(s, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_num_tickets(s, 0);
    /* The socket is non-blocking: a write may complete in parts, and is
     * retried from wherever the caller's buffer has moved. */
    SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE |
                        SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 0;
}

int tls_ctx_new(struct tls_ctx **out, const struct tls_files *files, char *err,
                size_t err_cap)
{
    snprintf(err, err_cap, "out of memory");
    if (files == NULL || files->ca == NULL || files->cert == NULL || files->key == NULL) {
        snprintf(err, err_cap, "the CA, certificate and key files are all needed");
        return -EINVAL;
    }
    struct tls_ctx *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    c->ssl_ctx = SSL_CTX_new(TLS_method());
    int rc = c->ssl_ctx != NULL ? tls_ctx_setup(c->ssl_ctx) : -ENOMEM;
    if (rc == 0)
        rc = tls_ctx_load(c, files, err, err_cap);
    if (rc < 0) {
        tls_ctx_free(c);
        ERR_clear_error();
        return rc;
    }
    *out = c;
    return 0;
}

void tls_ctx_free(struct tls_ctx *c)
{
    if (c == NULL)
        return;
    SSL_CTX_free(c->ssl_ctx);
    free(c);
}

struct tls_identity tls_ctx_identity(const struct tls_ctx *c)
{
    return c->self;
}

/* ---- one call on a session ---- */

/* What an SSL call's failure means: -EAGAIN with the events to wait for,
 * or the error that ends the connection, with OpenSSL's reason in why
 * (when not NULL). Clears the thread's error queue so that the next call's
 * SSL_get_error() is not misled. */
static int tls_failure(SSL *ssl, int ret, short *events, char *why, size_t why_cap)
{
    int e = SSL_get_error(ssl, ret);
    int saved = errno;
    const char *reason = ERR_reason_error_string(ERR_peek_error());
    if (why != NULL)
        snprintf(why, why_cap, "%s", reason != NULL ? reason : "");
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *events = POLLIN;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *events = POLLOUT;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return -ECONNRESET; /* close_notify: the end of the stream */
    case SSL_ERROR_SYSCALL:
        return saved != 0 && saved != EAGAIN ? -saved : -ECONNRESET;
    default:
        return -EPROTO;
    }
}

long tls_conn_read(struct tls_conn *c, void *buf, size_t n, short *events)
{
    size_t got = 0;
    pthread_mutex_lock(&c->mu);
    ERR_clear_error();
    errno = 0;
    int ret = SSL_read_ex(c->ssl, buf, n, &got);
    long rc = ret == 1 ? (long)got : tls_failure(c->ssl, ret, events, NULL, 0);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

long tls_conn_write(struct tls_conn *c, const void *buf, size_t n, short *events)
{
    size_t put = 0;
    pthread_mutex_lock(&c->mu);
    ERR_clear_error();
    errno = 0;
    int ret = SSL_write_ex(c->ssl, buf, n, &put);
    long rc = ret == 1 ? (long)put : tls_failure(c->ssl, ret, events, NULL, 0);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

bool tls_conn_pending(struct tls_conn *c)
{
    pthread_mutex_lock(&c->mu);
    bool pending = SSL_pending(c->ssl) > 0;
    pthread_mutex_unlock(&c->mu);
    return pending;
}

/* ---- the handshake ---- */

/* The certificate a failed verification was about, kept by the verify
 * callback in the session's app data: after a failed handshake OpenSSL no
 * longer hands it out, and the log line should say which names it did
 * carry. */
struct tls_seen {
    char names[256]; /* the leaf certificate's subject alternative names */
};

/* Keeps the leaf certificate's names while OpenSSL decides; never changes
 * its verdict. */
static int tls_verify_note(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls_seen *seen = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    if (seen != NULL && X509_STORE_CTX_get_error_depth(store) == 0)
        tls_cert_names(X509_STORE_CTX_get_current_cert(store), seen->names,
                       sizeof seen->names);
    return ok;
}

/* Why a handshake failed, for the log line: certificate verification says
 * what was wrong with the certificate (for a host it was not made for, the
 * host and the names it does carry); otherwise OpenSSL's reason. */
static void tls_handshake_reason(SSL *ssl, int rc, const char *why, const char *host,
                                 const struct tls_seen *seen, char *err, size_t cap)
{
    long v = SSL_get_verify_result(ssl);
    if (rc == -EPROTO && (v == X509_V_ERR_HOSTNAME_MISMATCH ||
                          v == X509_V_ERR_IP_ADDRESS_MISMATCH)) {
        snprintf(err, cap, "its certificate is not for %s (it names %s); the certificate "
                 "must list the host it is reached at (raft certs --hosts)", host,
                 seen->names[0] ? seen->names : "no hosts");
    } else if (rc == -EPROTO && v != X509_V_OK) {
        snprintf(err, cap, "certificate refused: %s", X509_verify_cert_error_string(v));
    } else if (rc == -EPROTO) {
        snprintf(err, cap, "TLS handshake failed%s%s", why[0] ? ": " : "", why);
    } else if (rc == -ETIMEDOUT) {
        snprintf(err, cap, "TLS handshake not finished in time");
    } else {
        snprintf(err, cap, "closed during the TLS handshake");
    }
}

static int tls_handshake_loop(SSL *ssl, int fd, int64_t deadline, char *why,
                              size_t why_cap)
{
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int ret = SSL_do_handshake(ssl);
        if (ret == 1)
            return 0;
        short events = 0;
        int rc = tls_failure(ssl, ret, &events, why, why_cap);
        if (rc == -EAGAIN)
            rc = tcp_wait(fd, events, deadline);
        if (rc < 0)
            return rc;
    }
}

/* A session on fd, as the server (host NULL) or as the client of host. */
static struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *host,
                                     struct tls_seen *seen)
{
    struct tls_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->ssl = SSL_new(ctx->ssl_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1 || SSL_set_app_data(c->ssl, seen) != 1 ||
        (host != NULL && tls_expect_host(c->ssl, host) < 0)) {
        ERR_clear_error();
        SSL_free(c->ssl);
        free(c);
        return NULL;
    }
    SSL_set_verify(c->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, tls_verify_note);
    pthread_mutex_init(&c->mu, NULL);
    if (host == NULL)
        SSL_set_accept_state(c->ssl);
    else
        SSL_set_connect_state(c->ssl);
    return c;
}

static int tls_conn_start(struct tls_conn **out, struct tls_ctx *ctx, int fd,
                          const char *host, int64_t deadline, struct tls_identity *peer,
                          char *err, size_t err_cap)
{
    snprintf(err, err_cap, "out of memory");
    struct tls_seen seen = {.names = ""};
    struct tls_conn *c = tls_conn_new(ctx, fd, host, &seen);
    if (c == NULL)
        return -ENOMEM;
    char why[128] = "";
    int rc = tls_handshake_loop(c->ssl, fd, deadline, why, sizeof why);
    SSL_set_app_data(c->ssl, NULL); /* seen ends with this call */
    if (rc < 0) {
        tls_handshake_reason(c->ssl, rc, why, host, &seen, err, err_cap);
        tls_conn_free(c);
        return rc;
    }
    /* Verified by now (SSL_VERIFY_FAIL_IF_NO_PEER_CERT): there is one. */
    *peer = tls_cert_identity(SSL_get0_peer_certificate(c->ssl));
    *out = c;
    err[0] = '\0';
    return 0;
}

int tls_conn_accept(struct tls_conn **out, struct tls_ctx *ctx, int fd, int64_t deadline,
                    struct tls_identity *peer, char *err, size_t err_cap)
{
    return tls_conn_start(out, ctx, fd, NULL, deadline, peer, err, err_cap);
}

int tls_conn_connect(struct tls_conn **out, struct tls_ctx *ctx, int fd, const char *host,
                     int64_t deadline, struct tls_identity *peer, char *err, size_t err_cap)
{
    if (host == NULL || host[0] == '\0') {
        snprintf(err, err_cap, "no host to check the certificate against");
        return -EINVAL;
    }
    return tls_conn_start(out, ctx, fd, host, deadline, peer, err, err_cap);
}

void tls_conn_free(struct tls_conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
