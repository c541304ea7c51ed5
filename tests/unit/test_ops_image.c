/* test_ops_image.c - the embedding / image half of the CPU op library against references exported by
 * tools/export_ops_image.py (diffusers' own functions where they exist, torch in float64 otherwise):
 * rope + rope_freqs, timestep embedding, 2-D sin-cos position table, conv2d, groupnorm, nearest 2x
 * upsample, patchify (checked through the PatchEmbed conv) and unpatchify; plus the error paths.
 * Default bound: relative error <= 1e-5 and every element within 1e-6 + 1e-5·|ref|. Each test prints
 * "measured <what>: rel .. max_abs .." (collected into docs/ops-parity-image.md). */
#include <cblas.h>
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops.h"
#include "test_util.h"

#define MAX_REL 1e-5
#define ATOL 1e-6
#define RTOL 1e-5

/* Compare with the house rule and print the measured errors. */
static void check(const float *out, const float *ref, int64_t n, const char *what) {
    ds_test_cmp c = ds_test_compare(out, ref, n, ATOL, RTOL);
    fprintf(stderr, "measured %s: rel %.3e max_abs %.3e (n %lld)\n", what, c.rel_err, c.max_abs, (long long)n);
    ds_test_assert_close(out, ref, n, MAX_REL, ATOL, RTOL, what);
}

/* "caseN.suffix" */
static const char *key(char *buf, size_t len, int i, const char *suffix) {
    snprintf(buf, len, "case%d.%s", i, suffix);
    return buf;
}

/* A buffer of n floats filled with NaN, so an op that skips an element fails the comparison. */
static float *poisoned(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    cr_assert_not_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

/* ---- rope ------------------------------------------------------------------------------------ */

/* FluxPosEmbed tables from ids (exact fp64 math rounded once: default bound), then apply_rotary_emb on
 * [B, N, H, d] (same f32 operations as diffusers: default bound), out of place and in place. */
Test(ops_image, rope) {
    ds_safetensors *st = ds_test_open("ops/rope.safetensors");
    int ncases = (int)ds_test_meta_num(st, "ncases");
    cr_assert_eq(ncases, 3);
    for (int i = 0; i < ncases; i++) {
        char k[64], what[160];
        ds_tensor ids, cref, sref, x, oref;
        float *idp = ds_test_read_f32(st, key(k, sizeof k, i, "ids"), &ids);
        float *cp = ds_test_read_f32(st, key(k, sizeof k, i, "cos"), &cref);
        float *sp = ds_test_read_f32(st, key(k, sizeof k, i, "sin"), &sref);
        float *xp = ds_test_read_f32(st, key(k, sizeof k, i, "x"), &x);
        float *op = ds_test_read_f32(st, key(k, sizeof k, i, "out"), &oref);
        int n_axes = (int)ds_test_meta_num(st, key(k, sizeof k, i, "n_axes"));
        double theta = ds_test_meta_num(st, key(k, sizeof k, i, "theta"));
        int axes[8];
        cr_assert(n_axes >= 1 && n_axes <= 8);
        for (int a = 0; a < n_axes; a++) {
            char ak[32];
            snprintf(ak, sizeof ak, "axis%d", a);
            axes[a] = (int)ds_test_meta_num(st, key(k, sizeof k, i, ak));
        }
        ds_err err;
        ds_err_clear(&err);
        int64_t nt = ds_tensor_numel(&cref);
        float *c = poisoned(nt), *s = poisoned(nt);
        ds_tensor ct = ds_tensor_make(c, DS_F32, 2, cref.shape), stt = ds_tensor_make(s, DS_F32, 2, sref.shape);
        cr_assert_eq(ds_op_rope_freqs(&ct, &stt, &ids, axes, n_axes, theta, &err), DS_OK, "%s", err.msg);
        snprintf(what, sizeof what, "rope_freqs case%d cos", i);
        check(c, cp, nt, what);
        snprintf(what, sizeof what, "rope_freqs case%d sin", i);
        check(s, sp, nt, what);

        int64_t nx = ds_tensor_numel(&x);
        float *o = poisoned(nx);
        ds_tensor ot = ds_tensor_make(o, DS_F32, 4, x.shape);
        cr_assert_eq(ds_op_rope(&ot, &x, &cref, &sref, &err), DS_OK, "%s", err.msg);
        snprintf(what, sizeof what, "rope case%d", i);
        check(o, op, nx, what);
        /* In place: out == x. */
        memcpy(o, xp, (size_t)nx * sizeof(float));
        cr_assert_eq(ds_op_rope(&ot, &ot, &cref, &sref, &err), DS_OK, "%s", err.msg);
        snprintf(what, sizeof what, "rope case%d in place", i);
        check(o, op, nx, what);
        free(idp), free(cp), free(sp), free(xp), free(op), free(c), free(s), free(o);
    }
    ds_safetensors_close(st);
}

/* ---- timestep embedding ---------------------------------------------------------------------- */

/* diffusers computes the phase a_k = scale·t·exp(e_k) in f32 with torch's vectorised expf, which is
 * not correctly rounded (it differs from the correctly rounded value by 1 ulp for a few k). A 1-ulp
 * change in f_k, plus the two f32 products that follow, moves the phase by up to |a_k|·2^-22, and
 * sin/cos move by the same amount (|d sin/da| <= 1). So each element is bounded by
 * atol + rtol·|ref| + |a_k|·2^-22; e.g. t = 999, k with f_k ≈ 0.75 gives 1.8e-4 of slack, while small
 * phases keep the default bound. The reference itself is diffusers' f32 output. */
Test(ops_image, timestep_embedding) {
    ds_safetensors *st = ds_test_open("ops/timestep_embedding.safetensors");
    int ncases = (int)ds_test_meta_num(st, "ncases");
    cr_assert_eq(ncases, 5);
    for (int i = 0; i < ncases; i++) {
        char k[64], what[160];
        ds_tensor t, oref;
        float *tp = ds_test_read_f32(st, key(k, sizeof k, i, "t"), &t);
        float *rp = ds_test_read_f32(st, key(k, sizeof k, i, "out"), &oref);
        int flip = (int)ds_test_meta_num(st, key(k, sizeof k, i, "flip"));
        float shift = (float)ds_test_meta_num(st, key(k, sizeof k, i, "shift"));
        float scale = (float)ds_test_meta_num(st, key(k, sizeof k, i, "scale"));
        float period = (float)ds_test_meta_num(st, key(k, sizeof k, i, "max_period"));
        const int64_t B = oref.shape[0], C = oref.shape[1], half = C / 2;
        float *o = poisoned(B * C);
        ds_tensor ot = ds_tensor_make(o, DS_F32, 2, oref.shape);
        ds_err err;
        ds_err_clear(&err);
        cr_assert_eq(ds_op_timestep_embedding(&ot, &t, flip, shift, scale, period, &err), DS_OK, "%s", err.msg);

        ds_test_cmp cmp = ds_test_compare(o, rp, B * C, ATOL, RTOL);
        snprintf(what, sizeof what, "timestep_embedding case%d (C=%lld flip=%d shift=%g)", i, (long long)C, flip,
                 (double)shift);
        fprintf(stderr, "measured %s: rel %.3e max_abs %.3e (n %lld)\n", what, cmp.rel_err, cmp.max_abs,
                (long long)(B * C));
        cr_assert(cmp.rel_err <= MAX_REL, "%s: relative error %.3e", what, cmp.rel_err);
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < C; j++) {
                const double ref = rp[b * C + j], got = o[b * C + j];
                if (C % 2 == 1 && j == C - 1) { /* diffusers' zero pad */
                    cr_assert(got == 0.0 && ref == 0.0, "%s: pad column %g (ref %g)", what, got, ref);
                    continue;
                }
                const int64_t kk = j % half;
                const double f = exp(-log((double)period) * (double)kk / ((double)half - (double)shift));
                const double phase = fabs((double)scale * (double)tp[b] * f);
                const double bound = ATOL + RTOL * fabs(ref) + phase * ldexp(1.0, -22);
                cr_assert(fabs(got - ref) <= bound, "%s: [%lld, %lld] out %.9g ref %.9g (bound %.3g)", what,
                          (long long)b, (long long)j, got, ref, bound);
            }
        free(tp), free(rp), free(o);
    }
    ds_safetensors_close(st);
}

