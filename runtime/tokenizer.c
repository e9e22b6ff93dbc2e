/* tokenizer.c - load a tokenizer.json (+ tokenizer_config.json) into a Tokenizer, and the
 * drivers of encode and decode (see tok_internal.h for the pipeline). Each section that
 * reads a part of tokenizer.json says, above it, the JSON it accepts. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

// --- JSON helpers

bool tok_json_err(char *err, size_t errlen, const char *path, const Json *at, const char *fmt,
                  ...) {
    char msg[ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at)
        return errf(err, errlen, "%s:%d:%d: %s", path, at->line, at->col, msg);
    return errf(err, errlen, "%s: %s", path, msg);
}

bool tok_get_bool(const Json *obj, const char *key, bool dflt, bool *out, const char *what,
                  const char *path, char *err, size_t errlen) {
    const Json *v = json_get(obj, key);
    *out = dflt;
    if (!v || v->type == JSON_NULL) return true;
    if (!json_as_bool(v, out))
        return tok_json_err(err, errlen, path, v, "%s must be true or false, not %s", what,
                            json_type_name(v->type));
    return true;
}

bool tok_get_str(const Json *obj, const char *key, bool required, const char **out, size_t *len,
                 const char *what, const char *path, char *err, size_t errlen) {
    const Json *v = json_get(obj, key);
    *out = NULL;
    if (len) *len = 0;
    if (!v || v->type == JSON_NULL) {
        if (required) return tok_json_err(err, errlen, path, obj, "%s is missing", what);
        return true;
    }
    if (v->type != JSON_STRING)
        return tok_json_err(err, errlen, path, v, "%s must be a string, not %s", what,
                            json_type_name(v->type));
    *out = v->str.s;
    if (len) *len = v->str.len;
    return true;
}

static bool get_size(const Json *obj, const char *key, size_t dflt, size_t *out, const char *what,
                     const char *path, char *err, size_t errlen) {
    const Json *v = json_get(obj, key);
    int64_t n;
    *out = dflt;
    if (!v || v->type == JSON_NULL) return true;
    if (!json_as_int(v, &n) || n < 0)
        return tok_json_err(err, errlen, path, v, "%s must be a non-negative integer", what);
    *out = (size_t)n;
    return true;
}

/* The "type" of a component object. */
static const char *type_of(const Json *obj, const char *what, const char *path, char *err,
                           size_t errlen) {
    const char *t;
    if (!obj || obj->type != JSON_OBJECT) {
        tok_json_err(err, errlen, path, obj, "%s must be an object with a \"type\"", what);
        return NULL;
    }
    if (!json_as_str(json_get(obj, "type"))) {
        tok_json_err(err, errlen, path, obj, "%s has no \"type\" string", what);
        return NULL;
    }
    t = json_as_str(json_get(obj, "type"));
    return t;
}

static bool unsupported(const char *what, const char *type, const char *supported,
                        const Json *at, const char *path, char *err, size_t errlen) {
    return tok_json_err(err, errlen, path, at,
                        "%s type \"%s\" is not supported yet (llfc supports: %s)", what, type,
                        supported);
}

/* A single character given as a string (Metaspace replacement, Strip content). */
static bool get_char(const Json *obj, const char *key, uint32_t *cp, const char *what,
                     const char *path, char *err, size_t errlen) {
    const char *s;
    size_t len;
    if (!tok_get_str(obj, key, true, &s, &len, what, path, err, errlen)) return false;
    if (len == 0 || tok_utf8_next(s, 0, cp) != len)
        return tok_json_err(err, errlen, path, json_get(obj, key),
                            "%s must be exactly one character", what);
    return true;
}

// --- patterns: {"String": "..."} or {"Regex": "..."}

static bool load_pattern(const Json *obj, TokPattern *p, const char *what, const char *path,
                         char *err, size_t errlen) {
    const Json *pat = json_get(obj, "pattern");
    const Json *s = json_get(pat, "String"), *r = json_get(pat, "Regex");
    if (!pat || pat->type != JSON_OBJECT || pat->obj.n != 1 || !(json_as_str(s) || json_as_str(r)))
        return tok_json_err(err, errlen, path, pat ? pat : obj,
                            "%s.pattern must be {\"String\": \"...\"} or {\"Regex\": \"...\"}",
                            what);
    const Json *v = s ? s : r;
    char msg[ERR_LEN];
    if (!tok_pattern_compile(p, v->str.s, v->str.len, r != NULL, msg, sizeof msg))
        return tok_json_err(err, errlen, path, v, "%s.pattern: %s", what, msg);
    return true;
}

// --- normalizers
//
// null | {"type": T, ...} with T one of
//   NFC NFD NFKC NFKD Lowercase StripAccents | Strip {strip_left, strip_right}
//   Prepend {prepend} | Append {append} | Replace {pattern, content} | Sequence {normalizers}

#define NORMALIZERS "NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Prepend, Append, " \
                    "Replace, Sequence"

static TokNorm *push_norm(Tokenizer *t) {
    t->norms = xrealloc(t->norms, (t->n_norms + 1) * sizeof *t->norms);
    TokNorm *n = &t->norms[t->n_norms++];
    *n = (TokNorm){0};
    return n;
}

