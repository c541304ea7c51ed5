/* pipeline.c - the model registry (model_index.json "_class_name" -> pipeline), pipeline load/free,
 * and the steps DiTPipeline and FluxPipeline share: schedulers, initial noise, VAE decode to RGB8. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "pipeline_impl.h"
#include "rng.h"
#include "tensor_io.h"
#ifdef DS_HAVE_CUDA
#include "cuda/ds_cuda.h"
#endif

typedef struct registry_entry {
    const char      *class_name;
    ds_pipeline_kind kind;
    ds_status (*load)(ds_pipeline *p, ds_err *err);
} registry_entry;

static const registry_entry k_registry[] = {
    {"DiTPipeline", DS_PIPELINE_DIT, ds_pipeline_dit_load},
    {"FluxPipeline", DS_PIPELINE_FLUX, ds_pipeline_flux_load},
};

const char *ds_pipeline_supported(void) { return "DiTPipeline, FluxPipeline"; }

double ds_pipeline_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

ds_status ds_pipeline_alloc(float **buf, size_t n, const char *what, ds_err *err) {
    *buf = calloc(n ? n : 1, sizeof(float));
    if (!*buf) return DS_FAIL(err, DS_ERR_OOM, "pipeline: cannot allocate %zu floats for %s", n, what);
    return DS_OK;
}

ds_status ds_pipeline_place(ds_pipeline *p, ds_tensor *t, float *host, ds_dtype dtype, int ndim, const int64_t *shape,
                            ds_err *err) {
    if (p->pl.device.kind == DS_DEVICE_CPU) {
        if (!host) return DS_FAIL(err, DS_ERR_INTERNAL, "pipeline: no host buffer to place");
        *t = ds_tensor_make(host, DS_F32, ndim, shape);
        return DS_OK;
    }
    ds_status s = ds_tensor_alloc(t, dtype, p->pl.device, ndim, shape, err);
    if (s != DS_OK) {
        ds_err_prefix(err, "pipeline buffers on cuda:%d", p->pl.device.index);
        return s;
    }
    const size_t need = ds_tensor_staging_bytes(t);
    if (need > p->staging_bytes) p->staging_bytes = need;
    return DS_OK;
}

ds_status ds_pipeline_staging(ds_pipeline *p, ds_err *err) {
    if (p->pl.device.kind == DS_DEVICE_CPU || !p->staging_bytes) return DS_OK;
#ifdef DS_HAVE_CUDA
    ds_cuda_host_free(p->staging);
    p->staging = NULL;
    return ds_cuda_host_alloc(&p->staging, p->staging_bytes, err); /* pinned: transfers run at full speed */
#else
    return DS_FAIL(err, DS_ERR_UNSUPPORTED, "pipeline: no CUDA backend");
#endif
}

ds_status ds_pipeline_place_vae(ds_pipeline *p, ds_err *err) {
    if (p->pl.device.kind == DS_DEVICE_CPU) return DS_OK; /* decode reads the host latents in place */
    const int64_t H = (int64_t)p->max_h * p->vae_scale, W = (int64_t)p->max_w * p->vae_scale;
    DS_TRY(ds_pipeline_place(p, &p->t_vlat, NULL, p->pl.dtype, 4, (const int64_t[]){1, p->latent_ch, p->max_h, p->max_w},
                             err));
    return ds_pipeline_place(p, &p->t_img, NULL, p->pl.dtype, 4, (const int64_t[]){1, 3, H, W}, err);
}

