/* recipe.c - read, type, default and check a YAML recipe (see recipe.h for the key table).
 *
 *   recipe_parse
 *     load_yaml        libyaml document -> top-level mapping, duplicate keys, syntax errors
 *     set_from_node    one key: llfc key -> convert by type; LLaMA-Factory key -> "not yet";
 *                      anything else -> unknown, with "did you mean"
 *     apply_override   `key=value`: the value is parsed as YAML and converted the same way
 *     set_defaults     every key not given takes the table's default (parsed the same way)
 *     check_recipe     cross-key rules, following LLaMA-Factory's parser
 */
#include "recipe.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "json.h"

#define KEY_ENTRY(name, type, group, def, min, max, choices, later, flags, help) \
    {#name, type, group, def, min, max, choices, later, flags, help},
const RecipeKey recipe_keys[RK_COUNT] = {RECIPE_KEYS(KEY_ENTRY)};
#undef KEY_ENTRY

// --- diagnostics

typedef struct {
    const char *name; /* file name or "argument 3" */
    const char *text; /* source text, for the caret line; NULL for none */
    size_t len;
    bool is_arg;      /* positions are within one command-line argument */
} Source;

typedef struct {
    Recipe *r;
    Diags *d;
    const Source *src;  /* where the value being read comes from */
    const Source *file; /* the recipe file */
    int purpose;
    bool given[RK_COUNT]; /* set by the file or an argument, not by default */
} Ctx;

/* Print the source line that holds (line, col) with a caret under col, chibicc-style. */
static void caret_line(StrBuf *out, const Source *src, int line, int col) {
    if (!src || !src->text || line < 1) return;
    const char *p = src->text, *end = src->text + src->len;
    for (int l = 1; l < line && p < end; p++)
        if (*p == '\n') l++;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    sb_printf(out, "    %.*s\n    %*s^\n", (int)(eol - p), p, col > 1 ? col - 1 : 0, "");
}

static void vdiag(Diags *d, const Source *src, int line, int col, const char *level,
                  const char *fmt, va_list ap) {
    if (!src) sb_printf(&d->text, "%s: ", "llfc");
    else if (src->is_arg) sb_printf(&d->text, "%s: ", src->name);
    else sb_printf(&d->text, "%s:%d:%d: ", src->name, line, col);
    sb_printf(&d->text, "%s: ", level);
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    sb_printf(&d->text, "%s\n", buf);
    if (src && !src->is_arg && strcmp(level, "note") != 0) caret_line(&d->text, src, line, col);
    if (!strcmp(level, "error")) d->errors++;
    if (!strcmp(level, "warning")) d->warnings++;
}

static void diag_pos(Diags *d, const Source *src, int line, int col, const char *level,
                     const char *fmt, ...) PRINTF_LIKE(6, 7);
static void diag_pos(Diags *d, const Source *src, int line, int col, const char *level,
                     const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdiag(d, src, line, col, level, fmt, ap);
    va_end(ap);
}

static void diag_at(Ctx *c, const yaml_node_t *n, const char *level, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
static void diag_at(Ctx *c, const yaml_node_t *n, const char *level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int line = n ? (int)n->start_mark.line + 1 : 1, col = n ? (int)n->start_mark.column + 1 : 1;
    vdiag(c->d, c->src, line, col, level, fmt, ap);
    va_end(ap);
}

/* A message about a key, placed where its value came from. */
static void vdiag_key(const Recipe *r, RecipeKeyId k, Diags *d, const char *level, const char *fmt,
                      va_list ap) {
    const Origin *o = &r->origin[k];
    bool placed = o->kind == ORIGIN_FILE || o->kind == ORIGIN_ARG;
    sb_printf(&d->text, "%s: %s: ", placed ? o->where : r->source_name, level);
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    sb_printf(&d->text, "%s\n", buf);
    if (!strcmp(level, "error")) d->errors++;
    if (!strcmp(level, "warning")) d->warnings++;
}

void recipe_diag(const Recipe *r, RecipeKeyId k, Diags *d, const char *level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdiag_key(r, k, d, level, fmt, ap);
    va_end(ap);
}

static void diag_key(Ctx *c, RecipeKeyId k, const char *level, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
static void diag_key(Ctx *c, RecipeKeyId k, const char *level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdiag_key(c->r, k, c->d, level, fmt, ap);
    va_end(ap);
}

void diags_free(Diags *d) { sb_free(&d->text); }

// --- did you mean

/* Optimal string alignment distance (Damerau-Levenshtein with adjacent swaps). */
static int edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 64 || m > 64) return 99;
    int dist[65][65];
    for (size_t i = 0; i <= n; i++) dist[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) dist[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = dist[i - 1][j] + 1;
            if (dist[i][j - 1] + 1 < best) best = dist[i][j - 1] + 1;
            if (dist[i - 1][j - 1] + cost < best) best = dist[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                dist[i - 2][j - 2] + 1 < best)
                best = dist[i - 2][j - 2] + 1;
            dist[i][j] = best;
        }
    return dist[n][m];
}

static int close_enough(const char *name) {
    int n = (int)strlen(name) / 3;
    return n < 1 ? 1 : n > 3 ? 3 : n;
}

const char *recipe_suggest(const char *name) {
    const char *best = NULL;
    int best_d = close_enough(name) + 1;
    for (int k = 0; k < RK_COUNT; k++) {
        int dd = edit_distance(name, recipe_keys[k].name);
        if (dd < best_d) best_d = dd, best = recipe_keys[k].name;
    }
    for (size_t k = 0; k < recipe_lf_key_count; k++) {
        int dd = edit_distance(name, recipe_lf_keys[k].name);
        if (dd < best_d) best_d = dd, best = recipe_lf_keys[k].name;
    }
    return best;
}

/* The closest of '|'-separated choices, copied into out; false if none is close. */
static bool suggest_choice(const char *value, const char *choices, char *out, size_t outlen) {
    int best_d = close_enough(value) + 1;
    bool found = false;
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        char item[128];
        snprintf(item, sizeof item, "%.*s", (int)n, p);
        int dd = edit_distance(value, item);
        if (dd < best_d) best_d = dd, found = true, snprintf(out, outlen, "%s", item);
        p = bar ? bar + 1 : p + n;
    }
    return found;
}

