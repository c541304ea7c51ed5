/* test_flux.c - the FLUX.1 transformer (models/flux.c) against diffusers' FluxTransformer2DModel: the tiny
 * checkpoint tests/data/ckpt/flux-tiny (4 double + 6 single blocks, 2 heads x 16, guidance_embeds true) and the
 * fp32 references of tools/export_flux_tiny.py (tests/data/flux/): full forward at two token grids (4x4 and the
 * non-square 3x5), every stage (embed, double block 0, last double block, last single block, final), the
 * pieces chained bit for bit against ds_flux_forward, a schnell-like copy without the guidance embedder, the
 * pipeline pack / unpack / image-id helpers, and the error paths (missing tensor, config / weights mismatch,
 * sizes beyond the planned maximum, wrong shapes, guidance NULL for a guidance-embeds model). */
#include <cJSON.h>
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "diffusers_dir.h"
#include "flux.h"
#include "test_util.h"

#define CKPT DS_TEST_DATA_DIR "/ckpt/flux-tiny"

/* Bounds: the full-forward bound, and the stage bound (f32 vs f32 torch, different summation order). */
#define FULL_REL 1e-4
#define STAGE_REL 1e-5

/* ---- loading ---------------------------------------------------------------------------------------- */

typedef struct fixture {
    ds_diffusers       *pipe;
    const ds_component *comp;
    ds_flux            *m;
} fixture;

static void load_fixture(fixture *f, int max_batch, int max_img, int max_txt) {
    ds_err err;
    ds_err_clear(&err);
    memset(f, 0, sizeof *f);
    cr_assert_eq(ds_diffusers_open(CKPT, &f->pipe, &err), DS_OK, "%s", err.msg);
    cr_assert_str_eq(ds_diffusers_class(f->pipe), "FluxPipeline");
    cr_assert_eq(ds_diffusers_component(f->pipe, "transformer", &f->comp, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_flux_load(f->comp, max_batch, max_img, max_txt, &f->m, &err), DS_OK, "%s", err.msg);
}

static void free_fixture(fixture *f) {
    ds_flux_free(f->m);
    ds_diffusers_close(f->pipe);
}

/* A reference file's tensors. */
typedef struct refs {
    ds_safetensors *st;
    ds_tensor       hidden_in, encoder_in, pooled, img_ids, txt_ids, timestep, guidance;
    float          *bufs[16];
    int             nbufs;
    bool            has_guidance;
} refs;

static float *ref_read(refs *r, const char *name, ds_tensor *t) {
    float *p = ds_test_read_f32(r->st, name, t);
    r->bufs[r->nbufs++] = p;
    return p;
}

static void refs_open(refs *r, const char *relpath) {
    memset(r, 0, sizeof *r);
    r->st = ds_test_open(relpath);
    ref_read(r, "hidden_in", &r->hidden_in);
    ref_read(r, "encoder_in", &r->encoder_in);
    ref_read(r, "pooled", &r->pooled);
    ref_read(r, "img_ids", &r->img_ids);
    ref_read(r, "txt_ids", &r->txt_ids);
    ref_read(r, "timestep", &r->timestep);
    r->has_guidance = ds_safetensors_find(r->st, "guidance") != NULL;
    if (r->has_guidance) ref_read(r, "guidance", &r->guidance);
}

static void refs_close(refs *r) {
    for (int i = 0; i < r->nbufs; i++) free(r->bufs[i]);
    ds_safetensors_close(r->st);
}

static const float *guidance_of(const refs *r) { return r->has_guidance ? r->guidance.data : NULL; }

/* Compare out against reference tensor `name`, print the error, assert rel <= max_rel and every element within
 * atol + rtol*|ref| (atol = rtol = max_rel: the values are O(1)). */
static double check_ref(const refs *r, const char *name, const float *out, int64_t n, double max_rel) {
    ds_tensor t;
    float *ref = ds_test_read_f32(r->st, name, &t);
    cr_assert_eq(ds_tensor_numel(&t), n, "%s: %lld elements, reference has %lld", name, (long long)n,
                 (long long)ds_tensor_numel(&t));
    ds_test_cmp c = ds_test_compare(out, ref, n, max_rel, max_rel);
    printf("flux %s %-22s rel %.3e  max_abs %.3e\n", ds_safetensors_label(r->st) + strlen(DS_TEST_DATA_DIR) + 1,
           name, c.rel_err, c.max_abs);
    ds_test_assert_close(out, ref, n, max_rel, max_rel, max_rel, name);
    free(ref);
    return c.rel_err;
}

static float *alloc_f32(ds_tensor *t, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *p = malloc((size_t)n * sizeof(float));
    cr_assert_not_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = -777.0f; /* poison: outputs must be fully written */
    *t = ds_tensor_make(p, DS_F32, ndim, shape);
    return p;
}

/* ---- full forward ----------------------------------------------------------------------------------- */

static void forward_case(const char *relpath) {
    fixture f;
    load_fixture(&f, 2, 16, 7);
    refs r;
    refs_open(&r, relpath);
    const int64_t B = r.hidden_in.shape[0], N = r.hidden_in.shape[1];
    ds_tensor out;
    float *o = alloc_f32(&out, 3, (const int64_t[]){B, N, 64});
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_flux_forward(f.m, &r.hidden_in, &r.encoder_in, &r.pooled, r.timestep.data, guidance_of(&r),
                                 &r.img_ids, &r.txt_ids, &out, &err),
                 DS_OK, "%s", err.msg);
    check_ref(&r, "out", o, B * N * 64, FULL_REL);
    free(o);
    refs_close(&r);
    free_fixture(&f);
}

