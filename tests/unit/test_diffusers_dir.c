/* test_diffusers_dir.c - the diffusers directory loader: tiny pipeline directories written to a
 * temp dir (model_index.json, configs, a single-file and a 2-shard component, a scheduler), lookups
 * by checkpoint key, config getters, and the error paths (missing/malformed files, missing shard,
 * weight_map naming an absent tensor, .bin-only component). */
#include <criterion/criterion.h>
#include <math.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diffusers_dir.h"
#include "test_util.h"

/* ---- temp-dir helpers --------------------------------------------------------------------------- */

static char g_root[64];

static void put_str(const char *rel, const char *text) { ds_test_write(g_root, rel, text, strlen(text)); }

/* A safetensors image: u64 LE header length, header, data. */
static void put_st(const char *rel, const char *hdr, const void *data, size_t dlen) {
    size_t hl = strlen(hdr), len = 8 + hl + dlen;
    uint8_t *b = malloc(len);
    for (int k = 0; k < 8; k++) b[k] = (uint8_t)((uint64_t)hl >> (8 * k));
    memcpy(b + 8, hdr, hl);
    if (dlen) memcpy(b + 8 + hl, data, dlen);
    ds_test_write(g_root, rel, b, len);
    free(b);
}

static const char *k_index =
    "{\"_class_name\":\"DiTPipeline\",\"_diffusers_version\":\"0.30.0\","
    "\"transformer\":[\"diffusers\",\"DiTTransformer2DModel\"],"
    "\"vae\":[\"diffusers\",\"AutoencoderKL\"],"
    "\"scheduler\":[\"diffusers\",\"KarrasDiffusionSchedulers\"],"
    "\"safety_checker\":[null,null],"
    "\"id2label\":{\"0\":\"tench\",\"1\":\"goldfish\"}}";

static const char *k_tr_index =
    "{\"metadata\":{\"total_size\":28},\"weight_map\":{"
    "\"transformer_blocks.1.attn1.to_q.weight\":\"diffusion_pytorch_model-00002-of-00002.safetensors\","
    "\"pos_embed.proj.weight\":\"diffusion_pytorch_model-00001-of-00002.safetensors\","
    "\"transformer_blocks.0.attn1.to_q.weight\":\"diffusion_pytorch_model-00002-of-00002.safetensors\"}}";

