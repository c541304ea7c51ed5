/* dit.c - DiT (diffusers DiTTransformer2DModel) on any placement (CPU f32, CUDA bf16/f16/f32): config parsing,
 * loading into arenas on the model's device,
 * and the forward split into embed / blocks / final (contracts and math in dit.h).
 *
 * Load: the config is parsed and validated, the weights are read (any float dtype -> f32) into one
 * weights arena whose size a dry run on a plan arena measured first, the per-block embedder copies
 * are checked byte for byte against block 0's (only block 0's is kept), the 2-D sin-cos table for
 * sample_size is computed, and the activation arena is planned the same way (dry run of the largest
 * workspace of each stage at max_batch x max_latent) and allocated once.
 * Forward: every stage marks the activation arena, takes its workspace, runs ops from ops.h and
 * rewinds. Nothing is allocated after load. */
#include "dit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "graph.h"
#include "tensor_io.h"

#define DIT_FREQ_DIM 256     /* CombinedTimestepLabelEmbeddings: Timesteps(num_channels=256, ...) */
#define DIT_T_SHIFT 1.0f     /* downscale_freq_shift of diffusers' DiT (the original repo: 0) */
#define DIT_LN_EPS 1e-6f     /* AdaLayerNormZero.norm and norm_out */
#define DIT_MAX_SIZE 65536   /* sanity bound on every config size */

/* One transformer block's weights (f32, in the weights arena). */
typedef struct dit_block {
    ds_tensor ada_w, ada_b;           /* norm1.linear: [6D, D], [6D] */
    ds_tensor q_w, q_b, k_w, k_b;     /* attn1.to_q / to_k: [D, D], [D] (bias .data NULL if absent) */
    ds_tensor v_w, v_b, o_w, o_b;     /* attn1.to_v, attn1.to_out.0: [D, D], [D] */
    ds_tensor ff1_w, ff1_b;           /* ff.net.0.proj: [F, D], [F] */
    ds_tensor ff2_w, ff2_b;           /* ff.net.2: [D, F], [D] */
} dit_block;

struct ds_dit {
    ds_dit_config cfg;
    int           max_batch;
    int           max_latent;
    int64_t       max_tokens;        /* (max_latent / p)^2 */

    ds_arena      warena;            /* weights (plus the position table cache) */
    ds_tensor     patch_w, patch_b;  /* pos_embed.proj as a linear: [D, C*p*p], [D] */
    ds_tensor     t1_w, t1_b;        /* timestep_embedder.linear_1: [D, 256], [D] */
    ds_tensor     t2_w, t2_b;        /* timestep_embedder.linear_2: [D, D], [D] */
    ds_tensor     class_table;       /* class_embedder.embedding_table: [num_classes + 1, D] */
    ds_tensor     po1_w, po1_b;      /* proj_out_1: [2D, D], [2D] */
    ds_tensor     po2_w, po2_b;      /* proj_out_2: [p*p*Cout, D], [p*p*Cout] */
    dit_block    *blocks;            /* [L] */
    ds_tensor     pos_t;             /* [max_tokens, D] capacity (placed); holds the table of pos_grid */
    float        *pos_host;          /* [max_tokens, D] host f32: the table is computed here (on the CPU
                                        this is pos_t's memory itself) */
    int64_t       pos_grid;          /* Hp = Wp of the table in pos_t */
    ds_placement  pl;                /* device and dtype of weights and activations */
    void         *staging;           /* host staging for uploads (CUDA only; NULL on the CPU) */
    ds_graph_cache *graphs;          /* the forward's block loop as CUDA graphs (graph.h; eager on the CPU) */
    size_t        staging_bytes;     /* size of staging; during planning, the largest upload seen */

    ds_arena      act;               /* activations */
    ds_tensor     h_buf, c_buf;      /* ds_dit_forward's hidden [maxB, maxN, D] and cond [maxB, D] */
    size_t        act_base;          /* mark after h_buf / c_buf */
};

/* ---- config ------------------------------------------------------------------------------------------ */

static ds_status cfg_size(const ds_config *cfg, const char *key, int64_t def, int64_t lo, int64_t *out,
                          ds_err *err) {
    DS_TRY(ds_config_get_int(cfg, key, def, out, err));
    if (*out < lo || *out > DIT_MAX_SIZE)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: '%s' = %lld is out of range [%lld, %d]", ds_config_label(cfg), key,
                       (long long)*out, (long long)lo, DIT_MAX_SIZE);
    return DS_OK;
}

