/* engine.c - the engine's public side (see engine.h): creation and validation of the model list, health,
 * the job store (ids, references, TTL and memory-bound eviction), submit / find / cancel / wait, metrics
 * and shutdown. The worker threads live in worker.c. */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "device_select.h"
#include "engine_impl.h"
#include "log.h"

double ds_engine_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void ds_hist_observe(ds_hist *h, double v) {
    int i = 0;
    while (i < DS_HIST_BUCKETS && v > h->le[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

static void hist_init(ds_hist *h, const double *le) {
    memset(h, 0, sizeof *h);
    memcpy(h->le, le, sizeof h->le);
}

static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n >= DS_MODEL_NAME_LEN) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

ds_status ds_engine_create(const ds_engine_opts *opts, ds_engine **out, ds_err *err) {
    *out = NULL;
    if (!opts || opts->n_models < 1 || !opts->models)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "no models: name at least one with --model NAME=DIR");
    if (opts->n_models > DS_ENGINE_MAX_MODELS)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%d models: at most %d", opts->n_models, DS_ENGINE_MAX_MODELS);
    ds_placement pl;
    char note[512] = "";
    DS_TRY(ds_device_select(opts->device, opts->dtype, &pl, note, sizeof note, err));
    if (note[0]) DS_LOGI("engine", "%s", note);
    char device[16];
    if (pl.device.kind == DS_DEVICE_CUDA) snprintf(device, sizeof device, "cuda:%d", pl.device.index);
    else snprintf(device, sizeof device, "cpu");
    for (int i = 0; i < opts->n_models; i++) {
        const ds_engine_model_spec *m = &opts->models[i];
        if (!m->name || !name_ok(m->name))
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "model name '%s': use 1-63 characters of A-Z a-z 0-9 . _ -",
                           m->name ? m->name : "(null)");
        if (!m->dir || !m->dir[0]) return DS_FAIL(err, DS_ERR_INVALID_ARG, "model %s: no directory", m->name);
        for (int k = 0; k < i; k++)
            if (!strcmp(opts->models[k].name, m->name))
                return DS_FAIL(err, DS_ERR_INVALID_ARG, "model name '%s' given twice", m->name);
        if (m->has_default_cache) DS_TRY(ds_cache_config_validate(&m->default_cache, err));
    }
    ds_engine *e = calloc(1, sizeof *e);
    if (!e) return DS_FAIL(err, DS_ERR_OOM, "out of memory creating the engine");
    e->opts = *opts;
    e->opts.models = NULL;
    e->opts.device = NULL;
    e->opts.dtype = NULL;
    e->opts.pipeline.placement = pl;
    if (e->opts.queue_size <= 0) e->opts.queue_size = 16;
    if (!(e->opts.job_ttl_s > 0)) e->opts.job_ttl_s = 600;
    if (e->opts.max_retained_bytes == 0) e->opts.max_retained_bytes = (size_t)256 << 20;
    if (e->opts.max_retained_jobs <= 0) e->opts.max_retained_jobs = 1024;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->state_cv, NULL);
    e->accepting = true;
    static const double job_le[DS_HIST_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
    static const double step_le[DS_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1,   0.25,   0.5,   1,    2.5,   5};
    static const double diff_le[DS_HIST_BUCKETS] = {0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5, 1};
    hist_init(&e->m.job_seconds, job_le);
    hist_init(&e->m.queue_seconds, job_le);
    hist_init(&e->m.step_seconds, step_le);
    hist_init(&e->m.residual_diff, diff_le);

    /* one worker per device: the CPU, or one GPU (several GPUs, one worker each, come with multi-GPU) */
    e->n_workers = 1;
    ds_worker *w = &e->workers[0];
    w->eng = e;
    w->index = 0;
    snprintf(w->device, sizeof w->device, "%s", device);
    pthread_cond_init(&w->work, NULL);
    ds_status s = ds_queue_init(&w->queue, e->opts.queue_size, err);
    if (s != DS_OK) goto fail;
    for (int i = 0; i < opts->n_models; i++) {
        ds_engine_model *m = &e->models[i];
        snprintf(m->name, sizeof m->name, "%s", opts->models[i].name);
        m->dir = strdup(opts->models[i].dir);
        if (!m->dir) {
            s = DS_FAIL(err, DS_ERR_OOM, "out of memory");
            goto fail;
        }
        m->has_default_cache = opts->models[i].has_default_cache;
        m->default_cache = opts->models[i].default_cache;
        m->state = DS_MODEL_LOADING;
        m->worker = 0;
        e->n_models++;
    }
    for (int i = 0; i < e->n_workers; i++) {
        if (pthread_create(&e->workers[i].thread, NULL, ds_worker_main, &e->workers[i]) != 0) {
            s = DS_FAIL(err, DS_ERR_INTERNAL, "cannot start the worker thread for %s", e->workers[i].device);
            goto fail;
        }
        e->workers[i].started = true;
    }
    *out = e;
    return DS_OK;
fail:
    ds_engine_free(e);
    return s;
}

