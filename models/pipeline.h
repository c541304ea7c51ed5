/* pipeline.h - text/class -> image pipelines over a diffusers directory, exact to diffusers' DiTPipeline
 * and FluxPipeline on the CPU reference backend, and the model registry that picks the pipeline from
 * model_index.json's "_class_name".
 *
 * A ds_pipeline owns the opened checkpoint, the transformer, the VAE, the schedulers and every buffer a
 * generation needs, all planned at load for the limits in ds_pipeline_opts: ds_pipeline_generate only
 * allocates its result. One pipeline serves one thread at a time (the engine's worker owns it). */
#ifndef DS_PIPELINE_H
#define DS_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks.h"
#include "scheduler.h"
#include "placement.h"
#include "graph.h"
#include "status.h"
#include "tensor.h"

typedef enum ds_pipeline_kind { DS_PIPELINE_DIT = 0, DS_PIPELINE_FLUX } ds_pipeline_kind;

/* Limits planned at load (0 = the default in brackets). */
typedef struct ds_pipeline_opts {
    int max_images;     /* images per generation (labels x num_images) [4] */
    int max_width;      /* largest image width in pixels [DiT: sample_size*8; FLUX: 1024] */
    int max_height;     /* largest image height in pixels [same] */
    int max_txt_tokens; /* FLUX: longest prompt_embeds sequence [512] */
    bool     random_weights; /* ignore weight files: seeded random weights from the configs alone */
    uint64_t weights_seed;   /* seed for random_weights */
    ds_placement placement;  /* where the transformer and the VAE run; zeroed = CPU f32. On CUDA the
                                calling thread needs a bound ds_cuda_ctx for load, generate and free;
                                the scheduler, CFG combination and noise stay host f32 (per step, the
                                latents go up and the model output comes down once) */
} ds_pipeline_opts;

/* Called after each denoising step (1-based `step` of `n_steps`) with the scheduler's current sample:
 * latents[0..n) ([B, C, h, w] for DiT, packed [B, N, 64] for FLUX; valid only during the call). A
 * non-zero return cancels the generation (DS_ERR_CANCELLED). */
typedef int (*ds_step_cb)(void *user, int step, int n_steps, const float *latents, int64_t n);

/* One generation request (already validated for types by the caller; values are checked here). */
typedef struct ds_gen_params {
    int      width, height;     /* pixels; 0 = model default (DiT: sample_size*8; FLUX: 1024) */
    int      steps;             /* 0 = default (DiT 50, FLUX 28) */
    float    guidance_scale;    /* DiT: CFG scale (> 1 enables CFG, default 4.0); FLUX-dev: embedded
                                   guidance (default 3.5); NAN = default */
    float    true_cfg_scale;    /* FLUX: > 1 with negative embeddings runs true CFG; NAN/0 = 1 */
    ds_sched_kind scheduler;    /* DS_SCHED_AUTO = the checkpoint's scheduler */
    uint64_t seed;              /* noise seed (ds_rng_normal stream at offset 0) */
    /* DiT */
    const int32_t *class_labels; /* [n_labels] ids in 0..999 */
    int            n_labels;
    int            num_images;   /* per label (DiT) or per prompt (FLUX); 0 = 1 */
    /* FLUX (all f32 CPU tensors, batch 1): prompt_embeds [1, T, joint_dim], pooled [1, pooled_dim];
       negative ones optional (needed for true CFG) */
    const ds_tensor *prompt_embeds, *pooled_prompt_embeds;
    const ds_tensor *negative_prompt_embeds, *negative_pooled_prompt_embeds;
    /* Optional initial latents replacing the seeded noise (to reproduce a diffusers run): DiT
       [B, C, h, w], FLUX unpacked [B, 16, h, w], with B = images of this request. */
    const ds_tensor *init_noise;
    ds_step_cb on_step;
    void      *user;
    /* Optional block runner (the engine's cache, models/blocks.h): NULL = every block in order, exactly
       the monolithic forward. With a runner the transformer call is embed -> runner->run(lists) -> final;
       runner->begin is called once before the first step, runner->step_done after each step. */
    const ds_block_runner *runner;
} ds_gen_params;

/* What a generation returns. Free with ds_gen_result_free. */
typedef struct ds_gen_result {
    int      n_images, width, height;
    uint8_t *rgb;            /* [n_images, height, width, 3], owned */
    float   *latents;        /* final latents before decoding, unpacked: [n_images, C, h, w], owned */
    int64_t  latent_shape[4];
    int      steps;          /* steps run */
    double   denoise_ms, decode_ms;
} ds_gen_result;

typedef struct ds_pipeline ds_pipeline;

/* Open a diffusers directory and load the pipeline its model_index.json names (DiTPipeline or
 * FluxPipeline). opts may be NULL (defaults). Errors: DS_ERR_UNSUPPORTED for another pipeline class
 * (the message lists the supported ones), DS_ERR_IO / DS_ERR_FORMAT / DS_ERR_NOT_FOUND for a broken
 * checkpoint (the message names the file), DS_ERR_OOM. */
ds_status ds_pipeline_load(const char *dir, const ds_pipeline_opts *opts, ds_pipeline **out, ds_err *err);

/* Free a pipeline (NULL allowed). */
void ds_pipeline_free(ds_pipeline *p);

/* Supported model_index "_class_name" values, comma-separated ("DiTPipeline, FluxPipeline"). */
const char *ds_pipeline_supported(void);

ds_pipeline_kind ds_pipeline_get_kind(const ds_pipeline *p);

/* Counters of the pipeline's CUDA graphs (block ranges replayed by a cache runner; graph.h). Zeros on the CPU
 * (every range eager: counted in .eager only when a runner asked). The monolithic forwards keep their own. */
ds_graph_stats ds_pipeline_graph_stats(const ds_pipeline *p);
const char *ds_pipeline_class(const ds_pipeline *p);

/* Default image size in pixels of this checkpoint. */
void ds_pipeline_default_size(const ds_pipeline *p, int *width, int *height);

/* DiT: the class id of an ImageNet label name, as DiTPipeline.get_label_ids does (every comma-separated
 * synonym in id2label, trimmed, matches exactly). Errors: DS_ERR_NOT_FOUND naming the label,
 * DS_ERR_UNSUPPORTED when the checkpoint has no id2label or is not class-conditional. */
ds_status ds_pipeline_label_id(const ds_pipeline *p, const char *name, int32_t *id, ds_err *err);

/* Run one generation. On success *res holds the images (caller frees with ds_gen_result_free).
 * Errors: DS_ERR_INVALID_ARG (a value out of range: the message names the field), DS_ERR_CANCELLED
 * (on_step asked to stop), DS_ERR_OOM (result allocation). */
ds_status ds_pipeline_generate(ds_pipeline *p, const ds_gen_params *params, ds_gen_result *res, ds_err *err);

/* Release what a result owns and zero it (NULL allowed). */
void ds_gen_result_free(ds_gen_result *res);

#endif /* DS_PIPELINE_H */
