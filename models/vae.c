/* vae.c - AutoencoderKL decoder on any placement (CPU f32, CUDA bf16/f16/f32; see vae.h): config
 * parsing, weight loading into a weights arena on the model's device (converted to its dtype), activation
 * planning (dry run on a plan arena) and the decode itself, built from the ops in kernels/ops.h (which run
 * where the tensors live).
 *
 * Activation layout during a decode (all from the activation arena on the model's device, in its dtype,
 * taken in this order):
 *   P, T1, T2   three buffers of the largest activation of the call (B x channels x pixels, over all
 *               stages): P holds the running hidden state, T1/T2 the intermediates of one layer;
 *   S           im2col scratch of the largest 3x3 conv of the call (on every device);
 *   attention   q, k, v [B, N, 1, C] and (CPU only: the CUDA attention is tiled) the attention scratch,
 *               taken after a mark and rewound when the mid-block attention is done.
 * Every size grows with B, h and w, so the dry run at (max_batch, max_h, max_w) bounds every call. */
#include "vae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "arena.h"
#include "ops.h"
#include "tensor_io.h"

#define VAE_EPS 1e-6f /* every GroupNorm of the decoder (resnets, attention, conv_norm_out) */

typedef struct vae_conv {
    ds_tensor w; /* [Cout, Cin, k, k] (conv) or [Cout, Cin] (linear) */
    ds_tensor b; /* [Cout] */
} vae_conv;

typedef struct vae_norm {
    ds_tensor w, b; /* [C] */
} vae_norm;

typedef struct vae_resnet {
    int64_t  cin, cout;
    vae_norm norm1, norm2;
    vae_conv conv1, conv2;
    bool     has_shortcut; /* cin != cout: 1x1 conv_shortcut */
    vae_conv shortcut;
} vae_resnet;

typedef struct vae_attn {
    vae_norm norm;
    vae_conv q, k, v, o; /* linears [C, C] + [C] */
} vae_attn;

typedef struct vae_up {
    int64_t     cin, cout;
    vae_resnet *res;    /* layers_per_block + 1, inside ds_vae.resnets */
    bool        has_up; /* all but the last block */
    vae_conv    up;     /* 3x3 conv after the nearest 2x */
} vae_up;

struct ds_vae {
    ds_vae_config cfg;
    int           max_batch, max_h, max_w;
    vae_conv      post_quant; /* [Cl, Cl, 1, 1], when cfg.post_quant_conv */
    vae_conv      conv_in;    /* [C_top, Cl, 3, 3] */
    vae_resnet    mid_res[2];
    vae_attn      mid_attn;   /* when cfg.mid_attention */
    vae_up        up[DS_VAE_MAX_BLOCKS];
    vae_resnet   *resnets;    /* n_blocks * (layers_per_block + 1) */
    vae_norm      norm_out;   /* [block_out_channels[0]] */
    vae_conv      conv_out;   /* [out_channels, block_out_channels[0], 3, 3] */
    ds_tensor     ones;       /* off the CPU with shift_factor != 0: [max_batch * Cl * max_h * max_w] of 1 for
                                 z = latents / scaling_factor + shift_factor as one ds_op_axpby */
    ds_placement  pl;         /* device and dtype of weights and activations */
    void         *staging;    /* host staging for uploads: load time only (CUDA; NULL on the CPU) */
    size_t        staging_bytes; /* its size; during planning, the largest upload seen */
    ds_arena      weights;
    ds_arena      acts;
};

/* ---- config ---------------------------------------------------------------------------------- */

