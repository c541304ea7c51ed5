// memory.cu - device memory for the C side: allocation, synchronous copies, memset, device selection
// and synchronization (see ds_cuda.h). Every failing CUDA call clears the runtime's "last error" so
// a later cudaGetLastError after a kernel launch reports only that launch.
#include <cuda_runtime.h>

#include "ds_cuda.h"

extern "C" ds_status ds_cuda_set_device(int index, ds_err *err) {
    cudaError_t e = cudaSetDevice(index);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return DS_FAIL(err, DS_ERR_DEVICE, "cudaSetDevice(%d): %s", index, cudaGetErrorString(e));
    }
    return DS_OK;
}

extern "C" ds_status ds_cuda_malloc(void **d, size_t bytes, ds_err *err) {
    if (!d) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_malloc: NULL result pointer");
    *d = NULL;
    if (bytes == 0) return DS_OK;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return DS_FAIL(err, DS_ERR_OOM, "cudaMalloc of %zu bytes (%.1f MiB) failed: %s", bytes,
                       (double)bytes / (1024.0 * 1024.0), cudaGetErrorString(e));
    }
    *d = p;
    return DS_OK;
}

extern "C" void ds_cuda_free(void *d) {
    if (!d) return;
    if (cudaFree(d) != cudaSuccess) (void)cudaGetLastError();
}

static ds_status copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const char *what,
                      ds_err *err) {
    if (bytes == 0) return DS_OK;
    if (!dst || !src) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL pointer for %zu bytes", what, bytes);
    cudaError_t e = cudaMemcpy(dst, src, bytes, kind);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return DS_FAIL(err, DS_ERR_DEVICE, "%s of %zu bytes: %s", what, bytes, cudaGetErrorString(e));
    }
    return DS_OK;
}

extern "C" ds_status ds_cuda_memcpy_h2d(void *d_dst, const void *src, size_t bytes, ds_err *err) {
    return copy(d_dst, src, bytes, cudaMemcpyHostToDevice, "ds_cuda_memcpy_h2d", err);
}

extern "C" ds_status ds_cuda_memcpy_d2h(void *dst, const void *d_src, size_t bytes, ds_err *err) {
    return copy(dst, d_src, bytes, cudaMemcpyDeviceToHost, "ds_cuda_memcpy_d2h", err);
}

extern "C" ds_status ds_cuda_memset(void *d, int value, size_t bytes, ds_err *err) {
    if (bytes == 0) return DS_OK;
    if (!d) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_memset: NULL pointer for %zu bytes", bytes);
    cudaError_t e = cudaMemset(d, value & 0xFF, bytes);
    if (e == cudaSuccess) e = cudaDeviceSynchronize(); /* cudaMemset may return before it is done */
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return DS_FAIL(err, DS_ERR_DEVICE, "ds_cuda_memset of %zu bytes: %s", bytes, cudaGetErrorString(e));
    }
    return DS_OK;
}

extern "C" ds_status ds_cuda_synchronize(ds_err *err) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return DS_FAIL(err, DS_ERR_DEVICE, "cudaDeviceSynchronize: %s", cudaGetErrorString(e));
    }
    return DS_OK;
}

extern "C" ds_status ds_cuda_host_alloc(void **p, size_t bytes, ds_err *err) {
    if (!p) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_host_alloc: NULL result pointer");
    *p = NULL;
    if (bytes == 0) return DS_OK;
    cudaError_t e = cudaMallocHost(p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        *p = NULL;
        return DS_FAIL(err, DS_ERR_OOM, "cudaMallocHost of %zu bytes (pinned staging) failed: %s", bytes,
                       cudaGetErrorString(e));
    }
    return DS_OK;
}

extern "C" void ds_cuda_host_free(void *p) {
    if (p && cudaFreeHost(p) != cudaSuccess) (void)cudaGetLastError();
}
