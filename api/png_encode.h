/* png_encode.h - RGB8 images to PNG (libpng), in memory or to a file, with tEXt chunks carrying the
 * generation parameters (model, seed, steps, cache config ...). Built only when libpng is found
 * (DS_HAVE_PNG); callers check that macro. Runs off the per-step path (HTTP thread / CLI), so it
 * allocates its output. */
#ifndef DS_PNG_ENCODE_H
#define DS_PNG_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* One tEXt chunk. Keys are 1-79 Latin-1 characters without leading/trailing spaces (PNG rule). */
typedef struct ds_png_text {
    const char *key;
    const char *value;
} ds_png_text;

/* Encode rgb [h, w, 3] (row-major, 8 bits per channel) as an 8-bit RGB PNG. On success *out is a
 * malloc'd buffer of *out_len bytes owned by the caller (free()). text may be NULL when n_text is 0.
 * Errors: DS_ERR_INVALID_ARG (size <= 0 or > 65535, bad key), DS_ERR_OOM, DS_ERR_INTERNAL (libpng). */
ds_status ds_png_encode(const uint8_t *rgb, int width, int height, const ds_png_text *text, int n_text, uint8_t **out,
                        size_t *out_len, ds_err *err);

/* Encode and write to `path` (replaced if it exists). Errors as ds_png_encode plus DS_ERR_IO naming the
 * path. */
ds_status ds_png_write_file(const char *path, const uint8_t *rgb, int width, int height, const ds_png_text *text,
                            int n_text, ds_err *err);

#endif /* DS_PNG_ENCODE_H */
