/* worker.c - one worker thread per device: it loads the device's models, runs one warm-up step on each,
 * then takes jobs from its bounded queue in FIFO order and runs them through the cache engine (a ds_cache
 * runner per job: "none" runs every block) with a step callback that records progress and per-step cache
 * decisions and checks the job's cancel flag between steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "diffusers_dir.h"
#include "engine_impl.h"
#ifdef DS_HAVE_CUDA
#include "cuda/ds_cuda_ops.h"
#endif
#include "log.h"

/* ---- loading and warm-up -------------------------------------------------------------------------------- */

static void set_model_state(ds_engine *e, ds_engine_model *m, ds_model_state st, const ds_err *err) {
    pthread_mutex_lock(&e->mu);
    m->state = st;
    if (err) m->load_err = *err;
    if (st == DS_MODEL_READY) m->created = (int64_t)time(NULL);
    pthread_cond_broadcast(&e->state_cv);
    pthread_mutex_unlock(&e->mu);
}

/* FLUX warm-up inputs: zero embeddings shaped from transformer/config.json. */
static ds_status flux_warm_inputs(const char *dir, float **pe, float **pp, ds_tensor *tpe, ds_tensor *tpp, ds_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/transformer/config.json", dir);
    ds_config *cfg = NULL;
    DS_TRY(ds_config_open(path, &cfg, err));
    int64_t joint = 0, pooled = 0;
    ds_status s = ds_config_get_int(cfg, "joint_attention_dim", 4096, &joint, err);
    if (s == DS_OK) s = ds_config_get_int(cfg, "pooled_projection_dim", 768, &pooled, err);
    ds_config_close(cfg);
    if (s != DS_OK) return s;
    const int64_t T = 4;
    *pe = calloc((size_t)(T * joint), sizeof(float));
    *pp = calloc((size_t)pooled, sizeof(float));
    if (!*pe || !*pp) return DS_FAIL(err, DS_ERR_OOM, "out of memory for the warm-up embeddings");
    *tpe = ds_tensor_make(*pe, DS_F32, 3, (int64_t[]){1, T, joint});
    *tpp = ds_tensor_make(*pp, DS_F32, 2, (int64_t[]){1, pooled});
    return DS_OK;
}

/* One denoising step at the smallest convenient size, then decode: touches every code path once. */
static ds_status warm_up(ds_engine_model *m, ds_err *err) {
    ds_gen_params g = {0};
    g.steps = 1;
    g.guidance_scale = NAN;
    g.true_cfg_scale = NAN;
    int32_t label = 0;
    float *pe = NULL, *pp = NULL;
    ds_tensor tpe, tpp;
    ds_status s = DS_OK;
    if (ds_pipeline_get_kind(m->pipeline) == DS_PIPELINE_DIT) {
        g.class_labels = &label;
        g.n_labels = 1;
    } else {
        if ((s = flux_warm_inputs(m->dir, &pe, &pp, &tpe, &tpp, err)) != DS_OK) goto out;
        g.prompt_embeds = &tpe;
        g.pooled_prompt_embeds = &tpp;
        int w, h;
        ds_pipeline_default_size(m->pipeline, &w, &h);
        g.width = w < 256 ? w : 256;
        g.height = h < 256 ? h : 256;
    }
    ds_gen_result res;
    double t0 = ds_engine_now_ms();
    s = ds_pipeline_generate(m->pipeline, &g, &res, err);
    ds_gen_result_free(&res);
    if (s == DS_OK) DS_LOGI("engine", "model %s warmed up (%.0f ms)", m->name, ds_engine_now_ms() - t0);
out:
    free(pe);
    free(pp);
    return s;
}

static bool load_models(ds_worker *w) {
    ds_engine *e = w->eng;
    bool ok = true;
    for (int i = 0; i < e->n_models; i++) {
        ds_engine_model *m = &e->models[i];
        if (m->worker != w->index) continue;
        ds_err err;
        ds_err_clear(&err);
        double t0 = ds_engine_now_ms();
        DS_LOGI("engine", "loading model %s from %s on %s", m->name, m->dir, w->device);
        ds_pipeline *p = NULL;
        ds_status s = ds_pipeline_load(m->dir, &e->opts.pipeline, &p, &err);
        if (s == DS_OK) {
            pthread_mutex_lock(&e->mu);
            m->pipeline = p;
            pthread_mutex_unlock(&e->mu);
            DS_LOGI("engine", "model %s: %s loaded (%.0f ms)", m->name, ds_pipeline_class(p), ds_engine_now_ms() - t0);
            set_model_state(e, m, DS_MODEL_WARMING, NULL);
            if (!e->opts.skip_warmup) s = warm_up(m, &err);
        }
        if (s != DS_OK) {
            DS_LOGE("engine", "model %s (%s): %s", m->name, m->dir, err.msg);
            set_model_state(e, m, DS_MODEL_FAILED, &err);
            ok = false;
            continue;
        }
        set_model_state(e, m, DS_MODEL_READY, NULL);
    }
    return ok;
}

