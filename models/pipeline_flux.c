/* pipeline_flux.c - FluxPipeline from precomputed text embeddings, exact to diffusers'
 * FluxPipeline.__call__: seeded latents [B, 16, h, w] (h = 2*(H / (2*vae_scale))) packed to [B, N, 64];
 * sigmas linspace(1, 1/n, n) shifted with mu = calculate_shift(N); per step the transformer at t/1000 with
 * embedded guidance (dev) and, for true CFG (true_cfg_scale > 1 with negative embeddings), a second call
 * on the negative embeddings: noise = neg + s * (cond - neg); flow-match Euler step on the packed latents;
 * then unpack and decode latents / scaling_factor + shift_factor.
 *
 * With a block runner (ds_gen_params.runner, models/blocks.h) each transformer call is ds_flux_embed ->
 * runner->run -> join -> ds_flux_final. The lists hold the image stream (hidden) and the text stream
 * (encoder) as (h, e); single blocks are presented with the same state, as cache-dit's FluxPatchFunctor
 * does (join [text, image], run, split: exact copies). By default the double and single blocks are one
 * merged list "transformer_blocks" (cache-dit's FLUX.1 adapter: one decision per step); with
 * runner->split_lists they are two lists "transformer_blocks" and "single_transformer_blocks". True CFG
 * makes two runner calls per step: call 0 on the prompt, call 1 on the negative prompt. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_impl.h"
#include "tensor_io.h"

#define FLUX_DEFAULT_SAMPLE 128 /* FluxPipeline.default_sample_size */

