/* scheduler.c - DDIM, DPM-Solver++ (multistep, order <= 2) and flow-match Euler samplers, matching diffusers
 * 0.42.1 operation for operation (see scheduler.h). Written from the diffusers semantics; the float32 /
 * float64 split below mirrors where diffusers uses torch float32 tensors, numpy float64 arrays, numpy float32
 * arrays or Python floats. */
#pragma STDC FP_CONTRACT OFF

#include "scheduler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

enum { PRED_EPSILON, PRED_SAMPLE, PRED_V };
enum { SPACING_LEADING, SPACING_TRAILING, SPACING_LINSPACE };

struct ds_scheduler {
    ds_sched_kind kind;
    int64_t       max_numel;
    int           T; /* num_train_timesteps */

    /* VP (DDIM, DPM) */
    float  *alphas_cumprod; /* [T] */
    float  *vp_sigmas;      /* [T] sqrt((1-a)/a), DPM */
    int     pred;
    int     spacing;
    int64_t steps_offset;
    float   final_alpha_cumprod; /* DDIM */
    bool    clip_sample;         /* DDIM */
    float   clip_range;          /* DDIM */
    int     solver_order;        /* DPM: 1 or 2 */
    bool    heun, lower_order_final, euler_at_final, final_sigma_min;
    double  lambda_min_clipped;

    /* flow */
    double  shift, base_shift, max_shift;
    int64_t base_seq, max_seq;
    bool    dynamic, linear_shift;
    double  sigma_min, sigma_max; /* of the training grid, as Python floats */

    /* schedule of the current run */
    int    n;           /* len(timesteps) */
    int    n_requested; /* num_inference_steps as passed (DDIM's step ratio uses it) */
    int   *t_int;       /* [T+1] integer timesteps (VP) */
    float *timesteps;   /* [T+1] */
    float *sigmas;      /* [T+2] */
    double *scratch;    /* [T+2] float64 work space for set_timesteps */

    /* DPM multistep state */
    float  *m_prev; /* [max_numel] previous x0 prediction */
    int     next_i;
    int64_t run_n;
    int     lower_order_nums;
};

const char *ds_sched_kind_name(ds_sched_kind kind) {
    switch (kind) {
    case DS_SCHED_AUTO: return "auto";
    case DS_SCHED_DDIM: return "ddim";
    case DS_SCHED_DPMPP_2M: return "dpmpp_2m";
    case DS_SCHED_FLOW_EULER: return "flow_euler";
    }
    return "unknown";
}

/* ---- numeric helpers reproducing numpy / torch ----------------------------------------------- */

/* numpy.linspace(start, stop, n) in float64: y_i = i*step + start, last = stop. */
static void np_linspace(double start, double stop, int n, double *out) {
    int    div   = n - 1;
    double delta = stop - start;
    if (div > 0) {
        double step = delta / div;
        for (int i = 0; i < n; i++) {
            double y = step == 0.0 ? ((double)i / div) * delta : (double)i * step;
            out[i]   = y + start;
        }
        out[n - 1] = stop;
    } else {
        for (int i = 0; i < n; i++) out[i] = (double)i * delta + start;
    }
}

/* numpy.arange(start, stop, step) in float64 (step < 0 here): length ceil((stop-start)/step); values
 * start, start+step, then start + i*((start+step) - start) as numpy's fill does. Returns the length. */
static int np_arange_len(double start, double stop, double step) {
    double len = ceil((stop - start) / step);
    return len > 0 ? (int)len : 0;
}
static double np_arange_at(double start, double step, int i) {
    if (i == 0) return start;
    double second = start + step;
    if (i == 1) return second;
    return start + (double)i * (second - start);
}

/* torch.linspace(start, end, steps, dtype=float32) on CPU: float step, two halves, fused multiply-add (torch's
 * CPU kernels are built with FMA contraction on AVX2/AVX-512). */
static void torch_linspace_f32(double start_d, double end_d, int steps, float *out) {
    float   start = (float)start_d, end = (float)end_d;
    float   step  = (end - start) / (float)(steps - 1);
    int64_t half  = steps / 2;
    for (int64_t i = 0; i < steps; i++)
        out[i] = i < half ? fmaf(step, (float)i, start) : fmaf(-step, (float)(steps - i - 1), end);
}

