/* test_safetensors.c - the safetensors reader: happy paths (dtype conversion, metadata, 0-d and
 * empty tensors, unaligned data, padded header, lookups) and malformed images (each asserting the
 * status and a distinctive part of the message), in memory and through files on disk. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"

/* Assemble an image: u64 LE header length (strlen(hdr) + pad), hdr, pad spaces, data. Caller frees. */
static uint8_t *mk_image(const char *hdr, size_t pad, const void *data, size_t dlen, size_t *len) {
    size_t hl = strlen(hdr) + pad;
    *len = 8 + hl + dlen;
    uint8_t *b = malloc(*len + 1);
    cr_assert_not_null(b);
    for (int k = 0; k < 8; k++) b[k] = (uint8_t)((uint64_t)hl >> (8 * k));
    memcpy(b + 8, hdr, strlen(hdr));
    memset(b + 8 + strlen(hdr), ' ', pad);
    if (dlen) memcpy(b + 8 + hl, data, dlen);
    return b;
}

/* Parse an image and expect failure with `code` and `substr` in the message. */
static void expect_fail_img(const uint8_t *img, size_t len, ds_status code, const char *substr) {
    ds_safetensors *st = (ds_safetensors *)0x1;
    ds_err err;
    ds_err_clear(&err);
    ds_status s = ds_safetensors_parse(img, len, "bad.safetensors", &st, &err);
    cr_assert_eq(s, code, "expected %s, got %s (%s)", ds_status_name(code), ds_status_name(s), err.msg);
    cr_assert_null(st);
    cr_assert_eq(err.code, code);
    cr_assert(strstr(err.msg, substr) != NULL, "message '%s' lacks '%s'", err.msg, substr);
    cr_assert(strstr(err.msg, "bad.safetensors") != NULL, "message '%s' does not name the file", err.msg);
}

static void expect_fail(const char *hdr, size_t dlen, ds_status code, const char *substr) {
    uint8_t *data = calloc(dlen + 1, 1);
    size_t len;
    uint8_t *img = mk_image(hdr, 0, data, dlen, &len);
    expect_fail_img(img, len, code, substr);
    free(img);
    free(data);
}

static ds_safetensors *parse_ok(const uint8_t *img, size_t len) {
    ds_safetensors *st = NULL;
    ds_err err;
    ds_err_clear(&err);
    ds_status s = ds_safetensors_parse(img, len, "good.safetensors", &st, &err);
    cr_assert_eq(s, DS_OK, "parse failed: %s", err.msg);
    cr_assert_not_null(st);
    return st;
}

/* ---- happy paths ------------------------------------------------------------------------------ */

