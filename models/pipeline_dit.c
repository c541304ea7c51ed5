/* pipeline_dit.c - DiTPipeline: class-conditional generation exact to diffusers' DiTPipeline.__call__:
 * seeded latents [B, C, S, S]; per step the transformer on the CFG batch [latents, latents] with labels
 * [labels, null(1000)], eps = uncond + g * (cond - uncond) on the first C channels (learned-sigma channels
 * dropped), scheduler step; then the VAE decodes latents / scaling_factor. The scheduler steps only the
 * conditional half: diffusers steps both halves, which stay bit-identical.
 *
 * With a block runner (ds_gen_params.runner, models/blocks.h) the transformer call is ds_dit_embed ->
 * runner->run on one list "transformer_blocks" (DS_BLOCK_IO_HIDDEN, the CFG batch as one state: one
 * decision per step, as cache-dit's batched CFG) -> ds_dit_final; without one, ds_dit_forward as before. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_impl.h"
#include "tensor_io.h"

ds_status ds_pipeline_dit_load(ds_pipeline *p, ds_err *err) {
    const ds_component *tc, *vc;
    DS_TRY(ds_diffusers_component(p->dir, "transformer", &tc, err));
    DS_TRY(ds_diffusers_component(p->dir, "vae", &vc, err));
    ds_dit_config cfg;
    DS_TRY(ds_dit_config_parse(tc->config, &cfg, err));
    ds_vae_config vcfg;
    DS_TRY(ds_vae_config_parse(vc->config, &vcfg, err));
    const int maxB = p->opts.max_images;
    p->vae_scale = (int)vcfg.scale;
    /* Latent limit: the configured pixel size, else the trained sample size. */
    int max_px = p->opts.max_width > p->opts.max_height ? p->opts.max_width : p->opts.max_height;
    int S = max_px > 0 ? max_px / p->vae_scale : (int)cfg.sample_size;
    if (S < 1) return DS_FAIL(err, DS_ERR_INVALID_ARG, "pipeline: max size %d px is below one latent pixel", max_px);
    DS_TRY(ds_vae_load_on(vc, 1, S, S, &p->pl, &p->vae, err));
    if (ds_vae_latent_channels(p->vae) != cfg.in_channels)
        return DS_FAIL(err, DS_ERR_FORMAT, "%s: vae latent_channels %lld != transformer in_channels %lld",
                       ds_diffusers_dir(p->dir), (long long)ds_vae_latent_channels(p->vae),
                       (long long)cfg.in_channels);
    if (cfg.out_channels != cfg.in_channels && cfg.out_channels != 2 * cfg.in_channels)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "DiT out_channels %lld must be in_channels or 2 x in_channels",
                       (long long)cfg.out_channels);
    DS_TRY(ds_dit_load_on(tc, 2 * maxB, S, &p->pl, &p->dit, err));
    p->latent_ch = (int)cfg.in_channels;
    p->max_h = p->max_w = S;
    const size_t lat = (size_t)maxB * (size_t)cfg.in_channels * (size_t)S * (size_t)S;
    const size_t px = (size_t)S * (size_t)p->vae_scale;
    DS_TRY(ds_pipeline_alloc(&p->lat, lat, "latents", err));
    DS_TRY(ds_pipeline_alloc(&p->xin, 2 * lat, "transformer input", err));
    DS_TRY(ds_pipeline_alloc(&p->xout, 2 * lat / (size_t)cfg.in_channels * (size_t)cfg.out_channels,
                             "transformer output", err));
    DS_TRY(ds_pipeline_alloc(&p->eps, lat, "guided eps", err));
    DS_TRY(ds_pipeline_alloc(&p->image, 3 * px * px, "decoded image", err));
    DS_TRY(ds_pipeline_alloc(&p->tsteps, 2 * (size_t)maxB, "timesteps", err));
    p->labels = calloc(2 * (size_t)maxB, sizeof(int32_t));
    if (!p->labels) return DS_FAIL(err, DS_ERR_OOM, "pipeline: out of memory");
    /* the transformer's view of xin / xout (device buffers on CUDA), the VAE's, and the runner's streams */
    const ds_dtype dt = p->pl.dtype;
    DS_TRY(ds_pipeline_place(p, &p->t_xin, p->xin, dt, 4, (const int64_t[]){2 * maxB, cfg.in_channels, S, S}, err));
    DS_TRY(ds_pipeline_place(p, &p->t_xout, p->xout, dt, 4, (const int64_t[]){2 * maxB, cfg.out_channels, S, S}, err));
    DS_TRY(ds_pipeline_place_vae(p, err));
    if (p->pl.device.kind != DS_DEVICE_CPU) {
        const int64_t maxN = ds_dit_tokens(p->dit, S), D = cfg.hidden;
        DS_TRY(ds_pipeline_place(p, &p->t_blk_h, NULL, dt, 3, (const int64_t[]){2 * maxB, maxN, D}, err));
        DS_TRY(ds_pipeline_place(p, &p->t_blk_c, NULL, dt, 2, (const int64_t[]){2 * maxB, D}, err));
    }
    const ds_sched_kind kinds[] = {DS_SCHED_DDIM, DS_SCHED_DPMPP_2M};
    return ds_pipeline_build_schedulers(p, kinds, 2, (int64_t)lat, err);
}

