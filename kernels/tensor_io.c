/* tensor_io.c - host f32 <-> tensor copies with dtype conversion, and dtype-aware views (tensor_io.h). */
#include "tensor_io.h"

#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#ifdef DS_HAVE_CUDA
#include "cuda/ds_cuda.h"
#include "cuda/ds_cuda_ops.h"
#endif

size_t ds_tensor_staging_bytes(const ds_tensor *t) {
    if (!t || t->dtype == DS_F32) return 0;
    return (size_t)ds_tensor_numel(t) * ds_dtype_size(t->dtype);
}

static ds_status io_check(const ds_tensor *t, const void *host, void *staging, size_t staging_bytes, const char *fn,
                          ds_err *err) {
    if (!t || !host || !t->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL tensor or buffer", fn);
    if (!ds_tensor_is_contiguous(t)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: tensor is not contiguous", fn);
    if (t->dtype != DS_F32 && t->device.kind == DS_DEVICE_CPU)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: a %s CPU tensor (the CPU backend keeps f32)", fn,
                       ds_dtype_name(t->dtype));
    const size_t need = ds_tensor_staging_bytes(t);
    if (need && (!staging || staging_bytes < need))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %zu bytes of staging needed, %zu given", fn, need,
                       staging ? staging_bytes : 0);
#ifndef DS_HAVE_CUDA
    if (t->device.kind == DS_DEVICE_CUDA)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: a CUDA tensor, but this build has no CUDA backend", fn);
#endif
    return DS_OK;
}

ds_status ds_tensor_write_f32(ds_tensor *dst, const float *src, void *staging, size_t staging_bytes, ds_err *err) {
    DS_TRY(io_check(dst, src, staging, staging_bytes, "ds_tensor_write_f32", err));
    const int64_t n = ds_tensor_numel(dst);
    if (dst->device.kind == DS_DEVICE_CPU) {
        if (dst->data != src) memcpy(dst->data, src, (size_t)n * sizeof(float));
        return DS_OK;
    }
#ifdef DS_HAVE_CUDA
    const void *from = src;
    if (dst->dtype != DS_F32) {
        ds_convert(staging, dst->dtype, src, DS_F32, (size_t)n);
        from = staging;
    }
    return ds_cuda_ctx_upload(dst->data, from, (size_t)n * ds_dtype_size(dst->dtype), err);
#else
    return DS_FAIL(err, DS_ERR_UNSUPPORTED, "ds_tensor_write_f32: no CUDA backend");
#endif
}

ds_status ds_tensor_read_f32(float *dst, const ds_tensor *src, void *staging, size_t staging_bytes, ds_err *err) {
    DS_TRY(io_check(src, dst, staging, staging_bytes, "ds_tensor_read_f32", err));
    const int64_t n = ds_tensor_numel(src);
    if (src->device.kind == DS_DEVICE_CPU) {
        if (dst != src->data) memcpy(dst, src->data, (size_t)n * sizeof(float));
        return DS_OK;
    }
#ifdef DS_HAVE_CUDA
    if (src->dtype == DS_F32) return ds_cuda_ctx_download(dst, src->data, (size_t)n * sizeof(float), err);
    DS_TRY(ds_cuda_ctx_download(staging, src->data, (size_t)n * ds_dtype_size(src->dtype), err));
    ds_convert(dst, DS_F32, staging, src->dtype, (size_t)n);
    return DS_OK;
#else
    return DS_FAIL(err, DS_ERR_UNSUPPORTED, "ds_tensor_read_f32: no CUDA backend");
#endif
}

