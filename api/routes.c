/* routes.c - dispatch of the HTTP API (see routes.h): authentication, CORS, the route table, and the
 * handlers that turn parsed requests into engine calls and engine state into replies. */
#include "routes.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_error.h"
#include "log.h"
#include "playground.h"
#include "response.h"

struct ds_api {
    ds_engine    *eng;
    ds_api_limits limits;
    char         *api_key;
    char        **cors;
    int           n_cors;
    int           retry_after_s;
    int           keepalive_ms;
};

ds_api *ds_api_create(ds_engine *e, const ds_api_opts *o) {
    ds_api *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->eng = e;
    ds_api_limits_resolve(o ? &o->limits : NULL, &a->limits);
    a->retry_after_s = o && o->retry_after_s > 0 ? o->retry_after_s : 2;
    a->keepalive_ms = o && o->sse_keepalive_ms > 0 ? o->sse_keepalive_ms : 10000;
    if (o && o->api_key && o->api_key[0] && !(a->api_key = strdup(o->api_key))) goto oom;
    if (o && o->n_cors_origins > 0) {
        if (!(a->cors = calloc((size_t)o->n_cors_origins, sizeof *a->cors))) goto oom;
        for (int i = 0; i < o->n_cors_origins; i++) {
            if (!(a->cors[i] = strdup(o->cors_origins[i]))) goto oom;
            a->n_cors++;
        }
    }
    return a;
oom:
    ds_api_free(a);
    return NULL;
}

void ds_api_free(ds_api *a) {
    if (!a) return;
    for (int i = 0; i < a->n_cors; i++) free(a->cors[i]);
    free(a->cors);
    free(a->api_key);
    free(a);
}

void ds_api_response_free(ds_api_response *r) {
    if (!r) return;
    free(r->body);
    ds_sse_close(r->sse);
    r->body = NULL;
    r->sse = NULL;
}

void ds_api_add_header(ds_api_response *r, const char *name, const char *value) {
    if (r->n_headers >= DS_API_MAX_HEADERS) return;
    snprintf(r->headers[r->n_headers].name, sizeof r->headers[0].name, "%s", name);
    snprintf(r->headers[r->n_headers].value, sizeof r->headers[0].value, "%s", value);
    r->n_headers++;
}

static void set_body(ds_api_response *r, int status, const char *ctype, char *body) {
    free(r->body);
    r->status = status;
    r->content_type = ctype;
    r->body = body;
    r->body_len = body ? strlen(body) : 0;
    if (!body) { /* out of memory while rendering */
        r->status = 507;
        r->content_type = "application/json";
        r->body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
                         "\"code\":\"out_of_memory\"}}");
        r->body_len = r->body ? strlen(r->body) : 0;
    }
}

void ds_api_set_error(ds_api_response *r, int http, const char *type, const char *code, const char *param,
                      const char *message) {
    set_body(r, http, "application/json", ds_api_error_body(message, type, param, code));
}

/* Error from a ds_err with the status table of api_error.h. */
static void set_err(ds_api_response *r, const ds_err *err, const char *param) {
    ds_status code = err && err->code ? err->code : DS_ERR_INTERNAL;
    ds_api_error_kind k = ds_api_error_kind_of(code);
    ds_api_set_error(r, k.http_status, k.type, ds_status_name(code), param,
                     err && err->msg[0] ? err->msg : ds_status_name(code));
}

static void retry_after(ds_api *a, ds_api_response *r) {
    char v[16];
    snprintf(v, sizeof v, "%d", a->retry_after_s);
    ds_api_add_header(r, "Retry-After", v);
}

bool ds_api_authorized(const ds_api *a, const char *auth) {
    if (!a->api_key) return true;
    const char *given = "";
    if (auth && !strncmp(auth, "Bearer ", 7)) given = auth + 7;
    size_t lk = strlen(a->api_key), lg = strlen(given);
    /* constant time in the key's length: always compare lk bytes, fold the length difference in */
    unsigned diff = (unsigned)(lk ^ lg);
    for (size_t i = 0; i < lk; i++) diff |= (unsigned char)a->api_key[i] ^ (unsigned char)(i < lg ? given[i] : 0);
    return diff == 0;
}

