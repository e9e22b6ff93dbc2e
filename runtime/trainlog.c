/* trainlog.c - progress line, trainer_log.jsonl, trainer_state.json, *_results.json. */
#include "trainlog.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"

// --- LogRec

static LogItem *add(LogRec *r, const char *key, LogKind kind) {
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->items[i].key, key) == 0) { /* a dict keeps the first position */
            free(r->items[i].s);
            r->items[i].s = NULL;
            r->items[i].kind = kind;
            return &r->items[i];
        }
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 8;
        r->items = xrealloc(r->items, (size_t)r->cap * sizeof *r->items);
    }
    LogItem *it = &r->items[r->n++];
    memset(it, 0, sizeof *it);
    assert(strlen(key) < sizeof it->key);
    snprintf(it->key, sizeof it->key, "%s", key);
    it->kind = kind;
    return it;
}

void logrec_int(LogRec *r, const char *key, int64_t v) { add(r, key, LOGV_INT)->i = v; }
void logrec_float(LogRec *r, const char *key, double v) { add(r, key, LOGV_FLOAT)->f = v; }
void logrec_str(LogRec *r, const char *key, const char *v) { add(r, key, LOGV_STR)->s = xstrdup(v); }

const LogItem *logrec_get(const LogRec *r, const char *key) {
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->items[i].key, key) == 0) return &r->items[i];
    return NULL;
}

bool logrec_num(const LogRec *r, const char *key, double *out) {
    const LogItem *it = logrec_get(r, key);
    if (!it || (it->kind != LOGV_INT && it->kind != LOGV_FLOAT)) return false;
    *out = it->kind == LOGV_INT ? (double)it->i : it->f;
    return true;
}

void logrec_copy(LogRec *dst, const LogRec *src) {
    for (int i = 0; i < src->n; i++) {
        const LogItem *s = &src->items[i];
        LogItem *d = add(dst, s->key, s->kind);
        d->i = s->i;
        d->f = s->f;
        d->s = s->s ? xstrdup(s->s) : NULL;
    }
}

void logrec_free(LogRec *r) {
    for (int i = 0; i < r->n; i++) free(r->items[i].s);
    free(r->items);
    memset(r, 0, sizeof *r);
}

// --- Python number formatting

void trainlog_py_repr(double x, char out[32]) {
    if (isnan(x)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(x)) {
        strcpy(out, x > 0 ? "Infinity" : "-Infinity");
        return;
    }
    if (x == 0) {
        strcpy(out, signbit(x) ? "-0.0" : "0.0");
        return;
    }
    char buf[40];
    for (int p = 1; p <= 17; p++) { /* the shortest digits that read back as x */
        snprintf(buf, sizeof buf, "%.*e", p - 1, x);
        if (strtod(buf, NULL) == x) break;
    }
    const char *s = buf;
    bool neg = *s == '-';
    if (neg) s++;
    char digits[24];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    int e10 = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    char *o = out;
    if (neg) *o++ = '-';
    if (e10 >= -4 && e10 < 16) {
        if (e10 >= 0) {
            for (int i = 0; i <= e10; i++) *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > e10 + 1)
                for (int i = e10 + 1; i < nd; i++) *o++ = digits[i];
            else
                *o++ = '0';
        } else {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -e10 - 1; i++) *o++ = '0';
            for (int i = 0; i < nd; i++) *o++ = digits[i];
        }
        *o = '\0';
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++) *o++ = digits[i];
        }
        snprintf(o, 8, "e%c%02u", e10 < 0 ? '-' : '+', (unsigned)abs(e10) % 1000u);
    }
}

double trainlog_py_round(double x, int ndigits) {
    if (!isfinite(x)) return x;
    char buf[400];
    snprintf(buf, sizeof buf, "%.*f", ndigits, x); /* glibc: exact value, ties to even */
    return strtod(buf, NULL);
}

