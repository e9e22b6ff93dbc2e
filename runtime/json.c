/* json.c - strict RFC 8259 JSON: recursive descent into an arena-owned tree (see json.h).
 *
 * The input is (text, len) and need not be NUL-terminated: no byte at or past text+len is
 * ever read. Every Json, string and child array of one parse lives in the JsonDoc's arena,
 * a short list of big blocks, so a 33 MB tokenizer.json (millions of values) costs a handful
 * of mallocs and json_free is one walk over those blocks.
 *
 * Positions: LINE is 1-based and counts '\n' only; COL is 1-based and counts BYTES from the
 * start of its line, not code points (after "é" a column is one more than Python reports).
 * Newlines can only occur in whitespace (a raw one inside a string is an error), so the
 * parser tracks the current line in skip_ws and any position on it is (line, p - line_start).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l, for builds (the fuzzer's) that do not pass -D_GNU_SOURCE */
#endif
#include "json.h"

#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// --- arena

/* Blocks start at the input's size and double (a tree takes 2-4x its text: gemma3's 33 MB
 * tokenizer.json becomes ~130 MB), so a small JSONL record costs one small malloc and a big
 * file a few big ones; untouched tails of blocks are never paged in. */
#define ARENA_MIN_BLOCK ((size_t)4096)
#define ARENA_MAX_BLOCK ((size_t)64 << 20)

typedef struct Block Block;
struct Block {
    Block *next;
    size_t cap, used;
    max_align_t data[]; /* max_align_t only to align the bytes that follow */
};

typedef struct {
    Block *head;     /* the block being filled; older ones follow */
    size_t next_cap; /* size of the next block */
} Arena;

static Block *arena_grow(Arena *a, size_t n) {
    size_t cap = a->next_cap > n ? a->next_cap : n;
    if (a->next_cap < ARENA_MAX_BLOCK) a->next_cap *= 2;
    Block *b = xmalloc(sizeof *b + cap);
    b->next = a->head;
    b->cap = cap;
    b->used = 0;
    a->head = b;
    return b;
}

/* align is 1 for string bytes, 8 for nodes and pointer arrays */
static void *arena_alloc(Arena *a, size_t n, size_t align) {
    Block *b = a->head;
    size_t at = b ? (b->used + align - 1) & ~(align - 1) : 0;
    if (!b || at > b->cap || b->cap - at < n) {
        b = arena_grow(a, n);
        at = 0;
    }
    b->used = at + n;
    return (char *)b->data + at;
}

