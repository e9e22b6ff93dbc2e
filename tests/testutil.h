/* testutil.h - what every cmocka test shares: where ../shared is, and skipping by name.
 *
 * The real test assets that nobody here wrote (tokenizers, stories260K, LLaMA-Factory's demo
 * data) live in ../shared beside the clone. One setting finds them: the environment variable
 * LLFC_SHARED (default "../shared", relative to the repository root, where tests run). A test
 * that needs them and finds them missing is reported as skipped, by name; .ci/run refuses to
 * run at all without ../shared, so CI never skips.
 */
#ifndef LLFC_TESTUTIL_H
#define LLFC_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "json.h"
#include "util.h"

/* Path of a file or folder under the shared assets, malloc'd; NULL if it does not exist. */
static inline char *test_shared_path(const char *rel) {
    const char *root = getenv("LLFC_SHARED");
    if (!root || !*root) root = "../shared";
    size_t n = strlen(root) + strlen(rel) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", root, rel);
    struct stat st;
    if (stat(p, &st) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

/* Inside a test: get a shared asset or skip this test, saying which asset was missing. */
#define SHARED_OR_SKIP(var, rel)                                                              \
    char *var = test_shared_path(rel);                                                        \
    if (!var) {                                                                               \
        fprintf(stderr, "[  SKIPPED ] %s: needs shared asset '%s' (set LLFC_SHARED)\n", __func__, \
                rel);                                                                         \
        skip();                                                                               \
        return; /* skip() does not return; this says so to the compiler */                  \
    }

/* A loopback TCP port nobody listens on now (the kernel's pick), for a test's rendezvous. */
static inline int test_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* out = the path of `name` in this test program's own folder (where ninja builds the fake
 * libraries a test loads). */
static inline void test_beside_self(char *out, size_t len, const char *name) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = 0;
    *strrchr(self, '/') = 0;
    int w = snprintf(out, len, "%s/%s", self, name);
    assert_true(w > 0 && (size_t)w < len);
}

/* A forked rank's end: it exited, with status 0. */
static inline void test_wait_ok(pid_t kid) {
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* body(rank, world, port) as `world` processes meeting at one free port (rank 0 is this one);
 * every one must return 0. */
static inline void test_ranks(int world, int (*body)(int rank, int world, int port)) {
    int port = test_free_port();
    pid_t kids[16];
    assert_true(world <= 16);
    for (int r = 1; r < world; r++)
        if ((kids[r - 1] = fork()) == 0) _exit(body(r, world, port));
    assert_int_equal(body(0, world, port), 0);
    for (int r = 1; r < world; r++) test_wait_ok(kids[r - 1]);
}

/* A fresh folder under /tmp, malloc'd; the test removes it with test_rm_rf. */
static inline char *test_tmpdir(void) {
    char tmpl[] = "/tmp/llfc_test_XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return xstrdup(d);
}

static inline void test_rm_rf(const char *dir) {
    char *cmd = xprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

/* Run a shell command; its exit status, and its stdout+stderr in *output (malloc'd). */
static inline int test_shell(char **output, const char *cmd) {
    char *full = xprintf("(%s) 2>&1", cmd);
    FILE *f = popen(full, "r");
    free(full);
    StrBuf out = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sb_append(&out, buf, n);
    int status = pclose(f);
    if (!out.data) sb_append(&out, "", 0);
    *output = out.data;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* The command line that starts ranks under Open MPI's mpirun on this machine, or NULL when
 * there is none (./setup.sh installs openmpi-bin). As root mpirun wants --allow-run-as-root, and
 * more ranks than cores --oversubscribe; the ranks get no MASTER_ADDR or other launchers'
 * variables from the test's environment (add them with -x). */
static inline const char *test_mpirun(void) {
    char *out;
    int rc = test_shell(&out, "mpirun --version");
    bool open_mpi = rc == 0 && strstr(out, "Open MPI");
    free(out);
    return open_mpi ? "env -u MASTER_ADDR -u MASTER_PORT -u RANK -u WORLD_SIZE -u SLURM_PROCID "
                      "mpirun --allow-run-as-root --oversubscribe"
                    : NULL;
}

/* Inside a test: the mpirun command line, or skip this test saying that mpirun is missing. */
#define MPIRUN_OR_SKIP(var)                                                                   \
    const char *var = test_mpirun();                                                          \
    if (!var) {                                                                               \
        fprintf(stderr, "[  SKIPPED ] %s: needs Open MPI's mpirun (./setup.sh installs "        \
                "openmpi-bin)\n", __func__);                                                   \
        skip();                                                                               \
        return; /* skip() does not return; this says so to the compiler */                  \
    }

/* MPICH's launcher (Hydra: mpiexec.mpich on Debian, mpiexec.hydra elsewhere), or NULL when there
 * is none (./setup.sh installs mpich); its ranks get no MASTER_ADDR or other launchers' variables
 * from the test's environment. */
static inline const char *test_mpich_mpiexec(void) {
    static const char *const tries[][2] = {
        {"mpiexec.mpich", "env -u MASTER_ADDR -u MASTER_PORT -u RANK -u WORLD_SIZE -u SLURM_PROCID mpiexec.mpich"},
        {"mpiexec.hydra", "env -u MASTER_ADDR -u MASTER_PORT -u RANK -u WORLD_SIZE -u SLURM_PROCID mpiexec.hydra"},
    };
    for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
        char *out, *cmd = xprintf("%s --version", tries[i][0]);
        int rc = test_shell(&out, cmd);
        bool hydra = rc == 0 && strstr(out, "HYDRA");
        free(out), free(cmd);
        if (hydra) return tries[i][1];
    }
    return NULL;
}

#define MPICH_OR_SKIP(var)                                                                    \
    const char *var = test_mpich_mpiexec();                                                   \
    if (!var) {                                                                               \
        fprintf(stderr, "[  SKIPPED ] %s: needs MPICH's mpiexec (./setup.sh installs mpich)\n", \
                __func__);                                                                    \
        skip();                                                                               \
        return;                                                                               \
    }

/* A JSON fixture, parsed; the test fails naming the file when it cannot be read. */
static inline JsonDoc *test_load_json(const char *path) {
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(path, &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    JsonDoc *doc = json_parse(text, len, path, err, sizeof err);
    free(text);
    if (!doc) fail_msg("%s", err);
    return doc;
}

#endif
