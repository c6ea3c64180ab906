/*
 * gen_corpus.c - writes the seed corpus of the fuzz targets:
 *
 *   tests/fuzz/corpus/wire/seed-*      valid frames of every type (and a
 *                                      few near misses), via wire_encode()
 *   tests/fuzz/corpus/storage/seed-*   valid data directories, written by
 *                                      the real storage code into a
 *                                      temporary directory and packed in
 *                                      the format fuzz_storage.c reads
 *   tests/fuzz/corpus/handshake/seed-* first bytes (a real ClientHello, a
 *                                      plain frame, HTTP), hellos, common
 *                                      names, certificates of raft certs
 *                                      as DER, a real ServerHello, each
 *                                      after the byte that picks its
 *                                      mode in fuzz_handshake.c
 *
 * Seeds let the fuzzer start from inputs that get past the first checks;
 * it mutates them from there. Run by tests/fuzz/run.sh when a corpus
 * directory is missing, or by hand:
 *
 *   cc -std=c11 -D_DEFAULT_SOURCE -I. -pthread tests/fuzz/gen_corpus.c \
 *      raft/storage/*.c raft/membership.c net/opening.c net/hello.c net/tls.c \
 *      net/tls_names.c net/tls_certs.c net/tcp_socket.c net/wire.c net/wire_members.c \
 *      -lssl -lcrypto -o build/gen_corpus
 *   build/gen_corpus tests/fuzz/corpus
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/hello.h"
#include "net/tls_certs.h"
#include "net/wire.h"
#include "raft/storage/storage.h"

static const char *out_dir;

static void write_seed(const char *kind, const char *name, const uint8_t *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/seed-%s", out_dir, kind, name);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        fprintf(stderr, "gen_corpus: cannot write %s\n", path);
        exit(1);
    }
}

/* ---- wire ---- */

static void wire_seed(const char *name, const struct wire_msg *m)
{
    uint8_t buf[4096];
    long n = wire_encode(m, buf, sizeof(buf));
    if (n < 0) {
        fprintf(stderr, "gen_corpus: cannot encode %s: %s\n", name, strerror((int)-n));
        exit(1);
    }
    write_seed("wire", name, buf, (size_t)n);
}

static void raft_seed(const char *name, const struct raft_msg *r)
{
    struct wire_msg m;
    wire_from_raft(&m, r);
    m.u.raft.id = 42; /* every Raft frame ends with its message id */
    wire_seed(name, &m);
}

