/* dtype.h - element types of ditserve tensors and scalar/bulk conversions between f32, f16, bf16.
 *
 * Conversions to half types round to nearest even and keep inf/NaN; f16 subnormals are exact. */
#ifndef DS_DTYPE_H
#define DS_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ds_dtype { DS_F32 = 0, DS_F16, DS_BF16, DS_DTYPE_COUNT } ds_dtype;

/* Bytes per element (4 or 2). */
size_t ds_dtype_size(ds_dtype t);

/* "f32", "f16", "bf16"; "?" for an invalid value. */
const char *ds_dtype_name(ds_dtype t);

/* Parse "f32"/"f16"/"bf16" (also "float32", "float16", "bfloat16"). Returns DS_ERR_INVALID_ARG on
 * anything else. */
ds_status ds_dtype_parse(const char *s, ds_dtype *out, ds_err *err);

float    ds_f16_to_f32(uint16_t h);
uint16_t ds_f32_to_f16(float f);
float    ds_bf16_to_f32(uint16_t b);
uint16_t ds_f32_to_bf16(float f);

/* Convert n elements from `src` (type st) to `dst` (type dt). src and dst must not overlap unless
 * they are the same pointer with the same type (then it is a no-op). Pointers need not be aligned. */
void ds_convert(void *dst, ds_dtype dt, const void *src, ds_dtype st, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* DS_DTYPE_H */
