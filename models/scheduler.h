/* scheduler.h - diffusion samplers, numerically matching diffusers 0.42.1:
 *   DS_SCHED_DDIM        DDIMScheduler (eta = 0, as DiTPipeline uses it)
 *   DS_SCHED_DPMPP_2M    DPMSolverMultistepScheduler, algorithm_type "dpmsolver++", solver_order 1 or 2
 *   DS_SCHED_FLOW_EULER  FlowMatchEulerDiscreteScheduler (SD3 static shift, FLUX dynamic shift)
 *
 * Built from a diffusers scheduler_config.json. A key missing from the JSON takes the default of the class
 * being built (diffusers' from_config semantics, including a class swap such as
 * DPMSolverMultistepScheduler.from_config(ddim.config): DDIM-only keys are ignored and, e.g., a DiT config
 * without timestep_spacing gives DDIM "leading" but DPM "linspace").
 *
 * Use:
 *   ds_scheduler_init_from_config(cfg, DS_SCHED_AUTO, numel, &s, err);   // numel: max elements per step
 *   ds_scheduler_set_timesteps(s, 25, NAN, err);                          // mu only for dynamic shifting
 *   for (i = 0; i < n; i++) { t = ds_scheduler_timesteps(s)[i]; model(x, t) -> out;
 *                             ds_scheduler_step(s, i, out, x, numel, err); }
 * FLUX (FluxPipeline passes its own sigmas = linspace(1, 1/n, n)):
 *   mu = ds_scheduler_mu(s, image_seq_len);
 *   ds_scheduler_flux_sigmas(n, buf); ds_scheduler_set_sigmas(s, buf, n, mu, err);
 *
 * Precision: per-element math is float32 in diffusers' operation order (no FMA contraction); scalars are
 * computed in float32 or float64 exactly where diffusers does. Timesteps are bit-identical to diffusers'; the
 * training schedule (alphas_cumprod) is bit-identical to torch on CPUs where torch's linspace kernel uses FMA
 * (AVX2 / AVX-512 builds; elsewhere betas may differ by 1 ulp). torch's CPU sqrt/exp/log (MKL VML) are not
 * correctly rounded, ours (libm) are, so DPM sigmas and DDIM/DPM step coefficients may differ by 1 ulp: measured
 * sample trajectories agree to <= 8e-7 relative (flow-match: bit-identical).
 * Config JSON: diffusers writes "lambda_min_clipped": -Infinity into DPM configs, which ds_config_parse must
 * accept for such files to load. 
 *
 * Memory: everything is allocated at init (schedule tables for up to num_train_timesteps steps, and the DPM
 * history buffer of max_numel floats); set_timesteps and step never allocate.
 * Thread safety: a scheduler holds per-run state (step counter, DPM history): one per concurrent request. */
#ifndef DS_SCHEDULER_H
#define DS_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "diffusers_dir.h"
#include "status.h"

typedef enum ds_sched_kind {
    DS_SCHED_AUTO = 0,   /* from the config's "_class_name" */
    DS_SCHED_DDIM,       /* DDIMScheduler */
    DS_SCHED_DPMPP_2M,   /* DPMSolverMultistepScheduler (dpmsolver++) */
    DS_SCHED_FLOW_EULER, /* FlowMatchEulerDiscreteScheduler */
} ds_sched_kind;

typedef struct ds_scheduler ds_scheduler; /* opaque */

/* Build a scheduler from a parsed scheduler_config.json. kind DS_SCHED_AUTO takes the class from
 * "_class_name" (DDIMScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler); any other kind
 * builds that class from the same config. max_numel (>= 1) is the largest flat sample size ds_scheduler_step
 * will be given (B*C*H*W or B*L*C of the latents stepped at once); DPM allocates its history for it.
 * Fields honoured:
 *   all VP (DDIM, DPM): num_train_timesteps, beta_start, beta_end, beta_schedule (linear | scaled_linear |
 *     squaredcos_cap_v2), trained_betas, rescale_betas_zero_snr, prediction_type (epsilon | sample |
 *     v_prediction), thresholding (false only), timestep_spacing (leading | trailing | linspace), steps_offset
 *   DDIM: clip_sample, clip_sample_range, set_alpha_to_one
 *   DPM: algorithm_type (dpmsolver++; "deis" maps to it as in diffusers), solver_order (1 | 2), solver_type
 *     (midpoint | heun; logrho/bh1/bh2 map to midpoint as in diffusers), lower_order_final, euler_at_final,
 *     final_sigmas_type (zero | sigma_min), lambda_min_clipped, variance_type (null only), use_karras_sigmas /
 *     use_exponential_sigmas / use_beta_sigmas / use_lu_lambdas / use_flow_sigmas (false only)
 *   flow: num_train_timesteps, shift, use_dynamic_shifting, base_shift, max_shift, base_image_seq_len,
 *     max_image_seq_len, time_shift_type (exponential | linear), shift_terminal (null only), invert_sigmas /
 *     stochastic_sampling / use_karras_sigmas / use_exponential_sigmas / use_beta_sigmas (false only)
 * Other keys are ignored, as diffusers ignores keys its class does not take.
 * Errors: DS_ERR_INVALID_ARG (cfg/out NULL, max_numel < 1), DS_ERR_FORMAT (a key of the wrong JSON type; no
 * "_class_name" with DS_SCHED_AUTO), DS_ERR_UNSUPPORTED (unknown class or field value: the message names the
 * field), DS_ERR_OOM. Free with ds_scheduler_free. */
