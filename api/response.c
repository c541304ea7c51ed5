/* response.c - JSON replies built with cJSON from jobs, results and statistics, error bodies and PNG images
 * (see response.h). */
#include "response.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base64.h"
#include "cache_stats.h"
#ifdef DS_HAVE_PNG
#include "png_encode.h"
#endif

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

char *ds_api_error_body(const char *message, const char *type, const char *param, const char *code) {
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message ? message : "");
    cJSON_AddStringToObject(e, "type", type ? type : "server_error");
    if (param && param[0]) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddStringToObject(e, "code", code ? code : "internal");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static const char *sched_name(ds_sched_kind k) { return k == DS_SCHED_AUTO ? "default" : ds_sched_kind_name(k); }

ds_status ds_api_job_png(const ds_job *j, int k, uint8_t **png, size_t *len, ds_err *err) {
    *png = NULL;
    *len = 0;
    const ds_gen_result *r = &j->result;
    if (k < 0 || k >= r->n_images || !r->rgb)
        return DS_FAIL(err, DS_ERR_NOT_FOUND, "job %s has no image %d (it has %d)", j->id, k, r->n_images);
#ifdef DS_HAVE_PNG
    char params[512];
    snprintf(params, sizeof params,
             "{\"id\":\"%s\",\"model\":\"%s\",\"seed\":%llu,\"steps\":%d,\"width\":%d,\"height\":%d,\"scheduler\":\"%s\","
             "\"cache_config\":\"%s\",\"image\":%d}",
             j->id, j->req.model, (unsigned long long)j->req.seed, r->steps, r->width, r->height,
             sched_name(j->req.scheduler), j->cache_str, k);
    const ds_png_text text[] = {{"ditserve", params}, {"Software", "ditserve"}};
    return ds_png_encode(r->rgb + (size_t)k * r->width * r->height * 3, r->width, r->height, text, 2, png, len, err);
#else
    return DS_FAIL(err, DS_ERR_UNSUPPORTED, "this ditserve was built without libpng: no PNG output");
#endif
}

static void add_error(cJSON *o, const ds_job_snapshot *s) {
    if (s->state != DS_JOB_FAILED && s->state != DS_JOB_CANCELLED) {
        cJSON_AddNullToObject(o, "error");
        return;
    }
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", s->err.msg[0] ? s->err.msg : ds_status_name(s->err.code));
    cJSON_AddStringToObject(e, "type", s->state == DS_JOB_CANCELLED ? "cancelled" : "server_error");
    cJSON_AddStringToObject(e, "code", ds_status_name(s->err.code ? s->err.code : DS_ERR_INTERNAL));
}

static cJSON *timings(const ds_job *j, const ds_job_snapshot *s, double extra_ms) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "queue_ms", s->queue_ms);
    cJSON_AddNumberToObject(t, "run_ms", s->run_ms);
    if (s->state == DS_JOB_DONE) {
        cJSON_AddNumberToObject(t, "denoise_ms", j->result.denoise_ms);
        cJSON_AddNumberToObject(t, "decode_ms", j->result.decode_ms);
        cJSON_AddNumberToObject(t, "encode_ms", extra_ms);
    }
    cJSON_AddNumberToObject(t, "total_ms", s->total_ms + extra_ms);
    return t;
}

static cJSON *labels_json(const ds_gen_request *r) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < r->n_labels; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(r->class_labels[i]));
    return a;
}

char *ds_api_job_json(const ds_job *j, const ds_job_snapshot *s, ds_api_images images, const char *url_prefix,
                      ds_err *err) {
    double t0 = now_ms();
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", j->id);
    cJSON_AddStringToObject(root, "object", "generation");
    cJSON_AddStringToObject(root, "model", j->req.model);
    cJSON_AddNumberToObject(root, "created", (double)s->created);
    ds_api_add_seed(root, j->req.seed);
    cJSON_AddStringToObject(root, "state", ds_job_state_name(s->state));
    cJSON_AddNumberToObject(root, "step", s->step);
    cJSON_AddNumberToObject(root, "steps", s->n_steps);
    if (s->queue_position >= 0) cJSON_AddNumberToObject(root, "queue_position", s->queue_position);
    if (j->req.n_labels) cJSON_AddItemToObject(root, "class_labels", labels_json(&j->req));
    add_error(root, s);
    bool done = s->state == DS_JOB_DONE;
    if (done) {
        cJSON_AddNumberToObject(root, "width", j->result.width);
        cJSON_AddNumberToObject(root, "height", j->result.height);
        cJSON_AddStringToObject(root, "cache_config", j->cache_str);
        cJSON *imgs = cJSON_AddArrayToObject(root, "images");
        for (int k = 0; k < j->result.n_images; k++) {
            cJSON *im = cJSON_CreateObject();
            cJSON_AddNumberToObject(im, "index", k);
            char url[256];
            snprintf(url, sizeof url, "%s/v1/images/%s/%d.png", url_prefix ? url_prefix : "", j->id, k);
            cJSON_AddStringToObject(im, "url", url);
            if (images == DS_API_IMAGES_B64) {
                uint8_t *png = NULL;
                size_t len = 0;
                if (ds_api_job_png(j, k, &png, &len, err) != DS_OK) {
                    cJSON_Delete(im);
                    cJSON_Delete(root);
                    return NULL;
                }
                char *b64 = malloc(ds_base64_encoded_len(len) + 1);
                if (!b64) {
                    free(png);
                    cJSON_Delete(im);
                    cJSON_Delete(root);
                    DS_FAIL(err, DS_ERR_OOM, "out of memory encoding image %d", k);
                    return NULL;
                }
                ds_base64_encode(png, len, b64);
                free(png);
                cJSON_AddStringToObject(im, "png_b64", b64);
                free(b64);
            }
            cJSON_AddItemToArray(imgs, im);
        }
        char *st = ds_api_stats_json(j, s, err);
        cJSON *sj = st ? cJSON_Parse(st) : NULL;
        free(st);
        if (sj) {
            cJSON_DeleteItemFromObject(sj, "id");
            cJSON_DeleteItemFromObject(sj, "timings");
            cJSON_AddItemToObject(root, "stats", sj);
        }
    }
    cJSON_AddItemToObject(root, "timings", timings(j, s, done ? now_ms() - t0 : 0));
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!out) DS_FAIL(err, DS_ERR_OOM, "out of memory rendering job %s", j->id);
    return out;
}

