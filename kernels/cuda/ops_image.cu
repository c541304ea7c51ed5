// ops_image.cu - the CUDA twins of the image-shaped ops in ops.h (the VAE decoder's and DiT's patch ops):
//
// conv2d (stride 1, k in {1, 3}, padding (k-1)/2): im2col over bands of output rows into the caller's
//   device `scratch`, then one cuBLASLt product per (image, band) through ds_cuda_gemm_rowmajor:
//     out[b, :, band rows] (ld Ho*Wo) = W [Cout, Cin*k*k] . col [Cin*k*k, band*Wo] (+ bias per row),
//   exactly the CPU's decomposition (kernels/cpu/conv.c). The scratch is sized for f32 elements by
//   ds_op_conv2d_scratch_bytes, so a bf16/f16 band takes twice the CPU's rows (always fits). A 1x1 kernel
//   with padding 0 reads x itself as the [Cin, H*W] column matrix: no im2col, one product per image.
//   im2col grid: y over the Cin*k*k rows of col, x over the band's columns (grid-stride both ways).
// groupnorm: statistics in two kernels, with no pass over a whole group by one block: (1) a grid of
//   (chunk, group) blocks, each computing the mean and the sum of squared deviations (M2) of its chunk of
//   <= 8192 contiguous elements (two passes over the chunk, fp32), into the context's reduction scratch;
//   (2) the same grid: warp 0 of each block merges its group's chunk partials in fp64 (Chan's parallel
//   variance, lanes then xor-shuffles), and the block normalises its chunk: out = (x - mean) * rstd *
//   weight[c] + bias[c]. Biased variance over (C/G)*H*W. In place OK (each element is read, then written,
//   by one thread, after kernel 1 has read everything). Groups are processed in batches that fit the
//   scratch.
// upsample_nearest2x, patchify, unpatchify: one thread per output element (grid-stride), pure data
//   movement, so elements are copied as raw 2- or 4-byte patterns (bit-exact in every dtype); index math in
//   32 bits when the tensor has < 2^31 elements, else in 64 bits.
#include <math.h>

#include "cuda_util.cuh"
#include "op_shapes.h"
#include "ds_cuda.h"

// ---- helpers --------------------------------------------------------------------------------------------

