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
