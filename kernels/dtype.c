/* dtype.c - dtype names and f32 <-> f16/bf16 conversion (bit manipulation, round to nearest even). */
#include "dtype.h"

#include <string.h>

size_t ds_dtype_size(ds_dtype t) { return t == DS_F32 ? 4 : 2; }

const char *ds_dtype_name(ds_dtype t) {
    switch (t) {
    case DS_F32: return "f32";
    case DS_F16: return "f16";
    case DS_BF16: return "bf16";
    default: return "?";
    }
}

ds_status ds_dtype_parse(const char *s, ds_dtype *out, ds_err *err) {
    if (s && (!strcmp(s, "f32") || !strcmp(s, "float32"))) { *out = DS_F32; return DS_OK; }
    if (s && (!strcmp(s, "f16") || !strcmp(s, "float16"))) { *out = DS_F16; return DS_OK; }
    if (s && (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))) { *out = DS_BF16; return DS_OK; }
    return DS_FAIL(err, DS_ERR_INVALID_ARG, "unknown dtype '%s' (expected f32, f16 or bf16)", s ? s : "(null)");
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float ds_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t ds_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                              /* RNE */
    return (uint16_t)(u >> 16);
}

float ds_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / NaN */
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        /* subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t ds_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t au = u & 0x7fffffffu;
    if (au > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((au >> 13) & 0x3ffu)); /* NaN */
    if (au >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (au < 0x38800000u) {                                   /* below 2^-14: subnormal or zero */
        if (au < 0x33000000u) return sign;                    /* < 2^-25: rounds to 0 */
        uint32_t man = (au & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(au >> 23); /* 14..24 for exponents -14..-25 (f32 biased 113..102) */
        uint32_t half = 1u << (shift - 1);
        uint32_t rem = man & ((1u << shift) - 1u);
        uint32_t q = man >> shift;
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = au + 0xfffu + ((au >> 13) & 1u); /* RNE on the 13 dropped bits */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

static float load_as_f32(const void *src, ds_dtype st, size_t i) {
    if (st == DS_F32) { float v; memcpy(&v, (const char *)src + 4 * i, 4); return v; }
    uint16_t h;
    memcpy(&h, (const char *)src + 2 * i, 2);
    return st == DS_F16 ? ds_f16_to_f32(h) : ds_bf16_to_f32(h);
}

void ds_convert(void *dst, ds_dtype dt, const void *src, ds_dtype st, size_t n) {
    if (dst == src && dt == st) return;
    if (dt == st) { memmove(dst, src, n * ds_dtype_size(dt)); return; }
    for (size_t i = 0; i < n; i++) {
        float v = load_as_f32(src, st, i);
        if (dt == DS_F32) {
            memcpy((char *)dst + 4 * i, &v, 4);
        } else {
            uint16_t h = dt == DS_F16 ? ds_f32_to_f16(v) : ds_f32_to_bf16(v);
            memcpy((char *)dst + 2 * i, &h, 2);
        }
    }
}
