/* cache_config.c - cache-dit's cache config: defaults, the flat JSON/dict form, both config-string forms,
 * validation naming the field, the strify long form, and steps_mask presets (cache_interface.steps_mask). */
#include "cache_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cJSON.h"

void ds_cache_config_default(ds_cache_config *c) {
    memset(c, 0, sizeof *c);
    c->enabled = true;
    c->Fn_compute_blocks = 8;
    c->Bn_compute_blocks = 0;
    c->residual_diff_threshold = 0.08;
    c->max_accumulated_residual_diff_threshold = 0.0;
    c->max_warmup_steps = 8;
    c->warmup_interval = 1;
    c->max_cached_steps = -1;
    c->max_continuous_cached_steps = -1;
    c->enable_separate_cfg = -1;
    c->cfg_compute_first = false;
    c->cfg_diff_compute_separate = true;
    c->steps_computation_policy = DS_SCM_DYNAMIC;
    c->taylorseer_order = 1;
    c->taylorseer_cache_type = DS_CALIB_RESIDUAL;
}

const char *ds_cache_mask_preset_name(ds_mask_preset p) {
    switch (p) {
    case DS_MASK_SLOW: return "slow";
    case DS_MASK_MEDIUM: return "medium";
    case DS_MASK_FAST: return "fast";
    case DS_MASK_ULTRA: return "ultra";
    default: return "";
    }
}

static ds_mask_preset preset_from_name(const char *s) {
    if (!strcmp(s, "slow")) return DS_MASK_SLOW;
    if (!strcmp(s, "medium")) return DS_MASK_MEDIUM;
    if (!strcmp(s, "fast")) return DS_MASK_FAST;
    if (!strcmp(s, "ultra")) return DS_MASK_ULTRA;
    return DS_MASK_NONE;
}

ds_status ds_cache_config_validate(const ds_cache_config *c, ds_err *err) {
    if (!c->enabled) return DS_OK;
    if (c->Fn_compute_blocks < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: Fn_compute_blocks = %d must be >= 1",
                       c->Fn_compute_blocks);
    if (c->Bn_compute_blocks < 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: Bn_compute_blocks = %d must be >= 0",
                       c->Bn_compute_blocks);
    if (!isfinite(c->residual_diff_threshold))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: residual_diff_threshold must be a finite number");
    if (!isfinite(c->max_accumulated_residual_diff_threshold))
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "cache config: max_accumulated_residual_diff_threshold must be a finite number or null");
    if (c->max_warmup_steps < 0)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: max_warmup_steps = %d must be >= 0", c->max_warmup_steps);
    if (c->warmup_interval < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: warmup_interval = %d must be >= 1", c->warmup_interval);
    if (c->max_cached_steps < -1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: max_cached_steps = %d must be >= -1 (-1 = unlimited)",
                       c->max_cached_steps);
    if (c->max_continuous_cached_steps < -1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "cache config: max_continuous_cached_steps = %d must be >= -1 (-1 = unlimited)",
                       c->max_continuous_cached_steps);
    if (c->enable_separate_cfg < -1 || c->enable_separate_cfg > 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: enable_separate_cfg must be true, false or null");
    if (c->enable_separate_cfg != 0 && c->cfg_compute_first && c->cfg_diff_compute_separate)
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "cache config: cfg_compute_first = true requires cfg_diff_compute_separate = false (cache-dit "
                       "asserts 'cfg_compute_first must set as False if cfg_diff_compute_separate is enabled')");
    if (c->num_inference_steps < 0 || c->num_inference_steps > DS_CACHE_MAX_MASK)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: num_inference_steps = %d is outside 1..%d",
                       c->num_inference_steps, DS_CACHE_MAX_MASK);
    if (c->mask_kind == DS_MASK_EXPLICIT) {
        if (c->mask_len < 1 || c->mask_len > DS_CACHE_MAX_MASK)
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: steps_computation_mask has %d entries (1..%d)",
                           c->mask_len, DS_CACHE_MAX_MASK);
        for (int i = 0; i < c->mask_len; i++)
            if (c->mask[i] > 1)
                return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: steps_computation_mask[%d] = %d is not 0 or 1",
                               i, c->mask[i]);
        if (c->num_inference_steps > 0 && c->mask_len != c->num_inference_steps)
            return DS_FAIL(err, DS_ERR_INVALID_ARG,
                           "cache config: steps_computation_mask has %d entries but num_inference_steps is %d",
                           c->mask_len, c->num_inference_steps);
    }
    if (c->enable_taylorseer && (c->taylorseer_order < 1 || c->taylorseer_order > 3))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: taylorseer_order = %d is outside 1..3",
                       c->taylorseer_order);
    return DS_OK;
}

