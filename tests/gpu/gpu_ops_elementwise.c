/* gpu_ops_elementwise.c - GPU twin tests of the elementwise ops (ops_elementwise.cu) against the CPU reference
 * ops: gelu (exact and tanh), silu, softmax, add, sub, axpby (with y and with y = NULL), convert (all six
 * directions between f32/bf16/f16 and the three identities, plus out == x), diff_sums. Every op runs in f32,
 * bf16 and f16; inputs are rounded to the dtype on the host first so both sides see the same values (method:
 * gpu_ops_util.h; tolerances: gpu_tolerances.h, classes ACT, SOFTMAX, PW, EXACT, DIFFSUM).
 *
 * Shapes: 1 element (a grid of one), 3x7x77 = 1617 (odd: vector loads need a scalar tail), 3x333x1157
 * (odd, > 1M: grid-stride loops, many blocks) and 2x256x1152 (a DiT hidden state, the 16-byte vector path).
 * Softmax rows of D = 1, 7, 77, 1000, 1152 and 4096 (sub-warp, warp and block-per-row layouts, rows longer
 * than a register cache) and one set of rows offset by +50 (the max subtraction must be there). In-place runs
 * (out == x, out == a, out == b) and runs on tensors that start one element past an aligned allocation (only
 * element alignment, as arena sub-allocations may give) cover the aliasing and the vector/scalar choice.
 * Inputs: U[-4, 4) for the activations (|gelu(-4)| = 1.3e-4 keeps f16 outputs normal, so the relative bounds
 * apply; the cancellation of 1 + erf(z) for x << 0 is already in range, see the ACT row) and for softmax (exp
 * arguments stay in [-8, 0]: well conditioned, see the SOFTMAX row), U[-1, 1) otherwise. The one-element
 * activation cases use U[-1, 1): there the per-tensor bound is the element's own relative error, which the
 * absolute-error tail (x << 0) would dominate.
 * Error paths: a CPU tensor among CUDA ones, mixed dtypes, shape mismatch, unknown gelu kind, NULL result
 * pointers and no bound context. Exit 77 without a device. */
#include "gpu_ops_util.h"

#define TEST "gpu_ops_elementwise"

static const int64_t SH_ONE[] = {1};
static const int64_t SH_ODD[] = {3, 7, 77};
static const int64_t SH_BIG_ODD[] = {3, 333, 1157};
static const int64_t SH_DIT[] = {2, 256, 1152};

enum { RUN_PLAIN = 0, RUN_INPLACE, RUN_UNALIGNED }; /* unary modes */

/* ---- unary: gelu exact / tanh, silu, softmax ------------------------------------------------------- */

typedef enum { U_GELU_EXACT, U_GELU_TANH, U_SILU, U_SOFTMAX } unary_op;

static const char *unary_name(unary_op op) {
    return op == U_GELU_EXACT ? "gelu_exact" : op == U_GELU_TANH ? "gelu_tanh" : op == U_SILU ? "silu" : "softmax";
}

static ds_status unary_run(unary_op op, ds_tensor *out, const ds_tensor *x, ds_err *e) {
    switch (op) {
    case U_GELU_EXACT: return ds_op_gelu(out, x, DS_GELU_EXACT, e);
    case U_GELU_TANH: return ds_op_gelu(out, x, DS_GELU_TANH, e);
    case U_SILU: return ds_op_silu(out, x, e);
    default: return ds_op_softmax(out, x, e);
    }
}

