/* encode.h - aligned examples (dataset.h) -> input_ids and labels, exactly as LLaMA-Factory
 * 0.9.5 makes them (data/processor/, data/template.py; checked by tests/unit/test_encode.c
 * against LF's own output, tests/parity/gen_encode_fixtures.py).
 *
 * Pipeline for one example: the chat template (lua/llfc/template.lua, in a sandboxed Lua state)
 * turns the conversation into pieces; each piece becomes token ids (runtime/tokenizer.h); the
 * stage's rules cut the prompt and response to cutoff_len and write the labels:
 *
 *   stage  LF processor                      row                                    parts
 *   sft    SupervisedDatasetProcessor        input_ids, labels (-100 where masked)  1
 *   sft    PackedSupervisedDatasetProcessor  packing: rows of cutoff_len tokens     1
 *          (packing / neat_packing)          holding whole examples (greedy knapsack)
 *   pt     PretrainDatasetProcessor          text + eos; packing: concatenated and  1
 *                                            cut into blocks (labels = input_ids)
 *   rm,dpo PairwiseDatasetProcessor          chosen, rejected                       2
 *   kto    FeedbackDatasetProcessor          the example, its KL partner            2
 *
 * What LF does per batch of preprocessing_batch_size (1000) examples is done per batch here
 * too (packing, pt blocks, KTO's KL partners), so the rows are LF's with one preprocessing
 * worker, whatever the number of threads here. Examples LF drops ("Dropped invalid example",
 * "Dropped lengthy example") are dropped and counted by reason; cut examples are counted.
 *
 *     Encoder *e = enc_new(&opts, tok, tok_dir, lib, n_lib, &tpl, err, sizeof err);
 *     EncodedSet set;
 *     if (!e || !enc_run(e, examples, n, &set, err, sizeof err)) { fprintf(stderr, "%s\n", err); ... }
 *     // row r, part p: set.ids[set.off[r * set.n_parts + p] .. set.off[r * set.n_parts + p + 1])
 *     enc_set_free(&set); enc_free(e);
 */
#ifndef LLFC_ENCODE_H
#define LLFC_ENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "inputs.h"
#include "recipe.h"
#include "tokenizer.h"

#define ENC_IGNORE (-100) /* LF's IGNORE_INDEX: a label that is not learned */
#define ENC_BATCH 1000    /* LF's preprocessing_batch_size default */

typedef enum { ENC_SFT, ENC_PT, ENC_PAIRWISE, ENC_KTO } EncStage;

typedef struct {
    EncStage stage;
    /* LF's data_args.cutoff_len as its DataArguments.__post_init__ leaves it: one less than the
     * recipe's when packing (or neat_packing) is set explicitly (enc_options_from_recipe does
     * this). Packed sft rows are cutoff_len + 1 tokens long, as in LF. */
    int64_t cutoff_len;
    bool packing, neat_packing;
    bool train_on_prompt, mask_history;
    int enable_thinking;        /* 1, 0, or -1 for null (Python None) */
    bool preserve_thinking;     /* LF's data_args.preserve_thinking (no recipe key yet) */
    const char *template_name;  /* "llama3": pt appends <|end_of_text|>, as LF does */
    const char *tool_format;    /* NULL: the template's own */
    const char *default_system; /* NULL: the template's own */
    const char *date;           /* the date the llama3 tool prompt names ("26 Jul 2024"); NULL: today */
    int n_threads;              /* 0: all cores */
    size_t batch_size;          /* 0: ENC_BATCH */
} EncodeOptions;

/* The options a recipe gives (stage, cutoff_len with LF's packing rule, packing null -> on for
 * pt, template switches, preprocessing_num_workers -> n_threads). */
void enc_options_from_recipe(const Recipe *r, EncodeOptions *o);

// --- results

typedef enum {
    ENC_ROWS_SFT,      /* one example per row */
    ENC_ROWS_PACKED,   /* sft packing: whole examples side by side, padded to cutoff_len + 1 */
    ENC_ROWS_PT,       /* pre-training: one text (truncated) or one block per row */
    ENC_ROWS_PAIRWISE, /* parts: chosen, rejected */
    ENC_ROWS_KTO,      /* parts: the example, its KL partner (LF's kl_input_ids); + kto_tag */
} EncRowKind;

typedef enum {
    ENC_DROP_NONE,
    ENC_DROP_SHAPE,    /* LF "Dropped invalid example": prompt not odd, or too few responses */
    ENC_DROP_LENGTHY,  /* LF "Dropped lengthy example" (packing) */
    ENC_DROP_NO_TEXT,  /* pt: no prompt message to take the text from */
    ENC_DROP_KL,       /* kto: the KL partner (previous example of the batch) has no responses */
    ENC_DROP_COUNT
} EncDropReason;

