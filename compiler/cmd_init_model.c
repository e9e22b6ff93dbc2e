/* cmd_init_model.c - `llfc init-model`: flags -> ModelSpec -> config files + streamed weights.
 *
 * The story: parse flags; build the spec from the family's transformers defaults; take token
 * ids (and check the vocabulary fits) from --tokenizer; write config.json and
 * generation_config.json; stream every tensor through st_write, generating each 4 MB chunk
 * from Philox as it is asked for; copy the tokenizer files. See cmd_init_model.h.
 */
#include "cmd_init_model.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "model.h"
#include "rng.h"
#include "safetensors.h"
#include "util.h"

static const char *USAGE =
    "usage: llfc init-model --family F --hidden H --layers L --heads N --intermediate I --vocab V\n"
    "                       [--kv-heads K] [--head-dim D] [--tokenizer DIR] [--dtype bf16|f32]\n"
    "                       [--seed S] [--max-positions P] [--tie-embeddings true|false]\n"
    "                       [--max-shard-size 5GB] [--bias-std B] [--no-weights] -o DIR\n"
    "\n"
    "Writes a Hugging Face model folder with seeded random weights (N(0, 0.02), norms 1) that\n"
    "transformers loads: config.json, generation_config.json, model.safetensors (sharded past\n"
    "--max-shard-size, default 5GB) and the tokenizer files of --tokenizer DIR.\n"
    "F is one of: %s. K defaults to N, D to H/N, S to 0. Biases (qwen2's q/k/v) are 0, as\n"
    "Hugging Face initializes them, or N(0, B) with --bias-std B (tests that must see them).\n"
    "--no-weights writes everything but the safetensors: enough to compile a trainer (llfc reads\n"
    "only config.json), and the same flags without it later make the weights where it runs.\n";

// --- flags

typedef struct {
    const char *family, *out, *tokenizer, *dtype;
    int64_t hidden, layers, heads, kv_heads, intermediate, vocab, head_dim, max_positions;
    uint64_t seed, max_shard_bytes;
    double bias_std; /* 0: biases 0 */
    int tie; /* -1 = the family's default */
    bool no_weights; /* config and tokenizer files only */
} Flags;

static int usage(const char *fmt, ...) PRINTF_LIKE(1, 2);
static int usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "llfc init-model: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n");
    fprintf(stderr, USAGE, model_supported_types());
    return 2;
}

static bool parse_count(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 1) return false;
    *out = v;
    return true;
}

/* "5GB", "500MB", "100KB" (powers of 1000, as huggingface_hub), "2GiB", or plain bytes. */
static bool parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0)) return false;
    static const struct { const char *unit; double scale; } units[] = {
        {"", 1}, {"B", 1}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
        {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].unit) == 0 && v * units[i].scale < 1.8e19) {
            *out = (uint64_t)(v * units[i].scale);
            return *out > 0;
        }
    return false;
}

static int parse_flags(int argc, char **argv, Flags *f) {
    *f = (Flags){.dtype = "bf16", .tie = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(USAGE, model_supported_types());
            exit(0);
        }
        if (a[0] != '-') return usage("unexpected argument '%s'", a);
        if (!strcmp(a, "--no-weights")) { // the only flag without a value
            f->no_weights = true;
            continue;
        }
        if (i + 1 >= argc) return usage("%s needs a value", a);
        const char *v = argv[++i];
        struct { const char *name; int64_t *dst; } counts[] = {
            {"--hidden", &f->hidden},         {"--layers", &f->layers},
            {"--heads", &f->heads},           {"--kv-heads", &f->kv_heads},
            {"--intermediate", &f->intermediate}, {"--vocab", &f->vocab},
            {"--head-dim", &f->head_dim},     {"--max-positions", &f->max_positions},
        };
        bool done = false;
        for (size_t k = 0; k < sizeof counts / sizeof counts[0] && !done; k++)
            if (!strcmp(a, counts[k].name)) {
                if (!parse_count(v, counts[k].dst))
                    return usage("%s wants a positive integer, got '%s'", a, v);
                done = true;
            }
        if (done) continue;
        if (!strcmp(a, "--family")) f->family = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) f->out = v;
        else if (!strcmp(a, "--tokenizer")) f->tokenizer = v;
        else if (!strcmp(a, "--dtype")) {
            if (strcmp(v, "bf16") && strcmp(v, "f32")) return usage("--dtype is bf16 or f32, not '%s'", v);
            f->dtype = v;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            f->seed = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') return usage("--seed wants an integer >= 0, got '%s'", v);
        } else if (!strcmp(a, "--bias-std")) {
            char *end;
            errno = 0;
            f->bias_std = strtod(v, &end);
            if (errno || end == v || *end || !(f->bias_std >= 0 && f->bias_std <= 1e6))
                return usage("--bias-std wants a number >= 0, got '%s'", v);
        } else if (!strcmp(a, "--max-shard-size")) {
            if (!parse_size(v, &f->max_shard_bytes)) return usage("--max-shard-size wants a size like 5GB, got '%s'", v);
        } else if (!strcmp(a, "--tie-embeddings")) {
            if (strcmp(v, "true") && strcmp(v, "false")) return usage("--tie-embeddings is true or false, not '%s'", v);
            f->tie = !strcmp(v, "true");
        } else
            return usage("unknown option %s", a);
    }
    const char *missing = !f->family ? "--family" : !f->hidden ? "--hidden" : !f->layers ? "--layers"
                        : !f->heads ? "--heads" : !f->intermediate ? "--intermediate"
                        : !f->vocab ? "--vocab" : !f->out ? "-o DIR" : NULL;
    if (missing) return usage("%s is required", missing);
    if (!f->kv_heads) f->kv_heads = f->heads;
    return 0;
}

