/* flux.h - the FLUX.1 transformer (diffusers FluxTransformer2DModel, black-forest-labs/FLUX.1-dev and -schnell)
 * on any placement: the CPU in f32 (the reference) or a CUDA device in bf16 / f16 / f32 (ds_flux_load_on).
 *
 * Loads `transformer/` of a FluxPipeline directory (config.json + safetensors, F32/F16/BF16 weights converted
 * once to the placement's dtype into a weights arena on its device) and runs the forward exactly as diffusers
 * does (D = heads * head_dim):
 *
 *   temb    = MLP_t(sinusoid(1000 t; 256, cos first, shift 0))
 *             [+ MLP_g(sinusoid(1000 g; ...)) when guidance_embeds]  + MLP_txt(pooled)      [B, D]
 *   hidden  = x_embedder(packed latents)  [B, N, D];   encoder = context_embedder(T5)  [B, T, D]
 *   rope    = FluxPosEmbed(cat(txt_ids, img_ids))  cos, sin [T+N, head_dim]  (text first)
 *   double-stream blocks (num_layers): AdaLayerNormZero on each stream (LN eps 1e-6, no affine; chunks
 *            shift, scale, gate (attention), shift, scale, gate (MLP)), separate q/k/v per stream, per-head
 *            RMSNorm (eps 1e-6, learned weight) on q and k, joint attention over [text, image] with RoPE,
 *            to_out / to_add_out, gated residuals, tanh-GELU MLP (4D) per stream
 *   single-stream blocks (num_single_layers), on cat = [encoder, hidden]  [B, T+N, D]:
 *            AdaLayerNormZeroSingle (shift, scale, gate), attention (no output projection) and
 *            gelu_tanh(proj_mlp) in parallel, proj_out(cat(attn, mlp)) gated into the residual
 *   final:   AdaLayerNormContinuous on the image tokens (chunks SCALE, SHIFT; LN eps 1e-6), proj_out
 *            -> [B, N, out_channels]
 *
 * Memory: activations (and on the CPU the attention scratch; the CUDA attention is tiled and needs none) come
 * from one arena on the model's device sized at load for max_batch x (max_txt_tokens + max_img_tokens) (dry
 * run of the same allocation sequence on a plan arena); the forward and its pieces never allocate. The largest
 * piece is a single-stream block: 5 D + 4 D elements per joint token and sample, plus the forward's own ~2 D
 * (streams and their concatenation) and the attention scratch, i.e. ~1.25 GB for FLUX.1 at 1024x1024 with 512
 * text tokens and batch 2 in f32 on the CPU (ds_flux_activation_bytes tells). The single blocks' proj_out
 * weight [D, 5D] is stored split into its attention and MLP columns, so proj_out(cat(attn, mlp)) =
 * attn·Waᵀ + b + mlp·Wmᵀ (same math, the sum is split at column D). A ds_flux is therefore used by one thread
 * at a time; load one per worker or serialize calls.
 *
 * Tensors: "model tensors" below are contiguous tensors on the model's device in its dtype (ds_flux_placement;
 * f32 CPU tensors for a model loaded with ds_flux_load). The RoPE tables are f32 on the model's device on every
 * placement. Position ids (img_ids, txt_ids), timesteps and guidance stay host f32; the pipeline helpers at the
 * end work on host f32 tensors.
 *
 * Pieces for the cache engine: ds_flux_forward == ds_flux_embed, ds_flux_double_block_forward for
 * i = 0..ds_flux_double_block_count()-1, ds_flux_join_streams, ds_flux_single_block_forward for
 * j = 0..ds_flux_single_block_count()-1, then ds_flux_final, bit for bit. The pieces take caller-owned
 * model tensors and use the model's arena only for scratch (it is rewound before they return). */
#ifndef DS_FLUX_H
#define DS_FLUX_H

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

#define DS_FLUX_MAX_AXES 4

/* Sizes and constants of one FLUX transformer, from transformer/config.json. */
typedef struct ds_flux_config {
    int64_t num_layers;          /* double-stream blocks (19) */
    int64_t num_single_layers;   /* single-stream blocks (38) */
    int64_t num_heads;           /* H (24) */
    int64_t head_dim;            /* d (128) */
    int64_t hidden;              /* D = H * d (3072) */
    int64_t in_channels;         /* packed latent channels (64 = 16 x 2 x 2) */
    int64_t out_channels;        /* config value, or in_channels when null */
    int64_t patch_size;          /* must be 1 (the pipeline packs 2x2) */
    int64_t joint_dim;           /* joint_attention_dim: T5 width (4096) */
    int64_t pooled_dim;          /* pooled_projection_dim: CLIP pooled width (768) */
    int64_t mlp_hidden;          /* 4 * D */
    int64_t freq_dim;            /* timestep sinusoid width, 256 */
    bool    guidance_embeds;     /* dev: true, schnell: false */
    int     n_axes;              /* entries of axes_dims_rope (3) */
    int     axes_dim[DS_FLUX_MAX_AXES]; /* (16, 56, 56); even, summing to head_dim */
    double  rope_theta;          /* 10000 */
} ds_flux_config;

