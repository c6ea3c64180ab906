/*
 * floor.c - the physical floor under a replicated put on this machine: the
 * latency of one loopback TCP round trip (64 bytes, TCP_NODELAY, blocking
 * sockets) and of one small append + fdatasync. A 3-node put needs about
 * two round trips and one fdatasync on the critical path (the leader's
 * write runs in parallel with the followers'), so their sum is the floor
 * that `make bench`'s one-client latency is compared with.
 *
 * Last, the ceiling on throughput: 64 clients, each with one 64-byte
 * request in flight, against an echo server with a thread per connection
 * that does no work. No store built this way can serve more requests per
 * second on this machine, reads or writes.
 *
 *   cc -O2 -pthread -o build/floor bench/floor.c && build/floor [DIR]
 *
 * DIR (default /tmp) is where the fdatasync file goes: use the disk the data
 * directories live on.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 5000
#define SYNCS 1000

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    printf("%-40s p50 %8.1f us   p99 %8.1f us\n", what, v[n / 2], v[n * 99 / 100]);
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void *echo_main(void *arg)
{
    int fd = *(int *)arg;
    char buf[64];
    for (;;) {
        ssize_t got = 0;
        while (got < 64) {
            ssize_t r = recv(fd, buf + got, sizeof buf - (size_t)got, 0);
            if (r <= 0)
                return NULL;
            got += r;
        }
        if (send(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf)
            return NULL;
    }
}

static void round_trips(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 1) ||
        getsockname(lfd, (struct sockaddr *)&a, &len))
        die("listen");
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    if (cfd < 0 || connect(cfd, (struct sockaddr *)&a, sizeof a))
        die("connect");
    int sfd = accept(lfd, NULL, NULL);
    if (sfd < 0)
        die("accept");
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_t t;
    pthread_create(&t, NULL, echo_main, &sfd);
    static double v[ROUNDS];
    char buf[64] = {0};
    for (int i = 0; i < ROUNDS; i++) {
        double t0 = now_us();
        if (send(cfd, buf, sizeof buf, 0) != (ssize_t)sizeof buf)
            die("send");
        ssize_t got = 0;
        while (got < 64) {
            ssize_t r = recv(cfd, buf + got, sizeof buf - (size_t)got, 0);
            if (r <= 0)
                die("recv");
            got += r;
        }
        v[i] = now_us() - t0;
    }
    close(cfd);
    pthread_join(t, NULL);
    close(sfd);
    close(lfd);
    report("loopback TCP round trip, 64 B", v, ROUNDS);
}

/* The ceiling of any store that serves C clients, each with one request
 * in flight over its own connection, with a thread per connection on both
 * sides: 64-byte requests echoed by a server that does no work at all. */
#define ECHO_CLIENTS 64
#define ECHO_SECONDS 3

struct echo_client {
    struct sockaddr_in addr;
    volatile int *stop;
    long ops;
};

static void *echo_client_main(void *arg)
{
    struct echo_client *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&c->addr, sizeof c->addr))
        die("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[64] = {0};
    while (!__atomic_load_n(c->stop, __ATOMIC_RELAXED)) {
        if (send(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf)
            die("send");
        for (ssize_t got = 0, r; got < 64; got += r)
            if ((r = recv(fd, buf + got, sizeof buf - (size_t)got, 0)) <= 0)
                die("recv");
        c->ops++;
    }
    close(fd);
    return NULL;
}

static void echo_throughput(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, ECHO_CLIENTS) ||
        getsockname(lfd, (struct sockaddr *)&a, &len))
        die("listen");
    static struct echo_client c[ECHO_CLIENTS];
    static int sfd[ECHO_CLIENTS];
    pthread_t ct[ECHO_CLIENTS], st[ECHO_CLIENTS];
    volatile int stop = 0;
    for (int i = 0; i < ECHO_CLIENTS; i++) {
        c[i] = (struct echo_client){.addr = a, .stop = &stop};
        pthread_create(&ct[i], NULL, echo_client_main, &c[i]);
        if ((sfd[i] = accept(lfd, NULL, NULL)) < 0)
            die("accept");
        setsockopt(sfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_create(&st[i], NULL, echo_main, &sfd[i]);
    }
    sleep(ECHO_SECONDS);
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    long ops = 0;
    for (int i = 0; i < ECHO_CLIENTS; i++) {
        pthread_join(ct[i], NULL);
        pthread_join(st[i], NULL);
        close(sfd[i]);
        ops += c[i].ops;
    }
    close(lfd);
    printf("%-40s %8.0f requests/s (%d clients, no work per request)\n",
           "loopback echo, thread per connection", (double)ops / ECHO_SECONDS, ECHO_CLIENTS);
}

static void syncs(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/raft-floor-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        die(path);
    unlink(path);
    static double v[SYNCS];
    char rec[4096];
    memset(rec, 'r', sizeof rec);
    for (int i = 0; i < SYNCS; i++) {
        double t0 = now_us();
        if (write(fd, rec, sizeof rec) != (ssize_t)sizeof rec || fdatasync(fd))
            die("write+fdatasync");
        v[i] = now_us() - t0;
    }
    close(fd);
    char what[64];
    snprintf(what, sizeof what, "append 4 KiB + fdatasync (%.20s)", dir);
    report(what, v, SYNCS);
}

int main(int argc, char **argv)
{
    round_trips();
    syncs(argc > 1 ? argv[1] : "/tmp");
    echo_throughput();
    return 0;
}
