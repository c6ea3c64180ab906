/*
 * lincheck.c - the linearizability checker (see lincheck.h for what it
 * decides and why).
 *
 * Per key, the history becomes a list of events, calls and returns sorted by
 * time (a call before a return at the same instant, so that touching
 * operations count as concurrent: the generous reading). The search keeps
 * the list as a doubly linked list and walks it from the front:
 *
 *   - at a call: try to place ("linearize") that operation now. A put always
 *     fits; a get fits when it returned the key's current value. If it fits
 *     and the pair (set of placed operations, value) is new, place it: push
 *     it, take its call and return out of the list (they stay linked to
 *     their neighbours, so putting them back is O(1): "dancing links") and
 *     start again from the front. Otherwise look at the next event.
 *   - at a return: that operation returned before it could be placed, so the
 *     choice that led here was wrong: pop the last placed operation, put it
 *     back in the list, and try the event after its call.
 *
 * The list empties when every operation is placed: linearizable. The stack
 * empties when every choice has failed: not linearizable. The set of
 * explored (placed set, value) pairs is what keeps this from being
 * exponential on realistic histories (Lowe 2017; Porcupine); the placed set
 * is a bitset whose hash is kept up to date by XOR of per-operation random
 * numbers (Zobrist hashing).
 *
 * Unknown outcomes: a put that never returned gets a return at the end of
 * time, so it may be placed anywhere after its call; placing it after every
 * other operation is the same as "it never happened". A put with an unknown
 * outcome whose value no get ever saw is dropped before the search (placing
 * it can only hide values, never explain one), which keeps the search small
 * under heavy timeouts.
 */
#include "tests/chaos/lincheck.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/clock.h"

#define DEFAULT_BUDGET ((size_t)4 << 20) /* explored states per key */
#define NO_RETURN UINT64_MAX

struct rec {
    int client;
    enum lincheck_kind kind;
    enum lincheck_outcome outcome;
    char *key;
    char *value;
    uint64_t call_ns, return_ns;
};

struct lincheck_history {
    pthread_mutex_t mu; /* guards everything below */
    struct rec *ops;
    size_t n, cap;
    size_t budget;
};

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

void lincheck_free(struct lincheck_history *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        free(h->ops[i].key);
        free(h->ops[i].value);
    }
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

int lincheck_add(struct lincheck_history *h, const struct lincheck_op *op)
{
    bool has_value = op->kind == LINCHECK_PUT ||
                     (op->kind == LINCHECK_GET && op->outcome == LINCHECK_OK);
    if (!op->key || (has_value && !op->value) ||
        (op->outcome != LINCHECK_UNKNOWN && op->return_ns < op->call_ns) ||
        (op->kind == LINCHECK_PUT && op->outcome == LINCHECK_MISSING))
        return -EINVAL;
    struct rec r = {
        .client = op->client,
        .kind = op->kind,
        .outcome = op->outcome,
        .key = strdup(op->key),
        .value = has_value ? strdup(op->value) : NULL,
        .call_ns = op->call_ns,
        .return_ns = op->outcome == LINCHECK_UNKNOWN ? NO_RETURN : op->return_ns,
    };
    if (!r.key || (has_value && !r.value)) {
        free(r.key);
        free(r.value);
        return -ENOMEM;
    }
    pthread_mutex_lock(&h->mu);
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 256;
        struct rec *ops = realloc(h->ops, cap * sizeof(*ops));
        if (!ops) {
            pthread_mutex_unlock(&h->mu);
            free(r.key);
            free(r.value);
            return -ENOMEM;
        }
        h->ops = ops;
        h->cap = cap;
    }
    h->ops[h->n++] = r;
    pthread_mutex_unlock(&h->mu);
    return 0;
}

/* ---- describing operations ---- */

static uint64_t history_start(const struct lincheck_history *h)
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

