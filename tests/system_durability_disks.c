/*
 * system_durability_disks.c - what a node does when its disk lets it
 * down: three `raft node` processes (the binary named by $RAFT_BIN); a
 * follower whose data directory is wiped catches up by InstallSnapshot
 * (Raft paper §7) and then holds a whole copy; a node whose log segment,
 * snapshot or metadata is corrupt refuses to start, naming the file and
 * the offset; a torn write at the tail of the log is cut off with a
 * warning and the entry fetched again from the leader.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "kv/client.h"
#include "tests/chaos/cluster.h"
#include "tests/support/files.h"

#define NODES 3

/* ---- the cluster ---- */

/* Three nodes that reach each other directly, with short election
 * timeouts. snapshot_every: --snapshot-every. The cluster lives in
 * *state, for chaos_cluster_teardown(). */
static struct chaos_cluster *cluster_new(void **state, const char *snapshot_every)
{
    struct chaos_cluster_options o = {.nodes = NODES, .election_min_ms = 150,
                                      .election_max_ms = 300, .heartbeat_ms = 40,
                                      .snapshot_every = snapshot_every, .name = "durability",
                                      .direct = true};
    return chaos_cluster_start_or_fail(state, &o);
}

/* ---- files ---- */

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0xff;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the log segments in dir, sorted (oldest first); returns the
 * count, at most max. The names are malloc'd. */
static int list_segments(const char *dir, char **names, int max)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max)
        if (strncmp(e->d_name, "log-", 4) == 0)
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    return n;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
}

/* ---- (b) an empty follower catches up by InstallSnapshot ---- */

static void put_ok(struct kv_client *kc, const char *key, const char *value, size_t len)
{
    int rc = kv_client_put(kc, key, (uint32_t)strlen(key), value, (uint32_t)len);
    if (rc)
        fprintf(stderr, "put %s failed: %s\n", key, strerror(-rc));
    assert_int_equal(rc, 0);
}

static void put_numbered(struct kv_client *kc, int from, int to)
{
    char key[32], value[32];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof(key), "b-%d", i);
        snprintf(value, sizeof(value), "value-%d", i);
        put_ok(kc, key, value, strlen(value));
    }
}

/* Reads every key put_numbered() wrote, through a client whose reads
 * retry through elections for up to 15 s. */
static void get_numbered(struct chaos_cluster *c, int from, int to)
{
    struct kv_client *kc;
    assert_int_equal(kv_client_open(&kc, c->addrs, NODES, 15000), 0);
    char key[32], want[32];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof(key), "b-%d", i);
        snprintf(want, sizeof(want), "value-%d", i);
        uint8_t *v = NULL;
        uint32_t len = 0;
        int rc = kv_client_get(kc, key, (uint32_t)strlen(key), &v, &len);
        if (rc || len != strlen(want) || memcmp(v, want, len) != 0)
            fprintf(stderr, "get %s: rc %d, got '%.*s', want '%s'\n", key, rc, (int)len,
                    v ? (char *)v : "", want);
        assert_int_equal(rc, 0);
        assert_memory_equal(v, want, len);
        free(v);
    }
    kv_client_close(kc);
}

/* `raft dump DIR`: returns the snapshot index it reports (0: none). */
static uint64_t dumped_snapshot_index(struct chaos_cluster *c, int i)
{
    char dir[96], out[128];
    chaos_cluster_node_dir(c, (unsigned)i, dir, sizeof(dir));
    snprintf(out, sizeof(out), "%s/dump-%d.txt", c->dir, i);
    char *argv[] = {(char *)c->bin, "dump", dir, NULL};
    assert_int_equal(test_run_to_file(argv, out, 10000), 0);
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    char line[512];
    uint64_t index = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "snapshot: index %" SCNu64, &index) == 1)
            break;
    fclose(f);
    return index;
}