Test(flux, forward_b2_s8) { forward_case("flux/tiny_b2_s8.safetensors"); }

Test(flux, forward_b2_s6x10) { forward_case("flux/tiny_b2_s6x10.safetensors"); }

/* ---- the pieces, stage by stage, and bit-equality with ds_flux_forward ------------------------------------ */

static void stages_case(const char *relpath) {
    fixture f;
    load_fixture(&f, 2, 16, 7);
    const ds_flux_config *c = ds_flux_get_config(f.m);
    cr_assert_eq(c->hidden, 32);
    cr_assert_eq(ds_flux_double_block_count(f.m), 4);
    cr_assert_eq(ds_flux_single_block_count(f.m), 6);
    refs r;
    refs_open(&r, relpath);
    const int64_t B = r.hidden_in.shape[0], N = r.hidden_in.shape[1], T = r.encoder_in.shape[1], D = c->hidden;
    const int64_t L = T + N, d = c->head_dim;
    ds_tensor hid, enc, temb, cat, out, ref_out;
    ds_flux_rope rope;
    float *ph = alloc_f32(&hid, 3, (const int64_t[]){B, N, D});
    float *pe = alloc_f32(&enc, 3, (const int64_t[]){B, T, D});
    float *pt = alloc_f32(&temb, 2, (const int64_t[]){B, D});
    float *pc = alloc_f32(&rope.cos, 2, (const int64_t[]){L, d});
    float *ps = alloc_f32(&rope.sin, 2, (const int64_t[]){L, d});
    float *pcat = alloc_f32(&cat, 3, (const int64_t[]){B, L, D});
    float *po = alloc_f32(&out, 3, (const int64_t[]){B, N, 64});
    float *pro = alloc_f32(&ref_out, 3, (const int64_t[]){B, N, 64});
    ds_err err;
    ds_err_clear(&err);

    cr_assert_eq(ds_flux_embed(f.m, &r.hidden_in, &r.encoder_in, &r.pooled, r.timestep.data, guidance_of(&r),
                               &r.img_ids, &r.txt_ids, &hid, &enc, &temb, &rope, &err),
                 DS_OK, "%s", err.msg);
    check_ref(&r, "temb", pt, B * D, STAGE_REL);
    check_ref(&r, "hidden_embed", ph, B * N * D, STAGE_REL);
    check_ref(&r, "encoder_embed", pe, B * T * D, STAGE_REL);
    check_ref(&r, "rope_cos", pc, L * d, STAGE_REL);
    check_ref(&r, "rope_sin", ps, L * d, STAGE_REL);

    for (int i = 0; i < ds_flux_double_block_count(f.m); i++) {
        cr_assert_eq(ds_flux_double_block_forward(f.m, i, &hid, &enc, &temb, &rope, &err), DS_OK, "%s", err.msg);
        if (i == 0) {
            check_ref(&r, "hidden_double0", ph, B * N * D, STAGE_REL);
            check_ref(&r, "encoder_double0", pe, B * T * D, STAGE_REL);
        }
    }
    check_ref(&r, "hidden_double_last", ph, B * N * D, STAGE_REL);
    check_ref(&r, "encoder_double_last", pe, B * T * D, STAGE_REL);
    cr_assert_eq(ds_flux_join_streams(&enc, &hid, &cat, &err), DS_OK, "%s", err.msg);
    for (int j = 0; j < ds_flux_single_block_count(f.m); j++)
        cr_assert_eq(ds_flux_single_block_forward(f.m, j, &cat, &temb, &rope, &err), DS_OK, "%s", err.msg);
    check_ref(&r, "cat_single_last", pcat, B * L * D, STAGE_REL);
    cr_assert_eq(ds_flux_final(f.m, &cat, &temb, &out, &err), DS_OK, "%s", err.msg);
    check_ref(&r, "out", po, B * N * 64, STAGE_REL);

    /* the pieces chained are ds_flux_forward, bit for bit */
    cr_assert_eq(ds_flux_forward(f.m, &r.hidden_in, &r.encoder_in, &r.pooled, r.timestep.data, guidance_of(&r),
                                 &r.img_ids, &r.txt_ids, &ref_out, &err),
                 DS_OK, "%s", err.msg);
    cr_assert(memcmp(po, pro, (size_t)(B * N * 64) * sizeof(float)) == 0, "pieces differ from ds_flux_forward");

    /* a second forward gives the same bits (no state leaks between calls) */
    cr_assert_eq(ds_flux_forward(f.m, &r.hidden_in, &r.encoder_in, &r.pooled, r.timestep.data, guidance_of(&r),
                                 &r.img_ids, &r.txt_ids, &out, &err),
                 DS_OK, "%s", err.msg);
    cr_assert(memcmp(po, pro, (size_t)(B * N * 64) * sizeof(float)) == 0, "second forward differs");

    /* RoPE tables (ds_flux_embed's contract): after a forward (arena tables) the caller's tables are written
     * again; the same tables with the same ids are then not rewritten (no upload per step: a poisoned table
     * stays poisoned); other tables are written. */
#define EMBED(rp)                                                                                                 \
    cr_assert_eq(ds_flux_embed(f.m, &r.hidden_in, &r.encoder_in, &r.pooled, r.timestep.data, guidance_of(&r),   \
                               &r.img_ids, &r.txt_ids, &hid, &enc, &temb, (rp), &err),                          \
                 DS_OK, "%s", err.msg)
    for (int64_t i = 0; i < L * d; i++) pc[i] = ps[i] = NAN;
    EMBED(&rope);
    check_ref(&r, "rope_cos", pc, L * d, STAGE_REL);
    check_ref(&r, "rope_sin", ps, L * d, STAGE_REL);
    pc[0] = ps[L * d - 1] = NAN;
    EMBED(&rope);
    cr_assert(isnan(pc[0]) && isnan(ps[L * d - 1]), "the kept tables were rewritten");
    ds_flux_rope other;
    float *oc = alloc_f32(&other.cos, 2, (const int64_t[]){L, d}), *os = alloc_f32(&other.sin, 2, (const int64_t[]){L, d});
    EMBED(&other);
    check_ref(&r, "rope_cos", oc, L * d, STAGE_REL);
    check_ref(&r, "rope_sin", os, L * d, STAGE_REL);
#undef EMBED
    free(oc), free(os);

    free(ph), free(pe), free(pt), free(pc), free(ps), free(pcat), free(po), free(pro);
    refs_close(&r);
    free_fixture(&f);
}

