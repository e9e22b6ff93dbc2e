/* bench_tokenizer.c - llfc's side of tests/bench/bench_tokenizer.py: encode a JSONL dataset
 * ({"text": ...} per line) with T threads sharing one Tokenizer, and print one JSON line:
 *
 *     bench_tokenizer DIR DATA.jsonl THREADS [REPEATS]
 *     {"threads": T, "bytes": B, "seconds": S, "mb_per_s": X, "tokens": N, "id_sum": K,
 *      "load_seconds": L}
 *
 * Timing covers encoding only (the tokenizer is loaded and the records parsed before); each
 * thread takes the next record from a shared counter and owns its TokScratch, as a data
 * loader would. tokens and id_sum let the Python side check that HF gave the same ids.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "tokenizer.h"
#include "util.h"

typedef struct {
    char **texts;
    size_t *lens, n;
    const Tokenizer *tok;
    atomic_size_t next;
    int repeats;
} Work;

typedef struct {
    Work *w;
    size_t tokens;
    uint64_t id_sum;
    bool ok;
    char err[ERR_LEN];
} Worker;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *run(void *arg) {
    Worker *me = arg;
    Work *w = me->w;
    TokScratch *s = tok_scratch_new();
    TokIds ids = {0};
    me->ok = true;
    size_t total = w->n * (size_t)w->repeats;
    for (size_t k; me->ok && (k = atomic_fetch_add(&w->next, 1)) < total;) {
        size_t i = k % w->n;
        me->ok = tok_encode(w->tok, s, w->texts[i], w->lens[i], false, &ids, me->err,
                            sizeof me->err);
        me->tokens += ids.len;
        for (size_t j = 0; j < ids.len; j++) me->id_sum += (uint64_t)ids.ids[j];
    }
    tok_ids_free(&ids);
    tok_scratch_free(s);
    return NULL;
}

/* Records of a JSONL file (their "text"). */
static size_t read_records(const char *path, Work *w, size_t *bytes) {
    char err[ERR_LEN];
    size_t len;
    char *data = util_read_file(path, &len, err, sizeof err);
    if (!data) util_fatal("%s", err);
    size_t cap = 0;
    *bytes = 0;
    for (char *line = data, *nl; line < data + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(data + len - line));
        if (!nl) nl = data + len;
        if (nl == line) continue;
        JsonDoc *doc = json_parse(line, (size_t)(nl - line), path, err, sizeof err);
        const Json *t = doc ? json_get(json_root(doc), "text") : NULL;
        if (!json_as_str(t)) util_fatal("%s: a line without {\"text\": ...}: %s", path, err);
        if (w->n == cap) {
            cap = cap ? cap * 2 : 1024;
            w->texts = xrealloc(w->texts, cap * sizeof *w->texts);
            w->lens = xrealloc(w->lens, cap * sizeof *w->lens);
        }
        w->texts[w->n] = xstrndup(t->str.s, t->str.len);
        w->lens[w->n++] = t->str.len;
        *bytes += t->str.len;
        json_free(doc);
    }
    free(data);
    return w->n;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER_DIR DATA.jsonl THREADS [REPEATS]\n");
        return 2;
    }
    int threads = atoi(argv[3]), repeats = argc > 4 ? atoi(argv[4]) : 1;
    if (threads < 1 || threads > 1024 || repeats < 1) return 2;
    char err[ERR_LEN];
    double t0 = now();
    Tokenizer *tok = tok_load(argv[1], err, sizeof err);
    if (!tok) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double load = now() - t0;
    Work w = {.tok = tok, .repeats = repeats};
    size_t bytes;
    read_records(argv[2], &w, &bytes);
    Worker *ws = xcalloc((size_t)threads, sizeof *ws);
    pthread_t *th = xcalloc((size_t)threads, sizeof *th);
    double start = now();
    for (int i = 0; i < threads; i++) {
        ws[i].w = &w;
        pthread_create(&th[i], NULL, run, &ws[i]);
    }
    size_t tokens = 0;
    uint64_t id_sum = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        if (!ws[i].ok) {
            fprintf(stderr, "%s\n", ws[i].err);
            return 1;
        }
        tokens += ws[i].tokens;
        id_sum += ws[i].id_sum;
    }
    double secs = now() - start;
    double total = (double)bytes * repeats;
    printf("{\"threads\": %d, \"bytes\": %.0f, \"seconds\": %.4f, \"mb_per_s\": %.2f, "
           "\"tokens\": %zu, \"id_sum\": %llu, \"load_seconds\": %.3f}\n",
           threads, total, secs, total / 1e6 / secs, tokens / (size_t)repeats,
           (unsigned long long)(id_sum / (uint64_t)repeats), load);
    for (size_t i = 0; i < w.n; i++) free(w.texts[i]);
    free(w.texts);
    free(w.lens);
    free(ws);
    free(th);
    tok_free(tok);
    return 0;
}
