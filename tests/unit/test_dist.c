/* test_dist.c - places read from torchrun / SLURM / Open MPI variables as those launchers set
 * them, the TCP rendezvous and its collectives between real processes, and every failure a
 * cluster produces: an unreachable master, a rank that dies, a rank that hangs, a rank that
 * fails under the --nproc-per-node launcher.
 *
 * The launcher test re-runs this program with "child MODE" arguments (see main). */
#include "testutil.h"

#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"
#include "gradsync.h"
#include "util.h"

static char self_path[4096];

static void place_ok(char *const *env, DistPlace *p) {
    char err[ERR_LEN];
    if (!dist_place_from_env(p, env, err, sizeof err)) fail_msg("%s", err);
}

static void place_fails(char *const *env, const char *want) {
    char err[ERR_LEN];
    DistPlace p;
    assert_false(dist_place_from_env(&p, env, err, sizeof err));
    if (!strstr(err, want)) fail_msg("wanted '%s' in: %s", want, err);
}

static void test_no_launcher_is_rank_0_of_1(void **state) {
    (void)state;
    char *env[] = {"PATH=/bin", NULL};
    DistPlace p;
    place_ok(env, &p);
    assert_int_equal(p.rank, 0);
    assert_int_equal(p.world_size, 1);
    assert_int_equal(p.source, DIST_NONE);
}

static void test_torchrun_variables(void **state) {
    (void)state;
    char *env[] = {"RANK=5", "WORLD_SIZE=8", "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=4",
                   "MASTER_ADDR=node0", "MASTER_PORT=29400", NULL};
    DistPlace p;
    place_ok(env, &p);
    assert_int_equal(p.rank, 5);
    assert_int_equal(p.world_size, 8);
    assert_int_equal(p.local_rank, 1);
    assert_int_equal(p.local_world_size, 4);
    assert_string_equal(p.master_addr, "node0");
    assert_int_equal(p.master_port, 29400);
    assert_int_equal(p.source, DIST_TORCHRUN);

    char *no_world[] = {"RANK=0", NULL};
    place_fails(no_world, "RANK is set but WORLD_SIZE is not");
    char *bad[] = {"RANK=x", "WORLD_SIZE=2", NULL};
    place_fails(bad, "RANK=x: expected a non-negative integer");
    char *big[] = {"RANK=2", "WORLD_SIZE=2", "LOCAL_RANK=0", "MASTER_ADDR=h", NULL};
    place_fails(big, "torchrun: rank 2 is not below the world size 2");
    char *no_addr[] = {"RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=0", NULL};
    place_fails(no_addr, "2 ranks need MASTER_ADDR");
    char *port[] = {"RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=0", "MASTER_ADDR=h", "MASTER_PORT=70000", NULL};
    place_fails(port, "MASTER_PORT=70000: expected 1 to 65535");
}

static void test_slurm_variables(void **state) {
    (void)state;
    // srun -N3 --ntasks-per-node=4 on node 1: SLURM's own spelling of the lists
    char *env[] = {"SLURM_PROCID=6", "SLURM_NTASKS=11", "SLURM_LOCALID=2", "SLURM_NODEID=1",
                   "SLURM_STEP_TASKS_PER_NODE=4(x2),3", "SLURM_STEP_NODELIST=gpu[07-09,12],cpu1",
                   "SLURM_JOB_ID=123456", NULL};
    DistPlace p;
    place_ok(env, &p);
    assert_int_equal(p.rank, 6);
    assert_int_equal(p.world_size, 11);
    assert_int_equal(p.local_rank, 2);
    assert_int_equal(p.local_world_size, 4);
    assert_string_equal(p.master_addr, "gpu07");
    assert_int_equal(p.master_port, 20000 + 123456 % 20000);
    assert_int_equal(p.source, DIST_SLURM);
    char *last_node[] = {"SLURM_PROCID=10", "SLURM_NTASKS=11", "SLURM_LOCALID=2", "SLURM_NODEID=2",
                         "SLURM_STEP_TASKS_PER_NODE=4(x2),3", "SLURM_STEP_NODELIST=a1", NULL};
    place_ok(last_node, &p);
    assert_int_equal(p.local_world_size, 3);
    // MASTER_ADDR/MASTER_PORT given by the user's sbatch script win
    char *given[] = {"SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_STEP_NODELIST=n[1-2]",
                     "MASTER_ADDR=10.0.0.9", "MASTER_PORT=31000", "SLURM_STEP_TASKS_PER_NODE=2", NULL};
    place_ok(given, &p);
    assert_string_equal(p.master_addr, "10.0.0.9");
    assert_int_equal(p.master_port, 31000);
    // torchrun started by srun: torchrun's variables describe the process
    char *both[] = {"SLURM_PROCID=0", "SLURM_NTASKS=1", "RANK=3", "WORLD_SIZE=4", "LOCAL_RANK=3",
                    "MASTER_ADDR=h", NULL};
    place_ok(both, &p);
    assert_int_equal(p.rank, 3);
    assert_int_equal(p.source, DIST_TORCHRUN);
    char *bad[] = {"SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_STEP_TASKS_PER_NODE=2(x", NULL};
    place_fails(bad, "SLURM_STEP_TASKS_PER_NODE=2(x: cannot read the task count of node 0");
}

