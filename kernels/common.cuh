/* common.cuh - what every generated kernel shares: the 16-bit storage types, warp and block
 * sums, Philox.
 *
 * The generated unit includes nothing: bf16 and f16 are kept as their 16 bits and converted by
 * hand, so NVRTC needs no header search path on the machine that compiles (the llfc user's
 * laptop), and tests/gpu/emu runs the same conversions on the CPU. They are distinct types so
 * that ld and st pick the conversion by overload. Right after this file the generator writes
 * `typedef bf16 floatX;` (or f16 for a recipe with fp16: true): the storage of activations,
 * their gradients and the weights' copy, what every template below writes as `floatX *`.
 * `float *` is fp32: master weights, parameter gradients, optimizer state and the per-row
 * statistics (rstd, lse, delta, softmax sums). Arithmetic is fp32. Shapes use the vocabulary
 * of kernels/README.md: N = B*T tokens, C, NH, NKV, HD, FF, V, R.
 */
struct bf16 { unsigned short bits; }; /* bfloat16: 8 exponent bits, 7 mantissa bits */
struct f16 { unsigned short bits; };  /* IEEE binary16: 5 exponent bits, 10 mantissa bits */
typedef long long i64;
typedef unsigned int u32;
typedef unsigned long long u64;

#define LLFC_INF __int_as_float(0x7f800000)

__device__ __forceinline__ float to_f32(bf16 h) { return __uint_as_float(((u32)h.bits) << 16); }

/* Round to nearest even, as torch's .to(bfloat16); NaN stays a (quiet) NaN. */
__device__ __forceinline__ bf16 f32_to_bf16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{(unsigned short)((u >> 16) | 0x40u)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return bf16{(unsigned short)(u >> 16)};
}

/* Exact: every half is a float (subnormals as man * 2^-24). */
__device__ __forceinline__ float to_f32(f16 h) {
    const u32 sign = (u32)(h.bits & 0x8000u) << 16, exp = (h.bits >> 10) & 0x1fu, man = h.bits & 0x3ffu;
    if (exp == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
    if (exp != 0) return __uint_as_float(sign | ((exp + 112) << 23) | (man << 13));
    return __uint_as_float(sign | __float_as_uint((float)man * 5.9604644775390625e-8f));
}

/* Round to nearest even, as torch's .to(float16) (runtime/safetensors.c's st_f32_to_f16): from
 * 65520 up it is inf, which is how loss scaling sees an overflow; below 2^-14 subnormal. */
__device__ __forceinline__ f16 f32_to_f16(float f) {
    const u32 u = __float_as_uint(f), a = u & 0x7fffffffu;
    const unsigned short sign = (unsigned short)((u >> 16) & 0x8000u);
    if (a > 0x7f800000u) return f16{(unsigned short)(sign | 0x7e00u)};  /* NaN */
    if (a >= 0x477ff000u) return f16{(unsigned short)(sign | 0x7c00u)}; /* inf */
    if (a < 0x38800000u) { /* units of 2^-24, rounded by the float add of 2^23 (exact otherwise) */
        const float r = __fadd_rn(__uint_as_float(a) * 16777216.0f, 8388608.0f);
        return f16{(unsigned short)(sign | (__float_as_uint(r) - 0x4b000000u))};
    }
    const u32 rounded = a + 0xfffu + ((a >> 13) & 1u);
    return f16{(unsigned short)(sign | ((rounded - (112u << 23)) >> 13))};
}

__device__ __forceinline__ float ld(const bf16 *p, i64 i) { return to_f32(p[i]); }
__device__ __forceinline__ float ld(const f16 *p, i64 i) { return to_f32(p[i]); }
__device__ __forceinline__ float ld(const float *p, i64 i) { return p[i]; }
__device__ __forceinline__ void st(bf16 *p, i64 i, float v) { p[i] = f32_to_bf16(v); }
__device__ __forceinline__ void st(f16 *p, i64 i, float v) { p[i] = f32_to_f16(v); }
__device__ __forceinline__ void st(float *p, i64 i, float v) { p[i] = v; }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block in a fixed tree (same result every run); every thread gets it.
 * `red` holds one slot per warp. */
template <typename F>
__device__ __forceinline__ F block_sum(F v, F *red) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    F total = 0;
    for (int w = 0; w < nw; w++) total += red[w];
    return total;
}

__device__ __forceinline__ float block_max(float v, float *red) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float m = -LLFC_INF;
    for (int w = 0; w < nw; w++) m = fmaxf(m, red[w]);
    return m;
}

/* Philox4x32-10 keyed by (seed, purpose, block), bit for bit runtime/rng.c's rng_block, so a
 * dropout mask drawn here equals the CPU executor's. */
__device__ __forceinline__ void philox_block(u64 seed, u64 purpose, u64 block, u32 out[4]) {
    u32 c0 = (u32)block, c1 = (u32)(block >> 32), c2 = (u32)purpose, c3 = (u32)(purpose >> 32);
    u32 k0 = (u32)seed, k1 = (u32)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        if (round > 0) k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
        const u32 hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        const u32 hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        const u32 n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}