static void make_wire_seeds(void)
{
    struct raft_msg r = {.type = RAFT_MSG_REQUEST_VOTE, .from = 1};
    r.u.rv = (struct raft_request_vote){.term = 7, .last_log_index = 42, .last_log_term = 6};
    raft_seed("request-vote", &r);
    r.u.rv.pre_vote = 1;
    r.u.rv.term = 8;
    raft_seed("pre-vote", &r);

    r = (struct raft_msg){.type = RAFT_MSG_REQUEST_VOTE_REPLY, .from = 2};
    r.u.rv_reply = (struct raft_request_vote_reply){.term = 7, .vote_granted = 1};
    raft_seed("request-vote-reply", &r);

    uint8_t cmd[] = "put colour blue";
    struct raft_entry entries[3] = {
        {.term = 3, .type = RAFT_ENTRY_NOOP},
        {.term = 3, .type = RAFT_ENTRY_COMMAND, .len = sizeof(cmd) - 1, .data = cmd},
        {.term = 4, .type = RAFT_ENTRY_COMMAND, .len = 4, .data = cmd},
    };
    r = (struct raft_msg){.type = RAFT_MSG_APPEND_ENTRIES, .from = 0};
    r.u.ae = (struct raft_append_entries){.term = 4, .prev_log_index = 9, .prev_log_term = 3,
                                          .leader_commit = 9};
    raft_seed("heartbeat", &r);
    r.u.ae.n_entries = 3;
    r.u.ae.entries = entries;
    raft_seed("append-entries", &r);

    r = (struct raft_msg){.type = RAFT_MSG_APPEND_ENTRIES_REPLY, .from = 1};
    r.u.ae_reply = (struct raft_append_entries_reply){.term = 4, .success = 1, .match_index = 12};
    raft_seed("append-entries-reply", &r);
    r.u.ae_reply = (struct raft_append_entries_reply){.term = 4, .conflict_term = 2,
                                                      .conflict_index = 5};
    raft_seed("append-entries-conflict", &r);

    uint8_t snap[64];
    for (size_t i = 0; i < sizeof(snap); i++)
        snap[i] = (uint8_t)(i * 7);
    r = (struct raft_msg){.type = RAFT_MSG_INSTALL_SNAPSHOT, .from = 0};
    r.u.is = (struct raft_install_snapshot){.term = 5, .last_index = 100, .last_term = 4,
                                            .offset = 0, .total = 64, .len = 64, .data = snap,
                                            .done = 1};
    raft_seed("install-snapshot", &r);

    r = (struct raft_msg){.type = RAFT_MSG_INSTALL_SNAPSHOT_REPLY, .from = 2};
    r.u.is_reply = (struct raft_install_snapshot_reply){.term = 5, .next_offset = 64};
    raft_seed("install-snapshot-reply", &r);

    struct wire_msg m = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT};
    m.u.request = (struct client_request){.op = CLIENT_PUT, .client_id = 0x1234, .seq = 1,
                                          .key_len = 6, .key = (uint8_t *)"colour",
                                          .value_len = 4, .value = (uint8_t *)"blue"};
    wire_seed("client-put", &m);
    m.u.request.op = CLIENT_GET;
    m.u.request.value_len = 0;
    m.u.request.value = NULL;
    wire_seed("client-get", &m);
    m.u.request = (struct client_request){.op = CLIENT_STATUS};
    wire_seed("client-status", &m);

    m = (struct wire_msg){.type = WIRE_CLIENT_REPLY, .from = 1};
    m.u.reply = (struct client_reply){.status = CLIENT_NOT_LEADER, .leader_hint = 2,
                                      .leader_addr_len = 14,
                                      .leader_addr = (uint8_t *)"127.0.0.1:8002",
                                      .leader = 2, .term = 3};
    wire_seed("client-reply-redirect", &m);
    m.u.reply = (struct client_reply){.status = CLIENT_OK, .leader_hint = 1, .value_len = 4,
                                      .value = (uint8_t *)"blue", .id = 1, .role = RAFT_LEADER,
                                      .term = 3, .leader = 1, .commit = 10, .applied = 10,
                                      .last_index = 11};
    wire_seed("client-reply-value", &m);

    /* Near misses: a frame cut short, and a header announcing too much. */
    uint8_t buf[256];
    long n = wire_encode(&m, buf, sizeof(buf));
    write_seed("wire", "truncated", buf, (size_t)n - 3);
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xf0, WIRE_VERSION, 3, 0, 0, 0, 1};
    write_seed("wire", "oversized-length", huge, sizeof(huge));

    /* Membership: a change, and a reply carrying a configuration. */
    m = (struct wire_msg){.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT};
    m.u.request = (struct client_request){.op = CLIENT_MEMBER_ADD, .member_id = 3,
                                          .learner = 1, .wait_ms = 10000, .value_len = 14,
                                          .value = (uint8_t *)"127.0.0.1:8003"};
    wire_seed("client-member-add", &m);
    struct raft_membership_view v = {.index = 7, .committed = true};
    const char *addrs[] = {"127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8003"};
    for (uint32_t i = 0; i < 3; i++) {
        v.config.members[i] = (struct raft_member){.id = i == 2 ? 3 : i, .voter = i != 2};
        snprintf(v.config.members[i].addr, RAFT_ADDR_MAX, "%s", addrs[i]);
    }
    v.config.n = 3;
    v.match[0] = 7;
    uint8_t view[WIRE_MEMBERS_MAX];
    m = (struct wire_msg){.type = WIRE_CLIENT_REPLY, .from = 0};
    m.u.reply = (struct client_reply){.status = CLIENT_OK, .leader_hint = 0, .value = view,
                                      .role = RAFT_LEADER, .term = 2};
    m.u.reply.value_len = (uint32_t)wire_members_encode(&v, view);
    wire_seed("client-reply-members", &m);
}

/* ---- storage ---- */