ds_status ds_vae_config_parse(const ds_config *cfg, ds_vae_config *out, ds_err *err) {
    if (!cfg || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_config_parse: NULL argument");
    const char *label = ds_config_label(cfg);
    ds_vae_config c;
    memset(&c, 0, sizeof c);

    const char *cls = NULL, *act = NULL;
    DS_TRY(ds_config_get_string(cfg, "_class_name", "AutoencoderKL", &cls, err));
    if (strcmp(cls, "AutoencoderKL") != 0)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: VAE class '%s' is not supported (only AutoencoderKL)", label, cls);
    DS_TRY(ds_config_get_string(cfg, "act_fn", "silu", &act, err));
    if (strcmp(act, "silu") != 0 && strcmp(act, "swish") != 0)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: act_fn '%s' is not supported (only silu)", label, act);
    if (ds_config_has(cfg, "latents_mean") || ds_config_has(cfg, "latents_std"))
        return DS_FAIL(err, DS_ERR_UNSUPPORTED,
                       "%s: per-channel latents_mean / latents_std are not supported (only scaling_factor and "
                       "shift_factor)", label);

    int n = 0;
    DS_TRY(ds_config_get_int_array(cfg, "block_out_channels", c.block_out_channels, DS_VAE_MAX_BLOCKS, &n, err));
    if (n == 0) { /* absent: the class default (64,) */
        n = 1;
        c.block_out_channels[0] = 64;
    }
    c.n_blocks = n;

    const cJSON *ub = cJSON_GetObjectItemCaseSensitive(ds_config_root(cfg), "up_block_types");
    if (ub && !cJSON_IsNull(ub)) {
        if (!cJSON_IsArray(ub))
            return DS_FAIL(err, DS_ERR_FORMAT, "%s: key 'up_block_types': expected an array of strings", label);
        int nub = cJSON_GetArraySize(ub);
        if (nub != n)
            return DS_FAIL(err, DS_ERR_FORMAT, "%s: %d up_block_types for %d block_out_channels", label, nub, n);
        for (int i = 0; i < nub; i++) {
            const cJSON *e = cJSON_GetArrayItem(ub, i);
            if (!cJSON_IsString(e))
                return DS_FAIL(err, DS_ERR_FORMAT, "%s: up_block_types[%d] is not a string", label, i);
            if (strcmp(e->valuestring, "UpDecoderBlock2D") != 0)
                return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: up_block_types[%d] '%s' is not supported (only "
                               "UpDecoderBlock2D)", label, i, e->valuestring);
        }
    } else if (n != 1) {
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: no up_block_types for %d block_out_channels", label, n);
    }

    bool pq = true, attn = true;
    DS_TRY(ds_config_get_int(cfg, "latent_channels", 4, &c.latent_channels, err));
    DS_TRY(ds_config_get_int(cfg, "out_channels", 3, &c.out_channels, err));
    DS_TRY(ds_config_get_int(cfg, "layers_per_block", 1, &c.layers_per_block, err));
    DS_TRY(ds_config_get_int(cfg, "norm_num_groups", 32, &c.norm_num_groups, err));
    DS_TRY(ds_config_get_float(cfg, "scaling_factor", 0.18215, &c.scaling_factor, err));
    DS_TRY(ds_config_get_float(cfg, "shift_factor", 0.0, &c.shift_factor, err));
    DS_TRY(ds_config_get_bool(cfg, "use_post_quant_conv", true, &pq, err));
    DS_TRY(ds_config_get_bool(cfg, "mid_block_add_attention", true, &attn, err));
    c.post_quant_conv = pq;
    c.mid_attention = attn;

    if (c.latent_channels < 1 || c.latent_channels > 4096)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: latent_channels %lld out of range", label, (long long)c.latent_channels);
    if (c.out_channels < 1 || c.out_channels > 4096)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: out_channels %lld out of range", label, (long long)c.out_channels);
    if (c.layers_per_block < 0 || c.layers_per_block > 64)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: layers_per_block %lld out of range", label,
                       (long long)c.layers_per_block);
    if (c.norm_num_groups < 1)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: norm_num_groups %lld must be >= 1", label, (long long)c.norm_num_groups);
    for (int i = 0; i < n; i++) {
        int64_t ch = c.block_out_channels[i];
        if (ch < 1 || ch > 65536)
            return DS_FAIL(err, DS_ERR_FORMAT, "%s: block_out_channels[%d] = %lld out of range", label, i, (long long)ch);
        if (ch % c.norm_num_groups != 0)
            return DS_FAIL(err, DS_ERR_FORMAT, "%s: block_out_channels[%d] = %lld is not a multiple of norm_num_groups %lld",
                           label, i, (long long)ch, (long long)c.norm_num_groups);
    }
    if (!isfinite(c.scaling_factor) || c.scaling_factor == 0.0)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: scaling_factor %g must be finite and non-zero", label, c.scaling_factor);
    if (!isfinite(c.shift_factor))
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: shift_factor must be finite", label);
    c.scale = (int64_t)1 << (n - 1);
    *out = c;
    return DS_OK;
}

/* ---- weights --------------------------------------------------------------------------------- */

/* One pass over every decoder tensor. With plan set, only sizes are taken (from a plan arena, nothing
 * is read; the largest upload is recorded for the staging buffer); otherwise each tensor is read
 * (converted to the model's dtype, uploaded to its device) into its arena slot. */
typedef struct vae_loader {
    ds_vae           *v;
    const ds_weights *w;
    ds_arena         *arena;
    bool              plan;
} vae_loader;

static void note_upload(vae_loader *L, size_t bytes) {
    if (bytes > L->v->staging_bytes) L->v->staging_bytes = bytes;
}

static ds_status load_tensor(vae_loader *L, const char *name, const char *legacy, int ndim, const int64_t *shape,
                             ds_tensor *out, ds_err *err) {
    DS_TRY(ds_arena_tensor(L->arena, L->v->pl.dtype, ndim, shape, out, err));
    if (L->plan) {
        note_upload(L, (size_t)ds_tensor_nbytes(out));
        return DS_OK;
    }
    const char *use = name;
    if (!ds_weights_find(L->w, name)) {
        if (legacy && ds_weights_find(L->w, legacy)) {
            use = legacy;
        } else {
            return DS_FAIL(err, DS_ERR_NOT_FOUND, "%s: VAE tensor '%s'%s%s%s is missing", ds_weights_label(L->w), name,
                           legacy ? " (or legacy '" : "", legacy ? legacy : "", legacy ? "')" : "");
        }
    }
    return ds_weights_read_placed(L->w, use, out, ndim, shape, L->v->staging, L->v->staging_bytes, err);
}

/* "<prefix>.weight" [cout, cin, k, k] (k == 0: a linear [cout, cin]) and "<prefix>.bias" [cout]. */
static ds_status load_conv(vae_loader *L, const char *prefix, const char *legacy, int64_t cout, int64_t cin, int64_t k,
                           vae_conv *c, ds_err *err) {
    char name[256], lname[256];
    const int64_t wshape[4] = {cout, cin, k, k};
    snprintf(name, sizeof name, "%s.weight", prefix);
    if (legacy) snprintf(lname, sizeof lname, "%s.weight", legacy);
    DS_TRY(load_tensor(L, name, legacy ? lname : NULL, k ? 4 : 2, wshape, &c->w, err));
    snprintf(name, sizeof name, "%s.bias", prefix);
    if (legacy) snprintf(lname, sizeof lname, "%s.bias", legacy);
    return load_tensor(L, name, legacy ? lname : NULL, 1, &cout, &c->b, err);
}