/* ---- 2-D sin-cos position table -------------------------------------------------------------- */

Test(ops_image, pos_embed_2d) {
    ds_safetensors *st = ds_test_open("ops/pos_embed_2d.safetensors");
    int ncases = (int)ds_test_meta_num(st, "ncases");
    cr_assert_eq(ncases, 4);
    for (int i = 0; i < ncases; i++) {
        char k[64], what[96];
        ds_tensor oref;
        float *rp = ds_test_read_f32(st, key(k, sizeof k, i, "out"), &oref);
        int64_t hp = (int64_t)ds_test_meta_num(st, key(k, sizeof k, i, "hp"));
        int64_t wp = (int64_t)ds_test_meta_num(st, key(k, sizeof k, i, "wp"));
        int64_t D = (int64_t)ds_test_meta_num(st, key(k, sizeof k, i, "D"));
        double base = ds_test_meta_num(st, key(k, sizeof k, i, "base_size"));
        double interp = ds_test_meta_num(st, key(k, sizeof k, i, "interpolation_scale"));
        cr_assert(oref.shape[0] == hp * wp && oref.shape[1] == D);
        float *o = poisoned(hp * wp * D);
        ds_tensor ot = ds_tensor_f32(o, 2, hp * wp, D);
        ds_err err;
        ds_err_clear(&err);
        cr_assert_eq(ds_op_pos_embed_2d(&ot, hp, wp, base, interp, &err), DS_OK, "%s", err.msg);
        snprintf(what, sizeof what, "pos_embed_2d case%d (%lldx%lld D=%lld base %g interp %g)", i, (long long)hp,
                 (long long)wp, (long long)D, base, interp);
        check(o, rp, hp * wp * D, what);
        free(rp), free(o);
    }
    ds_safetensors_close(st);
}

/* ---- conv2d ---------------------------------------------------------------------------------- */

/* The documented scratch size: one band's im2col, Cin·k·k x band·Wo floats with
 * band = clamp(DS_OP_CONV2D_BAND_BYTES / (Cin·k·k·Wo·4), 1, Ho); 0 for 1x1 / pad 0. */
static size_t conv_scratch_expect(int64_t cin, int64_t h, int64_t w, int64_t k, int64_t pad) {
    if (k == 1 && pad == 0) return 0;
    const int64_t ho = h + 2 * pad - k + 1, wo = w + 2 * pad - k + 1, row = cin * k * k * wo * 4;
    int64_t band = (int64_t)DS_OP_CONV2D_BAND_BYTES / row;
    band = band < 1 ? 1 : band > ho ? ho : band;
    return (size_t)(row * band);
}

/* Scratch is exactly ds_op_conv2d_scratch_bytes, poisoned, with a guard zone after it that must stay
 * untouched. */
Test(ops_image, conv2d) {
    ds_safetensors *st = ds_test_open("ops/conv2d.safetensors");
    int ncases = (int)ds_test_meta_num(st, "ncases");
    cr_assert_eq(ncases, 5);
    for (int i = 0; i < ncases; i++) {
        char k[64], what[96];
        ds_tensor x, w, b, oref;
        float *xp = ds_test_read_f32(st, key(k, sizeof k, i, "x"), &x);
        float *wp = ds_test_read_f32(st, key(k, sizeof k, i, "w"), &w);
        float *rp = ds_test_read_f32(st, key(k, sizeof k, i, "out"), &oref);
        int has_bias = (int)ds_test_meta_num(st, key(k, sizeof k, i, "has_bias"));
        int pad = (int)ds_test_meta_num(st, key(k, sizeof k, i, "padding"));
        float *bp = has_bias ? ds_test_read_f32(st, key(k, sizeof k, i, "bias"), &b) : NULL;
        size_t sb = ds_op_conv2d_scratch_bytes(x.shape[1], x.shape[2], x.shape[3], w.shape[2], pad);
        cr_assert_eq(sb, conv_scratch_expect(x.shape[1], x.shape[2], x.shape[3], w.shape[2], pad));
        const size_t guard = 256;
        unsigned char *scratch = malloc(sb + guard);
        cr_assert_not_null(scratch);
        memset(scratch, 0xA5, sb + guard);
        int64_t no = ds_tensor_numel(&oref);
        float *o = poisoned(no);
        ds_tensor ot = ds_tensor_make(o, DS_F32, 4, oref.shape);
        ds_err err;
        ds_err_clear(&err);
        cr_assert_eq(ds_op_conv2d(&ot, &x, &w, has_bias ? &b : NULL, pad, sb ? scratch : NULL, sb, &err), DS_OK,
                     "%s", err.msg);
        for (size_t g = 0; g < guard; g++) cr_assert_eq(scratch[sb + g], 0xA5, "scratch guard byte %zu written", g);
        snprintf(what, sizeof what, "conv2d case%d (Cin %lld Cout %lld %lldx%lld k%lld bias %d)", i,
                 (long long)x.shape[1], (long long)w.shape[0], (long long)x.shape[2], (long long)x.shape[3],
                 (long long)w.shape[2], has_bias);
        check(o, rp, no, what);
        free(xp), free(wp), free(rp), free(bp), free(o), free(scratch);
    }
    ds_safetensors_close(st);
}

