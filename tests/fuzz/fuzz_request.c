/* fuzz_request.c - libFuzzer target for the HTTP request parser and validator (api/request.c, with
 * api/base64.c and the cache-config parser it calls): the input is a request body, copied into an
 * exact-size heap buffer (no NUL terminator), and fed to
 *   - ds_api_parse_generate (POST /v1/generate) with a label-name callback that knows a few names, and
 *   - ds_api_parse_openai   (POST /v1/images/generations),
 * each under the default limits and under tight ones. Every parse is checked: on failure the status is one
 * of the documented ones, `param` is a NUL-terminated string shorter than DS_API_PARAM_LEN and the parsed
 * request was released (zeroed); on success every field is within its limits. Everything is freed, so
 * LeakSanitizer flags any leak. Run: tools/run_fuzz.sh SECONDS fuzz_request. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The engine's id2label stand-in: a few ImageNet names; "flux" has no labels (UNSUPPORTED). */
static ds_status fake_label(void *ctx, const char *model, const char *name, int32_t *id, ds_err *err) {
    (void)ctx;
    if (!strcmp(model, "flux")) return DS_FAIL(err, DS_ERR_UNSUPPORTED, "model '%s' has no class labels", model);
    if (!strcmp(name, "goldfish")) *id = 1;
    else if (!strcmp(name, "golden retriever")) *id = 207;
    else if (!strcmp(name, "oom")) return DS_FAIL(err, DS_ERR_OOM, "out of memory");
    else return DS_FAIL(err, DS_ERR_NOT_FOUND, "unknown label '%s'", name);
    return DS_OK;
}

static void check_tensor(const ds_req_tensor *t, const ds_api_limits *lim) {
    if (!t->data) return;
    if (t->ndim < 1 || t->ndim > 4) abort();
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 1) abort();
        n *= t->shape[i];
        if (n > lim->max_tensor_elems) abort();
    }
    for (int64_t i = 0; i < n; i++) /* touches every element: ASan checks the size */
        if (!isfinite(t->data[i])) abort();
}

static void check(ds_status s, ds_api_parsed *p, const char *param, const ds_err *err, const ds_api_limits *lim_in,
                  bool openai) {
    if (memchr(param, 0, DS_API_PARAM_LEN) == NULL) abort();
    if (s != DS_OK) {
        if (s != DS_ERR_FORMAT && s != DS_ERR_INVALID_ARG && s != DS_ERR_NOT_FOUND && s != DS_ERR_OOM) abort();
        if (err->code != s) abort();
        /* released on error */
        if (p->prompt || p->req.class_labels || p->req.prompt_embeds.data || p->req.pooled_prompt_embeds.data ||
            p->req.negative_prompt_embeds.data || p->req.negative_pooled_prompt_embeds.data)
            abort();
        return;
    }
    ds_api_limits lim;
    ds_api_limits_resolve(lim_in, &lim);
    const ds_gen_request *r = &p->req;
    size_t ml = strnlen(r->model, sizeof r->model);
    if (ml == 0 || ml >= sizeof r->model) abort();
    if (r->steps < 0 || r->steps > lim.max_steps) abort();
    if (r->width < 0 || r->height < 0 || (r->width > 0) != (r->height > 0)) abort();
    if ((int64_t)r->width * r->height > lim.max_pixels) abort();
    if (r->n_labels < 0 || r->n_labels > lim.max_labels || (r->n_labels > 0) != (r->class_labels != NULL)) abort();
    for (int i = 0; i < r->n_labels; i++)
        if (r->class_labels[i] < 0 || r->class_labels[i] > 999) abort();
    int per = r->num_images > 0 ? r->num_images : 1;
    if (r->num_images < 0 || (int64_t)(r->n_labels > 0 ? r->n_labels : 1) * per > lim.max_images) abort();
    if (r->seed > 9007199254740991ull) abort();
    if (!isnan(r->guidance_scale) && !(r->guidance_scale >= 0 && r->guidance_scale <= 100)) abort();
    if (!isnan(r->true_cfg_scale) && !(r->true_cfg_scale >= 0 && r->true_cfg_scale <= 100)) abort();
    check_tensor(&r->prompt_embeds, &lim);
    check_tensor(&r->pooled_prompt_embeds, &lim);
    check_tensor(&r->negative_prompt_embeds, &lim);
    check_tensor(&r->negative_pooled_prompt_embeds, &lim);
    if (openai) {
        if (!p->prompt && r->n_labels == 0 && !r->prompt_embeds.data) abort();
        if (p->prompt && (!p->prompt[0] || strlen(p->prompt) > 4000)) abort();
    } else if (p->prompt) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Exact-size heap copy so ASan flags any read past `size` (the body is not NUL-terminated). */
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    if (size) memcpy(body, data, size);
    static const ds_api_limits tight = {.max_steps = 10, .max_pixels = 4096, .max_images = 2, .max_labels = 3,
                                        .max_tensor_elems = 64};
    const ds_api_limits *lims[2] = {NULL, &tight};
    for (int l = 0; l < 2; l++) {
        ds_api_parsed p;
        char param[DS_API_PARAM_LEN];
        ds_err err;
        memset(param, 'x', sizeof param); /* the parser must terminate it */
        ds_status s = ds_api_parse_generate(body, size, lims[l], fake_label, NULL, &p, param, &err);
        check(s, &p, param, &err, lims[l], false);
        ds_api_parsed_free(&p);

        memset(param, 'x', sizeof param);
        s = ds_api_parse_openai(body, size, lims[l], l ? NULL : "dit", &p, param, &err);
        check(s, &p, param, &err, lims[l], true);
        ds_api_parsed_free(&p);
    }
    free(body);
    return 0;
}
