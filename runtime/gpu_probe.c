/* gpu_probe.c - ask the CUDA driver, loaded with dlopen, how many devices it sees. */
#include "gpu_probe.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*CuInit)(unsigned flags);
typedef int (*CuDeviceGetCount)(int *count);
typedef int (*CuDriverGetVersion)(int *version);

int gpu_probe(char *msg, size_t len) {
    // LLFC_CUDA_DRIVER names the library when it is not where the loader looks
    const char *name = getenv("LLFC_CUDA_DRIVER");
    if (!name || !*name) name = "libcuda.so.1";
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(msg, len, "no CUDA driver: %s not found by the dynamic loader (LD_LIBRARY_PATH, "
                 "/etc/ld.so.cache; set LLFC_CUDA_DRIVER to its path)", name);
        return 0;
    }
    CuInit init = (CuInit)dlsym(lib, "cuInit");
    CuDeviceGetCount count = (CuDeviceGetCount)dlsym(lib, "cuDeviceGetCount");
    CuDriverGetVersion version = (CuDriverGetVersion)dlsym(lib, "cuDriverGetVersion");
    int n = 0, v = 0, rc = -1;
    if (!init || !count) snprintf(msg, len, "%s has no cuInit/cuDeviceGetCount: not a CUDA driver", name);
    else if ((rc = init(0)) != 0) snprintf(msg, len, "%s: cuInit failed (CUresult %d): no usable GPU", name, rc);
    else if ((rc = count(&n)) != 0) snprintf(msg, len, "%s: cuDeviceGetCount failed (CUresult %d)", name, rc);
    else {
        if (version) version(&v);
        snprintf(msg, len, "CUDA driver %d.%d (%s): %d device%s visible", v / 1000, (v % 1000) / 10, name, n,
                 n == 1 ? "" : "s");
    }
    dlclose(lib);
    return rc == 0 ? n : 0;
}
