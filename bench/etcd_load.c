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
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_loop.h"
#include "bench/bench_stats.h"

#define MAX_ENDPOINTS 16
#define TIMEOUT_MS 5000      /* per request, as `raft bench` */
#define REDIAL_PAUSE_MS 20   /* before redialling, so as not to spin */
#define MAX_REPLY (1u << 20) /* a larger reply is malformed here */

struct endpoint {
    char host_port[128]; /* for the Host header */
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

struct options {
    struct endpoint ep[MAX_ENDPOINTS];
    unsigned n_ep;
    unsigned clients, value_size, keys;
    double seconds, read_ratio;
    bool spread, json, cpu;
    int leader; /* index into ep, or -1 when spreading */
};

/* One keep-alive connection and its reply buffer. */
struct conn {
    const struct endpoint *ep;
    int fd;       /* -1 when not connected */
    char *buf;    /* bytes read and not yet consumed */
    size_t len, cap;
    char *body;   /* the last reply's body, decoded if it came chunked */
    size_t body_len, body_cap;
    char *req;    /* the request being sent */
    size_t req_len, req_cap;
};

/* ---- small helpers ---- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static size_t base64_encode(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* The first occurrence of needle in h[0..n), or NULL (memmem is not C11). */
static const char *find(const char *h, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; h && i + k <= n; i++)
        if (h[i] == needle[0] && memcmp(h + i, needle, k) == 0)
            return h + i;
    return NULL;
}

static int grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    char *q = realloc(*p, c);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* "host:port" (the last colon splits) to a socket address. */
static int resolve(const char *s, struct endpoint *ep)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1] || strlen(s) >= sizeof(ep->host_port))
        return -1;
    char host[128];
    snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return -1;
    memcpy(&ep->addr, res->ai_addr, res->ai_addrlen);
    ep->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    snprintf(ep->host_port, sizeof(ep->host_port), "%s", s);
    return 0;
}

/* ---- HTTP/1.1 over one connection ---- */

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->len = 0;
}

