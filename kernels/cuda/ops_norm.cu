// ops_norm.cu - CUDA twins of the normalization and adaLN ops of ops.h: LayerNorm, RMSNorm, the fused
// LayerNorm + modulate, the fused RMSNorm + RoPE (FLUX's q/k), modulate and the gated residual
// (ds_cuda_op_layernorm, ds_cuda_op_rmsnorm, ds_cuda_op_layernorm_modulate, ds_cuda_op_rmsnorm_rope,
// ds_cuda_op_modulate, ds_cuda_op_gate_add). Contracts: ds_cuda_ops.h / ops.h.
//
// Row ops (one kernel, four modes): a group of threads owns one row (a sub-warp group for short rows, a
// block for long ones, see ds_cuda_row_layout), keeps up to 24 of its elements per thread in registers (8 on
// the element-by-element path), and reduces with warp shuffles: the mean, then the biased variance around
// that mean (two passes over the registers, fp32), then one write pass. The part of a row beyond 1024
// threads' registers is re-read from memory (L1/L2-resident) in each pass. Every element is read and
// written by the same thread, after the row's reductions, so out == x is safe.
// modulate / gate_add are grid-stride elementwise kernels that index the [B, D] scale/shift/gate rows as
// ptr[b * stride0 + d]. Loads and stores are 16-byte vectors when the row length, every pointer and the
// row strides allow it, element by element otherwise.
#include "cuda_util.cuh"
#include "op_shapes.h"

