/* dist.c - the rank's place from launcher variables, a TCP star for rendezvous and small
 * collectives, and the --nproc-per-node launcher. See dist.h. */
#include "dist.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

extern char **environ;

// --- reading the environment

static const char *env_get(char *const *envp, const char *name) {
    size_t n = strlen(name);
    for (char *const *e = envp; e && *e; e++)
        if (!strncmp(*e, name, n) && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

/* A non-negative integer variable; absent leaves *out alone. */
static bool env_int(char *const *envp, const char *name, int *out, bool *present, char *err,
                    size_t errlen) {
    const char *s = env_get(envp, name);
    if (present) *present = s != NULL;
    if (!s) return true;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < 0 || v > INT_MAX)
        return errf(err, errlen, "%s=%s: expected a non-negative integer", name, s);
    *out = (int)v;
    return true;
}

/* SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE: "4(x2),3" -> the count of node `node`. */
static bool slurm_tasks_on_node(const char *spec, int node, int *out) {
    const char *s = spec;
    int seen = 0;
    while (*s) {
        char *end;
        long count = strtol(s, &end, 10);
        if (end == s || count <= 0) return false;
        long times = 1;
        s = end;
        if (!strncmp(s, "(x", 2)) {
            times = strtol(s + 2, &end, 10);
            if (end == s + 2 || *end != ')' || times <= 0) return false;
            s = end + 1;
        }
        if (node < seen + times) {
            *out = (int)count;
            return true;
        }
        seen += (int)times;
        if (*s == ',') s++;
        else if (*s) return false;
    }
    return false;
}

bool dist_first_host(const char *list, char *out, size_t outlen) {
    size_t o = 0;
    const char *s = list;
    if (!s || !*s) return false;
    while (*s && *s != ',') {
        if (*s == '[') { // take the first number of the range list, keeping its zero padding
            s++;
            while (*s >= '0' && *s <= '9') {
                if (o + 1 >= outlen) return false;
                out[o++] = *s++;
            }
            while (*s && *s != ']') s++;
            if (*s != ']') return false;
            s++;
            continue;
        }
        if (o + 1 >= outlen) return false;
        out[o++] = *s++;
    }
    out[o] = 0;
    return o > 0;
}

static bool place_torchrun(DistPlace *p, char *const *envp, char *err, size_t errlen) {
    bool has_rank, has_world, has_local, has_lws;
    if (!env_int(envp, "RANK", &p->rank, &has_rank, err, errlen) ||
        !env_int(envp, "WORLD_SIZE", &p->world_size, &has_world, err, errlen) ||
        !env_int(envp, "LOCAL_RANK", &p->local_rank, &has_local, err, errlen) ||
        !env_int(envp, "LOCAL_WORLD_SIZE", &p->local_world_size, &has_lws, err, errlen))
        return false;
    if (!has_rank || !has_world)
        return errf(err, errlen, "%s is set but %s is not: torchrun sets both (RANK, WORLD_SIZE, "
                    "LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT)",
                    has_rank ? "RANK" : "WORLD_SIZE", has_rank ? "WORLD_SIZE" : "RANK");
    if (!has_local) {
        if (p->world_size > 1)
            return errf(err, errlen, "RANK and WORLD_SIZE are set but LOCAL_RANK is not: "
                        "set it to this process's index on its node");
        p->local_rank = 0;
    }
    if (!has_lws) p->local_world_size = p->world_size;
    return true;
}

static bool place_slurm(DistPlace *p, char *const *envp, char *err, size_t errlen) {
    bool has_ntasks, has_local, has_node;
    int node = 0;
    if (!env_int(envp, "SLURM_PROCID", &p->rank, NULL, err, errlen) ||
        !env_int(envp, "SLURM_NTASKS", &p->world_size, &has_ntasks, err, errlen) ||
        !env_int(envp, "SLURM_LOCALID", &p->local_rank, &has_local, err, errlen) ||
        !env_int(envp, "SLURM_NODEID", &node, &has_node, err, errlen))
        return false;
    if (!has_ntasks && !env_int(envp, "SLURM_NPROCS", &p->world_size, &has_ntasks, err, errlen))
        return false;
    if (!has_ntasks) return errf(err, errlen, "SLURM_PROCID is set but SLURM_NTASKS is not");
    if (!has_local) p->local_rank = 0;
    const char *per_node = env_get(envp, "SLURM_STEP_TASKS_PER_NODE");
    if (!per_node) per_node = env_get(envp, "SLURM_TASKS_PER_NODE");
    p->local_world_size = 1;
    if (per_node && !slurm_tasks_on_node(per_node, node, &p->local_world_size))
        return errf(err, errlen, "SLURM_STEP_TASKS_PER_NODE=%s: cannot read the task count of "
                    "node %d (expected e.g. 4(x2),3)", per_node, node);
    const char *nodes = env_get(envp, "SLURM_STEP_NODELIST");
    if (!nodes) nodes = env_get(envp, "SLURM_JOB_NODELIST");
    if (!nodes) nodes = env_get(envp, "SLURM_NODELIST");
    if (nodes && !env_get(envp, "MASTER_ADDR") &&
        !dist_first_host(nodes, p->master_addr, sizeof p->master_addr))
        return errf(err, errlen, "SLURM_STEP_NODELIST=%s: cannot read its first host", nodes);
    // one port per job, so two jobs sharing a node do not collide
    int job = 0;
    if (!env_int(envp, "SLURM_JOB_ID", &job, NULL, err, errlen)) return false;
    p->master_port = 20000 + job % 20000;
    return true;
}

static bool place_mpi(DistPlace *p, char *const *envp, char *err, size_t errlen) {
    bool has_size, has_local, has_lsize;
    if (!env_int(envp, "OMPI_COMM_WORLD_RANK", &p->rank, NULL, err, errlen) ||
        !env_int(envp, "OMPI_COMM_WORLD_SIZE", &p->world_size, &has_size, err, errlen) ||
        !env_int(envp, "OMPI_COMM_WORLD_LOCAL_RANK", &p->local_rank, &has_local, err, errlen) ||
        !env_int(envp, "OMPI_COMM_WORLD_LOCAL_SIZE", &p->local_world_size, &has_lsize, err, errlen))
        return false;
    if (!env_get(envp, "OMPI_COMM_WORLD_RANK")) { // PMIx without Open MPI's names
        if (!env_int(envp, "PMIX_RANK", &p->rank, NULL, err, errlen)) return false;
        if (!env_int(envp, "PMIX_SIZE", &p->world_size, &has_size, err, errlen)) return false;
    }
    if (!has_size)
        return errf(err, errlen, "launched by mpirun but the world size is unknown "
                    "(OMPI_COMM_WORLD_SIZE / PMIX_SIZE not set)");
    if (!has_local) p->local_rank = 0;
    if (!has_lsize) p->local_world_size = 1;
    return true;
}

/* MPICH's Hydra (also Intel MPI's and MVAPICH2's mpiexec): PMI_RANK, PMI_SIZE, and on this node
 * MPI_LOCALRANKID, MPI_LOCALNRANKS. */
static bool place_mpich(DistPlace *p, char *const *envp, char *err, size_t errlen) {
    bool has_size, has_local, has_lsize;
    if (!env_int(envp, "PMI_RANK", &p->rank, NULL, err, errlen) ||
        !env_int(envp, "PMI_SIZE", &p->world_size, &has_size, err, errlen) ||
        !env_int(envp, "MPI_LOCALRANKID", &p->local_rank, &has_local, err, errlen) ||
        !env_int(envp, "MPI_LOCALNRANKS", &p->local_world_size, &has_lsize, err, errlen))
        return false;
    if (!has_size) return errf(err, errlen, "PMI_RANK is set but PMI_SIZE is not");
    if (!has_local) p->local_rank = 0;
    if (!has_lsize) p->local_world_size = 1;
    return true;
}

bool dist_place_from_env(DistPlace *p, char *const *envp, char *err, size_t errlen) {
    if (!envp) envp = environ;
    memset(p, 0, sizeof *p);
    p->world_size = p->local_world_size = 1;
    p->master_port = 29500;
    if (gethostname(p->host, sizeof p->host - 1) != 0) snprintf(p->host, sizeof p->host, "?");
    bool ok;
    if (env_get(envp, "RANK") || env_get(envp, "WORLD_SIZE")) {
        p->source = DIST_TORCHRUN;
        ok = place_torchrun(p, envp, err, errlen);
    } else if (env_get(envp, "SLURM_PROCID")) {
        p->source = DIST_SLURM;
        ok = place_slurm(p, envp, err, errlen);
    } else if (env_get(envp, "OMPI_COMM_WORLD_RANK") || env_get(envp, "PMIX_RANK")) {
        p->source = DIST_MPI;
        ok = place_mpi(p, envp, err, errlen);
    } else if (env_get(envp, "PMI_RANK")) {
        p->source = DIST_MPICH;
        ok = place_mpich(p, envp, err, errlen);
    } else {
        return true; // rank 0 of 1
    }
    if (!ok) return false;
    const char *src = dist_source_name(p->source);
    if (p->world_size < 1) return errf(err, errlen, "%s: world size %d must be at least 1", src, p->world_size);
    if (p->rank >= p->world_size)
        return errf(err, errlen, "%s: rank %d is not below the world size %d", src, p->rank, p->world_size);
    if (p->local_world_size < 1 || p->local_rank >= p->local_world_size)
        return errf(err, errlen, "%s: local rank %d is not below the local world size %d", src,
                    p->local_rank, p->local_world_size);
    const char *addr = env_get(envp, "MASTER_ADDR");
    if (addr) {
        if (!*addr || strlen(addr) >= sizeof p->master_addr)
            return errf(err, errlen, "MASTER_ADDR=%s: expected a host name or address", addr);
        snprintf(p->master_addr, sizeof p->master_addr, "%s", addr);
    }
    bool has_port;
    int port = p->master_port;
    if (!env_int(envp, "MASTER_PORT", &port, &has_port, err, errlen)) return false;
    if (port < 1 || port > 65535) return errf(err, errlen, "MASTER_PORT=%d: expected 1 to 65535", port);
    p->master_port = port;
    p->master_port_set = has_port;
    // under mpirun, MPI tells the ranks rank 0's address (mpiboot_find_master)
    if (p->world_size > 1 && !p->master_addr[0] && !dist_source_is_mpi(p->source))
        return errf(err, errlen, "%s: %d ranks need MASTER_ADDR (and MASTER_PORT, default %d) to meet; "
                    "set them to rank 0's host", src, p->world_size, p->master_port);
    return true;
}

const char *dist_source_name(DistSource s) {
    switch (s) {
    case DIST_TORCHRUN: return "torchrun";
    case DIST_SLURM: return "SLURM";
    case DIST_MPI: return "Open MPI";
    case DIST_MPICH: return "MPICH";
    default: return "none";
    }
}

bool dist_source_is_mpi(DistSource s) { return s == DIST_MPI || s == DIST_MPICH; }

// --- the TCP star

#define DIST_MAGIC 0x6c6c6663u /* "llfc" */

typedef struct {
    uint32_t magic, rank, world;
    char host[64];
} Hello;

struct DistGroup {
    int rank, world, timeout_s;
    int *fd;        /* rank 0: fd[r] for r >= 1; others: fd[0] is the link to rank 0 */
    char (*host)[64];
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* Move exactly n bytes to or from fd before the deadline. */
static bool xfer(DistGroup *g, int peer, void *buf, size_t n, bool sending, char *err, size_t errlen) {
    int fd = g->fd[g->rank == 0 ? peer : 0];
    double deadline = now_s() + g->timeout_s;
    char *p = buf;
    while (n > 0) {
        struct pollfd pfd = {fd, (short)(sending ? POLLOUT : POLLIN), 0};
        double left = deadline - now_s();
        int r = left > 0 ? poll(&pfd, 1, (int)(left * 1000) + 1) : 0;
        if (r < 0 && errno == EINTR) continue;
        if (r == 0)
            return errf(err, errlen, "rank %d (host %s) did not answer within ddp_timeout (%d s): "
                        "it is hung or too slow", peer, g->host[peer], g->timeout_s);
        ssize_t k = sending ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0)
            return errf(err, errlen, "rank %d (host %s) closed its connection%s%s: it has stopped "
                        "(see its own output)", peer, g->host[peer], k < 0 ? ": " : "",
                        k < 0 ? strerror(errno) : "");
        p += k;
        n -= (size_t)k;
    }
    return true;
}

/* Host names travel in 64-byte slots; longer ones are cut (they only label messages). */
static void copy_host(char dst[64], const char *src) {
    size_t n = strnlen(src, 63);
    memcpy(dst, src, n);
    dst[n] = 0;
}

static DistGroup *group_new(const DistPlace *pl, int timeout_s) {
    DistGroup *g = xcalloc(1, sizeof *g);
    g->rank = pl->rank;
    g->world = pl->world_size;
    g->timeout_s = timeout_s;
    g->fd = xmalloc(sizeof *g->fd * (size_t)g->world);
    for (int i = 0; i < g->world; i++) g->fd[i] = -1;
    g->host = xcalloc((size_t)g->world, sizeof *g->host);
    copy_host(g->host[g->rank], pl->host);
    return g;
}

static DistGroup *fail(DistGroup *g, int fd) {
    if (fd >= 0) close(fd);
    dist_close(g);
    return NULL;
}

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static DistGroup *serve(const DistPlace *pl, int timeout_s, char *err, size_t errlen) {
    DistGroup *g = group_new(pl, timeout_s);
    int ls = socket(AF_INET6, SOCK_STREAM, 0);
    int one = 1, zero = 0;
    if (ls < 0) {
        errf(err, errlen, "rendezvous: socket: %s", strerror(errno));
        return fail(g, -1);
    }
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = in6addr_any,
                             .sin6_port = htons((uint16_t)pl->master_port)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, g->world) != 0) {
        errf(err, errlen, "rank 0 cannot listen on port %d for the other ranks: %s (is another run "
             "using it? set MASTER_PORT)", pl->master_port, strerror(errno));
        return fail(g, ls);
    }
    double deadline = now_s() + timeout_s;
    for (int arrived = 1; arrived < g->world;) {
        struct pollfd pfd = {ls, POLLIN, 0};
        double left = deadline - now_s();
        int r = left > 0 ? poll(&pfd, 1, (int)(left * 1000) + 1) : 0;
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            errf(err, errlen, "rank 0 waited %d s on port %d but only %d of %d ranks arrived",
                 timeout_s, pl->master_port, arrived, g->world);
            return fail(g, ls);
        }
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) continue;
        set_nodelay(fd);
        Hello h;
        g->fd[0] = fd; // xfer reads fd[peer] on rank 0; use slot 0 while the rank is unknown
        copy_host(g->host[0], "unknown");
        bool ok = xfer(g, 0, &h, sizeof h, false, err, errlen);
        g->fd[0] = -1;
        copy_host(g->host[0], pl->host);
        if (!ok || h.magic != DIST_MAGIC) { // a stray connection: not one of ours
            close(fd);
            continue;
        }
        h.host[sizeof h.host - 1] = 0;
        if ((int)h.world != g->world || h.rank == 0 || (int)h.rank >= g->world || g->fd[h.rank] >= 0) {
            errf(err, errlen, "rendezvous: host %s says it is rank %u of %u, but this run has %d ranks%s",
                 h.host, h.rank, h.world, g->world,
                 (int)h.rank < g->world && g->fd[h.rank] >= 0 ? " and that rank already arrived" : "");
            close(fd);
            return fail(g, ls);
        }
        g->fd[h.rank] = fd;
        copy_host(g->host[h.rank], h.host);
        arrived++;
    }
    close(ls);
    for (int r = 1; r < g->world; r++) // everyone learns every host name, for messages
        if (!xfer(g, r, g->host, sizeof g->host[0] * (size_t)g->world, true, err, errlen)) return fail(g, -1);
    return g;
}

