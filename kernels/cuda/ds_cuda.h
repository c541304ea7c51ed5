/* ds_cuda.h - C interface of the CUDA backend (the .cu files in kernels/cuda, extern "C"). Included only when
 * DS_HAVE_CUDA is defined. Every function returns ds_status; CUDA errors become DS_ERR_DEVICE with
 * the runtime's error string, never an abort. Pointers named d_* are device memory. */
#ifndef DS_CUDA_H
#define DS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cudaGetDeviceCount; an error (no driver, no device) gives *n = 0 and DS_ERR_DEVICE with the reason. */
ds_status ds_cuda_device_count(int *n, ds_err *err);

/* "NVIDIA H100 80GB HBM3, sm_90, 79 GiB" for device `index`, "" on error. */
void ds_cuda_device_name(int index, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* DS_CUDA_H */