ds_engine_health ds_engine_get_health(ds_engine *e, char *msg, size_t cap) {
    pthread_mutex_lock(&e->mu);
    ds_engine_health h = DS_HEALTH_READY;
    char buf[DS_ERR_MSG_LEN + 64] = "ready";
    if (e->device_failed) {
        h = DS_HEALTH_FAILED;
        snprintf(buf, sizeof buf, "device error: %.400s", e->device_err.msg);
    }
    for (int i = 0; i < e->n_models && h != DS_HEALTH_FAILED; i++) {
        const ds_engine_model *m = &e->models[i];
        if (m->state == DS_MODEL_FAILED) {
            h = DS_HEALTH_FAILED;
            snprintf(buf, sizeof buf, "model %.63s failed to load: %.400s", m->name, m->load_err.msg);
        } else if (m->state != DS_MODEL_READY && h == DS_HEALTH_READY) {
            h = DS_HEALTH_LOADING;
            snprintf(buf, sizeof buf, "model %.63s is %s", m->name, m->state == DS_MODEL_LOADING ? "loading" : "warming up");
        }
    }
    if (h == DS_HEALTH_READY && !e->accepting) {
        h = DS_HEALTH_FAILED;
        snprintf(buf, sizeof buf, "shutting down");
    }
    pthread_mutex_unlock(&e->mu);
    if (msg && cap) snprintf(msg, cap, "%s", buf);
    return h;
}

ds_status ds_engine_wait_ready(ds_engine *e, double timeout_s, ds_err *err) {
    double deadline = ds_engine_now_ms() + timeout_s * 1e3;
    pthread_mutex_lock(&e->mu);
    ds_status s = DS_OK;
    for (;;) {
        bool all = true;
        for (int i = 0; i < e->n_models; i++) {
            if (e->models[i].state == DS_MODEL_FAILED) {
                if (err) *err = e->models[i].load_err;
                ds_err_prefix(err, "model %s (%s)", e->models[i].name, e->models[i].dir);
                s = e->models[i].load_err.code ? e->models[i].load_err.code : DS_ERR_INTERNAL;
                goto out;
            }
            if (e->models[i].state != DS_MODEL_READY) all = false;
        }
        if (all) goto out;
        if (timeout_s >= 0 && ds_engine_now_ms() >= deadline) {
            s = DS_FAIL(err, DS_ERR_BUSY, "models still loading after %.0f s", timeout_s);
            goto out;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->state_cv, &e->mu, &ts);
    }
out:
    pthread_mutex_unlock(&e->mu);
    return s;
}

int ds_engine_model_count(const ds_engine *e) { return e->n_models; }

int ds_engine_model_find(const ds_engine *e, const char *name) {
    if (!name) return -1;
    for (int i = 0; i < e->n_models; i++)
        if (!strcmp(e->models[i].name, name)) return i;
    return -1;
}

static int default_steps(ds_pipeline_kind k) { return k == DS_PIPELINE_DIT ? 50 : 28; }

void ds_engine_model_get(ds_engine *e, int i, ds_engine_model_info *out) {
    memset(out, 0, sizeof *out);
    if (i < 0 || i >= e->n_models) return;
    pthread_mutex_lock(&e->mu);
    const ds_engine_model *m = &e->models[i];
    snprintf(out->name, sizeof out->name, "%s", m->name);
    out->state = m->state;
    out->created = m->created;
    snprintf(out->device, sizeof out->device, "%s", e->workers[m->worker].device);
    if (m->has_default_cache) ds_cache_config_str(&m->default_cache, out->default_cache, sizeof out->default_cache);
    else snprintf(out->default_cache, sizeof out->default_cache, "none");
    if (m->pipeline && (m->state == DS_MODEL_READY || m->state == DS_MODEL_WARMING)) {
        snprintf(out->pipeline_class, sizeof out->pipeline_class, "%s", ds_pipeline_class(m->pipeline));
        out->kind = ds_pipeline_get_kind(m->pipeline);
        ds_pipeline_default_size(m->pipeline, &out->width, &out->height);
        out->default_steps = default_steps(out->kind);
    }
    pthread_mutex_unlock(&e->mu);
}

