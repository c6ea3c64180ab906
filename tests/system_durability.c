/*
 * system_durability.c - nothing acknowledged is ever lost: three `raft node`
 * processes (the binary named by $RAFT_BIN) with small snapshot intervals,
 * killed with SIGKILL under a concurrent put load and restarted on their
 * data directories; a follower with an empty directory catching up by
 * InstallSnapshot; corrupt and torn data files.
 *
 *   DURABILITY_ROUNDS  kill/restart rounds (default 20, about 1 s each; 12
 *                      when $RAFT_BIN is a ThreadSanitizer build)
 *   DURABILITY_SEED    repeats a run's choices of victims and timings (the
 *                      seed is printed at the start)
 *
 * The check of acknowledged puts, and why it is sound. Each writer thread
 * owns its keys and has one client session; its puts are sequential and the
 * session numbers them. The state machine ignores a request whose number is
 * not above the last one it applied for that session (thesis §6.3), so the
 * puts that change a key take effect in the order they were issued. Give
 * the puts to one key the numbers 0, 1, 2, ... in that order, and put the
 * number in the value. If put a was acknowledged, it was applied, so no
 * earlier put can take effect afterwards: the key's value is the value of a
 * or of a later put whose outcome is unknown (timed out). If a read returned
 * the value of put j, put j was applied, and the same holds with j in place
 * of a. So every read of a key must return a number >= the key's floor, the
 * highest of its last acknowledged put and the last value read.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "kv/client.h"
#include "tests/chaos/ports.h"

#define NODES 3

/* ---- time, randomness, files ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static uint64_t next_rand(uint64_t *s)
{
    /* splitmix64: every seed, even 0, gives a good sequence */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned rand_between(uint64_t *s, unsigned lo, unsigned hi)
{
    return lo + (unsigned)(next_rand(s) % (hi - lo + 1));
}

/* How many lines of the file contain `needle`. */
static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Prints the lines of the file that contain `needle` (at most max). */
static void print_matching_lines(const char *path, const char *needle, int max)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[4096];
    while (max > 0 && fgets(line, sizeof(line), f))
        if (strstr(line, needle)) {
            printf("    %s", line);
            max--;
        }
    fclose(f);
}

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

/* The sum of the sizes of the regular files in dir (like du -sb). */
static long long dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    long long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            total += st.st_size;
    }
    closedir(d);
    return total;
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

/* Runs argv (argv[0] is the program) with stdout and stderr into out_path;
 * returns its exit code, or -1 if it had not exited after timeout_ms (it is
 * then killed) or died of a signal. */
static int run_to_file(char *const *argv, const char *out_path, unsigned timeout_ms)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    uint64_t deadline = now_ms() + timeout_ms;
    int status;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sleep_ms(20);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- a cluster of `raft node` processes ---- */

struct cluster {
    const char *bin;
    char dir[64];
    char addr_buf[NODES][32];
    struct port_reservation port[NODES]; /* held until the cluster stops */
    char *addrs[NODES + 1];
    char peers[128];
    char snapshot_every[24];
    pid_t pids[NODES];
};

static const char *raft_bin(void)
{
    const char *bin = getenv("RAFT_BIN");
    return bin && *bin ? bin : "build/raft";
}

static void node_dir(const struct cluster *c, int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/node-%d", c->dir, i);
}

static void node_log_path(const struct cluster *c, int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/node-%d.log", c->dir, i);
}

/* The command line of node i, in argv (NULL-terminated; strings live in
 * the buffers given). Short election timeouts keep the rounds quick. */
static void node_argv(struct cluster *c, int i, char *id, char *data, char **argv)
{
    snprintf(id, 8, "%d", i);
    node_dir(c, i, data, 96);
    char *const args[] = {(char *)c->bin, "node", "--id", id, "--peers", c->peers,
                          "--data-dir", data, "--log-level", "info",
                          "--election-timeout", "150-300", "--heartbeat", "40",
                          "--snapshot-every", c->snapshot_every, NULL};
    memcpy(argv, args, sizeof(args));
}

#define NODE_ARGC 17

