/* mpiboot.c - Open MPI or an MPICH-ABI MPI through dlopen: rank 0's address and port to
 * mpirun's ranks, and small broadcasts. See mpiboot.h. */
#include "mpiboot.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util.h"

/* LeakSanitizer, in the sanitizer builds, sees Open MPI's own leaks as ours. Open MPI dlopens
 * its plugins and dlcloses those it does not pick (in MPI_Init) and the rest (in MPI_Finalize);
 * what they held then has no name left to suppress it by. So what Open MPI allocates inside our
 * calls to it is not tracked (__lsan_disable, this thread only), what its own threads allocate
 * is suppressed by its libraries' names, and the leak check runs once just before MPI_Finalize,
 * while those libraries are still loaded. MPICH unloads nothing, and while its progress thread
 * runs LeakSanitizer cannot stop the world (it crashes reading that thread's dynamic TLS), so
 * under MPICH the check is the usual one at exit, after MPI_Finalize has ended that thread. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define OPEN_MPI_ALLOCATES() __lsan_disable()
#define WE_ALLOCATE() __lsan_enable()
#define CHECK_LEAKS_NOW() __lsan_do_leak_check()
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libpmix.so\nleak:/openmpi/\n"
           "leak:libmpich.so\nleak:libfabric.so\nleak:libhwloc.so\nleak:libucs.so\nleak:libucp.so\n";
}
#else
#define OPEN_MPI_ALLOCATES() ((void)0)
#define WE_ALLOCATE() ((void)0)
#define CHECK_LEAKS_NOW() ((void)0)
#endif

// --- the parts of the two ABIs' mpi.h used here

/* Open MPI's MPI_Comm and MPI_Datatype are pointers to its predefined objects; MPICH's (and
 * Intel MPI's, MVAPICH2's: one ABI, libmpi.so.12) are ints with fixed values. */
typedef void *OmpiHandle;
typedef int MpichHandle;

enum {
    MPI_SUCCESS = 0,
    MPI_MAX_ERROR_STRING = 1024, /* Open MPI's is 256, MPICH's 1024 */
    MPI_MAX_LIBRARY_VERSION_STRING = 8192, /* Open MPI's is 256, MPICH's 8192 */
};
#define MPICH_COMM_WORLD ((MpichHandle)0x44000000)
#define MPICH_BYTE ((MpichHandle)0x4c00010d)

/* What rank 0 sends: its address and port, or why it has none (then addr is ""). */
typedef struct {
    char addr[256];
    int32_t port;
    char why[512];
} Master;

static struct {
    void *lib;
    bool up, succeeded, shared;
    Master master; /* rank 0's, once shared */
    char path[512], library[600];
    bool mpich;                  /* the library speaks MPICH's ABI, else Open MPI's */
    OmpiHandle comm_world, byte; /* Open MPI: &ompi_mpi_comm_world, &ompi_mpi_byte */
    struct {
        int (*init)(int *, char ***);
        int (*finalize)(void);
        int (*error_string)(int, char *, int *);
        int (*library_version)(char *, int *); /* MPI-3; NULL before */
        int (*ompi_comm_rank)(OmpiHandle, int *), (*mpich_comm_rank)(MpichHandle, int *);
        int (*ompi_comm_size)(OmpiHandle, int *), (*mpich_comm_size)(MpichHandle, int *);
        int (*ompi_bcast)(void *, int, OmpiHandle, int, OmpiHandle), (*mpich_bcast)(void *, int, MpichHandle, int,
                                                                                       MpichHandle);
    } fn;
} mpi;

/* MPI_COMM_WORLD's rank and size, and MPI_Bcast of bytes on it, in the library's ABI. */
static int comm_rank(int *rank) {
    return mpi.mpich ? mpi.fn.mpich_comm_rank(MPICH_COMM_WORLD, rank) : mpi.fn.ompi_comm_rank(mpi.comm_world, rank);
}
static int comm_size(int *size) {
    return mpi.mpich ? mpi.fn.mpich_comm_size(MPICH_COMM_WORLD, size) : mpi.fn.ompi_comm_size(mpi.comm_world, size);
}
static int bcast_bytes(void *buf, int n, int root) {
    return mpi.mpich ? mpi.fn.mpich_bcast(buf, n, MPICH_BYTE, root, MPICH_COMM_WORLD)
                     : mpi.fn.ompi_bcast(buf, n, mpi.byte, root, mpi.comm_world);
}

/* What each launcher's MPI is called, for messages. */
static const char *flavour(DistSource s) { return s == DIST_MPICH ? "MPICH's (or Intel MPI's, MVAPICH2's)" : "Open MPI's"; }

