// attention_mma.cuh - the tensor-core attention tile (flash-attention 2 style) for bf16/f16, written once
// against a handful of warp primitives so that the same source runs on the GPU (mma_prims.cuh: inline PTX
// mma.sync / ldmatrix) and under the host SIMT emulator of the tests (tests/emu/simt_emu.h), which checks
// the indexing, the fragment layouts and the online softmax on a machine without a GPU.
//
// Semantics: out = softmax(q . k^T * scale) . v per (batch, head), no mask (a masked call takes the fp32
// kernel in ops_attention.cu). q, out [B, Nq, H, d]; k, v [B, Nk, H, d]; d a multiple of 8, d <= DP.
// Precision: q . k^T on tensor cores with fp32 accumulation, scale and softmax in fp32 (base 2), the
// probabilities P rounded to the input type for P . v (fp32 accumulation), the row sums l in fp32 from the
// unrounded P, out = O / l rounded once. The rounding of P is the one difference from the fp32-inside
// kernel: it moves each output by at most u * max|v| (u = 2^-8 bf16, 2^-11 f16); see gpu_tolerances.h
// (class ATTN_TC).
//
// Work split: one block of 4 warps per (b, h, tile of 64 queries), flat grid block = (b H + h) q_tiles +
// tile. Warp w owns query rows 16 w .. 16 w + 15 of the tile for the whole key loop, so row maxima and sums
// never leave the warp: the four lanes t = lane % 4 of a group g = lane / 4 hold rows g and g + 8.
// Shared memory, 16-bit elements, rows padded to ST = DP + 8 (ldmatrix rows hit distinct banks), two stages
// of [Ks [64, ST]; Vs [64, ST]] (one tile of 64 keys/values, zero past Nk and past d). K/V tile t + 1 is
// copied with cp.async into the other stage while tile t is computed (double buffering): barrier after the
// copies of tile t landed, barrier after tile t's reads, so a stage is never written while read. The query
// tile (zero past Nq and past d) is staged once in stage 1 and read into A fragments qf[DP/16][4] before tile
// 1 is copied there.
// Per key tile: S [16 x 64] per warp = qf . Ks^T in C fragments s[8][4] (mma m16n8k16), scaled, keys past
// Nk = -inf, online softmax update, P packed straight from the C fragments into A fragments (the C layout
// of two n-tiles is the A layout of one k-step), O [16 x DP] += P . Vs with Vs read by ldmatrix.trans.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 .bf16/.f16, g = lane / 4, t = lane % 4), which the emulator
// implements independently:
//   A 16x16 row: a[0] = (r g, c 2t..2t+1), a[1] = (g + 8, 2t), a[2] = (g, 2t + 8), a[3] = (g + 8, 2t + 8)
//   B 16x8 col:  b[0] = (k 2t..2t+1, n g), b[1] = (k 2t + 8..2t + 9, n g)
//   C 16x8 f32:  c[0..1] = (r g, c 2t..2t+1), c[2..3] = (r g + 8, c 2t..2t+1)
//   ldmatrix .x4: lane l gives the address of row l % 8 of matrix l / 8; register i of lane l receives
//   row l / 4, columns 2 (l % 4) .. + 1 of matrix i (.trans: rows 2 (l % 4) .. + 1 of column l / 4).
//
// The includer defines, before this file: DS_MMA_FN (function qualifier), ds_u4 (16 bytes), and
//   ds_u4 ds_ld16(const uint16_t *p)             16-byte load from global memory (p 16-byte aligned)
//   void ds_st16(uint16_t *p, ds_u4 v)           16-byte store to shared memory
//   void ds_st32(uint16_t *p, uint32_t v)        4-byte store of two elements to global memory
//   void ds_cp_async16(uint16_t *smem, const uint16_t *gmem)   16-byte asynchronous copy (cp.async.cg)
//   void ds_cp_async_commit(), ds_cp_async_wait<N>()          close a copy group / wait for all but N
//   void ds_sync()                               __syncthreads
//   void ds_ldsm_x4(uint32_t r[4], const uint16_t *p), ds_ldsm_x4_t(...)   ldmatrix (.trans)
//   void ds_mma16816<BF16>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)   c += a . b
//   float ds_shfl_xor(float v, int lane_mask)
//   uint32_t ds_pack2<BF16>(float lo, float hi)  two round-to-nearest-even conversions, lo in bits 0..15
//   float ds_exp2(float)
#ifndef DS_ATTENTION_MMA_CUH
#define DS_ATTENTION_MMA_CUH

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define ATT_MMA_BQ 64      // queries per block (4 warps x 16 rows)
#define ATT_MMA_BK 64      // keys per tile
#define ATT_MMA_THREADS 128
#define ATT_MMA_MAX_D 128  // head dims up to this take the tensor-core path (d % 8 == 0)

