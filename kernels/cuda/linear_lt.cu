// linear_lt.cu - matrix products on the GPU through cuBLASLt (see ds_cuda.h for the contracts):
//   ds_cuda_linear:         nn.Linear, out[M,N] = x[M,K] . w[N,K]^T + bias[N] (row-major, contiguous), bias
//                           fused through the CUBLASLT_EPILOGUE_BIAS epilogue (ds_cuda_linear_act: + tanh
//                           GELU, CUBLASLT_EPILOGUE_GELU_BIAS);
//   ds_cuda_linear_batched: count linears of one input x with evenly spaced weights, biases and outputs (a
//                           block's q, k, v) as one strided-batched product, x broadcast (batch stride 0);
//   ds_cuda_gemm_rowmajor:  C[M,N] = A[M,K] . B[K,N] + bias[M] per row of C (row-major, any leading
//                           dimensions; conv2d's W . im2col), bias pre-filled into C then beta = 1.
// Types: f32 (fp32 compute, no TF32), bf16 and f16 (fp32 accumulation, one rounding at the end).
//
// Row-major to column-major: cuBLASLt is column-major. A row-major R x C matrix with row stride ld is
// the same bytes as a column-major C x R matrix with leading dimension ld, i.e. its transpose. So for
// the linear
//   x   (row-major M x K) reads as column-major x^T   : K x M, ld K
//   w   (row-major N x K) reads as column-major w^T   : K x N, ld K
//   out (row-major M x N) is written as column-major out^T : N x M, ld N
// and out^T = (x w^T)^T = w x^T. With A = the K x N matrix (w^T) and TRANSA = T, op(A) = w (N x K);
// with B = the K x M matrix (x^T) and TRANSB = N, op(B) = x^T (K x M); D = op(A) op(B) is N x M:
// cuBLASLt's m = N, n = M, k = K. The bias epilogue adds bias[i] to every element of row i of D
// ("bias length must match the rows of D"): rows of D are the N output features, as nn.Linear wants.
// For the general product C = A B: C^T (N x M, ld ldc) = B^T (N x K: B as stored, ld ldb, TRANSA = N)
// . A^T (K x M: A as stored, ld lda, TRANSB = N). Its bias runs along the rows of C = the columns of D,
// which the epilogue cannot do, so C is filled with the bias first and the product accumulates (beta 1).
// Bias type: the bias has the type of D (f32, bf16 or f16), set explicitly.
//
// Per-call cost: the descriptors and layouts live on the stack (cublasLt*Init on opaque structs, no
// allocation), and the heuristic's algorithm is cached per problem (dtype, transposes, sizes, leading
// dimensions, bias, beta, pointer alignments) in a 64-entry LRU table allocated with the handle, so a
// repeated shape skips cublasLtMatmulAlgoGetHeuristic entirely.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "ds_cuda.h"

#define LT_CACHE_ENTRIES 64

// Everything the heuristic's choice depends on. Zero-filled before use (compared with memcmp).
struct lt_key {
    int32_t dtype, transa, transb, bias, beta_nonzero, act, batch;
    uint32_t al_a, al_b, al_d;
    int64_t m, n, k, lda, ldb, ldd;
    int64_t stride_a, stride_b, stride_d, stride_bias;  // batch strides (0 when batch == 1)
};

struct lt_entry {
    lt_key key;
    cublasLtMatmulAlgo_t algo;
    uint64_t stamp;  // last use (LRU); 0 = empty slot
};

struct ds_cuda_lt {
    cublasLtHandle_t handle;
    void *workspace;  // device memory, may be NULL when workspace_bytes == 0
    size_t workspace_bytes;
    lt_entry *cache;  // LT_CACHE_ENTRIES, allocated at create
    uint64_t clock;   // LRU stamp source
    uint64_t hits, misses;
};