ds_status ds_scheduler_init_from_config(const ds_config *cfg, ds_sched_kind kind, int64_t max_numel,
                                        ds_scheduler **out, ds_err *err);

/* Free a scheduler (NULL allowed). */
void ds_scheduler_free(ds_scheduler *s);

/* Accessors below take a non-NULL scheduler. */

/* The class actually built (never DS_SCHED_AUTO), and its stable name ("ddim", "dpmpp_2m", "flow_euler"). */
ds_sched_kind ds_scheduler_kind(const ds_scheduler *s);
const char *ds_sched_kind_name(ds_sched_kind kind);

/* Set the schedule for num_steps steps (1 <= num_steps <= num_train_timesteps), as diffusers'
 * set_timesteps(num_steps, mu=mu). mu is the dynamic-shift exponent: required (finite) for a flow scheduler
 * with use_dynamic_shifting, ignored otherwise (pass NAN). Resets the step state (DPM history).
 * Errors: DS_ERR_INVALID_ARG (s NULL, num_steps out of range, mu missing where required). No allocation. */
ds_status ds_scheduler_set_timesteps(ds_scheduler *s, int num_steps, double mu, ds_err *err);

/* Flow only: set custom sigmas[0..n) (n <= num_train_timesteps), as set_timesteps(sigmas=..., mu=mu); the
 * values are rounded to float32 first, then shifted (dynamic with mu, else static shift), as diffusers does.
 * FluxPipeline passes ds_scheduler_flux_sigmas(n). Errors: DS_ERR_INVALID_ARG (NULL, n out of range, mu
 * missing where required), DS_ERR_UNSUPPORTED (not a flow scheduler). No allocation. */
ds_status ds_scheduler_set_sigmas(ds_scheduler *s, const double *sigmas, int n, double mu, ds_err *err);

/* FluxPipeline's default sigmas: out[0..n) = numpy.linspace(1.0, 1/n, n) (float64, numpy's rounding). n >= 1. */
void ds_scheduler_flux_sigmas(int n, double *out);

/* FluxPipeline's calculate_shift, in float64 in the same operation order:
 *   m = (max_shift - base_shift) / (max_seq_len - base_seq_len); b = base_shift - m*base_seq_len;
 *   mu = image_seq_len*m + b.
 * image_seq_len is the packed token count ((H/16)*(W/16) for FLUX latents of an HxW image). */
double ds_scheduler_flux_mu(int64_t image_seq_len, int64_t base_seq_len, int64_t max_seq_len, double base_shift,
                            double max_shift);

/* ds_scheduler_flux_mu with this scheduler's base/max_image_seq_len and base/max_shift (config or class
 * defaults 256, 4096, 0.5, 1.15 - what FluxPipeline reads from scheduler.config; DDIM/DPM use those defaults). */
double ds_scheduler_mu(const ds_scheduler *s, int64_t image_seq_len);

/* Number of steps set (0 before set_timesteps). */
int ds_scheduler_num_steps(const ds_scheduler *s);

/* The timesteps the model is fed, [num_steps] (owned by s, valid until the next set_timesteps/free):
 * the integer t as float for DDIM/DPM, sigma*1000 (float32) for flow. NULL before set_timesteps. */
const float *ds_scheduler_timesteps(const ds_scheduler *s);

/* The sigmas, [num_steps + 1] with the final 0 (or sigma_min) appended: sqrt((1-a)/a) for DPM, the flow
 * sigmas for flow. NULL for DDIM (it has none) and before set_timesteps. Owned by s. */
const float *ds_scheduler_sigmas(const ds_scheduler *s);

/* The training schedule alphas_cumprod, [num_train_timesteps] (DDIM/DPM; NULL for flow), and its length. */
const float *ds_scheduler_alphas_cumprod(const ds_scheduler *s, int *len);

/* Standard deviation of the initial noise (1.0 for all three classes). */
float ds_scheduler_init_noise_sigma(const ds_scheduler *s);

/* One sampler step at index i (0 <= i < num_steps): sample[0..n) (the latents x_t, updated in place to
 * x_{t_prev}) from model_output[0..n) (the model's prediction at timesteps[i], same layout as sample; for
 * learned-sigma models only the first C channels). 1 <= n <= max_numel. DDIM and flow are stateless (any i);
 * DPM is multistep: i must be 0 (starts a run) or the previous i + 1 with the same n.
 * Errors: DS_ERR_INVALID_ARG (NULL pointer, n out of range, i out of range or out of order, no
 * set_timesteps yet). On error sample is unchanged. No allocation. */
ds_status ds_scheduler_step(ds_scheduler *s, int i, const float *model_output, float *sample, int64_t n,
                            ds_err *err);

#endif /* DS_SCHEDULER_H */
