/* ops_bench.c - small CPU benchmark of the transformer ops at DiT-ish sizes: ds_op_linear
 * (M=256, K=N=1152, DiT-XL/2 width) and ds_op_attention (N=256 and 1024 tokens, H=16, d=72),
 * and ds_op_conv2d at VAE-decoder sizes (3x3, pad 1), printing time per call, GFLOP/s and, for the
 * ops that take scratch, its size. For scale, the attention is also timed as a plain
 * OpenBLAS-sgemm formulation (per head: S = q·kᵀ, softmax, S·v), which is what a BLAS-based
 * kernel would reach.
 *
 * Usage: ops_bench [seconds per measurement, default 0.5]. Threads: OMP_NUM_THREADS /
 * OPENBLAS_NUM_THREADS. Speed is reported, never asserted. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *rand_buf(int64_t n, uint64_t seed, float scale) {
    float *p = malloc((size_t)n * sizeof(float));
    if (!p) {
        fprintf(stderr, "ops_bench: out of memory\n");
        exit(1);
    }
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = scale * ((float)(s >> 40) / (float)(1u << 24) - 0.5f);
    }
    return p;
}

typedef int (*bench_fn)(void *ctx);

/* Seconds per call: one warm-up call, then repeat until `budget` seconds have passed. */
static double time_it(bench_fn fn, void *ctx, double budget) {
    if (fn(ctx)) return -1.0;
    int reps = 0;
    double t0 = now_s(), t;
    do {
        if (fn(ctx)) return -1.0;
        reps++;
        t = now_s();
    } while (t - t0 < budget);
    return (t - t0) / reps;
}

typedef struct linear_ctx {
    ds_tensor out, x, w, b;
} linear_ctx;

static int run_linear(void *p) {
    linear_ctx *c = p;
    ds_err err;
    if (ds_op_linear(&c->out, &c->x, &c->w, &c->b, &err) != DS_OK) {
        fprintf(stderr, "linear: %s\n", err.msg);
        return 1;
    }
    return 0;
}

typedef struct attn_ctx {
    ds_tensor out, q, k, v;
    void *scratch;
    size_t scratch_bytes;
    int64_t B, N, H, d;
    float *qh, *kh, *vh, *s, *oh; /* head-major copies + scores for the sgemm yardstick */
} attn_ctx;

