/* data_info.c - dataset_info.json entries and the files they name, as LLaMA-Factory's
 * data/parser.py (DatasetAttr.join) and loader.py (_load_single_dataset's file listing) read them,
 * and the checks LF makes before converting: the stage fits the dataset, the columns exist. */
#include "data_internal.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* Levenshtein distance, for "did you mean" */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 99;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* The closest of names to s, if close enough to be a typo. */
static const char *closest(const char *s, const char *const *names, size_t n) {
    const char *best = NULL;
    size_t bd = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(s, names[i]);
        if (d < bd) bd = d, best = names[i];
    }
    size_t lim = strlen(s) / 3 + 1;
    return bd <= (lim < 3 ? lim : 3) ? best : NULL;
}

const char *data_did_you_mean(char *buf, size_t len, const char *s, const char *const *names, size_t n) {
    const char *c = closest(s, names, n);
    if (c) snprintf(buf, len, "; did you mean '%s'?", c);
    else buf[0] = 0;
    return buf;
}

/* Reads one {"a": "x", ...} of column or tag names into the attr (LF: when the object is given,
 * every name it does not set becomes None). */
static bool read_names(const Json *obj, const char *what, const char *const *names, const char **slots[],
                       size_t n, const char *info_path, const char *ds, char *err, size_t errlen) {
    if (obj->type != JSON_OBJECT)
        return errf(err, errlen, "%s:%d:%d: dataset '%s': %s must be an object of names", info_path, obj->line,
                    obj->col, ds, what);
    for (size_t i = 0; i < n; i++) *slots[i] = NULL;
    for (size_t k = 0; k < obj->obj.n; k++) {
        const char *key = obj->obj.keys[k];
        const Json *v = obj->obj.vals[k];
        size_t i = 0;
        while (i < n && strcmp(names[i], key) != 0) i++;
        char hint[128];
        if (i == n)
            return errf(err, errlen, "%s:%d:%d: dataset '%s': unknown %s key '%s'%s", info_path, v->line, v->col,
                        ds, what, key, data_did_you_mean(hint, sizeof hint, key, names, n));
        if (v->type == JSON_NULL) continue;
        if (v->type != JSON_STRING)
            return errf(err, errlen, "%s:%d:%d: dataset '%s': %s.%s must be a string (a column name), not %s",
                        info_path, v->line, v->col, ds, what, key, json_type_name(v->type));
        *slots[i] = v->str.s;
    }
    return true;
}

