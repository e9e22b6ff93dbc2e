/* plot.c - loss curves as PNG: a tiny rasteriser (anti-aliased thick lines, a 5x7 font) and
 * libpng. */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

void plot_smooth(const double *y, size_t n, double *out) {
    if (n == 0) return;
    double w = 1.8 * (1 / (1 + exp(-0.05 * (double)n)) - 0.5);
    double last = y[0];
    for (size_t i = 0; i < n; i++) {
        double s = last * w + (1 - w) * y[i];
        out[i] = s;
        last = s;
    }
}

// --- canvas

typedef struct {
    uint8_t px[PLOT_H][PLOT_W][3];
    float cover[PLOT_H][PLOT_W]; /* one stroke's coverage, composited once (alpha is not doubled) */
} Canvas;

typedef struct {
    uint8_t r, g, b;
} Rgb;

static const Rgb WHITE = {255, 255, 255}, BLACK = {0, 0, 0}, BLUE = {0x1f, 0x77, 0xb4},
                 GREY = {0xcc, 0xcc, 0xcc};

static void blend(Canvas *c, int x, int y, Rgb col, float a) {
    if (x < 0 || y < 0 || x >= PLOT_W || y >= PLOT_H || a <= 0) return;
    if (a > 1) a = 1;
    uint8_t *p = c->px[y][x];
    p[0] = (uint8_t)lrintf((float)p[0] * (1 - a) + (float)col.r * a);
    p[1] = (uint8_t)lrintf((float)p[1] * (1 - a) + (float)col.g * a);
    p[2] = (uint8_t)lrintf((float)p[2] * (1 - a) + (float)col.b * a);
}

static void fill_rect(Canvas *c, int x0, int y0, int x1, int y1, Rgb col) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) blend(c, x, y, col, 1);
}

/* Add a segment of width `width` px to the coverage mask (distance to the segment, 1px ramp). */
static void stroke_segment(Canvas *c, double xa, double ya, double xb, double yb, double width) {
    double r = width / 2;
    int x0 = (int)floor(fmin(xa, xb) - r - 1), x1 = (int)ceil(fmax(xa, xb) + r + 1);
    int y0 = (int)floor(fmin(ya, yb) - r - 1), y1 = (int)ceil(fmax(ya, yb) + r + 1);
    double dx = xb - xa, dy = yb - ya, len2 = dx * dx + dy * dy;
    for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < PLOT_H; y++)
        for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < PLOT_W; x++) {
            double px = x + 0.5, py = y + 0.5;
            double t = len2 > 0 ? ((px - xa) * dx + (py - ya) * dy) / len2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            double ex = px - (xa + t * dx), ey = py - (ya + t * dy);
            float cov = (float)(r + 0.5 - sqrt(ex * ex + ey * ey));
            if (cov > 1) cov = 1;
            if (cov > c->cover[y][x]) c->cover[y][x] = cov;
        }
}

static void composite(Canvas *c, Rgb col, float alpha, int clip_x0, int clip_y0, int clip_x1,
                      int clip_y1) {
    for (int y = 0; y < PLOT_H; y++)
        for (int x = 0; x < PLOT_W; x++) {
            float cov = c->cover[y][x];
            c->cover[y][x] = 0;
            if (cov > 0 && x >= clip_x0 && x <= clip_x1 && y >= clip_y0 && y <= clip_y1)
                blend(c, x, y, col, cov * alpha);
        }
}

// --- text: a 5x7 font drawn for llfc, ASCII 32..126, rows top to bottom, '#' = ink; g p q y
// are drawn 2 rows lower (their tails go below the baseline)

