/* test_demo.c - the shipped demo model (assets/demo, trained by tools/train_demo.py): golden images from the
 * C pipeline for two fixed (seed, class) pairs match the committed PNGs in tests/data/demo/ within a mean
 * absolute difference of 1 on the 0..255 scale (25 DDIM steps, guidance 4, the checkpoint's scheduler), and
 * the class names of its id2label resolve. Regenerate the PNGs after retraining with:
 *   ditserve generate --model assets/demo --class C --steps 25 --seed S --guidance 4 --out tests/data/demo/<name>.png */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

#ifdef DS_HAVE_PNG
#include <png.h>
#endif

#define DEMO_DIR  DS_TEST_DATA_DIR "/../../assets/demo"
#define IMAGE_MAD 1.0 /* mean |ours - golden| on the 0..255 scale */

static ds_pipeline *load_demo(void) {
    ds_pipeline *p = NULL;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_pipeline_load(DEMO_DIR, NULL, &p, &err), DS_OK, "load %s: %s", DEMO_DIR, err.msg);
    return p;
}

#ifdef DS_HAVE_PNG
/* Decode an 8-bit RGB PNG file; returns malloc'd pixels [h, w, 3], size into *w, *h. */
static uint8_t *read_png(const char *path, int *w, int *h) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(png && info);
    uint8_t *volatile px = NULL;
    if (setjmp(png_jmpbuf(png))) cr_assert_fail("libpng could not read %s", path);
    png_init_io(png, f);
    png_read_info(png, info);
    *w = (int)png_get_image_width(png, info);
    *h = (int)png_get_image_height(png, info);
    cr_assert_eq(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB, "%s: not RGB", path);
    cr_assert_eq(png_get_bit_depth(png, info), 8, "%s: not 8-bit", path);
    px = malloc((size_t)*w * (size_t)*h * 3);
    cr_assert(px);
    for (int y = 0; y < *h; y++) png_read_row(png, px + (size_t)y * (size_t)*w * 3, NULL);
    png_read_end(png, info);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return px;
}

typedef struct golden {
    uint64_t    seed;
    int32_t     cls;
    const char *file;
} golden;

static const golden GOLDEN[] = {
    {42, 7, "seed42_class7.png"},
    {1234, 3, "seed1234_class3.png"},
};

Test(demo, golden_images) {
    ds_pipeline *p = load_demo();
    for (size_t k = 0; k < sizeof GOLDEN / sizeof GOLDEN[0]; k++) {
        const golden *gd = &GOLDEN[k];
        ds_gen_params g = {0};
        g.steps = 25;
        g.guidance_scale = 4.0f;
        g.scheduler = DS_SCHED_AUTO; /* the checkpoint's DDIMScheduler */
        g.seed = gd->seed;
        g.class_labels = &gd->cls;
        g.n_labels = 1;
        g.num_images = 1;
        ds_gen_result r = {0};
        ds_err err;
        ds_err_clear(&err);
        cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_OK, "generate: %s", err.msg);
        char path[1024];
        snprintf(path, sizeof path, "%s/demo/%s", DS_TEST_DATA_DIR, gd->file);
        int w, h;
        uint8_t *ref = read_png(path, &w, &h);
        cr_assert_eq(r.n_images, 1);
        cr_assert_eq(r.width, w, "%s: width %d != %d", gd->file, r.width, w);
        cr_assert_eq(r.height, h, "%s: height %d != %d", gd->file, r.height, h);
        const size_t n = (size_t)w * (size_t)h * 3;
        double s = 0;
        for (size_t i = 0; i < n; i++) s += fabs((double)r.rgb[i] - (double)ref[i]);
        const double mad = s / (double)n;
        fprintf(stderr, "measured demo %s: image MAD %.4f\n", gd->file, mad);
        cr_assert(mad <= IMAGE_MAD, "%s: mean abs diff %.4f > %.1f", gd->file, mad, IMAGE_MAD);
        free(ref);
        ds_gen_result_free(&r);
    }
    ds_pipeline_free(p);
}
#endif

Test(demo, class_names) {
    ds_pipeline *p = load_demo();
    const char *names[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};
    for (int32_t i = 0; i < 10; i++) {
        int32_t id = -1;
        ds_err err;
        ds_err_clear(&err);
        cr_assert_eq(ds_pipeline_label_id(p, names[i], &id, &err), DS_OK, "%s: %s", names[i], err.msg);
        cr_assert_eq(id, i, "%s -> %d", names[i], id);
        char syn[32];
        snprintf(syn, sizeof syn, "digit %d", i);
        cr_assert_eq(ds_pipeline_label_id(p, syn, &id, &err), DS_OK, "%s: %s", syn, err.msg);
        cr_assert_eq(id, i, "%s -> %d", syn, id);
    }
    /* 10 classes: 10 is the null class, not a requestable label */
    int32_t bad = 10;
    ds_gen_params g = {0};
    g.steps = 1;
    g.guidance_scale = 4.0f;
    g.class_labels = &bad;
    g.n_labels = 1;
    ds_gen_result r = {0};
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_ERR_INVALID_ARG);
    ds_pipeline_free(p);
}
