/* gpu_ops_norm.c - GPU twin tests of the normalization and adaLN ops (ops_norm.cu) against the CPU reference
 * ops: layernorm (no affine, weight only, bias only, both), rmsnorm (with and without weight), modulate,
 * gate_add (gate given or NULL), and the fused layernorm_modulate against the CPU's layernorm followed by
 * modulate. Every op runs in f32, bf16 and f16 on inputs rounded to the dtype on the host first (method:
 * gpu_ops_util.h; tolerances: gpu_tolerances.h, NORM for the row normalizations, PW for modulate/gate_add).
 *
 * Shapes [B, N, D]: D = 1 (a degenerate row: variance 0), 40 and 77 (odd, below a warp: several rows per
 * warp, scalar loads), 1152 (DiT-XL), 3072 (SD3/FLUX) and 4096 (longer than a block keeps in registers);
 * 4x257 rows of 40 make many row groups per block. The adaLN scale/shift/gate are column slices of a
 * [B, 6D] projection (row stride 6D, chunk offsets that are not 16-byte aligned for odd D), as DiT blocks
 * pass them. In-place runs: layernorm, rmsnorm, modulate and layernorm_modulate with out == x, gate_add with
 * out == residual. Inputs: rows x = s_r * (U[-1, 1) + m_r) with m_r in [-0.5, 0.5) and s_r in [0.5, 4), so
 * |row mean| < row std (well conditioned, see the NORM row), weights 1 + U[-0.5, 0.5), biases and adaLN
 * chunks U[-0.5, 0.5). Error paths: a CPU tensor among CUDA ones, mixed dtypes, shape mismatches.
 * Exit 77 without a device. */
#include "gpu_ops_util.h"

#define TEST "gpu_ops_norm"
#define EPS 1e-6f

/* x [rows, d] as in the file comment. */
static void norm_inputs(float *x, int64_t rows, int64_t d, uint64_t seed) {
    float *rs = gpu_falloc(2 * rows);
    if (!rs) return;
    gpu_uniform(x, rows * d, seed, -1.0, 1.0);
    gpu_uniform(rs, 2 * rows, seed + 7, 0.0, 1.0);
    for (int64_t r = 0; r < rows; r++) {
        const float m = rs[2 * r] - 0.5f, s = 0.5f + 3.5f * rs[2 * r + 1];
        for (int64_t j = 0; j < d; j++) x[r * d + j] = s * (x[r * d + j] + m);
    }
    free(rs);
}

/* ---- layernorm / rmsnorm ---------------------------------------------------------------------------- */

enum { AFF_W = 1, AFF_B = 2 }; /* affine parts present (layernorm: both bits; rmsnorm: AFF_W only) */

static void norm_case(bool rms, ds_dtype dt, int64_t B, int64_t N, int64_t D, int aff, bool inplace, uint64_t seed) {
    char kase[160];
    const char *affn = aff == (AFF_W | AFF_B) ? "affine" : aff == AFF_W ? "weight" : aff == AFF_B ? "bias" : "plain";
    snprintf(kase, sizeof kase, "%s_%s_B%lldN%lldD%lld_%s%s", rms ? "rmsnorm" : "layernorm", ds_dtype_name(dt),
             (long long)B, (long long)N, (long long)D, affn, inplace ? "_inplace" : "");
    const int64_t shape[3] = {B, N, D}, n = B * N * D;
    ds_err e = {0};
    gpu_dev dx = {0}, dout = {0}, dw = {0}, db = {0};
    float *x = gpu_falloc(n), *ref = gpu_falloc(n), *w = gpu_falloc(D), *b = gpu_falloc(D);
    if (!x || !ref || !w || !b) goto done;
    norm_inputs(x, B * N, D, seed);
    gpu_uniform(w, D, seed + 1, 0.5, 1.5);
    gpu_uniform(b, D, seed + 2, -0.5, 0.5);
    gpu_round(x, n, dt);
    gpu_round(w, D, dt);
    gpu_round(b, D, dt);

    ds_tensor hx = gpu_host(x, 3, shape), hr = gpu_host(ref, 3, shape);
    ds_tensor hw = gpu_host(w, 1, &D), hb = gpu_host(b, 1, &D);
    const ds_tensor *pw = aff & AFF_W ? &hw : NULL, *pb = aff & AFF_B ? &hb : NULL;
    if (!GPU_OK(rms ? ds_op_rmsnorm(&hr, &hx, pw, EPS, &e) : ds_op_layernorm(&hr, &hx, pw, pb, EPS, &e), &e))
        goto done;

    if (!gpu_dev_from(&dx, dt, 3, shape, x) || !gpu_dev_from(&dw, dt, 1, &D, w) || !gpu_dev_from(&db, dt, 1, &D, b))
        goto done;
    gpu_dev *out = &dx;
    if (!inplace) {
        if (!gpu_dev_alloc(&dout, dt, 3, shape)) goto done;
        out = &dout;
    }
    const ds_tensor *dpw = aff & AFF_W ? &dw.t : NULL, *dpb = aff & AFF_B ? &db.t : NULL;
    const ds_status s =
        rms ? ds_op_rmsnorm(&out->t, &dx.t, dpw, EPS, &e) : ds_op_layernorm(&out->t, &dx.t, dpw, dpb, EPS, &e);
    if (!gpu_run_ok(TEST, kase, s, &e)) goto done;
    gpu_check(TEST, kase, out, ref, GPU_TOL(dt, NORM));
done:
    gpu_dev_free(&dx);
    gpu_dev_free(&dout);
    gpu_dev_free(&dw);
    gpu_dev_free(&db);
    free(x);
    free(ref);
    free(w);
    free(b);
}