Test(safetensors, dtype_conversion_exact) {
    /* f32 [1.5, -2.25, 3.0], f16 [1.0, -0.5, 65504], bf16 [1.0, -2.0, 3.140625] */
    uint8_t data[12 + 6 + 6];
    float f[3] = {1.5f, -2.25f, 3.0f};
    uint16_t h[3] = {0x3C00, 0xB800, 0x7BFF};
    uint16_t b[3] = {0x3F80, 0xC000, 0x4049};
    memcpy(data, f, 12);
    memcpy(data + 12, h, 6);
    memcpy(data + 18, b, 6);
    const char *hdr = "{\"w.f32\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                      "\"w.f16\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[12,18]},"
                      "\"w.bf16\":{\"dtype\":\"BF16\",\"shape\":[1,3],\"data_offsets\":[18,24]}}";
    size_t len;
    uint8_t *img = mk_image(hdr, 0, data, sizeof data, &len);
    ds_safetensors *st = parse_ok(img, len);
    cr_assert_eq(ds_safetensors_count(st), 3);
    cr_assert_str_eq(ds_safetensors_at(st, 0)->name, "w.f32");
    cr_assert_str_eq(ds_safetensors_at(st, 1)->name, "w.f16");
    cr_assert_str_eq(ds_safetensors_at(st, 2)->name, "w.bf16");
    cr_assert_null(ds_safetensors_at(st, 3));
    cr_assert_null(ds_safetensors_at(st, -1));
    cr_assert_str_eq(ds_safetensors_label(st), "good.safetensors");

    ds_err err;
    float out[3];
    cr_assert_eq(ds_safetensors_read(st, "w.f32", DS_F32, out, sizeof out, 1, (int64_t[]){3}, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(out[0], 1.5f);
    cr_assert_eq(out[1], -2.25f);
    cr_assert_eq(out[2], 3.0f);
    cr_assert_eq(ds_safetensors_read(st, "w.f16", DS_F32, out, sizeof out, 1, (int64_t[]){3}, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], -0.5f);
    cr_assert_eq(out[2], 65504.0f);
    cr_assert_eq(ds_safetensors_read(st, "w.bf16", DS_F32, out, sizeof out, 2, (int64_t[]){1, 3}, &err), DS_OK, "%s",
                 err.msg);
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], -2.0f);
    cr_assert_eq(out[2], 3.140625f);

    /* f32 -> f16 and -> bf16 (values exactly representable) */
    uint16_t o16[3];
    cr_assert_eq(ds_safetensors_read(st, "w.f32", DS_F16, o16, sizeof o16, 1, (int64_t[]){3}, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(o16[0], 0x3E00);
    cr_assert_eq(o16[1], 0xC080);
    cr_assert_eq(o16[2], 0x4200);
    cr_assert_eq(ds_safetensors_read(st, "w.f32", DS_BF16, o16, sizeof o16, -1, NULL, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(o16[0], 0x3FC0);
    cr_assert_eq(o16[1], 0xC010);
    cr_assert_eq(o16[2], 0x4040);
    /* bf16 -> bf16 copies bits */
    cr_assert_eq(ds_safetensors_read(st, "w.bf16", DS_BF16, o16, sizeof o16, -1, NULL, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(o16[2], 0x4049);

    const ds_st_tensor *t = ds_safetensors_find(st, "w.bf16");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, DS_ST_BF16);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[0], 1);
    cr_assert_eq(t->shape[1], 3);
    cr_assert_eq(t->nbytes, 6);
    cr_assert_eq((const uint8_t *)t->data, img + len - 6);
    cr_assert_null(ds_safetensors_find(st, "w.f6"));
    cr_assert_null(ds_safetensors_find(st, "w"));
    ds_safetensors_close(st);
    free(img);
}

Test(safetensors, read_errors) {
    uint8_t data[12 + 4] = {0};
    const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                      "\"ids\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[12,16]}}";
    size_t len;
    uint8_t *img = mk_image(hdr, 0, data, sizeof data, &len);
    ds_safetensors *st = parse_ok(img, len);
    ds_err err;
    float out[4];
    cr_assert_eq(ds_safetensors_read(st, "nope", DS_F32, out, sizeof out, -1, NULL, &err), DS_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, "'nope'") && strstr(err.msg, "good.safetensors"), "%s", err.msg);
    cr_assert_eq(ds_safetensors_read(st, "ids", DS_F32, out, sizeof out, -1, NULL, &err), DS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "I32"), "%s", err.msg);
    cr_assert_eq(ds_safetensors_read(st, "a", DS_F32, out, 8, -1, NULL, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "needs 12 bytes"), "%s", err.msg);
    cr_assert_eq(ds_safetensors_read(st, "a", DS_F32, out, sizeof out, 2, (int64_t[]){1, 3}, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "shape [3], expected [1, 3]"), "%s", err.msg);
    cr_assert_eq(ds_safetensors_read(st, "a", DS_F32, out, sizeof out, 1, (int64_t[]){4}, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "expected [4]"), "%s", err.msg);
    /* f16 destination needs only 6 bytes */
    uint16_t h[3];
    cr_assert_eq(ds_safetensors_read(st, "a", DS_F16, h, sizeof h, -1, NULL, &err), DS_OK, "%s", err.msg);
    ds_safetensors_close(st);
    free(img);
}

Test(safetensors, metadata_scalar_empty_unaligned_padded) {
    /* U8 [1] at 0, then an f32 scalar at offset 1 (unaligned), an empty [0, 4] tensor, then F16 [2]. */
    uint8_t data[1 + 4 + 4];
    data[0] = 7;
    float v = -0.75f;
    memcpy(data + 1, &v, 4);
    uint16_t h[2] = {0x4000, 0x3555}; /* 2.0, 0.333251953125 */
    memcpy(data + 5, h, 4);
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\",\"atol\":\"1e-5\"},"
                      "\"byte\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                      "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[1,5]},"
                      "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[5,5]},"
                      "\"half\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[5,9]}}";
    size_t len;
    uint8_t *img = mk_image(hdr, 5, data, sizeof data, &len); /* 5 pad spaces; data starts at an odd address */
    ds_safetensors *st = parse_ok(img, len);
    cr_assert_eq(ds_safetensors_count(st), 4);
    cr_assert_str_eq(ds_safetensors_metadata(st, "format"), "pt");
    cr_assert_str_eq(ds_safetensors_metadata(st, "atol"), "1e-5");
    cr_assert_null(ds_safetensors_metadata(st, "missing"));
    cr_assert_null(ds_safetensors_find(st, "__metadata__"));

    ds_err err;
    const ds_st_tensor *s0 = ds_safetensors_find(st, "scalar");
    cr_assert_not_null(s0);
    cr_assert_eq(s0->ndim, 0);
    cr_assert_eq(s0->nbytes, 4);
    float out = 0;
    cr_assert_eq(ds_safetensors_read(st, "scalar", DS_F32, &out, sizeof out, 0, (int64_t[]){0}, &err), DS_OK, "%s",
                 err.msg);
    cr_assert_eq(out, -0.75f);

    const ds_st_tensor *e = ds_safetensors_find(st, "empty");
    cr_assert_not_null(e);
    cr_assert_eq(e->ndim, 2);
    cr_assert_eq(e->shape[0], 0);
    cr_assert_eq(e->shape[1], 4);
    cr_assert_eq(e->nbytes, 0);
    cr_assert_eq(ds_safetensors_read(st, "empty", DS_F32, NULL, 0, 2, (int64_t[]){0, 4}, &err), DS_OK, "%s", err.msg);

    float hf[2];
    cr_assert_eq(ds_safetensors_read(st, "half", DS_F32, hf, sizeof hf, 1, (int64_t[]){2}, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(hf[0], 2.0f);
    cr_assert_eq(hf[1], 0.333251953125f);
    const ds_st_tensor *b = ds_safetensors_find(st, "byte");
    cr_assert_eq(((const uint8_t *)b->data)[0], 7);
    /* offset order: byte, scalar, then the empty tensor before half (same begin, smaller end) */
    cr_assert_str_eq(ds_safetensors_at(st, 0)->name, "byte");
    cr_assert_str_eq(ds_safetensors_at(st, 1)->name, "scalar");
    cr_assert_str_eq(ds_safetensors_at(st, 2)->name, "empty");
    cr_assert_str_eq(ds_safetensors_at(st, 3)->name, "half");
    ds_safetensors_close(st);
    free(img);
}

Test(safetensors, empty_file_and_all_dtypes) {
    /* A header with only metadata and no data is valid. */
    size_t len;
    uint8_t *img = mk_image("{\"__metadata__\":{}}", 3, NULL, 0, &len);
    ds_safetensors *st = parse_ok(img, len);
    cr_assert_eq(ds_safetensors_count(st), 0);
    cr_assert_null(ds_safetensors_find(st, "x"));
    ds_safetensors_close(st);
    free(img);

    static const char *names[] = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8",
                                  "U64", "U32", "U16", "U8", "BOOL", "F8_E4M3", "F8_E5M2"};
    static const size_t sizes[] = {8, 4, 2, 2, 8, 4, 2, 1, 8, 4, 2, 1, 1, 1, 1};
    for (int k = 0; k < DS_ST_DTYPE_COUNT; k++) {
        cr_assert_str_eq(ds_st_dtype_name((ds_st_dtype)k), names[k]);
        cr_assert_eq(ds_st_dtype_size((ds_st_dtype)k), sizes[k]);
        char hdr[160];
        snprintf(hdr, sizeof hdr, "{\"t\":{\"dtype\":\"%s\",\"shape\":[2],\"data_offsets\":[0,%zu]}}", names[k],
                 2 * sizes[k]);
        uint8_t data[16] = {0};
        img = mk_image(hdr, 0, data, 2 * sizes[k], &len);
        st = parse_ok(img, len);
        cr_assert_eq(ds_safetensors_find(st, "t")->dtype, (ds_st_dtype)k);
        ds_safetensors_close(st);
        free(img);
    }
    cr_assert_str_eq(ds_st_dtype_name(DS_ST_DTYPE_COUNT), "?");
}

Test(safetensors, many_tensors_lookup) {
    /* 300 U8 tensors listed in reverse offset order: lookups by name and offset order. */
    enum { N = 300 };
    size_t cap = (size_t)N * 80 + 16, hl = 0;
    char *hdr = malloc(cap);
    hl += (size_t)snprintf(hdr + hl, cap - hl, "{");
    for (int i = N - 1; i >= 0; i--)
        hl += (size_t)snprintf(hdr + hl, cap - hl, "%s\"blocks.%d.w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                               i == N - 1 ? "" : ",", i, i, i + 1);
    snprintf(hdr + hl, cap - hl, "}");
    uint8_t data[N];
    for (int i = 0; i < N; i++) data[i] = (uint8_t)(i * 7);
    size_t len;
    uint8_t *img = mk_image(hdr, 0, data, N, &len);
    ds_safetensors *st = parse_ok(img, len);
    cr_assert_eq(ds_safetensors_count(st), N);
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "blocks.%d.w", i);
        const ds_st_tensor *t = ds_safetensors_find(st, name);
        cr_assert_not_null(t, "%s", name);
        cr_assert_str_eq(t->name, name);
        cr_assert_eq(((const uint8_t *)t->data)[0], (uint8_t)(i * 7));
        cr_assert_eq(ds_safetensors_at(st, i), t);
    }
    cr_assert_null(ds_safetensors_find(st, "blocks.300.w"));
    ds_safetensors_close(st);
    free(img);
    free(hdr);
}

/* ---- malformed images ------------------------------------------------------------------------- */

Test(safetensors_bad, truncated_below_8_bytes) {
    uint8_t b[5] = {1, 0, 0, 0, 0};
    expect_fail_img(b, sizeof b, DS_ERR_FORMAT, "too short for the 8-byte header length");
    expect_fail_img(b, 0, DS_ERR_FORMAT, "too short");
}

Test(safetensors_bad, header_length_zero) {
    uint8_t b[16] = {0};
    expect_fail_img(b, sizeof b, DS_ERR_FORMAT, "header length is 0");
}

Test(safetensors_bad, header_length_past_file) {
    size_t len;
    uint8_t *img = mk_image("{}", 0, NULL, 0, &len);
    img[0] = 200; /* claims 200 bytes of header, file has 2 */
    expect_fail_img(img, len, DS_ERR_FORMAT, "header length 200 is larger than the file");
    memset(img, 0xff, 8); /* 2^64-1: must not wrap */
    expect_fail_img(img, len, DS_ERR_FORMAT, "exceeds the limit");
    free(img);
}

Test(safetensors_bad, header_length_over_limit) {
    uint8_t b[16] = {0};
    uint64_t n = (uint64_t)DS_ST_MAX_HEADER + 1;
    for (int k = 0; k < 8; k++) b[k] = (uint8_t)(n >> (8 * k));
    expect_fail_img(b, sizeof b, DS_ERR_FORMAT, "exceeds the limit");
}

Test(safetensors_bad, invalid_json) {
    expect_fail("{\"a\":{\"dtype\":\"F32\",", 0, DS_ERR_FORMAT, "not valid JSON");
    expect_fail("{\"a\" 1}", 0, DS_ERR_FORMAT, "not valid JSON");
    expect_fail("{} x", 0, DS_ERR_FORMAT, "trailing garbage");
}

Test(safetensors_bad, nul_in_header) {
    size_t len;
    uint8_t *img = mk_image("{\"a\":1}", 0, NULL, 0, &len);
    img[8 + 3] = 0;
    expect_fail_img(img, len, DS_ERR_FORMAT, "NUL byte");
    free(img);
}

Test(safetensors_bad, non_object_header) {
    expect_fail("[]", 0, DS_ERR_FORMAT, "header is not a JSON object");
    expect_fail("42", 0, DS_ERR_FORMAT, "header is not a JSON object");
    expect_fail("{\"a\":[1]}", 0, DS_ERR_FORMAT, "tensor 'a': entry is not an object");
}

Test(safetensors_bad, unknown_dtype) {
    expect_fail("{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16, DS_ERR_FORMAT,
                "tensor 'a': unknown dtype \"F128\"");
    expect_fail("{\"a\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DS_ERR_FORMAT,
                "\"dtype\" is not a string");
}

Test(safetensors_bad, offsets_past_end) {
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, DS_ERR_FORMAT,
                "tensor 'a': data_offsets end 8 is past the end of the 4-byte data buffer");
}

