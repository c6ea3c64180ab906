/*
 * timeline_page.c - the page of `raft timeline`: one self-contained HTML
 * file (inline SVG, CSS and a few lines of JavaScript; nothing fetched).
 *
 * One vertical line per node, time flowing down. Time is drawn to scale
 * only for short gaps: every event gets its own row, a node's events stay
 * a row apart and a receive sits below its send, while a long quiet spell
 * shrinks to a dashed line saying how long it was. Behind each line a band
 * coloured by term, thick where the node leads. Hovering any arrow or mark
 * shows its trace line (an SVG <title>).
 */
#include "timeline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PG_TOP 70.0
#define PG_LEFT 90.0
#define PG_ROW 13.0      /* between two events of one node */
#define PG_FLIGHT 10.0   /* a receive below its send, at least */
#define PG_MS 0.3        /* px per ms of a gap, up to PG_MAX_GAP */
#define PG_MAX_GAP 30.0
#define PG_QUIET_MS 100.0 /* a gap this long is marked */

struct pg {
    const struct tl_run *run;
    FILE *out;
    double *y;
    double lane_w, width, height;
};

static double pg_x(const struct pg *g, uint32_t node)
{
    return PG_LEFT + g->lane_w * (node + 0.5);
}

static void pg_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", out);
        else if (*s == '>')
            fputs("&gt;", out);
        else if (*s == '&')
            fputs("&amp;", out);
        else if (*s == '"')
            fputs("&quot;", out);
        else
            fputc(*s, out);
    }
}

static void pg_title(FILE *out, const struct tl_event *e)
{
    fputs("<title>", out);
    pg_escaped(out, e->line);
    fputs("</title>", out);
}

/* Rows: see the top comment. Gaps over PG_QUIET_MS are drawn as marks. */
static void pg_layout(struct pg *g)
{
    const struct tl_run *run = g->run;
    double y = PG_TOP, node_y[RAFT_MAX_NODES], last_t = -1;
    for (uint32_t k = 0; k < RAFT_MAX_NODES; k++)
        node_y[k] = -1e9;
    for (size_t i = 0; i < run->n; i++) {
        const struct tl_event *e = &run->ev[i];
        g->y[i] = y;
        if (e->hidden)
            continue;
        double dt = last_t < 0 ? 0 : e->t - last_t;
        double gap = dt * PG_MS < PG_MAX_GAP ? dt * PG_MS : PG_MAX_GAP;
        y = y + gap > node_y[e->node] + PG_ROW ? y + gap : node_y[e->node] + PG_ROW;
        if (e->kind == TL_RECV && e->match >= 0 && g->y[e->match] + PG_FLIGHT > y)
            y = g->y[e->match] + PG_FLIGHT;
        g->y[i] = node_y[e->node] = y;
        last_t = e->t;
    }
    g->height = y + 60;
}

static void pg_quiet_marks(const struct pg *g)
{
    double last_t = -1, last_y = 0, t0 = g->run->n ? g->run->ev[0].t : 0;
    for (size_t i = 0; i < g->run->n; i++) {
        const struct tl_event *e = &g->run->ev[i];
        if (e->hidden)
            continue;
        if (last_t >= 0 && e->t - last_t > PG_QUIET_MS) {
            double y = (last_y + g->y[i]) / 2;
            fprintf(g->out, "<line class=\"quiet\" x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" "
                    "y2=\"%.1f\"/><text class=\"quiet\" x=\"4\" y=\"%.1f\">%.0f ms quiet"
                    "</text>\n", PG_LEFT, y, g->width - 10, y, y + 4, e->t - last_t);
        }
        if (last_t < 0 || g->y[i] - last_y > 120 || e->t - last_t > PG_QUIET_MS)
            fprintf(g->out, "<text class=\"axis\" x=\"4\" y=\"%.1f\">+%.1f ms</text>\n",
                    g->y[i] + 4, e->t - t0);
        last_t = e->t;
        last_y = g->y[i];
    }
}

