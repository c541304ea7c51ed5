/* gpu_bench.c - the GPU performance benchmark of the CUDA backend (cuda:0, bf16), the ditserve side of
 * tests/gpu/bench_hook.sh (its peer is bench/torch_gpu_bench.py: same shapes, same timing, same FLOP count).
 *
 *   gpu_bench [--configs DIR] [--flux-blocks ND,NS|full] [--iters N] [--warmup N] [--steps N] [--gemm N]
 *             [--cases gemm,flux,dit,gen] [--keep-tmp]
 *
 * Cases (each prints one `RESULT gpu_bench <case> key=value ... STATUS` line as soon as it is measured, and a
 * human table at the end):
 *   gemm_bf16  one bf16 matrix product out[M,N] = x[M,K]·w[N,K]ᵀ through ds_cuda_linear (cuBLASLt, fp32
 *              accumulation), M = N = K = --gemm (8192): the measured bf16 peak of this card in this run.
 *   flux_fwd   one FluxTransformer2D forward, FLUX.1-dev shapes at 1024x1024: 4096 image tokens, 512 text tokens,
 *              batch 1, guidance embeds; ds_flux_load_on(cuda:0, bf16) with seeded random weights
 *              (ds_diffusers_set_random_weights, as --random-weights).
 *   dit_fwd    one DiT-XL/2-256 forward, batch 2 (the CFG batch), 256 tokens.
 *   flux_gen   a 28-step FLUX-shaped 1024x1024 generation through ds_pipeline_generate with DBCache and a static
 *              steps-computation mask (compute steps 0-7 and every 4th step after: 11, 15, 19, 23, 27; Fn = 1,
 *              Bn = 0), timed per step, against the cost formula (below).
 *
 * Timing: ds_cuda_ctx_sync, clock_gettime, the call, ds_cuda_ctx_sync, clock_gettime, per iteration after
 * --warmup untimed calls; the median of --iters. The GEMM is timed in batches of 10 products (median batch / 10).
 *
 * FLOPs (../shared/reference/models.md §10): a multiply-add is 2 FLOPs; every nn.Linear on M rows K -> N counts
 * 2·M·K·N (the block GEMMs, the adaLN modulation linears, the embedders and the final layer: "gemm"), the
 * attention core counts 4·S²·D per block (Q·Kᵀ and P·V over all heads: "attn"); softmax, norms, activations,
 * RoPE and elementwise work count 0. tflops = (gemm + attn) / time; frac_peak = tflops / gemm_bf16's tflops.
 *
 * FLUX weights: the loader synthesizes random weights on the host (Philox normals, then f32 -> bf16, then an
 * upload), about 5-10 ns per parameter on 16 cores, i.e. one to two minutes for FLUX.1-dev's 11.9 B parameters,
 * loaded twice (flux_fwd and flux_gen). To stay inside the device check's budget the FLUX cases run a model with
 * the full FLUX.1-dev width and token counts but --flux-blocks ND double + NS single blocks (default 2 + 4, the
 * 19:38 ratio halved; `full` = 19 + 38) from a temporary copy of the config directory. Every figure printed is
 * measured on that model, except the *_est keys: full_est_ms = median + (19 - ND)·t_double + (38 - NS)·t_single
 * with the per-block times measured in a separate pass (synchronised after every block), full_est_tflops its
 * FLOP rate, and full_mem_est_mb = mem_mb + the bf16 bytes of the missing blocks' parameters. The output says
 * which model ran.
 *
 * Memory: mem_mb = device memory in use (cudaMemGetInfo) after load + inputs + the timed forwards minus before
 * the load (the CUDA context and cuBLASLt workspace existed before); weights_mb / act_mb are the model's arenas
 * (ds_*_weight_bytes / ds_*_activation_bytes). The peer reports torch.cuda.max_memory_allocated over the same
 * span.
 *
 * flux_gen cost formula: a wrapper around the cache's block runner synchronises and times every block forward.
 * On computed steps (step 0 excluded: it holds one-time allocations) block_ms = the blocks' time and
 * nonblock_ms = step_ms - block_ms (embed, final, host scheduler, transfers, cache bookkeeping); the cost formula
 * of a cached step is nonblock_ms + (Fn + Bn) / n_blocks · block_ms, and PASS means the median cached step is
 * within 10% of it. ideal_ms = steps · nonblock_ms + blocks_computed / n_blocks · block_ms (the denoising time the
 * skipped blocks allow) against the measured denoise_ms. The real FLUX VAE decodes the result (decode_ms) unless
 * the CUDA attention cannot run its single 512-wide head: then the VAE's mid-block attention is switched off in
 * the temporary config and the output says so.
 *
 * Exit: 0, 1 when a case failed (an error of the engine: a RESULT ... FAIL line names it), 2 usage,
 * 77 without a usable CUDA device (a SKIP line, as tests/gpu/gpu_common.h). */
#include <cJSON.h>
#include <cuda_runtime_api.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blocks.h"
#include "cache.h"
#include "cache_config.h"
#include "cuda/ds_cuda.h"
#include "cuda/ds_cuda_ops.h"
#include "device.h"
#include "diffusers_dir.h"
#include "dit.h"
#include "flux.h"
#include "ops.h"
#include "pipeline.h"
#include "rng.h"
#include "tensor_io.h"

#ifndef DS_BENCH_CONFIGS_DIR
#define DS_BENCH_CONFIGS_DIR "bench/configs"
#endif

#define MAX_ITERS 100
#define FLUX_FULL_DOUBLE 19
#define FLUX_FULL_SINGLE 38
#define FRAC_PEAK_TARGET 0.55
#define CACHE_STEP_TOL 1.10

/* ---- small helpers -------------------------------------------------------------------------------------------- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts a copy); NAN for n == 0. */
static double median(const double *v, int n) {
    if (n <= 0) return NAN;
    double *c = malloc(sizeof(double) * (size_t)n);
    if (!c) return NAN;
    memcpy(c, v, sizeof(double) * (size_t)n);
    qsort(c, (size_t)n, sizeof *c, cmp_d);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

/* Device memory in use on the current device (total - free), in bytes; 0 on error. */
static size_t mem_used(void) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return tot - fr;
}

static double mb(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

/* Replace spaces and '=' of an error message so it stays one RESULT field. */
static const char *field(const char *s, char *buf, size_t cap) {
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++) buf[i] = (s[i] == ' ' || s[i] == '=' || s[i] == '\t' || s[i] == '\n') ? '_' : s[i];
    buf[i] = 0;
    return buf;
}

/* A summary row for the human table at the end. */
typedef struct row {
    char kase[32];
    char text[256];
} row;
static row g_rows[16];
static int g_nrows;
static int g_failures;

static void add_row(const char *kase, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_row(const char *kase, const char *fmt, ...) {
    if (g_nrows >= (int)(sizeof g_rows / sizeof g_rows[0])) return;
    row *r = &g_rows[g_nrows++];
    snprintf(r->kase, sizeof r->kase, "%s", kase);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof r->text, fmt, ap);
    va_end(ap);
}

