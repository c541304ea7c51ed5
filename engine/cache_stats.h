/* cache_stats.h - statistics of one cached generation (what `/v1/stats/<id>` returns): per block list
 * (cache context) and CFG branch, the cached step indices, every recorded residual diff (cache-dit's
 * residual_diffs: one per step where the similarity test ran, sentinels -1.0 for threshold >= 1 and -2.0 for
 * a shape change included, as cache-dit includes them), percentiles P0/P25/P50/P75/P95 (numpy's default
 * linear rule) plus min/max over those values, block forwards computed and skipped, the speedup estimate
 * (block forwards a full run needs / block forwards computed) and wall time per denoising step. */
#ifndef DS_CACHE_STATS_H
#define DS_CACHE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_CACHE_MAX_LISTS 4

/* One branch of one context: branch 0 = non-CFG (cache-dit's plain fields), 1 = CFG (its cfg_ twins). */
typedef struct ds_cache_branch_stats {
    int      n_cached;         /* cached steps (accumulated_cached_steps) */
    int     *cached_steps;     /* [n_cached] step indices (cache-dit's per-branch step index), owned */
    int      n_diffs;
    int     *diff_steps;       /* [n_diffs] step index of each recorded diff, increasing, owned */
    double  *diffs;            /* [n_diffs] the diffs (as cache-dit records them, sentinels included), owned */
    double   pct[5];           /* P0, P25, P50, P75, P95 over diffs (0 when n_diffs == 0) */
    double   min, max;
    int64_t  calls;            /* transformer calls this branch ran */
    int64_t  blocks_computed;  /* block forwards run */
    int64_t  blocks_skipped;   /* block forwards replaced by the cached residual */
} ds_cache_branch_stats;

typedef struct ds_cache_list_stats {
    char     name[64];
    int      n_blocks;
    int      n_branches;        /* 1, or 2 with enable_separate_cfg */
    int      executed_steps;    /* cache-dit's accumulated_executed_steps */
    int      transformer_steps; /* accumulated_transformer_executed_steps */
    ds_cache_branch_stats branch[2];
} ds_cache_list_stats;

typedef struct ds_cache_stats {
    char     config[256];       /* ds_cache_config_str of the request's config */
    int      steps;             /* denoising steps */
    int      calls_per_step;
    int      n_lists;
    ds_cache_list_stats lists[DS_CACHE_MAX_LISTS];
    int64_t  blocks_full;       /* block forwards an uncached run needs */
    int64_t  blocks_computed;   /* block forwards run */
    double   speedup_estimate;  /* blocks_full / blocks_computed (1 when nothing ran) */
    double  *step_ms;           /* [steps] wall milliseconds of each denoising step, owned */
    double   denoise_ms;        /* sum of step_ms */
} ds_cache_stats;

/* numpy.percentile(v, q) with the default 'linear' method over n values (v need not be sorted; it is not
 * modified). Uses a scratch of n doubles from the caller (tmp). Returns 0 for n == 0. */
double ds_cache_percentile(const double *v, int n, double q, double *tmp);

/* Fill pct/min/max of b from its diffs (tmp: scratch of n_diffs doubles). */
void ds_cache_branch_stats_summarize(ds_cache_branch_stats *b, double *tmp);

/* The stats as a JSON document (pretty: indented). *out is malloc'd, caller frees. Errors: DS_ERR_OOM. */
ds_status ds_cache_stats_to_json(const ds_cache_stats *s, char **out, ds_err *err);

/* A short human table (one line per list and branch) into f (a FILE *, e.g. stderr). */
void ds_cache_stats_print(const ds_cache_stats *s, void *file);

/* Release what s owns and zero it (NULL allowed). */
void ds_cache_stats_free(ds_cache_stats *s);

#ifdef __cplusplus
}
#endif

#endif /* DS_CACHE_STATS_H */
