/* nvrtc.c - NVRTC: load it, compile the generated unit per arch (in parallel), cache the
 * result, and turn it into payload entries (see nvrtc.h). */
#include "nvrtc.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cuda_gen.h"
#include "sha256.h"

/* NVRTC's C ABI, declared here rather than taken from the toolkit's nvrtc.h: the build needs no
 * CUDA headers, and this module's own nvrtc.h would shadow that one on the include path. */
typedef int NvResult; /* nvrtcResult, an enum: 0 is NVRTC_SUCCESS */
typedef struct NvProgram *NvProg; /* nvrtcProgram */

/* The NVRTC entry points llfc uses, from the static library or from dlopen. */
static struct {
    bool tried, ok;
    char why[1024];
    const char *(*error_string)(NvResult);
    NvResult (*version)(int *, int *);
    NvResult (*create)(NvProg *, const char *, const char *, int, const char *const *, const char *const *);
    NvResult (*destroy)(NvProg *);
    NvResult (*compile)(NvProg, int, const char *const *);
    NvResult (*log_size)(NvProg, size_t *);
    NvResult (*log)(NvProg, char *);
    NvResult (*cubin_size)(NvProg, size_t *);
    NvResult (*cubin)(NvProg, char *);
    NvResult (*ptx_size)(NvProg, size_t *);
    NvResult (*ptx)(NvProg, char *);
    char version_text[16];
} nv;

static pthread_mutex_t nv_lock = PTHREAD_MUTEX_INITIALIZER;

#ifdef LLFC_NVRTC_STATIC
const char *nvrtcGetErrorString(NvResult);
NvResult nvrtcVersion(int *, int *);
NvResult nvrtcCreateProgram(NvProg *, const char *, const char *, int, const char *const *, const char *const *);
NvResult nvrtcDestroyProgram(NvProg *);
NvResult nvrtcCompileProgram(NvProg, int, const char *const *);
NvResult nvrtcGetProgramLogSize(NvProg, size_t *);
NvResult nvrtcGetProgramLog(NvProg, char *);
NvResult nvrtcGetCUBINSize(NvProg, size_t *);
NvResult nvrtcGetCUBIN(NvProg, char *);
NvResult nvrtcGetPTXSize(NvProg, size_t *);
NvResult nvrtcGetPTX(NvProg, char *);

static bool nv_bind(void) {
    nv.error_string = nvrtcGetErrorString, nv.version = nvrtcVersion, nv.create = nvrtcCreateProgram;
    nv.destroy = nvrtcDestroyProgram, nv.compile = nvrtcCompileProgram;
    nv.log_size = nvrtcGetProgramLogSize, nv.log = nvrtcGetProgramLog;
    nv.cubin_size = nvrtcGetCUBINSize, nv.cubin = nvrtcGetCUBIN;
    nv.ptx_size = nvrtcGetPTXSize, nv.ptx = nvrtcGetPTX;
    return true;
}
#else
static void *nv_open(StrBuf *tried) {
    const char *env = getenv("LLFC_NVRTC");
    const char *home = getenv("CUDA_HOME");
    char *home_lib = home && *home ? xprintf("%s/lib64/libnvrtc.so", home) : NULL;
    const char *names[] = {env && *env ? env : NULL, "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so",
                           home_lib, "/usr/local/cuda/lib64/libnvrtc.so"};
    void *h = NULL;
    const size_t n_names = env && *env ? 1 : sizeof names / sizeof *names; /* $LLFC_NVRTC alone */
    for (size_t i = 0; i < n_names && !h; i++) {
        if (!names[i]) continue;
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        sb_printf(tried, "%s%s", tried->len ? ", " : "", names[i]);
    }
    free(home_lib);
    return h;
}

#define BIND(field, sym)                                                                     \
    do {                                                                                     \
        *(void **)(&nv.field) = dlsym(h, sym);                                               \
        if (!nv.field) {                                                                     \
            snprintf(nv.why, sizeof nv.why, "NVRTC was found but lacks %s (too old?)", sym); \
            return false;                                                                    \
        }                                                                                    \
    } while (0)

