/* request.c - JSON bodies of /v1/generate and /v1/images/generations -> ds_gen_request, with a type and
 * range check per field and the field's name on every error (see request.h). */
#include "request.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base64.h"

#define MAX_SEED 9007199254740991.0 /* 2^53 - 1 */

void ds_api_limits_resolve(const ds_api_limits *lim, ds_api_limits *o) {
    ds_api_limits z = {0};
    *o = lim ? *lim : z;
    if (o->max_steps <= 0) o->max_steps = 200;
    if (o->max_pixels <= 0) o->max_pixels = 1048576;
    if (o->max_images <= 0) o->max_images = 4;
    if (o->max_labels <= 0) o->max_labels = 16;
    if (o->max_tensor_elems <= 0) o->max_tensor_elems = 4194304;
}

uint64_t ds_api_random_seed(void) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (uint64_t)time(NULL) * 6364136223846793005ull;
    return r & ((1ull << 53) - 1);
}

void ds_api_parsed_free(ds_api_parsed *p) {
    if (!p) return;
    ds_gen_request_free(&p->req);
    free(p->prompt);
    memset(p, 0, sizeof *p);
    ds_gen_request_init(&p->req);
}

static ds_status bad(char *param, const char *name, ds_err *err, ds_status code, const char *fmt, const char *a,
                     double x) {
    snprintf(param, DS_API_PARAM_LEN, "%s", name);
    char msg[256];
    snprintf(msg, sizeof msg, fmt, a, x);
    return DS_FAIL(err, code, "%s: %s", name, msg);
}

/* An integer field in lo..hi. */
static ds_status get_int(const cJSON *it, const char *name, double lo, double hi, int64_t *out, char *param,
                         ds_err *err) {
    if (!cJSON_IsNumber(it)) return bad(param, name, err, DS_ERR_INVALID_ARG, "expected an integer%s", "", 0);
    double v = it->valuedouble;
    if (!isfinite(v) || v != floor(v))
        return bad(param, name, err, DS_ERR_INVALID_ARG, "expected an integer%s, got %g", "", v);
    if (v < lo || v > hi) {
        char range[96];
        snprintf(range, sizeof range, "must be in %.0f..%.0f", lo, hi);
        return bad(param, name, err, DS_ERR_INVALID_ARG, "%s, got %.17g", range, v);
    }
    *out = (int64_t)v;
    return DS_OK;
}

static ds_status get_num(const cJSON *it, const char *name, double lo, double hi, float *out, char *param,
                         ds_err *err) {
    if (!cJSON_IsNumber(it)) return bad(param, name, err, DS_ERR_INVALID_ARG, "expected a number%s", "", 0);
    double v = it->valuedouble;
    if (!isfinite(v) || v < lo || v > hi) {
        char range[96];
        snprintf(range, sizeof range, "must be a finite number in %g..%g", lo, hi);
        return bad(param, name, err, DS_ERR_INVALID_ARG, "%s, got %g", range, v);
    }
    *out = (float)v;
    return DS_OK;
}

