/*
 * bench_mix.c - the mix of operations of `raft bench` (kv/bench.h): the
 * --mix flag read, each request's operation drawn from it, and the report
 * printed per operation.
 */
#include "kv/bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[BENCH_N_OPS] = {
    [BENCH_OP_PUT] = "put", [BENCH_OP_GET] = "get", [BENCH_OP_CAS] = "cas",
    [BENCH_OP_DELETE] = "delete", [BENCH_OP_LIST] = "list",
};

#define MIX_ACCEPTS "OP=PERCENT pairs separated by commas, OP one of put, get, cas, delete, " \
                    "list, each PERCENT an integer from 0 to 100, adding up to 100"

const char *bench_op_name(enum bench_op op)
{
    return op < BENCH_N_OPS ? op_names[op] : "?";
}

static int op_named(const char *name, size_t len)
{
    for (int i = 0; i < BENCH_N_OPS; i++)
        if (strlen(op_names[i]) == len && strncmp(op_names[i], name, len) == 0)
            return i;
    return -1;
}

/* An integer from 0 to 100, the whole of s[0..len). */
static int percent_of(const char *s, size_t len)
{
    if (len == 0 || len > 3)
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= 100 ? v : -1;
}

/* One "OP=PERCENT" of text, s[0..len): its share added to out. */
static int parse_pair(const char *text, const char *s, size_t len, bool *given,
                      struct bench_mix *out, char *why, size_t cap)
{
    const char *eq = memchr(s, '=', len);
    int op = eq ? op_named(s, (size_t)(eq - s)) : -1;
    if (op < 0) {
        snprintf(why, cap, "--mix must be " MIX_ACCEPTS "; got '%.*s' in '%s'", (int)len, s,
                 text);
        return -EINVAL;
    }
    int pct = percent_of(eq + 1, len - (size_t)(eq + 1 - s));
    if (pct < 0) {
        snprintf(why, cap, "--mix must give each operation an integer percent from 0 to 100; "
                 "got '%.*s' for %s", (int)(len - (size_t)(eq + 1 - s)), eq + 1, op_names[op]);
        return -EINVAL;
    }
    if (given[op]) {
        snprintf(why, cap, "--mix must name each operation once; '%s' names %s twice", text,
                 op_names[op]);
        return -EINVAL;
    }
    given[op] = true;
    out->percent[op] = pct;
    return 0;
}

static int parse_mix(const char *text, struct bench_mix *out, char *why, size_t cap)
{
    bool given[BENCH_N_OPS] = {false};
    *out = (struct bench_mix){{0}};
    for (const char *s = text;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        int rc = parse_pair(text, s, len, given, out, why, cap);
        if (rc)
            return rc;
        if (!comma)
            break;
        s = comma + 1;
    }
    double sum = 0;
    for (int i = 0; i < BENCH_N_OPS; i++)
        sum += out->percent[i];
    if (sum != 100) {
        snprintf(why, cap, "--mix percents must add up to 100; '%s' adds up to %.0f", text, sum);
        return -EINVAL;
    }
    return 0;
}

int bench_mix_choose(const char *text, double read_ratio, struct bench_mix *out, char *why,
                     size_t cap)
{
    if (!text) {
        *out = (struct bench_mix){{0}};
        out->percent[BENCH_OP_GET] = 100 * read_ratio;
        out->percent[BENCH_OP_PUT] = 100 - out->percent[BENCH_OP_GET];
        return 0;
    }
    if (read_ratio > 0) {
        snprintf(why, cap, "--mix and --read-ratio cannot be given together: give the gets' "
                 "share in --mix, as get=PERCENT");
        return -EINVAL;
    }
    return parse_mix(text, out, why, cap);
}

enum bench_op bench_mix_pick(const struct bench_mix *mix, double u)
{
    double at = 100 * u, sum = 0;
    int last = BENCH_OP_PUT;
    for (int i = 0; i < BENCH_N_OPS; i++) {
        if (mix->percent[i] <= 0)
            continue;
        sum += mix->percent[i];
        last = i;
        if (at < sum)
            return (enum bench_op)i;
    }
    return (enum bench_op)last; /* rounding at the very top; all zero: put */
}

static int kinds_in(const struct bench_mix *mix)
{
    int n = 0;
    for (int i = 0; i < BENCH_N_OPS; i++)
        n += mix->percent[i] > 0;
    return n;
}

void bench_report_print(const struct bench_report *r, const struct bench_mix *mix, bool json,
                        FILE *out)
{
    bool each = kinds_in(mix) > 1;
    if (!json) {
        bench_print(&r->total, false, out);
        for (int i = 0; each && i < BENCH_N_OPS; i++) {
            if (mix->percent[i] <= 0)
                continue;
            fprintf(out, "  %-6s %3g%%: ", op_names[i], mix->percent[i]);
            bench_print(&r->by_op[i], false, out);
        }
        return;
    }
    fprintf(out, "{");
    bench_print_json_members(&r->total, out);
    if (each) {
        fprintf(out, ", \"by_op\": {");
        const char *sep = "";
        for (int i = 0; i < BENCH_N_OPS; i++) {
            if (mix->percent[i] <= 0)
                continue;
            fprintf(out, "%s\"%s\": {\"percent\": %g, ", sep, op_names[i], mix->percent[i]);
            bench_print_json_members(&r->by_op[i], out);
            fprintf(out, "}");
            sep = ", ";
        }
        fprintf(out, "}");
    }
    fprintf(out, "}\n");
}