static void node_start(struct cluster *c, int i)
{
    char id[8], data[96], log[96];
    char *argv[NODE_ARGC];
    node_argv(c, i, id, data, argv);
    node_log_path(c, i, log, sizeof(log));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
#ifdef __linux__
        /* If the test itself is killed (a timeout), its nodes go with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(c->bin, argv);
        _exit(127);
    }
    c->pids[i] = pid;
}

/* Stops node i with sig and reaps it. After SIGTERM it must exit cleanly. */
static void node_stop(struct cluster *c, int i, int sig)
{
    if (c->pids[i] <= 0)
        return;
    kill(c->pids[i], sig);
    int status;
    waitpid(c->pids[i], &status, 0);
    c->pids[i] = 0;
    if (sig == SIGTERM) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fprintf(stderr, "node %d did not stop cleanly (status 0x%x)\n", i, status);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
}

static void print_logs(struct cluster *c)
{
    for (int i = 0; i < NODES; i++) {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "echo '--- node %d (last lines)'; tail -n 30 %s/node-%d.log",
                 i, c->dir, i);
        if (system(cmd) != 0)
            continue;
    }
}

/* The cluster of the running test, for teardown after a failed assertion
 * (cmocka longjmps out of the test). */
static struct cluster *current;

static struct cluster *cluster_new(long snapshot_every)
{
    struct cluster *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->bin = raft_bin();
    snprintf(c->snapshot_every, sizeof(c->snapshot_every), "%ld", snapshot_every);
    snprintf(c->dir, sizeof(c->dir), "/tmp/raft-durability-XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    size_t off = 0;
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(port_reserve(&c->port[i]), 0);
        snprintf(c->addr_buf[i], sizeof(c->addr_buf[i]), "127.0.0.1:%d", c->port[i].port);
        c->addrs[i] = c->addr_buf[i];
        off += (size_t)snprintf(c->peers + off, sizeof(c->peers) - off, "%s%s",
                                i ? "," : "", c->addr_buf[i]);
    }
    for (int i = 0; i < NODES; i++)
        node_start(c, i);
    current = c;
    return c;
}

static int count_in_logs(struct cluster *c, const char *needle);

/* Stops every node; fails if a sanitizer reported anything in a node's log
 * (a node killed with SIGKILL never reaches its exit-time report, but
 * reports made while it ran are there). */
static void cluster_free(struct cluster *c)
{
    for (int i = 0; i < NODES; i++) {
        node_stop(c, i, SIGTERM);
        port_release(&c->port[i]);
    }
    int reports = count_in_logs(c, "Sanitizer") + count_in_logs(c, "runtime error:");
    if (reports)
        print_logs(c);
    assert_int_equal(reports, 0);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", c->dir);
    free(c);
    current = NULL;
}

/* After a failure: no node process outlives the test; the directory stays
 * for a post-mortem. */
static int teardown(void **state)
{
    (void)state;
    if (!current)
        return 0;
    for (int i = 0; i < NODES; i++)
        if (current->pids[i] > 0) {
            kill(current->pids[i], SIGKILL);
            waitpid(current->pids[i], NULL, 0);
        }
    for (int i = 0; i < NODES; i++)
        port_release(&current->port[i]);
    fprintf(stderr, "the failed test's logs and data are in %s\n", current->dir);
    free(current);
    current = NULL;
    return 0;
}

static int status_of(struct cluster *c, int i, struct client_reply *r)
{
    if (c->pids[i] <= 0)
        return -ESRCH;
    return kv_client_status(c->addrs[i], 500, r);
}

/* Polls every live node until exactly one claims to lead in the highest
 * term seen; returns its id, or -1 after timeout_ms. */
static int wait_for_leader(struct cluster *c, unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
        int leader = -1, leaders = 0;
        uint64_t top = 0;
        for (int i = 0; i < NODES; i++) {
            struct client_reply r;
            if (status_of(c, i, &r) != 0)
                continue;
            if (r.term > top) {
                top = r.term;
                leaders = 0;
                leader = -1;
            }
            if (r.term == top && r.role == RAFT_LEADER) {
                leaders++;
                leader = i;
            }
        }
        if (leaders == 1)
            return leader;
        sleep_ms(20);
    }
    return -1;
}

/* Waits until node i has applied everything the leader has committed (the
 * leader found afresh each time). Returns the time it took in ms, or -1. */