/* torch.cumprod on CPU float32: double accumulator, rounded to float at every element. */
static void torch_cumprod_f32(const float *x, int n, float *out) {
    double acc = 1.0;
    for (int i = 0; i < n; i++) {
        acc *= (double)x[i];
        out[i] = (float)acc;
    }
}

/* ---- config reading ---------------------------------------------------------------------------- */

typedef struct {
    const ds_config *cfg;
    ds_err          *err;
} reader;

static ds_status rd_int(reader *r, const char *key, int64_t def, int64_t *out) {
    return ds_config_get_int(r->cfg, key, def, out, r->err);
}
static ds_status rd_float(reader *r, const char *key, double def, double *out) {
    return ds_config_get_float(r->cfg, key, def, out, r->err);
}
static ds_status rd_bool(reader *r, const char *key, bool def, bool *out) {
    return ds_config_get_bool(r->cfg, key, def, out, r->err);
}
static ds_status rd_str(reader *r, const char *key, const char *def, const char **out) {
    return ds_config_get_string(r->cfg, key, def, out, r->err);
}

/* The string `key` must be one of names[0..n) (NULL-terminated list); its index into *out. */
static ds_status rd_enum(reader *r, const char *key, const char *def, const char *const *names, int *out) {
    const char *v = NULL;
    DS_TRY(rd_str(r, key, def, &v));
    for (int i = 0; names[i]; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return DS_OK;
        }
    }
    return DS_FAIL(r->err, DS_ERR_UNSUPPORTED, "%s: %s '%s' is not supported", ds_config_label(r->cfg), key, v);
}

/* A boolean feature ditserve does not implement: must be false (or absent). */
static ds_status rd_must_be_false(reader *r, const char *key) {
    bool v = false;
    DS_TRY(rd_bool(r, key, false, &v));
    if (v) return DS_FAIL(r->err, DS_ERR_UNSUPPORTED, "%s: %s true is not supported", ds_config_label(r->cfg), key);
    return DS_OK;
}

/* ---- VP noise schedule -------------------------------------------------------------------------- */

static double alpha_bar_cos(double t) {
    double c = cos((t + 0.008) / 1.008 * M_PI / 2);
    return c * c;
}

/* rescale_zero_terminal_snr on float32 betas (torch float32 ops). */
static void rescale_zero_snr(float *betas, float *tmp, int T) {
    if (T < 1) return; /* callers guarantee T >= 1 (this also tells the compiler tmp[T - 1] is written) */
    tmp[0] = 0.0f;     /* written by the cumprod below; set here so -O3 sees it initialised */
    for (int i = 0; i < T; i++) betas[i] = 1.0f - betas[i];
    torch_cumprod_f32(betas, T, tmp);
    for (int i = 0; i < T; i++) tmp[i] = sqrtf(tmp[i]);
    float a0 = tmp[0], aT = tmp[T - 1];
    for (int i = 0; i < T; i++) tmp[i] = tmp[i] - aT;
    float scale = a0 / (a0 - aT);
    for (int i = 0; i < T; i++) tmp[i] = tmp[i] * scale;
    for (int i = 0; i < T; i++) tmp[i] = tmp[i] * tmp[i];
    betas[0] = 1.0f - tmp[0];
    for (int i = 1; i < T; i++) betas[i] = 1.0f - tmp[i] / tmp[i - 1];
}

