// prelude.hpp - enough of CUDA to run a generated unit on the CPU, for checking kernels where
// no GPU is (tests/gpu/emu/run.sh). Blocks run one after another, each block's threads as
// std::threads (so __shared__ can be a function-local static); __syncthreads is a barrier of the
// block, warp shuffles exchange through a per-warp buffer between two barriers of the warp, and
// a thread that returns drops out of both (as exited threads do on the GPU). Built with
// -ffp-contract=off, so the _rn intrinsics are plain operations.
#include <barrier>
#include <cmath>
#include <math.h>
#include <cstring>
#include <cstdint>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>
struct emu_dim3 { unsigned x, y, z; };
static thread_local emu_dim3 threadIdx, blockIdx;
static emu_dim3 blockDim, gridDim;
static thread_local std::barrier<> *emu_block_bar, *emu_warp_bar;
static thread_local unsigned long long *emu_warp_buf;
static thread_local unsigned emu_lane;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static
static inline void __syncthreads() { emu_block_bar->arrive_and_wait(); }
template <typename T> static inline T emu_shfl(T v, unsigned src) {
    static_assert(sizeof(T) <= 8, "");
    unsigned long long raw = 0;
    memcpy(&raw, &v, sizeof v);
    emu_warp_buf[emu_lane] = raw;
    emu_warp_bar->arrive_and_wait();
    T r;
    memcpy(&r, &emu_warp_buf[src], sizeof r);
    emu_warp_bar->arrive_and_wait();
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
