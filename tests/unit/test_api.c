/* test_api.c - the API layer without sockets: base64, the request parser/validator (types, ranges, unknown
 * fields by name, limits, tensors, cache configs, OpenAI bodies) and the routes over a live engine with the
 * tiny DiT (status codes, error shapes, auth, CORS, job lifecycle, SSE order, images). */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "request.h"
#include "response.h"
#include "routes.h"

#define DIT_DIR DS_TEST_DATA_DIR "/ckpt/dit-tiny"

Test(api_base64, roundtrip_and_errors) {
    const char *cases[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char enc[16];
        ds_base64_encode((const uint8_t *)cases[i], strlen(cases[i]), enc);
        cr_assert_str_eq(enc, want[i]);
        uint8_t *dec;
        size_t n;
        cr_assert_eq(ds_base64_decode(enc, strlen(enc), &dec, &n, NULL), DS_OK);
        cr_assert_eq(n, strlen(cases[i]));
        cr_assert_eq(memcmp(dec, cases[i], n), 0);
        free(dec);
    }
    uint8_t *dec;
    size_t n;
    cr_assert_eq(ds_base64_decode("Zm9", 3, &dec, &n, NULL), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_base64_decode("Zm9!", 4, &dec, &n, NULL), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_base64_decode("Z=9v", 4, &dec, &n, NULL), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_base64_decode("Zg==Zg==", 8, &dec, &n, NULL), DS_ERR_INVALID_ARG);
}

static ds_status fake_label(void *ctx, const char *model, const char *name, int32_t *id, ds_err *err) {
    (void)ctx;
    (void)model;
    if (!strcmp(name, "golden retriever")) {
        *id = 207;
        return DS_OK;
    }
    return DS_FAIL(err, DS_ERR_NOT_FOUND, "no label '%s'", name);
}

static ds_status parse(const char *body, ds_api_parsed *p, char *param, ds_err *err) {
    ds_api_limits lim = {.max_steps = 100, .max_pixels = 512 * 512, .max_images = 4};
    return ds_api_parse_generate(body, strlen(body), &lim, fake_label, NULL, p, param, err);
}

Test(api_request, full_valid_body) {
    ds_api_parsed p;
    char param[DS_API_PARAM_LEN];
    ds_err err;
    const char *b = "{\"model\":\"dit\",\"class_labels\":[1,\"golden retriever\"],\"steps\":12,\"seed\":9007199254740991,"
                    "\"width\":256,\"height\":256,\"guidance_scale\":1.5,\"scheduler\":\"dpmpp_2m\",\"num_images\":2,"
                    "\"cache_config\":{\"Fn_compute_blocks\":2,\"residual_diff_threshold\":0.2},\"mode\":\"async\"}";
    cr_assert_eq(parse(b, &p, param, &err), DS_OK, "%s", err.msg);
    cr_assert_str_eq(p.req.model, "dit");
    cr_assert_eq(p.req.n_labels, 2);
    cr_assert_eq(p.req.class_labels[1], 207);
    cr_assert_eq(p.req.steps, 12);
    cr_assert_eq(p.req.seed, 9007199254740991ull);
    cr_assert(p.seed_given);
    cr_assert_eq(p.req.scheduler, DS_SCHED_DPMPP_2M);
    cr_assert(p.async);
    cr_assert(p.req.has_cache);
    cr_assert(p.req.cache.enabled);
    cr_assert_eq(p.req.cache.Fn_compute_blocks, 2);
    ds_api_parsed_free(&p);

    cr_assert_eq(parse("{\"model\":\"dit\",\"class_labels\":[3]}", &p, param, &err), DS_OK);
    cr_assert(!p.seed_given);
    cr_assert_lt(p.req.seed, 1ull << 53);
    cr_assert(!p.req.has_cache);
    cr_assert(isnan(p.req.guidance_scale));
    ds_api_parsed_free(&p);

    cr_assert_eq(parse("{\"model\":\"dit\",\"class_labels\":[3],\"cache_config\":\"none\"}", &p, param, &err), DS_OK);
    cr_assert(p.req.has_cache && !p.req.cache.enabled);
    ds_api_parsed_free(&p);
    cr_assert_eq(parse("{\"model\":\"dit\",\"class_labels\":[3],\"cache_config\":\"F4B0_W4MC3_T0O1_R0.12\"}", &p, param, &err),
                 DS_OK, "%s", err.msg);
    cr_assert_eq(p.req.cache.Fn_compute_blocks, 4);
    ds_api_parsed_free(&p);
}

