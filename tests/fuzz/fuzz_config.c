/* fuzz_config.c - libFuzzer target: any bytes as a model's config.json.
 *
 * model_parse must return a spec or a "NAME:LINE:COL: ..." error, never crash or leak. An
 * accepted spec must survive what the pipeline does next: listing its tensors (whose count
 * must add up to model_param_count), and writing config.json back, which must read back to
 * the same shapes.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iruntime \
 *       tests/fuzz/fuzz_config.c runtime/model.c runtime/json.c runtime/util.c -lm -lpthread \
 *       -o /tmp/fuzz_config
 *   mkdir -p /tmp/config_corpus && cp -r tests/fuzz/corpus_config/. /tmp/config_corpus/
 *   /tmp/fuzz_config -max_total_time=300 -dict=tests/fuzz/corpus_config/config.dict /tmp/config_corpus
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[ERR_LEN];
    ModelSpec m;
    if (!model_parse(&m, (const char *)data, size, "fuzz/config.json", err, sizeof err)) {
        assert(strncmp(err, "fuzz/config.json:", 17) == 0);
        return 0;
    }
    size_t n;
    ModelTensor *t = model_tensors(&m, &n);
    int64_t count = 0;
    for (size_t i = 0; i < n; i++) count += t[i].ndim == 2 ? t[i].shape[0] * t[i].shape[1] : t[i].shape[0];
    assert(count == model_param_count(&m));
    free(t);
    StrBuf out = {0};
    model_write_config(&m, &out);
    ModelSpec back;
    bool ok = model_parse(&back, out.data, out.len, "written/config.json", err, sizeof err);
    if (!ok) abort(); // llfc wrote a config it cannot read
    assert(back.V == m.V && back.C == m.C && back.L == m.L && back.NH == m.NH &&
           back.NKV == m.NKV && back.HD == m.HD && back.FF == m.FF);
    assert(memcmp(back.layer_sliding, m.layer_sliding, (size_t)m.L) == 0);
    model_free(&back);
    sb_free(&out);
    model_free(&m);
    return 0;
}