/* ---- JSON -------------------------------------------------------------------------------------------- */

static ds_status json_int(const cJSON *v, const char *key, int lo, int hi, int *out, ds_err *err) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: %s must be an integer in %d..%d", key, lo, hi);
    *out = (int)v->valuedouble;
    return DS_OK;
}

static ds_status json_bool(const cJSON *v, const char *key, bool *out, ds_err *err) {
    if (!cJSON_IsBool(v)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: %s must be true or false", key);
    *out = cJSON_IsTrue(v);
    return DS_OK;
}

static ds_status json_num(const cJSON *v, const char *key, double *out, ds_err *err) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: %s must be a finite number", key);
    *out = v->valuedouble;
    return DS_OK;
}

static ds_status parse_object(const cJSON *o, ds_cache_config *c, ds_err *err) {
    bool foca = false, dmd = false;
    const char *cache_type_set = NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        const char *k = it->string;
        if (!strcmp(k, "cache_type")) {
            if (!cJSON_IsString(it)) return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: cache_type must be a string");
            const char *t = it->valuestring;
            if (!strcmp(t, "DBCache") || !strcmp(t, "DB_CACHE") || !strcmp(t, "DB") || !strcmp(t, "db_cache"))
                cache_type_set = "DBCache";
            else if (!strcmp(t, "NONE") || !strcmp(t, "NC") || !strcmp(t, "none"))
                c->enabled = false;
            else
                return DS_FAIL(err, DS_ERR_INVALID_ARG,
                               "cache config: cache_type '%s' is not supported (DBCache or NONE; DBPrune is not "
                               "implemented)",
                               t);
        } else if (!strcmp(k, "Fn_compute_blocks")) DS_TRY(json_int(it, k, -1000000, 1000000, &c->Fn_compute_blocks, err));
        else if (!strcmp(k, "Bn_compute_blocks")) DS_TRY(json_int(it, k, -1000000, 1000000, &c->Bn_compute_blocks, err));
        else if (!strcmp(k, "residual_diff_threshold")) DS_TRY(json_num(it, k, &c->residual_diff_threshold, err));
        else if (!strcmp(k, "max_accumulated_residual_diff_threshold")) {
            if (cJSON_IsNull(it)) c->max_accumulated_residual_diff_threshold = 0.0;
            else DS_TRY(json_num(it, k, &c->max_accumulated_residual_diff_threshold, err));
        } else if (!strcmp(k, "max_warmup_steps")) DS_TRY(json_int(it, k, 0, 1000000, &c->max_warmup_steps, err));
        else if (!strcmp(k, "warmup_interval")) DS_TRY(json_int(it, k, 1, 1000000, &c->warmup_interval, err));
        else if (!strcmp(k, "max_cached_steps")) DS_TRY(json_int(it, k, -1, 1000000, &c->max_cached_steps, err));
        else if (!strcmp(k, "max_continuous_cached_steps"))
            DS_TRY(json_int(it, k, -1, 1000000, &c->max_continuous_cached_steps, err));
        else if (!strcmp(k, "enable_separate_cfg")) {
            if (cJSON_IsNull(it)) c->enable_separate_cfg = -1;
            else {
                bool b = false;
                DS_TRY(json_bool(it, k, &b, err));
                c->enable_separate_cfg = b;
            }
        } else if (!strcmp(k, "cfg_compute_first")) DS_TRY(json_bool(it, k, &c->cfg_compute_first, err));
        else if (!strcmp(k, "cfg_diff_compute_separate")) DS_TRY(json_bool(it, k, &c->cfg_diff_compute_separate, err));
        else if (!strcmp(k, "num_inference_steps")) {
            if (cJSON_IsNull(it)) c->num_inference_steps = 0;
            else DS_TRY(json_int(it, k, 1, DS_CACHE_MAX_MASK, &c->num_inference_steps, err));
        } else if (!strcmp(k, "steps_computation_mask")) {
            if (cJSON_IsNull(it)) c->mask_kind = DS_MASK_NONE;
            else if (cJSON_IsString(it)) {
                c->mask_kind = preset_from_name(it->valuestring);
                if (c->mask_kind == DS_MASK_NONE)
                    return DS_FAIL(err, DS_ERR_INVALID_ARG,
                                   "cache config: steps_computation_mask '%s' is not a preset (slow, medium, fast, "
                                   "ultra) nor a list of 0/1",
                                   it->valuestring);
            } else if (cJSON_IsArray(it)) {
                int n = cJSON_GetArraySize(it);
                if (n < 1 || n > DS_CACHE_MAX_MASK)
                    return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: steps_computation_mask has %d entries (1..%d)",
                                   n, DS_CACHE_MAX_MASK);
                int i = 0;
                const cJSON *e;
                cJSON_ArrayForEach(e, it) {
                    if (!cJSON_IsNumber(e) || (e->valuedouble != 0.0 && e->valuedouble != 1.0))
                        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: steps_computation_mask[%d] is not 0 or 1",
                                       i);
                    c->mask[i++] = (uint8_t)e->valuedouble;
                }
                c->mask_len = n;
                c->mask_kind = DS_MASK_EXPLICIT;
            } else
                return DS_FAIL(err, DS_ERR_INVALID_ARG,
                               "cache config: steps_computation_mask must be a list of 0/1 or a preset name");
        } else if (!strcmp(k, "steps_computation_policy")) {
            if (!cJSON_IsString(it) || (strcmp(it->valuestring, "dynamic") && strcmp(it->valuestring, "static")))
                return DS_FAIL(err, DS_ERR_INVALID_ARG,
                               "cache config: steps_computation_policy must be \"dynamic\" or \"static\"");
            c->steps_computation_policy = !strcmp(it->valuestring, "static") ? DS_SCM_STATIC : DS_SCM_DYNAMIC;
        } else if (!strcmp(k, "enable_taylorseer")) DS_TRY(json_bool(it, k, &c->enable_taylorseer, err));
        else if (!strcmp(k, "enable_encoder_taylorseer")) DS_TRY(json_bool(it, k, &c->enable_encoder_taylorseer, err));
        else if (!strcmp(k, "taylorseer_order")) DS_TRY(json_int(it, k, 1, 3, &c->taylorseer_order, err));
        else if (!strcmp(k, "taylorseer_cache_type") || !strcmp(k, "calibrator_cache_type")) {
            if (!cJSON_IsString(it) ||
                (strcmp(it->valuestring, "residual") && strcmp(it->valuestring, "hidden_states")))
                return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: %s must be \"residual\" or \"hidden_states\"", k);
            c->taylorseer_cache_type = !strcmp(it->valuestring, "residual") ? DS_CALIB_RESIDUAL : DS_CALIB_HIDDEN_STATES;
        } else if (!strcmp(k, "enable_foca")) DS_TRY(json_bool(it, k, &foca, err));
        else if (!strcmp(k, "enable_dmd")) DS_TRY(json_bool(it, k, &dmd, err));
        else if (!strcmp(k, "separate_block_lists")) DS_TRY(json_bool(it, k, &c->separate_block_lists, err));
        else
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: unknown key '%s'", k);
    }
    (void)cache_type_set;
    if ((int)c->enable_taylorseer + (int)foca + (int)dmd > 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG,
                       "cache config: enable_taylorseer, enable_dmd and enable_foca are mutually exclusive");
    if (foca) return DS_FAIL(err, DS_ERR_UNSUPPORTED, "cache config: enable_foca: FoCa is not implemented (use enable_taylorseer)");
    if (dmd) return DS_FAIL(err, DS_ERR_UNSUPPORTED, "cache config: enable_dmd: DMD is not implemented (use enable_taylorseer)");
    return DS_OK;
}

