// prelude.hpp - enough of CUDA to run a generated unit on the CPU, for checking kernels where
// no GPU is (tests/gpu/emu/run.sh, run_trainer.sh). A block's threads are green threads on one
// host thread (epilogue.hpp switches between them with a few instructions of assembly, so a
// barrier costs nanoseconds, not a futex); __shared__ is a function-local static, since blocks
// run one after another. __syncthreads is a barrier of the block; a warp shuffle exchanges
// through the warp's buffer between two barriers of the warp; a thread that returns drops out
// of both (as exited threads do on the GPU). Built with -ffp-contract=off, so the _rn
// intrinsics are plain operations. The 16-bit storage types need nothing here: bf16 and f16
// (fp16: true) are the unit's own (kernels/common.cuh: structs of their bits, converted by hand
// with round to nearest even, f16 overflowing to inf from 65520 as the GPU's conversion does), so
// the emulation runs the very conversions the GPU runs; atomics are not used. x86-64 only.
#include <cmath>
#include <math.h>
#include <cstring>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>
struct emu_dim3 { unsigned x, y, z; };
struct emu_barrier { unsigned expected, arrived, gen; };
static emu_dim3 threadIdx, blockIdx, blockDim, gridDim; /* threadIdx: the running green thread's */
static emu_barrier *emu_block_bar, *emu_warp_bar;
static unsigned long long *emu_warp_buf;
static unsigned emu_lane;
static void emu_yield(); /* back to the scheduler (epilogue.hpp) */
static void emu_arrive_and_wait(emu_barrier *b) {
    const unsigned g = b->gen;
    if (++b->arrived == b->expected) {
        b->arrived = 0, b->gen++;
        return;
    }
    while (b->gen == g) emu_yield();
}
static void emu_drop(emu_barrier *b) {
    b->expected--;
    if (b->arrived > 0 && b->arrived == b->expected) b->arrived = 0, b->gen++;
}
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
static inline void __syncthreads() { emu_arrive_and_wait(emu_block_bar); }
template <typename T> static inline T emu_shfl(T v, unsigned src) {
    static_assert(sizeof(T) <= 8, "");
    unsigned long long raw = 0;
    memcpy(&raw, &v, sizeof v);
    emu_warp_buf[emu_lane] = raw;
    emu_arrive_and_wait(emu_warp_bar);
    T r;
    memcpy(&r, &emu_warp_buf[src], sizeof r);
    emu_arrive_and_wait(emu_warp_bar);
    return r;
}
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int o) { return emu_shfl(v, emu_lane ^ (unsigned)o); }
template <typename T> static inline T __shfl_sync(unsigned, T v, int src) { return emu_shfl(v, (unsigned)src); }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
template <typename T> static inline T min(T a, T b) { return a < b ? a : b; }
template <typename T> static inline T max(T a, T b) { return a > b ? a : b; }
