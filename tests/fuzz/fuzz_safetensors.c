/* fuzz_safetensors.c - libFuzzer target for the safetensors reader: parse an arbitrary image with
 * ds_safetensors_parse, then exercise every accessor on whatever parsed: look every tensor up by
 * name, touch every byte of its data range (so ASan sees any out-of-bounds range), and read the
 * float tensors into each compute dtype. Built by tests/fuzz/CMakeLists.txt (clang, -DDS_FUZZ=ON);
 * run with tools/run_fuzz.sh. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ds_safetensors *st = NULL;
    ds_err err;
    ds_err_clear(&err);
    ds_status s = ds_safetensors_parse(data, size, "fuzz", &st, &err);
    if (s != DS_OK) {
        if (st != NULL || err.code != s || memchr(err.msg, 0, sizeof err.msg) == NULL) abort();
        return 0;
    }
    volatile unsigned sink = 0;
    int64_t n = ds_safetensors_count(st);
    for (int64_t i = 0; i < n; i++) {
        const ds_st_tensor *t = ds_safetensors_at(st, i);
        if (!t || ds_safetensors_find(st, t->name) != t) abort();
        if (t->ndim < 0 || t->ndim > DS_MAX_DIMS) abort();
        const uint8_t *p = t->data;
        if (t->nbytes && (p < data || p + t->nbytes > data + size)) abort();
        for (size_t k = 0; k < t->nbytes; k++) sink += p[k];
        size_t esz = ds_st_dtype_size(t->dtype);
        if (esz == 0 || t->nbytes % esz) abort();
        for (int dt = 0; dt < DS_DTYPE_COUNT; dt++) {
            size_t cap = t->nbytes * 2 + 1;
            void *dst = malloc(cap);
            if (!dst) abort();
            ds_status r = ds_safetensors_read(st, t->name, (ds_dtype)dt, dst, cap, t->ndim, t->shape, &err);
            int is_float = t->dtype == DS_ST_F32 || t->dtype == DS_ST_F16 || t->dtype == DS_ST_BF16;
            if (is_float ? r != DS_OK : r != DS_ERR_UNSUPPORTED) abort();
            free(dst);
        }
    }
    (void)ds_safetensors_metadata(st, "format");
    (void)ds_safetensors_find(st, "__metadata__");
    (void)sink;
    ds_safetensors_close(st);
    return 0;
}
