/* job.h - one generation request as the engine sees it (plain C: no JSON ever reaches this layer) and the
 * job that carries it through the state machine
 *
 *     queued -> running -> done | failed | cancelled        (queued -> cancelled when cancelled in the queue)
 *
 * Ownership and locking: a job is reference counted. The engine's job store holds one reference until the
 * job is evicted (TTL or memory bound); every caller that got a job from ds_engine_submit / ds_engine_find
 * holds one more and drops it with ds_engine_job_release. The mutable fields (state, step, events, error,
 * timings) are guarded by the engine's lock: read them through ds_engine_job_snapshot / ds_engine_job_events.
 * `result` and `stats` are written by the worker before the job turns final and are immutable afterwards:
 * a holder of a reference may read them without the lock once a snapshot says DS_JOB_DONE. */
#ifndef DS_JOB_H
#define DS_JOB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache_config.h"
#include "cache_stats.h"
#include "pipeline.h"
#include "scheduler.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_JOB_ID_LEN 32     /* "job-" + 16 hex digits + NUL fits */
#define DS_MODEL_NAME_LEN 64 /* model names: 1..63 characters [A-Za-z0-9._-] */

typedef enum ds_job_state {
    DS_JOB_QUEUED = 0,
    DS_JOB_RUNNING,
    DS_JOB_DONE,
    DS_JOB_FAILED,
    DS_JOB_CANCELLED,
} ds_job_state;

/* An owned f32 tensor of a request (FLUX embeddings). data == NULL: absent. */
typedef struct ds_req_tensor {
    float  *data;
    int     ndim;
    int64_t shape[4];
} ds_req_tensor;

/* One generation request, validated for types and limits by api/request.c. Owns its arrays. */
typedef struct ds_gen_request {
    char     model[DS_MODEL_NAME_LEN];
    int32_t *class_labels; /* [n_labels] ids 0..999 (DiT), owned */
    int      n_labels;
    ds_req_tensor prompt_embeds, pooled_prompt_embeds;                   /* FLUX */
    ds_req_tensor negative_prompt_embeds, negative_pooled_prompt_embeds; /* FLUX true CFG */
    int      width, height;  /* 0 = model default */
    int      steps;          /* 0 = model default (DiT 50, FLUX 28) */
    int      num_images;     /* per label / prompt; 0 = 1 */
    float    guidance_scale; /* NAN = model default */
    float    true_cfg_scale; /* NAN = 1 */
    ds_sched_kind scheduler; /* DS_SCHED_AUTO = the checkpoint's */
    uint64_t seed;
    bool     has_cache;      /* false: the model's default cache (--default-cache), else none */
    ds_cache_config cache;
} ds_gen_request;

/* What one denoising step reported (for progress and server-sent events). Per block list l (cache
 * context) and CFG branch b: cached[l][b] = the middle blocks were skipped; diff[l][b] = the residual diff
 * the cache measured this step, NAN when none was measured. */
typedef struct ds_job_step_event {
    int    step; /* 1-based */
    int    n_steps;
    double ms;   /* wall time of this step */
    int    n_lists;
    int    n_branches[DS_CACHE_MAX_LISTS];
    bool   cached[DS_CACHE_MAX_LISTS][2];
    double diff[DS_CACHE_MAX_LISTS][2];
} ds_job_step_event;

typedef struct ds_job {
    char     id[DS_JOB_ID_LEN];
    ds_gen_request req; /* owned; immutable after submit */
    /* ---- guarded by the engine lock ---- */
    ds_job_state state;
    int      step, n_steps;   /* progress: step k of n */
    uint64_t version;         /* bumped on every change (waiters compare) */
    ds_err   err;             /* why it failed / was cancelled */
    double   t_submit, t_start, t_end; /* monotonic milliseconds (0 = not yet) */
    int      refs;
    ds_job_step_event *events; /* [n_events] one per finished step, owned */
    int      n_events, cap_events;
    pthread_cond_t cond;      /* signalled (with the engine lock) on every change */
    atomic_bool cancel;       /* set by ds_engine_cancel; the worker checks it between steps */
    /* ---- written by the worker before the final state, immutable afterwards ---- */
    ds_gen_result result;
    ds_cache_stats stats;
    bool     has_stats;
    ds_cache_config cache_eff; /* the cache config the job ran with */
    char     cache_str[256];   /* ds_cache_config_str of cache_eff */
    /* ---- engine bookkeeping ---- */
    size_t   bytes;            /* memory charged to the job store (result + events) */
    int      worker;           /* index of the worker that holds the model */
    int      model;            /* index of the model within that worker */
    struct ds_job *store_next, *store_prev;
} ds_job;

/* Stable lower-case name of a state: "queued", "running", "done", "failed", "cancelled". */
const char *ds_job_state_name(ds_job_state s);

/* True for done, failed and cancelled. */
bool ds_job_state_final(ds_job_state s);

/* Initialise a request to "everything default" (NAN guidances, no labels, no tensors). */
void ds_gen_request_init(ds_gen_request *r);

/* Release what a request owns and re-initialise it (NULL allowed). */
void ds_gen_request_free(ds_gen_request *r);

/* Bytes a request owns (labels and tensors), for the memory bound. */
size_t ds_gen_request_bytes(const ds_gen_request *r);

/* A new job (refs = 1, state queued) that takes ownership of *req (which is re-initialised). id is
 * copied. Errors: DS_ERR_OOM. */
ds_status ds_job_create(const char *id, ds_gen_request *req, ds_job **out, ds_err *err);

/* Free a job and everything it owns (regardless of refs; the engine calls it when refs drop to 0). */
void ds_job_destroy(ds_job *j);

#ifdef __cplusplus
}
#endif

#endif /* DS_JOB_H */