/* The pipeline of a ready model, or NULL (engine lock held). */
static ds_pipeline *ready_pipeline(ds_engine *e, int mi) {
    return mi >= 0 && e->models[mi].state == DS_MODEL_READY ? e->models[mi].pipeline : NULL;
}

ds_status ds_engine_label_id(ds_engine *e, const char *model, const char *label, int32_t *id, ds_err *err) {
    int mi = ds_engine_model_find(e, model);
    if (mi < 0) return DS_FAIL(err, DS_ERR_NOT_FOUND, "unknown model '%s'", model ? model : "");
    pthread_mutex_lock(&e->mu);
    ds_pipeline *p = ready_pipeline(e, mi);
    pthread_mutex_unlock(&e->mu);
    if (!p) return DS_FAIL(err, DS_ERR_BUSY, "model %s is not ready yet", model);
    /* label lookup only reads the pipeline's immutable id2label table: safe beside the worker */
    return ds_pipeline_label_id(p, label, id, err);
}

/* ---- job store ------------------------------------------------------------------------------------------ */

static void store_unlink(ds_engine *e, ds_job *j) {
    if (j->store_prev) j->store_prev->store_next = j->store_next;
    else e->store_head = j->store_next;
    if (j->store_next) j->store_next->store_prev = j->store_prev;
    else e->store_tail = j->store_prev;
    j->store_next = j->store_prev = NULL;
}

/* Drop a reference with the engine lock held; frees the job when it was the last. */
static void release_locked(ds_job *j) {
    if (--j->refs == 0) ds_job_destroy(j);
}

static void evict_locked(ds_engine *e) {
    double now = ds_engine_now_ms();
    /* TTL first, then the oldest finished jobs while over a bound */
    for (ds_job *j = e->store_head, *next; j; j = next) {
        next = j->store_next;
        if (!ds_job_state_final(j->state)) continue;
        bool expired = now - j->t_end > e->opts.job_ttl_s * 1e3;
        bool over = e->m.retained_bytes > e->opts.max_retained_bytes || e->m.retained_jobs > e->opts.max_retained_jobs;
        if (!expired && !over) continue;
        DS_LOGD("engine", "job %s evicted (%s)", j->id, expired ? "ttl" : "memory bound");
        e->m.retained_bytes -= j->bytes;
        e->m.retained_jobs--;
        store_unlink(e, j);
        release_locked(j);
    }
}

void ds_engine_evict(ds_engine *e) {
    pthread_mutex_lock(&e->mu);
    evict_locked(e);
    pthread_mutex_unlock(&e->mu);
}

static ds_job *find_locked(ds_engine *e, const char *id) {
    for (ds_job *j = e->store_head; j; j = j->store_next)
        if (!strcmp(j->id, id)) return j;
    return NULL;
}

void ds_engine_job_finished(ds_engine *e, ds_job *j) {
    j->t_end = ds_engine_now_ms();
    j->version++;
    size_t bytes = sizeof *j + ds_gen_request_bytes(&j->req) + (size_t)j->cap_events * sizeof(ds_job_step_event);
    if (j->result.rgb) bytes += (size_t)j->result.n_images * (size_t)j->result.width * (size_t)j->result.height * 3;
    if (j->result.latents) {
        size_t n = 1;
        for (int i = 0; i < 4; i++) n *= (size_t)(j->result.latent_shape[i] > 0 ? j->result.latent_shape[i] : 1);
        bytes += n * sizeof(float);
    }
    if (j->has_stats) bytes += (size_t)j->stats.steps * sizeof(double) * 4;
    j->bytes = bytes;
    e->m.retained_bytes += bytes;
    e->m.retained_jobs++;
    switch (j->state) {
    case DS_JOB_DONE: e->m.done++; break;
    case DS_JOB_FAILED: e->m.failed++; break;
    default: e->m.cancelled++; break;
    }
    ds_hist_observe(&e->m.job_seconds, (j->t_end - j->t_submit) / 1e3);
    pthread_cond_broadcast(&j->cond);
}