static bool in_choices(const char *value, const char *choices) {
    size_t n = strlen(value);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t m = bar ? (size_t)(bar - p) : strlen(p);
        if (m == n && !strncmp(p, value, n)) return true;
        p = bar ? bar + 1 : p + m;
    }
    return false;
}

int recipe_key_find(const char *name) {
    for (int k = 0; k < RK_COUNT; k++)
        if (!strcmp(recipe_keys[k].name, name)) return k;
    return -1;
}

static const RecipeLfKey *lf_key_find(const char *name) {
    for (size_t k = 0; k < recipe_lf_key_count; k++)
        if (!strcmp(recipe_lf_keys[k].name, name)) return &recipe_lf_keys[k];
    return NULL;
}

// --- scalars

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static bool is_plain(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* YAML's null: ~, null, Null, NULL, or nothing at all (plain). */
static bool is_null_node(const yaml_node_t *n) {
    if (!is_plain(n)) return false;
    const char *s = scalar(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* YAML 1.1 booleans as PyYAML (and so LLaMA-Factory) reads them. */
static int yaml_bool(const char *s) {
    static const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (!strcmp(s, yes[i])) return 1;
        if (!strcmp(s, no[i])) return 0;
    }
    return -1;
}

static bool parse_int(const char *s, int64_t *out) {
    if (!*s) return false;
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!isdigit((unsigned char)*p)) return false;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) return false;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE) return false;
    *out = v;
    return true;
}

static bool parse_float(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v)) return false;
    // strtod also reads hex floats and "infinity"; YAML numbers are decimal only
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p)) return false;
    *out = v;
    return true;
}

static const char *node_kind(const yaml_node_t *n) {
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    if (n->type == YAML_MAPPING_NODE) return "a mapping";
    return "a value";
}

// --- conversion of one value

static void free_value(RecipeType t, RecipeValue *v) {
    if (t == RT_STR || t == RT_ENUM) free(v->s);
    if (t == RT_LIST) {
        for (size_t i = 0; i < v->list.n; i++) free(v->list.items[i]);
        free(v->list.items);
    }
    if (t == RT_NUMMAP) {
        for (size_t i = 0; i < v->map.n; i++) free(v->map.keys[i]);
        free(v->map.keys);
        free(v->map.vals);
    }
    memset(v, 0, sizeof *v);
}

static bool check_range(Ctx *c, const RecipeKey *key, const yaml_node_t *n, double x) {
    if (key->min == 0 && key->max == 0) return true;
    bool lo_ok = (key->flags & RK_MIN_OPEN) ? x > key->min : x >= key->min;
    bool hi_ok = (key->flags & RK_MAX_OPEN) ? x < key->max : x <= key->max;
    if (lo_ok && hi_ok) return true;
    char lo[64], hi[64];
    snprintf(lo, sizeof lo, "%g", key->min);
    snprintf(hi, sizeof hi, "%g", key->max);
    if (key->max >= INF)
        diag_at(c, n, "error", "%s must be %s %s, got %s", key->name,
                (key->flags & RK_MIN_OPEN) ? ">" : ">=", lo, scalar(n));
    else
        diag_at(c, n, "error", "%s must be in %s%s, %s%s, got %s", key->name,
                (key->flags & RK_MIN_OPEN) ? "(" : "[", lo, hi, (key->flags & RK_MAX_OPEN) ? ")" : "]",
                scalar(n));
    return false;
}

/* A choice-checked string: supported, "not supported yet", or an error with a suggestion. */
static bool check_choice(Ctx *c, const RecipeKey *key, const yaml_node_t *n, const char *value) {
    if (!key->choices || in_choices(value, key->choices)) return true;
    if (key->later && in_choices(value, key->later)) {
        diag_at(c, n, "error", "%s: %s is a LLaMA-Factory value that llfc does not support yet "
                "(supported: %s)", key->name, value, key->choices);
        return false;
    }
    char sug[128];
    if (suggest_choice(value, key->choices, sug, sizeof sug))
        diag_at(c, n, "error", "%s: unknown value '%s'; did you mean '%s'? (expected one of: %s)",
                key->name, value, sug, key->choices);
    else
        diag_at(c, n, "error", "%s: unknown value '%s' (expected one of: %s)", key->name, value,
                key->choices);
    return false;
}

static bool add_list_item(Ctx *c, const RecipeKey *key, const yaml_node_t *n, StrList *l,
                          const char *s, size_t len) {
    while (len && isspace((unsigned char)*s)) s++, len--;
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (!len) {
        diag_at(c, n, "error", "%s: empty item in the list (check for a doubled or trailing comma)",
                key->name);
        return false;
    }
    char *item = xstrndup(s, len);
    if (!check_choice(c, key, n, item)) {
        free(item);
        return false;
    }
    l->items = xrealloc(l->items, (l->n + 1) * sizeof *l->items);
    l->items[l->n++] = item;
    return true;
}