static long wait_caught_up(struct cluster *c, int i, unsigned timeout_ms)
{
    uint64_t start = now_ms(), deadline = start + timeout_ms;
    while (now_ms() < deadline) {
        int leader = wait_for_leader(c, 1000);
        struct client_reply lead, mine;
        if (leader >= 0 && status_of(c, leader, &lead) == 0 && status_of(c, i, &mine) == 0 &&
            mine.applied >= lead.commit && lead.commit > 0)
            return (long)(now_ms() - start);
        sleep_ms(25);
    }
    return -1;
}

static int count_in_logs(struct cluster *c, const char *needle)
{
    int n = 0;
    for (int i = 0; i < NODES; i++) {
        char log[96];
        node_log_path(c, i, log, sizeof(log));
        n += count_lines(log, needle);
    }
    return n;
}

/* ---- (a) SIGKILL rounds under a concurrent put load ---- */

#define WRITERS 4
#define KEYS_PER_WRITER 8
#define VALUE_LEN 64
/* Half the writers give up quickly, so that many puts end with an unknown
 * outcome (some landed, some not) around every kill. */
#define PUT_TIMEOUT_MS 3000
#define SHORT_PUT_TIMEOUT_MS 300

enum put_state { PUT_IN_FLIGHT, PUT_ACKED, PUT_UNKNOWN };

/* The history of one key: its puts in the order they were issued. */
struct key_history {
    char name[32];
    uint32_t count;     /* puts issued: numbers 0 .. count-1 */
    uint32_t cap;
    uint8_t *state;     /* enum put_state per put */
    int64_t last_acked; /* -1: none */
    int64_t floor;      /* a read must return a number >= floor; -1: anything, even absent */
};

struct load;

struct writer {
    struct load *load;
    pthread_t thread;
    int id;
    uint64_t rng;
    struct kv_client *kc;
    struct key_history keys[KEYS_PER_WRITER];
    uint64_t acked, unknown;
};

struct load {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool paused, stop;
    int active; /* writers inside a put */
    struct writer writers[WRITERS];
};

static void value_of(const struct key_history *k, uint32_t n, char *out)
{
    int len = snprintf(out, VALUE_LEN + 1, "%s=%" PRIu32 ";", k->name, n);
    memset(out + len, 'x', (size_t)(VALUE_LEN - len));
    out[VALUE_LEN] = '\0';
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct load *l = w->load;
    char value[VALUE_LEN + 1];
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (l->paused && !l->stop)
            pthread_cond_wait(&l->cond, &l->mu);
        if (l->stop) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        l->active++;
        pthread_mutex_unlock(&l->mu);

        struct key_history *k = &w->keys[next_rand(&w->rng) % KEYS_PER_WRITER];
        if (k->count == k->cap) {
            k->cap = k->cap ? 2 * k->cap : 64;
            k->state = realloc(k->state, k->cap);
            assert_non_null(k->state);
        }
        uint32_t n = k->count++;
        k->state[n] = PUT_IN_FLIGHT;
        value_of(k, n, value);
        int rc = kv_client_put(w->kc, k->name, (uint32_t)strlen(k->name), value, VALUE_LEN);
        if (rc == -EINVAL) {
            fprintf(stderr, "put %s refused as malformed\n", k->name);
            abort();
        }
        if (rc == 0) {
            k->state[n] = PUT_ACKED;
            k->last_acked = n;
            w->acked++;
        } else {
            k->state[n] = PUT_UNKNOWN;
            w->unknown++;
        }

        pthread_mutex_lock(&l->mu);
        l->active--;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->mu);
    }
    return NULL;
}

static void load_start(struct load *l, struct cluster *c, uint64_t seed)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cond, NULL);
    for (int i = 0; i < WRITERS; i++) {
        struct writer *w = &l->writers[i];
        w->load = l;
        w->id = i;
        w->rng = seed ^ (0x1234567ull * (uint64_t)(i + 1));
        for (int k = 0; k < KEYS_PER_WRITER; k++) {
            snprintf(w->keys[k].name, sizeof(w->keys[k].name), "w%d-k%d", i, k);
            w->keys[k].last_acked = -1;
            w->keys[k].floor = -1;
        }
        unsigned timeout = i % 2 ? SHORT_PUT_TIMEOUT_MS : PUT_TIMEOUT_MS;
        assert_int_equal(kv_client_open(&w->kc, c->addrs, NODES, timeout), 0);
        assert_int_equal(pthread_create(&w->thread, NULL, writer_main, w), 0);
    }
}

