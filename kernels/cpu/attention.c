/* attention.c - CPU scaled-dot-product attention (ds_op_attention) with caller-owned scratch.
 *
 * Work is split into tasks (b, h, tile of up to DS_ATTN_TQ query rows). For each task, in the
 * [B, N, H, d] layout as given (a head is a matrix with row stride H·d, so nothing is copied):
 *   1. S [tq, Nk] = q_tile · k_headᵀ            (OpenBLAS sgemm, S in the thread's scratch slice)
 *   2. each row: S·scale + mask, max-subtracted exp, sum in double; a fully masked row (all −inf)
 *      gives a zero output row, as PyTorch's SDPA does
 *   3. out_tile [tq, d] = P · v_head            (sgemm straight into out), rows scaled by 1/Σ.
 * Scores never exceed one tile, so memory is O(threads · tq · Nk) for any sequence length.
 *
 * Threading: tasks run on an OpenMP team, one scratch slice per thread, except when OpenBLAS is the
 * pthreads build with more than one thread (openblas_get_parallel() == 1): that build runs its own
 * thread pool inside every sgemm, and sgemm calls from several OpenMP threads at once oversubscribe
 * the cores and serialize on the pool (measured 30x slower on 2 cores), so then the tasks run on one
 * thread and OpenBLAS threads each product. OpenBLAS splits a product over rows/columns of the
 * result, never over the reduction, so every output element sees the same float operations
 * whichever thread runs it: the result does not depend on the thread count. */
#include <cblas.h>
#include <math.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "cpu/cpu_util.h"
#include "ops.h"
#include "ops_dispatch.h"

#define DS_ATTN_TQ 64    /* query rows per task */
#define DS_ATTN_ALIGN 16 /* floats: 64-byte alignment of the scratch slices */

/* Floats of one thread's slice: S [tq, Nk], rounded to 64 bytes. */
static int64_t slice_floats(int64_t nq, int64_t nk) {
    const int64_t tq = nq < DS_ATTN_TQ ? nq : DS_ATTN_TQ;
    return (tq * nk + DS_ATTN_ALIGN - 1) / DS_ATTN_ALIGN * DS_ATTN_ALIGN;
}

/* Scratch for one call: one slice of min(Nq, 64)·Nk floats per OpenMP thread
 * (omp_get_max_threads() at the time of this call), plus 64 bytes to align the base. If a later
 * call may use more threads than were planned for, ds_op_attention uses only as many threads as the
 * scratch has slices. d does not enter today (kept for backends that stage q/k/v tiles). Returns 0
 * for negative sizes. */
size_t ds_op_attention_scratch_bytes(int64_t nq, int64_t nk, int64_t d) {
    if (nq < 0 || nk < 0 || d < 0) return 0;
    const int64_t nt = ds_cpu_max_threads();
    return (size_t)(nt * slice_floats(nq, nk)) * sizeof(float) + DS_ATTN_ALIGN * sizeof(float);
}

/* Turn a score row into unnormalized probabilities in place: s = exp(s·scale + m − max).
 * Returns 1/Σ, or 0 when every entry is −inf (fully masked row: its output is zero). */
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

/* True when OpenBLAS threads each call itself with a pthread pool (see the file comment). */
static int blas_runs_own_pool(void) { return openblas_get_parallel() == 1 && openblas_get_num_threads() > 1; }

