/*
 * unit_rules.c - the rules of Figure 2 one at a time, with no network and
 * no timing: the in-memory log, the vote rule, the commit rule (Figure 8),
 * and a single node's answers to hand-made RPCs.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "raft/node.h"

/* ---- the in-memory log ---- */

static void append_terms(struct raft_log *l, const uint64_t *terms, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(log_append(l, terms[i], RAFT_ENTRY_COMMAND, (const uint8_t *)"x", 1), 0);
}

static void test_log_append_and_term_lookup(void **state)
{
    (void)state;
    struct raft_log l;
    log_init(&l);
    assert_int_equal(log_last_index(&l), 0);
    assert_int_equal(log_term_at(&l, 0), 0);
    append_terms(&l, (uint64_t[]){1, 1, 2, 3, 3}, 5);
    assert_int_equal(log_last_index(&l), 5);
    assert_int_equal(log_last_term(&l), 3);
    assert_int_equal(log_term_at(&l, 3), 2);
    assert_int_equal(log_term_at(&l, 6), 0); /* beyond the end */
    assert_int_equal(log_first_index_of_term(&l, 5), 4);
    assert_int_equal(log_first_index_of_term(&l, 2), 1);
    assert_int_equal(log_last_index_of_term(&l, 1), 2);
    assert_int_equal(log_last_index_of_term(&l, 4), 0);
    log_free(&l);
}

static void test_log_truncation_removes_the_suffix_only(void **state)
{
    (void)state;
    struct raft_log l;
    log_init(&l);
    append_terms(&l, (uint64_t[]){1, 1, 2, 2}, 4);
    log_truncate(&l, 3);
    assert_int_equal(log_last_index(&l), 2);
    assert_int_equal(log_last_term(&l), 1);
    log_truncate(&l, 9); /* nothing there: no change */
    assert_int_equal(log_last_index(&l), 2);
    log_free(&l);
}

static void test_log_compaction_keeps_indices(void **state)
{
    (void)state;
    struct raft_log l;
    log_init(&l);
    append_terms(&l, (uint64_t[]){1, 1, 2, 2, 3}, 5);
    log_compact(&l, 3, 2);
    assert_int_equal(l.base_index, 3);
    assert_int_equal(log_last_index(&l), 5);
    assert_null(log_get(&l, 3));
    assert_int_equal(log_term_at(&l, 3), 2); /* the base term is still known */
    assert_int_equal(log_term_at(&l, 4), 2);
    assert_int_equal(log_first_index_of_term(&l, 4), 4); /* not below the base */
    log_compact(&l, 9, 4); /* a snapshot past the end empties the log */
    assert_int_equal(log_last_index(&l), 9);
    assert_int_equal(log_last_term(&l), 4);
    log_free(&l);
}

/* ---- the vote rule (§5.4.1) ---- */

static void test_vote_rule_compares_last_term_then_length(void **state)
{
    (void)state;
    /* mine: last term 3 at index 5 */
    assert_true(election_log_up_to_date(3, 5, 3, 5));  /* equal */
    assert_true(election_log_up_to_date(3, 5, 3, 6));  /* same term, longer */
    assert_false(election_log_up_to_date(3, 5, 3, 4)); /* same term, shorter */
    assert_true(election_log_up_to_date(3, 5, 4, 1));  /* later term beats length */
    assert_false(election_log_up_to_date(3, 5, 2, 99)); /* "no cheating: not length only" */
}

/* ---- the commit rule (Figure 8) ---- */

static void test_quorum_index_is_the_majority_match(void **state)
{
    (void)state;
    assert_int_equal(commit_quorum_index((uint64_t[]){5, 3, 9}, 3), 5);
    assert_int_equal(commit_quorum_index((uint64_t[]){1, 7, 7, 2, 9}, 5), 7);
    assert_int_equal(commit_quorum_index((uint64_t[]){4}, 1), 4);
    assert_int_equal(commit_quorum_index((uint64_t[]){0, 0, 8, 8}, 4), 0); /* 2 of 4 is no majority */
}

static void test_figure8_no_commit_by_counting_older_term_replicas(void **state)
{
    (void)state;
    /* Figure 8 (c): S1 leads in term 4; entry 2 of term 2 is on a majority.
     * Counting replicas must not commit it... */
    assert_int_equal(commit_next_index(1, 2, 2, 4), 1);
    /* ...(e): once an entry of term 4 is on a majority, both commit. */
    assert_int_equal(commit_next_index(1, 3, 4, 4), 3);
    /* commitIndex never goes back */
    assert_int_equal(commit_next_index(5, 3, 4, 4), 5);
}

