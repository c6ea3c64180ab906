/*
 * tls_certs.c - making the CA and the node and client certificates of
 * tls_certs.h with OpenSSL (EVP_PKEY for keys, X509 for certificates, the
 * X.509 v3 extensions of RFC 5280 §4.2).
 */
#include "net/tls_certs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CERTS_CA_DAYS 3650
#define CERTS_LEAF_DAYS 730
#define CERTS_SAN_MAX 4096

enum certs_kind { CERTS_CA, CERTS_NODE, CERTS_CLIENT };

/* ---- subject alternative names ---- */

static bool certs_is_ip(const char *h)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* A DNS name: letters, digits, '-' and '.', not starting with a dot. */
static bool certs_is_dns(const char *h)
{
    size_t n = strlen(h);
    return n > 0 && n < 254 && h[0] != '.' && h[0] != '-' &&
           strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") == n;
}

/* "DNS:localhost,IP:127.0.0.1" plus one entry per host, for the node
 * certificates' subjectAltName (RFC 5280 §4.2.1.6). */
static int certs_san(const char *hosts, char *san, size_t cap, char *err, size_t err_cap)
{
    snprintf(san, cap, "DNS:localhost,IP:127.0.0.1");
    if (hosts == NULL)
        return 0;
    char list[CERTS_SAN_MAX];
    if (strlen(hosts) >= sizeof list) {
        snprintf(err, err_cap, "--hosts must be under %zu bytes", sizeof list);
        return -EINVAL;
    }
    strcpy(list, hosts);
    for (char *save = NULL, *h = strtok_r(list, ",", &save); h != NULL;
         h = strtok_r(NULL, ",", &save)) {
        bool ip = certs_is_ip(h);
        if (!ip && !certs_is_dns(h)) {
            snprintf(err, err_cap, "--hosts must list host names or IP addresses; '%s' "
                     "is neither", h);
            return -EINVAL;
        }
        size_t used = strlen(san);
        if (used + strlen(h) + 6 >= cap) {
            snprintf(err, err_cap, "--hosts names too many hosts");
            return -EINVAL;
        }
        snprintf(san + used, cap - used, ",%s:%s", ip ? "IP" : "DNS", h);
    }
    return 0;
}

/* ---- keys and certificates ---- */

static EVP_PKEY *certs_new_key(void)
{
    return EVP_EC_gen("P-256");
}

static int certs_add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok = ext != NULL && X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok ? 0 : -EINVAL;
}

/* The v3 extensions that say what the certificate is for. */
static int certs_add_exts(X509 *cert, X509 *issuer, enum certs_kind kind, const char *san)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    bool ca = kind == CERTS_CA;
    int rc = certs_add_ext(cert, &ctx, NID_basic_constraints,
                           ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE");
    if (rc == 0)
        rc = certs_add_ext(cert, &ctx, NID_key_usage,
                           ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    if (rc == 0)
        rc = certs_add_ext(cert, &ctx, NID_subject_key_identifier, "hash");
    if (rc == 0 && !ca)
        rc = certs_add_ext(cert, &ctx, NID_authority_key_identifier, "keyid:always");
    /* A node serves and dials; a client only dials. */
    if (rc == 0 && !ca)
        rc = certs_add_ext(cert, &ctx, NID_ext_key_usage,
                           kind == CERTS_NODE ? "serverAuth,clientAuth" : "clientAuth");
    if (rc == 0 && kind == CERTS_NODE)
        rc = certs_add_ext(cert, &ctx, NID_subject_alt_name, san);
    return rc;
}

/* A random positive 63-bit serial: unique enough per CA (RFC 5280
 * §4.1.2.2 asks for uniqueness, at most 20 octets). */
static int certs_set_serial(X509 *cert)
{
    BIGNUM *bn = BN_new();
    int ok = bn != NULL && BN_rand(bn, 63, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1 &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok ? 0 : -EINVAL;
}

static int certs_set_subject(X509 *cert, const char *cn)
{
    X509_NAME *name = X509_get_subject_name(cert);
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"raft",
                                   -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn,
                                   -1, -1, 0) != 1)
        return -EINVAL;
    return 0;
}

/* A certificate for key named cn, signed by issuer_key (issuer NULL: self-
 * signed, the CA). */
