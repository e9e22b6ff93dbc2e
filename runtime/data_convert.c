/* data_convert.c - one record into LLaMA-Factory's aligned form: data/converter.py's
 * AlpacaDatasetConverter, SharegptDatasetConverter and OpenAIDatasetConverter, line for line,
 * except that what LF would let through broken (an empty or odd conversation, roles out of
 * order, a wrong type that would crash its template later) is a bad record with a reason. */
#include "data_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- converting one record (converter.py)

typedef struct {
    DataBadKind kind;
    char msg[512];
} Bad;

static bool bad(Bad *b, DataBadKind kind, const char *fmt, ...) PRINTF_LIKE(3, 4);
static bool bad(Bad *b, DataBadKind kind, const char *fmt, ...) {
    b->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->msg, sizeof b->msg, fmt, ap);
    va_end(ap);
    return false;
}

/* record[col], NULL for a missing column or null (HF gives None for both) */
static const Json *col(const Json *rec, const char *name) {
    if (!name) return NULL;
    const Json *v = json_get(rec, name);
    return v && v->type != JSON_NULL ? v : NULL;
}

/* Python truthiness of a JSON value */
static bool truthy(const Json *v) {
    if (!v) return false;
    switch (v->type) {
    case JSON_NULL: return false;
    case JSON_BOOL: return v->boolean;
    case JSON_NUMBER: return v->num.f != 0;
    case JSON_STRING: return v->str.len > 0;
    case JSON_ARRAY: return v->arr.n > 0;
    case JSON_OBJECT: return v->obj.n > 0;
    }
    return false;
}

/* A text for the aligned form: a string without NUL characters. */
static bool text_of(const Json *v, const char *what, char **out, Bad *b) {
    if (!v || v->type != JSON_STRING)
        return bad(b, v ? DATA_BAD_TYPE : DATA_BAD_COLUMN, "%s must be a string, found %s", what,
                   v ? json_type_name(v->type) : "nothing (missing or null)");
    if (strlen(v->str.s) != v->str.len) return bad(b, DATA_BAD_TEXT, "%s contains a NUL character (\\u0000)", what);
    *out = xstrndup(v->str.s, v->str.len);
    return true;
}

typedef struct {
    DataMessage *m;
    size_t n, cap;
} Msgs;

static void msgs_add(Msgs *ms, DataRole role, char *content) {
    if (ms->n == ms->cap) {
        ms->cap = ms->cap ? 2 * ms->cap : 8;
        ms->m = xrealloc(ms->m, ms->cap * sizeof *ms->m);
    }
    ms->m[ms->n++] = (DataMessage){role, content};
}

static void msgs_free(Msgs *ms) {
    for (size_t i = 0; i < ms->n; i++) free(ms->m[i].content);
    free(ms->m);
    *ms = (Msgs){0};
}

void data_example_free(DataExample *e) {
    for (size_t i = 0; i < e->n_prompt; i++) free(e->prompt[i].content);
    for (size_t i = 0; i < e->n_response; i++) free(e->response[i].content);
    free(e->prompt);
    free(e->response);
    free(e->system);
    free(e->tools);
}

/* _system / _tools: NULL for LF's "" or None */
static bool opt_text(const Json *v, const char *what, char **out, Bad *b) {
    *out = NULL;
    if (!v) return true;
    if (v->type == JSON_ARRAY || v->type == JSON_OBJECT) { /* tools given as JSON, not JSON text */
        StrBuf sb = {0};
        data_json_dumps(&sb, v);
        *out = sb.data;
        return true;
    }
    if (!text_of(v, what, out, b)) return false;
    if (!**out) free(*out), *out = NULL;
    return true;
}

/* kto: the output with an empty partner, desirable first ([out, ""]) or not (["", out]) */
static void kto_response(Msgs *resp, DataRole role, char *content, bool desirable) {
    if (desirable) {
        msgs_add(resp, role, content);
        msgs_add(resp, DATA_ROLE_ASSISTANT, xstrdup(""));
    } else {
        msgs_add(resp, DATA_ROLE_ASSISTANT, xstrdup(""));
        msgs_add(resp, role, content);
    }
}

/* kto_tag: true/false makes a kto example; null a normal one (LF: isinstance(tag, bool)) */
static bool kto_of(const DataAttr *a, const Json *rec, int *tag, Bad *b) {
    *tag = -1;
    if (!a->kto_tag) return true;
    const Json *v = col(rec, a->kto_tag);
    if (!v) return true;
    if (v->type != JSON_BOOL)
        return bad(b, DATA_BAD_TYPE, "kto_tag column '%s' must be true or false, found %s", a->kto_tag,
                   json_type_name(v->type));
    *tag = v->boolean;
    return true;
}