/* A band per stretch of one term on each node; thick while it leads. */
static void pg_bands(const struct pg *g, uint32_t node)
{
    const struct tl_run *run = g->run;
    double from = -1;
    const struct tl_event *state = NULL;
    for (size_t i = 0; i <= run->n; i++) {
        const struct tl_event *e = i < run->n ? &run->ev[i] : NULL;
        if (e && (e->node != node || e->hidden))
            continue;
        double y = e ? g->y[i] : g->height - 40;
        bool changed = !state || !e || e->term != state->term || strcmp(e->role, state->role);
        if (!changed)
            continue;
        if (state) {
            bool leads = !strcmp(state->role, "leader");
            double half = leads ? 9 : 5;
            fprintf(g->out, "<rect class=\"band%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.0f\" "
                    "height=\"%.1f\" fill=\"hsl(%u,70%%,%u%%)\"><title>n%u: %s in T%llu"
                    "</title></rect>\n", leads ? " leader" : "", pg_x(g, node) - half, from,
                    2 * half, y - from, (unsigned)(state->term * 67 % 360), leads ? 55 : 82,
                    node, state->role, (unsigned long long)state->term);
        }
        if (e && (!state || e->term != state->term))
            fprintf(g->out, "<text class=\"term\" x=\"%.1f\" y=\"%.1f\">T%llu</text>\n",
                    pg_x(g, node) - 30, y + 12, (unsigned long long)e->term);
        state = e;
        from = y;
    }
}

static const char *pg_msg_class(const struct tl_event *s)
{
    if (!strncmp(s->type, "RequestVote", 11))
        return s->pre_vote ? "prevote" : "vote";
    if (!strcmp(s->type, "AppendEntries"))
        return s->entries > 0 ? "entries" : "heartbeat";
    if (!strcmp(s->type, "AppendEntriesReply"))
        return s->ok ? "aereply" : "aefail";
    if (!strncmp(s->type, "InstallSnapshot", 15))
        return "snapshot";
    return "timeoutnow";
}

/* Returns how many arrows it drew. */
static size_t pg_arrows(const struct pg *g)
{
    size_t drawn = 0;
    for (size_t i = 0; i < g->run->n; i++) {
        const struct tl_event *s = &g->run->ev[i];
        if (s->kind != TL_SEND || s->hidden)
            continue;
        double x1 = pg_x(g, s->node), x2 = pg_x(g, s->to), y1 = g->y[i];
        const char *cls = pg_msg_class(s);
        bool reply = strstr(s->type, "Reply") != NULL;
        if (s->match < 0) { /* never received: a stub towards its target, crossed */
            double xe = x1 + (x2 > x1 ? 40 : -40);
            fprintf(g->out, "<g class=\"lost\">");
            pg_title(g->out, s);
            fprintf(g->out, "<line class=\"%s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                    "y2=\"%.1f\"/><text x=\"%.1f\" y=\"%.1f\">&#x2715;</text></g>\n",
                    cls, x1, y1, xe, y1 + 6, xe - 4, y1 + 10);
            continue;
        }
        double y2 = g->y[s->match];
        fprintf(g->out, "<g class=\"msg\" data-id=\"%s\" data-type=\"%s\">", s->id, s->type);
        pg_title(g->out, s);
        fprintf(g->out, "<line class=\"%s%s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                "y2=\"%.1f\" marker-end=\"url(#head-%s)\"/>", cls, reply ? " reply" : "",
                x1, y1, x2, y2, cls);
        const char *label = s->entries > 0 ? "entries" : NULL;
        if (!strcmp(s->type, "RequestVoteReply"))
            label = s->ok ? "&#x2713;" : "&#x2717;";
        if (label && s->entries > 0)
            fprintf(g->out, "<text class=\"lbl\" x=\"%.1f\" y=\"%.1f\">+%ld</text>",
                    (x1 + x2) / 2, (y1 + y2) / 2 - 3, s->entries);
        else if (label)
            fprintf(g->out, "<text class=\"lbl %s\" x=\"%.1f\" y=\"%.1f\">%s</text>",
                    s->ok ? "yes" : "no", (x1 + x2) / 2, (y1 + y2) / 2 - 3, label);
        fputs("</g>\n", g->out);
        drawn++;
    }
    return drawn;
}

