/*
 * lincheck_check.c - the check of a whole history (lincheck.h): its keys
 * split into groups checked one by one, each group's operations put in the
 * search's terms (lincheck_search.c), and a failure put into words.
 *
 * Groups. Linearizability is compositional (Herlihy and Wing's locality
 * theorem): a history is linearizable if and only if its operations on
 * each object are. For put, get, delete and cas a key is an object; a list
 * reads several keys at one instant, so the keys it reads (those with its
 * prefix, and any it returned) make one object together. A union-find
 * over the keys joins them; a history without lists has one group per key.
 *
 * Dropped before the search: refused operations (no effect), reads that
 * never answered (they say nothing), and writes with an unknown outcome
 * that could only hide what later operations saw, never explain it:
 *   - a put whose value nothing read, when nothing after its call saw the
 *     key exist (a list that returned it, a delete that deleted it);
 *   - a cas whose new value nothing read or expected;
 *   - a delete, when nothing after its call saw the key missing.
 * Every later operation that fits after such a write also fits without it,
 * leaving the key as it would have been or in a state no worse for what
 * follows; so "it never happened", always allowed for an unknown outcome,
 * explains as much. Writes pending for ever make the search large under
 * heavy timeouts: most of them go here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/chaos/lincheck_internal.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static bool has_u64(const uint64_t *v, size_t n, uint64_t x)
{
    return n && bsearch(&x, v, n, sizeof(*v), cmp_u64) != NULL;
}

/* Sorts v[0..n) and drops repeats; returns the new count. */
static size_t sort_unique(const char **v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(v[k - 1], v[i]) != 0)
            v[k++] = v[i];
    return k;
}

/* ---- every key of the history, and the groups ---- */

struct universe {
    const char **keys; /* sorted, distinct */
    size_t n;
    size_t *parent;    /* union-find */
};

static long key_index(const struct universe *u, const char *key)
{
    const char **hit = u->n ? bsearch(&key, u->keys, u->n, sizeof(*u->keys), cmp_str) : NULL;
    return hit ? (long)(hit - u->keys) : -1;
}

/* The keys with the prefix: u->keys[*first .. *first + *count). */
static void prefix_range(const struct universe *u, const char *prefix, size_t *first,
                         size_t *count)
{
    size_t lo = 0, hi = u->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(u->keys[mid], prefix) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < u->n && lincheck_has_prefix(u->keys[end], prefix))
        end++;
    *first = lo;
    *count = end - lo;
}

static size_t find(struct universe *u, size_t i)
{
    while (u->parent[i] != i)
        i = u->parent[i] = u->parent[u->parent[i]];
    return i;
}

static void join(struct universe *u, size_t a, size_t b)
{
    a = find(u, a);
    b = find(u, b);
    if (a != b)
        u->parent[a > b ? a : b] = a < b ? a : b;
}

static bool answered_list(const struct lincheck_rec *r)
{
    return r->kind == LINCHECK_LIST && r->outcome == LINCHECK_OK;
}

/* Every key operated on or listed; lists join the keys they read. */
static int build_universe(const struct lincheck_history *h, struct universe *u)
{
    size_t cap = 1;
    for (size_t i = 0; i < h->n; i++)
        cap += h->ops[i].kind == LINCHECK_LIST ? h->ops[i].n_listed : 1;
    u->keys = malloc(cap * sizeof(*u->keys));
    if (!u->keys)
        return -ENOMEM;
    for (size_t i = 0; i < h->n; i++) {
        const struct lincheck_rec *r = &h->ops[i];
        if (r->kind != LINCHECK_LIST)
            u->keys[u->n++] = r->key;
        for (size_t j = 0; j < r->n_listed; j++)
            u->keys[u->n++] = r->listed[j];
    }
    u->n = sort_unique(u->keys, u->n);
    u->parent = malloc((u->n ? u->n : 1) * sizeof(*u->parent));
    if (!u->parent)
        return -ENOMEM;
    for (size_t i = 0; i < u->n; i++)
        u->parent[i] = i;
    for (size_t i = 0; i < h->n; i++) {
        const struct lincheck_rec *r = &h->ops[i];
        if (!answered_list(r))
            continue;
        size_t first, count;
        prefix_range(u, r->key, &first, &count);
        for (size_t k = 1; k < count; k++)
            join(u, first, first + k);
        for (size_t j = 0; j < r->n_listed; j++)
            join(u, count ? first : (size_t)key_index(u, r->listed[0]),
                 (size_t)key_index(u, r->listed[j]));
    }
    return 0;
}

