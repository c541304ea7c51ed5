/* test_dit.c - the DiT transformer (models/dit.c) against fp32 diffusers DiTTransformer2DModel runs of the
 * tiny checkpoint tests/data/ckpt/dit-tiny (tools/export_dit_tiny.py): full forward and every stage
 * (conditioning, embed, block 0, last block) for batch 2, a CFG-shaped batch 4 and a 12x12 latent; the
 * pieces API reproduces ds_dit_forward bit for bit; the legacy config class; and the error paths
 * (missing tensor, wrong shape, unsupported class / norm type, differing embedder copy, batch and
 * label and latent limits). Corrupted checkpoints are written to a temp dir. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dit.h"
#include "test_util.h"

#define CKPT DS_TEST_DATA_DIR "/ckpt/dit-tiny"
#define TR_DIR CKPT "/transformer"
#define TR_WEIGHTS TR_DIR "/diffusion_pytorch_model.safetensors"

/* Bounds: the bound for the model output, 1e-5 for the stages. The per-element check (atol
 * relative to the tensor's RMS scale, rtol 1e-4) catches a few wrong elements hidden in a good norm. */
#define REL_OUT 1e-4
#define REL_STAGE 1e-5

/* ---- fixtures ----------------------------------------------------------------------------------------- */

typedef struct ref_case {
    ds_safetensors *st;
    float          *x, *t, *labels_f, *cond, *h_embed, *h_block0, *h_last, *out;
    ds_tensor       tx, tt, tl, tc, the, th0, thl, tout;
    int32_t         labels[8];
    int64_t         B, S, N;
} ref_case;

static void ref_load(ref_case *r, const char *rel) {
    memset(r, 0, sizeof *r);
    r->st = ds_test_open(rel);
    r->x = ds_test_read_f32(r->st, "x", &r->tx);
    r->t = ds_test_read_f32(r->st, "timesteps", &r->tt);
    r->labels_f = ds_test_read_f32(r->st, "labels", &r->tl);
    r->cond = ds_test_read_f32(r->st, "cond", &r->tc);
    r->h_embed = ds_test_read_f32(r->st, "hidden_embed", &r->the);
    r->h_block0 = ds_test_read_f32(r->st, "hidden_block0", &r->th0);
    r->h_last = ds_test_read_f32(r->st, "hidden_last", &r->thl);
    r->out = ds_test_read_f32(r->st, "out", &r->tout);
    r->B = r->tx.shape[0];
    r->S = r->tx.shape[2];
    r->N = r->the.shape[1];
    cr_assert_leq(r->B, 8);
    for (int64_t b = 0; b < r->B; b++) r->labels[b] = (int32_t)r->labels_f[b];
}

static void ref_free(ref_case *r) {
    float *bufs[] = {r->x, r->t, r->labels_f, r->cond, r->h_embed, r->h_block0, r->h_last, r->out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    ds_safetensors_close(r->st);
}

/* RMS of a reference tensor: the per-element atol is REL * rms, so it scales with the data. */
static double rms(const float *v, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s / (double)n);
}

static void check(const float *got, const float *ref, int64_t n, double rel, const char *what) {
    ds_test_cmp c = ds_test_compare(got, ref, n, rel * rms(ref, n), 1e-4);
    cr_log_info("%s: rel %.3g, max abs %.3g", what, c.rel_err, c.max_abs);
    ds_test_assert_close(got, ref, n, rel, rel * rms(ref, n), 1e-4, what);
}

/* Load a component from a transformer directory (config.json + weights). */
typedef struct tr_handle {
    ds_config   *cfg;
    ds_weights  *w;
    ds_component comp;
} tr_handle;

static ds_status tr_open(tr_handle *h, const char *dir, ds_err *err) {
    memset(h, 0, sizeof *h);
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    DS_TRY(ds_config_open(path, &h->cfg, err));
    DS_TRY(ds_weights_open(dir, &h->w, err));
    h->comp = (ds_component){.name = "transformer", .library = "diffusers", .class_name = "DiTTransformer2DModel",
                             .path = dir, .config = h->cfg, .weights = h->w};
    return DS_OK;
}

static void tr_close(tr_handle *h) {
    ds_weights_close(h->w);
    ds_config_close(h->cfg);
}

