/*
 * lincheck_search.c - the search for an order of one group's operations
 * (Wing and Gong, as improved by Lowe, "Testing for linearizability",
 * 2017, and used by Porcupine).
 *
 * The history becomes a list of events, calls and returns sorted by time
 * (a call before a return at the same instant, so that touching operations
 * count as concurrent: the generous reading). The search keeps the list as
 * a doubly linked list and walks it from the front:
 *
 *   - at a call: try to place ("linearize") that operation now: the model
 *     (lincheck_model.c) says whether it fits the keys' current state. If
 *     it fits and the pair (set of placed operations, state) is new, place
 *     it: push it, take its call and return out of the list (they stay
 *     linked to their neighbours, so putting them back is O(1): "dancing
 *     links") and start again from the front. Otherwise look at the next
 *     event.
 *   - at a return: that operation returned before it could be placed, so
 *     the choice that led here was wrong: pop the last placed operation,
 *     put it back in the list, and try the event after its call.
 *
 * The list empties when every operation is placed: linearizable. The stack
 * empties when every choice has failed: not linearizable.
 *
 * The set of explored (placed set, state) pairs is what keeps this from
 * being exponential on realistic histories. Its hash is kept up to date by
 * XOR of per-operation random numbers (Zobrist hashing), and each pair is
 * stored exactly, in a compact form: operations are numbered in call
 * order, and in any placed set all operations before the first unplaced
 * one ("low") are placed, so only the bits from low to the last placed
 * operation are kept, a window about as wide as the clients' concurrency.
 * Operations that never returned (outcome unknown) may stay unplaced for
 * ever and would hold low back; they are numbered apart, in a bitset of
 * their own. A whole-history bitset per state would cost the history's
 * length in bits for each of its states.
 */
#include "tests/chaos/lincheck_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Beyond this much memory for explored states the search gives up. */
#define MEMO_MAX_BYTES ((size_t)512 << 20)

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

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* ---- the explored states: open addressing on the hash, each state's
 * compact form in one growing arena for exact comparison ---- */

struct seen {
    size_t cap, count;  /* slots (a power of two), used */
    uint64_t *hashes;   /* 0: empty slot (hash 0 is stored as 1) */
    size_t *offsets;    /* into arena, in words */
    uint32_t *lens;     /* in words */
    uint64_t *arena;
    size_t used, arena_cap;
};

static void seen_free(struct seen *s)
{
    free(s->hashes);
    free(s->offsets);
    free(s->lens);
    free(s->arena);
}

static int seen_alloc(struct seen *s, size_t cap)
{
    s->cap = cap;
    s->hashes = calloc(cap, sizeof(*s->hashes));
    s->offsets = calloc(cap, sizeof(*s->offsets));
    s->lens = calloc(cap, sizeof(*s->lens));
    return s->hashes && s->offsets && s->lens ? 0 : -ENOMEM;
}

static int seen_grow(struct seen *s)
{
    struct seen bigger = *s;
    if (seen_alloc(&bigger, s->cap * 2)) {
        free(bigger.hashes);
        free(bigger.offsets);
        free(bigger.lens);
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->hashes[i])
            continue;
        size_t j = s->hashes[i] & (bigger.cap - 1);
        while (bigger.hashes[j])
            j = (j + 1) & (bigger.cap - 1);
        bigger.hashes[j] = s->hashes[i];
        bigger.offsets[j] = s->offsets[i];
        bigger.lens[j] = s->lens[i];
    }
    free(s->hashes);
    free(s->offsets);
    free(s->lens);
    *s = bigger;
    return 0;
}

/* 1 if the state (its compact form e[0..len)) was new and is now
 * remembered, 0 if seen before, -ENOMEM, or -E2BIG past MEMO_MAX_BYTES. */
static int seen_insert(struct seen *s, uint64_t hash, const uint64_t *e, uint32_t len)
{
    uint64_t h = hash ? hash : 1;
    size_t j = h & (s->cap - 1);
    for (; s->hashes[j]; j = (j + 1) & (s->cap - 1))
        if (s->hashes[j] == h && s->lens[j] == len &&
            memcmp(s->arena + s->offsets[j], e, len * sizeof(*e)) == 0)
            return 0;
    if (s->used + len > s->arena_cap) {
        size_t cap = s->arena_cap ? 2 * s->arena_cap : 4096;
        while (cap < s->used + len)
            cap *= 2;
        if (cap * sizeof(*e) > MEMO_MAX_BYTES)
            return -E2BIG;
        uint64_t *a = realloc(s->arena, cap * sizeof(*a));
        if (!a)
            return -ENOMEM;
        s->arena = a;
        s->arena_cap = cap;
    }
    memcpy(s->arena + s->used, e, len * sizeof(*e));
    s->hashes[j] = h;
    s->offsets[j] = s->used;
    s->lens[j] = len;
    s->used += len;
    if (++s->count * 10 > s->cap * 7)
        return seen_grow(s) ? -ENOMEM : 1;
    return 1;
}

