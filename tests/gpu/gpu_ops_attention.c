/* gpu_ops_attention.c - GPU twin tests of scaled-dot-product attention against the CPU reference
 * ds_op_attention, in f32, bf16 and f16 on inputs rounded to the dtype on the host first (method:
 * gpu_ops_util.h; tolerances: gpu_tolerances.h). Every case runs on the fp32-inside kernel
 * (ops_attention.cu, DS_CUDA_ATTN_EXACT, class ATTN), then the bf16/f16 cases again on the default path,
 * where the unmasked ones with d <= 128 take the tensor-core tile (ops_attention_mma.cu, class ATTN_TC).
 *
 * Shapes: B = 2, H = 3 (batch and head strides both matter: q/k/v are [B, N, H, d], a head is a strided
 * matrix); head dims 24, 64, 72, 128 (24 and 72 are not powers of two: partial vectors / fragments), plus
 * 320 and 512 (the large-head instances with smaller tiles; 512 is the VAE mid-block's single head);
 * Nq, Nk in {1, 17, 77, 257, 1000} (odd and not multiples of 32/64: partial query and key tiles, one key,
 * one query) and 1000 x 1000 (many key tiles: the online-softmax rescaling runs many times). Masks (additive):
 * [1, 1, Nq, Nk] (a key-padding mask: the last Nk/5 keys -inf, the rest U[-1, 0)), [B, H, Nq, Nk]
 * (U[-2, 0) with ~3% -inf, never a whole row), the broadcasts [1, H, ..] and [B, 1, ..], and one case whose
 * mask blanks two whole query rows (the reference gives a zero row there, as PyTorch's SDPA). Scales: the
 * default 1/sqrt(d) (scale = 0) and explicit ones (1.0 gives sharp, near one-hot rows; 0.2 and 0.5 flat).
 * Inputs q, k, v in U[-1, 1). Error paths: a CPU tensor among CUDA ones, mixed dtypes, shape mismatches of
 * k and of the mask, out aliasing q. Exit 77 without a device. */
#include "gpu_ops_util.h"

#define TEST "gpu_ops_attention"
#define NB 2
#define NH 3

typedef enum { MASK_NONE, MASK_11, MASK_BH, MASK_1H, MASK_B1, MASK_BH_FULLROWS } mask_kind;

static const char *mask_name(mask_kind m) {
    switch (m) {
    case MASK_NONE: return "nomask";
    case MASK_11: return "mask11";
    case MASK_BH: return "maskBH";
    case MASK_1H: return "mask1H";
    case MASK_B1: return "maskB1";
    default: return "maskBH_fullrows";
    }
}

/* mask [mb, mh, nq, nk] as described in the file comment. */
static void mask_fill(float *m, mask_kind kind, int64_t mb, int64_t mh, int64_t nq, int64_t nk, uint64_t seed) {
    const int64_t n = mb * mh * nq * nk;
    float *u = gpu_falloc(n);
    if (!u) return;
    gpu_uniform(u, n, seed + 1, 0.0, 1.0);
    if (kind == MASK_11) {
        gpu_uniform(m, n, seed, -1.0, 0.0);
        for (int64_t i = 0; i < nq; i++)
            for (int64_t j = nk - nk / 5; j < nk; j++) m[i * nk + j] = -INFINITY;
    } else {
        gpu_uniform(m, n, seed, -2.0, 0.0);
        for (int64_t r = 0; r < mb * mh * nq; r++) {
            const int64_t keep = r % nk; /* one key per row is never masked */
            for (int64_t j = 0; j < nk; j++)
                if (j != keep && u[r * nk + j] < 0.03f) m[r * nk + j] = -INFINITY;
        }
        if (kind == MASK_BH_FULLROWS) { /* rows (b = B-1, h = H-1, i = 0) and (0, 0, nq - 1) */
            float *r0 = m + ((mb - 1) * mh + (mh - 1)) * nq * nk, *r1 = m + (nq - 1) * nk;
            for (int64_t j = 0; j < nk; j++) r0[j] = r1[j] = -INFINITY;
        }
    }
    free(u);
}

/* The context's path (ds_cuda_ctx_set_attention) picks the kernel; the tensor-core tile runs the calls it is
 * eligible for (ds_cuda_ops.h: bf16/f16, no mask, d % 8 == 0, d <= 128; device buffers are aligned) and is
 * held to the ATTN_TC class, every other call to ATTN. */