ds_status ds_pipeline_runner_buffers(ds_pipeline *p, size_t h, size_t c, size_t e, size_t cat, size_t rope,
                                     ds_err *err) {
    if (p->blk_h) return DS_OK;
    const struct {
        float **buf;
        size_t  n;
        const char *what;
    } want[] = {{&p->blk_c, c, "block-runner conditioning"}, {&p->blk_e, e, "block-runner text stream"},
                {&p->blk_cat, cat, "block-runner joined streams"}, {&p->blk_cos, rope, "block-runner rope cos"},
                {&p->blk_sin, rope, "block-runner rope sin"}, {&p->blk_h, h, "block-runner image stream"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (want[i].n && !*want[i].buf) DS_TRY(ds_pipeline_alloc(want[i].buf, want[i].n, want[i].what, err));
    return DS_OK;
}

ds_status ds_pipeline_load(const char *dir, const ds_pipeline_opts *opts, ds_pipeline **out, ds_err *err) {
    *out = NULL;
    ds_pipeline *p = calloc(1, sizeof *p);
    if (!p) return DS_FAIL(err, DS_ERR_OOM, "pipeline: out of memory");
    if (opts) p->opts = *opts;
    if (p->opts.max_images <= 0) p->opts.max_images = 4;
    if (p->opts.max_txt_tokens <= 0) p->opts.max_txt_tokens = 512;
    p->pl = p->opts.placement;
    ds_status s = ds_placement_check(&p->pl, "pipeline", err);
    if (s != DS_OK) {
        ds_pipeline_free(p);
        return s;
    }
    s = ds_diffusers_open(dir, &p->dir, err);
    if (s != DS_OK) {
        ds_pipeline_free(p);
        return s;
    }
    if (p->opts.random_weights) ds_diffusers_set_random_weights(p->dir, p->opts.weights_seed);
    const char *cls = ds_diffusers_class(p->dir);
    const registry_entry *e = NULL;
    for (size_t i = 0; i < sizeof k_registry / sizeof k_registry[0]; i++)
        if (!strcmp(cls, k_registry[i].class_name)) e = &k_registry[i];
    if (!e) {
        s = DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s/model_index.json: pipeline class '%s' is not supported (supported: %s)",
                    dir, cls, ds_pipeline_supported());
        ds_pipeline_free(p);
        return s;
    }
    p->kind = e->kind;
    s = e->load(p, err);
    if (s == DS_OK) s = ds_pipeline_staging(p, err);
    /* a few ranges per list (Fn, middle, Bn, all) per image size and batch kept by a runner as graphs */
    if (s == DS_OK) s = ds_graph_cache_create(32, NULL, &p->graphs, err);
    if (s != DS_OK) {
        ds_pipeline_free(p);
        return s;
    }
    char where[32];
    DS_LOGI("models", "loaded %s from %s on %s (latents up to %dx%d, %d images per request)", cls, dir,
            ds_placement_str(&p->pl, where, sizeof where), p->max_h, p->max_w, p->opts.max_images);
    *out = p;
    return DS_OK;
}

void ds_pipeline_free(ds_pipeline *p) {
    if (!p) return;
    ds_graph_cache_free(p->graphs);
    ds_dit_free(p->dit);
    ds_flux_free(p->flux);
    ds_vae_free(p->vae);
    for (int i = 0; i < DS_PIPE_MAX_SCHED; i++) ds_scheduler_free(p->sched[i]);
    float *bufs[] = {p->lat, p->lat2, p->xin, p->xout, p->eps, p->image, p->tsteps, p->guid, p->txt, p->pooled,
                     p->txt_ids, p->img_ids, p->blk_h, p->blk_c, p->blk_e, p->blk_cat, p->blk_cos, p->blk_sin};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(p->labels);
    if (p->pl.device.kind != DS_DEVICE_CPU) {
        ds_tensor *owned[] = {&p->t_xin, &p->t_xout, &p->t_vlat, &p->t_img, &p->t_blk_h, &p->t_blk_c, &p->t_blk_e,
                              &p->t_blk_cat, &p->t_blk_cos, &p->t_blk_sin, &p->t_aux[0], &p->t_aux[1], &p->t_aux[2],
                              &p->t_aux[3]};
        for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++) ds_tensor_free_data(owned[i]);
    }
#ifdef DS_HAVE_CUDA
    if (p->pl.device.kind != DS_DEVICE_CPU) ds_cuda_host_free(p->staging);
#endif
    ds_diffusers_close(p->dir);
    free(p);
}

