/* ops.h - the op library: tensor-level entry points used by every model.
 *
 * Each ds_op_* dispatches on the device of its tensors (ops_dispatch.h): CPU tensors run the reference
 * backend in kernels/cpu/ (f32, contiguous), CUDA tensors run the twin in kernels/cuda/ (f32, bf16 or
 * f16, fp32 arithmetic; contract in cuda/ds_cuda_ops.h). A CUDA tensor on a build without CUDA is
 * DS_ERR_UNSUPPORTED. The position tables (ds_op_rope_freqs, ds_op_pos_embed_2d) are CPU only: models
 * compute them once per resolution in fp64 and upload them. Outputs are written in full (callers may poison
 * them). Unless stated, `out` must not alias an input; ops marked "in place OK" accept out == x.
 * Errors: DS_ERR_INVALID_ARG (shape / missing tensor), DS_ERR_UNSUPPORTED (dtype or device).
 * Shapes below are PyTorch order; "[..., D]" means any leading dims flattened to rows. */
#ifndef DS_OPS_H
#define DS_OPS_H

#include <stddef.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- matrix products ------------------------------------------------------------------------ */

/* nn.Linear: out[..., N] = x[..., K] · w[N, K]ᵀ + bias[N]. bias may be NULL. (OpenBLAS sgemm) */
ds_status ds_op_linear(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias, ds_err *err);

/* Up to DS_LINEAR_MULTI_MAX linears of one input (a block's q, k, v projections): outs[i] = x · ws[i]ᵀ + bs[i]
 * for i < n. bs NULL (or every bs[i] NULL): no biases; otherwise every linear has one. All ws the same shape;
 * shapes, aliasing and errors per linear as ds_op_linear. The CPU runs n ds_op_linear calls (bit-identical to
 * them); the CUDA twin runs one strided-batched product when weights, biases and outputs are each evenly spaced
 * in memory (consecutive arena tensors of one size, as the loaders lay out q, k, v), else (or when cuBLASLt
 * refuses the batch) n products. */
#define DS_LINEAR_MULTI_MAX 4
ds_status ds_op_linear_multi(ds_tensor *const *outs, const ds_tensor *x, const ds_tensor *const *ws,
                             const ds_tensor *const *bs, int n, ds_err *err);

/* GELU kinds: exact (erf) and PyTorch's approximate="tanh". */
typedef enum ds_gelu_kind { DS_GELU_EXACT = 0, DS_GELU_TANH } ds_gelu_kind;

/* nn.Linear followed by GELU: out = gelu(x · wᵀ + bias), the MLP's first layer. Shapes, aliasing and
 * errors as ds_op_linear, plus DS_ERR_INVALID_ARG for an unknown kind. The CPU runs ds_op_linear then
 * ds_op_gelu in place (bit-identical to calling them); the CUDA twin fuses bias + tanh-GELU into the
 * cuBLASLt epilogue for bf16/f16 (one rounding of the fp32 result instead of two passes over out). */
ds_status ds_op_linear_gelu(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias,
                            ds_gelu_kind kind, ds_err *err);

/* ---- normalization and modulation ----------------------------------------------------------- */

/* LayerNorm over the last dim: out = (x - mean) / sqrt(var + eps) [* weight + bias].
 * x, out: [..., D]; weight, bias: [D] or NULL (no affine). Biased variance. In place OK. */
ds_status ds_op_layernorm(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight, const ds_tensor *bias,
                          float eps, ds_err *err);

/* RMSNorm over the last dim: out = x / sqrt(mean(x^2) + eps) [* weight]. weight [D] or NULL.
 * In place OK. */
ds_status ds_op_rmsnorm(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight, float eps, ds_err *err);

/* adaLN modulate: out[b, n, :] = x[b, n, :] * (1 + scale[b, :]) + shift[b, :].
 * x, out: [B, N, D]; scale, shift: [B, D] (any row stride: they may be column slices of a
 * [B, k*D] adaLN projection, see ds_tensor stride). In place OK. */
ds_status ds_op_modulate(ds_tensor *out, const ds_tensor *x, const ds_tensor *scale, const ds_tensor *shift,
                         ds_err *err);

/* Gated residual: out[b, n, :] = residual[b, n, :] + gate[b, :] * x[b, n, :].
 * residual, x, out: [B, N, D]; gate: [B, D] (row stride as in ds_op_modulate) or NULL (gate = 1).
 * out may alias residual. */
ds_status ds_op_gate_add(ds_tensor *out, const ds_tensor *residual, const ds_tensor *x, const ds_tensor *gate,
                         ds_err *err);

/* ---- activations (elementwise, any shape, in place OK) ------------------------------------- */

ds_status ds_op_gelu(ds_tensor *out, const ds_tensor *x, ds_gelu_kind kind, ds_err *err);
ds_status ds_op_silu(ds_tensor *out, const ds_tensor *x, ds_err *err);

