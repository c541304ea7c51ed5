/* gpu_forward.c - one transformer forward on the CPU (f32 reference) and on CUDA (bf16 and f32 placements),
 * same checkpoint, same inputs: the DiT of tests/data/ckpt/dit-tiny (10 blocks, D 24, batch 2 = a CFG pair,
 * 8x8 latents) and the FLUX of tests/data/ckpt/flux-tiny (4 double + 6 single blocks, D 32, 16 image and
 * 7 text tokens, guidance). Inputs are seeded normals, rounded to the placement's dtype on the host first
 * so both sides see the same values; the device output is poisoned with NaN before the run.
 * Tolerances (gpu_tolerances.h): GPU_TOL_FWD_F32_* for the f32 placement (only summation order differs),
 * GPU_TOL_FWD_BF16_* for bf16 (every op output rounded to bf16). Exit 77 without a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/ds_cuda_ops.h"
#include "dit.h"
#include "dtype.h"
#include "flux.h"
#include "gpu_common.h"
#include "gpu_tolerances.h"
#include "rng.h"
#include "tensor_io.h"

/* A device tensor of `shape` in dtype dt holding host values h (converted), or poisoned when h is NULL. */
static bool dev_tensor(ds_tensor *t, ds_dtype dt, int ndim, const int64_t *shape, const float *h) {
    ds_err e = {0};
    if (!GPU_OK(ds_tensor_alloc(t, dt, (ds_device){DS_DEVICE_CUDA, 0}, ndim, shape, &e), &e)) return false;
    if (!h) return gpu_poison(t->data, (size_t)ds_tensor_nbytes(t));
    void *staging = malloc(ds_tensor_staging_bytes(t) + 1);
    bool ok = GPU_OK(ds_tensor_write_f32(t, h, staging, ds_tensor_staging_bytes(t), &e), &e);
    free(staging);
    return ok;
}

static bool dev_read(float *h, const ds_tensor *t) {
    ds_err e = {0};
    void *staging = malloc(ds_tensor_staging_bytes(t) + 1);
    bool ok = GPU_OK(ds_cuda_ctx_sync(&e), &e) &&
              GPU_OK(ds_tensor_read_f32(h, t, staging, ds_tensor_staging_bytes(t), &e), &e);
    free(staging);
    return ok;
}

/* Round host values to dtype dt and back (both sides then see the same inputs). */
static void round_to(float *x, int64_t n, ds_dtype dt) {
    if (dt == DS_F32) return;
    uint16_t *tmp = malloc((size_t)n * 2);
    ds_convert(tmp, dt, x, DS_F32, (size_t)n);
    ds_convert(x, DS_F32, tmp, dt, (size_t)n);
    free(tmp);
}

static gpu_tol tol_for(ds_dtype dt) {
    return dt == DS_F32 ? (gpu_tol){GPU_TOL_FWD_F32_REL, GPU_TOL_FWD_F32_ATOL, GPU_TOL_FWD_F32_RTOL}
                        : (gpu_tol){GPU_TOL_FWD_BF16_REL, GPU_TOL_FWD_BF16_ATOL, GPU_TOL_FWD_BF16_RTOL};
}

static void compare_out(const char *kase, const float *gpu, const float *cpu, int64_t n, ds_dtype dt) {
    double *ref = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) ref[i] = cpu[i];
    gpu_compare("gpu_forward", kase, gpu, ref, n, tol_for(dt));
    free(ref);
}

static void case_dit(ds_dtype dt) {
    ds_err e = {0};
    ds_diffusers *dir = NULL;
    const ds_component *tc;
    ds_dit *cpu = NULL, *gpu = NULL;
    ds_tensor dx = {0}, dout = {0};
    const int64_t B = 2, C = 4, S = 8, Cout = 8, nx = B * C * S * S, no = B * Cout * S * S;
    float *x = malloc((size_t)nx * sizeof(float)), *o_cpu = malloc((size_t)no * sizeof(float)),
          *o_gpu = malloc((size_t)no * sizeof(float));
    const float ts[2] = {500.0f, 500.0f};
    const int32_t labels[2] = {207, 1000}; /* a class and the null class */
    if (!GPU_OK(ds_diffusers_open(DS_TEST_DATA_DIR "/ckpt/dit-tiny", &dir, &e), &e) ||
        !GPU_OK(ds_diffusers_component(dir, "transformer", &tc, &e), &e))
        goto out;
    ds_placement pl = {{DS_DEVICE_CUDA, 0}, dt};
    if (!GPU_OK(ds_dit_load_on(tc, 2, 8, NULL, &cpu, &e), &e) || !GPU_OK(ds_dit_load_on(tc, 2, 8, &pl, &gpu, &e), &e))
        goto out;
    ds_rng_normal(7, 0, x, nx);
    round_to(x, nx, dt);
    ds_tensor hx = ds_tensor_f32(x, 4, B, C, S, S), ho = ds_tensor_f32(o_cpu, 4, B, Cout, S, S);
    if (!GPU_OK(ds_dit_forward(cpu, &hx, ts, labels, &ho, &e), &e)) goto out;
    if (!dev_tensor(&dx, dt, 4, (const int64_t[]){B, C, S, S}, x) ||
        !dev_tensor(&dout, dt, 4, (const int64_t[]){B, Cout, S, S}, NULL))
        goto out;
    if (!GPU_OK(ds_dit_forward(gpu, &dx, ts, labels, &dout, &e), &e) || !dev_read(o_gpu, &dout)) goto out;
    compare_out(dt == DS_F32 ? "dit_tiny_forward_f32" : "dit_tiny_forward_bf16", o_gpu, o_cpu, no, dt);
out:
    ds_tensor_free_data(&dx);
    ds_tensor_free_data(&dout);
    ds_dit_free(cpu);
    ds_dit_free(gpu);
    ds_diffusers_close(dir);
    free(x), free(o_cpu), free(o_gpu);
}

