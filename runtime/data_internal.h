/* data_internal.h - what the dataset stage's files share (not part of the API): numpy's
 * random streams, an arena for record trees built outside the JSON parser, the raw records
 * of one file, and the file readers. */
#ifndef LLFC_DATA_INTERNAL_H
#define LLFC_DATA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "json.h"
#include "util.h"

// --- numpy's random streams (data_numpy.c)

typedef unsigned __int128 u128;
typedef enum { NP_PCG64, NP_MT19937 } NpKind;

typedef struct {
    NpKind kind;
    u128 state, inc; /* PCG64 */
    bool has32;      /* PCG64's buffered upper half for 32-bit draws */
    uint32_t u32;
    uint32_t mt[624]; /* MT19937 */
    int mti;
} NpRng;

void np_rng_default(NpRng *g, uint64_t seed);  /* np.random.default_rng(seed) */
void np_rng_legacy(NpRng *g, uint32_t seed);   /* np.random.seed(seed) */
uint64_t np_next64(NpRng *g);
uint32_t np_next32(NpRng *g);
double np_random(NpRng *g);                       /* [0, 1), 53 bits */
uint64_t np_interval(NpRng *g, uint64_t max);     /* [0, max] */
void np_permutation(NpRng *g, size_t n, size_t *out);
void np_choice_p(NpRng *g, const double *p, size_t k, size_t size, size_t *out);

// --- arena: record trees built from CSV, TXT and Lua tables

typedef struct ArenaBlock ArenaBlock;
typedef struct {
    ArenaBlock *head;
} Arena;

void *arena_alloc(Arena *a, size_t n); /* zeroed, 16-byte aligned */
char *arena_strndup(Arena *a, const char *s, size_t n);
void arena_free(Arena *a);

Json *jv_new(Arena *a, JsonType t);
Json *jv_str(Arena *a, const char *s, size_t n);

// --- raw records of one file (data_read.c)

typedef struct {
    const Json *v; /* the record; an object unless the reader reported it bad */
    int line;      /* 1-based line where it starts */
    size_t index;  /* 0-based record index in its file */
} RawRecord;

typedef struct {
    DataBadKind kind;
    int line;
    size_t index;
    char *msg; /* "FILE:LINE: record N: reason" */
} BadRecord;

typedef struct {
    char *path;
    char *text;
    size_t len;
    JsonDoc **docs; /* every parse that records point into */
    size_t n_docs, cap_docs;
    Arena arena;
    RawRecord *recs;
    size_t n_recs, cap_recs;
    BadRecord *bad; /* records the reader could not read (skip mode keeps them all; stop: first) */
    size_t n_bad, cap_bad;
    char *fatal; /* a problem that stops loading in either mode (unreadable file, broken array) */
} DataFile;

typedef enum { DATA_FMT_JSON, DATA_FMT_CSV, DATA_FMT_TSV, DATA_FMT_TEXT } DataFileType;

/* Read and split one file into records. Problems go to f->bad / f->fatal; in stop mode
 * (skip_bad false) reading ends at the first bad record. */
void data_read_file(DataFile *f, DataFileType type, bool skip_bad);
void data_file_free(DataFile *f);
void data_file_bad(DataFile *f, DataBadKind kind, int line, size_t index, const char *fmt, ...)
    PRINTF_LIKE(5, 6);

/* Valid UTF-8 (no overlongs, no surrogates)? Returns the offset of the first bad byte or len. */
size_t data_utf8_check(const char *s, size_t len);

/* Python json.dumps(v, ensure_ascii=False) of a record value. */
void data_json_dumps(StrBuf *out, const Json *v);

// --- dataset_info.json entries (data_info.c)

typedef enum { FMT_ALPACA, FMT_SHAREGPT, FMT_OPENAI } DataFormatting;

/* Column and tag names; NULL means None (not used). */
#define DATA_COLUMNS(X) X(prompt) X(query) X(response) X(history) X(messages) X(system) X(tools) \
    X(images) X(videos) X(audios) X(chosen) X(rejected) X(kto_tag)
#define DATA_TAGS(X) X(role_tag) X(content_tag) X(user_tag) X(assistant_tag) X(observation_tag) \
    X(function_tag) X(system_tag)

typedef struct {
    const char *name; /* the dataset's name */
    const char *file_name;
    DataFormatting formatting;
    bool ranking;
    int64_t num_samples; /* -1: none */
    const Json *columns; /* the entry's "columns" object, NULL if none */
#define FIELD(n) const char *n;
    DATA_COLUMNS(FIELD) DATA_TAGS(FIELD)
#undef FIELD
} DataAttr;

/* The attributes of dataset `name` (an entry of the info object read from info_path). */
bool data_attr_parse(const Json *info, const char *name, const char *info_path, DataAttr *a, char *err,
                     size_t errlen);
/* Its files: file_name in dir, or the files of that folder sorted by name; all of one type. */
bool data_attr_files(const char *dir, const DataAttr *a, char ***out, size_t *n_out, DataFileType *type,
                     char *err, size_t errlen);
/* loader.py: ranking datasets for rm/dpo only (and kto_tag datasets for kto only). */
bool data_attr_check_stage(DataStage stage, const DataAttr *a, char *err, size_t errlen);
/* Every column the converter indexes exists in some record (LF: a KeyError). */
bool data_attr_check_columns(const DataAttr *a, const DataFile *files, size_t n_files, char *err,
                             size_t errlen);
/* "; did you mean 'x'?" into buf when one of names is close to s, else "". */
const char *data_did_you_mean(char *buf, size_t len, const char *s, const char *const *names, size_t n);

// --- the converter (data_convert.c)

/* One record into ex; false with the reason (kind, msg) for a bad record. */
bool data_convert(const DataAttr *a, const Json *rec, DataExample *ex, DataBadKind *kind, char *msg,
                  size_t msglen);
void data_example_free(DataExample *e);

// --- the Lua data hook (data_hook.c)

typedef struct LuaBox LuaBox;
typedef struct {
    char *src; /* NULL: no hook */
    size_t len;
    const char *name;
    char **dirs; /* folders the sandbox may read */
    size_t n_dirs;
    LuaBox **boxes; /* one sandbox per thread, made on first use */
    int n_boxes;
} DataHook;

bool data_hook_open(DataHook *h, const DataOptions *opt, int threads, char *err, size_t errlen);
/* *out: the record to convert (in ar when the hook changed it), NULL when the hook dropped it. */
bool data_hook_run(DataHook *h, int thread, const Json *rec, Arena *ar, const Json **out, char *err,
                   size_t errlen);
void data_hook_close(DataHook *h);

#endif
