/* ds_cuda_ops.h - the CUDA twins of the tensor-level ops in ops.h, and the per-thread CUDA context they
 * run in. Included only when DS_HAVE_CUDA is defined (ops.h entry points dispatch here when their
 * tensors live on a CUDA device, see ops_dispatch.h); C callers need no CUDA headers.
 *
 * Common contract of every ds_cuda_op_* below (the same semantics, shapes and aliasing rules as the
 * ds_op_* of the same name in ops.h, which is the reference):
 * - Tensors are on a CUDA device (device.kind == DS_DEVICE_CUDA) and contiguous, except where ops.h
 *   allows a row stride (modulate/gate_add scale, shift and gate: [B, D] with any stride[0]).
 * - Element types: DS_F32, DS_BF16 or DS_F16; all "data" tensors of one call (x, out, weights,
 *   residuals, q/k/v, mask) share one dtype. Arithmetic is fp32 inside every kernel (loads convert
 *   up, stores round once, to nearest even). Exceptions, always f32: the timestep vector t of
 *   ds_cuda_op_timestep_embedding, the RoPE tables cos/sin and ids. ds_cuda_op_convert converts
 *   between any two of the three types.
 * - Work is enqueued on the calling thread's current context's stream (ds_cuda_ctx_bind) and is
 *   asynchronous: errors of the launch itself are returned; errors during execution surface at the
 *   next synchronizing call (ds_cuda_ctx_sync). With no context bound, DS_ERR_DEVICE ("no CUDA
 *   context bound to this thread").
 * - Errors: DS_ERR_INVALID_ARG (NULL/shape/aliasing), DS_ERR_UNSUPPORTED (dtype, layout, a tensor
 *   on the CPU), DS_ERR_DEVICE (launch/cuBLASLt failure, with the CUDA reason). Never aborts.
 * - Outputs are written in full (tests poison them with NaN first).
 * - No device or host allocation per call: scratch comes from the caller (the model's arena) and the
 *   cuBLASLt workspace from the context. */
#ifndef DS_CUDA_OPS_H
#define DS_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "ops.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- per-thread context (context.cu) ------------------------------------------------------------ */

/* One stream + one cuBLASLt handle (with its workspace, and a per-shape algorithm cache) on one
 * device, used by one host thread at a time (a worker). */
typedef struct ds_cuda_ctx ds_cuda_ctx;

/* Create a context on device `index`: sets that device current for the calling thread, creates a
 * non-blocking stream and a cuBLASLt handle with `lt_workspace_bytes` of workspace (0 = 32 MiB) and a
 * small device scratch for reductions. *ctx = NULL on failure. Errors: DS_ERR_DEVICE (bad ordinal, no
 * driver), DS_ERR_OOM (workspace). */
ds_status ds_cuda_ctx_create(int index, size_t lt_workspace_bytes, ds_cuda_ctx **ctx, ds_err *err);

/* Wait for the context's work, then release it. NULL is a no-op. Unbinds it if bound. */
void ds_cuda_ctx_destroy(ds_cuda_ctx *ctx);

/* Make ctx the calling thread's current context (NULL unbinds) and its device the current device.
 * Errors: DS_ERR_DEVICE when cudaSetDevice fails. */
ds_status ds_cuda_ctx_bind(ds_cuda_ctx *ctx, ds_err *err);

/* The calling thread's current context, or NULL. */
ds_cuda_ctx *ds_cuda_ctx_current(void);

/* The context's device ordinal and stream (a cudaStream_t as void *). */
int ds_cuda_ctx_device(const ds_cuda_ctx *ctx);
void *ds_cuda_ctx_stream(const ds_cuda_ctx *ctx);

/* Wait for all work queued on the current context's stream; an asynchronous kernel error becomes
 * DS_ERR_DEVICE with the CUDA reason. */
ds_status ds_cuda_ctx_sync(ds_err *err);

/* Copies on the current context's stream between host and device; they complete before return
 * (they synchronize the stream), so host buffers may be pageable and reused at once. */
ds_status ds_cuda_ctx_upload(void *d_dst, const void *src, size_t bytes, ds_err *err);
ds_status ds_cuda_ctx_download(void *dst, const void *d_src, size_t bytes, ds_err *err);

/* Which kernel ds_cuda_op_attention takes on a context. DS_CUDA_ATTN_FAST (a new context's default): the
 * tensor-core kernel (attention_mma.cuh: mma.sync, P rounded to the input type before P . v, fp32
 * accumulation and softmax) for bf16/f16 calls without a mask whose head dim is a multiple of 8 and
 * <= 128 and whose pointers are 16-byte aligned; every other call takes the fp32-inside kernel.
 * DS_CUDA_ATTN_EXACT: always the fp32-inside kernel (the reference path; P stays fp32). */
typedef enum { DS_CUDA_ATTN_FAST = 0, DS_CUDA_ATTN_EXACT = 1 } ds_cuda_attn_path;
void ds_cuda_ctx_set_attention(ds_cuda_ctx *ctx, ds_cuda_attn_path path);
ds_cuda_attn_path ds_cuda_ctx_attention(const ds_cuda_ctx *ctx);

/* CUDA graphs (graph.h) on this context: on for a new context; off makes every ds_graph_run eager (for
 * comparisons and debugging: --cuda-graphs off). */
void ds_cuda_ctx_set_graphs(ds_cuda_ctx *ctx, bool on);
bool ds_cuda_ctx_graphs(const ds_cuda_ctx *ctx);

/* graph.cu: graph.h's backend on the CUDA runtime (capture on the current context's stream). */
const ds_graph_backend *ds_cuda_graph_backend(void);