/* ---- running one job ------------------------------------------------------------------------------------ */

typedef struct step_ctx {
    ds_engine *e;
    ds_job    *job;
    ds_cache  *cache;
    double     t_last;
    int        prev_cached[DS_CACHE_MAX_LISTS][2];
    int        prev_diffs[DS_CACHE_MAX_LISTS][2];
} step_ctx;

static int on_step(void *user, int step, int n_steps, const float *latents, int64_t n) {
    (void)latents;
    (void)n;
    step_ctx *c = user;
    double now = ds_engine_now_ms();
    ds_job_step_event ev;
    memset(&ev, 0, sizeof ev);
    ev.step = step;
    ev.n_steps = n_steps;
    ev.ms = now - c->t_last;
    c->t_last = now;
    /* what the cache decided this step: compare its counters with the previous step's (no copy) */
    int nl, nb[DS_CACHE_MAX_LISTS], ncached[DS_CACHE_MAX_LISTS][2], ndiffs[DS_CACHE_MAX_LISTS][2];
    double last[DS_CACHE_MAX_LISTS][2];
    bool any_cached = false;
    ds_cache_progress(c->cache, &nl, nb, ncached, ndiffs, last);
    ev.n_lists = nl;
    for (int l = 0; l < nl; l++) {
        ev.n_branches[l] = nb[l];
        for (int b = 0; b < nb[l]; b++) {
            ev.cached[l][b] = ncached[l][b] > c->prev_cached[l][b];
            ev.diff[l][b] = ndiffs[l][b] > c->prev_diffs[l][b] ? last[l][b] : NAN;
            any_cached |= ev.cached[l][b];
            c->prev_cached[l][b] = ncached[l][b];
            c->prev_diffs[l][b] = ndiffs[l][b];
        }
    }
    ds_engine *e = c->e;
    ds_job *j = c->job;
    pthread_mutex_lock(&e->mu);
    if (j->n_events == j->cap_events) {
        int cap = j->cap_events ? j->cap_events * 2 : (n_steps > 0 ? n_steps : 16);
        ds_job_step_event *ne = realloc(j->events, (size_t)cap * sizeof *ne);
        if (ne) {
            j->events = ne;
            j->cap_events = cap;
        }
    }
    if (j->n_events < j->cap_events) j->events[j->n_events++] = ev;
    j->step = step;
    j->n_steps = n_steps;
    j->version++;
    e->m.steps++;
    e->m.cached_steps += any_cached;
    ds_hist_observe(&e->m.step_seconds, ev.ms / 1e3);
    for (int l = 0; l < ev.n_lists; l++)
        for (int b = 0; b < ev.n_branches[l]; b++)
            if (!isnan(ev.diff[l][b]) && ev.diff[l][b] >= 0) ds_hist_observe(&e->m.residual_diff, ev.diff[l][b]);
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&e->mu);
    return atomic_load(&j->cancel) ? 1 : 0;
}

static void view(const ds_req_tensor *r, ds_tensor *t, const ds_tensor **slot) {
    if (!r->data) return;
    *t = ds_tensor_make(r->data, DS_F32, r->ndim, r->shape);
    *slot = t;
}

