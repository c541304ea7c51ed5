/* gpu_common.h - a tiny harness for the plain-C GPU twin tests (tests/gpu/gpu_*.c, no Criterion).
 *
 * - gpu_require_device(test): prints "SKIP: no CUDA device (<reason>)" and a RESULT ... SKIP line,
 *   then exits 77 (ctest SKIP_RETURN_CODE) when there is no usable CUDA device.
 * - GPU_CHECK(cond, fmt, ...) / GPU_OK(call, &err): count failures and print where they happened.
 * - gpu_poison(d, bytes): fill device memory with 0xFF bytes (every f32/bf16 element reads as NaN)
 *   before each run, so an element the kernel never wrote fails the comparison.
 * - gpu_compare(...): the house rule, both parts must hold:
 *     ||out - ref||_2 / ||ref||_2 <= tol.rel           (per tensor)
 *     |out[i] - ref[i]| <= tol.atol + tol.rtol*|ref[i]| (every element; NaN never passes)
 *   It prints max abs/rel error, the first mismatch, and one summary line
 *     RESULT <test> <case> rel=<..> max_abs=<..> tol=<rel,atol,rtol> PASS|FAIL
 *   that tests/gpu/device_check.sh collects into its summary table.
 * - gpu_finish(test): returns the exit code for main (0 all passed, 1 any failure).
 * Everything is static inline so each test file includes it alone. */
#ifndef DS_GPU_COMMON_H
#define DS_GPU_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/ds_cuda.h"
#include "device.h"
#include "status.h"

#define GPU_SKIP_CODE 77

/* Failure counter shared by the macros (function-local static: one per test executable). */
static inline int *gpu_failures(void) {
    static int failures;
    return &failures;
}

static inline void gpu_fail_here(const char *file, int line, const char *what) {
    (*gpu_failures())++;
    printf("CHECK FAILED %s:%d: %s\n", file, line, what);
    fflush(stdout);
}

/* GPU_CHECK(cond, "fmt", args...): on false, print the condition and the message and count it.
 * Evaluates to cond, so `if (!GPU_CHECK(...)) goto done;` works. */
#define GPU_CHECK(cond, ...)                                                     \
    ((cond) ? true                                                              \
            : (gpu_fail_here(__FILE__, __LINE__, #cond), printf("  " __VA_ARGS__), \
               printf("\n"), false))

static inline bool gpu_ok_impl(ds_status s, const ds_err *e, const char *what, const char *file, int line) {
    if (s == DS_OK) return true;
    gpu_fail_here(file, line, what);
    printf("  -> %s: %s\n", ds_status_name(s), e ? e->msg : "");
    return false;
}

/* GPU_OK(call, &err): call must return DS_OK; otherwise print the status and err->msg, count it.
 * Evaluates to true on DS_OK. */
#define GPU_OK(call, errp) gpu_ok_impl((call), (errp), #call, __FILE__, __LINE__)

/* Exit 77 with a visible SKIP line when no CUDA device can be used; otherwise select device 0 and
 * print its name. */
static inline void gpu_require_device(const char *test) {
    ds_err e = {0};
    int n = 0;
    ds_status s = ds_device_cuda_count(&n, &e);
    const char *why = NULL;
    if (s != DS_OK) why = e.msg[0] ? e.msg : ds_status_name(s);
    else if (n <= 0) why = "the CUDA runtime reports 0 devices";
    if (!why) {
        ds_err_clear(&e);
        if (ds_cuda_set_device(0, &e) != DS_OK) why = e.msg;
    }
    if (why) {
        printf("SKIP: no CUDA device (%s)\n", why);
        printf("RESULT %s all rel=- max_abs=- tol=- SKIP\n", test);
        fflush(stdout);
        exit(GPU_SKIP_CODE);
    }
    char name[256];
    ds_device_cuda_name(0, name, sizeof name);
    printf("%s: device 0 = %s\n", test, name);
    fflush(stdout);
}

/* Poison `bytes` bytes of device memory with 0xFF (NaN in every float type). Counts a failure and
 * returns false on error. */
static inline bool gpu_poison(void *d, size_t bytes) {
    ds_err e = {0};
    return GPU_OK(ds_cuda_memset(d, 0xFF, bytes, &e), &e);
}

typedef struct gpu_tol {
    double rel;  /* per tensor: ||out-ref|| / ||ref|| */
    double atol; /* per element: |out-ref| <= atol + rtol*|ref| */
    double rtol;
} gpu_tol;

/* Compare out[0..n) (the device result, already converted to f32 and copied to the host) with
 * ref[0..n) (double), print diagnostics and the RESULT line, count a failure. Returns true on pass.
 * n == 0 passes with rel = 0. A NaN/inf in out fails (poisoned elements never pass). */
static inline bool gpu_compare(const char *test, const char *kase, const float *out, const double *ref, int64_t n,
                               gpu_tol tol) {
    double num = 0.0, den = 0.0, max_abs = 0.0, max_rel = 0.0;
    int64_t bad = 0, first_bad = -1, nonfinite = 0;
    for (int64_t i = 0; i < n; i++) {
        double o = (double)out[i], r = ref[i];
        double d = fabs(o - r);
        if (!isfinite(o)) {
            nonfinite++;
            d = INFINITY;
        }
        num += d * d;
        den += r * r;
        if (d > max_abs) max_abs = d;
        double rr = d / (fabs(r) > 1e-30 ? fabs(r) : 1e-30);
        if (rr > max_rel) max_rel = rr;
        if (!(d <= tol.atol + tol.rtol * fabs(r))) {
            if (first_bad < 0) first_bad = i;
            bad++;
        }
    }
    double rel = n == 0 ? 0.0 : (den > 0.0 ? sqrt(num) / sqrt(den) : (num > 0.0 ? INFINITY : 0.0));
    bool pass = bad == 0 && rel <= tol.rel;
    printf("%s %s: n=%lld rel=%.3e max_abs=%.3e max_rel=%.3e mismatches=%lld nonfinite=%lld\n", test, kase,
           (long long)n, rel, max_abs, max_rel, (long long)bad, (long long)nonfinite);
    if (first_bad >= 0)
        printf("  first mismatch at %lld: out=%.9g ref=%.9g |diff|=%.3e allowed=%.3e\n", (long long)first_bad,
               (double)out[first_bad], ref[first_bad], fabs((double)out[first_bad] - ref[first_bad]),
               tol.atol + tol.rtol * fabs(ref[first_bad]));
    printf("RESULT %s %s rel=%.3e max_abs=%.3e tol=rel<=%.1e,atol=%.1e,rtol=%.1e %s\n", test, kase, rel, max_abs,
           tol.rel, tol.atol, tol.rtol, pass ? "PASS" : "FAIL");
    fflush(stdout);
    if (!pass) (*gpu_failures())++;
    return pass;
}

/* True when bytes [0, len) of host buffer p are all 0xFF (a guard region the kernel must not touch). */
static inline bool gpu_all_ff(const void *p, size_t len) {
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < len; i++)
        if (b[i] != 0xFF) return false;
    return true;
}

/* Exit code for main: 0 when nothing failed, 1 otherwise; prints a final line. */
static inline int gpu_finish(const char *test) {
    int f = *gpu_failures();
    printf("%s: %s (%d failure%s)\n", test, f ? "FAILED" : "passed", f, f == 1 ? "" : "s");
    fflush(stdout);
    return f ? 1 : 0;
}

#endif /* DS_GPU_COMMON_H */
