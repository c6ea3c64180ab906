/*
 * cli.c - option tables parsed with getopt_long (see cli.h).
 *
 * getopt runs in POSIX order ("+"): it never reorders argv and stops at a
 * word, and the loop below takes each word itself and then resumes getopt
 * after it. So options and words mix as the user wrote them, a word keeps
 * its position, and the user's "--" ends the options for good.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/tcp_socket.h"

/* getopt_long's val for the option at index i of a table; 'h' is --help. */
#define CLI_VAL_BASE 256

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

int cli_parse_level(const char *s, enum raft_log_level *out)
{
    for (int i = 0; i <= RAFT_LOG_TRACE; i++)
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum raft_log_level)i;
            return 0;
        }
    return -EINVAL;
}

int cli_usage_error(const char *sub, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "raft%s%s: ", sub ? " " : "", sub ? sub : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nsee raft%s%s --help\n", sub ? " " : "", sub ? sub : "");
    return -EINVAL;
}

int cli_no_words(const struct cli_command *cmd, const struct cli_words *words)
{
    if (words->n == 0)
        return 0;
    return cli_usage_error(cmd->name, "unexpected argument %s; %s takes options only",
                           words->v[0], cmd->name);
}

int cli_exit_code(int rc)
{
    return rc == 0 || rc == -ECANCELED ? 0 : CLI_EXIT_USAGE;
}

/* ---- values ---- */

static int parse_long(const char *s, double lo, double hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || (double)v < lo || (double)v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -EINVAL;
    *out = v;
    return 0;
}

/* "MIN-MAX", each within bounds; MIN > MAX is reported apart, by the caller. */
static int parse_range(const char *s, double lo, double hi, struct cli_range *out)
{
    char buf[64];
    if (strlen(s) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, s);
    char *dash = strchr(buf, '-');
    if (!dash)
        return -EINVAL;
    *dash = '\0';
    if (parse_long(buf, lo, hi, &out->min) || parse_long(dash + 1, lo, hi, &out->max))
        return -EINVAL;
    return 0;
}

static void accepts_text(const struct cli_option *o, char *buf, size_t cap)
{
    if (o->accepts) {
        snprintf(buf, cap, "%s", o->accepts);
        return;
    }
    switch (o->kind) {
    case CLI_LONG:
        snprintf(buf, cap, "an integer from %.0f to %.0f", o->lo, o->hi);
        break;
    case CLI_DOUBLE:
        snprintf(buf, cap, "a number from %g to %g", o->lo, o->hi);
        break;
    case CLI_RANGE:
        snprintf(buf, cap, "MIN-MAX, two integers from %.0f to %.0f", o->lo, o->hi);
        break;
    case CLI_LEVEL:
        snprintf(buf, cap, "one of error, warn, info, debug, trace");
        break;
    case CLI_STRING:
    case CLI_FLAG:
        snprintf(buf, cap, "a non-empty %s", o->metavar ? o->metavar : "value");
        break;
    }
}

static int bad_value(const char *sub, const struct cli_option *o, const char *value)
{
    char accepts[160];
    accepts_text(o, accepts, sizeof(accepts));
    return cli_usage_error(sub, "--%s must be %s; got '%s'", o->name, accepts, value);
}

static int set_value(const char *sub, const struct cli_option *o, const char *s)
{
    int rc = 0;
    switch (o->kind) {
    case CLI_FLAG:
        *(bool *)o->dest = true;
        return 0;
    case CLI_LONG:
        rc = parse_long(s, o->lo, o->hi, o->dest);
        break;
    case CLI_DOUBLE:
        rc = parse_double(s, o->lo, o->hi, o->dest);
        break;
    case CLI_STRING:
        rc = *s ? 0 : -EINVAL;
        if (rc == 0)
            *(const char **)o->dest = s;
        break;
    case CLI_RANGE: {
        struct cli_range r;
        rc = parse_range(s, o->lo, o->hi, &r);
        if (rc == 0 && r.min > r.max)
            return cli_usage_error(sub, "--%s MIN must not exceed MAX; got %s", o->name, s);
        if (rc == 0)
            *(struct cli_range *)o->dest = r;
        break;
    }
    case CLI_LEVEL: {
        enum raft_log_level level;
        rc = cli_parse_level(s, &level);
        if (rc == 0)
            *(int *)o->dest = (int)level;
        break;
    }
    }
    return rc ? bad_value(sub, o, s) : 0;
}

