/* test_engine.c - the engine: bounded FIFO queue, job state machine, resident models with warm-up, results
 * equal to a direct pipeline run, cancellation in the queue and between steps, queue-full rejection, TTL and
 * memory-bound eviction, load failures, shutdown modes. Uses tests/data/ckpt/dit-tiny (CPU). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "engine.h"
#include "pipeline.h"
#include "queue.h"

#define DIT_DIR DS_TEST_DATA_DIR "/ckpt/dit-tiny"

static ds_job fake_jobs[4];

Test(engine_queue, fifo_full_remove) {
    ds_queue q;
    ds_err err;
    cr_assert_eq(ds_queue_init(&q, 3, &err), DS_OK);
    cr_assert_eq(ds_queue_push(&q, &fake_jobs[0], &err), DS_OK);
    cr_assert_eq(ds_queue_push(&q, &fake_jobs[1], &err), DS_OK);
    cr_assert_eq(ds_queue_push(&q, &fake_jobs[2], &err), DS_OK);
    cr_assert_eq(ds_queue_push(&q, &fake_jobs[3], &err), DS_ERR_BUSY);
    cr_assert(strstr(err.msg, "full") != NULL, "%s", err.msg);
    cr_assert_eq(ds_queue_position(&q, &fake_jobs[2]), 2);
    cr_assert(ds_queue_remove(&q, &fake_jobs[1]));
    cr_assert(!ds_queue_remove(&q, &fake_jobs[1]));
    cr_assert_eq(ds_queue_pop(&q), &fake_jobs[0]);
    cr_assert_eq(ds_queue_push(&q, &fake_jobs[3], &err), DS_OK); /* wraps around */
    cr_assert_eq(ds_queue_pop(&q), &fake_jobs[2]);
    cr_assert_eq(ds_queue_pop(&q), &fake_jobs[3]);
    cr_assert_null(ds_queue_pop(&q));
    ds_queue_free(&q);
    cr_assert_eq(ds_queue_init(&q, 0, &err), DS_ERR_INVALID_ARG);
}

Test(engine_job, state_names_and_request_ownership) {
    cr_assert_str_eq(ds_job_state_name(DS_JOB_QUEUED), "queued");
    cr_assert_str_eq(ds_job_state_name(DS_JOB_CANCELLED), "cancelled");
    cr_assert(ds_job_state_final(DS_JOB_FAILED));
    cr_assert(!ds_job_state_final(DS_JOB_RUNNING));
    ds_gen_request r;
    ds_gen_request_init(&r);
    cr_assert(isnan(r.guidance_scale));
    r.class_labels = malloc(2 * sizeof(int32_t));
    r.n_labels = 2;
    ds_job *j;
    cr_assert_eq(ds_job_create("job-1", &r, &j, NULL), DS_OK);
    cr_assert_null(r.class_labels); /* moved */
    cr_assert_eq(j->req.n_labels, 2);
    cr_assert_eq(j->state, DS_JOB_QUEUED);
    ds_job_destroy(j);
}

static ds_engine *start(int queue_size, double ttl, size_t max_bytes, const char *dir) {
    ds_engine_model_spec spec = {.name = "dit", .dir = dir};
    ds_engine_opts o = {0};
    o.models = &spec;
    o.n_models = 1;
    o.device = "cpu"; /* the CPU reference, also on a GPU host */
    o.queue_size = queue_size;
    o.job_ttl_s = ttl;
    o.max_retained_bytes = max_bytes;
    ds_engine *e = NULL;
    ds_err err;
    cr_assert_eq(ds_engine_create(&o, &e, &err), DS_OK, "%s", err.msg);
    return e;
}

static void request(ds_gen_request *r, int label, int steps, uint64_t seed) {
    ds_gen_request_init(r);
    snprintf(r->model, sizeof r->model, "dit");
    r->class_labels = malloc(sizeof(int32_t));
    r->class_labels[0] = label;
    r->n_labels = 1;
    r->steps = steps;
    r->seed = seed;
}

static ds_job *submit(ds_engine *e, int label, int steps, uint64_t seed) {
    ds_gen_request r;
    request(&r, label, steps, seed);
    ds_job *j = NULL;
    ds_err err;
    cr_assert_eq(ds_engine_submit(e, &r, &j, &err), DS_OK, "%s", err.msg);
    return j;
}

static ds_job_snapshot wait_final(ds_engine *e, ds_job *j) {
    ds_job_snapshot s;
    ds_engine_job_snapshot(e, j, &s);
    while (!ds_job_state_final(s.state)) ds_engine_job_wait(e, j, s.version, 10000, &s);
    return s;
}

