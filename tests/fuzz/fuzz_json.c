/* fuzz_json.c - libFuzzer target for json_parse: any input parses or fails with a
 * "fuzz.json:LINE:COL: ..." message, and a tree that parses is walked whole and checked.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iruntime \
 *       tests/fuzz/fuzz_json.c runtime/json.c runtime/util.c -o fuzz_json
 *   ./fuzz_json -max_total_time=600 /tmp/corpus tests/fuzz/corpus_json
 * (new inputs go to the first folder; keep the checked-in seeds small.)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* open_memstream */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* json_write_string's output parses back to the same bytes. */
static void check_round_trip(const char *s, size_t len) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    CHECK(f);
    json_write_string(f, s, len);
    fclose(f);
    char err[ERR_LEN];
    JsonDoc *doc = json_parse(buf, n, "round-trip", err, sizeof err);
    if (!doc) fprintf(stderr, "%s\n", err);
    CHECK(doc);
    const Json *v = json_root(doc);
    CHECK(v->type == JSON_STRING && v->str.len == len && memcmp(v->str.s, s, len) == 0);
    json_free(doc);
    free(buf);
}

static void check_string(const char *s, size_t len) {
    CHECK(s && s[len] == 0); // NUL-terminated even when it holds NULs
    check_round_trip(s, len);
}

static void walk(const Json *v, int depth) {
    CHECK(v && v->line >= 1 && v->col >= 1 && depth <= JSON_MAX_DEPTH);
    CHECK(json_type_name(v->type)[0] != 'u');
    int64_t i;
    double f;
    bool b;
    CHECK(json_as_bool(v, &b) == (v->type == JSON_BOOL));
    CHECK(json_as_double(v, &f) == (v->type == JSON_NUMBER));
    CHECK((json_as_str(v) != NULL) == (v->type == JSON_STRING));
    switch (v->type) {
    case JSON_NULL:
    case JSON_BOOL: break;
    case JSON_NUMBER:
        CHECK(json_as_int(v, &i) == v->num.is_int);
        CHECK(f == f); // never NaN
        if (v->num.is_int) CHECK((double)v->num.i == v->num.f);
        break;
    case JSON_STRING: check_string(v->str.s, v->str.len); break;
    case JSON_ARRAY:
        CHECK(depth < JSON_MAX_DEPTH);
        CHECK(json_at(v, v->arr.n) == NULL);
        for (size_t k = 0; k < v->arr.n; k++) {
            CHECK(json_at(v, k) == v->arr.items[k]);
            walk(v->arr.items[k], depth + 1);
        }
        break;
    case JSON_OBJECT:
        CHECK(depth < JSON_MAX_DEPTH);
        for (size_t k = 0; k < v->obj.n; k++) {
            const char *key = v->obj.keys[k];
            size_t klen = v->obj.key_lens[k];
            check_string(key, klen);
            // json_get finds the last member whose key equals the C string key
            size_t c = strlen(key), last = k;
            for (size_t m = 0; m < v->obj.n; m++)
                if (v->obj.key_lens[m] == c && memcmp(v->obj.keys[m], key, c) == 0) last = m;
            if (c == klen) CHECK(json_get(v, key) == v->obj.vals[last]);
            walk(v->obj.vals[k], depth + 1);
        }
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // a copy of exactly size bytes, so ASan sees any read past the end
    char *text = malloc(size ? size : 1);
    memcpy(text, data, size);
    char err[ERR_LEN] = "";
    JsonDoc *doc = json_parse(text, size, "fuzz.json", err, sizeof err);
    free(text); // the tree must not point into its input
    if (!doc) {
        int line = 0, col = 0, used = 0;
        CHECK(sscanf(err, "fuzz.json:%d:%d: %n", &line, &col, &used) == 2 && used > 0);
        CHECK(line >= 1 && col >= 1 && err[used] != 0);
        return 0;
    }
    walk(json_root(doc), 0);
    json_free(doc);
    return 0;
}
