/* tok_regex.c - the patterns of tokenizer.json (Split, Replace) on PCRE2, with UTF and
 * Unicode properties, JIT-compiled.
 *
 * HF compiles these patterns with Oniguruma in its Ruby syntax. The two engines are both
 * backtracking, leftmost-first Perl-style engines and agree on the patterns tokenizers use;
 * where their meaning of a construct differs we rewrite it (tok_regex_translate):
 *   \s \S   Oniguruma: White_Space.  PCRE2 adds U+180E (it is in PCRE2's \h).
 *   \w \W   Oniguruma: Letter | Mark | Number | Connector_Punctuation.  PCRE2: L, N and "_".
 *   \b \B   boundaries between Oniguruma's \w and the rest, as lookarounds.
 *   \p{L} .. (general categories, and \d \w built on them): Oniguruma has Unicode 16, PCRE2
 *           10.42 Unicode 14; the characters 15 and 16 added are listed into the class.
 *           (Inside a class, a negated one such as [\P{L}x] keeps PCRE2's meaning.)
 *   \h \H   Oniguruma: a hex digit.  PCRE2: horizontal space.
 *   \uHHHH  Oniguruma only; PCRE2 spells it \x{HHHH}.
 *   (?m)    Ruby: dot matches newline, which is PCRE2's (?s).
 *   ^ $     Ruby: always line anchors: we compile with PCRE2_MULTILINE.
 * Matches are iterated as the `onig` crate's find_iter does, which HF's Pattern impl uses.
 */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

// --- Oniguruma (Ruby syntax) -> PCRE2

/* General categories as bits over tok_ugc_names ("Lu" = bit 0 ... "Co" = bit 27). */
#define GC_L 0x1Fu         /* Lu Ll Lt Lm Lo */
#define GC_LC 0x07u        /* Lu Ll Lt */
#define GC_M (0x7u << 5)   /* Mn Mc Me */
#define GC_N (0x7u << 8)   /* Nd Nl No */
#define GC_ND (1u << 8)
#define GC_PC (1u << 11)
#define GC_P (0x7Fu << 11) /* Pc Pd Ps Pe Pi Pf Po */
#define GC_S (0xFu << 18)  /* Sm Sc Sk So */
#define GC_Z (0x7u << 22)  /* Zs Zl Zp */
#define GC_CF (1u << 26)

static const struct {
    const char *name; /* lowercase, without spaces, '-' and '_' (Oniguruma's loose matching) */
    uint32_t mask;
} gc_names[] = {
    {"l", GC_L},           {"letter", GC_L},
    {"lc", GC_LC},         {"l&", GC_LC},
    {"casedletter", GC_LC}, {"lu", 1u << 0},
    {"uppercaseletter", 1u << 0}, {"ll", 1u << 1},
    {"lowercaseletter", 1u << 1}, {"lt", 1u << 2},
    {"titlecaseletter", 1u << 2}, {"lm", 1u << 3},
    {"modifierletter", 1u << 3}, {"lo", 1u << 4},
    {"otherletter", 1u << 4}, {"m", GC_M},
    {"mark", GC_M},        {"combiningmark", GC_M},
    {"mn", 1u << 5},       {"nonspacingmark", 1u << 5},
    {"mc", 1u << 6},       {"spacingmark", 1u << 6},
    {"me", 1u << 7},       {"enclosingmark", 1u << 7},
    {"n", GC_N},           {"number", GC_N},
    {"nd", GC_ND},         {"decimalnumber", GC_ND},
    {"digit", GC_ND},      {"nl", 1u << 9},
    {"letternumber", 1u << 9}, {"no", 1u << 10},
    {"othernumber", 1u << 10}, {"p", GC_P},
    {"punctuation", GC_P}, {"pc", GC_PC},
    {"connectorpunctuation", GC_PC}, {"pd", 1u << 12},
    {"dashpunctuation", 1u << 12}, {"ps", 1u << 13},
    {"openpunctuation", 1u << 13}, {"pe", 1u << 14},
    {"closepunctuation", 1u << 14}, {"pi", 1u << 15},
    {"initialpunctuation", 1u << 15}, {"pf", 1u << 16},
    {"finalpunctuation", 1u << 16}, {"po", 1u << 17},
    {"otherpunctuation", 1u << 17}, {"s", GC_S},
    {"symbol", GC_S},      {"sm", 1u << 18},
    {"mathsymbol", 1u << 18}, {"sc", 1u << 19},
    {"currencysymbol", 1u << 19}, {"sk", 1u << 20},
    {"modifiersymbol", 1u << 20}, {"so", 1u << 21},
    {"othersymbol", 1u << 21}, {"z", GC_Z},
    {"separator", GC_Z},   {"zs", 1u << 22},
    {"spaceseparator", 1u << 22}, {"cf", GC_CF},
    {"format", GC_CF},
};