/* One unary case: x = U[-amp, amp) (+ row_offset * (row % 3) along the last dim for softmax). */
static void unary_case(unary_op op, ds_dtype dt, int ndim, const int64_t *shape, double amp, double row_offset,
                       int mode, uint64_t seed) {
    char kase[160], sh[64];
    snprintf(kase, sizeof kase, "%s_%s_%s%s%s%s", unary_name(op), ds_dtype_name(dt),
             gpu_shape_str(sh, sizeof sh, ndim, shape), row_offset != 0.0 ? "_rowoffset" : "",
             mode == RUN_INPLACE ? "_inplace" : "", mode == RUN_UNALIGNED ? "_unaligned" : "");
    const int64_t n = gpu_numel(ndim, shape), d = shape[ndim - 1];
    ds_err e = {0};
    gpu_dev dx = {0}, dout = {0};
    float *x = gpu_falloc(n), *ref = gpu_falloc(n);
    if (!x || !ref) goto done;
    gpu_uniform(x, n, seed, -amp, amp);
    if (row_offset != 0.0)
        for (int64_t i = 0; i < n; i++) x[i] += (float)(row_offset * (double)((i / d) % 3 + 1));
    gpu_round(x, n, dt);

    ds_tensor hx = gpu_host(x, ndim, shape), hr = gpu_host(ref, ndim, shape);
    if (!GPU_OK(unary_run(op, &hr, &hx, &e), &e)) goto done;

    if (!gpu_dev_alloc_at(&dx, dt, ndim, shape, mode == RUN_UNALIGNED ? 1 : 0) || !gpu_dev_upload(&dx, x)) goto done;
    gpu_dev *out = &dx;
    if (mode != RUN_INPLACE) {
        if (!gpu_dev_alloc_at(&dout, dt, ndim, shape, mode == RUN_UNALIGNED ? 1 : 0)) goto done;
        out = &dout;
    }
    if (!gpu_run_ok(TEST, kase, unary_run(op, &out->t, &dx.t, &e), &e)) goto done;
    gpu_check(TEST, kase, out, ref, op == U_SOFTMAX ? GPU_TOL(dt, SOFTMAX) : GPU_TOL(dt, ACT));
done:
    gpu_dev_free(&dx);
    gpu_dev_free(&dout);
    free(x);
    free(ref);
}

/* ---- binary: add, sub, axpby (y given / NULL) ------------------------------------------------------- */

typedef enum { B_ADD, B_SUB, B_AXPBY, B_AXPBY_NOY } binary_op;
enum { BIN_PLAIN = 0, BIN_OUT_A, BIN_OUT_B, BIN_UNALIGNED }; /* out is a fresh buffer, a, b; or shifted */

#define AXPBY_ALPHA 0.75f
#define AXPBY_BETA (-1.25f)

static const char *binary_name(binary_op op) {
    return op == B_ADD ? "add" : op == B_SUB ? "sub" : op == B_AXPBY ? "axpby" : "axpby_noy";
}

static ds_status binary_run(binary_op op, ds_tensor *out, const ds_tensor *a, const ds_tensor *b, ds_err *e) {
    switch (op) {
    case B_ADD: return ds_op_add(out, a, b, e);
    case B_SUB: return ds_op_sub(out, a, b, e);
    case B_AXPBY: return ds_op_axpby(out, AXPBY_ALPHA, a, AXPBY_BETA, b, e);
    /* beta must be ignored when y is NULL: a NaN there would show in every element */
    default: return ds_op_axpby(out, AXPBY_ALPHA, a, NAN, NULL, e);
    }
}

