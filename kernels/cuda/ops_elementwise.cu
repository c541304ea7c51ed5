// ops_elementwise.cu - CUDA twins of the elementwise and whole-tensor ops of ops.h: GELU (exact and tanh),
// SiLU, softmax over the last dim, add, sub, axpby, dtype conversion and the DBCache diff_sums reduction
// (ds_cuda_op_gelu, _silu, _softmax, _add, _sub, _axpby, _convert, _diff_sums). Contracts: ds_cuda_ops.h /
// ops.h.
//
// Pointwise ops share one grid-stride kernel over 16-byte vectors (when every pointer is 16-byte aligned)
// plus a scalar tail; each element is loaded to fp32, computed in fp32 with the cancellation-safe forms of
// the CPU reference, and rounded once on store. Element i is read and written by the same thread, so
// out == input is safe. Softmax is a row kernel like the norms in ops_norm.cu (registers + warp shuffles).
#include "cuda_util.cuh"

namespace {

constexpr unsigned EW_THREADS = 256;

// ---- pointwise functors: f(a, b) in fp32; arity 1 ignores b -------------------------------------------

struct gelu_exact_f {  // 0.5·x·(1 + erf(x/√2)) = 0.5·x·erfc(-x/√2)
    static constexpr int arity = 1;
    __device__ float operator()(float v, float) const { return 0.5f * v * erfcf(-v * 0.70710678118654752440f); }
};
struct gelu_tanh_f {  // 0.5·x·(1 + tanh(u)) = x / (1 + e^(-2u)), u = √(2/π)·(x + 0.044715·x³)
    static constexpr int arity = 1;
    __device__ float operator()(float v, float) const {
        const float u = 0.79788456080286535588f * (v + 0.044715f * v * v * v);
        return v / (1.0f + expf(-2.0f * u));
    }
};
struct silu_f {
    static constexpr int arity = 1;
    __device__ float operator()(float v, float) const { return v / (1.0f + expf(-v)); }
};
struct add_f {
    static constexpr int arity = 2;
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct sub_f {
    static constexpr int arity = 2;
    __device__ float operator()(float a, float b) const { return a - b; }
};
struct axpby_f {
    static constexpr int arity = 2;
    float alpha, beta;
    __device__ float operator()(float a, float b) const { return alpha * a + beta * b; }
};
struct scale_f {  // axpby with y == NULL
    static constexpr int arity = 1;
    float alpha;
    __device__ float operator()(float a, float) const { return alpha * a; }
};

// out[i] = f(a[i], b[i]) for i < n (b unused when F::arity == 1): n / VEC vectors, then the n % VEC tail
// elements one per thread of the first threads of the grid.
template <typename T, int VEC, typename F>
__global__ void map_kernel(T *out, const T *a, const T *b, int64_t n, F f) {
    const int64_t nvec = n / VEC, tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = tid; i < nvec; i += stride) {
        float av[VEC], bv[VEC];
        ds_ld_vec<VEC>(a, i * VEC, av);
        if constexpr (F::arity == 2) {
            ds_ld_vec<VEC>(b, i * VEC, bv);
        } else {
#pragma unroll
            for (int k = 0; k < VEC; k++) bv[k] = 0.0f;
        }
#pragma unroll
        for (int k = 0; k < VEC; k++) av[k] = f(av[k], bv[k]);
        ds_st_vec<VEC>(out, i * VEC, av);
    }
    if (VEC > 1) {
        const int64_t e = nvec * VEC + tid;
        if (e < n) ds_st(out, e, f(ds_ld(a, e), F::arity == 2 ? ds_ld(b, e) : 0.0f));
    }
}

// x (and y for binary F) present, on CUDA, one dtype, same shape as out; then the map over all elements.
template <typename F>
ds_status map_run(const char *op, ds_tensor *out, const ds_tensor *x, const ds_tensor *y, const char *xn,
                  const char *yn, F f, ds_err *err) {
    DS_TRY(ds_cuda_check(x, -1, -1, op, xn, err));
    DS_TRY(ds_cuda_check(out, -1, (int)x->dtype, op, "out", err));
    DS_TRY(ds_cuda_check_same_shape(out, x, op, "out", xn, err));
    if (F::arity == 2) {
        DS_TRY(ds_cuda_check(y, -1, (int)x->dtype, op, yn, err));
        DS_TRY(ds_cuda_check_same_shape(y, x, op, yn, xn, err));
    }
    DS_CUDA_STREAM(stream);
    const int64_t n = ds_tensor_numel(x);
    if (n == 0) return DS_OK;
    const void *yd = F::arity == 2 ? y->data : nullptr;
    DS_CUDA_DTYPE_SWITCH(x->dtype, T, {
        constexpr int V = 16 / sizeof(T);
        if (ds_cuda_aligned(out->data, 16) && ds_cuda_aligned(x->data, 16) && ds_cuda_aligned(yd, 16))
            map_kernel<T, V, F><<<ds_cuda_blocks(n / V, EW_THREADS), EW_THREADS, 0, stream>>>(
                (T *)out->data, (const T *)x->data, (const T *)yd, n, f);
        else
            map_kernel<T, 1, F><<<ds_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, stream>>>(
                (T *)out->data, (const T *)x->data, (const T *)yd, n, f);
    });
    return ds_cuda_launched(op, err);
}

// ---- convert ------------------------------------------------------------------------------------------

// out[i] = (TO)x[i] for i < n, through fp32 (exact from any of the three types; one rounding, to nearest
// even). VEC = 4 elements: 16 bytes of f32, 8 bytes of bf16/f16.
template <typename TI, typename TO, int VEC>
__global__ void convert_kernel(TO *out, const TI *x, int64_t n) {
    const int64_t nvec = n / VEC, tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = tid; i < nvec; i += stride) {
        float v[VEC];
        ds_ld_vec<VEC>(x, i * VEC, v);
        ds_st_vec<VEC>(out, i * VEC, v);
    }
    if (VEC > 1) {
        const int64_t e = nvec * VEC + tid;
        if (e < n) ds_st(out, e, ds_ld(x, e));
    }
}

