// linear_lt.cu - nn.Linear on the GPU through cuBLASLt: out[M,N] = x[M,K] . w[N,K]^T + bias[N]
// (row-major), f32 (fp32 compute, no TF32) and bf16 (fp32 accumulation) paths, bias fused through the
// CUBLASLT_EPILOGUE_BIAS epilogue. See ds_cuda.h for the contract.
//
// Row-major to column-major: cuBLASLt is column-major. A row-major R x C matrix with row stride C is
// the same bytes as a column-major C x R matrix with leading dimension C, i.e. its transpose. So
//   x   (row-major M x K) reads as column-major x^T   : K x M, ld K
//   w   (row-major N x K) reads as column-major w^T   : K x N, ld K
//   out (row-major M x N) is written as column-major out^T : N x M, ld N
// and out^T = (x w^T)^T = w x^T. With A = the K x N matrix (w^T) and TRANSA = T, op(A) = w (N x K);
// with B = the K x M matrix (x^T) and TRANSB = N, op(B) = x^T (K x M); D = op(A) op(B) is N x M:
// cuBLASLt's m = N, n = M, k = K. The bias epilogue adds bias[i] to every element of row i of D
// ("bias length must match the rows of D"): rows of D are the N output features, as nn.Linear wants.
// Bias type: with no CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE set, the bias has the type of D (f32 for
// the f32 path, bf16 for the bf16 path), see cublasLt.h; we set it explicitly to the same value.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdlib.h>

#include "ds_cuda.h"

struct ds_cuda_lt {
    cublasLtHandle_t handle;
    void *workspace;  // device memory, may be NULL when workspace_bytes == 0
    size_t workspace_bytes;
};

// Largest power of two (<= 256) dividing the address: tells the heuristic how aligned the matrices
// really are (it assumes 256 bytes otherwise, and could pick a kernel that faults on an arena
// sub-allocation).
static uint32_t ptr_alignment(const void *p) {
    uintptr_t a = (uintptr_t)p;
    uint32_t al = 256;
    while (al > 1 && a % al != 0) al /= 2;
    return al;
}

#define LT_TRY(call)                                                                                        \
    do {                                                                                                    \
        cublasStatus_t lt_s_ = (call);                                                                      \
        if (lt_s_ != CUBLAS_STATUS_SUCCESS) {                                                               \
            st = DS_FAIL(err, DS_ERR_DEVICE, "%s failed: cublas status %d (%s)", #call, (int)lt_s_,         \
                         cublasLtGetStatusString(lt_s_));                                                   \
            goto done;                                                                                      \
        }                                                                                                   \
    } while (0)

extern "C" ds_status ds_cuda_lt_create(ds_cuda_lt **lt, size_t workspace_bytes, ds_err *err) {
    if (!lt) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_lt_create: NULL result pointer");
    *lt = NULL;
    ds_cuda_lt *h = (ds_cuda_lt *)calloc(1, sizeof *h);
    if (!h) return DS_FAIL(err, DS_ERR_OOM, "ds_cuda_lt_create: out of host memory");
    cublasStatus_t s = cublasLtCreate(&h->handle);
    if (s != CUBLAS_STATUS_SUCCESS) {
        free(h);
        return DS_FAIL(err, DS_ERR_DEVICE, "cublasLtCreate failed: cublas status %d (%s)", (int)s,
                       cublasLtGetStatusString(s));
    }
    ds_status st = ds_cuda_malloc(&h->workspace, workspace_bytes, err);
    if (st != DS_OK) {
        ds_err_prefix(err, "cuBLASLt workspace");
        cublasLtDestroy(h->handle);
        free(h);
        return st;
    }
    h->workspace_bytes = workspace_bytes;
    *lt = h;
    return DS_OK;
}

extern "C" void ds_cuda_lt_destroy(ds_cuda_lt *lt) {
    if (!lt) return;
    ds_cuda_free(lt->workspace);
    cublasLtDestroy(lt->handle);
    free(lt);
}