static void binary_case(binary_op op, ds_dtype dt, int ndim, const int64_t *shape, int mode, uint64_t seed) {
    static const char *mode_name[] = {"", "_out_a", "_out_b", "_unaligned"};
    char kase[160], sh[64];
    snprintf(kase, sizeof kase, "%s_%s_%s%s", binary_name(op), ds_dtype_name(dt),
             gpu_shape_str(sh, sizeof sh, ndim, shape), mode_name[mode]);
    const int64_t n = gpu_numel(ndim, shape);
    const int64_t shift = mode == BIN_UNALIGNED ? 1 : 0;
    ds_err e = {0};
    gpu_dev da = {0}, db = {0}, dout = {0};
    float *a = gpu_falloc(n), *b = gpu_falloc(n), *ref = gpu_falloc(n);
    if (!a || !b || !ref) goto done;
    gpu_uniform(a, n, seed, -1.0, 1.0);
    gpu_uniform(b, n, seed + 1, -1.0, 1.0);
    gpu_round(a, n, dt);
    gpu_round(b, n, dt);

    ds_tensor ha = gpu_host(a, ndim, shape), hb = gpu_host(b, ndim, shape), hr = gpu_host(ref, ndim, shape);
    if (!GPU_OK(binary_run(op, &hr, &ha, op == B_AXPBY_NOY ? NULL : &hb, &e), &e)) goto done;

    if (!gpu_dev_alloc_at(&da, dt, ndim, shape, shift) || !gpu_dev_upload(&da, a)) goto done;
    if (!gpu_dev_alloc_at(&db, dt, ndim, shape, shift) || !gpu_dev_upload(&db, b)) goto done;
    gpu_dev *out = mode == BIN_OUT_A ? &da : mode == BIN_OUT_B ? &db : &dout;
    if (out == &dout && !gpu_dev_alloc_at(&dout, dt, ndim, shape, shift)) goto done;
    if (!gpu_run_ok(TEST, kase, binary_run(op, &out->t, &da.t, op == B_AXPBY_NOY ? NULL : &db.t, &e), &e))
        goto done;
    gpu_check(TEST, kase, out, ref, GPU_TOL(dt, PW));
done:
    gpu_dev_free(&da);
    gpu_dev_free(&db);
    gpu_dev_free(&dout);
    free(a);
    free(b);
    free(ref);
}

/* ---- convert ------------------------------------------------------------------------------------------ */

/* Values that exercise the conversions: signed zeros, round-to-nearest-even ties of bf16 (1 + 2^-8,
 * 1 + 3*2^-8) and f16 (1 + 2^-11, 1 + 3*2^-11), f16 subnormals and underflow, values near the f16 maximum
 * that stay finite in every type after every rounding (60000 -> 59904 in bf16; -65280 is exact in both),
 * then N(0, 4) samples. */
static void convert_inputs(float *x, int64_t n, uint64_t seed) {
    static const float special[] = {0.0f, -0.0f, 1.00390625f, -1.00390625f, 1.01171875f, 1.00048828125f,
                                    -1.00146484375f, 3.0e-8f, -2.5e-8f, 1.0e-6f, -6.0e-5f, 60000.0f, -65280.0f,
                                    1.0e-30f, 0.1f, 1.0f / 3.0f};
    gpu_normal(x, n, seed, 0.0, 4.0);
    const int64_t ns = (int64_t)(sizeof special / sizeof special[0]);
    for (int64_t i = 0; i < ns && i < n; i++) x[i] = special[i];
}

/* x in src (values exactly representable in src), out in dst; reference = ds_convert on the host. */
static void convert_case(ds_dtype src, ds_dtype dst, int ndim, const int64_t *shape, bool inplace, uint64_t seed) {
    char kase[160], sh[64];
    snprintf(kase, sizeof kase, "convert_%s_to_%s_%s%s", ds_dtype_name(src), ds_dtype_name(dst),
             gpu_shape_str(sh, sizeof sh, ndim, shape), inplace ? "_inplace_noop" : "");
    const int64_t n = gpu_numel(ndim, shape);
    ds_err e = {0};
    gpu_dev dx = {0}, dout = {0};
    float *x = gpu_falloc(n), *ref = gpu_falloc(n);
    void *bits = malloc((size_t)n * 4);
    if (!x || !ref || !GPU_CHECK(bits != NULL, "host allocation")) goto done;
    convert_inputs(x, n, seed);
    gpu_round(x, n, src);
    /* reference: the host conversion src -> dst, back to f32 for the comparison */
    ds_convert(bits, src, x, DS_F32, (size_t)n);
    ds_convert(ref, DS_F32, bits, src, (size_t)n); /* == x */
    ds_convert(bits, dst, ref, DS_F32, (size_t)n);
    ds_convert(ref, DS_F32, bits, dst, (size_t)n);

    if (!gpu_dev_from(&dx, src, ndim, shape, x)) goto done;
    gpu_dev *out = &dx;
    if (!inplace) {
        if (!gpu_dev_alloc(&dout, dst, ndim, shape)) goto done;
        out = &dout;
    }
    if (!gpu_run_ok(TEST, kase, ds_op_convert(&out->t, &dx.t, &e), &e)) goto done;
    gpu_check(TEST, kase, out, ref, GPU_TOL(dst, EXACT));
done:
    gpu_dev_free(&dx);
    gpu_dev_free(&dout);
    free(x);
    free(ref);
    free(bits);
}

