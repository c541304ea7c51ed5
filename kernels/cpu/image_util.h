/* image_util.h - private helpers shared by the embedding / image CPU ops (rope.c, embed.c, conv.c,
 * groupnorm.c, resample.c): argument checks that map a non-CPU tensor to DS_ERR_UNSUPPORTED (as
 * ops.h promises: no CUDA twin exists yet) and shape-mismatch messages. Not part of the public API. */
#ifndef DS_CPU_IMAGE_UTIL_H
#define DS_CPU_IMAGE_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

/* Check that t is a contiguous f32 CPU tensor with `ndim` dims (-1: any). A tensor on another device
 * gives DS_ERR_UNSUPPORTED naming `op`; the rest as ds_tensor_check_f32 (DS_ERR_INVALID_ARG /
 * DS_ERR_UNSUPPORTED for the dtype). */
static inline ds_status ds_img_check(const ds_tensor *t, int ndim, const char *op, const char *what, ds_err *err) {
    if (t && t->device.kind != DS_DEVICE_CPU)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %s is not on the CPU and this op has no CUDA kernel yet", op,
                       what);
    ds_status s = ds_tensor_check_f32(t, ndim, what, err);
    if (s != DS_OK) ds_err_prefix(err, "%s", op);
    return s;
}

/* True when t has exactly the given shape (ndim dims). */
static inline bool ds_img_shape_is(const ds_tensor *t, int ndim, const int64_t *shape) {
    if (t->ndim != ndim) return false;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return false;
    return true;
}

/* Fail with DS_ERR_INVALID_ARG: "<op>: <what> has shape [..], expected [..]". */
static inline ds_status ds_img_shape_fail(const ds_tensor *t, int ndim, const int64_t *shape, const char *op,
                                          const char *what, ds_err *err) {
    char got[96], want[96];
    ds_tensor e;
    e.ndim = ndim;
    for (int i = 0; i < ndim && i < DS_MAX_DIMS; i++) e.shape[i] = shape[i];
    ds_tensor_shape_str(t, got, sizeof got);
    ds_tensor_shape_str(&e, want, sizeof want);
    return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s has shape %s, expected %s", op, what, got, want);
}

/* Check shape equality and fail with the message above otherwise. */
static inline ds_status ds_img_expect_shape(const ds_tensor *t, int ndim, const int64_t *shape, const char *op,
                                            const char *what, ds_err *err) {
    if (ds_img_shape_is(t, ndim, shape)) return DS_OK;
    return ds_img_shape_fail(t, ndim, shape, op, what, err);
}

#endif /* DS_CPU_IMAGE_UTIL_H */
