/* gpu_pipeline.c - end-to-end GPU twin test: the same generation on the CPU (f32 reference) and on CUDA
 * (bf16 weights and activations, the default), through the public pipeline and cache APIs.
 *
 * Cases:
 *   dit_tiny   tests/data/ckpt/dit-tiny (10 blocks, CFG on), 8 DDIM steps: final latents (per-tensor rel and
 *              per element, gpu_tolerances.h GPU_TOL_PIPE_*) and decoded image MAD (0-255) <= GPU_TOL_IMAGE_MAD.
 *   flux_tiny  tests/data/ckpt/flux-tiny with the exported prompt embeddings, 6 flow-match steps: same checks.
 *   cached     dit-tiny (F1B0_W2MC0_R0.45: caches steps 4, 5, 6) and flux-tiny (F1B0_W2MC0_R0.43: 2, 3, 6, 7, 9)
 *              with DBCache over 12 steps: the set of cached steps on the GPU equals the CPU's in every list and
 *              branch. The thresholds sit where every CPU diff is at least 5% (relative) away from them, far
 *              more than bf16 noise moves a relative-L1 diff (~1%), so an unequal set means a real defect (the residual diff is one device reduction; a step whose CPU diff lies within bf16
 *              noise of the threshold would be reported, not hidden).
 *   demo       assets/demo (the shipped demo model), class 7, seed 42, 25 steps, guidance 4: image MAD <= 2
 *              (the bound).
 *   graphs     dit-tiny and flux-tiny on one CUDA pipeline: a plain and a cached generation with CUDA graphs
 *              off, then twice with graphs on (captured, then replayed across requests): the latents and
 *              images must be bit-identical (a replay launches the very kernels of the eager run), and the
 *              cached runs must have replayed block ranges (graph counters).
 * Both sides start from the same seeded noise (one RNG stream for CPU and CUDA). Exit 77 without a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cuda/ds_cuda_ops.h"
#include "gpu_common.h"
#include "gpu_tolerances.h"
#include "pipeline.h"
#include "safetensors.h"

static ds_pipeline *load(const char *dir, ds_placement pl) {
    ds_pipeline_opts o = {0};
    o.max_images = 2;
    o.placement = pl;
    ds_pipeline *p = NULL;
    ds_err e = {0};
    if (!GPU_OK(ds_pipeline_load(dir, &o, &p, &e), &e)) return NULL;
    return p;
}

static void cached_pair(const char *kase, const char *dir, const ds_gen_params *g, const char *config);

static double image_mad(const ds_gen_result *a, const ds_gen_result *b) {
    size_t n = (size_t)a->n_images * (size_t)a->width * (size_t)a->height * 3;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += fabs((double)a->rgb[i] - (double)b->rgb[i]);
    return n ? s / (double)n : 0.0;
}

/* Compare two results: latents (rel + per element) and the image MAD. */
static void compare(const char *kase, const ds_gen_result *cpu, const ds_gen_result *gpu, double mad_bound) {
    if (!GPU_CHECK(cpu->n_images == gpu->n_images && cpu->width == gpu->width && cpu->height == gpu->height,
                   "%s: result shapes differ", kase))
        return;
    int64_t n = 1;
    for (int i = 0; i < 4; i++) n *= cpu->latent_shape[i];
    double *ref = malloc((size_t)n * sizeof(double));
    if (!GPU_CHECK(ref != NULL, "host allocation")) return;
    for (int64_t i = 0; i < n; i++) ref[i] = cpu->latents[i];
    char name[96];
    snprintf(name, sizeof name, "%s_latents_bf16", kase);
    gpu_compare("gpu_pipeline", name, gpu->latents, ref, n,
                (gpu_tol){GPU_TOL_PIPE_REL, GPU_TOL_PIPE_ATOL, GPU_TOL_PIPE_RTOL});
    free(ref);
    double mad = image_mad(cpu, gpu);
    bool ok = mad <= mad_bound;
    printf("RESULT gpu_pipeline %s_image_mad mad=%.4f bound=%.1f %s\n", kase, mad, mad_bound, ok ? "PASS" : "FAIL");
    GPU_CHECK(ok, "%s: image MAD %.4f > %.1f", kase, mad, mad_bound);
}

/* One generation on p: with DBCache when cache_cfg is given (stats into *st), else the plain pipeline. */
static bool generate(ds_pipeline *p, const ds_gen_params *g, const char *cache_cfg, ds_gen_result *res,
                     ds_cache_stats *st) {
    ds_err e = {0};
    if (!cache_cfg) return GPU_OK(ds_pipeline_generate(p, g, res, &e), &e);
    ds_cache_config cfg;
    return GPU_OK(ds_cache_config_parse_any(cache_cfg, &cfg, &e), &e) &&
           GPU_OK(ds_cache_generate(p, g, &cfg, res, st, &e), &e);
}

