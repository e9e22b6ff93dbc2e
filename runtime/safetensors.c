/* safetensors.c - validate and map safetensors files; stream them out (format: safetensors.h).
 *
 * What the reader rejects follows the reference Rust reader (safetensors/src/tensor.rs,
 * SafeTensors::read_metadata and Metadata::validate) checked against safetensors 0.8 from
 * Python: a file under 8 bytes, N > 100,000,000, 8 + N past the end, a header that is not one
 * JSON object, __metadata__ values that are not strings, an unknown dtype, negative or
 * fractional dims, data_offsets that are not two integers, offsets that (sorted) leave a gap
 * or overlap, a byte length that is not numel * dtype size, a shape whose byte size overflows,
 * and data that does not end exactly at the end of the file. Like the reference, leading
 * whitespace and unknown keys inside a tensor entry are accepted. Beyond it, llfc also rejects
 * duplicate names (the reference rejects them too, but only as an offset error) and more
 * than ST_MAX_DIMS dims.
 */
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

// Tensor bytes are little-endian and read in place: llfc runs on little-endian hosts only.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors.c assumes little-endian");

// --- dtypes

static const struct {
    const char *name;
    size_t bits;
} dtypes[ST_DTYPE_COUNT] = {
    [ST_F32] = {"F32", 32},         [ST_F16] = {"F16", 16},
    [ST_BF16] = {"BF16", 16},       [ST_F64] = {"F64", 64},
    [ST_C64] = {"C64", 64},         [ST_I64] = {"I64", 64},
    [ST_U64] = {"U64", 64},         [ST_I32] = {"I32", 32},
    [ST_U32] = {"U32", 32},         [ST_I16] = {"I16", 16},
    [ST_U16] = {"U16", 16},         [ST_I8] = {"I8", 8},
    [ST_U8] = {"U8", 8},            [ST_BOOL] = {"BOOL", 8},
    [ST_F8_E5M2] = {"F8_E5M2", 8},  [ST_F8_E4M3] = {"F8_E4M3", 8},
    [ST_F8_E8M0] = {"F8_E8M0", 8},  [ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [ST_F6_E2M3] = {"F6_E2M3", 6},  [ST_F6_E3M2] = {"F6_E3M2", 6},
    [ST_F4] = {"F4", 4},
};

const char *st_dtype_name(StDtype d) { return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].name : "?"; }
size_t st_dtype_bits(StDtype d) { return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].bits : 0; }
bool st_dtype_supported(StDtype d) { return d == ST_F32 || d == ST_F16 || d == ST_BF16; }

static bool dtype_from_name(const char *s, StDtype *out) {
    for (int d = 0; d < ST_DTYPE_COUNT; d++)
        if (strcmp(s, dtypes[d].name) == 0) return *out = (StDtype)d, true;
    return false;
}

/* numel * bits / 8 with every product checked; false on overflow or a partial byte. */
static bool byte_size(StDtype d, const int64_t *shape, int ndim, int64_t *numel, uint64_t *nbytes,
                      bool *partial) {
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return false;
    uint64_t bits;
    if (__builtin_mul_overflow(n, (uint64_t)dtypes[d].bits, &bits) || n > INT64_MAX) return false;
    *numel = (int64_t)n;
    *partial = bits % 8 != 0;
    *nbytes = bits / 8;
    return true;
}

// --- float conversions

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float st_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t st_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1);                                           // round to even
    return (uint16_t)(u >> 16);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); // inf, nan
    if (exp != 0) return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
    if (man == 0) return bits_f32(sign);
    // subnormal: man * 2^-24
    float v = (float)man * 0x1p-24f;
    return sign ? -v : v;
}

uint16_t st_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;         // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00;        // rounds to >= 65520: inf
    if (a < 0x38800000u) {                             // below 2^-14: subnormal or zero
        float v = bits_f32(a) * 0x1p24f;               // in units of 2^-24; exact
        float r = nearbyintf(v);                       // round half to even (default mode)
        return sign | (uint16_t)r;
    }
    uint32_t rounded = a + 0xfffu + ((a >> 13) & 1);   // round to even at bit 13
    return sign | (uint16_t)((rounded - ((uint32_t)112 << 23)) >> 13);
}

float st_get_f32(const StTensor *t, int64_t i) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case ST_BF16: return st_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    case ST_F16: return st_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    default: return NAN;
    }
}

