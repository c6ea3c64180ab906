/*
 * timeline.c - `raft timeline [--out FILE.html] [--shiviz FILE] TRACE...`:
 * reads the traces of a run (one JSON object a line, raft/trace.h), puts
 * every event of every node in one order, pairs each receive with its send
 * by message id, and writes the picture (timeline_page.c) and, if asked,
 * a ShiViz log whose vector clocks are computed from those pairs.
 *
 * The reader knows only the traces' own shape: flat objects whose one
 * nested object is "msg". A line it cannot read is counted and skipped.
 */
#include "timeline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* At most this many heartbeats (and their replies) are drawn; beyond it,
 * one in every k, so that a long idle run stays readable. */
#define TL_MAX_HEARTBEATS 160

/* ---- reading one line ---- */

/* Copies the value of "key" at the outer level of the object that starts
 * at obj (a string without its quotes). Returns false if it is absent. */
static bool json_get(const char *obj, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    int depth = 0;
    for (const char *p = obj; *p; p++) {
        if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        } else if (*p == '"') {
            const char *s = p + 1, *e = s;
            while (*e && *e != '"')
                e += (*e == '\\' && e[1]) ? 2 : 1;
            if (!*e)
                return false;
            p = e;
            if (depth != 1 || e[1] != ':' || (size_t)(e - s) != klen || memcmp(s, key, klen))
                continue;
            const char *v = e + 2, *end = v;
            if (*v == '"') {
                v++;
                for (end = v; *end && *end != '"'; end++)
                    ;
            } else if (*v == '{') {
                for (int d = 0; *end; end++) {
                    d += *end == '{' ? 1 : *end == '}' ? -1 : 0;
                    if (d == 0) {
                        end++;
                        break;
                    }
                }
            } else {
                while (*end && *end != ',' && *end != '}')
                    end++;
            }
            size_t len = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return true;
        }
    }
    return false;
}

static long json_long(const char *obj, const char *key, long dflt)
{
    char v[32];
    return json_get(obj, key, v, sizeof(v)) ? strtol(v, NULL, 10) : dflt;
}

static bool json_true(const char *obj, const char *key)
{
    char v[8];
    return json_get(obj, key, v, sizeof(v)) && strcmp(v, "true") == 0;
}

static enum tl_kind tl_kind_of(const char *ev, bool *known)
{
    static const char *names[] = {"send", "recv", "role", "commit", "apply"};
    *known = true;
    for (int k = 0; k < 5; k++)
        if (!strcmp(ev, names[k]))
            return (enum tl_kind)k;
    *known = false;
    return TL_ROLE;
}

static void tl_read_msg(struct tl_event *e)
{
    char msg[512];
    if (!json_get(e->line, "msg", msg, sizeof(msg)))
        return;
    json_get(msg, "id", e->id, sizeof(e->id));
    json_get(msg, "type", e->type, sizeof(e->type));
    e->from = (uint32_t)json_long(msg, "from", 0);
    e->to = (uint32_t)json_long(msg, "to", 0);
    e->entries = json_long(msg, "entries", -1);
    e->commit = json_long(msg, "commit", -1);
    e->ok = json_true(msg, "granted") || json_true(msg, "success");
    e->pre_vote = json_true(msg, "pre_vote");
}

/* Fills e from line (which it keeps); false if the line is no event. */
static bool tl_parse(char *line, struct tl_event *e)
{
    char v[40];
    bool known;
    *e = (struct tl_event){.line = line, .match = -1, .reply_to = -1, .entries = -1,
                           .commit = -1};
    if (!json_get(line, "t", v, sizeof(v)))
        return false;
    e->t = strtod(v, NULL);
    if (!json_get(line, "ev", v, sizeof(v)))
        return false;
    e->kind = tl_kind_of(v, &known);
    if (!known)
        return false;
    e->node = (uint32_t)json_long(line, "node", 0);
    e->term = (uint64_t)json_long(line, "term", 0);
    json_get(line, "role", e->role, sizeof(e->role));
    json_get(line, "was", e->was, sizeof(e->was));
    if (e->kind == TL_COMMIT)
        e->commit = json_long(line, "index", 0);
    e->from_index = json_long(line, "from", 0);
    e->to_index = json_long(line, "to", 0);
    if (e->kind == TL_SEND || e->kind == TL_RECV) {
        tl_read_msg(e);
        if (!e->id[0])
            return false;
    }
    return e->node < RAFT_MAX_NODES;
}