static bool load_normalizer(Tokenizer *t, const Json *j, const char *path, char *err,
                            size_t errlen) {
    if (!j || j->type == JSON_NULL) return true;
    const char *type = type_of(j, "normalizer", path, err, errlen);
    if (!type) return false;
    if (strcmp(type, "Sequence") == 0) {
        const Json *list = json_get(j, "normalizers");
        if (!list || list->type != JSON_ARRAY)
            return tok_json_err(err, errlen, path, j, "Sequence normalizer needs \"normalizers\"");
        for (size_t i = 0; i < list->arr.n; i++)
            if (!load_normalizer(t, list->arr.items[i], path, err, errlen)) return false;
        return true;
    }
    static const struct {
        const char *name;
        TokNormKind kind;
    } simple[] = {{"NFC", TN_NFC},
                  {"NFD", TN_NFD},
                  {"NFKC", TN_NFKC},
                  {"NFKD", TN_NFKD},
                  {"Lowercase", TN_LOWERCASE},
                  {"StripAccents", TN_STRIP_ACCENTS}};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (strcmp(type, simple[i].name) == 0) {
            push_norm(t)->kind = simple[i].kind;
            return true;
        }
    if (strcmp(type, "Strip") == 0) {
        TokNorm *n = push_norm(t);
        n->kind = TN_STRIP;
        return tok_get_bool(j, "strip_left", true, &n->left, "Strip.strip_left", path, err,
                            errlen) &&
               tok_get_bool(j, "strip_right", true, &n->right, "Strip.strip_right", path, err,
                            errlen);
    }
    if (strcmp(type, "Prepend") == 0 || strcmp(type, "Append") == 0) {
        bool pre = type[0] == 'P';
        TokNorm *n = push_norm(t);
        n->kind = pre ? TN_PREPEND : TN_APPEND;
        const char *s;
        if (!tok_get_str(j, pre ? "prepend" : "append", true, &s, &n->str_len,
                         pre ? "Prepend.prepend" : "Append.append", path, err, errlen))
            return false;
        n->str = xstrndup(s, n->str_len);
        return true;
    }
    if (strcmp(type, "Replace") == 0) {
        TokNorm *n = push_norm(t);
        n->kind = TN_REPLACE;
        const char *s;
        if (!tok_get_str(j, "content", true, &s, &n->str_len, "Replace.content", path, err,
                         errlen))
            return false;
        n->str = xstrndup(s, n->str_len);
        return load_pattern(j, &n->pattern, "Replace", path, err, errlen);
    }
    return unsupported("normalizer", type, NORMALIZERS, j, path, err, errlen);
}

// --- pre-tokenizers
//
// null | {"type": T, ...} with T one of
//   Split {pattern, behavior: Removed|Isolated|MergedWithPrevious|MergedWithNext|Contiguous,
//          invert} | ByteLevel {add_prefix_space, use_regex (default true)}
//   Metaspace {replacement, prepend_scheme: always|first|never, split (default true),
//              add_prefix_space (older files)} | Digits {individual_digits}
//   Punctuation {behavior} | Whitespace | WhitespaceSplit | BertPreTokenizer
//   CharDelimiterSplit {delimiter} | Sequence {pretokenizers}

#define PRETOKENIZERS "Split, ByteLevel, Metaspace, Digits, Punctuation, Whitespace, " \
                      "WhitespaceSplit, BertPreTokenizer, CharDelimiterSplit, Sequence"

/* GPT-2's split regex, which ByteLevel uses when use_regex is true (Oniguruma dialect). */
static const char GPT2_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* Whitespace's regex \w+|[^\w\s]+ (Rust's regex crate, Unicode 16), written for the Oniguruma
 * translation, which adds to \p{L} and co. what Unicode 15 and 16 assigned. */
#define RUST_WORD "\\p{Alphabetic}\\p{L}\\p{M}\\p{Nd}\\p{Nl}\\p{Pc}\\p{Join_Control}"
static const char WHITESPACE_REGEX[] = "[" RUST_WORD "]+|[^" RUST_WORD "\\s]+";

static TokPreTok *push_pretok(Tokenizer *t, TokPreKind kind) {
    t->pretoks = xrealloc(t->pretoks, (t->n_pretoks + 1) * sizeof *t->pretoks);
    TokPreTok *p = &t->pretoks[t->n_pretoks++];
    *p = (TokPreTok){.kind = kind};
    return p;
}

/* A Split on each character of a class, as HF's split(char::is_..., behavior). */
static void push_split_class(Tokenizer *t, bool (*char_class)(uint32_t), TokBehavior b) {
    TokPreTok *p = push_pretok(t, TP_SPLIT);
    p->behavior = b;
    p->pattern.char_class = char_class;
}

static bool get_behavior(const Json *j, TokBehavior dflt, TokBehavior *out, const char *what,
                         const char *path, char *err, size_t errlen) {
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    const char *s;
    *out = dflt;
    if (!tok_get_str(j, "behavior", false, &s, NULL, what, path, err, errlen)) return false;
    if (!s) return true;
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (TokBehavior)i;
            return true;
        }
    return tok_json_err(err, errlen, path, json_get(j, "behavior"),
                        "%s \"%s\" is not one of Removed, Isolated, MergedWithPrevious, "
                        "MergedWithNext, Contiguous",
                        what, s);
}

/* Metaspace's prepend_scheme, with the older add_prefix_space spelling (HF's rules). */
static bool get_prepend_scheme(const Json *j, TokPrependScheme *out, const char *path, char *err,
                               size_t errlen) {
    const char *s;
    const Json *aps_json = json_get(j, "add_prefix_space");
    bool has_aps = aps_json && aps_json->type != JSON_NULL;
    bool aps;
    if (!tok_get_str(j, "prepend_scheme", false, &s, NULL, "Metaspace.prepend_scheme", path, err,
                     errlen) ||
        !tok_get_bool(j, "add_prefix_space", true, &aps, "Metaspace.add_prefix_space", path, err,
                      errlen))
        return false;
    *out = TPS_ALWAYS;
    if (s && strcmp(s, "always") == 0) *out = TPS_ALWAYS;
    else if (s && strcmp(s, "first") == 0) *out = TPS_FIRST;
    else if (s && strcmp(s, "never") == 0) *out = TPS_NEVER;
    else if (s)
        return tok_json_err(err, errlen, path, json_get(j, "prepend_scheme"),
                            "Metaspace.prepend_scheme \"%s\" is not always, first or never", s);
    if (has_aps && !aps) {
        if (*out != TPS_NEVER && s)
            return tok_json_err(err, errlen, path, j,
                                "Metaspace: add_prefix_space false does not match "
                                "prepend_scheme \"%s\"",
                                s);
        *out = TPS_NEVER;
    }
    return true;
}