static int run_attention(void *p) {
    attn_ctx *c = p;
    ds_err err;
    if (ds_op_attention(&c->out, &c->q, &c->k, &c->v, NULL, 0.0f, c->scratch, c->scratch_bytes, &err) != DS_OK) {
        fprintf(stderr, "attention: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* Yardstick: per (b, h) on head-major [N, d] matrices, S = q·kᵀ·scale (sgemm), row softmax, o = S·v
 * (sgemm). Single OpenMP-free loop; OpenBLAS threads each sgemm itself. */
static int run_attention_sgemm(void *p) {
    attn_ctx *c = p;
    const int n = (int)c->N, d = (int)c->d;
    const float scale = 1.0f / sqrtf((float)d);
    for (int64_t bh = 0; bh < c->B * c->H; bh++) {
        const float *q = c->qh + bh * n * d, *k = c->kh + bh * n * d, *v = c->vh + bh * n * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, scale, q, d, k, d, 0.0f, c->s, n);
        for (int i = 0; i < n; i++) {
            float *r = c->s + (int64_t)i * n, mx = r[0], sum = 0.0f;
            for (int j = 1; j < n; j++) mx = r[j] > mx ? r[j] : mx;
            for (int j = 0; j < n; j++) sum += (r[j] = expf(r[j] - mx));
            for (int j = 0; j < n; j++) r[j] /= sum;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, n, 1.0f, c->s, n, v, d, 0.0f,
                    c->oh + bh * n * d, d);
    }
    return 0;
}

static void bench_linear(int64_t m, int64_t k, int64_t n, double budget) {
    linear_ctx c;
    float *x = rand_buf(m * k, 1, 2.0f), *w = rand_buf(n * k, 2, 0.1f), *b = rand_buf(n, 3, 1.0f);
    float *o = malloc((size_t)(m * n) * sizeof(float));
    c.x = ds_tensor_f32(x, 2, m, k);
    c.w = ds_tensor_f32(w, 2, n, k);
    c.b = ds_tensor_f32(b, 1, n);
    c.out = ds_tensor_f32(o, 2, m, n);
    double t = time_it(run_linear, &c, budget);
    if (t > 0)
        printf("linear     M=%-5lld K=%-5lld N=%-5lld          %9.3f ms  %7.1f GFLOP/s\n", (long long)m, (long long)k,
               (long long)n, 1e3 * t, 2.0 * (double)m * (double)k * (double)n / t * 1e-9);
    free(x), free(w), free(b), free(o);
}

static void bench_attention(int64_t B, int64_t N, int64_t H, int64_t d, double budget) {
    attn_ctx c;
    memset(&c, 0, sizeof c);
    c.B = B, c.N = N, c.H = H, c.d = d;
    const int64_t n = B * N * H * d;
    float *q = rand_buf(n, 4, 2.0f), *k = rand_buf(n, 5, 2.0f), *v = rand_buf(n, 6, 2.0f);
    float *o = malloc((size_t)n * sizeof(float));
    c.q = ds_tensor_f32(q, 4, B, N, H, d);
    c.k = ds_tensor_f32(k, 4, B, N, H, d);
    c.v = ds_tensor_f32(v, 4, B, N, H, d);
    c.out = ds_tensor_f32(o, 4, B, N, H, d);
    c.scratch_bytes = ds_op_attention_scratch_bytes(N, N, d);
    c.scratch = malloc(c.scratch_bytes);
    const double flops = 4.0 * (double)B * (double)H * (double)N * (double)N * (double)d;
    double t = time_it(run_attention, &c, budget);
    if (t > 0)
        printf("attention  B=%lld N=%-5lld H=%-3lld d=%-4lld ds_op     %9.3f ms  %7.1f GFLOP/s  (scratch %.2f MiB)\n",
               (long long)B, (long long)N, (long long)H, (long long)d, 1e3 * t, flops / t * 1e-9,
               (double)c.scratch_bytes / (1024.0 * 1024.0));

    /* sgemm yardstick on head-major copies (copy time not counted) */
    c.qh = rand_buf(n, 7, 2.0f), c.kh = rand_buf(n, 8, 2.0f), c.vh = rand_buf(n, 9, 2.0f);
    c.oh = malloc((size_t)n * sizeof(float));
    c.s = malloc((size_t)(N * N) * sizeof(float));
    t = time_it(run_attention_sgemm, &c, budget);
    if (t > 0)
        printf("attention  B=%lld N=%-5lld H=%-3lld d=%-4lld sgemm     %9.3f ms  %7.1f GFLOP/s  (yardstick)\n",
               (long long)B, (long long)N, (long long)H, (long long)d, 1e3 * t, flops / t * 1e-9);
    free(q), free(k), free(v), free(o), free(c.scratch), free(c.qh), free(c.kh), free(c.vh), free(c.oh), free(c.s);
}

typedef struct conv_ctx {
    ds_tensor out, x, w, b;
    int       padding;
    void     *scratch;
    size_t    scratch_bytes;
} conv_ctx;

static int run_conv2d(void *p) {
    conv_ctx *c = p;
    ds_err err;
    if (ds_op_conv2d(&c->out, &c->x, &c->w, &c->b, c->padding, c->scratch, c->scratch_bytes, &err) != DS_OK) {
        fprintf(stderr, "conv2d: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* conv2d x [1, cin, h, w] * w [cout, cin, k, k] (+ bias), padding (k-1)/2; scratch sized by
 * ds_op_conv2d_scratch_bytes. FLOPs: 2·cout·cin·k²·h·w. */
static void bench_conv2d(int64_t cin, int64_t cout, int64_t h, int64_t w, int64_t k, double budget) {
    conv_ctx c;
    memset(&c, 0, sizeof c);
    c.padding = (int)((k - 1) / 2);
    float *x = rand_buf(cin * h * w, 10, 2.0f), *wt = rand_buf(cout * cin * k * k, 11, 0.1f),
          *b = rand_buf(cout, 12, 1.0f);
    float *o = malloc((size_t)(cout * h * w) * sizeof(float));
    c.x = ds_tensor_f32(x, 4, 1, cin, h, w);
    c.w = ds_tensor_f32(wt, 4, cout, cin, k, k);
    c.b = ds_tensor_f32(b, 1, cout);
    c.out = ds_tensor_f32(o, 4, 1, cout, h, w);
    c.scratch_bytes = ds_op_conv2d_scratch_bytes(cin, h, w, k, c.padding);
    c.scratch = c.scratch_bytes ? malloc(c.scratch_bytes) : NULL;
    if (!o || (c.scratch_bytes && !c.scratch)) {
        fprintf(stderr, "ops_bench: out of memory\n");
        exit(1);
    }
    const double flops = 2.0 * (double)cout * (double)cin * (double)(k * k) * (double)h * (double)w;
    double t = time_it(run_conv2d, &c, budget);
    if (t > 0)
        printf("conv2d     Cin=%-4lld Cout=%-4lld %4lldx%-4lld k%lld  %9.3f ms  %7.1f GFLOP/s  (scratch %.2f MiB)\n",
               (long long)cin, (long long)cout, (long long)h, (long long)w, (long long)k, 1e3 * t,
               flops / t * 1e-9, (double)c.scratch_bytes / (1024.0 * 1024.0));
    free(x), free(wt), free(b), free(o), free(c.scratch);
}

int main(int argc, char **argv) {
    double budget = argc > 1 ? atof(argv[1]) : 0.5;
    if (!(budget > 0)) budget = 0.5;
    bench_linear(256, 1152, 1152, budget);
    bench_linear(256, 1152, 4608, budget); /* MLP fc1 */
    bench_linear(77, 301, 193, budget);
    bench_attention(1, 256, 16, 72, budget);
    bench_attention(1, 1024, 16, 72, budget);
    bench_conv2d(128, 128, 128, 128, 3, budget); /* VAE up block, 128x128 */
    bench_conv2d(512, 512, 64, 64, 3, budget);   /* VAE mid block, 64x64 */
    bench_conv2d(128, 128, 512, 512, 3, budget); /* VAE last up block at 512x512 output */
    return 0;
}
