/* test_vae.c - Criterion tests for models/vae.c (AutoencoderKL decoder) against fp32 diffusers references.
 *
 * Data (tools/export_vae_tiny.py): two tiny AutoencoderKL checkpoints, tests/data/ckpt/dit-tiny/vae (4 latent
 * channels, post_quant_conv, 4 blocks, F16 weights) and tests/data/ckpt/flux-tiny/vae (16 channels, shift
 * factor, no post_quant_conv, 3 blocks, 3 resnets per up block, BF16 weights), and per model two batch-2
 * references (square and non-square latents) with the decoder input z, the activations after
 * post_quant_conv / conv_in / mid block / up block 0, the image and diffusers' RGB8 postprocess.
 * Error tests build modified copies of a checkpoint in a temp dir. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "diffusers_dir.h"
#include "safetensors.h"
#include "test_util.h"
#include "vae.h"

#define DIT_PIPE DS_TEST_DATA_DIR "/ckpt/dit-tiny"
#define DIT_VAE DS_TEST_DATA_DIR "/ckpt/dit-tiny/vae"
#define FLUX_VAE DS_TEST_DATA_DIR "/ckpt/flux-tiny/vae"

/* ---- parity ------------------------------------------------------------------------------------ */

typedef struct ref_case {
    const char *file; /* under tests/data */
    int64_t     h, w;
} ref_case;

/* Decode the reference latents with `vae`, check every stage and the image; returns the image (malloc'd)
 * and, through *ref_img, the reference image (malloc'd); *n the element count. */
static float *check_case(ds_vae *vae, const char *file, float **ref_img, int64_t *n_img, double *rel_out) {
    ds_safetensors *st = ds_test_open(file);
    ds_tensor lat, zr, cir, midr, upr, imgr, pqr;
    float *latd = ds_test_read_f32(st, "latents", &lat);
    float *zd = ds_test_read_f32(st, "z", &zr);
    float *cid = ds_test_read_f32(st, "conv_in", &cir);
    float *midd = ds_test_read_f32(st, "mid", &midr);
    float *upd = ds_test_read_f32(st, "up0", &upr);
    float *imgd = ds_test_read_f32(st, "image", &imgr);
    const bool has_pq = ds_vae_get_config(vae)->post_quant_conv;
    cr_assert_eq(has_pq, ds_safetensors_find(st, "post_quant") != NULL, "%s: post_quant presence", file);
    float *pqd = has_pq ? ds_test_read_f32(st, "post_quant", &pqr) : NULL;

    const int64_t s = ds_vae_scale_factor(vae);
    cr_assert_eq(imgr.shape[2], s * lat.shape[2]);
    cr_assert_eq(imgr.shape[3], s * lat.shape[3]);

    /* outputs, poisoned with NaN so a stage that is not fully written shows */
    float *bufs[6];
    ds_tensor outs[6];
    const ds_tensor *refs[6] = {&zr, &cir, &midr, &upr, &imgr, has_pq ? &pqr : &zr};
    for (int i = 0; i < 6; i++) {
        int64_t n = ds_tensor_numel(refs[i]);
        bufs[i] = malloc((size_t)n * sizeof(float));
        for (int64_t j = 0; j < n; j++) bufs[i][j] = NAN;
        outs[i] = ds_tensor_make(bufs[i], DS_F32, 4, refs[i]->shape);
    }
    ds_vae_taps taps = {.z = &outs[0], .conv_in = &outs[1], .mid = &outs[2], .post_quant = has_pq ? &outs[5] : NULL};
    taps.up[0] = &outs[3];
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_vae_decode_taps(vae, &lat, &outs[4], &taps, &err), DS_OK, "%s: %s", file, err.msg);

    char what[128];
    snprintf(what, sizeof what, "%s z", file);
    ds_test_assert_close(bufs[0], zd, ds_tensor_numel(&zr), 1e-7, 1e-6, 1e-7, what);
    if (has_pq) {
        snprintf(what, sizeof what, "%s post_quant", file);
        ds_test_assert_close(bufs[5], pqd, ds_tensor_numel(&pqr), 1e-6, 1e-5, 1e-6, what);
    }
    const char *names[4] = {"conv_in", "mid", "up0", "image"};
    const float *rd[4] = {cid, midd, upd, imgd};
    double rel = 0;
    for (int i = 0; i < 4; i++) {
        int64_t n = ds_tensor_numel(refs[i + 1]);
        ds_test_cmp c = ds_test_compare(bufs[i + 1], rd[i], n, 0, 0);
        cr_log_info("%s %s: rel %.3e max abs %.3e", file, names[i], c.rel_err, c.max_abs);
        snprintf(what, sizeof what, "%s %s", file, names[i]);
        /* stages: 1e-5; image: the bound 1e-4. Elements: values are O(1..10). */
        ds_test_assert_close(bufs[i + 1], rd[i], n, i < 3 ? 1e-5 : 1e-4, 1e-4, 1e-4, what);
        if (i == 3) rel = c.rel_err;
    }
    *n_img = ds_tensor_numel(&imgr);
    *ref_img = imgd;
    if (rel_out) *rel_out = rel;
    float *img = bufs[4];
    for (int i = 0; i < 6; i++)
        if (i != 4) free(bufs[i]);
    free(latd);
    free(zd);
    free(cid);
    free(midd);
    free(upd);
    free(pqd);
    ds_safetensors_close(st);
    return img;
}

