/* gpu_linear.c - GPU twin test of the cuBLASLt linear (ds_cuda_linear) against a double-precision
 * triple loop on the host (independent of the CPU ds_op_linear). Odd and DiT-sized shapes, with and
 * without bias, f32 path (no TF32) and bf16 path (inputs rounded to bf16 on the host first; the
 * reference uses those rounded values). Outputs are poisoned with NaN before each run and followed
 * by a guard region that must stay untouched. Tolerances: gpu_tolerances.h. Exit 77 without a device. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "gpu_common.h"
#include "gpu_tolerances.h"
#include "rng.h"

#define GUARD_BYTES 256 /* after the output */
#define WORKSPACE_BYTES ((size_t)32 << 20)

typedef struct shape {
    int64_t M, K, N;
} shape;

/* Host inputs of one shape: f32 values and their bf16 roundings (bits and values). */
typedef struct inputs {
    int64_t M, K, N;
    float *x, *w, *b;          /* f32 path inputs */
    uint16_t *xh, *wh, *bh;    /* bf16 bits */
    float *xr, *wr, *br;       /* bf16 values as f32 */
} inputs;

static void inputs_free(inputs *in) {
    free(in->x); free(in->w); free(in->b);
    free(in->xh); free(in->wh); free(in->bh);
    free(in->xr); free(in->wr); free(in->br);
}

/* Deterministic inputs: x in [-1, 1), w in [-1, 1)/sqrt(K), bias in [-0.5, 0.5) so outputs are O(0.3). */
static bool inputs_make(inputs *in, shape s, uint64_t seed) {
    memset(in, 0, sizeof *in);
    in->M = s.M; in->K = s.K; in->N = s.N;
    size_t nx = (size_t)(s.M * s.K), nw = (size_t)(s.N * s.K), nb = (size_t)s.N;
    in->x = malloc(nx * sizeof(float)); in->w = malloc(nw * sizeof(float)); in->b = malloc(nb * sizeof(float));
    in->xh = malloc(nx * 2); in->wh = malloc(nw * 2); in->bh = malloc(nb * 2);
    in->xr = malloc(nx * sizeof(float)); in->wr = malloc(nw * sizeof(float)); in->br = malloc(nb * sizeof(float));
    if (!GPU_CHECK(in->x && in->w && in->b && in->xh && in->wh && in->bh && in->xr && in->wr && in->br,
                   "host allocation")) return false;
    ds_rng_uniform(seed, 0, in->x, (int64_t)nx);
    ds_rng_uniform(seed + 1, 0, in->w, (int64_t)nw);
    ds_rng_uniform(seed + 2, 0, in->b, (int64_t)nb);
    const float ws = (float)(1.0 / sqrt((double)s.K));
    for (size_t i = 0; i < nx; i++) in->x[i] = 2.0f * in->x[i] - 1.0f;
    for (size_t i = 0; i < nw; i++) in->w[i] = (2.0f * in->w[i] - 1.0f) * ws;
    for (size_t i = 0; i < nb; i++) in->b[i] = in->b[i] - 0.5f;
    for (size_t i = 0; i < nx; i++) { in->xh[i] = ds_f32_to_bf16(in->x[i]); in->xr[i] = ds_bf16_to_f32(in->xh[i]); }
    for (size_t i = 0; i < nw; i++) { in->wh[i] = ds_f32_to_bf16(in->w[i]); in->wr[i] = ds_bf16_to_f32(in->wh[i]); }
    for (size_t i = 0; i < nb; i++) { in->bh[i] = ds_f32_to_bf16(in->b[i]); in->br[i] = ds_bf16_to_f32(in->bh[i]); }
    return true;
}

/* ref[M,N] = x[M,K] . w[N,K]^T (+ b[N] when b != NULL), in double. */
static void reference(double *ref, const float *x, const float *w, const float *b, int64_t M, int64_t K, int64_t N) {
    for (int64_t i = 0; i < M; i++) {
        const float *xi = x + i * K;
        for (int64_t j = 0; j < N; j++) {
            const float *wj = w + j * K;
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++) acc += (double)xi[k] * (double)wj[k];
            ref[i * N + j] = acc + (b ? (double)b[j] : 0.0);
        }
    }
}

/* Upload, run ds_cuda_linear, download, compare. One RESULT line. shift > 0 moves x, w and out one
 * element past their 256-byte aligned allocations (arena-like sub-allocations: only element
 * alignment), which the algorithm choice must respect. */
