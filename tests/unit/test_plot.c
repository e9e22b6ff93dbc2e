/* test_plot.c - training_loss.png: LF's smoothing, and a PNG that decodes to the picture.
 *
 * Oracles: tests/fixtures/train/smooth.json (llamafactory.extras.ploting.smooth on 5 series,
 * tests/golden/gen_train_fixtures.py); libpng reading back what we wrote; the curve's pixels
 * where plot_map puts the data; the real trainer_state.json in trainer_files.json for the
 * keys LF plots.
 */
#include "testutil.h"

#include <math.h>
#include <png.h>
#include <unistd.h>

#include "json.h"
#include "plot.h"
#include "util.h"

/* Decode a PNG as 8-bit RGB with libpng; returns the pixels (w*h*3). */
static uint8_t *read_png(const char *path, int *w, int *h) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) fail_msg("%s: %s", path, img.message);
    img.format = PNG_FORMAT_RGB;
    uint8_t *buf = xmalloc(PNG_IMAGE_SIZE(img));
    if (!png_image_finish_read(&img, NULL, buf, 0, NULL)) fail_msg("%s: %s", path, img.message);
    *w = (int)img.width;
    *h = (int)img.height;
    return buf;
}

static bool near_color(const uint8_t *px, int r, int g, int b, int tol) {
    return abs(px[0] - r) <= tol && abs(px[1] - g) <= tol && abs(px[2] - b) <= tol;
}

/* Is there a pixel of this colour within `rad` of (x, y)? */
static bool color_near(const uint8_t *img, int x, int y, int rad, int r, int g, int b, int tol) {
    for (int dy = -rad; dy <= rad; dy++)
        for (int dx = -rad; dx <= rad; dx++) {
            int xx = x + dx, yy = y + dy;
            if (xx >= 0 && yy >= 0 && xx < PLOT_W && yy < PLOT_H &&
                near_color(img + 3 * (yy * PLOT_W + xx), r, g, b, tol))
                return true;
        }
    return false;
}

static void test_smooth_matches_llamafactory(void **state) {
    (void)state;
    JsonDoc *doc = test_load_json("tests/fixtures/train/smooth.json");
    const Json *series = json_get(json_root(doc), "series");
    assert_int_equal(series->arr.n, 5);
    for (size_t s = 0; s < series->arr.n; s++) {
        const Json *raw = json_get(series->arr.items[s], "raw");
        const Json *want = json_get(series->arr.items[s], "smooth");
        size_t n = raw->arr.n;
        double *y = xmalloc(n * sizeof *y), *out = xmalloc(n * sizeof *out);
        for (size_t i = 0; i < n; i++) assert_true(json_as_double(raw->arr.items[i], &y[i]));
        plot_smooth(y, n, out);
        for (size_t i = 0; i < n; i++) {
            double w;
            assert_true(json_as_double(want->arr.items[i], &w));
            if (out[i] != w) fail_msg("series %zu point %zu: %.17g, LF %.17g", s, i, out[i], w);
        }
        free(y);
        free(out);
    }
    json_free(doc);
}

static void test_png_has_the_curves(void **state) {
    (void)state;
    enum { N = 60 };
    double x[N], y[N], sm[N];
    for (int i = 0; i < N; i++) {
        x[i] = 10.0 * (i + 1);
        y[i] = 2.5 * exp(-i / 15.0) + 0.5 + ((i % 2) ? 0.25 : -0.25); /* noisy: raw strays */
    }
    plot_smooth(y, N, sm);
    char *dir = test_tmpdir();
    char *path = util_path_join(dir, "training_loss.png");
    char err[ERR_LEN];
    if (!plot_loss_png(path, x, y, N, "training loss of saves/demo", "loss", err, sizeof err))
        fail_msg("%s", err);
    int w, h;
    uint8_t *img = read_png(path, &w, &h);
    assert_int_equal(w, 640);
    assert_int_equal(h, 480);
    assert_true(near_color(img, 255, 255, 255, 0)); /* background */
    PlotFrame f;
    plot_frame(x, y, N, &f);
    /* the smoothed curve in #1f77b4 at its points (those below the legend box) */
    int hits = 0, raw_hits = 0;
    for (int i = 5; i < N; i++) {
        int px, py;
        plot_map(&f, x[i], sm[i], &px, &py);
        if (py < f.py0 + 60 && px > f.px1 - 170) continue;
        hits += color_near(img, px, py, 1, 0x1f, 0x77, 0xb4, 0);
        plot_map(&f, x[i], y[i], &px, &py);
        /* the raw curve: #1f77b4 at alpha 0.4 over white = (165, 200, 225) */
        raw_hits += color_near(img, px, py, 1, 165, 200, 225, 2);
    }
    if (hits < 50 || raw_hits < 45) fail_msg("smoothed %d / 55, raw %d / 55 points found", hits, raw_hits);
    /* axes box, title ink, y label ink */
    for (int xx = f.px0; xx <= f.px1; xx += 7) assert_true(near_color(img + 3 * (f.py1 * PLOT_W + xx), 0, 0, 0, 0));
    int ink = 0;
    for (int yy = f.py0 - 30; yy < f.py0 - 5; yy++)
        for (int xx = 100; xx < 540; xx++) ink += near_color(img + 3 * (yy * PLOT_W + xx), 0, 0, 0, 0);
    assert_true(ink > 300);
    ink = 0;
    for (int yy = 200; yy < 280; yy++)
        for (int xx = 10; xx < 30; xx++) ink += near_color(img + 3 * (yy * PLOT_W + xx), 0, 0, 0, 0);
    assert_true(ink > 40);
    free(img);
    free(path);
    test_rm_rf(dir);
    free(dir);
}

static void test_plot_from_trainer_state(void **state) {
    (void)state;
    JsonDoc *doc = test_load_json("tests/fixtures/train/trainer_files.json");
    const char *text = json_as_str(json_get(json_get(json_root(doc), "files"), "trainer_state.json"));
    TrainerState st;
    char err[ERR_LEN];
    assert_true(trainlog_state_parse(&st, text, strlen(text), "trainer_state.json", err, sizeof err));
    char *dir = test_tmpdir();
    const char *keys[] = {"loss", "eval_loss", "eval_accuracy"}; /* what LF asks for */
    int n = 0;
    if (!plot_from_state(dir, &st, keys, 3, &n, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(n, 1); /* no eval in that run */
    char *p = util_path_join(dir, "training_loss.png");
    int w, h;
    uint8_t *img = read_png(p, &w, &h);
    assert_int_equal(w * h, 640 * 480);
    free(img);
    free(p);
    LogRec e = {0};
    logrec_float(&e, "eval_loss", 3.5);
    logrec_int(&e, "step", 6);
    trainlog_state_append(&st, &e);
    logrec_free(&e);
    assert_true(plot_from_state(dir, &st, keys, 3, &n, err, sizeof err));
    assert_int_equal(n, 2);
    p = util_path_join(dir, "training_eval_loss.png");
    img = read_png(p, &w, &h); /* a single point still draws */
    free(img);
    free(p);
    trainlog_state_free(&st);
    test_rm_rf(dir);
    free(dir);
    json_free(doc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smooth_matches_llamafactory),
        cmocka_unit_test(test_png_has_the_curves),
        cmocka_unit_test(test_plot_from_trainer_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
