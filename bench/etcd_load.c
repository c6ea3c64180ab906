/*
 * etcd_load.c - the load of `raft bench`, sent to etcd's v3 HTTP/JSON gateway.
 *
 *   etcd-load --cluster HOST:PORT,... [--clients C] [--seconds T] [--value-size B]
 *             [--keys K] [--read-ratio R] [--spread] [--json] [--cpu]
 *
 * The same shape as `raft bench`: C client sessions, each with one
 * persistent HTTP/1.1 keep-alive connection (TCP_NODELAY) and one request
 * in flight, for T seconds, driven as `raft bench` drives its sessions: by
 * event loops (epoll) of up to 64 sessions per thread, so that the
 * generator takes as little CPU from the cluster as it does there. Values
 * of B bytes (default 64) over K keys (default 1000) named "key-N", N and
 * the read-or-write choice drawn from the same per-session xorshift
 * sequence. A write is POST /v3/kv/put {"key", "value"}; a read is
 * POST /v3/kv/range {"key"}, etcd's default linearizable read (ReadIndex;
 * `raft bench` reads are linearizable too, on a lease or by ReadIndex).
 * Keys and values are base64, as the gateway wants bytes fields.
 *
 * Where the clients send: `raft bench` clients start at some member and
 * follow the leader hint, so all its load lands on the leader. To match, by
 * default every client here sends to etcd's leader, found at start from
 * POST /v3/maintenance/status on each member. With --spread, client i sends
 * to member i mod n instead, and etcd forwards followers' puts to the leader.
 *
 * Results go through bench/bench_stats.c, the code `raft bench` uses, and are
 * printed the same way (one JSON object with --json). Every response's
 * status is checked: a non-2xx status, a reply that is not HTTP or whose
 * body is not a JSON object with a "header", a timeout (5 s, like
 * `raft bench`) or a lost connection counts as one error, and the operation
 * is not timed. After a broken or malformed reply the connection is
 * redialled, 20 ms later. With --cpu, the generator's own CPU time goes to
 * stderr at the end, one line: "generator cpu: user U s, sys S s, P% of
 * one core over T s".
 *
 * Exit status: 0; 2 for bad usage; 3 if no request succeeded.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_loop.h"
#include "bench/bench_stats.h"
#include "bench/etcd_http.h"

#define MAX_ENDPOINTS 16
#define REDIAL_PAUSE_MS 20   /* before redialling, so as not to spin */

struct options {
    struct endpoint ep[MAX_ENDPOINTS];
    unsigned n_ep;
    unsigned clients, value_size, keys;
    double seconds, read_ratio;
    bool spread, json, cpu;
    int leader; /* index into ep, or -1 when spreading */
};

/* ---- small helpers ---- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- start-up: where the leader is ---- */

/* Copies the string value of "field":"..." in a JSON text to out. */
static bool json_string_field(const char *json, const char *field, char *out, size_t n)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", field);
    const char *p = strstr(json, pat);
    if (!p)
        return false;
    p += strlen(pat);
    const char *q = strchr(p, '"');
    if (!q || (size_t)(q - p) >= n)
        return false;
    memcpy(out, p, (size_t)(q - p));
    out[q - p] = '\0';
    return true;
}

/* The member that says it is the leader ("member_id" equal to "leader" in
 * its status), asked for up to 10 s while an election may be going on. */
static int find_leader(const struct options *opt)
{
    uint64_t give_up = bench_now_ns() + 10ull * 1000000000;
    int found = -1;
    while (found < 0 && bench_now_ns() < give_up) {
        for (unsigned i = 0; i < opt->n_ep && found < 0; i++) {
            struct conn c = {.ep = &opt->ep[i], .fd = -1};
            char id[32], leader[32];
            if (conn_dial(&c) == 0 &&
                reply_ok(http_post(&c, "/v3/maintenance/status", "{}", 2), &c) &&
                json_string_field(c.body, "member_id", id, sizeof(id)) &&
                json_string_field(c.body, "leader", leader, sizeof(leader)) &&
                strcmp(id, leader) == 0)
                found = (int)i;
            conn_close(&c);
            free(c.buf);
            free(c.body);
            free(c.req);
        }
        if (found < 0)
            sleep_ms(100);
    }
    return found;
}

/* ---- the load: sessions on the event loops of bench/bench_loop.c ---- */

/* What every session reads: the options, and the value, in base64. */
struct load {
    const struct options *opt;
    char *value_b64;
};

