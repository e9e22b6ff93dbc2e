/* test_nccl.c - NCCL is looked for where nccl.h says and a missing or wrong library is named
 * with every path tried; between real processes (ranks met over dist.h's TCP group) with the
 * fake libnccl of tests/gpu/emu/fakenccl.c (ninja builds it beside this test), the collectives
 * give the exact sums, a rank without NCCL makes every rank fall back alike, and a rank that
 * never calls the collective makes the other fail within the timeout, naming the op, instead
 * of hanging; so does a rank whose NCCL never connects while the communicator starts. An NCCL
 * older than 2.14 (the fake built without ncclCommInitRankConfig) still works, blocking.
 * Collectives started on a stream and waited for later (nccl.h's overlap) give the same sums, a
 * wait that times out names what it waited for, and with the fake driver too (fakecuda.c) a
 * stream that did not wait for the executor's work is refused. Under Open MPI's mpirun with no
 * MASTER_ADDR, NCCL's unique id goes by MPI_Bcast instead of the TCP group (the test re-runs this
 * program under mpirun with the argument "mpi-rank"). (A real NCCL on real GPUs is exercised by
 * the trainer on a GPU machine.) */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mpiboot.h"
#include "nccl.h"
#include "util.h"

static char fake_path[4096], fake_2_13_path[4096], fake_driver[4096], fake_cublaslt[4096]; /* beside this test */
static char self_path[4096];

// --- finding the library

static void test_paths_are_tried_in_order(void **state) {
    (void)state;
    char p[4][512];
    unsetenv("LLFC_NCCL");
    setenv("CUDA_HOME", "/opt/cuda-x", 1);
    assert_int_equal(ncl_lib_paths(p), 3);
    assert_string_equal(p[0], "/opt/cuda-x/lib64/libnccl.so.2");
    assert_string_equal(p[1], "/usr/local/cuda/lib64/libnccl.so.2");
    assert_string_equal(p[2], "libnccl.so.2");
    unsetenv("CUDA_HOME");
    assert_int_equal(ncl_lib_paths(p), 2);
    assert_string_equal(p[0], "/usr/local/cuda/lib64/libnccl.so.2");
    setenv("LLFC_NCCL", "/my/libnccl.so.2", 1); // named by the user: only there
    assert_int_equal(ncl_lib_paths(p), 1);
    assert_string_equal(p[0], "/my/libnccl.so.2");
    unsetenv("LLFC_NCCL");
}

static void test_every_path_tried_is_named(void **state) {
    (void)state;
    char err[ERR_LEN];
    const char *paths[] = {"/nonexistent/a/libnccl.so.2", "/nonexistent/b/libnccl.so.2", "libnccl-none.so.2"};
    const char *found = "x";
    assert_null(cudrv_dlopen_first(paths, 3, &found, err, sizeof err));
    assert_null(found);
    for (int i = 0; i < 3; i++)
        if (!strstr(err, paths[i])) fail_msg("%s not named in: %s", paths[i], err);
    assert_non_null(strstr(err, "tried /nonexistent/a/libnccl.so.2 (/nonexistent/a/libnccl.so.2: cannot open"));
}

static DistGroup *solo(void) {
    char err[ERR_LEN];
    DistPlace p = {.rank = 0, .world_size = 1, .local_world_size = 1};
    DistGroup *g = dist_connect(&p, 5, err, sizeof err);
    if (!g) fail_msg("%s", err);
    return g;
}

static void test_missing_library_is_named(void **state) {
    (void)state;
    char err[ERR_LEN];
    bool absent = false;
    DistGroup *g = solo();
    setenv("LLFC_NCCL", "/nonexistent/libnccl.so.2", 1);
    assert_null(ncl_open(g, NULL, 5, &absent, err, sizeof err));
    assert_true(absent);
    if (!strstr(err, "NCCL not found: tried /nonexistent/libnccl.so.2 (") || !strstr(err, "set LLFC_NCCL"))
        fail_msg("got: %s", err);
    setenv("LLFC_NCCL", "libm.so.6", 1); // loads, but is no NCCL (or too old a one): none usable either
    absent = false;
    assert_null(ncl_open(g, NULL, 5, &absent, err, sizeof err));
    assert_true(absent);
    if (!strstr(err, "libm.so.6 has no ncclGetVersion")) fail_msg("got: %s", err);
    unsetenv("LLFC_NCCL");
    dist_close(g);
}