namespace {

enum { NORM_LN = 0, NORM_RMS = 1, NORM_LN_MOD = 2, NORM_RMS_ROPE = 3 };

constexpr unsigned EW_THREADS = 256;  // block size of the elementwise (modulate, gate_add) grid-stride kernels

// Row vectors per thread held in registers: 24 floats for 16-byte vectors, 8 elements element by element
// (the scalar path spends more registers on indexing; both stay spill-free under the 64-register cap of
// __launch_bounds__(1024)).
// RMS_ROPE keeps 16 floats (its rows are single heads, d <= 256, and the rotation needs registers of its own:
// 24 would spill in the f32 instance).
template <int VEC, int MODE = 0> __host__ __device__ constexpr int norm_chunks() {
    return VEC == 1 ? 8 : (MODE == 3 ? 16 : 24) / VEC;
}

// One output vector of a normalized row: y = (x - mean) * rstd, then the affine part of MODE:
// LN: * a + c (either may be NULL); RMS: * a (may be NULL; mean is 0); LN_MOD: * (1 + a) + c;
// RMS_ROPE: * a (may be NULL), then the RoPE rotation of the pairs (2m, 2m+1) with this token's cos/sin rows
// (f32 [d], 16-byte aligned; VEC even and a multiple of 4), in the CPU's order (ds_op_rope):
//   out[2m] = y[2m] cos[2m] - y[2m+1] sin[2m],  out[2m+1] = y[2m+1] cos[2m+1] + y[2m] sin[2m+1].
// a, c: this row's affine vectors [D]; e: element offset of the vector inside the row.
template <typename T, int VEC, int MODE>
__device__ __forceinline__ void norm_store(T *yr, const T *ar, const T *cr, int64_t e, const float *xv, float mean,
                                           float rstd, const float *rc = nullptr, const float *rsn = nullptr) {
    float y[VEC], a[VEC], c[VEC];
#pragma unroll
    for (int k = 0; k < VEC; k++) y[k] = (xv[k] - mean) * rstd;
    if constexpr (MODE == NORM_RMS_ROPE) {
        static_assert(VEC % 4 == 0, "RMS_ROPE needs whole pairs and 16-byte table loads");
        if (ar) {
            ds_ld_vec<VEC>(ar, e, a);
#pragma unroll
            for (int k = 0; k < VEC; k++) y[k] *= a[k];
        }
        float co[VEC], si[VEC], o[VEC];
#pragma unroll
        for (int q = 0; q < VEC; q += 4) {
            ds_ld_vec<4>(rc, e + q, co + q);
            ds_ld_vec<4>(rsn, e + q, si + q);
        }
#pragma unroll
        for (int k = 0; k < VEC; k += 2) {
            o[k] = y[k] * co[k] - y[k + 1] * si[k];
            o[k + 1] = y[k + 1] * co[k + 1] + y[k] * si[k + 1];
        }
        ds_st_vec<VEC>(yr, e, o);
        return;
    }
    if (MODE == NORM_LN_MOD) {
        ds_ld_vec<VEC>(ar, e, a);
        ds_ld_vec<VEC>(cr, e, c);
#pragma unroll
        for (int k = 0; k < VEC; k++) y[k] = y[k] * (1.0f + a[k]) + c[k];
    } else {
        if (ar) {
            ds_ld_vec<VEC>(ar, e, a);
#pragma unroll
            for (int k = 0; k < VEC; k++) y[k] *= a[k];
        }
        if (cr) {
            ds_ld_vec<VEC>(cr, e, c);
#pragma unroll
            for (int k = 0; k < VEC; k++) y[k] += c[k];
        }
    }
    ds_st_vec<VEC>(yr, e, y);
}

// x, out: [rows, d], d % VEC == 0, row r as nv = d / VEC vectors; thread g of the row's group of `tpr` owns
// vectors g, g + tpr, ... (the first CH in registers). Affine vectors of row r: pa + (r / n_per_b) * a_rs
// and pc + (r / n_per_b) * c_rs ([B, D] rows for LN_MOD; a_rs = c_rs = 0 for the [D] weight and bias).
// RMS_ROPE: rows are the heads of x [B, S, H, d] (row = (b S + n) H + h); token n's cos/sin rows are
// rope_cos + n d, rope_sin + n d (f32 [S, d]).
template <typename T, int VEC, int MODE>
__global__ void __launch_bounds__(1024)
    norm_rows_kernel(T *out, const T *x, const T *pa, const T *pc, int64_t a_rs, int64_t c_rs, int64_t n_per_b,
                     int64_t rows, int64_t d, int tpr, float eps, const float *rope_cos, const float *rope_sin,
                     int64_t rope_h, int64_t rope_s) {
    constexpr int CH = norm_chunks<VEC, MODE>();
    __shared__ float red[32];
    const int g = (int)threadIdx.x % tpr;
    const int rpb = (int)blockDim.x / tpr;
    const int64_t nv = d / VEC;
    const float fd = (float)d;
    // The loop bound is uniform over the block; rows past the end only occur in a block's last iteration and
    // their threads still take part in the reductions.
    for (int64_t base = (int64_t)blockIdx.x * rpb; base < rows; base += (int64_t)gridDim.x * rpb) {
        const int64_t row = base + (int)threadIdx.x / tpr;
        const bool live = row < rows;
        const T *xr = x + (live ? row : 0) * d;  // [d]
        float v[CH][VEC];
        float s = 0.0f;
#pragma unroll
        for (int c = 0; c < CH; c++) {
            const int64_t vi = g + (int64_t)c * tpr;
            if (live && vi < nv) {
                ds_ld_vec<VEC>(xr, vi * VEC, v[c]);
            } else {
#pragma unroll
                for (int k = 0; k < VEC; k++) v[c][k] = 0.0f;
            }
#pragma unroll
            for (int k = 0; k < VEC; k++) s += MODE == NORM_RMS || MODE == NORM_RMS_ROPE ? v[c][k] * v[c][k] : v[c][k];
        }
        for (int64_t vi = g + (int64_t)CH * tpr; live && vi < nv; vi += tpr) {
            float t[VEC];
            ds_ld_vec<VEC>(xr, vi * VEC, t);
#pragma unroll
            for (int k = 0; k < VEC; k++) s += MODE == NORM_RMS || MODE == NORM_RMS_ROPE ? t[k] * t[k] : t[k];
        }
        s = tpr <= 32 ? ds_warp_sum(s, tpr) : ds_block_sum(s, red);

        float mean = 0.0f, rstd;
        if (MODE == NORM_RMS || MODE == NORM_RMS_ROPE) {
            rstd = 1.0f / sqrtf(s / fd + eps);
        } else {
            mean = s / fd;
            float q = 0.0f;
#pragma unroll
            for (int c = 0; c < CH; c++) {
                const int64_t vi = g + (int64_t)c * tpr;
                if (live && vi < nv) {
#pragma unroll
                    for (int k = 0; k < VEC; k++) {
                        const float dv = v[c][k] - mean;
                        q += dv * dv;
                    }
                }
            }
            for (int64_t vi = g + (int64_t)CH * tpr; live && vi < nv; vi += tpr) {
                float t[VEC];
                ds_ld_vec<VEC>(xr, vi * VEC, t);
#pragma unroll
                for (int k = 0; k < VEC; k++) {
                    const float dv = t[k] - mean;
                    q += dv * dv;
                }
            }
            q = tpr <= 32 ? ds_warp_sum(q, tpr) : ds_block_sum(q, red);
            rstd = 1.0f / sqrtf(q / fd + eps);
        }

        if (live) {
            T *yr = out + row * d;  // [d]
            const int64_t bi = row / n_per_b;
            const T *ar = pa ? pa + bi * a_rs : nullptr;
            const T *cr = pc ? pc + bi * c_rs : nullptr;
            const int64_t tok = MODE == NORM_RMS_ROPE ? (row / rope_h) % rope_s : 0;
            const float *rc = MODE == NORM_RMS_ROPE ? rope_cos + tok * d : nullptr;
            const float *rsn = MODE == NORM_RMS_ROPE ? rope_sin + tok * d : nullptr;
#pragma unroll
            for (int c = 0; c < CH; c++) {
                const int64_t vi = g + (int64_t)c * tpr;
                if (vi < nv) norm_store<T, VEC, MODE>(yr, ar, cr, vi * VEC, v[c], mean, rstd, rc, rsn);
            }
            for (int64_t vi = g + (int64_t)CH * tpr; vi < nv; vi += tpr) {
                float t[VEC];
                ds_ld_vec<VEC>(xr, vi * VEC, t);
                norm_store<T, VEC, MODE>(yr, ar, cr, vi * VEC, t, mean, rstd, rc, rsn);
            }
        }
    }
}

// adaLN modulate: x, out [B, N, D] as nvec vectors of VEC (d % VEC == 0); scale/shift row b at b * rs.
template <typename T, int VEC>
__global__ void modulate_kernel(T *out, const T *x, const T *scale, const T *shift, int64_t sc_rs, int64_t sh_rs,
                                int64_t nd, int64_t d, int64_t nvec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += stride) {
        const int64_t e = i * VEC, b = e / nd, j = e % d;
        float xv[VEC], sc[VEC], sh[VEC];
        ds_ld_vec<VEC>(x, e, xv);
        ds_ld_vec<VEC>(scale, b * sc_rs + j, sc);
        ds_ld_vec<VEC>(shift, b * sh_rs + j, sh);
#pragma unroll
        for (int k = 0; k < VEC; k++) xv[k] = xv[k] * (1.0f + sc[k]) + sh[k];
        ds_st_vec<VEC>(out, e, xv);
    }
}