static uint32_t gc_mask(const char *name, size_t len) {
    char key[48];
    size_t k = 0;
    for (size_t i = 0; i < len && k + 1 < sizeof key; i++) {
        char c = name[i];
        if (c == ' ' || c == '-' || c == '_') continue;
        key[k++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    key[k] = 0;
    for (size_t i = 0; i < sizeof gc_names / sizeof gc_names[0]; i++)
        if (!strcmp(key, gc_names[i].name)) return gc_names[i].mask;
    return 0;
}

/* Class items for a set of general categories: PCRE2's properties (its Unicode 14 tables)
 * plus the characters Unicode 15 and 16 added to them, which Oniguruma knows. */
static void put_gc_items(StrBuf *out, uint32_t mask) {
    static const struct {
        uint32_t mask;
        const char *name;
    } majors[] = {{GC_L, "L"}, {GC_M, "M"}, {GC_N, "N"}, {GC_P, "P"}, {GC_S, "S"}, {GC_Z, "Z"}};
    uint32_t left = mask;
    for (size_t i = 0; i < sizeof majors / sizeof majors[0]; i++)
        if ((left & majors[i].mask) == majors[i].mask) {
            sb_printf(out, "\\p{%s}", majors[i].name);
            left &= ~majors[i].mask;
        }
    for (int b = 0; b < 28; b++)
        if (left & (1u << b)) sb_printf(out, "\\p{%s}", tok_ugc_names[b]);
    for (size_t i = 0; i < tok_unew_count; i++) {
        const uint32_t *r = tok_unew_ranges[i];
        if (!(mask & (1u << r[2]))) continue;
        if (r[0] == r[1])
            sb_printf(out, "\\x{%X}", r[0]);
        else
            sb_printf(out, "\\x{%X}-\\x{%X}", r[0], r[1]);
    }
}

/* A category set as a whole class ("[...]" or "[^...]"), or as items inside one. */
static void put_gc_class(StrBuf *out, uint32_t mask, bool negated, bool in_class,
                         const char *fallback) {
    if (in_class && negated) { /* cannot subtract inside a class: PCRE2's own meaning */
        sb_puts(out, fallback);
        return;
    }
    if (!in_class) sb_puts(out, negated ? "[^" : "[");
    put_gc_items(out, mask);
    if (!in_class) sb_puts(out, "]");
}

#define ONIG_SPACE "\\t-\\r\\x{85}\\p{Z}"
#define ONIG_HEX "0-9a-fA-F"
#define ONIG_NOT_HEX "\\x{0}-/:-@G-`g-\\x{10FFFF}"
#define ONIG_WORD (GC_L | GC_M | GC_N | GC_PC)

static bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* \p{Name}, \P{Name}, \p{^Name} at p[i]; returns the bytes consumed, 0 if not a category. */
static size_t translate_property(const char *p, size_t i, size_t len, bool in_class,
                                 StrBuf *out) {
    if (i + 2 >= len || p[i + 2] != '{') return 0;
    const char *close = memchr(p + i + 3, '}', len - i - 3);
    if (!close) return 0;
    const char *name = p + i + 3;
    bool negated = p[i + 1] == 'P';
    if (name < close && *name == '^') negated = !negated, name++;
    uint32_t mask = gc_mask(name, (size_t)(close - name));
    if (!mask) return 0;
    size_t n = (size_t)(close - (p + i)) + 1;
    char fallback[64];
    snprintf(fallback, sizeof fallback, "%.*s", (int)(n < 63 ? n : 63), p + i);
    put_gc_class(out, mask, negated, in_class, fallback);
    return n;
}

/* One escape: p[i] == '\\'. Returns the bytes consumed. */
static size_t translate_escape(const char *p, size_t i, size_t len, bool in_class, StrBuf *out) {
    if (i + 1 >= len) {
        sb_append(out, "\\", 1);
        return 1;
    }
    char c = p[i + 1], two[3] = {'\\', c, 0};
    switch (c) {
    case 's':
        sb_puts(out, in_class ? ONIG_SPACE : "[" ONIG_SPACE "]");
        return 2;
    case 'S':
        sb_puts(out, in_class ? "\\S" : "[^" ONIG_SPACE "]");
        return 2;
    case 'w':
    case 'W':
        put_gc_class(out, ONIG_WORD, c == 'W', in_class, two);
        return 2;
    case 'd':
    case 'D':
        put_gc_class(out, GC_ND, c == 'D', in_class, two);
        return 2;
    case 'b':
    case 'B': /* word boundaries by Oniguruma's \w (marks included); in a class: backspace */
        if (in_class) break;
        /* \b: (?<=w)(?!w) | (?<!w)(?=w);  \B: (?<=w)(?=w) | (?<!w)(?!w) */
        sb_puts(out, "(?:(?<=");
        put_gc_class(out, ONIG_WORD, false, false, two);
        sb_puts(out, c == 'b' ? ")(?!" : ")(?=");
        put_gc_class(out, ONIG_WORD, false, false, two);
        sb_puts(out, ")|(?<!");
        put_gc_class(out, ONIG_WORD, false, false, two);
        sb_puts(out, c == 'b' ? ")(?=" : ")(?!");
        put_gc_class(out, ONIG_WORD, false, false, two);
        sb_puts(out, "))");
        return 2;
    case 'h':
        sb_puts(out, in_class ? ONIG_HEX : "[" ONIG_HEX "]");
        return 2;
    case 'H':
        sb_puts(out, in_class ? ONIG_NOT_HEX : "[^" ONIG_HEX "]");
        return 2;
    case 'p':
    case 'P': {
        size_t n = translate_property(p, i, len, in_class, out);
        if (n) return n;
        break;
    }
    case 'u':
        if (i + 5 < len && is_hex(p[i + 2]) && is_hex(p[i + 3]) && is_hex(p[i + 4]) &&
            is_hex(p[i + 5])) {
            sb_printf(out, "\\x{%.4s}", p + i + 2);
            return 6;
        }
        break;
    default:
        break;
    }
    sb_append(out, p + i, 2); /* as is */
    return 2;
}

/* "(?flags:" or "(?flags)" at p[i]: Ruby's m is PCRE2's s. Returns bytes consumed, 0 if not. */
static size_t translate_flags(const char *p, size_t i, size_t len, StrBuf *out) {
    size_t j = i + 2;
    while (j < len && strchr("imx-", p[j]) && p[j]) j++;
    if (j == i + 2 || j >= len || (p[j] != ':' && p[j] != ')')) return 0;
    sb_append(out, "(?", 2);
    for (size_t k = i + 2; k < j; k++) sb_append(out, p[k] == 'm' ? "s" : p + k, 1);
    return j - i;
}

void tok_regex_translate(const char *p, size_t len, StrBuf *out) {
    bool in_class = false;
    size_t class_start = 0; /* where the current class's items begin */
    for (size_t i = 0; i < len;) {
        char c = p[i];
        if (c == '\\') {
            i += translate_escape(p, i, len, in_class, out);
        } else if (!in_class && c == '[') {
            in_class = true;
            sb_append(out, "[", 1);
            i++;
            if (i < len && p[i] == '^') sb_append(out, "^", 1), i++;
            class_start = i;
        } else if (in_class && c == '[' && i + 1 < len && p[i + 1] == ':') {
            const char *end = memchr(p + i, ']', len - i); /* a POSIX class [:alpha:] */
            size_t n = end ? (size_t)(end - (p + i)) + 1 : len - i;
            sb_append(out, p + i, n);
            i += n;
        } else if (in_class && c == ']' && i != class_start) {
            in_class = false;
            sb_append(out, "]", 1);
            i++;
        } else if (!in_class && c == '(' && i + 1 < len && p[i + 1] == '?') {
            size_t n = translate_flags(p, i, len, out);
            if (!n) sb_append(out, p + i, n = 2);
            i += n;
        } else {
            sb_append(out, p + i, 1);
            i++;
        }
    }
    if (!out->data) sb_append(out, "", 0);
}

// --- compiling

static bool compile(TokPattern *p, const char *pattern, size_t len, uint32_t options,
                    const char *shown, char *err, size_t errlen) {
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc) util_fatal("out of memory creating a PCRE2 compile context");
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int code;
    PCRE2_SIZE at;
    p->code = pcre2_compile((PCRE2_SPTR)pattern, len, options | PCRE2_UTF | PCRE2_UCP, &code, &at,
                            cc);
    pcre2_compile_context_free(cc);
    if (!p->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return errf(err, errlen, "regex /%s/ does not compile (PCRE2: %s at offset %zu)", shown,
                    (const char *)msg, (size_t)at);
    }
    pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE); /* without JIT it still works, slower */
    return true;
}

