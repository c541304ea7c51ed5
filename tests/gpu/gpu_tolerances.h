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
 *
 * Op twin tests (gpu_ops_*.c): reference = the CPU ds_op_* on inputs already rounded to the case's dtype,
 * so only the device's own arithmetic and its output rounding are measured. Units: eps32 = 2^-23 = 1.19e-7
 * (ulp of 1 in f32), u = unit roundoff of the output type: f32 2^-24 = 6.0e-8, bf16 2^-8 = 3.9e-3, f16
 * 2^-11 = 4.9e-4. A single round-to-nearest store has |err| <= u*|v| and a per-tensor rms of ~0.4u, so a
 * one-rounding op gets RTOL = 2u and REL = u (2x / 2.5x headroom). f16 stores below 6.1e-5 are subnormal
 * with a fixed step of 2^-24 = 6e-8; an f16 ATOL >= 6e-8 covers them where outputs can be that small.
 *
 *   class / path         REL      ATOL    RTOL    why
 *   -------------------  -------  ------  ------  ---------------------------------------------------
 *   EXACT (convert,      0        0       0       pure data movement, or one RNE conversion done the
 *   upsample_nearest2x,                          same way by ds_convert on the host (the convert
 *   patchify,                                    reference): bit-identical in every dtype.
 *   unpatchify)
 *   PW f32 (add, sub,    1e-6     1e-6    1e-6    <= 3 fp32 roundings per element on each side (the
 *   axpby, modulate,                             device may fuse to FMA, rope's CPU reference is f32
 *   gate_add, rope)                              itself): 6 * 6e-8 = 3.6e-7 relative; where the
 *                                                 result cancels (x*(1+s) ~ -shift, x0*c ~ x1*s) only an
 *                                                 absolute error of ~6 * 6e-8 * (sum of |terms| <= 3)
 *                                                 = 1.1e-6 is left... terms are kept <= ~1.5 each, so
 *                                                 <= 5e-7: ATOL 1e-6.
 *   PW bf16 / f16        u        1e-6    2u      one output rounding + the fp32 part above (absolute
 *                                                 1e-6 also covers f16 subnormals).
 *   ACT f32 (gelu exact  1e-6     1e-6    2e-6    device erff/tanhf/expf <= 2 ulp, ~4 more roundings:
 *   and tanh, silu)                               ~6 ulp = 7e-7 relative vs the fp64 CPU reference;
 *                                                 the 1 + erf(z) / 1 + tanh(u) forms cancel for x << 0
 *                                                 and keep only 0.5*|x|*2 ulp(1) = 6e-7 absolute for
 *                                                 |x| <= 5 (the inputs): ATOL 1e-6.
 *   ACT bf16 / f16       u        1e-6    2u      one output rounding + the fp32 error above.
 *   SOFTMAX f32          1e-5     0       2e-5    exp argument x - max exact or eps32*8 for |x| <= 4,
 *                                                 expf 2 ulp, the fp32 row sum grows like eps32*sqrt(D)
 *                                                 (7.6e-6 at D = 4096), 2 roundings for 1/sum:
 *                                                 ~2.5 * eps32 * sqrt(D). Outputs are positive (no
 *                                                 cancellation): relative bounds only.
 *   SOFTMAX bf16         u        0       2u      one output rounding (fp32 part is < 3e-5 relative).
 *   SOFTMAX f16          u        6e-8    2u      as bf16; p down to ~3e-6 (D = 4096, |x| <= 4) is
 *                                                 an f16 subnormal: one step 2^-24.
 *   DIFFSUM (all)        1e-5     0       1e-5    two sums of |.|, compared as {sum|a-b|, sum|a|};
 *                                                 inputs identical, a - b exact in fp32 for these
 *                                                 values; fp32 partials of positive terms drift like
 *                                                 eps32 * sqrt(terms per partial) (< 1e-6 for any
 *                                                 partial of < 1e5 terms), fp64 final sum; the fp64
 *                                                 results are rounded to f32 (6e-8) for gpu_compare.
 *   NORM f32 (layernorm, 1e-5     2e-5    3.1e-5  fp32 mean/variance over n <= 4096 elements (D, or
 *   rmsnorm, layernorm_                           (C/G)*H*W): relative error of rstd <= 4 ulp *
 *   modulate, groupnorm)                          sqrt(n) = 4 * eps32 * 64 = 2^-15 = 3.1e-5; inputs have
 *                                                 |row mean| < row std, so the variance has no
 *                                                 cancellation to amplify (a near-constant row would
 *                                                 measure the variance formula, not the kernel). ATOL:
 *                                                 where y*w cancels the bias (|bias| <= 0.5), the rstd
 *                                                 error remains absolute: 3.1e-5 * 0.5 + roundings.
 *   NORM bf16 / f16      u        2e-5    2u      one output rounding + the fp32 part above.
 *   ATTN f32             1e-5     2e-6    1e-5    fp32 scores (d <= 128 terms), exp, sums over
 *   (attention)                                   Nk <= 1000 on both sides (the CPU reference is f32
 *                                                 sgemm + expf): output = weighted mean of v (|v| <= 1);
 *                                                 score error ~ eps32*sqrt(d)*|q||k|*scale moves the
 *                                                 weights by ~1e-6 relative, the fp32 P*V sum by
 *                                                 ~eps32*sqrt(Nk)/sqrt(Nk): expected |err| ~ 1e-7,
 *                                                 bounded with margin. Fully masked rows must be 0.
 *                                                 (Rounding P to bf16 before P*V breaks the fp32-
 *                                                 inside contract and exceeds the bf16 row below.)
 *   ATTN bf16 / f16      u        2e-6    2u      one output rounding + the fp32 part above.
 *   CONV f32 (conv2d)    1e-5     1e-5    1e-5    K = Cin*k*k <= 1152 fp32 products and sums on both
 *                                                 sides (CPU sgemm, device cuBLASLt without TF32):
 *                                                 <= 4 * eps32 * sqrt(K) * max|partial sum| (~1) =
 *                                                 1.6e-5 worst, ~1e-7 typical; outputs ~0.3 +- bias.
 *   CONV bf16 / f16      u        1e-5    2u      im2col moves values exactly; fp32 accumulation and
 *                                                 bias add, one output rounding (a second rounding,
 *                                                 e.g. a separate bias pass over a rounded GEMM
 *                                                 result, would break the one-rounding contract).
 *   TSEMB f32            1e-6     1e-6    4e-6    timestep_embedding with phases a = t*f_k < 1:
 *   (timestep_embedding,                          device sinf/cosf/expf <= 2 ulp; the f32 steps of the
 *   t < 1)                                        phase are the contract's, so a moves by <= 2 ulp:
 *                                                 |d sin| <= 2.4e-7 absolute.
 *   TSEMB bf16 / f16     u        1e-6    2u      one output rounding + the above.
 *   TSEMB_PHASE f32      1e-4     3e-4    4e-6    the same with t <= 1000 (real DiT timesteps): the
 *   (t <= 1000)                                   phase a ~ 1000 carries the f32 steps' own error,
 *                                                 f_k = expf(..) may differ by 2 ulp from the CPU's
 *                                                 fp64 exp rounded once, so a moves by up to
 *                                                 2 * eps32 * 1000 = 2.4e-4 and sin/cos by as much
 *                                                 (absolute; an ill-conditioned argument, not the
 *                                                 kernel); only low-k columns have a >> 1: REL 1e-4.
 *   TSEMB_PHASE bf16/f16 2u       3e-4    2u      one output rounding + the phase error above
 *                                                 (3e-4 is ~0.6 f16 u at 1, so REL = 2u for f16 too).
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