static void new_id(ds_engine *e, char *buf, size_t cap) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (uint64_t)ds_engine_now_ms() * 2654435761u;
    r ^= ++e->id_counter * 0x9E3779B97F4A7C15ull;
    snprintf(buf, cap, "job-%016llx", (unsigned long long)r);
}

ds_status ds_engine_submit(ds_engine *e, ds_gen_request *req, ds_job **out, ds_err *err) {
    *out = NULL;
    ds_status s = DS_OK;
    int mi = ds_engine_model_find(e, req->model);
    if (mi < 0) {
        s = DS_FAIL(err, DS_ERR_NOT_FOUND, "unknown model '%s'", req->model);
        ds_gen_request_free(req);
        return s;
    }
    pthread_mutex_lock(&e->mu);
    evict_locked(e);
    ds_worker *w = &e->workers[e->models[mi].worker];
    ds_job *j = NULL;
    if (!e->accepting) s = DS_FAIL(err, DS_ERR_BUSY, "the server is shutting down");
    else if (!ready_pipeline(e, mi))
        s = DS_FAIL(err, DS_ERR_BUSY, "model %s is %s", req->model,
                    e->models[mi].state == DS_MODEL_FAILED ? "unavailable (it failed to load)" : "still loading");
    else if (w->queue.len >= w->queue.cap)
        s = DS_FAIL(err, DS_ERR_BUSY, "the queue is full (%d jobs waiting); retry later", w->queue.cap);
    if (s != DS_OK) {
        e->m.rejected++;
        pthread_mutex_unlock(&e->mu);
        ds_gen_request_free(req);
        return s;
    }
    char id[DS_JOB_ID_LEN];
    do new_id(e, id, sizeof id);
    while (find_locked(e, id));
    ds_pipeline_kind kind = ds_pipeline_get_kind(e->models[mi].pipeline);
    if ((s = ds_job_create(id, req, &j, err)) != DS_OK) {
        pthread_mutex_unlock(&e->mu);
        ds_gen_request_free(req);
        return s;
    }
    j->worker = e->models[mi].worker;
    j->model = mi;
    j->n_steps = j->req.steps > 0 ? j->req.steps : default_steps(kind);
    j->t_submit = ds_engine_now_ms();
    ds_queue_push(&w->queue, j, NULL); /* capacity checked above */
    j->refs = 2;                        /* the store's and the caller's */
    if (e->store_tail) {
        e->store_tail->store_next = j;
        j->store_prev = e->store_tail;
    } else {
        e->store_head = j;
    }
    e->store_tail = j;
    e->m.submitted++;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&e->mu);
    DS_LOGI("engine", "job %s queued: model %s, %d steps", j->id, j->req.model, j->n_steps);
    *out = j;
    return DS_OK;
}

ds_job *ds_engine_find(ds_engine *e, const char *id) {
    if (!id) return NULL;
    pthread_mutex_lock(&e->mu);
    evict_locked(e);
    ds_job *j = find_locked(e, id);
    if (j) j->refs++;
    pthread_mutex_unlock(&e->mu);
    return j;
}

void ds_engine_job_retain(ds_engine *e, ds_job *j) {
    pthread_mutex_lock(&e->mu);
    j->refs++;
    pthread_mutex_unlock(&e->mu);
}

void ds_engine_job_release(ds_engine *e, ds_job *j) {
    if (!j) return;
    pthread_mutex_lock(&e->mu);
    release_locked(j);
    pthread_mutex_unlock(&e->mu);
}

/* Cancel a queued job at once (engine lock held). */
static void cancel_queued_locked(ds_engine *e, ds_job *j, const char *why) {
    ds_queue_remove(&e->workers[j->worker].queue, j);
    j->state = DS_JOB_CANCELLED;
    DS_FAIL(&j->err, DS_ERR_CANCELLED, "%s", why);
    ds_engine_job_finished(e, j);
    DS_LOGI("engine", "job %s cancelled while queued", j->id);
}

ds_job_state ds_engine_cancel(ds_engine *e, ds_job *j) {
    pthread_mutex_lock(&e->mu);
    atomic_store(&j->cancel, true);
    if (j->state == DS_JOB_QUEUED) cancel_queued_locked(e, j, "cancelled while queued");
    ds_job_state st = j->state;
    pthread_mutex_unlock(&e->mu);
    return st;
}

