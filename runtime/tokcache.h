/* tokcache.h - the token cache: an EncodedSet (encode.h) written once, memory-mapped back on
 * later runs, reused only when everything the tokens depend on is unchanged.
 *
 * Recipe keys: tokenized_path (a folder; null: OUTPUT_DIR/tokenized) holds one file per split,
 * "train.llfctok" and "eval.llfctok"; overwrite_cache: true rebuilds it regardless. Unlike
 * LLaMA-Factory, which loads whatever tokenized_path holds, a cache here carries a key and is
 * rebuilt (with a log line saying why) when the key differs:
 *
 *   data       SHA-256 of the dataset files' bytes (and the data hook's), in order
 *   tokenizer  SHA-256 of tokenizer.json and tokenizer_config.json
 *   encoding   SHA-256 of the encoder's options, template and engine sources (enc_key_text)
 *              and the recipe keys that choose or split the examples
 *
 * File layout (little-endian; each array starts at a multiple of 8 bytes):
 *   header  "LLFCTOK1", u32 version, u32 kind, u32 n_parts, u32 neat, 3 x 32-byte keys,
 *           u64 n_rows, n_tokens, n_seqs, u64 stats[TOKCACHE_NSTATS], u64 file size
 *   arrays  off u64[n_rows * n_parts + 1], ids i32[n_tokens], labels i32[n_tokens],
 *           src u64[n_rows], kto_tag u8[n_rows] (kto), row_seq u64[n_rows + 1] and
 *           seq_len u32[n_seqs] (packed)
 * Written to PATH.tmp.PID, fsync'd, renamed: a killed run leaves the old cache or none. A file
 * that is truncated or inconsistent is reported and rebuilt, never trusted.
 *
 * In a trainer (files: dataset_info.json, the data files and the hook, as the loader read them):
 *
 *     TokCacheKey key;
 *     if (!tokcache_key_for(r, enc, model_dir, files, n_files, &key, err, sizeof err)) ...
 *     char *path = tokcache_path(r, "train");
 *     EncodedSet train;   // build() loads the data and runs enc_run
 *     if (!tokcache_get(path, R_BOOL(r, overwrite_cache), &key, build, ctx, &train, &log, err, sizeof err)) ...
 *     // log: "token cache out/tokenized/train.llfctok: used (...)" or "...: rebuilt (why)"
 */
#ifndef LLFC_TOKCACHE_H
#define LLFC_TOKCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "encode.h"
#include "recipe.h"
#include "sha256.h"
#include "util.h"

typedef struct {
    uint8_t data[32], tokenizer[32], encoding[32];
} TokCacheKey;

/* Building a key: feed each part with the functions below. */
typedef struct {
    Sha256 data, tokenizer, encoding;
} TokCacheKeyBuilder;

void tokcache_key_init(TokCacheKeyBuilder *b);
/* A dataset (or data hook) file's bytes, with its length. False with err if unreadable. */
bool tokcache_key_data_file(TokCacheKeyBuilder *b, const char *path, char *err, size_t errlen);
/* Or the examples themselves, as loaded (every message, system, tools, kto_tag): catches what
 * the hook, max_samples, mixing and the eval split did, at the price of loading first. */
void tokcache_key_examples(TokCacheKeyBuilder *b, const DataExample *ex, size_t n);
/* DIR/tokenizer.json and DIR/tokenizer_config.json (when present). */
bool tokcache_key_tokenizer(TokCacheKeyBuilder *b, const char *dir, char *err, size_t errlen);
/* The encoder (options, template, engine) and the recipe keys that pick, mix and split the
 * examples (dataset, eval_dataset, max_samples, val_size, mix_strategy, interleave_probs, the
 * seeds when val_size or interleaving use them, data_hook). r may be NULL. */
void tokcache_key_encoding(TokCacheKeyBuilder *b, const Encoder *e, const Recipe *r);
void tokcache_key_text(TokCacheKeyBuilder *b, const char *label, const char *text); /* anything else */
void tokcache_key_final(TokCacheKeyBuilder *b, TokCacheKey *key);

/* All of it for a trainer: data_files (dataset_info.json, each dataset file, the data hook; in
 * the loader's order), the tokenizer folder, the encoder and the recipe. */
bool tokcache_key_for(const Recipe *r, const Encoder *e, const char *tok_dir, const char *const *data_files,
                      size_t n_files, TokCacheKey *key, char *err, size_t errlen);

/* The cache file of a split ("train", "eval"): TOKENIZED_PATH/SPLIT.llfctok, or
 * OUTPUT_DIR/tokenized/SPLIT.llfctok when tokenized_path is null. malloc'd. */
char *tokcache_path(const Recipe *r, const char *split);

typedef enum {
    TOKCACHE_HIT,      /* mapped, key matches */
    TOKCACHE_MISSING,  /* no file */
    TOKCACHE_STALE,    /* a key differs; why says which */
    TOKCACHE_CORRUPT,  /* not a cache, another version, truncated or inconsistent */
} TokCacheStatus;

/* Map PATH into *out when its key equals key. Otherwise *out is untouched and why says why. */
TokCacheStatus tokcache_load(const char *path, const TokCacheKey *key, EncodedSet *out, char *why, size_t whylen);
/* Write s with key to PATH atomically (the folder is created). */
bool tokcache_save(const char *path, const TokCacheKey *key, const EncodedSet *s, char *err, size_t errlen);

/* The whole rule: with overwrite false, a matching cache is mapped; otherwise build(ctx, out)
 * runs and its result is saved. One line goes to log: "token cache PATH: used (...)" or
 * "token cache PATH: rebuilt (why)". False with err when build or the save fails. */
typedef bool (*TokCacheBuild)(void *ctx, EncodedSet *out, char *err, size_t errlen);
bool tokcache_get(const char *path, bool overwrite, const TokCacheKey *key, TokCacheBuild build, void *ctx,
                  EncodedSet *out, StrBuf *log, char *err, size_t errlen);

#endif
