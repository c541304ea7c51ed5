/* linear.c - CPU nn.Linear (ds_op_linear): one OpenBLAS sgemm over all rows, then the bias; the linear +
 * GELU pair (ds_op_linear_gelu) whose CUDA twin fuses the activation into the GEMM epilogue; and several
 * linears of one input (ds_op_linear_multi) whose CUDA twin batches them into one product.
 *
 * x [..., K] is viewed as a row-major [M, K] matrix, the weight stays as stored ([N, K], PyTorch
 * nn.Linear order) and is read transposed by sgemm, so no packing or copying happens here. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "cpu/cpu_util.h"
#include "ops.h"
#include "ops_dispatch.h"

ds_status ds_op_linear(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_linear(out, x, w, bias, err));
    static const char *op = "linear";
    DS_TRY(ds_cpu_check(x, -1, op, "x", err));
    DS_TRY(ds_cpu_check(w, 2, op, "weight", err));
    DS_TRY(ds_cpu_check(out, -1, op, "out", err));
    char b1[96], b2[96];
    if (x->ndim < 1) return DS_FAIL(err, DS_ERR_INVALID_ARG, "linear: x must have at least 1 dim");
    const int64_t n = w->shape[0], k = w->shape[1];
    const int64_t m = ds_tensor_rows(x);
    if (x->shape[x->ndim - 1] != k)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "linear: x %s does not end in K = %lld of weight %s",
                       ds_tensor_shape_str(x, b1, sizeof b1), (long long)k, ds_tensor_shape_str(w, b2, sizeof b2));
    bool out_ok = out->ndim == x->ndim && out->shape[out->ndim - 1] == n;
    for (int i = 0; out_ok && i + 1 < x->ndim; i++) out_ok = out->shape[i] == x->shape[i];
    if (!out_ok)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "linear: out %s, expected x's leading dims of %s with last dim N = %lld",
                       ds_tensor_shape_str(out, b1, sizeof b1), ds_tensor_shape_str(x, b2, sizeof b2), (long long)n);
    if (bias) {
        DS_TRY(ds_cpu_check(bias, 1, op, "bias", err));
        if (bias->shape[0] != n)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "linear: bias has %lld entries, weight has N = %lld",
                           (long long)bias->shape[0], (long long)n);
    }
    if (ds_cpu_overlap(out, x) || ds_cpu_overlap(out, w) || (bias && ds_cpu_overlap(out, bias)))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "linear: out must not alias x, weight or bias");
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "linear: M=%lld N=%lld K=%lld exceeds the 32-bit BLAS interface",
                       (long long)m, (long long)n, (long long)k);
    if (m == 0 || n == 0) return DS_OK;

    float *y = (float *)out->data;
    if (k == 0) {
        memset(y, 0, (size_t)(m * n) * sizeof(float)); /* empty sum; sgemm with K = 0 is not portable */
    } else {
        /* y[M, N] = x[M, K] · w[N, K]ᵀ */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, (const float *)x->data,
                    (int)k, (const float *)w->data, (int)k, 0.0f, y, (int)n);
    }
    if (bias) {
        const float *bv = (const float *)bias->data;
#pragma omp parallel for schedule(static) if (m * n >= DS_CPU_PAR_MIN)
        for (int64_t i = 0; i < m; i++) {
            float *row = y + i * n;
            for (int64_t j = 0; j < n; j++) row[j] += bv[j];
        }
    }
    return DS_OK;
}

ds_status ds_op_linear_gelu(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias,
                            ds_gelu_kind kind, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_linear_gelu(out, x, w, bias, kind, err));
    if (kind != DS_GELU_EXACT && kind != DS_GELU_TANH)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "linear_gelu: unknown kind %d", (int)kind);
    DS_TRY(ds_op_linear(out, x, w, bias, err));
    return ds_op_gelu(out, out, kind, err);
}

ds_status ds_op_linear_multi(ds_tensor *const *outs, const ds_tensor *x, const ds_tensor *const *ws,
                             const ds_tensor *const *bs, int n, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_linear_multi(outs, x, ws, bs, n, err));
    if (n < 1 || n > DS_LINEAR_MULTI_MAX || !outs || !ws)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "linear_multi: n = %d outside 1..%d, or NULL arrays", n,
                       DS_LINEAR_MULTI_MAX);
    const bool with_bias = bs && bs[0];
    for (int i = 0; i < n; i++) {
        const ds_tensor *b = bs ? bs[i] : NULL;
        if ((b != NULL) != with_bias)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "linear_multi: either every linear has a bias or none");
        if (!ws[i] || ws[i]->ndim != 2 || !ws[0] || ws[0]->ndim != 2 || ws[i]->shape[0] != ws[0]->shape[0] ||
            ws[i]->shape[1] != ws[0]->shape[1])
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "linear_multi: weight %d is not the shape of weight 0", i);
    }
    for (int i = 0; i < n; i++) DS_TRY(ds_op_linear(outs[i], x, ws[i], with_bias ? bs[i] : NULL, err));
    return DS_OK;
}
