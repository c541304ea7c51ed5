#!/usr/bin/env python3
"""export_schedulers.py - reference trajectories for models/scheduler.c (DDIM, DPM-Solver++ 2M, flow-match Euler).

Writes tests/data/sched/<case>.safetensors, one file per scheduler configuration. Each file holds
  timesteps       [n]        what the model is fed (scheduler.timesteps as float32)
  sigmas          [n+1]      scheduler.sigmas (DPM / flow only)
  alphas_cumprod  [T]        the training noise schedule (DDIM / DPM only; checks the beta schedule bit for bit)
  x_init          [2,4,6,5]  seeded initial sample
  model_out       [n,2,4,6,5] seeded random "model output" fed at step i
  sample          [n,2,4,6,5] the sample after step i (scheduler.step(...).prev_sample)
and metadata: `alphas_bit_exact` (1 when no transcendental touches the schedule), `config` (the scheduler_config.json text the C side parses), `kind` (auto = the config's
_class_name, else the class the config is loaded into, as `Cls.from_config(DDIMScheduler.from_config(cfg).config)`
does), `steps`, and for flow-match `mu` (repr), `image_seq_len`, `sigmas_mode` ("scheduler": set_timesteps(n, mu=mu);
"flux": the FluxPipeline's custom sigmas = np.linspace(1, 1/n, n)).

Everything is float32 like the pipelines (the schedulers compute some scalars in float64 internally; the C code
matches that). Deterministic: a rerun rewrites identical files.

Run: tools/.venv/bin/python tools/export_schedulers.py
"""
import json

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

from refs_common import gen, randn, save

SHAPE = (2, 4, 6, 5)

# facebook/DiT-XL-2-256 scheduler/scheduler_config.json (2023: no timestep_spacing -> DDIM default "leading").
DIT_DDIM = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.12.0.dev0",
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "trained_betas": None,
}

# Zero-terminal-SNR recipe (trailing spacing + rescaled betas + v-prediction), scaled_linear betas.
DDIM_TRAILING = {
    "_class_name": "DDIMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}

# Cosine betas, linspace spacing, sample prediction, clipping on, alpha_final = alphas_cumprod[0].
DDIM_LINSPACE_COS = {
    "_class_name": "DDIMScheduler",
    "beta_schedule": "squaredcos_cap_v2",
    "clip_sample": True,
    "clip_sample_range": 1.5,
    "set_alpha_to_one": False,
    "prediction_type": "sample",
    "timestep_spacing": "linspace",
}

# DPM-Solver++ with v-prediction and scaled_linear betas (PixArt/SD-2-like), trailing spacing.
DPM_VPRED = {
    "_class_name": "DPMSolverMultistepScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "algorithm_type": "dpmsolver++",
    "solver_order": 2,
    "solver_type": "midpoint",
    "lower_order_final": True,
    "final_sigmas_type": "zero",
    "timestep_spacing": "trailing",
    "use_karras_sigmas": False,
}

# DPM variants: cosine betas, leading + offset, clipped lambda, sigma_min final, heun, sample prediction, < 15 steps.
DPM_LEADING_COS = {
    "_class_name": "DPMSolverMultistepScheduler",
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "sample",
    "solver_type": "heun",
    "lower_order_final": True,
    "final_sigmas_type": "sigma_min",
    "lambda_min_clipped": -5.1,
    "timestep_spacing": "leading",
    "steps_offset": 1,
}

# black-forest-labs/FLUX.1-dev scheduler/scheduler_config.json
FLUX = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "_diffusers_version": "0.30.0.dev0",
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}

# stabilityai/stable-diffusion-3-medium scheduler/scheduler_config.json
SD3 = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "_diffusers_version": "0.29.0.dev0",
    "num_train_timesteps": 1000,
    "shift": 3.0,
}

FLOW_LINEAR = dict(FLUX, time_shift_type="linear")

CLASSES = {
    "DDIMScheduler": DDIMScheduler,
    "DPMSolverMultistepScheduler": DPMSolverMultistepScheduler,
    "FlowMatchEulerDiscreteScheduler": FlowMatchEulerDiscreteScheduler,
}
KINDS = {"ddim": DDIMScheduler, "dpmpp_2m": DPMSolverMultistepScheduler, "flow_euler": FlowMatchEulerDiscreteScheduler}


