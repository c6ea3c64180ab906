/*
 * unit_powerloss.c - a power cut at every persistence point of a workload.
 *
 * The storage runs over the simulated disk of tests/support/simdisk.h,
 * which loses every change not yet synced, or keeps it, or tears it, at a
 * chosen persistence point. Then the node "reboots" on what reached the
 * disk, and we check the durability promises of raft.h (Figure 2: state
 * "updated on stable storage before responding to RPCs"):
 *
 *   - load succeeds (a power cut is not corruption);
 *   - every entry whose append returned 0 is there, with the same bytes;
 *     the log is the acknowledged one, or what the interrupted call could
 *     have left (a prefix of an append batch, a log cut no shorter than a
 *     truncate's target);
 *   - the term never goes back, and the vote of a term never changes: term
 *     and vote are the last saved pair or the one being saved;
 *   - the snapshot is the last saved one or the one being saved, whether
 *     written whole or piece by piece, alone or beside an older one that
 *     it overtakes (which is refused);
 *   - the log goes on: an append after the reboot is found after another.
 *
 * Every crash point of each workload is enumerated, with several seeds;
 * a failure names the workload, the point and the seed.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "raft/storage/storage.h"
#include "tests/support/simdisk.h"

#ifndef SEEDS
#define SEEDS 100 /* per crash point; build with -DSEEDS=N to search longer */
#endif

/* ---- workloads ---- */

/* STREAMED: a snapshot written piece by piece (begin, write, end).
 * OVERTAKEN: two written at once, as a follower does when its leader's
 * snapshot arrives while it writes its own: its own, at c, is begun
 * first; the received one, at a, is written and installed meanwhile;
 * then its own must be refused (-ESTALE) and change nothing. */
enum step_kind { TERM_VOTE, APPEND, TRUNCATE, SNAPSHOT, STREAMED, OVERTAKEN };

struct step {
    enum step_kind kind;
    uint64_t a; /* term | first index | from index | snapshot index */
    int64_t b;  /* vote | count        | -          | snapshot term */
    uint64_t c; /* -    | term         | -          | -, OVERTAKEN: own index */
};

struct workload {
    const char *name;
    size_t segment_size;
    const struct step *steps;
    size_t n_steps;
};

/* Entry data is a function of index and term, so bytes can be checked. */
static uint32_t entry_data(uint64_t index, uint64_t term, uint8_t *buf)
{
    if (index % 6 == 0)
        return 0;
    int n = snprintf((char *)buf, 64, "set k%" PRIu64 " t%" PRIu64 ";", index, term);
    uint32_t len = (uint32_t)n + (uint32_t)(index * 7 % 23);
    for (uint32_t i = (uint32_t)n; i < len; i++)
        buf[i] = (uint8_t)(index + term * 3 + i);
    return len;
}

static uint32_t snapshot_data(uint64_t index, uint8_t *buf)
{
    return (uint32_t)snprintf((char *)buf, 64, "state machine as of %" PRIu64, index);
}

#define MAX_INDEX 64

/* What the storage has acknowledged. */
struct model {
    uint64_t term;
    int32_t vote;
    uint64_t snapshot_index;
    uint64_t snapshot_term;
    uint64_t last;
    uint64_t terms[MAX_INDEX + 1];
};

/* The snapshot of SNAPSHOT, in pieces of 7 bytes. */
static int save_streamed(struct raft_storage *st, uint64_t index, uint64_t term)
{
    uint8_t snap[64];
    uint32_t len = snapshot_data(index, snap);
    void *w;
    int rc = st->begin_snapshot(st->ctx, index, term, &w);
    if (rc)
        return rc;
    for (uint32_t off = 0; off < len && rc == 0; off += 7)
        rc = st->write_snapshot(w, snap + off, len - off < 7 ? len - off : 7);
    int end = st->end_snapshot(st->ctx, w, rc == 0);
    return rc ? rc : end;
}