static ds_status init_vp(ds_scheduler *s, reader *r) {
    const char *lbl = ds_config_label(r->cfg);
    double      beta_start = 0, beta_end = 0;
    DS_TRY(rd_float(r, "beta_start", 0.0001, &beta_start));
    DS_TRY(rd_float(r, "beta_end", 0.02, &beta_end));
    static const char *const schedules[] = {"linear", "scaled_linear", "squaredcos_cap_v2", NULL};
    int                      sched       = 0;
    DS_TRY(rd_enum(r, "beta_schedule", "linear", schedules, &sched));
    bool rescale = false;
    DS_TRY(rd_bool(r, "rescale_betas_zero_snr", false, &rescale));

    const int T     = s->T;
    float    *betas = malloc(sizeof(float) * (size_t)T);
    float    *tmp   = malloc(sizeof(float) * (size_t)T);
    s->alphas_cumprod = malloc(sizeof(float) * (size_t)T);
    s->vp_sigmas      = malloc(sizeof(float) * (size_t)T);
    if (!betas || !tmp || !s->alphas_cumprod || !s->vp_sigmas) {
        free(betas);
        free(tmp);
        return DS_FAIL(r->err, DS_ERR_OOM, "scheduler: out of memory for %d-step tables", T);
    }

    const cJSON *tb = cJSON_GetObjectItemCaseSensitive(ds_config_root(r->cfg), "trained_betas");
    ds_status    st = DS_OK;
    if (tb && !cJSON_IsNull(tb)) {
        if (!cJSON_IsArray(tb)) {
            st = DS_FAIL(r->err, DS_ERR_FORMAT, "%s: key 'trained_betas': expected an array of numbers", lbl);
        } else if (cJSON_GetArraySize(tb) != T) {
            st = DS_FAIL(r->err, DS_ERR_UNSUPPORTED, "%s: trained_betas has %d entries, num_train_timesteps is %d",
                         lbl, cJSON_GetArraySize(tb), T);
        } else {
            int i = 0;
            for (const cJSON *e = tb->child; e; e = e->next, i++) {
                if (!cJSON_IsNumber(e)) {
                    st = DS_FAIL(r->err, DS_ERR_FORMAT, "%s: key 'trained_betas': entry %d is not a number", lbl, i);
                    break;
                }
                betas[i] = (float)e->valuedouble;
            }
        }
    } else if (sched == 0) {
        torch_linspace_f32(beta_start, beta_end, T, betas);
    } else if (sched == 1) {
        torch_linspace_f32(pow(beta_start, 0.5), pow(beta_end, 0.5), T, betas);
        for (int i = 0; i < T; i++) betas[i] = betas[i] * betas[i];
    } else {
        for (int i = 0; i < T; i++) {
            double t1 = (double)i / T, t2 = (double)(i + 1) / T;
            double b  = 1 - alpha_bar_cos(t2) / alpha_bar_cos(t1);
            betas[i]  = (float)(b < 0.999 ? b : 0.999);
        }
    }
    if (st == DS_OK) {
        if (rescale) rescale_zero_snr(betas, tmp, T);
        for (int i = 0; i < T; i++) betas[i] = 1.0f - betas[i];
        torch_cumprod_f32(betas, T, s->alphas_cumprod);
        if (rescale && s->kind == DS_SCHED_DPMPP_2M) s->alphas_cumprod[T - 1] = 0x1p-24f;
        for (int i = 0; i < T; i++) {
            float a         = s->alphas_cumprod[i];
            s->vp_sigmas[i] = sqrtf((1.0f - a) / a);
        }
    }
    free(betas);
    free(tmp);
    if (st != DS_OK) return st;

    static const char *const preds[] = {"epsilon", "sample", "v_prediction", NULL};
    DS_TRY(rd_enum(r, "prediction_type", "epsilon", preds, &s->pred));
    DS_TRY(rd_must_be_false(r, "thresholding"));
    static const char *const spacings[] = {"leading", "trailing", "linspace", NULL};
    DS_TRY(rd_enum(r, "timestep_spacing", s->kind == DS_SCHED_DDIM ? "leading" : "linspace", spacings, &s->spacing));
    DS_TRY(rd_int(r, "steps_offset", 0, &s->steps_offset));
    if (s->steps_offset < 0 || s->steps_offset >= T)
        return DS_FAIL(r->err, DS_ERR_UNSUPPORTED, "%s: steps_offset %lld is out of range [0, %d)", lbl,
                       (long long)s->steps_offset, T);
    return DS_OK;
}

static ds_status init_ddim(ds_scheduler *s, reader *r) {
    bool   set_alpha_to_one = true;
    double range            = 1.0;
    DS_TRY(rd_bool(r, "clip_sample", true, &s->clip_sample));
    DS_TRY(rd_float(r, "clip_sample_range", 1.0, &range));
    DS_TRY(rd_bool(r, "set_alpha_to_one", true, &set_alpha_to_one));
    s->clip_range          = (float)range;
    s->final_alpha_cumprod = set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
    return DS_OK;
}

