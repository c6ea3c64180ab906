/*
 * cli_tls.c - the TLS flags' files, a client's TLS context, the cluster id
 * of --cluster-name and --peers, and `raft certs` (see cli_tls.h).
 */
#include "cli_tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/tls_certs.h"

int cli_tls_paths(const char *sub, const struct tls_flags *f, const char *name,
                  struct tls_paths *out)
{
    char err[256];
    if (tls_flags_resolve(f, name, out, err, sizeof(err)) != 0)
        return cli_usage_error(sub, "%s", err);
    return 0;
}

int cli_cluster_id(const char *sub, const char *name, char *const *peers, uint32_t n,
                   struct cluster_id *out)
{
    if (name && strlen(name) > CLI_CLUSTER_NAME_MAX)
        return cli_usage_error(sub, "--cluster-name must have at most %d bytes; got %zu",
                               CLI_CLUSTER_NAME_MAX, strlen(name));
    if (!name && n == 0) {
        *out = (struct cluster_id){.known = false}; /* joins a running cluster later */
        return 0;
    }
    int rc = cluster_id_derive(out, name, peers, n);
    if (rc)
        return cli_usage_error(sub, "cannot make the cluster id: %s", strerror(-rc));
    return 0;
}

int cli_tls_client(const char *sub, const struct tls_flags *f, struct tls_ctx **out)
{
    struct tls_paths p;
    *out = NULL;
    int rc = cli_tls_paths(sub, f, "client", &p);
    if (rc || !p.files.ca)
        return rc;
    char err[256];
    rc = tls_ctx_new(out, &p.files, err, sizeof(err));
    if (rc)
        return cli_usage_error(sub, "%s %s (CA %s, certificate %s, key %s)",
                               f->dir ? "--tls-dir:" : "TLS:", err, p.ca, p.cert, p.key);
    if (tls_ctx_identity(*out).role != TLS_ROLE_CLIENT) {
        tls_ctx_free(*out);
        *out = NULL;
        return cli_usage_error(sub, "--tls-cert must be a client certificate (CN=client); "
                               "%s is not", p.cert);
    }
    return 0;
}

struct certs_options {
    const char *out, *hosts;
    long nodes;
};

int cli_cmd_certs(int argc, char **argv)
{
    struct certs_options o = {.nodes = 3};
    const struct cli_option opts[] = {
        {.name = "out", .kind = CLI_STRING, .metavar = "DIR", .dest = &o.out,
         .required = true, .help = "the directory to write ca.crt, node-I.crt/.key and "
                                   "client.crt/.key into (made if missing)"},
        {.name = "nodes", .kind = CLI_LONG, .metavar = "N", .dest = &o.nodes, .lo = 1,
         .hi = RAFT_MAX_ID + 1, .help = "how many node certificates: node-0 .. node-N-1, "
                                       "the ids of members to be added later included"},
        {.name = "hosts", .kind = CLI_STRING, .metavar = "H,...", .dest = &o.hosts,
         .accepts = "a comma-separated list of host names or IP addresses",
         .help = "names and addresses the nodes are reached at, besides 127.0.0.1 and "
                 "localhost"},
    };
    const struct cli_command cmd = {
        .name = "certs", .synopsis = "--out DIR [--nodes N] [--hosts H,...]",
        .summary = "Makes a CA, a certificate per node and a client certificate for "
                   "mutual TLS; the keys are readable by their owner only.",
        .options = opts, .n_options = sizeof(opts) / sizeof(opts[0])};
    struct cli_words w;
    int rc = cli_parse(&cmd, argc, argv, &w);
    if (rc == 0)
        rc = cli_no_words(&cmd, &w);
    if (rc)
        return cli_exit_code(rc);
    char err[512];
    rc = tls_certs_make(o.out, (unsigned)o.nodes, o.hosts, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "raft certs: %s.\n", err);
        return rc == -EINVAL ? CLI_EXIT_USAGE : 1;
    }
    printf("Wrote %s/ca.crt (and ca.key: keep it offline), node-0 .. node-%ld .crt/.key "
           "and client.crt/.key.\n", o.out, o.nodes - 1);
    return 0;
}
