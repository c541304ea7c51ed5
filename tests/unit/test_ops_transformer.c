/* test_ops_transformer.c - parity tests of the transformer half of the CPU op library (linear,
 * layernorm, rmsnorm, modulate, gate_add, gelu, silu, softmax, add, attention) against float64
 * PyTorch references written by tools/export_ops_transformer.py (tests/data/ops/<op>.safetensors),
 * plus argument-validation, in-place and thread-count-invariance tests.
 *
 * Bound everywhere: relative error ||out-ref||/||ref|| <= 1e-5 and every element within
 * 1e-6 + 1e-5·|ref|. Outputs are poisoned with NaN before each call so unwritten elements fail. */
#include <cblas.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops.h"
#include "test_util.h"

#define MAX_REL 1e-5
#define ATOL 1e-6
#define RTOL 1e-5

/* "case<i>.<name>" in a static buffer (one use at a time). */
static const char *key(int i, const char *name) {
    static char buf[128];
    snprintf(buf, sizeof buf, "case%d.%s", i, name);
    return buf;
}

static int ncases(const ds_safetensors *st) { return (int)ds_test_meta_num(st, "cases"); }

/* A NaN-filled buffer shaped like `like`; *t becomes a contiguous f32 tensor over it. */
static float *poisoned_like(const ds_tensor *like, ds_tensor *t) {
    int64_t n = ds_tensor_numel(like);
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    cr_assert_not_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    *t = ds_tensor_make(p, DS_F32, like->ndim, like->shape);
    return p;
}

/* Assert a call failed with `code` and left a message. */
static void expect_fail(ds_status s, const ds_err *err, ds_status code, const char *what) {
    cr_assert_eq(s, code, "%s: expected %s, got %s (%s)", what, ds_status_name(code), ds_status_name(s), err->msg);
    cr_assert(strlen(err->msg) > 0, "%s: no error message", what);
}

/* Compare with the house bound; with DS_TEST_VERBOSE set, print the measured errors (the numbers in
 * docs/ops-parity-transformer.md come from this). */
static void close_named(const float *out, const float *ref, int64_t n, const char *what) {
    if (getenv("DS_TEST_VERBOSE")) {
        ds_test_cmp c = ds_test_compare(out, ref, n, ATOL, RTOL);
        fprintf(stderr, "parity %-40s n=%-7lld rel=%.3e max_abs=%.3e\n", what, (long long)n, c.rel_err, c.max_abs);
    }
    ds_test_assert_close(out, ref, n, MAX_REL, ATOL, RTOL, what);
}

static void check_close(const float *out, const float *ref, int64_t n, const char *op, int c) {
    char what[160];
    snprintf(what, sizeof what, "%s case%d", op, c);
    close_named(out, ref, n, what);
}

/* ---- linear ---------------------------------------------------------------------------------- */

Test(ops_linear, reference) {
    ds_safetensors *st = ds_test_open("ops/linear.safetensors");
    for (int c = 0; c < ncases(st); c++) {
        ds_tensor x, w, b, ref, out;
        float *xd = ds_test_read_f32(st, key(c, "x"), &x), *wd = ds_test_read_f32(st, key(c, "w"), &w);
        float *rd = ds_test_read_f32(st, key(c, "out"), &ref), *bd = NULL;
        int has_bias = (int)ds_test_meta_num(st, key(c, "has_bias"));
        if (has_bias) bd = ds_test_read_f32(st, key(c, "b"), &b);
        float *od = poisoned_like(&ref, &out);
        ds_err err;
        ds_err_clear(&err);
        ds_status s = ds_op_linear(&out, &x, &w, has_bias ? &b : NULL, &err);
        cr_assert_eq(s, DS_OK, "linear case%d: %s", c, err.msg);
        check_close(od, rd, ds_tensor_numel(&ref), "linear", c);
        free(xd), free(wd), free(rd), free(bd), free(od);
    }
    ds_safetensors_close(st);
}

