/* flux.c - FLUX.1 transformer (diffusers FluxTransformer2DModel) on any placement (CPU f32, CUDA bf16/f16/f32):
 * config parsing, weight loading into a weights arena on the model's device (converted to its dtype),
 * activation-arena planning, the forward and its pieces, and the FluxPipeline pack / unpack / image-id helpers
 * (host f32). See flux.h for the math and the contracts.
 *
 * Layout decisions:
 *  - The joint attention of a double-stream block works on [B, T+N, H, d] buffers whose rows are text first,
 *    then image (diffusers' torch.cat([encoder, hidden], dim=1)). Each stream's projections are written
 *    straight into its rows with one GEMM per batch element (a [T, D] or [N, D] block of a batch element is
 *    contiguous), so no concatenation copy is needed.
 *  - The single-stream proj_out weight [D, D + 4D] is split at load into its attention columns [D, D] and its
 *    MLP columns [D, 4D]: proj_out(cat(attn, mlp)) = attn·Waᵀ + b + mlp·Wmᵀ without materialising the
 *    [B, L, 5D] concatenation (the sum differs from one GEMM only by summation order).
 *  - Every piece takes its scratch from m->act (on the model's device) and rewinds it before returning; the
 *    arena is sized at load by running the same allocation helpers on a plan arena for the largest shapes.
 *    Buffers dead after the attention (q, k) are reused for the output projections.
 *  - Host-side work is limited to host arrays: timestep / guidance x 1000 and the RoPE tables (ds_op_rope_freqs,
 *    fp64, CPU only) are computed in m->host and uploaded as f32 (the timestep vector and cos / sin are f32 on
 *    every device). The tables depend only on the position ids, which every step of a generation repeats, so
 *    they are recomputed only when the ids change and otherwise just copied into the caller's tensors.
 *    Everything else is ds_op_* calls, which run where the tensors live. */
#include "flux.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "graph.h"
#include "tensor_io.h"

/* ---- model struct ------------------------------------------------------------------------------ */

typedef struct fx_linear {
    ds_tensor w; /* [out, in] */
    ds_tensor b; /* [out] */
} fx_linear;

typedef struct fx_double {
    fx_linear norm1, norm1_ctx;             /* [6D, D] */
    fx_linear to_q, to_k, to_v;             /* image stream [D, D] */
    fx_linear add_q, add_k, add_v;          /* text stream  [D, D] */
    fx_linear to_out, to_add_out;           /* [D, D] */
    fx_linear ff0, ff2, ffc0, ffc2;         /* [4D, D], [D, 4D] */
    ds_tensor norm_q, norm_k;               /* [d] */
    ds_tensor norm_added_q, norm_added_k;   /* [d] */
} fx_double;

typedef struct fx_single {
    fx_linear norm;                 /* [3D, D] */
    fx_linear to_q, to_k, to_v;     /* [D, D] */
    ds_tensor norm_q, norm_k;       /* [d] */
    fx_linear proj_mlp;             /* [4D, D] */
    fx_linear proj_out_attn;        /* columns 0..D of proj_out: [D, D], with proj_out's bias [D] */
    ds_tensor proj_out_mlp;         /* columns D..5D of proj_out: [D, 4D] */
} fx_single;

struct ds_flux {
    ds_flux_config cfg;
    int            max_batch, max_img, max_txt;
    ds_placement   pl;  /* device and dtype of weights and activations */
    ds_arena       wts; /* weights, pl.dtype on pl.device */
    ds_arena       act; /* activations and (CPU) attention scratch, on pl.device */
    size_t         attn_planned; /* attention scratch bytes planned for the largest sequence (0 off the CPU) */
    void          *staging;       /* host staging for weight uploads: load time only (CUDA; NULL on the CPU) */
    size_t         staging_bytes; /* its size; during planning, the largest upload seen */
    float         *host;          /* host f32 scratch (see fx_host_*): scaled timesteps, ids, RoPE tables */
    int64_t        rope_L;        /* tokens of the RoPE tables held in m->host (-1: none yet) */
    const void    *rope_dst_cos;  /* the caller's tables last filled from m->host (NULL: none kept), */
    const void    *rope_dst_sin;  /* skipped on the next embed while the ids stay the same (see ds_flux_embed) */
    ds_graph_cache *graphs;       /* the forward's blocks as CUDA graphs (graph.h; eager on the CPU) */
    fx_linear      x_emb, ctx_emb;
    fx_linear      t_lin1, t_lin2, g_lin1, g_lin2, p_lin1, p_lin2;
    fx_linear      norm_out, proj_out;
    fx_double     *dbl;
    fx_single     *sgl;
};

/* m->host layout (floats): [max_batch] timestep or guidance x 1000, then [(max_txt + max_img) * n_axes] ids of
 * this call, then cos and sin [(max_txt + max_img) * head_dim] each, then [(max_txt + max_img) * n_axes] the ids
 * those tables were computed for. The ids are the same at every step of a generation, so the tables are
 * computed once per request (per change of ids) and only copied into the caller's tensors afterwards. */
static int64_t fx_host_floats(const ds_flux *m) {
    const int64_t Lmax = (int64_t)m->max_txt + m->max_img;
    return m->max_batch + 2 * Lmax * m->cfg.n_axes + 2 * Lmax * m->cfg.head_dim;
}
static float *fx_host_tt(const ds_flux *m) { return m->host; }
static float *fx_host_ids(const ds_flux *m) { return m->host + m->max_batch; }
static float *fx_host_rope(const ds_flux *m) { /* cos, then sin at + Lmax * head_dim */
    return m->host + m->max_batch + ((int64_t)m->max_txt + m->max_img) * m->cfg.n_axes;
}
static float *fx_host_rope_ids(const ds_flux *m) { /* the ids of the tables in fx_host_rope */
    const int64_t Lmax = (int64_t)m->max_txt + m->max_img;
    return fx_host_rope(m) + 2 * Lmax * m->cfg.head_dim;
}

/* ---- config -------------------------------------------------------------------------------------- */

ds_status ds_flux_config_parse(const ds_config *cfg, ds_flux_config *out, ds_err *err) {
    if (!cfg || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_flux_config_parse: NULL argument");
    const char *label = ds_config_label(cfg);
    const char *cls = NULL;
    DS_TRY(ds_config_get_string(cfg, "_class_name", NULL, &cls, err));
    if (!cls || strcmp(cls, "FluxTransformer2DModel") != 0)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: _class_name '%s' is not supported by the FLUX loader "
                       "(expected FluxTransformer2DModel)", label, cls ? cls : "(missing)");
    ds_flux_config c;
    memset(&c, 0, sizeof c);
    DS_TRY(ds_config_get_int(cfg, "patch_size", 1, &c.patch_size, err));
    DS_TRY(ds_config_get_int(cfg, "in_channels", 64, &c.in_channels, err));
    DS_TRY(ds_config_get_int(cfg, "out_channels", c.in_channels, &c.out_channels, err));
    DS_TRY(ds_config_get_int(cfg, "num_layers", 19, &c.num_layers, err));
    DS_TRY(ds_config_get_int(cfg, "num_single_layers", 38, &c.num_single_layers, err));
    DS_TRY(ds_config_get_int(cfg, "attention_head_dim", 128, &c.head_dim, err));
    DS_TRY(ds_config_get_int(cfg, "num_attention_heads", 24, &c.num_heads, err));
    DS_TRY(ds_config_get_int(cfg, "joint_attention_dim", 4096, &c.joint_dim, err));
    DS_TRY(ds_config_get_int(cfg, "pooled_projection_dim", 768, &c.pooled_dim, err));
    DS_TRY(ds_config_get_bool(cfg, "guidance_embeds", false, &c.guidance_embeds, err));
    if (c.patch_size != 1)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: patch_size %lld: only 1 is supported (FLUX.1; the pipeline packs "
                       "2x2 latent patches)", label, (long long)c.patch_size);
    const struct { const char *key; int64_t val, lo, hi; } lim[] = {
        {"in_channels", c.in_channels, 1, 1 << 20},
        {"out_channels", c.out_channels, 1, 1 << 20},
        {"num_layers", c.num_layers, 0, 4096},
        {"num_single_layers", c.num_single_layers, 0, 4096},
        {"attention_head_dim", c.head_dim, 2, 1 << 14},
        {"num_attention_heads", c.num_heads, 1, 1 << 10},
        {"joint_attention_dim", c.joint_dim, 1, 1 << 20},
        {"pooled_projection_dim", c.pooled_dim, 1, 1 << 20},
    };
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++)
        if (lim[i].val < lim[i].lo || lim[i].val > lim[i].hi)
            return DS_FAIL(err, DS_ERR_FORMAT, "%s: key '%s': %lld is outside [%lld, %lld]", label, lim[i].key,
                           (long long)lim[i].val, (long long)lim[i].lo, (long long)lim[i].hi);
    if (c.head_dim % 2 != 0)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: key 'attention_head_dim': %lld is odd (RoPE rotates pairs)", label,
                       (long long)c.head_dim);
    c.hidden = c.num_heads * c.head_dim;
    if (c.hidden > (1 << 16))
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: inner dim %lld = heads x head_dim is too large", label,
                       (long long)c.hidden);
    c.mlp_hidden = 4 * c.hidden;
    c.freq_dim = 256;
    c.rope_theta = 10000.0;

    int64_t axes[DS_FLUX_MAX_AXES];
    int n_axes = 0;
    ds_status s = ds_config_get_int_array(cfg, "axes_dims_rope", axes, DS_FLUX_MAX_AXES, &n_axes, err);
    if (s == DS_ERR_INVALID_ARG)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: key 'axes_dims_rope': more than %d axes", label, DS_FLUX_MAX_AXES);
    if (s != DS_OK) return s;
    if (n_axes == 0 && !ds_config_has(cfg, "axes_dims_rope")) {
        n_axes = 3;
        axes[0] = 16, axes[1] = 56, axes[2] = 56;
    }
    if (n_axes < 1) return DS_FAIL(err, DS_ERR_FORMAT, "%s: key 'axes_dims_rope' is empty", label);
    int64_t sum = 0;
    for (int a = 0; a < n_axes; a++) {
        if (axes[a] <= 0 || axes[a] % 2 != 0 || axes[a] > c.head_dim)
            return DS_FAIL(err, DS_ERR_FORMAT, "%s: key 'axes_dims_rope': entry %d = %lld must be positive and even",
                           label, a, (long long)axes[a]);
        c.axes_dim[a] = (int)axes[a];
        sum += axes[a];
    }
    c.n_axes = n_axes;
    if (sum != c.head_dim)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: key 'axes_dims_rope' sums to %lld, attention_head_dim is %lld", label,
                       (long long)sum, (long long)c.head_dim);
    *out = c;
    return DS_OK;
}



