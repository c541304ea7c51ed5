// device.cu - CUDA device discovery for the C side (see ds_cuda.h).
#include <cuda_runtime.h>
#include <stdio.h>

#include "ds_cuda.h"

extern "C" ds_status ds_cuda_device_count(int *n, ds_err *err) {
    *n = 0;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the sticky error */
        return DS_FAIL(err, DS_ERR_DEVICE, "CUDA unavailable: %s", cudaGetErrorString(e));
    }
    *n = count;
    return DS_OK;
}

extern "C" void ds_cuda_device_name(int index, char *buf, size_t len) {
    if (len) buf[0] = '\0';
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, index) != cudaSuccess) {
        (void)cudaGetLastError();
        return;
    }
    snprintf(buf, len, "%s, sm_%d%d, %.0f GiB", p.name, p.major, p.minor, (double)p.totalGlobalMem / (1u << 30));
}
