/*
 * bench.c - the closed-loop benchmark behind `raft bench`: the store's
 * client sessions, on the event loops of bench/bench_loop.c.
 *
 * Each session behaves as kv/client.c does: its own session id and
 * sequence numbers (a retried put keeps its number), it follows leader
 * hints, gives up on a node that is silent for KV_CLIENT_ATTEMPT_MS, and
 * pauses KV_CLIENT_RETRY_PAUSE_MS when nobody is known to lead. An operation's latency runs
 * from its first attempt to its final answer; one without a final answer
 * within the timeout counts as an error. Each operation is drawn from the
 * run's mix (kv/bench_mix.c) and timed in its kind's class too.
 *
 * With TLS, a session connects and runs its handshake at once (bounded by
 * KV_CLIENT_ATTEMPT_MS), holding up its loop's other sessions only while
 * it does; requests and replies then go through the session's TLS
 * connection without blocking.
 */
#include "kv/bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/bench_loop.h"
#include "kv/client.h"
#include "net/tcp_internal.h"
#include "net/tcp_socket.h"
#include "net/tls.h"

#define NS_PER_MS 1000000ull

/* What every session reads: the options, and the value every put writes. */
struct load {
    const struct bench_options *opt;
    char *value;
};

struct session {
    struct bench_session b;
    struct kv_nodes nodes;
    uint64_t client_id, seq;
    uint64_t rng;
    bool paused;  /* between attempts; else an attempt is under way */
    uint64_t op_deadline_ns;
    uint8_t *out; /* the request frame, kept for retries */
    size_t out_len, out_cap;
    uint8_t *in;  /* the reply read so far */
    size_t in_have, in_cap;
    struct tls_conn *tls; /* b.fd's TLS session; NULL when plain or closed */
};

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need)
        cap2 *= 2;
    uint8_t *b = realloc(*buf, cap2);
    if (!b)
        return -ENOMEM;
    *buf = b;
    *cap = cap2;
    return 0;
}

/* The attempt's deadline or the end of a pause, but never past the
 * operation's own deadline. */
static void wake_at(struct session *s, uint64_t t)
{
    s->b.wake_ns = t < s->op_deadline_ns ? t : s->op_deadline_ns;
}

static void attempt(struct session *s, uint64_t now);

/* The attempt failed or was turned away: try the next node, at once if
 * the reply named the leader, else after a pause. */
static void move_on(struct session *s, const struct client_reply *reply, uint64_t now)
{
    bench_close(&s->b);
    if (kv_nodes_move_on(&s->nodes, reply)) {
        attempt(s, now);
        return;
    }
    s->paused = true;
    wake_at(s, now + KV_CLIENT_RETRY_PAUSE_MS * NS_PER_MS);
}

/* Connects to the target and runs the handshake, both before returning;
 * the node must show a node certificate made for the host dialed. The fd
 * or -errno. */
