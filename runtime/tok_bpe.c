/* tok_bpe.c - the BPE model of tokenizer.json: vocabulary, merges, and the merge loop of HF's
 * models/bpe (BPE::merge_word then Word::merge_all), reproduced step for step:
 *
 *   - a word starts as one symbol per character (continuing_subword_prefix on all but the
 *     first, end_of_word_suffix on the last); a character missing from the vocabulary becomes
 *     its "<0xAB>" byte tokens (byte_fallback) or the unk token (fused with a preceding unk
 *     when fuse_unk), or is dropped when there is no unk token;
 *   - merges then apply lowest rank first, leftmost first among equal ranks, from a min-heap
 *     of candidate pairs; a popped candidate is stale unless the pair now at its position
 *     still merges into the same id (HF's test, kept even where it is lax);
 *   - with ignore_merges a word that is itself in the vocabulary is that one token.
 *
 * Words shorter than 256 bytes are cached per scratch (HF caches them per model); the cache
 * only saves time.
 *
 * SentencePiece-style tokenizers without a pre-tokenizer (Llama 2, Mistral, Gemma) hand the
 * model whole lines as one word: slow to merge and never cached. No merge can cross a
 * position where the text has "x\u2581" (x not \u2581) unless some token's string contains
 * "x\u2581" (a merge's result is a token). At load we collect those x; a word is then cut
 * before each "\u2581" that follows any other character, and the pieces are merged (and
 * cached) on their own: the same ids, found faster. After a character missing from the
 * vocabulary the symbol before the cut is a byte-fallback token ("<0xAB>", ending in '>') or
 * the unk token, so there a cut also needs '>' and the unk token's last character safe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

#define CACHE_MAX_WORD 256
#define CACHE_SLOTS 32768 /* power of two; cleared when half full */
#define CACHE_KEY_BYTES (1u << 20)

// --- loading

static bool load_vocab(TokBpe *m, const Json *vocab, const char *path, char *err, size_t errlen) {
    if (!vocab || vocab->type != JSON_OBJECT)
        return tok_json_err(err, errlen, path, vocab, "model.vocab must be an object of token: id");
    int64_t max_id = -1;
    for (size_t i = 0; i < vocab->obj.n; i++) {
        int64_t id;
        const Json *v = vocab->obj.vals[i];
        if (!json_as_int(v, &id) || id < 0 || id > INT32_MAX - 1)
            return tok_json_err(err, errlen, path, v,
                                "model.vocab[\"%.60s\"]: the id must be an integer in 0..2^31-2",
                                vocab->obj.keys[i]);
        tok_strmap_put(&m->vocab, vocab->obj.keys[i], vocab->obj.key_lens[i], (int32_t)id);
        if (id > max_id) max_id = id;
    }
    m->vocab_count = m->vocab.n;
    m->id_limit = (size_t)(max_id + 1);
    m->id_to_str = xcalloc(m->id_limit ? m->id_limit : 1, sizeof *m->id_to_str);
    m->id_to_len = xcalloc(m->id_limit ? m->id_limit : 1, sizeof *m->id_to_len);
    /* id -> token from the map (a repeated key keeps its last id, as serde's HashMap does;
     * two tokens with one id: either, as HF's HashMap inversion gives either) */
    for (size_t slot = 0; slot < m->vocab.cap; slot++) {
        const TokStrSlot *e = &m->vocab.slots[slot];
        if (!e->hash) continue;
        m->id_to_str[e->val] = (char *)tok_strmap_key(&m->vocab, slot);
        m->id_to_len[e->val] = e->key_len;
    }
    return true;
}