static DistGroup *join(const DistPlace *pl, int timeout_s, char *err, size_t errlen) {
    DistGroup *g = group_new(pl, timeout_s);
    copy_host(g->host[0], pl->master_addr);
    char port[16];
    snprintf(port, sizeof port, "%d", pl->master_port);
    double deadline = now_s() + timeout_s;
    const char *why = "no answer";
    for (;;) {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(pl->master_addr, port, &hints, &res);
        if (rc != 0) why = gai_strerror(rc);
        for (struct addrinfo *ai = res; ai && g->fd[0] < 0; ai = ai->ai_next) {
            int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
            if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) g->fd[0] = fd;
            else {
                why = strerror(errno);
                if (fd >= 0) close(fd);
            }
        }
        if (res) freeaddrinfo(res);
        if (g->fd[0] >= 0) break;
        if (now_s() > deadline) {
            errf(err, errlen, "rank %d cannot reach the rendezvous at %s:%d (MASTER_ADDR:MASTER_PORT) "
                 "after %d s: %s", pl->rank, pl->master_addr, pl->master_port, timeout_s, why);
            return fail(g, -1);
        }
        usleep(200 * 1000);
    }
    set_nodelay(g->fd[0]);
    Hello h = {DIST_MAGIC, (uint32_t)pl->rank, (uint32_t)pl->world_size, {0}};
    copy_host(h.host, pl->host);
    if (!xfer(g, 0, &h, sizeof h, true, err, errlen) ||
        !xfer(g, 0, g->host, sizeof g->host[0] * (size_t)g->world, false, err, errlen))
        return fail(g, -1);
    return g;
}

