/* fuzz_safetensors.c - libFuzzer target: any bytes as a safetensors file.
 *
 * st_parse must return a model or an error, never crash, read out of bounds or leak; when it
 * accepts, every tensor's bytes must lie inside the input (touched here so ASan would see an
 * overrun), and checking it against a model spec must not crash either.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iruntime \
 *       tests/fuzz/fuzz_safetensors.c runtime/safetensors.c runtime/model.c runtime/json.c \
 *       runtime/util.c -lm -lpthread -o /tmp/fuzz_safetensors
 *   mkdir -p /tmp/st_corpus && cp -r tests/fuzz/corpus_st/. /tmp/st_corpus/
 *   /tmp/fuzz_safetensors -max_total_time=300 /tmp/st_corpus
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model.h"
#include "safetensors.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ModelSpec spec; // a small llama to check accepted files against
    static bool have_spec;
    char err[ERR_LEN];
    if (!have_spec)
        have_spec = model_init_defaults(&spec, "llama", 8, 4, 1, 2, 1, 0, 6, err, sizeof err);
    StModel *m = st_parse(data, size, "fuzz.safetensors", err, sizeof err);
    if (!m) {
        assert(strncmp(err, "fuzz.safetensors", 16) == 0); // every message names the file
        return 0;
    }
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const StTensor *t = &m->tensors[i];
        const uint8_t *p = t->data;
        assert(p >= data + 8 && p + t->nbytes <= data + size);
        if (t->nbytes) sink ^= p[0] ^ p[t->nbytes - 1];
        if (t->numel) sink ^= st_get_f32(t, t->numel - 1) > 0; // reads the last element
        assert(st_find(m, t->name) == t);
    }
    (void)sink;
    st_check_spec(m, &spec, err, sizeof err);
    st_close(m);
    return 0;
}