/* One merge: "a b" (exactly one space, as HF's merges.txt reader) or ["a", "b"]. */
static bool merge_parts(const Json *mg, size_t rank, const char **a, size_t *al, const char **b,
                        size_t *bl, const char *path, char *err, size_t errlen) {
    if (mg->type == JSON_STRING) {
        const char *s = mg->str.s, *sp = memchr(s, ' ', mg->str.len);
        if (!sp || memchr(sp + 1, ' ', mg->str.len - (size_t)(sp + 1 - s)))
            return tok_json_err(err, errlen, path, mg,
                                "model.merges[%zu] \"%.60s\" must be two tokens separated by "
                                "exactly one space (HF: \"Merges text file invalid\")",
                                rank, s);
        *a = s, *al = (size_t)(sp - s), *b = sp + 1, *bl = mg->str.len - *al - 1;
        return true;
    }
    const Json *x = json_at(mg, 0), *y = json_at(mg, 1);
    if (mg->type != JSON_ARRAY || mg->arr.n != 2 || !json_as_str(x) || !json_as_str(y))
        return tok_json_err(err, errlen, path, mg,
                            "model.merges[%zu] must be a string \"a b\" or a pair [\"a\", \"b\"]",
                            rank);
    *a = x->str.s, *al = x->str.len, *b = y->str.s, *bl = y->str.len;
    return true;
}

static bool missing_token(const char *tok, size_t len, size_t rank, const Json *at,
                          const char *path, char *err, size_t errlen) {
    return tok_json_err(err, errlen, path, at,
                        "model.merges[%zu] uses \"%.*s\", which is not in model.vocab", rank,
                        (int)(len > 80 ? 80 : len), tok);
}

static bool load_merges(TokBpe *m, const Json *merges, const char *path, char *err,
                        size_t errlen) {
    if (!merges || merges->type != JSON_ARRAY)
        return tok_json_err(err, errlen, path, merges, "model.merges must be an array");
    JsonType kind = merges->arr.n ? merges->arr.items[0]->type : JSON_STRING;
    StrBuf joined = {0};
    uint8_t *made = xcalloc(m->id_limit + 1, 1); /* how many pairs make each id (capped) */
    m->shared_result = xcalloc(m->id_limit + 1, 1);
    size_t rank = 0;
    bool ok = true;
    for (size_t i = 0; i < merges->arr.n && ok; i++) {
        const Json *mg = merges->arr.items[i];
        if (mg->type != kind) {
            ok = tok_json_err(err, errlen, path, mg,
                              "model.merges mixes \"a b\" strings and [a, b] pairs");
            break;
        }
        if (kind == JSON_STRING && strncmp(mg->str.s, "#version", 8) == 0) continue;
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (!(ok = merge_parts(mg, rank, &a, &al, &b, &bl, path, err, errlen))) break;
        int32_t ida = tok_strmap_get(&m->vocab, a, al), idb = tok_strmap_get(&m->vocab, b, bl);
        if (ida < 0) ok = missing_token(a, al, rank, mg, path, err, errlen);
        else if (idb < 0) ok = missing_token(b, bl, rank, mg, path, err, errlen);
        else if (bl < m->prefix_len)
            ok = tok_json_err(err, errlen, path, mg,
                              "model.merges[%zu]: \"%.*s\" is shorter than "
                              "continuing_subword_prefix",
                              rank, (int)bl, b);
        if (!ok) break;
        joined.len = 0;
        sb_append(&joined, a, al);
        sb_append(&joined, b + m->prefix_len, bl - m->prefix_len);
        int32_t idn = tok_strmap_get(&m->vocab, joined.data, joined.len);
        if (idn < 0) {
            ok = missing_token(joined.data, joined.len, rank, mg, path, err, errlen);
            break;
        }
        /* a repeated pair keeps its last rank, as HF's HashMap collect does */
        uint64_t key = ((uint64_t)ida << 32) | (uint32_t)idb, old;
        bool repeated = tok_u64map_get(&m->merges, key, &old);
        tok_u64map_put(&m->merges, key, ((uint64_t)rank << 32) | (uint32_t)idn);
        if (!repeated && made[idn]++) m->shared_result[idn] = 1;
        rank++;
    }
    sb_free(&joined);
    free(made);
    return ok;
}

static void plan_segments(TokBpe *m);

static bool opt_str(const Json *model, const char *key, char **out, size_t *len, const char *path,
                    char *err, size_t errlen) {
    const char *s;
    size_t n;
    char what[64];
    snprintf(what, sizeof what, "model.%s", key);
    if (!tok_get_str(model, key, false, &s, &n, what, path, err, errlen)) return false;
    *out = s && n ? xstrndup(s, n) : NULL; /* "" adds nothing: the same as none */
    if (len) *len = *out ? n : 0;
    return true;
}

