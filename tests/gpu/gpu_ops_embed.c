/* gpu_ops_embed.c - GPU twin tests of the embedding ops (ops_embed.cu; the fused rmsnorm + rope of ops_norm.cu)
 * against the CPU reference ops: rope, rmsnorm_rope (class NORMROPE; its unfused fallback bit-equal to the
 * two device ops)
 * (FLUX interleaved pairs; the cos/sin tables come from ds_op_rope_freqs on the host and are uploaded as f32,
 * as models do) and timestep_embedding (diffusers get_timestep_embedding; t is always f32). x and the
 * embedding output run in f32, bf16 and f16; x is rounded to the dtype on the host first (method:
 * gpu_ops_util.h; tolerances: gpu_tolerances.h, PW for rope, TSEMB / TSEMB_PHASE for the timesteps).
 *
 * rope shapes [B, N, H, d]: FLUX's d = 128 with axes {16, 56, 56} on N = 77 tokens, d = 24 with axes
 * {4, 10, 10} and H = 5 (pairs that do not fill a vector), d = 64 over N = 1000 (many rows), and one pair
 * (d = 2, one axis). ids: the first N/4 tokens are text (0, 0, 0), the rest image tokens (0, row, col) on an
 * 8-wide grid (one axis: id = n), so the tables hold phases up to ~100 rad (the same f32 table on both sides).
 * In place: out == x. timestep_embedding: C = 256 (DiT, PixArt, SD3), 257 and 33 (odd: a zero last
 * column), 2 (one frequency); flip_sin_to_cos 0 and 1; downscale_freq_shift 0 (FLUX/SD3) and 1 (DiT);
 * t in [0, 1) (phases < 1: tight TSEMB) and real timesteps up to 1000 incl. 0, 1, 500.5 and 999 (phases up to
 * 1000 rad: TSEMB_PHASE, whose absolute bound comes from the f32 phase itself), and scale 1000 on t in [0, 1).
 * Error paths: a CPU tensor among CUDA ones, a table or t that is not f32, shape mismatches, C/2 == shift.
 * Exit 77 without a device. */
#include "gpu_ops_util.h"

#define TEST "gpu_ops_embed"
#define MAX_PERIOD 10000.0f
#define ROPE_THETA 10000.0

/* ---- rope --------------------------------------------------------------------------------------------- */

/* cos, sin [N, d] from ds_op_rope_freqs over the ids of the file comment. */
static bool rope_tables(float *cs, float *sn, int64_t N, const int *axes, int n_axes) {
    ds_err e = {0};
    int64_t d = 0;
    for (int a = 0; a < n_axes; a++) d += axes[a];
    float *ids = gpu_falloc(N * n_axes);
    if (!ids) return false;
    const int64_t text = N / 4;
    for (int64_t n = 0; n < N; n++)
        for (int a = 0; a < n_axes; a++) {
            const int64_t m = n - text;
            if (n_axes == 1) ids[n] = (float)n; /* a plain 1-D position */
            else ids[n * n_axes + a] = n < text || a == 0 ? 0.0f : a == 1 ? (float)(m / 8) : (float)(m % 8);
        }
    ds_tensor hid = gpu_host(ids, 2, (const int64_t[]){N, n_axes});
    ds_tensor hc = gpu_host(cs, 2, (const int64_t[]){N, d}), hs = gpu_host(sn, 2, (const int64_t[]){N, d});
    const bool ok = GPU_OK(ds_op_rope_freqs(&hc, &hs, &hid, axes, n_axes, ROPE_THETA, &e), &e);
    free(ids);
    return ok;
}

/* rope, or (norm) the fused per-head RMSNorm + rope (ds_op_rmsnorm_rope, weight U[0.5, 1.5)): the fused
 * kernel runs where d % 8 == 0 (class NORMROPE); below that the op is the two device ops, so the result must
 * equal device rmsnorm then device rope bit for bit. */