// Gated residual: residual, x, out [B, N, D] as nvec vectors; gate row b at b * g_rs, or NULL (gate = 1).
template <typename T, int VEC>
__global__ void gate_add_kernel(T *out, const T *res, const T *x, const T *gate, int64_t g_rs, int64_t nd, int64_t d,
                                int64_t nvec) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += stride) {
        const int64_t e = i * VEC;
        float rv[VEC], xv[VEC], gv[VEC];
        ds_ld_vec<VEC>(res, e, rv);
        ds_ld_vec<VEC>(x, e, xv);
        if (gate) {
            ds_ld_vec<VEC>(gate, (e / nd) * g_rs + e % d, gv);
#pragma unroll
            for (int k = 0; k < VEC; k++) rv[k] += gv[k] * xv[k];
        } else {
#pragma unroll
            for (int k = 0; k < VEC; k++) rv[k] += xv[k];
        }
        ds_st_vec<VEC>(out, e, rv);
    }
}

// ---- host side ---------------------------------------------------------------------------------------

// A [B, D] operand that may be a column slice of a wider row-major matrix (as ds_cpu_check_rows2d): on CUDA,
// dtype dt, shape (b, d), stride[1] == 1 (unless d <= 1), stride[0] >= d (unless b <= 1).
ds_status check_rows2d(const ds_tensor *t, int64_t b, int64_t d, ds_dtype dt, const char *op, const char *what,
                       ds_err *err) {
    if (!t || !t->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s: missing tensor", op, what);
    if (t->device.kind != DS_DEVICE_CUDA)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %s: a CPU tensor among CUDA tensors", op, what);
    if (t->dtype != dt)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %s: dtype %d, expected %d (one dtype per call)", op, what,
                       (int)t->dtype, (int)dt);
    return ds_shape_rows2d(t, b, d, op, what, err);
}