static bool nv_bind(void) {
    StrBuf tried = {0};
    void *h = nv_open(&tried);
    if (!h) {
        snprintf(nv.why, sizeof nv.why,
                 "cannot load NVRTC (looked for %s); install the CUDA toolkit (12 or 13), set "
                 "LLFC_NVRTC=/path/to/libnvrtc.so, or pass --arch none for a CPU-only trainer",
                 tried.data);
        sb_free(&tried);
        return false;
    }
    sb_free(&tried);
    BIND(error_string, "nvrtcGetErrorString");
    BIND(version, "nvrtcVersion");
    BIND(create, "nvrtcCreateProgram");
    BIND(destroy, "nvrtcDestroyProgram");
    BIND(compile, "nvrtcCompileProgram");
    BIND(log_size, "nvrtcGetProgramLogSize");
    BIND(log, "nvrtcGetProgramLog");
    BIND(cubin_size, "nvrtcGetCUBINSize");
    BIND(cubin, "nvrtcGetCUBIN");
    BIND(ptx_size, "nvrtcGetPTXSize");
    BIND(ptx, "nvrtcGetPTX");
    return true; /* the handle stays open for the life of the process */
}
#endif

bool nvrtc_available(char *err, size_t errlen) {
    pthread_mutex_lock(&nv_lock);
    if (!nv.tried) {
        nv.tried = true;
        nv.ok = nv_bind();
        int major = 0, minor = 0;
        if (nv.ok && nv.version(&major, &minor) != 0) {
            nv.ok = false;
            snprintf(nv.why, sizeof nv.why, "nvrtcVersion failed");
        }
        snprintf(nv.version_text, sizeof nv.version_text, "%d.%d", major, minor);
    }
    pthread_mutex_unlock(&nv_lock);
    if (!nv.ok) errf(err, errlen, "%s", nv.why);
    return nv.ok;
}

// --- architectures

bool nvrtc_parse_archs(const char *list, int *archs, int *n, char *err, size_t errlen) {
    *n = 0;
    if (!strcmp(list, "none")) return true;
    char *copy = xstrdup(list), *save = NULL;
    bool ok = true;
    for (char *item = strtok_r(copy, ",", &save); item && ok; item = strtok_r(NULL, ",", &save)) {
        const char *digits = !strncmp(item, "sm_", 3) ? item + 3 : item;
        char *end;
        long v = strtol(digits, &end, 10);
        if (*digits == '\0' || *end != '\0' || v < 50 || v > 999) {
            ok = errf(err, errlen, "--arch: '%s' is not a GPU architecture (expected e.g. sm_80,sm_90, or none)", item);
            break;
        }
        if (*n >= NVRTC_MAX_ARCHS) {
            ok = errf(err, errlen, "--arch: at most %d architectures", NVRTC_MAX_ARCHS);
            break;
        }
        int at = *n;
        while (at > 0 && archs[at - 1] > v) at--;
        if (at > 0 && archs[at - 1] == v) continue;
        memmove(archs + at + 1, archs + at, (size_t)(*n - at) * sizeof *archs);
        archs[at] = (int)v;
        (*n)++;
    }
    if (ok && *n == 0) ok = errf(err, errlen, "--arch: empty list (use none for a CPU-only trainer)");
    free(copy);
    return ok;
}

// --- one compile (one arch) per thread

static const char *UNIT_NAME = "llfc.cu";

typedef struct {
    const char *source;
    char option[48];  /* --gpu-architecture=sm_80 or compute_90 */
    bool want_ptx;
    NvrtcImage image;
    char *log;
    bool ok;
} Job;

static void *run_job(void *arg) {
    Job *j = arg;
    NvProg prog = NULL;
    if (nv.create(&prog, j->source, UNIT_NAME, 0, NULL, NULL) != 0) {
        j->log = xstrdup("nvrtcCreateProgram failed");
        return NULL;
    }
    const char *opts[] = {j->option, "--std=c++17"};
    NvResult rc = nv.compile(prog, 2, opts);
    size_t n = 0;
    if (nv.log_size(prog, &n) == 0 && n > 1) {
        j->log = xcalloc(n + 1, 1);
        nv.log(prog, j->log);
    }
    if (rc == 0) {
        size_t len = 0;
        NvResult r2 = j->want_ptx ? nv.ptx_size(prog, &len) : nv.cubin_size(prog, &len);
        if (r2 == 0 && len > 0) {
            j->image.data = xmalloc(len);
            r2 = j->want_ptx ? nv.ptx(prog, j->image.data) : nv.cubin(prog, j->image.data);
            j->image.len = j->want_ptx ? strlen(j->image.data) : len; /* PTX comes NUL-terminated */
            j->ok = r2 == 0;
        }
    } else if (!j->log) {
        j->log = xstrdup(nv.error_string(rc));
    }
    nv.destroy(&prog);
    return NULL;
}

