/*
 * clerk.c - the lab's key-value clients (see clerk.h).
 */
#include "tests/support/clerk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void lab_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

const char *lab_err_name(int rc)
{
    switch (rc) {
    case 0: return "0";
    case -EPERM: return "-EPERM (not leader)";
    case -ETIMEDOUT: return "-ETIMEDOUT";
    case -ESHUTDOWN: return "-ESHUTDOWN (down)";
    case -EAGAIN: return "-EAGAIN (retry)";
    case -ENOENT: return "-ENOENT";
    default: return "an error";
    }
}

uint64_t clerk_rand(struct clerk *k, uint64_t bound)
{
    uint64_t z = (k->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return bound ? z % bound : 0;
}

void clerk_init(struct clerk *k, struct cluster *c, struct kvlab *kl,
                struct lincheck_history *h, int id)
{
    memset(k, 0, sizeof(*k));
    k->c = c;
    k->kl = kl;
    k->h = h;
    k->id = id;
    k->client_id = 1000 + (uint64_t)id;
    k->allowed = LAB_ALL_NODES; /* nodes that join later too */
    k->rng = cluster_seed(c) * 31 + (uint64_t)id;
    k->wait_min_ms = k->wait_max_ms = 2000;
}

/* Moves on to the leader a redirect names, or else to the next node it may
 * reach, after a pause (an election is probably under way), as
 * kv_nodes_move_on does for real clients. */
static void clerk_redirect(struct clerk *k, int32_t hint)
{
    k->redirects++;
    if (hint >= 0 && (unsigned)hint < cluster_n(k->c) && (unsigned)hint != k->leader &&
        (k->allowed & (1u << hint))) {
        k->leader = (unsigned)hint;
        return;
    }
    do
        k->leader = (k->leader + 1) % cluster_n(k->c);
    while (!(k->allowed & (1u << k->leader)));
    lab_sleep_ms(2);
}

static void record(struct clerk *k, enum lincheck_kind kind, const char *key, const char *value,
                   uint64_t call_ns, enum lincheck_outcome outcome)
{
    if (!k->h)
        return;
    struct lincheck_op op = {.client = k->id, .kind = kind, .key = key, .value = value,
                             .call_ns = call_ns, .return_ns = lincheck_now_ns(),
                             .outcome = outcome};
    if (lincheck_add(k->h, &op) != 0)
        abort();
}

int clerk_put(struct clerk *k, const char *key, const char *value, unsigned deadline_lab_ms)
{
    struct cluster *c = k->c;
    struct kv_request q = {.op = KV_REQUEST_PUT, .client_id = k->client_id, .seq = ++k->seq,
                           .key = (const uint8_t *)key, .key_len = (uint32_t)strlen(key),
                           .value = (const uint8_t *)value,
                           .value_len = (uint32_t)strlen(value)};
    k->puts++;
    uint64_t call_ns = lincheck_now_ns();
    uint64_t give_up = lab_now_ms() + cluster_ms(c, deadline_lab_ms);
    unsigned timeouts_here = 0;
    while (lab_now_ms() < give_up) {
        unsigned wait = k->wait_min_ms +
                        (unsigned)clerk_rand(k, k->wait_max_ms - k->wait_min_ms + 1);
        struct kv_reply r;
        k->attempts++;
        int rc = kvlab_call(k->kl, k->leader, &q, cluster_ms(c, wait), &r);
        bool ok = rc == 0 && r.answer == KV_ANSWER_OK;
        if (ok && clerk_rand(k, 1000) < k->lose_permille) {
            k->lost++; /* the reply is lost: the client retries the same request */
            continue;
        }
        if (ok) {
            record(k, LINCHECK_PUT, key, value, call_ns, LINCHECK_OK);
            return 0;
        }
        if (rc == 0 && r.answer == KV_ANSWER_BAD_REQUEST)
            cluster_fatal(c, "n%u refused put %s=%s (seq %llu) as a bad request", k->leader,
                          key, value, (unsigned long long)q.seq);
        /* A timeout may be a slow commit: retry the same node a few times,
         * then try elsewhere (it may be a leader that was cut off). */
        if (rc == -ETIMEDOUT && ++timeouts_here < 3)
            continue;
        timeouts_here = 0;
        clerk_redirect(k, rc == 0 && r.answer == KV_ANSWER_NOT_LEADER ? r.leader_hint
                                                                     : RAFT_NO_NODE);
    }
    k->unknown++;
    record(k, LINCHECK_PUT, key, value, call_ns, LINCHECK_UNKNOWN);
    return -ETIMEDOUT;
}

int lab_get(struct kvlab *kl, unsigned i, const char *key, char **value, int32_t *hint)
{
    struct kv_request q = {.op = KV_REQUEST_GET, .key = (const uint8_t *)key,
                           .key_len = (uint32_t)strlen(key)};
    struct kv_reply r;
    *value = NULL;
    int rc = kvlab_call(kl, i, &q, 0, &r);
    if (rc)
        return rc;
    if (hint)
        *hint = r.leader_hint;
    switch (r.answer) {
    case KV_ANSWER_OK: break;
    case KV_ANSWER_NOT_FOUND: return -ENOENT;
    case KV_ANSWER_NOT_LEADER: return -EPERM;
    case KV_ANSWER_RETRY: return -EAGAIN;
    default: return -EINVAL;
    }
    *value = realloc(r.value, r.value_len + 1);
    if (!*value)
        abort();
    (*value)[r.value_len] = '\0';
    return 0;
}

int clerk_get(struct clerk *k, const char *key, char **value)
{
    uint64_t call_ns = lincheck_now_ns();
    int32_t hint = RAFT_NO_NODE;
    k->gets++;
    int rc = lab_get(k->kl, k->leader, key, value, &hint);
    if (rc == 0)
        record(k, LINCHECK_GET, key, *value, call_ns, LINCHECK_OK);
    else if (rc == -ENOENT)
        record(k, LINCHECK_GET, key, NULL, call_ns, LINCHECK_MISSING);
    else if (rc == -EPERM || rc == -ESHUTDOWN)
        clerk_redirect(k, hint);
    return rc;
}

int clerk_read(struct clerk *k, const char *key, unsigned deadline_lab_ms, char **value)
{
    uint64_t give_up = lab_now_ms() + cluster_ms(k->c, deadline_lab_ms);
    int rc;
    while ((rc = clerk_get(k, key, value)) != 0 && rc != -ENOENT && lab_now_ms() < give_up)
        lab_sleep_ms(10);
    return rc;
}

void lab_put_via(struct cluster *c, struct kvlab *kl, uint32_t allowed, int id,
                 const char *key, const char *value)
{
    struct clerk k;
    clerk_init(&k, c, kl, NULL, id);
    k.allowed = allowed;
    k.wait_min_ms = k.wait_max_ms = 500;
    while (!(allowed & (1u << k.leader)))
        k.leader++;
    if (clerk_put(&k, key, value, 10000) != 0)
        cluster_fatal(c, "put %s=%s not acknowledged within 10 s", key, value);
}

int lab_current_leader(struct cluster *c, uint64_t *term)
{
    int best = -1;
    uint64_t best_term = 0;
    for (unsigned i = 0; i < cluster_n(c); i++) {
        struct raft_status st;
        if (cluster_connected(c, i) && cluster_status(c, i, &st) && st.role == RAFT_LEADER &&
            st.term > best_term) {
            best = (int)i;
            best_term = st.term;
        }
    }
    if (term)
        *term = best_term;
    return best;
}

unsigned lab_await_new_leader(struct cluster *c, uint64_t after_term, struct raft_status *st)
{
    uint64_t until = lab_now_ms() + cluster_ms(c, 10000);
    while (lab_now_ms() < until) {
        for (unsigned i = 0; i < cluster_n(c); i++)
            if (cluster_connected(c, i) && cluster_status(c, i, st) &&
                st->role == RAFT_LEADER && st->term > after_term)
                return i;
        lab_sleep_ms(1);
    }
    cluster_fatal(c, "no new leader after T%llu within 10 s", (unsigned long long)after_term);
}

void lab_check_linearizable(struct cluster *c, struct lincheck_history *h)
{
    struct lincheck_result r;
    int rc = lincheck_check(h, &r);
    printf("  history: %zu operations on %zu keys (%zu puts of unknown outcome): %s\n",
           r.n_ops, r.n_keys, r.n_unknown, rc == 0 ? "linearizable" : "NOT linearizable");
    if (rc == -1) {
        lincheck_print_key(h, r.bad_key, stderr);
        cluster_fatal(c, "client history is not linearizable: %s", r.message);
    }
    if (rc != 0)
        cluster_fatal(c, "the linearizability checker gave up (%d): %s", rc, r.message);
}
