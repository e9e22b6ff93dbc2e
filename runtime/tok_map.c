/* tok_map.c - the tokenizer's containers: growable arrays, a string -> id hash map for
 * vocabularies and a uint64 -> uint64 hash map for merges and trie edges. Open addressing
 * with linear probing, power-of-two capacities kept at most half full. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

// --- growable arrays

void tok_spans_push(TokSpans *a, size_t start, size_t end, bool is_match) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->v = xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = (TokSpan){start, end, is_match};
}

void tok_pieces_push(TokPieces *a, size_t off, size_t len, int32_t id, bool at_start) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->v = xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = (TokPiece){off, len, id, at_start};
}

void tok_ids_push(TokIds *ids, int32_t id) {
    if (ids->len == ids->cap) {
        ids->cap = ids->cap ? ids->cap * 2 : 256;
        ids->ids = xrealloc(ids->ids, ids->cap * sizeof *ids->ids);
    }
    ids->ids[ids->len++] = id;
}

// --- hashing

/* 8 bytes at a time, multiply-xorshift mixing; never returns 0 (0 marks empty slots). */
uint64_t tok_hash_bytes(const char *s, size_t len) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (len * 0x100000001B3ULL);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 31;
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, s + i, len - i);
        h = (h ^ w) * 0x94d049bb133111ebULL;
    }
    h = tok_mix64(h);
    return h ? h : 1;
}

// --- string map

static void strmap_grow(TokStrMap *m) {
    size_t old_cap = m->cap;
    TokStrSlot *old = m->slots;
    m->cap = old_cap ? old_cap * 2 : 64;
    m->slots = xcalloc(m->cap, sizeof *m->slots);
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].hash) continue;
        size_t j = old[i].hash & (m->cap - 1);
        while (m->slots[j].hash) j = (j + 1) & (m->cap - 1);
        m->slots[j] = old[i];
    }
    free(old);
}

static size_t strmap_find(const TokStrMap *m, uint64_t h, const char *key, size_t len) {
    size_t j = h & (m->cap - 1);
    while (m->slots[j].hash) {
        const TokStrSlot *e = &m->slots[j];
        if (e->hash == h && e->key_len == len && memcmp(m->arena.data + e->key_off, key, len) == 0)
            return j;
        j = (j + 1) & (m->cap - 1);
    }
    return j;
}

void tok_strmap_put(TokStrMap *m, const char *key, size_t len, int32_t val) {
    if ((m->n + 1) * 2 > m->cap) strmap_grow(m);
    uint64_t h = tok_hash_bytes(key, len);
    size_t j = strmap_find(m, h, key, len);
    TokStrSlot *e = &m->slots[j];
    if (!e->hash) {
        if (m->arena.len + len + 1 > UINT32_MAX) util_fatal("tokenizer vocabulary over 4 GiB");
        e->hash = h;
        e->key_off = (uint32_t)m->arena.len;
        e->key_len = (uint32_t)len;
        sb_append(&m->arena, key, len);
        sb_append(&m->arena, "", 1); /* keys stay NUL-terminated */
        m->n++;
    }
    e->val = val;
}

int32_t tok_strmap_get(const TokStrMap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t j = strmap_find(m, tok_hash_bytes(key, len), key, len);
    return m->slots[j].hash ? m->slots[j].val : -1;
}

void tok_strmap_free(TokStrMap *m) {
    free(m->slots);
    sb_free(&m->arena);
    *m = (TokStrMap){0};
}

// --- uint64 map

#define U64_EMPTY UINT64_MAX

static void u64map_grow(TokU64Map *m) {
    size_t old_cap = m->cap;
    TokU64Slot *old = m->slots;
    m->cap = old_cap ? old_cap * 2 : 64;
    m->slots = xmalloc(m->cap * sizeof *m->slots);
    for (size_t i = 0; i < m->cap; i++) m->slots[i].key = U64_EMPTY;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].key == U64_EMPTY) continue;
        size_t j = tok_mix64(old[i].key) & (m->cap - 1);
        while (m->slots[j].key != U64_EMPTY) j = (j + 1) & (m->cap - 1);
        m->slots[j] = old[i];
    }
    free(old);
}

void tok_u64map_put(TokU64Map *m, uint64_t key, uint64_t val) {
    if ((m->n + 1) * 2 > m->cap) u64map_grow(m);
    size_t j = tok_mix64(key) & (m->cap - 1);
    while (m->slots[j].key != U64_EMPTY && m->slots[j].key != key) j = (j + 1) & (m->cap - 1);
    if (m->slots[j].key == U64_EMPTY) {
        m->slots[j].key = key;
        m->n++;
    }
    m->slots[j].val = val;
}

bool tok_u64map_get(const TokU64Map *m, uint64_t key, uint64_t *val) {
    if (!m->cap) return false;
    size_t j = tok_mix64(key) & (m->cap - 1);
    for (;;) {
        const TokU64Slot *e = &m->slots[j];
        if (e->key == key) {
            *val = e->val;
            return true;
        }
        if (e->key == U64_EMPTY) return false;
        j = (j + 1) & (m->cap - 1);
    }
}

void tok_u64map_free(TokU64Map *m) {
    free(m->slots);
    *m = (TokU64Map){0};
}