cJSON *ds_api_cache_config_json(const ds_cache_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "cache_type", c->enabled ? "DBCache" : "none");
    cJSON_AddNumberToObject(o, "Fn_compute_blocks", c->Fn_compute_blocks);
    cJSON_AddNumberToObject(o, "Bn_compute_blocks", c->Bn_compute_blocks);
    cJSON_AddNumberToObject(o, "residual_diff_threshold", c->residual_diff_threshold);
    if (c->max_accumulated_residual_diff_threshold > 0)
        cJSON_AddNumberToObject(o, "max_accumulated_residual_diff_threshold", c->max_accumulated_residual_diff_threshold);
    else cJSON_AddNullToObject(o, "max_accumulated_residual_diff_threshold");
    cJSON_AddNumberToObject(o, "max_warmup_steps", c->max_warmup_steps);
    cJSON_AddNumberToObject(o, "warmup_interval", c->warmup_interval);
    cJSON_AddNumberToObject(o, "max_cached_steps", c->max_cached_steps);
    cJSON_AddNumberToObject(o, "max_continuous_cached_steps", c->max_continuous_cached_steps);
    if (c->enable_separate_cfg < 0) cJSON_AddNullToObject(o, "enable_separate_cfg");
    else cJSON_AddBoolToObject(o, "enable_separate_cfg", c->enable_separate_cfg == 1);
    cJSON_AddBoolToObject(o, "cfg_compute_first", c->cfg_compute_first);
    cJSON_AddBoolToObject(o, "cfg_diff_compute_separate", c->cfg_diff_compute_separate);
    if (c->num_inference_steps > 0) cJSON_AddNumberToObject(o, "num_inference_steps", c->num_inference_steps);
    else cJSON_AddNullToObject(o, "num_inference_steps");
    if (c->mask_kind == DS_MASK_EXPLICIT) {
        cJSON *m = cJSON_AddArrayToObject(o, "steps_computation_mask");
        for (int i = 0; i < c->mask_len; i++) cJSON_AddItemToArray(m, cJSON_CreateNumber(c->mask[i]));
    } else if (c->mask_kind != DS_MASK_NONE) {
        cJSON_AddStringToObject(o, "steps_computation_mask", ds_cache_mask_preset_name(c->mask_kind));
    } else {
        cJSON_AddNullToObject(o, "steps_computation_mask");
    }
    cJSON_AddStringToObject(o, "steps_computation_policy",
                            c->steps_computation_policy == DS_SCM_STATIC ? "static" : "dynamic");
    cJSON_AddBoolToObject(o, "enable_taylorseer", c->enable_taylorseer);
    cJSON_AddNumberToObject(o, "taylorseer_order", c->taylorseer_order);
    cJSON_AddStringToObject(o, "taylorseer_cache_type",
                            c->taylorseer_cache_type == DS_CALIB_HIDDEN_STATES ? "hidden_states" : "residual");
    cJSON_AddBoolToObject(o, "enable_encoder_taylorseer", c->enable_encoder_taylorseer);
    cJSON_AddBoolToObject(o, "separate_block_lists", c->separate_block_lists);
    return o;
}

