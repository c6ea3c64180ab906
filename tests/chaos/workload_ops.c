/*
 * workload_ops.c - the workload's operations, each through a client
 * session, recorded in the history with what came back and counted.
 *
 * An answer is recorded as the checker reads it (lincheck.h): a definite
 * answer as it is; -EINVAL (the cluster refused the request) as a failure
 * with no effect; anything else, for a write, as an unknown outcome (the
 * session gave up, but the write may have been committed), and for a read
 * as an unknown outcome if it timed out, else a failure: either way a read
 * without an answer says nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/bytes.h"
#include "kv/kv.h"
#include "tests/chaos/workload_internal.h"
#include "tests/support/clock.h"

static enum lincheck_outcome outcome_of(int rc, bool write)
{
    switch (rc) {
    case 0:
        return LINCHECK_OK;
    case -ENOENT:
        return LINCHECK_MISSING;
    case -EEXIST:
        return LINCHECK_MISMATCH;
    case -EINVAL:
    case -EMSGSIZE: /* a list too large for one reply: refused */
        return LINCHECK_FAILED;
    default:
        return write || rc == -ETIMEDOUT ? LINCHECK_UNKNOWN : LINCHECK_FAILED;
    }
}

static void count(struct chaos_workload *w, struct chaos_op_counts *c, enum lincheck_outcome o,
                  bool write)
{
    pthread_mutex_lock(&w->mu);
    uint64_t *field[] = {[LINCHECK_OK] = &c->ok, [LINCHECK_MISSING] = &c->missing,
                         [LINCHECK_MISMATCH] = &c->mismatch, [LINCHECK_UNKNOWN] = &c->unknown,
                         [LINCHECK_FAILED] = &c->failed};
    (*field[o])++;
    if (write && (o == LINCHECK_OK || o == LINCHECK_MISSING || o == LINCHECK_MISMATCH)) {
        w->st.writes_acked++;
        w->st.last_ack_ms = test_now_ms();
    }
    pthread_mutex_unlock(&w->mu);
}

static void record(struct chaos_workload *w, struct lincheck_op *op, uint64_t call)
{
    op->call_ns = call;
    op->return_ns = lincheck_now_ns();
    if (lincheck_add(w->h, op) != 0)
        fprintf(stderr, "workload: could not record an operation (out of memory)\n");
}

/* A reply's bytes as a C string in out (cap bytes). */
static void as_string(const uint8_t *v, uint32_t len, char *out, size_t cap)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

int chaos_do_put(struct chaos_workload *w, int client, struct kv_client *kc, const char *key,
                 const char *value)
{
    uint64_t t = lincheck_now_ns();
    int rc = kv_client_put(kc, key, (uint32_t)strlen(key), value, (uint32_t)strlen(value));
    struct lincheck_op op = {.client = client, .kind = LINCHECK_PUT, .key = key, .value = value,
                             .outcome = outcome_of(rc, true)};
    record(w, &op, t);
    count(w, &w->st.puts, op.outcome, true);
    return rc;
}

int chaos_do_get(struct chaos_workload *w, int client, struct kv_client *kc, const char *key,
                 char *got, size_t cap)
{
    uint64_t t = lincheck_now_ns();
    uint8_t *v = NULL;
    uint32_t len = 0;
    int rc = kv_client_get(kc, key, (uint32_t)strlen(key), &v, &len);
    got[0] = '\0';
    if (rc == 0)
        as_string(v, len, got, cap);
    free(v);
    struct lincheck_op op = {.client = client, .kind = LINCHECK_GET, .key = key,
                             .value = rc == 0 ? got : NULL, .outcome = outcome_of(rc, false)};
    record(w, &op, t);
    count(w, &w->st.gets, op.outcome, false);
    return rc;
}

int chaos_do_delete(struct chaos_workload *w, int client, struct kv_client *kc,
                    const char *key)
{
    uint64_t t = lincheck_now_ns();
    int rc = kv_client_delete(kc, key, (uint32_t)strlen(key));
    struct lincheck_op op = {.client = client, .kind = LINCHECK_DELETE, .key = key,
                             .outcome = outcome_of(rc, true)};
    record(w, &op, t);
    count(w, &w->st.deletes, op.outcome, true);
    return rc;
}

int chaos_do_cas(struct chaos_workload *w, int client, struct kv_client *kc, const char *key,
                 const char *expected, const char *value, char *held, size_t cap)
{
    uint64_t t = lincheck_now_ns();
    uint8_t *h = NULL;
    uint32_t len = 0;
    int rc = kv_client_cas(kc, key, (uint32_t)strlen(key), expected, (uint32_t)strlen(expected),
                           value, (uint32_t)strlen(value), &h, &len);
    held[0] = '\0';
    if (rc == -EEXIST && h)
        as_string(h, len, held, cap);
    free(h);
    struct lincheck_op op = {.client = client, .kind = LINCHECK_CAS, .key = key,
                             .expected = expected, .value = value,
                             .held = rc == -EEXIST ? held : NULL,
                             .outcome = outcome_of(rc, true)};
    record(w, &op, t);
    count(w, &w->st.cas, op.outcome, true);
    return rc;
}

/* The keys of a listing (kv.h: u32 count, then per key u32 length and
 * bytes), as C strings in one malloc'd block. 0 or -EBADMSG / -ENOMEM. */
static int listing_keys(const uint8_t *listing, uint32_t len, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (len < 4)
        return -EBADMSG;
    uint32_t count = get_u32(listing);
    if (count > len / 4)
        return -EBADMSG;
    /* Pointers, then each key NUL-terminated: no more than len + count bytes. */
    char **keys = malloc((size_t)count * sizeof(*keys) + len + count + 1);
    if (!keys)
        return -ENOMEM;
    char *text = (char *)(keys + count);
    const uint8_t *p = listing + 4, *key, *value;
    size_t left = len - 4;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t key_len, value_len;
        if (kv_listing_next(&p, &left, false, &key, &key_len, &value, &value_len)) {
            free(keys);
            return -EBADMSG;
        }
        memcpy(text, key, key_len);
        text[key_len] = '\0';
        keys[i] = text;
        text += key_len + 1;
    }
    *out = keys;
    *n = count;
    return 0;
}

int chaos_do_list(struct chaos_workload *w, int client, struct kv_client *kc,
                  const char *prefix)
{
    uint64_t t = lincheck_now_ns();
    uint8_t *listing = NULL;
    uint32_t len = 0;
    int rc = kv_client_list(kc, prefix, (uint32_t)strlen(prefix), false, &listing, &len);
    char **keys = NULL;
    size_t n = 0;
    if (rc == 0 && listing_keys(listing, len, &keys, &n) != 0) {
        pthread_mutex_lock(&w->mu);
        w->malformed_lists++; /* chaos_workload_verify() fails on it */
        pthread_mutex_unlock(&w->mu);
        rc = -EBADMSG;        /* recorded as a read without an answer */
    }
    free(listing);
    struct lincheck_op op = {.client = client, .kind = LINCHECK_LIST, .key = prefix,
                             .listed = (const char *const *)keys, .n_listed = n,
                             .outcome = outcome_of(rc, false)};
    record(w, &op, t);
    count(w, &w->st.lists, op.outcome, false);
    free(keys);
    return rc;
}
