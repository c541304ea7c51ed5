/* gpu_ops_linear_act.c - GPU twin test of ds_op_linear_gelu (ops_linear.cu: bias + tanh-GELU in the cuBLASLt
 * epilogue for bf16/f16; linear then the GELU pass for f32 and the erf form) against the CPU reference (the
 * CPU ds_op_linear then ds_op_gelu in f32), on inputs rounded to the dtype on the host first (method:
 * gpu_ops_util.h; tolerances: gpu_tolerances.h, class LINACT).
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