/* ---- diff_sums ---------------------------------------------------------------------------------------- */

/* b = a + 0.01 * U[-1, 1): the DBCache use (a residual and its previous value). Compares the pair
 * {sum|a - b|, sum|a|} with the CPU's fp64 sums (as f32, see the DIFFSUM row). */
static void diff_sums_case(ds_dtype dt, int ndim, const int64_t *shape, uint64_t seed) {
    char kase[160], sh[64];
    snprintf(kase, sizeof kase, "diff_sums_%s_%s", ds_dtype_name(dt), gpu_shape_str(sh, sizeof sh, ndim, shape));
    const int64_t n = gpu_numel(ndim, shape);
    ds_err e = {0};
    gpu_dev da = {0}, db = {0};
    float *a = gpu_falloc(n), *b = gpu_falloc(n);
    if (!a || !b) goto done;
    gpu_uniform(a, n, seed, -1.0, 1.0);
    gpu_uniform(b, n, seed + 1, -0.01, 0.01);
    for (int64_t i = 0; i < n; i++) b[i] += a[i];
    gpu_round(a, n, dt);
    gpu_round(b, n, dt);
    double rd = -1.0, ra = -1.0, gd = NAN, ga = NAN;
    ds_tensor ha = gpu_host(a, ndim, shape), hb = gpu_host(b, ndim, shape);
    if (!GPU_OK(ds_op_diff_sums(&ha, &hb, &rd, &ra, &e), &e)) goto done;
    if (!gpu_dev_from(&da, dt, ndim, shape, a) || !gpu_dev_from(&db, dt, ndim, shape, b)) goto done;
    if (!gpu_run_ok(TEST, kase, ds_op_diff_sums(&da.t, &db.t, &gd, &ga, &e), &e)) goto done;
    {
        const float got[2] = {(float)gd, (float)ga};
        const double ref[2] = {rd, ra};
        gpu_compare(TEST, kase, got, ref, 2, GPU_TOL(dt, DIFFSUM));
    }
done:
    gpu_dev_free(&da);
    gpu_dev_free(&db);
    free(a);
    free(b);
}

/* ---- error paths -------------------------------------------------------------------------------------- */