bool tok_bpe_load(TokBpe *m, const Json *model, const char *path, char *err, size_t errlen) {
    *m = (TokBpe){.unk_id = -1};
    const Json *dropout = json_get(model, "dropout");
    double p;
    if (dropout && dropout->type != JSON_NULL && (!json_as_double(dropout, &p) || p != 0.0))
        return tok_json_err(err, errlen, path, dropout,
                            "model.dropout is not supported yet (BPE dropout makes ids random; "
                            "set it to null)");
    if (!opt_str(model, "unk_token", &m->unk_token, NULL, path, err, errlen) ||
        !opt_str(model, "continuing_subword_prefix", &m->prefix, &m->prefix_len, path, err,
                 errlen) ||
        !opt_str(model, "end_of_word_suffix", &m->suffix, &m->suffix_len, path, err, errlen) ||
        !tok_get_bool(model, "fuse_unk", false, &m->fuse_unk, "model.fuse_unk", path, err,
                      errlen) ||
        !tok_get_bool(model, "byte_fallback", false, &m->byte_fallback, "model.byte_fallback",
                      path, err, errlen) ||
        !tok_get_bool(model, "ignore_merges", false, &m->ignore_merges, "model.ignore_merges",
                      path, err, errlen))
        return false;
    /* HF keeps unk_token "" as a token named ""; keep it too */
    const Json *unk = json_get(model, "unk_token");
    if (!m->unk_token && json_as_str(unk)) m->unk_token = xstrdup("");
    if (!load_vocab(m, json_get(model, "vocab"), path, err, errlen) ||
        !load_merges(m, json_get(model, "merges"), path, err, errlen))
        return false;
    if (m->unk_token) m->unk_id = tok_strmap_get(&m->vocab, m->unk_token, strlen(m->unk_token));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_ids[b] = tok_strmap_get(&m->vocab, name, 6);
    }
    if (!m->prefix && !m->suffix) { /* one-code-point tokens by table, not by hash */
        m->bmp_ids = xmalloc(0x10000 * sizeof *m->bmp_ids);
        memset(m->bmp_ids, 0xFF, 0x10000 * sizeof *m->bmp_ids);
        for (size_t slot = 0; slot < m->vocab.cap; slot++) {
            const TokStrSlot *e = &m->vocab.slots[slot];
            uint32_t cp;
            if (e->hash && e->key_len && e->key_len <= 3 &&
                tok_utf8_next(tok_strmap_key(&m->vocab, slot), 0, &cp) == e->key_len)
                m->bmp_ids[cp] = e->val;
        }
    }
    plan_segments(m);
    return true;
}

void tok_bpe_free(TokBpe *m) {
    tok_strmap_free(&m->vocab);
    free(m->id_to_str);
    free(m->id_to_len);
    tok_u64map_free(&m->merges);
    free(m->unk_token);
    free(m->prefix);
    free(m->suffix);
    free(m->bmp_ids);
    free(m->shared_result);
    *m = (TokBpe){0};
}

// --- the word cache (per scratch)

static void cache_clear(TokScratch *s) {
    if (s->cache_hash) memset(s->cache_hash, 0, CACHE_SLOTS * sizeof *s->cache_hash);
    s->cache_n = 0;
    s->cache_keys.len = 0;
    s->cache_ids.len = 0;
}

void tok_scratch_bind(TokScratch *s, const Tokenizer *tok) {
    if (s->owner == tok->serial) return;
    s->owner = tok->serial;
    cache_clear(s);
}