static int write_pieces(struct raft_storage *st, void *w, uint64_t index, uint32_t from,
                        uint32_t to)
{
    uint8_t snap[64];
    uint32_t len = snapshot_data(index, snap);
    int rc = 0;
    for (uint32_t off = from; off < to && off < len && rc == 0; off += 7)
        rc = st->write_snapshot(w, snap + off, len - off < 7 ? len - off : 7);
    return rc;
}

static int save_overtaken(struct raft_storage *st, uint64_t received, uint64_t term,
                          uint64_t own)
{
    void *mine, *theirs;
    int rc = st->begin_snapshot(st->ctx, own, term, &mine);
    if (rc)
        return rc;
    rc = write_pieces(st, mine, own, 0, 14);
    int begun = rc ? rc : st->begin_snapshot(st->ctx, received, term, &theirs);
    if (begun) {
        st->end_snapshot(st->ctx, mine, false);
        return begun;
    }
    rc = write_pieces(st, theirs, received, 0, 64);
    if (rc == 0)
        rc = write_pieces(st, mine, own, 14, 64);
    int end = st->end_snapshot(st->ctx, theirs, rc == 0);
    rc = rc ? rc : end;
    end = st->end_snapshot(st->ctx, mine, rc == 0);
    if (rc)
        return rc;
    return end == -ESTALE ? 0 : end ? end : -EPROTO; /* installed over a newer one */
}

static int run_step(struct raft_storage *st, const struct step *s)
{
    static uint8_t bufs[16][128];
    struct raft_entry e[16];
    uint8_t snap[64];
    switch (s->kind) {
    case TERM_VOTE:
        return st->save_term_vote(st->ctx, s->a, (int32_t)s->b);
    case TRUNCATE:
        return st->truncate(st->ctx, s->a);
    case SNAPSHOT:
        return st->save_snapshot(st->ctx, s->a, (uint64_t)s->b, snap, snapshot_data(s->a, snap));
    case STREAMED:
        return save_streamed(st, s->a, (uint64_t)s->b);
    case OVERTAKEN:
        return save_overtaken(st, s->a, (uint64_t)s->b, s->c);
    case APPEND:
        assert_true(s->b >= 1 && s->b <= 16);
        for (int64_t i = 0; i < s->b; i++) {
            e[i].term = s->c;
            e[i].type = (s->a + (uint64_t)i) % 4 == 0 ? RAFT_ENTRY_NOOP : RAFT_ENTRY_COMMAND;
            e[i].len = entry_data(s->a + (uint64_t)i, s->c, bufs[i]);
            e[i].data = e[i].len ? bufs[i] : NULL;
        }
        return st->append(st->ctx, s->a, e, (size_t)s->b);
    }
    return -EINVAL;
}

/* The model after a step that returned 0. */
static void apply_step(struct model *m, const struct step *s)
{
    switch (s->kind) {
    case TERM_VOTE:
        m->term = s->a;
        m->vote = (int32_t)s->b;
        break;
    case TRUNCATE:
        if (m->last >= s->a)
            m->last = s->a - 1;
        break;
    case SNAPSHOT:
    case STREAMED:
    case OVERTAKEN:
        m->snapshot_index = s->a;
        m->snapshot_term = (uint64_t)s->b;
        if (m->last < s->a)
            m->last = s->a;
        break;
    case APPEND:
        for (int64_t i = 0; i < s->b; i++)
            m->terms[s->a + (uint64_t)i] = s->c;
        m->last = s->a + (uint64_t)s->b - 1;
        break;
    }
}

/* ---- the checks ---- */

static bool check_entry(const struct raft_persisted *p, uint64_t index, uint64_t term,
                        char *why, size_t size)
{
    const struct raft_entry *e = &p->entries[index - p->snapshot_index - 1];
    uint8_t buf[128];
    uint32_t len = entry_data(index, term, buf);
    if (e->term != term || e->len != len || (len && memcmp(e->data, buf, len) != 0) ||
        e->type != (index % 4 == 0 ? RAFT_ENTRY_NOOP : RAFT_ENTRY_COMMAND)) {
        snprintf(why, size, "entry %" PRIu64 " is not the one written in term %" PRIu64
                 " (found term %" PRIu64 ", %" PRIu32 " bytes)", index, term, e->term, e->len);
        return false;
    }
    return true;
}