/* "get k -> 'v1' [client 2, 1.204 .. 1.209 s]" */
static void describe(const struct rec *r, uint64_t t0, char *buf, size_t cap)
{
    char what[256], when[96];
    if (r->kind == LINCHECK_PUT)
        snprintf(what, sizeof(what), "put %s = '%s'", r->key, r->value);
    else if (r->outcome == LINCHECK_OK)
        snprintf(what, sizeof(what), "get %s -> '%s'", r->key, r->value);
    else if (r->outcome == LINCHECK_MISSING)
        snprintf(what, sizeof(what), "get %s -> missing", r->key);
    else
        snprintf(what, sizeof(what), "get %s", r->key);
    if (r->return_ns == NO_RETURN)
        snprintf(when, sizeof(when), "called %.3f s, never answered", secs(r->call_ns, t0));
    else
        snprintf(when, sizeof(when), "%.3f .. %.3f s", secs(r->call_ns, t0),
                 secs(r->return_ns, t0));
    const char *how = r->outcome == LINCHECK_UNKNOWN ? ", outcome unknown"
                      : r->outcome == LINCHECK_FAILED ? ", refused" : "";
    snprintf(buf, cap, "%s [client %d, %s%s]", what, r->client, when, how);
}

/* qsort has no context argument in C11; the history being sorted is passed
 * through this thread-local instead (one sort at a time per thread). */
static _Thread_local const struct lincheck_history *sorting;

static int cmp_key_call(const void *a, const void *b)
{
    const struct lincheck_history *h = sorting;
    const struct rec *x = &h->ops[*(const size_t *)a], *y = &h->ops[*(const size_t *)b];
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    if (x->call_ns != y->call_ns)
        return x->call_ns < y->call_ns ? -1 : 1;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/* Indices of the operations, grouped by key, each group in call order. */
static size_t *sorted_by_key(const struct lincheck_history *h)
{
    size_t *idx = malloc((h->n ? h->n : 1) * sizeof(*idx));
    if (!idx)
        return NULL;
    for (size_t i = 0; i < h->n; i++)
        idx[i] = i;
    sorting = h;
    if (h->n > 1)
        qsort(idx, h->n, sizeof(*idx), cmp_key_call);
    sorting = NULL;
    return idx;
}

void lincheck_print_key(struct lincheck_history *h, const char *key, FILE *out)
{
    pthread_mutex_lock(&h->mu);
    size_t *idx = sorted_by_key(h);
    uint64_t t0 = history_start(h);
    fprintf(out, "history of key %s (times in seconds since the first call):\n", key);
    for (size_t i = 0; idx && i < h->n; i++) {
        const struct rec *r = &h->ops[idx[i]];
        if (strcmp(r->key, key) != 0)
            continue;
        char line[512];
        describe(r, t0, line, sizeof(line));
        fprintf(out, "  %s\n", line);
    }
    free(idx);
    pthread_mutex_unlock(&h->mu);
}

/* ---- one key's search ---- */

struct op {
    const struct rec *rec;
    bool is_put;
    int value; /* put: what it writes; get: what it read; 0 is "missing" */
    uint64_t call, ret;
};

struct node {
    int op;
    bool is_call;
    struct node *match; /* a call's return */
    struct node *prev, *next;
};

struct event {
    uint64_t t;
    int op;
    bool is_call;
};

static int cmp_event(const void *a, const void *b)
{
    const struct event *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->is_call != y->is_call)
        return x->is_call ? -1 : 1; /* calls first: touching operations overlap */
    return x->op < y->op ? -1 : x->op > y->op;
}

/* The explored (placed set, value) pairs: open addressing on the Zobrist
 * hash, with the bitsets kept in one growing arena for exact comparison. */
struct seen {
    size_t words;       /* per bitset */
    size_t cap, count;  /* slots (a power of two), used */
    uint64_t *hashes;   /* 0: empty slot (hash 0 is stored as 1) */
    int *states;
    size_t *offsets;    /* into arena, in words */
    uint64_t *arena;
    size_t arena_used, arena_cap;
};

static void seen_free(struct seen *s)
{
    free(s->hashes);
    free(s->states);
    free(s->offsets);
    free(s->arena);
}

