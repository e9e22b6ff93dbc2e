/* plot.h - training_loss.png as LLaMA-Factory's extras/ploting.py plot_loss draws it.
 *
 * LF (plot_loss(output_dir, keys=["loss", "eval_loss", "eval_accuracy"]) after training when
 * plot_loss is set) reads trainer_state.json's log_history, and for each key with values draws
 * a matplotlib figure (6.4 x 4.8 in at 100 dpi = 640 x 480 px): the raw values against "step"
 * in #1f77b4 at alpha 0.4 ("original"), their smoothed curve in #1f77b4 ("smoothed"), title
 * "training KEY of OUTPUT_DIR", x label "step", y label KEY, a legend, saved as
 * OUTPUT_DIR/training_KEY.png ('/' in KEY becomes '_').
 *
 * We draw the same picture ourselves (axes box as matplotlib's default subplot, 5% data
 * margins, "nice" ticks, a 5x7 bitmap font drawn for llfc) and write it with libpng. The
 * smoothing is LF's smooth(), an EMA whose weight grows with the number of points:
 *
 *     w = 1.8 * (1 / (1 + exp(-0.05 * n)) - 0.5);   s_0 = y_0;   s_i = s_{i-1} * w + (1 - w) * y_i
 */
#ifndef LLFC_PLOT_H
#define LLFC_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trainlog.h"

#define PLOT_W 640
#define PLOT_H 480

/* LF's smooth(): out[i] for y[0..n). */
void plot_smooth(const double *y, size_t n, double *out);

/* Where data lands in the picture: the axes box in pixels (x0 < x1 left to right, y0 < y1 top
 * to bottom) and the data range it shows. */
typedef struct {
    int px0, px1, py0, py1;
    double xmin, xmax, ymin, ymax;
} PlotFrame;

void plot_frame(const double *x, const double *y, size_t n, PlotFrame *f);
/* Pixel of a data point. */
void plot_map(const PlotFrame *f, double x, double y, int *px, int *py);

/* Draw one loss figure and write it as an 8-bit RGB PNG (PATH.tmp, then rename). */
bool plot_loss_png(const char *path, const double *steps, const double *vals, size_t n,
                   const char *title, const char *ylabel, char *err, size_t errlen);

/* LF's plot_loss on a trainer state: for each key, the (step, value) pairs of the log_history
 * entries that have it; OUTPUT_DIR/training_KEY.png for each key that has any. *n_written gets
 * how many files were written (keys without values are skipped, as LF warns and skips). */
bool plot_from_state(const char *output_dir, const TrainerState *st, const char *const *keys,
                     size_t n_keys, int *n_written, char *err, size_t errlen);

#endif
