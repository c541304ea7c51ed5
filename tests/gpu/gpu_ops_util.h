/* gpu_ops_util.h - shared helpers of the op twin tests (tests/gpu/gpu_ops_*.c), on top of gpu_common.h.
 *
 * Every case of those tests follows one method:
 *   1. seeded host f32 inputs (gpu_uniform / gpu_normal over ds_rng_*), rounded on the host to the case's
 *      dtype and back (gpu_round) so that the CPU reference and the device see the very same values;
 *   2. reference = the CPU ds_op_* on those f32 values (gpu_host views);
 *   3. device = the same ds_op_* on CUDA views (gpu_dev: dtype, device {DS_DEVICE_CUDA, 0}, contiguous
 *      strides), which dispatches to the CUDA twin, into an output poisoned with NaN (0xFF bytes) and
 *      followed by a GPU_GUARD_BYTES guard that must stay 0xFF;
 *   4. ds_cuda_ctx_sync, download, guard check, convert to f32, gpu_compare against the reference with the
 *      tolerance of the op class and dtype (GPU_TOL(dt, CLASS), numbers in gpu_tolerances.h).
 * Error paths print RESULT lines too (gpu_expect), so tests/gpu/device_check.sh lists them.
 * Everything is static inline: each test file includes this header alone (after nothing else of ours). */
#ifndef DS_GPU_OPS_UTIL_H
#define DS_GPU_OPS_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/ds_cuda_ops.h"
#include "dtype.h"
#include "gpu_common.h"
#include "gpu_tolerances.h"
#include "ops.h"
#include "rng.h"
#include "tensor.h"

#define GPU_GUARD_BYTES 256 /* after every device tensor: must stay 0xFF */
#define GPU_NDTYPES 3       /* the element types of the CUDA twins, in gpu_dtype order */

/* The i-th CUDA element type: f32, bf16, f16. */
static inline ds_dtype gpu_dtype(int i) { return i == 0 ? DS_F32 : i == 1 ? DS_BF16 : DS_F16; }

