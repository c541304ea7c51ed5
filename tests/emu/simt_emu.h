// simt_emu.h - a host emulator of one CUDA thread block, for kernels written against the warp primitives of
// kernels/cuda/attention_mma.cuh (ldmatrix, mma.sync m16n8k16, xor shuffles, __syncthreads). Each CUDA
// thread is a ucontext fiber with its own stack; a fiber runs until it reaches a collective, parks its
// operands and yields. When all 32 lanes of a warp wait on the same warp collective, the emulator executes
// it from the PTX ISA's fragment layouts (written here independently of the kernel) and resumes them; a
// __syncthreads releases when every thread of the block waits on it. Lanes of one warp waiting on different
// collectives, or a barrier some threads never reach, is reported as divergence (the kernels must be
// warp-uniform). Deterministic: fibers run in thread order, one at a time.
//
// Arithmetic: bf16/f16 values widen exactly to fp32; an mma sums the 16 exact products in double and adds
// them to the fp32 accumulator with one rounding (the hardware keeps fp32 accumulators; its internal order
// differs, which the tolerances of the tests cover). pack2 rounds to nearest even as the device does.
// Used only by tests/emu/*.cc (C++17, host only).
#ifndef DS_SIMT_EMU_H
#define DS_SIMT_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <vector>
#include <random>

#include "dtype.h"