static bool convert_alpaca(const DataAttr *a, const Json *rec, Msgs *prompt, Msgs *resp, DataExample *ex,
                           Bad *b) {
    const Json *h = col(rec, a->history);
    if (h && h->type == JSON_ARRAY) {
        for (size_t i = 0; i < h->arr.n; i++) {
            const Json *pair = h->arr.items[i];
            char what[64];
            snprintf(what, sizeof what, "history[%zu]", i);
            if (pair->type != JSON_ARRAY || pair->arr.n != 2)
                return bad(b, DATA_BAD_TYPE, "%s must be a [prompt, response] pair of strings", what);
            char *p, *r;
            if (!text_of(pair->arr.items[0], what, &p, b)) return false;
            if (!text_of(pair->arr.items[1], what, &r, b)) return free(p), false;
            msgs_add(prompt, DATA_ROLE_USER, p);
            msgs_add(prompt, DATA_ROLE_ASSISTANT, r);
        }
    } else if (h) {
        return bad(b, DATA_BAD_TYPE, "history column '%s' must be a list of [prompt, response] pairs, found %s",
                   a->history, json_type_name(h->type));
    }
    StrBuf q = {0};
    sb_append(&q, "", 0);
    const char *parts[2] = {a->prompt, a->query};
    int nq = 0;
    for (int k = 0; k < 2; k++) {
        const Json *v = col(rec, parts[k]);
        if (!truthy(v)) continue;
        char what[128], *t;
        snprintf(what, sizeof what, "column '%s'", parts[k]);
        if (!text_of(v, what, &t, b)) return sb_free(&q), false;
        if (nq++) sb_puts(&q, "\n");
        sb_puts(&q, t);
        free(t);
    }
    msgs_add(prompt, DATA_ROLE_USER, q.data);
    int tag;
    if (!kto_of(a, rec, &tag, b)) return false;
    char what[128], *t, *t2;
    if (tag >= 0) {
        snprintf(what, sizeof what, "response column '%s'", a->response ? a->response : "(none)");
        if (!text_of(col(rec, a->response), what, &t, b)) return false;
        kto_response(resp, DATA_ROLE_ASSISTANT, t, tag);
    } else if (a->ranking) {
        const Json *c = col(rec, a->chosen), *r = col(rec, a->rejected);
        snprintf(what, sizeof what, "chosen column '%s'", a->chosen ? a->chosen : "(none)");
        if (!text_of(c, what, &t, b)) return false;
        snprintf(what, sizeof what, "rejected column '%s'", a->rejected ? a->rejected : "(none)");
        if (!text_of(r, what, &t2, b)) return free(t), false;
        msgs_add(resp, DATA_ROLE_ASSISTANT, t);
        msgs_add(resp, DATA_ROLE_ASSISTANT, t2);
    } else if (col(rec, a->response)) { /* else unsupervised: no response */
        snprintf(what, sizeof what, "response column '%s'", a->response);
        if (!text_of(col(rec, a->response), what, &t, b)) return false;
        msgs_add(resp, DATA_ROLE_ASSISTANT, t);
    }
    ex->kto_tag = tag;
    snprintf(what, sizeof what, "system column '%s'", a->system ? a->system : "");
    if (!opt_text(col(rec, a->system), what, &ex->system, b)) return false;
    snprintf(what, sizeof what, "tools column '%s'", a->tools ? a->tools : "");
    return opt_text(col(rec, a->tools), what, &ex->tools, b);
}

/* the role of a tag value, or -1; system is 4 */
static int role_of(const DataAttr *a, const char *tag) {
    if (!tag) return -1;
    /* a dict: a later tag with the same value wins, as in LF's tag_mapping */
    int r = -1;
    if (a->user_tag && !strcmp(tag, a->user_tag)) r = DATA_ROLE_USER;
    if (a->assistant_tag && !strcmp(tag, a->assistant_tag)) r = DATA_ROLE_ASSISTANT;
    if (a->observation_tag && !strcmp(tag, a->observation_tag)) r = DATA_ROLE_OBSERVATION;
    if (a->function_tag && !strcmp(tag, a->function_tag)) r = DATA_ROLE_FUNCTION;
    if (a->system_tag && !strcmp(tag, a->system_tag)) r = 4;
    return r;
}