/* ---- weight loading ------------------------------------------------------------------------------ */

/* One visitor over every parameter, run twice: on a plan arena (sizes; presence and dtype checked; names
 * recorded; the largest upload measured for the staging buffer) and on the real weights arena (tensors read,
 * converted to the model's dtype and uploaded to its device, shapes checked). */
typedef struct fx_loader {
    ds_flux          *m;
    ds_arena         *arena;
    const ds_weights *w;
    bool              read;
    ds_err           *err;
    char            **names; /* plan pass: every expected tensor name (malloc'd) */
    int64_t           n_names, cap_names;
} fx_loader;

static ds_status fx_note_name(fx_loader *L, const char *name) {
    if (L->n_names == L->cap_names) {
        int64_t cap = L->cap_names ? 2 * L->cap_names : 256;
        char **p = realloc(L->names, (size_t)cap * sizeof *p);
        if (!p) return DS_FAIL(L->err, DS_ERR_OOM, "flux: out of memory while listing tensors");
        L->names = p;
        L->cap_names = cap;
    }
    L->names[L->n_names] = strdup(name);
    if (!L->names[L->n_names]) return DS_FAIL(L->err, DS_ERR_OOM, "flux: out of memory while listing tensors");
    L->n_names++;
    return DS_OK;
}

/* Plan pass: the tensor must exist with a float dtype (the read pass checks its shape). */
static ds_status fx_check_present(fx_loader *L, const char *name) {
    const ds_st_tensor *t = ds_weights_find(L->w, name);
    if (!t)
        return DS_FAIL(L->err, DS_ERR_NOT_FOUND, "flux: %s: missing tensor '%s'", ds_weights_label(L->w), name);
    if (t->dtype != DS_ST_F32 && t->dtype != DS_ST_F16 && t->dtype != DS_ST_BF16)
        return DS_FAIL(L->err, DS_ERR_UNSUPPORTED, "flux: %s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)",
                       ds_weights_label(L->w), name, ds_st_dtype_name(t->dtype));
    return fx_note_name(L, name);
}

/* Plan pass: an upload of `bytes` will go through the staging buffer. */
static void fx_note_upload(fx_loader *L, size_t bytes) {
    if (bytes > L->m->staging_bytes) L->m->staging_bytes = bytes;
}

/* Parameter `name` of shape (s0[, s1]) into dst (a fresh tensor of the loader's arena, in the model's dtype). */
static ds_status fx_param(fx_loader *L, ds_tensor *dst, const char *name, int ndim, int64_t s0, int64_t s1) {
    const int64_t shape[2] = {s0, s1};
    DS_TRY(ds_arena_tensor(L->arena, L->m->pl.dtype, ndim, shape, dst, L->err));
    if (!L->read) {
        fx_note_upload(L, (size_t)ds_tensor_nbytes(dst));
        return fx_check_present(L, name);
    }
    ds_status s = ds_weights_read_placed(L->w, name, dst, ndim, shape, L->m->staging, L->m->staging_bytes, L->err);
    if (s != DS_OK) ds_err_prefix(L->err, "flux");
    return s;
}

/* A parameter named by a printf format. */
#if defined(__GNUC__)
__attribute__((format(printf, 6, 7)))
#endif
static ds_status fx_paramf(fx_loader *L, ds_tensor *dst, int ndim, int64_t s0, int64_t s1, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return fx_param(L, dst, name, ndim, s0, s1);
}