/* Packs the files of dir in fuzz_storage.c's input format. */
static void pack_dir(const char *name, const char *dir)
{
    uint8_t *out = NULL;
    size_t len = 0;
    DIR *d = opendir(dir);
    if (!d)
        exit(1);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            exit(1);
        uint8_t data[1 << 16];
        size_t n = fread(data, 1, sizeof(data), f);
        fclose(f);
        uint8_t head[1 + 8 + 1 + 64 + 4];
        size_t h = 0;
        unsigned long long first;
        if (strcmp(e->d_name, "meta") == 0) {
            head[h++] = 0;
        } else if (strcmp(e->d_name, "snapshot") == 0) {
            head[h++] = 1;
        } else if (sscanf(e->d_name, "log-%16llx", &first) == 1 && strlen(e->d_name) == 20) {
            head[h++] = 2;
            for (int i = 7; i >= 0; i--)
                head[h++] = (uint8_t)(first >> (8 * i));
        } else if (strcmp(e->d_name, "meta.tmp") == 0) {
            head[h++] = 3;
        } else if (strcmp(e->d_name, "snapshot.tmp") == 0) {
            head[h++] = 4;
        } else {
            size_t nl = strlen(e->d_name) > 32 ? 32 : strlen(e->d_name);
            head[h++] = 5;
            head[h++] = (uint8_t)nl;
            memcpy(head + h, e->d_name, nl);
            h += nl;
        }
        for (int i = 3; i >= 0; i--)
            head[h++] = (uint8_t)(n >> (8 * i));
        out = realloc(out, len + h + n);
        if (!out)
            exit(1);
        memcpy(out + len, head, h);
        memcpy(out + len + h, data, n);
        len += h + n;
    }
    closedir(d);
    write_seed("storage", name, out, len);
    free(out);
}

static void check(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "gen_corpus: %s failed: %s\n", what, strerror(-rc));
        exit(1);
    }
}

/* A fresh storage in a new temporary directory, loaded and ready. */
static struct file_storage *fresh(char *dir)
{
    strcpy(dir, "/tmp/gen-corpus-XXXXXX");
    if (!mkdtemp(dir))
        exit(1);
    struct file_storage *s;
    check(file_storage_open(&s, dir, NULL, NULL), "open");
    struct raft_persisted p;
    struct raft_storage ops = file_storage_ops(s);
    check(ops.load(ops.ctx, &p), "load");
    return s;
}

static void done(const char *name, struct file_storage *s, char *dir)
{
    file_storage_close(s);
    pack_dir(name, dir);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "gen_corpus: could not remove %s\n", dir);
}

static void append_n(struct raft_storage *ops, uint64_t first, size_t n, uint64_t term)
{
    struct raft_entry e[8];
    char text[8][24];
    for (size_t i = 0; i < n; i++) {
        snprintf(text[i], sizeof(text[i]), "cmd %llu", (unsigned long long)(first + i));
        e[i] = (struct raft_entry){.term = term, .type = i == 0 && first == 1 ? RAFT_ENTRY_NOOP
                                                                              : RAFT_ENTRY_COMMAND,
                                   .len = (uint32_t)strlen(text[i]), .data = (uint8_t *)text[i]};
        if (e[i].type == RAFT_ENTRY_NOOP) {
            e[i].len = 0;
            e[i].data = NULL;
        }
    }
    check(ops->append(ops->ctx, first, e, n), "append");
}

