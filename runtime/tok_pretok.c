/* tok_pretok.c - pre-tokenizers: cut a normalized piece of text into words, as HF's
 * PreTokenizedString::split with NormalizedString::split and its delimiter behaviors.
 *
 * A piece list is (offset, length) ranges over one text buffer. Split steps cut ranges and
 * keep the buffer; ByteLevel and Metaspace rewrite the text, so they write a new buffer.
 * Two buffers and two piece lists of the scratch alternate; empty pieces are dropped after
 * every step, as HF does. */
#include <string.h>

#include "tok_internal.h"

typedef struct {
    StrBuf *buf;
    TokPieces *pieces;
} Stage;

// --- delimiter behaviors

/* Turn the spans of one piece (at `base` of the buffer) into pieces, per behavior. */
static void apply_behavior(TokBehavior behavior, const TokSpans *sp, size_t base, bool at_start,
                           TokPieces *out) {
    const TokSpan *v = sp->v;
    size_t n = sp->n;
#define EMIT(a, b) \
    if ((b) > (a)) tok_pieces_push(out, base + (a), (b) - (a), -1, at_start && (a) == 0)
    switch (behavior) {
    case TB_ISOLATED:
        for (size_t i = 0; i < n; i++) EMIT(v[i].start, v[i].end);
        break;
    case TB_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!v[i].is_match) EMIT(v[i].start, v[i].end);
        break;
    case TB_CONTIGUOUS: /* runs of spans with the same is_match become one */
        for (size_t i = 0; i < n;) {
            size_t j = i + 1;
            while (j < n && v[j].is_match == v[i].is_match) j++;
            EMIT(v[i].start, v[j - 1].end);
            i = j;
        }
        break;
    case TB_MERGED_PREV: /* a match joins the non-match before it */
        for (size_t i = 0; i < n;) {
            if (!v[i].is_match && i + 1 < n && v[i + 1].is_match) {
                EMIT(v[i].start, v[i + 1].end);
                i += 2;
            } else {
                EMIT(v[i].start, v[i].end);
                i++;
            }
        }
        break;
    case TB_MERGED_NEXT: /* a match joins the non-match after it */
        for (size_t i = 0; i < n;) {
            if (v[i].is_match && i + 1 < n && !v[i + 1].is_match) {
                EMIT(v[i].start, v[i + 1].end);
                i += 2;
            } else {
                EMIT(v[i].start, v[i].end);
                i++;
            }
        }
        break;
    }
#undef EMIT
}

static bool split_piece(const TokPattern *pat, TokBehavior behavior, bool invert, TokScratch *s,
                        const char *text, const TokPiece *pc, TokPieces *out, char *err,
                        size_t errlen) {
    s->spans.n = 0;
    if (!tok_pattern_find_matches(pat, s, text + pc->off, pc->len, &s->spans, err, errlen))
        return false;
    if (invert)
        for (size_t i = 0; i < s->spans.n; i++) s->spans.v[i].is_match = !s->spans.v[i].is_match;
    apply_behavior(behavior, &s->spans, pc->off, pc->at_start, out);
    return true;
}

// --- ByteLevel

/* GPT-2's byte -> code point map: printable bytes stand for themselves, the others are
 * shifted to U+0100 and up, in byte order. */
static uint32_t byte_char(uint8_t b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 256u + b;
    if (b <= 0xA0) return 256u + 33 + (b - 0x7F);
    return 256u + 67; /* 0xAD */
}

static void put_bytelevel(StrBuf *out, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        uint32_t cp = byte_char((uint8_t)s[i]);
        if (cp < 0x80) {
            char c = (char)cp;
            sb_append(out, &c, 1);
        } else
            tok_sb_put_cp(out, cp);
    }
}

