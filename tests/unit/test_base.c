/* test_base.c - tests of the kernels base: status/error buffers, dtype conversion, tensor views and
 * arenas. Conversion cases are checked against exact IEEE values. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "dtype.h"
#include "status.h"
#include "tensor.h"

static ds_status fail_with_context(ds_err *err) {
    DS_FAIL(err, DS_ERR_FORMAT, "bad header length %d", 42);
    ds_err_prefix(err, "model.safetensors");
    return err->code;
}

Test(base_status, message_file_line_and_prefix) {
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(fail_with_context(&err), DS_ERR_FORMAT);
    cr_assert_str_eq(err.msg, "model.safetensors: bad header length 42");
    cr_assert(strstr(err.file, "test_base.c") != NULL);
    cr_assert_gt(err.line, 0);
    cr_assert_str_eq(ds_status_name(DS_ERR_FORMAT), "format");
    cr_assert_str_eq(ds_status_name((ds_status)999), "unknown");
    cr_assert_eq(DS_FAIL(NULL, DS_ERR_OOM, "no buffer"), DS_ERR_OOM); /* NULL err is allowed */
}

Test(base_status, long_messages_truncate_safely) {
    ds_err err;
    ds_err_clear(&err);
    char big[2 * DS_ERR_MSG_LEN];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    DS_FAIL(&err, DS_ERR_INVALID_ARG, "%s", big);
    cr_assert_eq(strlen(err.msg), DS_ERR_MSG_LEN - 1);
    ds_err_prefix(&err, "%s", big);
    cr_assert_eq(strlen(err.msg), DS_ERR_MSG_LEN - 1);
}

Test(base_dtype, bf16_round_trip_and_rounding) {
    cr_assert_eq(ds_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(ds_bf16_to_f32(0x3f80), 1.0f);
    cr_assert_eq(ds_f32_to_bf16(-2.5f), 0xc020);
    /* 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even -> 1.0 */
    cr_assert_eq(ds_f32_to_bf16(1.00390625f), 0x3f80);
    /* 1 + 3*2^-8 is halfway between 1.0078125 (odd) and 1.015625 (even) -> 1.015625 */
    cr_assert_eq(ds_f32_to_bf16(1.01171875f), 0x3f82);
    cr_assert_eq(ds_f32_to_bf16(INFINITY), 0x7f80);
    cr_assert(isnan(ds_bf16_to_f32(ds_f32_to_bf16(NAN))));
    for (uint32_t b = 0; b < 0x10000; b++) { /* every finite bf16 survives the round trip */
        float f = ds_bf16_to_f32((uint16_t)b);
        if (!isnan(f)) cr_assert_eq(ds_f32_to_bf16(f), b, "bf16 0x%04x", b);
    }
}

Test(base_dtype, f16_exhaustive_round_trip) {
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = ds_f16_to_f32((uint16_t)h);
        if (isnan(f)) {
            cr_assert(isnan(ds_f16_to_f32(ds_f32_to_f16(f))));
            continue;
        }
        cr_assert_eq(ds_f32_to_f16(f), h, "f16 0x%04x -> %g", h, f);
    }
}

Test(base_dtype, f16_known_values_and_rounding) {
    cr_assert_eq(ds_f16_to_f32(0x3c00), 1.0f);
    cr_assert_eq(ds_f16_to_f32(0x7bff), 65504.0f);
    cr_assert_eq(ds_f16_to_f32(0x0001), ldexpf(1.0f, -24)); /* smallest subnormal */
    cr_assert_eq(ds_f16_to_f32(0x0400), ldexpf(1.0f, -14)); /* smallest normal */
    cr_assert_eq(ds_f32_to_f16(65519.0f), 0x7bff);
    cr_assert_eq(ds_f32_to_f16(65520.0f), 0x7c00);          /* ties to even -> inf */
    cr_assert_eq(ds_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* half of the smallest subnormal: even -> 0 */
    cr_assert_eq(ds_f32_to_f16(ldexpf(3.0f, -26)), 0x0001); /* 0.75 ulp -> 1 ulp */
    cr_assert_eq(ds_f32_to_f16(ldexpf(3.0f, -25)), 0x0002); /* 1.5 ulp: tie -> even (2) */
    cr_assert_eq(ds_f32_to_f16(-0.0f), 0x8000);
    /* 1 + 2^-11 is a tie between 1.0 and 1 + 2^-10 -> even (1.0); 1 + 3*2^-11 -> 1 + 2^-9 */
    cr_assert_eq(ds_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    cr_assert_eq(ds_f32_to_f16(1.0f + ldexpf(3.0f, -11)), 0x3c02);
    /* just below the normal range rounds up into it */
    cr_assert_eq(ds_f32_to_f16(ldexpf(1.0f, -14) - ldexpf(1.0f, -30)), 0x0400);
}

Test(base_dtype, bulk_convert_unaligned) {
    float src[5] = {1.0f, -2.0f, 0.5f, 3.25f, -0.125f};
    unsigned char raw[2 * 5 + 1];
    ds_convert(raw + 1, DS_BF16, src, DS_F32, 5); /* odd address */
    float back[5];
    ds_convert(back, DS_F32, raw + 1, DS_BF16, 5);
    for (int i = 0; i < 5; i++) cr_assert_eq(back[i], src[i]);
    ds_convert(raw + 1, DS_F16, src, DS_F32, 5);
    ds_convert(back, DS_F32, raw + 1, DS_F16, 5);
    for (int i = 0; i < 5; i++) cr_assert_eq(back[i], src[i]);
    ds_dtype t;
    cr_assert_eq(ds_dtype_parse("bfloat16", &t, NULL), DS_OK);
    cr_assert_eq(t, DS_BF16);
    ds_err err;
    cr_assert_eq(ds_dtype_parse("int8", &t, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "int8") != NULL);
}

Test(base_tensor, contiguous_reshape_and_checks) {
    float buf[24];
    ds_tensor t = ds_tensor_f32(buf, 3, 2, 3, 4);
    cr_assert_eq(ds_tensor_numel(&t), 24);
    cr_assert_eq(ds_tensor_nbytes(&t), 96);
    cr_assert_eq(t.stride[0], 12);
    cr_assert_eq(t.stride[1], 4);
    cr_assert_eq(t.stride[2], 1);
    cr_assert(ds_tensor_is_contiguous(&t));
    cr_assert_eq(ds_tensor_rows(&t), 6);
    cr_assert_eq(ds_tensor_dim(&t, -1), 4);
    ds_tensor r;
    ds_err err;
    cr_assert_eq(ds_tensor_reshape(&t, 2, (int64_t[]){6, 4}, &r, &err), DS_OK);
    cr_assert_eq(r.shape[0], 6);
    cr_assert_eq(r.data, buf);
    cr_assert_eq(ds_tensor_reshape(&t, 2, (int64_t[]){5, 4}, &r, &err), DS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "[2, 3, 4]") != NULL, "%s", err.msg);
    ds_tensor s = t; /* a column slice is not contiguous */
    s.shape[2] = 2;
    cr_assert(!ds_tensor_is_contiguous(&s));
    cr_assert_eq(ds_tensor_check_f32(&s, 3, "x", &err), DS_ERR_INVALID_ARG);
    ds_tensor h = ds_tensor_make(buf, DS_BF16, 1, (int64_t[]){4});
    cr_assert_eq(ds_tensor_check_f32(&h, 1, "w", &err), DS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "bf16") != NULL);
    cr_assert_eq(ds_tensor_check_f32(&t, 2, "x", &err), DS_ERR_INVALID_ARG);
    ds_tensor sc = ds_tensor_make(buf, DS_F32, 0, NULL);
    cr_assert_eq(ds_tensor_numel(&sc), 1);
}