static void arena_free(Arena *a) {
    for (Block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}

struct JsonDoc {
    Arena arena;
    Json *root;
};

// --- parser state and errors

/* One member being collected for the innermost open array or object. Children accumulate on
 * one shared stack and are copied into exact-size arena arrays when their container closes,
 * so no container ever reallocs. */
typedef struct {
    const char *key; /* NULL for array items */
    size_t klen;
    Json *val;
} Slot;

typedef struct {
    const char *p, *end;
    const char *name;
    int line;               /* line of p */
    const char *line_start; /* first byte of that line */
    int depth;
    Arena *arena;
    Slot *stack;
    size_t nstack, capstack;
    char *err;
    size_t errlen;
} Parser;

static int col_of(const Parser *P, const char *at) {
    size_t col = (size_t)(at - P->line_start) + 1;
    return col > INT_MAX ? INT_MAX : (int)col;
}

/* Writes "NAME:LINE:COL: message" and returns NULL, so parsers can `return fail(...)`. */
PRINTF_LIKE(4, 5)
static void *fail_lc(Parser *P, int line, int col, const char *fmt, ...) {
    char msg[ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    errf(P->err, P->errlen, "%s:%d:%d: %s", P->name, line, col, msg);
    return NULL;
}

#define fail(P, at, ...) fail_lc((P), (P)->line, col_of((P), (at)), __VA_ARGS__)

/* "'x'", "byte 0xNN" or "end of input", for messages about what was found at p */
static const char *describe(const Parser *P, const char *p, char buf[16]) {
    if (p >= P->end) return "end of input";
    unsigned char c = (unsigned char)*p;
    if (c > 0x20 && c < 0x7F) snprintf(buf, 16, "'%c'", c);
    else snprintf(buf, 16, "byte 0x%02X", c);
    return buf;
}

static bool starts_with(const Parser *P, const char *p, const char *lit) {
    size_t n = strlen(lit);
    return (size_t)(P->end - p) >= n && memcmp(p, lit, n) == 0;
}

/* The usual mistakes people bring from JavaScript, Python or editors get their own hint. */
static const char *hint_for(const Parser *P, const char *p) {
    if (p >= P->end) return "";
    if (*p == '/') return "; comments are not allowed in JSON";
    if (*p == '\'') return "; JSON strings use double quotes";
    if (starts_with(P, p, "NaN") || starts_with(P, p, "Infinity"))
        return "; NaN and Infinity are not valid JSON";
    if (starts_with(P, p, "True") || starts_with(P, p, "False") || starts_with(P, p, "None"))
        return "; JSON's literals are true, false and null";
    return "";
}

/* "expected WHAT, found X[; hint]" at p */
static void *fail_expected(Parser *P, const char *p, const char *what) {
    char buf[16];
    return fail(P, p, "expected %s, found %s%s", what, describe(P, p, buf), hint_for(P, p));
}

static void skip_ws(Parser *P) {
    const char *p = P->p, *end = P->end;
    for (; p < end; p++) {
        char c = *p;
        if (c == '\n') {
            if (P->line < INT_MAX) P->line++;
            P->line_start = p + 1;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            break;
        }
    }
    P->p = p;
}

static bool at_char(const Parser *P, char c) { return P->p < P->end && *P->p == c; }

static void push(Parser *P, const char *key, size_t klen, Json *val) {
    if (P->nstack == P->capstack) {
        P->capstack = P->capstack ? 2 * P->capstack : 256;
        P->stack = xrealloc(P->stack, P->capstack * sizeof *P->stack);
    }
    P->stack[P->nstack++] = (Slot){key, klen, val};
}

static Json *parse_value(Parser *P);

// --- strings

/* Length of the valid UTF-8 sequence at p, or 0 if it is invalid or cut off by end.
 * Valid means RFC 3629's table: no overlong forms, no UTF-16 surrogates (U+D800..U+DFFF),
 * nothing above U+10FFFF. The second byte's range is what rules those out. */
static size_t utf8_seq_len(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0], lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    size_t n;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0; /* below: overlong */
        if (c == 0xED) hi = 0x9F; /* above: surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90; /* below: overlong */
        if (c == 0xF4) hi = 0x8F; /* above: beyond U+10FFFF */
    } else {
        return 0; /* continuation byte, overlong lead C0/C1, or F5..FF */
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return n;
}

static char *put_utf8(char *w, uint32_t cp) {
    if (cp < 0x80) {
        *w++ = (char)cp;
    } else if (cp < 0x800) {
        *w++ = (char)(0xC0 | cp >> 6);
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xE0 | cp >> 12);
        *w++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *w++ = (char)(0xF0 | cp >> 18);
        *w++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *w++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    }
    return w;
}

