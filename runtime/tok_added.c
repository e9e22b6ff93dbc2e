/* tok_added.c - added tokens: found in the text before the model sees it, as HF's
 * AddedVocabulary::find_matches does. A byte trie gives aho-corasick's LeftmostLongest
 * matches (the earliest start, the longest there; the search resumes where the match ended),
 * then single_word / lstrip / rstrip adjust or discard each match with the same rules and
 * the same \w and \s as HF's regexes. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

// --- the trie

static size_t trie_new_node(TokTrie *t) {
    if (t->n_nodes == t->cap_nodes) {
        t->cap_nodes = t->cap_nodes ? t->cap_nodes * 2 : 64;
        t->terminal = xrealloc(t->terminal, t->cap_nodes * sizeof *t->terminal);
    }
    t->terminal[t->n_nodes] = -1;
    return t->n_nodes++;
}

void tok_trie_add(TokTrie *t, const char *s, size_t len, int32_t token_index) {
    if (len == 0) return; /* HF adds no empty content; an empty pattern would match everywhere */
    if (t->n_nodes == 0) trie_new_node(t); /* the root */
    size_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint64_t key = ((uint64_t)node << 8) | (uint8_t)s[i], child;
        if (!tok_u64map_get(&t->edges, key, &child)) {
            child = trie_new_node(t);
            tok_u64map_put(&t->edges, key, child);
        }
        node = (size_t)child;
    }
    t->first_byte[(uint8_t)s[0]] = true;
    if (t->terminal[node] < 0) { /* a repeated pattern: aho-corasick reports the first one */
        t->terminal[node] = token_index;
        t->count++;
    }
}

void tok_trie_free(TokTrie *t) {
    tok_u64map_free(&t->edges);
    free(t->terminal);
    *t = (TokTrie){0};
}

/* The leftmost-longest match at or after `from`: true with [*ms, *me) and the token index. */
static bool trie_find(const TokTrie *t, const char *text, size_t len, size_t from, size_t *ms,
                      size_t *me, int32_t *token) {
    if (!t->count) return false;
    for (size_t i = from; i < len; i++) {
        if (!t->first_byte[(uint8_t)text[i]]) continue;
        size_t node = 0, best_end = 0;
        int32_t best = -1;
        for (size_t j = i; j < len; j++) {
            uint64_t child;
            if (!tok_u64map_get(&t->edges, ((uint64_t)node << 8) | (uint8_t)text[j], &child))
                break;
            node = (size_t)child;
            if (t->terminal[node] >= 0) best = t->terminal[node], best_end = j + 1;
        }
        if (best >= 0) {
            *ms = i;
            *me = best_end;
            *token = best;
            return true;
        }
    }
    return false;
}

// --- the rules of AddedVocabulary::find_matches

/* Regex \w$ on text[0..end): the last character is a word character. */
static bool ends_with_word(const char *text, size_t end) {
    size_t at;
    return end > 0 && tok_is_word(tok_utf8_prev(text, end, &at));
}

/* Regex ^\w on text[start..len). */
static bool starts_with_word(const char *text, size_t start, size_t len) {
    uint32_t cp;
    return start < len && (tok_utf8_next(text, start, &cp), tok_is_word(cp));
}

/* Start of the whitespace that ends text[0..end) (regex \s*$). */
static size_t trailing_space_start(const char *text, size_t end) {
    while (end > 0) {
        size_t at;
        if (!tok_is_space(tok_utf8_prev(text, end, &at))) break;
        end = at;
    }
    return end;
}

/* End of the whitespace that starts text[start..len) (regex ^\s*). */
static size_t leading_space_end(const char *text, size_t start, size_t len) {
    while (start < len) {
        uint32_t cp;
        size_t n = tok_utf8_next(text, start, &cp);
        if (!tok_is_space(cp)) break;
        start += n;
    }
    return start;
}

void tok_added_split(const TokAddedVocab *av, const TokTrie *trie, const char *text, size_t len,
                     size_t base, bool at_start, TokPieces *out) {
    size_t start_offset = 0, from = 0, ms, me;
    int32_t ti;
    while (from < len && trie_find(trie, text, len, from, &ms, &me, &ti)) {
        from = me; /* the search resumes after the raw match, whatever happens to it below */
        const TokAdded *tk = &av->tokens[ti];
        size_t start = ms, stop = me;
        if (tk->single_word) {
            bool start_space = start == 0 || !ends_with_word(text, start);
            bool stop_space = stop == len || !starts_with_word(text, stop, len);
            if (!start_space || !stop_space) continue;
        }
        if (tk->lstrip) {
            size_t s = trailing_space_start(text, start);
            start = s > start_offset ? s : start_offset;
        }
        if (tk->rstrip) stop = leading_space_end(text, stop, len);
        if (start_offset < start)
            tok_pieces_push(out, base + start_offset, start - start_offset, -1,
                            at_start && start_offset == 0);
        tok_pieces_push(out, base + start, stop - start, tk->id, at_start && start == 0);
        start_offset = stop;
    }
    if (start_offset < len)
        tok_pieces_push(out, base + start_offset, len - start_offset, -1,
                        at_start && start_offset == 0);
}

void tok_added_free(TokAddedVocab *av) {
    for (size_t i = 0; i < av->n; i++) {
        free(av->tokens[i].content);
        free(av->tokens[i].normed);
    }
    free(av->tokens);
    tok_strmap_free(&av->by_content);
    tok_u64map_free(&av->by_id);
    tok_strmap_free(&av->specials);
    tok_trie_free(&av->raw);
    tok_trie_free(&av->norm);
    *av = (TokAddedVocab){0};
}