static const char *role_tag_of(const Json *msg, const DataAttr *a) {
    const Json *v = a->role_tag ? json_get(msg, a->role_tag) : NULL;
    return v && v->type == JSON_STRING ? v->str.s : NULL;
}

static bool same(const char *x, const char *y) { return x && y && !strcmp(x, y); }

static const char *describe_tag(const Json *msg, const DataAttr *a, char *buf, size_t len) {
    const Json *v = a->role_tag ? json_get(msg, a->role_tag) : NULL;
    if (!v) snprintf(buf, len, "no '%s'", a->role_tag ? a->role_tag : "role");
    else if (v->type == JSON_STRING) snprintf(buf, len, "'%.60s'", v->str.s);
    else snprintf(buf, len, "%s", json_type_name(v->type));
    return buf;
}

/* the messages list and the system message taken from its head (shared by sharegpt, openai) */
static bool head_system(const DataAttr *a, const Json *rec, const Json **msgs, size_t *first, char **system,
                        bool *from_head, Bad *b) {
    const Json *m = col(rec, a->messages);
    if (!m)
        return bad(b, DATA_BAD_COLUMN, "messages column '%s' is missing or null", a->messages ? a->messages : "");
    if (m->type != JSON_ARRAY)
        return bad(b, DATA_BAD_TYPE, "messages column '%s' must be a list of messages, found %s", a->messages,
                   json_type_name(m->type));
    for (size_t i = 0; i < m->arr.n; i++)
        if (m->arr.items[i]->type != JSON_OBJECT)
            return bad(b, DATA_BAD_TYPE, "message %zu must be an object with '%s' and '%s', found %s", i,
                       a->role_tag ? a->role_tag : "", a->content_tag ? a->content_tag : "",
                       json_type_name(m->arr.items[i]->type));
    *msgs = m;
    *first = 0;
    *system = NULL;
    *from_head = false;
    if (a->system_tag && m->arr.n && same(role_tag_of(m->arr.items[0], a), a->system_tag)) {
        const Json *c = a->content_tag ? json_get(m->arr.items[0], a->content_tag) : NULL;
        if (!text_of(c, "message 0 (system) content", system, b)) return false;
        *first = 1;
        *from_head = true;
    }
    return true;
}

static bool check_count(const DataAttr *a, size_t n, Bad *b) {
    if (n == 0) return bad(b, DATA_BAD_EMPTY, "empty conversation (no messages after the system message)");
    if (!a->ranking && n % 2 != 0)
        return bad(b, DATA_BAD_COUNT, "conversation has %zu messages; expected an even number (user and "
                   "assistant turns in pairs, ending with the assistant)", n);
    if (a->ranking && n % 2 == 0)
        return bad(b, DATA_BAD_COUNT, "conversation has %zu messages; a ranking example needs an odd number "
                   "(it ends with the user; chosen and rejected answer it)", n);
    return true;
}

/* chosen / rejected of a ranking sharegpt example: objects with an assistant or function role */
static bool pair_message(const DataAttr *a, const Json *rec, const char *colname, const char *what, Msgs *resp,
                         Bad *b) {
    const Json *v = col(rec, colname);
    if (!v || v->type != JSON_OBJECT)
        return bad(b, v ? DATA_BAD_TYPE : DATA_BAD_COLUMN, "%s column '%s' must be a message object, found %s",
                   what, colname ? colname : "(none)", v ? json_type_name(v->type) : "nothing");
    int r = role_of(a, role_tag_of(v, a));
    char buf[96];
    if (r != DATA_ROLE_ASSISTANT && r != DATA_ROLE_FUNCTION)
        return bad(b, DATA_BAD_ROLE, "%s message has role %s; expected '%s' or '%s'", what,
                   describe_tag(v, a, buf, sizeof buf), a->assistant_tag ? a->assistant_tag : "",
                   a->function_tag ? a->function_tag : "");
    char *t;
    snprintf(buf, sizeof buf, "%s content", what);
    if (!text_of(a->content_tag ? json_get(v, a->content_tag) : NULL, buf, &t, b)) return false;
    msgs_add(resp, (DataRole)r, t);
    return true;
}