/* ---- one node's answers ---- */

struct fake {
    uint64_t term;
    int32_t vote;
    unsigned term_vote_saves;
    unsigned truncates;
    uint64_t stored_last;
    unsigned misplaced_appends; /* storage contract: first == stored last + 1 */
};

static struct fake fake;

/* The fake network refuses every call, unless a test holds the calls at the
 * gate: then they wait until it opens and get the answers it was given, as
 * late replies do, while the test changes the node's term meanwhile. */
static struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool holding;  /* new calls wait at the gate */
    bool open;     /* waiting calls return the answers below */
    unsigned held; /* calls waiting now */
    struct raft_msg vote_answer, append_answer;
} gate = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static int fake_call(void *ctx, uint32_t peer, const struct raft_msg *req,
                     struct raft_msg *reply, unsigned timeout_ms)
{
    (void)ctx, (void)timeout_ms;
    pthread_mutex_lock(&gate.mu);
    if (!gate.holding) {
        pthread_mutex_unlock(&gate.mu);
        return -ECONNREFUSED;
    }
    gate.held++;
    pthread_cond_broadcast(&gate.cond);
    while (!gate.open)
        pthread_cond_wait(&gate.cond, &gate.mu);
    gate.held--;
    *reply = req->type == RAFT_MSG_REQUEST_VOTE ? gate.vote_answer : gate.append_answer;
    reply->from = peer;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.mu);
    return 0;
}

static void gate_hold(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.holding = true;
    gate.open = false;
    pthread_mutex_unlock(&gate.mu);
}

/* Waits (up to 2 s) until `count` calls wait at the gate. */
static void gate_wait_held(unsigned count)
{
    pthread_mutex_lock(&gate.mu);
    for (int i = 0; i < 200 && gate.held != count; i++) {
        pthread_mutex_unlock(&gate.mu);
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
        pthread_mutex_lock(&gate.mu);
    }
    unsigned held = gate.held;
    pthread_mutex_unlock(&gate.mu);
    assert_int_equal(held, count);
}

/* Lets the waiting calls return their answers; later calls are refused. */
static void gate_open(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.holding = false;
    gate.open = true;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.mu);
}

static int fake_load(void *ctx, struct raft_persisted *out)
{
    (void)ctx;
    memset(out, 0, sizeof(*out));
    out->voted_for = RAFT_NO_NODE;
    return 0;
}

static int fake_save(void *ctx, uint64_t term, int32_t vote)
{
    (void)ctx;
    fake.term = term;
    fake.vote = vote;
    fake.term_vote_saves++;
    return 0;
}

static int fake_append(void *ctx, uint64_t first, const struct raft_entry *e, size_t n)
{
    (void)ctx, (void)e;
    if (first != fake.stored_last + 1)
        fake.misplaced_appends++;
    fake.stored_last = first + n - 1;
    return 0;
}

static int fake_truncate(void *ctx, uint64_t from)
{
    (void)ctx;
    fake.truncates++;
    fake.stored_last = from - 1;
    return 0;
}

static int fake_save_snapshot(void *ctx, uint64_t i, uint64_t t, const uint8_t *d, size_t l)
{
    (void)ctx, (void)i, (void)t, (void)d, (void)l;
    return 0;
}

static void fsm_apply(void *ctx, uint64_t index, const struct raft_entry *e)
{
    (void)ctx, (void)index, (void)e;
}

static int fsm_snapshot(void *ctx, uint8_t **data, size_t *len)
{
    (void)ctx;
    *data = NULL;
    *len = 0;
    return 0;
}

static int fsm_restore(void *ctx, uint64_t index, const uint8_t *data, size_t len)
{
    (void)ctx, (void)index, (void)data, (void)len;
    return 0;
}

/* A node of a 3-node cluster, just started, whose timer never fires
 * during a test. */
