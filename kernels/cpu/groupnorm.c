/* groupnorm.c - GroupNorm on the CPU (torch.nn.functional.group_norm semantics), used by the VAE
 * decoder's ResNet and attention blocks. Statistics are accumulated in fp64 (two passes), so the
 * result is the f32 rounding of the exact normalisation up to fp64 error. */
#include <math.h>

#include "image_util.h"
#include "ops.h"
#include "ops_dispatch.h"

/* Contract in ops.h. x, out: [B, C, H, W] or [B, C, L] (same shape); G = groups divides C; group g
 * holds channels [g·C/G, (g+1)·C/G); mean and biased variance over those channels' spatial extent;
 * out = (x − mean)/sqrt(var + eps) · weight[c] + bias[c] (weight, bias: [C] or NULL, independently).
 * In place OK (out == x). Errors: DS_ERR_INVALID_ARG (ndim not 3/4, shapes, G <= 0 or not dividing C,
 * eps < 0). */
ds_status ds_op_groupnorm(ds_tensor *out, const ds_tensor *x, int64_t groups, const ds_tensor *weight,
                          const ds_tensor *bias, float eps, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_groupnorm(out, x, groups, weight, bias, eps, err));
    static const char op[] = "ds_op_groupnorm";
    DS_TRY(ds_img_check(x, -1, op, "x", err));
    DS_TRY(ds_img_check(out, -1, op, "out", err));
    if (x->ndim != 3 && x->ndim != 4) {
        char b[96];
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: x has shape %s, expected [B, C, H, W] or [B, C, L]", op,
                       ds_tensor_shape_str(x, b, sizeof b));
    }
    DS_TRY(ds_img_expect_shape(out, x->ndim, x->shape, op, "out", err));
    const int64_t B = x->shape[0], C = x->shape[1];
    if (groups <= 0 || C % groups != 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %lld channels are not divisible into %lld groups", op,
                       (long long)C, (long long)groups);
    if (!(eps >= 0)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: eps %g < 0", op, (double)eps);
    if (weight) {
        DS_TRY(ds_img_check(weight, 1, op, "weight", err));
        if (weight->shape[0] != C)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: weight has %lld entries, x has %lld channels", op,
                           (long long)weight->shape[0], (long long)C);
    }
    if (bias) {
        DS_TRY(ds_img_check(bias, 1, op, "bias", err));
        if (bias->shape[0] != C)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bias has %lld entries, x has %lld channels", op,
                           (long long)bias->shape[0], (long long)C);
    }
    if (out->data != x->data) {
        const char *o0 = out->data, *x0 = x->data;
        const int64_t nb = ds_tensor_nbytes(x);
        if (o0 < x0 + nb && x0 < o0 + nb)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out partially overlaps x", op);
    }

    const int64_t S = x->ndim == 4 ? x->shape[2] * x->shape[3] : x->shape[2]; /* spatial size */
    const int64_t cg = C / groups, n = cg * S;                                  /* per group */
    if (n == 0) return DS_OK;
    const float *xs = x->data, *ws = weight ? weight->data : NULL, *bs = bias ? bias->data : NULL;
    float *os = out->data;
#pragma omp parallel for schedule(static)
    for (int64_t bg = 0; bg < B * groups; bg++) {
        const float *xg = xs + bg * n; /* channels of one group are contiguous: [cg, S] */
        float *og = os + bg * n;
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += xg[i];
        const double mean = sum / (double)n;
        double sq = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const double dlt = xg[i] - mean;
            sq += dlt * dlt;
        }
        const double rstd = 1.0 / sqrt(sq / (double)n + (double)eps);
        const int64_t c0 = (bg % groups) * cg;
        for (int64_t c = 0; c < cg; c++) {
            const double wc = ws ? ws[c0 + c] : 1.0, bc = bs ? bs[c0 + c] : 0.0;
            const double a = rstd * wc, b0 = bc - mean * a;
            for (int64_t s = 0; s < S; s++) og[c * S + s] = (float)(xg[c * S + s] * a + b0);
        }
    }
    return DS_OK;
}