// The row stride the kernels use for a checked [B, D] operand (0 when there is one row: any stride is legal).
int64_t row_stride(const ds_tensor *t) { return t && t->shape[0] > 1 ? t->stride[0] : 0; }

// x, out: one dtype, same shape [..., D] (x with `ndim` dims, -1: any >= 1); eps finite and >= 0.
ds_status norm_check(const char *op, const ds_tensor *out, const ds_tensor *x, int ndim, float eps, ds_err *err) {
    DS_TRY(ds_cuda_check(x, ndim, -1, op, "x", err));
    if (x->ndim < 1) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: x must have at least 1 dim", op);
    DS_TRY(ds_cuda_check(out, -1, (int)x->dtype, op, "out", err));
    DS_TRY(ds_cuda_check_same_shape(out, x, op, "out", "x", err));
    if (!(eps >= 0.0f) || isinf(eps))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: eps %g must be finite and >= 0", op, (double)eps);
    return DS_OK;
}

// An optional [D] affine vector (weight / bias) of x's dtype.
ds_status check_affine(const ds_tensor *t, const ds_tensor *x, const char *op, const char *what, ds_err *err) {
    if (!t) return DS_OK;
    DS_TRY(ds_cuda_check(t, 1, (int)x->dtype, op, what, err));
    const int64_t d = x->shape[x->ndim - 1];
    if (t->shape[0] != d)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s has %lld entries, x's last dim is %lld", op, what,
                       (long long)t->shape[0], (long long)d);
    return DS_OK;
}

// Launch of a row op over x [rows, d]; pa/pc and their row strides as in norm_rows_kernel.
struct norm_job {
    void *out;
    const void *x, *pa, *pc;
    int64_t a_rs, c_rs, n_per_b, rows, d;
    float eps;
    const float *rope_cos = nullptr, *rope_sin = nullptr;  // RMS_ROPE only: [S, d] f32
    int64_t rope_h = 1, rope_s = 1;                        // RMS_ROPE only: heads H, tokens S of x [B, S, H, d]
};

template <typename T, int VEC, int MODE>
void norm_launch_vec(const norm_job &j, cudaStream_t stream) {
    const ds_row_layout l = ds_cuda_row_layout(j.rows, j.d / VEC, norm_chunks<VEC, MODE>());
    norm_rows_kernel<T, VEC, MODE><<<l.blocks, l.threads, 0, stream>>>(
        (T *)j.out, (const T *)j.x, (const T *)j.pa, (const T *)j.pc, j.a_rs, j.c_rs, j.n_per_b, j.rows, j.d, l.tpr,
        j.eps, j.rope_cos, j.rope_sin, j.rope_h, j.rope_s);
}

// The 16-byte path when the row length, every pointer and the row strides allow it (RMS_ROPE: always; its
// caller checks, and falls back to the two unfused ops otherwise).
template <typename T, int MODE>
void norm_launch(const norm_job &j, cudaStream_t stream) {
    constexpr int V = 16 / sizeof(T);
    if constexpr (MODE == NORM_RMS_ROPE) {
        norm_launch_vec<T, V, MODE>(j, stream);
    } else {
        const bool vec = j.d % V == 0 && ds_cuda_aligned(j.out, 16) && ds_cuda_aligned(j.x, 16) &&
                         ds_cuda_aligned(j.pa, 16) && ds_cuda_aligned(j.pc, 16) && j.a_rs % V == 0 && j.c_rs % V == 0;
        if (vec) norm_launch_vec<T, V, MODE>(j, stream);
        else norm_launch_vec<T, 1, MODE>(j, stream);
    }
}

template <int MODE>
ds_status norm_run(const char *op, ds_dtype dtype, const norm_job &j, ds_err *err) {
    DS_CUDA_STREAM(stream);
    if (j.rows == 0 || j.d == 0) return DS_OK;
    DS_CUDA_DTYPE_SWITCH(dtype, T, norm_launch<T, MODE>(j, stream));
    return ds_cuda_launched(op, err);
}

}  // namespace