ds_pipeline_kind ds_pipeline_get_kind(const ds_pipeline *p) { return p->kind; }

ds_graph_stats ds_pipeline_graph_stats(const ds_pipeline *p) { return ds_graph_cache_stats(p ? p->graphs : NULL); }

const char *ds_pipeline_class(const ds_pipeline *p) { return ds_diffusers_class(p->dir); }

void ds_pipeline_default_size(const ds_pipeline *p, int *width, int *height) {
    if (p->kind == DS_PIPELINE_DIT) {
        int s = (int)ds_dit_get_config(p->dit)->sample_size * p->vae_scale;
        *width = *height = s;
    } else {
        /* FluxPipeline: default_sample_size (128) * vae_scale_factor */
        *width = *height = 128 * p->vae_scale;
    }
}

ds_status ds_pipeline_label_id(const ds_pipeline *p, const char *name, int32_t *id, ds_err *err) {
    if (p->kind != DS_PIPELINE_DIT)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s is not class-conditional: class names do not apply",
                       ds_pipeline_class(p));
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(ds_diffusers_index(p->dir), "id2label");
    if (!cJSON_IsObject(map))
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s/model_index.json has no id2label map: pass class ids",
                       ds_diffusers_dir(p->dir));
    /* DiTPipeline.labels: every comma-separated synonym, stripped, maps to its id. */
    const cJSON *it;
    cJSON_ArrayForEach(it, map) {
        if (!cJSON_IsString(it)) continue;
        const char *v = it->valuestring;
        while (*v) {
            const char *end = strchr(v, ',');
            size_t len = end ? (size_t)(end - v) : strlen(v);
            const char *a = v, *b = v + len;
            while (a < b && (*a == ' ' || *a == '\t' || *a == '\n')) a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n')) b--;
            if ((size_t)(b - a) == strlen(name) && !strncmp(a, name, (size_t)(b - a))) {
                char *endp;
                long k = strtol(it->string, &endp, 10);
                if (*endp || k < 0 || k > 100000)
                    return DS_FAIL(err, DS_ERR_FORMAT, "id2label key '%s' is not a class id", it->string);
                *id = (int32_t)k;
                return DS_OK;
            }
            if (!end) break;
            v = end + 1;
        }
    }
    return DS_FAIL(err, DS_ERR_NOT_FOUND, "class name '%s' is not in the checkpoint's id2label", name);
}

ds_status ds_pipeline_build_schedulers(ds_pipeline *p, const ds_sched_kind *kinds, int n, int64_t max_numel,
                                       ds_err *err) {
    const ds_component *sc;
    DS_TRY(ds_diffusers_component(p->dir, "scheduler", &sc, err));
    if (!sc->config)
        return DS_FAIL(err, DS_ERR_NOT_FOUND, "%s: no scheduler_config.json", sc->path);
    ds_scheduler *probe = NULL;
    DS_TRY(ds_scheduler_init_from_config(sc->config, DS_SCHED_AUTO, 1, &probe, err));
    ds_sched_kind named = ds_scheduler_kind(probe);
    ds_scheduler_free(probe);
    p->default_sched = kinds[0];
    for (int i = 0; i < n; i++) {
        if (kinds[i] == named) p->default_sched = named;
        DS_TRY(ds_scheduler_init_from_config(sc->config, kinds[i], max_numel, &p->sched[kinds[i]], err));
    }
    return DS_OK;
}

ds_status ds_pipeline_pick_scheduler(ds_pipeline *p, ds_sched_kind kind, ds_scheduler **out, ds_err *err) {
    if (kind == DS_SCHED_AUTO) kind = p->default_sched;
    if ((int)kind < 0 || kind >= DS_PIPE_MAX_SCHED || !p->sched[kind])
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler: '%s' does not apply to %s", ds_sched_kind_name(kind),
                       ds_pipeline_class(p));
    *out = p->sched[kind];
    return DS_OK;
}

