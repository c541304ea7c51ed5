"""export_pipelines.py - end-to-end references for the DiT and FLUX pipelines on the tiny checkpoints.

Writes the scheduler configs of tests/data/ckpt/{dit-tiny,flux-tiny} (a 2023-style DDIM config without
timestep_spacing, as facebook/DiT-XL-2-256 ships; FLUX.1-dev's flow-match config), then runs diffusers'
DiTPipeline and FluxPipeline in fp32 on the CPU and exports, per case: the initial noise (torch's randn cannot
be reproduced in C, so ditserve loads it), the scheduler timesteps, every step's latents, the final latents and
the 8-bit image exactly as diffusers' numpy_to_pil makes it. Output: tests/data/pipe/<case>.safetensors.
"""
import os

import torch
from diffusers import DiTPipeline, DPMSolverMultistepScheduler, FluxPipeline

from refs_common import ROOT, StepRecorder, gen, randn, save, to_u8, write_json

CKPT = os.path.join(ROOT, "tests", "data", "ckpt")

DIT_SCHED = {  # facebook/DiT-XL-2-256 scheduler/scheduler_config.json (2023: no timestep_spacing)
    "_class_name": "DDIMScheduler", "_diffusers_version": "0.12.0.dev0", "beta_end": 0.02,
    "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": False, "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "set_alpha_to_one": True, "steps_offset": 0, "trained_betas": None}
FLUX_SCHED = {  # black-forest-labs/FLUX.1-dev scheduler/scheduler_config.json
    "_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.30.0.dev0",
    "base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True}


def dit_case(name, scheduler, labels, steps, guidance, seed):
    d = os.path.join(CKPT, "dit-tiny")
    pipe = DiTPipeline.from_pretrained(d, torch_dtype=torch.float32)
    if scheduler == "dpmpp_2m":
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    cfgt = pipe.transformer.config
    shape = (len(labels), cfgt.in_channels, cfgt.sample_size, cfgt.sample_size)
    noise = torch.randn(shape, generator=gen(seed), dtype=torch.float32)
    rec = StepRecorder(pipe.scheduler, len(labels))
    pipe.scheduler.step = rec
    out = pipe(class_labels=labels, guidance_scale=guidance, num_inference_steps=steps, generator=gen(seed),
               output_type="np")
    tensors = {"init_noise": noise, "timesteps": pipe.scheduler.timesteps.float(),
               "latents": torch.stack(rec.samples), "final_latents": rec.samples[-1],
               "image_u8": to_u8(out.images)}
    meta = {"class_labels": ",".join(str(x) for x in labels), "steps": steps, "guidance_scale": guidance,
            "scheduler": scheduler, "seed": seed, "height": out.images.shape[1], "width": out.images.shape[2]}
    save(f"pipe/{name}.safetensors", tensors, meta)


def flux_case(name, height, width, steps, guidance, true_cfg, seed, num_images=1):
    d = os.path.join(CKPT, "flux-tiny")
    pipe = FluxPipeline.from_pretrained(d, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                        tokenizer_2=None, torch_dtype=torch.float32)
    cfgt = pipe.transformer.config
    g = gen(seed)
    T = 7
    pe = randn(g, 1, T, cfgt.joint_attention_dim)
    pp = randn(g, 1, cfgt.pooled_projection_dim)
    npe = randn(g, 1, T, cfgt.joint_attention_dim) if true_cfg > 1 else None
    npp = randn(g, 1, cfgt.pooled_projection_dim) if true_cfg > 1 else None
    vsf = pipe.vae_scale_factor
    h, w = 2 * (height // (vsf * 2)), 2 * (width // (vsf * 2))
    c = cfgt.in_channels // 4
    noise = randn(g, num_images, c, h, w)
    packed = pipe._pack_latents(noise, num_images, c, h, w)
    rec = StepRecorder(pipe.scheduler, num_images)
    pipe.scheduler.step = rec
    out = pipe(prompt_embeds=pe, pooled_prompt_embeds=pp, negative_prompt_embeds=npe,
               negative_pooled_prompt_embeds=npp, true_cfg_scale=true_cfg, height=height, width=width,
               num_inference_steps=steps, guidance_scale=guidance, latents=packed,
               num_images_per_prompt=num_images, output_type="np")
    final = pipe._unpack_latents(rec.samples[-1], height, width, vsf)
    tensors = {"init_noise": noise, "prompt_embeds": pe, "pooled_prompt_embeds": pp,
               "timesteps": pipe.scheduler.timesteps.float(), "sigmas": pipe.scheduler.sigmas.float(),
               "latents_packed": torch.stack(rec.samples), "final_latents": final, "image_u8": to_u8(out.images)}
    if npe is not None:
        tensors.update({"negative_prompt_embeds": npe, "negative_pooled_prompt_embeds": npp})
    meta = {"steps": steps, "guidance_scale": guidance, "true_cfg_scale": true_cfg, "seed": seed,
            "height": height, "width": width, "num_images": num_images}
    save(f"pipe/{name}.safetensors", tensors, meta)


def main():
    torch.set_num_threads(1)
    write_json(os.path.join(CKPT, "dit-tiny", "scheduler", "scheduler_config.json"), DIT_SCHED)
    write_json(os.path.join(CKPT, "flux-tiny", "scheduler", "scheduler_config.json"), FLUX_SCHED)
    dit_case("dit_ddim", "ddim", [207, 1], 12, 4.0, 11)
    dit_case("dit_dpm", "dpmpp_2m", [3], 10, 4.0, 12)
    dit_case("dit_ddim_nocfg", "ddim", [5, 6], 8, 1.0, 13)
    flux_case("flux_square", 32, 32, 6, 3.5, 1.0, 21)
    flux_case("flux_nonsquare", 24, 40, 6, 3.5, 1.0, 22, num_images=2)
    flux_case("flux_truecfg", 32, 24, 5, 3.5, 2.0, 23)


if __name__ == "__main__":
    main()
