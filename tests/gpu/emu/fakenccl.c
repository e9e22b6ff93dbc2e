/* fakenccl.c - a libnccl.so.2 for machines without a GPU (tests/unit/test_nccl.c, and
 * tests/gpu/emu/run_trainer.sh through LLFC_NCCL): the calls runtime/nccl.c makes, on "device"
 * memory that is host memory (fakecuda.c), between ranks that are separate processes.
 *
 * ncclGetUniqueId writes a fresh POSIX shared-memory name into the id; ncclCommInitRank maps that
 * segment (created by whichever rank comes first): a header with a barrier (C11 atomics) and a
 * staging area of STAGE floats per rank. The communicator is ready when every rank has arrived:
 * ncclCommInitRank waits for that; ncclCommInitRankConfig with a config whose blocking is 0 (NCCL
 * 2.14's non-blocking mode) returns ncclInProgress at once and ncclCommGetAsyncError says
 * ncclInProgress until then (other configs block, as NCCL's default). A collective is enqueued, as
 * on a GPU: a thread of the communicator runs the queue in order while the caller goes on;
 * ncclCommGetAsyncError says ncclInProgress until all of it is done, then ncclSuccess or the first
 * error. It runs chunk by chunk: each rank copies its chunk into its staging slot, barrier, every
 * rank (or the root) sums the slots in rank order (the same bits everywhere), barrier. Every wait
 * has a deadline ($LLFC_FAKENCCL_TIMEOUT seconds, default 600) and stops when the communicator is
 * aborted, so nothing here hangs forever. $LLFC_FAKENCCL_DUPLICATE=1 in one rank makes every
 * rank's ncclCommInitRank fail as NCCL's does when two ranks share a GPU.
 * $LLFC_FAKENCCL_STALL_INIT=1 in one rank makes its NCCL never reach the others (as one whose
 * network NCCL cannot use): no rank's communicator becomes ready. Built with
 * -DFAKENCCL_BEFORE_2_14 it is an NCCL 2.13: no ncclCommInitRankConfig.
 *
 * The order a caller must keep, made to show: a collective reads its input when it is enqueued
 * (the earliest a GPU could, fakecuda.c having run everything launched before) and writes its
 * result into recv only when ncclCommGetAsyncError reports the queue done (the latest: when the
 * caller can know). So a caller that enqueues before the kernels that write the input have been
 * launched, or that uses recv without waiting, gets wrong values every time, not now and then.
 * The input must also stay as it was until then (a GPU may read it any time before): a send
 * buffer changed before the wait saw the collective done fails it (ncclInvalidUsage), so a caller
 * that reuses a buffer too early is caught too.
 * And on a stream of fakecuda's (not the legacy one), a collective is refused (ncclInvalidUsage)
 * unless that stream waited for everything launched on the legacy stream (cuStreamWaitEvent; see
 * fakecuda.c): on a GPU it could run before those kernels. The legacy stream may wait for an
 * event recorded on a collectives' stream instead of the caller polling: fakecuda.c then asks
 * fakenccl_complete for the collectives started on that stream before the record, which are run,
 * checked and delivered then (and only those: a later one's result lands no earlier than on a
 * GPU). Not modelled: a collective reading what an earlier one on the same stream writes, with
 * no wait between (llfc never does that).
 *
 * fp32 sums, and broadcasts of fp32 or bytes (ncclUint8) only (what llfc uses); anything else is
 * ncclInvalidArgument. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum { OK = 0, SYSTEM_ERROR = 2, INVALID_ARGUMENT = 4, INVALID_USAGE = 5, REMOTE_ERROR = 6, IN_PROGRESS = 7 };
enum { UINT8 = 1, FLOAT32 = 7, SUM = 0 };
#define STAGE ((size_t)1 << 18) /* floats per rank and chunk (1 MiB) */

typedef struct { char internal[128]; } UniqueId;

/* ncclConfig_t's head, as every NCCL since 2.14 begins it; NCCL reads the fields up to `size`
 * that `version` has, so an older, shorter config is fine. */
typedef struct { size_t size; unsigned magic, version; int blocking; } Config;
#define CONFIG_MAGIC 0xcafebeefu
#define CONFIG_UNDEF_INT (-2147483647 - 1) /* NCCL_CONFIG_UNDEF_INT: NCCL's default (blocking) */

typedef struct {
    atomic_int nranks, arrived, aborted, duplicate;
    atomic_uint count, gen;
} Header;

typedef enum { ALLREDUCE, REDUCE, BROADCAST } Kind;