Test(flux, stages_b2_s8) { stages_case("flux/tiny_b2_s8.safetensors"); }

Test(flux, stages_b2_s6x10) { stages_case("flux/tiny_b2_s6x10.safetensors"); }

/* Batch 1 (the second sample of the batch-2 file) gives that sample's reference rows: per-sample independence. */
Test(flux, batch1_matches_batch2_row) {
    fixture f;
    load_fixture(&f, 2, 16, 7);
    refs r;
    refs_open(&r, "flux/tiny_b2_s8.safetensors");
    const int64_t N = r.hidden_in.shape[1], T = r.encoder_in.shape[1];
    ds_tensor h1 = ds_tensor_f32((float *)r.hidden_in.data + N * 64, 3, 1, N, 64);
    ds_tensor e1 = ds_tensor_f32((float *)r.encoder_in.data + T * 24, 3, 1, T, 24);
    ds_tensor p1 = ds_tensor_f32((float *)r.pooled.data + 12, 2, 1, 12);
    ds_tensor out;
    float *o = alloc_f32(&out, 3, (const int64_t[]){1, N, 64});
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_flux_forward(f.m, &h1, &e1, &p1, (const float *)r.timestep.data + 1,
                                 (const float *)r.guidance.data + 1, &r.img_ids, &r.txt_ids, &out, &err),
                 DS_OK, "%s", err.msg);
    ds_tensor rt;
    float *ref = ds_test_read_f32(r.st, "out", &rt);
    ds_test_assert_close(o, ref + N * 64, N * 64, FULL_REL, FULL_REL, FULL_REL, "out[1]");
    free(ref);
    free(o);
    refs_close(&r);
    free_fixture(&f);
}

