/* pipeline_impl.h - private state shared by pipeline.c (registry, load, common steps),
 * pipeline_dit.c (DiTPipeline) and pipeline_flux.c (FluxPipeline). Not part of the public API. */
#ifndef DS_PIPELINE_IMPL_H
#define DS_PIPELINE_IMPL_H

#include "diffusers_dir.h"
#include "dit.h"
#include "flux.h"
#include "pipeline.h"
#include "scheduler.h"
#include "vae.h"

#define DS_PIPE_MAX_SCHED 4 /* indexed by ds_sched_kind */

struct ds_pipeline {
    ds_pipeline_kind  kind;
    ds_diffusers     *dir;
    ds_pipeline_opts  opts;       /* limits with defaults filled in */
    ds_dit           *dit;
    ds_flux          *flux;
    ds_vae           *vae;
    ds_sched_kind     default_sched;
    ds_scheduler     *sched[DS_PIPE_MAX_SCHED]; /* the kinds this model can use, built at load */
    int               vae_scale;  /* pixels per latent (2^(blocks-1)) */
    int               latent_ch;  /* unpacked latent channels */
    int               max_h, max_w; /* latent limits */
    /* Buffers planned at load (host f32; sizes in elements noted). */
    float   *lat;      /* [max_images, C, h, w]            the latents being denoised */
    float   *lat2;     /* [max_images, C, h, w]            packed copy (FLUX) */
    float   *xin;      /* [2*max_images, C, h, w]          transformer input (CFG batch) */
    float   *xout;     /* [2*max_images, Cout, h, w]       transformer output */
    float   *eps;      /* [max_images, C, h, w]            guided model output fed to the scheduler */
    float   *image;    /* [1, 3, H, W]                     one decoded image */
    float   *tsteps;   /* [2*max_images]                   per-sample timesteps */
    float   *guid;     /* [2*max_images]                   FLUX guidance */
    int32_t *labels;   /* [2*max_images]                   DiT class labels (CFG batch) */
    float   *txt;      /* [2*max_images, max_txt, joint]   FLUX text embeddings, per sample */
    float   *pooled;   /* [2*max_images, pooled]           FLUX pooled embeddings */
    float   *txt_ids;  /* [max_txt, 3]                     zeros */
    float   *img_ids;  /* [max_tokens, 3] */
    /* Block-runner path (ds_gen_params.runner): the transformer's streams held by the pipeline between
     * embed, the runner's block lists and final. Allocated for the load-time maxima by the first request
     * that brings a runner (ds_pipeline_runner_buffers), then reused; NULL until then. */
    float   *blk_h;    /* DiT [2*max_images, N, D]; FLUX [max_images, N, D]  image stream */
    float   *blk_c;    /* DiT cond [2*max_images, D]; FLUX temb [max_images, D] */
    float   *blk_e;    /* FLUX [max_images, max_txt, D]                       text stream */
    float   *blk_cat;  /* FLUX [max_images, max_txt + N, D]                   joined streams */
    float   *blk_cos, *blk_sin; /* FLUX [max_txt + N, head_dim]                rope tables */
    /* Placement (opts.placement): the tensors the models see. On the CPU each is a view over the host
     * buffer above; on CUDA each owns device memory in the model dtype (f32 for the rope tables), made
     * at load by ds_pipeline_place. */
    ds_placement pl;
    ds_tensor t_xin, t_xout;      /* transformer input / output, shapes as xin / xout */
    ds_tensor t_vlat, t_img;      /* VAE input [1, C, max_h, max_w] and output [1, 3, H, W] */
    ds_tensor t_blk_h, t_blk_c, t_blk_e, t_blk_cat, t_blk_cos, t_blk_sin; /* block-runner streams */
    ds_tensor t_aux[4];           /* model-specific extra inputs (FLUX: txt, pooled, neg txt, neg pooled) */
    void   *staging;              /* host staging for bf16/f16 transfers (CUDA only) */
    ds_graph_cache *graphs;       /* block ranges a runner replays as CUDA graphs (ds_block_list.graphs) */
    size_t  staging_bytes;
};

/* Per-kind load and generate (pipeline_dit.c / pipeline_flux.c). load fills the model fields, latent
 * limits and buffers of p (p->dir and p->opts are set); generate runs one request. */
ds_status ds_pipeline_dit_load(ds_pipeline *p, ds_err *err);
ds_status ds_pipeline_dit_generate(ds_pipeline *p, const ds_gen_params *g, ds_gen_result *res, ds_err *err);
ds_status ds_pipeline_flux_load(ds_pipeline *p, ds_err *err);
ds_status ds_pipeline_flux_generate(ds_pipeline *p, const ds_gen_params *g, ds_gen_result *res, ds_err *err);

/* Common pieces (pipeline.c). */

/* malloc'd zeroed f32 buffer of n elements into *buf; DS_ERR_OOM naming `what`. */
ds_status ds_pipeline_alloc(float **buf, size_t n, const char *what, ds_err *err);

/* Build the schedulers this pipeline allows (kinds[0..n)) from the scheduler component, for steps of up
 * to max_numel elements; the first kind is the default unless the config names another allowed one. */
ds_status ds_pipeline_build_schedulers(ds_pipeline *p, const ds_sched_kind *kinds, int n, int64_t max_numel,
                                       ds_err *err);

/* The scheduler for a request (DS_SCHED_AUTO: the default). DS_ERR_INVALID_ARG (param "scheduler") when
 * this model cannot use the requested kind. */
ds_status ds_pipeline_pick_scheduler(ds_pipeline *p, ds_sched_kind kind, ds_scheduler **out, ds_err *err);

/* Initial latents [n] into dst: params' init_noise (shape must equal shape[0..3]) or seeded noise. */
ds_status ds_pipeline_init_latents(const ds_gen_params *g, const int64_t shape[4], float *dst, ds_err *err);

/* Decode latents [B, C, h, w] one image at a time into res->rgb (allocated here) and keep a copy of the
 * latents in res. */
ds_status ds_pipeline_decode(ds_pipeline *p, const float *latents, const int64_t shape[4], ds_gen_result *res,
                             ds_err *err);

/* Allocate p->blk_* (sizes in floats; 0 = not needed) unless already allocated. DS_ERR_OOM. */
ds_status ds_pipeline_runner_buffers(ds_pipeline *p, size_t h, size_t c, size_t e, size_t cat, size_t rope,
                                     ds_err *err);

/* The placed tensor for a host buffer: on the CPU a contiguous f32 view over `host` (which must exist);
 * on CUDA device memory of `dtype` and `shape` (owned by the pipeline, freed by ds_pipeline_free) and the
 * pipeline's staging grows to cover its transfers. DS_ERR_OOM / DS_ERR_DEVICE on CUDA failures. */
ds_status ds_pipeline_place(ds_pipeline *p, ds_tensor *t, float *host, ds_dtype dtype, int ndim, const int64_t *shape,
                            ds_err *err);

/* The VAE's device input/output (CUDA only; after vae_scale, latent_ch, max_h and max_w are set). */
ds_status ds_pipeline_place_vae(ds_pipeline *p, ds_err *err);

/* Allocate p->staging for the largest transfer seen by ds_pipeline_place (CUDA only; no-op otherwise). */
ds_status ds_pipeline_staging(ds_pipeline *p, ds_err *err);

/* Monotonic milliseconds. */
double ds_pipeline_now_ms(void);

#endif /* DS_PIPELINE_IMPL_H */