/* The group an operation belongs to (the root of its keys), or -1 for a
 * list that reads no key of the history and returned none. */
static long group_of(struct universe *u, const struct lincheck_rec *r)
{
    if (r->kind != LINCHECK_LIST)
        return (long)find(u, (size_t)key_index(u, r->key));
    size_t first, count;
    prefix_range(u, r->key, &first, &count);
    if (count)
        return (long)find(u, first);
    return r->n_listed ? (long)find(u, (size_t)key_index(u, r->listed[0])) : -1;
}

/* ---- one group ---- */

struct group {
    struct universe *u;
    const size_t *ukeys; /* the group's keys, as universe indices, sorted */
    int nk;
    const struct lincheck_rec **recs; /* in call order */
    size_t nr;
    uint64_t t0;
    const char **vals;   /* distinct values written, sorted: value id i + 1 */
    size_t nv;
    struct lincheck_sop *sops; /* one per rec, then only those kept */
    int m;
    bool *present;       /* the lists' present[] arrays */
    uint64_t *written, *observed; /* (key << 32 | value id), sorted */
    size_t n_written, n_observed;
    bool *created;       /* per key: some put may have created it */
    uint64_t *seen_existing, *seen_missing; /* per key: 1 + the latest such return, 0 none */
    struct lincheck_result *r;
};

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static int local_key(const struct group *g, const char *key)
{
    size_t u = (size_t)key_index(g->u, key);
    const size_t *hit = bsearch(&u, g->ukeys, (size_t)g->nk, sizeof(u), cmp_size);
    return (int)(hit - g->ukeys);
}

static int value_id(const struct group *g, const char *v)
{
    const char **hit = g->nv ? bsearch(&v, g->vals, g->nv, sizeof(*g->vals), cmp_str) : NULL;
    return hit ? (int)(hit - g->vals) + 1 : 0;
}

static uint64_t pair(int key, int value)
{
    return (uint64_t)(uint32_t)key << 32 | (uint32_t)value;
}

static bool writes(const struct lincheck_rec *r)
{
    return (r->kind == LINCHECK_PUT || r->kind == LINCHECK_CAS) && r->outcome != LINCHECK_FAILED;
}

/* Operations that cannot tell anything: refusals (no effect) and reads
 * that never answered. */
static bool says_nothing(const struct lincheck_rec *r)
{
    return r->outcome == LINCHECK_FAILED ||
           ((r->kind == LINCHECK_GET || r->kind == LINCHECK_LIST) &&
            r->outcome == LINCHECK_UNKNOWN);
}

static int refuse(struct group *g, const struct lincheck_rec *r, const char *key,
                  const char *why)
{
    char d[512];
    lincheck_describe(r, g->t0, d, sizeof(d));
    snprintf(g->r->message, sizeof(g->r->message), "key %.200s: not linearizable: %.600s %.400s",
             key, d, why);
    snprintf(g->r->bad_key, sizeof(g->r->bad_key), "%s", key);
    return -1;
}

/* A list's keys: those of the group with its prefix (consecutive, as keys
 * are sorted), each flagged present if returned; every returned key once
 * and with the prefix. 0 or -1 (refused). */
static int translate_list(struct group *g, const struct lincheck_rec *r, struct lincheck_sop *o,
                          bool **present)
{
    size_t f, c;
    prefix_range(g->u, r->key, &f, &c);
    o->first = c ? local_key(g, g->u->keys[f]) : 0;
    o->n_cover = (int)c;
    bool *mine = *present;
    o->present = mine;
    *present += c;
    char why[400];
    for (size_t j = 0; j < r->n_listed; j++) {
        const char *key = r->listed[j];
        int i = local_key(g, key) - o->first;
        if (!lincheck_has_prefix(key, r->key)) {
            snprintf(why, sizeof(why), "returned key %.100s, which does not start with '%.100s'.",
                     key, r->key);
            return refuse(g, r, key, why);
        }
        if (mine[i]) {
            snprintf(why, sizeof(why), "returned key %.200s twice.", key);
            return refuse(g, r, key, why);
        }
        mine[i] = true;
    }
    return 0;
}