bool tok_pattern_compile(TokPattern *p, const char *text, size_t len, bool regex, char *err,
                         size_t errlen) {
    *p = (TokPattern){0};
    if (!regex && len > 0) {
        p->literal = xstrndup(text, len);
        p->literal_len = len;
        return true;
    }
    if (!regex) /* the empty literal: HF runs it as an (empty) regex; so do we */
        return compile(p, "", 0, PCRE2_LITERAL, "", err, errlen);
    StrBuf t = {0};
    tok_regex_translate(text, len, &t);
    bool ok = compile(p, t.data, t.len, PCRE2_MULTILINE, text, err, errlen);
    sb_free(&t);
    return ok;
}

void tok_pattern_free(TokPattern *p) {
    if (p->code) pcre2_code_free(p->code);
    free(p->literal);
    *p = (TokPattern){0};
}

// --- matching

/* The match data and JIT stack of a scratch, made on its first match. */
static void scratch_pcre2(TokScratch *s) {
    s->md = pcre2_match_data_create(1, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    if (!s->md || !s->mctx) util_fatal("out of memory creating PCRE2 match data");
    s->jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (s->jit) pcre2_jit_stack_assign(s->mctx, NULL, s->jit);
}

bool tok_regex_match_at(const pcre2_code *code, TokScratch *s, const char *text, size_t len,
                        size_t start, size_t *ms, size_t *me, bool *found, char *err,
                        size_t errlen) {
    if (!s->md) scratch_pcre2(s);
    int rc = pcre2_match(code, (PCRE2_SPTR)text, len, start, PCRE2_NO_UTF_CHECK, s->md, s->mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the interpreter keeps its stack on the heap */
        rc = pcre2_match(code, (PCRE2_SPTR)text, len, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                         s->md, s->mctx);
    if (rc == PCRE2_ERROR_NOMATCH) {
        *found = false;
        return true;
    }
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return errf(err, errlen, "tokenizer regex failed on a text of %zu bytes (PCRE2: %s)", len,
                    (const char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
    *ms = ov[0];
    *me = ov[1];
    *found = true;
    return true;
}

/* The spans of a literal: its non-overlapping occurrences, leftmost first. */
static void literal_matches(const TokPattern *p, const char *text, size_t len, TokSpans *out) {
    size_t prev = 0, at = 0;
    while (at + p->literal_len <= len) {
        const char *hit = memmem(text + at, len - at, p->literal, p->literal_len);
        if (!hit) break;
        size_t start = (size_t)(hit - text);
        if (prev != start) tok_spans_push(out, prev, start, false);
        tok_spans_push(out, start, start + p->literal_len, true);
        prev = at = start + p->literal_len;
    }
    if (prev != len) tok_spans_push(out, prev, len, false);
}

/* The spans of a character class: every character in it is a match of its own. */
static void class_matches(const TokPattern *p, const char *text, size_t len, TokSpans *out) {
    size_t prev = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = tok_utf8_next(text, i, &cp);
        if (p->char_class(cp)) {
            if (prev < i) tok_spans_push(out, prev, i, false);
            tok_spans_push(out, i, i + n, true);
            prev = i + n;
        }
        i += n;
    }
    if (prev < len) tok_spans_push(out, prev, len, false);
}

bool tok_pattern_find_matches(const TokPattern *p, TokScratch *s, const char *text, size_t len,
                              TokSpans *out, char *err, size_t errlen) {
    if (len == 0) {
        tok_spans_push(out, 0, 0, false);
        return true;
    }
    if (p->char_class) {
        class_matches(p, text, len, out);
        return true;
    }
    if (!p->code) {
        literal_matches(p, text, len, out);
        return true;
    }
    size_t prev = 0, last_end = 0, last_match_end = SIZE_MAX;
    while (last_end <= len) {
        size_t ms, me;
        bool found;
        if (!tok_regex_match_at(p->code, s, text, len, last_end, &ms, &me, &found, err, errlen))
            return false;
        if (!found) break;
        if (ms == me && me == last_match_end) { /* no empty match right after the last one */
            if (last_end < len) {
                uint32_t cp;
                last_end += tok_utf8_next(text, last_end, &cp);
            } else
                last_end++;
            continue;
        }
        last_end = last_match_end = me;
        if (prev != ms) tok_spans_push(out, prev, ms, false);
        tok_spans_push(out, ms, me, true);
        prev = me;
    }
    if (prev != len) tok_spans_push(out, prev, len, false);
    return true;
}
