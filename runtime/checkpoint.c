/* checkpoint.c - atomic checkpoint folders with checksums; resume. */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "safetensors.h"
#include "sha256.h"
#include "util.h"

static int fail_at;

void ckpt_test_fail_at(int stage) { fail_at = stage; }

/* True when the injected fault fires at this stage (then it is spent); a negative stage
 * kills the process there instead, as a crash or `kill -9` would. */
static bool injected(int stage) {
    if (fail_at == -stage) raise(SIGKILL);
    if (fail_at != stage) return false;
    fail_at = 0;
    return true;
}

// --- file system helpers

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static bool rm_rf(const char *path) {
    if (access(path, F_OK) != 0) return true;
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

static bool fsync_path(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errf(err, errlen, "%s: cannot open to sync: %s", path, strerror(errno));
    bool ok = fsync(fd) == 0 || errf(err, errlen, "%s: fsync failed: %s", path, strerror(errno));
    close(fd);
    return ok;
}

static bool file_sha256(const char *path, char hex[65], int64_t *size, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return errf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    Sha256 s;
    sha256_init(&s);
    static char buf[1 << 16];
    size_t n;
    int64_t total = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        sha256_update(&s, buf, n);
        total += (int64_t)n;
    }
    bool ok = !ferror(f) || errf(err, errlen, "%s: read error", path);
    fclose(f);
    uint8_t d[32];
    sha256_final(&s, d);
    sha256_hex(d, hex);
    *size = total;
    return ok;
}

/* "checkpoint-123" -> 123; -1 for anything else. */
static int64_t ckpt_number(const char *name) {
    if (strncmp(name, "checkpoint-", 11) != 0 || !name[11]) return -1;
    int64_t n = 0;
    for (const char *p = name + 11; *p; p++) {
        if (*p < '0' || *p > '9' || n > (INT64_MAX - 9) / 10) return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

typedef struct {
    int64_t step;
    char *name;
} Found;

static int cmp_found(const void *a, const void *b) {
    int64_t x = ((const Found *)a)->step, y = ((const Found *)b)->step;
    return (x > y) - (x < y);
}

/* checkpoint-N folders of dir, sorted by N. */
static Found *list_ckpts(const char *dir, size_t *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    Found *out = NULL;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t step = ckpt_number(e->d_name);
        if (step < 0) continue;
        char *p = util_path_join(dir, e->d_name);
        bool is_dir = util_is_dir(p);
        free(p);
        if (!is_dir) continue;
        if (*n == cap) out = xrealloc(out, (cap = cap ? 2 * cap : 8) * sizeof *out);
        out[(*n)++] = (Found){step, xstrdup(e->d_name)};
    }
    closedir(d);
    if (*n) qsort(out, *n, sizeof *out, cmp_found);
    return out;
}

static void free_found(Found *f, size_t n) {
    for (size_t i = 0; i < n; i++) free(f[i].name);
    free(f);
}

// --- saving

static bool write_train_state(const CkptSave *s, const char *dir, char *err, size_t errlen) {
    size_t n = s->n_params, per = s->opt ? 3 : 1;
    StWriteTensor *t = xcalloc(n * per + 1, sizeof *t);
    char **names = xcalloc(n * per + 1, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        const OptParam *p = &s->params[i];
        for (size_t k = 0; k < per; k++) {
            size_t j = i * per + k;
            names[j] = k == 0 ? xstrdup(p->name)
                              : xprintf("%s.%s", p->name, k == 1 ? "exp_avg" : "exp_avg_sq");
            t[j].name = names[j];
            t[j].dtype = ST_F32;
            t[j].ndim = 1;
            t[j].shape[0] = p->n;
            t[j].data = k == 0 ? (const void *)p->value
                        : k == 1 ? (const void *)(s->opt->m + s->opt->offset[i])
                                 : (const void *)(s->opt->v + s->opt->offset[i]);
        }
    }
    char step[32];
    snprintf(step, sizeof step, "%lld", (long long)(s->opt ? s->opt->step : -1));
    const char *meta[] = {"format", "pt", "llfc_optimizer_step", step, NULL};
    StWriteOptions o = {.dir = dir, .base = "train_state", .max_shard_bytes = UINT64_MAX, .meta = meta};
    bool ok = st_write(t, n * per, &o, NULL, err, errlen);
    for (size_t j = 0; j < n * per; j++) free(names[j]);
    free(names);
    free(t);
    return ok;
}

static bool write_manifest(const CkptSave *s, const char *dir, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) return errf(err, errlen, "%s: cannot list: %s", dir, strerror(errno));
    char **files = NULL;
    size_t nf = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, CKPT_MANIFEST) == 0) continue;
        char *path = util_path_join(dir, e->d_name);
        bool regular = util_is_file(path);
        free(path);
        if (!regular) continue; /* only files are checksummed; model writers make no folders */
        if (nf == cap) files = xrealloc(files, (cap = cap ? 2 * cap : 16) * sizeof *files);
        files[nf++] = xstrdup(e->d_name);
    }
    closedir(d);
    for (size_t i = 1; i < nf; i++) /* sorted, so the manifest is reproducible */
        for (size_t j = i; j > 0 && strcmp(files[j - 1], files[j]) > 0; j--) {
            char *t = files[j];
            files[j] = files[j - 1];
            files[j - 1] = t;
        }
    const CkptPosition *p = s->pos;
    StrBuf b = {0};
    char loss[32], scale[32];
    trainlog_py_repr(p->loss_sum, loss);
    trainlog_py_repr(p->loss_scale, scale);
    sb_printf(&b,
              "{\n  \"format\": \"llfc-checkpoint\",\n  \"version\": 1,\n"
              "  \"global_step\": %lld,\n  \"epoch\": %lld,\n  \"batch_in_epoch\": %lld,\n"
              "  \"sample_offset\": %lld,\n  \"seed\": %llu,\n  \"data_seed\": %llu,\n"
              "  \"loss_sum\": %s,\n  \"tokens_seen\": %lld,\n  \"has_optimizer\": %s,\n"
              "  \"loss_scale\": %s,\n  \"loss_scale_clean\": %lld,\n  \"skipped_steps\": %lld,\n"
              "  \"files\": [",
              (long long)p->global_step, (long long)p->epoch, (long long)p->batch_in_epoch,
              (long long)p->sample_offset, (unsigned long long)p->seed,
              (unsigned long long)p->data_seed, loss, (long long)p->tokens_seen,
              s->opt ? "true" : "false", scale, (long long)p->loss_scale_clean, (long long)p->skipped_steps);
    bool ok = true;
    for (size_t i = 0; i < nf && ok; i++) {
        char *path = util_path_join(dir, files[i]);
        char hex[65];
        int64_t size;
        ok = file_sha256(path, hex, &size, err, errlen);
        sb_printf(&b, "%s\n    {\"name\": \"%s\", \"size\": %lld, \"sha256\": \"%s\"}", i ? "," : "",
                  files[i], (long long)size, hex);
        free(path);
    }
    sb_puts(&b, "\n  ]\n}\n");
    if (ok) {
        char *path = util_path_join(dir, CKPT_MANIFEST);
        ok = util_write_file_atomic(path, b.data, b.len, 0644, err, errlen);
        free(path);
    }
    sb_free(&b);
    for (size_t i = 0; i < nf; i++) free(files[i]);
    free(files);
    return ok;
}