static int dial_tls(struct session *s, struct tls_ctx *tls)
{
    const char *addr = s->nodes.addrs[s->nodes.target];
    char host[256];
    uint16_t port;
    int rc = tcp_parse_addr(addr, host, sizeof(host), &port);
    int fd = rc < 0 ? rc : tcp_dial(addr, KV_CLIENT_ATTEMPT_MS);
    if (fd < 0)
        return fd;
    struct tls_identity who;
    char err[256];
    rc = tls_conn_connect(&s->tls, tls, fd, host, tcp_now_ms() + KV_CLIENT_ATTEMPT_MS, &who,
                          err, sizeof(err));
    if (rc == 0 && who.role != TLS_ROLE_NODE) {
        tls_conn_free(s->tls);
        s->tls = NULL;
        rc = -EACCES;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* Sends the current request to the target, connecting first if need be. */
static void attempt(struct session *s, uint64_t now)
{
    wake_at(s, now + KV_CLIENT_ATTEMPT_MS * NS_PER_MS);
    s->paused = false;
    s->in_have = 0;
    if (s->b.fd < 0) {
        tls_conn_free(s->tls); /* of the connection closed before */
        s->tls = NULL;
        const struct bench_options *opt = ((const struct load *)bench_ctx(&s->b))->opt;
        int fd = opt->tls ? dial_tls(s, opt->tls)
                          : tcp_dial_start(s->nodes.addrs[s->nodes.target]);
        if (fd < 0 || bench_adopt(&s->b, fd) < 0) {
            move_on(s, NULL, now);
            return;
        }
    }
    bench_request(&s->b, s->out, s->out_len, now);
}

static uint64_t next_rand(struct session *s)
{
    s->rng ^= s->rng << 13, s->rng ^= s->rng >> 7, s->rng ^= s->rng << 17;
    return s->rng;
}

/* The request of operation `op` on key number k, into req; key (cap 32
 * bytes) holds its key or a list's prefix. */
static void build_request(struct session *s, const struct load *load, enum bench_op op,
                          unsigned long long k, char *key, struct client_request *q)
{
    static const uint8_t codes[BENCH_N_OPS] = {
        [BENCH_OP_PUT] = CLIENT_PUT, [BENCH_OP_GET] = CLIENT_GET, [BENCH_OP_CAS] = CLIENT_CAS,
        [BENCH_OP_DELETE] = CLIENT_DELETE, [BENCH_OP_LIST] = CLIENT_LIST};
    int key_len = op == BENCH_OP_LIST
                      ? (k < 10 ? snprintf(key, 32, "key-") : snprintf(key, 32, "key-%llu", k / 10))
                      : snprintf(key, 32, "key-%llu", k);
    bool write = op == BENCH_OP_PUT || op == BENCH_OP_CAS || op == BENCH_OP_DELETE;
    *q = (struct client_request){.op = codes[op], .client_id = s->client_id,
                                 .key = (uint8_t *)key, .key_len = (uint32_t)key_len};
    q->seq = write ? ++s->seq : 0; /* the same number on every retry of this write */
    if (op == BENCH_OP_PUT || op == BENCH_OP_CAS) {
        q->value = (uint8_t *)load->value;
        q->value_len = load->opt->value_size;
    }
    if (op == BENCH_OP_CAS) {
        q->expected = (uint8_t *)load->value;
        q->expected_len = load->opt->value_size;
    }
}

/* Draws the next operation from the mix, encodes it and makes its first
 * attempt. */
static void start_op(struct bench_session *b, uint64_t now)
{
    struct session *s = (struct session *)b;
    const struct load *load = bench_ctx(b);
    const struct bench_options *opt = load->opt;
    unsigned long long k = next_rand(s) % opt->keys;
    enum bench_op op = bench_mix_pick(&opt->mix, (double)(next_rand(s) >> 11) /
                                                     (double)(1ull << 53));
    char key[32];
    struct wire_msg req = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT};
    build_request(s, load, op, k, key, &req.u.request);
    b->op_class = (unsigned)op;
    b->op_start_ns = now;
    s->op_deadline_ns = now + (uint64_t)opt->timeout_ms * NS_PER_MS;
    long n = grow(&s->out, &s->out_cap, wire_size(&req)) ? -ENOMEM
                                                         : wire_encode(&req, s->out, s->out_cap);
    if (n < 0) {
        bench_abort(b, (int)n, now);
        return;
    }
    s->out_len = (size_t)n;
    attempt(s, now);
}

/* The reply is whole in s->in: a final answer ends the operation, anything
 * else sends it elsewhere. */
static void on_reply(struct session *s, size_t frame, uint64_t now)
{
    struct wire_msg reply;
    if (s->in_have != frame || wire_decode(s->in, frame, &reply) != 0 ||
        reply.type != WIRE_CLIENT_REPLY) {
        move_on(s, NULL, now); /* out of step: this connection is done */
        return;
    }
    /* Final answers end the operation: found or not, swapped or not are
     * all the store doing its work; a refusal counts as an error. The
     * others (not the leader, retry) send it elsewhere. */
    uint8_t status = reply.u.reply.status;
    if (status == CLIENT_OK || status == CLIENT_NOT_FOUND || status == CLIENT_MISMATCH)
        bench_op_done(&s->b, true, now);
    else if (status == CLIENT_BAD_REQUEST || status == CLIENT_REFUSED ||
             status == CLIENT_TOO_LARGE)
        bench_op_done(&s->b, false, now);
    else
        move_on(s, &reply.u.reply, now);
}

static void on_readable(struct bench_session *b, uint64_t now)
{
    struct session *s = (struct session *)b;
    for (;;) {
        size_t need = WIRE_HEADER;
        if (s->in_have >= 4) {
            long frame = wire_frame_size(s->in);
            if (frame < 0) {
                move_on(s, NULL, now);
                return;
            }
            if (s->in_have >= (size_t)frame) {
                on_reply(s, (size_t)frame, now);
                return;
            }
            need = (size_t)frame;
        }
        if (grow(&s->in, &s->in_cap, need) != 0) {
            bench_close(&s->b);
            bench_abort(&s->b, -ENOMEM, now);
            return;
        }
        ssize_t r;
        short events;
        if (s->tls) {
            r = tls_conn_read(s->tls, s->in + s->in_have, s->in_cap - s->in_have, &events);
            if (r == -EAGAIN)
                return; /* TLS 1.3 without renegotiation: a read waits for input only */
        } else {
            r = recv(s->b.fd, s->in + s->in_have, s->in_cap - s->in_have, 0);
        }
        if (!s->tls && r < 0 && errno == EINTR)
            continue;
        if (!s->tls && r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            move_on(s, NULL, now); /* closed or reset */
            return;
        }
        s->in_have += (size_t)r;
    }
}

/* The connect or a send failed. */
static void on_broken(struct bench_session *b, uint64_t now)
{
    move_on((struct session *)b, NULL, now);
}

/* The operation's deadline (an error), an attempt's (a silent node costs
 * one attempt, not the whole timeout) or the end of a pause. */
static void on_timer(struct bench_session *b, uint64_t now)
{
    struct session *s = (struct session *)b;
    if (now >= s->op_deadline_ns) {
        bench_close(b); /* a late reply must not answer the next request */
        bench_op_done(b, false, now);
    } else if (s->paused) {
        attempt(s, now);
    } else {
        move_on(s, NULL, now);
    }
}

static long tls_write(struct bench_session *b, const void *p, size_t n)
{
    struct session *s = (struct session *)b;
    short events;
    return tls_conn_write(s->tls, p, n, &events);
}

static int session_init(struct bench_session *b)
{
    struct session *s = (struct session *)b;
    const struct bench_options *opt = ((const struct load *)bench_ctx(b))->opt;
    s->client_id = kv_client_new_id();
    /* The keys follow from the session's random client id, so that every
     * run and every session draws its own (runs one after another fill a
     * key space; fixed seeds wrote the same keys each time). splitmix64's
     * finalizer spreads the id's bits; xorshift needs a nonzero state. */
    uint64_t z = s->client_id + 0x9e3779b97f4a7c15ull * (b->index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s->rng = (z ^ (z >> 31)) | 1;
    /* Sessions start at different nodes, to spread them out. */
    return kv_nodes_init(&s->nodes, opt->addrs, opt->n_addrs, s->client_id);
}

static void session_free(struct bench_session *b)
{
    struct session *s = (struct session *)b;
    kv_nodes_free(&s->nodes);
    tls_conn_free(s->tls);
    free(s->out);
    free(s->in);
}

int bench_run(const struct bench_options *opt, struct bench_report *out)
{
    if (opt->clients == 0 || opt->keys == 0 || opt->seconds <= 0 || opt->n_addrs == 0)
        return -EINVAL;
    struct load load = {.opt = opt, .value = malloc(opt->value_size + 1)};
    if (!load.value)
        return -ENOMEM;
    memset(load.value, 'v', opt->value_size);
    const struct bench_driver d = {.session_size = sizeof(struct session), .ctx = &load,
                                   .init = session_init, .free = session_free,
                                   .start = start_op, .readable = on_readable,
                                   .broken = on_broken, .timer = on_timer,
                                   .write = opt->tls ? tls_write : NULL};
    int rc = bench_loops_run_classes(&d, opt->clients, opt->seconds, BENCH_N_OPS, &out->total,
                                     out->by_op);
    free(load.value);
    return rc;
}
