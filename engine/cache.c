/* cache.c - DBCache as a ds_block_runner (see cache.h): contexts per block list, CFG branches, cache-dit's
 * step accounting and gate order, Fn reference / middle residual buffers, TaylorSeer calibrators, stats. */
#include "cache.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "cache_vec.h"
#include "taylorseer.h"

typedef struct branch_state {
    ds_tensor fn_ref;           /* Fn residual of the last computed step [hidden_numel] (on the state's device) */
    bool    has_fn_ref;
    ds_tensor mid_h, mid_e;     /* middle residuals (no calibrator) or calibrator scratch */
    bool    has_mid_h, has_mid_e;
    ds_taylorseer ts_h, ts_e;   /* calibrators (when enabled) */
    int    *cached;             /* cached step indices */
    int     n_cached;
    int    *diff_steps;
    double *diffs;
    int     n_diffs;
    double  acc_diff;           /* accumulated_residual_diff */
    int     continuous;         /* continuous_cached_steps */
    int64_t calls, computed, skipped;
} branch_state;

typedef struct cache_ctx {
    char    name[64];
    int     n_blocks, F, B;
    bool    has_encoder;
    int     executed_steps, tx_steps;
    branch_state br[2];
} cache_ctx;

struct ds_cache {
    ds_cache_config cfg;
    ds_block_runner runner;
    bool     separate_cfg;
    bool     use_ts_h, use_ts_e;
    bool     has_mask;
    int      mask_len;
    uint8_t  mask[DS_CACHE_MAX_MASK];
    int      warmup_end;           /* warmup = range(0, warmup_end, I) */
    int      n_ctx;
    cache_ctx ctx[DS_CACHE_MAX_LISTS];
    ds_block_request req;
    bool     begun;
    int64_t  cap_h, cap_e, cap_steps; /* allocated sizes */
    ds_device cap_device;              /* device and dtype of the allocated vectors */
    ds_dtype  cap_dtype;
    ds_tensor snap_h, snap_e, tmp_r;   /* vectors (cache_vec.h) */
    double  *step_ms;
    double   t_last;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- buffers ------------------------------------------------------------------------------------------ */

static void branch_free(branch_state *b) {
    ds_cvec_free(&b->fn_ref);
    ds_cvec_free(&b->mid_h);
    ds_cvec_free(&b->mid_e);
    ds_taylorseer_free(&b->ts_h);
    ds_taylorseer_free(&b->ts_e);
    free(b->cached);
    free(b->diff_steps);
    free(b->diffs);
    memset(b, 0, sizeof *b);
}

static void free_buffers(ds_cache *c) {
    for (int l = 0; l < DS_CACHE_MAX_LISTS; l++)
        for (int b = 0; b < 2; b++) branch_free(&c->ctx[l].br[b]);
    ds_cvec_free(&c->snap_h);
    ds_cvec_free(&c->snap_e);
    ds_cvec_free(&c->tmp_r);
    free(c->step_ms);
    c->step_ms = NULL;
    c->cap_h = c->cap_e = c->cap_steps = 0;
}

/* (Re)allocate for a request needing nh / ne elements per stream and ns steps (calls), on the request's
 * device and dtype. Buffers that are already large enough (and on the same device, of the same dtype) are
 * kept: they are reused across requests. */
static ds_status ensure_buffers(ds_cache *c, const ds_block_request *req, int64_t ns, ds_err *err) {
    const int64_t nh = req->hidden_numel, ne = req->encoder_numel;
    const ds_device dev = req->device;
    const ds_dtype dt = dev.kind == DS_DEVICE_CPU ? DS_F32 : req->dtype;
    if (nh <= c->cap_h && ne <= c->cap_e && ns <= c->cap_steps && c->tmp_r.data && dev.kind == c->cap_device.kind &&
        dev.index == c->cap_device.index && dt == c->cap_dtype)
        return DS_OK;
    free_buffers(c);
    DS_TRY(ds_cvec_alloc(&c->snap_h, nh, dev, dt, err));
    DS_TRY(ds_cvec_alloc(&c->tmp_r, nh, dev, dt, err));
    DS_TRY(ds_cvec_alloc(&c->snap_e, ne, dev, dt, err));
    c->step_ms = calloc((size_t)ns + 1, sizeof(double));
    if (!c->step_ms) return DS_FAIL(err, DS_ERR_OOM, "cache: out of memory");
    for (int l = 0; l < DS_CACHE_MAX_LISTS; l++)
        for (int b = 0; b < 2; b++) {
            branch_state *br = &c->ctx[l].br[b];
            DS_TRY(ds_cvec_alloc(&br->fn_ref, nh, dev, dt, err));
            DS_TRY(ds_cvec_alloc(&br->mid_h, nh, dev, dt, err));
            DS_TRY(ds_cvec_alloc(&br->mid_e, ne, dev, dt, err));
            br->cached = malloc((size_t)(ns + 1) * sizeof(int));
            br->diff_steps = malloc((size_t)(ns + 1) * sizeof(int));
            br->diffs = malloc((size_t)(ns + 1) * sizeof(double));
            if (!br->cached || !br->diff_steps || !br->diffs) return DS_FAIL(err, DS_ERR_OOM, "cache: out of memory");
            if (c->use_ts_h) DS_TRY(ds_taylorseer_init(&br->ts_h, c->cfg.taylorseer_order, nh, dev, dt, err));
            if (c->use_ts_e && ne > 0)
                DS_TRY(ds_taylorseer_init(&br->ts_e, c->cfg.taylorseer_order, ne, dev, dt, err));
        }
    c->cap_h = nh;
    c->cap_e = ne;
    c->cap_steps = ns;
    c->cap_device = dev;
    c->cap_dtype = dt;
    return DS_OK;
}

/* ---- runner ------------------------------------------------------------------------------------------- */

static ds_status cache_begin(void *vc, const ds_block_request *req, ds_err *err) {
    ds_cache *c = vc;
    c->begun = false;
    if (req->n_lists < 1 || req->n_lists > DS_CACHE_MAX_LISTS || req->steps < 1 || req->calls_per_step < 1 ||
        req->hidden_numel < 1)
        return DS_FAIL(err, DS_ERR_INTERNAL, "cache: bad request description (%d lists, %d steps)", req->n_lists,
                       req->steps);
    const ds_cache_config *g = &c->cfg;
    if (g->enabled)
        for (int l = 0; l < req->n_lists; l++) {
            const int n = req->list_blocks[l];
            if (g->Fn_compute_blocks > n)
                return DS_FAIL(err, DS_ERR_INVALID_ARG,
                               "cache config: Fn_compute_blocks = %d is larger than the %d blocks of %s",
                               g->Fn_compute_blocks, n, req->list_names[l]);
            if (g->Bn_compute_blocks > n || g->Fn_compute_blocks + g->Bn_compute_blocks > n)
                return DS_FAIL(err, DS_ERR_INVALID_ARG,
                               "cache config: Fn_compute_blocks + Bn_compute_blocks = %d + %d is larger than the %d "
                               "blocks of %s",
                               g->Fn_compute_blocks, g->Bn_compute_blocks, n, req->list_names[l]);
        }
    /* the steps computation mask for this request's step count */
    c->has_mask = false;
    if (g->enabled && g->mask_kind == DS_MASK_EXPLICIT) {
        c->has_mask = true;
        c->mask_len = g->mask_len;
        memcpy(c->mask, g->mask, (size_t)g->mask_len);
    } else if (g->enabled && g->mask_kind != DS_MASK_NONE) {
        if (g->num_inference_steps > 0 && g->num_inference_steps != req->steps)
            return DS_FAIL(err, DS_ERR_INVALID_ARG,
                           "cache config: num_inference_steps = %d but the request runs %d steps (the '%s' mask is "
                           "expanded for the request's steps)",
                           g->num_inference_steps, req->steps, ds_cache_mask_preset_name(g->mask_kind));
        ds_status s = ds_cache_steps_mask(g->mask_kind, req->steps, c->mask, err);
        if (s != DS_OK) {
            ds_err_prefix(err, "cache config");
            return s;
        }
        c->has_mask = true;
        c->mask_len = req->steps;
    }
    c->warmup_end = g->max_warmup_steps;
    if (c->has_mask) {
        int lead = 0;
        while (lead < c->mask_len && c->mask[lead] == 1) lead++;
        if (lead < c->warmup_end) c->warmup_end = lead;
    }
    const int64_t ns = (int64_t)req->steps * req->calls_per_step;
    DS_TRY(ensure_buffers(c, req, ns, err));
    c->req = *req;
    c->n_ctx = req->n_lists;
    for (int l = 0; l < c->n_ctx; l++) {
        cache_ctx *x = &c->ctx[l];
        snprintf(x->name, sizeof x->name, "%s", req->list_names[l] ? req->list_names[l] : "blocks");
        x->n_blocks = req->list_blocks[l];
        x->F = g->Fn_compute_blocks;
        x->B = g->Bn_compute_blocks;
        x->has_encoder = req->encoder_numel > 0;
        x->executed_steps = x->tx_steps = 0;
        for (int b = 0; b < 2; b++) {
            branch_state *br = &x->br[b];
            br->has_fn_ref = br->has_mid_h = br->has_mid_e = false;
            br->n_cached = br->n_diffs = 0;
            br->acc_diff = 0.0;
            br->continuous = 0;
            br->calls = br->computed = br->skipped = 0;
            if (c->use_ts_h) ds_taylorseer_reset(&br->ts_h);
            if (c->use_ts_e && req->encoder_numel > 0) ds_taylorseer_reset(&br->ts_e);
        }
    }
    memset(c->step_ms, 0, (size_t)(c->cap_steps + 1) * sizeof(double));
    c->t_last = now_ms();
    c->begun = true;
    return DS_OK;
}

static void cache_step_done(void *vc, int step, int steps) {
    ds_cache *c = vc;
    double t = now_ms();
    if (c->begun && step >= 1 && step <= steps && step <= c->req.steps) c->step_ms[step - 1] = t - c->t_last;
    c->t_last = t;
}

typedef struct block_range {
    const ds_block_list *L;
    int from, to;
    ds_block_state *st;
} block_range;

static ds_status block_range_body(void *arg, ds_err *err) {
    block_range *r = arg;
    for (int i = r->from; i < r->to; i++) DS_TRY(r->L->forward(r->L->model, i, r->st, err));
    return DS_OK;
}

/* Blocks [from, to) of L in order on st: through the list's graph cache when it has one (a CUDA graph per
 * range and shape, graph.h), else eagerly. */
static ds_status run_blocks(const ds_block_list *L, int from, int to, ds_block_state *st, ds_err *err) {
    block_range r = {L, from, to, st};
    if (from >= to) return DS_OK;
    if (!L->graphs || !L->graph_key) return block_range_body(&r, err);
    ds_graph_key key = *L->graph_key;
    ds_graph_key_add_ptr(&key, (const void *)L->forward);
    ds_graph_key_add(&key, (uint64_t)(uint32_t)from << 32 | (uint32_t)to);
    ds_graph_key_add_tensor(&key, &st->hidden);
    ds_graph_key_add_tensor(&key, &st->encoder);
    return ds_graph_run(L->graphs, st->hidden.device, &key, block_range_body, &r, err);
}

static void record_diff(branch_state *br, int step, double diff) {
    for (int i = br->n_diffs - 1; i >= 0 && br->diff_steps[i] >= step; i--)
        if (br->diff_steps[i] == step) return; /* first value per step only */
    br->diff_steps[br->n_diffs] = step;
    br->diffs[br->n_diffs++] = diff;
    if (diff > 0.0) br->acc_diff += diff;
}

static bool branch_has_diff(const branch_state *br, int step, double *diff) {
    for (int i = br->n_diffs - 1; i >= 0; i--)
        if (br->diff_steps[i] == step) {
            *diff = br->diffs[i];
            return true;
        }
    return false;
}

/* can_cache for branch br at step (cache-dit order) into *out. Records the diff where cache-dit records it
 * (the relative L1 of cache_vec.h: one reduction on the state's device). */
static ds_status can_cache(ds_cache *c, cache_ctx *x, int bi, int step, const ds_tensor *r, int64_t nh, bool *out,
                           ds_err *err) {
    *out = false;
    const ds_cache_config *g = &c->cfg;
    branch_state *br = &x->br[bi];
    if (step < c->warmup_end && step % g->warmup_interval == 0) return DS_OK;
    if (c->has_mask) {
        if (step < c->mask_len && c->mask[step] == 1) return DS_OK;
        if (g->steps_computation_policy == DS_SCM_STATIC) {
            *out = true;
            return DS_OK;
        }
    }
    if (g->max_cached_steps >= 0 && br->n_cached >= g->max_cached_steps) return DS_OK;
    int cont = br->continuous;
    if (br->n_cached && br->cached[br->n_cached - 1] == step) cont--;
    if (g->max_continuous_cached_steps >= 0 && cont >= g->max_continuous_cached_steps) return DS_OK;
    if (g->max_accumulated_residual_diff_threshold > 0.0 && br->acc_diff >= g->max_accumulated_residual_diff_threshold)
        return DS_OK;
    const double thr = g->residual_diff_threshold;
    if (thr <= 0.0) return DS_OK;
    if (!br->has_fn_ref) return DS_OK;
    if (thr >= 1.0) {
        record_diff(br, step, -1.0);
        *out = true;
        return DS_OK;
    }
    double diff;
    if (!(c->separate_cfg && bi == 1 && !g->cfg_diff_compute_separate && branch_has_diff(&x->br[0], step, &diff)))
        DS_TRY(ds_cvec_rel_l1(&br->fn_ref, r, nh, &diff, err));
    record_diff(br, step, diff);
    *out = diff < thr;
    return DS_OK;
}

static ds_status run_list(ds_cache *c, cache_ctx *x, const ds_block_list *L, ds_block_state *st, ds_err *err) {
    const ds_cache_config *g = &c->cfg;
    const int N = x->n_blocks;
    if (!g->enabled) { /* pass-through: every block, counted */
        x->tx_steps++;
        x->executed_steps++;
        x->br[0].calls++;
        x->br[0].computed += N;
        return run_blocks(L, 0, N, st, err);
    }
    const int F = x->F, B = x->B, mid_end = N - B;
    ds_tensor *h = &st->hidden; /* [B, N, D] as a vector of nh */
    const int64_t nh = ds_tensor_numel(&st->hidden);
    const bool enc = L->io == DS_BLOCK_IO_HIDDEN_ENCODER && st->encoder.data != NULL;
    ds_tensor *e = enc ? &st->encoder : NULL;
    const int64_t ne = enc ? ds_tensor_numel(&st->encoder) : 0;
    if (nh > c->cap_h || ne > c->cap_e)
        return DS_FAIL(err, DS_ERR_INTERNAL, "cache: %s state (%lld, %lld floats) exceeds what begin() sized", x->name,
                       (long long)nh, (long long)ne);

    /* Fn, and the Fn residual on a copy of the input */
    DS_TRY(ds_cvec_copy(&c->snap_h, h, nh, err));
    DS_TRY(run_blocks(L, 0, F, st, err));
    ds_tensor r = c->tmp_r;
    DS_TRY(ds_cvec_sub(&r, h, &c->snap_h, nh, err));

    /* mark_step_begin */
    x->tx_steps++;
    const int ts = x->tx_steps - 1;
    const bool is_cfg = c->separate_cfg && (g->cfg_compute_first ? ts % 2 == 0 : ts % 2 != 0);
    if (!c->separate_cfg || (!g->cfg_compute_first && !is_cfg) || (g->cfg_compute_first && is_cfg)) x->executed_steps++;
    const int step = x->executed_steps - 1;
    if (step < 0 || step >= c->cap_steps)
        return DS_FAIL(err, DS_ERR_INTERNAL, "cache: step %d beyond the %lld the request declared", step,
                       (long long)c->cap_steps);
    const int bi = is_cfg ? 1 : 0;
    branch_state *br = &x->br[bi];
    if (!br->n_cached || br->cached[br->n_cached - 1] != step - 1) br->continuous = 0;
    if (c->use_ts_h) ds_taylorseer_mark_step(&br->ts_h);
    if (c->use_ts_e && enc) ds_taylorseer_mark_step(&br->ts_e);
    br->calls++;

    const bool ts_h = c->use_ts_h, ts_e = c->use_ts_e && enc;
    const bool hidden_res = !ts_h || g->taylorseer_cache_type == DS_CALIB_RESIDUAL;
    const bool enc_res = !ts_e || g->taylorseer_cache_type == DS_CALIB_RESIDUAL;
    bool cache;
    DS_TRY(can_cache(c, x, bi, step, &r, nh, &cache, err));
    /* A static-mask step before anything was computed has nothing to reuse (cache-dit fails an assertion
     * there): compute it. */
    if (cache && !(ts_h ? br->ts_h.created : br->has_mid_h)) cache = false;

    if (cache) {
        br->cached[br->n_cached++] = step;
        br->continuous++;
        bool have = true;
        if (ts_h) DS_TRY(ds_taylorseer_approximate(&br->ts_h, &br->mid_h, &have, err));
        if (hidden_res) DS_TRY(ds_cvec_add(h, &br->mid_h, h, nh, err));
        else DS_TRY(ds_cvec_copy(h, &br->mid_h, nh, err));
        if (enc) {
            have = br->has_mid_e;
            if (ts_e) DS_TRY(ds_taylorseer_approximate(&br->ts_e, &br->mid_e, &have, err));
            if (have) {
                if (enc_res) DS_TRY(ds_cvec_add(e, &br->mid_e, e, ne, err));
                else DS_TRY(ds_cvec_copy(e, &br->mid_e, ne, err));
            }
        }
        DS_TRY(run_blocks(L, mid_end, N, st, err));
        br->computed += F + B;
        br->skipped += N - F - B;
        return DS_OK;
    }
    /* compute: the Fn residual becomes the reference (swap, no copy) */
    c->tmp_r = br->fn_ref;
    br->fn_ref = r;
    br->has_fn_ref = true;
    DS_TRY(ds_cvec_copy(&c->snap_h, h, nh, err));
    if (enc) DS_TRY(ds_cvec_copy(&c->snap_e, e, ne, err));
    DS_TRY(run_blocks(L, F, mid_end, st, err));
    if (ts_h) {
        if (hidden_res) {
            DS_TRY(ds_cvec_sub(&br->mid_h, h, &c->snap_h, nh, err));
            DS_TRY(ds_taylorseer_update(&br->ts_h, &br->mid_h, err));
        } else {
            DS_TRY(ds_taylorseer_update(&br->ts_h, h, err));
        }
    } else {
        DS_TRY(ds_cvec_sub(&br->mid_h, h, &c->snap_h, nh, err));
        br->has_mid_h = true;
    }
    if (enc) {
        if (ts_e) {
            if (enc_res) {
                DS_TRY(ds_cvec_sub(&br->mid_e, e, &c->snap_e, ne, err));
                DS_TRY(ds_taylorseer_update(&br->ts_e, &br->mid_e, err));
            } else {
                DS_TRY(ds_taylorseer_update(&br->ts_e, e, err));
            }
        } else {
            DS_TRY(ds_cvec_sub(&br->mid_e, e, &c->snap_e, ne, err));
            br->has_mid_e = true;
        }
    }
    DS_TRY(run_blocks(L, mid_end, N, st, err));
    br->computed += N;
    return DS_OK;
}

static ds_status cache_run(void *vc, const ds_block_list *lists, int n_lists, ds_block_state *st, int step, int call,
                           ds_err *err) {
    ds_cache *c = vc;
    (void)step;
    (void)call;
    if (!c->begun) return DS_FAIL(err, DS_ERR_INTERNAL, "cache: run() before begin()");
    if (n_lists != c->n_ctx)
        return DS_FAIL(err, DS_ERR_INTERNAL, "cache: %d block lists, begin() declared %d", n_lists, c->n_ctx);
    for (int l = 0; l < n_lists; l++) {
        if (lists[l].n_blocks != c->ctx[l].n_blocks)
            return DS_FAIL(err, DS_ERR_INTERNAL, "cache: list %s has %d blocks, begin() declared %d", lists[l].name,
                           lists[l].n_blocks, c->ctx[l].n_blocks);
        DS_TRY(run_list(c, &c->ctx[l], &lists[l], st, err));
    }
    return DS_OK;
}

/* ---- public ------------------------------------------------------------------------------------------- */

ds_status ds_cache_create(const ds_cache_config *cfg, ds_cache **out, ds_err *err) {
    *out = NULL;
    if (!cfg) return DS_FAIL(err, DS_ERR_INVALID_ARG, "ds_cache_create: NULL config");
    DS_TRY(ds_cache_config_validate(cfg, err));
    ds_cache *c = calloc(1, sizeof *c);
    if (!c) return DS_FAIL(err, DS_ERR_OOM, "cache: out of memory");
    c->cfg = *cfg;
    /* enable_separate_cfg = None resolves to the adapter registry's value: False for DiT (batched CFG) and
     * FLUX.1 (cache-dit's has_separate_cfg is not set for them) */
    c->separate_cfg = cfg->enabled && cfg->enable_separate_cfg == 1;
    c->use_ts_h = cfg->enabled && cfg->enable_taylorseer;
    c->use_ts_e = c->use_ts_h && cfg->enable_encoder_taylorseer;
    c->runner.ctx = c;
    c->runner.split_lists = cfg->separate_block_lists;
    c->runner.begin = cache_begin;
    c->runner.run = cache_run;
    c->runner.step_done = cache_step_done;
    *out = c;
    return DS_OK;
}

void ds_cache_free(ds_cache *c) {
    if (!c) return;
    free_buffers(c);
    free(c);
}

const ds_block_runner *ds_cache_runner(ds_cache *c) { return &c->runner; }

const ds_cache_config *ds_cache_get_config(const ds_cache *c) { return &c->cfg; }

void ds_cache_progress(const ds_cache *c, int *n_lists, int n_branches[DS_CACHE_MAX_LISTS],
                       int n_cached[DS_CACHE_MAX_LISTS][2], int n_diffs[DS_CACHE_MAX_LISTS][2],
                       double last_diff[DS_CACHE_MAX_LISTS][2]) {
    *n_lists = c->begun ? c->n_ctx : 0;
    for (int l = 0; l < *n_lists; l++) {
        n_branches[l] = c->separate_cfg ? 2 : 1;
        for (int b = 0; b < n_branches[l]; b++) {
            const branch_state *br = &c->ctx[l].br[b];
            n_cached[l][b] = br->n_cached;
            n_diffs[l][b] = br->n_diffs;
            last_diff[l][b] = br->n_diffs > 0 ? br->diffs[br->n_diffs - 1] : NAN;
        }
    }
}

ds_status ds_cache_get_stats(const ds_cache *c, ds_cache_stats *s, ds_err *err) {
    memset(s, 0, sizeof *s);
    ds_cache_config_str(&c->cfg, s->config, sizeof s->config);
    if (!c->begun) return DS_OK;
    s->steps = c->req.steps;
    s->calls_per_step = c->req.calls_per_step;
    s->n_lists = c->n_ctx;
    int64_t maxd = 1;
    for (int l = 0; l < c->n_ctx; l++) {
        const cache_ctx *x = &c->ctx[l];
        ds_cache_list_stats *L = &s->lists[l];
        snprintf(L->name, sizeof L->name, "%s", x->name);
        L->n_blocks = x->n_blocks;
        L->n_branches = c->separate_cfg ? 2 : 1;
        L->executed_steps = x->executed_steps;
        L->transformer_steps = x->tx_steps;
        s->blocks_full += (int64_t)s->steps * s->calls_per_step * x->n_blocks;
        for (int b = 0; b < L->n_branches; b++) {
            const branch_state *br = &x->br[b];
            ds_cache_branch_stats *o = &L->branch[b];
            o->n_cached = br->n_cached;
            o->n_diffs = br->n_diffs;
            o->calls = br->calls;
            o->blocks_computed = br->computed;
            o->blocks_skipped = br->skipped;
            s->blocks_computed += br->computed;
            o->cached_steps = malloc((size_t)(br->n_cached + 1) * sizeof(int));
            o->diff_steps = malloc((size_t)(br->n_diffs + 1) * sizeof(int));
            o->diffs = malloc((size_t)(br->n_diffs + 1) * sizeof(double));
            if (!o->cached_steps || !o->diff_steps || !o->diffs) {
                ds_cache_stats_free(s);
                return DS_FAIL(err, DS_ERR_OOM, "cache stats: out of memory");
            }
            memcpy(o->cached_steps, br->cached, (size_t)br->n_cached * sizeof(int));
            memcpy(o->diff_steps, br->diff_steps, (size_t)br->n_diffs * sizeof(int));
            memcpy(o->diffs, br->diffs, (size_t)br->n_diffs * sizeof(double));
            if (br->n_diffs > maxd) maxd = br->n_diffs;
        }
    }
    double *tmp = malloc((size_t)maxd * sizeof(double));
    s->step_ms = calloc((size_t)s->steps, sizeof(double));
    if (!tmp || !s->step_ms) {
        free(tmp);
        ds_cache_stats_free(s);
        return DS_FAIL(err, DS_ERR_OOM, "cache stats: out of memory");
    }
    for (int l = 0; l < s->n_lists; l++)
        for (int b = 0; b < s->lists[l].n_branches; b++) ds_cache_branch_stats_summarize(&s->lists[l].branch[b], tmp);
    free(tmp);
    memcpy(s->step_ms, c->step_ms, (size_t)s->steps * sizeof(double));
    for (int i = 0; i < s->steps; i++) s->denoise_ms += s->step_ms[i];
    s->speedup_estimate = s->blocks_computed > 0 ? (double)s->blocks_full / (double)s->blocks_computed : 1.0;
    return DS_OK;
}

ds_status ds_cache_generate(ds_pipeline *p, const ds_gen_params *params, const ds_cache_config *cfg,
                            ds_gen_result *res, ds_cache_stats *stats, ds_err *err) {
    if (stats) memset(stats, 0, sizeof *stats);
    ds_cache_config none;
    if (!cfg) {
        ds_cache_config_default(&none);
        none.enabled = false;
        cfg = &none;
    }
    ds_cache *c;
    ds_status s = ds_cache_create(cfg, &c, err);
    if (s != DS_OK) {
        memset(res, 0, sizeof *res);
        return s;
    }
    ds_gen_params g = *params;
    g.runner = ds_cache_runner(c);
    s = ds_pipeline_generate(p, &g, res, err);
    if (stats) {
        ds_err e2;
        memset(&e2, 0, sizeof e2);
        if (ds_cache_get_stats(c, stats, &e2) != DS_OK && s == DS_OK) {
            *err = e2;
            s = DS_ERR_OOM;
            ds_gen_result_free(res);
        }
    }
    ds_cache_free(c);
    return s;
}
