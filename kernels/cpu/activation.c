/* activation.c - CPU elementwise activations and small pointwise ops: GELU (exact and tanh form),
 * SiLU, softmax over the last dim, and elementwise add (ds_op_gelu, ds_op_silu, ds_op_softmax,
 * ds_op_add).
 *
 * Every element is computed in double and rounded once to f32, written in forms that avoid
 * cancellation for large negative inputs (1 + erf(z) = erfc(-z); 1 + tanh(u) = 2 / (1 + e^(-2u))).
 * All ops accept any shape and out == input (in place). */
#include <math.h>

#include "cpu/cpu_util.h"
#include "ops.h"
#include "ops_dispatch.h"

/* x and out present, f32, contiguous, same shape. */
static ds_status unary_check(const char *op, const ds_tensor *out, const ds_tensor *x, ds_err *err) {
    DS_TRY(ds_cpu_check(x, -1, op, "x", err));
    DS_TRY(ds_cpu_check(out, -1, op, "out", err));
    return ds_cpu_check_same_shape(out, x, op, "out", "x", err);
}

ds_status ds_op_gelu(ds_tensor *out, const ds_tensor *x, ds_gelu_kind kind, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_gelu(out, x, kind, err));
    DS_TRY(unary_check("gelu", out, x, err));
    if (kind != DS_GELU_EXACT && kind != DS_GELU_TANH)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "gelu: unknown kind %d", (int)kind);
    const int64_t n = ds_tensor_numel(x);
    const float *xs = (const float *)x->data;
    float *ys = (float *)out->data;
    if (kind == DS_GELU_EXACT) {
        /* 0.5·x·(1 + erf(x/√2)) = 0.5·x·erfc(-x/√2) */
#pragma omp parallel for schedule(static) if (n >= DS_CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            const double v = xs[i];
            ys[i] = (float)(0.5 * v * erfc(-v * 0.70710678118654752440));
        }
    } else {
        /* 0.5·x·(1 + tanh(u)) = x / (1 + e^(-2u)), u = √(2/π)·(x + 0.044715·x³) */
#pragma omp parallel for schedule(static) if (n >= DS_CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            const double v = xs[i];
            const double u = 0.79788456080286535588 * (v + 0.044715 * v * v * v);
            ys[i] = (float)(v / (1.0 + exp(-2.0 * u)));
        }
    }
    return DS_OK;
}

ds_status ds_op_silu(ds_tensor *out, const ds_tensor *x, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_silu(out, x, err));
    DS_TRY(unary_check("silu", out, x, err));
    const int64_t n = ds_tensor_numel(x);
    const float *xs = (const float *)x->data;
    float *ys = (float *)out->data;
#pragma omp parallel for schedule(static) if (n >= DS_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const double v = xs[i];
        ys[i] = (float)(v / (1.0 + exp(-v)));
    }
    return DS_OK;
}

/* A row whose max is -inf (all entries -inf) yields NaN, as torch.softmax does. */
ds_status ds_op_softmax(ds_tensor *out, const ds_tensor *x, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_softmax(out, x, err));
    DS_TRY(unary_check("softmax", out, x, err));
    if (x->ndim < 1) return DS_FAIL(err, DS_ERR_INVALID_ARG, "softmax: x must have at least 1 dim");
    const int64_t d = x->shape[x->ndim - 1], rows = ds_tensor_rows(x);
    if (d == 0 || rows == 0) return DS_OK;
    const float *xs = (const float *)x->data;
    float *ys = (float *)out->data;
#pragma omp parallel for schedule(static) if (rows * d >= DS_CPU_PAR_MIN / 4)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xs + r * d; // [D]
        float *yr = ys + r * d;       // [D]
        float mx = xr[0];
        for (int64_t j = 1; j < d; j++) mx = xr[j] > mx ? xr[j] : mx;
        double sum = 0.0;
        for (int64_t j = 0; j < d; j++) sum += exp((double)xr[j] - (double)mx);
        const double inv = 1.0 / sum;
        for (int64_t j = 0; j < d; j++) yr[j] = (float)(exp((double)xr[j] - (double)mx) * inv);
    }
    return DS_OK;
}

ds_status ds_op_add(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, ds_err *err) {
    DS_OP_DISPATCH(a, ds_cuda_op_add(out, a, b, err));
    static const char *op = "add";
    DS_TRY(ds_cpu_check(a, -1, op, "a", err));
    DS_TRY(ds_cpu_check(b, -1, op, "b", err));
    DS_TRY(ds_cpu_check(out, -1, op, "out", err));
    DS_TRY(ds_cpu_check_same_shape(b, a, op, "b", "a", err));
    DS_TRY(ds_cpu_check_same_shape(out, a, op, "out", "a", err));
    const int64_t n = ds_tensor_numel(a);
    const float *as = (const float *)a->data, *bs = (const float *)b->data;
    float *ys = (float *)out->data;
#pragma omp parallel for schedule(static) if (n >= DS_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) ys[i] = as[i] + bs[i];
    return DS_OK;
}