static void pg_marks(const struct pg *g)
{
    for (size_t i = 0; i < g->run->n; i++) {
        const struct tl_event *e = &g->run->ev[i];
        double x = pg_x(g, e->node), y = g->y[i];
        if (e->kind == TL_SEND || e->kind == TL_RECV)
            continue;
        fprintf(g->out, "<g class=\"mark %s\">",
                e->kind == TL_ROLE ? "role" : e->kind == TL_COMMIT ? "commit" : "apply");
        pg_title(g->out, e);
        if (e->kind == TL_ROLE)
            fprintf(g->out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\"/><text x=\"%.1f\" "
                    "y=\"%.1f\">%s%s T%llu</text>", x, y, x + 12, y + 4, e->was[0] ? "" : "start: ",
                    e->role, (unsigned long long)e->term);
        else if (e->kind == TL_COMMIT)
            fprintf(g->out, "<path d=\"M%.1f %.1fl6 6l-6 6l-6 -6z\"/><text x=\"%.1f\" "
                    "y=\"%.1f\">commit %ld</text>", x, y - 6, x - 12, y + 4, e->commit);
        else
            fprintf(g->out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"9\" height=\"9\"/><text "
                    "x=\"%.1f\" y=\"%.1f\">applied %ld%s</text>", x - 4.5, y - 4.5, x - 12,
                    y + 4, e->to_index, e->from_index < e->to_index ? " (and before)" : "");
        fputs("</g>\n", g->out);
    }
}

static const char pg_style[] =
    "body{font:13px system-ui,sans-serif;margin:12px;color:#222}"
    "h1{font-size:18px;margin:0 0 6px}#summary{margin:4px 0}"
    ".legend span{display:inline-block;margin-right:14px}"
    ".legend i{display:inline-block;width:26px;height:0;border-top:3px solid;"
    "vertical-align:middle;margin-right:4px}"
    "svg text{font-size:11px;fill:#333}text.node{font-size:15px;font-weight:bold}"
    "text.axis{fill:#777;font-size:10px}text.quiet{fill:#999;font-size:10px}"
    "text.term{fill:#555;font-size:10px;text-anchor:end}"
    "line.lane{stroke:#444;stroke-width:1}line.quiet{stroke:#ccc;stroke-dasharray:4 4}"
    "g.msg line,g.lost line{stroke-width:1.6}.reply{stroke-dasharray:5 3}"
    ".prevote{stroke:#b07cd8}.vote{stroke:#6a2fa8}.entries{stroke:#1f6fd1;stroke-width:2.6!important}"
    ".heartbeat{stroke:#a3acb6}.aereply{stroke:#5b8fd0}.aefail{stroke:#d33}"
    ".snapshot{stroke:#2e9e5b}.timeoutnow{stroke:#e0731c}"
    "g.msg:hover line{stroke-width:4!important}text.lbl{text-anchor:middle;font-weight:bold}"
    "text.yes{fill:#1a8a3a}text.no{fill:#d33}g.lost text{fill:#d33;font-weight:bold}"
    "g.role circle{fill:#fff;stroke:#000;stroke-width:2}g.role text{font-weight:bold}"
    "g.commit path{fill:#e8a400}g.commit text,g.apply text{text-anchor:end}"
    "g.apply rect{fill:#2e9e5b}rect.band{opacity:.9}";

static const char *pg_heads[] = {"prevote", "vote", "entries", "heartbeat", "aereply",
                                 "aefail", "snapshot", "timeoutnow"};
static const char *pg_head_colours[] = {"#b07cd8", "#6a2fa8", "#1f6fd1", "#a3acb6",
                                        "#5b8fd0", "#d33", "#2e9e5b", "#e0731c"};

