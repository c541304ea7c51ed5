/* engine_impl.h - the engine's private state shared by engine.c (public API, job store, eviction) and
 * worker.c (the per-device worker threads). Not for use outside engine/. */
#ifndef DS_ENGINE_IMPL_H
#define DS_ENGINE_IMPL_H

#include <pthread.h>

#include "engine.h"
#include "queue.h"

#define DS_ENGINE_MAX_WORKERS 8

typedef struct ds_engine_model {
    char            name[DS_MODEL_NAME_LEN];
    char           *dir;               /* owned copy */
    bool            has_default_cache;
    ds_cache_config default_cache;
    ds_pipeline    *pipeline;          /* owned by the worker thread */
    ds_model_state  state;             /* guarded by the engine lock */
    ds_err          load_err;
    int             worker;
    int64_t         created;
} ds_engine_model;

typedef struct ds_worker {
    struct ds_engine *eng;
    int        index;
    char       device[16];
    pthread_t  thread;
    bool       started;
    ds_queue   queue;   /* guarded by the engine lock */
    ds_job    *current; /* the running job (engine lock) */
    pthread_cond_t work; /* signalled when a job is queued or on shutdown */
} ds_worker;

struct ds_engine {
    pthread_mutex_t mu;
    pthread_cond_t  state_cv; /* model state changes */
    ds_engine_opts  opts;     /* models pointer not kept */
    ds_engine_model models[DS_ENGINE_MAX_MODELS];
    int             n_models;
    ds_worker       workers[DS_ENGINE_MAX_WORKERS];
    int             n_workers;
    bool            accepting, stopping, cancel_on_stop, shut_down;
    bool            device_failed;
    ds_err          device_err;
    ds_job         *store_head, *store_tail; /* every job not yet evicted, in submit order */
    ds_engine_metrics m;
    uint64_t        id_counter;
};

/* Monotonic milliseconds. */
double ds_engine_now_ms(void);

/* Worker thread entry (worker.c): load and warm up the worker's models, then serve its queue. */
void *ds_worker_main(void *arg);

/* Record one observation in h (engine lock held). */
void ds_hist_observe(ds_hist *h, double v);

/* Account a job that just turned final (engine lock held): metrics, bytes, wake waiters. */
void ds_engine_job_finished(ds_engine *e, ds_job *j);

#endif /* DS_ENGINE_IMPL_H */