/* "MPI_Bcast (NCCL's unique id) failed: MPI_ERR_TRUNCATE: message truncated (error 15)" */
static bool mpi_ok(int rc, const char *call, const char *what, char *err, size_t errlen) {
    if (rc == MPI_SUCCESS) return true;
    char text[MPI_MAX_ERROR_STRING + 1] = "?";
    int len = 0;
    bool named = mpi.fn.error_string && mpi.fn.error_string(rc, text, &len) == MPI_SUCCESS;
    if (named && len >= 0 && len <= MPI_MAX_ERROR_STRING) text[len] = 0;
    return errf(err, errlen, "%s (%s) failed: %s (error %d)", call, what, text, rc);
}

// --- loading

/* The library names tried, in order: $LLFC_MPI alone when set; else the launcher's MPI's sonames
 * (MPICH's ABI is libmpi.so.12, which Debian names libmpich.so.12), then libmpi.so. */
static size_t lib_names(DistSource s, const char *names[3]) {
    const char *env = getenv("LLFC_MPI");
    if (env && *env) {
        names[0] = env;
        return 1;
    }
    if (s == DIST_MPICH) {
        names[0] = "libmpi.so.12", names[1] = "libmpich.so.12", names[2] = "libmpi.so";
        return 3;
    }
    names[0] = "libmpi.so.40", names[1] = "libmpi.so";
    return 2;
}

/* dlopen the first of the names that loads; tried = "libmpi.so.40 (why), libmpi.so (why)". */
static void *open_first(const char *const *names, size_t n, char *tried, size_t len) {
    size_t at = 0;
    tried[0] = 0;
    for (size_t i = 0; i < n; i++) {
        void *lib = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL); // GLOBAL: for Open MPI's own plugins
        if (lib) {
            snprintf(mpi.path, sizeof mpi.path, "%s", names[i]);
            return lib;
        }
        const char *why = dlerror();
        if (at < len)
            at += (size_t)snprintf(tried + at, len - at, "%s%s (%s)", i ? ", " : "", names[i], why ? why : "?");
    }
    return NULL;
}

/* Whether MPI_Get_library_version (callable before MPI_Init) names an MPI of MPICH's ABI:
 * "MPICH Version: 4.0.2 ...", "Intel(R) MPI Library 2021.10 ...", "MVAPICH2 Version ...",
 * "MPI VERSION : CRAY MPICH version 8.1 ..."; *version gets its first line. */
static bool speaks_mpich(char *version, size_t len) {
    char text[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int n = 0;
    if (!mpi.fn.library_version || mpi.fn.library_version(text, &n) != MPI_SUCCESS) return false;
    text[sizeof text - 1] = 0;
    text[strcspn(text, "\n")] = 0;
    snprintf(version, len, "%s", text);
    return strstr(text, "MPICH") || strstr(text, "Intel(R) MPI") || strstr(text, "MVAPICH");
}

static bool bind_functions(DistSource s, char *err, size_t errlen) {
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&mpi.fn.init, "MPI_Init"}, {(void **)&mpi.fn.finalize, "MPI_Finalize"},
        {(void **)&mpi.fn.ompi_comm_rank, "MPI_Comm_rank"}, {(void **)&mpi.fn.ompi_comm_size, "MPI_Comm_size"},
        {(void **)&mpi.fn.ompi_bcast, "MPI_Bcast"}, {(void **)&mpi.fn.error_string, "MPI_Error_string"},
        {(void **)&mpi.fn.mpich_comm_rank, "MPI_Comm_rank"}, {(void **)&mpi.fn.mpich_comm_size, "MPI_Comm_size"},
        {(void **)&mpi.fn.mpich_bcast, "MPI_Bcast"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++)
        if (!(*syms[i].slot = dlsym(mpi.lib, syms[i].name)))
            return errf(err, errlen, "%s has no %s: not an MPI library", mpi.path, syms[i].name);
    *(void **)&mpi.fn.library_version = dlsym(mpi.lib, "MPI_Get_library_version");
    // Open MPI's handles are its objects' addresses; MPICH's ABI has fixed integers instead
    mpi.comm_world = dlsym(mpi.lib, "ompi_mpi_comm_world");
    mpi.byte = dlsym(mpi.lib, "ompi_mpi_byte");
    char version[160] = "";
    mpi.mpich = !mpi.comm_world && speaks_mpich(version, sizeof version);
    if (!mpi.mpich && (!mpi.comm_world || !mpi.byte))
        return errf(err, errlen, "%s is an MPI library of neither Open MPI's ABI (it has no ompi_mpi_comm_world / "
                    "ompi_mpi_byte) nor MPICH's (its MPI_Get_library_version, \"%s\", names no MPICH, Intel MPI or "
                    "MVAPICH): set LLFC_MPI to %s libmpi.so, the one of the mpirun that started this, or give the "
                    "address yourself: mpirun -x MASTER_ADDR=<rank 0's host> -x MASTER_PORT=29500", mpi.path, version,
                    flavour(s));
    return true;
}

