/* tok_normalize.c - UTF-8 helpers, Unicode normalization forms (NFC, NFD, NFKC, NFKD) and the
 * tokenizer.json normalizers built on them, each as HF's NormalizedString method does it. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

// --- UTF-8

size_t tok_utf8_put(char *out, uint32_t cp) {
    uint8_t *o = (uint8_t *)out;
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

void tok_sb_put_cp(StrBuf *sb, uint32_t cp) {
    char b[4];
    sb_append(sb, b, tok_utf8_put(b, cp));
}

uint32_t tok_utf8_prev(const char *s, size_t end, size_t *start) {
    size_t i = end - 1;
    while (i > 0 && ((uint8_t)s[i] & 0xC0) == 0x80) i--;
    uint32_t cp;
    tok_utf8_next(s, i, &cp);
    *start = i;
    return cp;
}

/* Length of the valid UTF-8 sequence at p[0..n), or 0 when invalid; *bad gets how many bytes
 * form the maximal invalid subpart (Unicode's "substitution of maximal subparts"). */
static size_t utf8_seq(const uint8_t *p, size_t n, size_t *bad) {
    uint8_t b0 = p[0];
    *bad = 1;
    if (b0 < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF)
        need = 1;
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else
        return 0;
    for (size_t k = 1; k <= need; k++) {
        if (k >= n) return 0; /* truncated: the prefix so far is the subpart */
        uint8_t b = p[k];
        if (b < lo || b > hi) return 0;
        lo = 0x80, hi = 0xBF;
        *bad = k + 1;
    }
    return need + 1;
}

size_t tok_utf8_check(const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad, n = utf8_seq(p + i, len - i, &bad);
        if (!n) return i;
        i += n;
    }
    return len;
}

void tok_utf8_lossy(StrBuf *out, const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, run = 0; /* run: start of the pending valid bytes */
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad, n = utf8_seq(p + i, len - i, &bad);
        if (n) {
            i += n;
            continue;
        }
        sb_append(out, s + run, i - run);
        sb_append(out, "\xEF\xBF\xBD", 3);
        i += bad;
        run = i;
    }
    sb_append(out, s + run, len - run);
}

// --- character classes

static bool in_ranges(const uint32_t *r, size_t count, uint32_t cp) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[2 * mid])
            hi = mid;
        else if (cp > r[2 * mid + 1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

bool tok_is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= '\t' && cp <= '\r');
    return in_ranges(tok_uspace_ranges, tok_uspace_count, cp);
}

bool tok_is_punct(uint32_t cp) {
    if (cp < 0x80) return (cp >= '!' && cp <= '/') || (cp >= ':' && cp <= '@') ||
                          (cp >= '[' && cp <= '`') || (cp >= '{' && cp <= '~');
    return in_ranges(tok_upunct_ranges, tok_upunct_count, cp);
}

bool tok_is_numeric(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(tok_unumeric_ranges, tok_unumeric_count, cp);
}

bool tok_is_word(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') ||
               cp == '_';
    return in_ranges(tok_uword_ranges, tok_uword_count, cp);
}

// --- Unicode normalization forms

#define HANGUL_S 0xAC00u
#define HANGUL_L 0x1100u
#define HANGUL_V 0x1161u
#define HANGUL_T 0x11A7u
#define HANGUL_LCOUNT 19u
#define HANGUL_VCOUNT 21u
#define HANGUL_TCOUNT 28u
#define HANGUL_NCOUNT (HANGUL_VCOUNT * HANGUL_TCOUNT)
#define HANGUL_SCOUNT (HANGUL_LCOUNT * HANGUL_NCOUNT)

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LCOUNT && b >= HANGUL_V &&
        b < HANGUL_V + HANGUL_VCOUNT)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_VCOUNT + (b - HANGUL_V)) * HANGUL_TCOUNT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SCOUNT && (a - HANGUL_S) % HANGUL_TCOUNT == 0 &&
        b > HANGUL_T && b < HANGUL_T + HANGUL_TCOUNT)
        return a + (b - HANGUL_T);
    uint64_t key = ((uint64_t)a << 21) | b;
    size_t lo = 0, hi = tok_ucompose_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (tok_ucompose_keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < tok_ucompose_count && tok_ucompose_keys[lo] == key ? tok_ucompose_vals[lo] : 0;
}