/* nn.Linear "<prefix>.weight" [out_f, in_f] and "<prefix>.bias" [out_f]. */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static ds_status fx_lin(fx_loader *L, fx_linear *lin, int64_t out_f, int64_t in_f, const char *fmt, ...) {
    char prefix[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    DS_TRY(fx_paramf(L, &lin->w, 2, out_f, in_f, "%s.weight", prefix));
    return fx_paramf(L, &lin->b, 1, out_f, 0, "%s.bias", prefix);
}

/* Read the whole proj_out weight `name` [D, D + M] into host memory `buf` in the model's dtype. */
static ds_status fx_read_full(fx_loader *L, const char *name, void *buf, int64_t D, int64_t M) {
    const int64_t full[2] = {D, D + M};
    const size_t bytes = (size_t)(D * (D + M)) * ds_dtype_size(L->m->pl.dtype);
    ds_status st = ds_weights_read(L->w, name, L->m->pl.dtype, buf, bytes, 2, full, L->err);
    if (st != DS_OK) ds_err_prefix(L->err, "flux");
    return st;
}

/* Columns [c0, c0 + n) of the rows of a host matrix [D, D + M] (elements of es bytes), packed in place to the
 * front of buf as a [D, n] matrix. Row r moves down to r*n (never past the rows not yet moved; memmove
 * handles the overlap within a row); the other columns are overwritten. */
static void fx_pack_cols(char *buf, int64_t D, int64_t M, int64_t c0, int64_t n, size_t es) {
    for (int64_t r = 0; r < D; r++)
        memmove(buf + (size_t)(r * n) * es, buf + (size_t)(r * (D + M) + c0) * es, (size_t)n * es);
}

/* single_transformer_blocks.j.proj_out.weight [D, 5D] split into its attention columns [D, D] and its MLP
 * columns [D, 4D]; the bias [D] goes with the attention half. On the CPU the matrix is read once into a
 * temporary and its rows copied into both halves; on a device it is read into the staging buffer (sized for
 * the whole matrix by the plan pass), packed in place and uploaded once per half (read twice: the packing of
 * one half overwrites the other). */
static ds_status fx_split_proj_out(fx_loader *L, fx_single *s, int j, int64_t D, int64_t M) {
    ds_flux *m = L->m;
    char name[128];
    snprintf(name, sizeof name, "single_transformer_blocks.%d.proj_out.weight", j);
    DS_TRY(ds_arena_tensor(L->arena, m->pl.dtype, 2, (const int64_t[]){D, D}, &s->proj_out_attn.w, L->err));
    DS_TRY(ds_arena_tensor(L->arena, m->pl.dtype, 2, (const int64_t[]){D, M}, &s->proj_out_mlp, L->err));
    const size_t es = ds_dtype_size(m->pl.dtype), full_bytes = (size_t)(D * (D + M)) * es;
    if (!L->read) {
        fx_note_upload(L, full_bytes);
        DS_TRY(fx_check_present(L, name));
    } else if (m->pl.device.kind == DS_DEVICE_CPU) {
        /* a copy of the whole matrix: load time only */
        char *tmp = malloc(full_bytes);
        if (!tmp) return DS_FAIL(L->err, DS_ERR_OOM, "flux: out of memory staging '%s'", name);
        ds_status st = fx_read_full(L, name, tmp, D, M);
        if (st != DS_OK) {
            free(tmp);
            return st;
        }
        char *wa = s->proj_out_attn.w.data, *wm = s->proj_out_mlp.data;
        for (int64_t r = 0; r < D; r++) {
            memcpy(wa + (size_t)(r * D) * es, tmp + (size_t)(r * (D + M)) * es, (size_t)D * es);
            memcpy(wm + (size_t)(r * M) * es, tmp + (size_t)(r * (D + M) + D) * es, (size_t)M * es);
        }
        free(tmp);
    } else {
        if (!m->staging || m->staging_bytes < full_bytes)
            return DS_FAIL(L->err, DS_ERR_INVALID_ARG, "flux: '%s': %zu bytes of staging needed, %zu given", name,
                           full_bytes, m->staging ? m->staging_bytes : 0);
        DS_TRY(fx_read_full(L, name, m->staging, D, M));
        fx_pack_cols(m->staging, D, M, 0, D, es);
        DS_TRY(ds_tensor_write_raw(&s->proj_out_attn.w, m->staging, (size_t)(D * D) * es, L->err));
        DS_TRY(fx_read_full(L, name, m->staging, D, M));
        fx_pack_cols(m->staging, D, M, D, M, es);
        DS_TRY(ds_tensor_write_raw(&s->proj_out_mlp, m->staging, (size_t)(D * M) * es, L->err));
    }
    return fx_paramf(L, &s->proj_out_attn.b, 1, D, 0, "single_transformer_blocks.%d.proj_out.bias", j);
}

/* Visit every parameter of the model in a fixed order. */
static ds_status fx_visit(ds_flux *m, fx_loader *L) {
    const ds_flux_config *c = &m->cfg;
    const int64_t D = c->hidden, d = c->head_dim, M = c->mlp_hidden, F = c->freq_dim;
    DS_TRY(fx_lin(L, &m->x_emb, D, c->in_channels, "x_embedder"));
    DS_TRY(fx_lin(L, &m->ctx_emb, D, c->joint_dim, "context_embedder"));
    DS_TRY(fx_lin(L, &m->t_lin1, D, F, "time_text_embed.timestep_embedder.linear_1"));
    DS_TRY(fx_lin(L, &m->t_lin2, D, D, "time_text_embed.timestep_embedder.linear_2"));
    if (c->guidance_embeds) {
        DS_TRY(fx_lin(L, &m->g_lin1, D, F, "time_text_embed.guidance_embedder.linear_1"));
        DS_TRY(fx_lin(L, &m->g_lin2, D, D, "time_text_embed.guidance_embedder.linear_2"));
    }
    DS_TRY(fx_lin(L, &m->p_lin1, D, c->pooled_dim, "time_text_embed.text_embedder.linear_1"));
    DS_TRY(fx_lin(L, &m->p_lin2, D, D, "time_text_embed.text_embedder.linear_2"));
    for (int i = 0; i < (int)c->num_layers; i++) {
        fx_double *b = &m->dbl[i];
        const char *p = "transformer_blocks";
        DS_TRY(fx_lin(L, &b->norm1, 6 * D, D, "%s.%d.norm1.linear", p, i));
        DS_TRY(fx_lin(L, &b->norm1_ctx, 6 * D, D, "%s.%d.norm1_context.linear", p, i));
        DS_TRY(fx_lin(L, &b->to_q, D, D, "%s.%d.attn.to_q", p, i));
        DS_TRY(fx_lin(L, &b->to_k, D, D, "%s.%d.attn.to_k", p, i));
        DS_TRY(fx_lin(L, &b->to_v, D, D, "%s.%d.attn.to_v", p, i));
        DS_TRY(fx_lin(L, &b->add_q, D, D, "%s.%d.attn.add_q_proj", p, i));
        DS_TRY(fx_lin(L, &b->add_k, D, D, "%s.%d.attn.add_k_proj", p, i));
        DS_TRY(fx_lin(L, &b->add_v, D, D, "%s.%d.attn.add_v_proj", p, i));
        DS_TRY(fx_paramf(L, &b->norm_q, 1, d, 0, "%s.%d.attn.norm_q.weight", p, i));
        DS_TRY(fx_paramf(L, &b->norm_k, 1, d, 0, "%s.%d.attn.norm_k.weight", p, i));
        DS_TRY(fx_paramf(L, &b->norm_added_q, 1, d, 0, "%s.%d.attn.norm_added_q.weight", p, i));
        DS_TRY(fx_paramf(L, &b->norm_added_k, 1, d, 0, "%s.%d.attn.norm_added_k.weight", p, i));
        DS_TRY(fx_lin(L, &b->to_out, D, D, "%s.%d.attn.to_out.0", p, i));
        DS_TRY(fx_lin(L, &b->to_add_out, D, D, "%s.%d.attn.to_add_out", p, i));
        DS_TRY(fx_lin(L, &b->ff0, M, D, "%s.%d.ff.net.0.proj", p, i));
        DS_TRY(fx_lin(L, &b->ff2, D, M, "%s.%d.ff.net.2", p, i));
        DS_TRY(fx_lin(L, &b->ffc0, M, D, "%s.%d.ff_context.net.0.proj", p, i));
        DS_TRY(fx_lin(L, &b->ffc2, D, M, "%s.%d.ff_context.net.2", p, i));
    }
    for (int j = 0; j < (int)c->num_single_layers; j++) {
        fx_single *s = &m->sgl[j];
        const char *p = "single_transformer_blocks";
        DS_TRY(fx_lin(L, &s->norm, 3 * D, D, "%s.%d.norm.linear", p, j));
        DS_TRY(fx_lin(L, &s->to_q, D, D, "%s.%d.attn.to_q", p, j));
        DS_TRY(fx_lin(L, &s->to_k, D, D, "%s.%d.attn.to_k", p, j));
        DS_TRY(fx_lin(L, &s->to_v, D, D, "%s.%d.attn.to_v", p, j));
        DS_TRY(fx_paramf(L, &s->norm_q, 1, d, 0, "%s.%d.attn.norm_q.weight", p, j));
        DS_TRY(fx_paramf(L, &s->norm_k, 1, d, 0, "%s.%d.attn.norm_k.weight", p, j));
        DS_TRY(fx_lin(L, &s->proj_mlp, M, D, "%s.%d.proj_mlp", p, j));
        DS_TRY(fx_split_proj_out(L, s, j, D, M));
    }
    DS_TRY(fx_lin(L, &m->norm_out, 2 * D, D, "norm_out.linear"));
    return fx_lin(L, &m->proj_out, c->out_channels, D, "proj_out");
}

static int fx_cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every checkpoint tensor must be one the config uses (a config / weights mismatch, e.g. guidance
 * embedder tensors with guidance_embeds false, or more blocks than num_layers, is an error). */
static ds_status fx_check_unexpected(fx_loader *L) {
    const int64_t n = ds_weights_count(L->w);
    if (n == L->n_names) return DS_OK; /* all expected ones were found, so the sets are equal */
    qsort(L->names, (size_t)L->n_names, sizeof *L->names, fx_cmp_str);
    for (int64_t i = 0; i < n; i++) {
        const ds_st_tensor *t = ds_weights_at(L->w, i);
        if (!bsearch(&t->name, L->names, (size_t)L->n_names, sizeof *L->names, fx_cmp_str))
            return DS_FAIL(L->err, DS_ERR_FORMAT, "flux: %s: tensor '%s' is not part of the model the config describes "
                           "(%lld tensors expected, %lld stored): config.json and the weights disagree",
                           ds_weights_label(L->w), t->name, (long long)L->n_names, (long long)n);
    }
    return DS_OK;
}

/* ---- activation scratch (the same helpers size the arena at load and carve it per call) ----------- */

/* A workspace tensor in the model's dtype, or (FX_F32) in f32 on the model's device. */
#define FX_WS(t, nd, ...) DS_TRY(ds_arena_tensor(a, m->pl.dtype, (nd), (const int64_t[]){__VA_ARGS__}, (t), err))
#define FX_F32(t, nd, ...) DS_TRY(ds_arena_tensor(a, DS_F32, (nd), (const int64_t[]){__VA_ARGS__}, (t), err))

/* Attention scratch for a sequence of L tokens, capped at what load planned (the op uses fewer threads
 * when given fewer per-thread slices, so a thread count raised after load still works). The CUDA attention
 * is tiled and needs none (attn_planned is 0 there). */
static size_t fx_attn_bytes(const ds_flux *m, int64_t L) {
    size_t b = ds_op_attention_scratch_bytes(L, L, m->cfg.head_dim);
    return b < m->attn_planned ? b : m->attn_planned;
}

/* ds_flux_embed */
typedef struct fx_embed_buf {
    ds_tensor tt;   /* [B] f32: timestep (or guidance) x 1000 */
    ds_tensor sinu; /* [B, 256] */
    ds_tensor h1;   /* [B, D] */
    ds_tensor tmp;  /* [B, D] */
} fx_embed_buf;

static ds_status fx_embed_alloc(const ds_flux *m, ds_arena *a, int64_t B, fx_embed_buf *s, ds_err *err) {
    const int64_t D = m->cfg.hidden;
    FX_F32(&s->tt, 1, B); /* f32 on every device (ds_op_timestep_embedding) */
    FX_WS(&s->sinu, 2, B, m->cfg.freq_dim);
    FX_WS(&s->h1, 2, B, D);
    FX_WS(&s->tmp, 2, B, D);
    return DS_OK;
}

/* ds_flux_double_block_forward */
typedef struct fx_double_buf {
    ds_tensor st;             /* [B, D] silu(temb) */
    ds_tensor mod_x, mod_c;   /* [B, 6D] adaLN chunks of each stream */
    ds_tensor nx;             /* [B, N, D] normed image stream */
    ds_tensor nc;             /* [B, T, D] normed text stream */
    ds_tensor q, k, v, o;     /* [B, T+N, H, d] joint sequence, text rows first */
    ds_tensor xa;             /* [B, N, D] image attention / MLP output (reuses q after the attention) */
    ds_tensor ca;             /* [B, T, D] text attention / MLP output (reuses q + B*N*D) */
    ds_tensor ffh;            /* [B * max(N, T) * 4D] MLP hidden */
    void     *attn;
    size_t    attn_bytes;
} fx_double_buf;

static ds_status fx_double_alloc(const ds_flux *m, ds_arena *a, int64_t B, int64_t T, int64_t N, fx_double_buf *s,
                                 ds_err *err) {
    const int64_t D = m->cfg.hidden, H = m->cfg.num_heads, d = m->cfg.head_dim, L = T + N;
    FX_WS(&s->st, 2, B, D);
    FX_WS(&s->mod_x, 2, B, 6 * D);
    FX_WS(&s->mod_c, 2, B, 6 * D);
    FX_WS(&s->nx, 3, B, N, D);
    FX_WS(&s->nc, 3, B, T, D);
    FX_WS(&s->q, 4, B, L, H, d);
    FX_WS(&s->k, 4, B, L, H, d);
    FX_WS(&s->v, 4, B, L, H, d);
    FX_WS(&s->o, 4, B, L, H, d);
    s->xa = ds_tensor_like(&s->q, s->q.data, 3, (const int64_t[]){B, N, D});
    s->ca = ds_tensor_like(&s->q, ds_tensor_elem_ptr(&s->q, B * N * D), 3, (const int64_t[]){B, T, D});
    FX_WS(&s->ffh, 1, B * (N > T ? N : T) * m->cfg.mlp_hidden);
    s->attn_bytes = fx_attn_bytes(m, L);
    return ds_arena_alloc(a, s->attn_bytes, 0, &s->attn, err);
}

/* ds_flux_single_block_forward */
typedef struct fx_single_buf {
    ds_tensor st;          /* [B, D] */
    ds_tensor mod;         /* [B, 3D] */
    ds_tensor ns;          /* [B, L, D] */
    ds_tensor q, k, v, o;  /* [B, L, H, d] */
    ds_tensor mlp;         /* [B, L, 4D] */
    ds_tensor pa, pm;      /* [B, L, D] proj_out halves (reuse q and k after the attention) */
    void     *attn;
    size_t    attn_bytes;
} fx_single_buf;

static ds_status fx_single_alloc(const ds_flux *m, ds_arena *a, int64_t B, int64_t L, fx_single_buf *s, ds_err *err) {
    const int64_t D = m->cfg.hidden, H = m->cfg.num_heads, d = m->cfg.head_dim;
    FX_WS(&s->st, 2, B, D);
    FX_WS(&s->mod, 2, B, 3 * D);
    FX_WS(&s->ns, 3, B, L, D);
    FX_WS(&s->q, 4, B, L, H, d);
    FX_WS(&s->k, 4, B, L, H, d);
    FX_WS(&s->v, 4, B, L, H, d);
    FX_WS(&s->o, 4, B, L, H, d);
    FX_WS(&s->mlp, 3, B, L, m->cfg.mlp_hidden);
    s->pa = ds_tensor_like(&s->q, s->q.data, 3, (const int64_t[]){B, L, D});
    s->pm = ds_tensor_like(&s->k, s->k.data, 3, (const int64_t[]){B, L, D});
    s->attn_bytes = fx_attn_bytes(m, L);
    return ds_arena_alloc(a, s->attn_bytes, 0, &s->attn, err);
}

/* ds_flux_final */
typedef struct fx_final_buf {
    ds_tensor st;  /* [B, D] */
    ds_tensor mod; /* [B, 2D] */
    ds_tensor xn;  /* [B, N, D] */
} fx_final_buf;

static ds_status fx_final_alloc(const ds_flux *m, ds_arena *a, int64_t B, int64_t N, fx_final_buf *s, ds_err *err) {
    const int64_t D = m->cfg.hidden;
    FX_WS(&s->st, 2, B, D);
    FX_WS(&s->mod, 2, B, 2 * D);
    FX_WS(&s->xn, 3, B, N, D);
    return DS_OK;
}

/* ds_flux_forward's own buffers (the pieces' inputs and outputs). */
typedef struct fx_forward_buf {
    ds_tensor hidden;  /* [B, N, D] */
    ds_tensor encoder; /* [B, T, D] */
    ds_tensor temb;    /* [B, D] */
    ds_flux_rope rope; /* cos, sin [T+N, d], f32 on every device */
    ds_tensor cat;     /* [B, T+N, D] */
} fx_forward_buf;

static ds_status fx_forward_alloc(const ds_flux *m, ds_arena *a, int64_t B, int64_t T, int64_t N, fx_forward_buf *s,
                                  ds_err *err) {
    const int64_t D = m->cfg.hidden, L = T + N;
    FX_WS(&s->hidden, 3, B, N, D);
    FX_WS(&s->encoder, 3, B, T, D);
    FX_WS(&s->temb, 2, B, D);
    FX_F32(&s->rope.cos, 2, L, m->cfg.head_dim);
    FX_F32(&s->rope.sin, 2, L, m->cfg.head_dim);
    FX_WS(&s->cat, 3, B, L, D);
    return DS_OK;
}

/* Activation arena bytes for the limits: the forward's buffers plus the largest piece's scratch. */
static ds_status fx_plan(const ds_flux *m, size_t *bytes, ds_err *err) {
    ds_arena p;
    ds_arena_init_plan(&p, DS_ARENA_ACTIVATIONS, "flux-plan");
    const int64_t B = m->max_batch, T = m->max_txt, N = m->max_img;
    fx_forward_buf f;
    fx_embed_buf e;
    fx_double_buf db;
    fx_single_buf sb;
    fx_final_buf fb;
    DS_TRY(fx_forward_alloc(m, &p, B, T, N, &f, err));
    const size_t mk = ds_arena_mark(&p);
    DS_TRY(fx_embed_alloc(m, &p, B, &e, err));
    ds_arena_rewind(&p, mk);
    DS_TRY(fx_double_alloc(m, &p, B, T, N, &db, err));
    ds_arena_rewind(&p, mk);
    DS_TRY(fx_single_alloc(m, &p, B, T + N, &sb, err));
    ds_arena_rewind(&p, mk);
    DS_TRY(fx_final_alloc(m, &p, B, N, &fb, err));
    *bytes = p.high_water;
    return DS_OK;
}

/* ---- load / free ------------------------------------------------------------------------------------ */

static void fx_loader_free(fx_loader *L) {
    for (int64_t i = 0; i < L->n_names; i++) free(L->names[i]);
    free(L->names);
    L->names = NULL;
    L->n_names = L->cap_names = 0;
}

ds_status ds_flux_load(const ds_component *comp, int max_batch, int max_img_tokens, int max_txt_tokens, ds_flux **out,
                       ds_err *err) {
    return ds_flux_load_on(comp, max_batch, max_img_tokens, max_txt_tokens, NULL, out, err);
}

ds_status ds_flux_load_on(const ds_component *comp, int max_batch, int max_img_tokens, int max_txt_tokens,
                          const ds_placement *pl, ds_flux **out, ds_err *err) {
    if (!out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_flux_load: out is NULL");
    *out = NULL;
    DS_TRY(ds_placement_check(pl, "flux", err));
    if (!comp || !comp->config || !comp->weights)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_flux_load: component %s has no %s", comp && comp->name ? comp->name : "(null)",
                       !comp ? "data" : !comp->config ? "config.json" : "weights");
    if (max_batch < 1 || max_img_tokens < 1 || max_txt_tokens < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_flux_load: max_batch %d, max_img_tokens %d, max_txt_tokens %d must "
                       "all be >= 1", max_batch, max_img_tokens, max_txt_tokens);
    ds_flux *m = calloc(1, sizeof *m);
    if (!m) return DS_FAIL(err, DS_ERR_OOM, "ds_flux_load: out of memory");
    m->pl = ds_placement_or_cpu(pl);
    const bool on_cpu = m->pl.device.kind == DS_DEVICE_CPU;
    fx_loader L = {0};
    ds_status st = ds_flux_config_parse(comp->config, &m->cfg, err);
    if (st != DS_OK) goto fail;
    m->max_batch = max_batch, m->max_img = max_img_tokens, m->max_txt = max_txt_tokens;
    const ds_flux_config *c = &m->cfg;
    m->dbl = calloc((size_t)(c->num_layers ? c->num_layers : 1), sizeof *m->dbl);
    m->sgl = calloc((size_t)(c->num_single_layers ? c->num_single_layers : 1), sizeof *m->sgl);
    m->host = malloc((size_t)fx_host_floats(m) * sizeof(float));
    m->rope_L = -1;
    m->rope_dst_cos = m->rope_dst_sin = NULL;
    if (!m->dbl || !m->sgl || !m->host) {
        st = DS_FAIL(err, DS_ERR_OOM, "ds_flux_load: out of memory");
        goto fail;
    }

    /* pass 1: sizes, presence, dtypes, no unexpected tensors, the largest upload */
    ds_arena plan;
    ds_arena_init_plan(&plan, DS_ARENA_WEIGHTS, "flux-weights-plan");
    L.m = m, L.arena = &plan, L.w = comp->weights, L.read = false, L.err = err;
    if ((st = fx_visit(m, &L)) != DS_OK || (st = fx_check_unexpected(&L)) != DS_OK) goto fail;

    /* pass 2: read into the real arena (through the staging buffer off the CPU) */
    if ((st = ds_arena_init_device(&m->wts, plan.high_water, m->pl.device, DS_ARENA_WEIGHTS, "flux-weights", err)) !=
        DS_OK)
        goto fail;
    if (on_cpu) {
        m->staging_bytes = 0; /* weights are read in place */
    } else if (!(m->staging = malloc(m->staging_bytes ? m->staging_bytes : 1))) {
        st = DS_FAIL(err, DS_ERR_OOM, "ds_flux_load: cannot allocate %zu bytes of staging", m->staging_bytes);
        goto fail;
    }
    L.arena = &m->wts, L.read = true;
    if ((st = fx_visit(m, &L)) != DS_OK) goto fail;
    /* every later upload (timesteps, RoPE tables) is f32 and needs no staging */
    free(m->staging);
    m->staging = NULL;
    m->staging_bytes = 0;

    /* activations */
    m->attn_planned = on_cpu ? ds_op_attention_scratch_bytes((int64_t)max_txt_tokens + max_img_tokens,
                                                             (int64_t)max_txt_tokens + max_img_tokens, c->head_dim)
                             : 0;
    size_t act = 0;
    if ((st = fx_plan(m, &act, err)) != DS_OK) goto fail;
    if ((st = ds_arena_init_device(&m->act, act, m->pl.device, DS_ARENA_ACTIVATIONS, "flux-activations", err)) !=
        DS_OK)
        goto fail;
    if ((st = ds_graph_cache_create(8, NULL, &m->graphs, err)) != DS_OK) goto fail;
    fx_loader_free(&L);
    *out = m;
    return DS_OK;
fail:
    fx_loader_free(&L);
    ds_flux_free(m);
    return st;
}

void ds_flux_free(ds_flux *m) {
    if (!m) return;
    ds_graph_cache_free(m->graphs);
    ds_arena_free(&m->wts);
    ds_arena_free(&m->act);
    free(m->staging);
    free(m->host);
    free(m->dbl);
    free(m->sgl);
    free(m);
}

const ds_flux_config *ds_flux_get_config(const ds_flux *m) { return m ? &m->cfg : NULL; }
ds_placement ds_flux_placement(const ds_flux *m) { return m ? m->pl : ds_placement_cpu(); }
int ds_flux_max_batch(const ds_flux *m) { return m ? m->max_batch : 0; }
int ds_flux_max_img_tokens(const ds_flux *m) { return m ? m->max_img : 0; }
int ds_flux_max_txt_tokens(const ds_flux *m) { return m ? m->max_txt : 0; }
size_t ds_flux_weight_bytes(const ds_flux *m) { return m ? m->wts.cap : 0; }
size_t ds_flux_activation_bytes(const ds_flux *m) { return m ? m->act.cap : 0; }
int ds_flux_double_block_count(const ds_flux *m) { return m ? (int)m->cfg.num_layers : 0; }
int ds_flux_single_block_count(const ds_flux *m) { return m ? (int)m->cfg.num_single_layers : 0; }

/* ---- small tensor helpers ------------------------------------------------------------------------ */

/* Contiguous views of t's memory (t's dtype and device) starting at element `off`. */
static ds_tensor fx_v2(const ds_tensor *t, int64_t off, int64_t r, int64_t c) {
    return ds_tensor_like(t, ds_tensor_elem_ptr(t, off), 2, (const int64_t[]){r, c});
}
static ds_tensor fx_v3(const ds_tensor *t, int64_t off, int64_t a, int64_t b, int64_t c) {
    return ds_tensor_like(t, ds_tensor_elem_ptr(t, off), 3, (const int64_t[]){a, b, c});
}

/* Chunk `idx` of an adaLN projection mod [B, k*D]: a [B, D] view with row stride k*D. */
static ds_tensor fx_chunk(const ds_tensor *mod, int64_t B, int64_t k, int64_t idx, int64_t D) {
    ds_tensor t = fx_v2(mod, idx * D, B, D);
    t.stride[0] = k * D;
    return t;
}

/* out[rows, N] = x[rows, K]·Wᵀ (+ b) for a Linear lin (W [N, K]); the rows start at element out_off of out
 * and x_off of x. */
static ds_status fx_lin_rows(const ds_tensor *out, int64_t out_off, const ds_tensor *x, int64_t x_off, int64_t rows,
                             const fx_linear *lin, ds_err *err) {
    ds_tensor o = fx_v2(out, out_off, rows, lin->w.shape[0]), in = fx_v2(x, x_off, rows, lin->w.shape[1]);
    return ds_op_linear(&o, &in, &lin->w, lin->b.data ? &lin->b : NULL, err);
}

/* The q, k, v projections of `rows` rows of x (from element x_off) into q, k, v (from element out_off of each):
 * one ds_op_linear_multi (a single batched product on CUDA when the weights lie evenly in the arena). */
static ds_status fx_qkv_rows(const ds_tensor *q, const ds_tensor *k, const ds_tensor *v, int64_t out_off,
                             const ds_tensor *x, int64_t x_off, int64_t rows, const fx_linear *lq, const fx_linear *lk,
                             const fx_linear *lv, ds_err *err) {
    const int64_t N = lq->w.shape[0];
    ds_tensor oq = fx_v2(q, out_off, rows, N), ok = fx_v2(k, out_off, rows, N), ov = fx_v2(v, out_off, rows, N);
    ds_tensor in = fx_v2(x, x_off, rows, lq->w.shape[1]);
    ds_tensor *outs[3] = {&oq, &ok, &ov};
    const ds_tensor *ws[3] = {&lq->w, &lk->w, &lv->w};
    const ds_tensor *bs[3] = {lq->b.data ? &lq->b : NULL, lk->b.data ? &lk->b : NULL, lv->b.data ? &lv->b : NULL};
    return ds_op_linear_multi(outs, &in, ws, bs[0] ? bs : NULL, 3, err);
}

/* FLUX's q/k path, in place: per-head RMSNorm (eps 1e-6, weight [d]) then RoPE, over nb x S tokens of H heads
 * starting at element off of x ([nb, S, H, d]); the tokens take RoPE table rows tok0 .. tok0 + S - 1. One op
 * (ds_op_rmsnorm_rope: fused on CUDA). */
static ds_status fx_qk_norm_rope(const ds_tensor *x, int64_t off, int64_t nb, int64_t S, int64_t H, int64_t d,
                                 const ds_tensor *w, const ds_flux_rope *rope, int64_t tok0, ds_err *err) {
    ds_tensor t = ds_tensor_like(x, ds_tensor_elem_ptr(x, off), 4, (const int64_t[]){nb, S, H, d});
    ds_tensor c = ds_tensor_like(&rope->cos, ds_tensor_elem_ptr(&rope->cos, tok0 * d), 2, (const int64_t[]){S, d});
    ds_tensor sn = ds_tensor_like(&rope->sin, ds_tensor_elem_ptr(&rope->sin, tok0 * d), 2, (const int64_t[]){S, d});
    return ds_op_rmsnorm_rope(&t, &t, w, 1e-6f, &c, &sn, err);
}

/* out[B, n, D] = LN(x; eps 1e-6, no affine) * (1 + mod[chunk sc]) + mod[chunk sh]   (mod [B, k*D]). */
static ds_status fx_norm_mod(const ds_tensor *out, const ds_tensor *x, int64_t B, int64_t n, int64_t D,
                             const ds_tensor *mod, int64_t k, int64_t sh, int64_t sc, ds_err *err) {
    ds_tensor o = fx_v3(out, 0, B, n, D), in = fx_v3(x, 0, B, n, D);
    const ds_tensor scale = fx_chunk(mod, B, k, sc, D), shift = fx_chunk(mod, B, k, sh, D);
    return ds_op_layernorm_modulate(&o, &in, &scale, &shift, 1e-6f, err);
}

/* x[B, n, D] += mod[chunk g] * y   (gated residual, in place). */
static ds_status fx_gate_add(const ds_tensor *x, const ds_tensor *y, int64_t B, int64_t n, int64_t D,
                             const ds_tensor *mod, int64_t k, int64_t g, ds_err *err) {
    ds_tensor xt = fx_v3(x, 0, B, n, D), yt = fx_v3(y, 0, B, n, D);
    const ds_tensor gate = fx_chunk(mod, B, k, g, D);
    return ds_op_gate_add(&xt, &xt, &yt, &gate, err);
}

/* mod[B, k*D] = lin(silu(temb)); st [B, D] receives silu(temb). */
static ds_status fx_adaln(const ds_tensor *mod, const ds_tensor *st, const ds_tensor *temb, int64_t B, int64_t D,
                          const fx_linear *lin, ds_err *err) {
    ds_tensor s = fx_v2(st, 0, B, D), t = fx_v2(temb, 0, B, D);
    DS_TRY(ds_op_silu(&s, &t, err));
    return fx_lin_rows(mod, 0, st, 0, B, lin, err);
}

/* fx_lin_rows followed by tanh-GELU (diffusers' "gelu-approximate" FeedForward and the single blocks'
 * act_mlp), one fused op. */
static ds_status fx_lin_gelu_rows(const ds_tensor *out, const ds_tensor *x, int64_t rows, const fx_linear *lin,
                                  ds_err *err) {
    ds_tensor o = fx_v2(out, 0, rows, lin->w.shape[0]), in = fx_v2(x, 0, rows, lin->w.shape[1]);
    return ds_op_linear_gelu(&o, &in, &lin->w, lin->b.data ? &lin->b : NULL, DS_GELU_TANH, err);
}

/* ---- the pieces on validated tensors ------------------------------------------------------------- */

/* Inside a piece: stop at the first failing op, then rewind the arena at `done`. */
#define FX_CHECK(expr)                         \
    do {                                       \
        if ((st = (expr)) != DS_OK) goto done; \
    } while (0)

/* sinusoid(v*1000) -> linear_1 -> silu -> linear_2 into out [B, D]; v is a host array [B]. */
static ds_status fx_time_mlp(const ds_flux *m, const fx_embed_buf *s, const float *v, int64_t B,
                             const fx_linear *l1, const fx_linear *l2, const ds_tensor *out, ds_err *err) {
    float *tt = fx_host_tt(m);
    for (int64_t b = 0; b < B; b++) tt[b] = v[b] * 1000.0f; /* diffusers: timestep.to(dtype) * 1000 */
    ds_tensor ttd = s->tt;                                  /* [B] f32 on the device */
    DS_TRY(ds_tensor_write_f32(&ttd, tt, NULL, 0, err));
    ds_tensor sinu = s->sinu;
    DS_TRY(ds_op_timestep_embedding(&sinu, &ttd, 1, 0.0f, 1.0f, 10000.0f, err));
    DS_TRY(fx_lin_rows(&s->h1, 0, &s->sinu, 0, B, l1, err));
    ds_tensor h1 = s->h1;
    DS_TRY(ds_op_silu(&h1, &h1, err));
    return fx_lin_rows(out, 0, &s->h1, 0, B, l2, err);
}

/* img_ids, txt_ids: host f32; rope->cos / rope->sin: f32 [T+N, d] on the model's device. */
static ds_status fx_embed_run(ds_flux *m, int64_t B, int64_t T, int64_t N, const ds_tensor *hidden,
                              const ds_tensor *encoder, const ds_tensor *pooled, const float *timestep,
                              const float *guidance, const ds_tensor *img_ids, const ds_tensor *txt_ids,
                              ds_tensor *hidden_out, ds_tensor *encoder_out, ds_tensor *temb, ds_flux_rope *rope,
                              ds_err *err) {
    const ds_flux_config *c = &m->cfg;
    const int64_t D = c->hidden, L = T + N, d = c->head_dim;
    ds_arena *a = &m->act;
    const size_t mk = ds_arena_mark(a);
    fx_embed_buf s;
    ds_status st = fx_embed_alloc(m, a, B, &s, err);
    if (st != DS_OK) goto done;
    FX_CHECK(fx_lin_rows(hidden_out, 0, hidden, 0, B * N, &m->x_emb, err));     // [B, N, D]
    FX_CHECK(fx_lin_rows(encoder_out, 0, encoder, 0, B * T, &m->ctx_emb, err)); // [B, T, D]
    /* temb = (MLP_t(t) + MLP_g(g)) + MLP_txt(pooled), in diffusers' order */
    FX_CHECK(fx_time_mlp(m, &s, timestep, B, &m->t_lin1, &m->t_lin2, temb, err));
    ds_tensor te = fx_v2(temb, 0, B, D), tmp = s.tmp;
    if (guidance) {
        FX_CHECK(fx_time_mlp(m, &s, guidance, B, &m->g_lin1, &m->g_lin2, &s.tmp, err));
        FX_CHECK(ds_op_add(&te, &te, &tmp, err));
    }
    FX_CHECK(fx_lin_rows(&s.h1, 0, pooled, 0, B, &m->p_lin1, err));
    ds_tensor h1 = s.h1;
    FX_CHECK(ds_op_silu(&h1, &h1, err));
    FX_CHECK(fx_lin_rows(&s.tmp, 0, &s.h1, 0, B, &m->p_lin2, err));
    FX_CHECK(ds_op_add(&te, &te, &tmp, err));
    /* rope over cat(txt_ids, img_ids), text first: computed on the host (fp64, CPU only) when the ids differ
     * from the last call's, then copied (uploaded as f32 off the CPU) into the caller's tables */
    const int64_t na = c->n_axes;
    float *ids = fx_host_ids(m), *kept = fx_host_rope_ids(m);
    memcpy(ids, txt_ids->data, (size_t)(T * na) * sizeof(float));
    memcpy(ids + T * na, img_ids->data, (size_t)(N * na) * sizeof(float));
    float *hc = fx_host_rope(m), *hs = hc + ((int64_t)m->max_txt + m->max_img) * d;
    if (m->rope_L != L || memcmp(kept, ids, (size_t)(L * na) * sizeof(float)) != 0) {
        ds_tensor idt = ds_tensor_f32(ids, 2, L, na), ct = ds_tensor_f32(hc, 2, L, d), stn = ds_tensor_f32(hs, 2, L, d);
        m->rope_L = -1; /* until the new tables are complete */
        m->rope_dst_cos = m->rope_dst_sin = NULL;
        FX_CHECK(ds_op_rope_freqs(&ct, &stn, &idt, c->axes_dim, c->n_axes, c->rope_theta, err));
        memcpy(kept, ids, (size_t)(L * na) * sizeof(float));
        m->rope_L = L;
    }
    /* the same ids into the same caller tables as last time: they already hold these values (no upload per
     * denoising step); anything else is written */
    if (rope->cos.data != m->rope_dst_cos || rope->sin.data != m->rope_dst_sin) {
        m->rope_dst_cos = m->rope_dst_sin = NULL; /* until both are written */
        FX_CHECK(ds_tensor_write_f32(&rope->cos, hc, NULL, 0, err));
        FX_CHECK(ds_tensor_write_f32(&rope->sin, hs, NULL, 0, err));
        m->rope_dst_cos = rope->cos.data;
        m->rope_dst_sin = rope->sin.data;
    }
done:
    ds_arena_rewind(a, mk);
    if (st != DS_OK) ds_err_prefix(err, "flux embed");
    return st;
}

static ds_status fx_double_run(ds_flux *m, int i, int64_t B, int64_t T, int64_t N, ds_tensor *hid, ds_tensor *enc,
                               const ds_tensor *temb, const ds_flux_rope *rope, ds_err *err) {
    const ds_flux_config *c = &m->cfg;
    const fx_double *w = &m->dbl[i];
    const int64_t D = c->hidden, H = c->num_heads, d = c->head_dim, L = T + N;
    const size_t mk = ds_arena_mark(&m->act);
    fx_double_buf s;
    ds_status st = fx_double_alloc(m, &m->act, B, T, N, &s, err);
    if (st != DS_OK) goto done;
    /* adaLN-Zero chunks: 0 shift_msa, 1 scale_msa, 2 gate_msa, 3 shift_mlp, 4 scale_mlp, 5 gate_mlp */
    FX_CHECK(fx_adaln(&s.mod_x, &s.st, temb, B, D, &w->norm1, err));     // [B, 6D]
    FX_CHECK(fx_adaln(&s.mod_c, &s.st, temb, B, D, &w->norm1_ctx, err)); // [B, 6D]
    FX_CHECK(fx_norm_mod(&s.nx, hid, B, N, D, &s.mod_x, 6, 0, 1, err));  // [B, N, D]
    FX_CHECK(fx_norm_mod(&s.nc, enc, B, T, D, &s.mod_c, 6, 0, 1, err));  // [B, T, D]
    /* joint q/k/v [B, T+N, H, d]: text rows from the add_* projections, then image rows */
    for (int64_t b = 0; b < B; b++) {
        const int64_t tc = b * T * D, tx = b * N * D, jt = b * L * D, ji = jt + T * D;
        FX_CHECK(fx_qkv_rows(&s.q, &s.k, &s.v, jt, &s.nc, tc, T, &w->add_q, &w->add_k, &w->add_v, err));
        FX_CHECK(fx_qkv_rows(&s.q, &s.k, &s.v, ji, &s.nx, tx, N, &w->to_q, &w->to_k, &w->to_v, err));
        /* text tokens take RoPE rows 0 .. T-1, image tokens T .. T+N-1 (the tables are over cat(txt, img)) */
        FX_CHECK(fx_qk_norm_rope(&s.q, jt, 1, T, H, d, &w->norm_added_q, rope, 0, err));
        FX_CHECK(fx_qk_norm_rope(&s.k, jt, 1, T, H, d, &w->norm_added_k, rope, 0, err));
        FX_CHECK(fx_qk_norm_rope(&s.q, ji, 1, N, H, d, &w->norm_q, rope, T, err));
        FX_CHECK(fx_qk_norm_rope(&s.k, ji, 1, N, H, d, &w->norm_k, rope, T, err));
    }
    FX_CHECK(ds_op_attention(&s.o, &s.q, &s.k, &s.v, NULL, 0.0f, s.attn, s.attn_bytes, err));
    for (int64_t b = 0; b < B; b++) {
        FX_CHECK(fx_lin_rows(&s.ca, b * T * D, &s.o, b * L * D, T, &w->to_add_out, err));
        FX_CHECK(fx_lin_rows(&s.xa, b * N * D, &s.o, b * L * D + T * D, N, &w->to_out, err));
    }
    /* image stream */
    FX_CHECK(fx_gate_add(hid, &s.xa, B, N, D, &s.mod_x, 6, 2, err));
    FX_CHECK(fx_norm_mod(&s.nx, hid, B, N, D, &s.mod_x, 6, 3, 4, err));
    FX_CHECK(fx_lin_gelu_rows(&s.ffh, &s.nx, B * N, &w->ff0, err)); // [B, N, 4D]
    FX_CHECK(fx_lin_rows(&s.xa, 0, &s.ffh, 0, B * N, &w->ff2, err));
    FX_CHECK(fx_gate_add(hid, &s.xa, B, N, D, &s.mod_x, 6, 5, err));
    /* text stream */
    FX_CHECK(fx_gate_add(enc, &s.ca, B, T, D, &s.mod_c, 6, 2, err));
    FX_CHECK(fx_norm_mod(&s.nc, enc, B, T, D, &s.mod_c, 6, 3, 4, err));
    FX_CHECK(fx_lin_gelu_rows(&s.ffh, &s.nc, B * T, &w->ffc0, err)); // [B, T, 4D]
    FX_CHECK(fx_lin_rows(&s.ca, 0, &s.ffh, 0, B * T, &w->ffc2, err));
    FX_CHECK(fx_gate_add(enc, &s.ca, B, T, D, &s.mod_c, 6, 5, err));
done:
    ds_arena_rewind(&m->act, mk);
    if (st != DS_OK) ds_err_prefix(err, "flux double block %d", i);
    return st;
}

static ds_status fx_single_run(ds_flux *m, int j, int64_t B, int64_t L, ds_tensor *cat, const ds_tensor *temb,
                               const ds_flux_rope *rope, ds_err *err) {
    const ds_flux_config *c = &m->cfg;
    const fx_single *w = &m->sgl[j];
    const int64_t D = c->hidden, H = c->num_heads, d = c->head_dim;
    const size_t mk = ds_arena_mark(&m->act);
    fx_single_buf s;
    ds_status st = fx_single_alloc(m, &m->act, B, L, &s, err);
    if (st != DS_OK) goto done;
    /* AdaLayerNormZeroSingle chunks: 0 shift, 1 scale, 2 gate */
    FX_CHECK(fx_adaln(&s.mod, &s.st, temb, B, D, &w->norm, err));      // [B, 3D]
    FX_CHECK(fx_norm_mod(&s.ns, cat, B, L, D, &s.mod, 3, 0, 1, err));   // [B, L, D]
    FX_CHECK(fx_lin_gelu_rows(&s.mlp, &s.ns, B * L, &w->proj_mlp, err)); // [B, L, 4D]
    FX_CHECK(fx_qkv_rows(&s.q, &s.k, &s.v, 0, &s.ns, 0, B * L, &w->to_q, &w->to_k, &w->to_v, err)); // [B, L, H, d]
    FX_CHECK(fx_qk_norm_rope(&s.q, 0, B, L, H, d, &w->norm_q, rope, 0, err));
    FX_CHECK(fx_qk_norm_rope(&s.k, 0, B, L, H, d, &w->norm_k, rope, 0, err));
    FX_CHECK(ds_op_attention(&s.o, &s.q, &s.k, &s.v, NULL, 0.0f, s.attn, s.attn_bytes, err));
    /* proj_out(cat(attn, mlp)) = attn·Waᵀ + b + mlp·Wmᵀ */
    FX_CHECK(fx_lin_rows(&s.pa, 0, &s.o, 0, B * L, &w->proj_out_attn, err));
    ds_tensor pm = fx_v2(&s.pm, 0, B * L, D), mlp = fx_v2(&s.mlp, 0, B * L, c->mlp_hidden);
    ds_tensor pa = fx_v2(&s.pa, 0, B * L, D);
    FX_CHECK(ds_op_linear(&pm, &mlp, &w->proj_out_mlp, NULL, err));
    FX_CHECK(ds_op_add(&pa, &pa, &pm, err));
    FX_CHECK(fx_gate_add(cat, &s.pa, B, L, D, &s.mod, 3, 2, err));
done:
    ds_arena_rewind(&m->act, mk);
    if (st != DS_OK) ds_err_prefix(err, "flux single block %d", j);
    return st;
}

static ds_status fx_final_run(ds_flux *m, int64_t B, int64_t T, int64_t N, const ds_tensor *cat,
                              const ds_tensor *temb, ds_tensor *out, ds_err *err) {
    const int64_t D = m->cfg.hidden, L = T + N;
    const size_t mk = ds_arena_mark(&m->act);
    fx_final_buf s;
    ds_status st = fx_final_alloc(m, &m->act, B, N, &s, err);
    if (st != DS_OK) goto done;
    /* AdaLayerNormContinuous chunks: 0 SCALE, 1 SHIFT */
    FX_CHECK(fx_adaln(&s.mod, &s.st, temb, B, D, &m->norm_out, err)); // [B, 2D]
    for (int64_t b = 0; b < B; b++) { /* LN + modulate of the image rows of cat[b]: a contiguous [N, D] block */
        ds_tensor o = fx_v3(&s.xn, b * N * D, 1, N, D), in = fx_v3(cat, b * L * D + T * D, 1, N, D);
        const ds_tensor mod_b = fx_v2(&s.mod, b * 2 * D, 1, 2 * D);
        const ds_tensor scale = fx_chunk(&mod_b, 1, 2, 0, D), shift = fx_chunk(&mod_b, 1, 2, 1, D);
        FX_CHECK(ds_op_layernorm_modulate(&o, &in, &scale, &shift, 1e-6f, err));
    }
    FX_CHECK(fx_lin_rows(out, 0, &s.xn, 0, B * N, &m->proj_out, err)); // [B, N, out_channels]
done:
    ds_arena_rewind(&m->act, mk);
    if (st != DS_OK) ds_err_prefix(err, "flux final");
    return st;
}

/* cat[b] = [enc[b]; hid[b]]: device-to-device copies (a memmove on the CPU). */
static ds_status fx_join_run(int64_t B, int64_t T, int64_t N, int64_t D, const ds_tensor *enc, const ds_tensor *hid,
                             ds_tensor *cat, ds_err *err) {
    for (int64_t b = 0; b < B; b++) {
        ds_tensor ct = fx_v2(cat, b * (T + N) * D, T, D), et = fx_v2(enc, b * T * D, T, D);
        ds_tensor ch = fx_v2(cat, b * (T + N) * D + T * D, N, D), ht = fx_v2(hid, b * N * D, N, D);
        DS_TRY(ds_op_convert(&ct, &et, err));
        DS_TRY(ds_op_convert(&ch, &ht, err));
    }
    return DS_OK;
}

/* ---- validation ---------------------------------------------------------------------------------- */

/* t must be a contiguous tensor on `device` of element type `dtype` and exactly `shape`. */
static ds_status fx_expect_on(const ds_tensor *t, int ndim, const int64_t *shape, ds_device device, ds_dtype dtype,
                              const char *what, ds_err *err) {
    if (!t || !t->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: %s is missing", what);
    ds_status s = ds_tensor_check_placed(t, ndim, device, dtype, what, err);
    if (s != DS_OK) {
        ds_err_prefix(err, "flux");
        return s;
    }
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) {
            char got[96], want[96];
            ds_tensor w = *t;
            memcpy(w.shape, shape, (size_t)ndim * sizeof *shape);
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: %s has shape %s, expected %s", what,
                           ds_tensor_shape_str(t, got, sizeof got), ds_tensor_shape_str(&w, want, sizeof want));
        }
    return DS_OK;
}