// One call's geometry. Pointers are 16-bit elements (bf16 or f16 bits), 16-byte aligned.
struct ds_attn_mma_args {
    uint16_t *out;        // [B, Nq, H, d]
    const uint16_t *q;    // [B, Nq, H, d]
    const uint16_t *k;    // [B, Nk, H, d]
    const uint16_t *v;    // [B, Nk, H, d]
    int64_t Nq, Nk, H, q_tiles;  // q_tiles = ceil(Nq / ATT_MMA_BQ)
    int d;                // head dim, multiple of 8, <= DP
    float sc2;            // scale * log2(e)
};

// Dynamic shared memory of one block for padded head dim DP: two stages of K and V tiles of [64, DP + 8]
// 16-bit elements (69 632 bytes at DP = 128; the query tile is staged inside stage 1).
static inline constexpr size_t ds_attn_mma_smem_bytes(int dp) {
    return (size_t)(4 * ATT_MMA_BK) * (size_t)(dp + 8) * 2u;
}

// Copy K/V tile rows k0 .. k0 + 63 into one stage (Ks = stage, Vs = stage + 64 ST): cp.async for the 16-byte
// chunks of rows below Nk and columns below d, zeros stored directly elsewhere. All threads take part.
template <int DP>
DS_MMA_FN void ds_attn_mma_load_kv(const ds_attn_mma_args &a, const uint16_t *kb, const uint16_t *vb, int64_t k0,
                                   int tid, uint16_t *stage) {
    constexpr int ST = DP + 8, CH = DP / 8;
    const int64_t row = a.H * a.d;
    const ds_u4 zero = {0u, 0u, 0u, 0u};
    for (int e = tid; e < ATT_MMA_BK * CH; e += ATT_MMA_THREADS) {
        const int r = e / CH, c = e % CH;
        uint16_t *ks = stage + r * ST + c * 8, *vs = stage + (ATT_MMA_BK + r) * ST + c * 8;
        if (k0 + r < a.Nk && c < a.d / 8) {
            const int64_t gi = (k0 + r) * row + c * 8;
            ds_cp_async16(ks, kb + gi);
            ds_cp_async16(vs, vb + gi);
        } else {
            ds_st16(ks, zero);
            ds_st16(vs, zero);
        }
    }
}