extern "C" ds_status ds_cuda_op_layernorm(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight,
                                          const ds_tensor *bias, float eps, ds_err *err) {
    static const char *op = "ds_cuda_op_layernorm";
    DS_TRY(norm_check(op, out, x, -1, eps, err));
    DS_TRY(check_affine(weight, x, op, "weight", err));
    DS_TRY(check_affine(bias, x, op, "bias", err));
    const int64_t d = x->shape[x->ndim - 1];
    const norm_job j = {out->data, x->data, weight ? weight->data : nullptr, bias ? bias->data : nullptr, 0, 0, 1,
                        ds_tensor_rows(x), d, eps};
    return norm_run<NORM_LN>(op, x->dtype, j, err);
}

extern "C" ds_status ds_cuda_op_rmsnorm(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight, float eps,
                                        ds_err *err) {
    static const char *op = "ds_cuda_op_rmsnorm";
    DS_TRY(norm_check(op, out, x, -1, eps, err));
    DS_TRY(check_affine(weight, x, op, "weight", err));
    const int64_t d = x->shape[x->ndim - 1];
    const norm_job j = {out->data, x->data, weight ? weight->data : nullptr, nullptr, 0, 0, 1, ds_tensor_rows(x), d,
                        eps};
    return norm_run<NORM_RMS>(op, x->dtype, j, err);
}

extern "C" ds_status ds_cuda_op_rmsnorm_rope(ds_tensor *out, const ds_tensor *x, const ds_tensor *weight, float eps,
                                             const ds_tensor *cos_t, const ds_tensor *sin_t, ds_err *err) {
    static const char *op = "ds_cuda_op_rmsnorm_rope";
    DS_TRY(norm_check(op, out, x, 4, eps, err));
    DS_TRY(check_affine(weight, x, op, "weight", err));
    DS_TRY(ds_cuda_check(cos_t, 2, DS_F32, op, "cos", err));
    DS_TRY(ds_cuda_check(sin_t, 2, DS_F32, op, "sin", err));
    const int64_t S = x->shape[1], H = x->shape[2], d = x->shape[3];  // x [B, S, H, d]
    DS_TRY(ds_shape_rope(x, cos_t, sin_t, op, err));
    if (out->data != x->data && ds_cuda_overlap(out, x))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out partially overlaps x", op);
    const int V = x->dtype == DS_F32 ? 4 : 8;  // 16 bytes of x
    const bool fused = d % V == 0 && ds_cuda_aligned(out->data, 16) && ds_cuda_aligned(x->data, 16) &&
                       ds_cuda_aligned(weight ? weight->data : nullptr, 16) && ds_cuda_aligned(cos_t->data, 16) &&
                       ds_cuda_aligned(sin_t->data, 16);
    if (!fused) {  // the two ops (same result up to the intermediate rounding to x's type)
        DS_TRY(ds_cuda_op_rmsnorm(out, x, weight, eps, err));
        return ds_cuda_op_rope(out, out, cos_t, sin_t, err);
    }
    norm_job j = {out->data, x->data, weight ? weight->data : nullptr, nullptr, 0, 0, 1, ds_tensor_rows(x), d, eps};
    j.rope_cos = (const float *)cos_t->data;
    j.rope_sin = (const float *)sin_t->data;
    j.rope_h = H > 0 ? H : 1;
    j.rope_s = S > 0 ? S : 1;
    return norm_run<NORM_RMS_ROPE>(op, x->dtype, j, err);
}

extern "C" ds_status ds_cuda_op_layernorm_modulate(ds_tensor *out, const ds_tensor *x, const ds_tensor *scale,
                                                   const ds_tensor *shift, float eps, ds_err *err) {
    static const char *op = "ds_cuda_op_layernorm_modulate";
    DS_TRY(norm_check(op, out, x, 3, eps, err));
    const int64_t b = x->shape[0], n = x->shape[1], d = x->shape[2];
    DS_TRY(check_rows2d(scale, b, d, x->dtype, op, "scale", err));
    DS_TRY(check_rows2d(shift, b, d, x->dtype, op, "shift", err));
    const norm_job j = {out->data, x->data, scale->data, shift->data, row_stride(scale), row_stride(shift),
                        n > 0 ? n : 1, b * n, d, eps};
    return norm_run<NORM_LN_MOD>(op, x->dtype, j, err);
}

