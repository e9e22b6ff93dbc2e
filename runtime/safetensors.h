/* safetensors.h - Hugging Face safetensors in (mmap, no copy) and out (streamed), sharded or not.
 *
 * The format (huggingface/safetensors, and its Rust reader is what we follow on every edge):
 *
 *     bytes 0..8      N, little-endian u64: the header's length; N <= 100,000,000
 *     bytes 8..8+N    the header: UTF-8 JSON object, starting with '{', may end in spaces
 *                     {"__metadata__": {"format": "pt", ...},       string -> string, optional
 *                      "NAME": {"dtype": "BF16", "shape": [V, C], "data_offsets": [BEGIN, END]},
 *                      ...}
 *     bytes 8+N..     the data region: each tensor's bytes at [BEGIN, END) relative to 8+N,
 *                     little-endian, row-major. END - BEGIN = numel * dtype size exactly; the
 *                     tensors, sorted by offset, tile the region with no gap or overlap, and
 *                     the last END is the end of the file.
 *
 * A sharded checkpoint is model-0000K-of-0000N.safetensors plus model.safetensors.index.json:
 *     {"metadata": {"total_size": BYTES, ...}, "weight_map": {"NAME": "model-00001-of-00002.safetensors"}}
 *
 * Reading maps each file read-only and hands out pointers into the map: nothing is copied, so
 * a 16 GB checkpoint costs page cache, not heap. Pointers are aligned to their dtype when the
 * writer sorted by dtype size (ours and HF's do); st_read_f32 works either way.
 *
 * Writing streams: the caller describes each tensor and supplies its bytes by pointer or by a
 * callback asked for one chunk at a time, so a model is never held twice in memory.
 *
 * Errors are tier (a): "FILE: tensor NAME: what is wrong" in err, never a crash, whatever the
 * bytes (tests/fuzz/fuzz_safetensors.c).
 */
#ifndef LLFC_SAFETENSORS_H
#define LLFC_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define ST_MAX_HEADER 100000000u /* the Rust reader's MAX_HEADER_SIZE */
#define ST_MAX_DIMS 8
#define ST_DEFAULT_SHARD_BYTES 5000000000ull /* 5 GB, huggingface_hub's default */

/* Every dtype the format defines. llfc computes on F32, F16 and BF16 only; the others are
 * recognised (so their sizes are validated and the message can name them) and rejected. */
typedef enum {
    ST_F32, ST_F16, ST_BF16, /* supported */
    ST_F64, ST_C64, ST_I64, ST_U64, ST_I32, ST_U32, ST_I16, ST_U16, ST_I8, ST_U8, ST_BOOL,
    ST_F8_E5M2, ST_F8_E4M3, ST_F8_E8M0, ST_F8_E4M3FNUZ, ST_F8_E5M2FNUZ,
    ST_F6_E2M3, ST_F6_E3M2, ST_F4, /* sub-byte: numel * bits must fill whole bytes */
    ST_DTYPE_COUNT
} StDtype;

const char *st_dtype_name(StDtype d); /* "F32", "BF16", ... */
size_t st_dtype_bits(StDtype d);      /* 32, 16, ..., 4 for F4 */
bool st_dtype_supported(StDtype d);   /* F32, F16, BF16 */

typedef struct {
    const char *name;           /* NUL-terminated, owned by the StModel */
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data;           /* into the file's map, nbytes long; never written */
    size_t nbytes;
    int file;                   /* index into StModel.files */
} StTensor;

typedef struct {
    char *path;
    const uint8_t *map;         /* the whole file, read-only */
    size_t size;
} StFile;

typedef struct {
    StTensor *tensors;          /* sorted by name */
    size_t n_tensors;
    StFile *files;
    size_t n_files;
    char **meta_keys, **meta_values; /* the first file's __metadata__ */
    size_t n_meta;
} StModel;

/* Open a checkpoint: a directory (model.safetensors, else model.safetensors.index.json and
 * its shards) or one .safetensors file. Every file is validated in full (header, dtypes,
 * offsets); a tensor with an unsupported dtype is an error. NULL with err on failure. */
StModel *st_open(const char *path, char *err, size_t errlen);
void st_close(StModel *m);

/* Parse and validate one file's bytes (used by st_open and by the fuzzer). Tensors point into
 * `bytes`; names are copied. `name` is used in messages. */
StModel *st_parse(const uint8_t *bytes, size_t size, const char *name, char *err, size_t errlen);

const StTensor *st_find(const StModel *m, const char *name);

/* Check every tensor against the spec: a missing tensor, an unexpected one, or a wrong shape is
 * an error naming the file and the tensor. Tied checkpoints may still carry lm_head.weight (some
 * exporters write it): it is accepted when its shape is (V, C). Rotary inv_freq buffers that old
 * exporters saved are ignored, as transformers ignores them. */
bool st_check_spec(const StModel *m, const ModelSpec *spec, char *err, size_t errlen);

/* Element i of a tensor as float (F32/F16/BF16; unaligned-safe). */
float st_get_f32(const StTensor *t, int64_t i);
/* The whole tensor as float into out (numel floats). */
void st_read_f32(const StTensor *t, float *out);

/* Conversions (round to nearest even), exposed for writers and kernels' tests. */
uint16_t st_f32_to_bf16(float f);
uint16_t st_f32_to_f16(float f);
float st_bf16_to_f32(uint16_t h);
float st_f16_to_f32(uint16_t h);

// --- writing

/* Fill buf with `len` bytes of tensor `t`'s data starting at byte `offset` (< nbytes). Called
 * in order, chunk by chunk. Return false (with err) to abort the write. */
typedef bool (*StProduce)(void *ctx, size_t tensor_index, uint64_t offset, void *buf, size_t len,
                          char *err, size_t errlen);

typedef struct {
    const char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;           /* the bytes, or NULL to ask `produce` */
} StWriteTensor;

typedef struct {
    const char *dir;            /* output directory (must exist) */
    const char *base;           /* "model": model.safetensors or model-0000K-of-0000N.safetensors */
    uint64_t max_shard_bytes;   /* 0 = ST_DEFAULT_SHARD_BYTES */
    const char *const *meta;    /* __metadata__ as key, value, key, value, ..., NULL; NULL =
                                   {"format": "pt"}, which transformers requires */
    StProduce produce;
    void *ctx;
} StWriteOptions;

/* Write tensors[0..n) as one file, or as shards plus BASE.safetensors.index.json when they
 * exceed max_shard_bytes (split as huggingface_hub does: in order, a new shard when the next
 * tensor would overflow the current one; a tensor bigger than the limit gets its own). Within a
 * file tensors are laid out by dtype size, largest first, then in the given order, so every
 * tensor is aligned to its dtype. Each file is written to NAME.tmp and renamed when complete.
 * *n_files_out (if not NULL) gets the number of .safetensors files written. */
bool st_write(const StWriteTensor *tensors, size_t n, const StWriteOptions *opt,
              size_t *n_files_out, char *err, size_t errlen);

#endif
