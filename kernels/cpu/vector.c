/* vector.c - CPU reference of the whole-tensor vector ops the cache engine and the device pipelines use
 * (ds_op_sub, ds_op_axpby, ds_op_convert, ds_op_diff_sums) and of the fused LayerNorm + modulate
 * (ds_op_layernorm_modulate, here literally the two reference ops in sequence). Contracts: ops.h. */
#include <math.h>
#include <string.h>

#include "cpu/cpu_util.h"
#include "ops.h"
#include "ops_dispatch.h"

/* a, b (b may be NULL) and out present, f32, contiguous, same shape. */
static ds_status binary_check(const char *op, const ds_tensor *out, const ds_tensor *a, const ds_tensor *b,
                              ds_err *err) {
    DS_TRY(ds_cpu_check(a, -1, op, "a", err));
    DS_TRY(ds_cpu_check(out, -1, op, "out", err));
    DS_TRY(ds_cpu_check_same_shape(out, a, op, "out", "a", err));
    if (!b) return DS_OK;
    DS_TRY(ds_cpu_check(b, -1, op, "b", err));
    return ds_cpu_check_same_shape(b, a, op, "b", "a", err);
}

ds_status ds_op_sub(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, ds_err *err) {
    DS_OP_DISPATCH(a, ds_cuda_op_sub(out, a, b, err));
    DS_TRY(binary_check("sub", out, a, b, err));
    const int64_t n = ds_tensor_numel(a);
    const float *as = (const float *)a->data, *bs = (const float *)b->data;
    float *ys = (float *)out->data;
#pragma omp parallel for schedule(static) if (n >= DS_CPU_PAR_MIN)
    for (int64_t i = 0; i < n; i++) ys[i] = as[i] - bs[i];
    return DS_OK;
}

ds_status ds_op_axpby(ds_tensor *out, float alpha, const ds_tensor *x, float beta, const ds_tensor *y, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_axpby(out, alpha, x, beta, y, err));
    DS_TRY(binary_check("axpby", out, x, y, err));
    const int64_t n = ds_tensor_numel(x);
    const float *xs = (const float *)x->data, *ys = y ? (const float *)y->data : NULL;
    float *os = (float *)out->data;
    if (ys) {
#pragma omp parallel for schedule(static) if (n >= DS_CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++) os[i] = alpha * xs[i] + beta * ys[i];
    } else {
#pragma omp parallel for schedule(static) if (n >= DS_CPU_PAR_MIN)
        for (int64_t i = 0; i < n; i++) os[i] = alpha * xs[i];
    }
    return DS_OK;
}

ds_status ds_op_convert(ds_tensor *out, const ds_tensor *x, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_convert(out, x, err));
    DS_TRY(binary_check("convert", out, x, NULL, err));
    if (out->data != x->data) memmove(out->data, x->data, (size_t)ds_tensor_nbytes(x));
    return DS_OK;
}

ds_status ds_op_diff_sums(const ds_tensor *a, const ds_tensor *b, double *sum_abs_diff, double *sum_abs_a,
                          ds_err *err) {
    if (!sum_abs_diff || !sum_abs_a) return DS_FAIL(err, DS_ERR_INVALID_ARG, "diff_sums: NULL result pointer");
    DS_OP_DISPATCH(a, ds_cuda_op_diff_sums(a, b, sum_abs_diff, sum_abs_a, err));
    DS_TRY(binary_check("diff_sums", a, a, b, err));
    const int64_t n = ds_tensor_numel(a);
    const float *as = (const float *)a->data, *bs = (const float *)b->data;
    double sd = 0.0, sa = 0.0;
    /* one thread, in index order: the sums (and so the cache decisions) do not depend on the thread count */
    for (int64_t i = 0; i < n; i++) {
        sd += fabs((double)(as[i] - bs[i]));
        sa += fabs((double)as[i]);
    }
    *sum_abs_diff = sd;
    *sum_abs_a = sa;
    return DS_OK;
}

ds_status ds_op_layernorm_modulate(ds_tensor *out, const ds_tensor *x, const ds_tensor *scale,
                                   const ds_tensor *shift, float eps, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_layernorm_modulate(out, x, scale, shift, eps, err));
    DS_TRY(ds_op_layernorm(out, x, NULL, NULL, eps, err));
    return ds_op_modulate(out, out, scale, shift, err);
}