/* Load the committed tiny checkpoint through the pipeline directory. */
static ds_dit *load_tiny(int max_batch, int max_latent, ds_diffusers **pipe_out) {
    ds_err err;
    ds_err_clear(&err);
    ds_diffusers *pipe = NULL;
    cr_assert_eq(ds_diffusers_open(CKPT, &pipe, &err), DS_OK, "%s", err.msg);
    cr_assert_str_eq(ds_diffusers_class(pipe), "DiTPipeline");
    const ds_component *comp = NULL;
    cr_assert_eq(ds_diffusers_component(pipe, "transformer", &comp, &err), DS_OK, "%s", err.msg);
    ds_dit *m = NULL;
    cr_assert_eq(ds_dit_load(comp, max_batch, max_latent, &m, &err), DS_OK, "%s", err.msg);
    *pipe_out = pipe;
    return m;
}

/* Run the reference case stage by stage and in one call; compare everything. */
static void run_case(ds_dit *m, const char *rel) {
    ref_case r;
    ref_load(&r, rel);
    const ds_dit_config *c = ds_dit_get_config(m);
    const int64_t B = r.B, N = r.N, D = c->hidden, S = r.S;
    cr_assert_eq(ds_dit_tokens(m, S), N);
    float *h = malloc((size_t)(B * N * D) * sizeof(float)), *cd = malloc((size_t)(B * D) * sizeof(float));
    float *out = malloc((size_t)(B * c->out_channels * S * S) * sizeof(float));
    float *out2 = malloc((size_t)(B * c->out_channels * S * S) * sizeof(float));
    ds_tensor th = ds_tensor_f32(h, 3, B, N, D), tc = ds_tensor_f32(cd, 2, B, D);
    ds_tensor to = ds_tensor_f32(out, 4, B, c->out_channels, S, S);
    ds_tensor to2 = ds_tensor_f32(out2, 4, B, c->out_channels, S, S);
    ds_err err;
    ds_err_clear(&err);
    char what[128];

    cr_assert_eq(ds_dit_embed(m, &r.tx, r.t, r.labels, &th, &tc, &err), DS_OK, "%s", err.msg);
    snprintf(what, sizeof what, "%s cond", rel);
    check(cd, r.cond, B * D, REL_STAGE, what);
    snprintf(what, sizeof what, "%s hidden after embed", rel);
    check(h, r.h_embed, B * N * D, REL_STAGE, what);
    const int L = ds_dit_block_count(m);
    for (int i = 0; i < L; i++) {
        cr_assert_eq(ds_dit_block_forward(m, i, &th, &tc, &err), DS_OK, "%s", err.msg);
        if (i == 0) {
            snprintf(what, sizeof what, "%s hidden after block 0", rel);
            check(h, r.h_block0, B * N * D, REL_STAGE, what);
        }
    }
    snprintf(what, sizeof what, "%s hidden after block %d", rel, L - 1);
    check(h, r.h_last, B * N * D, REL_STAGE, what);
    cr_assert_eq(ds_dit_final(m, &th, &tc, &to, &err), DS_OK, "%s", err.msg);
    snprintf(what, sizeof what, "%s output", rel);
    check(out, r.out, B * c->out_channels * S * S, REL_OUT, what);

    /* One call == the pieces, bit for bit. */
    memset(out2, 0xff, (size_t)ds_tensor_nbytes(&to2));
    cr_assert_eq(ds_dit_forward(m, &r.tx, r.t, r.labels, &to2, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(memcmp(out, out2, (size_t)ds_tensor_nbytes(&to)), 0, "%s: forward != embed + blocks + final", rel);
    free(h);
    free(cd);
    free(out);
    free(out2);
    ref_free(&r);
}

/* ---- parity ------------------------------------------------------------------------------------------- */

Test(dit, config) {
    ds_diffusers *pipe;
    ds_dit *m = load_tiny(2, 0, &pipe);
    const ds_dit_config *c = ds_dit_get_config(m);
    cr_assert_eq(c->num_layers, 10);
    cr_assert_eq(c->num_heads, 2);
    cr_assert_eq(c->head_dim, 12);
    cr_assert_eq(c->hidden, 24);
    cr_assert_eq(c->in_channels, 4);
    cr_assert_eq(c->out_channels, 8);
    cr_assert_eq(c->patch_size, 2);
    cr_assert_eq(c->sample_size, 8);
    cr_assert_eq(c->num_classes, 1000);
    cr_assert_eq(c->ff_inner, 96);
    cr_assert_float_eq(c->norm_eps, 1e-5f, 1e-12);
    cr_assert_eq(c->gelu, DS_GELU_TANH);
    cr_assert(c->attention_bias);
    cr_assert_eq(ds_dit_block_count(m), 10);
    cr_assert_eq(ds_dit_max_latent(m), 8);
    cr_assert_eq(ds_dit_tokens(m, 8), 16);
    cr_assert_eq(ds_dit_tokens(m, 10), -1);
    cr_assert_eq(ds_dit_tokens(m, 7), -1);
    /* f32 weights with ONE embedder copy: patch 408 + embedder 30,792 + 10 blocks x 10,728 + proj_out
     * 1,200 + 800 + position table 16 x 24 = 140,864 floats, plus <= 256 bytes of alignment for each of
     * the 152 arena allocations. Ten embedder copies would add 277,128 floats. */
    const size_t wb = ds_dit_weight_bytes(m);
    cr_log_info("weights arena %zu bytes, activation arena %zu bytes", wb, ds_dit_activation_bytes(m));
    cr_assert_geq(wb, (size_t)140864 * 4);
    cr_assert_leq(wb, (size_t)140864 * 4 + 152 * 256);
    cr_assert_gt(ds_dit_activation_bytes(m), 0);
    ds_dit_free(m);
    ds_diffusers_close(pipe);
}

Test(dit, forward_batch2) {
    ds_diffusers *pipe;
    ds_dit *m = load_tiny(4, 0, &pipe);
    run_case(m, "dit/tiny_b2.safetensors");
    ds_dit_free(m);
    ds_diffusers_close(pipe);
}

Test(dit, forward_batch4_cfg) {
    ds_diffusers *pipe;
    ds_dit *m = load_tiny(4, 0, &pipe);
    run_case(m, "dit/tiny_b4.safetensors");
    ds_dit_free(m);
    ds_diffusers_close(pipe);
}

Test(dit, forward_latent12) {
    ds_diffusers *pipe;
    ds_dit *m = load_tiny(1, 12, &pipe);
    run_case(m, "dit/tiny_s12.safetensors");
    ds_dit_free(m);
    ds_diffusers_close(pipe);
}

/* One model switching latent sizes (the cached position table is recomputed) and batch sizes gives the
 * same results as the references, in any order, with no state leaking between calls. */
Test(dit, size_switching) {
    ds_diffusers *pipe;
    ds_dit *m = load_tiny(4, 12, &pipe);
    run_case(m, "dit/tiny_s12.safetensors");
    run_case(m, "dit/tiny_b2.safetensors");
    run_case(m, "dit/tiny_b4.safetensors");
    run_case(m, "dit/tiny_s12.safetensors");
    run_case(m, "dit/tiny_b2.safetensors");
    ds_dit_free(m);
    ds_diffusers_close(pipe);
}

/* Block 0 and the final layer on a hidden state whose per-token variance (~4e-6) is below the LayerNorm
 * eps: eps 1e-6 (attention branch, final layer) vs 1e-5 is a large difference here. */
Test(dit, low_variance_layernorm_eps) {
    ds_diffusers *pipe;
    ds_dit *m = load_tiny(2, 0, &pipe);
    ds_safetensors *st = ds_test_open("dit/tiny_smallvar.safetensors");
    ds_tensor tx, tt, tl, tin, tb0, tfo;
    float *x = ds_test_read_f32(st, "x", &tx), *t = ds_test_read_f32(st, "timesteps", &tt);
    float *lf = ds_test_read_f32(st, "labels", &tl), *cref = ds_test_read_f32(st, "cond", NULL);
    float *in = ds_test_read_f32(st, "small_in", &tin), *b0 = ds_test_read_f32(st, "block0_out", &tb0);
    float *fo = ds_test_read_f32(st, "final_out", &tfo);
    const int64_t B = 2, N = 16, D = 24;
    const int32_t y[2] = {(int32_t)lf[0], (int32_t)lf[1]};
    float h[2 * 16 * 24], c[2 * 24], out[2 * 8 * 64];
    ds_tensor th = ds_tensor_f32(h, 3, B, N, D), tc = ds_tensor_f32(c, 2, B, D);
    ds_tensor to = ds_tensor_f32(out, 4, B, 8, 8, 8);
    ds_err err;
    cr_assert_eq(ds_dit_embed(m, &tx, t, y, &th, &tc, &err), DS_OK, "%s", err.msg);
    check(c, cref, B * D, REL_STAGE, "smallvar cond");
    memcpy(h, in, sizeof h);
    cr_assert_eq(ds_dit_final(m, &th, &tc, &to, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(memcmp(h, in, sizeof h), 0, "ds_dit_final modified hidden");
    check(out, fo, B * 8 * 64, REL_STAGE, "final layer on a low-variance hidden");
    cr_assert_eq(ds_dit_block_forward(m, 0, &th, &tc, &err), DS_OK, "%s", err.msg);
    check(h, b0, B * N * D, REL_STAGE, "block 0 on a low-variance hidden");
    float *bufs[] = {x, t, lf, cref, in, b0, fo};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    ds_safetensors_close(st);
    ds_dit_free(m);
    ds_diffusers_close(pipe);
}

/* ---- temp-dir checkpoints ----------------------------------------------------------------------------- */

static char g_root[64];

static void mk_root(void) { ds_test_mkdtemp(g_root, sizeof g_root, "dit_test"); }
static void rm_root(void) { ds_test_rmtree(g_root); }

/* g_root/config.json = the tiny config with `from` replaced by `to` (NULL: unchanged); weights: a
 * symlink to the committed file unless `weights` is given (then written). */
static void write_dir(const char *from, const char *to, const void *weights, size_t wlen) {
    size_t n;
    char *cfg = ds_test_slurp(TR_DIR "/config.json", &n);
    char *mod = from ? ds_test_replace(cfg, from, to) : strdup(cfg);
    ds_test_write(g_root, "config.json", mod, strlen(mod));
    free(cfg);
    free(mod);
    char path[512];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", g_root);
    if (weights) {
        ds_test_write(g_root, "diffusion_pytorch_model.safetensors", weights, wlen);
    } else {
        cr_assert_eq(symlink(TR_WEIGHTS, path), 0);
    }
}

/* Load g_root as a transformer; returns the status, message in *err. */
static ds_status try_load(int max_batch, int max_latent, ds_dit **out, ds_err *err) {
    tr_handle h;
    ds_status s = tr_open(&h, g_root, err);
    if (s == DS_OK) s = ds_dit_load(&h.comp, max_batch, max_latent, out, err);
    tr_close(&h);
    return s;
}

/* The weights file in memory, plus our parsed view of it (tensor data pointers into buf). */
typedef struct image {
    char           *buf;
    size_t          len;
    ds_safetensors *st;
} image;

static void image_load(image *im) {
    im->buf = ds_test_slurp(TR_WEIGHTS, &im->len);
    ds_err err;
    cr_assert_eq(ds_safetensors_parse(im->buf, im->len, "image", &im->st, &err), DS_OK, "%s", err.msg);
}

static void image_free(image *im) {
    ds_safetensors_close(im->st);
    free(im->buf);
}

/* Pointer to `needle` inside the JSON header (first 8 + header length bytes). */
static char *in_header(image *im, const char *needle) {
    uint64_t hl = 0;
    for (int k = 0; k < 8; k++) hl |= (uint64_t)(uint8_t)im->buf[k] << (8 * k);
    char *h = im->buf + 8, save = h[hl];
    h[hl] = 0;
    char *at = strstr(h, needle);
    h[hl] = save;
    cr_assert_not_null(at, "'%s' not in the header", needle);
    return at;
}

/* ---- config and legacy class -------------------------------------------------------------------------- */

Test(dit, legacy_class_name, .init = mk_root, .fini = rm_root) {
    write_dir("\"_class_name\": \"DiTTransformer2DModel\"", "\"_class_name\": \"Transformer2DModel\"", NULL, 0);
    ds_err err;
    ds_err_clear(&err);
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_OK, "%s", err.msg);
    run_case(m, "dit/tiny_b2.safetensors");
    ds_dit_free(m);
}

/* Config norm_eps 0.1 (diffusers run of the same weights with that config): the MLP-branch LayerNorm takes
 * its eps from the config, the attention-branch and final LayerNorms keep 1e-6. */
Test(dit, norm_eps_from_config, .init = mk_root, .fini = rm_root) {
    write_dir("\"norm_eps\": 1e-05", "\"norm_eps\": 0.1", NULL, 0);
    ds_err err;
    ds_err_clear(&err);
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_OK, "%s", err.msg);
    cr_assert_float_eq(ds_dit_get_config(m)->norm_eps, 0.1f, 1e-9);
    run_case(m, "dit/tiny_eps0.1.safetensors");
    ds_dit_free(m);
}

/* A legacy Transformer2DModel config without norm_type is a plain layer_norm transformer in diffusers. */
Test(dit, legacy_without_norm_type, .init = mk_root, .fini = rm_root) {
    size_t n;
    char *cfg = ds_test_slurp(TR_DIR "/config.json", &n);
    char *a = ds_test_replace(cfg, "\"_class_name\": \"DiTTransformer2DModel\"", "\"_class_name\": \"Transformer2DModel\"");
    char *b = ds_test_replace(a, "\"norm_type\": \"ada_norm_zero\",", "");
    ds_test_write(g_root, "config.json", b, strlen(b));
    free(cfg);
    free(a);
    free(b);
    char path[512];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", g_root);
    cr_assert_eq(symlink(TR_WEIGHTS, path), 0);
    ds_err err;
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_ERR_UNSUPPORTED);
    cr_assert_null(m);
    cr_assert_not_null(strstr(err.msg, "layer_norm"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "ada_norm_zero"), "%s", err.msg);
}

Test(dit, unsupported_norm_type, .init = mk_root, .fini = rm_root) {
    write_dir("\"norm_type\": \"ada_norm_zero\"", "\"norm_type\": \"ada_norm_single\"", NULL, 0);
    ds_err err;
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_ERR_UNSUPPORTED);
    cr_assert_null(m);
    cr_assert_not_null(strstr(err.msg, "ada_norm_single"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "supported: norm_type \"ada_norm_zero\""), "%s", err.msg);
}