/* RGB8 of the C image vs diffusers' RGB8: equal except where the reference value lies within 1e-4 (in
 * image units) of a rounding boundary (u = k + 0.5 with u = (x/2 + 1/2)*255), where f32 differences
 * of the decode may legitimately round the other way; those may differ by 1, and there must be at most
 * one per thousand values. Also the
 * postprocess alone, on diffusers' own f32 image, must reproduce diffusers' RGB8 exactly. */
static void check_rgb8(const char *file, const float *img, const float *ref_img, int64_t n_img) {
    ds_safetensors *st = ds_test_open(file);
    ds_tensor imgr, rgbr;
    float *imgd = ds_test_read_f32(st, "image", &imgr);
    float *rgbd = ds_test_read_f32(st, "rgb8", &rgbr);
    const int64_t B = imgr.shape[0], H = imgr.shape[2], W = imgr.shape[3];
    cr_assert_eq(rgbr.shape[0], B);
    cr_assert_eq(rgbr.shape[1], H);
    cr_assert_eq(rgbr.shape[2], W);
    cr_assert_eq(rgbr.shape[3], 3);
    cr_assert_eq(n_img, B * 3 * H * W);
    const size_t nb = (size_t)(B * H * W * 3);
    uint8_t *mine = malloc(nb), *fromref = malloc(nb);
    ds_err err;
    ds_tensor t = ds_tensor_make((void *)img, DS_F32, 4, imgr.shape);
    cr_assert_eq(ds_vae_to_rgb8(&t, mine, nb, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_vae_to_rgb8(&imgr, fromref, nb, &err), DS_OK, "%s", err.msg);
    int64_t near = 0, diff = 0, clipped = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < 3; c++)
            for (int64_t p = 0; p < H * W; p++) {
                const int64_t ii = (b * 3 + c) * H * W + p, io = (b * H * W + p) * 3 + c;
                const int want = (int)rgbd[io];
                cr_assert_eq((int)fromref[io], want, "%s: postprocess of diffusers' image at %lld: %d vs %d (x=%.9g)",
                             file, (long long)io, fromref[io], want, (double)ref_img[ii]);
                const double x = ref_img[ii];
                if (x <= -1.0 || x >= 1.0) clipped++;
                const double u = (x * 0.5 + 0.5) * 255.0;
                const bool is_near = x > -1.0 && x < 1.0 && fabs(u - (floor(u) + 0.5)) * (2.0 / 255.0) < 1e-4;
                near += is_near;
                if (mine[io] != want) {
                    diff++;
                    cr_assert(is_near, "%s: RGB8 at %lld is %d, diffusers %d, image %.9g vs %.9g (not near a boundary)",
                              file, (long long)io, mine[io], want, (double)img[ii], x);
                    cr_assert(abs((int)mine[io] - want) == 1, "%s: RGB8 at %lld differs by more than 1", file,
                              (long long)io);
                }
            }
    cr_log_info("%s rgb8: %lld values, %lld clipped, %lld within 1e-4 of a rounding boundary, %lld differ", file,
                (long long)nb, (long long)clipped, (long long)near, (long long)diff);
    cr_assert(clipped > 0, "%s: the reference should exercise the clamp", file);
    /* A 2e-4 wide window around boundaries 2/255 apart holds ~2.5% of the values; the decode's own error
     * (max abs ~4e-6) moves only a small part of those across. */
    cr_assert(diff * 1000 <= (int64_t)nb, "%s: %lld RGB8 values of %zu differ: not tiny", file, (long long)diff, nb);
    free(mine);
    free(fromref);
    free(imgd);
    free(rgbd);
    ds_safetensors_close(st);
}

