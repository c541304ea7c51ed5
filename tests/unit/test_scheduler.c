/* test_scheduler.c - models/scheduler.c against diffusers 0.42.1 (tests/data/sched/, written by
 * tools/export_schedulers.py): timesteps bit-exact, sigmas and alphas_cumprod, and a free-running sample
 * trajectory (our own sample is fed back every step) compared at every step; plus config and call errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"
#include "test_util.h"

/* ---- helpers ----------------------------------------------------------------------------------- */

static ds_config *parse(const char *json) {
    ds_config *cfg = NULL;
    ds_err     err;
    ds_err_clear(&err);
    cr_assert_eq(ds_config_parse(json, strlen(json), "scheduler_config.json", &cfg, &err), DS_OK, "%s", err.msg);
    return cfg;
}

/* Build from JSON text; returns the status, *out set on success; err receives the message. */
static ds_status build(const char *json, ds_sched_kind kind, int64_t max_numel, ds_scheduler **out, ds_err *err) {
    ds_config *cfg = parse(json);
    ds_err_clear(err);
    *out        = NULL;
    ds_status s = ds_scheduler_init_from_config(cfg, kind, max_numel, out, err);
    ds_config_close(cfg); /* the scheduler must not keep pointers into the config */
    return s;
}

static ds_sched_kind kind_of(const char *name) {
    if (strcmp(name, "auto") == 0) return DS_SCHED_AUTO;
    if (strcmp(name, "ddim") == 0) return DS_SCHED_DDIM;
    if (strcmp(name, "dpmpp_2m") == 0) return DS_SCHED_DPMPP_2M;
    if (strcmp(name, "flow_euler") == 0) return DS_SCHED_FLOW_EULER;
    cr_assert_fail("unknown kind '%s'", name);
    return DS_SCHED_AUTO;
}