static bool cache_get(TokScratch *s, uint64_t h, const char *w, size_t len, TokIds *out) {
    if (!s->cache_hash) return false;
    for (size_t j = h & (CACHE_SLOTS - 1); s->cache_hash[j]; j = (j + 1) & (CACHE_SLOTS - 1)) {
        if (s->cache_hash[j] == h && s->cache_key_len[j] == len &&
            memcmp(s->cache_keys.data + s->cache_key_off[j], w, len) == 0) {
            for (uint32_t k = 0; k < s->cache_ids_len[j]; k++)
                tok_ids_push(out, s->cache_ids.ids[s->cache_ids_off[j] + k]);
            return true;
        }
    }
    return false;
}

static void cache_put(TokScratch *s, uint64_t h, const char *w, size_t len, const int32_t *ids,
                      size_t n) {
    if (!s->cache_hash) {
        s->cache_hash = xcalloc(CACHE_SLOTS, sizeof *s->cache_hash);
        s->cache_key_off = xmalloc(CACHE_SLOTS * sizeof *s->cache_key_off);
        s->cache_key_len = xmalloc(CACHE_SLOTS * sizeof *s->cache_key_len);
        s->cache_ids_off = xmalloc(CACHE_SLOTS * sizeof *s->cache_ids_off);
        s->cache_ids_len = xmalloc(CACHE_SLOTS * sizeof *s->cache_ids_len);
    }
    if (s->cache_n * 2 >= CACHE_SLOTS || s->cache_keys.len + len > CACHE_KEY_BYTES) cache_clear(s);
    size_t j = h & (CACHE_SLOTS - 1);
    while (s->cache_hash[j]) j = (j + 1) & (CACHE_SLOTS - 1);
    s->cache_hash[j] = h;
    s->cache_key_off[j] = (uint32_t)s->cache_keys.len;
    s->cache_key_len[j] = (uint32_t)len;
    s->cache_ids_off[j] = (uint32_t)s->cache_ids.len;
    s->cache_ids_len[j] = (uint32_t)n;
    sb_append(&s->cache_keys, w, len);
    for (size_t k = 0; k < n; k++) tok_ids_push(&s->cache_ids, ids[k]);
    s->cache_n++;
}

// --- merge_word: characters to initial symbols

static void sym_push(TokScratch *s, size_t *n, uint32_t id, uint32_t len) {
    if (*n == s->syms_cap) {
        s->syms_cap = s->syms_cap ? s->syms_cap * 2 : 256;
        s->syms = xrealloc(s->syms, s->syms_cap * sizeof *s->syms);
    }
    s->syms[*n] = (TokSym){id, (int32_t)*n - 1, -1, len};
    if (*n > 0) s->syms[*n - 1].next = (int32_t)*n;
    (*n)++;
}

/* Id of one character (with prefix/suffix as the model asks), -1 if not in the vocabulary.
 * key and key_len get the string looked up (for byte fallback). */
static int32_t char_id(const TokBpe *m, TokScratch *s, const char *w, size_t i, size_t n,
                       bool first, bool last, const char **key, size_t *key_len) {
    *key = w + i, *key_len = n;
    if (m->bmp_ids && n <= 3) {
        uint32_t cp;
        tok_utf8_next(w, i, &cp);
        return m->bmp_ids[cp];
    }
    if ((first || !m->prefix) && (!last || !m->suffix))
        return tok_strmap_get(&m->vocab, w + i, n);
    s->tmp.len = 0;
    if (!first && m->prefix) sb_append(&s->tmp, m->prefix, m->prefix_len);
    sb_append(&s->tmp, w + i, n);
    if (last && m->suffix) sb_append(&s->tmp, m->suffix, m->suffix_len);
    *key = s->tmp.data, *key_len = s->tmp.len;
    return tok_strmap_get(&m->vocab, s->tmp.data, s->tmp.len);
}

static bool unk_missing(const TokBpe *m, char *err, size_t errlen) {
    return errf(err, errlen, "tokenizer: model.unk_token \"%s\" is not in model.vocab",
                m->unk_token);
}