void st_read_f32(const StTensor *t, float *out) {
    if (t->dtype == ST_F32) {
        memcpy(out, t->data, (size_t)t->numel * 4);
        return;
    }
    for (int64_t i = 0; i < t->numel; i++) out[i] = st_get_f32(t, i);
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

// --- tensor list being built

typedef struct {
    StTensor *items;
    size_t n, cap;
    uint64_t *begin, *end; /* data_offsets while validating, parallel to items */
    const Json **entry;    /* the header value, for positions in messages */
} List;

static StTensor *list_push(List *l) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->items = xrealloc(l->items, l->cap * sizeof *l->items);
        l->begin = xrealloc(l->begin, l->cap * sizeof *l->begin);
        l->end = xrealloc(l->end, l->cap * sizeof *l->end);
        l->entry = xrealloc(l->entry, l->cap * sizeof *l->entry);
    }
    memset(&l->items[l->n], 0, sizeof l->items[0]);
    return &l->items[l->n++];
}

static void list_free_scratch(List *l) {
    free(l->begin), free(l->end), free(l->entry);
    l->begin = l->end = NULL, l->entry = NULL;
}

// --- one file's header

/* "NAME: header L:C: " prefix for a message about a header value. */
#define AT(v) name, (v)->line, (v)->col

static bool read_u64(const Json *v, uint64_t *out) {
    int64_t i;
    if (!json_as_int(v, &i) || i < 0) return false;
    *out = (uint64_t)i;
    return true;
}

/* "__metadata__": null or {string: string}. Kept only when meta != NULL. */
static bool read_metadata(const Json *v, const char *name, StModel *meta, char *err,
                          size_t errlen) {
    if (v->type == JSON_NULL) return true;
    if (v->type != JSON_OBJECT)
        return errf(err, errlen, "%s: header %d:%d: __metadata__ must be an object of strings, "
                    "got %s", AT(v), json_type_name(v->type));
    for (size_t i = 0; i < v->obj.n; i++)
        if (v->obj.vals[i]->type != JSON_STRING)
            return errf(err, errlen, "%s: header %d:%d: __metadata__ \"%s\" must be a string, got "
                        "%s", AT(v->obj.vals[i]), v->obj.keys[i],
                        json_type_name(v->obj.vals[i]->type));
    if (!meta || meta->n_meta) return true;
    meta->meta_keys = xcalloc(v->obj.n, sizeof(char *));
    meta->meta_values = xcalloc(v->obj.n, sizeof(char *));
    for (size_t i = 0; i < v->obj.n; i++) {
        meta->meta_keys[i] = xstrdup(v->obj.keys[i]);
        meta->meta_values[i] = xstrndup(v->obj.vals[i]->str.s, v->obj.vals[i]->str.len);
    }
    meta->n_meta = v->obj.n;
    return true;
}

