/* request.h - JSON request bodies -> validated C requests (ds_gen_request). This is where JSON stops: every
 * field is type- and range-checked, unknown fields are rejected by name, and the offending field is
 * reported as `param` for the OpenAI-shaped error. Two bodies are understood:
 *   - ditserve's own POST /v1/generate (see docs/api.md for every field, default and limit), and
 *   - OpenAI's POST /v1/images/generations (prompt, n, size, response_format, ...) with ditserve's extras
 *     (steps, seed, cache_config, ...) as extra top-level fields.
 * Label names are resolved through a callback (the engine's id2label), so the parser itself needs no
 * engine and can be fuzzed alone. */
#ifndef DS_REQUEST_H
#define DS_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "status.h"

#define DS_API_PARAM_LEN 64

/* Caps from the command line (0 = the default in brackets). */
typedef struct ds_api_limits {
    int     max_steps;   /* [200] */
    int64_t max_pixels;  /* width * height [1048576] */
    int     max_images;  /* images per request: labels x num_images [4] */
    int     max_labels;  /* [16] */
    int64_t max_tensor_elems; /* per embedding tensor [4194304] */
} ds_api_limits;

/* Resolve an ImageNet label name for a model to a class id. Errors: DS_ERR_NOT_FOUND naming the label,
 * others as the engine returns them. */
typedef ds_status (*ds_api_label_fn)(void *ctx, const char *model, const char *name, int32_t *id, ds_err *err);

typedef enum ds_api_response_format { DS_API_FMT_B64 = 0, DS_API_FMT_URL } ds_api_response_format;

/* A parsed request. Free with ds_api_parsed_free. */
typedef struct ds_api_parsed {
    ds_gen_request req;
    bool  async;          /* "mode": "async" */
    bool  seed_given;     /* false: seed was chosen at random */
    /* OpenAI endpoint */
    char *prompt;         /* owned */
    ds_api_response_format format;
} ds_api_parsed;

/* Parse and validate a POST /v1/generate body (len bytes, need not be NUL-terminated). label may be NULL
 * (then names are refused). On error param (cap >= DS_API_PARAM_LEN) names the field ("" when the body as a
 * whole is wrong) and *out is freed. Errors: DS_ERR_FORMAT (not JSON / not an object), DS_ERR_INVALID_ARG
 * (a field: unknown, wrong type, out of range), DS_ERR_NOT_FOUND (unknown label), DS_ERR_OOM. */
ds_status ds_api_parse_generate(const char *body, size_t len, const ds_api_limits *lim, ds_api_label_fn label,
                                void *label_ctx, ds_api_parsed *out, char *param, ds_err *err);

/* Parse and validate a POST /v1/images/generations body. `default_model` is used when "model" is absent.
 * The prompt is kept in out->prompt; for class-conditional models the caller resolves it (ds_api_label_fn)
 * unless class_labels were given as an extra. Errors as ds_api_parse_generate. */
ds_status ds_api_parse_openai(const char *body, size_t len, const ds_api_limits *lim, const char *default_model,
                              ds_api_parsed *out, char *param, ds_err *err);

/* Release what a parsed request owns and zero it (NULL allowed). */
void ds_api_parsed_free(ds_api_parsed *p);

/* Fill the defaults of lim's zero fields into *out. */
void ds_api_limits_resolve(const ds_api_limits *lim, ds_api_limits *out);

/* A random seed in 0 .. 2^53-1 (exactly representable in JSON). */
uint64_t ds_api_random_seed(void);

#endif /* DS_REQUEST_H */