static void test_one_rank_with_the_fake(void **state) {
    (void)state;
    char err[ERR_LEN];
    bool absent;
    DistGroup *g = solo();
    setenv("LLFC_NCCL", fake_path, 1);
    NclComm *c = ncl_open(g, NULL, 5, &absent, err, sizeof err);
    if (!c) fail_msg("%s", err);
    assert_string_equal(ncl_version(c), "2.28.0");
    assert_string_equal(ncl_path(c), fake_path);
    float v[3] = {1, 2, 3};
    assert_true(ncl_allreduce_sum(c, (CuPtr)(uintptr_t)v, (CuPtr)(uintptr_t)v, 3, NULL, "v", err, sizeof err));
    assert_true(v[0] == 1 && v[1] == 2 && v[2] == 3);
    ncl_close(c);
    unsetenv("LLFC_NCCL");
    dist_close(g);
}

// --- real processes

static DistGroup *meet(int rank, int world, int port, int timeout_s) {
    char err[ERR_LEN];
    DistPlace p = {.rank = rank, .world_size = world, .local_rank = rank, .local_world_size = world,
                   .master_port = port, .source = DIST_TORCHRUN};
    snprintf(p.master_addr, sizeof p.master_addr, "127.0.0.1");
    snprintf(p.host, sizeof p.host, "host%d", rank);
    DistGroup *g = dist_connect(&p, timeout_s, err, sizeof err);
    if (!g) fprintf(stderr, "rank %d: %s\n", rank, err);
    return g;
}

static const char *want_version = "2.28.0"; /* the fake's NCCL that collectives_body loads */

#define N_BIG 300001 /* more than the fake's staging chunk (2^18 floats): several chunks */

static float value(int rank, size_t i) { return (float)(i % 1000) * (float)(rank + 1) + 0.125f * (float)rank; }

static int check(bool ok, int rank, const char *what, const char *err) {
    if (!ok) fprintf(stderr, "rank %d: %s %s\n", rank, what, err);
    return ok ? 0 : 1;
}

/* Each rank: allreduce in place and out of place, reduce to rank 1, broadcast from the last, bytes
 * broadcast from the first. */
static int collectives_body(int rank, int world, int port) {
    char err[ERR_LEN] = "";
    DistGroup *g = meet(rank, world, port, 20);
    bool absent;
    NclComm *c = g ? ncl_open(g, NULL, 20, &absent, err, sizeof err) : NULL;
    if (!c) return check(false, rank, "open:", err);
    if (strcmp(ncl_version(c), want_version)) return check(false, rank, "loaded NCCL", ncl_version(c));
    if (strcmp(ncl_id_route(c), "TCP")) return check(false, rank, "NCCL's id went by", ncl_id_route(c));
    float *a = xmalloc(N_BIG * sizeof *a), *b = xmalloc(N_BIG * sizeof *b);
    for (size_t i = 0; i < N_BIG; i++) a[i] = value(rank, i), b[i] = -1;
    int bad = check(ncl_allreduce_sum(c, (CuPtr)(uintptr_t)a, (CuPtr)(uintptr_t)b, N_BIG, NULL, "b", err, sizeof err),
                    rank, "allreduce:", err);
    for (size_t i = 0; i < N_BIG && !bad; i++) {
        float want = value(0, i);
        for (int r = 1; r < world; r++) want += value(r, i); // rank order, exactly
        bad = check(b[i] == want && a[i] == value(rank, i), rank, "allreduce: wrong sum", "");
    }
    bad = bad || check(ncl_allreduce_sum(c, (CuPtr)(uintptr_t)a, (CuPtr)(uintptr_t)a, N_BIG, NULL, "a", err,
                                         sizeof err), rank, "allreduce in place:", err);
    for (size_t i = 0; i < N_BIG && !bad; i++) bad = check(a[i] == b[i], rank, "allreduce in place: wrong sum", "");
    for (size_t i = 0; i < N_BIG; i++) a[i] = value(rank, i), b[i] = -1;
    bad = bad || check(ncl_reduce_sum(c, (CuPtr)(uintptr_t)a, (CuPtr)(uintptr_t)b, N_BIG, 1, NULL, "r", err, sizeof err),
                       rank, "reduce:", err);
    for (size_t i = 0; i < N_BIG && !bad; i++) {
        float want = value(0, i);
        for (int r = 1; r < world; r++) want += value(r, i);
        bad = check(b[i] == (rank == 1 ? want : -1.0f), rank, "reduce: wrong value", "");
    }
    bad = bad || check(ncl_broadcast(c, (CuPtr)(uintptr_t)a, (CuPtr)(uintptr_t)a, N_BIG, world - 1, NULL, "w", err,
                                     sizeof err), rank, "broadcast:", err);
    for (size_t i = 0; i < N_BIG && !bad; i++) bad = check(a[i] == value(world - 1, i), rank, "broadcast: wrong", "");
    // bytes (bf16 weights): an odd count over several staging chunks, out of place, from rank 0
    const size_t nb = 4 * N_BIG + 3;
    unsigned char *src = xmalloc(nb), *dst = xmalloc(nb);
    for (size_t i = 0; i < nb; i++) src[i] = (unsigned char)(i * 7 + (size_t)rank), dst[i] = 0xEE;
    bad = bad || check(ncl_broadcast_bytes(c, (CuPtr)(uintptr_t)src, (CuPtr)(uintptr_t)dst, nb, 0, NULL, "bf16", err,
                                           sizeof err), rank, "byte broadcast:", err);
    for (size_t i = 0; i < nb && !bad; i++) bad = check(dst[i] == (unsigned char)(i * 7), rank, "byte broadcast: wrong", "");
    free(src), free(dst);
    free(a), free(b);
    ncl_close(c);
    dist_close(g);
    return bad;
}