static bool load_metaspace_pretok(Tokenizer *t, const Json *j, const char *path, char *err,
                                  size_t errlen) {
    TokPreTok *p = push_pretok(t, TP_METASPACE);
    uint32_t cp;
    if (!get_char(j, "replacement", &cp, "Metaspace.replacement", path, err, errlen) ||
        !get_prepend_scheme(j, &p->prepend_scheme, path, err, errlen) ||
        !tok_get_bool(j, "split", true, &p->split, "Metaspace.split", path, err, errlen))
        return false;
    p->repl_len = tok_utf8_put(p->repl, cp);
    return tok_pattern_compile(&p->pattern, p->repl, p->repl_len, false, err, errlen);
}

static bool load_pretokenizer(Tokenizer *t, const Json *j, const char *path, char *err,
                              size_t errlen) {
    if (!j || j->type == JSON_NULL) return true;
    const char *type = type_of(j, "pre_tokenizer", path, err, errlen);
    if (!type) return false;
    char msg[ERR_LEN];
    if (strcmp(type, "Sequence") == 0) {
        const Json *list = json_get(j, "pretokenizers");
        if (!list || list->type != JSON_ARRAY)
            return tok_json_err(err, errlen, path, j,
                                "Sequence pre_tokenizer needs \"pretokenizers\"");
        for (size_t i = 0; i < list->arr.n; i++)
            if (!load_pretokenizer(t, list->arr.items[i], path, err, errlen)) return false;
        return true;
    }
    if (strcmp(type, "Split") == 0) {
        TokPreTok *p = push_pretok(t, TP_SPLIT);
        return get_behavior(j, TB_ISOLATED, &p->behavior, "Split.behavior", path, err, errlen) &&
               tok_get_bool(j, "invert", false, &p->invert, "Split.invert", path, err, errlen) &&
               load_pattern(j, &p->pattern, "Split", path, err, errlen);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        TokPreTok *p = push_pretok(t, TP_BYTELEVEL);
        if (!tok_get_bool(j, "add_prefix_space", true, &p->add_prefix_space,
                          "ByteLevel.add_prefix_space", path, err, errlen) ||
            !tok_get_bool(j, "use_regex", true, &p->use_regex, "ByteLevel.use_regex", path, err,
                          errlen))
            return false;
        return !p->use_regex ||
               tok_pattern_compile(&p->pattern, GPT2_REGEX, strlen(GPT2_REGEX), true, err, errlen);
    }
    if (strcmp(type, "Metaspace") == 0) return load_metaspace_pretok(t, j, path, err, errlen);
    bool ok = true;
    if (strcmp(type, "Digits") == 0) {
        bool individual;
        if (!tok_get_bool(j, "individual_digits", false, &individual, "Digits.individual_digits",
                          path, err, errlen))
            return false;
        push_split_class(t, tok_is_numeric, individual ? TB_ISOLATED : TB_CONTIGUOUS);
    } else if (strcmp(type, "Punctuation") == 0) {
        TokBehavior b;
        if (!get_behavior(j, TB_ISOLATED, &b, "Punctuation.behavior", path, err, errlen))
            return false;
        push_split_class(t, tok_is_punct, b);
    } else if (strcmp(type, "Whitespace") == 0) {
        TokPreTok *p = push_pretok(t, TP_SPLIT);
        p->behavior = TB_REMOVED;
        p->invert = true;
        ok = tok_pattern_compile(&p->pattern, WHITESPACE_REGEX, strlen(WHITESPACE_REGEX), true,
                                 msg, sizeof msg);
    } else if (strcmp(type, "WhitespaceSplit") == 0) {
        push_split_class(t, tok_is_space, TB_REMOVED);
    } else if (strcmp(type, "BertPreTokenizer") == 0) {
        push_split_class(t, tok_is_space, TB_REMOVED);
        push_split_class(t, tok_is_punct, TB_ISOLATED);
    } else if (strcmp(type, "CharDelimiterSplit") == 0) {
        uint32_t cp;
        char d[4];
        if (!get_char(j, "delimiter", &cp, "CharDelimiterSplit.delimiter", path, err, errlen))
            return false;
        TokPreTok *p = push_pretok(t, TP_SPLIT);
        p->behavior = TB_REMOVED;
        ok = tok_pattern_compile(&p->pattern, d, tok_utf8_put(d, cp), false, msg, sizeof msg);
    } else
        return unsupported("pre_tokenizer", type, PRETOKENIZERS, j, path, err, errlen);
    return ok || tok_json_err(err, errlen, path, j, "%s: %s", type, msg);
}

// --- post-processors
//
// null | {"type": T, ...} with T one of
//   TemplateProcessing {single: [{"SpecialToken": {id}} | {"Sequence": {id: "A"}}, ...],
//                       special_tokens: {name: {ids: [...]}}}
//   RobertaProcessing / BertProcessing {cls: [token, id], sep: [token, id]}
//   ByteLevel (offsets only) | Sequence {processors}
// Only the "single" template matters: tok_encode takes one sequence.

#define PROCESSORS "TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence"

static void tmpl_add(Tokenizer *t, bool seq, const int32_t *ids, size_t n) {
    t->tmpl = xrealloc(t->tmpl, (t->n_tmpl + 1) * sizeof *t->tmpl);
    TokTemplatePiece *p = &t->tmpl[t->n_tmpl++];
    p->is_sequence = seq;
    p->n_ids = n;
    p->ids = n ? xmalloc(n * sizeof *ids) : NULL;
    if (n) memcpy(p->ids, ids, n * sizeof *ids);
}

