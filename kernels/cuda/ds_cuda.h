/* ds_cuda.h - C interface of the CUDA backend (the .cu files in kernels/cuda, extern "C"). Included only when
 * DS_HAVE_CUDA is defined. Every function returns ds_status; CUDA errors become DS_ERR_DEVICE with
 * the runtime's error string, never an abort. Pointers named d_* are device memory.
 * Streams are cudaStream_t passed as `void *` so C callers need no CUDA headers; NULL is the legacy
 * default stream. */
#ifndef DS_CUDA_H
#define DS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- device discovery (device.cu) --------------------------------------------------------- */

/* cudaGetDeviceCount; an error (no driver, no device) gives *n = 0 and DS_ERR_DEVICE with the reason. */
ds_status ds_cuda_device_count(int *n, ds_err *err);

/* "NVIDIA H100 80GB HBM3, sm_90, 79 GiB" for device `index`, "" on error. */
void ds_cuda_device_name(int index, char *buf, size_t len);

/* ---- memory (memory.cu) ------------------------------------------------------------------- */

/* Make device `index` current for the calling host thread. DS_ERR_DEVICE on a bad ordinal or no
 * device. */
ds_status ds_cuda_set_device(int index, ds_err *err);

/* Allocate `bytes` of device memory on the current device into *d (caller frees with ds_cuda_free).
 * bytes == 0 gives *d = NULL and DS_OK. On failure *d = NULL and DS_ERR_OOM naming the size and the
 * CUDA reason (also when the reason is "no device": the caller asked for memory it cannot get). */
ds_status ds_cuda_malloc(void **d, size_t bytes, ds_err *err);

/* Free memory from ds_cuda_malloc. NULL is a no-op. Errors are ignored (cudaFree may report an
 * earlier asynchronous error; the next synchronizing call reports it). */
void ds_cuda_free(void *d);

/* Synchronous copies of `bytes` between host memory (pageable or pinned) and device memory.
 * bytes == 0 is a no-op. DS_ERR_INVALID_ARG on NULL pointers with bytes > 0; DS_ERR_DEVICE on a CUDA
 * error (which may be an earlier asynchronous kernel error surfacing here). */
ds_status ds_cuda_memcpy_h2d(void *d_dst, const void *src, size_t bytes, ds_err *err);
ds_status ds_cuda_memcpy_d2h(void *dst, const void *d_src, size_t bytes, ds_err *err);

/* Set `bytes` bytes at d to the byte value (value & 0xFF), synchronously. bytes == 0 is a no-op.
 * (Tests poison outputs with 0xFF: every f32/f16/bf16 element then reads as NaN.) */
ds_status ds_cuda_memset(void *d, int value, size_t bytes, ds_err *err);

/* Page-locked (pinned) host memory of `bytes` for staging transfers (cudaMallocHost), freed with
 * ds_cuda_host_free. bytes == 0 gives *p = NULL. Errors: DS_ERR_OOM with the CUDA reason. */
ds_status ds_cuda_host_alloc(void **p, size_t bytes, ds_err *err);
void ds_cuda_host_free(void *p);

/* cudaDeviceSynchronize: waits for all work on the current device and reports any asynchronous
 * error as DS_ERR_DEVICE. */
ds_status ds_cuda_synchronize(ds_err *err);

/* ---- random numbers (rng.cu) -------------------------------------------------------------- */

/* The CUDA twin of ds_rng_normal (kernels/rng.h): d_out[i] = normal(seed, offset + i) for
 * i in [0, n), same Philox4x32-10 stream and double-precision Box-Muller, so every element agrees
 * with the CPU within 1e-6 absolute. d_out: n floats of device memory; only those n are written.
 * Asynchronous on `stream` (cudaStream_t or NULL). n == 0 is a no-op; n < 0 or d_out == NULL with
 * n > 0 is DS_ERR_INVALID_ARG; a launch failure is DS_ERR_DEVICE. */
ds_status ds_cuda_rng_normal(uint64_t seed, uint64_t offset, float *d_out, int64_t n, void *stream, ds_err *err);

/* ---- cuBLASLt matrix products (linear_lt.cu) ------------------------------------------------ */

/* A cuBLASLt handle plus a device workspace and a per-problem algorithm cache, used by one stream (and
 * one host thread) at a time. */
typedef struct ds_cuda_lt ds_cuda_lt;

/* Create a handle on the current device with a workspace of `workspace_bytes` (0 allowed; 32 MiB is
 * a good size on Hopper) and an empty 64-entry algorithm cache. *lt receives an object the caller
 * releases with ds_cuda_lt_destroy. DS_ERR_OOM if the workspace or the host structs cannot be
 * allocated, DS_ERR_DEVICE if cuBLASLt cannot start. On failure *lt = NULL. */
ds_status ds_cuda_lt_create(ds_cuda_lt **lt, size_t workspace_bytes, ds_err *err);

/* Release the handle and its workspace (after the work using it has finished). NULL is a no-op. */
void ds_cuda_lt_destroy(ds_cuda_lt *lt);