// Shape check with the expected shape in the message.
static size_t elem_size(ds_dtype t) { return t == DS_F32 ? 4 : 2; }

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the total. sh: 32 floats.
static __device__ __forceinline__ float block_sum(float v, float *sh) {
#pragma unroll
    for (int off = 16; off >= 1; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    __syncthreads();  // sh may still be read from a previous call
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
#pragma unroll
    for (int off = 16; off >= 1; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// ---- conv2d ---------------------------------------------------------------------------------------------

// Output rows per band as kernels/cpu/conv.c computes it for f32 (the scratch was sized with it).
static int64_t band_rows_f32(int64_t kk, int64_t ho, int64_t wo) {
    const int64_t row_bytes = kk * wo * (int64_t)sizeof(float);
    int64_t band = (int64_t)DS_OP_CONV2D_BAND_BYTES / row_bytes;
    if (band < 1) band = 1;
    return band < ho ? band : ho;
}

// col[(c*k + u)*k + v, (oy - y0)*wo + ox] = x[c, oy + u - pad, ox + v - pad] for oy in [y0, y0 + nb), 0
// outside the image. x: one image [cin, h, w]; col: [cin*k*k, nb*wo]. Grid: y over col rows, x over columns.
template <typename E>
__global__ void im2col_kernel(E *__restrict__ col, const E *__restrict__ x, int rows, int h, int w, int k, int pad,
                              int y0, int nb, int wo) {
    const int n = nb * wo;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const int c = r / (k * k), u = (r / k) % k, v = r % k;
        const E *xc = x + (int64_t)c * h * w;
        E *dst = col + (int64_t)r * n;
        for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < n; p += gridDim.x * blockDim.x) {
            const int iy = y0 + p / wo + u - pad, ix = p % wo + v - pad;
            dst[p] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? xc[iy * w + ix] : (E)0;
        }
    }
}

extern "C" ds_status ds_cuda_op_conv2d(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias,
                                       int padding, void *scratch, size_t scratch_bytes, ds_err *err) {
    static const char op[] = "ds_op_conv2d";
    DS_TRY(ds_cuda_check(x, 4, -1, op, "x", err));
    const int dt = (int)x->dtype;
    DS_TRY(ds_cuda_check(w, 4, dt, op, "weight", err));
    DS_TRY(ds_cuda_check(out, 4, dt, op, "out", err));
    if (bias) DS_TRY(ds_cuda_check(bias, 1, dt, op, "bias", err));
    DS_TRY(ds_shape_conv2d(out, x, w, bias, padding, op, err));
    const int64_t B = x->shape[0], cin = x->shape[1], h = x->shape[2], wd = x->shape[3];  // x [B, Cin, H, W]
    const int64_t cout = w->shape[0], k = w->shape[2], ho = out->shape[2], wo = out->shape[3];
    if (ds_cuda_overlap(out, x)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out overlaps x", op);
    if (ds_cuda_overlap(out, w) || (bias && ds_cuda_overlap(out, bias)))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out overlaps the weight or the bias", op);
    const size_t need = ds_op_conv2d_scratch_bytes(cin, h, wd, k, padding);
    if (need > 0 && (!scratch || scratch_bytes < need))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: scratch of %zu bytes%s, need %zu", op, scratch_bytes,
                       scratch ? "" : " (NULL)", need);
    if (cin * h * wd > INT32_MAX || cout * ho * wo > INT32_MAX || cin * k * k > INT32_MAX)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: one image of x %lldx%lldx%lld or of out exceeds 2^31 elements",
                       op, (long long)cin, (long long)h, (long long)wd);
    DS_CUDA_STREAM(stream);
    if (B == 0 || cout == 0 || ho * wo == 0) return DS_OK;
    ds_cuda_lt *lt = ds_cuda_ctx_lt();
    if (!lt) return DS_FAIL(err, DS_ERR_DEVICE, "%s: the bound context has no cuBLASLt handle", op);

    const ds_dtype dtype = x->dtype;
    const size_t es = elem_size(dtype);
    const int64_t K = cin * k * k, P = ho * wo;
    // Rows per band: the f32 band of the CPU, times 4 / es (same bytes), at most Ho. 1x1 pad 0: the image.
    int64_t band = ho;
    if (need > 0) {
        band = band_rows_f32(K, ho, wo) * (int64_t)(sizeof(float) / es);
        if (band > ho) band = ho;
    }
    const char *xs = (const char *)x->data;
    char *os = (char *)out->data;
    const void *bs = bias ? bias->data : NULL;
    for (int64_t b = 0; b < B; b++) {
        const char *xb = xs + (size_t)(b * cin * h * wd) * es;  // x[b]: [Cin, H, W]
        char *ob = os + (size_t)(b * cout * P) * es;             // out[b]: [Cout, P]
        for (int64_t y0 = 0; y0 < ho; y0 += band) {
            const int64_t nb = ho - y0 < band ? ho - y0 : band, n = nb * wo;
            const void *col = xb;  // [K, n], row stride ldb
            int64_t ldb = P;
            if (need > 0 && K > 0) {
                const unsigned threads = 256;
                int64_t gx = (n + threads - 1) / threads;
                if (gx > 64) gx = 64;
                const dim3 grid((unsigned)gx, (unsigned)(K < 65535 ? K : 65535));
                if (es == 4)
                    im2col_kernel<uint32_t><<<grid, threads, 0, stream>>>(
                        (uint32_t *)scratch, (const uint32_t *)xb, (int)K, (int)h, (int)wd, (int)k, padding, (int)y0,
                        (int)nb, (int)wo);
                else
                    im2col_kernel<uint16_t><<<grid, threads, 0, stream>>>(
                        (uint16_t *)scratch, (const uint16_t *)xb, (int)K, (int)h, (int)wd, (int)k, padding, (int)y0,
                        (int)nb, (int)wo);
                DS_TRY(ds_cuda_launched(op, err));
                col = scratch;
                ldb = n;
            }
            // out_b[:, y0*Wo .. y0*Wo + n) (ld P) = W [Cout, K] . col [K, n] + bias per output channel
            ds_status st = ds_cuda_gemm_rowmajor(lt, dtype, ob + (size_t)(y0 * wo) * es, P, w->data, K, col, ldb, bs,
                                                 cout, n, K, (void *)stream, err);
            if (st != DS_OK) {
                ds_err_prefix(err, "%s", op);
                return st;
            }
        }
    }
    return DS_OK;
}

