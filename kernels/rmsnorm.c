/* rmsnorm.c - RMSNorm (C reference). Sums of squares in double: the reference is exact first. */
#include "rmsnorm.h"

#include <math.h>

void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int64_t R, int64_t D,
                     float eps, float offset) {
#pragma omp parallel for if (R * D > 65536)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * D;
        double ss = 0;
        for (int64_t c = 0; c < D; c++) ss += (double)xr[c] * xr[c];
        const float s = (float)(1.0 / sqrt(ss / (double)D + eps));
        rstd[r] = s;
        float *o = out + r * D;
        for (int64_t c = 0; c < D; c++) o[c] = (xr[c] * s) * (offset + w[c]);
    }
}

/* With n = x * rstd and g = dout * (offset + w):
 *     dx = rstd * (g - n * mean(g * n)),   dw += sum_r dout * n */
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                      const float *rstd, int64_t R, int64_t D, float offset, bool accumulate) {
    if (dx) {
#pragma omp parallel for if (R * D > 65536)
        for (int64_t r = 0; r < R; r++) {
            const float *xr = x + r * D, *gr = dout + r * D;
            const float s = rstd[r];
            double dot = 0;
            for (int64_t c = 0; c < D; c++) dot += (double)gr[c] * (offset + w[c]) * xr[c] * s;
            const float m = (float)(dot / (double)D);
            float *d = dx + r * D;
            for (int64_t c = 0; c < D; c++) {
                const float v = s * (gr[c] * (offset + w[c]) - xr[c] * s * m);
                d[c] = accumulate ? d[c] + v : v;
            }
        }
    }
    if (dw) {
        enum { CB = 64 };
#pragma omp parallel for if (R * D > 65536)
        for (int64_t c0 = 0; c0 < D; c0 += CB) {
            const int64_t c1 = c0 + CB < D ? c0 + CB : D;
            double acc[CB] = {0};
            for (int64_t r = 0; r < R; r++) {
                const float *xr = x + r * D, *gr = dout + r * D;
                for (int64_t c = c0; c < c1; c++) acc[c - c0] += (double)gr[c] * xr[c] * rstd[r];
            }
            for (int64_t c = c0; c < c1; c++) dw[c] += (float)acc[c - c0];
        }
    }
}