/* The operation in the search's terms. 0 or -1 (refused). */
static int translate(struct group *g, const struct lincheck_rec *r, struct lincheck_sop *o,
                     bool **present)
{
    *o = (struct lincheck_sop){.rec = r, .call = r->call_ns, .ret = r->return_ns};
    if (r->kind == LINCHECK_LIST)
        return r->outcome == LINCHECK_OK ? translate_list(g, r, o, present) : 0;
    o->key = local_key(g, r->key);
    o->value = r->value ? value_id(g, r->value) : 0;
    if (r->kind == LINCHECK_CAS) {
        int e = value_id(g, r->expected);
        o->expected = e ? e : -1; /* matches nothing: nobody wrote it */
        o->held = r->held ? value_id(g, r->held) : 0;
    }
    return 0;
}

static void later(uint64_t *latest, uint64_t ret)
{
    if (ret + 1 > *latest)
        *latest = ret + 1;
}

/* What the group's operations wrote and saw. */
static void survey(struct group *g, const struct lincheck_sop *o)
{
    const struct lincheck_rec *r = o->rec;
    if (says_nothing(r))
        return;
    if (r->kind == LINCHECK_LIST) {
        for (int i = 0; i < o->n_cover; i++)
            later(o->present[i] ? &g->seen_existing[o->first + i]
                                : &g->seen_missing[o->first + i], r->return_ns);
        return;
    }
    if (writes(r))
        g->written[g->n_written++] = pair(o->key, o->value);
    if (r->kind == LINCHECK_PUT)
        g->created[o->key] = true;
    if (r->kind == LINCHECK_GET && r->outcome == LINCHECK_OK)
        g->observed[g->n_observed++] = pair(o->key, o->value);
    if (r->kind == LINCHECK_CAS) {
        g->observed[g->n_observed++] = pair(o->key, o->expected);
        if (r->outcome == LINCHECK_MISMATCH)
            g->observed[g->n_observed++] = pair(o->key, o->held);
    }
    if (r->kind == LINCHECK_DELETE && r->outcome == LINCHECK_OK)
        later(&g->seen_existing[o->key], r->return_ns);
    if (r->outcome == LINCHECK_MISSING)
        later(&g->seen_missing[o->key], r->return_ns);
}

/* What an operation saw must have been written: a value to its key, a
 * listed key by some put. 0 or -1 (refused). */
static int check_seen(struct group *g, const struct lincheck_sop *o)
{
    const struct lincheck_rec *r = o->rec;
    if (r->kind == LINCHECK_LIST) {
        for (int i = 0; i < o->n_cover; i++)
            if (o->present[i] && !g->created[o->first + i])
                return refuse(g, r, g->u->keys[g->ukeys[o->first + i]],
                              "returned a key that no put ever created.");
        return 0;
    }
    if (r->kind == LINCHECK_GET && r->outcome == LINCHECK_OK &&
        !has_u64(g->written, g->n_written, pair(o->key, o->value)))
        return refuse(g, r, r->key,
                      "read a value that no write on this key (put or cas) ever wrote.");
    if (r->kind == LINCHECK_CAS && r->outcome == LINCHECK_MISMATCH &&
        !has_u64(g->written, g->n_written, pair(o->key, o->held)))
        return refuse(g, r, r->key, "says the key held a value that no write on this key (put "
                      "or cas) ever wrote.");
    return 0;
}

/* Whether an unknown write can only hide what others saw (see the top). */
static bool cannot_matter(const struct group *g, const struct lincheck_sop *o)
{
    const struct lincheck_rec *r = o->rec;
    if (r->outcome != LINCHECK_UNKNOWN)
        return false;
    bool value_seen = has_u64(g->observed, g->n_observed, pair(o->key, o->value));
    switch (r->kind) {
    case LINCHECK_PUT:
        return !value_seen && g->seen_existing[o->key] <= r->call_ns;
    case LINCHECK_CAS:
        return !value_seen;
    case LINCHECK_DELETE:
        return g->seen_missing[o->key] <= r->call_ns;
    default:
        return false;
    }
}

/* "k0 holds 'a', k1 does not exist, ..." as far as it fits. */
static void describe_state(const struct group *g, const int *st, char *buf, size_t cap)
{
    size_t used = 0;
    int k = 0;
    buf[0] = '\0';
    for (; k < g->nk && used + 140 < cap; k++) {
        const char *key = g->u->keys[g->ukeys[k]];
        if (st[k] > 0)
            used += (size_t)snprintf(buf + used, cap - used, "%s%.60s holds '%.60s'",
                                     k ? ", " : "", key, g->vals[st[k] - 1]);
        else
            used += (size_t)snprintf(buf + used, cap - used, "%s%.60s does not exist",
                                     k ? ", " : "", key);
    }
    if (k < g->nk)
        snprintf(buf + used, cap - used, ", ...");
}