// ---- groupnorm ------------------------------------------------------------------------------------------

#define GN_THREADS 256
#define GN_CHUNK 8192      // target elements per chunk (32 per thread)
#define GN_MAX_CHUNKS 1024 // per group; the chunk grows beyond GN_CHUNK for larger groups

// Kernel 1. Group g = g0 + blockIdx.y holds n contiguous elements of x; chunk j = blockIdx.x covers
// [j*cs, min(n, (j+1)*cs)). part[blockIdx.y * chunks + j] = (chunk mean, chunk sum of squared deviations).
template <typename T>
__global__ void __launch_bounds__(GN_THREADS)
    gn_stats_kernel(float2 *__restrict__ part, const T *__restrict__ x, int64_t g0, int64_t n, int64_t cs, int chunks) {
    __shared__ float sh[32];
    const T *xg = x + (g0 + blockIdx.y) * n;
    const int64_t begin = (int64_t)blockIdx.x * cs;
    const int64_t end = begin + cs < n ? begin + cs : n;
    float s = 0.0f;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) s += ds_ld(xg, i);
    const float mean = block_sum(s, sh) / (float)(end - begin);
    float q = 0.0f;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const float dl = ds_ld(xg, i) - mean;
        q = fmaf(dl, dl, q);
    }
    const float m2 = block_sum(q, sh);
    if (threadIdx.x == 0) part[(int64_t)blockIdx.y * chunks + blockIdx.x] = make_float2(mean, m2);
}

// Chan's merge of (count, mean, M2) b into a.
static __device__ __forceinline__ void chan_merge(double &na, double &ma, double &qa, double nb, double mb, double qb) {
    const double n = na + nb;
    if (nb == 0.0) return;
    const double dl = mb - ma;
    ma += dl * (nb / n);
    qa += qb + dl * dl * (na * nb / n);
    na = n;
}

// Kernel 2. Same grid as kernel 1. Group g = g0 + blockIdx.y is [cg channels, S] contiguous, its channels
// start at (g % groups) * cg. out = (x - mean) * rstd * weight[c] + bias[c] over this block's chunk.
template <typename T>
__global__ void __launch_bounds__(GN_THREADS)
    gn_apply_kernel(T *out, const T *x, const float2 *__restrict__ part, const T *__restrict__ weight,
                    const T *__restrict__ bias, int64_t g0, int64_t groups, int64_t cg, int64_t S, int64_t cs,
                    int chunks, float eps) {
    __shared__ float stat[2];
    const int64_t n = cg * S;
    if (threadIdx.x < 32) {  // warp 0: merge the group's chunk partials
        double cnt = 0.0, mean = 0.0, m2 = 0.0;
        for (int j = threadIdx.x; j < chunks; j += 32) {
            const float2 pj = part[(int64_t)blockIdx.y * chunks + j];
            const int64_t b0 = (int64_t)j * cs, len = n - b0 < cs ? n - b0 : cs;
            chan_merge(cnt, mean, m2, (double)len, (double)pj.x, (double)pj.y);
        }
#pragma unroll
        for (int off = 16; off >= 1; off /= 2) {
            const double c2 = __shfl_xor_sync(0xffffffffu, cnt, off);
            const double mn2 = __shfl_xor_sync(0xffffffffu, mean, off);
            const double q2 = __shfl_xor_sync(0xffffffffu, m2, off);
            chan_merge(cnt, mean, m2, c2, mn2, q2);  // also right when cnt == 0
        }
        if (threadIdx.x == 0) {
            stat[0] = (float)mean;
            stat[1] = (float)(1.0 / sqrt(m2 / (double)n + (double)eps));
        }
    }
    __syncthreads();
    const float mean = stat[0], rstd = stat[1];
    const int64_t g = g0 + blockIdx.y;
    const int64_t c0 = (g % groups) * cg;
    const T *xg = x + g * n;
    T *og = out + g * n;
    const int64_t begin = (int64_t)blockIdx.x * cs;
    const int64_t end = begin + cs < n ? begin + cs : n;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const int64_t c = c0 + (int64_t)((uint32_t)i / (uint32_t)S);  // n < 2^31 (checked by the caller)
        const float a = weight ? rstd * ds_ld(weight, c) : rstd;
        const float b0 = bias ? ds_ld(bias, c) : 0.0f;
        ds_st(og, i, fmaf(ds_ld(xg, i) - mean, a, b0));
    }
}