ds_status ds_pipeline_flux_load(ds_pipeline *p, ds_err *err) {
    const ds_component *tc, *vc;
    DS_TRY(ds_diffusers_component(p->dir, "transformer", &tc, err));
    DS_TRY(ds_diffusers_component(p->dir, "vae", &vc, err));
    ds_flux_config cfg;
    DS_TRY(ds_flux_config_parse(tc->config, &cfg, err));
    ds_vae_config vcfg;
    DS_TRY(ds_vae_config_parse(vc->config, &vcfg, err));
    /* vae_scale_factor = 2^(len(block_out_channels) - 1), as FluxPipeline computes it */
    p->vae_scale = 1 << (vcfg.n_blocks - 1);
    int max_wpx = p->opts.max_width > 0 ? p->opts.max_width : FLUX_DEFAULT_SAMPLE * p->vae_scale;
    int max_hpx = p->opts.max_height > 0 ? p->opts.max_height : FLUX_DEFAULT_SAMPLE * p->vae_scale;
    p->max_h = 2 * (max_hpx / (2 * p->vae_scale));
    p->max_w = 2 * (max_wpx / (2 * p->vae_scale));
    if (p->max_h < 2 || p->max_w < 2)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "pipeline: max size %dx%d px is below one FLUX token", max_wpx, max_hpx);
    if (cfg.in_channels % 4)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "FLUX in_channels %lld is not 4 x latent channels",
                       (long long)cfg.in_channels);
    p->latent_ch = (int)(cfg.in_channels / 4);
    DS_TRY(ds_vae_load_on(vc, 1, p->max_h, p->max_w, &p->pl, &p->vae, err));
    if (ds_vae_latent_channels(p->vae) != p->latent_ch)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: vae latent_channels %lld != transformer in_channels / 4 = %d",
                       ds_diffusers_dir(p->dir), (long long)ds_vae_latent_channels(p->vae), p->latent_ch);
    if (cfg.out_channels != cfg.in_channels)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "FLUX out_channels %lld != in_channels %lld",
                       (long long)cfg.out_channels, (long long)cfg.in_channels);
    const int maxB = p->opts.max_images, maxT = p->opts.max_txt_tokens;
    const int max_tok = (p->max_h / 2) * (p->max_w / 2);
    DS_TRY(ds_flux_load_on(tc, maxB, max_tok, maxT, &p->pl, &p->flux, err));
    const size_t lat = (size_t)maxB * (size_t)cfg.in_channels * (size_t)max_tok;
    const size_t hpx = (size_t)p->max_h * (size_t)p->vae_scale, wpx = (size_t)p->max_w * (size_t)p->vae_scale;
    DS_TRY(ds_pipeline_alloc(&p->lat, lat, "latents", err));
    DS_TRY(ds_pipeline_alloc(&p->lat2, lat, "packed latents", err));
    DS_TRY(ds_pipeline_alloc(&p->xout, 2 * lat, "transformer outputs (cond, uncond)", err));
    DS_TRY(ds_pipeline_alloc(&p->eps, lat, "guided prediction", err));
    DS_TRY(ds_pipeline_alloc(&p->image, 3 * hpx * wpx, "decoded image", err));
    DS_TRY(ds_pipeline_alloc(&p->tsteps, (size_t)maxB, "timesteps", err));
    DS_TRY(ds_pipeline_alloc(&p->guid, (size_t)maxB, "guidance", err));
    DS_TRY(ds_pipeline_alloc(&p->txt, 2 * (size_t)maxB * (size_t)maxT * (size_t)cfg.joint_dim, "text embeddings", err));
    DS_TRY(ds_pipeline_alloc(&p->pooled, 2 * (size_t)maxB * (size_t)cfg.pooled_dim, "pooled embeddings", err));
    DS_TRY(ds_pipeline_alloc(&p->txt_ids, (size_t)maxT * (size_t)cfg.n_axes, "text ids", err));
    DS_TRY(ds_pipeline_alloc(&p->img_ids, (size_t)max_tok * (size_t)cfg.n_axes, "image ids", err));
    /* the transformer's tensors: views over the host buffers on the CPU, device buffers on CUDA */
    const ds_dtype dt = p->pl.dtype;
    const int64_t Cp = cfg.in_channels, D = cfg.hidden;
    DS_TRY(ds_pipeline_place(p, &p->t_xin, p->lat2, dt, 3, (const int64_t[]){maxB, max_tok, Cp}, err));
    DS_TRY(ds_pipeline_place(p, &p->t_xout, p->xout, dt, 3, (const int64_t[]){2 * maxB, max_tok, Cp}, err));
    DS_TRY(ds_pipeline_place(p, &p->t_aux[0], p->txt, dt, 3, (const int64_t[]){2 * maxB, maxT, cfg.joint_dim}, err));
    DS_TRY(ds_pipeline_place(p, &p->t_aux[1], p->pooled, dt, 2, (const int64_t[]){2 * maxB, cfg.pooled_dim}, err));
    DS_TRY(ds_pipeline_place_vae(p, err));
    if (p->pl.device.kind != DS_DEVICE_CPU) { /* the block runner's streams (on the CPU: made on first use) */
        DS_TRY(ds_pipeline_place(p, &p->t_blk_h, NULL, dt, 3, (const int64_t[]){maxB, max_tok, D}, err));
        DS_TRY(ds_pipeline_place(p, &p->t_blk_e, NULL, dt, 3, (const int64_t[]){maxB, maxT, D}, err));
        DS_TRY(ds_pipeline_place(p, &p->t_blk_c, NULL, dt, 2, (const int64_t[]){maxB, D}, err));
        DS_TRY(ds_pipeline_place(p, &p->t_blk_cat, NULL, dt, 3, (const int64_t[]){maxB, maxT + max_tok, D}, err));
        DS_TRY(ds_pipeline_place(p, &p->t_blk_cos, NULL, DS_F32, 2, (const int64_t[]){maxT + max_tok, cfg.head_dim},
                                 err));
        DS_TRY(ds_pipeline_place(p, &p->t_blk_sin, NULL, DS_F32, 2, (const int64_t[]){maxT + max_tok, cfg.head_dim},
                                 err));
    }
    const ds_sched_kind kinds[] = {DS_SCHED_FLOW_EULER};
    return ds_pipeline_build_schedulers(p, kinds, 1, (int64_t)lat, err);
}

