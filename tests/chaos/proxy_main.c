/*
 * proxy_main.c - `raft-proxy`: the fault-injecting proxy as a command, to
 * break a hand-started cluster on purpose and watch what Raft does.
 *
 *   raft-proxy [--delay MIN-MAX] [--seed N] LISTEN TARGET
 *
 * Forwards every connection made to LISTEN ("host:port") to TARGET. It is
 * controlled while it runs in either of two ways:
 *
 *   signals    kill -USR1 <pid>   cut: reset open connections, blackhole new ones
 *              kill -USR2 <pid>   heal
 *              kill -TERM <pid>   (or Ctrl-C) stop
 *
 *   stdin      one command per line:
 *                cut                 as SIGUSR1
 *                heal                as SIGUSR2
 *                delay MIN [MAX]     hold forwarded data MIN..MAX ms (delay 0: none)
 *                reset PERCENT       reset about PERCENT % of the open connections
 *                stats               one line of counters
 *                quit                stop
 *              End of input (e.g. stdin is /dev/null) just leaves the
 *              signals in charge.
 *
 * Every change is logged on stderr with the time. Example: a follower cut
 * off from a three-node cluster. Node 2's peers reach it directly, but node
 * 2 reaches node 0 only through a proxy on port 9100:
 *
 *   raft-proxy 127.0.0.1:9100 127.0.0.1:9000 &
 *   build/raft node --id 0 --peers 127.0.0.1:9000,127.0.0.1:9001,127.0.0.1:9002 &
 *   build/raft node --id 1 --peers 127.0.0.1:9000,127.0.0.1:9001,127.0.0.1:9002 &
 *   build/raft node --id 2 --peers 127.0.0.1:9100,127.0.0.1:9001,127.0.0.1:9002 &
 *   kill -USR1 %1      # node 2 can no longer reach node 0 (replies included)
 *
 * Exit codes: 0 stopped, 2 usage error, 4 could not listen.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/chaos/proxy.h"
#include "tests/support/clock.h"

static uint64_t started_ms;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    double t = (double)(test_now_ms() - started_ms) / 1000;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%7.3f  proxy  %s\n", t, line);
}

static int usage(const char *problem)
{
    if (problem)
        fprintf(stderr, "raft-proxy: %s\n", problem);
    fprintf(stderr, "usage: raft-proxy [--delay MIN-MAX] [--seed N] LISTEN TARGET\n"
                    "  signals: SIGUSR1 cut, SIGUSR2 heal, SIGTERM stop\n"
                    "  stdin:   cut | heal | delay MIN [MAX] | reset PERCENT | stats | quit\n");
    return 2;
}

static void print_stats(struct chaos_proxy *p)
{
    struct chaos_proxy_stats st;
    chaos_proxy_get_stats(p, &st);
    say("%s: %u open, %llu accepted (%llu blackholed, %llu refused by the target), %llu resets, "
        "%llu bytes forwarded, %llu dropped", chaos_proxy_is_cut(p) ? "cut" : "forwarding",
        st.open, (unsigned long long)st.accepted, (unsigned long long)st.blackholed,
        (unsigned long long)st.refused, (unsigned long long)st.resets,
        (unsigned long long)st.bytes_forwarded, (unsigned long long)st.bytes_dropped);
}

/* Reads commands from stdin until "quit" or end of input. */
static void *stdin_main(void *arg)
{
    struct chaos_proxy *p = arg;
    char line[256];
    while (fgets(line, sizeof(line), stdin)) {
        char cmd[32] = "";
        long a = -1, b = -1;
        int n = sscanf(line, "%31s %ld %ld", cmd, &a, &b);
        if (n <= 0)
            continue;
        if (!strcmp(cmd, "cut")) {
            chaos_proxy_cut(p);
            say("cut: open connections reset, new ones blackholed");
        } else if (!strcmp(cmd, "heal")) {
            chaos_proxy_heal(p);
            say("healed: forwarding again");
        } else if (!strcmp(cmd, "delay") && n >= 2 && a >= 0 && a <= 60000 &&
                   (n == 2 || (b >= a && b <= 60000))) {
            chaos_proxy_set_delay(p, (unsigned)a, (unsigned)(n == 2 ? a : b));
            say("delay now %ld..%ld ms", a, n == 2 ? a : b);
        } else if (!strcmp(cmd, "reset") && n == 2 && a >= 0 && a <= 100) {
            say("reset %u connections", chaos_proxy_reset_some(p, (unsigned)a));
        } else if (!strcmp(cmd, "stats")) {
            print_stats(p);
        } else if (!strcmp(cmd, "quit")) {
            kill(getpid(), SIGTERM);
            return NULL;
        } else {
            say("unknown command: %s (cut, heal, delay MIN [MAX], reset PERCENT, stats, quit)",
                cmd);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    started_ms = test_now_ms();
    unsigned dmin = 0, dmax = 0;
    unsigned long long seed = (unsigned long long)time(NULL);
    int i = 1;
    for (; i < argc && !strncmp(argv[i], "--", 2); i += 2) {
        if (i + 1 >= argc)
            return usage("missing value");
        if (!strcmp(argv[i], "--delay")) {
            if (sscanf(argv[i + 1], "%u-%u", &dmin, &dmax) != 2 || dmax < dmin)
                return usage("--delay wants MIN-MAX in ms");
        } else if (!strcmp(argv[i], "--seed")) {
            if (sscanf(argv[i + 1], "%llu", &seed) != 1)
                return usage("--seed wants a number");
        } else {
            return usage("unknown option");
        }
    }
    if (argc - i != 2)
        return usage(NULL);

    /* Signals go to the main thread alone, through sigwait(). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct chaos_proxy *p;
    int rc = chaos_proxy_start(&p, argv[i], argv[i + 1], seed);
    if (rc) {
        fprintf(stderr, "raft-proxy: cannot listen on %s for %s: %s\n", argv[i], argv[i + 1],
                strerror(-rc));
        return 4;
    }
    chaos_proxy_set_delay(p, dmin, dmax);
    say("listening on %s, forwarding to %s (delay %u..%u ms, seed %llu); pid %d",
        chaos_proxy_addr(p), argv[i + 1], dmin, dmax, seed, (int)getpid());
    pthread_t reader;
    bool have_reader = pthread_create(&reader, NULL, stdin_main, p) == 0;
    if (have_reader)
        pthread_detach(reader); /* it may sit in fgets() until we exit */

    for (;;) {
        int sig;
        sigwait(&set, &sig);
        if (sig == SIGUSR1) {
            chaos_proxy_cut(p);
            say("SIGUSR1: cut: open connections reset, new ones blackholed");
        } else if (sig == SIGUSR2) {
            chaos_proxy_heal(p);
            say("SIGUSR2: healed: forwarding again");
        } else {
            break;
        }
    }
    print_stats(p);
    chaos_proxy_stop(p);
    say("stopped");
    return 0;
}