ds_status ds_cache_config_parse_json(const char *json, ds_cache_config *c, ds_err *err) {
    ds_cache_config_default(c);
    cJSON *root = cJSON_Parse(json);
    if (!root) return DS_FAIL(err, DS_ERR_FORMAT, "cache config: not valid JSON (near '%.20s')",
                              cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
    ds_status s = DS_OK;
    const cJSON *o = root;
    if (!cJSON_IsObject(o)) s = DS_FAIL(err, DS_ERR_FORMAT, "cache config: the JSON must be an object");
    else {
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "cache_config");
        if (w) {
            if (!cJSON_IsObject(w)) s = DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: cache_config must be an object");
            else if (cJSON_GetArraySize(o) != 1)
                s = DS_FAIL(err, DS_ERR_INVALID_ARG,
                            "cache config: only the cache_config section is supported next to it (no "
                            "parallelism_config / quantize_config / attention_backend)");
            o = w;
        }
    }
    if (s == DS_OK) s = parse_object(o, c, err);
    cJSON_Delete(root);
    if (s == DS_OK) s = ds_cache_config_validate(c, err);
    return s;
}

/* ---- config strings ---------------------------------------------------------------------------------- */

/* Read an integer at *p (advancing); false if none. */
static bool read_int(const char **p, long *v) {
    if (!isdigit((unsigned char)**p)) return false;
    char *end;
    errno = 0;
    *v = strtol(*p, &end, 10);
    if (errno || *v > 1000000) return false;
    *p = end;
    return true;
}