/* ---- pipeline helpers --------------------------------------------------------------------------------- */

static void helpers_case(const char *relpath) {
    refs r;
    refs_open(&r, relpath);
    ds_tensor lat, packed, unpacked, ids;
    float *pl = ref_read(&r, "latents", &lat);
    const int64_t B = lat.shape[0], C = lat.shape[1], H = lat.shape[2], W = lat.shape[3];
    float *pp = alloc_f32(&packed, 3, (const int64_t[]){B, (H / 2) * (W / 2), 4 * C});
    float *pu = alloc_f32(&unpacked, 4, (const int64_t[]){B, C, H, W});
    float *pi = alloc_f32(&ids, 2, (const int64_t[]){(H / 2) * (W / 2), 3});
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_flux_pack_latents(&lat, &packed, &err), DS_OK, "%s", err.msg);
    cr_assert(memcmp(pp, r.hidden_in.data, (size_t)ds_tensor_nbytes(&packed)) == 0, "pack differs from "
              "FluxPipeline._pack_latents");
    cr_assert_eq(ds_flux_unpack_latents(&packed, &unpacked, &err), DS_OK, "%s", err.msg);
    ds_tensor ru;
    float *ref_u = ref_read(&r, "unpacked", &ru);
    cr_assert(memcmp(pu, ref_u, (size_t)ds_tensor_nbytes(&unpacked)) == 0, "unpack differs from _unpack_latents");
    cr_assert(memcmp(pu, pl, (size_t)ds_tensor_nbytes(&unpacked)) == 0, "unpack(pack(x)) != x");
    cr_assert_eq(ds_flux_image_ids(H / 2, W / 2, &ids, &err), DS_OK, "%s", err.msg);
    cr_assert(memcmp(pi, r.img_ids.data, (size_t)ds_tensor_nbytes(&ids)) == 0, "image ids differ from "
              "_prepare_latent_image_ids");
    /* odd latent sizes are refused */
    ds_tensor odd = ds_tensor_f32(pl, 4, B, C, H - 1, W);
    cr_assert_eq(ds_flux_pack_latents(&odd, &packed, &err), DS_ERR_INVALID_ARG);
    free(pp), free(pu), free(pi);
    refs_close(&r);
}

Test(flux, pack_unpack_ids_s8) { helpers_case("flux/tiny_b2_s8.safetensors"); }

Test(flux, pack_unpack_ids_s6x10) { helpers_case("flux/tiny_b2_s6x10.safetensors"); }

/* ---- modified checkpoint copies in a temp dir ------------------------------------------------------------- */

static char g_root[64];

/* Does `name` contain any of the NULL-terminated substrings in drop? */
static bool dropped(const char *name, const char *const *drop) {
    for (int i = 0; drop && drop[i]; i++)
        if (strstr(name, drop[i])) return true;
    return false;
}

typedef struct entry {
    const char *name;
    cJSON      *node;
    int64_t     begin, end;
} entry;