bool ckpt_save(const CkptSave *s, char **path_out, char *err, size_t errlen) {
    char *name = xprintf("checkpoint-%lld", (long long)s->pos->global_step);
    char *tmp_name = xprintf(".%s.tmp", name);
    char *final = util_path_join(s->output_dir, name);
    char *tmp = util_path_join(s->output_dir, tmp_name);
    char *aside = xprintf("%s.old", tmp);
    bool killed = false, ok = true;

    if (!util_is_dir(s->output_dir) && mkdir(s->output_dir, 0755) != 0 && errno != EEXIST)
        ok = errf(err, errlen, "%s: cannot create: %s", s->output_dir, strerror(errno));
    if (ok && (!rm_rf(tmp) || mkdir(tmp, 0755) != 0))
        ok = errf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
    if (ok && s->write_model) ok = s->write_model(s->ctx, tmp, err, errlen);
    if (ok && injected(1)) killed = true;
    if (ok && !killed) ok = write_train_state(s, tmp, err, errlen);
    if (ok && !killed && injected(2)) killed = true;
    if (ok && !killed) {
        StrBuf b = {0};
        trainlog_state_json(s->state, &b);
        char *p = util_path_join(tmp, "trainer_state.json");
        ok = util_write_file_atomic(p, b.data, b.len, 0644, err, errlen);
        free(p);
        sb_free(&b);
    }
    if (ok && !killed && injected(3)) killed = true;
    if (ok && !killed) ok = write_manifest(s, tmp, err, errlen) && fsync_path(tmp, err, errlen);
    if (ok && !killed && injected(4)) killed = true;
    if (ok && !killed) {
        bool had = util_is_dir(final);
        rm_rf(aside);
        if (had && rename(final, aside) != 0)
            ok = errf(err, errlen, "%s: cannot move aside: %s", final, strerror(errno));
        if (ok && rename(tmp, final) != 0) {
            ok = errf(err, errlen, "%s: cannot rename into place: %s", final, strerror(errno));
            if (had) rename(aside, final);
        }
        ok = ok && fsync_path(s->output_dir, err, errlen);
        if (ok && had) rm_rf(aside);
    }
    if (ok && !killed && injected(5)) killed = true;
    if (ok && !killed)
        ok = ckpt_rotate(s->output_dir, s->save_total_limit, err, errlen);
    if (killed) ok = errf(err, errlen, "checkpoint save interrupted (test fault injection)");
    else if (!ok) rm_rf(tmp); /* a real error: leave nothing half-written behind */
    if (ok && path_out) *path_out = xstrdup(final);
    free(name);
    free(tmp_name);
    free(final);
    free(tmp);
    free(aside);
    return ok;
}

