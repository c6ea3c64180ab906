/*
 * tls_names.c - reading a certificate's names (see tls_names.h): the
 * common name that gives a role and an id, the subject alternative names
 * that give the hosts, and the host check a dialer asks OpenSSL for.
 *
 * A certificate is signed by the CA, so its names are not forged; but they
 * are read strictly all the same: exactly one common name, no NUL inside
 * it, digits only after "node-", no leading zero. A name that could be
 * read two ways names no role at all.
 */
#include "net/tls_names.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define TLS_CN_MAX 64

/* ---- the common name ---- */

struct tls_identity tls_identity_parse(const char *cn)
{
    struct tls_identity id = {.role = TLS_ROLE_NONE};
    if (cn == NULL)
        return id;
    if (strcmp(cn, "client") == 0) {
        id.role = TLS_ROLE_CLIENT;
        return id;
    }
    if (strncmp(cn, "node-", 5) != 0)
        return id;
    const char *digits = cn + 5;
    size_t n = strlen(digits);
    if (n == 0 || n > 9 || strspn(digits, "0123456789") != n || (n > 1 && digits[0] == '0'))
        return id;
    id.role = TLS_ROLE_NODE;
    id.id = (uint32_t)strtoul(digits, NULL, 10);
    return id;
}

const char *tls_identity_str(struct tls_identity id, char *buf, size_t cap)
{
    if (id.role == TLS_ROLE_NODE)
        snprintf(buf, cap, "node-%u", (unsigned)id.id);
    else
        snprintf(buf, cap, "%s", id.role == TLS_ROLE_CLIENT ? "client" : "no known role");
    return buf;
}

/* The subject's one common name as text, or -1: none, several (which one
 * would count?), one with a NUL inside, or one too long for any role. */
static int tls_common_name(X509 *cert, char out[TLS_CN_MAX])
{
    X509_NAME *name = cert != NULL ? X509_get_subject_name(cert) : NULL;
    int at = name != NULL ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    if (at < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, at) >= 0)
        return -1;
    ASN1_STRING *value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at));
    unsigned char *utf8 = NULL;
    int len = value != NULL ? ASN1_STRING_to_UTF8(&utf8, value) : -1;
    int rc = len > 0 && len < TLS_CN_MAX && memchr(utf8, '\0', (size_t)len) == NULL ? 0 : -1;
    if (rc == 0) {
        memcpy(out, utf8, (size_t)len);
        out[len] = '\0';
    }
    OPENSSL_free(utf8);
    ERR_clear_error();
    return rc;
}

struct tls_identity tls_cert_identity(X509 *cert)
{
    char cn[TLS_CN_MAX];
    if (tls_common_name(cert, cn) < 0)
        return (struct tls_identity){.role = TLS_ROLE_NONE};
    return tls_identity_parse(cn);
}

/* ---- subject alternative names ---- */

/* Appends to buf (of cap bytes, holding used) what fits; keeps the NUL. */
static size_t tls_append(char *buf, size_t cap, size_t used, const char *text)
{
    if (used + 1 >= cap)
        return used;
    int n = snprintf(buf + used, cap - used, "%s", text);
    size_t wrote = n < 0 ? 0 : (size_t)n;
    return wrote >= cap - used ? cap - 1 : used + wrote;
}

/* One DNS name, its bytes shown as they are when printable, else as \xNN. */
static void tls_dns_text(const ASN1_STRING *s, char *out, size_t cap)
{
    const unsigned char *p = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < len && used + 5 < cap; i++) {
        if (p[i] >= 0x21 && p[i] <= 0x7e && p[i] != '\\')
            out[used++] = (char)p[i];
        else
            used += (size_t)snprintf(out + used, cap - used, "\\x%02x", p[i]);
    }
    out[used] = '\0';
}

/* One IP name: 4 or 16 bytes of address (RFC 5280 §4.2.1.6). */
static void tls_ip_text(const ASN1_OCTET_STRING *s, char *out, size_t cap)
{
    const unsigned char *p = ASN1_STRING_get0_data(s);
    int len = ASN1_STRING_length(s);
    char addr[INET6_ADDRSTRLEN];
    if ((len == 4 && inet_ntop(AF_INET, p, addr, sizeof addr)) ||
        (len == 16 && inet_ntop(AF_INET6, p, addr, sizeof addr)))
        snprintf(out, cap, "%s", addr);
    else
        snprintf(out, cap, "(%d bytes: not an address)", len);
}

void tls_cert_names(X509 *cert, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    buf[0] = '\0';
    GENERAL_NAMES *names = cert != NULL
        ? X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL) : NULL;
    int n = names != NULL ? sk_GENERAL_NAME_num(names) : 0;
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        char one[300];
        if (g->type == GEN_DNS) {
            char dns[280];
            tls_dns_text(g->d.dNSName, dns, sizeof dns);
            snprintf(one, sizeof one, "DNS:%s", dns);
        } else if (g->type == GEN_IPADD) {
            char ip[64];
            tls_ip_text(g->d.iPAddress, ip, sizeof ip);
            snprintf(one, sizeof one, "IP:%s", ip);
        } else {
            snprintf(one, sizeof one, "a name of another kind");
        }
        used = tls_append(buf, cap, used, i > 0 ? ", " : "");
        used = tls_append(buf, cap, used, one);
    }
    if (n == 0)
        tls_append(buf, cap, 0, "no subject alternative names");
    GENERAL_NAMES_free(names);
    ERR_clear_error();
}

/* ---- the dialer's host check ---- */

int tls_expect_host(SSL *ssl, const char *host)
{
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    unsigned char addr[16];
    /* An address is matched against the IP names only: a DNS name that
     * happens to read "10.0.0.1" is not an address (RFC 6125 §1.7.2). */
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1 ? 0 : -ENOMEM;
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(ssl, host) == 1 ? 0 : -ENOMEM;
}

/* ---- for the fuzz target ---- */

int tls_der_identity(const uint8_t *der, size_t len, struct tls_identity *id, char *names,
                     size_t names_cap)
{
    const unsigned char *p = der;
    X509 *cert = len <= (size_t)INT32_MAX ? d2i_X509(NULL, &p, (long)len) : NULL;
    if (cert == NULL) {
        ERR_clear_error();
        return -EBADMSG;
    }
    *id = tls_cert_identity(cert);
    tls_cert_names(cert, names, names_cap);
    X509_free(cert);
    return 0;
}
