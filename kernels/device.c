/* device.c - device discovery entry points; forwards to kernels/cuda/ when the CUDA backend is built. */
#include "device.h"

#include <stdio.h>

#ifdef DS_HAVE_CUDA
#include "cuda/ds_cuda.h"
#endif

ds_status ds_device_cuda_count(int *n, ds_err *err) {
    *n = 0;
#ifdef DS_HAVE_CUDA
    return ds_cuda_device_count(n, err);
#else
    return DS_FAIL(err, DS_ERR_UNSUPPORTED, "built without the CUDA backend");
#endif
}

void ds_device_cuda_name(int index, char *buf, size_t len) {
    if (len) buf[0] = '\0';
#ifdef DS_HAVE_CUDA
    ds_cuda_device_name(index, buf, len);
#else
    (void)index;
#endif
}
