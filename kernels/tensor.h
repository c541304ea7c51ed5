/* tensor.h - the ditserve tensor: a non-owning view (dtype, device, shape, strides, data pointer).
 *
 * Shapes and strides are in PyTorch order (outermost first); strides count elements, not bytes.
 * A tensor never owns its memory: data belongs to an arena, an mmap'd checkpoint, or the caller. */
#ifndef DS_TENSOR_H
#define DS_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_MAX_DIMS 6

typedef enum ds_device_kind { DS_DEVICE_CPU = 0, DS_DEVICE_CUDA } ds_device_kind;

typedef struct ds_device {
    ds_device_kind kind;
    int            index; /* CUDA ordinal; 0 for the CPU */
} ds_device;

typedef struct ds_tensor {
    ds_dtype  dtype;
    ds_device device;
    int       ndim;                 /* 0..DS_MAX_DIMS; 0 means a scalar (numel 1) */
    int64_t   shape[DS_MAX_DIMS];   /* PyTorch order */
    int64_t   stride[DS_MAX_DIMS];  /* in elements */
    void     *data;                 /* not owned */
} ds_tensor;

/* The CPU device. */
ds_device ds_device_cpu(void);

/* A contiguous CPU tensor of `dtype` over `data` with the given shape (ndim <= DS_MAX_DIMS).
 * No validation beyond ndim; shape entries must be >= 0. */
ds_tensor ds_tensor_make(void *data, ds_dtype dtype, int ndim, const int64_t *shape);

/* Shorthand for contiguous f32 CPU tensors: ds_tensor_f32(ptr, 3, (int64_t[]){B, N, D}). */
#define ds_tensor_f32(data, ndim, ...) ds_tensor_make((data), DS_F32, (ndim), (const int64_t[]){__VA_ARGS__})

/* Number of elements (product of shape; 1 for ndim 0). */
int64_t ds_tensor_numel(const ds_tensor *t);

/* numel * dtype size. */
int64_t ds_tensor_nbytes(const ds_tensor *t);

/* True when strides are the row-major strides of the shape (size-1 dims may have any stride). */
bool ds_tensor_is_contiguous(const ds_tensor *t);

/* Fill t->stride with row-major strides for t->shape. */
void ds_tensor_set_contiguous_strides(ds_tensor *t);

/* A contiguous view of `t` with a new shape of the same numel. Fails with DS_ERR_INVALID_ARG if t
 * is not contiguous or the numel differs. */
ds_status ds_tensor_reshape(const ds_tensor *t, int ndim, const int64_t *shape, ds_tensor *out, ds_err *err);

/* Size of dim `d`, where negative d counts from the end (-1 is the last dim). */
int64_t ds_tensor_dim(const ds_tensor *t, int d);

/* Product of all dims but the last ("rows" of a [..., D] tensor); 1 for ndim <= 1. */
int64_t ds_tensor_rows(const ds_tensor *t);

/* Write "[2, 3, 4]" into buf (for error messages). Returns buf. */
const char *ds_tensor_shape_str(const ds_tensor *t, char *buf, int len);

/* Check that t is a contiguous f32 tensor on the CPU with the given ndim (-1: any). `what` names the
 * argument in the error message ("x", "weight"). Errors: DS_ERR_INVALID_ARG (missing, wrong ndim, not
 * contiguous), DS_ERR_UNSUPPORTED (dtype other than f32, or not on the CPU). */
ds_status ds_tensor_check_f32(const ds_tensor *t, int ndim, const char *what, ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_TENSOR_H */
