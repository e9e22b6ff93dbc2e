/* optim.c - AdamW (torch.optim.AdamW's arithmetic), clip_grad_norm_, decay and LoRA+ rules. */
#include "optim.h"

#include <assert.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void optim_init(AdamW *opt, const AdamWConfig *cfg, const OptParam *params, size_t n) {
    memset(opt, 0, sizeof *opt);
    opt->cfg = *cfg;
    opt->n_params = n;
    opt->offset = xmalloc((n + 1) * sizeof *opt->offset);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        opt->offset[i] = total;
        total += params[i].n;
    }
    opt->offset[n] = total;
    opt->m = xcalloc((size_t)total + 1, sizeof(float));
    opt->v = xcalloc((size_t)total + 1, sizeof(float));
}

void optim_free(AdamW *opt) {
    free(opt->offset);
    free(opt->m);
    free(opt->v);
    memset(opt, 0, sizeof *opt);
}

// --- the update

/* One parameter. The expression shapes follow ATen's CPU kernels so rounding matches:
 * lerp is fmadd(w, g - m, m) for w < 0.5, addcmul is fmadd(s * g, g, v), addcdiv is
 * p + (s * m) / d (each checked against torch 2.15 on 20,000 random values). */
static void adamw_one(float *p, const float *g, float *m, float *v, int64_t n, float decay_mul,
                      float w1, float beta2, float one_minus_beta2, float bc2_sqrt, float eps,
                      float neg_step_size) {
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i] * decay_mul;
        float gi = g[i];
        float mi = fmaf(w1, gi - m[i], m[i]);
        float vi = fmaf(one_minus_beta2 * gi, gi, v[i] * beta2);
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi + neg_step_size * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

void optim_step(AdamW *opt, const OptParam *params, size_t n, double lr_factor) {
    assert(n == opt->n_params);
    const AdamWConfig *c = &opt->cfg;
    opt->step++;
    double t = (double)opt->step;
    double bc1 = 1.0 - pow(c->beta1, t);
    double bc2 = 1.0 - pow(c->beta2, t);
    for (size_t i = 0; i < n; i++) {
        assert(params[i].n == opt->offset[i + 1] - opt->offset[i]);
        double lr = c->lr * params[i].lr_scale * lr_factor; /* a LambdaLR group's lr */
        double wd = params[i].decay ? c->weight_decay : 0.0;
        float decay_mul = wd != 0.0 ? (float)(1.0 - lr * wd) : 1.0f;
        int64_t o = opt->offset[i];
        adamw_one(params[i].value, params[i].grad, opt->m + o, opt->v + o, params[i].n, decay_mul,
                  (float)(1.0 - c->beta1), (float)c->beta2, (float)(1.0 - c->beta2),
                  (float)sqrt(bc2), (float)c->eps, (float)(-(lr / bc1)));
    }
}

// --- clipping

/* As torch does it: each gradient's norm (rounded to float), then the norm of those norms. */
double optim_grad_norm(const OptParam *params, size_t n) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        const float *g = params[i].grad;
        double s = 0;
        for (int64_t k = 0; k < params[i].n; k++) s += (double)g[k] * g[k];
        float norm_i = (float)sqrt(s);
        ss += (double)norm_i * norm_i;
    }
    return sqrt(ss);
}

double optim_clip_grad_norm(const OptParam *params, size_t n, double max_norm) {
    float norm = (float)optim_grad_norm(params, n); /* torch returns a float32 tensor */
    if (!(max_norm > 0) || !isfinite(norm)) return norm;
    float coef = (float)max_norm / (norm + 1e-6f);
    if (coef >= 1.0f) return norm; /* torch multiplies by 1: no change */
    for (size_t i = 0; i < n; i++)
        for (int64_t k = 0; k < params[i].n; k++) params[i].grad[k] *= coef;
    return norm;
}

// --- which parameters decay, and LoRA+

/* Does `s` contain `word` so that it starts at the beginning or after a '.' (if dot_before),
 * and ends at the end or before a '.'? */
static bool has_part(const char *s, const char *word, bool dot_before) {
    size_t wl = strlen(word);
    for (const char *p = strstr(s, word); p; p = strstr(p + 1, word)) {
        bool start_ok = !dot_before || p == s || p[-1] == '.';
        bool end_ok = p[wl] == '\0' || p[wl] == '.';
        if (start_ok && end_ok) return true;
    }
    return false;
}

bool optim_decays(const char *name) {
    char low[512];
    size_t n = strlen(name);
    if (n >= sizeof low) n = sizeof low - 1;
    for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)name[i]);
    low[n] = '\0';
    if (strstr(low, "bias") || strstr(low, "layernorm") || strstr(low, "rmsnorm")) return false;
    if (has_part(low, "norm", true)) return false;   /* (?:^|\.)norm(?:$|\.) */
    if (has_part(low, "_norm", false)) return false; /* _norm(?:$|\.) */
    return true;
}

bool optim_decays_loraplus(const char *name) { return strstr(name, "bias") == NULL; }

double optim_loraplus_scale(const char *name, int ndim, double loraplus_ratio) {
    if (!(loraplus_ratio > 0)) return 1.0;
    if (strstr(name, "lora_embedding_B")) return -1.0;
    if (strstr(name, "lora_B") || ndim == 1) return loraplus_ratio;
    return 1.0;
}

bool optim_state_matches(const AdamW *opt, const OptParam *params, size_t n, char *err,
                         size_t errlen) {
    if (n != opt->n_params)
        return errf(err, errlen, "optimizer state has %zu parameters, the model trains %zu",
                    opt->n_params, n);
    for (size_t i = 0; i < n; i++) {
        int64_t have = opt->offset[i + 1] - opt->offset[i];
        if (have != params[i].n)
            return errf(err, errlen, "optimizer state for %s has %lld values, the parameter %lld",
                        params[i].name, (long long)have, (long long)params[i].n);
    }
    return true;
}

void optim_config_from_recipe(AdamWConfig *cfg, const Recipe *r) {
    *cfg = (AdamWConfig){.lr = R_FLOAT(r, learning_rate), .beta1 = R_FLOAT(r, adam_beta1),
                         .beta2 = R_FLOAT(r, adam_beta2), .eps = R_FLOAT(r, adam_epsilon),
                         .weight_decay = R_FLOAT(r, weight_decay)};
}

// --- dynamic loss scaling

void optim_scaler_init(LossScaler *s, double init_scale) {
    *s = (LossScaler){.scale = init_scale, .growth = 2.0, .backoff = 0.5, .growth_interval = 2000};
}

/* GradScaler.update (_amp_update_scale_): the scale is an fp32 tensor there, so it is rounded to
 * float here after each change; growth that would overflow float keeps the old scale. */
bool optim_scaler_update(LossScaler *s, bool found_inf) {
    const double old = s->scale;
    if (found_inf) {
        s->scale = (float)(s->scale * s->backoff);
        s->clean = 0;
        s->skipped++;
    } else if (++s->clean == s->growth_interval) {
        const float grown = (float)(s->scale * s->growth);
        if (isfinite(grown)) s->scale = grown;
        s->clean = 0;
    }
    return s->scale != old;
}