Test(safetensors_bad, truncated_data) {
    /* A valid image cut short in the data section. */
    uint8_t data[16] = {0};
    size_t len;
    uint8_t *img = mk_image("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0, data, 16, &len);
    expect_fail_img(img, len - 3, DS_ERR_FORMAT, "truncated file?");
    free(img);
}

Test(safetensors_bad, trailing_bytes) {
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6, DS_ERR_FORMAT,
                "tensors cover 4 bytes but the data buffer has 6");
}

Test(safetensors_bad, overlapping_ranges) {
    expect_fail("{\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]},"
                "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
                20, DS_ERR_FORMAT, "tensor 'b': data_offsets [8, 20] overlap tensor 'a.weight' [0, 12]");
}

Test(safetensors_bad, hole) {
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                12, DS_ERR_FORMAT, "tensor 'b': hole in the data buffer: bytes [4, 8)");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, DS_ERR_FORMAT,
                "hole in the data buffer: bytes [0, 4)");
}

Test(safetensors_bad, shape_size_mismatch) {
    expect_fail("{\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, DS_ERR_FORMAT,
                "tensor 'a': size mismatch: F16 shape needs 12 bytes but data_offsets [0, 24] span 24");
}

Test(safetensors_bad, shape_product_overflow) {
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776,1099511627776],"
                "\"data_offsets\":[0,4]}}",
                4, DS_ERR_FORMAT, "tensor 'a': shape product overflows");
    /* product fits in u64 but times the dtype size does not */
    expect_fail("{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,536870912],\"data_offsets\":[0,8]}}", 8, DS_ERR_FORMAT,
                "shape product overflows");
}