static int start_node(void **state)
{
    memset(&fake, 0, sizeof(fake));
    struct raft_config cfg;
    raft_config_defaults(&cfg, 0, 3);
    cfg.election_timeout_min_ms = cfg.election_timeout_max_ms = 600000;
    cfg.log_level = RAFT_LOG_ERROR;
    struct raft_transport t = {.call = fake_call};
    struct raft_storage s = {.load = fake_load, .save_term_vote = fake_save,
                             .append = fake_append, .truncate = fake_truncate,
                             .save_snapshot = fake_save_snapshot};
    struct raft_fsm f = {.apply = fsm_apply, .snapshot = fsm_snapshot, .restore = fsm_restore};
    struct raft_node *n;
    assert_int_equal(raft_start(&n, &cfg, &t, &s, &f), 0);
    *state = n;
    return 0;
}

/* The same, as if it had started long ago: no longer in the quiet time
 * after a start in which it votes for nobody (election.c). */
static int start_follower(void **state)
{
    start_node(state);
    struct raft_node *n = *state;
    pthread_mutex_lock(&n->mu);
    n->last_leader_contact_ms = 0;
    node_unlock(n);
    return 0;
}

static int stop_node(void **state)
{
    gate_open(); /* no replicator may stay blocked at the gate */
    raft_stop(*state);
    return 0;
}

static struct raft_msg vote_request(uint32_t from, uint64_t term, uint64_t last_index,
                                    uint64_t last_term)
{
    struct raft_msg m = {.type = RAFT_MSG_REQUEST_VOTE, .from = from};
    m.u.rv = (struct raft_request_vote){.term = term, .last_log_index = last_index,
                                        .last_log_term = last_term};
    return m;
}

static struct raft_entry entries_buf[8];

static struct raft_msg append_request(uint64_t term, uint64_t prev, uint64_t prev_term,
                                      uint64_t commit, const uint64_t *terms, uint32_t n)
{
    struct raft_msg m = {.type = RAFT_MSG_APPEND_ENTRIES, .from = 1};
    for (uint32_t i = 0; i < n; i++)
        entries_buf[i] = (struct raft_entry){.term = terms[i], .type = RAFT_ENTRY_COMMAND,
                                             .len = 1, .data = (uint8_t *)"y"};
    m.u.ae = (struct raft_append_entries){.term = term, .prev_log_index = prev,
                                          .prev_log_term = prev_term, .leader_commit = commit,
                                          .n_entries = n, .entries = entries_buf};
    return m;
}

static void test_vote_granted_once_per_term_and_persisted_first(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg req = vote_request(1, 5, 0, 0), reply;
    assert_int_equal(raft_receive(n, &req, &reply), 0);
    assert_true(reply.u.rv_reply.vote_granted);
    assert_int_equal(reply.u.rv_reply.term, 5);
    /* Figure 2: the vote reached storage before the answer. */
    assert_int_equal(fake.term, 5);
    assert_int_equal(fake.vote, 1);
    req = vote_request(2, 5, 0, 0);
    assert_int_equal(raft_receive(n, &req, &reply), 0);
    assert_false(reply.u.rv_reply.vote_granted); /* already voted for n1 in T5 */
    req = vote_request(1, 5, 0, 0);
    assert_int_equal(raft_receive(n, &req, &reply), 0);
    assert_true(reply.u.rv_reply.vote_granted); /* the same candidate may ask again */
}

/* Thesis §6.4.1: a node that just started may have answered a leader's
 * heartbeat before it went down, without remembering it, and that leader
 * may be serving reads on a lease that counts on it. So for the minimum
 * election timeout after its start it helps elect nobody. */
static void test_node_votes_for_nobody_right_after_start(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg req = vote_request(1, 5, 0, 0), reply;
    req.u.rv.pre_vote = 1;
    assert_int_equal(raft_receive(n, &req, &reply), 0);
    assert_false(reply.u.rv_reply.vote_granted);
    req.u.rv.pre_vote = 0;
    assert_int_equal(raft_receive(n, &req, &reply), 0);
    assert_false(reply.u.rv_reply.vote_granted);
    assert_int_equal(fake.term, 0); /* nothing stored: no term, no vote */
    /* Once the timeout has passed since the start, it votes. */
    pthread_mutex_lock(&n->mu);
    n->last_leader_contact_ms = 0;
    node_unlock(n);
    assert_int_equal(raft_receive(n, &req, &reply), 0);
    assert_true(reply.u.rv_reply.vote_granted);
    assert_int_equal(fake.vote, 1);
}