static ds_status load_norm(vae_loader *L, const char *prefix, int64_t ch, vae_norm *nm, ds_err *err) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    DS_TRY(load_tensor(L, name, NULL, 1, &ch, &nm->w, err));
    snprintf(name, sizeof name, "%s.bias", prefix);
    return load_tensor(L, name, NULL, 1, &ch, &nm->b, err);
}

static ds_status load_resnet(vae_loader *L, const char *prefix, int64_t cin, int64_t cout, vae_resnet *r,
                             ds_err *err) {
    char p[224];
    r->cin = cin;
    r->cout = cout;
    r->has_shortcut = cin != cout;
    snprintf(p, sizeof p, "%.200s.norm1", prefix);
    DS_TRY(load_norm(L, p, cin, &r->norm1, err));
    snprintf(p, sizeof p, "%.200s.conv1", prefix);
    DS_TRY(load_conv(L, p, NULL, cout, cin, 3, &r->conv1, err));
    snprintf(p, sizeof p, "%.200s.norm2", prefix);
    DS_TRY(load_norm(L, p, cout, &r->norm2, err));
    snprintf(p, sizeof p, "%.200s.conv2", prefix);
    DS_TRY(load_conv(L, p, NULL, cout, cout, 3, &r->conv2, err));
    if (r->has_shortcut) {
        snprintf(p, sizeof p, "%.200s.conv_shortcut", prefix);
        DS_TRY(load_conv(L, p, NULL, cout, cin, 1, &r->shortcut, err));
    }
    return DS_OK;
}

static ds_status load_all(ds_vae *v, vae_loader *L, ds_err *err) {
    const ds_vae_config *c = &v->cfg;
    const int n = c->n_blocks;
    const int64_t cl = c->latent_channels, ctop = c->block_out_channels[n - 1];
    char p[224];
    if (c->post_quant_conv) DS_TRY(load_conv(L, "post_quant_conv", NULL, cl, cl, 1, &v->post_quant, err));
    DS_TRY(load_conv(L, "decoder.conv_in", NULL, ctop, cl, 3, &v->conv_in, err));
    for (int j = 0; j < 2; j++) {
        snprintf(p, sizeof p, "decoder.mid_block.resnets.%d", j);
        DS_TRY(load_resnet(L, p, ctop, ctop, &v->mid_res[j], err));
    }
    if (c->mid_attention) {
        static const char *const a = "decoder.mid_block.attentions.0";
        vae_attn *at = &v->mid_attn;
        DS_TRY(load_norm(L, "decoder.mid_block.attentions.0.group_norm", ctop, &at->norm, err));
        static const char *const nm[4][2] = {{"to_q", "query"}, {"to_k", "key"}, {"to_v", "value"},
                                              {"to_out.0", "proj_attn"}};
        vae_conv *dst[4] = {&at->q, &at->k, &at->v, &at->o};
        for (int i = 0; i < 4; i++) {
            char cur[224], old[224];
            snprintf(cur, sizeof cur, "%s.%s", a, nm[i][0]);
            snprintf(old, sizeof old, "%s.%s", a, nm[i][1]);
            DS_TRY(load_conv(L, cur, old, ctop, ctop, 0, dst[i], err));
        }
    }
    vae_resnet *r = v->resnets;
    int64_t prev = ctop;
    for (int i = 0; i < n; i++) {
        vae_up *u = &v->up[i];
        u->cin = prev;
        u->cout = c->block_out_channels[n - 1 - i];
        u->res = r;
        for (int j = 0; j <= c->layers_per_block; j++, r++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%d", i, j);
            DS_TRY(load_resnet(L, p, j == 0 ? u->cin : u->cout, u->cout, r, err));
        }
        u->has_up = i < n - 1;
        if (u->has_up) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            DS_TRY(load_conv(L, p, NULL, u->cout, u->cout, 3, &u->up, err));
        }
        prev = u->cout;
    }
    DS_TRY(load_norm(L, "decoder.conv_norm_out", c->block_out_channels[0], &v->norm_out, err));
    DS_TRY(load_conv(L, "decoder.conv_out", NULL, c->out_channels, c->block_out_channels[0], 3, &v->conv_out, err));
    if (v->pl.device.kind == DS_DEVICE_CPU || c->shift_factor == 0.0) return DS_OK;
    /* the ones of the unscale's axpby (off the CPU, for a shift): filled in the staging buffer, uploaded */
    const int64_t n_ones = (int64_t)v->max_batch * cl * v->max_h * v->max_w;
    DS_TRY(ds_arena_tensor(L->arena, v->pl.dtype, 1, &n_ones, &v->ones, err));
    const size_t es = ds_dtype_size(v->pl.dtype), bytes = (size_t)n_ones * es;
    if (L->plan) {
        note_upload(L, bytes);
        return DS_OK;
    }
    if (!v->staging || v->staging_bytes < bytes)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "vae: %zu bytes of staging needed for the ones, %zu given", bytes,
                       v->staging ? v->staging_bytes : 0);
    const float one = 1.0f;
    char *st = v->staging;
    ds_convert(st, v->pl.dtype, &one, DS_F32, 1);
    for (int64_t i = 1; i < n_ones; i++) memcpy(st + (size_t)i * es, st, es);
    return ds_tensor_write_raw(&v->ones, st, bytes, err);
}