static bool initial_symbols(const TokBpe *m, TokScratch *s, const char *w, size_t len,
                            size_t *nsym, char *err, size_t errlen) {
    size_t n = 0;
    int64_t unk_len = -1; /* a pending unk symbol (its byte length), -1 when none */
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t cl = tok_utf8_next(w, i, &cp);
        const char *key;
        size_t key_len;
        int32_t id = char_id(m, s, w, i, cl, i == 0, i + cl == len, &key, &key_len);
        i += cl;
        if (id >= 0) {
            if (unk_len >= 0) sym_push(s, &n, (uint32_t)m->unk_id, (uint32_t)unk_len);
            unk_len = -1;
            sym_push(s, &n, (uint32_t)id, (uint32_t)cl);
            continue;
        }
        if (m->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < key_len && all; k++) all = m->byte_ids[(uint8_t)key[k]] >= 0;
            if (all) { /* HF adds these before a pending unk, which it flushes later */
                for (size_t k = 0; k < key_len; k++)
                    sym_push(s, &n, (uint32_t)m->byte_ids[(uint8_t)key[k]], 1);
                continue;
            }
        }
        if (!m->unk_token) continue; /* no unk token: the character is dropped */
        if (m->unk_id < 0) return unk_missing(m, err, errlen);
        if (unk_len >= 0 && m->fuse_unk) {
            unk_len += (int64_t)cl;
            continue;
        }
        if (unk_len >= 0) sym_push(s, &n, (uint32_t)m->unk_id, (uint32_t)unk_len);
        unk_len = (int64_t)cl;
    }
    if (unk_len >= 0) sym_push(s, &n, (uint32_t)m->unk_id, (uint32_t)unk_len);
    *nsym = n;
    return true;
}

// --- merge_all: the priority queue of merges

