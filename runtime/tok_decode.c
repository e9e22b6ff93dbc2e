/* tok_decode.c - decoders: token strings back to text, each as HF's Decoder::decode_chain
 * (a list of strings in, a list out; the final text is their concatenation). */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

typedef struct {
    StrBuf text;
    TokPieces toks;
} List;

static void list_add(List *l, const char *s, size_t len) {
    size_t at = l->text.len;
    sb_append(&l->text, s, len);
    tok_pieces_push(&l->toks, at, len, -1, false);
}

/* Start a new token whose bytes the caller appends to l->text, then closes with list_end. */
static size_t list_begin(List *l) { return l->text.len; }
static void list_end(List *l, size_t at) {
    tok_pieces_push(&l->toks, at, l->text.len - at, -1, false);
}

// --- byte-level and byte-fallback

/* Inverse of GPT-2's byte -> code point map; -1 for code points that stand for no byte. */
static int char_byte(uint32_t cp) {
    if ((cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    if (n <= 0x20) return (int)n;
    if (n < 67) return (int)(0x7F + (n - 33));
    return 0xAD;
}

static void bytelevel(const char *text, const TokPieces *in, List *out) {
    StrBuf bytes = {0};
    for (size_t k = 0; k < in->n; k++) {
        const char *t = text + in->v[k].off;
        size_t len = in->v[k].len, at = bytes.len;
        bool all = true;
        for (size_t i = 0; i < len && all;) {
            uint32_t cp;
            i += tok_utf8_next(t, i, &cp);
            int b = char_byte(cp);
            if (b < 0) all = false;
            else {
                char c = (char)b;
                sb_append(&bytes, &c, 1);
            }
        }
        if (!all) { /* a token of other characters (an added token) keeps its own bytes */
            bytes.len = at;
            sb_append(&bytes, t, len);
        }
    }
    size_t at = list_begin(out);
    tok_utf8_lossy(&out->text, bytes.data ? bytes.data : "", bytes.len);
    list_end(out, at);
    sb_free(&bytes);
}

/* "<0xAB>" -> the byte, as Rust's u8::from_str_radix(&token[3..5], 16) reads it. */
static int fallback_byte(const char *t, size_t len) {
    if (len != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = t[i];
        int d = c >= '0' && c <= '9' ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : (i == 3 && c == '+') ? -2 /* from_str_radix accepts a leading '+' */
                                       : -1;
        if (d == -1) return -1;
        if (d == -2) continue;
        v = v * 16 + d;
    }
    return (t[3] == '+' && t[4] == '+') ? -1 : v;
}

static void flush_bytes(StrBuf *pending, List *out) {
    if (!pending->len) return;
    if (tok_utf8_check(pending->data, pending->len) == pending->len)
        list_add(out, pending->data, pending->len);
    else
        for (size_t i = 0; i < pending->len; i++) list_add(out, "\xEF\xBF\xBD", 3);
    pending->len = 0;
}

static void bytefallback(const char *text, const TokPieces *in, List *out) {
    StrBuf pending = {0};
    for (size_t k = 0; k < in->n; k++) {
        const char *t = text + in->v[k].off;
        int b = fallback_byte(t, in->v[k].len);
        if (b >= 0) {
            char c = (char)b;
            sb_append(&pending, &c, 1);
            continue;
        }
        flush_bytes(&pending, out);
        list_add(out, t, in->v[k].len);
    }
    flush_bytes(&pending, out);
    sb_free(&pending);
}

// --- per-token rewrites

static void metaspace(const TokDec *d, const char *text, const TokPieces *in, List *out) {
    for (size_t k = 0; k < in->n; k++) {
        const char *t = text + in->v[k].off;
        size_t at = list_begin(out);
        for (size_t i = 0; i < in->v[k].len;) {
            uint32_t cp;
            size_t n = tok_utf8_next(t, i, &cp);
            if (cp != d->ch)
                sb_append(&out->text, t + i, n);
            else if (!(k == 0 && d->prepend_scheme != TPS_NEVER))
                sb_append(&out->text, " ", 1);
            i += n;
        }
        list_end(out, at);
    }
}

static void strip(const TokDec *d, const char *text, const TokPieces *in, List *out) {
    for (size_t k = 0; k < in->n; k++) {
        const char *t = text + in->v[k].off;
        size_t len = in->v[k].len, nchars = 0;
        for (size_t i = 0; i < len; nchars++) {
            uint32_t cp;
            i += tok_utf8_next(t, i, &cp);
        }
        size_t start = 0, cut_chars = 0; /* strip up to d->start leading d->ch */
        while (cut_chars < d->start && start < len) {
            uint32_t cp;
            size_t n = tok_utf8_next(t, start, &cp);
            if (cp != d->ch) break;
            start += n, cut_chars++;
        }
        size_t end = len, stop_chars = 0, limit = nchars - cut_chars;
        while (stop_chars < d->stop && stop_chars < limit) {
            size_t at;
            if (tok_utf8_prev(t, end, &at) != d->ch) break;
            end = at, stop_chars++;
        }
        list_add(out, t + start, end - start);
    }
}

static bool replace(const TokDec *d, TokScratch *s, const char *text, const TokPieces *in,
                    List *out, char *err, size_t errlen) {
    for (size_t k = 0; k < in->n; k++) {
        const char *t = text + in->v[k].off;
        s->spans.n = 0;
        if (!tok_pattern_find_matches(&d->pattern, s, t, in->v[k].len, &s->spans, err, errlen))
            return false;
        size_t at = list_begin(out);
        for (size_t i = 0; i < s->spans.n; i++) {
            const TokSpan *sp = &s->spans.v[i];
            if (sp->is_match)
                sb_append(&out->text, d->str, d->str_len);
            else
                sb_append(&out->text, t + sp->start, sp->end - sp->start);
        }
        list_end(out, at);
    }
    return true;
}

/* Rust's str::replace: every non-overlapping occurrence, left to right. */
static void replace_all(StrBuf *sb, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to);
    if (!sb->len || !memmem(sb->data, sb->len, from, fl)) return;
    StrBuf r = {0};
    for (size_t i = 0; i < sb->len;) {
        const char *hit = memmem(sb->data + i, sb->len - i, from, fl);
        size_t stop = hit ? (size_t)(hit - sb->data) : sb->len;
        sb_append(&r, sb->data + i, stop - i);
        if (!hit) break;
        sb_append(&r, to, tl);
        i = stop + fl;
    }
    sb_free(sb);
    *sb = r;
}

/* HF's wordpiece::cleanup: the spaces a BERT tokenizer puts before punctuation. */
static void wordpiece_cleanup(StrBuf *sb) {
    static const char *const pairs[][2] = {
        {" .", "."},     {" ?", "?"},     {" !", "!"},          {" ,", ","},
        {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"},        {" do not", " don't"},
        {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        replace_all(sb, pairs[i][0], pairs[i][1]);
}

static void wordpiece(const TokDec *d, const char *text, const TokPieces *in, List *out) {
    StrBuf tok = {0};
    for (size_t k = 0; k < in->n; k++) {
        const char *t = text + in->v[k].off;
        size_t len = in->v[k].len;
        tok.len = 0;
        if (k != 0 && len >= d->str_len && memcmp(t, d->str, d->str_len) == 0)
            sb_append(&tok, t + d->str_len, len - d->str_len);
        else {
            if (k != 0) sb_append(&tok, " ", 1);
            sb_append(&tok, t, len);
        }
        if (d->cleanup) wordpiece_cleanup(&tok);
        list_add(out, tok.data ? tok.data : "", tok.len);
    }
    sb_free(&tok);
}

static void bpe_suffix(const TokDec *d, const char *text, const TokPieces *in, List *out) {
    StrBuf tok = {0};
    for (size_t k = 0; k < in->n; k++) {
        tok.len = 0;
        sb_append(&tok, text + in->v[k].off, in->v[k].len);
        char *suffix = xstrndup(d->str, d->str_len);
        if (d->str_len) replace_all(&tok, suffix, k == in->n - 1 ? "" : " ");
        free(suffix);
        list_add(out, tok.data ? tok.data : "", tok.len);
    }
    sb_free(&tok);
}

// --- the chain

bool tok_run_decoders(const TokDec *steps, size_t n, TokScratch *s, const char *text,
                      const TokPiece *tokens, size_t n_tokens, StrBuf *out, char *err,
                      size_t errlen) {
    List a = {0}, b = {0};
    for (size_t i = 0; i < n_tokens; i++) list_add(&a, text + tokens[i].off, tokens[i].len);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        const TokDec *d = &steps[i];
        const char *t = a.text.data ? a.text.data : "";
        b.text.len = 0;
        b.toks.n = 0;
        switch (d->kind) {
        case TD_BYTELEVEL: bytelevel(t, &a.toks, &b); break;
        case TD_BYTEFALLBACK: bytefallback(t, &a.toks, &b); break;
        case TD_METASPACE: metaspace(d, t, &a.toks, &b); break;
        case TD_STRIP: strip(d, t, &a.toks, &b); break;
        case TD_REPLACE: ok = replace(d, s, t, &a.toks, &b, err, errlen); break;
        case TD_WORDPIECE: wordpiece(d, t, &a.toks, &b); break;
        case TD_BPE: bpe_suffix(d, t, &a.toks, &b); break;
        case TD_FUSE: {
            size_t at = list_begin(&b);
            for (size_t k = 0; k < a.toks.n; k++)
                sb_append(&b.text, t + a.toks.v[k].off, a.toks.v[k].len);
            list_end(&b, at);
            break;
        }
        }
        List tmp = a;
        a = b;
        b = tmp;
    }
    out->len = 0;
    const char *t = a.text.data ? a.text.data : "";
    for (size_t k = 0; ok && k < a.toks.n; k++)
        sb_append(out, t + a.toks.v[k].off, a.toks.v[k].len);
    if (!out->data) sb_append(out, "", 0);
    sb_free(&a.text);
    sb_free(&b.text);
    free(a.toks.v);
    free(b.toks.v);
    return ok;
}