static bool special_ids(const Json *specials, const char *name, const Json *at, int32_t **ids,
                        size_t *n, const char *path, char *err, size_t errlen) {
    const Json *sp = json_get(specials, name), *list = json_get(sp, "ids");
    if (!list || list->type != JSON_ARRAY)
        return tok_json_err(err, errlen, path, at,
                            "TemplateProcessing uses special token \"%s\", which its "
                            "special_tokens does not define with \"ids\"",
                            name);
    *n = list->arr.n;
    *ids = xmalloc((*n ? *n : 1) * sizeof **ids);
    for (size_t i = 0; i < *n; i++) {
        int64_t v;
        if (!json_as_int(list->arr.items[i], &v) || v < 0 || v > INT32_MAX) {
            free(*ids);
            return tok_json_err(err, errlen, path, list->arr.items[i],
                                "special_tokens[\"%s\"].ids must be token ids", name);
        }
        (*ids)[i] = (int32_t)v;
    }
    return true;
}

static bool load_template(Tokenizer *t, const Json *j, const char *path, char *err,
                          size_t errlen) {
    const Json *single = json_get(j, "single"), *specials = json_get(j, "special_tokens");
    if (!single || single->type != JSON_ARRAY)
        return tok_json_err(err, errlen, path, j,
                            "TemplateProcessing.single must be a list of pieces");
    t->tmpl = xmalloc(sizeof *t->tmpl); /* an empty template is still a template */
    for (size_t i = 0; i < single->arr.n; i++) {
        const Json *pc = single->arr.items[i];
        const Json *seq = json_get(pc, "Sequence"), *sp = json_get(pc, "SpecialToken");
        if (seq) {
            const char *id = json_as_str(json_get(seq, "id"));
            if (!id || strcmp(id, "A") != 0)
                return tok_json_err(err, errlen, path, pc,
                                    "TemplateProcessing.single can only use sequence \"A\"");
            tmpl_add(t, true, NULL, 0);
        } else if (sp && json_as_str(json_get(sp, "id"))) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (!special_ids(specials, json_as_str(json_get(sp, "id")), pc, &ids, &n, path, err,
                             errlen))
                return false;
            tmpl_add(t, false, ids, n);
            free(ids);
        } else
            return tok_json_err(err, errlen, path, pc,
                                "a template piece must be {\"Sequence\": {...}} or "
                                "{\"SpecialToken\": {\"id\": ...}}");
    }
    return true;
}

/* RobertaProcessing / BertProcessing: cls A sep, with [token, id] pairs. */
static bool load_cls_sep(Tokenizer *t, const Json *j, const char *type, const char *path,
                         char *err, size_t errlen) {
    int32_t ids[2];
    const char *keys[2] = {"cls", "sep"};
    for (int i = 0; i < 2; i++) {
        const Json *pair = json_get(j, keys[i]);
        int64_t v;
        if (!pair || pair->type != JSON_ARRAY || pair->arr.n != 2 ||
            !json_as_int(pair->arr.items[1], &v) || v < 0 || v > INT32_MAX)
            return tok_json_err(err, errlen, path, pair ? pair : j,
                                "%s.%s must be [token, id]", type, keys[i]);
        ids[i] = (int32_t)v;
    }
    t->tmpl = xmalloc(sizeof *t->tmpl);
    tmpl_add(t, false, &ids[0], 1);
    tmpl_add(t, true, NULL, 0);
    tmpl_add(t, false, &ids[1], 1);
    return true;
}

static bool load_post_processor(Tokenizer *t, const Json *j, const char *path, char *err,
                                size_t errlen) {
    if (!j || j->type == JSON_NULL) return true;
    const char *type = type_of(j, "post_processor", path, err, errlen);
    if (!type) return false;
    if (strcmp(type, "ByteLevel") == 0) return true; /* it only trims offsets */
    if (strcmp(type, "Sequence") == 0) {
        const Json *list = json_get(j, "processors");
        if (!list || list->type != JSON_ARRAY)
            return tok_json_err(err, errlen, path, j,
                                "Sequence post_processor needs \"processors\"");
        for (size_t i = 0; i < list->arr.n; i++)
            if (!load_post_processor(t, list->arr.items[i], path, err, errlen)) return false;
        return true;
    }
    bool tmpl = strcmp(type, "TemplateProcessing") == 0;
    if (!tmpl && strcmp(type, "RobertaProcessing") != 0 && strcmp(type, "BertProcessing") != 0)
        return unsupported("post_processor", type, PROCESSORS, j, path, err, errlen);
    if (t->tmpl)
        return tok_json_err(err, errlen, path, j,
                            "more than one post_processor that adds tokens is not supported yet");
    return tmpl ? load_template(t, j, path, err, errlen)
                : load_cls_sep(t, j, type, path, err, errlen);
}

// --- decoders
//
// null | {"type": T, ...} with T one of
//   ByteLevel | ByteFallback | Fuse | Metaspace {replacement, prepend_scheme}
//   Replace {pattern, content} | Strip {content, start, stop} | WordPiece {prefix, cleanup}
//   BPEDecoder {suffix} | Sequence {decoders}

#define DECODERS "ByteLevel, ByteFallback, Fuse, Metaspace, Replace, Strip, WordPiece, " \
                 "BPEDecoder, Sequence"

static TokDec *push_dec(Tokenizer *t, TokDecKind kind) {
    t->decs = xrealloc(t->decs, (t->n_decs + 1) * sizeof *t->decs);
    TokDec *d = &t->decs[t->n_decs++];
    *d = (TokDec){.kind = kind};
    return d;
}

static bool dec_str(TokDec *d, const Json *j, const char *key, const char *dflt, const char *what,
                    const char *path, char *err, size_t errlen) {
    const char *s;
    size_t n;
    if (!tok_get_str(j, key, false, &s, &n, what, path, err, errlen)) return false;
    if (!s) s = dflt, n = strlen(dflt);
    d->str = xstrndup(s, n);
    d->str_len = n;
    return true;
}

