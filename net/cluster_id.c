/*
 * cluster_id.c - deriving a cluster id, and the rule a node judges a
 * peer's hello by (see cluster_id.h).
 *
 * The id is the first 16 bytes of a SHA-256 (OpenSSL's EVP interface)
 * over a version tag, then either "name" and the name, or "peers" and
 * each address, every part followed by a NUL so that no two lists hash
 * alike by running together ("a,b" + "c" against "a" + "b,c").
 */
#include "net/cluster_id.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define CLUSTER_ID_TAG "raft cluster id v1"

struct cluster_ident {
    pthread_mutex_t mu; /* guards id and recorded */
    struct cluster_id id;
    cluster_record_fn record;
    void *record_ctx;
};

/* ---- the id ---- */

static int cluster_hash_part(EVP_MD_CTX *md, const char *part)
{
    return EVP_DigestUpdate(md, part, strlen(part) + 1) == 1 ? 0 : -ENOMEM;
}

int cluster_id_derive(struct cluster_id *out, const char *name, char *const *peers,
                      uint32_t n)
{
    memset(out, 0, sizeof *out);
    if (name == NULL && (peers == NULL || n == 0))
        return -EINVAL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
    if (rc == 0)
        rc = cluster_hash_part(md, CLUSTER_ID_TAG);
    if (rc == 0)
        rc = cluster_hash_part(md, name != NULL ? "name" : "peers");
    if (rc == 0 && name != NULL)
        rc = cluster_hash_part(md, name);
    for (uint32_t i = 0; rc == 0 && name == NULL && i < n; i++)
        rc = cluster_hash_part(md, peers[i] != NULL ? peers[i] : "");
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (rc == 0 && (EVP_DigestFinal_ex(md, digest, &len) != 1 || len < CLUSTER_ID_SIZE))
        rc = -ENOMEM;
    EVP_MD_CTX_free(md);
    if (rc < 0)
        return rc;
    memcpy(out->bytes, digest, CLUSTER_ID_SIZE);
    out->known = true;
    return 0;
}

const char *cluster_id_str(const struct cluster_id *id, char *buf, size_t cap)
{
    if (!id->known) {
        snprintf(buf, cap, "none yet");
        return buf;
    }
    char hex[2 * 6 + 1];
    for (int i = 0; i < 6; i++)
        snprintf(hex + 2 * i, 3, "%02x", id->bytes[i]);
    snprintf(buf, cap, "%s", hex);
    return buf;
}

bool cluster_id_equal(const struct cluster_id *a, const struct cluster_id *b)
{
    if (a->known != b->known)
        return false;
    return !a->known || memcmp(a->bytes, b->bytes, CLUSTER_ID_SIZE) == 0;
}

/* ---- the shared identity ---- */

int cluster_ident_new(struct cluster_ident **out, const struct cluster_id *start,
                      cluster_record_fn record, void *record_ctx)
{
    struct cluster_ident *ci = calloc(1, sizeof *ci);
    if (ci == NULL)
        return -ENOMEM;
    int rc = -pthread_mutex_init(&ci->mu, NULL);
    if (rc < 0) {
        free(ci);
        return rc;
    }
    ci->id = *start;
    ci->record = record;
    ci->record_ctx = record_ctx;
    *out = ci;
    return 0;
}

void cluster_ident_free(struct cluster_ident *ci)
{
    if (ci == NULL)
        return;
    pthread_mutex_destroy(&ci->mu);
    free(ci);
}

struct cluster_id cluster_ident_get(struct cluster_ident *ci)
{
    pthread_mutex_lock(&ci->mu);
    struct cluster_id id = ci->id;
    pthread_mutex_unlock(&ci->mu);
    return id;
}

/* This node has no id yet and is given one: it is recorded (durably,
 * under the lock so that two first peers cannot both be adopted) before it
 * is used. */
static enum cluster_verdict cluster_adopt_locked(struct cluster_ident *ci,
                                                 const struct cluster_id *theirs,
                                                 char *why, size_t cap)
{
    int rc = ci->record != NULL ? ci->record(ci->record_ctx, theirs) : 0;
    if (rc < 0) {
        char t[16];
        snprintf(why, cap, "this node could not record cluster %s in its data directory, "
                 "so it joins none", cluster_id_str(theirs, t, sizeof t));
        return CLUSTER_NOT_RECORDED;
    }
    ci->id = *theirs;
    return CLUSTER_WELCOME;
}

enum cluster_verdict cluster_ident_judge(struct cluster_ident *ci,
                                         const struct cluster_id *theirs,
                                         struct cluster_id *mine, bool *adopted, char *why,
                                         size_t cap)
{
    char t[16], m[16];
    *adopted = false;
    why[0] = '\0';
    pthread_mutex_lock(&ci->mu);
    enum cluster_verdict v = CLUSTER_WELCOME;
    if (!ci->id.known && theirs->known) {
        v = cluster_adopt_locked(ci, theirs, why, cap);
        *adopted = v == CLUSTER_WELCOME;
    } else if (ci->id.known && !theirs->known) {
        v = CLUSTER_NONE_YET;
        snprintf(why, cap, "it has no cluster id, and this node belongs to cluster %s (a "
                 "node joins when the cluster's leader contacts it)",
                 cluster_id_str(&ci->id, m, sizeof m));
    } else if (!cluster_id_equal(&ci->id, theirs)) {
        v = CLUSTER_OTHER;
        snprintf(why, cap, "it belongs to cluster %s, and this node to cluster %s (check "
                 "its --peers and --cluster-name)", cluster_id_str(theirs, t, sizeof t),
                 cluster_id_str(&ci->id, m, sizeof m));
    }
    *mine = ci->id;
    pthread_mutex_unlock(&ci->mu);
    return v;
}

void cluster_verdict_str(enum cluster_verdict v, const struct cluster_id *theirs,
                         const struct cluster_id *mine, char *buf, size_t cap)
{
    char t[16], m[16];
    cluster_id_str(theirs, t, sizeof t);
    cluster_id_str(mine, m, sizeof m);
    switch (v) {
    case CLUSTER_WELCOME:
        snprintf(buf, cap, "it welcomed this node to cluster %s", t);
        break;
    case CLUSTER_OTHER:
        snprintf(buf, cap, "it belongs to cluster %s, and this node to cluster %s (check "
                 "--peers and --cluster-name)", t, m);
        break;
    case CLUSTER_NONE_YET:
        snprintf(buf, cap, "it belongs to cluster %s and refuses a node with no cluster id "
                 "(this node joins when the cluster's leader contacts it)", t);
        break;
    default:
        snprintf(buf, cap, "it could not record this node's cluster %s in its data "
                 "directory (its log says why)", m);
        break;
    }
}