static void rope_case(ds_dtype dt, int64_t B, int64_t N, int64_t H, const int *axes, int n_axes, bool inplace,
                      bool norm, uint64_t seed) {
    int64_t d = 0;
    for (int a = 0; a < n_axes; a++) d += axes[a];
    char kase[160];
    snprintf(kase, sizeof kase, "%s_%s_B%lldN%lldH%lldd%lld%s", norm ? "rmsnorm_rope" : "rope", ds_dtype_name(dt),
             (long long)B, (long long)N, (long long)H, (long long)d, inplace ? "_inplace" : "");
    const int64_t xs[4] = {B, N, H, d}, ts[2] = {N, d}, ws[1] = {d}, n = B * N * H * d;
    ds_err e = {0};
    gpu_dev dx = {0}, dc = {0}, ds = {0}, dout = {0}, dw = {0}, dtwo = {0};
    float *x = gpu_falloc(n), *ref = gpu_falloc(n), *cs = gpu_falloc(N * d), *sn = gpu_falloc(N * d);
    float *w = gpu_falloc(d), *got = gpu_falloc(n), *two = gpu_falloc(n);
    if (!x || !ref || !cs || !sn || !w || !got || !two || !rope_tables(cs, sn, N, axes, n_axes)) goto done;
    gpu_uniform(x, n, seed, -1.0, 1.0);
    gpu_round(x, n, dt);
    gpu_uniform(w, d, seed + 1, 0.5, 1.5);
    gpu_round(w, d, dt);

    ds_tensor hx = gpu_host(x, 4, xs), hr = gpu_host(ref, 4, xs), hc = gpu_host(cs, 2, ts), hs = gpu_host(sn, 2, ts);
    ds_tensor hw = gpu_host(w, 1, ws);
    if (!GPU_OK(norm ? ds_op_rmsnorm_rope(&hr, &hx, &hw, 1e-6f, &hc, &hs, &e) : ds_op_rope(&hr, &hx, &hc, &hs, &e), &e))
        goto done;

    /* the tables stay f32 in every case (ds_cuda_ops.h) */
    if (!gpu_dev_from(&dx, dt, 4, xs, x) || !gpu_dev_from(&dc, DS_F32, 2, ts, cs) ||
        !gpu_dev_from(&ds, DS_F32, 2, ts, sn) || !gpu_dev_from(&dw, dt, 1, ws, w))
        goto done;
    gpu_dev *out = &dx;
    if (!inplace) {
        if (!gpu_dev_alloc(&dout, dt, 4, xs)) goto done;
        out = &dout;
    }
    if (!norm) {
        if (!gpu_run_ok(TEST, kase, ds_op_rope(&out->t, &dx.t, &dc.t, &ds.t, &e), &e)) goto done;
        gpu_check(TEST, kase, out, ref, GPU_TOL(dt, PW));
        goto done;
    }
    if (d % 8 == 0) {
        if (!gpu_run_ok(TEST, kase, ds_op_rmsnorm_rope(&out->t, &dx.t, &dw.t, 1e-6f, &dc.t, &ds.t, &e), &e)) goto done;
        gpu_check(TEST, kase, out, ref, GPU_TOL(dt, NORMROPE));
        goto done;
    }
    /* the unfused fallback: exactly the two device ops */
    if (!gpu_dev_alloc(&dtwo, dt, 4, xs) || !gpu_dev_upload(&dtwo, x)) goto done;
    if (!gpu_run_ok(TEST, kase, ds_op_rmsnorm(&dtwo.t, &dtwo.t, &dw.t, 1e-6f, &e), &e) ||
        !gpu_run_ok(TEST, kase, ds_op_rope(&dtwo.t, &dtwo.t, &dc.t, &ds.t, &e), &e) ||
        !gpu_run_ok(TEST, kase, ds_op_rmsnorm_rope(&out->t, &dx.t, &dw.t, 1e-6f, &dc.t, &ds.t, &e), &e) ||
        !gpu_dev_download(out, got, kase) || !gpu_dev_download(&dtwo, two, kase))
        goto done;
    {
        const bool same = memcmp(got, two, (size_t)n * sizeof(float)) == 0;
        printf("RESULT %s %s_fallback_equals_two_ops %s\n", TEST, kase, same ? "PASS" : "FAIL");
        GPU_CHECK(same, "%s: the unfused path differs from rmsnorm then rope", kase);
    }
done:
    gpu_dev_free(&dx);
    gpu_dev_free(&dc);
    gpu_dev_free(&ds);
    gpu_dev_free(&dout);
    gpu_dev_free(&dw);
    gpu_dev_free(&dtwo);
    free(x);
    free(ref);
    free(cs);
    free(sn);
    free(w);
    free(got);
    free(two);
}

/* ---- timestep_embedding ------------------------------------------------------------------------------ */