/* ---- decode ---------------------------------------------------------------------------------- */

/* Largest activation (floats) and largest 3x3 im2col scratch (bytes) of a decode of [B, Cl, h, w]. */
static void vae_need(const ds_vae *v, int64_t B, int64_t h, int64_t w, int64_t *act, size_t *scratch) {
    const ds_vae_config *c = &v->cfg;
    const int64_t ctop = c->block_out_channels[c->n_blocks - 1];
    int64_t a = B * c->latent_channels * h * w;
    size_t s = ds_op_conv2d_scratch_bytes(c->latent_channels, h, w, 3, 1);
#define VAE_MAX(x, y) ((x) > (y) ? (x) : (y))
    a = VAE_MAX(a, B * ctop * h * w);
    s = VAE_MAX(s, ds_op_conv2d_scratch_bytes(ctop, h, w, 3, 1));
    int64_t H = h, W = w;
    for (int i = 0; i < c->n_blocks; i++) {
        const vae_up *u = &v->up[i];
        a = VAE_MAX(a, B * VAE_MAX(u->cin, u->cout) * H * W);
        s = VAE_MAX(s, ds_op_conv2d_scratch_bytes(VAE_MAX(u->cin, u->cout), H, W, 3, 1));
        if (u->has_up) {
            H *= 2;
            W *= 2;
            a = VAE_MAX(a, B * u->cout * H * W);
            s = VAE_MAX(s, ds_op_conv2d_scratch_bytes(u->cout, H, W, 3, 1));
        }
    }
#undef VAE_MAX
    *act = a;
    *scratch = s;
}

typedef struct vae_run {
    ds_vae *v;
    bool    plan; /* dry run on a plan arena: take memory, run no op */
    int64_t B;
    void   *P, *T1, *T2; /* each of vae_need's act elements, in the model's dtype on its device */
    void   *S;
    size_t  S_bytes;
} vae_run;

#define VAE_OP(run, expr)              \
    do {                               \
        if (!(run)->plan) DS_TRY(expr); \
    } while (0)

/* A contiguous tensor over activation memory p, in the model's dtype on its device. */
static ds_tensor tn(const vae_run *run, void *p, int ndim, const int64_t *shape) {
    ds_tensor t = ds_tensor_make(p, run->v->pl.dtype, ndim, shape);
    t.device = run->v->pl.device;
    return t;
}
static ds_tensor t3(const vae_run *run, void *p, int64_t a, int64_t b, int64_t c) {
    return tn(run, p, 3, (const int64_t[]){a, b, c});
}
static ds_tensor t4(const vae_run *run, void *p, int64_t b, int64_t c, int64_t h, int64_t w) {
    return tn(run, p, 4, (const int64_t[]){b, c, h, w});
}

/* P [B, cin, H, W] -> P [B, cout, H, W]: ResnetBlock2D without time embedding. */
static ds_status resnet_fwd(vae_run *run, const vae_resnet *r, int64_t H, int64_t W, ds_err *err) {
    const int64_t B = run->B, G = run->v->cfg.norm_num_groups;
    ds_tensor x = t4(run, run->P, B, r->cin, H, W);      // [B, cin, H, W]
    ds_tensor h1 = t4(run, run->T1, B, r->cin, H, W);    // [B, cin, H, W]
    ds_tensor h2 = t4(run, run->T2, B, r->cout, H, W);   // [B, cout, H, W]
    ds_tensor h3 = t4(run, run->T1, B, r->cout, H, W);   // [B, cout, H, W]
    VAE_OP(run, ds_op_groupnorm(&h1, &x, G, &r->norm1.w, &r->norm1.b, VAE_EPS, err));
    VAE_OP(run, ds_op_silu(&h1, &h1, err));
    VAE_OP(run, ds_op_conv2d(&h2, &h1, &r->conv1.w, &r->conv1.b, 1, run->S, run->S_bytes, err));
    VAE_OP(run, ds_op_groupnorm(&h2, &h2, G, &r->norm2.w, &r->norm2.b, VAE_EPS, err));
    VAE_OP(run, ds_op_silu(&h2, &h2, err));
    VAE_OP(run, ds_op_conv2d(&h3, &h2, &r->conv2.w, &r->conv2.b, 1, run->S, run->S_bytes, err));
    if (r->has_shortcut) {
        ds_tensor sc = t4(run, run->T2, B, r->cout, H, W); // [B, cout, H, W]; h2 is dead
        ds_tensor y = t4(run, run->P, B, r->cout, H, W);   // [B, cout, H, W]; x is dead once sc is made
        VAE_OP(run, ds_op_conv2d(&sc, &x, &r->shortcut.w, &r->shortcut.b, 0, NULL, 0, err));
        VAE_OP(run, ds_op_add(&y, &sc, &h3, err));
    } else {
        VAE_OP(run, ds_op_add(&x, &x, &h3, err));
    }
    return DS_OK;
}

