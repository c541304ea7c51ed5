/* engine.h - the resident-model engine: models named at start load once and stay resident; one worker
 * thread per device owns that device's pipelines and runs jobs from its bounded FIFO queue; jobs move
 * queued -> running -> done | failed | cancelled (job.h); cancellation is checked between denoising steps;
 * finished jobs are kept for a TTL and within a memory bound, then evicted. Plain C in, plain C out: the
 * api/ layer turns JSON into ds_gen_request and results into JSON.
 *
 * Threads: ds_engine_create starts the workers, which load their models, run one warm-up step per model
 * and then serve jobs; every other function may be called from any thread (one engine lock). Today the only
 * device is the CPU ("cpu": one worker); the worker array leaves room for one worker per GPU or GPU group.
 *
 *     ds_engine_create(&opts, &eng, &err);  ds_engine_wait_ready(eng, -1, &err);
 *     ds_engine_submit(eng, &req, &job, &err);                 // req moved into the job
 *     ds_engine_job_wait(eng, job, 0, -1, &snap);              // ... until final
 *     if (snap.state == DS_JOB_DONE) use job->result, job->stats;
 *     ds_engine_job_release(eng, job);  ds_engine_shutdown(eng, false);  ds_engine_free(eng); */
#ifndef DS_ENGINE_H
#define DS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache_config.h"
#include "job.h"
#include "pipeline.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_ENGINE_MAX_MODELS 16

typedef struct ds_engine ds_engine; /* opaque */

/* One model to load: a name clients use and a diffusers directory (paths come only from the command line). */
typedef struct ds_engine_model_spec {
    const char *name;              /* 1..63 characters [A-Za-z0-9._-] */
    const char *dir;
    bool        has_default_cache; /* requests without cache_config use default_cache */
    ds_cache_config default_cache;
} ds_engine_model_spec;

typedef struct ds_engine_opts {
    const ds_engine_model_spec *models; /* [n_models], copied */
    int         n_models;               /* 1..DS_ENGINE_MAX_MODELS */
    const char *device;                 /* "auto" (a GPU when one is usable, else the CPU), "cpu", "cuda",
                                           "cuda:N" [auto]; see device_select.h */
    const char *dtype;                  /* CUDA compute dtype "bf16" (default), "f16", "f32"; CPU: f32 */
    bool        cuda_graphs_off;        /* CUDA: run every launch from the host (no graph replay) [false] */
    bool        attention_exact;        /* CUDA: the fp32-inside attention kernel (DS_CUDA_ATTN_EXACT) [false] */
    int         queue_size;             /* jobs waiting per worker [16] */
    double      job_ttl_s;              /* finished jobs are kept this long [600] */
    size_t      max_retained_bytes;     /* memory bound over finished jobs' results [256 MiB] */
    int         max_retained_jobs;      /* count bound over finished jobs [1024] */
    ds_pipeline_opts pipeline;          /* limits planned at load (max images, sizes); random_weights for tests */
    bool        skip_warmup;            /* ready right after loading (tests) */
} ds_engine_opts;

typedef enum ds_engine_health {
    DS_HEALTH_LOADING = 0, /* a model is loading or running its warm-up step */
    DS_HEALTH_READY,       /* every model loaded and warmed up */
    DS_HEALTH_FAILED,      /* a model failed to load, or a sticky device error */
} ds_engine_health;

typedef enum ds_model_state { DS_MODEL_LOADING = 0, DS_MODEL_WARMING, DS_MODEL_READY, DS_MODEL_FAILED } ds_model_state;

typedef struct ds_engine_model_info {
    char             name[DS_MODEL_NAME_LEN];
    char             pipeline_class[32];  /* "DiTPipeline", "FluxPipeline" ("" while loading) */
    ds_pipeline_kind kind;
    ds_model_state   state;
    int              width, height;       /* default image size */
    int              default_steps;       /* DiT 50, FLUX 28 */
    char             default_cache[256];  /* config string of --default-cache, "none" */
    char             device[16];
    int64_t          created;             /* unix seconds when it became ready */
} ds_engine_model_info;

/* A consistent copy of a job's mutable fields. */
typedef struct ds_job_snapshot {
    ds_job_state state;
    int      step, n_steps;
    uint64_t version;
    int      queue_position; /* 0-based while queued, -1 otherwise */
    ds_err   err;            /* failed / cancelled: why */
    double   queue_ms;       /* submit -> start (or now, while queued) */
    double   run_ms;         /* start -> end (or now, while running) */
    double   total_ms;       /* submit -> end (or now) */
    int64_t  created;        /* unix seconds at submit */
} ds_job_snapshot;

/* Fixed-bucket histogram (bounds in `le`, +Inf implied): counts[i] = observations <= le[i] and > le[i-1]. */
#define DS_HIST_BUCKETS 12
typedef struct ds_hist {
    double   le[DS_HIST_BUCKETS];
    uint64_t counts[DS_HIST_BUCKETS + 1];
    double   sum;
    uint64_t count;
} ds_hist;