static int cmp_entry(const void *a, const void *b) {
    const entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* Copy the tiny transformer to <tmp>/transformer without the tensors whose names contain a string of `drop`,
 * with config.json's `guidance_embeds` set to `guidance` (or kept when < 0). Returns the component dir. */
static const char *make_copy(const char *const *drop, int guidance) {
    ds_test_mkdtemp(g_root, sizeof g_root, "flux_test");
    static char dir[128];
    snprintf(dir, sizeof dir, "%s/transformer", g_root);
    cr_assert_eq(mkdir(dir, 0755), 0);
    char path[256];

    size_t len;
    char *cfg = ds_test_slurp(CKPT "/transformer/config.json", &len);
    cJSON *root = cJSON_Parse(cfg);
    cr_assert_not_null(root);
    if (guidance >= 0) cJSON_ReplaceItemInObject(root, "guidance_embeds", cJSON_CreateBool(guidance));
    char *txt = cJSON_Print(root);
    snprintf(path, sizeof path, "%s/config.json", dir);
    ds_test_write(NULL, path, txt, strlen(txt));
    free(txt);
    cJSON_Delete(root);
    free(cfg);

    char *st = ds_test_slurp(CKPT "/transformer/diffusion_pytorch_model.safetensors", &len);
    uint64_t hlen;
    memcpy(&hlen, st, 8);
    const char *data = st + 8 + hlen;
    cJSON *hdr = cJSON_ParseWithLength(st + 8, (size_t)hlen);
    cr_assert_not_null(hdr);
    entry *ents = calloc((size_t)cJSON_GetArraySize(hdr), sizeof *ents);
    int n = 0;
    for (cJSON *it = hdr->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0 || dropped(it->string, drop)) continue;
        cJSON *off = cJSON_GetObjectItem(it, "data_offsets");
        ents[n++] = (entry){it->string, it, (int64_t)cJSON_GetArrayItem(off, 0)->valuedouble,
                            (int64_t)cJSON_GetArrayItem(off, 1)->valuedouble};
    }
    qsort(ents, (size_t)n, sizeof *ents, cmp_entry);
    cJSON *out = cJSON_CreateObject();
    char *buf = malloc(len);
    int64_t pos = 0;
    for (int i = 0; i < n; i++) {
        const int64_t sz = ents[i].end - ents[i].begin;
        memcpy(buf + pos, data + ents[i].begin, (size_t)sz);
        cJSON *e = cJSON_Duplicate(ents[i].node, 1);
        cJSON *offs = cJSON_CreateArray();
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)pos));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(pos + sz)));
        cJSON_ReplaceItemInObject(e, "data_offsets", offs);
        cJSON_AddItemToObject(out, ents[i].name, e);
        pos += sz;
    }
    char *h = cJSON_PrintUnformatted(out);
    size_t hl = strlen(h), padded = (hl + 7) / 8 * 8;
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    uint64_t hl64 = padded;
    fwrite(&hl64, 8, 1, fp);
    fwrite(h, 1, hl, fp);
    for (size_t i = hl; i < padded; i++) fputc(' ', fp);
    fwrite(buf, 1, (size_t)pos, fp);
    fclose(fp);
    free(h);
    free(buf);
    cJSON_Delete(out);
    free(ents);
    cJSON_Delete(hdr);
    free(st);
    return dir;
}

static void rm_copy(void) { ds_test_rmtree(g_root); }

/* Load a component directory directly (config + weights). */
static ds_status load_dir(const char *dir, ds_config **cfg, ds_weights **w, ds_flux **m, ds_err *err) {
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(ds_config_open(path, cfg, err), DS_OK, "%s", err->msg);
    cr_assert_eq(ds_weights_open(dir, w, err), DS_OK, "%s", err->msg);
    ds_component comp = {"transformer", "diffusers", "FluxTransformer2DModel", dir, *cfg, *w};
    return ds_flux_load(&comp, 2, 16, 7, m, err);
}

Test(flux, schnell_copy_without_guidance) {
    static const char *const drop[] = {".guidance_embedder.", NULL};
    const char *dir = make_copy(drop, 0);
    ds_config *cfg = NULL;
    ds_weights *w = NULL;
    ds_flux *m = NULL;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(load_dir(dir, &cfg, &w, &m, &err), DS_OK, "%s", err.msg);
    cr_assert(!ds_flux_get_config(m)->guidance_embeds);
    refs r;
    refs_open(&r, "flux/tiny_schnell_b2_s8.safetensors");
    cr_assert(!r.has_guidance);
    const int64_t B = r.hidden_in.shape[0], N = r.hidden_in.shape[1];
    ds_tensor out;
    float *o = alloc_f32(&out, 3, (const int64_t[]){B, N, 64});
    cr_assert_eq(ds_flux_forward(m, &r.hidden_in, &r.encoder_in, &r.pooled, r.timestep.data, NULL, &r.img_ids,
                                 &r.txt_ids, &out, &err),
                 DS_OK, "%s", err.msg);
    check_ref(&r, "out", o, B * N * 64, FULL_REL);
    /* a guidance value for a model without a guidance embedder is refused (diffusers raises too) */
    const float g[2] = {3.5f, 3.5f};
    cr_assert_eq(ds_flux_forward(m, &r.hidden_in, &r.encoder_in, &r.pooled, r.timestep.data, g, &r.img_ids,
                                 &r.txt_ids, &out, &err),
                 DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "guidance"), "%s", err.msg);
    free(o);
    refs_close(&r);
    ds_flux_free(m);
    ds_weights_close(w);
    ds_config_close(cfg);
    rm_copy();
}