static X509 *certs_new_cert(const char *cn, EVP_PKEY *key, X509 *issuer,
                            EVP_PKEY *issuer_key, enum certs_kind kind, const char *san)
{
    X509 *cert = X509_new();
    long days = kind == CERTS_CA ? CERTS_CA_DAYS : CERTS_LEAF_DAYS;
    int rc = cert != NULL && X509_set_version(cert, 2) == 1 ? 0 : -ENOMEM;
    if (rc == 0)
        rc = certs_set_serial(cert);
    if (rc == 0)
        rc = certs_set_subject(cert, cn);
    if (rc == 0 && (X509_gmtime_adj(X509_getm_notBefore(cert), -3600) == NULL ||
                    X509_gmtime_adj(X509_getm_notAfter(cert), days * 86400) == NULL ||
                    X509_set_pubkey(cert, key) != 1 ||
                    X509_set_issuer_name(cert, X509_get_subject_name(issuer ? issuer
                                                                            : cert)) != 1))
        rc = -EINVAL;
    if (rc == 0)
        rc = certs_add_exts(cert, issuer ? issuer : cert, kind, san);
    if (rc == 0 && X509_sign(cert, issuer_key, EVP_sha256()) <= 0)
        rc = -EINVAL;
    if (rc < 0) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

/* ---- files ---- */

static int certs_write_cert(const char *dir, const char *name, X509 *cert)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.crt", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -errno;
    int ok = PEM_write_X509(f, cert) == 1;
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -EIO;
}

/* The key file is made 0600 before a byte of the key is in it. */
static int certs_write_key(const char *dir, const char *name, EVP_PKEY *key)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (fchmod(fd, 0600) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -EIO;
}

/* Makes one key and certificate and writes both as dir/name.{crt,key}.
 * With issuer NULL it is the CA, returned in *ca / *ca_key. */
static int certs_issue(const char *dir, const char *name, enum certs_kind kind,
                       const char *san, X509 **ca, EVP_PKEY **ca_key)
{
    EVP_PKEY *key = certs_new_key();
    bool is_ca = kind == CERTS_CA;
    X509 *cert = key ? certs_new_cert(name, key, is_ca ? NULL : *ca,
                                      is_ca ? key : *ca_key, kind, san) : NULL;
    int rc = cert != NULL ? 0 : -ENOMEM;
    if (rc == 0)
        rc = certs_write_key(dir, name, key);
    if (rc == 0)
        rc = certs_write_cert(dir, name, cert);
    if (rc == 0 && is_ca) {
        *ca = cert;
        *ca_key = key;
        return 0;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

static int certs_prepare_dir(const char *dir, char *err, size_t cap)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int rc = -errno;
        snprintf(err, cap, "cannot make the directory %s: %s", dir, strerror(errno));
        return rc;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/ca.crt", dir);
    if (access(path, F_OK) == 0) {
        snprintf(err, cap, "%s already holds a CA (ca.crt); remove it or choose another "
                 "--out, so that no certificate already given out is orphaned", dir);
        return -EINVAL;
    }
    return 0;
}

int tls_certs_make(const char *dir, unsigned n_nodes, const char *hosts, char *err,
                   size_t err_cap)
{
    char san[CERTS_SAN_MAX + 64];
    int rc = certs_san(hosts, san, sizeof san, err, err_cap);
    if (rc == 0)
        rc = certs_prepare_dir(dir, err, err_cap);
    if (rc < 0)
        return rc;
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    rc = certs_issue(dir, "ca", CERTS_CA, NULL, &ca, &ca_key);
    for (unsigned i = 0; rc == 0 && i < n_nodes; i++) {
        char name[32];
        snprintf(name, sizeof name, "node-%u", i);
        rc = certs_issue(dir, name, CERTS_NODE, san, &ca, &ca_key);
    }
    if (rc == 0)
        rc = certs_issue(dir, "client", CERTS_CLIENT, NULL, &ca, &ca_key);
    if (rc < 0)
        snprintf(err, err_cap, "cannot write the certificates into %s: %s", dir,
                 rc == -ENOMEM || rc == -EINVAL ? "OpenSSL failed to make them"
                                                 : strerror(-rc));
    ERR_clear_error();
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return rc == -EINVAL ? -EIO : rc;
}