/* Deterministic N(0, 1) samples (LCG + Box-Muller), times `scale`. */
static float *conv_randn(int64_t n, uint64_t seed, double scale) {
    float *p = malloc((size_t)n * sizeof(float));
    cr_assert_not_null(p);
    uint64_t st = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (int64_t i = 0; i < n; i++) {
        double u[2];
        for (int j = 0; j < 2; j++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            u[j] = ((double)(st >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
        }
        p[i] = (float)(scale * sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
    }
    return p;
}

/* Direct convolution in double (stride 1, zero padding), rounded to f32 once at the end:
 * ref[b, co, oy, ox] = bias[co] + Σ_{ci, u, v} w[co, ci, u, v] · x[b, ci, oy + u − pad, ox + v − pad]. */
static float *conv_direct_ref(const float *x, const float *w, const float *bias, int64_t B, int64_t cin,
                              int64_t cout, int64_t h, int64_t wd, int64_t k, int64_t pad) {
    const int64_t ho = h + 2 * pad - k + 1, wo = wd + 2 * pad - k + 1;
    double *acc = malloc((size_t)(ho * wo) * sizeof(double));
    float *ref = malloc((size_t)(B * cout * ho * wo) * sizeof(float));
    cr_assert(acc && ref);
    for (int64_t b = 0; b < B; b++)
        for (int64_t co = 0; co < cout; co++) {
            for (int64_t p = 0; p < ho * wo; p++) acc[p] = bias ? (double)bias[co] : 0.0;
            for (int64_t ci = 0; ci < cin; ci++)
                for (int64_t u = 0; u < k; u++)
                    for (int64_t v = 0; v < k; v++) {
                        const double wv = w[((co * cin + ci) * k + u) * k + v];
                        const float *xc = x + (b * cin + ci) * h * wd;
                        for (int64_t oy = 0; oy < ho; oy++) {
                            const int64_t iy = oy + u - pad;
                            if (iy < 0 || iy >= h) continue;
                            for (int64_t ox = 0; ox < wo; ox++) {
                                const int64_t ix = ox + v - pad;
                                if (ix >= 0 && ix < wd) acc[oy * wo + ox] += wv * (double)xc[iy * wd + ix];
                            }
                        }
                    }
            for (int64_t p = 0; p < ho * wo; p++) ref[(b * cout + co) * ho * wo + p] = (float)acc[p];
        }
    free(acc);
    return ref;
}

/* The pre-banding formulation: per image, im2col of the whole image [Cin·9, H·W] (3x3, pad 1), then
 * one sgemm out_b = w · col (+ bias). */
static float *conv_whole_image(const float *x, const float *w, const float *bias, int64_t B, int64_t cin,
                               int64_t cout, int64_t h, int64_t wd) {
    const int64_t K = cin * 9, P = h * wd;
    float *col = malloc((size_t)(K * P) * sizeof(float)), *o = malloc((size_t)(B * cout * P) * sizeof(float));
    cr_assert(col && o);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t r = 0; r < K; r++) {
            const int64_t ci = r / 9, u = (r / 3) % 3, v = r % 3;
            for (int64_t oy = 0; oy < h; oy++)
                for (int64_t ox = 0; ox < wd; ox++) {
                    const int64_t iy = oy + u - 1, ix = ox + v - 1;
                    col[r * P + oy * wd + ox] =
                        iy >= 0 && iy < h && ix >= 0 && ix < wd ? x[((b * cin + ci) * h + iy) * wd + ix] : 0.0f;
                }
        }
        float *ob = o + b * cout * P;
        for (int64_t c = 0; c < cout; c++)
            for (int64_t p = 0; p < P; p++) ob[c * P + p] = bias ? bias[c] : 0.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout, (int)P, (int)K, 1.0f, w, (int)K, col,
                    (int)P, bias ? 1.0f : 0.0f, ob, (int)P);
    }
    free(col);
    return o;
}

/* Images tall or wide enough that the im2col runs in several bands under the real budget
 * (DS_OP_CONV2D_BAND_BYTES = 8 MiB), against a direct double convolution:
 *   - Cin 256, W 64: one im2col row is 2304·64·4 = 576 KiB, so 14 rows per band; H 71 gives 5 full
 *     bands + a 1-row tail (B 2, bias), H 70 exactly 5 full bands (no bias);
 *   - Cin 512, W 512: one row is 4608·512·4 = 9 MiB > budget, so the band is 1 row and the scratch
 *     is that one row (H 3: the first and last rows touch the zero padding).
 * Scratch is exactly ds_op_conv2d_scratch_bytes (checked against the documented formula), poisoned,
 * with an untouched guard zone after it; the output starts as NaN.
 * Bound: rel <= 1e-5 and rtol 1e-5 as by default, but per-element atol = sqrt(K)·eps (eps = 2^-23):
 * 5.7e-6 for K = 2304, 8.1e-6 for K = 4608, instead of 1e-6. Why: x ~ N(0,1), w ~ N(0,1/K) (the
 * export_ops_image.py scaling), so every partial sum of the f32 K-loop has std <= 1 and each of the K
 * additions rounds by up to u = eps/2 of it: the absolute error of an output element is a random walk
 * of std ~ u·sqrt(K/6) (1.2e-6 for K = 2304), whatever the size of the result, so elements whose
 * exact value is near 0 exceed 1e-6 by rounding alone (measured: one of 22400 at 1.2e-6 with
 * |ref| = 0.007). sqrt(K)·eps is ~5 of those std. The K-loop is that of a whole-image sgemm (banding
 * only changes the column count N of each product), so the test also prints how many elements
 * differ from one whole-image im2col + sgemm (0 here with OpenBLAS; not asserted, as a BLAS may pick
 * a different kernel for a different N). */
