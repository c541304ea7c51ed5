// ops_embed.cu - CUDA twins of the position/time embedding ops of ops.h: FLUX rotary embedding on q/k
// (ds_cuda_op_rope) and diffusers' sinusoidal timestep embedding (ds_cuda_op_timestep_embedding).
// Contracts: ds_cuda_ops.h / ops.h. The position tables themselves (ds_op_rope_freqs, ds_op_pos_embed_2d)
// stay on the CPU (fp64, once per resolution) and are uploaded by the models.
//
// Both kernels reproduce the CPU reference's fp32 steps in the same order with the non-contracting
// intrinsics (__fmul_rn, __fadd_rn, ...), so no FMA changes a rounding: for f32 tensors the results are
// the CPU's up to the device's fp64 exp/sin/cos (within an ulp of double, then one rounding to f32).
#include <math.h>

#include "cuda_util.cuh"
#include "op_shapes.h"

namespace {

constexpr unsigned EW_THREADS = 256;

// RoPE with interleaved pairs (2m, 2m+1):
//   out[2m]   = x[2m]·cos[n,2m] − x[2m+1]·sin[n,2m]
//   out[2m+1] = x[2m+1]·cos[n,2m+1] + x[2m]·sin[n,2m+1]
// x, out: [B, N, H, d] in T, walked as nvec vectors of VEC elements (VEC even, d % VEC == 0, so a vector
// never straddles a head); cos, sin: [N, d] f32. VECIO: 16-byte accesses (x/out 16-byte aligned, VEC a
// multiple of 4, the tables 16-byte aligned); otherwise element by element.
template <typename T, int VEC, bool VECIO>
__global__ void rope_kernel(T *out, const T *x, const float *cs, const float *sn, int64_t n_tok, int64_t hd,
                            int64_t d, int64_t nvec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += stride) {
        const int64_t e = i * VEC;
        const int64_t tab = ((e / hd) % n_tok) * d + e % d;  // cos/sin offset of element e
        float xv[VEC], c[VEC], s[VEC], y[VEC];
        if constexpr (VECIO) {
            ds_ld_vec<VEC>(x, e, xv);
#pragma unroll
            for (int q = 0; q < VEC; q += 4) {
                ds_ld_vec<4>(cs, tab + q, c + q);
                ds_ld_vec<4>(sn, tab + q, s + q);
            }
        } else {
#pragma unroll
            for (int k = 0; k < VEC; k++) {
                xv[k] = ds_ld(x, e + k);
                c[k] = cs[tab + k];
                s[k] = sn[tab + k];
            }
        }
#pragma unroll
        for (int k = 0; k < VEC; k += 2) {
            const float x0 = xv[k], x1 = xv[k + 1];
            y[k] = __fsub_rn(__fmul_rn(x0, c[k]), __fmul_rn(x1, s[k]));
            y[k + 1] = __fadd_rn(__fmul_rn(x1, c[k + 1]), __fmul_rn(x0, s[k + 1]));
        }
        if constexpr (VECIO) {
            ds_st_vec<VEC>(out, e, y);
        } else {
#pragma unroll
            for (int k = 0; k < VEC; k++) ds_st(out, e + k, y[k]);
        }
    }
}

// diffusers get_timestep_embedding, one output element per thread: t [B] f32, out [B, C] in T. Column
// j < half holds sin(a_j) (cos when flip), column half + j the other function, and an odd C's last column
// is 0. As the CPU op: e_k = f32(neg_log_p·k) / denom in f32, f_k = f32(exp(e_k)) (fp64 exp), a =
// scale·(t·f_k) in f32, sin/cos in fp64 rounded once.
template <typename T>
__global__ void timestep_kernel(T *out, const float *t, int64_t total, int64_t C, int64_t half, float neg_log_p,
                                float denom, float scale, int flip) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int64_t b = idx / C, j = idx % C;
        float y = 0.0f;
        if (j < 2 * half) {
            const bool first = j < half;
            const int64_t k = first ? j : j - half;
            const float e = __fdiv_rn(__fmul_rn(neg_log_p, (float)k), denom);
            const float f = (float)exp((double)e);
            const float a = __fmul_rn(scale, __fmul_rn(t[b], f));
            y = first != (flip != 0) ? (float)sin((double)a) : (float)cos((double)a);
        }
        ds_st(out, idx, y);
    }
}

