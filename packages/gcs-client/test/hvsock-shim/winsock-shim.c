/*
 * Linux stand-in for ws2_32.dll, exporting the Winsock names and C types that
 * src/transport/hvsock/winsock.ts binds (spec §1.2), so the hvsock transport is
 * tested at its real boundary:
 *   - SOCKET is a UINT_PTR (INVALID_SOCKET = ~0), Windows `long` is 32 bits
 *     (ioctlsocket's cmd), WSAPOLLFD is {SOCKET; SHORT events; SHORT revents}
 *     padded to the pointer size, and the Windows POLL* bit values are used;
 *   - WSAGetLastError is per thread, as on Windows;
 *   - socket() fails with WSANOTINITIALISED before WSAStartup;
 *   - AF_HYPERV (34) / SOCK_STREAM / HV_PROTOCOL_RAW (1) sockets are unix
 *     stream sockets: bind({VmId, ServiceId}) listens on
 *     $LCOW_HVSOCK_SHIM_DIR/<vmid>_<serviceid>.sock, which a test "guest" dials.
 * Test-only exports (Shim*) report what the binding called: the last SOCKADDR_HV
 * bytes given to bind, socket() arguments, call counts, and calls that would
 * have blocked the caller (a blocking socket, or WSAPoll with a timeout on the
 * thread that called WSAStartup, i.e. the JS thread).
 * This library defines socket, bind, listen, accept, recv, send and shutdown
 * itself, so it reaches the kernel through syscall(2), never through libc's
 * functions of the same names.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* <sys/socket.h> declares socket(), bind(), ... with the POSIX types, which would clash with
 * the Winsock ones below; the few Linux values needed are spelled out instead. */
#define LINUX_AF_UNIX 1
#define LINUX_SOCK_STREAM 1
#define LINUX_SOCK_NONBLOCK O_NONBLOCK
#define LINUX_SOCK_CLOEXEC O_CLOEXEC
#define LINUX_MSG_NOSIGNAL 0x4000
struct linux_sockaddr_un {
    unsigned short sun_family;
    char sun_path[108];
};

#define EXPORT __attribute__((visibility("default")))

typedef uintptr_t SOCKET;
typedef uint16_t WORD;
#define INVALID_SOCKET ((SOCKET)~(uintptr_t)0)
#define SOCKET_ERROR (-1)

#define AF_HYPERV 34
#define WIN_SOCK_STREAM 1
#define HV_PROTOCOL_RAW 1
#define SOCKADDR_HV_SIZE 36
#define FIONBIO_WIN ((int32_t)0x8004667E)

#define WIN_POLLERR 0x0001
#define WIN_POLLHUP 0x0002
#define WIN_POLLNVAL 0x0004
#define WIN_POLLWRNORM 0x0010
#define WIN_POLLWRBAND 0x0020
#define WIN_POLLRDNORM 0x0100
#define WIN_POLLRDBAND 0x0200

#define WSAEINTR 10004
#define WSAEBADF 10009
#define WSAEACCES 10013
#define WSAEFAULT 10014
#define WSAEINVAL 10022
#define WSAEMFILE 10024
#define WSAEWOULDBLOCK 10035
#define WSAENOTSOCK 10038
#define WSAEPROTONOSUPPORT 10043
#define WSAEAFNOSUPPORT 10047
#define WSAEADDRINUSE 10048
#define WSAENAMETOOLONG 10063
#define WSAECONNABORTED 10053
#define WSAECONNRESET 10054
#define WSAENOBUFS 10055
#define WSAENOTCONN 10057
#define WSAESHUTDOWN 10058
#define WSAVERNOTSUPPORTED 10092
#define WSANOTINITIALISED 10093

#define MAX_FD 65536

typedef struct {
    SOCKET fd;
    int16_t events;
    int16_t revents;
} WSAPOLLFD; /* 16 bytes on LP64, like Windows x64 */

static __thread int last_error;
static int started;
static pthread_t startup_thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Per-fd state, guarded by `lock`. */
static unsigned char is_hvsock[MAX_FD];
static char *bound_path[MAX_FD];

/* What the binding called, guarded by `lock`. */
static uint8_t last_bind[SOCKADDR_HV_SIZE];
static int last_bind_len = -1;
static int last_socket_args[3] = {-1, -1, -1};
static int last_backlog = -1;
static int shutdown_count[3];
static int blocking_calls;
static int poll_on_startup_thread;

struct counter { const char *name; int count; };
static struct counter counters[] = {
    {"WSAStartup", 0}, {"socket", 0}, {"bind", 0}, {"listen", 0}, {"accept", 0}, {"recv", 0}, {"send", 0},
    {"shutdown", 0}, {"closesocket", 0}, {"ioctlsocket", 0}, {"WSAPoll", 0}, {"WSAGetLastError", 0},
};