/* What ncclGetErrorString says for ncclInvalidUsage: the last misuse seen. */
static char usage_error[512] = "invalid usage (fakenccl: Duplicate GPU detected)";

typedef struct Op {
    Kind kind;
    int root;
    void *stream;      /* where it was started, and its number there (fakenccl_enqueued) */
    long seq;
    size_t bytes;      /* fp32 for the sums; a broadcast moves bytes of any type */
    const void *send;
    void *recv;
    char *in, *out;    /* send as it was when enqueued; the result, for recv when seen done */
    int writes;        /* whether recv gets it here (a reduce writes the root's only) */
    struct Op *next;
} Op;

typedef struct {
    char name[128];
    int rank, n;
    size_t bytes;
    Header *h;
    float *stage; /* (n, STAGE) */
    pthread_t worker;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    Op *queue, *done;  /* to run, in order; run, their results not yet in recv */
    Op *running_op;    /* taken off the queue and not finished, or NULL */
    int running, stop; /* an op taken off the queue and not finished; the worker is to end */
    atomic_int error, abort;
    int initializing; /* until every rank has arrived (init_progress) */
    double init_until;
} Comm;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static double deadline(void) {
    const char *t = getenv("LLFC_FAKENCCL_TIMEOUT");
    return now_s() + (t && *t ? atof(t) : 600.0);
}

static void pause_briefly(void) { nanosleep(&(struct timespec){0, 20000}, NULL); }

/* All n ranks here, or an error: this communicator or a peer's was aborted, or the deadline. */
static int barrier(Comm *c, double until) {
    Header *h = c->h;
    unsigned gen = atomic_load(&h->gen);
    if (atomic_fetch_add(&h->count, 1) == (unsigned)c->n - 1) {
        atomic_store(&h->count, 0);
        atomic_fetch_add(&h->gen, 1);
        return OK;
    }
    while (atomic_load(&h->gen) == gen) {
        if (atomic_load(&c->abort) || atomic_load(&h->aborted)) return REMOTE_ERROR;
        if (now_s() > until) return SYSTEM_ERROR;
        pause_briefly();
    }
    return OK;
}

/* The root's bytes through its staging slot, chunk by chunk. */
static int run_broadcast(Comm *c, Op *op, double until) {
    const size_t chunk = STAGE * sizeof(float);
    char *stage = (char *)c->stage;
    for (size_t off = 0; off < op->bytes; off += chunk) {
        size_t m = op->bytes - off < chunk ? op->bytes - off : chunk;
        int rc;
        if (c->rank == op->root) memcpy(stage, op->in + off, m);
        if ((rc = barrier(c, until))) return rc;
        memcpy(op->out + off, stage, m);
        if ((rc = barrier(c, until))) return rc;
    }
    return OK;
}

static int run_sum(Comm *c, Op *op, double until) {
    const float *in = (const float *)op->in;
    float *out = (float *)op->out, *mine = c->stage + (size_t)c->rank * STAGE;
    const size_t count = op->bytes / sizeof(float);
    for (size_t off = 0; off < count || off == 0; off += STAGE) {
        size_t m = count - off < STAGE ? count - off : STAGE;
        int rc;
        memcpy(mine, in + off, m * sizeof *in);
        if ((rc = barrier(c, until))) return rc;
        if (op->writes)
            for (size_t i = 0; i < m; i++) {
                float acc = c->stage[i];
                for (int r = 1; r < c->n; r++) acc += c->stage[(size_t)r * STAGE + i];
                out[off + i] = acc;
            }
        if ((rc = barrier(c, until))) return rc;
        if (!count) break;
    }
    return OK;
}

static int run_op(Comm *c, Op *op) {
    return op->kind == BROADCAST ? run_broadcast(c, op, deadline()) : run_sum(c, op, deadline());
}

/* The queue in order; after an error nothing more runs (every op after it fails with it). */
static void *worker(void *arg) {
    Comm *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->queue && !c->stop) pthread_cond_wait(&c->wake, &c->mu);
        if (!c->queue) break;
        Op *op = c->queue;
        c->queue = op->next;
        c->running = 1, c->running_op = op;
        pthread_mutex_unlock(&c->mu);
        int rc = atomic_load(&c->error) ? atomic_load(&c->error) : run_op(c, op);
        pthread_mutex_lock(&c->mu);
        if (rc && !atomic_load(&c->error)) atomic_store(&c->error, rc);
        Op **tail = &c->done;
        while (*tail) tail = &(*tail)->next;
        op->next = NULL, *tail = op;
        c->running = 0, c->running_op = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void free_ops(Op *op) {
    while (op) {
        Op *next = op->next;
        free(op->in), free(op->out), free(op);
        op = next;
    }
}

