// emu_attention_mma.cc - runs the tensor-core attention tile (kernels/cuda/attention_mma.cuh, the source
// the GPU compiles) under the host SIMT emulator (simt_emu.h) and compares it with the CPU reference
// ds_op_attention, on a machine without a GPU. What it proves: the tile's indexing, tails (Nq, Nk not
// multiples of 64, d padded to DP), fragment layouts as the PTX ISA defines them, the online softmax across
// key tiles and the packing of P; what it cannot prove: that the GPU executes the PTX as specified (the
// GPU twin test gpu_ops_attention does that on a device).
//
// Every case runs under three schedules of the emulator (lockstep warps with copies landing as late as legal;
// drifting warps with copies landing at once; drifting warps with copies landing at random), so a missing
// barrier or wait of the double-buffered K/V pipeline shows.
// Inputs as the GPU twin tests: uniform q, k in [-qk, qk], v in [-1, 1], rounded to the case's type
// first, so both sides see identical values. Tolerance class ATTN_TC (tests/gpu/gpu_tolerances.h):
// the reference keeps P in fp32, the tile rounds P to the input type before P . v.
// Exit 0 when every case passes, 1 otherwise; one line per case.
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "simt_emu.h"
// simt_emu.h defines the primitives the tile is written against.
#include "attention_mma.cuh"
#include "gpu_tolerances.h"
#include "ops.h"

namespace {

struct Case {
    bool bf16;
    int64_t B, Nq, Nk, H;
    int d;
    float scale;  // <= 0: 1 / sqrt(d)
    float qk;     // q, k uniform in [-qk, qk]
};

uint64_t g_state = 0x9E3779B97F4A7C15ull;
float urand(float lo, float hi) {  // xorshift64*, deterministic
    g_state ^= g_state >> 12;
    g_state ^= g_state << 25;
    g_state ^= g_state >> 27;
    const uint64_t x = g_state * 2685821657736338717ull;
    return lo + (hi - lo) * (float)((double)(x >> 11) / 9007199254740992.0);
}

// Fill n values, rounded to the case's type: bits for the tile, floats for the reference.
void fill(std::vector<uint16_t> &bits, std::vector<float> &vals, size_t n, float lo, float hi, bool bf16) {
    bits.resize(n);
    vals.resize(n);
    for (size_t i = 0; i < n; i++) {
        const float x = urand(lo, hi);
        bits[i] = bf16 ? ds_f32_to_bf16(x) : ds_f32_to_f16(x);
        vals[i] = bf16 ? ds_bf16_to_f32(bits[i]) : ds_f16_to_f32(bits[i]);
    }
}

// How the emulator schedules warps and lands cp.async copies (simt_emu.h); every case runs under each.
struct Schedule {
    const char *name;
    int skew;
    simt::Landing landing;
};
const Schedule kSchedules[] = {
    {"lockstep/land-at-wait", 0, simt::LAND_AT_WAIT},
    {"skewed/land-at-issue", 1, simt::LAND_AT_ISSUE},
    {"skewed/land-random", 1, simt::LAND_RANDOM},
};

template <int DP>
bool run_tile(const Case &c, const Schedule &sc, const ds_attn_mma_args &a, char *why, size_t why_len) {
    static simt::Block blk;
    alignas(16) static uint16_t smem[ds_attn_mma_smem_bytes(128) / 2];
    blk.skew = sc.skew;
    blk.landing = sc.landing;
    blk.rng.seed(0x5EED0000u + (unsigned)c.Nq * 131u + (unsigned)c.Nk);
    const int64_t blocks = c.B * c.H * a.q_tiles;
    for (int64_t bi = 0; bi < blocks; bi++) {
        for (size_t i = 0; i < sizeof smem / 2; i++) smem[i] = 0x7fc0;  // NaN bits: stale shared memory
        const bool ok = simt::run_block(blk, ATT_MMA_THREADS, [&](int tid) {
            if (c.bf16)
                ds_attention_mma_tile<true, DP>(a, bi, tid, smem);
            else
                ds_attention_mma_tile<false, DP>(a, bi, tid, smem);
        });
        if (!ok) {
            snprintf(why, why_len, "block %lld: %s", (long long)bi, blk.msg);
            return false;
        }
    }
    return true;
}

bool run_case(const Case &c, const Schedule &sc) {
    const size_t nq = (size_t)(c.B * c.Nq * c.H * c.d), nk = (size_t)(c.B * c.Nk * c.H * c.d);
    std::vector<uint16_t> qb, kb, vb;
    std::vector<float> qf, kf, vf;
    fill(qb, qf, nq, -c.qk, c.qk, c.bf16);
    fill(kb, kf, nk, -c.qk, c.qk, c.bf16);
    fill(vb, vf, nk, -1.0f, 1.0f, c.bf16);

    // Reference: the CPU op in f32 on the same (rounded) values.
    std::vector<float> ref(nq);
    const int64_t qs[4] = {c.B, c.Nq, c.H, c.d}, ks[4] = {c.B, c.Nk, c.H, c.d};
    ds_tensor tq = ds_tensor_make(qf.data(), DS_F32, 4, qs), tk = ds_tensor_make(kf.data(), DS_F32, 4, ks);
    ds_tensor tv = ds_tensor_make(vf.data(), DS_F32, 4, ks), tr = ds_tensor_make(ref.data(), DS_F32, 4, qs);
    std::vector<char> scratch(ds_op_attention_scratch_bytes(c.Nq, c.Nk, c.d));
    ds_err err = {};
    if (ds_op_attention(&tr, &tq, &tk, &tv, NULL, c.scale, scratch.data(), scratch.size(), &err) != DS_OK) {
        printf("FAIL reference: %s\n", err.msg);
        return false;
    }

    std::vector<uint16_t> out(nq, 0x7fc0);  // NaN bits: every element must be written
    ds_attn_mma_args a;
    a.out = out.data();
    a.q = qb.data();
    a.k = kb.data();
    a.v = vb.data();
    a.Nq = c.Nq;
    a.Nk = c.Nk;
    a.H = c.H;
    a.d = c.d;
    a.q_tiles = (c.Nq + ATT_MMA_BQ - 1) / ATT_MMA_BQ;
    const float scale = c.scale > 0.0f ? c.scale : (float)(1.0 / sqrt((double)c.d));
    a.sc2 = scale * 1.4426950408889634f;
    char why[300] = "";
    bool ok = c.d <= 32    ? run_tile<32>(c, sc, a, why, sizeof why)
              : c.d <= 64 ? run_tile<64>(c, sc, a, why, sizeof why)
              : c.d <= 80 ? run_tile<80>(c, sc, a, why, sizeof why)
                          : run_tile<128>(c, sc, a, why, sizeof why);

    // ATTN_TC: per tensor REL, per element ATOL + RTOL |ref| (max |v| = 1 here).
    const double u = c.bf16 ? GPU_U_BF16 : GPU_U_F16;
    const double rel_tol = c.bf16 ? GPU_TOL_ATTN_TC_BF16_REL : GPU_TOL_ATTN_TC_F16_REL;
    const double atol = c.bf16 ? GPU_TOL_ATTN_TC_BF16_ATOL : GPU_TOL_ATTN_TC_F16_ATOL;
    const double rtol = c.bf16 ? GPU_TOL_ATTN_TC_BF16_RTOL : GPU_TOL_ATTN_TC_F16_RTOL;
    double num = 0.0, den = 0.0, worst = 0.0;
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < nq; i++) {
        const double o = c.bf16 ? ds_bf16_to_f32(out[i]) : ds_f16_to_f32(out[i]), r = ref[i];
        const double e = fabs(o - r);
        num += e * e;
        den += r * r;
        if (!(e <= atol + rtol * fabs(r))) {
            if (!bad) first_bad = i;
            bad++;
        }
        if (e / u > worst || e != e) worst = e / u;
    }
    const double rel = den > 0.0 ? sqrt(num / den) : sqrt(num);
    ok = ok && bad == 0 && rel <= rel_tol;
    printf("%s emu attention_mma %s %s B%lld Nq%lld Nk%lld H%lld d%d scale%g qk%g: rel %.3g (tol %.3g), max |err| "
           "%.3g u, %zu elements out of tolerance%s%s\n",
           ok ? "PASS" : "FAIL", sc.name, c.bf16 ? "bf16" : "f16", (long long)c.B, (long long)c.Nq, (long long)c.Nk,
           (long long)c.H, c.d, (double)c.scale, (double)c.qk, rel, rel_tol, worst, bad, why[0] ? ": " : "", why);
    if (bad)
        printf("  first at %zu: out %g ref %g\n", first_bad,
               c.bf16 ? ds_bf16_to_f32(out[first_bad]) : ds_f16_to_f32(out[first_bad]), (double)ref[first_bad]);
    return ok;
}

}  // namespace

