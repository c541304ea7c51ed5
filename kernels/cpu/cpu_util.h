/* cpu_util.h - private helpers shared by the CPU reference ops (kernels/cpu/ files): argument
 * validation in the house error convention, shape comparison, overlap tests, and the OpenMP
 * threshold below which an op stays on one thread. Header-only (static inline); not installed and
 * not part of the public op contract in ops.h. */
#ifndef DS_CPU_UTIL_H
#define DS_CPU_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "op_shapes.h"
#include "ops.h"
#include "status.h"
#include "tensor.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Work (elements touched) below which an op runs on one thread: forking a team costs a few us. */
#define DS_CPU_PAR_MIN 32768

/* Threads an OpenMP region may use (1 without OpenMP). */
static inline int ds_cpu_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Index of the calling thread inside a parallel region (0 without OpenMP). */
static inline int ds_cpu_thread_num(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Validate a tensor argument of a CPU op: present, on the CPU (a CUDA tensor -> DS_ERR_UNSUPPORTED
 * the dispatch in ops_dispatch.h sends those to the CUDA twin first), f32 (else DS_ERR_UNSUPPORTED), `ndim` dims (-1: any; else
 * DS_ERR_INVALID_ARG) and contiguous (else DS_ERR_INVALID_ARG). `op` and `what` name the op and the
 * argument in the message ("layernorm: weight: ..."). */
static inline ds_status ds_cpu_check(const ds_tensor *t, int ndim, const char *op, const char *what, ds_err *err) {
    if (!t || !t->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s: missing tensor", op, what);
    if (t->device.kind != DS_DEVICE_CPU)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %s: tensor on device kind %d, only the CPU backend exists", op,
                       what, (int)t->device.kind);
    ds_status s = ds_tensor_check_f32(t, ndim, what, err);
    if (s != DS_OK) ds_err_prefix(err, "%s", op);
    return s;
}

/* Like ds_cpu_check for a [B, D] operand that may be a column slice of a wider row-major matrix:
 * 2 dims with shape (b, d), stride[1] == 1 (unless d <= 1) and stride[0] >= d (unless b <= 1).
 * No contiguity requirement otherwise. */
static inline ds_status ds_cpu_check_rows2d(const ds_tensor *t, int64_t b, int64_t d, const char *op,
                                            const char *what, ds_err *err) {
    if (!t || !t->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s: missing tensor", op, what);
    if (t->device.kind != DS_DEVICE_CPU)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %s: tensor on device kind %d, only the CPU backend exists", op,
                       what, (int)t->device.kind);
    if (t->dtype != DS_F32)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %s: dtype %s, the CPU backend computes in f32", op, what,
                       ds_dtype_name(t->dtype));
    return ds_shape_rows2d(t, b, d, op, what, err);
}

/* True when a and b have the same ndim and shape. */
static inline bool ds_cpu_same_shape(const ds_tensor *a, const ds_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

/* Fail with DS_ERR_INVALID_ARG unless `t` has the shape of `ref` (both already validated). */
static inline ds_status ds_cpu_check_same_shape(const ds_tensor *t, const ds_tensor *ref, const char *op,
                                                const char *what, const char *ref_what, ds_err *err) {
    if (ds_cpu_same_shape(t, ref)) return DS_OK;
    char b1[96], b2[96];
    return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s has shape %s but %s has shape %s", op, what,
                   ds_tensor_shape_str(t, b1, sizeof b1), ref_what, ds_tensor_shape_str(ref, b2, sizeof b2));
}

/* True when the byte ranges of two contiguous f32 tensors overlap (for "out must not alias"). */
static inline bool ds_cpu_overlap(const ds_tensor *a, const ds_tensor *b) {
    const char *pa = (const char *)a->data, *pb = (const char *)b->data;
    int64_t na = ds_tensor_nbytes(a), nb = ds_tensor_nbytes(b);
    if (na <= 0 || nb <= 0) return false;
    return pa < pb + nb && pb < pa + na;
}

#endif /* DS_CPU_UTIL_H */
