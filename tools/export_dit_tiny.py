"""export_dit_tiny.py - a tiny DiT checkpoint (diffusers layout) and fp32 diffusers references for models/dit.c.

Writes
  tests/data/ckpt/dit-tiny/model_index.json               DiTPipeline, id2label (1000 entries)
  tests/data/ckpt/dit-tiny/transformer/config.json        DiTTransformer2DModel, 10 layers, 2 heads x 12 (D 24),
  tests/data/ckpt/dit-tiny/transformer/diffusion_pytorch_model.safetensors     patch 2, sample_size 8, 4 -> 8 ch
  tests/data/dit/tiny_b2.safetensors    batch 2, timesteps 999 and 17, labels 207 and 1000 (null)
  tests/data/dit/tiny_b4.safetensors    CFG-shaped batch 4: x = [lat, lat], labels [y0, y1, 1000, 1000], t = 500
  tests/data/dit/tiny_s12.safetensors   batch 1 on a 12x12 latent (not the trained 8x8: pos embed interpolated)
  tests/data/dit/tiny_smallvar.safetensors   block 0 and the final layer on a low-variance hidden (LN eps matters)
  tests/data/dit/tiny_eps0.1.safetensors     as tiny_b2 with config norm_eps 0.1 (norm3 follows the config)

Every weight is re-initialised from a seeded generator (also the adaLN-Zero and final projections that
diffusers zero-initialises, so every block changes the output). As in the released DiT checkpoints, the
timestep/class embedder is one module copied into every block (transformer_blocks.*.norm1.emb.*).
The weights are rounded to fp16 and saved as F16 (the 1001-row class table is duplicated in all 10 blocks,
f32 would make the file 1.7 MB); the reference forward runs in fp32 on exactly those fp16 values, so the
C side (which converts F16 -> f32 exactly at load) computes from the same numbers.

Reference tensors (float32): x [B,4,S,S], timesteps [B], labels [B] (integers stored as float), cond [B,D]
(block 0's CombinedTimestepLabelEmbeddings output), hidden_embed [B,N,D] (after patch embed + pos embed),
hidden_block0 / hidden_last [B,N,D] (after block 0 / block L-1), out [B,8,S,S] (model output);
tiny_smallvar: small_in [B,N,D], block0_out [B,N,D] = block 0 (small_in), final_out [B,8,S,S] = final (small_in).
"""
import copy
import math
import os

import torch
from diffusers import DiTTransformer2DModel

from refs_common import DATA, gen, randn, save, write_json

torch.set_num_threads(1)  # bit-reproducible reductions

CKPT = os.path.join(DATA, "ckpt", "dit-tiny")
CFG = dict(
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=4,
    out_channels=8,
    num_layers=10,
    sample_size=8,
    patch_size=2,
    num_embeds_ada_norm=1000,
)


def build():
    torch.manual_seed(0)  # module construction draws default inits; all are overwritten below
    model = DiTTransformer2DModel(**CFG).eval()
    g = gen(1234)
    sd = model.state_dict()
    new = {}
    for name in sorted(sd):
        t = sd[name]
        if ".norm1.emb." in name and not name.startswith("transformer_blocks.0."):
            continue  # copied from block 0 below
        if name.endswith("embedding_table.weight"):
            v = randn(g, *t.shape)  # nn.Embedding's N(0, 1)
        elif name.endswith(".weight"):
            fan_in = t[0].numel()
            scale = 1.0 / math.sqrt(fan_in)
            if ".norm1.linear." in name or name.startswith("proj_out_1."):
                scale *= 0.5  # adaLN modulations of order 0.3: every block matters, nothing explodes
            v = randn(g, *t.shape, scale=scale)
        else:  # biases
            v = randn(g, *t.shape, scale=0.1)
        new[name] = v.half().float()  # fp16-representable values (saved as F16)
    for name in sd:
        if ".norm1.emb." in name and name not in new:
            src = "transformer_blocks.0." + name.split(".", 2)[2]
            new[name] = new[src].clone()
    model.load_state_dict(new, strict=True)
    return model