/* Copy embeddings e [P, ...] (row = `row` floats) into dst as [P*per, ...], each prompt repeated `per`
 * times (diffusers' repeat + view for num_images_per_prompt). */
static void repeat_rows(float *dst, const ds_tensor *e, int64_t row, int per) {
    const float *src = e->data;
    for (int64_t i = 0; i < e->shape[0]; i++)
        for (int r = 0; r < per; r++) memcpy(dst + (i * per + r) * row, src + i * row, (size_t)row * sizeof(float));
}

static ds_status check_embeds(const ds_flux_config *cfg, const ds_tensor *pe, const ds_tensor *pp, const char *pe_name,
                              const char *pp_name, int max_t, ds_err *err) {
    DS_TRY(ds_tensor_check_f32(pe, 3, pe_name, err));
    DS_TRY(ds_tensor_check_f32(pp, 2, pp_name, err));
    if (pe->shape[2] != cfg->joint_dim || pe->shape[1] < 1 || pe->shape[1] > max_t)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: shape [P, T, %lld] with 1 <= T <= %d expected", pe_name,
                       (long long)cfg->joint_dim, max_t);
    if (pp->shape[0] != pe->shape[0] || pp->shape[1] != cfg->pooled_dim)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: shape [%lld, %lld] expected", pp_name, (long long)pe->shape[0],
                       (long long)cfg->pooled_dim);
    return DS_OK;
}

/* The FLUX block lists' model: the transformer and this call's temb, rope and join buffer. */
typedef struct flux_blocks {
    ds_flux      *m;
    ds_tensor     temb;
    ds_flux_rope  rope;
    ds_tensor     cat;      /* [maxB, maxT + maxN, D] join buffer (model tensor; shape set per call) */
    int           n_double;
} flux_blocks;

/* hidden_cat [B, T+N, D] -> encoder [B, T, D], hidden [B, N, D] (the inverse of ds_flux_join_streams), with
 * copies on the streams' device (ds_op_convert between equal dtypes is a copy). */
static ds_status flux_split(const ds_tensor *cat, ds_tensor *enc, ds_tensor *hid, ds_err *err) {
    const int64_t B = hid->shape[0], N = hid->shape[1], T = enc->shape[1], D = hid->shape[2];
    for (int64_t b = 0; b < B; b++) {
        ds_tensor src_e = ds_tensor_like(cat, ds_tensor_elem_ptr(cat, b * (T + N) * D), 1, (const int64_t[]){T * D});
        ds_tensor src_h = ds_tensor_like(cat, ds_tensor_elem_ptr(cat, (b * (T + N) + T) * D), 1, (const int64_t[]){N * D});
        ds_tensor dst_e = ds_tensor_like(enc, ds_tensor_elem_ptr(enc, b * T * D), 1, (const int64_t[]){T * D});
        ds_tensor dst_h = ds_tensor_like(hid, ds_tensor_elem_ptr(hid, b * N * D), 1, (const int64_t[]){N * D});
        DS_TRY(ds_op_convert(&dst_e, &src_e, err));
        DS_TRY(ds_op_convert(&dst_h, &src_h, err));
    }
    return DS_OK;
}

static ds_status flux_single_on_state(flux_blocks *b, int j, ds_block_state *st, ds_err *err) {
    const int64_t B = st->hidden.shape[0], N = st->hidden.shape[1], T = st->encoder.shape[1], D = st->hidden.shape[2];
    ds_tensor cat = ds_tensor_like(&b->cat, b->cat.data, 3, (const int64_t[]){B, T + N, D});
    DS_TRY(ds_flux_join_streams(&st->encoder, &st->hidden, &cat, err));
    DS_TRY(ds_flux_single_block_forward(b->m, j, &cat, &b->temb, &b->rope, err));
    return flux_split(&cat, &st->encoder, &st->hidden, err);
}