static void run_parity(ds_vae *vae, const ref_case *cases, int n) {
    for (int i = 0; i < n; i++) {
        float *ref_img = NULL;
        int64_t n_img = 0;
        double rel = 0;
        float *img = check_case(vae, cases[i].file, &ref_img, &n_img, &rel);
        check_rgb8(cases[i].file, img, ref_img, n_img);
        free(img);
        free(ref_img);
    }
}

Test(vae, config_dit_tiny) {
    ds_config *cfg = NULL;
    ds_err err;
    cr_assert_eq(ds_config_open(DIT_VAE "/config.json", &cfg, &err), DS_OK, "%s", err.msg);
    ds_vae_config c;
    cr_assert_eq(ds_vae_config_parse(cfg, &c, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(c.latent_channels, 4);
    cr_assert_eq(c.out_channels, 3);
    cr_assert_eq(c.n_blocks, 4);
    const int64_t boc[4] = {16, 16, 32, 32};
    for (int i = 0; i < 4; i++) cr_assert_eq(c.block_out_channels[i], boc[i]);
    cr_assert_eq(c.layers_per_block, 1);
    cr_assert_eq(c.norm_num_groups, 8);
    cr_assert_float_eq(c.scaling_factor, 0.18215, 1e-12);
    cr_assert_eq(c.shift_factor, 0.0);
    cr_assert(c.post_quant_conv);
    cr_assert(c.mid_attention);
    cr_assert_eq(c.scale, 8);
    ds_config_close(cfg);
}

Test(vae, config_flux_tiny) {
    ds_config *cfg = NULL;
    ds_err err;
    cr_assert_eq(ds_config_open(FLUX_VAE "/config.json", &cfg, &err), DS_OK, "%s", err.msg);
    ds_vae_config c;
    cr_assert_eq(ds_vae_config_parse(cfg, &c, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(c.latent_channels, 16);
    cr_assert_eq(c.n_blocks, 3);
    cr_assert_eq(c.layers_per_block, 2);
    cr_assert_eq(c.norm_num_groups, 4);
    cr_assert_float_eq(c.scaling_factor, 0.3611, 1e-12);
    cr_assert_float_eq(c.shift_factor, 0.1159, 1e-12);
    cr_assert(!c.post_quant_conv);
    cr_assert_eq(c.scale, 4);
    ds_config_close(cfg);
}

/* The SD-style VAE through the pipeline loader (model_index.json -> "vae"), both sizes decoded by one
 * instance planned for the larger of each dimension. */
Test(vae, decode_dit_tiny) {
    ds_diffusers *pipe = NULL;
    const ds_component *comp = NULL;
    ds_vae *vae = NULL;
    ds_err err;
    cr_assert_eq(ds_diffusers_open(DIT_PIPE, &pipe, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_diffusers_component(pipe, "vae", &comp, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_vae_load(comp, 2, 8, 10, &vae, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_vae_latent_channels(vae), 4);
    cr_assert_eq(ds_vae_scale_factor(vae), 8);
    cr_assert_eq(ds_vae_max_batch(vae), 2);
    cr_assert_eq(ds_vae_max_latent_h(vae), 8);
    cr_assert_eq(ds_vae_max_latent_w(vae), 10);
    cr_assert_gt(ds_vae_weight_bytes(vae), 0);
    cr_assert_gt(ds_vae_activation_bytes(vae), 0);
    const ref_case cases[] = {{"vae/dit_tiny_8x8.safetensors", 8, 8}, {"vae/dit_tiny_6x10.safetensors", 6, 10}};
    run_parity(vae, cases, 2);
    ds_vae_free(vae);
    ds_diffusers_close(pipe);
}

Test(vae, decode_flux_tiny) {
    ds_vae *vae = NULL;
    ds_err err;
    cr_assert_eq(ds_vae_load_dir(FLUX_VAE, 2, 10, 8, &vae, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_vae_latent_channels(vae), 16);
    cr_assert_eq(ds_vae_scale_factor(vae), 4);
    const ref_case cases[] = {{"vae/flux_tiny_8x8.safetensors", 8, 8}, {"vae/flux_tiny_10x6.safetensors", 10, 6}};
    run_parity(vae, cases, 2);
    ds_vae_free(vae);
}

/* Repeated decodes rewind the arena and give bit-identical images; a single image of the batch decodes
 * to the same values as in the batch; taps do not change the image. */
Test(vae, decode_repeatable_and_batch_independent) {
    ds_vae *vae = NULL;
    ds_err err;
    cr_assert_eq(ds_vae_load_dir(DIT_VAE, 2, 8, 8, &vae, &err), DS_OK, "%s", err.msg);
    ds_safetensors *st = ds_test_open("vae/dit_tiny_8x8.safetensors");
    ds_tensor lat, imgr;
    float *latd = ds_test_read_f32(st, "latents", &lat);
    float *imgd = ds_test_read_f32(st, "image", &imgr);
    const int64_t n = ds_tensor_numel(&imgr);
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    ds_tensor ta = ds_tensor_make(a, DS_F32, 4, imgr.shape), tb = ds_tensor_make(b, DS_F32, 4, imgr.shape);
    cr_assert_eq(ds_vae_decode(vae, &lat, &ta, &err), DS_OK, "%s", err.msg);
    for (int rep = 0; rep < 2; rep++) {
        memset(b, 0xff, (size_t)n * sizeof(float));
        cr_assert_eq(ds_vae_decode(vae, &lat, &tb, &err), DS_OK, "%s", err.msg);
        cr_assert_eq(memcmp(a, b, (size_t)n * sizeof(float)), 0, "decode %d differs from the first", rep + 1);
    }
    /* the second image alone, batch 1 */
    const int64_t per_lat = ds_tensor_numel(&lat) / 2, per_img = n / 2;
    ds_tensor l1 = ds_tensor_f32(latd + per_lat, 4, 1, lat.shape[1], lat.shape[2], lat.shape[3]);
    ds_tensor i1 = ds_tensor_f32(b, 4, 1, 3, imgr.shape[2], imgr.shape[3]);
    cr_assert_eq(ds_vae_decode(vae, &l1, &i1, &err), DS_OK, "%s", err.msg);
    ds_test_assert_close(b, imgd + per_img, per_img, 1e-4, 1e-4, 1e-4, "batch-1 decode of image 1");
    free(a);
    free(b);
    free(latd);
    free(imgd);
    ds_safetensors_close(st);
    ds_vae_free(vae);
}

/* ---- postprocess ------------------------------------------------------------------------------- */

Test(vae, to_rgb8_values_and_layout) {
    /* [1, 3, 1, 4]: channel c, pixel p */
    float x[12] = {-1.0f, 1.0f, 2.0f, NAN,            /* R: 0, 255, 255 (clamped), NaN -> 0 */
                   0.0f, -5.0f, 1.0f / 255.0f, -0.5f, /* G: 0.5*255 = 127.5 -> 128 (half to even), 0, 128, 64 */
                   0.5f, -0.99f, 0.99f, 0.25f};       /* B: 191.25 -> 191, 1.275 -> 1, 253.725 -> 254, 159.375 */
    ds_tensor t = ds_tensor_f32(x, 4, 1, 3, 1, 4);
    uint8_t rgb[12];
    ds_err err;
    cr_assert_eq(ds_vae_to_rgb8(&t, rgb, sizeof rgb, &err), DS_OK, "%s", err.msg);
    /* expected from numpy: ((x*0.5+0.5).clip(0,1)*255).round() in float32 */
    const uint8_t want[12] = {0, 128, 191, 255, 0, 1, 255, 128, 254, 0, 64, 159};
    for (int i = 0; i < 12; i++) cr_assert_eq(rgb[i], want[i], "rgb[%d] = %d, want %d", i, rgb[i], want[i]);
    /* errors */
    cr_assert_eq(ds_vae_to_rgb8(&t, rgb, 11, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_vae_to_rgb8(&t, NULL, 12, &err), DS_ERR_INVALID_ARG);
    ds_tensor t2 = ds_tensor_f32(x, 4, 1, 4, 1, 3);
    cr_assert_eq(ds_vae_to_rgb8(&t2, rgb, sizeof rgb, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "4 channels") != NULL, "%s", err.msg);
}

/* ---- errors ------------------------------------------------------------------------------------ */

Test(vae, decode_rejects_bad_inputs) {
    ds_vae *vae = NULL;
    ds_err err;
    cr_assert_eq(ds_vae_load_dir(DIT_VAE, 2, 8, 8, &vae, &err), DS_OK, "%s", err.msg);
    static float lat[3 * 16 * 9 * 9], img[3 * 3 * 72 * 80];
    /* channel mismatch: FLUX-shaped latents into the 4-channel VAE */
    ds_tensor l16 = ds_tensor_f32(lat, 4, 1, 16, 8, 8), i8 = ds_tensor_f32(img, 4, 1, 3, 64, 64);
    cr_assert_eq(ds_vae_decode(vae, &l16, &i8, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "16 channels") && strstr(err.msg, "takes 4"), "%s", err.msg);
    /* larger than planned: height, width, batch */
    ds_tensor lh = ds_tensor_f32(lat, 4, 1, 4, 9, 8), ih = ds_tensor_f32(img, 4, 1, 3, 72, 64);
    cr_assert_eq(ds_vae_decode(vae, &lh, &ih, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "9x8") && strstr(err.msg, "8x8"), "%s", err.msg);
    ds_tensor lw = ds_tensor_f32(lat, 4, 1, 4, 8, 9), iw = ds_tensor_f32(img, 4, 1, 3, 64, 72);
    cr_assert_eq(ds_vae_decode(vae, &lw, &iw, &err), DS_ERR_INVALID_ARG);
    ds_tensor lb = ds_tensor_f32(lat, 4, 3, 4, 8, 8), ib = ds_tensor_f32(img, 4, 3, 3, 64, 64);
    cr_assert_eq(ds_vae_decode(vae, &lb, &ib, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "batch 3") != NULL, "%s", err.msg);
    /* wrong image shape (latent 8x8 -> 64x64, not 56x64) */
    ds_tensor l = ds_tensor_f32(lat, 4, 1, 4, 8, 8), bad = ds_tensor_f32(img, 4, 1, 3, 56, 64);
    cr_assert_eq(ds_vae_decode(vae, &l, &bad, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "image") != NULL, "%s", err.msg);
    /* a tap of the wrong shape, and a post_quant tap is fine here (the model has one) */
    ds_tensor good = ds_tensor_f32(img, 4, 1, 3, 64, 64);
    ds_tensor tz = ds_tensor_f32(lat + 1024, 4, 1, 4, 8, 7);
    ds_vae_taps taps = {.z = &tz};
    cr_assert_eq(ds_vae_decode_taps(vae, &l, &good, &taps, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "tap z") != NULL, "%s", err.msg);
    /* non-f32 latents */
    ds_tensor lf16 = ds_tensor_make(lat, DS_F16, 4, (const int64_t[]){1, 4, 8, 8});
    cr_assert_eq(ds_vae_decode(vae, &lf16, &good, &err), DS_ERR_UNSUPPORTED);
    ds_vae_free(vae);
    /* bad limits */
    cr_assert_eq(ds_vae_load_dir(DIT_VAE, 0, 8, 8, &vae, &err), DS_ERR_INVALID_ARG);
    cr_assert_null(vae);
}

/* temp-dir checkpoints: config.json (maybe edited) + weights rewritten as F32 with edits */

static char g_root[64];

typedef enum edit_kind { EDIT_NONE = 0, EDIT_DROP, EDIT_RESHAPE, EDIT_LEGACY, EDIT_INT } edit_kind;

/* g_root = a copy of src_dir: config.json with `from` -> `to` (NULL: unchanged); weights re-written as
 * F32 (values unchanged) with one edit: DROP removes `target`, RESHAPE halves dim 1 of `target`, LEGACY
 * renames the attention projections to query/key/value/proj_attn, INT stores `target` as I32. */
static void write_variant(const char *src_dir, const char *from, const char *to, edit_kind kind, const char *target) {
    char path[512];
    size_t n;
    snprintf(path, sizeof path, "%s/config.json", src_dir);
    char *cfg = ds_test_slurp(path, &n);
    char *mod = from ? ds_test_replace(cfg, from, to) : strdup(cfg);
    ds_test_write(g_root, "config.json", mod, strlen(mod));
    free(cfg);
    free(mod);

    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", src_dir);
    ds_safetensors *st = NULL;
    ds_err err;
    cr_assert_eq(ds_safetensors_open(path, &st, &err), DS_OK, "%s", err.msg);
    const int64_t count = ds_safetensors_count(st);
    cJSON *hdr = cJSON_CreateObject();
    char *data = NULL;
    size_t dlen = 0;
    int hits = 0;
    for (int64_t i = 0; i < count; i++) {
        const ds_st_tensor *t = ds_safetensors_at(st, i);
        char name[256];
        snprintf(name, sizeof name, "%s", t->name);
        const bool is_target = target && strcmp(name, target) == 0;
        if (kind == EDIT_DROP && is_target) {
            hits++;
            continue;
        }
        int64_t shape[DS_MAX_DIMS], numel = 1;
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        if (kind == EDIT_RESHAPE && is_target) {
            shape[1] /= 2;
            hits++;
        }
        if (kind == EDIT_LEGACY && strstr(name, "mid_block.attentions.0.")) {
            static const char *const map[4][2] = {{".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."},
                                                  {".to_out.0.", ".proj_attn."}};
            for (int m = 0; m < 4; m++) {
                char *at = strstr(name, map[m][0]);
                if (at) {
                    char tail[128];
                    snprintf(tail, sizeof tail, "%s", at + strlen(map[m][0]));
                    snprintf(at, sizeof name - (size_t)(at - name), "%s%s", map[m][1], tail);
                    hits++;
                }
            }
        }
        for (int d = 0; d < t->ndim; d++) numel *= shape[d];
        int64_t full = 1;
        for (int d = 0; d < t->ndim; d++) full *= t->shape[d];
        float *vals = malloc((size_t)(full > 0 ? full : 1) * sizeof(float));
        cr_assert_eq(ds_safetensors_read(st, t->name, DS_F32, vals, (size_t)full * sizeof(float), -1, NULL, &err), DS_OK,
                     "%s", err.msg);
        const bool as_int = kind == EDIT_INT && is_target;
        if (as_int) hits++;
        const size_t nbytes = (size_t)numel * 4;
        data = realloc(data, dlen + nbytes);
        if (as_int) {
            for (int64_t j = 0; j < numel; j++) {
                int32_t v = (int32_t)vals[j];
                memcpy(data + dlen + (size_t)j * 4, &v, 4);
            }
        } else {
            memcpy(data + dlen, vals, nbytes);
        }
        free(vals);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "dtype", as_int ? "I32" : "F32");
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[d]));
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)dlen));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(dlen + nbytes)));
        cJSON_AddItemToObject(hdr, name, e);
        dlen += nbytes;
    }
    if (target || kind == EDIT_LEGACY) cr_assert(hits > 0, "edit %d matched nothing (%s)", kind, target ? target : "");
    if (kind == EDIT_LEGACY) cr_assert_eq(hits, 16, "renamed %d", hits); /* 4 x (weight, bias), encoder + decoder */
    char *js = cJSON_PrintUnformatted(hdr);
    size_t hl = strlen(js), padded = (hl + 7) / 8 * 8;
    char *file = malloc(8 + padded + dlen);
    uint64_t hl64 = padded;
    for (int i = 0; i < 8; i++) file[i] = (char)((hl64 >> (8 * i)) & 0xff);
    memcpy(file + 8, js, hl);
    memset(file + 8 + hl, ' ', padded - hl);
    memcpy(file + 8 + padded, data, dlen);
    ds_test_write(g_root, "diffusion_pytorch_model.safetensors", file, 8 + padded + dlen);
    free(file);
    free(js);
    free(data);
    cJSON_Delete(hdr);
    ds_safetensors_close(st);
}

Test(vae, load_rejects_missing_tensor) {
    ds_test_mkdtemp(g_root, sizeof g_root, "vae_test");
    write_variant(DIT_VAE, NULL, NULL, EDIT_DROP, "decoder.up_blocks.1.resnets.0.conv2.bias");
    ds_vae *vae = NULL;
    ds_err err;
    cr_assert_eq(ds_vae_load_dir(g_root, 1, 8, 8, &vae, &err), DS_ERR_NOT_FOUND);
    cr_assert_null(vae);
    cr_assert(strstr(err.msg, "decoder.up_blocks.1.resnets.0.conv2.bias") != NULL, "%s", err.msg);
    /* a missing attention projection names both spellings */
    write_variant(DIT_VAE, NULL, NULL, EDIT_DROP, "decoder.mid_block.attentions.0.to_v.weight");
    cr_assert_eq(ds_vae_load_dir(g_root, 1, 8, 8, &vae, &err), DS_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, "to_v.weight") && strstr(err.msg, "value.weight"), "%s", err.msg);
    /* the post_quant_conv of an SD-style VAE */
    write_variant(DIT_VAE, NULL, NULL, EDIT_DROP, "post_quant_conv.weight");
    cr_assert_eq(ds_vae_load_dir(g_root, 1, 8, 8, &vae, &err), DS_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, "post_quant_conv.weight") != NULL, "%s", err.msg);
    ds_test_rmtree(g_root);
}

