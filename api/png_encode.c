/* png_encode.c - libpng writer into a growable memory buffer (see png_encode.h). */
#include "png_encode.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct png_buf {
    uint8_t *data;
    size_t   len, cap;
    int      oom;
} png_buf;

static void buf_write(png_structp png, png_bytep bytes, png_size_t n) {
    png_buf *b = png_get_io_ptr(png);
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
}

static void buf_flush(png_structp png) { (void)png; }

/* libpng reports errors by longjmp; keep its message for ds_err. */
typedef struct png_ctx {
    jmp_buf jmp;
    char    msg[160];
} png_ctx;

static void on_error(png_structp png, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    longjmp(c->jmp, 1);
}

static void on_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static int key_ok(const char *k) {
    size_t n = k ? strlen(k) : 0;
    return n >= 1 && n <= 79 && k[0] != ' ' && k[n - 1] != ' ';
}

ds_status ds_png_encode(const uint8_t *rgb, int width, int height, const ds_png_text *text, int n_text, uint8_t **out,
                        size_t *out_len, ds_err *err) {
    *out = NULL;
    *out_len = 0;
    if (!rgb || width <= 0 || height <= 0 || width > 65535 || height > 65535)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "png: image size %dx%d out of range (1..65535)", width, height);
    for (int i = 0; i < n_text; i++)
        if (!key_ok(text[i].key) || !text[i].value)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "png: invalid tEXt key #%d", i);

    /* volatile: these are read after a longjmp back into this frame */
    png_ctx ctx;
    ctx.msg[0] = 0;
    png_buf *volatile buf = calloc(1, sizeof(png_buf));
    png_textp volatile chunks = n_text ? calloc((size_t)n_text, sizeof(png_text)) : NULL;
    if (!buf || (n_text && !chunks)) {
        free(buf);
        free(chunks);
        return DS_FAIL(err, DS_ERR_OOM, "png: out of memory");
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        free(buf);
        free(chunks);
        return DS_FAIL(err, DS_ERR_OOM, "png: cannot create the libpng writer");
    }
    if (setjmp(ctx.jmp)) {
        png_destroy_write_struct(&png, &info);
        free(buf->data);
        free(buf);
        free(chunks);
        return DS_FAIL(err, DS_ERR_INTERNAL, "png: libpng failed: %s", ctx.msg);
    }
    png_set_write_fn(png, buf, buf_write, buf_flush);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 6);
    for (int i = 0; i < n_text; i++) {
        chunks[i].compression = PNG_TEXT_COMPRESSION_NONE;
        chunks[i].key = (png_charp)text[i].key;
        chunks[i].text = (png_charp)text[i].value;
    }
    if (n_text) png_set_text(png, info, chunks, n_text);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)width * 3));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(chunks);
    if (buf->oom) {
        free(buf->data);
        free(buf);
        return DS_FAIL(err, DS_ERR_OOM, "png: out of memory while encoding %dx%d", width, height);
    }
    *out = buf->data;
    *out_len = buf->len;
    free(buf);
    return DS_OK;
}

ds_status ds_png_write_file(const char *path, const uint8_t *rgb, int width, int height, const ds_png_text *text,
                            int n_text, ds_err *err) {
    uint8_t *data;
    size_t len;
    DS_TRY(ds_png_encode(rgb, width, height, text, n_text, &data, &len, err));
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(data);
        return DS_FAIL(err, DS_ERR_IO, "cannot write %s", path);
    }
    size_t w = fwrite(data, 1, len, f);
    int rc = fclose(f);
    free(data);
    if (w != len || rc != 0) return DS_FAIL(err, DS_ERR_IO, "short write to %s", path);
    return DS_OK;
}