static void test_three_ranks_sum_exactly(void **state) {
    (void)state;
    setenv("LLFC_NCCL", fake_path, 1);
    test_ranks(3, collectives_body);
    unsetenv("LLFC_NCCL");
}

/* Two ranks open NCCL, rank 1 with `var`=`value` set: neither gets a communicator, both are
 * told to fall back (absent), and each error says why (want0 at rank 0, want1 at rank 1). */
static void both_fall_back(const char *var, const char *value, const char *want0, const char *want1) {
    setenv("LLFC_NCCL", fake_path, 1);
    int port = test_free_port();
    pid_t kid = fork();
    if (kid == 0) {
        char err[ERR_LEN] = "";
        bool absent = false;
        setenv(var, value, 1);
        DistGroup *g = meet(1, 2, port, 20);
        NclComm *c = g ? ncl_open(g, NULL, 20, &absent, err, sizeof err) : NULL;
        int bad = check(!c && absent && strstr(err, want1), 1, "got:", err);
        dist_close(g);
        _exit(bad);
    }
    char err[ERR_LEN];
    bool absent = false;
    DistGroup *g = meet(0, 2, port, 20);
    assert_non_null(g);
    assert_null(ncl_open(g, NULL, 20, &absent, err, sizeof err));
    assert_true(absent);
    if (!strstr(err, want0)) fail_msg("got: %s", err);
    dist_close(g);
    test_wait_ok(kid);
    unsetenv("LLFC_NCCL");
}

static void test_a_rank_without_nccl_makes_all_fall_back(void **state) {
    (void)state;
    both_fall_back("LLFC_NCCL", "/nonexistent/libnccl.so.2", "NCCL not found on 1 of 2 ranks (rank 1 on host1 among them)",
                   "NCCL not found: tried /nonexistent/libnccl.so.2");
}

/* NCCL refuses two ranks on one GPU (on every rank): all fall back, each saying why. */
static void test_nccl_that_cannot_start_makes_all_fall_back(void **state) {
    (void)state;
    both_fall_back("LLFC_FAKENCCL_DUPLICATE", "1",
                   "ncclCommInitRankConfig (rank 0 of 2) failed: invalid usage (fakenccl: Duplicate GPU detected)",
                   "ncclCommInitRankConfig (rank 1 of 2) failed: invalid usage");
}

static double seconds_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

#define START_TIMEOUT_S 2 /* the ranks' ddp_timeout in the tests of the communicator's start */

/* Rank 2's NCCL never reaches the others (the fake's LLFC_FAKENCCL_STALL_INIT) after the ranks met
 * over TCP. Rank 0's start times out after its ddp_timeout, instead of hanging, and is aborted;
 * that breaks the others' start (ddp_timeout 10 s, so the abort must be what ends it); all fall
 * back alike, each naming the call, itself and the world size. (The fake's own deadline, 20 s,
 * would end a blocking start: too late for the bounds checked here.) */
