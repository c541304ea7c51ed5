/* test_cache_pipeline.c - the cache end to end on the tiny DiT and FLUX checkpoints (same inputs as
 * test_pipeline.c's diffusers references): the runner path with caching off is bit-identical to the plain
 * pipeline (DiT; FLUX merged and split lists, with and without true CFG); a permissive threshold caches
 * steps, the final latents stay finite and close to the uncached ones; the stats add up. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "pipeline.h"
#include "test_util.h"

static ds_pipeline *load(const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/ckpt/%s", DS_TEST_DATA_DIR, name);
    ds_pipeline *p = NULL;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_pipeline_load(dir, NULL, &p, &err), DS_OK, "load %s: %s", dir, err.msg);
    return p;
}

/* Inputs of one reference case, kept alive for the test. */
typedef struct case_in {
    ds_safetensors *st;
    ds_tensor       noise, pe, pp, npe, npp;
    float          *bufs[5];
    int32_t         labels[8];
    ds_gen_params   g;
} case_in;

static void dit_in(case_in *c, const char *file) {
    memset(c, 0, sizeof *c);
    c->st = ds_test_open(file);
    c->bufs[0] = ds_test_read_f32(c->st, "init_noise", &c->noise);
    int n = 0;
    const char *ls = ds_safetensors_metadata(c->st, "class_labels");
    for (const char *s = ls; s && *s; s = strchr(s, ',') ? strchr(s, ',') + 1 : NULL) c->labels[n++] = atoi(s);
    const char *sched = ds_safetensors_metadata(c->st, "scheduler");
    c->g.steps = (int)ds_test_meta_num(c->st, "steps");
    c->g.guidance_scale = (float)ds_test_meta_num(c->st, "guidance_scale");
    c->g.true_cfg_scale = NAN;
    c->g.scheduler = !strcmp(sched, "ddim") ? DS_SCHED_DDIM : DS_SCHED_DPMPP_2M;
    c->g.class_labels = c->labels;
    c->g.n_labels = n;
    c->g.init_noise = &c->noise;
}

static void flux_in(case_in *c, const char *file) {
    memset(c, 0, sizeof *c);
    c->st = ds_test_open(file);
    c->bufs[0] = ds_test_read_f32(c->st, "init_noise", &c->noise);
    c->bufs[1] = ds_test_read_f32(c->st, "prompt_embeds", &c->pe);
    c->bufs[2] = ds_test_read_f32(c->st, "pooled_prompt_embeds", &c->pp);
    if (ds_safetensors_find(c->st, "negative_prompt_embeds")) {
        c->bufs[3] = ds_test_read_f32(c->st, "negative_prompt_embeds", &c->npe);
        c->bufs[4] = ds_test_read_f32(c->st, "negative_pooled_prompt_embeds", &c->npp);
        c->g.negative_prompt_embeds = &c->npe;
        c->g.negative_pooled_prompt_embeds = &c->npp;
    }
    c->g.width = (int)ds_test_meta_num(c->st, "width");
    c->g.height = (int)ds_test_meta_num(c->st, "height");
    c->g.steps = (int)ds_test_meta_num(c->st, "steps");
    c->g.guidance_scale = (float)ds_test_meta_num(c->st, "guidance_scale");
    c->g.true_cfg_scale = (float)ds_test_meta_num(c->st, "true_cfg_scale");
    c->g.num_images = (int)ds_test_meta_num(c->st, "num_images");
    c->g.prompt_embeds = &c->pe;
    c->g.pooled_prompt_embeds = &c->pp;
    c->g.init_noise = &c->noise;
}

static void case_free(case_in *c) {
    for (int i = 0; i < 5; i++) free(c->bufs[i]);
    ds_safetensors_close(c->st);
}

static ds_cache_config cfg_of(const char *s) {
    ds_cache_config c;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_cache_config_parse_any(s, &c, &err), DS_OK, "%s: %s", s, err.msg);
    return c;
}

static int64_t numel(const ds_gen_result *r) {
    return r->latent_shape[0] * r->latent_shape[1] * r->latent_shape[2] * r->latent_shape[3];
}

