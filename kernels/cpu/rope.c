/* rope.c - FLUX rotary position embedding on the CPU: the cos/sin tables of diffusers'
 * FluxPosEmbed (get_1d_rotary_pos_embed with use_real=True, repeat_interleave_real=True, fp64
 * frequencies) and their application to q/k with interleaved pairs (apply_rotary_emb with
 * use_real_unbind_dim=-1), on our [B, N, H, d] layout (diffusers' sequence_dim=1); and ds_op_rmsnorm_rope, the
 * per-head RMSNorm then RoPE pair of FLUX's q/k (its CUDA twin fuses the two). */
#include <math.h>

#include "image_util.h"
#include "op_shapes.h"
#include "ops.h"
#include "ops_dispatch.h"

/* Contract in ops.h. x, out: [B, N, H, d]; cos, sin: [N, d]. In place OK (out == x).
 * Per pair (2m, 2m+1), in f32 exactly as diffusers orders it (x·cos + rot(x)·sin, rot = (−x1, x0)). */
ds_status ds_op_rope(ds_tensor *out, const ds_tensor *x, const ds_tensor *cos_t, const ds_tensor *sin_t, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_rope(out, x, cos_t, sin_t, err));
    static const char op[] = "ds_op_rope";
    DS_TRY(ds_img_check(x, 4, op, "x", err));
    DS_TRY(ds_img_check(out, 4, op, "out", err));
    DS_TRY(ds_img_check(cos_t, 2, op, "cos", err));
    DS_TRY(ds_img_check(sin_t, 2, op, "sin", err));
    const int64_t B = x->shape[0], N = x->shape[1], H = x->shape[2], d = x->shape[3];
    DS_TRY(ds_shape_rope(x, cos_t, sin_t, op, err));
    DS_TRY(ds_img_expect_shape(out, 4, x->shape, op, "out", err));
    if (out->data != x->data) {
        /* Partial overlap would read rotated values; only exact aliasing is allowed. */
        const char *o0 = out->data, *x0 = x->data;
        const int64_t nb = ds_tensor_nbytes(x);
        if (o0 < x0 + nb && x0 < o0 + nb)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out partially overlaps x", op);
    }

    const float *xs = x->data, *cs = cos_t->data, *ss = sin_t->data;
    float *os = out->data;
    const int64_t rows = B * N;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t n = r % N;
        const float *c = cs + n * d, *s = ss + n * d;
        for (int64_t h = 0; h < H; h++) {
            const float *xi = xs + (r * H + h) * d;
            float *o = os + (r * H + h) * d;
            for (int64_t m = 0; m < d; m += 2) {
                const float x0 = xi[m], x1 = xi[m + 1];
                const float a0 = x0 * c[m], b0 = x1 * s[m];
                const float a1 = x1 * c[m + 1], b1 = x0 * s[m + 1];
                o[m] = a0 - b0;
                o[m + 1] = a1 + b1;
            }
        }
    }
    return DS_OK;
}

/* Contract in ops.h. ids: [N, n_axes] f32 positions; cos, sin: [N, sum(axes_dim)].
 * As diffusers: w_k = 1 / theta^(2k/d_a) in fp64, φ = (double)id · w_k, cos/sin in fp64 rounded once to
 * f32, each value written to both elements of its pair. */
ds_status ds_op_rope_freqs(ds_tensor *cos_t, ds_tensor *sin_t, const ds_tensor *ids, const int *axes_dim, int n_axes,
                           double theta, ds_err *err) {
    static const char op[] = "ds_op_rope_freqs";
    DS_TRY(ds_img_check(ids, 2, op, "ids", err));
    DS_TRY(ds_img_check(cos_t, 2, op, "cos", err));
    DS_TRY(ds_img_check(sin_t, 2, op, "sin", err));
    if (!axes_dim || n_axes < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: need at least one axis (axes_dim %s, n_axes %d)", op,
                       axes_dim ? "set" : "NULL", n_axes);
    if (!(theta > 0) || !isfinite(theta))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: theta must be a positive finite number, got %g", op, theta);
    const int64_t N = ids->shape[0];
    if (ids->shape[1] != n_axes)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: ids has %lld columns but n_axes = %d", op,
                       (long long)ids->shape[1], n_axes);
    int64_t d = 0;
    for (int a = 0; a < n_axes; a++) {
        if (axes_dim[a] <= 0 || axes_dim[a] % 2 != 0)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: axes_dim[%d] = %d must be positive and even", op, a,
                           axes_dim[a]);
        d += axes_dim[a];
    }
    const int64_t tab[2] = {N, d};
    DS_TRY(ds_img_expect_shape(cos_t, 2, tab, op, "cos", err));
    DS_TRY(ds_img_expect_shape(sin_t, 2, tab, op, "sin", err));
    if (cos_t->data == sin_t->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: cos and sin alias", op);

    const float *id = ids->data;
    float *co = cos_t->data, *si = sin_t->data;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        int64_t off = 0;
        for (int a = 0; a < n_axes; a++) {
            const int da = axes_dim[a];
            const double pos = (double)id[n * n_axes + a];
            for (int k = 0; k < da / 2; k++) {
                const double w = 1.0 / pow(theta, (double)(2 * k) / (double)da);
                const double phi = pos * w;
                const float c = (float)cos(phi), s = (float)sin(phi);
                co[n * d + off + 2 * k] = c;
                co[n * d + off + 2 * k + 1] = c;
                si[n * d + off + 2 * k] = s;
                si[n * d + off + 2 * k + 1] = s;
            }
            off += da;
        }
    }
    return DS_OK;
}

ds_status ds_op_rmsnorm_rope(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight, float eps,
                             const ds_tensor *cos_t, const ds_tensor *sin_t, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_rmsnorm_rope(out, x, weight, eps, cos_t, sin_t, err));
    if (!x || x->ndim != 4)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_op_rmsnorm_rope: x must be a 4-D [B, S, H, d] tensor");
    DS_TRY(ds_op_rmsnorm(out, x, weight, eps, err));
    return ds_op_rope(out, out, cos_t, sin_t, err);
}