/* Write the full happy-path pipeline into g_root. */
static void build_pipeline(void) {
    put_str("model_index.json", k_index);
    put_str("vae/config.json", "{\"_class_name\":\"AutoencoderKL\",\"in_channels\":3,\"scaling_factor\":0.18215,"
                               "\"block_out_channels\":[128,256],\"force_upcast\":true,\"act_fn\":\"silu\"}");
    float w[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b16[2] = {0x3C00, 0xC000}; /* 1.0, -2.0 */
    uint8_t vdata[28];
    memcpy(vdata, w, 24);
    memcpy(vdata + 24, b16, 4);
    put_st("vae/diffusion_pytorch_model.safetensors",
           "{\"encoder.conv_in.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
           "\"decoder.conv_out.bias\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[24,28]}}",
           vdata, sizeof vdata);

    put_str("transformer/config.json", "{\"num_layers\":2,\"attention_head_dim\":8,\"sample_size\":4}");
    put_str("transformer/diffusion_pytorch_model.safetensors.index.json", k_tr_index);
    float pe[3] = {0.25f, 0.5f, 0.75f};
    put_st("transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
           "{\"pos_embed.proj.weight\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", pe, sizeof pe);
    uint16_t q[4] = {0x3F80, 0x4000, 0x4040, 0x4080}; /* bf16 1, 2, 3, 4 */
    put_st("transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
           "{\"transformer_blocks.0.attn1.to_q.weight\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[0,4]},"
           "\"transformer_blocks.1.attn1.to_q.weight\":{\"dtype\":\"BF16\",\"shape\":[2,1],\"data_offsets\":[4,8]}}",
           q, sizeof q);
    put_str("scheduler/scheduler_config.json", "{\"_class_name\":\"DDIMScheduler\",\"num_train_timesteps\":1000}");
}

static ds_diffusers *open_ok(void) {
    ds_diffusers *pipe = NULL;
    ds_err err;
    cr_assert_eq(ds_diffusers_open(g_root, &pipe, &err), DS_OK, "%s", err.msg);
    return pipe;
}

static void expect_err(ds_status got, ds_status want, const ds_err *err, const char *substr) {
    cr_assert_eq(got, want, "expected %s, got %s (%s)", ds_status_name(want), ds_status_name(got), err->msg);
    cr_assert(strstr(err->msg, substr) != NULL, "message '%s' lacks '%s'", err->msg, substr);
}

/* ---- happy paths ------------------------------------------------------------------------------- */

Test(diffusers_dir, pipeline_index) {
    ds_test_mkdtemp(g_root, sizeof g_root, "dd_test");
    build_pipeline();
    ds_diffusers *pipe = open_ok();
    cr_assert_str_eq(ds_diffusers_class(pipe), "DiTPipeline");
    cr_assert_str_eq(ds_diffusers_dir(pipe), g_root);
    cr_assert_eq(ds_diffusers_component_count(pipe), 3);
    cr_assert_str_eq(ds_diffusers_component_name(pipe, 0), "transformer");
    cr_assert_str_eq(ds_diffusers_component_name(pipe, 1), "vae");
    cr_assert_str_eq(ds_diffusers_component_name(pipe, 2), "scheduler");
    cr_assert_null(ds_diffusers_component_name(pipe, 3));
    cr_assert(ds_diffusers_has_component(pipe, "vae"));
    cr_assert(!ds_diffusers_has_component(pipe, "safety_checker"));
    cr_assert(!ds_diffusers_has_component(pipe, "id2label"));
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(ds_diffusers_index(pipe), "id2label");
    cr_assert(cJSON_IsObject(labels));
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(labels, "1")->valuestring, "goldfish");

    const ds_component *c = NULL;
    ds_err err;
    expect_err(ds_diffusers_component(pipe, "safety_checker", &c, &err), DS_ERR_NOT_FOUND, &err,
               "component 'safety_checker' is absent");
    cr_assert_null(c);
    expect_err(ds_diffusers_component(pipe, "text_encoder", &c, &err), DS_ERR_NOT_FOUND, &err,
               "no component 'text_encoder'");
    ds_diffusers_close(pipe);
    ds_test_rmtree(g_root);
}