/* Each malformed body fails with the given status and param. */
static void bad(const char *body, ds_status want, const char *want_param) {
    ds_api_parsed p;
    char param[DS_API_PARAM_LEN] = "x";
    ds_err err;
    ds_err_clear(&err);
    ds_status s = parse(body, &p, param, &err);
    cr_assert_eq(s, want, "%s: got %s (%s)", body, ds_status_name(s), err.msg);
    cr_assert_str_eq(param, want_param, "%s: param '%s' (%s)", body, param, err.msg);
    cr_assert(err.msg[0]);
}

Test(api_request, rejects_bad_bodies_by_field) {
    bad("", DS_ERR_FORMAT, "");
    bad("{", DS_ERR_FORMAT, "");
    bad("[1,2]", DS_ERR_FORMAT, "");
    bad("{\"model\":\"dit\"} trailing", DS_ERR_FORMAT, "");
    bad("{\"class_labels\":[1]}", DS_ERR_INVALID_ARG, "model");
    bad("{\"model\":7,\"class_labels\":[1]}", DS_ERR_INVALID_ARG, "model");
    bad("{\"model\":\"\",\"class_labels\":[1]}", DS_ERR_INVALID_ARG, "model");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"bogus\":1}", DS_ERR_INVALID_ARG, "bogus");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"steps\":0}", DS_ERR_INVALID_ARG, "steps");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"steps\":101}", DS_ERR_INVALID_ARG, "steps");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"steps\":2.5}", DS_ERR_INVALID_ARG, "steps");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"steps\":\"4\"}", DS_ERR_INVALID_ARG, "steps");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"steps\":1e400}", DS_ERR_INVALID_ARG, "steps");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"width\":-64,\"height\":64}", DS_ERR_INVALID_ARG, "width");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"width\":64}", DS_ERR_INVALID_ARG, "height");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"width\":1024,\"height\":1024}", DS_ERR_INVALID_ARG, "width");
    bad("{\"model\":\"dit\",\"class_labels\":[1000]}", DS_ERR_INVALID_ARG, "class_labels");
    bad("{\"model\":\"dit\",\"class_labels\":[]}", DS_ERR_INVALID_ARG, "class_labels");
    bad("{\"model\":\"dit\",\"class_labels\":1}", DS_ERR_INVALID_ARG, "class_labels");
    bad("{\"model\":\"dit\",\"class_labels\":[\"no such thing\"]}", DS_ERR_INVALID_ARG, "class_labels");
    bad("{\"model\":\"dit\",\"class_labels\":[true]}", DS_ERR_INVALID_ARG, "class_labels");
    bad("{\"model\":\"dit\",\"class_labels\":[1,2,3],\"num_images\":2}", DS_ERR_INVALID_ARG, "num_images");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"num_images\":5}", DS_ERR_INVALID_ARG, "num_images");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"seed\":-1}", DS_ERR_INVALID_ARG, "seed");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"seed\":18446744073709551615}", DS_ERR_INVALID_ARG, "seed");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"guidance_scale\":\"high\"}", DS_ERR_INVALID_ARG, "guidance_scale");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"guidance_scale\":-1}", DS_ERR_INVALID_ARG, "guidance_scale");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"scheduler\":\"euler_a\"}", DS_ERR_INVALID_ARG, "scheduler");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"mode\":\"later\"}", DS_ERR_INVALID_ARG, "mode");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"cache_config\":42}", DS_ERR_INVALID_ARG, "cache_config");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"cache_config\":{\"Fn_compute_blocks\":\"x\"}}", DS_ERR_INVALID_ARG,
        "cache_config");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"cache_config\":{\"nope\":1}}", DS_ERR_INVALID_ARG, "cache_config");
    bad("{\"model\":\"dit\",\"class_labels\":[1],\"cache_config\":\"F8B0_garbage\"}", DS_ERR_INVALID_ARG, "cache_config");
    bad("{\"model\":\"dit\",\"model\":\"x\",\"class_labels\":[1]}", DS_ERR_INVALID_ARG, "model");
    bad("{\"model\":\"dit\",\"prompt_embeds\":{\"shape\":[1,2],\"dtype\":\"f16\",\"data_b64\":\"\"}}",
        DS_ERR_INVALID_ARG, "prompt_embeds");
    bad("{\"model\":\"dit\",\"prompt_embeds\":{\"shape\":[1,2],\"dtype\":\"f32\",\"data_b64\":\"AAAAAA==\"}}",
        DS_ERR_INVALID_ARG, "prompt_embeds");
    bad("{\"model\":\"dit\",\"prompt_embeds\":{\"shape\":[1,-2],\"data_b64\":\"\"}}", DS_ERR_INVALID_ARG, "prompt_embeds");
    bad("{\"model\":\"dit\",\"prompt_embeds\":{\"shape\":[100000,100000],\"data_b64\":\"\"}}", DS_ERR_INVALID_ARG,
        "prompt_embeds");
    bad("{\"model\":\"dit\",\"prompt_embeds\":{\"shape\":[1],\"data_b64\":\"AACAfw==\"}}", DS_ERR_INVALID_ARG,
        "prompt_embeds"); /* +Inf */
    /* deep nesting is refused by the JSON reader, not a crash */
    char deep[4096];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{\"model\":");
    for (int i = 0; i < 1500; i++) deep[n++] = '[';
    deep[n] = 0;
    bad(deep, DS_ERR_FORMAT, "");
}