// One column-major cuBLASLt problem: D[m, n] (ld ldd) = op(A) op(B) (+ bias[m] down every column of D)
// (+ D when beta == 1, C == D in place).
struct lt_problem {
    ds_dtype dtype;
    cublasOperation_t ta, tb;
    int64_t m, n, k;
    const void *a;
    int64_t lda;
    const void *b;
    int64_t ldb;
    void *d;
    int64_t ldd;
    const void *bias;  // epilogue bias [m] or NULL
    ds_cuda_act act;   // activation in the epilogue (after the bias)
    float beta;        // 0 or 1
    int batch;         // >= 1: strided batch of equal products (stride_* in elements; stride_b 0 broadcasts B)
    int64_t stride_a, stride_b, stride_d, stride_bias;
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

static const char *dtype_str(ds_dtype t) { return t == DS_F32 ? "f32" : t == DS_BF16 ? "bf16" : "f16"; }

#define LT_CHECK(call)                                                                                      \
    do {                                                                                                    \
        cublasStatus_t lt_s_ = (call);                                                                      \
        if (lt_s_ != CUBLAS_STATUS_SUCCESS)                                                                 \
            return DS_FAIL(err, DS_ERR_DEVICE, "%s: %s failed: cublas status %d (%s)", fn, #call, (int)lt_s_, \
                           cublasLtGetStatusString(lt_s_));                                                 \
    } while (0)

extern "C" ds_status ds_cuda_lt_create(ds_cuda_lt **lt, size_t workspace_bytes, ds_err *err) {
    if (!lt) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_lt_create: NULL result pointer");
    *lt = NULL;
    ds_cuda_lt *h = (ds_cuda_lt *)calloc(1, sizeof *h);
    lt_entry *cache = (lt_entry *)calloc(LT_CACHE_ENTRIES, sizeof *cache);
    if (!h || !cache) {
        free(h);
        free(cache);
        return DS_FAIL(err, DS_ERR_OOM, "ds_cuda_lt_create: out of host memory");
    }
    h->cache = cache;
    cublasStatus_t s = cublasLtCreate(&h->handle);
    if (s != CUBLAS_STATUS_SUCCESS) {
        free(h->cache);
        free(h);
        return DS_FAIL(err, DS_ERR_DEVICE, "cublasLtCreate failed: cublas status %d (%s)", (int)s,
                       cublasLtGetStatusString(s));
    }
    ds_status st = ds_cuda_malloc(&h->workspace, workspace_bytes, err);
    if (st != DS_OK) {
        ds_err_prefix(err, "cuBLASLt workspace");
        cublasLtDestroy(h->handle);
        free(h->cache);
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
    free(lt->cache);
    free(lt);
}

extern "C" void ds_cuda_lt_cache_stats(const ds_cuda_lt *lt, uint64_t *hits, uint64_t *misses) {
    if (hits) *hits = lt ? lt->hits : 0;
    if (misses) *misses = lt ? lt->misses : 0;
}

// The cached algorithm for `key`, or NULL (then *victim is the slot to fill: empty or least recent).
static const cublasLtMatmulAlgo_t *cache_find(ds_cuda_lt *lt, const lt_key *key, lt_entry **victim) {
    lt_entry *v = &lt->cache[0];
    for (int i = 0; i < LT_CACHE_ENTRIES; i++) {
        lt_entry *e = &lt->cache[i];
        if (e->stamp != 0 && memcmp(&e->key, key, sizeof *key) == 0) {
            e->stamp = ++lt->clock;
            lt->hits++;
            return &e->algo;
        }
        if (v->stamp != 0 && (e->stamp == 0 || e->stamp < v->stamp)) v = e;
    }
    lt->misses++;
    *victim = v;
    return NULL;
}

// Run one problem (sizes already validated, m, n, k >= 1) on `stream`. `fn` names the entry point.
static ds_status lt_matmul(ds_cuda_lt *lt, const lt_problem *p, cudaStream_t stream, const char *fn, ds_err *err) {
    const cudaDataType_t t = p->dtype == DS_F32 ? CUDA_R_32F : p->dtype == DS_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    // CUBLAS_COMPUTE_32F (not _FAST_TF32): full fp32 products and sums for every type.
    const float alpha = 1.0f, beta = p->beta;  // host pointers (default pointer mode)

    cublasLtMatmulDescOpaque_t desc_s;
    cublasLtMatrixLayoutOpaque_t la_s, lb_s, ld_s;
    cublasLtMatmulDesc_t desc = &desc_s;
    cublasLtMatrixLayout_t la = &la_s, lb = &lb_s, ld = &ld_s;
    LT_CHECK(cublasLtMatmulDescInit(desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &p->ta, sizeof p->ta));
    LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &p->tb, sizeof p->tb));
    const bool gelu = p->act == DS_CUDA_ACT_GELU_TANH;
    if (p->bias || gelu) {
        const cublasLtEpilogue_t epi = p->bias ? (gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                               : CUBLASLT_EPILOGUE_GELU;
        LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    }
    if (p->bias) {
        const int32_t bias_type = (int32_t)t;  // bias has the output's type
        LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p->bias, sizeof p->bias));
        LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                sizeof bias_type));
    }
    // Stored shapes: op(A) is m x k, op(B) is k x n.
    const bool an = p->ta == CUBLAS_OP_N, bn = p->tb == CUBLAS_OP_N;
    LT_CHECK(cublasLtMatrixLayoutInit(la, t, (uint64_t)(an ? p->m : p->k), (uint64_t)(an ? p->k : p->m), p->lda));
    LT_CHECK(cublasLtMatrixLayoutInit(lb, t, (uint64_t)(bn ? p->k : p->n), (uint64_t)(bn ? p->n : p->k), p->ldb));
    LT_CHECK(cublasLtMatrixLayoutInit(ld, t, (uint64_t)p->m, (uint64_t)p->n, p->ldd));
    if (p->batch > 1) {
        const int32_t bc = p->batch;
        const cublasLtMatrixLayout_t lays[3] = {la, lb, ld};
        const int64_t strides[3] = {p->stride_a, p->stride_b, p->stride_d};
        for (int i = 0; i < 3; i++) {
            LT_CHECK(cublasLtMatrixLayoutSetAttribute(lays[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
            LT_CHECK(cublasLtMatrixLayoutSetAttribute(lays[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &strides[i],
                                                      sizeof strides[i]));
        }
        if (p->bias)
            LT_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &p->stride_bias,
                                                    sizeof p->stride_bias));
    }

    lt_key key;
    memset(&key, 0, sizeof key);
    key.dtype = (int32_t)p->dtype;
    key.transa = (int32_t)p->ta;
    key.transb = (int32_t)p->tb;
    key.bias = p->bias != NULL;
    key.beta_nonzero = p->beta != 0.0f;
    key.act = (int32_t)p->act;
    key.batch = p->batch;
    key.stride_a = p->stride_a;
    key.stride_b = p->stride_b;
    key.stride_d = p->stride_d;
    key.stride_bias = p->stride_bias;
    key.al_a = ptr_alignment(p->a);
    key.al_b = ptr_alignment(p->b);
    key.al_d = ptr_alignment(p->d);
    key.m = p->m;
    key.n = p->n;
    key.k = p->k;
    key.lda = p->lda;
    key.ldb = p->ldb;
    key.ldd = p->ldd;

    lt_entry *victim = NULL;
    const cublasLtMatmulAlgo_t *algo = cache_find(lt, &key, &victim);
    if (!algo) {
        cublasLtMatmulPreferenceOpaque_t pref_s;
        cublasLtMatmulPreference_t pref = &pref_s;
        LT_CHECK(cublasLtMatmulPreferenceInit(pref));
        const uint64_t ws = lt->workspace_bytes;
        LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
        LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.al_a,
                                                      sizeof key.al_a));
        LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.al_b,
                                                      sizeof key.al_b));
        LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.al_d,
                                                      sizeof key.al_d));
        LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.al_d,
                                                      sizeof key.al_d));
        const bool half = p->dtype != DS_F32;
        if (half) {
            // Split-K partial sums must stay in fp32: forbid the schemes that add partials in bf16/f16
            // (INPLACE, OUTPUT_TYPE). If the heuristic then has nothing, retry with all schemes below.
            const uint32_t mask = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
            LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &mask,
                                                          sizeof mask));
        }
        cublasLtMatmulHeuristicResult_t res;
        int found = 0;
        cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(lt->handle, desc, la, lb, ld, ld, pref, 1, &res, &found);
        if (half && (hs != CUBLAS_STATUS_SUCCESS || found == 0)) {
            const uint32_t all = CUBLASLT_REDUCTION_SCHEME_MASK;
            LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &all,
                                                          sizeof all));
            hs = cublasLtMatmulAlgoGetHeuristic(lt->handle, desc, la, lb, ld, ld, pref, 1, &res, &found);
        }
        if (hs == CUBLAS_STATUS_NOT_SUPPORTED || (hs == CUBLAS_STATUS_SUCCESS && found == 0))
            return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: no cuBLASLt algorithm for %s m=%lld n=%lld k=%lld%s", fn,
                           dtype_str(p->dtype), (long long)p->m, (long long)p->n, (long long)p->k,
                           p->bias ? " +bias" : "");
        LT_CHECK(hs);
        victim->key = key;
        victim->algo = res.algo;
        victim->stamp = ++lt->clock;
        algo = &victim->algo;
    }
    LT_CHECK(cublasLtMatmul(lt->handle, desc, &alpha, p->a, la, p->b, lb, &beta, p->d, ld, p->d, ld, algo,
                            lt->workspace, lt->workspace_bytes, stream));
    return DS_OK;
}