// --- tokenizer: ids that must fit the vocabulary, and the special tokens' ids

/* Largest id in tokenizer.json (model.vocab and added_tokens); -1 if unknown. */
static int64_t tokenizer_max_id(const Json *tok) {
    int64_t max = -1, id;
    const Json *vocab = json_get(json_get(tok, "model"), "vocab");
    if (vocab && vocab->type == JSON_OBJECT)
        for (size_t i = 0; i < vocab->obj.n; i++)
            if (json_as_int(vocab->obj.vals[i], &id) && id > max) max = id;
    if (vocab && vocab->type == JSON_ARRAY) max = (int64_t)vocab->arr.n - 1; // Unigram
    const Json *added = json_get(tok, "added_tokens");
    for (size_t i = 0; added && added->type == JSON_ARRAY && i < added->arr.n; i++)
        if (json_as_int(json_get(added->arr.items[i], "id"), &id) && id > max) max = id;
    return max;
}

/* The id of a token's text: added_tokens first (where special tokens live), then the vocab. */
static int64_t token_id(const Json *tok, const char *content) {
    int64_t id;
    const Json *added = json_get(tok, "added_tokens");
    for (size_t i = 0; added && added->type == JSON_ARRAY && i < added->arr.n; i++) {
        const char *c = json_as_str(json_get(added->arr.items[i], "content"));
        if (c && !strcmp(c, content) && json_as_int(json_get(added->arr.items[i], "id"), &id))
            return id;
    }
    const Json *vocab = json_get(json_get(tok, "model"), "vocab");
    if (vocab && vocab->type == JSON_OBJECT && json_as_int(json_get(vocab, content), &id)) return id;
    for (size_t i = 0; vocab && vocab->type == JSON_ARRAY && i < vocab->arr.n; i++) {
        const char *piece = json_as_str(json_at(vocab->arr.items[i], 0));
        if (piece && !strcmp(piece, content)) return (int64_t)i;
    }
    return -1;
}

/* tokenizer_config.json's "bos_token": "<s>" or {"content": "<s>", ...} or null. */
static const char *special_token(const Json *cfg, const char *key) {
    const Json *v = json_get(cfg, key);
    if (v && v->type == JSON_OBJECT) v = json_get(v, "content");
    return json_as_str(v);
}

/* The id of tokenizer_config's KEY: the token's id, -1 if it says null, unchanged if it does
 * not say or names a token the tokenizer lacks. */
static void apply_special(const Json *cfg, const Json *tok, const char *key, int64_t *id) {
    const Json *v = json_get(cfg, key);
    if (v && v->type == JSON_NULL) {
        *id = -1;
        return;
    }
    const char *content = special_token(cfg, key);
    int64_t found = content ? token_id(tok, content) : -1;
    if (found >= 0) *id = found;
}

static JsonDoc *read_json(const char *dir, const char *name, char *err, size_t errlen) {
    char *path = util_path_join(dir, name);
    size_t len;
    char *text = util_is_file(path) ? util_read_file(path, &len, err, errlen) : NULL;
    JsonDoc *doc = text ? json_parse(text, len, path, err, errlen) : NULL;
    free(text);
    free(path);
    return doc;
}