static ds_status get_tensor(const cJSON *it, const char *name, const ds_api_limits *lim, ds_req_tensor *t,
                            char *param, ds_err *err) {
    if (!cJSON_IsObject(it))
        return bad(param, name, err, DS_ERR_INVALID_ARG, "expected {\"shape\": [...], \"dtype\": \"f32\", "
                                                         "\"data_b64\": \"...\"}%s", "", 0);
    const cJSON *shape = NULL, *data = NULL;
    for (const cJSON *f = it->child; f; f = f->next) {
        if (!strcmp(f->string, "shape")) shape = f;
        else if (!strcmp(f->string, "data_b64")) data = f;
        else if (!strcmp(f->string, "dtype")) {
            if (!cJSON_IsString(f) || strcmp(f->valuestring, "f32"))
                return bad(param, name, err, DS_ERR_INVALID_ARG, "dtype must be \"f32\"%s", "", 0);
        } else
            return bad(param, name, err, DS_ERR_INVALID_ARG, "unknown field '%s'", f->string, 0);
    }
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) < 1 || cJSON_GetArraySize(shape) > 4)
        return bad(param, name, err, DS_ERR_INVALID_ARG, "shape must be a list of 1 to 4 integers%s", "", 0);
    if (!cJSON_IsString(data)) return bad(param, name, err, DS_ERR_INVALID_ARG, "data_b64 must be a string%s", "", 0);
    int64_t n = 1;
    t->ndim = 0;
    for (const cJSON *d = shape->child; d; d = d->next) {
        int64_t v;
        char p2[DS_API_PARAM_LEN];
        if (get_int(d, name, 1, (double)lim->max_tensor_elems, &v, p2, err) != DS_OK) {
            snprintf(param, DS_API_PARAM_LEN, "%s", name);
            return DS_ERR_INVALID_ARG;
        }
        t->shape[t->ndim++] = v;
        n *= v;
        if (n > lim->max_tensor_elems)
            return bad(param, name, err, DS_ERR_INVALID_ARG, "more than the %s elements allowed (%.0f)", "limit",
                       (double)lim->max_tensor_elems);
    }
    uint8_t *bytes = NULL;
    size_t nb = 0;
    size_t slen = strlen(data->valuestring);
    if (slen > ((size_t)n * 4 + 2) / 3 * 4 + 4)
        return bad(param, name, err, DS_ERR_INVALID_ARG, "data_b64 is longer than the shape needs%s", "", 0);
    ds_status s = ds_base64_decode(data->valuestring, slen, &bytes, &nb, err);
    if (s != DS_OK) {
        ds_err_prefix(err, "%s.data_b64", name);
        snprintf(param, DS_API_PARAM_LEN, "%s", name);
        return s;
    }
    if (nb != (size_t)n * sizeof(float)) {
        free(bytes);
        char msg[64];
        snprintf(msg, sizeof msg, "%zu bytes", nb);
        return bad(param, name, err, DS_ERR_INVALID_ARG, "data_b64 holds %s, the shape needs %.0f f32 (little-endian) bytes",
                   msg, (double)n * 4);
    }
    float *f = (float *)(void *)bytes; /* malloc'd: suitably aligned */
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(f[i])) {
            free(bytes);
            return bad(param, name, err, DS_ERR_INVALID_ARG, "element %s%.0f is not finite", "", (double)i);
        }
    t->data = f;
    return DS_OK;
}

static ds_status get_cache(const cJSON *it, ds_gen_request *r, char *param, ds_err *err) {
    ds_status s;
    if (cJSON_IsNull(it)) {
        r->has_cache = true;
        ds_cache_config_default(&r->cache);
        r->cache.enabled = false;
        return DS_OK;
    }
    if (cJSON_IsString(it)) {
        s = ds_cache_config_parse_string(it->valuestring, &r->cache, err);
    } else if (cJSON_IsObject(it)) {
        char *txt = cJSON_PrintUnformatted(it);
        if (!txt) return DS_FAIL(err, DS_ERR_OOM, "out of memory");
        s = ds_cache_config_parse_json(txt, &r->cache, err);
        cJSON_free(txt);
    } else {
        return bad(param, "cache_config", err, DS_ERR_INVALID_ARG,
                   "expected an object of cache options, a config string or \"none\"%s", "", 0);
    }
    if (s != DS_OK) {
        snprintf(param, DS_API_PARAM_LEN, "cache_config");
        ds_err_prefix(err, "cache_config");
        if (s == DS_ERR_FORMAT) {
            if (err) err->code = DS_ERR_INVALID_ARG;
            return DS_ERR_INVALID_ARG;
        }
        return s;
    }
    r->has_cache = true;
    return DS_OK;
}