/* ... in the model's dtype on its device (activations). */
static ds_status fx_expect(const ds_flux *m, const ds_tensor *t, int ndim, const int64_t *shape, const char *what,
                           ds_err *err) {
    return fx_expect_on(t, ndim, shape, m->pl.device, m->pl.dtype, what, err);
}

/* ... a host f32 tensor (position ids, the pipeline helpers). */
static ds_status fx_expect_host(const ds_tensor *t, int ndim, const int64_t *shape, const char *what, ds_err *err) {
    return fx_expect_on(t, ndim, shape, ds_device_cpu(), DS_F32, what, err);
}

/* B, T, N within what load planned. */
static ds_status fx_limits(const ds_flux *m, int64_t B, int64_t T, int64_t N, ds_err *err) {
    if (B < 1 || B > m->max_batch)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: batch %lld is outside [1, %d] (max_batch given to ds_flux_load)",
                       (long long)B, m->max_batch);
    if (N < 1 || N > m->max_img)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: %lld image tokens is outside [1, %d] (max_img_tokens given to "
                       "ds_flux_load)", (long long)N, m->max_img);
    if (T < 1 || T > m->max_txt)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: %lld text tokens is outside [1, %d] (max_txt_tokens given to "
                       "ds_flux_load)", (long long)T, m->max_txt);
    return DS_OK;
}