Test(ops_image, conv2d_banded) {
    static const struct {
        int64_t B, cin, cout, h, w;
        int     bias;
        int64_t bands; /* expected band count per image */
    } cases[] = {
        {2, 256, 8, 71, 64, 1, 6},
        {1, 256, 5, 70, 64, 0, 5},
        {1, 512, 3, 3, 512, 1, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int64_t B = cases[i].B, cin = cases[i].cin, cout = cases[i].cout, h = cases[i].h, wd = cases[i].w;
        const int64_t K = cin * 9;
        float *x = conv_randn(B * cin * h * wd, 300 + i, 1.0);
        float *w = conv_randn(cout * K, 400 + i, 1.0 / sqrt((double)K));
        float *bias = cases[i].bias ? conv_randn(cout, 500 + i, 0.5) : NULL;
        float *ref = conv_direct_ref(x, w, bias, B, cin, cout, h, wd, 3, 1);

        const size_t sb = ds_op_conv2d_scratch_bytes(cin, h, wd, 3, 1);
        cr_assert_eq(sb, conv_scratch_expect(cin, h, wd, 3, 1), "case%zu: scratch %zu", i, sb);
        const size_t row = (size_t)(K * wd) * sizeof(float), band = sb / row;
        cr_assert_eq(sb % row, 0);
        cr_assert_eq((h + band - 1) / band, (size_t)cases[i].bands, "case%zu: band %zu rows", i, band);
        cr_assert(sb <= DS_OP_CONV2D_BAND_BYTES || band == 1, "case%zu: scratch %zu over budget", i, sb);
        /* does not grow with H beyond one band */
        cr_assert_eq(ds_op_conv2d_scratch_bytes(cin, 100 * h, wd, 3, 1), sb);

        const size_t guard = 256;
        unsigned char *scratch = malloc(sb + guard);
        cr_assert_not_null(scratch);
        memset(scratch, 0xA5, sb + guard);
        const int64_t no = B * cout * h * wd;
        float *o = poisoned(no);
        ds_tensor xt = ds_tensor_f32(x, 4, B, cin, h, wd), wt = ds_tensor_f32(w, 4, cout, cin, 3, 3),
                  bt = ds_tensor_f32(bias, 1, cout), ot = ds_tensor_f32(o, 4, B, cout, h, wd);
        ds_err err;
        ds_err_clear(&err);
        cr_assert_eq(ds_op_conv2d(&ot, &xt, &wt, bias ? &bt : NULL, 1, scratch, sb, &err), DS_OK, "%s", err.msg);
        for (size_t g = 0; g < guard; g++) cr_assert_eq(scratch[sb + g], 0xA5, "scratch guard byte %zu written", g);
        char what[128];
        snprintf(what, sizeof what, "conv2d banded case%zu (B %lld Cin %lld Cout %lld %lldx%lld, %zu-row bands)", i,
                 (long long)B, (long long)cin, (long long)cout, (long long)h, (long long)wd, band);
        /* per-element atol from the f32 K-sum (see above); rel and rtol stay at the default */
        const double atol_k = sqrt((double)K) * FLT_EPSILON;
        ds_test_cmp c = ds_test_compare(o, ref, no, atol_k, RTOL);
        fprintf(stderr, "measured %s: rel %.3e max_abs %.3e (n %lld, atol %.2e)\n", what, c.rel_err, c.max_abs,
                (long long)no, atol_k);
        ds_test_assert_close(o, ref, no, MAX_REL, atol_k, RTOL, what);

#ifdef _OPENMP
        /* one OpenMP thread gives the same bits (im2col is data movement; the sgemm never splits K) */
        {
            const int saved = omp_get_max_threads();
            float *o1 = poisoned(no);
            ds_tensor o1t = ds_tensor_f32(o1, 4, B, cout, h, wd);
            omp_set_num_threads(1);
            ds_status st1 = ds_op_conv2d(&o1t, &xt, &wt, bias ? &bt : NULL, 1, scratch, sb, &err);
            omp_set_num_threads(saved);
            cr_assert_eq(st1, DS_OK, "%s", err.msg);
            cr_assert(memcmp(o1, o, (size_t)no * sizeof(float)) == 0, "case%zu: 1 thread differs from %d", i, saved);
            free(o1);
        }
#endif
        /* the same numbers as one whole-image im2col + sgemm (the pre-banding formulation) */
        float *full = conv_whole_image(x, w, bias, B, cin, cout, h, wd);
        int64_t ndiff = 0;
        for (int64_t j = 0; j < no; j++) ndiff += memcmp(&o[j], &full[j], sizeof(float)) != 0;
        fprintf(stderr, "measured %s vs whole-image sgemm: %lld of %lld elements differ\n", what, (long long)ndiff,
                (long long)no);
        free(full);
        free(x), free(w), free(bias), free(ref), free(scratch), free(o);
    }
}

/* ---- groupnorm ------------------------------------------------------------------------------- */

Test(ops_image, groupnorm) {
    ds_safetensors *st = ds_test_open("ops/groupnorm.safetensors");
    int ncases = (int)ds_test_meta_num(st, "ncases");
    cr_assert_eq(ncases, 4);
    for (int i = 0; i < ncases; i++) {
        char k[64], what[96];
        ds_tensor x, w, b, oref;
        float *xp = ds_test_read_f32(st, key(k, sizeof k, i, "x"), &x);
        float *rp = ds_test_read_f32(st, key(k, sizeof k, i, "out"), &oref);
        int affine = (int)ds_test_meta_num(st, key(k, sizeof k, i, "affine"));
        int64_t G = (int64_t)ds_test_meta_num(st, key(k, sizeof k, i, "groups"));
        float eps = (float)ds_test_meta_num(st, key(k, sizeof k, i, "eps"));
        float *wp = affine ? ds_test_read_f32(st, key(k, sizeof k, i, "weight"), &w) : NULL;
        float *bp = affine ? ds_test_read_f32(st, key(k, sizeof k, i, "bias"), &b) : NULL;
        int64_t n = ds_tensor_numel(&x);
        float *o = poisoned(n);
        ds_tensor ot = ds_tensor_make(o, DS_F32, x.ndim, x.shape);
        ds_err err;
        ds_err_clear(&err);
        cr_assert_eq(ds_op_groupnorm(&ot, &x, G, affine ? &w : NULL, affine ? &b : NULL, eps, &err), DS_OK, "%s",
                     err.msg);
        snprintf(what, sizeof what, "groupnorm case%d (%dD C=%lld G=%lld affine %d)", i, x.ndim,
                 (long long)x.shape[1], (long long)G, affine);
        check(o, rp, n, what);
        /* In place. */
        memcpy(o, xp, (size_t)n * sizeof(float));
        cr_assert_eq(ds_op_groupnorm(&ot, &ot, G, affine ? &w : NULL, affine ? &b : NULL, eps, &err), DS_OK, "%s",
                     err.msg);
        check(o, rp, n, "groupnorm in place");
        free(xp), free(rp), free(wp), free(bp), free(o);
    }
    ds_safetensors_close(st);
}

/* ---- upsample / patchify / unpatchify (exact data movement) ---------------------------------- */

Test(ops_image, upsample_nearest2x) {
    ds_safetensors *st = ds_test_open("ops/upsample.safetensors");
    int ncases = (int)ds_test_meta_num(st, "ncases");
    cr_assert_eq(ncases, 2);
    for (int i = 0; i < ncases; i++) {
        char k[64];
        ds_tensor x, oref;
        float *xp = ds_test_read_f32(st, key(k, sizeof k, i, "x"), &x);
        float *rp = ds_test_read_f32(st, key(k, sizeof k, i, "out"), &oref);
        int64_t n = ds_tensor_numel(&oref);
        float *o = poisoned(n);
        ds_tensor ot = ds_tensor_make(o, DS_F32, 4, oref.shape);
        ds_err err;
        ds_err_clear(&err);
        cr_assert_eq(ds_op_upsample_nearest2x(&ot, &x, &err), DS_OK, "%s", err.msg);
        cr_assert(memcmp(o, rp, (size_t)n * sizeof(float)) == 0, "upsample case%d differs from F.interpolate", i);
        fprintf(stderr, "measured upsample case%d: bit-exact (n %lld)\n", i, (long long)n);
        free(xp), free(rp), free(o);
    }
    ds_safetensors_close(st);
}

/* patchify must equal the unfold reference exactly, and patchify + GEMM with the conv weight viewed as
 * [D, C·p·p] (+ bias) must equal F.conv2d(stride=p) of PatchEmbed (fp64 reference; the GEMM here is
 * accumulated in double, so the only error is the f32 rounding of the stored result). */
Test(ops_image, patchify) {
    ds_safetensors *st = ds_test_open("ops/patchify.safetensors");
    int ncases = (int)ds_test_meta_num(st, "ncases");
    cr_assert_eq(ncases, 3);
    for (int i = 0; i < ncases; i++) {
        char k[64], what[160];
        ds_tensor x, w, b, pref, cref;
        float *xp = ds_test_read_f32(st, key(k, sizeof k, i, "x"), &x);
        float *wp = ds_test_read_f32(st, key(k, sizeof k, i, "w"), &w);
        float *bp = ds_test_read_f32(st, key(k, sizeof k, i, "bias"), &b);
        float *pp = ds_test_read_f32(st, key(k, sizeof k, i, "patches"), &pref);
        float *cp = ds_test_read_f32(st, key(k, sizeof k, i, "conv_tokens"), &cref);
        int64_t p = (int64_t)ds_test_meta_num(st, key(k, sizeof k, i, "p"));
        int64_t n = ds_tensor_numel(&pref);
        float *o = poisoned(n);
        ds_tensor ot = ds_tensor_make(o, DS_F32, 3, pref.shape);
        ds_err err;
        ds_err_clear(&err);
        cr_assert_eq(ds_op_patchify(&ot, &x, p, &err), DS_OK, "%s", err.msg);
        cr_assert(memcmp(o, pp, (size_t)n * sizeof(float)) == 0, "patchify case%d differs from unfold", i);

        const int64_t B = pref.shape[0], N = pref.shape[1], F = pref.shape[2], D = w.shape[0];
        cr_assert_eq(F, w.shape[1] * p * p);
        float *tok = malloc((size_t)(B * N * D) * sizeof(float));
        cr_assert_not_null(tok);
        for (int64_t r = 0; r < B * N; r++)
            for (int64_t e = 0; e < D; e++) {
                double acc = bp[e];
                for (int64_t f = 0; f < F; f++) acc += (double)o[r * F + f] * (double)wp[e * F + f];
                tok[r * D + e] = (float)acc;
            }
        snprintf(what, sizeof what, "patchify+gemm vs conv case%d (p=%lld)", i, (long long)p);
        check(tok, cp, B * N * D, what);
        free(xp), free(wp), free(bp), free(pp), free(cp), free(o), free(tok);
    }
    ds_safetensors_close(st);
}

Test(ops_image, unpatchify) {
    ds_safetensors *st = ds_test_open("ops/unpatchify.safetensors");
    int ncases = (int)ds_test_meta_num(st, "ncases");
    cr_assert_eq(ncases, 3);
    for (int i = 0; i < ncases; i++) {
        char k[64];
        ds_tensor y, oref;
        float *yp = ds_test_read_f32(st, key(k, sizeof k, i, "y"), &y);
        float *rp = ds_test_read_f32(st, key(k, sizeof k, i, "out"), &oref);
        int64_t p = (int64_t)ds_test_meta_num(st, key(k, sizeof k, i, "p"));
        int64_t n = ds_tensor_numel(&oref);
        float *o = poisoned(n);
        ds_tensor ot = ds_tensor_make(o, DS_F32, 4, oref.shape);
        ds_err err;
        ds_err_clear(&err);
        cr_assert_eq(ds_op_unpatchify(&ot, &y, p, &err), DS_OK, "%s", err.msg);
        cr_assert(memcmp(o, rp, (size_t)n * sizeof(float)) == 0, "unpatchify case%d differs from DiT's einsum", i);
        fprintf(stderr, "measured unpatchify case%d: bit-exact (n %lld)\n", i, (long long)n);
        free(yp), free(rp), free(o);
    }
    ds_safetensors_close(st);
}

/* Round trip: unpatchify(patchify(x)) is not an identity in general (the orders differ), but with C = 1
 * both orders coincide, so it must return x exactly. */
Test(ops_image, patchify_unpatchify_c1_roundtrip) {
    float x[2 * 1 * 6 * 4], pt[2 * 6 * 4], back[2 * 1 * 6 * 4];
    for (int i = 0; i < 48; i++) x[i] = (float)i * 0.5f - 3.0f;
    ds_tensor xt = ds_tensor_f32(x, 4, 2, 1, 6, 4), pt_t = ds_tensor_f32(pt, 3, 2, 6, 4),
              bt = ds_tensor_f32(back, 4, 2, 1, 6, 4);
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_op_patchify(&pt_t, &xt, 2, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_op_unpatchify(&bt, &pt_t, 2, &err), DS_OK, "%s", err.msg);
    cr_assert(memcmp(x, back, sizeof x) == 0);
}

/* ---- thread-count invariance ------------------------------------------------------------------ */

/* Every op here computes independent rows (sgemm splits only M/N), so 1 and 3 threads must agree
 * bitwise: conv2d (big case), groupnorm, pos_embed_2d, rope_freqs + rope. */
Test(ops_image, thread_invariance) {
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    float *res[2][5] = {{0}};
    int64_t len[5] = {0};
    ds_safetensors *cst = ds_test_open("ops/conv2d.safetensors");
    ds_safetensors *gst = ds_test_open("ops/groupnorm.safetensors");
    ds_safetensors *rst = ds_test_open("ops/rope.safetensors");
    ds_tensor cx, cw, cb, cref, gx, gw, gb, gref, ids, rc, rs, rx, rref;
    float *bufs[] = {ds_test_read_f32(cst, "case4.x", &cx), ds_test_read_f32(cst, "case4.w", &cw),
                     ds_test_read_f32(cst, "case4.bias", &cb), ds_test_read_f32(cst, "case4.out", &cref),
                     ds_test_read_f32(gst, "case0.x", &gx), ds_test_read_f32(gst, "case0.weight", &gw),
                     ds_test_read_f32(gst, "case0.bias", &gb), ds_test_read_f32(gst, "case0.out", &gref),
                     ds_test_read_f32(rst, "case1.ids", &ids), ds_test_read_f32(rst, "case1.cos", &rc),
                     ds_test_read_f32(rst, "case1.sin", &rs), ds_test_read_f32(rst, "case1.x", &rx),
                     ds_test_read_f32(rst, "case1.out", &rref)};
    const int axes[3] = {8, 12, 12};
    size_t sb = ds_op_conv2d_scratch_bytes(cx.shape[1], cx.shape[2], cx.shape[3], 3, 1);
    float *scratch = malloc(sb);
    cr_assert_not_null(scratch);
    len[0] = ds_tensor_numel(&cref), len[1] = ds_tensor_numel(&gref), len[2] = 12 * 18 * 40;
    len[3] = 2 * ds_tensor_numel(&rc), len[4] = ds_tensor_numel(&rref);
    for (int run = 0; run < 2; run++) {
        omp_set_num_threads(run == 0 ? 1 : 3);
        for (int j = 0; j < 5; j++) res[run][j] = poisoned(len[j]);
        ds_err err;
        ds_err_clear(&err);
        ds_tensor o0 = ds_tensor_make(res[run][0], DS_F32, 4, cref.shape);
        cr_assert_eq(ds_op_conv2d(&o0, &cx, &cw, &cb, 1, scratch, sb, &err), DS_OK, "%s", err.msg);
        ds_tensor o1 = ds_tensor_make(res[run][1], DS_F32, 4, gref.shape);
        cr_assert_eq(ds_op_groupnorm(&o1, &gx, 32, &gw, &gb, 1e-6f, &err), DS_OK, "%s", err.msg);
        ds_tensor o2 = ds_tensor_f32(res[run][2], 2, 12 * 18, 40);
        cr_assert_eq(ds_op_pos_embed_2d(&o2, 12, 18, 64.0, 2.0, &err), DS_OK, "%s", err.msg);
        ds_tensor oc = ds_tensor_make(res[run][3], DS_F32, 2, rc.shape);
        ds_tensor os = ds_tensor_make(res[run][3] + ds_tensor_numel(&rc), DS_F32, 2, rc.shape);
        cr_assert_eq(ds_op_rope_freqs(&oc, &os, &ids, axes, 3, 10000.0, &err), DS_OK, "%s", err.msg);
        ds_tensor o4 = ds_tensor_make(res[run][4], DS_F32, 4, rx.shape);
        cr_assert_eq(ds_op_rope(&o4, &rx, &oc, &os, &err), DS_OK, "%s", err.msg);
    }
    omp_set_num_threads(saved);
    const char *names[5] = {"conv2d", "groupnorm", "pos_embed_2d", "rope_freqs", "rope"};
    for (int j = 0; j < 5; j++)
        cr_assert(memcmp(res[0][j], res[1][j], (size_t)len[j] * sizeof(float)) == 0, "%s: 3 threads differ from 1",
                  names[j]);
    check(res[1][0], bufs[3], len[0], "conv2d 3 threads");
    check(res[1][1], bufs[7], len[1], "groupnorm 3 threads");
    check(res[1][4], bufs[12], len[4], "rope 3 threads");
    for (int j = 0; j < 5; j++) free(res[0][j]), free(res[1][j]);
    for (size_t j = 0; j < sizeof bufs / sizeof bufs[0]; j++) free(bufs[j]);
    free(scratch);
    ds_safetensors_close(cst), ds_safetensors_close(gst), ds_safetensors_close(rst);
#else
    cr_skip_test("built without OpenMP");
#endif
}

/* ---- error paths ----------------------------------------------------------------------------- */

/* Assert status `want` and a non-empty message mentioning `needle`. */
static void expect_err(ds_status got, ds_status want, const ds_err *err, const char *needle, const char *what) {
    cr_assert_eq(got, want, "%s: status %s, want %s (%s)", what, ds_status_name(got), ds_status_name(want), err->msg);
    cr_assert(err->msg[0] != '\0', "%s: empty error message", what);
    cr_assert(strstr(err->msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err->msg, needle);
}

Test(ops_image, bad_shapes_rope) {
    static float buf[4096], c[512], s[512], ids[64];
    ds_err err;
    ds_err_clear(&err);
    /* odd head dim */
    ds_tensor x = ds_tensor_f32(buf, 4, 1, 4, 2, 5), ct = ds_tensor_f32(c, 2, 4, 5), stt = ds_tensor_f32(s, 2, 4, 5);
    expect_err(ds_op_rope(&x, &x, &ct, &stt, &err), DS_ERR_INVALID_ARG, &err, "odd", "rope odd d");
    /* cos table of the wrong length */
    ds_tensor x2 = ds_tensor_f32(buf, 4, 1, 4, 2, 6), c2 = ds_tensor_f32(c, 2, 3, 6), s2 = ds_tensor_f32(s, 2, 4, 6);
    expect_err(ds_op_rope(&x2, &x2, &c2, &s2, &err), DS_ERR_INVALID_ARG, &err, "cos", "rope cos shape");
    /* axes_dim summing to the wrong width, and an odd axis */
    ds_tensor it = ds_tensor_f32(ids, 2, 4, 3), c3 = ds_tensor_f32(c, 2, 4, 16), s3 = ds_tensor_f32(s, 2, 4, 16);
    int axes_bad_sum[3] = {4, 6, 4};
    expect_err(ds_op_rope_freqs(&c3, &s3, &it, axes_bad_sum, 3, 10000.0, &err), DS_ERR_INVALID_ARG, &err, "cos",
               "rope_freqs width");
    int axes_odd[3] = {4, 5, 7};
    expect_err(ds_op_rope_freqs(&c3, &s3, &it, axes_odd, 3, 10000.0, &err), DS_ERR_INVALID_ARG, &err, "even",
               "rope_freqs odd axis");
    int axes_ok[3] = {4, 6, 6};
    expect_err(ds_op_rope_freqs(&c3, &s3, &it, axes_ok, 2, 10000.0, &err), DS_ERR_INVALID_ARG, &err, "n_axes",
               "rope_freqs ids columns");
    /* non-f32 and non-CPU tensors */
    ds_tensor xb = x2;
    xb.dtype = DS_BF16;
    expect_err(ds_op_rope(&x2, &xb, &c3, &s3, &err), DS_ERR_UNSUPPORTED, &err, "x", "rope bf16");
    ds_tensor xg = x2;
    xg.device.kind = DS_DEVICE_CUDA;
    expect_err(ds_op_rope(&x2, &xg, &c3, &s3, &err), DS_ERR_UNSUPPORTED, &err, "CUDA", "rope cuda");
}

Test(ops_image, bad_shapes_embeddings) {
    static float t[4], out[4 * 64];
    ds_err err;
    ds_err_clear(&err);
    ds_tensor tt = ds_tensor_f32(t, 1, 4), o3 = ds_tensor_f32(out, 2, 3, 16);
    expect_err(ds_op_timestep_embedding(&o3, &tt, 1, 0.0f, 1.0f, 10000.0f, &err), DS_ERR_INVALID_ARG, &err, "rows",
               "timestep rows");
    ds_tensor o2 = ds_tensor_f32(out, 2, 4, 2);
    expect_err(ds_op_timestep_embedding(&o2, &tt, 1, 1.0f, 1.0f, 10000.0f, &err), DS_ERR_INVALID_ARG, &err,
               "downscale_freq_shift", "timestep half == shift");
    ds_tensor pe = ds_tensor_f32(out, 2, 6, 10);
    expect_err(ds_op_pos_embed_2d(&pe, 2, 3, 16.0, 1.0, &err), DS_ERR_INVALID_ARG, &err, "multiple of 4",
               "pos_embed D % 4");
    ds_tensor pe2 = ds_tensor_f32(out, 2, 6, 8);
    expect_err(ds_op_pos_embed_2d(&pe2, 2, 4, 16.0, 1.0, &err), DS_ERR_INVALID_ARG, &err, "rows", "pos_embed rows");
    expect_err(ds_op_pos_embed_2d(&pe2, 2, 3, 16.0, 0.0, &err), DS_ERR_INVALID_ARG, &err, "interpolation_scale",
               "pos_embed interp 0");
}

Test(ops_image, bad_shapes_conv_groupnorm) {
    static float x[2 * 5 * 9 * 11], w[7 * 5 * 9], b[7], o[2 * 7 * 9 * 11], scratch[5 * 9 * 9 * 11];
    ds_err err;
    ds_err_clear(&err);
    ds_tensor xt = ds_tensor_f32(x, 4, 2, 5, 9, 11), wt = ds_tensor_f32(w, 4, 7, 5, 3, 3), bt = ds_tensor_f32(b, 1, 7),
              ot = ds_tensor_f32(o, 4, 2, 7, 9, 11);
    size_t sb = ds_op_conv2d_scratch_bytes(5, 9, 11, 3, 1);
    cr_assert_eq(sb, sizeof scratch);
    cr_assert_eq(ds_op_conv2d(&ot, &xt, &wt, &bt, 1, scratch, sb, &err), DS_OK, "%s", err.msg);
    expect_err(ds_op_conv2d(&ot, &xt, &wt, &bt, 1, scratch, sb - 4, &err), DS_ERR_INVALID_ARG, &err, "scratch",
               "conv scratch too small");
    expect_err(ds_op_conv2d(&ot, &xt, &wt, &bt, 1, NULL, sb, &err), DS_ERR_INVALID_ARG, &err, "scratch",
               "conv scratch NULL");
    expect_err(ds_op_conv2d(&ot, &xt, &wt, &bt, 0, scratch, sb, &err), DS_ERR_INVALID_ARG, &err, "padding",
               "conv padding");
    ds_tensor w4 = ds_tensor_f32(w, 4, 7, 4, 3, 3);
    expect_err(ds_op_conv2d(&ot, &xt, &w4, &bt, 1, scratch, sb, &err), DS_ERR_INVALID_ARG, &err, "input channels",
               "conv Cin");
    ds_tensor w5 = ds_tensor_f32(w, 4, 7, 1, 5, 5);
    ds_tensor x1 = ds_tensor_f32(x, 4, 2, 1, 9, 11);
    expect_err(ds_op_conv2d(&ot, &x1, &w5, &bt, 2, scratch, sb, &err), DS_ERR_INVALID_ARG, &err, "kernel",
               "conv 5x5");
    ds_tensor b6 = ds_tensor_f32(b, 1, 6);
    expect_err(ds_op_conv2d(&ot, &xt, &wt, &b6, 1, scratch, sb, &err), DS_ERR_INVALID_ARG, &err, "bias", "conv bias");
    ds_tensor o_bad = ds_tensor_f32(o, 4, 2, 7, 9, 10);
    expect_err(ds_op_conv2d(&o_bad, &xt, &wt, &bt, 1, scratch, sb, &err), DS_ERR_INVALID_ARG, &err, "out",
               "conv out shape");

    ds_tensor g9 = ds_tensor_f32(x, 4, 2, 9, 5, 11), g9o = ds_tensor_f32(o, 4, 2, 9, 5, 11);
    expect_err(ds_op_groupnorm(&g9o, &g9, 4, NULL, NULL, 1e-6f, &err), DS_ERR_INVALID_ARG, &err, "divisible",
               "groupnorm C % G");
    expect_err(ds_op_groupnorm(&g9o, &g9, 0, NULL, NULL, 1e-6f, &err), DS_ERR_INVALID_ARG, &err, "divisible",
               "groupnorm G = 0");
    ds_tensor wrong_w = ds_tensor_f32(w, 1, 8);
    expect_err(ds_op_groupnorm(&g9o, &g9, 3, &wrong_w, NULL, 1e-6f, &err), DS_ERR_INVALID_ARG, &err, "weight",
               "groupnorm weight");
    ds_tensor g2 = ds_tensor_f32(x, 2, 18, 55), g2o = ds_tensor_f32(o, 2, 18, 55);
    expect_err(ds_op_groupnorm(&g2o, &g2, 3, NULL, NULL, 1e-6f, &err), DS_ERR_INVALID_ARG, &err, "expected",
               "groupnorm 2-D");
}

Test(ops_image, bad_shapes_resample) {
    static float x[2 * 3 * 8 * 6], o[4 * 2 * 3 * 8 * 6];
    ds_err err;
    ds_err_clear(&err);
    ds_tensor xt = ds_tensor_f32(x, 4, 2, 3, 8, 6);
    ds_tensor up_bad = ds_tensor_f32(o, 4, 2, 3, 16, 11);
    expect_err(ds_op_upsample_nearest2x(&up_bad, &xt, &err), DS_ERR_INVALID_ARG, &err, "out", "upsample out");
    ds_tensor x7 = ds_tensor_f32(x, 4, 2, 3, 7, 6), p7 = ds_tensor_f32(o, 3, 2, 9, 12);
    expect_err(ds_op_patchify(&p7, &x7, 2, &err), DS_ERR_INVALID_ARG, &err, "multiple", "patchify H % p");
    ds_tensor pbad = ds_tensor_f32(o, 3, 2, 12, 11);
    expect_err(ds_op_patchify(&pbad, &xt, 2, &err), DS_ERR_INVALID_ARG, &err, "out", "patchify out shape");
    expect_err(ds_op_patchify(&pbad, &xt, 0, &err), DS_ERR_INVALID_ARG, &err, "patch size", "patchify p = 0");
    ds_tensor y = ds_tensor_f32(x, 3, 2, 12, 11), ub = ds_tensor_f32(o, 4, 2, 3, 8, 6);
    expect_err(ds_op_unpatchify(&ub, &y, 2, &err), DS_ERR_INVALID_ARG, &err, "y", "unpatchify y shape");
    ds_tensor u7 = ds_tensor_f32(o, 4, 2, 3, 7, 6);
    expect_err(ds_op_unpatchify(&u7, &y, 2, &err), DS_ERR_INVALID_ARG, &err, "multiple", "unpatchify H % p");
    /* out overlapping the input */
    ds_tensor upo = ds_tensor_f32(x, 4, 1, 1, 2, 2), upx = ds_tensor_f32(x + 1, 4, 1, 1, 1, 1);
    expect_err(ds_op_upsample_nearest2x(&upo, &upx, &err), DS_ERR_INVALID_ARG, &err, "overlaps", "upsample alias");
}

/* ds_op_rmsnorm_rope is the pair rmsnorm -> rope (its CUDA twin fuses them): bit-identical to the two calls on
 * the CPU, with and without a weight, in place and not; 3-D x and an odd d are refused. */
Test(ops_image, rmsnorm_rope_equals_the_two_ops) {
    enum { B = 2, S = 5, H = 3, D = 8 };
    static float x[B * S * H * D], c[S * D], sn[S * D], w[D], a[B * S * H * D], b[B * S * H * D];
    for (int i = 0; i < B * S * H * D; i++) x[i] = (float)sin(0.37 * i) * 2.0f;
    for (int i = 0; i < S * D; i++) c[i] = (float)cos(0.11 * i), sn[i] = (float)sin(0.11 * i);
    for (int i = 0; i < D; i++) w[i] = 0.5f + 0.1f * (float)i;
    ds_tensor tx = ds_tensor_f32(x, 4, B, S, H, D), ta = ds_tensor_f32(a, 4, B, S, H, D),
              tb = ds_tensor_f32(b, 4, B, S, H, D), tc = ds_tensor_f32(c, 2, S, D), ts = ds_tensor_f32(sn, 2, S, D),
              tw = ds_tensor_f32(w, 1, D);
    ds_err err;
    ds_err_clear(&err);
    for (int with_w = 0; with_w < 2; with_w++) {
        const ds_tensor *wt = with_w ? &tw : NULL;
        cr_assert_eq(ds_op_rmsnorm_rope(&ta, &tx, wt, 1e-6f, &tc, &ts, &err), DS_OK, "%s", err.msg);
        cr_assert_eq(ds_op_rmsnorm(&tb, &tx, wt, 1e-6f, &err), DS_OK, "%s", err.msg);
        cr_assert_eq(ds_op_rope(&tb, &tb, &tc, &ts, &err), DS_OK, "%s", err.msg);
        cr_assert_eq(memcmp(a, b, sizeof a), 0, "not the two ops' bits (weight %d)", with_w);
        int rotated = 0; /* the rotation ran: not just the norm */
        cr_assert_eq(ds_op_rmsnorm(&tb, &tx, wt, 1e-6f, &err), DS_OK, "%s", err.msg);
        for (int i = 0; i < B * S * H * D; i++) rotated |= a[i] != b[i];
        cr_assert(rotated, "output equals the plain rmsnorm");
        memcpy(b, x, sizeof b); /* in place */
        cr_assert_eq(ds_op_rmsnorm_rope(&tb, &tb, wt, 1e-6f, &tc, &ts, &err), DS_OK, "%s", err.msg);
        cr_assert_eq(memcmp(a, b, sizeof a), 0, "in place differs (weight %d)", with_w);
    }
    ds_tensor x3 = ds_tensor_f32(x, 3, B * S, H, D);
    expect_err(ds_op_rmsnorm_rope(&x3, &x3, NULL, 1e-6f, &tc, &ts, &err), DS_ERR_INVALID_ARG, &err, "4-D",
               "rmsnorm_rope 3-D x");
    ds_tensor xo = ds_tensor_f32(x, 4, 1, S, 2, 7), co = ds_tensor_f32(c, 2, S, 7), so = ds_tensor_f32(sn, 2, S, 7);
    memcpy(a, x, sizeof a);
    ds_tensor ao = ds_tensor_f32(a, 4, 1, S, 2, 7);
    expect_err(ds_op_rmsnorm_rope(&ao, &xo, NULL, 1e-6f, &co, &so, &err), DS_ERR_INVALID_ARG, &err, "odd",
               "rmsnorm_rope odd d");
}