/* Is p a state the storage may recover after a crash during `inflight`,
 * given the acknowledged model m? */
static bool recovered_state_ok(const struct raft_persisted *p, const struct model *m,
                               const struct step *inflight, char *why, size_t size)
{
    /* Term and vote: the acknowledged pair, or the one being saved. Either
     * way the term never went back and no vote was taken back. */
    bool tv_new = inflight && inflight->kind == TERM_VOTE && p->term == inflight->a &&
                  p->voted_for == (int32_t)inflight->b;
    if (!tv_new && (p->term != m->term || p->voted_for != m->vote)) {
        snprintf(why, size, "term %" PRIu64 " vote %d, but T%" PRIu64 " vote %d was saved",
                 p->term, p->voted_for, m->term, m->vote);
        return false;
    }
    /* The snapshot: the acknowledged one, or the one being saved. */
    struct model want = *m;
    if (inflight &&
        (inflight->kind == SNAPSHOT || inflight->kind == STREAMED || inflight->kind == OVERTAKEN) &&
        p->snapshot_index == inflight->a)
        apply_step(&want, inflight);
    if (p->snapshot_index != want.snapshot_index || p->snapshot_term != want.snapshot_term) {
        snprintf(why, size, "snapshot %" PRIu64 "@T%" PRIu64 ", expected %" PRIu64 "@T%" PRIu64,
                 p->snapshot_index, p->snapshot_term, want.snapshot_index, want.snapshot_term);
        return false;
    }
    uint8_t snap[64];
    uint32_t snap_len = want.snapshot_index ? snapshot_data(want.snapshot_index, snap) : 0;
    if (p->snapshot_len != snap_len || (snap_len && memcmp(p->snapshot, snap, snap_len) != 0)) {
        snprintf(why, size, "the snapshot's data differs");
        return false;
    }
    /* The log: the acknowledged entries, then what the interrupted call may
     * have left: part of its batch, or a cut no shorter than its target. */
    uint64_t last = p->snapshot_index + p->n_entries;
    uint64_t lo = want.last, hi = want.last;
    if (inflight && inflight->kind == APPEND)
        hi = inflight->a + (uint64_t)inflight->b - 1;
    if (inflight && inflight->kind == TRUNCATE && inflight->a <= want.last)
        lo = inflight->a - 1;
    if (lo < p->snapshot_index)
        lo = p->snapshot_index;
    if (last < lo || last > hi) {
        snprintf(why, size, "the log ends at %" PRIu64 ", expected %" PRIu64 "..%" PRIu64
                 " (acknowledged up to %" PRIu64 ")", last, lo, hi, want.last);
        return false;
    }
    for (uint64_t i = p->snapshot_index + 1; i <= last; i++) {
        uint64_t term = i <= want.last ? want.terms[i] : inflight->c;
        if (!check_entry(p, i, term, why, size))
            return false;
    }
    return true;
}

struct log_sink {
    char text[4096];
};

static void keep_log(void *ctx, enum raft_log_level lvl, const char *msg)
{
    struct log_sink *l = ctx;
    if (lvl > RAFT_LOG_WARN)
        return;
    size_t used = strlen(l->text);
    snprintf(l->text + used, sizeof(l->text) - used, "%s\n", msg);
}

static struct file_storage *open_on(struct sim *s, const struct workload *w, struct log_sink *l)
{
    struct file_storage *fs;
    assert_int_equal(file_storage_open_with_io(&fs, SIM_DIR, keep_log, l, &s->io), 0);
    file_storage_set_segment_size(fs, w->segment_size);
    return fs;
}

/* Runs the workload on a disk that loses power at point crash_at. Returns
 * the number of persistence points it reached (the power stayed on if it
 * is below crash_at). */
/* How often the interesting outcomes happened in a sweep. */
struct sweep_stats {
    int crashes;
    int torn_tails_cut;   /* recovery cut a damaged tail */
    int inflight_visible; /* the interrupted call's effect (part of it) survived */
};

