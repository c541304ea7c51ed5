/* test_cache_parity.c - ditserve's DBCache against cache-dit 1.5.3 itself, step for step.
 *
 * Every tests/data/cache/<case>.safetensors (tools/export_cache_traces.py; keys in tests/data/cache/README.md)
 * is one run of cache-dit (enable_cache on diffusers' DiTPipeline / FluxPipeline, fp32 CPU) on the tiny
 * checkpoints from injected noise. Here ditserve runs the same generation (same noise, embeddings and the
 * same flat JSON config, through ds_cache_config_parse_json and ds_cache_generate) and must reproduce, per
 * context (block list) and CFG branch:
 *   - the same cached step indices,
 *   - the same recorded residual diffs at the same steps, each within 1e-4 relative (sentinels exactly),
 *   - the summary percentiles (numpy's linear rule over the recorded diffs) within 1e-4 relative,
 *   - cache-dit's executed / transformer-executed step counters,
 * and final latents within 1e-3 relative error (the bounds). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "pipeline.h"
#include "test_util.h"

#define DIFF_REL  1e-4 /* each recorded diff (issue bound) */
#define FINAL_REL 1e-3 /* final latents (issue bound) */

static ds_pipeline *load(const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/ckpt/%s", DS_TEST_DATA_DIR, name);
    ds_pipeline *p = NULL;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_pipeline_load(dir, NULL, &p, &err), DS_OK, "load %s: %s", dir, err.msg);
    return p;
}

static const char *meta(const ds_safetensors *st, const char *key) {
    const char *v = ds_safetensors_metadata(st, key);
    cr_assert_not_null(v, "metadata %s missing", key);
    return v;
}

/* "4,5,11" -> ints; returns the count. */
static int parse_ints(const char *s, int *out, int cap) {
    int n = 0;
    for (const char *c = s; c && *c; c = strchr(c, ',') ? strchr(c, ',') + 1 : NULL) {
        cr_assert_lt(n, cap);
        out[n++] = atoi(c);
    }
    return n;
}

static void check_close(double got, double ref, const char *what, const char *ctx) {
    double tol = DIFF_REL * fabs(ref);
    cr_assert(fabs(got - ref) <= tol, "%s: %s = %.9g, cache-dit %.9g (rel %.3e > %.0e)", ctx, what, got, ref,
              ref != 0 ? fabs(got - ref) / fabs(ref) : fabs(got), DIFF_REL);
}

