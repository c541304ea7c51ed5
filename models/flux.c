/* flux.c - FLUX.1 transformer (diffusers FluxTransformer2DModel) on the CPU: config parsing, weight loading
 * into a f32 weights arena, activation-arena planning, the forward and its pieces, and the FluxPipeline
 * pack / unpack / image-id helpers. See flux.h for the math and the contracts.
 *
 * Layout decisions:
 *  - The joint attention of a double-stream block works on [B, T+N, H, d] buffers whose rows are text first,
 *    then image (diffusers' torch.cat([encoder, hidden], dim=1)). Each stream's projections are written
 *    straight into its rows with one sgemm per batch element (a [T, D] or [N, D] block of a batch element is
 *    contiguous), so no concatenation copy is needed.
 *  - The single-stream proj_out weight [D, D + 4D] is split at load into its attention columns [D, D] and its
 *    MLP columns [D, 4D]: proj_out(cat(attn, mlp)) = attn·Waᵀ + b + mlp·Wmᵀ without materialising the
 *    [B, L, 5D] concatenation (the sum differs from one sgemm only by summation order).
 *  - Every piece takes its scratch from m->act and rewinds it before returning; the arena is sized at load
 *    by running the same allocation helpers on a plan arena for the largest shapes. Buffers dead after the
 *    attention (q, k) are reused for the output projections. */
#include "flux.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

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
    ds_arena       wts; /* f32 weights */
    ds_arena       act; /* activations and attention scratch */
    size_t         attn_planned; /* attention scratch bytes planned for the largest sequence */
    fx_linear      x_emb, ctx_emb;
    fx_linear      t_lin1, t_lin2, g_lin1, g_lin2, p_lin1, p_lin2;
    fx_linear      norm_out, proj_out;
    fx_double     *dbl;
    fx_single     *sgl;
};

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
 * recorded) and on the real weights arena (tensors read and converted to f32, shapes checked). */