/* One generation on each placement (a fresh pipeline each, freed at once). cache_cfg may be NULL. */
static bool run_both(const char *dir, const ds_gen_params *g, const char *cache_cfg, ds_gen_result res[2],
                     ds_cache_stats st[2]) {
    ds_placement pls[2] = {ds_placement_cpu(), {{DS_DEVICE_CUDA, 0}, DS_BF16}};
    for (int k = 0; k < 2; k++) {
        ds_pipeline *p = load(dir, pls[k]);
        if (!p) return false;
        const bool ok = generate(p, g, cache_cfg, &res[k], st ? &st[k] : NULL);
        ds_pipeline_free(p);
        if (!ok) return false;
    }
    return true;
}

/* graphs off, then on twice, on one CUDA pipeline: bit-identical results; the cached runs replay graphs. */
static void graphs_same(const char *kase, const char *dir, const ds_gen_params *g, const char *cache_cfg) {
    ds_pipeline *p = load(dir, (ds_placement){{DS_DEVICE_CUDA, 0}, DS_BF16});
    if (!p) return;
    ds_cuda_ctx *ctx = ds_cuda_ctx_current();
    ds_gen_result r[3] = {{0}};
    ds_cache_stats st[3];
    memset(st, 0, sizeof st);
    bool ok = true;
    for (int k = 0; ok && k < 3; k++) {
        ds_cuda_ctx_set_graphs(ctx, k > 0);
        ok = generate(p, g, cache_cfg, &r[k], &st[k]);
    }
    ds_cuda_ctx_set_graphs(ctx, true);
    const ds_graph_stats gs = ds_pipeline_graph_stats(p);
    if (ok) {
        int64_t n = 1;
        for (int i = 0; i < 4; i++) n *= r[0].latent_shape[i];
        const size_t img = (size_t)r[0].n_images * (size_t)r[0].width * (size_t)r[0].height * 3;
        for (int k = 1; k < 3; k++) {
            const bool same = memcmp(r[0].latents, r[k].latents, (size_t)n * sizeof(float)) == 0 &&
                              memcmp(r[0].rgb, r[k].rgb, img) == 0;
            printf("RESULT gpu_pipeline %s_graphs_run%d_bit_identical launches=%llu captures=%llu refused=%llu %s\n",
                   kase, k, (unsigned long long)gs.launches, (unsigned long long)gs.captures,
                   (unsigned long long)gs.refused, same ? "PASS" : "FAIL");
            GPU_CHECK(same, "%s: graphs-on run %d differs from the eager run", kase, k);
        }
        if (cache_cfg) {
            GPU_CHECK(gs.launches > 0 && gs.refused == 0, "%s: the cached runs replayed no graph (%llu launches, "
                      "%llu refused)", kase, (unsigned long long)gs.launches, (unsigned long long)gs.refused);
        }
    }
    for (int k = 0; k < 3; k++) {
        ds_gen_result_free(&r[k]);
        ds_cache_stats_free(&st[k]);
    }
    ds_pipeline_free(p);
}

/* A class-conditional request: one label, CFG at guidance 4, the model's default size and scheduler. */
static ds_gen_params dit_params(int steps, uint64_t seed, const int32_t *label) {
    ds_gen_params g;
    memset(&g, 0, sizeof g);
    g.steps = steps;
    g.guidance_scale = 4.0f;
    g.true_cfg_scale = NAN;
    g.seed = seed;
    g.class_labels = label;
    g.n_labels = 1;
    return g;
}

static void case_dit(void) {
    const int32_t label = 207;
    const ds_gen_params g = dit_params(8, 1, &label);
    ds_gen_result r[2] = {{0}};
    if (run_both(DS_TEST_DATA_DIR "/ckpt/dit-tiny", &g, NULL, r, NULL)) compare("dit_tiny", &r[0], &r[1], GPU_TOL_IMAGE_MAD);
    ds_gen_result_free(&r[0]);
    ds_gen_result_free(&r[1]);
}

static void case_flux(void) {
    ds_err e = {0};
    ds_safetensors *st = NULL;
    if (!GPU_OK(ds_safetensors_open(DS_TEST_DATA_DIR "/pipe/flux_square.safetensors", &st, &e), &e)) return;
    float *pe_buf = NULL, *pp_buf = NULL;
    ds_tensor pe, pp;
    const char *names[2] = {"prompt_embeds", "pooled_prompt_embeds"};
    float **bufs[2] = {&pe_buf, &pp_buf};
    ds_tensor *ts[2] = {&pe, &pp};
    for (int i = 0; i < 2; i++) {
        const ds_st_tensor *info = ds_safetensors_find(st, names[i]);
        if (!GPU_CHECK(info != NULL, "no %s", names[i])) goto out;
        int64_t n = 1;
        for (int d = 0; d < info->ndim; d++) n *= info->shape[d];
        *bufs[i] = malloc((size_t)n * sizeof(float));
        if (!GPU_OK(ds_safetensors_read(st, names[i], DS_F32, *bufs[i], (size_t)n * sizeof(float), -1, NULL, &e), &e))
            goto out;
        *ts[i] = ds_tensor_make(*bufs[i], DS_F32, info->ndim, info->shape);
    }
    {
        ds_gen_params g;
        memset(&g, 0, sizeof g);
        g.width = g.height = 32;
        g.steps = 6;
        g.guidance_scale = 3.5f;
        g.true_cfg_scale = NAN;
        g.seed = 21;
        g.prompt_embeds = &pe;
        g.pooled_prompt_embeds = &pp;
        ds_gen_result r[2] = {{0}};
        if (run_both(DS_TEST_DATA_DIR "/ckpt/flux-tiny", &g, NULL, r, NULL))
            compare("flux_tiny", &r[0], &r[1], GPU_TOL_IMAGE_MAD);
        ds_gen_result_free(&r[0]);
        ds_gen_result_free(&r[1]);
        g.steps = 12; /* enough steps after the warm-up for the threshold to cache some */
        cached_pair("flux_cached", DS_TEST_DATA_DIR "/ckpt/flux-tiny", &g, "F1B0_W2MC0_R0.43");
        graphs_same("flux_graphs_plain", DS_TEST_DATA_DIR "/ckpt/flux-tiny", &g, NULL);
        graphs_same("flux_graphs_cached", DS_TEST_DATA_DIR "/ckpt/flux-tiny", &g, "F1B0_W2MC0_R0.43");
    }
out:
    free(pe_buf);
    free(pp_buf);
    ds_safetensors_close(st);
}

