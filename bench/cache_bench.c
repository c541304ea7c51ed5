/* cache_bench.c - what caching buys on a DiT, 50 steps by default:
 *   cache_bench DIR [--random-weights] [--steps N] [--class N] [--guidance G] [--no-warmup] [--config CFG]...
 * For "none" and each cache config (defaults below) it runs one generation from the same seed and prints
 * one JSON line: wall time, block forwards computed, speedup_estimate, measured speedup against "none",
 * PSNR of the decoded image against the uncached one (float, [0, 1] range, before 8-bit rounding), and
 * the cost check of the caching issue: the median cached step must cost at most
 *   1.05 x [(Fn + Bn) / N x the full step's block time + the full step's non-block time],
 * where block and non-block time of a full step come from a timing runner on the uncached run (after a
 * warm-up run unless --no-warmup, for models so large that one run is costly). Exit 1 if a check fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blocks.h"
#include "cache.h"
#include "cache_config.h"
#include "diffusers_dir.h"
#include "pipeline.h"
#include "vae.h"

#define MAX_CFGS 12

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A runner that runs every block and measures the time spent in blocks, per step; its on_step callback
 * records each step's wall time. */
typedef struct timing_runner {
    double *block_ms; /* [steps] */
    double *step_ms;  /* [steps] */
    double  last;     /* time of the previous step end (or of the request start) */
    int     steps;
    int64_t blocks;   /* block forwards run */
} timing_runner;

static int tr_on_step(void *user, int step, int n, const float *latents, int64_t numel) {
    (void)n;
    (void)latents;
    (void)numel;
    timing_runner *t = user;
    double now = now_ms();
    t->step_ms[step - 1] = now - t->last;
    t->last = now;
    return 0;
}

static ds_status tr_begin(void *ctx, const ds_block_request *req, ds_err *err) {
    timing_runner *t = ctx;
    if (req->steps > t->steps) return DS_FAIL(err, DS_ERR_INVALID_ARG, "timing runner: too many steps");
    memset(t->block_ms, 0, sizeof(double) * (size_t)t->steps);
    t->last = now_ms();
    t->blocks = 0;
    return DS_OK;
}