typedef struct ds_engine_metrics {
    int      queue_depth, running;
    uint64_t submitted, rejected, done, failed, cancelled;
    uint64_t steps, cached_steps;  /* denoising steps run; those where the cache skipped the middle blocks */
    ds_hist  job_seconds;          /* submit -> final, finished jobs */
    ds_hist  queue_seconds;        /* submit -> start */
    ds_hist  step_seconds;         /* wall time per denoising step */
    ds_hist  residual_diff;        /* every residual diff the cache measured */
    int      retained_jobs;
    size_t   retained_bytes;
} ds_engine_metrics;

/* Validate opts, create the engine and start its workers (they load and warm up the models in the
 * background; see ds_engine_health). *out is owned by the caller (ds_engine_shutdown + ds_engine_free).
 * Errors: DS_ERR_INVALID_ARG (no models, a bad or duplicate name, a malformed device; named),
 * DS_ERR_DEVICE (a CUDA device was asked for and is not usable), DS_ERR_UNSUPPORTED (a non-f32 dtype on
 * the CPU), DS_ERR_OOM, DS_ERR_INTERNAL (thread creation). */
ds_status ds_engine_create(const ds_engine_opts *opts, ds_engine **out, ds_err *err);

/* Overall readiness; msg (may be NULL) receives a one-line reason when not ready. */
ds_engine_health ds_engine_get_health(ds_engine *e, char *msg, size_t cap);

/* Block until every model is ready (DS_OK), one failed to load (its error), or timeout_s passed
 * (DS_ERR_BUSY; timeout_s < 0 waits forever). */
ds_status ds_engine_wait_ready(ds_engine *e, double timeout_s, ds_err *err);

int ds_engine_model_count(const ds_engine *e);

/* Index of the model called name, -1 when there is none. */
int ds_engine_model_find(const ds_engine *e, const char *name);

/* Describe model i (0 <= i < count). */
void ds_engine_model_get(ds_engine *e, int i, ds_engine_model_info *out);

/* DiT: the class id of an ImageNet label name for model `model` (ds_pipeline_label_id). Errors:
 * DS_ERR_NOT_FOUND (unknown model or label), DS_ERR_BUSY (model not loaded yet), DS_ERR_UNSUPPORTED. */
ds_status ds_engine_label_id(ds_engine *e, const char *model, const char *label, int32_t *id, ds_err *err);

/* Queue a generation. Always takes ownership of *req (re-initialised on return). On success *out is a new
 * job holding one reference for the caller (ds_engine_job_release). Errors: DS_ERR_NOT_FOUND (unknown model,
 * named), DS_ERR_BUSY (queue full, model not ready, or shutting down: the message says which),
 * DS_ERR_OOM. */
ds_status ds_engine_submit(ds_engine *e, ds_gen_request *req, ds_job **out, ds_err *err);

/* The job with this id with one more reference, or NULL (unknown or evicted). Runs eviction first. */
ds_job *ds_engine_find(ds_engine *e, const char *id);

/* Take one more reference. */
void ds_engine_job_retain(ds_engine *e, ds_job *j);

/* Drop a reference (NULL allowed); the last one frees the job. */
void ds_engine_job_release(ds_engine *e, ds_job *j);

/* Cancel: a queued job leaves the queue and is cancelled at once; a running job is flagged and stops at
 * its next step boundary; a final job is left as it is. Returns the state after the call. */
ds_job_state ds_engine_cancel(ds_engine *e, ds_job *j);

/* Copy the job's mutable fields. */
void ds_engine_job_snapshot(ds_engine *e, ds_job *j, ds_job_snapshot *out);

/* Wait until the job's version differs from seen_version or it is final, or timeout_ms passes
 * (timeout_ms < 0: no limit); then snapshot it into *out. Returns true when something changed. */
bool ds_engine_job_wait(ds_engine *e, ds_job *j, uint64_t seen_version, int timeout_ms, ds_job_snapshot *out);

/* Copy step events [from, from + cap) into out; returns how many were copied. */
int ds_engine_job_events(ds_engine *e, ds_job *j, int from, ds_job_step_event *out, int cap);

/* Counters and histograms for /metrics. */
void ds_engine_metrics_get(ds_engine *e, ds_engine_metrics *out);

/* Evict finished jobs past the TTL or over the memory/count bounds (oldest first). Called by submit and
 * find too. */
void ds_engine_evict(ds_engine *e);

/* Stop accepting jobs; then either let queued and running jobs finish (cancel = false) or cancel them
 * (cancel = true), and join the workers. Idempotent. */
void ds_engine_shutdown(ds_engine *e, bool cancel);

/* Free the engine (calls ds_engine_shutdown(e, true) first if needed). Jobs still referenced by callers
 * must have been released before. NULL allowed. */
void ds_engine_free(ds_engine *e);

#ifdef __cplusplus
}
#endif

#endif /* DS_ENGINE_H */