extern "C" ds_status ds_cuda_op_groupnorm(ds_tensor *out, const ds_tensor *x, int64_t groups, const ds_tensor *weight,
                                          const ds_tensor *bias, float eps, ds_err *err) {
    static const char op[] = "ds_op_groupnorm";
    DS_TRY(ds_cuda_check(x, -1, -1, op, "x", err));
    const int dt = (int)x->dtype;
    DS_TRY(ds_cuda_check(out, -1, dt, op, "out", err));
    if (x->ndim != 3 && x->ndim != 4) {
        char b[96];
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: x has shape %s, expected [B, C, H, W] or [B, C, L]", op,
                       ds_tensor_shape_str(x, b, sizeof b));
    }
    DS_TRY(ds_shape_expect(out, x->ndim, x->shape, op, "out", err));
    const int64_t B = x->shape[0], C = x->shape[1];  // x, out [B, C, H, W] or [B, C, L]
    if (groups <= 0 || C % groups != 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %lld channels are not divisible into %lld groups", op,
                       (long long)C, (long long)groups);
    if (!(eps >= 0)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: eps %g < 0", op, (double)eps);
    if (weight) {  // [C]
        DS_TRY(ds_cuda_check(weight, 1, dt, op, "weight", err));
        if (weight->shape[0] != C)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: weight has %lld entries, x has %lld channels", op,
                           (long long)weight->shape[0], (long long)C);
    }
    if (bias) {  // [C]
        DS_TRY(ds_cuda_check(bias, 1, dt, op, "bias", err));
        if (bias->shape[0] != C)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: bias has %lld entries, x has %lld channels", op,
                           (long long)bias->shape[0], (long long)C);
    }
    if (out->data != x->data && ds_cuda_overlap(out, x))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out partially overlaps x", op);
    const int64_t S = x->ndim == 4 ? x->shape[2] * x->shape[3] : x->shape[2];  // spatial size
    const int64_t cg = C / groups, n = cg * S;                                 // per group: [cg, S]
    if (n > INT32_MAX)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: a group of %lld elements exceeds 2^31", op, (long long)n);
    DS_CUDA_STREAM(stream);
    const int64_t ng = B * groups;
    if (n == 0 || ng == 0) return DS_OK;

    size_t scratch_bytes = 0;
    float2 *part = (float2 *)ds_cuda_ctx_scratch(stream_ctx_, &scratch_bytes);
    // Chunks of about GN_CHUNK elements, at most GN_MAX_CHUNKS per group; then as many groups per launch
    // as the scratch holds partials for (>= 32 with the 256 KiB scratch).
    int64_t chunks = (n + GN_CHUNK - 1) / GN_CHUNK;
    if (chunks > GN_MAX_CHUNKS) chunks = GN_MAX_CHUNKS;
    const int64_t cs = (n + chunks - 1) / chunks;
    chunks = (n + cs - 1) / cs;  // every chunk non-empty
    int64_t per_launch = (int64_t)(scratch_bytes / sizeof(float2)) / chunks;
    if (per_launch > 65535) per_launch = 65535;
    if (!part || per_launch < 1)
        return DS_FAIL(err, DS_ERR_INTERNAL, "%s: the context's reduction scratch (%zu bytes) is too small", op,
                       scratch_bytes);
    for (int64_t g0 = 0; g0 < ng; g0 += per_launch) {
        const int64_t gcount = ng - g0 < per_launch ? ng - g0 : per_launch;
        const dim3 grid((unsigned)chunks, (unsigned)gcount);
        DS_CUDA_DTYPE_SWITCH(x->dtype, T,
            gn_stats_kernel<T><<<grid, GN_THREADS, 0, stream>>>(part, (const T *)x->data, g0, n, cs, (int)chunks);
            gn_apply_kernel<T><<<grid, GN_THREADS, 0, stream>>>(
                (T *)out->data, (const T *)x->data, part, weight ? (const T *)weight->data : (const T *)NULL,
                bias ? (const T *)bias->data : (const T *)NULL, g0, groups, cg, S, cs, (int)chunks, eps));
        DS_TRY(ds_cuda_launched(op, err));
    }
    return DS_OK;
}

