/* dit.h - the DiT transformer (diffusers DiTTransformer2DModel, facebook/DiT-XL-2-*) on the CPU.
 *
 * Loads `transformer/` of a DiTPipeline directory (config.json + safetensors, F32/F16/BF16 weights
 * converted to f32 once into a weights arena) and runs the forward exactly as diffusers does:
 *
 *   cond   = timestep_embedder(sinusoid(t; 256, cos first, shift 1)) + class_table[y]   [B, D]
 *   hidden = patch_embed(x) + pos_embed_2d                                              [B, N, D]
 *   per block: adaLN-Zero (shift, scale, gate) x 2 from linear(silu(cond)), LN eps 1e-6 -> attention,
 *              LN eps `norm_eps` (1e-5 in DiT) -> tanh-GELU MLP, gated residuals
 *   final:  (shift, scale) = proj_out_1(silu(cond)); LN eps 1e-6, modulate, proj_out_2, unpatchify
 *   out    = [B, out_channels, S, S]   (out_channels = 2 * in_channels with learned sigma; the
 *            pipeline splits it)
 *
 * The checkpoint stores the timestep/class embedder once per block (the original model has one;
 * the conversion copied it). They must be identical: the loader checks every copy against block 0's
 * bytes, keeps one, and computes the conditioning once per call.
 *
 * Latent sizes: any square S that is a multiple of patch_size and at most the max_latent given at
 * load. For S != sample_size the 2-D sin-cos table is recomputed as diffusers does (grid S/p, base
 * size sample_size/p) and cached until the size changes again.
 *
 * Memory: all activations come from one arena sized at load (dry run on a plan arena for
 * max_batch x max_latent); the forward and its pieces never allocate. A ds_dit is therefore used
 * by one thread at a time (the arena and the cached position table are mutable state); load one
 * per worker or serialize calls.
 *
 * Pieces for the cache engine: ds_dit_forward == ds_dit_embed, then ds_dit_block_forward for
 * i = 0..ds_dit_block_count()-1, then ds_dit_final, bit for bit. ds_dit_block_forward has the
 * generic block signature (model, index, hidden in/out [B, N, D], cond [B, D], err) so an engine
 * can wrap the block list through a function pointer without knowing the model. */
#ifndef DS_DIT_H
#define DS_DIT_H

#include <stdbool.h>
#include <stdint.h>

#include "diffusers_dir.h"
#include "ops.h"
#include "placement.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sizes and constants of one DiT, from transformer/config.json. */
typedef struct ds_dit_config {
    int64_t      num_layers;        /* L (28 for DiT-XL) */
    int64_t      num_heads;         /* H */
    int64_t      head_dim;          /* d */
    int64_t      hidden;            /* D = H * d */
    int64_t      in_channels;       /* C (4) */
    int64_t      out_channels;      /* Cout (8: eps + learned sigma); config default = in_channels */
    int64_t      patch_size;        /* p (2) */
    int64_t      sample_size;       /* trained latent size S0 (32 or 64) */
    int64_t      num_classes;       /* num_embeds_ada_norm (1000); class table has num_classes + 1 rows,
                                       the last one is the null (CFG) class */
    int64_t      ff_inner;          /* feed-forward width, 4 * D */
    int64_t      freq_dim;          /* timestep sinusoid width, 256 */
    float        norm_eps;          /* eps of the MLP-branch LayerNorm (norm3): config norm_eps, 1e-5 */
    ds_gelu_kind gelu;              /* "gelu-approximate" -> DS_GELU_TANH, "gelu" -> DS_GELU_EXACT */
    bool         attention_bias;    /* q/k/v projections have a bias (to_out.0 always has one) */
} ds_dit_config;

typedef struct ds_dit ds_dit; /* opaque: config, f32 weights, activation arena */

/* Parse and validate a DiT transformer config. Accepted: "_class_name" "DiTTransformer2DModel", or the
 * legacy "Transformer2DModel" (the 2023 Hub checkpoints) with norm_type "ada_norm_zero"; norm_type
 * must be "ada_norm_zero", num_embeds_ada_norm and patch_size set, norm_elementwise_affine false,
 * activation_fn "gelu-approximate" or "gelu", no cross_attention_dim. Errors: DS_ERR_UNSUPPORTED
 * (another class or norm type: the message lists what is supported), DS_ERR_FORMAT (a key of the
 * wrong type, or sizes that are inconsistent: D % 4 != 0, sample_size % patch_size != 0, ...). */
ds_status ds_dit_config_parse(const ds_config *cfg, ds_dit_config *out, ds_err *err);