/* One client: a keep-alive connection (b.fd; c.fd is not used) with one
 * request in flight. */
struct session {
    struct bench_session b;
    struct conn c;
    uint64_t rng;
    bool paused;        /* failed; the operation ends at wake_ns */
    char *json;         /* the request's body, built here */
};

/* The operation failed (broken or late connection, malformed reply, failed
 * dial): it ends as an error after a pause, so as not to spin, and the
 * next operation redials. */
static void failed(struct session *s, uint64_t now)
{
    bench_close(&s->b);
    s->c.len = 0;
    s->paused = true;
    s->b.wake_ns = now + REDIAL_PAUSE_MS * 1000000ull;
}

/* A non-blocking connect to the session's member. */
static int dial_start(struct session *s)
{
    const struct endpoint *ep = s->c.ep;
    int fd = socket(ep->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&ep->addr, ep->addr_len) != 0 &&
        errno != EINPROGRESS) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    s->c.len = 0;
    return bench_adopt(&s->b, fd);
}

/* Draws the next operation, as `raft bench` does, and sends it. */
static void start_op(struct bench_session *b, uint64_t now)
{
    struct session *s = (struct session *)b;
    const struct load *load = bench_ctx(b);
    const struct options *opt = load->opt;
    s->rng ^= s->rng << 13, s->rng ^= s->rng >> 7, s->rng ^= s->rng << 17;
    char key[32], key_b64[48];
    int key_len = snprintf(key, sizeof(key), "key-%llu", (unsigned long long)(s->rng % opt->keys));
    bool read = (double)(s->rng >> 11) / (double)(1ull << 53) < opt->read_ratio;
    base64_encode((const uint8_t *)key, (size_t)key_len, key_b64);
    int json_len = read ? sprintf(s->json, "{\"key\":\"%s\"}", key_b64)
                        : sprintf(s->json, "{\"key\":\"%s\",\"value\":\"%s\"}", key_b64,
                                  load->value_b64);
    b->op_start_ns = now;
    b->wake_ns = now + (uint64_t)TIMEOUT_MS * 1000000;
    s->paused = false;
    if (http_build(&s->c, read ? "/v3/kv/range" : "/v3/kv/put", s->json, (size_t)json_len)) {
        bench_abort(b, -ENOMEM, now);
        return;
    }
    int rc = b->fd >= 0 ? 0 : dial_start(s);
    if (rc == -ENOMEM || rc == -EMFILE || rc == -ENFILE)
        bench_abort(b, rc, now);
    else if (rc)
        failed(s, now);
    else
        bench_request(b, s->c.req, s->c.req_len, now);
}

static void on_readable(struct bench_session *b, uint64_t now)
{
    struct session *s = (struct session *)b;
    struct conn *c = &s->c;
    for (;;) {
        if (grow(&c->buf, &c->cap, c->len + 4096)) {
            bench_close(&s->b);
            bench_abort(&s->b, -ENOMEM, now);
            return;
        }
        ssize_t k = recv(s->b.fd, c->buf + c->len, c->cap - c->len, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (k < 0) {
            failed(s, now);
            return;
        }
        c->len += (size_t)k;
        bool close_after = false;
        int status = http_parse(c, k == 0, &close_after);
        if (status < 0) {
            failed(s, now);
            return;
        }
        if (status > 0) {
            if (close_after) {
                bench_close(&s->b);
                c->len = 0;
            }
            bench_op_done(&s->b, reply_ok(status, c), now);
            return;
        }
    }
}

/* The connect or a send failed. */
static void on_broken(struct bench_session *b, uint64_t now)
{
    failed((struct session *)b, now);
}

/* The end of the pause after a failure, or a request past its timeout. */
static void on_timer(struct bench_session *b, uint64_t now)
{
    struct session *s = (struct session *)b;
    if (s->paused)
        bench_op_done(b, false, now);
    else
        failed(s, now);
}

static int session_init(struct bench_session *b)
{
    struct session *s = (struct session *)b;
    const struct options *opt = ((const struct load *)bench_ctx(b))->opt;
    unsigned target = opt->leader >= 0 ? (unsigned)opt->leader : b->index % opt->n_ep;
    s->c = (struct conn){.ep = &opt->ep[target], .fd = -1};
    s->rng = 0x9e3779b97f4a7c15ull * (b->index + 1);
    s->json = malloc(4 * ((opt->value_size + 2) / 3) + 128);
    return s->json ? 0 : -ENOMEM;
}

static void session_free(struct bench_session *b)
{
    struct session *s = (struct session *)b;
    free(s->c.buf);
    free(s->c.body);
    free(s->c.req);
    free(s->json);
}

static int run(const struct options *opt, struct bench_result *out)
{
    size_t b64_value_len = 4 * ((opt->value_size + 2) / 3);
    struct load load = {.opt = opt, .value_b64 = malloc(b64_value_len + 1)};
    uint8_t *value = malloc(opt->value_size + 1);
    int rc = -ENOMEM;
    if (load.value_b64 && value) {
        memset(value, 'v', opt->value_size);
        base64_encode(value, opt->value_size, load.value_b64);
        const struct bench_driver d = {
            .session_size = sizeof(struct session),
            .ctx = &load, .init = session_init, .free = session_free,
            .start = start_op, .readable = on_readable, .broken = on_broken,
            .timer = on_timer};
        rc = bench_loops_run(&d, opt->clients, opt->seconds, out);
    }
    free(value);
    free(load.value_b64);
    return rc;
}

/* ---- command line ---- */

static int usage(const char *why, const char *what)
{
    fprintf(stderr, "etcd-load: %s%s%s\n", why, what ? " " : "", what ? what : "");
    fprintf(stderr, "usage: etcd-load --cluster HOST:PORT,... [--clients C] [--seconds T]\n"
                    "                 [--value-size B] [--keys K] [--read-ratio R] [--spread] [--json]\n"
                    "                 [--cpu]\n");
    return 2;
}

static bool parse_uint(const char *s, unsigned long min, unsigned long max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '-' || end == s || *end || errno || v < min || v > max)
        return false;
    *out = (unsigned)v;
    return true;
}

