/* dataset.c - a recipe's datasets into LLaMA-Factory's aligned examples: the driver.
 *
 * The story of data_load, each step mirroring LLaMA-Factory 0.9.5 (data/parser.py,
 * loader.py, converter.py, data_utils.py) and Hugging Face `datasets` 4:
 *   1. dataset_info.json -> one DataAttr per name          data_info.c (parser.py)
 *   2. its files, read in parallel                         data_read.c
 *   3. every column the converter indexes must exist       data_info.c (LF: KeyError)
 *   4. num_samples (np.random legacy stream), max_samples  here, data_numpy.c
 *   5. data_hook, then the converter, in parallel chunks   data_hook.c, data_convert.c
 *   6. mix (concat / interleave), val_size split           here, data_numpy.c
 * Bad records stop the load (data_on_error: stop) or are skipped and counted (skip).
 */
#include "data_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK 256      /* records per conversion job */
#define KEEP_BAD_MSGS 5 /* skipped records whose messages the report shows */

// --- a small thread pool: fn(ctx, item, thread) for item < n

typedef void (*WorkFn)(void *ctx, size_t item, int thread);
typedef struct {
    WorkFn fn;
    void *ctx;
    size_t n;
    size_t next;
    pthread_mutex_t mu;
} Pool;
typedef struct {
    Pool *pool;
    int thread;
} PoolArg;

static void *pool_main(void *p) {
    PoolArg *a = p;
    for (;;) {
        pthread_mutex_lock(&a->pool->mu);
        size_t i = a->pool->next++;
        pthread_mutex_unlock(&a->pool->mu);
        if (i >= a->pool->n) return NULL;
        a->pool->fn(a->pool->ctx, i, a->thread);
    }
}

