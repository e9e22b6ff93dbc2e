/* nccl.c - NCCL through dlopen: rendezvous over dist.h's TCP group (or Open MPI under mpirun), fp32
 * collectives on the GPU that time out instead of hanging (see nccl.h). */
#include "nccl.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpiboot.h"
#include "util.h"

// --- the parts of nccl.h used here (values from NCCL 2.28's header)

typedef int NcclResult; /* ncclResult_t */
typedef void *NcclHandle; /* ncclComm_t */
typedef struct {
    char internal[128]; /* NCCL_UNIQUE_ID_BYTES */
} NcclUniqueId;

/* ncclConfig_t as NCCL 2.14 declared it, the first NCCL with it (2.28's adds fields after these).
 * NCCL copies `size` bytes of it and reads only the fields that `version` had, keeping its
 * defaults for the rest (init.cc's parseCommConfig), so every NCCL since 2.14 takes this one. */
typedef struct {
    size_t size;
    unsigned int magic;   /* NCCL_CONFIG_INITIALIZER's */
    unsigned int version; /* NCCL_VERSION(2, 14, 0) */
    int blocking;
} NcclConfig;

enum {
    NCCL_CONFIG_MAGIC = 0xcafebeef,
    NCCL_VERSION_2_14 = 21400,
    NCCL_SUCCESS = 0,
    NCCL_IN_PROGRESS = 7,
    NCCL_UINT8 = 1,   /* ncclDataType_t */
    NCCL_FLOAT32 = 7,
    NCCL_SUM = 0,     /* ncclRedOp_t */
};

struct NclComm {
    void *lib;
    char path[512];
    char version[32];
    CuDrv *drv;
    NcclHandle comm;
    int timeout_s;
    const char *id_route; /* how NCCL's unique id reached this rank (ncl_id_route) */
    struct { /* the collectives started and not yet waited for: how many, the first, their stream */
        int count;
        char first[320]; /* "ncclAllReduce (gradients of layer 3, 1234 floats)" */
        void *stream;
    } pending;
    struct {
        NcclResult (*get_version)(int *);
        NcclResult (*get_unique_id)(NcclUniqueId *);
        NcclResult (*init_rank)(NcclHandle *, int, NcclUniqueId, int);
        NcclResult (*init_rank_config)(NcclHandle *, int, NcclUniqueId, int, NcclConfig *); /* NULL before 2.14 */
        NcclResult (*destroy)(NcclHandle);
        NcclResult (*abort)(NcclHandle);
        NcclResult (*async_error)(NcclHandle, NcclResult *);
        const char *(*error_string)(NcclResult);
        NcclResult (*all_reduce)(const void *, void *, size_t, int, int, NcclHandle, void *);
        NcclResult (*reduce)(const void *, void *, size_t, int, int, int, NcclHandle, void *);
        NcclResult (*broadcast)(const void *, void *, size_t, int, int, NcclHandle, void *);
    } fn;
};