static void case_failed(const char *kase, const ds_err *e) {
    char buf[400];
    printf("RESULT gpu_bench %s error=%s FAIL\n", kase, field(e->msg[0] ? e->msg : ds_status_name(e->code), buf,
                                                                  sizeof buf));
    printf("gpu_bench: %s failed: %s (%s)\n", kase, e->msg, ds_status_name(e->code));
    fflush(stdout);
    add_row(kase, "FAILED: %.200s", e->msg);
    g_failures++;
}

/* A device tensor of `dtype` filled with seeded N(0, 1) * scale values (through the host). */
static ds_status rand_tensor(ds_tensor *t, ds_dtype dtype, int ndim, const int64_t *shape, uint64_t seed, float scale,
                             ds_err *err) {
    DS_TRY(ds_tensor_alloc(t, dtype, (ds_device){DS_DEVICE_CUDA, 0}, ndim, shape, err));
    const int64_t n = ds_tensor_numel(t);
    float *h = malloc(sizeof(float) * (size_t)(n ? n : 1));
    const size_t sb = ds_tensor_staging_bytes(t);
    void *stg = sb ? malloc(sb) : NULL;
    if (!h || (sb && !stg)) {
        free(h);
        free(stg);
        return DS_FAIL(err, DS_ERR_OOM, "host buffer for %lld elements", (long long)n);
    }
    ds_rng_normal(seed, 0, h, n);
    for (int64_t i = 0; i < n; i++) h[i] *= scale;
    ds_status s = ds_tensor_write_f32(t, h, stg, sb, err);
    free(h);
    free(stg);
    return s;
}

/* ---- FLOP counts (models.md §10) ------------------------------------------------------------------------------- */

typedef struct flops {
    double gemm, attn;
} flops;

/* FLUX transformer forward on B samples, nd double + ns single blocks, N image and T text tokens. */
static flops flux_flops(const ds_flux_config *c, int nd, int ns, double N, double T, double B) {
    const double D = (double)c->hidden, M = (double)c->mlp_hidden, S = N + T;
    const double dbl_gemm = 8.0 * S * D * D + 4.0 * S * D * M + 2.0 * (2.0 * D * 6.0 * D); /* qkv+out, MLPs, adaLN x2 */
    const double sgl_gemm = 2.0 * S * D * (3.0 * D + M) + 2.0 * S * (D + M) * D + 2.0 * D * 3.0 * D;
    const double att = 4.0 * S * S * D;
    const double F = (double)c->freq_dim;
    double embed = 2.0 * N * (double)c->in_channels * D + 2.0 * T * (double)c->joint_dim * D +
                   2.0 * (F * D + D * D) + 2.0 * ((double)c->pooled_dim * D + D * D);
    if (c->guidance_embeds) embed += 2.0 * (F * D + D * D);
    const double fin = 2.0 * D * 2.0 * D + 2.0 * N * D * (double)c->out_channels;
    flops f = {B * (nd * dbl_gemm + ns * sgl_gemm + embed + fin), B * (nd + ns) * att};
    return f;
}

/* DiT forward on B samples of N tokens. */
static flops dit_flops(const ds_dit_config *c, double N, double B) {
    const double D = (double)c->hidden, Ff = (double)c->ff_inner, p2 = (double)(c->patch_size * c->patch_size);
    const double blk = 8.0 * N * D * D + 4.0 * N * D * Ff + 2.0 * D * 6.0 * D; /* qkv+out, MLP, adaLN */
    const double embed = 2.0 * N * ((double)c->in_channels * p2) * D + 2.0 * ((double)c->freq_dim * D + D * D);
    const double fin = 2.0 * D * 2.0 * D + 2.0 * N * D * p2 * (double)c->out_channels;
    flops f = {B * ((double)c->num_layers * blk + embed + fin), B * (double)c->num_layers * 4.0 * N * N * D};
    return f;
}

/* bf16 bytes of one FLUX block's parameters (weights and biases; q/k RMSNorm weights of head_dim). */
static double flux_double_bytes(const ds_flux_config *c) {
    const double D = (double)c->hidden, M = (double)c->mlp_hidden, d = (double)c->head_dim;
    return 2.0 * (2 * (6 * D * D + 6 * D) + 8 * (D * D + D) + 4 * d + 2 * (M * D + M + D * M + D));
}
static double flux_single_bytes(const ds_flux_config *c) {
    const double D = (double)c->hidden, M = (double)c->mlp_hidden, d = (double)c->head_dim;
    return 2.0 * ((3 * D * D + 3 * D) + 3 * (D * D + D) + 2 * d + (M * D + M) + ((D + M) * D + D));
}

/* ---- temporary config directories ------------------------------------------------------------------------------ */

typedef struct json_mod {
    const char *key;
    int         is_bool;
    int64_t     value;
} json_mod;

static ds_status mkdir_p(const char *path, ds_err *err) {
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return DS_FAIL(err, DS_ERR_IO, "mkdir %s: %s", path, strerror(errno));
    return DS_OK;
}

