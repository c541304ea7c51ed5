/* test_cache_config.c - the cache config: cache-dit's defaults, JSON with its flat names (every bad field
 * named), both config-string forms, the strify long form, and steps_mask presets against the masks in
 * cache-dit.md section 2.8 (verified there by running cache-dit). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "cache_config.h"

static void mask_is(ds_mask_preset p, int T, const char *want) {
    uint8_t m[DS_CACHE_MAX_MASK];
    ds_err err;
    cr_assert_eq(ds_cache_steps_mask(p, T, m, &err), DS_OK, "%s", err.msg);
    char got[DS_CACHE_MAX_MASK + 1];
    for (int i = 0; i < T; i++) got[i] = (char)('0' + m[i]);
    got[T] = 0;
    cr_assert_str_eq(got, want, "%s T=%d", ds_cache_mask_preset_name(p), T);
}

Test(cache_config, steps_mask_presets_match_cache_dit) {
    mask_is(DS_MASK_SLOW, 28, "1111111101110011100110010001");
    mask_is(DS_MASK_MEDIUM, 28, "1111110110001100011000110001");
    mask_is(DS_MASK_FAST, 28, "1111110100010000100000100001");
    mask_is(DS_MASK_ULTRA, 28, "1111001000001000000100000001");
    mask_is(DS_MASK_SLOW, 50, "11111111111111111111110011111000111110001110001101");
    mask_is(DS_MASK_MEDIUM, 50, "11111111111111110011100000111000001110000011100001");
    mask_is(DS_MASK_FAST, 50, "11111111111001100000110000000110000000001100000001");
    mask_is(DS_MASK_ULTRA, 50, "11111110001100000000011000000000001100000000000001");
    mask_is(DS_MASK_SLOW, 9, "111110111");
    mask_is(DS_MASK_MEDIUM, 9, "111110101");
    mask_is(DS_MASK_FAST, 9, "111101001");
    mask_is(DS_MASK_ULTRA, 9, "111001001");
    mask_is(DS_MASK_SLOW, 8, "11111011");
    mask_is(DS_MASK_MEDIUM, 8, "11110101");
    mask_is(DS_MASK_FAST, 8, "11101001");
    mask_is(DS_MASK_ULTRA, 8, "11001001");
    mask_is(DS_MASK_FAST, 4, "1101");
    mask_is(DS_MASK_SLOW, 6, "111001");
    mask_is(DS_MASK_FAST, 20, "11111101000000000001");
    uint8_t m[8];
    ds_err err;
    cr_assert_eq(ds_cache_steps_mask(DS_MASK_FAST, 5, m, &err), DS_ERR_INVALID_ARG);
}

Test(cache_config, defaults_and_long_form) {
    ds_cache_config c;
    ds_cache_config_default(&c);
    char s[512];
    ds_cache_config_str(&c, s, sizeof s);
    cr_assert_str_eq(s, "DBCache_F8B0_W8I1M0MC0_R0.08_T0O0");
    ds_err err;
    cr_assert_eq(ds_cache_config_parse_json("{}", &c, &err), DS_OK);
    ds_cache_config_str(&c, s, sizeof s);
    cr_assert_str_eq(s, "DBCache_F8B0_W8I1M0MC0_R0.08_T0O0");
    cr_assert_eq(ds_cache_config_parse_json("{\"cache_config\": {\"Fn_compute_blocks\": 1, \"Bn_compute_blocks\": 0, "
                                            "\"residual_diff_threshold\": 0.12, \"max_continuous_cached_steps\": 3, "
                                            "\"enable_separate_cfg\": false, \"enable_taylorseer\": true, "
                                            "\"taylorseer_order\": 2, \"steps_computation_mask\": \"fast\"}}",
                                            &c, &err),
                 DS_OK, "%s", err.msg);
    ds_cache_config_str(&c, s, sizeof s);
    cr_assert_str_eq(s, "DBCache_F1B0_W8I1M0MC3_R0.12_SCMfast_dynamic_CFG0_T1O2");
    cr_assert(!c.enable_encoder_taylorseer, "load_configs' flat default");
    cr_assert_eq(ds_cache_config_parse_json("{\"residual_diff_threshold\": 1}", &c, &err), DS_OK);
    ds_cache_config_str(&c, s, sizeof s);
    cr_assert(strstr(s, "_R1.0_"), "%s", s);
}

Test(cache_config, strings_in_both_forms_round_trip) {
    ds_cache_config c, d;
    ds_err err;
    cr_assert_eq(ds_cache_config_parse_string("DBCache_F8B0_W8I1M0MC0_R0.08_T1O2", &c, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(c.Fn_compute_blocks, 8);
    cr_assert_eq(c.max_cached_steps, -1);
    cr_assert_eq(c.max_continuous_cached_steps, -1);
    cr_assert(c.enable_taylorseer);
    cr_assert_eq(c.taylorseer_order, 2);
    cr_assert_eq(ds_cache_config_parse_string("F8B0_W4MC3_T0O1_R0.12", &c, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(c.max_warmup_steps, 4);
    cr_assert_eq(c.warmup_interval, 1);
    cr_assert_eq(c.max_continuous_cached_steps, 3);
    cr_assert(!c.enable_taylorseer);
    cr_assert_eq(c.residual_diff_threshold, 0.12);
    char s[512];
    ds_cache_config_str(&c, s, sizeof s);
    cr_assert_str_eq(s, "DBCache_F8B0_W4I1M0MC3_R0.12_T0O0");
    cr_assert_eq(ds_cache_config_parse_string(s, &d, &err), DS_OK);
    cr_assert_eq(memcmp(&c, &d, sizeof c), 0, "round trip");
    cr_assert_eq(ds_cache_config_parse_string("DBCache_F1B0_W8I2M5MC8_R0.8_SCM1101_static_N4_CFG1_T1O1_S17", &c, &err),
                 DS_OK, "%s", err.msg);
    cr_assert_eq(c.warmup_interval, 2);
    cr_assert_eq(c.max_cached_steps, 5);
    cr_assert_eq(c.mask_kind, DS_MASK_EXPLICIT);
    cr_assert_eq(c.mask_len, 4);
    cr_assert_eq(c.steps_computation_policy, DS_SCM_STATIC);
    cr_assert_eq(c.enable_separate_cfg, 1);
    ds_cache_config_str(&c, s, sizeof s);
    cr_assert_str_eq(s, "DBCache_F1B0_W8I2M5MC8_R0.8_SCM1101_static_N4_CFG1_T1O1");
    cr_assert_eq(ds_cache_config_parse_string("none", &c, &err), DS_OK);
    cr_assert(!c.enabled);
    cr_assert_eq(ds_cache_config_parse_any("F1B0_W8I1M0MC3_R0.12", &c, &err), DS_OK);
    cr_assert_eq(ds_cache_config_parse_any(" {\"Fn_compute_blocks\": 2}", &c, &err), DS_OK);
    cr_assert_eq(c.Fn_compute_blocks, 2);
}

static void bad_json(const char *json, const char *field) {
    ds_cache_config c;
    ds_err err;
    ds_err_clear(&err);
    ds_status s = ds_cache_config_parse_json(json, &c, &err);
    cr_assert_neq(s, DS_OK, "%s accepted", json);
    cr_assert(strstr(err.msg, field), "%s: message '%s' does not name %s", json, err.msg, field);
}

Test(cache_config, bad_fields_are_named) {
    bad_json("{\"Fn_compute_blocks\": 0}", "Fn_compute_blocks");
    bad_json("{\"Fn_compute_blocks\": 1.5}", "Fn_compute_blocks");
    bad_json("{\"Bn_compute_blocks\": -1}", "Bn_compute_blocks");
    bad_json("{\"residual_diff_threshold\": \"0.1\"}", "residual_diff_threshold");
    bad_json("{\"max_warmup_steps\": -2}", "max_warmup_steps");
    bad_json("{\"warmup_interval\": 0}", "warmup_interval");
    bad_json("{\"max_cached_steps\": -3}", "max_cached_steps");
    bad_json("{\"max_continuous_cached_steps\": true}", "max_continuous_cached_steps");
    bad_json("{\"enable_separate_cfg\": 1}", "enable_separate_cfg");
    bad_json("{\"steps_computation_mask\": [1, 0, 2]}", "steps_computation_mask");
    bad_json("{\"steps_computation_mask\": \"turbo\"}", "steps_computation_mask");
    bad_json("{\"steps_computation_mask\": [1, 0, 1], \"num_inference_steps\": 4}", "steps_computation_mask");
    bad_json("{\"steps_computation_policy\": \"lazy\"}", "steps_computation_policy");
    bad_json("{\"taylorseer_order\": 4}", "taylorseer_order");
    bad_json("{\"taylorseer_cache_type\": \"x\"}", "taylorseer_cache_type");
    bad_json("{\"enable_taylorseer\": true, \"enable_foca\": true}", "mutually exclusive");
    bad_json("{\"Fn_blocks\": 1}", "Fn_blocks");
    bad_json("{\"cache_type\": \"DBPrune\"}", "cache_type");
    bad_json("{\"enable_separate_cfg\": true, \"cfg_compute_first\": true}", "cfg_diff_compute_separate");
    bad_json("[1]", "object");
    bad_json("{", "JSON");
    ds_cache_config c;
    ds_err err;
    cr_assert_eq(ds_cache_config_parse_json("{\"enable_separate_cfg\": true, \"cfg_compute_first\": true, "
                                            "\"cfg_diff_compute_separate\": false}",
                                            &c, &err),
                 DS_OK, "%s", err.msg);
    cr_assert_eq(ds_cache_config_parse_string("F8B0_W4XY3_R0.1", &c, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "W4XY3"), "%s", err.msg);
    cr_assert_eq(ds_cache_config_parse_string("F0B0_W4_R0.1", &c, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "Fn_compute_blocks"), "%s", err.msg);
    cr_assert_eq(ds_cache_config_parse_string("W4MC3_R0.1", &c, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_cache_config_parse_any("/nonexistent/cfg.json", &c, &err), DS_ERR_INVALID_ARG);
}