static void make_storage_seeds(void)
{
    char dir[64];
    write_seed("storage", "empty", NULL, 0);

    struct file_storage *s = fresh(dir);
    struct raft_storage ops = file_storage_ops(s);
    check(ops.save_term_vote(ops.ctx, 3, 1), "save_term_vote");
    done("meta-only", s, dir);

    s = fresh(dir);
    ops = file_storage_ops(s);
    check(ops.save_term_vote(ops.ctx, 2, 0), "save_term_vote");
    append_n(&ops, 1, 3, 1);
    append_n(&ops, 4, 2, 2);
    done("one-segment", s, dir);

    s = fresh(dir);
    ops = file_storage_ops(s);
    file_storage_set_segment_size(s, 60);
    check(ops.save_term_vote(ops.ctx, 5, 2), "save_term_vote");
    for (uint64_t i = 1; i <= 12; i += 3)
        append_n(&ops, i, 3, 1 + i / 4);
    done("many-segments", s, dir);

    s = fresh(dir);
    ops = file_storage_ops(s);
    file_storage_set_segment_size(s, 60);
    check(ops.save_term_vote(ops.ctx, 4, RAFT_NO_NODE), "save_term_vote");
    for (uint64_t i = 1; i <= 9; i += 3)
        append_n(&ops, i, 3, 3);
    check(ops.save_snapshot(ops.ctx, 5, 3, (const uint8_t *)"state as of 5", 13), "snapshot");
    append_n(&ops, 10, 2, 4);
    done("snapshot-and-log", s, dir);

    s = fresh(dir);
    ops = file_storage_ops(s);
    check(ops.save_term_vote(ops.ctx, 6, 1), "save_term_vote");
    check(ops.save_snapshot(ops.ctx, 20, 5, (const uint8_t *)"snapshot only", 13), "snapshot");
    done("snapshot-only", s, dir);

    s = fresh(dir);
    ops = file_storage_ops(s);
    check(ops.save_term_vote(ops.ctx, 3, 0), "save_term_vote");
    append_n(&ops, 1, 5, 2);
    check(ops.truncate(ops.ctx, 3), "truncate");
    append_n(&ops, 3, 2, 3);
    done("truncated-and-rewritten", s, dir);

    /* A torn tail: the last record cut in half, as a power cut leaves it. */
    s = fresh(dir);
    ops = file_storage_ops(s);
    append_n(&ops, 1, 4, 1);
    append_n(&ops, 5, 1, 2);
    file_storage_close(s);
    char seg[128];
    snprintf(seg, sizeof(seg), "%s/log-0000000000000001", dir);
    struct stat st;
    if (stat(seg, &st) != 0 || truncate(seg, st.st_size - 7) != 0)
        exit(1);
    s = NULL;
    pack_dir("torn-tail", dir);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        exit(1);

    /* Leftovers: a .tmp from a replacement that crashed, a stranger's file. */
    s = fresh(dir);
    ops = file_storage_ops(s);
    append_n(&ops, 1, 2, 1);
    char extra[128];
    snprintf(extra, sizeof(extra), "%s/meta.tmp", dir);
    FILE *f = fopen(extra, "wb");
    if (!f || fwrite("RFTMhalf", 1, 8, f) != 8 || fclose(f))
        exit(1);
    snprintf(extra, sizeof(extra), "%s/notes.txt", dir);
    f = fopen(extra, "wb");
    if (!f || fwrite("hello", 1, 5, f) != 5 || fclose(f))
        exit(1);
    done("leftovers", s, dir);
}

/* ---- handshake ---- */

/* A seed of fuzz_handshake.c: the mode byte, then the bytes. */
static void handshake_seed(const char *name, uint8_t mode, const void *bytes, size_t len)
{
    uint8_t *buf = malloc(len + 1);
    if (!buf)
        exit(1);
    buf[0] = mode;
    if (len)
        memcpy(buf + 1, bytes, len);
    write_seed("handshake", name, buf, len + 1);
    free(buf);
}

static SSL_CTX *handshake_ctx(const char *dir, const char *name, bool server)
{
    char path[256];
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
    int ok = SSL_CTX_use_certificate_file(ctx, path, SSL_FILETYPE_PEM);
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    ok = ok && SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM);
    if (!ok)
        exit(1);
    if (server)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return ctx;
}

/* Runs one step of ssl with in as its input; what it writes goes to out. */
static size_t handshake_step(SSL *ssl, const void *in, size_t in_len, uint8_t *out, size_t cap)
{
    BIO *rbio = SSL_get_rbio(ssl), *wbio = SSL_get_wbio(ssl);
    if (in_len)
        BIO_write(rbio, in, (int)in_len);
    SSL_do_handshake(ssl);
    int n = BIO_read(wbio, out, (int)cap);
    return n > 0 ? (size_t)n : 0;
}