bool data_attr_parse(const Json *info, const char *name, const char *info_path, DataAttr *a, char *err,
                       size_t errlen) {
    const Json *e = json_get(info, name);
    if (!e) {
        const char **names = xmalloc((info->obj.n + 1) * sizeof *names);
        for (size_t i = 0; i < info->obj.n; i++) names[i] = info->obj.keys[i];
        char hint[256];
        data_did_you_mean(hint, sizeof hint, name, names, info->obj.n);
        free(names);
        return errf(err, errlen, "%s: undefined dataset '%s'%s (datasets are the keys of this file)", info_path,
                    name, hint);
    }
    if (e->type != JSON_OBJECT)
        return errf(err, errlen, "%s:%d:%d: dataset '%s' must be an object with a file_name", info_path, e->line,
                    e->col, name);
    memset(a, 0, sizeof *a);
    a->name = name;
    for (size_t k = 0; k < e->obj.n; k++) {
        const char *key = e->obj.keys[k];
        const Json *v = e->obj.vals[k];
        if (!strcmp(key, "hf_hub_url") || !strcmp(key, "ms_hub_url") || !strcmp(key, "om_hub_url") ||
            !strcmp(key, "script_url") || !strcmp(key, "cloud_file_name"))
            return errf(err, errlen, "%s:%d:%d: dataset '%s' is loaded from %s; llfc reads only local files: "
                        "download it into dataset_dir and name it with file_name", info_path, v->line, v->col,
                        name, !strcmp(key, "script_url") ? "a loading script" :
                        !strcmp(key, "cloud_file_name") ? "cloud storage" : "a dataset hub");
        /* other keys (descriptions and such) are ignored, as LF does */
    }
    const Json *v;
    v = json_get(e, "file_name");
    if (!v || v->type != JSON_STRING || !v->str.len)
        return errf(err, errlen, "%s:%d:%d: dataset '%s' needs \"file_name\": a file or folder in dataset_dir",
                    info_path, v ? v->line : e->line, v ? v->col : e->col, name);
    a->file_name = v->str.s;
    a->formatting = FMT_ALPACA;
    if ((v = json_get(e, "formatting")) && v->type != JSON_NULL) {
        const char *f = json_as_str(v);
        if (f && !strcmp(f, "alpaca")) a->formatting = FMT_ALPACA;
        else if (f && !strcmp(f, "sharegpt")) a->formatting = FMT_SHAREGPT;
        else if (f && !strcmp(f, "openai")) a->formatting = FMT_OPENAI;
        else
            return errf(err, errlen, "%s:%d:%d: dataset '%s': formatting must be alpaca, sharegpt or openai",
                        info_path, v->line, v->col, name);
    }
    if ((v = json_get(e, "ranking")) && v->type != JSON_NULL && !json_as_bool(v, &a->ranking))
        return errf(err, errlen, "%s:%d:%d: dataset '%s': ranking must be true or false", info_path, v->line,
                    v->col, name);
    if ((v = json_get(e, "subset")) && v->type != JSON_NULL)
        return errf(err, errlen, "%s:%d:%d: dataset '%s': subset names a configuration of a hub dataset; "
                    "a local file has none (remove it)", info_path, v->line, v->col, name);
    if ((v = json_get(e, "split")) && v->type != JSON_NULL && (!json_as_str(v) || strcmp(v->str.s, "train")))
        return errf(err, errlen, "%s:%d:%d: dataset '%s': split of a local file can only be \"train\" "
                    "(Hugging Face datasets names a file's records so)", info_path, v->line, v->col, name);
    a->num_samples = -1;
    if ((v = json_get(e, "num_samples")) && v->type != JSON_NULL &&
        (!json_as_int(v, &a->num_samples) || a->num_samples < 0))
        return errf(err, errlen, "%s:%d:%d: dataset '%s': num_samples must be a whole number >= 0", info_path,
                    v->line, v->col, name);
    a->prompt = "instruction", a->query = "input", a->response = "output", a->messages = "conversations";
    a->role_tag = "from", a->content_tag = "value", a->user_tag = "human", a->assistant_tag = "gpt";
    a->observation_tag = "observation", a->function_tag = "function_call", a->system_tag = "system";
#define NAME(n) #n,
#define SLOT(n) &a->n,
    static const char *const col_names[] = {DATA_COLUMNS(NAME)};
    static const char *const tag_names[] = {DATA_TAGS(NAME)};
    const char **col_slots[] = {DATA_COLUMNS(SLOT)};
    const char **tag_slots[] = {DATA_TAGS(SLOT)};
#undef NAME
#undef SLOT
    a->columns = json_get(e, "columns");
    if ((v = json_get(e, "columns")) &&
        !read_names(v, "columns", col_names, col_slots, sizeof col_names / sizeof *col_names, info_path, name, err,
                    errlen))
        return false;
    if ((v = json_get(e, "tags")) &&
        !read_names(v, "tags", tag_names, tag_slots, sizeof tag_names / sizeof *tag_names, info_path, name, err,
                    errlen))
        return false;
    if (a->images || a->videos || a->audios)
        return errf(err, errlen, "%s:%d:%d: dataset '%s' has %s columns: multimodal data is not supported yet "
                    "by llfc (text only)", info_path, e->line, e->col, name,
                    a->images ? "images" : a->videos ? "videos" : "audios");
    return true;
}

// --- files of a dataset (loader.py: a file, or every file of a folder, of one type)

static bool file_type(const char *path, DataFileType *t) {
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return false;
    dot++;
    if (!strcmp(dot, "json") || !strcmp(dot, "jsonl")) *t = DATA_FMT_JSON;
    else if (!strcmp(dot, "csv")) *t = DATA_FMT_CSV;
    else if (!strcmp(dot, "tsv")) *t = DATA_FMT_TSV;
    else if (!strcmp(dot, "txt")) *t = DATA_FMT_TEXT;
    else return false;
    return true;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The dataset's files, sorted by name for folders (LF takes os.listdir's order, which the file
 * system decides; llfc sorts so every machine reads the same order). Hidden files are skipped. */