/* temb [B, D] in the model's dtype; the RoPE tables [L, d] f32 on the model's device. */
static ds_status fx_check_temb_rope(const ds_flux *m, int64_t B, int64_t L, const ds_tensor *temb,
                                    const ds_flux_rope *rope, ds_err *err) {
    DS_TRY(fx_expect(m, temb, 2, (const int64_t[]){B, m->cfg.hidden}, "temb", err));
    if (!rope) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: rope is NULL");
    const int64_t tab[2] = {L, m->cfg.head_dim};
    DS_TRY(fx_expect_on(&rope->cos, 2, tab, m->pl.device, DS_F32, "rope cos", err));
    return fx_expect_on(&rope->sin, 2, tab, m->pl.device, DS_F32, "rope sin", err);
}

/* The inputs of ds_flux_forward / ds_flux_embed; B, T, N out. */
static ds_status fx_check_inputs(const ds_flux *m, const ds_tensor *hidden, const ds_tensor *encoder,
                                 const ds_tensor *pooled, const float *timestep, const float *guidance,
                                 const ds_tensor *img_ids, const ds_tensor *txt_ids, int64_t *pB, int64_t *pT,
                                 int64_t *pN, ds_err *err) {
    if (!m) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: model is NULL");
    const ds_flux_config *c = &m->cfg;
    if (!hidden || !hidden->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: hidden is missing");
    if (!encoder || !encoder->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: encoder is missing");
    if (hidden->ndim != 3 || encoder->ndim != 3)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: hidden and encoder must be 3-D ([B, N, %lld] and [B, T, %lld]), "
                       "got %d-D and %d-D", (long long)c->in_channels, (long long)c->joint_dim, hidden->ndim,
                       encoder->ndim);
    const int64_t B = hidden->shape[0], N = hidden->shape[1], T = encoder->shape[1];
    DS_TRY(fx_limits(m, B, T, N, err));
    DS_TRY(fx_expect(m, hidden, 3, (const int64_t[]){B, N, c->in_channels}, "hidden", err));
    DS_TRY(fx_expect(m, encoder, 3, (const int64_t[]){B, T, c->joint_dim}, "encoder", err));
    DS_TRY(fx_expect(m, pooled, 2, (const int64_t[]){B, c->pooled_dim}, "pooled", err));
    DS_TRY(fx_expect_host(img_ids, 2, (const int64_t[]){N, c->n_axes}, "img_ids", err));
    DS_TRY(fx_expect_host(txt_ids, 2, (const int64_t[]){T, c->n_axes}, "txt_ids", err));
    if (!timestep) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: timestep is NULL");
    if (c->guidance_embeds && !guidance)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: guidance is NULL but the model embeds guidance "
                       "(guidance_embeds true, FLUX.1-dev style): pass the guidance scale per sample");
    if (!c->guidance_embeds && guidance)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: guidance given but the model has no guidance embedder "
                       "(guidance_embeds false, FLUX.1-schnell style): pass NULL");
    for (int64_t b = 0; b < B; b++) {
        if (!isfinite(timestep[b]))
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: timestep[%lld] = %g is not finite", (long long)b,
                           (double)timestep[b]);
        if (guidance && !isfinite(guidance[b]))
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: guidance[%lld] = %g is not finite", (long long)b,
                           (double)guidance[b]);
    }
    *pB = B, *pT = T, *pN = N;
    return DS_OK;
}

