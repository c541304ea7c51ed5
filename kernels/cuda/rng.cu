// rng.cu - the CUDA twin of kernels/rng.c: Philox4x32-10 + double-precision Box-Muller normals.
//
// Same constants, round order and counter/key layout as rng.c: for element index j = offset + i the
// Philox counter is c = j / 4 as {lo32(c), hi32(c), 0, 0}, the key is {lo32(seed), hi32(seed)}, the
// four outputs (u0..u3) make two Box-Muller pairs giving lanes (0,1) and (2,3), and lane j % 4 is
// element j. Box-Muller runs in double and rounds once to f32, so the device's double log/sqrt/sin/cos
// (within ~2 ulp of double) can change a result by at most one f32 ulp (< 4.8e-7 for |z| < 8, and
// |z| <= 6.75 here), inside the 1e-6 absolute contract. One thread computes one Philox block.
#include <cuda_runtime.h>

#include "ds_cuda.h"

namespace {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

__host__ __device__ void philox4x32_10(uint64_t c, uint64_t seed, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)c, c1 = (uint32_t)(c >> 32), c2 = 0u, c3 = 0u;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)kPhiloxM0 * c0;
        uint64_t p1 = (uint64_t)kPhiloxM1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += kPhiloxW0;
        k1 += kPhiloxW1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

__host__ __device__ double u01(uint32_t u) { return ((double)u + 0.5) * (1.0 / 4294967296.0); }

// Philox block c: element j = 4*c + k goes to out[j - offset] when j is in [offset, offset + n).
// (__host__ too so the stream layout can be checked against rng.c on a machine without a GPU.)
__host__ __device__ void normal_block(uint64_t seed, uint64_t offset, uint64_t n, uint64_t c, float *out) {
    uint32_t u[4];
    philox4x32_10(c, seed, u);
    float z[4];
    for (int p = 0; p < 2; p++) {
        double r = sqrt(-2.0 * log(u01(u[2 * p])));
        double th = 6.283185307179586476925286766559 * u01(u[2 * p + 1]);
        z[2 * p] = (float)(r * cos(th));
        z[2 * p + 1] = (float)(r * sin(th));
    }
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
