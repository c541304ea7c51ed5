// ops_linear.cu - the CUDA twins of ds_op_linear (nn.Linear) and ds_op_linear_gelu (bias + tanh-GELU in the
// cuBLASLt epilogue for bf16/f16): argument checks in the ops.h contract, then one
// cuBLASLt product through ds_cuda_linear (linear_lt.cu) with the current context's handle, workspace,
// algorithm cache and stream. f32 runs fp32 compute (no TF32); bf16/f16 accumulate in fp32 and round once.
// The bias rides the cuBLASLt epilogue, which wants it 16-byte aligned: model weights come from a
// 256-byte aligned arena, and any other bias pointer is refused with DS_ERR_INVALID_ARG before launch.
#include "cuda_util.cuh"
#include "ds_cuda.h"
#include "log.h"

// K == 0 (an empty sum): out[i, j] = bias[j] (or 0). out [M, N], bias [N] or NULL.
template <typename T>
__global__ void linear_empty_kernel(T *out, const T *bias, int64_t M, int64_t N) {
    const int64_t n = M * N;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x)
        ds_st(out, e, bias ? ds_ld(bias, e % N) : 0.0f);
}

// The ops.h contract of one linear: devices, dtypes, shapes, aliasing, the bias alignment. *M, *K, *N: the
// product's sizes (x as [M, K], w [N, K]).
static ds_status linear_check(const ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias,
                              const char *op, int64_t *M_, int64_t *K_, int64_t *N_, ds_err *err) {
    DS_TRY(ds_cuda_check(x, -1, -1, op, "x", err));
    const int dt = (int)x->dtype;
    DS_TRY(ds_cuda_check(w, 2, dt, op, "weight", err));
    DS_TRY(ds_cuda_check(out, -1, dt, op, "out", err));
    if (bias) DS_TRY(ds_cuda_check(bias, 1, dt, op, "bias", err));
    char b1[96], b2[96];
    if (x->ndim < 1) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: x must have at least 1 dim", op);
    const int64_t N = w->shape[0], K = w->shape[1];  // w [N, K]
    const int64_t M = ds_tensor_rows(x);              // x [..., K] as [M, K]
    if (x->shape[x->ndim - 1] != K)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: x %s does not end in K = %lld of weight %s", op,
                       ds_tensor_shape_str(x, b1, sizeof b1), (long long)K, ds_tensor_shape_str(w, b2, sizeof b2));
    bool out_ok = out->ndim == x->ndim && out->shape[out->ndim - 1] == N;  // out [..., N]
    for (int i = 0; out_ok && i + 1 < x->ndim; i++) out_ok = out->shape[i] == x->shape[i];
    if (!out_ok)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out %s, expected x's leading dims of %s with last dim N = %lld",
                       op, ds_tensor_shape_str(out, b1, sizeof b1), ds_tensor_shape_str(x, b2, sizeof b2),
                       (long long)N);
    if (bias && bias->shape[0] != N)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bias has %lld entries, weight has N = %lld", op,
                       (long long)bias->shape[0], (long long)N);
    if (ds_cuda_overlap(out, x) || ds_cuda_overlap(out, w) || (bias && ds_cuda_overlap(out, bias)))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out must not alias x, weight or bias", op);
    if (bias && ((uintptr_t)bias->data % 16) != 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "%s: bias at %p is not 16-byte aligned (the cuBLASLt bias epilogue needs it; place biases in "
                       "an arena, whose tensors are 256-byte aligned)", op, bias->data);
    *M_ = M;
    *K_ = K;
    *N_ = N;
    return DS_OK;
}

// The linear with an optional epilogue activation: argument checks, then cuBLASLt (K > 0) or the bias
// fill (K == 0; then act must be NONE: callers apply the activation as a separate pass).
static ds_status linear_run(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias,
                            ds_cuda_act act, const char *op, ds_err *err) {
    int64_t M, K, N;
    DS_TRY(linear_check(out, x, w, bias, op, &M, &K, &N, err));
    DS_CUDA_STREAM(stream);
    if (M == 0 || N == 0) return DS_OK;
    if (K == 0) {
        const unsigned threads = 256;
        DS_CUDA_DTYPE_SWITCH(x->dtype, T,
            linear_empty_kernel<T><<<ds_cuda_blocks(M * N, threads), threads, 0, stream>>>(
                (T *)out->data, bias ? (const T *)bias->data : (const T *)NULL, M, N));
        return ds_cuda_launched(op, err);
    }
    ds_cuda_lt *lt = ds_cuda_ctx_lt();
    if (!lt) return DS_FAIL(err, DS_ERR_DEVICE, "%s: the bound context has no cuBLASLt handle", op);
    ds_status st = ds_cuda_linear_act(lt, x->dtype, out->data, x->data, w->data, bias ? bias->data : NULL, M, K, N,
                                      act, (void *)stream, err);
    if (st != DS_OK) ds_err_prefix(err, "%s", op);
    return st;
}

extern "C" ds_status ds_cuda_op_linear(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias,
                                       ds_err *err) {
    return linear_run(out, x, w, bias, DS_CUDA_ACT_NONE, "linear", err);
}