Test(base_arena, alloc_align_rewind_and_oom) {
    ds_arena a;
    ds_err err;
    cr_assert_eq(ds_arena_init_host(&a, 4096, DS_ARENA_ACTIVATIONS, "act", &err), DS_OK);
    void *p, *q;
    cr_assert_eq(ds_arena_alloc(&a, 10, 0, &p, &err), DS_OK);
    cr_assert_eq((uintptr_t)p % DS_ARENA_ALIGN, 0);
    size_t mark = ds_arena_mark(&a);
    cr_assert_eq(ds_arena_alloc(&a, 100, 64, &q, &err), DS_OK);
    cr_assert_eq((uintptr_t)q % 64, 0);
    cr_assert_geq((char *)q, (char *)p + 10);
    ds_arena_rewind(&a, mark);
    void *q2;
    cr_assert_eq(ds_arena_alloc(&a, 100, 64, &q2, &err), DS_OK);
    cr_assert_eq(q2, q); /* rewinding reuses the same memory */
    cr_assert_eq(ds_arena_alloc(&a, 1 << 20, 0, &p, &err), DS_ERR_OOM);
    cr_assert(strstr(err.msg, "act") != NULL, "%s", err.msg);
    cr_assert_eq(ds_arena_alloc(&a, 8, 3, &p, &err), DS_ERR_INVALID_ARG);
    cr_assert_eq(ds_arena_alloc(&a, SIZE_MAX, 0, &p, &err), DS_ERR_OOM); /* no wrap-around */
    ds_tensor t;
    cr_assert_eq(ds_arena_tensor(&a, DS_F32, 2, (int64_t[]){3, 5}, &t, &err), DS_OK);
    cr_assert_eq(ds_tensor_numel(&t), 15);
    cr_assert(ds_tensor_is_contiguous(&t));
    cr_assert_eq(ds_arena_tensor(&a, DS_F32, 2, (int64_t[]){-1, 5}, &t, &err), DS_ERR_INVALID_ARG);
    ds_arena_free(&a);
    cr_assert_null(a.base);
}

Test(base_arena, plan_measures_what_a_real_run_needs) {
    ds_arena plan, real;
    ds_err err;
    ds_arena_init_plan(&plan, DS_ARENA_ACTIVATIONS, "plan");
    ds_tensor t;
    const int64_t shapes[3][2] = {{7, 13}, {1, 1}, {129, 3}};
    for (int pass = 0; pass < 2; pass++) {
        ds_arena *a = pass ? &real : &plan;
        if (pass) cr_assert_eq(ds_arena_init_host(&real, plan.high_water, DS_ARENA_ACTIVATIONS, "real", &err), DS_OK);
        size_t m = ds_arena_mark(a);
        for (int i = 0; i < 3; i++) cr_assert_eq(ds_arena_tensor(a, DS_F32, 2, shapes[i], &t, &err), DS_OK);
        ds_arena_rewind(a, m);
        cr_assert_eq(ds_arena_tensor(a, DS_BF16, 2, shapes[2], &t, &err), DS_OK);
    }
    cr_assert_leq(real.high_water, plan.high_water);
    ds_arena_free(&real);
}