static void cps_reserve(TokScratch *s, size_t n) {
    if (n <= s->cps_cap) return;
    s->cps_cap = n + n / 2 + 64;
    s->cps = xrealloc(s->cps, s->cps_cap * sizeof *s->cps);
}

/* Append cp to the decomposition buffer, moving it before the marks of a higher class
 * (canonical ordering; stable, as the algorithm requires). */
static size_t push_ordered(uint32_t *cps, size_t n, uint32_t cp) {
    uint8_t ccc = tok_uprop(cp)->ccc;
    size_t i = n;
    if (ccc)
        while (i > 0 && tok_uprop(cps[i - 1])->ccc > ccc) {
            cps[i] = cps[i - 1];
            i--;
        }
    cps[i] = cp;
    return n + 1;
}

/* Full decomposition of in[0..len) into s->cps, canonically ordered; returns the count. */
static size_t decompose(TokScratch *s, const char *in, size_t len, bool compat) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += tok_utf8_next(in, i, &cp);
        cps_reserve(s, n + 18); /* the longest full decomposition (U+FDFA) is 18 */
        if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_SCOUNT) {
            uint32_t si = cp - HANGUL_S;
            s->cps[n++] = HANGUL_L + si / HANGUL_NCOUNT;
            s->cps[n++] = HANGUL_V + (si % HANGUL_NCOUNT) / HANGUL_TCOUNT;
            if (si % HANGUL_TCOUNT) s->cps[n++] = HANGUL_T + si % HANGUL_TCOUNT;
            continue;
        }
        const TokUProp *p = tok_uprop(cp);
        size_t dl = compat ? p->compat_len : p->canon_len;
        if (!dl) {
            n = push_ordered(s->cps, n, cp);
            continue;
        }
        const uint32_t *d = tok_udecomp + (compat ? p->compat_off : p->canon_off);
        for (size_t k = 0; k < dl; k++) n = push_ordered(s->cps, n, d[k]);
    }
    return n;
}

/* Canonical composition in place (UAX #15): returns the new count. */
static size_t compose(uint32_t *cps, size_t n) {
    size_t out = 0;
    long starter = -1;
    int last_ccc = -1; /* class of the last char kept after the starter; -1: none */
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cps[i];
        int ccc = tok_uprop(c)->ccc;
        if (starter >= 0 && !(last_ccc != -1 && (last_ccc == 0 || last_ccc >= ccc))) {
            uint32_t comp = compose_pair(cps[starter], c);
            if (comp) {
                cps[starter] = comp;
                continue;
            }
        }
        if (ccc == 0) {
            starter = (long)out;
            last_ccc = -1;
        } else
            last_ccc = ccc;
        cps[out++] = c;
    }
    return out;
}

/* Whether in[0..len) is already in the form (quick check; "maybe" counts as no). */
static bool already_normal(TokNormKind form, const char *in, size_t len) {
    uint8_t no_flags = form == TN_NFC    ? TOK_UF_NFC_NO | TOK_UF_NFC_MAYBE
                       : form == TN_NFKC ? TOK_UF_NFKC_NO | TOK_UF_NFKC_MAYBE
                                         : 0;
    bool decomposing = form == TN_NFD || form == TN_NFKD;
    uint8_t last_ccc = 0;
    for (size_t i = 0; i < len;) {
        if ((uint8_t)in[i] < 0xCC) { /* below U+0300: stable in every form except K forms */
            if (form == TN_NFKD || form == TN_NFKC) {
                if ((uint8_t)in[i] >= 0x80) goto slow; /* e.g. U+00A0 has a compat mapping */
            } else if ((uint8_t)in[i] >= 0xC0 && decomposing)
                goto slow;
            last_ccc = 0;
            i += (uint8_t)in[i] < 0x80 ? 1 : 2;
            continue;
        }
    slow:;
        uint32_t cp;
        i += tok_utf8_next(in, i, &cp);
        if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_SCOUNT) {
            if (decomposing) return false;
            last_ccc = 0;
            continue;
        }
        const TokUProp *p = tok_uprop(cp);
        if (p->flags & no_flags) return false;
        if (form == TN_NFD && p->canon_len) return false;
        if (form == TN_NFKD && p->compat_len) return false;
        if (p->ccc && last_ccc > p->ccc) return false;
        last_ccc = p->ccc;
    }
    return true;
}