Test(safetensors_bad, duplicate_names) {
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                8, DS_ERR_FORMAT, "duplicate tensor name 'a'");
    expect_fail("{\"__metadata__\":{},\"__metadata__\":{}}", 0, DS_ERR_FORMAT, "duplicate \"__metadata__\"");
    expect_fail("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, DS_ERR_FORMAT, "duplicate \"__metadata__\" key 'k'");
}

Test(safetensors_bad, missing_fields) {
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, DS_ERR_FORMAT, "tensor 'a': missing \"data_offsets\"");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, DS_ERR_FORMAT, "missing \"shape\"");
    expect_fail("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DS_ERR_FORMAT, "missing \"dtype\"");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, DS_ERR_FORMAT,
                "\"data_offsets\" is not a [begin, end] array");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, DS_ERR_FORMAT,
                "\"shape\" is not an array");
}

Test(safetensors_bad, negative_or_fractional_shape) {
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, DS_ERR_FORMAT,
                "tensor 'a': shape[0] is not a non-negative integer");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2, 1.5],\"data_offsets\":[0,12]}}", 12, DS_ERR_FORMAT,
                "shape[1] is not a non-negative integer");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, DS_ERR_FORMAT,
                "shape[0] is not a non-negative integer");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[9007199254740992],\"data_offsets\":[0,4]}}", 4, DS_ERR_FORMAT,
                "shape[0] is not a non-negative integer");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1e400],\"data_offsets\":[0,4]}}", 4, DS_ERR_FORMAT,
                "shape[0] is not a non-negative integer");
}

