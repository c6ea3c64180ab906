/*
 * ports.c - loopback ports reserved for node processes (see ports.h).
 */
#include "tests/chaos/ports.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

int port_reserve(struct port_reservation *r)
{
    r->fd = -1;
    r->port = -1;
    /* Close-on-exec: a node process must not inherit the reservations. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    r->fd = fd;
    r->port = ntohs(a.sin_port);
    return 0;
}

void port_release(struct port_reservation *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

/* Holds a given port as port_reserve does; 0 or -errno. */
static int port_hold(int port, struct port_reservation *r)
{
    r->port = port;
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (r->fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    if (setsockopt(r->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(r->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int err = errno;
        port_release(r);
        return -err;
    }
    return 0;
}

int port_reserve_run(struct port_reservation *p, int n)
{
    /* A free port from the kernel, then the ports after it, if free too. */
    for (int attempt = 0; attempt < 50; attempt++) {
        int rc = port_reserve(&p[0]);
        if (rc)
            return rc;
        int i = 1;
        while (i < n && p[0].port + i <= 65535 && port_hold(p[0].port + i, &p[i]) == 0)
            i++;
        if (i == n)
            return 0;
        while (i-- > 0)
            port_release(&p[i]);
    }
    return -EADDRINUSE;
}