static ds_status init_dpm(ds_scheduler *s, reader *r) {
    const char *lbl = ds_config_label(r->cfg);
    int64_t     order = 2;
    DS_TRY(rd_int(r, "solver_order", 2, &order));
    if (order != 1 && order != 2)
        return DS_FAIL(r->err, DS_ERR_UNSUPPORTED, "%s: solver_order %lld is not supported (1 or 2)", lbl,
                       (long long)order);
    s->solver_order = (int)order;
    static const char *const algos[] = {"dpmsolver++", "deis", NULL}; /* diffusers maps deis to dpmsolver++ */
    int                      algo    = 0;
    DS_TRY(rd_enum(r, "algorithm_type", "dpmsolver++", algos, &algo));
    static const char *const solvers[] = {"midpoint", "heun", "logrho", "bh1", "bh2", NULL};
    int                      solver    = 0;
    DS_TRY(rd_enum(r, "solver_type", "midpoint", solvers, &solver));
    s->heun = solver == 1; /* logrho/bh1/bh2 become midpoint in diffusers */
    DS_TRY(rd_bool(r, "lower_order_final", true, &s->lower_order_final));
    DS_TRY(rd_bool(r, "euler_at_final", false, &s->euler_at_final));
    static const char *const finals[] = {"zero", "sigma_min", NULL};
    int                      fin      = 0;
    DS_TRY(rd_enum(r, "final_sigmas_type", "zero", finals, &fin));
    s->final_sigma_min = fin == 1;
    DS_TRY(rd_float(r, "lambda_min_clipped", -INFINITY, &s->lambda_min_clipped));
    const char *vt = NULL;
    DS_TRY(rd_str(r, "variance_type", NULL, &vt));
    if (vt) return DS_FAIL(r->err, DS_ERR_UNSUPPORTED, "%s: variance_type '%s' is not supported (null only)", lbl, vt);
    static const char *const flags[] = {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                                        "use_lu_lambdas", "use_flow_sigmas"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) DS_TRY(rd_must_be_false(r, flags[i]));
    s->m_prev = malloc(sizeof(float) * (size_t)s->max_numel);
    if (!s->m_prev)
        return DS_FAIL(r->err, DS_ERR_OOM, "scheduler: out of memory for a %lld-element DPM history",
                       (long long)s->max_numel);
    return DS_OK;
}

static ds_status init_flow(ds_scheduler *s, reader *r) {
    const char *lbl = ds_config_label(r->cfg);
    DS_TRY(rd_float(r, "shift", 1.0, &s->shift));
    DS_TRY(rd_bool(r, "use_dynamic_shifting", false, &s->dynamic));
    DS_TRY(rd_float(r, "base_shift", 0.5, &s->base_shift));
    DS_TRY(rd_float(r, "max_shift", 1.15, &s->max_shift));
    DS_TRY(rd_int(r, "base_image_seq_len", 256, &s->base_seq));
    DS_TRY(rd_int(r, "max_image_seq_len", 4096, &s->max_seq));
    static const char *const shifts[] = {"exponential", "linear", NULL};
    int                      ts       = 0;
    DS_TRY(rd_enum(r, "time_shift_type", "exponential", shifts, &ts));
    s->linear_shift = ts == 1;
    double terminal = 0;
    DS_TRY(rd_float(r, "shift_terminal", 0.0, &terminal));
    if (terminal != 0.0)
        return DS_FAIL(r->err, DS_ERR_UNSUPPORTED, "%s: shift_terminal %g is not supported (null only)", lbl, terminal);
    static const char *const flags[] = {"invert_sigmas", "stochastic_sampling", "use_karras_sigmas",
                                        "use_exponential_sigmas", "use_beta_sigmas"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) DS_TRY(rd_must_be_false(r, flags[i]));
    if (!s->dynamic && !(s->shift > 0))
        return DS_FAIL(r->err, DS_ERR_UNSUPPORTED, "%s: shift %g is not supported (must be > 0)", lbl, s->shift);

    /* The constructor's training grid: sigma_j = ((j+1) as float32) / T, statically shifted unless dynamic. */
    float sig_max = (float)s->T / (float)s->T, sig_min = 1.0f / (float)s->T;
    if (!s->dynamic) {
        float sh = (float)s->shift, shm1 = (float)(s->shift - 1);
        sig_max  = sh * sig_max / (1.0f + shm1 * sig_max);
        sig_min  = sh * sig_min / (1.0f + shm1 * sig_min);
    }
    s->sigma_max = sig_max;
    s->sigma_min = sig_min;
    return DS_OK;
}