/* load, then the snapshot's bytes, which load checks but leaves in the
 * file, read into p->snapshot. */
static int load_all(const struct raft_storage *st, struct raft_persisted *p)
{
    int rc = st->load(st->ctx, p);
    assert_true(rc != 0 || p->snapshot == NULL);
    if (rc == 0 && p->snapshot_len > 0) {
        p->snapshot = malloc(p->snapshot_len);
        assert_non_null(p->snapshot);
        rc = st->read_snapshot(st->ctx, p->snapshot_index, 0, p->snapshot, p->snapshot_len);
    }
    return rc;
}

static int run_with_crash(const struct workload *w, int crash_at, uint64_t seed,
                          struct sweep_stats *stats)
{
    struct sim *disk = sim_new(seed, crash_at);
    struct log_sink log = { .text = "" };
    struct file_storage *fs = open_on(disk, w, &log);
    struct raft_storage st = file_storage_ops(fs);
    struct model m = { .vote = RAFT_NO_NODE };
    const struct step *inflight = NULL;
    struct raft_persisted p;
    int rc = load_all(&st, &p);
    raft_persisted_free(&p);
    for (size_t i = 0; rc == 0 && i < w->n_steps; i++) {
        rc = run_step(&st, &w->steps[i]);
        if (rc == 0)
            apply_step(&m, &w->steps[i]);
        else
            inflight = &w->steps[i];
    }
    file_storage_close(fs);
    int points = disk->points;
    if (!disk->crashed) {
        if (rc)
            fail_msg("%s: without a crash, a step failed: %s", w->name, strerror(-rc));
        sim_free(disk);
        return points;
    }

    /* The power came back. */
    struct sim *after = sim_reboot(disk);
    sim_free(disk);
    fs = open_on(after, w, &log);
    st = file_storage_ops(fs);
    rc = load_all(&st, &p);
    if (rc)
        fail_msg("%s, crash at point %d, seed %" PRIu64 ": load failed after a power cut: %s",
                 w->name, crash_at, seed, file_storage_error(fs));
    char why[256];
    if (!recovered_state_ok(&p, &m, inflight, why, sizeof(why)))
        fail_msg("%s, crash at point %d, seed %" PRIu64 ": %s\nstorage said:\n%s", w->name,
                 crash_at, seed, why, log.text);
    stats->crashes++;
    if (strstr(log.text, "torn write"))
        stats->torn_tails_cut++;
    if (!recovered_state_ok(&p, &m, NULL, why, sizeof(why)))
        stats->inflight_visible++;

    /* The log goes on where it ends, and a second restart agrees. */
    uint64_t next = p.snapshot_index + p.n_entries + 1;
    uint64_t term = p.term > 0 ? p.term : 1;
    struct step more = { .kind = APPEND, .a = next, .b = 2, .c = term };
    assert_int_equal(run_step(&st, &more), 0);
    struct model m2 = { .term = p.term, .vote = p.voted_for, .snapshot_index = p.snapshot_index,
                        .snapshot_term = p.snapshot_term, .last = next - 1 };
    for (uint64_t i = p.snapshot_index + 1; i < next; i++)
        m2.terms[i] = p.entries[i - p.snapshot_index - 1].term;
    apply_step(&m2, &more);
    raft_persisted_free(&p);
    file_storage_close(fs);
    fs = open_on(after, w, &log);
    st = file_storage_ops(fs);
    assert_int_equal(load_all(&st, &p), 0);
    if (!recovered_state_ok(&p, &m2, NULL, why, sizeof(why)))
        fail_msg("%s, crash at point %d, seed %" PRIu64 ", after the reboot's append: %s",
                 w->name, crash_at, seed, why);
    raft_persisted_free(&p);
    file_storage_close(fs);
    sim_free(after);
    return points;
}