typedef enum { T_UNIT, T_REAL } t_kind; /* t in [0, 1) / real timesteps up to 1000 */

static void tsemb_case(ds_dtype dt, int64_t B, int64_t C, int flip, float shift, float scale, t_kind tk,
                       uint64_t seed) {
    char kase[160];
    snprintf(kase, sizeof kase, "timestep_embedding_%s_B%lld_C%lld_flip%d_shift%g_scale%g_%s", ds_dtype_name(dt),
             (long long)B, (long long)C, flip, (double)shift, (double)scale, tk == T_UNIT ? "t01" : "t1000");
    const int64_t os[2] = {B, C};
    ds_err e = {0};
    gpu_dev dt_ = {0}, dout = {0};
    float *t = gpu_falloc(B), *ref = gpu_falloc(B * C);
    if (!t || !ref) goto done;
    if (tk == T_UNIT) {
        gpu_uniform(t, B, seed, 0.0, 1.0);
        t[0] = 0.0f;
    } else {
        static const float fixed[] = {0.0f, 1.0f, 999.0f, 500.5f};
        gpu_uniform(t, B, seed, 0.0, 1000.0);
        for (int64_t i = 0; i < B && i < 4; i++) t[i] = fixed[i];
    }
    double amax = 0.0; /* largest phase: f_0 = 1 */
    for (int64_t i = 0; i < B; i++) amax = fmax(amax, fabs((double)scale * (double)t[i]));

    ds_tensor ht = gpu_host(t, 1, &B), hr = gpu_host(ref, 2, os);
    if (!GPU_OK(ds_op_timestep_embedding(&hr, &ht, flip, shift, scale, MAX_PERIOD, &e), &e)) goto done;

    if (!gpu_dev_from(&dt_, DS_F32, 1, &B, t) || !gpu_dev_alloc(&dout, dt, 2, os)) goto done;
    if (!gpu_run_ok(TEST, kase, ds_op_timestep_embedding(&dout.t, &dt_.t, flip, shift, scale, MAX_PERIOD, &e), &e))
        goto done;
    gpu_check(TEST, kase, &dout, ref, amax <= 1.0 ? GPU_TOL(dt, TSEMB) : GPU_TOL(dt, TSEMB_PHASE));
done:
    gpu_dev_free(&dt_);
    gpu_dev_free(&dout);
    free(t);
    free(ref);
}

/* ---- error paths -------------------------------------------------------------------------------------- */