/* Every count in the stats adds up: per branch computed + skipped = calls x n_blocks, skipped = cached x
 * (n - F - B), totals, speedup. */
static void check_stats(const ds_cache_stats *s, const ds_cache_config *c) {
    int64_t computed = 0, full = 0;
    for (int l = 0; l < s->n_lists; l++) {
        const ds_cache_list_stats *L = &s->lists[l];
        int64_t calls = 0;
        full += (int64_t)s->steps * s->calls_per_step * L->n_blocks;
        for (int b = 0; b < L->n_branches; b++) {
            const ds_cache_branch_stats *B = &L->branch[b];
            cr_assert_eq(B->blocks_computed + B->blocks_skipped, B->calls * L->n_blocks, "%s branch %d", L->name, b);
            if (c->enabled)
                cr_assert_eq(B->blocks_skipped, (int64_t)B->n_cached * (L->n_blocks - c->Fn_compute_blocks - c->Bn_compute_blocks));
            for (int i = 1; i < B->n_cached; i++) cr_assert_lt(B->cached_steps[i - 1], B->cached_steps[i]);
            computed += B->blocks_computed;
            calls += B->calls;
        }
        cr_assert_eq(calls, (int64_t)s->steps * s->calls_per_step, "%s: calls", L->name);
        cr_assert_eq(L->transformer_steps, calls);
    }
    cr_assert_eq(s->blocks_full, full);
    cr_assert_eq(s->blocks_computed, computed);
    cr_assert(fabs(s->speedup_estimate - (double)full / (double)computed) < 1e-12);
    double sum = 0;
    for (int i = 0; i < s->steps; i++) {
        cr_assert_geq(s->step_ms[i], 0.0);
        sum += s->step_ms[i];
    }
    cr_assert(fabs(sum - s->denoise_ms) < 1e-6);
    char *json = NULL;
    ds_err err;
    cr_assert_eq(ds_cache_stats_to_json(s, &json, &err), DS_OK);
    cr_assert(strstr(json, "\"speedup_estimate\"") && strstr(json, "\"cached_steps\""));
    free(json);
}

/* Generate with cfg (NULL: the plain pipeline, no runner). */
static void gen(ds_pipeline *p, const ds_gen_params *g, const char *cfg, ds_gen_result *r, ds_cache_stats *s) {
    ds_err err;
    ds_err_clear(&err);
    if (!cfg) {
        cr_assert_eq(ds_pipeline_generate(p, g, r, &err), DS_OK, "%s", err.msg);
        return;
    }
    ds_cache_config c = cfg_of(cfg);
    cr_assert_eq(ds_cache_generate(p, g, &c, r, s, &err), DS_OK, "%s: %s", cfg, err.msg);
    check_stats(s, &c);
}

static double rel_l2(const float *a, const float *b, int64_t n) {
    double d = 0, q = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        q += (double)b[i] * b[i];
    }
    return sqrt(d / q);
}

static bool all_finite(const float *a, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return false;
    return true;
}

Test(cache_pipeline, dit_runner_without_cache_is_bit_identical) {
    case_in c;
    dit_in(&c, "pipe/dit_ddim.safetensors");
    ds_pipeline *p = load("dit-tiny");
    ds_gen_result a, b;
    ds_cache_stats s;
    gen(p, &c.g, NULL, &a, NULL);
    gen(p, &c.g, "none", &b, &s);
    cr_assert_eq(memcmp(a.latents, b.latents, (size_t)numel(&a) * sizeof(float)), 0, "latents differ");
    cr_assert_eq(memcmp(a.rgb, b.rgb, (size_t)a.n_images * a.width * a.height * 3), 0, "images differ");
    cr_assert_eq(s.blocks_computed, s.blocks_full);
    cr_assert_eq(s.lists[0].branch[0].n_cached, 0);
    /* the plain path again after a runner request: still identical (no state leaks into the pipeline) */
    ds_gen_result a2;
    gen(p, &c.g, NULL, &a2, NULL);
    cr_assert_eq(memcmp(a.latents, a2.latents, (size_t)numel(&a) * sizeof(float)), 0);
    ds_cache_stats_free(&s);
    ds_gen_result_free(&a);
    ds_gen_result_free(&a2);
    ds_gen_result_free(&b);
    ds_pipeline_free(p);
    case_free(&c);
}