/* A list: "a,b" (LLaMA-Factory's comma form) or a YAML sequence of scalars. */
static bool convert_list(Ctx *c, const RecipeKey *key, yaml_document_t *doc, const yaml_node_t *n,
                         StrList *out) {
    bool ok = true;
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = scalar(n);
        for (;;) {
            const char *comma = strchr(s, ',');
            size_t len = comma ? (size_t)(comma - s) : strlen(s);
            ok = add_list_item(c, key, n, out, s, len) && ok;
            if (!comma) break;
            s = comma + 1;
        }
        return ok;
    }
    if (n->type != YAML_SEQUENCE_NODE) {
        diag_at(c, n, "error", "%s expects a list (a,b or [a, b]), got a mapping", key->name);
        return false;
    }
    if (n->data.sequence.items.start == n->data.sequence.items.top) {
        diag_at(c, n, "error", "%s: empty list (use null for none)", key->name);
        return false;
    }
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(doc, *it);
        if (item->type != YAML_SCALAR_NODE) {
            diag_at(c, item, "error", "%s: list items must be plain values, got %s", key->name,
                    node_kind(item));
            ok = false;
            continue;
        }
        ok = add_list_item(c, key, item, out, scalar(item), strlen(scalar(item))) && ok;
    }
    return ok;
}

static bool convert_value(Ctx *c, const RecipeKey *key, yaml_document_t *doc, const yaml_node_t *n,
                          RecipeValue *out);

/* name -> number mapping, e.g. {min_lr_rate: 0.1}; a JSON string is read as YAML too. */
static bool convert_nummap(Ctx *c, const RecipeKey *key, yaml_document_t *doc, const yaml_node_t *n,
                           NumMap *out) {
    if (n->type != YAML_MAPPING_NODE) {
        diag_at(c, n, "error", "%s expects a mapping such as {min_lr_rate: 0.1}, got %s", key->name,
                node_kind(n));
        return false;
    }
    bool ok = true;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
        double x;
        if (kn->type != YAML_SCALAR_NODE || !check_choice(c, key, kn, scalar(kn))) {
            if (kn->type != YAML_SCALAR_NODE) diag_at(c, kn, "error", "%s: keys must be names", key->name);
            ok = false;
            continue;
        }
        if (vn->type != YAML_SCALAR_NODE || !is_plain(vn) || !parse_float(scalar(vn), &x)) {
            diag_at(c, vn, "error", "%s: %s expects a number", key->name, scalar(kn));
            ok = false;
            continue;
        }
        out->keys = xrealloc(out->keys, (out->n + 1) * sizeof *out->keys);
        out->vals = xrealloc(out->vals, (out->n + 1) * sizeof *out->vals);
        out->keys[out->n] = xstrdup(scalar(kn));
        out->vals[out->n++] = x;
    }
    return ok;
}

static bool expect_scalar(Ctx *c, const RecipeKey *key, const yaml_node_t *n, const char *what) {
    if (n->type == YAML_SCALAR_NODE && (is_plain(n) || key->type == RT_STR || key->type == RT_ENUM))
        return true;
    if (n->type == YAML_SCALAR_NODE)
        diag_at(c, n, "error", "%s expects %s, got the quoted string \"%s\" (remove the quotes)",
                key->name, what, scalar(n));
    else
        diag_at(c, n, "error", "%s expects %s, got %s", key->name, what, node_kind(n));
    return false;
}

/* Convert node n to key's type into out (n is not null). Errors go to the diagnostics. */
static bool convert_value(Ctx *c, const RecipeKey *key, yaml_document_t *doc, const yaml_node_t *n,
                          RecipeValue *out) {
    switch (key->type) {
    case RT_BOOL: {
        if (!expect_scalar(c, key, n, "true or false")) return false;
        int b = yaml_bool(scalar(n));
        if (b < 0) {
            diag_at(c, n, "error", "%s expects true or false, got '%s'", key->name, scalar(n));
            return false;
        }
        out->b = b;
        return true;
    }
    case RT_INT: {
        if (!expect_scalar(c, key, n, "an integer")) return false;
        if (!parse_int(scalar(n), &out->i)) {
            double x;
            if (parse_float(scalar(n), &x))
                diag_at(c, n, "error", "%s expects an integer, got %s", key->name, scalar(n));
            else
                diag_at(c, n, "error", "%s expects an integer, got '%s'", key->name, scalar(n));
            return false;
        }
        return check_range(c, key, n, (double)out->i);
    }
    case RT_FLOAT: {
        if (!expect_scalar(c, key, n, "a number")) return false;
        if (!parse_float(scalar(n), &out->f)) {
            diag_at(c, n, "error", "%s expects a number (such as 1.0e-4), got '%s'", key->name,
                    scalar(n));
            return false;
        }
        return check_range(c, key, n, out->f);
    }
    case RT_STR:
    case RT_ENUM:
        if (!expect_scalar(c, key, n, key->type == RT_ENUM ? "one of its values" : "a string"))
            return false;
        if (!*scalar(n)) {
            diag_at(c, n, "error", "%s: empty string (use null for none)", key->name);
            return false;
        }
        if (key->type == RT_ENUM && !check_choice(c, key, n, scalar(n))) return false;
        out->s = xstrdup(scalar(n));
        return true;
    case RT_LIST:
        if (!convert_list(c, key, doc, n, &out->list)) {
            free_value(RT_LIST, out);
            return false;
        }
        return true;
    case RT_NUMMAP:
        if (!convert_nummap(c, key, doc, n, &out->map)) {
            free_value(RT_NUMMAP, out);
            return false;
        }
        return true;
    }
    return false;
}

// --- one key