/* Algorithm cache: the heuristic's choice is kept per problem (dtype, transposes, M/N/K, leading
 * dimensions, bias or not, accumulate or not, and the alignment of each matrix pointer) in a fixed
 * table of 64 entries with least-recently-used replacement, allocated at create: a repeated shape runs
 * no heuristic, and no call allocates (descriptors live on the stack). Counters since create, for
 * tests and benchmarks (NULL lt gives 0). */
void ds_cuda_lt_cache_stats(const ds_cuda_lt *lt, uint64_t *hits, uint64_t *misses);

/* nn.Linear: out[M,N] = x[M,K] . w[N,K]^T + bias[N], all contiguous row-major device memory.
 * dtype DS_F32: x, w, bias, out are f32; fp32 compute, no TF32.
 * dtype DS_BF16 / DS_F16: x, w, bias, out are bf16 / f16 (uint16 bit patterns); fp32 accumulation, one
 * rounding at the end (after the bias add); split-K partials are kept in fp32 whenever the heuristic
 * offers such an algorithm.
 * d_bias may be NULL (no bias); when given it must be 16-byte aligned (DS_ERR_INVALID_ARG otherwise).
 * out, x, w need only element alignment (the actual alignment is passed to the algorithm choice).
 * out must not overlap x, w or bias. M == 0 or N == 0 is a no-op;
 * K <= 0, negative sizes, NULL pointers or another dtype are DS_ERR_INVALID_ARG. Asynchronous on
 * `stream` (cudaStream_t or NULL); the workspace of `lt` is used, so one lt must not run on two
 * streams at once. cuBLASLt errors are DS_ERR_DEVICE with the cublasStatus_t number; no algorithm for
 * the shape is DS_ERR_UNSUPPORTED. */
ds_status ds_cuda_linear(ds_cuda_lt *lt, ds_dtype dtype, void *d_out, const void *d_x, const void *d_w,
                         const void *d_bias, int64_t M, int64_t K, int64_t N, void *stream, ds_err *err);

/* Activation fused into ds_cuda_linear_act's epilogue. */
typedef enum { DS_CUDA_ACT_NONE = 0, DS_CUDA_ACT_GELU_TANH = 1 } ds_cuda_act;

/* ds_cuda_linear with an activation applied to the fp32 result (after the bias) before the one rounding:
 * DS_CUDA_ACT_GELU_TANH is cuBLASLt's GELU epilogue (CUBLASLT_EPILOGUE_GELU_BIAS / _GELU, the tanh form
 * PyTorch's addmm+GELU path falls back to as gelu(approximate="tanh")). Same contract and errors as
 * ds_cuda_linear; another act is DS_ERR_INVALID_ARG. */
ds_status ds_cuda_linear_act(ds_cuda_lt *lt, ds_dtype dtype, void *d_out, const void *d_x, const void *d_w,
                             const void *d_bias, int64_t M, int64_t K, int64_t N, ds_cuda_act act, void *stream,
                             ds_err *err);

/* `count` nn.Linear products of one input as one strided-batched cuBLASLt call: for i < count,
 * out + i*stride_out [M,N] = x[M,K] . (w + i*stride_w)[N,K]^T + (bias + i*stride_bias)[N] (strides in elements;
 * bias NULL: none for any i). Types, arithmetic and alignment rules as ds_cuda_linear (each bias 16-byte aligned).
 * Errors as ds_cuda_linear; M, N, K must be positive and the strides at least one matrix (no overlap);
 * DS_ERR_UNSUPPORTED when cuBLASLt has no algorithm for the batch, DS_ERR_DEVICE with the cuBLAS status when it
 * refuses it otherwise (callers may then run count products: ds_cuda_op_linear_multi does). */
ds_status ds_cuda_linear_batched(ds_cuda_lt *lt, ds_dtype dtype, void *d_out, const void *d_x, const void *d_w,
                                 const void *d_bias, int64_t M, int64_t K, int64_t N, int count, int64_t stride_w,
                                 int64_t stride_out, int64_t stride_bias, void *stream, ds_err *err);

/* General row-major product (conv2d's W . im2col): C[M,N] = A[M,K] . B[K,N] + row_bias[M] (added to
 * every element of row i of C), row-major with leading dimensions (row strides, in elements)
 * lda >= K, ldb >= N, ldc >= N, so A, B and C may be column slices or row bands of larger matrices.
 * Types and arithmetic as ds_cuda_linear (one dtype for A, B, C and the bias). The bias needs only
 * element alignment: it is written into C first (a small kernel) and the product accumulates onto it
 * (beta = 1, the same fp32 sum and one rounding at the end); d_row_bias NULL means plain C = A.B.
 * K == 0 writes the bias (or zeros) into C. C must not overlap A, B or the bias. M == 0 or N == 0 is a
 * no-op; negative sizes, leading dimensions too small, NULL pointers or another dtype are
 * DS_ERR_INVALID_ARG. Asynchronous on `stream`; errors as ds_cuda_linear. */
ds_status ds_cuda_gemm_rowmajor(ds_cuda_lt *lt, ds_dtype dtype, void *d_c, int64_t ldc, const void *d_a, int64_t lda,
                                const void *d_b, int64_t ldb, const void *d_row_bias, int64_t M, int64_t N, int64_t K,
                                void *stream, ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_CUDA_H */