static bool apply_tokenizer(ModelSpec *m, const char *dir, char *err, size_t errlen) {
    if (!util_is_dir(dir)) return errf(err, errlen, "%s: --tokenizer wants a folder", dir);
    char *tj = util_path_join(dir, "tokenizer.json");
    bool have_json = util_is_file(tj);
    free(tj);
    if (!have_json) return true; // a SentencePiece-only folder: copied as is, nothing to check
    JsonDoc *tok = read_json(dir, "tokenizer.json", err, errlen);
    if (!tok) return false;
    int64_t max = tokenizer_max_id(json_root(tok));
    bool ok = true;
    if (max >= m->V)
        ok = errf(err, errlen, "%s/tokenizer.json has token ids up to %lld but --vocab is %lld; "
                  "use --vocab %lld or more", dir, (long long)max, (long long)m->V,
                  (long long)max + 1);
    JsonDoc *cfg = ok ? read_json(dir, "tokenizer_config.json", err, errlen) : NULL;
    if (cfg) {
        const Json *c = json_root(cfg), *t = json_root(tok);
        apply_special(c, t, "bos_token", &m->bos_id);
        apply_special(c, t, "pad_token", &m->pad_id);
        int64_t eos = m->n_eos ? m->eos_ids[0] : -1;
        apply_special(c, t, "eos_token", &eos);
        m->n_eos = eos >= 0; // one eos: the tokenizer's
        if (eos >= 0) m->eos_ids[0] = eos;
        json_free(cfg);
    }
    json_free(tok);
    return ok;
}

/* Every file a Hugging Face tokenizer folder may hold; those present are copied. */
static const char *TOKENIZER_FILES[] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
    NULL,
};

static bool copy_tokenizer(const char *from, const char *to, char *err, size_t errlen) {
    int copied = 0;
    for (const char **name = TOKENIZER_FILES; *name; name++) {
        char *src = util_path_join(from, *name), *dst = util_path_join(to, *name);
        bool ok = true;
        if (util_is_file(src)) {
            size_t len;
            char *data = util_read_file(src, &len, err, errlen);
            ok = data && util_write_file_atomic(dst, data, len, 0644, err, errlen);
            free(data);
            copied++;
        }
        free(src), free(dst);
        if (!ok) return false;
    }
    if (!copied)
        return errf(err, errlen, "%s: no tokenizer files (tokenizer.json, tokenizer.model, ...)", from);
    return true;
}

// --- weights, generated as st_write asks for them

typedef struct {
    const ModelTensor *tensors; /* model_tensors(), HF order: the tensor number is the stream */
    uint64_t seed;
    float std, norm_value, bias_std;
    StDtype dtype;
    size_t threads;
} InitCtx;

/* Values of elements [first, first + n) of tensor i, as float. */
static void init_values(const InitCtx *c, size_t i, uint64_t first, float *out, size_t n) {
    const ModelTensor *t = &c->tensors[i];
    bool is_bias = t->ndim == 1 && !t->is_norm;
    if (t->is_norm || (is_bias && c->bias_std == 0)) {
        float v = t->is_norm ? c->norm_value : 0.0f;
        for (size_t k = 0; k < n; k++) out[k] = v;
        return;
    }
    rng_fill_normal(out, n, c->seed, rng_purpose(RNG_INIT_WEIGHTS, (uint32_t)i), first, is_bias ? c->bias_std : c->std);
}

/* Elements [first, first + n) of tensor i in the output dtype, into dst. */
static void fill_elements(const InitCtx *c, size_t i, uint64_t first, void *dst, size_t n) {
    if (c->dtype == ST_F32) {
        init_values(c, i, first, dst, n);
        return;
    }
    float tmp[4096];
    uint16_t *out = dst;
    for (size_t k = 0; k < n; k += 4096) {
        size_t m = n - k < 4096 ? n - k : 4096;
        init_values(c, i, first + k, tmp, m);
        for (size_t j = 0; j < m; j++) out[k + j] = st_f32_to_bf16(tmp[j]);
    }
}

/* One thread's share of a chunk. Every value is a pure function of (seed, tensor, element),
 * so how the chunk is split cannot change a single bit of the file. */
typedef struct {
    const InitCtx *c;
    size_t tensor, n;
    uint64_t first;
    void *dst;
} Share;

static void *fill_share(void *arg) {
    Share *s = arg;
    fill_elements(s->c, s->tensor, s->first, s->dst, s->n);
    return NULL;
}

#define MAX_THREADS 32
#define MIN_SHARE 65536 /* elements; below this a thread costs more than it saves */

/* st_write's producer: Box-Muller is ~40 ns a value, so an 8B model is minutes on one core;
 * the chunk is split over the machine's cores. */
static bool produce(void *vctx, size_t i, uint64_t offset, void *buf, size_t len, char *err,
                    size_t errlen) {
    (void)err, (void)errlen;
    const InitCtx *c = vctx;
    size_t es = c->dtype == ST_F32 ? 4 : 2, n = len / es;
    size_t t = c->threads < n / MIN_SHARE ? c->threads : n / MIN_SHARE;
    if (t <= 1) {
        fill_elements(c, i, offset / es, buf, n);
        return true;
    }
    Share share[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    size_t per = (n + t - 1) / t, started = 0;
    for (size_t k = 0; k < t; k++) {
        size_t from = k * per, count = from < n ? (n - from < per ? n - from : per) : 0;
        share[k] = (Share){c, i, count, offset / es + from, (char *)buf + from * es};
    }
    for (size_t k = 1; k < t; k++) {
        if (pthread_create(&tid[k], NULL, fill_share, &share[k]) == 0) started |= (size_t)1 << k;
        else fill_share(&share[k]); // no thread to be had: do it here
    }
    fill_share(&share[0]);
    for (size_t k = 1; k < t; k++)
        if (started & ((size_t)1 << k)) pthread_join(tid[k], NULL);
    return true;
}

static size_t cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (size_t)n;
}