ds_status ds_scheduler_init_from_config(const ds_config *cfg, ds_sched_kind kind, int64_t max_numel,
                                        ds_scheduler **out, ds_err *err) {
    if (!cfg || !out) return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler: NULL config or output pointer");
    *out = NULL;
    if (max_numel < 1)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler: max_numel %lld must be >= 1", (long long)max_numel);
    if ((int)kind < (int)DS_SCHED_AUTO || (int)kind > (int)DS_SCHED_FLOW_EULER)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler: bad kind %d", (int)kind);
    reader      r   = {cfg, err};
    const char *lbl = ds_config_label(cfg);

    if (kind == DS_SCHED_AUTO) {
        const char *cls = NULL;
        DS_TRY(rd_str(&r, "_class_name", NULL, &cls));
        if (!cls) return DS_FAIL(err, DS_ERR_FORMAT, "%s: no _class_name (pass an explicit scheduler kind)", lbl);
        if (strcmp(cls, "DDIMScheduler") == 0) kind = DS_SCHED_DDIM;
        else if (strcmp(cls, "DPMSolverMultistepScheduler") == 0) kind = DS_SCHED_DPMPP_2M;
        else if (strcmp(cls, "FlowMatchEulerDiscreteScheduler") == 0) kind = DS_SCHED_FLOW_EULER;
        else
            return DS_FAIL(err, DS_ERR_UNSUPPORTED,
                           "%s: _class_name '%s' is not supported (DDIMScheduler, DPMSolverMultistepScheduler, "
                           "FlowMatchEulerDiscreteScheduler)",
                           lbl, cls);
    }

    int64_t T = 0;
    DS_TRY(rd_int(&r, "num_train_timesteps", 1000, &T));
    if (T < 2 || T > 100000)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "%s: num_train_timesteps %lld is not supported (2..100000)", lbl,
                       (long long)T);

    ds_scheduler *s = calloc(1, sizeof *s);
    if (!s) return DS_FAIL(err, DS_ERR_OOM, "scheduler: out of memory");
    s->kind      = kind;
    s->max_numel = max_numel;
    s->T         = (int)T;
    s->t_int     = malloc(sizeof(int) * (size_t)(T + 1));
    s->timesteps = malloc(sizeof(float) * (size_t)(T + 1));
    s->sigmas    = malloc(sizeof(float) * (size_t)(T + 2));
    s->scratch   = malloc(sizeof(double) * (size_t)(T + 2));
    ds_status st = DS_OK;
    if (!s->t_int || !s->timesteps || !s->sigmas || !s->scratch) st = DS_FAIL(err, DS_ERR_OOM, "scheduler: out of memory");
    if (st == DS_OK) {
        if (kind == DS_SCHED_FLOW_EULER) {
            st = init_flow(s, &r);
        } else {
            st = init_vp(s, &r);
            if (st == DS_OK) st = kind == DS_SCHED_DDIM ? init_ddim(s, &r) : init_dpm(s, &r);
        }
    }
    if (st != DS_OK) {
        ds_scheduler_free(s);
        return st;
    }
    *out = s;
    return DS_OK;
}

void ds_scheduler_free(ds_scheduler *s) {
    if (!s) return;
    free(s->alphas_cumprod);
    free(s->vp_sigmas);
    free(s->t_int);
    free(s->timesteps);
    free(s->sigmas);
    free(s->scratch);
    free(s->m_prev);
    free(s);
}

ds_sched_kind ds_scheduler_kind(const ds_scheduler *s) { return s->kind; }
int ds_scheduler_num_steps(const ds_scheduler *s) { return s->n; }
const float *ds_scheduler_timesteps(const ds_scheduler *s) { return s->n ? s->timesteps : NULL; }
const float *ds_scheduler_sigmas(const ds_scheduler *s) {
    return s->n && s->kind != DS_SCHED_DDIM ? s->sigmas : NULL;
}
const float *ds_scheduler_alphas_cumprod(const ds_scheduler *s, int *len) {
    if (len) *len = s->alphas_cumprod ? s->T : 0;
    return s->alphas_cumprod;
}
float ds_scheduler_init_noise_sigma(const ds_scheduler *s) {
    (void)s;
    return 1.0f;
}

/* ---- set_timesteps --------------------------------------------------------------------------------- */

static void reset_run(ds_scheduler *s) {
    s->next_i           = 0;
    s->run_n            = 0;
    s->lower_order_nums = 0;
}

