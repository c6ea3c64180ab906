/*
 * system_durability_recovery.c - nothing acknowledged is ever lost: three
 * `raft node` processes (the binary named by $RAFT_BIN) with small snapshot
 * intervals, killed with SIGKILL under a concurrent put load, again and
 * again, and restarted on their data directories.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "kv/client.h"
#include "raft/raft.h"
#include "tests/chaos/cluster.h"
#include "tests/support/clock.h"

#define NODES 3

/* ---- the cluster ---- */

/* Three nodes that reach each other directly; short election timeouts
 * keep the rounds quick. snapshot_every: --snapshot-every. The cluster
 * lives in *state, for chaos_cluster_teardown(). */
static struct chaos_cluster *cluster_new(void **state, const char *snapshot_every)
{
    struct chaos_cluster_options o = {.nodes = NODES, .election_min_ms = 150,
                                      .election_max_ms = 300, .heartbeat_ms = 40,
                                      .snapshot_every = snapshot_every, .name = "durability",
                                      .direct = true};
    return chaos_cluster_start_or_fail(state, &o);
}

/* ---- randomness, sizes of files ---- */

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

static void load_start(struct load *l, struct chaos_cluster *c, uint64_t seed)
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
    uint64_t deadline = test_now_ms() + 15000;
    int rc;
    do {
        rc = kv_client_get(kc, key, (uint32_t)strlen(key), v, len);
    } while (rc == -ETIMEDOUT && test_now_ms() < deadline);
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
    const char *bin = getenv("RAFT_BIN");
    return bin && strstr(bin, "tsan") ? 12 : 20;
}

static uint64_t seed_wanted(void)
{
    const char *env = getenv("DURABILITY_SEED");
    if (env && *env)
        return strtoull(env, NULL, 10);
    return (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
}

/* How many lines of all the nodes' logs contain `needle`. */
static int count_in_logs(struct chaos_cluster *c, const char *needle)
{
    int n = 0;
    for (unsigned i = 0; i < c->n; i++)
        n += chaos_cluster_log_count(c, i, needle);
    return n;
}

enum victims { KILL_LEADER, KILL_ALL, KILL_FOLLOWER, KILL_LEADER_AND_FOLLOWER, N_MODES };

static const char *const victim_names[] = {"the leader", "all nodes", "a follower",
                                           "the leader and a follower"};

/* SIGKILLs the nodes the mode names; marks them in killed[]. */
static void kill_victims(struct chaos_cluster *c, enum victims mode, uint64_t *rng, bool *killed)
{
    int leader = chaos_cluster_leader(c, 1500);
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
            chaos_cluster_kill(c, (unsigned)i, SIGKILL);
}

static void test_sigkill_rounds_under_load(void **state)
{
    unsigned rounds = rounds_wanted();
    uint64_t seed = seed_wanted(), rng = seed;
    printf("%u rounds, DURABILITY_SEED=%" PRIu64 "\n", rounds, seed);
    uint64_t t0 = test_now_ms();
    struct chaos_cluster *c = cluster_new(state, "50");
    if (chaos_cluster_leader(c, 10000) < 0)
        chaos_cluster_failed(c, "no first leader within 10 s");
    assert_true(chaos_cluster_leader(c, 10000) >= 0);
    struct kv_client *reader;
    assert_int_equal(kv_client_open(&reader, c->addrs, NODES, 5000), 0);
    struct load l;
    load_start(&l, c, seed);
    int bad = 0;
    for (unsigned r = 0; r < rounds && bad == 0; r++) {
        enum victims mode = (enum victims)(r % N_MODES);
        test_sleep_ms(rand_between(&rng, 150, 900)); /* load runs; then a random moment */
        bool killed[NODES];
        kill_victims(c, mode, &rng, killed);
        test_sleep_ms(rand_between(&rng, 50, 700)); /* down for a while; load goes on */
        for (int i = 0; i < NODES; i++)
            if (killed[i])
                chaos_cluster_start_node_or_fail(c, (unsigned)i);
        uint64_t t_restart = test_now_ms();
        int leader = chaos_cluster_leader(c, 15000);
        if (leader < 0)
            chaos_cluster_failed(c, "no leader within 15 s of the restart");
        assert_true(leader >= 0);
        uint64_t t_leader = test_now_ms();
        load_pause(&l);
        uint64_t t_paused = test_now_ms();
        char when[64];
        snprintf(when, sizeof(when), "round %u (killed %s)", r + 1, victim_names[mode]);
        bad += check_all_keys(&l, reader, when);
        uint64_t acked, unknown;
        load_totals(&l, &acked, &unknown);
        printf("round %2u: killed %-26s -> n%d leads; %6" PRIu64 " puts acknowledged, %3" PRIu64
               " unknown so far, all keys check (at %.1f s; leader %u ms, pause %u ms, "
               "check %u ms)\n", r + 1, victim_names[mode], leader, acked, unknown,
               (double)(test_now_ms() - t0) / 1000, (unsigned)(t_leader - t_restart),
               (unsigned)(t_paused - t_leader), (unsigned)(test_now_ms() - t_paused));
        load_resume(&l);
    }
    load_stop(&l);
    if (bad)
        chaos_cluster_failed(c, "a key lost an acknowledged put");
    assert_int_equal(bad, 0);

    /* Every node converges, and everything survives a clean restart of the
     * whole cluster from its snapshots and logs. */
    for (int i = 0; i < NODES; i++) {
        long ms = chaos_cluster_wait_caught_up(c, (unsigned)i, 15000);
        if (ms < 0)
            chaos_cluster_failed(c, "a node did not catch up within 15 s");
        assert_true(ms >= 0);
    }
    bad += check_all_keys(&l, reader, "after the last round");
    for (int i = 0; i < NODES; i++)
        chaos_cluster_stop_node_or_fail(c, (unsigned)i);
    for (int i = 0; i < NODES; i++)
        chaos_cluster_start_node_or_fail(c, (unsigned)i);
    assert_true(chaos_cluster_leader(c, 15000) >= 0);
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
        chaos_cluster_node_dir(c, (unsigned)i, dir, sizeof(dir));
        printf(" %lld", dir_bytes(dir));
    }
    printf(" bytes (%.1f s)\n", (double)(test_now_ms() - t0) / 1000);
    assert_true(acked > 0);
    load_free(&l);
    kv_client_close(reader);
    chaos_cluster_stop_or_fail(state);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sigkill_rounds_under_load, chaos_cluster_teardown),
    };
    return cmocka_run_group_tests_name("system: durability across SIGKILL rounds under load",
                                       tests, NULL, NULL);
}
