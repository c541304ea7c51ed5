/* test_cache_gates.c - DBCache's gates on synthetic residual sequences, driven through the public runner with
 * a fake block list (block 0 adds scale[call] * base to the state, the others add mid[call]): warmup
 * range(0, W, I), max_cached_steps, max_continuous_cached_steps (cache-dit v1.5 code semantics: the counter
 * restarts when the previous step was not cached), the traces of cache-dit.md section 2.6, the strict
 * threshold, sentinels, the accumulated-diff cap, static/dynamic masks, separate-CFG step counting and diff
 * reuse, TaylorSeer forecasts (the section 4.1 numbers) and numpy percentiles. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "taylorseer.h"

#define NEL 4
#define MAXC 128

typedef struct syn {
    float scale[MAXC]; /* Fn residual = scale * base */
    float mid[MAXC];   /* each middle block adds mid / n_mid */
    int   call, n_blocks;
    float last_h[MAXC][NEL];
} syn;

static const float k_base[NEL] = {1, 2, 3, 4};

static ds_status syn_block(void *model, int i, ds_block_state *st, ds_err *err) {
    (void)err;
    syn *s = model;
    float *h = st->hidden.data;
    for (int k = 0; k < NEL; k++) h[k] += i == 0 ? s->scale[s->call] * k_base[k] : s->mid[s->call] / (float)(s->n_blocks - 1);
    return DS_OK;
}

/* Run `calls` transformer calls (steps * cps) through a cache made from cfg; returns the stats. */
static void drive(const char *cfgs, syn *s, int n_blocks, int steps, int cps, ds_cache_stats *out) {
    ds_cache_config cfg;
    ds_err err;
    cr_assert_eq(ds_cache_config_parse_any(cfgs, &cfg, &err), DS_OK, "%s: %s", cfgs, err.msg);
    ds_cache *c;
    cr_assert_eq(ds_cache_create(&cfg, &c, &err), DS_OK, "%s", err.msg);
    const ds_block_runner *r = ds_cache_runner(c);
    s->n_blocks = n_blocks;
    ds_block_request req;
    memset(&req, 0, sizeof req);
    req.steps = steps;
    req.calls_per_step = cps;
    req.n_lists = 1;
    req.list_names[0] = "blocks";
    req.list_blocks[0] = n_blocks;
    req.hidden_numel = NEL;
    cr_assert_eq(r->begin(r->ctx, &req, &err), DS_OK, "%s", err.msg);
    ds_block_list L = {"blocks", n_blocks, DS_BLOCK_IO_HIDDEN, syn_block, s, NULL, NULL}; /* CPU: no graphs */
    for (int i = 0; i < steps * cps; i++) {
        float h[NEL] = {0};
        ds_block_state st;
        memset(&st, 0, sizeof st);
        st.hidden = ds_tensor_f32(h, 1, NEL);
        s->call = i;
        cr_assert_eq(r->run(r->ctx, &L, 1, &st, i / cps, i % cps, &err), DS_OK, "%s", err.msg);
        memcpy(s->last_h[i], h, sizeof h);
        if (i % cps == cps - 1) r->step_done(r->ctx, i / cps + 1, steps);
    }
    cr_assert_eq(ds_cache_get_stats(c, out, &err), DS_OK);
    ds_cache_free(c);
}

/* "F"/"C" per step of branch b. */
static void trace(const ds_cache_stats *st, int b, int steps, char *out) {
    for (int i = 0; i < steps; i++) out[i] = 'F';
    out[steps] = 0;
    const ds_cache_branch_stats *B = &st->lists[0].branch[b];
    for (int i = 0; i < B->n_cached; i++) out[B->cached_steps[i]] = 'C';
}

static void expect_trace(const char *cfg, syn *s, int steps, const char *want) {
    ds_cache_stats st;
    drive(cfg, s, 4, steps, 1, &st);
    char got[MAXC + 1];
    trace(&st, 0, steps, got);
    cr_assert_str_eq(got, want, "%s", cfg);
    ds_cache_stats_free(&st);
}

static void constant(syn *s, int n) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < n; i++) {
        s->scale[i] = 1.0f;
        s->mid[i] = 3.0f;
    }
}