/* The ops of `stream` numbered up to `upto`; every op when stream is NULL. */
static bool selected(const Op *op, void *stream, long upto) { return !stream || (op->stream == stream && op->seq <= upto); }

/* Whether every selected run op's send buffer still holds what it held when enqueued (checked
 * before any result lands: an in-place op's recv is its send). */
static bool inputs_kept(Comm *c, void *stream, long upto) {
    for (Op *op = c->done; op; op = op->next)
        if (selected(op, stream, upto) && memcmp(op->send, op->in, op->bytes)) {
            snprintf(usage_error, sizeof usage_error, "invalid usage (fakenccl: the input of a %s changed before the "
                     "caller waited for it: on a GPU it could have been read after the change)",
                     op->kind == ALLREDUCE ? "ncclAllReduce" : op->kind == REDUCE ? "ncclReduce" : "ncclBroadcast");
            fprintf(stderr, "%s\n", usage_error);
            return false;
        }
    return true;
}

/* The results of the selected run ops into their recv, in order: the caller sees them done now. */
static void deliver(Comm *c, void *stream, long upto) {
    for (Op **at = &c->done; *at;) {
        Op *op = *at;
        if (!selected(op, stream, upto)) {
            at = &op->next;
            continue;
        }
        if (op->writes) memcpy(op->recv, op->out, op->bytes);
        *at = op->next;
        op->next = NULL;
        free_ops(op);
    }
}

// --- what fakecuda.c's legacy stream waits for: the collectives of a stream, up to an event

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static Comm *comms[16]; /* the live communicators of this process */
static struct { void *stream; long count; } started_on[32]; /* collectives started per stream */

static long *count_of(void *stream) {
    if (!stream) return NULL; /* the legacy stream: nothing waits for its collectives by event */
    for (size_t i = 0; i < sizeof started_on / sizeof *started_on; i++)
        if (started_on[i].stream == stream || !started_on[i].stream) {
            started_on[i].stream = stream;
            return &started_on[i].count;
        }
    return NULL;
}

static void registry_add(Comm *c, bool add) {
    pthread_mutex_lock(&registry_mu);
    for (size_t i = 0; i < sizeof comms / sizeof *comms; i++)
        if (add ? !comms[i] : comms[i] == c) {
            comms[i] = add ? c : NULL;
            break;
        }
    pthread_mutex_unlock(&registry_mu);
}

/* How many collectives have been started on `stream` so far (fakecuda.c's event record). */
long fakenccl_enqueued(void *stream);
long fakenccl_enqueued(void *stream) {
    pthread_mutex_lock(&registry_mu);
    long *n = count_of(stream), v = n ? *n : 0;
    pthread_mutex_unlock(&registry_mu);
    return v;
}

/* Whether c still has a selected op to run. */
static bool pending(Comm *c, void *stream, long upto) {
    if (c->running_op && selected(c->running_op, stream, upto)) return true;
    for (Op *op = c->queue; op; op = op->next)
        if (selected(op, stream, upto)) return true;
    return false;
}

/* The collectives started on `stream`, numbered up to `upto`: wait until they have run, check
 * their inputs and deliver their results (0), or an NCCL error of theirs (their communicator's). */
int fakenccl_complete(void *stream, long upto);
int fakenccl_complete(void *stream, long upto) {
    const double until = deadline();
    pthread_mutex_lock(&registry_mu);
    Comm *live[16];
    memcpy(live, comms, sizeof live);
    pthread_mutex_unlock(&registry_mu);
    for (size_t i = 0; i < sizeof live / sizeof *live; i++) {
        Comm *c = live[i];
        if (!c) continue;
        pthread_mutex_lock(&c->mu);
        while (!atomic_load(&c->error) && pending(c, stream, upto)) {
            pthread_mutex_unlock(&c->mu);
            if (now_s() > until) return SYSTEM_ERROR;
            pause_briefly();
            pthread_mutex_lock(&c->mu);
        }
        int rc = atomic_load(&c->error);
        if (!rc && !inputs_kept(c, stream, upto)) atomic_store(&c->error, rc = INVALID_USAGE);
        if (!rc) deliver(c, stream, upto);
        pthread_mutex_unlock(&c->mu);
        if (rc) return rc;
    }
    return OK;
}

// --- fakecuda.c's streams, when it is the driver loaded here

/* Operations launched on fakecuda's legacy stream that `stream` has not waited for (0 with
 * another driver, or none). */
