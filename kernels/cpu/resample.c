/* resample.c - pure data-movement image ops on the CPU: nearest-neighbour 2x upsampling (VAE
 * decoder), patchify (the gather in front of a DiT PatchEmbed conv, turning it into one GEMM) and
 * unpatchify (DiT's proj_out tokens back to an image). Exact: no arithmetic on values. */
#include <string.h>

#include "image_util.h"
#include "ops.h"
#include "op_shapes.h"
#include "ops_dispatch.h"

/* Fail unless the byte ranges of a and b are disjoint. */
static ds_status check_disjoint(const ds_tensor *a, const ds_tensor *b, const char *op, ds_err *err) {
    const char *a0 = a->data, *b0 = b->data;
    if (a0 < b0 + ds_tensor_nbytes(b) && b0 < a0 + ds_tensor_nbytes(a))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out overlaps the input", op);
    return DS_OK;
}

/* Contract in ops.h. x: [B, C, H, W] -> out: [B, C, 2H, 2W], out[b, c, y, x'] = x[b, c, y/2, x'/2]
 * (F.interpolate(scale_factor=2, mode="nearest")). out must not overlap x. */
ds_status ds_op_upsample_nearest2x(ds_tensor *out, const ds_tensor *x, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_upsample_nearest2x(out, x, err));
    static const char op[] = "ds_op_upsample_nearest2x";
    DS_TRY(ds_img_check(x, 4, op, "x", err));
    DS_TRY(ds_img_check(out, 4, op, "out", err));
    const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t oshape[4] = {B, C, 2 * H, 2 * W};
    DS_TRY(ds_img_expect_shape(out, 4, oshape, op, "out", err));
    DS_TRY(check_disjoint(out, x, op, err));
    const float *xs = x->data;
    float *os = out->data;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < B * C * H; r++) { /* one input row -> two output rows */
        const float *src = xs + r * W;
        float *d0 = os + 2 * r * 2 * W;
        for (int64_t j = 0; j < W; j++) d0[2 * j] = d0[2 * j + 1] = src[j];
        memcpy(d0 + 2 * W, d0, (size_t)(2 * W) * sizeof(float));
    }
    return DS_OK;
}

/* Contract in ops.h. x: [B, C, H, W] -> out: [B, (H/p)·(W/p), C·p·p],
 * out[b, i·(W/p) + j, (c·p + u)·p + v] = x[b, c, p·i + u, p·j + v]. p >= 1 divides H and W; out must
 * not overlap x. */
ds_status ds_op_patchify(ds_tensor *out, const ds_tensor *x, int64_t p, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_patchify(out, x, p, err));
    static const char op[] = "ds_op_patchify";
    DS_TRY(ds_img_check(x, 4, op, "x", err));
    DS_TRY(ds_img_check(out, 3, op, "out", err));
    DS_TRY(ds_shape_patch(x, out, p, op, "x", "out", err));
    const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t hp = H / p, wp = W / p, F = C * p * p;
    DS_TRY(check_disjoint(out, x, op, err));
    const float *xs = x->data;
    float *os = out->data;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < B * hp * wp; t++) {
        const int64_t b = t / (hp * wp), i = (t / wp) % hp, j = t % wp;
        float *dst = os + t * F;
        for (int64_t c = 0; c < C; c++)
            for (int64_t u = 0; u < p; u++)
                memcpy(dst + (c * p + u) * p, xs + ((b * C + c) * H + p * i + u) * W + p * j,
                       (size_t)p * sizeof(float));
    }
    return DS_OK;
}

/* Contract in ops.h. y: [B, Hp·Wp, p·p·C] -> out: [B, C, Hp·p, Wp·p] (Hp, Wp, C from out's shape),
 * out[b, c, p·i + u, p·j + v] = y[b, i·Wp + j, (u·p + v)·C + c] (diffusers DiT: reshape to
 * (B, Hp, Wp, p, p, C), einsum "nhwpqc->nchpwq"). p >= 1 divides out's H and W; out must not overlap y. */
ds_status ds_op_unpatchify(ds_tensor *out, const ds_tensor *y, int64_t p, ds_err *err) {
    DS_OP_DISPATCH(y, ds_cuda_op_unpatchify(out, y, p, err));
    static const char op[] = "ds_op_unpatchify";
    DS_TRY(ds_img_check(y, 3, op, "y", err));
    DS_TRY(ds_img_check(out, 4, op, "out", err));
    DS_TRY(ds_shape_patch(out, y, p, op, "out", "y", err));
    const int64_t B = out->shape[0], C = out->shape[1], H = out->shape[2], W = out->shape[3];
    const int64_t hp = H / p, wp = W / p, F = C * p * p;
    DS_TRY(check_disjoint(out, y, op, err));
    const float *ys = y->data;
    float *os = out->data;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < B * C * H; r++) { /* one output row (b, c, yy) */
        const int64_t b = r / (C * H), c = (r / H) % C, yy = r % H;
        const int64_t i = yy / p, u = yy % p;
        float *dst = os + r * W;
        for (int64_t j = 0; j < wp; j++) {
            const float *tok = ys + (b * hp * wp + i * wp + j) * F;
            for (int64_t v = 0; v < p; v++) dst[p * j + v] = tok[(u * p + v) * C + c];
        }
    }
    return DS_OK;
}
