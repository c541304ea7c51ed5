/* gpu_ops_image.c - GPU twin tests of the image-shaped ops (ops_image.cu) against the CPU reference ops:
 * conv2d (1x1 and 3x3, with and without bias; im2col bands in caller-owned device scratch + cuBLASLt),
 * groupnorm (no affine, weight only, bias only, both; in place), upsample_nearest2x, patchify and unpatchify.
 * Every op runs in f32, bf16 and f16 on inputs rounded to the dtype on the host first (method:
 * gpu_ops_util.h; tolerances: gpu_tolerances.h, classes CONV, NORM and EXACT for the data movement).
 *
 * Shapes: conv2d at odd sizes Cin 5 -> Cout 7 on 9 x 13 (B = 2: nothing is a multiple of a tile; padding
 * touches every border row and column), 3x3 on 1 x 1 and 2 x 67 images (padding only / a thin band), the
 * VAE-like 64 -> 64 on 48 x 48, 1x1 128 -> 64 on 32 x 40 (no im2col), and 64 -> 32 on 96 x 96 with B = 2,
 * whose im2col matrix (64*9 x 96*96 f32 = 21 MiB) is over DS_OP_CONV2D_BAND_BYTES, so the CPU takes 3 bands
 * (37 + 37 + 22 rows) and the device several. Scratch is ds_op_conv2d_scratch_bytes(...) of device memory
 * (NULL when 0) followed by a guard that must stay untouched. Weights U[-1, 1)/sqrt(Cin*k*k), x U[-1, 1),
 * bias U[-0.5, 0.5): outputs ~0.3. GroupNorm: [2, 6, 9, 13] with 3 and 6 groups, the VAE's 32 groups of
 * [1, 128, 32, 32] (4096 elements per group) and of [2, 64, 77] ([B, C, L]), and [1, 32, 1, 1] (one element
 * per group: variance 0); x = U[-1, 1) + a per-channel offset in [-0.5, 0.5) (|group mean| < group std: well
 * conditioned, see the NORM row). upsample: [2, 3, 9, 13], [1, 64, 32, 32], [1, 1, 1, 1]. patchify /
 * unpatchify: p = 2 on 10 x 14 and on a 64 x 64 latent with 4 channels, p = 1 on 9 x 13, p = 4 on 8 x 12.
 * Error paths: a CPU tensor among CUDA ones, mixed dtypes, shape / channel / group / patch mismatches,
 * missing scratch. Exit 77 without a device. */
#include "gpu_ops_util.h"

#define TEST "gpu_ops_image"
#define EPS 1e-6f

/* ---- conv2d ------------------------------------------------------------------------------------------- */