/* NVRTC's log with the generated line after each "llfc.cu(LINE): ..." message. */
static void explain_log(const char *source, const char *log, StrBuf *out) {
    const char *at = log;
    while (*at && out->len < 16000) {
        const char *eol = strchr(at, '\n');
        size_t len = eol ? (size_t)(eol - at) : strlen(at);
        sb_append(out, at, len);
        sb_puts(out, "\n");
        unsigned line = 0;
        if (!strncmp(at, UNIT_NAME, strlen(UNIT_NAME)) && sscanf(at + strlen(UNIT_NAME), "(%u)", &line) == 1 && line > 0) {
            const char *s = source;
            for (unsigned k = 1; k < line && s; k++) s = strchr(s, '\n'), s = s ? s + 1 : NULL;
            if (s) {
                const char *e = strchr(s, '\n');
                sb_printf(out, "    generated line %u: %.*s\n", line, (int)(e ? e - s : (long)strlen(s)), s);
            }
        }
        if (!eol) break;
        at = eol + 1;
    }
}

// --- the cache

static char *cache_dir(void) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) return xprintf("%s/llfc", xdg);
    if (home && *home) return xprintf("%s/.cache/llfc", home);
    return NULL;
}

static bool make_dirs(const char *path) {
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) break;
            *s = '/';
        }
    bool ok = mkdir(p, 0755) == 0 || errno == EEXIST;
    free(p);
    return ok;
}

static char *cache_path(const char *source, size_t len, const int *archs, int n) {
    char *dir = cache_dir();
    if (!dir || getenv("LLFC_NO_CACHE")) {
        free(dir);
        return NULL;
    }
    Sha256 h;
    sha256_init(&h);
    const char *parts[] = {"llfc nvrtc cache v1", LLFC_VERSION, nv.version_text, "--std=c++17"};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) sha256_update(&h, parts[i], strlen(parts[i]) + 1);
    for (int i = 0; i < n; i++) sha256_update(&h, &archs[i], sizeof archs[i]);
    sha256_update(&h, source, len);
    uint8_t d[32];
    char hex[65];
    sha256_final(&h, d);
    sha256_hex(d, hex);
    char *path = xprintf("%s/nvrtc-%s.bin", dir, hex);
    free(dir);
    return path;
}

/* Format: "LLFCNVRC", u32 count, then per image u32 name length, name, u64 length, bytes;
 * then the SHA-256 of everything before it. */
static void put_u32(StrBuf *s, uint32_t v) { sb_append(s, (const char *)&v, 4); }
static void put_u64(StrBuf *s, uint64_t v) { sb_append(s, (const char *)&v, 8); }

static void cache_store(const char *path, const NvrtcOutput *o) {
    StrBuf s = {0};
    sb_append(&s, "LLFCNVRC", 8);
    put_u32(&s, (uint32_t)o->n_cubin + 1);
    for (int i = 0; i <= o->n_cubin; i++) {
        const NvrtcImage *im = i < o->n_cubin ? &o->cubin[i] : &o->ptx;
        put_u32(&s, (uint32_t)strlen(im->arch));
        sb_append(&s, im->arch, strlen(im->arch));
        put_u64(&s, im->len);
        sb_append(&s, im->data, im->len);
    }
    uint8_t d[32];
    sha256(s.data, s.len, d);
    sb_append(&s, (const char *)d, 32);
    char err[256], *dir = xstrdup(path);
    *strrchr(dir, '/') = '\0';
    if (make_dirs(dir)) util_write_file_atomic(path, s.data, s.len, 0644, err, sizeof err); /* best effort */
    free(dir);
    sb_free(&s);
}

