/* fuzz_config.c - libFuzzer target for the diffusers JSON config reader: ds_config_parse on an
 * arbitrary buffer (length-bounded, not NUL-terminated), then every typed getter on every top-level
 * key, checking that a getter either succeeds or fails with DS_ERR_FORMAT / DS_ERR_INVALID_ARG and
 * leaves the default in place on failure. Run: tools/run_fuzz.sh SECONDS fuzz_config. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diffusers_dir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Copy into an exact-size heap buffer so ASan flags any read past `size`. */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    ds_config *cfg = NULL;
    ds_err err;
    ds_status s = ds_config_parse(text, size, "fuzz.json", &cfg, &err);
    free(text);
    if (s != DS_OK) {
        if (cfg || s != DS_ERR_FORMAT) abort();
        return 0;
    }
    for (const cJSON *it = ds_config_root(cfg)->child; it; it = it->next) {
        const char *key = it->string;
        if (!key) abort();
        int64_t i;
        double f;
        bool b;
        const char *str;
        int64_t arr[8];
        int n;
        if (ds_config_get_int(cfg, key, -7, &i, &err) != DS_OK && (i != -7 || err.code != DS_ERR_FORMAT)) abort();
        if (ds_config_get_float(cfg, key, 0.5, &f, &err) != DS_OK && f != 0.5) abort();
        if (ds_config_get_bool(cfg, key, true, &b, &err) != DS_OK && !b) abort();
        if (ds_config_get_string(cfg, key, "d", &str, &err) == DS_OK && str && strlen(str) > size) abort();
        ds_status a = ds_config_get_int_array(cfg, key, arr, 8, &n, &err);
        if (a != DS_OK && a != DS_ERR_FORMAT && a != DS_ERR_INVALID_ARG) abort();
        if (a == DS_OK && (n < 0 || n > 8)) abort();
    }
    ds_config_close(cfg);
    return 0;
}