template <typename TI, typename TO>
void convert_launch(void *out, const void *x, int64_t n, cudaStream_t stream) {
    constexpr int V = 4;
    if (ds_cuda_aligned(out, V * sizeof(TO)) && ds_cuda_aligned(x, V * sizeof(TI)))
        convert_kernel<TI, TO, V><<<ds_cuda_blocks(n / V, EW_THREADS), EW_THREADS, 0, stream>>>((TO *)out,
                                                                                             (const TI *)x, n);
    else
        convert_kernel<TI, TO, 1><<<ds_cuda_blocks(n, EW_THREADS), EW_THREADS, 0, stream>>>((TO *)out,
                                                                                             (const TI *)x, n);
}

// ---- softmax ------------------------------------------------------------------------------------------

// Row vectors per thread held in registers (as norm_chunks in ops_norm.cu).
template <int VEC> __host__ __device__ constexpr int softmax_chunks() { return VEC == 1 ? 8 : 24 / VEC; }

// Softmax over rows: x, out [rows, d], d % VEC == 0; a group of tpr threads per row (ds_cuda_row_layout),
// thread g owning vectors g, g + tpr, ... (the first CH in registers, the rest re-read). max, then
// Σ exp(x - max) (the exponentials replace the cached inputs), then out = exp(x - max) / Σ. A row of -inf
// gives NaN (-inf - -inf), as torch.softmax does.
template <typename T, int VEC>
__global__ void __launch_bounds__(1024) softmax_rows_kernel(T *out, const T *x, int64_t rows, int64_t d, int tpr) {
    constexpr int CH = softmax_chunks<VEC>();
    __shared__ float red[32];
    const int g = (int)threadIdx.x % tpr;
    const int rpb = (int)blockDim.x / tpr;
    const int64_t nv = d / VEC;
    // Uniform loop bound over the block; rows past the end (a block's last iteration only) still reduce.
    for (int64_t base = (int64_t)blockIdx.x * rpb; base < rows; base += (int64_t)gridDim.x * rpb) {
        const int64_t row = base + (int)threadIdx.x / tpr;
        const bool live = row < rows;
        const T *xr = x + (live ? row : 0) * d;  // [d]
        float v[CH][VEC];
        float m = -INFINITY;
#pragma unroll
        for (int c = 0; c < CH; c++) {
            const int64_t vi = g + (int64_t)c * tpr;
            if (live && vi < nv) {
                ds_ld_vec<VEC>(xr, vi * VEC, v[c]);
#pragma unroll
                for (int k = 0; k < VEC; k++) m = fmaxf(m, v[c][k]);
            }
        }
        for (int64_t vi = g + (int64_t)CH * tpr; live && vi < nv; vi += tpr) {
            float t[VEC];
            ds_ld_vec<VEC>(xr, vi * VEC, t);
#pragma unroll
            for (int k = 0; k < VEC; k++) m = fmaxf(m, t[k]);
        }
        m = tpr <= 32 ? ds_warp_max(m, tpr) : ds_block_max(m, red);

        float s = 0.0f;
#pragma unroll
        for (int c = 0; c < CH; c++) {
            const int64_t vi = g + (int64_t)c * tpr;
            if (live && vi < nv) {
#pragma unroll
                for (int k = 0; k < VEC; k++) {
                    v[c][k] = expf(v[c][k] - m);
                    s += v[c][k];
                }
            }
        }
        for (int64_t vi = g + (int64_t)CH * tpr; live && vi < nv; vi += tpr) {
            float t[VEC];
            ds_ld_vec<VEC>(xr, vi * VEC, t);
#pragma unroll
            for (int k = 0; k < VEC; k++) s += expf(t[k] - m);
        }
        s = tpr <= 32 ? ds_warp_sum(s, tpr) : ds_block_sum(s, red);
        const float inv = 1.0f / s;

        if (live) {
            T *yr = out + row * d;  // [d]
#pragma unroll
            for (int c = 0; c < CH; c++) {
                const int64_t vi = g + (int64_t)c * tpr;
                if (vi < nv) {
                    float y[VEC];
#pragma unroll
                    for (int k = 0; k < VEC; k++) y[k] = v[c][k] * inv;
                    ds_st_vec<VEC>(yr, vi * VEC, y);
                }
            }
            for (int64_t vi = g + (int64_t)CH * tpr; vi < nv; vi += tpr) {
                float t[VEC];
                ds_ld_vec<VEC>(xr, vi * VEC, t);
#pragma unroll
                for (int k = 0; k < VEC; k++) t[k] = expf(t[k] - m) * inv;
                ds_st_vec<VEC>(yr, vi * VEC, t);
            }
        }
    }
}