Test(dit, unsupported_class, .init = mk_root, .fini = rm_root) {
    write_dir("\"_class_name\": \"DiTTransformer2DModel\"", "\"_class_name\": \"PixArtTransformer2DModel\"", NULL, 0);
    ds_err err;
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(err.msg, "PixArtTransformer2DModel"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "supported: DiTTransformer2DModel"), "%s", err.msg);
}

Test(dit, unsupported_activation, .init = mk_root, .fini = rm_root) {
    write_dir("\"activation_fn\": \"gelu-approximate\"", "\"activation_fn\": \"geglu\"", NULL, 0);
    ds_err err;
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(err.msg, "geglu"), "%s", err.msg);
}

Test(dit, bad_config_value, .init = mk_root, .fini = rm_root) {
    write_dir("\"num_layers\": 10", "\"num_layers\": \"ten\"", NULL, 0);
    ds_err err;
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_ERR_FORMAT);
    cr_assert_not_null(strstr(err.msg, "num_layers"), "%s", err.msg);
}

/* out_channels in the config disagrees with proj_out_2 in the checkpoint: the shape error names it. */
Test(dit, config_disagrees_with_weights, .init = mk_root, .fini = rm_root) {
    write_dir("\"out_channels\": 8", "\"out_channels\": 4", NULL, 0);
    ds_err err;
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "proj_out_2.weight"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "[16, 24]"), "%s", err.msg);
}

