/* cli_generate.c - `ditserve generate`: parse the command line into ds_gen_params, load the pipeline
 * named by the directory's model_index.json, generate, and write PNG(s) (+ optional final latents).
 * --cache CONFIG runs the generation through the engine's DBCache (a JSON file, a JSON object or a
 * cache-dit config string such as F8B0_W4MC3_T0O1_R0.12); --stats-out FILE writes its statistics as JSON,
 * otherwise a short table goes to stderr. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cli.h"
#include "config.h"
#include "device_select.h"
#include "log.h"
#include "pipeline.h"
#include "safetensors.h"
#ifdef DS_HAVE_CUDA
#include "cuda/ds_cuda_ops.h"
#endif
#ifdef DS_HAVE_PNG
#include "png_encode.h"
#endif

#define MAX_LABELS 16

typedef struct cli_args {
    const char *model, *out, *prompt_embeds, *init_noise, *latents_out, *device, *dtype, *cache, *stats_out;
    const char *class_names[MAX_LABELS];
    int32_t     labels[MAX_LABELS];
    int         n_labels, n_names;
    int         width, height, steps, num_images, random_weights;
    float       guidance, true_cfg;
    ds_sched_kind scheduler;
    uint64_t    seed;
    bool        graphs_off, attention_exact; /* --cuda-graphs off, --attention exact (CUDA only) */
} cli_args;

static const char k_usage[] =
    "usage: ditserve generate [--model DIR (default: the demo model)] [--class N | --class-name S]... [--prompt-embeds FILE]\n"
    "         [--width W --height H] [--steps N] [--guidance G] [--true-cfg G] [--num-images N]\n"
    "         [--scheduler ddim|dpmpp_2m|flow_euler] [--seed S] [--init-noise FILE]\n"
    "         [--device auto|cpu|cuda|cuda:N (default auto: the GPU when usable)] [--dtype bf16|f16|f32]\n"
    "         [--cuda-graphs on|off (default on)] [--attention fast|exact (default fast)]\n"
    "         [--random-weights] --out PNG [--latents-out FILE]\n"
    "         [--cache CONFIG (JSON file | JSON object | e.g. F8B0_W4MC3_T0O1_R0.12 | none)] [--stats-out FILE]\n";

static int bad(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "ditserve generate: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 2;
}

static int parse_int(const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        char range[64];
        snprintf(range, sizeof range, "an integer in %ld..%ld", lo, hi);
        return bad("%s expects %s", opt, range);
    }
    *out = (int)v;
    return 0;
}

