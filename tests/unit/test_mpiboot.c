/* test_mpiboot.c - ranks started by Open MPI's mpirun or MPICH's mpiexec with no MASTER_ADDR
 * learn rank 0's address and port from it and meet over TCP; rank 0's bytes reach every rank by
 * MPI_Bcast; a missing library, or an MPI of another ABI, is named with the ways out; nothing is
 * loaded outside mpirun or when MASTER_ADDR is given.
 *
 * The mpirun tests run this program under mpirun with "child DIR" arguments (see main); each
 * rank writes what it learned to DIR/rankN for the test to read. */
#include "testutil.h"

#include "dist.h"
#include "mpiboot.h"
#include "util.h"

static char self_path[4096], fake_mpi[4096];

/* rank 0 of 2 as mpirun's variables give it, with no MASTER_ADDR */
static DistPlace mpirun_place(void) {
    DistPlace p = {.rank = 0, .world_size = 2, .local_rank = 0, .local_world_size = 2, .master_port = 29500,
                   .source = DIST_MPI};
    snprintf(p.host, sizeof p.host, "host0");
    return p;
}

static void find_master_fails(const char *want) {
    char err[ERR_LEN];
    DistPlace p = mpirun_place();
    assert_false(mpiboot_find_master(&p, err, sizeof err));
    if (!strstr(err, want)) fail_msg("wanted '%s' in: %s", want, err);
    assert_false(mpiboot_active());
    assert_string_equal(p.master_addr, "");
}

static void test_a_missing_library_is_named_with_the_ways_out(void **state) {
    (void)state;
    setenv("LLFC_MPI", "/nonexistent/libmpi.so", 1);
    find_master_fails("tried LLFC_MPI=/nonexistent/libmpi.so (/nonexistent/libmpi.so: cannot open shared object file");
    find_master_fails("mpirun started 2 ranks without MASTER_ADDR, and Open MPI's library");
    find_master_fails("set LLFC_MPI to its libmpi.so");
    find_master_fails("mpirun -x MASTER_ADDR=<rank 0's host> -x MASTER_PORT=29500");
    unsetenv("LLFC_MPI");
}

static void test_an_mpi_of_another_abi_is_refused(void **state) {
    (void)state;
    setenv("LLFC_MPI", fake_mpi, 1);
    find_master_fails("is an MPI library of neither Open MPI's ABI (it has no ompi_mpi_comm_world");
    find_master_fails("nor MPICH's (its MPI_Get_library_version, \"FakeMPI 0.1, an ABI of its own\", names no MPICH");
    find_master_fails("set LLFC_MPI to Open MPI's libmpi.so, the one of the mpirun that started this");
    setenv("LLFC_MPI", "libc.so.6", 1);
    find_master_fails("libc.so.6 has no MPI_Init: not an MPI library");
    unsetenv("LLFC_MPI");
}

/* Outside mpirun, on one rank, or with MASTER_ADDR given, MPI is not loaded (a library that
 * does not exist is never looked for) and the place stays as the variables said. */
static void test_nothing_is_loaded_unless_mpirun_ranks_lack_master_addr(void **state) {
    (void)state;
    char err[ERR_LEN];
    setenv("LLFC_MPI", "/nonexistent/libmpi.so", 1);
    DistPlace given = mpirun_place();
    snprintf(given.master_addr, sizeof given.master_addr, "node0");
    DistPlace torchrun = mpirun_place(), alone = mpirun_place();
    torchrun.source = DIST_TORCHRUN;
    alone.world_size = alone.local_world_size = 1;
    DistPlace *places[] = {&given, &torchrun, &alone};
    for (size_t i = 0; i < 3; i++) {
        DistPlace before = *places[i];
        if (!mpiboot_find_master(places[i], err, sizeof err)) fail_msg("place %zu: %s", i, err);
        assert_memory_equal(&before, places[i], sizeof before);
    }
    assert_false(mpiboot_active());
    assert_string_equal(mpiboot_library(), "");
    unsetenv("LLFC_MPI");
}

// --- under mpirun

/* "ADDR PORT SOURCE BYTES MET": what rank `rank` wrote to dir/rankN. */
static char *rank_report(const char *dir, int rank) {
    char err[ERR_LEN];
    char *path = xprintf("%s/rank%d", dir, rank);
    char *text = util_read_file(path, NULL, err, sizeof err);
    if (!text) fail_msg("rank %d wrote no report: %s", rank, err);
    free(path);
    return text;
}

static void run_ranks(const char *cmd) {
    char *out;
    int rc = test_shell(&out, cmd);
    if (rc != 0) fail_msg("command: %s\nexit %d:\n%s", cmd, rc, out);
    free(out);
}