/* Fields both endpoints share. Returns DS_OK with *handled = false for a name it does not know. */
static ds_status common_field(const cJSON *f, const ds_api_limits *lim, ds_api_parsed *p, bool *handled, char *param,
                              ds_err *err) {
    ds_gen_request *r = &p->req;
    const char *k = f->string;
    int64_t v;
    *handled = true;
    if (!strcmp(k, "width") || !strcmp(k, "height")) {
        DS_TRY(get_int(f, k, 8, 16384, &v, param, err));
        if (k[0] == 'w') r->width = (int)v;
        else r->height = (int)v;
    } else if (!strcmp(k, "steps")) {
        DS_TRY(get_int(f, k, 1, lim->max_steps, &v, param, err));
        r->steps = (int)v;
    } else if (!strcmp(k, "guidance_scale")) {
        DS_TRY(get_num(f, k, 0, 100, &r->guidance_scale, param, err));
    } else if (!strcmp(k, "true_cfg_scale")) {
        DS_TRY(get_num(f, k, 0, 100, &r->true_cfg_scale, param, err));
    } else if (!strcmp(k, "scheduler")) {
        if (!cJSON_IsString(f)) return bad(param, k, err, DS_ERR_INVALID_ARG, "expected a string%s", "", 0);
        if (!strcmp(f->valuestring, "ddim")) r->scheduler = DS_SCHED_DDIM;
        else if (!strcmp(f->valuestring, "dpmpp_2m")) r->scheduler = DS_SCHED_DPMPP_2M;
        else if (!strcmp(f->valuestring, "flow_euler")) r->scheduler = DS_SCHED_FLOW_EULER;
        else return bad(param, k, err, DS_ERR_INVALID_ARG, "must be ddim, dpmpp_2m or flow_euler%s", "", 0);
    } else if (!strcmp(k, "seed")) {
        DS_TRY(get_int(f, k, 0, MAX_SEED, &v, param, err));
        r->seed = (uint64_t)v;
        p->seed_given = true;
    } else if (!strcmp(k, "cache_config")) {
        DS_TRY(get_cache(f, r, param, err));
    } else if (!strcmp(k, "prompt_embeds")) {
        DS_TRY(get_tensor(f, k, lim, &r->prompt_embeds, param, err));
    } else if (!strcmp(k, "pooled_prompt_embeds")) {
        DS_TRY(get_tensor(f, k, lim, &r->pooled_prompt_embeds, param, err));
    } else if (!strcmp(k, "negative_prompt_embeds")) {
        DS_TRY(get_tensor(f, k, lim, &r->negative_prompt_embeds, param, err));
    } else if (!strcmp(k, "negative_pooled_prompt_embeds")) {
        DS_TRY(get_tensor(f, k, lim, &r->negative_pooled_prompt_embeds, param, err));
    } else {
        *handled = false;
    }
    return DS_OK;
}

static ds_status get_model(const cJSON *f, ds_gen_request *r, char *param, ds_err *err) {
    if (!cJSON_IsString(f) || !f->valuestring[0] || strlen(f->valuestring) >= sizeof r->model)
        return bad(param, "model", err, DS_ERR_INVALID_ARG, "expected a model name (a string of 1-63 characters)%s",
                   "", 0);
    snprintf(r->model, sizeof r->model, "%s", f->valuestring);
    return DS_OK;
}

static ds_status get_labels(const cJSON *f, const ds_api_limits *lim, ds_gen_request *r, ds_api_label_fn label,
                            void *ctx, char *param, ds_err *err) {
    const char *k = "class_labels";
    if (!cJSON_IsArray(f)) return bad(param, k, err, DS_ERR_INVALID_ARG, "expected a list of class ids or ImageNet names%s", "", 0);
    int n = cJSON_GetArraySize(f);
    if (n < 1 || n > lim->max_labels)
        return bad(param, k, err, DS_ERR_INVALID_ARG, "give 1 to %s%.0f labels", "", (double)lim->max_labels);
    r->class_labels = malloc((size_t)n * sizeof(int32_t));
    if (!r->class_labels) return DS_FAIL(err, DS_ERR_OOM, "out of memory");
    r->n_labels = 0;
    for (const cJSON *it = f->child; it; it = it->next) {
        int64_t v;
        if (cJSON_IsString(it)) {
            int32_t id;
            if (!label) return bad(param, k, err, DS_ERR_INVALID_ARG, "label names are not available here%s", "", 0);
            if (!r->model[0]) return bad(param, "model", err, DS_ERR_INVALID_ARG, "required%s", "", 0);
            ds_status s = label(ctx, r->model, it->valuestring, &id, err);
            if (s != DS_OK) {
                snprintf(param, DS_API_PARAM_LEN, "%s", k);
                ds_err_prefix(err, "class_labels");
                if (s == DS_ERR_NOT_FOUND || s == DS_ERR_UNSUPPORTED) {
                    if (err) err->code = DS_ERR_INVALID_ARG;
                    return DS_ERR_INVALID_ARG;
                }
                return s;
            }
            v = id;
        } else {
            DS_TRY(get_int(it, k, 0, 999, &v, param, err));
        }
        r->class_labels[r->n_labels++] = (int32_t)v;
    }
    return DS_OK;
}