ds_status ds_dit_config_parse(const ds_config *cfg, ds_dit_config *out, ds_err *err) {
    if (!cfg || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_dit_config_parse: NULL argument");
    const char *label = ds_config_label(cfg);
    const char *cls = NULL, *norm = NULL, *act = NULL;
    DS_TRY(ds_config_get_string(cfg, "_class_name", NULL, &cls, err));
    if (!cls) return DS_FAIL(err, DS_ERR_FORMAT, "%s: no \"_class_name\"", label);
    const bool legacy = strcmp(cls, "Transformer2DModel") == 0;
    if (!legacy && strcmp(cls, "DiTTransformer2DModel") != 0)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED,
                       "%s: model class '%s' is not a DiT; supported: DiTTransformer2DModel, or the legacy "
                       "Transformer2DModel with norm_type \"ada_norm_zero\"",
                       label, cls);
    /* diffusers remaps a legacy Transformer2DModel to DiTTransformer2DModel only when the config says
     * norm_type "ada_norm_zero"; otherwise it is a different model (default "layer_norm"). Missing keys
     * then take DiTTransformer2DModel's defaults, as below. */
    DS_TRY(ds_config_get_string(cfg, "norm_type", legacy ? "layer_norm" : "ada_norm_zero", &norm, err));
    if (strcmp(norm, "ada_norm_zero") != 0)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED,
                       "%s: %s with norm_type '%s' is not supported; supported: norm_type \"ada_norm_zero\" "
                       "(DiTTransformer2DModel, or legacy Transformer2DModel)",
                       label, cls, norm);

    ds_dit_config c;
    memset(&c, 0, sizeof c);
    DS_TRY(cfg_size(cfg, "num_attention_heads", 16, 1, &c.num_heads, err));
    DS_TRY(cfg_size(cfg, "attention_head_dim", 72, 1, &c.head_dim, err));
    DS_TRY(cfg_size(cfg, "in_channels", 4, 1, &c.in_channels, err));
    DS_TRY(cfg_size(cfg, "out_channels", c.in_channels, 1, &c.out_channels, err));
    DS_TRY(cfg_size(cfg, "num_layers", 28, 1, &c.num_layers, err));
    DS_TRY(cfg_size(cfg, "sample_size", 32, 1, &c.sample_size, err));
    DS_TRY(cfg_size(cfg, "patch_size", 2, 1, &c.patch_size, err));
    if (!ds_config_has(cfg, "num_embeds_ada_norm") && ds_config_root(cfg) &&
        cJSON_GetObjectItemCaseSensitive(ds_config_root(cfg), "num_embeds_ada_norm"))
        return DS_FAIL(err, DS_ERR_UNSUPPORTED,
                       "%s: num_embeds_ada_norm is null; ada_norm_zero needs a class count (1000 for ImageNet)", label);
    DS_TRY(cfg_size(cfg, "num_embeds_ada_norm", 1000, 1, &c.num_classes, err));
    c.hidden = c.num_heads * c.head_dim;
    if (c.hidden > DIT_MAX_SIZE)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: hidden width %lld x %lld is too large", label, (long long)c.num_heads,
                       (long long)c.head_dim);
    if (c.hidden % 4 != 0)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: hidden width %lld is not a multiple of 4 (2-D sin-cos embedding)",
                       label, (long long)c.hidden);
    if (c.sample_size % c.patch_size != 0)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: sample_size %lld is not a multiple of patch_size %lld", label,
                       (long long)c.sample_size, (long long)c.patch_size);
    c.ff_inner = 4 * c.hidden; /* FeedForward(mult=4) */
    c.freq_dim = DIT_FREQ_DIM;

    double eps = 1e-5;
    DS_TRY(ds_config_get_float(cfg, "norm_eps", 1e-5, &eps, err));
    if (!(eps >= 0 && eps < 1)) return DS_FAIL(err, DS_ERR_FORMAT, "%s: norm_eps %g out of range", label, eps);
    c.norm_eps = (float)eps;

    DS_TRY(ds_config_get_string(cfg, "activation_fn", "gelu-approximate", &act, err));
    if (strcmp(act, "gelu-approximate") == 0) {
        c.gelu = DS_GELU_TANH;
    } else if (strcmp(act, "gelu") == 0) {
        c.gelu = DS_GELU_EXACT;
    } else {
        return DS_FAIL(err, DS_ERR_UNSUPPORTED,
                       "%s: activation_fn '%s' is not supported; supported: \"gelu-approximate\", \"gelu\"", label,
                       act);
    }
    bool affine = false;
    DS_TRY(ds_config_get_bool(cfg, "norm_elementwise_affine", false, &affine, err));
    if (affine)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: norm_elementwise_affine true is not supported (DiT has none)",
                       label);
    DS_TRY(ds_config_get_bool(cfg, "attention_bias", true, &c.attention_bias, err));
    *out = c;
    return DS_OK;
}

/* ---- loading ----------------------------------------------------------------------------------------- */

/* Take a tensor of `shape` in the model's dtype from the weights arena and, unless planning (w == NULL:
 * then it only records the largest upload for the staging buffer), fill it from checkpoint tensor `name`
 * (shape checked, converted to the model's dtype, uploaded when the model is on a device). */
static ds_status take(ds_dit *m, ds_arena *a, const ds_weights *w, ds_tensor *dst, int ndim, const int64_t *shape,
                      ds_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 8, 9)))
#endif
    ;

static ds_status take(ds_dit *m, ds_arena *a, const ds_weights *w, ds_tensor *dst, int ndim, const int64_t *shape,
                      ds_err *err, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    DS_TRY(ds_arena_tensor(a, m->pl.dtype, ndim, shape, dst, err));
    if (!w) {
        if ((size_t)ds_tensor_nbytes(dst) > m->staging_bytes) m->staging_bytes = (size_t)ds_tensor_nbytes(dst);
        return DS_OK;
    }
    ds_status s = ds_weights_read_placed(w, name, dst, ndim, shape, m->staging, m->staging_bytes, err);
    if (s != DS_OK) ds_err_prefix(err, "dit");
    return s;
}

#define TAKE1(dst, n0, ...) DS_TRY(take(m, a, w, (dst), 1, (const int64_t[]){n0}, err, __VA_ARGS__))
#define TAKE2(dst, n0, n1, ...) DS_TRY(take(m, a, w, (dst), 2, (const int64_t[]){n0, n1}, err, __VA_ARGS__))

/* Take (and with w != NULL read) every weight in a fixed order, then the position table. Run once on a
 * plan arena (w NULL) to size the weights arena, then on the real one. */