// Common checks: dtype (f32/bf16/f16, else DS_ERR_INVALID_ARG) and element alignment of the pointers.
static ds_status check_dtype_align(ds_dtype dtype, const void *a, const void *b, const void *c, const char *fn,
                                   ds_err *err) {
    if (dtype != DS_F32 && dtype != DS_BF16 && dtype != DS_F16)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bad dtype %d", fn, (int)dtype);
    // (No ds_dtype_* calls here: these helpers stay independent of the C part of the library.)
    const uint32_t es = dtype == DS_F32 ? 4u : 2u;
    if (ptr_alignment(a) < es || ptr_alignment(b) < es || ptr_alignment(c) < es)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: a matrix pointer is not aligned to its %u-byte elements", fn, es);
    return DS_OK;
}

// The column-major problem of out[M,N] = x[M,K] . w[N,K]^T + bias: A = w^T as stored (K x N, ld K, TRANSA = T),
// B = x^T as stored (K x M, ld K), D = out^T (N x M, ld N); no activation, beta 0, no batch.
static lt_problem linear_problem(ds_dtype dtype, void *d_out, const void *d_x, const void *d_w, const void *d_bias,
                                 int64_t M, int64_t K, int64_t N) {
    lt_problem p;
    p.dtype = dtype;
    p.ta = CUBLAS_OP_T;
    p.tb = CUBLAS_OP_N;
    p.m = N;
    p.n = M;
    p.k = K;
    p.a = d_w;
    p.lda = K;
    p.b = d_x;
    p.ldb = K;
    p.d = d_out;
    p.ldd = N;
    p.bias = d_bias;
    p.act = DS_CUDA_ACT_NONE;
    p.beta = 0.0f;
    p.batch = 1;
    p.stride_a = p.stride_b = p.stride_d = p.stride_bias = 0;
    return p;
}