void trainlog_timedelta(double seconds, char out[48]) {
    int64_t s = (int64_t)seconds;
    if (s < 0) s = 0;
    int64_t days = s / 86400, rem = s % 86400;
    int h = (int)(rem / 3600), m = (int)(rem % 3600 / 60), sec = (int)(rem % 60);
    if (days)
        snprintf(out, 48, "%lld day%s, %d:%02d:%02d", (long long)days, days == 1 ? "" : "s", h, m,
                 sec);
    else
        snprintf(out, 48, "%d:%02d:%02d", h, m, sec);
}

// --- JSON as Python's json module writes it (ensure_ascii)

static void py_string(StrBuf *out, const char *s) {
    sb_puts(out, "\"");
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        uint32_t c = *p;
        int len = 1;
        if (c >= 0xf0 && p[1] && p[2] && p[3]) {
            c = ((c & 7) << 18) | ((p[1] & 0x3fu) << 12) | ((p[2] & 0x3fu) << 6) | (p[3] & 0x3fu);
            len = 4;
        } else if (c >= 0xe0 && p[1] && p[2]) {
            c = ((c & 15) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
            len = 3;
        } else if (c >= 0xc0 && p[1]) {
            c = ((c & 31) << 6) | (p[1] & 0x3fu);
            len = 2;
        }
        p += len;
        switch (c) {
        case '"': sb_puts(out, "\\\""); continue;
        case '\\': sb_puts(out, "\\\\"); continue;
        case '\n': sb_puts(out, "\\n"); continue;
        case '\r': sb_puts(out, "\\r"); continue;
        case '\t': sb_puts(out, "\\t"); continue;
        case '\b': sb_puts(out, "\\b"); continue;
        case '\f': sb_puts(out, "\\f"); continue;
        default: break;
        }
        if (c < 0x20 || c > 0x7e) {
            if (c > 0xffff) {
                c -= 0x10000;
                sb_printf(out, "\\u%04x\\u%04x", 0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
            } else {
                sb_printf(out, "\\u%04x", c);
            }
        } else {
            char ch = (char)c;
            sb_append(out, &ch, 1);
        }
    }
    sb_puts(out, "\"");
}

static void py_value(StrBuf *out, const LogItem *it) {
    char num[32];
    switch (it->kind) {
    case LOGV_INT: sb_printf(out, "%lld", (long long)it->i); break;
    case LOGV_FLOAT:
        trainlog_py_repr(it->f, num);
        sb_puts(out, num);
        break;
    case LOGV_STR: py_string(out, it->s); break;
    case LOGV_BOOL: sb_puts(out, it->i ? "true" : "false"); break;
    case LOGV_NULL: sb_puts(out, "null"); break;
    }
}

void trainlog_dumps(const LogRec *r, StrBuf *out) {
    sb_puts(out, "{");
    for (int i = 0; i < r->n; i++) {
        if (i) sb_puts(out, ", ");
        py_string(out, r->items[i].key);
        sb_puts(out, ": ");
        py_value(out, &r->items[i]);
    }
    sb_puts(out, "}");
}

static int cmp_item(const void *a, const void *b) {
    return strcmp(((const LogItem *)a)->key, ((const LogItem *)b)->key);
}

static void pad(StrBuf *out, int n) {
    for (int i = 0; i < n; i++) sb_puts(out, " ");
}

void trainlog_dumps_indent(const LogRec *r, int indent, int level, StrBuf *out) {
    if (r->n == 0) {
        sb_puts(out, "{}");
        return;
    }
    LogItem *sorted = xmalloc((size_t)r->n * sizeof *sorted);
    memcpy(sorted, r->items, (size_t)r->n * sizeof *sorted);
    qsort(sorted, (size_t)r->n, sizeof *sorted, cmp_item);
    sb_puts(out, "{\n");
    for (int i = 0; i < r->n; i++) {
        pad(out, indent * (level + 1));
        py_string(out, sorted[i].key);
        sb_puts(out, ": ");
        py_value(out, &sorted[i]);
        sb_puts(out, i + 1 < r->n ? ",\n" : "\n");
    }
    pad(out, indent * level);
    sb_puts(out, "}");
    free(sorted);
}

// --- trainer_state.json

void trainlog_state_append(TrainerState *st, const LogRec *entry) {
    if (st->n_log == st->cap_log) {
        st->cap_log = st->cap_log ? 2 * st->cap_log : 16;
        st->log_history = xrealloc(st->log_history, st->cap_log * sizeof *st->log_history);
    }
    LogRec *d = &st->log_history[st->n_log++];
    memset(d, 0, sizeof *d);
    logrec_copy(d, entry);
}

void trainlog_state_free(TrainerState *st) {
    for (size_t i = 0; i < st->n_log; i++) logrec_free(&st->log_history[i]);
    free(st->log_history);
    memset(st, 0, sizeof *st);
}

void trainlog_state_json(const TrainerState *st, StrBuf *out) {
    char num[32];
    sb_puts(out, "{\n  \"best_global_step\": null,\n  \"best_metric\": null,\n"
                 "  \"best_model_checkpoint\": null,\n");
    trainlog_py_repr(st->epoch, num);
    sb_printf(out, "  \"epoch\": %s,\n", num);
    sb_printf(out, "  \"eval_steps\": %lld,\n", (long long)st->eval_steps);
    sb_printf(out, "  \"global_step\": %lld,\n", (long long)st->global_step);
    sb_puts(out, "  \"is_hyper_param_search\": false,\n  \"is_local_process_zero\": true,\n"
                 "  \"is_world_process_zero\": true,\n");
    if (st->n_log == 0) {
        sb_puts(out, "  \"log_history\": [],\n");
    } else {
        sb_puts(out, "  \"log_history\": [\n");
        for (size_t i = 0; i < st->n_log; i++) {
            pad(out, 4);
            trainlog_dumps_indent(&st->log_history[i], 2, 2, out);
            sb_puts(out, i + 1 < st->n_log ? ",\n" : "\n");
        }
        sb_puts(out, "  ],\n");
    }
    sb_printf(out, "  \"logging_steps\": %lld,\n", (long long)st->logging_steps);
    sb_printf(out, "  \"max_steps\": %lld,\n", (long long)st->max_steps);
    sb_printf(out, "  \"num_input_tokens_seen\": %lld,\n", (long long)st->num_input_tokens_seen);
    sb_printf(out, "  \"num_train_epochs\": %lld,\n", (long long)st->num_train_epochs);
    sb_printf(out, "  \"save_steps\": %lld,\n", (long long)st->save_steps);
    sb_printf(out,
              "  \"stateful_callbacks\": {\n    \"TrainerControl\": {\n      \"args\": {\n"
              "        \"should_epoch_stop\": false,\n        \"should_evaluate\": false,\n"
              "        \"should_log\": false,\n        \"should_save\": true,\n"
              "        \"should_training_stop\": %s\n      },\n      \"attributes\": {}\n    }\n  },\n",
              st->should_training_stop ? "true" : "false");
    trainlog_py_repr(st->total_flos, num);
    sb_printf(out, "  \"total_flos\": %s,\n", num);
    if (st->train_batch_size > 0)
        sb_printf(out, "  \"train_batch_size\": %lld,\n", (long long)st->train_batch_size);
    else
        sb_puts(out, "  \"train_batch_size\": null,\n");
    sb_puts(out, "  \"trial_name\": null,\n  \"trial_params\": null\n}\n");
}

static bool get_int(const Json *o, const char *key, int64_t *out, const char *name, char *err,
                    size_t errlen) {
    const Json *v = json_get(o, key);
    if (!v) return errf(err, errlen, "%s: no \"%s\"; the file is not a trainer_state.json", name, key);
    if (v->type == JSON_NULL) {
        *out = 0;
        return true;
    }
    if (!json_as_int(v, out))
        return errf(err, errlen, "%s:%d:%d: \"%s\" should be an integer", name, v->line, v->col, key);
    return true;
}

static bool get_num(const Json *o, const char *key, double *out, const char *name, char *err,
                    size_t errlen) {
    const Json *v = json_get(o, key);
    if (!v) return errf(err, errlen, "%s: no \"%s\"; the file is not a trainer_state.json", name, key);
    if (!json_as_double(v, out))
        return errf(err, errlen, "%s:%d:%d: \"%s\" should be a number", name, v->line, v->col, key);
    return true;
}

/* One flat JSON object into a LogRec. */
static bool parse_rec(const Json *o, LogRec *r, const char *name, char *err, size_t errlen) {
    if (!o || o->type != JSON_OBJECT)
        return errf(err, errlen, "%s:%d:%d: expected an object", name, o ? o->line : 0, o ? o->col : 0);
    for (size_t k = 0; k < o->obj.n; k++) {
        const Json *v = o->obj.vals[k];
        const char *key = o->obj.keys[k];
        if (strlen(key) >= sizeof r->items[0].key)
            return errf(err, errlen, "%s:%d:%d: key too long", name, v->line, v->col);
        switch (v->type) {
        case JSON_NUMBER:
            if (v->num.is_int) logrec_int(r, key, v->num.i);
            else logrec_float(r, key, v->num.f);
            break;
        case JSON_STRING: logrec_str(r, key, v->str.s); break;
        case JSON_BOOL: add(r, key, LOGV_BOOL)->i = v->boolean; break;
        case JSON_NULL: add(r, key, LOGV_NULL); break;
        default:
            return errf(err, errlen, "%s:%d:%d: \"%s\": expected a number, string or null", name,
                        v->line, v->col, key);
        }
    }
    return true;
}

bool trainlog_state_parse(TrainerState *st, const char *text, size_t len, const char *name,
                          char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    JsonDoc *doc = json_parse(text, len, name, err, errlen);
    if (!doc) return false;
    const Json *root = json_root(doc);
    bool ok = root->type == JSON_OBJECT ||
              errf(err, errlen, "%s: expected a JSON object (trainer_state.json)", name);
    ok = ok && get_num(root, "epoch", &st->epoch, name, err, errlen) &&
         get_int(root, "global_step", &st->global_step, name, err, errlen) &&
         get_int(root, "max_steps", &st->max_steps, name, err, errlen) &&
         get_int(root, "logging_steps", &st->logging_steps, name, err, errlen) &&
         get_int(root, "eval_steps", &st->eval_steps, name, err, errlen) &&
         get_int(root, "save_steps", &st->save_steps, name, err, errlen) &&
         get_int(root, "train_batch_size", &st->train_batch_size, name, err, errlen) &&
         get_int(root, "num_train_epochs", &st->num_train_epochs, name, err, errlen) &&
         get_int(root, "num_input_tokens_seen", &st->num_input_tokens_seen, name, err, errlen) &&
         get_num(root, "total_flos", &st->total_flos, name, err, errlen);
    const Json *hist = ok ? json_get(root, "log_history") : NULL;
    if (ok && (!hist || hist->type != JSON_ARRAY))
        ok = errf(err, errlen, "%s: \"log_history\" should be a list", name);
    for (size_t i = 0; ok && i < hist->arr.n; i++) {
        LogRec r = {0};
        ok = parse_rec(hist->arr.items[i], &r, name, err, errlen);
        if (ok) trainlog_state_append(st, &r);
        logrec_free(&r);
    }
    if (ok) {
        const Json *args = json_get(json_get(json_get(root, "stateful_callbacks"), "TrainerControl"), "args");
        bool stop = false;
        if (json_as_bool(json_get(args, "should_training_stop"), &stop)) st->should_training_stop = stop;
    }
    json_free(doc);
    if (!ok) trainlog_state_free(st);
    return ok;
}

// --- LLaMA-Factory's trainer_log.jsonl

void trainlog_init(TrainLog *tl, const char *output_dir, int64_t max_steps, double now,
                   FILE *progress) {
    memset(tl, 0, sizeof *tl);
    tl->output_dir = xstrdup(output_dir ? output_dir : "");
    tl->max_steps = max_steps;
    tl->start_time = now;
    tl->progress = progress;
    tl->tty = progress && isatty(fileno(progress));
}

void trainlog_free(TrainLog *tl) {
    free(tl->output_dir);
    memset(tl, 0, sizeof *tl);
}

static void copy_key(LogRec *dst, const LogRec *src, const char *from, const char *to) {
    const LogItem *it = src ? logrec_get(src, from) : NULL;
    if (!it || it->kind == LOGV_NULL) return;
    LogItem *d = add(dst, to, it->kind);
    d->i = it->i;
    d->f = it->f;
    d->s = it->s ? xstrdup(it->s) : NULL;
}

void trainlog_lf_line(const TrainLog *tl, const TrainerState *st, double now, StrBuf *out) {
    const LogRec *last = st->n_log ? &st->log_history[st->n_log - 1] : NULL;
    int64_t cur = st->global_step, max = tl->max_steps;
    double elapsed = now - tl->start_time;
    double avg = cur != 0 ? elapsed / (double)cur : 0;
    char el[48], rem[48];
    trainlog_timedelta(elapsed, el);
    trainlog_timedelta((double)(max - cur) * avg, rem);
    LogRec r = {0};
    logrec_int(&r, "current_steps", cur);
    logrec_int(&r, "total_steps", max);
    copy_key(&r, last, "loss", "loss");
    copy_key(&r, last, "eval_loss", "eval_loss");
    copy_key(&r, last, "predict_loss", "predict_loss");
    copy_key(&r, last, "reward", "reward");
    copy_key(&r, last, "rewards/accuracies", "accuracy");
    copy_key(&r, last, "learning_rate", "lr");
    copy_key(&r, last, "epoch", "epoch");
    if (max != 0) logrec_float(&r, "percentage", trainlog_py_round((double)cur / (double)max * 100, 2));
    else logrec_int(&r, "percentage", 100);
    logrec_str(&r, "elapsed_time", el);
    logrec_str(&r, "remaining_time", rem);
    if (st->num_input_tokens_seen) {
        logrec_float(&r, "throughput", trainlog_py_round((double)st->num_input_tokens_seen / elapsed, 2));
        logrec_int(&r, "total_tokens", st->num_input_tokens_seen);
    }
    trainlog_dumps(&r, out);
    logrec_free(&r);
}

bool trainlog_on_log(TrainLog *tl, const TrainerState *st, double now, StrBuf *line, char *err,
                     size_t errlen) {
    StrBuf b = {0};
    trainlog_lf_line(tl, st, now, &b);
    sb_puts(&b, "\n");
    bool ok = true;
    if (tl->output_dir[0]) {
        char *path = util_path_join(tl->output_dir, "trainer_log.jsonl");
        FILE *f = fopen(path, "a");
        if (!f || fwrite(b.data, 1, b.len, f) != b.len || fflush(f) != 0)
            ok = errf(err, errlen, "%s: cannot append: %s", path, strerror(errno));
        if (f) fclose(f);
        free(path);
    }
    if (line) sb_append(line, b.data, b.len);
    sb_free(&b);
    return ok;
}

bool trainlog_resume_jsonl(const char *output_dir, int64_t global_step, char *err, size_t errlen) {
    char *path = util_path_join(output_dir, "trainer_log.jsonl");
    bool ok = true;
    if (util_is_file(path)) {
        size_t len;
        char *text = util_read_file(path, &len, err, errlen);
        ok = text != NULL;
        StrBuf keep = {0};
        int line_no = 0;
        for (char *line = text; ok && line && *line;) {
            char *nl = strchr(line, '\n');
            size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
            line_no++;
            JsonDoc *d = json_parse_at(line, nl ? n - 1 : n, path, line_no, err, errlen);
            int64_t step;
            if (!d || !json_as_int(json_get(json_root(d), "current_steps"), &step))
                ok = d ? errf(err, errlen, "%s:%d: no current_steps", path, line_no) : false;
            else if (step <= global_step)
                sb_append(&keep, line, n);
            json_free(d);
            line = nl ? nl + 1 : NULL;
        }
        if (ok) ok = util_write_file_atomic(path, keep.data ? keep.data : "", keep.len, 0644, err, errlen);
        sb_free(&keep);
        free(text);
    }
    free(path);
    return ok;
}

void trainlog_train_entry(LogRec *e, double loss, double grad_norm, double lr, double epoch,
                          int64_t step) {
    logrec_float(e, "loss", loss);
    if (!isnan(grad_norm)) logrec_float(e, "grad_norm", grad_norm);
    logrec_float(e, "learning_rate", lr);
    logrec_float(e, "epoch", epoch);
    logrec_int(e, "step", step);
}

void trainlog_train_metrics(LogRec *m, double runtime, double num_samples, int64_t num_steps,
                            double total_flos, double train_loss) {
    logrec_float(m, "train_runtime", trainlog_py_round(runtime, 4));
    if (runtime != 0) {
        logrec_float(m, "train_samples_per_second", trainlog_py_round(num_samples / runtime, 3));
        logrec_float(m, "train_steps_per_second", trainlog_py_round((double)num_steps / runtime, 3));
    }
    logrec_float(m, "total_flos", total_flos);
    logrec_float(m, "train_loss", train_loss);
}

void trainlog_eval_metrics(LogRec *m, double eval_loss, double runtime, int64_t num_samples,
                           int64_t total_batch) {
    logrec_float(m, "eval_loss", eval_loss);
    logrec_float(m, "eval_runtime", trainlog_py_round(runtime, 4));
    if (runtime != 0) {
        int64_t steps = (num_samples + total_batch - 1) / total_batch;
        logrec_float(m, "eval_samples_per_second", trainlog_py_round((double)num_samples / runtime, 3));
        logrec_float(m, "eval_steps_per_second", trainlog_py_round((double)steps / runtime, 3));
    }
}

/* metrics_format: one value as log_metrics prints it. */
static void metric_text(const LogItem *it, char *buf, size_t n) {
    if (strstr(it->key, "_runtime") && (it->kind == LOGV_FLOAT || it->kind == LOGV_INT)) {
        double secs = it->kind == LOGV_FLOAT ? it->f : (double)it->i;
        char td[48];
        trainlog_timedelta(secs, td);
        int msec = (int)(fabs(secs - trunc(secs)) * 100);
        snprintf(buf, n, "%s.%02d", td, msec);
    } else if (strcmp(it->key, "total_flos") == 0 && (it->kind == LOGV_FLOAT || it->kind == LOGV_INT)) {
        int64_t v = it->kind == LOGV_FLOAT ? (int64_t)it->f : it->i;
        snprintf(buf, n, "%lldGF", (long long)(v >> 30));
    } else if (it->kind == LOGV_FLOAT) {
        trainlog_py_repr(trainlog_py_round(it->f, 4), buf);
    } else if (it->kind == LOGV_INT) {
        snprintf(buf, n, "%lld", (long long)it->i);
    } else {
        snprintf(buf, n, "%s", it->kind == LOGV_STR ? it->s : "None");
    }
}

void trainlog_metrics_text(const char *split, const LogRec *m, StrBuf *out) {
    sb_printf(out, "***** %s metrics *****\n", split);
    if (m->n == 0) return;
    LogItem *sorted = xmalloc((size_t)m->n * sizeof *sorted);
    memcpy(sorted, m->items, (size_t)m->n * sizeof *sorted);
    qsort(sorted, (size_t)m->n, sizeof *sorted, cmp_item);
    int kw = 0, vw = 0;
    char buf[96];
    for (int i = 0; i < m->n; i++) {
        metric_text(&sorted[i], buf, sizeof buf);
        int kl = (int)strlen(sorted[i].key), vl = (int)strlen(buf);
        kw = kl > kw ? kl : kw;
        vw = vl > vw ? vl : vw;
    }
    for (int i = 0; i < m->n; i++) {
        metric_text(&sorted[i], buf, sizeof buf);
        sb_printf(out, "  %-*s = %*s\n", kw, sorted[i].key, vw, buf);
    }
    free(sorted);
}

bool trainlog_save_state(const char *output_dir, const TrainerState *st, char *err, size_t errlen) {
    StrBuf b = {0};
    trainlog_state_json(st, &b);
    char *p = util_path_join(output_dir, "trainer_state.json");
    bool ok = util_write_file_atomic(p, b.data, b.len, 0644, err, errlen);
    free(p);
    sb_free(&b);
    return ok;
}

bool trainlog_save_metrics(const char *output_dir, const char *split, const LogRec *metrics,
                           char *err, size_t errlen) {
    char *name = xprintf("%s_results.json", split);
    char *path = util_path_join(output_dir, name);
    char *all_path = util_path_join(output_dir, "all_results.json");
    StrBuf b = {0};
    trainlog_dumps_indent(metrics, 4, 0, &b);
    bool ok = util_write_file_atomic(path, b.data, b.len, 0644, err, errlen);
    LogRec all = {0};
    if (ok && util_is_file(all_path)) {
        size_t len;
        char *text = util_read_file(all_path, &len, err, errlen);
        JsonDoc *doc = text ? json_parse(text, len, all_path, err, errlen) : NULL;
        ok = doc && parse_rec(json_root(doc), &all, all_path, err, errlen);
        json_free(doc);
        free(text);
    }
    if (ok) {
        logrec_copy(&all, metrics);
        b.len = 0;
        trainlog_dumps_indent(&all, 4, 0, &b);
        ok = util_write_file_atomic(all_path, b.data, b.len, 0644, err, errlen);
    }
    logrec_free(&all);
    sb_free(&b);
    free(name);
    free(path);
    free(all_path);
    return ok;
}

// --- the progress line

void trainlog_progress_text(const TrainLog *tl, int64_t step, double loss, double lr,
                            double grad_norm, double tokens_per_s, double now, StrBuf *out) {
    double elapsed = now - tl->start_time;
    double left = step > 0 ? (double)(tl->max_steps - step) * elapsed / (double)step : 0;
    char el[48], rem[48];
    trainlog_timedelta(elapsed, el);
    trainlog_timedelta(left, rem);
    int pct = tl->max_steps > 0 ? (int)(100 * step / tl->max_steps) : 100;
    sb_printf(out, "step %lld/%lld (%d%%) | loss %.4f | lr %.2e", (long long)step,
              (long long)tl->max_steps, pct, loss, lr);
    if (!isnan(grad_norm)) sb_printf(out, " | grad %.3f", grad_norm);
    if (tokens_per_s > 0) sb_printf(out, " | %.0f tok/s", tokens_per_s);
    sb_printf(out, " | %s elapsed, %s left", el, rem);
}

void trainlog_progress(TrainLog *tl, int64_t step, double loss, double lr, double grad_norm,
                       double tokens_per_s, double now) {
    if (!tl->progress) return;
    StrBuf b = {0};
    trainlog_progress_text(tl, step, loss, lr, grad_norm, tokens_per_s, now, &b);
    if (tl->tty) {
        fprintf(tl->progress, "\r%s\033[K", b.data);
        tl->line_len = (int)b.len;
    } else {
        fprintf(tl->progress, "%s\n", b.data);
    }
    fflush(tl->progress);
    sb_free(&b);
}

void trainlog_progress_done(TrainLog *tl) {
    if (tl->progress && tl->tty && tl->line_len) {
        fputc('\n', tl->progress);
        fflush(tl->progress);
    }
    tl->line_len = 0;
}