Test(ops_linear, errors) {
    float x[6 * 5] = {0}, w[4 * 5] = {0}, b[4] = {0}, o[6 * 4];
    ds_tensor tx = ds_tensor_f32(x, 2, 6, 5), tw = ds_tensor_f32(w, 2, 4, 5), tb = ds_tensor_f32(b, 1, 4);
    ds_tensor to = ds_tensor_f32(o, 2, 6, 4);
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_op_linear(&to, &tx, &tw, &tb, &err), DS_OK, "%s", err.msg);

    ds_tensor bad_w = ds_tensor_f32(w, 2, 5, 4); /* K mismatch */
    expect_fail(ds_op_linear(&to, &tx, &bad_w, &tb, &err), &err, DS_ERR_INVALID_ARG, "K mismatch");
    ds_tensor bad_b = ds_tensor_f32(b, 1, 3);
    expect_fail(ds_op_linear(&to, &tx, &tw, &bad_b, &err), &err, DS_ERR_INVALID_ARG, "bias size");
    ds_tensor bad_o = ds_tensor_f32(o, 2, 4, 6);
    expect_fail(ds_op_linear(&bad_o, &tx, &tw, &tb, &err), &err, DS_ERR_INVALID_ARG, "out shape");
    ds_tensor x16 = ds_tensor_make(x, DS_F16, 2, (const int64_t[]){6, 5});
    expect_fail(ds_op_linear(&to, &x16, &tw, &tb, &err), &err, DS_ERR_UNSUPPORTED, "f16 x");
    ds_tensor xg = tx;
    xg.device = (ds_device){DS_DEVICE_CUDA, 0};
    expect_fail(ds_op_linear(&to, &xg, &tw, &tb, &err), &err, DS_ERR_UNSUPPORTED, "CUDA x");
    ds_tensor alias = ds_tensor_f32(x, 2, 6, 4); /* out over x's memory */
    expect_fail(ds_op_linear(&alias, &tx, &tw, &tb, &err), &err, DS_ERR_INVALID_ARG, "aliasing out");
    ds_tensor xt = tx; /* a transposed (non-contiguous) view */
    xt.stride[0] = 1, xt.stride[1] = 6;
    expect_fail(ds_op_linear(&to, &xt, &tw, &tb, &err), &err, DS_ERR_INVALID_ARG, "non-contiguous x");
    expect_fail(ds_op_linear(&to, NULL, &tw, &tb, &err), &err, DS_ERR_INVALID_ARG, "missing x");
}

/* linear_gelu is the pair linear -> gelu (its CUDA twin fuses them): bit-identical to the two calls on the
 * reference file's inputs, for both kinds, with and without bias; an unknown kind is refused. */
Test(ops_linear_gelu, equals_linear_then_gelu) {
    ds_safetensors *st = ds_test_open("ops/linear.safetensors");
    for (int c = 0; c < ncases(st); c++) {
        for (int kind = DS_GELU_EXACT; kind <= DS_GELU_TANH; kind++) {
            ds_tensor x, w, b, ref, out, two;
            float *xd = ds_test_read_f32(st, key(c, "x"), &x), *wd = ds_test_read_f32(st, key(c, "w"), &w);
            float *rd = ds_test_read_f32(st, key(c, "out"), &ref), *bd = NULL;
            int has_bias = (int)ds_test_meta_num(st, key(c, "has_bias"));
            if (has_bias) bd = ds_test_read_f32(st, key(c, "b"), &b);
            float *od = poisoned_like(&ref, &out), *td = poisoned_like(&ref, &two);
            ds_err err;
            ds_err_clear(&err);
            cr_assert_eq(ds_op_linear_gelu(&out, &x, &w, has_bias ? &b : NULL, (ds_gelu_kind)kind, &err), DS_OK,
                         "case%d: %s", c, err.msg);
            cr_assert_eq(ds_op_linear(&two, &x, &w, has_bias ? &b : NULL, &err), DS_OK, "%s", err.msg);
            cr_assert_eq(ds_op_gelu(&two, &two, (ds_gelu_kind)kind, &err), DS_OK, "%s", err.msg);
            const int64_t n = ds_tensor_numel(&ref);
            cr_assert_eq(memcmp(od, td, (size_t)n * sizeof(float)), 0, "case%d kind %d: not the two calls' bits", c,
                         kind);
            int moved = 0; /* the activation really ran: gelu(y) != y somewhere */
            for (int64_t i = 0; i < n; i++) moved |= od[i] != rd[i];
            cr_assert(moved, "case%d kind %d: output equals the plain linear", c, kind);
            free(xd), free(wd), free(rd), free(bd), free(od), free(td);
        }
    }
    float x[2 * 3] = {0}, w[2 * 3] = {0}, o[4];
    ds_tensor tx = ds_tensor_f32(x, 2, 2, 3), tw = ds_tensor_f32(w, 2, 2, 3), to = ds_tensor_f32(o, 2, 2, 2);
    ds_err err;
    ds_err_clear(&err);
    expect_fail(ds_op_linear_gelu(&to, &tx, &tw, NULL, (ds_gelu_kind)7, &err), &err, DS_ERR_INVALID_ARG, "kind");
    ds_safetensors_close(st);
}

