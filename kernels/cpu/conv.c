/* conv.c - 2-D convolution on the CPU (stride 1, square 1x1 / 3x3 kernels with "same" padding, as
 * the VAE decoder uses them), as im2col + OpenBLAS sgemm against the weight viewed as
 * [Cout, Cin·k·k].
 *
 * Memory is bounded: per image, the output rows are taken in bands of `band` rows, chosen so that
 * the band's im2col matrix [Cin·k·k, band·Wo] fits DS_OP_CONV2D_BAND_BYTES (at least one row, so a
 * single row wider than the budget still runs, with a larger scratch). Each band is one sgemm,
 *   out[:, rows y0 .. y0+band) = W [Cout, K] · col [K, band·Wo]      (K = Cin·k·k),
 * written straight into the output with ldc = Ho·Wo: a band of whole rows is a contiguous column
 * range of the [Cout, Ho·Wo] output. The K-loop of every output element is the same as for one
 * whole-image sgemm; only the column count N of each product changes.
 * A 1x1 kernel with padding 0 skips im2col (x already is [Cin, H·W]): one sgemm per image, no scratch.
 *
 * Threading: the bands run one after another on the calling thread and OpenBLAS threads each sgemm
 * itself; sgemm is never called from several OpenMP threads (with the pthreads OpenBLAS build that
 * oversubscribes the cores and serializes on its pool, see kernels/cpu/attention.c). The im2col of a
 * band (pure data movement) and the bias fill run on an OpenMP team only when OpenBLAS does not run
 * its own pthread pool: otherwise the OpenMP team and the OpenBLAS workers, which both spin-wait a
 * while after each region, alternate once per band and fight for the same cores (measured 2-3x
 * slower on 2 cores), so there they run on the calling thread. OpenBLAS splits a product over
 * rows/columns of the result, never over the reduction, so the result does not depend on the
 * thread count. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "cpu/cpu_util.h"
#include "image_util.h"
#include "ops.h"
#include "op_shapes.h"
#include "ops_dispatch.h"

/* True when OpenBLAS threads each call itself with a pthread pool (see the file comment). */
static int blas_runs_own_pool(void) { return openblas_get_parallel() == 1 && openblas_get_num_threads() > 1; }

/* Output rows per band for a [K = cin·k·k] x [wo]-wide im2col row: as many as fit the budget, at
 * least 1, at most ho. */
static int64_t band_rows(int64_t kk, int64_t ho, int64_t wo) {
    const int64_t row_bytes = kk * wo * (int64_t)sizeof(float);
    int64_t band = (int64_t)DS_OP_CONV2D_BAND_BYTES / row_bytes;
    if (band < 1) band = 1;
    return band < ho ? band : ho;
}

/* Contract in ops.h: the im2col matrix of one band, [cin·k·k, band·Wo] f32, band as in band_rows
 * (Ho = h + 2·padding − k + 1, Wo likewise), or 0 for k = 1, padding 0. Returns 0 for non-positive
 * sizes (ds_op_conv2d then rejects the shapes). */
size_t ds_op_conv2d_scratch_bytes(int64_t cin, int64_t h, int64_t w, int64_t k, int64_t padding) {
    if (cin <= 0 || h <= 0 || w <= 0 || k <= 0 || padding < 0) return 0;
    if (k == 1 && padding == 0) return 0;
    const int64_t ho = h + 2 * padding - k + 1, wo = w + 2 * padding - k + 1;
    if (ho <= 0 || wo <= 0) return 0;
    const int64_t kk = cin * k * k;
    return (size_t)kk * (size_t)band_rows(kk, ho, wo) * (size_t)wo * sizeof(float);
}

/* col[(c·k + u)·k + v, (oy − y0)·Wo + ox] = x[c, oy + u − pad, ox + v − pad] for output rows
 * oy in [y0, y0 + nb), 0 outside the image. x: [Cin, H, W]; col: [Cin·k·k, nb·Wo]. */
static void im2col_band(float *col, const float *x, int64_t cin, int64_t h, int64_t w, int64_t k, int64_t pad,
                        int64_t y0, int64_t nb, int64_t wo, int par) {
    const int64_t rows = cin * k * k, n = nb * wo;
#pragma omp parallel for schedule(static) if (par && rows * n >= DS_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t c = r / (k * k), u = (r / k) % k, v = r % k;
        const float *xc = x + c * h * w;
        float *dst = col + r * n;
        /* ox range whose ix = ox + v − pad lies inside [0, w) */
        const int64_t lo = pad - v > 0 ? pad - v : 0;
        const int64_t hi = w + pad - v < wo ? w + pad - v : wo;
        for (int64_t oy = y0; oy < y0 + nb; oy++) {
            const int64_t iy = oy + u - pad;
            float *d = dst + (oy - y0) * wo;
            if (iy < 0 || iy >= h || hi <= lo) {
                memset(d, 0, (size_t)wo * sizeof(float));
                continue;
            }
            for (int64_t ox = 0; ox < lo; ox++) d[ox] = 0.0f;
            memcpy(d + lo, xc + iy * w + (lo + v - pad), (size_t)(hi - lo) * sizeof(float));
            for (int64_t ox = hi; ox < wo; ox++) d[ox] = 0.0f;
        }
    }
}