// The whole work of thread `tid` (0..127) of block `block` (see the grid above). smem: the block's
// ds_attn_mma_smem_bytes(DP) bytes, 16-byte aligned. DP: padded head dim, a multiple of 16, >= d.
template <bool BF16, int DP>
DS_MMA_FN void ds_attention_mma_tile(const ds_attn_mma_args &a, int64_t block, int tid, uint16_t *smem) {
    constexpr int ST = DP + 8;             // shared row stride, elements
    constexpr int KT = DP / 16;            // k-steps of q . k^T; also 16-wide column pairs of O
    constexpr int NT = ATT_MMA_BK / 8;     // 8-key n-tiles of S per warp
    constexpr int OT = DP / 8;             // 8-wide n-tiles of O
    constexpr int CH = DP / 8;             // 16-byte chunks per padded row
    static_assert(DP % 16 == 0 && DP <= 256, "DP: a multiple of 16");
    constexpr int STAGE = 2 * ATT_MMA_BK * ST;  // elements per stage [Ks 64 rows; Vs 64 rows] x ST (stage s at s STAGE)
    uint16_t *Qs = smem + STAGE;                // [64, ST] in stage 1 until the fragments are read

    const int warp = tid / 32, lane = tid % 32, t = lane % 4;
    const int64_t tile = block % a.q_tiles, bh = block / a.q_tiles;
    const int64_t b = bh / a.H, h = bh % a.H;
    const int64_t q0 = tile * ATT_MMA_BQ;
    const int64_t row = a.H * a.d;                         // elements between consecutive tokens
    const uint16_t *qb = a.q + b * a.Nq * row + h * a.d;   // q[b, 0, h, :]
    const uint16_t *kb = a.k + b * a.Nk * row + h * a.d;   // k[b, 0, h, :]
    const uint16_t *vb = a.v + b * a.Nk * row + h * a.d;
    const int chunks = a.d / 8;                            // 16-byte chunks inside the head dim
    const ds_u4 zero = {0u, 0u, 0u, 0u};

    // K/V tile 0 in flight into stage 0 while the query tile is staged (in stage 1) and read into registers as A
    // fragments for the whole key loop.
    ds_attn_mma_load_kv<DP>(a, kb, vb, 0, tid, smem);
    ds_cp_async_commit();
    for (int e = tid; e < ATT_MMA_BQ * CH; e += ATT_MMA_THREADS) {
        const int r = e / CH, c = e % CH;
        const bool in = q0 + r < a.Nq && c < chunks;
        ds_st16(Qs + r * ST + c * 8, in ? ds_ld16(qb + (q0 + r) * row + c * 8) : zero);
    }
    ds_sync();
    uint32_t qf[KT][4];
#pragma unroll
    for (int kk = 0; kk < KT; kk++) ds_ldsm_x4(qf[kk], Qs + (warp * 16 + lane % 16) * ST + kk * 16 + (lane / 16) * 8);

    float o[OT][4];  // O rows g (o[.][0..1]) and g + 8 (o[.][2..3]), columns 8 j + 2t .. + 1
#pragma unroll
    for (int j = 0; j < OT; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;  // rows g and g + 8 (l: this lane's part)

    const int64_t n_tiles = (a.Nk + ATT_MMA_BK - 1) / ATT_MMA_BK;
    for (int64_t kt = 0; kt < n_tiles; kt++) {
        const int64_t k0 = kt * ATT_MMA_BK;
        const uint16_t *Ks = smem + (kt & 1) * STAGE, *Vs = Ks + ATT_MMA_BK * ST;
        if (kt + 1 < n_tiles) {
            if (kt == 0) ds_sync();  // every warp holds its query fragments: stage 1 is free for tile 1
            ds_attn_mma_load_kv<DP>(a, kb, vb, k0 + ATT_MMA_BK, tid, smem + ((kt + 1) & 1) * STAGE);
            ds_cp_async_commit();
            ds_cp_async_wait<1>();  // this thread's copies of tile t have landed (tile t + 1 may be in flight)
        } else {
            ds_cp_async_wait<0>();
        }
        ds_sync();  // everyone's copies of tile t are visible

        // S = Q . K^T: n-tiles 2 jn and 2 jn + 1 from one ldmatrix.x4 (keys 16 jn .. + 15, dims 16 kk .. + 15).
        float s[NT][4];
#pragma unroll
        for (int j = 0; j < NT; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
#pragma unroll
            for (int jn = 0; jn < NT / 2; jn++) {
                uint32_t bk[4];
                ds_ldsm_x4(bk, Ks + (jn * 16 + (lane / 16) * 8 + lane % 8) * ST + kk * 16 + ((lane / 8) % 2) * 8);
                ds_mma16816<BF16>(s[2 * jn], qf[kk], bk[0], bk[1]);
                ds_mma16816<BF16>(s[2 * jn + 1], qf[kk], bk[2], bk[3]);
            }
        }

        // Scale (base 2), keys past Nk -> -inf, online softmax over the tile.
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int j = 0; j < NT; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int64_t key = k0 + 8 * j + 2 * t + (e & 1);
                const float x = key < a.Nk ? s[j][e] * a.sc2 : -INFINITY;
                s[j][e] = x;
                if (e < 2)
                    mx0 = fmaxf(mx0, x);
                else
                    mx1 = fmaxf(mx1, x);
            }
        }
        mx0 = fmaxf(mx0, ds_shfl_xor(mx0, 1));
        mx0 = fmaxf(mx0, ds_shfl_xor(mx0, 2));
        mx1 = fmaxf(mx1, ds_shfl_xor(mx1, 1));
        mx1 = fmaxf(mx1, ds_shfl_xor(mx1, 2));
        const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
        const float base0 = n0 == -INFINITY ? 0.0f : n0, base1 = n1 == -INFINITY ? 0.0f : n1;  // no inf - inf
        const float al0 = ds_exp2(m0 - base0), al1 = ds_exp2(m1 - base1);
        float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
        for (int j = 0; j < NT; j++) {
            s[j][0] = ds_exp2(s[j][0] - base0);
            s[j][1] = ds_exp2(s[j][1] - base0);
            s[j][2] = ds_exp2(s[j][2] - base1);
            s[j][3] = ds_exp2(s[j][3] - base1);
            ps0 += s[j][0] + s[j][1];
            ps1 += s[j][2] + s[j][3];
        }
        m0 = n0;
        m1 = n1;
        l0 = l0 * al0 + ps0;
        l1 = l1 * al1 + ps1;
#pragma unroll
        for (int j = 0; j < OT; j++) {
            o[j][0] *= al0;
            o[j][1] *= al0;
            o[j][2] *= al1;
            o[j][3] *= al1;
        }

        // O += P . V: the C fragments of n-tiles 2 kk, 2 kk + 1 are the A fragment of k-step kk (keys 16 kk ..).
#pragma unroll
        for (int kk = 0; kk < ATT_MMA_BK / 16; kk++) {
            uint32_t pa[4];
            pa[0] = ds_pack2<BF16>(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = ds_pack2<BF16>(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = ds_pack2<BF16>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = ds_pack2<BF16>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int jd = 0; jd < KT; jd++) {
                uint32_t bv[4];
                ds_ldsm_x4_t(bv, Vs + (kk * 16 + ((lane / 8) % 2) * 8 + lane % 8) * ST + jd * 16 + (lane / 16) * 8);
                ds_mma16816<BF16>(o[2 * jd], pa, bv[0], bv[1]);
                ds_mma16816<BF16>(o[2 * jd + 1], pa, bv[2], bv[3]);
            }
        }
        ds_sync();  // every warp is done reading stage kt & 1 before tile kt + 2 is copied into it
    }

    // out = O / l, l summed over the four lanes of the row.
    l0 += ds_shfl_xor(l0, 1);
    l0 += ds_shfl_xor(l0, 2);
    l1 += ds_shfl_xor(l1, 1);
    l1 += ds_shfl_xor(l1, 2);
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
    const int64_t r0 = q0 + warp * 16 + lane / 4, r1 = r0 + 8;
    uint16_t *ob = a.out + b * a.Nq * row + h * a.d;
#pragma unroll
    for (int j = 0; j < OT; j++) {
        const int col = 8 * j + 2 * t;  // even, and d % 8 == 0: col < d implies col + 1 < d
        if (col >= a.d) continue;
        if (r0 < a.Nq) ds_st32(ob + r0 * row + col, ds_pack2<BF16>(o[j][0] * inv0, o[j][1] * inv0));
        if (r1 < a.Nq) ds_st32(ob + r1 * row + col, ds_pack2<BF16>(o[j][2] * inv1, o[j][3] * inv1));
    }
}

#endif  // DS_ATTENTION_MMA_CUH
