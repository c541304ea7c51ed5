/* gpu_tolerances.h - the GPU-vs-CPU tolerances of the twin tests, in one place.
 *
 * Rule (gpu_common.h gpu_compare): pass when BOTH hold
 *   per tensor:  ||out - ref||_2 / ||ref||_2 <= REL
 *   per element: |out[i] - ref[i]| <= ATOL + RTOL * |ref[i]|
 * The reference is computed on the host in double from exactly the inputs the GPU saw.
 *
 *   test / path        REL      ATOL    RTOL    why
 *   -----------------  -------  ------  ------  ---------------------------------------------------
 *   rng normal         1e-6     1e-6    0       double Box-Muller on both sides, one f32 rounding;
 *                                               device libm (<= 2 ulp double) moves a value by at
 *                                               most 1 f32 ulp (< 4.8e-7 for |z| < 8).
 *   linear f32         1e-5     1e-4    1e-4    fp32 products and sums (no TF32); only the order of
 *                                               the K-term sum differs from the double reference,
 *                                               error ~ eps32*sqrt(K)*|x||w| (~1e-6 at K=1152, unit
 *                                               scale inputs), plus one f32 output rounding (6e-8).
 *   linear bf16        8e-3     1e-2    1.6e-2  inputs are bf16-rounded before both sides compute,
 *                                               so only the output rounding matters: bf16 keeps 8
 *                                               significant bits, unit roundoff u = 2^-8 = 3.9e-3
 *                                               per element (rms ~u/sqrt(3) ~ 2.3e-3 per tensor);
 *                                               RTOL = 4u and REL ~ 2u leave room for fp32
 *                                               accumulation order (split-K partials stay fp32,
 *                                               linear_lt.cu); ATOL covers outputs near 0 (|out|
 *                                               ~ 0.3 here) where RTOL*|ref| is ~0 but the fp32
 *                                               sum still has an absolute error.
 */
#ifndef DS_GPU_TOLERANCES_H
#define DS_GPU_TOLERANCES_H

#define GPU_TOL_RNG_REL 1e-6
#define GPU_TOL_RNG_ATOL 1e-6
#define GPU_TOL_RNG_RTOL 0.0

#define GPU_TOL_LINEAR_F32_REL 1e-5
#define GPU_TOL_LINEAR_F32_ATOL 1e-4
#define GPU_TOL_LINEAR_F32_RTOL 1e-4

#define GPU_TOL_LINEAR_BF16_REL 8e-3
#define GPU_TOL_LINEAR_BF16_ATOL 1e-2
#define GPU_TOL_LINEAR_BF16_RTOL 1.6e-2

#endif /* DS_GPU_TOLERANCES_H */
