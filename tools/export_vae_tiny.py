"""export_vae_tiny.py - two tiny AutoencoderKL checkpoints (diffusers layout) and fp32 decoder references for models/vae.c.

Writes
  tests/data/ckpt/dit-tiny/vae/{config.json, diffusion_pytorch_model.safetensors}
      SD-style: latent 4 ch, post_quant_conv, block_out_channels (16, 16, 32, 32) (scale factor 8),
      layers_per_block 1 (2 resnets per up block), 8 groups, scaling_factor 0.18215, weights saved as F16.
  tests/data/ckpt/flux-tiny/vae/{config.json, diffusion_pytorch_model.safetensors}
      FLUX-style: latent 16 ch, no quant_conv / post_quant_conv, block_out_channels (16, 32, 32) (scale
      factor 4), layers_per_block 2 (3 resnets per up block), 4 groups, scaling_factor 0.3611,
      shift_factor 0.1159, weights saved as BF16.
  tests/data/vae/<name>_<h>x<w>.safetensors   batch 2 of raw diffusion latents and what diffusers makes of them
  tests/data/vae/dit_tiny_noattn_8x8.safetensors   latents and image of the dit-tiny weights decoded with
      mid_block_add_attention=False

Every weight (encoder included, so the saved model is a complete AutoencoderKL) is re-initialised from a
seeded generator: convs and linears N(0, 1/fan_in), biases N(0, 0.1^2), GroupNorm weights 1 + N(0, 0.2^2)
and biases N(0, 0.1^2), attention to_q/to_k 1.5x larger so the softmax is far from uniform. The values are
rounded to the storage dtype first and the fp32 reference runs on exactly those values, so the C side
(which converts F16/BF16 -> f32 exactly at load) computes from the same numbers.

Reference tensors (float32):
  latents  [B, Cl, h, w]   raw diffusion latents (input of ds_vae_decode)
  z        [B, Cl, h, w]   latents / scaling_factor + shift_factor (the pipelines' formula, fp32)
  post_quant [B, Cl, h, w] after post_quant_conv (only when the model has one)
  conv_in  [B, C, h, w]    after decoder.conv_in
  mid      [B, C, h, w]    after decoder.mid_block
  up0      [B, C, 2h, 2w]  after decoder.up_blocks[0] (resnets + upsampler; later blocks are left out
                           to keep the files small: the image checks them)
  image    [B, 3, s*h, s*w]  vae.decode(z).sample
  rgb8     [B, s*h, s*w, 3]  VaeImageProcessor.postprocess(image, "pil") as uint8, stored as float
"""
import json
import math
import os

import numpy as np
import torch
from diffusers import AutoencoderKL
from diffusers.image_processor import VaeImageProcessor

from refs_common import DATA, gen, randn, save

torch.set_num_threads(1)  # bit-reproducible reductions

MODELS = {
    "dit_tiny": dict(
        ckpt="dit-tiny", dtype=torch.float16, seed=4321,
        cfg=dict(in_channels=3, out_channels=3, latent_channels=4,
                 down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                 block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8,
                 sample_size=64, scaling_factor=0.18215),
        sizes=[(8, 8), (6, 10)],
    ),
    "flux_tiny": dict(
        ckpt="flux-tiny", dtype=torch.bfloat16, seed=8765,
        cfg=dict(in_channels=3, out_channels=3, latent_channels=16,
                 down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                 block_out_channels=(16, 32, 32), layers_per_block=2, norm_num_groups=4,
                 sample_size=32, scaling_factor=0.3611, shift_factor=0.1159,
                 use_quant_conv=False, use_post_quant_conv=False),
        sizes=[(8, 8), (10, 6)],
    ),
}


def build(spec):
    torch.manual_seed(0)  # module construction draws default inits; all are overwritten below
    model = AutoencoderKL(**spec["cfg"]).eval()
    g = gen(spec["seed"])
    sd = model.state_dict()
    new = {}
    for name in sorted(sd):
        t = sd[name]
        is_norm = "norm" in name.split(".")[-2]  # norm1, norm2, group_norm, conv_norm_out
        if is_norm and name.endswith(".weight"):
            v = 1.0 + randn(g, *t.shape, scale=0.2)
        elif name.endswith(".weight"):
            scale = 1.0 / math.sqrt(t[0].numel())
            if name.endswith(("to_q.weight", "to_k.weight")):
                scale *= 1.5
            v = randn(g, *t.shape, scale=scale)
        else:  # biases (conv, linear, norm)
            v = randn(g, *t.shape, scale=0.1)
        new[name] = v.to(spec["dtype"]).float()  # representable in the storage dtype
    model.load_state_dict(new, strict=True)
    return model