typedef struct fx_loader {
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

/* Parameter `name` of shape (s0[, s1]) into dst (a fresh tensor of the loader's arena). */
static ds_status fx_param(fx_loader *L, ds_tensor *dst, const char *name, int ndim, int64_t s0, int64_t s1) {
    const int64_t shape[2] = {s0, s1};
    DS_TRY(ds_arena_tensor(L->arena, DS_F32, ndim, shape, dst, L->err));
    if (!L->read) return fx_check_present(L, name);
    ds_status s = ds_weights_read(L->w, name, DS_F32, dst->data, (size_t)ds_tensor_nbytes(dst), ndim, shape, L->err);
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

/* single_transformer_blocks.j.proj_out.weight [D, 5D] split into its attention columns [D, D] and its MLP
 * columns [D, 4D]; the bias [D] goes with the attention half. */
static ds_status fx_split_proj_out(fx_loader *L, fx_single *s, int j, int64_t D, int64_t M) {
    char name[128];
    snprintf(name, sizeof name, "single_transformer_blocks.%d.proj_out.weight", j);
    const int64_t full[2] = {D, D + M};
    DS_TRY(ds_arena_tensor(L->arena, DS_F32, 2, (const int64_t[]){D, D}, &s->proj_out_attn.w, L->err));
    DS_TRY(ds_arena_tensor(L->arena, DS_F32, 2, (const int64_t[]){D, M}, &s->proj_out_mlp, L->err));
    if (!L->read) {
        DS_TRY(fx_check_present(L, name));
    } else {
        /* staging copy of the whole matrix: load time only */
        float *tmp = malloc((size_t)(D * (D + M)) * sizeof(float));
        if (!tmp) return DS_FAIL(L->err, DS_ERR_OOM, "flux: out of memory staging '%s'", name);
        ds_status st = ds_weights_read(L->w, name, DS_F32, tmp, (size_t)(D * (D + M)) * sizeof(float), 2, full, L->err);
        if (st != DS_OK) {
            free(tmp);
            ds_err_prefix(L->err, "flux");
            return st;
        }
        float *wa = s->proj_out_attn.w.data, *wm = s->proj_out_mlp.data;
        for (int64_t r = 0; r < D; r++) {
            memcpy(wa + r * D, tmp + r * (D + M), (size_t)D * sizeof(float));
            memcpy(wm + r * M, tmp + r * (D + M) + D, (size_t)M * sizeof(float));
        }
        free(tmp);
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

static ds_status fx_take(ds_arena *a, int64_t n_floats, float **out, ds_err *err) {
    void *p = NULL;
    DS_TRY(ds_arena_alloc(a, (size_t)n_floats * sizeof(float), 0, &p, err));
    *out = p;
    return DS_OK;
}

/* Attention scratch for a sequence of L tokens, capped at what load planned (the op uses fewer threads
 * when given fewer per-thread slices, so a thread count raised after load still works). */
static size_t fx_attn_bytes(const ds_flux *m, int64_t L) {
    size_t b = ds_op_attention_scratch_bytes(L, L, m->cfg.head_dim);
    return b < m->attn_planned ? b : m->attn_planned;
}

/* ds_flux_embed */
typedef struct fx_embed_buf {
    float *tt;   /* [B] timestep (or guidance) x 1000 */
    float *sinu; /* [B, 256] */
    float *h1;   /* [B, D] */
    float *tmp;  /* [B, D] */
    float *ids;  /* [T+N, n_axes] */
} fx_embed_buf;

static ds_status fx_embed_alloc(const ds_flux *m, ds_arena *a, int64_t B, int64_t T, int64_t N, fx_embed_buf *s,
                                ds_err *err) {
    const int64_t D = m->cfg.hidden;
    DS_TRY(fx_take(a, B, &s->tt, err));
    DS_TRY(fx_take(a, B * m->cfg.freq_dim, &s->sinu, err));
    DS_TRY(fx_take(a, B * D, &s->h1, err));
    DS_TRY(fx_take(a, B * D, &s->tmp, err));
    return fx_take(a, (T + N) * m->cfg.n_axes, &s->ids, err);
}

/* ds_flux_double_block_forward */
typedef struct fx_double_buf {
    float *st;           /* [B, D] silu(temb) */
    float *mod_x, *mod_c; /* [B, 6D] adaLN chunks of each stream */
    float *nx;           /* [B, N, D] normed image stream */
    float *nc;           /* [B, T, D] normed text stream */
    float *q, *k, *v, *o; /* [B, T+N, H, d] joint sequence, text rows first */
    float *xa;           /* [B, N, D] image attention / MLP output (reuses q after the attention) */
    float *ca;           /* [B, T, D] text attention / MLP output (reuses q + B*N*D) */
    float *ffh;          /* [B, max(N, T), 4D] MLP hidden */
    void  *attn;
    size_t attn_bytes;
} fx_double_buf;

static ds_status fx_double_alloc(const ds_flux *m, ds_arena *a, int64_t B, int64_t T, int64_t N, fx_double_buf *s,
                                 ds_err *err) {
    const int64_t D = m->cfg.hidden, L = T + N;
    DS_TRY(fx_take(a, B * D, &s->st, err));
    DS_TRY(fx_take(a, B * 6 * D, &s->mod_x, err));
    DS_TRY(fx_take(a, B * 6 * D, &s->mod_c, err));
    DS_TRY(fx_take(a, B * N * D, &s->nx, err));
    DS_TRY(fx_take(a, B * T * D, &s->nc, err));
    DS_TRY(fx_take(a, B * L * D, &s->q, err));
    DS_TRY(fx_take(a, B * L * D, &s->k, err));
    DS_TRY(fx_take(a, B * L * D, &s->v, err));
    DS_TRY(fx_take(a, B * L * D, &s->o, err));
    s->xa = s->q;
    s->ca = s->q + B * N * D;
    DS_TRY(fx_take(a, B * (N > T ? N : T) * m->cfg.mlp_hidden, &s->ffh, err));
    s->attn_bytes = fx_attn_bytes(m, L);
    return ds_arena_alloc(a, s->attn_bytes, 0, &s->attn, err);
}

/* ds_flux_single_block_forward */
typedef struct fx_single_buf {
    float *st;            /* [B, D] */
    float *mod;           /* [B, 3D] */
    float *ns;            /* [B, L, D] */
    float *q, *k, *v, *o; /* [B, L, H, d] */
    float *mlp;           /* [B, L, 4D] */
    float *pa, *pm;       /* [B, L, D] proj_out halves (reuse q and k after the attention) */
    void  *attn;
    size_t attn_bytes;
} fx_single_buf;

static ds_status fx_single_alloc(const ds_flux *m, ds_arena *a, int64_t B, int64_t L, fx_single_buf *s, ds_err *err) {
    const int64_t D = m->cfg.hidden;
    DS_TRY(fx_take(a, B * D, &s->st, err));
    DS_TRY(fx_take(a, B * 3 * D, &s->mod, err));
    DS_TRY(fx_take(a, B * L * D, &s->ns, err));
    DS_TRY(fx_take(a, B * L * D, &s->q, err));
    DS_TRY(fx_take(a, B * L * D, &s->k, err));
    DS_TRY(fx_take(a, B * L * D, &s->v, err));
    DS_TRY(fx_take(a, B * L * D, &s->o, err));
    DS_TRY(fx_take(a, B * L * m->cfg.mlp_hidden, &s->mlp, err));
    s->pa = s->q;
    s->pm = s->k;
    s->attn_bytes = fx_attn_bytes(m, L);
    return ds_arena_alloc(a, s->attn_bytes, 0, &s->attn, err);
}

/* ds_flux_final */
typedef struct fx_final_buf {
    float *st;  /* [B, D] */
    float *mod; /* [B, 2D] */
    float *xn;  /* [B, N, D] */
} fx_final_buf;

static ds_status fx_final_alloc(const ds_flux *m, ds_arena *a, int64_t B, int64_t N, fx_final_buf *s, ds_err *err) {
    const int64_t D = m->cfg.hidden;
    DS_TRY(fx_take(a, B * D, &s->st, err));
    DS_TRY(fx_take(a, B * 2 * D, &s->mod, err));
    return fx_take(a, B * N * D, &s->xn, err);
}

/* ds_flux_forward's own buffers (the pieces' inputs and outputs). */
typedef struct fx_forward_buf {
    float *hidden;   /* [B, N, D] */
    float *encoder;  /* [B, T, D] */
    float *temb;     /* [B, D] */
    float *cos, *sin; /* [T+N, d] */
    float *cat;      /* [B, T+N, D] */
} fx_forward_buf;

static ds_status fx_forward_alloc(const ds_flux *m, ds_arena *a, int64_t B, int64_t T, int64_t N, fx_forward_buf *s,
                                  ds_err *err) {
    const int64_t D = m->cfg.hidden, L = T + N;
    DS_TRY(fx_take(a, B * N * D, &s->hidden, err));
    DS_TRY(fx_take(a, B * T * D, &s->encoder, err));
    DS_TRY(fx_take(a, B * D, &s->temb, err));
    DS_TRY(fx_take(a, L * m->cfg.head_dim, &s->cos, err));
    DS_TRY(fx_take(a, L * m->cfg.head_dim, &s->sin, err));
    return fx_take(a, B * L * D, &s->cat, err);
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
    DS_TRY(fx_embed_alloc(m, &p, B, T, N, &e, err));
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
    if (!out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_flux_load: out is NULL");
    *out = NULL;
    if (!comp || !comp->config || !comp->weights)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_flux_load: component %s has no %s", comp && comp->name ? comp->name : "(null)",
                       !comp ? "data" : !comp->config ? "config.json" : "weights");
    if (max_batch < 1 || max_img_tokens < 1 || max_txt_tokens < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_flux_load: max_batch %d, max_img_tokens %d, max_txt_tokens %d must "
                       "all be >= 1", max_batch, max_img_tokens, max_txt_tokens);
    ds_flux *m = calloc(1, sizeof *m);
    if (!m) return DS_FAIL(err, DS_ERR_OOM, "ds_flux_load: out of memory");
    fx_loader L = {0};
    ds_status st = ds_flux_config_parse(comp->config, &m->cfg, err);
    if (st != DS_OK) goto fail;
    m->max_batch = max_batch, m->max_img = max_img_tokens, m->max_txt = max_txt_tokens;
    const ds_flux_config *c = &m->cfg;
    m->dbl = calloc((size_t)(c->num_layers ? c->num_layers : 1), sizeof *m->dbl);
    m->sgl = calloc((size_t)(c->num_single_layers ? c->num_single_layers : 1), sizeof *m->sgl);
    if (!m->dbl || !m->sgl) {
        st = DS_FAIL(err, DS_ERR_OOM, "ds_flux_load: out of memory");
        goto fail;
    }

    /* pass 1: sizes, presence, dtypes, no unexpected tensors */
    ds_arena plan;
    ds_arena_init_plan(&plan, DS_ARENA_WEIGHTS, "flux-weights-plan");
    L.arena = &plan, L.w = comp->weights, L.read = false, L.err = err;
    if ((st = fx_visit(m, &L)) != DS_OK || (st = fx_check_unexpected(&L)) != DS_OK) goto fail;

    /* pass 2: read into the real arena */
    if ((st = ds_arena_init_host(&m->wts, plan.high_water, DS_ARENA_WEIGHTS, "flux-weights", err)) != DS_OK) goto fail;
    L.arena = &m->wts, L.read = true;
    if ((st = fx_visit(m, &L)) != DS_OK) goto fail;

    /* activations */
    m->attn_planned = ds_op_attention_scratch_bytes((int64_t)max_txt_tokens + max_img_tokens,
                                                    (int64_t)max_txt_tokens + max_img_tokens, c->head_dim);
    size_t act = 0;
    if ((st = fx_plan(m, &act, err)) != DS_OK) goto fail;
    if ((st = ds_arena_init_host(&m->act, act, DS_ARENA_ACTIVATIONS, "flux-activations", err)) != DS_OK) goto fail;
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
    ds_arena_free(&m->wts);
    ds_arena_free(&m->act);
    free(m->dbl);
    free(m->sgl);
    free(m);
}

const ds_flux_config *ds_flux_get_config(const ds_flux *m) { return m ? &m->cfg : NULL; }
int ds_flux_max_batch(const ds_flux *m) { return m ? m->max_batch : 0; }
int ds_flux_max_img_tokens(const ds_flux *m) { return m ? m->max_img : 0; }
int ds_flux_max_txt_tokens(const ds_flux *m) { return m ? m->max_txt : 0; }
size_t ds_flux_weight_bytes(const ds_flux *m) { return m ? m->wts.cap : 0; }
size_t ds_flux_activation_bytes(const ds_flux *m) { return m ? m->act.cap : 0; }
int ds_flux_double_block_count(const ds_flux *m) { return m ? (int)m->cfg.num_layers : 0; }
int ds_flux_single_block_count(const ds_flux *m) { return m ? (int)m->cfg.num_single_layers : 0; }

/* ---- small tensor helpers ------------------------------------------------------------------------ */

static ds_tensor fx_t2(const float *p, int64_t r, int64_t c) { return ds_tensor_f32((void *)p, 2, r, c); }
static ds_tensor fx_t3(const float *p, int64_t a, int64_t b, int64_t c) {
    return ds_tensor_f32((void *)p, 3, a, b, c);
}
static ds_tensor fx_t4(const float *p, int64_t a, int64_t b, int64_t c, int64_t d) {
    return ds_tensor_f32((void *)p, 4, a, b, c, d);
}

/* Chunk `idx` of an adaLN projection mod [B, k*D]: a [B, D] view with row stride k*D. */
static ds_tensor fx_chunk(const float *mod, int64_t B, int64_t k, int64_t idx, int64_t D) {
    ds_tensor t = fx_t2(mod + idx * D, B, D);
    t.stride[0] = k * D;
    return t;
}

/* out[rows, N] = x[rows, K]·Wᵀ (+ b) for a Linear lin (W [N, K]). */
static ds_status fx_lin_rows(float *out, const float *x, int64_t rows, const fx_linear *lin, ds_err *err) {
    ds_tensor o = fx_t2(out, rows, lin->w.shape[0]), in = fx_t2(x, rows, lin->w.shape[1]);
    return ds_op_linear(&o, &in, &lin->w, lin->b.data ? &lin->b : NULL, err);
}

/* RMSNorm (eps 1e-6, weight [d]) in place over rows of d (per-head query/key norm). */
static ds_status fx_rms_rows(float *x, int64_t rows, int64_t d, const ds_tensor *w, ds_err *err) {
    ds_tensor t = fx_t2(x, rows, d);
    return ds_op_rmsnorm(&t, &t, w, 1e-6f, err);
}

/* out[B, n, D] = LN(x; eps 1e-6, no affine) * (1 + mod[chunk sc]) + mod[chunk sh]   (mod [B, k*D]). */
static ds_status fx_norm_mod(float *out, const float *x, int64_t B, int64_t n, int64_t D, const float *mod, int64_t k,
                             int64_t sh, int64_t sc, ds_err *err) {
    ds_tensor o = fx_t3(out, B, n, D), in = fx_t3(x, B, n, D);
    DS_TRY(ds_op_layernorm(&o, &in, NULL, NULL, 1e-6f, err));
    const ds_tensor scale = fx_chunk(mod, B, k, sc, D), shift = fx_chunk(mod, B, k, sh, D);
    return ds_op_modulate(&o, &o, &scale, &shift, err);
}

/* x[B, n, D] += mod[chunk g] * y   (gated residual, in place). */
static ds_status fx_gate_add(float *x, const float *y, int64_t B, int64_t n, int64_t D, const float *mod, int64_t k,
                             int64_t g, ds_err *err) {
    ds_tensor xt = fx_t3(x, B, n, D), yt = fx_t3(y, B, n, D);
    const ds_tensor gate = fx_chunk(mod, B, k, g, D);
    return ds_op_gate_add(&xt, &xt, &yt, &gate, err);
}

/* mod[B, k*D] = lin(silu(temb)); st [B, D] receives silu(temb). */
static ds_status fx_adaln(float *mod, float *st, const float *temb, int64_t B, int64_t D, const fx_linear *lin,
                          ds_err *err) {
    ds_tensor s = fx_t2(st, B, D), t = fx_t2(temb, B, D);
    DS_TRY(ds_op_silu(&s, &t, err));
    return fx_lin_rows(mod, st, B, lin, err);
}

/* In place tanh-GELU over n floats. */
static ds_status fx_gelu(float *x, int64_t n, ds_err *err) {
    ds_tensor t = fx_t2(x, 1, n);
    return ds_op_gelu(&t, &t, DS_GELU_TANH, err);
}

/* ---- the pieces on raw buffers (inputs already validated) ------------------------------------------- */

/* Inside a piece: stop at the first failing op, then rewind the arena at `done`. */
#define FX_CHECK(expr)                         \
    do {                                       \
        if ((st = (expr)) != DS_OK) goto done; \
    } while (0)

/* sinusoid(v*1000) -> linear_1 -> silu -> linear_2 into out [B, D]. */
static ds_status fx_time_mlp(const ds_flux *m, const fx_embed_buf *s, const float *v, int64_t B,
                             const fx_linear *l1, const fx_linear *l2, float *out, ds_err *err) {
    for (int64_t b = 0; b < B; b++) s->tt[b] = v[b] * 1000.0f; /* diffusers: timestep.to(dtype) * 1000 */
    ds_tensor tt = ds_tensor_f32(s->tt, 1, B), sinu = fx_t2(s->sinu, B, m->cfg.freq_dim);
    DS_TRY(ds_op_timestep_embedding(&sinu, &tt, 1, 0.0f, 1.0f, 10000.0f, err));
    DS_TRY(fx_lin_rows(s->h1, s->sinu, B, l1, err));
    ds_tensor h1 = fx_t2(s->h1, B, m->cfg.hidden);
    DS_TRY(ds_op_silu(&h1, &h1, err));
    return fx_lin_rows(out, s->h1, B, l2, err);
}

static ds_status fx_embed_run(ds_flux *m, int64_t B, int64_t T, int64_t N, const float *hidden, const float *encoder,
                              const float *pooled, const float *timestep, const float *guidance, const float *img_ids,
                              const float *txt_ids, float *hidden_out, float *encoder_out, float *temb, float *cos,
                              float *sin, ds_err *err) {
    const ds_flux_config *c = &m->cfg;
    const int64_t D = c->hidden, L = T + N;
    const size_t mk = ds_arena_mark(&m->act);
    fx_embed_buf s;
    ds_status st = fx_embed_alloc(m, &m->act, B, T, N, &s, err);
    if (st != DS_OK) goto done;
    FX_CHECK(fx_lin_rows(hidden_out, hidden, B * N, &m->x_emb, err));     // [B, N, D]
    FX_CHECK(fx_lin_rows(encoder_out, encoder, B * T, &m->ctx_emb, err)); // [B, T, D]
    /* temb = (MLP_t(t) + MLP_g(g)) + MLP_txt(pooled), in diffusers' order */
    FX_CHECK(fx_time_mlp(m, &s, timestep, B, &m->t_lin1, &m->t_lin2, temb, err));
    ds_tensor te = fx_t2(temb, B, D), tmp = fx_t2(s.tmp, B, D);
    if (guidance) {
        FX_CHECK(fx_time_mlp(m, &s, guidance, B, &m->g_lin1, &m->g_lin2, s.tmp, err));
        FX_CHECK(ds_op_add(&te, &te, &tmp, err));
    }
    FX_CHECK(fx_lin_rows(s.h1, pooled, B, &m->p_lin1, err));
    ds_tensor h1 = fx_t2(s.h1, B, D);
    FX_CHECK(ds_op_silu(&h1, &h1, err));
    FX_CHECK(fx_lin_rows(s.tmp, s.h1, B, &m->p_lin2, err));
    FX_CHECK(ds_op_add(&te, &te, &tmp, err));
    /* rope over cat(txt_ids, img_ids), text first */
    const int64_t na = c->n_axes;
    memcpy(s.ids, txt_ids, (size_t)(T * na) * sizeof(float));
    memcpy(s.ids + T * na, img_ids, (size_t)(N * na) * sizeof(float));
    ds_tensor ids = fx_t2(s.ids, L, na), ct = fx_t2(cos, L, c->head_dim), stn = fx_t2(sin, L, c->head_dim);
    FX_CHECK(ds_op_rope_freqs(&ct, &stn, &ids, c->axes_dim, c->n_axes, c->rope_theta, err));
done:
    ds_arena_rewind(&m->act, mk);
    if (st != DS_OK) ds_err_prefix(err, "flux embed");
    return st;
}

static ds_status fx_double_run(ds_flux *m, int i, int64_t B, int64_t T, int64_t N, float *hid, float *enc,
                               const float *temb, const float *cos, const float *sin, ds_err *err) {
    const ds_flux_config *c = &m->cfg;
    const fx_double *w = &m->dbl[i];
    const int64_t D = c->hidden, H = c->num_heads, d = c->head_dim, L = T + N;
    const size_t mk = ds_arena_mark(&m->act);
    fx_double_buf s;
    ds_status st = fx_double_alloc(m, &m->act, B, T, N, &s, err);
    if (st != DS_OK) goto done;
    /* adaLN-Zero chunks: 0 shift_msa, 1 scale_msa, 2 gate_msa, 3 shift_mlp, 4 scale_mlp, 5 gate_mlp */
    FX_CHECK(fx_adaln(s.mod_x, s.st, temb, B, D, &w->norm1, err));     // [B, 6D]
    FX_CHECK(fx_adaln(s.mod_c, s.st, temb, B, D, &w->norm1_ctx, err)); // [B, 6D]
    FX_CHECK(fx_norm_mod(s.nx, hid, B, N, D, s.mod_x, 6, 0, 1, err));  // [B, N, D]
    FX_CHECK(fx_norm_mod(s.nc, enc, B, T, D, s.mod_c, 6, 0, 1, err));  // [B, T, D]
    /* joint q/k/v [B, T+N, H, d]: text rows from the add_* projections, then image rows */
    for (int64_t b = 0; b < B; b++) {
        const float *nc = s.nc + b * T * D, *nx = s.nx + b * N * D;
        float *q = s.q + b * L * D, *k = s.k + b * L * D, *v = s.v + b * L * D;
        FX_CHECK(fx_lin_rows(q, nc, T, &w->add_q, err));
        FX_CHECK(fx_lin_rows(k, nc, T, &w->add_k, err));
        FX_CHECK(fx_lin_rows(v, nc, T, &w->add_v, err));
        FX_CHECK(fx_lin_rows(q + T * D, nx, N, &w->to_q, err));
        FX_CHECK(fx_lin_rows(k + T * D, nx, N, &w->to_k, err));
        FX_CHECK(fx_lin_rows(v + T * D, nx, N, &w->to_v, err));
        FX_CHECK(fx_rms_rows(q, T * H, d, &w->norm_added_q, err));
        FX_CHECK(fx_rms_rows(k, T * H, d, &w->norm_added_k, err));
        FX_CHECK(fx_rms_rows(q + T * D, N * H, d, &w->norm_q, err));
        FX_CHECK(fx_rms_rows(k + T * D, N * H, d, &w->norm_k, err));
    }
    ds_tensor q = fx_t4(s.q, B, L, H, d), k = fx_t4(s.k, B, L, H, d), v = fx_t4(s.v, B, L, H, d);
    ds_tensor o = fx_t4(s.o, B, L, H, d), ct = fx_t2(cos, L, d), stn = fx_t2(sin, L, d);
    FX_CHECK(ds_op_rope(&q, &q, &ct, &stn, err));
    FX_CHECK(ds_op_rope(&k, &k, &ct, &stn, err));
    FX_CHECK(ds_op_attention(&o, &q, &k, &v, NULL, 0.0f, s.attn, s.attn_bytes, err));
    for (int64_t b = 0; b < B; b++) {
        const float *ob = s.o + b * L * D;
        FX_CHECK(fx_lin_rows(s.ca + b * T * D, ob, T, &w->to_add_out, err));
        FX_CHECK(fx_lin_rows(s.xa + b * N * D, ob + T * D, N, &w->to_out, err));
    }
    /* image stream */
    FX_CHECK(fx_gate_add(hid, s.xa, B, N, D, s.mod_x, 6, 2, err));
    FX_CHECK(fx_norm_mod(s.nx, hid, B, N, D, s.mod_x, 6, 3, 4, err));
    FX_CHECK(fx_lin_rows(s.ffh, s.nx, B * N, &w->ff0, err)); // [B, N, 4D]
    FX_CHECK(fx_gelu(s.ffh, B * N * c->mlp_hidden, err));
    FX_CHECK(fx_lin_rows(s.xa, s.ffh, B * N, &w->ff2, err));
    FX_CHECK(fx_gate_add(hid, s.xa, B, N, D, s.mod_x, 6, 5, err));
    /* text stream */
    FX_CHECK(fx_gate_add(enc, s.ca, B, T, D, s.mod_c, 6, 2, err));
    FX_CHECK(fx_norm_mod(s.nc, enc, B, T, D, s.mod_c, 6, 3, 4, err));
    FX_CHECK(fx_lin_rows(s.ffh, s.nc, B * T, &w->ffc0, err)); // [B, T, 4D]
    FX_CHECK(fx_gelu(s.ffh, B * T * c->mlp_hidden, err));
    FX_CHECK(fx_lin_rows(s.ca, s.ffh, B * T, &w->ffc2, err));
    FX_CHECK(fx_gate_add(enc, s.ca, B, T, D, s.mod_c, 6, 5, err));
done:
    ds_arena_rewind(&m->act, mk);
    if (st != DS_OK) ds_err_prefix(err, "flux double block %d", i);
    return st;
}

static ds_status fx_single_run(ds_flux *m, int j, int64_t B, int64_t L, float *cat, const float *temb,
                               const float *cos, const float *sin, ds_err *err) {
    const ds_flux_config *c = &m->cfg;
    const fx_single *w = &m->sgl[j];
    const int64_t D = c->hidden, H = c->num_heads, d = c->head_dim;
    const size_t mk = ds_arena_mark(&m->act);
    fx_single_buf s;
    ds_status st = fx_single_alloc(m, &m->act, B, L, &s, err);
    if (st != DS_OK) goto done;
    /* AdaLayerNormZeroSingle chunks: 0 shift, 1 scale, 2 gate */
    FX_CHECK(fx_adaln(s.mod, s.st, temb, B, D, &w->norm, err));   // [B, 3D]
    FX_CHECK(fx_norm_mod(s.ns, cat, B, L, D, s.mod, 3, 0, 1, err)); // [B, L, D]
    FX_CHECK(fx_lin_rows(s.mlp, s.ns, B * L, &w->proj_mlp, err));  // [B, L, 4D]
    FX_CHECK(fx_gelu(s.mlp, B * L * c->mlp_hidden, err));
    FX_CHECK(fx_lin_rows(s.q, s.ns, B * L, &w->to_q, err)); // [B, L, H, d]
    FX_CHECK(fx_lin_rows(s.k, s.ns, B * L, &w->to_k, err));
    FX_CHECK(fx_lin_rows(s.v, s.ns, B * L, &w->to_v, err));
    FX_CHECK(fx_rms_rows(s.q, B * L * H, d, &w->norm_q, err));
    FX_CHECK(fx_rms_rows(s.k, B * L * H, d, &w->norm_k, err));
    ds_tensor q = fx_t4(s.q, B, L, H, d), k = fx_t4(s.k, B, L, H, d), v = fx_t4(s.v, B, L, H, d);
    ds_tensor o = fx_t4(s.o, B, L, H, d), ct = fx_t2(cos, L, d), stn = fx_t2(sin, L, d);
    FX_CHECK(ds_op_rope(&q, &q, &ct, &stn, err));
    FX_CHECK(ds_op_rope(&k, &k, &ct, &stn, err));
    FX_CHECK(ds_op_attention(&o, &q, &k, &v, NULL, 0.0f, s.attn, s.attn_bytes, err));
    /* proj_out(cat(attn, mlp)) = attn·Waᵀ + b + mlp·Wmᵀ */
    FX_CHECK(fx_lin_rows(s.pa, s.o, B * L, &w->proj_out_attn, err));
    ds_tensor pm = fx_t2(s.pm, B * L, D), mlp = fx_t2(s.mlp, B * L, c->mlp_hidden), pa = fx_t2(s.pa, B * L, D);
    FX_CHECK(ds_op_linear(&pm, &mlp, &w->proj_out_mlp, NULL, err));
    FX_CHECK(ds_op_add(&pa, &pa, &pm, err));
    FX_CHECK(fx_gate_add(cat, s.pa, B, L, D, s.mod, 3, 2, err));
done:
    ds_arena_rewind(&m->act, mk);
    if (st != DS_OK) ds_err_prefix(err, "flux single block %d", j);
    return st;
}

static ds_status fx_final_run(ds_flux *m, int64_t B, int64_t T, int64_t N, const float *cat, const float *temb,
                              float *out, ds_err *err) {
    const int64_t D = m->cfg.hidden, L = T + N;
    const size_t mk = ds_arena_mark(&m->act);
    fx_final_buf s;
    ds_status st = fx_final_alloc(m, &m->act, B, N, &s, err);
    if (st != DS_OK) goto done;
    /* AdaLayerNormContinuous chunks: 0 SCALE, 1 SHIFT */
    FX_CHECK(fx_adaln(s.mod, s.st, temb, B, D, &m->norm_out, err)); // [B, 2D]
    for (int64_t b = 0; b < B; b++) { /* LN of the image rows of cat[b]: a contiguous [N, D] block */
        ds_tensor o = fx_t2(s.xn + b * N * D, N, D), in = fx_t2(cat + b * L * D + T * D, N, D);
        FX_CHECK(ds_op_layernorm(&o, &in, NULL, NULL, 1e-6f, err));
    }
    ds_tensor xn = fx_t3(s.xn, B, N, D);
    const ds_tensor scale = fx_chunk(s.mod, B, 2, 0, D), shift = fx_chunk(s.mod, B, 2, 1, D);
    FX_CHECK(ds_op_modulate(&xn, &xn, &scale, &shift, err));
    FX_CHECK(fx_lin_rows(out, s.xn, B * N, &m->proj_out, err)); // [B, N, out_channels]
done:
    ds_arena_rewind(&m->act, mk);
    if (st != DS_OK) ds_err_prefix(err, "flux final");
    return st;
}

static void fx_join_run(int64_t B, int64_t T, int64_t N, int64_t D, const float *enc, const float *hid, float *cat) {
    for (int64_t b = 0; b < B; b++) {
        memcpy(cat + b * (T + N) * D, enc + b * T * D, (size_t)(T * D) * sizeof(float));
        memcpy(cat + b * (T + N) * D + T * D, hid + b * N * D, (size_t)(N * D) * sizeof(float));
    }
}

/* ---- validation ---------------------------------------------------------------------------------- */

/* t must be a contiguous f32 CPU tensor of exactly `shape`. */
static ds_status fx_expect(const ds_tensor *t, int ndim, const int64_t *shape, const char *what, ds_err *err) {
    if (!t || !t->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: %s is missing", what);
    ds_status s = ds_tensor_check_f32(t, ndim, what, err);
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

static ds_status fx_check_temb_rope(const ds_flux *m, int64_t B, int64_t L, const ds_tensor *temb,
                                    const ds_flux_rope *rope, ds_err *err) {
    DS_TRY(fx_expect(temb, 2, (const int64_t[]){B, m->cfg.hidden}, "temb", err));
    if (!rope) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: rope is NULL");
    const int64_t tab[2] = {L, m->cfg.head_dim};
    DS_TRY(fx_expect(&rope->cos, 2, tab, "rope cos", err));
    return fx_expect(&rope->sin, 2, tab, "rope sin", err);
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
    DS_TRY(fx_expect(hidden, 3, (const int64_t[]){B, N, c->in_channels}, "hidden", err));
    DS_TRY(fx_expect(encoder, 3, (const int64_t[]){B, T, c->joint_dim}, "encoder", err));
    DS_TRY(fx_expect(pooled, 2, (const int64_t[]){B, c->pooled_dim}, "pooled", err));
    DS_TRY(fx_expect(img_ids, 2, (const int64_t[]){N, c->n_axes}, "img_ids", err));
    DS_TRY(fx_expect(txt_ids, 2, (const int64_t[]){T, c->n_axes}, "txt_ids", err));
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
    DS_TRY(fx_expect(hidden_out, 3, (const int64_t[]){B, N, D}, "hidden_out", err));
    DS_TRY(fx_expect(encoder_out, 3, (const int64_t[]){B, T, D}, "encoder_out", err));
    DS_TRY(fx_check_temb_rope(m, B, T + N, temb, rope, err));
    return fx_embed_run(m, B, T, N, hidden->data, encoder->data, pooled->data, timestep, guidance, img_ids->data,
                        txt_ids->data, hidden_out->data, encoder_out->data, temb->data, rope->cos.data,
                        rope->sin.data, err);
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
    DS_TRY(fx_expect(hidden, 3, (const int64_t[]){B, N, D}, "hidden", err));
    DS_TRY(fx_expect(encoder, 3, (const int64_t[]){B, T, D}, "encoder", err));
    DS_TRY(fx_check_temb_rope(m, B, T + N, temb, rope, err));
    return fx_double_run(m, i, B, T, N, hidden->data, encoder->data, temb->data, rope->cos.data, rope->sin.data, err);
}

ds_status ds_flux_join_streams(const ds_tensor *encoder, const ds_tensor *hidden, ds_tensor *cat, ds_err *err) {
    if (!encoder || !hidden || encoder->ndim != 3 || hidden->ndim != 3)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux join: encoder [B, T, D] and hidden [B, N, D] must be 3-D");
    const int64_t B = encoder->shape[0], T = encoder->shape[1], N = hidden->shape[1], D = encoder->shape[2];
    DS_TRY(fx_expect(encoder, 3, (const int64_t[]){B, T, D}, "encoder", err));
    DS_TRY(fx_expect(hidden, 3, (const int64_t[]){B, N, D}, "hidden", err));
    DS_TRY(fx_expect(cat, 3, (const int64_t[]){B, T + N, D}, "cat", err));
    fx_join_run(B, T, N, D, encoder->data, hidden->data, cat->data);
    return DS_OK;
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
    DS_TRY(fx_expect(hidden_cat, 3, (const int64_t[]){B, L, m->cfg.hidden}, "hidden_cat", err));
    DS_TRY(fx_check_temb_rope(m, B, L, temb, rope, err));
    return fx_single_run(m, j, B, L, hidden_cat->data, temb->data, rope->cos.data, rope->sin.data, err);
}

ds_status ds_flux_final(ds_flux *m, const ds_tensor *hidden_cat, const ds_tensor *temb, ds_tensor *out, ds_err *err) {
    if (!m) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: model is NULL");
    if (!hidden_cat || !out || hidden_cat->ndim != 3 || out->ndim != 3)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux final: hidden_cat [B, T+N, D] and out [B, N, %lld] must be 3-D",
                       (long long)m->cfg.out_channels);
    const int64_t B = hidden_cat->shape[0], L = hidden_cat->shape[1], N = out->shape[1];
    DS_TRY(fx_limits(m, B, L - N, N, err));
    DS_TRY(fx_expect(hidden_cat, 3, (const int64_t[]){B, L, m->cfg.hidden}, "hidden_cat", err));
    DS_TRY(fx_expect(temb, 2, (const int64_t[]){B, m->cfg.hidden}, "temb", err));
    DS_TRY(fx_expect(out, 3, (const int64_t[]){B, N, m->cfg.out_channels}, "out", err));
    return fx_final_run(m, B, L - N, N, hidden_cat->data, temb->data, out->data, err);
}

ds_status ds_flux_forward(ds_flux *m, const ds_tensor *hidden, const ds_tensor *encoder, const ds_tensor *pooled,
                          const float *timestep, const float *guidance, const ds_tensor *img_ids,
                          const ds_tensor *txt_ids, ds_tensor *out, ds_err *err) {
    int64_t B, T, N;
    DS_TRY(fx_check_inputs(m, hidden, encoder, pooled, timestep, guidance, img_ids, txt_ids, &B, &T, &N, err));
    DS_TRY(fx_expect(out, 3, (const int64_t[]){B, N, m->cfg.out_channels}, "out", err));
    if (out->data == hidden->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "flux: out must not alias hidden");
    const int64_t D = m->cfg.hidden;
    const size_t mk = ds_arena_mark(&m->act);
    fx_forward_buf f;
    ds_status st = fx_forward_alloc(m, &m->act, B, T, N, &f, err);
    if (st != DS_OK) goto done;
    FX_CHECK(fx_embed_run(m, B, T, N, hidden->data, encoder->data, pooled->data, timestep, guidance, img_ids->data,
                          txt_ids->data, f.hidden, f.encoder, f.temb, f.cos, f.sin, err));
    for (int i = 0; i < (int)m->cfg.num_layers; i++)
        FX_CHECK(fx_double_run(m, i, B, T, N, f.hidden, f.encoder, f.temb, f.cos, f.sin, err));
    fx_join_run(B, T, N, D, f.encoder, f.hidden, f.cat);
    for (int j = 0; j < (int)m->cfg.num_single_layers; j++)
        FX_CHECK(fx_single_run(m, j, B, T + N, f.cat, f.temb, f.cos, f.sin, err));
    FX_CHECK(fx_final_run(m, B, T, N, f.cat, f.temb, out->data, err));
done:
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
    DS_TRY(fx_expect(latents, 4, (const int64_t[]){B, C, H, W}, "latents", err));
    const int64_t h2 = H / 2, w2 = W / 2;
    DS_TRY(fx_expect(packed, 3, (const int64_t[]){B, h2 * w2, 4 * C}, "packed", err));
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
    DS_TRY(fx_expect(latents, 4, (const int64_t[]){B, C, H, W}, "latents", err));
    const int64_t h2 = H / 2, w2 = W / 2;
    DS_TRY(fx_expect(packed, 3, (const int64_t[]){B, h2 * w2, 4 * C}, "packed", err));
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
    DS_TRY(fx_expect(out, 2, (const int64_t[]){h2 * w2, 3}, "image ids", err));
    float *o = out->data;
    for (int64_t r = 0; r < h2; r++)
        for (int64_t c = 0; c < w2; c++) {
            float *row = o + (r * w2 + c) * 3;
            row[0] = 0.0f, row[1] = (float)r, row[2] = (float)c;
        }
    return DS_OK;
}