/* The 4 hex digits of a \u escape at p (just after "\u"), or -1. */
static long hex4(const char *p, const char *end) {
    if (end - p < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* \uXXXX, or a surrogate pair \uD83D\uDE00 that makes one code point. A surrogate on its own
 * is rejected (it has no UTF-8 form; serde_json, which reads tokenizer.json in Python's
 * tokenizers, rejects it too). esc is at the backslash; returns the byte after the escape,
 * or NULL with the error written. */
static const char *parse_u_escape(Parser *P, const char *esc, char **wp) {
    const char *p = esc + 2;
    long cp = hex4(p, P->end);
    if (cp < 0) return fail(P, esc, "invalid \\u escape; expected 4 hex digits after \\u");
    p += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail(P, esc,
                    "lone surrogate \\u%04lX in string (a low surrogate must follow a high one)",
                    cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        long lo = P->end - p >= 2 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2, P->end) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return fail(P, esc,
                        "lone surrogate \\u%04lX in string (a high surrogate must be followed by "
                        "\\uDC00-\\uDFFF)",
                        cp);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
    }
    *wp = put_utf8(*wp, (uint32_t)cp);
    return p;
}

/* One escape at p (the backslash): appends its bytes at *wp, returns the byte after it. */
static const char *parse_escape(Parser *P, const char *p, char **wp) {
    char c = p[1], out; /* parse_string made sure there is a byte after the backslash */
    switch (c) {
    case '"': out = '"'; break;
    case '\\': out = '\\'; break;
    case '/': out = '/'; break;
    case 'b': out = '\b'; break;
    case 'f': out = '\f'; break;
    case 'n': out = '\n'; break;
    case 'r': out = '\r'; break;
    case 't': out = '\t'; break;
    case 'u': return parse_u_escape(P, p, wp);
    default: {
        char buf[16];
        return fail(P, p, "invalid escape in string: '\\' followed by %s",
                    describe(P, p + 1, buf));
    }
    }
    *(*wp)++ = out;
    return p + 2;
}

/* Where the string starting at p (after the opening quote) can end at the latest: its closing
 * quote, or the first control character or end of input, which are errors that parse_string
 * reaches at or before this point. An escape never makes more bytes than it was written
 * with, so (stop - p) + 1 bytes always hold the decoded string and its NUL. */
static const char *string_extent(const char *p, const char *end) {
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c < 0x20) break;
        p += c == '\\' && p + 1 < end && (unsigned char)p[1] >= 0x20 ? 2 : 1;
    }
    return p;
}

/* string = '"' *char '"'
 * char   = any valid UTF-8 except '"', '\' and U+0000..U+001F
 *        | '\' ( '"' | '\' | '/' | 'b' | 'f' | 'n' | 'r' | 't' | 'u' 4HEXDIG )
 * P->p is at the opening quote; on success it is just past the closing one. Returns the
 * decoded string (NUL-terminated, its length in *len) or NULL with the error written. */
static const char *parse_string(Parser *P, size_t *len) {
    const char *quote = P->p, *p = quote + 1, *end = P->end;
    char *buf = arena_alloc(P->arena, (size_t)(string_extent(p, end) - p) + 1, 1);
    char *w = buf;
    for (;;) {
        // an escape needs the byte after its backslash: without one the string never ends
        if (p >= end || (*p == '\\' && p + 1 == end))
            return fail(P, quote, "unterminated string; missing closing '\"'");
        unsigned char c = (unsigned char)*p;
        if (c == '"') break;
        if (c == '\\') {
            p = parse_escape(P, p, &w);
            if (!p) return NULL;
        } else if (c < 0x20) {
            return fail(P, p, "unescaped control character U+%04X in string%s", c,
                        c == '\n' ? "; missing closing '\"'? (write a line break as \\n)" : "");
        } else if (c < 0x80) {
            *w++ = (char)c;
            p++;
        } else {
            size_t n = utf8_seq_len((const unsigned char *)p, (const unsigned char *)end);
            if (!n) return fail(P, p, "invalid UTF-8 in string (byte 0x%02X)", c);
            memcpy(w, p, n);
            w += n;
            p += n;
        }
    }
    *w = 0;
    *len = (size_t)(w - buf);
    P->p = p + 1;
    return buf;
}

// --- numbers

static bool is_digit(const Parser *P, const char *p) {
    return p < P->end && *p >= '0' && *p <= '9';
}