// bf16/f16 with the tanh form: one GEMM with the GELU in the epilogue (fp32 value, one rounding). f32 (whose
// contract is the exact fp32 activation of ops_elementwise.cu), the erf form and K == 0: the linear, then
// the activation pass in place.
extern "C" ds_status ds_cuda_op_linear_gelu(ds_tensor *out, const ds_tensor *x, const ds_tensor *w,
                                            const ds_tensor *bias, ds_gelu_kind kind, ds_err *err) {
    static const char op[] = "linear_gelu";
    if (kind != DS_GELU_EXACT && kind != DS_GELU_TANH)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: unknown kind %d", op, (int)kind);
    const bool fused = kind == DS_GELU_TANH && x && x->dtype != DS_F32 && w && w->ndim == 2 && w->shape[1] > 0;
    if (fused) return linear_run(out, x, w, bias, DS_CUDA_ACT_GELU_TANH, op, err);
    DS_TRY(linear_run(out, x, w, bias, DS_CUDA_ACT_NONE, op, err));
    return ds_cuda_op_gelu(out, out, kind, err);
}

// Evenly spaced: p[i] = p[0] + i * step for i < n, step a positive multiple of the element size and >= span
// bytes (no overlap). *step_elems: the step in elements.
static bool evenly_spaced(const void *const *p, int n, int64_t span, int64_t es, int64_t *step_elems) {
    const int64_t step = (int64_t)((const char *)p[1] - (const char *)p[0]);
    if (step < span || step % es != 0) return false;
    for (int i = 2; i < n; i++)
        if ((int64_t)((const char *)p[i] - (const char *)p[0]) != step * i) return false;
    *step_elems = step / es;
    return true;
}

// One strided-batched product when the weights, biases and outputs are evenly spaced (a block's q, k, v from
// an arena); otherwise, or when cuBLASLt refuses the batch (logged once), n products.
extern "C" ds_status ds_cuda_op_linear_multi(ds_tensor *const *outs, const ds_tensor *x, const ds_tensor *const *ws,
                                             const ds_tensor *const *bs, int n, ds_err *err) {
    static const char op[] = "linear_multi";
    if (n < 1 || n > DS_LINEAR_MULTI_MAX || !outs || !ws)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: n = %d outside 1..%d, or NULL arrays", op, n, DS_LINEAR_MULTI_MAX);
    const bool with_bias = bs && bs[0];
    int64_t M = 0, K = 0, N = 0;
    for (int i = 0; i < n; i++) {
        const ds_tensor *b = bs ? bs[i] : NULL;
        if ((b != NULL) != with_bias)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: either every linear has a bias or none", op);
        int64_t m, k, nn;
        DS_TRY(linear_check(outs[i], x, ws[i], b, op, &m, &k, &nn, err));
        if (i > 0 && nn != N)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: weight %d has %lld outputs, weight 0 has %lld", op, i,
                           (long long)nn, (long long)N);
        M = m, K = k, N = nn;
    }
    const int64_t es = x->dtype == DS_F32 ? 4 : 2;
    int64_t sw = 0, so = 0, sb = 0;
    const void *pw[DS_LINEAR_MULTI_MAX], *po[DS_LINEAR_MULTI_MAX], *pb[DS_LINEAR_MULTI_MAX];
    for (int i = 0; i < n; i++) {
        pw[i] = ws[i]->data;
        po[i] = outs[i]->data;
        pb[i] = with_bias ? bs[i]->data : NULL;
    }
    const bool batched = n >= 2 && M > 0 && N > 0 && K > 0 && evenly_spaced(pw, n, N * K * es, es, &sw) &&
                         evenly_spaced(po, n, M * N * es, es, &so) && (!with_bias || evenly_spaced(pb, n, N * es, es, &sb));
    if (batched) {
        DS_CUDA_STREAM(stream);
        ds_cuda_lt *lt = ds_cuda_ctx_lt();
        if (!lt) return DS_FAIL(err, DS_ERR_DEVICE, "%s: the bound context has no cuBLASLt handle", op);
        ds_err e2;
        ds_err_clear(&e2);
        const ds_status st = ds_cuda_linear_batched(lt, x->dtype, outs[0]->data, x->data, ws[0]->data,
                                                    with_bias ? bs[0]->data : NULL, M, K, N, n, sw, so, sb,
                                                    (void *)stream, &e2);
        if (st == DS_OK) return DS_OK;
        // cuBLASLt refused the batch (no algorithm, or a status such as NOT_SUPPORTED for the broadcast input):
        // the per-linear path below gives the same result; a broken device fails there too and is reported.
        static int warned = 0;
        if (!warned) {
            warned = 1;
            DS_LOGW("cuda", "%s: batched product refused, running %d products: %s", op, n, e2.msg);
        }
    }
    for (int i = 0; i < n; i++)
        DS_TRY(linear_run(outs[i], x, ws[i], with_bias ? bs[i] : NULL, DS_CUDA_ACT_NONE, op, err));
    return DS_OK;
}