DistGroup *dist_connect(const DistPlace *p, int timeout_s, char *err, size_t errlen) {
    if (p->world_size == 1) return group_new(p, timeout_s);
    if (!p->master_addr[0]) {
        errf(err, errlen, "%s: rank %d of %d does not know rank 0's address: set MASTER_ADDR (and MASTER_PORT)",
             dist_source_name(p->source), p->rank, p->world_size);
        return NULL;
    }
    return p->rank == 0 ? serve(p, timeout_s, err, errlen) : join(p, timeout_s, err, errlen);
}

void dist_close(DistGroup *g) {
    if (!g) return;
    for (int i = 0; i < g->world; i++)
        if (g->fd[i] >= 0) close(g->fd[i]);
    free(g->fd);
    free(g->host);
    free(g);
}

int dist_rank(const DistGroup *g) { return g->rank; }
int dist_world(const DistGroup *g) { return g->world; }

const char *dist_host_of(const DistGroup *g, int rank) {
    return rank >= 0 && rank < g->world ? g->host[rank] : "?";
}

bool dist_broadcast(DistGroup *g, void *buf, size_t n, char *err, size_t errlen) {
    if (g->rank != 0) return xfer(g, 0, buf, n, false, err, errlen);
    for (int r = 1; r < g->world; r++)
        if (!xfer(g, r, buf, n, true, err, errlen)) return false;
    return true;
}