static bool load_decoder(Tokenizer *t, const Json *j, const char *path, char *err, size_t errlen) {
    if (!j || j->type == JSON_NULL) return true;
    const char *type = type_of(j, "decoder", path, err, errlen);
    if (!type) return false;
    t->has_decoder = true;
    if (strcmp(type, "Sequence") == 0) {
        const Json *list = json_get(j, "decoders");
        if (!list || list->type != JSON_ARRAY)
            return tok_json_err(err, errlen, path, j, "Sequence decoder needs \"decoders\"");
        for (size_t i = 0; i < list->arr.n; i++)
            if (!load_decoder(t, list->arr.items[i], path, err, errlen)) return false;
        return true;
    }
    if (strcmp(type, "ByteLevel") == 0) return push_dec(t, TD_BYTELEVEL), true;
    if (strcmp(type, "ByteFallback") == 0) return push_dec(t, TD_BYTEFALLBACK), true;
    if (strcmp(type, "Fuse") == 0) return push_dec(t, TD_FUSE), true;
    if (strcmp(type, "Metaspace") == 0) {
        TokDec *d = push_dec(t, TD_METASPACE);
        return get_char(j, "replacement", &d->ch, "Metaspace.replacement", path, err, errlen) &&
               get_prepend_scheme(j, &d->prepend_scheme, path, err, errlen);
    }
    if (strcmp(type, "Replace") == 0) {
        TokDec *d = push_dec(t, TD_REPLACE);
        const char *s;
        if (!tok_get_str(j, "content", true, &s, &d->str_len, "Replace.content", path, err,
                         errlen))
            return false;
        d->str = xstrndup(s, d->str_len);
        return load_pattern(j, &d->pattern, "Replace", path, err, errlen);
    }
    if (strcmp(type, "Strip") == 0) {
        TokDec *d = push_dec(t, TD_STRIP);
        return get_char(j, "content", &d->ch, "Strip.content", path, err, errlen) &&
               get_size(j, "start", 0, &d->start, "Strip.start", path, err, errlen) &&
               get_size(j, "stop", 0, &d->stop, "Strip.stop", path, err, errlen);
    }
    if (strcmp(type, "WordPiece") == 0) {
        TokDec *d = push_dec(t, TD_WORDPIECE);
        return dec_str(d, j, "prefix", "##", "WordPiece.prefix", path, err, errlen) &&
               tok_get_bool(j, "cleanup", true, &d->cleanup, "WordPiece.cleanup", path, err,
                            errlen);
    }
    if (strcmp(type, "BPEDecoder") == 0)
        return dec_str(push_dec(t, TD_BPE), j, "suffix", "</w>", "BPEDecoder.suffix", path, err,
                       errlen);
    return unsupported("decoder", type, DECODERS, j, path, err, errlen);
}

// --- added tokens
//
// [{"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}, ...]
// Ids are assigned as HF's AddedVocabulary::add_tokens does (a content in the model's
// vocabulary keeps that id; a new one gets the next free id), which for well-formed files is
// the "id" written in the file.

static int32_t added_next_id(const Tokenizer *t, int32_t max_added) {
    int32_t vocab_size = (int32_t)t->bpe.vocab_count;
    if (max_added < 0) return vocab_size;
    return (max_added >= vocab_size || vocab_size == 0) ? max_added + 1 : vocab_size;
}

static bool same_token(const TokAdded *a, const TokAdded *b) {
    return a->len == b->len && memcmp(a->content, b->content, a->len) == 0 &&
           a->special == b->special && a->lstrip == b->lstrip && a->rstrip == b->rstrip &&
           a->normalized == b->normalized && a->single_word == b->single_word;
}

static bool parse_added(const Json *j, TokAdded *a, const char *path, char *err, size_t errlen) {
    const char *content;
    if (!j || j->type != JSON_OBJECT)
        return tok_json_err(err, errlen, path, j, "added_tokens items must be objects");
    if (!tok_get_str(j, "content", true, &content, &a->len, "added_tokens[].content", path, err,
                     errlen) ||
        !tok_get_bool(j, "special", false, &a->special, "added_tokens[].special", path, err,
                      errlen) ||
        !tok_get_bool(j, "single_word", false, &a->single_word, "added_tokens[].single_word",
                      path, err, errlen) ||
        !tok_get_bool(j, "lstrip", false, &a->lstrip, "added_tokens[].lstrip", path, err,
                      errlen) ||
        !tok_get_bool(j, "rstrip", false, &a->rstrip, "added_tokens[].rstrip", path, err,
                      errlen) ||
        !tok_get_bool(j, "normalized", !a->special, &a->normalized, "added_tokens[].normalized",
                      path, err, errlen))
        return false;
    a->content = (char *)content;
    return true;
}

/* Record token a under id (HF's added_tokens_map_r[id] = a, and its normalized_cache). */
static bool added_set(Tokenizer *t, TokScratch *s, int32_t id, const TokAdded *a, char *err,
                      size_t errlen) {
    TokAddedVocab *av = &t->added;
    uint64_t idx;
    char *normed = NULL;
    size_t normed_len = 0;
    if (!tok_u64map_get(&av->by_id, (uint64_t)id, &idx)) {
        av->tokens = xrealloc(av->tokens, (av->n + 1) * sizeof *av->tokens);
        idx = av->n++;
        tok_u64map_put(&av->by_id, (uint64_t)id, idx);
    } else {
        free(av->tokens[idx].content);
        normed = av->tokens[idx].normed; /* HF's cache entry outlives a re-add */
        normed_len = av->tokens[idx].normed_len;
    }
    if (a->normalized && t->n_norms) {
        if (!tok_normalize(t->norms, t->n_norms, s, a->content, a->len, &s->normed, err, errlen))
            return false;
        if (s->normed.len != a->len || memcmp(s->normed.data, a->content, a->len) != 0) {
            free(normed);
            normed = xstrndup(s->normed.data, s->normed.len);
            normed_len = s->normed.len;
        }
    }
    av->tokens[idx] = *a;
    av->tokens[idx].content = xstrndup(a->content, a->len);
    av->tokens[idx].normed = normed;
    av->tokens[idx].normed_len = normed_len;
    av->tokens[idx].id = id;
    tok_strmap_put(&av->by_content, a->content, a->len, id);
    return true;
}