/* DDIM / DPM integer timesteps into s->t_int; sets s->n. */
static ds_status vp_timesteps(ds_scheduler *s, int n, ds_err *err) {
    const int T = s->T;
    int       m = 0;
    if (s->kind == DS_SCHED_DDIM) {
        if (s->spacing == SPACING_LINSPACE) {
            /* numpy.linspace(0, T-1, n).round()[::-1] (round half to even) */
            np_linspace(0.0, (double)(T - 1), n, s->scratch);
            for (int k = 0; k < n; k++) s->t_int[n - 1 - k] = (int)rint(s->scratch[k]);
            m = n;
        } else if (s->spacing == SPACING_LEADING) {
            int ratio = T / n;
            for (int k = 0; k < n; k++) s->t_int[k] = (n - 1 - k) * ratio + (int)s->steps_offset;
            m = n;
        } else {
            double ratio = (double)T / n;
            m            = np_arange_len(T, 0, -ratio);
            if (m > T + 1) m = T + 1;
            for (int k = 0; k < m; k++) s->t_int[k] = (int)rint(np_arange_at(T, -ratio, k)) - 1;
        }
    } else {
        /* lambda_min_clipped: count of lambda_t (ascending when flipped) below the clip. */
        int clipped = 0;
        if (s->lambda_min_clipped > -INFINITY) {
            for (int t = 0; t < T; t++) {
                float a   = s->alphas_cumprod[t];
                float lam = logf(sqrtf(a)) - logf(sqrtf(1.0f - a));
                if ((double)lam < s->lambda_min_clipped) clipped++;
            }
        }
        int last = T - clipped;
        if (s->spacing == SPACING_LINSPACE) {
            /* numpy.linspace(0, last-1, n+1).round()[::-1][:-1] */
            np_linspace(0.0, (double)(last - 1), n + 1, s->scratch);
            for (int k = 0; k < n; k++) s->t_int[k] = (int)rint(s->scratch[n - k]);
            m = n;
        } else if (s->spacing == SPACING_LEADING) {
            int ratio = last / (n + 1);
            for (int k = 0; k < n; k++) s->t_int[k] = (n - k) * ratio + (int)s->steps_offset;
            m = n;
        } else {
            double ratio = (double)T / n;
            m            = np_arange_len(last, 0, -ratio);
            if (m > T + 1) m = T + 1;
            for (int k = 0; k < m; k++) s->t_int[k] = (int)rint(np_arange_at(last, -ratio, k)) - 1;
        }
    }
    if (m < 1) return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler: %d steps give an empty schedule", n);
    for (int k = 0; k < m; k++) {
        if (s->t_int[k] < 0 || s->t_int[k] >= T)
            return DS_FAIL(err, DS_ERR_INVALID_ARG,
                           "scheduler: timestep %d (step %d of %d) is outside [0, %d) (steps_offset %lld)", s->t_int[k],
                           k, n, T, (long long)s->steps_offset);
    }
    s->n = m;
    for (int k = 0; k < m; k++) s->timesteps[k] = (float)s->t_int[k];
    if (s->kind == DS_SCHED_DPMPP_2M) {
        for (int k = 0; k < m; k++) s->sigmas[k] = s->vp_sigmas[s->t_int[k]];
        s->sigmas[m] = s->final_sigma_min ? s->vp_sigmas[0] : 0.0f;
    }
    return DS_OK;
}

static ds_status check_steps(const ds_scheduler *s, int n, ds_err *err) {
    if (n < 1 || n > s->T)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler: num_steps %d is out of range [1, %d]", n, s->T);
    return DS_OK;
}

ds_status ds_scheduler_set_timesteps(ds_scheduler *s, int num_steps, double mu, ds_err *err) {
    if (!s) return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler: NULL scheduler");
    DS_TRY(check_steps(s, num_steps, err));
    if (s->kind != DS_SCHED_FLOW_EULER) {
        s->n = 0;
        reset_run(s);
        ds_status st = vp_timesteps(s, num_steps, err);
        if (st != DS_OK) {
            s->n = 0;
            return st;
        }
        s->n_requested = num_steps;
        return DS_OK;
    }
    if (s->dynamic && !isfinite(mu))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler: mu is required with use_dynamic_shifting (got %g)", mu);
    /* timesteps = linspace(sigma_max*T, sigma_min*T, n) (float64); sigmas = timesteps / T; shift in float64. */
    const int    T  = s->T;
    const double em = exp(mu);
    np_linspace(s->sigma_max * T, s->sigma_min * T, num_steps, s->scratch);
    for (int k = 0; k < num_steps; k++) {
        double sg = s->scratch[k] / T, r;
        if (s->dynamic)
            r = s->linear_shift ? mu / (mu + pow(1 / sg - 1, 1.0)) : em / (em + pow(1 / sg - 1, 1.0));
        else
            r = s->shift * sg / (1 + (s->shift - 1) * sg);
        s->sigmas[k] = (float)r;
    }
    s->sigmas[num_steps] = 0.0f;
    for (int k = 0; k < num_steps; k++) s->timesteps[k] = s->sigmas[k] * (float)T;
    s->n = s->n_requested = num_steps;
    reset_run(s);
    return DS_OK;
}