/* "ncclAllReduce (gradients, 123456 floats) failed: unhandled system error (ncclResult_t 2)" */
static bool nccl_ok(NclComm *c, NcclResult rc, const char *call, const char *what, char *err, size_t errlen) {
    if (rc == NCCL_SUCCESS) return true;
    const char *text = c->fn.error_string ? c->fn.error_string(rc) : NULL;
    return errf(err, errlen, "%s (%s) failed: %s (ncclResult_t %d)", call, what, text ? text : "?", rc);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

// --- loading

size_t ncl_lib_paths(char paths[4][512]) {
    const char *env = getenv("LLFC_NCCL"), *home = getenv("CUDA_HOME");
    size_t n = 0;
    if (env && *env) {
        snprintf(paths[n++], 512, "%s", env);
        return n;
    }
    if (home && *home) snprintf(paths[n++], 512, "%s/lib64/libnccl.so.2", home);
    snprintf(paths[n++], 512, "/usr/local/cuda/lib64/libnccl.so.2");
    snprintf(paths[n++], 512, "libnccl.so.2");
    return n;
}

static bool load(NclComm *c, char *err, size_t errlen) {
    char paths[4][512], tried[ERR_LEN];
    const char *list[4], *found;
    size_t n = ncl_lib_paths(paths);
    for (size_t i = 0; i < n; i++) list[i] = paths[i];
    if (!(c->lib = cudrv_dlopen_first(list, n, &found, tried, sizeof tried)))
        return errf(err, errlen, "NCCL not found: %s; install NCCL (libnccl2) or set LLFC_NCCL to libnccl.so.2's path",
                    tried);
    snprintf(c->path, sizeof c->path, "%s", found);
    const CuSym syms[] = {
        {(void **)&c->fn.get_version, "ncclGetVersion"}, {(void **)&c->fn.get_unique_id, "ncclGetUniqueId"},
        {(void **)&c->fn.init_rank, "ncclCommInitRank"}, {(void **)&c->fn.destroy, "ncclCommDestroy"},
        {(void **)&c->fn.abort, "ncclCommAbort"}, {(void **)&c->fn.async_error, "ncclCommGetAsyncError"},
        {(void **)&c->fn.error_string, "ncclGetErrorString"}, {(void **)&c->fn.all_reduce, "ncclAllReduce"},
        {(void **)&c->fn.reduce, "ncclReduce"}, {(void **)&c->fn.broadcast, "ncclBroadcast"},
    };
    if (!cudrv_bind(c->lib, c->path, syms, sizeof syms / sizeof *syms, err, errlen)) return false;
    *(void **)&c->fn.init_rank_config = dlsym(c->lib, "ncclCommInitRankConfig");
    int v = 0;
    if (!nccl_ok(c, c->fn.get_version(&v), "ncclGetVersion", "check the library", err, errlen)) return false;
    int major = v >= 10000 ? v / 10000 : v / 1000, minor = v >= 10000 ? v / 100 % 100 : v / 100 % 10; // 2.9 on: 22809
    snprintf(c->version, sizeof c->version, "%d.%d.%d", major, minor, v % 100);
    return true;
}

// --- the rendezvous

/* Whether every rank's `ok` holds (1), not (0), or the group failed (-1). At 0, err says why: this
 * rank's own `reason` when it is one of those that failed, else "WHAT on N of W ranks (rank R on
 * HOST among them)". */
static int agree(DistGroup *g, bool ok, const char *what, const char *reason, char *err, size_t errlen) {
    int world = dist_world(g);
    double *failed = xcalloc((size_t)world, sizeof *failed);
    failed[dist_rank(g)] = ok ? 0 : 1;
    char why[ERR_LEN];
    if (!dist_allreduce_sum_f64(g, failed, (size_t)world, why, sizeof why)) {
        free(failed);
        errf(err, errlen, "agreeing on NCCL with the other ranks: %s", why);
        return -1;
    }
    int first = -1, count = 0;
    for (int r = 0; r < world; r++)
        if (failed[r] > 0) count++, first = first < 0 ? r : first;
    free(failed);
    if (count && !ok) snprintf(err, errlen, "%s", reason);
    else if (count)
        errf(err, errlen, "%s on %d of %d ranks (rank %d on %s among them)", what, count, world, first,
             dist_host_of(g, first) ? dist_host_of(g, first) : "?");
    return count == 0;
}

/* Rank 0's unique id to every rank, by MPI_Bcast when Open MPI is up (every rank of an mpirun
 * started it, or none did: mpiboot.h), else over the TCP group; a first byte of 0 says rank 0
 * could not make one. */
static bool share_id(NclComm *c, DistGroup *g, NcclUniqueId *id, char *err, size_t errlen) {
    unsigned char buf[1 + sizeof *id] = {0};
    bool ok = true;
    if (dist_rank(g) == 0) {
        ok = nccl_ok(c, c->fn.get_unique_id(id), "ncclGetUniqueId", "rendezvous of the ranks", err, errlen);
        buf[0] = ok;
        memcpy(buf + 1, id, sizeof *id);
    }
    char why[ERR_LEN];
    c->id_route = mpiboot_active() ? "MPI_Bcast" : "TCP";
    bool sent = mpiboot_active() ? mpiboot_broadcast(buf, sizeof buf, why, sizeof why)
                                 : dist_broadcast(g, buf, sizeof buf, why, sizeof why);
    if (!sent) return errf(err, errlen, "sending NCCL's unique id to the ranks (%s): %s", c->id_route, why);
    if (!ok) return false;
    if (!buf[0]) return errf(err, errlen, "rank 0 could not make NCCL's unique id (ncclGetUniqueId failed there)");
    memcpy(id, buf + 1, sizeof *id);
    return true;
}

static void pause_ms(long ms) { nanosleep(&(struct timespec){ms / 1000, ms % 1000 * 1000000L}, NULL); }

/* Until ncclCommGetAsyncError stops saying ncclInProgress: the communicator is up, failed, or
 * not up within the timeout. */
static bool wait_ready(NclComm *c, const char *call, const char *rank, char *err, size_t errlen) {
    for (double deadline = now_s() + c->timeout_s;; pause_ms(1)) {
        NcclResult state = NCCL_IN_PROGRESS;
        if (!nccl_ok(c, c->fn.async_error(c->comm, &state), "ncclCommGetAsyncError", rank, err, errlen)) return false;
        if (state != NCCL_IN_PROGRESS) return nccl_ok(c, state, call, rank, err, errlen);
        if (now_s() > deadline)
            return errf(err, errlen, "%s (%s) did not finish within ddp_timeout %d s: the ranks met over TCP and "
                        "shared NCCL's id, but NCCL did not connect them (a rank died or hangs, or NCCL cannot use "
                        "the network between the hosts: see NCCL_SOCKET_IFNAME, NCCL_DEBUG=INFO); NCCL's "
                        "communicator was aborted", call, rank, c->timeout_s);
    }
}

/* This rank's communicator, with NCCL's id from rank 0. NCCL >= 2.14: a non-blocking one
 * (config.blocking 0), whose ncclCommInitRankConfig returns at once while NCCL connects the
 * ranks in the background, polled until the recipe's ddp_timeout. Before 2.14 there is only the
 * blocking ncclCommInitRank, with no timeout of its own; acceptable there: the ranks met over TCP
 * and agreed that NCCL loads on each just before, so what is left to hang is a rank dying in
 * between or NCCL's own network failing, and NCCL's socket transport gives up on its own (its
 * connect retries end in an error) in most such cases. (NCCL_COMM_BLOCKING=1 in the environment
 * makes NCCL block here too.) On failure c->comm is NULL, any half-made one aborted. */
static bool start_comm(NclComm *c, DistGroup *g, const NcclUniqueId *id, char *err, size_t errlen) {
    char rank[64];
    snprintf(rank, sizeof rank, "rank %d of %d", dist_rank(g), dist_world(g));
    if (!c->fn.init_rank_config) {
        bool up = nccl_ok(c, c->fn.init_rank(&c->comm, dist_world(g), *id, dist_rank(g)), "ncclCommInitRank", rank,
                          err, errlen);
        if (!up) c->comm = NULL;
        return up;
    }
    NcclConfig config = {.size = sizeof config, .magic = NCCL_CONFIG_MAGIC, .version = NCCL_VERSION_2_14, .blocking = 0};
    NcclResult rc = c->fn.init_rank_config(&c->comm, dist_world(g), *id, dist_rank(g), &config);
    bool up = rc == NCCL_IN_PROGRESS || nccl_ok(c, rc, "ncclCommInitRankConfig", rank, err, errlen);
    up = up && c->comm && wait_ready(c, "ncclCommInitRankConfig", rank, err, errlen);
    if (!up && c->comm) c->fn.abort(c->comm);
    if (!up) c->comm = NULL;
    return up;
}

NclComm *ncl_open(DistGroup *g, CuDrv *d, int timeout_s, bool *absent, char *err, size_t errlen) {
    NclComm *c = xcalloc(1, sizeof *c);
    c->drv = d, c->timeout_s = timeout_s > 0 ? timeout_s : 1800;
    char mine[ERR_LEN] = "";
    int all = agree(g, load(c, mine, sizeof mine), "NCCL not found", mine, err, errlen);
    NcclUniqueId id;
    if (all == 1 && !share_id(c, g, &id, err, errlen)) all = -1;
    if (all == 1) { // ranks sharing a GPU, a broken network: NCCL cannot start, and every rank says so
        bool up = start_comm(c, g, &id, mine, sizeof mine);
        all = agree(g, up, "NCCL could not start", mine, err, errlen);
        if (all < 0 && !up) { // a peer gone for good: say why NCCL did not start here too
            char group[ERR_LEN];
            snprintf(group, sizeof group, "%s", err);
            errf(err, errlen, "%s; then %s", mine, group);
        }
    }
    *absent = all == 0;
    if (all == 1) return c;
    if (c->comm) c->fn.abort(c->comm); // up here, but not everywhere
    c->comm = NULL;
    ncl_close(c);
    return NULL;
}

void ncl_close(NclComm *c) {
    if (!c) return;
    if (c->comm) c->fn.destroy(c->comm);
    if (c->lib) dlclose(c->lib);
    free(c);
}

const char *ncl_version(const NclComm *c) { return c->version; }
const char *ncl_id_route(const NclComm *c) { return c->id_route; }
const char *ncl_path(const NclComm *c) { return c->path; }

// --- collectives

/* "ncclAllReduce (gradients, 10 floats)", or with more pending "... or one of the 3 collectives
 * started after it": the stream runs them in order, and which one hangs cannot be told. */
static const char *pending_label(const NclComm *c, char *buf, size_t len) {
    if (c->pending.count > 2)
        snprintf(buf, len, "%s or one of the %d collectives started after it", c->pending.first, c->pending.count - 1);
    else if (c->pending.count == 2) snprintf(buf, len, "%s or the collective started after it", c->pending.first);
    else snprintf(buf, len, "%s", c->pending.first);
    return buf;
}

/* Poll until the stream has run everything started on it and NCCL reports no error; past the
 * deadline abort the communicator, so that the GPU's kernels stop waiting for the peers too. */
bool ncl_wait(NclComm *c, void *stream, char *err, size_t errlen) {
    if (!c->pending.count) return true;
    char label[512];
    pending_label(c, label, sizeof label);
    if (!c->comm) return errf(err, errlen, "%s: NCCL's communicator was aborted by an earlier failure", label);
    if (stream != c->pending.stream)
        return errf(err, errlen, "%s: waited for on another stream than the one it was started on", label);
    double deadline = now_s() + c->timeout_s;
    for (unsigned spin = 0;; spin++) {
        bool done = true;
        NcclResult async = NCCL_SUCCESS;
        if (!nccl_ok(c, c->fn.async_error(c->comm, &async), "ncclCommGetAsyncError", label, err, errlen)) break;
        if (async != NCCL_SUCCESS && async != NCCL_IN_PROGRESS) {
            const char *text = c->fn.error_string ? c->fn.error_string(async) : NULL;
            errf(err, errlen, "%s failed: %s (ncclResult_t %d)", label, text ? text : "?", async);
            break;
        }
        // the stream after NCCL's state: once NCCL says ncclSuccess the op is on the stream, so an
        // idle stream then means it ran (asked before, the stream could be idle for not having it yet)
        if (c->drv && !cudrv_stream_done(c->drv, stream, &done, label, err, errlen)) break;
        if (done && async == NCCL_SUCCESS) {
            c->pending.count = 0;
            return true;
        }
        if (now_s() > deadline) {
            errf(err, errlen, "%s did not finish within ddp_timeout %d s (a rank died, hangs or never called it); "
                 "NCCL's communicator was aborted", label, c->timeout_s);
            break;
        }
        if (spin < 1000) sched_yield(); // a GPU collective takes microseconds to milliseconds
        else nanosleep(&(struct timespec){0, 100000}, NULL);
    }
    c->fn.abort(c->comm);
    c->comm = NULL;
    c->pending.count = 0;
    return false;
}

/* Whether call (detail) may be started on stream: the communicator is up and what is pending is
 * on the same stream (ncl_wait polls one). */
static bool can_start(NclComm *c, void *stream, const char *call, const char *detail, char *err, size_t errlen) {
    if (!c->comm) return errf(err, errlen, "%s (%s): NCCL's communicator was aborted by an earlier failure", call, detail);
    if (c->pending.count && stream != c->pending.stream)
        return errf(err, errlen, "%s (%s): started on another stream than the %d collectives not yet waited for",
                    call, detail, c->pending.count);
    return true;
}

/* After enqueueing call (detail) on stream: count it pending, or name it when NCCL refused it. */
static bool started(NclComm *c, NcclResult rc, void *stream, const char *call, const char *detail, char *err,
                    size_t errlen) {
    // a non-blocking communicator may answer ncclInProgress: the op is still being enqueued
    if (rc != NCCL_IN_PROGRESS && !nccl_ok(c, rc, call, detail, err, errlen)) return false;
    if (c->pending.count++ == 0) {
        snprintf(c->pending.first, sizeof c->pending.first, "%s (%s)", call, detail);
        c->pending.stream = stream;
    }
    return true;
}

bool ncl_start_allreduce_sum(NclComm *c, CuPtr send, CuPtr recv, size_t n, void *stream, const char *what, char *err,
                             size_t errlen) {
    char detail[256];
    snprintf(detail, sizeof detail, "%s, %zu floats", what, n);
    if (!can_start(c, stream, "ncclAllReduce", detail, err, errlen)) return false;
    NcclResult rc = c->fn.all_reduce((const void *)(uintptr_t)send, (void *)(uintptr_t)recv, n, NCCL_FLOAT32, NCCL_SUM,
                                     c->comm, stream);
    return started(c, rc, stream, "ncclAllReduce", detail, err, errlen);
}

bool ncl_start_reduce_sum(NclComm *c, CuPtr send, CuPtr recv, size_t n, int root, void *stream, const char *what,
                          char *err, size_t errlen) {
    char detail[256];
    snprintf(detail, sizeof detail, "%s, %zu floats to rank %d", what, n, root);
    if (!can_start(c, stream, "ncclReduce", detail, err, errlen)) return false;
    NcclResult rc = c->fn.reduce((const void *)(uintptr_t)send, (void *)(uintptr_t)recv, n, NCCL_FLOAT32, NCCL_SUM,
                                 root, c->comm, stream);
    return started(c, rc, stream, "ncclReduce", detail, err, errlen);
}

bool ncl_allreduce_sum(NclComm *c, CuPtr send, CuPtr recv, size_t n, void *stream, const char *what, char *err,
                       size_t errlen) {
    return ncl_start_allreduce_sum(c, send, recv, n, stream, what, err, errlen) && ncl_wait(c, stream, err, errlen);
}

bool ncl_reduce_sum(NclComm *c, CuPtr send, CuPtr recv, size_t n, int root, void *stream, const char *what,
                    char *err, size_t errlen) {
    return ncl_start_reduce_sum(c, send, recv, n, root, stream, what, err, errlen) && ncl_wait(c, stream, err, errlen);
}

static bool start_broadcast(NclComm *c, CuPtr send, CuPtr recv, size_t n, int type, const char *unit, int root,
                            void *stream, const char *what, char *err, size_t errlen) {
    char detail[256];
    snprintf(detail, sizeof detail, "%s, %zu %s from rank %d", what, n, unit, root);
    if (!can_start(c, stream, "ncclBroadcast", detail, err, errlen)) return false;
    NcclResult rc = c->fn.broadcast((const void *)(uintptr_t)send, (void *)(uintptr_t)recv, n, type, root, c->comm,
                                    stream);
    return started(c, rc, stream, "ncclBroadcast", detail, err, errlen);
}

bool ncl_broadcast(NclComm *c, CuPtr send, CuPtr recv, size_t n, int root, void *stream, const char *what, char *err,
                   size_t errlen) {
    return start_broadcast(c, send, recv, n, NCCL_FLOAT32, "floats", root, stream, what, err, errlen) &&
           ncl_wait(c, stream, err, errlen);
}

bool ncl_broadcast_bytes(NclComm *c, CuPtr send, CuPtr recv, size_t n, int root, void *stream, const char *what,
                         char *err, size_t errlen) {
    return ncl_start_broadcast_bytes(c, send, recv, n, root, stream, what, err, errlen) &&
           ncl_wait(c, stream, err, errlen);
}

bool ncl_start_broadcast_bytes(NclComm *c, CuPtr send, CuPtr recv, size_t n, int root, void *stream,
                               const char *what, char *err, size_t errlen) {
    return start_broadcast(c, send, recv, n, NCCL_UINT8, "bytes", root, stream, what, err, errlen);
}