extern "C" ds_status ds_cuda_linear(ds_cuda_lt *lt, ds_dtype dtype, void *d_out, const void *d_x, const void *d_w,
                                    const void *d_bias, int64_t M, int64_t K, int64_t N, void *stream,
                                    ds_err *err) {
    if (!lt) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_linear: NULL cuBLASLt handle");
    if (M < 0 || N < 0 || K <= 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_linear: bad sizes M=%lld K=%lld N=%lld", (long long)M,
                       (long long)K, (long long)N);
    if (dtype == DS_F16) return DS_FAIL(err, DS_ERR_UNSUPPORTED, "ds_cuda_linear: f16 is not supported");
    if (dtype != DS_F32 && dtype != DS_BF16)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_linear: bad dtype %d", (int)dtype);
    if (M == 0 || N == 0) return DS_OK;
    if (!d_out || !d_x || !d_w) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_linear: NULL out, x or w");
    // (No ds_dtype_* calls here: libds_kernels_cuda.a comes after libds_kernels.a on link lines.)
    const uint32_t es = dtype == DS_F32 ? 4u : 2u;
    if (ptr_alignment(d_out) < es || ptr_alignment(d_x) < es || ptr_alignment(d_w) < es)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_linear: out, x or w not aligned to its %u-byte elements", es);
    // The alignment preferences below do not cover the epilogue's bias pointer, and a kernel may
    // assume 16 bytes there; a misaligned access would poison the CUDA context, so refuse it here.
    if (d_bias && ptr_alignment(d_bias) < 16)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_linear: bias pointer %p is not 16-byte aligned", d_bias);

    const cudaDataType_t t = dtype == DS_F32 ? CUDA_R_32F : CUDA_R_16BF;
    // CUBLAS_COMPUTE_32F (not _FAST_TF32): full fp32 products and sums for both paths.
    const cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
    const cudaDataType_t scale_type = CUDA_R_32F;
    const float alpha = 1.0f, beta = 0.0f;  // host pointers (default pointer mode)
    const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;

    ds_status st = DS_OK;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;

    LT_TRY(cublasLtMatmulDescCreate(&desc, compute, scale_type));
    LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t));
    LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n));
    if (d_bias) {
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        const int32_t bias_type = (int32_t)t;  // bias has the output's type: f32 or bf16
        LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &d_bias, sizeof d_bias));
        LT_TRY(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                              sizeof bias_type));
    }
    // A = w^T as stored (K x N, ld K), B = x^T as stored (K x M, ld K), C = D = out^T (N x M, ld N).
    LT_TRY(cublasLtMatrixLayoutCreate(&la, t, (uint64_t)K, (uint64_t)N, K));
    LT_TRY(cublasLtMatrixLayoutCreate(&lb, t, (uint64_t)K, (uint64_t)M, K));
    LT_TRY(cublasLtMatrixLayoutCreate(&ld, t, (uint64_t)N, (uint64_t)M, N));

    LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
    {
        const uint64_t ws = lt->workspace_bytes;
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
        const uint32_t al_a = ptr_alignment(d_w), al_b = ptr_alignment(d_x), al_d = ptr_alignment(d_out);
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                                    sizeof al_a));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                                    sizeof al_b));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d,
                                                    sizeof al_d));
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d,
                                                    sizeof al_d));
    }
    if (dtype == DS_BF16) {
        // Split-K partial sums must stay in fp32: forbid the schemes that add partials in bf16
        // (INPLACE, OUTPUT_TYPE). If the heuristic then has nothing, retry with all schemes below.
        const uint32_t mask = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
        LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &mask,
                                                    sizeof mask));
    }
    {
        cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(lt->handle, desc, la, lb, ld, ld, pref, 1, &res, &found);
        if (dtype == DS_BF16 && (hs != CUBLAS_STATUS_SUCCESS || found == 0)) {
            const uint32_t all = CUBLASLT_REDUCTION_SCHEME_MASK;
            LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &all,
                                                        sizeof all));
            hs = cublasLtMatmulAlgoGetHeuristic(lt->handle, desc, la, lb, ld, ld, pref, 1, &res, &found);
        }
        if (hs == CUBLAS_STATUS_NOT_SUPPORTED || (hs == CUBLAS_STATUS_SUCCESS && found == 0)) {
            st = DS_FAIL(err, DS_ERR_UNSUPPORTED, "ds_cuda_linear: no cuBLASLt algorithm for %s M=%lld K=%lld N=%lld%s",
                         dtype == DS_F32 ? "f32" : "bf16", (long long)M, (long long)K, (long long)N, d_bias ? " +bias" : "");
            goto done;
        }
        LT_TRY(hs);
    }
    LT_TRY(cublasLtMatmul(lt->handle, desc, &alpha, d_w, la, d_x, lb, &beta, d_out, ld, d_out, ld, &res.algo,
                          lt->workspace, lt->workspace_bytes, (cudaStream_t)stream));

done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
    return st;
}
