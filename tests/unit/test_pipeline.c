/* test_pipeline.c - end-to-end parity of the DiT and FLUX pipelines with diffusers (fp32, CPU) on the
 * tiny checkpoints in tests/data/ckpt, from the same initial noise (tools/export_pipelines.py):
 * timesteps exact, every step's latents, final latents rel <= 1e-3 (the bound), decoded 8-bit
 * image mean absolute difference <= 1 on 0..255; plus the registry, label names, seeded determinism,
 * cancellation and argument errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline.h"
#include "test_util.h"

#define FINAL_REL 1e-3   /* issue bound for final latents */
#define STEP_REL  1e-3   /* every intermediate step's latents, same bound */
#define IMAGE_MAD 1.0    /* mean |ours - diffusers| on the 0..255 scale */

static ds_pipeline *load(const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/ckpt/%s", DS_TEST_DATA_DIR, name);
    ds_pipeline *p = NULL;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_pipeline_load(dir, NULL, &p, &err), DS_OK, "load %s: %s", dir, err.msg);
    return p;
}

static double image_mad(const ds_gen_result *r, const float *ref_u8) {
    size_t n = (size_t)r->n_images * r->width * r->height * 3;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs((double)r->rgb[i] - ref_u8[i]);
    return s / (double)n;
}

/* Shared checks: final latents, image, dimensions. */
static void check_result(const ds_safetensors *st, const ds_gen_result *r, const char *what) {
    ds_tensor fl, img;
    float *final = ds_test_read_f32(st, "final_latents", &fl);
    float *u8 = ds_test_read_f32(st, "image_u8", &img);
    cr_assert_eq(r->n_images, img.shape[0], "%s: images", what);
    cr_assert_eq(r->height, img.shape[1], "%s: height", what);
    cr_assert_eq(r->width, img.shape[2], "%s: width", what);
    for (int i = 0; i < 4; i++) cr_assert_eq(r->latent_shape[i], fl.shape[i], "%s: latent dim %d", what, i);
    ds_test_cmp c = ds_test_compare(r->latents, final, ds_tensor_numel(&fl), 0, 0);
    cr_assert(c.rel_err <= FINAL_REL, "%s: final latents relative error %.3e > %.0e", what, c.rel_err, FINAL_REL);
    double mad = image_mad(r, u8);
    cr_assert(mad <= IMAGE_MAD, "%s: image mean abs diff %.4f > %.1f", what, mad, IMAGE_MAD);
    fprintf(stderr, "measured %s: final latents rel %.3e, image MAD %.4f\n", what, c.rel_err, mad);
    free(final);
    free(u8);
}

/* The step callback: counts calls, cancels at cancel_at, and compares each step's latents with
 * diffusers' (ref: [steps, numel] when non-NULL) at the final-latents bound. */
typedef struct step_count {
    int          calls, cancel_at;
    const float *ref;
    double       worst;
} step_count;

static int count_steps(void *user, int step, int n, const float *latents, int64_t numel) {
    step_count *c = user;
    c->calls++;
    cr_assert_leq(step, n);
    if (c->ref) {
        ds_test_cmp cmp = ds_test_compare(latents, c->ref + (size_t)(step - 1) * (size_t)numel, numel, 0, 0);
        cr_assert(cmp.rel_err <= STEP_REL, "step %d latents: relative error %.3e", step, cmp.rel_err);
        if (cmp.rel_err > c->worst) c->worst = cmp.rel_err;
    }
    return c->cancel_at > 0 && step >= c->cancel_at;
}

static void dit_case(const char *file) {
    ds_safetensors *st = ds_test_open(file);
    ds_pipeline *p = load("dit-tiny");
    ds_tensor noise;
    float *nz = ds_test_read_f32(st, "init_noise", &noise);
    int32_t labels[8];
    int n_labels = 0;
    const char *ls = ds_safetensors_metadata(st, "class_labels");
    for (const char *c = ls; c && *c; c = strchr(c, ',') ? strchr(c, ',') + 1 : NULL) labels[n_labels++] = atoi(c);
    const char *sched = ds_safetensors_metadata(st, "scheduler");
    ds_tensor steps_t;
    float *steps_ref = ds_test_read_f32(st, "latents", &steps_t);
    step_count sc = {0, 0, steps_ref, 0};
    ds_gen_params g = {0};
    g.steps = (int)ds_test_meta_num(st, "steps");
    g.guidance_scale = (float)ds_test_meta_num(st, "guidance_scale");
    g.true_cfg_scale = NAN;
    g.scheduler = !strcmp(sched, "ddim") ? DS_SCHED_DDIM : DS_SCHED_DPMPP_2M;
    g.class_labels = labels;
    g.n_labels = n_labels;
    g.init_noise = &noise;
    g.on_step = count_steps;
    g.user = &sc;
    ds_gen_result r;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(sc.calls, g.steps);
    cr_assert_eq(r.steps, g.steps);
    fprintf(stderr, "measured %s: worst step latents rel %.3e\n", file, sc.worst);
    check_result(st, &r, file);
    ds_gen_result_free(&r);
    free(nz);
    free(steps_ref);
    ds_pipeline_free(p);
    ds_safetensors_close(st);
}