static void wipe_dir(struct chaos_cluster *c, int i)
{
    char dir[96], cmd[160];
    chaos_cluster_node_dir(c, (unsigned)i, dir, sizeof(dir));
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_empty_follower_catches_up_by_snapshot(void **state)
{
    struct chaos_cluster *c = cluster_new(state, "50");
    int leader = chaos_cluster_leader(c, 10000);
    assert_true(leader >= 0);
    struct kv_client *kc;
    assert_int_equal(kv_client_open(&kc, c->addrs, NODES, 5000), 0);
    put_numbered(kc, 0, 150);

    /* A follower loses its disk: stopped, directory wiped, more writes. */
    leader = chaos_cluster_leader(c, 10000);
    int f = (leader + 1) % NODES;
    chaos_cluster_kill(c, (unsigned)f, SIGKILL);
    wipe_dir(c, f);
    put_numbered(kc, 150, 250);
    chaos_cluster_start_node_or_fail(c, (unsigned)f);
    long ms = chaos_cluster_wait_caught_up(c, (unsigned)f, 20000);
    if (ms < 0)
        chaos_cluster_failed(c, "the wiped follower did not catch up within 20 s");
    assert_true(ms >= 0);
    char log[96];
    chaos_cluster_log_path(c, (unsigned)f, log, sizeof(log));
    printf("n%d, started with an empty data directory, caught up in %ld ms:\n", f, ms);
    test_file_print_lines(log, "installed snapshot up to", 3);
    assert_true(test_file_count_lines(log, "installed snapshot up to") >= 1);
    chaos_cluster_stop_node_or_fail(c, (unsigned)f);
    uint64_t snap = dumped_snapshot_index(c, f);
    printf("raft dump of its directory: snapshot at index %" PRIu64 "\n", snap);
    assert_true(snap >= 50);
    chaos_cluster_start_node_or_fail(c, (unsigned)f);
    assert_true(chaos_cluster_wait_caught_up(c, (unsigned)f, 20000) >= 0);

    /* Its copy is whole: with both other nodes killed and one of them
     * restarted on a wiped directory, it alone holds the data, becomes
     * leader, serves every value, and hands its snapshot on. */
    int w = (f + 1) % NODES, third = (f + 2) % NODES;
    chaos_cluster_kill(c, (unsigned)w, SIGKILL);
    chaos_cluster_kill(c, (unsigned)third, SIGKILL);
    wipe_dir(c, w);
    chaos_cluster_start_node_or_fail(c, (unsigned)w);
    assert_int_equal(chaos_cluster_leader(c, 10000), f);
    get_numbered(c, 0, 250);
    assert_true(chaos_cluster_wait_caught_up(c, (unsigned)w, 20000) >= 0);
    chaos_cluster_log_path(c, (unsigned)w, log, sizeof(log));
    assert_true(test_file_count_lines(log, "installed snapshot up to") >= 1);
    kv_client_close(kc);
    chaos_cluster_stop_or_fail(state);
}

/* ---- (c) corrupt and torn data files ---- */

/* Starts node i in the foreground on a damaged directory; returns its exit
 * code (-1 if it was still running after 10 s) with its output in out. */
static int start_in_foreground(struct chaos_cluster *c, int i, char *out, size_t cap)
{
    struct chaos_node_args buf;
    const char *argv[CHAOS_NODE_ARGV];
    chaos_cluster_node_argv(c, (unsigned)i, argv, &buf);
    snprintf(out, cap, "%s/refused-%d.txt", c->dir, i);
    return test_run_to_file((char *const *)argv, out, 10000);
}

/* The node refuses to start, exit code 4, naming the file and an offset;
 * the other two carry on. */
static void expect_refusal(struct chaos_cluster *c, int i, const char *file, struct kv_client *kc)
{
    char out[128];
    int code = start_in_foreground(c, i, out, sizeof(out));
    printf("start on a corrupt %s -> exit code %d:\n", strrchr(file, '/') + 1, code);
    test_file_print_lines(out, "ERROR", 2);
    assert_int_equal(code, 4);
    assert_true(test_file_count_lines(out, file) >= 1);
    assert_true(test_file_count_lines(out, "offset") >= 1);
    put_ok(kc, "while-one-refuses", "the majority serves", 19);
}

/* The offset of the middle of the last record of a segment. */
static off_t middle_of_last_record(const char *path)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    off_t size = file_size(path), off = 0, last = -1, last_len = 0;
    while (off + 8 <= size) {
        uint8_t h[8];
        assert_int_equal(pread(fd, h, 8, off), 8);
        uint32_t len = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
        last = off;
        last_len = 8 + (off_t)len;
        off += last_len;
    }
    close(fd);
    assert_true(last >= 0 && off == size);
    return last + last_len / 2;
}

