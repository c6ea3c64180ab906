/*
 * etcd_http.c - HTTP/1.1 to etcd's v3 gateway for etcd_load.c (see
 * etcd_http.h): resolving members, one keep-alive connection, building
 * requests and parsing replies (Content-Length or chunked), base64.
 */
#include "bench/etcd_http.h"

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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_stats.h"

size_t base64_encode(const uint8_t *in, size_t n, char *out)
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

int grow(char **p, size_t *cap, size_t need)
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
int resolve(const char *s, struct endpoint *ep)
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

void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->len = 0;
}

int conn_dial(struct conn *c)
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
int http_build(struct conn *c, const char *path, const char *json, size_t json_len)
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
int http_parse(struct conn *c, bool eof, bool *close_after)
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
int http_post(struct conn *c, const char *path, const char *json, size_t json_len)
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
bool reply_ok(int status, const struct conn *c)
{
    return status >= 200 && status < 300 && c->body_len > 0 && c->body[0] == '{' &&
           strstr(c->body, "\"header\"") != NULL;
}