/* The cache-dit-style summary of one branch: cached_steps, residual_diffs, percentiles. */
static void branch_into(cJSON *o, const ds_cache_branch_stats *b) {
    cJSON *cs = cJSON_AddArrayToObject(o, "cached_steps");
    for (int i = 0; i < b->n_cached; i++) cJSON_AddItemToArray(cs, cJSON_CreateNumber(b->cached_steps[i]));
    cJSON_AddNumberToObject(o, "num_cached_steps", b->n_cached);
    cJSON *rd = cJSON_AddObjectToObject(o, "residual_diffs");
    for (int i = 0; i < b->n_diffs; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", b->diff_steps[i]);
        cJSON_AddItemToObject(rd, k, cJSON_CreateNumber(b->diffs[i]));
    }
    cJSON *p = cJSON_AddObjectToObject(o, "diff_percentiles");
    static const char *names[5] = {"p0", "p25", "p50", "p75", "p95"};
    for (int i = 0; i < 5; i++) cJSON_AddNumberToObject(p, names[i], b->pct[i]);
    cJSON_AddNumberToObject(p, "max", b->max);
}

char *ds_api_stats_json(const ds_job *j, const ds_job_snapshot *s, ds_err *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", j->id);
    const ds_cache_stats *st = &j->stats;
    cJSON_AddNumberToObject(root, "steps", j->has_stats ? st->steps : s->n_steps);
    cJSON_AddItemToObject(root, "cache_config", ds_api_cache_config_json(&j->cache_eff));
    cJSON_AddStringToObject(root, "cache_config_str", j->cache_str);
    if (j->has_stats && st->n_lists > 0) {
        const ds_cache_list_stats *L0 = &st->lists[0];
        branch_into(root, &L0->branch[0]);
        if (L0->n_branches > 1) {
            cJSON *cfg = cJSON_AddObjectToObject(root, "cfg");
            branch_into(cfg, &L0->branch[1]);
        } else {
            cJSON_AddNullToObject(root, "cfg");
        }
    } else {
        cJSON_AddItemToObject(root, "cached_steps", cJSON_CreateArray());
        cJSON_AddNumberToObject(root, "num_cached_steps", 0);
        cJSON_AddItemToObject(root, "residual_diffs", cJSON_CreateObject());
        cJSON_AddNullToObject(root, "diff_percentiles");
        cJSON_AddNullToObject(root, "cfg");
    }
    cJSON *blocks = cJSON_AddObjectToObject(root, "blocks");
    cJSON_AddNumberToObject(blocks, "full", j->has_stats ? (double)st->blocks_full : 0);
    cJSON_AddNumberToObject(blocks, "computed", j->has_stats ? (double)st->blocks_computed : 0);
    cJSON_AddNumberToObject(blocks, "skipped", j->has_stats ? (double)(st->blocks_full - st->blocks_computed) : 0);
    /* the per-list detail exactly as the cache engine renders it (ditserve generate --stats-out) */
    cJSON *lists = NULL;
    if (j->has_stats) {
        char *txt = NULL;
        if (ds_cache_stats_to_json(st, &txt, err) == DS_OK) {
            cJSON *full = cJSON_Parse(txt);
            if (full) {
                lists = cJSON_DetachItemFromObject(full, "lists");
                cJSON *sm = cJSON_DetachItemFromObject(full, "step_ms");
                if (sm) cJSON_AddItemToObject(root, "step_ms", sm);
                cJSON_Delete(full);
            }
            free(txt);
        }
    }
    cJSON_AddItemToObject(root, "lists", lists ? lists : cJSON_CreateArray());
    cJSON_AddNumberToObject(root, "speedup_estimate", j->has_stats ? st->speedup_estimate : 1.0);
    cJSON_AddItemToObject(root, "timings", timings(j, s, 0));
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!out) DS_FAIL(err, DS_ERR_OOM, "out of memory rendering stats of %s", j->id);
    return out;
}

char *ds_api_step_json(const ds_job *j, const ds_job_step_event *ev) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddNumberToObject(o, "step", ev->step);
    cJSON_AddNumberToObject(o, "steps", ev->n_steps);
    cJSON_AddNumberToObject(o, "ms", ev->ms);
    bool any = false;
    for (int l = 0; l < ev->n_lists; l++)
        for (int b = 0; b < ev->n_branches[l]; b++) any |= ev->cached[l][b];
    cJSON_AddBoolToObject(o, "cached", any);
    if (ev->n_lists > 0 && !isnan(ev->diff[0][0])) cJSON_AddNumberToObject(o, "diff", ev->diff[0][0]);
    else cJSON_AddNullToObject(o, "diff");
    cJSON *br = cJSON_AddArrayToObject(o, "branches");
    for (int l = 0; l < ev->n_lists; l++)
        for (int b = 0; b < ev->n_branches[l]; b++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "list", l);
            cJSON_AddStringToObject(x, "branch", b == 0 ? "non_cfg" : "cfg");
            cJSON_AddBoolToObject(x, "cached", ev->cached[l][b]);
            if (isnan(ev->diff[l][b])) cJSON_AddNullToObject(x, "diff");
            else cJSON_AddNumberToObject(x, "diff", ev->diff[l][b]);
            cJSON_AddItemToArray(br, x);
        }
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

void ds_api_add_seed(struct cJSON *obj, uint64_t seed) {
    /* as an integer literal: cJSON prints numbers through a double with 15 significant digits, which
       would round large seeds and break reproducing an image from the echoed seed */
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)seed);
    cJSON_AddItemToObject(obj, "seed", cJSON_CreateRaw(buf));
}
