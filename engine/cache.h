/* cache.h - DBCache (cache-dit's Dual Block Cache) as a ds_block_runner: per block list one context, per
 * context up to two CFG branches, each with cache-dit's counters, gates, Fn reference and cached middle
 * residuals (hidden and encoder streams), optionally forecast by TaylorSeer.
 *
 * One wrapped call of a list (cache-dit's CachedBlocks_Pattern_Base.forward):
 *   h0 = copy(h); run Fn = blocks[0, F); r = h - h0; mark_step_begin (counters advance here);
 *   decide with the gates in cache-dit's order (warmup range(0, W, I) -> steps mask (1: compute; 0 + static:
 *   cache) -> max_cached_steps -> max_continuous_cached_steps -> accumulated-diff cap -> threshold <= 0 -> no
 *   reference -> diff = mean|ref - r| / mean|ref| < threshold, strict; threshold >= 1 records -1.0 and caches);
 *   cache:   h += R_h (or the forecast; hidden_states type: h = H_mid), e += R_e; run Bn
 *   compute: ref = r; run Mn = blocks[F, N-B); R_h = h_mid - h_in, R_e = e_mid - e_in (or the calibrators'
 *            update); run Bn = blocks[N-B, N).
 * max_continuous_cached_steps uses cache-dit's (installed v1.5 code) counter: +1 per cached step, reset to 0
 * at mark_step_begin when the previous step of this branch was not cached.
 *
 * Per request: begin() resets every counter, buffer and calibrator (a clean context per request, not
 * cache-dit's one-call-late refresh) and (re)allocates the buffers for the request's sizes; run() never
 * allocates. A ds_cache serves one generation at a time.
 *
 * Running a cached generation from C:
 *     ds_cache_config cfg; ds_cache_config_parse_any("F8B0_W4MC3_T0O1_R0.12", &cfg, &err);
 *     ds_cache_stats st; ds_gen_result res;
 *     ds_cache_generate(pipeline, &params, &cfg, &res, &st, &err);   // params.runner is set internally
 *     ... ds_cache_stats_to_json(&st, &json, &err); ds_cache_stats_free(&st); ds_gen_result_free(&res);
 * or, to keep one cache object: ds_cache_create(&cfg, &c, &err); params.runner = ds_cache_runner(c);
 * ds_pipeline_generate(...); ds_cache_get_stats(c, &st, &err); ds_cache_free(c). */
#ifndef DS_CACHE_H
#define DS_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "blocks.h"
#include "cache_config.h"
#include "cache_stats.h"
#include "pipeline.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ds_cache ds_cache; /* opaque */

/* Create a cache for cfg (copied; validated). Buffers are allocated by the runner's begin() for each
 * request's sizes. *out is owned by the caller (ds_cache_free). Errors: DS_ERR_INVALID_ARG (a bad field,
 * named), DS_ERR_OOM. */
ds_status ds_cache_create(const ds_cache_config *cfg, ds_cache **out, ds_err *err);

/* Free (NULL allowed). */
void ds_cache_free(ds_cache *c);

/* The runner to put in ds_gen_params.runner (owned by c; valid until ds_cache_free). */
const ds_block_runner *ds_cache_runner(ds_cache *c);

/* The config c runs (owned by c). */
const ds_cache_config *ds_cache_get_config(const ds_cache *c);

/* Copy the statistics of the last (or running) request into *out (owned arrays; free with
 * ds_cache_stats_free). Errors: DS_ERR_OOM. */
ds_status ds_cache_get_stats(const ds_cache *c, ds_cache_stats *out, ds_err *err);

/* The progress counters of the running request, without copying anything (for per-step progress
 * events; the worker calls it once per step, so it must not allocate): for each list l < *n_lists and
 * branch b < n_branches[l], how many steps were cached so far and the last recorded diff with the number
 * of diffs recorded. Arrays are [DS_CACHE_MAX_LISTS][2]. Before the first request *n_lists = 0. */
void ds_cache_progress(const ds_cache *c, int *n_lists, int n_branches[DS_CACHE_MAX_LISTS],
                       int n_cached[DS_CACHE_MAX_LISTS][2], int n_diffs[DS_CACHE_MAX_LISTS][2],
                       double last_diff[DS_CACHE_MAX_LISTS][2]);

/* One generation with cfg (NULL or disabled: no runner, the pipeline's plain path, and stats then report
 * every block computed). params is not modified (a copy carries the runner and a step-timing callback that
 * forwards to params->on_step). stats may be NULL. On error *res is freed/zeroed and *stats (if given) holds
 * what was gathered so far. Errors: those of ds_cache_create and ds_pipeline_generate. */
ds_status ds_cache_generate(ds_pipeline *p, const ds_gen_params *params, const ds_cache_config *cfg,
                            ds_gen_result *res, ds_cache_stats *stats, ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_CACHE_H */