/* Copy JSON file src to dst with the given top-level keys replaced. */
static ds_status copy_json(const char *src, const char *dst, const json_mod *mods, int n_mods, ds_err *err) {
    ds_config *cfg = NULL;
    DS_TRY(ds_config_open(src, &cfg, err));
    cJSON *root = cJSON_Duplicate(ds_config_root(cfg), 1);
    ds_config_close(cfg);
    if (!root) return DS_FAIL(err, DS_ERR_OOM, "copy of %s", src);
    for (int i = 0; i < n_mods; i++) {
        cJSON *v = mods[i].is_bool ? cJSON_CreateBool(mods[i].value != 0) : cJSON_CreateNumber((double)mods[i].value);
        if (!v) {
            cJSON_Delete(root);
            return DS_FAIL(err, DS_ERR_OOM, "json value");
        }
        if (cJSON_HasObjectItem(root, mods[i].key)) cJSON_ReplaceItemInObject(root, mods[i].key, v);
        else cJSON_AddItemToObject(root, mods[i].key, v);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return DS_FAIL(err, DS_ERR_OOM, "json print");
    FILE *f = fopen(dst, "w");
    ds_status s = DS_OK;
    if (!f || fputs(text, f) < 0) s = DS_FAIL(err, DS_ERR_IO, "write %s: %s", dst, strerror(errno));
    if (f && fclose(f) != 0 && s == DS_OK) s = DS_FAIL(err, DS_ERR_IO, "close %s: %s", dst, strerror(errno));
    free(text);
    return s;
}

/* buf = a + "/" + b, or DS_ERR_INVALID_ARG when it does not fit. */
static ds_status pjoin(char *buf, size_t cap, const char *a, const char *b, ds_err *err) {
    const int n = snprintf(buf, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap) return DS_FAIL(err, DS_ERR_INVALID_ARG, "path too long: %s/%s", a, b);
    return DS_OK;
}

/* A copy of the FLUX config directory src under a new temporary directory (written into out, cap bytes) with
 * nd double + ns single blocks and, when vae_mid_attn == 0, the VAE's mid-block attention switched off. */
static ds_status make_flux_dir(const char *src, int nd, int ns, int vae_mid_attn, char *out, size_t cap, ds_err *err) {
    char tmpl[] = "/tmp/gpu_bench.XXXXXX";
    if (!mkdtemp(tmpl)) return DS_FAIL(err, DS_ERR_IO, "mkdtemp: %s", strerror(errno));
    DS_TRY(pjoin(out, cap, tmpl, "flux", err));
    DS_TRY(mkdir_p(out, err));
    static const char *const subs[] = {"transformer", "vae", "scheduler"};
    char a[1200], b[1200];
    for (int i = 0; i < 3; i++) {
        DS_TRY(pjoin(b, sizeof b, out, subs[i], err));
        DS_TRY(mkdir_p(b, err));
    }
    static const char *const files[] = {"model_index.json", "scheduler/scheduler_config.json",
                                        "transformer/config.json", "vae/config.json"};
    const json_mod tm[2] = {{"num_layers", 0, nd}, {"num_single_layers", 0, ns}};
    const json_mod vm[1] = {{"mid_block_add_attention", 1, 0}};
    for (int i = 0; i < 4; i++) {
        DS_TRY(pjoin(a, sizeof a, src, files[i], err));
        DS_TRY(pjoin(b, sizeof b, out, files[i], err));
        const json_mod *mods = i == 2 ? tm : i == 3 ? vm : NULL;
        const int n = i == 2 ? 2 : (i == 3 && !vae_mid_attn) ? 1 : 0;
        DS_TRY(copy_json(a, b, mods, n, err));
    }
    return DS_OK;
}

/* Remove what make_flux_dir made (dir = "<tmp>/flux"). */
static void remove_flux_dir(const char *dir) {
    static const char *const files[] = {"model_index.json", "scheduler/scheduler_config.json",
                                        "transformer/config.json", "vae/config.json"};
    static const char *const subs[] = {"transformer", "vae", "scheduler", ""};
    char p[1200];
    for (int i = 0; i < 4; i++)
        if (pjoin(p, sizeof p, dir, files[i], NULL) == DS_OK) unlink(p);
    for (int i = 0; i < 4; i++)
        if (pjoin(p, sizeof p, dir, subs[i], NULL) == DS_OK) rmdir(p);
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return;
    char *slash = strrchr(p, '/');
    if (slash) {
        *slash = 0;
        rmdir(p);
    }
}

/* ---- options --------------------------------------------------------------------------------------------------- */

typedef struct opts {
    const char *configs;
    int         nd, ns; /* FLUX blocks */
    int         iters, warmup, steps, gemm;
    bool        c_gemm, c_flux, c_dit, c_gen, keep_tmp;
} opts;

static double g_peak_tflops = NAN; /* the gemm case's result, for frac_peak */

/* ---- gemm ------------------------------------------------------------------------------------------------------ */

static void bench_gemm(const opts *o) {
    static const char kase[] = "gemm_bf16";
    ds_err e = {0};
    const int64_t n = o->gemm;
    ds_tensor x = {0}, w = {0}, y = {0};
    ds_status s = rand_tensor(&x, DS_BF16, 2, (const int64_t[]){n, n}, 11, 1.0f, &e);
    if (s == DS_OK) s = rand_tensor(&w, DS_BF16, 2, (const int64_t[]){n, n}, 12, 1.0f / sqrtf((float)n), &e);
    if (s == DS_OK) s = ds_tensor_alloc(&y, DS_BF16, (ds_device){DS_DEVICE_CUDA, 0}, 2, (const int64_t[]){n, n}, &e);
    void *stream = ds_cuda_ctx_stream(ds_cuda_ctx_current());
    double ms[MAX_ITERS];
    const int batch = 10, nb = o->iters;
    for (int it = -3; it < nb && s == DS_OK; it++) {
        s = ds_cuda_ctx_sync(&e);
        const double a = now_ms();
        for (int k = 0; k < (it < 0 ? 1 : batch) && s == DS_OK; k++)
            s = ds_cuda_linear(ds_cuda_ctx_lt(), DS_BF16, y.data, x.data, w.data, NULL, n, n, n, stream, &e);
        if (s == DS_OK) s = ds_cuda_ctx_sync(&e);
        if (it >= 0) ms[it] = (now_ms() - a) / batch;
    }
    ds_tensor_free_data(&x);
    ds_tensor_free_data(&w);
    ds_tensor_free_data(&y);
    if (s != DS_OK) {
        case_failed(kase, &e);
        return;
    }
    const double med = median(ms, nb), fl = 2.0 * (double)n * (double)n * (double)n;
    g_peak_tflops = fl / (med * 1e9);
    printf("RESULT gpu_bench %s ms=%.4f tflops=%.1f m=%lld n=%lld k=%lld iters=%dx%d INFO\n", kase, med, g_peak_tflops,
           (long long)n, (long long)n, (long long)n, nb, batch);
    fflush(stdout);
    add_row(kase, "%lld^3 bf16 (ds_cuda_linear): %.3f ms, %.1f TFLOP/s = the measured peak", (long long)n, med,
            g_peak_tflops);
}

/* ---- FLUX transformer forward ------------------------------------------------------------------------------------ */

typedef struct flux_inputs {
    ds_tensor hidden, encoder, pooled, out, img_ids, txt_ids;
    float    *img_ids_h, *txt_ids_h;
    float     t[1], g[1];
} flux_inputs;

static void flux_inputs_free(flux_inputs *in) {
    ds_tensor_free_data(&in->hidden);
    ds_tensor_free_data(&in->encoder);
    ds_tensor_free_data(&in->pooled);
    ds_tensor_free_data(&in->out);
    free(in->img_ids_h);
    free(in->txt_ids_h);
    memset(in, 0, sizeof *in);
}

static ds_status flux_inputs_make(const ds_flux_config *c, int64_t h2, int64_t w2, int64_t T, flux_inputs *in,
                                  ds_err *err) {
    memset(in, 0, sizeof *in);
    const int64_t N = h2 * w2;
    DS_TRY(rand_tensor(&in->hidden, DS_BF16, 3, (const int64_t[]){1, N, c->in_channels}, 21, 1.0f, err));
    DS_TRY(rand_tensor(&in->encoder, DS_BF16, 3, (const int64_t[]){1, T, c->joint_dim}, 22, 1.0f, err));
    DS_TRY(rand_tensor(&in->pooled, DS_BF16, 2, (const int64_t[]){1, c->pooled_dim}, 23, 1.0f, err));
    DS_TRY(ds_tensor_alloc(&in->out, DS_BF16, (ds_device){DS_DEVICE_CUDA, 0}, 3,
                           (const int64_t[]){1, N, c->out_channels}, err));
    in->img_ids_h = calloc((size_t)(N * c->n_axes), sizeof(float));
    in->txt_ids_h = calloc((size_t)(T * c->n_axes), sizeof(float));
    if (!in->img_ids_h || !in->txt_ids_h) return DS_FAIL(err, DS_ERR_OOM, "position ids");
    in->img_ids = ds_tensor_f32(in->img_ids_h, 2, N, (int64_t)c->n_axes);
    in->txt_ids = ds_tensor_f32(in->txt_ids_h, 2, T, (int64_t)c->n_axes);
    DS_TRY(ds_flux_image_ids(h2, w2, &in->img_ids, err));
    in->t[0] = 0.5f;  /* sigma; the model multiplies by 1000 */
    in->g[0] = 3.5f;  /* FLUX.1-dev's default embedded guidance */
    return DS_OK;
}

static ds_status flux_fwd(ds_flux *m, flux_inputs *in, ds_err *err) {
    const bool ge = ds_flux_get_config(m)->guidance_embeds;
    return ds_flux_forward(m, &in->hidden, &in->encoder, &in->pooled, in->t, ge ? in->g : NULL, &in->img_ids,
                           &in->txt_ids, &in->out, err);
}

/* One forward through the pieces, synchronised after each: per-block times (ms) of the double and single blocks
 * (means) and the rest (embed + join + final). */
static ds_status flux_piecewise(ds_flux *m, flux_inputs *in, double *t_dbl, double *t_sgl, double *t_rest,
                                ds_err *err) {
    const ds_flux_config *c = ds_flux_get_config(m);
    const int64_t N = in->hidden.shape[1], T = in->encoder.shape[1], D = c->hidden, d = c->head_dim;
    const ds_device dev = {DS_DEVICE_CUDA, 0};
    ds_tensor h = {0}, enc = {0}, temb = {0}, cat = {0};
    ds_flux_rope rope;
    memset(&rope, 0, sizeof rope);
    ds_status s = ds_tensor_alloc(&h, DS_BF16, dev, 3, (const int64_t[]){1, N, D}, err);
    if (s == DS_OK) s = ds_tensor_alloc(&enc, DS_BF16, dev, 3, (const int64_t[]){1, T, D}, err);
    if (s == DS_OK) s = ds_tensor_alloc(&temb, DS_BF16, dev, 2, (const int64_t[]){1, D}, err);
    if (s == DS_OK) s = ds_tensor_alloc(&cat, DS_BF16, dev, 3, (const int64_t[]){1, T + N, D}, err);
    if (s == DS_OK) s = ds_tensor_alloc(&rope.cos, DS_F32, dev, 2, (const int64_t[]){T + N, d}, err);
    if (s == DS_OK) s = ds_tensor_alloc(&rope.sin, DS_F32, dev, 2, (const int64_t[]){T + N, d}, err);
    double a, sd = 0, ss = 0, rest = 0;
    const int nd = ds_flux_double_block_count(m), ns = ds_flux_single_block_count(m);
    const bool ge = c->guidance_embeds;
    if (s == DS_OK) s = ds_cuda_ctx_sync(err);
    a = now_ms();
    if (s == DS_OK)
        s = ds_flux_embed(m, &in->hidden, &in->encoder, &in->pooled, in->t, ge ? in->g : NULL, &in->img_ids,
                          &in->txt_ids, &h, &enc, &temb, &rope, err);
    if (s == DS_OK) s = ds_cuda_ctx_sync(err);
    rest += now_ms() - a;
    for (int i = 0; i < nd && s == DS_OK; i++) {
        a = now_ms();
        s = ds_flux_double_block_forward(m, i, &h, &enc, &temb, &rope, err);
        if (s == DS_OK) s = ds_cuda_ctx_sync(err);
        sd += now_ms() - a;
    }
    a = now_ms();
    if (s == DS_OK) s = ds_flux_join_streams(&enc, &h, &cat, err);
    if (s == DS_OK) s = ds_cuda_ctx_sync(err);
    rest += now_ms() - a;
    for (int j = 0; j < ns && s == DS_OK; j++) {
        a = now_ms();
        s = ds_flux_single_block_forward(m, j, &cat, &temb, &rope, err);
        if (s == DS_OK) s = ds_cuda_ctx_sync(err);
        ss += now_ms() - a;
    }
    a = now_ms();
    if (s == DS_OK) s = ds_flux_final(m, &cat, &temb, &in->out, err);
    if (s == DS_OK) s = ds_cuda_ctx_sync(err);
    rest += now_ms() - a;
    ds_tensor_free_data(&h);
    ds_tensor_free_data(&enc);
    ds_tensor_free_data(&temb);
    ds_tensor_free_data(&cat);
    ds_tensor_free_data(&rope.cos);
    ds_tensor_free_data(&rope.sin);
    *t_dbl = nd ? sd / nd : 0.0;
    *t_sgl = ns ? ss / ns : 0.0;
    *t_rest = rest;
    return s;
}

/* Time fn(ctx) `iters` times after `warmup` calls (synchronised around each); median into *med. */
typedef ds_status (*call_fn)(void *ctx, ds_err *err);
static ds_status time_calls(call_fn fn, void *ctx, int warmup, int iters, double *med, double *mn, ds_err *err) {
    double ms[MAX_ITERS];
    for (int i = -warmup; i < iters; i++) {
        DS_TRY(ds_cuda_ctx_sync(err));
        const double a = now_ms();
        DS_TRY(fn(ctx, err));
        DS_TRY(ds_cuda_ctx_sync(err));
        if (i >= 0) ms[i] = now_ms() - a;
    }
    *med = median(ms, iters);
    qsort(ms, (size_t)iters, sizeof ms[0], cmp_d);
    *mn = ms[0];
    return DS_OK;
}

/* The same call under the other settings worth comparing, same model, inputs and run: CUDA graphs off (every
 * launch from the host) and the fp32-inside attention (DS_CUDA_ATTN_EXACT, graphs on). Medians; NAN where a
 * run failed. The context is left in its defaults (tensor-core attention, graphs on). */
static void time_variants(call_fn fn, void *ctx, const opts *o, double *ms_graphs_off, double *ms_exact_attn) {
    ds_cuda_ctx *cx = ds_cuda_ctx_current();
    ds_err e = {0};
    double mn;
    ds_cuda_ctx_set_graphs(cx, false);
    if (time_calls(fn, ctx, 1, o->iters, ms_graphs_off, &mn, &e) != DS_OK) *ms_graphs_off = NAN;
    ds_cuda_ctx_set_graphs(cx, true);
    ds_cuda_ctx_set_attention(cx, DS_CUDA_ATTN_EXACT);
    if (time_calls(fn, ctx, 2, o->iters, ms_exact_attn, &mn, &e) != DS_OK) *ms_exact_attn = NAN;
    ds_cuda_ctx_set_attention(cx, DS_CUDA_ATTN_FAST);
}

typedef struct flux_call {
    ds_flux     *m;
    flux_inputs *in;
} flux_call;
static ds_status flux_call_fn(void *ctx, ds_err *err) {
    flux_call *c = ctx;
    return flux_fwd(c->m, c->in, err);
}

static void bench_flux(const opts *o, const char *dir, const char *label) {
    static const char kase[] = "flux_fwd";
    ds_err e = {0};
    ds_diffusers *d = NULL;
    const ds_component *tc = NULL;
    ds_flux *m = NULL;
    flux_inputs in;
    memset(&in, 0, sizeof in);
    const ds_placement pl = {{DS_DEVICE_CUDA, 0}, DS_BF16};
    const int64_t h2 = 64, w2 = 64, T = 512, N = h2 * w2; /* 1024x1024: latent 128x128, packed 64x64 */
    const size_t used0 = mem_used();
    const double t_load0 = now_ms();
    ds_status s = ds_diffusers_open(dir, &d, &e);
    if (s == DS_OK) {
        ds_diffusers_set_random_weights(d, 0);
        s = ds_diffusers_component(d, "transformer", &tc, &e);
    }
    if (s == DS_OK) s = ds_flux_load_on(tc, 1, (int)N, (int)T, &pl, &m, &e);
    const double load_s = (now_ms() - t_load0) / 1e3;
    if (s == DS_OK) printf("gpu_bench: %s loaded in %.1f s (random weights generated on the host)\n", label, load_s);
    if (s == DS_OK) s = flux_inputs_make(ds_flux_get_config(m), h2, w2, T, &in, &e);
    double med = NAN, mn = NAN, t_dbl = 0, t_sgl = 0, t_rest = 0;
    flux_call fc = {m, &in};
    if (s == DS_OK) s = time_calls(flux_call_fn, &fc, o->warmup, o->iters, &med, &mn, &e);
    if (s == DS_OK) s = ds_cuda_ctx_sync(&e);
    const size_t used1 = mem_used();
    double ms_nog = NAN, ms_exact = NAN;
    if (s == DS_OK) time_variants(flux_call_fn, &fc, o, &ms_nog, &ms_exact);
    if (s == DS_OK) s = flux_piecewise(m, &in, &t_dbl, &t_sgl, &t_rest, &e);
    if (s != DS_OK) {
        case_failed(kase, &e);
    } else {
        const ds_flux_config *c = ds_flux_get_config(m);
        const int nd = ds_flux_double_block_count(m), ns = ds_flux_single_block_count(m);
        const flops f = flux_flops(c, nd, ns, (double)N, (double)T, 1.0);
        const flops ff = flux_flops(c, FLUX_FULL_DOUBLE, FLUX_FULL_SINGLE, (double)N, (double)T, 1.0);
        const double tfl = (f.gemm + f.attn) / (med * 1e9);
        const double frac = tfl / g_peak_tflops;
        const double full_ms = med + (FLUX_FULL_DOUBLE - nd) * t_dbl + (FLUX_FULL_SINGLE - ns) * t_sgl;
        const double mem = mb(used1 > used0 ? used1 - used0 : 0);
        const double full_mem = mem + mb((size_t)((FLUX_FULL_DOUBLE - nd) * flux_double_bytes(c) +
                                                  (FLUX_FULL_SINGLE - ns) * flux_single_bytes(c)));
        const char *st = isnan(frac) ? "INFO" : frac >= FRAC_PEAK_TARGET ? "PASS" : "MISS";
        printf("RESULT gpu_bench %s ms=%.2f tflops=%.1f frac_peak=%.3f blocks=%d+%d tokens=%lld+%lld batch=1 "
               "min_ms=%.2f gemm_tflop=%.3f attn_tflop=%.3f mem_mb=%.0f weights_mb=%.0f act_mb=%.0f "
               "t_double_ms=%.3f t_single_ms=%.3f t_rest_ms=%.3f full_est_ms=%.1f full_est_tflops=%.1f "
               "full_tflop=%.2f full_mem_est_mb=%.0f load_s=%.1f ms_graphs_off=%.2f ms_exact_attn=%.2f "
               "target=frac_peak>=%.2f %s\n",
               kase, med, tfl, frac, nd, ns, (long long)N, (long long)T, mn, f.gemm / 1e12, f.attn / 1e12, mem,
               mb(ds_flux_weight_bytes(m)), mb(ds_flux_activation_bytes(m)), t_dbl, t_sgl, t_rest, full_ms,
               (ff.gemm + ff.attn) / (full_ms * 1e9), (ff.gemm + ff.attn) / 1e12, full_mem, load_s, ms_nog, ms_exact,
               FRAC_PEAK_TARGET, st);
        fflush(stdout);
        add_row(kase,
                "%s: %.2f ms, %.1f TFLOP/s (%.0f%% of peak, target 55%%: %s), %.0f MB; 19+38 est. %.0f ms; graphs off "
                "%.2f ms, fp32 attention %.2f ms",
                label, med, tfl, 100.0 * frac, st, mem, full_ms, ms_nog, ms_exact);
    }
    flux_inputs_free(&in);
    ds_flux_free(m);
    ds_diffusers_close(d);
}

/* ---- DiT-XL/2-256 forward ------------------------------------------------------------------------------------------ */

typedef struct dit_call {
    ds_dit   *m;
    ds_tensor x, out;
    float     t[2];
    int32_t   y[2];
} dit_call;
static ds_status dit_call_fn(void *ctx, ds_err *err) {
    dit_call *c = ctx;
    return ds_dit_forward(c->m, &c->x, c->t, c->y, &c->out, err);
}

static void bench_dit(const opts *o, const char *dir) {
    static const char kase[] = "dit_fwd";
    ds_err e = {0};
    ds_diffusers *d = NULL;
    const ds_component *tc = NULL;
    dit_call dc;
    memset(&dc, 0, sizeof dc);
    const ds_placement pl = {{DS_DEVICE_CUDA, 0}, DS_BF16};
    const int B = 2;
    const size_t used0 = mem_used();
    const double t_load0 = now_ms();
    ds_dit_config cfg;
    memset(&cfg, 0, sizeof cfg);
    ds_status s = ds_diffusers_open(dir, &d, &e);
    if (s == DS_OK) {
        ds_diffusers_set_random_weights(d, 0);
        s = ds_diffusers_component(d, "transformer", &tc, &e);
    }
    if (s == DS_OK) s = ds_dit_config_parse(tc->config, &cfg, &e);
    const int64_t S = cfg.sample_size;
    if (s == DS_OK) s = ds_dit_load_on(tc, B, (int)S, &pl, &dc.m, &e);
    const double load_s = (now_ms() - t_load0) / 1e3;
    if (s == DS_OK) s = rand_tensor(&dc.x, DS_BF16, 4, (const int64_t[]){B, cfg.in_channels, S, S}, 31, 1.0f, &e);
    if (s == DS_OK)
        s = ds_tensor_alloc(&dc.out, DS_BF16, (ds_device){DS_DEVICE_CUDA, 0}, 4,
                            (const int64_t[]){B, cfg.out_channels, S, S}, &e);
    dc.t[0] = dc.t[1] = 500.0f;
    dc.y[0] = 207;
    dc.y[1] = (int32_t)cfg.num_classes; /* the null class: the CFG batch */
    double med = NAN, mn = NAN;
    if (s == DS_OK) s = time_calls(dit_call_fn, &dc, o->warmup, o->iters, &med, &mn, &e);
    const size_t used1 = mem_used();
    double ms_nog = NAN, ms_exact = NAN;
    if (s == DS_OK) time_variants(dit_call_fn, &dc, o, &ms_nog, &ms_exact);
    if (s != DS_OK) {
        case_failed(kase, &e);
    } else {
        const double N = (double)((S / cfg.patch_size) * (S / cfg.patch_size));
        const flops f = dit_flops(&cfg, N, (double)B);
        const double tfl = (f.gemm + f.attn) / (med * 1e9), frac = tfl / g_peak_tflops;
        const double mem = mb(used1 > used0 ? used1 - used0 : 0);
        printf("RESULT gpu_bench %s ms=%.3f tflops=%.1f frac_peak=%.3f batch=%d tokens=%.0f layers=%lld min_ms=%.3f "
               "gemm_tflop=%.4f attn_tflop=%.4f mem_mb=%.0f weights_mb=%.0f act_mb=%.0f load_s=%.1f "
               "ms_graphs_off=%.3f ms_exact_attn=%.3f INFO\n",
               kase, med, tfl, frac, B, N, (long long)cfg.num_layers, mn, f.gemm / 1e12, f.attn / 1e12, mem,
               mb(ds_dit_weight_bytes(dc.m)), mb(ds_dit_activation_bytes(dc.m)), load_s, ms_nog, ms_exact);
        fflush(stdout);
        add_row(kase, "DiT-XL/2-256 batch 2: %.3f ms, %.1f TFLOP/s (%.0f%% of peak), %.0f MB; graphs off %.3f ms, fp32 "
                "attention %.3f ms", med, tfl, 100.0 * frac, mem, ms_nog, ms_exact);
    }
    ds_tensor_free_data(&dc.x);
    ds_tensor_free_data(&dc.out);
    ds_dit_free(dc.m);
    ds_diffusers_close(d);
}

/* ---- cached FLUX-shaped generation ---------------------------------------------------------------------------------- */

/* A block runner around another (the cache's): every block forward is synchronised and timed, per step. */
typedef struct wrap_runner wrap_runner;
typedef struct wrap_entry {
    ds_block_fn  fn;
    void        *model;
    wrap_runner *w;
} wrap_entry;
struct wrap_runner {
    const ds_block_runner *inner;
    ds_block_runner        self;
    wrap_entry             ent[4];
    double                *block_ms; /* [cap] */
    int                   *blocks;   /* [cap] block forwards run per step */
    int                    cap, cur;
};

static ds_status wr_block(void *model, int i, ds_block_state *st, ds_err *err) {
    wrap_entry *e = model;
    DS_TRY(ds_cuda_ctx_sync(err));
    const double a = now_ms();
    DS_TRY(e->fn(e->model, i, st, err));
    DS_TRY(ds_cuda_ctx_sync(err));
    e->w->block_ms[e->w->cur] += now_ms() - a;
    e->w->blocks[e->w->cur]++;
    return DS_OK;
}

static ds_status wr_begin(void *ctx, const ds_block_request *req, ds_err *err) {
    wrap_runner *w = ctx;
    if (req->steps > w->cap) return DS_FAIL(err, DS_ERR_INVALID_ARG, "timing runner: %d steps > %d", req->steps, w->cap);
    memset(w->block_ms, 0, sizeof(double) * (size_t)w->cap);
    memset(w->blocks, 0, sizeof(int) * (size_t)w->cap);
    return w->inner->begin(w->inner->ctx, req, err);
}

static ds_status wr_run(void *ctx, const ds_block_list *lists, int n, ds_block_state *st, int step, int call,
                        ds_err *err) {
    wrap_runner *w = ctx;
    if (n > 4 || step < 0 || step >= w->cap) return DS_FAIL(err, DS_ERR_INTERNAL, "timing runner: step/lists");
    ds_block_list l2[4];
    for (int l = 0; l < n; l++) {
        w->ent[l] = (wrap_entry){lists[l].forward, lists[l].model, w};
        l2[l] = lists[l];
        l2[l].forward = wr_block;
        l2[l].model = &w->ent[l];
        l2[l].graphs = NULL; /* the timing wrapper synchronises around every block: never captured */
    }
    w->cur = step;
    return w->inner->run(w->inner->ctx, l2, n, st, step, call, err);
}

static void wr_step_done(void *ctx, int step, int steps) {
    wrap_runner *w = ctx;
    if (w->inner->step_done) w->inner->step_done(w->inner->ctx, step, steps);
}

static void bench_gen(const opts *o, const char *dir, const char *label, const char *vae_note) {
    static const char kase[] = "flux_gen";
    ds_err e = {0};
    ds_pipeline *p = NULL;
    ds_cache *cache = NULL;
    ds_cache_stats st;
    memset(&st, 0, sizeof st);
    ds_gen_result res;
    memset(&res, 0, sizeof res);
    const int steps = o->steps, T = 512;
    float *pe = NULL, *pp = NULL;
    double *blk = calloc((size_t)steps, sizeof(double));
    int *nblk = calloc((size_t)steps, sizeof(int));
    bool *cached = calloc((size_t)steps, sizeof(bool));
    double *v1 = calloc((size_t)steps, sizeof(double)), *v2 = calloc((size_t)steps, sizeof(double));
    double *v3 = calloc((size_t)steps, sizeof(double));
    ds_status s = (blk && nblk && cached && v1 && v2 && v3) ? DS_OK : DS_FAIL(&e, DS_ERR_OOM, "step arrays");

    /* the cache config: Fn 1, Bn 0, static mask computing steps 0-7 and every 4th after (the last included) */
    char json[8192];
    int len = snprintf(json, sizeof json,
                       "{\"Fn_compute_blocks\": 1, \"Bn_compute_blocks\": 0, \"residual_diff_threshold\": 0.08, "
                       "\"max_warmup_steps\": 8, \"steps_computation_policy\": \"static\", "
                       "\"steps_computation_mask\": [");
    for (int i = 0; i < steps && len < (int)sizeof json - 16; i++)
        len += snprintf(json + len, sizeof json - (size_t)len, "%s%d", i ? ", " : "", i < 8 || (i - 8) % 4 == 3);
    snprintf(json + len, sizeof json - (size_t)len, "]}");
    ds_cache_config cfg;
    ds_cache_config_default(&cfg);
    if (s == DS_OK) s = ds_cache_config_parse_json(json, &cfg, &e);
    if (s == DS_OK) s = ds_cache_create(&cfg, &cache, &e);

    ds_pipeline_opts po;
    memset(&po, 0, sizeof po);
    po.max_images = 1;
    po.max_width = po.max_height = 1024;
    po.max_txt_tokens = T;
    po.random_weights = true;
    po.weights_seed = 0;
    po.placement = (ds_placement){{DS_DEVICE_CUDA, 0}, DS_BF16};
    const size_t used0 = mem_used();
    const double t_load0 = now_ms();
    if (s == DS_OK) s = ds_pipeline_load(dir, &po, &p, &e);
    const double load_s = (now_ms() - t_load0) / 1e3;
    if (s == DS_OK) printf("gpu_bench: pipeline (%s) loaded in %.1f s\n", label, load_s);
    /* prompt embeddings of the transformer's widths (T5 joint_attention_dim, CLIP pooled_projection_dim) */
    int64_t jd = 0, pd = 0;
    if (s == DS_OK) {
        ds_config *tcfg = NULL;
        ds_flux_config fc;
        char path[1200];
        s = pjoin(path, sizeof path, dir, "transformer/config.json", &e);
        if (s == DS_OK) s = ds_config_open(path, &tcfg, &e);
        if (s == DS_OK) s = ds_flux_config_parse(tcfg, &fc, &e);
        if (s == DS_OK) {
            jd = fc.joint_dim;
            pd = fc.pooled_dim;
        }
        ds_config_close(tcfg);
    }
    pe = malloc(sizeof(float) * (size_t)(T * jd));
    pp = malloc(sizeof(float) * (size_t)pd);
    if (s == DS_OK && (!pe || !pp)) s = DS_FAIL(&e, DS_ERR_OOM, "prompt embeddings");
    if (s == DS_OK) {
        ds_rng_normal(41, 0, pe, T * jd);
        ds_rng_normal(42, 0, pp, pd);
    }
    ds_tensor pet = ds_tensor_f32(pe, 3, 1, (int64_t)T, jd), ppt = ds_tensor_f32(pp, 2, 1, pd);
    wrap_runner w;
    memset(&w, 0, sizeof w);
    double wall = NAN;
    if (s == DS_OK) {
        const ds_block_runner *inner = ds_cache_runner(cache);
        w.inner = inner;
        w.block_ms = blk;
        w.blocks = nblk;
        w.cap = steps;
        w.self = (ds_block_runner){&w, inner->split_lists, wr_begin, wr_run, wr_step_done};
        ds_gen_params g;
        memset(&g, 0, sizeof g);
        g.width = g.height = 1024;
        g.steps = steps;
        g.guidance_scale = 3.5f;
        g.true_cfg_scale = NAN;
        g.seed = 1;
        g.prompt_embeds = &pet;
        g.pooled_prompt_embeds = &ppt;
        g.runner = &w.self;
        const double a = now_ms();
        s = ds_pipeline_generate(p, &g, &res, &e);
        wall = now_ms() - a;
    }
    const size_t used1 = mem_used();
    if (s == DS_OK) s = ds_cache_get_stats(cache, &st, &e);
    if (s == DS_OK && (st.n_lists < 1 || st.steps != steps))
        s = DS_FAIL(&e, DS_ERR_INTERNAL, "cache stats: %d lists, %d steps", st.n_lists, st.steps);
    if (s != DS_OK) {
        case_failed(kase, &e);
    } else {
        const ds_cache_branch_stats *b0 = &st.lists[0].branch[0];
        for (int k = 0; k < b0->n_cached; k++)
            if (b0->cached_steps[k] >= 0 && b0->cached_steps[k] < steps) cached[b0->cached_steps[k]] = true;
        int nf = 0, nc = 0;
        for (int i = 1; i < steps; i++) /* step 0 holds one-time allocations */
            if (!cached[i]) {
                v1[nf] = st.step_ms[i];
                v2[nf] = blk[i];
                v3[nf++] = st.step_ms[i] - blk[i];
            }
        const double full_step = median(v1, nf), block = median(v2, nf), nonblock = median(v3, nf);
        for (int i = 0; i < steps; i++)
            if (cached[i]) v1[nc++] = st.step_ms[i];
        const double cached_step = median(v1, nc);
        const int nb = st.lists[0].n_blocks, fb = cfg.Fn_compute_blocks + cfg.Bn_compute_blocks;
        const double formula = nonblock + (double)fb / nb * block;
        const double ideal = steps * nonblock + (double)st.blocks_computed / nb * block;
        const double uncached = steps * full_step;
        const char *stt = nc == 0 ? "MISS" : cached_step <= CACHE_STEP_TOL * formula ? "PASS" : "MISS";
        printf("RESULT gpu_bench %s cached_step_ms=%.2f bound_ms=%.2f denoise_ms=%.1f ideal_ms=%.1f "
               "formula_ms=%.2f full_step_ms=%.2f block_ms=%.2f nonblock_ms=%.2f steps=%d computed_steps=%d "
               "cached_steps=%d n_blocks=%d blocks_computed=%lld blocks_full=%lld speedup_estimate=%.2f "
               "measured_speedup=%.2f uncached_est_ms=%.1f decode_ms=%.1f wall_ms=%.1f mem_mb=%.0f blocks=%d+%d "
               "vae_mid_attention=%d target=cached_step<=%.2fxformula %s\n",
               kase, cached_step, CACHE_STEP_TOL * formula, st.denoise_ms, ideal, formula, full_step, block, nonblock,
               steps, steps - nc, nc, nb, (long long)st.blocks_computed, (long long)st.blocks_full,
               st.speedup_estimate, uncached / st.denoise_ms, uncached, res.decode_ms, wall, mb(used1 > used0 ? used1 - used0 : 0), o->nd,
               o->ns, vae_note ? 0 : 1, CACHE_STEP_TOL, stt);
        printf("gpu_bench: %s per step (ms): ", kase);
        for (int i = 0; i < steps; i++)
            printf("%s%d%s:%.1f/%.1f", i ? " " : "", i, cached[i] ? "c" : "", st.step_ms[i], blk[i]);
        printf("  (step/blocks; c = cached)\n");
        if (vae_note) printf("gpu_bench: NOTE: %s\n", vae_note);
        fflush(stdout);
        add_row(kase, "%d steps, %d cached: denoise %.0f ms vs ideal %.0f ms; cached step %.1f ms vs formula %.1f ms "
                      "(+10%%: %s); decode %.0f ms",
                steps, nc, st.denoise_ms, ideal, cached_step, formula, stt, res.decode_ms);
    }
    ds_cache_stats_free(&st);
    ds_gen_result_free(&res);
    ds_cache_free(cache);
    ds_pipeline_free(p);
    free(pe);
    free(pp);
    free(blk);
    free(nblk);
    free(cached);
    free(v1);
    free(v2);
    free(v3);
}

/* Can the CUDA attention run one head of width d (the FLUX/SD VAE's mid-block attention has d = 512)? */
static bool cuda_attention_supports(int64_t d) {
    ds_err e = {0};
    ds_tensor q = {0}, k = {0}, v = {0}, o = {0};
    const ds_device dev = {DS_DEVICE_CUDA, 0};
    const int64_t shp[4] = {1, 4, 1, d};
    ds_status s = ds_tensor_alloc(&q, DS_BF16, dev, 4, shp, &e);
    if (s == DS_OK) s = ds_tensor_alloc(&k, DS_BF16, dev, 4, shp, &e);
    if (s == DS_OK) s = ds_tensor_alloc(&v, DS_BF16, dev, 4, shp, &e);
    if (s == DS_OK) s = ds_tensor_alloc(&o, DS_BF16, dev, 4, shp, &e);
    if (s == DS_OK) s = ds_cuda_op_attention(&o, &q, &k, &v, NULL, 0.0f, &e);
    if (s == DS_OK) s = ds_cuda_ctx_sync(&e);
    ds_tensor_free_data(&q);
    ds_tensor_free_data(&k);
    ds_tensor_free_data(&v);
    ds_tensor_free_data(&o);
    if (s != DS_OK) printf("gpu_bench: CUDA attention with head dim %lld: %s\n", (long long)d, e.msg);
    return s == DS_OK;
}

/* ---- main ------------------------------------------------------------------------------------------------------------ */

static int usage(void) {
    fprintf(stderr, "usage: gpu_bench [--configs DIR] [--flux-blocks ND,NS|full] [--iters N] [--warmup N] "
                    "[--steps N] [--gemm N] [--cases gemm,flux,dit,gen] [--keep-tmp]\n");
    return 2;
}

static bool parse_blocks(const char *s, int *nd, int *ns) {
    if (!strcmp(s, "full")) {
        *nd = FLUX_FULL_DOUBLE;
        *ns = FLUX_FULL_SINGLE;
        return true;
    }
    return sscanf(s, "%d,%d", nd, ns) == 2 && *nd >= 0 && *ns >= 0 && *nd + *ns >= 1 && *nd <= FLUX_FULL_DOUBLE &&
           *ns <= FLUX_FULL_SINGLE;
}

int main(int argc, char **argv) {
    opts o = {DS_BENCH_CONFIGS_DIR, 2, 4, 5, 2, 28, 8192, true, true, true, true, false};
    const char *env = getenv("DS_BENCH_FLUX_BLOCKS");
    if (env && *env && !parse_blocks(env, &o.nd, &o.ns)) {
        fprintf(stderr, "gpu_bench: DS_BENCH_FLUX_BLOCKS='%s': expected ND,NS or full\n", env);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--keep-tmp")) {
            o.keep_tmp = true;
            continue;
        }
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--configs")) o.configs = v;
        else if (!strcmp(a, "--flux-blocks")) {
            if (!parse_blocks(v, &o.nd, &o.ns)) return usage();
        } else if (!strcmp(a, "--iters")) o.iters = atoi(v);
        else if (!strcmp(a, "--warmup")) o.warmup = atoi(v);
        else if (!strcmp(a, "--steps")) o.steps = atoi(v);
        else if (!strcmp(a, "--gemm")) o.gemm = atoi(v);
        else if (!strcmp(a, "--cases")) {
            o.c_gemm = strstr(v, "gemm") != NULL;
            o.c_flux = strstr(v, "flux") != NULL;
            o.c_dit = strstr(v, "dit") != NULL;
            o.c_gen = strstr(v, "gen") != NULL;
        } else return usage();
    }
    if (o.iters < 1 || o.iters > MAX_ITERS || o.warmup < 0 || o.steps < 9 || o.steps > 1000 || o.gemm < 64)
        return usage();

    /* no device: SKIP, exit 77 (as gpu_require_device) */
    ds_err e = {0};
    int ndev = 0;
    ds_status s = ds_device_cuda_count(&ndev, &e);
    const char *why = s != DS_OK ? (e.msg[0] ? e.msg : ds_status_name(s))
                      : ndev <= 0 ? "the CUDA runtime reports 0 devices" : NULL;
    ds_cuda_ctx *ctx = NULL;
    if (!why && (ds_cuda_ctx_create(0, 0, &ctx, &e) != DS_OK || ds_cuda_ctx_bind(ctx, &e) != DS_OK)) why = e.msg;
    if (why) {
        printf("SKIP: no CUDA device (%s)\n", why);
        printf("RESULT gpu_bench all ms=- tflops=- SKIP\n");
        ds_cuda_ctx_destroy(ctx);
        return 77;
    }
    char name[256];
    ds_device_cuda_name(0, name, sizeof name);
    printf("gpu_bench: device 0 = %s; bf16; FLUX blocks %d+%d%s; iters %d after %d warm-up; configs %s\n", name, o.nd,
           o.ns, o.nd == FLUX_FULL_DOUBLE && o.ns == FLUX_FULL_SINGLE ? " (full FLUX.1-dev)" : " (reduced: see *_est)",
           o.iters, o.warmup, o.configs);
    printf("RESULT gpu_bench device name=%s INFO\n", field(name, (char[256]){0}, 256));
    fflush(stdout);

    if (o.c_gemm) bench_gemm(&o);

    char flux_src[1024], dit_dir[1024], flux_dir[1100] = "", label[96];
    snprintf(flux_src, sizeof flux_src, "%s/flux1-dev", o.configs);
    snprintf(dit_dir, sizeof dit_dir, "%s/dit-xl-2-256", o.configs);
    const bool full = o.nd == FLUX_FULL_DOUBLE && o.ns == FLUX_FULL_SINGLE;
    snprintf(label, sizeof label, "FLUX.1-dev 1024x1024, %d double + %d single blocks%s", o.nd, o.ns,
             full ? "" : " (reduced)");
    const char *vae_note = NULL;
    bool tmp_made = false;
    if (o.c_flux || o.c_gen) {
        const bool vae_ok = !o.c_gen || cuda_attention_supports(512);
        if (!vae_ok)
            vae_note = "the CUDA attention cannot run the VAE's 512-wide mid-block head: flux_gen decodes with the "
                       "VAE mid-block attention switched off (mid_block_add_attention = false); decode_ms is low";
        if (full && vae_ok) {
            snprintf(flux_dir, sizeof flux_dir, "%s", flux_src);
        } else if (make_flux_dir(flux_src, o.nd, o.ns, vae_ok, flux_dir, sizeof flux_dir, &e) != DS_OK) {
            case_failed("flux_config", &e);
            flux_dir[0] = 0;
        } else {
            tmp_made = true;
        }
    }
    if (o.c_flux && flux_dir[0]) bench_flux(&o, flux_dir, label);
    if (o.c_dit) bench_dit(&o, dit_dir);
    if (o.c_gen && flux_dir[0]) bench_gen(&o, flux_dir, label, vae_note);
    if (tmp_made && !o.keep_tmp) remove_flux_dir(flux_dir);

    printf("\n| case | result |\n|---|---|\n");
    for (int i = 0; i < g_nrows; i++) printf("| %s | %s |\n", g_rows[i].kase, g_rows[i].text);
    printf("\nFLOPs: models.md §10 (linear layers 2·M·K·N incl. adaLN/embedders/final + attention core 4·S²·D per "
           "block); timing: sync + clock around each call, median of %d after %d warm-up.\n",
           o.iters, o.warmup);
    ds_cuda_ctx_destroy(ctx);
    return g_failures ? 1 : 0;
}
