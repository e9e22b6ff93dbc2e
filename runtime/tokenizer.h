/* tokenizer.h - Hugging Face `tokenizer.json` tokenizers in C, giving the ids of HF's Rust
 * `tokenizers` library (checked against it on ../shared/tokenizers: Qwen3, Llama 3/3.1,
 * DeepSeek V3, Gemma 3, Mistral, Llama 2, Phi-3).
 *
 * Supported (anything else is a load error naming the type and saying it is not supported yet):
 *   model           BPE (byte-level or SentencePiece-style: byte_fallback, fuse_unk, unk_token,
 *                   ignore_merges, continuing_subword_prefix, end_of_word_suffix; merges as
 *                   "a b" strings or [a, b] pairs). No dropout.
 *   normalizer      NFC NFD NFKC NFKD Lowercase Strip StripAccents Prepend Append Replace Sequence
 *   pre_tokenizer   Split ByteLevel Metaspace Digits Punctuation Whitespace WhitespaceSplit
 *                   BertPreTokenizer Sequence (Split/Replace regexes run on PCRE2, translated
 *                   from the Oniguruma dialect HF uses)
 *   post_processor  TemplateProcessing ByteLevel RobertaProcessing BertProcessing Sequence
 *   decoder         ByteLevel Metaspace Replace ByteFallback Fuse Strip WordPiece BPEDecoder
 *                   Sequence
 *   added_tokens    special and not, lstrip/rstrip/single_word/normalized, matched before the
 *                   model exactly as HF's AddedVocabulary does (leftmost-longest).
 * truncation/padding in tokenizer.json are read but not applied (as transformers does unless
 * a call asks for them); the data pipeline cuts and packs sequences itself.
 *
 * Threads: a loaded Tokenizer is read-only; any number of threads may encode with it at
 * once, each with its own TokScratch (working memory, including a cache of recent words).
 * After a few calls have grown the scratch and the output, encoding allocates nothing.
 *
 *     char err[ERR_LEN];
 *     Tokenizer *tok = tok_load("models/qwen3", err, sizeof err);
 *     if (!tok) { fprintf(stderr, "%s\n", err); exit(1); }
 *     TokScratch *scratch = tok_scratch_new();
 *     TokIds ids = {0};
 *     if (!tok_encode(tok, scratch, text, strlen(text), true, &ids, err, sizeof err)) ...
 *     // ids.ids[0 .. ids.len)
 *     tok_ids_free(&ids); tok_scratch_free(scratch); tok_free(tok);
 */
#ifndef LLFC_TOKENIZER_H
#define LLFC_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct Tokenizer Tokenizer;
typedef struct TokScratch TokScratch;

/* Token ids, grown as needed; the caller owns it and frees it with tok_ids_free. */
typedef struct {
    int32_t *ids;
    size_t len, cap;
} TokIds;

// --- loading

/* Read DIR/tokenizer.json and, if present, DIR/tokenizer_config.json. NULL with err set on
 * any problem ("PATH:LINE:COL: what; hint"). */
Tokenizer *tok_load(const char *dir, char *err, size_t errlen);
/* The same from the text of a tokenizer.json (no tokenizer_config.json); `name` is used in
 * messages. */
Tokenizer *tok_load_json(const char *json, size_t len, const char *name, char *err, size_t errlen);
void tok_free(Tokenizer *tok);

// --- encoding

TokScratch *tok_scratch_new(void);
void tok_scratch_free(TokScratch *scratch);
void tok_ids_free(TokIds *ids);

/* Token ids of `text` (UTF-8, len bytes) into out (replacing its contents), as HF's
 * Tokenizer.encode(text, add_special_tokens).ids. False with err set if text is not valid
 * UTF-8, or for a regex engine failure (e.g. its match limit on pathological input). */
bool tok_encode(const Tokenizer *tok, TokScratch *scratch, const char *text, size_t len,
                bool add_special_tokens, TokIds *out, char *err, size_t errlen);

// --- decoding

/* Text of ids into out (replacing its contents), as HF's Tokenizer.decode(ids,
 * skip_special_tokens). Ids that are not in the vocabulary are skipped, as HF does. */
bool tok_decode(const Tokenizer *tok, const int32_t *ids, size_t n, bool skip_special_tokens,
                StrBuf *out, char *err, size_t errlen);

// --- vocabulary

/* Id of a token string (added tokens first, then the model's vocabulary); -1 if none. */
int32_t tok_token_to_id(const Tokenizer *tok, const char *token, size_t len);
/* The string of an id (NUL-terminated, owned by tok) or NULL; *len gets its length. As HF, an
 * added token with normalized: true gives its normalized form (Llama 2's <s> is "\u2581<s>"). */
const char *tok_id_to_token(const Tokenizer *tok, int32_t id, size_t *len);
/* Number of distinct tokens, added ones included (HF get_vocab_size(with_added_tokens=True)). */
size_t tok_vocab_size(const Tokenizer *tok);
/* One past the largest id: the number of rows an embedding needs. */
size_t tok_id_limit(const Tokenizer *tok);
/* Whether decode(skip_special_tokens) drops id: its string is the content of a special added
 * token (HF compares strings, so a normalized special token's "\u2581<s>" is not dropped). */
bool tok_is_special(const Tokenizer *tok, int32_t id);

/* From tokenizer_config.json (bos_token, eos_token, pad_token, unk_token): the token's id, or
 * -1 when the config does not name one (or names one the vocabulary lacks). Without a config,
 * unk is the model's unk_token. */
int32_t tok_bos_id(const Tokenizer *tok);
int32_t tok_eos_id(const Tokenizer *tok);
int32_t tok_pad_id(const Tokenizer *tok);
int32_t tok_unk_id(const Tokenizer *tok);
/* tokenizer_config.json's add_bos_token / add_eos_token (false when absent). Informational:
 * tok_encode follows tokenizer.json's post_processor, as HF's Rust library does. */
bool tok_add_bos_token(const Tokenizer *tok);
bool tok_add_eos_token(const Tokenizer *tok);

#endif