static const char *cors_origin(const ds_api *a, const char *origin) {
    if (!origin) return NULL;
    for (int i = 0; i < a->n_cors; i++)
        if (!strcmp(a->cors[i], "*")) return "*";
        else if (!strcmp(a->cors[i], origin)) return origin;
    return NULL;
}

/* "job-" + 16 lower-case hex digits. */
static bool id_ok(const char *s, size_t n) {
    if (n != 20 || strncmp(s, "job-", 4)) return false;
    for (size_t i = 4; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static void url_prefix(const ds_api_request *q, char *buf, size_t cap) {
    buf[0] = 0;
    if (!q->host) return;
    for (const char *c = q->host; *c; c++) /* a Host header is a host[:port]: refuse anything else */
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
              *c == '-' || *c == ':' || *c == '[' || *c == ']'))
            return;
    snprintf(buf, cap, "http://%s", q->host);
}

/* ---- handlers ------------------------------------------------------------------------------------------ */

static void h_health(ds_api *a, ds_api_response *r) {
    char msg[600];
    ds_engine_health h = ds_engine_get_health(a->eng, msg, sizeof msg);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", h == DS_HEALTH_READY ? "ok" : h == DS_HEALTH_LOADING ? "loading" : "error");
    cJSON_AddStringToObject(o, "message", msg);
    cJSON *ms = cJSON_AddArrayToObject(o, "models");
    static const char *names[] = {"loading", "warming_up", "ready", "failed"};
    for (int i = 0; i < ds_engine_model_count(a->eng); i++) {
        ds_engine_model_info mi;
        ds_engine_model_get(a->eng, i, &mi);
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", mi.name);
        cJSON_AddStringToObject(m, "state", names[mi.state]);
        cJSON_AddItemToArray(ms, m);
    }
    set_body(r, h == DS_HEALTH_READY ? 200 : 503, "application/json", cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
    if (h != DS_HEALTH_READY) retry_after(a, r);
}

/* The page is public (it holds no data: the key is typed into it and sent with its API calls); the CSP keeps
 * it to inline code and this origin, so a page that loads anything from elsewhere fails loudly. */
static void h_playground(ds_api_response *r) {
    size_t n;
    const char *page = ds_playground_page(&n);
    char *b = malloc(n + 1);
    if (b) memcpy(b, page, n + 1);
    set_body(r, 200, "text/html; charset=utf-8", b);
    if (r->status != 200) return;
    ds_api_add_header(r, "Cache-Control", "no-cache");
    ds_api_add_header(r, "Content-Security-Policy",
                      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
                      "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    ds_api_add_header(r, "Referrer-Policy", "no-referrer");
}

static void h_models(ds_api *a, ds_api_response *r) {
    static const char *names[] = {"loading", "warming_up", "ready", "failed"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *d = cJSON_AddArrayToObject(o, "data");
    for (int i = 0; i < ds_engine_model_count(a->eng); i++) {
        ds_engine_model_info mi;
        ds_engine_model_get(a->eng, i, &mi);
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", mi.name);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)mi.created);
        cJSON_AddStringToObject(m, "owned_by", "ditserve");
        cJSON_AddStringToObject(m, "state", names[mi.state]);
        cJSON_AddStringToObject(m, "device", mi.device);
        if (mi.pipeline_class[0]) {
            cJSON_AddStringToObject(m, "pipeline", mi.pipeline_class);
            cJSON_AddStringToObject(m, "conditioning", mi.kind == DS_PIPELINE_DIT ? "class_labels" : "prompt_embeds");
            cJSON_AddNumberToObject(m, "width", mi.width);
            cJSON_AddNumberToObject(m, "height", mi.height);
            cJSON_AddNumberToObject(m, "default_steps", mi.default_steps);
        }
        cJSON_AddStringToObject(m, "default_cache", mi.default_cache);
        cJSON_AddItemToArray(d, m);
    }
    set_body(r, 200, "application/json", cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
}

/* Label names for the request parser. An unknown model resolves every name to 0 so that parsing goes on
 * and check_model answers 404 model_not_found: one answer for an unknown model whether the labels are
 * ids or names. */
static ds_status label_cb(void *ctx, const char *model, const char *name, int32_t *id, ds_err *err) {
    if (ds_engine_model_find(ctx, model) < 0) {
        *id = 0;
        return DS_OK;
    }
    return ds_engine_label_id(ctx, model, name, id, err);
}

/* Copy n bytes of client-supplied text for an error message, replacing anything but printable ASCII by
 * '?' so the JSON body stays valid UTF-8 whatever the client sent. */
static const char *printable(char *out, size_t cap, const char *s, size_t n) {
    size_t k = 0;
    for (; k < n && k + 1 < cap; k++) out[k] = (s[k] >= 0x20 && s[k] < 0x7f) ? s[k] : '?';
    out[k] = 0;
    return out;
}

/* Model checks shared by both generate endpoints; false when r holds an error. */
static bool check_model(ds_api *a, ds_api_parsed *p, ds_engine_model_info *mi, ds_api_response *r) {
    int idx = ds_engine_model_find(a->eng, p->req.model);
    char msg[256];
    if (idx < 0) {
        snprintf(msg, sizeof msg, "unknown model '%s' (GET /v1/models lists them)", p->req.model);
        ds_api_set_error(r, 404, "invalid_request_error", "model_not_found", "model", msg);
        return false;
    }
    ds_engine_model_get(a->eng, idx, mi);
    if (mi->state != DS_MODEL_READY) {
        snprintf(msg, sizeof msg, "model %s is %s", mi->name, mi->state == DS_MODEL_FAILED ? "unavailable (failed to load)" : "still loading");
        ds_api_set_error(r, 503, "server_error", "model_loading", "model", msg);
        retry_after(a, r);
        return false;
    }
    return true;
}

static bool check_conditioning(const ds_engine_model_info *mi, const ds_api_parsed *p, ds_api_response *r) {
    const ds_gen_request *q = &p->req;
    char msg[256];
    if (mi->kind == DS_PIPELINE_DIT) {
        if (q->n_labels == 0) {
            snprintf(msg, sizeof msg, "model %s is class-conditional: give class_labels (ids or ImageNet names)", mi->name);
            ds_api_set_error(r, 400, "invalid_request_error", "invalid_arg", "class_labels", msg);
            return false;
        }
        if (q->prompt_embeds.data || q->pooled_prompt_embeds.data || q->negative_prompt_embeds.data ||
            q->negative_pooled_prompt_embeds.data) {
            snprintf(msg, sizeof msg, "model %s takes class_labels, not prompt embeddings", mi->name);
            ds_api_set_error(r, 400, "invalid_request_error", "invalid_arg", "prompt_embeds", msg);
            return false;
        }
    } else {
        if (q->n_labels) {
            snprintf(msg, sizeof msg, "model %s takes prompt embeddings, not class_labels", mi->name);
            ds_api_set_error(r, 400, "invalid_request_error", "invalid_arg", "class_labels", msg);
            return false;
        }
        if (!q->prompt_embeds.data || !q->pooled_prompt_embeds.data) {
            snprintf(msg, sizeof msg,
                     "model %s needs prompt_embeds and pooled_prompt_embeds (no text encoder is loaded)", mi->name);
            ds_api_set_error(r, 400, "invalid_request_error", "invalid_arg",
                             q->prompt_embeds.data ? "pooled_prompt_embeds" : "prompt_embeds", msg);
            return false;
        }
        if (!q->negative_prompt_embeds.data != !q->negative_pooled_prompt_embeds.data) {
            ds_api_set_error(r, 400, "invalid_request_error", "invalid_arg", "negative_prompt_embeds",
                             "give negative_prompt_embeds and negative_pooled_prompt_embeds together");
            return false;
        }
    }
    return true;
}

/* Submit; on failure r holds the error and NULL is returned. */
static ds_job *submit(ds_api *a, ds_api_parsed *p, ds_api_response *r) {
    ds_err err;
    ds_err_clear(&err);
    ds_job *j = NULL;
    ds_status s = ds_engine_submit(a->eng, &p->req, &j, &err);
    if (s == DS_OK) return j;
    if (s == DS_ERR_BUSY && strstr(err.msg, "queue is full")) {
        ds_api_set_error(r, 429, "rate_limit_error", "queue_full", NULL, err.msg);
        retry_after(a, r);
    } else if (s == DS_ERR_BUSY) {
        ds_api_set_error(r, 503, "server_error", "unavailable", NULL, err.msg);
        retry_after(a, r);
    } else {
        set_err(r, &err, s == DS_ERR_NOT_FOUND ? "model" : NULL);
    }
    return NULL;
}

/* Wait for a sync job; cancels it when the client goes away. Returns the final snapshot. */
static void wait_sync(ds_api *a, const ds_api_request *q, ds_job *j, ds_job_snapshot *snap) {
    ds_engine_job_snapshot(a->eng, j, snap);
    bool cancelled = false;
    while (!ds_job_state_final(snap->state)) {
        ds_engine_job_wait(a->eng, j, snap->version, 200, snap);
        if (!cancelled && q->client_gone && q->client_gone(q->conn)) {
            DS_LOGI("api", "job %s: client disconnected, cancelling", j->id);
            ds_engine_cancel(a->eng, j);
            cancelled = true;
        }
    }
}

/* A final job that did not finish as done -> error reply. */
static void job_error(const ds_job_snapshot *snap, const ds_job *j, ds_api_response *r) {
    ds_err e = snap->err;
    if (!e.code) e.code = snap->state == DS_JOB_CANCELLED ? DS_ERR_CANCELLED : DS_ERR_INTERNAL;
    char msg[DS_ERR_MSG_LEN + 64];
    snprintf(msg, sizeof msg, "job %s %s: %s", j->id, ds_job_state_name(snap->state), e.msg[0] ? e.msg : ds_status_name(e.code));
    ds_api_error_kind k = ds_api_error_kind_of(e.code);
    ds_api_set_error(r, k.http_status, k.type, ds_status_name(e.code), NULL, msg);
    ds_api_add_header(r, "X-Job-Id", j->id);
}

static void h_generate(ds_api *a, const ds_api_request *q, ds_api_response *r) {
    ds_api_parsed p;
    char param[DS_API_PARAM_LEN] = "";
    ds_err err;
    ds_err_clear(&err);
    ds_status s = ds_api_parse_generate(q->body, q->body_len, &a->limits, label_cb, a->eng, &p, param, &err);
    if (s != DS_OK) {
        if (s == DS_ERR_BUSY) {
            ds_api_set_error(r, 503, "server_error", "model_loading", "model", err.msg);
            retry_after(a, r);
        } else {
            set_err(r, &err, param);
        }
        return;
    }
    ds_engine_model_info mi;
    if (!check_model(a, &p, &mi, r) || !check_conditioning(&mi, &p, r)) {
        ds_api_parsed_free(&p);
        return;
    }
    bool async = p.async;
    ds_job *j = submit(a, &p, r);
    ds_api_parsed_free(&p);
    if (!j) return;
    char prefix[300];
    url_prefix(q, prefix, sizeof prefix);
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/jobs/%s", j->id);
    ds_job_snapshot snap;
    if (async) {
        ds_engine_job_snapshot(a->eng, j, &snap);
        set_body(r, 202, "application/json", ds_api_job_json(j, &snap, DS_API_IMAGES_NONE, prefix, &err));
        ds_api_add_header(r, "Location", loc);
    } else {
        wait_sync(a, q, j, &snap);
        if (snap.state == DS_JOB_DONE) {
            ds_err_clear(&err);
            char *b = ds_api_job_json(j, &snap, DS_API_IMAGES_B64, prefix, &err);
            if (b) set_body(r, 200, "application/json", b);
            else set_err(r, &err, NULL); /* e.g. built without libpng */
        } else {
            job_error(&snap, j, r);
        }
        ds_api_add_header(r, "X-Job-Id", j->id);
    }
    ds_engine_job_release(a->eng, j);
}

static void h_openai(ds_api *a, const ds_api_request *q, ds_api_response *r) {
    ds_api_parsed p;
    char param[DS_API_PARAM_LEN] = "";
    ds_err err;
    ds_err_clear(&err);
    ds_engine_model_info first;
    ds_engine_model_get(a->eng, 0, &first);
    ds_status s = ds_api_parse_openai(q->body, q->body_len, &a->limits, first.name, &p, param, &err);
    if (s != DS_OK) {
        set_err(r, &err, param);
        return;
    }
    ds_engine_model_info mi;
    if (!check_model(a, &p, &mi, r)) goto out;
    if (mi.kind == DS_PIPELINE_DIT && p.req.n_labels == 0 && p.prompt) {
        /* the prompt is an ImageNet class name (or a class id) */
        int32_t id = -1;
        char *end = NULL;
        long v = strtol(p.prompt, &end, 10);
        if (end && end != p.prompt && !*end && v >= 0 && v <= 999) id = (int32_t)v;
        else if ((s = ds_engine_label_id(a->eng, p.req.model, p.prompt, &id, &err)) != DS_OK) {
            char msg[DS_ERR_MSG_LEN + 256];
            snprintf(msg, sizeof msg, "%.500s: for the class-conditional model %.63s the prompt is an ImageNet class name "
                                      "such as \"golden retriever\" (or a class id 0-999)", err.msg, mi.name);
            ds_api_set_error(r, 400, "invalid_request_error", "invalid_arg", "prompt", msg);
            goto out;
        }
        if (!(p.req.class_labels = malloc(sizeof(int32_t)))) {
            ds_api_set_error(r, 507, "server_error", "out_of_memory", NULL, "out of memory");
            goto out;
        }
        p.req.class_labels[0] = id;
        p.req.n_labels = 1;
    }
    if (mi.kind != DS_PIPELINE_DIT && !p.req.prompt_embeds.data) {
        char msg[256];
        snprintf(msg, sizeof msg, "model %s has no text encoder loaded: send prompt_embeds and pooled_prompt_embeds "
                                  "as extra fields (see docs/api.md)", mi.name);
        ds_api_set_error(r, 422, "invalid_request_error", "unsupported", "prompt", msg);
        goto out;
    }
    if (!check_conditioning(&mi, &p, r)) goto out;
    ds_api_response_format fmt = p.format;
    char *prompt = p.prompt;
    p.prompt = NULL;
    ds_job *j = submit(a, &p, r);
    if (!j) {
        free(prompt);
        goto out;
    }
    ds_job_snapshot snap;
    wait_sync(a, q, j, &snap);
    if (snap.state != DS_JOB_DONE) {
        job_error(&snap, j, r);
    } else {
        char prefix[300];
        url_prefix(q, prefix, sizeof prefix);
        char *full = ds_api_job_json(j, &snap, fmt == DS_API_FMT_B64 ? DS_API_IMAGES_B64 : DS_API_IMAGES_URL, prefix, &err);
        cJSON *res = full ? cJSON_Parse(full) : NULL;
        free(full);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "created", (double)time(NULL));
        cJSON *data = cJSON_AddArrayToObject(o, "data");
        cJSON *imgs = res ? cJSON_GetObjectItemCaseSensitive(res, "images") : NULL;
        for (cJSON *im = imgs ? imgs->child : NULL; im; im = im->next) {
            cJSON *d = cJSON_CreateObject();
            cJSON *v = cJSON_GetObjectItemCaseSensitive(im, fmt == DS_API_FMT_B64 ? "png_b64" : "url");
            cJSON_AddStringToObject(d, fmt == DS_API_FMT_B64 ? "b64_json" : "url", cJSON_IsString(v) ? v->valuestring : "");
            if (prompt) cJSON_AddStringToObject(d, "revised_prompt", prompt);
            cJSON_AddItemToArray(data, d);
        }
        char size[32];
        snprintf(size, sizeof size, "%dx%d", j->result.width, j->result.height);
        cJSON_AddStringToObject(o, "size", size);
        cJSON_AddStringToObject(o, "output_format", "png");
        cJSON_AddStringToObject(o, "id", j->id);
        cJSON_AddStringToObject(o, "model", j->req.model);
        ds_api_add_seed(o, j->req.seed);
        if (res) {
            cJSON *st = cJSON_DetachItemFromObject(res, "stats");
            if (st) cJSON_AddItemToObject(o, "stats", st);
            cJSON *tm = cJSON_DetachItemFromObject(res, "timings");
            if (tm) cJSON_AddItemToObject(o, "timings", tm);
        }
        cJSON_Delete(res);
        set_body(r, 200, "application/json", cJSON_PrintUnformatted(o));
        cJSON_Delete(o);
    }
    ds_api_add_header(r, "X-Job-Id", j->id);
    free(prompt);
    ds_engine_job_release(a->eng, j);
out:
    ds_api_parsed_free(&p);
}

static ds_job *lookup(ds_api *a, const char *id, size_t n, ds_api_response *r) {
    char buf[DS_JOB_ID_LEN];
    ds_job *j = NULL;
    if (id_ok(id, n)) {
        memcpy(buf, id, n);
        buf[n] = 0;
        j = ds_engine_find(a->eng, buf);
    }
    if (!j) {
        char msg[128], shown[41];
        snprintf(msg, sizeof msg, "no job with id '%s' (unknown, or evicted after its TTL)",
                 printable(shown, sizeof shown, id, n));
        ds_api_set_error(r, 404, "not_found_error", "job_not_found", "id", msg);
    }
    return j;
}

static void h_job(ds_api *a, const ds_api_request *q, ds_job *j, bool del, ds_api_response *r) {
    if (del) ds_engine_cancel(a->eng, j);
    ds_job_snapshot snap;
    ds_engine_job_snapshot(a->eng, j, &snap);
    char prefix[300];
    url_prefix(q, prefix, sizeof prefix);
    ds_err err;
    set_body(r, 200, "application/json", ds_api_job_json(j, &snap, DS_API_IMAGES_URL, prefix, &err));
}

static bool require_final(ds_api *a, ds_job *j, ds_job_snapshot *snap, bool done, ds_api_response *r) {
    ds_engine_job_snapshot(a->eng, j, snap);
    if (done ? snap->state == DS_JOB_DONE : ds_job_state_final(snap->state)) return true;
    char msg[128];
    snprintf(msg, sizeof msg, "job %s is %s%s", j->id, ds_job_state_name(snap->state),
             ds_job_state_final(snap->state) ? " and has no images" : ": try again when it is done");
    ds_api_set_error(r, 409, "invalid_request_error", "job_not_done", "id", msg);
    return false;
}

static void h_stats(ds_api *a, ds_job *j, ds_api_response *r) {
    ds_job_snapshot snap;
    if (!require_final(a, j, &snap, false, r)) return;
    ds_err err;
    set_body(r, 200, "application/json", ds_api_stats_json(j, &snap, &err));
}

static void h_image(ds_api *a, ds_job *j, const char *rest, ds_api_response *r) {
    /* rest = "{k}.png" with k a decimal without sign or leading zeros */
    size_t n = strlen(rest);
    int k = -1;
    if (n >= 5 && n <= 8 && !strcmp(rest + n - 4, ".png") && (n == 5 || rest[0] != '0')) {
        k = 0;
        for (size_t i = 0; i < n - 4; i++) {
            if (rest[i] < '0' || rest[i] > '9') {
                k = -1;
                break;
            }
            k = k * 10 + (rest[i] - '0');
        }
    }
    if (k < 0) {
        ds_api_set_error(r, 404, "not_found_error", "not_found", NULL, "image paths are /v1/images/{id}/{k}.png");
        return;
    }
    ds_job_snapshot snap;
    if (!require_final(a, j, &snap, true, r)) return;
    uint8_t *png = NULL;
    size_t len = 0;
    ds_err err;
    ds_err_clear(&err);
    if (ds_api_job_png(j, k, &png, &len, &err) != DS_OK) {
        set_err(r, &err, NULL);
        return;
    }
    free(r->body);
    r->status = 200;
    r->content_type = "image/png";
    r->body = (char *)png;
    r->body_len = len;
    ds_api_add_header(r, "Cache-Control", "private, max-age=600");
}

static void h_events(ds_api *a, const ds_api_request *q, ds_job *j, ds_api_response *r) {
    char prefix[300];
    url_prefix(q, prefix, sizeof prefix);
    r->sse = ds_sse_open(a->eng, j, prefix);
    if (!r->sse) {
        ds_api_set_error(r, 507, "server_error", "out_of_memory", NULL, "out of memory");
        return;
    }
    r->status = 200;
    r->content_type = "text/event-stream";
    ds_api_add_header(r, "Cache-Control", "no-cache");
}

static void method_not_allowed(ds_api_response *r, const char *allow) {
    char msg[96];
    snprintf(msg, sizeof msg, "method not allowed here (allowed: %s)", allow);
    ds_api_set_error(r, 405, "invalid_request_error", "method_not_allowed", NULL, msg);
    ds_api_add_header(r, "Allow", allow);
}

static void dispatch(ds_api *a, const ds_api_request *q, ds_api_response *r) {
    const char *m = q->method ? q->method : "";
    const char *p = q->path ? q->path : "";
    bool get = !strcmp(m, "GET") || !strcmp(m, "HEAD");
    bool post = !strcmp(m, "POST");
    if (!strcmp(p, "/health")) {
        r->route = "/health";
        if (!get) {
            method_not_allowed(r, "GET");
            return;
        }
        h_health(a, r);
        return;
    }
    if (!strcmp(p, "/")) {
        r->route = "/";
        if (!get) {
            method_not_allowed(r, "GET");
            return;
        }
        h_playground(r);
        return;
    }
    if (!ds_api_authorized(a, q->authorization)) {
        r->route = "unauthorized";
        ds_api_set_error(r, 401, "authentication_error", "invalid_api_key", NULL,
                         "missing or wrong API key: send Authorization: Bearer <key>");
        ds_api_add_header(r, "WWW-Authenticate", "Bearer");
        return;
    }
    if (!strcmp(p, "/v1/models")) {
        r->route = "/v1/models";
        if (!get) {
            method_not_allowed(r, "GET");
            return;
        }
        h_models(a, r);
        return;
    }
    if (!strcmp(p, "/v1/generate")) {
        r->route = "/v1/generate";
        if (!post) {
            method_not_allowed(r, "POST");
            return;
        }
        h_generate(a, q, r);
        return;
    }
    if (!strcmp(p, "/v1/images/generations")) {
        r->route = "/v1/images/generations";
        if (!post) {
            method_not_allowed(r, "POST");
            return;
        }
        h_openai(a, q, r);
        return;
    }
    static const struct {
        const char *prefix, *route;
    } idr[] = {{"/v1/jobs/", "/v1/jobs/{id}"}, {"/v1/stats/", "/v1/stats/{id}"}, {"/v1/images/", "/v1/images/{id}/{k}.png"}};
    for (int i = 0; i < 3; i++) {
        size_t pl = strlen(idr[i].prefix);
        if (strncmp(p, idr[i].prefix, pl)) continue;
        const char *id = p + pl;
        const char *slash = strchr(id, '/');
        size_t n = slash ? (size_t)(slash - id) : strlen(id);
        const char *rest = slash ? slash + 1 : NULL;
        r->route = idr[i].route;
        if (i == 0 && rest && !strcmp(rest, "events")) r->route = "/v1/jobs/{id}/events";
        bool ok_shape = i == 0 ? (!rest || !strcmp(rest, "events")) : i == 1 ? !rest : rest != NULL;
        if (!ok_shape) break;
        const char *allow = i == 0 && !rest ? "GET, DELETE" : "GET";
        bool del = !strcmp(m, "DELETE");
        if (!get && !(del && i == 0 && !rest)) {
            method_not_allowed(r, allow);
            return;
        }
        ds_job *j = lookup(a, id, n, r);
        if (!j) return;
        if (i == 0 && rest) h_events(a, q, j, r);
        else if (i == 0) h_job(a, q, j, del, r);
        else if (i == 1) h_stats(a, j, r);
        else h_image(a, j, rest, r);
        ds_engine_job_release(a->eng, j);
        return;
    }
    r->route = "unknown";
    char msg[160], shown[101];
    snprintf(msg, sizeof msg, "no route %s %s", m, printable(shown, sizeof shown, p, strlen(p)));
    ds_api_set_error(r, 404, "not_found_error", "not_found", NULL, msg);
}

void ds_api_handle(ds_api *a, const ds_api_request *q, ds_api_response *r) {
    memset(r, 0, sizeof *r);
    const char *allowed = cors_origin(a, q->origin);
    if (q->method && !strcmp(q->method, "OPTIONS")) {
        r->route = "preflight";
        r->status = allowed ? 204 : 403;
        r->content_type = "text/plain";
        if (allowed) {
            ds_api_add_header(r, "Access-Control-Allow-Origin", allowed);
            ds_api_add_header(r, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
            ds_api_add_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
            ds_api_add_header(r, "Access-Control-Max-Age", "600");
            ds_api_add_header(r, "Vary", "Origin");
        }
        return;
    }
    dispatch(a, q, r);
    if (allowed) {
        ds_api_add_header(r, "Access-Control-Allow-Origin", allowed);
        ds_api_add_header(r, "Vary", "Origin");
    }
}