namespace simt {

enum Op { OP_RUN, OP_SYNC, OP_LDSM, OP_LDSM_T, OP_MMA_BF16, OP_MMA_F16, OP_SHFL, OP_DONE };

// When a cp.async copy lands in shared memory: at the latest legal moment (the thread's wait that covers it),
// at once (issue), or either, drawn per copy. Real hardware may do any of these; bugs show under some.
enum Landing { LAND_AT_WAIT, LAND_AT_ISSUE, LAND_RANDOM };

struct Copy {
    uint16_t *dst;
    const uint16_t *src;
    int group;  // commit group it belongs to (the lane's open group when issued)
};

struct Lane {
    ucontext_t ctx;
    Op op;
    std::vector<Copy> pending;  // issued cp.async copies that have not landed
    int group = 0;              // the open (uncommitted) group's number
    const uint16_t *p;  // ldmatrix row address
    uint32_t a[4], b0, b1;
    float c[4];         // mma accumulator in/out
    float fv;           // shuffle in
    int mask;
    uint32_t r[4];      // ldmatrix out
    float fr;           // shuffle out
};

struct Block {
    // Scheduling: with skew == 0 every warp whose 32 lanes wait on a collective executes it each round
    // (lockstep); otherwise a pseudo-random non-empty subset does, so warps drift apart as on hardware and a
    // missing barrier shows. landing: see Landing. rng: seeded by the test.
    int skew = 0;
    Landing landing = LAND_AT_WAIT;
    std::mt19937_64 rng{1};
    int nthreads = 0;
    std::vector<Lane> lanes;
    std::vector<char> stacks;
    ucontext_t sched;
    std::function<void(int)> body;
    bool failed = false;
    char msg[256] = {0};
    uint64_t collectives = 0;
};

static const size_t kStack = 256 * 1024;
static thread_local Block *g_blk = nullptr;
static thread_local int g_cur = -1;

inline void park(Op op) {
    Lane &l = g_blk->lanes[g_cur];
    l.op = op;
    swapcontext(&l.ctx, &g_blk->sched);
}

static void lane_entry(int tid) {
    g_blk->body(tid);
    g_blk->lanes[tid].op = OP_DONE;  // uc_link returns to the scheduler
}

inline float f16w(bool bf16, uint16_t h) { return bf16 ? ds_bf16_to_f32(h) : ds_f16_to_f32(h); }

// Execute the warp collective all 32 lanes of warp w wait on.
inline void exec_warp(Block &b, int w, Op op) {
    Lane *L = &b.lanes[32 * w];
    b.collectives++;
    switch (op) {
    case OP_LDSM:
    case OP_LDSM_T:
        for (int l = 0; l < 32; l++)
            for (int i = 0; i < 4; i++) {
                uint16_t lo, hi;
                if (op == OP_LDSM) {  // row l / 4, columns 2 (l % 4), +1 of matrix i
                    const uint16_t *row = L[8 * i + l / 4].p;
                    lo = row[2 * (l % 4)];
                    hi = row[2 * (l % 4) + 1];
                } else {  // rows 2 (l % 4), +1 of column l / 4 of matrix i
                    lo = L[8 * i + 2 * (l % 4)].p[l / 4];
                    hi = L[8 * i + 2 * (l % 4) + 1].p[l / 4];
                }
                L[l].r[i] = (uint32_t)lo | ((uint32_t)hi << 16);
            }
        break;
    case OP_MMA_BF16:
    case OP_MMA_F16: {
        const bool bf = op == OP_MMA_BF16;
        float A[16][16], B[16][8], C[16][8];
        for (int l = 0; l < 32; l++) {
            const int g = l / 4, t = l % 4;
            const int ar[4] = {g, g + 8, g, g + 8}, ac[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
            for (int i = 0; i < 4; i++) {
                A[ar[i]][ac[i]] = f16w(bf, (uint16_t)(L[l].a[i] & 0xffffu));
                A[ar[i]][ac[i] + 1] = f16w(bf, (uint16_t)(L[l].a[i] >> 16));
            }
            B[2 * t][g] = f16w(bf, (uint16_t)(L[l].b0 & 0xffffu));
            B[2 * t + 1][g] = f16w(bf, (uint16_t)(L[l].b0 >> 16));
            B[2 * t + 8][g] = f16w(bf, (uint16_t)(L[l].b1 & 0xffffu));
            B[2 * t + 9][g] = f16w(bf, (uint16_t)(L[l].b1 >> 16));
            C[g][2 * t] = L[l].c[0];
            C[g][2 * t + 1] = L[l].c[1];
            C[g + 8][2 * t] = L[l].c[2];
            C[g + 8][2 * t + 1] = L[l].c[3];
        }
        float D[16][8];
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++) {
                double acc = 0.0;
                for (int k = 0; k < 16; k++) acc += (double)A[m][k] * (double)B[k][n];
                D[m][n] = (float)((double)C[m][n] + acc);
            }
        for (int l = 0; l < 32; l++) {
            const int g = l / 4, t = l % 4;
            L[l].c[0] = D[g][2 * t];
            L[l].c[1] = D[g][2 * t + 1];
            L[l].c[2] = D[g + 8][2 * t];
            L[l].c[3] = D[g + 8][2 * t + 1];
        }
    } break;
    case OP_SHFL:
        for (int l = 0; l < 32; l++) L[l].fr = L[l ^ L[l].mask].fv;
        break;
    default:
        break;
    }
    for (int l = 0; l < 32; l++) L[l].op = OP_RUN;
}

// Run `body(tid)` for tid = 0 .. nthreads - 1 (a multiple of 32) as one block. Returns false (with b.msg)
// on divergence or deadlock.
inline bool run_block(Block &b, int nthreads, std::function<void(int)> body) {
    b.nthreads = nthreads;
    b.lanes.assign(nthreads, Lane());  // (pending copies of a previous block are dropped with their lanes)
    if (b.stacks.size() < (size_t)nthreads * kStack) b.stacks.resize((size_t)nthreads * kStack);
    b.body = body;
    g_blk = &b;
    for (int i = 0; i < nthreads; i++) {
        Lane &l = b.lanes[i];
        getcontext(&l.ctx);
        l.ctx.uc_stack.ss_sp = &b.stacks[(size_t)i * kStack];
        l.ctx.uc_stack.ss_size = kStack;
        l.ctx.uc_link = &b.sched;
        makecontext(&l.ctx, (void (*)())lane_entry, 1, i);
        l.op = OP_RUN;
    }
    for (;;) {
        for (int i = 0; i < nthreads; i++)
            if (b.lanes[i].op == OP_RUN) {
                g_cur = i;
                swapcontext(&b.sched, &b.lanes[i].ctx);
            }
        int done = 0, sync = 0;
        for (int i = 0; i < nthreads; i++) {
            done += b.lanes[i].op == OP_DONE;
            sync += b.lanes[i].op == OP_SYNC;
        }
        if (done == nthreads) return true;
        bool released = false;
        const int nw = nthreads / 32;
        const uint64_t pick = b.skew ? (b.rng() | (1ull << (b.rng() % (uint64_t)nw))) : ~0ull;  // non-empty when skewed
        bool skipped = false;
        for (int w = 0; w < nw; w++) {
            const Op op = b.lanes[32 * w].op;
            if (op == OP_DONE || op == OP_SYNC) continue;
            for (int l = 1; l < 32; l++)
                if (b.lanes[32 * w + l].op != op) {
                    snprintf(b.msg, sizeof b.msg, "warp %d diverged: lane 0 waits on op %d, lane %d on op %d", w,
                             (int)op, l, (int)b.lanes[32 * w + l].op);
                    b.failed = true;
                    return false;
                }
            if (!((pick >> w) & 1)) {  // skewed: this warp waits a round
                skipped = true;
                continue;
            }
            exec_warp(b, w, op);
            released = true;
        }
        if (released || skipped) continue;
        if (sync == nthreads) {
            for (int i = 0; i < nthreads; i++) b.lanes[i].op = OP_RUN;
            continue;
        }
        snprintf(b.msg, sizeof b.msg, "deadlock: %d threads done, %d at __syncthreads of %d", done, sync, nthreads);
        b.failed = true;
        return false;
    }
}

}  // namespace simt