/* Two ranks, each with a MASTER_PORT of its own: both end with rank 0's, at 127.0.0.1 (they
 * share its node), rank 0's bytes, and a rendezvous that works. */
static void test_mpirun_ranks_learn_rank_0s_address_and_bytes(void **state) {
    (void)state;
    MPIRUN_OR_SKIP(mpirun);
    char *dir = test_tmpdir();
    int port0 = test_free_port(), port1 = port0 == 65535 ? port0 - 1 : port0 + 1;
    char *cmd = xprintf("%s -np 1 env MASTER_PORT=%d %s child %s : -np 1 env MASTER_PORT=%d %s child %s", mpirun,
                        port0, self_path, dir, port1, self_path, dir);
    run_ranks(cmd);
    char *want = xprintf("127.0.0.1 %d Open MPI same-bytes met\n", port0);
    for (int r = 0; r < 2; r++) {
        char *got = rank_report(dir, r);
        if (strcmp(got, want)) fail_msg("rank %d: %swanted %s", r, got, want);
        free(got);
    }
    free(want);
    free(cmd);
    test_rm_rf(dir);
    free(dir);
}

/* `launch -np 2 child DIR` with no MASTER_PORT anywhere: rank 0 picks a free one (not the default
 * 29500), both ranks use it at 127.0.0.1 (one node) and get rank 0's bytes through `source`'s MPI,
 * and they meet. */
static void ranks_share_a_free_port(const char *launch, const char *source) {
    char *dir = test_tmpdir();
    char *cmd = xprintf("%s -np 2 %s child %s", launch, self_path, dir);
    run_ranks(cmd);
    char *r0 = rank_report(dir, 0), *r1 = rank_report(dir, 1), *tail = xprintf(" %s same-bytes met\n", source);
    assert_string_equal(r0, r1);
    int port = 0;
    if (sscanf(r0, "127.0.0.1 %d ", &port) != 1 || !strstr(r0, tail)) fail_msg("rank 0 reported: %s", r0);
    assert_true(port > 0 && port <= 65535 && port != 29500);
    printf("  %s -np 2: %s", source, r0);
    free(r0), free(r1), free(tail), free(cmd);
    test_rm_rf(dir);
    free(dir);
}

static void test_mpirun_rank_0_picks_a_free_port(void **state) {
    (void)state;
    MPIRUN_OR_SKIP(mpirun);
    ranks_share_a_free_port(mpirun, "Open MPI");
}

/* `launch` runs 2 ranks told they are on nodes of their own (env_local) with "child DIR": both
 * report the same address beyond the loopback, from `source`, where they met; skipped on a
 * machine with no interface but the loopback. */
static void ranks_meet_beyond_the_loopback(const char *name, const char *launch, const char *env_local,
                                           const char *source) {
    char *dir = test_tmpdir();
    char *cmd = xprintf("%s -np 2 env %s %s child %s", launch, env_local, self_path, dir), *out;
    int rc = test_shell(&out, cmd);
    if (rc != 0 && strstr(out, "has no address the other ranks could reach")) { // a machine with no network
        fprintf(stderr, "[  SKIPPED ] %s: this machine has no interface but the loopback:\n%s", name, out);
        free(out), free(cmd);
        test_rm_rf(dir);
        free(dir);
        skip();
        return;
    }
    if (rc != 0) fail_msg("command: %s\nexit %d:\n%s", cmd, rc, out);
    char *r0 = rank_report(dir, 0), *r1 = rank_report(dir, 1), *tail = xprintf(" %s same-bytes met\n", source);
    assert_string_equal(r0, r1);
    if (!strncmp(r0, "127.", 4) || !strncmp(r0, "::1 ", 4) || !strstr(r0, tail))
        fail_msg("wanted an address beyond the loopback where both met, got: %s", r0);
    printf("  rank 0 offered: %s", r0);
    free(r0), free(r1), free(tail), free(out), free(cmd);
    test_rm_rf(dir);
    free(dir);
}

/* As if each rank ran on a node of its own (OMPI_COMM_WORLD_LOCAL_SIZE=1, which mpirun's rank
 * sees after env sets it): rank 0 offers an address other than the loopback (its host name's, or
 * its first interface's) and both meet there. */
static void test_mpirun_ranks_on_other_nodes_get_an_address_beyond_the_loopback(void **state) {
    (void)state;
    MPIRUN_OR_SKIP(mpirun);
    ranks_meet_beyond_the_loopback(__func__, mpirun, "OMPI_COMM_WORLD_LOCAL_SIZE=1 OMPI_COMM_WORLD_LOCAL_RANK=0",
                                   "Open MPI");
}