/* the aligned messages -> prompt/response by kind: kto, ranking, or normal */
static bool finish_conversation(const DataAttr *a, const Json *rec, Msgs *all, Msgs *prompt, Msgs *resp,
                                DataExample *ex, Bad *b) {
    int tag;
    if (!kto_of(a, rec, &tag, b)) return false;
    ex->kto_tag = tag;
    if (a->ranking && tag < 0) {
        if (!pair_message(a, rec, a->chosen, "chosen", resp, b)) return false;
        if (!pair_message(a, rec, a->rejected, "rejected", resp, b)) return false;
        *prompt = *all;
        *all = (Msgs){0};
        return true;
    }
    DataMessage last = all->m[--all->n];
    *prompt = *all;
    *all = (Msgs){0};
    if (tag >= 0) kto_response(resp, last.role, last.content, tag);
    else msgs_add(resp, last.role, last.content);
    return true;
}

static bool convert_sharegpt(const DataAttr *a, const Json *rec, Msgs *prompt, Msgs *resp, DataExample *ex,
                             Bad *b) {
    const Json *m;
    size_t first;
    bool from_head;
    if (!head_system(a, rec, &m, &first, &ex->system, &from_head, b)) return false;
    if (!from_head && !opt_text(col(rec, a->system), "system column", &ex->system, b)) return false;
    if (ex->system && !*ex->system) free(ex->system), ex->system = NULL;
    Msgs all = {0};
    for (size_t i = first; i < m->arr.n; i++) {
        const Json *msg = m->arr.items[i];
        size_t turn = i - first;
        int r = role_of(a, role_tag_of(msg, a));
        bool odd = turn % 2 == 0; /* LF counts turns from 0: user / observation first */
        bool ok = odd ? (r == DATA_ROLE_USER || r == DATA_ROLE_OBSERVATION)
                      : (r == DATA_ROLE_ASSISTANT || r == DATA_ROLE_FUNCTION);
        char buf[96];
        if (!ok) {
            msgs_free(&all);
            return bad(b, DATA_BAD_ROLE, "message %zu has role %s where %s is expected ('%s' or '%s')", i,
                       describe_tag(msg, a, buf, sizeof buf), odd ? "a user turn" : "an assistant turn",
                       odd ? (a->user_tag ? a->user_tag : "") : (a->assistant_tag ? a->assistant_tag : ""),
                       odd ? (a->observation_tag ? a->observation_tag : "")
                           : (a->function_tag ? a->function_tag : ""));
        }
        char *t;
        snprintf(buf, sizeof buf, "message %zu content", i);
        if (!text_of(a->content_tag ? json_get(msg, a->content_tag) : NULL, buf, &t, b)) {
            msgs_free(&all);
            return false;
        }
        msgs_add(&all, (DataRole)r, t);
    }
    if (!check_count(a, all.n, b) || !finish_conversation(a, rec, &all, prompt, resp, ex, b)) {
        msgs_free(&all);
        return false;
    }
    return opt_text(col(rec, a->tools), "tools column", &ex->tools, b);
}