/* The DiT block list's model: the transformer and this call's conditioning. */
typedef struct dit_blocks {
    ds_dit          *dit;
    const ds_tensor *cond;
} dit_blocks;

static ds_status dit_block_fn(void *model, int i, ds_block_state *st, ds_err *err) {
    dit_blocks *b = model;
    return ds_dit_block_forward(b->dit, i, &st->hidden, b->cond, err);
}

/* One transformer call through the runner: embed, the block list, final. */
static ds_status dit_runner_forward(ds_pipeline *p, const ds_block_runner *r, const ds_tensor *xin, const int32_t *labels,
                                    ds_tensor *xout, int step, ds_err *err) {
    const ds_dit_config *cfg = ds_dit_get_config(p->dit);
    const int64_t TB = xin->shape[0], N = ds_dit_tokens(p->dit, xin->shape[2]), D = cfg->hidden;
    ds_block_state st;
    memset(&st, 0, sizeof st);
    ds_tensor cond;
    if (p->pl.device.kind == DS_DEVICE_CPU) {
        st.hidden = ds_tensor_f32(p->blk_h, 3, TB, N, D);
        cond = ds_tensor_f32(p->blk_c, 2, TB, D);
    } else {
        st.hidden = ds_tensor_like(&p->t_blk_h, p->t_blk_h.data, 3, (const int64_t[]){TB, N, D});
        cond = ds_tensor_like(&p->t_blk_c, p->t_blk_c.data, 2, (const int64_t[]){TB, D});
    }
    DS_TRY(ds_dit_embed(p->dit, xin, p->tsteps, labels, &st.hidden, &cond, err));
    dit_blocks model = {p->dit, &cond};
    ds_graph_key key = {0};
    ds_graph_key_add_ptr(&key, p->dit);
    ds_graph_key_add_tensor(&key, &cond);
    const ds_block_list list = {"transformer_blocks", ds_dit_block_count(p->dit), DS_BLOCK_IO_HIDDEN, dit_block_fn, &model,
                                p->graphs, &key};
    DS_TRY(r->run(r->ctx, &list, 1, &st, step, 0, err));
    return ds_dit_final(p->dit, &st.hidden, &cond, xout, err);
}