static ds_status take_weights(ds_dit *m, ds_arena *a, const ds_weights *w, ds_err *err) {
    const ds_dit_config *c = &m->cfg;
    const int64_t D = c->hidden, F = c->ff_inner, p = c->patch_size, Cpp = c->in_channels * p * p;
    const int64_t Pout = p * p * c->out_channels;

    ds_tensor conv;
    DS_TRY(take(m, a, w, &conv, 4, (const int64_t[]){D, c->in_channels, p, p}, err, "pos_embed.proj.weight"));
    DS_TRY(ds_tensor_reshape(&conv, 2, (const int64_t[]){D, Cpp}, &m->patch_w, err));
    TAKE1(&m->patch_b, D, "pos_embed.proj.bias");

    const char *emb = "transformer_blocks.0.norm1.emb";
    TAKE2(&m->t1_w, D, c->freq_dim, "%s.timestep_embedder.linear_1.weight", emb);
    TAKE1(&m->t1_b, D, "%s.timestep_embedder.linear_1.bias", emb);
    TAKE2(&m->t2_w, D, D, "%s.timestep_embedder.linear_2.weight", emb);
    TAKE1(&m->t2_b, D, "%s.timestep_embedder.linear_2.bias", emb);
    TAKE2(&m->class_table, c->num_classes + 1, D, "%s.class_embedder.embedding_table.weight", emb);

    for (int64_t i = 0; i < c->num_layers; i++) {
        dit_block *b = &m->blocks[i];
        const long long l = (long long)i;
        TAKE2(&b->ada_w, 6 * D, D, "transformer_blocks.%lld.norm1.linear.weight", l);
        TAKE1(&b->ada_b, 6 * D, "transformer_blocks.%lld.norm1.linear.bias", l);
        TAKE2(&b->q_w, D, D, "transformer_blocks.%lld.attn1.to_q.weight", l);
        TAKE2(&b->k_w, D, D, "transformer_blocks.%lld.attn1.to_k.weight", l);
        TAKE2(&b->v_w, D, D, "transformer_blocks.%lld.attn1.to_v.weight", l);
        if (c->attention_bias) {
            TAKE1(&b->q_b, D, "transformer_blocks.%lld.attn1.to_q.bias", l);
            TAKE1(&b->k_b, D, "transformer_blocks.%lld.attn1.to_k.bias", l);
            TAKE1(&b->v_b, D, "transformer_blocks.%lld.attn1.to_v.bias", l);
        }
        TAKE2(&b->o_w, D, D, "transformer_blocks.%lld.attn1.to_out.0.weight", l);
        TAKE1(&b->o_b, D, "transformer_blocks.%lld.attn1.to_out.0.bias", l);
        TAKE2(&b->ff1_w, F, D, "transformer_blocks.%lld.ff.net.0.proj.weight", l);
        TAKE1(&b->ff1_b, F, "transformer_blocks.%lld.ff.net.0.proj.bias", l);
        TAKE2(&b->ff2_w, D, F, "transformer_blocks.%lld.ff.net.2.weight", l);
        TAKE1(&b->ff2_b, D, "transformer_blocks.%lld.ff.net.2.bias", l);
    }
    TAKE2(&m->po1_w, 2 * D, D, "proj_out_1.weight");
    TAKE1(&m->po1_b, 2 * D, "proj_out_1.bias");
    TAKE2(&m->po2_w, Pout, D, "proj_out_2.weight");
    TAKE1(&m->po2_b, Pout, "proj_out_2.bias");

    DS_TRY(ds_arena_tensor(a, m->pl.dtype, 2, (const int64_t[]){m->max_tokens, D}, &m->pos_t, err));
    if (!w && ds_tensor_staging_bytes(&m->pos_t) > m->staging_bytes) m->staging_bytes = ds_tensor_staging_bytes(&m->pos_t);
    return DS_OK;
}

/* Every block's copy of the timestep/class embedder must equal block 0's (compared as stored). */
static ds_status check_embedder_copies(const ds_dit *m, const ds_weights *w, ds_err *err) {
    static const char *const parts[] = {
        "timestep_embedder.linear_1.weight", "timestep_embedder.linear_1.bias", "timestep_embedder.linear_2.weight",
        "timestep_embedder.linear_2.bias", "class_embedder.embedding_table.weight",
    };
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
        const ds_st_tensor *t0 = ds_weights_findf(w, "transformer_blocks.0.norm1.emb.%s", parts[k]);
        if (!t0) /* read already; cannot happen unless the file changed */
            return DS_FAIL(err, DS_ERR_INTERNAL, "dit: block 0 embedder tensor %s vanished", parts[k]);
        for (int64_t i = 1; i < m->cfg.num_layers; i++) {
            const ds_st_tensor *ti =
                ds_weights_findf(w, "transformer_blocks.%lld.norm1.emb.%s", (long long)i, parts[k]);
            if (!ti)
                return DS_FAIL(err, DS_ERR_NOT_FOUND, "dit: %s: no tensor 'transformer_blocks.%lld.norm1.emb.%s'",
                               ds_weights_label(w), (long long)i, parts[k]);
            bool same = ti->dtype == t0->dtype && ti->ndim == t0->ndim && ti->nbytes == t0->nbytes &&
                        memcmp(ti->shape, t0->shape, sizeof(int64_t) * (size_t)t0->ndim) == 0 &&
                        memcmp(ti->data, t0->data, t0->nbytes) == 0;
            if (!same)
                return DS_FAIL(err, DS_ERR_UNSUPPORTED,
                               "dit: %s: tensor 'transformer_blocks.%lld.norm1.emb.%s' differs from block 0's copy; "
                               "the conditioning is computed once, so every block's timestep/class embedder must be "
                               "identical (as in the released DiT checkpoints)",
                               ds_weights_label(w), (long long)i, parts[k]);
        }
    }
    return DS_OK;
}