template <typename T, int VEC>
void softmax_launch(T *out, const T *x, int64_t rows, int64_t d, cudaStream_t stream) {
    const ds_row_layout l = ds_cuda_row_layout(rows, d / VEC, softmax_chunks<VEC>());
    softmax_rows_kernel<T, VEC><<<l.blocks, l.threads, 0, stream>>>(out, x, rows, d, l.tpr);
}

// ---- diff_sums ----------------------------------------------------------------------------------------

constexpr int DIFF_THREADS = 256;
constexpr int DIFF_MAX_BLOCKS = 1024;

// Stage 1: block k of the grid writes its fp32 partial sums of |a - b| (the difference rounded to fp32, as
// the CPU reference) and |a| over its grid-stride share of a, b [n] to part[k] and part[nblocks + k] (as
// doubles, in the context scratch).
template <typename T, int VEC>
__global__ void __launch_bounds__(DIFF_THREADS) diff_partials_kernel(const T *a, const T *b, int64_t n,
                                                                      double *part) {
    __shared__ float red[32];
    const int64_t nvec = n / VEC, tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    float sd = 0.0f, sa = 0.0f;
    for (int64_t i = tid; i < nvec; i += stride) {
        float av[VEC], bv[VEC];
        ds_ld_vec<VEC>(a, i * VEC, av);
        ds_ld_vec<VEC>(b, i * VEC, bv);
#pragma unroll
        for (int k = 0; k < VEC; k++) {
            sd += fabsf(av[k] - bv[k]);
            sa += fabsf(av[k]);
        }
    }
    if (VEC > 1) {
        const int64_t e = nvec * VEC + tid;
        if (e < n) {
            const float av = ds_ld(a, e);
            sd += fabsf(av - ds_ld(b, e));
            sa += fabsf(av);
        }
    }
    sd = ds_block_sum(sd, red);
    sa = ds_block_sum(sa, red);
    if (threadIdx.x == 0) {
        part[blockIdx.x] = (double)sd;
        part[gridDim.x + blockIdx.x] = (double)sa;
    }
}