Test(pipeline_dit, ddim_cfg_matches_diffusers) { dit_case("pipe/dit_ddim.safetensors"); }
Test(pipeline_dit, dpmpp_2m_cfg_matches_diffusers) { dit_case("pipe/dit_dpm.safetensors"); }
Test(pipeline_dit, ddim_without_cfg_matches_diffusers) { dit_case("pipe/dit_ddim_nocfg.safetensors"); }

static void flux_case(const char *file) {
    ds_safetensors *st = ds_test_open(file);
    ds_pipeline *p = load("flux-tiny");
    ds_tensor noise, emb[4];
    float *bufs[5] = {0};
    bufs[0] = ds_test_read_f32(st, "init_noise", &noise);
    ds_gen_params g = {0};
    ds_test_flux_request(st, &g, emb, bufs + 1);
    g.steps = (int)ds_test_meta_num(st, "steps");
    g.guidance_scale = (float)ds_test_meta_num(st, "guidance_scale");
    g.init_noise = &noise;
    ds_tensor steps_t;
    float *steps_ref = ds_test_read_f32(st, "latents_packed", &steps_t);
    step_count sc = {0, 0, steps_ref, 0};
    g.on_step = count_steps;
    g.user = &sc;
    ds_gen_result r;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(sc.calls, g.steps);
    fprintf(stderr, "measured %s: worst step latents rel %.3e\n", file, sc.worst);
    free(steps_ref);
    check_result(st, &r, file);
    ds_gen_result_free(&r);
    for (int i = 0; i < 5; i++) free(bufs[i]);
    ds_pipeline_free(p);
    ds_safetensors_close(st);
}

Test(pipeline_flux, square_matches_diffusers) { flux_case("pipe/flux_square.safetensors"); }
Test(pipeline_flux, nonsquare_two_images_matches_diffusers) { flux_case("pipe/flux_nonsquare.safetensors"); }
Test(pipeline_flux, true_cfg_matches_diffusers) { flux_case("pipe/flux_truecfg.safetensors"); }

Test(pipeline, registry_rejects_unknown_class_and_lists_supported) {
    char dir[] = "/tmp/ds_pipe_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[1100];
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"_class_name\": \"PixArtAlphaPipeline\"}", f);
    fclose(f);
    ds_pipeline *p = NULL;
    ds_err err;
    cr_assert_eq(ds_pipeline_load(dir, NULL, &p, &err), DS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "PixArtAlphaPipeline") && strstr(err.msg, "DiTPipeline, FluxPipeline"), "%s", err.msg);
    unlink(path);
    rmdir(dir);
    cr_assert_eq(ds_pipeline_load("/nonexistent/ckpt", NULL, &p, &err), DS_ERR_NOT_FOUND);
}

Test(pipeline_dit, label_names_seeded_determinism_and_cancel) {
    ds_pipeline *p = load("dit-tiny");
    int32_t id = -1;
    ds_err err;
    cr_assert_eq(ds_pipeline_label_id(p, "Tinca tinca", &id, &err), DS_OK, "%s", err.msg); /* a synonym */
    cr_assert_eq(id, 0);
    cr_assert_eq(ds_pipeline_label_id(p, "goldfish", &id, &err), DS_OK);
    cr_assert_eq(id, 1);
    cr_assert_eq(ds_pipeline_label_id(p, "unicorn", &id, &err), DS_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, "unicorn"));
    int32_t labels[1] = {1};
    ds_gen_params g = {0};
    g.steps = 4;
    g.guidance_scale = NAN;
    g.class_labels = labels;
    g.n_labels = 1;
    g.seed = 1234;
    ds_gen_result a, b;
    cr_assert_eq(ds_pipeline_generate(p, &g, &a, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_pipeline_generate(p, &g, &b, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(a.width, 64); /* diffusers: sample_size 8 x VAE scale 8 (4 VAE blocks), as exported */
    cr_assert(memcmp(a.rgb, b.rgb, (size_t)a.width * a.height * 3) == 0, "same seed, different image");
    g.seed = 1235;
    ds_gen_result c;
    cr_assert_eq(ds_pipeline_generate(p, &g, &c, &err), DS_OK);
    cr_assert(memcmp(a.rgb, c.rgb, (size_t)a.width * a.height * 3) != 0, "seed ignored");
    step_count sc = {0, 2, NULL, 0};
    g.on_step = count_steps;
    g.user = &sc;
    ds_gen_result d;
    cr_assert_eq(ds_pipeline_generate(p, &g, &d, &err), DS_ERR_CANCELLED);
    cr_assert_eq(sc.calls, 2);
    cr_assert_null(d.rgb);
    ds_gen_result_free(&a);
    ds_gen_result_free(&b);
    ds_gen_result_free(&c);
    ds_pipeline_free(p);
}

Test(pipeline_dit, bad_arguments_name_the_field) {
    ds_pipeline *p = load("dit-tiny");
    int32_t labels[5] = {1, 2, 3, 4, 5};
    ds_gen_params g = {0};
    g.steps = 2;
    g.guidance_scale = NAN;
    g.class_labels = labels;
    g.n_labels = 1;
    ds_gen_result r;
    ds_err err;
    g.scheduler = DS_SCHED_FLOW_EULER;
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "scheduler"), "%s", err.msg);
    g.scheduler = DS_SCHED_AUTO;
    g.width = 18;
    g.height = 18;
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "width"), "%s", err.msg);
    g.width = g.height = 0;
    g.n_labels = 5; /* default limit is 4 images */
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "num_images"), "%s", err.msg);
    labels[0] = 1000; /* the null class is not a valid request */
    g.n_labels = 1;
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "class_labels"), "%s", err.msg);
    g.n_labels = 0;
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_ERR_INVALID_ARG);
    ds_pipeline_free(p);
}

