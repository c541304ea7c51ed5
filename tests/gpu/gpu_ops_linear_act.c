/* gpu_ops_linear_act.c - GPU twin tests of ds_op_linear_gelu (ops_linear.cu: bias + tanh-GELU in the cuBLASLt
 * epilogue for bf16/f16; linear then the GELU pass for f32 and the erf form) and of ds_op_linear_multi (one
 * strided-batched product for evenly spaced q/k/v-like weights, else one per linear) against the CPU reference
 * (ds_op_linear then ds_op_gelu / ds_op_linear per output, in f32), on inputs rounded to the dtype on the host
 * first (method: gpu_ops_util.h; tolerances: gpu_tolerances.h, class LINACT).
 *
 * Shapes (M, K, N): 1 x 8 x 8, 77 x 40 x 200 (odd M and N), 256 x 1152 x 4608 (one DiT-XL/2 image's MLP up
 * projection), 300 x 64 x 24 (K < N: the K loop is short); both GELU kinds, with and without bias, in f32,
 * bf16 and f16. Inputs: x U[-1, 1), w U[-1, 1)/sqrt(K), bias U[-0.5, 0.5): pre-activations are O(0.5),
 * the range where GELU bends. Exit 77 without a device. */
#include "gpu_ops_util.h"

#define TEST "gpu_ops_linear_act"

static void linact_case(ds_dtype dt, int64_t M, int64_t K, int64_t N, ds_gelu_kind kind, bool with_bias,
                        uint64_t seed) {
    char kase[160];
    snprintf(kase, sizeof kase, "linear_gelu_%s_%s_M%lld_K%lld_N%lld%s", kind == DS_GELU_TANH ? "tanh" : "erf",
             ds_dtype_name(dt), (long long)M, (long long)K, (long long)N, with_bias ? "_bias" : "");
    const int64_t xs[2] = {M, K}, ws[2] = {N, K}, bs[1] = {N}, os[2] = {M, N};
    ds_err e = {0};
    gpu_dev dx = {0}, dw = {0}, db = {0}, dout = {0};
    float *x = gpu_falloc(M * K), *w = gpu_falloc(N * K), *b = gpu_falloc(N), *ref = gpu_falloc(M * N);
    if (!x || !w || !b || !ref) goto done;
    gpu_uniform(x, M * K, seed, -1.0, 1.0);
    gpu_uniform(w, N * K, seed + 1, -1.0 / sqrt((double)K), 1.0 / sqrt((double)K));
    gpu_uniform(b, N, seed + 2, -0.5, 0.5);
    gpu_round(x, M * K, dt);
    gpu_round(w, N * K, dt);
    gpu_round(b, N, dt);

    ds_tensor hx = gpu_host(x, 2, xs), hw = gpu_host(w, 2, ws), hb = gpu_host(b, 1, bs), hr = gpu_host(ref, 2, os);
    if (!GPU_OK(ds_op_linear_gelu(&hr, &hx, &hw, with_bias ? &hb : NULL, kind, &e), &e)) goto done;
    if (!gpu_dev_from(&dx, dt, 2, xs, x) || !gpu_dev_from(&dw, dt, 2, ws, w) || !gpu_dev_from(&db, dt, 1, bs, b) ||
        !gpu_dev_alloc(&dout, dt, 2, os))
        goto done;
    if (!gpu_run_ok(TEST, kase, ds_op_linear_gelu(&dout.t, &dx.t, &dw.t, with_bias ? &db.t : NULL, kind, &e), &e))
        goto done;
    gpu_check(TEST, kase, &dout, ref, GPU_TOL(dt, LINACT));
done:
    gpu_dev_free(&dx);
    gpu_dev_free(&dw);
    gpu_dev_free(&db);
    gpu_dev_free(&dout);
    free(x);
    free(w);
    free(b);
    free(ref);
}

/* ds_op_linear_multi with 3 linears: `packed` puts the weights, biases and outputs evenly in one allocation
 * each (the batched cuBLASLt path), otherwise in separate allocations (the per-linear path, unless the
 * allocator happens to space them evenly: then the batched one, equally correct); each output
 * against the CPU's ds_op_linear (class LINACT, which bounds a plain linear too: one rounding). */