/* MPICH's Hydra (and Intel MPI's, MVAPICH2's): PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS;
 * no MASTER_ADDR needed (mpiboot.h learns it through MPICH); Open MPI's variables win over them. */
static void test_mpich_variables(void **state) {
    (void)state;
    char *env[] = {"PMI_RANK=2", "PMI_SIZE=4", "MPI_LOCALRANKID=0", "MPI_LOCALNRANKS=2", "PMI_FD=6", NULL};
    DistPlace p;
    place_ok(env, &p);
    assert_int_equal(p.rank, 2);
    assert_int_equal(p.world_size, 4);
    assert_int_equal(p.local_rank, 0);
    assert_int_equal(p.local_world_size, 2);
    assert_int_equal(p.source, DIST_MPICH);
    assert_string_equal(dist_source_name(p.source), "MPICH");
    assert_true(dist_source_is_mpi(p.source));
    assert_string_equal(p.master_addr, "");
    char *both[] = {"PMI_RANK=1", "PMI_SIZE=2", "OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=2", NULL};
    place_ok(both, &p);
    assert_int_equal(p.source, DIST_MPI);
    assert_int_equal(p.rank, 0);
    char *no_size[] = {"PMI_RANK=1", NULL};
    place_fails(no_size, "PMI_RANK is set but PMI_SIZE is not");
    char *bad[] = {"PMI_RANK=1", "PMI_SIZE=2", "MPI_LOCALRANKID=x", NULL};
    place_fails(bad, "MPI_LOCALRANKID");
    char *beyond[] = {"PMI_RANK=2", "PMI_SIZE=2", NULL};
    place_fails(beyond, "MPICH: rank 2 is not below the world size 2");
}

static void test_mpi_variables(void **state) {
    (void)state;
    char *env[] = {"OMPI_COMM_WORLD_RANK=3", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_RANK=1",
                   "OMPI_COMM_WORLD_LOCAL_SIZE=2", "MASTER_ADDR=h0", NULL};
    DistPlace p;
    place_ok(env, &p);
    assert_int_equal(p.rank, 3);
    assert_int_equal(p.world_size, 4);
    assert_int_equal(p.local_rank, 1);
    assert_int_equal(p.local_world_size, 2);
    assert_int_equal(p.source, DIST_MPI);
    assert_string_equal(p.master_addr, "h0");
    assert_false(p.master_port_set);
    // without MASTER_ADDR the place is read, the address left to Open MPI (mpiboot.h)
    char *no_addr[] = {"OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=2", "MASTER_PORT=4321", NULL};
    place_ok(no_addr, &p);
    assert_int_equal(p.rank, 1);
    assert_string_equal(p.master_addr, "");
    assert_int_equal(p.master_port, 4321);
    assert_true(p.master_port_set);
    char err[ERR_LEN];
    assert_null(dist_connect(&p, 1, err, sizeof err)); // and nobody can meet without one
    if (!strstr(err, "Open MPI: rank 1 of 2 does not know rank 0's address: set MASTER_ADDR")) fail_msg("got: %s", err);
}

static void test_first_host_of_slurm_lists(void **state) {
    (void)state;
    char h[64];
    assert_true(dist_first_host("node[007-009,012],gpu3", h, sizeof h));
    assert_string_equal(h, "node007");
    assert_true(dist_first_host("a1,b2", h, sizeof h));
    assert_string_equal(h, "a1");
    assert_true(dist_first_host("rack[2-3]-gpu[10-11]", h, sizeof h));
    assert_string_equal(h, "rack2-gpu10");
    assert_false(dist_first_host("broken[1-2", h, sizeof h));
    assert_false(dist_first_host("", h, sizeof h));
}

// --- real processes

static DistPlace make_place(int rank, int world, int port) {
    DistPlace p = {.rank = rank, .world_size = world, .local_rank = rank, .local_world_size = world,
                   .master_port = port, .source = DIST_TORCHRUN};
    snprintf(p.master_addr, sizeof p.master_addr, "127.0.0.1");
    snprintf(p.host, sizeof p.host, "host%d", rank);
    return p;
}

