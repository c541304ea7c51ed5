/* test_png.c - PNG encoding: pixels and tEXt chunks survive a round trip through libpng's reader,
 * and bad arguments are refused with a message. */
#include <criterion/criterion.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "png_encode.h"

typedef struct mem_reader {
    const uint8_t *p;
    size_t         len, at;
} mem_reader;

static void mem_read(png_structp png, png_bytep out, png_size_t n) {
    mem_reader *r = png_get_io_ptr(png);
    if (r->at + n > r->len) png_error(png, "read past end");
    memcpy(out, r->p + r->at, n);
    r->at += n;
}

/* Decode an 8-bit RGB PNG into pixels [h, w, 3]; copy the value of tEXt `key` into val. */
static void decode(const uint8_t *data, size_t len, int w, int h, uint8_t *pixels, const char *key, char *val, size_t vlen) {
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(png && info);
    mem_reader r = {data, len, 0};
    if (setjmp(png_jmpbuf(png))) cr_assert_fail("libpng could not read our PNG");
    png_set_read_fn(png, &r, mem_read);
    png_read_info(png, info);
    cr_assert_eq((int)png_get_image_width(png, info), w);
    cr_assert_eq((int)png_get_image_height(png, info), h);
    cr_assert_eq(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
    cr_assert_eq(png_get_bit_depth(png, info), 8);
    for (int y = 0; y < h; y++) png_read_row(png, pixels + (size_t)y * w * 3, NULL);
    png_read_end(png, info);
    png_textp text;
    int n = 0;
    png_get_text(png, info, &text, &n);
    val[0] = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(text[i].key, key)) snprintf(val, vlen, "%s", text[i].text);
    png_destroy_read_struct(&png, &info, NULL);
}

Test(png, round_trip_pixels_and_text) {
    const int w = 37, h = 13; /* odd sizes */
    uint8_t *rgb = malloc((size_t)w * h * 3), *back = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) rgb[i] = (uint8_t)(i * 7 + (i / 3) * 13);
    const ds_png_text text[] = {{"ditserve", "{\"model\":\"demo\",\"seed\":42,\"steps\":25}"}, {"Software", "ditserve"}};
    uint8_t *png;
    size_t len;
    ds_err err;
    cr_assert_eq(ds_png_encode(rgb, w, h, text, 2, &png, &len, &err), DS_OK, "%s", err.msg);
    cr_assert_gt(len, 8);
    cr_assert(memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
    char val[256];
    decode(png, len, w, h, back, "ditserve", val, sizeof val);
    cr_assert(memcmp(rgb, back, (size_t)w * h * 3) == 0, "pixels differ after the round trip");
    cr_assert_str_eq(val, "{\"model\":\"demo\",\"seed\":42,\"steps\":25}");
    free(png);
    free(rgb);
    free(back);
}

Test(png, write_file_and_errors) {
    uint8_t px[3] = {255, 0, 128};
    char path[] = "/tmp/ds_png_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    ds_err err;
    cr_assert_eq(ds_png_write_file(path, px, 1, 1, NULL, 0, &err), DS_OK, "%s", err.msg);
    FILE *f = fopen(path, "rb");
    uint8_t data[4096];
    size_t len = fread(data, 1, sizeof data, f);
    fclose(f);
    unlink(path);
    uint8_t back[3];
    char val[8];
    decode(data, len, 1, 1, back, "none", val, sizeof val);
    cr_assert(memcmp(px, back, 3) == 0);

    uint8_t *out;
    size_t n;
    cr_assert_eq(ds_png_encode(px, 0, 1, NULL, 0, &out, &n, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "0x1") != NULL, "%s", err.msg);
    cr_assert_eq(ds_png_encode(px, 70000, 1, NULL, 0, &out, &n, &err), DS_ERR_INVALID_ARG);
    const ds_png_text bad[] = {{"", "x"}};
    cr_assert_eq(ds_png_encode(px, 1, 1, bad, 1, &out, &n, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_png_write_file("/nonexistent-dir/x.png", px, 1, 1, NULL, 0, &err), DS_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent-dir/x.png") != NULL);
}