static void run_case(ds_cuda_lt *lt, const inputs *in, ds_dtype dt, bool with_bias, bool shift) {
    const int64_t M = in->M, K = in->K, N = in->N;
    const size_t es = ds_dtype_size(dt);
    const bool f32 = dt == DS_F32;
    char name[128];
    snprintf(name, sizeof name, "%s_M%lld_K%lld_N%lld_%s%s", ds_dtype_name(dt), (long long)M, (long long)K,
             (long long)N, with_bias ? "bias" : "nobias", shift ? "_unaligned" : "");
    const size_t sh = shift ? es : 0; /* byte offset of x, w, out inside their allocations */
    const size_t nout = (size_t)(M * N), out_bytes = nout * es;
    char *dx = NULL, *dw = NULL, *db = NULL, *dout = NULL;
    unsigned char *host = malloc(out_bytes + GUARD_BYTES);
    float *got = malloc(nout * sizeof(float));
    double *ref = malloc(nout * sizeof(double));
    ds_err e = {0};
    if (!GPU_CHECK(host && got && ref, "%s: host allocation", name)) goto done;
    if (!GPU_OK(ds_cuda_malloc((void **)&dx, sh + (size_t)(M * K) * es, &e), &e)) goto done;
    if (!GPU_OK(ds_cuda_malloc((void **)&dw, sh + (size_t)(N * K) * es, &e), &e)) goto done;
    if (!GPU_OK(ds_cuda_malloc((void **)&db, (size_t)N * es, &e), &e)) goto done;
    if (!GPU_OK(ds_cuda_malloc((void **)&dout, sh + out_bytes + GUARD_BYTES, &e), &e)) goto done;
    if (!GPU_OK(ds_cuda_memcpy_h2d(dx + sh, f32 ? (const void *)in->x : (const void *)in->xh, (size_t)(M * K) * es,
                                   &e), &e))
        goto done;
    if (!GPU_OK(ds_cuda_memcpy_h2d(dw + sh, f32 ? (const void *)in->w : (const void *)in->wh, (size_t)(N * K) * es,
                                   &e), &e))
        goto done;
    if (!GPU_OK(ds_cuda_memcpy_h2d(db, f32 ? (const void *)in->b : (const void *)in->bh, (size_t)N * es, &e), &e))
        goto done;
    if (!gpu_poison(dout, sh + out_bytes + GUARD_BYTES)) goto done;

    if (!GPU_OK(ds_cuda_linear(lt, dt, dout + sh, dx + sh, dw + sh, with_bias ? db : NULL, M, K, N, NULL, &e), &e))
        goto done;
    if (!GPU_OK(ds_cuda_synchronize(&e), &e)) goto done;
    if (!GPU_OK(ds_cuda_memcpy_d2h(host, dout + sh, out_bytes + GUARD_BYTES, &e), &e)) goto done;
    GPU_CHECK(gpu_all_ff(host + out_bytes, GUARD_BYTES), "%s: wrote past the output", name);

    if (f32) {
        memcpy(got, host, out_bytes);
        reference(ref, in->x, in->w, with_bias ? in->b : NULL, M, K, N);
        gpu_compare("gpu_linear", name, got, ref, (int64_t)nout,
                    (gpu_tol){GPU_TOL_LINEAR_F32_REL, GPU_TOL_LINEAR_F32_ATOL, GPU_TOL_LINEAR_F32_RTOL});
    } else {
        for (size_t i = 0; i < nout; i++) {
            uint16_t h;
            memcpy(&h, host + 2 * i, 2);
            got[i] = ds_bf16_to_f32(h);
        }
        reference(ref, in->xr, in->wr, with_bias ? in->br : NULL, M, K, N);
        gpu_compare("gpu_linear", name, got, ref, (int64_t)nout,
                    (gpu_tol){GPU_TOL_LINEAR_BF16_REL, GPU_TOL_LINEAR_BF16_ATOL, GPU_TOL_LINEAR_BF16_RTOL});
    }
done:
    ds_cuda_free(dx);
    ds_cuda_free(dw);
    ds_cuda_free(db);
    ds_cuda_free(dout);
    free(host);
    free(got);
    free(ref);
}

int main(void) {
    gpu_require_device("gpu_linear");
    ds_err e = {0};
    ds_cuda_lt *lt = NULL;
    if (!GPU_OK(ds_cuda_lt_create(&lt, WORKSPACE_BYTES, &e), &e)) return gpu_finish("gpu_linear");

    static const shape shapes[] = {{13, 67, 29}, {77, 301, 193}, {256, 1152, 1152}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        inputs in;
        if (inputs_make(&in, shapes[s], 1000 + 10 * (uint64_t)s)) {
            run_case(lt, &in, DS_F32, false, false);
            run_case(lt, &in, DS_F32, true, false);
            run_case(lt, &in, DS_BF16, false, false);
            run_case(lt, &in, DS_BF16, true, false);
            if (s == 1) {
                run_case(lt, &in, DS_F32, true, true);
                run_case(lt, &in, DS_BF16, true, true);
            }
        }
        inputs_free(&in);
    }

    /* Contract checks. */
    GPU_CHECK(ds_cuda_linear(lt, DS_F32, NULL, NULL, NULL, NULL, 0, 8, 8, NULL, &e) == DS_OK, "M = 0 is a no-op");
    GPU_CHECK(ds_cuda_linear(lt, DS_F16, NULL, NULL, NULL, NULL, 1, 8, 8, NULL, &e) == DS_ERR_INVALID_ARG,
              "f16 is a supported dtype: NULL pointers are the error");
    GPU_CHECK(ds_cuda_linear(lt, DS_DTYPE_COUNT, NULL, NULL, NULL, NULL, 1, 8, 8, NULL, &e) == DS_ERR_INVALID_ARG,
              "an unknown dtype is refused");
    GPU_CHECK(ds_cuda_linear(lt, DS_F32, NULL, NULL, NULL, NULL, 1, 0, 8, NULL, &e) == DS_ERR_INVALID_ARG,
              "K = 0 is invalid");
    GPU_CHECK(ds_cuda_linear(lt, DS_F32, (void *)(uintptr_t)256, (const void *)(uintptr_t)256,
                             (const void *)(uintptr_t)256, (const void *)(uintptr_t)260, 1, 8, 8, NULL,
                             &e) == DS_ERR_INVALID_ARG,
              "a bias that is not 16-byte aligned is refused before any launch");
    ds_cuda_lt_destroy(lt);
    return gpu_finish("gpu_linear");
}