/* The integer in [s, e) (optional '-', digits) if it fits int64. */
static bool to_int64(const char *s, const char *e, int64_t *out) {
    bool neg = *s == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (const char *p = s + neg; p < e; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (limit - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = neg ? -(int64_t)(v - 1) - 1 : (int64_t)v; /* v - 1 first: 2^63 has no int64 */
    return true;
}

static locale_t c_locale;
static void make_c_locale(void) {
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (!c_locale) util_fatal("newlocale(\"C\") failed");
}

/* strtod reads '.' as the decimal point only in the C locale; strtod_l pins that locale so a
 * host program's setlocale() cannot change what "0.5" means. Numbers are copied because the
 * input is not NUL-terminated (and may be a digit string megabytes long). */
static double to_double(const char *s, size_t n) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_c_locale);
    char small[64], *buf = n < sizeof small ? small : xmalloc(n + 1);
    memcpy(buf, s, n);
    buf[n] = 0;
    double f = strtod_l(buf, NULL, c_locale);
    if (buf != small) free(buf);
    return f;
}

/* number = [ '-' ] int [ frac ] [ exp ]
 * int    = '0' | [1-9] *DIGIT ;  frac = '.' 1*DIGIT ;  exp = ('e' | 'E') [ '+' | '-' ] 1*DIGIT */
static Json *parse_number(Parser *P, Json *v) {
    const char *s = P->p, *p = s;
    bool is_int = true;
    if (*p == '-') p++;
    if (!is_digit(P, p)) return fail_expected(P, p, "a digit after '-'");
    if (*p == '0' && is_digit(P, p + 1))
        return fail(P, s, "leading zeros are not allowed in numbers");
    while (is_digit(P, p)) p++;
    if (p < P->end && *p == '.') {
        is_int = false;
        if (!is_digit(P, ++p)) return fail_expected(P, p, "a digit after '.'");
        while (is_digit(P, p)) p++;
    }
    if (p < P->end && (*p == 'e' || *p == 'E')) {
        is_int = false;
        p++;
        if (p < P->end && (*p == '+' || *p == '-')) p++;
        if (!is_digit(P, p)) return fail_expected(P, p, "a digit in the exponent");
        while (is_digit(P, p)) p++;
    }
    P->p = p;
    v->type = JSON_NUMBER;
    // (double)i is correctly rounded, so ints need no strtod; "-0" keeps its sign as a double
    if (is_int && to_int64(s, p, &v->num.i)) {
        v->num.is_int = true;
        v->num.f = *s == '-' && v->num.i == 0 ? -0.0 : (double)v->num.i;
        return v;
    }
    v->num.is_int = false;
    v->num.f = to_double(s, (size_t)(p - s));
    // underflow to 0 or a subnormal is fine (Python agrees); overflow to inf is not a number
    if (isinf(v->num.f)) return fail(P, s, "number out of range (beyond double's ~1.8e308)");
    return v;
}

// --- values, arrays, objects

static bool enter(Parser *P, const char *at) {
    if (++P->depth <= JSON_MAX_DEPTH) return true;
    fail(P, at, "nesting deeper than %d levels of arrays and objects", JSON_MAX_DEPTH);
    return false;
}

/* Moves the slots above `base` into v's arrays. */
static void close_container(Parser *P, Json *v, size_t base) {
    size_t n = P->nstack - base;
    P->nstack = base;
    P->depth--;
    if (n == 0) return; /* n = 0 and NULL arrays, from parse_value's memset */
    const Slot *s = P->stack + base;
    if (v->type == JSON_ARRAY) {
        v->arr.n = n;
        v->arr.items = arena_alloc(P->arena, n * sizeof(Json *), 8);
        for (size_t i = 0; i < n; i++) v->arr.items[i] = s[i].val;
        return;
    }
    v->obj.n = n;
    v->obj.keys = arena_alloc(P->arena, n * sizeof(char *), 8);
    v->obj.key_lens = arena_alloc(P->arena, n * sizeof(size_t), 8);
    v->obj.vals = arena_alloc(P->arena, n * sizeof(Json *), 8);
    for (size_t i = 0; i < n; i++) {
        v->obj.keys[i] = s[i].key;
        v->obj.key_lens[i] = s[i].klen;
        v->obj.vals[i] = s[i].val;
    }
}

/* After ',' comes another member; "," then the closer is the classic trailing comma, which
 * gets its own message at the comma. */
