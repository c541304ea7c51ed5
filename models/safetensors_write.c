/* safetensors_write.c - a small safetensors writer (f32/f16/bf16), for --latents-out, reference dumps
 * and tests. The header is built with cJSON and padded with spaces to a multiple of 8. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static const char *st_name(ds_dtype t) { return t == DS_F32 ? "F32" : t == DS_F16 ? "F16" : "BF16"; }

ds_status ds_safetensors_write(const char *path, const ds_st_entry *entries, int n, const char *const *meta_kv,
                               int n_meta, ds_err *err) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", path);
    ds_status s = DS_OK;
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < n_meta && m; i++) cJSON_AddStringToObject(m, meta_kv[2 * i], meta_kv[2 * i + 1]);
    }
    uint64_t off = 0;
    for (int i = 0; i < n && s == DS_OK; i++) {
        const ds_tensor *t = entries[i].tensor;
        const char *name = entries[i].name;
        if (!name || !*name || !strcmp(name, "__metadata__") || cJSON_GetObjectItemCaseSensitive(root, name))
            s = DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: tensor name '%s' is empty, reserved or repeated", path,
                        name ? name : "");
        else if (!t || !ds_tensor_is_contiguous(t) || t->device.kind != DS_DEVICE_CPU || (!t->data && ds_tensor_numel(t)))
            s = DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: tensor '%s' must be a contiguous CPU tensor", path, name);
        else {
            cJSON *e = cJSON_AddObjectToObject(root, name);
            cJSON_AddStringToObject(e, "dtype", st_name(t->dtype));
            cJSON *shape = cJSON_AddArrayToObject(e, "shape");
            for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
            uint64_t bytes = (uint64_t)ds_tensor_nbytes(t);
            cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
            cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
            cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + bytes)));
            off += bytes;
        }
    }
    char *json = s == DS_OK ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (s != DS_OK) return s;
    if (!json) return DS_FAIL(err, DS_ERR_OOM, "%s: out of memory", path);
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(json);
        return DS_FAIL(err, DS_ERR_IO, "cannot write %s", path);
    }
    unsigned char hl[8];
    for (int i = 0; i < 8; i++) hl[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(hl, 1, 8, f) == 8 && fwrite(json, 1, jl, f) == jl;
    for (size_t i = jl; i < padded && ok; i++) ok = fputc(' ', f) != EOF;
    for (int i = 0; i < n && ok; i++) {
        size_t b = (size_t)ds_tensor_nbytes(entries[i].tensor);
        ok = !b || fwrite(entries[i].tensor->data, 1, b, f) == b;
    }
    free(json);
    if (fclose(f) != 0 || !ok) return DS_FAIL(err, DS_ERR_IO, "short write to %s", path);
    return DS_OK;
}