Test(pipeline_flux, missing_embeddings_and_bad_sizes) {
    ds_pipeline *p = load("flux-tiny");
    ds_gen_params g = {0};
    g.steps = 2;
    g.guidance_scale = NAN;
    ds_gen_result r;
    ds_err err;
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "prompt_embeds"), "%s", err.msg);
    float pe[7 * 24] = {0}, pp[12] = {0};
    ds_tensor pet = ds_tensor_f32(pe, 3, 1, 7, 24), ppt = ds_tensor_f32(pp, 2, 1, 12);
    g.prompt_embeds = &pet;
    g.pooled_prompt_embeds = &ppt;
    g.width = 36;
    g.height = 32;
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "width"), "%s", err.msg);
    g.width = 32;
    ds_tensor bad = ds_tensor_f32(pe, 3, 1, 8, 21);
    g.prompt_embeds = &bad;
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "prompt_embeds"), "%s", err.msg);
    g.prompt_embeds = &pet;
    g.scheduler = DS_SCHED_DDIM;
    cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_ERR_INVALID_ARG);
    ds_pipeline_free(p);
}

/* --random-weights: a pipeline from the configs alone runs, is deterministic per seed, and differs
 * from the trained weights and across seeds. */
static void random_weights_case(const char *name, int flux) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/ckpt/%s", DS_TEST_DATA_DIR, name);
    uint8_t *img[3] = {0};
    size_t bytes = 0;
    for (int k = 0; k < 3; k++) {
        ds_pipeline_opts o = {0};
        o.random_weights = k < 2;
        o.weights_seed = 7;
        ds_pipeline *p = NULL;
        ds_err err;
        cr_assert_eq(ds_pipeline_load(dir, &o, &p, &err), DS_OK, "%s", err.msg);
        int32_t labels[1] = {3};
        float pe[7 * 24] = {0}, pp[12] = {0};
        for (int i = 0; i < 7 * 24; i++) pe[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
        ds_tensor pet = ds_tensor_f32(pe, 3, 1, 7, 24), ppt = ds_tensor_f32(pp, 2, 1, 12);
        ds_gen_params g = {0};
        g.steps = 3;
        g.guidance_scale = NAN;
        g.seed = 5;
        if (flux) {
            g.prompt_embeds = &pet;
            g.pooled_prompt_embeds = &ppt;
            g.width = g.height = 32;
        } else {
            g.class_labels = labels;
            g.n_labels = 1;
        }
        ds_gen_result r;
        cr_assert_eq(ds_pipeline_generate(p, &g, &r, &err), DS_OK, "%s", err.msg);
        bytes = (size_t)r.width * r.height * 3;
        img[k] = malloc(bytes);
        memcpy(img[k], r.rgb, bytes);
        for (int64_t i = 0; i < r.latent_shape[0] * r.latent_shape[1] * r.latent_shape[2] * r.latent_shape[3]; i++)
            cr_assert(isfinite(r.latents[i]));
        ds_gen_result_free(&r);
        ds_pipeline_free(p);
    }
    cr_assert(memcmp(img[0], img[1], bytes) == 0, "%s: random weights are not deterministic", name);
    cr_assert(memcmp(img[0], img[2], bytes) != 0, "%s: random weights equal the trained ones", name);
    for (int k = 0; k < 3; k++) free(img[k]);
}

Test(pipeline_dit, random_weights_from_config) { random_weights_case("dit-tiny", 0); }
Test(pipeline_flux, random_weights_from_config) { random_weights_case("flux-tiny", 1); }
