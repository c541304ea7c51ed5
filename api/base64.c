/* base64.c - RFC 4648 base64 encoder and strict decoder (see base64.h). */
#include "base64.h"

#include <stdbool.h>
#include <stdlib.h>

static const char k_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ds_base64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

size_t ds_base64_encode(const uint8_t *src, size_t n, char *dst) {
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        dst[o++] = k_alpha[v >> 18 & 63];
        dst[o++] = k_alpha[v >> 12 & 63];
        dst[o++] = k_alpha[v >> 6 & 63];
        dst[o++] = k_alpha[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)src[i] << 16 | (i + 1 < n ? (uint32_t)src[i + 1] << 8 : 0);
        dst[o++] = k_alpha[v >> 18 & 63];
        dst[o++] = k_alpha[v >> 12 & 63];
        dst[o++] = i + 1 < n ? k_alpha[v >> 6 & 63] : '=';
        dst[o++] = '=';
    }
    dst[o] = 0;
    return o;
}

static int val(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

ds_status ds_base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len, ds_err *err) {
    *out = NULL;
    *out_len = 0;
    if (len % 4) return DS_FAIL(err, DS_ERR_INVALID_ARG, "base64 length %zu is not a multiple of 4", len);
    size_t pad = 0;
    if (len >= 1 && s[len - 1] == '=') pad++;
    if (len >= 2 && s[len - 2] == '=') pad++;
    size_t n = len / 4 * 3 - pad;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return DS_FAIL(err, DS_ERR_OOM, "out of memory decoding %zu base64 characters", len);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            char c = s[i + k];
            bool last = i + 4 == len;
            if (c == '=' && last && k >= 2 && (k == 3 || s[i + 3] == '=')) v[k] = 0;
            else if ((v[k] = val(c)) < 0) {
                free(buf);
                return DS_FAIL(err, DS_ERR_INVALID_ARG, "invalid base64 character at offset %zu", i + k);
            }
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if (o < n) buf[o++] = (uint8_t)(x >> 16);
        if (o < n) buf[o++] = (uint8_t)(x >> 8);
        if (o < n) buf[o++] = (uint8_t)x;
    }
    *out = buf;
    *out_len = n;
    return DS_OK;
}