/* Does a YAML value spell one of LLaMA-Factory's '|'-separated default spellings? */
static bool equals_lf_default(yaml_document_t *doc, const yaml_node_t *n, const char *def) {
    (void)doc;
    if (!def || n->type != YAML_SCALAR_NODE) return false;
    const char *s = scalar(n);
    bool null = is_null_node(n);
    for (const char *p = def; *p;) {
        const char *bar = strchr(p, '|');
        size_t m = bar ? (size_t)(bar - p) : strlen(p);
        char d[128];
        snprintf(d, sizeof d, "%.*s", (int)m, p);
        double x, y;
        if (null && !strcmp(d, "null")) return true;
        if (!null && yaml_bool(s) >= 0 && yaml_bool(d) >= 0 && yaml_bool(s) == yaml_bool(d)) return true;
        if (!null && parse_float(s, &x) && parse_float(d, &y) && x == y) return true;
        if (!null && !strcmp(s, d)) return true;
        p = bar ? bar + 1 : p + m;
    }
    return false;
}

static void set_origin(Recipe *r, RecipeKeyId k, OriginKind kind, char *where) {
    free(r->origin[k].where);
    r->origin[k] = (Origin){kind, where};
}

static char *where_of(const Ctx *c, const yaml_node_t *n) {
    if (c->src->is_arg) return xstrdup(c->src->name);
    return xprintf("%s:%d:%d", c->src->name, (int)n->start_mark.line + 1,
                   (int)n->start_mark.column + 1);
}

/* Store key k's value from node vn (given in the file or an argument). */
static void set_value(Ctx *c, RecipeKeyId k, yaml_document_t *doc, const yaml_node_t *kn,
                      const yaml_node_t *vn, OriginKind kind) {
    const RecipeKey *key = &recipe_keys[k];
    RecipeValue v = {0};
    bool null = is_null_node(vn);
    if (null && !(key->flags & RK_NULLABLE)) {
        diag_at(c, vn, "error", "%s cannot be null (default: %s)", key->name,
                key->def ? key->def : "none, it is required");
        return;
    }
    if (!null && !convert_value(c, key, doc, vn, &v)) return;
    if (c->purpose == RECIPE_EMBEDDED && kind == ORIGIN_ARG && (key->flags & RK_BAKED)) {
        StrBuf now = {0};
        recipe_value_yaml(c->r, k, &now);
        diag_at(c, vn, "error", "%s is compiled into this trainer (%s); recompile to change it: "
                "llfc RECIPE -o TRAINER %s=...", key->name, now.data, key->name);
        sb_free(&now);
        free_value(key->type, &v);
        return;
    }
    free_value(key->type, &c->r->v[k]);
    c->r->v[k] = v;
    c->r->is_null[k] = null;
    c->given[k] = true;
    set_origin(c->r, k, kind, where_of(c, kn));
    if ((key->flags & RK_NOOP) && !null && !equals_lf_default(doc, vn, key->def))
        diag_at(c, kn, "note", "%s: %s", key->name, key->help);
}

/* A key that is not llfc's: LLaMA-Factory's (unsupported), or unknown. */
static void foreign_key(Ctx *c, yaml_document_t *doc, const yaml_node_t *kn, const yaml_node_t *vn) {
    const char *name = scalar(kn);
    const RecipeLfKey *lf = lf_key_find(name);
    if (lf && equals_lf_default(doc, vn, lf->def)) {
        diag_at(c, kn, "note", "%s: LLaMA-Factory's default value, accepted (llfc does not "
                "support other values of this key yet)", name);
        return;
    }
    if (lf) {
        const char *d = lf->def;
        if (d)
            diag_at(c, kn, "error", "%s is a LLaMA-Factory key that llfc does not support yet "
                    "(only its default, %s, is accepted); remove it to proceed", name, d);
        else
            diag_at(c, kn, "error", "%s is a LLaMA-Factory key that llfc does not support yet; "
                    "remove it to proceed", name);
        return;
    }
    const char *sug = recipe_suggest(name);
    if (sug)
        diag_at(c, kn, "error", "unknown key '%s'; did you mean '%s'?", name, sug);
    else
        diag_at(c, kn, "error", "unknown key '%s' (llfc check --keys lists every key)", name);
}

static void set_from_node(Ctx *c, yaml_document_t *doc, const yaml_node_t *kn, const yaml_node_t *vn,
                          OriginKind kind) {
    if (kn->type != YAML_SCALAR_NODE) {
        diag_at(c, kn, "error", "keys must be plain names, got %s", node_kind(kn));
        return;
    }
    int k = recipe_key_find(scalar(kn));
    if (k < 0) foreign_key(c, doc, kn, vn);
    else set_value(c, (RecipeKeyId)k, doc, kn, vn, kind);
}

// --- YAML documents

static bool load_yaml(Ctx *c, const char *text, size_t len, yaml_document_t *doc) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) util_fatal("libyaml: cannot initialise a parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    bool ok = yaml_parser_load(&parser, doc);
    if (!ok) {
        int line = (int)parser.problem_mark.line + 1, col = (int)parser.problem_mark.column + 1;
        const char *ctx = parser.context ? parser.context : "";
        diag_pos(c->d, c->src, line, col, "error", "invalid YAML: %s%s%s",
                 parser.problem ? parser.problem : "syntax error", *ctx ? " " : "", ctx);
        yaml_parser_delete(&parser);
        return false;
    }
    // a second document in the same file is almost surely a mistake ('---' in the middle)
    yaml_document_t extra;
    if (yaml_parser_load(&parser, &extra)) {
        yaml_node_t *root = yaml_document_get_root_node(&extra);
        if (root) {
            diag_at(c, root, "error", "a recipe is one YAML document; found a second one here");
            ok = false;
        }
        yaml_document_delete(&extra);
    }
    yaml_parser_delete(&parser);
    if (!ok) yaml_document_delete(doc);
    return ok;
}