static bool convert_openai(const DataAttr *a, const Json *rec, Msgs *prompt, Msgs *resp, DataExample *ex, Bad *b) {
    const Json *m;
    size_t first;
    bool from_head;
    if (!head_system(a, rec, &m, &first, &ex->system, &from_head, b)) return false;
    if (!from_head && !opt_text(col(rec, a->system), "system column", &ex->system, b)) return false;
    Msgs all = {0};
    StrBuf obs = {0};
    size_t n_obs = 0;
    char buf[96];
    for (size_t i = first; i < m->arr.n; i++) {
        const Json *msg = m->arr.items[i];
        const char *role = role_tag_of(msg, a);
        const Json *cv = a->content_tag ? json_get(msg, a->content_tag) : NULL;
        char *content = NULL;
        if (same(role, a->assistant_tag) || same(role, a->function_tag)) {
            const Json *calls = json_get(msg, "tool_calls");
            if (truthy(calls)) {
                if (calls->type != JSON_ARRAY) {
                    msgs_free(&all);
                    sb_free(&obs);
                    return bad(b, DATA_BAD_TYPE, "message %zu: tool_calls must be a list", i);
                }
                StrBuf sb = {0};
                sb_puts(&sb, "[");
                for (size_t k = 0; k < calls->arr.n; k++) {
                    const Json *fn = json_get(calls->arr.items[k], "function");
                    if (!fn) {
                        sb_free(&sb);
                        msgs_free(&all);
                        sb_free(&obs);
                        return bad(b, DATA_BAD_COLUMN, "message %zu: tool_calls[%zu] has no 'function'", i, k);
                    }
                    if (k) sb_puts(&sb, ", ");
                    data_json_dumps(&sb, fn);
                }
                sb_puts(&sb, "]");
                content = sb.data;
                role = a->function_tag;
            }
        }
        if (!content) {
            snprintf(buf, sizeof buf, "message %zu content", i);
            if (!text_of(cv, buf, &content, b)) {
                msgs_free(&all);
                sb_free(&obs);
                return false;
            }
        }
        if (same(role, a->observation_tag)) {
            if (n_obs++) sb_puts(&obs, "\n</tool_response>\n<tool_response>\n");
            sb_puts(&obs, content);
            free(content);
            continue;
        }
        if (n_obs) {
            msgs_add(&all, DATA_ROLE_OBSERVATION, obs.data);
            obs = (StrBuf){0};
            n_obs = 0;
        }
        int r = role_of(a, role);
        if (r < 0 || r == 4) {
            free(content);
            msgs_free(&all);
            return bad(b, DATA_BAD_ROLE, "message %zu has role %s, which is none of the dataset's tags", i,
                       describe_tag(msg, a, buf, sizeof buf));
        }
        msgs_add(&all, (DataRole)r, content);
    }
    sb_free(&obs); /* LF drops tool responses that end the conversation */
    for (size_t t = 0; t < all.n; t++) {
        DataRole r = all.m[t].role;
        bool ok = t % 2 == 0 ? (r == DATA_ROLE_USER || r == DATA_ROLE_OBSERVATION)
                             : (r == DATA_ROLE_ASSISTANT || r == DATA_ROLE_FUNCTION);
        if (!ok) {
            msgs_free(&all);
            return bad(b, DATA_BAD_ROLE, "turn %zu (after merging tool responses) is %s where %s is expected", t,
                       r == DATA_ROLE_USER ? "a user turn" : r == DATA_ROLE_OBSERVATION ? "a tool response"
                       : r == DATA_ROLE_ASSISTANT ? "an assistant turn" : "a function call",
                       t % 2 == 0 ? "a user turn or tool response" : "an assistant turn or function call");
        }
    }
    if (!check_count(a, all.n, b) || !finish_conversation(a, rec, &all, prompt, resp, ex, b)) {
        msgs_free(&all);
        return false;
    }
    const Json *tv = a->tools ? json_get(rec, a->tools) : NULL;
    if (tv && tv->type == JSON_NULL) tv = NULL;
    if (!opt_text(tv, "tools column", &ex->tools, b)) return false;
    /* LF's openai converter ends with this rule about the system text */
    static const char SHORT[] = "detailed thinking off";
    char *sys = ex->system;
    bool has_tools = ex->tools != NULL;
    if (!sys || !*sys) {
        free(sys);
        ex->system = has_tools ? NULL : xstrdup(SHORT);
    } else if (!has_tools) {
        if (!strstr(sys, "detailed thinking on") && !strstr(sys, "detailed thinking off")) {
            ex->system = xprintf("%s\n%s", sys, SHORT);
            free(sys);
        }
    } else {
        ex->system = xprintf("%s\n", sys);
        free(sys);
    }
    return true;
}

static bool convert(const DataAttr *a, const Json *rec, DataExample *ex, Bad *b) {
    Msgs prompt = {0}, resp = {0};
    memset(ex, 0, sizeof *ex);
    ex->kto_tag = -1;
    bool ok = a->formatting == FMT_ALPACA     ? convert_alpaca(a, rec, &prompt, &resp, ex, b)
              : a->formatting == FMT_SHAREGPT ? convert_sharegpt(a, rec, &prompt, &resp, ex, b)
                                              : convert_openai(a, rec, &prompt, &resp, ex, b);
    if (!ok) {
        msgs_free(&prompt);
        msgs_free(&resp);
        free(ex->system);
        free(ex->tools);
        memset(ex, 0, sizeof *ex);
        return false;
    }
    ex->prompt = prompt.m;
    ex->n_prompt = prompt.n;
    ex->response = resp.m;
    ex->n_response = resp.n;
    return true;
}

bool data_convert(const DataAttr *a, const Json *rec, DataExample *ex, DataBadKind *kind, char *msg, size_t msglen) {
    Bad b;
    if (convert(a, rec, ex, &b)) return true;
    *kind = b.kind;
    snprintf(msg, msglen, "%s", b.msg);
    return false;
}