ds_status ds_op_attention(ds_tensor *out, const ds_tensor *q, const ds_tensor *k, const ds_tensor *v,
                          const ds_tensor *mask, float scale, void *scratch, size_t scratch_bytes, ds_err *err) {
    DS_OP_DISPATCH(q, ds_cuda_op_attention(out, q, k, v, mask, scale, err));
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
    if (H * d > INT_MAX || nk > INT_MAX || (nq < DS_ATTN_TQ ? nq : DS_ATTN_TQ) * nk > INT_MAX)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "attention: H·d = %lld or Nk = %lld exceeds the 32-bit BLAS interface",
                       (long long)(H * d), (long long)nk);
    if (B == 0 || nq == 0 || H == 0 || d == 0) return DS_OK;
    if (nk == 0) { /* empty key set: the weighted sum over no values is zero */
        memset(out->data, 0, (size_t)ds_tensor_nbytes(out));
        return DS_OK;
    }

    /* Carve the scratch into per-thread slices. */
    const int64_t slice = slice_floats(nq, nk);
    const uintptr_t base = ((uintptr_t)scratch + 63u) & ~(uintptr_t)63u;
    const size_t pad = scratch ? (size_t)(base - (uintptr_t)scratch) : 0;
    const size_t usable = scratch && scratch_bytes > pad ? scratch_bytes - pad : 0;
    const int64_t have_slices = (int64_t)(usable / ((size_t)slice * sizeof(float)));
    if (have_slices < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "attention: scratch of %zu bytes is too small: one thread needs %zu (Nq %lld, Nk %lld);"
                       " size it with ds_op_attention_scratch_bytes",
                       scratch_bytes, (size_t)slice * sizeof(float) + 64, (long long)nq, (long long)nk);
    float *const slices = (float *)base;

    const int64_t ntiles = (nq + DS_ATTN_TQ - 1) / DS_ATTN_TQ;
    const int64_t ntasks = B * H * ntiles;
    int64_t nthreads = ds_cpu_max_threads();
    if (nthreads > have_slices) nthreads = have_slices;
    if (nthreads > ntasks) nthreads = ntasks;
    if (blas_runs_own_pool() || (double)B * (double)H * (double)nq * (double)nk * (double)d < 65536.0) nthreads = 1;
    const float sc = scale > 0.0f ? scale : (float)(1.0 / sqrt((double)d));
    const int64_t row = H * d; /* stride between consecutive tokens of q/k/v/out */
    const float *qs = (const float *)q->data, *ks = (const float *)k->data, *vs = (const float *)v->data;
    const float *ms = mask ? (const float *)mask->data : NULL;
    float *os = (float *)out->data;

#pragma omp parallel num_threads((int)nthreads)
    {
        float *S = slices + (int64_t)ds_cpu_thread_num() * slice; // [tq, Nk]
#pragma omp for schedule(static)
        for (int64_t task = 0; task < ntasks; task++) {
            const int64_t bh = task / ntiles, tile = task % ntiles;
            const int64_t b = bh / H, h = bh % H;
            const int64_t r0 = tile * DS_ATTN_TQ;
            const int64_t nr = nq - r0 < DS_ATTN_TQ ? nq - r0 : DS_ATTN_TQ;
            const float *qb = qs + (b * nq + r0) * row + h * d; // q[b, r0.., h, :]: [nr, d], row stride H·d
            const float *kb = ks + b * nk * row + h * d;        // k[b, :, h, :]:    [Nk, d]
            const float *vb = vs + b * nk * row + h * d;        // v[b, :, h, :]:    [Nk, d]
            float *ob = os + (b * nq + r0) * row + h * d;       // out[b, r0.., h, :]: [nr, d]
            const float *mrow0 = NULL;                           // mask[b|0, h|0, r0, :]
            if (ms) mrow0 = ms + (((mb == 1 ? 0 : b) * mh + (mh == 1 ? 0 : h)) * nq + r0) * nk;

            /* S[nr, Nk] = q_tile · k_headᵀ */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nk, (int)d, 1.0f, qb, (int)row, kb,
                        (int)row, 0.0f, S, (int)nk);
            float inv[DS_ATTN_TQ];
            for (int64_t i = 0; i < nr; i++) inv[i] = softmax_row(S + i * nk, mrow0 ? mrow0 + i * nk : NULL, nk, sc);
            /* out_tile[nr, d] = P[nr, Nk] · v_head[Nk, d] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)d, (int)nk, 1.0f, S, (int)nk, vb,
                        (int)row, 0.0f, ob, (int)row);
            for (int64_t i = 0; i < nr; i++)
                for (int64_t c = 0; c < d; c++) ob[i * row + c] *= inv[i];
        }
    }
    return DS_OK;
}