static long stream_unwaited(void *stream) {
    static long (*unwaited)(void *); /* looked for until found: the driver may come after this library */
    if (!stream) return 0;
    if (!unwaited) {
        const char *drv = getenv("LLFC_CUDA_DRIVER");
        void *lib = drv && *drv ? dlopen(drv, RTLD_NOW | RTLD_NOLOAD) : NULL;
        if (lib) *(void **)&unwaited = dlsym(lib, "fakecuda_stream_unwaited");
    }
    return unwaited ? unwaited(stream) : 0;
}

static int enqueue(Comm *c, Kind kind, const void *send, void *recv, size_t count, int type, int op, int root,
                   void *stream, const char *call) {
    bool bytes = kind == BROADCAST && type == UINT8;
    if (!c || (type != FLOAT32 && !bytes) || op != SUM || root < 0 || root >= c->n) return INVALID_ARGUMENT;
    if (c->initializing) return INVALID_USAGE; /* NCCL: wait until ncclCommGetAsyncError says ncclSuccess */
    if (atomic_load(&c->error)) return atomic_load(&c->error);
    long behind = stream_unwaited(stream);
    if (behind < 0)
        snprintf(usage_error, sizeof usage_error, "invalid usage (fakenccl: %s on a stream fakecuda did not make)", call);
    else if (behind)
        snprintf(usage_error, sizeof usage_error, "invalid usage (fakenccl: %s on a stream that did not wait for the "
                 "%ld operations launched on the legacy stream before it: no cuStreamWaitEvent, so on a GPU it "
                 "could read its input before they have run)", call, behind);
    if (behind) {
        fprintf(stderr, "%s\n", usage_error);
        return INVALID_USAGE;
    }
    Op *o = calloc(1, sizeof *o);
    o->kind = kind, o->root = root, o->recv = recv, o->stream = stream;
    pthread_mutex_lock(&registry_mu);
    long *n = count_of(stream);
    o->seq = n ? ++*n : 0;
    pthread_mutex_unlock(&registry_mu);
    o->bytes = bytes ? count : count * sizeof(float);
    o->in = malloc(o->bytes + 1), o->out = malloc(o->bytes + 1);
    memcpy(o->in, send, o->bytes);
    o->send = send;
    o->writes = kind != REDUCE || c->rank == root;
    pthread_mutex_lock(&c->mu);
    Op **tail = &c->queue;
    while (*tail) tail = &(*tail)->next;
    *tail = o;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
    return OK;
}

#ifdef FAKENCCL_BEFORE_2_14
int ncclGetVersion(int *v) { *v = 21306; return OK; } /* 2.13.x: encoded MAJOR * 10000 + MINOR * 100 + PATCH */
#else
int ncclGetVersion(int *v) { *v = 22800; return OK; }
#endif

const char *ncclGetErrorString(int rc) {
    switch (rc) {
    case OK: return "no error";
    case SYSTEM_ERROR: return "unhandled system error (fakenccl: a peer did not come before the deadline)";
    case INVALID_ARGUMENT: return "invalid argument (fakenccl: fp32 sums only)";
    case INVALID_USAGE: return usage_error;
    case REMOTE_ERROR: return "remote process exited or there was a network error (fakenccl: aborted)";
    case IN_PROGRESS: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

int ncclGetUniqueId(UniqueId *id) {
    unsigned long long r = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&r, sizeof r, 1, f) != 1) r = (unsigned long long)now_s() * 1000003ull;
    if (f) fclose(f);
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "/llfc_fakenccl_%d_%016llx", (int)getpid(), r);
    return OK;
}

/* Map the id's segment and arrive there (unless this rank stalls); the communicator is ready
 * when init_progress says so. */
static int init_start(Comm **out, int n, UniqueId id, int rank) {
    *out = NULL;
    if (n < 1 || rank < 0 || rank >= n || strncmp(id.internal, "/llfc_fakenccl_", 15)) return INVALID_ARGUMENT;
    Comm *c = calloc(1, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", id.internal);
    c->rank = rank, c->n = n;
    c->bytes = 4096 + (size_t)n * STAGE * sizeof(float);
    int fd = shm_open(c->name, O_RDWR | O_CREAT, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)c->bytes) != 0) {
        if (fd >= 0) close(fd);
        free(c);
        return SYSTEM_ERROR;
    }
    void *p = mmap(NULL, c->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        free(c);
        return SYSTEM_ERROR;
    }
    c->h = p, c->stage = (float *)((char *)p + 4096);
    int zero = 0;
    if (!atomic_compare_exchange_strong(&c->h->nranks, &zero, n) && zero != n) {
        munmap(p, c->bytes);
        free(c);
        return INVALID_ARGUMENT;
    }
    const char *dup = getenv("LLFC_FAKENCCL_DUPLICATE"), *stall = getenv("LLFC_FAKENCCL_STALL_INIT");
    if (dup && *dup == '1') atomic_store(&c->h->duplicate, 1);
    if (!stall || *stall != '1') atomic_fetch_add(&c->h->arrived, 1);
    c->initializing = 1, c->init_until = deadline();
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->wake, NULL);
    if (pthread_create(&c->worker, NULL, worker, c) != 0) {
        munmap(p, c->bytes);
        free(c);
        return SYSTEM_ERROR;
    }
    registry_add(c, true);
    *out = c;
    return OK;
}