static void error_cases(void) {
    ds_err e = {0};
    enum { B = 2, N = 3, H = 2, D = 8 };
    static const int64_t xs[] = {B, N, H, D}, ts[] = {N, D}, ts_bad[] = {N + 1, D}, xo[] = {1, 2, 1, 5},
                         to[] = {2, 5}, tv[] = {B}, es[] = {B, 16}, es_bad[] = {B + 1, 16}, e2[] = {B, 2};
    gpu_dev x = {0}, o = {0}, c = {0}, s = {0}, cb = {0}, cbad = {0}, xodd = {0}, codd = {0}, t = {0}, tb = {0},
            emb = {0}, emb_bad = {0}, emb2 = {0};
    float hbuf[N * D] = {0};
    if (!gpu_dev_alloc(&x, DS_F32, 4, xs) || !gpu_dev_alloc(&o, DS_F32, 4, xs) || !gpu_dev_alloc(&c, DS_F32, 2, ts) ||
        !gpu_dev_alloc(&s, DS_F32, 2, ts) || !gpu_dev_alloc(&cb, DS_BF16, 2, ts) ||
        !gpu_dev_alloc(&cbad, DS_F32, 2, ts_bad) || !gpu_dev_alloc(&xodd, DS_F32, 4, xo) ||
        !gpu_dev_alloc(&codd, DS_F32, 2, to) || !gpu_dev_alloc(&t, DS_F32, 1, tv) ||
        !gpu_dev_alloc(&tb, DS_BF16, 1, tv) || !gpu_dev_alloc(&emb, DS_F32, 2, es) ||
        !gpu_dev_alloc(&emb_bad, DS_F32, 2, es_bad) || !gpu_dev_alloc(&emb2, DS_F32, 2, e2))
        goto done;
    ds_tensor cs = gpu_host(hbuf, 2, ts), ct = gpu_host(hbuf, 1, tv);

    ds_err_clear(&e);
    gpu_expect(TEST, "err_rope_bf16_table", ds_op_rope(&o.t, &x.t, &cb.t, &s.t, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_rope_cpu_sin", ds_op_rope(&o.t, &x.t, &c.t, &cs, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_rope_table_shape", ds_op_rope(&o.t, &x.t, &cbad.t, &s.t, &e), DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_rope_odd_d", ds_op_rope(&xodd.t, &xodd.t, &codd.t, &codd.t, &e), DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_timestep_cpu_t", ds_op_timestep_embedding(&emb.t, &ct, 1, 1.0f, 1.0f, MAX_PERIOD, &e),
               DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_timestep_bf16_t", ds_op_timestep_embedding(&emb.t, &tb.t, 1, 1.0f, 1.0f, MAX_PERIOD, &e),
               DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_timestep_rows", ds_op_timestep_embedding(&emb_bad.t, &t.t, 1, 1.0f, 1.0f, MAX_PERIOD, &e),
               DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_timestep_half_eq_shift",
               ds_op_timestep_embedding(&emb2.t, &t.t, 0, 1.0f, 1.0f, MAX_PERIOD, &e), DS_ERR_INVALID_ARG, &e);
done:
    gpu_dev_free(&x);
    gpu_dev_free(&o);
    gpu_dev_free(&c);
    gpu_dev_free(&s);
    gpu_dev_free(&cb);
    gpu_dev_free(&cbad);
    gpu_dev_free(&xodd);
    gpu_dev_free(&codd);
    gpu_dev_free(&t);
    gpu_dev_free(&tb);
    gpu_dev_free(&emb);
    gpu_dev_free(&emb_bad);
    gpu_dev_free(&emb2);
}

int main(void) {
    ds_cuda_ctx *ctx = gpu_ctx_open(TEST);
    if (!ctx) return gpu_finish(TEST);
    uint64_t seed = 5000;

    static const int ax128[] = {16, 56, 56}, ax24[] = {4, 10, 10}, ax64[] = {8, 28, 28}, ax2[] = {2};
    static const struct {
        int64_t B, N, H;
        const int *axes;
        int n_axes;
    } ropes[] = {{2, 77, 3, ax128, 3}, {1, 17, 5, ax24, 3}, {2, 1000, 3, ax64, 3}, {1, 1, 1, ax2, 1}};
    static const struct {
        int64_t B, C;
        int flip;
        float shift, scale;
        t_kind tk;
    } tss[] = {
        {7, 256, 0, 1.0f, 1.0f, T_UNIT},  {7, 257, 1, 0.0f, 1.0f, T_UNIT},   {7, 33, 1, 1.0f, 1.0f, T_UNIT},
        {3, 2, 0, 0.0f, 1.0f, T_UNIT},    {8, 256, 1, 1.0f, 1.0f, T_REAL},   {8, 256, 1, 0.0f, 1.0f, T_REAL},
        {8, 257, 0, 0.0f, 1.0f, T_REAL},  {5, 1152, 0, 1.0f, 1.0f, T_REAL}, {8, 320, 1, 0.0f, 1000.0f, T_UNIT},
    };
    for (int di = 0; di < GPU_NDTYPES; di++) {
        const ds_dtype dt = gpu_dtype(di);
        for (size_t i = 0; i < sizeof ropes / sizeof ropes[0]; i++)
            for (int norm = 0; norm < 2; norm++)
                rope_case(dt, ropes[i].B, ropes[i].N, ropes[i].H, ropes[i].axes, ropes[i].n_axes, false, norm != 0,
                          seed++);
        for (size_t i = 0; i < sizeof tss / sizeof tss[0]; i++)
            tsemb_case(dt, tss[i].B, tss[i].C, tss[i].flip, tss[i].shift, tss[i].scale, tss[i].tk, seed++);
    }
    rope_case(DS_BF16, 2, 77, 3, ax128, 3, true, false, seed++);
    rope_case(DS_F32, 1, 17, 5, ax24, 3, true, false, seed++);
    rope_case(DS_F16, 2, 1000, 3, ax64, 3, true, false, seed++);
    rope_case(DS_BF16, 2, 77, 3, ax128, 3, true, true, seed++);
    rope_case(DS_F16, 1, 17, 5, ax24, 3, true, true, seed++);

    error_cases();
    gpu_ctx_close(ctx);
    return gpu_finish(TEST);
}