template <typename T>
void rope_launch(T *out, const T *x, const float *cs, const float *sn, int64_t n_tok, int64_t hd, int64_t d,
                 int64_t numel, cudaStream_t stream) {
    constexpr int V = 16 / sizeof(T);  // 4 or 8: a multiple of 4 and even
    if (d % V == 0 && ds_cuda_aligned(out, 16) && ds_cuda_aligned(x, 16) && ds_cuda_aligned(cs, 16) &&
        ds_cuda_aligned(sn, 16))
        rope_kernel<T, V, true><<<ds_cuda_blocks(numel / V, EW_THREADS), EW_THREADS, 0, stream>>>(
            out, x, cs, sn, n_tok, hd, d, numel / V);
    else
        rope_kernel<T, 2, false><<<ds_cuda_blocks(numel / 2, EW_THREADS), EW_THREADS, 0, stream>>>(
            out, x, cs, sn, n_tok, hd, d, numel / 2);
}

}  // namespace

extern "C" ds_status ds_cuda_op_rope(ds_tensor *out, const ds_tensor *x, const ds_tensor *cos_t,
                                     const ds_tensor *sin_t, ds_err *err) {
    static const char *op = "ds_cuda_op_rope";
    DS_TRY(ds_cuda_check(x, 4, -1, op, "x", err));
    DS_TRY(ds_cuda_check(out, 4, (int)x->dtype, op, "out", err));
    DS_TRY(ds_cuda_check_same_shape(out, x, op, "out", "x", err));
    DS_TRY(ds_cuda_check(cos_t, 2, DS_F32, op, "cos", err));
    DS_TRY(ds_cuda_check(sin_t, 2, DS_F32, op, "sin", err));
    const int64_t n_tok = x->shape[1], h = x->shape[2], d = x->shape[3];
    DS_TRY(ds_shape_rope(x, cos_t, sin_t, op, err));
    // Partial overlap would read rotated values; only exact aliasing is allowed.
    if (out->data != x->data && ds_cuda_overlap(out, x))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out partially overlaps x", op);
    DS_CUDA_STREAM(stream);
    const int64_t numel = ds_tensor_numel(x);
    if (numel == 0) return DS_OK;
    const float *cs = (const float *)cos_t->data, *sn = (const float *)sin_t->data;
    DS_CUDA_DTYPE_SWITCH(x->dtype, T,
                         rope_launch<T>((T *)out->data, (const T *)x->data, cs, sn, n_tok, h * d, d, numel, stream));
    return ds_cuda_launched(op, err);
}

extern "C" ds_status ds_cuda_op_timestep_embedding(ds_tensor *out, const ds_tensor *t, int flip_sin_to_cos,
                                                   float downscale_freq_shift, float scale, float max_period,
                                                   ds_err *err) {
    static const char *op = "ds_cuda_op_timestep_embedding";
    DS_TRY(ds_cuda_check(t, 1, DS_F32, op, "t", err));
    DS_TRY(ds_cuda_check(out, 2, -1, op, "out", err));
    const int64_t B = t->shape[0], C = out->shape[1];
    int64_t half;
    float denom;
    DS_TRY(ds_shape_timestep_embedding(out, t, downscale_freq_shift, max_period, op, &half, &denom, err));
    const float neg_log_p = (float)(-log((double)max_period));
    DS_CUDA_STREAM(stream);
    const int64_t total = B * C;
    if (total == 0) return DS_OK;
    DS_CUDA_DTYPE_SWITCH(out->dtype, T,
                         timestep_kernel<T><<<ds_cuda_blocks(total, EW_THREADS), EW_THREADS, 0, stream>>>(
                             (T *)out->data, (const float *)t->data, total, C, half, neg_log_p, denom, scale,
                             flip_sin_to_cos));
    return ds_cuda_launched(op, err);
}
