/* attention.c - CPU scaled-dot-product attention (ds_op_attention) with caller-owned scratch.
 *
 * Work is split into tasks (b, h, tile of DS_ATTN_TQ query rows), distributed over OpenMP threads
 * with a static schedule, so consecutive tiles of one head land on the same thread. For each task:
 *   1. Kt [d, Nk] = k[b, :, h, :]ᵀ is packed into the thread's scratch slice (skipped when the
 *      thread's previous task had the same (b, h)),
 *   2. S [tq, Nk] = q_tile · Kt, four query rows at a time over blocks of DS_ATTN_KB keys, so the
 *      inner loop is a unit-stride axpy that vectorizes without reassociation,
 *   3. each row: S·scale + mask, max-subtracted exp (sum in double), then
 *      out row = (Σ_j p_j · v[b, j, h, :]) / Σ_j p_j, again four rows per pass over v.
 * The scores never exceed one tile, so memory is O(threads · (d + tq) · Nk) for any sequence length.
 * No BLAS here on purpose: the pthread OpenBLAS build runs its own thread pool, and calling it from
 * inside an OpenMP team oversubscribes the cores; these loops keep the threading in one place.
 * Results do not depend on the thread count: every output row is computed by the same sequence of
 * float operations whichever thread runs it. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu/cpu_util.h"
#include "ops.h"

#define DS_ATTN_TQ 32   /* query rows per task */
#define DS_ATTN_KB 512  /* keys per block of the score product (Kt block ~ d·KB floats stays in L2) */
#define DS_ATTN_ALIGN 16 /* floats: 64-byte alignment of the scratch slices */

static int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

/* Floats of one thread's slice: Kt [d, Nk] then S [tq, Nk], each 64-byte aligned. */
static int64_t slice_floats(int64_t nq, int64_t nk, int64_t d) {
    const int64_t tq = nq < DS_ATTN_TQ ? nq : DS_ATTN_TQ;
    return round_up(d * nk, DS_ATTN_ALIGN) + round_up(tq * nk, DS_ATTN_ALIGN);
}

/* Scratch for one call: one slice per OpenMP thread (omp_get_max_threads() at the time of this
 * call) plus 64 bytes to align the base. If a later call runs with more threads than were planned
 * for, ds_op_attention uses only as many threads as the scratch has slices. Returns 0 for negative
 * sizes. */
size_t ds_op_attention_scratch_bytes(int64_t nq, int64_t nk, int64_t d) {
    if (nq < 0 || nk < 0 || d < 0) return 0;
    const int64_t nt = ds_cpu_max_threads();
    return (size_t)(nt * slice_floats(nq, nk, d)) * sizeof(float) + DS_ATTN_ALIGN * sizeof(float);
}

/* s_i[j] += Σ_c q_i[c]·Kt[c, j] for j in [j0, j1), rows i < nr (1..4). */
static void scores_block(float *const *s, const float *const *q, int nr, const float *kt, int64_t nk, int64_t d,
                         int64_t j0, int64_t j1) {
    if (nr == 4) {
        float *restrict s0 = s[0], *restrict s1 = s[1], *restrict s2 = s[2], *restrict s3 = s[3];
        for (int64_t c = 0; c < d; c++) {
            const float a0 = q[0][c], a1 = q[1][c], a2 = q[2][c], a3 = q[3][c];
            const float *restrict kr = kt + c * nk;
            for (int64_t j = j0; j < j1; j++) {
                const float kv = kr[j];
                s0[j] += a0 * kv;
                s1[j] += a1 * kv;
                s2[j] += a2 * kv;
                s3[j] += a3 * kv;
            }
        }
    } else {
        for (int i = 0; i < nr; i++) {
            float *restrict si = s[i];
            for (int64_t c = 0; c < d; c++) {
                const float a = q[i][c];
                const float *restrict kr = kt + c * nk;
                for (int64_t j = j0; j < j1; j++) si[j] += a * kr[j];
            }
        }
    }
}