__device__ __forceinline__ double warp_sum_f64(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Stage 2 (one block of DIFF_THREADS): the block partials part[0 .. 2·nblocks) summed in double in a fixed
// order (the result does not depend on timing), into sums[0] = Σ|a - b|, sums[1] = Σ|a|.
__global__ void __launch_bounds__(DIFF_THREADS) diff_final_kernel(const double *part, int nblocks, double *sums) {
    __shared__ double red[2][DIFF_THREADS / 32];
    double sd = 0.0, sa = 0.0;
    for (int i = threadIdx.x; i < nblocks; i += blockDim.x) {
        sd += part[i];
        sa += part[nblocks + i];
    }
    sd = warp_sum_f64(sd);
    sa = warp_sum_f64(sa);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        red[0][warp] = sd;
        red[1][warp] = sa;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double td = 0.0, ta = 0.0;
        for (int w = 0; w < DIFF_THREADS / 32; w++) {
            td += red[0][w];
            ta += red[1][w];
        }
        sums[0] = td;
        sums[1] = ta;
    }
}

template <typename T>
void diff_launch(const void *a, const void *b, int64_t n, double *scratch, int max_blocks, cudaStream_t stream) {
    constexpr int V = 16 / sizeof(T);
    const bool vec = ds_cuda_aligned(a, 16) && ds_cuda_aligned(b, 16);
    const int64_t work = vec ? n / V : n;
    int64_t nb = (work + DIFF_THREADS - 1) / DIFF_THREADS;
    if (nb < 1) nb = 1;
    if (nb > max_blocks) nb = max_blocks;
    double *sums = scratch, *part = scratch + 2;
    if (vec)
        diff_partials_kernel<T, V><<<(unsigned)nb, DIFF_THREADS, 0, stream>>>((const T *)a, (const T *)b, n, part);
    else
        diff_partials_kernel<T, 1><<<(unsigned)nb, DIFF_THREADS, 0, stream>>>((const T *)a, (const T *)b, n, part);
    diff_final_kernel<<<1, DIFF_THREADS, 0, stream>>>(part, (int)nb, sums);
}

}  // namespace

extern "C" ds_status ds_cuda_op_gelu(ds_tensor *out, const ds_tensor *x, ds_gelu_kind kind, ds_err *err) {
    static const char *op = "ds_cuda_op_gelu";
    if (kind == DS_GELU_EXACT) return map_run(op, out, x, nullptr, "x", nullptr, gelu_exact_f{}, err);
    if (kind == DS_GELU_TANH) return map_run(op, out, x, nullptr, "x", nullptr, gelu_tanh_f{}, err);
    return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: unknown kind %d", op, (int)kind);
}

extern "C" ds_status ds_cuda_op_silu(ds_tensor *out, const ds_tensor *x, ds_err *err) {
    return map_run("ds_cuda_op_silu", out, x, nullptr, "x", nullptr, silu_f{}, err);
}

extern "C" ds_status ds_cuda_op_add(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, ds_err *err) {
    return map_run("ds_cuda_op_add", out, a, b, "a", "b", add_f{}, err);
}

extern "C" ds_status ds_cuda_op_sub(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, ds_err *err) {
    return map_run("ds_cuda_op_sub", out, a, b, "a", "b", sub_f{}, err);
}

extern "C" ds_status ds_cuda_op_axpby(ds_tensor *out, float alpha, const ds_tensor *x, float beta,
                                      const ds_tensor *y, ds_err *err) {
    if (!y) return map_run("ds_cuda_op_axpby", out, x, nullptr, "x", nullptr, scale_f{alpha}, err);
    return map_run("ds_cuda_op_axpby", out, x, y, "x", "y", axpby_f{alpha, beta}, err);
}

extern "C" ds_status ds_cuda_op_softmax(ds_tensor *out, const ds_tensor *x, ds_err *err) {
    static const char *op = "ds_cuda_op_softmax";
    DS_TRY(ds_cuda_check(x, -1, -1, op, "x", err));
    if (x->ndim < 1) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: x must have at least 1 dim", op);
    DS_TRY(ds_cuda_check(out, -1, (int)x->dtype, op, "out", err));
    DS_TRY(ds_cuda_check_same_shape(out, x, op, "out", "x", err));
    DS_CUDA_STREAM(stream);
    const int64_t d = x->shape[x->ndim - 1], rows = ds_tensor_rows(x);
    if (d == 0 || rows == 0) return DS_OK;
    DS_CUDA_DTYPE_SWITCH(x->dtype, T, {
        constexpr int V = 16 / sizeof(T);
        T *o = (T *)out->data;
        const T *xs = (const T *)x->data;
        if (d % V == 0 && ds_cuda_aligned(o, 16) && ds_cuda_aligned(xs, 16))
            softmax_launch<T, V>(o, xs, rows, d, stream);
        else
            softmax_launch<T, 1>(o, xs, rows, d, stream);
    });
    return ds_cuda_launched(op, err);
}

