/* op_shapes.c - shape rules shared by the CPU ops and their CUDA twins (op_shapes.h). */
#include "op_shapes.h"

#include <stdbool.h>

ds_status ds_shape_expect(const ds_tensor *t, int ndim, const int64_t *shape, const char *op, const char *what,
                          ds_err *err) {
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (same) return DS_OK;
    ds_tensor e;
    e.ndim = ndim;
    for (int i = 0; i < ndim && i < DS_MAX_DIMS; i++) e.shape[i] = shape[i];
    char got[96], want[96];
    return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s has shape %s, expected %s", op, what,
                   ds_tensor_shape_str(t, got, sizeof got), ds_tensor_shape_str(&e, want, sizeof want));
}

ds_status ds_shape_rows2d(const ds_tensor *t, int64_t b, int64_t d, const char *op, const char *what, ds_err *err) {
    char buf[96];
    if (t->ndim != 2 || t->shape[0] != b || t->shape[1] != d)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s: expected shape [%lld, %lld], got %s", op, what, (long long)b,
                       (long long)d, ds_tensor_shape_str(t, buf, sizeof buf));
    if (d > 1 && t->stride[1] != 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s: inner stride %lld, must be 1", op, what,
                       (long long)t->stride[1]);
    if (b > 1 && t->stride[0] < d)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s: row stride %lld smaller than the row length %lld", op, what,
                       (long long)t->stride[0], (long long)d);
    return DS_OK;
}

ds_status ds_shape_conv2d(const ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias,
                          int padding, const char *op, ds_err *err) {
    const int64_t B = x->shape[0], cin = x->shape[1], h = x->shape[2], wd = x->shape[3]; /* x [B, Cin, H, W] */
    const int64_t cout = w->shape[0], k = w->shape[2];                                    /* w [Cout, Cin, k, k] */
    if (w->shape[3] != k || (k != 1 && k != 3))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: kernel %lldx%lld, only square 1x1 and 3x3 are supported", op,
                       (long long)w->shape[2], (long long)w->shape[3]);
    if (padding != (k - 1) / 2)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: padding %d with a %lldx%lld kernel, expected %lld", op, padding,
                       (long long)k, (long long)k, (long long)((k - 1) / 2));
    if (w->shape[1] != cin)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: weight has %lld input channels, x has %lld", op,
                       (long long)w->shape[1], (long long)cin);
    if (bias && bias->shape[0] != cout)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bias has %lld entries, weight has %lld output channels", op,
                       (long long)bias->shape[0], (long long)cout);
    const int64_t ho = h + 2 * padding - k + 1, wo = wd + 2 * padding - k + 1;
    const int64_t oshape[4] = {B, cout, ho, wo}; /* out [B, Cout, Ho, Wo] */
    return ds_shape_expect(out, 4, oshape, op, "out", err);
}

ds_status ds_shape_patch(const ds_tensor *img, const ds_tensor *tok, int64_t p, const char *op, const char *img_what,
                         const char *tok_what, ds_err *err) {
    if (p < 1) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: patch size %lld < 1", op, (long long)p);
    const int64_t B = img->shape[0], C = img->shape[1], H = img->shape[2], W = img->shape[3]; /* [B, C, H, W] */
    if (H % p != 0 || W % p != 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s image %lld x %lld is not a multiple of the patch size %lld", op,
                       img_what, (long long)H, (long long)W, (long long)p);
    const int64_t tshape[3] = {B, (H / p) * (W / p), C * p * p}; /* [B, Hp*Wp, C*p*p] */
    return ds_shape_expect(tok, 3, tshape, op, tok_what, err);
}

ds_status ds_shape_rope(const ds_tensor *x, const ds_tensor *cos_t, const ds_tensor *sin_t, const char *op,
                        ds_err *err) {
    const int64_t n_tok = x->shape[1], d = x->shape[3];
    if (d % 2 != 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: head dim d = %lld is odd (RoPE rotates pairs)", op, (long long)d);
    if (cos_t->ndim != 2 || sin_t->ndim != 2 || cos_t->shape[0] != n_tok || cos_t->shape[1] != d ||
        sin_t->shape[0] != n_tok || sin_t->shape[1] != d) {
        char cb[96], sb[96];
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: cos %s and sin %s must both be [%lld, %lld] (x is [B, N, H, d])",
                       op, ds_tensor_shape_str(cos_t, cb, sizeof cb), ds_tensor_shape_str(sin_t, sb, sizeof sb),
                       (long long)n_tok, (long long)d);
    }
    return DS_OK;
}

ds_status ds_shape_timestep_embedding(const ds_tensor *out, const ds_tensor *t, float downscale_freq_shift,
                                      float max_period, const char *op, int64_t *half, float *denom, ds_err *err) {
    const int64_t B = t->shape[0], C = out->shape[1];
    if (out->shape[0] != B)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out has %lld rows but t has %lld timesteps", op,
                       (long long)out->shape[0], (long long)B);
    if (C < 2) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: embedding width C = %lld < 2", op, (long long)C);
    if (!(max_period > 0)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: max_period %g <= 0", op, (double)max_period);
    *half = C / 2;
    *denom = (float)((double)*half - (double)downscale_freq_shift);
    if (*denom == 0.0f)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: half width %lld equals downscale_freq_shift %g", op,
                       (long long)*half, (double)downscale_freq_shift);
    return DS_OK;
}