static int parse_float(const char *opt, const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || end == s || !isfinite(v)) return bad("%s expects a finite number, got '%s'", opt, s);
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, cli_args *a) {
    memset(a, 0, sizeof *a);
    a->guidance = NAN;
    a->true_cfg = NAN;
    a->device = "auto";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            fputs(k_usage, stdout);
            return -1;
        }
        if (strncmp(o, "--", 2)) return bad("unexpected argument '%s'%s", o, "");
        if (!strcmp(o, "--random-weights")) {
            a->random_weights = 1;
            continue;
        }
        if (i + 1 >= argc) return bad("%s needs a value%s", o, "");
        const char *v = argv[++i];
        int rc = 0, iv = 0;
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--out")) a->out = v;
        else if (!strcmp(o, "--prompt-embeds")) a->prompt_embeds = v;
        else if (!strcmp(o, "--init-noise")) a->init_noise = v;
        else if (!strcmp(o, "--latents-out")) a->latents_out = v;
        else if (!strcmp(o, "--device")) a->device = v;
        else if (!strcmp(o, "--dtype")) a->dtype = v;
        else if (!strcmp(o, "--cuda-graphs")) {
            if (strcmp(v, "on") && strcmp(v, "off")) return bad("--cuda-graphs must be on or off, got '%s'%s", v, "");
            a->graphs_off = !strcmp(v, "off");
        } else if (!strcmp(o, "--attention")) {
            if (strcmp(v, "fast") && strcmp(v, "exact")) return bad("--attention must be fast or exact, got '%s'%s", v, "");
            a->attention_exact = !strcmp(v, "exact");
        }
        else if (!strcmp(o, "--cache")) a->cache = v;
        else if (!strcmp(o, "--stats-out")) a->stats_out = v;
        else if (!strcmp(o, "--class")) {
            if (a->n_labels >= MAX_LABELS) return bad("at most 16 classes%s%s", "", "");
            rc = parse_int(o, v, 0, 999, &iv);
            a->labels[a->n_labels++] = iv;
        } else if (!strcmp(o, "--class-name")) {
            if (a->n_names >= MAX_LABELS) return bad("at most 16 classes%s%s", "", "");
            a->class_names[a->n_names++] = v;
        } else if (!strcmp(o, "--width")) rc = parse_int(o, v, 1, 16384, &a->width);
        else if (!strcmp(o, "--height")) rc = parse_int(o, v, 1, 16384, &a->height);
        else if (!strcmp(o, "--steps")) rc = parse_int(o, v, 1, 1000, &a->steps);
        else if (!strcmp(o, "--num-images")) rc = parse_int(o, v, 1, 64, &a->num_images);
        else if (!strcmp(o, "--guidance")) rc = parse_float(o, v, &a->guidance);
        else if (!strcmp(o, "--true-cfg")) rc = parse_float(o, v, &a->true_cfg);
        else if (!strcmp(o, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || *end || end == v || v[0] == '-') return bad("--seed expects a non-negative integer, got '%s'%s", v, "");
            a->seed = (uint64_t)s;
        } else if (!strcmp(o, "--scheduler")) {
            if (!strcmp(v, "ddim")) a->scheduler = DS_SCHED_DDIM;
            else if (!strcmp(v, "dpmpp_2m")) a->scheduler = DS_SCHED_DPMPP_2M;
            else if (!strcmp(v, "flow_euler")) a->scheduler = DS_SCHED_FLOW_EULER;
            else return bad("--scheduler must be ddim, dpmpp_2m or flow_euler, got '%s'%s", v, "");
        } else return bad("unknown option '%s'%s", o, "");
        if (rc) return rc;
    }
    if (!a->model) { /* the demo model: $DITSERVE_DEMO_DIR, the build tree or an install (server/config.h) */
        static char demo[PATH_MAX];
        char msg[2 * PATH_MAX + 256];
        if (!ds_server_config_find_demo(NULL, demo, sizeof demo, msg, sizeof msg)) return bad("%s%s", msg, "");
        a->model = demo;
    }
    if (!a->out) return bad("--out PNG is required%s%s", "", "");
    return 0;
}

/* Read one f32 tensor `name` of file `path` into a malloc'd buffer; NULL (with err) when absent. */
static float *read_tensor(const ds_safetensors *st, const char *name, ds_tensor *t, ds_err *err) {
    const ds_st_tensor *info = ds_safetensors_find(st, name);
    if (!info) {
        DS_FAIL(err, DS_ERR_NOT_FOUND, "%s: no tensor '%s'", ds_safetensors_label(st), name);
        return NULL;
    }
    int64_t n = 1;
    for (int i = 0; i < info->ndim; i++) n *= info->shape[i];
    float *buf = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!buf || ds_safetensors_read(st, name, DS_F32, buf, (size_t)n * sizeof(float), -1, NULL, err) != DS_OK) {
        if (!buf) DS_FAIL(err, DS_ERR_OOM, "out of memory reading %s", name);
        free(buf);
        return NULL;
    }
    *t = ds_tensor_make(buf, DS_F32, info->ndim, info->shape);
    return buf;
}

/* "out.png" -> "out-2.png" for image k of several. */
static void image_path(const char *out, int k, int n, char *buf, size_t len) {
    if (n == 1) {
        snprintf(buf, len, "%s", out);
        return;
    }
    const char *dot = strrchr(out, '.');
    const char *slash = strrchr(out, '/');
    if (!dot || (slash && dot < slash)) dot = out + strlen(out);
    snprintf(buf, len, "%.*s-%d%s", (int)(dot - out), out, k, dot);
}

static int step_log(void *user, int step, int n, const float *latents, int64_t numel) {
    (void)user;
    (void)latents;
    (void)numel;
    if (step == n || step % 10 == 0) DS_LOGD("cli", "step %d/%d", step, n);
    return 0;
}