static void conv_case(ds_dtype dt, int64_t B, int64_t cin, int64_t cout, int64_t H, int64_t W, int64_t k,
                      bool with_bias, uint64_t seed) {
    char kase[160];
    snprintf(kase, sizeof kase, "conv2d_%s_k%lld_B%lld_Cin%lld_Cout%lld_H%lldW%lld_%s", ds_dtype_name(dt),
             (long long)k, (long long)B, (long long)cin, (long long)cout, (long long)H, (long long)W,
             with_bias ? "bias" : "nobias");
    const int pad = (int)((k - 1) / 2);
    const int64_t xs[4] = {B, cin, H, W}, ws[4] = {cout, cin, k, k}, os[4] = {B, cout, H, W};
    const int64_t nx = B * cin * H * W, nw = cout * cin * k * k, no = B * cout * H * W;
    const size_t need = ds_op_conv2d_scratch_bytes(cin, H, W, k, pad);
    ds_err e = {0};
    gpu_dev dx = {0}, dw = {0}, db = {0}, dout = {0};
    char *dscratch = NULL;
    void *scratch = need ? malloc(need) : NULL;
    float *x = gpu_falloc(nx), *w = gpu_falloc(nw), *b = gpu_falloc(cout), *ref = gpu_falloc(no);
    if (!x || !w || !b || !ref || !GPU_CHECK(!need || scratch, "host allocation")) goto done;
    gpu_uniform(x, nx, seed, -1.0, 1.0);
    const double ws_amp = 1.0 / sqrt((double)(cin * k * k));
    gpu_uniform(w, nw, seed + 1, -ws_amp, ws_amp);
    gpu_uniform(b, cout, seed + 2, -0.5, 0.5);
    gpu_round(x, nx, dt);
    gpu_round(w, nw, dt);
    gpu_round(b, cout, dt);

    ds_tensor hx = gpu_host(x, 4, xs), hw = gpu_host(w, 4, ws), hb = gpu_host(b, 1, &cout), hr = gpu_host(ref, 4, os);
    if (!GPU_OK(ds_op_conv2d(&hr, &hx, &hw, with_bias ? &hb : NULL, pad, scratch, need, &e), &e)) goto done;

    if (!gpu_dev_from(&dx, dt, 4, xs, x) || !gpu_dev_from(&dw, dt, 4, ws, w) || !gpu_dev_from(&db, dt, 1, &cout, b) ||
        !gpu_dev_alloc(&dout, dt, 4, os))
        goto done;
    if (need) {
        if (!GPU_OK(ds_cuda_malloc((void **)&dscratch, need + GPU_GUARD_BYTES, &e), &e)) goto done;
        if (!gpu_poison(dscratch, need + GPU_GUARD_BYTES)) goto done;
    }
    if (!gpu_run_ok(TEST, kase, ds_op_conv2d(&dout.t, &dx.t, &dw.t, with_bias ? &db.t : NULL, pad, dscratch, need, &e),
                    &e))
        goto done;
    gpu_check(TEST, kase, &dout, ref, GPU_TOL(dt, CONV));
    if (dscratch) {
        unsigned char guard[GPU_GUARD_BYTES];
        if (GPU_OK(ds_cuda_ctx_download(guard, dscratch + need, GPU_GUARD_BYTES, &e), &e))
            GPU_CHECK(gpu_all_ff(guard, GPU_GUARD_BYTES), "%s: wrote past the end of the scratch (%zu bytes)", kase,
                      need);
    }
done:
    gpu_dev_free(&dx);
    gpu_dev_free(&dw);
    gpu_dev_free(&db);
    gpu_dev_free(&dout);
    ds_cuda_free(dscratch);
    free(scratch);
    free(x);
    free(w);
    free(b);
    free(ref);
}

/* ---- groupnorm ---------------------------------------------------------------------------------------- */

enum { AFF_W = 1, AFF_B = 2 };