/* ---- public pieces ------------------------------------------------------------------------------------ */

ds_status ds_flux_embed(ds_flux *m, const ds_tensor *hidden, const ds_tensor *encoder, const ds_tensor *pooled,
                        const float *timestep, const float *guidance, const ds_tensor *img_ids,
                        const ds_tensor *txt_ids, ds_tensor *hidden_out, ds_tensor *encoder_out, ds_tensor *temb,
                        ds_flux_rope *rope, ds_err *err) {
    int64_t B, T, N;
    DS_TRY(fx_check_inputs(m, hidden, encoder, pooled, timestep, guidance, img_ids, txt_ids, &B, &T, &N, err));
    const int64_t D = m->cfg.hidden;
    DS_TRY(fx_expect(m, hidden_out, 3, (const int64_t[]){B, N, D}, "hidden_out", err));
    DS_TRY(fx_expect(m, encoder_out, 3, (const int64_t[]){B, T, D}, "encoder_out", err));
    DS_TRY(fx_check_temb_rope(m, B, T + N, temb, rope, err));
    return fx_embed_run(m, B, T, N, hidden, encoder, pooled, timestep, guidance, img_ids, txt_ids, hidden_out,
                        encoder_out, temb, rope, err);
}

ds_status ds_flux_double_block_forward(ds_flux *m, int i, ds_tensor *hidden, ds_tensor *encoder,
                                       const ds_tensor *temb, const ds_flux_rope *rope, ds_err *err) {
    if (!m) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: model is NULL");
    if (i < 0 || i >= m->cfg.num_layers)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: double block %d out of range [0, %lld)", i,
                       (long long)m->cfg.num_layers);
    if (!hidden || !encoder || hidden->ndim != 3 || encoder->ndim != 3)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: double block %d: hidden [B, N, D] and encoder [B, T, D] must "
                       "be 3-D tensors", i);
    const int64_t B = hidden->shape[0], N = hidden->shape[1], T = encoder->shape[1], D = m->cfg.hidden;
    DS_TRY(fx_limits(m, B, T, N, err));
    DS_TRY(fx_expect(m, hidden, 3, (const int64_t[]){B, N, D}, "hidden", err));
    DS_TRY(fx_expect(m, encoder, 3, (const int64_t[]){B, T, D}, "encoder", err));
    DS_TRY(fx_check_temb_rope(m, B, T + N, temb, rope, err));
    return fx_double_run(m, i, B, T, N, hidden, encoder, temb, rope, err);
}