static ds_status flux_double_fn(void *model, int i, ds_block_state *st, ds_err *err) {
    flux_blocks *b = model;
    return ds_flux_double_block_forward(b->m, i, &st->hidden, &st->encoder, &b->temb, &b->rope, err);
}

static ds_status flux_single_fn(void *model, int j, ds_block_state *st, ds_err *err) {
    return flux_single_on_state(model, j, st, err);
}

static ds_status flux_merged_fn(void *model, int i, ds_block_state *st, ds_err *err) {
    flux_blocks *b = model;
    if (i < b->n_double) return ds_flux_double_block_forward(b->m, i, &st->hidden, &st->encoder, &b->temb, &b->rope, err);
    return flux_single_on_state(b, i - b->n_double, st, err);
}

/* The lists a runner sees (merged, or double + single). Returns the count. key: filled with what fixes the
 * blocks' launches besides the state (the transformer, temb, the RoPE tables and the join buffer); graphs
 * NULL (or model NULL, for the list names and sizes only): lists that are never captured. */
static int flux_lists(ds_flux *m, ds_graph_cache *graphs, bool split, flux_blocks *model, ds_graph_key *key,
                      ds_block_list lists[2]) {
    const int nd = ds_flux_double_block_count(m), ns = ds_flux_single_block_count(m);
    *key = (ds_graph_key){0};
    ds_graph_key_add_ptr(key, m);
    if (model) {
        const ds_tensor *keyed[] = {&model->temb, &model->rope.cos, &model->rope.sin, &model->cat};
        for (size_t i = 0; i < sizeof keyed / sizeof keyed[0]; i++) ds_graph_key_add_tensor(key, keyed[i]);
    }
    if (!split) {
        lists[0] = (ds_block_list){"transformer_blocks", nd + ns, DS_BLOCK_IO_HIDDEN_ENCODER, flux_merged_fn, model, graphs, key};
        return 1;
    }
    lists[0] = (ds_block_list){"transformer_blocks", nd, DS_BLOCK_IO_HIDDEN_ENCODER, flux_double_fn, model, graphs, key};
    lists[1] = (ds_block_list){"single_transformer_blocks", ns, DS_BLOCK_IO_HIDDEN_ENCODER, flux_single_fn, model, graphs, key};
    return 2;
}

/* One transformer call through the runner (call 0: prompt; 1: negative prompt). */
static ds_status flux_runner_forward(ds_pipeline *p, const ds_block_runner *r, const ds_tensor *packed,
                                     const ds_tensor *enc, const ds_tensor *pool, const float *guid,
                                     const ds_tensor *img_ids, const ds_tensor *txt_ids, ds_tensor *out, int step,
                                     int call, ds_err *err) {
    const ds_flux_config *cfg = ds_flux_get_config(p->flux);
    const int64_t B = packed->shape[0], N = packed->shape[1], T = enc->shape[1], D = cfg->hidden;
    ds_block_state st;
    flux_blocks model;
    model.m = p->flux;
    if (p->pl.device.kind == DS_DEVICE_CPU) {
        st.hidden = ds_tensor_f32(p->blk_h, 3, B, N, D);
        st.encoder = ds_tensor_f32(p->blk_e, 3, B, T, D);
        model.temb = ds_tensor_f32(p->blk_c, 2, B, D);
        model.rope.cos = ds_tensor_f32(p->blk_cos, 2, T + N, cfg->head_dim);
        model.rope.sin = ds_tensor_f32(p->blk_sin, 2, T + N, cfg->head_dim);
        model.cat = ds_tensor_f32(p->blk_cat, 3, B, T + N, D);
    } else {
        st.hidden = ds_tensor_like(&p->t_blk_h, p->t_blk_h.data, 3, (const int64_t[]){B, N, D});
        st.encoder = ds_tensor_like(&p->t_blk_e, p->t_blk_e.data, 3, (const int64_t[]){B, T, D});
        model.temb = ds_tensor_like(&p->t_blk_c, p->t_blk_c.data, 2, (const int64_t[]){B, D});
        model.rope.cos = ds_tensor_like(&p->t_blk_cos, p->t_blk_cos.data, 2, (const int64_t[]){T + N, cfg->head_dim});
        model.rope.sin = ds_tensor_like(&p->t_blk_sin, p->t_blk_sin.data, 2, (const int64_t[]){T + N, cfg->head_dim});
        model.cat = ds_tensor_like(&p->t_blk_cat, p->t_blk_cat.data, 3, (const int64_t[]){B, T + N, D});
    }
    model.n_double = ds_flux_double_block_count(p->flux);
    DS_TRY(ds_flux_embed(p->flux, packed, enc, pool, p->tsteps, guid, img_ids, txt_ids, &st.hidden, &st.encoder,
                         &model.temb, &model.rope, err));
    ds_block_list lists[2];
    ds_graph_key key;
    const int nl = flux_lists(p->flux, p->graphs, r->split_lists, &model, &key, lists);
    DS_TRY(r->run(r->ctx, lists, nl, &st, step, call, err));
    DS_TRY(ds_flux_join_streams(&st.encoder, &st.hidden, &model.cat, err));
    return ds_flux_final(p->flux, &model.cat, &model.temb, out, err);
}