/* ---- workspaces (one layout per stage; the same code plans and runs) ---------------------------------- */

typedef struct embed_ws {
    ds_tensor patches; /* [B, N, C*p*p] */
    ds_tensor ts;      /* [B] timesteps */
    ds_tensor tsin;    /* [B, 256] */
    ds_tensor t1;      /* [B, D] */
} embed_ws;

typedef struct block_ws {
    ds_tensor sc;            /* [B, D] silu(cond) */
    ds_tensor mod;           /* [B, 6D] shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp */
    ds_tensor a, q, k, v, o; /* [B, N, D] */
    ds_tensor f;             /* [B, N, F] */
    void     *scratch;       /* attention scratch */
    size_t    scratch_bytes;
} block_ws;

typedef struct final_ws {
    ds_tensor sc;  /* [B, D] */
    ds_tensor mod; /* [B, 2D] shift, scale */
    ds_tensor a;   /* [B, N, D] */
    ds_tensor y;   /* [B, N, p*p*Cout] */
} final_ws;

#define ATENSOR(t, nd, ...) DS_TRY(ds_arena_tensor(a, m->pl.dtype, (nd), (const int64_t[]){__VA_ARGS__}, (t), err))

static ds_status embed_ws_take(const ds_dit *m, ds_arena *a, int64_t B, int64_t N, embed_ws *ws, ds_err *err) {
    const int64_t p = m->cfg.patch_size;
    ATENSOR(&ws->patches, 3, B, N, m->cfg.in_channels * p * p);
    DS_TRY(ds_arena_tensor(a, DS_F32, 1, (const int64_t[]){B}, &ws->ts, err)); /* f32 on every device */
    ATENSOR(&ws->tsin, 2, B, m->cfg.freq_dim);
    ATENSOR(&ws->t1, 2, B, m->cfg.hidden);
    return DS_OK;
}

static ds_status block_ws_take(const ds_dit *m, ds_arena *a, int64_t B, int64_t N, block_ws *ws, ds_err *err) {
    const int64_t D = m->cfg.hidden;
    ATENSOR(&ws->sc, 2, B, D);
    ATENSOR(&ws->mod, 2, B, 6 * D);
    ATENSOR(&ws->a, 3, B, N, D);
    ATENSOR(&ws->q, 3, B, N, D);
    ATENSOR(&ws->k, 3, B, N, D);
    ATENSOR(&ws->v, 3, B, N, D);
    ATENSOR(&ws->o, 3, B, N, D);
    ATENSOR(&ws->f, 3, B, N, m->cfg.ff_inner);
    /* the CUDA attention is tiled and needs no scratch */
    ws->scratch_bytes = m->pl.device.kind == DS_DEVICE_CPU ? ds_op_attention_scratch_bytes(N, N, m->cfg.head_dim) : 0;
    return ds_arena_alloc(a, ws->scratch_bytes, 64, &ws->scratch, err);
}

static ds_status final_ws_take(const ds_dit *m, ds_arena *a, int64_t B, int64_t N, final_ws *ws, ds_err *err) {
    const int64_t D = m->cfg.hidden, p = m->cfg.patch_size;
    ATENSOR(&ws->sc, 2, B, D);
    ATENSOR(&ws->mod, 2, B, 2 * D);
    ATENSOR(&ws->a, 3, B, N, D);
    ATENSOR(&ws->y, 3, B, N, p * p * m->cfg.out_channels);
    return DS_OK;
}

/* Take the persistent hidden/cond buffers of ds_dit_forward, mark, and then the largest stage. */
static ds_status take_activations(ds_dit *m, ds_arena *a, ds_err *err) {
    const int64_t B = m->max_batch, N = m->max_tokens, D = m->cfg.hidden;
    ATENSOR(&m->h_buf, 3, B, N, D);
    ATENSOR(&m->c_buf, 2, B, D);
    m->act_base = ds_arena_mark(a);
    embed_ws e;
    block_ws b;
    final_ws f;
    DS_TRY(embed_ws_take(m, a, B, N, &e, err));
    ds_arena_rewind(a, m->act_base);
    DS_TRY(block_ws_take(m, a, B, N, &b, err));
    ds_arena_rewind(a, m->act_base);
    DS_TRY(final_ws_take(m, a, B, N, &f, err));
    ds_arena_rewind(a, m->act_base);
    return DS_OK;
}

/* Fill m->pos_table for a grid of g x g tokens (diffusers' get_2d_sincos_pos_embed with base_size
 * sample_size / p and interpolation_scale 1). */
static ds_status set_pos_grid(ds_dit *m, int64_t g, ds_err *err) {
    if (m->pos_grid == g) return DS_OK;
    ds_tensor t = ds_tensor_f32(m->pos_host, 2, g * g, m->cfg.hidden); /* computed on the host in fp64 */
    const double base = (double)(m->cfg.sample_size / m->cfg.patch_size);
    DS_TRY(ds_op_pos_embed_2d(&t, g, g, base, 1.0, err));
    ds_tensor dst = ds_tensor_like(&m->pos_t, m->pos_t.data, 2, (const int64_t[]){g * g, m->cfg.hidden});
    DS_TRY(ds_tensor_write_f32(&dst, m->pos_host, m->staging, m->staging_bytes, err));
    m->pos_grid = g;
    return DS_OK;
}