/* One tensor entry: {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}; others ignored. */
static bool read_entry(const char *tname, const Json *v, const char *name, List *l, int file,
                       char *err, size_t errlen) {
    if (v->type != JSON_OBJECT)
        return errf(err, errlen, "%s: header %d:%d: tensor \"%s\" must be an object with dtype, "
                    "shape and data_offsets, got %s", AT(v), tname, json_type_name(v->type));
    const Json *dt = json_get(v, "dtype"), *shape = json_get(v, "shape"),
               *off = json_get(v, "data_offsets");
    if (!dt || !shape || !off)
        return errf(err, errlen, "%s: header %d:%d: tensor \"%s\" lacks \"%s\"", AT(v), tname,
                    !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    StTensor *t = list_push(l);
    size_t k = l->n - 1;
    t->file = file;
    l->entry[k] = v;
    const char *ds = json_as_str(dt);
    if (!ds || !dtype_from_name(ds, &t->dtype))
        return errf(err, errlen, "%s: header %d:%d: tensor \"%s\" has unknown dtype %s%s%s; "
                    "safetensors defines F32, F16, BF16, F64, I64, ..., F8_E4M3, F4", AT(dt), tname,
                    ds ? "\"" : "", ds ? ds : json_type_name(dt->type), ds ? "\"" : "");
    if (shape->type != JSON_ARRAY)
        return errf(err, errlen, "%s: header %d:%d: tensor \"%s\": shape must be an array of "
                    "integers >= 0", AT(shape), tname);
    if (shape->arr.n > ST_MAX_DIMS)
        return errf(err, errlen, "%s: header %d:%d: tensor \"%s\" has %zu dims; llfc reads at "
                    "most %d", AT(shape), tname, shape->arr.n, ST_MAX_DIMS);
    t->ndim = (int)shape->arr.n;
    for (size_t i = 0; i < shape->arr.n; i++) {
        uint64_t d;
        if (!read_u64(shape->arr.items[i], &d))
            return errf(err, errlen, "%s: header %d:%d: tensor \"%s\": shape[%zu] must be an "
                        "integer >= 0", AT(shape->arr.items[i]), tname, i);
        t->shape[i] = (int64_t)d;
    }
    if (off->type != JSON_ARRAY || off->arr.n != 2 || !read_u64(off->arr.items[0], &l->begin[k]) ||
        !read_u64(off->arr.items[1], &l->end[k]))
        return errf(err, errlen, "%s: header %d:%d: tensor \"%s\": data_offsets must be [BEGIN, "
                    "END], two integers >= 0", AT(off), tname);
    uint64_t nbytes;
    bool partial;
    if (!byte_size(t->dtype, t->shape, t->ndim, &t->numel, &nbytes, &partial))
        return errf(err, errlen, "%s: header %d:%d: tensor \"%s\": shape overflows (its byte size "
                    "does not fit in 64 bits)", AT(shape), tname);
    if (partial)
        return errf(err, errlen, "%s: header %d:%d: tensor \"%s\": %lld elements of %s do not fill "
                    "whole bytes", AT(shape), tname, (long long)t->numel, dtypes[t->dtype].name);
    t->nbytes = (size_t)nbytes;
    if (l->end[k] < l->begin[k] || l->end[k] - l->begin[k] != nbytes) {
        char shape_s[256];
        shape_str(shape_s, sizeof shape_s, t->ndim, t->shape);
        return errf(err, errlen, "%s: header %d:%d: tensor \"%s\": data_offsets [%llu, %llu] hold "
                    "%lld bytes but %s %s needs %llu", AT(off), tname,
                    (unsigned long long)l->begin[k], (unsigned long long)l->end[k],
                    l->end[k] >= l->begin[k] ? (long long)(l->end[k] - l->begin[k]) : -1LL,
                    dtypes[t->dtype].name, shape_s, (unsigned long long)nbytes);
    }
    t->name = xstrdup(tname);
    return true;
}

/* A tensor's byte range, sorted to check the tiling; qsort needs no context this way. */
typedef struct {
    uint64_t begin, end;
    size_t k; /* index into the List */
} Span;

static int by_offset(const void *a, const void *b) {
    const Span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

/* Sorted by offset, the tensors must tile [0, data_len) exactly (Metadata::validate). */
static bool check_tiling(const List *l, size_t first, const char *name, uint64_t data_len,
                         char *err, size_t errlen) {
    size_t n = l->n - first;
    Span *span = xmalloc((n ? n : 1) * sizeof *span);
    for (size_t i = 0; i < n; i++) span[i] = (Span){l->begin[first + i], l->end[first + i], first + i};
    if (n) qsort(span, n, sizeof *span, by_offset);
    uint64_t at = 0;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        const StTensor *t = &l->items[span[i].k];
        const Json *v = l->entry[span[i].k];
        if (span[i].begin > at)
            ok = errf(err, errlen, "%s: header %d:%d: tensor \"%s\": data_offsets start at %llu, "
                      "leaving a gap after byte %llu of the data (the tensors must cover it "
                      "without holes)", AT(v), t->name, (unsigned long long)span[i].begin,
                      (unsigned long long)at);
        else if (span[i].begin < at)
            ok = errf(err, errlen, "%s: header %d:%d: tensor \"%s\": data_offsets [%llu, %llu] "
                      "overlap \"%s\", which ends at %llu", AT(v), t->name,
                      (unsigned long long)span[i].begin, (unsigned long long)span[i].end,
                      l->items[span[i - 1].k].name, (unsigned long long)at);
        else
            at = span[i].end;
    }
    free(span);
    if (!ok) return false;
    if (at != data_len)
        return errf(err, errlen, "%s: the tensors cover %llu bytes of data but the file has %llu "
                    "after its header (%s)", name, (unsigned long long)at,
                    (unsigned long long)data_len,
                    at > data_len ? "truncated: the file is shorter than its header says"
                                  : "trailing bytes that no tensor owns");
    return true;
}

/* Validate one file's bytes and append its tensors to l; data pointers into `bytes`. */
static bool parse_file(const uint8_t *bytes, size_t size, const char *name, int file, List *l,
                       StModel *meta, char *err, size_t errlen) {
    if (size < 8)
        return errf(err, errlen, "%s: %zu bytes is too short for a safetensors file (it starts "
                    "with an 8-byte header length)", name, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | bytes[i];
    if (n > ST_MAX_HEADER)
        return errf(err, errlen, "%s: header length %llu is over the 100 MB limit; this is not a "
                    "safetensors file, or it is corrupt", name, (unsigned long long)n);
    if (n > size - 8)
        return errf(err, errlen, "%s: header length %llu runs past the end of the %zu-byte file "
                    "(truncated?)", name, (unsigned long long)n, size);
    char *hname = xprintf("%s: header", name);
    char jerr[ERR_LEN];
    JsonDoc *doc = json_parse((const char *)bytes + 8, (size_t)n, hname, jerr, sizeof jerr);
    free(hname);
    if (!doc) return errf(err, errlen, "%s", jerr);
    const Json *root = json_root(doc);
    bool ok = true;
    size_t first = l->n;
    if (root->type != JSON_OBJECT)
        ok = errf(err, errlen, "%s: header must be a JSON object, got %s", name,
                  json_type_name(root->type));
    for (size_t i = 0; ok && root->type == JSON_OBJECT && i < root->obj.n; i++) {
        const char *key = root->obj.keys[i];
        if (strlen(key) != root->obj.key_lens[i])
            ok = errf(err, errlen, "%s: header %d:%d: a tensor name contains a NUL character",
                      AT(root->obj.vals[i]));
        else if (strcmp(key, "__metadata__") == 0)
            ok = read_metadata(root->obj.vals[i], name, meta, err, errlen);
        else
            ok = read_entry(key, root->obj.vals[i], name, l, file, err, errlen);
    }
    if (ok) ok = check_tiling(l, first, name, size - 8 - n, err, errlen);
    if (ok)
        for (size_t k = first; k < l->n; k++)
            l->items[k].data = bytes + 8 + n + l->begin[k];
    json_free(doc);
    return ok;
}

#undef AT

// --- the model: tensors of every file, sorted by name

static int by_name(const void *a, const void *b) {
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

const StTensor *st_find(const StModel *m, const char *name) {
    if (m->n_tensors == 0) return NULL;
    StTensor key = {.name = name};
    return bsearch(&key, m->tensors, m->n_tensors, sizeof key, by_name);
}

static void free_list(List *l) {
    for (size_t i = 0; i < l->n; i++) free((char *)l->items[i].name);
    free(l->items);
    list_free_scratch(l);
}

void st_close(StModel *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_tensors; i++) free((char *)m->tensors[i].name);
    free(m->tensors);
    for (size_t i = 0; i < m->n_files; i++) {
        if (m->files[i].map && m->files[i].size) munmap((void *)m->files[i].map, m->files[i].size);
        free(m->files[i].path);
    }
    free(m->files);
    for (size_t i = 0; i < m->n_meta; i++) free(m->meta_keys[i]), free(m->meta_values[i]);
    free(m->meta_keys), free(m->meta_values);
    free(m);
}

/* Sort, reject duplicates and unsupported dtypes, hand the list to m. */
static bool finish(StModel *m, List *l, char *err, size_t errlen) {
    list_free_scratch(l);
    m->tensors = l->items, m->n_tensors = l->n;
    *l = (List){0};
    if (m->n_tensors) qsort(m->tensors, m->n_tensors, sizeof *m->tensors, by_name);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const StTensor *t = &m->tensors[i];
        const char *file = m->files[t->file].path;
        if (i > 0 && strcmp(t->name, m->tensors[i - 1].name) == 0) {
            const StTensor *p = &m->tensors[i - 1];
            return errf(err, errlen, "%s: tensor \"%s\" appears twice%s%s", file, t->name,
                        p->file != t->file ? "; also in " : "",
                        p->file != t->file ? m->files[p->file].path : "");
        }
        if (!st_dtype_supported(t->dtype))
            return errf(err, errlen, "%s: tensor \"%s\" is %s; llfc reads F32, F16 and BF16 "
                        "weights (convert with transformers: model.to(torch.bfloat16)."
                        "save_pretrained(DIR))", file, t->name, dtypes[t->dtype].name);
    }
    return true;
}

static int add_file(StModel *m, const char *path);

StModel *st_parse(const uint8_t *bytes, size_t size, const char *name, char *err, size_t errlen) {
    StModel *m = xcalloc(1, sizeof *m);
    add_file(m, name); // no map: the caller owns the bytes
    List l = {0};
    if (!parse_file(bytes, size, name, 0, &l, m, err, errlen) || !finish(m, &l, err, errlen)) {
        free_list(&l);
        st_close(m);
        return NULL;
    }
    return m;
}

// --- files

static bool map_file(StFile *f, char *err, size_t errlen) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errf(err, errlen, "%s: cannot open: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return errf(err, errlen, "%s: not a regular file", f->path);
    }
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            f->size = 0;
            return errf(err, errlen, "%s: cannot map: %s", f->path, strerror(e));
        }
        f->map = p;
    }
    close(fd);
    return true;
}

