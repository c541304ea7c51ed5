/* vae.h - the AutoencoderKL decoder (diffusers `AutoencoderKL`, SD/SDXL/SD3/FLUX VAEs) on any
 * placement: the CPU in f32 (the reference) or a CUDA device in bf16 / f16 / f32 (ds_vae_load_on).
 *
 * Loads `vae/` of a diffusers pipeline (config.json + safetensors; F32/F16/BF16 weights converted once
 * to the placement's dtype into a weights arena on its device; the encoder is not loaded) and decodes
 * latents as `vae.decode(latents / scaling_factor + shift_factor).sample` does (exactly, in fp32, on the
 * CPU):
 *
 *   z   = latents / scaling_factor + shift_factor        (shift 0 when the config has none)   [B, Cl, h, w]
 *   z   = post_quant_conv(z)                              1x1, only when use_post_quant_conv
 *   x   = conv_in(z)                                      3x3, Cl -> C_top = block_out_channels[-1]
 *   mid = resnet, attention (if mid_block_add_attention), resnet                           [B, C_top, h, w]
 *   up block i = 0..n-1 (channels block_out_channels reversed): layers_per_block + 1 resnets,
 *                then (all but the last block) nearest 2x + 3x3 conv
 *   img = conv_out(silu(GroupNorm(x)))                                                      [B, 3, s*h, s*w]
 *
 * with s = 2^(n_blocks - 1) (8 for every released VAE), GroupNorm eps 1e-6 and norm_num_groups groups
 * everywhere, ResnetBlock2D = x' + conv2(silu(GN2(conv1(silu(GN1(x)))))) where x' is x or its 1x1
 * conv_shortcut when the channel count changes, and the mid attention a single head of width C_top
 * over the h*w pixel tokens (GroupNorm, to_q/to_k/to_v/to_out.0 linears, softmax(q k^T / sqrt(C)) v,
 * residual). Legacy attention names (query/key/value/proj_attn) are accepted.
 *
 * Memory: all activations (and the conv im2col scratch) come from one arena on the model's device sized
 * at load by a dry run on a plan arena for max_batch x max_latent_h x max_latent_w; ds_vae_decode never
 * allocates. A ds_vae is therefore used by one thread at a time (the arena is mutable state); load one per
 * worker or serialize calls. On the CPU the attention scratch is sized for the OpenMP thread count at
 * load; raising the thread count later can make a decode fail with DS_ERR_OOM (never overrun). The CUDA
 * attention is tiled and needs none.
 *
 * Tensors: "model tensors" below are contiguous tensors on the model's device in its dtype
 * (ds_vae_placement; f32 CPU tensors for a model loaded with ds_vae_load / ds_vae_load_dir). */
#ifndef DS_VAE_H
#define DS_VAE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diffusers_dir.h"
#include "placement.h"
#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_VAE_MAX_BLOCKS 8 /* up blocks (len(block_out_channels)) supported */

/* Sizes and constants of one AutoencoderKL decoder, from vae/config.json. */
typedef struct ds_vae_config {
    int64_t latent_channels;                       /* Cl (4 for SD/SDXL, 16 for SD3/FLUX); default 4 */
    int64_t out_channels;                          /* image channels (3); default 3 */
    int     n_blocks;                              /* len(block_out_channels) */
    int64_t block_out_channels[DS_VAE_MAX_BLOCKS]; /* encoder order: [128, 256, 512, 512]; default [64] */
    int64_t layers_per_block;                      /* decoder up blocks have layers_per_block + 1 resnets; default 1 */
    int64_t norm_num_groups;                       /* GroupNorm groups everywhere; default 32 */
    double  scaling_factor;                        /* default 0.18215 */
    double  shift_factor;                          /* null or absent -> 0 */
    bool    post_quant_conv;                       /* use_post_quant_conv, default true */
    bool    mid_attention;                         /* mid_block_add_attention, default true */
    int64_t scale;                                 /* image / latent size ratio, 2^(n_blocks - 1) */
} ds_vae_config;

typedef struct ds_vae ds_vae; /* opaque: config, placed decoder weights, activation arena */

/* Parse and validate an AutoencoderKL config. Requires "_class_name" "AutoencoderKL" (when present),
 * act_fn "silu", every up_block_types entry "UpDecoderBlock2D" and as many as block_out_channels
 * (1..DS_VAE_MAX_BLOCKS entries), norm_num_groups dividing every block's channels, a finite
 * scaling_factor != 0, no latents_mean / latents_std (SDXL-style per-channel statistics are not
 * supported). Errors: DS_ERR_UNSUPPORTED (another class, activation, block type, or latents
 * statistics; the message says what is supported), DS_ERR_FORMAT (a key of the wrong type, or
 * inconsistent sizes). */
ds_status ds_vae_config_parse(const ds_config *cfg, ds_vae_config *out, ds_err *err);

/* Load the decoder from a loaded component (comp->config and comp->weights, e.g. from
 * ds_diffusers_component(pipe, "vae", ...)). Plans the activation arena for batches up to
 * max_batch (>= 1) and latents up to max_latent_h x max_latent_w (>= 1 each), on the CPU in f32. comp
 * is only read during the call (weights are copied). *out is owned by the caller: free it with ds_vae_free.
 * Errors: those of ds_vae_config_parse; DS_ERR_INVALID_ARG (a limit < 1, or a weight of the wrong
 * shape: the message names the tensor and both shapes); DS_ERR_NOT_FOUND (a tensor missing from the
 * checkpoint, named); DS_ERR_UNSUPPORTED (a weight in a non-float dtype); DS_ERR_OOM. */
