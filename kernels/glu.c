/* glu.c - SwiGLU / GeGLU elementwise (C reference), activations as PyTorch defines them:
 *     silu(x)      = x / (1 + exp(-x))
 *     gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 *     gelu(x)      = 0.5 x (1 + erf(x / sqrt(2)))
 */
#include "glu.h"

#include <math.h>

#define SQRT_2_OVER_PI 0.7978845608028654f

static inline float act_f(float x, ModelActivation act, float *deriv) {
    switch (act) {
    case MODEL_ACT_SILU: {
        const float sg = 1.0f / (1.0f + expf(-x));
        *deriv = sg * (1.0f + x * (1.0f - sg));
        return x * sg;
    }
    case MODEL_ACT_GELU_TANH: {
        const float u = SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
        const float t = tanhf(u);
        *deriv = 0.5f * (1.0f + t) +
                 0.5f * x * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
        return 0.5f * x * (1.0f + t);
    }
    case MODEL_ACT_GELU: {
        const float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
        *deriv = cdf + x * expf(-0.5f * x * x) * 0.3989422804014327f;
        return x * cdf;
    }
    }
    *deriv = 0;
    return 0;
}

void glu_forward(float *out, const float *gate, const float *up, int64_t N, ModelActivation act) {
#pragma omp parallel for if (N > 65536)
    for (int64_t i = 0; i < N; i++) {
        float d;
        out[i] = act_f(gate[i], act, &d) * up[i];
    }
}

void glu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                  int64_t N, ModelActivation act) {
#pragma omp parallel for if (N > 65536)
    for (int64_t i = 0; i < N; i++) {
        float d;
        const float a = act_f(gate[i], act, &d);
        dgate[i] = dout[i] * up[i] * d;
        dup[i] = dout[i] * a;
    }
}