/* The key to name for a failure: the blocked operation's, or for a list
 * the first key it read whose existence the longest order contradicts. */
static const char *blamed_key(const struct group *g, const struct lincheck_sop *o, const int *st)
{
    if (o && o->rec->kind != LINCHECK_LIST)
        return o->rec->key;
    for (int i = 0; o && i < o->n_cover; i++)
        if ((st[o->first + i] != 0) != o->present[i])
            return g->u->keys[g->ukeys[o->first + i]];
    return g->u->keys[g->ukeys[o && o->n_cover ? o->first : 0]];
}

static void explain(struct group *g, const struct lincheck_search_result *s, size_t budget)
{
    char who[400], d[512] = "?", state[700];
    const struct lincheck_sop *o = s->blocked >= 0 ? &g->sops[s->blocked] : NULL;
    if (g->nk == 1) {
        snprintf(who, sizeof(who), "key %.200s", g->u->keys[g->ukeys[0]]);
    } else {
        size_t used = (size_t)snprintf(who, sizeof(who), "keys ");
        int k = 0;
        for (; k < g->nk && used + 100 < sizeof(who); k++)
            used += (size_t)snprintf(who + used, sizeof(who) - used, "%s%.60s", k ? ", " : "",
                                     g->u->keys[g->ukeys[k]]);
        snprintf(who + used, sizeof(who) - used, "%s (read together by a list)",
                 k < g->nk ? ", ..." : "");
    }
    snprintf(g->r->bad_key, sizeof(g->r->bad_key), "%s", blamed_key(g, o, s->state));
    if (s->rc == -E2BIG) {
        snprintf(g->r->message, sizeof(g->r->message),
                 "%s: gave up after exploring %zu states or their memory (%d operations): "
                 "raise the budget or shorten the history.", who, budget, g->m);
        return;
    }
    if (o)
        lincheck_describe(o->rec, g->t0, d, sizeof(d));
    describe_state(g, s->state, state, sizeof(state));
    snprintf(g->r->message, sizeof(g->r->message),
             "%.400s: not linearizable. At most %zu of %s %d operations can be put in one order "
             "that respects their call and return times; then %.500s cannot be placed: it must "
             "take effect before it returns, and no order of the operations before it makes "
             "that possible (in the longest order found, at that point %.600s).",
             who, s->placed, g->nk == 1 ? "its" : "their", g->m, d, state);
}

static int cmp_sop_call(const void *a, const void *b)
{
    const struct lincheck_sop *x = a, *y = b;
    if (x->call != y->call)
        return x->call < y->call ? -1 : 1;
    return x->rec < y->rec ? -1 : x->rec > y->rec;
}

static void group_free(struct group *g)
{
    free(g->vals);
    free(g->sops);
    free(g->present);
    free(g->written);
    free(g->observed);
    free(g->created);
    free(g->seen_existing);
    free(g->seen_missing);
}

static int group_alloc(struct group *g)
{
    size_t n = g->nr ? g->nr : 1, k = (size_t)g->nk, cover = 1;
    for (size_t i = 0; i < g->nr; i++)
        cover += answered_list(g->recs[i]) ? k : 0;
    g->vals = malloc(n * sizeof(*g->vals));
    g->sops = malloc(n * sizeof(*g->sops));
    g->present = calloc(cover, sizeof(*g->present));
    g->written = malloc(n * sizeof(*g->written));
    g->observed = malloc(2 * n * sizeof(*g->observed));
    g->created = calloc(k, sizeof(*g->created));
    g->seen_existing = calloc(k, sizeof(*g->seen_existing));
    g->seen_missing = calloc(k, sizeof(*g->seen_missing));
    return g->vals && g->sops && g->present && g->written && g->observed && g->created &&
           g->seen_existing && g->seen_missing ? 0 : -ENOMEM;
}

/* The operations in the search's terms, checked for what they saw, and
 * those that cannot matter dropped. 0 or -1 (refused). */
static int prepare(struct group *g)
{
    for (size_t i = 0; i < g->nr; i++)
        if (writes(g->recs[i]))
            g->vals[g->nv++] = g->recs[i]->value;
    g->nv = sort_unique(g->vals, g->nv);
    bool *present = g->present;
    for (size_t i = 0; i < g->nr; i++)
        if (translate(g, g->recs[i], &g->sops[i], &present))
            return -1;
    for (size_t i = 0; i < g->nr; i++)
        survey(g, &g->sops[i]);
    qsort(g->written, g->n_written, sizeof(*g->written), cmp_u64);
    qsort(g->observed, g->n_observed, sizeof(*g->observed), cmp_u64);
    for (size_t i = 0; i < g->nr; i++) {
        const struct lincheck_sop *o = &g->sops[i];
        if (says_nothing(o->rec))
            continue;
        if (check_seen(g, o))
            return -1;
        g->r->n_unknown += o->rec->outcome == LINCHECK_UNKNOWN;
        if (!cannot_matter(g, o))
            g->sops[g->m++] = *o;
    }
    return 0;
}