ds_status ds_vae_load(const ds_component *comp, int max_batch, int max_latent_h, int max_latent_w, ds_vae **out,
                      ds_err *err);

/* ds_vae_load on a placement (NULL = CPU f32, exactly ds_vae_load): weights converted to pl->dtype and
 * uploaded to pl->device (through a host staging buffer of the largest tensor, freed before returning),
 * activations and conv scratch in an arena there. ds_vae_decode / ds_vae_decode_taps then take model
 * tensors (latents, image and every tap on that device, in that dtype); ds_vae_to_rgb8 still takes a host
 * f32 image (download it first). Off the CPU, z = latents / scaling_factor + shift_factor is one fp32
 * axpby (within an ulp of the division before rounding to the dtype). On CUDA the calling thread must have
 * a bound context (ds_cuda_ctx_bind) during load and calls. Extra errors: DS_ERR_UNSUPPORTED (a CPU
 * placement other than f32, CUDA on a build without it), DS_ERR_OOM naming the device arena that did not
 * fit, DS_ERR_DEVICE. */
ds_status ds_vae_load_on(const ds_component *comp, int max_batch, int max_latent_h, int max_latent_w,
                         const ds_placement *pl, ds_vae **out, ds_err *err);

/* The placement the model was loaded on. */
ds_placement ds_vae_placement(const ds_vae *vae);

/* Same (CPU f32), from a bare component directory `dir` (config.json + weights, as save_pretrained writes
 * it). Adds the errors of ds_config_open and ds_weights_open (messages name the file). */
ds_status ds_vae_load_dir(const char *dir, int max_batch, int max_latent_h, int max_latent_w, ds_vae **out,
                          ds_err *err);

/* Free a model (NULL allowed). */
void ds_vae_free(ds_vae *vae);

/* The parsed config (owned by vae). */
const ds_vae_config *ds_vae_get_config(const ds_vae *vae);

/* Image pixels per latent pixel along each axis (2^(n_blocks-1): 8 for released VAEs). */
int64_t ds_vae_scale_factor(const ds_vae *vae);

/* Channels of the latents ds_vae_decode takes (Cl). */
int64_t ds_vae_latent_channels(const ds_vae *vae);

/* Limits given at load. */
int ds_vae_max_batch(const ds_vae *vae);
int ds_vae_max_latent_h(const ds_vae *vae);
int ds_vae_max_latent_w(const ds_vae *vae);

/* Bytes of the weights arena and of the activation arena (for logs and memory budgets). */
size_t ds_vae_weight_bytes(const ds_vae *vae);
size_t ds_vae_activation_bytes(const ds_vae *vae);

/* Decode raw diffusion latents (as the scheduler leaves them; scaling_factor / shift_factor are
 * applied here): latents [B, Cl, h, w] -> image [B, out_channels, s*h, s*w], both model tensors, the
 * image nominally in [-1, 1] but not clamped (ds_vae_to_rgb8 does that). image is caller-owned,
 * contiguous, fully written, and must not overlap latents. 1 <= B <= max_batch, 1 <= h <= max_latent_h,
 * 1 <= w <= max_latent_w. Errors: DS_ERR_INVALID_ARG (shapes, channel count, sizes beyond the
 * planned maximum; messages name the argument), DS_ERR_UNSUPPORTED (a tensor on another device or in
 * another dtype than the model's). */
ds_status ds_vae_decode(ds_vae *vae, const ds_tensor *latents, ds_tensor *image, ds_err *err);

/* Optional copies of intermediate activations (for parity tests and debugging). Every non-NULL
 * member must be a caller-owned model tensor (contiguous, on the model's device in its dtype) of exactly
 * the stage's shape; the copies are device-to-device:
 *   z          [B, Cl, h, w]        latents / scaling_factor + shift_factor
 *   post_quant [B, Cl, h, w]        after post_quant_conv (must be NULL when the model has none)
 *   conv_in    [B, C_top, h, w]     after decoder.conv_in
 *   mid        [B, C_top, h, w]     after decoder.mid_block
 *   up[i]      [B, C_i, h_i, w_i]   after decoder.up_blocks[i] (its upsampler included), i < n_blocks */
typedef struct ds_vae_taps {
    ds_tensor *z;
    ds_tensor *post_quant;
    ds_tensor *conv_in;
    ds_tensor *mid;
    ds_tensor *up[DS_VAE_MAX_BLOCKS];
} ds_vae_taps;

/* ds_vae_decode that also fills the taps (NULL taps: identical to ds_vae_decode). The image is the
 * same bit for bit. Extra errors: DS_ERR_INVALID_ARG for a tap of the wrong shape, DS_ERR_UNSUPPORTED for
 * one on another device or in another dtype. */
ds_status ds_vae_decode_taps(ds_vae *vae, const ds_tensor *latents, ds_tensor *image, const ds_vae_taps *taps,
                             ds_err *err);

/* diffusers' VaeImageProcessor postprocess to 8-bit RGB: per value v (f32),
 * u = clamp(v * 0.5 + 0.5, 0, 1) * 255, rounded half to even (numpy's round), as uint8; NaN -> 0.
 * image [B, 3, H, W] contiguous f32 on the host (whatever the model's placement: read a device image
 * back with ds_tensor_read_f32 first) -> rgb [B, H, W, 3] (interleaved, row-major), rgb_bytes >=
 * B*H*W*3. Errors: DS_ERR_INVALID_ARG (shape, channel count other than 3, rgb NULL or too small),
 * DS_ERR_UNSUPPORTED (non-f32 or non-CPU image). */
ds_status ds_vae_to_rgb8(const ds_tensor *image, uint8_t *rgb, size_t rgb_bytes, ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_VAE_H */