extern "C" ds_status ds_cuda_linear(ds_cuda_lt *lt, ds_dtype dtype, void *d_out, const void *d_x, const void *d_w,
                                    const void *d_bias, int64_t M, int64_t K, int64_t N, void *stream,
                                    ds_err *err) {
    return ds_cuda_linear_act(lt, dtype, d_out, d_x, d_w, d_bias, M, K, N, DS_CUDA_ACT_NONE, stream, err);
}

extern "C" ds_status ds_cuda_linear_act(ds_cuda_lt *lt, ds_dtype dtype, void *d_out, const void *d_x,
                                        const void *d_w, const void *d_bias, int64_t M, int64_t K, int64_t N,
                                        ds_cuda_act act, void *stream, ds_err *err) {
    static const char fn[] = "ds_cuda_linear";
    if (act != DS_CUDA_ACT_NONE && act != DS_CUDA_ACT_GELU_TANH)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: unknown activation %d", fn, (int)act);
    if (!lt) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL cuBLASLt handle", fn);
    if (M < 0 || N < 0 || K <= 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bad sizes M=%lld K=%lld N=%lld", fn, (long long)M, (long long)K,
                       (long long)N);
    if (dtype != DS_F32 && dtype != DS_BF16 && dtype != DS_F16)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bad dtype %d", fn, (int)dtype);
    if (M == 0 || N == 0) return DS_OK;
    if (!d_out || !d_x || !d_w) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL out, x or w", fn);
    ds_status st = check_dtype_align(dtype, d_out, d_x, d_w, fn, err);
    if (st != DS_OK) return st;
    // The alignment preferences do not cover the epilogue's bias pointer, and a kernel may assume 16
    // bytes there; a misaligned access would poison the CUDA context, so refuse it here.
    if (d_bias && ptr_alignment(d_bias) < 16)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bias pointer %p is not 16-byte aligned", fn, d_bias);

    lt_problem p = linear_problem(dtype, d_out, d_x, d_w, d_bias, M, K, N);
    p.act = act;
    return lt_matmul(lt, &p, (cudaStream_t)stream, fn, err);
}