Test(safetensors_bad, bad_offsets_values) {
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-4,0]}}", 0, DS_ERR_FORMAT,
                "data_offsets are not non-negative integers");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]}}", 4, DS_ERR_FORMAT,
                "data_offsets are not non-negative integers");
}

Test(safetensors_bad, begin_after_end) {
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, DS_ERR_FORMAT,
                "tensor 'a': data_offsets [8, 4] have begin > end");
}

Test(safetensors_bad, too_many_dims) {
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, DS_ERR_UNSUPPORTED,
                "tensor 'a': 7 dims, more than the supported 6");
}

Test(safetensors_bad, metadata_not_strings) {
    expect_fail("{\"__metadata__\":{\"epoch\":3}}", 0, DS_ERR_FORMAT, "\"__metadata__\" entry 'epoch' is not a string");
    expect_fail("{\"__metadata__\":[\"a\"]}", 0, DS_ERR_FORMAT, "\"__metadata__\" is not an object");
    expect_fail("{\"__metadata__\":\"x\"}", 0, DS_ERR_FORMAT, "\"__metadata__\" is not an object");
}

/* ---- files on disk ---------------------------------------------------------------------------- */

static char *write_temp(const void *b, size_t n) {
    char *path = strdup("/tmp/ds_st_test_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, b, n), (ssize_t)n);
    close(fd);
    return path;
}

Test(safetensors_file, open_valid_file) {
    float f[2] = {0.5f, -8.0f};
    size_t len;
    uint8_t *img = mk_image("{\"__metadata__\":{\"format\":\"pt\"},\"x\":{\"dtype\":\"F32\",\"shape\":[2,1],"
                            "\"data_offsets\":[0,8]}}",
                            7, f, sizeof f, &len);
    char *path = write_temp(img, len);
    ds_safetensors *st = NULL;
    ds_err err;
    cr_assert_eq(ds_safetensors_open(path, &st, &err), DS_OK, "%s", err.msg);
    cr_assert_str_eq(ds_safetensors_label(st), path);
    cr_assert_str_eq(ds_safetensors_metadata(st, "format"), "pt");
    float out[2];
    cr_assert_eq(ds_safetensors_read(st, "x", DS_F32, out, sizeof out, 2, (int64_t[]){2, 1}, &err), DS_OK, "%s", err.msg);
    cr_assert_eq(out[0], 0.5f);
    cr_assert_eq(out[1], -8.0f);
    ds_safetensors_close(st);
    unlink(path);
    free(path);
    free(img);
}

Test(safetensors_file, open_malformed_files) {
    /* truncated below 8 bytes */
    uint8_t small[3] = {1, 2, 3};
    char *path = write_temp(small, sizeof small);
    ds_safetensors *st = (ds_safetensors *)0x1;
    ds_err err;
    cr_assert_eq(ds_safetensors_open(path, &st, &err), DS_ERR_FORMAT);
    cr_assert_null(st);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "too short"), "%s", err.msg);
    unlink(path);
    free(path);

    /* empty file */
    path = write_temp("", 0);
    cr_assert_eq(ds_safetensors_open(path, &st, &err), DS_ERR_FORMAT);
    cr_assert(strstr(err.msg, "file is 0 bytes"), "%s", err.msg);
    unlink(path);
    free(path);

    /* overlapping ranges through the mmap path */
    size_t len;
    uint8_t data[8] = {0};
    uint8_t *img = mk_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                            0, data, 8, &len);
    path = write_temp(img, len);
    cr_assert_eq(ds_safetensors_open(path, &st, &err), DS_ERR_FORMAT);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "overlap tensor 'a' [0, 4]"), "%s", err.msg);
    unlink(path);
    free(path);
    free(img);
}