/* Softmax over the last dim (max-subtracted). In place OK. */
ds_status ds_op_softmax(ds_tensor *out, const ds_tensor *x, ds_err *err);

/* ---- attention ------------------------------------------------------------------------------ */

/* Scaled-dot-product attention, PyTorch F.scaled_dot_product_attention semantics per head:
 * out = softmax(q·kᵀ·scale + mask)·v.
 * q: [B, Nq, H, d], k, v: [B, Nk, H, d] (the layout a [B, N, H*d] projection already has),
 * out: [B, Nq, H, d]. mask: NULL or additive [Mb, Mh, Nq, Nk] with Mb in {1, B}, Mh in {1, H}.
 * scale <= 0 means 1/sqrt(d). `scratch` is caller-owned f32 workspace of at least
 * ds_op_attention_scratch_bytes(...) bytes (planned at load, so no allocation per call). */
size_t ds_op_attention_scratch_bytes(int64_t nq, int64_t nk, int64_t d);
ds_status ds_op_attention(ds_tensor *out, const ds_tensor *q, const ds_tensor *k, const ds_tensor *v,
                          const ds_tensor *mask, float scale, void *scratch, size_t scratch_bytes, ds_err *err);

/* ---- position embeddings -------------------------------------------------------------------- */

/* FLUX rotary embedding with interleaved pairs, in place OK:
 * out[b,n,h,2m]   = x[b,n,h,2m]·cos[n,2m] − x[b,n,h,2m+1]·sin[n,2m]
 * out[b,n,h,2m+1] = x[b,n,h,2m+1]·cos[n,2m+1] + x[b,n,h,2m]·sin[n,2m+1]
 * x, out: [B, N, H, d] (d even); cos, sin: [N, d] (repeat-interleaved, as ds_op_rope_freqs makes). */
ds_status ds_op_rope(ds_tensor *out, const ds_tensor *x, const ds_tensor *cos, const ds_tensor *sin, ds_err *err);

/* Per-head RMSNorm followed by RoPE (FLUX's q/k path): out = rope(rmsnorm(x; eps) * weight, cos, sin).
 * x, out [B, S, H, d] (d even; out == x allowed); weight [d] or NULL; cos, sin [S, d] f32 as ds_op_rope.
 * The CPU runs ds_op_rmsnorm then ds_op_rope (bit-identical to calling them); the CUDA twin does both in one
 * pass with fp32 between them (one rounding instead of two). Errors: those of the two ops. */
ds_status ds_op_rmsnorm_rope(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight, float eps,
                             const ds_tensor *cos, const ds_tensor *sin, ds_err *err);

/* FluxPosEmbed: ids [N, n_axes] (f32 positions), axes_dim[n_axes] (even widths summing to d), theta
 * (10000) -> cos, sin [N, d]: for axis a and pair k, w = theta^(-2k/d_a) (fp64), φ = id·w, and both
 * elements 2k, 2k+1 of the axis' slice hold cos φ (resp. sin φ). */
ds_status ds_op_rope_freqs(ds_tensor *cos, ds_tensor *sin, const ds_tensor *ids, const int *axes_dim, int n_axes,
                           double theta, ds_err *err);

/* diffusers get_timestep_embedding: t [B] -> out [B, C], C >= 2 (odd C gets one zero last column, as
 * diffusers pads). DS_ERR_INVALID_ARG if C/2 == downscale_freq_shift. half = C/2, f_k = exp(-ln(max_period)·k / (half - downscale_freq_shift)), a = scale·t·f_k (fp32),
 * out = [sin(a), cos(a)], or [cos(a), sin(a)] when flip_sin_to_cos. */
ds_status ds_op_timestep_embedding(ds_tensor *out, const ds_tensor *t, int flip_sin_to_cos,
                                   float downscale_freq_shift, float scale, float max_period, ds_err *err);

/* diffusers get_2d_sincos_pos_embed: out [Hp*Wp, D] (D % 4 == 0) for a grid of Hp rows × Wp cols,
 * positions x_j = j / (Wp / base_size) / interpolation_scale (rows likewise); the first D/2 columns
 * encode the column (x) coordinate, the rest the row (y), each half [sin, cos] with
 * ω_k = 10000^(-k/(D/4)) in fp64, rounded once to f32. Positions are computed in f32 and then promoted
 * to fp64, exactly as diffusers does (this makes the table bit-exact). */
ds_status ds_op_pos_embed_2d(ds_tensor *out, int64_t hp, int64_t wp, double base_size, double interpolation_scale,
                             ds_err *err);

/* ---- image-shaped ops ----------------------------------------------------------------------- */

