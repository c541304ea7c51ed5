/* image_util.h - private helpers shared by the embedding / image CPU ops (rope.c, embed.c, conv.c,
 * groupnorm.c, resample.c): the CPU argument check (a CUDA tensor reaching it means the dispatch did not
 * send it to the twin: DS_ERR_UNSUPPORTED) and shape-mismatch messages. Not part of the public API. */
#ifndef DS_CPU_IMAGE_UTIL_H
#define DS_CPU_IMAGE_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "op_shapes.h"
#include "status.h"
#include "tensor.h"

/* Check that t is a contiguous f32 CPU tensor with `ndim` dims (-1: any). A tensor on another device
 * gives DS_ERR_UNSUPPORTED naming `op`; the rest as ds_tensor_check_f32 (DS_ERR_INVALID_ARG /
 * DS_ERR_UNSUPPORTED for the dtype). */
static inline ds_status ds_img_check(const ds_tensor *t, int ndim, const char *op, const char *what, ds_err *err) {
    if (t && t->device.kind != DS_DEVICE_CPU)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %s is not on the CPU while the op's first tensor is", op, what);
    ds_status s = ds_tensor_check_f32(t, ndim, what, err);
    if (s != DS_OK) ds_err_prefix(err, "%s", op);
    return s;
}

/* Check shape equality (the rule both backends share, op_shapes.h). */
static inline ds_status ds_img_expect_shape(const ds_tensor *t, int ndim, const int64_t *shape, const char *op,
                                            const char *what, ds_err *err) {
    return ds_shape_expect(t, ndim, shape, op, what, err);
}

#endif /* DS_CPU_IMAGE_UTIL_H */