ds_status ds_tensor_write_raw(ds_tensor *dst, const void *src, size_t bytes, ds_err *err) {
    if (!dst || !src || !dst->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_tensor_write_raw: NULL tensor or buffer");
    if (bytes != (size_t)ds_tensor_nbytes(dst))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_tensor_write_raw: %zu bytes for a tensor of %lld bytes", bytes,
                       (long long)ds_tensor_nbytes(dst));
    if (dst->device.kind == DS_DEVICE_CPU) {
        if (dst->data != src) memcpy(dst->data, src, bytes);
        return DS_OK;
    }
#ifdef DS_HAVE_CUDA
    return ds_cuda_ctx_upload(dst->data, src, bytes, err);
#else
    return DS_FAIL(err, DS_ERR_UNSUPPORTED, "ds_tensor_write_raw: a CUDA tensor, but this build has no CUDA backend");
#endif
}

ds_status ds_tensor_alloc(ds_tensor *t, ds_dtype dtype, ds_device device, int ndim, const int64_t *shape, ds_err *err) {
    if (!t || ndim < 0 || ndim > DS_MAX_DIMS || (ndim > 0 && !shape))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_tensor_alloc: bad arguments");
    *t = ds_tensor_make(NULL, dtype, ndim, shape);
    t->device = device;
    const size_t bytes = (size_t)ds_tensor_nbytes(t);
    const size_t rounded = (bytes + 255) / 256 * 256 + 256;
    if (device.kind == DS_DEVICE_CPU) {
        t->data = aligned_alloc(256, rounded);
        if (!t->data) return DS_FAIL(err, DS_ERR_OOM, "cannot allocate %zu bytes of host memory", bytes);
        memset(t->data, 0, rounded);
        return DS_OK;
    }
#ifdef DS_HAVE_CUDA
    void *d = NULL;
    DS_TRY(ds_cuda_malloc(&d, rounded, err));
    t->data = d;
    return DS_OK;
#else
    return DS_FAIL(err, DS_ERR_UNSUPPORTED, "ds_tensor_alloc: a CUDA tensor, but this build has no CUDA backend");
#endif
}

void ds_tensor_free_data(ds_tensor *t) {
    if (!t || !t->data) return;
#ifdef DS_HAVE_CUDA
    if (t->device.kind == DS_DEVICE_CUDA) ds_cuda_free(t->data);
#endif
    if (t->device.kind == DS_DEVICE_CPU) free(t->data);
    t->data = NULL;
}

void *ds_tensor_elem_ptr(const ds_tensor *t, int64_t offset) {
    return (char *)t->data + offset * (int64_t)ds_dtype_size(t->dtype);
}

ds_tensor ds_tensor_rows0(const ds_tensor *t, int64_t start, int64_t count) {
    ds_tensor v = *t;
    const int64_t row = t->ndim > 0 ? ds_tensor_numel(t) / (t->shape[0] ? t->shape[0] : 1) : 1;
    v.data = ds_tensor_elem_ptr(t, start * row);
    if (v.ndim > 0) v.shape[0] = count;
    ds_tensor_set_contiguous_strides(&v);
    return v;
}

ds_tensor ds_tensor_like(const ds_tensor *like, void *data, int ndim, const int64_t *shape) {
    ds_tensor t = ds_tensor_make(data, like->dtype, ndim, shape);
    t.device = like->device;
    return t;
}

ds_status ds_tensor_check_placed(const ds_tensor *t, int ndim, ds_device device, ds_dtype dtype, const char *what,
                                 ds_err *err) {
    if (!t || !t->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: missing tensor", what);
    if (t->device.kind != device.kind || t->device.index != device.index)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: on %s:%d, the model runs on %s:%d", what,
                       t->device.kind == DS_DEVICE_CUDA ? "cuda" : "cpu", t->device.index,
                       device.kind == DS_DEVICE_CUDA ? "cuda" : "cpu", device.index);
    if (t->dtype != dtype)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: dtype %s, the model runs in %s", what, ds_dtype_name(t->dtype),
                       ds_dtype_name(dtype));
    if (ndim >= 0 && t->ndim != ndim)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %d dims, expected %d", what, t->ndim, ndim);
    if (!ds_tensor_is_contiguous(t)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: not contiguous", what);
    return DS_OK;
}