static const char font[95][7][6] = {
    {".....", ".....", ".....", ".....", ".....", ".....", "....."}, /* space */
    {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}, /* ! */
    {".#.#.", ".#.#.", ".....", ".....", ".....", ".....", "....."}, /* quote */
    {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}, /* # */
    {"..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."}, /* $ */
    {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}, /* % */
    {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"}, /* & */
    {"..#..", "..#..", ".#...", ".....", ".....", ".....", "....."}, /* apostrophe */
    {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}, /* ( */
    {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}, /* ) */
    {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."}, /* * */
    {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}, /* + */
    {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}, /* , */
    {".....", ".....", ".....", "#####", ".....", ".....", "....."}, /* - */
    {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}, /* . */
    {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}, /* / */
    {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}, /* 0 */
    {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* 1 */
    {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}, /* 2 */
    {"####.", "....#", "....#", ".###.", "....#", "....#", "####."}, /* 3 */
    {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}, /* 4 */
    {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}, /* 5 */
    {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}, /* 6 */
    {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}, /* 7 */
    {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}, /* 8 */
    {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}, /* 9 */
    {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}, /* : */
    {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."}, /* ; */
    {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}, /* < */
    {".....", ".....", "#####", ".....", "#####", ".....", "....."}, /* = */
    {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}, /* > */
    {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}, /* ? */
    {".###.", "#...#", "#.###", "#.#.#", "#.###", "#....", ".###."}, /* @ */
    {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}, /* A */
    {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}, /* B */
    {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}, /* C */
    {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}, /* D */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}, /* E */
    {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}, /* F */
    {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}, /* G */
    {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}, /* H */
    {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* I */
    {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}, /* J */
    {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}, /* K */
    {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}, /* L */
    {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}, /* M */
    {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}, /* N */
    {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}, /* O */
    {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}, /* P */
    {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}, /* Q */
    {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}, /* R */
    {".####", "#....", "#....", ".###.", "....#", "....#", "####."}, /* S */
    {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}, /* T */
    {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}, /* U */
    {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}, /* V */
    {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}, /* W */
    {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}, /* X */
    {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}, /* Y */
    {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}, /* Z */
    {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."}, /* [ */
    {".....", "#....", ".#...", "..#..", "...#.", "....#", "....."}, /* backslash */
    {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."}, /* ] */
    {"..#..", ".#.#.", "#...#", ".....", ".....", ".....", "....."}, /* ^ */
    {".....", ".....", ".....", ".....", ".....", ".....", "#####"}, /* _ */
    {".#...", "..#..", ".....", ".....", ".....", ".....", "....."}, /* ` */
    {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}, /* a */
    {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."}, /* b */
    {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."}, /* c */
    {"....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"}, /* d */
    {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."}, /* e */
    {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."}, /* f */
    {".####", "#...#", "#...#", ".####", "....#", "#...#", ".###."}, /* g (descends 2) */
    {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"}, /* h */
    {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."}, /* i */
    {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."}, /* j */
    {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."}, /* k */
    {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}, /* l */
    {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"}, /* m */
    {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"}, /* n */
    {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."}, /* o */
    {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}, /* p (descends 2) */
    {".####", "#...#", "#...#", ".####", "....#", "....#", "....#"}, /* q (descends 2) */
    {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."}, /* r */
    {".....", ".....", ".###.", "#....", ".###.", "....#", "####."}, /* s */
    {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."}, /* t */
    {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"}, /* u */
    {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."}, /* v */
    {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."}, /* w */
    {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"}, /* x */
    {"#...#", "#...#", "#...#", ".####", "....#", "#...#", ".###."}, /* y (descends 2) */
    {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"}, /* z */
    {"...#.", "..#..", "..#..", ".#...", "..#..", "..#..", "...#."}, /* { */
    {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}, /* | */
    {".#...", "..#..", "..#..", "...#.", "..#..", "..#..", ".#..."}, /* } */
    {".....", ".....", ".#...", "#.#.#", "...#.", ".....", "....."}, /* ~ */
};

enum { GLYPH_W = 5, GLYPH_H = 7, ADVANCE = 6 };

static int text_width(const char *s, int scale) { return (int)strlen(s) * ADVANCE * scale - scale; }

/* Draw s with its top-left at (x, y); vertical: rotated 90 degrees counter-clockwise (reads
 * bottom to top, (x, y) is then the bottom-left). */
static void draw_text(Canvas *c, int x, int y, int scale, const char *s, Rgb col, bool vertical) {
    for (int i = 0; s[i]; i++) {
        unsigned ch = (unsigned char)s[i];
        const char(*g)[6] = font[ch >= 32 && ch < 127 ? ch - 32 : '?' - 32];
        int drop = ch && strchr("gpqy", (int)ch) ? 2 : 0;
        for (int r = 0; r < GLYPH_H; r++)
            for (int colm = 0; colm < GLYPH_W; colm++) {
                if (g[r][colm] != '#') continue;
                int row = r + drop;
                int gx = i * ADVANCE + colm;
                for (int a = 0; a < scale; a++)
                    for (int b = 0; b < scale; b++) {
                        if (vertical) blend(c, x + row * scale + b, y - gx * scale - a, col, 1);
                        else blend(c, x + gx * scale + a, y + row * scale + b, col, 1);
                    }
            }
    }
}

// --- axes

/* matplotlib's default subplot box for a 640 x 480 figure: left .125, right .9, bottom .11,
 * top .88 */
void plot_frame(const double *x, const double *y, size_t n, PlotFrame *f) {
    f->px0 = 80;
    f->px1 = 576;
    f->py0 = 58;
    f->py1 = 427;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        x0 = fmin(x0, x[i]);
        x1 = fmax(x1, x[i]);
        y0 = fmin(y0, y[i]);
        y1 = fmax(y1, y[i]);
    }
    if (!(x0 <= x1)) x0 = 0, x1 = 1;
    if (!(y0 <= y1)) y0 = 0, y1 = 1;
    /* a single value: matplotlib widens the view around it */
    if (x1 - x0 == 0) x0 -= fmax(fabs(x0) * 0.05, 0.05), x1 += fmax(fabs(x1) * 0.05, 0.05);
    if (y1 - y0 == 0) y0 -= fmax(fabs(y0) * 0.05, 0.05), y1 += fmax(fabs(y1) * 0.05, 0.05);
    double mx = 0.05 * (x1 - x0), my = 0.05 * (y1 - y0); /* axes.xmargin, ymargin */
    f->xmin = x0 - mx;
    f->xmax = x1 + mx;
    f->ymin = y0 - my;
    f->ymax = y1 + my;
}

void plot_map(const PlotFrame *f, double x, double y, int *px, int *py) {
    *px = (int)floor(f->px0 + (x - f->xmin) / (f->xmax - f->xmin) * (f->px1 - f->px0));
    *py = (int)floor(f->py1 - (y - f->ymin) / (f->ymax - f->ymin) * (f->py1 - f->py0));
}

static void map_d(const PlotFrame *f, double x, double y, double *px, double *py) {
    *px = f->px0 + (x - f->xmin) / (f->xmax - f->xmin) * (f->px1 - f->px0);
    *py = f->py1 - (y - f->ymin) / (f->ymax - f->ymin) * (f->py1 - f->py0);
}

/* Tick step: the smallest of 1, 2, 2.5, 5 x 10^k giving at most 8 intervals (MaxNLocator). */
static double tick_step(double lo, double hi) {
    double span = hi - lo, base = pow(10, floor(log10(span / 8)));
    static const double m[] = {1, 2, 2.5, 5, 10};
    for (int i = 0; i < 5; i++)
        if (span / (m[i] * base) <= 8) return m[i] * base;
    return 10 * base;
}

static void tick_label(double v, double step, char *buf, size_t n) {
    int dec = (int)ceil(-log10(step) - 1e-9);
    if (fmod(step / pow(10, floor(log10(step))), 1.0) != 0) dec++; /* 2.5 */
    if (dec < 0) dec = 0;
    if (fabs(v) < step * 1e-9) v = 0;
    snprintf(buf, n, "%.*f", dec, v);
}

static void draw_axes(Canvas *c, const PlotFrame *f, const char *title, const char *xlabel,
                      const char *ylabel) {
    int s = 2;
    /* ticks and labels */
    double xs = tick_step(f->xmin, f->xmax), ys = tick_step(f->ymin, f->ymax);
    char buf[64];
    for (double v = ceil(f->xmin / xs) * xs; v <= f->xmax + xs * 1e-9; v += xs) {
        double px, py;
        map_d(f, v, f->ymin, &px, &py);
        int x = (int)lrint(px);
        fill_rect(c, x, f->py1 + 1, x, f->py1 + 5, BLACK);
        tick_label(v, xs, buf, sizeof buf);
        draw_text(c, x - text_width(buf, 1) / 2, f->py1 + 9, 1, buf, BLACK, false);
    }
    for (double v = ceil(f->ymin / ys) * ys; v <= f->ymax + ys * 1e-9; v += ys) {
        double px, py;
        map_d(f, f->xmin, v, &px, &py);
        int y = (int)lrint(py);
        fill_rect(c, f->px0 - 5, y, f->px0 - 1, y, BLACK);
        tick_label(v, ys, buf, sizeof buf);
        draw_text(c, f->px0 - 9 - text_width(buf, 1), y - 3, 1, buf, BLACK, false);
    }
    /* the box */
    fill_rect(c, f->px0, f->py0, f->px1, f->py0, BLACK);
    fill_rect(c, f->px0, f->py1, f->px1, f->py1, BLACK);
    fill_rect(c, f->px0, f->py0, f->px0, f->py1, BLACK);
    fill_rect(c, f->px1, f->py0, f->px1, f->py1, BLACK);
    /* title, labels (a title wider than the figure drops to the small size) */
    int ts = text_width(title, s) <= PLOT_W - 8 ? s : 1;
    draw_text(c, (f->px0 + f->px1) / 2 - text_width(title, ts) / 2, f->py0 - 10 - GLYPH_H * ts, ts,
              title, BLACK, false);
    draw_text(c, (f->px0 + f->px1) / 2 - text_width(xlabel, s) / 2, f->py1 + 24, s, xlabel, BLACK,
              false);
    draw_text(c, 14, (f->py0 + f->py1) / 2 + text_width(ylabel, s) / 2, s, ylabel, BLACK, true);
}

static void draw_legend(Canvas *c, const PlotFrame *f) {
    int w = 44 + text_width("smoothed", 2) + 10, h = 44, x0 = f->px1 - 8 - w, y0 = f->py0 + 8;
    fill_rect(c, x0, y0, x0 + w, y0 + h, WHITE);
    fill_rect(c, x0, y0, x0 + w, y0, GREY);
    fill_rect(c, x0, y0 + h, x0 + w, y0 + h, GREY);
    fill_rect(c, x0, y0, x0, y0 + h, GREY);
    fill_rect(c, x0 + w, y0, x0 + w, y0 + h, GREY);
    const char *names[2] = {"original", "smoothed"};
    for (int i = 0; i < 2; i++) {
        int y = y0 + 13 + i * 19;
        stroke_segment(c, x0 + 8, y, x0 + 36, y, 2.08);
        composite(c, BLUE, i == 0 ? 0.4f : 1.0f, 0, 0, PLOT_W - 1, PLOT_H - 1);
        draw_text(c, x0 + 44, y - 7, 2, names[i], BLACK, false);
    }
}

static void draw_curve(Canvas *c, const PlotFrame *f, const double *x, const double *y, size_t n,
                       float alpha) {
    double lw = 1.5 * 100 / 72; /* lines.linewidth 1.5 pt at 100 dpi */
    double pxa = 0, pya = 0;
    bool have = false;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) {
            have = false;
            continue;
        }
        double px, py;
        map_d(f, x[i], y[i], &px, &py);
        if (have) stroke_segment(c, pxa, pya, px, py, lw);
        else stroke_segment(c, px, py, px, py, lw);
        pxa = px;
        pya = py;
        have = true;
    }
    composite(c, BLUE, alpha, f->px0, f->py0, f->px1, f->py1);
}

// --- PNG

static bool write_png(const char *path, const Canvas *c, char *err, size_t errlen) {
    char *tmp = xprintf("%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        errf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return false;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    bool ok = png && info;
    if (ok && setjmp(png_jmpbuf(png))) {
        ok = false;
    } else if (ok) {
        png_init_io(png, fp);
        png_set_IHDR(png, info, PLOT_W, PLOT_H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_set_pHYs(png, info, 3937, 3937, PNG_RESOLUTION_METER); /* 100 dpi */
        png_write_info(png, info);
        for (int y = 0; y < PLOT_H; y++) png_write_row(png, (png_const_bytep)c->px[y]);
        png_write_end(png, NULL);
    }
    png_destroy_write_struct(png ? &png : NULL, info ? &info : NULL);
    if (!ok) errf(err, errlen, "%s: libpng could not write the image", tmp);
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) ok = ok && errf(err, errlen, "%s: %s", tmp, strerror(errno));
    if (fclose(fp) != 0) ok = ok && errf(err, errlen, "%s: %s", tmp, strerror(errno));
    if (ok && rename(tmp, path) != 0) ok = errf(err, errlen, "%s: cannot rename: %s", path, strerror(errno));
    if (!ok) unlink(tmp);
    free(tmp);
    return ok;
}

bool plot_loss_png(const char *path, const double *steps, const double *vals, size_t n,
                   const char *title, const char *ylabel, char *err, size_t errlen) {
    Canvas *c = xcalloc(1, sizeof *c);
    memset(c->px, 255, sizeof c->px);
    PlotFrame f;
    plot_frame(steps, vals, n, &f);
    double *sm = xmalloc((n + 1) * sizeof *sm);
    plot_smooth(vals, n, sm);
    draw_curve(c, &f, steps, vals, n, 0.4f);
    draw_curve(c, &f, steps, sm, n, 1.0f);
    draw_axes(c, &f, title, "step", ylabel);
    draw_legend(c, &f);
    bool ok = write_png(path, c, err, errlen);
    free(sm);
    free(c);
    return ok;
}

bool plot_from_state(const char *output_dir, const TrainerState *st, const char *const *keys,
                     size_t n_keys, int *n_written, char *err, size_t errlen) {
    *n_written = 0;
    double *x = xmalloc((st->n_log + 1) * sizeof *x), *y = xmalloc((st->n_log + 1) * sizeof *y);
    bool ok = true;
    for (size_t k = 0; ok && k < n_keys; k++) {
        size_t n = 0;
        for (size_t i = 0; i < st->n_log; i++) {
            double v, s;
            if (logrec_num(&st->log_history[i], keys[k], &v) &&
                logrec_num(&st->log_history[i], "step", &s)) {
                x[n] = s;
                y[n++] = v;
            }
        }
        if (n == 0) continue; /* LF: "No metric KEY to plot." */
        char *fname = xprintf("training_%s.png", keys[k]);
        for (char *p = fname; *p; p++)
            if (*p == '/') *p = '_';
        char *path = util_path_join(output_dir, fname);
        char *title = xprintf("training %s of %s", keys[k], output_dir);
        ok = plot_loss_png(path, x, y, n, title, keys[k], err, errlen);
        if (ok) (*n_written)++;
        free(title);
        free(path);
        free(fname);
    }
    free(x);
    free(y);
    return ok;
}