/* ---- op twin tests (gpu_ops_*.c), classes as in the table above ---------------------------------- */

#define GPU_U_BF16 3.90625e-3   /* 2^-8 */
#define GPU_U_F16 4.8828125e-4  /* 2^-11 */
#define GPU_F16_SUBNORMAL_STEP 5.9604645e-8 /* 2^-24 */

#define GPU_TOL_EXACT_F32_REL 0.0
#define GPU_TOL_EXACT_F32_ATOL 0.0
#define GPU_TOL_EXACT_F32_RTOL 0.0
#define GPU_TOL_EXACT_BF16_REL 0.0
#define GPU_TOL_EXACT_BF16_ATOL 0.0
#define GPU_TOL_EXACT_BF16_RTOL 0.0
#define GPU_TOL_EXACT_F16_REL 0.0
#define GPU_TOL_EXACT_F16_ATOL 0.0
#define GPU_TOL_EXACT_F16_RTOL 0.0

#define GPU_TOL_PW_F32_REL 1e-6
#define GPU_TOL_PW_F32_ATOL 1e-6
#define GPU_TOL_PW_F32_RTOL 1e-6
#define GPU_TOL_PW_BF16_REL (GPU_U_BF16 + GPU_TOL_PW_F32_RTOL)
#define GPU_TOL_PW_BF16_ATOL 1e-6
#define GPU_TOL_PW_BF16_RTOL (2 * GPU_U_BF16)
#define GPU_TOL_PW_F16_REL (GPU_U_F16 + GPU_TOL_PW_F32_RTOL)
#define GPU_TOL_PW_F16_ATOL 1e-6
#define GPU_TOL_PW_F16_RTOL (2 * GPU_U_F16)