/* What every rank does in the collective test; returns 0 when all values were right. */
static int rank_body(int rank, int world, int port) {
    char err[ERR_LEN] = "";
    DistPlace p = make_place(rank, world, port);
    DistGroup *g = dist_connect(&p, 20, err, sizeof err);
    if (!g) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        return 1;
    }
    unsigned char id[128];
    for (int i = 0; i < 128; i++) id[i] = rank == 0 ? (unsigned char)(i * 7 + 1) : 0;
    float v[3] = {(float)rank + 1, 0.5f, (float)(rank * rank)};
    bool ok = dist_broadcast(g, id, sizeof id, err, sizeof err) &&
              dist_allreduce_sum(g, v, 3, err, sizeof err) && dist_barrier(g, err, sizeof err);
    for (int i = 0; ok && i < 128; i++) ok = id[i] == (unsigned char)(i * 7 + 1);
    float want0 = 0, want2 = 0;
    for (int r = 0; r < world; r++) want0 += (float)r + 1, want2 += (float)(r * r);
    ok = ok && v[0] == want0 && v[1] == 0.5f * (float)world && v[2] == want2;
    // point to point between every pair (1 -> 2 relays through rank 0); bystanders untouched
    for (int from = 0; ok && from < world; from++)
        for (int to = 0; ok && to < world; to++) {
            int x = rank == from ? 100 * from + to : -1;
            ok = dist_send_to(g, from, to, &x, sizeof x, err, sizeof err);
            int want = rank == from || rank == to ? 100 * from + to : -1;
            if (ok && x != want) ok = errf(err, sizeof err, "send %d -> %d: rank %d has %d", from, to, rank, x);
        }
    char last[16];
    snprintf(last, sizeof last, "host%d", world - 1);
    ok = ok && !strcmp(dist_host_of(g, world - 1), last);
    if (!ok) fprintf(stderr, "rank %d: wrong values or %s\n", rank, err);
    dist_close(g);
    return ok ? 0 : 1;
}

static void test_three_ranks_meet_and_reduce(void **state) {
    (void)state;
    test_ranks(3, rank_body);
}

// --- gradsync: buckets reduced on a thread, in the order posted

/* Three ranks, three buckets of two tensors each; bucket 1's second tensor goes only to its
 * owner (ZeRO-2). Buckets are posted 2, 0 and (by the wait) 1, as a backward pass would. */
static int gradsync_body(int rank, int world, int port) {
    char err[ERR_LEN] = "";
    DistPlace p = make_place(rank, world, port);
    DistGroup *g = dist_connect(&p, 20, err, sizeof err);
    if (!g) return fprintf(stderr, "rank %d: %s\n", rank, err), 1;
    enum { N = 6, LEN = 1000 };
    float *grad[N];
    GradSyncTensor t[N];
    int32_t bucket_of[N] = {0, 0, 1, 1, 2, 2};
    for (int i = 0; i < N; i++) {
        grad[i] = xmalloc(LEN * sizeof(float));
        t[i] = (GradSyncTensor){grad[i], LEN - i, i == 3 ? 2 : -1};
    }
    bool ok = true;
    GradSync *s = gradsync_new(g, t, N, bucket_of, 3);
    for (int step = 0; step < 2 && ok; step++) {
        for (int i = 0; i < N; i++)
            for (int k = 0; k < LEN; k++) grad[i][k] = (float)(rank + 1) * 0.1f * (float)(k + i + step);
        gradsync_post(s, 2);
        gradsync_post(s, 0);
        gradsync_post(s, 0); // twice in a step: once is reduced
        ok = gradsync_wait(s, err, sizeof err);
        for (int i = 0; ok && i < N; i++)
            for (int k = 0; ok && k < LEN - i; k++) {
                float want = 0, mine = 0;
                for (int r = 0; r < world; r++) want += (float)(r + 1) * 0.1f * (float)(k + i + step);
                if (i == 3 && rank != 2) continue; // only the owner's is defined
                (void)mine;
                if (grad[i][k] != want) ok = errf(err, sizeof err, "step %d tensor %d [%d]: %g, want %g", step, i, k,
                                                  grad[i][k], want);
            }
    }
    ok = ok && gradsync_stats(s)->steps == 2 && gradsync_stats(s)->buckets == 6;
    gradsync_free(s);
    if (!ok) fprintf(stderr, "rank %d: %s\n", rank, err);
    for (int i = 0; i < N; i++) free(grad[i]);
    dist_close(g);
    return ok ? 0 : 1;
}

static void test_gradsync_reduces_buckets_in_post_order(void **state) {
    (void)state;
    test_ranks(3, gradsync_body);
}

