/* json.h - strict JSON (RFC 8259) into a read-only tree whose values know their line:col.
 *
 * Used for every JSON that users hand us: config.json, tokenizer.json, safetensors headers,
 * dataset_info.json, dataset records (JSON and JSONL). Hostile input is expected: every
 * failure is a message "NAME:LINE:COL: what; hint" in err, never a crash. Limits: nesting
 * depth JSON_MAX_DEPTH; strings must be valid UTF-8 (escapes included: lone surrogates are
 * rejected, as serde_json does).
 *
 *     char err[ERR_LEN];
 *     JsonDoc *doc = json_parse(text, len, "config.json", err, sizeof err);
 *     if (!doc) { fprintf(stderr, "%s\n", err); exit(1); }
 *     const Json *h = json_get(json_root(doc), "hidden_size");
 *     int64_t hidden; if (!json_as_int(h, &hidden)) ...
 *     json_free(doc);
 */
#ifndef LLFC_JSON_H
#define LLFC_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 512

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct Json Json;
struct Json {
    JsonType type;
    int line, col; /* 1-based position of the value's first character (col counts bytes) */
    union {
        bool boolean;
        struct {
            double f;     /* the value as a double */
            int64_t i;    /* the value as an integer, valid when is_int */
            bool is_int;  /* written without fraction/exponent and fits int64 */
        } num;
        struct {
            const char *s; /* UTF-8, NUL-terminated; may contain NUL (\u0000): use len */
            size_t len;
        } str;
        struct {
            Json **items;
            size_t n;
        } arr;
        struct {
            const char **keys; /* in file order; NUL-terminated UTF-8 */
            size_t *key_lens;
            Json **vals;
            size_t n;
        } obj;
    };
};

typedef struct JsonDoc JsonDoc; /* owns every Json and string of one parse */

/* Parse exactly one JSON value (whitespace around it allowed). `name` is used in messages. */
JsonDoc *json_parse(const char *text, size_t len, const char *name, char *err, size_t errlen);
/* Same, but messages report lines starting at first_line (for one line of a JSONL file). */
JsonDoc *json_parse_at(const char *text, size_t len, const char *name, int first_line, char *err,
                       size_t errlen);
const Json *json_root(const JsonDoc *doc);
void json_free(JsonDoc *doc);

/* Object member by key (the last one if a key repeats, as Python's json does); NULL if obj is
 * not an object or has no such key. */
const Json *json_get(const Json *obj, const char *key);
/* Array item; NULL if arr is not an array or i is out of range. */
const Json *json_at(const Json *arr, size_t i);

/* Typed reads: false if v is NULL or of another type (an integer-valued double such as 2.0
 * is not an int). */
bool json_as_int(const Json *v, int64_t *out);
bool json_as_double(const Json *v, double *out); /* any number */
bool json_as_bool(const Json *v, bool *out);
const char *json_as_str(const Json *v); /* NULL unless a string */

const char *json_type_name(JsonType t); /* "null", "boolean", "number", "string", "array", "object" */

/* Write s as a JSON string literal (with quotes), escaping as needed. */
void json_write_string(FILE *f, const char *s, size_t len);

#endif
