// ops_attention.cu - the CUDA twin of ds_op_attention (PyTorch scaled_dot_product_attention per head):
// out = softmax(q . k^T * scale + mask) . v, tiled with an online softmax (flash-attention style), so no
// Nq x Nk matrix ever exists in global memory. This file's kernel runs on CUDA cores, fp32 everywhere
// inside: the path for f32, masks, head dims above 128 and DS_CUDA_ATTN_EXACT contexts. Eligible bf16/f16
// calls take the tensor-core tile instead (ops_attention_mma.cu, attention_mma.cuh).
//
// (Head dims above 256, up to 512, use 32-query x 16-key tiles instead; see ATT_THREADS below.)
// Work split: one thread block of 256 threads per (b, h, tile of BQ = 64 queries); the grid is flat,
// block = (b * H + h) * q_tiles + tile, so the blocks of one head run side by side and share its K/V in L2.
// Per block, in shared memory (fp32, head dim zero-padded to DP = 16 * DC, DC a template parameter):
//   Qs [BQ, DP+1]  the query tile, pre-multiplied by scale * log2(e) (softmax in base 2: exp2f);
//   Ks [BK, DP+1]  one tile of BK = 32 keys; Vs [BK, DP] the matching values (zero rows past Nk);
//   Ps [BQ, BK+1]  the tile's unnormalised probabilities.
// (The +1 strides keep the column-wise reads of Qs/Ks/Ps free of bank conflicts.)
// Threads are a 16 x 16 grid (tx = tid % 16, ty = tid / 16): thread (tx, ty) owns query rows ty + 16 i
// (i < 4), score columns tx + 16 j (j < 2) of each K tile, and output columns tx + 16 c (c < DC). The 16
// threads that share a row are one half-warp, so row maxima and sums are xor-shuffles within 16 lanes.
// For each K/V tile: S = Qs . Ks^T (registers), + mask (read straight from global, coalesced), columns
// past Nk = -inf; per row m_new = max(m, rowmax S), alpha = 2^(m - m_new), P = 2^(S - m_new) into Ps;
// l = l * alpha + row sum of P (kept per thread, reduced at the end), O = O * alpha + Ps . Vs. At the end
// out = O / l. A row whose scores are all -inf (fully masked) keeps l = 0 and gets a zero output, as
// PyTorch's SDPA and the CPU reference do (the exponent base is 0 instead of -inf, so no inf - inf).
//
// Shared memory: (64 (DP+1) + 32 (DP+1) + 32 DP + 64 * 33) floats: 24.6 KiB at d <= 32, 48.6 KiB at
// d <= 80 (DC 5), 72.6 KiB at d <= 128, 136.6 KiB at d <= 256 (opted in with
// cudaFuncAttributeMaxDynamicSharedMemorySize; fits sm_80's 163 KiB and sm_90's 227 KiB).
#include <math.h>

#include "cuda_util.cuh"

// Tile shape: each thread owns RI query rows and CJ key columns of a tile, so a block covers BQ = 16 RI queries
// and BK = 16 CJ keys. Head dims up to 256 use RI = 4, CJ = 2 (64 x 32 tiles); head dims up to 512 (the
// single 512-wide head of the SD / FLUX VAE mid-block) use RI = 2, CJ = 1 (32 x 16) so the tiles still fit
// sm_80's 163 KiB of shared memory (133 KiB at d = 512).
#define ATT_THREADS 256 // 16 x 16
#define ATT_MAX_D 512

static __host__ __device__ constexpr size_t att_smem_floats(int dc, int ri, int cj) {
    return (size_t)(16 * ri) * (16 * dc + 1) + (size_t)(16 * cj) * (16 * dc + 1) + (size_t)(16 * cj) * (16 * dc) +
           (size_t)(16 * ri) * (16 * cj + 1);
}