extern "C" ds_status ds_cuda_linear_batched(ds_cuda_lt *lt, ds_dtype dtype, void *d_out, const void *d_x,
                                            const void *d_w, const void *d_bias, int64_t M, int64_t K, int64_t N,
                                            int count, int64_t stride_w, int64_t stride_out, int64_t stride_bias,
                                            void *stream, ds_err *err) {
    static const char fn[] = "ds_cuda_linear_batched";
    if (!lt) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL cuBLASLt handle", fn);
    if (M <= 0 || N <= 0 || K <= 0 || count < 1 || stride_w < N * K || stride_out < M * N ||
        (d_bias && stride_bias < N))
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "%s: bad sizes M=%lld K=%lld N=%lld count=%d or strides w=%lld out=%lld bias=%lld", fn,
                       (long long)M, (long long)K, (long long)N, count, (long long)stride_w, (long long)stride_out,
                       (long long)stride_bias);
    if (dtype != DS_F32 && dtype != DS_BF16 && dtype != DS_F16)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bad dtype %d", fn, (int)dtype);
    if (!d_out || !d_x || !d_w) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL out, x or w", fn);
    ds_status st = check_dtype_align(dtype, d_out, d_x, d_w, fn, err);
    if (st != DS_OK) return st;
    const int64_t es = dtype == DS_F32 ? 4 : 2;
    if (d_bias && (ptr_alignment(d_bias) < 16 || (stride_bias * es) % 16 != 0))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: every bias must be 16-byte aligned", fn);
    // As ds_cuda_linear, batch i: A = w_i^T (K x N), B = x^T (the same for every i: stride 0), D = out_i^T.
    lt_problem p = linear_problem(dtype, d_out, d_x, d_w, d_bias, M, K, N);
    p.batch = count;
    p.stride_a = stride_w;
    p.stride_b = 0;
    p.stride_d = stride_out;
    p.stride_bias = d_bias ? stride_bias : 0;
    return lt_matmul(lt, &p, (cudaStream_t)stream, fn, err);
}

// c[i * ldc + j] = bias ? bias[i] : 0 for i < rows, j < cols. E: the element's bit pattern (2 or 4 bytes).
// Grid: x over columns, y over rows, both grid-stride.
template <typename E>
__global__ void fill_rows_kernel(E *c, int64_t ldc, const E *bias, int64_t rows, int64_t cols) {
    for (int64_t i = blockIdx.y; i < rows; i += gridDim.y) {
        const E v = bias ? bias[i] : (E)0;
        E *row = c + i * ldc;
        for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += (int64_t)gridDim.x * blockDim.x)
            row[j] = v;
    }
}