ds_status ds_dit_load(const ds_component *comp, int max_batch, int max_latent, ds_dit **out, ds_err *err) {
    return ds_dit_load_on(comp, max_batch, max_latent, NULL, out, err);
}

ds_status ds_dit_load_on(const ds_component *comp, int max_batch, int max_latent, const ds_placement *pl, ds_dit **out,
                         ds_err *err) {
    if (!comp || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_dit_load: NULL argument");
    DS_TRY(ds_placement_check(pl, "dit", err));
    *out = NULL;
    if (!comp->config || !comp->weights)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_dit_load: component '%s' has no %s", comp->name ? comp->name : "?",
                       comp->config ? "weights" : "config.json");
    ds_dit_config cfg;
    DS_TRY(ds_dit_config_parse(comp->config, &cfg, err));
    if (max_batch < 1 || max_batch > DIT_MAX_SIZE)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_dit_load: max_batch %d out of range [1, %d]", max_batch,
                       DIT_MAX_SIZE);
    if (max_latent == 0) max_latent = (int)cfg.sample_size;
    if (max_latent < cfg.patch_size || max_latent > DIT_MAX_SIZE || max_latent % cfg.patch_size != 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "ds_dit_load: max_latent %d is not a positive multiple of patch_size %lld (at most %d)",
                       max_latent, (long long)cfg.patch_size, DIT_MAX_SIZE);

    ds_dit *m = calloc(1, sizeof *m);
    if (!m) return DS_FAIL(err, DS_ERR_OOM, "ds_dit_load: out of memory");
    m->cfg = cfg;
    m->pl = ds_placement_or_cpu(pl);
    m->max_batch = max_batch;
    m->max_latent = max_latent;
    const int64_t g = max_latent / cfg.patch_size;
    m->max_tokens = g * g;
    m->blocks = calloc((size_t)cfg.num_layers, sizeof *m->blocks);
    ds_status s = DS_OK;
    if (!m->blocks) {
        s = DS_FAIL(err, DS_ERR_OOM, "ds_dit_load: out of memory");
        goto fail;
    }

    /* Weights: plan, allocate, read. */
    ds_arena plan;
    ds_arena_init_plan(&plan, DS_ARENA_WEIGHTS, "dit weights (plan)");
    if ((s = take_weights(m, &plan, NULL, err)) != DS_OK) goto fail;
    if ((s = ds_arena_init_device(&m->warena, plan.high_water, m->pl.device, DS_ARENA_WEIGHTS, "dit weights", err)) !=
        DS_OK)
        goto fail;
    if (m->pl.device.kind == DS_DEVICE_CPU) {
        m->staging_bytes = 0; /* weights are read in place */
    } else if (!(m->staging = malloc(m->staging_bytes ? m->staging_bytes : 1))) {
        s = DS_FAIL(err, DS_ERR_OOM, "ds_dit_load: cannot allocate %zu bytes of staging", m->staging_bytes);
        goto fail;
    }
    if ((s = take_weights(m, &m->warena, comp->weights, err)) != DS_OK) goto fail;
    if (m->pl.device.kind == DS_DEVICE_CPU) {
        m->pos_host = m->pos_t.data;
    } else if (!(m->pos_host = malloc((size_t)(m->max_tokens * cfg.hidden) * sizeof(float)))) {
        s = DS_FAIL(err, DS_ERR_OOM, "ds_dit_load: out of memory for the position table");
        goto fail;
    }
    if ((s = check_embedder_copies(m, comp->weights, err)) != DS_OK) goto fail;
    m->pos_grid = -1; /* the table of the trained size now if it fits, else on first use */
    if (cfg.sample_size <= max_latent && (s = set_pos_grid(m, cfg.sample_size / cfg.patch_size, err)) != DS_OK)
        goto fail;

    /* Activations: plan, allocate. */
    ds_arena_init_plan(&plan, DS_ARENA_ACTIVATIONS, "dit activations (plan)");
    if ((s = take_activations(m, &plan, err)) != DS_OK) goto fail;
    if ((s = ds_arena_init_device(&m->act, plan.high_water, m->pl.device, DS_ARENA_ACTIVATIONS, "dit activations",
                                  err)) != DS_OK)
        goto fail;
    if ((s = take_activations(m, &m->act, err)) != DS_OK) goto fail;
    if ((s = ds_graph_cache_create(8, NULL, &m->graphs, err)) != DS_OK) goto fail;
    *out = m;
    return DS_OK;
fail:
    ds_dit_free(m);
    return s;
}

void ds_dit_free(ds_dit *m) {
    if (!m) return;
    ds_graph_cache_free(m->graphs);
    ds_arena_free(&m->warena);
    ds_arena_free(&m->act);
    if (m->pl.device.kind != DS_DEVICE_CPU) free(m->pos_host);
    free(m->staging);
    free(m->blocks);
    free(m);
}

const ds_dit_config *ds_dit_get_config(const ds_dit *m) { return m ? &m->cfg : NULL; }
ds_placement ds_dit_placement(const ds_dit *m) { return m ? m->pl : ds_placement_cpu(); }
int ds_dit_max_batch(const ds_dit *m) { return m ? m->max_batch : 0; }
int ds_dit_max_latent(const ds_dit *m) { return m ? m->max_latent : 0; }
int ds_dit_block_count(const ds_dit *m) { return m ? (int)m->cfg.num_layers : 0; }
size_t ds_dit_weight_bytes(const ds_dit *m) { return m ? m->warena.cap : 0; }
size_t ds_dit_activation_bytes(const ds_dit *m) { return m ? m->act.cap : 0; }

