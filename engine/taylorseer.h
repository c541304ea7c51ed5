/* taylorseer.h - cache-dit's TaylorSeer calibrator for one named stream (TaylorSeerState): one-window divided
 * differences of the last computed values, evaluated as sum_i dY[i] k^i / i! on cached steps.
 *
 * Exactly cache-dit's bookkeeping: the state is created lazily by the first update (so it misses the
 * mark_step_begin of the step that created it and its step index runs one behind the context's), its
 * step counter starts at -1, derivatives start only once that counter exceeds 1, and the i-th difference is
 * divided by the latest window only. All buffers are allocated by ds_taylorseer_init (at request start);
 * mark/update/approximate never allocate. */
#ifndef DS_TAYLORSEER_H
#define DS_TAYLORSEER_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_TAYLORSEER_MAX_ORDER 3

typedef struct ds_taylorseer {
    int     order;           /* n_derivatives, 1..3 */
    int64_t n;               /* elements per value */
    bool    created;         /* cache-dit creates the state on the first update */
    int     current_step;    /* -1 at creation */
    int     last_step;       /* last_non_approximated_step */
    ds_tensor cur[DS_TAYLORSEER_MAX_ORDER + 1];  /* dY_current[0..order]: vectors of n (cache_vec.h) */
    ds_tensor prev[DS_TAYLORSEER_MAX_ORDER + 1]; /* dY_prev[0..order] */
    bool    cur_ok[DS_TAYLORSEER_MAX_ORDER + 1], prev_ok[DS_TAYLORSEER_MAX_ORDER + 1];
} ds_taylorseer;

/* Allocate the 2*(order+1) vectors of n elements on device/dtype (the block state's). Errors:
 * DS_ERR_INVALID_ARG (order outside 1..3, n < 1), DS_ERR_OOM. On error t holds nothing to free beyond
 * what ds_taylorseer_free releases. */
ds_status ds_taylorseer_init(ds_taylorseer *t, int order, int64_t n, ds_device device, ds_dtype dtype, ds_err *err);

/* Back to the just-initialised state (not created; buffers kept). */
void ds_taylorseer_reset(ds_taylorseer *t);

/* Release the buffers (t zeroed; NULL allowed). */
void ds_taylorseer_free(ds_taylorseer *t);

/* cache-dit's calibrator.mark_step_begin: advances the step counter if the state exists. */
void ds_taylorseer_mark_step(ds_taylorseer *t);

/* A computed value y[0..n) (same device/dtype): shift the ladder and take the new differences (creates the
 * state). Errors: those of the device ops. */
ds_status ds_taylorseer_update(ds_taylorseer *t, const ds_tensor *y, ds_err *err);

/* The forecast at the current step into out[0..n) (sum over the defined derivatives). *have = false (and
 * out untouched) when no value was ever recorded. */
ds_status ds_taylorseer_approximate(const ds_taylorseer *t, ds_tensor *out, bool *have, ds_err *err);

#ifdef __cplusplus
}
#endif

#endif /* DS_TAYLORSEER_H */
