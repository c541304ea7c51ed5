/* rng.c - the CPU noise generator: the stream of rng_block.h filled block by block, OpenMP over blocks
 * (see rng.h for the layout). */
#include "rng.h"

#include "rng_block.h"

void ds_rng_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    ds_philox4x32_10(ctr, key, out);
}

/* Generate [offset, offset+n) block by block; partial blocks at both ends are trimmed. */
static void fill(uint64_t seed, uint64_t offset, float *out, int64_t n, int normal) {
    if (n <= 0) return;
    uint64_t first = offset / 4, last = (offset + (uint64_t)n - 1) / 4;
    int64_t nblocks = (int64_t)(last - first + 1);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t b = 0; b < nblocks; b++) {
        uint64_t c = first + (uint64_t)b;
        float v[4];
        if (normal) {
            ds_rng_block_normal(seed, c, v);
        } else {
            uint32_t u[4];
            ds_rng_block_u32(seed, c, u);
            for (int k = 0; k < 4; k++) v[k] = (float)ds_rng_u01(u[k]);
        }
        for (int k = 0; k < 4; k++) {
            uint64_t idx = c * 4 + (uint64_t)k;
            if (idx >= offset && idx < offset + (uint64_t)n) out[idx - offset] = v[k];
        }
    }
}

void ds_rng_normal(uint64_t seed, uint64_t offset, float *out, int64_t n) { fill(seed, offset, out, n, 1); }

void ds_rng_uniform(uint64_t seed, uint64_t offset, float *out, int64_t n) { fill(seed, offset, out, n, 0); }
