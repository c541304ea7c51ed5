/* modulate.c - CPU adaLN helpers: modulate (x·(1+scale)+shift) and the gated residual
 * (residual + gate·x), ds_op_modulate and ds_op_gate_add.
 *
 * scale/shift/gate are [B, D] rows that may be column slices of a [B, k·D] adaLN projection, so
 * only their inner stride must be 1; the row stride is read from the tensor. Each element is
 * computed in double and rounded once. In place is allowed (element i is read before it is
 * written, and no other element is read afterwards). */
#include "cpu/cpu_util.h"
#include "ops.h"
#include "ops_dispatch.h"

ds_status ds_op_modulate(ds_tensor *out, const ds_tensor *x, const ds_tensor *scale, const ds_tensor *shift,
                         ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_modulate(out, x, scale, shift, err));
    static const char *op = "modulate";
    DS_TRY(ds_cpu_check(x, 3, op, "x", err));
    DS_TRY(ds_cpu_check(out, 3, op, "out", err));
    DS_TRY(ds_cpu_check_same_shape(out, x, op, "out", "x", err));
    const int64_t b = x->shape[0], n = x->shape[1], d = x->shape[2];
    DS_TRY(ds_cpu_check_rows2d(scale, b, d, op, "scale", err));
    DS_TRY(ds_cpu_check_rows2d(shift, b, d, op, "shift", err));
    if (b == 0 || n == 0 || d == 0) return DS_OK;
    const float *xs = (const float *)x->data;
    float *ys = (float *)out->data;
    const float *sc = (const float *)scale->data, *sh = (const float *)shift->data;
    const int64_t sc_rs = scale->stride[0], sh_rs = shift->stride[0];
    const int64_t rows = b * n;

#pragma omp parallel for schedule(static) if (rows * d >= DS_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t bi = r / n;
        const float *scr = sc + bi * sc_rs, *shr = sh + bi * sh_rs; // [D]
        const float *xr = xs + r * d;                               // [D]
        float *yr = ys + r * d;                                     // [D]
        for (int64_t j = 0; j < d; j++) yr[j] = (float)((double)xr[j] * (1.0 + (double)scr[j]) + (double)shr[j]);
    }
    return DS_OK;
}

ds_status ds_op_gate_add(ds_tensor *out, const ds_tensor *residual, const ds_tensor *x, const ds_tensor *gate,
                         ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_gate_add(out, residual, x, gate, err));
    static const char *op = "gate_add";
    DS_TRY(ds_cpu_check(residual, 3, op, "residual", err));
    DS_TRY(ds_cpu_check(x, 3, op, "x", err));
    DS_TRY(ds_cpu_check(out, 3, op, "out", err));
    DS_TRY(ds_cpu_check_same_shape(x, residual, op, "x", "residual", err));
    DS_TRY(ds_cpu_check_same_shape(out, residual, op, "out", "residual", err));
    const int64_t b = x->shape[0], n = x->shape[1], d = x->shape[2];
    if (gate) DS_TRY(ds_cpu_check_rows2d(gate, b, d, op, "gate", err));
    if (b == 0 || n == 0 || d == 0) return DS_OK;
    const float *rs = (const float *)residual->data, *xs = (const float *)x->data;
    float *ys = (float *)out->data;
    const float *gv = gate ? (const float *)gate->data : NULL;
    const int64_t g_rs = gate ? gate->stride[0] : 0;
    const int64_t rows = b * n;

#pragma omp parallel for schedule(static) if (rows * d >= DS_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *rr = rs + r * d, *xr = xs + r * d; // [D]
        float *yr = ys + r * d;                         // [D]
        if (gv) {
            const float *gr = gv + (r / n) * g_rs; // [D]
            for (int64_t j = 0; j < d; j++) yr[j] = (float)((double)rr[j] + (double)gr[j] * (double)xr[j]);
        } else {
            for (int64_t j = 0; j < d; j++) yr[j] = rr[j] + xr[j];
        }
    }
    return DS_OK;
}