static void snapshot_locked(ds_engine *e, ds_job *j, ds_job_snapshot *o) {
    double now = ds_engine_now_ms();
    memset(o, 0, sizeof *o);
    o->state = j->state;
    o->step = j->step;
    o->n_steps = j->n_steps;
    o->version = j->version;
    o->queue_position = j->state == DS_JOB_QUEUED ? ds_queue_position(&e->workers[j->worker].queue, j) : -1;
    o->err = j->err;
    double start = j->t_start > 0 ? j->t_start : (j->t_end > 0 ? j->t_end : now);
    o->queue_ms = start - j->t_submit;
    o->run_ms = j->t_start > 0 ? (j->t_end > 0 ? j->t_end : now) - j->t_start : 0;
    o->total_ms = (j->t_end > 0 ? j->t_end : now) - j->t_submit;
    o->created = (int64_t)time(NULL) - (int64_t)((now - j->t_submit) / 1e3);
}

void ds_engine_job_snapshot(ds_engine *e, ds_job *j, ds_job_snapshot *out) {
    pthread_mutex_lock(&e->mu);
    snapshot_locked(e, j, out);
    pthread_mutex_unlock(&e->mu);
}

bool ds_engine_job_wait(ds_engine *e, ds_job *j, uint64_t seen_version, int timeout_ms, ds_job_snapshot *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (timeout_ms >= 0) {
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&e->mu);
    bool changed = true;
    while (j->version == seen_version && !ds_job_state_final(j->state)) {
        int rc = timeout_ms >= 0 ? pthread_cond_timedwait(&j->cond, &e->mu, &ts) : pthread_cond_wait(&j->cond, &e->mu);
        if (rc != 0 && j->version == seen_version && !ds_job_state_final(j->state)) {
            changed = false;
            break;
        }
    }
    if (out) snapshot_locked(e, j, out);
    pthread_mutex_unlock(&e->mu);
    return changed;
}

int ds_engine_job_events(ds_engine *e, ds_job *j, int from, ds_job_step_event *out, int cap) {
    pthread_mutex_lock(&e->mu);
    int n = 0;
    for (int i = from; i >= 0 && i < j->n_events && n < cap; i++) out[n++] = j->events[i];
    pthread_mutex_unlock(&e->mu);
    return n;
}

void ds_engine_metrics_get(ds_engine *e, ds_engine_metrics *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->m;
    out->queue_depth = 0;
    out->running = 0;
    for (int i = 0; i < e->n_workers; i++) {
        out->queue_depth += e->workers[i].queue.len;
        out->running += e->workers[i].current != NULL;
    }
    pthread_mutex_unlock(&e->mu);
}

void ds_engine_shutdown(ds_engine *e, bool cancel) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    if (e->shut_down) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    e->accepting = false;
    e->stopping = true;
    e->cancel_on_stop = cancel;
    if (cancel) {
        for (int i = 0; i < e->n_workers; i++) {
            ds_worker *w = &e->workers[i];
            while (w->queue.len > 0) cancel_queued_locked(e, w->queue.items[w->queue.head], "cancelled by shutdown");
            if (w->current) atomic_store(&w->current->cancel, true);
        }
    }
    for (int i = 0; i < e->n_workers; i++) pthread_cond_broadcast(&e->workers[i].work);
    pthread_mutex_unlock(&e->mu);
    for (int i = 0; i < e->n_workers; i++)
        if (e->workers[i].started) pthread_join(e->workers[i].thread, NULL);
    pthread_mutex_lock(&e->mu);
    e->shut_down = true;
    pthread_mutex_unlock(&e->mu);
}

void ds_engine_free(ds_engine *e) {
    if (!e) return;
    ds_engine_shutdown(e, true);
    for (ds_job *j = e->store_head, *next; j; j = next) {
        next = j->store_next;
        store_unlink(e, j);
        release_locked(j);
    }
    for (int i = 0; i < e->n_models; i++) {
        ds_pipeline_free(e->models[i].pipeline);
        free(e->models[i].dir);
    }
    for (int i = 0; i < e->n_workers; i++) {
        ds_queue_free(&e->workers[i].queue);
        pthread_cond_destroy(&e->workers[i].work);
    }
    pthread_cond_destroy(&e->state_cv);
    pthread_mutex_destroy(&e->mu);
    free(e);
}