static void test_vote_denied_to_an_older_term_or_staler_log(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    struct raft_msg ae = append_request(3, 0, 0, 0, (uint64_t[]){3, 3}, 2);
    assert_int_equal(raft_receive(n, &ae, &rep), 0);
    assert_true(rep.u.ae_reply.success);
    struct raft_msg req = vote_request(2, 2, 9, 2); /* older term */
    assert_int_equal(raft_receive(n, &req, &rep), 0);
    assert_false(rep.u.rv_reply.vote_granted);
    assert_int_equal(rep.u.rv_reply.term, 3);
    /* Wait out the §4.2.3 lease, then a longer log of an older last term is refused. */
    pthread_mutex_lock(&n->mu);
    n->last_leader_contact_ms = 0;
    n->leader_id = RAFT_NO_NODE;
    node_unlock(n);
    req = vote_request(2, 4, 9, 2);
    assert_int_equal(raft_receive(n, &req, &rep), 0);
    assert_false(rep.u.rv_reply.vote_granted);
    assert_int_equal(rep.u.rv_reply.term, 4); /* but it adopted the newer term */
}

static void test_heartbeat_is_a_consistency_check(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    /* An empty AppendEntries whose prevLogIndex the follower lacks fails. */
    struct raft_msg hb = append_request(1, 3, 1, 3, NULL, 0);
    assert_int_equal(raft_receive(n, &hb, &rep), 0);
    assert_false(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.conflict_term, 0);
    assert_int_equal(rep.u.ae_reply.conflict_index, 1);
    struct raft_status st;
    raft_get_status(n, &st);
    assert_int_equal(st.commit, 0); /* and it must not move the commit index */
}

static void test_matching_entries_are_never_truncated(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    struct raft_msg ae = append_request(1, 0, 0, 0, (uint64_t[]){1, 1, 1}, 3);
    assert_int_equal(raft_receive(n, &ae, &rep), 0);
    /* A delayed, shorter copy of an earlier AppendEntries arrives. */
    ae = append_request(1, 0, 0, 0, (uint64_t[]){1}, 1);
    assert_int_equal(raft_receive(n, &ae, &rep), 0);
    assert_true(rep.u.ae_reply.success);
    struct raft_status st;
    raft_get_status(n, &st);
    assert_int_equal(st.last_index, 3);
    assert_int_equal(fake.truncates, 0);
}

static void test_conflict_truncates_and_reports_the_term(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    struct raft_msg ae = append_request(2, 0, 0, 0, (uint64_t[]){1, 2, 2, 2}, 4);
    assert_int_equal(raft_receive(n, &ae, &rep), 0);
    /* A leader of term 3 whose entry 3 has term 3: the follower reports the
     * conflicting term 2 and its first index 2 (fast backup). */
    ae = append_request(3, 3, 3, 0, NULL, 0);
    assert_int_equal(raft_receive(n, &ae, &rep), 0);
    assert_false(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.conflict_term, 2);
    assert_int_equal(rep.u.ae_reply.conflict_index, 2);
    ae = append_request(3, 1, 1, 0, (uint64_t[]){3}, 1);
    assert_int_equal(raft_receive(n, &ae, &rep), 0);
    assert_true(rep.u.ae_reply.success);
    struct raft_status st;
    raft_get_status(n, &st);
    assert_int_equal(st.last_index, 2);
    assert_int_equal(fake.truncates, 1);
    assert_int_equal(fake.stored_last, 2);
}

static void test_follower_commit_is_capped_by_the_last_new_entry(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    struct raft_msg ae = append_request(1, 0, 0, 0, (uint64_t[]){1, 1, 1, 1, 1}, 5);
    assert_int_equal(raft_receive(n, &ae, &rep), 0);
    /* The leader says commit 9 but only sends up to entry 2: commit = 2,
     * not the end of the follower's (possibly stale) log. */
    ae = append_request(1, 1, 1, 9, (uint64_t[]){1}, 1);
    assert_int_equal(raft_receive(n, &ae, &rep), 0);
    struct raft_status st;
    raft_get_status(n, &st);
    assert_int_equal(st.commit, 2);
}

/* A leader's followers committed (and it applied) entries its own disk
 * write had not covered yet, then it was deposed (thesis §10.2.1). As a
 * follower it writes the committed ones and drops only the rest: its log
 * never ends below its commit index. */