Test(cache_gates, traces_of_cache_dit_md_2_6) {
    syn s;
    constant(&s, 28);
    expect_trace("F1B0_W8I1M0MC0_R0.1", &s, 28, "FFFFFFFFCCCCCCCCCCCCCCCCCCCC");
    expect_trace("F1B0_W8I1M0MC3_R0.1", &s, 28, "FFFFFFFFCCCFCCCFCCCFCCCFCCCF");
    expect_trace("F1B0_W8I1M5MC0_R0.1", &s, 28, "FFFFFFFFCCCCCFFFFFFFFFFFFFFF");
    expect_trace("F1B0_W4I2M0MC0_R0.1", &s, 8, "FCFCCCCC");
    expect_trace("F1B0_W8I2M0MC2_R0.1", &s, 20, "FCFCFCFCCFCCFCCFCCFC");
    /* big input changes at steps 10 and 20 (Fn residual x10). Step 11 computes too: its diff is measured
     * against the outlier reference written at step 10. The installed cache-dit (v1.5 code, which wins over
     * the notes' older trace) restarts the continuous counter when the previous step was not cached, so
     * three cached steps follow each interruption. */
    s.scale[10] = s.scale[20] = 10.0f;
    ds_cache_stats st;
    drive("F1B0_W8I1M0MC3_R0.08", &s, 4, 28, 1, &st);
    char got[64];
    trace(&st, 0, 28, got);
    cr_assert_str_eq(got, "FFFFFFFFCCFFCCCFCCCFFFCCCFCC");
    const ds_cache_branch_stats *B = &st.lists[0].branch[0];
    /* diffs recorded for cached and threshold-computed steps only (not warmup or MC-forced steps) */
    static const int dsteps[] = {8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 20, 21, 22, 23, 24, 26, 27};
    cr_assert_eq(B->n_diffs, (int)(sizeof dsteps / sizeof dsteps[0]));
    for (int i = 0; i < B->n_diffs; i++) cr_assert_eq(B->diff_steps[i], dsteps[i]);
    cr_assert_float_eq(B->diffs[2], 9.0, 1e-6);  /* |b - 10b| / |b| */
    cr_assert_float_eq(B->diffs[3], 0.9, 1e-6);  /* |10b - b| / |10b| */
    cr_assert_eq(B->diffs[0], 0.0);
    ds_cache_stats_free(&st);
}

Test(cache_gates, threshold_is_strict_and_sentinels) {
    syn s;
    constant(&s, 6);
    /* diff exactly 0.25 at step 2 (scale 1 -> 1.25 vs the reference of step 1): not < 0.25, computes */
    s.scale[2] = 1.25f;
    ds_cache_stats st;
    drive("F1B0_W2I1M0MC0_R0.25", &s, 4, 6, 1, &st);
    char got[16];
    trace(&st, 0, 6, got);
    cr_assert_str_eq(got, "FFFCCC");
    cr_assert_eq(st.lists[0].branch[0].diffs[0], 0.25);
    ds_cache_stats_free(&st);
    /* threshold >= 1: sentinel -1.0 and cache (after a reference exists); threshold 0: never, no diffs */
    drive("F1B0_W1I1M0MC0_R1.0", &s, 4, 6, 1, &st);
    trace(&st, 0, 6, got);
    cr_assert_str_eq(got, "FCCCCC");
    for (int i = 0; i < st.lists[0].branch[0].n_diffs; i++) cr_assert_eq(st.lists[0].branch[0].diffs[i], -1.0);
    ds_cache_stats_free(&st);
    drive("F1B0_W0I1M0MC0_R0", &s, 4, 6, 1, &st);
    cr_assert_eq(st.lists[0].branch[0].n_cached, 0);
    cr_assert_eq(st.lists[0].branch[0].n_diffs, 0);
    ds_cache_stats_free(&st);
}

Test(cache_gates, cached_step_adds_the_middle_residual_and_runs_bn) {
    syn s;
    constant(&s, 4);
    s.mid[0] = s.mid[1] = 6.0f; /* computed steps: middle residual 6 * (N-F-B)/(N-1) */
    s.mid[2] = s.mid[3] = 100.0f; /* not seen on cached steps except through Bn */
    ds_cache_stats st;
    drive("F1B1_W2I1M0MC0_R0.5", &s, 4, 4, 1, &st);
    /* N=4, F=1, B=1: Mn = blocks 1,2 (+2 each on computed steps), Bn = block 3 */
    cr_assert_float_eq(s.last_h[1][0], 1 + 6.0f, 1e-6);
    cr_assert_float_eq(s.last_h[2][0], 1 + 4.0f + 100.0f / 3, 1e-5); /* Fn + cached Mn residual (4) + Bn */
    cr_assert_eq(st.lists[0].branch[0].blocks_computed, 4 + 4 + 2 + 2);
    cr_assert_eq(st.lists[0].branch[0].blocks_skipped, 2 + 2);
    ds_cache_stats_free(&st);
}