def save_checkpoint(model, spec):
    out = os.path.join(DATA, "ckpt", spec["ckpt"], "vae")
    os.makedirs(out, exist_ok=True)
    model.to(spec["dtype"]).save_pretrained(out, safe_serialization=True)
    model.float()
    # save_pretrained writes keys in insertion order: rewrite the config sorted for stable diffs
    cfg_path = os.path.join(out, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    path = os.path.join(out, "diffusion_pytorch_model.safetensors")
    size = os.path.getsize(path)
    assert size < 1_000_000, size
    print(f"wrote ckpt/{spec['ckpt']}/vae: {size} bytes of weights")


@torch.no_grad()
def reference(model, spec, name, latents):
    cfg = model.config
    shift = cfg.shift_factor if cfg.shift_factor is not None else 0.0
    z = latents / cfg.scaling_factor + shift
    cap = {}
    dec = model.decoder
    hooks = [dec.conv_in.register_forward_hook(lambda m, i, o: cap.__setitem__("conv_in", o.clone())),
             dec.mid_block.register_forward_hook(lambda m, i, o: cap.__setitem__("mid", o.clone()))]
    hooks.append(dec.up_blocks[0].register_forward_hook(lambda m, i, o: cap.__setitem__("up0", o.clone())))
    if model.post_quant_conv is not None:
        hooks.append(model.post_quant_conv.register_forward_hook(
            lambda m, i, o: cap.__setitem__("post_quant", o.clone())))
    image = model.decode(z).sample
    for h in hooks:
        h.remove()
    proc = VaeImageProcessor(vae_scale_factor=2 ** (len(cfg.block_out_channels) - 1))
    pils = proc.postprocess(image, output_type="pil")
    rgb8 = torch.from_numpy(np.stack([np.asarray(p) for p in pils]).astype(np.float32))
    tensors = dict(latents=latents, z=z, image=image, rgb8=rgb8, **cap)
    for k, v in tensors.items():
        assert torch.isfinite(v).all(), k
    b, c, h, w = latents.shape
    rel = f"vae/{name}_{h}x{w}.safetensors"
    clipped = ((image < -1) | (image > 1)).float().mean().item()
    print(f"  {rel}: image rms {image.pow(2).mean().sqrt():.3f}, clipped {clipped:.3f}, "
          f"mid rms {cap['mid'].pow(2).mean().sqrt():.3f}")
    save(rel, tensors, dict(batch=b, latent_h=h, latent_w=w, scaling_factor=cfg.scaling_factor, shift_factor=shift,
                            scale=2 ** (len(cfg.block_out_channels) - 1), n_up_blocks=len(cfg.block_out_channels)))


@torch.no_grad()
def reference_no_attention(model, spec, latents):
    """The same weights with mid_block_add_attention=False (the mid block is resnet, resnet): only the
    image, for the C loader run on the dit-tiny directory with that config flag flipped."""
    cfg = dict(spec["cfg"], mid_block_add_attention=False)
    plain = AutoencoderKL(**cfg).eval()
    sd = {k: v for k, v in model.state_dict().items() if ".mid_block.attentions." not in k}
    plain.load_state_dict(sd, strict=True)
    image = plain.decode(latents / plain.config.scaling_factor).sample
    assert torch.isfinite(image).all()
    b, c, h, w = latents.shape
    save(f"vae/dit_tiny_noattn_{h}x{w}.safetensors", dict(latents=latents, image=image),
         dict(batch=b, latent_h=h, latent_w=w, note="dit-tiny vae weights, mid_block_add_attention false"))


def main():
    for name, spec in MODELS.items():
        model = build(spec)
        g = gen(spec["seed"] + 1)
        refs = [(h, w, randn(g, 2, spec["cfg"]["latent_channels"], h, w)) for h, w in spec["sizes"]]
        for h, w, lat in refs:
            reference(model, spec, name, lat)
        if name == "dit_tiny":
            reference_no_attention(model, spec, refs[0][2])
        save_checkpoint(model, spec)


if __name__ == "__main__":
    main()