/* The file: one mapping of key: value, each key once. */
static void read_file_keys(Ctx *c, const char *text, size_t len) {
    yaml_document_t doc;
    if (!load_yaml(c, text, len, &doc)) return;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        diag_pos(c->d, c->src, 1, 1, "error", "the recipe is empty (expected key: value lines)");
    } else if (root->type != YAML_MAPPING_NODE) {
        diag_at(c, root, "error", "a recipe is a mapping of key: value lines, got %s",
                node_kind(root));
    } else {
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
             p++) {
            yaml_node_t *kn = yaml_document_get_node(&doc, p->key);
            yaml_node_t *vn = yaml_document_get_node(&doc, p->value);
            bool dup = false;
            for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < p && !dup; q++) {
                yaml_node_t *prev = yaml_document_get_node(&doc, q->key);
                if (kn->type == YAML_SCALAR_NODE && prev->type == YAML_SCALAR_NODE &&
                    !strcmp(scalar(kn), scalar(prev))) {
                    diag_at(c, kn, "error", "duplicate key '%s' (first given at line %d)",
                            scalar(kn), (int)prev->start_mark.line + 1);
                    dup = true;
                }
            }
            if (!dup) set_from_node(c, &doc, kn, vn, ORIGIN_FILE);
        }
    }
    yaml_document_delete(&doc);
}

