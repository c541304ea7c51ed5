/* test_util.h - shared helpers for the Criterion tests: reference-data loading and the house
 * comparison rule (relative error ||out-ref||/||ref|| plus per-element atol + rtol*|ref|). */
#ifndef DS_TEST_UTIL_H
#define DS_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline.h"
#include "safetensors.h"
#include "tensor.h"

/* Open tests/data/<relpath> with our reader; fails the current test (cr_assert) on error. */
ds_safetensors *ds_test_open(const char *relpath);

/* Read tensor `name` from st as f32 into a malloc'd buffer (caller frees); shape into *t (if non-NULL,
 * a contiguous f32 CPU tensor over the returned buffer). Fails the test if missing. */
float *ds_test_read_f32(const ds_safetensors *st, const char *name, ds_tensor *t);

/* The FLUX request of an exported pipeline reference (tools/export_pipelines.py): prompt_embeds, pooled and,
 * when present, the negative pair into t[0..4) over malloc'd buffers bufs[0..4) (caller frees; unused slots
 * NULL), pointed to from g, plus g's width, height, true_cfg_scale and num_images from the metadata. */
void ds_test_flux_request(const ds_safetensors *st, ds_gen_params *g, ds_tensor t[4], float *bufs[4]);

/* Metadata value parsed as a number; fails the test if missing. */
double ds_test_meta_num(const ds_safetensors *st, const char *key);

/* Result of comparing out against ref. */
typedef struct ds_test_cmp {
    double  rel_err;     /* ||out - ref||_2 / ||ref||_2 (0 if ref is all zero and out equal) */
    double  max_abs;     /* max |out - ref| */
    int64_t n_bad;       /* elements with |out - ref| > atol + rtol*|ref| (or non-finite out) */
    int64_t first_bad;   /* index of the first bad element, -1 if none */
} ds_test_cmp;

ds_test_cmp ds_test_compare(const float *out, const float *ref, int64_t n, double atol, double rtol);

/* Assert rel_err <= max_rel and no element outside atol + rtol*|ref|; the message names `what`. */
void ds_test_assert_close(const float *out, const float *ref, int64_t n, double max_rel, double atol, double rtol,
                          const char *what);

/* ---- temporary checkpoint directories (tests that write modified copies) ---------------------- */

/* Create a fresh directory /tmp/ds_<tag>_XXXXXX; its path into buf (len >= 64). Fails the test on error. */
void ds_test_mkdtemp(char *buf, size_t len, const char *tag);

/* Remove `dir` and everything below it (no-op if it does not exist). */
void ds_test_rmtree(const char *dir);

/* Whole file as a malloc'd NUL-terminated buffer (caller frees); its length into *len. Fails the test if
 * the file cannot be read. */
char *ds_test_slurp(const char *path, size_t *len);

/* Write data[0..len) to <dir>/<rel> (dir NULL: rel is the path), creating missing parent directories
 * below dir. Fails the test on error. */
void ds_test_write(const char *dir, const char *rel, const void *data, size_t len);

/* A malloc'd copy of text with the first `from` replaced by `to` (fails the test if from is absent). */
char *ds_test_replace(const char *text, const char *from, const char *to);

#endif /* DS_TEST_UTIL_H */