static SSL *handshake_ssl(SSL_CTX *ctx, bool server)
{
    SSL *ssl = SSL_new(ctx);
    SSL_set_bio(ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    if (server)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    return ssl;
}

/* A real ClientHello (node-1 dialing) and the ServerHello flight node-0
 * answers it with. */
static void handshake_flights(const char *dir)
{
    SSL_CTX *cctx = handshake_ctx(dir, "node-1", false), *sctx = handshake_ctx(dir, "node-0", true);
    SSL *client = handshake_ssl(cctx, false), *server = handshake_ssl(sctx, true);
    static uint8_t hello[16384], answer[16384];
    size_t hello_len = handshake_step(client, NULL, 0, hello, sizeof(hello));
    size_t answer_len = handshake_step(server, hello, hello_len, answer, sizeof(answer));
    if (hello_len == 0 || answer_len == 0)
        exit(1);
    handshake_seed("opening-client-hello", 0, hello, hello_len);
    handshake_seed("accept-client-hello", 4, hello, hello_len);
    handshake_seed("accept-half-client-hello", 4, hello, hello_len / 2);
    handshake_seed("connect-server-hello", 5, answer, answer_len);
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
}

static void handshake_der(const char *dir, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
    FILE *f = fopen(path, "r");
    X509 *cert = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    unsigned char *der = NULL;
    int len = cert ? i2d_X509(cert, &der) : -1;
    if (len <= 0)
        exit(1);
    char seed[64];
    snprintf(seed, sizeof(seed), "der-%s", name);
    handshake_seed(seed, 3, der, (size_t)len);
    OPENSSL_free(der);
    X509_free(cert);
}

static void handshake_hellos(void)
{
    struct hello h = {.type = WIRE_HELLO, .from = 1, .cluster = {.known = true}};
    for (int i = 0; i < CLUSTER_ID_SIZE; i++)
        h.cluster.bytes[i] = (uint8_t)(0x30 + i);
    uint8_t buf[HELLO_REPLY_SIZE];
    handshake_seed("hello", 1, buf, (size_t)hello_encode(&h, buf, sizeof(buf)));
    struct hello none = {.type = WIRE_HELLO, .from = 3};
    handshake_seed("hello-no-cluster", 1, buf, (size_t)hello_encode(&none, buf, sizeof(buf)));
    struct hello welcome = h;
    welcome.type = WIRE_HELLO_REPLY;
    handshake_seed("hello-welcome", 1, buf, (size_t)hello_encode(&welcome, buf, sizeof(buf)));
    welcome.verdict = CLUSTER_OTHER;
    handshake_seed("hello-other", 1, buf, (size_t)hello_encode(&welcome, buf, sizeof(buf)));
}

static void make_handshake_seeds(void)
{
    char dir[] = "/tmp/gen-corpus-certs-XXXXXX";
    char err[512];
    if (!mkdtemp(dir) || tls_certs_make(dir, 2, "10.0.0.5,db1.example.com", err,
                                        sizeof(err)) != 0) {
        fprintf(stderr, "gen_corpus: cannot make certificates: %s\n", err);
        exit(1);
    }
    handshake_flights(dir);
    handshake_der(dir, "node-0");
    handshake_der(dir, "client");
    handshake_der(dir, "ca");
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "gen_corpus: could not remove %s\n", dir);

    struct wire_msg m = {.type = WIRE_CLIENT_REQUEST, .from = WIRE_FROM_CLIENT};
    m.u.request.op = CLIENT_STATUS;
    uint8_t frame[64];
    handshake_seed("opening-plain-frame", 0, frame, (size_t)wire_encode(&m, frame, sizeof(frame)));
    handshake_seed("opening-http", 0, "GET / HTTP/1.1\r\n", 16);
    handshake_hellos();
    static const char *const names[] = {"node-3", "client", "node-123456789", "node-01"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char seed[32];
        snprintf(seed, sizeof(seed), "cn-%zu", i);
        handshake_seed(seed, 2, names[i], strlen(names[i]));
    }
}

int main(int argc, char **argv)
{
    out_dir = argc > 1 ? argv[1] : "tests/fuzz/corpus";
    char path[512];
    snprintf(path, sizeof(path), "%s", out_dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/wire", out_dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/storage", out_dir);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/handshake", out_dir);
    mkdir(path, 0755);
    make_wire_seeds();
    make_storage_seeds();
    make_handshake_seeds();
    return 0;
}