static void groupnorm_case(ds_dtype dt, int ndim, const int64_t *shape, int64_t groups, int aff, bool inplace,
                           uint64_t seed) {
    char kase[160], sh[64];
    const char *affn = aff == (AFF_W | AFF_B) ? "affine" : aff == AFF_W ? "weight" : aff == AFF_B ? "bias" : "plain";
    snprintf(kase, sizeof kase, "groupnorm_%s_%s_G%lld_%s%s", ds_dtype_name(dt),
             gpu_shape_str(sh, sizeof sh, ndim, shape), (long long)groups, affn, inplace ? "_inplace" : "");
    const int64_t n = gpu_numel(ndim, shape), C = shape[1], S = n / (shape[0] * C);
    ds_err e = {0};
    gpu_dev dx = {0}, dw = {0}, db = {0}, dout = {0};
    float *x = gpu_falloc(n), *off = gpu_falloc(shape[0] * C), *w = gpu_falloc(C), *b = gpu_falloc(C);
    float *ref = gpu_falloc(n);
    if (!x || !off || !w || !b || !ref) goto done;
    gpu_uniform(x, n, seed, -1.0, 1.0);
    gpu_uniform(off, shape[0] * C, seed + 1, -0.5, 0.5);
    for (int64_t i = 0; i < n; i++) x[i] += off[i / S];
    gpu_uniform(w, C, seed + 2, 0.5, 1.5);
    gpu_uniform(b, C, seed + 3, -0.5, 0.5);
    gpu_round(x, n, dt);
    gpu_round(w, C, dt);
    gpu_round(b, C, dt);

    ds_tensor hx = gpu_host(x, ndim, shape), hr = gpu_host(ref, ndim, shape);
    ds_tensor hw = gpu_host(w, 1, &C), hb = gpu_host(b, 1, &C);
    if (!GPU_OK(ds_op_groupnorm(&hr, &hx, groups, aff & AFF_W ? &hw : NULL, aff & AFF_B ? &hb : NULL, EPS, &e), &e))
        goto done;

    if (!gpu_dev_from(&dx, dt, ndim, shape, x) || !gpu_dev_from(&dw, dt, 1, &C, w) || !gpu_dev_from(&db, dt, 1, &C, b))
        goto done;
    gpu_dev *out = &dx;
    if (!inplace) {
        if (!gpu_dev_alloc(&dout, dt, ndim, shape)) goto done;
        out = &dout;
    }
    if (!gpu_run_ok(TEST, kase,
                    ds_op_groupnorm(&out->t, &dx.t, groups, aff & AFF_W ? &dw.t : NULL, aff & AFF_B ? &db.t : NULL,
                                    EPS, &e),
                    &e))
        goto done;
    gpu_check(TEST, kase, out, ref, GPU_TOL(dt, NORM));
done:
    gpu_dev_free(&dx);
    gpu_dev_free(&dw);
    gpu_dev_free(&db);
    gpu_dev_free(&dout);
    free(x);
    free(off);
    free(w);
    free(b);
    free(ref);
}

/* ---- data movement: upsample, patchify, unpatchify ------------------------------------------------------ */

typedef enum { MV_UPSAMPLE, MV_PATCHIFY, MV_UNPATCHIFY } move_op;

/* img = [B, C, H, W]; the other side is the upsampled image or the [B, (H/p)*(W/p), C*p*p] tokens. */
static void move_case(move_op op, ds_dtype dt, const int64_t img[4], int64_t p, uint64_t seed) {
    char kase[160], sh[64];
    static const char *names[] = {"upsample_nearest2x", "patchify", "unpatchify"};
    snprintf(kase, sizeof kase, "%s_%s_%s", names[op], ds_dtype_name(dt), gpu_shape_str(sh, sizeof sh, 4, img));
    if (op != MV_UPSAMPLE) {
        const size_t l = strlen(kase);
        snprintf(kase + l, sizeof kase - l, "_p%lld", (long long)p);
    }
    const int64_t B = img[0], C = img[1], H = img[2], W = img[3];
    const int64_t up[4] = {B, C, 2 * H, 2 * W}, tok[3] = {B, (H / p) * (W / p), C * p * p};
    int in_nd = 4, out_nd = 4;
    const int64_t *in_sh = img, *out_sh = up;
    if (op == MV_PATCHIFY) {
        out_nd = 3;
        out_sh = tok;
    } else if (op == MV_UNPATCHIFY) {
        in_nd = 3;
        in_sh = tok;
        out_sh = img;
    }
    const int64_t nin = gpu_numel(in_nd, in_sh), nout = gpu_numel(out_nd, out_sh);
    ds_err e = {0};
    gpu_dev din = {0}, dout = {0};
    float *x = gpu_falloc(nin), *ref = gpu_falloc(nout);
    if (!x || !ref) goto done;
    gpu_normal(x, nin, seed, 0.0, 1.0);
    gpu_round(x, nin, dt);

    ds_tensor hx = gpu_host(x, in_nd, in_sh), hr = gpu_host(ref, out_nd, out_sh);
    ds_status s = op == MV_UPSAMPLE    ? ds_op_upsample_nearest2x(&hr, &hx, &e)
                  : op == MV_PATCHIFY ? ds_op_patchify(&hr, &hx, p, &e)
                                      : ds_op_unpatchify(&hr, &hx, p, &e);
    if (!GPU_OK(s, &e)) goto done;
    if (!gpu_dev_from(&din, dt, in_nd, in_sh, x) || !gpu_dev_alloc(&dout, dt, out_nd, out_sh)) goto done;
    s = op == MV_UPSAMPLE    ? ds_op_upsample_nearest2x(&dout.t, &din.t, &e)
        : op == MV_PATCHIFY ? ds_op_patchify(&dout.t, &din.t, p, &e)
                            : ds_op_unpatchify(&dout.t, &din.t, p, &e);
    if (!gpu_run_ok(TEST, kase, s, &e)) goto done;
    gpu_check(TEST, kase, &dout, ref, GPU_TOL(dt, EXACT));
done:
    gpu_dev_free(&din);
    gpu_dev_free(&dout);
    free(x);
    free(ref);
}

