/*
 * fuzz_handshake.c - libFuzzer target for what a node reads from a
 * connection before its handshake is done: whatever arrives there comes
 * from anyone who can reach the port.
 *
 * The first byte of an input picks what the rest is fed to:
 *
 *   0  opening_classify(): the TLS-or-plaintext decision on the first
 *      bytes (net/opening.c). A TLS verdict needs the handshake record
 *      type first; a frame verdict needs a frame's length and version;
 *      every refusal has a sentence.
 *   1  hello_decode(): the hello frame and its answer (net/hello.c).
 *      Anything that decodes re-encodes to the same bytes.
 *   2  tls_identity_parse(): the common name that gives a certificate's
 *      role and node id (net/tls_names.c). A node identity prints back as
 *      exactly the name it was read from; "client" is the only client.
 *   3  tls_der_identity(): DER bytes as a certificate, its identity and
 *      its subject alternative names as the log shows them. The names
 *      always fit, NUL-terminated, in their buffer.
 *   4  tls_conn_accept(): the bytes as what a client sends a node, over a
 *      socket pair, into a real server context (certificates made at
 *      start-up by raft certs' code). It must end in a refusal with a
 *      reason, never a session: no input can finish a mutual handshake.
 *   5  tls_conn_connect(): the same as what a node dialing a peer reads.
 *
 * ASan and UBSan catch reads outside a buffer and undefined behaviour,
 * LSan a leak; a violated property aborts with a line saying which.
 *
 * Build and run: tests/fuzz/run.sh handshake (make fuzz).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/hello.h"
#include "net/opening.h"
#include "net/tcp_internal.h"
#include "net/tls.h"
#include "net/tls_certs.h"
#include "net/tls_names.h"

static struct tls_ctx *node_ctx; /* node-0 of a CA made at start-up */
static char certs_dir[64];

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_handshake: property violated: %s\n", what);
    abort();
}

static void remove_certs(void)
{
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", certs_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_handshake: could not remove %s\n", certs_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    strcpy(certs_dir, "/tmp/fuzz-handshake-XXXXXX");
    char err[512], ca[128], cert[128], key[128];
    if (!mkdtemp(certs_dir) || tls_certs_make(certs_dir, 1, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_handshake: cannot make certificates in %s\n", certs_dir);
        exit(1);
    }
    atexit(remove_certs);
    snprintf(ca, sizeof(ca), "%s/ca.crt", certs_dir);
    snprintf(cert, sizeof(cert), "%s/node-0.crt", certs_dir);
    snprintf(key, sizeof(key), "%s/node-0.key", certs_dir);
    struct tls_files files = {.ca = ca, .cert = cert, .key = key};
    if (tls_ctx_new(&node_ctx, &files, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_handshake: %s\n", err);
        exit(1);
    }
    return 0;
}

static void check_opening(const uint8_t *p, size_t n)
{
    if (n == 0)
        return;
    enum opening o = opening_classify(p, n);
    if (o == OPENING_TLS && p[0] != 22)
        fail("a TLS verdict on bytes that do not start a handshake record");
    if (o == OPENING_FRAME && (n < 6 || p[0] != 0 || p[4] != WIRE_VERSION))
        fail("a frame verdict on bytes that cannot start a frame");
    if ((o == OPENING_TLS) != (opening_refusal(o, true) == NULL))
        fail("a TLS port refuses TLS, or lets something else through");
    if ((o == OPENING_TLS) != (opening_refusal(o, false) != NULL))
        fail("a plain port's refusal is not exactly TLS's");
}

static void check_hello(const uint8_t *p, size_t n)
{
    struct hello h;
    if (hello_decode(p, n, &h) != 0)
        return;
    uint8_t again[HELLO_REPLY_SIZE];
    long len = hello_encode(&h, again, sizeof(again));
    if (len < 0 || (size_t)len != n || memcmp(again, p, n) != 0)
        fail("a hello that decodes does not re-encode to the same bytes");
}

static void check_common_name(const uint8_t *p, size_t n)
{
    char cn[80];
    n = n < sizeof(cn) - 1 ? n : sizeof(cn) - 1;
    memcpy(cn, p, n);
    cn[n] = '\0';
    struct tls_identity id = tls_identity_parse(cn);
    char back[32];
    if (id.role == TLS_ROLE_NODE && strcmp(tls_identity_str(id, back, sizeof(back)), cn) != 0)
        fail("a node identity read from a name that is not its own spelling");
    if (id.role == TLS_ROLE_CLIENT && strcmp(cn, "client") != 0)
        fail("a client identity from a name that is not \"client\"");
}

static void check_der(const uint8_t *p, size_t n)
{
    struct tls_identity id;
    char names[128];
    memset(names, 'x', sizeof(names));
    if (tls_der_identity(p, n, &id, names, sizeof(names)) != 0)
        return;
    if (memchr(names, '\0', sizeof(names)) == NULL)
        fail("the names of a certificate overflow their buffer");
    if (id.role != TLS_ROLE_NONE && id.role != TLS_ROLE_NODE && id.role != TLS_ROLE_CLIENT)
        fail("an identity of no known kind");
}

/* Feeds the bytes to a handshake over a socket pair: the node's end is
 * non-blocking, as every socket of the node is; the other end says all
 * it has to say, then closes its half. */
static void check_handshake(const uint8_t *p, size_t n, bool accept)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || tcp_set_nonblock(sv[0]) != 0)
        fail("no socket pair");
    if (n > 0 && send(sv[1], p, n, MSG_NOSIGNAL) != (ssize_t)n)
        fail("the socket pair did not take the input");
    shutdown(sv[1], SHUT_WR);
    struct tls_conn *conn = NULL;
    struct tls_identity who;
    char err[256] = "";
    int64_t deadline = tcp_now_ms() + 2000;
    int rc = accept ? tls_conn_accept(&conn, node_ctx, sv[0], deadline, &who, err, sizeof(err))
                    : tls_conn_connect(&conn, node_ctx, sv[0], "127.0.0.1", deadline, &who,
                                       err, sizeof(err));
    if (rc == 0)
        fail("a handshake finished on bytes that cannot finish one");
    if (conn != NULL || err[0] == '\0')
        fail("a failed handshake left a session, or no reason");
    close(sv[0]);
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 6) {
    case 0: check_opening(p, n); break;
    case 1: check_hello(p, n); break;
    case 2: check_common_name(p, n); break;
    case 3: check_der(p, n); break;
    case 4: check_handshake(p, n, true); break;
    default: check_handshake(p, n, false); break;
    }
    return 0;
}
