/* rng.c - Philox4x32-10 and Box-Muller normals (see rng.h for the stream layout). */
#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void ds_rng_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static void block_u32(uint64_t seed, uint64_t c, uint32_t u[4]) {
    const uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0u, 0u};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    ds_rng_philox4x32(ctr, key, u);
}

static double u01(uint32_t u) { return ((double)u + 0.5) * (1.0 / 4294967296.0); }

static void block_normal(uint64_t seed, uint64_t c, float z[4]) {
    uint32_t u[4];
    block_u32(seed, c, u);
    for (int p = 0; p < 2; p++) {
        double r = sqrt(-2.0 * log(u01(u[2 * p])));
        double th = 6.283185307179586476925286766559 * u01(u[2 * p + 1]);
        z[2 * p] = (float)(r * cos(th));
        z[2 * p + 1] = (float)(r * sin(th));
    }
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
            block_normal(seed, c, v);
        } else {
            uint32_t u[4];
            block_u32(seed, c, u);
            for (int k = 0; k < 4; k++) v[k] = (float)u01(u[k]);
        }
        for (int k = 0; k < 4; k++) {
            uint64_t idx = c * 4 + (uint64_t)k;
            if (idx >= offset && idx < offset + (uint64_t)n) out[idx - offset] = v[k];
        }
    }
}

void ds_rng_normal(uint64_t seed, uint64_t offset, float *out, int64_t n) { fill(seed, offset, out, n, 1); }

void ds_rng_uniform(uint64_t seed, uint64_t offset, float *out, int64_t n) { fill(seed, offset, out, n, 0); }