static bool parse_real(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= min && v <= max))
        return false;
    *out = v;
    return true;
}

static int parse_cluster(char *list, struct options *opt)
{
    for (char *save = NULL, *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        if (opt->n_ep == MAX_ENDPOINTS || resolve(a, &opt->ep[opt->n_ep]))
            return -1;
        opt->n_ep++;
    }
    return opt->n_ep ? 0 : -1;
}

int main(int argc, char **argv)
{
    static struct options opt = {.clients = 16, .seconds = 5, .value_size = 64, .keys = 1000,
                                 .leader = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--json")) {
            opt.json = true;
            continue;
        }
        if (!strcmp(a, "--spread")) {
            opt.spread = true;
            continue;
        }
        if (!strcmp(a, "--cpu")) {
            opt.cpu = true;
            continue;
        }
        if (!v)
            return usage("missing value for", a);
        i++;
        if (!strcmp(a, "--cluster"))
            ok = parse_cluster(argv[i], &opt) == 0;
        else if (!strcmp(a, "--clients"))
            ok = parse_uint(v, 1, 10000, &opt.clients);
        else if (!strcmp(a, "--seconds"))
            ok = parse_real(v, 0.001, 86400, &opt.seconds);
        else if (!strcmp(a, "--value-size"))
            ok = parse_uint(v, 0, 1u << 20, &opt.value_size);
        else if (!strcmp(a, "--keys"))
            ok = parse_uint(v, 1, 1u << 30, &opt.keys);
        else if (!strcmp(a, "--read-ratio"))
            ok = parse_real(v, 0, 1, &opt.read_ratio);
        else
            return usage("unknown option", a);
        if (!ok)
            return usage("bad value for", a);
    }
    if (!opt.n_ep)
        return usage("needs --cluster", NULL);

    if (!opt.spread) {
        opt.leader = find_leader(&opt);
        if (opt.leader < 0) {
            fprintf(stderr, "etcd-load: no member says it leads; spreading clients instead.\n");
            opt.spread = true;
        }
    }
    struct bench_result r;
    int rc = run(&opt, &r);
    bench_print(&r, opt.json, stdout);

    if (opt.cpu) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
        double sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        fprintf(stderr, "generator cpu: user %.2f s, sys %.2f s, %.0f%% of one core over "
                "%.2f s\n", user, sys, r.seconds > 0 ? 100 * (user + sys) / r.seconds : 0,
                r.seconds);
    }
    if (rc) {
        fprintf(stderr, "The benchmark could not run: %s.\n", strerror(-rc));
        return 3;
    }
    if (r.ops == 0) {
        fprintf(stderr, "No request succeeded: is etcd up?\n");
        return 3;
    }
    return 0;
}
