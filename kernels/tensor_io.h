/* tensor_io.h - moving f32 host data into and out of tensors on any device and dtype, and dtype-aware
 * views. The models and pipelines keep host-side f32 (scheduler state, timesteps, position tables) and
 * run their tensors on the CPU (f32) or on a CUDA device (f32/bf16/f16); these helpers are the one place
 * that converts and copies between the two. On a build without CUDA a CUDA tensor is DS_ERR_UNSUPPORTED. */
#ifndef DS_TENSOR_IO_H
#define DS_TENSOR_IO_H

#include <stddef.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of host staging that ds_tensor_write_f32 / ds_tensor_read_f32 need for t: 0 when t is f32 (on
 * the CPU it is a memcpy, on CUDA a direct copy), numel * element size otherwise. */
size_t ds_tensor_staging_bytes(const ds_tensor *t);

/* dst (contiguous, any device, f32/bf16/f16) = src[0 .. numel(dst)) (host f32), converting with
 * round-to-nearest-even. `staging` is caller-owned host memory of ds_tensor_staging_bytes(dst) bytes
 * (may be NULL when that is 0). CUDA copies go through the current context's stream and are complete at
 * return. Errors: DS_ERR_INVALID_ARG (NULL, not contiguous, staging too small), DS_ERR_DEVICE. */
ds_status ds_tensor_write_f32(ds_tensor *dst, const float *src, void *staging, size_t staging_bytes, ds_err *err);

/* dst[0 .. numel(src)) (host f32) = src, converted exactly (f16/bf16 -> f32). Same staging rule; the
 * copy waits for the work queued before it on the context's stream. */
ds_status ds_tensor_read_f32(float *dst, const ds_tensor *src, void *staging, size_t staging_bytes, ds_err *err);

/* dst (contiguous, any device) = `bytes` bytes of host data already in dst's dtype (bytes must equal
 * numel * element size): a memcpy on the CPU, an upload through the current context on CUDA. */
ds_status ds_tensor_write_raw(ds_tensor *dst, const void *src, size_t bytes, ds_err *err);

/* Allocate a contiguous tensor of dtype/shape on `device` (host aligned memory for the CPU, cudaMalloc for
 * CUDA) into *t, zero-filled on the CPU. For buffers made once (at load or when a request first needs
 * them), never on the per-step path. Free with ds_tensor_free_data. Errors: DS_ERR_OOM naming the size,
 * DS_ERR_UNSUPPORTED (CUDA on a build without it), DS_ERR_INVALID_ARG (ndim/shape). */
ds_status ds_tensor_alloc(ds_tensor *t, ds_dtype dtype, ds_device device, int ndim, const int64_t *shape, ds_err *err);

/* Release memory from ds_tensor_alloc (by t->device) and clear t->data; NULL data is a no-op. */
void ds_tensor_free_data(ds_tensor *t);

/* Pointer to element `offset` (in elements) of t's data, by its dtype: (char *)t->data + offset * size. */
void *ds_tensor_elem_ptr(const ds_tensor *t, int64_t offset);

/* The contiguous view of rows [start, start + count) along dim 0 of contiguous t (same dtype/device). */
ds_tensor ds_tensor_rows0(const ds_tensor *t, int64_t start, int64_t count);

/* A contiguous tensor view over `data` with the dtype and device of `like`. */
ds_tensor ds_tensor_like(const ds_tensor *like, void *data, int ndim, const int64_t *shape);

/* Check that t is present, contiguous, on `device` with element type `dtype` and `ndim` dims (-1 any).
 * Errors: DS_ERR_INVALID_ARG (missing, ndim, layout), DS_ERR_UNSUPPORTED (device or dtype mismatch, with
 * both named). `what` names the argument. */
ds_status ds_tensor_check_placed(const ds_tensor *t, int ndim, ds_device device, ds_dtype dtype, const char *what,
                                 ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_TENSOR_IO_H */