/* ---- error paths -------------------------------------------------------------------------------------- */

static void error_cases(void) {
    ds_err e = {0};
    static const int64_t xs[] = {1, 6, 4, 6}, ws3[] = {5, 6, 3, 3}, ws_cin[] = {5, 4, 3, 3}, os[] = {1, 5, 4, 6},
                         bs[] = {5}, cs[] = {6}, ups_bad[] = {1, 6, 8, 11}, tok_bad[] = {1, 6, 24};
    gpu_dev x = {0}, w = {0}, wc = {0}, b = {0}, bb = {0}, o = {0}, gw = {0}, gx = {0}, up = {0}, tk = {0}, tkb = {0};
    float hbuf[5 * 6 * 3 * 3] = {0};
    if (!gpu_dev_alloc(&x, DS_F32, 4, xs) || !gpu_dev_alloc(&w, DS_F32, 4, ws3) ||
        !gpu_dev_alloc(&wc, DS_F32, 4, ws_cin) || !gpu_dev_alloc(&b, DS_F32, 1, bs) ||
        !gpu_dev_alloc(&bb, DS_BF16, 1, bs) || !gpu_dev_alloc(&o, DS_F32, 4, os) ||
        !gpu_dev_alloc(&gw, DS_F32, 1, cs) || !gpu_dev_alloc(&gx, DS_F32, 4, xs) ||
        !gpu_dev_alloc(&up, DS_F32, 4, ups_bad) ||
        !gpu_dev_alloc(&tk, DS_F32, 3, tok_bad) || !gpu_dev_alloc(&tkb, DS_BF16, 3, (const int64_t[]){1, 6, 24}))
        goto done;
    const size_t need = ds_op_conv2d_scratch_bytes(6, 4, 6, 3, 1);
    char *scr = NULL;
    if (!GPU_OK(ds_cuda_malloc((void **)&scr, need, &e), &e)) goto done;
    ds_tensor cw = gpu_host(hbuf, 4, ws3), cg = gpu_host(hbuf, 1, cs), ctk = gpu_host(hbuf, 3, tok_bad);

    ds_err_clear(&e);
    gpu_expect(TEST, "err_conv2d_cpu_weight", ds_op_conv2d(&o.t, &x.t, &cw, &b.t, 1, scr, need, &e),
               DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_conv2d_mixed_dtype_bias", ds_op_conv2d(&o.t, &x.t, &w.t, &bb.t, 1, scr, need, &e),
               DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_conv2d_cin", ds_op_conv2d(&o.t, &x.t, &wc.t, &b.t, 1, scr, need, &e), DS_ERR_INVALID_ARG,
               &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_conv2d_padding", ds_op_conv2d(&o.t, &x.t, &w.t, &b.t, 0, scr, need, &e), DS_ERR_INVALID_ARG,
               &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_conv2d_no_scratch", ds_op_conv2d(&o.t, &x.t, &w.t, &b.t, 1, NULL, 0, &e),
               DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_groupnorm_groups", ds_op_groupnorm(&gx.t, &x.t, 4, NULL, NULL, EPS, &e), DS_ERR_INVALID_ARG,
               &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_groupnorm_cpu_weight", ds_op_groupnorm(&gx.t, &x.t, 3, &cg, &gw.t, EPS, &e),
               DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_upsample_out_shape", ds_op_upsample_nearest2x(&up.t, &x.t, &e), DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_patchify_not_multiple", ds_op_patchify(&tk.t, &x.t, 4, &e), DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_patchify_mixed_dtype", ds_op_patchify(&tkb.t, &x.t, 2, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_unpatchify_cpu_y", ds_op_unpatchify(&x.t, &ctk, 2, &e), DS_ERR_UNSUPPORTED, &e);
    ds_cuda_free(scr);
done:
    gpu_dev_free(&x);
    gpu_dev_free(&w);
    gpu_dev_free(&wc);
    gpu_dev_free(&b);
    gpu_dev_free(&bb);
    gpu_dev_free(&o);
    gpu_dev_free(&gw);
    gpu_dev_free(&gx);
    gpu_dev_free(&up);
    gpu_dev_free(&tk);
    gpu_dev_free(&tkb);
}

