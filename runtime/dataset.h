/* dataset.h - datasets as LLaMA-Factory reads them: dataset_info.json, the files it names
 * (JSON, JSONL, CSV, TSV, TXT, folders of them), the alpaca / sharegpt / OpenAI-messages /
 * pretraining / pairwise / kto formats, mixing, max_samples, val_size, and bad records.
 *
 * The result is a list of DataExamples: LLaMA-Factory's "aligned" form (what its
 * converters in data/converter.py produce: _prompt, _response, _system, _tools), each one
 * knowing the file and record it came from so later stages can name it in errors.
 *
 * This header's DataExample / DataMessage types are the contract with the encoding stage
 * (encode.h); the loading API below them belongs to dataset.c.
 */
#ifndef LLFC_DATASET_H
#define LLFC_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DATA_ROLE_USER,        /* "user" (sharegpt "human") */
    DATA_ROLE_ASSISTANT,   /* "assistant" (sharegpt "gpt") */
    DATA_ROLE_FUNCTION,    /* a function call by the assistant (sharegpt "function_call") */
    DATA_ROLE_OBSERVATION, /* a tool result (sharegpt "observation") */
} DataRole;

typedef struct {
    DataRole role;
    char *content; /* UTF-8, NUL-terminated */
} DataMessage;

/* One example in LLaMA-Factory's aligned form.
 *   sft:      prompt = the conversation up to the last turn (odd length, user first),
 *             response = { the last assistant (or function) message }
 *   pt:       prompt = { {user, text} }, response empty (LF: _prompt[0].content is the text)
 *   rm / dpo: response = { chosen, rejected }
 *   kto:      response = { output, "" } when kto_tag is 1, { "", output } when it is 0
 * An example whose response is empty is kept (LF keeps it and the encoder drops it, with
 * a count). */
typedef struct {
    DataMessage *prompt;
    size_t n_prompt;
    DataMessage *response;
    size_t n_response;
    char *system; /* NULL when the record has none */
    char *tools;  /* the record's tools JSON text, NULL when none */
    int kto_tag;  /* -1 when the dataset has no kto_tag column, else 0 or 1 */
    const char *source; /* the file it came from (owned by the DataSet) */
    size_t record;      /* 0-based record index in that file (JSON array index or line - 1) */
    int line;           /* 1-based line in that file where the record starts, 0 if unknown */
    const char *dataset; /* the dataset's name in dataset_info.json (owned by the DataSet) */
} DataExample;

/* --- loading (dataset.c) ------------------------------------------------------------------
 *
 *     DataOptions opt;
 *     if (!data_options_from_recipe(r, &opt, err, sizeof err)) ...
 *     DataSet *ds = data_load(&opt, err, sizeof err);   // NULL: err says file:line and why
 *     size_t n; const DataExample *ex = data_train(ds, &n);
 *     data_report(ds, stderr);                          // read / kept / dropped / skipped
 *     data_free(ds); data_options_free(&opt);
 *
 * Order of work for each dataset (as LLaMA-Factory's loader.py, plus llfc's hook):
 *   dataset_info.json entry -> its files (a file, or a folder's files sorted by name) ->
 *   records (JSON array, JSON Lines, CSV, TSV, TXT) -> num_samples -> max_samples ->
 *   data_hook (Lua) -> converter (alpaca / sharegpt / openai) -> DataExamples.
 * Then the datasets mix (concat, interleave_under, interleave_over) and val_size splits off
 * the eval examples (or eval_dataset names them). Random choices are numpy's: default_rng(seed)
 * (SeedSequence + PCG64) for interleave and train_test_split, legacy np.random.seed(seed)
 * (MT19937) for num_samples, so the orders equal LLaMA-Factory's.
 */

#include <stdbool.h>
#include <stdio.h>

#include "recipe.h"

typedef enum { DATA_STAGE_PT, DATA_STAGE_SFT, DATA_STAGE_RM, DATA_STAGE_DPO, DATA_STAGE_KTO } DataStage;
typedef enum { DATA_MIX_CONCAT, DATA_MIX_INTERLEAVE_UNDER, DATA_MIX_INTERLEAVE_OVER } DataMix;

typedef struct {
    const char *const *datasets; /* names in dataset_dir/dataset_info.json */
    size_t n_datasets;
    const char *const *eval_datasets;
    size_t n_eval_datasets;
    const char *dataset_dir;
    DataStage stage;
    int64_t max_samples;            /* <= 0: all */
    double val_size;                /* 0: none; <= 1: a fraction; > 1: a count (LF's rule) */
    DataMix mix;
    const double *interleave_probs; /* NULL: cycle through the datasets */
    size_t n_interleave_probs;
    uint64_t seed;
    const char *data_hook;          /* a Lua file returning {transform = function(ex) ...}, or NULL */
    const char *hook_text;          /* or its text (a trainer's embedded copy); data_hook names it */
    size_t hook_len;
    bool skip_bad;                  /* data_on_error: skip (count bad records) instead of stop */
    int threads;                    /* 0: all cores */
    /* owned by data_options_from_recipe */
    double *probs_owned;
} DataOptions;

/* Why a record was skipped (data_on_error: skip) or why loading stopped. */
typedef enum {
    DATA_BAD_JSON,    /* malformed JSON (a JSON Lines line, or a record that is not an object) */
    DATA_BAD_CSV,     /* malformed CSV/TSV row (unterminated quote, wrong number of fields) */
    DATA_BAD_TEXT,    /* invalid UTF-8, or a NUL character in a text */
    DATA_BAD_COLUMN,  /* a column the format needs is missing in the record */
    DATA_BAD_TYPE,    /* a column or message field of the wrong JSON type */
    DATA_BAD_EMPTY,   /* an empty conversation */
    DATA_BAD_COUNT,   /* a conversation of the wrong length (odd for sft, even for ranking) */
    DATA_BAD_ROLE,    /* roles out of order or unknown */
    DATA_BAD_NKINDS
} DataBadKind;

typedef struct {
    size_t read;            /* records in the files (bad ones included) */
    size_t selected;        /* good records after num_samples / max_samples: what the hook sees */
    size_t kept;            /* examples produced */
    size_t dropped_by_hook; /* the hook returned nil */
    size_t skipped;         /* bad records skipped (data_on_error: skip) */
    size_t skipped_by[DATA_BAD_NKINDS];
} DataStats;

typedef struct DataSet DataSet;

/* The recipe's dataset keys as options; lists point into r (keep it alive). */
bool data_options_from_recipe(const Recipe *r, DataOptions *opt, char *err, size_t errlen);
void data_options_free(DataOptions *opt);
const char *data_stage_name(DataStage s);
const char *data_bad_name(DataBadKind k); /* "malformed JSON", ... */

DataSet *data_load(const DataOptions *opt, char *err, size_t errlen);
const DataExample *data_train(const DataSet *ds, size_t *n);
const DataExample *data_eval(const DataSet *ds, size_t *n);
/* Totals over every dataset loaded (train and eval). */
const DataStats *data_stats(const DataSet *ds);
/* One line per dataset and a total: read, kept, dropped by hook, skipped by reason; then the
 * train / eval sizes. */
void data_report(const DataSet *ds, FILE *f);
void data_free(DataSet *ds);

#endif