/* ---- addresses ---- */

int cli_parse_addrs(const char *sub, const char *opt, const char *list, struct cli_addrs *out)
{
    *out = (struct cli_addrs){.n = 0};
    if (strlen(list) >= sizeof(out->buf))
        return cli_usage_error(sub, "--%s must be at most %zu bytes long; got %zu", opt,
                               sizeof(out->buf) - 1, strlen(list));
    strcpy(out->buf, list);
    for (char *save = NULL, *tok = strtok_r(out->buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char host[256];
        uint16_t port;
        if (out->n == RAFT_MAX_NODES)
            return cli_usage_error(sub, "--%s must list at most %d addresses; got more in '%s'",
                                   opt, RAFT_MAX_NODES, list);
        if (tcp_parse_addr(tok, host, sizeof(host), &port))
            return cli_usage_error(sub, "--%s must be a comma-separated list of HOST:PORT "
                                   "(port 1-65535); '%s' is not one", opt, tok);
        out->v[out->n++] = tok;
    }
    if (out->n == 0)
        return cli_usage_error(sub, "--%s must list at least one HOST:PORT; got '%s'", opt,
                               list);
    return 0;
}

/* ---- errors getopt reports ---- */

/* An argument getopt refused: an unknown name, an abbreviation of several,
 * or a value given to an option that takes none. */
static int bad_option(const struct cli_command *cmd, const char *arg)
{
    if (strncmp(arg, "--", 2) != 0)
        return cli_usage_error(cmd->name, "unknown option %s", arg);
    const char *name = arg + 2, *eq = strchr(name, '=');
    int len = eq ? (int)(eq - name) : (int)strlen(name);
    char candidates[256] = "";
    size_t used = 0;
    int matches = 0;
    const struct cli_option *exact = NULL;
    for (size_t i = 0; i < cmd->n_options; i++) {
        const char *opt = cmd->options[i].name;
        if (strncmp(opt, name, (size_t)len) != 0)
            continue;
        if (used < sizeof(candidates))
            used += (size_t)snprintf(candidates + used, sizeof(candidates) - used, "%s--%s",
                                     matches ? " or " : "", opt);
        matches++;
        if (opt[len] == '\0')
            exact = &cmd->options[i];
    }
    if (eq && ((exact && exact->kind == CLI_FLAG) || (len == 4 && !strncmp(name, "help", 4))))
        return cli_usage_error(cmd->name, "--%.*s takes no value; got %s", len, name, arg);
    if (matches > 1 && !exact)
        return cli_usage_error(cmd->name, "--%.*s is ambiguous: %s?", len, name, candidates);
    return cli_usage_error(cmd->name, "unknown option --%.*s", len, name);
}

static int missing_value(const struct cli_command *cmd, const struct cli_option *o)
{
    char accepts[160];
    accepts_text(o, accepts, sizeof(accepts));
    return cli_usage_error(cmd->name, "--%s needs a value, %s", o->name, accepts);
}

static int check_required(const struct cli_command *cmd, const bool *seen)
{
    for (size_t i = 0; i < cmd->n_options; i++) {
        const struct cli_option *o = &cmd->options[i];
        if (o->required && !seen[i])
            return cli_usage_error(cmd->name, "--%s %s is required: %s", o->name, o->metavar,
                                   o->help);
    }
    return 0;
}

/* ---- the parse ---- */

/* A word, not an option: no leading dash, a lone "-", or (with dash_words,
 * after the first word) one leading dash other than -h. */
static bool is_word(const struct cli_command *cmd, const struct cli_words *w, const char *a)
{
    if (a[0] != '-' || a[1] == '\0')
        return true;
    return cmd->dash_words && w->n > 0 && a[1] != '-' && strcmp(a, "-h") != 0;
}

static int add_word(const struct cli_command *cmd, struct cli_words *w, char *a)
{
    if (w->n == CLI_MAX_WORDS)
        return cli_usage_error(cmd->name, "too many arguments; %s is one too many", a);
    w->v[w->n++] = a;
    return 0;
}

static void build_longopts(const struct cli_command *cmd, struct option *longopts)
{
    size_t i = 0;
    for (; i < cmd->n_options; i++) {
        const struct cli_option *o = &cmd->options[i];
        longopts[i] = (struct option){o->name, o->kind == CLI_FLAG ? no_argument
                                                                   : required_argument,
                                      NULL, CLI_VAL_BASE + (int)i};
    }
    longopts[i++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[i] = (struct option){NULL, 0, NULL, 0};
}

int cli_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_words *w)
{
    struct option longopts[CLI_MAX_OPTIONS + 2];
    bool seen[CLI_MAX_OPTIONS] = {0};
    if (cmd->n_options > CLI_MAX_OPTIONS) {
        fprintf(stderr, "raft %s: %zu options in its table, more than the %d the parser "
                "holds\n", cmd->name, cmd->n_options, CLI_MAX_OPTIONS);
        return -EINVAL;
    }
    build_longopts(cmd, longopts);
    w->n = 0;
    opterr = 0; /* every message is ours, in one format */
    optind = 1;
    int rc = 0;
    while (rc == 0 && optind < argc) {
        char *a = argv[optind];
        if (strcmp(a, "--") == 0) {
            for (optind++; rc == 0 && optind < argc; optind++)
                rc = add_word(cmd, w, argv[optind]);
            break;
        }
        if (is_word(cmd, w, a)) {
            rc = add_word(cmd, w, a);
            optind++;
            continue;
        }
        int c = getopt_long(argc, argv, "+:h", longopts, NULL);
        if (c == 'h') {
            if (cmd->help)
                cmd->help(cmd, w, stdout);
            else
                cli_help(cmd, stdout);
            return -ECANCELED;
        }
        if (c == '?')
            rc = bad_option(cmd, a);
        else if (c == ':')
            rc = missing_value(cmd, &cmd->options[optopt - CLI_VAL_BASE]);
        else if (c >= CLI_VAL_BASE) {
            seen[c - CLI_VAL_BASE] = true;
            rc = set_value(cmd->name, &cmd->options[c - CLI_VAL_BASE], optarg);
        } else
            break; /* getopt saw no option: not reached, as words are taken above */
    }
    return rc ? rc : check_required(cmd, seen);
}

/* ---- help ---- */

static void default_text(const struct cli_option *o, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (o->required)
        snprintf(buf, cap, " (required)");
    else if (o->shown_default)
        snprintf(buf, cap, " (default: %s)", o->shown_default);
    else if (o->kind == CLI_LONG)
        snprintf(buf, cap, " (default: %ld)", *(const long *)o->dest);
    else if (o->kind == CLI_DOUBLE)
        snprintf(buf, cap, " (default: %g)", *(const double *)o->dest);
    else if (o->kind == CLI_RANGE)
        snprintf(buf, cap, " (default: %ld-%ld)", ((const struct cli_range *)o->dest)->min,
                 ((const struct cli_range *)o->dest)->max);
}

void cli_help(const struct cli_command *cmd, FILE *out)
{
    fprintf(out, "usage: raft %s %s\n%s\n\n", cmd->name, cmd->synopsis, cmd->summary);
    cli_help_options(cmd, out);
}

void cli_help_options(const struct cli_command *cmd, FILE *out)
{
    int width = (int)strlen("-h, --help");
    for (size_t i = 0; i < cmd->n_options; i++) {
        const struct cli_option *o = &cmd->options[i];
        int w = 2 + (int)strlen(o->name) + (o->metavar ? 1 + (int)strlen(o->metavar) : 0);
        width = w > width ? w : width;
    }
    if (cmd->n_options)
        fprintf(out, "options:\n");
    for (size_t i = 0; i < cmd->n_options; i++) {
        const struct cli_option *o = &cmd->options[i];
        char left[64], dflt[96];
        snprintf(left, sizeof(left), "--%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        default_text(o, dflt, sizeof(dflt));
        fprintf(out, "  %-*s  %s%s\n", width, left, o->help, dflt);
    }
    fprintf(out, "  %-*s  %s\n", width, "-h, --help", "print this help and exit");
}

int cli_parse_options(const struct cli_command *cmd, int argc, char **argv)
{
    struct cli_words w;
    int rc = cli_parse(cmd, argc, argv, &w);
    return rc ? rc : cli_no_words(cmd, &w);
}