/* gpu_tol of an op class for dtype dt: GPU_TOL(dt, NORM) reads GPU_TOL_NORM_{F32,BF16,F16}_{REL,ATOL,RTOL}. */
static inline gpu_tol gpu_tol_of(ds_dtype dt, gpu_tol f32, gpu_tol bf16, gpu_tol f16) {
    return dt == DS_F32 ? f32 : dt == DS_BF16 ? bf16 : f16;
}
#define GPU_TOL(dt, CLS)                                                                               \
    gpu_tol_of((dt), (gpu_tol){GPU_TOL_##CLS##_F32_REL, GPU_TOL_##CLS##_F32_ATOL, GPU_TOL_##CLS##_F32_RTOL}, \
               (gpu_tol){GPU_TOL_##CLS##_BF16_REL, GPU_TOL_##CLS##_BF16_ATOL, GPU_TOL_##CLS##_BF16_RTOL},    \
               (gpu_tol){GPU_TOL_##CLS##_F16_REL, GPU_TOL_##CLS##_F16_ATOL, GPU_TOL_##CLS##_F16_RTOL})

/* ---- host side ------------------------------------------------------------------------------------ */

/* "2x77x1152" into buf. Returns buf. */
static inline const char *gpu_shape_str(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "x" : "", (long long)shape[i]);
    return buf;
}

static inline int64_t gpu_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* n floats (at least one) on the host; NULL (and a counted failure) when out of memory. */
static inline float *gpu_falloc(int64_t n) {
    float *p = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    GPU_CHECK(p != NULL, "host allocation of %lld floats", (long long)n);
    return p;
}

static inline float *gpu_fdup(const float *x, int64_t n) {
    float *p = gpu_falloc(n);
    if (p && n > 0) memcpy(p, x, (size_t)n * sizeof(float));
    return p;
}

/* x[i] = U[lo, hi) from the (seed, offset 0) stream. */
static inline void gpu_uniform(float *x, int64_t n, uint64_t seed, double lo, double hi) {
    ds_rng_uniform(seed, 0, x, n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * (double)x[i]);
}

/* x[i] = mean + sd * N(0, 1) from the (seed, offset 0) stream. */
static inline void gpu_normal(float *x, int64_t n, uint64_t seed, double mean, double sd) {
    ds_rng_normal(seed, 0, x, n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(mean + sd * (double)x[i]);
}

/* Round x[0..n) to dtype dt and back, in place (a no-op for f32): the values both sides then see. */
static inline void gpu_round(float *x, int64_t n, ds_dtype dt) {
    if (dt == DS_F32 || n <= 0) return;
    uint16_t *h = (uint16_t *)malloc((size_t)n * sizeof(uint16_t));
    if (!GPU_CHECK(h != NULL, "host allocation")) return;
    ds_convert(h, dt, x, DS_F32, (size_t)n);
    ds_convert(x, DS_F32, h, dt, (size_t)n);
    free(h);
}

/* A contiguous f32 CPU tensor over host memory (the reference side). */
static inline ds_tensor gpu_host(float *x, int ndim, const int64_t *shape) {
    return ds_tensor_make(x, DS_F32, ndim, shape);
}

/* ---- device tensors ------------------------------------------------------------------------------- */

/* A contiguous CUDA tensor view (device 0) of dtype dt over device memory d. */
static inline ds_tensor gpu_view(void *d, ds_dtype dt, int ndim, const int64_t *shape) {
    ds_tensor t = ds_tensor_make(d, dt, ndim, shape);
    t.device.kind = DS_DEVICE_CUDA;
    t.device.index = 0;
    return t;
}

/* A device tensor in its own allocation: [shift elements][payload][GPU_GUARD_BYTES guard]. */
typedef struct gpu_dev {
    ds_tensor t;   /* CUDA view of the payload */
    void *base;    /* ds_cuda_malloc'd allocation (NULL when none) */
    size_t nbytes; /* payload bytes */
    int64_t n;     /* payload elements */
} gpu_dev;

static inline void gpu_dev_free(gpu_dev *b) {
    if (b->base) ds_cuda_free(b->base);
    memset(b, 0, sizeof *b);
}

/* Allocate a [shape] tensor of dtype dt whose data starts `shift` elements past the allocation (shift = 1:
 * only element alignment, as an arena sub-allocation may give), and poison all of it, guard included. */
static inline bool gpu_dev_alloc_at(gpu_dev *b, ds_dtype dt, int ndim, const int64_t *shape, int64_t shift) {
    ds_err e = {0};
    memset(b, 0, sizeof *b);
    const size_t es = ds_dtype_size(dt), off = (size_t)shift * es;
    b->n = gpu_numel(ndim, shape);
    b->nbytes = (size_t)b->n * es;
    if (!GPU_OK(ds_cuda_malloc(&b->base, off + b->nbytes + GPU_GUARD_BYTES, &e), &e)) return false;
    b->t = gpu_view((char *)b->base + off, dt, ndim, shape);
    return gpu_poison(b->base, off + b->nbytes + GPU_GUARD_BYTES);
}

static inline bool gpu_dev_alloc(gpu_dev *b, ds_dtype dt, int ndim, const int64_t *shape) {
    return gpu_dev_alloc_at(b, dt, ndim, shape, 0);
}

/* Upload host f32 values h[0..n) converted to the tensor's dtype (exact when h was gpu_round'ed to it). */
static inline bool gpu_dev_upload(gpu_dev *b, const float *h) {
    ds_err e = {0};
    if (b->n == 0) return true;
    void *tmp = malloc(b->nbytes);
    if (!GPU_CHECK(tmp != NULL, "host allocation")) return false;
    ds_convert(tmp, b->t.dtype, h, DS_F32, (size_t)b->n);
    const bool ok = GPU_OK(ds_cuda_ctx_upload(b->t.data, tmp, b->nbytes, &e), &e);
    free(tmp);
    return ok;
}

/* Allocate (poisoned) and upload h: an input tensor. */
static inline bool gpu_dev_from(gpu_dev *b, ds_dtype dt, int ndim, const int64_t *shape, const float *h) {
    return gpu_dev_alloc(b, dt, ndim, shape) && gpu_dev_upload(b, h);
}

/* Re-poison payload and guard before a run (outputs reused across runs). */
static inline bool gpu_dev_poison(gpu_dev *b) {
    return gpu_poison(b->t.data, b->nbytes + GPU_GUARD_BYTES);
}

/* Download the payload converted to f32 into h[0..n) and check that the guard after it is untouched
 * (counted failure naming `kase` otherwise). The caller has synchronized the context. */
static inline bool gpu_dev_download(const gpu_dev *b, float *h, const char *kase) {
    ds_err e = {0};
    unsigned char *tmp = (unsigned char *)malloc(b->nbytes + GPU_GUARD_BYTES);
    if (!GPU_CHECK(tmp != NULL, "host allocation")) return false;
    bool ok = GPU_OK(ds_cuda_ctx_download(tmp, b->t.data, b->nbytes + GPU_GUARD_BYTES, &e), &e);
    if (ok) {
        ok = GPU_CHECK(gpu_all_ff(tmp + b->nbytes, GPU_GUARD_BYTES), "%s: wrote past the end of the output", kase);
        ds_convert(h, DS_F32, tmp, b->t.dtype, (size_t)b->n);
    }
    free(tmp);
    return ok;
}

/* A [B, D] view of columns [c0, c0 + D) of a [B, W] row-major tensor (an adaLN chunk): row stride W. */
static inline ds_tensor gpu_cols(const ds_tensor *wide, int64_t c0, int64_t d) {
    ds_tensor t = *wide;
    t.data = (char *)wide->data + (size_t)c0 * ds_dtype_size(wide->dtype);
    t.shape[1] = d;
    t.stride[0] = wide->shape[1];
    t.stride[1] = 1;
    return t;
}

/* ---- running and checking ------------------------------------------------------------------------- */

/* The status of a device op call that must succeed; on failure a FAIL RESULT line names the case. */
static inline bool gpu_run_ok(const char *test, const char *kase, ds_status s, const ds_err *e) {
    if (s == DS_OK) return true;
    (*gpu_failures())++;
    printf("%s %s: the op returned %s: %s\n", test, kase, ds_status_name(s), e ? e->msg : "");
    printf("RESULT %s %s rel=- max_abs=- tol=- FAIL\n", test, kase);
    fflush(stdout);
    return false;
}

/* Synchronize the context, download `out` (guard checked), compare with the f32 reference ref[0..n). */
static inline bool gpu_check(const char *test, const char *kase, const gpu_dev *out, const float *ref, gpu_tol tol) {
    ds_err e = {0};
    bool pass = false;
    float *got = gpu_falloc(out->n);
    double *r = (double *)malloc((size_t)(out->n > 0 ? out->n : 1) * sizeof(double));
    if (!got || !GPU_CHECK(r != NULL, "host allocation")) goto done;
    if (!GPU_OK(ds_cuda_ctx_sync(&e), &e)) {
        printf("RESULT %s %s rel=- max_abs=- tol=- FAIL\n", test, kase);
        goto done;
    }
    if (!gpu_dev_download(out, got, kase)) {
        printf("RESULT %s %s rel=- max_abs=- tol=- FAIL\n", test, kase);
        goto done;
    }
    for (int64_t i = 0; i < out->n; i++) r[i] = (double)ref[i];
    pass = gpu_compare(test, kase, got, r, out->n, tol);
done:
    fflush(stdout);
    free(got);
    free(r);
    return pass;
}

/* An error path: the call returned `got` and must return `want`. Prints a RESULT line either way. */
static inline bool gpu_expect(const char *test, const char *kase, ds_status got, ds_status want, const ds_err *e) {
    const bool pass = got == want;
    if (!pass) {
        (*gpu_failures())++;
        printf("%s %s: expected %s, got %s: %s\n", test, kase, ds_status_name(want), ds_status_name(got),
               e ? e->msg : "");
    }
    printf("RESULT %s %s rel=- max_abs=- tol=status:%s %s\n", test, kase, ds_status_name(want), pass ? "PASS" : "FAIL");
    fflush(stdout);
    return pass;
}

/* ---- context -------------------------------------------------------------------------------------- */

/* gpu_require_device (SKIP, exit 77 without a device), then create and bind a context on device 0.
 * NULL (failure counted) when that fails. */
static inline ds_cuda_ctx *gpu_ctx_open(const char *test) {
    gpu_require_device(test);
    ds_err e = {0};
    ds_cuda_ctx *ctx = NULL;
    if (!GPU_OK(ds_cuda_ctx_create(0, 0, &ctx, &e), &e)) return NULL;
    if (!GPU_OK(ds_cuda_ctx_bind(ctx, &e), &e)) {
        ds_cuda_ctx_destroy(ctx);
        return NULL;
    }
    return ctx;
}

static inline void gpu_ctx_close(ds_cuda_ctx *ctx) {
    ds_err e = {0};
    if (!ctx) return;
    GPU_OK(ds_cuda_ctx_sync(&e), &e);
    ds_cuda_ctx_bind(NULL, &e);
    ds_cuda_ctx_destroy(ctx);
}

#endif /* DS_GPU_OPS_UTIL_H */