/* Sum n elements of `size` bytes over the ranks, in rank order; add(dst, src, n) adds one
 * rank's values. */
static bool allreduce(DistGroup *g, void *buf, size_t n, size_t size, void (*add)(void *, const void *, size_t),
                      char *err, size_t errlen) {
    if (g->world == 1) return true;
    if (g->rank != 0)
        return xfer(g, 0, buf, n * size, true, err, errlen) && xfer(g, 0, buf, n * size, false, err, errlen);
    void *in = xmalloc(n * size);
    bool ok = true;
    for (int r = 1; r < g->world && ok; r++) { // rank order: the same sum on every rank
        ok = xfer(g, r, in, n * size, false, err, errlen);
        if (ok) add(buf, in, n);
    }
    free(in);
    return ok && dist_broadcast(g, buf, n * size, err, errlen);
}

static void add_f32(void *dst, const void *src, size_t n) {
    float *d = dst;
    const float *s = src;
    for (size_t i = 0; i < n; i++) d[i] += s[i];
}

static void add_f64(void *dst, const void *src, size_t n) {
    double *d = dst;
    const double *s = src;
    for (size_t i = 0; i < n; i++) d[i] += s[i];
}

bool dist_allreduce_sum(DistGroup *g, float *buf, size_t n, char *err, size_t errlen) {
    return allreduce(g, buf, n, sizeof *buf, add_f32, err, errlen);
}