// ---- upsample / patchify / unpatchify (raw element copies) ------------------------------------------------

// out [B, C, 2H, 2W] from x [B, C, H, W]: out[.., y, x'] = x[.., y/2, x'/2]. rows = B*C*H.
template <typename E, typename I>
__global__ void upsample2x_kernel(E *__restrict__ out, const E *__restrict__ x, I H, I W, I total) {
    const I W2 = 2 * W, H2 = 2 * H;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (I)gridDim.x * blockDim.x) {
        const I xo = e % W2, rest = e / W2;  // rest = bc * 2H + yo
        const I yo = rest % H2, bc = rest / H2;
        out[e] = x[(bc * H + yo / 2) * W + xo / 2];
    }
}

// out [B, Hp*Wp, F = C*p*p] from x [B, C, H, W]: out[b, i*Wp + j, (c*p + u)*p + v] = x[b, c, p*i + u, p*j + v].
template <typename E, typename I>
__global__ void patchify_kernel(E *__restrict__ out, const E *__restrict__ x, I C, I H, I W, I p, I total) {
    const I wp = W / p, T = (H / p) * wp, F = C * p * p;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (I)gridDim.x * blockDim.x) {
        const I f = e % F, bt = e / F;
        const I t = bt % T, b = bt / T;
        const I v = f % p, u = (f / p) % p, c = f / (p * p);
        const I i = t / wp, j = t % wp;
        out[e] = x[((b * C + c) * H + p * i + u) * W + p * j + v];
    }
}

// out [B, C, H = Hp*p, W = Wp*p] from y [B, Hp*Wp, F = p*p*C]:
// out[b, c, p*i + u, p*j + v] = y[b, i*Wp + j, (u*p + v)*C + c].
template <typename E, typename I>
__global__ void unpatchify_kernel(E *__restrict__ out, const E *__restrict__ y, I C, I H, I W, I p, I total) {
    const I wp = W / p, hp = H / p, F = C * p * p;
    for (I e = (I)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (I)gridDim.x * blockDim.x) {
        const I xx = e % W, r = e / W;  // r = (b*C + c)*H + yy
        const I yy = r % H, bc = r / H;
        const I c = bc % C, b = bc / C;
        const I i = yy / p, u = yy % p, j = xx / p, v = xx % p;
        out[e] = y[(b * hp * wp + i * wp + j) * F + (u * p + v) * C + c];
    }
}

// Launch KERNEL<E, I> over `total` output elements: E the element's bit pattern (uint32_t or uint16_t), I a
// 32-bit index when total < 2^31, else 64-bit (the arguments may use I). Needs `out`.
#define DS_IMG_LAUNCH(KERNEL, E, total, stream, ...)                                                            \
    do {                                                                                                        \
        const unsigned threads_ = 256;                                                                          \
        const unsigned blocks_ = ds_cuda_blocks((total), threads_);                                             \
        if ((total) <= INT32_MAX) {                                                                             \
            typedef uint32_t I;                                                                                 \
            KERNEL<E, I><<<blocks_, threads_, 0, (stream)>>>((E *)out->data, __VA_ARGS__, (I)(total));          \
        } else {                                                                                                \
            typedef int64_t I;                                                                                  \
            KERNEL<E, I><<<blocks_, threads_, 0, (stream)>>>((E *)out->data, __VA_ARGS__, (I)(total));          \
        }                                                                                                       \
    } while (0)