/* The two tries, from HF's list of tokens (contents borrowed from the JSON). */
static bool build_tries(Tokenizer *t, const TokAdded *order, size_t n, char *err,
                        size_t errlen) {
    TokAddedVocab *av = &t->added;
    TokScratch *s = tok_scratch_new();
    StrBuf normed = {0};
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        const TokAdded *a = &order[i];
        int32_t id = tok_strmap_get(&av->by_content, a->content, a->len);
        uint64_t idx;
        if (id < 0 || !tok_u64map_get(&av->by_id, (uint64_t)id, &idx)) continue;
        if (!a->normalized) {
            tok_trie_add(&av->raw, a->content, a->len, (int32_t)idx);
            continue;
        }
        ok = tok_normalize(t->norms, t->n_norms, s, a->content, a->len, &normed, err, errlen);
        if (ok) tok_trie_add(&av->norm, normed.data, normed.len, (int32_t)idx);
    }
    sb_free(&normed);
    tok_scratch_free(s);
    return ok;
}

static bool load_added_tokens(Tokenizer *t, const Json *list, const char *path, char *err,
                              size_t errlen) {
    if (!list || list->type == JSON_NULL) return true;
    if (list->type != JSON_ARRAY)
        return tok_json_err(err, errlen, path, list, "added_tokens must be an array");
    TokAddedVocab *av = &t->added;
    /* HF's two lists, in the order its tries are built from: specials, then the others */
    TokAdded *specials = xmalloc((list->arr.n + 1) * sizeof *specials);
    TokAdded *others = xmalloc((list->arr.n + 1) * sizeof *others);
    size_t n_specials = 0, n_others = 0;
    int32_t max_added = -1;
    bool ok = true;
    TokScratch *scratch = tok_scratch_new();
    for (size_t i = 0; i < list->arr.n && ok; i++) { /* HF adds them one at a time */
        TokAdded a = {0};
        if (!(ok = parse_added(list->arr.items[i], &a, path, err, errlen))) break;
        if (a.special && a.len && tok_strmap_get(&av->specials, a.content, a.len) < 0) {
            tok_strmap_put(&av->specials, a.content, a.len, 1);
            specials[n_specials++] = a;
        }
        if (a.len == 0) continue;
        int32_t id = tok_strmap_get(&av->by_content, a.content, a.len);
        uint64_t idx;
        if (id >= 0 && tok_u64map_get(&av->by_id, (uint64_t)id, &idx) &&
            same_token(&av->tokens[idx], &a))
            continue;
        if (id < 0) id = tok_strmap_get(&t->bpe.vocab, a.content, a.len);
        if (id < 0) id = added_next_id(t, max_added);
        if (id > max_added) max_added = id;
        if (!(ok = added_set(t, scratch, id, &a, err, errlen))) break;
        if (tok_strmap_get(&av->specials, a.content, a.len) < 0) others[n_others++] = a;
    }
    if (ok) {
        memcpy(specials + n_specials, others, n_others * sizeof *others);
        ok = build_tries(t, specials, n_specials + n_others, err, errlen);
    }
    free(specials);
    free(others);
    tok_scratch_free(scratch);
    return ok;
}

// --- tokenizer_config.json
//
// {"bos_token": "<s>" | {"content": "<s>", ...} | null, "eos_token", "pad_token", "unk_token",
//  "add_bos_token": bool, "add_eos_token": bool, ...}  (other keys are the chat template's
// and transformers' business)

static bool config_token(const Tokenizer *t, const Json *cfg, const char *key, int32_t *id,
                         const char *path, char *err, size_t errlen) {
    const Json *v = json_get(cfg, key);
    if (!v || v->type == JSON_NULL) return true;
    if (v->type == JSON_OBJECT) v = json_get(v, "content");
    if (!json_as_str(v))
        return tok_json_err(err, errlen, path, json_get(cfg, key),
                            "%s must be a string or {\"content\": \"...\"}", key);
    *id = tok_token_to_id(t, v->str.s, v->str.len);
    return true;
}

static bool load_config(Tokenizer *t, const char *dir, char *err, size_t errlen) {
    char *path = util_path_join(dir, "tokenizer_config.json");
    bool ok = true;
    if (util_is_file(path)) {
        size_t len;
        char *text = util_read_file(path, &len, err, errlen);
        JsonDoc *doc = text ? json_parse(text, len, path, err, errlen) : NULL;
        const Json *cfg = json_root(doc);
        ok = doc != NULL;
        if (ok && cfg->type != JSON_OBJECT)
            ok = tok_json_err(err, errlen, path, cfg, "expected a JSON object");
        if (ok) {
            t->unk_id = -1;
            ok = config_token(t, cfg, "bos_token", &t->bos_id, path, err, errlen) &&
                 config_token(t, cfg, "eos_token", &t->eos_id, path, err, errlen) &&
                 config_token(t, cfg, "pad_token", &t->pad_id, path, err, errlen) &&
                 config_token(t, cfg, "unk_token", &t->unk_id, path, err, errlen) &&
                 tok_get_bool(cfg, "add_bos_token", false, &t->add_bos_token, "add_bos_token",
                              path, err, errlen) &&
                 tok_get_bool(cfg, "add_eos_token", false, &t->add_eos_token, "add_eos_token",
                              path, err, errlen);
        }
        json_free(doc);
        free(text);
    }
    free(path);
    return ok;
}

// --- loading

static atomic_uint_fast64_t next_serial = 1;

static bool load_model(Tokenizer *t, const Json *model, const char *path, char *err,
                       size_t errlen) {
    if (!model || model->type != JSON_OBJECT)
        return tok_json_err(err, errlen, path, model, "\"model\" must be an object");
    const char *type = json_as_str(json_get(model, "type"));
    if (type && strcmp(type, "BPE") != 0)
        return unsupported("model", type, "BPE", model, path, err, errlen);
    if (!type && !json_get(model, "merges"))
        return tok_json_err(err, errlen, path, model, "model has no \"type\" (llfc supports BPE)");
    return tok_bpe_load(&t->bpe, model, path, err, errlen);
}