ds_status ds_scheduler_set_sigmas(ds_scheduler *s, const double *sigmas, int n, double mu, ds_err *err) {
    if (!s || !sigmas) return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler: NULL scheduler or sigmas");
    if (s->kind != DS_SCHED_FLOW_EULER)
        return DS_FAIL(err, DS_ERR_UNSUPPORTED, "scheduler: custom sigmas need a flow-match scheduler, not %s",
                       ds_sched_kind_name(s->kind));
    DS_TRY(check_steps(s, n, err));
    if (s->dynamic && !isfinite(mu))
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler: mu is required with use_dynamic_shifting (got %g)", mu);
    /* numpy float32 arithmetic (Python floats are weak scalars: rounded to float32 first). */
    const float em = (float)exp(mu), muf = (float)mu;
    const float sh = (float)s->shift, shm1 = (float)(s->shift - 1);
    for (int k = 0; k < n; k++) {
        float sg = (float)sigmas[k], r;
        if (s->dynamic) {
            float q = 1.0f / sg - 1.0f;
            r       = s->linear_shift ? muf / (muf + q) : em / (em + q);
        } else {
            r = sh * sg / (1.0f + shm1 * sg);
        }
        s->sigmas[k] = r;
    }
    s->sigmas[n] = 0.0f;
    for (int k = 0; k < n; k++) s->timesteps[k] = s->sigmas[k] * (float)s->T;
    s->n = s->n_requested = n;
    reset_run(s);
    return DS_OK;
}

void ds_scheduler_flux_sigmas(int n, double *out) { np_linspace(1.0, 1.0 / n, n, out); }

double ds_scheduler_flux_mu(int64_t image_seq_len, int64_t base_seq_len, int64_t max_seq_len, double base_shift,
                            double max_shift) {
    double m = (max_shift - base_shift) / (double)(max_seq_len - base_seq_len);
    double b = base_shift - m * (double)base_seq_len;
    return (double)image_seq_len * m + b;
}

double ds_scheduler_mu(const ds_scheduler *s, int64_t image_seq_len) {
    if (s->kind == DS_SCHED_FLOW_EULER)
        return ds_scheduler_flux_mu(image_seq_len, s->base_seq, s->max_seq, s->base_shift, s->max_shift);
    return ds_scheduler_flux_mu(image_seq_len, 256, 4096, 0.5, 1.15);
}

/* ---- step ------------------------------------------------------------------------------------------ */

static void ddim_step(const ds_scheduler *s, int i, const float *mo, float *x, int64_t n) {
    const int   t      = s->t_int[i];
    const int   prev   = t - s->T / s->n_requested;
    const float a_t    = s->alphas_cumprod[t];
    const float a_prev = prev >= 0 ? s->alphas_cumprod[prev] : s->final_alpha_cumprod;
    const float b_t    = 1.0f - a_t;
    const float sa = sqrtf(a_t), sb = sqrtf(b_t);
    const float c_x0  = sqrtf(a_prev);
    const float c_dir = sqrtf(1.0f - a_prev - 0.0f); /* eta = 0: std_dev_t = 0 */
    const float lo = -s->clip_range, hi = s->clip_range;
    for (int64_t j = 0; j < n; j++) {
        float x0, eps;
        if (s->pred == PRED_EPSILON) {
            x0  = (x[j] - sb * mo[j]) / sa;
            eps = mo[j];
        } else if (s->pred == PRED_SAMPLE) {
            x0  = mo[j];
            eps = (x[j] - sa * x0) / sb;
        } else {
            x0  = sa * x[j] - sb * mo[j];
            eps = sa * mo[j] + sb * x[j];
        }
        if (s->clip_sample) x0 = x0 < lo ? lo : (x0 > hi ? hi : x0); /* torch.clamp: NaN stays NaN */
        float a = c_x0 * x0;
        float d = c_dir * eps;
        x[j]    = a + d;
    }
}