bool dist_allreduce_sum_f64(DistGroup *g, double *buf, size_t n, char *err, size_t errlen) {
    return allreduce(g, buf, n, sizeof *buf, add_f64, err, errlen);
}

bool dist_broadcast_from(DistGroup *g, int root, void *buf, size_t n, char *err, size_t errlen) {
    if (g->world == 1) return true;
    if (root != 0) { // the star's middle relays: root -> 0 -> everyone else
        if (g->rank == root && !xfer(g, 0, buf, n, true, err, errlen)) return false;
        if (g->rank == 0 && !xfer(g, root, buf, n, false, err, errlen)) return false;
    }
    if (g->rank == 0) {
        for (int r = 1; r < g->world; r++)
            if (r != root && !xfer(g, r, buf, n, true, err, errlen)) return false;
        return true;
    }
    return g->rank == root || xfer(g, 0, buf, n, false, err, errlen);
}

bool dist_reduce_sum_to(DistGroup *g, int root, float *buf, size_t n, char *err, size_t errlen) {
    if (g->world == 1) return true;
    if (g->rank != 0) {
        if (!xfer(g, 0, buf, n * sizeof *buf, true, err, errlen)) return false;
        return g->rank != root || xfer(g, 0, buf, n * sizeof *buf, false, err, errlen);
    }
    float *in = xmalloc(n * sizeof *in);
    bool ok = true;
    for (int r = 1; r < g->world && ok; r++) { // rank order, as dist_allreduce_sum
        ok = xfer(g, r, in, n * sizeof *in, false, err, errlen);
        if (ok) add_f32(buf, in, n);
    }
    free(in);
    return ok && (root == 0 || xfer(g, root, buf, n * sizeof *buf, true, err, errlen));
}