static bool bytelevel(const TokPreTok *st, TokScratch *s, Stage in, Stage out, char *err,
                      size_t errlen) {
    for (size_t k = 0; k < in.pieces->n; k++) {
        const TokPiece *pc = &in.pieces->v[k];
        const char *p = in.buf->data + pc->off;
        size_t len = pc->len;
        if (st->add_prefix_space && p[0] != ' ') {
            s->tmp.len = 0;
            sb_append(&s->tmp, " ", 1);
            sb_append(&s->tmp, p, len);
            p = s->tmp.data;
            len = s->tmp.len;
        }
        s->spans.n = 0;
        if (st->use_regex) {
            if (!tok_pattern_find_matches(&st->pattern, s, p, len, &s->spans, err, errlen))
                return false;
        } else
            tok_spans_push(&s->spans, 0, len, false);
        for (size_t i = 0; i < s->spans.n; i++) {
            const TokSpan *sp = &s->spans.v[i];
            if (sp->end == sp->start) continue;
            size_t at = out.buf->len;
            put_bytelevel(out.buf, p + sp->start, sp->end - sp->start);
            tok_pieces_push(out.pieces, at, out.buf->len - at, -1, pc->at_start && sp->start == 0);
        }
    }
    return true;
}

// --- Metaspace

static bool metaspace(const TokPreTok *st, TokScratch *s, Stage in, Stage out, char *err,
                      size_t errlen) {
    for (size_t k = 0; k < in.pieces->n; k++) {
        const TokPiece *pc = &in.pieces->v[k];
        const char *p = in.buf->data + pc->off;
        size_t at = out.buf->len;
        bool starts = p[0] == ' ' || /* after replacing spaces, does it start with repl? */
                      (pc->len >= st->repl_len && memcmp(p, st->repl, st->repl_len) == 0);
        bool prepend = !starts && (st->prepend_scheme == TPS_ALWAYS ||
                                   (st->prepend_scheme == TPS_FIRST && pc->at_start));
        if (prepend) sb_append(out.buf, st->repl, st->repl_len);
        for (size_t i = 0; i < pc->len; i++) {
            if (p[i] == ' ')
                sb_append(out.buf, st->repl, st->repl_len);
            else
                sb_append(out.buf, p + i, 1);
        }
        TokPiece whole = {at, out.buf->len - at, -1, pc->at_start};
        if (!st->split) {
            tok_pieces_push(out.pieces, whole.off, whole.len, -1, whole.at_start);
            continue;
        }
        if (!split_piece(&st->pattern, TB_MERGED_NEXT, false, s, out.buf->data, &whole,
                         out.pieces, err, errlen))
            return false;
    }
    return true;
}

// --- driver

bool tok_pretokenize(const TokPreTok *steps, size_t n, TokScratch *s, const char *text,
                     size_t len, bool at_start, const char **words_text, TokPieces **words,
                     char *err, size_t errlen) {
    Stage cur = {&s->pre_a, &s->words_a}, other = {&s->pre_b, &s->words_b};
    cur.buf->len = 0;
    sb_append(cur.buf, text, len);
    cur.pieces->n = 0;
    if (len) tok_pieces_push(cur.pieces, 0, len, -1, at_start);
    for (size_t i = 0; i < n; i++) {
        const TokPreTok *st = &steps[i];
        other.pieces->n = 0;
        bool ok = true;
        if (st->kind == TP_SPLIT) {
            for (size_t k = 0; k < cur.pieces->n && ok; k++)
                ok = split_piece(&st->pattern, st->behavior, st->invert, s, cur.buf->data,
                                 &cur.pieces->v[k], other.pieces, err, errlen);
            TokPieces *t = cur.pieces; /* same text, new cuts */
            cur.pieces = other.pieces;
            other.pieces = t;
        } else {
            other.buf->len = 0;
            ok = st->kind == TP_BYTELEVEL ? bytelevel(st, s, cur, other, err, errlen)
                                          : metaspace(st, s, cur, other, err, errlen);
            Stage t = cur;
            cur = other;
            other = t;
        }
        if (!ok) return false;
    }
    *words_text = cur.buf->data;
    *words = cur.pieces;
    return true;
}

void tok_pretok_free(TokPreTok *p) { tok_pattern_free(&p->pattern); }