static void test_unreachable_master_names_the_address(void **state) {
    (void)state;
    char err[ERR_LEN];
    int port = test_free_port(); // nobody listens there
    DistPlace p = make_place(1, 2, port);
    assert_null(dist_connect(&p, 1, err, sizeof err));
    char *want = xprintf("rank 1 cannot reach the rendezvous at 127.0.0.1:%d (MASTER_ADDR:MASTER_PORT) "
                         "after 1 s", port);
    if (!strstr(err, want)) fail_msg("got: %s", err);
    free(want);
}

static void test_a_dead_rank_is_named(void **state) {
    (void)state;
    int port = test_free_port();
    pid_t kid = fork();
    if (kid == 0) { // joins, then dies before the first reduce
        char err[ERR_LEN];
        DistPlace p = make_place(1, 2, port);
        dist_close(dist_connect(&p, 20, err, sizeof err));
        _exit(0);
    }
    char err[ERR_LEN];
    DistPlace p = make_place(0, 2, port);
    DistGroup *g = dist_connect(&p, 20, err, sizeof err);
    if (!g) fail_msg("%s", err);
    float v = 1;
    assert_false(dist_allreduce_sum(g, &v, 1, err, sizeof err));
    if (!strstr(err, "rank 1 (host host1) closed its connection")) fail_msg("got: %s", err);
    dist_close(g);
    waitpid(kid, NULL, 0);
}

static void test_a_hung_rank_is_named(void **state) {
    (void)state;
    int port = test_free_port();
    pid_t kid = fork();
    if (kid == 0) {
        char err[ERR_LEN];
        DistPlace p = make_place(1, 2, port);
        DistGroup *g = dist_connect(&p, 20, err, sizeof err);
        sleep(30); // joined, then never answers
        dist_close(g);
        _exit(0);
    }
    char err[ERR_LEN];
    DistPlace p = make_place(0, 2, port);
    DistGroup *g = dist_connect(&p, 1, err, sizeof err); // ddp_timeout 1 s
    if (!g) fail_msg("%s", err);
    float v = 1;
    time_t t0 = time(NULL);
    assert_false(dist_allreduce_sum(g, &v, 1, err, sizeof err));
    assert_true(time(NULL) - t0 <= 3);
    if (!strstr(err, "rank 1 (host host1) did not answer within ddp_timeout (1 s)")) fail_msg("got: %s", err);
    dist_close(g);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
}

static void test_launcher_stops_the_others_when_a_rank_fails(void **state) {
    (void)state;
    char *argv[] = {self_path, "child", "fail-rank-1", NULL};
    time_t t0 = time(NULL);
    int rc = dist_launch(3, 1, 0, NULL, 0, argv);
    assert_int_equal(rc, 3);          // rank 1's own status
    assert_true(time(NULL) - t0 < 15); // the sleeping ranks were stopped, not waited for
    char *ok_argv[] = {self_path, "child", "check-env", NULL};
    assert_int_equal(dist_launch(2, 1, 0, NULL, 0, ok_argv), 0);
}

/* A launched child: "fail-rank-1" (rank 1 exits 3, the others sleep) or "check-env". */
static int child(const char *mode) {
    char err[ERR_LEN];
    DistPlace p;
    if (!dist_place_from_env(&p, NULL, err, sizeof err)) {
        fprintf(stderr, "child: %s\n", err);
        return 9;
    }
    if (!strcmp(mode, "fail-rank-1")) {
        if (p.rank == 1) return 3;
        sleep(60);
        return 0;
    }
    bool ok = p.world_size == 2 && p.local_world_size == 2 && p.rank == p.local_rank &&
              !strcmp(p.master_addr, "127.0.0.1") && p.source == DIST_TORCHRUN;
    return ok ? rank_body(p.rank, 2, p.master_port) : 8;
}

int main(int argc, char **argv) {
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n > 0) self_path[n] = 0;
    if (argc == 3 && !strcmp(argv[1], "child")) return child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_launcher_is_rank_0_of_1),
        cmocka_unit_test(test_torchrun_variables),
        cmocka_unit_test(test_slurm_variables),
        cmocka_unit_test(test_mpi_variables),
        cmocka_unit_test(test_mpich_variables),
        cmocka_unit_test(test_first_host_of_slurm_lists),
        cmocka_unit_test(test_three_ranks_meet_and_reduce),
        cmocka_unit_test(test_gradsync_reduces_buckets_in_post_order),
        cmocka_unit_test(test_unreachable_master_names_the_address),
        cmocka_unit_test(test_a_dead_rank_is_named),
        cmocka_unit_test(test_a_hung_rank_is_named),
        cmocka_unit_test(test_launcher_stops_the_others_when_a_rank_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
