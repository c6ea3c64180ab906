/*
 * timeline.h - `raft timeline`: reads node traces (raft/trace.h) and draws
 * them as one self-contained HTML page (timeline_page.c), or writes them
 * as a ShiViz log with vector clocks (timeline.c).
 */
#ifndef TIMELINE_H
#define TIMELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "raft/raft.h"

enum tl_kind { TL_SEND, TL_RECV, TL_ROLE, TL_COMMIT, TL_APPLY };

/* One line of a trace. */
struct tl_event {
    double t;          /* wall-clock ms */
    uint32_t node;
    uint64_t term;
    char role[16];
    enum tl_kind kind;
    char *line;        /* the line as read, for hover text */
    size_t file, seq;  /* which trace and which line of it: the node's own order */
    /* messages */
    char id[40];
    char type[24];
    uint32_t from, to;
    long entries;      /* AppendEntries: entries carried (-1 otherwise) */
    long commit;       /* AppendEntries: leaderCommit; commit event: the index */
    bool ok;           /* granted / success */
    bool pre_vote;
    char was[16];      /* role event: the role before ("" on a node's first line) */
    long from_index, to_index; /* apply */
    long match;        /* the other end of a message (index into the array), -1 if none */
    long reply_to;     /* a reply: the request it answers, on its sender's side */
    bool hidden;       /* thinned out of the picture (heartbeats) */
    double y;          /* position on the page */
};

struct tl_run {
    struct tl_event *ev; /* sorted by time */
    size_t n, cap;
    uint32_t n_nodes;    /* 1 + the highest node id seen */
    size_t matched;      /* messages whose send and recv are both here */
    size_t thinned;      /* of those, heartbeats left out of the picture */
    unsigned thin_every; /* 1: none left out */
    size_t skipped;      /* lines that were not trace events */
};

/* The page; returns 0 or -errno. */
int timeline_write_page(const struct tl_run *run, FILE *out);

/* The `raft timeline` subcommand. */
int cmd_timeline(int argc, char **argv);

#endif