/* ---- corrupted checkpoints ---------------------------------------------------------------------------- */

Test(dit, missing_tensor, .init = mk_root, .fini = rm_root) {
    image im;
    image_load(&im);
    /* Rename (same length) block 7's to_v weight: the file stays valid, the tensor is gone. */
    char *at = in_header(&im, "\"transformer_blocks.7.attn1.to_v.weight\"");
    at[strlen("\"transformer_blocks.7.attn1.to_v.weigh")] = 'X';
    write_dir(NULL, NULL, im.buf, im.len);
    image_free(&im);
    ds_err err;
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_ERR_NOT_FOUND);
    cr_assert_null(m);
    cr_assert_not_null(strstr(err.msg, "transformer_blocks.7.attn1.to_v.weight"), "%s", err.msg);
}

Test(dit, wrong_shape, .init = mk_root, .fini = rm_root) {
    image im;
    image_load(&im);
    /* proj_out_2.weight [32, 24] -> [24, 32]: same bytes, so only the shape is wrong. */
    char *at = in_header(&im, "\"proj_out_2.weight\"");
    char *sh = strstr(at, "\"shape\":[32,24]");
    cr_assert_not_null(sh);
    cr_assert_lt(sh - at, 64, "shape entry not in proj_out_2.weight's record");
    memcpy(sh, "\"shape\":[24,32]", strlen("\"shape\":[24,32]"));
    write_dir(NULL, NULL, im.buf, im.len);
    image_free(&im);
    ds_err err;
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_ERR_INVALID_ARG);
    cr_assert_null(m);
    cr_assert_not_null(strstr(err.msg, "proj_out_2.weight"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "[24, 32]"), "%s", err.msg);
}

