/* tensor.c - shape/stride helpers for the non-owning ds_tensor view. */
#include "tensor.h"

#include <stdio.h>
#include <string.h>

ds_device ds_device_cpu(void) { return (ds_device){DS_DEVICE_CPU, 0}; }

void ds_tensor_set_contiguous_strides(ds_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

ds_tensor ds_tensor_make(void *data, ds_dtype dtype, int ndim, const int64_t *shape) {
    ds_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.device = ds_device_cpu();
    t.ndim = ndim < 0 ? 0 : (ndim > DS_MAX_DIMS ? DS_MAX_DIMS : ndim);
    for (int i = 0; i < t.ndim; i++) t.shape[i] = shape[i];
    ds_tensor_set_contiguous_strides(&t);
    t.data = data;
    return t;
}

int64_t ds_tensor_numel(const ds_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int64_t ds_tensor_nbytes(const ds_tensor *t) { return ds_tensor_numel(t) * (int64_t)ds_dtype_size(t->dtype); }

bool ds_tensor_is_contiguous(const ds_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

ds_status ds_tensor_reshape(const ds_tensor *t, int ndim, const int64_t *shape, ds_tensor *out, ds_err *err) {
    if (ndim < 0 || ndim > DS_MAX_DIMS) return DS_FAIL(err, DS_ERR_INVALID_ARG, "reshape: ndim %d out of range", ndim);
    if (!ds_tensor_is_contiguous(t)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "reshape: tensor is not contiguous");
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (n != ds_tensor_numel(t)) {
        char b[96];
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "reshape: cannot view %s (%lld elements) as %lld elements",
                       ds_tensor_shape_str(t, b, sizeof b), (long long)ds_tensor_numel(t), (long long)n);
    }
    ds_tensor r = *t;
    r.ndim = ndim;
    for (int i = 0; i < ndim; i++) r.shape[i] = shape[i];
    ds_tensor_set_contiguous_strides(&r);
    *out = r;
    return DS_OK;
}

int64_t ds_tensor_dim(const ds_tensor *t, int d) {
    if (d < 0) d += t->ndim;
    if (d < 0 || d >= t->ndim) return 1;
    return t->shape[d];
}

int64_t ds_tensor_rows(const ds_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i + 1 < t->ndim; i++) n *= t->shape[i];
    return n;
}

const char *ds_tensor_shape_str(const ds_tensor *t, char *buf, int len) {
    int o = snprintf(buf, (size_t)len, "[");
    for (int i = 0; i < t->ndim && o < len; i++)
        o += snprintf(buf + o, (size_t)(len - o), i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (o < len) snprintf(buf + o, (size_t)(len - o), "]");
    return buf;
}

ds_status ds_tensor_check_f32(const ds_tensor *t, int ndim, const char *what, ds_err *err) {
    if (!t || !t->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: missing tensor", what);
    if (t->dtype != DS_F32)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: dtype %s, the CPU backend computes in f32", what,
                       ds_dtype_name(t->dtype));
    if (t->device.kind != DS_DEVICE_CPU)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: tensor is on a device the CPU backend cannot read", what);
    if (ndim >= 0 && t->ndim != ndim) {
        char b[96];
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: expected %d dims, got %s", what, ndim,
                       ds_tensor_shape_str(t, b, sizeof b));
    }
    if (!ds_tensor_is_contiguous(t)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: tensor is not contiguous", what);
    return DS_OK;
}