int ds_cli_generate(int argc, char **argv) {
    cli_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
#ifndef DS_HAVE_PNG
    fprintf(stderr, "ditserve generate: built without libpng, cannot write %s\n", a.out);
    return 1;
#else
    ds_err err;
    ds_err_clear(&err);
    /* --device / --dtype: auto picks the GPU when one is usable, else the CPU (one log line says why) */
    ds_placement pl;
    char note[512] = "";
    if (ds_device_select(a.device, a.dtype, &pl, note, sizeof note, &err) != DS_OK) {
        fprintf(stderr, "ditserve generate: %s\n", err.msg);
        return 2;
    }
    if (note[0]) DS_LOGI("cli", "%s", note);
#ifdef DS_HAVE_CUDA
    ds_cuda_ctx *ctx = NULL; /* one stream + cuBLASLt handle for this process */
    if (pl.device.kind == DS_DEVICE_CUDA &&
        (ds_cuda_ctx_create(pl.device.index, 0, &ctx, &err) != DS_OK || ds_cuda_ctx_bind(ctx, &err) != DS_OK)) {
        fprintf(stderr, "ditserve generate: %s\n", err.msg);
        ds_cuda_ctx_destroy(ctx);
        return 1;
    }
    if (ctx) {
        ds_cuda_ctx_set_graphs(ctx, !a.graphs_off);
        ds_cuda_ctx_set_attention(ctx, a.attention_exact ? DS_CUDA_ATTN_EXACT : DS_CUDA_ATTN_FAST);
    }
#endif
    ds_pipeline *p = NULL;
    ds_safetensors *emb = NULL, *noise_st = NULL;
    float *bufs[6] = {0};
    ds_tensor pe, pp, npe, npp, noise;
    ds_gen_result res = {0};
    ds_status s = DS_OK;
    int exit_code = 1;
    ds_cache_config cache_cfg;
    ds_cache_stats stats;
    memset(&stats, 0, sizeof stats);
    if (a.cache && (s = ds_cache_config_parse_any(a.cache, &cache_cfg, &err)) != DS_OK) goto done;
    if (a.stats_out && !a.cache) {
        fprintf(stderr, "ditserve generate: --stats-out needs --cache%s\n", "");
        exit_code = 2;
        goto done;
    }
    ds_pipeline_opts opts = {0};
    opts.max_width = a.width;
    opts.max_height = a.height;
    opts.random_weights = a.random_weights != 0;
    opts.placement = pl;
    opts.weights_seed = a.seed;
    opts.max_images = (a.n_labels + a.n_names > 0 ? a.n_labels + a.n_names : 1) * (a.num_images > 0 ? a.num_images : 1);
    if ((s = ds_pipeline_load(a.model, &opts, &p, &err)) != DS_OK) goto done;

    ds_gen_params g = {0};
    g.width = a.width;
    g.height = a.height;
    g.steps = a.steps;
    g.guidance_scale = a.guidance;
    g.true_cfg_scale = a.true_cfg;
    g.scheduler = a.scheduler;
    g.seed = a.seed;
    g.num_images = a.num_images;
    g.on_step = step_log;
    for (int i = 0; i < a.n_names; i++) {
        if ((s = ds_pipeline_label_id(p, a.class_names[i], &a.labels[a.n_labels], &err)) != DS_OK) goto done;
        a.n_labels++;
    }
    g.class_labels = a.labels;
    g.n_labels = a.n_labels;
    if (ds_pipeline_get_kind(p) == DS_PIPELINE_DIT && a.n_labels == 0) {
        fprintf(stderr, "ditserve generate: %s is class-conditional: give --class N or --class-name S\n", a.model);
        exit_code = 2;
        goto done;
    }
    if (a.prompt_embeds) {
        if ((s = ds_safetensors_open(a.prompt_embeds, &emb, &err)) != DS_OK) goto done;
        if (!(bufs[0] = read_tensor(emb, "prompt_embeds", &pe, &err))) { s = err.code; goto done; }
        if (!(bufs[1] = read_tensor(emb, "pooled_prompt_embeds", &pp, &err))) { s = err.code; goto done; }
        g.prompt_embeds = &pe;
        g.pooled_prompt_embeds = &pp;
        if (ds_safetensors_find(emb, "negative_prompt_embeds")) {
            if (!(bufs[2] = read_tensor(emb, "negative_prompt_embeds", &npe, &err))) { s = err.code; goto done; }
            if (!(bufs[3] = read_tensor(emb, "negative_pooled_prompt_embeds", &npp, &err))) { s = err.code; goto done; }
            g.negative_prompt_embeds = &npe;
            g.negative_pooled_prompt_embeds = &npp;
        }
    }
    if (a.init_noise) {
        if ((s = ds_safetensors_open(a.init_noise, &noise_st, &err)) != DS_OK) goto done;
        const char *nm = ds_safetensors_find(noise_st, "init_noise") ? "init_noise"
                         : ds_safetensors_count(noise_st) == 1   ? ds_safetensors_at(noise_st, 0)->name
                                                                  : "init_noise";
        if (!(bufs[4] = read_tensor(noise_st, nm, &noise, &err))) { s = err.code; goto done; }
        g.init_noise = &noise;
    }
    if (a.cache) {
        if ((s = ds_cache_generate(p, &g, &cache_cfg, &res, &stats, &err)) != DS_OK) goto done;
        if (a.stats_out) {
            char *json = NULL;
            if ((s = ds_cache_stats_to_json(&stats, &json, &err)) != DS_OK) goto done;
            FILE *f = fopen(a.stats_out, "w");
            int ok = f && fputs(json, f) >= 0 && fputc('\n', f) != EOF;
            if (f && fclose(f)) ok = 0;
            free(json);
            if (!ok) {
                s = DS_FAIL(&err, DS_ERR_IO, "--stats-out %s: cannot write", a.stats_out);
                goto done;
            }
        } else
            ds_cache_stats_print(&stats, stderr);
    } else if ((s = ds_pipeline_generate(p, &g, &res, &err)) != DS_OK)
        goto done;

    char params[512], path[1024];
    int dw, dh;
    ds_pipeline_default_size(p, &dw, &dh);
    snprintf(params, sizeof params,
             "{\"model\":\"%s\",\"pipeline\":\"%s\",\"seed\":%llu,\"steps\":%d,\"width\":%d,\"height\":%d,"
             "\"guidance_scale\":%g,\"scheduler\":\"%s\"%s%s%s%s}",
             a.model, ds_pipeline_class(p), (unsigned long long)a.seed, res.steps, res.width, res.height,
             isnan(a.guidance) ? (ds_pipeline_get_kind(p) == DS_PIPELINE_DIT ? 4.0 : 3.5) : (double)a.guidance,
             a.scheduler == DS_SCHED_AUTO ? "default" : ds_sched_kind_name(a.scheduler), a.init_noise ? ",\"init_noise\":true" : "",
             a.cache ? ",\"cache\":\"" : "", a.cache ? stats.config : "", a.cache ? "\"" : "");
    const ds_png_text text[] = {{"ditserve", params}, {"Software", "ditserve"}};
    for (int k = 0; k < res.n_images; k++) {
        image_path(a.out, k, res.n_images, path, sizeof path);
        const uint8_t *rgb = res.rgb + (size_t)k * res.width * res.height * 3;
        if ((s = ds_png_write_file(path, rgb, res.width, res.height, text, 2, &err)) != DS_OK) goto done;
        printf("%s\n", path);
    }
    if (a.latents_out) {
        ds_tensor lt = ds_tensor_make(res.latents, DS_F32, 4, res.latent_shape);
        const ds_st_entry e[] = {{"latents", &lt}};
        const char *meta[] = {"ditserve", params};
        if ((s = ds_safetensors_write(a.latents_out, e, 1, meta, 1, &err)) != DS_OK) goto done;
    }
    DS_LOGI("cli", "%d image(s) %dx%d, %d steps: denoise %.0f ms, decode %.0f ms", res.n_images, res.width, res.height,
            res.steps, res.denoise_ms, res.decode_ms);
    exit_code = 0;
done:
    if (s != DS_OK) {
        fprintf(stderr, "ditserve generate: %s\n", err.msg);
        exit_code = (s == DS_ERR_INVALID_ARG || s == DS_ERR_NOT_FOUND) ? 2 : 1;
    }
    ds_gen_result_free(&res);
    ds_cache_stats_free(&stats);
    for (int i = 0; i < 6; i++) free(bufs[i]);
    ds_safetensors_close(emb);
    ds_safetensors_close(noise_st);
    ds_pipeline_free(p);
#ifdef DS_HAVE_CUDA
    ds_cuda_ctx_destroy(ctx);
#endif
    return exit_code;
#endif
}