Test(flux, err_missing_tensor) {
    static const char *const drop[] = {"single_transformer_blocks.4.attn.norm_k.weight", NULL};
    const char *dir = make_copy(drop, -1);
    ds_config *cfg = NULL;
    ds_weights *w = NULL;
    ds_flux *m = NULL;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(load_dir(dir, &cfg, &w, &m, &err), DS_ERR_NOT_FOUND, "%s", err.msg);
    cr_assert_null(m);
    cr_assert(strstr(err.msg, "single_transformer_blocks.4.attn.norm_k.weight"), "%s", err.msg);
    ds_weights_close(w);
    ds_config_close(cfg);
    rm_copy();
}

/* guidance_embeds false with the dev weights: the guidance embedder tensors are unexpected. */
Test(flux, err_config_weights_mismatch) {
    const char *dir = make_copy(NULL, 0);
    ds_config *cfg = NULL;
    ds_weights *w = NULL;
    ds_flux *m = NULL;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(load_dir(dir, &cfg, &w, &m, &err), DS_ERR_FORMAT, "%s", err.msg);
    cr_assert_null(m);
    cr_assert(strstr(err.msg, "guidance_embedder"), "%s", err.msg);
    ds_weights_close(w);
    ds_config_close(cfg);
    rm_copy();
}

/* ---- other error paths ---------------------------------------------------------------------------------- */

Test(flux, err_config) {
    ds_flux_config c;
    ds_config *cfg = NULL;
    ds_err err;
    ds_err_clear(&err);
    const char *bad_class = "{\"_class_name\": \"SD3Transformer2DModel\"}";
    cr_assert_eq(ds_config_parse(bad_class, strlen(bad_class), "cfg", &cfg, &err), DS_OK);
    cr_assert_eq(ds_flux_config_parse(cfg, &c, &err), DS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "SD3Transformer2DModel"), "%s", err.msg);
    ds_config_close(cfg);
    const char *patch2 = "{\"_class_name\": \"FluxTransformer2DModel\", \"patch_size\": 2}";
    cr_assert_eq(ds_config_parse(patch2, strlen(patch2), "cfg", &cfg, &err), DS_OK);
    cr_assert_eq(ds_flux_config_parse(cfg, &c, &err), DS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "patch_size"), "%s", err.msg);
    ds_config_close(cfg);
    const char *axes = "{\"_class_name\": \"FluxTransformer2DModel\", \"attention_head_dim\": 16, "
                       "\"axes_dims_rope\": [4, 6, 8]}";
    cr_assert_eq(ds_config_parse(axes, strlen(axes), "cfg", &cfg, &err), DS_OK);
    cr_assert_eq(ds_flux_config_parse(cfg, &c, &err), DS_ERR_FORMAT);
    cr_assert(strstr(err.msg, "axes_dims_rope"), "%s", err.msg);
    ds_config_close(cfg);
    /* diffusers' defaults are the FLUX.1 sizes */
    const char *dflt = "{\"_class_name\": \"FluxTransformer2DModel\"}";
    cr_assert_eq(ds_config_parse(dflt, strlen(dflt), "cfg", &cfg, &err), DS_OK);
    cr_assert_eq(ds_flux_config_parse(cfg, &c, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(c.hidden, 3072);
    cr_assert_eq(c.num_layers, 19);
    cr_assert_eq(c.num_single_layers, 38);
    cr_assert_eq(c.out_channels, 64);
    cr_assert_eq(c.n_axes, 3);
    cr_assert_eq(c.axes_dim[0], 16);
    cr_assert_eq(c.axes_dim[2], 56);
    cr_assert(!c.guidance_embeds);
    ds_config_close(cfg);
}

Test(flux, err_tokens_above_max) {
    fixture f;
    load_fixture(&f, 1, 15, 6); /* one sample, 15 image tokens, 6 text tokens */
    refs r;
    refs_open(&r, "flux/tiny_b2_s8.safetensors"); /* B 2, N 16, T 7 */
    const int64_t N = r.hidden_in.shape[1], T = r.encoder_in.shape[1];
    ds_tensor out;
    float *o = alloc_f32(&out, 3, (const int64_t[]){2, N, 64});
    ds_err err;
    ds_err_clear(&err);
    /* batch 2 > 1 */
    cr_assert_eq(ds_flux_forward(f.m, &r.hidden_in, &r.encoder_in, &r.pooled, r.timestep.data, r.guidance.data,
                                 &r.img_ids, &r.txt_ids, &out, &err),
                 DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "max_batch"), "%s", err.msg);
    /* batch 1, 16 image tokens > 15 */
    ds_tensor h1 = ds_tensor_f32(r.hidden_in.data, 3, 1, N, 64);
    ds_tensor e1 = ds_tensor_f32(r.encoder_in.data, 3, 1, T, 24);
    ds_tensor p1 = ds_tensor_f32(r.pooled.data, 2, 1, 12);
    ds_tensor o1 = ds_tensor_f32(o, 3, 1, N, 64);
    cr_assert_eq(ds_flux_forward(f.m, &h1, &e1, &p1, r.timestep.data, r.guidance.data, &r.img_ids, &r.txt_ids, &o1,
                                 &err),
                 DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "max_img_tokens"), "%s", err.msg);
    /* 15 image tokens fit; 7 text tokens > 6 */
    ds_tensor h15 = ds_tensor_f32(r.hidden_in.data, 3, 1, 15, 64);
    ds_tensor ids15 = ds_tensor_f32(r.img_ids.data, 2, 15, 3);
    ds_tensor o15 = ds_tensor_f32(o, 3, 1, 15, 64);
    cr_assert_eq(ds_flux_forward(f.m, &h15, &e1, &p1, r.timestep.data, r.guidance.data, &ids15, &r.txt_ids, &o15,
                                 &err),
                 DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "max_txt_tokens"), "%s", err.msg);
    /* at the planned maximum everything fits in the arena */
    ds_tensor e6 = ds_tensor_f32(r.encoder_in.data, 3, 1, 6, 24);
    ds_tensor t6 = ds_tensor_f32(r.txt_ids.data, 2, 6, 3);
    cr_assert_eq(ds_flux_forward(f.m, &h15, &e6, &p1, r.timestep.data, r.guidance.data, &ids15, &t6, &o15, &err),
                 DS_OK, "%s", err.msg);
    for (int64_t i = 0; i < 15 * 64; i++) cr_assert(isfinite(o[i]));
    /* a joint sequence longer than planned is refused by the single block too */
    ds_tensor temb, cat;
    ds_flux_rope rope;
    float *pt = alloc_f32(&temb, 2, (const int64_t[]){1, 32});
    float *pc = alloc_f32(&cat, 3, (const int64_t[]){1, 22, 32});
    float *pcos = alloc_f32(&rope.cos, 2, (const int64_t[]){22, 16});
    float *psin = alloc_f32(&rope.sin, 2, (const int64_t[]){22, 16});
    cr_assert_eq(ds_flux_single_block_forward(f.m, 0, &cat, &temb, &rope, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "joint tokens"), "%s", err.msg);
    free(pt), free(pc), free(pcos), free(psin);
    free(o);
    refs_close(&r);
    free_fixture(&f);
}