int64_t ds_dit_tokens(const ds_dit *m, int64_t latent) {
    if (!m || latent < m->cfg.patch_size || latent > m->max_latent || latent % m->cfg.patch_size != 0) return -1;
    const int64_t g = latent / m->cfg.patch_size;
    return g * g;
}

/* ---- argument checks --------------------------------------------------------------------------------- */

static ds_status check_shape(const ds_dit *m, const ds_tensor *t, int ndim, const int64_t *shape, const char *fn,
                             const char *what,
                             ds_err *err) {
    ds_status s = ds_tensor_check_placed(t, ndim, m->pl.device, m->pl.dtype, what, err);
    if (s != DS_OK) {
        ds_err_prefix(err, "%s", fn);
        return s;
    }
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) {
            ds_tensor want = ds_tensor_make(NULL, DS_F32, ndim, shape);
            char got_s[96], want_s[96];
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: %s has shape %s, expected %s", fn, what,
                           ds_tensor_shape_str(t, got_s, sizeof got_s),
                           ds_tensor_shape_str(&want, want_s, sizeof want_s));
        }
    return DS_OK;
}

static ds_status check_batch(const ds_dit *m, int64_t B, const char *fn, ds_err *err) {
    if (B < 1 || B > m->max_batch)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: batch %lld is outside [1, %d] (max_batch given at load)", fn,
                       (long long)B, m->max_batch);
    return DS_OK;
}

/* hidden [B, N, D] and cond [B, D] with B <= max_batch and N a square number of tokens <= max_tokens.
 * *grid receives sqrt(N). */
static ds_status check_state(const ds_dit *m, const ds_tensor *hidden, const ds_tensor *cond, const char *fn,
                             int64_t *grid, ds_err *err) {
    ds_status s = ds_tensor_check_placed(hidden, 3, m->pl.device, m->pl.dtype, "hidden", err);
    if (s == DS_OK) s = ds_tensor_check_placed(cond, 2, m->pl.device, m->pl.dtype, "cond", err);
    if (s != DS_OK) {
        ds_err_prefix(err, "%s", fn);
        return s;
    }
    const int64_t B = hidden->shape[0], N = hidden->shape[1], D = m->cfg.hidden;
    DS_TRY(check_batch(m, B, fn, err));
    int64_t g = (int64_t)llround(sqrt((double)N));
    if (N < 1 || N > m->max_tokens || g * g != N)
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "%s: hidden has %lld tokens; expected a square number of at most %lld (max_latent %d)", fn,
                       (long long)N, (long long)m->max_tokens, m->max_latent);
    DS_TRY(check_shape(m, hidden, 3, (const int64_t[]){B, N, D}, fn, "hidden", err));
    DS_TRY(check_shape(m, cond, 2, (const int64_t[]){B, D}, fn, "cond", err));
    *grid = g;
    return DS_OK;
}

/* Columns [k*D, (k+1)*D) of a [B, n*D] modulation tensor, as a [B, D] view with row stride n*D. */
static ds_tensor chunk(const ds_tensor *mod, int64_t k, int64_t D) {
    ds_tensor t = *mod;
    t.shape[1] = D;
    t.data = ds_tensor_elem_ptr(mod, k * D);
    return t;
}

/* ---- forward ----------------------------------------------------------------------------------------- */

ds_status ds_dit_embed(ds_dit *m, const ds_tensor *x, const float *timesteps, const int32_t *class_labels,
                       ds_tensor *hidden, ds_tensor *cond, ds_err *err) {
    static const char fn[] = "ds_dit_embed";
    if (!m || !x || !timesteps || !class_labels || !hidden || !cond)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL argument", fn);
    const ds_dit_config *c = &m->cfg;
    ds_status s = ds_tensor_check_placed(x, 4, m->pl.device, m->pl.dtype, "x", err);
    if (s != DS_OK) {
        ds_err_prefix(err, "%s", fn);
        return s;
    }
    const int64_t B = x->shape[0], S = x->shape[2], p = c->patch_size, D = c->hidden;
    DS_TRY(check_batch(m, B, fn, err));
    if (x->shape[3] != S || S < p || S > m->max_latent || S % p != 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "%s: latent %lld x %lld is not supported: it must be square, a multiple of patch_size %lld, "
                       "and at most max_latent %d",
                       fn, (long long)S, (long long)x->shape[3], (long long)p, m->max_latent);
    DS_TRY(check_shape(m, x, 4, (const int64_t[]){B, c->in_channels, S, S}, fn, "x", err));
    const int64_t g = S / p, N = g * g;
    DS_TRY(check_shape(m, hidden, 3, (const int64_t[]){B, N, D}, fn, "hidden", err));
    DS_TRY(check_shape(m, cond, 2, (const int64_t[]){B, D}, fn, "cond", err));
    for (int64_t b = 0; b < B; b++) {
        if (class_labels[b] < 0 || class_labels[b] > c->num_classes)
            return DS_FAIL(err, DS_ERR_INVALID_ARG,
                           "%s: class_labels[%lld] = %d is outside [0, %lld] (%lld is the null class)", fn,
                           (long long)b, (int)class_labels[b], (long long)c->num_classes, (long long)c->num_classes);
        if (!isfinite(timesteps[b]))
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: timesteps[%lld] is not finite", fn, (long long)b);
    }
    DS_TRY(set_pos_grid(m, g, err));

    ds_arena *a = &m->act;
    const size_t mark = ds_arena_mark(a);
    embed_ws ws;
    s = embed_ws_take(m, a, B, N, &ws, err);
    if (s != DS_OK) goto out;

    /* hidden = patchify(x) · Wᵀ + b + PE */
    if ((s = ds_op_patchify(&ws.patches, x, p, err)) != DS_OK) goto out;
    if ((s = ds_op_linear(hidden, &ws.patches, &m->patch_w, &m->patch_b, err)) != DS_OK) goto out;
    ds_tensor pe = ds_tensor_like(&m->pos_t, m->pos_t.data, 2, (const int64_t[]){N, D});
    for (int64_t b = 0; b < B; b++) {
        ds_tensor hb = ds_tensor_like(hidden, ds_tensor_elem_ptr(hidden, b * N * D), 2, (const int64_t[]){N, D});
        if ((s = ds_op_add(&hb, &hb, &pe, err)) != DS_OK) goto out;
    }

    /* cond = linear_2(silu(linear_1(sinusoid(t)))) + table[y] */
    if ((s = ds_tensor_write_f32(&ws.ts, timesteps, NULL, 0, err)) != DS_OK) goto out; /* [B] f32 */
    if ((s = ds_op_timestep_embedding(&ws.tsin, &ws.ts, 1, DIT_T_SHIFT, 1.0f, 10000.0f, err)) != DS_OK) goto out;
    if ((s = ds_op_linear(&ws.t1, &ws.tsin, &m->t1_w, &m->t1_b, err)) != DS_OK) goto out;
    if ((s = ds_op_silu(&ws.t1, &ws.t1, err)) != DS_OK) goto out;
    if ((s = ds_op_linear(cond, &ws.t1, &m->t2_w, &m->t2_b, err)) != DS_OK) goto out;
    for (int64_t b = 0; b < B; b++) {
        ds_tensor cb = ds_tensor_like(cond, ds_tensor_elem_ptr(cond, b * D), 1, (const int64_t[]){D});
        ds_tensor row = ds_tensor_like(&m->class_table, ds_tensor_elem_ptr(&m->class_table, class_labels[b] * D), 1,
                                       (const int64_t[]){D});
        if ((s = ds_op_add(&cb, &cb, &row, err)) != DS_OK) goto out;
    }
out:
    ds_arena_rewind(a, mark);
    return s;
}