/* Load a DiT from a loaded component (comp->config and comp->weights; e.g. from
 * ds_diffusers_component(pipe, "transformer", ...)). Plans the activation arena for batches up to
 * max_batch (>= 1) and square latents up to max_latent x max_latent (0 = the config's sample_size;
 * otherwise a multiple of patch_size). comp is only read during the call (weights are copied).
 * *out is owned by the caller: free it with ds_dit_free.
 * Errors: those of ds_dit_config_parse; DS_ERR_INVALID_ARG (max_batch / max_latent);
 * DS_ERR_NOT_FOUND (a tensor missing from the checkpoint, named); DS_ERR_INVALID_ARG (a tensor of the
 * wrong shape, named with both shapes); DS_ERR_UNSUPPORTED (a tensor in a non-float dtype, or a
 * per-block embedder copy that differs from block 0's); DS_ERR_OOM. */
ds_status ds_dit_load(const ds_component *comp, int max_batch, int max_latent, ds_dit **out, ds_err *err);

/* ds_dit_load on a placement (NULL = CPU f32): weights converted to pl->dtype and uploaded to
 * pl->device, activations in an arena there. Every tensor argument of the forward functions below must
 * then live on that device in that dtype (x, hidden, cond, out); timesteps and class_labels stay host
 * arrays. On CUDA the calling thread must have a bound context (ds_cuda_ctx_bind) during load and calls.
 * Extra errors: DS_ERR_UNSUPPORTED (a CPU placement other than f32, CUDA on a build without it),
 * DS_ERR_OOM naming the device arena that did not fit, DS_ERR_DEVICE. */
ds_status ds_dit_load_on(const ds_component *comp, int max_batch, int max_latent, const ds_placement *pl, ds_dit **out,
                         ds_err *err);

/* The placement the model was loaded on. */
ds_placement ds_dit_placement(const ds_dit *m);

/* Free a model (NULL allowed). */
void ds_dit_free(ds_dit *m);

/* The parsed config (owned by m). */
const ds_dit_config *ds_dit_get_config(const ds_dit *m);

/* Limits given at load. */
int ds_dit_max_batch(const ds_dit *m);
int ds_dit_max_latent(const ds_dit *m);

/* Tokens N = (S / p)^2 for a latent of S x S, or -1 if S is not a supported size for m. */
int64_t ds_dit_tokens(const ds_dit *m, int64_t latent);

/* Bytes of the weights arena and of the activation arena (for logs and memory budgets). */
size_t ds_dit_weight_bytes(const ds_dit *m);
size_t ds_dit_activation_bytes(const ds_dit *m);

/* Full forward: x [B, C, S, S] f32, timesteps [B] (float, any finite value; the pipeline passes
 * integers 0..999), class_labels [B] (0..num_classes, num_classes = null class) ->
 * out [B, Cout, S, S] (caller-owned contiguous f32, fully written; must not alias x).
 * Errors: DS_ERR_INVALID_ARG (B > max_batch or < 1, S unsupported, shapes, a label out of range, a
 * non-finite timestep; messages name the argument), DS_ERR_UNSUPPORTED (non-f32 or non-CPU tensor). */
ds_status ds_dit_forward(ds_dit *m, const ds_tensor *x, const float *timesteps, const int32_t *class_labels,
                         ds_tensor *out, ds_err *err);

/* Embedding stage: x [B, C, S, S], timesteps [B], class_labels [B] -> hidden [B, N, D] (patch embed +
 * 2-D sin-cos table) and cond [B, D] (timestep MLP + class row: diffusers' "conditioning").
 * hidden and cond are caller-owned contiguous f32 tensors of exactly those shapes; both are fully
 * written. Errors as ds_dit_forward. */
ds_status ds_dit_embed(ds_dit *m, const ds_tensor *x, const float *timesteps, const int32_t *class_labels,
                       ds_tensor *hidden, ds_tensor *cond, ds_err *err);

/* Number of transformer blocks (num_layers). */
int ds_dit_block_count(const ds_dit *m);

/* Block i (0 <= i < block count), in place: hidden [B, N, D] <- block_i(hidden, cond); cond [B, D] as
 * ds_dit_embed wrote it. Errors: DS_ERR_INVALID_ARG (i out of range, shapes, B or N beyond the
 * planned maximum). */
ds_status ds_dit_block_forward(ds_dit *m, int i, ds_tensor *hidden, const ds_tensor *cond, ds_err *err);

/* Final layer: hidden [B, N, D], cond [B, D] -> out [B, Cout, S, S] with N == (S/p)^2 (caller-owned,
 * fully written). hidden is not modified. Errors as ds_dit_block_forward. */
ds_status ds_dit_final(ds_dit *m, const ds_tensor *hidden, const ds_tensor *cond, ds_tensor *out, ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_DIT_H */