ds_status ds_pipeline_dit_generate(ds_pipeline *p, const ds_gen_params *g, ds_gen_result *res, ds_err *err) {
    const ds_dit_config *cfg = ds_dit_get_config(p->dit);
    const int64_t C = cfg->in_channels, Cout = cfg->out_channels;
    int W = g->width, H = g->height;
    if (W <= 0 && H <= 0) ds_pipeline_default_size(p, &W, &H);
    else if (W <= 0) W = H;
    else if (H <= 0) H = W;
    const int64_t quantum = (int64_t)p->vae_scale * cfg->patch_size;
    if (W != H) return DS_FAIL(err, DS_ERR_INVALID_ARG, "width: DiT makes square images (width %d != height %d)", W, H);
    if (W % quantum || W / p->vae_scale > p->max_w)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "width: %d must be a multiple of %lld and at most %d", W,
                       (long long)quantum, p->max_w * p->vae_scale);
    const int64_t S = W / p->vae_scale;
    const int steps = g->steps > 0 ? g->steps : 50;
    const float gs = isnan(g->guidance_scale) ? 4.0f : g->guidance_scale;
    if (!isfinite(gs)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "guidance_scale: must be finite");
    const int per = g->num_images > 0 ? g->num_images : 1;
    if (!g->class_labels || g->n_labels < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "class_labels: a class-conditional model needs at least one label");
    const int64_t B = (int64_t)g->n_labels * per;
    if (B > p->opts.max_images)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "num_images: %lld images requested, this server allows %d per request",
                       (long long)B, p->opts.max_images);
    for (int i = 0; i < g->n_labels; i++)
        if (g->class_labels[i] < 0 || g->class_labels[i] >= cfg->num_classes)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "class_labels: %d is outside 0..%lld", g->class_labels[i],
                           (long long)cfg->num_classes - 1);
    ds_scheduler *sch;
    DS_TRY(ds_pipeline_pick_scheduler(p, g->scheduler, &sch, err));
    DS_TRY(ds_scheduler_set_timesteps(sch, steps, NAN, err));

    const bool cfg_on = gs > 1.0f;
    const int64_t TB = cfg_on ? 2 * B : B;
    const int64_t per_lat = C * S * S, n = B * per_lat;
    const int64_t shape[4] = {B, C, S, S};
    DS_TRY(ds_pipeline_init_latents(g, shape, p->lat, err));
    for (int64_t b = 0; b < B; b++) {
        p->labels[b] = g->class_labels[b / per];
        if (cfg_on) p->labels[B + b] = (int32_t)cfg->num_classes; /* the null class */
    }
    /* the transformer's input / output: views over the host buffers on the CPU, device buffers on CUDA */
    ds_tensor xin = ds_tensor_like(&p->t_xin, p->t_xin.data, 4, (const int64_t[]){TB, C, S, S});
    ds_tensor xout = ds_tensor_like(&p->t_xout, p->t_xout.data, 4, (const int64_t[]){TB, Cout, S, S});
    const float *ts = ds_scheduler_timesteps(sch);
    const ds_block_runner *runner = g->runner;
    if (runner) {
        const int64_t maxN = ds_dit_tokens(p->dit, p->max_w), D = cfg->hidden, maxTB = 2 * (int64_t)p->opts.max_images;
        if (p->pl.device.kind == DS_DEVICE_CPU)
            DS_TRY(ds_pipeline_runner_buffers(p, (size_t)(maxTB * maxN * D), (size_t)(maxTB * D), 0, 0, 0, err));
        ds_block_request req;
        memset(&req, 0, sizeof req);
        req.steps = steps;
        req.calls_per_step = 1;
        req.n_lists = 1;
        req.list_names[0] = "transformer_blocks";
        req.list_blocks[0] = ds_dit_block_count(p->dit);
        req.hidden_numel = TB * ds_dit_tokens(p->dit, S) * D;
        req.batched_cfg = cfg_on;
        req.device = p->pl.device;
        req.dtype = p->pl.dtype;
        DS_TRY(runner->begin(runner->ctx, &req, err));
    }
    double t0 = ds_pipeline_now_ms();
    for (int i = 0; i < steps; i++) {
        memcpy(p->xin, p->lat, (size_t)n * sizeof(float));
        if (cfg_on) memcpy(p->xin + n, p->lat, (size_t)n * sizeof(float));
        for (int64_t b = 0; b < TB; b++) p->tsteps[b] = ts[i];
        DS_TRY(ds_tensor_write_f32(&xin, p->xin, p->staging, p->staging_bytes, err)); /* CPU: same memory */
        if (runner) DS_TRY(dit_runner_forward(p, runner, &xin, p->labels, &xout, i, err));
        else DS_TRY(ds_dit_forward(p->dit, &xin, p->tsteps, p->labels, &xout, err));
        DS_TRY(ds_tensor_read_f32(p->xout, &xout, p->staging, p->staging_bytes, err));
        /* eps = first C channels of each sample; CFG: uncond + g * (cond - uncond), as diffusers in f32 */
        for (int64_t b = 0; b < B; b++) {
            const float *cond = p->xout + b * Cout * S * S;
            const float *unc = cfg_on ? p->xout + (B + b) * Cout * S * S : NULL;
            float *e = p->eps + b * per_lat;
            for (int64_t k = 0; k < per_lat; k++) e[k] = cfg_on ? unc[k] + gs * (cond[k] - unc[k]) : cond[k];
        }
        DS_TRY(ds_scheduler_step(sch, i, p->eps, p->lat, n, err));
        if (runner && runner->step_done) runner->step_done(runner->ctx, i + 1, steps);
        if (g->on_step && g->on_step(g->user, i + 1, steps, p->lat, n))
            return DS_FAIL(err, DS_ERR_CANCELLED, "cancelled after step %d of %d", i + 1, steps);
    }
    double t1 = ds_pipeline_now_ms();
    DS_TRY(ds_pipeline_decode(p, p->lat, shape, res, err));
    res->steps = steps;
    res->denoise_ms = t1 - t0;
    res->decode_ms = ds_pipeline_now_ms() - t1;
    return DS_OK;
}