def save_checkpoint(model):
    tr = os.path.join(CKPT, "transformer")
    os.makedirs(tr, exist_ok=True)
    # Save from a half copy: halving `model` itself would also round its non-persistent pos_embed buffer.
    copy.deepcopy(model).half().save_pretrained(tr, safe_serialization=True)
    # A few real ImageNet names, generic ones elsewhere (the pipeline only needs the map's shape).
    real = {0: "tench, Tinca tinca", 1: "goldfish, Carassius auratus", 207: "golden retriever", 360: "otter",
            883: "vase", 879: "umbrella", 2: "great white shark, white shark", 270: "white wolf, Arctic wolf"}
    id2label = {str(i): real.get(i, f"class {i}") for i in range(1000)}
    index = {
        "_class_name": "DiTPipeline",
        "_diffusers_version": __import__("diffusers").__version__,
        "id2label": id2label,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "transformer": ["diffusers", "DiTTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    write_json(os.path.join(CKPT, "model_index.json"), index)
    path = os.path.join(tr, "diffusion_pytorch_model.safetensors")
    print(f"wrote ckpt/dit-tiny: {os.path.getsize(path)} bytes of weights")


@torch.no_grad()
def reference(model, relpath, x, t, y, note):
    cap = {}
    hooks = [
        model.pos_embed.register_forward_hook(lambda m, i, o: cap.__setitem__("hidden_embed", o.clone())),
        model.transformer_blocks[0].register_forward_hook(lambda m, i, o: cap.__setitem__("hidden_block0", o.clone())),
        model.transformer_blocks[-1].register_forward_hook(lambda m, i, o: cap.__setitem__("hidden_last", o.clone())),
    ]
    out = model(x, timestep=t, class_labels=y).sample
    for h in hooks:
        h.remove()
    cond = model.transformer_blocks[0].norm1.emb(t, y, hidden_dtype=torch.float32)
    tensors = dict(x=x, timesteps=t, labels=y.float(), cond=cond, out=out, **cap)
    for k, v in tensors.items():
        assert torch.isfinite(v).all(), k
    print(f"  {relpath}: |out| rms {out.pow(2).mean().sqrt():.3f}, |hidden_last| rms "
          f"{cap['hidden_last'].pow(2).mean().sqrt():.3f}")
    save(relpath, tensors, dict(note=note, batch=x.shape[0], latent=x.shape[-1], **CFG))


@torch.no_grad()
def reference_small_var(model, relpath, x, t, y):
    """Block 0 and the final layer on a hidden state whose per-token variance (~4e-6) is below the LayerNorm
    eps, so eps 1e-6 vs 1e-5 changes the result by tens of percent. diffusers' own code runs both: a
    pre-hook swaps block 0's input, a hook replaces the last block's output (the input of the final layer)."""
    g = gen(7)
    B, N, D = x.shape[0], (x.shape[-1] // CFG["patch_size"]) ** 2, model.inner_dim
    # Zero-mean tokens: a large per-token offset would make fp32 LayerNorm itself cancel bits (torch's fp32
    # result was 1.2e-5 off float64 with an offset of 0.5), hiding the eps under rounding noise.
    small = randn(g, B, N, D, scale=2e-3)
    cap = {}

    def pre0(mod, args, kwargs):
        return (small,) + tuple(args[1:]), kwargs

    hooks = [
        model.transformer_blocks[0].register_forward_pre_hook(pre0, with_kwargs=True),
        model.transformer_blocks[0].register_forward_hook(lambda m, i, o: cap.__setitem__("block0_out", o.clone())),
        model.transformer_blocks[-1].register_forward_hook(lambda m, i, o: small.clone()),
    ]
    final_out = model(x, timestep=t, class_labels=y).sample
    for h in hooks:
        h.remove()
    cond = model.transformer_blocks[0].norm1.emb(t, y, hidden_dtype=torch.float32)
    tensors = dict(x=x, timesteps=t, labels=y.float(), cond=cond, small_in=small, block0_out=cap["block0_out"],
                   final_out=final_out)
    save(relpath, tensors, dict(note="block 0 and final layer on a hidden state of per-token variance ~4e-6",
                                batch=B, latent=x.shape[-1], **CFG))


def main():
    model = build()
    save_checkpoint(model)
    g = gen(42)
    x = randn(g, 2, 4, 8, 8)
    reference(model, "dit/tiny_b2.safetensors", x, torch.tensor([999.0, 17.0]), torch.tensor([207, 1000]),
              "batch 2, t 999 and 17, labels 207 and null")
    lat = randn(g, 2, 4, 8, 8)
    reference(model, "dit/tiny_b4.safetensors", torch.cat([lat, lat]), torch.full((4,), 500.0),
              torch.tensor([883, 2, 1000, 1000]), "CFG-shaped batch 4: [cond, cond, null, null]")
    reference(model, "dit/tiny_s12.safetensors", randn(g, 1, 4, 12, 12), torch.tensor([250.0]),
              torch.tensor([360]), "batch 1 on a 12x12 latent: pos embed recomputed, base_size 4")
    reference_small_var(model, "dit/tiny_smallvar.safetensors", x, torch.tensor([999.0, 17.0]),
                        torch.tensor([207, 1000]))
    # Same weights, config norm_eps 0.1: the MLP-branch LayerNorm (norm3) must follow the config, the
    # attention and final LayerNorms must not (the C test loads the checkpoint with the config edited).
    eps_model = DiTTransformer2DModel(**CFG, norm_eps=0.1).eval()
    eps_model.load_state_dict(model.state_dict(), strict=True)
    reference(eps_model, "dit/tiny_eps0.1.safetensors", x, torch.tensor([999.0, 17.0]), torch.tensor([207, 1000]),
              "batch 2 as tiny_b2, model config norm_eps 0.1")


if __name__ == "__main__":
    main()