static ds_status fill_rows(ds_dtype dtype, void *c, int64_t ldc, const void *bias, int64_t rows, int64_t cols,
                           cudaStream_t stream, const char *fn, ds_err *err) {
    const unsigned threads = 256;
    int64_t bx = (cols + threads - 1) / threads;
    if (bx > 1024) bx = 1024;
    const int64_t by = rows < 65535 ? rows : 65535;
    const dim3 grid((unsigned)bx, (unsigned)by);
    if (dtype == DS_F32)
        fill_rows_kernel<uint32_t><<<grid, threads, 0, stream>>>((uint32_t *)c, ldc, (const uint32_t *)bias, rows,
                                                                  cols);
    else
        fill_rows_kernel<uint16_t><<<grid, threads, 0, stream>>>((uint16_t *)c, ldc, (const uint16_t *)bias, rows,
                                                                  cols);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return DS_FAIL(err, DS_ERR_DEVICE, "%s: bias fill launch failed: %s", fn, cudaGetErrorString(e));
    return DS_OK;
}

extern "C" ds_status ds_cuda_gemm_rowmajor(ds_cuda_lt *lt, ds_dtype dtype, void *d_c, int64_t ldc, const void *d_a,
                                           int64_t lda, const void *d_b, int64_t ldb, const void *d_row_bias,
                                           int64_t M, int64_t N, int64_t K, void *stream, ds_err *err) {
    static const char fn[] = "ds_cuda_gemm_rowmajor";
    if (!lt) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL cuBLASLt handle", fn);
    if (M < 0 || N < 0 || K < 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bad sizes M=%lld N=%lld K=%lld", fn, (long long)M, (long long)N,
                       (long long)K);
    if (dtype != DS_F32 && dtype != DS_BF16 && dtype != DS_F16)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bad dtype %d", fn, (int)dtype);
    if (M == 0 || N == 0) return DS_OK;
    if (ldc < N || (K > 0 && (lda < K || ldb < N)))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: leading dimensions lda=%lld ldb=%lld ldc=%lld too small for "
                       "M=%lld N=%lld K=%lld", fn, (long long)lda, (long long)ldb, (long long)ldc, (long long)M,
                       (long long)N, (long long)K);
    if (!d_c || (K > 0 && (!d_a || !d_b))) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL C, A or B", fn);
    ds_status st = check_dtype_align(dtype, d_c, K > 0 ? d_a : d_c, K > 0 ? d_b : d_c, fn, err);
    if (st != DS_OK) return st;
    if (d_row_bias && ptr_alignment(d_row_bias) < (dtype == DS_F32 ? 4u : 2u))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bias pointer %p is not element-aligned", fn, d_row_bias);
    cudaStream_t s = (cudaStream_t)stream;
    // The bias (or, for K = 0, the empty sum) goes into C first; the product then accumulates onto it.
    if (d_row_bias || K == 0) {
        st = fill_rows(dtype, d_c, ldc, d_row_bias, M, N, s, fn, err);
        if (st != DS_OK || K == 0) return st;
    }
    // C^T (N x M, ld ldc) = B^T (B as stored: N x K, ld ldb) . A^T (A as stored: K x M, ld lda).
    lt_problem p;
    p.dtype = dtype;
    p.ta = CUBLAS_OP_N;
    p.tb = CUBLAS_OP_N;
    p.m = N;
    p.n = M;
    p.k = K;
    p.a = d_b;
    p.lda = ldb;
    p.b = d_a;
    p.ldb = lda;
    p.d = d_c;
    p.ldd = ldc;
    p.bias = NULL;
    p.act = DS_CUDA_ACT_NONE;
    p.beta = d_row_bias ? 1.0f : 0.0f;
    p.batch = 1;
    p.stride_a = p.stride_b = p.stride_d = p.stride_bias = 0;
    return lt_matmul(lt, &p, s, fn, err);
}