/* The current context's cuBLASLt handle (for the tensor-level linear and conv2d). NULL when none. */
struct ds_cuda_lt *ds_cuda_ctx_lt(void);

/* ---- op twins (same contracts as ops.h) ---------------------------------------------------------- */

/* ops_linear.cu: through ds_cuda_linear (bf16/f16/f32; fp32 accumulation; f32 runs fp32 compute, no TF32). */
ds_status ds_cuda_op_linear(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias,
                            ds_err *err);
/* ops_linear.cu: one strided-batched cuBLASLt product for evenly spaced weights/biases/outputs, else n. */
ds_status ds_cuda_op_linear_multi(ds_tensor *const *outs, const ds_tensor *x, const ds_tensor *const *ws,
                                  const ds_tensor *const *bs, int n, ds_err *err);
/* ops_linear.cu: bf16/f16 tanh form through the cuBLASLt GELU epilogue (one rounding); otherwise the linear
 * then ds_cuda_op_gelu in place. */
ds_status ds_cuda_op_linear_gelu(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias,
                                 ds_gelu_kind kind, ds_err *err);

/* ops_norm.cu */
ds_status ds_cuda_op_layernorm(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight, const ds_tensor *bias,
                               float eps, ds_err *err);
ds_status ds_cuda_op_rmsnorm(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight, float eps, ds_err *err);
ds_status ds_cuda_op_modulate(ds_tensor *out, const ds_tensor *x, const ds_tensor *scale, const ds_tensor *shift,
                              ds_err *err);
ds_status ds_cuda_op_gate_add(ds_tensor *out, const ds_tensor *residual, const ds_tensor *x, const ds_tensor *gate,
                              ds_err *err);
/* Fused LayerNorm (no affine) + adaLN modulate: out = LN(x) * (1 + scale[b]) + shift[b]; one pass.
 * x, out [B, N, D]; scale, shift [B, D] with any row stride. In place OK. (CPU: ds_op_layernorm then
 * ds_op_modulate; ops.h ds_op_layernorm_modulate.) */
ds_status ds_cuda_op_layernorm_modulate(ds_tensor *out, const ds_tensor *x, const ds_tensor *scale,
                                        const ds_tensor *shift, float eps, ds_err *err);
/* Fused RMSNorm (per head) + RoPE: out = rope(rmsnorm(x) * weight) in one pass, fp32 between (one rounding).
 * x, out [B, S, H, d]; weight [d] or NULL; cos, sin f32 [S, d]. 16-byte path only; otherwise the two ops.
 * (CPU: ds_op_rmsnorm then ds_op_rope; ops.h ds_op_rmsnorm_rope.) */
ds_status ds_cuda_op_rmsnorm_rope(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight, float eps,
                                  const ds_tensor *cos, const ds_tensor *sin, ds_err *err);

/* ops_elementwise.cu */
ds_status ds_cuda_op_gelu(ds_tensor *out, const ds_tensor *x, ds_gelu_kind kind, ds_err *err);
ds_status ds_cuda_op_silu(ds_tensor *out, const ds_tensor *x, ds_err *err);
ds_status ds_cuda_op_softmax(ds_tensor *out, const ds_tensor *x, ds_err *err);
ds_status ds_cuda_op_add(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, ds_err *err);
ds_status ds_cuda_op_sub(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, ds_err *err);
ds_status ds_cuda_op_axpby(ds_tensor *out, float alpha, const ds_tensor *x, float beta, const ds_tensor *y,
                           ds_err *err);
ds_status ds_cuda_op_convert(ds_tensor *out, const ds_tensor *x, ds_err *err);
ds_status ds_cuda_op_diff_sums(const ds_tensor *a, const ds_tensor *b, double *sum_abs_diff, double *sum_abs_a,
                               ds_err *err);

/* ops_attention.cu: tiled, online softmax, never an Nq x Nk matrix; scratch is ignored (may be NULL).
 * The kernel follows the current context's ds_cuda_attn_path (tensor cores for eligible bf16/f16 calls by
 * default). */
ds_status ds_cuda_op_attention(ds_tensor *out, const ds_tensor *q, const ds_tensor *k, const ds_tensor *v,
                               const ds_tensor *mask, float scale, ds_err *err);

/* ops_embed.cu */
ds_status ds_cuda_op_rope(ds_tensor *out, const ds_tensor *x, const ds_tensor *cos, const ds_tensor *sin,
                          ds_err *err);
ds_status ds_cuda_op_timestep_embedding(ds_tensor *out, const ds_tensor *t, int flip_sin_to_cos,
                                        float downscale_freq_shift, float scale, float max_period, ds_err *err);

/* ops_image.cu: conv2d as im2col bands (in `scratch`, device memory of ds_op_conv2d_scratch_bytes) +
 * cuBLASLt, GroupNorm, nearest 2x upsample, patchify/unpatchify. */
ds_status ds_cuda_op_conv2d(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias,
                            int padding, void *scratch, size_t scratch_bytes, ds_err *err);
ds_status ds_cuda_op_groupnorm(ds_tensor *out, const ds_tensor *x, int64_t groups, const ds_tensor *weight,
                               const ds_tensor *bias, float eps, ds_err *err);
ds_status ds_cuda_op_upsample_nearest2x(ds_tensor *out, const ds_tensor *x, ds_err *err);
ds_status ds_cuda_op_patchify(ds_tensor *out, const ds_tensor *x, int64_t p, ds_err *err);
ds_status ds_cuda_op_unpatchify(ds_tensor *out, const ds_tensor *y, int64_t p, ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_CUDA_OPS_H */