/* ---- the search's state ---- */

struct frame {
    struct node *call;
    int key, old_value; /* key -1: the operation changed nothing */
    int old_low, old_top;
};

struct search {
    const struct lincheck_sop *ops;
    int n, n_keys;
    struct node *nodes, *head;
    uint64_t *zob;     /* per operation */
    int *slot;         /* per operation: its number among the finite or the unknown ones */
    uint64_t *fin;     /* placed operations that returned, by slot */
    uint64_t *unk;     /* placed operations that never returned, by slot */
    size_t unk_words;
    int n_fin;
    int low, top;      /* first unplaced finite slot; one past the last placed one */
    int *st;           /* the keys' value ids */
    uint64_t set_hash, st_hash;
    struct frame *stack;
    int sp;
    uint64_t *entry;   /* the compact form being built */
    struct seen seen;
};

static bool is_unknown(const struct search *s, int op)
{
    return s->ops[op].ret == LINCHECK_NO_RETURN;
}

static uint64_t key_hash(int key, int value)
{
    return splitmix64(((uint64_t)(uint32_t)key << 32 | (uint32_t)value) ^ 0x5851f42d4c957f2dull);
}

static bool bit(const uint64_t *b, int i)
{
    return (b[i / 64] >> (i % 64)) & 1;
}

static void flip(uint64_t *b, int i)
{
    b[i / 64] ^= 1ull << (i % 64);
}

