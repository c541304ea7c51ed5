/* rng_block.h - the one definition of ditserve's noise stream, shared by the CPU (rng.c) and CUDA
 * (cuda/rng.cu) generators so they cannot drift apart: Philox4x32-10 on counter {lo(c), hi(c), 0, 0} and
 * key {lo(seed), hi(seed)}, then two double-precision Box-Muller pairs per block (lanes (0,1), (2,3)),
 * rounded once to f32. Header-only: host functions in C, __host__ __device__ under nvcc. */
#ifndef DS_RNG_BLOCK_H
#define DS_RNG_BLOCK_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define DS_HD __host__ __device__ static inline
#else
#define DS_HD static inline
#endif

/* Philox4x32-10 round constants (Salmon et al., Random123). */
#define DS_PHILOX_M0 0xD2511F53u
#define DS_PHILOX_M1 0xCD9E8D57u
#define DS_PHILOX_W0 0x9E3779B9u
#define DS_PHILOX_W1 0xBB67AE85u

/* out[4] = Philox4x32-10(ctr[4], key[2]). */
DS_HD void ds_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)DS_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)DS_PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += DS_PHILOX_W0;
        k1 += DS_PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The four uint32 of stream block c for seed. */
DS_HD void ds_rng_block_u32(uint64_t seed, uint64_t c, uint32_t u[4]) {
    const uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0u, 0u};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    ds_philox4x32_10(ctr, key, u);
}

/* uint32 -> (0, 1) in double: (u + 0.5) / 2^32. */
DS_HD double ds_rng_u01(uint32_t u) { return ((double)u + 0.5) * (1.0 / 4294967296.0); }

/* The four N(0, 1) samples of stream block c (elements 4c .. 4c+3). */
DS_HD void ds_rng_block_normal(uint64_t seed, uint64_t c, float z[4]) {
    uint32_t u[4];
    ds_rng_block_u32(seed, c, u);
    for (int p = 0; p < 2; p++) {
        double r = sqrt(-2.0 * log(ds_rng_u01(u[2 * p])));
        double th = 6.283185307179586476925286766559 * ds_rng_u01(u[2 * p + 1]);
        z[2 * p] = (float)(r * cos(th));
        z[2 * p + 1] = (float)(r * sin(th));
    }
}

#endif /* DS_RNG_BLOCK_H */
