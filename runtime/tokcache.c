/* tokcache.c - the token cache: key, atomic write, mmap read with checks (tokcache.h). */
#include "tokcache.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "LLFCTOK1"
#define VERSION 1u
#define NSTATS 16 /* u64 slots for EncodeStats (room to grow) */
#define HEADER_LEN (8 + 4 * 4 + 3 * 32 + 3 * 8 + NSTATS * 8 + 8)

// ---------------------------------------------------------------------------------------
// key

void tokcache_key_init(TokCacheKeyBuilder *b) {
    sha256_init(&b->data);
    sha256_init(&b->tokenizer);
    sha256_init(&b->encoding);
}

static void put_u64(Sha256 *s, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    sha256_update(s, b, 8);
}

/* length-prefixed, so "ab"+"c" and "a"+"bc" hash differently */
static void put_bytes(Sha256 *s, const void *p, size_t n) {
    put_u64(s, n);
    sha256_update(s, p, n);
}

static bool hash_file(Sha256 *s, const char *path, bool optional, char *err, size_t errlen) {
    if (optional && !util_is_file(path)) {
        put_u64(s, UINT64_MAX); /* absent */
        return true;
    }
    size_t len;
    char *text = util_read_file(path, &len, err, errlen);
    if (!text) return false;
    put_bytes(s, text, len);
    free(text);
    return true;
}

bool tokcache_key_data_file(TokCacheKeyBuilder *b, const char *path, char *err, size_t errlen) {
    return hash_file(&b->data, path, false, err, errlen);
}

static void put_str(Sha256 *s, const char *t) {
    if (!t) put_u64(s, UINT64_MAX); /* NULL differs from "" */
    else put_bytes(s, t, strlen(t));
}

void tokcache_key_examples(TokCacheKeyBuilder *b, const DataExample *ex, size_t n) {
    put_u64(&b->data, n);
    for (size_t i = 0; i < n; i++) {
        const DataExample *e = &ex[i];
        put_u64(&b->data, e->n_prompt);
        for (size_t k = 0; k < e->n_prompt; k++) put_u64(&b->data, e->prompt[k].role), put_str(&b->data, e->prompt[k].content);
        put_u64(&b->data, e->n_response);
        for (size_t k = 0; k < e->n_response; k++)
            put_u64(&b->data, e->response[k].role), put_str(&b->data, e->response[k].content);
        put_str(&b->data, e->system);
        put_str(&b->data, e->tools);
        put_u64(&b->data, (uint64_t)(int64_t)e->kto_tag);
    }
}

bool tokcache_key_tokenizer(TokCacheKeyBuilder *b, const char *dir, char *err, size_t errlen) {
    char *a = util_path_join(dir, "tokenizer.json"), *c = util_path_join(dir, "tokenizer_config.json");
    bool ok = hash_file(&b->tokenizer, a, false, err, errlen) && hash_file(&b->tokenizer, c, true, err, errlen);
    free(a);
    free(c);
    return ok;
}

void tokcache_key_text(TokCacheKeyBuilder *b, const char *label, const char *text) {
    put_bytes(&b->encoding, label, strlen(label));
    put_bytes(&b->encoding, text ? text : "", text ? strlen(text) : 0);
}

void tokcache_key_encoding(TokCacheKeyBuilder *b, const Encoder *e, const Recipe *r) {
    StrBuf t = {0};
    enc_key_text(e, &t);
    put_bytes(&b->encoding, t.data, t.len);
    sb_free(&t);
    if (!r) return;
    static const RecipeKeyId keys[] = {RK_dataset, RK_eval_dataset, RK_max_samples, RK_val_size, RK_mix_strategy,
                                       RK_interleave_probs, RK_data_hook};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        StrBuf v = {0};
        recipe_value_yaml(r, keys[i], &v);
        tokcache_key_text(b, recipe_keys[keys[i]].name, v.data);
        sb_free(&v);
    }
    /* the seeds choose examples only when the eval split or interleaving draws at random */
    if (R_FLOAT(r, val_size) > 0 || strcmp(R_STR(r, mix_strategy), "concat") != 0) {
        StrBuf v = {0};
        recipe_value_yaml(r, RK_seed, &v);
        sb_puts(&v, " ");
        recipe_value_yaml(r, RK_data_seed, &v);
        tokcache_key_text(b, "seed", v.data);
        sb_free(&v);
    }
}

void tokcache_key_final(TokCacheKeyBuilder *b, TokCacheKey *key) {
    sha256_final(&b->data, key->data);
    sha256_final(&b->tokenizer, key->tokenizer);
    sha256_final(&b->encoding, key->encoding);
}