Test(cache_pipeline, dit_permissive_threshold_caches_and_stays_close) {
    case_in c;
    dit_in(&c, "pipe/dit_ddim.safetensors");
    ds_pipeline *p = load("dit-tiny");
    ds_gen_result a, b, d;
    ds_cache_stats s, s2;
    gen(p, &c.g, NULL, &a, NULL);
    /* threshold >= 1: every step after warmup is "similar" (diff sentinel -1.0), MC2 forces a compute every 3rd */
    gen(p, &c.g, "F1B0_W2I1M0MC2_R1.0", &b, &s);
    const ds_cache_branch_stats *B = &s.lists[0].branch[0];
    const int T = c.g.steps;
    int expect = 0;
    for (int st = 2, run = 0; st < T; st++) { /* MC2 with every step similar: C C F C C F ... */
        if (run < 2) {
            expect++;
            run++;
        } else
            run = 0;
    }
    cr_assert_eq(B->n_cached, expect, "cached %d, expected %d", B->n_cached, expect);
    cr_assert_eq(B->n_diffs, B->n_cached, "a -1.0 sentinel per cached step (computes are MC-forced: no diff)");
    for (int i = 0; i < B->n_diffs; i++) cr_assert_eq(B->diffs[i], -1.0);
    cr_assert_gt(s.speedup_estimate, 1.0);
    cr_assert(all_finite(b.latents, numel(&b)));
    double e = rel_l2(b.latents, a.latents, numel(&a));
    fprintf(stderr, "measured dit F1B0 MC2 R1.0 (%d/%d cached): speedup_estimate %.3f, final latents rel L2 %.3e\n",
            B->n_cached, T, s.speedup_estimate, e);
    cr_assert(e < 0.05, "final latents rel L2 %.3e (measured 1.1e-2)", e);
    /* a realistic threshold on the same request, and the diffs of the computed steps are recorded too */
    gen(p, &c.g, "DBCache_F1B1_W2I1M0MC0_R0.3", &d, &s2);
    const ds_cache_branch_stats *D = &s2.lists[0].branch[0];
    cr_assert_eq(D->n_diffs, T - 2, "one diff per non-warmup step");
    double e2 = rel_l2(d.latents, a.latents, numel(&a));
    fprintf(stderr, "measured dit F1B1 R0.3: %d cached, diffs P50 %.4f max %.4f, speedup_estimate %.3f, rel L2 %.3e\n",
            D->n_cached, D->pct[2], D->max, s2.speedup_estimate, e2);
    cr_assert(all_finite(d.latents, numel(&d)));
    ds_cache_stats_free(&s);
    ds_cache_stats_free(&s2);
    ds_gen_result_free(&a);
    ds_gen_result_free(&b);
    ds_gen_result_free(&d);
    ds_pipeline_free(p);
    case_free(&c);
}

static void flux_identical(const char *file, const char *cfg) {
    case_in c;
    flux_in(&c, file);
    ds_pipeline *p = load("flux-tiny");
    ds_gen_result a, b;
    ds_cache_stats s;
    gen(p, &c.g, NULL, &a, NULL);
    gen(p, &c.g, cfg, &b, &s);
    cr_assert_eq(memcmp(a.latents, b.latents, (size_t)numel(&a) * sizeof(float)), 0, "%s %s: latents differ", file, cfg);
    cr_assert_eq(s.blocks_computed, s.blocks_full);
    ds_cache_stats_free(&s);
    ds_gen_result_free(&a);
    ds_gen_result_free(&b);
    ds_pipeline_free(p);
    case_free(&c);
}