Test(diffusers_dir, single_file_component) {
    ds_test_mkdtemp(g_root, sizeof g_root, "dd_test");
    build_pipeline();
    ds_diffusers *pipe = open_ok();
    const ds_component *vae = NULL;
    ds_err err;
    cr_assert_eq(ds_diffusers_component(pipe, "vae", &vae, &err), DS_OK, "%s", err.msg);
    cr_assert_str_eq(vae->name, "vae");
    cr_assert_str_eq(vae->library, "diffusers");
    cr_assert_str_eq(vae->class_name, "AutoencoderKL");
    cr_assert(strstr(vae->path, "/vae") != NULL);
    cr_assert_not_null(vae->config);
    cr_assert_not_null(vae->weights);
    cr_assert_eq(ds_weights_shard_count(vae->weights), 1);
    cr_assert_eq(ds_weights_count(vae->weights), 2);
    cr_assert(strstr(ds_weights_label(vae->weights), "vae/diffusion_pytorch_model.safetensors") != NULL);

    int64_t in_ch = 0;
    cr_assert_eq(ds_config_get_int(vae->config, "in_channels", 0, &in_ch, &err), DS_OK);
    cr_assert_eq(in_ch, 3);
    double sf = 0;
    cr_assert_eq(ds_config_get_float(vae->config, "scaling_factor", 1.0, &sf, &err), DS_OK);
    cr_assert_eq(sf, 0.18215);

    const ds_st_tensor *t = ds_weights_find(vae->weights, "encoder.conv_in.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, DS_ST_F32);
    cr_assert_eq(t->shape[0], 2);
    cr_assert_eq(t->shape[1], 3);
    cr_assert_null(ds_weights_find(vae->weights, "encoder.conv_in.bias"));
    float w[6];
    cr_assert_eq(ds_weights_read(vae->weights, "encoder.conv_in.weight", DS_F32, w, sizeof w, 2, (int64_t[]){2, 3},
                                 &err), DS_OK, "%s", err.msg);
    for (int i = 0; i < 6; i++) cr_assert_eq(w[i], (float)(i + 1));
    float b[2];
    cr_assert_eq(ds_weights_read(vae->weights, "decoder.conv_out.bias", DS_F32, b, sizeof b, 1, (int64_t[]){2}, &err),
                 DS_OK, "%s", err.msg);
    cr_assert_eq(b[0], 1.0f);
    cr_assert_eq(b[1], -2.0f);
    expect_err(ds_weights_read(vae->weights, "nope", DS_F32, b, sizeof b, -1, NULL, &err), DS_ERR_NOT_FOUND, &err,
               "no tensor 'nope'");
    cr_assert(strstr(err.msg, "vae/diffusion_pytorch_model.safetensors") != NULL, "%s", err.msg);

    /* cached: the second request returns the same component */
    const ds_component *again = NULL;
    cr_assert_eq(ds_diffusers_component(pipe, "vae", &again, &err), DS_OK);
    cr_assert_eq(again, vae);
    ds_diffusers_close(pipe);
    ds_test_rmtree(g_root);
}

Test(diffusers_dir, sharded_component) {
    ds_test_mkdtemp(g_root, sizeof g_root, "dd_test");
    build_pipeline();
    ds_diffusers *pipe = open_ok();
    const ds_component *tr = NULL;
    ds_err err;
    cr_assert_eq(ds_diffusers_component(pipe, "transformer", &tr, &err), DS_OK, "%s", err.msg);
    const ds_weights *w = tr->weights;
    cr_assert_eq(ds_weights_shard_count(w), 2);
    cr_assert_eq(ds_weights_count(w), 3);
    cr_assert(strstr(ds_weights_label(w), "diffusion_pytorch_model.safetensors.index.json") != NULL);
    /* at(): name order */
    cr_assert_str_eq(ds_weights_at(w, 0)->name, "pos_embed.proj.weight");
    cr_assert_str_eq(ds_weights_at(w, 1)->name, "transformer_blocks.0.attn1.to_q.weight");
    cr_assert_str_eq(ds_weights_at(w, 2)->name, "transformer_blocks.1.attn1.to_q.weight");
    cr_assert_null(ds_weights_at(w, 3));

    const ds_st_tensor *q1 = ds_weights_findf(w, "transformer_blocks.%d.attn1.to_q.weight", 1);
    cr_assert_not_null(q1);
    cr_assert_eq(q1->shape[0], 2);
    cr_assert_eq(q1->shape[1], 1);
    cr_assert_null(ds_weights_findf(w, "transformer_blocks.%d.attn1.to_q.weight", 2));

    float out[3];
    cr_assert_eq(ds_weights_read(w, "transformer_blocks.1.attn1.to_q.weight", DS_F32, out, sizeof out, 2,
                                 (int64_t[]){2, 1}, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(out[0], 3.0f);
    cr_assert_eq(out[1], 4.0f);
    cr_assert_eq(ds_weights_read(w, "transformer_blocks.0.attn1.to_q.weight", DS_F32, out, sizeof out, 2,
                                 (int64_t[]){1, 2}, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], 2.0f);
    cr_assert_eq(ds_weights_read(w, "pos_embed.proj.weight", DS_F32, out, sizeof out, 1, (int64_t[]){3}, &err), DS_OK,
                 "%s", err.msg);
    cr_assert_eq(out[0], 0.25f);
    cr_assert_eq(out[2], 0.75f);
    /* a shape mismatch names the shard file */
    expect_err(ds_weights_read(w, "pos_embed.proj.weight", DS_F32, out, sizeof out, 1, (int64_t[]){4}, &err),
               DS_ERR_INVALID_ARG, &err, "00001-of-00002.safetensors: tensor 'pos_embed.proj.weight'");
    expect_err(ds_weights_read(w, "pos_embed.proj.bias", DS_F32, out, sizeof out, -1, NULL, &err), DS_ERR_NOT_FOUND,
               &err, "no tensor 'pos_embed.proj.bias'");

    int64_t layers = 0;
    cr_assert_eq(ds_config_get_int(tr->config, "num_layers", 0, &layers, &err), DS_OK);
    cr_assert_eq(layers, 2);

    /* scheduler: config from scheduler_config.json, no weights */
    const ds_component *sch = NULL;
    cr_assert_eq(ds_diffusers_component(pipe, "scheduler", &sch, &err), DS_OK, "%s", err.msg);
    cr_assert_null(sch->weights);
    cr_assert_not_null(sch->config);
    cr_assert(strstr(ds_config_label(sch->config), "scheduler_config.json") != NULL);
    int64_t steps = 0;
    cr_assert_eq(ds_config_get_int(sch->config, "num_train_timesteps", 0, &steps, &err), DS_OK);
    cr_assert_eq(steps, 1000);
    ds_diffusers_close(pipe);
    ds_test_rmtree(g_root);
}

Test(diffusers_dir, config_getters) {
    const char *text = "{\"i\":7,\"neg\":-3,\"f\":0.5,\"b\":false,\"s\":\"silu\",\"n\":null,\"frac\":2.5,"
                       "\"big\":1e300,\"arr\":[1,2,3],\"badarr\":[1,\"x\"],\"obj\":{\"k\":1}}";
    ds_config *cfg = NULL;
    ds_err err;
    cr_assert_eq(ds_config_parse(text, strlen(text), "cfg.json", &cfg, &err), DS_OK, "%s", err.msg);
    cr_assert_str_eq(ds_config_label(cfg), "cfg.json");
    int64_t i = 0;
    double f = 0;
    bool b = true;
    const char *s = NULL;
    cr_assert_eq(ds_config_get_int(cfg, "i", 0, &i, &err), DS_OK);
    cr_assert_eq(i, 7);
    cr_assert_eq(ds_config_get_int(cfg, "neg", 0, &i, &err), DS_OK);
    cr_assert_eq(i, -3);
    cr_assert_eq(ds_config_get_int(cfg, "missing", 42, &i, &err), DS_OK);
    cr_assert_eq(i, 42);
    cr_assert_eq(ds_config_get_int(cfg, "n", 9, &i, &err), DS_OK); /* null -> default */
    cr_assert_eq(i, 9);
    cr_assert_eq(ds_config_get_float(cfg, "f", 0, &f, &err), DS_OK);
    cr_assert_eq(f, 0.5);
    cr_assert_eq(ds_config_get_float(cfg, "i", 0, &f, &err), DS_OK); /* an int is a valid float */
    cr_assert_eq(f, 7.0);
    cr_assert_eq(ds_config_get_float(cfg, "missing", 1.25, &f, &err), DS_OK);
    cr_assert_eq(f, 1.25);
    cr_assert_eq(ds_config_get_bool(cfg, "b", true, &b, &err), DS_OK);
    cr_assert_eq(b, false);
    cr_assert_eq(ds_config_get_bool(cfg, "missing", true, &b, &err), DS_OK);
    cr_assert_eq(b, true);
    cr_assert_eq(ds_config_get_string(cfg, "s", NULL, &s, &err), DS_OK);
    cr_assert_str_eq(s, "silu");
    cr_assert_eq(ds_config_get_string(cfg, "missing", "gelu", &s, &err), DS_OK);
    cr_assert_str_eq(s, "gelu");
    cr_assert(ds_config_has(cfg, "i"));
    cr_assert(!ds_config_has(cfg, "n"));
    cr_assert(!ds_config_has(cfg, "missing"));

    expect_err(ds_config_get_int(cfg, "s", 0, &i, &err), DS_ERR_FORMAT, &err,
               "cfg.json: key 's': expected an integer, got a string");
    expect_err(ds_config_get_int(cfg, "frac", 0, &i, &err), DS_ERR_FORMAT, &err, "got a non-integral number");
    expect_err(ds_config_get_int(cfg, "big", 0, &i, &err), DS_ERR_FORMAT, &err, "key 'big': expected an integer");
    expect_err(ds_config_get_float(cfg, "b", 0, &f, &err), DS_ERR_FORMAT, &err,
               "key 'b': expected a number, got a boolean");
    expect_err(ds_config_get_bool(cfg, "i", false, &b, &err), DS_ERR_FORMAT, &err,
               "key 'i': expected a boolean, got a number");
    expect_err(ds_config_get_string(cfg, "obj", NULL, &s, &err), DS_ERR_FORMAT, &err,
               "key 'obj': expected a string, got an object");

    int64_t arr[4];
    int n = -1;
    cr_assert_eq(ds_config_get_int_array(cfg, "arr", arr, 4, &n, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(n, 3);
    cr_assert_eq(arr[0], 1);
    cr_assert_eq(arr[2], 3);
    cr_assert_eq(ds_config_get_int_array(cfg, "missing", arr, 4, &n, &err), DS_OK);
    cr_assert_eq(n, 0);
    expect_err(ds_config_get_int_array(cfg, "arr", arr, 2, &n, &err), DS_ERR_INVALID_ARG, &err, "more than 2 entries");
    expect_err(ds_config_get_int_array(cfg, "badarr", arr, 4, &n, &err), DS_ERR_FORMAT, &err,
               "key 'badarr': entry 1 is not an integer");
    expect_err(ds_config_get_int_array(cfg, "i", arr, 4, &n, &err), DS_ERR_FORMAT, &err, "expected an array");
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(ds_config_root(cfg), "obj");
    cr_assert(cJSON_IsObject(obj));
    ds_config_close(cfg);

    /* malformed configs */
    cfg = (ds_config *)0x1;
    expect_err(ds_config_parse("[1,2]", 5, "arr.json", &cfg, &err), DS_ERR_FORMAT, &err,
               "arr.json: top-level JSON value is not an object");
    cr_assert_null(cfg);
    expect_err(ds_config_parse("{\"a\":", 5, "cut.json", &cfg, &err), DS_ERR_FORMAT, &err, "cut.json: invalid JSON");
    /* length-bounded: the text after len is never read */
    expect_err(ds_config_parse("{\"a\":1}", 6, "bounded.json", &cfg, &err), DS_ERR_FORMAT, &err,
               "bounded.json: invalid JSON");
    expect_err(ds_config_parse("{} {}", 5, "two.json", &cfg, &err), DS_ERR_FORMAT, &err, "trailing characters");
    expect_err(ds_config_open("/nonexistent/config.json", &cfg, &err), DS_ERR_NOT_FOUND, &err,
               "/nonexistent/config.json");
}

/* ---- error paths ------------------------------------------------------------------------------- */

Test(diffusers_dir_bad, missing_model_index) {
    ds_test_mkdtemp(g_root, sizeof g_root, "dd_test");
    ds_diffusers *pipe = (ds_diffusers *)0x1;
    ds_err err;
    expect_err(ds_diffusers_open(g_root, &pipe, &err), DS_ERR_NOT_FOUND, &err, "no model_index.json");
    cr_assert_null(pipe);
    cr_assert(strstr(err.msg, g_root) != NULL, "%s", err.msg);
    ds_test_rmtree(g_root);
}

Test(diffusers_dir_bad, malformed_model_index) {
    ds_test_mkdtemp(g_root, sizeof g_root, "dd_test");
    ds_diffusers *pipe = NULL;
    ds_err err;
    put_str("model_index.json", "{\"_class_name\": \"DiTPipeline\", \"vae\": [\"diffusers\", ");
    expect_err(ds_diffusers_open(g_root, &pipe, &err), DS_ERR_FORMAT, &err, "model_index.json: invalid JSON");
    put_str("model_index.json", "{\"vae\": [\"diffusers\", \"AutoencoderKL\"]}");
    expect_err(ds_diffusers_open(g_root, &pipe, &err), DS_ERR_FORMAT, &err, "\"_class_name\" is missing");
    put_str("model_index.json", "{\"_class_name\": 3}");
    expect_err(ds_diffusers_open(g_root, &pipe, &err), DS_ERR_FORMAT, &err, "\"_class_name\" is a number");
    put_str("model_index.json", "{\"_class_name\": \"P\", \"vae\": [null, \"AutoencoderKL\"]}");
    expect_err(ds_diffusers_open(g_root, &pipe, &err), DS_ERR_FORMAT, &err,
               "component 'vae' must be [library, class] strings or [null, null]");
    put_str("model_index.json", "{\"_class_name\": \"P\", \"..\": [\"diffusers\", \"AutoencoderKL\"]}");
    expect_err(ds_diffusers_open(g_root, &pipe, &err), DS_ERR_FORMAT, &err, "not a plain directory name");
    put_str("model_index.json", "{\"_class_name\": \"P\", \"vae\": [null, null], \"vae\": [\"diffusers\", \"X\"]}");
    expect_err(ds_diffusers_open(g_root, &pipe, &err), DS_ERR_FORMAT, &err, "key 'vae' appears twice");
    put_str("model_index.json", "[\"DiTPipeline\"]");
    expect_err(ds_diffusers_open(g_root, &pipe, &err), DS_ERR_FORMAT, &err, "not an object");
    cr_assert_null(pipe);
    ds_test_rmtree(g_root);
}

Test(diffusers_dir_bad, malformed_component_config) {
    ds_test_mkdtemp(g_root, sizeof g_root, "dd_test");
    build_pipeline();
    put_str("vae/config.json", "{\"in_channels\": 3,,}");
    ds_diffusers *pipe = open_ok();
    const ds_component *c = NULL;
    ds_err err;
    expect_err(ds_diffusers_component(pipe, "vae", &c, &err), DS_ERR_FORMAT, &err, "vae/config.json: invalid JSON");
    cr_assert_null(c);
    ds_diffusers_close(pipe);
    ds_test_rmtree(g_root);
}

Test(diffusers_dir_bad, missing_component_dir_and_weights) {
    ds_test_mkdtemp(g_root, sizeof g_root, "dd_test");
    build_pipeline();
    put_str("model_index.json", "{\"_class_name\":\"P\",\"vae\":[\"diffusers\",\"AutoencoderKL\"],"
                                "\"text_encoder\":[\"transformers\",\"T5EncoderModel\"],"
                                "\"unet\":[\"diffusers\",\"UNet2DModel\"]}");
    put_str("unet/config.json", "{}");
    ds_diffusers *pipe = open_ok();
    const ds_component *c = NULL;
    ds_err err;
    expect_err(ds_diffusers_component(pipe, "text_encoder", &c, &err), DS_ERR_NOT_FOUND, &err,
               "component directory of 'text_encoder' (T5EncoderModel) is missing");
    expect_err(ds_diffusers_component(pipe, "unet", &c, &err), DS_ERR_NOT_FOUND, &err, "no weights");
    cr_assert(strstr(err.msg, "/unet") != NULL, "%s", err.msg);
    ds_diffusers_close(pipe);
    ds_test_rmtree(g_root);
}

Test(diffusers_dir_bad, missing_shard) {
    ds_test_mkdtemp(g_root, sizeof g_root, "dd_test");
    build_pipeline();
    char p[512];
    snprintf(p, sizeof p, "%s/transformer/diffusion_pytorch_model-00002-of-00002.safetensors", g_root);
    cr_assert_eq(unlink(p), 0);
    ds_diffusers *pipe = open_ok();
    const ds_component *c = NULL;
    ds_err err;
    expect_err(ds_diffusers_component(pipe, "transformer", &c, &err), DS_ERR_FORMAT, &err,
               "shard 'diffusion_pytorch_model-00002-of-00002.safetensors' listed in weight_map does not exist");
    cr_assert(strstr(err.msg, "diffusion_pytorch_model.safetensors.index.json") != NULL, "%s", err.msg);
    ds_diffusers_close(pipe);
    ds_test_rmtree(g_root);
}

Test(diffusers_dir_bad, weight_map_names_absent_tensor) {
    ds_test_mkdtemp(g_root, sizeof g_root, "dd_test");
    build_pipeline();
    put_str("transformer/diffusion_pytorch_model.safetensors.index.json",
            "{\"weight_map\":{\"pos_embed.proj.weight\":\"diffusion_pytorch_model-00001-of-00002.safetensors\","
            "\"proj_out.weight\":\"diffusion_pytorch_model-00002-of-00002.safetensors\"}}");
    ds_diffusers *pipe = open_ok();
    const ds_component *c = NULL;
    ds_err err;
    expect_err(ds_diffusers_component(pipe, "transformer", &c, &err), DS_ERR_FORMAT, &err,
               "weight_map names tensor 'proj_out.weight' in shard 'diffusion_pytorch_model-00002-of-00002.safetensors', "
               "which does not contain it");
    ds_diffusers_close(pipe);
    ds_test_rmtree(g_root);
}

Test(diffusers_dir_bad, bad_weight_map) {
    ds_test_mkdtemp(g_root, sizeof g_root, "dd_test");
    build_pipeline();
    ds_weights *w = (ds_weights *)0x1;
    ds_err err;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/transformer", g_root);
    put_str("transformer/diffusion_pytorch_model.safetensors.index.json", "{\"weight_map\":[]}");
    expect_err(ds_weights_open(dir, &w, &err), DS_ERR_FORMAT, &err, "\"weight_map\" is an array, not an object");
    cr_assert_null(w);
    put_str("transformer/diffusion_pytorch_model.safetensors.index.json", "{\"weight_map\":{\"a\":\"../x.safetensors\"}}");
    expect_err(ds_weights_open(dir, &w, &err), DS_ERR_FORMAT, &err, "shard '../x.safetensors' is not a plain file name");
    put_str("transformer/diffusion_pytorch_model.safetensors.index.json", "{\"weight_map\":{\"a\":7}}");
    expect_err(ds_weights_open(dir, &w, &err), DS_ERR_FORMAT, &err, "weight_map entry 'a' is not a file name string");
    put_str("transformer/diffusion_pytorch_model.safetensors.index.json",
            "{\"weight_map\":{\"pos_embed.proj.weight\":\"diffusion_pytorch_model-00001-of-00002.safetensors\","
            "\"pos_embed.proj.weight\":\"diffusion_pytorch_model-00001-of-00002.safetensors\"}}");
    expect_err(ds_weights_open(dir, &w, &err), DS_ERR_FORMAT, &err, "lists tensor 'pos_embed.proj.weight' twice");
    /* a malformed shard: the safetensors error names the shard */
    put_str("transformer/diffusion_pytorch_model.safetensors.index.json", k_tr_index);
    put_str("transformer/diffusion_pytorch_model-00001-of-00002.safetensors", "garbage");
    expect_err(ds_weights_open(dir, &w, &err), DS_ERR_FORMAT, &err, "00001-of-00002.safetensors: file is 7 bytes");
    cr_assert_null(w);
    ds_test_rmtree(g_root);
}

Test(diffusers_dir_bad, bin_only_component) {
    ds_test_mkdtemp(g_root, sizeof g_root, "dd_test");
    build_pipeline();
    char p[512];
    snprintf(p, sizeof p, "%s/vae/diffusion_pytorch_model.safetensors", g_root);
    cr_assert_eq(unlink(p), 0);
    put_str("vae/diffusion_pytorch_model.bin", "PK\x03\x04 not really a pickle");
    ds_diffusers *pipe = open_ok();
    const ds_component *c = NULL;
    ds_err err;
    expect_err(ds_diffusers_component(pipe, "vae", &c, &err), DS_ERR_UNSUPPORTED, &err,
               "save_pretrained(path, safe_serialization=True)");
    cr_assert(strstr(err.msg, "diffusion_pytorch_model.bin") != NULL, "%s", err.msg);
    cr_assert_null(c);
    /* a failed load is not cached: fix the directory and retry */
    float w[6] = {0};
    put_st("vae/diffusion_pytorch_model.safetensors",
           "{\"encoder.conv_in.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", w, sizeof w);
    cr_assert_eq(ds_diffusers_component(pipe, "vae", &c, &err), DS_OK, "%s", err.msg);
    cr_assert_not_null(ds_weights_find(c->weights, "encoder.conv_in.weight"));
    ds_diffusers_close(pipe);
    ds_test_rmtree(g_root);
}

/* diffusers' save_config writes Python's non-standard JSON tokens (DPM configs carry
 * "lambda_min_clipped": -Infinity); they read back as floats, and inside strings stay text. */
Test(diffusers_dir, config_python_nonfinite_tokens) {
    const char *text = "{\"lambda_min_clipped\": -Infinity, \"big\": Infinity, \"nan\": NaN,"
                       " \"name\": \"NaN and -Infinity \\\" Infinity\", \"arr\": [1, -Infinity]}";
    ds_config *cfg = NULL;
    ds_err err;
    cr_assert_eq(ds_config_parse(text, strlen(text), "scheduler_config.json", &cfg, &err), DS_OK, "%s", err.msg);
    double v;
    cr_assert_eq(ds_config_get_float(cfg, "lambda_min_clipped", 0, &v, &err), DS_OK);
    cr_assert(isinf(v) && v < 0);
    cr_assert_eq(ds_config_get_float(cfg, "big", 0, &v, &err), DS_OK);
    cr_assert(isinf(v) && v > 0);
    cr_assert_eq(ds_config_get_float(cfg, "nan", 0, &v, &err), DS_OK);
    cr_assert(isnan(v));
    const char *s;
    cr_assert_eq(ds_config_get_string(cfg, "name", NULL, &s, &err), DS_OK);
    cr_assert_str_eq(s, "NaN and -Infinity \" Infinity");
    int64_t iv;
    cr_assert_eq(ds_config_get_int(cfg, "big", 0, &iv, &err), DS_ERR_FORMAT); /* not an integer */
    ds_config_close(cfg);
}

/* Random weights: any name is found, reads need the expected shape, values are seeded per name and
 * scaled by fan-in; norm weights sit around 1. */
Test(diffusers_dir, random_weights_synthesize_by_shape) {
    ds_weights *w = NULL;
    ds_err err;
    cr_assert_eq(ds_weights_open_random(3, "transformer", &w, &err), DS_OK);
    cr_assert_not_null(ds_weights_find(w, "anything.weight"));
    cr_assert_eq(ds_weights_count(w), 0);
    static float a[64 * 256], b[64 * 256], c[64];
    const int64_t shape[2] = {64, 256};
    cr_assert_eq(ds_weights_read(w, "blocks.0.ff.weight", DS_F32, a, sizeof a, 2, shape, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_weights_read(w, "blocks.0.ff.weight", DS_F32, b, sizeof b, 2, shape, &err), DS_OK);
    cr_assert(memcmp(a, b, sizeof a) == 0);
    cr_assert_eq(ds_weights_read(w, "blocks.1.ff.weight", DS_F32, b, sizeof b, 2, shape, &err), DS_OK);
    cr_assert(memcmp(a, b, sizeof a) != 0);
    double s2 = 0;
    for (int i = 0; i < 64 * 256; i++) s2 += (double)a[i] * a[i];
    cr_assert_lt(fabs(sqrt(s2 / (64 * 256)) - 1.0 / 16.0), 0.003, "std should be 1/sqrt(256)");
    cr_assert_eq(ds_weights_read(w, "norm1.weight", DS_F32, c, sizeof c, 1, (int64_t[]){64}, &err), DS_OK);
    for (int i = 0; i < 64; i++) cr_assert(fabs(c[i] - 1.0f) < 0.12f);
    cr_assert_eq(ds_weights_read(w, "x", DS_F32, c, sizeof c, -1, NULL, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "expected shape"), "%s", err.msg);
    cr_assert_eq(ds_weights_read(w, "x", DS_F32, c, sizeof c, 2, shape, &err), DS_ERR_INVALID_ARG); /* too small */
    ds_weights_close(w);
}