ds_status ds_pipeline_flux_generate(ds_pipeline *p, const ds_gen_params *g, ds_gen_result *res, ds_err *err) {
    const ds_flux_config *cfg = ds_flux_get_config(p->flux);
    const int64_t Lc = p->latent_ch, Cp = cfg->in_channels;
    int W = g->width, H = g->height, dw, dh;
    ds_pipeline_default_size(p, &dw, &dh);
    if (W <= 0) W = dw;
    if (H <= 0) H = dh;
    const int q = 2 * p->vae_scale;
    if (W % q || H % q)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "width/height: %dx%d must be multiples of %d", W, H, q);
    const int64_t h = H / p->vae_scale, w = W / p->vae_scale;
    if (h > p->max_h || w > p->max_w)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "width/height: %dx%d is above this server's limit %dx%d", W, H,
                       p->max_w * p->vae_scale, p->max_h * p->vae_scale);
    const int steps = g->steps > 0 ? g->steps : 28;
    if (steps > 1000) return DS_FAIL(err, DS_ERR_INVALID_ARG, "steps: %d is above 1000", steps);
    const float gs = isnan(g->guidance_scale) ? 3.5f : g->guidance_scale;
    const float tcfg = (isnan(g->true_cfg_scale) || g->true_cfg_scale == 0.0f) ? 1.0f : g->true_cfg_scale;
    if (!isfinite(gs) || !isfinite(tcfg))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "guidance_scale / true_cfg_scale: must be finite");
    if (!g->prompt_embeds || !g->pooled_prompt_embeds)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "prompt_embeds: FLUX needs prompt_embeds and pooled_prompt_embeds");
    const int maxT = p->opts.max_txt_tokens;
    DS_TRY(check_embeds(cfg, g->prompt_embeds, g->pooled_prompt_embeds, "prompt_embeds", "pooled_prompt_embeds", maxT, err));
    const bool has_neg = g->negative_prompt_embeds && g->negative_pooled_prompt_embeds;
    const bool true_cfg = tcfg > 1.0f && has_neg;
    const int64_t T = g->prompt_embeds->shape[1];
    if (true_cfg) {
        DS_TRY(check_embeds(cfg, g->negative_prompt_embeds, g->negative_pooled_prompt_embeds, "negative_prompt_embeds",
                            "negative_pooled_prompt_embeds", maxT, err));
        for (int i = 0; i < 3; i++)
            if (g->negative_prompt_embeds->shape[i] != g->prompt_embeds->shape[i])
                return DS_FAIL(err, DS_ERR_INVALID_ARG,
                               "negative_prompt_embeds: must have the same shape as prompt_embeds");
    }
    const int per = g->num_images > 0 ? g->num_images : 1;
    const int64_t B = g->prompt_embeds->shape[0] * per;
    if (B > p->opts.max_images)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "num_images: %lld images requested, this server allows %d per request",
                       (long long)B, p->opts.max_images);
    ds_scheduler *sch;
    DS_TRY(ds_pipeline_pick_scheduler(p, g->scheduler, &sch, err));

    /* latents [B, Lc, h, w] -> packed [B, N, Cp] */
    const int64_t N = (h / 2) * (w / 2), n = B * N * Cp;
    const int64_t shape[4] = {B, Lc, h, w};
    DS_TRY(ds_pipeline_init_latents(g, shape, p->lat, err));
    ds_tensor lat = ds_tensor_f32(p->lat, 4, B, Lc, h, w);
    ds_tensor packed = ds_tensor_f32(p->lat2, 3, B, N, Cp);
    DS_TRY(ds_flux_pack_latents(&lat, &packed, err));
    ds_tensor img_ids = ds_tensor_f32(p->img_ids, 2, N, (int64_t)cfg->n_axes);
    DS_TRY(ds_flux_image_ids(h / 2, w / 2, &img_ids, err));
    memset(p->txt_ids, 0, (size_t)T * (size_t)cfg->n_axes * sizeof(float));
    ds_tensor txt_ids = ds_tensor_f32(p->txt_ids, 2, T, (int64_t)cfg->n_axes);

    const int64_t trow = T * cfg->joint_dim, prow = cfg->pooled_dim;
    float *txt_neg = p->txt + B * trow, *pool_neg = p->pooled + B * prow;
    repeat_rows(p->txt, g->prompt_embeds, trow, per);
    repeat_rows(p->pooled, g->pooled_prompt_embeds, prow, per);
    if (true_cfg) {
        repeat_rows(txt_neg, g->negative_prompt_embeds, trow, per);
        repeat_rows(pool_neg, g->negative_pooled_prompt_embeds, prow, per);
    }
    /* the transformer's tensors (over the host buffers on the CPU; on CUDA the embeddings go up once here) */
    const ds_tensor *ta = &p->t_aux[0], *tp = &p->t_aux[1];
    ds_tensor enc = ds_tensor_like(ta, ta->data, 3, (const int64_t[]){B, T, cfg->joint_dim});
    ds_tensor pool = ds_tensor_like(tp, tp->data, 2, (const int64_t[]){B, prow});
    ds_tensor enc_neg = ds_tensor_like(ta, ds_tensor_elem_ptr(ta, B * trow), 3, (const int64_t[]){B, T, cfg->joint_dim});
    ds_tensor pool_neg_t = ds_tensor_like(tp, ds_tensor_elem_ptr(tp, B * prow), 2, (const int64_t[]){B, prow});
    DS_TRY(ds_tensor_write_f32(&enc, p->txt, p->staging, p->staging_bytes, err));
    DS_TRY(ds_tensor_write_f32(&pool, p->pooled, p->staging, p->staging_bytes, err));
    if (true_cfg) {
        DS_TRY(ds_tensor_write_f32(&enc_neg, txt_neg, p->staging, p->staging_bytes, err));
        DS_TRY(ds_tensor_write_f32(&pool_neg_t, pool_neg, p->staging, p->staging_bytes, err));
    }
    ds_tensor packed_t = ds_tensor_like(&p->t_xin, p->t_xin.data, 3, (const int64_t[]){B, N, Cp});
    ds_tensor out_c = ds_tensor_like(&p->t_xout, p->t_xout.data, 3, (const int64_t[]){B, N, Cp});
    ds_tensor out_u = ds_tensor_like(&p->t_xout, ds_tensor_elem_ptr(&p->t_xout, n), 3, (const int64_t[]){B, N, Cp});

    double sig[1000];
    ds_scheduler_flux_sigmas(steps, sig);
    DS_TRY(ds_scheduler_set_sigmas(sch, sig, steps, ds_scheduler_mu(sch, N), err));
    const float *ts = ds_scheduler_timesteps(sch);
    for (int64_t b = 0; b < B; b++) p->guid[b] = gs;
    const float *guid = cfg->guidance_embeds ? p->guid : NULL;

    const ds_block_runner *runner = g->runner;
    if (runner) {
        const int64_t D = cfg->hidden, maxB = p->opts.max_images, maxN = (p->max_h / 2) * (p->max_w / 2);
        const int64_t mT = maxT;
        if (p->pl.device.kind == DS_DEVICE_CPU)
            DS_TRY(ds_pipeline_runner_buffers(p, (size_t)(maxB * maxN * D), (size_t)(maxB * D), (size_t)(maxB * mT * D),
                                              (size_t)(maxB * (mT + maxN) * D), (size_t)((mT + maxN) * cfg->head_dim),
                                              err));
        ds_block_request req;
        memset(&req, 0, sizeof req);
        req.steps = steps;
        req.calls_per_step = true_cfg ? 2 : 1;
        ds_block_list lists[2];
        ds_graph_key unused;
        req.n_lists = flux_lists(p->flux, NULL, runner->split_lists, NULL, &unused, lists);
        for (int l = 0; l < req.n_lists; l++) {
            req.list_names[l] = lists[l].name;
            req.list_blocks[l] = lists[l].n_blocks;
        }
        req.hidden_numel = B * N * D;
        req.encoder_numel = B * T * D;
        req.device = p->pl.device;
        req.dtype = p->pl.dtype;
        DS_TRY(runner->begin(runner->ctx, &req, err));
    }

    double t0 = ds_pipeline_now_ms();
    for (int i = 0; i < steps; i++) {
        for (int64_t b = 0; b < B; b++) p->tsteps[b] = ts[i] / 1000.0f; /* the pipeline passes timestep / 1000 */
        DS_TRY(ds_tensor_write_f32(&packed_t, p->lat2, p->staging, p->staging_bytes, err)); /* CPU: same memory */
        if (runner)
            DS_TRY(flux_runner_forward(p, runner, &packed_t, &enc, &pool, guid, &img_ids, &txt_ids, &out_c, i, 0, err));
        else
            DS_TRY(ds_flux_forward(p->flux, &packed_t, &enc, &pool, p->tsteps, guid, &img_ids, &txt_ids, &out_c, err));
        DS_TRY(ds_tensor_read_f32(p->xout, &out_c, p->staging, p->staging_bytes, err));
        const float *noise = p->xout;
        if (true_cfg) {
            if (runner)
                DS_TRY(flux_runner_forward(p, runner, &packed_t, &enc_neg, &pool_neg_t, guid, &img_ids, &txt_ids, &out_u,
                                           i, 1, err));
            else
                DS_TRY(ds_flux_forward(p->flux, &packed_t, &enc_neg, &pool_neg_t, p->tsteps, guid, &img_ids, &txt_ids,
                                       &out_u, err));
            DS_TRY(ds_tensor_read_f32(p->xout + n, &out_u, p->staging, p->staging_bytes, err));
            const float *c = p->xout, *u = p->xout + n;
            for (int64_t k = 0; k < n; k++) p->eps[k] = u[k] + tcfg * (c[k] - u[k]);
            noise = p->eps;
        }
        DS_TRY(ds_scheduler_step(sch, i, noise, p->lat2, n, err));
        if (runner && runner->step_done) runner->step_done(runner->ctx, i + 1, steps);
        if (g->on_step && g->on_step(g->user, i + 1, steps, p->lat2, n))
            return DS_FAIL(err, DS_ERR_CANCELLED, "cancelled after step %d of %d", i + 1, steps);
    }
    double t1 = ds_pipeline_now_ms();
    DS_TRY(ds_flux_unpack_latents(&packed, &lat, err));
    DS_TRY(ds_pipeline_decode(p, p->lat, shape, res, err));
    res->steps = steps;
    res->denoise_ms = t1 - t0;
    res->decode_ms = ds_pipeline_now_ms() - t1;
    return DS_OK;
}