static bool merge_less(TokMerge a, TokMerge b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(TokScratch *s, size_t *n, TokMerge x) {
    if (*n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 256;
        s->heap = xrealloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    size_t i = (*n)++;
    while (i > 0 && merge_less(x, s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = x;
}

static TokMerge heap_pop(TokScratch *s, size_t *n) {
    TokMerge top = s->heap[0], last = s->heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && merge_less(s->heap[c + 1], s->heap[c])) c++;
        if (!merge_less(s->heap[c], last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (*n) s->heap[i] = last;
    return top;
}

static bool find_merge(const TokBpe *m, uint32_t a, uint32_t b, uint32_t *rank, uint32_t *id) {
    uint64_t v;
    if (!tok_u64map_get(&m->merges, ((uint64_t)a << 32) | b, &v)) return false;
    *rank = (uint32_t)(v >> 32);
    *id = (uint32_t)v;
    return true;
}

static void push_pair(const TokBpe *m, TokScratch *s, size_t *nheap, size_t pos) {
    TokSym *sy = s->syms;
    uint32_t rank, id;
    if (sy[pos].next < 0) return;
    uint32_t a = sy[pos].c, b = sy[sy[pos].next].c;
    if (find_merge(m, a, b, &rank, &id))
        heap_push(s, nheap, (TokMerge){rank, (uint32_t)pos, id, a, b});
}

/* HF's test that a popped candidate still applies: the pair now at its position merges into
 * the same id. When the pair is the one it was found for, it does, without a lookup; when it
 * is another and no other pair makes that id, it does not. */
static bool still_valid(const TokBpe *m, const TokMerge *top, uint32_t a, uint32_t b) {
    if (a == top->left && b == top->right) return true;
    if (!m->shared_result[top->new_id]) return false;
    uint32_t rank, id;
    return find_merge(m, a, b, &rank, &id) && id == top->new_id;
}

static void merge_all(const TokBpe *m, TokScratch *s, size_t nsym) {
    TokSym *sy = s->syms;
    size_t nheap = 0;
    for (size_t i = 0; i + 1 < nsym; i++) push_pair(m, s, &nheap, i);
    while (nheap) {
        TokMerge top = heap_pop(s, &nheap);
        TokSym *cur = &sy[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        TokSym *right = &sy[cur->next];
        if (!still_valid(m, &top, cur->c, right->c)) continue;
        cur->c = top.new_id;
        cur->len += right->len;
        cur->next = right->next;
        right->len = 0;
        if (cur->next >= 0) sy[cur->next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) push_pair(m, s, &nheap, (size_t)cur->prev);
        push_pair(m, s, &nheap, top.pos);
    }
}

// --- one word

/* One word (or one safe piece of it): cached, else merged. */
static bool encode_word(const TokBpe *m, TokScratch *s, const char *w, size_t len, TokIds *out,
                        char *err, size_t errlen) {
    uint64_t h = 0;
    if (len < CACHE_MAX_WORD) {
        h = tok_hash_bytes(w, len);
        if (cache_get(s, h, w, len, out)) return true;
    }
    size_t nsym = 0;
    if (!initial_symbols(m, s, w, len, &nsym, err, errlen)) return false;
    merge_all(m, s, nsym);
    size_t first = out->len;
    for (size_t i = 0; i < nsym; i++)
        if (s->syms[i].len) tok_ids_push(out, (int32_t)s->syms[i].c);
    if (len < CACHE_MAX_WORD) cache_put(s, h, w, len, out->ids + first, out->len - first);
    return true;
}

#define METASPACE "\xE2\x96\x81" /* U+2581, SentencePiece's space */

/* Whether merging can never join across the "\u2581" at w[b] (see the file comment). */
static bool safe_cut(const TokBpe *m, const char *w, size_t b) {
    size_t at;
    uint32_t x = tok_utf8_prev(w, b, &at);
    if (x == 0x2581) return false;
    for (size_t i = 0; i < m->n_seg_unsafe; i++)
        if (m->seg_unsafe[i] == x) return false;
    return m->seg_after_fallback || (x < 0x10000 && m->bmp_ids[x] >= 0);
}

bool tok_bpe_word(const TokBpe *m, TokScratch *s, const char *w, size_t len, TokIds *out,
                  char *err, size_t errlen) {
    if (len == 0) return true;
    if (m->ignore_merges) {
        int32_t id = tok_strmap_get(&m->vocab, w, len);
        if (id >= 0) {
            tok_ids_push(out, id);
            return true;
        }
    }
    if (!m->seg_split || len < 16) return encode_word(m, s, w, len, out, err, errlen);
    size_t start = 0;
    for (const char *p = w + 1; (p = memmem(p, (size_t)(w + len - p), METASPACE, 3)); p += 3) {
        size_t b = (size_t)(p - w);
        if (b <= start || !safe_cut(m, w, b)) continue;
        if (!encode_word(m, s, w + start, b - start, out, err, errlen)) return false;
        start = b;
    }
    return encode_word(m, s, w + start, len - start, out, err, errlen);
}

/* Decide whether words may be cut before "\u2581", and where not (tok_bpe_word). */
static void plan_segments(TokBpe *m) {
    if (m->prefix || m->suffix || m->ignore_merges || !m->bmp_ids) return;
    if (tok_strmap_get(&m->vocab, METASPACE, 3) < 0) return; /* not SentencePiece-style */
    bool gt_unsafe = false, unk_unsafe = false;
    uint32_t unk_last = 0;
    if (m->unk_token && *m->unk_token) {
        size_t at;
        unk_last = tok_utf8_prev(m->unk_token, strlen(m->unk_token), &at);
    }
    for (size_t slot = 0; slot < m->vocab.cap; slot++) {
        const TokStrSlot *e = &m->vocab.slots[slot];
        if (!e->hash) continue;
        const char *k = tok_strmap_key(&m->vocab, slot);
        for (const char *p = k; (p = memmem(p, e->key_len - (size_t)(p - k), METASPACE, 3));
             p += 3) {
            if (p == k) continue;
            size_t at;
            uint32_t x = tok_utf8_prev(k, (size_t)(p - k), &at);
            if (x == 0x2581) continue;
            bool known = false;
            for (size_t i = 0; i < m->n_seg_unsafe; i++) known |= m->seg_unsafe[i] == x;
            if (known) continue;
            if (m->n_seg_unsafe == 8) return; /* too many: keep words whole */
            m->seg_unsafe[m->n_seg_unsafe++] = x;
            gt_unsafe |= x == '>';
            unk_unsafe |= x == unk_last;
        }
    }
    m->seg_split = true;
    m->seg_after_fallback = !gt_unsafe && !unk_unsafe;
}