static void error_cases(ds_cuda_ctx *ctx) {
    ds_err e = {0};
    static const int64_t s8[] = {2, 8}, s9[] = {2, 9};
    gpu_dev a = {0}, b = {0}, o = {0}, ab = {0}, o9 = {0};
    float host[18] = {0}, host2[18] = {0};
    if (!gpu_dev_alloc(&a, DS_F32, 2, s8) || !gpu_dev_alloc(&b, DS_F32, 2, s8) || !gpu_dev_alloc(&o, DS_F32, 2, s8) ||
        !gpu_dev_alloc(&ab, DS_BF16, 2, s8) || !gpu_dev_alloc(&o9, DS_F32, 2, s9))
        goto done;
    ds_tensor cpu = gpu_host(host, 2, s8), cpu2 = gpu_host(host2, 2, s8);
    double s1 = 0.0, s2 = 0.0;

    ds_err_clear(&e);
    gpu_expect(TEST, "err_add_cpu_b", ds_op_add(&o.t, &a.t, &cpu, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_add_cpu_out", ds_op_add(&cpu, &a.t, &b.t, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_sub_cpu_a", ds_op_sub(&o.t, &cpu2, &b.t, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_add_mixed_dtype", ds_op_add(&o.t, &a.t, &ab.t, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_axpby_mixed_dtype_out", ds_op_axpby(&ab.t, 1.0f, &a.t, 1.0f, &b.t, &e),
               DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_add_shape", ds_op_add(&o9.t, &a.t, &b.t, &e), DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_softmax_shape", ds_op_softmax(&o9.t, &a.t, &e), DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_gelu_kind", ds_op_gelu(&o.t, &a.t, (ds_gelu_kind)7, &e), DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_silu_cpu_out", ds_op_silu(&cpu, &a.t, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_convert_cpu_out", ds_op_convert(&cpu, &a.t, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_convert_shape", ds_op_convert(&o9.t, &a.t, &e), DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_diff_sums_null", ds_op_diff_sums(&a.t, &b.t, NULL, &s2, &e), DS_ERR_INVALID_ARG, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_diff_sums_cpu_b", ds_op_diff_sums(&a.t, &cpu, &s1, &s2, &e), DS_ERR_UNSUPPORTED, &e);
    ds_err_clear(&e);
    gpu_expect(TEST, "err_diff_sums_shape", ds_op_diff_sums(&a.t, &o9.t, &s1, &s2, &e), DS_ERR_INVALID_ARG, &e);

    /* No context bound to this thread: DS_ERR_DEVICE, then rebind. */
    ds_err_clear(&e);
    if (GPU_OK(ds_cuda_ctx_bind(NULL, &e), &e)) {
        ds_err_clear(&e);
        gpu_expect(TEST, "err_add_no_context", ds_op_add(&o.t, &a.t, &b.t, &e), DS_ERR_DEVICE, &e);
        ds_err_clear(&e);
        GPU_OK(ds_cuda_ctx_bind(ctx, &e), &e);
    }
done:
    gpu_dev_free(&a);
    gpu_dev_free(&b);
    gpu_dev_free(&o);
    gpu_dev_free(&ab);
    gpu_dev_free(&o9);
}

int main(void) {
    ds_cuda_ctx *ctx = gpu_ctx_open(TEST);
    if (!ctx) return gpu_finish(TEST);

    const struct {
        int ndim;
        const int64_t *shape;
    } shapes[] = {{1, SH_ONE}, {3, SH_ODD}, {3, SH_BIG_ODD}, {3, SH_DIT}};
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    uint64_t seed = 100;

    for (int di = 0; di < GPU_NDTYPES; di++) {
        const ds_dtype dt = gpu_dtype(di);
        for (int op = U_GELU_EXACT; op <= U_SILU; op++)
            for (int s = 0; s < nshapes; s++) /* a lone element is the whole tensor: keep it out of the tails */
                unary_case((unary_op)op, dt, shapes[s].ndim, shapes[s].shape, s == 0 ? 1.0 : 4.0, 0.0, RUN_PLAIN,
                           seed++);
        for (int op = B_ADD; op <= B_AXPBY_NOY; op++)
            for (int s = 0; s < nshapes; s++) binary_case((binary_op)op, dt, shapes[s].ndim, shapes[s].shape,
                                                          BIN_PLAIN, seed++);
    }
    /* in place and element-aligned only */
    unary_case(U_GELU_TANH, DS_BF16, 3, SH_ODD, 4.0, 0.0, RUN_INPLACE, seed++);
    unary_case(U_GELU_EXACT, DS_F32, 3, SH_DIT, 4.0, 0.0, RUN_INPLACE, seed++);
    unary_case(U_SILU, DS_F16, 3, SH_DIT, 4.0, 0.0, RUN_INPLACE, seed++);
    unary_case(U_GELU_EXACT, DS_F16, 3, SH_BIG_ODD, 4.0, 0.0, RUN_UNALIGNED, seed++);
    unary_case(U_SILU, DS_BF16, 3, SH_DIT, 4.0, 0.0, RUN_UNALIGNED, seed++);
    binary_case(B_ADD, DS_BF16, 3, SH_DIT, BIN_OUT_A, seed++);
    binary_case(B_ADD, DS_F32, 3, SH_ODD, BIN_OUT_B, seed++);
    binary_case(B_SUB, DS_F16, 3, SH_DIT, BIN_OUT_B, seed++);
    binary_case(B_AXPBY, DS_F32, 3, SH_DIT, BIN_OUT_A, seed++);
    binary_case(B_AXPBY, DS_BF16, 3, SH_ODD, BIN_OUT_B, seed++);
    binary_case(B_AXPBY_NOY, DS_F16, 3, SH_DIT, BIN_OUT_A, seed++);
    binary_case(B_ADD, DS_F16, 3, SH_DIT, BIN_UNALIGNED, seed++);
    binary_case(B_AXPBY, DS_BF16, 3, SH_BIG_ODD, BIN_UNALIGNED, seed++);

    /* softmax rows */
    const struct {
        int64_t rows, d;
    } sm[] = {{1, 1}, {33, 7}, {17, 77}, {64, 1000}, {9, 1152}, {8, 4096}};
    for (int di = 0; di < GPU_NDTYPES; di++) {
        const ds_dtype dt = gpu_dtype(di);
        for (size_t s = 0; s < sizeof sm / sizeof sm[0]; s++)
            unary_case(U_SOFTMAX, dt, 2, (const int64_t[]){sm[s].rows, sm[s].d}, 4.0, 0.0, RUN_PLAIN, seed++);
        unary_case(U_SOFTMAX, dt, 3, (const int64_t[]){3, 5, 1152}, 4.0, 0.0, RUN_PLAIN, seed++);
        unary_case(U_SOFTMAX, dt, 2, (const int64_t[]){16, 1000}, 4.0, 50.0, RUN_PLAIN, seed++);
    }
    unary_case(U_SOFTMAX, DS_F32, 2, (const int64_t[]){17, 77}, 4.0, 0.0, RUN_INPLACE, seed++);
    unary_case(U_SOFTMAX, DS_BF16, 2, (const int64_t[]){9, 1152}, 4.0, 0.0, RUN_INPLACE, seed++);
    unary_case(U_SOFTMAX, DS_BF16, 2, (const int64_t[]){64, 1000}, 4.0, 0.0, RUN_UNALIGNED, seed++);
    unary_case(U_SOFTMAX, DS_F16, 2, (const int64_t[]){33, 7}, 4.0, 0.0, RUN_UNALIGNED, seed++);

    /* convert: all 9 (src, dst) pairs (3 identities as copies into a second buffer) + out == x */
    for (int si = 0; si < GPU_NDTYPES; si++)
        for (int di = 0; di < GPU_NDTYPES; di++) {
            convert_case(gpu_dtype(si), gpu_dtype(di), 3, SH_ODD, false, seed++);
            convert_case(gpu_dtype(si), gpu_dtype(di), 3, SH_BIG_ODD, false, seed++);
        }
    convert_case(DS_BF16, DS_BF16, 3, SH_ODD, true, seed++);

    /* diff_sums */
    for (int di = 0; di < GPU_NDTYPES; di++)
        for (int s = 0; s < nshapes; s++) diff_sums_case(gpu_dtype(di), shapes[s].ndim, shapes[s].shape, seed++);

    error_cases(ctx);
    gpu_ctx_close(ctx);
    return gpu_finish(TEST);
}
