"""export_flux_tiny.py - a tiny FLUX.1 checkpoint (diffusers layout) and fp32 diffusers references for models/flux.c.

Writes
  tests/data/ckpt/flux-tiny/model_index.json            FluxPipeline: transformer, vae, scheduler; text encoders and
                                                         tokenizers [null, null]
  tests/data/ckpt/flux-tiny/transformer/config.json     FluxTransformer2DModel, 4 double + 6 single blocks,
  tests/data/ckpt/flux-tiny/transformer/diffusion_pytorch_model.safetensors
                                                         2 heads x 16 (D 32), rope axes (4, 6, 6), in/out 64 channels,
                                                         joint_attention_dim 24, pooled_projection_dim 12,
                                                         guidance_embeds true (FLUX.1-dev-like)
  tests/data/flux/tiny_b2_s8.safetensors        batch 2, latent 16x8x8  -> 4x4 = 16 image tokens, 7 text tokens
  tests/data/flux/tiny_b2_s6x10.safetensors     batch 2, latent 16x6x10 -> 3x5 = 15 image tokens, 7 text tokens
  tests/data/flux/tiny_schnell_b2_s8.safetensors  the same weights without time_text_embed.guidance_embedder.* and
                                                 guidance_embeds false (FLUX.1-schnell-like), inputs of tiny_b2_s8

Every weight is re-initialised from a seeded generator (also the ones diffusers zero-initialises or sets to one,
so every block, gate and norm weight changes the output). The weights are rounded to fp16 and saved as F16 (f32
would pass 1 MB); the reference forward runs in fp32 on exactly those fp16 values, so the C side (which converts
F16 -> f32 exactly at load) computes from the same numbers.

Reference tensors (float32), names as the C test reads them:
  latents [B,16,H,W]                  the pipeline's latent (input of the pack helper)
  hidden_in [B,N,64]                  FluxPipeline._pack_latents(latents): the transformer's hidden_states
  unpacked [B,16,H,W]                 FluxPipeline._unpack_latents(hidden_in, 8H, 8W, 8) (== latents)
  encoder_in [B,T,24]  pooled [B,12]  timestep [B] (sigma)  guidance [B] (dev files only)
  img_ids [N,3] (FluxPipeline._prepare_latent_image_ids)  txt_ids [T,3]
  temb [B,D]                          time_text_embed output
  hidden_embed [B,N,D]  encoder_embed [B,T,D]   x_embedder / context_embedder outputs
  rope_cos, rope_sin [T+N, 16]        pos_embed(cat(txt_ids, img_ids))
  hidden_double0, encoder_double0     after transformer_blocks[0]
  hidden_double_last, encoder_double_last   after transformer_blocks[-1]
  cat_single_last [B,T+N,D]           cat(encoder, hidden) after single_transformer_blocks[-1]
  out [B,N,64]                        model output
"""
import math
import os

import torch
from diffusers import FluxPipeline, FluxTransformer2DModel

from refs_common import DATA, gen, randn, save, write_json

torch.set_num_threads(1)  # bit-reproducible reductions

CKPT = os.path.join(DATA, "ckpt", "flux-tiny")
CFG = dict(
    patch_size=1,
    in_channels=64,
    out_channels=None,
    num_layers=4,
    num_single_layers=6,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=24,
    pooled_projection_dim=12,
    guidance_embeds=True,
    axes_dims_rope=(4, 6, 6),
)
TXT = 7


def init_weights(sd, g):
    """Fresh values for every tensor of a state dict, in sorted-name order."""
    new = {}
    for name in sorted(sd):
        t = sd[name]
        if name.endswith(("norm_q.weight", "norm_k.weight", "norm_added_q.weight", "norm_added_k.weight")):
            v = 1.0 + randn(g, *t.shape, scale=0.2)  # RMSNorm weights (ones in diffusers)
        elif name.endswith(".weight"):
            fan_in = t.shape[1]
            scale = 1.0 / math.sqrt(fan_in)
            if ".norm1.linear." in name or ".norm1_context.linear." in name or ".norm.linear." in name \
                    or name.startswith("norm_out.linear."):
                scale *= 0.5  # adaLN modulations of order 0.3: every block matters, nothing explodes
            v = randn(g, *t.shape, scale=scale)
        else:  # biases
            v = randn(g, *t.shape, scale=0.1)
        new[name] = v.half().float()  # fp16-representable values (saved as F16)
    return new


def build():
    torch.manual_seed(0)  # module construction draws default inits; all are overwritten below
    model = FluxTransformer2DModel(**CFG).eval()
    model.load_state_dict(init_weights(model.state_dict(), gen(2024)), strict=True)
    return model


def build_schnell(dev):
    torch.manual_seed(0)
    model = FluxTransformer2DModel(**dict(CFG, guidance_embeds=False)).eval()
    sd = {k: v for k, v in dev.state_dict().items() if ".guidance_embedder." not in k}
    model.load_state_dict(sd, strict=True)
    return model