/* conv2d, stride 1, square kernel k in {1, 3} with padding (k-1)/2 given as `padding` (0 or 1):
 * x [B, Cin, H, W], w [Cout, Cin, k, k], bias [Cout] or NULL -> out [B, Cout, Ho, Wo] (must not
 * overlap x). Implemented as im2col over bands of output rows + one sgemm per band; `scratch` of
 * ds_op_conv2d_scratch_bytes(...) bytes (caller-owned) holds one band's im2col matrix.
 * ds_op_conv2d_scratch_bytes(cin, h, w, k, padding) = Cin·k·k · band · Wo · 4 bytes with
 *   band = clamp(DS_OP_CONV2D_BAND_BYTES / (Cin·k·k · Wo · 4), 1, Ho),
 * so it is at most DS_OP_CONV2D_BAND_BYTES unless one output row alone is larger (then it is one
 * row), and depends on H only through min(H, band): it does not grow with the image height, and
 * it does not depend on B or Cout. A 1x1 kernel with padding 0 needs no im2col: the size is then
 * 0 and scratch may be NULL. Thread-count independent; the result is too. */
#define DS_OP_CONV2D_BAND_BYTES ((size_t)8 << 20) /* im2col budget per band: 8 MiB */
size_t ds_op_conv2d_scratch_bytes(int64_t cin, int64_t h, int64_t w, int64_t k, int64_t padding);
ds_status ds_op_conv2d(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias, int padding,
                       void *scratch, size_t scratch_bytes, ds_err *err);

/* GroupNorm: x, out [B, C, H, W] (or [B, C, L]); G groups of C/G consecutive channels; biased
 * variance over (C/G)·H·W; then per-channel weight/bias ([C] or NULL). In place OK. */
ds_status ds_op_groupnorm(ds_tensor *out, const ds_tensor *x, int64_t groups, const ds_tensor *weight,
                          const ds_tensor *bias, float eps, ds_err *err);

/* Nearest-neighbour 2x upsample: x [B, C, H, W] -> out [B, C, 2H, 2W]. */
ds_status ds_op_upsample_nearest2x(ds_tensor *out, const ds_tensor *x, ds_err *err);

/* Patchify (patch-embed conv input order): x [B, C, H, W] -> out [B, (H/p)·(W/p), C·p·p] with token
 * n = i·(W/p) + j and feature (c·p + u)·p + v = x[b, c, p·i+u, p·j+v]. H, W multiples of p. */
ds_status ds_op_patchify(ds_tensor *out, const ds_tensor *x, int64_t p, ds_err *err);

/* Unpatchify (DiT proj_out order): y [B, Hp·Wp, p·p·C] -> out [B, C, Hp·p, Wp·p] with
 * out[b, c, p·i+u, p·j+v] = y[b, i·Wp + j, (u·p + v)·C + c]. Hp, Wp from out's shape. */
ds_status ds_op_unpatchify(ds_tensor *out, const ds_tensor *y, int64_t p, ds_err *err);

/* ---- misc ------------------------------------------------------------------------------------ */

/* out = a + b, elementwise, same shape. In place OK (out may alias a or b). */
ds_status ds_op_add(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, ds_err *err);

/* out = a - b, elementwise, same shape. In place OK (out may alias a or b). */
ds_status ds_op_sub(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, ds_err *err);

/* out = alpha·x + beta·y, elementwise, same shape (fp32 arithmetic). y may be NULL (then beta is
 * ignored: out = alpha·x). In place OK (out may alias x or y). */
ds_status ds_op_axpby(ds_tensor *out, float alpha, const ds_tensor *x, float beta, const ds_tensor *y, ds_err *err);

/* Copy x into out, converting the element type (f32/bf16/f16 on CUDA; the CPU backend keeps f32 only,
 * so there it is a copy). Same shape, both on the same device. out == x is a no-op. */
ds_status ds_op_convert(ds_tensor *out, const ds_tensor *x, ds_err *err);

/* The DBCache residual-diff reduction: *sum_abs_diff = Σ|a_i - b_i|, *sum_abs_a = Σ|a_i| over all
 * elements, accumulated in fp64 on the CPU (fp32 partials, fp64 final sum on CUDA, where it is one
 * fused reduction and one 16-byte device-to-host copy, synchronising the stream). a, b same shape. */
ds_status ds_op_diff_sums(const ds_tensor *a, const ds_tensor *b, double *sum_abs_diff, double *sum_abs_a,
                          ds_err *err);

/* LayerNorm without affine fused with adaLN modulate: out = LN(x)·(1 + scale[b]) + shift[b].
 * x, out [B, N, D]; scale, shift [B, D] (any row stride). In place OK. On the CPU it is exactly
 * ds_op_layernorm followed by ds_op_modulate; on CUDA one pass. */
ds_status ds_op_layernorm_modulate(ds_tensor *out, const ds_tensor *x, const ds_tensor *scale,
                                   const ds_tensor *shift, float eps, ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_OPS_H */