/* Checks one group. 0, -1 (r->message says why), -E2BIG, -ENOMEM. */
static int check_group(struct group *g, size_t budget)
{
    int rc = group_alloc(g);
    if (rc == 0)
        rc = prepare(g);
    if (rc == 0) {
        qsort(g->sops, (size_t)g->m, sizeof(*g->sops), cmp_sop_call);
        g->r->n_ops += (size_t)g->m;
        struct lincheck_search_result s = lincheck_search(g->sops, g->m, g->nk, budget);
        rc = s.rc;
        if (rc == -1 || rc == -E2BIG)
            explain(g, &s, budget);
        free(s.state);
    }
    group_free(g);
    return rc;
}

/* ---- the whole history ---- */

/* An operation or a key, with the group it belongs to: sorted by group,
 * each group's members are consecutive. */
struct member {
    long group;
    uint64_t call; /* keys: 0 */
    size_t index;
};

static int cmp_member(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->call != y->call)
        return x->call < y->call ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Runs check_group on each group in turn; the first refuted group is
 * reported, a group the search gave up on only if none is refuted. */
static int check_groups(struct lincheck_history *h, struct universe *u, struct lincheck_result *r)
{
    struct member *ops = malloc((h->n ? h->n : 1) * sizeof(*ops));
    struct member *keys = malloc((u->n ? u->n : 1) * sizeof(*keys));
    const struct lincheck_rec **recs = malloc((h->n ? h->n : 1) * sizeof(*recs));
    size_t *ukeys = malloc((u->n ? u->n : 1) * sizeof(*ukeys));
    int worst = 0, rc = ops && keys && recs && ukeys ? 0 : -ENOMEM;
    if (rc == 0) {
        for (size_t i = 0; i < h->n; i++)
            ops[i] = (struct member){group_of(u, &h->ops[i]), h->ops[i].call_ns, i};
        for (size_t k = 0; k < u->n; k++)
            keys[k] = (struct member){(long)find(u, k), 0, k};
        qsort(ops, h->n, sizeof(*ops), cmp_member);
        qsort(keys, u->n, sizeof(*keys), cmp_member);
    }
    uint64_t t0 = lincheck_history_start(h);
    size_t i = 0, k = 0;
    while (i < h->n && ops[i].group < 0)
        i++; /* lists that read nothing */
    while (rc != -ENOMEM && k < u->n) {
        struct group g = {.u = u, .ukeys = ukeys, .recs = recs, .t0 = t0};
        long id = keys[k].group;
        for (; k < u->n && keys[k].group == id; k++)
            ukeys[g.nk++] = keys[k].index;
        for (; i < h->n && ops[i].group == id; i++)
            recs[g.nr++] = &h->ops[ops[i].index];
        struct lincheck_result one;
        memset(&one, 0, sizeof(one));
        g.r = &one;
        rc = check_group(&g, h->budget);
        r->n_groups++;
        r->n_ops += one.n_ops;
        r->n_unknown += one.n_unknown;
        if ((rc == -1 && worst != -1) || (rc == -E2BIG && worst == 0)) {
            worst = rc;
            memcpy(r->bad_key, one.bad_key, sizeof(r->bad_key));
            memcpy(r->message, one.message, sizeof(r->message));
        }
    }
    free(ops);
    free(keys);
    free(recs);
    free(ukeys);
    return rc == -ENOMEM ? rc : worst;
}

int lincheck_check(struct lincheck_history *h, struct lincheck_result *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_lock(&h->mu);
    struct universe u = {0};
    int rc = build_universe(h, &u);
    if (rc == 0) {
        r->n_keys = u.n;
        rc = check_groups(h, &u, r);
    }
    free(u.keys);
    free(u.parent);
    pthread_mutex_unlock(&h->mu);
    r->ok = rc == 0;
    r->gave_up = rc == -E2BIG;
    if (rc == -ENOMEM)
        snprintf(r->message, sizeof(r->message), "the checker ran out of memory");
    return rc;
}
