/* norm.c - CPU LayerNorm and RMSNorm over the last dim (ds_op_layernorm, ds_op_rmsnorm).
 *
 * Row statistics are accumulated in double (two passes for the variance), and each output element
 * is formed in double and rounded once to f32, so the result is within an ulp or so of a float64
 * reference. Rows are independent and split across OpenMP threads; the per-row arithmetic does not
 * depend on the thread count. In place (out == x) is allowed: a row is read fully before it is
 * written. */
#include <math.h>

#include "cpu/cpu_util.h"
#include "ops.h"
#include "ops_dispatch.h"

/* Common validation: x and out same-shape [..., D]; optional weight/bias [D]. */
static ds_status norm_check(const char *op, const ds_tensor *out, const ds_tensor *x, const ds_tensor *weight,
                            const ds_tensor *bias, float eps, ds_err *err) {
    DS_TRY(ds_cpu_check(x, -1, op, "x", err));
    DS_TRY(ds_cpu_check(out, -1, op, "out", err));
    if (x->ndim < 1) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: x must have at least 1 dim", op);
    DS_TRY(ds_cpu_check_same_shape(out, x, op, "out", "x", err));
    const int64_t d = x->shape[x->ndim - 1];
    const ds_tensor *aff[2] = {weight, bias};
    const char *names[2] = {"weight", "bias"};
    for (int i = 0; i < 2; i++) {
        if (!aff[i]) continue;
        DS_TRY(ds_cpu_check(aff[i], 1, op, names[i], err));
        if (aff[i]->shape[0] != d)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s has %lld entries, x's last dim is %lld", op, names[i],
                           (long long)aff[i]->shape[0], (long long)d);
    }
    if (!(eps >= 0.0f) || isinf(eps)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: eps %g must be finite and >= 0", op, (double)eps);
    return DS_OK;
}

ds_status ds_op_layernorm(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight, const ds_tensor *bias,
                          float eps, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_layernorm(out, x, weight, bias, eps, err));
    DS_TRY(norm_check("layernorm", out, x, weight, bias, eps, err));
    const int64_t d = x->shape[x->ndim - 1], rows = ds_tensor_rows(x);
    if (d == 0 || rows == 0) return DS_OK;
    const float *xs = (const float *)x->data;
    float *ys = (float *)out->data;
    const float *wv = weight ? (const float *)weight->data : NULL;
    const float *bv = bias ? (const float *)bias->data : NULL;

#pragma omp parallel for schedule(static) if (rows * d >= DS_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xs + r * d; // [D]
        float *yr = ys + r * d;       // [D]
        double sum = 0.0;
        for (int64_t j = 0; j < d; j++) sum += xr[j];
        const double mean = sum / (double)d;
        double ss = 0.0;
        for (int64_t j = 0; j < d; j++) {
            const double c = (double)xr[j] - mean;
            ss += c * c;
        }
        const double rstd = 1.0 / sqrt(ss / (double)d + (double)eps);
        for (int64_t j = 0; j < d; j++) {
            double v = ((double)xr[j] - mean) * rstd;
            if (wv) v *= (double)wv[j];
            if (bv) v += (double)bv[j];
            yr[j] = (float)v;
        }
    }
    return DS_OK;
}

ds_status ds_op_rmsnorm(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight, float eps, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_rmsnorm(out, x, weight, eps, err));
    DS_TRY(norm_check("rmsnorm", out, x, weight, NULL, eps, err));
    const int64_t d = x->shape[x->ndim - 1], rows = ds_tensor_rows(x);
    if (d == 0 || rows == 0) return DS_OK;
    const float *xs = (const float *)x->data;
    float *ys = (float *)out->data;
    const float *wv = weight ? (const float *)weight->data : NULL;

#pragma omp parallel for schedule(static) if (rows * d >= DS_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xs + r * d; // [D]
        float *yr = ys + r * d;       // [D]
        double ss = 0.0;
        for (int64_t j = 0; j < d; j++) ss += (double)xr[j] * (double)xr[j];
        const double rrms = 1.0 / sqrt(ss / (double)d + (double)eps);
        for (int64_t j = 0; j < d; j++) {
            double v = (double)xr[j] * rrms;
            if (wv) v *= (double)wv[j];
            yr[j] = (float)v;
        }
    }
    return DS_OK;
}