Test(dit, embedder_copy_differs, .init = mk_root, .fini = rm_root) {
    image im;
    image_load(&im);
    const ds_st_tensor *t =
        ds_safetensors_find(im.st, "transformer_blocks.3.norm1.emb.class_embedder.embedding_table.weight");
    cr_assert_not_null(t);
    ((char *)t->data)[100] ^= 0x01; /* data points into im.buf */
    write_dir(NULL, NULL, im.buf, im.len);
    image_free(&im);
    ds_err err;
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(err.msg, "transformer_blocks.3.norm1.emb.class_embedder.embedding_table.weight"),
                       "%s", err.msg);
}

Test(dit, embedder_copy_missing, .init = mk_root, .fini = rm_root) {
    image im;
    image_load(&im);
    char *at = in_header(&im, "\"transformer_blocks.9.norm1.emb.timestep_embedder.linear_2.bias\"");
    at[1] = 'X'; /* "Xransformer_blocks.9..." */
    write_dir(NULL, NULL, im.buf, im.len);
    image_free(&im);
    ds_err err;
    ds_dit *m = NULL;
    cr_assert_eq(try_load(2, 0, &m, &err), DS_ERR_NOT_FOUND);
    cr_assert_not_null(strstr(err.msg, "transformer_blocks.9.norm1.emb.timestep_embedder.linear_2.bias"), "%s",
                       err.msg);
}