/* P [B, C, H, W] += to_out(attention(GroupNorm(P) as H*W tokens)): the mid-block attention, one head. */
static ds_status attn_fwd(vae_run *run, ds_arena *arena, const vae_attn *at, int64_t C, int64_t H, int64_t W,
                          ds_err *err) {
    const int64_t B = run->B, N = H * W, G = run->v->cfg.norm_num_groups;
    ds_tensor x = t3(run, run->P, B, C, N);     // [B, C, N]
    ds_tensor n = t3(run, run->T1, B, C, N);    // [B, C, N]
    ds_tensor n4 = t4(run, run->T1, B, C, H, W); // the same, as an image for the transpose
    ds_tensor tok = t3(run, run->T2, B, N, C);  // [B, N, C]
    VAE_OP(run, ds_op_groupnorm(&n, &x, G, &at->norm.w, &at->norm.b, VAE_EPS, err));
    /* [B, C, N] -> [B, N, C]: patchify with p = 1 is exactly this transpose */
    VAE_OP(run, ds_op_patchify(&tok, &n4, 1, err));

    const size_t mark = ds_arena_mark(arena);
    const int64_t shp[4] = {B, N, 1, C};
    const ds_dtype dt = run->v->pl.dtype;
    ds_tensor q4, k4, v4;
    ds_status s = ds_arena_tensor(arena, dt, 4, shp, &q4, err);        // [B, N, 1, C]
    if (s == DS_OK) s = ds_arena_tensor(arena, dt, 4, shp, &k4, err);  // [B, N, 1, C]
    if (s == DS_OK) s = ds_arena_tensor(arena, dt, 4, shp, &v4, err);  // [B, N, 1, C]
    /* the CUDA attention is tiled and needs no scratch */
    const size_t scr_bytes = run->v->pl.device.kind == DS_DEVICE_CPU ? ds_op_attention_scratch_bytes(N, N, C) : 0;
    void *scr = NULL;
    if (s == DS_OK) s = ds_arena_alloc(arena, scr_bytes, 0, &scr, err);
    if (s == DS_OK && !run->plan) {
        ds_tensor q = t3(run, q4.data, B, N, C), k = t3(run, k4.data, B, N, C);
        ds_tensor v = t3(run, v4.data, B, N, C);
        ds_tensor o4 = tn(run, run->T1, 4, shp);     // [B, N, 1, C]; the normed x is dead
        ds_tensor o = t3(run, run->T1, B, N, C);
        ds_tensor proj = t3(run, q4.data, B, N, C);  // [B, N, C]; q is dead after attention
        ds_tensor back = t4(run, run->T2, B, C, H, W); // [B, C, H, W]; tokens are dead
        ds_tensor back3 = t3(run, run->T2, B, C, N);
        s = ds_op_linear(&q, &tok, &at->q.w, &at->q.b, err);
        if (s == DS_OK) s = ds_op_linear(&k, &tok, &at->k.w, &at->k.b, err);
        if (s == DS_OK) s = ds_op_linear(&v, &tok, &at->v.w, &at->v.b, err);
        if (s == DS_OK) s = ds_op_attention(&o4, &q4, &k4, &v4, NULL, 0.0f, scr, scr_bytes, err);
        if (s == DS_OK) s = ds_op_linear(&proj, &o, &at->o.w, &at->o.b, err);
        /* [B, N, C] -> [B, C, N]: unpatchify with p = 1 is exactly the inverse transpose */
        if (s == DS_OK) s = ds_op_unpatchify(&back, &proj, 1, err);
        if (s == DS_OK) s = ds_op_add(&x, &x, &back3, err);
    }
    ds_arena_rewind(arena, mark);
    return s;
}

/* P [B, C, H, W] -> P [B, C, 2H, 2W]: nearest 2x, then the 3x3 conv. */
static ds_status upsample_fwd(vae_run *run, const vae_conv *cv, int64_t C, int64_t H, int64_t W, ds_err *err) {
    ds_tensor x = t4(run, run->P, run->B, C, H, W);          // [B, C, H, W]
    ds_tensor u = t4(run, run->T1, run->B, C, 2 * H, 2 * W); // [B, C, 2H, 2W]
    ds_tensor y = t4(run, run->P, run->B, C, 2 * H, 2 * W);  // [B, C, 2H, 2W]
    VAE_OP(run, ds_op_upsample_nearest2x(&u, &x, err));
    VAE_OP(run, ds_op_conv2d(&y, &u, &cv->w, &cv->b, 1, run->S, run->S_bytes, err));
    return DS_OK;
}

/* Copy src (the tap's shape) into the tap if there is one: a device-to-device copy (a memmove on the
 * CPU). Shapes, device and dtype were checked up front. */
static ds_status tap_copy(const vae_run *run, ds_tensor *tap, void *src, ds_err *err) {
    if (run->plan || !tap) return DS_OK;
    ds_tensor from = tn(run, src, tap->ndim, tap->shape);
    return ds_op_convert(tap, &from, err);
}

/* z = latents / scaling_factor + shift_factor into z. On the CPU in f32 exactly as torch does it (a true
 * division, scalars cast to f32: the diffusers reference); off the CPU one ds_op_axpby with fp32 arithmetic,
 * z = (1 / scaling_factor)·latents + shift_factor·ones (within an ulp of the division before the store's
 * rounding). */