static int tl_read_file(struct tl_run *run, const char *path, size_t file)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t cap = 0, seq = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (run->n == run->cap) {
            size_t ncap = run->cap ? run->cap * 2 : 1024;
            struct tl_event *ev = realloc(run->ev, ncap * sizeof(*ev));
            if (!ev) {
                rc = -ENOMEM;
                break;
            }
            run->ev = ev;
            run->cap = ncap;
        }
        char *copy = strdup(line);
        if (!copy) {
            rc = -ENOMEM;
            break;
        }
        copy[strcspn(copy, "\n")] = '\0';
        struct tl_event *e = &run->ev[run->n];
        if (!tl_parse(copy, e)) {
            free(copy);
            run->skipped++;
            continue;
        }
        e->file = file;
        e->seq = seq++;
        if (e->node + 1 > run->n_nodes)
            run->n_nodes = e->node + 1;
        run->n++;
    }
    free(line);
    fclose(f);
    return rc;
}

/* ---- one order, and the pairs ---- */

static int tl_by_time(const void *a, const void *b)
{
    const struct tl_event *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static const struct tl_run *tl_sort_run; /* for tl_by_id: qsort takes no context */

static int tl_by_id(const void *a, const void *b)
{
    const struct tl_event *x = &tl_sort_run->ev[*(const size_t *)a];
    const struct tl_event *y = &tl_sort_run->ev[*(const size_t *)b];
    return strcmp(x->id, y->id);
}

/* Each recv gets the send of the same id, requests and replies alike. Ids
 * are unique across a node's restarts (a new boot numbers its own, see
 * raft/trace.h); a message delivered twice pairs only its first recv. */
static int tl_match(struct tl_run *run)
{
    size_t *sends = malloc((run->n + 1) * sizeof(*sends)), n = 0;
    if (!sends)
        return -ENOMEM;
    for (size_t i = 0; i < run->n; i++)
        if (run->ev[i].kind == TL_SEND)
            sends[n++] = i;
    tl_sort_run = run;
    qsort(sends, n, sizeof(*sends), tl_by_id);
    for (size_t i = 0; i < run->n; i++) {
        struct tl_event *e = &run->ev[i];
        if (e->kind != TL_RECV)
            continue;
        size_t lo = 0, hi = n;
        while (lo < hi) { /* the first send whose id is not below e's */
            size_t mid = (lo + hi) / 2;
            if (strcmp(run->ev[sends[mid]].id, e->id) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < n && !strcmp(run->ev[sends[lo]].id, e->id) && run->ev[sends[lo]].match < 0) {
            e->match = (long)sends[lo];
            run->ev[sends[lo]].match = (long)i;
            run->matched++;
        }
    }
    free(sends);
    return 0;
}

static bool tl_is_reply(const char *type)
{
    size_t len = strlen(type);
    return len > 5 && !strcmp(type + len - 5, "Reply");
}

/* A node answers a request in the same step as it receives it, so the
 * reply is the next send to that peer after the recv, on that node. */
static void tl_link_replies(struct tl_run *run)
{
    long last_recv[RAFT_MAX_NODES][RAFT_MAX_NODES];
    memset(last_recv, 0xff, sizeof(last_recv));
    for (size_t i = 0; i < run->n; i++) {
        struct tl_event *e = &run->ev[i];
        if (e->kind == TL_RECV && !tl_is_reply(e->type) && e->from < RAFT_MAX_NODES) {
            last_recv[e->node][e->from] = (long)i;
        } else if (e->kind == TL_SEND && tl_is_reply(e->type) && e->to < RAFT_MAX_NODES) {
            e->reply_to = last_recv[e->node][e->to];
            last_recv[e->node][e->to] = -1;
        }
    }
}

/* A heartbeat: an AppendEntries with no entries that brings no news of
 * the commit index (the previous one to that peer said the same). */
static size_t tl_mark_heartbeats(struct tl_run *run, bool *hb)
{
    long said[RAFT_MAX_NODES][RAFT_MAX_NODES];
    memset(said, 0xff, sizeof(said));
    size_t count = 0;
    for (size_t i = 0; i < run->n; i++) {
        struct tl_event *e = &run->ev[i];
        hb[i] = false;
        if (e->kind != TL_SEND || strcmp(e->type, "AppendEntries") || e->to >= RAFT_MAX_NODES)
            continue;
        hb[i] = e->entries == 0 && said[e->node][e->to] == e->commit;
        said[e->node][e->to] = e->commit;
        count += hb[i];
    }
    return count;
}

static void tl_hide_message(struct tl_run *run, long send)
{
    if (send < 0 || run->ev[send].match < 0)
        return;
    run->ev[send].hidden = run->ev[run->ev[send].match].hidden = true;
    run->thinned++;
}

static int tl_thin(struct tl_run *run)
{
    bool *hb = calloc(run->n + 1, sizeof(*hb));
    if (!hb)
        return -ENOMEM;
    size_t count = tl_mark_heartbeats(run, hb);
    run->thin_every = count > TL_MAX_HEARTBEATS
                          ? (unsigned)((count + TL_MAX_HEARTBEATS - 1) / TL_MAX_HEARTBEATS) : 1;
    size_t k = 0;
    for (size_t i = 0; i < run->n && run->thin_every > 1; i++) {
        if (!hb[i] || k++ % run->thin_every == 0 || run->ev[i].match < 0)
            continue;
        tl_hide_message(run, (long)i);
        for (size_t j = i + 1; j < run->n; j++) { /* and its reply */
            struct tl_event *r = &run->ev[j];
            if (r->kind == TL_SEND && r->reply_to == run->ev[i].match) {
                tl_hide_message(run, (long)j);
                break;
            }
        }
    }
    free(hb);
    return 0;
}

/* ---- ShiViz ---- */

static void tl_describe(const struct tl_event *e, char *buf, size_t cap)
{
    switch (e->kind) {
    case TL_SEND:
        snprintf(buf, cap, "send %s%s to n%u (id %s%s)", e->pre_vote ? "pre-vote " : "",
                 e->type, e->to, e->id, e->entries > 0 ? ", with entries" : "");
        return;
    case TL_RECV:
        snprintf(buf, cap, "recv %s%s from n%u (id %s)", e->pre_vote ? "pre-vote " : "",
                 e->type, e->from, e->id);
        return;
    case TL_ROLE:
        if (e->was[0])
            snprintf(buf, cap, "%s in T%llu (was %s)", e->role, (unsigned long long)e->term,
                     e->was);
        else
            snprintf(buf, cap, "starts as %s in T%llu", e->role, (unsigned long long)e->term);
        return;
    case TL_COMMIT:
        snprintf(buf, cap, "commit %ld", e->commit);
        return;
    case TL_APPLY:
        snprintf(buf, cap, "applied %ld..%ld", e->from_index, e->to_index);
        return;
    }
}

static void tl_put_clock(FILE *out, const struct tl_event *e, const uint64_t *vc, uint32_t n)
{
    fprintf(out, "n%u {", e->node);
    const char *sep = "";
    for (uint32_t k = 0; k < n; k++) {
        if (!vc[k])
            continue;
        fprintf(out, "%s\"n%u\":%llu", sep, k, (unsigned long long)vc[k]);
        sep = ", ";
    }
    char what[160];
    tl_describe(e, what, sizeof(what));
    fprintf(out, "}\n%s\n", what);
}

/* The next event of some node that may go now: its own earlier events are
 * out, and a recv waits for its send. With none (a send missing from the
 * traces' order), the earliest head goes anyway. */
static long tl_next_causal(const struct tl_run *run, const size_t *pos, size_t *const *lists,
                           const size_t *lens, const bool *done, uint32_t *node)
{
    long best = -1, any = -1;
    for (uint32_t k = 0; k < run->n_nodes; k++) {
        if (pos[k] == lens[k])
            continue;
        long i = (long)lists[k][pos[k]];
        const struct tl_event *e = &run->ev[i];
        if (any < 0 || e->t < run->ev[any].t)
            any = i;
        bool waits = e->kind == TL_RECV && e->match >= 0 && !done[e->match];
        if (!waits && (best < 0 || e->t < run->ev[best].t))
            best = i;
    }
    if (best < 0)
        best = any;
    if (best >= 0)
        *node = run->ev[best].node;
    return best;
}

static int tl_write_shiviz(const struct tl_run *run, FILE *out)
{
    uint64_t (*vc)[RAFT_MAX_NODES] = calloc(run->n + 1, sizeof(*vc));
    bool *done = calloc(run->n + 1, sizeof(*done));
    size_t *lists[RAFT_MAX_NODES] = {0}, lens[RAFT_MAX_NODES] = {0}, pos[RAFT_MAX_NODES] = {0};
    int rc = vc && done ? 0 : -ENOMEM;
    for (uint32_t k = 0; k < run->n_nodes && rc == 0; k++)
        if (!(lists[k] = malloc((run->n + 1) * sizeof(size_t))))
            rc = -ENOMEM;
    /* Each node's own order is its trace's: the array is sorted by time,
     * and a node writes its lines in time order. */
    for (size_t i = 0; i < run->n && rc == 0; i++)
        lists[run->ev[i].node][lens[run->ev[i].node]++] = i;
    uint64_t cur[RAFT_MAX_NODES][RAFT_MAX_NODES] = {{0}};
    fprintf(out, "(?<host>\\S*) (?<clock>{.*})\\n(?<event>.*)\n\n");
    uint32_t node;
    long i;
    while (rc == 0 && (i = tl_next_causal(run, pos, lists, lens, done, &node)) >= 0) {
        const struct tl_event *e = &run->ev[i];
        pos[node]++;
        cur[node][node]++; /* a host's own component counts its own events */
        if (e->kind == TL_RECV && e->match >= 0 && done[e->match])
            for (uint32_t k = 0; k < run->n_nodes; k++)
                if (vc[e->match][k] > cur[node][k] && k != node)
                    cur[node][k] = vc[e->match][k];
        memcpy(vc[i], cur[node], sizeof(vc[i]));
        done[i] = true;
        tl_put_clock(out, e, vc[i], run->n_nodes);
    }
    for (uint32_t k = 0; k < RAFT_MAX_NODES; k++)
        free(lists[k]);
    free(vc);
    free(done);
    return rc;
}

/* ---- the subcommand ---- */

static void tl_free(struct tl_run *run)
{
    for (size_t i = 0; i < run->n; i++)
        free(run->ev[i].line);
    free(run->ev);
}

static int tl_load(struct tl_run *run, char **paths, int n)
{
    for (int i = 0; i < n; i++) {
        int rc = tl_read_file(run, paths[i], (size_t)i);
        if (rc) {
            fprintf(stderr, "raft timeline: cannot read %s: %s\n", paths[i], strerror(-rc));
            return rc;
        }
    }
    if (run->n == 0) {
        fprintf(stderr, "raft timeline: no trace events in the files given\n");
        return -ENOENT;
    }
    qsort(run->ev, run->n, sizeof(*run->ev), tl_by_time);
    int rc = tl_match(run);
    if (rc == 0) {
        tl_link_replies(run);
        rc = tl_thin(run);
    }
    return rc;
}

static int tl_write_to(const char *path, const struct tl_run *run,
                       int (*write)(const struct tl_run *, FILE *))
{
    FILE *f = fopen(path, "w");
    int rc = f ? write(run, f) : -errno;
    if (f && fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc)
        fprintf(stderr, "raft timeline: cannot write %s: %s\n", path, strerror(-rc));
    return rc;
}

int cmd_timeline(int argc, char **argv)
{
    const char *out = "timeline.html", *shiviz = NULL;
    const struct cli_option opts[] = {
        {.name = "out", .kind = CLI_STRING, .metavar = "FILE.html", .dest = &out,
         .help = "the page to write: one self-contained HTML file",
         .shown_default = "timeline.html"},
        {.name = "shiviz", .kind = CLI_STRING, .metavar = "FILE", .dest = &shiviz,
         .help = "also write the run as a ShiViz log, with vector clocks"},
    };
    const struct cli_command cmd = {
        .name = "timeline", .synopsis = "[options] TRACE...",
        .summary = "Draws the traces of a run (raft node --trace, raft cluster --trace-dir) "
                   "as a space-time diagram: one line per node, an arrow per message.",
        .options = opts, .n_options = sizeof(opts) / sizeof(opts[0])};
    struct cli_words w;
    int rc = cli_parse(&cmd, argc, argv, &w);
    if (rc == 0 && w.n == 0)
        rc = cli_usage_error(cmd.name, "needs at least one trace file");
    if (rc)
        return cli_exit_code(rc);
    struct tl_run run = {0};
    rc = tl_load(&run, w.v, w.n);
    if (rc == 0)
        rc = tl_write_to(out, &run, timeline_write_page);
    if (rc == 0 && shiviz)
        rc = tl_write_to(shiviz, &run, tl_write_shiviz);
    if (rc == 0)
        printf("%zu events of %u nodes, %zu messages matched (%zu heartbeats left out); "
               "wrote %s%s%s\n", run.n, run.n_nodes, run.matched, run.thinned, out,
               shiviz ? " and " : "", shiviz ? shiviz : "");
    tl_free(&run);
    return rc ? 1 : 0;
}
