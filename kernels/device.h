/* device.h - device discovery with a CPU fallback. Compiled on every build: without the CUDA backend
 * the CUDA queries report zero devices and say why. The binary never links libcuda directly
 * (cudart_static loads the driver at run time), so it starts on hosts without a driver. */
#ifndef DS_DEVICE_H
#define DS_DEVICE_H

#include <stddef.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices in *n. On a build without CUDA, or when the runtime reports an
 * error (no driver, no device), *n = 0 and the status is DS_ERR_UNSUPPORTED / DS_ERR_DEVICE with the
 * reason in err (callers log it once and use the CPU). */
ds_status ds_device_cuda_count(int *n, ds_err *err);

/* Name of CUDA device `index` into buf ("NVIDIA H100 80GB HBM3, sm_90, 79 GiB"); "" when unavailable. */
void ds_device_cuda_name(int index, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* DS_DEVICE_H */