static ds_status unscale(const vae_run *run, ds_tensor *z, const ds_tensor *latents, ds_err *err) {
    const ds_vae *v = run->v;
    const float sf = (float)v->cfg.scaling_factor, sh = (float)v->cfg.shift_factor;
    if (v->pl.device.kind == DS_DEVICE_CPU) {
        const float *lat = latents->data;
        float *zp = z->data;
        const int64_t nz = ds_tensor_numel(z);
        for (int64_t i = 0; i < nz; i++) zp[i] = lat[i] / sf + sh;
        return DS_OK;
    }
    if (!v->ones.data) return ds_op_axpby(z, 1.0f / sf, latents, 0.0f, NULL, err);
    ds_tensor ones = ds_tensor_like(&v->ones, v->ones.data, z->ndim, z->shape);
    return ds_op_axpby(z, 1.0f / sf, latents, sh, &ones, err);
}

/* The whole decode on [B, Cl, h, w]. In plan mode latents/image/taps are ignored (may be NULL). */
static ds_status decode_run(ds_vae *v, ds_arena *arena, bool plan, int64_t B, int64_t h, int64_t w,
                            const ds_tensor *latents, ds_tensor *image, const ds_vae_taps *taps, ds_err *err) {
    const ds_vae_config *c = &v->cfg;
    const int n = c->n_blocks;
    const int64_t cl = c->latent_channels, ctop = c->block_out_channels[n - 1], c0 = c->block_out_channels[0];
    const ds_vae_taps none = {0};
    if (!taps) taps = &none;

    int64_t act = 0;
    size_t scratch = 0;
    vae_need(v, B, h, w, &act, &scratch);
    vae_run run = {.v = v, .plan = plan, .B = B, .S_bytes = scratch};
    const size_t act_bytes = (size_t)act * ds_dtype_size(v->pl.dtype);
    DS_TRY(ds_arena_alloc(arena, act_bytes, 0, &run.P, err));
    DS_TRY(ds_arena_alloc(arena, act_bytes, 0, &run.T1, err));
    DS_TRY(ds_arena_alloc(arena, act_bytes, 0, &run.T2, err));
    DS_TRY(ds_arena_alloc(arena, scratch, 0, &run.S, err));

    /* z = latents / scaling_factor + shift_factor */
    if (!plan) {
        ds_tensor z = t4(&run, run.P, B, cl, h, w);
        DS_TRY(unscale(&run, &z, latents, err));
    }
    DS_TRY(tap_copy(&run, taps->z, run.P, err));
    if (c->post_quant_conv) {
        ds_tensor x = t4(&run, run.P, B, cl, h, w), y = t4(&run, run.T1, B, cl, h, w); // [B, Cl, h, w]
        VAE_OP(&run, ds_op_conv2d(&y, &x, &v->post_quant.w, &v->post_quant.b, 0, NULL, 0, err));
        void *t = run.P; run.P = run.T1; run.T1 = t;
        DS_TRY(tap_copy(&run, taps->post_quant, run.P, err));
    }
    {
        ds_tensor x = t4(&run, run.P, B, cl, h, w), y = t4(&run, run.T1, B, ctop, h, w); // -> [B, C_top, h, w]
        VAE_OP(&run, ds_op_conv2d(&y, &x, &v->conv_in.w, &v->conv_in.b, 1, run.S, run.S_bytes, err));
        void *t = run.P; run.P = run.T1; run.T1 = t;
        DS_TRY(tap_copy(&run, taps->conv_in, run.P, err));
    }
    DS_TRY(resnet_fwd(&run, &v->mid_res[0], h, w, err));
    if (c->mid_attention) DS_TRY(attn_fwd(&run, arena, &v->mid_attn, ctop, h, w, err));
    DS_TRY(resnet_fwd(&run, &v->mid_res[1], h, w, err));
    DS_TRY(tap_copy(&run, taps->mid, run.P, err));

    int64_t H = h, W = w;
    for (int i = 0; i < n; i++) {
        const vae_up *u = &v->up[i];
        for (int j = 0; j <= c->layers_per_block; j++) DS_TRY(resnet_fwd(&run, &u->res[j], H, W, err));
        if (u->has_up) {
            DS_TRY(upsample_fwd(&run, &u->up, u->cout, H, W, err));
            H *= 2;
            W *= 2;
        }
        DS_TRY(tap_copy(&run, taps->up[i], run.P, err));
    }
    {
        ds_tensor x = t4(&run, run.P, B, c0, H, W), nrm = t4(&run, run.T1, B, c0, H, W); // [B, C0, s*h, s*w]
        VAE_OP(&run, ds_op_groupnorm(&nrm, &x, c->norm_num_groups, &v->norm_out.w, &v->norm_out.b, VAE_EPS, err));
        VAE_OP(&run, ds_op_silu(&nrm, &nrm, err));
        VAE_OP(&run, ds_op_conv2d(image, &nrm, &v->conv_out.w, &v->conv_out.b, 1, run.S, run.S_bytes, err));
    }
    return DS_OK;
}

/* ---- load / free / accessors ----------------------------------------------------------------- */