static void pg_head(const struct pg *g, size_t visible)
{
    const struct tl_run *run = g->run;
    fprintf(g->out, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            "<title>raft timeline</title><style>%s</style></head><body>\n"
            "<h1>raft timeline: %u nodes, %zu events</h1>\n", pg_style, run->n_nodes, run->n);
    fprintf(g->out, "<p id=\"summary\" data-nodes=\"%u\" data-matched=\"%zu\" "
            "data-drawn=\"%zu\" data-thinned=\"%zu\">%zu messages matched send to receive; "
            "<span id=\"rendered\">%zu</span> arrows drawn", run->n_nodes, run->matched,
            visible, run->thinned, run->matched, visible);
    if (run->thinned)
        fprintf(g->out, "; <b>%zu idle heartbeats (and their replies) left out</b>: one in "
                "every %u drawn", run->thinned, run->thin_every);
    fprintf(g->out, ". Time flows down; long quiet spells are shortened and say how long "
            "they were. Hover an arrow or a mark for its trace line.</p>\n<p class=\"legend\">"
            "<span><i style=\"border-color:#b07cd8\"></i>pre-vote</span>"
            "<span><i style=\"border-color:#6a2fa8\"></i>RequestVote</span>"
            "<span><i style=\"border-color:#1f6fd1\"></i>AppendEntries with entries (+n)</span>"
            "<span><i style=\"border-color:#a3acb6\"></i>heartbeat</span>"
            "<span><i style=\"border-color:#5b8fd0;border-top-style:dashed\"></i>reply "
            "(dashed; red: refused)</span>"
            "<span><i style=\"border-color:#2e9e5b\"></i>InstallSnapshot</span>"
            "<span><i style=\"border-color:#e0731c\"></i>TimeoutNow</span>"
            "<span>&#x25CB; role change &#x25C6; commit &#x25A0; apply &#x2715; lost</span>"
            "<span>band: term (colour), thick while leader</span> "
            "<button id=\"zin\">zoom +</button> <button id=\"zout\">zoom &#x2212;</button></p>\n");
}

static void pg_svg_open(const struct pg *g)
{
    fprintf(g->out, "<svg id=\"run\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
            "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\"><defs>", g->width, g->height, g->width,
            g->height);
    for (size_t i = 0; i < sizeof(pg_heads) / sizeof(pg_heads[0]); i++)
        fprintf(g->out, "<marker id=\"head-%s\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" "
                "markerUnits=\"userSpaceOnUse\" markerWidth=\"9\" markerHeight=\"9\" orient=\"auto\"><path d=\"M0 0L10 5L0 "
                "10z\" fill=\"%s\"/></marker>", pg_heads[i], pg_head_colours[i]);
    fputs("</defs>\n", g->out);
    for (uint32_t k = 0; k < g->run->n_nodes; k++) {
        double x = pg_x(g, k);
        fprintf(g->out, "<text class=\"node\" x=\"%.1f\" y=\"30\" text-anchor=\"middle\">n%u"
                "</text><text class=\"node\" x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">n%u"
                "</text><line class=\"lane\" x1=\"%.1f\" y1=\"40\" x2=\"%.1f\" y2=\"%.0f\"/>\n",
                x, k, x, g->height - 8, k, x, x, g->height - 30);
    }
}

/* The page counts the arrows the browser really has, so that a headless
 * browser's DOM says whether they all rendered; and zooms. */
static const char pg_script[] =
    "<script>(function(){var n=document.querySelectorAll('svg g.msg').length;"
    "var s=document.getElementById('summary');s.setAttribute('data-rendered',n);"
    "document.getElementById('rendered').textContent=n;"
    "var svg=document.getElementById('run'),w=+svg.getAttribute('width'),"
    "h=+svg.getAttribute('height'),z=1;function set(){svg.setAttribute('width',w*z);"
    "svg.setAttribute('height',h*z);}"
    "document.getElementById('zin').onclick=function(){z*=1.25;set();};"
    "document.getElementById('zout').onclick=function(){z/=1.25;set();};})();</script>\n";

int timeline_write_page(const struct tl_run *run, FILE *out)
{
    struct pg g = {.run = run, .out = out, .y = calloc(run->n + 1, sizeof(double))};
    if (!g.y)
        return -ENOMEM;
    g.lane_w = run->n_nodes <= 3 ? 360 : 1080.0 / run->n_nodes;
    if (g.lane_w < 150)
        g.lane_w = 150;
    g.width = PG_LEFT + g.lane_w * run->n_nodes + 20;
    pg_layout(&g);
    size_t visible = run->matched - run->thinned;
    pg_head(&g, visible);
    pg_svg_open(&g);
    pg_quiet_marks(&g);
    for (uint32_t k = 0; k < run->n_nodes; k++)
        pg_bands(&g, k);
    size_t drawn = pg_arrows(&g);
    pg_marks(&g);
    fputs("</svg>\n", out);
    fputs(pg_script, out);
    fputs("</body></html>\n", out);
    free(g.y);
    if (drawn != visible)
        fprintf(stderr, "raft timeline: drew %zu arrows for %zu messages\n", drawn, visible);
    return ferror(out) ? -EIO : 0;
}