static void attn_case(ds_cuda_attn_path path, ds_dtype dt, int64_t nq, int64_t nk, int64_t d, mask_kind mk,
                      float scale, uint64_t seed) {
    const int tc = path == DS_CUDA_ATTN_FAST && dt != DS_F32 && mk == MASK_NONE && d % 8 == 0 && d <= 128;
    char kase[160];
    snprintf(kase, sizeof kase, "attention_%s_%s_d%lld_nq%lld_nk%lld_%s_scale%s", tc ? "tc" : "exact",
             ds_dtype_name(dt), (long long)d, (long long)nq, (long long)nk, mask_name(mk),
             scale > 0.0f ? "" : "default");
    if (scale > 0.0f) {
        const size_t l = strlen(kase);
        snprintf(kase + l, sizeof kase - l, "%g", (double)scale);
    }
    const int64_t qs[4] = {NB, nq, NH, d}, ks[4] = {NB, nk, NH, d};
    const int64_t mb = mk == MASK_11 || mk == MASK_1H ? 1 : NB, mh = mk == MASK_11 || mk == MASK_B1 ? 1 : NH;
    const int64_t ms[4] = {mb, mh, nq, nk};
    const int64_t nqe = NB * nq * NH * d, nke = NB * nk * NH * d, nme = mb * mh * nq * nk;
    ds_err e = {0};
    gpu_dev dq = {0}, dk = {0}, dv = {0}, dm = {0}, dout = {0};
    const size_t scratch_bytes = ds_op_attention_scratch_bytes(nq, nk, d);
    void *scratch = malloc(scratch_bytes);
    float *q = gpu_falloc(nqe), *k = gpu_falloc(nke), *v = gpu_falloc(nke), *ref = gpu_falloc(nqe);
    float *m = mk != MASK_NONE ? gpu_falloc(nme) : NULL;
    if (!GPU_CHECK(scratch != NULL, "host allocation") || !q || !k || !v || !ref || (mk != MASK_NONE && !m))
        goto done;
    gpu_uniform(q, nqe, seed, -1.0, 1.0);
    gpu_uniform(k, nke, seed + 1, -1.0, 1.0);
    gpu_uniform(v, nke, seed + 2, -1.0, 1.0);
    gpu_round(q, nqe, dt);
    gpu_round(k, nke, dt);
    gpu_round(v, nke, dt);
    if (m) {
        mask_fill(m, mk, mb, mh, nq, nk, seed + 3);
        gpu_round(m, nme, dt);
    }

    ds_tensor hq = gpu_host(q, 4, qs), hk = gpu_host(k, 4, ks), hv = gpu_host(v, 4, ks), hr = gpu_host(ref, 4, qs);
    ds_tensor hm = m ? gpu_host(m, 4, ms) : (ds_tensor){0};
    if (!GPU_OK(ds_op_attention(&hr, &hq, &hk, &hv, m ? &hm : NULL, scale, scratch, scratch_bytes, &e), &e))
        goto done;

    if (!gpu_dev_from(&dq, dt, 4, qs, q) || !gpu_dev_from(&dk, dt, 4, ks, k) || !gpu_dev_from(&dv, dt, 4, ks, v) ||
        (m && !gpu_dev_from(&dm, dt, 4, ms, m)) || !gpu_dev_alloc(&dout, dt, 4, qs))
        goto done;
    /* the CUDA twin needs no scratch (ds_cuda_ops.h) */
    if (!gpu_run_ok(TEST, kase, ds_op_attention(&dout.t, &dq.t, &dk.t, &dv.t, m ? &dm.t : NULL, scale, NULL, 0, &e),
                    &e))
        goto done;
    if (tc)
        gpu_check(TEST, kase, &dout, ref, GPU_TOL(dt, ATTN_TC));
    else
        gpu_check(TEST, kase, &dout, ref, GPU_TOL(dt, ATTN));
done:
    gpu_dev_free(&dq);
    gpu_dev_free(&dk);
    gpu_dev_free(&dv);
    gpu_dev_free(&dm);
    gpu_dev_free(&dout);
    free(scratch);
    free(q);
    free(k);
    free(v);
    free(m);
    free(ref);
}

/* ---- error paths -------------------------------------------------------------------------------------- */

