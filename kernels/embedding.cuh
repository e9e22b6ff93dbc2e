/* embedding.cuh - token embedding gather and its scatter-add backward (CUDA template of
 * embedding.c).
 *
 *     forward   out[t, c] = table[ids[t], c] * scale                ids (N) int32, table (V, C)
 *     backward  dtable[ids[t], c] += dout[t, c] * scale             (fp32 gradient)
 *
 * Backward gives each thread one column and walks the tokens in order: repeated ids never race
 * and the sum is the same every run (atomics would not be). It is slow for large N, and runs
 * only when the embedding trains (full fine-tuning or modules_to_save).
 */

#define EMBEDDING_FWD_PARAMS floatX *out, const int *ids, const floatX *table
#define EMBEDDING_FWD_ARGS out, ids, table
template <int C>
__device__ __forceinline__ void embedding_fwd(EMBEDDING_FWD_PARAMS, i64 N, float scale) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N * C) return;
    const i64 t = i / C, c = i % C;
    st(out, i, ld(table, (i64)ids[t] * C + c) * scale);
}

#define EMBEDDING_BWD_PARAMS float *dtable, const int *ids, const floatX *dout
#define EMBEDDING_BWD_ARGS dtable, ids, dout
template <int C>
__device__ __forceinline__ void embedding_bwd(EMBEDDING_BWD_PARAMS, i64 N, float scale) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (i64 t = 0; t < N; t++) dtable[(i64)ids[t] * C + c] += ld(dout, t * C + c) * scale;
}