/* Stops new puts and waits for those in flight to end. */
static void load_pause(struct load *l)
{
    pthread_mutex_lock(&l->mu);
    l->paused = true;
    while (l->active > 0)
        pthread_cond_wait(&l->cond, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

static void load_resume(struct load *l)
{
    pthread_mutex_lock(&l->mu);
    l->paused = false;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
}

static void load_stop(struct load *l)
{
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(l->writers[i].thread, NULL);
}

static void load_free(struct load *l)
{
    for (int i = 0; i < WRITERS; i++) {
        kv_client_close(l->writers[i].kc);
        for (int k = 0; k < KEYS_PER_WRITER; k++)
            free(l->writers[i].keys[k].state);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cond);
}

static void load_totals(struct load *l, uint64_t *acked, uint64_t *unknown)
{
    *acked = *unknown = 0;
    for (int i = 0; i < WRITERS; i++) {
        *acked += l->writers[i].acked;
        *unknown += l->writers[i].unknown;
    }
}

/* Reads one key, retrying through elections for up to 15 s. */
static int get_retrying(struct kv_client *kc, const char *key, uint8_t **v, uint32_t *len)
{
    uint64_t deadline = now_ms() + 15000;
    int rc;
    do {
        rc = kv_client_get(kc, key, (uint32_t)strlen(key), v, len);
    } while (rc == -ETIMEDOUT && now_ms() < deadline);
    return rc;
}

/* Checks one key against its history (see the top of the file); raises its
 * floor to what was read. Returns true when the value is allowed. */
static bool check_key(struct kv_client *kc, struct key_history *k, const char *when)
{
    uint8_t *v = NULL;
    uint32_t len = 0;
    int rc = get_retrying(kc, k->name, &v, &len);
    int64_t floor = k->floor > k->last_acked ? k->floor : k->last_acked;
    bool ok;
    if (rc == -ENOENT) {
        ok = floor < 0;
        if (!ok)
            fprintf(stderr, "%s: %s is missing, but put %" PRId64 " was %s\n", when, k->name,
                    floor, floor == k->last_acked ? "acknowledged" : "read before");
    } else if (rc != 0) {
        ok = false;
        fprintf(stderr, "%s: get %s failed: %s\n", when, k->name, strerror(-rc));
    } else {
        char prefix[32];
        int plen = snprintf(prefix, sizeof(prefix), "%s=", k->name);
        char *end = NULL;
        unsigned long n = 0;
        ok = len == VALUE_LEN && memcmp(v, prefix, (size_t)plen) == 0;
        if (ok) {
            n = strtoul((char *)v + plen, &end, 10);
            ok = end && *end == ';' && n < k->count && (int64_t)n >= floor;
        }
        if (!ok) {
            fprintf(stderr, "%s: %s reads '%.*s': want put %" PRId64 " (last acknowledged %" PRId64
                    ", last read %" PRId64 ") or a later one whose outcome is unknown, "
                    "of %" PRIu32 " issued\n", when, k->name, (int)len, (char *)v, floor,
                    k->last_acked, k->floor, k->count);
            if (end && *end == ';' && n < k->count)
                fprintf(stderr, "  put %lu was %s\n", n,
                        k->state[n] == PUT_ACKED ? "acknowledged" : "of unknown outcome");
        } else {
            k->floor = (int64_t)n;
        }
    }
    free(v);
    return ok;
}

/* With the load paused: every key holds an allowed value. */
static int check_all_keys(struct load *l, struct kv_client *kc, const char *when)
{
    int bad = 0;
    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < KEYS_PER_WRITER; k++)
            bad += !check_key(kc, &l->writers[i].keys[k], when);
    return bad;
}

static unsigned rounds_wanted(void)
{
    const char *env = getenv("DURABILITY_ROUNDS");
    if (env && *env)
        return (unsigned)strtoul(env, NULL, 10);
    /* Under ThreadSanitizer a round takes about twice as long. */
    return strstr(raft_bin(), "tsan") ? 12 : 20;
}

static uint64_t seed_wanted(void)
{
    const char *env = getenv("DURABILITY_SEED");
    if (env && *env)
        return strtoull(env, NULL, 10);
    return (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
}

enum victims { KILL_LEADER, KILL_ALL, KILL_FOLLOWER, KILL_LEADER_AND_FOLLOWER, N_MODES };

static const char *const victim_names[] = {"the leader", "all nodes", "a follower",
                                           "the leader and a follower"};

/* SIGKILLs the nodes the mode names; marks them in killed[]. */
static void kill_victims(struct cluster *c, enum victims mode, uint64_t *rng, bool *killed)
{
    int leader = wait_for_leader(c, 1500);
    if (leader < 0)
        leader = (int)(next_rand(rng) % NODES); /* mid-election: any node */
    int follower = (leader + 1 + (int)(next_rand(rng) % (NODES - 1))) % NODES;
    memset(killed, 0, NODES * sizeof(bool));
    switch (mode) {
    case KILL_LEADER: killed[leader] = true; break;
    case KILL_ALL: for (int i = 0; i < NODES; i++) killed[i] = true; break;
    case KILL_FOLLOWER: killed[follower] = true; break;
    default: killed[leader] = killed[follower] = true; break;
    }
    for (int i = 0; i < NODES; i++)
        if (killed[i])
            node_stop(c, i, SIGKILL);
}

static void test_sigkill_rounds_under_load(void **state)
{
    (void)state;
    unsigned rounds = rounds_wanted();
    uint64_t seed = seed_wanted(), rng = seed;
    printf("%u rounds, DURABILITY_SEED=%" PRIu64 "\n", rounds, seed);
    uint64_t t0 = now_ms();
    struct cluster *c = cluster_new(50);
    if (wait_for_leader(c, 10000) < 0)
        print_logs(c);
    assert_true(wait_for_leader(c, 10000) >= 0);
    struct kv_client *reader;
    assert_int_equal(kv_client_open(&reader, c->addrs, NODES, 5000), 0);
    struct load l;
    load_start(&l, c, seed);
    int bad = 0;
    for (unsigned r = 0; r < rounds && bad == 0; r++) {
        enum victims mode = (enum victims)(r % N_MODES);
        sleep_ms(rand_between(&rng, 150, 900)); /* load runs; then a random moment */
        bool killed[NODES];
        kill_victims(c, mode, &rng, killed);
        sleep_ms(rand_between(&rng, 50, 700)); /* down for a while; load goes on */
        for (int i = 0; i < NODES; i++)
            if (killed[i])
                node_start(c, i);
        uint64_t t_restart = now_ms();
        int leader = wait_for_leader(c, 15000);
        if (leader < 0)
            print_logs(c);
        assert_true(leader >= 0);
        uint64_t t_leader = now_ms();
        load_pause(&l);
        uint64_t t_paused = now_ms();
        char when[64];
        snprintf(when, sizeof(when), "round %u (killed %s)", r + 1, victim_names[mode]);
        bad += check_all_keys(&l, reader, when);
        uint64_t acked, unknown;
        load_totals(&l, &acked, &unknown);
        printf("round %2u: killed %-26s -> n%d leads; %6" PRIu64 " puts acknowledged, %3" PRIu64
               " unknown so far, all keys check (at %.1f s; leader %u ms, pause %u ms, "
               "check %u ms)\n", r + 1, victim_names[mode], leader, acked, unknown,
               (double)(now_ms() - t0) / 1000, (unsigned)(t_leader - t_restart),
               (unsigned)(t_paused - t_leader), (unsigned)(now_ms() - t_paused));
        load_resume(&l);
    }
    load_stop(&l);
    if (bad)
        print_logs(c);
    assert_int_equal(bad, 0);

    /* Every node converges, and everything survives a clean restart of the
     * whole cluster from its snapshots and logs. */
    for (int i = 0; i < NODES; i++) {
        long ms = wait_caught_up(c, i, 15000);
        if (ms < 0)
            print_logs(c);
        assert_true(ms >= 0);
    }
    bad += check_all_keys(&l, reader, "after the last round");
    for (int i = 0; i < NODES; i++)
        node_stop(c, i, SIGTERM);
    for (int i = 0; i < NODES; i++)
        node_start(c, i);
    assert_true(wait_for_leader(c, 15000) >= 0);
    bad += check_all_keys(&l, reader, "after a clean restart of every node");
    assert_int_equal(bad, 0);

    uint64_t acked, unknown;
    load_totals(&l, &acked, &unknown);
    printf("%" PRIu64 " puts acknowledged, %" PRIu64 " of unknown outcome; snapshots taken %d, "
           "installed by InstallSnapshot %d, torn tails cut %d; data directories:",
           acked, unknown, count_in_logs(c, "snapshot taken at"),
           count_in_logs(c, "installed snapshot up to"), count_in_logs(c, "cut a torn write"));
    for (int i = 0; i < NODES; i++) {
        char dir[96];
        node_dir(c, i, dir, sizeof(dir));
        printf(" %lld", dir_bytes(dir));
    }
    printf(" bytes (%.1f s)\n", (double)(now_ms() - t0) / 1000);
    assert_true(acked > 0);
    load_free(&l);
    kv_client_close(reader);
    cluster_free(c);
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

static void get_numbered(struct kv_client *kc, int from, int to)
{
    char key[32], want[32];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof(key), "b-%d", i);
        snprintf(want, sizeof(want), "value-%d", i);
        uint8_t *v = NULL;
        uint32_t len = 0;
        int rc = get_retrying(kc, key, &v, &len);
        if (rc || len != strlen(want) || memcmp(v, want, len) != 0)
            fprintf(stderr, "get %s: rc %d, got '%.*s', want '%s'\n", key, rc, (int)len,
                    v ? (char *)v : "", want);
        assert_int_equal(rc, 0);
        assert_memory_equal(v, want, len);
        free(v);
    }
}

/* `raft dump DIR`: returns the snapshot index it reports (0: none). */
static uint64_t dumped_snapshot_index(struct cluster *c, int i)
{
    char dir[96], out[128];
    node_dir(c, i, dir, sizeof(dir));
    snprintf(out, sizeof(out), "%s/dump-%d.txt", c->dir, i);
    char *argv[] = {(char *)c->bin, "dump", dir, NULL};
    assert_int_equal(run_to_file(argv, out, 10000), 0);
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

static void wipe_dir(struct cluster *c, int i)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s/node-%d", c->dir, i);
    assert_int_equal(system(cmd), 0);
}

static void test_empty_follower_catches_up_by_snapshot(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(50);
    int leader = wait_for_leader(c, 10000);
    assert_true(leader >= 0);
    struct kv_client *kc;
    assert_int_equal(kv_client_open(&kc, c->addrs, NODES, 5000), 0);
    put_numbered(kc, 0, 150);

    /* A follower loses its disk: stopped, directory wiped, more writes. */
    leader = wait_for_leader(c, 10000);
    int f = (leader + 1) % NODES;
    node_stop(c, f, SIGKILL);
    wipe_dir(c, f);
    put_numbered(kc, 150, 250);
    node_start(c, f);
    long ms = wait_caught_up(c, f, 20000);
    if (ms < 0)
        print_logs(c);
    assert_true(ms >= 0);
    char log[96];
    node_log_path(c, f, log, sizeof(log));
    printf("n%d, started with an empty data directory, caught up in %ld ms:\n", f, ms);
    print_matching_lines(log, "installed snapshot up to", 3);
    assert_true(count_lines(log, "installed snapshot up to") >= 1);
    node_stop(c, f, SIGTERM);
    uint64_t snap = dumped_snapshot_index(c, f);
    printf("raft dump of its directory: snapshot at index %" PRIu64 "\n", snap);
    assert_true(snap >= 50);
    node_start(c, f);
    assert_true(wait_caught_up(c, f, 20000) >= 0);

    /* Its copy is whole: with both other nodes killed and one of them
     * restarted on a wiped directory, it alone holds the data, becomes
     * leader, serves every value, and hands its snapshot on. */
    int w = (f + 1) % NODES, third = (f + 2) % NODES;
    node_stop(c, w, SIGKILL);
    node_stop(c, third, SIGKILL);
    wipe_dir(c, w);
    node_start(c, w);
    assert_int_equal(wait_for_leader(c, 10000), f);
    get_numbered(kc, 0, 250);
    assert_true(wait_caught_up(c, w, 20000) >= 0);
    node_log_path(c, w, log, sizeof(log));
    assert_true(count_lines(log, "installed snapshot up to") >= 1);
    kv_client_close(kc);
    cluster_free(c);
}

/* ---- (c) corrupt and torn data files ---- */

/* Starts node i in the foreground on a damaged directory; returns its exit
 * code (-1 if it was still running after 10 s) with its output in out. */
static int start_in_foreground(struct cluster *c, int i, char *out, size_t cap)
{
    char id[8], data[96];
    char *argv[NODE_ARGC];
    node_argv(c, i, id, data, argv);
    snprintf(out, cap, "%s/refused-%d.txt", c->dir, i);
    return run_to_file(argv, out, 10000);
}

/* The node refuses to start, exit code 4, naming the file and an offset;
 * the other two carry on. */
static void expect_refusal(struct cluster *c, int i, const char *file, struct kv_client *kc)
{
    char out[128];
    int code = start_in_foreground(c, i, out, sizeof(out));
    printf("start on a corrupt %s -> exit code %d:\n", strrchr(file, '/') + 1, code);
    print_matching_lines(out, "ERROR", 2);
    assert_int_equal(code, 4);
    assert_true(count_lines(out, file) >= 1);
    assert_true(count_lines(out, "offset") >= 1);
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
    (void)state;
    /* No snapshots, and values big enough to fill more than one 8 MiB
     * segment. */
    struct cluster *c = cluster_new(0);
    assert_true(wait_for_leader(c, 10000) >= 0);
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
    int leader = wait_for_leader(c, 10000);
    int f = (leader + 1) % NODES;
    assert_true(wait_caught_up(c, f, 20000) >= 0);
    node_stop(c, f, SIGTERM);

    char dir[96], path[256];
    node_dir(c, f, dir, sizeof(dir));
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
    node_start(c, f);
    assert_true(wait_caught_up(c, f, 20000) >= 0);
    node_stop(c, f, SIGTERM);

    /* A torn tail: the last segment cut in the middle of its last record.
     * It is cut off with a warning, the node starts, and the leader sends
     * the lost entry again. */
    snprintf(path, sizeof(path), "%s/%s", dir, segs[n - 1]);
    off_t cut = middle_of_last_record(path);
    assert_int_equal(truncate(path, cut), 0);
    char log[96];
    node_log_path(c, f, log, sizeof(log));
    int warned = count_lines(log, "cut a torn write");
    node_start(c, f);
    long ms = wait_caught_up(c, f, 20000);
    if (ms < 0)
        print_logs(c);
    assert_true(ms >= 0);
    printf("torn tail at offset %lld of %s:\n", (long long)cut, segs[n - 1]);
    print_matching_lines(log, "cut a torn write", 1);
    assert_int_equal(count_lines(log, "cut a torn write"), warned + 1);
    free_names(segs, n);
    kv_client_close(kc);
    cluster_free(c);
}

static void test_corrupt_snapshot_and_meta(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(20);
    assert_true(wait_for_leader(c, 10000) >= 0);
    struct kv_client *kc;
    assert_int_equal(kv_client_open(&kc, c->addrs, NODES, 5000), 0);
    put_numbered(kc, 0, 60);
    int leader = wait_for_leader(c, 10000);
    int f = (leader + 1) % NODES;
    assert_true(wait_caught_up(c, f, 20000) >= 0);
    node_stop(c, f, SIGTERM);

    char dir[96], path[256];
    node_dir(c, f, dir, sizeof(dir));
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

    node_start(c, f);
    assert_true(wait_caught_up(c, f, 20000) >= 0);
    kv_client_close(kc);
    cluster_free(c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sigkill_rounds_under_load, teardown),
        cmocka_unit_test_teardown(test_empty_follower_catches_up_by_snapshot, teardown),
        cmocka_unit_test_teardown(test_corrupt_segment_and_torn_tail, teardown),
        cmocka_unit_test_teardown(test_corrupt_snapshot_and_meta, teardown),
    };
    return cmocka_run_group_tests_name("system: durability across SIGKILL, snapshots, "
                                       "corrupt files", tests, NULL, NULL);
}