ds_status ds_cache_config_parse_string(const char *s, ds_cache_config *c, ds_err *err) {
    ds_cache_config_default(c);
    if (!s || !*s) return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: empty config string");
    if (!strcmp(s, "none") || !strcmp(s, "NONE") || !strcmp(s, "None")) {
        c->enabled = false;
        return DS_OK;
    }
    char buf[2048];
    if (strlen(s) >= sizeof buf) return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: config string too long");
    strcpy(buf, s);
    bool have_fb = false;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "_", &save); tok; tok = strtok_r(NULL, "_", &save)) {
        const char *p = tok;
        long v, v2;
        if (!strcmp(tok, "DBCache") || !strcmp(tok, "DBCACHE")) continue;
        if (tok[0] == 'F' && tok[1] != 'R' && tok[1] != 'o') {
            p++;
            if (!read_int(&p, &v) || *p != 'B') goto bad;
            p++;
            if (!read_int(&p, &v2)) goto bad;
            /* legacy "F8B8S1": ignore the S field */
            if (*p == 'S') {
                p++;
                long ign;
                if (!read_int(&p, &ign)) goto bad;
            }
            if (*p) goto bad;
            c->Fn_compute_blocks = (int)v;
            c->Bn_compute_blocks = (int)v2;
            have_fb = true;
        } else if (tok[0] == 'W') {
            p++;
            if (!read_int(&p, &v)) goto bad;
            c->max_warmup_steps = (int)v;
            if (*p == 'I') {
                p++;
                if (!read_int(&p, &v)) goto bad;
                c->warmup_interval = (int)v;
            }
            if (*p == 'M' && p[1] != 'C') {
                p++;
                if (!read_int(&p, &v)) goto bad;
                c->max_cached_steps = v == 0 ? -1 : (int)v;
            }
            if (*p == 'M' && p[1] == 'C') {
                p += 2;
                if (!read_int(&p, &v)) goto bad;
                c->max_continuous_cached_steps = v == 0 ? -1 : (int)v;
            }
            if (*p) goto bad;
        } else if (tok[0] == 'R') {
            char *end;
            errno = 0;
            double r = strtod(tok + 1, &end);
            if (errno || end == tok + 1 || *end || !isfinite(r)) goto bad;
            c->residual_diff_threshold = r;
        } else if (tok[0] == 'T' && (tok[1] == '0' || tok[1] == '1') && tok[2] == 'O') {
            p = tok + 3;
            if (!read_int(&p, &v) || *p) goto bad;
            c->enable_taylorseer = tok[1] == '1';
            if (c->enable_taylorseer) c->taylorseer_order = (int)v;
        } else if (!strncmp(tok, "SCM", 3)) {
            const char *m = tok + 3;
            ds_mask_preset pr = preset_from_name(m);
            if (pr != DS_MASK_NONE) c->mask_kind = pr;
            else {
                int n = 0;
                for (; m[n]; n++) {
                    if ((m[n] != '0' && m[n] != '1') || n >= DS_CACHE_MAX_MASK) goto bad;
                    c->mask[n] = (uint8_t)(m[n] - '0');
                }
                if (n == 0) goto bad;
                c->mask_len = n;
                c->mask_kind = DS_MASK_EXPLICIT;
            }
        } else if (!strcmp(tok, "dynamic")) c->steps_computation_policy = DS_SCM_DYNAMIC;
        else if (!strcmp(tok, "static")) c->steps_computation_policy = DS_SCM_STATIC;
        else if (tok[0] == 'N' && isdigit((unsigned char)tok[1])) {
            p++;
            if (!read_int(&p, &v) || *p || v < 1) goto bad;
            c->num_inference_steps = (int)v;
        } else if (!strncmp(tok, "CFG", 3) && (tok[3] == '0' || tok[3] == '1') && !tok[4]) {
            c->enable_separate_cfg = tok[3] == '1';
        } else if (tok[0] == 'S' && isdigit((unsigned char)tok[1])) {
            /* cache_dit.strify's accumulated cached-steps count: an output, ignored */
        } else {
        bad:
            return DS_FAIL(err, DS_ERR_INVALID_ARG,
                           "cache config: cannot parse token '%s' of config string '%s' (expected e.g. "
                           "DBCache_F8B0_W8I1M0MC0_R0.08_T1O2 or F8B0_W4MC3_T0O1_R0.12)",
                           tok, s);
        }
    }
    if (!have_fb)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: config string '%s' has no F<n>B<n> token", s);
    return ds_cache_config_validate(c, err);
}