void tok_unicode_normalize(TokNormKind form, TokScratch *s, const char *in, size_t len,
                           StrBuf *out) {
    out->len = 0;
    if (already_normal(form, in, len)) {
        sb_append(out, in, len);
        return;
    }
    size_t n = decompose(s, in, len, form == TN_NFKC || form == TN_NFKD);
    if (form == TN_NFC || form == TN_NFKC) n = compose(s->cps, n);
    for (size_t i = 0; i < n; i++) tok_sb_put_cp(out, s->cps[i]);
}

// --- the other normalizers

static void lowercase(const char *in, size_t len, StrBuf *out) {
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = tok_utf8_next(in, i, &cp);
        if (cp < 0x80) {
            char c = (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
            sb_append(out, &c, 1);
        } else {
            size_t lo = 0, hi = tok_ulower_count;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (tok_ulower_keys[mid] < cp)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < tok_ulower_count && tok_ulower_keys[lo] == cp) {
                for (size_t k = 0; k < tok_ulower_lens[lo]; k++)
                    tok_sb_put_cp(out, tok_ulower_data[tok_ulower_offs[lo] + k]);
            } else
                sb_append(out, in + i, n);
        }
        i += n;
    }
}

static void strip(const char *in, size_t len, bool left, bool right, StrBuf *out) {
    size_t start = 0, end = len;
    while (left && start < end) {
        uint32_t cp;
        size_t n = tok_utf8_next(in, start, &cp);
        if (!tok_is_space(cp)) break;
        start += n;
    }
    while (right && end > start) {
        size_t at;
        if (!tok_is_space(tok_utf8_prev(in, end, &at))) break;
        end = at;
    }
    sb_append(out, in + start, end - start);
}

static void strip_accents(const char *in, size_t len, StrBuf *out) {
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = tok_utf8_next(in, i, &cp);
        if (cp < 0x300 || !(tok_uprop(cp)->flags & TOK_UF_MARK)) sb_append(out, in + i, n);
        i += n;
    }
}

static bool replace(const TokNorm *r, TokScratch *s, const char *in, size_t len, StrBuf *out,
                    char *err, size_t errlen) {
    s->spans.n = 0;
    if (!tok_pattern_find_matches(&r->pattern, s, in, len, &s->spans, err, errlen)) return false;
    for (size_t i = 0; i < s->spans.n; i++) {
        const TokSpan *sp = &s->spans.v[i];
        if (sp->is_match)
            sb_append(out, r->str, r->str_len);
        else
            sb_append(out, in + sp->start, sp->end - sp->start);
    }
    return true;
}

static bool apply(const TokNorm *st, TokScratch *s, const char *in, size_t len, StrBuf *out,
                  char *err, size_t errlen) {
    out->len = 0;
    switch (st->kind) {
    case TN_NFC:
    case TN_NFD:
    case TN_NFKC:
    case TN_NFKD:
        tok_unicode_normalize(st->kind, s, in, len, out);
        break;
    case TN_LOWERCASE:
        lowercase(in, len, out);
        break;
    case TN_STRIP:
        strip(in, len, st->left, st->right, out);
        break;
    case TN_STRIP_ACCENTS:
        strip_accents(in, len, out);
        break;
    case TN_PREPEND: /* NormalizedString::prepend does nothing to an empty string */
        if (len) sb_append(out, st->str, st->str_len);
        sb_append(out, in, len);
        break;
    case TN_APPEND:
        sb_append(out, in, len);
        if (len) sb_append(out, st->str, st->str_len);
        break;
    case TN_REPLACE:
        return replace(st, s, in, len, out, err, errlen);
    }
    if (!out->data) sb_append(out, "", 0);
    return true;
}

bool tok_normalize(const TokNorm *steps, size_t n, TokScratch *s, const char *in, size_t len,
                   StrBuf *out, char *err, size_t errlen) {
    if (n == 0) {
        out->len = 0;
        sb_append(out, in, len);
        return true;
    }
    const char *cur = in;
    size_t cur_len = len;
    for (size_t i = 0; i < n; i++) {
        StrBuf *dst = i == n - 1 ? out : (i % 2 ? &s->norm_b : &s->norm_a);
        if (!apply(&steps[i], s, cur, cur_len, dst, err, errlen)) return false;
        cur = dst->data;
        cur_len = dst->len;
    }
    return true;
}