bool dist_send_to(DistGroup *g, int from, int to, void *buf, size_t n, char *err, size_t errlen) {
    if (g->world == 1 || from == to) return true;
    if (from != 0 && to != 0) { // through the star's middle
        if (g->rank == from) return xfer(g, 0, buf, n, true, err, errlen);
        if (g->rank == to) return xfer(g, 0, buf, n, false, err, errlen);
        if (g->rank != 0) return true;
        void *relay = xmalloc(n);
        bool ok = xfer(g, from, relay, n, false, err, errlen) && xfer(g, to, relay, n, true, err, errlen);
        free(relay);
        return ok;
    }
    if (g->rank == from) return xfer(g, to, buf, n, true, err, errlen);
    return g->rank != to || xfer(g, from, buf, n, false, err, errlen);
}

bool dist_barrier(DistGroup *g, char *err, size_t errlen) {
    float token = 0;
    return dist_allreduce_sum(g, &token, 1, err, errlen);
}

// --- the local launcher

int dist_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = 29500;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static void set_env_int(const char *name, int v) {
    char s[16];
    snprintf(s, sizeof s, "%d", v);
    setenv(name, s, 1);
}

static void stop_all(const pid_t *pid, int n, int sig) {
    for (int i = 0; i < n; i++)
        if (pid[i] > 0) kill(pid[i], sig);
}