static int stalled_start_body(int rank, int world, int port) {
    char err[ERR_LEN] = "", want[256];
    if (rank == 2) setenv("LLFC_FAKENCCL_STALL_INIT", "1", 1);
    DistGroup *g = meet(rank, world, port, 20);
    if (!g) return 1;
    bool absent = false;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    NclComm *c = ncl_open(g, NULL, rank == 0 ? START_TIMEOUT_S : 10, &absent, err, sizeof err);
    double took = seconds_since(&t0);
    if (rank == 0)
        snprintf(want, sizeof want, "ncclCommInitRankConfig (rank 0 of 3) did not finish within ddp_timeout %d s: the "
                 "ranks met over TCP and shared NCCL's id, but NCCL did not connect them", START_TIMEOUT_S);
    else
        snprintf(want, sizeof want, "ncclCommInitRankConfig (rank %d of 3) failed: remote process exited", rank);
    int bad = check(!c && absent && strstr(err, want), rank, "got:", err);
    bad = bad || check(took >= START_TIMEOUT_S - 0.1 && took < START_TIMEOUT_S + 2, rank, "took too long or too short",
                       "");
    if (bad) fprintf(stderr, "rank %d: ncl_open took %.2f s\n", rank, took);
    ncl_close(c);
    dist_close(g);
    return bad;
}

static void test_a_start_that_never_connects_times_out(void **state) {
    (void)state;
    setenv("LLFC_NCCL", fake_path, 1);
    setenv("LLFC_FAKENCCL_TIMEOUT", "20", 1);
    test_ranks(3, stalled_start_body);
    unsetenv("LLFC_FAKENCCL_TIMEOUT");
    unsetenv("LLFC_NCCL");
}

/* Rank 1 dies (SIGALRM) while its NCCL is still starting, which the fake's peers do not notice:
 * rank 0's start times out, and the TCP group then finds rank 1 gone, so rank 0 fails (no
 * fallback) saying both. */
static void test_a_rank_that_dies_while_starting_fails_the_others(void **state) {
    (void)state;
    setenv("LLFC_NCCL", fake_path, 1);
    setenv("LLFC_FAKENCCL_TIMEOUT", "20", 1);
    int port = test_free_port();
    pid_t kid = fork();
    if (kid == 0) {
        char err[ERR_LEN];
        bool absent;
        setenv("LLFC_FAKENCCL_STALL_INIT", "1", 1);
        DistGroup *g = meet(1, 2, port, 20);
        alarm(1); // dies in ncl_open, before rank 0's start times out
        ncl_open(g, NULL, 60, &absent, err, sizeof err);
        _exit(3);
    }
    char err[ERR_LEN];
    bool absent = true;
    DistGroup *g = meet(0, 2, port, 20);
    assert_non_null(g);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_null(ncl_open(g, NULL, START_TIMEOUT_S, &absent, err, sizeof err));
    assert_true(seconds_since(&t0) < START_TIMEOUT_S + 4);
    assert_false(absent);
    if (!strstr(err, "ncclCommInitRankConfig (rank 0 of 2) did not finish within ddp_timeout 2 s") ||
        !strstr(err, "; then agreeing on NCCL with the other ranks: "))
        fail_msg("got: %s", err);
    dist_close(g);
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM);
    unsetenv("LLFC_FAKENCCL_TIMEOUT");
    unsetenv("LLFC_NCCL");
}

/* NCCL 2.13 (no ncclCommInitRankConfig): the blocking ncclCommInitRank, then the same exact sums. */
static void test_an_nccl_before_2_14_starts_blocking(void **state) {
    (void)state;
    setenv("LLFC_NCCL", fake_2_13_path, 1);
    want_version = "2.13.6";
    test_ranks(2, collectives_body);
    want_version = "2.28.0";
    unsetenv("LLFC_NCCL");
}

/* Rank 0's communicator (ddp_timeout 1 s) with a rank 1 that opens its own, then never calls a
 * collective: its process in *kid, for absent_peer_done. */
static NclComm *absent_peer(DistGroup **g, pid_t *kid) {
    setenv("LLFC_NCCL", fake_path, 1);
    int port = test_free_port();
    *kid = fork();
    if (*kid == 0) {
        char err[ERR_LEN];
        bool absent;
        DistGroup *mine = meet(1, 2, port, 20);
        NclComm *c = mine ? ncl_open(mine, NULL, 20, &absent, err, sizeof err) : NULL;
        sleep(30);
        ncl_close(c);
        _exit(0);
    }
    char err[ERR_LEN];
    bool absent;
    *g = meet(0, 2, port, 20);
    assert_non_null(*g);
    NclComm *c = ncl_open(*g, NULL, 1, &absent, err, sizeof err);
    if (!c) fail_msg("%s", err);
    return c;
}