/* One branch (0 = non-CFG, 1 = CFG) of context i. */
static void check_branch(const ds_safetensors *st, const ds_cache_list_stats *ls, int i, int br, const char *file) {
    const char *pre = br ? "cfg_" : "";
    char key[128], what[160];
    snprintf(what, sizeof what, "%s ctx%d (%s) %s", file, i, ls->name, br ? "CFG branch" : "non-CFG branch");
    const ds_cache_branch_stats *b = &ls->branch[br];

    int ref_cached[1024];
    snprintf(key, sizeof key, "ctx%d.%scached_steps", i, pre);
    int n_cached = parse_ints(meta(st, key), ref_cached, 1024);
    char got_s[4096] = "", ref_s[4096] = "";
    for (int k = 0; k < b->n_cached; k++)
        snprintf(got_s + strlen(got_s), sizeof got_s - strlen(got_s), "%s%d", k ? "," : "", b->cached_steps[k]);
    for (int k = 0; k < n_cached; k++)
        snprintf(ref_s + strlen(ref_s), sizeof ref_s - strlen(ref_s), "%s%d", k ? "," : "", ref_cached[k]);
    cr_assert_str_eq(got_s, ref_s, "%s: cached steps [%s], cache-dit [%s]", what, got_s, ref_s);

    snprintf(key, sizeof key, "ctx%d.%snum_diffs", i, pre);
    int n_diffs = (int)ds_test_meta_num(st, key);
    cr_assert_eq(b->n_diffs, n_diffs, "%s: %d recorded diffs, cache-dit %d", what, b->n_diffs, n_diffs);
    if (n_diffs > 0) {
        ds_tensor td, ts;
        snprintf(key, sizeof key, "ctx%d.%sresidual_diffs", i, pre);
        float *rd = ds_test_read_f32(st, key, &td);
        snprintf(key, sizeof key, "ctx%d.%sresidual_diff_steps", i, pre);
        float *rs = ds_test_read_f32(st, key, &ts);
        double worst = 0;
        for (int k = 0; k < n_diffs; k++) {
            cr_assert_eq(b->diff_steps[k], (int)rs[k], "%s: diff %d at step %d, cache-dit step %d", what, k,
                         b->diff_steps[k], (int)rs[k]);
            char dw[64];
            snprintf(dw, sizeof dw, "diff at step %d", (int)rs[k]);
            check_close(b->diffs[k], rd[k], dw, what);
            if (rd[k] != 0) worst = fmax(worst, fabs(b->diffs[k] - rd[k]) / fabs(rd[k]));
        }
        static const char *pn[5] = {"p00", "p25", "p50", "p75", "p95"};
        for (int q = 0; q < 5; q++) {
            snprintf(key, sizeof key, "ctx%d.%sstats.%s", i, pre, pn[q]);
            check_close(b->pct[q], ds_test_meta_num(st, key), pn[q], what);
        }
        snprintf(key, sizeof key, "ctx%d.%sstats.min", i, pre);
        check_close(b->min, ds_test_meta_num(st, key), "min", what);
        snprintf(key, sizeof key, "ctx%d.%sstats.max", i, pre);
        check_close(b->max, ds_test_meta_num(st, key), "max", what);
        fprintf(stderr, "measured %s: %d diffs, worst rel %.3e\n", what, n_diffs, worst);
        free(rd);
        free(rs);
    }
}

static void parity(const char *name) {
    char file[256];
    snprintf(file, sizeof file, "cache/%s.safetensors", name);
    ds_safetensors *st = ds_test_open(file);
    const char *model = meta(st, "model");
    bool flux = !strcmp(model, "flux");

    ds_cache_config cfg;
    ds_err err;
    ds_err_clear(&err);
    const char *json = meta(st, "cache_config_json");
    cr_assert_eq(ds_cache_config_parse_json(json, &cfg, &err), DS_OK, "%s: config %s: %s", name, json, err.msg);
    if (flux && !strcmp(meta(st, "lists"), "separate")) cfg.separate_block_lists = true;

    ds_tensor noise, emb[4];
    float *bufs[5] = {0};
    int32_t labels[8];
    ds_gen_params g = {0};
    bufs[0] = ds_test_read_f32(st, "init_noise", &noise);
    g.init_noise = &noise;
    g.steps = (int)ds_test_meta_num(st, "steps");
    g.guidance_scale = (float)ds_test_meta_num(st, "guidance_scale");
    if (flux) {
        ds_test_flux_request(st, &g, emb, bufs + 1);
    } else {
        cr_assert_str_eq(meta(st, "scheduler"), "ddim");
        g.scheduler = DS_SCHED_DDIM;
        g.true_cfg_scale = NAN;
        g.n_labels = parse_ints(meta(st, "class_labels"), labels, 8);
        g.class_labels = labels;
    }

    ds_pipeline *p = load(flux ? "flux-tiny" : "dit-tiny");
    ds_gen_result r;
    ds_cache_stats s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(ds_cache_generate(p, &g, &cfg, &r, &s, &err), DS_OK, "%s: %s", name, err.msg);

    /* contexts: count, names, block counts, counters */
    int n_ctx = (int)ds_test_meta_num(st, "num_contexts");
    cr_assert_eq(s.n_lists, n_ctx, "%s: %d contexts, cache-dit %d", name, s.n_lists, n_ctx);
    int sep_cfg = (int)ds_test_meta_num(st, "enable_separate_cfg");
    char key[128];
    for (int i = 0; i < n_ctx; i++) {
        const ds_cache_list_stats *ls = &s.lists[i];
        snprintf(key, sizeof key, "ctx%d.name", i);
        cr_assert_str_eq(ls->name, meta(st, key), "%s: context %d", name, i);
        snprintf(key, sizeof key, "ctx%d.num_blocks", i);
        cr_assert_eq(ls->n_blocks, (int)ds_test_meta_num(st, key), "%s: ctx%d blocks", name, i);
        cr_assert_eq(ls->n_branches, sep_cfg ? 2 : 1, "%s: ctx%d branches", name, i);
        snprintf(key, sizeof key, "ctx%d.accumulated_executed_steps", i);
        cr_assert_eq(ls->executed_steps, (int)ds_test_meta_num(st, key), "%s: ctx%d executed steps", name, i);
        snprintf(key, sizeof key, "ctx%d.accumulated_transformer_executed_steps", i);
        cr_assert_eq(ls->transformer_steps, (int)ds_test_meta_num(st, key), "%s: ctx%d transformer steps", name,
                     i);
        for (int br = 0; br < ls->n_branches; br++) check_branch(st, ls, i, br, name);
    }

    /* final latents */
    ds_tensor fl;
    float *final = ds_test_read_f32(st, "final_latents", &fl);
    for (int d = 0; d < 4; d++) cr_assert_eq(r.latent_shape[d], fl.shape[d], "%s: latent dim %d", name, d);
    ds_test_cmp c = ds_test_compare(r.latents, final, ds_tensor_numel(&fl), 0, 0);
    cr_assert(c.rel_err <= FINAL_REL, "%s: final latents relative error %.3e > %.0e", name, c.rel_err, FINAL_REL);
    fprintf(stderr, "measured %s: final latents rel %.3e (%s)\n", name, c.rel_err, s.config);

    free(final);
    for (int i = 0; i < 5; i++) free(bufs[i]);
    ds_cache_stats_free(&s);
    ds_gen_result_free(&r);
    ds_pipeline_free(p);
    ds_safetensors_close(st);
}

