/* fuzz_tokenizer.c - libFuzzer target for the tokenizer: any bytes as a tokenizer.json, and
 * any bytes as text for real tokenizers. Nothing may crash, leak or trip a sanitizer.
 *
 *   - input starting with '{' or whitespace: a tokenizer.json. tok_load_json accepts it or
 *     fails with a "fuzz/tokenizer.json..." message; an accepted one then encodes a few
 *     texts and decodes its first ids and what it encoded.
 *   - any other input: byte 0 picks a tokenizer (the synthetic ones of
 *     tests/fixtures/tokenizers/synthetic, and those of $LLFC_SHARED/tokenizers, default
 *     ../shared), the rest is text. Encoding succeeds exactly when the text is UTF-8; the ids
 *     decode (skipping special tokens or not) to UTF-8; for Llama 3 (byte-level, no
 *     normalizer) decoding gives the text back; the same bytes read as ids also decode.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iruntime \
 *       tests/fuzz/fuzz_tokenizer.c runtime/tokenizer.c runtime/tok_*.c runtime/json.c \
 *       runtime/util.c /usr/lib/x86_64-linux-gnu/libpcre2-8.a -lm -lpthread -o /tmp/fuzz_tok
 *   mkdir -p /tmp/tok_corpus
 *   /tmp/fuzz_tok -max_total_time=600 -rss_limit_mb=4096 -dict=tests/fuzz/json.dict \
 *       /tmp/tok_corpus tests/fixtures/tokenizers/synthetic/[a-z]*
 * (run from the repository root; new inputs go to the first folder; the synthetic
 * tokenizers' tokenizer.json and JSONL files are the seeds.)
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_TOKENIZERS 16

static Tokenizer *toks[MAX_TOKENIZERS];
static const char *tok_names[MAX_TOKENIZERS];
static size_t n_toks;
static TokScratch *scratch;

static void load(const char *dir, const char *name) {
    char err[ERR_LEN];
    if (n_toks == MAX_TOKENIZERS || !util_is_dir(dir)) return;
    Tokenizer *t = tok_load(dir, err, sizeof err);
    if (!t) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err);
        abort();
    }
    tok_names[n_toks] = name;
    toks[n_toks++] = t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static const char *synthetic[] = {"added_rules",    "metaspace_first", "metaspace_never",
                                      "subword_affixes", "splits",          "bytelevel_regex",
                                      "literal_splits"};
    char dir[512];
    for (size_t i = 0; i < sizeof synthetic / sizeof synthetic[0]; i++) {
        snprintf(dir, sizeof dir, "tests/fixtures/tokenizers/synthetic/%s", synthetic[i]);
        load(dir, synthetic[i]);
    }
    const char *shared = getenv("LLFC_SHARED");
    if (!shared || !*shared) shared = "../shared";
    static const char *real[] = {"llama3", "qwen3", "deepseek_v3", "gemma3", "llama2",
                                 "phi-3-mini"};
    for (size_t i = 0; i < sizeof real / sizeof real[0]; i++) {
        snprintf(dir, sizeof dir, "%s/tokenizers/%s", shared, real[i]);
        load(dir, real[i]);
    }
    scratch = tok_scratch_new();
    fprintf(stderr, "fuzz_tokenizer: %zu tokenizers loaded\n", n_toks);
    return 0;
}

/* Is s[0..len) valid UTF-8 (no surrogates, no overlong forms)? */
static bool valid_utf8(const unsigned char *s, size_t len) {
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        size_t n = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                                : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!n || i + n > len) return false;
        for (size_t k = 1; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        if (c == 0xE0 && s[i + 1] < 0xA0) return false;
        if (c == 0xED && s[i + 1] > 0x9F) return false;
        if (c == 0xF0 && s[i + 1] < 0x90) return false;
        if (c == 0xF4 && s[i + 1] > 0x8F) return false;
        i += n;
    }
    return true;
}

static void decode_checked(const Tokenizer *t, const int32_t *ids, size_t n, StrBuf *out) {
    char err[ERR_LEN];
    for (int skip = 0; skip < 2; skip++) {
        if (tok_decode(t, ids, n, skip, out, err, sizeof err))
            assert(valid_utf8((const unsigned char *)out->data, out->len));
    }
}

static void fuzz_json(const uint8_t *data, size_t size) {
    char err[ERR_LEN];
    Tokenizer *t = tok_load_json((const char *)data, size, "fuzz/tokenizer.json", err,
                                 sizeof err);
    if (!t) {
        assert(strncmp(err, "fuzz/tokenizer.json", 19) == 0);
        return;
    }
    static const char *texts[] = {"", " ", "Hello world", "  a\tb\nc  ", "don't 123 ÀÉ 中文 😀",
                                  "<s> <unk> </s> <mask>", "\xE2\x96\x81x\xE2\x96\x81"};
    TokIds ids = {0};
    StrBuf out = {0};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        for (int special = 0; special < 2; special++)
            if (tok_encode(t, scratch, texts[i], strlen(texts[i]), special, &ids, err,
                           sizeof err))
                decode_checked(t, ids.ids, ids.len, &out);
    int32_t first[64];
    for (int i = 0; i < 64; i++) first[i] = i;
    decode_checked(t, first, 64, &out);
    size_t len;
    for (int32_t id = 0; id < 64; id++) tok_id_to_token(t, id, &len);
    (void)tok_vocab_size(t);
    (void)tok_id_limit(t);
    tok_ids_free(&ids);
    sb_free(&out);
    tok_free(t);
}

static void fuzz_text(const uint8_t *data, size_t size) {
    if (!n_toks || size == 0) return;
    size_t which = data[0] % n_toks;
    const Tokenizer *t = toks[which];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char err[ERR_LEN];
    TokIds ids = {0};
    StrBuf out = {0};
    bool utf8 = valid_utf8((const unsigned char *)text, len);
    for (int special = 0; special < 2; special++) {
        bool ok = tok_encode(t, scratch, text, len, special, &ids, err, sizeof err);
        if (!utf8) {
            assert(!ok && strstr(err, "UTF-8"));
            continue;
        }
        assert(ok);
        decode_checked(t, ids.ids, ids.len, &out);
        if (!special && !strcmp(tok_names[which], "llama3")) { /* byte-level: exact */
            assert(tok_decode(t, ids.ids, ids.len, false, &out, err, sizeof err));
            assert(out.len == len && memcmp(out.data, text, len) == 0);
        }
    }
    /* the bytes as ids, in and out of the vocabulary */
    size_t n = len / 4;
    int32_t *as_ids = xmalloc((n ? n : 1) * sizeof *as_ids);
    memcpy(as_ids, text, n * sizeof *as_ids);
    for (size_t i = 0; i < n; i++)
        if (i % 2) as_ids[i] = (int32_t)((uint32_t)as_ids[i] % (tok_id_limit(t) + 8));
    decode_checked(t, as_ids, n, &out);
    free(as_ids);
    tok_ids_free(&ids);
    sb_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 0 && (data[0] == '{' || data[0] == ' ' || data[0] == '\n' || data[0] == '\t'))
        fuzz_json(data, size);
    else
        fuzz_text(data, size);
    return 0;
}