ds_status ds_cache_config_parse_any(const char *arg, ds_cache_config *c, ds_err *err) {
    if (!arg) return DS_FAIL(err, DS_ERR_INVALID_ARG, "cache config: NULL argument");
    const char *p = arg;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '{') return ds_cache_config_parse_json(p, c, err);
    FILE *f = fopen(arg, "rb");
    if (!f) return ds_cache_config_parse_string(arg, c, err);
    ds_status s;
    char *text = NULL;
    if (fseek(f, 0, SEEK_END) || ftell(f) < 0 || ftell(f) > (1 << 20)) {
        fclose(f);
        return DS_FAIL(err, DS_ERR_IO, "cache config: cannot read '%s' (or larger than 1 MiB)", arg);
    }
    long n = ftell(f);
    rewind(f);
    text = malloc((size_t)n + 1);
    if (!text) {
        fclose(f);
        return DS_FAIL(err, DS_ERR_OOM, "cache config: out of memory");
    }
    size_t got = fread(text, 1, (size_t)n, f);
    fclose(f);
    text[got] = 0;
    if (got != (size_t)n) s = DS_FAIL(err, DS_ERR_IO, "cache config: cannot read '%s'", arg);
    else {
        s = ds_cache_config_parse_json(text, c, err);
        if (s != DS_OK) ds_err_prefix(err, "%s", arg);
    }
    free(text);
    return s;
}

/* Python's repr of a float: the shortest %g that round-trips, with ".0" when it looks like an integer. */
static void py_float(double x, char *out, size_t cap) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, x);
        if (strtod(out, NULL) == x) break;
    }
    if (!strpbrk(out, ".eEn")) {
        size_t l = strlen(out);
        if (l + 2 < cap) memcpy(out + l, ".0", 3);
    }
}

