/*
 * cluster_report.c - what the lab harness prints (see cluster.h): the log
 * rings of the nodes and of the harness, the report of a failed check or of
 * a fatal error, and the handler that names the running test when a fatal
 * signal ends the suite. The life cycle is in cluster.c.
 */
#include "tests/support/cluster_internal.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "raft/membership.h"

/* ---- log rings ---- */

void ring_init(struct ring *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
}

void ring_push(struct ring *r, const char *line)
{
    pthread_mutex_lock(&r->mu);
    snprintf(r->lines[r->next], RING_LINE_MAX, "%s", line);
    r->next = (r->next + 1) % RING_LINES;
    if (r->count < RING_LINES)
        r->count++;
    pthread_mutex_unlock(&r->mu);
}

void ring_print(struct ring *r, const char *title)
{
    pthread_mutex_lock(&r->mu);
    fprintf(stderr, "--- %s (last %u lines)\n", title, r->count);
    for (unsigned k = 0; k < r->count; k++)
        fprintf(stderr, "%s\n", r->lines[(r->next + RING_LINES - r->count + k) % RING_LINES]);
    pthread_mutex_unlock(&r->mu);
}

void lab_log_line(void *ctx, uint32_t node, enum raft_log_level level, const char *line)
{
    (void)level;
    struct slot *s = ctx;
    ring_push(&s->ring, line);
    if (s->c->verbose)
        raft_print_log_line(node, line);
}