/* IN_PROGRESS until every rank has arrived; then OK, or the error that ends the communicator
 * (kept as its async error). */
static int init_progress(Comm *c) {
    if (!c->initializing) return OK;
    int rc = IN_PROGRESS;
    if (atomic_load(&c->h->arrived) >= c->n) rc = atomic_load(&c->h->duplicate) ? INVALID_USAGE : OK;
    else if (atomic_load(&c->h->aborted)) rc = REMOTE_ERROR; /* a peer gave up waiting: NCCL's bootstrap breaks */
    else if (now_s() > c->init_until) rc = SYSTEM_ERROR;
    if (rc == IN_PROGRESS) return rc;
    c->initializing = 0;
    if (c->rank == 0 || rc != OK) shm_unlink(c->name); /* every rank has it mapped (or gave up) */
    atomic_store(&c->error, rc);
    return rc;
}

static int release(Comm *c);

int ncclCommInitRank(Comm **out, int n, UniqueId id, int rank) {
    int rc = init_start(out, n, id, rank);
    if (rc != OK) return rc;
    while ((rc = init_progress(*out)) == IN_PROGRESS) pause_briefly();
    if (rc != OK) {
        release(*out);
        *out = NULL;
    }
    return rc;
}

#ifndef FAKENCCL_BEFORE_2_14
int ncclCommInitRankConfig(Comm **out, int n, UniqueId id, int rank, const Config *config) {
    *out = NULL;
    if (config && config->magic != CONFIG_MAGIC) return INVALID_ARGUMENT; /* not from NCCL_CONFIG_INITIALIZER */
    bool has_blocking = config && config->version >= 21400 && config->size >= sizeof *config;
    if (!has_blocking || config->blocking == CONFIG_UNDEF_INT || config->blocking) return ncclCommInitRank(out, n, id, rank);
    int rc = init_start(out, n, id, rank);
    return rc == OK ? IN_PROGRESS : rc;
}
#endif

int ncclCommGetAsyncError(Comm *c, int *err) {
    if (c->initializing) {
        *err = init_progress(c);
        return OK;
    }
    pthread_mutex_lock(&c->mu);
    *err = atomic_load(&c->error);
    if (!*err && (c->queue || c->running)) *err = IN_PROGRESS;
    else if (!*err && !inputs_kept(c, NULL, 0)) atomic_store(&c->error, *err = INVALID_USAGE);
    else if (!*err) deliver(c, NULL, 0);
    pthread_mutex_unlock(&c->mu);
    return OK;
}

/* The worker ends once the queue has run (at once after an abort: every wait fails). */
static int release(Comm *c) {
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->worker, NULL);
    registry_add(c, false);
    if (!atomic_load(&c->error)) deliver(c, NULL, 0);
    free_ops(c->done);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->wake);
    munmap(c->h, c->bytes);
    free(c);
    return OK;
}

int ncclCommDestroy(Comm *c) { return c ? release(c) : OK; }

int ncclCommAbort(Comm *c) {
    if (!c) return OK;
    if (c->initializing) shm_unlink(c->name); /* no rank is to come to this segment any more */
    atomic_store(&c->abort, 1);
    atomic_store(&c->h->aborted, 1); /* the peers' waits end too, as NCCL's would on a broken connection */
    return release(c);
}

int ncclAllReduce(const void *send, void *recv, size_t count, int type, int op, Comm *c, void *stream) {
    return enqueue(c, ALLREDUCE, send, recv, count, type, op, 0, stream, "ncclAllReduce");
}

int ncclReduce(const void *send, void *recv, size_t count, int type, int op, int root, Comm *c, void *stream) {
    return enqueue(c, REDUCE, send, recv, count, type, op, root, stream, "ncclReduce");
}

int ncclBroadcast(const void *send, void *recv, size_t count, int type, int root, Comm *c, void *stream) {
    return enqueue(c, BROADCAST, send, recv, count, type, SUM, root, stream, "ncclBroadcast");
}