static int conn_dial(struct conn *c)
{
    int fd = socket(c->ep->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* SO_SNDTIMEO also bounds connect() on Linux. */
    struct timeval tv = {.tv_sec = TIMEOUT_MS / 1000, .tv_usec = (TIMEOUT_MS % 1000) * 1000};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&c->ep->addr, c->ep->addr_len) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    c->fd = fd;
    c->len = 0;
    return 0;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : -EPIPE;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads more bytes into c->buf before the deadline: >0 bytes, 0 at end of
 * stream, <0 an error (-ETIMEDOUT when the deadline passes). */
static ssize_t conn_fill(struct conn *c, uint64_t deadline_ns)
{
    if (c->len >= MAX_REPLY)
        return -EMSGSIZE;
    if (grow(&c->buf, &c->cap, c->len + 4096))
        return -ENOMEM;
    for (;;) {
        uint64_t now = bench_now_ns();
        if (now >= deadline_ns)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int r = poll(&p, 1, (int)((deadline_ns - now + 999999) / 1000000));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            continue; /* the deadline check above ends it */
        ssize_t k = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        c->len += (size_t)k;
        return k;
    }
}

/* Decodes a chunked body starting at p[0..n) into c->body. Returns the bytes
 * it spans (trailers included) once complete, 0 if more are needed, -1 if
 * malformed. */
static long decode_chunked(struct conn *c, const char *p, size_t n)
{
    size_t i = 0;
    c->body_len = 0;
    for (;;) {
        const char *eol = find(p + i, n - i, "\r\n");
        if (!eol)
            return n - i > 32 ? -1 : 0;
        char *end;
        errno = 0;
        unsigned long size = strtoul(p + i, &end, 16);
        if (end == p + i || errno || size > MAX_REPLY || (*end != '\r' && *end != ';'))
            return -1;
        i = (size_t)(eol - p) + 2;
        if (size == 0)
            break;
        if (n - i < size + 2)
            return 0;
        if (p[i + size] != '\r' || p[i + size + 1] != '\n')
            return -1;
        if (grow(&c->body, &c->body_cap, c->body_len + size + 1))
            return -1;
        memcpy(c->body + c->body_len, p + i, size);
        c->body_len += size;
        i += size + 2;
    }
    /* Trailer fields, if any, then an empty line. */
    for (;;) {
        const char *eol = find(p + i, n - i, "\r\n");
        if (!eol)
            return 0;
        bool empty = eol == p + i;
        i = (size_t)(eol - p) + 2;
        if (empty)
            return (long)i;
    }
}

/* The value of header `name` in the header block h[0..n), or NULL. */
static const char *header_value(const char *h, size_t n, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    const char *line = find(h, n, "\r\n"); /* skip the status line */
    while (line && (size_t)(line - h) + 2 < n) {
        line += 2;
        const char *eol = find(line, n - (size_t)(line - h), "\r\n");
        if (!eol)
            break;
        if ((size_t)(eol - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *len = (size_t)(eol - v);
            return v;
        }
        line = eol;
    }
    return NULL;
}

/* Puts the request (POST path, JSON body) in c->req. */
static int http_build(struct conn *c, const char *path, const char *json, size_t json_len)
{
    size_t need = json_len + strlen(path) + strlen(c->ep->host_port) + 200;
    if (grow(&c->req, &c->req_cap, need))
        return -ENOMEM;
    int hl = snprintf(c->req, c->req_cap,
                      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n", path, c->ep->host_port, json_len);
    memcpy(c->req + hl, json, json_len);
    c->req_len = (size_t)hl + json_len;
    return 0;
}

/*
 * Parses the reply at the front of c->buf; eof: the stream ended after
 * those bytes. Returns the HTTP status once the reply is whole, with its
 * body in c->body and its bytes taken off c->buf, and *close_after set if
 * the connection is done (the reply said so, or ran to the end of the
 * stream); 0 while more bytes are needed; -EPROTO when it is not HTTP/1.x,
 * -ECONNRESET when the stream ended before the reply did.
 */
static int http_parse(struct conn *c, bool eof, bool *close_after)
{
    int more = eof ? -ECONNRESET : c->len >= MAX_REPLY ? -EPROTO : 0;
    const char *hend = find(c->buf, c->len, "\r\n\r\n");
    if (!hend)
        return more;
    size_t head_len = (size_t)(hend - c->buf) + 4;
    /* "HTTP/1.x NNN reason\r\n"; the block's "\r\n\r\n" keeps these in range. */
    const char *s = c->buf;
    if (head_len < 16 || memcmp(s, "HTTP/1.", 7) != 0 || s[8] != ' ' ||
        s[9] < '1' || s[9] > '5' || s[10] < '0' || s[10] > '9' || s[11] < '0' ||
        s[11] > '9' || (s[12] != ' ' && s[12] != '\r'))
        return -EPROTO;
    int status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    size_t vl;
    const char *v;
    bool chunked = false;
    long long content_length = -1;
    *close_after = (v = header_value(c->buf, head_len, "Connection", &vl)) && vl >= 5 &&
                   strncasecmp(v, "close", 5) == 0;
    if ((v = header_value(c->buf, head_len, "Transfer-Encoding", &vl)) && vl >= 7 &&
        strncasecmp(v + vl - 7, "chunked", 7) == 0)
        chunked = true;
    if ((v = header_value(c->buf, head_len, "Content-Length", &vl))) {
        char *end;
        content_length = strtoll(v, &end, 10);
        if (end == v || content_length < 0 || content_length > MAX_REPLY)
            return -EPROTO;
    }

    /* The body: chunked, or Content-Length bytes, or up to end of stream. */
    size_t span;
    if (chunked) {
        long got = decode_chunked(c, c->buf + head_len, c->len - head_len);
        if (got == 0)
            return more;
        if (got < 0)
            return -EPROTO;
        span = head_len + (size_t)got;
    } else {
        bool to_eof = content_length < 0 && status != 204 && status != 304;
        size_t want = content_length < 0 ? 0 : (size_t)content_length;
        if (to_eof && !eof)
            return more;
        if (!to_eof && c->len - head_len < want)
            return more;
        if (to_eof) {
            want = c->len - head_len;
            *close_after = true;
        }
        if (grow(&c->body, &c->body_cap, want + 1))
            return -EPROTO;
        memcpy(c->body, c->buf + head_len, want);
        c->body_len = want;
        span = head_len + want;
    }
    c->body[c->body_len] = '\0';
    /* Keep whatever follows (nothing, with one request in flight). */
    memmove(c->buf, c->buf + span, c->len - span);
    c->len -= span;
    return status;
}

/* One request and its reply, blocking (for the start-up questions). Returns
 * the HTTP status, or <0 with the connection closed. */
static int http_post(struct conn *c, const char *path, const char *json, size_t json_len)
{
    uint64_t deadline = bench_now_ns() + (uint64_t)TIMEOUT_MS * 1000000;
    int rc = http_build(c, path, json, json_len);
    if (rc == 0)
        rc = send_all(c->fd, c->req, c->req_len);
    bool close_after = false;
    while (rc == 0) {
        ssize_t k = conn_fill(c, deadline);
        rc = k < 0 ? (int)k : http_parse(c, k == 0, &close_after);
    }
    if (rc < 0 || close_after)
        conn_close(c);
    return rc;
}

/* A reply etcd's gateway gives on success: a JSON object with a header. */
static bool reply_ok(int status, const struct conn *c)
{
    return status >= 200 && status < 300 && c->body_len > 0 && c->body[0] == '{' &&
           strstr(c->body, "\"header\"") != NULL;
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