def make(cfg, kind):
    """The scheduler diffusers builds from the JSON `cfg` (kind 'auto': its _class_name; else the override class,
    via the original class's loaded config, as a pipeline swap does)."""
    base = CLASSES[cfg["_class_name"]].from_config(dict(cfg))
    if kind == "auto":
        return base
    return KINDS[kind].from_config(base.config)


def export(name, cfg, kind, steps, seed, mu=None, image_seq_len=None, sigmas_mode="scheduler"):
    s = make(cfg, kind)
    kw = {}
    if mu is not None:
        kw["mu"] = mu
    if sigmas_mode == "flux":
        s.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), **kw)
    else:
        s.set_timesteps(steps, **kw)
    assert len(s.timesteps) == steps

    g = gen(seed)
    x = randn(g, *SHAPE)
    t = {"timesteps": s.timesteps.to(torch.float32), "x_init": x.clone()}
    if isinstance(s, (DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler)):
        t["sigmas"] = s.sigmas.to(torch.float32)
    if hasattr(s, "alphas_cumprod"):
        t["alphas_cumprod"] = s.alphas_cumprod.to(torch.float32)
    outs, samples = [], []
    for ts in s.timesteps:
        mo = randn(g, *SHAPE)
        x = s.step(mo, ts, x).prev_sample
        assert x.dtype == torch.float32
        outs.append(mo)
        samples.append(x.clone())
    t["model_out"] = torch.stack(outs)
    t["sample"] = torch.stack(samples)

    meta = {"config": json.dumps(cfg, sort_keys=True), "kind": kind, "steps": steps, "sigmas_mode": sigmas_mode}
    # alphas_cumprod is reproducible bit for bit unless rescale_betas_zero_snr runs torch.sqrt on it (torch's CPU
    # sqrt/exp/log go through MKL VML and are not correctly rounded: up to 1 ulp off).
    if "alphas_cumprod" in t:
        meta["alphas_bit_exact"] = 0 if cfg.get("rescale_betas_zero_snr") else 1
    if mu is not None:
        meta["mu"] = repr(float(mu))
        meta["image_seq_len"] = image_seq_len
    save(f"sched/{name}.safetensors", t, meta)


def flux_mu(seq_len, cfg):
    return calculate_shift(seq_len, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                           cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))


def main():
    export("ddim_dit_25", DIT_DDIM, "auto", 25, 301)
    export("ddim_dit_50", DIT_DDIM, "auto", 50, 302)
    export("ddim_trailing", DDIM_TRAILING, "auto", 20, 303)
    export("ddim_linspace_cos", DDIM_LINSPACE_COS, "auto", 15, 304)
    export("dpm_dit_20", DIT_DDIM, "dpmpp_2m", 20, 305)
    export("dpm_dit_25", DIT_DDIM, "dpmpp_2m", 25, 306)
    export("dpm_vpred_scaled", DPM_VPRED, "auto", 18, 307)
    export("dpm_leading_cos", DPM_LEADING_COS, "auto", 12, 308)
    # FLUX: latent 128x128 -> 64x64 packed tokens (1024^2 image); 96x160 latent -> 48x80 tokens (768x1280).
    for name, (h, w) in (("flow_flux_64x64", (64, 64)), ("flow_flux_48x80", (48, 80))):
        seq = h * w
        export(name, FLUX, "auto", 28, 309 + h, mu=flux_mu(seq, FLUX), image_seq_len=seq, sigmas_mode="flux")
    export("flow_sd3_20", SD3, "auto", 20, 311)
    # Dynamic shifting without custom sigmas (scheduler's own linspace), and the linear time shift.
    export("flow_dynamic_default", FLUX, "auto", 10, 312, mu=flux_mu(1024, FLUX), image_seq_len=1024)
    export("flow_linear_shift", FLOW_LINEAR, "auto", 9, 313, mu=flux_mu(2304, FLOW_LINEAR), image_seq_len=2304,
           sigmas_mode="flux")


if __name__ == "__main__":
    main()
