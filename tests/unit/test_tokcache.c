/* test_tokcache.c - the token cache: a saved set maps back identical; a key that differs, a
 * truncated, damaged or foreign file, and overwrite_cache each rebuild, and the log says why. */
#include "testutil.h"

#include <unistd.h>

#include "tokcache.h"
#include "util.h"

static char dir[256];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/llfc_test_tokcache.%ld", (long)getpid());
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char *cmd = xprintf("rm -rf '%s'", dir);
    int rc = system(cmd);
    free(cmd);
    return rc;
}

/* A packed set of 2 rows: [5 6 7 | 8 9 | pad pad] and [1 2 3 4 | pad 0 ...], hand made. */
static void make_set(EncodedSet *s) {
    memset(s, 0, sizeof *s);
    s->kind = ENC_ROWS_PACKED;
    s->n_parts = 1;
    s->neat = true;
    s->n_rows = 2;
    s->n_tokens = 14;
    s->n_seqs = 3;
    s->off = xmalloc(3 * 8);
    s->off[0] = 0, s->off[1] = 7, s->off[2] = 14;
    s->ids = xmalloc(14 * 4);
    s->labels = xmalloc(14 * 4);
    int32_t ids[14] = {5, 6, 7, 8, 9, 0, 0, 1, 2, 3, 4, 0, 0, 0};
    int32_t lab[14] = {-100, 6, 7, -100, 9, -100, -100, -100, -100, 3, 4, -100, -100, -100};
    memcpy(s->ids, ids, sizeof ids);
    memcpy(s->labels, lab, sizeof lab);
    s->src = xmalloc(2 * 8);
    s->src[0] = 0, s->src[1] = 2;
    s->row_seq = xmalloc(3 * 8);
    s->row_seq[0] = 0, s->row_seq[1] = 2, s->row_seq[2] = 3;
    s->seq_len = xmalloc(3 * 4);
    s->seq_len[0] = 3, s->seq_len[1] = 2, s->seq_len[2] = 4;
    s->stats = (EncodeStats){.n_examples = 4, .n_rows = 2, .first_dropped = 3, .truncated = 1};
    s->stats.dropped[ENC_DROP_SHAPE] = 1;
}

static TokCacheKey key_of(const char *text) {
    TokCacheKeyBuilder b;
    tokcache_key_init(&b);
    tokcache_key_text(&b, "t", text);
    TokCacheKey k;
    tokcache_key_final(&b, &k);
    return k;
}