extern "C" ds_status ds_cuda_op_modulate(ds_tensor *out, const ds_tensor *x, const ds_tensor *scale,
                                         const ds_tensor *shift, ds_err *err) {
    static const char *op = "ds_cuda_op_modulate";
    DS_TRY(ds_cuda_check(x, 3, -1, op, "x", err));
    DS_TRY(ds_cuda_check(out, 3, (int)x->dtype, op, "out", err));
    DS_TRY(ds_cuda_check_same_shape(out, x, op, "out", "x", err));
    const int64_t b = x->shape[0], n = x->shape[1], d = x->shape[2];
    DS_TRY(check_rows2d(scale, b, d, x->dtype, op, "scale", err));
    DS_TRY(check_rows2d(shift, b, d, x->dtype, op, "shift", err));
    DS_CUDA_STREAM(stream);
    if (b == 0 || n == 0 || d == 0) return DS_OK;
    const int64_t sc_rs = row_stride(scale), sh_rs = row_stride(shift), numel = b * n * d;
    DS_CUDA_DTYPE_SWITCH(x->dtype, T, {
        constexpr int V = 16 / sizeof(T);
        T *o = (T *)out->data;
        const T *xs = (const T *)x->data, *sc = (const T *)scale->data, *sh = (const T *)shift->data;
        if (d % V == 0 && ds_cuda_aligned(o, 16) && ds_cuda_aligned(xs, 16) && ds_cuda_aligned(sc, 16) &&
            ds_cuda_aligned(sh, 16) && sc_rs % V == 0 && sh_rs % V == 0)
            modulate_kernel<T, V><<<ds_cuda_blocks(numel / V, EW_THREADS), EW_THREADS, 0, stream>>>(
                o, xs, sc, sh, sc_rs, sh_rs, n * d, d, numel / V);
        else
            modulate_kernel<T, 1><<<ds_cuda_blocks(numel, EW_THREADS), EW_THREADS, 0, stream>>>(
                o, xs, sc, sh, sc_rs, sh_rs, n * d, d, numel);
    });
    return ds_cuda_launched(op, err);
}

extern "C" ds_status ds_cuda_op_gate_add(ds_tensor *out, const ds_tensor *residual, const ds_tensor *x,
                                         const ds_tensor *gate, ds_err *err) {
    static const char *op = "ds_cuda_op_gate_add";
    DS_TRY(ds_cuda_check(x, 3, -1, op, "x", err));
    DS_TRY(ds_cuda_check(residual, 3, (int)x->dtype, op, "residual", err));
    DS_TRY(ds_cuda_check(out, 3, (int)x->dtype, op, "out", err));
    DS_TRY(ds_cuda_check_same_shape(x, residual, op, "x", "residual", err));
    DS_TRY(ds_cuda_check_same_shape(out, residual, op, "out", "residual", err));
    const int64_t b = x->shape[0], n = x->shape[1], d = x->shape[2];
    if (gate) DS_TRY(check_rows2d(gate, b, d, x->dtype, op, "gate", err));
    DS_CUDA_STREAM(stream);
    if (b == 0 || n == 0 || d == 0) return DS_OK;
    const int64_t g_rs = row_stride(gate), numel = b * n * d;
    DS_CUDA_DTYPE_SWITCH(x->dtype, T, {
        constexpr int V = 16 / sizeof(T);
        T *o = (T *)out->data;
        const T *rs = (const T *)residual->data, *xs = (const T *)x->data;
        const T *gv = gate ? (const T *)gate->data : nullptr;
        if (d % V == 0 && ds_cuda_aligned(o, 16) && ds_cuda_aligned(rs, 16) && ds_cuda_aligned(xs, 16) &&
            ds_cuda_aligned(gv, 16) && g_rs % V == 0)
            gate_add_kernel<T, V><<<ds_cuda_blocks(numel / V, EW_THREADS), EW_THREADS, 0, stream>>>(
                o, rs, xs, gv, g_rs, n * d, d, numel / V);
        else
            gate_add_kernel<T, 1><<<ds_cuda_blocks(numel, EW_THREADS), EW_THREADS, 0, stream>>>(
                o, rs, xs, gv, g_rs, n * d, d, numel);
    });
    return ds_cuda_launched(op, err);
}