static int add_file(StModel *m, const char *path) {
    m->files = xrealloc(m->files, (m->n_files + 1) * sizeof *m->files);
    m->files[m->n_files] = (StFile){.path = xstrdup(path)};
    return (int)m->n_files++;
}

static bool open_shard(StModel *m, const char *path, List *l, char *err, size_t errlen) {
    int k = add_file(m, path);
    StFile *f = &m->files[k];
    return map_file(f, err, errlen) && parse_file(f->map, f->size, f->path, k, l, m, err, errlen);
}

/* A shard name from the index must be a plain file name in the same directory. */
static bool plain_file_name(const char *s, size_t len) {
    return len > 0 && strlen(s) == len && !strchr(s, '/') && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {"NAME": "FILE", ...}}.
 * Every shard named is opened and validated; every mapped tensor must be in its shard and every
 * tensor of a shard must be mapped to that shard. */
static bool open_index(StModel *m, const char *index_path, List *l, char *err, size_t errlen) {
    size_t len;
    char *text = util_read_file(index_path, &len, err, errlen);
    if (!text) return false;
    JsonDoc *doc = json_parse(text, len, index_path, err, errlen);
    free(text);
    if (!doc) return false;
    const Json *root = json_root(doc), *wm = json_get(root, "weight_map");
    char *dir = xstrdup(index_path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    bool ok = true;
    if (!wm || wm->type != JSON_OBJECT || wm->obj.n == 0)
        ok = errf(err, errlen, "%s:%d:%d: expected {\"weight_map\": {\"TENSOR\": \"FILE\", ...}}",
                  index_path, (wm ? wm : root)->line, (wm ? wm : root)->col);
    // open each distinct shard once, in order of first mention
    int *file_of = ok ? xcalloc(wm->obj.n, sizeof(int)) : NULL;
    for (size_t i = 0; ok && i < wm->obj.n; i++) {
        const Json *v = wm->obj.vals[i];
        if (v->type != JSON_STRING || !plain_file_name(v->str.s, v->str.len)) {
            ok = errf(err, errlen, "%s:%d:%d: weight_map[\"%s\"] must be a file name in the same "
                      "folder", index_path, v->line, v->col, wm->obj.keys[i]);
            break;
        }
        file_of[i] = -1;
        for (size_t f = 0; f < m->n_files; f++)
            if (strcmp(m->files[f].path + strlen(dir), v->str.s) == 0) file_of[i] = (int)f;
        if (file_of[i] < 0) {
            char *path = xprintf("%s%s", dir, v->str.s);
            ok = open_shard(m, path, l, err, errlen);
            free(path);
            file_of[i] = (int)m->n_files - 1;
        }
    }
    // both directions of the mapping
    for (size_t i = 0; ok && i < wm->obj.n; i++) {
        bool found = false;
        for (size_t k = 0; k < l->n && !found; k++)
            found = l->items[k].file == file_of[i] && strcmp(l->items[k].name, wm->obj.keys[i]) == 0;
        if (!found)
            ok = errf(err, errlen, "%s:%d:%d: tensor \"%s\" is mapped to %s, which does not "
                      "contain it", index_path, wm->obj.vals[i]->line, wm->obj.vals[i]->col,
                      wm->obj.keys[i], wm->obj.vals[i]->str.s);
    }
    for (size_t k = 0; ok && k < l->n; k++) {
        const Json *v = json_get(wm, l->items[k].name);
        const char *fname = m->files[l->items[k].file].path + strlen(dir);
        if (!v || strcmp(json_as_str(v), fname) != 0)
            ok = errf(err, errlen, "%s: tensor \"%s\" is not mapped to this file by %s", 
                      m->files[l->items[k].file].path, l->items[k].name, index_path);
    }
    free(file_of);
    free(dir);
    json_free(doc);
    return ok;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

StModel *st_open(const char *path, char *err, size_t errlen) {
    StModel *m = xcalloc(1, sizeof *m);
    List l = {0};
    bool ok;
    if (util_is_dir(path)) {
        char *single = util_path_join(path, "model.safetensors");
        char *index = util_path_join(path, "model.safetensors.index.json");
        if (util_is_file(single))
            ok = open_shard(m, single, &l, err, errlen);
        else if (util_is_file(index))
            ok = open_index(m, index, &l, err, errlen);
        else
            ok = errf(err, errlen, "%s: no model.safetensors or model.safetensors.index.json "
                      "(llfc reads safetensors checkpoints; convert .bin with transformers' "
                      "save_pretrained)", path);
        free(single);
        free(index);
    } else if (ends_with(path, ".json")) {
        ok = open_index(m, path, &l, err, errlen);
    } else {
        ok = open_shard(m, path, &l, err, errlen);
    }
    if (!ok || !finish(m, &l, err, errlen)) {
        free_list(&l);
        st_close(m);
        return NULL;
    }
    return m;
}

// --- against the ModelSpec

/* Buffers never a model's weights: old exporters saved them, transformers ignores them. */
static bool ignorable(const char *name) {
    return ends_with(name, "rotary_emb.inv_freq");
}

/* First problem in full, then how many more, so one run shows the scale of a mismatch. */
typedef struct {
    StrBuf first;
    int count;
} Problems;

static void problem(Problems *p, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void problem(Problems *p, const char *fmt, ...) {
    if (p->count++ > 0) return;
    va_list ap;
    va_start(ap, fmt);
    char buf[ERR_LEN];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sb_puts(&p->first, buf);
}

bool st_check_spec(const StModel *m, const ModelSpec *spec, char *err, size_t errlen) {
    size_t n;
    ModelTensor *want = model_tensors(spec, &n);
    bool *matched = xcalloc(m->n_tensors + 1, 1);
    Problems p = {0};
    const char *where = m->files[0].path;
    char a[128], b[128];
    for (size_t i = 0; i < n; i++) {
        const StTensor *t = st_find(m, want[i].name);
        shape_str(b, sizeof b, want[i].ndim, want[i].shape);
        if (!t) {
            problem(&p, "%s: tensor \"%s\" %s is missing (%s says this %s model has it)", where,
                    want[i].name, b, spec->path[0] ? spec->path : "the config", spec->model_type);
            continue;
        }
        matched[t - m->tensors] = true;
        bool same = t->ndim == want[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == want[i].shape[d];
        if (!same) {
            shape_str(a, sizeof a, t->ndim, t->shape);
            problem(&p, "%s: tensor \"%s\" has shape %s but %s says %s", m->files[t->file].path,
                    t->name, a, spec->path[0] ? spec->path : "the config", b);
        }
    }
    for (size_t k = 0; k < m->n_tensors; k++) {
        const StTensor *t = &m->tensors[k];
        if (matched[k] || ignorable(t->name)) continue;
        bool tied_head = spec->tie_word_embeddings && strcmp(t->name, "lm_head.weight") == 0 &&
                         t->ndim == 2 && t->shape[0] == spec->V && t->shape[1] == spec->C;
        if (tied_head) continue;
        shape_str(a, sizeof a, t->ndim, t->shape);
        problem(&p, "%s: unexpected tensor \"%s\" %s: not part of a %s model with this config "
                "(is it the config.json that belongs to these weights?)",
                m->files[t->file].path, t->name, a, spec->model_type);
    }
    bool ok = p.count == 0;
    if (p.count == 1) errf(err, errlen, "%s", p.first.data);
    if (p.count > 1)
        errf(err, errlen, "%s; and %d more problem%s", p.first.data, p.count - 1,
             p.count > 2 ? "s" : "");
    sb_free(&p.first);
    free(matched);
    free(want);
    return ok;
}

// --- writing

#define WRITE_CHUNK ((size_t)4 << 20) /* bytes asked of a producer at a time; a multiple of 8 */

static void json_escape(StrBuf *sb, const char *s) {
    sb_puts(sb, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') sb_printf(sb, "\\%c", c);
        else if (c < 0x20) sb_printf(sb, "\\u%04x", c);
        else sb_append(sb, (const char *)&c, 1);
    }
    sb_puts(sb, "\"");
}

typedef struct {
    size_t *members; /* indices into the caller's tensors, in file layout order */
    size_t n;
    uint64_t bytes;
} Shard;

static bool tensor_bytes(const StWriteTensor *t, uint64_t *nbytes, char *err, size_t errlen) {
    int64_t numel;
    bool partial;
    if ((unsigned)t->dtype >= ST_DTYPE_COUNT || t->ndim < 0 || t->ndim > ST_MAX_DIMS)
        return errf(err, errlen, "tensor \"%s\": bad dtype or rank", t->name);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0) return errf(err, errlen, "tensor \"%s\": negative dim", t->name);
    if (!byte_size(t->dtype, t->shape, t->ndim, &numel, nbytes, &partial) || partial)
        return errf(err, errlen, "tensor \"%s\": its size overflows or is not whole bytes", t->name);
    return true;
}

/* huggingface_hub's split_state_dict_into_shards_factory: in order; a tensor larger than the
 * limit becomes a shard of its own at once (the open shard stays open); otherwise the open shard
 * is closed when this tensor would push it over the limit. */
static Shard *plan_shards(const uint64_t *sizes, size_t n, uint64_t max, size_t *n_shards) {
    Shard *s = xcalloc(n + 1, sizeof *s);
    size_t ns = 0;
    Shard open = {.members = xmalloc((n ? n : 1) * sizeof(size_t))};
    for (size_t i = 0; i < n; i++) {
        if (sizes[i] > max) {
            s[ns].members = xmalloc(sizeof(size_t));
            s[ns].members[0] = i, s[ns].n = 1, s[ns].bytes = sizes[i];
            ns++;
            continue;
        }
        if (sizes[i] > max - open.bytes) { // open.bytes <= max, so no overflow
            s[ns++] = open;
            open = (Shard){.members = xmalloc(n * sizeof(size_t))};
        }
        open.members[open.n++] = i;
        open.bytes += sizes[i];
    }
    if (open.n > 0 || ns == 0) s[ns++] = open; // an empty model is still one (empty) file
    else free(open.members);
    *n_shards = ns;
    return s;
}

/* Lay a shard out largest dtype first, so every tensor stays aligned to its element (8 + N is
 * a multiple of 8); the given order otherwise. A stable insertion sort: shards hold hundreds. */
static void layout_by_dtype_size(Shard *s, const StWriteTensor *tensors) {
    for (size_t i = 1; i < s->n; i++)
        for (size_t j = i; j > 0; j--) {
            size_t a = s->members[j - 1], b = s->members[j];
            if (dtypes[tensors[a].dtype].bits >= dtypes[tensors[b].dtype].bits) break;
            s->members[j - 1] = b, s->members[j] = a;
        }
}

static void header_json(StrBuf *h, const StWriteTensor *tensors, const Shard *s,
                        const uint64_t *sizes, const char *const *meta) {
    sb_puts(h, "{\"__metadata__\":{");
    static const char *const pt[] = {"format", "pt", NULL};
    if (!meta) meta = pt;
    for (size_t i = 0; meta[i] && meta[i + 1]; i += 2) {
        if (i) sb_puts(h, ",");
        json_escape(h, meta[i]);
        sb_puts(h, ":");
        json_escape(h, meta[i + 1]);
    }
    sb_puts(h, "}");
    uint64_t at = 0;
    for (size_t k = 0; k < s->n; k++) {
        const StWriteTensor *t = &tensors[s->members[k]];
        sb_puts(h, ",");
        json_escape(h, t->name);
        sb_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", dtypes[t->dtype].name);
        for (int d = 0; d < t->ndim; d++) sb_printf(h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        uint64_t end = at + sizes[s->members[k]];
        sb_printf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at,
                  (unsigned long long)end);
        at = end;
    }
    sb_puts(h, "}");
    while (h->len % 8) sb_puts(h, " "); // 8 + N stays 8-aligned, as the Rust writer pads
}

static bool write_all(FILE *f, const void *p, size_t n, const char *path, char *err,
                      size_t errlen) {
    if (n && fwrite(p, 1, n, f) != n)
        return errf(err, errlen, "%s: write failed: %s", path, strerror(errno));
    return true;
}

static bool write_tensor_data(FILE *f, const StWriteTensor *t, size_t index, uint64_t nbytes,
                              const StWriteOptions *opt, void *chunk, const char *path, char *err,
                              size_t errlen) {
    if (t->data) return write_all(f, t->data, (size_t)nbytes, path, err, errlen);
    if (!opt->produce) return errf(err, errlen, "tensor \"%s\": no data and no producer", t->name);
    for (uint64_t at = 0; at < nbytes; at += WRITE_CHUNK) {
        size_t len = nbytes - at < WRITE_CHUNK ? (size_t)(nbytes - at) : WRITE_CHUNK;
        if (!opt->produce(opt->ctx, index, at, chunk, len, err, errlen) ||
            !write_all(f, chunk, len, path, err, errlen))
            return false;
    }
    return true;
}

/* One .safetensors file: PATH.tmp, then rename, so a reader never sees half a file. */
static bool write_shard(const char *path, const StWriteTensor *tensors, const Shard *s,
                        const uint64_t *sizes, const StWriteOptions *opt, void *chunk, char *err,
                        size_t errlen) {
    StrBuf h = {0};
    header_json(&h, tensors, s, sizes, opt->meta);
    char *tmp = xprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    bool ok = f != NULL;
    if (!ok) errf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    ok = ok && write_all(f, len8, 8, tmp, err, errlen) && write_all(f, h.data, h.len, tmp, err, errlen);
    for (size_t k = 0; ok && k < s->n; k++) {
        size_t i = s->members[k];
        ok = write_tensor_data(f, &tensors[i], i, sizes[i], opt, chunk, tmp, err, errlen);
    }
    if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        ok = errf(err, errlen, "%s: cannot finish writing: %s", tmp, strerror(errno));
    if (f && fclose(f) != 0 && ok) ok = errf(err, errlen, "%s: close failed: %s", tmp, strerror(errno));
    if (ok && rename(tmp, path) != 0)
        ok = errf(err, errlen, "%s: cannot rename into place: %s", path, strerror(errno));
    if (!ok) unlink(tmp);
    free(tmp);
    sb_free(&h);
    return ok;
}

static char *shard_name(const char *base, size_t k, size_t n) {
    if (n == 1) return xprintf("%s.safetensors", base);
    return xprintf("%s-%05zu-of-%05zu.safetensors", base, k + 1, n);
}

/* "BASE-0000K-of-0000N.safetensors" -> N; 0 if s is not such a name. */
static unsigned shard_count_of(const char *s, const char *base) {
    size_t blen = strlen(base);
    if (strncmp(s, base, blen) != 0) return 0;
    s += blen;
    const char *shape = "-#####-of-#####.safetensors";
    unsigned n = 0;
    for (size_t i = 0; shape[i]; i++, s++) {
        if (shape[i] != '#' && *s != shape[i]) return 0;
        if (shape[i] == '#' && (*s < '0' || *s > '9')) return 0;
        if (shape[i] == '#' && i > 9) n = n * 10 + (unsigned)(*s - '0');
    }
    return *s ? 0 : n;
}

/* Remove what a previous save left that loaders would prefer or mix in: the single file when
 * writing shards (transformers looks for it first), the index when writing one file, and shards
 * of another count. */
static void remove_stale(const char *dir, const char *base, size_t n_new) {
    DIR *d = opendir(dir);
    if (!d) return;
    char *single = xprintf("%s.safetensors", base);
    char *index = xprintf("%s.safetensors.index.json", base);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *s = e->d_name;
        unsigned n = shard_count_of(s, base);
        bool stale = (n_new > 1 && strcmp(s, single) == 0) ||
                     (n_new == 1 && strcmp(s, index) == 0) || (n && n != n_new);
        if (stale) {
            char *p = util_path_join(dir, s);
            unlink(p);
            free(p);
        }
    }
    closedir(d);
    free(single);
    free(index);
}

static bool write_index(const char *dir, const char *base, const StWriteTensor *tensors, size_t n,
                        const Shard *shards, size_t n_shards, const uint64_t *sizes, char *err,
                        size_t errlen) {
    // weight_map sorted by name, as transformers writes it
    size_t *order = xmalloc((n ? n : 1) * sizeof *order), *file = xmalloc((n ? n : 1) * sizeof *file);
    uint64_t total = 0;
    for (size_t k = 0; k < n_shards; k++)
        for (size_t j = 0; j < shards[k].n; j++) file[shards[k].members[j]] = k;
    for (size_t i = 0; i < n; i++) order[i] = i, total += sizes[i];
    for (size_t i = 1; i < n; i++) // insertion sort: n is a few thousand at most
        for (size_t j = i; j > 0 && strcmp(tensors[order[j - 1]].name, tensors[order[j]].name) > 0; j--) {
            size_t t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    StrBuf sb = {0};
    sb_printf(&sb, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {\n",
              (unsigned long long)total);
    for (size_t i = 0; i < n; i++) {
        char *fname = shard_name(base, file[order[i]], n_shards);
        sb_puts(&sb, "    ");
        json_escape(&sb, tensors[order[i]].name);
        sb_printf(&sb, ": \"%s\"%s\n", fname, i + 1 < n ? "," : "");
        free(fname);
    }
    sb_puts(&sb, "  }\n}\n");
    char *name = xprintf("%s.safetensors.index.json", base), *path = util_path_join(dir, name);
    bool ok = util_write_file_atomic(path, sb.data, sb.len, 0644, err, errlen);
    free(name), free(path), free(order), free(file);
    sb_free(&sb);
    return ok;
}

bool st_write(const StWriteTensor *tensors, size_t n, const StWriteOptions *opt,
              size_t *n_files_out, char *err, size_t errlen) {
    const char *base = opt->base ? opt->base : "model";
    uint64_t max = opt->max_shard_bytes ? opt->max_shard_bytes : ST_DEFAULT_SHARD_BYTES;
    uint64_t *sizes = xmalloc((n ? n : 1) * sizeof *sizes);
    for (size_t i = 0; i < n; i++)
        if (!tensor_bytes(&tensors[i], &sizes[i], err, errlen)) {
            free(sizes);
            return false;
        }
    size_t n_shards;
    Shard *shards = plan_shards(sizes, n, max, &n_shards);
    for (size_t k = 0; k < n_shards; k++) layout_by_dtype_size(&shards[k], tensors);
    void *chunk = xmalloc(WRITE_CHUNK);
    bool ok = true;
    for (size_t k = 0; ok && k < n_shards; k++) {
        char *fname = shard_name(base, k, n_shards), *path = util_path_join(opt->dir, fname);
        ok = write_shard(path, tensors, &shards[k], sizes, opt, chunk, err, errlen);
        free(fname), free(path);
    }
    if (ok && n_shards > 1)
        ok = write_index(opt->dir, base, tensors, n, shards, n_shards, sizes, err, errlen);
    if (ok) remove_stale(opt->dir, base, n_shards);
    if (ok && n_files_out) *n_files_out = n_shards;
    for (size_t k = 0; k < n_shards; k++) free(shards[k].members);
    free(shards), free(sizes), free(chunk);
    return ok;
}