/* linear_multi is n linears of one input (its CUDA twin batches them): bit-identical to the n calls, with and
 * without biases; mixed biases, unequal weights and n outside 1..4 are refused. */
Test(ops_linear_multi, equals_the_linears) {
    enum { M = 7, K = 5, N = 6 };
    static float x[M * K], w[3][N * K], b[3][N], o[3][M * N], r[M * N];
    for (int i = 0; i < M * K; i++) x[i] = (float)sin(0.3 * i);
    for (int j = 0; j < 3; j++) {
        for (int i = 0; i < N * K; i++) w[j][i] = (float)cos(0.7 * i + j);
        for (int i = 0; i < N; i++) b[j][i] = 0.1f * (float)(i - j);
    }
    ds_tensor tx = ds_tensor_f32(x, 2, M, K), tw[3], tb[3], to[3];
    for (int j = 0; j < 3; j++) {
        tw[j] = ds_tensor_f32(w[j], 2, N, K);
        tb[j] = ds_tensor_f32(b[j], 1, N);
        to[j] = ds_tensor_f32(o[j], 2, M, N);
    }
    ds_tensor *outs[3] = {&to[0], &to[1], &to[2]};
    const ds_tensor *ws[3] = {&tw[0], &tw[1], &tw[2]}, *bs[3] = {&tb[0], &tb[1], &tb[2]};
    ds_err err;
    ds_err_clear(&err);
    for (int with_b = 0; with_b < 2; with_b++) {
        memset(o, 0xff, sizeof o);
        cr_assert_eq(ds_op_linear_multi(outs, &tx, ws, with_b ? bs : NULL, 3, &err), DS_OK, "%s", err.msg);
        for (int j = 0; j < 3; j++) {
            ds_tensor tr = ds_tensor_f32(r, 2, M, N);
            cr_assert_eq(ds_op_linear(&tr, &tx, ws[j], with_b ? bs[j] : NULL, &err), DS_OK, "%s", err.msg);
            cr_assert_eq(memcmp(r, o[j], sizeof r), 0, "output %d (bias %d) differs from ds_op_linear", j, with_b);
        }
    }
    const ds_tensor *mixed[3] = {&tb[0], NULL, &tb[2]};
    expect_fail(ds_op_linear_multi(outs, &tx, ws, mixed, 3, &err), &err, DS_ERR_INVALID_ARG, "mixed biases");
    ds_tensor wsmall = ds_tensor_f32(w[1], 2, N - 1, K);
    const ds_tensor *wbad[3] = {&tw[0], &wsmall, &tw[2]};
    expect_fail(ds_op_linear_multi(outs, &tx, wbad, NULL, 3, &err), &err, DS_ERR_INVALID_ARG, "unequal weights");
    expect_fail(ds_op_linear_multi(outs, &tx, ws, NULL, 0, &err), &err, DS_ERR_INVALID_ARG, "n = 0");
    expect_fail(ds_op_linear_multi(outs, &tx, ws, NULL, DS_LINEAR_MULTI_MAX + 1, &err), &err, DS_ERR_INVALID_ARG,
                "n too large");
}

/* ---- layernorm / rmsnorm --------------------------------------------------------------------- */

Test(ops_layernorm, reference) {
    ds_safetensors *st = ds_test_open("ops/layernorm.safetensors");
    for (int c = 0; c < ncases(st); c++) {
        ds_tensor x, w, b, ref, out;
        float *xd = ds_test_read_f32(st, key(c, "x"), &x), *rd = ds_test_read_f32(st, key(c, "out"), &ref);
        int affine = (int)ds_test_meta_num(st, key(c, "affine"));
        float eps = (float)ds_test_meta_num(st, key(c, "eps"));
        float *wd = NULL, *bd = NULL;
        if (affine) wd = ds_test_read_f32(st, key(c, "w"), &w), bd = ds_test_read_f32(st, key(c, "b"), &b);
        float *od = poisoned_like(&ref, &out);
        ds_err err;
        ds_err_clear(&err);
        ds_status s = ds_op_layernorm(&out, &x, affine ? &w : NULL, affine ? &b : NULL, eps, &err);
        cr_assert_eq(s, DS_OK, "layernorm case%d: %s", c, err.msg);
        check_close(od, rd, ds_tensor_numel(&ref), "layernorm", c);
        /* in place: out == x */
        s = ds_op_layernorm(&x, &x, affine ? &w : NULL, affine ? &b : NULL, eps, &err);
        cr_assert_eq(s, DS_OK, "layernorm in place case%d: %s", c, err.msg);
        cr_assert_arr_eq(xd, od, (size_t)ds_tensor_numel(&x) * sizeof(float), "layernorm in place case%d differs", c);
        free(xd), free(wd), free(bd), free(rd), free(od);
    }
    ds_safetensors_close(st);
}

