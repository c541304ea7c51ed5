/* placement.c - model placement helpers (placement.h). */
#include "placement.h"

#include <stdio.h>

#include "tensor_io.h"

ds_placement ds_placement_cpu(void) {
    ds_placement p = {ds_device_cpu(), DS_F32};
    return p;
}

ds_placement ds_placement_or_cpu(const ds_placement *pl) { return pl ? *pl : ds_placement_cpu(); }

ds_status ds_placement_check(const ds_placement *pl, const char *what, ds_err *err) {
    if (!pl) return DS_OK;
    if (pl->device.kind == DS_DEVICE_CPU && pl->dtype != DS_F32)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: the CPU backend computes in f32, not %s", what,
                       ds_dtype_name(pl->dtype));
    if (pl->dtype != DS_F32 && pl->dtype != DS_BF16 && pl->dtype != DS_F16)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bad dtype %d", what, (int)pl->dtype);
#ifndef DS_HAVE_CUDA
    if (pl->device.kind == DS_DEVICE_CUDA)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: cuda:%d requested, but this build has no CUDA backend", what,
                       pl->device.index);
#endif
    return DS_OK;
}

const char *ds_placement_str(const ds_placement *pl, char *buf, size_t len) {
    ds_placement p = ds_placement_or_cpu(pl);
    if (p.device.kind == DS_DEVICE_CUDA) snprintf(buf, len, "cuda:%d %s", p.device.index, ds_dtype_name(p.dtype));
    else snprintf(buf, len, "cpu %s", ds_dtype_name(p.dtype));
    return buf;
}

ds_status ds_weights_read_placed(const ds_weights *w, const char *name, ds_tensor *dst, int ndim, const int64_t *shape,
                                 void *staging, size_t staging_bytes, ds_err *err) {
    const size_t bytes = (size_t)ds_tensor_nbytes(dst);
    if (dst->device.kind == DS_DEVICE_CPU)
        return ds_weights_read(w, name, dst->dtype, dst->data, bytes, ndim, shape, err);
    if (!staging || staging_bytes < bytes)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "weights '%s': %zu bytes of staging needed, %zu given", name, bytes,
                       staging ? staging_bytes : 0);
    DS_TRY(ds_weights_read(w, name, dst->dtype, staging, bytes, ndim, shape, err));
    return ds_tensor_write_raw(dst, staging, bytes, err);
}