static void vnote(struct cluster *c, int node, const char *fmt, va_list ap)
{
    char msg[200], line[RING_LINE_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    snprintf(line, sizeof(line), "%7.3f  harness: %s", raft_uptime(), msg);
    ring_push(&c->events, line);
    if (node >= 0)
        ring_push(&c->slots[node].ring, line);
    if (c->verbose)
        fprintf(stderr, "%s\n", line);
}

void cluster_note(struct cluster *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(c, -1, fmt, ap);
    va_end(ap);
}

void cluster_note_node(struct cluster *c, unsigned i, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(c, (int)i, fmt, ap);
    va_end(ap);
}

/* ---- failures ---- */

static void print_rings_locked(struct cluster *c, uint32_t nodes)
{
    ring_print(&c->events, "harness steps");
    for (unsigned i = 0; i < c->n; i++)
        if (nodes & (1u << i)) {
            char title[32];
            snprintf(title, sizeof(title), "n%u log", i);
            ring_print(&c->slots[i].ring, title);
        }
}

static void print_header_locked(struct cluster *c, const char *what, const char *msg)
{
    fflush(stdout);
    fprintf(stderr, "\n=== %s in \"%s\" (%s), %.1f s in: %s\n", what, c->desc, c->part,
            (lab_now_ms() - c->t0_ms) / 1000.0, msg);
    fprintf(stderr, "    seed %llu: replay with RAFT_SEED=%llu\n",
            (unsigned long long)c->seed, (unsigned long long)c->seed);
    char traces[LAB_TRACES_TEXT];
    lab_traces_describe(c, " (complete once the test ends)", traces, sizeof(traces));
    fprintf(stderr, "%s", traces);
}

void cluster_violation(struct cluster *c, uint32_t nodes, const char *fmt, ...)
{
    char msg[sizeof(c->fail_msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->fail_mu);
    c->violations++;
    if (!atomic_load(&c->failed)) {
        snprintf(c->fail_msg, sizeof(c->fail_msg), "%s", msg);
        print_header_locked(c, "CHECK FAILED", msg);
        print_rings_locked(c, nodes);
        fprintf(stderr, "=== end of report\n");
        atomic_store(&c->failed, true);
    } else if (c->violations <= 10) {
        fprintf(stderr, "=== and also: %s\n", msg);
    }
    pthread_mutex_unlock(&c->fail_mu);
}

/* cmocka's failure unwinds the test thread; any other thread that finds a
 * failure just ends, and the test fails at its next check (it joins its
 * threads first). */
static void fail_here(struct cluster *c, const char *msg) __attribute__((noreturn));

static void fail_here(struct cluster *c, const char *msg)
{
    if (!pthread_equal(pthread_self(), c->test_thread))
        pthread_exit(NULL);
    fail_msg("%s (seed %llu)", msg, (unsigned long long)c->seed);
    abort(); /* fail_msg does not return */
}

void cluster_check(struct cluster *c)
{
    if (atomic_load(&c->failed)) {
        char msg[sizeof(c->fail_msg)];
        pthread_mutex_lock(&c->fail_mu);
        snprintf(msg, sizeof(msg), "%s", c->fail_msg);
        pthread_mutex_unlock(&c->fail_mu);
        fail_here(c, msg);
    }
}

static void print_status_table(struct cluster *c)
{
    fprintf(stderr, "--- nodes\n");
    for (unsigned i = 0; i < c->n; i++) {
        struct raft_status st;
        uint64_t term;
        int32_t vote;
        memstore_term_vote(c->slots[i].store, &term, &vote);
        if (cluster_status(c, i, &st))
            fprintf(stderr, "  n%u  %-13s T%-4llu commit %-5llu applied %-5llu last %-5llu "
                    "snapshot %-5llu %s\n", i, raft_role_name(st.role),
                    (unsigned long long)st.term, (unsigned long long)st.commit,
                    (unsigned long long)st.applied, (unsigned long long)st.last_index,
                    (unsigned long long)st.snapshot_index,
                    simnet_is_connected(c->net, i) ? "connected" : "disconnected");
        else
            fprintf(stderr, "  n%u  crashed (stored T%llu)\n", i, (unsigned long long)term);
        struct raft_membership_view v;
        if (cluster_membership(c, i, &v)) {
            char cfg[160];
            membership_describe(&v.config, cfg, sizeof(cfg));
            fprintf(stderr, "      configuration %s (%s at index %llu)\n", cfg,
                    v.committed ? "committed" : "not committed", (unsigned long long)v.index);
        }
    }
}

void cluster_fatal(struct cluster *c, const char *fmt, ...)
{
    char msg[sizeof(c->fail_msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->fail_mu);
    print_header_locked(c, "FAILED", msg);
    if (atomic_load(&c->failed))
        fprintf(stderr, "    (after an earlier failed check: %s)\n", c->fail_msg);
    pthread_mutex_unlock(&c->fail_mu);
    print_status_table(c); /* takes node locks: not under fail_mu */
    pthread_mutex_lock(&c->fail_mu);
    print_rings_locked(c, (1u << c->n) - 1);
    fprintf(stderr, "=== end of report\n");
    if (!atomic_load(&c->failed)) {
        snprintf(c->fail_msg, sizeof(c->fail_msg), "%s", msg);
        atomic_store(&c->failed, true);
    }
    pthread_mutex_unlock(&c->fail_mu);
    fail_here(c, msg);
}

/* ---- fatal signals ----
 *
 * A crash in any thread (a node's, the network's, the monitor's) ends the
 * whole suite binary; the handler names the test that was running before
 * the process dies. It only write(2)s a buffer cluster_new filled, then
 * restores the default action and re-raises the signal, so the exit status
 * still shows the crash. cmocka 1.1 sets its own handlers for SIGSEGV,
 * SIGBUS, SIGFPE and SIGILL around every test, setup and teardown, and puts
 * back the previous ones after each: cluster_new and cluster_teardown
 * therefore install this one again each time. */

static char fatal_banner[LAB_TRACES_TEXT + 512];
static atomic_size_t fatal_banner_len;
static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

static void write_all(const char *p, size_t len)
{
    while (len) {
        ssize_t k = write(STDERR_FILENO, p, len);
        if (k <= 0)
            return;
        p += k;
        len -= (size_t)k;
    }
}

static void write_str(const char *p)
{
    size_t len = 0;
    while (p[len])
        len++;
    write_all(p, len);
}

static void on_fatal_signal(int sig)
{
    const char *name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS"
                       : sig == SIGFPE ? "SIGFPE" : sig == SIGILL ? "SIGILL"
                       : sig == SIGABRT ? "SIGABRT" : "signal";
    char num[8];
    size_t k = sizeof(num);
    num[--k] = '\0';
    unsigned v = (unsigned)sig;
    do
        num[--k] = (char)('0' + v % 10);
    while ((v /= 10) && k);
    write_str("\n=== FATAL ");
    write_str(name);
    write_str(" (signal ");
    write_str(num + k);
    write_str(") in the test:\n");
    size_t len = atomic_load(&fatal_banner_len);
    if (len)
        write_all(fatal_banner, len);
    else
        write_str("    (no test was running)\n");
    write_str("=== the process dies of it; the tests after this one do not run\n");
    signal(sig, SIG_DFL);
    raise(sig);
}

void fatal_handler_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NODEFER; /* the re-raise takes effect at once */
    for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++)
        sigaction(fatal_signals[i], &sa, NULL);
}

/* What the handler prints: the banner and seed cluster_new printed. */
void fatal_banner_set(struct cluster *c)
{
    atomic_store(&fatal_banner_len, 0);
    char traces[LAB_TRACES_TEXT];
    /* A process that dies loses the lines its nodes had not yet written
     * out (their last 200 ms at most, raft/trace.h). */
    lab_traces_describe(c, " (but for its last lines)", traces, sizeof(traces));
    int k = snprintf(fatal_banner, sizeof(fatal_banner),
                     "    Test (%s): %s\n    seed %llu (replay: RAFT_SEED=%llu)\n%s", c->part,
                     c->desc, (unsigned long long)c->seed, (unsigned long long)c->seed, traces);
    if (k < 0)
        return;
    atomic_store(&fatal_banner_len, (size_t)k < sizeof(fatal_banner) ? (size_t)k
                                                                     : sizeof(fatal_banner) - 1);
}

void fatal_banner_clear(void)
{
    atomic_store(&fatal_banner_len, 0);
}