bool tokcache_key_for(const Recipe *r, const Encoder *e, const char *tok_dir, const char *const *data_files,
                      size_t n_files, TokCacheKey *key, char *err, size_t errlen) {
    TokCacheKeyBuilder b;
    tokcache_key_init(&b);
    put_u64(&b.data, n_files);
    for (size_t i = 0; i < n_files; i++)
        if (!tokcache_key_data_file(&b, data_files[i], err, errlen)) return false;
    if (!tokcache_key_tokenizer(&b, tok_dir, err, errlen)) return false;
    tokcache_key_encoding(&b, e, r);
    tokcache_key_final(&b, key);
    return true;
}

char *tokcache_path(const Recipe *r, const char *split) {
    char *dir = R_NULL(r, tokenized_path) ? util_path_join(R_STR(r, output_dir), "tokenized")
                                          : xstrdup(R_STR(r, tokenized_path));
    char *name = xprintf("%s.llfctok", split);
    char *p = util_path_join(dir, name);
    free(dir);
    free(name);
    return p;
}

// ---------------------------------------------------------------------------------------
// layout

static void stats_to(const EncodeStats *st, uint64_t v[NSTATS]) {
    memset(v, 0, NSTATS * sizeof *v);
    size_t k = 0;
    v[k++] = st->n_examples;
    v[k++] = st->n_rows;
    for (int i = 0; i < ENC_DROP_COUNT; i++) v[k++] = st->dropped[i];
    v[k++] = st->first_dropped;
    v[k++] = st->truncated;
    v[k++] = st->pt_tail_tokens;
    v[k++] = st->kto_desirable;
    v[k++] = st->kto_undesirable;
}

static void stats_from(const uint64_t v[NSTATS], EncodeStats *st) {
    size_t k = 0;
    st->n_examples = v[k++];
    st->n_rows = v[k++];
    for (int i = 0; i < ENC_DROP_COUNT; i++) st->dropped[i] = v[k++];
    st->first_dropped = v[k++];
    st->truncated = v[k++];
    st->pt_tail_tokens = v[k++];
    st->kto_desirable = v[k++];
    st->kto_undesirable = v[k++];
}

static uint64_t pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

typedef struct { /* the arrays' sizes in bytes, in file order */
    uint64_t off, ids, labels, src, tag, row_seq, seq_len;
} Sizes;

static bool sizes_of(uint32_t kind, uint32_t n_parts, uint64_t n_rows, uint64_t n_tokens, uint64_t n_seqs, Sizes *z,
                     uint64_t *total) {
    /* refuse counts whose byte sizes would overflow (a hostile or damaged header) */
    if (n_parts < 1 || n_parts > 2 || n_rows > (UINT64_MAX >> 8) || n_tokens > (UINT64_MAX >> 8) ||
        n_seqs > (UINT64_MAX >> 8))
        return false;
    z->off = (n_rows * n_parts + 1) * 8;
    z->ids = pad8(n_tokens * 4);
    z->labels = pad8(n_tokens * 4);
    z->src = n_rows * 8;
    z->tag = kind == ENC_ROWS_KTO ? pad8(n_rows) : 0;
    z->row_seq = kind == ENC_ROWS_PACKED ? (n_rows + 1) * 8 : 0;
    z->seq_len = kind == ENC_ROWS_PACKED ? pad8(n_seqs * 4) : 0;
    *total = HEADER_LEN + z->off + z->ids + z->labels + z->src + z->tag + z->row_seq + z->seq_len;
    return true;
}

// ---------------------------------------------------------------------------------------
// write

typedef struct {
    FILE *f;
    bool ok;
} Out;

static void out_bytes(Out *o, const void *p, size_t n) {
    if (o->ok && n && fwrite(p, 1, n, o->f) != n) o->ok = false;
}
static void out_u32(Out *o, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    out_bytes(o, b, 4);
}
static void out_u64(Out *o, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    out_bytes(o, b, 8);
}
static void out_pad(Out *o, uint64_t n) {
    static const uint8_t zero[8];
    out_bytes(o, zero, (size_t)(pad8(n) - n));
}

static bool mkdirs(const char *dir) {
    if (util_is_dir(dir)) return true;
    char *copy = xstrdup(dir);
    char *parent = xstrdup(dirname(copy));
    free(copy);
    bool ok = (!strcmp(parent, dir) || mkdirs(parent)) && (mkdir(dir, 0755) == 0 || errno == EEXIST);
    free(parent);
    return ok;
}