/* `key=value`: the value is YAML, so 1.0e-4, true, null, [a, b] mean what they mean in a file. */
static void apply_override(Ctx *c, const RecipeOverride *ov) {
    Source src = {ov->origin, ov->arg, strlen(ov->arg), true};
    char name[256];
    snprintf(name, sizeof name, "%s (%s)", ov->origin, ov->arg);
    src.name = name;
    const Source *saved = c->src;
    c->src = &src;
    const char *eq = strchr(ov->arg, '=');
    if (!eq || eq == ov->arg) {
        sb_printf(&c->d->text, "%s: error: expected key=value\n", name);
        c->d->errors++;
        c->src = saved;
        return;
    }
    // the key and the value as a tiny YAML document "key: value" keep one code path
    char *key = xstrndup(ov->arg, (size_t)(eq - ov->arg));
    char *text = xprintf("%s: %s", key, eq + 1);
    yaml_document_t doc;
    bool simple_key = true;
    for (const char *p = key; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_') simple_key = false;
    if (!simple_key) {
        sb_printf(&c->d->text, "%s: error: '%s' is not a key name\n", name, key);
        c->d->errors++;
    } else if (load_yaml(c, text, strlen(text), &doc)) {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        yaml_node_pair_t *p = root->data.mapping.pairs.start;
        set_from_node(c, &doc, yaml_document_get_node(&doc, p->key),
                      yaml_document_get_node(&doc, p->value), ORIGIN_ARG);
        yaml_document_delete(&doc);
    }
    free(key);
    free(text);
    c->src = saved;
}

/* Defaults are YAML text in the table, converted like any value (so they obey the same rules). */
static void set_defaults(Ctx *c) {
    for (int k = 0; k < RK_COUNT; k++) {
        const RecipeKey *key = &recipe_keys[k];
        if (c->given[k]) continue;
        if (key->flags & RK_REQUIRED) {
            diag_pos(c->d, c->file, 1, 1, "error", "missing required key '%s': %s", key->name,
                     key->help);
            continue;
        }
        c->r->is_null[k] = key->def == NULL;
        set_origin(c->r, (RecipeKeyId)k, ORIGIN_DEFAULT, xstrdup("default"));
        if (!key->def) continue;
        Source src = {"the default table", key->def, strlen(key->def), true};
        const Source *saved = c->src;
        c->src = &src;
        yaml_document_t doc;
        if (!load_yaml(c, key->def, strlen(key->def), &doc)) util_fatal("bad default for %s", key->name);
        if (!convert_value(c, key, &doc, yaml_document_get_root_node(&doc), &c->r->v[k]))
            util_fatal("default of %s does not satisfy its own checks", key->name);
        yaml_document_delete(&doc);
        c->src = saved;
    }
}

// --- cross-key checks (LLaMA-Factory's parser rules, same messages in spirit)

/* Set by the user in a way worth talking about now: in the file or an argument, and, when a
 * trainer reads its embedded recipe, only by an argument given to the trainer itself. */
static bool user_set(const Ctx *c, RecipeKeyId k) {
    if (c->purpose == RECIPE_EMBEDDED) return c->given[k] && c->r->origin[k].kind == ORIGIN_ARG &&
                                              !strncmp(c->r->origin[k].where, "trainer argument", 16);
    return c->r->origin[k].kind == ORIGIN_FILE || c->r->origin[k].kind == ORIGIN_ARG;
}

static void derive(Recipe *r, RecipeKeyId k, const char *why) {
    r->is_null[k] = false;
    set_origin(r, k, ORIGIN_DERIVED, xprintf("derived: %s", why));
}

static void check_method(Ctx *c) {
    Recipe *r = c->r;
    const char *ft = R_STR(r, finetuning_type);
    static const RecipeKeyId lora_only_warn[] = {RK_lora_rank, RK_lora_alpha, RK_lora_dropout,
                                                 RK_lora_target, RK_additional_target,
                                                 RK_loraplus_lr_embedding};
    static const RecipeKeyId freeze_only[] = {RK_freeze_trainable_layers,
                                              RK_freeze_trainable_modules, RK_freeze_extra_modules};
    if (strcmp(ft, "lora") != 0) {
        for (size_t i = 0; i < sizeof lora_only_warn / sizeof *lora_only_warn; i++)
            if (user_set(c, lora_only_warn[i]))
                diag_key(c, lora_only_warn[i], "warning", "%s has no effect with finetuning_type %s",
                         recipe_keys[lora_only_warn[i]].name, ft);
        if (R_BOOL(r, use_rslora))
            diag_key(c, RK_use_rslora, "error", "use_rslora is only valid for LoRA training");
        if (!R_NULL(r, loraplus_lr_ratio))
            diag_key(c, RK_loraplus_lr_ratio, "error", "loraplus_lr_ratio is only valid for LoRA training");
        if (!R_NULL(r, adapter_name_or_path))
            diag_key(c, RK_adapter_name_or_path, "error", "an adapter is only valid for the LoRA method");
        if (R_BOOL(r, create_new_adapter))
            diag_key(c, RK_create_new_adapter, "error", "create_new_adapter is only valid for LoRA training");
    }
    if (strcmp(ft, "freeze") != 0)
        for (size_t i = 0; i < sizeof freeze_only / sizeof *freeze_only; i++)
            if (user_set(c, freeze_only[i]))
                diag_key(c, freeze_only[i], "warning", "%s has no effect with finetuning_type %s",
                         recipe_keys[freeze_only[i]].name, ft);
    if (R_NULL(r, lora_alpha)) {
        R_INT(r, lora_alpha) = 2 * R_INT(r, lora_rank);
        derive(r, RK_lora_alpha, "2 * lora_rank");
    }
    StrList t = R_LIST(r, lora_target);
    for (size_t i = 0; i < t.n && t.n > 1; i++)
        if (!strcmp(t.items[i], "all"))
            diag_key(c, RK_lora_target, "error", "lora_target: 'all' cannot be combined with other names");
    if (R_BOOL(r, create_new_adapter) && R_NULL(r, adapter_name_or_path))
        diag_key(c, RK_create_new_adapter, "error",
                 "create_new_adapter needs adapter_name_or_path (the adapter to build on)");
    if (!R_BOOL(r, use_fast_tokenizer))
        diag_key(c, RK_use_fast_tokenizer, "error", "use_fast_tokenizer: false is not supported: llfc "
                 "has one tokenizer, identical to Hugging Face's fast tokenizer");
}

static void check_data(Ctx *c) {
    Recipe *r = c->r;
    bool sft = !strcmp(R_STR(r, stage), "sft");
    if (R_BOOL(r, neat_packing) && !sft)
        diag_key(c, RK_neat_packing, "error", "neat_packing can only be true with stage sft");
    if (R_BOOL(r, neat_packing) && R_NULL(r, packing)) {
        R_BOOL(r, packing) = true;
        derive(r, RK_packing, "neat_packing");
    } else if (R_BOOL(r, neat_packing) && !R_BOOL(r, packing)) {
        diag_key(c, RK_packing, "error", "packing: false contradicts neat_packing: true");
    }
    if (R_NULL(r, packing)) {
        R_BOOL(r, packing) = !strcmp(R_STR(r, stage), "pt");
        derive(r, RK_packing, "on for stage pt, off otherwise");
    }
    if ((R_BOOL(r, train_on_prompt) || R_BOOL(r, mask_history)) && !sft)
        diag_key(c, R_BOOL(r, train_on_prompt) ? RK_train_on_prompt : RK_mask_history, "error",
                 "train_on_prompt and mask_history can only be true with stage sft");
    if (R_BOOL(r, train_on_prompt) && R_BOOL(r, mask_history))
        diag_key(c, RK_mask_history, "error", "mask_history is incompatible with train_on_prompt");
    double val = R_FLOAT(r, val_size);
    if (val > 1e-6 && R_NULL(r, dataset))
        diag_key(c, RK_val_size, "error", "val_size needs dataset (the split is taken from it)");
    if (val > 1e-6 && !R_NULL(r, eval_dataset))
        diag_key(c, RK_val_size, "error", "give either val_size or eval_dataset, not both");
    if (val >= 1 && val != floor(val))
        diag_key(c, RK_val_size, "error", "val_size >= 1 is a number of examples and must be whole, got %g", val);
    if (!R_NULL(r, interleave_probs)) {
        StrList p = R_LIST(r, interleave_probs);
        if (!strcmp(R_STR(r, mix_strategy), "concat"))
            diag_key(c, RK_interleave_probs, "error", "interleave_probs is only valid with an "
                     "interleave mix_strategy (mix_strategy is concat)");
        if (!R_NULL(r, dataset) && p.n != R_LIST(r, dataset).n)
            diag_key(c, RK_interleave_probs, "error", "interleave_probs has %zu values for %zu datasets",
                     p.n, R_LIST(r, dataset).n);
        for (size_t i = 0; i < p.n; i++) {
            double x;
            if (!parse_float(p.items[i], &x) || x < 0 || x > 1)
                diag_key(c, RK_interleave_probs, "error",
                         "interleave_probs: '%s' is not a probability in [0, 1]", p.items[i]);
        }
    }
    if (R_BOOL(r, do_train) && R_NULL(r, dataset))
        diag_key(c, RK_do_train, "error", "do_train needs dataset: name the training data");
}

static bool has_kwarg(const Recipe *r, const char *name) {
    const NumMap *m = &r->v[RK_lr_scheduler_kwargs].map;
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->keys[i], name)) return true;
    return false;
}