ds_status ds_dit_block_forward(ds_dit *m, int i, ds_tensor *hidden, const ds_tensor *cond, ds_err *err) {
    static const char fn[] = "ds_dit_block_forward";
    if (!m || !hidden || !cond) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (i < 0 || i >= m->cfg.num_layers)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: block %d out of range [0, %lld)", fn, i,
                       (long long)m->cfg.num_layers);
    int64_t g;
    DS_TRY(check_state(m, hidden, cond, fn, &g, err));
    const ds_dit_config *c = &m->cfg;
    const dit_block *w = &m->blocks[i];
    const int64_t B = hidden->shape[0], N = hidden->shape[1], D = c->hidden, H = c->num_heads, d = c->head_dim;

    ds_arena *a = &m->act;
    const size_t mark = ds_arena_mark(a);
    block_ws ws;
    ds_status s = block_ws_take(m, a, B, N, &ws, err);
    if (s != DS_OK) goto out;
    const ds_tensor *qb = c->attention_bias ? &w->q_b : NULL, *kb = c->attention_bias ? &w->k_b : NULL;
    const ds_tensor *vb = c->attention_bias ? &w->v_b : NULL;
    const ds_tensor shift_msa = chunk(&ws.mod, 0, D), scale_msa = chunk(&ws.mod, 1, D), gate_msa = chunk(&ws.mod, 2, D);
    const ds_tensor shift_mlp = chunk(&ws.mod, 3, D), scale_mlp = chunk(&ws.mod, 4, D), gate_mlp = chunk(&ws.mod, 5, D);
    ds_tensor q4, k4, v4, o4;

    /* adaLN-Zero modulations: [B, 6D] = linear(silu(cond)) */
    if ((s = ds_op_silu(&ws.sc, cond, err)) != DS_OK) goto out;
    if ((s = ds_op_linear(&ws.mod, &ws.sc, &w->ada_w, &w->ada_b, err)) != DS_OK) goto out;

    /* attention branch: h += gate_msa * to_out(attn(LN(h) * (1 + scale_msa) + shift_msa)) */
    if ((s = ds_op_layernorm_modulate(&ws.a, hidden, &scale_msa, &shift_msa, DIT_LN_EPS, err)) != DS_OK) goto out;
    {   /* q, k, v: one ds_op_linear_multi (one batched product on CUDA: the weights lie evenly in the arena) */
        ds_tensor *qkv[3] = {&ws.q, &ws.k, &ws.v};
        const ds_tensor *wts[3] = {&w->q_w, &w->k_w, &w->v_w}, *bias[3] = {qb, kb, vb};
        if ((s = ds_op_linear_multi(qkv, &ws.a, wts, qb ? bias : NULL, 3, err)) != DS_OK) goto out;
    }
    const int64_t heads[4] = {B, N, H, d};
    if ((s = ds_tensor_reshape(&ws.q, 4, heads, &q4, err)) != DS_OK) goto out;
    if ((s = ds_tensor_reshape(&ws.k, 4, heads, &k4, err)) != DS_OK) goto out;
    if ((s = ds_tensor_reshape(&ws.v, 4, heads, &v4, err)) != DS_OK) goto out;
    if ((s = ds_tensor_reshape(&ws.o, 4, heads, &o4, err)) != DS_OK) goto out;
    if ((s = ds_op_attention(&o4, &q4, &k4, &v4, NULL, 0.0f, ws.scratch, ws.scratch_bytes, err)) != DS_OK) goto out;
    if ((s = ds_op_linear(&ws.a, &ws.o, &w->o_w, &w->o_b, err)) != DS_OK) goto out;
    if ((s = ds_op_gate_add(hidden, hidden, &ws.a, &gate_msa, err)) != DS_OK) goto out;

    /* MLP branch: h += gate_mlp * ff(LN(h; norm_eps) * (1 + scale_mlp) + shift_mlp) */
    if ((s = ds_op_layernorm_modulate(&ws.a, hidden, &scale_mlp, &shift_mlp, c->norm_eps, err)) != DS_OK) goto out;
    if ((s = ds_op_linear_gelu(&ws.f, &ws.a, &w->ff1_w, &w->ff1_b, c->gelu, err)) != DS_OK) goto out;
    if ((s = ds_op_linear(&ws.o, &ws.f, &w->ff2_w, &w->ff2_b, err)) != DS_OK) goto out;
    s = ds_op_gate_add(hidden, hidden, &ws.o, &gate_mlp, err);