Test(cache_parity_dit, dit_defaults) { parity("dit_defaults"); }
Test(cache_parity_dit, dit_F1B0_MC3) { parity("dit_F1B0_MC3"); }
Test(cache_parity_dit, dit_F4B4) { parity("dit_F4B4"); }
Test(cache_parity_dit, dit_W4I2) { parity("dit_W4I2"); }
Test(cache_parity_dit, dit_max_cached) { parity("dit_max_cached"); }
Test(cache_parity_dit, dit_acc_cap) { parity("dit_acc_cap"); }
Test(cache_parity_dit, dit_mask_static) { parity("dit_mask_static"); }
Test(cache_parity_dit, dit_mask_dynamic) { parity("dit_mask_dynamic"); }
Test(cache_parity_dit, dit_mask_fast) { parity("dit_mask_fast"); }
Test(cache_parity_dit, dit_taylor_o1) { parity("dit_taylor_o1"); }
Test(cache_parity_dit, dit_taylor_o2) { parity("dit_taylor_o2"); }
Test(cache_parity_dit, dit_thresh_ge1) { parity("dit_thresh_ge1"); }
Test(cache_parity_flux, flux_defaults) { parity("flux_defaults"); }
Test(cache_parity_flux, flux_F1B0) { parity("flux_F1B0"); }
Test(cache_parity_flux, flux_F4B4) { parity("flux_F4B4"); }
Test(cache_parity_flux, flux_taylor_o2) { parity("flux_taylor_o2"); }
Test(cache_parity_flux, flux_thresh_ge1) { parity("flux_thresh_ge1"); }
Test(cache_parity_flux, flux_cfg_separate) { parity("flux_cfg_separate"); }
Test(cache_parity_flux, flux_cfg_first_shared) { parity("flux_cfg_first_shared"); }
Test(cache_parity_flux, flux_cfg_shared) { parity("flux_cfg_shared"); }
Test(cache_parity_flux, flux_lists_separate) { parity("flux_lists_separate"); }