static bool trailing_comma(Parser *P, int line, int col, char closer) {
    if (!at_char(P, closer)) return false;
    fail_lc(P, line, col, "trailing comma before '%c'", closer);
    return true;
}

/* array = '[' [ value *( ',' value ) ] ']' */
static Json *parse_array(Parser *P, Json *v) {
    if (!enter(P, P->p)) return NULL;
    v->type = JSON_ARRAY;
    size_t base = P->nstack;
    P->p++;
    skip_ws(P);
    if (at_char(P, ']')) {
        P->p++;
        close_container(P, v, base);
        return v;
    }
    for (;;) {
        Json *item = parse_value(P);
        if (!item) return NULL;
        push(P, NULL, 0, item);
        skip_ws(P);
        if (at_char(P, ']')) break;
        if (!at_char(P, ',')) return fail_expected(P, P->p, "',' or ']' after array item");
        int line = P->line, col = col_of(P, P->p);
        P->p++;
        skip_ws(P);
        if (trailing_comma(P, line, col, ']')) return NULL;
    }
    P->p++;
    close_container(P, v, base);
    return v;
}

/* object = '{' [ member *( ',' member ) ] '}' ;  member = string ':' value */
static Json *parse_object(Parser *P, Json *v) {
    if (!enter(P, P->p)) return NULL;
    v->type = JSON_OBJECT;
    size_t base = P->nstack;
    P->p++;
    skip_ws(P);
    if (at_char(P, '}')) {
        P->p++;
        close_container(P, v, base);
        return v;
    }
    for (;;) {
        if (!at_char(P, '"')) return fail_expected(P, P->p, "a string key");
        size_t klen;
        const char *key = parse_string(P, &klen);
        if (!key) return NULL;
        skip_ws(P);
        if (!at_char(P, ':')) return fail_expected(P, P->p, "':' after object key");
        P->p++;
        Json *val = parse_value(P);
        if (!val) return NULL;
        push(P, key, klen, val);
        skip_ws(P);
        if (at_char(P, '}')) break;
        if (!at_char(P, ',')) return fail_expected(P, P->p, "',' or '}' after object member");
        int line = P->line, col = col_of(P, P->p);
        P->p++;
        skip_ws(P);
        if (trailing_comma(P, line, col, '}')) return NULL;
    }
    P->p++;
    close_container(P, v, base);
    return v;
}

static Json *parse_literal(Parser *P, Json *v, const char *word, JsonType type, bool b) {
    if (!starts_with(P, P->p, word)) return fail(P, P->p, "invalid literal; expected '%s'", word);
    P->p += strlen(word);
    v->type = type;
    v->boolean = b;
    return v;
}

/* value = object | array | string | number | 'true' | 'false' | 'null' (whitespace before) */
static Json *parse_value(Parser *P) {
    skip_ws(P);
    Json *v = arena_alloc(P->arena, sizeof *v, 8);
    memset(v, 0, sizeof *v);
    v->line = P->line;
    v->col = col_of(P, P->p);
    if (P->p >= P->end) return fail_expected(P, P->p, "a JSON value");
    switch (*P->p) {
    case '{': return parse_object(P, v);
    case '[': return parse_array(P, v);
    case '"':
        v->type = JSON_STRING;
        v->str.s = parse_string(P, &v->str.len);
        return v->str.s ? v : NULL;
    case 't': return parse_literal(P, v, "true", JSON_BOOL, true);
    case 'f': return parse_literal(P, v, "false", JSON_BOOL, false);
    case 'n': return parse_literal(P, v, "null", JSON_NULL, false);
    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9': return parse_number(P, v);
    default: return fail_expected(P, P->p, "a JSON value");
    }
}

// --- documents

static Json *parse_document(Parser *P) {
    if (starts_with(P, P->p, "\xEF\xBB\xBF"))
        return fail(P, P->p,
                    "byte order mark (U+FEFF) at the start; save the file as UTF-8 without BOM");
    skip_ws(P);
    if (P->p >= P->end) return fail(P, P->p, "empty document; expected a JSON value");
    Json *root = parse_value(P);
    if (!root) return NULL;
    skip_ws(P);
    if (P->p < P->end) return fail_expected(P, P->p, "end of input after the JSON value");
    return root;
}