/* RoPE tables of one call: cos, sin [T+N, head_dim] (text rows first), as ds_op_rope_freqs makes them; f32 on
 * the model's device (whatever the model's dtype). */
typedef struct ds_flux_rope {
    ds_tensor cos; /* [T+N, d] */
    ds_tensor sin; /* [T+N, d] */
} ds_flux_rope;

typedef struct ds_flux ds_flux; /* opaque: config, placed weights, activation arena */

/* Parse and validate a FLUX transformer config: "_class_name" must be "FluxTransformer2DModel"; patch_size 1;
 * positive sizes; axes_dims_rope 1..DS_FLUX_MAX_AXES even entries summing to attention_head_dim (default
 * (16, 56, 56)). Missing keys take diffusers' defaults. Errors: DS_ERR_UNSUPPORTED (another class, patch_size
 * != 1), DS_ERR_FORMAT (a key of the wrong type, inconsistent sizes; the message names the key). */
ds_status ds_flux_config_parse(const ds_config *cfg, ds_flux_config *out, ds_err *err);

/* Load a FLUX transformer from a loaded component (comp->config and comp->weights, e.g. from
 * ds_diffusers_component(pipe, "transformer", ...)). Plans the activation arena for batches up to max_batch,
 * image sequences up to max_img_tokens (packed tokens: (H/16)*(W/16) for an H x W image) and text sequences
 * up to max_txt_tokens (all >= 1), on the CPU in f32. comp is only read during the call (weights are copied).
 * *out is owned by the caller: free it with ds_flux_free.
 * Errors: those of ds_flux_config_parse; DS_ERR_INVALID_ARG (a limit < 1, comp without config or weights, a
 * tensor of the wrong shape: both shapes named); DS_ERR_NOT_FOUND (a tensor missing from the checkpoint,
 * named); DS_ERR_UNSUPPORTED (a tensor in a non-float dtype); DS_ERR_OOM. */
ds_status ds_flux_load(const ds_component *comp, int max_batch, int max_img_tokens, int max_txt_tokens, ds_flux **out,
                       ds_err *err);

/* ds_flux_load on a placement (NULL = CPU f32, exactly ds_flux_load): weights converted to pl->dtype and
 * uploaded to pl->device (through a host staging buffer of the largest tensor, freed before returning),
 * activations in an arena there. Every tensor argument of the functions below except the position ids must
 * then be a model tensor (on that device, in that dtype): hidden, encoder, pooled, out, hidden_out,
 * encoder_out, temb, hidden_cat, the streams; rope->cos / rope->sin are f32 on that device. timestep,
 * guidance, img_ids and txt_ids stay host f32. On CUDA the calling thread must have a bound context
 * (ds_cuda_ctx_bind) during load and calls. Extra errors: DS_ERR_UNSUPPORTED (a CPU placement other than f32,
 * CUDA on a build without it), DS_ERR_OOM naming the device arena that did not fit, DS_ERR_DEVICE. */
ds_status ds_flux_load_on(const ds_component *comp, int max_batch, int max_img_tokens, int max_txt_tokens,
                          const ds_placement *pl, ds_flux **out, ds_err *err);

/* The placement the model was loaded on. */
ds_placement ds_flux_placement(const ds_flux *m);

/* Free a model (NULL allowed). */
void ds_flux_free(ds_flux *m);

/* The parsed config (owned by m). */
const ds_flux_config *ds_flux_get_config(const ds_flux *m);

/* Limits given at load. */
int ds_flux_max_batch(const ds_flux *m);
int ds_flux_max_img_tokens(const ds_flux *m);
int ds_flux_max_txt_tokens(const ds_flux *m);

/* Bytes of the weights arena and of the activation arena (for logs and memory budgets). */
size_t ds_flux_weight_bytes(const ds_flux *m);
size_t ds_flux_activation_bytes(const ds_flux *m);

/* Full forward (FluxTransformer2DModel.forward):
 *   hidden   [B, N, in_channels]  packed latents (ds_flux_pack_latents)        model tensor
 *   encoder  [B, T, joint_dim]    T5 hidden states                               model tensor
 *   pooled   [B, pooled_dim]      CLIP pooled output                             model tensor
 *   timestep [B]  host: sigma in [0, 1] (the model multiplies by 1000)
 *   guidance [B]  host: guidance scale (multiplied by 1000 inside); required iff guidance_embeds, else NULL
 *   img_ids  [N, n_axes], txt_ids [T, n_axes]  position ids, host f32 tensors
 *   out      [B, N, out_channels] model tensor, caller-owned, fully written; must not alias hidden.
 * 1 <= B <= max_batch, 1 <= N <= max_img_tokens, 1 <= T <= max_txt_tokens.
 * Errors: DS_ERR_INVALID_ARG (sizes beyond the planned maximum, inconsistent shapes, guidance missing for a
 * guidance-embeds model or given to one without, non-finite timestep/guidance; messages name the argument),
 * DS_ERR_UNSUPPORTED (a tensor on another device or in another dtype than the contract says). */