bool ckpt_rotate(const char *output_dir, int64_t limit, char *err, size_t errlen) {
    /* stale temporary folders from interrupted saves */
    DIR *d = opendir(output_dir);
    if (!d) return errf(err, errlen, "%s: cannot list: %s", output_dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, ".checkpoint-", 12) == 0 && len > 4 &&
            (strcmp(e->d_name + len - 4, ".tmp") == 0 || strstr(e->d_name, ".tmp.old"))) {
            char *p = util_path_join(output_dir, e->d_name);
            rm_rf(p);
            free(p);
        }
    }
    closedir(d);
    if (limit <= 0) return true;
    size_t n;
    Found *f = list_ckpts(output_dir, &n);
    bool ok = true;
    for (size_t i = 0; i + (size_t)limit < n && ok; i++) {
        char *p = util_path_join(output_dir, f[i].name);
        if (!rm_rf(p)) ok = errf(err, errlen, "%s: cannot remove: %s", p, strerror(errno));
        free(p);
    }
    free_found(f, n);
    return ok;
}

// --- finding and checking

char *ckpt_latest(const char *output_dir, int *n_incomplete) {
    size_t n;
    Found *f = list_ckpts(output_dir, &n);
    char *best = NULL;
    int incomplete = 0;
    for (size_t i = n; i-- > 0;) {
        char *p = util_path_join(output_dir, f[i].name);
        char *m = util_path_join(p, CKPT_MANIFEST);
        bool complete = util_is_file(m);
        free(m);
        if (complete && !best) best = p;
        else {
            if (!complete) incomplete++;
            free(p);
        }
    }
    free_found(f, n);
    if (n_incomplete) *n_incomplete = incomplete;
    return best;
}

bool ckpt_resolve(const char *resume, const char *output_dir, char **path_out, char *err,
                  size_t errlen) {
    if (strcmp(resume, "true") == 0 || strcmp(resume, "True") == 0 || strcmp(resume, "latest") == 0) {
        int incomplete = 0;
        char *p = ckpt_latest(output_dir, &incomplete);
        if (!p)
            return errf(err, errlen,
                        "resume_from_checkpoint: no complete checkpoint-N folder in %s%s; train "
                        "from the start (remove the key) or name a checkpoint folder",
                        output_dir, incomplete ? " (only interrupted ones)" : "");
        *path_out = p;
        return true;
    }
    if (!util_is_dir(resume))
        return errf(err, errlen, "resume_from_checkpoint: %s is not a folder; give a checkpoint-N "
                                 "folder, or true for the latest in output_dir", resume);
    *path_out = xstrdup(resume);
    return true;
}

bool ckpt_auto_resume(const char *output_dir, const char *resume, bool overwrite_output_dir,
                      char **path_out, char *note, size_t notelen, char *err, size_t errlen) {
    *path_out = NULL;
    if (note && notelen) note[0] = '\0';
    if (resume && *resume) return ckpt_resolve(resume, output_dir, path_out, err, errlen);
    if (overwrite_output_dir || !util_is_dir(output_dir)) return true;
    char *latest = ckpt_latest(output_dir, NULL);
    if (latest) {
        if (note)
            snprintf(note, notelen, "Resuming training from %s. Change output_dir or use "
                                    "overwrite_output_dir to avoid.", latest);
        *path_out = latest;
        return true;
    }
    static const char *const finished[] = {"adapter_model.safetensors", "adapter_model.bin",
                                           "model.safetensors.index.json", "model.safetensors",
                                           "pytorch_model.bin.index.json", "pytorch_model.bin"};
    for (size_t i = 0; i < sizeof finished / sizeof *finished; i++) {
        char *p = util_path_join(output_dir, finished[i]);
        bool there = util_is_file(p);
        free(p);
        if (there)
            return errf(err, errlen, "output_dir %s already holds a trained model (%s) and no "
                                     "checkpoint to resume; set overwrite_output_dir: true or "
                                     "choose another output_dir", output_dir, finished[i]);
    }
    return true;
}