static void count(const char *name) {
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        if (strcmp(counters[i].name, name) == 0) counters[i].count++;
    pthread_mutex_unlock(&lock);
}

static int wsa_from_errno(int e) {
    switch (e) {
    case EAGAIN: return WSAEWOULDBLOCK;
    case EINTR: return WSAEINTR;
    case EBADF: return WSAENOTSOCK;
    case EACCES: return WSAEACCES;
    case EFAULT: return WSAEFAULT;
    case EINVAL: return WSAEINVAL;
    case EMFILE: return WSAEMFILE;
    case EADDRINUSE: return WSAEADDRINUSE;
    case ECONNRESET: return WSAECONNRESET;
    case EPIPE: return WSAECONNRESET; /* Windows reports a write after the peer left as a reset */
    case ECONNABORTED: return WSAECONNABORTED;
    case ENOTCONN: return WSAENOTCONN;
    case ENOBUFS: return WSAENOBUFS;
    case ENAMETOOLONG: return WSAENAMETOOLONG;
    default: return WSAEINVAL;
    }
}

static int fail(int wsa) {
    last_error = wsa;
    return SOCKET_ERROR;
}

static int valid(SOCKET s) {
    if (s >= MAX_FD) return 0;
    pthread_mutex_lock(&lock);
    int ok = is_hvsock[s];
    pthread_mutex_unlock(&lock);
    return ok;
}

/* Counts a call on a socket in blocking mode: the binding promised never to make one. */
static void note_blocking(SOCKET s) {
    int flags = fcntl((int)s, F_GETFL);
    if (flags >= 0 && !(flags & O_NONBLOCK)) {
        pthread_mutex_lock(&lock);
        blocking_calls++;
        pthread_mutex_unlock(&lock);
    }
}

EXPORT int WSAStartup(WORD version, void *data) {
    count("WSAStartup");
    if (version != 0x0202) return WSAVERNOTSUPPORTED;
    if (data == NULL) return WSAEFAULT;
    memset(data, 0, 408); /* sizeof(WSADATA) on x64 */
    ((WORD *)data)[0] = 0x0202; /* wVersion */
    ((WORD *)data)[1] = 0x0202; /* wHighVersion */
    pthread_mutex_lock(&lock);
    started = 1;
    startup_thread = pthread_self();
    pthread_mutex_unlock(&lock);
    return 0;
}

EXPORT int WSAGetLastError(void) {
    return last_error;
}


static void track(int fd, int on, char *path) {
    pthread_mutex_lock(&lock);
    is_hvsock[fd] = (unsigned char)on;
    free(bound_path[fd]);
    bound_path[fd] = path;
    pthread_mutex_unlock(&lock);
}

EXPORT SOCKET socket(int af, int type, int protocol) {
    count("socket");
    pthread_mutex_lock(&lock);
    last_socket_args[0] = af;
    last_socket_args[1] = type;
    last_socket_args[2] = protocol;
    int ok = started;
    pthread_mutex_unlock(&lock);
    if (!ok) return (fail(WSANOTINITIALISED), INVALID_SOCKET);
    if (af != AF_HYPERV) return (fail(WSAEAFNOSUPPORT), INVALID_SOCKET);
    if (type != WIN_SOCK_STREAM || protocol != HV_PROTOCOL_RAW) return (fail(WSAEPROTONOSUPPORT), INVALID_SOCKET);
    long fd = syscall(SYS_socket, LINUX_AF_UNIX, LINUX_SOCK_STREAM | LINUX_SOCK_CLOEXEC, 0);
    if (fd < 0) return (fail(wsa_from_errno(errno)), INVALID_SOCKET);
    if (fd >= MAX_FD) {
        close((int)fd);
        return (fail(WSAEMFILE), INVALID_SOCKET);
    }
    track((int)fd, 1, NULL);
    return (SOCKET)fd;
}