Test(ops_rmsnorm, reference) {
    ds_safetensors *st = ds_test_open("ops/rmsnorm.safetensors");
    for (int c = 0; c < ncases(st); c++) {
        ds_tensor x, w, ref, out;
        float *xd = ds_test_read_f32(st, key(c, "x"), &x), *rd = ds_test_read_f32(st, key(c, "out"), &ref);
        int has_w = (int)ds_test_meta_num(st, key(c, "has_weight"));
        float eps = (float)ds_test_meta_num(st, key(c, "eps"));
        float *wd = has_w ? ds_test_read_f32(st, key(c, "w"), &w) : NULL;
        float *od = poisoned_like(&ref, &out);
        ds_err err;
        ds_err_clear(&err);
        ds_status s = ds_op_rmsnorm(&out, &x, has_w ? &w : NULL, eps, &err);
        cr_assert_eq(s, DS_OK, "rmsnorm case%d: %s", c, err.msg);
        check_close(od, rd, ds_tensor_numel(&ref), "rmsnorm", c);
        s = ds_op_rmsnorm(&x, &x, has_w ? &w : NULL, eps, &err);
        cr_assert_eq(s, DS_OK, "rmsnorm in place case%d: %s", c, err.msg);
        cr_assert_arr_eq(xd, od, (size_t)ds_tensor_numel(&x) * sizeof(float), "rmsnorm in place case%d differs", c);
        free(xd), free(wd), free(rd), free(od);
    }
    ds_safetensors_close(st);
}

Test(ops_norm, errors) {
    float x[3 * 8] = {0}, o[3 * 8], w[8] = {0}, b[8] = {0};
    ds_tensor tx = ds_tensor_f32(x, 2, 3, 8), to = ds_tensor_f32(o, 2, 3, 8);
    ds_tensor tw = ds_tensor_f32(w, 1, 8), tb = ds_tensor_f32(b, 1, 8), tw7 = ds_tensor_f32(w, 1, 7);
    ds_tensor to2 = ds_tensor_f32(o, 2, 8, 3);
    ds_err err;
    ds_err_clear(&err);
    expect_fail(ds_op_layernorm(&to, &tx, &tw7, &tb, 1e-5f, &err), &err, DS_ERR_INVALID_ARG, "layernorm weight [7]");
    expect_fail(ds_op_layernorm(&to2, &tx, &tw, &tb, 1e-5f, &err), &err, DS_ERR_INVALID_ARG, "layernorm out shape");
    expect_fail(ds_op_layernorm(&to, &tx, &tw, &tb, -1.0f, &err), &err, DS_ERR_INVALID_ARG, "layernorm eps < 0");
    expect_fail(ds_op_rmsnorm(&to, &tx, &tw7, 1e-6f, &err), &err, DS_ERR_INVALID_ARG, "rmsnorm weight [7]");
    ds_tensor w16 = ds_tensor_make(w, DS_BF16, 1, (const int64_t[]){8});
    expect_fail(ds_op_rmsnorm(&to, &tx, &w16, 1e-6f, &err), &err, DS_ERR_UNSUPPORTED, "rmsnorm bf16 weight");
    expect_fail(ds_op_rmsnorm(&to, &tx, NULL, NAN, &err), &err, DS_ERR_INVALID_ARG, "rmsnorm eps NaN");
}

/* ---- modulate / gate_add --------------------------------------------------------------------- */

/* Column chunk j of emb [B, k·D] as a strided [B, D] view (what an adaLN projection's chunk() gives). */
static ds_tensor chunk_view(const ds_tensor *emb, int64_t d, int64_t j) {
    ds_tensor t = *emb;
    t.data = (float *)emb->data + j * d;
    t.shape[1] = d;
    t.stride[0] = emb->shape[1];
    t.stride[1] = 1;
    return t;
}