/* Load the launcher's MPI library (once per process). The error names every name tried and both
 * ways out. */
static bool load(const DistPlace *p, char *err, size_t errlen) {
    if (mpi.lib) return true;
    const char *names[3];
    size_t n = lib_names(p->source, names);
    char tried[ERR_LEN / 2];
    bool from_env = n == 1;
    if (!(mpi.lib = open_first(names, n, tried, sizeof tried)))
        return errf(err, errlen, "mpirun started %d ranks without MASTER_ADDR, and %s library, which would give "
                    "them rank 0's address, was not found: tried %s%s. Either install that library (the one of this "
                    "mpirun; Debian/Ubuntu: %s) or set LLFC_MPI to its libmpi.so, or give rank 0's address yourself: "
                    "mpirun -x MASTER_ADDR=<rank 0's host> -x MASTER_PORT=29500 ... (MPICH: mpiexec -genv MASTER_ADDR "
                    "...)", p->world_size, flavour(p->source), from_env ? "LLFC_MPI=" : "", tried,
                    p->source == DIST_MPICH ? "libmpich12" : "libopenmpi3");
    if (bind_functions(p->source, err, errlen)) return true;
    dlclose(mpi.lib); // not one to use: a later call may name another
    mpi.lib = NULL;
    return false;
}

/* "Open MPI v4.1.4 (libmpi.so.40)": MPI_Get_library_version's "Open MPI v4.1.4, package: ..."
 * up to its first comma, and the library's name. */
static void describe_library(void) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int len = 0;
    if (mpi.fn.library_version && mpi.fn.library_version(version, &len) == MPI_SUCCESS) {
        version[sizeof version - 1] = 0;
        version[strcspn(version, ",\n")] = 0;
        size_t k = 0; // MPICH aligns its "MPICH Version:\t4.0.2" with tabs or runs of spaces: one space each
        for (size_t i = 0; version[i]; i++) {
            const char c = version[i] == '\t' ? ' ' : version[i];
            if (c != ' ' || (k && version[k - 1] != ' ')) version[k++] = c;
        }
        version[k] = 0;
    }
    snprintf(mpi.library, sizeof mpi.library, "%.80s (%.511s)", *version ? version : mpi.mpich ? "MPICH" : "Open MPI",
             mpi.path);
}

/* At exit after main's mpiboot_set_exit_status(0): MPI_Finalize. At exit, main's frame is gone,
 * so the leak check before it (Open MPI's; MPICH's comes after, see above) sees no stale
 * pointers of ours there. The library stays loaded: Open MPI may have more to run at exit. */
static void finish_at_exit(void) {
    if (!mpi.up || !mpi.succeeded) return;
    mpi.up = false;
    if (!mpi.mpich) CHECK_LEAKS_NOW();
    mpi.fn.finalize();
}

/* MPI_Init, and MPI's rank and size against the ones mpirun's variables gave. */
static bool start(const DistPlace *p, char *err, size_t errlen) {
    OPEN_MPI_ALLOCATES();
    int rc = mpi.fn.init(NULL, NULL), rank = -1, size = -1;
    int rc_rank = rc == MPI_SUCCESS ? comm_rank(&rank) : MPI_SUCCESS;
    int rc_size = rc == MPI_SUCCESS ? comm_size(&size) : MPI_SUCCESS;
    WE_ALLOCATE();
    if (!mpi_ok(rc, "MPI_Init", mpi.path, err, errlen)) return false;
    mpi.up = true;
    atexit(finish_at_exit);
    describe_library();
    if (!mpi_ok(rc_rank, "MPI_Comm_rank", "MPI_COMM_WORLD", err, errlen) ||
        !mpi_ok(rc_size, "MPI_Comm_size", "MPI_COMM_WORLD", err, errlen))
        return false;
    if (rank != p->rank || size != p->world_size)
        return errf(err, errlen, "%s says this is rank %d of %d, but mpirun's variables (%s) say rank %d of %d: is "
                    "the library from another MPI than the mpirun that started this? Set LLFC_MPI to that mpirun's "
                    "libmpi.so", mpi.library, rank, size, p->source == DIST_MPICH ? "PMI_RANK, PMI_SIZE"
                    : "OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE", p->rank, p->world_size);
    return true;
}