static void test_corrupt_segment_and_torn_tail(void **state)
{
    /* No snapshots, and values big enough to fill more than one 8 MiB
     * segment. */
    struct chaos_cluster *c = cluster_new(state, "0");
    assert_true(chaos_cluster_leader(c, 10000) >= 0);
    struct kv_client *kc;
    assert_int_equal(kv_client_open(&kc, c->addrs, NODES, 10000), 0);
    size_t big = 200 * 1024;
    char *value = malloc(big);
    assert_non_null(value);
    memset(value, 'v', big);
    for (int i = 0; i < 50; i++) {
        char key[32];
        snprintf(key, sizeof(key), "big-%d", i);
        put_ok(kc, key, value, big);
    }
    free(value);
    int leader = chaos_cluster_leader(c, 10000);
    int f = (leader + 1) % NODES;
    assert_true(chaos_cluster_wait_caught_up(c, (unsigned)f, 20000) >= 0);
    chaos_cluster_stop_node_or_fail(c, (unsigned)f);

    char dir[96], path[256];
    chaos_cluster_node_dir(c, (unsigned)f, dir, sizeof(dir));
    char *segs[16];
    int n = list_segments(dir, segs, 16);
    printf("n%d has %d log segments\n", f, n);
    assert_true(n >= 2);

    /* A flipped byte in the middle of the first segment: refuse to start. */
    snprintf(path, sizeof(path), "%s/%s", dir, segs[0]);
    off_t mid = file_size(path) / 2;
    flip_byte(path, mid);
    expect_refusal(c, f, path, kc);
    flip_byte(path, mid); /* repaired: it starts and catches up */
    chaos_cluster_start_node_or_fail(c, (unsigned)f);
    assert_true(chaos_cluster_wait_caught_up(c, (unsigned)f, 20000) >= 0);
    chaos_cluster_stop_node_or_fail(c, (unsigned)f);

    /* A torn tail: the last segment cut in the middle of its last record.
     * It is cut off with a warning, the node starts, and the leader sends
     * the lost entry again. */
    snprintf(path, sizeof(path), "%s/%s", dir, segs[n - 1]);
    off_t cut = middle_of_last_record(path);
    assert_int_equal(truncate(path, cut), 0);
    char log[96];
    chaos_cluster_log_path(c, (unsigned)f, log, sizeof(log));
    int warned = test_file_count_lines(log, "cut a torn write");
    chaos_cluster_start_node_or_fail(c, (unsigned)f);
    long ms = chaos_cluster_wait_caught_up(c, (unsigned)f, 20000);
    if (ms < 0)
        chaos_cluster_failed(c, "the node did not catch up after its torn tail was cut");
    assert_true(ms >= 0);
    printf("torn tail at offset %lld of %s:\n", (long long)cut, segs[n - 1]);
    test_file_print_lines(log, "cut a torn write", 1);
    assert_int_equal(test_file_count_lines(log, "cut a torn write"), warned + 1);
    free_names(segs, n);
    kv_client_close(kc);
    chaos_cluster_stop_or_fail(state);
}

static void test_corrupt_snapshot_and_meta(void **state)
{
    struct chaos_cluster *c = cluster_new(state, "20");
    assert_true(chaos_cluster_leader(c, 10000) >= 0);
    struct kv_client *kc;
    assert_int_equal(kv_client_open(&kc, c->addrs, NODES, 5000), 0);
    put_numbered(kc, 0, 60);
    int leader = chaos_cluster_leader(c, 10000);
    int f = (leader + 1) % NODES;
    assert_true(chaos_cluster_wait_caught_up(c, (unsigned)f, 20000) >= 0);
    chaos_cluster_stop_node_or_fail(c, (unsigned)f);

    char dir[96], path[256];
    chaos_cluster_node_dir(c, (unsigned)f, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/snapshot", dir);
    off_t size = file_size(path);
    assert_true(size > 40);
    flip_byte(path, size / 2);
    expect_refusal(c, f, path, kc);
    flip_byte(path, size / 2);

    snprintf(path, sizeof(path), "%s/meta", dir);
    flip_byte(path, 10); /* inside the term */
    expect_refusal(c, f, path, kc);
    flip_byte(path, 10);

    chaos_cluster_start_node_or_fail(c, (unsigned)f);
    assert_true(chaos_cluster_wait_caught_up(c, (unsigned)f, 20000) >= 0);
    kv_client_close(kc);
    chaos_cluster_stop_or_fail(state);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_empty_follower_catches_up_by_snapshot,
                                  chaos_cluster_teardown),
        cmocka_unit_test_teardown(test_corrupt_segment_and_torn_tail, chaos_cluster_teardown),
        cmocka_unit_test_teardown(test_corrupt_snapshot_and_meta, chaos_cluster_teardown),
    };
    return cmocka_run_group_tests_name("system: durability when the disk is lost, corrupt or "
                                       "torn", tests, NULL, NULL);
}