static void test_deposed_leader_keeps_committed_unwritten_entries(void **state)
{
    struct raft_node *n = *state;
    pthread_mutex_lock(&n->mu);
    n->current_term = 1;
    for (int i = 0; i < 3; i++)
        assert_int_equal(log_append(&n->log, 1, RAFT_ENTRY_COMMAND, (const uint8_t *)"z", 1), 0);
    n->durable_index = 0; /* nothing written yet; the syncer was not woken */
    n->commit_index = n->last_applied = 2;
    node_unlock(n);

    struct raft_msg rep, hb = append_request(2, 0, 0, 0, NULL, 0);
    assert_int_equal(raft_receive(n, &hb, &rep), 0);
    assert_true(rep.u.ae_reply.success);
    struct raft_status st;
    raft_get_status(n, &st);
    assert_int_equal(st.last_index, 2); /* entry 3 was never acknowledged */
    assert_int_equal(st.commit, 2);
    assert_int_equal(fake.stored_last, 2); /* written before answering */
    assert_int_equal(fake.misplaced_appends, 0);
}

/* Deposed with entries 1..2 on disk, 3 not yet, and only 1 committed: what
 * is on disk stays in the log, so the next append goes where storage ends. */
static void test_deposed_leader_keeps_what_its_disk_holds(void **state)
{
    struct raft_node *n = *state;
    pthread_mutex_lock(&n->mu);
    n->current_term = 1;
    for (int i = 0; i < 3; i++)
        assert_int_equal(log_append(&n->log, 1, RAFT_ENTRY_COMMAND, (const uint8_t *)"z", 1), 0);
    n->durable_index = fake.stored_last = 2;
    n->commit_index = n->last_applied = 1;
    node_unlock(n);

    struct raft_msg rep, hb = append_request(2, 0, 0, 0, NULL, 0);
    assert_int_equal(raft_receive(n, &hb, &rep), 0);
    struct raft_status st;
    raft_get_status(n, &st);
    assert_int_equal(st.last_index, 2);
    struct raft_msg ae = append_request(2, 1, 1, 0, (uint64_t[]){2}, 1);
    assert_int_equal(raft_receive(n, &ae, &rep), 0);
    assert_true(rep.u.ae_reply.success);
    assert_int_equal(fake.stored_last, 2);
    assert_int_equal(fake.truncates, 1); /* its entry 2@T1 gave way to 2@T2 */
    assert_int_equal(fake.misplaced_appends, 0);
}

/* A leader deposed by the very AppendEntries it receives settles its log
 * before the consistency check: its unwritten entry 2 is not "matched". */
static void test_leader_deposed_by_append_settles_first(void **state)
{
    struct raft_node *n = *state;
    pthread_mutex_lock(&n->mu);
    n->current_term = 1;
    for (int i = 0; i < 2; i++)
        assert_int_equal(log_append(&n->log, 1, RAFT_ENTRY_COMMAND, (const uint8_t *)"z", 1), 0);
    n->durable_index = fake.stored_last = 1;
    n->role = RAFT_LEADER; /* its syncer has not been woken for entry 2 */
    n->leader_id = 0;
    n->voted_for = 0; /* a leader voted for itself */
    node_unlock(n);

    struct raft_msg rep, ae = append_request(2, 2, 1, 0, (uint64_t[]){2}, 1);
    assert_int_equal(raft_receive(n, &ae, &rep), 0);
    assert_false(rep.u.ae_reply.success); /* entry 2 was never stored */
    struct raft_status st;
    raft_get_status(n, &st);
    assert_int_equal(st.role, RAFT_FOLLOWER);
    assert_int_equal(st.last_index, 1);
    assert_int_equal(fake.stored_last, 1);
    assert_int_equal(fake.misplaced_appends, 0);
}

/* LABS: "drop a reply if currentTerm differs from the term it was sent in".
 * A candidate of T1 asks both peers; before they answer, it has moved on to
 * an election for T2. Their grants are for T1 and must not make it leader
 * of T2. */
