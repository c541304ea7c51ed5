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

#endif  // DS_CUDA_UTIL_CUH