static ds_status vae_load_impl(const ds_config *cfg, const ds_weights *w, int max_batch, int max_h, int max_w,
                               const ds_placement *pl, ds_vae **out, ds_err *err) {
    if (max_batch < 1 || max_h < 1 || max_w < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_load: max_batch %d, max latent %dx%d: each must be >= 1",
                       max_batch, max_h, max_w);
    ds_vae_config c;
    DS_TRY(ds_vae_config_parse(cfg, &c, err));
    /* the largest activation must stay addressable: B * C * (s*h) * (s*w) floats */
    const double biggest = (double)max_batch * 65536.0 * (double)(c.scale * max_h) * (double)(c.scale * max_w);
    if (biggest * 4.0 > 9.0e18)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_load: max batch %d x latent %dx%d is too large", max_batch, max_h,
                       max_w);

    ds_vae *v = calloc(1, sizeof *v);
    if (!v) return DS_FAIL(err, DS_ERR_OOM, "ds_vae_load: out of memory");
    v->cfg = c;
    v->pl = ds_placement_or_cpu(pl);
    v->max_batch = max_batch;
    v->max_h = max_h;
    v->max_w = max_w;
    v->resnets = calloc((size_t)(c.n_blocks * (c.layers_per_block + 1)), sizeof *v->resnets);
    if (!v->resnets) {
        free(v);
        return DS_FAIL(err, DS_ERR_OOM, "ds_vae_load: out of memory");
    }

    ds_status s;
    ds_arena plan;
    ds_arena_init_plan(&plan, DS_ARENA_WEIGHTS, "vae weights plan");
    vae_loader L = {.v = v, .w = w, .arena = &plan, .plan = true};
    s = load_all(v, &L, err);
    if (s == DS_OK)
        s = ds_arena_init_device(&v->weights, plan.high_water, v->pl.device, DS_ARENA_WEIGHTS, "vae weights", err);
    if (s == DS_OK) {
        if (v->pl.device.kind == DS_DEVICE_CPU) {
            v->staging_bytes = 0; /* weights are read in place */
        } else if (!(v->staging = malloc(v->staging_bytes ? v->staging_bytes : 1))) {
            s = DS_FAIL(err, DS_ERR_OOM, "ds_vae_load: cannot allocate %zu bytes of staging", v->staging_bytes);
        }
    }
    if (s == DS_OK) {
        L.arena = &v->weights;
        L.plan = false;
        s = load_all(v, &L, err);
    }
    /* nothing is uploaded after the load */
    free(v->staging);
    v->staging = NULL;
    v->staging_bytes = 0;
    if (s == DS_OK) {
        ds_arena_init_plan(&plan, DS_ARENA_ACTIVATIONS, "vae activations plan");
        s = decode_run(v, &plan, true, max_batch, max_h, max_w, NULL, NULL, NULL, err);
    }
    if (s == DS_OK)
        s = ds_arena_init_device(&v->acts, plan.high_water, v->pl.device, DS_ARENA_ACTIVATIONS, "vae activations",
                                 err);
    if (s != DS_OK) {
        ds_vae_free(v);
        return s;
    }
    *out = v;
    return DS_OK;
}

ds_status ds_vae_load(const ds_component *comp, int max_batch, int max_latent_h, int max_latent_w, ds_vae **out,
                      ds_err *err) {
    return ds_vae_load_on(comp, max_batch, max_latent_h, max_latent_w, NULL, out, err);
}

ds_status ds_vae_load_on(const ds_component *comp, int max_batch, int max_latent_h, int max_latent_w,
                         const ds_placement *pl, ds_vae **out, ds_err *err) {
    if (!comp || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_load: NULL argument");
    *out = NULL;
    DS_TRY(ds_placement_check(pl, "vae", err));
    if (!comp->config || !comp->weights)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_load: component '%s' has no %s", comp->name ? comp->name : "?",
                       comp->config ? "weights" : "config.json");
    return vae_load_impl(comp->config, comp->weights, max_batch, max_latent_h, max_latent_w, pl, out, err);
}

ds_status ds_vae_load_dir(const char *dir, int max_batch, int max_latent_h, int max_latent_w, ds_vae **out,
                          ds_err *err) {
    if (!dir || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_load_dir: NULL argument");
    *out = NULL;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_load_dir: path too long");
    ds_config *cfg = NULL;
    ds_weights *w = NULL;
    DS_TRY(ds_config_open(path, &cfg, err));
    ds_status s = ds_weights_open(dir, &w, err);
    if (s == DS_OK) s = vae_load_impl(cfg, w, max_batch, max_latent_h, max_latent_w, NULL, out, err);
    ds_weights_close(w);
    ds_config_close(cfg);
    return s;
}

void ds_vae_free(ds_vae *vae) {
    if (!vae) return;
    ds_arena_free(&vae->weights);
    ds_arena_free(&vae->acts);
    free(vae->staging);
    free(vae->resnets);
    free(vae);
}

const ds_vae_config *ds_vae_get_config(const ds_vae *vae) { return &vae->cfg; }
ds_placement ds_vae_placement(const ds_vae *vae) { return vae ? vae->pl : ds_placement_cpu(); }
int64_t ds_vae_scale_factor(const ds_vae *vae) { return vae->cfg.scale; }
int64_t ds_vae_latent_channels(const ds_vae *vae) { return vae->cfg.latent_channels; }
int ds_vae_max_batch(const ds_vae *vae) { return vae->max_batch; }
int ds_vae_max_latent_h(const ds_vae *vae) { return vae->max_h; }
int ds_vae_max_latent_w(const ds_vae *vae) { return vae->max_w; }
size_t ds_vae_weight_bytes(const ds_vae *vae) { return vae->weights.cap; }
size_t ds_vae_activation_bytes(const ds_vae *vae) { return vae->acts.cap; }

/* ---- decode entry points --------------------------------------------------------------------- */

/* t: a contiguous [b, c, h, w] tensor on the model's device in its dtype. */
static ds_status check_shape(const ds_vae *vae, const ds_tensor *t, const char *what, int64_t b, int64_t c, int64_t h,
                             int64_t w, ds_err *err) {
    DS_TRY(ds_tensor_check_placed(t, 4, vae->pl.device, vae->pl.dtype, what, err));
    if (t->shape[0] != b || t->shape[1] != c || t->shape[2] != h || t->shape[3] != w) {
        char got[64];
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_decode: %s has shape %s, expected [%lld, %lld, %lld, %lld]",
                       what, ds_tensor_shape_str(t, got, sizeof got), (long long)b, (long long)c, (long long)h,
                       (long long)w);
    }
    return DS_OK;
}