Test(cache_gates, accumulated_diff_cap) {
    syn s;
    constant(&s, 10);
    for (int i = 0; i < 10; i++) s.scale[i] = 1.0f + 0.05f * (float)i; /* growing drift */
    ds_cache_stats st;
    drive("{\"Fn_compute_blocks\": 1, \"max_warmup_steps\": 1, \"residual_diff_threshold\": 0.5, "
          "\"max_accumulated_residual_diff_threshold\": 0.1}",
          &s, 4, 10, 1, &st);
    const ds_cache_branch_stats *B = &st.lists[0].branch[0];
    double acc = 0;
    int last_diff_step = -1;
    for (int i = 0; i < B->n_diffs; i++) {
        cr_assert_lt(acc, 0.1, "a diff was taken after the cap was reached");
        acc += B->diffs[i] > 0 ? B->diffs[i] : 0;
        last_diff_step = B->diff_steps[i];
    }
    cr_assert_geq(acc, 0.1);
    for (int i = 0; i < B->n_cached; i++) cr_assert_leq(B->cached_steps[i], last_diff_step);
    ds_cache_stats_free(&st);
}

Test(cache_gates, steps_mask_static_and_dynamic) {
    syn s;
    constant(&s, 10);
    s.scale[5] = 5.0f; /* a big change on a mask-0 step */
    ds_cache_stats st;
    char got[16];
    /* dynamic: mask-0 steps still take the threshold test; static: cached unconditionally, no diff */
    drive("{\"Fn_compute_blocks\": 1, \"max_warmup_steps\": 8, \"steps_computation_mask\": [1,1,1,0,0,0,1,0,0,1]}",
          &s, 4, 10, 1, &st);
    trace(&st, 0, 10, got);
    cr_assert_str_eq(got, "FFFCCFFCCF", "warmup is clipped to the mask's leading ones (3)");
    ds_cache_stats_free(&st);
    drive("{\"Fn_compute_blocks\": 1, \"steps_computation_mask\": [1,1,1,0,0,0,1,0,0,1], "
          "\"steps_computation_policy\": \"static\", \"max_continuous_cached_steps\": 1}",
          &s, 4, 10, 1, &st);
    trace(&st, 0, 10, got);
    cr_assert_str_eq(got, "FFFCCCFCCF");
    cr_assert_eq(st.lists[0].branch[0].n_diffs, 0);
    ds_cache_stats_free(&st);
}

Test(cache_gates, separate_cfg_step_counting_and_diff_reuse) {
    syn s;
    constant(&s, 16);
    /* the CFG calls (odd) see a different Fn residual drift than the non-CFG calls */
    for (int i = 0; i < 16; i++) s.scale[i] = i % 2 ? 1.0f + 0.3f * (float)(i / 2) : 1.0f;
    ds_cache_stats st;
    drive("{\"Fn_compute_blocks\": 1, \"max_warmup_steps\": 2, \"residual_diff_threshold\": 0.2, "
          "\"enable_separate_cfg\": true}",
          &s, 4, 8, 2, &st);
    cr_assert_eq(st.lists[0].executed_steps, 8);
    cr_assert_eq(st.lists[0].transformer_steps, 16);
    char a[16], b[16];
    trace(&st, 0, 8, a);
    trace(&st, 1, 8, b);
    cr_assert_str_eq(a, "FFCCCCCC");
    cr_assert_neq(strcmp(b, a), 0, "the CFG branch decides on its own diffs: %s", b);
    ds_cache_stats_free(&st);
    /* cfg_diff_compute_separate = false: the CFG call reuses the non-CFG diff of the same step */
    drive("{\"Fn_compute_blocks\": 1, \"max_warmup_steps\": 2, \"residual_diff_threshold\": 0.2, "
          "\"enable_separate_cfg\": true, \"cfg_diff_compute_separate\": false}",
          &s, 4, 8, 2, &st);
    trace(&st, 1, 8, b);
    cr_assert_str_eq(b, "FFCCCCCC");
    const ds_cache_branch_stats *B0 = &st.lists[0].branch[0], *B1 = &st.lists[0].branch[1];
    cr_assert_eq(B0->n_diffs, B1->n_diffs);
    for (int i = 0; i < B0->n_diffs; i++) cr_assert_eq(B0->diffs[i], B1->diffs[i]);
    ds_cache_stats_free(&st);
    /* cfg_compute_first = true: the first call of a pair is the CFG branch */
    drive("{\"Fn_compute_blocks\": 1, \"max_warmup_steps\": 2, \"residual_diff_threshold\": 0.2, "
          "\"enable_separate_cfg\": true, \"cfg_compute_first\": true, \"cfg_diff_compute_separate\": false}",
          &s, 4, 8, 2, &st);
    trace(&st, 0, 8, a);
    cr_assert_str_eq(a, "FFFCFCFC", "non-CFG branch = the drifting odd calls: %s", a);
    trace(&st, 1, 8, b);
    cr_assert_str_eq(b, "FFCCCCCC", "CFG branch = the constant even calls (no non-CFG diff yet to reuse): %s", b);
    ds_cache_stats_free(&st);
}

