/*
 * lab_traces.c - every lab test traces its nodes (raft/trace.h: each
 * message sent and received, role changes, commits, applies) into a
 * directory of its own, <build>/lab-traces/<suite>-<test>-<seed>/, one
 * node-I.jsonl per node, a restarted node appending to its file. A test
 * that passes deletes its directory; one that fails keeps it, and its
 * report says where it is and the `raft timeline` command that draws it.
 * A failure that happens once in fifty runs is then drawn from that very
 * run, with no replay that might not fail again.
 *
 *   RAFT_TRACE=keep    keep the traces of passing tests too (to draw a run
 *                      that worked); RAFT_TRACE=off: write none
 *   RAFT_TRACE_DIR=D   put the tests' directories in D instead
 *
 * <build> is the directory above the test binary's (build/ for
 * build/tests/lab_election), so a sanitizer build keeps its own.
 */
#include "tests/support/cluster_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Cuts path after its last '/' (the slash too); false if it has none. */
static bool strip_last(char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash)
        return false;
    *slash = '\0';
    return true;
}

/* The test binary's path, as the kernel knows it; "" if it cannot tell. */
static void own_path(char *out, size_t cap)
{
    ssize_t k = readlink("/proc/self/exe", out, cap - 1);
    out[k > 0 ? k : 0] = '\0';
}

/* path as a student would type it from here: relative when it is below the
 * working directory. */
static void shown_path(const char *path, char *out, size_t cap)
{
    char cwd[512];
    size_t k = getcwd(cwd, sizeof(cwd)) ? strlen(cwd) : 0;
    bool below = k > 0 && strncmp(path, cwd, k) == 0 && path[k] == '/';
    snprintf(out, cap, "%s", below ? path + k + 1 : path);
}

/* The test's description as a file name: "Leader backs up, quickly" ->
 * "leader-backs-up-quickly". */
static void slug(const char *desc, char *out, size_t cap)
{
    size_t k = 0;
    for (const char *p = desc; *p && k + 1 < cap; p++) {
        char ch = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
            out[k++] = ch;
        else if (k > 0 && out[k - 1] != '-')
            out[k++] = '-';
    }
    while (k > 0 && out[k - 1] == '-')
        k--;
    out[k] = '\0';
}

/* mkdir -p; 0 or -errno. */
static int make_dirs(const char *path)
{
    char p[512];
    snprintf(p, sizeof(p), "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    return mkdir(p, 0777) == 0 || errno == EEXIST ? 0 : -errno;
}

/* Removes node-I.jsonl for every I, then the directory if it is empty. */
static void remove_traces(const char *dir, bool and_dir)
{
    for (unsigned i = 0; i < RAFT_MAX_NODES; i++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/node-%u.jsonl", dir, i);
        unlink(path);
    }
    if (and_dir)
        rmdir(dir);
}

/* RAFT_TRACE: true and *keep set, or exits 2 on a value it does not take. */
static bool trace_setting(bool *keep)
{
    const char *v = getenv("RAFT_TRACE");
    *keep = v && strcmp(v, "keep") == 0;
    if (!v || !*v || *keep)
        return true;
    if (strcmp(v, "off") == 0)
        return false;
    fprintf(stderr, "RAFT_TRACE takes keep (keep every test's traces) or off (write none); "
                    "got \"%s\".\n", v);
    exit(2);
}

void lab_traces_begin(struct cluster *c)
{
    c->trace_dir[0] = '\0';
    c->traces_off = !trace_setting(&c->keep_traces);
    if (c->traces_off)
        return;
    char exe[512], build[512], base[512], name[96];
    own_path(exe, sizeof(exe));
    snprintf(build, sizeof(build), "%s", exe);
    if (!strip_last(build) || !strip_last(build))
        snprintf(build, sizeof(build), "build");
    const char *env = getenv("RAFT_TRACE_DIR");
    snprintf(base, sizeof(base), "%s", env && *env ? env : build);
    if (!(env && *env))
        strncat(base, "/lab-traces", sizeof(base) - strlen(base) - 1);
    const char *suite = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : "lab";
    slug(c->desc, name, sizeof(name));
    char dir[512];
    int k = snprintf(dir, sizeof(dir), "%s/%.60s-%.60s-%llu", base, suite, name,
                     (unsigned long long)c->seed);
    int rc = k > 0 && (size_t)k < sizeof(dir) ? make_dirs(dir) : -ENAMETOOLONG;
    if (rc) {
        fprintf(stderr, "  (no traces for this test: cannot create %s: %s)\n", dir,
                strerror(-rc));
        return;
    }
    remove_traces(dir, false); /* a replay of the same seed replaces them */
    shown_path(dir, c->trace_dir, sizeof(c->trace_dir));
    char bin[600];
    snprintf(bin, sizeof(bin), "%s/raft", build);
    shown_path(bin, c->raft_bin, sizeof(c->raft_bin));
}

/* Named when first asked for: nodes that join later get theirs too. */
const char *lab_trace_path(struct cluster *c, unsigned i)
{
    if (!c->trace_dir[0])
        return NULL;
    snprintf(c->slots[i].trace_path, sizeof(c->slots[i].trace_path), "%s/node-%u.jsonl",
             c->trace_dir, i);
    return c->slots[i].trace_path;
}

void lab_traces_describe(struct cluster *c, const char *note, char *buf, size_t cap)
{
    if (!c->trace_dir[0]) {
        snprintf(buf, cap, "    (no traces: %s)\n", c->traces_off ? "RAFT_TRACE=off"
                                                                   : "no directory for them");
        return;
    }
    snprintf(buf, cap, "    trace: %s/node-I.jsonl, I = 0..%u%s\n"
             "    draw it: %s timeline --out %s/run.html %s/node-*.jsonl\n", c->trace_dir,
             c->n - 1, note, c->raft_bin,
             c->trace_dir, c->trace_dir);
}

void lab_traces_end(struct cluster *c)
{
    char where[LAB_TRACES_TEXT];
    lab_traces_describe(c, "", where, sizeof(where));
    bool passed = c->ended && !atomic_load(&c->failed);
    if (!passed && !atomic_load(&c->failed)) {
        /* No report was printed (a cmocka assertion in the test itself, or
         * a test that ends without cluster_end): say here what it would. */
        fprintf(stderr, "=== \"%s\" (%s) did not pass; seed %llu: replay with RAFT_SEED=%llu\n"
                "%s", c->desc, c->part, (unsigned long long)c->seed,
                (unsigned long long)c->seed, where);
    } else if (passed && c->trace_dir[0] && !c->keep_traces) {
        remove_traces(c->trace_dir, true);
    } else if (passed && c->trace_dir[0]) {
        printf("%s", where);
        fflush(stdout);
    }
}