typedef struct {
    uint64_t n_examples;              /* examples given */
    uint64_t n_rows;                  /* rows made */
    uint64_t dropped[ENC_DROP_COUNT]; /* examples dropped, by reason */
    uint64_t first_dropped;           /* index of the first dropped example; UINT64_MAX if none */
    uint64_t truncated;               /* examples cut to fit cutoff_len */
    uint64_t pt_tail_tokens;          /* pt packing: tokens of each batch's tail, too few for a block */
    uint64_t kto_desirable, kto_undesirable;
} EncodeStats;

typedef struct {
    EncRowKind kind;
    int n_parts;       /* sequences per row: 1, or 2 (pairwise, kto) */
    bool neat;         /* packed rows keep sub-sequences apart (neat_packing) */
    uint64_t n_rows, n_tokens, n_seqs;
    uint64_t *off;     /* (n_rows * n_parts + 1) where each part starts in ids / labels */
    int32_t *ids;      /* (n_tokens) */
    int32_t *labels;   /* (n_tokens) ENC_IGNORE where not learned; pt: = ids */
    uint64_t *src;     /* (n_rows) the example a row came from (packed / pt blocks: its first) */
    uint8_t *kto_tag;  /* (n_rows) kto: 1 desirable, 0 undesirable; else NULL */
    uint64_t *row_seq; /* (n_rows + 1) packed: row r holds seq_len[row_seq[r] .. row_seq[r + 1]) */
    uint32_t *seq_len; /* (n_seqs) packed: lengths of the examples in each row; padding follows */
    EncodeStats stats;
    void *map;         /* set when the arrays live in a mapped token cache (tokcache.h) */
    size_t map_len;
} EncodedSet;

void enc_set_free(EncodedSet *s);

/* Row r, part p: its tokens are ids[start .. start + len). */
static inline uint64_t enc_part_start(const EncodedSet *s, uint64_t r, int p) {
    return s->off[r * (uint64_t)s->n_parts + (uint64_t)p];
}
static inline uint64_t enc_part_len(const EncodedSet *s, uint64_t r, int p) {
    return s->off[r * (uint64_t)s->n_parts + (uint64_t)p + 1] - enc_part_start(s, r, p);
}

/* LF's attention_mask of a row (part 0): packed rows give 1..k per sub-sequence with neat
 * packing (0 on padding) or 1 everywhere, as PackedSupervisedDatasetProcessor writes them;
 * other rows 1 everywhere. out has enc_part_len(s, r, 0) entries. */
void enc_row_attention_mask(const EncodedSet *s, uint64_t r, int32_t *out);
/* LF's position_ids of a packed row: 0.. per sub-sequence, 0 on padding; else 0..len-1. */
void enc_row_position_ids(const EncodedSet *s, uint64_t r, int32_t *out);

const char *enc_drop_reason_name(EncDropReason r);
/* One line for the log: "encoded 999 examples -> 999 rows (12345 tokens); dropped ...". */
void enc_stats_summary(const EncodedSet *s, StrBuf *out);

// --- the encoder

typedef struct Encoder Encoder;

/* lib: the engine's Lua sources ("lua/llfc/json.lua", "lua/llfc/tools.lua",
 * "lua/llfc/template.lua"); tpl: the template file's source. tok_dir: the tokenizer's folder,
 * for tokenizer_config.json (the eos / bos text and tokenizer class, as transformers 4.5x reads
 * them) and tokenizer.json; NULL uses what tok knows. The template is checked here; errors
 * name it.
 * LF's fix_special_tokens is mirrored exactly: the template's eos and stop words are (re-)added
 * as special tokens the way transformers' add_special_tokens does it (default flags; a word the
 * vocabulary lacks gets the next id, so ids may reach tok_vocab_size(tok) and beyond: the model
 * then needs resize_vocab, as LF warns). The encoder keeps its own copy of the tokenizer when
 * that changes anything; notes about it go to *notes when notes != NULL. */
Encoder *enc_new(const EncodeOptions *o, const Tokenizer *tok, const char *tok_dir, const LuaSource *lib,
                 size_t n_lib, const LuaSource *tpl, StrBuf *notes, char *err, size_t errlen);
void enc_free(Encoder *e);

/* Encode n examples into *out (which the caller frees with enc_set_free). False with err
 * "FILE:LINE: record N: what" when the template refuses an example (LF raises there too). */
bool enc_run(Encoder *e, const DataExample *ex, size_t n, EncodedSet *out, char *err, size_t errlen);

/* The tokenizer's ids after the template's fixes (LF's fix_special_tokens): eos (replaced by
 * the first stop word when the template says so), pad (the eos when the tokenizer has none),
 * bos (-1 if none). */
int32_t enc_eos_id(const Encoder *e);
int32_t enc_pad_id(const Encoder *e);
int32_t enc_bos_id(const Encoder *e);
/* One past the largest id the encoder can produce (added special tokens included): rows the
 * embedding needs. */
size_t enc_id_limit(const Encoder *e);
/* Everything the tokens depend on besides the data and the tokenizer files, as text for the
 * token cache key (tokcache.h): the options, the template and engine sources, the tool formats
 * as resolved (and the llama3 tool prompt's date when it is used), the special ids. */
void enc_key_text(const Encoder *e, StrBuf *out);

#endif