static bool take(const char **at, const char *end, void *dst, size_t n) {
    if ((size_t)(end - *at) < n) return false;
    memcpy(dst, *at, n);
    *at += n;
    return true;
}

static bool cache_load(const char *path, NvrtcOutput *o, int n_archs) {
    size_t len = 0;
    char err[256];
    char *buf = util_read_file(path, &len, err, sizeof err);
    if (!buf) return false;
    uint8_t d[32];
    bool ok = len > 8 + 4 + 32 && !memcmp(buf, "LLFCNVRC", 8);
    if (ok) sha256(buf, len - 32, d);
    ok = ok && !memcmp(d, buf + len - 32, 32);
    const char *at = buf + 8, *end = buf + len - 32;
    uint32_t count = 0;
    ok = ok && take(&at, end, &count, 4) && count == (uint32_t)n_archs + 1;
    for (uint32_t i = 0; ok && i < count; i++) {
        NvrtcImage *im = i + 1 < count ? &o->cubin[i] : &o->ptx;
        uint32_t nl = 0;
        uint64_t dl = 0;
        ok = take(&at, end, &nl, 4) && nl < sizeof im->arch && take(&at, end, im->arch, nl) &&
             take(&at, end, &dl, 8) && dl <= (uint64_t)(end - at);
        if (!ok) break;
        im->arch[nl] = '\0';
        im->data = xmalloc(dl + 1);
        memcpy(im->data, at, dl);
        im->data[dl] = '\0';
        im->len = dl;
        at += dl;
    }
    free(buf);
    o->n_cubin = n_archs;
    if (!ok) nvrtc_output_free(o);
    return ok;
}

// --- compile

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

bool nvrtc_compile(const char *source, size_t len, const int *archs, int n_archs, NvrtcOutput *out,
                   char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    const double t0 = now();
    if (n_archs <= 0 || n_archs > NVRTC_MAX_ARCHS) return errf(err, errlen, "nvrtc: no architecture to compile for");
    if (!nvrtc_available(err, errlen)) return false;
    snprintf(out->version, sizeof out->version, "%s", nv.version_text);
    char *path = cache_path(source, len, archs, n_archs);
    if (path && cache_load(path, out, n_archs)) {
        snprintf(out->version, sizeof out->version, "%s", nv.version_text);
        out->cache_hit = true;
        out->seconds = now() - t0;
        free(path);
        return true;
    }
    Job jobs[NVRTC_MAX_ARCHS + 1];
    pthread_t threads[NVRTC_MAX_ARCHS + 1];
    const int n_jobs = n_archs + 1;
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < n_jobs; i++) {
        const bool ptx = i == n_archs;
        const int a = ptx ? archs[n_archs - 1] : archs[i];
        jobs[i].source = source;
        jobs[i].want_ptx = ptx;
        snprintf(jobs[i].image.arch, sizeof jobs[i].image.arch, "%s_%d", ptx ? "compute" : "sm", a);
        snprintf(jobs[i].option, sizeof jobs[i].option, "--gpu-architecture=%s_%d", ptx ? "compute" : "sm", a);
    }
    /* one thread per target: NVRTC programs are independent, and each compile is seconds */
    bool started[NVRTC_MAX_ARCHS + 1] = {false};
    for (int i = 0; i < n_jobs; i++) started[i] = pthread_create(&threads[i], NULL, run_job, &jobs[i]) == 0;
    for (int i = 0; i < n_jobs; i++) {
        if (started[i]) pthread_join(threads[i], NULL);
        else run_job(&jobs[i]);
    }
    bool ok = true;
    for (int i = 0; i < n_jobs && ok; i++) {
        if (jobs[i].ok) continue;
        StrBuf msg = {0};
        sb_printf(&msg, "NVRTC %s could not compile the generated CUDA for %s (a bug in llfc's kernels; "
                        "llfc --emit-cuda prints the unit):\n", nv.version_text, jobs[i].image.arch);
        explain_log(source, jobs[i].log ? jobs[i].log : "(no log)", &msg);
        errf(err, errlen, "%s", msg.data);
        sb_free(&msg);
        ok = false;
    }
    for (int i = 0; i < n_jobs; i++) {
        if (ok && jobs[i].log && strstr(jobs[i].log, "warning") && !out->warnings) {
            out->warnings = jobs[i].log;
            jobs[i].log = NULL;
        }
        free(jobs[i].log);
        if (!ok) {
            free(jobs[i].image.data);
            continue;
        }
        if (i < n_archs) out->cubin[i] = jobs[i].image;
        else out->ptx = jobs[i].image;
    }
    if (ok) {
        out->n_cubin = n_archs;
        if (path) cache_store(path, out);
    }
    free(path);
    out->seconds = now() - t0;
    return ok;
}