extern "C" ds_status ds_cuda_op_convert(ds_tensor *out, const ds_tensor *x, ds_err *err) {
    static const char *op = "ds_cuda_op_convert";
    DS_TRY(ds_cuda_check(x, -1, -1, op, "x", err));
    DS_TRY(ds_cuda_check(out, -1, -1, op, "out", err));
    DS_TRY(ds_cuda_check_same_shape(out, x, op, "out", "x", err));
    if (out->data == x->data && out->dtype == x->dtype) return DS_OK;  // the documented no-op
    if (ds_cuda_overlap(out, x))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out overlaps x (only out == x of one dtype is allowed)", op);
    DS_CUDA_STREAM(stream);
    const int64_t n = ds_tensor_numel(x);
    if (n == 0) return DS_OK;
    if (out->dtype == x->dtype) {
        const cudaError_t e = cudaMemcpyAsync(out->data, x->data, (size_t)ds_tensor_nbytes(x),
                                              cudaMemcpyDeviceToDevice, stream);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return DS_FAIL(err, DS_ERR_DEVICE, "%s: cudaMemcpyAsync: %s", op, cudaGetErrorString(e));
        }
        return DS_OK;
    }
    DS_CUDA_DTYPE_SWITCH(x->dtype, TI,
                         DS_CUDA_DTYPE_SWITCH(out->dtype, TO, convert_launch<TI, TO>(out->data, x->data, n, stream)));
    return ds_cuda_launched(op, err);
}

// Two kernels on the context stream (block partials in fp32, then their fixed-order fp64 sum) using the
// context's reduction scratch, one 16-byte device-to-host copy, and a stream synchronization: the sums are
// on the host at return. Deterministic for given inputs (no atomics). The scratch belongs to the context, so
// contexts on one device may run diff_sums concurrently.
extern "C" ds_status ds_cuda_op_diff_sums(const ds_tensor *a, const ds_tensor *b, double *sum_abs_diff,
                                          double *sum_abs_a, ds_err *err) {
    static const char *op = "ds_cuda_op_diff_sums";
    if (!sum_abs_diff || !sum_abs_a) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL result pointer", op);
    DS_TRY(ds_cuda_check(a, -1, -1, op, "a", err));
    DS_TRY(ds_cuda_check(b, -1, (int)a->dtype, op, "b", err));
    DS_TRY(ds_cuda_check_same_shape(b, a, op, "b", "a", err));
    DS_CUDA_STREAM(stream);
    const int64_t n = ds_tensor_numel(a);
    if (n == 0) {
        *sum_abs_diff = 0.0;
        *sum_abs_a = 0.0;
        return DS_OK;
    }
    size_t scratch_bytes = 0;
    double *scratch = (double *)ds_cuda_ctx_scratch(ds_cuda_ctx_current(), &scratch_bytes);
    // Layout: [2] final sums, then [2][nblocks] block partials.
    int64_t max_blocks = scratch ? ((int64_t)(scratch_bytes / sizeof(double)) - 2) / 2 : 0;
    if (max_blocks > DIFF_MAX_BLOCKS) max_blocks = DIFF_MAX_BLOCKS;
    if (max_blocks < 1)
        return DS_FAIL(err, DS_ERR_INTERNAL, "%s: the context's reduction scratch (%zu bytes) is too small", op,
                       scratch_bytes);
    DS_CUDA_DTYPE_SWITCH(a->dtype, T, diff_launch<T>(a->data, b->data, n, scratch, (int)max_blocks, stream));
    DS_TRY(ds_cuda_launched(op, err));
    double h[2];
    cudaError_t e = cudaMemcpyAsync(h, scratch, sizeof h, cudaMemcpyDeviceToHost, stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return DS_FAIL(err, DS_ERR_DEVICE, "%s: %s", op, cudaGetErrorString(e));
    }
    *sum_abs_diff = h[0];
    *sum_abs_a = h[1];
    return DS_OK;
}