static void multi_case(ds_dtype dt, int64_t M, int64_t K, int64_t N, bool with_bias, bool packed, uint64_t seed) {
    char kase[160];
    snprintf(kase, sizeof kase, "linear_multi3_%s_%s_M%lld_K%lld_N%lld%s", packed ? "packed" : "separate",
             ds_dtype_name(dt), (long long)M, (long long)K, (long long)N, with_bias ? "_bias" : "");
    const int64_t xs[2] = {M, K}, w3[3] = {3, N, K}, b3[2] = {3, N}, o3[3] = {3, M, N};
    const int64_t ws1[2] = {N, K}, bs1[1] = {N}, os1[2] = {M, N};
    ds_err e = {0};
    gpu_dev dx = {0}, dw = {0}, db = {0}, dout = {0}, sw[3], sb[3], so[3];
    memset(sw, 0, sizeof sw);
    memset(sb, 0, sizeof sb);
    memset(so, 0, sizeof so);
    float *x = gpu_falloc(M * K), *w = gpu_falloc(3 * N * K), *b = gpu_falloc(3 * N);
    float *got = gpu_falloc(3 * M * N); /* the reference, [3, M, N] */
    if (!x || !w || !b || !got) goto done;
    gpu_uniform(x, M * K, seed, -1.0, 1.0);
    gpu_uniform(w, 3 * N * K, seed + 1, -1.0 / sqrt((double)K), 1.0 / sqrt((double)K));
    gpu_uniform(b, 3 * N, seed + 2, -0.5, 0.5);
    gpu_round(x, M * K, dt);
    gpu_round(w, 3 * N * K, dt);
    gpu_round(b, 3 * N, dt);
    if (!gpu_dev_from(&dx, dt, 2, xs, x)) goto done;
    ds_tensor tw[3], tb[3], to[3];
    if (packed) {
        if (!gpu_dev_from(&dw, dt, 3, w3, w) || !gpu_dev_from(&db, dt, 2, b3, b) || !gpu_dev_alloc(&dout, dt, 3, o3))
            goto done;
        const size_t es = dt == DS_F32 ? 4 : 2;
        for (int j = 0; j < 3; j++) {
            tw[j] = gpu_view((char *)dw.t.data + (size_t)(j * N * K) * es, dt, 2, ws1);
            tb[j] = gpu_view((char *)db.t.data + (size_t)(j * N) * es, dt, 1, bs1);
            to[j] = gpu_view((char *)dout.t.data + (size_t)(j * M * N) * es, dt, 2, os1);
        }
    } else {
        for (int j = 0; j < 3; j++) {
            if (!gpu_dev_from(&sw[j], dt, 2, ws1, w + j * N * K) || !gpu_dev_from(&sb[j], dt, 1, bs1, b + j * N) ||
                !gpu_dev_alloc(&so[j], dt, 2, os1))
                goto done;
            tw[j] = sw[j].t;
            tb[j] = sb[j].t;
            to[j] = so[j].t;
        }
    }
    {
        ds_tensor *outs[3] = {&to[0], &to[1], &to[2]};
        const ds_tensor *wsp[3] = {&tw[0], &tw[1], &tw[2]}, *bsp[3] = {&tb[0], &tb[1], &tb[2]};
        if (!gpu_run_ok(TEST, kase, ds_op_linear_multi(outs, &dx.t, wsp, with_bias ? bsp : NULL, 3, &e), &e)) goto done;
        /* reference: the three CPU linears into got [3, M, N]; packed outputs are checked as one tensor (its guard
         * follows the third), separate ones each with its own guard */
        for (int j = 0; j < 3; j++) {
            ds_tensor hx = gpu_host(x, 2, xs), hw = gpu_host(w + j * N * K, 2, ws1), hb = gpu_host(b + j * N, 1, bs1);
            ds_tensor hr = gpu_host(got + j * M * N, 2, os1);
            if (!GPU_OK(ds_op_linear(&hr, &hx, &hw, with_bias ? &hb : NULL, &e), &e)) goto done;
        }
        if (packed) {
            gpu_check(TEST, kase, &dout, got, GPU_TOL(dt, LINACT));
        } else {
            for (int j = 0; j < 3; j++) {
                char k2[200];
                snprintf(k2, sizeof k2, "%s_out%d", kase, j);
                gpu_check(TEST, k2, &so[j], got + j * M * N, GPU_TOL(dt, LINACT));
            }
        }
    }
done:
    gpu_dev_free(&dx);
    gpu_dev_free(&dw);
    gpu_dev_free(&db);
    gpu_dev_free(&dout);
    for (int j = 0; j < 3; j++) {
        gpu_dev_free(&sw[j]);
        gpu_dev_free(&sb[j]);
        gpu_dev_free(&so[j]);
    }
    free(x);
    free(w);
    free(b);
    free(got);
}

int main(void) {
    ds_cuda_ctx *ctx = gpu_ctx_open(TEST);
    if (!ctx) return gpu_finish(TEST);
    static const int64_t shapes[][3] = {{1, 8, 8}, {77, 40, 200}, {256, 1152, 4608}, {300, 64, 24}};
    uint64_t seed = 7000;
    for (int di = 0; di < GPU_NDTYPES; di++)
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int kind = DS_GELU_EXACT; kind <= DS_GELU_TANH; kind++)
                for (int bias = 0; bias < 2; bias++)
                    linact_case(gpu_dtype(di), shapes[i][0], shapes[i][1], shapes[i][2], (ds_gelu_kind)kind,
                                bias != 0, seed++);
    static const int64_t multi[][3] = {{512, 1152, 1152}, {77, 40, 200}, {1, 8, 8}};
    for (int di = 0; di < GPU_NDTYPES; di++)
        for (size_t i = 0; i < sizeof multi / sizeof multi[0]; i++)
            for (int packed = 0; packed < 2; packed++)
                multi_case(gpu_dtype(di), multi[i][0], multi[i][1], multi[i][2], true, packed != 0, seed++);
    multi_case(DS_BF16, 77, 40, 200, false, true, seed++);
    ds_err e = {0};
    gpu_dev x = {0}, w = {0}, o = {0};
    static const int64_t xs[2] = {4, 8}, ws[2] = {8, 8};
    if (gpu_dev_alloc(&x, DS_BF16, 2, xs) && gpu_dev_alloc(&w, DS_BF16, 2, ws) && gpu_dev_alloc(&o, DS_BF16, 2, xs)) {
        gpu_expect(TEST, "err_linear_gelu_kind", ds_op_linear_gelu(&o.t, &x.t, &w.t, NULL, (ds_gelu_kind)7, &e),
                   DS_ERR_INVALID_ARG, &e);
        ds_err_clear(&e);
        gpu_expect(TEST, "err_linear_gelu_out_aliases_x",
                   ds_op_linear_gelu(&x.t, &x.t, &w.t, NULL, DS_GELU_TANH, &e), DS_ERR_INVALID_ARG, &e);
    }
    gpu_dev_free(&x);
    gpu_dev_free(&w);
    gpu_dev_free(&o);
    gpu_ctx_close(ctx);
    return gpu_finish(TEST);
}