ds_status ds_vae_decode_taps(ds_vae *vae, const ds_tensor *latents, ds_tensor *image, const ds_vae_taps *taps,
                             ds_err *err) {
    if (!vae || !latents || !image) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_decode: NULL argument");
    const ds_vae_config *c = &vae->cfg;
    DS_TRY(ds_tensor_check_placed(latents, 4, vae->pl.device, vae->pl.dtype, "latents", err));
    const int64_t B = latents->shape[0], cl = latents->shape[1], h = latents->shape[2], w = latents->shape[3];
    if (cl != c->latent_channels)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_decode: latents have %lld channels, this VAE takes %lld",
                       (long long)cl, (long long)c->latent_channels);
    if (B < 1 || B > vae->max_batch)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_decode: batch %lld outside 1..%d (max_batch given at load)",
                       (long long)B, vae->max_batch);
    if (h < 1 || w < 1 || h > vae->max_h || w > vae->max_w)
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "ds_vae_decode: latent %lldx%lld outside 1x1..%dx%d (the maximum planned at load)",
                       (long long)h, (long long)w, vae->max_h, vae->max_w);
    const int64_t s = c->scale;
    DS_TRY(check_shape(vae, image, "image", B, c->out_channels, s * h, s * w, err));
    {
        const char *ib = image->data, *lb = latents->data;
        if (ib < lb + ds_tensor_nbytes(latents) && lb < ib + ds_tensor_nbytes(image))
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_decode: image overlaps latents");
    }
    if (taps) {
        const int n = c->n_blocks;
        const int64_t ctop = c->block_out_channels[n - 1];
        if (taps->z) DS_TRY(check_shape(vae, taps->z, "tap z", B, cl, h, w, err));
        if (taps->post_quant) {
            if (!c->post_quant_conv)
                return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_decode: tap post_quant given, the model has none");
            DS_TRY(check_shape(vae, taps->post_quant, "tap post_quant", B, cl, h, w, err));
        }
        if (taps->conv_in) DS_TRY(check_shape(vae, taps->conv_in, "tap conv_in", B, ctop, h, w, err));
        if (taps->mid) DS_TRY(check_shape(vae, taps->mid, "tap mid", B, ctop, h, w, err));
        int64_t H = h, W = w;
        for (int i = 0; i < DS_VAE_MAX_BLOCKS; i++) {
            if (i >= n) {
                if (taps->up[i]) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_decode: tap up[%d] beyond %d blocks", i, n);
                continue;
            }
            if (vae->up[i].has_up) {
                H *= 2;
                W *= 2;
            }
            if (taps->up[i]) {
                char what[32];
                snprintf(what, sizeof what, "tap up[%d]", i);
                DS_TRY(check_shape(vae, taps->up[i], what, B, vae->up[i].cout, H, W, err));
            }
        }
    }
    const size_t mark = ds_arena_mark(&vae->acts);
    ds_status st = decode_run(vae, &vae->acts, false, B, h, w, latents, image, taps, err);
    ds_arena_rewind(&vae->acts, mark);
    return st;
}

ds_status ds_vae_decode(ds_vae *vae, const ds_tensor *latents, ds_tensor *image, ds_err *err) {
    return ds_vae_decode_taps(vae, latents, image, NULL, err);
}

ds_status ds_vae_to_rgb8(const ds_tensor *image, uint8_t *rgb, size_t rgb_bytes, ds_err *err) {
    if (!image) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_to_rgb8: NULL image");
    DS_TRY(ds_tensor_check_f32(image, 4, "image", err));
    const int64_t B = image->shape[0], C = image->shape[1], H = image->shape[2], W = image->shape[3];
    if (C != 3) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_to_rgb8: image has %lld channels, expected 3", (long long)C);
    const size_t need = (size_t)(B * H * W * 3);
    if (!rgb || rgb_bytes < need)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_vae_to_rgb8: rgb buffer of %zu bytes%s, need %zu", rgb_bytes,
                       rgb ? "" : " (NULL)", need);
    const float *x = image->data;
    const int64_t plane = H * W;
    for (int64_t b = 0; b < B; b++)
        for (int64_t ch = 0; ch < 3; ch++) {
            const float *src = x + (b * 3 + ch) * plane;
            uint8_t *dst = rgb + b * plane * 3 + ch;
            for (int64_t i = 0; i < plane; i++) {
                float u = src[i] * 0.5f + 0.5f; /* denormalize: exact halving, one rounding */
                u = u > 0.0f ? (u < 1.0f ? u : 1.0f) : 0.0f; /* clamp; NaN -> 0 */
                dst[i * 3] = (uint8_t)nearbyintf(u * 255.0f); /* numpy round: half to even */
            }
        }
    return DS_OK;
}