static void wait_running(ds_engine *e, ds_job *j) {
    ds_job_snapshot s;
    ds_engine_job_snapshot(e, j, &s);
    while (s.state == DS_JOB_QUEUED || (s.state == DS_JOB_RUNNING && s.step < 1)) ds_engine_job_wait(e, j, s.version, 10000, &s);
}

Test(engine, health_then_result_equals_pipeline) {
    ds_engine *e = start(4, 600, 0, DIT_DIR);
    char msg[256];
    ds_engine_health h = ds_engine_get_health(e, msg, sizeof msg);
    cr_assert(h == DS_HEALTH_LOADING || h == DS_HEALTH_READY);
    ds_err err;
    cr_assert_eq(ds_engine_wait_ready(e, 60, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_engine_get_health(e, msg, sizeof msg), DS_HEALTH_READY, "%s", msg);
    ds_engine_model_info mi;
    ds_engine_model_get(e, 0, &mi);
    cr_assert_str_eq(mi.pipeline_class, "DiTPipeline");
    cr_assert_eq(mi.state, DS_MODEL_READY);
    cr_assert_str_eq(mi.default_cache, "none");
    int32_t id = -1;
    cr_assert_eq(ds_engine_label_id(e, "dit", "golden retriever", &id, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(id, 207);

    ds_job *j = submit(e, 207, 4, 42);
    ds_job_snapshot s = wait_final(e, j);
    cr_assert_eq(s.state, DS_JOB_DONE, "%s", s.err.msg);
    cr_assert_eq(s.step, 4);
    cr_assert_eq(s.n_steps, 4);
    ds_job_step_event ev[8];
    cr_assert_eq(ds_engine_job_events(e, j, 0, ev, 8), 4);
    for (int i = 0; i < 4; i++) cr_assert_eq(ev[i].step, i + 1);
    cr_assert(j->has_stats);
    cr_assert_eq(j->stats.steps, 4);
    cr_assert_str_eq(j->cache_str, "NONE");

    /* the same request straight through the pipeline gives the same pixels */
    ds_pipeline *p;
    cr_assert_eq(ds_pipeline_load(DIT_DIR, NULL, &p, &err), DS_OK, "%s", err.msg);
    int32_t lab = 207;
    ds_gen_params g = {0};
    g.steps = 4;
    g.seed = 42;
    g.guidance_scale = NAN;
    g.true_cfg_scale = NAN;
    g.class_labels = &lab;
    g.n_labels = 1;
    ds_gen_result ref;
    cr_assert_eq(ds_pipeline_generate(p, &g, &ref, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ref.n_images, j->result.n_images);
    cr_assert_eq(memcmp(ref.rgb, j->result.rgb, (size_t)ref.n_images * ref.width * ref.height * 3), 0);
    ds_gen_result_free(&ref);
    ds_pipeline_free(p);

    /* found by id, unknown ids are not */
    ds_job *f = ds_engine_find(e, j->id);
    cr_assert_eq(f, j);
    ds_engine_job_release(e, f);
    cr_assert_null(ds_engine_find(e, "job-0000000000000000"));
    ds_engine_job_release(e, j);
    ds_engine_metrics m;
    ds_engine_metrics_get(e, &m);
    cr_assert_eq(m.done, 1);
    cr_assert_eq(m.steps, 4);
    cr_assert_eq(m.step_seconds.count, 4);
    ds_engine_shutdown(e, false);
    ds_engine_free(e);
}

Test(engine, cached_job_reports_cache_decisions) {
    ds_engine *e = start(4, 600, 0, DIT_DIR);
    ds_err err;
    cr_assert_eq(ds_engine_wait_ready(e, 60, &err), DS_OK, "%s", err.msg);
    ds_gen_request r;
    request(&r, 1, 12, 3);
    r.has_cache = true;
    cr_assert_eq(ds_cache_config_parse_string("F1B0_W2MC2_T0O1_R0.9", &r.cache, &err), DS_OK, "%s", err.msg);
    ds_job *j;
    cr_assert_eq(ds_engine_submit(e, &r, &j, &err), DS_OK, "%s", err.msg);
    ds_job_snapshot s = wait_final(e, j);
    cr_assert_eq(s.state, DS_JOB_DONE, "%s", s.err.msg);
    ds_job_step_event ev[12];
    cr_assert_eq(ds_engine_job_events(e, j, 0, ev, 12), 12);
    int cached = 0;
    for (int i = 0; i < 12; i++) cached += ev[i].cached[0][0];
    cr_assert_eq(cached, j->stats.lists[0].branch[0].n_cached, "events %d vs stats %d", cached,
                 j->stats.lists[0].branch[0].n_cached);
    cr_assert_gt(cached, 0);
    cr_assert(strstr(j->cache_str, "DBCache_F1B0") != NULL, "%s", j->cache_str);
    ds_engine_job_release(e, j);
    ds_engine_free(e);
}

Test(engine, cancel_queued_and_running_and_queue_full) {
    ds_engine *e = start(1, 600, 0, DIT_DIR);
    ds_err err;
    cr_assert_eq(ds_engine_wait_ready(e, 60, &err), DS_OK, "%s", err.msg);
    ds_job *a = submit(e, 1, 1000, 1); /* long: ~10 s */
    wait_running(e, a);
    ds_job *b = submit(e, 2, 2, 2); /* queued behind a */
    ds_job_snapshot s;
    ds_engine_job_snapshot(e, b, &s);
    cr_assert_eq(s.state, DS_JOB_QUEUED);
    cr_assert_eq(s.queue_position, 0);
    /* queue of 1 is full now */
    ds_gen_request r;
    request(&r, 3, 2, 3);
    ds_job *c = NULL;
    cr_assert_eq(ds_engine_submit(e, &r, &c, &err), DS_ERR_BUSY);
    cr_assert_null(c);
    cr_assert(strstr(err.msg, "queue is full") != NULL, "%s", err.msg);
    /* cancel the queued job: final at once */
    cr_assert_eq(ds_engine_cancel(e, b), DS_JOB_CANCELLED);
    /* cancel the running job: stops at the next step */
    ds_engine_cancel(e, a);
    s = wait_final(e, a);
    cr_assert_eq(s.state, DS_JOB_CANCELLED);
    cr_assert_lt(s.step, 1000);
    cr_assert_eq(s.err.code, DS_ERR_CANCELLED);
    /* cancelling a final job changes nothing */
    cr_assert_eq(ds_engine_cancel(e, a), DS_JOB_CANCELLED);
    ds_engine_metrics m;
    ds_engine_metrics_get(e, &m);
    cr_assert_eq(m.cancelled, 2);
    cr_assert_eq(m.rejected, 1);
    ds_engine_job_release(e, a);
    ds_engine_job_release(e, b);
    ds_engine_free(e);
}

Test(engine, ttl_and_memory_bound_evict) {
    ds_engine *e = start(4, 0.2, 0, DIT_DIR);
    ds_err err;
    cr_assert_eq(ds_engine_wait_ready(e, 60, &err), DS_OK, "%s", err.msg);
    ds_job *j = submit(e, 1, 2, 1);
    wait_final(e, j);
    char id[DS_JOB_ID_LEN];
    snprintf(id, sizeof id, "%s", j->id);
    ds_engine_job_release(e, j);
    ds_job *f = ds_engine_find(e, id);
    cr_assert_not_null(f);
    ds_engine_job_release(e, f);
    usleep(300 * 1000);
    cr_assert_null(ds_engine_find(e, id), "evicted after the TTL");
    ds_engine_free(e);

    e = start(4, 600, 1, DIT_DIR); /* a 1-byte bound: a finished job goes at the next eviction */
    cr_assert_eq(ds_engine_wait_ready(e, 60, &err), DS_OK, "%s", err.msg);
    j = submit(e, 1, 2, 1);
    wait_final(e, j);
    snprintf(id, sizeof id, "%s", j->id);
    cr_assert_eq(j->result.n_images, 1); /* our reference keeps the result alive after eviction */
    cr_assert_null(ds_engine_find(e, id));
    cr_assert_eq(j->result.n_images, 1);
    ds_engine_job_release(e, j);
    ds_engine_metrics m;
    ds_engine_metrics_get(e, &m);
    cr_assert_eq(m.retained_jobs, 0);
    cr_assert_eq(m.retained_bytes, 0);
    ds_engine_free(e);
}

Test(engine, bad_inputs_and_load_failure) {
    ds_engine_opts o = {0};
    ds_engine *e = NULL;
    ds_err err;
    cr_assert_eq(ds_engine_create(&o, &e, &err), DS_ERR_INVALID_ARG);
    ds_engine_model_spec two[2] = {{.name = "a", .dir = DIT_DIR}, {.name = "a", .dir = DIT_DIR}};
    o.models = two;
    o.n_models = 2;
    cr_assert_eq(ds_engine_create(&o, &e, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "twice") != NULL, "%s", err.msg);
    two[1].name = "b/../c";
    cr_assert_eq(ds_engine_create(&o, &e, &err), DS_ERR_INVALID_ARG);
    o.n_models = 1;
    o.device = "gpu";
    cr_assert_eq(ds_engine_create(&o, &e, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "expected auto, cpu, cuda or cuda:N") != NULL, "%s", err.msg);
    o.device = "cpu";
    o.dtype = "bf16";
    cr_assert_eq(ds_engine_create(&o, &e, &err), DS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "CPU backend computes in f32") != NULL, "%s", err.msg);
    o.dtype = NULL;
    {
        int n = 0;
        ds_err e2;
        if (ds_device_cuda_count(&n, &e2) != DS_OK || n == 0) { /* no GPU here: asking for one is a clean error */
            o.device = "cuda:0";
            cr_assert_eq(ds_engine_create(&o, &e, &err), DS_ERR_DEVICE);
            cr_assert(strstr(err.msg, "cuda:0 requested but not usable") != NULL, "%s", err.msg);
        }
    }
    o.device = NULL;

    e = start(2, 600, 0, "/nonexistent/ditserve-model");
    cr_assert_neq(ds_engine_wait_ready(e, 60, &err), DS_OK);
    cr_assert(strstr(err.msg, "/nonexistent/ditserve-model") != NULL, "%s", err.msg);
    char msg[256];
    cr_assert_eq(ds_engine_get_health(e, msg, sizeof msg), DS_HEALTH_FAILED);
    ds_gen_request r;
    request(&r, 1, 2, 1);
    ds_job *j = NULL;
    cr_assert_eq(ds_engine_submit(e, &r, &j, &err), DS_ERR_BUSY);
    request(&r, 1, 2, 1);
    snprintf(r.model, sizeof r.model, "other");
    cr_assert_eq(ds_engine_submit(e, &r, &j, &err), DS_ERR_NOT_FOUND);
    ds_engine_free(e);
}

Test(engine, failed_job_keeps_server_up) {
    ds_engine *e = start(4, 600, 0, DIT_DIR);
    ds_err err;
    cr_assert_eq(ds_engine_wait_ready(e, 60, &err), DS_OK, "%s", err.msg);
    ds_gen_request r;
    request(&r, 1, 2, 1);
    r.width = 72; /* not the DiT's size: the pipeline refuses it */
    ds_job *j;
    cr_assert_eq(ds_engine_submit(e, &r, &j, &err), DS_OK);
    ds_job_snapshot s = wait_final(e, j);
    cr_assert_eq(s.state, DS_JOB_FAILED);
    cr_assert_eq(s.err.code, DS_ERR_INVALID_ARG, "%s", s.err.msg);
    ds_engine_job_release(e, j);
    j = submit(e, 1, 2, 1);
    cr_assert_eq(wait_final(e, j).state, DS_JOB_DONE);
    ds_engine_job_release(e, j);
    ds_engine_free(e);
}

Test(engine, shutdown_finish_and_cancel) {
    ds_engine *e = start(4, 600, 0, DIT_DIR);
    ds_err err;
    cr_assert_eq(ds_engine_wait_ready(e, 60, &err), DS_OK, "%s", err.msg);
    ds_job *a = submit(e, 1, 3, 1), *b = submit(e, 2, 3, 2);
    ds_engine_shutdown(e, false); /* finish */
    ds_job_snapshot s;
    ds_engine_job_snapshot(e, a, &s);
    cr_assert_eq(s.state, DS_JOB_DONE);
    ds_engine_job_snapshot(e, b, &s);
    cr_assert_eq(s.state, DS_JOB_DONE);
    ds_gen_request r;
    request(&r, 1, 2, 1);
    ds_job *c = NULL;
    cr_assert_eq(ds_engine_submit(e, &r, &c, &err), DS_ERR_BUSY);
    ds_engine_job_release(e, a);
    ds_engine_job_release(e, b);
    ds_engine_free(e);

    e = start(4, 600, 0, DIT_DIR);
    cr_assert_eq(ds_engine_wait_ready(e, 60, &err), DS_OK, "%s", err.msg);
    a = submit(e, 1, 1000, 1);
    b = submit(e, 2, 3, 2);
    wait_running(e, a);
    ds_engine_shutdown(e, true);
    ds_engine_job_snapshot(e, a, &s);
    cr_assert_eq(s.state, DS_JOB_CANCELLED);
    ds_engine_job_snapshot(e, b, &s);
    cr_assert_eq(s.state, DS_JOB_CANCELLED);
    ds_engine_job_release(e, a);
    ds_engine_job_release(e, b);
    ds_engine_free(e);
}