Test(safetensors_file, open_nonexistent_is_io) {
    ds_safetensors *st = (ds_safetensors *)0x1;
    ds_err err;
    cr_assert_eq(ds_safetensors_open("/nonexistent/dir/model.safetensors", &st, &err), DS_ERR_IO);
    cr_assert_null(st);
    cr_assert(strstr(err.msg, "/nonexistent/dir/model.safetensors: cannot open"), "%s", err.msg);
    /* a directory is not a safetensors file */
    cr_assert_eq(ds_safetensors_open("/tmp", &st, &err), DS_ERR_IO);
    cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);
}

/* ---- the committed fuzz seed corpus (tests/fuzz/corpus): valid_* parse, bad_* are rejected ---- */

Test(safetensors_file, fuzz_corpus_regression) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/../fuzz/corpus", DS_TEST_DATA_DIR);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int n_valid = 0, n_bad = 0;
    for (struct dirent *e; (e = readdir(d));) {
        int valid = strncmp(e->d_name, "valid_", 6) == 0, bad = strncmp(e->d_name, "bad_", 4) == 0;
        if (!valid && !bad) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ds_safetensors *st = NULL;
        ds_err err;
        ds_status s = ds_safetensors_open(path, &st, &err);
        if (valid) {
            cr_assert_eq(s, DS_OK, "%s: %s", e->d_name, err.msg);
            for (int64_t i = 0; i < ds_safetensors_count(st); i++)
                cr_assert_eq(ds_safetensors_find(st, ds_safetensors_at(st, i)->name), ds_safetensors_at(st, i));
            n_valid++;
        } else {
            cr_assert_eq(s, DS_ERR_FORMAT, "%s: expected a format error, got %s (%s)", e->d_name, ds_status_name(s),
                         err.msg);
            cr_assert_null(st);
            n_bad++;
        }
        ds_safetensors_close(st);
    }
    closedir(d);
    cr_assert_geq(n_valid, 4);
    cr_assert_geq(n_bad, 8);
}