Test(api_request, tensor_fields) {
    ds_api_parsed p;
    char param[DS_API_PARAM_LEN];
    ds_err err;
    float v[2] = {1.5f, -2.0f};
    char b64[16];
    ds_base64_encode((const uint8_t *)v, sizeof v, b64);
    char body[256];
    snprintf(body, sizeof body, "{\"model\":\"flux\",\"prompt_embeds\":{\"shape\":[1,1,2],\"dtype\":\"f32\",\"data_b64\":\"%s\"}}",
             b64);
    cr_assert_eq(parse(body, &p, param, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(p.req.prompt_embeds.ndim, 3);
    cr_assert_eq(p.req.prompt_embeds.shape[2], 2);
    cr_assert_float_eq(p.req.prompt_embeds.data[1], -2.0f, 0);
    ds_api_parsed_free(&p);
}

Test(api_request, openai_body) {
    ds_api_parsed p;
    char param[DS_API_PARAM_LEN];
    ds_err err;
    const char *b = "{\"prompt\":\"golden retriever\",\"n\":2,\"size\":\"64x64\",\"response_format\":\"url\",\"quality\":"
                    "\"high\",\"user\":\"u1\",\"steps\":5,\"seed\":3,\"cache_config\":\"none\"}";
    cr_assert_eq(ds_api_parse_openai(b, strlen(b), NULL, "dit", &p, param, &err), DS_OK, "%s", err.msg);
    cr_assert_str_eq(p.req.model, "dit");
    cr_assert_str_eq(p.prompt, "golden retriever");
    cr_assert_eq(p.req.num_images, 2);
    cr_assert_eq(p.req.width, 64);
    cr_assert_eq(p.format, DS_API_FMT_URL);
    cr_assert_eq(p.req.steps, 5);
    ds_api_parsed_free(&p);
    const char *bads[][2] = {{"{\"n\":1}", "prompt"},
                             {"{\"prompt\":\"x\",\"size\":\"big\"}", "size"},
                             {"{\"prompt\":\"x\",\"n\":11}", "n"},
                             {"{\"prompt\":\"x\",\"response_format\":\"jpeg\"}", "response_format"},
                             {"{\"prompt\":\"x\",\"stream\":true}", "stream"},
                             {"{\"prompt\":\"x\",\"output_format\":\"webp\"}", "output_format"},
                             {"{\"prompt\":\"x\",\"guidance\":3}", "guidance"}};
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(ds_api_parse_openai(bads[i][0], strlen(bads[i][0]), NULL, "dit", &p, param, &err), DS_ERR_INVALID_ARG,
                     "%s", bads[i][0]);
        cr_assert_str_eq(param, bads[i][1], "%s: %s", bads[i][0], param);
    }
}

/* ---- routes over a live engine -------------------------------------------------------------------------- */

static ds_engine *eng;
static ds_api *api;

static void setup(void) {
    ds_engine_model_spec spec = {.name = "dit", .dir = DIT_DIR};
    ds_engine_opts o = {.models = &spec, .n_models = 1, .queue_size = 2, .skip_warmup = true};
    ds_err err;
    cr_assert_eq(ds_engine_create(&o, &eng, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_engine_wait_ready(eng, 60, &err), DS_OK, "%s", err.msg);
    const char *cors[] = {"https://app.example"};
    ds_api_opts ao = {.api_key = "s3cret", .cors_origins = cors, .n_cors_origins = 1};
    api = ds_api_create(eng, &ao);
}

static void teardown(void) {
    ds_api_free(api);
    ds_engine_free(eng);
}

static cJSON *call(const char *method, const char *path, const char *body, const char *auth, ds_api_response *r) {
    ds_api_request q = {.method = method, .path = path, .body = body, .body_len = body ? strlen(body) : 0,
                        .authorization = auth, .host = "127.0.0.1:1"};
    ds_api_handle(api, &q, r);
    return r->body && !strcmp(r->content_type, "application/json") ? cJSON_ParseWithLength(r->body, r->body_len) : NULL;
}

static const char *str(const cJSON *o, const char *path) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *x = o;
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && x; t = strtok_r(NULL, ".", &save))
        x = cJSON_GetObjectItemCaseSensitive(x, t);
    return cJSON_IsString(x) ? x->valuestring : cJSON_IsNull(x) ? "null" : "?";
}