out:
    ds_arena_rewind(a, mark);
    if (s != DS_OK) ds_err_prefix(err, "dit block %d", i);
    return s;
}

ds_status ds_dit_final(ds_dit *m, const ds_tensor *hidden, const ds_tensor *cond, ds_tensor *out, ds_err *err) {
    static const char fn[] = "ds_dit_final";
    if (!m || !hidden || !cond || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL argument", fn);
    int64_t g;
    DS_TRY(check_state(m, hidden, cond, fn, &g, err));
    const ds_dit_config *c = &m->cfg;
    const int64_t B = hidden->shape[0], N = hidden->shape[1], D = c->hidden, p = c->patch_size;
    DS_TRY(check_shape(m, out, 4, (const int64_t[]){B, c->out_channels, g * p, g * p}, fn, "out", err));

    ds_arena *a = &m->act;
    const size_t mark = ds_arena_mark(a);
    final_ws ws;
    ds_status s = final_ws_take(m, a, B, N, &ws, err);
    if (s != DS_OK) goto out;
    const ds_tensor shift = chunk(&ws.mod, 0, D), scale = chunk(&ws.mod, 1, D);
    if ((s = ds_op_silu(&ws.sc, cond, err)) != DS_OK) goto out;
    if ((s = ds_op_linear(&ws.mod, &ws.sc, &m->po1_w, &m->po1_b, err)) != DS_OK) goto out;
    if ((s = ds_op_layernorm_modulate(&ws.a, hidden, &scale, &shift, DIT_LN_EPS, err)) != DS_OK) goto out;
    if ((s = ds_op_linear(&ws.y, &ws.a, &m->po2_w, &m->po2_b, err)) != DS_OK) goto out;
    s = ds_op_unpatchify(out, &ws.y, p, err);
out:
    ds_arena_rewind(a, mark);
    if (s != DS_OK) ds_err_prefix(err, "dit final layer");
    return s;
}

/* ds_dit_forward's block loop as a graph body. */
typedef struct dit_loop {
    ds_dit *m;
    ds_tensor *h;       /* [B, N, D] */
    const ds_tensor *c; /* [B, D] */
} dit_loop;

static ds_status dit_blocks_body(void *arg, ds_err *err) {
    dit_loop *l = arg;
    for (int i = 0; i < (int)l->m->cfg.num_layers; i++) DS_TRY(ds_dit_block_forward(l->m, i, l->h, l->c, err));
    return DS_OK;
}

ds_status ds_dit_forward(ds_dit *m, const ds_tensor *x, const float *timesteps, const int32_t *class_labels,
                         ds_tensor *out, ds_err *err) {
    static const char fn[] = "ds_dit_forward";
    if (!m || !x || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: NULL argument", fn);
    ds_status s = ds_tensor_check_placed(x, 4, m->pl.device, m->pl.dtype, "x", err);
    if (s != DS_OK) {
        ds_err_prefix(err, "%s", fn);
        return s;
    }
    const int64_t B = x->shape[0], S = x->shape[2], p = m->cfg.patch_size, D = m->cfg.hidden;
    DS_TRY(check_batch(m, B, fn, err));
    if (S < p || S > m->max_latent || S % p != 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "%s: latent %lld x %lld is not supported: it must be square, a multiple of patch_size %lld, "
                       "and at most max_latent %d",
                       fn, (long long)S, (long long)x->shape[3], (long long)p, m->max_latent);
    DS_TRY(check_shape(m, out, 4, (const int64_t[]){B, m->cfg.out_channels, S, S}, fn, "out", err));
    if (out->data == x->data) return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out aliases x", fn);
    const int64_t N = (S / p) * (S / p);
    ds_tensor h = ds_tensor_like(&m->h_buf, m->h_buf.data, 3, (const int64_t[]){B, N, D}); /* [B, N, D] */
    ds_tensor c = ds_tensor_like(&m->c_buf, m->c_buf.data, 2, (const int64_t[]){B, D});    /* [B, D] */
    DS_TRY(ds_dit_embed(m, x, timesteps, class_labels, &h, &c, err));
    /* the blocks read and write only h, c and the activation arena (fixed addresses for a batch and size):
     * one CUDA graph per shape replays them (graph.h) */
    dit_loop loop = {m, &h, &c};
    ds_graph_key key = {0};
    ds_graph_key_add_ptr(&key, m);
    ds_graph_key_add_tensor(&key, &h);
    ds_graph_key_add_tensor(&key, &c);
    DS_TRY(ds_graph_run(m->graphs, m->pl.device, &key, dit_blocks_body, &loop, err));
    return ds_dit_final(m, &h, &c, out, err);
}