/* o[c·ld + p] = bs[c] for c < cout, p < n. */
static void fill_bias(float *o, const float *bs, int64_t cout, int64_t ld, int64_t n, int par) {
#pragma omp parallel for schedule(static) if (par && cout * n >= DS_CPU_PAR_MIN)
    for (int64_t c = 0; c < cout; c++)
        for (int64_t p = 0; p < n; p++) o[c * ld + p] = bs[c];
}

/* Contract in ops.h. x: [B, Cin, H, W]; w: [Cout, Cin, k, k] with k in {1, 3} and padding == (k−1)/2;
 * bias: [Cout] or NULL; out: [B, Cout, Ho, Wo] (Ho = H, Wo = W for these kernels), must not alias x.
 * scratch: at least ds_op_conv2d_scratch_bytes(Cin, H, W, k, padding) bytes (may be NULL when that is
 * 0). Errors: DS_ERR_INVALID_ARG for shapes, kernel size, padding, missing/small scratch, aliasing. */
ds_status ds_op_conv2d(ds_tensor *out, const ds_tensor *x, const ds_tensor *w, const ds_tensor *bias, int padding,
                       void *scratch, size_t scratch_bytes, ds_err *err) {
    DS_OP_DISPATCH(x, ds_cuda_op_conv2d(out, x, w, bias, padding, scratch, scratch_bytes, err));
    static const char op[] = "ds_op_conv2d";
    DS_TRY(ds_img_check(x, 4, op, "x", err));
    DS_TRY(ds_img_check(w, 4, op, "weight", err));
    DS_TRY(ds_img_check(out, 4, op, "out", err));
    if (bias) DS_TRY(ds_img_check(bias, 1, op, "bias", err));
    DS_TRY(ds_shape_conv2d(out, x, w, bias, padding, op, err));
    const int64_t B = x->shape[0], cin = x->shape[1], h = x->shape[2], wd = x->shape[3]; /* x [B, Cin, H, W] */
    const int64_t cout = w->shape[0], k = w->shape[2], ho = out->shape[2], wo = out->shape[3];
    {
        const char *o0 = out->data, *x0 = x->data;
        if (o0 < x0 + ds_tensor_nbytes(x) && x0 < o0 + ds_tensor_nbytes(out))
            return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: out overlaps x", op);
    }
    const size_t need = ds_op_conv2d_scratch_bytes(cin, h, wd, k, padding);
    if (need > 0 && (!scratch || scratch_bytes < need))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: scratch of %zu bytes%s, need %zu", op, scratch_bytes,
                       scratch ? "" : " (NULL)", need);
    if (B == 0 || cout == 0 || ho * wo == 0) return DS_OK;
    if (cout > INT_MAX || ho * wo > INT_MAX || cin * k * k > INT_MAX)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "%s: a GEMM dimension exceeds INT_MAX (BLAS int)", op);

    const int64_t K = cin * k * k, P = ho * wo;
    /* 1x1, pad 0: the whole image is one band and x itself is the column matrix. */
    const int64_t band = need > 0 ? band_rows(K, ho, wo) : ho;
    const float *xs = x->data, *ws = w->data, *bs = bias ? bias->data : NULL;
    float *os = out->data;
    const int par = !blas_runs_own_pool();
    for (int64_t b = 0; b < B; b++) {
        const float *xb = xs + b * cin * h * wd;
        float *ob = os + b * cout * P;
        for (int64_t y0 = 0; y0 < ho; y0 += band) {
            const int64_t nb = ho - y0 < band ? ho - y0 : band, n = nb * wo;
            float *o = ob + y0 * wo; /* columns [y0·Wo, y0·Wo + n) of out_b [Cout, P] */
            if (bs) fill_bias(o, bs, cout, P, n, par);
            if (K == 0) {
                if (!bs)
                    for (int64_t c = 0; c < cout; c++) memset(o + c * P, 0, (size_t)n * sizeof(float));
                continue;
            }
            const float *col = xb;
            if (need > 0) {
                im2col_band(scratch, xb, cin, h, wd, k, padding, y0, nb, wo, par);
                col = scratch;
            }
            /* out_b[:, band] (+)= w [Cout, K] · col [K, n]   (bias already in place when beta = 1) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cout, (int)n, (int)K, 1.0f, ws, (int)K, col,
                        (int)n, bs ? 1.0f : 0.0f, o, (int)P);
        }
    }
    return DS_OK;
}