/* A cached generation on both placements: the cached-step sets (every list, every branch) must be equal. */
static void cached_pair(const char *kase, const char *dir, const ds_gen_params *g, const char *config) {
    ds_gen_result r[2] = {{0}};
    ds_cache_stats st[2];
    memset(st, 0, sizeof st);
    if (run_both(dir, g, config, r, st)) {
        bool same = st[0].n_lists == st[1].n_lists;
        int total = 0;
        for (int l = 0; same && l < st[0].n_lists; l++)
            for (int k = 0; same && k < st[0].lists[l].n_branches; k++) {
                const ds_cache_branch_stats *a = &st[0].lists[l].branch[k], *b = &st[1].lists[l].branch[k];
                same = a->n_cached == b->n_cached;
                for (int i = 0; same && i < a->n_cached; i++) same = a->cached_steps[i] == b->cached_steps[i];
                total += a->n_cached;
                printf("%s list %s branch %d: cached cpu %d gpu %d\n", kase, st[0].lists[l].name, k, a->n_cached,
                       b->n_cached);
                for (int i = 0; i < a->n_diffs && i < b->n_diffs; i++)
                    printf("  step %d diff cpu %.5f gpu %.5f\n", a->diff_steps[i], a->diffs[i], b->diffs[i]);
            }
        printf("RESULT gpu_pipeline %s_cached_steps_equal cpu_cached=%d %s\n", kase, total, same ? "PASS" : "FAIL");
        GPU_CHECK(same, "%s: the cached-step sets differ between CPU and GPU", kase);
        GPU_CHECK(total > 0, "%s: the config cached nothing on the CPU: the case would prove nothing", kase);
        compare(kase, &r[0], &r[1], GPU_TOL_IMAGE_MAD);
    }
    ds_cache_stats_free(&st[0]);
    ds_cache_stats_free(&st[1]);
    ds_gen_result_free(&r[0]);
    ds_gen_result_free(&r[1]);
}

static void case_cached(void) {
    const int32_t label = 207;
    const ds_gen_params g = dit_params(12, 2, &label);
    cached_pair("dit_cached", DS_TEST_DATA_DIR "/ckpt/dit-tiny", &g, "F1B0_W2MC0_R0.45");
}

static void case_graphs(void) {
    const int32_t label = 207;
    const ds_gen_params g = dit_params(12, 2, &label);
    graphs_same("dit_graphs_plain", DS_TEST_DATA_DIR "/ckpt/dit-tiny", &g, NULL);
    graphs_same("dit_graphs_cached", DS_TEST_DATA_DIR "/ckpt/dit-tiny", &g, "F1B0_W2MC0_R0.45");
}

static void case_demo(void) {
    const int32_t label = 7;
    const ds_gen_params g = dit_params(25, 42, &label);
    ds_gen_result r[2] = {{0}};
    if (run_both(DS_DEMO_DIR, &g, NULL, r, NULL)) {
        double mad = image_mad(&r[0], &r[1]);
        bool ok = mad <= 2.0;
        printf("RESULT gpu_pipeline demo_image_mad mad=%.4f bound=2.0 %s\n", mad, ok ? "PASS" : "FAIL");
        GPU_CHECK(ok, "demo image MAD %.4f > 2", mad);
    }
    ds_gen_result_free(&r[0]);
    ds_gen_result_free(&r[1]);
}

int main(void) {
    gpu_require_device("gpu_pipeline");
    ds_err e = {0};
    ds_cuda_ctx *ctx = NULL;
    if (!GPU_OK(ds_cuda_ctx_create(0, 0, &ctx, &e), &e) || !GPU_OK(ds_cuda_ctx_bind(ctx, &e), &e))
        return gpu_finish("gpu_pipeline");
    case_dit();
    case_flux();
    case_cached();
    case_graphs();
    case_demo();
    ds_cuda_ctx_destroy(ctx);
    return gpu_finish("gpu_pipeline");
}