ds_status ds_pipeline_init_latents(const ds_gen_params *g, const int64_t shape[4], float *dst, ds_err *err) {
    int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
    if (!g->init_noise) {
        ds_rng_normal(g->seed, 0, dst, n);
        return DS_OK;
    }
    const ds_tensor *t = g->init_noise;
    DS_TRY(ds_tensor_check_f32(t, 4, "init_noise", err));
    for (int i = 0; i < 4; i++)
        if (t->shape[i] != shape[i]) {
            char b[96];
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "init_noise: shape %s, this request needs [%lld, %lld, %lld, %lld]",
                           ds_tensor_shape_str(t, b, sizeof b), (long long)shape[0], (long long)shape[1],
                           (long long)shape[2], (long long)shape[3]);
        }
    memcpy(dst, t->data, (size_t)n * sizeof(float));
    return DS_OK;
}

ds_status ds_pipeline_decode(ds_pipeline *p, const float *latents, const int64_t shape[4], ds_gen_result *res,
                             ds_err *err) {
    const int64_t B = shape[0], C = shape[1], h = shape[2], w = shape[3];
    const int64_t H = h * p->vae_scale, W = w * p->vae_scale;
    size_t per_lat = (size_t)(C * h * w), per_rgb = (size_t)(H * W * 3);
    res->rgb = malloc(per_rgb * (size_t)B);
    res->latents = malloc(per_lat * (size_t)B * sizeof(float));
    if (!res->rgb || !res->latents) return DS_FAIL(err, DS_ERR_OOM, "pipeline: cannot allocate the result images");
    memcpy(res->latents, latents, per_lat * (size_t)B * sizeof(float));
    memcpy(res->latent_shape, shape, 4 * sizeof(int64_t));
    res->n_images = (int)B;
    res->width = (int)W;
    res->height = (int)H;
    for (int64_t b = 0; b < B; b++) {
        const float *lb = latents + (size_t)b * per_lat;
        ds_tensor lt, it;
        if (p->pl.device.kind == DS_DEVICE_CPU) {
            lt = ds_tensor_f32((void *)lb, 4, 1, C, h, w);
            it = ds_tensor_f32(p->image, 4, 1, 3, H, W);
        } else { /* up in the model dtype, decode on the device, the image back as f32 */
            lt = ds_tensor_like(&p->t_vlat, p->t_vlat.data, 4, (const int64_t[]){1, C, h, w});
            it = ds_tensor_like(&p->t_img, p->t_img.data, 4, (const int64_t[]){1, 3, H, W});
            DS_TRY(ds_tensor_write_f32(&lt, lb, p->staging, p->staging_bytes, err));
        }
        DS_TRY(ds_vae_decode(p->vae, &lt, &it, err));
        ds_tensor host_img = ds_tensor_f32(p->image, 4, 1, 3, H, W);
        if (p->pl.device.kind != DS_DEVICE_CPU)
            DS_TRY(ds_tensor_read_f32(p->image, &it, p->staging, p->staging_bytes, err));
        DS_TRY(ds_vae_to_rgb8(&host_img, res->rgb + (size_t)b * per_rgb, per_rgb, err));
    }
    return DS_OK;
}

ds_status ds_pipeline_generate(ds_pipeline *p, const ds_gen_params *g, ds_gen_result *res, ds_err *err) {
    memset(res, 0, sizeof *res);
    ds_status s = p->kind == DS_PIPELINE_DIT ? ds_pipeline_dit_generate(p, g, res, err)
                                             : ds_pipeline_flux_generate(p, g, res, err);
    if (s != DS_OK) ds_gen_result_free(res);
    return s;
}

void ds_gen_result_free(ds_gen_result *res) {
    if (!res) return;
    free(res->rgb);
    free(res->latents);
    memset(res, 0, sizeof *res);
}