/* Wait for every child. On the first failure, name it; the others get 3 s to notice on their
 * own (they report the rank they lost), then TERM, then KILL 10 s later. Returns the
 * launcher's exit status: the failed rank's. */
static int wait_ranks(pid_t *pid, int n, int first_rank) {
    int status_out = 0, left = n;
    bool signalled = false;
    double term_at = 0, kill_at = 0;
    while (left > 0) {
        int st;
        pid_t w = waitpid(-1, &st, term_at > 0 ? WNOHANG : 0);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) break;
        if (w == 0) {
            double t = now_s();
            if (kill_at > 0 && t > kill_at) stop_all(pid, n, SIGKILL);
            else if (t > term_at && kill_at == 0) stop_all(pid, n, SIGTERM), kill_at = t + 10;
            usleep(50 * 1000);
            continue;
        }
        int i = 0;
        while (i < n && pid[i] != w) i++;
        if (i == n) continue;
        pid[i] = 0;
        left--;
        bool failed = !WIFEXITED(st) || WEXITSTATUS(st) != 0;
        if (!failed || kill_at > 0) continue; // fine, or one we stopped ourselves
        // every failure is named; the exit status is the first rank killed by a signal (the
        // likely cause: the others exit with 1 when they lose it), else the first failure
        const char *then = term_at > 0 ? "" : "; stopping the other ranks";
        if (WIFSIGNALED(st))
            fprintf(stderr, "llfc launcher: rank %d (pid %d) was killed by signal %d (%s)%s\n", first_rank + i,
                    (int)w, WTERMSIG(st), strsignal(WTERMSIG(st)), then);
        else
            fprintf(stderr, "llfc launcher: rank %d (pid %d) exited with status %d%s\n", first_rank + i, (int)w,
                    WEXITSTATUS(st), then);
        if (status_out == 0 || (WIFSIGNALED(st) && !signalled))
            status_out = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        signalled = signalled || WIFSIGNALED(st);
        if (term_at == 0) term_at = now_s() + 3;
    }
    return status_out;
}

int dist_launch(int nproc_per_node, int nnodes, int node_rank, const char *master_addr,
                int master_port, char **argv) {
    if (nproc_per_node < 1 || nnodes < 1 || node_rank < 0 || node_rank >= nnodes) {
        fprintf(stderr, "llfc launcher: need --nproc-per-node >= 1 and 0 <= --node-rank < --nnodes\n");
        return 2;
    }
    if (nnodes > 1 && (!master_addr || !*master_addr || master_port <= 0)) {
        fprintf(stderr, "llfc launcher: --nnodes %d needs --master-addr and --master-port (rank 0's "
                "host and a free port there), the same on every node\n", nnodes);
        return 2;
    }
    if (master_port <= 0) master_port = dist_free_port();
    setenv("MASTER_ADDR", master_addr && *master_addr ? master_addr : "127.0.0.1", 1);
    set_env_int("MASTER_PORT", master_port);
    set_env_int("WORLD_SIZE", nproc_per_node * nnodes);
    set_env_int("LOCAL_WORLD_SIZE", nproc_per_node);
    set_env_int("GROUP_RANK", node_rank);
    pid_t *pid = xcalloc((size_t)nproc_per_node, sizeof *pid);
    int first_rank = node_rank * nproc_per_node;
    for (int i = 0; i < nproc_per_node; i++) {
        pid_t c = fork();
        if (c < 0) {
            fprintf(stderr, "llfc launcher: fork: %s\n", strerror(errno));
            stop_all(pid, i, SIGTERM);
            free(pid);
            return 1;
        }
        if (c == 0) {
            set_env_int("RANK", first_rank + i);
            set_env_int("LOCAL_RANK", i);
            execv("/proc/self/exe", argv);
            fprintf(stderr, "llfc launcher: cannot start rank %d: %s\n", first_rank + i, strerror(errno));
            _exit(127);
        }
        pid[i] = c;
    }
    int rc = wait_ranks(pid, nproc_per_node, first_rank);
    free(pid);
    return rc;
}
