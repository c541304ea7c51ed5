/* dit_forward.c - times one DiT transformer forward on the CPU backend: `dit_forward DIR [batch] [iters]`
 * loads DIR/transformer with seeded random weights from its config alone (e.g. bench/configs/dit-xl-2-256),
 * runs `iters` forwards of `batch` latents (after one warm-up) and prints one JSON line: median ms,
 * GFLOP/s (FLOPs counted as in docs/PERF.md: GEMMs + attention core) and peak RSS. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "diffusers_dir.h"
#include "dit.h"
#include "rng.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: dit_forward DIR [batch=2] [iters=3]\n");
        return 2;
    }
    int B = argc > 2 ? atoi(argv[2]) : 2, iters = argc > 3 ? atoi(argv[3]) : 3;
    if (B < 1 || iters < 1 || iters > 100) {
        fprintf(stderr, "dit_forward: bad batch or iters\n");
        return 2;
    }
    ds_err err;
    ds_diffusers *d = NULL;
    const ds_component *tc;
    ds_dit *m = NULL;
    if (ds_diffusers_open(argv[1], &d, &err) != DS_OK) goto fail;
    ds_diffusers_set_random_weights(d, 0);
    if (ds_diffusers_component(d, "transformer", &tc, &err) != DS_OK) goto fail;
    ds_dit_config cfg;
    if (ds_dit_config_parse(tc->config, &cfg, &err) != DS_OK) goto fail;
    const int64_t S = cfg.sample_size, C = cfg.in_channels;
    if (ds_dit_load(tc, B, (int)S, &m, &err) != DS_OK) goto fail;
    float *x = malloc(sizeof(float) * (size_t)(B * C * S * S));
    float *out = malloc(sizeof(float) * (size_t)(B * cfg.out_channels * S * S));
    float *t = malloc(sizeof(float) * (size_t)B);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)B);
    ds_rng_normal(1, 0, x, B * C * S * S);
    for (int b = 0; b < B; b++) {
        t[b] = 500.0f;
        y[b] = b % 2 ? (int32_t)cfg.num_classes : 207;
    }
    ds_tensor xt = ds_tensor_f32(x, 4, B, C, S, S), ot = ds_tensor_f32(out, 4, B, cfg.out_channels, S, S);
    double ms[100];
    for (int i = -1; i < iters; i++) {
        struct timespec a, b2;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (ds_dit_forward(m, &xt, t, y, &ot, &err) != DS_OK) goto fail;
        clock_gettime(CLOCK_MONOTONIC, &b2);
        if (i >= 0) ms[i] = (double)(b2.tv_sec - a.tv_sec) * 1e3 + (double)(b2.tv_nsec - a.tv_nsec) / 1e6;
    }
    qsort(ms, (size_t)iters, sizeof ms[0], cmp_d);
    const double N = (double)(S / cfg.patch_size) * (double)(S / cfg.patch_size), D = (double)cfg.hidden;
    const double flops = (double)B * ((double)cfg.num_layers * (24.0 * N * D * D + 4.0 * N * N * D));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\":\"ditserve-cpu\",\"batch\":%d,\"tokens\":%.0f,\"median_ms\":%.1f,\"gflops\":%.1f,"
           "\"peak_rss_mb\":%.0f}\n",
           B, N, ms[iters / 2], flops / (ms[iters / 2] * 1e6), (double)ru.ru_maxrss / 1024.0);
    ds_dit_free(m);
    ds_diffusers_close(d);
    free(x);
    free(out);
    free(t);
    free(y);
    return 0;
fail:
    fprintf(stderr, "dit_forward: %s\n", err.msg);
    ds_dit_free(m);
    ds_diffusers_close(d);
    return 1;
}