static void parallel_for(size_t n, int threads, WorkFn fn, void *ctx) {
    if (threads > (int)n) threads = (int)n;
    if (threads <= 1) {
        for (size_t i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    Pool pool = {fn, ctx, n, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t tid[threads];
    PoolArg args[threads];
    int started = 0;
    for (int t = 1; t < threads; t++) {
        args[t] = (PoolArg){&pool, t};
        if (pthread_create(&tid[t], NULL, pool_main, &args[t]) != 0) break;
        started = t;
    }
    args[0] = (PoolArg){&pool, 0};
    pool_main(&args[0]);
    for (int t = 1; t <= started; t++) pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&pool.mu);
}

// --- one dataset being loaded

typedef struct {
    DataFile *file;
    const RawRecord *rec;
} Sel; /* a selected record */

typedef struct {
    DataAttr attr;
    DataFile *files;
    size_t n_files;
    DataFileType type;
    Sel *sel; /* after num_samples / max_samples */
    size_t n_sel;
    DataStats stats;
    DataExample *ex; /* converted, in order */
    size_t n_ex;
    bool is_eval;
} Loading;

/* the result of one conversion job */
typedef struct {
    Loading *ds;
    size_t first, n; /* records sel[first .. first+n) */
    DataExample *ex;
    size_t n_ex;
    size_t dropped;
    BadRecord *bad; /* skipped (skip mode) or the first bad record (stop mode) */
    size_t n_bad;
    char *fatal; /* a hook error */
} Job;

typedef struct {
    const DataOptions *opt;
    Loading *ds;
    size_t n_ds;
    Job *jobs;
    size_t n_jobs;
    DataFile **all_files; /* for the read stage */
    DataFileType *all_types;
    DataHook hook;
} Ctx;

struct DataSet {
    DataExample *pool; /* every converted example; owns the strings */
    size_t n_pool;
    DataExample *train, *eval; /* views into pool (interleave may repeat one) */
    size_t n_train, n_eval;
    char **names, **sources;
    size_t n_names, n_sources;
    struct {
        const char *name;
        bool is_eval;
        DataStats st;
    } * per;
    size_t n_per;
    DataStats total;
    char *bad_msgs[KEEP_BAD_MSGS];
    size_t n_bad_msgs;
    bool skip_bad;
};

// --- jobs

static void job_bad(Job *j, DataBadKind kind, const Sel *s, const char *msg) {
    j->bad = xrealloc(j->bad, (j->n_bad + 1) * sizeof *j->bad);
    j->bad[j->n_bad++] = (BadRecord){kind, s->rec->line, s->rec->index,
                                     xprintf("%s:%d: record %zu: %s", s->file->path, s->rec->line, s->rec->index,
                                             msg)};
}

static void convert_job(void *ctx, size_t item, int thread) {
    Ctx *c = ctx;
    Job *j = &c->jobs[item];
    const DataAttr *a = &j->ds->attr;
    j->ex = xmalloc((j->n ? j->n : 1) * sizeof *j->ex);
    Arena ar = {0};
    for (size_t i = 0; i < j->n; i++) {
        const Sel *s = &j->ds->sel[j->first + i];
        const Json *rec = s->rec->v;
        if (c->hook.src) {
            char err[ERR_LEN];
            if (!data_hook_run(&c->hook, thread, rec, &ar, &rec, err, sizeof err)) {
                j->fatal = xprintf("%s (data_hook, on %s:%d: record %zu)", err, s->file->path, s->rec->line,
                                   s->rec->index);
                break;
            }
            if (!rec) {
                j->dropped++;
                continue;
            }
        }
        DataBadKind kind;
        char msg[512];
        DataExample *ex = &j->ex[j->n_ex];
        if (!data_convert(a, rec, ex, &kind, msg, sizeof msg)) {
            job_bad(j, kind, s, msg);
            if (!c->opt->skip_bad) break;
            continue;
        }
        ex->source = s->file->path;
        ex->record = s->rec->index;
        ex->line = s->rec->line;
        ex->dataset = a->name;
        j->n_ex++;
    }
    arena_free(&ar);
}

static void read_job(void *ctx, size_t item, int thread) {
    (void)thread;
    Ctx *c = ctx;
    data_read_file(c->all_files[item], c->all_types[item], c->opt->skip_bad);
}

// --- options

const char *data_stage_name(DataStage s) {
    static const char *const N[] = {"pt", "sft", "rm", "dpo", "kto"};
    return (unsigned)s < 5 ? N[s] : "?";
}

const char *data_bad_name(DataBadKind k) {
    static const char *const N[] = {"malformed JSON", "malformed CSV", "bad text (UTF-8/NUL)", "missing column",
                                    "wrong type", "empty conversation", "wrong message count", "roles out of order"};
    return (unsigned)k < DATA_BAD_NKINDS ? N[k] : "?";
}

bool data_options_from_recipe(const Recipe *r, DataOptions *opt, char *err, size_t errlen) {
    memset(opt, 0, sizeof *opt);
    if (!R_NULL(r, dataset)) {
        opt->datasets = (const char *const *)R_LIST(r, dataset).items;
        opt->n_datasets = R_LIST(r, dataset).n;
    }
    if (!R_NULL(r, eval_dataset)) {
        opt->eval_datasets = (const char *const *)R_LIST(r, eval_dataset).items;
        opt->n_eval_datasets = R_LIST(r, eval_dataset).n;
    }
    opt->dataset_dir = R_STR(r, dataset_dir);
    const char *st = R_STR(r, stage);
    static const char *const STAGES[] = {"pt", "sft", "rm", "dpo", "kto"};
    size_t s = 0;
    while (s < 5 && strcmp(STAGES[s], st)) s++;
    if (s == 5) return errf(err, errlen, "stage %s has no dataset loader in llfc", st);
    opt->stage = (DataStage)s;
    opt->max_samples = R_NULL(r, max_samples) ? 0 : R_INT(r, max_samples);
    opt->val_size = R_FLOAT(r, val_size);
    const char *mix = R_STR(r, mix_strategy);
    opt->mix = !strcmp(mix, "interleave_under") ? DATA_MIX_INTERLEAVE_UNDER
               : !strcmp(mix, "interleave_over") ? DATA_MIX_INTERLEAVE_OVER : DATA_MIX_CONCAT;
    if (!R_NULL(r, interleave_probs)) {
        StrList p = R_LIST(r, interleave_probs);
        opt->probs_owned = xmalloc((p.n ? p.n : 1) * sizeof(double));
        for (size_t i = 0; i < p.n; i++) {
            char *end;
            opt->probs_owned[i] = strtod(p.items[i], &end);
            if (end == p.items[i] || *end) {
                data_options_free(opt);
                return errf(err, errlen, "interleave_probs: '%s' is not a number", p.items[i]);
            }
        }
        opt->interleave_probs = opt->probs_owned;
        opt->n_interleave_probs = p.n;
    }
    opt->seed = (uint64_t)R_INT(r, seed);
    opt->data_hook = R_NULL(r, data_hook) ? NULL : R_STR(r, data_hook);
    opt->skip_bad = !strcmp(R_STR(r, data_on_error), "skip");
    opt->threads = R_NULL(r, preprocessing_num_workers) ? 0 : (int)R_INT(r, preprocessing_num_workers);
    return true;
}

void data_options_free(DataOptions *opt) {
    free(opt->probs_owned);
    opt->probs_owned = NULL;
    opt->interleave_probs = NULL;
}

// --- mixing and splitting (data_utils.py, datasets' interleave_datasets / train_test_split)

typedef struct {
    DataExample *v;
    size_t n;
} ExList;

static bool merge(const DataOptions *opt, Loading **parts, size_t n, ExList *out, char *err, size_t errlen) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += parts[i]->n_ex;
    *out = (ExList){0};
    if (n == 1 || opt->mix == DATA_MIX_CONCAT) { /* one dataset is used as is, whatever the strategy */
        out->v = xmalloc((total ? total : 1) * sizeof *out->v);
        for (size_t i = 0; i < n; i++) {
            if (!parts[i]->n_ex) continue;
            memcpy(out->v + out->n, parts[i]->ex, parts[i]->n_ex * sizeof *out->v);
            out->n += parts[i]->n_ex;
        }
        return true;
    }
    bool over = opt->mix == DATA_MIX_INTERLEAVE_OVER;
    for (size_t i = 0; i < n; i++)
        if (parts[i]->n_ex == 0)
            return errf(err, errlen, "dataset '%s' has no examples; interleaving needs every dataset non-empty",
                        parts[i]->attr.name);
    size_t cap = 16, m = 0;
    const DataExample **pick = xmalloc(cap * sizeof *pick);
#define PICK(e)                                                                                              \
    do {                                                                                                     \
        if (m == cap) pick = xrealloc(pick, (cap *= 2) * sizeof *pick);                                      \
        pick[m++] = (e);                                                                                     \
    } while (0)
    if (!opt->interleave_probs) {
        size_t rows = parts[0]->n_ex;
        for (size_t i = 1; i < n; i++)
            rows = over ? (parts[i]->n_ex > rows ? parts[i]->n_ex : rows)
                        : (parts[i]->n_ex < rows ? parts[i]->n_ex : rows);
        for (size_t r = 0; r < rows; r++)
            for (size_t i = 0; i < n; i++) PICK(&parts[i]->ex[r % parts[i]->n_ex]);
    } else {
        if (opt->n_interleave_probs != n) {
            free(pick);
            return errf(err, errlen, "interleave_probs has %zu values for %zu datasets", opt->n_interleave_probs, n);
        }
        double sum = 0, comp = 0; /* numpy checks the sum with Kahan summation, within sqrt(eps) */
        for (size_t i = 0; i < n; i++) {
            double p = opt->interleave_probs[i];
            if (!(p >= 0)) {
                free(pick);
                return errf(err, errlen, "interleave_probs: probabilities must be >= 0");
            }
            if (over && p == 0) {
                free(pick);
                return errf(err, errlen, "interleave_probs: dataset '%s' has probability 0, so interleave_over "
                            "(stop when every dataset is used up) would never end", parts[i]->attr.name);
            }
            double y = p - comp, t = sum + y;
            comp = (t - sum) - y;
            sum = t;
        }
        if (fabs(sum - 1.0) > 1.4901161193847656e-08) {
            free(pick);
            return errf(err, errlen, "interleave_probs must sum to 1 (they sum to %.17g)", sum);
        }
        NpRng g;
        np_rng_default(&g, opt->seed);
        size_t cur[n], exhausted = 0;
        bool done[n];
        memset(cur, 0, sizeof cur);
        memset(done, 0, sizeof done);
        for (;;) {
            if (over ? exhausted == n : exhausted > 0) break;
            size_t src;
            np_choice_p(&g, opt->interleave_probs, n, 1, &src);
            PICK(&parts[src]->ex[cur[src]]);
            if (++cur[src] >= parts[src]->n_ex) {
                if (!done[src]) done[src] = true, exhausted++;
                cur[src] = 0;
            }
        }
    }
#undef PICK
    out->v = xmalloc((m ? m : 1) * sizeof *out->v);
    for (size_t i = 0; i < m; i++) out->v[i] = *pick[i];
    out->n = m;
    free(pick);
    return true;
}

/* train_test_split(test_size=val_size, seed=seed): permutation; test = head, train = rest */
static bool split(const DataOptions *opt, ExList *train, ExList *eval, char *err, size_t errlen) {
    size_t n = train->n, n_test;
    double v = opt->val_size;
    if (v > 1) {
        n_test = (size_t)v;
        if (n_test >= n)
            return errf(err, errlen, "val_size=%zu should be smaller than the number of examples %zu", n_test, n);
    } else {
        if (v >= 1)
            return errf(err, errlen, "val_size=1.0 is a fraction (all examples); give a fraction below 1 or a "
                        "count of at least 2 examples");
        n_test = (size_t)ceil(v * (double)n);
        if (n_test >= n)
            return errf(err, errlen, "val_size=%g leaves no training examples out of %zu", v, n);
    }
    size_t *perm = xmalloc((n ? n : 1) * sizeof *perm);
    NpRng g;
    np_rng_default(&g, opt->seed);
    np_permutation(&g, n, perm);
    eval->v = xmalloc((n_test ? n_test : 1) * sizeof *eval->v);
    eval->n = n_test;
    DataExample *t = xmalloc((n - n_test ? n - n_test : 1) * sizeof *t);
    for (size_t i = 0; i < n_test; i++) eval->v[i] = train->v[perm[i]];
    for (size_t i = n_test; i < n; i++) t[i - n_test] = train->v[perm[i]];
    free(train->v);
    train->v = t;
    train->n = n - n_test;
    free(perm);
    return true;
}

// --- load

/* num_samples (np.random.permutation, then np.random.choice for more than there are), then
 * max_samples (the first N). */
static bool select_records(const DataOptions *opt, Loading *d, NpRng *legacy, char *err, size_t errlen) {
    size_t total = 0;
    for (size_t f = 0; f < d->n_files; f++) total += d->files[f].n_recs;
    Sel *all = xmalloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (size_t f = 0; f < d->n_files; f++)
        for (size_t r = 0; r < d->files[f].n_recs; r++) all[k++] = (Sel){&d->files[f], &d->files[f].recs[r]};
    if (d->attr.num_samples >= 0) {
        size_t want = (size_t)d->attr.num_samples;
        if (!total && want) {
            free(all);
            return errf(err, errlen, "dataset '%s': num_samples is %zu but the dataset has no records", d->attr.name,
                        want);
        }
        size_t *perm = xmalloc((total ? total : 1) * sizeof *perm);
        np_permutation(legacy, total, perm);
        Sel *sel = xmalloc((want ? want : 1) * sizeof *sel);
        size_t i = 0;
        for (; i < want && i < total; i++) sel[i] = all[perm[i]];
        for (; i < want; i++) sel[i] = all[np_interval(legacy, total - 1)];
        free(perm);
        free(all);
        all = sel;
        total = want;
    }
    if (opt->max_samples > 0 && (size_t)opt->max_samples < total) total = (size_t)opt->max_samples;
    d->sel = all;
    d->n_sel = total;
    return true;
}

static void stats_add(DataStats *t, const DataStats *s) {
    t->read += s->read;
    t->selected += s->selected;
    t->kept += s->kept;
    t->dropped_by_hook += s->dropped_by_hook;
    t->skipped += s->skipped;
    for (int k = 0; k < DATA_BAD_NKINDS; k++) t->skipped_by[k] += s->skipped_by[k];
}

static void keep_bad_msg(DataSet *ds, const char *msg) {
    if (ds->n_bad_msgs < KEEP_BAD_MSGS) ds->bad_msgs[ds->n_bad_msgs++] = xstrdup(msg);
}

static void ctx_free(Ctx *c) {
    for (size_t i = 0; i < c->n_ds; i++) {
        Loading *d = &c->ds[i];
        for (size_t f = 0; f < d->n_files; f++) data_file_free(&d->files[f]);
        free(d->files);
        free(d->sel);
        free(d->ex);
    }
    free(c->ds);
    for (size_t j = 0; j < c->n_jobs; j++) {
        Job *jb = &c->jobs[j];
        for (size_t e = 0; e < jb->n_ex; e++) data_example_free(&jb->ex[e]); /* only when not moved to the pool */
        free(jb->ex);
        for (size_t b = 0; b < jb->n_bad; b++) free(jb->bad[b].msg);
        free(jb->bad);
        free(jb->fatal);
    }
    free(c->jobs);
    free(c->all_files);
    free(c->all_types);
    data_hook_close(&c->hook);
}

DataSet *data_load(const DataOptions *opt, char *err, size_t errlen) {
    Ctx c = {.opt = opt};
    DataSet *ds = xcalloc(1, sizeof *ds);
    ds->skip_bad = opt->skip_bad;
    int threads = opt->threads > 0 ? opt->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    JsonDoc *info_doc = NULL;
    char *info_text = NULL, *info_path = util_path_join(opt->dataset_dir ? opt->dataset_dir : ".", "dataset_info.json");
    bool ok = true;
    ExList train = {0}, eval = {0};

    // 1. dataset_info.json
    size_t n_ds = opt->n_datasets + opt->n_eval_datasets;
    if (n_ds) {
        char why[ERR_LEN];
        size_t len;
        info_text = util_read_file(info_path, &len, why, sizeof why);
        info_doc = info_text ? json_parse(info_text, len, info_path, why, sizeof why) : NULL;
        if (!info_doc) ok = errf(err, errlen, "%s", why);
        else if (json_root(info_doc)->type != JSON_OBJECT)
            ok = errf(err, errlen, "%s: expected an object of dataset names", info_path);
    }
    c.ds = xcalloc(n_ds ? n_ds : 1, sizeof *c.ds);
    ds->names = xcalloc(n_ds ? n_ds : 1, sizeof *ds->names);
    for (size_t i = 0; ok && i < n_ds; i++) {
        bool is_eval = i >= opt->n_datasets;
        const char *name = is_eval ? opt->eval_datasets[i - opt->n_datasets] : opt->datasets[i];
        ds->names[ds->n_names++] = xstrdup(name);
        Loading *d = &c.ds[c.n_ds++];
        d->is_eval = is_eval;
        ok = data_attr_parse(json_root(info_doc), ds->names[i], info_path, &d->attr, err, errlen) &&
             data_attr_check_stage(opt->stage, &d->attr, err, errlen);
    }
    if (ok && opt->n_eval_datasets && opt->val_size > 1e-6)
        ok = errf(err, errlen, "val_size and eval_dataset cannot both be given (LLaMA-Factory refuses it too)");

    // 2. files, read in parallel
    size_t n_files = 0;
    for (size_t i = 0; ok && i < c.n_ds; i++) {
        Loading *d = &c.ds[i];
        char **paths;
        if (!(ok = data_attr_files(opt->dataset_dir ? opt->dataset_dir : ".", &d->attr, &paths, &d->n_files, &d->type,
                              err, errlen)))
            break;
        d->files = xcalloc(d->n_files, sizeof *d->files);
        for (size_t f = 0; f < d->n_files; f++) d->files[f].path = paths[f];
        free(paths);
        n_files += d->n_files;
    }
    if (ok) {
        c.all_files = xmalloc((n_files ? n_files : 1) * sizeof *c.all_files);
        c.all_types = xmalloc((n_files ? n_files : 1) * sizeof *c.all_types);
        size_t k = 0;
        for (size_t i = 0; i < c.n_ds; i++)
            for (size_t f = 0; f < c.ds[i].n_files; f++) {
                c.all_files[k] = &c.ds[i].files[f];
                c.all_types[k++] = c.ds[i].type;
            }
        parallel_for(n_files, threads, read_job, &c);
        for (size_t k2 = 0; ok && k2 < n_files; k2++) {
            DataFile *f = c.all_files[k2];
            if (f->fatal) ok = errf(err, errlen, "%s", f->fatal);
            else if (f->n_bad && !opt->skip_bad)
                ok = errf(err, errlen, "%s (data_on_error: skip would skip such records and count them)",
                          f->bad[0].msg);
        }
    }

    // 3-4. columns, num_samples, max_samples
    NpRng legacy;
    np_rng_legacy(&legacy, (uint32_t)opt->seed);
    for (size_t i = 0; ok && i < c.n_ds; i++) {
        Loading *d = &c.ds[i];
        for (size_t f = 0; f < d->n_files; f++) {
            d->stats.read += d->files[f].n_recs + d->files[f].n_bad;
            d->stats.skipped += d->files[f].n_bad;
            for (size_t b = 0; b < d->files[f].n_bad; b++) {
                d->stats.skipped_by[d->files[f].bad[b].kind]++;
                keep_bad_msg(ds, d->files[f].bad[b].msg);
            }
        }
        ok = data_attr_check_columns(&d->attr, d->files, d->n_files, err, errlen) && select_records(opt, d, &legacy, err, errlen);
        d->stats.selected = d->n_sel;
    }

    // 5. hook and converter, in chunks of records, in parallel
    if (ok) ok = data_hook_open(&c.hook, opt, threads, err, errlen);
    if (ok) {
        for (size_t i = 0; i < c.n_ds; i++) c.n_jobs += (c.ds[i].n_sel + CHUNK - 1) / CHUNK;
        c.jobs = xcalloc(c.n_jobs ? c.n_jobs : 1, sizeof *c.jobs);
        size_t k = 0;
        for (size_t i = 0; i < c.n_ds; i++)
            for (size_t s = 0; s < c.ds[i].n_sel; s += CHUNK)
                c.jobs[k++] = (Job){.ds = &c.ds[i], .first = s, .n = c.ds[i].n_sel - s < CHUNK ? c.ds[i].n_sel - s : CHUNK};
        /* A hook sees every record in order in one Lua state, so it may keep state across
         * records (drop duplicates, number them); the converter alone runs in parallel. */
        parallel_for(c.n_jobs, c.hook.src ? 1 : threads, convert_job, &c);
        size_t n_pool = 0;
        for (size_t j = 0; ok && j < c.n_jobs; j++) {
            Job *jb = &c.jobs[j];
            if (jb->fatal) ok = errf(err, errlen, "%s", jb->fatal);
            else if (jb->n_bad && !opt->skip_bad)
                ok = errf(err, errlen, "%s (data_on_error: skip would skip such records and count them)",
                          jb->bad[0].msg);
            n_pool += jb->n_ex;
        }
        if (ok) {
            ds->pool = xmalloc((n_pool ? n_pool : 1) * sizeof *ds->pool);
            for (size_t j = 0; j < c.n_jobs; j++) {
                Job *jb = &c.jobs[j];
                Loading *d = jb->ds;
                if (!d->ex) d->ex = ds->pool + ds->n_pool;
                memcpy(ds->pool + ds->n_pool, jb->ex, jb->n_ex * sizeof *jb->ex);
                ds->n_pool += jb->n_ex;
                d->n_ex += jb->n_ex;
                d->stats.kept += jb->n_ex;
                d->stats.dropped_by_hook += jb->dropped;
                d->stats.skipped += jb->n_bad;
                for (size_t b = 0; b < jb->n_bad; b++) {
                    d->stats.skipped_by[jb->bad[b].kind]++;
                    keep_bad_msg(ds, jb->bad[b].msg);
                }
                jb->n_ex = 0; /* moved */
            }
        }
    }

    // 6. mix, split
    if (ok) {
        size_t nt = opt->n_datasets, ne = opt->n_eval_datasets;
        Loading *tp[nt ? nt : 1], *ep[ne ? ne : 1];
        for (size_t i = 0; i < nt; i++) tp[i] = &c.ds[i];
        for (size_t i = 0; i < ne; i++) ep[i] = &c.ds[nt + i];
        if (nt) ok = merge(opt, tp, nt, &train, err, errlen);
        if (ok && ne) ok = merge(opt, ep, ne, &eval, err, errlen);
        if (ok && nt && opt->val_size > 1e-6) ok = split(opt, &train, &eval, err, errlen);
    }
    if (ok) {
        ds->train = train.v, ds->n_train = train.n;
        ds->eval = eval.v, ds->n_eval = eval.n;
        train.v = eval.v = NULL;
        ds->per = xcalloc(c.n_ds ? c.n_ds : 1, sizeof *ds->per);
        for (size_t i = 0; i < c.n_ds; i++) {
            ds->per[i].name = ds->names[i];
            ds->per[i].is_eval = c.ds[i].is_eval;
            ds->per[i].st = c.ds[i].stats;
            stats_add(&ds->total, &c.ds[i].stats);
        }
        ds->n_per = c.n_ds;
        /* sources outlive the files: the examples point at them */
        for (size_t i = 0; i < c.n_ds; i++)
            for (size_t f = 0; f < c.ds[i].n_files; f++) {
                char *p = c.ds[i].files[f].path;
                ds->sources = xrealloc(ds->sources, (ds->n_sources + 1) * sizeof *ds->sources);
                ds->sources[ds->n_sources++] = p;
                c.ds[i].files[f].path = NULL;
            }
        /* the examples point at DataAttr names that live in ds->names already */
        for (size_t i = 0; i < c.n_ds; i++) c.ds[i].ex = NULL;
    }
    for (size_t i = 0; i < c.n_ds; i++) c.ds[i].ex = NULL; /* views into the pool */
    free(train.v);
    free(eval.v);
    ctx_free(&c);
    json_free(info_doc);
    free(info_text);
    free(info_path);
    if (!ok) {
        data_free(ds);
        return NULL;
    }
    return ds;
}

const DataExample *data_train(const DataSet *ds, size_t *n) {
    *n = ds->n_train;
    return ds->train;
}

const DataExample *data_eval(const DataSet *ds, size_t *n) {
    *n = ds->n_eval;
    return ds->eval;
}

const DataStats *data_stats(const DataSet *ds) { return &ds->total; }

static void report_line(FILE *f, const char *name, const DataStats *s) {
    fprintf(f, "  %-28s %8zu read %8zu selected %8zu kept %6zu dropped by hook %6zu skipped", name, s->read,
            s->selected, s->kept, s->dropped_by_hook, s->skipped);
    if (s->skipped) {
        fprintf(f, " (");
        bool first = true;
        for (int k = 0; k < DATA_BAD_NKINDS; k++)
            if (s->skipped_by[k]) {
                fprintf(f, "%s%zu %s", first ? "" : ", ", s->skipped_by[k], data_bad_name((DataBadKind)k));
                first = false;
            }
        fprintf(f, ")");
    }
    fprintf(f, "\n");
}

void data_report(const DataSet *ds, FILE *f) {
    fprintf(f, "data: %zu train examples, %zu eval examples\n", ds->n_train, ds->n_eval);
    for (size_t i = 0; i < ds->n_per; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s%s", ds->per[i].name, ds->per[i].is_eval ? " (eval)" : "");
        report_line(f, name, &ds->per[i].st);
    }
    if (ds->n_per > 1) report_line(f, "total", &ds->total);
    if (ds->total.skipped) {
        fprintf(f, "  first skipped records (data_on_error: skip):\n");
        for (size_t i = 0; i < ds->n_bad_msgs; i++) fprintf(f, "    %s\n", ds->bad_msgs[i]);
    }
}

void data_free(DataSet *ds) {
    if (!ds) return;
    for (size_t i = 0; i < ds->n_pool; i++) data_example_free(&ds->pool[i]);
    free(ds->pool);
    free(ds->train);
    free(ds->eval);
    for (size_t i = 0; i < ds->n_names; i++) free(ds->names[i]);
    free(ds->names);
    for (size_t i = 0; i < ds->n_sources; i++) free(ds->sources[i]);
    free(ds->sources);
    free(ds->per);
    for (size_t i = 0; i < ds->n_bad_msgs; i++) free(ds->bad_msgs[i]);
    free(ds);
}