Test(vae, load_rejects_wrong_shape_and_dtype) {
    ds_test_mkdtemp(g_root, sizeof g_root, "vae_test");
    write_variant(DIT_VAE, NULL, NULL, EDIT_RESHAPE, "decoder.mid_block.resnets.1.conv1.weight");
    ds_vae *vae = NULL;
    ds_err err;
    cr_assert_eq(ds_vae_load_dir(g_root, 1, 8, 8, &vae, &err), DS_ERR_INVALID_ARG);
    cr_assert_null(vae);
    cr_assert(strstr(err.msg, "decoder.mid_block.resnets.1.conv1.weight") && strstr(err.msg, "[32, 16, 3, 3]") &&
                  strstr(err.msg, "[32, 32, 3, 3]"),
              "%s", err.msg);
    write_variant(DIT_VAE, NULL, NULL, EDIT_INT, "decoder.conv_out.bias");
    cr_assert_eq(ds_vae_load_dir(g_root, 1, 8, 8, &vae, &err), DS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "decoder.conv_out.bias") != NULL, "%s", err.msg);
    /* the config says latent 16 but the weights are for 4: conv_in has the wrong shape */
    write_variant(DIT_VAE, "\"latent_channels\": 4", "\"latent_channels\": 16", EDIT_NONE, NULL);
    cr_assert_eq(ds_vae_load_dir(g_root, 1, 8, 8, &vae, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "post_quant_conv.weight") != NULL, "%s", err.msg);
    ds_test_rmtree(g_root);
}

