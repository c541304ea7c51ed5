/* cache_vec.c - DBCache/TaylorSeer vector operations through ops.h on any device (cache_vec.h); only the two
 * TaylorSeer formulas keep explicit fp32 loops on the CPU, whose rounding order the parity traces fix. */
#include "cache_vec.h"

#include "ops.h"
#include "tensor_io.h"

ds_status ds_cvec_alloc(ds_tensor *v, int64_t n, ds_device device, ds_dtype dtype, ds_err *err) {
    ds_status s = ds_tensor_alloc(v, device.kind == DS_DEVICE_CPU ? DS_F32 : dtype, device, 1,
                                  (const int64_t[]){n > 0 ? n : 1}, err);
    if (s != DS_OK) ds_err_prefix(err, "cache buffers");
    return s;
}

void ds_cvec_free(ds_tensor *v) {
    if (v) ds_tensor_free_data(v);
}

/* The first n elements of v as a 1-D tensor. */
static ds_tensor head(const ds_tensor *v, int64_t n) { return ds_tensor_like(v, v->data, 1, (const int64_t[]){n}); }

static bool on_cpu(const ds_tensor *v) { return v->device.kind == DS_DEVICE_CPU; }

ds_status ds_cvec_copy(ds_tensor *dst, const ds_tensor *src, int64_t n, ds_err *err) {
    ds_tensor d = head(dst, n), s = head(src, n);
    return ds_op_convert(&d, &s, err);
}

ds_status ds_cvec_sub(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, int64_t n, ds_err *err) {
    ds_tensor o = head(out, n), x = head(a, n), y = head(b, n);
    return ds_op_sub(&o, &x, &y, err);
}

ds_status ds_cvec_add(ds_tensor *out, const ds_tensor *a, const ds_tensor *b, int64_t n, ds_err *err) {
    ds_tensor o = head(out, n), x = head(a, n), y = head(b, n);
    return ds_op_add(&o, &x, &y, err);
}

ds_status ds_cvec_rel_l1(const ds_tensor *prev, const ds_tensor *cur, int64_t n, double *out, ds_err *err) {
    double sd = 0.0, sp = 0.0;
    ds_tensor p = head(prev, n), c = head(cur, n);
    DS_TRY(ds_op_diff_sums(&p, &c, &sd, &sp, err));
    const float md = (float)(sd / (double)n), mp = (float)(sp / (double)n);
    *out = (double)(md / mp);
    return DS_OK;
}

ds_status ds_cvec_diff_div(ds_tensor *d, const ds_tensor *a, const ds_tensor *p, float window, int64_t n, ds_err *err) {
    if (on_cpu(d)) {
        float *o = d->data;
        const float *x = a->data, *y = p->data;
        for (int64_t k = 0; k < n; k++) o[k] = (x[k] - y[k]) / window;
        return DS_OK;
    }
    ds_tensor o = head(d, n), x = head(a, n), y = head(p, n);
    return ds_op_axpby(&o, 1.0f / window, &x, -1.0f / window, &y, err);
}

ds_status ds_cvec_taylor_term(ds_tensor *out, const ds_tensor *d, float c, float e, bool first, int64_t n,
                              ds_err *err) {
    if (on_cpu(out)) {
        float *o = out->data;
        const float *x = d->data;
        if (first)
            for (int64_t k = 0; k < n; k++) o[k] = c * x[k] * e;
        else
            for (int64_t k = 0; k < n; k++) o[k] += c * x[k] * e;
        return DS_OK;
    }
    ds_tensor o = head(out, n), x = head(d, n);
    if (first) return ds_op_axpby(&o, c * e, &x, 0.0f, NULL, err);
    return ds_op_axpby(&o, 1.0f, &o, c * e, &x, err);
}
