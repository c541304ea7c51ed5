/* cache_vec.h - the few whole-vector operations DBCache and TaylorSeer need (copy, a - b, a + b, the
 * relative-L1 residual diff, divided differences, Taylor terms), on the device of the block state.
 *
 * A vector is a ds_tensor used as flat storage: its first n elements (capacity >= n). Each operation is one
 * op from ops.h on the vectors' device (the CPU ops are the plain fp32 loops cache-dit's arithmetic implies,
 * so CPU decisions stay bit-identical to the cache-dit parity traces); the two TaylorSeer formulas keep an
 * explicit CPU loop for their exact rounding order. The residual diff is one fused reduction plus, on CUDA,
 * one 16-byte copy to the host (ds_op_diff_sums), never a copy of the vector. All vectors of one call share
 * device and dtype. */
#ifndef DS_CACHE_VEC_H
#define DS_CACHE_VEC_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Allocate a vector of n elements (zeroed on the CPU) on device/dtype. Made at request begin (and reused
 * while large enough), never per step. Errors: DS_ERR_OOM, DS_ERR_UNSUPPORTED. */
ds_status ds_cvec_alloc(ds_tensor *v, int64_t n, ds_device device, ds_dtype dtype, ds_err *err);

/* Release a vector (NULL data allowed). */
void ds_cvec_free(ds_tensor *v);

/* dst[0..n) = src[0..n). */
ds_status ds_cvec_copy(ds_tensor *dst, const ds_tensor *src, int64_t n, ds_err *err);

/* out[0..n) = a - b (out may alias a or b). */
ds_status ds_cvec_sub(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, int64_t n, ds_err *err);

/* out[0..n) = a + b (out may alias a or b). */
ds_status ds_cvec_add(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, int64_t n, ds_err *err);

/* cache-dit's relative L1 over n elements: mean|prev - cur| / mean|prev|, each mean rounded to fp32 as
 * torch's fp32 mean is, their ratio in fp32. */
ds_status ds_cvec_rel_l1(const ds_tensor *prev, const ds_tensor *cur, int64_t n, double *out, ds_err *err);

/* d[0..n) = (a - p) / window (TaylorSeer's divided difference). */
ds_status ds_cvec_diff_div(ds_tensor *d, const ds_tensor *a, const ds_tensor *p, float window, int64_t n, ds_err *err);

/* out[0..n) = c * d * e when first, else out += c * d * e (one Taylor term; fp32, in that order on the
 * CPU; on CUDA c*e is folded into one factor). */
ds_status ds_cvec_taylor_term(ds_tensor *out, const ds_tensor *d, float c, float e, bool first, int64_t n,
                              ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_CACHE_VEC_H */