static bool load_root(Tokenizer *t, const Json *root, const char *path, char *err,
                      size_t errlen) {
    if (root->type != JSON_OBJECT)
        return tok_json_err(err, errlen, path, root, "expected a JSON object (a tokenizer.json)");
    const char *version = json_as_str(json_get(root, "version"));
    if (version && strcmp(version, "1.0") != 0)
        return tok_json_err(err, errlen, path, json_get(root, "version"),
                            "unknown tokenizer.json version \"%s\" (expected \"1.0\")", version);
    if (!json_get(root, "model"))
        return tok_json_err(err, errlen, path, root, "no \"model\": is this a tokenizer.json?");
    return load_model(t, json_get(root, "model"), path, err, errlen) &&
           load_normalizer(t, json_get(root, "normalizer"), path, err, errlen) &&
           load_pretokenizer(t, json_get(root, "pre_tokenizer"), path, err, errlen) &&
           load_post_processor(t, json_get(root, "post_processor"), path, err, errlen) &&
           load_decoder(t, json_get(root, "decoder"), path, err, errlen) &&
           load_added_tokens(t, json_get(root, "added_tokens"), path, err, errlen);
}

Tokenizer *tok_load_json(const char *json, size_t len, const char *name, char *err,
                         size_t errlen) {
    JsonDoc *doc = json_parse(json, len, name, err, errlen);
    if (!doc) return NULL;
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->serial = atomic_fetch_add(&next_serial, 1);
    t->bos_id = t->eos_id = t->pad_id = -1;
    bool ok = load_root(t, json_root(doc), name, err, errlen);
    json_free(doc);
    if (!ok) {
        tok_free(t);
        return NULL;
    }
    t->unk_id = t->bpe.unk_id;
    return t;
}

Tokenizer *tok_load(const char *dir, char *err, size_t errlen) {
    char *path = util_path_join(dir, "tokenizer.json");
    size_t len;
    char *text = util_read_file(path, &len, err, errlen);
    Tokenizer *t = text ? tok_load_json(text, len, path, err, errlen) : NULL;
    free(text);
    free(path);
    if (t && !load_config(t, dir, err, errlen)) {
        tok_free(t);
        return NULL;
    }
    return t;
}

void tok_free(Tokenizer *t) {
    if (!t) return;
    tok_bpe_free(&t->bpe);
    tok_added_free(&t->added);
    for (size_t i = 0; i < t->n_norms; i++) {
        free(t->norms[i].str);
        tok_pattern_free(&t->norms[i].pattern);
    }
    free(t->norms);
    for (size_t i = 0; i < t->n_pretoks; i++) tok_pretok_free(&t->pretoks[i]);
    free(t->pretoks);
    for (size_t i = 0; i < t->n_tmpl; i++) free(t->tmpl[i].ids);
    free(t->tmpl);
    for (size_t i = 0; i < t->n_decs; i++) {
        free(t->decs[i].str);
        tok_pattern_free(&t->decs[i].pattern);
    }
    free(t->decs);
    free(t);
}

// --- scratch

/* PCRE2's per-thread objects are made on a scratch's first regex match (tok_regex.c). */
TokScratch *tok_scratch_new(void) { return xcalloc(1, sizeof(TokScratch)); }

void tok_scratch_free(TokScratch *s) {
    if (!s) return;
    if (s->md) pcre2_match_data_free(s->md);
    if (s->mctx) pcre2_match_context_free(s->mctx);
    if (s->jit) pcre2_jit_stack_free(s->jit);
    StrBuf *bufs[] = {&s->norm_a, &s->norm_b, &s->normed, &s->pre_a, &s->pre_b, &s->tmp,
                      &s->cache_keys};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) sb_free(bufs[i]);
    free(s->raw_pieces.v);
    free(s->norm_pieces.v);
    free(s->words_a.v);
    free(s->words_b.v);
    free(s->spans.v);
    tok_ids_free(&s->content);
    tok_ids_free(&s->cache_ids);
    free(s->cps);
    free(s->syms);
    free(s->heap);
    free(s->cache_hash);
    free(s->cache_key_off);
    free(s->cache_key_len);
    free(s->cache_ids_off);
    free(s->cache_ids_len);
    free(s);
}

void tok_ids_free(TokIds *ids) {
    free(ids->ids);
    *ids = (TokIds){0};
}

// --- encoding

/* Normalized text of one piece: pre-tokenize it and run the model on each word. */
static bool encode_normalized(const Tokenizer *t, TokScratch *s, const char *text, size_t len,
                              bool at_start, TokIds *out, char *err, size_t errlen) {
    if (t->n_pretoks == 0) return tok_bpe_word(&t->bpe, s, text, len, out, err, errlen);
    const char *wt;
    TokPieces *words;
    if (!tok_pretokenize(t->pretoks, t->n_pretoks, s, text, len, at_start, &wt, &words, err,
                         errlen))
        return false;
    for (size_t i = 0; i < words->n; i++)
        if (!tok_bpe_word(&t->bpe, s, wt + words->v[i].off, words->v[i].len, out, err, errlen))
            return false;
    return true;
}

/* One raw piece between added tokens: normalize, split on normalized added tokens, encode. */
static bool encode_piece(const Tokenizer *t, TokScratch *s, const char *text, size_t len,
                         bool at_start, TokIds *out, char *err, size_t errlen) {
    const char *nt = text;
    size_t nlen = len;
    if (t->n_norms) {
        if (!tok_normalize(t->norms, t->n_norms, s, text, len, &s->normed, err, errlen))
            return false;
        nt = s->normed.data, nlen = s->normed.len;
    }
    if (!t->added.norm.count) return encode_normalized(t, s, nt, nlen, at_start, out, err, errlen);
    s->norm_pieces.n = 0;
    tok_added_split(&t->added, &t->added.norm, nt, nlen, 0, at_start, &s->norm_pieces);
    for (size_t i = 0; i < s->norm_pieces.n; i++) {
        const TokPiece *p = &s->norm_pieces.v[i];
        if (p->id >= 0)
            tok_ids_push(out, p->id);
        else if (!encode_normalized(t, s, nt + p->off, p->len, p->at_start, out, err, errlen))
            return false;
    }
    return true;
}