int main(void) {
    // Head dims of the real models (DiT 72, FLUX 128, the demo 24) and the smallest legal one (8);
    // sequence tails below, at and above the 64-row tiles; cross-attention (Nq != Nk); a sharp softmax
    // (qk 3, scale 1: scores up to ~d * 9) whose maximum moves between key tiles.
    const Case cases[] = {
        {true, 1, 64, 64, 1, 64, 0.0f, 1.0f},    {true, 2, 65, 130, 3, 72, 0.0f, 1.0f},
        {false, 2, 65, 130, 3, 72, 0.0f, 1.0f},  {true, 1, 100, 77, 2, 128, 0.0f, 1.0f},
        {false, 1, 100, 77, 2, 128, 0.0f, 1.0f}, {true, 2, 1, 200, 2, 24, 0.0f, 1.0f},
        {true, 1, 130, 1, 2, 8, 0.0f, 1.0f},     {true, 1, 70, 150, 1, 128, 1.0f, 3.0f},
        {false, 1, 70, 150, 1, 64, 0.5f, 3.0f},  {true, 1, 129, 63, 1, 32, 0.25f, 2.0f},
    };
    int failed = 0, runs = 0;
    for (const Schedule &sc : kSchedules)
        for (const Case &c : cases) {
            failed += !run_case(c, sc);
            runs++;
        }
    printf("%s: %d of %d case runs failed\n", failed ? "FAIL" : "PASS", failed, runs);
    return failed ? 1 : 0;
}