static void absent_peer_done(NclComm *c, DistGroup *g, pid_t kid) {
    ncl_close(c);
    dist_close(g);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    unsetenv("LLFC_NCCL");
}

static void test_a_rank_that_never_comes_times_out(void **state) {
    (void)state;
    DistGroup *g;
    pid_t kid;
    NclComm *c = absent_peer(&g, &kid);
    char err[ERR_LEN];
    float v[10] = {0};
    time_t t0 = time(NULL);
    assert_false(ncl_allreduce_sum(c, (CuPtr)(uintptr_t)v, (CuPtr)(uintptr_t)v, 10, NULL, "gradients", err, sizeof err));
    assert_true(time(NULL) - t0 <= 3);
    if (!strstr(err, "ncclAllReduce (gradients, 10 floats) did not finish within ddp_timeout 1 s")) fail_msg("got: %s", err);
    assert_false(ncl_broadcast(c, (CuPtr)(uintptr_t)v, (CuPtr)(uintptr_t)v, 10, 0, NULL, "weights", err, sizeof err));
    if (!strstr(err, "ncclBroadcast (weights, 10 floats from rank 0): NCCL's communicator was aborted"))
        fail_msg("got: %s", err);
    absent_peer_done(c, g, kid);
}

// --- started, then waited for (the overlap of nccl.h)

static int stream_tag; /* a stream for the fake, which with no driver of its own takes any */

/* Each rank: an allreduce in place and a reduce to rank 1 started on one stream, nothing waited
 * for; then one wait: the exact sums. Before the wait the fake has written nothing (fakenccl.c:
 * results land when a wait sees them done), which the trainer's tests rely on to catch a missing
 * wait. */
static int started_body(int rank, int world, int port) {
    char err[ERR_LEN] = "";
    DistGroup *g = meet(rank, world, port, 20);
    bool absent;
    NclComm *c = g ? ncl_open(g, NULL, 20, &absent, err, sizeof err) : NULL;
    if (!c) return check(false, rank, "open:", err);
    enum { N_SMALL = 1000 };
    float *a = xmalloc(N_BIG * sizeof *a), b[N_SMALL], r[N_SMALL];
    for (size_t i = 0; i < N_BIG; i++) a[i] = value(rank, i);
    for (size_t i = 0; i < N_SMALL; i++) b[i] = value(rank, i + 7), r[i] = -1;
    void *stream = &stream_tag;
    int bad = check(ncl_start_allreduce_sum(c, (CuPtr)(uintptr_t)a, (CuPtr)(uintptr_t)a, N_BIG, stream, "layer 1",
                                            err, sizeof err), rank, "start allreduce:", err);
    bad = bad || check(ncl_start_reduce_sum(c, (CuPtr)(uintptr_t)b, (CuPtr)(uintptr_t)r, N_SMALL, 1, stream, "layer 0",
                                            err, sizeof err), rank, "start reduce:", err);
    for (size_t i = 0; i < N_BIG && !bad; i++) bad = check(a[i] == value(rank, i), rank, "written before the wait", "");
    for (size_t i = 0; i < N_SMALL && !bad; i++) bad = check(r[i] == -1, rank, "written before the wait", "");
    bad = bad || check(ncl_wait(c, stream, err, sizeof err), rank, "wait:", err);
    for (size_t i = 0; i < N_BIG && !bad; i++) {
        float want = value(0, i);
        for (int k = 1; k < world; k++) want += value(k, i); // rank order, exactly
        bad = check(a[i] == want, rank, "allreduce: wrong sum", "");
    }
    for (size_t i = 0; i < N_SMALL && !bad; i++) {
        float want = value(0, i + 7);
        for (int k = 1; k < world; k++) want += value(k, i + 7);
        bad = check(r[i] == (rank == 1 ? want : -1.0f) && b[i] == value(rank, i + 7), rank, "reduce: wrong value", "");
    }
    bad = bad || check(ncl_wait(c, stream, err, sizeof err), rank, "a wait with nothing started:", err);
    free(a);
    ncl_close(c);
    dist_close(g);
    return bad;
}