Test(vae, load_rejects_unsupported_config) {
    ds_test_mkdtemp(g_root, sizeof g_root, "vae_test");
    ds_vae *vae = NULL;
    ds_err err;
    write_variant(DIT_VAE, "\"act_fn\": \"silu\"", "\"act_fn\": \"gelu\"", EDIT_NONE, NULL);
    cr_assert_eq(ds_vae_load_dir(g_root, 1, 8, 8, &vae, &err), DS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "gelu") != NULL, "%s", err.msg);
    write_variant(DIT_VAE, "\"latents_mean\": null", "\"latents_mean\": [0, 0, 0, 0]", EDIT_NONE, NULL);
    cr_assert_eq(ds_vae_load_dir(g_root, 1, 8, 8, &vae, &err), DS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "latents_mean") != NULL, "%s", err.msg);
    write_variant(DIT_VAE, "\"norm_num_groups\": 8", "\"norm_num_groups\": 5", EDIT_NONE, NULL);
    cr_assert_eq(ds_vae_load_dir(g_root, 1, 8, 8, &vae, &err), DS_ERR_FORMAT);
    cr_assert(strstr(err.msg, "norm_num_groups") != NULL, "%s", err.msg);
    write_variant(DIT_VAE, "\"UpDecoderBlock2D\",", "\"AttnUpDecoderBlock2D\",", EDIT_NONE, NULL);
    cr_assert_eq(ds_vae_load_dir(g_root, 1, 8, 8, &vae, &err), DS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "AttnUpDecoderBlock2D") != NULL, "%s", err.msg);
    write_variant(DIT_VAE, "\"scaling_factor\": 0.18215", "\"scaling_factor\": \"big\"", EDIT_NONE, NULL);
    cr_assert_eq(ds_vae_load_dir(g_root, 1, 8, 8, &vae, &err), DS_ERR_FORMAT);
    cr_assert_null(vae);
    ds_test_rmtree(g_root);
}