/* o_i[:d] += Σ_j p_i[j]·v_j[:d] over all keys, rows i < nr (1..4); v_j = v + j·vs. */
static void pv_rows(float *const *o, const float *const *p, int nr, const float *v, int64_t vs, int64_t nk,
                    int64_t d) {
    if (nr == 4) {
        float *restrict o0 = o[0], *restrict o1 = o[1], *restrict o2 = o[2], *restrict o3 = o[3];
        for (int64_t j = 0; j < nk; j++) {
            const float p0 = p[0][j], p1 = p[1][j], p2 = p[2][j], p3 = p[3][j];
            const float *restrict vr = v + j * vs;
            for (int64_t c = 0; c < d; c++) {
                const float vv = vr[c];
                o0[c] += p0 * vv;
                o1[c] += p1 * vv;
                o2[c] += p2 * vv;
                o3[c] += p3 * vv;
            }
        }
    } else {
        for (int i = 0; i < nr; i++) {
            float *restrict oi = o[i];
            for (int64_t j = 0; j < nk; j++) {
                const float pj = p[i][j];
                const float *restrict vr = v + j * vs;
                for (int64_t c = 0; c < d; c++) oi[c] += pj * vr[c];
            }
        }
    }
}

/* Turn a score row into unnormalized probabilities in place: s = exp(s·scale + m − max).
 * Returns 1/Σ (0 when every entry is −inf, i.e. the row is fully masked: its output is zero, as
 * PyTorch's math SDPA does). */
static float softmax_row(float *restrict s, const float *restrict m, int64_t nk, float scale) {
    float mx = -INFINITY;
    if (m) {
        for (int64_t j = 0; j < nk; j++) {
            s[j] = s[j] * scale + m[j];
            mx = s[j] > mx ? s[j] : mx;
        }
    } else {
        for (int64_t j = 0; j < nk; j++) {
            s[j] *= scale;
            mx = s[j] > mx ? s[j] : mx;
        }
    }
    if (mx == -INFINITY) {
        memset(s, 0, (size_t)nk * sizeof(float));
        return 0.0f;
    }
    double sum = 0.0;
    for (int64_t j = 0; j < nk; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    return (float)(1.0 / sum);
}

ds_status ds_op_attention(ds_tensor *out, const ds_tensor *q, const ds_tensor *k, const ds_tensor *v,
                          const ds_tensor *mask, float scale, void *scratch, size_t scratch_bytes, ds_err *err) {
    static const char *op = "attention";
    DS_TRY(ds_cpu_check(q, 4, op, "q", err));
    DS_TRY(ds_cpu_check(k, 4, op, "k", err));
    DS_TRY(ds_cpu_check(v, 4, op, "v", err));
    DS_TRY(ds_cpu_check(out, 4, op, "out", err));
    DS_TRY(ds_cpu_check_same_shape(out, q, op, "out", "q", err));
    DS_TRY(ds_cpu_check_same_shape(v, k, op, "v", "k", err));
    const int64_t B = q->shape[0], nq = q->shape[1], H = q->shape[2], d = q->shape[3];
    const int64_t nk = k->shape[1];
    char b1[96], b2[96];
    if (k->shape[0] != B || k->shape[2] != H || k->shape[3] != d)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "attention: k %s does not match q %s in B, H or d",
                       ds_tensor_shape_str(k, b1, sizeof b1), ds_tensor_shape_str(q, b2, sizeof b2));
    int64_t mb = 0, mh = 0;
    if (mask) {
        DS_TRY(ds_cpu_check(mask, 4, op, "mask", err));
        mb = mask->shape[0];
        mh = mask->shape[1];
        if ((mb != 1 && mb != B) || (mh != 1 && mh != H) || mask->shape[2] != nq || mask->shape[3] != nk)
            return DS_FAIL(err, DS_ERR_INVALID_ARG,
                           "attention: mask %s must be [1 or %lld, 1 or %lld, %lld, %lld] (Nq = %lld, Nk = %lld)",
                           ds_tensor_shape_str(mask, b1, sizeof b1), (long long)B, (long long)H, (long long)nq,
                           (long long)nk, (long long)nq, (long long)nk);
    }
    if (isnan(scale)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "attention: scale is NaN");
    if (ds_cpu_overlap(out, q) || ds_cpu_overlap(out, k) || ds_cpu_overlap(out, v) ||
        (mask && ds_cpu_overlap(out, mask)))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "attention: out must not alias q, k, v or mask");
    if (B == 0 || nq == 0 || H == 0 || d == 0) return DS_OK;
    if (nk == 0) { /* empty key set: the weighted sum over no values is zero */
        memset(out->data, 0, (size_t)ds_tensor_nbytes(out));
        return DS_OK;
    }

    /* Carve the scratch into per-thread slices. */
    const int64_t slice = slice_floats(nq, nk, d);
    const uintptr_t base = ((uintptr_t)scratch + 63u) & ~(uintptr_t)63u;
    const size_t pad = scratch ? (size_t)(base - (uintptr_t)scratch) : 0;
    const size_t usable = scratch && scratch_bytes > pad ? scratch_bytes - pad : 0;
    const int64_t have_slices = (int64_t)(usable / ((size_t)slice * sizeof(float)));
    if (have_slices < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "attention: scratch of %zu bytes is too small: one thread needs %zu (Nq %lld, Nk %lld, d %lld);"
                       " size it with ds_op_attention_scratch_bytes",
                       scratch_bytes, (size_t)slice * sizeof(float) + 64, (long long)nq, (long long)nk, (long long)d);
    float *const slices = (float *)base;

    const int64_t tq_max = nq < DS_ATTN_TQ ? nq : DS_ATTN_TQ;
    const int64_t ntiles = (nq + DS_ATTN_TQ - 1) / DS_ATTN_TQ;
    const int64_t ntasks = B * H * ntiles;
    int64_t nthreads = ds_cpu_max_threads();
    if (nthreads > have_slices) nthreads = have_slices;
    if (nthreads > ntasks) nthreads = ntasks;
    if ((double)B * (double)H * (double)nq * (double)nk * (double)d < 65536.0) nthreads = 1;
    const float sc = scale > 0.0f ? scale : (float)(1.0 / sqrt((double)d));
    const int64_t row = H * d; /* stride between consecutive tokens of q/k/v/out */
    const float *qs = (const float *)q->data, *ks = (const float *)k->data, *vs = (const float *)v->data;
    const float *ms = mask ? (const float *)mask->data : NULL;
    float *os = (float *)out->data;