static void test_started_collectives_sum_at_the_wait(void **state) {
    (void)state;
    setenv("LLFC_NCCL", fake_path, 1);
    test_ranks(3, started_body);
    unsetenv("LLFC_NCCL");
}

/* Two collectives started, the peer never comes: the wait fails within the timeout naming the
 * first and that one more was started after it; the communicator is aborted. */
static void test_a_started_collective_that_never_finishes_times_out(void **state) {
    (void)state;
    DistGroup *g;
    pid_t kid;
    NclComm *c = absent_peer(&g, &kid);
    char err[ERR_LEN];
    float v[10] = {0}, w[6] = {0};
    void *stream = &stream_tag;
    assert_true(ncl_start_allreduce_sum(c, (CuPtr)(uintptr_t)v, (CuPtr)(uintptr_t)v, 10, stream, "layer 1", err,
                                        sizeof err));
    assert_true(ncl_start_reduce_sum(c, (CuPtr)(uintptr_t)w, (CuPtr)(uintptr_t)w, 6, 0, stream, "layer 0", err,
                                     sizeof err));
    assert_false(ncl_allreduce_sum(c, (CuPtr)(uintptr_t)w, (CuPtr)(uintptr_t)w, 6, NULL, "elsewhere", err, sizeof err));
    assert_string_equal(err, "ncclAllReduce (elsewhere, 6 floats): started on another stream than the 2 collectives "
                             "not yet waited for");
    time_t t0 = time(NULL);
    assert_false(ncl_wait(c, stream, err, sizeof err));
    assert_true(time(NULL) - t0 <= 3);
    if (!strstr(err, "ncclAllReduce (layer 1, 10 floats) or the collective started after it did not finish within "
                     "ddp_timeout 1 s (a rank died, hangs or never called it); NCCL's communicator was aborted"))
        fail_msg("got: %s", err);
    assert_false(ncl_start_allreduce_sum(c, (CuPtr)(uintptr_t)v, (CuPtr)(uintptr_t)v, 10, stream, "layer 1", err,
                                         sizeof err));
    if (!strstr(err, "ncclAllReduce (layer 1, 10 floats): NCCL's communicator was aborted")) fail_msg("got: %s", err);
    absent_peer_done(c, g, kid);
}

/* With fakecuda.c as the driver: a collective started on a stream of cuStreamCreate's that did not
 * wait (cuStreamWaitEvent) for the work before it on the executor's stream is refused, as on a GPU
 * it could read its input before that work has run; after the wait it runs. */
static void test_a_stream_that_did_not_wait_is_refused(void **state) {
    (void)state;
    char err[ERR_LEN];
    setenv("LLFC_CUDA_DRIVER", fake_driver, 1);
    setenv("LLFC_CUBLASLT", fake_cublaslt, 1);
    setenv("LLFC_NCCL", fake_path, 1);
    CuDrv *d = cudrv_open(0, err, sizeof err);
    if (!d) fail_msg("%s", err);
    bool absent;
    DistGroup *g = solo();
    NclComm *c = ncl_open(g, d, 5, &absent, err, sizeof err);
    if (!c) fail_msg("%s", err);
    void *stream, *event;
    CuPtr grads;
    const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    float back[8];
    assert_true(cudrv_stream_new(d, &stream, "communication", err, sizeof err));
    assert_true(cudrv_event_new(d, &event, "ready", err, sizeof err));
    assert_true(cudrv_alloc(d, &grads, sizeof ones, "gradients", err, sizeof err));
    assert_true(cudrv_put(d, grads, ones, sizeof ones, "gradients", err, sizeof err)); // the executor's stream
    assert_false(ncl_start_allreduce_sum(c, grads, grads, 8, stream, "layer 2", err, sizeof err));
    if (!strstr(err, "ncclAllReduce (layer 2, 8 floats) failed: invalid usage (fakenccl: ncclAllReduce on a stream "
                     "that did not wait for the ") || !strstr(err, "no cuStreamWaitEvent"))
        fail_msg("got: %s", err);
    assert_true(cudrv_event_record(d, event, NULL, "layer 2", err, sizeof err));
    assert_true(cudrv_stream_wait(d, stream, event, "layer 2", err, sizeof err));
    assert_true(ncl_start_allreduce_sum(c, grads, grads, 8, stream, "layer 2", err, sizeof err));
    assert_true(ncl_wait(c, stream, err, sizeof err));
    assert_true(cudrv_get(d, back, grads, sizeof back, "gradients", err, sizeof err));
    assert_memory_equal(back, ones, sizeof ones); // one rank: its own values
    ncl_close(c);
    dist_close(g);
    cudrv_free(d, grads);
    assert_true(cudrv_event_free(d, event, "ready", err, sizeof err));
    assert_true(cudrv_stream_free(d, stream, "communication", err, sizeof err));
    cudrv_close(d);
    unsetenv("LLFC_CUDA_DRIVER"), unsetenv("LLFC_CUBLASLT"), unsetenv("LLFC_NCCL");
}