def save_checkpoint(model):
    tr = os.path.join(CKPT, "transformer")
    os.makedirs(tr, exist_ok=True)
    model.half().save_pretrained(tr, safe_serialization=True)
    model.float()
    index = {
        "_class_name": "FluxPipeline",
        "_diffusers_version": __import__("diffusers").__version__,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": [None, None],
        "text_encoder_2": [None, None],
        "tokenizer": [None, None],
        "tokenizer_2": [None, None],
        "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    write_json(os.path.join(CKPT, "model_index.json"), index)
    path = os.path.join(tr, "diffusion_pytorch_model.safetensors")
    print(f"wrote ckpt/flux-tiny: {os.path.getsize(path)} bytes of weights")


def make_inputs(g, batch, h, w):
    latents = randn(g, batch, 16, h, w)
    hidden_in = FluxPipeline._pack_latents(latents, batch, 16, h, w)
    unpacked = FluxPipeline._unpack_latents(hidden_in, h * 8, w * 8, 8)
    assert torch.equal(unpacked, latents)
    img_ids = FluxPipeline._prepare_latent_image_ids(batch, h // 2, w // 2, "cpu", torch.float32)
    # The pipeline passes all-zero text ids; non-zero ones here make a wrong [text, image] order or ignored text
    # ids visible in the rope tables.
    txt_ids = torch.zeros(TXT, 3)
    txt_ids[:, 0] = torch.arange(TXT) % 3
    txt_ids[:, 2] = torch.arange(TXT)
    return dict(
        latents=latents,
        hidden_in=hidden_in,
        unpacked=unpacked,
        encoder_in=randn(g, batch, TXT, CFG["joint_attention_dim"]),
        pooled=randn(g, batch, CFG["pooled_projection_dim"]),
        timestep=torch.tensor([1.0, 0.37]),
        guidance=torch.tensor([3.5, 1.25]),
        img_ids=img_ids,
        txt_ids=txt_ids,
    )


@torch.no_grad()
def reference(model, relpath, inp, note):
    cap = {}

    def keep(name):
        return lambda m, i, o: cap.__setitem__(name, o.clone() if torch.is_tensor(o) else tuple(x.clone() for x in o))

    hooks = [
        model.time_text_embed.register_forward_hook(keep("temb")),
        model.x_embedder.register_forward_hook(keep("hidden_embed")),
        model.context_embedder.register_forward_hook(keep("encoder_embed")),
        model.pos_embed.register_forward_hook(keep("rope")),
        model.transformer_blocks[0].register_forward_hook(keep("double0")),
        model.transformer_blocks[-1].register_forward_hook(keep("double_last")),
        model.single_transformer_blocks[-1].register_forward_hook(keep("single_last")),
    ]
    guided = model.config.guidance_embeds
    out = model(
        hidden_states=inp["hidden_in"],
        encoder_hidden_states=inp["encoder_in"],
        pooled_projections=inp["pooled"],
        timestep=inp["timestep"],
        img_ids=inp["img_ids"],
        txt_ids=inp["txt_ids"],
        guidance=inp["guidance"] if guided else None,
    ).sample
    for h in hooks:
        h.remove()
    tensors = {k: v for k, v in inp.items() if guided or k != "guidance"}
    tensors.update(
        temb=cap["temb"],
        hidden_embed=cap["hidden_embed"],
        encoder_embed=cap["encoder_embed"],
        rope_cos=cap["rope"][0],
        rope_sin=cap["rope"][1],
        encoder_double0=cap["double0"][0],
        hidden_double0=cap["double0"][1],
        encoder_double_last=cap["double_last"][0],
        hidden_double_last=cap["double_last"][1],
        cat_single_last=torch.cat([cap["single_last"][0], cap["single_last"][1]], dim=1),
        out=out,
    )
    for k, v in tensors.items():
        assert torch.isfinite(v).all(), k
    rms = lambda t: t.pow(2).mean().sqrt().item()  # noqa: E731
    print(f"  {relpath}: rms temb {rms(cap['temb']):.3f}, hidden_double_last {rms(tensors['hidden_double_last']):.3f}, "
          f"cat_single_last {rms(tensors['cat_single_last']):.3f}, out {rms(out):.3f}")
    cfg = {k: v for k, v in CFG.items() if k != "out_channels"}
    cfg["guidance_embeds"] = guided
    save(relpath, tensors, dict(note=note, batch=inp["hidden_in"].shape[0], text_len=TXT,
                                latent_hw=tuple(inp["latents"].shape[-2:]), **cfg))


def main():
    model = build()
    save_checkpoint(model)
    g = gen(7)
    inp8 = make_inputs(g, 2, 8, 8)
    reference(model, "flux/tiny_b2_s8.safetensors", inp8, "batch 2, latent 8x8 (16 tokens), text 7, sigma 1.0 / 0.37")
    inp610 = make_inputs(g, 2, 6, 10)
    reference(model, "flux/tiny_b2_s6x10.safetensors", inp610,
              "batch 2, non-square latent 6x10 (3x5 = 15 tokens), text 7")
    reference(build_schnell(model), "flux/tiny_schnell_b2_s8.safetensors", inp8,
              "schnell-like: the dev weights minus guidance_embedder, guidance_embeds false; inputs of tiny_b2_s8")


if __name__ == "__main__":
    main()
