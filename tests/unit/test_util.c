/* test_util.c - implementation of the Criterion test helpers in test_util.h. */
#include "test_util.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

ds_safetensors *ds_test_open(const char *relpath) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", DS_TEST_DATA_DIR, relpath);
    ds_safetensors *st = NULL;
    ds_err err;
    ds_err_clear(&err);
    ds_status s = ds_safetensors_open(path, &st, &err);
    cr_assert_eq(s, DS_OK, "cannot open %s: %s", path, err.msg);
    return st;
}

float *ds_test_read_f32(const ds_safetensors *st, const char *name, ds_tensor *t) {
    const ds_st_tensor *info = ds_safetensors_find(st, name);
    cr_assert_not_null(info, "reference tensor '%s' missing in %s", name, ds_safetensors_label(st));
    int64_t n = 1;
    for (int i = 0; i < info->ndim; i++) n *= info->shape[i];
    float *buf = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    cr_assert_not_null(buf);
    ds_err err;
    ds_err_clear(&err);
    ds_status s = ds_safetensors_read(st, name, DS_F32, buf, (size_t)n * sizeof(float), -1, NULL, &err);
    cr_assert_eq(s, DS_OK, "read %s: %s", name, err.msg);
    if (t) *t = ds_tensor_make(buf, DS_F32, info->ndim, info->shape);
    return buf;
}

double ds_test_meta_num(const ds_safetensors *st, const char *key) {
    const char *v = ds_safetensors_metadata(st, key);
    cr_assert_not_null(v, "metadata '%s' missing in %s", key, ds_safetensors_label(st));
    return strtod(v, NULL);
}

ds_test_cmp ds_test_compare(const float *out, const float *ref, int64_t n, double atol, double rtol) {
    ds_test_cmp c = {0, 0, 0, -1};
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double o = out[i], r = ref[i], d = fabs(o - r);
        num += (o - r) * (o - r);
        den += r * r;
        if (!(d <= atol + rtol * fabs(r))) { /* also catches NaN */
            if (c.first_bad < 0) c.first_bad = i;
            c.n_bad++;
        }
        if (d > c.max_abs || d != d) c.max_abs = d;
    }
    c.rel_err = den > 0 ? sqrt(num) / sqrt(den) : sqrt(num);
    return c;
}

void ds_test_assert_close(const float *out, const float *ref, int64_t n, double max_rel, double atol, double rtol,
                          const char *what) {
    ds_test_cmp c = ds_test_compare(out, ref, n, atol, rtol);
    cr_assert(c.rel_err <= max_rel, "%s: relative error %.3e > %.1e (max abs %.3e)", what, c.rel_err, max_rel,
              c.max_abs);
    cr_assert(c.n_bad == 0, "%s: %lld of %lld elements outside atol %.1e + rtol %.1e*|ref|; first at %lld: out %.8g ref %.8g",
              what, (long long)c.n_bad, (long long)n, atol, rtol, (long long)c.first_bad,
              c.first_bad >= 0 ? out[c.first_bad] : 0.0, c.first_bad >= 0 ? ref[c.first_bad] : 0.0);
}

void ds_test_mkdtemp(char *buf, size_t len, const char *tag) {
    int n = snprintf(buf, len, "/tmp/ds_%s_XXXXXX", tag);
    cr_assert(n > 0 && (size_t)n < len, "temp dir name too long");
    cr_assert_not_null(mkdtemp(buf), "mkdtemp %s", buf);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

void ds_test_rmtree(const char *dir) {
    if (dir && *dir) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *ds_test_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    cr_assert_geq(n, 0, "cannot size %s", path);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n, "short read of %s", path);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

void ds_test_write(const char *dir, const char *rel, const void *data, size_t len) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s%s", dir ? dir : "", dir ? "/" : "", rel);
    for (char *p = path + (dir ? strlen(dir) + 1 : 1); *p; p++) /* parents below dir */
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    if (len) cr_assert_eq(fwrite(data, 1, len, f), len, "short write to %s", path);
    fclose(f);
}

char *ds_test_replace(const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    cr_assert_not_null(at, "'%s' not found", from);
    size_t pre = (size_t)(at - text), fl = strlen(from), tl = strlen(to), rest = strlen(at + fl);
    char *o = malloc(pre + tl + rest + 1);
    cr_assert_not_null(o);
    memcpy(o, text, pre);
    memcpy(o + pre, to, tl);
    memcpy(o + pre + tl, at + fl, rest + 1);
    return o;
}

void ds_test_flux_request(const ds_safetensors *st, ds_gen_params *g, ds_tensor t[4], float *bufs[4]) {
    for (int i = 0; i < 4; i++) bufs[i] = NULL;
    bufs[0] = ds_test_read_f32(st, "prompt_embeds", &t[0]);
    bufs[1] = ds_test_read_f32(st, "pooled_prompt_embeds", &t[1]);
    g->prompt_embeds = &t[0];
    g->pooled_prompt_embeds = &t[1];
    if (ds_safetensors_find(st, "negative_prompt_embeds")) {
        bufs[2] = ds_test_read_f32(st, "negative_prompt_embeds", &t[2]);
        bufs[3] = ds_test_read_f32(st, "negative_pooled_prompt_embeds", &t[3]);
        g->negative_prompt_embeds = &t[2];
        g->negative_pooled_prompt_embeds = &t[3];
    }
    g->width = (int)ds_test_meta_num(st, "width");
    g->height = (int)ds_test_meta_num(st, "height");
    g->true_cfg_scale = (float)ds_test_meta_num(st, "true_cfg_scale");
    g->num_images = (int)ds_test_meta_num(st, "num_images");
}