static void error_cases(void) {
    ds_err e = {0};
    enum { NQ = 5, NK = 7, D = 8 };
    static const int64_t qs[] = {NB, NQ, NH, D}, ks[] = {NB, NK, NH, D}, kd[] = {NB, NK, NH, D + 2},
                         ms_bad[] = {NB, 2, NQ, NK}, ms_nk[] = {1, 1, NQ, NK + 1};
    gpu_dev q = {0}, k = {0}, v = {0}, kb = {0}, k2 = {0}, m1 = {0}, m2 = {0}, o = {0};
    float hbuf[NB * NK * NH * D] = {0};
    if (!gpu_dev_alloc(&q, DS_F32, 4, qs) || !gpu_dev_alloc(&k, DS_F32, 4, ks) || !gpu_dev_alloc(&v, DS_F32, 4, ks) ||
        !gpu_dev_alloc(&kb, DS_BF16, 4, ks) || !gpu_dev_alloc(&k2, DS_F32, 4, kd) ||
        !gpu_dev_alloc(&m1, DS_F32, 4, ms_bad) || !gpu_dev_alloc(&m2, DS_F32, 4, ms_nk) ||
        !gpu_dev_alloc(&o, DS_F32, 4, qs))
        goto done;
    ds_tensor cv = gpu_host(hbuf, 4, ks);

    ds_err_clear(&e);
    gpu_expect(TEST, "err_attention_cpu_v", ds_op_attention(&o.t, &q.t, &k.t, &cv, NULL, 0.0f, NULL, 0, &e),
               DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_attention_mixed_dtype", ds_op_attention(&o.t, &q.t, &kb.t, &v.t, NULL, 0.0f, NULL, 0, &e),
               DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_attention_k_headdim", ds_op_attention(&o.t, &q.t, &k2.t, &k2.t, NULL, 0.0f, NULL, 0, &e),
               DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_attention_v_shape", ds_op_attention(&o.t, &q.t, &k.t, &q.t, NULL, 0.0f, NULL, 0, &e),
               DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_attention_mask_heads", ds_op_attention(&o.t, &q.t, &k.t, &v.t, &m1.t, 0.0f, NULL, 0, &e),
               DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_attention_mask_nk", ds_op_attention(&o.t, &q.t, &k.t, &v.t, &m2.t, 0.0f, NULL, 0, &e),
               DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_attention_out_aliases_q", ds_op_attention(&q.t, &q.t, &k.t, &v.t, NULL, 0.0f, NULL, 0, &e),
               DS_ERR_INVALID_ARG, &e);
done:
    gpu_dev_free(&q);
    gpu_dev_free(&k);
    gpu_dev_free(&v);
    gpu_dev_free(&kb);
    gpu_dev_free(&k2);
    gpu_dev_free(&m1);
    gpu_dev_free(&m2);
    gpu_dev_free(&o);
}

int main(void) {
    ds_cuda_ctx *ctx = gpu_ctx_open(TEST);
    if (!ctx) return gpu_finish(TEST);
    uint64_t seed = 3000;

    static const int64_t dims[] = {24, 64, 72, 128};
    static const int64_t seqs[][2] = {{1, 17}, {17, 77}, {77, 257}, {257, 1000}};
    static const struct {
        int64_t nq, nk, d;
        mask_kind mask;
        float scale;
    } extra[] = {
        {1000, 1000, 128, MASK_NONE, 0.0f}, /* many key tiles */
        {17, 1, 128, MASK_NONE, 0.0f},      /* one key: out = v */
        {77, 257, 64, MASK_NONE, 1.0f},     /* sharp rows */
        {77, 257, 64, MASK_11, 0.0f},
        {77, 257, 64, MASK_BH, 1.0f},
        {257, 77, 72, MASK_BH, 0.0f},
        {1, 1000, 24, MASK_BH, 0.5f},
        {1000, 1000, 128, MASK_11, 0.2f},
        {17, 77, 64, MASK_1H, 0.0f},
        {17, 77, 64, MASK_B1, 0.0f},
        {17, 77, 64, MASK_BH_FULLROWS, 0.0f},
        {77, 257, 512, MASK_NONE, 0.0f},    /* the VAE mid-block's single 512-wide head: 32 x 16 tiles */
        {40, 33, 320, MASK_11, 0.0f},       /* 257..384 instance, odd sizes, a mask */
    };
    /* every case on the fp32-inside kernel, then the bf16/f16 ones again on the default (tensor-core) path */
    for (int p = 0; p < 2; p++) {
        const ds_cuda_attn_path path = p == 0 ? DS_CUDA_ATTN_EXACT : DS_CUDA_ATTN_FAST;
        ds_cuda_ctx_set_attention(ctx, path);
        for (int di = 0; di < GPU_NDTYPES; di++) {
            const ds_dtype dt = gpu_dtype(di);
            if (path == DS_CUDA_ATTN_FAST && dt == DS_F32) continue; /* f32 always takes the exact kernel */
            for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
                for (size_t j = 0; j < sizeof seqs / sizeof seqs[0]; j++)
                    attn_case(path, dt, seqs[j][0], seqs[j][1], dims[i], MASK_NONE, 0.0f, seed++);
            for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
                attn_case(path, dt, extra[i].nq, extra[i].nk, extra[i].d, extra[i].mask, extra[i].scale, seed++);
        }
    }
    ds_cuda_ctx_set_attention(ctx, DS_CUDA_ATTN_FAST);

    error_cases();
    gpu_ctx_close(ctx);
    return gpu_finish(TEST);
}