Test(flux, err_shapes) {
    fixture f;
    load_fixture(&f, 2, 16, 7);
    refs r;
    refs_open(&r, "flux/tiny_b2_s8.safetensors");
    const int64_t B = 2, N = 16, T = 7;
    ds_tensor out;
    float *o = alloc_f32(&out, 3, (const int64_t[]){B, N, 64});
    ds_err err;
    ds_err_clear(&err);
#define FWD(h, e, p, g, ii, ti, ot) \
    ds_flux_forward(f.m, (h), (e), (p), r.timestep.data, (g), (ii), (ti), (ot), &err)
    /* encoder with the wrong width */
    ds_tensor e_bad = ds_tensor_f32(r.encoder_in.data, 3, B, T, 12);
    cr_assert_eq(FWD(&r.hidden_in, &e_bad, &r.pooled, r.guidance.data, &r.img_ids, &r.txt_ids, &out),
                 DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "encoder"), "%s", err.msg);
    /* hidden with the wrong channel count */
    ds_tensor h_bad = ds_tensor_f32(r.hidden_in.data, 3, B, N, 32);
    cr_assert_eq(FWD(&h_bad, &r.encoder_in, &r.pooled, r.guidance.data, &r.img_ids, &r.txt_ids, &out),
                 DS_ERR_INVALID_ARG);
    /* pooled batch mismatch */
    ds_tensor p_bad = ds_tensor_f32(r.pooled.data, 2, 1, 12);
    cr_assert_eq(FWD(&r.hidden_in, &r.encoder_in, &p_bad, r.guidance.data, &r.img_ids, &r.txt_ids, &out),
                 DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "pooled"), "%s", err.msg);
    /* img_ids with too few rows */
    ds_tensor ids_bad = ds_tensor_f32(r.img_ids.data, 2, N - 1, 3);
    cr_assert_eq(FWD(&r.hidden_in, &r.encoder_in, &r.pooled, r.guidance.data, &ids_bad, &r.txt_ids, &out),
                 DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "img_ids"), "%s", err.msg);
    /* out of the wrong shape */
    ds_tensor out_bad = ds_tensor_f32(o, 3, B, N, 32);
    cr_assert_eq(FWD(&r.hidden_in, &r.encoder_in, &r.pooled, r.guidance.data, &r.img_ids, &r.txt_ids, &out_bad),
                 DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "out"), "%s", err.msg);
    /* a non-f32 input */
    ds_tensor h_f16 = r.hidden_in;
    h_f16.dtype = DS_F16;
    cr_assert_eq(FWD(&h_f16, &r.encoder_in, &r.pooled, r.guidance.data, &r.img_ids, &r.txt_ids, &out),
                 DS_ERR_UNSUPPORTED);
    /* non-finite timestep */
    const float t_nan[2] = {NAN, 0.5f};
    cr_assert_eq(ds_flux_forward(f.m, &r.hidden_in, &r.encoder_in, &r.pooled, t_nan, r.guidance.data, &r.img_ids,
                                 &r.txt_ids, &out, &err),
                 DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "timestep"), "%s", err.msg);
