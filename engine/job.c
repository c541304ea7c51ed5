/* job.c - requests and jobs: names of states, ownership of request arrays, creation and destruction
 * (see job.h). */
#include "job.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ds_job_state_name(ds_job_state s) {
    switch (s) {
    case DS_JOB_QUEUED: return "queued";
    case DS_JOB_RUNNING: return "running";
    case DS_JOB_DONE: return "done";
    case DS_JOB_FAILED: return "failed";
    case DS_JOB_CANCELLED: return "cancelled";
    }
    return "unknown";
}

bool ds_job_state_final(ds_job_state s) { return s == DS_JOB_DONE || s == DS_JOB_FAILED || s == DS_JOB_CANCELLED; }

void ds_gen_request_init(ds_gen_request *r) {
    memset(r, 0, sizeof *r);
    r->guidance_scale = NAN;
    r->true_cfg_scale = NAN;
    r->scheduler = DS_SCHED_AUTO;
    ds_cache_config_default(&r->cache);
    r->cache.enabled = false;
}

static void tensor_free(ds_req_tensor *t) {
    free(t->data);
    memset(t, 0, sizeof *t);
}

static size_t tensor_bytes(const ds_req_tensor *t) {
    if (!t->data) return 0;
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n * sizeof(float);
}

void ds_gen_request_free(ds_gen_request *r) {
    if (!r) return;
    free(r->class_labels);
    tensor_free(&r->prompt_embeds);
    tensor_free(&r->pooled_prompt_embeds);
    tensor_free(&r->negative_prompt_embeds);
    tensor_free(&r->negative_pooled_prompt_embeds);
    ds_gen_request_init(r);
}

size_t ds_gen_request_bytes(const ds_gen_request *r) {
    return (size_t)r->n_labels * sizeof(int32_t) + tensor_bytes(&r->prompt_embeds) +
           tensor_bytes(&r->pooled_prompt_embeds) + tensor_bytes(&r->negative_prompt_embeds) +
           tensor_bytes(&r->negative_pooled_prompt_embeds);
}

ds_status ds_job_create(const char *id, ds_gen_request *req, ds_job **out, ds_err *err) {
    *out = NULL;
    ds_job *j = calloc(1, sizeof *j);
    if (!j) return DS_FAIL(err, DS_ERR_OOM, "out of memory creating a job");
    if (pthread_cond_init(&j->cond, NULL) != 0) {
        free(j);
        return DS_FAIL(err, DS_ERR_OOM, "cannot create a job's condition variable");
    }
    snprintf(j->id, sizeof j->id, "%s", id);
    j->req = *req;
    ds_gen_request_init(req);
    j->state = DS_JOB_QUEUED;
    j->refs = 1;
    atomic_init(&j->cancel, false);
    ds_err_clear(&j->err);
    *out = j;
    return DS_OK;
}

void ds_job_destroy(ds_job *j) {
    if (!j) return;
    ds_gen_request_free(&j->req);
    ds_gen_result_free(&j->result);
    if (j->has_stats) ds_cache_stats_free(&j->stats);
    free(j->events);
    pthread_cond_destroy(&j->cond);
    free(j);
}