static bool encode_sequence(const Tokenizer *t, TokScratch *s, const char *text, size_t len,
                            TokIds *out, char *err, size_t errlen) {
    if (!t->added.raw.count) return encode_piece(t, s, text, len, true, out, err, errlen);
    s->raw_pieces.n = 0;
    tok_added_split(&t->added, &t->added.raw, text, len, 0, true, &s->raw_pieces);
    for (size_t i = 0; i < s->raw_pieces.n; i++) {
        const TokPiece *p = &s->raw_pieces.v[i];
        if (p->id >= 0)
            tok_ids_push(out, p->id);
        else if (!encode_piece(t, s, text + p->off, p->len, p->at_start, out, err, errlen))
            return false;
    }
    return true;
}

bool tok_encode(const Tokenizer *t, TokScratch *s, const char *text, size_t len,
                bool add_special_tokens, TokIds *out, char *err, size_t errlen) {
    out->len = 0;
    size_t bad = tok_utf8_check(text, len);
    if (bad != len)
        return errf(err, errlen, "tokenizer: text is not valid UTF-8 (byte %zu of %zu)", bad, len);
    bool templated = add_special_tokens && t->tmpl;
    if (len > 0) { /* HF: nothing survives an empty input but the template */
        tok_scratch_bind(s, t);
        TokIds *content = templated ? &s->content : out;
        content->len = 0;
        if (!encode_sequence(t, s, text, len, content, err, errlen)) return false;
    }
    if (!templated) return true;
    for (size_t i = 0; i < t->n_tmpl; i++) {
        const TokTemplatePiece *p = &t->tmpl[i];
        if (!p->is_sequence)
            for (size_t k = 0; k < p->n_ids; k++) tok_ids_push(out, p->ids[k]);
        else if (len)
            for (size_t k = 0; k < s->content.len; k++) tok_ids_push(out, s->content.ids[k]);
    }
    return true;
}

// --- decoding

bool tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, bool skip_special_tokens,
                StrBuf *out, char *err, size_t errlen) {
    StrBuf text = {0};
    TokPieces toks = {0};
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = tok_id_to_token(t, ids[i], &len);
        if (!s) continue; /* HF skips ids it does not know */
        if (skip_special_tokens && tok_strmap_get(&t->added.specials, s, len) >= 0) continue;
        tok_pieces_push(&toks, text.len, len, -1, false);
        sb_append(&text, s, len);
    }
    if (!text.data) sb_append(&text, "", 0);
    bool ok = true;
    if (t->has_decoder) {
        TokScratch *s = tok_scratch_new();
        ok = tok_run_decoders(t->decs, t->n_decs, s, text.data, toks.v, toks.n, out, err, errlen);
        tok_scratch_free(s);
    } else { /* no decoder: HF joins the tokens with spaces */
        out->len = 0;
        for (size_t i = 0; i < toks.n; i++) {
            if (i) sb_append(out, " ", 1);
            sb_append(out, text.data + toks.v[i].off, toks.v[i].len);
        }
        if (!out->data) sb_append(out, "", 0);
    }
    sb_free(&text);
    free(toks.v);
    return ok;
}

// --- vocabulary

int32_t tok_token_to_id(const Tokenizer *t, const char *token, size_t len) {
    int32_t id = tok_strmap_get(&t->added.by_content, token, len);
    return id >= 0 ? id : tok_strmap_get(&t->bpe.vocab, token, len);
}

const char *tok_id_to_token(const Tokenizer *t, int32_t id, size_t *len) {
    uint64_t idx;
    if (id < 0) return NULL;
    if (tok_u64map_get(&t->added.by_id, (uint64_t)id, &idx)) {
        const TokAdded *a = &t->added.tokens[idx];
        *len = a->normed ? a->normed_len : a->len;
        return a->normed ? a->normed : a->content;
    }
    if ((size_t)id >= t->bpe.id_limit || !t->bpe.id_to_str[id]) return NULL;
    *len = t->bpe.id_to_len[id];
    return t->bpe.id_to_str[id];
}

size_t tok_vocab_size(const Tokenizer *t) {
    size_t n = t->bpe.vocab_count;
    for (size_t i = 0; i < t->added.n; i++)
        if (tok_strmap_get(&t->bpe.vocab, t->added.tokens[i].content, t->added.tokens[i].len) < 0)
            n++;
    return n;
}

size_t tok_id_limit(const Tokenizer *t) {
    size_t lim = t->bpe.id_limit;
    for (size_t i = 0; i < t->added.n; i++)
        if ((size_t)t->added.tokens[i].id + 1 > lim) lim = (size_t)t->added.tokens[i].id + 1;
    return lim;
}

bool tok_is_special(const Tokenizer *t, int32_t id) {
    size_t len;
    const char *s = tok_id_to_token(t, id, &len); /* HF tests the string decode would use */
    return s && tok_strmap_get(&t->added.specials, s, len) >= 0;
}

int32_t tok_bos_id(const Tokenizer *t) { return t->bos_id; }
int32_t tok_eos_id(const Tokenizer *t) { return t->eos_id; }
int32_t tok_pad_id(const Tokenizer *t) { return t->pad_id; }
int32_t tok_unk_id(const Tokenizer *t) { return t->unk_id; }
bool tok_add_bos_token(const Tokenizer *t) { return t->add_bos_token; }
bool tok_add_eos_token(const Tokenizer *t) { return t->add_eos_token; }