#undef FWD
    /* block pieces: index out of range, rope of the wrong length */
    ds_tensor hid, enc, temb;
    ds_flux_rope rope;
    float *ph = alloc_f32(&hid, 3, (const int64_t[]){B, N, 32});
    float *pe = alloc_f32(&enc, 3, (const int64_t[]){B, T, 32});
    float *pt = alloc_f32(&temb, 2, (const int64_t[]){B, 32});
    float *pc = alloc_f32(&rope.cos, 2, (const int64_t[]){N, 16});
    float *ps = alloc_f32(&rope.sin, 2, (const int64_t[]){N, 16});
    cr_assert_eq(ds_flux_double_block_forward(f.m, 4, &hid, &enc, &temb, &rope, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "out of range"), "%s", err.msg);
    cr_assert_eq(ds_flux_single_block_forward(f.m, -1, &hid, &temb, &rope, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_flux_double_block_forward(f.m, 0, &hid, &enc, &temb, &rope, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "rope"), "%s", err.msg);
    free(ph), free(pe), free(pt), free(pc), free(ps);
    free(o);
    refs_close(&r);
    free_fixture(&f);
}

Test(flux, err_guidance_null) {
    fixture f;
    load_fixture(&f, 2, 16, 7);
    cr_assert(ds_flux_get_config(f.m)->guidance_embeds);
    refs r;
    refs_open(&r, "flux/tiny_b2_s8.safetensors");
    ds_tensor out;
    float *o = alloc_f32(&out, 3, (const int64_t[]){2, 16, 64});
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_flux_forward(f.m, &r.hidden_in, &r.encoder_in, &r.pooled, r.timestep.data, NULL, &r.img_ids,
                                 &r.txt_ids, &out, &err),
                 DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "guidance"), "%s", err.msg);
    free(o);
    refs_close(&r);
    free_fixture(&f);
}

Test(flux, err_load_args) {
    ds_diffusers *pipe = NULL;
    const ds_component *comp = NULL;
    ds_flux *m = NULL;
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_diffusers_open(CKPT, &pipe, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_diffusers_component(pipe, "transformer", &comp, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(ds_flux_load(comp, 0, 16, 7, &m, &err), DS_ERR_INVALID_ARG);
    cr_assert_null(m);
    cr_assert_eq(ds_flux_load(comp, 1, 16, 0, &m, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_flux_load(NULL, 1, 16, 7, &m, &err), DS_ERR_INVALID_ARG);
    /* sizes reported */
    cr_assert_eq(ds_flux_load(comp, 2, 16, 7, &m, &err), DS_OK, "%s", err.msg);
    cr_assert_gt(ds_flux_weight_bytes(m), 1000000); /* ~285k parameters in f32 */
    cr_assert_gt(ds_flux_activation_bytes(m), 0);
    cr_assert_eq(ds_flux_max_batch(m), 2);
    cr_assert_eq(ds_flux_max_img_tokens(m), 16);
    cr_assert_eq(ds_flux_max_txt_tokens(m), 7);
    ds_flux_free(m);
    ds_diffusers_close(pipe);
}