static ds_status finish(const ds_api_limits *lim, ds_api_parsed *p, char *param, ds_err *err) {
    ds_gen_request *r = &p->req;
    if (!r->model[0]) return bad(param, "model", err, DS_ERR_INVALID_ARG, "required%s", "", 0);
    if ((r->width > 0) != (r->height > 0)) {
        const char *miss = r->width > 0 ? "height" : "width";
        return bad(param, miss, err, DS_ERR_INVALID_ARG, "give width and height together%s", "", 0);
    }
    if ((int64_t)r->width * r->height > lim->max_pixels)
        return bad(param, "width", err, DS_ERR_INVALID_ARG, "width x height is over the limit of %s%.0f pixels", "",
                   (double)lim->max_pixels);
    int per = r->num_images > 0 ? r->num_images : 1;
    if ((int64_t)(r->n_labels > 0 ? r->n_labels : 1) * per > lim->max_images)
        return bad(param, "num_images", err, DS_ERR_INVALID_ARG,
                   "labels x num_images is over the limit of %s%.0f images per request", "", (double)lim->max_images);
    if (!p->seed_given) r->seed = ds_api_random_seed();
    return DS_OK;
}

static cJSON *parse_body(const char *body, size_t len, char *param, ds_err *err) {
    param[0] = 0;
    if (!body || len == 0) {
        DS_FAIL(err, DS_ERR_FORMAT, "the request body is empty: send a JSON object");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        size_t off = end && end >= body ? (size_t)(end - body) : 0;
        DS_FAIL(err, DS_ERR_FORMAT, "the body is not valid JSON (near byte %zu)", off);
        return NULL;
    }
    /* only whitespace may follow the value */
    for (const char *c = end; c && c < body + len; c++)
        if (*c != ' ' && *c != '\n' && *c != '\r' && *c != '\t') {
            cJSON_Delete(root);
            DS_FAIL(err, DS_ERR_FORMAT, "the body is not valid JSON (trailing data at byte %zu)", (size_t)(c - body));
            return NULL;
        }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        DS_FAIL(err, DS_ERR_FORMAT, "the body must be a JSON object");
        return NULL;
    }
    /* duplicate keys are ambiguous: refuse them */
    for (const cJSON *a = root->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (!strcmp(a->string, b->string)) {
                snprintf(param, DS_API_PARAM_LEN, "%s", a->string);
                DS_FAIL(err, DS_ERR_INVALID_ARG, "field '%s' appears twice", a->string);
                cJSON_Delete(root);
                return NULL;
            }
    return root;
}

ds_status ds_api_parse_generate(const char *body, size_t len, const ds_api_limits *lim_in, ds_api_label_fn label,
                                void *label_ctx, ds_api_parsed *out, char *param, ds_err *err) {
    memset(out, 0, sizeof *out);
    ds_gen_request_init(&out->req);
    ds_api_limits lim;
    ds_api_limits_resolve(lim_in, &lim);
    cJSON *root = parse_body(body, len, param, err);
    if (!root) return err && err->code ? err->code : DS_ERR_FORMAT;
    ds_status s = DS_OK;
    /* model first: label names are resolved against it */
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (m) s = get_model(m, &out->req, param, err);
    for (const cJSON *f = root->child; f && s == DS_OK; f = f->next) {
        bool handled;
        if (!strcmp(f->string, "model")) continue;
        if ((s = common_field(f, &lim, out, &handled, param, err)) != DS_OK || handled) continue;
        int64_t v;
        if (!strcmp(f->string, "class_labels")) {
            s = get_labels(f, &lim, &out->req, label, label_ctx, param, err);
        } else if (!strcmp(f->string, "num_images")) {
            if ((s = get_int(f, "num_images", 1, lim.max_images, &v, param, err)) == DS_OK) out->req.num_images = (int)v;
        } else if (!strcmp(f->string, "mode")) {
            if (!cJSON_IsString(f) || (strcmp(f->valuestring, "sync") && strcmp(f->valuestring, "async")))
                s = bad(param, "mode", err, DS_ERR_INVALID_ARG, "must be \"sync\" or \"async\"%s", "", 0);
            else out->async = !strcmp(f->valuestring, "async");
        } else {
            s = bad(param, f->string, err, DS_ERR_INVALID_ARG, "unknown field%s", "", 0);
        }
    }
    if (s == DS_OK) s = finish(&lim, out, param, err);
    cJSON_Delete(root);
    if (s != DS_OK) ds_api_parsed_free(out);
    return s;
}

/* "WxH" -> width, height. */
static ds_status get_size(const cJSON *f, ds_gen_request *r, char *param, ds_err *err) {
    if (!cJSON_IsString(f)) return bad(param, "size", err, DS_ERR_INVALID_ARG, "expected a string such as \"256x256\"%s", "", 0);
    if (!strcmp(f->valuestring, "auto")) return DS_OK;
    unsigned w = 0, h = 0;
    char tail = 0;
    if (sscanf(f->valuestring, "%5ux%5u%c", &w, &h, &tail) != 2 || w < 8 || h < 8 || w > 16384 || h > 16384)
        return bad(param, "size", err, DS_ERR_INVALID_ARG, "expected \"WIDTHxHEIGHT\" (8..16384) or \"auto\", got '%s'",
                   f->valuestring, 0);
    r->width = (int)w;
    r->height = (int)h;
    return DS_OK;
}