/* _sigma_to_alpha_sigma_t and lambda = log(alpha) - log(sigma), float32. sigma = 0 gives lambda = +inf. */
static void vp_pair(float sigma, float *alpha, float *sig, float *lambda) {
    *alpha  = 1.0f / sqrtf(sigma * sigma + 1.0f);
    *sig    = sigma * *alpha;
    *lambda = logf(*alpha) - logf(*sig);
}

static void dpm_step(ds_scheduler *s, int i, const float *mo, float *x, int64_t n) {
    const float *sg = s->sigmas;
    float        alpha_s0, sigma_s0, lambda_s0, alpha_t, sigma_t, lambda_t;
    vp_pair(sg[i], &alpha_s0, &sigma_s0, &lambda_s0);
    vp_pair(sg[i + 1], &alpha_t, &sigma_t, &lambda_t);

    const bool final       = i == s->n - 1;
    const bool lower_final = final && (s->euler_at_final || (s->lower_order_final && s->n < 15) ||
                                       !s->final_sigma_min);
    const bool first = s->solver_order == 1 || s->lower_order_nums < 1 || lower_final;

    const float h   = lambda_t - lambda_s0;
    const float em1 = expf(-h) - 1.0f;
    const float c1  = sigma_t / sigma_s0;
    const float c2  = alpha_t * em1;
    float       inv_r0 = 0, c3 = 0;
    if (!first) {
        float alpha_s1, sigma_s1, lambda_s1;
        vp_pair(sg[i - 1], &alpha_s1, &sigma_s1, &lambda_s1);
        const float h0 = lambda_s0 - lambda_s1;
        const float r0 = h0 / h;
        inv_r0         = 1.0f / r0;
        c3             = s->heun ? alpha_t * (em1 / h + 1.0f) : 0.5f * c2;
    }
    for (int64_t j = 0; j < n; j++) {
        float x0;
        if (s->pred == PRED_EPSILON) x0 = (x[j] - sigma_s0 * mo[j]) / alpha_s0;
        else if (s->pred == PRED_SAMPLE) x0 = mo[j];
        else x0 = alpha_s0 * x[j] - sigma_s0 * mo[j];
        float a = c1 * x[j];
        float b = c2 * x0;
        float y = a - b;
        if (!first) {
            float d1 = inv_r0 * (x0 - s->m_prev[j]);
            float c  = c3 * d1;
            y        = s->heun ? y + c : y - c;
        }
        s->m_prev[j] = x0;
        x[j]         = y;
    }
    if (s->lower_order_nums < s->solver_order) s->lower_order_nums++;
}

static void flow_step(const ds_scheduler *s, int i, const float *mo, float *x, int64_t n) {
    const float dt = s->sigmas[i + 1] - s->sigmas[i];
    for (int64_t j = 0; j < n; j++) {
        float d = dt * mo[j];
        x[j]    = x[j] + d;
    }
}

ds_status ds_scheduler_step(ds_scheduler *s, int i, const float *model_output, float *sample, int64_t n,
                            ds_err *err) {
    if (!s || !model_output || !sample) return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler step: NULL argument");
    if (s->n == 0) return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler step: set_timesteps was not called");
    if (i < 0 || i >= s->n)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler step: index %d is out of range [0, %d)", i, s->n);
    if (n < 1 || n > s->max_numel)
        return DS_FAIL(err, DS_ERR_INVALID_ARG, "scheduler step: %lld elements, expected 1..%lld", (long long)n,
                       (long long)s->max_numel);
    switch (s->kind) {
    case DS_SCHED_DDIM: ddim_step(s, i, model_output, sample, n); break;
    case DS_SCHED_FLOW_EULER: flow_step(s, i, model_output, sample, n); break;
    case DS_SCHED_DPMPP_2M:
        if (i == 0) {
            reset_run(s);
            s->run_n = n;
        } else if (i != s->next_i || n != s->run_n) {
            return DS_FAIL(err, DS_ERR_INVALID_ARG,
                           "scheduler step: DPM is multistep: got step %d with %lld elements, expected step 0 or %d "
                           "with %lld",
                           i, (long long)n, s->next_i, (long long)s->run_n);
        }
        dpm_step(s, i, model_output, sample, n);
        s->next_i = i + 1;
        break;
    default: return DS_FAIL(err, DS_ERR_INTERNAL, "scheduler step: bad kind %d", (int)s->kind);
    }
    return DS_OK;
}