void nvrtc_output_free(NvrtcOutput *o) {
    for (int i = 0; i < NVRTC_MAX_ARCHS; i++) free(o->cubin[i].data);
    free(o->ptx.data);
    free(o->warnings);
    memset(o, 0, sizeof *o);
}

// --- payload

static struct {
    int archs[NVRTC_MAX_ARCHS];
    int n;
    bool set, explicit_choice;
} arch_choice;

bool nvrtc_set_arch_list(const char *list, bool explicit_choice, char *err, size_t errlen) {
    arch_choice.set = nvrtc_parse_archs(list, arch_choice.archs, &arch_choice.n, err, errlen);
    arch_choice.explicit_choice = explicit_choice;
    return arch_choice.set;
}

typedef struct {
    CudaUnit unit;
    StrBuf launches;
    NvrtcOutput out;
    char *names[NVRTC_MAX_ARCHS + 1];
} Owned;

bool nvrtc_payload_build(NvrtcPayload *pl, const void *plan_bytes, size_t plan_len, CudaStorage storage, char *err,
                         size_t errlen) {
    memset(pl, 0, sizeof *pl);
    if (!arch_choice.set) nvrtc_set_arch_list(NVRTC_DEFAULT_ARCH, false, NULL, 0);
    if (arch_choice.n == 0) return true; /* --arch none */
    char why[1024];
    const bool have = nvrtc_available(why, sizeof why);
    if (!have && arch_choice.explicit_choice) return errf(err, errlen, "%s", why);
    Plan *plan = plan_deserialize(plan_bytes, plan_len, err, errlen);
    if (!plan) return false;
    Owned *o = xcalloc(1, sizeof *o);
    pl->owned = o;
    bool ok = cuda_gen(plan, storage, &o->unit, err, errlen);
    if (ok) cuda_unit_launches(&o->unit, plan, &o->launches);
    plan_free(plan);
    if (!ok) return false;
    pl->entries = xcalloc(NVRTC_MAX_ARCHS + 3, sizeof *pl->entries);
    pl->entries[pl->n++] = (PayloadEntry){"cuda/source.cu", o->unit.source, o->unit.len};
    pl->entries[pl->n++] = (PayloadEntry){"cuda/launches.txt", o->launches.data, o->launches.len};
    if (!have) {
        pl->note = xprintf("no CUDA binaries in the trainer (it trains on the CPU; the CUDA source is "
                           "included): %s", why);
        return true;
    }
    if (!nvrtc_compile(o->unit.source, o->unit.len, arch_choice.archs, arch_choice.n, &o->out, err, errlen))
        return false;
    for (int i = 0; i < o->out.n_cubin; i++) {
        o->names[i] = xprintf("cuda/%s.cubin", o->out.cubin[i].arch);
        pl->entries[pl->n++] = (PayloadEntry){o->names[i], o->out.cubin[i].data, o->out.cubin[i].len};
    }
    o->names[NVRTC_MAX_ARCHS] = xprintf("cuda/%s.ptx", o->out.ptx.arch);
    pl->entries[pl->n++] = (PayloadEntry){o->names[NVRTC_MAX_ARCHS], o->out.ptx.data, o->out.ptx.len};
    return true;
}

void nvrtc_payload_free(NvrtcPayload *pl) {
    Owned *o = pl->owned;
    if (o) {
        cuda_unit_free(&o->unit);
        sb_free(&o->launches);
        nvrtc_output_free(&o->out);
        for (int i = 0; i <= NVRTC_MAX_ARCHS; i++) free(o->names[i]);
        free(o);
    }
    free(pl->entries);
    free(pl->note);
    memset(pl, 0, sizeof *pl);
}