/* GUID in Windows in-memory layout -> "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx". */
static void guid_text(const uint8_t *g, char out[37]) {
    uint32_t d1 = (uint32_t)g[0] | (uint32_t)g[1] << 8 | (uint32_t)g[2] << 16 | (uint32_t)g[3] << 24;
    unsigned d2 = (unsigned)g[4] | (unsigned)g[5] << 8;
    unsigned d3 = (unsigned)g[6] | (unsigned)g[7] << 8;
    snprintf(out, 37, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", d1, d2, d3, g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
}

EXPORT int bind(SOCKET s, const void *name, int namelen) {
    count("bind");
    pthread_mutex_lock(&lock);
    last_bind_len = namelen;
    if (name != NULL && namelen > 0) memcpy(last_bind, name, namelen < SOCKADDR_HV_SIZE ? (size_t)namelen : SOCKADDR_HV_SIZE);
    pthread_mutex_unlock(&lock);
    if (!valid(s)) return fail(WSAENOTSOCK);
    if (name == NULL) return fail(WSAEFAULT);
    if (namelen < SOCKADDR_HV_SIZE) return fail(WSAEFAULT);
    const uint8_t *a = name;
    uint16_t family = (uint16_t)(a[0] | a[1] << 8), reserved = (uint16_t)(a[2] | a[3] << 8);
    if (family != AF_HYPERV || reserved != 0) return fail(WSAEINVAL);
    const char *dir = getenv("LCOW_HVSOCK_SHIM_DIR");
    if (dir == NULL) return fail(WSAEACCES);
    char vm[37], service[37];
    guid_text(a + 4, vm);
    guid_text(a + 20, service);
    struct linux_sockaddr_un un = {.sun_family = LINUX_AF_UNIX};
    int len = snprintf(un.sun_path, sizeof un.sun_path, "%s/%s_%s.sock", dir, vm, service);
    if (len < 0 || (size_t)len >= sizeof un.sun_path) return fail(WSAENAMETOOLONG);
    /* Windows has no socket files: a name is free once its listener is closed. */
    pthread_mutex_lock(&lock);
    int taken = 0;
    for (int fd = 0; fd < MAX_FD; fd++)
        if (bound_path[fd] != NULL && strcmp(bound_path[fd], un.sun_path) == 0) taken = 1;
    pthread_mutex_unlock(&lock);
    if (taken) return fail(WSAEADDRINUSE);
    unlink(un.sun_path);
    if (syscall(SYS_bind, (int)s, &un, sizeof un) != 0) return fail(wsa_from_errno(errno));
    track((int)s, 1, strdup(un.sun_path));
    return 0;
}

EXPORT int listen(SOCKET s, int backlog) {
    count("listen");
    pthread_mutex_lock(&lock);
    last_backlog = backlog;
    pthread_mutex_unlock(&lock);
    if (!valid(s)) return fail(WSAENOTSOCK);
    if (syscall(SYS_listen, (int)s, backlog) != 0) return fail(wsa_from_errno(errno));
    return 0;
}

EXPORT SOCKET accept(SOCKET s, void *addr, int *addrlen) {
    count("accept");
    if (!valid(s)) return (fail(WSAENOTSOCK), INVALID_SOCKET);
    if (addr != NULL || addrlen != NULL) return (fail(WSAEFAULT), INVALID_SOCKET); /* the binding never asks for the peer */
    note_blocking(s);
    int flags = fcntl((int)s, F_GETFL);
    /* Windows: an accepted socket inherits the listening socket's non-blocking mode. */
    long fd = syscall(SYS_accept4, (int)s, NULL, NULL, LINUX_SOCK_CLOEXEC | (flags >= 0 && (flags & O_NONBLOCK) ? LINUX_SOCK_NONBLOCK : 0));
    if (fd < 0) return (fail(wsa_from_errno(errno)), INVALID_SOCKET);
    if (fd >= MAX_FD) {
        close((int)fd);
        return (fail(WSAEMFILE), INVALID_SOCKET);
    }
    track((int)fd, 1, NULL);
    return (SOCKET)fd;
}

EXPORT int recv(SOCKET s, void *buf, int len, int flags) {
    count("recv");
    if (!valid(s)) return fail(WSAENOTSOCK);
    if (flags != 0 || len < 0) return fail(WSAEINVAL);
    note_blocking(s);
    long n = syscall(SYS_recvfrom, (int)s, buf, (size_t)len, 0, NULL, NULL);
    if (n < 0) return fail(wsa_from_errno(errno));
    return (int)n;
}

EXPORT int send(SOCKET s, const void *buf, int len, int flags) {
    count("send");
    if (!valid(s)) return fail(WSAENOTSOCK);
    if (flags != 0 || len < 0) return fail(WSAEINVAL);
    note_blocking(s);
    long n = syscall(SYS_sendto, (int)s, buf, (size_t)len, LINUX_MSG_NOSIGNAL, NULL, 0);
    if (n < 0) return fail(wsa_from_errno(errno));
    return (int)n;
}

EXPORT int shutdown(SOCKET s, int how) {
    count("shutdown");
    if (how >= 0 && how <= 2) {
        pthread_mutex_lock(&lock);
        shutdown_count[how]++;
        pthread_mutex_unlock(&lock);
    }
    if (!valid(s)) return fail(WSAENOTSOCK);
    if (how < 0 || how > 2) return fail(WSAEINVAL);
    /* SD_RECEIVE/SD_SEND/SD_BOTH have the values of SHUT_RD/SHUT_WR/SHUT_RDWR. */
    if (syscall(SYS_shutdown, (int)s, how) != 0) return fail(wsa_from_errno(errno));
    return 0;
}

EXPORT int closesocket(SOCKET s) {
    count("closesocket");
    if (!valid(s)) return fail(WSAENOTSOCK);
    pthread_mutex_lock(&lock);
    char *path = bound_path[s];
    bound_path[s] = NULL;
    is_hvsock[s] = 0;
    pthread_mutex_unlock(&lock);
    if (path != NULL) {
        unlink(path);
        free(path);
    }
    if (close((int)s) != 0) return fail(wsa_from_errno(errno));
    return 0;
}

EXPORT int ioctlsocket(SOCKET s, int32_t cmd, uint32_t *argp) {
    count("ioctlsocket");
    if (!valid(s)) return fail(WSAENOTSOCK);
    if (cmd != FIONBIO_WIN) return fail(WSAEINVAL);
    if (argp == NULL) return fail(WSAEFAULT);
    int flags = fcntl((int)s, F_GETFL);
    if (flags < 0 || fcntl((int)s, F_SETFL, *argp ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) != 0) return fail(wsa_from_errno(errno));
    return 0;
}

EXPORT int WSAPoll(WSAPOLLFD *fds, uint32_t count_, int timeout) {
    count("WSAPoll");
    pthread_mutex_lock(&lock);
    if (timeout != 0 && started && pthread_equal(pthread_self(), startup_thread)) poll_on_startup_thread++;
    pthread_mutex_unlock(&lock);
    if (fds == NULL && count_ > 0) return fail(WSAEFAULT);
    struct pollfd *p = calloc(count_ ? count_ : 1, sizeof *p);
    if (p == NULL) return fail(WSAENOBUFS);
    for (uint32_t i = 0; i < count_; i++) {
        /* Windows rejects any requested event but the normal/band read and write ones. */
        if (fds[i].events & ~(WIN_POLLRDNORM | WIN_POLLRDBAND | WIN_POLLWRNORM | WIN_POLLWRBAND)) {
            free(p);
            return fail(WSAEINVAL);
        }
        p[i].fd = fds[i].fd < MAX_FD ? (int)fds[i].fd : -1;
        p[i].events = (short)((fds[i].events & (WIN_POLLRDNORM | WIN_POLLRDBAND) ? POLLIN : 0) | (fds[i].events & (WIN_POLLWRNORM | WIN_POLLWRBAND) ? POLLOUT : 0));
    }
    int n = poll(p, count_, timeout);
    if (n < 0) {
        int e = errno;
        free(p);
        return fail(wsa_from_errno(e));
    }
    for (uint32_t i = 0; i < count_; i++) {
        short r = p[i].revents;
        fds[i].revents = (int16_t)((r & POLLIN ? WIN_POLLRDNORM : 0) | (r & POLLOUT ? WIN_POLLWRNORM : 0) | (r & POLLHUP ? WIN_POLLHUP : 0) |
                                   (r & POLLERR ? WIN_POLLERR : 0) | (r & POLLNVAL ? WIN_POLLNVAL : 0));
    }
    free(p);
    return n;
}

/* ---- test-only exports ---- */

/* Copies the last SOCKADDR_HV given to bind into out (36 bytes); returns its namelen. */
EXPORT int ShimLastBind(uint8_t *out) {
    pthread_mutex_lock(&lock);
    memcpy(out, last_bind, SOCKADDR_HV_SIZE);
    int len = last_bind_len;
    pthread_mutex_unlock(&lock);
    return len;
}

/* af, type, protocol of the last socket() call. */
EXPORT void ShimLastSocketArgs(int32_t *out) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < 3; i++) out[i] = last_socket_args[i];
    pthread_mutex_unlock(&lock);
}

EXPORT int ShimLastBacklog(void) { return last_backlog; }

EXPORT int ShimShutdownCount(int how) { return how >= 0 && how <= 2 ? shutdown_count[how] : -1; }

EXPORT int ShimCallCount(const char *name) {
    int n = -1;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        if (strcmp(counters[i].name, name) == 0) n = counters[i].count;
    pthread_mutex_unlock(&lock);
    return n;
}

/* Sockets created and not yet closed with closesocket. */
EXPORT int ShimLiveSockets(void) {
    int n = 0;
    pthread_mutex_lock(&lock);
    for (int fd = 0; fd < MAX_FD; fd++) n += is_hvsock[fd];
    pthread_mutex_unlock(&lock);
    return n;
}

/* recv/send/accept calls made on a socket in blocking mode. */
EXPORT int ShimBlockingCalls(void) { return blocking_calls; }

/* WSAPoll calls with a timeout made on the thread that called WSAStartup (the JS thread). */
EXPORT int ShimPollsOnStartupThread(void) { return poll_on_startup_thread; }