static void check_train(Ctx *c) {
    Recipe *r = c->r;
    if (R_BOOL(r, bf16) && R_BOOL(r, fp16))
        diag_key(c, RK_fp16, "error", "bf16 and fp16 cannot both be true");
    if (R_INT(r, max_steps) == 0)
        diag_key(c, RK_max_steps, "error", "max_steps must be -1 (use num_train_epochs) or > 0");
    if (R_FLOAT(r, warmup_steps) > 0 && R_FLOAT(r, warmup_ratio) > 0 && user_set(c, RK_warmup_ratio))
        diag_key(c, RK_warmup_ratio, "warning", "warmup_steps is also set and takes precedence over "
                 "warmup_ratio, as in transformers");
    bool min_lr = has_kwarg(r, "min_lr"), min_rate = has_kwarg(r, "min_lr_rate");
    if (!strcmp(R_STR(r, lr_scheduler_type), "cosine_with_min_lr") && min_lr == min_rate)
        diag_key(c, RK_lr_scheduler_type, "error", "cosine_with_min_lr needs exactly one of min_lr "
                 "or min_lr_rate in lr_scheduler_kwargs, e.g. {min_lr_rate: 0.1}");
    if ((min_lr || min_rate) && strcmp(R_STR(r, lr_scheduler_type), "cosine_with_min_lr") != 0)
        diag_key(c, RK_lr_scheduler_kwargs, "error", "min_lr and min_lr_rate only apply to "
                 "lr_scheduler_type cosine_with_min_lr");
    if (has_kwarg(r, "num_cycles") && strcmp(R_STR(r, lr_scheduler_type), "cosine") != 0)
        diag_key(c, RK_lr_scheduler_kwargs, "error", "num_cycles only applies to lr_scheduler_type cosine");
    if (R_BOOL(r, disable_gradient_checkpointing) && R_BOOL(r, gradient_checkpointing))
        diag_key(c, RK_gradient_checkpointing, "error",
                 "gradient_checkpointing: true contradicts disable_gradient_checkpointing: true");
    StrList rep = R_LIST(r, report_to);
    if (rep.n > 1)
        diag_key(c, RK_report_to, "error", "report_to: 'none' cannot be combined with other names");
}

/* zero_stage: given, or deepspeed's zero_optimization.stage (the only key of a DeepSpeed
 * config llfc reads), or 0. The stage is derived once, when llfc compiles the recipe; the
 * trainer's embedded recipe carries it, so the JSON file need not travel with the trainer. */
static void check_zero(Ctx *c) {
    Recipe *r = c->r;
    if (R_NULL(r, zero_stage) && !R_NULL(r, deepspeed)) {
        char err[ERR_LEN];
        size_t len;
        char *text = util_read_file(R_STR(r, deepspeed), &len, err, sizeof err);
        JsonDoc *doc = text ? json_parse(text, len, R_STR(r, deepspeed), err, sizeof err) : NULL;
        const Json *stage = doc ? json_get(json_get(json_root(doc), "zero_optimization"), "stage") : NULL;
        int64_t v = 0;
        if (!doc) diag_key(c, RK_deepspeed, "error", "deepspeed: %s", err);
        else if (stage && (!json_as_int(stage, &v) || v < 0 || v > 3))
            diag_key(c, RK_deepspeed, "error", "deepspeed: %s: zero_optimization.stage must be 0, 1, 2 or 3",
                     R_STR(r, deepspeed));
        else {
            R_INT(r, zero_stage) = v;
            derive(r, RK_zero_stage, "zero_optimization.stage of the deepspeed config");
            diag_key(c, RK_deepspeed, "note", "deepspeed: llfc reads only zero_optimization.stage (%lld) "
                     "and shards with its own ZeRO", (long long)v);
        }
        json_free(doc);
        free(text);
    }
    if (R_NULL(r, zero_stage)) {
        R_INT(r, zero_stage) = 0;
        derive(r, RK_zero_stage, "no deepspeed config");
    }
}

static void check_eval(Ctx *c) {
    Recipe *r = c->r;
    bool evaluates = strcmp(R_STR(r, eval_strategy), "no") != 0 || R_BOOL(r, do_eval);
    if (evaluates && R_NULL(r, eval_dataset) && R_FLOAT(r, val_size) < 1e-6)
        diag_key(c, user_set(c, RK_eval_strategy) ? RK_eval_strategy : RK_do_eval, "error",
                 "evaluation needs eval_dataset or val_size > 0");
    if (R_NULL(r, eval_steps) && !strcmp(R_STR(r, eval_strategy), "steps")) {
        R_FLOAT(r, eval_steps) = R_FLOAT(r, logging_steps);
        derive(r, RK_eval_steps, "logging_steps");
    }
}

/* What the trainer cannot do yet is refused when compiling one, not when checking a recipe. */
static void check_trainer(Ctx *c) {
    Recipe *r = c->r;
    const char *stage = R_STR(r, stage);
    if (strcmp(stage, "sft") != 0 && strcmp(stage, "pt") != 0)
        diag_key(c, RK_stage, "error", "training stage %s is not supported yet (sft and pt are; "
                 "`llfc check` accepts the recipe)", stage);
    if (!R_BOOL(r, do_train) && !R_BOOL(r, do_eval))
        diag_key(c, RK_do_train, "error", "nothing to do: set do_train: true (or do_eval: true)");
}

// --- driver

static void read_embedded_origins(Ctx *c, const char *text, size_t len);

Recipe *recipe_parse(const char *name, const char *text, size_t len, const RecipeOverride *ov,
                     size_t n_ov, int purpose, Diags *d) {
    Recipe *r = xcalloc(1, sizeof *r);
    r->source_name = xstrdup(name);
    r->source_text = xstrndup(text, len);
    Source file = {name, r->source_text, len, false};
    Ctx c = {.r = r, .d = d, .src = &file, .file = &file, .purpose = purpose};
    int errors_before = d->errors;
    read_file_keys(&c, r->source_text, len);
    if (purpose == RECIPE_EMBEDDED) read_embedded_origins(&c, r->source_text, len);
    for (size_t i = 0; i < n_ov; i++) apply_override(&c, &ov[i]);
    set_defaults(&c); /* also reports every missing required key */
    if (d->errors == errors_before) {
        check_method(&c);
        check_data(&c);
        check_train(&c);
        check_zero(&c);
        check_eval(&c);
        if (purpose != RECIPE_FOR_CHECK) check_trainer(&c);
    }
    if (d->errors > errors_before) {
        recipe_free(r);
        return NULL;
    }
    return r;
}