static void run_job(ds_worker *w, ds_job *j) {
    ds_engine *e = w->eng;
    ds_engine_model *m = &e->models[j->model];
    const ds_gen_request *r = &j->req;
    ds_err err;
    ds_err_clear(&err);
    ds_cache_config cfg;
    if (r->has_cache) cfg = r->cache;
    else if (m->has_default_cache) cfg = m->default_cache;
    else {
        ds_cache_config_default(&cfg);
        cfg.enabled = false;
    }
    j->cache_eff = cfg;
    ds_cache_config_str(&cfg, j->cache_str, sizeof j->cache_str);

    ds_gen_params g = {0};
    g.width = r->width;
    g.height = r->height;
    g.steps = r->steps;
    g.guidance_scale = r->guidance_scale;
    g.true_cfg_scale = r->true_cfg_scale;
    g.scheduler = r->scheduler;
    g.seed = r->seed;
    g.class_labels = r->class_labels;
    g.n_labels = r->n_labels;
    g.num_images = r->num_images;
    ds_tensor t[4];
    view(&r->prompt_embeds, &t[0], &g.prompt_embeds);
    view(&r->pooled_prompt_embeds, &t[1], &g.pooled_prompt_embeds);
    view(&r->negative_prompt_embeds, &t[2], &g.negative_prompt_embeds);
    view(&r->negative_pooled_prompt_embeds, &t[3], &g.negative_pooled_prompt_embeds);

    step_ctx sc;
    memset(&sc, 0, sizeof sc);
    sc.e = e;
    sc.job = j;
    sc.t_last = ds_engine_now_ms();
    g.on_step = on_step;
    g.user = &sc;

    ds_gen_result res;
    memset(&res, 0, sizeof res);
    ds_cache_stats stats;
    memset(&stats, 0, sizeof stats);
    bool has_stats = false;
    ds_status s = ds_cache_create(&cfg, &sc.cache, &err);
    if (s == DS_OK) {
        g.runner = ds_cache_runner(sc.cache);
        s = ds_pipeline_generate(m->pipeline, &g, &res, &err);
        ds_err e2;
        ds_err_clear(&e2);
        if (ds_cache_get_stats(sc.cache, &stats, &e2) == DS_OK) has_stats = true;
        ds_cache_free(sc.cache);
    }

    /* log while the worker's reference keeps the job alive */
    if (s == DS_OK)
        DS_LOGI("engine", "job %s done: %d image(s) %dx%d, %d steps, denoise %.0f ms, decode %.0f ms, cache %s", j->id,
                res.n_images, res.width, res.height, res.steps, res.denoise_ms, res.decode_ms, j->cache_str);
    else
        DS_LOGI("engine", "job %s %s: %s", j->id, s == DS_ERR_CANCELLED ? "cancelled" : "failed", err.msg);
    pthread_mutex_lock(&e->mu);
    j->result = res;
    j->stats = stats;
    j->has_stats = has_stats;
    if (s == DS_OK) {
        j->state = DS_JOB_DONE;
    } else if (s == DS_ERR_CANCELLED || atomic_load(&j->cancel)) {
        j->state = DS_JOB_CANCELLED;
        j->err = err;
        if (s != DS_ERR_CANCELLED) DS_FAIL(&j->err, DS_ERR_CANCELLED, "cancelled");
    } else {
        j->state = DS_JOB_FAILED;
        j->err = err;
        if (s == DS_ERR_DEVICE && !e->device_failed) {
            e->device_failed = true;
            e->device_err = err;
        }
    }
    w->current = NULL;
    ds_engine_job_finished(e, j);
    int refs_left = --j->refs; /* the worker's reference */
    pthread_mutex_unlock(&e->mu);
    if (refs_left == 0) ds_job_destroy(j);
}

/* Mark every model of worker w failed with err (the device could not be set up). */
static void fail_models(ds_worker *w, const ds_err *err) {
    ds_engine *e = w->eng;
    for (int i = 0; i < e->n_models; i++)
        if (e->models[i].worker == w->index) set_model_state(e, &e->models[i], DS_MODEL_FAILED, err);
}

void *ds_worker_main(void *arg) {
    ds_worker *w = arg;
    ds_engine *e = w->eng;
    const ds_placement *pl = &e->opts.pipeline.placement;
#ifdef DS_HAVE_CUDA
    /* a GPU worker owns one context (stream + cuBLASLt) for its whole life: loads and jobs run on it */
    ds_cuda_ctx *ctx = NULL;
    if (pl->device.kind == DS_DEVICE_CUDA) {
        ds_err err;
        ds_err_clear(&err);
        ds_status s = ds_cuda_ctx_create(pl->device.index, 0, &ctx, &err);
        if (s == DS_OK) s = ds_cuda_ctx_bind(ctx, &err);
        if (s == DS_OK) {
            ds_cuda_ctx_set_graphs(ctx, !e->opts.cuda_graphs_off);
            ds_cuda_ctx_set_attention(ctx, e->opts.attention_exact ? DS_CUDA_ATTN_EXACT : DS_CUDA_ATTN_FAST);
        }
        if (s != DS_OK) {
            DS_LOGE("engine", "%s: %s", w->device, err.msg);
            fail_models(w, &err);
        } else {
            load_models(w);
        }
    } else {
        load_models(w);
    }
#else
    (void)pl;
    (void)fail_models;
    load_models(w);
#endif
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (w->queue.len == 0 && !e->stopping) pthread_cond_wait(&w->work, &e->mu);
        if (w->queue.len == 0 && e->stopping) break;
        ds_job *j = ds_queue_pop(&w->queue);
        j->state = DS_JOB_RUNNING;
        j->t_start = ds_engine_now_ms();
        j->version++;
        j->refs++; /* the worker's reference while it runs */
        w->current = j;
        ds_hist_observe(&e->m.queue_seconds, (j->t_start - j->t_submit) / 1e3);
        pthread_cond_broadcast(&j->cond);
        pthread_mutex_unlock(&e->mu);
        DS_LOGI("engine", "job %s running on %s", j->id, w->device);
        run_job(w, j);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    /* the pipelines are freed here, on the thread (and CUDA context) that made them */
    for (int i = 0; i < e->n_models; i++) {
        ds_engine_model *m = &e->models[i];
        if (m->worker != w->index) continue;
        pthread_mutex_lock(&e->mu);
        ds_pipeline *p = m->pipeline;
        m->pipeline = NULL;
        pthread_mutex_unlock(&e->mu);
        ds_pipeline_free(p);
    }
#ifdef DS_HAVE_CUDA
    ds_cuda_ctx_destroy(ctx);
#endif
    return NULL;
}