// ---- the primitives attention_mma.cuh is written against, host versions ----------------------------------

#define DS_MMA_FN inline

struct ds_u4 {
    uint32_t x, y, z, w;
};

inline ds_u4 ds_ld16(const uint16_t *p) {
    ds_u4 v;
    memcpy(&v, p, 16);
    return v;
}
inline void ds_st16(uint16_t *p, ds_u4 v) { memcpy(p, &v, 16); }
inline void ds_st32(uint16_t *p, uint32_t v) { memcpy(p, &v, 4); }
inline void ds_sync() { simt::park(simt::OP_SYNC); }

inline void ds_cp_async16(uint16_t *smem, const uint16_t *gmem) {
    simt::Block &b = *simt::g_blk;
    simt::Lane &l = b.lanes[simt::g_cur];
    const bool now = b.landing == simt::LAND_AT_ISSUE || (b.landing == simt::LAND_RANDOM && (b.rng() & 1));
    if (now)
        memcpy(smem, gmem, 16);
    else
        l.pending.push_back({smem, gmem, l.group});
}
inline void ds_cp_async_commit() { simt::g_blk->lanes[simt::g_cur].group++; }
// Land every copy of a committed group older than the N most recent ones (the PTX wait_group rule).
template <int N>
inline void ds_cp_async_wait() {
    simt::Lane &l = simt::g_blk->lanes[simt::g_cur];
    std::vector<simt::Copy> keep;
    for (const simt::Copy &c : l.pending) {
        if (c.group < l.group - N)
            memcpy(c.dst, c.src, 16);
        else
            keep.push_back(c);
    }
    l.pending.swap(keep);
}
inline float ds_exp2(float x) { return exp2f(x); }

inline float ds_shfl_xor(float v, int m) {
    simt::Lane &l = simt::g_blk->lanes[simt::g_cur];
    l.fv = v;
    l.mask = m;
    simt::park(simt::OP_SHFL);
    return simt::g_blk->lanes[simt::g_cur].fr;
}

inline void ds_ldsm_x4(uint32_t r[4], const uint16_t *p) {
    simt::g_blk->lanes[simt::g_cur].p = p;
    simt::park(simt::OP_LDSM);
    memcpy(r, simt::g_blk->lanes[simt::g_cur].r, 16);
}

inline void ds_ldsm_x4_t(uint32_t r[4], const uint16_t *p) {
    simt::g_blk->lanes[simt::g_cur].p = p;
    simt::park(simt::OP_LDSM_T);
    memcpy(r, simt::g_blk->lanes[simt::g_cur].r, 16);
}

template <bool BF16>
inline void ds_mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    simt::Lane &l = simt::g_blk->lanes[simt::g_cur];
    memcpy(l.a, a, 16);
    l.b0 = b0;
    l.b1 = b1;
    memcpy(l.c, c, 16);
    simt::park(BF16 ? simt::OP_MMA_BF16 : simt::OP_MMA_F16);
    memcpy(c, simt::g_blk->lanes[simt::g_cur].c, 16);
}

template <bool BF16>
inline uint32_t ds_pack2(float lo, float hi) {
    const uint16_t a = BF16 ? ds_f32_to_bf16(lo) : ds_f32_to_f16(lo);
    const uint16_t b = BF16 ? ds_f32_to_bf16(hi) : ds_f32_to_f16(hi);
    return (uint32_t)a | ((uint32_t)b << 16);
}

#endif  // DS_SIMT_EMU_H