/* The writer's output reads back through the validating reader: values, dtypes, shapes, metadata. */
Test(safetensors_file, write_then_read_back) {
    char path[] = "/tmp/ds_stw_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    float a[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    uint16_t h[3] = {ds_f32_to_bf16(1.5f), ds_f32_to_bf16(-2.0f), ds_f32_to_bf16(0.25f)};
    ds_tensor ta = ds_tensor_f32(a, 2, 2, 3);
    ds_tensor tb = ds_tensor_make(h, DS_BF16, 1, (int64_t[]){3});
    ds_tensor tz = ds_tensor_make(NULL, DS_F32, 1, (int64_t[]){0});
    const ds_st_entry e[] = {{"latents", &ta}, {"b.weight", &tb}, {"empty", &tz}};
    const char *meta[] = {"seed", "42", "model", "demo"};
    ds_err err;
    cr_assert_eq(ds_safetensors_write(path, e, 3, meta, 2, &err), DS_OK, "%s", err.msg);
    ds_safetensors *st = NULL;
    cr_assert_eq(ds_safetensors_open(path, &st, &err), DS_OK, "%s", err.msg);
    float back[6], bb[3];
    cr_assert_eq(ds_safetensors_read(st, "latents", DS_F32, back, sizeof back, 2, (int64_t[]){2, 3}, &err), DS_OK);
    cr_assert(memcmp(a, back, sizeof a) == 0);
    cr_assert_eq(ds_safetensors_read(st, "b.weight", DS_F32, bb, sizeof bb, -1, NULL, &err), DS_OK);
    cr_assert(bb[0] == 1.5f && bb[1] == -2.0f && bb[2] == 0.25f);
    cr_assert_eq(ds_safetensors_find(st, "b.weight")->dtype, DS_ST_BF16);
    cr_assert_str_eq(ds_safetensors_metadata(st, "model"), "demo");
    ds_safetensors_close(st);
    const ds_st_entry dup[] = {{"x", &ta}, {"x", &ta}};
    cr_assert_eq(ds_safetensors_write(path, dup, 2, NULL, 0, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_safetensors_write("/nonexistent-dir/a.safetensors", e, 1, NULL, 0, &err), DS_ERR_IO);
    unlink(path);
}