/* ---- modulate / gate_add / layernorm_modulate --------------------------------------------------------- */

/* adaLN chunks of the [B, 6D] projection, DiT order: shift_msa, scale_msa, gate_msa, ... */
enum { CH_SHIFT = 0, CH_SCALE = 1, CH_GATE = 2 };

typedef enum { M_MODULATE, M_GATE_ADD, M_GATE_ADD_NOGATE, M_LN_MODULATE } mod_op;
enum { MOD_PLAIN = 0, MOD_INPLACE }; /* out == x (modulate, layernorm_modulate) or out == residual (gate_add) */

static const char *mod_name(mod_op op) {
    switch (op) {
    case M_MODULATE: return "modulate";
    case M_GATE_ADD: return "gate_add";
    case M_GATE_ADD_NOGATE: return "gate_add_nogate";
    default: return "layernorm_modulate";
    }
}

static void mod_case(mod_op op, ds_dtype dt, int64_t B, int64_t N, int64_t D, int mode, uint64_t seed) {
    char kase[160];
    const bool gate_op = op == M_GATE_ADD || op == M_GATE_ADD_NOGATE;
    snprintf(kase, sizeof kase, "%s_%s_B%lldN%lldD%lld%s", mod_name(op), ds_dtype_name(dt), (long long)B,
             (long long)N, (long long)D, mode != MOD_INPLACE ? "" : gate_op ? "_out_residual" : "_inplace");
    const int64_t shape[3] = {B, N, D}, wshape[2] = {B, 6 * D}, n = B * N * D;
    ds_err e = {0};
    gpu_dev dx = {0}, dres = {0}, dada = {0}, dout = {0};
    float *x = gpu_falloc(n), *res = gpu_falloc(n), *ada = gpu_falloc(6 * B * D), *ref = gpu_falloc(n);
    if (!x || !res || !ada || !ref) goto done;
    if (op == M_LN_MODULATE) norm_inputs(x, B * N, D, seed);
    else gpu_uniform(x, n, seed, -1.0, 1.0);
    gpu_uniform(res, n, seed + 1, -1.0, 1.0);
    gpu_uniform(ada, 6 * B * D, seed + 2, -0.5, 0.5);
    gpu_round(x, n, dt);
    gpu_round(res, n, dt);
    gpu_round(ada, 6 * B * D, dt);

    /* reference on the host, with the same column-slice views */
    ds_tensor hx = gpu_host(x, 3, shape), hres = gpu_host(res, 3, shape), hr = gpu_host(ref, 3, shape);
    ds_tensor hada = gpu_host(ada, 2, wshape);
    ds_tensor hshift = gpu_cols(&hada, CH_SHIFT * D, D), hscale = gpu_cols(&hada, CH_SCALE * D, D),
              hgate = gpu_cols(&hada, CH_GATE * D, D);
    ds_status s = DS_OK;
    switch (op) {
    case M_MODULATE: s = ds_op_modulate(&hr, &hx, &hscale, &hshift, &e); break;
    case M_GATE_ADD: s = ds_op_gate_add(&hr, &hres, &hx, &hgate, &e); break;
    case M_GATE_ADD_NOGATE: s = ds_op_gate_add(&hr, &hres, &hx, NULL, &e); break;
    case M_LN_MODULATE: /* the fused op's definition: layernorm (no affine) then modulate */
        s = ds_op_layernorm(&hr, &hx, NULL, NULL, EPS, &e);
        if (s == DS_OK) s = ds_op_modulate(&hr, &hr, &hscale, &hshift, &e);
        break;
    }
    if (!GPU_OK(s, &e)) goto done;

    if (!gpu_dev_from(&dx, dt, 3, shape, x) || !gpu_dev_from(&dres, dt, 3, shape, res) ||
        !gpu_dev_from(&dada, dt, 2, wshape, ada))
        goto done;
    gpu_dev *out = &dout;
    if (mode == MOD_INPLACE) out = gate_op ? &dres : &dx;
    else if (!gpu_dev_alloc(&dout, dt, 3, shape)) goto done;
    ds_tensor dshift = gpu_cols(&dada.t, CH_SHIFT * D, D), dscale = gpu_cols(&dada.t, CH_SCALE * D, D),
              dgate = gpu_cols(&dada.t, CH_GATE * D, D);
    switch (op) {
    case M_MODULATE: s = ds_op_modulate(&out->t, &dx.t, &dscale, &dshift, &e); break;
    case M_GATE_ADD: s = ds_op_gate_add(&out->t, &dres.t, &dx.t, &dgate, &e); break;
    case M_GATE_ADD_NOGATE: s = ds_op_gate_add(&out->t, &dres.t, &dx.t, NULL, &e); break;
    case M_LN_MODULATE: s = ds_op_layernorm_modulate(&out->t, &dx.t, &dscale, &dshift, EPS, &e); break;
    }
    if (!gpu_run_ok(TEST, kase, s, &e)) goto done;
    gpu_check(TEST, kase, out, ref, op == M_LN_MODULATE ? GPU_TOL(dt, NORM) : GPU_TOL(dt, PW));
done:
    gpu_dev_free(&dx);
    gpu_dev_free(&dres);
    gpu_dev_free(&dada);
    gpu_dev_free(&dout);
    free(x);
    free(res);
    free(ada);
    free(ref);
}