#pragma omp parallel num_threads((int)nthreads)
    {
        float *kt = slices + (int64_t)ds_cpu_thread_num() * slice;   // [d, Nk]
        float *S = kt + round_up(d * nk, DS_ATTN_ALIGN);            // [tq, Nk]
        int64_t cur_bh = -1;
#pragma omp for schedule(static)
        for (int64_t task = 0; task < ntasks; task++) {
            const int64_t bh = task / ntiles, tile = task % ntiles;
            const int64_t b = bh / H, h = bh % H;
            const int64_t r0 = tile * DS_ATTN_TQ;
            const int64_t nr = nq - r0 < tq_max ? nq - r0 : tq_max;
            if (bh != cur_bh) { /* Kt[c, j] = k[b, j, h, c] */
                const float *kb = ks + b * nk * row + h * d;
                for (int64_t j = 0; j < nk; j++) {
                    const float *kr = kb + j * row;
                    for (int64_t c = 0; c < d; c++) kt[c * nk + j] = kr[c];
                }
                cur_bh = bh;
            }
            memset(S, 0, (size_t)(nr * nk) * sizeof(float));
            const float *qb = qs + (b * nq + r0) * row + h * d; // q[b, r0, h, :]
            float *ob = os + (b * nq + r0) * row + h * d;       // out[b, r0, h, :]
            const float *mrow0 = NULL;                           // mask[b|0, h|0, r0, :]
            if (ms) mrow0 = ms + (((mb == 1 ? 0 : b) * mh + (mh == 1 ? 0 : h)) * nq + r0) * nk;

            for (int64_t j0 = 0; j0 < nk; j0 += DS_ATTN_KB) {
                const int64_t j1 = j0 + DS_ATTN_KB < nk ? j0 + DS_ATTN_KB : nk;
                for (int64_t i = 0; i < nr; i += 4) {
                    const int g = nr - i < 4 ? (int)(nr - i) : 4;
                    float *sp[4];
                    const float *qp[4];
                    for (int t = 0; t < g; t++) {
                        sp[t] = S + (i + t) * nk;
                        qp[t] = qb + (i + t) * row;
                    }
                    scores_block(sp, qp, g, kt, nk, d, j0, j1);
                }
            }
            float inv[DS_ATTN_TQ];
            for (int64_t i = 0; i < nr; i++) inv[i] = softmax_row(S + i * nk, mrow0 ? mrow0 + i * nk : NULL, nk, sc);
            const float *vb = vs + b * nk * row + h * d; // v[b, 0, h, :]
            for (int64_t i = 0; i < nr; i += 4) {
                const int g = nr - i < 4 ? (int)(nr - i) : 4;
                float *op4[4];
                const float *pp[4];
                for (int t = 0; t < g; t++) {
                    op4[t] = ob + (i + t) * row;
                    pp[t] = S + (i + t) * nk;
                    memset(op4[t], 0, (size_t)d * sizeof(float));
                }
                pv_rows(op4, pp, g, vb, row, nk, d);
                for (int t = 0; t < g; t++)
                    for (int64_t c = 0; c < d; c++) op4[t][c] *= inv[i + t];
            }
        }
    }
    return DS_OK;
}