// --- under mpirun

/* Under mpirun (the fake NCCL in LLFC_NCCL): NCCL's id by MPI_Bcast, then a sum over the ranks. */
static int mpi_rank(void) {
    char err[ERR_LEN] = "";
    DistPlace p;
    DistGroup *g = NULL;
    NclComm *c = NULL;
    bool absent, ok = dist_place_from_env(&p, NULL, err, sizeof err) && mpiboot_find_master(&p, err, sizeof err);
    if (ok) g = dist_connect(&p, 20, err, sizeof err);
    if (g) c = ncl_open(g, NULL, 20, &absent, err, sizeof err);
    ok = ok && g && c;
    float v[2] = {(float)p.rank + 1, 0.25f * (float)p.rank};
    ok = ok && ncl_allreduce_sum(c, (CuPtr)(uintptr_t)v, (CuPtr)(uintptr_t)v, 2, NULL, "v", err, sizeof err);
    if (ok) printf("rank %d: NCCL's id by %s, sum %g %g\n", p.rank, ncl_id_route(c), v[0], v[1]);
    else fprintf(stderr, "rank %d: %s\n", p.rank, err);
    ncl_close(c);
    dist_close(g);
    mpiboot_set_exit_status(ok ? 0 : 1);
    return ok ? 0 : 1;
}

static void test_under_mpirun_the_id_goes_by_mpi_bcast(void **state) {
    (void)state;
    MPIRUN_OR_SKIP(mpirun);
    char *cmd = xprintf("LLFC_NCCL=%s %s -np 2 %s mpi-rank", fake_path, mpirun, self_path), *out;
    int rc = test_shell(&out, cmd);
    // 1 + 2 and 0 + 0.25 on both ranks
    if (rc != 0 || !strstr(out, "rank 0: NCCL's id by MPI_Bcast, sum 3 0.25") ||
        !strstr(out, "rank 1: NCCL's id by MPI_Bcast, sum 3 0.25"))
        fail_msg("command: %s\nexit %d:\n%s", cmd, rc, out);
    free(out);
    free(cmd);
}

int main(int argc, char **argv) {
    ssize_t self_len = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (self_len > 0) self_path[self_len] = 0;
    test_beside_self(fake_path, sizeof fake_path, "libfakenccl.so.2");
    test_beside_self(fake_2_13_path, sizeof fake_2_13_path, "libfakenccl-2.13.so.2");
    test_beside_self(fake_driver, sizeof fake_driver, "libfakecuda.so.1");
    test_beside_self(fake_cublaslt, sizeof fake_cublaslt, "libfakecublaslt.so");
    if (argc == 2 && !strcmp(argv[1], "mpi-rank")) return mpi_rank();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_are_tried_in_order),
        cmocka_unit_test(test_every_path_tried_is_named),
        cmocka_unit_test(test_missing_library_is_named),
        cmocka_unit_test(test_one_rank_with_the_fake),
        cmocka_unit_test(test_three_ranks_sum_exactly),
        cmocka_unit_test(test_a_rank_without_nccl_makes_all_fall_back),
        cmocka_unit_test(test_nccl_that_cannot_start_makes_all_fall_back),
        cmocka_unit_test(test_a_rank_that_never_comes_times_out),
        cmocka_unit_test(test_started_collectives_sum_at_the_wait),
        cmocka_unit_test(test_a_started_collective_that_never_finishes_times_out),
        cmocka_unit_test(test_a_stream_that_did_not_wait_is_refused),
        cmocka_unit_test(test_a_start_that_never_connects_times_out),
        cmocka_unit_test(test_a_rank_that_dies_while_starting_fails_the_others),
        cmocka_unit_test(test_an_nccl_before_2_14_starts_blocking),
        cmocka_unit_test(test_under_mpirun_the_id_goes_by_mpi_bcast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