ds_status ds_flux_forward(ds_flux *m, const ds_tensor *hidden, const ds_tensor *encoder, const ds_tensor *pooled,
                          const float *timestep, const float *guidance, const ds_tensor *img_ids,
                          const ds_tensor *txt_ids, ds_tensor *out, ds_err *err);

/* Embedding stage. Inputs as ds_flux_forward; outputs (caller-owned, fully written): model tensors
 * hidden_out [B, N, D] (x_embedder), encoder_out [B, T, D] (context_embedder), temb [B, D] (time_text_embed),
 * and rope->cos, rope->sin [T+N, head_dim] (f32 on the model's device; computed on the host in fp64 and
 * uploaded). The tables are computed only when the ids change, and written only when the ids changed or
 * rope points at other tables than the previous call's: a caller that passes the same tables with the same
 * ids at every denoising step (the pipelines) must leave them unmodified in between, and gets no upload
 * per step. Errors as ds_flux_forward. */
ds_status ds_flux_embed(ds_flux *m, const ds_tensor *hidden, const ds_tensor *encoder, const ds_tensor *pooled,
                        const float *timestep, const float *guidance, const ds_tensor *img_ids,
                        const ds_tensor *txt_ids, ds_tensor *hidden_out, ds_tensor *encoder_out, ds_tensor *temb,
                        ds_flux_rope *rope, ds_err *err);

/* Number of double-stream blocks (num_layers). */
int ds_flux_double_block_count(const ds_flux *m);

/* Double-stream block i (0 <= i < count), in place on both streams: hidden [B, N, D] (image) and
 * encoder [B, T, D] (text) <- block_i(hidden, encoder, temb, rope); temb [B, D] and rope [T+N, d] as
 * ds_flux_embed wrote them. Errors: DS_ERR_INVALID_ARG (i out of range, shapes, B / N / T beyond the
 * planned maximum), DS_ERR_UNSUPPORTED (a tensor on another device or in another dtype). */
ds_status ds_flux_double_block_forward(ds_flux *m, int i, ds_tensor *hidden, ds_tensor *encoder,
                                       const ds_tensor *temb, const ds_flux_rope *rope, ds_err *err);

/* Concatenate the streams for the single blocks: cat[b] = [encoder[b]; hidden[b]] -> [B, T+N, D]
 * (caller-owned, fully written) with device-to-device copies (ds_op_convert). All three tensors on encoder's
 * device in its dtype. Errors: DS_ERR_INVALID_ARG (shapes), DS_ERR_UNSUPPORTED (device / dtype mismatch). */
ds_status ds_flux_join_streams(const ds_tensor *encoder, const ds_tensor *hidden, ds_tensor *cat, ds_err *err);

/* Number of single-stream blocks (num_single_layers). */
int ds_flux_single_block_count(const ds_flux *m);

/* Single-stream block j (0 <= j < count), in place: hidden_cat [B, T+N, D] (text rows first) <-
 * block_j(hidden_cat, temb, rope); rope [T+N, d]. Errors as ds_flux_double_block_forward. */
ds_status ds_flux_single_block_forward(ds_flux *m, int j, ds_tensor *hidden_cat, const ds_tensor *temb,
                                       const ds_flux_rope *rope, ds_err *err);

/* Final layer on the image tokens of hidden_cat [B, T+N, D] (T = T+N - N, N from out): norm_out
 * (AdaLayerNormContinuous) then proj_out -> out [B, N, out_channels] (caller-owned, fully written).
 * hidden_cat is not modified. Errors as ds_flux_double_block_forward. */
ds_status ds_flux_final(ds_flux *m, const ds_tensor *hidden_cat, const ds_tensor *temb, ds_tensor *out,
                        ds_err *err);

/* ---- pipeline helpers (FluxPipeline static methods), on host f32 tensors ----------------------- */

/* FluxPipeline._pack_latents: latents [B, C, H, W] (H, W even) -> packed [B, (H/2)*(W/2), 4C] with
 * packed[b, i*(W/2) + j, c*4 + u*2 + v] = latents[b, c, 2i+u, 2j+v]. Errors: DS_ERR_INVALID_ARG (odd H/W,
 * shapes), DS_ERR_UNSUPPORTED (dtype/device). */
ds_status ds_flux_pack_latents(const ds_tensor *latents, ds_tensor *packed, ds_err *err);

/* FluxPipeline._unpack_latents, the exact inverse: packed [B, (H/2)*(W/2), 4C] -> latents [B, C, H, W]
 * (H, W taken from latents' shape). Errors as ds_flux_pack_latents. */
ds_status ds_flux_unpack_latents(const ds_tensor *packed, ds_tensor *latents, ds_err *err);

/* FluxPipeline._prepare_latent_image_ids: out [h2*w2, 3] with row n = r*w2 + c holding (0, r, c), for a
 * packed grid of h2 x w2 tokens (latent H/2 x W/2). Errors: DS_ERR_INVALID_ARG (shape), DS_ERR_UNSUPPORTED. */
ds_status ds_flux_image_ids(int64_t h2, int64_t w2, ds_tensor *out, ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_FLUX_H */