bool data_attr_files(const char *dir, const DataAttr *a, char ***out, size_t *n_out, DataFileType *type,
                       char *err, size_t errlen) {
    /* os.path.join: an absolute file_name stands alone */
    char *path = a->file_name[0] == '/' ? xstrdup(a->file_name) : util_path_join(dir, a->file_name);
    char **files = NULL;
    size_t n = 0;
    if (util_is_dir(path)) {
        DIR *d = opendir(path);
        if (!d) {
            errf(err, errlen, "%s: cannot open the folder of dataset '%s'", path, a->name);
            free(path);
            return false;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char *p = util_path_join(path, de->d_name);
            if (!util_is_file(p)) {
                free(p);
                continue;
            }
            files = xrealloc(files, (n + 1) * sizeof *files);
            files[n++] = p;
        }
        closedir(d);
        qsort(files, n, sizeof *files, cmp_str);
        if (!n) {
            errf(err, errlen, "%s: the folder of dataset '%s' has no data files", path, a->name);
            free(path);
            free(files);
            return false;
        }
    } else if (util_is_file(path)) {
        files = xmalloc(sizeof *files);
        files[n++] = xstrdup(path);
    } else {
        errf(err, errlen, "%s: file of dataset '%s' not found (file_name is relative to dataset_dir %s)", path,
             a->name, dir);
        free(path);
        return false;
    }
    free(path);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        DataFileType t;
        const char *dot = strrchr(files[i], '.');
        if (dot && (!strcmp(dot, ".parquet") || !strcmp(dot, ".arrow")))
            ok = errf(err, errlen, "%s: %s files are not supported yet by llfc; convert them to JSON Lines",
                      files[i], dot + 1);
        else if (!file_type(files[i], &t))
            ok = errf(err, errlen, "%s: unknown data file type; llfc reads .json, .jsonl, .csv, .tsv and .txt",
                      files[i]);
        else if (i == 0) *type = t;
        else if (t != *type)
            ok = errf(err, errlen, "%s: the files of dataset '%s' must all be of one type (the first is %s)",
                      files[i], a->name, files[0]);
    }
    if (!ok) {
        for (size_t i = 0; i < n; i++) free(files[i]);
        free(files);
        return false;
    }
    *out = files;
    *n_out = n;
    return true;
}

// --- checks before loading (loader.py)

bool data_attr_check_stage(DataStage stage, const DataAttr *a, char *err, size_t errlen) {
    bool pairwise = stage == DATA_STAGE_RM || stage == DATA_STAGE_DPO;
    if (pairwise && !a->ranking)
        return errf(err, errlen, "dataset '%s' is not a ranking dataset; stage %s needs pairs of answers "
                    "(\"ranking\": true with chosen and rejected)", a->name, data_stage_name(stage));
    if (!pairwise && a->ranking)
        return errf(err, errlen, "dataset '%s' is a ranking dataset (chosen/rejected); it is for stage rm or "
                    "dpo, not %s", a->name, data_stage_name(stage));
    if (stage == DATA_STAGE_KTO && !a->kto_tag)
        return errf(err, errlen, "dataset '%s' has no kto_tag column; stage kto needs one (true for a "
                    "desirable answer, false for an undesirable one)", a->name);
    if (stage != DATA_STAGE_KTO && a->kto_tag)
        return errf(err, errlen, "dataset '%s' has a kto_tag column; it is for stage kto, not %s", a->name,
                    data_stage_name(stage));
    return true;
}

/* LF indexes these columns of every record; a name no record has is a KeyError there. */
bool data_attr_check_columns(const DataAttr *a, const DataFile *files, size_t n_files, char *err,
                             size_t errlen) {
    const char *need[16], *what[16];
    size_t n = 0;
#define NEED(c)                                                                                              \
    if (a->c) need[n] = a->c, what[n++] = #c;
    if (a->formatting == FMT_ALPACA) {
        NEED(prompt) NEED(query) NEED(response) NEED(history) NEED(system) NEED(tools)
    } else {
        NEED(messages)
        if (a->formatting == FMT_SHAREGPT) {
            NEED(system) NEED(tools)
        }
    }
    NEED(kto_tag)
    if (a->ranking) {
        NEED(chosen) NEED(rejected)
    }
#undef NEED
    for (size_t k = 0; k < n; k++) {
        bool found = false;
        for (size_t f = 0; f < n_files && !found; f++)
            for (size_t r = 0; r < files[f].n_recs && !found; r++) found = json_get(files[f].recs[r].v, need[k]);
        if (found) continue;
        /* the columns the data has, for the message */
        const char *have[64];
        size_t nh = 0;
        for (size_t f = 0; f < n_files; f++)
            for (size_t r = 0; r < files[f].n_recs && r < 100; r++) {
                const Json *o = files[f].recs[r].v;
                for (size_t i = 0; i < o->obj.n; i++) {
                    size_t j = 0;
                    while (j < nh && strcmp(have[j], o->obj.keys[i])) j++;
                    if (j == nh && nh < 64) have[nh++] = o->obj.keys[i];
                }
            }
        if (!nh) continue; /* no records at all: nothing to index */
        StrBuf list = {0};
        for (size_t j = 0; j < nh; j++) sb_printf(&list, "%s'%s'", j ? ", " : "", have[j]);
        char hint[128];
        data_did_you_mean(hint, sizeof hint, need[k], have, nh);
        errf(err, errlen, "%s: column '%s' (columns.%s of dataset '%s'%s) is in no record; the records have %s%s",
             files[0].path, need[k], what[k], a->name,
             !json_get(a->columns, what[k]) ? ", a default when \"columns\" does not set it" : "",
             list.data, hint);
        sb_free(&list);
        return false;
    }
    return true;
}