/* ---- argument errors ---------------------------------------------------------------------------------- */

Test(dit, load_bad_limits) {
    ds_diffusers *pipe = NULL;
    ds_err err;
    cr_assert_eq(ds_diffusers_open(CKPT, &pipe, &err), DS_OK, "%s", err.msg);
    const ds_component *comp = NULL;
    cr_assert_eq(ds_diffusers_component(pipe, "transformer", &comp, &err), DS_OK, "%s", err.msg);
    ds_dit *m = NULL;
    cr_assert_eq(ds_dit_load(comp, 0, 0, &m, &err), DS_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "max_batch"), "%s", err.msg);
    cr_assert_eq(ds_dit_load(comp, 2, 7, &m, &err), DS_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "max_latent"), "%s", err.msg);
    cr_assert_null(m);
    /* A model planned for 4x4 latents only (smaller than the trained 8x8) still runs 4x4. */
    cr_assert_eq(ds_dit_load(comp, 1, 4, &m, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_dit_tokens(m, 4), 4);
    cr_assert_eq(ds_dit_tokens(m, 8), -1);
    float x[4 * 16] = {0}, o[8 * 16];
    ds_tensor tx = ds_tensor_f32(x, 4, 1, 4, 4, 4), to = ds_tensor_f32(o, 4, 1, 8, 4, 4);
    const float t = 10.0f;
    const int32_t y = 5;
    cr_assert_eq(ds_dit_forward(m, &tx, &t, &y, &to, &err), DS_OK, "%s", err.msg);
    for (int i = 0; i < 8 * 16; i++) cr_assert(isfinite(o[i]));
    ds_dit_free(m);
    ds_diffusers_close(pipe);
}

/* Forward on a B-sized zero latent with given labels; returns the status. */
static ds_status fwd(ds_dit *m, int64_t B, int64_t S, const int32_t *labels, const float *ts, ds_err *err) {
    float *x = calloc((size_t)(B * 4 * S * S), sizeof(float)), *o = calloc((size_t)(B * 8 * S * S), sizeof(float));
    ds_tensor tx = ds_tensor_f32(x, 4, B, 4, S, S), to = ds_tensor_f32(o, 4, B, 8, S, S);
    ds_status s = ds_dit_forward(m, &tx, ts, labels, &to, err);
    free(x);
    free(o);
    return s;
}