ds_status ds_flux_join_streams(const ds_tensor *encoder, const ds_tensor *hidden, ds_tensor *cat, ds_err *err) {
    if (!encoder || !hidden || encoder->ndim != 3 || hidden->ndim != 3)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux join: encoder [B, T, D] and hidden [B, N, D] must be 3-D");
    const int64_t B = encoder->shape[0], T = encoder->shape[1], N = hidden->shape[1], D = encoder->shape[2];
    /* all three on encoder's device, in its dtype */
    DS_TRY(fx_expect_on(encoder, 3, (const int64_t[]){B, T, D}, encoder->device, encoder->dtype, "encoder", err));
    DS_TRY(fx_expect_on(hidden, 3, (const int64_t[]){B, N, D}, encoder->device, encoder->dtype, "hidden", err));
    DS_TRY(fx_expect_on(cat, 3, (const int64_t[]){B, T + N, D}, encoder->device, encoder->dtype, "cat", err));
    return fx_join_run(B, T, N, D, encoder, hidden, cat, err);
}

ds_status ds_flux_single_block_forward(ds_flux *m, int j, ds_tensor *hidden_cat, const ds_tensor *temb,
                                       const ds_flux_rope *rope, ds_err *err) {
    if (!m) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: model is NULL");
    if (j < 0 || j >= m->cfg.num_single_layers)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: single block %d out of range [0, %lld)", j,
                       (long long)m->cfg.num_single_layers);
    if (!hidden_cat || hidden_cat->ndim != 3)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: single block %d: hidden_cat [B, T+N, D] must be a 3-D tensor", j);
    const int64_t B = hidden_cat->shape[0], L = hidden_cat->shape[1];
    if (B < 1 || B > m->max_batch)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: batch %lld is outside [1, %d] (max_batch given to ds_flux_load)",
                       (long long)B, m->max_batch);
    if (L < 2 || L > (int64_t)m->max_txt + m->max_img)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: %lld joint tokens is outside [2, %d] (max_txt_tokens + "
                       "max_img_tokens given to ds_flux_load)", (long long)L, m->max_txt + m->max_img);
    DS_TRY(fx_expect(m, hidden_cat, 3, (const int64_t[]){B, L, m->cfg.hidden}, "hidden_cat", err));
    DS_TRY(fx_check_temb_rope(m, B, L, temb, rope, err));
    return fx_single_run(m, j, B, L, hidden_cat, temb, rope, err);
}