static bool read_manifest(const char *dir, JsonDoc **doc, char *err, size_t errlen) {
    char *path = util_path_join(dir, CKPT_MANIFEST);
    bool ok = true;
    if (!util_is_file(path)) {
        ok = errf(err, errlen, "%s: not a complete checkpoint (no %s: its save was interrupted); "
                               "resume from an earlier checkpoint-N", dir, CKPT_MANIFEST);
    } else {
        size_t len;
        char *text = util_read_file(path, &len, err, errlen);
        *doc = text ? json_parse(text, len, path, err, errlen) : NULL;
        ok = *doc != NULL;
        free(text);
    }
    free(path);
    return ok;
}

bool ckpt_verify(const char *dir, char *err, size_t errlen) {
    JsonDoc *doc = NULL;
    if (!read_manifest(dir, &doc, err, errlen)) return false;
    const Json *root = json_root(doc);
    const Json *files = json_get(root, "files");
    const char *fmt = json_as_str(json_get(root, "format"));
    bool ok = (fmt && strcmp(fmt, "llfc-checkpoint") == 0 && files && files->type == JSON_ARRAY) ||
              errf(err, errlen, "%s/%s: not an llfc checkpoint manifest", dir, CKPT_MANIFEST);
    for (size_t i = 0; ok && i < files->arr.n; i++) {
        const Json *e = files->arr.items[i];
        const char *name = json_as_str(json_get(e, "name"));
        const char *want = json_as_str(json_get(e, "sha256"));
        int64_t want_size;
        if (!name || !want || !json_as_int(json_get(e, "size"), &want_size) || strchr(name, '/')) {
            ok = errf(err, errlen, "%s/%s:%d:%d: bad file entry", dir, CKPT_MANIFEST, e->line, e->col);
            break;
        }
        char *path = util_path_join(dir, name);
        char hex[65];
        int64_t size;
        if (!util_is_file(path))
            ok = errf(err, errlen, "%s: missing from the checkpoint; it is damaged, resume from an "
                                   "earlier checkpoint-N", path);
        else if (!file_sha256(path, hex, &size, err, errlen))
            ok = false;
        else if (size != want_size)
            ok = errf(err, errlen, "%s: %lld bytes, the checkpoint recorded %lld (truncated or "
                                   "damaged); resume from an earlier checkpoint-N",
                      path, (long long)size, (long long)want_size);
        else if (strcmp(hex, want) != 0)
            ok = errf(err, errlen, "%s: SHA-256 differs from the one recorded at save (the file "
                                   "is damaged); resume from an earlier checkpoint-N", path);
        free(path);
    }
    json_free(doc);
    return ok;
}

// --- loading

static bool man_int(const Json *root, const char *key, int64_t *out, const char *dir, char *err,
                    size_t errlen) {
    if (json_as_int(json_get(root, key), out)) return true;
    return errf(err, errlen, "%s/%s: \"%s\" missing or not an integer", dir, CKPT_MANIFEST, key);
}

static bool load_tensor(const StModel *m, const char *name, float *dst, int64_t n, const char *file,
                        char *err, size_t errlen) {
    const StTensor *t = st_find(m, name);
    if (!t)
        return errf(err, errlen, "%s: no tensor %s: the checkpoint was saved by a run that trained "
                                 "other parameters (another recipe?)", file, name);
    if (t->numel != n || t->dtype != ST_F32)
        return errf(err, errlen, "%s: tensor %s has %lld %s values, this run's parameter has %lld "
                                 "float32", file, name, (long long)t->numel, st_dtype_name(t->dtype),
                    (long long)n);
    if (dst) st_read_f32(t, dst); // NULL: another rank's (ZeRO-3), checked but not read
    return true;
}

/* The parameters whose moments opt holds: every one, or those with mine[i] (a fresh array). */
static OptParam *own_params(const OptParam *params, size_t n_params, const bool *mine, size_t *n) {
    OptParam *own = xcalloc(n_params + 1, sizeof *own);
    *n = 0;
    for (size_t i = 0; i < n_params; i++)
        if (!mine || mine[i]) own[(*n)++] = params[i];
    return own;
}

