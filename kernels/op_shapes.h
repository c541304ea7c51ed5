/* op_shapes.h - the shape rules of the image-shaped ops, shared by the CPU reference (kernels/cpu/) and its CUDA
 * twin (kernels/cuda/), so both backends accept and refuse exactly the same arguments with the same messages.
 * Only shapes: device, dtype and layout checks stay with each backend. Private to kernels/. */
#ifndef DS_OP_SHAPES_H
#define DS_OP_SHAPES_H

#include <stdint.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* t has exactly `shape` (ndim dims), else DS_ERR_INVALID_ARG "<op>: <what> has shape [..], expected [..]". */
ds_status ds_shape_expect(const ds_tensor *t, int ndim, const int64_t *shape, const char *op, const char *what,
                          ds_err *err);

/* A [B, D] operand that may be a column slice of a wider row-major matrix (adaLN scale/shift/gate): shape
 * (b, d), stride[1] == 1 (unless d <= 1), stride[0] >= d (unless b <= 1); else DS_ERR_INVALID_ARG. */
ds_status ds_shape_rows2d(const ds_tensor *t, int64_t b, int64_t d, const char *op, const char *what, ds_err *err);

/* conv2d: x [B, Cin, H, W], w [Cout, Cin, k, k] with k in {1, 3} and padding == (k-1)/2, bias [Cout] or NULL,
 * out [B, Cout, H + 2p - k + 1, W + 2p - k + 1]. The four tensors must already have the right ndim. */
ds_status ds_shape_conv2d(const ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias,
                          int padding, const char *op, ds_err *err);

/* patchify: p >= 1 divides H and W of img [B, C, H, W]; tok is [B, (H/p)(W/p), C p p]. For unpatchify img is the
 * output (its H, W, C define the grid) and `img_what` / `tok_what` name the arguments in messages. */
ds_status ds_shape_patch(const ds_tensor *img, const ds_tensor *tok, int64_t p, const char *op, const char *img_what,
                         const char *tok_what, ds_err *err);

/* RoPE on x [B, N, H, d] (4-D already checked): d even, cos and sin both [N, d]; else DS_ERR_INVALID_ARG. */
ds_status ds_shape_rope(const ds_tensor *x, const ds_tensor *cos_t, const ds_tensor *sin_t, const char *op,
                        ds_err *err);

/* Timestep embedding: t [B], out [B, C] (ranks already checked), C >= 2, max_period > 0, half = C / 2 !=
 * downscale_freq_shift; else DS_ERR_INVALID_ARG. On success *half and *denom (= f32(half - shift)), the
 * formula's constants, for the caller. */
ds_status ds_shape_timestep_embedding(const ds_tensor *out, const ds_tensor *t, float downscale_freq_shift,
                                      float max_period, const char *op, int64_t *half, float *denom, ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_OP_SHAPES_H */
