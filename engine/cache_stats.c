/* cache_stats.c - percentiles (numpy's linear rule), the JSON writer and the short table of ds_cache_stats. */
#include "cache_stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cJSON.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ds_cache_percentile(const double *v, int n, double q, double *tmp) {
    if (n <= 0) return 0.0;
    memcpy(tmp, v, (size_t)n * sizeof(double));
    qsort(tmp, (size_t)n, sizeof(double), cmp_double);
    /* numpy 'linear': virtual index (n-1) q/100, then numpy's _lerp: a + (b-a) t, or b - (b-a)(1-t) for t >= .5 */
    double idx = (double)(n - 1) * (q / 100.0);
    int lo = (int)floor(idx);
    if (lo >= n - 1) return tmp[n - 1];
    if (lo < 0) return tmp[0];
    double t = idx - lo, a = tmp[lo], b = tmp[lo + 1], d = b - a;
    return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

void ds_cache_branch_stats_summarize(ds_cache_branch_stats *b, double *tmp) {
    static const double qs[5] = {0, 25, 50, 75, 95};
    memset(b->pct, 0, sizeof b->pct);
    b->min = b->max = 0.0;
    if (b->n_diffs <= 0) return;
    for (int i = 0; i < 5; i++) b->pct[i] = ds_cache_percentile(b->diffs, b->n_diffs, qs[i], tmp);
    b->min = b->max = b->diffs[0];
    for (int i = 1; i < b->n_diffs; i++) {
        if (b->diffs[i] < b->min) b->min = b->diffs[i];
        if (b->diffs[i] > b->max) b->max = b->diffs[i];
    }
}

static cJSON *branch_json(const ds_cache_branch_stats *b, int index) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "branch", index == 0 ? "non_cfg" : "cfg");
    cJSON_AddNumberToObject(o, "calls", (double)b->calls);
    cJSON_AddNumberToObject(o, "accumulated_cached_steps", b->n_cached);
    cJSON *cs = cJSON_AddArrayToObject(o, "cached_steps");
    for (int i = 0; cs && i < b->n_cached; i++) cJSON_AddItemToArray(cs, cJSON_CreateNumber(b->cached_steps[i]));
    cJSON *rd = cJSON_AddObjectToObject(o, "residual_diffs");
    for (int i = 0; rd && i < b->n_diffs; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", b->diff_steps[i]);
        cJSON_AddItemToObject(rd, k, cJSON_CreateNumber(b->diffs[i]));
    }
    cJSON *pc = cJSON_AddObjectToObject(o, "diff_percentiles");
    if (pc && b->n_diffs > 0) {
        static const char *names[5] = {"P0", "P25", "P50", "P75", "P95"};
        for (int i = 0; i < 5; i++) cJSON_AddNumberToObject(pc, names[i], b->pct[i]);
        cJSON_AddNumberToObject(pc, "min", b->min);
        cJSON_AddNumberToObject(pc, "max", b->max);
    }
    cJSON_AddNumberToObject(o, "blocks_computed", (double)b->blocks_computed);
    cJSON_AddNumberToObject(o, "blocks_skipped", (double)b->blocks_skipped);
    return o;
}

ds_status ds_cache_stats_to_json(const ds_cache_stats *s, char **out, ds_err *err) {
    *out = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) return DS_FAIL(err, DS_ERR_OOM, "cache stats: out of memory");
    cJSON_AddStringToObject(root, "cache_options", s->config);
    cJSON_AddNumberToObject(root, "steps", s->steps);
    cJSON_AddNumberToObject(root, "calls_per_step", s->calls_per_step);
    cJSON_AddNumberToObject(root, "blocks_full", (double)s->blocks_full);
    cJSON_AddNumberToObject(root, "blocks_computed", (double)s->blocks_computed);
    cJSON_AddNumberToObject(root, "speedup_estimate", s->speedup_estimate);
    cJSON_AddNumberToObject(root, "denoise_ms", s->denoise_ms);
    cJSON *sm = cJSON_AddArrayToObject(root, "step_ms");
    for (int i = 0; sm && s->step_ms && i < s->steps; i++) cJSON_AddItemToArray(sm, cJSON_CreateNumber(s->step_ms[i]));
    cJSON_AddStringToObject(root, "percentiles_note",
                            "numpy linear percentiles over every recorded diff, sentinels (-1.0: threshold >= 1, "
                            "-2.0: shape change) included as cache-dit includes them");
    cJSON *ls = cJSON_AddArrayToObject(root, "lists");
    for (int l = 0; ls && l < s->n_lists; l++) {
        const ds_cache_list_stats *L = &s->lists[l];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddStringToObject(o, "name", L->name);
        cJSON_AddNumberToObject(o, "n_blocks", L->n_blocks);
        cJSON_AddNumberToObject(o, "accumulated_executed_steps", L->executed_steps);
        cJSON_AddNumberToObject(o, "accumulated_transformer_executed_steps", L->transformer_steps);
        cJSON *br = cJSON_AddArrayToObject(o, "branches");
        for (int b = 0; br && b < L->n_branches; b++) cJSON_AddItemToArray(br, branch_json(&L->branch[b], b));
        cJSON_AddItemToArray(ls, o);
    }
    *out = cJSON_Print(root);
    cJSON_Delete(root);
    if (!*out) return DS_FAIL(err, DS_ERR_OOM, "cache stats: out of memory printing JSON");
    return DS_OK;
}

void ds_cache_stats_print(const ds_cache_stats *s, void *file) {
    FILE *f = file;
    fprintf(f, "cache %s: %d steps, block forwards %lld of %lld, speedup_estimate %.3fx, denoise %.1f ms\n", s->config,
            s->steps, (long long)s->blocks_computed, (long long)s->blocks_full, s->speedup_estimate, s->denoise_ms);
    fprintf(f, "| %-26s | %-6s | %-6s | %-8s | %-7s | %-7s | %-7s | %-7s | %-7s | %-7s |\n", "list", "branch", "cached",
            "skipped", "P0", "P25", "P50", "P75", "P95", "max");
    for (int l = 0; l < s->n_lists; l++)
        for (int b = 0; b < s->lists[l].n_branches; b++) {
            const ds_cache_branch_stats *B = &s->lists[l].branch[b];
            fprintf(f, "| %-26.26s | %-6s | %-6d | %-8lld | %-7.3f | %-7.3f | %-7.3f | %-7.3f | %-7.3f | %-7.3f |\n",
                    s->lists[l].name, b ? "cfg" : "-", B->n_cached, (long long)B->blocks_skipped, B->pct[0],
                    B->pct[1], B->pct[2], B->pct[3], B->pct[4], B->max);
        }
}

void ds_cache_stats_free(ds_cache_stats *s) {
    if (!s) return;
    for (int l = 0; l < DS_CACHE_MAX_LISTS; l++)
        for (int b = 0; b < 2; b++) {
            free(s->lists[l].branch[b].cached_steps);
            free(s->lists[l].branch[b].diff_steps);
            free(s->lists[l].branch[b].diffs);
        }
    free(s->step_ms);
    memset(s, 0, sizeof *s);
}