static void test_roundtrip(void **state) {
    (void)state;
    EncodedSet s, m;
    make_set(&s);
    TokCacheKey k = key_of("a");
    char *path = xprintf("%s/sub/train.llfctok", dir);
    char err[ERR_LEN];
    if (!tokcache_save(path, &k, &s, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(tokcache_load(path, &k, &m, err, sizeof err), TOKCACHE_HIT);
    assert_non_null(m.map);
    assert_int_equal(m.kind, ENC_ROWS_PACKED);
    assert_true(m.neat);
    assert_int_equal(m.n_rows, 2);
    assert_int_equal(m.n_seqs, 3);
    assert_memory_equal(m.ids, s.ids, 14 * 4);
    assert_memory_equal(m.labels, s.labels, 14 * 4);
    assert_memory_equal(m.seq_len, s.seq_len, 3 * 4);
    assert_int_equal(m.stats.dropped[ENC_DROP_SHAPE], 1);
    assert_int_equal(m.stats.first_dropped, 3);
    int32_t mask[7], pos[7];
    enc_row_attention_mask(&m, 0, mask); /* LF's neat_packing mask: 1 1 1 2 2 0 0 */
    enc_row_position_ids(&m, 0, pos);
    int32_t want_mask[7] = {1, 1, 1, 2, 2, 0, 0}, want_pos[7] = {0, 1, 2, 0, 1, 0, 0};
    assert_memory_equal(mask, want_mask, sizeof mask);
    assert_memory_equal(pos, want_pos, sizeof pos);
    enc_set_free(&m);

    /* another key: stale, and the reason names what changed */
    TokCacheKey k2 = k;
    k2.tokenizer[0] ^= 1;
    assert_int_equal(tokcache_load(path, &k2, &m, err, sizeof err), TOKCACHE_STALE);
    if (!strstr(err, "the tokenizer changed") || strstr(err, "dataset")) fail_msg("why: %s", err);
    enc_set_free(&s);
    free(path);
}

/* Damaged files are refused with a reason, never mapped into the trainer. */
static void test_damaged(void **state) {
    (void)state;
    EncodedSet s, m;
    make_set(&s);
    TokCacheKey k = key_of("b");
    char *path = xprintf("%s/damaged.llfctok", dir);
    char err[ERR_LEN];
    assert_true(tokcache_save(path, &k, &s, err, sizeof err));
    size_t len;
    char *good = util_read_file(path, &len, err, sizeof err);
    assert_non_null(good);

    /* every truncation */
    for (size_t cut = 0; cut < len; cut += 7) {
        assert_true(util_write_file_atomic(path, good, cut, 0644, err, sizeof err));
        assert_int_equal(tokcache_load(path, &k, &m, err, sizeof err), TOKCACHE_CORRUPT);
    }
    /* an offset going backwards (header is 280 bytes; off[1] follows off[0]) */
    char *bad = xmalloc(len);
    memcpy(bad, good, len);
    bad[280 + 8] = 99;
    assert_true(util_write_file_atomic(path, bad, len, 0644, err, sizeof err));
    assert_int_equal(tokcache_load(path, &k, &m, err, sizeof err), TOKCACHE_CORRUPT);
    assert_non_null(strstr(err, "damaged"));
    /* another version, another magic */
    memcpy(bad, good, len);
    bad[8] = 9;
    assert_true(util_write_file_atomic(path, bad, len, 0644, err, sizeof err));
    assert_int_equal(tokcache_load(path, &k, &m, err, sizeof err), TOKCACHE_CORRUPT);
    assert_non_null(strstr(err, "version"));
    memcpy(bad, "NOTACACHE", 9);
    assert_true(util_write_file_atomic(path, bad, len, 0644, err, sizeof err));
    assert_int_equal(tokcache_load(path, &k, &m, err, sizeof err), TOKCACHE_CORRUPT);
    /* any single corrupted byte: refused, or (a flip inside the token values) mapped and
     * still walkable to its end; under ASan a read out of the mapping would fail here */
    for (size_t i = 0; i < len; i++) {
        memcpy(bad, good, len);
        bad[i] ^= (char)(0x5a + i);
        assert_true(util_write_file_atomic(path, bad, len, 0644, err, sizeof err));
        if (tokcache_load(path, &k, &m, err, sizeof err) != TOKCACHE_HIT) continue;
        int64_t sum = 0;
        for (uint64_t r = 0; r < m.n_rows; r++) {
            uint64_t n = enc_part_len(&m, r, 0), a = enc_part_start(&m, r, 0);
            int32_t *tmp = xmalloc((n + 1) * sizeof *tmp);
            enc_row_attention_mask(&m, r, tmp);
            enc_row_position_ids(&m, r, tmp);
            for (uint64_t t = 0; t < n; t++) sum += m.ids[a + t] + m.labels[a + t] + tmp[t];
            free(tmp);
        }
        (void)sum;
        enc_set_free(&m);
    }
    free(bad);
    free(good);
    free(path);
    enc_set_free(&s);
}

static int builds;
static bool build_set(void *ctx, EncodedSet *out, char *err, size_t errlen) {
    (void)ctx, (void)err, (void)errlen;
    builds++;
    make_set(out);
    return true;
}

/* tokcache_get: built and saved, then used, then rebuilt by overwrite_cache or a new key. */
static void test_get_logs(void **state) {
    (void)state;
    char *path = xprintf("%s/get/train.llfctok", dir);
    TokCacheKey k = key_of("c");
    EncodedSet s;
    StrBuf log = {0};
    char err[ERR_LEN];
    builds = 0;
    assert_true(tokcache_get(path, false, &k, build_set, NULL, &s, &log, err, sizeof err));
    enc_set_free(&s);
    assert_true(tokcache_get(path, false, &k, build_set, NULL, &s, &log, err, sizeof err));
    assert_non_null(s.map);
    enc_set_free(&s);
    assert_true(tokcache_get(path, true, &k, build_set, NULL, &s, &log, err, sizeof err));
    enc_set_free(&s);
    TokCacheKey k2 = key_of("d");
    assert_true(tokcache_get(path, false, &k2, build_set, NULL, &s, &log, err, sizeof err));
    enc_set_free(&s);
    assert_int_equal(builds, 3);
    const char *lines[] = {"rebuilt (no cache yet)", "used (2 rows, 14 tokens", "rebuilt (overwrite_cache is set)",
                           "rebuilt (the template or encoding options changed"};
    const char *at = log.data;
    for (size_t i = 0; i < 4; i++) {
        const char *hit = strstr(at, lines[i]);
        if (!hit) fail_msg("log lacks \"%s\":\n%s", lines[i], log.data);
        at = hit;
    }
    sb_free(&log);
    free(path);
}

/* The key builder: a data file's bytes go into the data part only. */
static void test_key_parts(void **state) {
    (void)state;
    char *f = xprintf("%s/data.json", dir);
    char err[ERR_LEN];
    assert_true(util_is_dir(dir) || system(NULL) >= 0);
    char *mk = xprintf("mkdir -p '%s'", dir);
    assert_int_equal(system(mk), 0);
    free(mk);
    TokCacheKey k[2];
    for (int i = 0; i < 2; i++) {
        assert_true(util_write_file_atomic(f, i ? "[2]" : "[1]", 3, 0644, err, sizeof err));
        TokCacheKeyBuilder b;
        tokcache_key_init(&b);
        assert_true(tokcache_key_data_file(&b, f, err, sizeof err));
        tokcache_key_text(&b, "x", "same");
        tokcache_key_final(&b, &k[i]);
    }
    assert_memory_not_equal(k[0].data, k[1].data, 32);
    assert_memory_equal(k[0].encoding, k[1].encoding, 32);
    assert_memory_equal(k[0].tokenizer, k[1].tokenizer, 32);
    TokCacheKeyBuilder b;
    tokcache_key_init(&b);
    assert_false(tokcache_key_data_file(&b, "/nonexistent/file.json", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/file.json"));
    free(f);

    /* examples: one character of one message changes the data key */
    DataMessage p = {DATA_ROLE_USER, "hi"}, r1 = {DATA_ROLE_ASSISTANT, "yo"}, r2 = {DATA_ROLE_ASSISTANT, "yO"};
    DataExample ex = {.prompt = &p, .n_prompt = 1, .response = &r1, .n_response = 1, .kto_tag = -1};
    for (int i = 0; i < 2; i++) {
        if (i) ex.response = &r2;
        tokcache_key_init(&b);
        tokcache_key_examples(&b, &ex, 1);
        tokcache_key_final(&b, &k[i]);
    }
    assert_memory_not_equal(k[0].data, k[1].data, 32);
}

static LuaSource lua_file(const char *path) {
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(path, &len, err, sizeof err);
    if (!text) fail_msg("%s", err);
    return (LuaSource){(char *)path, (char *)path, text, len};
}

/* tokcache_key_for: a recipe key that changes encoding (cutoff_len) changes the encoding part;
 * max_samples (which examples) too; a key that does not (learning_rate) changes nothing. */
static void test_key_for_recipe(void **state) {
    (void)state;
    SHARED_OR_SKIP(tokdir, "tokenizers/qwen3");
    SHARED_OR_SKIP(data, "data/llamafactory/identity.json");
    LuaSource lib[3] = {lua_file("lua/llfc/json.lua"), lua_file("lua/llfc/tools.lua"),
                        lua_file("lua/llfc/template.lua")};
    LuaSource tpl = lua_file("lua/templates/qwen.lua");
    char err[ERR_LEN];
    Tokenizer *tok = tok_load(tokdir, err, sizeof err);
    assert_non_null(tok);
    static const char *variants[] = {"cutoff_len: 512\n", "cutoff_len: 512\nlearning_rate: 1.0e-4\n",
                                     "cutoff_len: 256\n", "cutoff_len: 512\nmax_samples: 10\n"};
    TokCacheKey k[4];
    for (int i = 0; i < 4; i++) {
        char *y = xprintf("model_name_or_path: %s\nstage: sft\ntemplate: qwen\ndataset: identity\n"
                          "output_dir: /tmp/x\n%s", tokdir, variants[i]);
        Diags d = {0};
        Recipe *r = recipe_parse("r.yaml", y, strlen(y), NULL, 0, RECIPE_FOR_CHECK, &d);
        if (!r) fail_msg("%s", d.text.data);
        EncodeOptions o;
        enc_options_from_recipe(r, &o);
        Encoder *e = enc_new(&o, tok, tokdir, lib, 3, &tpl, NULL, err, sizeof err);
        if (!e) fail_msg("%s", err);
        const char *files[] = {data};
        assert_true(tokcache_key_for(r, e, tokdir, files, 1, &k[i], err, sizeof err));
        enc_free(e);
        recipe_free(r);
        diags_free(&d);
        free(y);
    }
    assert_memory_equal(&k[0], &k[1], sizeof k[0]);
    assert_memory_not_equal(k[0].encoding, k[2].encoding, 32);
    assert_memory_equal(k[0].data, k[2].data, 32);
    assert_memory_equal(k[0].tokenizer, k[2].tokenizer, 32);
    assert_memory_not_equal(k[0].encoding, k[3].encoding, 32);
    for (int i = 0; i < 3; i++) free(lib[i].text);
    free(tpl.text);
    tok_free(tok);
    free(tokdir);
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_damaged),
        cmocka_unit_test(test_get_logs),
        cmocka_unit_test(test_key_parts),
        cmocka_unit_test(test_key_for_recipe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