static int seen_init(struct seen *s, size_t words)
{
    memset(s, 0, sizeof(*s));
    s->words = words;
    s->cap = 1024;
    s->hashes = calloc(s->cap, sizeof(*s->hashes));
    s->states = calloc(s->cap, sizeof(*s->states));
    s->offsets = calloc(s->cap, sizeof(*s->offsets));
    if (!s->hashes || !s->states || !s->offsets) {
        seen_free(s);
        return -ENOMEM;
    }
    return 0;
}

static int seen_grow(struct seen *s)
{
    struct seen bigger = *s;
    bigger.cap = s->cap * 2;
    bigger.hashes = calloc(bigger.cap, sizeof(*bigger.hashes));
    bigger.states = calloc(bigger.cap, sizeof(*bigger.states));
    bigger.offsets = calloc(bigger.cap, sizeof(*bigger.offsets));
    if (!bigger.hashes || !bigger.states || !bigger.offsets) {
        free(bigger.hashes);
        free(bigger.states);
        free(bigger.offsets);
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->hashes[i])
            continue;
        size_t j = s->hashes[i] & (bigger.cap - 1);
        while (bigger.hashes[j])
            j = (j + 1) & (bigger.cap - 1);
        bigger.hashes[j] = s->hashes[i];
        bigger.states[j] = s->states[i];
        bigger.offsets[j] = s->offsets[i];
    }
    free(s->hashes);
    free(s->states);
    free(s->offsets);
    *s = bigger;
    return 0;
}

/* 1 if (bits, state) was new and is now remembered, 0 if seen before,
 * -ENOMEM. */