static void sweep(const struct workload *w)
{
    struct sweep_stats stats = { 0, 0, 0 };
    int total = run_with_crash(w, 0, 1, &stats);
    assert_true(total > 10);
    for (int k = 1; k <= total; k++)
        for (uint64_t seed = 1; seed <= SEEDS; seed++)
            run_with_crash(w, k, seed * 1000003 + (uint64_t)k, &stats);
    print_message("%s: %d persistence points x %d seeds: %d crashes recovered, %d torn tails "
                  "cut, %d with part of the interrupted call kept\n", w->name, total, SEEDS,
                  stats.crashes, stats.torn_tails_cut, stats.inflight_visible);
    /* The sweep exercised what it is for. */
    assert_int_equal(stats.crashes, total * SEEDS);
    assert_true(stats.torn_tails_cut > 0);
    assert_true(stats.inflight_visible > 0);
}

/* Elections, a conflicting suffix replaced, compaction, an installed
 * snapshot beyond the log, over segments so small that most appends start
 * a new one. */
static const struct step mixed_steps[] = {
    { TERM_VOTE, 1, 0, 0 },
    { APPEND, 1, 3, 1 },
    { APPEND, 4, 1, 1 },
    { TERM_VOTE, 2, RAFT_NO_NODE, 0 },
    { TERM_VOTE, 2, 1, 0 },
    { TRUNCATE, 3, 0, 0 },
    { APPEND, 3, 4, 2 },      /* 3..6 */
    { SNAPSHOT, 4, 2, 0 },
    { APPEND, 7, 3, 2 },      /* 7..9 */
    { TRUNCATE, 8, 0, 0 },
    { TERM_VOTE, 3, 2, 0 },
    { APPEND, 8, 3, 3 },      /* 8..10 */
    { APPEND, 11, 5, 3 },     /* 11..15 */
    { APPEND, 16, 2, 3 },
    { APPEND, 18, 2, 3 },
    { APPEND, 20, 2, 3 },     /* 16..21, one segment per append */
    { TERM_VOTE, 4, 0, 0 },
    { TRUNCATE, 14, 0, 0 },   /* three whole segments and part of a fourth */
    { APPEND, 14, 3, 4 },     /* 14..16 */
    { SNAPSHOT, 30, 4, 0 },   /* installed: beyond the end of the log */
    { APPEND, 31, 2, 4 },
    { TERM_VOTE, 5, RAFT_NO_NODE, 0 },
    { TRUNCATE, 32, 0, 0 },
    { APPEND, 32, 2, 5 },
    { STREAMED, 32, 5, 0 },   /* keeps 33 */
    { APPEND, 34, 1, 5 },
    { OVERTAKEN, 36, 5, 34 }, /* beyond the log, over its own at 34 */
    { APPEND, 37, 2, 5 },
};

/* The same kinds of steps in one large segment: tears land between and
 * inside the records of multi-entry batches, after earlier batches. */
static const struct step one_segment_steps[] = {
    { TERM_VOTE, 1, RAFT_NO_NODE, 0 },
    { TERM_VOTE, 1, 0, 0 },
    { APPEND, 1, 5, 1 },
    { APPEND, 6, 6, 1 },
    { APPEND, 12, 1, 1 },
    { TERM_VOTE, 2, 2, 0 },
    { TRUNCATE, 9, 0, 0 },
    { APPEND, 9, 8, 2 },
    { STREAMED, 10, 2, 0 },
    { OVERTAKEN, 14, 2, 12 },
    { APPEND, 17, 4, 2 },
    { TRUNCATE, 19, 0, 0 },
    { TERM_VOTE, 3, 1, 0 },
    { APPEND, 19, 7, 3 },
};

static void test_power_cut_at_every_point_small_segments(void **state)
{
    (void)state;
    const struct workload w = { "small segments", 96, mixed_steps,
                                sizeof(mixed_steps) / sizeof(mixed_steps[0]) };
    sweep(&w);
}

static void test_power_cut_at_every_point_one_segment(void **state)
{
    (void)state;
    const struct workload w = { "one segment", 1 << 20, one_segment_steps,
                                sizeof(one_segment_steps) / sizeof(one_segment_steps[0]) };
    sweep(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_power_cut_at_every_point_small_segments),
        cmocka_unit_test(test_power_cut_at_every_point_one_segment),
    };
    return cmocka_run_group_tests_name("unit_powerloss", tests, NULL, NULL);
}