ds_status ds_flux_final(ds_flux *m, const ds_tensor *hidden_cat, const ds_tensor *temb, ds_tensor *out, ds_err *err) {
    if (!m) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: model is NULL");
    if (!hidden_cat || !out || hidden_cat->ndim != 3 || out->ndim != 3)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux final: hidden_cat [B, T+N, D] and out [B, N, %lld] must be 3-D",
                       (long long)m->cfg.out_channels);
    const int64_t B = hidden_cat->shape[0], L = hidden_cat->shape[1], N = out->shape[1];
    DS_TRY(fx_limits(m, B, L - N, N, err));
    DS_TRY(fx_expect(m, hidden_cat, 3, (const int64_t[]){B, L, m->cfg.hidden}, "hidden_cat", err));
    DS_TRY(fx_expect(m, temb, 2, (const int64_t[]){B, m->cfg.hidden}, "temb", err));
    DS_TRY(fx_expect(m, out, 3, (const int64_t[]){B, N, m->cfg.out_channels}, "out", err));
    return fx_final_run(m, B, L - N, N, hidden_cat, temb, out, err);
}

/* ds_flux_forward's blocks (double stream, join, single stream) as a graph body. */
typedef struct fx_loop {
    ds_flux *m;
    int64_t B, T, N;
    fx_forward_buf *f;
} fx_loop;

static ds_status fx_blocks_body(void *arg, ds_err *err) {
    fx_loop *l = arg;
    ds_flux *m = l->m;
    fx_forward_buf *f = l->f;
    for (int i = 0; i < (int)m->cfg.num_layers; i++)
        DS_TRY(fx_double_run(m, i, l->B, l->T, l->N, &f->hidden, &f->encoder, &f->temb, &f->rope, err));
    DS_TRY(fx_join_run(l->B, l->T, l->N, m->cfg.hidden, &f->encoder, &f->hidden, &f->cat, err));
    for (int j = 0; j < (int)m->cfg.num_single_layers; j++)
        DS_TRY(fx_single_run(m, j, l->B, l->T + l->N, &f->cat, &f->temb, &f->rope, err));
    return DS_OK;
}

ds_status ds_flux_forward(ds_flux *m, const ds_tensor *hidden, const ds_tensor *encoder, const ds_tensor *pooled,
                          const float *timestep, const float *guidance, const ds_tensor *img_ids,
                          const ds_tensor *txt_ids, ds_tensor *out, ds_err *err) {
    int64_t B, T, N;
    DS_TRY(fx_check_inputs(m, hidden, encoder, pooled, timestep, guidance, img_ids, txt_ids, &B, &T, &N, err));
    DS_TRY(fx_expect(m, out, 3, (const int64_t[]){B, N, m->cfg.out_channels}, "out", err));
    if (out->data == hidden->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: out must not alias hidden");
    const size_t mk = ds_arena_mark(&m->act);
    fx_forward_buf f;
    ds_status st = fx_forward_alloc(m, &m->act, B, T, N, &f, err);
    if (st != DS_OK) goto done;
    FX_CHECK(fx_embed_run(m, B, T, N, hidden, encoder, pooled, timestep, guidance, img_ids, txt_ids, &f.hidden,
                          &f.encoder, &f.temb, &f.rope, err));
    {
        /* the blocks touch only f's buffers and the arena above them (fixed addresses for B, T, N): one CUDA
         * graph per shape replays them (graph.h) */
        fx_loop loop = {m, B, T, N, &f};
        ds_graph_key key = {0};
        ds_graph_key_add_ptr(&key, m);
        const ds_tensor *keyed[] = {&f.hidden, &f.encoder, &f.temb, &f.rope.cos, &f.rope.sin, &f.cat};
        for (size_t i = 0; i < sizeof keyed / sizeof keyed[0]; i++) ds_graph_key_add_tensor(&key, keyed[i]);
        FX_CHECK(ds_graph_run(m->graphs, m->pl.device, &key, fx_blocks_body, &loop, err));
    }
    FX_CHECK(fx_final_run(m, B, T, N, &f.cat, &f.temb, out, err));
done:
    m->rope_dst_cos = m->rope_dst_sin = NULL; /* its tables were arena scratch: never skip a write into them */
    ds_arena_rewind(&m->act, mk);
    return st;
}

/* ---- pipeline helpers ------------------------------------------------------------------------------- */

ds_status ds_flux_pack_latents(const ds_tensor *latents, ds_tensor *packed, ds_err *err) {
    if (!latents || latents->ndim != 4)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux pack: latents must be a 4-D [B, C, H, W] tensor");
    const int64_t B = latents->shape[0], C = latents->shape[1], H = latents->shape[2], W = latents->shape[3];
    if (H % 2 != 0 || W % 2 != 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux pack: latent %lld x %lld is not even in both dims", (long long)H,
                       (long long)W);
    DS_TRY(fx_expect_host(latents, 4, (const int64_t[]){B, C, H, W}, "latents", err));
    const int64_t h2 = H / 2, w2 = W / 2;
    DS_TRY(fx_expect_host(packed, 3, (const int64_t[]){B, h2 * w2, 4 * C}, "packed", err));
    const float *x = latents->data;
    float *y = packed->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < h2; i++)
            for (int64_t j = 0; j < w2; j++) {
                float *row = y + ((b * h2 + i) * w2 + j) * 4 * C; // [4C]
                for (int64_t c = 0; c < C; c++)
                    for (int u = 0; u < 2; u++)
                        for (int v = 0; v < 2; v++)
                            row[c * 4 + u * 2 + v] = x[((b * C + c) * H + 2 * i + u) * W + 2 * j + v];
            }
    return DS_OK;
}

ds_status ds_flux_unpack_latents(const ds_tensor *packed, ds_tensor *latents, ds_err *err) {
    if (!latents || latents->ndim != 4)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux unpack: latents must be a 4-D [B, C, H, W] tensor");
    const int64_t B = latents->shape[0], C = latents->shape[1], H = latents->shape[2], W = latents->shape[3];
    if (H % 2 != 0 || W % 2 != 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux unpack: latent %lld x %lld is not even in both dims",
                       (long long)H, (long long)W);
    DS_TRY(fx_expect_host(latents, 4, (const int64_t[]){B, C, H, W}, "latents", err));
    const int64_t h2 = H / 2, w2 = W / 2;
    DS_TRY(fx_expect_host(packed, 3, (const int64_t[]){B, h2 * w2, 4 * C}, "packed", err));
    const float *y = packed->data;
    float *x = latents->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < h2; i++)
            for (int64_t j = 0; j < w2; j++) {
                const float *row = y + ((b * h2 + i) * w2 + j) * 4 * C; // [4C]
                for (int64_t c = 0; c < C; c++)
                    for (int u = 0; u < 2; u++)
                        for (int v = 0; v < 2; v++)
                            x[((b * C + c) * H + 2 * i + u) * W + 2 * j + v] = row[c * 4 + u * 2 + v];
            }
    return DS_OK;
}

ds_status ds_flux_image_ids(int64_t h2, int64_t w2, ds_tensor *out, ds_err *err) {
    if (h2 < 1 || w2 < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux image ids: grid %lld x %lld must be at least 1 x 1",
                       (long long)h2, (long long)w2);
    DS_TRY(fx_expect_host(out, 2, (const int64_t[]){h2 * w2, 3}, "image ids", err));
    float *o = out->data;
    for (int64_t r = 0; r < h2; r++)
        for (int64_t c = 0; c < w2; c++) {
            float *row = o + (r * w2 + c) * 3;
            row[0] = 0.0f, row[1] = (float)r, row[2] = (float)c;
        }
    return DS_OK;
}