#define GPU_TOL_ACT_F32_REL 2e-6
#define GPU_TOL_ACT_F32_ATOL 1e-6
#define GPU_TOL_ACT_F32_RTOL 2e-6
#define GPU_TOL_ACT_BF16_REL (GPU_U_BF16 + GPU_TOL_ACT_F32_RTOL)
#define GPU_TOL_ACT_BF16_ATOL 1e-6
#define GPU_TOL_ACT_BF16_RTOL (2 * GPU_U_BF16)
#define GPU_TOL_ACT_F16_REL (GPU_U_F16 + GPU_TOL_ACT_F32_RTOL)
#define GPU_TOL_ACT_F16_ATOL 1e-6
#define GPU_TOL_ACT_F16_RTOL (2 * GPU_U_F16)

#define GPU_TOL_SOFTMAX_F32_REL 1e-5
#define GPU_TOL_SOFTMAX_F32_ATOL 0.0
#define GPU_TOL_SOFTMAX_F32_RTOL 2e-5
#define GPU_TOL_SOFTMAX_BF16_REL (GPU_U_BF16 + GPU_TOL_SOFTMAX_F32_RTOL)
#define GPU_TOL_SOFTMAX_BF16_ATOL 0.0
#define GPU_TOL_SOFTMAX_BF16_RTOL (2 * GPU_U_BF16)
#define GPU_TOL_SOFTMAX_F16_REL (GPU_U_F16 + GPU_TOL_SOFTMAX_F32_RTOL)
#define GPU_TOL_SOFTMAX_F16_ATOL GPU_F16_SUBNORMAL_STEP
#define GPU_TOL_SOFTMAX_F16_RTOL (2 * GPU_U_F16)

#define GPU_TOL_DIFFSUM_F32_REL 1e-5
#define GPU_TOL_DIFFSUM_F32_ATOL 0.0
#define GPU_TOL_DIFFSUM_F32_RTOL 1e-5
#define GPU_TOL_DIFFSUM_BF16_REL 1e-5
#define GPU_TOL_DIFFSUM_BF16_ATOL 0.0
#define GPU_TOL_DIFFSUM_BF16_RTOL 1e-5
#define GPU_TOL_DIFFSUM_F16_REL 1e-5
#define GPU_TOL_DIFFSUM_F16_ATOL 0.0
#define GPU_TOL_DIFFSUM_F16_RTOL 1e-5