#define AUTH "Bearer s3cret"

Test(api_routes, auth_health_models_errors, .init = setup, .fini = teardown) {
    ds_api_response r;
    cJSON *j = call("GET", "/health", NULL, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(str(j, "status"), "ok");
    cJSON_Delete(j);
    ds_api_response_free(&r);

    j = call("GET", "/v1/models", NULL, NULL, &r);
    cr_assert_eq(r.status, 401);
    cr_assert_str_eq(str(j, "error.type"), "authentication_error");
    cJSON_Delete(j);
    ds_api_response_free(&r);
    j = call("GET", "/v1/models", NULL, "Bearer s3cre", &r);
    cr_assert_eq(r.status, 401);
    cJSON_Delete(j);
    ds_api_response_free(&r);
    j = call("GET", "/v1/models", NULL, "Bearer s3cretX", &r);
    cr_assert_eq(r.status, 401);
    cJSON_Delete(j);
    ds_api_response_free(&r);
    j = call("GET", "/v1/models", NULL, AUTH, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(str(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "data"), 0), "id"), "dit");
    cJSON_Delete(j);
    ds_api_response_free(&r);

    struct {
        const char *m, *p, *body;
        int status;
        const char *param;
    } cases[] = {
        {"POST", "/v1/generate", "{\"model\":\"nope\",\"class_labels\":[1]}", 404, "model"},
        {"POST", "/v1/generate", "{\"model\":\"dit\"}", 400, "class_labels"},
        {"POST", "/v1/generate", "{\"model\":\"dit\",\"class_labels\":[1],\"x\":1}", 400, "x"},
        {"POST", "/v1/generate", "not json", 400, "null"},
        {"GET", "/v1/generate", NULL, 405, "null"},
        {"GET", "/v1/jobs/job-0123456789abcdef", NULL, 404, "id"},
        {"GET", "/v1/jobs/../../etc/passwd", NULL, 404, "null"},
        {"GET", "/v1/jobs/job-0123456789ABCDEF", NULL, 404, "id"},
        {"GET", "/v1/stats/%2e%2e", NULL, 404, "id"},
        {"GET", "/v1/images/job-0123456789abcdef/0.png", NULL, 404, "id"},
        {"PUT", "/v1/jobs/job-0123456789abcdef", NULL, 405, "null"},
        {"GET", "/nowhere", NULL, 404, "null"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        j = call(cases[i].m, cases[i].p, cases[i].body, AUTH, &r);
        cr_assert_eq(r.status, cases[i].status, "%s %s: %d %s", cases[i].m, cases[i].p, r.status, r.body);
        cr_assert_str_eq(str(j, "error.param"), cases[i].param, "%s %s: %s", cases[i].m, cases[i].p, r.body);
        cr_assert_neq(strcmp(str(j, "error.message"), "?"), 0);
        cJSON_Delete(j);
        ds_api_response_free(&r);
    }
    /* CORS preflight from an allowed origin and from another */
    ds_api_request q = {.method = "OPTIONS", .path = "/v1/generate", .origin = "https://app.example"};
    ds_api_handle(api, &q, &r);
    cr_assert_eq(r.status, 204);
    cr_assert_str_eq(r.headers[0].value, "https://app.example");
    ds_api_response_free(&r);
    q.origin = "https://evil.example";
    ds_api_handle(api, &q, &r);
    cr_assert_eq(r.status, 403);
    ds_api_response_free(&r);
}

Test(api_routes, sync_async_events_image_cancel, .init = setup, .fini = teardown) {
#ifndef DS_HAVE_PNG
    cr_skip_test("built without libpng: no PNG images");
#endif
    ds_api_response r;
    cJSON *j = call("POST", "/v1/generate", "{\"model\":\"dit\",\"class_labels\":[\"golden retriever\"],\"steps\":3,\"seed\":5}",
                    AUTH, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(str(j, "state"), "done");
    cJSON *img0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "images"), 0);
    cr_assert_str_neq(str(img0, "png_b64"), "?");
    cr_assert_eq(cJSON_GetObjectItem(j, "seed")->valuedouble, 5);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "stats"), "steps")->valueint, 3);
    char id[64];
    snprintf(id, sizeof id, "%s", str(j, "id"));
    cJSON_Delete(j);
    ds_api_response_free(&r);

    char path[128];
    snprintf(path, sizeof path, "/v1/images/%s/0.png", id);
    cJSON_Delete(call("GET", path, NULL, AUTH, &r));
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.content_type, "image/png");
    cr_assert_eq(memcmp(r.body, "\x89PNG", 4), 0);
    ds_api_response_free(&r);
    snprintf(path, sizeof path, "/v1/images/%s/01.png", id);
    cJSON_Delete(call("GET", path, NULL, AUTH, &r));
    cr_assert_eq(r.status, 404);
    ds_api_response_free(&r);
    snprintf(path, sizeof path, "/v1/stats/%s", id);
    j = call("GET", path, NULL, AUTH, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(str(j, "cache_config_str"), "NONE");
    cJSON_Delete(j);
    ds_api_response_free(&r);

    /* async: 202 at once, then events in order up to done */
    j = call("POST", "/v1/generate", "{\"model\":\"dit\",\"class_labels\":[1],\"steps\":5,\"mode\":\"async\"}", AUTH, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    snprintf(id, sizeof id, "%s", str(j, "id"));
    cJSON_Delete(j);
    ds_api_response_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s/events", id);
    cJSON_Delete(call("GET", path, NULL, AUTH, &r));
    cr_assert_not_null(r.sse);
    char all[200000];
    size_t n = 0;
    ssize_t k;
    while ((k = ds_sse_read(r.sse, all + n, sizeof all - 1 - n, 5000)) > 0) n += (size_t)k;
    all[n] = 0;
    ds_api_response_free(&r);
    const char *pos = all;
    for (int s = 1; s <= 5; s++) {
        char want[64];
        snprintf(want, sizeof want, "\"step\":%d,", s);
        const char *at = strstr(pos, want);
        cr_assert_not_null(at, "step %d after offset %td", s, pos - all);
        pos = at;
    }
    cr_assert_not_null(strstr(pos, "event: done"));

    /* cancel: a long job, then DELETE */
    j = call("POST", "/v1/generate", "{\"model\":\"dit\",\"class_labels\":[1],\"steps\":100,\"mode\":\"async\"}", AUTH, &r);
    snprintf(id, sizeof id, "%s", str(j, "id"));
    cJSON_Delete(j);
    ds_api_response_free(&r);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    j = call("DELETE", path, NULL, AUTH, &r);
    cr_assert_eq(r.status, 200);
    cJSON_Delete(j);
    ds_api_response_free(&r);
    for (int t = 0; t < 100; t++) {
        j = call("GET", path, NULL, AUTH, &r);
        bool fin = !strcmp(str(j, "state"), "cancelled");
        cJSON_Delete(j);
        ds_api_response_free(&r);
        if (fin) break;
        cr_assert_lt(t, 99, "job never cancelled");
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    snprintf(path, sizeof path, "/v1/images/%s/0.png", id);
    j = call("GET", path, NULL, AUTH, &r);
    cr_assert_eq(r.status, 409);
    cJSON_Delete(j);
    ds_api_response_free(&r);
}