static void test_vote_reply_from_an_older_term_is_not_counted(void **state)
{
    struct raft_node *n = *state;
    gate.vote_answer = (struct raft_msg){.type = RAFT_MSG_REQUEST_VOTE_REPLY};
    gate.vote_answer.u.rv_reply = (struct raft_request_vote_reply){.term = 1, .vote_granted = 1};
    gate_hold();
    pthread_mutex_lock(&n->mu);
    n->current_term = 1;
    n->voted_for = 0;
    n->role = RAFT_CANDIDATE;
    n->votes = 1u << 0;
    n->peers[1].vote_needed = n->peers[2].vote_needed = true;
    pthread_cond_broadcast(&n->peers_cond);
    node_unlock(n);
    gate_wait_held(2);

    pthread_mutex_lock(&n->mu);
    n->current_term = 2; /* its next election, with only its own vote so far */
    n->votes = 1u << 0;
    node_unlock(n);
    gate_open();
    gate_wait_held(0);
    nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL); /* replies handled */
    struct raft_status st;
    raft_get_status(n, &st);
    assert_int_equal(st.term, 2);
    assert_int_equal(st.role, RAFT_CANDIDATE);
}

/* A leader of T1 sends AppendEntries; before the answers come back it has
 * been deposed and elected again, for T3. Success for the T1 requests says
 * nothing about its T3 log: matchIndex must not move. */
static void test_append_reply_from_an_older_term_is_ignored(void **state)
{
    struct raft_node *n = *state;
    gate.append_answer = (struct raft_msg){.type = RAFT_MSG_APPEND_ENTRIES_REPLY};
    gate.append_answer.u.ae_reply = (struct raft_append_entries_reply){.term = 1, .success = 1};
    gate_hold();
    pthread_mutex_lock(&n->mu);
    n->current_term = 1;
    n->voted_for = 0;
    n->role = RAFT_LEADER;
    n->leader_id = 0;
    replication_become_leader_locked(n); /* sends its no-op to both peers */
    node_unlock(n);
    gate_wait_held(2);

    pthread_mutex_lock(&n->mu);
    n->current_term = 3;
    replication_become_leader_locked(n);
    node_unlock(n);
    gate_open();
    gate_wait_held(0);
    nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL); /* replies handled */
    pthread_mutex_lock(&n->mu);
    uint64_t m1 = n->peers[1].match_index, m2 = n->peers[2].match_index;
    node_unlock(n);
    assert_int_equal(m1, 0);
    assert_int_equal(m2, 0);
}

static void test_stale_term_append_is_refused(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg rep;
    struct raft_msg req = vote_request(2, 4, 0, 0);
    assert_int_equal(raft_receive(n, &req, &rep), 0);
    struct raft_msg ae = append_request(3, 0, 0, 0, (uint64_t[]){3}, 1);
    assert_int_equal(raft_receive(n, &ae, &rep), 0);
    assert_false(rep.u.ae_reply.success);
    assert_int_equal(rep.u.ae_reply.term, 4);
}

static void test_unknown_sender_is_refused(void **state)
{
    struct raft_node *n = *state;
    struct raft_msg req = vote_request(7, 1, 0, 0), rep;
    assert_int_equal(raft_receive(n, &req, &rep), -EINVAL);
    req = vote_request(0, 1, 0, 0); /* itself */
    assert_int_equal(raft_receive(n, &req, &rep), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_append_and_term_lookup),
        cmocka_unit_test(test_log_truncation_removes_the_suffix_only),
        cmocka_unit_test(test_log_compaction_keeps_indices),
        cmocka_unit_test(test_vote_rule_compares_last_term_then_length),
        cmocka_unit_test(test_quorum_index_is_the_majority_match),
        cmocka_unit_test(test_figure8_no_commit_by_counting_older_term_replicas),
        cmocka_unit_test_setup_teardown(test_vote_granted_once_per_term_and_persisted_first,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_node_votes_for_nobody_right_after_start,
                                        start_node, stop_node),
        cmocka_unit_test_setup_teardown(test_vote_denied_to_an_older_term_or_staler_log,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_heartbeat_is_a_consistency_check,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_matching_entries_are_never_truncated,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_conflict_truncates_and_reports_the_term,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_follower_commit_is_capped_by_the_last_new_entry,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_deposed_leader_keeps_committed_unwritten_entries,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_deposed_leader_keeps_what_its_disk_holds,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_leader_deposed_by_append_settles_first,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_vote_reply_from_an_older_term_is_not_counted,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_append_reply_from_an_older_term_is_ignored,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_stale_term_append_is_refused,
                                        start_follower, stop_node),
        cmocka_unit_test_setup_teardown(test_unknown_sender_is_refused,
                                        start_follower, stop_node),
    };
    return cmocka_run_group_tests_name("unit: Raft rules", tests, NULL, NULL);
}