Test(ops_modulate, reference) {
    ds_safetensors *st = ds_test_open("ops/modulate.safetensors");
    for (int c = 0; c < ncases(st); c++) {
        ds_tensor x, emb, ref, out;
        float *xd = ds_test_read_f32(st, key(c, "x"), &x), *ed = ds_test_read_f32(st, key(c, "emb"), &emb);
        float *rd = ds_test_read_f32(st, key(c, "out"), &ref);
        const int64_t d = x.shape[2];
        ds_tensor shift = chunk_view(&emb, d, (int64_t)ds_test_meta_num(st, key(c, "shift_chunk")));
        ds_tensor scale = chunk_view(&emb, d, (int64_t)ds_test_meta_num(st, key(c, "scale_chunk")));
        float *od = poisoned_like(&ref, &out);
        ds_err err;
        ds_err_clear(&err);
        ds_status s = ds_op_modulate(&out, &x, &scale, &shift, &err);
        cr_assert_eq(s, DS_OK, "modulate case%d: %s", c, err.msg);
        check_close(od, rd, ds_tensor_numel(&ref), "modulate", c);
        s = ds_op_modulate(&x, &x, &scale, &shift, &err);
        cr_assert_eq(s, DS_OK, "modulate in place case%d: %s", c, err.msg);
        cr_assert_arr_eq(xd, od, (size_t)ds_tensor_numel(&x) * sizeof(float), "modulate in place case%d differs", c);
        free(xd), free(ed), free(rd), free(od);
    }
    ds_safetensors_close(st);
}

Test(ops_gate_add, reference) {
    ds_safetensors *st = ds_test_open("ops/gate_add.safetensors");
    for (int c = 0; c < ncases(st); c++) {
        ds_tensor res, x, emb, ref, out;
        float *resd = ds_test_read_f32(st, key(c, "residual"), &res), *xd = ds_test_read_f32(st, key(c, "x"), &x);
        float *ed = ds_test_read_f32(st, key(c, "emb"), &emb), *rd = ds_test_read_f32(st, key(c, "out"), &ref);
        const int64_t gi = (int64_t)ds_test_meta_num(st, key(c, "gate_chunk"));
        ds_tensor gate = chunk_view(&emb, x.shape[2], gi < 0 ? 0 : gi);
        float *od = poisoned_like(&ref, &out);
        ds_err err;
        ds_err_clear(&err);
        ds_status s = ds_op_gate_add(&out, &res, &x, gi < 0 ? NULL : &gate, &err);
        cr_assert_eq(s, DS_OK, "gate_add case%d: %s", c, err.msg);
        check_close(od, rd, ds_tensor_numel(&ref), "gate_add", c);
        /* out may alias residual */
        s = ds_op_gate_add(&res, &res, &x, gi < 0 ? NULL : &gate, &err);
        cr_assert_eq(s, DS_OK, "gate_add in place case%d: %s", c, err.msg);
        cr_assert_arr_eq(resd, od, (size_t)ds_tensor_numel(&x) * sizeof(float), "gate_add in place case%d differs", c);
        free(resd), free(xd), free(ed), free(rd), free(od);
    }
    ds_safetensors_close(st);
}

Test(ops_modulate, errors) {
    float x[2 * 3 * 4] = {0}, o[2 * 3 * 4], emb[2 * 12] = {0};
    ds_tensor tx = ds_tensor_f32(x, 3, 2, 3, 4), to = ds_tensor_f32(o, 3, 2, 3, 4);
    ds_tensor te = ds_tensor_f32(emb, 2, 2, 12);
    ds_tensor sc = chunk_view(&te, 4, 1), sh = chunk_view(&te, 4, 0);
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_op_modulate(&to, &tx, &sc, &sh, &err), DS_OK, "%s", err.msg);
    ds_tensor bad = sc;
    bad.stride[1] = 2; /* every other column */
    expect_fail(ds_op_modulate(&to, &tx, &bad, &sh, &err), &err, DS_ERR_INVALID_ARG, "scale inner stride 2");
    bad = sc;
    bad.stride[0] = 3; /* rows overlap */
    expect_fail(ds_op_modulate(&to, &tx, &bad, &sh, &err), &err, DS_ERR_INVALID_ARG, "scale row stride < D");
    bad = chunk_view(&te, 3, 0);
    expect_fail(ds_op_modulate(&to, &tx, &sc, &bad, &err), &err, DS_ERR_INVALID_ARG, "shift [2, 3]");
    ds_tensor x2 = ds_tensor_f32(x, 2, 6, 4);
    expect_fail(ds_op_modulate(&to, &x2, &sc, &sh, &err), &err, DS_ERR_INVALID_ARG, "x 2-D");
    ds_tensor g16 = sc;
    g16.dtype = DS_F16;
    expect_fail(ds_op_gate_add(&to, &tx, &tx, &g16, &err), &err, DS_ERR_UNSUPPORTED, "gate f16");
    ds_tensor o2 = ds_tensor_f32(o, 3, 2, 4, 3);
    expect_fail(ds_op_gate_add(&o2, &tx, &tx, &sc, &err), &err, DS_ERR_INVALID_ARG, "gate_add out shape");
    expect_fail(ds_op_gate_add(&to, &tx, &tx, &bad, &err), &err, DS_ERR_INVALID_ARG, "gate [2, 3]");
}