Recipe *recipe_load(const char *path, const RecipeOverride *ov, size_t n_ov, int purpose, Diags *d) {
    char err[ERR_LEN];
    size_t len;
    char *text = util_read_file(path, &len, err, sizeof err);
    if (!text) {
        sb_printf(&d->text, "%s\n", err);
        d->errors++;
        return NULL;
    }
    Recipe *r = recipe_parse(path, text, len, ov, n_ov, purpose, d);
    free(text);
    return r;
}

void recipe_free(Recipe *r) {
    if (!r) return;
    for (int k = 0; k < RK_COUNT; k++) {
        free_value(recipe_keys[k].type, &r->v[k]);
        free(r->origin[k].where);
    }
    free(r->source_name);
    free(r->source_text);
    free(r);
}

// --- writing

/* A string that reads back as the same string in YAML without quotes. */
static bool plain_safe(const char *s) {
    if (!*s || yaml_bool(s) >= 0 || !strcmp(s, "null") || !strcmp(s, "~")) return false;
    double x;
    if (parse_float(s, &x)) return false;
    if (strchr("-?:,[]{}#&*!|>'\"%@` ", s[0])) return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_-./+", *p)) return false;
    return true;
}

static void yaml_string(StrBuf *out, const char *s) {
    if (plain_safe(s)) {
        sb_puts(out, s);
        return;
    }
    sb_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') sb_printf(out, "\\%c", *p);
        else if (*p == '\n') sb_puts(out, "\\n");
        else if (*p == '\t') sb_puts(out, "\\t");
        else if (*p < 0x20 || *p == 0x7f) sb_printf(out, "\\x%02x", *p);
        else sb_append(out, (const char *)p, 1);
    }
    sb_puts(out, "\"");
}

/* Shortest decimal that reads back as exactly x. */
static void yaml_float(StrBuf *out, double x) {
    char buf[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    sb_puts(out, buf);
    if (!strpbrk(buf, ".eE")) sb_puts(out, ".0");
}

void recipe_value_yaml(const Recipe *r, RecipeKeyId k, StrBuf *out) {
    const RecipeValue *v = &r->v[k];
    if (r->is_null[k]) {
        sb_puts(out, "null");
        return;
    }
    switch (recipe_keys[k].type) {
    case RT_BOOL: sb_puts(out, v->b ? "true" : "false"); break;
    case RT_INT: sb_printf(out, "%lld", (long long)v->i); break;
    case RT_FLOAT: yaml_float(out, v->f); break;
    case RT_STR:
    case RT_ENUM: yaml_string(out, v->s); break;
    case RT_LIST:
        sb_puts(out, "[");
        for (size_t i = 0; i < v->list.n; i++) {
            if (i) sb_puts(out, ", ");
            yaml_string(out, v->list.items[i]);
        }
        sb_puts(out, "]");
        break;
    case RT_NUMMAP:
        sb_puts(out, "{");
        for (size_t i = 0; i < v->map.n; i++) {
            sb_printf(out, "%s%s: ", i ? ", " : "", v->map.keys[i]);
            yaml_float(out, v->map.vals[i]);
        }
        sb_puts(out, "}");
        break;
    }
}

void recipe_write_yaml(const Recipe *r, StrBuf *out) {
    sb_printf(out, "# resolved recipe (llfc); source: %s\n", r->source_name);
    const char *group = "";
    for (int k = 0; k < RK_COUNT; k++) {
        if (strcmp(group, recipe_keys[k].group) != 0) {
            group = recipe_keys[k].group;
            sb_printf(out, "\n### %s\n", group);
        }
        size_t start = out->len;
        sb_printf(out, "%s: ", recipe_keys[k].name);
        recipe_value_yaml(r, (RecipeKeyId)k, out);
        int used = (int)(out->len - start);
        // origins ride along as comments; read_embedded_origins reads them back
        sb_printf(out, "%*s  # %s\n", used < 46 ? 46 - used : 0, "", r->origin[k].where);
    }
}

void recipe_write_table(const Recipe *r, StrBuf *out) {
    const char *group = "";
    for (int k = 0; k < RK_COUNT; k++) {
        if (strcmp(group, recipe_keys[k].group) != 0) {
            group = recipe_keys[k].group;
            sb_printf(out, "%s### %s\n", k ? "\n" : "", group);
        }
        StrBuf val = {0};
        recipe_value_yaml(r, (RecipeKeyId)k, &val);
        sb_printf(out, "%-32s %-30s %s\n", recipe_keys[k].name, val.data, r->origin[k].where);
        sb_free(&val);
    }
}

/* Origins of an embedded resolved recipe: the comment after each `key: value` line. */
static void read_embedded_origins(Ctx *c, const char *text, size_t len) {
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        const char *hash = NULL;
        for (const char *q = p; q + 3 < eol; q++)
            if (!memcmp(q, "  # ", 4)) hash = q; /* the last one: values may hold "  # " */
        if (colon && hash && *p != '#' && *p != ' ') {
            char *key = xstrndup(p, (size_t)(colon - p));
            int k = recipe_key_find(key);
            if (k >= 0 && c->given[k]) {
                char *where = xstrndup(hash + 4, (size_t)(eol - hash - 4));
                OriginKind kind = !strcmp(where, "default")        ? ORIGIN_DEFAULT
                                  : !strncmp(where, "derived", 7)  ? ORIGIN_DERIVED
                                  : !strncmp(where, "argument", 8) ? ORIGIN_ARG
                                                                   : ORIGIN_FILE;
                set_origin(c->r, (RecipeKeyId)k, kind, where);
            }
            free(key);
        }
        p = eol + 1;
    }
}
