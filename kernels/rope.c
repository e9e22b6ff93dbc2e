/* rope.c - rotary embedding (C reference) and transformers' inv_freq formulas. */
#include "rope.h"

#include <assert.h>
#include <math.h>

static void default_inv_freq(double base, int64_t HD, float *inv_freq) {
    for (int64_t i = 0; i < HD / 2; i++) {
        const float e = (float)(2 * i) / (float)HD;
        inv_freq[i] = 1.0f / powf((float)base, e);
    }
}

static double yarn_mscale(double scale, double mscale) {
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

static double yarn_correction_dim(double rot, double dim, double base, double maxpos) {
    return (dim * log(maxpos / (rot * 2 * M_PI))) / (2 * log(base));
}

float rope_inv_freq(const ModelRope *r, int64_t HD, int64_t max_positions, int64_t seq_len,
                    float *inv_freq) {
    assert(HD % 2 == 0 && HD <= ROPE_MAX_HD);
    const int64_t half = HD / 2;
    switch (r->type) {
    case MODEL_ROPE_DEFAULT: default_inv_freq(r->theta, HD, inv_freq); return 1.0f;
    case MODEL_ROPE_LINEAR:
        default_inv_freq(r->theta, HD, inv_freq);
        for (int64_t i = 0; i < half; i++) inv_freq[i] /= (float)r->factor;
        return 1.0f;
    case MODEL_ROPE_DYNAMIC: {
        /* dynamic_rope_update recomputes only once seq_len exceeds max_position_embeddings */
        double base = r->theta;
        if (seq_len > max_positions)
            base = base * pow(r->factor * (double)seq_len / (double)max_positions - (r->factor - 1),
                              (double)HD / (double)(HD - 2));
        default_inv_freq(base, HD, inv_freq);
        return 1.0f;
    }
    case MODEL_ROPE_LLAMA3: {
        default_inv_freq(r->theta, HD, inv_freq);
        const double old = (double)r->original_max_positions;
        const double lo_wl = old / r->low_freq_factor, hi_wl = old / r->high_freq_factor;
        for (int64_t i = 0; i < half; i++) {
            const float f = inv_freq[i];
            const float wl = (float)(2 * M_PI) / f;
            float g = wl > lo_wl ? f / (float)r->factor : f;
            if (!(wl < hi_wl) && !(wl > lo_wl)) {
                const float smooth = (float)((old / wl - r->low_freq_factor) /
                                             (r->high_freq_factor - r->low_freq_factor));
                g = (1 - smooth) * g / (float)r->factor + smooth * g;
            }
            inv_freq[i] = g;
        }
        return 1.0f;
    }
    case MODEL_ROPE_YARN: {
        const double factor = r->factor;
        double attn = r->attention_factor;
        if (attn == 0) {
            if (r->mscale != 0 && r->mscale_all_dim != 0)
                attn = yarn_mscale(factor, r->mscale) / yarn_mscale(factor, r->mscale_all_dim);
            else
                attn = yarn_mscale(factor, 1);
        }
        const double beta_fast = r->beta_fast ? r->beta_fast : 32,
                     beta_slow = r->beta_slow ? r->beta_slow : 1;
        const double omax = (double)r->original_max_positions;
        double lo = yarn_correction_dim(beta_fast, (double)HD, r->theta, omax);
        double hi = yarn_correction_dim(beta_slow, (double)HD, r->theta, omax);
        if (r->truncate) lo = floor(lo), hi = ceil(hi);
        if (lo < 0) lo = 0;
        if (hi > HD - 1) hi = (double)(HD - 1);
        if (lo == hi) hi += 0.001;
        for (int64_t i = 0; i < half; i++) {
            const float e = (float)(2 * i) / (float)HD;
            const float pf = powf((float)r->theta, e);
            const float extra = 1.0f / pf, inter = 1.0f / ((float)factor * pf);
            float ramp = ((float)i - (float)lo) / (float)(hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            const float ef = 1 - ramp;
            inv_freq[i] = inter * (1 - ef) + extra * ef;
        }
        return (float)attn;
    }
    }
    assert(0 && "unknown rope type");
    return 1.0f;
}

static void rotate(float *out, const float *x, const int32_t *pos, const float *inv_freq,
                   float attn_scale, int64_t N, int64_t H, int64_t HD, float sign) {
    const int64_t half = HD / 2;
#pragma omp parallel for if (N * H * HD > 65536)
    for (int64_t t = 0; t < N; t++) {
        float c[ROPE_MAX_HD / 2], s[ROPE_MAX_HD / 2];
        const float p = (float)pos[t];
        for (int64_t i = 0; i < half; i++) {
            const float a = inv_freq[i] * p;
            c[i] = (float)cos((double)a) * attn_scale;
            s[i] = sign * (float)sin((double)a) * attn_scale;
        }
        for (int64_t h = 0; h < H; h++) {
            const float *xi = x + (t * H + h) * HD;
            float *o = out + (t * H + h) * HD;
            for (int64_t i = 0; i < half; i++) {
                const float x1 = xi[i], x2 = xi[i + half];
                o[i] = x1 * c[i] - x2 * s[i];
                o[i + half] = x2 * c[i] + x1 * s[i];
            }
        }
    }
}

void rope_forward(float *out, const float *x, const int32_t *pos, const float *inv_freq,
                  float attn_scale, int64_t N, int64_t H, int64_t HD) {
    rotate(out, x, pos, inv_freq, attn_scale, N, H, HD, 1.0f);
}

void rope_backward(float *dx, const float *dout, const int32_t *pos, const float *inv_freq,
                   float attn_scale, int64_t N, int64_t H, int64_t HD) {
    rotate(dx, dout, pos, inv_freq, attn_scale, N, H, HD, -1.0f);
}