// q, out [B, Nq, H, d]; k, v [B, Nk, H, d]; mask [Mb, Mh, Nq, Nk] or NULL (Mb, Mh in {1, B}, {1, H}).
// sc2 = scale * log2(e). Grid: B * H * ceil(Nq / BQ) blocks of ATT_THREADS; dynamic shared memory
// att_smem_floats(DC) floats.
template <typename T, int DC, int RI, int CJ>
__global__ void __launch_bounds__(ATT_THREADS)
    attention_kernel(T *__restrict__ out, const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v,
                     const T *__restrict__ mask, int64_t B, int64_t Nq, int64_t Nk, int64_t H, int d, int64_t Mb,
                     int64_t Mh, int64_t q_tiles, float sc2) {
    constexpr int DP = 16 * DC, QST = DP + 1, ATT_BQ = 16 * RI, ATT_BK = 16 * CJ, PST = ATT_BK + 1;
    constexpr float LOG2E = 1.4426950408889634f;
    extern __shared__ float smem[];
    float *Qs = smem;                 // [BQ, QST]
    float *Ks = Qs + ATT_BQ * QST;    // [BK, QST]
    float *Vs = Ks + ATT_BK * QST;    // [BK, DP]
    float *Ps = Vs + ATT_BK * DP;     // [BQ, PST]

    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int64_t tile = blockIdx.x % q_tiles, bh = blockIdx.x / q_tiles;
    const int64_t b = bh / H, h = bh % H;
    const int64_t q0 = tile * ATT_BQ;
    const int64_t row = H * d;  // element stride between consecutive tokens
    const T *qb = q + (b * Nq + q0) * row + h * d;  // q[b, q0 + r, h, :]
    const T *kb = k + b * Nk * row + h * d;         // k[b, n, h, :]
    const T *vb = v + b * Nk * row + h * d;
    const T *mb = mask ? mask + (((Mb == 1 ? 0 : b) * Mh + (Mh == 1 ? 0 : h)) * Nq + q0) * Nk : NULL;  // [Nq, Nk]

    // Stage the query tile, scaled, zero past Nq and past d.
    for (int e = tid; e < ATT_BQ * DP; e += ATT_THREADS) {
        const int r = e / DP, c = e % DP;
        Qs[r * QST + c] = (q0 + r < Nq && c < d) ? ds_ld(qb, (int64_t)r * row + c) * sc2 : 0.0f;
    }

    float o[RI][DC];
    float m[RI], l[RI];
#pragma unroll
    for (int i = 0; i < RI; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int c = 0; c < DC; c++) o[i][c] = 0.0f;
    }

    for (int64_t k0 = 0; k0 < Nk; k0 += ATT_BK) {
        __syncthreads();  // the previous tile's Ks/Vs/Ps reads are done (and Qs is staged on the first pass)
        for (int e = tid; e < ATT_BK * DP; e += ATT_THREADS) {
            const int r = e / DP, c = e % DP;
            const bool in = k0 + r < Nk && c < d;
            const int64_t gi = (k0 + r) * row + c;
            Ks[r * QST + c] = in ? ds_ld(kb, gi) : 0.0f;
            Vs[r * DP + c] = in ? ds_ld(vb, gi) : 0.0f;
        }
        __syncthreads();

        // S = Qs . Ks^T for rows ty + 16 i, columns tx + 16 j.
        float s[RI][CJ];
#pragma unroll
        for (int i = 0; i < RI; i++)
#pragma unroll
            for (int j = 0; j < CJ; j++) s[i][j] = 0.0f;
#pragma unroll 8
        for (int dd = 0; dd < DP; dd++) {
            float qv[RI], kv[CJ];
#pragma unroll
            for (int i = 0; i < RI; i++) qv[i] = Qs[(ty + 16 * i) * QST + dd];
#pragma unroll
            for (int j = 0; j < CJ; j++) kv[j] = Ks[(tx + 16 * j) * QST + dd];
#pragma unroll
            for (int i = 0; i < RI; i++)
#pragma unroll
                for (int j = 0; j < CJ; j++) s[i][j] = fmaf(qv[i], kv[j], s[i][j]);
        }

        // Mask, out-of-range keys, online softmax update.
#pragma unroll
        for (int i = 0; i < RI; i++) {
            const int r = ty + 16 * i;
            const bool row_in = q0 + r < Nq;
#pragma unroll
            for (int j = 0; j < CJ; j++) {
                const int64_t kc = k0 + tx + 16 * j;
                if (kc >= Nk)
                    s[i][j] = -INFINITY;
                else if (mb && row_in)
                    s[i][j] = fmaf(ds_ld(mb, (int64_t)r * Nk + kc), LOG2E, s[i][j]);
            }
            float mx = s[i][0];
#pragma unroll
            for (int j = 1; j < CJ; j++) mx = fmaxf(mx, s[i][j]);
#pragma unroll
            for (int off = 8; off >= 1; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            const float m_new = fmaxf(m[i], mx);
            const float base = m_new == -INFINITY ? 0.0f : m_new;  // all -inf so far: p = 0, no inf - inf
            const float alpha = exp2f(m[i] - base);
            float psum = 0.0f;
#pragma unroll
            for (int j = 0; j < CJ; j++) {
                const float pj = exp2f(s[i][j] - base);
                psum += pj;
                Ps[r * PST + tx + 16 * j] = pj;
            }
            m[i] = m_new;
            l[i] = l[i] * alpha + psum;
#pragma unroll
            for (int c = 0; c < DC; c++) o[i][c] *= alpha;
        }
        __syncthreads();

        // O += Ps . Vs for rows ty + 16 i, output columns tx + 16 c.
#pragma unroll 8
        for (int kk = 0; kk < ATT_BK; kk++) {
            float pv[RI], vv[DC];
#pragma unroll
            for (int i = 0; i < RI; i++) pv[i] = Ps[(ty + 16 * i) * PST + kk];
#pragma unroll
            for (int c = 0; c < DC; c++) vv[c] = Vs[kk * DP + tx + 16 * c];
#pragma unroll
            for (int i = 0; i < RI; i++)
#pragma unroll
                for (int c = 0; c < DC; c++) o[i][c] = fmaf(pv[i], vv[c], o[i][c]);
        }
    }

    // out = O / l (l summed over the 16 threads of the row); a fully masked row (l = 0) is zero.
    T *ob = out + (b * Nq + q0) * row + h * d;
#pragma unroll
    for (int i = 0; i < RI; i++) {
        float sum = l[i];
#pragma unroll
        for (int off = 8; off >= 1; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
        const int r = ty + 16 * i;
        if (q0 + r >= Nq) continue;
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
        for (int c = 0; c < DC; c++) {
            const int col = tx + 16 * c;
            if (col < d) ds_st(ob, (int64_t)r * row + col, o[i][c] * inv);
        }
    }
}

// Launch one instantiation: opt in to its shared memory, then the flat grid.
template <typename T, int DC, int RI, int CJ>
static ds_status launch_attention(T *out, const T *q, const T *k, const T *v, const T *mask, int64_t B, int64_t Nq,
                                  int64_t Nk, int64_t H, int d, int64_t Mb, int64_t Mh, float sc2,
                                  cudaStream_t stream, const char *op, ds_err *err) {
    const size_t smem = att_smem_floats(DC, RI, CJ) * sizeof(float);
    cudaError_t e = cudaFuncSetAttribute(attention_kernel<T, DC, RI, CJ>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return DS_FAIL(err, DS_ERR_DEVICE, "%s: %zu bytes of shared memory for d = %d: %s", op, smem, d,
                       cudaGetErrorString(e));
    }
    const int64_t q_tiles = (Nq + 16 * RI - 1) / (16 * RI);
    const int64_t blocks = B * H * q_tiles;
    if (blocks > 0x7fffffffLL)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: %lld thread blocks exceed the grid limit", op, (long long)blocks);
    attention_kernel<T, DC, RI, CJ><<<(unsigned)blocks, ATT_THREADS, smem, stream>>>(out, q, k, v, mask, B, Nq, Nk, H,
                                                                                     d, Mb, Mh, q_tiles, sc2);
    return ds_cuda_launched(op, err);
}

// The smallest instantiation whose padded head dim DP = 16 * DC holds d.
template <typename T>
static ds_status dispatch_d(T *out, const T *q, const T *k, const T *v, const T *mask, int64_t B, int64_t Nq,
                            int64_t Nk, int64_t H, int d, int64_t Mb, int64_t Mh, float sc2, cudaStream_t stream,
                            const char *op, ds_err *err) {
#define DS_ATT_CASE(DC_, RI_, CJ_)                                                                              \
    if (d <= 16 * (DC_))                                                                                        \
        return launch_attention<T, DC_, RI_, CJ_>(out, q, k, v, mask, B, Nq, Nk, H, d, Mb, Mh, sc2, stream, op, err);
    DS_ATT_CASE(2, 4, 2)   // d <= 32 (demo d = 24)
    DS_ATT_CASE(4, 4, 2)   // d <= 64
    DS_ATT_CASE(5, 4, 2)   // d <= 80 (DiT d = 72)
    DS_ATT_CASE(8, 4, 2)   // d <= 128 (FLUX)
    DS_ATT_CASE(12, 4, 2)  // d <= 192
    DS_ATT_CASE(16, 4, 2)  // d <= 256
    DS_ATT_CASE(24, 2, 1)  // d <= 384
    DS_ATT_CASE(32, 2, 1)  // d <= 512 (VAE mid-block: one 512-wide head)
#undef DS_ATT_CASE
    return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: head dim %d > %d", op, d, ATT_MAX_D);
}

extern "C" ds_status ds_cuda_op_attention(ds_tensor *out, const ds_tensor *q, const ds_tensor *k, const ds_tensor *v,
                                          const ds_tensor *mask, float scale, ds_err *err) {
    static const char op[] = "attention";
    DS_TRY(ds_cuda_check(q, 4, -1, op, "q", err));
    const int dt = (int)q->dtype;
    DS_TRY(ds_cuda_check(k, 4, dt, op, "k", err));
    DS_TRY(ds_cuda_check(v, 4, dt, op, "v", err));
    DS_TRY(ds_cuda_check(out, 4, dt, op, "out", err));
    DS_TRY(ds_cuda_check_same_shape(out, q, op, "out", "q", err));
    DS_TRY(ds_cuda_check_same_shape(v, k, op, "v", "k", err));
    const int64_t B = q->shape[0], Nq = q->shape[1], H = q->shape[2], d = q->shape[3];  // q [B, Nq, H, d]
    const int64_t Nk = k->shape[1];                                                      // k, v [B, Nk, H, d]
    char b1[96], b2[96];
    if (k->shape[0] != B || k->shape[2] != H || k->shape[3] != d)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: k %s does not match q %s in B, H or d", op,
                       ds_tensor_shape_str(k, b1, sizeof b1), ds_tensor_shape_str(q, b2, sizeof b2));
    int64_t Mb = 1, Mh = 1;
    if (mask) {  // mask [Mb, Mh, Nq, Nk]
        DS_TRY(ds_cuda_check(mask, 4, dt, op, "mask", err));
        Mb = mask->shape[0];
        Mh = mask->shape[1];
        if ((Mb != 1 && Mb != B) || (Mh != 1 && Mh != H) || mask->shape[2] != Nq || mask->shape[3] != Nk)
            return DS_FAIL(err, DS_ERR_INVALID_ARG,
                           "%s: mask %s must be [1 or %lld, 1 or %lld, %lld, %lld] (Nq = %lld, Nk = %lld)", op,
                           ds_tensor_shape_str(mask, b1, sizeof b1), (long long)B, (long long)H, (long long)Nq,
                           (long long)Nk, (long long)Nq, (long long)Nk);
    }
    if (isnan(scale)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: scale is NaN", op);
    if (ds_cuda_overlap(out, q) || ds_cuda_overlap(out, k) || ds_cuda_overlap(out, v) ||
        (mask && ds_cuda_overlap(out, mask)))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out must not alias q, k, v or mask", op);
    if (d > ATT_MAX_D)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: head dim %lld > %d is not supported on CUDA", op, (long long)d,
                       ATT_MAX_D);
    DS_CUDA_STREAM(stream);
    if (B == 0 || Nq == 0 || H == 0 || d == 0) return DS_OK;
    if (Nk == 0) {  // empty key set: the weighted sum over no values is zero (all-zero bits in every dtype)
        cudaError_t e = cudaMemsetAsync(out->data, 0, (size_t)ds_tensor_nbytes(out), stream);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return DS_FAIL(err, DS_ERR_DEVICE, "%s: cudaMemsetAsync: %s", op, cudaGetErrorString(e));
        }
        return DS_OK;
    }
    const float sc = scale > 0.0f ? scale : (float)(1.0 / sqrt((double)d));
    const float sc2 = sc * 1.4426950408889634f;  // softmax in base 2
    if (ds_cuda_ctx_attention(stream_ctx_) == DS_CUDA_ATTN_FAST && ds_cuda_attention_mma_eligible(out, q, k, v, mask))
        return ds_cuda_attention_mma(out, q, k, v, sc2, stream, op, err);
    ds_status st = DS_OK;
    DS_CUDA_DTYPE_SWITCH(q->dtype, T,
        st = dispatch_d<T>((T *)out->data, (const T *)q->data, (const T *)k->data, (const T *)v->data,
                           mask ? (const T *)mask->data : (const T *)NULL, B, Nq, Nk, H, (int)d, Mb, Mh, sc2,
                           stream, op, err));
    return st;
}