static bool write_weights(const ModelSpec *m, const Flags *f, size_t *n_files, char *err,
                          size_t errlen) {
    size_t n;
    ModelTensor *mt = model_tensors(m, &n);
    InitCtx ctx = {.tensors = mt, .seed = f->seed, .std = (float)m->initializer_range,
                   .norm_value = (float)(1.0 - m->norm_offset), .bias_std = (float)f->bias_std,
                   .dtype = strcmp(f->dtype, "f32") ? ST_BF16 : ST_F32,
                   .threads = cpu_count()};
    StWriteTensor *wt = xcalloc(n, sizeof *wt);
    for (size_t i = 0; i < n; i++) {
        wt[i] = (StWriteTensor){.name = mt[i].name, .dtype = ctx.dtype, .ndim = mt[i].ndim};
        wt[i].shape[0] = mt[i].shape[0], wt[i].shape[1] = mt[i].shape[1];
    }
    StWriteOptions opt = {.dir = f->out, .max_shard_bytes = f->max_shard_bytes,
                          .produce = produce, .ctx = &ctx};
    bool ok = st_write(wt, n, &opt, n_files, err, errlen);
    free(wt);
    free(mt);
    return ok;
}

// --- the command

static bool write_json_file(const char *dir, const char *name, StrBuf *sb, char *err, size_t errlen) {
    char *path = util_path_join(dir, name);
    bool ok = util_write_file_atomic(path, sb->data, sb->len, 0644, err, errlen);
    free(path);
    sb_free(sb);
    return ok;
}

static bool build_spec(ModelSpec *m, const Flags *f, char *err, size_t errlen) {
    if (!model_init_defaults(m, f->family, f->vocab, f->hidden, f->layers, f->heads, f->kv_heads,
                             f->head_dim, f->intermediate, err, errlen))
        return false;
    m->dtype = strcmp(f->dtype, "f32") ? MODEL_DTYPE_BF16 : MODEL_DTYPE_F32;
    if (f->max_positions) m->max_positions = f->max_positions;
    if (f->tie >= 0) m->tie_word_embeddings = f->tie;
    if ((f->tokenizer && !apply_tokenizer(m, f->tokenizer, err, errlen)) ||
        !model_validate(m, err, errlen)) {
        model_free(m);
        return false;
    }
    return true;
}

int cmd_init_model(int argc, char **argv) {
    Flags f;
    int rc = parse_flags(argc, argv, &f);
    if (rc) return rc;
    char err[ERR_LEN];
    ModelSpec m;
    if (!build_spec(&m, &f, err, sizeof err)) {
        fprintf(stderr, "llfc init-model: %s\n", err);
        return 1;
    }
    if (mkdir(f.out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "llfc init-model: %s: cannot create: %s\n", f.out, strerror(errno));
        model_free(&m);
        return 1;
    }
    StrBuf config = {0}, gen = {0};
    model_write_config(&m, &config);
    model_write_generation_config(&m, &gen);
    size_t n_files = 0;
    bool ok = write_json_file(f.out, "config.json", &config, err, sizeof err) &&
              write_json_file(f.out, "generation_config.json", &gen, err, sizeof err) &&
              (f.no_weights || write_weights(&m, &f, &n_files, err, sizeof err)) &&
              (!f.tokenizer || copy_tokenizer(f.tokenizer, f.out, err, sizeof err));
    sb_free(&config), sb_free(&gen);
    if (!ok) {
        fprintf(stderr, "llfc init-model: %s\n", err);
        model_free(&m);
        return 1;
    }
    int64_t params = model_param_count(&m);
    double mb = (double)params * (strcmp(f.dtype, "f32") ? 2 : 4) / 1e6;
    if (f.no_weights)
        fprintf(stderr, "llfc: wrote %s: %s, %lld parameters, config and tokenizer only (--no-weights; "
                "the %.1f MB of %s weights are left out)\n", f.out, m.model_type, (long long)params, mb, f.dtype);
    else
        fprintf(stderr, "llfc: wrote %s: %s, %lld parameters, %.1f MB of %s in %zu safetensors file%s\n", f.out,
                m.model_type, (long long)params, mb, f.dtype, n_files, n_files == 1 ? "" : "s");
    model_free(&m);
    return 0;
}
