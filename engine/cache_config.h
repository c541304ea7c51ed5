/* cache_config.h - the cache configuration of one request: cache-dit's DBCacheConfig fields and its flat
 * calibrator keys (load_configs' dict form), with cache-dit's defaults, parsed from a JSON object or from a
 * config string in either of cache-dit's encodings, validated field by field, and printed back in the long
 * form (BasicCacheConfig.strify + cache_dit.strify's calibrator tag).
 *
 * JSON keys (all optional; unknown keys are errors):
 *   cache_type "DBCache" | Fn_compute_blocks 8 | Bn_compute_blocks 0 | residual_diff_threshold 0.08 |
 *   max_accumulated_residual_diff_threshold null | max_warmup_steps 8 | warmup_interval 1 |
 *   max_cached_steps -1 | max_continuous_cached_steps -1 | enable_separate_cfg null | cfg_compute_first false |
 *   cfg_diff_compute_separate true | num_inference_steps null | steps_computation_mask null (list of 0/1, or
 *   "slow"|"medium"|"fast"|"ultra", expanded for the request's step count) | steps_computation_policy
 *   "dynamic"|"static" | enable_taylorseer false | taylorseer_order 1 | taylorseer_cache_type
 *   "residual"|"hidden_states" | enable_encoder_taylorseer false | calibrator_cache_type (alias of
 *   taylorseer_cache_type) | enable_foca false (refused: not implemented) | enable_dmd false (refused) |
 *   separate_block_lists false (ditserve's switch for cache-dit's CACHE_DIT_FLUX_ENABLE_DUMMY_BLOCKS=0).
 * A top-level {"cache_config": {...}} wrapper (cache-dit's YAML layout) is accepted too. */
#ifndef DS_CACHE_CONFIG_H
#define DS_CACHE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_CACHE_MAX_MASK 1000 /* longest steps_computation_mask (the pipelines allow up to 1000 steps) */

typedef enum ds_scm_policy { DS_SCM_DYNAMIC = 0, DS_SCM_STATIC = 1 } ds_scm_policy;
typedef enum ds_calib_cache { DS_CALIB_RESIDUAL = 0, DS_CALIB_HIDDEN_STATES = 1 } ds_calib_cache;
typedef enum ds_mask_preset {
    DS_MASK_NONE = 0,   /* no mask */
    DS_MASK_EXPLICIT,   /* mask[0..mask_len) given */
    DS_MASK_SLOW,
    DS_MASK_MEDIUM,
    DS_MASK_FAST,
    DS_MASK_ULTRA,
} ds_mask_preset;

typedef struct ds_cache_config {
    bool    enabled;               /* false: "none" (no cache; the pipeline runs every block) */
    int     Fn_compute_blocks;     /* >= 1 [8] */
    int     Bn_compute_blocks;     /* >= 0 [0] */
    double  residual_diff_threshold;                 /* [0.08]; <= 0 never caches, >= 1 always similar */
    double  max_accumulated_residual_diff_threshold; /* <= 0: none (cache-dit's None) [0] */
    int     max_warmup_steps;      /* >= 0 [8] */
    int     warmup_interval;       /* >= 1 [1] */
    int     max_cached_steps;      /* -1 unlimited [-1] */
    int     max_continuous_cached_steps; /* -1 unlimited [-1] */
    int     enable_separate_cfg;   /* -1 auto (cache-dit's None: false for DiT and FLUX.1), 0, 1 [-1] */
    bool    cfg_compute_first;     /* [false] */
    bool    cfg_diff_compute_separate; /* [true] */
    int     num_inference_steps;   /* 0 = not given [0]; only printed (_N) and checked against the mask */
    ds_mask_preset mask_kind;      /* [DS_MASK_NONE] */
    int     mask_len;              /* explicit mask length */
    uint8_t mask[DS_CACHE_MAX_MASK];
    ds_scm_policy steps_computation_policy; /* [dynamic] */
    bool    enable_taylorseer;     /* [false] */
    int     taylorseer_order;      /* 1..3 [1] */
    ds_calib_cache taylorseer_cache_type; /* [residual] */
    bool    enable_encoder_taylorseer; /* [false] (load_configs' flat-key default) */
    bool    separate_block_lists;  /* FLUX.1: double and single lists as two contexts [false] */
} ds_cache_config;

/* Fill *c with cache-dit's defaults (enabled, DBCacheConfig() + no calibrator). */
void ds_cache_config_default(ds_cache_config *c);

/* Parse a JSON object (text) into *c, starting from the defaults. Errors: DS_ERR_FORMAT (not JSON / not an
 * object), DS_ERR_INVALID_ARG naming the offending field (unknown key, wrong type, out of range, bad mask,
 * mutually exclusive calibrators, cfg_compute_first with cfg_diff_compute_separate). */
ds_status ds_cache_config_parse_json(const char *json, ds_cache_config *c, ds_err *err);

/* Parse a config string: "none", the long form "DBCache_F8B0_W8I1M0MC0_R0.08[_SCM0101.._dynamic][_N28]
 * [_CFG0][_T1O2][_S17]" or the short form "F8B0_W4MC3_T0O1_R0.12" (tokens in any order after F..B..; W, I,
 * M, MC optional inside the W token; M0 / MC0 = unlimited; a trailing _S<n> cached-step count is ignored).
 * Fields not named keep cache-dit's defaults. Errors: DS_ERR_INVALID_ARG naming the bad token/field. */
ds_status ds_cache_config_parse_string(const char *s, ds_cache_config *c, ds_err *err);

/* Parse what `ditserve generate --cache` takes: a JSON object (text starting with '{'), "none", a config
 * string, or else a path to a JSON file. Errors: those of the parsers; DS_ERR_IO (unreadable file). */
ds_status ds_cache_config_parse_any(const char *arg, ds_cache_config *c, ds_err *err);

/* Check every field (also done by the parsers). Errors: DS_ERR_INVALID_ARG naming the field. */
ds_status ds_cache_config_validate(const ds_cache_config *c, ds_err *err);

/* The long form, cache-dit's strify: "DBCache_F{F}B{B}_W{W}I{I}M{max(0,M)}MC{max(0,MC)}_R{tau}" [+ "_SCM..._
 * policy" for an explicit mask, "_SCM{preset}_policy" for a preset] [+ "_N{n}"] [+ "_CFG{0|1}" unless auto]
 * + "_T{0|1}O{order}"; "NONE" when disabled. tau is printed as Python's repr of the float. Writes at most
 * cap bytes (NUL included); returns the length it needed (like snprintf). */
int ds_cache_config_str(const ds_cache_config *c, char *buf, size_t cap);

/* cache-dit's steps_mask(total_steps=steps, mask_policy=preset) for preset DS_MASK_SLOW..ULTRA: writes
 * steps entries (1 = compute) to out. Errors: DS_ERR_INVALID_ARG (steps < 1 or > DS_CACHE_MAX_MASK; for
 * steps < 8 only 4 and 6 are defined, as in cache-dit). */
ds_status ds_cache_steps_mask(ds_mask_preset preset, int steps, uint8_t *out, ds_err *err);

/* The name of a preset ("slow", ...; "" for none/explicit). */
const char *ds_cache_mask_preset_name(ds_mask_preset p);

#ifdef __cplusplus
}
#endif

#endif /* DS_CACHE_CONFIG_H */