bool tokcache_save(const char *path, const TokCacheKey *key, const EncodedSet *s, char *err, size_t errlen) {
    char *copy = xstrdup(path);
    char *dir = xstrdup(dirname(copy));
    free(copy);
    bool made = mkdirs(dir);
    free(dir);
    if (!made) return errf(err, errlen, "%s: cannot create its folder: %s", path, strerror(errno));
    Sizes z;
    uint64_t total;
    if (!sizes_of((uint32_t)s->kind, (uint32_t)s->n_parts, s->n_rows, s->n_tokens, s->n_seqs, &z, &total))
        return errf(err, errlen, "%s: encoded set too large to cache", path);
    char *tmp = xprintf("%s.tmp.%ld", path, (long)getpid());
    Out o = {fopen(tmp, "wb"), true};
    if (!o.f) {
        errf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return false;
    }
    uint64_t stats[NSTATS];
    stats_to(&s->stats, stats);
    out_bytes(&o, MAGIC, 8);
    out_u32(&o, VERSION);
    out_u32(&o, (uint32_t)s->kind);
    out_u32(&o, (uint32_t)s->n_parts);
    out_u32(&o, s->neat);
    out_bytes(&o, key->data, 32);
    out_bytes(&o, key->tokenizer, 32);
    out_bytes(&o, key->encoding, 32);
    out_u64(&o, s->n_rows);
    out_u64(&o, s->n_tokens);
    out_u64(&o, s->n_seqs);
    for (int i = 0; i < NSTATS; i++) out_u64(&o, stats[i]);
    out_u64(&o, total);
    /* arrays in host order: llfc's targets are little-endian (checked on load) */
    out_bytes(&o, s->off, (size_t)z.off);
    out_bytes(&o, s->ids, (size_t)s->n_tokens * 4), out_pad(&o, s->n_tokens * 4);
    out_bytes(&o, s->labels, (size_t)s->n_tokens * 4), out_pad(&o, s->n_tokens * 4);
    out_bytes(&o, s->src, (size_t)z.src);
    if (z.tag) out_bytes(&o, s->kto_tag, (size_t)s->n_rows), out_pad(&o, s->n_rows);
    if (z.row_seq) out_bytes(&o, s->row_seq, (size_t)z.row_seq);
    if (z.seq_len) out_bytes(&o, s->seq_len, (size_t)s->n_seqs * 4), out_pad(&o, s->n_seqs * 4);
    if (o.ok && fflush(o.f) != 0) o.ok = false;
    if (o.ok && fsync(fileno(o.f)) != 0) o.ok = false;
    int saved = errno;
    if (fclose(o.f) != 0) o.ok = false;
    if (!o.ok || rename(tmp, path) != 0) {
        errf(err, errlen, "%s: cannot write the token cache: %s", path, strerror(o.ok ? errno : saved));
        unlink(tmp);
        free(tmp);
        return false;
    }
    free(tmp);
    return true;
}

// ---------------------------------------------------------------------------------------
// read

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static char *hex8(const uint8_t k[32], char out[17]) {
    for (int i = 0; i < 8; i++) snprintf(out + 2 * i, 3, "%02x", k[i]);
    return out;
}

/* The arrays must describe rows: offsets from 0 to n_tokens without going back, sources and
 * sub-sequences in range. O(rows); a damaged file is caught here, not in the trainer. */
static bool consistent(const EncodedSet *s) {
    uint64_t parts = s->n_rows * (uint64_t)s->n_parts;
    if (s->off[0] != 0 || s->off[parts] != s->n_tokens) return false;
    for (uint64_t i = 0; i < parts; i++)
        if (s->off[i + 1] < s->off[i]) return false;
    for (uint64_t r = 0; r < s->n_rows; r++)
        if (s->src[r] >= s->stats.n_examples) return false;
    if (s->kind == ENC_ROWS_PACKED) {
        if (s->row_seq[0] != 0 || s->row_seq[s->n_rows] != s->n_seqs) return false;
        for (uint64_t r = 0; r < s->n_rows; r++) /* all of them first: then each is <= n_seqs */
            if (s->row_seq[r + 1] < s->row_seq[r]) return false;
        for (uint64_t r = 0; r < s->n_rows; r++) {
            uint64_t sum = 0;
            for (uint64_t q = s->row_seq[r]; q < s->row_seq[r + 1]; q++) sum += s->seq_len[q];
            if (sum > s->off[r + 1] - s->off[r]) return false;
        }
    }
    return true;
}