/* ---- activations, softmax, add --------------------------------------------------------------- */

typedef ds_status (*unary_fn)(ds_tensor *out, const ds_tensor *x, int kind, ds_err *err);

static ds_status call_gelu(ds_tensor *out, const ds_tensor *x, int kind, ds_err *err) {
    return ds_op_gelu(out, x, (ds_gelu_kind)kind, err);
}
static ds_status call_silu(ds_tensor *out, const ds_tensor *x, int kind, ds_err *err) {
    (void)kind;
    return ds_op_silu(out, x, err);
}
static ds_status call_softmax(ds_tensor *out, const ds_tensor *x, int kind, ds_err *err) {
    (void)kind;
    return ds_op_softmax(out, x, err);
}

/* Every case of a unary-op file, out of place and then in place (bitwise equal). */
static void run_unary(const char *file, const char *op, unary_fn fn, int has_kind) {
    ds_safetensors *st = ds_test_open(file);
    for (int c = 0; c < ncases(st); c++) {
        ds_tensor x, ref, out;
        float *xd = ds_test_read_f32(st, key(c, "x"), &x), *rd = ds_test_read_f32(st, key(c, "out"), &ref);
        int kind = has_kind ? (int)ds_test_meta_num(st, key(c, "kind")) : 0;
        float *od = poisoned_like(&ref, &out);
        ds_err err;
        ds_err_clear(&err);
        ds_status s = fn(&out, &x, kind, &err);
        cr_assert_eq(s, DS_OK, "%s case%d: %s", op, c, err.msg);
        check_close(od, rd, ds_tensor_numel(&ref), op, c);
        s = fn(&x, &x, kind, &err);
        cr_assert_eq(s, DS_OK, "%s in place case%d: %s", op, c, err.msg);
        cr_assert_arr_eq(xd, od, (size_t)ds_tensor_numel(&x) * sizeof(float), "%s in place case%d differs", op, c);
        free(xd), free(rd), free(od);
    }
    ds_safetensors_close(st);
}

Test(ops_gelu, reference) { run_unary("ops/gelu.safetensors", "gelu", call_gelu, 1); }

Test(ops_silu, reference) { run_unary("ops/silu.safetensors", "silu", call_silu, 0); }

Test(ops_softmax, reference) { run_unary("ops/softmax.safetensors", "softmax", call_softmax, 0); }

Test(ops_add, reference) {
    ds_safetensors *st = ds_test_open("ops/add.safetensors");
    for (int c = 0; c < ncases(st); c++) {
        ds_tensor a, b, ref, out;
        float *ad = ds_test_read_f32(st, key(c, "a"), &a), *bd = ds_test_read_f32(st, key(c, "b"), &b);
        float *rd = ds_test_read_f32(st, key(c, "out"), &ref);
        float *od = poisoned_like(&ref, &out);
        ds_err err;
        ds_err_clear(&err);
        cr_assert_eq(ds_op_add(&out, &a, &b, &err), DS_OK, "add case%d: %s", c, err.msg);
        check_close(od, rd, ds_tensor_numel(&ref), "add", c);
        cr_assert_eq(ds_op_add(&b, &a, &b, &err), DS_OK, "add in place case%d: %s", c, err.msg); /* out == b */
        cr_assert_arr_eq(bd, od, (size_t)ds_tensor_numel(&a) * sizeof(float), "add in place case%d differs", c);
        free(ad), free(bd), free(rd), free(od);
    }
    ds_safetensors_close(st);
}

Test(ops_activation, errors) {
    float x[12] = {0}, o[12];
    ds_tensor tx = ds_tensor_f32(x, 2, 3, 4), to = ds_tensor_f32(o, 2, 4, 3), tok = ds_tensor_f32(o, 2, 3, 4);
    ds_tensor x16 = ds_tensor_make(x, DS_F16, 2, (const int64_t[]){3, 4});
    ds_err err;
    ds_err_clear(&err);
    expect_fail(ds_op_gelu(&to, &tx, DS_GELU_EXACT, &err), &err, DS_ERR_INVALID_ARG, "gelu shape");
    expect_fail(ds_op_gelu(&tok, &tx, (ds_gelu_kind)7, &err), &err, DS_ERR_INVALID_ARG, "gelu kind");
    expect_fail(ds_op_silu(&tok, &x16, &err), &err, DS_ERR_UNSUPPORTED, "silu f16");
    expect_fail(ds_op_softmax(&to, &tx, &err), &err, DS_ERR_INVALID_ARG, "softmax shape");
    expect_fail(ds_op_add(&tok, &tx, &to, &err), &err, DS_ERR_INVALID_ARG, "add b shape");
    expect_fail(ds_op_add(&tok, &tx, NULL, &err), &err, DS_ERR_INVALID_ARG, "add missing b");
}