int ds_cache_config_str(const ds_cache_config *c, char *buf, size_t cap) {
    if (!c->enabled) return snprintf(buf, cap, "NONE");
    char tau[40];
    py_float(c->residual_diff_threshold, tau, sizeof tau);
    char tmp[DS_CACHE_MAX_MASK + 256];
    int n = snprintf(tmp, sizeof tmp, "DBCache_F%dB%d_W%dI%dM%dMC%d_R%s", c->Fn_compute_blocks, c->Bn_compute_blocks,
                     c->max_warmup_steps, c->warmup_interval, c->max_cached_steps > 0 ? c->max_cached_steps : 0,
                     c->max_continuous_cached_steps > 0 ? c->max_continuous_cached_steps : 0, tau);
    const char *pol = c->steps_computation_policy == DS_SCM_STATIC ? "static" : "dynamic";
    if (c->mask_kind == DS_MASK_EXPLICIT) {
        n += snprintf(tmp + n, sizeof tmp - (size_t)n, "_SCM");
        for (int i = 0; i < c->mask_len; i++) tmp[n++] = (char)('0' + c->mask[i]);
        tmp[n] = 0;
        n += snprintf(tmp + n, sizeof tmp - (size_t)n, "_%s", pol);
    } else if (c->mask_kind != DS_MASK_NONE) {
        n += snprintf(tmp + n, sizeof tmp - (size_t)n, "_SCM%s_%s", ds_cache_mask_preset_name(c->mask_kind), pol);
    }
    if (c->num_inference_steps > 0) n += snprintf(tmp + n, sizeof tmp - (size_t)n, "_N%d", c->num_inference_steps);
    if (c->enable_separate_cfg >= 0) n += snprintf(tmp + n, sizeof tmp - (size_t)n, "_CFG%d", c->enable_separate_cfg);
    n += snprintf(tmp + n, sizeof tmp - (size_t)n, "_T%dO%d", c->enable_taylorseer ? 1 : 0,
                  c->enable_taylorseer ? c->taylorseer_order : 0);
    return snprintf(buf, cap, "%s", tmp);
}

/* ---- steps_mask presets (cache_interface.steps_mask) -------------------------------------------------- */

typedef struct bins {
    int comp[16], ncomp;
    int cache[16], ncache;
} bins;

static int bins_sum(const bins *b) {
    int s = 0;
    for (int i = 0; i < b->ncomp; i++) s += b->comp[i];
    for (int i = 0; i < b->ncache; i++) s += b->cache[i];
    return s;
}

static void bins_set(bins *b, const int *comp, int nc, const int *cache, int nk) {
    memcpy(b->comp, comp, (size_t)nc * sizeof(int));
    memcpy(b->cache, cache, (size_t)nk * sizeof(int));
    b->ncomp = nc;
    b->ncache = nk;
}

/* _truncate_policy: alternately shorten the last cache bin and the last compute bin until sum <= target. */
static void bins_truncate(bins *b, int target) {
    while (bins_sum(b) > target) {
        if (b->ncache) {
            if (--b->cache[b->ncache - 1] == 0) b->ncache--;
        }
        if (bins_sum(b) <= target) break;
        if (b->ncomp) {
            if (--b->comp[b->ncomp - 1] == 0) b->ncomp--;
        }
        if (bins_sum(b) <= target) break;
    }
}

