/* rng.h - seeded counter-based Gaussian noise (Philox4x32-10 + Box-Muller).
 *
 * Element i of the stream for (seed, offset) depends only on seed and offset+i, so any split of the
 * work across threads or GPU blocks gives bit-identical results on the CPU. Box-Muller runs in double
 * precision and rounds once to f32, so the CUDA twin agrees within 1e-6 absolute.
 * Stream layout: Philox counter c = (offset+i)/4 yields 4 uint32 (u0..u3); (u0,u1) and (u2,u3) are
 * two Box-Muller pairs giving normals for lanes (0,1) and (2,3). */
#ifndef DS_RNG_H
#define DS_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One Philox4x32-10 block: counter ctr[4], key key[2] -> out[4]. */
void ds_rng_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Fill out[0..n) with N(0,1) samples: out[i] = normal(seed, offset + i). Multi-threaded for large n;
 * the result does not depend on the thread count. */
void ds_rng_normal(uint64_t seed, uint64_t offset, float *out, int64_t n);

/* Fill out[0..n) with U(0,1) samples, same indexing as ds_rng_normal
 * (lane k of block c gives (u_k + 0.5) / 2^32, rounded once to f32). */
void ds_rng_uniform(uint64_t seed, uint64_t offset, float *out, int64_t n);

#ifdef __cplusplus
}
#endif

#endif /* DS_RNG_H */
