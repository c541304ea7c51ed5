/* taylorseer.c - cache-dit's TaylorSeerState for one stream (see taylorseer.h), on preallocated buffers:
 * update swaps the current/previous ladders (no copy) and writes the new differences in place. */
#include "taylorseer.h"

#include "cache_vec.h"

#include <stdlib.h>
#include <string.h>

ds_status ds_taylorseer_init(ds_taylorseer *t, int order, int64_t n, ds_device device, ds_dtype dtype, ds_err *err) {
    memset(t, 0, sizeof *t);
    if (order < 1 || order > DS_TAYLORSEER_MAX_ORDER)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "taylorseer_order = %d is outside 1..%d", order, DS_TAYLORSEER_MAX_ORDER);
    if (n < 1) return DS_FAIL(err, DS_ERR_INVALID_ARG, "taylorseer: %lld elements", (long long)n);
    t->order = order;
    t->n = n;
    for (int i = 0; i <= order; i++) {
        ds_status s = ds_cvec_alloc(&t->cur[i], n, device, dtype, err);
        if (s == DS_OK) s = ds_cvec_alloc(&t->prev[i], n, device, dtype, err);
        if (s != DS_OK) {
            ds_taylorseer_free(t);
            ds_err_prefix(err, "taylorseer (%d x %lld elements)", 2 * (order + 1), (long long)n);
            return s;
        }
    }
    ds_taylorseer_reset(t);
    return DS_OK;
}

void ds_taylorseer_reset(ds_taylorseer *t) {
    t->created = false;
    t->current_step = -1;
    t->last_step = -1;
    for (int i = 0; i <= DS_TAYLORSEER_MAX_ORDER; i++) t->cur_ok[i] = t->prev_ok[i] = false;
}

void ds_taylorseer_free(ds_taylorseer *t) {
    if (!t) return;
    for (int i = 0; i <= DS_TAYLORSEER_MAX_ORDER; i++) {
        ds_cvec_free(&t->cur[i]);
        ds_cvec_free(&t->prev[i]);
    }
    memset(t, 0, sizeof *t);
}

void ds_taylorseer_mark_step(ds_taylorseer *t) {
    if (t->created) t->current_step++;
}

ds_status ds_taylorseer_update(ds_taylorseer *t, const ds_tensor *y, ds_err *err) {
    t->created = true;
    /* dY_prev <- dY_current: swap the ladders; the old prev buffers receive the new values */
    for (int i = 0; i <= t->order; i++) {
        ds_tensor b = t->prev[i];
        t->prev[i] = t->cur[i];
        t->cur[i] = b;
        t->prev_ok[i] = t->cur_ok[i];
        t->cur_ok[i] = false;
    }
    const int64_t n = t->n;
    const float window = (float)(t->current_step - t->last_step);
    DS_TRY(ds_cvec_copy(&t->cur[0], y, n, err));
    t->cur_ok[0] = true;
    for (int i = 0; i < t->order; i++) {
        if (!(t->prev_ok[i] && t->current_step > 1)) break;
        DS_TRY(ds_cvec_diff_div(&t->cur[i + 1], &t->cur[i], &t->prev[i], window, n, err));
        t->cur_ok[i + 1] = true;
    }
    t->last_step = t->current_step;
    return DS_OK;
}

ds_status ds_taylorseer_approximate(const ds_taylorseer *t, ds_tensor *out, bool *have, ds_err *err) {
    *have = false;
    if (!t->created || !t->cur_ok[0]) return DS_OK;
    const int elapsed = t->current_step - t->last_step;
    /* output = sum_i (1/i!) * dY[i] * elapsed^i, in that operation order (fp32) */
    double fact = 1.0;
    long pw = 1;
    for (int i = 0; i <= t->order && t->cur_ok[i]; i++) {
        if (i > 0) {
            fact *= i;
            pw *= elapsed;
        }
        const float c = (float)(1.0 / fact), e = (float)pw;
        DS_TRY(ds_cvec_taylor_term(out, &t->cur[i], c, e, i == 0, t->n, err));
    }
    *have = true;
    return DS_OK;
}