static ds_status tr_run(void *ctx, const ds_block_list *lists, int n, ds_block_state *st, int step, int call,
                        ds_err *err) {
    (void)call;
    timing_runner *t = ctx;
    double a = now_ms();
    for (int l = 0; l < n; l++)
        for (int i = 0; i < lists[l].n_blocks; i++) {
            DS_TRY(lists[l].forward(lists[l].model, i, st, err));
            t->blocks++;
        }
    t->block_ms[step] += now_ms() - a;
    return DS_OK;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Decode res's latents to float images in [0, 1]: (x / 2 + 0.5) clamped, as diffusers' postprocess. */
static float *decode_float(ds_vae *vae, const ds_gen_result *r, int64_t *n_out, ds_err *err) {
    const int64_t B = r->latent_shape[0], per = r->latent_shape[1] * r->latent_shape[2] * r->latent_shape[3];
    const int64_t H = r->height, W = r->width, npix = 3 * H * W;
    float *img = malloc(sizeof(float) * (size_t)(B * npix));
    if (!img) return NULL;
    for (int64_t b = 0; b < B; b++) {
        ds_tensor lt = ds_tensor_f32(r->latents + b * per, 4, 1, r->latent_shape[1], r->latent_shape[2],
                                     r->latent_shape[3]);
        ds_tensor it = ds_tensor_f32(img + b * npix, 4, 1, 3, H, W);
        if (ds_vae_decode(vae, &lt, &it, err) != DS_OK) {
            free(img);
            return NULL;
        }
    }
    for (int64_t i = 0; i < B * npix; i++) {
        float v = img[i] * 0.5f + 0.5f;
        img[i] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
    *n_out = B * npix;
    return img;
}

static double psnr(const float *a, const float *b, int64_t n) {
    double mse = 0;
    for (int64_t i = 0; i < n; i++) mse += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    mse /= (double)n;
    return mse > 0 ? 10.0 * log10(1.0 / mse) : INFINITY;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *cfgs[MAX_CFGS];
    int n_cfgs = 0, steps = 50, random = 0, label = 207, warmup = 1;
    float guidance = NAN;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--random-weights")) random = 1;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--class") && i + 1 < argc) label = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-warmup")) warmup = 0;
        else if (!strcmp(argv[i], "--guidance") && i + 1 < argc) guidance = strtof(argv[++i], NULL);
        else if (!strcmp(argv[i], "--config") && i + 1 < argc && n_cfgs < MAX_CFGS) cfgs[n_cfgs++] = argv[++i];
        else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else {
            fprintf(stderr, "usage: cache_bench DIR [--random-weights] [--steps N] [--class N] [--guidance G] "
                            "[--no-warmup] [--config CFG]...\n");
            return 2;
        }
    }
    if (!dir || steps < 1 || steps > 1000) {
        fprintf(stderr, "cache_bench: DIR required, steps in 1..1000\n");
        return 2;
    }
    if (!n_cfgs) {
        static const char *const defaults[] = {
            "F8B0_W8MC0_R0.08", "F1B0_W8MC3_R0.12", "F1B0_W8MC0_R0.12_T1O2",
            "{\"Fn_compute_blocks\": 1, \"Bn_compute_blocks\": 0, \"residual_diff_threshold\": 0.12, "
            "\"steps_computation_mask\": \"fast\"}"};
        for (int i = 0; i < 4; i++) cfgs[n_cfgs++] = defaults[i];
    }
    ds_err err;
    ds_pipeline *p = NULL;
    ds_diffusers *d = NULL;
    ds_vae *vae = NULL;
    ds_pipeline_opts o = {0};
    o.max_images = 1;
    o.random_weights = random;
    const ds_component *vc;
    if (ds_pipeline_load(dir, &o, &p, &err) != DS_OK || ds_diffusers_open(dir, &d, &err) != DS_OK) goto fail;
    if (random) ds_diffusers_set_random_weights(d, 0);
    int W, H;
    ds_pipeline_default_size(p, &W, &H);
    ds_vae_config vcfg;
    if (ds_diffusers_component(d, "vae", &vc, &err) != DS_OK || ds_vae_config_parse(vc->config, &vcfg, &err) != DS_OK ||
        ds_vae_load(vc, 1, (int)(H / vcfg.scale), (int)(W / vcfg.scale), &vae, &err) != DS_OK)
        goto fail;

    int32_t labels[1] = {label};
    ds_gen_params g = {0};
    g.steps = steps;
    g.guidance_scale = guidance;
    g.class_labels = labels;
    g.n_labels = 1;
    g.seed = 1;

    /* the uncached reference, with block timing (after a warm-up run that sizes the pipeline's runner
       buffers, so first-use allocation is not timed) */
    double *block_ms = calloc((size_t)steps, sizeof(double)), *step_ms = calloc((size_t)steps, sizeof(double));
    timing_runner tr = {block_ms, step_ms, 0, steps, 0};
    ds_block_runner runner = {&tr, false, tr_begin, tr_run, NULL};
    ds_gen_params gt = g;
    gt.runner = &runner;
    gt.on_step = tr_on_step;
    gt.user = &tr;
    ds_gen_result ref;
    if (warmup) {
        if (ds_pipeline_generate(p, &gt, &ref, &err) != DS_OK) goto fail;
        ds_gen_result_free(&ref);
    }
    double t0 = now_ms();
    if (ds_pipeline_generate(p, &gt, &ref, &err) != DS_OK) goto fail;
    double ref_ms = now_ms() - t0;
    double *nonblock = malloc(sizeof(double) * (size_t)steps), *blk = malloc(sizeof(double) * (size_t)steps);
    for (int s = 0; s < steps; s++) {
        nonblock[s] = step_ms[s] - block_ms[s];
        blk[s] = block_ms[s];
    }
    const double full_block = median(blk, steps), full_nonblock = median(nonblock, steps);
    int64_t nimg;
    float *ref_img = decode_float(vae, &ref, &nimg, &err);
    if (!ref_img) goto fail;
    printf("{\"config\":\"none\",\"steps\":%d,\"wall_ms\":%.0f,\"blocks_computed\":%lld,\"speedup_estimate\":1.00,"
           "\"full_step_block_ms\":%.2f,\"full_step_nonblock_ms\":%.2f}\n",
           steps, ref_ms, (long long)tr.blocks, full_block, full_nonblock);
    int failures = 0;
    for (int c = 0; c < n_cfgs; c++) {
        ds_cache_config cfg;
        if (ds_cache_config_parse_any(cfgs[c], &cfg, &err) != DS_OK) goto fail;
        ds_gen_result r;
        ds_cache_stats st;
        t0 = now_ms();
        if (ds_cache_generate(p, &g, &cfg, &r, &st, &err) != DS_OK) goto fail;
        double ms = now_ms() - t0;
        int64_t n2;
        float *img = decode_float(vae, &r, &n2, &err);
        if (!img) goto fail;
        const ds_cache_branch_stats *b0 = &st.lists[0].branch[0];
        double *cached = malloc(sizeof(double) * (size_t)(b0->n_cached + 1));
        int nc = 0;
        for (int k = 0; k < b0->n_cached; k++)
            if (b0->cached_steps[k] >= 0 && b0->cached_steps[k] < steps) cached[nc++] = st.step_ms[b0->cached_steps[k]];
        const double cached_ms = median(cached, nc);
        const int nb = st.lists[0].n_blocks, fb = cfg.Fn_compute_blocks + cfg.Bn_compute_blocks;
        const double bound = 1.05 * ((double)fb / nb * full_block + full_nonblock);
        const int ok = nc == 0 || cached_ms <= bound;
        failures += !ok;
        printf("{\"config\":\"%s\",\"wall_ms\":%.0f,\"blocks_computed\":%lld,\"cached_steps\":%d,"
               "\"speedup_estimate\":%.2f,\"measured_speedup\":%.2f,\"psnr_db\":%.2f,\"cached_step_ms\":%.2f,"
               "\"cached_step_bound_ms\":%.2f,\"cost_check\":\"%s\"}\n",
               st.config, ms, (long long)st.blocks_computed, b0->n_cached, st.speedup_estimate, ref_ms / ms,
               psnr(ref_img, img, nimg < n2 ? nimg : n2), cached_ms, bound, nc == 0 ? "n/a" : ok ? "pass" : "FAIL");
        free(cached);
        free(img);
        ds_gen_result_free(&r);
        ds_cache_stats_free(&st);
    }
    free(ref_img);
    free(block_ms);
    free(step_ms);
    free(nonblock);
    free(blk);
    ds_gen_result_free(&ref);
    ds_vae_free(vae);
    ds_diffusers_close(d);
    ds_pipeline_free(p);
    return failures ? 1 : 0;
fail:
    fprintf(stderr, "cache_bench: %s\n", err.msg);
    ds_vae_free(vae);
    ds_diffusers_close(d);
    ds_pipeline_free(p);
    return 1;
}