static int64_t numel(const ds_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static double rel_err(const float *out, const float *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)out[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Run one exported configuration end to end. */
static void run_case(const char *name, ds_sched_kind expect_kind) {
    char rel[128];
    snprintf(rel, sizeof rel, "sched/%s.safetensors", name);
    ds_safetensors *st     = ds_test_open(rel);
    const char     *json   = ds_safetensors_metadata(st, "config");
    const char     *kind_s = ds_safetensors_metadata(st, "kind");
    const char     *mode   = ds_safetensors_metadata(st, "sigmas_mode");
    cr_assert(json && kind_s && mode, "%s: metadata missing", rel);
    const int steps = (int)ds_test_meta_num(st, "steps");

    ds_tensor tx, tts, tmo, tsm;
    float    *x_init = ds_test_read_f32(st, "x_init", &tx);
    float    *ts_ref = ds_test_read_f32(st, "timesteps", &tts);
    float    *mo     = ds_test_read_f32(st, "model_out", &tmo);
    float    *sm     = ds_test_read_f32(st, "sample", &tsm);
    const int64_t n  = numel(&tx);
    cr_assert_eq(numel(&tts), steps);
    cr_assert_eq(numel(&tmo), steps * n);
    cr_assert_eq(numel(&tsm), steps * n);

    ds_scheduler *s = NULL;
    ds_err        err;
    cr_assert_eq(build(json, kind_of(kind_s), n, &s, &err), DS_OK, "%s: %s", name, err.msg);
    cr_assert_eq(ds_scheduler_kind(s), expect_kind, "%s: built %s", name, ds_sched_kind_name(ds_scheduler_kind(s)));
    cr_assert_eq(ds_scheduler_init_noise_sigma(s), 1.0f);

    double mu = NAN;
    if (ds_safetensors_metadata(st, "mu")) {
        double mu_ref = ds_test_meta_num(st, "mu");
        mu            = ds_scheduler_mu(s, (int64_t)ds_test_meta_num(st, "image_seq_len"));
        cr_assert_eq(mu, mu_ref, "%s: mu %.17g, diffusers %.17g", name, mu, mu_ref);
    }
    if (strcmp(mode, "flux") == 0) {
        double *sig = malloc(sizeof(double) * (size_t)steps);
        ds_scheduler_flux_sigmas(steps, sig);
        cr_assert_eq(ds_scheduler_set_sigmas(s, sig, steps, mu, &err), DS_OK, "%s: %s", name, err.msg);
        free(sig);
    } else {
        cr_assert_eq(ds_scheduler_set_timesteps(s, steps, mu, &err), DS_OK, "%s: %s", name, err.msg);
    }
    cr_assert_eq(ds_scheduler_num_steps(s), steps);

    /* timesteps: bit-exact */
    const float *ts = ds_scheduler_timesteps(s);
    cr_assert_not_null(ts);
    for (int k = 0; k < steps; k++)
        cr_assert(memcmp(&ts[k], &ts_ref[k], sizeof(float)) == 0, "%s: timestep %d: %.9g, diffusers %.9g", name, k,
                  ts[k], ts_ref[k]);

    /* sigmas (DPM / flow) */
    double sig_rel = 0;
    int    sig_diff = 0;
    if (ds_safetensors_find(st, "sigmas")) {
        ds_tensor    tsg;
        float       *sg_ref = ds_test_read_f32(st, "sigmas", &tsg);
        const float *sg     = ds_scheduler_sigmas(s);
        cr_assert_eq(numel(&tsg), steps + 1);
        cr_assert_not_null(sg);
        sig_rel = rel_err(sg, sg_ref, steps + 1);
        for (int k = 0; k <= steps; k++) sig_diff += sg[k] != sg_ref[k];
        cr_assert(sig_rel <= 1e-6, "%s: sigmas relative error %.3e", name, sig_rel);
        free(sg_ref);
    } else {
        cr_assert_null(ds_scheduler_sigmas(s), "%s: DDIM has no sigmas", name);
    }

    /* training schedule (DDIM / DPM): bit-exact with torch's float32 linspace/cumprod */
    int          T_len = 0;
    const float *ac    = ds_scheduler_alphas_cumprod(s, &T_len);
    if (ds_safetensors_find(st, "alphas_cumprod")) {
        ds_tensor tac;
        float    *ac_ref = ds_test_read_f32(st, "alphas_cumprod", &tac);
        cr_assert_eq(T_len, numel(&tac));
        cr_assert_not_null(ac);
        if (ds_test_meta_num(st, "alphas_bit_exact") != 0) {
            for (int k = 0; k < T_len; k++)
                cr_assert(ac[k] == ac_ref[k], "%s: alphas_cumprod[%d] %.9g, torch %.9g", name, k, ac[k], ac_ref[k]);
        } else {
            /* rescale_betas_zero_snr: torch.sqrt (MKL VML) is not correctly rounded, ours is */
            ds_test_assert_close(ac, ac_ref, T_len, 1e-6, 0.0, 1e-5, "alphas_cumprod");
        }
        free(ac_ref);
    } else {
        cr_assert_null(ac);
    }

    /* free-running trajectory */
    float *x = malloc(sizeof(float) * (size_t)n);
    memcpy(x, x_init, sizeof(float) * (size_t)n);
    double worst = 0;
    for (int k = 0; k < steps; k++) {
        cr_assert_eq(ds_scheduler_step(s, k, mo + k * n, x, n, &err), DS_OK, "%s step %d: %s", name, k, err.msg);
        double e = rel_err(x, sm + k * n, n);
        if (e > worst) worst = e;
        /* Element check relative to the step's magnitude: torch's CPU sqrt/exp/log (MKL VML) round the scalar
         * coefficients up to 1 ulp differently, which shows up absolutely (~1e-7 * max|x|) in elements that
         * cancel to near zero. */
        double amax = 0;
        for (int64_t j = 0; j < n; j++) amax = fmax(amax, fabs(sm[k * n + j]));
        char what[96];
        snprintf(what, sizeof what, "%s: sample after step %d", name, k);
        ds_test_assert_close(x, sm + k * n, n, 1e-5, 1e-5 * amax, 1e-5, what);
    }
    fprintf(stderr, "[sched] %-22s steps %2d  timesteps exact  sigmas rel %.2e (%d not bit-equal)  worst step rel %.2e\n",
            name, steps, sig_rel, sig_diff, worst);

    free(x);
    free(x_init);
    free(ts_ref);
    free(mo);
    free(sm);
    ds_scheduler_free(s);
    ds_safetensors_close(st);
}

/* ---- diffusers parity ---------------------------------------------------------------------------- */

Test(sched, ddim_dit_25) { run_case("ddim_dit_25", DS_SCHED_DDIM); }
Test(sched, ddim_dit_50) { run_case("ddim_dit_50", DS_SCHED_DDIM); }
Test(sched, ddim_trailing) { run_case("ddim_trailing", DS_SCHED_DDIM); }
Test(sched, ddim_linspace_cos) { run_case("ddim_linspace_cos", DS_SCHED_DDIM); }
Test(sched, dpm_dit_20) { run_case("dpm_dit_20", DS_SCHED_DPMPP_2M); }
Test(sched, dpm_dit_25) { run_case("dpm_dit_25", DS_SCHED_DPMPP_2M); }
Test(sched, dpm_vpred_scaled) { run_case("dpm_vpred_scaled", DS_SCHED_DPMPP_2M); }
Test(sched, dpm_leading_cos) { run_case("dpm_leading_cos", DS_SCHED_DPMPP_2M); }
Test(sched, flow_flux_64x64) { run_case("flow_flux_64x64", DS_SCHED_FLOW_EULER); }
Test(sched, flow_flux_48x80) { run_case("flow_flux_48x80", DS_SCHED_FLOW_EULER); }
Test(sched, flow_sd3_20) { run_case("flow_sd3_20", DS_SCHED_FLOW_EULER); }
Test(sched, flow_dynamic_default) { run_case("flow_dynamic_default", DS_SCHED_FLOW_EULER); }
Test(sched, flow_linear_shift) { run_case("flow_linear_shift", DS_SCHED_FLOW_EULER); }

/* ---- known values (models.md §2.4, §6) ------------------------------------------------------------ */

static const char *k_dit =
    "{\"_class_name\":\"DDIMScheduler\",\"_diffusers_version\":\"0.12.0.dev0\",\"beta_end\":0.02,"
    "\"beta_schedule\":\"linear\",\"beta_start\":0.0001,\"clip_sample\":false,\"num_train_timesteps\":1000,"
    "\"prediction_type\":\"epsilon\",\"set_alpha_to_one\":true,\"steps_offset\":0,\"trained_betas\":null}";

static const char *k_flux =
    "{\"_class_name\":\"FlowMatchEulerDiscreteScheduler\",\"base_image_seq_len\":256,\"base_shift\":0.5,"
    "\"max_image_seq_len\":4096,\"max_shift\":1.15,\"num_train_timesteps\":1000,\"shift\":3.0,"
    "\"use_dynamic_shifting\":true}";

Test(sched, dit_known_timesteps) {
    ds_scheduler *s = NULL;
    ds_err        err;
    cr_assert_eq(build(k_dit, DS_SCHED_AUTO, 16, &s, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_scheduler_kind(s), DS_SCHED_DDIM);
    cr_assert_eq(ds_scheduler_set_timesteps(s, 50, NAN, &err), DS_OK, "%s", err.msg);
    const float *ts = ds_scheduler_timesteps(s);
    for (int k = 0; k < 50; k++) cr_assert_eq(ts[k], (float)(980 - 20 * k)); /* leading: 980, 960, ..., 0 */
    cr_assert_eq(ds_scheduler_set_timesteps(s, 40, NAN, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_scheduler_timesteps(s)[0], 975.0f);
    cr_assert_eq(ds_scheduler_set_timesteps(s, 1000, NAN, &err), DS_OK, "%s", err.msg); /* the maximum */
    cr_assert_eq(ds_scheduler_timesteps(s)[0], 999.0f);
    int          T  = 0;
    const float *ac = ds_scheduler_alphas_cumprod(s, &T);
    cr_assert_eq(T, 1000);
    cr_assert_float_eq(ac[0], 0.9999f, 1e-7);
    cr_assert_float_eq(ac[999], 4.0358e-5f, 1e-8);
    ds_scheduler_free(s);

    /* the same config swapped to DPM++ 2M: timestep_spacing absent -> DPM's default "linspace" */
    cr_assert_eq(build(k_dit, DS_SCHED_DPMPP_2M, 16, &s, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_scheduler_set_timesteps(s, 25, NAN, &err), DS_OK, "%s", err.msg);
    static const int dpm25[] = {999, 959, 919, 879, 839, 799, 759, 719, 679, 639, 599, 559, 519,
                                480, 440, 400, 360, 320, 280, 240, 200, 160, 120, 80,  40};
    for (int k = 0; k < 25; k++) cr_assert_eq(ds_scheduler_timesteps(s)[k], (float)dpm25[k], "step %d", k);
    cr_assert_eq(ds_scheduler_sigmas(s)[25], 0.0f);
    ds_scheduler_free(s);
}

Test(sched, flux_mu_and_sigmas) {
    cr_assert_float_eq(ds_scheduler_flux_mu(4096, 256, 4096, 0.5, 1.15), 1.15, 1e-12);
    cr_assert_float_eq(ds_scheduler_flux_mu(1024, 256, 4096, 0.5, 1.15), 0.63, 1e-12);
    double sig[28];
    ds_scheduler_flux_sigmas(28, sig);
    cr_assert_eq(sig[0], 1.0);
    cr_assert_eq(sig[27], 1.0 / 28);
    ds_scheduler_flux_sigmas(1, sig);
    cr_assert_eq(sig[0], 1.0);

    ds_scheduler *s = NULL;
    ds_err        err;
    cr_assert_eq(build(k_flux, DS_SCHED_AUTO, 8, &s, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_scheduler_mu(s, 4096), ds_scheduler_flux_mu(4096, 256, 4096, 0.5, 1.15));
    double sg28[28];
    ds_scheduler_flux_sigmas(28, sg28);
    cr_assert_eq(ds_scheduler_set_sigmas(s, sg28, 28, ds_scheduler_mu(s, 4096), &err), DS_OK, "%s", err.msg);
    const float *sg = ds_scheduler_sigmas(s);
    /* FLUX-dev 1024^2, 28 steps (models.md §6.4): 1.0, 0.98841, ..., 0.10472, then 0 */
    cr_assert_float_eq(sg[0], 1.0f, 1e-6);
    cr_assert_float_eq(sg[1], 0.98841f, 1e-5);
    cr_assert_float_eq(sg[27], 0.10472f, 1e-5);
    cr_assert_eq(sg[28], 0.0f);
    cr_assert_eq(ds_scheduler_timesteps(s)[0], 1000.0f);
    cr_assert_null(ds_scheduler_alphas_cumprod(s, NULL));
    ds_scheduler_free(s);
}

/* A DPM run restarted at step 0 reproduces itself (the history is reset), and DDIM/flow are stateless. */
Test(sched, dpm_restart_is_deterministic) {
    ds_scheduler *s = NULL;
    ds_err        err;
    cr_assert_eq(build(k_dit, DS_SCHED_DPMPP_2M, 6, &s, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_scheduler_set_timesteps(s, 5, NAN, &err), DS_OK, "%s", err.msg);
    float run[2][6];
    for (int r = 0; r < 2; r++) {
        float x[6] = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f, 1.5f};
        for (int k = 0; k < 5; k++) {
            float mo[6];
            for (int j = 0; j < 6; j++) mo[j] = sinf((float)(k * 6 + j));
            cr_assert_eq(ds_scheduler_step(s, k, mo, x, 6, &err), DS_OK, "%s", err.msg);
        }
        memcpy(run[r], x, sizeof x);
    }
    cr_assert(memcmp(run[0], run[1], sizeof run[0]) == 0);
    ds_scheduler_free(s);
}

/* ---- errors ------------------------------------------------------------------------------------------ */

static void expect_build_fail(const char *json, ds_sched_kind kind, ds_status code, const char *needle) {
    ds_scheduler *s = NULL;
    ds_err        err;
    ds_status     st = build(json, kind, 8, &s, &err);
    cr_assert_eq(st, code, "%s: got %s (%s), want %s", json, ds_status_name(st), err.msg, ds_status_name(code));
    cr_assert_null(s);
    cr_assert_eq(err.code, code);
    cr_assert_not_null(strstr(err.msg, needle), "message '%s' does not name '%s'", err.msg, needle);
}

Test(sched, err_bad_config_type) {
    expect_build_fail("{\"_class_name\":\"DDIMScheduler\",\"beta_start\":\"small\"}", DS_SCHED_AUTO, DS_ERR_FORMAT,
                      "beta_start");
    expect_build_fail("{\"_class_name\":\"DDIMScheduler\",\"num_train_timesteps\":999.5}", DS_SCHED_AUTO,
                      DS_ERR_FORMAT, "num_train_timesteps");
    expect_build_fail("{\"_class_name\":\"DDIMScheduler\",\"clip_sample\":1}", DS_SCHED_AUTO, DS_ERR_FORMAT,
                      "clip_sample");
    expect_build_fail("{\"_class_name\":\"DDIMScheduler\",\"trained_betas\":{\"a\":1}}", DS_SCHED_AUTO, DS_ERR_FORMAT,
                      "trained_betas");
    expect_build_fail("{\"_class_name\":7}", DS_SCHED_AUTO, DS_ERR_FORMAT, "_class_name");
    expect_build_fail("{\"beta_start\":0.0001}", DS_SCHED_AUTO, DS_ERR_FORMAT, "_class_name");
    expect_build_fail("{\"_class_name\":\"FlowMatchEulerDiscreteScheduler\",\"shift\":\"3\"}", DS_SCHED_AUTO,
                      DS_ERR_FORMAT, "shift");
}

Test(sched, err_unsupported_values) {
    expect_build_fail("{\"_class_name\":\"DDIMScheduler\",\"beta_schedule\":\"sigmoid\"}", DS_SCHED_AUTO,
                      DS_ERR_UNSUPPORTED, "beta_schedule");
    expect_build_fail("{\"_class_name\":\"EulerDiscreteScheduler\"}", DS_SCHED_AUTO, DS_ERR_UNSUPPORTED,
                      "_class_name");
    expect_build_fail("{\"_class_name\":\"DDIMScheduler\",\"thresholding\":true}", DS_SCHED_AUTO, DS_ERR_UNSUPPORTED,
                      "thresholding");
    expect_build_fail("{\"_class_name\":\"DDIMScheduler\",\"timestep_spacing\":\"quadratic\"}", DS_SCHED_AUTO,
                      DS_ERR_UNSUPPORTED, "timestep_spacing");
    expect_build_fail("{\"_class_name\":\"DDIMScheduler\",\"prediction_type\":\"flow_prediction\"}", DS_SCHED_AUTO,
                      DS_ERR_UNSUPPORTED, "prediction_type");
    expect_build_fail("{\"_class_name\":\"DDIMScheduler\",\"trained_betas\":[0.1,0.2]}", DS_SCHED_AUTO,
                      DS_ERR_UNSUPPORTED, "trained_betas");
    expect_build_fail("{\"_class_name\":\"DDIMScheduler\",\"num_train_timesteps\":1}", DS_SCHED_AUTO,
                      DS_ERR_UNSUPPORTED, "num_train_timesteps");
    expect_build_fail("{\"_class_name\":\"DPMSolverMultistepScheduler\",\"solver_order\":3}", DS_SCHED_AUTO,
                      DS_ERR_UNSUPPORTED, "solver_order");
    expect_build_fail("{\"_class_name\":\"DPMSolverMultistepScheduler\",\"algorithm_type\":\"sde-dpmsolver++\"}",
                      DS_SCHED_AUTO, DS_ERR_UNSUPPORTED, "algorithm_type");
    expect_build_fail("{\"_class_name\":\"DPMSolverMultistepScheduler\",\"use_karras_sigmas\":true}", DS_SCHED_AUTO,
                      DS_ERR_UNSUPPORTED, "use_karras_sigmas");
    expect_build_fail("{\"_class_name\":\"DPMSolverMultistepScheduler\",\"variance_type\":\"learned_range\"}",
                      DS_SCHED_AUTO, DS_ERR_UNSUPPORTED, "variance_type");
    expect_build_fail("{\"_class_name\":\"DPMSolverMultistepScheduler\",\"final_sigmas_type\":\"denoise\"}",
                      DS_SCHED_AUTO, DS_ERR_UNSUPPORTED, "final_sigmas_type");
    expect_build_fail("{\"_class_name\":\"FlowMatchEulerDiscreteScheduler\",\"shift_terminal\":0.1}", DS_SCHED_AUTO,
                      DS_ERR_UNSUPPORTED, "shift_terminal");
    expect_build_fail("{\"_class_name\":\"FlowMatchEulerDiscreteScheduler\",\"stochastic_sampling\":true}",
                      DS_SCHED_AUTO, DS_ERR_UNSUPPORTED, "stochastic_sampling");
    expect_build_fail("{\"_class_name\":\"FlowMatchEulerDiscreteScheduler\",\"time_shift_type\":\"cubic\"}",
                      DS_SCHED_AUTO, DS_ERR_UNSUPPORTED, "time_shift_type");
    /* a class swap reads the target class's keys: DPM-only values in a DDIM-named config still apply */
    expect_build_fail("{\"_class_name\":\"DDIMScheduler\",\"solver_order\":3}", DS_SCHED_DPMPP_2M, DS_ERR_UNSUPPORTED,
                      "solver_order");
}

Test(sched, err_bad_arguments) {
    ds_err        err;
    ds_scheduler *s = NULL;
    ds_config    *cfg = parse(k_dit);
    cr_assert_eq(ds_scheduler_init_from_config(cfg, DS_SCHED_AUTO, 0, &s, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_scheduler_init_from_config(NULL, DS_SCHED_AUTO, 8, &s, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_scheduler_init_from_config(cfg, DS_SCHED_AUTO, 8, NULL, &err), DS_ERR_INVALID_ARG);
    ds_config_close(cfg);
}

Test(sched, err_num_steps) {
    ds_scheduler *s = NULL;
    ds_err        err;
    for (int kind = DS_SCHED_DDIM; kind <= DS_SCHED_FLOW_EULER; kind++) {
        cr_assert_eq(build(k_dit, (ds_sched_kind)kind, 8, &s, &err), DS_OK, "%s", err.msg);
        cr_assert_eq(ds_scheduler_set_timesteps(s, 0, NAN, &err), DS_ERR_INVALID_ARG);
        cr_assert_eq(ds_scheduler_set_timesteps(s, -3, NAN, &err), DS_ERR_INVALID_ARG);
        cr_assert_eq(ds_scheduler_set_timesteps(s, 1001, NAN, &err), DS_ERR_INVALID_ARG);
        cr_assert_not_null(strstr(err.msg, "1001"), "%s", err.msg);
        cr_assert_eq(ds_scheduler_num_steps(s), 0);
        cr_assert_null(ds_scheduler_timesteps(s));
        ds_scheduler_free(s);
    }
    /* DDIM leading with an offset that pushes a timestep past the table */
    cr_assert_eq(build("{\"_class_name\":\"DDIMScheduler\",\"steps_offset\":999}", DS_SCHED_AUTO, 8, &s, &err),
                 DS_OK, "%s", err.msg);
    cr_assert_eq(ds_scheduler_set_timesteps(s, 1, NAN, &err), DS_OK, "%s", err.msg); /* t = 0 + 999 */
    cr_assert_eq(ds_scheduler_set_timesteps(s, 2, NAN, &err), DS_ERR_INVALID_ARG);   /* t = 500 + 999 */
    ds_scheduler_free(s);
}

Test(sched, err_mu_and_sigmas) {
    ds_scheduler *s = NULL;
    ds_err        err;
    double        sig[4] = {1.0, 0.75, 0.5, 0.25};
    cr_assert_eq(build(k_flux, DS_SCHED_AUTO, 8, &s, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_scheduler_set_timesteps(s, 4, NAN, &err), DS_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "mu"), "%s", err.msg);
    cr_assert_eq(ds_scheduler_set_sigmas(s, sig, 4, INFINITY, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_scheduler_set_sigmas(s, sig, 0, 1.0, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_scheduler_set_sigmas(s, NULL, 4, 1.0, &err), DS_ERR_INVALID_ARG);
    ds_scheduler_free(s);
    cr_assert_eq(build(k_dit, DS_SCHED_AUTO, 8, &s, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_scheduler_set_sigmas(s, sig, 4, 1.0, &err), DS_ERR_UNSUPPORTED);
    ds_scheduler_free(s);
}

Test(sched, err_step_index) {
    ds_scheduler *s = NULL;
    ds_err        err;
    float         mo[8] = {0}, x[8], x0[8];
    for (int kind = DS_SCHED_DDIM; kind <= DS_SCHED_FLOW_EULER; kind++) {
        for (int j = 0; j < 8; j++) x[j] = x0[j] = (float)j - 3.5f;
        cr_assert_eq(build(kind == DS_SCHED_FLOW_EULER ? "{\"_class_name\":\"FlowMatchEulerDiscreteScheduler\"}"
                                                       : k_dit,
                           (ds_sched_kind)kind, 8, &s, &err),
                     DS_OK, "%s", err.msg);
        cr_assert_eq(ds_scheduler_step(s, 0, mo, x, 8, &err), DS_ERR_INVALID_ARG); /* no set_timesteps */
        cr_assert_eq(ds_scheduler_set_timesteps(s, 10, NAN, &err), DS_OK, "%s", err.msg);
        cr_assert_eq(ds_scheduler_step(s, -1, mo, x, 8, &err), DS_ERR_INVALID_ARG);
        cr_assert_eq(ds_scheduler_step(s, 10, mo, x, 8, &err), DS_ERR_INVALID_ARG);
        cr_assert_not_null(strstr(err.msg, "10"), "%s", err.msg);
        cr_assert_eq(ds_scheduler_step(s, 0, mo, x, 9, &err), DS_ERR_INVALID_ARG); /* > max_numel */
        cr_assert_eq(ds_scheduler_step(s, 0, mo, x, 0, &err), DS_ERR_INVALID_ARG);
        cr_assert_eq(ds_scheduler_step(s, 0, NULL, x, 8, &err), DS_ERR_INVALID_ARG);
        cr_assert(memcmp(x, x0, sizeof x) == 0, "sample changed by a failed step");
        if (kind == DS_SCHED_DPMPP_2M) {
            cr_assert_eq(ds_scheduler_step(s, 1, mo, x, 8, &err), DS_ERR_INVALID_ARG); /* must start at 0 */
            cr_assert_eq(ds_scheduler_step(s, 0, mo, x, 8, &err), DS_OK, "%s", err.msg);
            memcpy(x0, x, sizeof x);
            cr_assert_eq(ds_scheduler_step(s, 2, mo, x, 8, &err), DS_ERR_INVALID_ARG); /* skipped 1 */
            cr_assert_eq(ds_scheduler_step(s, 1, mo, x, 4, &err), DS_ERR_INVALID_ARG); /* n changed */
            cr_assert(memcmp(x, x0, sizeof x) == 0, "sample changed by a failed step");
            cr_assert_eq(ds_scheduler_step(s, 1, mo, x, 8, &err), DS_OK, "%s", err.msg);
        } else {
            cr_assert_eq(ds_scheduler_step(s, 7, mo, x, 8, &err), DS_OK, "%s", err.msg); /* stateless */
        }
        ds_scheduler_free(s);
    }
}