static int seen_insert(struct seen *s, uint64_t hash, int state, const uint64_t *bits)
{
    uint64_t h = hash ^ (uint64_t)(unsigned)state * 0x9e3779b97f4a7c15ull;
    h = h ? h : 1;
    size_t j = h & (s->cap - 1);
    for (; s->hashes[j]; j = (j + 1) & (s->cap - 1))
        if (s->hashes[j] == h && s->states[j] == state &&
            memcmp(s->arena + s->offsets[j], bits, s->words * sizeof(*bits)) == 0)
            return 0;
    if (s->arena_used + s->words > s->arena_cap) {
        size_t cap = s->arena_cap ? 2 * s->arena_cap : 4096;
        while (cap < s->arena_used + s->words)
            cap *= 2;
        uint64_t *a = realloc(s->arena, cap * sizeof(*a));
        if (!a)
            return -ENOMEM;
        s->arena = a;
        s->arena_cap = cap;
    }
    memcpy(s->arena + s->arena_used, bits, s->words * sizeof(*bits));
    s->hashes[j] = h;
    s->states[j] = state;
    s->offsets[j] = s->arena_used;
    s->arena_used += s->words;
    if (++s->count * 10 > s->cap * 7)
        return seen_grow(s) ? -ENOMEM : 1;
    return 1;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void lift(struct node *call)
{
    call->prev->next = call->next;
    call->next->prev = call->prev;
    struct node *ret = call->match;
    ret->prev->next = ret->next;
    if (ret->next)
        ret->next->prev = ret->prev;
}

static void unlift(struct node *call)
{
    struct node *ret = call->match;
    ret->prev->next = ret;
    if (ret->next)
        ret->next->prev = ret;
    call->prev->next = call;
    call->next->prev = call;
}

struct search_result {
    int rc;          /* 0 linearizable, -1 not, -E2BIG gave up, -ENOMEM */
    size_t placed;   /* the most operations placed at once */
    int blocked;     /* the operation that could not be placed then */
    int state;       /* the key's value in that best attempt */
};

static struct search_result search(const struct op *ops, int n, size_t budget)
{
    struct search_result res = {.rc = 0, .blocked = -1};
    if (n == 0)
        return res;
    struct event *ev = malloc(2 * (size_t)n * sizeof(*ev));
    struct node *nodes = calloc(2 * (size_t)n + 1, sizeof(*nodes));
    size_t words = ((size_t)n + 63) / 64;
    uint64_t *bits = calloc(words, sizeof(*bits));
    uint64_t *zob = malloc((size_t)n * sizeof(*zob));
    struct { struct node *call; int state; } *stack = malloc((size_t)n * sizeof(*stack));
    struct node **calls = malloc((size_t)n * sizeof(*calls));
    struct seen seen;
    bool seen_ok = seen_init(&seen, words) == 0;
    if (!ev || !nodes || !bits || !zob || !stack || !calls || !seen_ok) {
        res.rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        ev[2 * i] = (struct event){.t = ops[i].call, .op = i, .is_call = true};
        ev[2 * i + 1] = (struct event){.t = ops[i].ret, .op = i, .is_call = false};
        zob[i] = splitmix64((uint64_t)i + 1);
    }
    qsort(ev, 2 * (size_t)n, sizeof(*ev), cmp_event);
    struct node *head = &nodes[2 * n], *prev = head;
    for (int i = 0; i < 2 * n; i++) {
        struct node *x = &nodes[i];
        x->op = ev[i].op;
        x->is_call = ev[i].is_call;
        x->prev = prev;
        prev->next = x;
        prev = x;
        if (x->is_call)
            calls[x->op] = x;
        else
            calls[x->op]->match = x;
    }

    struct node *at = head->next;
    int state = 0, sp = 0;
    uint64_t hash = 0;
    while (head->next) {
        if (at->is_call) {
            const struct op *o = &ops[at->op];
            if (o->is_put || o->value == state) {
                int next_state = o->is_put ? o->value : state;
                bits[at->op / 64] |= 1ull << (at->op % 64);
                int fresh = seen_insert(&seen, hash ^ zob[at->op], next_state, bits);
                if (fresh < 0) {
                    res.rc = fresh;
                    goto out;
                }
                if (fresh) {
                    if (seen.count > budget) {
                        res.rc = -E2BIG;
                        goto out;
                    }
                    stack[sp].call = at;
                    stack[sp].state = state;
                    sp++;
                    state = next_state;
                    hash ^= zob[at->op];
                    lift(at);
                    at = head->next;
                    continue;
                }
                bits[at->op / 64] &= ~(1ull << (at->op % 64));
            }
            at = at->next;
            continue;
        }
        /* A return whose operation is not placed yet: backtrack. */
        if ((size_t)sp >= res.placed) {
            res.placed = (size_t)sp;
            res.blocked = at->op;
            res.state = state;
        }
        if (sp == 0) {
            res.rc = -1;
            goto out;
        }
        sp--;
        at = stack[sp].call;
        state = stack[sp].state;
        hash ^= zob[at->op];
        bits[at->op / 64] &= ~(1ull << (at->op % 64));
        unlift(at);
        at = at->next;
    }
out:
    if (seen_ok)
        seen_free(&seen);
    free(ev);
    free(nodes);
    free(bits);
    free(zob);
    free(stack);
    free(calls);
    return res;
}

/* ---- one key: preparing its operations ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1-based position of v among the sorted distinct values, 0 if absent. */
static int value_id(char **values, size_t n, const char *v)
{
    char **hit = bsearch(&v, values, n, sizeof(*values), cmp_str);
    return hit ? (int)(hit - values) + 1 : 0;
}

static bool value_read(const struct rec *const *recs, size_t n, const char *v)
{
    for (size_t i = 0; i < n; i++)
        if (recs[i]->kind == LINCHECK_GET && recs[i]->outcome == LINCHECK_OK &&
            strcmp(recs[i]->value, v) == 0)
            return true;
    return false;
}

static int check_key(const struct rec *const *recs, size_t n, size_t budget, uint64_t t0,
                     struct lincheck_result *r)
{
    char **values = malloc((n ? n : 1) * sizeof(*values));
    struct op *ops = malloc((n ? n : 1) * sizeof(*ops));
    int rc = 0;
    if (!values || !ops) {
        rc = -ENOMEM;
        goto out;
    }
    size_t nv = 0;
    for (size_t i = 0; i < n; i++)
        if (recs[i]->kind == LINCHECK_PUT && recs[i]->outcome != LINCHECK_FAILED)
            values[nv++] = recs[i]->value;
    qsort(values, nv, sizeof(*values), cmp_str);
    size_t distinct = 0;
    for (size_t i = 0; i < nv; i++)
        if (distinct == 0 || strcmp(values[distinct - 1], values[i]) != 0)
            values[distinct++] = values[i];

    int m = 0;
    for (size_t i = 0; i < n; i++) {
        const struct rec *x = recs[i];
        if (x->outcome == LINCHECK_FAILED)
            continue; /* refused: no effect */
        if (x->kind == LINCHECK_GET && x->outcome == LINCHECK_UNKNOWN)
            continue; /* a read that never answered tells nothing */
        if (x->kind == LINCHECK_PUT && x->outcome == LINCHECK_UNKNOWN &&
            !value_read(recs, n, x->value)) {
            r->n_unknown++;
            continue; /* never observed: "never happened" explains it */
        }
        r->n_unknown += x->outcome == LINCHECK_UNKNOWN;
        struct op *o = &ops[m];
        o->rec = x;
        o->is_put = x->kind == LINCHECK_PUT;
        o->value = x->value ? value_id(values, distinct, x->value) : 0;
        o->call = x->call_ns;
        o->ret = x->return_ns;
        if (!o->is_put && x->outcome == LINCHECK_OK && o->value == 0) {
            char d[512];
            describe(x, t0, d, sizeof(d));
            snprintf(r->message, sizeof(r->message),
                     "key %.200s: not linearizable: %.600s read a value that no put on this key "
                     "ever wrote.", x->key, d);
            rc = -1;
            goto out;
        }
        m++;
    }
    r->n_ops += (size_t)m;

    struct search_result s = search(ops, m, budget);
    rc = s.rc;
    if (rc == -1 || rc == -E2BIG) {
        char d[512] = "?", holds[300] = "has no value";
        if (s.blocked >= 0)
            describe(ops[s.blocked].rec, t0, d, sizeof(d));
        if (s.state > 0)
            snprintf(holds, sizeof(holds), "holds '%s'", values[s.state - 1]);
        if (rc == -1)
            snprintf(r->message, sizeof(r->message),
                     "key %.100s: not linearizable. At most %zu of its %d operations can be "
                     "put in one order that respects their call and return times; then %.400s "
                     "cannot be placed: it must take effect before it returns, and no order of "
                     "the operations before it makes that possible (in the longest order "
                     "found, the key %.200s at that point).",
                     recs[0]->key, s.placed, m, d, holds);
        else
            snprintf(r->message, sizeof(r->message),
                     "key %.200s: gave up after exploring %zu states (%d operations): raise the "
                     "budget or shorten the history.",
                     recs[0]->key, budget, m);
    }
out:
    free(values);
    free(ops);
    return rc;
}

int lincheck_check(struct lincheck_history *h, struct lincheck_result *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_lock(&h->mu);
    size_t *idx = sorted_by_key(h);
    const struct rec **recs = malloc((h->n ? h->n : 1) * sizeof(*recs));
    int rc = 0;
    if (!idx || !recs) {
        rc = -ENOMEM;
        goto out;
    }
    uint64_t t0 = history_start(h);
    for (size_t i = 0; i < h->n; i++)
        recs[i] = &h->ops[idx[i]];
    int worst = 0;
    for (size_t i = 0; i < h->n && rc != -ENOMEM;) {
        size_t j = i;
        while (j < h->n && strcmp(recs[j]->key, recs[i]->key) == 0)
            j++;
        r->n_keys++;
        struct lincheck_result one;
        memset(&one, 0, sizeof(one));
        rc = check_key(recs + i, j - i, h->budget, t0, &one);
        r->n_ops += one.n_ops;
        r->n_unknown += one.n_unknown;
        /* Report the first refuted key; a key the search gave up on only if
         * no key is refuted. */
        if ((rc == -1 && worst != -1) || (rc == -E2BIG && worst == 0)) {
            worst = rc;
            snprintf(r->bad_key, sizeof(r->bad_key), "%s", recs[i]->key);
            memcpy(r->message, one.message, sizeof(r->message));
        }
        i = j;
    }
    if (rc != -ENOMEM)
        rc = worst;
out:
    r->ok = rc == 0;
    r->gave_up = rc == -E2BIG;
    free(idx);
    free(recs);
    pthread_mutex_unlock(&h->mu);
    return rc;
}
