/* base64.h - RFC 4648 base64 (standard alphabet, '=' padding) for PNG bytes in JSON replies and f32
 * tensors in requests. */
#ifndef DS_BASE64_H
#define DS_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Length of the encoding of n bytes (without the NUL). */
size_t ds_base64_encoded_len(size_t n);

/* Encode src[0..n) into dst, which has room for ds_base64_encoded_len(n) + 1 bytes; NUL-terminates.
 * Returns the length written. */
size_t ds_base64_encode(const uint8_t *src, size_t n, char *dst);

/* Decode s[0..len) (padding required when the length is not a multiple of 4; no whitespace) into a
 * malloc'd buffer *out of *out_len bytes (caller frees). Errors: DS_ERR_INVALID_ARG (a bad character or
 * length; the message says where), DS_ERR_OOM. */
ds_status ds_base64_decode(const char *s, size_t len, uint8_t **out, size_t *out_len, ds_err *err);

#endif /* DS_BASE64_H */