Test(cache_pipeline, flux_runner_without_cache_is_bit_identical) {
    flux_identical("pipe/flux_square.safetensors", "none");
    flux_identical("pipe/flux_nonsquare.safetensors", "none");
    flux_identical("pipe/flux_truecfg.safetensors", "none");
    flux_identical("pipe/flux_truecfg.safetensors", "{\"cache_type\": \"NONE\", \"separate_block_lists\": true}");
    /* caching on but never deciding to cache (threshold 0): every block runs through the Fn/Mn/Bn split */
    flux_identical("pipe/flux_square.safetensors", "F2B1_W0I1M0MC0_R0");
    flux_identical("pipe/flux_truecfg.safetensors", "{\"Fn_compute_blocks\": 1, \"residual_diff_threshold\": 0, "
                                                     "\"separate_block_lists\": true, \"enable_separate_cfg\": true}");
}

Test(cache_pipeline, flux_true_cfg_separate_branches_and_split_lists) {
    case_in c;
    flux_in(&c, "pipe/flux_truecfg.safetensors");
    ds_pipeline *p = load("flux-tiny");
    ds_gen_result a, b, d;
    ds_cache_stats s, s2;
    gen(p, &c.g, NULL, &a, NULL);
    const int T = c.g.steps;
    gen(p, &c.g,
        "{\"Fn_compute_blocks\": 1, \"residual_diff_threshold\": 1.0, \"max_warmup_steps\": 1, "
        "\"enable_separate_cfg\": true, \"max_cached_steps\": 2}",
        &b, &s);
    cr_assert_eq(s.calls_per_step, 2);
    cr_assert_eq(s.n_lists, 1);
    cr_assert_eq(s.lists[0].n_branches, 2);
    cr_assert_eq(s.lists[0].executed_steps, T, "the step index advances once per call pair");
    int want = T - 1 < 2 ? T - 1 : 2;
    for (int br = 0; br < 2; br++) {
        const ds_cache_branch_stats *B = &s.lists[0].branch[br];
        cr_assert_eq(B->calls, T);
        cr_assert_eq(B->n_cached, want, "branch %d cached %d", br, B->n_cached);
        for (int i = 0; i < B->n_cached; i++) cr_assert_eq(B->cached_steps[i], 1 + i);
    }
    cr_assert(all_finite(b.latents, numel(&b)));
    fprintf(stderr, "measured flux true-CFG separate branches: speedup_estimate %.3f, rel L2 %.3e\n", s.speedup_estimate,
            rel_l2(b.latents, a.latents, numel(&a)));
    /* two contexts, each deciding on its own */
    gen(p, &c.g, "{\"Fn_compute_blocks\": 1, \"residual_diff_threshold\": 1.0, \"max_warmup_steps\": 1, "
                 "\"separate_block_lists\": true, \"enable_separate_cfg\": true, \"max_continuous_cached_steps\": 1}",
        &d, &s2);
    cr_assert_eq(s2.n_lists, 2);
    cr_assert_str_eq(s2.lists[0].name, "transformer_blocks");
    cr_assert_str_eq(s2.lists[1].name, "single_transformer_blocks");
    for (int l = 0; l < 2; l++)
        for (int br = 0; br < 2; br++) cr_assert_gt(s2.lists[l].branch[br].n_cached, 0, "list %d branch %d", l, br);
    cr_assert(all_finite(d.latents, numel(&d)));
    ds_cache_stats_free(&s);
    ds_cache_stats_free(&s2);
    ds_gen_result_free(&a);
    ds_gen_result_free(&b);
    ds_gen_result_free(&d);
    ds_pipeline_free(p);
    case_free(&c);
}

Test(cache_pipeline, config_that_does_not_fit_the_lists_is_refused) {
    case_in c;
    dit_in(&c, "pipe/dit_ddim.safetensors");
    ds_pipeline *p = load("dit-tiny");
    ds_cache_config cfg = cfg_of("F50B0_W8MC0_R0.1");
    ds_gen_result r;
    ds_cache_stats s;
    ds_err err;
    cr_assert_eq(ds_cache_generate(p, &c.g, &cfg, &r, &s, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "Fn_compute_blocks"), "%s", err.msg);
    ds_cache_stats_free(&s);
    ds_pipeline_free(p);
    case_free(&c);
}