/* ---- error paths -------------------------------------------------------------------------------------- */

static void error_cases(void) {
    ds_err e = {0};
    enum { B = 2, N = 3, D = 8 };
    static const int64_t s3[] = {B, N, D}, s3b[] = {B, N + 1, D}, sd[] = {D}, sd1[] = {D + 1}, sw[] = {B, 6 * D},
                         sw1[] = {B + 1, 6 * D};
    gpu_dev x = {0}, o = {0}, o2 = {0}, w = {0}, w1 = {0}, wb = {0}, ada = {0}, ada1 = {0}, adab = {0};
    float hbuf[B * N * D] = {0};
    if (!gpu_dev_alloc(&x, DS_F32, 3, s3) || !gpu_dev_alloc(&o, DS_F32, 3, s3) || !gpu_dev_alloc(&o2, DS_F32, 3, s3b) ||
        !gpu_dev_alloc(&w, DS_F32, 1, sd) || !gpu_dev_alloc(&w1, DS_F32, 1, sd1) ||
        !gpu_dev_alloc(&wb, DS_BF16, 1, sd) || !gpu_dev_alloc(&ada, DS_F32, 2, sw) ||
        !gpu_dev_alloc(&ada1, DS_F32, 2, sw1) || !gpu_dev_alloc(&adab, DS_BF16, 2, sw))
        goto done;
    ds_tensor cw = gpu_host(hbuf, 1, sd), cx = gpu_host(hbuf, 3, s3);
    ds_tensor cada = gpu_host(hbuf, 2, (const int64_t[]){B, 2 * D});
    ds_tensor sc = gpu_cols(&ada.t, D, D), sh = gpu_cols(&ada.t, 0, D), g = gpu_cols(&ada.t, 2 * D, D);
    ds_tensor sc_cpu = gpu_cols(&cada, D, D), sh_wide = gpu_cols(&ada.t, 0, D + 1);
    ds_tensor sc_bf16 = gpu_cols(&adab.t, D, D), g_rows = gpu_cols(&ada1.t, 2 * D, D);

    ds_err_clear(&e);
    gpu_expect(TEST, "err_layernorm_cpu_weight", ds_op_layernorm(&o.t, &x.t, &cw, &w.t, EPS, &e), DS_ERR_UNSUPPORTED,
               &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_layernorm_weight_len", ds_op_layernorm(&o.t, &x.t, &w1.t, NULL, EPS, &e),
               DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_layernorm_out_shape", ds_op_layernorm(&o2.t, &x.t, NULL, NULL, EPS, &e), DS_ERR_INVALID_ARG,
               &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_rmsnorm_mixed_dtype", ds_op_rmsnorm(&o.t, &x.t, &wb.t, EPS, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_rmsnorm_cpu_out", ds_op_rmsnorm(&cx, &x.t, NULL, EPS, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_modulate_cpu_scale", ds_op_modulate(&o.t, &x.t, &sc_cpu, &sh, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_modulate_mixed_dtype", ds_op_modulate(&o.t, &x.t, &sc_bf16, &sh, &e), DS_ERR_UNSUPPORTED,
               &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_modulate_shift_shape", ds_op_modulate(&o.t, &x.t, &sc, &sh_wide, &e), DS_ERR_INVALID_ARG,
               &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_gate_add_shape", ds_op_gate_add(&o.t, &o2.t, &x.t, &g, &e), DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_gate_add_gate_rows", ds_op_gate_add(&o.t, &o.t, &x.t, &g_rows, &e), DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_gate_add_cpu_residual", ds_op_gate_add(&o.t, &cx, &x.t, &g, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_layernorm_modulate_cpu_shift", ds_op_layernorm_modulate(&o.t, &x.t, &sc, &sc_cpu, EPS, &e),
               DS_ERR_UNSUPPORTED, &e);
done:
    gpu_dev_free(&x);
    gpu_dev_free(&o);
    gpu_dev_free(&o2);
    gpu_dev_free(&w);
    gpu_dev_free(&w1);
    gpu_dev_free(&wb);
    gpu_dev_free(&ada);
    gpu_dev_free(&ada1);
    gpu_dev_free(&adab);
}

int main(void) {
    ds_cuda_ctx *ctx = gpu_ctx_open(TEST);
    if (!ctx) return gpu_finish(TEST);
    uint64_t seed = 2000;

    static const int64_t norm_shapes[][3] = {{1, 3, 1},     {3, 5, 77},   {4, 257, 40},
                                             {2, 17, 1152}, {2, 9, 3072}, {1, 4, 4096}};
    static const int64_t mod_shapes[][3] = {{2, 1, 24}, {3, 5, 77}, {2, 77, 1152}, {1, 16, 3072}};
    for (int di = 0; di < GPU_NDTYPES; di++) {
        const ds_dtype dt = gpu_dtype(di);
        for (size_t s = 0; s < sizeof norm_shapes / sizeof norm_shapes[0]; s++) {
            const int64_t *sh = norm_shapes[s];
            norm_case(false, dt, sh[0], sh[1], sh[2], 0, false, seed++);
            norm_case(false, dt, sh[0], sh[1], sh[2], AFF_W | AFF_B, false, seed++);
            norm_case(true, dt, sh[0], sh[1], sh[2], 0, false, seed++);
            norm_case(true, dt, sh[0], sh[1], sh[2], AFF_W, false, seed++);
        }
        norm_case(false, dt, 3, 5, 77, AFF_W, false, seed++);
        norm_case(false, dt, 3, 5, 77, AFF_B, false, seed++);
        for (size_t s = 0; s < sizeof mod_shapes / sizeof mod_shapes[0]; s++) {
            const int64_t *sh = mod_shapes[s];
            for (int op = M_MODULATE; op <= M_LN_MODULATE; op++)
                mod_case((mod_op)op, dt, sh[0], sh[1], sh[2], MOD_PLAIN, seed++);
        }
    }
    /* in place */
    norm_case(false, DS_BF16, 2, 17, 1152, AFF_W | AFF_B, true, seed++);
    norm_case(false, DS_F32, 3, 5, 77, 0, true, seed++);
    norm_case(true, DS_F16, 2, 9, 3072, AFF_W, true, seed++);
    norm_case(true, DS_F32, 4, 257, 40, 0, true, seed++);
    for (int di = 0; di < GPU_NDTYPES; di++) {
        mod_case(M_MODULATE, gpu_dtype(di), 2, 77, 1152, MOD_INPLACE, seed++);
        mod_case(M_GATE_ADD, gpu_dtype(di), 3, 5, 77, MOD_INPLACE, seed++);
        mod_case(M_GATE_ADD_NOGATE, gpu_dtype(di), 2, 77, 1152, MOD_INPLACE, seed++);
        mod_case(M_LN_MODULATE, gpu_dtype(di), 3, 5, 77, MOD_INPLACE, seed++);
    }

    error_cases();
    gpu_ctx_close(ctx);
    return gpu_finish(TEST);
}