/* ---- attention ------------------------------------------------------------------------------- */

static void run_attention_file(const char *file) {
    ds_safetensors *st = ds_test_open(file);
    for (int c = 0; c < ncases(st); c++) {
        ds_tensor q, k, v, m, ref, out;
        float *qd = ds_test_read_f32(st, key(c, "q"), &q), *kd = ds_test_read_f32(st, key(c, "k"), &k);
        float *vd = ds_test_read_f32(st, key(c, "v"), &v), *rd = ds_test_read_f32(st, key(c, "out"), &ref);
        int has_mask = (int)ds_test_meta_num(st, key(c, "has_mask"));
        float scale = (float)ds_test_meta_num(st, key(c, "scale"));
        float *md = has_mask ? ds_test_read_f32(st, key(c, "mask"), &m) : NULL;
        float *od = poisoned_like(&ref, &out);
        size_t sb = ds_op_attention_scratch_bytes(q.shape[1], k.shape[1], q.shape[3]);
        void *scratch = malloc(sb);
        cr_assert_not_null(scratch);
        ds_err err;
        ds_err_clear(&err);
        ds_status s = ds_op_attention(&out, &q, &k, &v, has_mask ? &m : NULL, scale, scratch, sb, &err);
        cr_assert_eq(s, DS_OK, "%s case%d: %s", file, c, err.msg);
        char what[96];
        snprintf(what, sizeof what, "attention %s case%d", file, c);
        close_named(od, rd, ds_tensor_numel(&ref), what);
        free(scratch), free(qd), free(kd), free(vd), free(rd), free(md), free(od);
    }
    ds_safetensors_close(st);
}

/* Nq != Nk, d 24 and 40, masks [B,H], [1,H], [B,1], [1,1] with -inf and a fully masked row. */
Test(ops_attention, reference) { run_attention_file("ops/attention.safetensors"); }

/* Nq 300: nine full query tiles plus a remainder tile. */
Test(ops_attention, long_queries) { run_attention_file("ops/attention_long.safetensors"); }

/* Nk 530: more keys than one score block. */
Test(ops_attention, long_keys) { run_attention_file("ops/attention_longk.safetensors"); }

/* The result must not depend on the thread count (bitwise: rows are computed identically whichever
 * thread runs them), and a scratch planned for one thread must still work, with fewer threads,
 * when more are available. OpenBLAS is set to one thread for the multi-thread run so the op takes
 * its OpenMP path (with a pthreads OpenBLAS pool it would run tasks on one thread, see attention.c). */
Test(ops_attention, thread_invariance) {
    ds_safetensors *st = ds_test_open("ops/attention_long.safetensors");
    ds_tensor q, k, v, ref, o1, o2;
    float *qd = ds_test_read_f32(st, "case0.q", &q), *kd = ds_test_read_f32(st, "case0.k", &k);
    float *vd = ds_test_read_f32(st, "case0.v", &v), *rd = ds_test_read_f32(st, "case0.out", &ref);
    float *d1 = poisoned_like(&ref, &o1), *d2 = poisoned_like(&ref, &o2);
    ds_err err;
    ds_err_clear(&err);
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    size_t sb1 = ds_op_attention_scratch_bytes(q.shape[1], k.shape[1], q.shape[3]);
    void *s1 = malloc(sb1);
    cr_assert_eq(ds_op_attention(&o1, &q, &k, &v, NULL, 0.0f, s1, sb1, &err), DS_OK, "%s", err.msg);
#ifdef _OPENMP
    const int saved_blas = openblas_get_num_threads();
    openblas_set_num_threads(1);
    omp_set_num_threads(3);
    size_t sb3 = ds_op_attention_scratch_bytes(q.shape[1], k.shape[1], q.shape[3]);
    cr_assert(sb3 > sb1, "scratch should grow with the thread count (%zu vs %zu)", sb3, sb1);
    void *s3 = malloc(sb3);
    cr_assert_eq(ds_op_attention(&o2, &q, &k, &v, NULL, 0.0f, s3, sb3, &err), DS_OK, "%s", err.msg);
    cr_assert_arr_eq(d1, d2, (size_t)ds_tensor_numel(&ref) * sizeof(float), "3 threads differ from 1");
    for (int64_t i = 0; i < ds_tensor_numel(&ref); i++) d2[i] = NAN;
    /* one-thread scratch while 3 threads are allowed: runs on one slice */
    cr_assert_eq(ds_op_attention(&o2, &q, &k, &v, NULL, 0.0f, s1, sb1, &err), DS_OK, "%s", err.msg);
    cr_assert_arr_eq(d1, d2, (size_t)ds_tensor_numel(&ref) * sizeof(float), "small scratch differs");
    free(s3);
    omp_set_num_threads(saved);
    openblas_set_num_threads(saved_blas);
#endif
    close_named(d1, rd, ds_tensor_numel(&ref), "attention 1 thread");
    free(s1), free(qd), free(kd), free(vd), free(rd), free(d1), free(d2);
    ds_safetensors_close(st);
}