/* Legacy attention names (query/key/value/proj_attn) load, and F32 weights holding the same values as
 * the F16 file decode to the same bits. */
Test(vae, legacy_attention_names) {
    ds_test_mkdtemp(g_root, sizeof g_root, "vae_test");
    write_variant(DIT_VAE, NULL, NULL, EDIT_LEGACY, NULL);
    ds_vae *a = NULL, *b = NULL;
    ds_err err;
    cr_assert_eq(ds_vae_load_dir(g_root, 2, 8, 8, &a, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_vae_load_dir(DIT_VAE, 2, 8, 8, &b, &err), DS_OK, "%s", err.msg);
    ds_safetensors *st = ds_test_open("vae/dit_tiny_8x8.safetensors");
    ds_tensor lat, imgr;
    float *latd = ds_test_read_f32(st, "latents", &lat);
    float *imgd = ds_test_read_f32(st, "image", &imgr);
    const int64_t n = ds_tensor_numel(&imgr);
    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
    ds_tensor tx = ds_tensor_make(x, DS_F32, 4, imgr.shape), ty = ds_tensor_make(y, DS_F32, 4, imgr.shape);
    cr_assert_eq(ds_vae_decode(a, &lat, &tx, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_vae_decode(b, &lat, &ty, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(memcmp(x, y, (size_t)n * sizeof(float)), 0, "legacy-named checkpoint decodes differently");
    ds_test_assert_close(x, imgd, n, 1e-4, 1e-4, 1e-4, "legacy-named decode vs diffusers");
    free(x);
    free(y);
    free(latd);
    free(imgd);
    ds_safetensors_close(st);
    ds_vae_free(a);
    ds_vae_free(b);
    ds_test_rmtree(g_root);
}

/* mid_block_add_attention false: the mid block is two resnets and the attention tensors are not needed
 * (one is even dropped here); the image matches diffusers' decode of the same weights without it. */
Test(vae, decode_without_mid_attention) {
    ds_test_mkdtemp(g_root, sizeof g_root, "vae_test");
    write_variant(DIT_VAE, "\"mid_block_add_attention\": true", "\"mid_block_add_attention\": false", EDIT_DROP,
                  "decoder.mid_block.attentions.0.to_q.weight");
    ds_vae *vae = NULL;
    ds_err err;
    cr_assert_eq(ds_vae_load_dir(g_root, 2, 8, 8, &vae, &err), DS_OK, "%s", err.msg);
    cr_assert(!ds_vae_get_config(vae)->mid_attention);
    ds_safetensors *st = ds_test_open("vae/dit_tiny_noattn_8x8.safetensors");
    ds_tensor lat, imgr;
    float *latd = ds_test_read_f32(st, "latents", &lat);
    float *imgd = ds_test_read_f32(st, "image", &imgr);
    const int64_t n = ds_tensor_numel(&imgr);
    float *x = malloc((size_t)n * sizeof(float));
    ds_tensor tx = ds_tensor_make(x, DS_F32, 4, imgr.shape);
    cr_assert_eq(ds_vae_decode(vae, &lat, &tx, &err), DS_OK, "%s", err.msg);
    ds_test_cmp c = ds_test_compare(x, imgd, n, 0, 0);
    cr_log_info("no-attention image: rel %.3e max abs %.3e", c.rel_err, c.max_abs);
    ds_test_assert_close(x, imgd, n, 1e-4, 1e-4, 1e-4, "decode without mid attention");
    free(x);
    free(latd);
    free(imgd);
    ds_safetensors_close(st);
    ds_vae_free(vae);
    ds_test_rmtree(g_root);
}