bool ckpt_load(const char *dir, const OptParam *params, size_t n_params, const bool *mine, AdamW *opt,
               TrainerState *state, CkptPosition *pos, char *err, size_t errlen) {
    if (!ckpt_verify(dir, err, errlen)) return false;
    JsonDoc *doc = NULL;
    if (!read_manifest(dir, &doc, err, errlen)) return false;
    const Json *root = json_root(doc);
    memset(pos, 0, sizeof *pos);
    int64_t seed = 0, data_seed = 0;
    bool has_opt = false;
    bool ok = man_int(root, "global_step", &pos->global_step, dir, err, errlen) &&
              man_int(root, "epoch", &pos->epoch, dir, err, errlen) &&
              man_int(root, "batch_in_epoch", &pos->batch_in_epoch, dir, err, errlen) &&
              man_int(root, "sample_offset", &pos->sample_offset, dir, err, errlen) &&
              man_int(root, "seed", &seed, dir, err, errlen) &&
              man_int(root, "data_seed", &data_seed, dir, err, errlen) &&
              man_int(root, "tokens_seen", &pos->tokens_seen, dir, err, errlen);
    ok = ok && (json_as_double(json_get(root, "loss_sum"), &pos->loss_sum) ||
                errf(err, errlen, "%s/%s: no loss_sum", dir, CKPT_MANIFEST));
    json_as_bool(json_get(root, "has_optimizer"), &has_opt);
    // the loss scaler's state: absent (0) in checkpoints of runs that do not scale
    if (ok && json_get(root, "loss_scale"))
        ok = ((json_as_double(json_get(root, "loss_scale"), &pos->loss_scale) && pos->loss_scale >= 0) ||
              errf(err, errlen, "%s/%s: loss_scale is not a number >= 0", dir, CKPT_MANIFEST)) &&
             man_int(root, "loss_scale_clean", &pos->loss_scale_clean, dir, err, errlen) &&
             man_int(root, "skipped_steps", &pos->skipped_steps, dir, err, errlen);
    pos->seed = (uint64_t)seed;
    pos->data_seed = (uint64_t)data_seed;
    json_free(doc);
    if (ok && opt && !has_opt)
        ok = errf(err, errlen, "%s: saved without optimizer state (save_only_model); it cannot "
                               "be resumed exactly", dir);

    char *file = util_path_join(dir, CKPT_STATE);
    StModel *m = ok ? st_open(file, err, errlen) : NULL;
    ok = ok && m;
    size_t per = has_opt ? 3 : 1;
    if (ok && m->n_tensors != n_params * per)
        ok = errf(err, errlen, "%s: %zu tensors for %zu parameters; this run trains %zu "
                               "parameters (another recipe?)", file, m->n_tensors,
                  m->n_tensors / per, n_params);
    size_t n_own = 0;
    OptParam *own = own_params(params, n_params, mine, &n_own);
    if (ok && opt) ok = optim_state_matches(opt, own, n_own, err, errlen);
    for (size_t i = 0, j = 0; ok && i < n_params; i++) {
        const OptParam *p = &params[i];
        const bool here = !mine || mine[i];
        ok = load_tensor(m, p->name, p->value, p->n, file, err, errlen);
        if (ok && opt) {
            char *a = xprintf("%s.exp_avg", p->name), *b = xprintf("%s.exp_avg_sq", p->name);
            ok = load_tensor(m, a, here ? opt->m + opt->offset[j] : NULL, p->n, file, err, errlen) &&
                 load_tensor(m, b, here ? opt->v + opt->offset[j] : NULL, p->n, file, err, errlen);
            free(a);
            free(b);
        }
        j += here;
    }
    free(own);
    if (ok && opt) {
        const char *step = NULL;
        for (size_t k = 0; k < m->n_meta; k++)
            if (strcmp(m->meta_keys[k], "llfc_optimizer_step") == 0) step = m->meta_values[k];
        char *end = NULL;
        long long v = step ? strtoll(step, &end, 10) : -1;
        if (!step || *end || v < 0) ok = errf(err, errlen, "%s: no optimizer step in its metadata", file);
        else opt->step = v;
    }
    st_close(m);
    free(file);

    if (ok && state) {
        char *path = util_path_join(dir, "trainer_state.json");
        size_t len;
        char *text = util_read_file(path, &len, err, errlen);
        ok = text && trainlog_state_parse(state, text, len, path, err, errlen);
        free(text);
        free(path);
        if (ok && state->global_step != pos->global_step) {
            ok = errf(err, errlen, "%s: trainer_state.json says step %lld, the manifest %lld", dir,
                      (long long)state->global_step, (long long)pos->global_step);
            trainlog_state_free(state);
        }
    }
    return ok;
}