ds_status ds_cache_steps_mask(ds_mask_preset preset, int T, uint8_t *out, ds_err *err) {
    if (preset < DS_MASK_SLOW || preset > DS_MASK_ULTRA)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "steps_computation_mask: not a preset");
    if (T < 1 || T > DS_CACHE_MAX_MASK)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "steps_computation_mask: %d steps is outside 1..%d", T,
                       DS_CACHE_MAX_MASK);
    const int k = preset - DS_MASK_SLOW;
    bins b;
    if (T >= 16) {
        static const int c28[4][6] = {{8, 3, 3, 2, 1, 1}, {6, 2, 2, 2, 2, 1}, {6, 1, 1, 1, 1, 1}, {4, 1, 1, 1, 1, 0}};
        static const int k28[4][5] = {{1, 2, 2, 2, 3}, {1, 3, 3, 3, 3}, {1, 3, 4, 5, 4}, {2, 5, 6, 7, 0}};
        bins_set(&b, c28[k], k == 3 ? 5 : 6, k28[k], k == 3 ? 4 : 5);
        if (T > 28) {
            /* grow pairwise by max(int(bin0 * T/28 * 0.5), 1) until the sum reaches T */
            const int minlen = b.ncomp < b.ncache ? b.ncomp : b.ncache;
            bins b0 = b;
            while (bins_sum(&b) < T) {
                bool done = false;
                for (int i = 0; i < minlen; i++) {
                    int g = (int)((double)b0.comp[i] * (((double)T / 28.0) * 0.5));
                    b.comp[i] += g > 1 ? g : 1;
                    if (bins_sum(&b) >= T) {
                        done = true;
                        break;
                    }
                    g = (int)((double)b0.cache[i] * (((double)T / 28.0) * 0.5));
                    b.cache[i] += g > 1 ? g : 1;
                    if (bins_sum(&b) >= T) {
                        done = true;
                        break;
                    }
                }
                if (done || bins_sum(&b) >= T) break;
                b.comp[b.ncomp - 1] += 1;
                if (bins_sum(&b) >= T) break;
            }
        }
        bins_truncate(&b, T);
    } else if (T >= 8) {
        if (T == 9) {
            static const int c9[4][3] = {{5, 2, 1}, {5, 1, 1}, {4, 1, 1}, {3, 1, 1}};
            static const int k9[4][2] = {{1, 0}, {1, 1}, {1, 2}, {2, 2}};
            bins_set(&b, c9[k], 3, k9[k], k == 0 ? 1 : 2);
        } else if (T > 8) {
            static const int c15[4][5] = {{4, 2, 2, 2, 1}, {4, 2, 1, 1, 1}, {3, 1, 1, 1, 1}, {2, 1, 1, 1, 1}};
            static const int k15[4][4] = {{1, 1, 1, 1}, {1, 1, 2, 2}, {1, 2, 2, 3}, {1, 2, 3, 3}};
            bins_set(&b, c15[k], 5, k15[k], 4);
        } else {
            static const int c8[4][3] = {{5, 1, 1}, {4, 1, 1}, {3, 1, 1}, {2, 1, 1}};
            static const int k8[4][2] = {{1, 0}, {1, 1}, {1, 2}, {2, 2}};
            bins_set(&b, c8[k], 3, k8[k], k == 0 ? 1 : 2);
        }
        bins_truncate(&b, T);
    } else {
        if (T != 4 && T != 6)
            return DS_FAIL(err, DS_ERR_INVALID_ARG,
                           "steps_computation_mask: preset '%s' is defined for 4, 6 or >= 8 steps, not %d (as in "
                           "cache-dit)",
                           ds_cache_mask_preset_name(preset), T);
        static const int c4[2] = {2, 1}, k4[1] = {1}, c6[2] = {3, 1}, k6[1] = {2};
        if (T == 4) bins_set(&b, c4, 2, k4, 1);
        else bins_set(&b, c6, 2, k6, 1);
    }
    /* _steps_mask: alternate compute / cache runs, truncate to T */
    if (bins_sum(&b) < T)
        return DS_FAIL(err, DS_ERR_INTERNAL, "steps_computation_mask: preset bins cover %d < %d steps", bins_sum(&b), T);
    int n = 0, ci = 0, ki = 0;
    while (n < T) {
        if (ci < b.ncomp)
            for (int j = 0; j < b.comp[ci] && n < T; j++) out[n++] = 1;
        ci++;
        if (ki < b.ncache)
            for (int j = 0; j < b.cache[ki] && n < T; j++) out[n++] = 0;
        ki++;
        if (ci >= b.ncomp && ki >= b.ncache && n < T) break;
    }
    out[T - 1] = 1;
    return DS_OK;
}