/* The first finite slot at or after i that is not placed. */
static int first_unplaced(const struct search *s, int i)
{
    while (i < s->n_fin && bit(s->fin, i))
        i++;
    return i;
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

static void set_key(struct search *s, int key, int value)
{
    s->st_hash ^= key_hash(key, s->st[key]) ^ key_hash(key, value);
    s->st[key] = value;
}

/* Places the operation whose call is `call`, which changes key to value
 * (key -1: nothing). */
static void place(struct search *s, struct node *call, int key, int value)
{
    int op = call->op, slot = s->slot[op];
    s->stack[s->sp++] = (struct frame){.call = call, .key = key,
                                       .old_value = key >= 0 ? s->st[key] : 0,
                                       .old_low = s->low, .old_top = s->top};
    if (key >= 0)
        set_key(s, key, value);
    s->set_hash ^= s->zob[op];
    if (is_unknown(s, op)) {
        flip(s->unk, slot);
    } else {
        flip(s->fin, slot);
        if (slot == s->low)
            s->low = first_unplaced(s, slot + 1);
        if (slot + 1 > s->top)
            s->top = slot + 1;
    }
    lift(call);
}

/* Takes back the last placed operation; returns its call. */
static struct node *unplace(struct search *s)
{
    struct frame *f = &s->stack[--s->sp];
    int op = f->call->op;
    if (f->key >= 0)
        set_key(s, f->key, f->old_value);
    s->set_hash ^= s->zob[op];
    flip(is_unknown(s, op) ? s->unk : s->fin, s->slot[op]);
    s->low = f->old_low;
    s->top = f->old_top;
    unlift(f->call);
    return f->call;
}

/* The compact form of (placed set, state): low, top, the finite bits'
 * words from low's to top's, the unknown bits, the state two ids a word.
 * Every placed set has one form, so equal forms are equal states. */
static int remember(struct search *s)
{
    uint64_t *e = s->entry;
    uint32_t len = 0;
    e[len++] = (uint64_t)s->low;
    e[len++] = (uint64_t)s->top;
    for (int w = s->low / 64; s->top > s->low && w < (s->top + 63) / 64; w++)
        e[len++] = s->fin[w];
    for (size_t w = 0; w < s->unk_words; w++)
        e[len++] = s->unk[w];
    for (int k = 0; k < s->n_keys; k += 2)
        e[len++] = (uint64_t)(uint32_t)s->st[k] |
                   (k + 1 < s->n_keys ? (uint64_t)(uint32_t)s->st[k + 1] << 32 : 0);
    return seen_insert(&s->seen, splitmix64(s->set_hash ^ s->st_hash), e, len);
}

static void search_free(struct search *s)
{
    free(s->nodes);
    free(s->zob);
    free(s->slot);
    free(s->fin);
    free(s->unk);
    free(s->st);
    free(s->stack);
    free(s->entry);
    seen_free(&s->seen);
}

/* The event list, the numbering of operations and the initial state (every
 * key missing). 0 or -ENOMEM. */
static int search_init(struct search *s, const struct lincheck_sop *ops, int n, int n_keys)
{
    memset(s, 0, sizeof(*s));
    s->ops = ops;
    s->n = n;
    s->n_keys = n_keys;
    size_t fin_words = ((size_t)n + 63) / 64 + 1;
    s->unk_words = 0;
    for (int i = 0; i < n; i++)
        s->unk_words += ops[i].ret == LINCHECK_NO_RETURN;
    s->unk_words = (s->unk_words + 63) / 64;
    struct event *ev = malloc(2 * (size_t)n * sizeof(*ev));
    struct node **calls = malloc((size_t)n * sizeof(*calls));
    s->nodes = calloc(2 * (size_t)n + 1, sizeof(*s->nodes));
    s->zob = malloc((size_t)n * sizeof(*s->zob));
    s->slot = malloc((size_t)n * sizeof(*s->slot));
    s->fin = calloc(fin_words, sizeof(*s->fin));
    s->unk = calloc(s->unk_words + 1, sizeof(*s->unk));
    s->st = calloc((size_t)n_keys, sizeof(*s->st));
    s->stack = malloc((size_t)n * sizeof(*s->stack));
    s->entry = malloc((2 + fin_words + s->unk_words + (size_t)n_keys) * sizeof(*s->entry));
    int rc = ev && calls && s->nodes && s->zob && s->slot && s->fin && s->unk && s->st &&
                     s->stack && s->entry && seen_alloc(&s->seen, 1024) == 0
                 ? 0 : -ENOMEM;
    for (int i = 0, fin = 0, unk = 0; rc == 0 && i < n; i++) {
        ev[2 * i] = (struct event){.t = ops[i].call, .op = i, .is_call = true};
        ev[2 * i + 1] = (struct event){.t = ops[i].ret, .op = i, .is_call = false};
        s->zob[i] = splitmix64((uint64_t)i + 1);
        s->slot[i] = ops[i].ret == LINCHECK_NO_RETURN ? unk++ : fin++;
        s->n_fin = fin;
    }
    if (rc == 0) {
        qsort(ev, 2 * (size_t)n, sizeof(*ev), cmp_event);
        struct node *prev = s->head = &s->nodes[2 * n];
        for (int i = 0; i < 2 * n; i++) {
            struct node *x = &s->nodes[i];
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
        for (int k = 0; k < n_keys; k++)
            s->st_hash ^= key_hash(k, 0);
    }
    free(ev);
    free(calls);
    return rc;
}

/* The longest attempt so far: how far it got, what blocked it, the state. */
static void note_best(struct search *s, struct lincheck_search_result *res, int blocked)
{
    if ((size_t)s->sp < res->placed && res->blocked >= 0)
        return;
    res->placed = (size_t)s->sp;
    res->blocked = blocked;
    memcpy(res->state, s->st, (size_t)s->n_keys * sizeof(*s->st));
}

struct lincheck_search_result lincheck_search(const struct lincheck_sop *ops, int n, int n_keys,
                                              size_t budget)
{
    struct lincheck_search_result res = {.rc = 0, .blocked = -1};
    res.state = calloc(n_keys > 0 ? (size_t)n_keys : 1, sizeof(*res.state));
    if (!res.state) {
        res.rc = -ENOMEM;
        return res;
    }
    if (n == 0)
        return res;
    struct search s;
    res.rc = search_init(&s, ops, n, n_keys);
    struct node *at = res.rc == 0 ? s.head->next : NULL;
    while (res.rc == 0 && s.head->next) {
        if (at->is_call) {
            int key, value;
            if (lincheck_fits(&ops[at->op], s.st, &key, &value)) {
                place(&s, at, key, value);
                int fresh = remember(&s);
                if (fresh < 0) {
                    res.rc = fresh;
                    break;
                }
                if (fresh && s.seen.count > budget) {
                    res.rc = -E2BIG;
                    break;
                }
                if (fresh) {
                    at = s.head->next;
                    continue;
                }
                at = unplace(&s); /* explored already from here */
            }
            at = at->next;
            continue;
        }
        /* A return whose operation is not placed yet: backtrack. */
        note_best(&s, &res, at->op);
        if (s.sp == 0) {
            res.rc = -1;
            break;
        }
        at = unplace(&s)->next;
    }
    search_free(&s);
    return res;
}