#define GPU_TOL_NORM_F32_REL 1e-5
#define GPU_TOL_NORM_F32_ATOL 2e-5
#define GPU_TOL_NORM_F32_RTOL 3.1e-5
#define GPU_TOL_NORM_BF16_REL (GPU_U_BF16 + GPU_TOL_NORM_F32_RTOL)
#define GPU_TOL_NORM_BF16_ATOL 2e-5
#define GPU_TOL_NORM_BF16_RTOL (2 * GPU_U_BF16)
#define GPU_TOL_NORM_F16_REL (GPU_U_F16 + GPU_TOL_NORM_F32_RTOL)
#define GPU_TOL_NORM_F16_ATOL 2e-5
#define GPU_TOL_NORM_F16_RTOL (2 * GPU_U_F16)

#define GPU_TOL_ATTN_F32_REL 1e-5
#define GPU_TOL_ATTN_F32_ATOL 2e-6
#define GPU_TOL_ATTN_F32_RTOL 1e-5
#define GPU_TOL_ATTN_BF16_REL (GPU_U_BF16 + GPU_TOL_ATTN_F32_RTOL)
#define GPU_TOL_ATTN_BF16_ATOL 2e-6
#define GPU_TOL_ATTN_BF16_RTOL (2 * GPU_U_BF16)
#define GPU_TOL_ATTN_F16_REL (GPU_U_F16 + GPU_TOL_ATTN_F32_RTOL)
#define GPU_TOL_ATTN_F16_ATOL 2e-6
#define GPU_TOL_ATTN_F16_RTOL (2 * GPU_U_F16)

#define GPU_TOL_CONV_F32_REL 1e-5
#define GPU_TOL_CONV_F32_ATOL 1e-5
#define GPU_TOL_CONV_F32_RTOL 1e-5
#define GPU_TOL_CONV_BF16_REL (GPU_U_BF16 + GPU_TOL_CONV_F32_RTOL)
#define GPU_TOL_CONV_BF16_ATOL 1e-5
#define GPU_TOL_CONV_BF16_RTOL (2 * GPU_U_BF16)
#define GPU_TOL_CONV_F16_REL (GPU_U_F16 + GPU_TOL_CONV_F32_RTOL)
#define GPU_TOL_CONV_F16_ATOL 1e-5
#define GPU_TOL_CONV_F16_RTOL (2 * GPU_U_F16)

#define GPU_TOL_TSEMB_F32_REL 4e-6
#define GPU_TOL_TSEMB_F32_ATOL 1e-6
#define GPU_TOL_TSEMB_F32_RTOL 4e-6
#define GPU_TOL_TSEMB_BF16_REL (GPU_U_BF16 + GPU_TOL_TSEMB_F32_RTOL)
#define GPU_TOL_TSEMB_BF16_ATOL 1e-6
#define GPU_TOL_TSEMB_BF16_RTOL (2 * GPU_U_BF16)
#define GPU_TOL_TSEMB_F16_REL (GPU_U_F16 + GPU_TOL_TSEMB_F32_RTOL)
#define GPU_TOL_TSEMB_F16_ATOL 1e-6
#define GPU_TOL_TSEMB_F16_RTOL (2 * GPU_U_F16)

#define GPU_TOL_TSEMB_PHASE_F32_REL 1e-4
#define GPU_TOL_TSEMB_PHASE_F32_ATOL 3e-4
#define GPU_TOL_TSEMB_PHASE_F32_RTOL 4e-6
#define GPU_TOL_TSEMB_PHASE_BF16_REL (2 * GPU_U_BF16)
#define GPU_TOL_TSEMB_PHASE_BF16_ATOL 3e-4
#define GPU_TOL_TSEMB_PHASE_BF16_RTOL (2 * GPU_U_BF16)
#define GPU_TOL_TSEMB_PHASE_F16_REL (2 * GPU_U_F16)
#define GPU_TOL_TSEMB_PHASE_F16_ATOL 3e-4
#define GPU_TOL_TSEMB_PHASE_F16_RTOL (2 * GPU_U_F16)

#endif /* DS_GPU_TOLERANCES_H */
