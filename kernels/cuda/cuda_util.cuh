// cuda_util.cuh - private helpers shared by the CUDA op twins (kernels/cuda/ops_*.cu): argument checks in
// the house error convention, element load/store with fp32 arithmetic for f32/bf16/f16, a dtype switch
// that instantiates a kernel template per element type, and the launch-error check. Not installed; not
// part of any public contract (ds_cuda_ops.h is).
#ifndef DS_CUDA_UTIL_CUH
#define DS_CUDA_UTIL_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "ds_cuda_ops.h"
#include "status.h"
#include "tensor.h"

// ---- element access: every kernel loads to float and stores one rounding (to nearest even) ---------

__device__ __forceinline__ float ds_ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ds_ld(const __nv_bfloat16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ds_ld(const __half *p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void ds_st(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void ds_st(__nv_bfloat16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void ds_st(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }

// DS_CUDA_DTYPE_SWITCH(dtype, T, ...): runs the body with T = float, __nv_bfloat16 or __half;
// another dtype makes the enclosing function return DS_ERR_UNSUPPORTED (needs `err` and `op` in scope).
#define DS_CUDA_DTYPE_SWITCH(dtype, T, ...)                                                              \
    switch (dtype) {                                                                                    \
    case DS_F32: {                                                                                      \
        typedef float T;                                                                                \
        __VA_ARGS__;                                                                                    \
    } break;                                                                                            \
    case DS_BF16: {                                                                                     \
        typedef __nv_bfloat16 T;                                                                        \
        __VA_ARGS__;                                                                                    \
    } break;                                                                                            \
    case DS_F16: {                                                                                      \
        typedef __half T;                                                                               \
        __VA_ARGS__;                                                                                    \
    } break;                                                                                            \
    default:                                                                                            \
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: dtype %d is not f32, bf16 or f16", op, (int)(dtype)); \
    }

// ---- argument checks --------------------------------------------------------------------------------

// t present, on a CUDA device, of element type `dtype` (or any of the three when dtype < 0), `ndim` dims
// (-1: any), contiguous. `op`/`what` name the op and the argument in the message.
static inline ds_status ds_cuda_check(const ds_tensor *t, int ndim, int dtype, const char *op, const char *what,
                                      ds_err *err) {
    if (!t || !t->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s: missing tensor", op, what);
    if (t->device.kind != DS_DEVICE_CUDA)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %s: a CPU tensor among CUDA tensors", op, what);
    if (dtype >= 0 && (int)t->dtype != dtype)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %s: dtype %d, expected %d (one dtype per call)", op, what,
                       (int)t->dtype, dtype);
    if (t->dtype != DS_F32 && t->dtype != DS_BF16 && t->dtype != DS_F16)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %s: dtype %d", op, what, (int)t->dtype);
    if (ndim >= 0 && t->ndim != ndim)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s: %d dims, expected %d", op, what, t->ndim, ndim);
    if (!ds_tensor_is_contiguous(t)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s: not contiguous", op, what);
    return DS_OK;
}

// Same ndim and shape.
static inline ds_status ds_cuda_check_same_shape(const ds_tensor *a, const ds_tensor *b, const char *op,
                                                 const char *an, const char *bn, ds_err *err) {
    bool same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    if (same) return DS_OK;
    char sa[96], sb[96];
    return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s %s and %s %s differ in shape", op, an,
                   ds_tensor_shape_str(a, sa, sizeof sa), bn, ds_tensor_shape_str(b, sb, sizeof sb));
}

// The current context's stream, or DS_ERR_DEVICE (into `st`-returning caller) when no context is bound.
#define DS_CUDA_STREAM(var)                                                                              \
    ds_cuda_ctx *var##_ctx_ = ds_cuda_ctx_current();                                                     \
    if (!var##_ctx_) return DS_FAIL(err, DS_ERR_DEVICE, "%s: no CUDA context bound to this thread", op); \
    cudaStream_t var = (cudaStream_t)ds_cuda_ctx_stream(var##_ctx_)

// After a launch: a launch error becomes DS_ERR_DEVICE naming the op.
static inline ds_status ds_cuda_launched(const char *op, ds_err *err) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return DS_FAIL(err, DS_ERR_DEVICE, "%s: kernel launch failed: %s", op, cudaGetErrorString(e));
    return DS_OK;
}

// Blocks of `threads` covering n items, capped for grid-stride loops.
static inline unsigned ds_cuda_blocks(int64_t n, unsigned threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > 65535LL * 32) b = 65535LL * 32;
    return (unsigned)b;
}

// ---- vector access and reductions (row-wise and elementwise ops) ------------------------------------

// True when p is aligned to `bytes` (a power of two): the host-side condition for ds_ld_vec / ds_st_vec.
static inline bool ds_cuda_aligned(const void *p, size_t bytes) { return ((uintptr_t)p & (bytes - 1)) == 0; }

// The machine word of a 4-, 8- or 16-byte vector access (other sizes do not compile).
template <int BYTES> struct ds_vec_word;
template <> struct ds_vec_word<4> { typedef unsigned int type; };
template <> struct ds_vec_word<8> { typedef uint2 type; };
template <> struct ds_vec_word<16> { typedef uint4 type; };

// v[k] = p[i + k] for k < VEC as floats, in one access of VEC * sizeof(T) bytes when VEC > 1 (p + i must be
// aligned to that many bytes), a plain ds_ld when VEC == 1.
template <int VEC, typename T>
__device__ __forceinline__ void ds_ld_vec(const T *p, int64_t i, float *v) {
    if constexpr (VEC == 1) {
        v[0] = ds_ld(p, i);
    } else {
        typedef typename ds_vec_word<VEC * sizeof(T)>::type W;
        const W w = *reinterpret_cast<const W *>(p + i);
        const T *e = reinterpret_cast<const T *>(&w);
#pragma unroll
        for (int k = 0; k < VEC; k++) v[k] = ds_ld(e, k);
    }
}

// p[i + k] = v[k] for k < VEC, each rounded once to T, stored as one access as in ds_ld_vec.
template <int VEC, typename T>
__device__ __forceinline__ void ds_st_vec(T *p, int64_t i, const float *v) {
    if constexpr (VEC == 1) {
        ds_st(p, i, v[0]);
    } else {
        typedef typename ds_vec_word<VEC * sizeof(T)>::type W;
        W w;
        T *e = reinterpret_cast<T *>(&w);
#pragma unroll
        for (int k = 0; k < VEC; k++) ds_st(e, k, v[k]);
        *reinterpret_cast<W *>(p + i) = w;
    }
}

// Sum / max over aligned groups of `width` lanes (a power of two <= 32): every lane of the warp calls, and
// each lane gets its group's result. Max uses fmaxf (a NaN operand is ignored).
__device__ __forceinline__ float ds_warp_sum(float v, int width) {
    for (int o = width >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float ds_warp_max(float v, int width) {
    for (int o = width >> 1; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum / max over the whole block (blockDim.x a multiple of 32, <= 1024): every thread calls it from uniform
// control flow and gets the result. `red`: 32 floats of shared memory; the call starts with a barrier, so
// back-to-back calls may share it.
__device__ __forceinline__ float ds_block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = ds_warp_sum(v, 32);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? red[lane] : 0.0f;
    return ds_warp_sum(v, 32);
}
__device__ __forceinline__ float ds_block_max(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = ds_warp_max(v, 32);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? red[lane] : -INFINITY;
    return ds_warp_max(v, 32);
}

// ---- context scratch and aliasing (context.cu; used by ops_image.cu, ops_attention.cu, ops_linear.cu) ----

// The context's small device scratch for multi-block reductions (256 KiB, allocated at create); *bytes
// (may be NULL) receives its size. Only work on that context's stream may use it: stream order keeps
// one op's partials from the next op's. NULL ctx gives NULL and 0.
extern "C" void *ds_cuda_ctx_scratch(const ds_cuda_ctx *ctx, size_t *bytes);

// True when the byte ranges of a and b (contiguous tensors) overlap; empty tensors overlap nothing.
static inline bool ds_cuda_overlap(const ds_tensor *a, const ds_tensor *b) {
    const char *a0 = (const char *)a->data, *b0 = (const char *)b->data;
    const int64_t na = ds_tensor_nbytes(a), nb = ds_tensor_nbytes(b);
    if (na <= 0 || nb <= 0) return false;
    return a0 < b0 + nb && b0 < a0 + na;
}

// Launch shape of a row-wise kernel in which a group of `tpr` threads owns one row of `nv` vectors and each
// thread keeps up to `per_thread` of them in registers. tpr is the smallest power of two <= 32 that holds the
// row (then 256 / tpr rows share a 256-thread block and reduce with ds_warp_*), else a multiple of 32 up to
// 1024 (one row per block, blockDim.x == tpr, ds_block_*); a row longer than 1024 * per_thread vectors is
// finished from memory by the kernel. blocks is capped for a grid-stride loop over row groups.
struct ds_row_layout {
    int tpr, threads, rows_per_block;
    unsigned blocks;
};
static inline ds_row_layout ds_cuda_row_layout(int64_t rows, int64_t nv, int per_thread) {
    ds_row_layout l;
    int64_t need = (nv + per_thread - 1) / per_thread;  // threads to hold the row in registers
    if (need < 1) need = 1;
    if (need <= 32) {
        l.tpr = 1;
        while (l.tpr < need) l.tpr <<= 1;
        l.threads = 256;
    } else {
        l.tpr = need >= 1024 ? 1024 : (int)((need + 31) / 32 * 32);
        l.threads = l.tpr;
    }
    l.rows_per_block = l.threads / l.tpr;
    l.blocks = ds_cuda_blocks(rows, (unsigned)l.rows_per_block);
    return l;
}

// ---- attention paths (ops_attention_mma.cu) ----------------------------------------------------------

// True when the tensor-core tile can run this (already validated) attention call: bf16/f16, no mask, head
// dim a multiple of 8 and <= ATT_MMA_MAX_D (128), every pointer 16-byte aligned.
bool ds_cuda_attention_mma_eligible(const ds_tensor *out, const ds_tensor *q, const ds_tensor *k, const ds_tensor *v,
                                    const ds_tensor *mask);

// Enqueue the tensor-core tile on `stream` for an eligible call (q, out [B, Nq, H, d]; k, v [B, Nk, H, d],
// Nk > 0). sc2 = scale * log2(e). Errors: DS_ERR_DEVICE (shared-memory opt-in or launch), DS_ERR_UNSUPPORTED
// (grid too large).
ds_status ds_cuda_attention_mma(ds_tensor *out, const ds_tensor *q, const ds_tensor *k, const ds_tensor *v, float sc2,
                                cudaStream_t stream, const char *op, ds_err *err);

#endif  // DS_CUDA_UTIL_CUH
