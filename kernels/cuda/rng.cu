// rng.cu - the CUDA twin of kernels/rng.c: the stream defined once in kernels/rng_block.h, one thread per block.
//
// Same constants, round order and counter/key layout as rng.c: for element index j = offset + i the
// Philox counter is c = j / 4 as {lo32(c), hi32(c), 0, 0}, the key is {lo32(seed), hi32(seed)}, the
// four outputs (u0..u3) make two Box-Muller pairs giving lanes (0,1) and (2,3), and lane j % 4 is
// element j. Box-Muller runs in double and rounds once to f32, so the device's double log/sqrt/sin/cos
// (within ~2 ulp of double) can change a result by at most one f32 ulp (< 4.8e-7 for |z| < 8, and
// |z| <= 6.75 here), inside the 1e-6 absolute contract. One thread computes one Philox block.
#include <cuda_runtime.h>

#include "ds_cuda.h"
#include "rng_block.h"

namespace {

// Philox block c: element j = 4*c + k goes to out[j - offset] when j is in [offset, offset + n).
// (__host__ too so the stream layout can be checked against rng.c on a machine without a GPU.)
__host__ __device__ void normal_block(uint64_t seed, uint64_t offset, uint64_t n, uint64_t c, float *out) {
    float z[4];
    ds_rng_block_normal(seed, c, z);
    for (int k = 0; k < 4; k++) {
        uint64_t idx = c * 4 + (uint64_t)k;
        if (idx >= offset && idx < offset + n) out[idx - offset] = z[k];
    }
}

// One thread per Philox block first .. first+nblocks-1; grid-stride loop so any nblocks fits any grid.
__global__ void normal_kernel(uint64_t seed, uint64_t offset, uint64_t n, uint64_t first, uint64_t nblocks,
                              float *out) {
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t b = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; b < nblocks; b += stride)
        normal_block(seed, offset, n, first + b, out);
}

}  // namespace

extern "C" ds_status ds_cuda_rng_normal(uint64_t seed, uint64_t offset, float *d_out, int64_t n, void *stream,
                                        ds_err *err) {
    if (n < 0) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_rng_normal: n = %lld", (long long)n);
    if (n == 0) return DS_OK;
    if (!d_out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cuda_rng_normal: NULL output for n = %lld", (long long)n);
    const uint64_t first = offset / 4, last = (offset + (uint64_t)n - 1) / 4;
    const uint64_t nblocks = last - first + 1;
    const unsigned threads = 256;
    uint64_t grid = (nblocks + threads - 1) / threads;
    if (grid > 65535u * 16u) grid = 65535u * 16u;  // the grid-stride loop covers the rest
    normal_kernel<<<(unsigned)grid, threads, 0, (cudaStream_t)stream>>>(seed, offset, (uint64_t)n, first, nblocks,
                                                                         d_out);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return DS_FAIL(err, DS_ERR_DEVICE, "ds_cuda_rng_normal launch (n = %lld): %s", (long long)n,
                       cudaGetErrorString(e));
    return DS_OK;
}
