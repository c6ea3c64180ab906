/*
 * cli.h - the option tables of the `raft` subcommands, parsed with
 * getopt_long, and the one format of every usage error:
 *
 *   raft node: --id must be 0-2, the position of this node in --peers; got 7
 *   see raft node --help
 *
 * `--opt=value` and `--opt value` both work, options may come before,
 * between and after the words (a client's `put K V`), and `--` ends the
 * options so that a word may start with dashes.
 */
#ifndef CLI_H
#define CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "raft/raft.h"

#define CLI_EXIT_USAGE 2
#define CLI_MAX_OPTIONS 16
#define CLI_MAX_WORDS 16 /* raft timeline: a trace per node, and some */

enum cli_kind {
    CLI_FLAG,   /* bool *: set when given; takes no value */
    CLI_LONG,   /* long *: an integer within [lo, hi] */
    CLI_DOUBLE, /* double *: a number within [lo, hi] */
    CLI_STRING, /* const char **: any non-empty text */
    CLI_RANGE,  /* struct cli_range *: "MIN-MAX", lo <= MIN <= MAX <= hi */
    CLI_LEVEL,  /* int *: a raft_log_level by name, in any case */
};

struct cli_range {
    long min, max;
};

struct cli_option {
    const char *name;    /* the long name, without "--" */
    enum cli_kind kind;
    const char *metavar; /* the value's placeholder in --help: "N", "DIR" */
    const char *help;    /* what it means, a phrase */
    /* What a value must be, for errors; NULL: said from kind and bounds. */
    const char *accepts;
    /* The default in --help; NULL: printed from *dest for numbers and
     * ranges, none for the other kinds. */
    const char *shown_default;
    bool required;
    double lo, hi;
    void *dest;
};

struct cli_words;

struct cli_command {
    const char *name;     /* "node" */
    const char *synopsis; /* what follows "usage: raft node " */
    const char *summary;  /* one sentence under the synopsis */
    const struct cli_option *options;
    size_t n_options;
    /* Once the first word is seen, an argument with one dash ("-5") is a
     * word too, not an option: a client's values may be negative numbers. */
    bool dash_words;
    /* Prints --help given the words before it (`raft client member add
     * --help`); NULL: cli_help. */
    void (*help)(const struct cli_command *cmd, const struct cli_words *words, FILE *out);
};

/* The arguments that are not options, in order. */
struct cli_words {
    char *v[CLI_MAX_WORDS];
    int n;
};

/* Parses argv[1..argc-1] (argv[0] is the subcommand's name) into the
 * options' destinations and *words. Returns 0; -ECANCELED after printing
 * --help to stdout; -EINVAL after a usage error on stderr. */
int cli_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_words *words);

/* Prints "raft SUB: <sentence>" and the line that points to --help, on
 * stderr (sub NULL: the top level). Returns -EINVAL. */
int cli_usage_error(const char *sub, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A usage error unless cmd was given no words. Returns 0 or -EINVAL. */
int cli_no_words(const struct cli_command *cmd, const struct cli_words *words);

/* cli_parse for a subcommand that takes options only, no words. */
int cli_parse_options(const struct cli_command *cmd, int argc, char **argv);

/* The process's exit status after cli_parse or cli_usage_error returned rc. */
int cli_exit_code(int rc);

/* "error", "warn", "info", "debug" or "trace", in any case. Returns 0 or
 * -EINVAL. */
int cli_parse_level(const char *s, enum raft_log_level *out);

/* A comma-separated list of HOST:PORT, the value of --opt, split in buf. */
struct cli_addrs {
    char buf[4096];
    char *v[RAFT_MAX_NODES + 1]; /* into buf; NULL-terminated */
    uint32_t n;
};

/* Returns 0, or -EINVAL after a usage error naming --opt. */
int cli_parse_addrs(const char *sub, const char *opt, const char *list, struct cli_addrs *out);

/* The synopsis, the summary and one line per option with its default. */
void cli_help(const struct cli_command *cmd, FILE *out);
/* The options part of cli_help alone. */
void cli_help_options(const struct cli_command *cmd, FILE *out);

#endif