// --- rank 0's address

/* A numeric host for addr, or false. */
static bool numeric(const struct sockaddr *a, char *out, size_t len) {
    socklen_t alen = a->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    return getnameinfo(a, alen, out, (socklen_t)len, NULL, 0, NI_NUMERICHOST) == 0;
}

static bool is_loopback(const struct sockaddr *a) {
    if (a->sa_family == AF_INET) return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    return a->sa_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

/* The first address that host resolves to here, other than the loopback. */
static bool host_address(const char *host, char *out, size_t len) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return false;
    bool found = false;
    for (struct addrinfo *ai = res; ai && !found; ai = ai->ai_next)
        found = !is_loopback(ai->ai_addr) && numeric(ai->ai_addr, out, len);
    freeaddrinfo(res);
    return found;
}

/* The first IPv4 address of an interface that is up and not the loopback. */
static bool interface_address(char *out, size_t len) {
    struct ifaddrs *all = NULL;
    if (getifaddrs(&all) != 0) return false;
    bool found = false;
    for (struct ifaddrs *i = all; i && !found; i = i->ifa_next)
        found = i->ifa_addr && i->ifa_addr->sa_family == AF_INET && (i->ifa_flags & IFF_UP) &&
                !(i->ifa_flags & IFF_LOOPBACK) && numeric(i->ifa_addr, out, len);
    freeifaddrs(all);
    return found;
}

/* Where the other ranks can reach rank 0: the loopback when they all run on its node (its local
 * size is the world's); else the address its host name resolves to, unless that is a loopback
 * one (Debian maps a machine's own name to 127.0.1.1, which no other node reaches); else its
 * first IPv4 interface that is up. Numeric, so the others need not resolve rank 0's name. */
static bool pick_address(const DistPlace *p, char *out, size_t len, char *err, size_t errlen) {
    if (p->local_world_size == p->world_size) return snprintf(out, len, "127.0.0.1") > 0;
    if (host_address(p->host, out, len) || interface_address(out, len)) return true;
    return errf(err, errlen, "rank 0 (host %s) has no address the other ranks could reach (its name resolves only "
                "to the loopback and no other interface is up): give it yourself, mpirun -x MASTER_ADDR=<rank 0's "
                "host> -x MASTER_PORT=29500", p->host);
}

/* Rank 0's pick to every rank, once: MPI starts once per process. */
static bool share_master(const DistPlace *p, char *err, size_t errlen) {
    if (mpi.shared) return true;
    if (mpi.up) return errf(err, errlen, "MPI started but rank 0's address did not arrive (see the error before)");
    if (!load(p, err, errlen) || !start(p, err, errlen)) return false;
    Master *m = &mpi.master;
    if (p->rank == 0) {
        m->port = p->master_port_set ? p->master_port : dist_free_port();
        if (!pick_address(p, m->addr, sizeof m->addr, m->why, sizeof m->why)) m->addr[0] = 0;
    }
    if (!mpiboot_broadcast(m, sizeof *m, err, errlen)) return false;
    m->addr[sizeof m->addr - 1] = 0, m->why[sizeof m->why - 1] = 0;
    return mpi.shared = true;
}

bool mpiboot_find_master(DistPlace *p, char *err, size_t errlen) {
    if (!dist_source_is_mpi(p->source) || p->world_size < 2 || p->master_addr[0]) return true;
    if (!share_master(p, err, errlen)) return false;
    if (!mpi.master.addr[0]) return errf(err, errlen, "%s", mpi.master.why);
    snprintf(p->master_addr, sizeof p->master_addr, "%s", mpi.master.addr);
    p->master_port = mpi.master.port;
    return true;
}

bool mpiboot_active(void) { return mpi.up; }

const char *mpiboot_library(void) { return mpi.library; }

bool mpiboot_broadcast(void *buf, size_t n, char *err, size_t errlen) {
    if (!mpi.up) return errf(err, errlen, "MPI_Bcast of %zu bytes: MPI is not started", n);
    if (n > INT_MAX) return errf(err, errlen, "MPI_Bcast of %zu bytes: more than MPI's int count", n);
    char what[64];
    snprintf(what, sizeof what, "%zu bytes from rank 0", n);
    OPEN_MPI_ALLOCATES();
    int rc = bcast_bytes(buf, (int)n, 0);
    WE_ALLOCATE();
    return mpi_ok(rc, "MPI_Bcast", what, err, errlen);
}

void mpiboot_set_exit_status(int exit_status) { mpi.succeeded = exit_status == 0; }