int main(void) {
    ds_cuda_ctx *ctx = gpu_ctx_open(TEST);
    if (!ctx) return gpu_finish(TEST);
    uint64_t seed = 4000;

    static const struct {
        int64_t B, cin, cout, H, W, k;
        bool bias;
    } convs[] = {
        {2, 5, 7, 9, 13, 1, false},   {2, 5, 7, 9, 13, 1, true},   {2, 5, 7, 9, 13, 3, false},
        {2, 5, 7, 9, 13, 3, true},    {1, 3, 4, 1, 1, 3, false},   {1, 16, 8, 2, 67, 3, true},
        {1, 64, 64, 48, 48, 3, true}, {2, 128, 64, 32, 40, 1, true}, {2, 64, 32, 96, 96, 3, true},
    };
    static const struct {
        int ndim;
        int64_t shape[4];
        int64_t groups;
    } gns[] = {
        {4, {2, 6, 9, 13}, 3}, {4, {2, 6, 9, 13}, 6}, {4, {1, 128, 32, 32}, 32}, {3, {2, 64, 77, 0}, 32},
        {4, {1, 32, 1, 1}, 32},
    };
    static const int64_t ups[][4] = {{2, 3, 9, 13}, {1, 64, 32, 32}, {1, 1, 1, 1}};
    static const struct {
        int64_t img[4], p;
    } pats[] = {{{2, 4, 10, 14}, 2}, {{2, 4, 64, 64}, 2}, {{2, 5, 9, 13}, 1}, {{1, 3, 8, 12}, 4}};

    for (int di = 0; di < GPU_NDTYPES; di++) {
        const ds_dtype dt = gpu_dtype(di);
        for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++)
            conv_case(dt, convs[i].B, convs[i].cin, convs[i].cout, convs[i].H, convs[i].W, convs[i].k, convs[i].bias,
                      seed++);
        for (size_t i = 0; i < sizeof gns / sizeof gns[0]; i++) {
            groupnorm_case(dt, gns[i].ndim, gns[i].shape, gns[i].groups, 0, false, seed++);
            groupnorm_case(dt, gns[i].ndim, gns[i].shape, gns[i].groups, AFF_W | AFF_B, false, seed++);
        }
        groupnorm_case(dt, 4, gns[0].shape, 3, AFF_W, false, seed++);
        groupnorm_case(dt, 4, gns[0].shape, 3, AFF_B, false, seed++);
        for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++) move_case(MV_UPSAMPLE, dt, ups[i], 1, seed++);
        for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++) {
            move_case(MV_PATCHIFY, dt, pats[i].img, pats[i].p, seed++);
            move_case(MV_UNPATCHIFY, dt, pats[i].img, pats[i].p, seed++);
        }
    }
    groupnorm_case(DS_BF16, 4, gns[0].shape, 3, AFF_W | AFF_B, true, seed++);
    groupnorm_case(DS_F32, 4, gns[2].shape, 32, AFF_W | AFF_B, true, seed++);

    error_cases();
    gpu_ctx_close(ctx);
    return gpu_finish(TEST);
}