static void case_flux(ds_dtype dt) {
    ds_err e = {0};
    ds_diffusers *dir = NULL;
    const ds_component *tc;
    ds_flux *cpu = NULL, *gpu = NULL;
    ds_tensor d_h = {0}, d_enc = {0}, d_pool = {0}, d_out = {0};
    const int64_t B = 1, N = 16, T = 7, Cp = 64, J = 24, P = 12;
    float *h = malloc((size_t)(B * N * Cp) * sizeof(float)), *enc = malloc((size_t)(B * T * J) * sizeof(float));
    float *pool = malloc((size_t)(B * P) * sizeof(float)), *o_cpu = malloc((size_t)(B * N * Cp) * sizeof(float));
    float *o_gpu = malloc((size_t)(B * N * Cp) * sizeof(float));
    float img_ids[16 * 3], txt_ids[7 * 3];
    const float t[1] = {0.6f}, gd[1] = {3.5f};
    if (!GPU_OK(ds_diffusers_open(DS_TEST_DATA_DIR "/ckpt/flux-tiny", &dir, &e), &e) ||
        !GPU_OK(ds_diffusers_component(dir, "transformer", &tc, &e), &e))
        goto out;
    ds_placement pl = {{DS_DEVICE_CUDA, 0}, dt};
    if (!GPU_OK(ds_flux_load_on(tc, 1, 16, 7, NULL, &cpu, &e), &e) ||
        !GPU_OK(ds_flux_load_on(tc, 1, 16, 7, &pl, &gpu, &e), &e))
        goto out;
    ds_rng_normal(11, 0, h, B * N * Cp);
    ds_rng_normal(12, 0, enc, B * T * J);
    ds_rng_normal(13, 0, pool, B * P);
    round_to(h, B * N * Cp, dt);
    round_to(enc, B * T * J, dt);
    round_to(pool, B * P, dt);
    memset(txt_ids, 0, sizeof txt_ids);
    ds_tensor ti = ds_tensor_f32(img_ids, 2, N, 3), tt = ds_tensor_f32(txt_ids, 2, T, 3);
    if (!GPU_OK(ds_flux_image_ids(4, 4, &ti, &e), &e)) goto out;
    ds_tensor hh = ds_tensor_f32(h, 3, B, N, Cp), he = ds_tensor_f32(enc, 3, B, T, J), hp = ds_tensor_f32(pool, 2, B, P);
    ds_tensor ho = ds_tensor_f32(o_cpu, 3, B, N, Cp);
    if (!GPU_OK(ds_flux_forward(cpu, &hh, &he, &hp, t, gd, &ti, &tt, &ho, &e), &e)) goto out;
    if (!dev_tensor(&d_h, dt, 3, (const int64_t[]){B, N, Cp}, h) ||
        !dev_tensor(&d_enc, dt, 3, (const int64_t[]){B, T, J}, enc) ||
        !dev_tensor(&d_pool, dt, 2, (const int64_t[]){B, P}, pool) ||
        !dev_tensor(&d_out, dt, 3, (const int64_t[]){B, N, Cp}, NULL))
        goto out;
    if (!GPU_OK(ds_flux_forward(gpu, &d_h, &d_enc, &d_pool, t, gd, &ti, &tt, &d_out, &e), &e) ||
        !dev_read(o_gpu, &d_out))
        goto out;
    compare_out(dt == DS_F32 ? "flux_tiny_forward_f32" : "flux_tiny_forward_bf16", o_gpu, o_cpu, B * N * Cp, dt);
out:
    ds_tensor_free_data(&d_h);
    ds_tensor_free_data(&d_enc);
    ds_tensor_free_data(&d_pool);
    ds_tensor_free_data(&d_out);
    ds_flux_free(cpu);
    ds_flux_free(gpu);
    ds_diffusers_close(dir);
    free(h), free(enc), free(pool), free(o_cpu), free(o_gpu);
}

int main(void) {
    gpu_require_device("gpu_forward");
    ds_err e = {0};
    ds_cuda_ctx *ctx = NULL;
    if (!GPU_OK(ds_cuda_ctx_create(0, 0, &ctx, &e), &e) || !GPU_OK(ds_cuda_ctx_bind(ctx, &e), &e))
        return gpu_finish("gpu_forward");
    const ds_dtype dts[2] = {DS_F32, DS_BF16};
    for (int i = 0; i < 2; i++) {
        case_dit(dts[i]);
        case_flux(dts[i]);
    }
    ds_cuda_ctx_destroy(ctx);
    return gpu_finish("gpu_forward");
}