Test(dit, batch_too_large) {
    ds_diffusers *pipe;
    ds_dit *m = load_tiny(4, 0, &pipe);
    const int32_t y[5] = {1, 2, 3, 4, 5};
    const float t[5] = {1, 2, 3, 4, 5};
    ds_err err;
    cr_assert_eq(fwd(m, 5, 8, y, t, &err), DS_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "batch 5"), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "max_batch"), "%s", err.msg);
    cr_assert_eq(fwd(m, 4, 8, y, t, &err), DS_OK, "%s", err.msg);
    ds_dit_free(m);
    ds_diffusers_close(pipe);
}

Test(dit, label_out_of_range) {
    ds_diffusers *pipe;
    ds_dit *m = load_tiny(2, 0, &pipe);
    const float t[2] = {999, 0};
    ds_err err;
    cr_assert_eq(fwd(m, 2, 8, (const int32_t[]){3, 1001}, t, &err), DS_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "class_labels[1] = 1001"), "%s", err.msg);
    cr_assert_eq(fwd(m, 2, 8, (const int32_t[]){-1, 3}, t, &err), DS_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "class_labels[0] = -1"), "%s", err.msg);
    cr_assert_eq(fwd(m, 2, 8, (const int32_t[]){0, 1000}, t, &err), DS_OK, "%s", err.msg); /* 1000 = null */
    cr_assert_eq(fwd(m, 2, 8, (const int32_t[]){0, 1}, (const float[]){NAN, 1}, &err), DS_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "timesteps[0]"), "%s", err.msg);
    ds_dit_free(m);
    ds_diffusers_close(pipe);
}

Test(dit, bad_shapes) {
    ds_diffusers *pipe;
    ds_dit *m = load_tiny(2, 0, &pipe);
    const int32_t y[2] = {1, 2};
    const float t[2] = {1, 2};
    ds_err err;
    cr_assert_eq(fwd(m, 2, 10, y, t, &err), DS_ERR_INVALID_ARG); /* above max_latent 8 */
    cr_assert_not_null(strstr(err.msg, "max_latent"), "%s", err.msg);
    cr_assert_eq(fwd(m, 2, 6, y, t, &err), DS_OK, "%s", err.msg); /* smaller sizes are fine */

    float x[2 * 3 * 64], o[2 * 8 * 64], h[2 * 16 * 24], c[2 * 24];
    ds_tensor tx = ds_tensor_f32(x, 4, 2, 3, 8, 8), to = ds_tensor_f32(o, 4, 2, 8, 8, 8);
    cr_assert_eq(ds_dit_forward(m, &tx, t, y, &to, &err), DS_ERR_INVALID_ARG); /* 3 channels */
    cr_assert_not_null(strstr(err.msg, "x has shape [2, 3, 8, 8], expected [2, 4, 8, 8]"), "%s", err.msg);
    ds_tensor th = ds_tensor_f32(h, 3, 2, 15, 24), tc = ds_tensor_f32(c, 2, 2, 24);
    cr_assert_eq(ds_dit_block_forward(m, 0, &th, &tc, &err), DS_ERR_INVALID_ARG); /* 15 tokens */
    cr_assert_not_null(strstr(err.msg, "15 tokens"), "%s", err.msg);
    th = ds_tensor_f32(h, 3, 2, 16, 24);
    cr_assert_eq(ds_dit_block_forward(m, 10, &th, &tc, &err), DS_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "block 10"), "%s", err.msg);
    tc = ds_tensor_f32(c, 2, 1, 24);
    cr_assert_eq(ds_dit_block_forward(m, 0, &th, &tc, &err), DS_ERR_INVALID_ARG); /* cond batch 1 */
    cr_assert_not_null(strstr(err.msg, "cond"), "%s", err.msg);
    tc = ds_tensor_f32(c, 2, 2, 24);
    ds_tensor bad_out = ds_tensor_f32(o, 4, 2, 4, 8, 8);
    cr_assert_eq(ds_dit_final(m, &th, &tc, &bad_out, &err), DS_ERR_INVALID_ARG);
    cr_assert_not_null(strstr(err.msg, "out"), "%s", err.msg);
    ds_tensor h16 = ds_tensor_make(h, DS_F16, 3, (const int64_t[]){2, 16, 24});
    cr_assert_eq(ds_dit_block_forward(m, 0, &h16, &tc, &err), DS_ERR_UNSUPPORTED);
    ds_dit_free(m);
    ds_diffusers_close(pipe);
}