/* TaylorSeer on Y(t) = t^2 (cache-dit.md 4.1): W=6, MC=2; forecasts at t=6,7 and, after computing t=8,
 * at t=9. */
static void ts_case(const char *cfg, float p6, float p7, float p9) {
    syn s;
    constant(&s, 10);
    for (int t = 0; t < 10; t++) s.mid[t] = (float)(t * t);
    ds_cache_stats st;
    drive(cfg, &s, 2, 10, 1, &st);
    char got[16];
    trace(&st, 0, 10, got);
    cr_assert_str_eq(got, "FFFFFFCCFC");
    /* h = Fn residual (1 * base) + forecast middle residual */
    cr_assert_float_eq(s.last_h[6][0] - 1.0f, p6, 1e-4, "%s t=6: %f", cfg, s.last_h[6][0] - 1.0f);
    cr_assert_float_eq(s.last_h[7][0] - 1.0f, p7, 1e-4, "%s t=7: %f", cfg, s.last_h[7][0] - 1.0f);
    cr_assert_float_eq(s.last_h[9][0] - 1.0f, p9, 1e-4, "%s t=9: %f", cfg, s.last_h[9][0] - 1.0f);
    ds_cache_stats_free(&st);
}

Test(cache_gates, taylorseer_forecasts) {
    ts_case("F1B0_W6I1M0MC2_R0.5_T0O0", 25, 25, 64);
    ts_case("F1B0_W6I1M0MC2_R0.5_T1O1", 34, 43, 64 + 13); /* order 1 at t=9: 64 + (64-25)/3 */
    ts_case("F1B0_W6I1M0MC2_R0.5_T1O2", 35, 47, 64 + 13 + 1.3333333f / 2);
}

Test(cache_gates, taylorseer_hidden_states_type_replaces_the_state) {
    syn s;
    constant(&s, 8);
    for (int t = 0; t < 8; t++) s.mid[t] = (float)t;
    ds_cache_stats st;
    drive("{\"Fn_compute_blocks\": 1, \"max_warmup_steps\": 4, \"residual_diff_threshold\": 0.5, "
          "\"enable_taylorseer\": true, \"taylorseer_cache_type\": \"hidden_states\"}",
          &s, 2, 6, 1, &st);
    /* Mn output = 1 + t (Fn residual 1 on element 0); linear, so order 1 forecasts it exactly at t = 4, 5 */
    cr_assert_float_eq(s.last_h[4][0], 5.0f, 1e-5);
    cr_assert_float_eq(s.last_h[5][0], 6.0f, 1e-5);
    ds_cache_stats_free(&st);
}

Test(cache_gates, numpy_percentiles) {
    const double v[] = {0.3, -1.0, 0.1, 0.2, 0.5};
    double tmp[5];
    /* numpy.percentile([0.3, -1, 0.1, 0.2, 0.5], q) */
    cr_assert_float_eq(ds_cache_percentile(v, 5, 0, tmp), -1.0, 1e-15);
    cr_assert_float_eq(ds_cache_percentile(v, 5, 25, tmp), 0.1, 1e-15);
    cr_assert_float_eq(ds_cache_percentile(v, 5, 50, tmp), 0.2, 1e-15);
    cr_assert_float_eq(ds_cache_percentile(v, 5, 75, tmp), 0.3, 1e-15);
    cr_assert_float_eq(ds_cache_percentile(v, 5, 95, tmp), 0.46, 1e-12);
    cr_assert_float_eq(ds_cache_percentile(v, 4, 50, tmp), 0.15, 1e-12); /* [.3, -1, .1, .2]: (.1 + .2) / 2 */
    cr_assert_eq(ds_cache_percentile(v, 0, 50, tmp), 0.0);
}