Test(ops_attention, errors) {
    enum { B = 2, NQ = 3, NK = 5, H = 2, D = 4 };
    static float q[B * NQ * H * D], k[B * NK * H * D], v[B * NK * H * D], o[B * NQ * H * D], m[B * H * NQ * NK];
    ds_tensor tq = ds_tensor_f32(q, 4, B, NQ, H, D), tk = ds_tensor_f32(k, 4, B, NK, H, D);
    ds_tensor tv = ds_tensor_f32(v, 4, B, NK, H, D), to = ds_tensor_f32(o, 4, B, NQ, H, D);
    size_t sb = ds_op_attention_scratch_bytes(NQ, NK, D);
    void *scr = malloc(sb);
    ds_err err;
    ds_err_clear(&err);
    cr_assert_eq(ds_op_attention(&to, &tq, &tk, &tv, NULL, 0.0f, scr, sb, &err), DS_OK, "%s", err.msg);
    /* zero inputs: uniform weights over zero values */
    for (int i = 0; i < B * NQ * H * D; i++) cr_assert_eq(o[i], 0.0f);

    ds_tensor bad_m = ds_tensor_f32(m, 4, B, H, NK, NQ); /* Nq/Nk swapped */
    expect_fail(ds_op_attention(&to, &tq, &tk, &tv, &bad_m, 0.0f, scr, sb, &err), &err, DS_ERR_INVALID_ARG,
                "mask [B, H, Nk, Nq]");
    ds_tensor m3 = ds_tensor_f32(m, 4, 3, 1, NQ, NK); /* Mb 3 with B 2 */
    expect_fail(ds_op_attention(&to, &tq, &tk, &tv, &m3, 0.0f, scr, sb, &err), &err, DS_ERR_INVALID_ARG, "mask Mb 3");
    ds_tensor kh = ds_tensor_f32(k, 4, B, NK, 1, 2 * D); /* H/d mismatch */
    ds_tensor vh = ds_tensor_f32(v, 4, B, NK, 1, 2 * D);
    expect_fail(ds_op_attention(&to, &tq, &kh, &vh, NULL, 0.0f, scr, sb, &err), &err, DS_ERR_INVALID_ARG, "k heads");
    ds_tensor vshort = ds_tensor_f32(v, 4, B, NK - 1, H, D);
    expect_fail(ds_op_attention(&to, &tq, &tk, &vshort, NULL, 0.0f, scr, sb, &err), &err, DS_ERR_INVALID_ARG,
                "v Nk");
    expect_fail(ds_op_attention(&to, &tq, &tk, &tv, NULL, 0.0f, scr, 16, &err), &err, DS_ERR_INVALID_ARG,
                "scratch too small");
    expect_fail(ds_op_attention(&to, &tq, &tk, &tv, NULL, 0.0f, NULL, 0, &err), &err, DS_ERR_INVALID_ARG,
                "no scratch");
    expect_fail(ds_op_attention(&tq, &tq, &tk, &tv, NULL, 0.0f, scr, sb, &err), &err, DS_ERR_INVALID_ARG,
                "out aliases q");
    ds_tensor q16 = tq;
    q16.dtype = DS_BF16;
    expect_fail(ds_op_attention(&to, &q16, &tk, &tv, NULL, 0.0f, scr, sb, &err), &err, DS_ERR_UNSUPPORTED, "bf16 q");
    ds_tensor q3 = ds_tensor_f32(q, 3, B, NQ, H * D);
    expect_fail(ds_op_attention(&to, &q3, &tk, &tv, NULL, 0.0f, scr, sb, &err), &err, DS_ERR_INVALID_ARG, "3-D q");
    free(scr);
}
