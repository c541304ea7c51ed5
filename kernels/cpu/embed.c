/* embed.c - sinusoidal embeddings on the CPU: diffusers' get_timestep_embedding (timestep
 * conditioning of every DiT) and get_2d_sincos_pos_embed (the fixed patch-position table of DiT and
 * PixArt). The f32 steps diffusers takes are reproduced in f32 in the same order, so the phases
 * match its own rounding; sin/cos are evaluated in fp64 and rounded once. */
#include <math.h>

#include "image_util.h"
#include "op_shapes.h"
#include "ops.h"
#include "ops_dispatch.h"

/* Contract in ops.h. t: [B]; out: [B, C], C >= 2. As diffusers: e_k = f32(−ln P)·k / f32(half − s)
 * in f32, f_k = exp(e_k), a = scale·(t·f_k) in f32. An odd C gets one trailing zero column (diffusers'
 * zero pad). Errors: DS_ERR_INVALID_ARG for shapes, C < 2, half == shift (division by zero in the
 * formula) or max_period <= 0. */
ds_status ds_op_timestep_embedding(ds_tensor *out, const ds_tensor *t, int flip_sin_to_cos,
                                   float downscale_freq_shift, float scale, float max_period, ds_err *err) {
    DS_OP_DISPATCH(out, ds_cuda_op_timestep_embedding(out, t, flip_sin_to_cos, downscale_freq_shift, scale, max_period, err));
    static const char op[] = "ds_op_timestep_embedding";
    DS_TRY(ds_img_check(t, 1, op, "t", err));
    DS_TRY(ds_img_check(out, 2, op, "out", err));
    const int64_t B = t->shape[0], C = out->shape[1];
    int64_t half;
    float denom;
    DS_TRY(ds_shape_timestep_embedding(out, t, downscale_freq_shift, max_period, op, &half, &denom, err));

    const float neg_log_p = (float)(-log((double)max_period));
    const float *ts = t->data;
    float *o = out->data;
    const int64_t sin_off = flip_sin_to_cos ? half : 0, cos_off = flip_sin_to_cos ? 0 : half;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; b++) {
        float *row = o + b * C;
        for (int64_t k = 0; k < half; k++) {
            const float e = (neg_log_p * (float)k) / denom;
            const float f = (float)exp((double)e);
            const float a = scale * (ts[b] * f);
            row[sin_off + k] = (float)sin((double)a);
            row[cos_off + k] = (float)cos((double)a);
        }
        if (C % 2 == 1) row[C - 1] = 0.0f;
    }
    return DS_OK;
}

/* Contract in ops.h. out: [hp·wp, D], D % 4 == 0. Positions as diffusers makes them, in f32:
 * x_j = (f32(j) / f32(wp / base_size)) / f32(interpolation_scale) (rows likewise with hp); then fp64
 * ω_k = 1 / 10000^(k / (D/4)), sin/cos(x·ω) in fp64, rounded once. Token n = i·wp + j; columns
 * [sin x | cos x | sin y | cos y], D/4 each. */
ds_status ds_op_pos_embed_2d(ds_tensor *out, int64_t hp, int64_t wp, double base_size, double interpolation_scale,
                             ds_err *err) {
    static const char op[] = "ds_op_pos_embed_2d";
    DS_TRY(ds_img_check(out, 2, op, "out", err));
    if (hp < 1 || wp < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: grid %lld x %lld is empty", op, (long long)hp, (long long)wp);
    if (!(base_size > 0) || !(interpolation_scale > 0) || !isfinite(base_size) || !isfinite(interpolation_scale))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: base_size %g and interpolation_scale %g must be positive", op,
                       base_size, interpolation_scale);
    const int64_t D = out->shape[1];
    if (D % 4 != 0 || D == 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: width D = %lld is not a positive multiple of 4", op, (long long)D);
    if (out->shape[0] != hp * wp)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out has %lld rows, expected hp*wp = %lld*%lld", op,
                       (long long)out->shape[0], (long long)hp, (long long)wp);

    const int64_t q = D / 4;
    const float sx = (float)((double)wp / base_size), sy = (float)((double)hp / base_size);
    const float si = (float)interpolation_scale;
    float *o = out->data;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < hp * wp; n++) {
        const int64_t i = n / wp, j = n % wp;
        const float x = ((float)j / sx) / si, y = ((float)i / sy) / si;
        float *row = o + n * D;
        for (int64_t k = 0; k < q; k++) {
            const double w = 1.0 / pow(10000.0, (double)k / (double)q);
            const double px = (double)x * w, py = (double)y * w;
            row[k] = (float)sin(px);
            row[q + k] = (float)cos(px);
            row[2 * q + k] = (float)sin(py);
            row[3 * q + k] = (float)cos(py);
        }
    }
    return DS_OK;
}