JsonDoc *json_parse_at(const char *text, size_t len, const char *name, int first_line, char *err,
                       size_t errlen) {
    if (!text) text = ""; /* (NULL, 0): NULL + 0 is undefined in C */
    JsonDoc *doc = xcalloc(1, sizeof *doc);
    doc->arena.next_cap = len < ARENA_MIN_BLOCK ? ARENA_MIN_BLOCK : len;
    if (doc->arena.next_cap > ARENA_MAX_BLOCK) doc->arena.next_cap = ARENA_MAX_BLOCK;
    Parser P = {
        .p = text,
        .end = text + len,
        .name = name ? name : "<json>",
        .line = first_line,
        .line_start = text,
        .arena = &doc->arena,
        .err = err,
        .errlen = errlen,
    };
    doc->root = parse_document(&P);
    free(P.stack);
    if (!doc->root) {
        json_free(doc);
        return NULL;
    }
    return doc;
}

JsonDoc *json_parse(const char *text, size_t len, const char *name, char *err, size_t errlen) {
    return json_parse_at(text, len, name, 1, err, errlen);
}

const Json *json_root(const JsonDoc *doc) { return doc ? doc->root : NULL; }

void json_free(JsonDoc *doc) {
    if (!doc) return;
    arena_free(&doc->arena);
    free(doc);
}

// --- reading the tree

const Json *json_get(const Json *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT || !key) return NULL;
    size_t klen = strlen(key);
    // from the end: the last of repeated keys wins, as in Python's json
    for (size_t i = obj->obj.n; i-- > 0;)
        if (obj->obj.key_lens[i] == klen && memcmp(obj->obj.keys[i], key, klen) == 0)
            return obj->obj.vals[i];
    return NULL;
}

const Json *json_at(const Json *arr, size_t i) {
    if (!arr || arr->type != JSON_ARRAY || i >= arr->arr.n) return NULL;
    return arr->arr.items[i];
}

bool json_as_int(const Json *v, int64_t *out) {
    if (!v || v->type != JSON_NUMBER || !v->num.is_int) return false;
    *out = v->num.i;
    return true;
}

bool json_as_double(const Json *v, double *out) {
    if (!v || v->type != JSON_NUMBER) return false;
    *out = v->num.f;
    return true;
}

bool json_as_bool(const Json *v, bool *out) {
    if (!v || v->type != JSON_BOOL) return false;
    *out = v->boolean;
    return true;
}

const char *json_as_str(const Json *v) { return v && v->type == JSON_STRING ? v->str.s : NULL; }

const char *json_type_name(JsonType t) {
    static const char *const names[] = {"null", "boolean", "number", "string", "array", "object"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

// --- writing

/* Escapes '"', '\' and U+0000..U+001F (short forms where JSON has them, else \u00XX) and
 * copies valid UTF-8 through unchanged. A byte that is not valid UTF-8 is written as U+FFFD,
 * so the output is always JSON that json_parse (and Python) accept. */
void json_write_string(FILE *f, const char *s, size_t len) {
    if (!s) { /* (NULL, 0): NULL + 0 is undefined in C */
        s = "";
        len = 0;
    }
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
    putc('"', f);
    while (p < end) {
        unsigned c = *p;
        size_t n; /* bytes that go out as they are */
        if (c >= 0x80) n = utf8_seq_len(p, end); /* 0 if not valid UTF-8 */
        else n = c >= 0x20 && c != '"' && c != '\\';
        if (n) {
            p += n;
            continue;
        }
        fwrite(run, 1, (size_t)(p - run), f);
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20) fprintf(f, "\\u%04X", c);
            else fputs("\xEF\xBF\xBD", f); /* U+FFFD REPLACEMENT CHARACTER */
        }
        run = ++p;
    }
    fwrite(run, 1, (size_t)(p - run), f);
    putc('"', f);
}