ds_status ds_api_parse_openai(const char *body, size_t len, const ds_api_limits *lim_in, const char *default_model,
                              ds_api_parsed *out, char *param, ds_err *err) {
    memset(out, 0, sizeof *out);
    ds_gen_request_init(&out->req);
    ds_api_limits lim;
    ds_api_limits_resolve(lim_in, &lim);
    cJSON *root = parse_body(body, len, param, err);
    if (!root) return err && err->code ? err->code : DS_ERR_FORMAT;
    ds_status s = DS_OK;
    if (default_model) snprintf(out->req.model, sizeof out->req.model, "%s", default_model);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (m) s = get_model(m, &out->req, param, err);
    for (const cJSON *f = root->child; f && s == DS_OK; f = f->next) {
        const char *k = f->string;
        bool handled;
        int64_t v;
        if (!strcmp(k, "model")) continue;
        if ((s = common_field(f, &lim, out, &handled, param, err)) != DS_OK || handled) continue;
        if (!strcmp(k, "prompt")) {
            if (!cJSON_IsString(f) || !f->valuestring[0] || strlen(f->valuestring) > 4000)
                s = bad(param, k, err, DS_ERR_INVALID_ARG, "expected a non-empty string of at most 4000 characters%s", "", 0);
            else if (!(out->prompt = strdup(f->valuestring))) s = DS_FAIL(err, DS_ERR_OOM, "out of memory");
        } else if (!strcmp(k, "n")) {
            if ((s = get_int(f, k, 1, lim.max_images < 10 ? lim.max_images : 10, &v, param, err)) == DS_OK)
                out->req.num_images = (int)v;
        } else if (!strcmp(k, "size")) {
            s = get_size(f, &out->req, param, err);
        } else if (!strcmp(k, "response_format")) {
            if (!cJSON_IsString(f) || (strcmp(f->valuestring, "b64_json") && strcmp(f->valuestring, "url")))
                s = bad(param, k, err, DS_ERR_INVALID_ARG, "must be \"b64_json\" or \"url\"%s", "", 0);
            else out->format = f->valuestring[0] == 'u' ? DS_API_FMT_URL : DS_API_FMT_B64;
        } else if (!strcmp(k, "output_format")) {
            if (!cJSON_IsString(f) || strcmp(f->valuestring, "png"))
                s = bad(param, k, err, DS_ERR_INVALID_ARG, "only \"png\" is supported%s", "", 0);
        } else if (!strcmp(k, "stream")) {
            if (!cJSON_IsBool(f)) s = bad(param, k, err, DS_ERR_INVALID_ARG, "expected a boolean%s", "", 0);
            else if (cJSON_IsTrue(f))
                s = bad(param, k, err, DS_ERR_INVALID_ARG,
                        "streaming is not supported here: use POST /v1/generate with mode async and "
                        "GET /v1/jobs/{id}/events%s", "", 0);
        } else if (!strcmp(k, "quality") || !strcmp(k, "style") || !strcmp(k, "user") || !strcmp(k, "background") ||
                   !strcmp(k, "moderation")) {
            if (!cJSON_IsString(f) && !cJSON_IsNull(f))
                s = bad(param, k, err, DS_ERR_INVALID_ARG, "expected a string%s", "", 0);
            /* accepted for compatibility; they do not change a diffusion transformer's output */
        } else if (!strcmp(k, "output_compression") || !strcmp(k, "partial_images")) {
            if (!cJSON_IsNull(f)) s = get_int(f, k, 0, 100, &v, param, err);
        } else if (!strcmp(k, "class_labels")) {
            s = get_labels(f, &lim, &out->req, NULL, NULL, param, err);
        } else {
            s = bad(param, k, err, DS_ERR_INVALID_ARG, "unknown field%s", "", 0);
        }
    }
    if (s == DS_OK && !out->prompt && out->req.n_labels == 0 && !out->req.prompt_embeds.data)
        s = bad(param, "prompt", err, DS_ERR_INVALID_ARG, "required%s", "", 0);
    if (s == DS_OK) s = finish(&lim, out, param, err);
    cJSON_Delete(root);
    if (s != DS_OK) ds_api_parsed_free(out);
    return s;
}