TokCacheStatus tokcache_load(const char *path, const TokCacheKey *key, EncodedSet *out, char *why, size_t whylen) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        errf(why, whylen, errno == ENOENT ? "no cache yet" : "cannot open: %s", strerror(errno));
        return errno == ENOENT ? TOKCACHE_MISSING : TOKCACHE_CORRUPT;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < HEADER_LEN) {
        close(fd);
        errf(why, whylen, "not a token cache (too short)");
        return TOKCACHE_CORRUPT;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        errf(why, whylen, "cannot map: %s", strerror(errno));
        return TOKCACHE_CORRUPT;
    }
    TokCacheStatus status = TOKCACHE_CORRUPT;
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        errf(why, whylen, "token caches are little-endian; this machine is not");
        goto fail;
    }
    if (memcmp(m, MAGIC, 8) != 0) {
        errf(why, whylen, "not a token cache (bad magic)");
        goto fail;
    }
    if (rd_u32(m + 8) != VERSION) {
        errf(why, whylen, "written by another llfc (cache version %u, this llfc %u)", rd_u32(m + 8), VERSION);
        goto fail;
    }
    uint32_t kind = rd_u32(m + 12), n_parts = rd_u32(m + 16), neat = rd_u32(m + 20);
    const uint8_t *kd = m + 24, *kt = m + 56, *ke = m + 88;
    const uint8_t *p = m + 120;
    uint64_t n_rows = rd_u64(p), n_tokens = rd_u64(p + 8), n_seqs = rd_u64(p + 16);
    uint64_t stats[NSTATS];
    for (int i = 0; i < NSTATS; i++) stats[i] = rd_u64(p + 24 + 8 * i);
    uint64_t total_hdr = rd_u64(p + 24 + 8 * NSTATS);
    Sizes z;
    uint64_t total;
    if (kind > ENC_ROWS_KTO || !sizes_of(kind, n_parts, n_rows, n_tokens, n_seqs, &z, &total) || total != len ||
        total_hdr != len) {
        errf(why, whylen, "damaged (sizes do not match the file's %zu bytes)", len);
        goto fail;
    }
    bool same_d = !memcmp(kd, key->data, 32), same_t = !memcmp(kt, key->tokenizer, 32),
         same_e = !memcmp(ke, key->encoding, 32);
    if (!same_d || !same_t || !same_e) {
        char a[17], b[17];
        StrBuf w = {0};
        if (!same_d) sb_printf(&w, "the dataset files changed (%s -> %s)", hex8(kd, a), hex8(key->data, b));
        if (!same_t) sb_printf(&w, "%sthe tokenizer changed (%s -> %s)", w.len ? "; " : "", hex8(kt, a), hex8(key->tokenizer, b));
        if (!same_e)
            sb_printf(&w, "%sthe template or encoding options changed (%s -> %s)", w.len ? "; " : "", hex8(ke, a),
                      hex8(key->encoding, b));
        errf(why, whylen, "%s", w.data);
        sb_free(&w);
        status = TOKCACHE_STALE;
        goto fail;
    }
    EncodedSet s = {.kind = (EncRowKind)kind, .n_parts = (int)n_parts, .neat = neat != 0, .n_rows = n_rows,
                    .n_tokens = n_tokens, .n_seqs = n_seqs, .map = m, .map_len = len};
    stats_from(stats, &s.stats);
    uint8_t *a = m + HEADER_LEN;
    s.off = (uint64_t *)a, a += z.off;
    s.ids = (int32_t *)a, a += z.ids;
    s.labels = (int32_t *)a, a += z.labels;
    s.src = (uint64_t *)a, a += z.src;
    if (z.tag) s.kto_tag = a, a += z.tag;
    if (z.row_seq) s.row_seq = (uint64_t *)a, a += z.row_seq;
    if (z.seq_len) s.seq_len = (uint32_t *)a;
    if (!consistent(&s)) {
        errf(why, whylen, "damaged (row offsets or sequences out of range)");
        goto fail;
    }
    *out = s;
    return TOKCACHE_HIT;
fail:
    munmap(m, len);
    return status;
}

bool tokcache_get(const char *path, bool overwrite, const TokCacheKey *key, TokCacheBuild build, void *ctx,
                  EncodedSet *out, StrBuf *log, char *err, size_t errlen) {
    char why[ERR_LEN] = "overwrite_cache is set";
    if (!overwrite) {
        TokCacheStatus st = tokcache_load(path, key, out, why, sizeof why);
        if (st == TOKCACHE_HIT) {
            char k[17];
            if (log)
                sb_printf(log, "token cache %s: used (%llu rows, %llu tokens; key %s)\n", path,
                          (unsigned long long)out->n_rows, (unsigned long long)out->n_tokens, hex8(key->encoding, k));
            return true;
        }
    }
    if (!build(ctx, out, err, errlen)) return false;
    if (!tokcache_save(path, key, out, err, errlen)) {
        enc_set_free(out);
        return false;
    }
    if (log) sb_printf(log, "token cache %s: rebuilt (%s)\n", path, why);
    return true;
}
