/*
 * lincheck.c - the history the linearizability checker reads: operations
 * recorded by any number of client threads, and the same operations in
 * words (see lincheck.h for what is checked; lincheck_check.c checks it).
 */
#include "tests/chaos/lincheck.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tests/chaos/lincheck_internal.h"
#include "tests/support/clock.h"

#define DEFAULT_BUDGET ((size_t)4 << 20) /* explored states per group of keys */

uint64_t lincheck_now_ns(void)
{
    return test_now_ns();
}

struct lincheck_history *lincheck_new(void)
{
    struct lincheck_history *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    pthread_mutex_init(&h->mu, NULL);
    h->budget = DEFAULT_BUDGET;
    return h;
}

static void rec_free(struct lincheck_rec *r)
{
    free(r->key);
    free(r->value);
    free(r->expected);
    free(r->held);
    for (size_t i = 0; i < r->n_listed; i++)
        free(r->listed[i]);
    free(r->listed);
}

void lincheck_free(struct lincheck_history *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        rec_free(&h->ops[i]);
    free(h->ops);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

void lincheck_set_budget(struct lincheck_history *h, size_t max_states)
{
    pthread_mutex_lock(&h->mu);
    h->budget = max_states ? max_states : DEFAULT_BUDGET;
    pthread_mutex_unlock(&h->mu);
}

size_t lincheck_size(struct lincheck_history *h)
{
    pthread_mutex_lock(&h->mu);
    size_t n = h->n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

/* Whether the operation has the strings its kind and outcome need, and an
 * outcome its kind can have. */
static bool well_formed(const struct lincheck_op *op)
{
    if (!op->key || (op->outcome != LINCHECK_UNKNOWN && op->return_ns < op->call_ns))
        return false;
    enum lincheck_outcome o = op->outcome;
    switch (op->kind) {
    case LINCHECK_PUT:
        return op->value && (o == LINCHECK_OK || o == LINCHECK_UNKNOWN || o == LINCHECK_FAILED);
    case LINCHECK_GET:
        return o != LINCHECK_MISMATCH && (o != LINCHECK_OK || op->value);
    case LINCHECK_DELETE:
        return o != LINCHECK_MISMATCH;
    case LINCHECK_CAS:
        return op->expected && op->value && (o != LINCHECK_MISMATCH || op->held);
    case LINCHECK_LIST:
        if (o == LINCHECK_OK) {
            for (size_t i = 0; i < op->n_listed; i++)
                if (!op->listed || !op->listed[i])
                    return false;
            return true;
        }
        return o == LINCHECK_UNKNOWN || o == LINCHECK_FAILED;
    }
    return false;
}

/* strdup of s, or NULL for NULL; *ok turns false when out of memory. */
static char *copy(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *c = strdup(s);
    *ok = *ok && c;
    return c;
}

/* The strings the check reads, copied. 0 or -ENOMEM. */
static int copy_op(const struct lincheck_op *op, struct lincheck_rec *r)
{
    enum lincheck_outcome o = op->outcome;
    bool ok = true;
    bool has_value = op->kind == LINCHECK_PUT || op->kind == LINCHECK_CAS ||
                     (op->kind == LINCHECK_GET && o == LINCHECK_OK);
    *r = (struct lincheck_rec){
        .client = op->client, .kind = op->kind, .outcome = o,
        .call_ns = op->call_ns,
        .return_ns = o == LINCHECK_UNKNOWN ? LINCHECK_NO_RETURN : op->return_ns,
    };
    r->key = copy(op->key, &ok);
    r->value = has_value ? copy(op->value, &ok) : NULL;
    r->expected = op->kind == LINCHECK_CAS ? copy(op->expected, &ok) : NULL;
    r->held = o == LINCHECK_MISMATCH ? copy(op->held, &ok) : NULL;
    if (op->kind == LINCHECK_LIST && o == LINCHECK_OK && op->n_listed) {
        r->listed = calloc(op->n_listed, sizeof(*r->listed));
        ok = ok && r->listed;
        for (size_t i = 0; r->listed && i < op->n_listed; i++, r->n_listed++)
            r->listed[i] = copy(op->listed[i], &ok);
    }
    if (!ok) {
        rec_free(r);
        return -ENOMEM;
    }
    return 0;
}

int lincheck_add(struct lincheck_history *h, const struct lincheck_op *op)
{
    if (!well_formed(op))
        return -EINVAL;
    struct lincheck_rec r;
    if (copy_op(op, &r))
        return -ENOMEM;
    pthread_mutex_lock(&h->mu);
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 256;
        struct lincheck_rec *ops = realloc(h->ops, cap * sizeof(*ops));
        if (!ops) {
            pthread_mutex_unlock(&h->mu);
            rec_free(&r);
            return -ENOMEM;
        }
        h->ops = ops;
        h->cap = cap;
    }
    h->ops[h->n++] = r;
    pthread_mutex_unlock(&h->mu);
    return 0;
}

bool lincheck_has_prefix(const char *key, const char *prefix)
{
    return strncmp(key, prefix, strlen(prefix)) == 0;
}

/* ---- describing operations ---- */

uint64_t lincheck_history_start(const struct lincheck_history *h)
{
    uint64_t t0 = UINT64_MAX;
    for (size_t i = 0; i < h->n; i++)
        if (h->ops[i].call_ns < t0)
            t0 = h->ops[i].call_ns;
    return t0 == UINT64_MAX ? 0 : t0;
}

static double secs(uint64_t t, uint64_t t0)
{
    return (double)(t - t0) / 1e9;
}

/* "list 'k' -> [k0, k3]", as many keys as fit, then "..." */
static void describe_list(const struct lincheck_rec *r, char *buf, size_t cap)
{
    size_t used = (size_t)snprintf(buf, cap, "list '%s'", r->key);
    if (r->outcome != LINCHECK_OK || used >= cap)
        return;
    used += (size_t)snprintf(buf + used, cap - used, " -> [");
    for (size_t i = 0; i < r->n_listed && used < cap; i++) {
        if (used + strlen(r->listed[i]) + 8 >= cap) {
            used += (size_t)snprintf(buf + used, cap - used, "...");
            break;
        }
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", r->listed[i]);
    }
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

/* What the operation did, without its times. */
static void describe_what(const struct lincheck_rec *r, char *what, size_t cap)
{
    enum lincheck_outcome o = r->outcome;
    switch (r->kind) {
    case LINCHECK_PUT:
        snprintf(what, cap, "put %s = '%s'", r->key, r->value);
        break;
    case LINCHECK_GET:
        if (o == LINCHECK_OK)
            snprintf(what, cap, "get %s -> '%s'", r->key, r->value);
        else
            snprintf(what, cap, "get %s%s", r->key, o == LINCHECK_MISSING ? " -> missing" : "");
        break;
    case LINCHECK_DELETE:
        snprintf(what, cap, "delete %s%s", r->key,
                 o == LINCHECK_OK ? " -> deleted"
                 : o == LINCHECK_MISSING ? " -> it did not exist" : "");
        break;
    case LINCHECK_CAS:
        if (o == LINCHECK_MISMATCH)
            snprintf(what, cap, "cas %s from '%s' to '%s' -> it held '%s'", r->key,
                     r->expected, r->value, r->held);
        else
            snprintf(what, cap, "cas %s from '%s' to '%s'%s", r->key, r->expected, r->value,
                     o == LINCHECK_OK ? " -> swapped"
                     : o == LINCHECK_MISSING ? " -> it did not exist" : "");
        break;
    case LINCHECK_LIST:
        describe_list(r, what, cap);
        break;
    }
}

void lincheck_describe(const struct lincheck_rec *r, uint64_t t0, char *buf, size_t cap)
{
    char what[320], when[96];
    describe_what(r, what, sizeof(what));
    if (r->return_ns == LINCHECK_NO_RETURN)
        snprintf(when, sizeof(when), "called %.3f s, never answered", secs(r->call_ns, t0));
    else
        snprintf(when, sizeof(when), "%.3f .. %.3f s", secs(r->call_ns, t0),
                 secs(r->return_ns, t0));
    const char *how = r->outcome == LINCHECK_UNKNOWN ? ", outcome unknown"
                      : r->outcome == LINCHECK_FAILED ? ", refused" : "";
    snprintf(buf, cap, "%s [client %d, %s%s]", what, r->client, when, how);
}

/* Whether r is an operation on key, or a list that reads it. */
static bool touches(const struct lincheck_rec *r, const char *key)
{
    return r->kind == LINCHECK_LIST ? lincheck_has_prefix(key, r->key) : strcmp(r->key, key) == 0;
}

static int cmp_call(const void *a, const void *b)
{
    const struct lincheck_rec *x = *(const struct lincheck_rec *const *)a;
    const struct lincheck_rec *y = *(const struct lincheck_rec *const *)b;
    if (x->call_ns != y->call_ns)
        return x->call_ns < y->call_ns ? -1 : 1;
    return x < y ? -1 : x > y;
}

void lincheck_print_key(struct lincheck_history *h, const char *key, FILE *out)
{
    pthread_mutex_lock(&h->mu);
    const struct lincheck_rec **mine = malloc((h->n ? h->n : 1) * sizeof(*mine));
    size_t n = 0;
    for (size_t i = 0; mine && i < h->n; i++)
        if (touches(&h->ops[i], key))
            mine[n++] = &h->ops[i];
    if (n > 1)
        qsort(mine, n, sizeof(*mine), cmp_call);
    uint64_t t0 = lincheck_history_start(h);
    fprintf(out, "history of key %s, with the lists that read it (times in seconds since the "
            "first call):\n", key);
    for (size_t i = 0; i < n; i++) {
        char line[512];
        lincheck_describe(mine[i], t0, line, sizeof(line));
        fprintf(out, "  %s\n", line);
    }
    free(mine);
    pthread_mutex_unlock(&h->mu);
}