extern "C" ds_status ds_cuda_op_upsample_nearest2x(ds_tensor *out, const ds_tensor *x, ds_err *err) {
    static const char op[] = "ds_op_upsample_nearest2x";
    DS_TRY(ds_cuda_check(x, 4, -1, op, "x", err));
    DS_TRY(ds_cuda_check(out, 4, (int)x->dtype, op, "out", err));
    const int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];  // x [B, C, H, W]
    const int64_t oshape[4] = {B, C, 2 * H, 2 * W};                                      // out [B, C, 2H, 2W]
    DS_TRY(ds_shape_expect(out, 4, oshape, op, "out", err));
    if (ds_cuda_overlap(out, x)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out overlaps the input", op);
    DS_CUDA_STREAM(stream);
    const int64_t total = ds_tensor_numel(out);
    if (total == 0) return DS_OK;
    const size_t es = elem_size(x->dtype);
    if (es == 4)
        DS_IMG_LAUNCH(upsample2x_kernel, uint32_t, total, stream, (const uint32_t *)x->data, (I)H, (I)W);
    else
        DS_IMG_LAUNCH(upsample2x_kernel, uint16_t, total, stream, (const uint16_t *)x->data, (I)H, (I)W);
    return ds_cuda_launched(op, err);
}

extern "C" ds_status ds_cuda_op_patchify(ds_tensor *out, const ds_tensor *x, int64_t p, ds_err *err) {
    static const char op[] = "ds_op_patchify";
    DS_TRY(ds_cuda_check(x, 4, -1, op, "x", err));
    DS_TRY(ds_cuda_check(out, 3, (int)x->dtype, op, "out", err));
    DS_TRY(ds_shape_patch(x, out, p, op, "x", "out", err));  // x [B, C, H, W] -> out [B, Hp*Wp, C*p*p]
    const int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3];
    if (ds_cuda_overlap(out, x)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out overlaps the input", op);
    DS_CUDA_STREAM(stream);
    const int64_t total = ds_tensor_numel(out);
    if (total == 0) return DS_OK;
    const size_t es = elem_size(x->dtype);
    if (es == 4)
        DS_IMG_LAUNCH(patchify_kernel, uint32_t, total, stream, (const uint32_t *)x->data, (I)C, (I)H, (I)W, (I)p);
    else
        DS_IMG_LAUNCH(patchify_kernel, uint16_t, total, stream, (const uint16_t *)x->data, (I)C, (I)H, (I)W, (I)p);
    return ds_cuda_launched(op, err);
}

extern "C" ds_status ds_cuda_op_unpatchify(ds_tensor *out, const ds_tensor *y, int64_t p, ds_err *err) {
    static const char op[] = "ds_op_unpatchify";
    DS_TRY(ds_cuda_check(y, 3, -1, op, "y", err));
    DS_TRY(ds_cuda_check(out, 4, (int)y->dtype, op, "out", err));
    DS_TRY(ds_shape_patch(out, y, p, op, "out", "y", err));  // y [B, Hp*Wp, p*p*C] -> out [B, C, H, W]
    const int64_t C = out->shape[1], H = out->shape[2], W = out->shape[3];
    if (ds_cuda_overlap(out, y)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out overlaps the input", op);
    DS_CUDA_STREAM(stream);
    const int64_t total = ds_tensor_numel(out);
    if (total == 0) return DS_OK;
    const size_t es = elem_size(y->dtype);
    if (es == 4)
        DS_IMG_LAUNCH(unpatchify_kernel, uint32_t, total, stream, (const uint32_t *)y->data, (I)C, (I)H, (I)W, (I)p);
    else
        DS_IMG_LAUNCH(unpatchify_kernel, uint16_t, total, stream, (const uint16_t *)y->data, (I)C, (I)H, (I)W, (I)p);
    return ds_cuda_launched(op, err);
}