static void test_mpirun_without_the_library_says_so(void **state) {
    (void)state;
    MPIRUN_OR_SKIP(mpirun);
    char *dir = test_tmpdir();
    char *cmd = xprintf("LLFC_MPI=/nonexistent %s -np 2 %s child %s", mpirun, self_path, dir);
    char *out;
    assert_int_not_equal(test_shell(&out, cmd), 0);
    if (!strstr(out, "tried LLFC_MPI=/nonexistent (") || !strstr(out, "mpirun -x MASTER_ADDR="))
        fail_msg("command: %s\n%s", cmd, out);
    free(out), free(cmd);
    test_rm_rf(dir);
    free(dir);
}

// --- under MPICH's mpiexec (Hydra: PMI_RANK, PMI_SIZE; MPICH's ABI, integer handles)

/* The same as under Open MPI's mpirun, through MPICH's MPI_Bcast. */
static void test_mpich_ranks_learn_rank_0s_address_and_bytes(void **state) {
    (void)state;
    MPICH_OR_SKIP(mpiexec);
    ranks_share_a_free_port(mpiexec, "MPICH");
}

/* MPI_LOCALNRANKS=1, as on nodes of their own: rank 0 offers an address beyond the loopback. */
static void test_mpich_ranks_on_other_nodes_meet_beyond_the_loopback(void **state) {
    (void)state;
    MPICH_OR_SKIP(mpiexec);
    ranks_meet_beyond_the_loopback(__func__, mpiexec, "MPI_LOCALNRANKS=1 MPI_LOCALRANKID=0", "MPICH");
}

static void test_mpich_without_the_library_says_so(void **state) {
    (void)state;
    MPICH_OR_SKIP(mpiexec);
    char *dir = test_tmpdir();
    char *cmd = xprintf("LLFC_MPI=/nonexistent %s -np 2 %s child %s", mpiexec, self_path, dir), *out;
    assert_int_not_equal(test_shell(&out, cmd), 0);
    if (!strstr(out, "MPICH's (or Intel MPI's, MVAPICH2's) library, which would give them rank 0's address, was "
                     "not found: tried LLFC_MPI=/nonexistent (") || !strstr(out, "libmpich12"))
        fail_msg("command: %s\n%s", cmd, out);
    free(out), free(cmd);
    test_rm_rf(dir);
    free(dir);
}

/* A rank under mpirun: learn the place, take rank 0's bytes, meet the others, report to dir. */
static int child(const char *dir) {
    char err[ERR_LEN] = "";
    DistPlace p;
    if (!dist_place_from_env(&p, NULL, err, sizeof err) || !mpiboot_find_master(&p, err, sizeof err)) {
        fprintf(stderr, "child: %s\n", err);
        return 1;
    }
    unsigned char bytes[1000];
    for (int i = 0; i < 1000; i++) bytes[i] = p.rank == 0 ? (unsigned char)(i * 7 + 1) : 0;
    bool same = mpiboot_broadcast(bytes, sizeof bytes, err, sizeof err);
    for (int i = 0; same && i < 1000; i++) same = bytes[i] == (unsigned char)(i * 7 + 1);
    DistGroup *g = dist_connect(&p, 20, err, sizeof err);
    bool met = g && dist_barrier(g, err, sizeof err);
    dist_close(g);
    char *path = xprintf("%s/rank%d", dir, p.rank);
    FILE *f = fopen(path, "w");
    free(path);
    if (!f) return 2;
    fprintf(f, "%s %d %s %s %s\n", p.master_addr, p.master_port, dist_source_name(p.source),
            same ? "same-bytes" : "other-bytes", met ? "met" : err);
    fclose(f);
    mpiboot_set_exit_status(0);
    return 0;
}

int main(int argc, char **argv) {
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n > 0) self_path[n] = 0;
    if (argc == 3 && !strcmp(argv[1], "child")) return child(argv[2]);
    test_beside_self(fake_mpi, sizeof fake_mpi, "libfakempi.so");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_missing_library_is_named_with_the_ways_out),
        cmocka_unit_test(test_an_mpi_of_another_abi_is_refused),
        cmocka_unit_test(test_nothing_is_loaded_unless_mpirun_ranks_lack_master_addr),
        cmocka_unit_test(test_mpirun_ranks_learn_rank_0s_address_and_bytes),
        cmocka_unit_test(test_mpirun_rank_0_picks_a_free_port),
        cmocka_unit_test(test_mpirun_ranks_on_other_nodes_get_an_address_beyond_the_loopback),
        cmocka_unit_test(test_mpirun_without_the_library_says_so),
        cmocka_unit_test(test_mpich_ranks_learn_rank_0s_address_and_bytes),
        cmocka_unit_test(test_mpich_ranks_on_other_nodes_meet_beyond_the_loopback),
        cmocka_unit_test(test_mpich_without_the_library_says_so),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
