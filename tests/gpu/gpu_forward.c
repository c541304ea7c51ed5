/* gpu_forward.c - one transformer forward on the CPU (f32 reference) and on CUDA (bf16 and f32 placements),
 * same checkpoint, same inputs: the DiT of tests/data/ckpt/dit-tiny (10 blocks, D 24, batch 2 = a CFG pair,
 * 8x8 latents) and the FLUX of tests/data/ckpt/flux-tiny (4 double + 6 single blocks, D 32, 16 image and
 * 7 text tokens, guidance). Inputs are seeded normals, rounded to the placement's dtype on the host first
 * so both sides see the same values; the device output is poisoned with NaN before the run and followed by a
 * guard region that must stay untouched (tests/gpu/gpu_ops_util.h).
 * Tolerances (gpu_tolerances.h): GPU_TOL_FWD_F32_* for the f32 placement (only summation order differs),
 * GPU_TOL_FWD_BF16_* for bf16 (every op output rounded to bf16). Exit 77 without a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/ds_cuda_ops.h"
#include "dit.h"
#include "flux.h"
#include "gpu_common.h"
#include "gpu_ops_util.h"
#include "gpu_tolerances.h"
#include "rng.h"

static gpu_tol tol_for(ds_dtype dt) {
    return dt == DS_F32 ? (gpu_tol){GPU_TOL_FWD_F32_REL, GPU_TOL_FWD_F32_ATOL, GPU_TOL_FWD_F32_RTOL}
                        : (gpu_tol){GPU_TOL_FWD_BF16_REL, GPU_TOL_FWD_BF16_ATOL, GPU_TOL_FWD_BF16_RTOL};
}

static void case_dit(ds_dtype dt) {
    ds_err e = {0};
    ds_diffusers *dir = NULL;
    const ds_component *tc;
    ds_dit *cpu = NULL, *gpu = NULL;
    gpu_dev dx = {0}, dout = {0}; /* inputs / output on the device, with guard regions */
    const int64_t B = 2, C = 4, S = 8, Cout = 8, nx = B * C * S * S, no = B * Cout * S * S;
    float *x = malloc((size_t)nx * sizeof(float)), *o_cpu = malloc((size_t)no * sizeof(float));
    const float ts[2] = {500.0f, 500.0f};
    const int32_t labels[2] = {207, 1000}; /* a class and the null class */
    if (!GPU_OK(ds_diffusers_open(DS_TEST_DATA_DIR "/ckpt/dit-tiny", &dir, &e), &e) ||
        !GPU_OK(ds_diffusers_component(dir, "transformer", &tc, &e), &e))
        goto out;
    ds_placement pl = {{DS_DEVICE_CUDA, 0}, dt};
    if (!GPU_OK(ds_dit_load_on(tc, 2, 8, NULL, &cpu, &e), &e) || !GPU_OK(ds_dit_load_on(tc, 2, 8, &pl, &gpu, &e), &e))
        goto out;
    ds_rng_normal(7, 0, x, nx);
    gpu_round(x, nx, dt);
    ds_tensor hx = ds_tensor_f32(x, 4, B, C, S, S), ho = ds_tensor_f32(o_cpu, 4, B, Cout, S, S);
    if (!GPU_OK(ds_dit_forward(cpu, &hx, ts, labels, &ho, &e), &e)) goto out;
    if (!gpu_dev_from(&dx, dt, 4, (const int64_t[]){B, C, S, S}, x) ||
        !gpu_dev_alloc(&dout, dt, 4, (const int64_t[]){B, Cout, S, S}))
        goto out;
    if (!GPU_OK(ds_dit_forward(gpu, &dx.t, ts, labels, &dout.t, &e), &e)) goto out;
    gpu_check("gpu_forward", dt == DS_F32 ? "dit_tiny_forward_f32" : "dit_tiny_forward_bf16", &dout, o_cpu, tol_for(dt));
out:
    gpu_dev_free(&dx);
    gpu_dev_free(&dout);
    ds_dit_free(cpu);
    ds_dit_free(gpu);
    ds_diffusers_close(dir);
    free(x), free(o_cpu);
}

static void case_flux(ds_dtype dt) {
    ds_err e = {0};
    ds_diffusers *dir = NULL;
    const ds_component *tc;
    ds_flux *cpu = NULL, *gpu = NULL;
    gpu_dev d_h = {0}, d_enc = {0}, d_pool = {0}, d_out = {0};
    const int64_t B = 1, N = 16, T = 7, Cp = 64, J = 24, P = 12;
    float *h = malloc((size_t)(B * N * Cp) * sizeof(float)), *enc = malloc((size_t)(B * T * J) * sizeof(float));
    float *pool = malloc((size_t)(B * P) * sizeof(float)), *o_cpu = malloc((size_t)(B * N * Cp) * sizeof(float));
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
    gpu_round(h, B * N * Cp, dt);
    gpu_round(enc, B * T * J, dt);
    gpu_round(pool, B * P, dt);
    memset(txt_ids, 0, sizeof txt_ids);
    ds_tensor ti = ds_tensor_f32(img_ids, 2, N, 3), tt = ds_tensor_f32(txt_ids, 2, T, 3);
    if (!GPU_OK(ds_flux_image_ids(4, 4, &ti, &e), &e)) goto out;
    ds_tensor hh = ds_tensor_f32(h, 3, B, N, Cp), he = ds_tensor_f32(enc, 3, B, T, J), hp = ds_tensor_f32(pool, 2, B, P);
    ds_tensor ho = ds_tensor_f32(o_cpu, 3, B, N, Cp);
    if (!GPU_OK(ds_flux_forward(cpu, &hh, &he, &hp, t, gd, &ti, &tt, &ho, &e), &e)) goto out;
    if (!gpu_dev_from(&d_h, dt, 3, (const int64_t[]){B, N, Cp}, h) ||
        !gpu_dev_from(&d_enc, dt, 3, (const int64_t[]){B, T, J}, enc) ||
        !gpu_dev_from(&d_pool, dt, 2, (const int64_t[]){B, P}, pool) ||
        !gpu_dev_alloc(&d_out, dt, 3, (const int64_t[]){B, N, Cp}))
        goto out;
    if (!GPU_OK(ds_flux_forward(gpu, &d_h.t, &d_enc.t, &d_pool.t, t, gd, &ti, &tt, &d_out.t, &e), &e)) goto out;
    gpu_check("gpu_forward", dt == DS_F32 ? "flux_tiny_forward_f32" : "flux_tiny_forward_bf16", &d_out, o_cpu,
              tol_for(dt));
out:
    gpu_dev_free(&d_h);
    gpu_dev_free(&d_enc);
    gpu_dev_free(&d_pool);
    gpu_dev_free(&d_out);
    ds_flux_free(cpu);
    ds_flux_free(gpu);
    ds_diffusers_close(dir);
    free(h), free(enc), free(pool), free(o_cpu);
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
