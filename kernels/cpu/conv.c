/* conv.c - 2-D convolution on the CPU (stride 1, square 1x1 / 3x3 kernels with "same" padding, as
 * the VAE decoder uses them): per image, im2col into caller-owned scratch, then one OpenBLAS sgemm
 * against the weight viewed as [Cout, Cin·k·k]. A 1x1 kernel skips im2col (x already is [Cin, H·W]). */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "image_util.h"
#include "ops.h"

/* Bytes of scratch ds_op_conv2d needs for one image of [cin, h, w] with a k x k kernel and `padding`:
 * the im2col matrix [cin·k·k, Ho·Wo] in f32 (Ho = h + 2·padding − k + 1), or 0 for k = 1, padding 0.
 * Returns 0 for non-positive sizes (ds_op_conv2d then rejects the shapes). */
size_t ds_op_conv2d_scratch_bytes(int64_t cin, int64_t h, int64_t w, int64_t k, int64_t padding) {
    if (cin <= 0 || h <= 0 || w <= 0 || k <= 0 || padding < 0) return 0;
    if (k == 1 && padding == 0) return 0;
    const int64_t ho = h + 2 * padding - k + 1, wo = w + 2 * padding - k + 1;
    if (ho <= 0 || wo <= 0) return 0;
    return (size_t)cin * (size_t)k * (size_t)k * (size_t)ho * (size_t)wo * sizeof(float);
}

/* col[(c·k + u)·k + v, oy·Wo + ox] = x[c, oy + u − pad, ox + v − pad], 0 outside the image.
 * x: [Cin, H, W]; col: [Cin·k·k, Ho·Wo]. */
static void im2col(float *col, const float *x, int64_t cin, int64_t h, int64_t w, int64_t k, int64_t pad,
                   int64_t ho, int64_t wo) {
    const int64_t rows = cin * k * k;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t c = r / (k * k), u = (r / k) % k, v = r % k;
        const float *xc = x + c * h * w;
        float *dst = col + r * ho * wo;
        for (int64_t oy = 0; oy < ho; oy++) {
            const int64_t iy = oy + u - pad;
            float *d = dst + oy * wo;
            if (iy < 0 || iy >= h) {
                memset(d, 0, (size_t)wo * sizeof(float));
                continue;
            }
            const float *src = xc + iy * w;
            for (int64_t ox = 0; ox < wo; ox++) {
                const int64_t ix = ox + v - pad;
                d[ox] = (ix >= 0 && ix < w) ? src[ix] : 0.0f;
            }
        }
    }
}

/* Contract in ops.h. x: [B, Cin, H, W]; w: [Cout, Cin, k, k] with k in {1, 3} and padding == (k−1)/2;
 * bias: [Cout] or NULL; out: [B, Cout, Ho, Wo] (Ho = H, Wo = W for these kernels), must not alias x.
 * scratch: at least ds_op_conv2d_scratch_bytes(Cin, H, W, k, padding) bytes (may be NULL when that is
 * 0). Errors: DS_ERR_INVALID_ARG for shapes, kernel size, padding, missing/small scratch, aliasing. */
ds_status ds_op_conv2d(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias, int padding,
                       void *scratch, size_t scratch_bytes, ds_err *err) {
    static const char op[] = "ds_op_conv2d";
    DS_TRY(ds_img_check(x, 4, op, "x", err));
    DS_TRY(ds_img_check(w, 4, op, "weight", err));
    DS_TRY(ds_img_check(out, 4, op, "out", err));
    if (bias) DS_TRY(ds_img_check(bias, 1, op, "bias", err));
    const int64_t B = x->shape[0], cin = x->shape[1], h = x->shape[2], wd = x->shape[3];
    const int64_t cout = w->shape[0], k = w->shape[2];
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
    const int64_t oshape[4] = {B, cout, ho, wo};
    DS_TRY(ds_img_expect_shape(out, 4, oshape, op, "out", err));
    {
        const char *o0 = out->data, *x0 = x->data;
        if (o0 < x0 + ds_tensor_nbytes(x) && x0 < o0 + ds_tensor_nbytes(out))
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out overlaps x", op);
    }
    const size_t need = ds_op_conv2d_scratch_bytes(cin, h, wd, k, padding);
    if (need > 0 && (!scratch || scratch_bytes < need))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: scratch of %zu bytes%s, need %zu", op, scratch_bytes,
                       scratch ? "" : " (NULL)", need);
    if (B == 0 || cout == 0 || ho * wo == 0) return DS_OK;
    if (cout > INT_MAX || ho * wo > INT_MAX || cin * k * k > INT_MAX)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: a GEMM dimension exceeds INT_MAX (BLAS int)", op);

    const int64_t K = cin * k * k, P = ho * wo;
    const float *xs = x->data, *ws = w->data;
    float *os = out->data;
    for (int64_t b = 0; b < B; b++) {
        const float *xb = xs + b * cin * h * wd;
        float *ob = os + b * cout * P;
        const float *col = xb;
        if (need > 0) {
            im2col(scratch, xb, cin, h, wd, k, padding, ho, wo);
            col = scratch;
        }
        float beta = 0.0f;
        if (bias) {
            const float *bs = bias->data;
#pragma omp parallel for schedule(static)
            for (int64_t c = 0; c < cout; c++)
                for (int64_t p = 0; p < P; p++) ob[c * P + p] = bs[c];
            beta = 1.0f;
        }
        if (K == 0) {
            if (!bias) memset(ob, 0, (size_t)(cout * P) * sizeof(float));
            continue;
        }
        /* out_b [Cout, P] = w [Cout, K] · col [K, P] (+ bias already in out_b). */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout, (int)P, (int)K, 1.0f, ws, (int)K, col,
                    (int)P, beta, ob, (int)P);
    }
    return DS_OK;
}
