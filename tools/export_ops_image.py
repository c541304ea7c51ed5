"""export_ops_image.py - reference data for the embedding / image half of the CPU op library.

Writes tests/data/ops/{rope,timestep_embedding,pos_embed_2d,conv2d,groupnorm,upsample,patchify,
unpatchify}.safetensors, several cases per file (keys `caseN.<tensor>`, parameters in metadata as
`caseN.<param>`, `ncases` = number of cases). Oracles are diffusers' own functions where they exist
(FluxPosEmbed, apply_rotary_emb, get_timestep_embedding, get_2d_sincos_pos_embed, DiT's unpatchify
lines) and torch otherwise (conv2d, group_norm, interpolate), evaluated in float64 where diffusers does
not fix a dtype. Where diffusers computes in float32 (timestep embedding, RoPE application), the reference
is its float32 result: that is the behaviour to reproduce.

Run: tools/.venv/bin/python tools/export_ops_image.py
"""
import torch
import torch.nn.functional as F
from diffusers.models.embeddings import (apply_rotary_emb, get_2d_sincos_pos_embed,
                                         get_timestep_embedding)
from diffusers.models.transformers.transformer_flux import FluxPosEmbed

from refs_common import gen, randn, save

D64 = torch.float64


def export_rope():
    tensors, meta = {}, {}
    g = gen(101)
    # case0: FLUX layout (text ids all zero, then image ids (0, r, c)), small axes.
    # case1: fractional positions up to ~64 (large phases), three axes.
    # case2: one axis, odd N and H, theta != 10000.
    cases = []
    txt = torch.zeros(3, 3)
    rr, cc = torch.meshgrid(torch.arange(4.0), torch.arange(5.0), indexing="ij")
    img = torch.stack([torch.zeros(20), rr.reshape(-1), cc.reshape(-1)], dim=1)
    cases.append(dict(ids=torch.cat([txt, img]), axes=[4, 6, 6], theta=10000.0, B=2, H=3))
    cases.append(dict(ids=torch.rand(11, 3, generator=g) * 64.0, axes=[8, 12, 12], theta=10000.0, B=1, H=2))
    cases.append(dict(ids=torch.rand(7, 1, generator=g) * 20.0, axes=[10], theta=500.0, B=3, H=5))
    for i, c in enumerate(cases):
        ids = c["ids"].to(torch.float32)
        n, d = ids.shape[0], sum(c["axes"])
        cos, sin = FluxPosEmbed(theta=c["theta"], axes_dim=c["axes"])(ids)
        x = randn(g, c["B"], n, c["H"], d)  # ours: [B, N, H, d]
        out = apply_rotary_emb(x, (cos, sin), use_real=True, use_real_unbind_dim=-1, sequence_dim=1)
        # Cross-check against the classic [B, H, N, d] call (sequence_dim=2).
        out_bhnd = apply_rotary_emb(x.transpose(1, 2), (cos, sin), use_real=True, use_real_unbind_dim=-1,
                                    sequence_dim=2).transpose(1, 2)
        assert torch.equal(out, out_bhnd)
        # And against a float64 evaluation of the same math (differences: f32 rounding only).
        x64 = x.to(D64)
        xr = torch.stack([-x64[..., 1::2], x64[..., 0::2]], dim=-1).flatten(3)
        out64 = x64 * cos.to(D64)[None, :, None] + xr * sin.to(D64)[None, :, None]
        assert (out.to(D64) - out64).abs().max() < 1e-5
        tensors.update({f"case{i}.ids": ids, f"case{i}.cos": cos, f"case{i}.sin": sin,
                        f"case{i}.x": x, f"case{i}.out": out})
        meta[f"case{i}.theta"] = c["theta"]
        meta[f"case{i}.n_axes"] = len(c["axes"])
        for a, da in enumerate(c["axes"]):
            meta[f"case{i}.axis{a}"] = da
    meta["ncases"] = len(cases)
    save("ops/rope.safetensors", tensors, meta)


def export_timestep_embedding():
    tensors, meta = {}, {}
    cases = [
        # C, flip, shift, scale, max_period, t
        (256, 1, 0.0, 1.0, 10000.0, [0.0, 1.0, 250.5, 999.0, 731.25]),   # PixArt/SD3/FLUX style
        (256, 0, 1.0, 1.0, 10000.0, [0.0, 17.0, 500.0, 999.0]),          # DiT shift, sin first
        (38, 1, 1.0, 1000.0, 10000.0, [0.0, 0.25, 0.731, 1.0]),          # odd half (19), scale 1000
        (38, 0, 0.0, 1.0, 10000.0, [3.5, 42.0, 0.125]),                  # odd half, sin first
        (7, 0, 0.0, 1.0, 100.0, [3.5, 42.0]),                             # odd C: zero pad; max_period
    ]
    for i, (C, flip, shift, scale, period, t) in enumerate(cases):
        tt = torch.tensor(t, dtype=torch.float32)
        out = get_timestep_embedding(tt, C, flip_sin_to_cos=bool(flip), downscale_freq_shift=shift,
                                     scale=scale, max_period=period)
        assert out.dtype == torch.float32
        tensors[f"case{i}.t"] = tt
        tensors[f"case{i}.out"] = out
        meta.update({f"case{i}.flip": flip, f"case{i}.shift": shift, f"case{i}.scale": scale,
                     f"case{i}.max_period": period})
    meta["ncases"] = len(cases)
    save("ops/timestep_embedding.safetensors", tensors, meta)


def export_pos_embed_2d():
    tensors, meta = {}, {}
    cases = [
        # hp, wp, D, base_size, interpolation_scale
        (16, 16, 64, 16, 1.0),    # DiT-256 trained size (x_j = j)
        (6, 10, 24, 8, 1.0),      # non-square
        (12, 18, 40, 64, 2.0),    # PixArt-1024-like base 64, interpolation 2, off-size grid
        (5, 7, 8, 3, 0.5),        # odd everything, interpolation 0.5
    ]
    for i, (hp, wp, D, base, interp) in enumerate(cases):
        pe = get_2d_sincos_pos_embed(D, (hp, wp), base_size=base, interpolation_scale=interp, output_type="pt")
        assert pe.dtype == D64 and pe.shape == (hp * wp, D)
        tensors[f"case{i}.out"] = pe
        meta.update({f"case{i}.hp": hp, f"case{i}.wp": wp, f"case{i}.D": D, f"case{i}.base_size": base,
                     f"case{i}.interpolation_scale": interp})
    meta["ncases"] = len(cases)
    save("ops/pos_embed_2d.safetensors", tensors, meta)


def export_conv2d():
    tensors, meta = {}, {}
    g = gen(202)
    cases = [
        # B, Cin, Cout, H, W, k, bias
        (2, 5, 7, 9, 11, 3, 1),
        (2, 5, 7, 9, 11, 3, 0),
        (2, 5, 7, 9, 11, 1, 1),
        (2, 5, 7, 9, 11, 1, 0),
        (2, 64, 32, 17, 19, 3, 1),
    ]
    for i, (B, cin, cout, H, W, k, has_bias) in enumerate(cases):
        pad = (k - 1) // 2
        x = randn(g, B, cin, H, W)
        w = randn(g, cout, cin, k, k, scale=(cin * k * k) ** -0.5)
        b = randn(g, cout, scale=0.5) if has_bias else None
        out = F.conv2d(x.to(D64), w.to(D64), b.to(D64) if b is not None else None, stride=1, padding=pad)
        tensors.update({f"case{i}.x": x, f"case{i}.w": w, f"case{i}.out": out})
        if b is not None:
            tensors[f"case{i}.bias"] = b
        meta.update({f"case{i}.padding": pad, f"case{i}.has_bias": has_bias})
    meta["ncases"] = len(cases)
    save("ops/conv2d.safetensors", tensors, meta)


def export_groupnorm():
    tensors, meta = {}, {}
    g = gen(303)
    cases = [
        # shape, G, affine
        ((2, 64, 5, 7), 32, 1),
        ((2, 9, 6, 5), 3, 0),
        ((2, 9, 13), 3, 1),
        ((1, 64, 11), 32, 0),
    ]
    eps = 1e-6
    for i, (shape, G, affine) in enumerate(cases):
        x = randn(g, *shape, scale=2.0) + 0.75  # non-zero mean, non-unit variance
        C = shape[1]
        w = randn(g, C, scale=0.5) + 1.0 if affine else None
        b = randn(g, C, scale=0.5) if affine else None
        out = F.group_norm(x.to(D64), G, w.to(D64) if affine else None, b.to(D64) if affine else None, eps)
        tensors.update({f"case{i}.x": x, f"case{i}.out": out})
        if affine:
            tensors.update({f"case{i}.weight": w, f"case{i}.bias": b})
        meta.update({f"case{i}.groups": G, f"case{i}.affine": affine, f"case{i}.eps": eps})
    meta["ncases"] = len(cases)
    save("ops/groupnorm.safetensors", tensors, meta)


def export_upsample():
    g = gen(404)
    tensors = {}
    for i, shape in enumerate([(2, 3, 5, 7), (1, 4, 1, 3)]):
        x = randn(g, *shape)
        tensors[f"case{i}.x"] = x
        tensors[f"case{i}.out"] = F.interpolate(x, scale_factor=2, mode="nearest")
    save("ops/upsample.safetensors", tensors, {"ncases": 2})


def export_patchify():
    """Patchify + GEMM with the PatchEmbed conv weight viewed as [D, C*p*p] must equal the stride-p conv."""
    g = gen(505)
    tensors, meta = {}, {}
    cases = [(2, 4, 8, 6, 2, 5), (1, 3, 8, 12, 4, 7), (2, 2, 3, 5, 1, 3)]  # B, C, H, W, p, D
    for i, (B, C, H, W, p, D) in enumerate(cases):
        x = randn(g, B, C, H, W)
        w = randn(g, D, C, p, p, scale=(C * p * p) ** -0.5)
        b = randn(g, D, scale=0.5)
        conv = F.conv2d(x.to(D64), w.to(D64), b.to(D64), stride=p)      # [B, D, H/p, W/p]
        conv_tokens = conv.flatten(2).transpose(1, 2)                    # [B, N, D] (PatchEmbed flatten)
        hp, wp = H // p, W // p
        patches = x.reshape(B, C, hp, p, wp, p).permute(0, 2, 4, 1, 3, 5).reshape(B, hp * wp, C * p * p)
        chk = patches.to(D64) @ w.to(D64).reshape(D, -1).T + b.to(D64)
        assert torch.allclose(chk, conv_tokens, rtol=0, atol=1e-12)
        tensors.update({f"case{i}.x": x, f"case{i}.w": w, f"case{i}.bias": b, f"case{i}.patches": patches,
                        f"case{i}.conv_tokens": conv_tokens})
        meta[f"case{i}.p"] = p
    meta["ncases"] = len(cases)
    save("ops/patchify.safetensors", tensors, meta)


def export_unpatchify():
    """The two lines of DiTTransformer2DModel.forward that undo the patching."""
    g = gen(606)
    tensors, meta = {}, {}
    cases = [(2, 3, 4, 2, 5), (1, 2, 5, 3, 2), (2, 2, 3, 1, 4)]  # B, Hp, Wp, p, C
    for i, (B, height, width, p, C) in enumerate(cases):
        y = randn(g, B, height * width, p * p * C)
        hs = y.reshape(shape=(-1, height, width, p, p, C))
        hs = torch.einsum("nhwpqc->nchpwq", hs)
        out = hs.reshape(shape=(-1, C, height * p, width * p))
        tensors.update({f"case{i}.y": y, f"case{i}.out": out})
        meta[f"case{i}.p"] = p
    meta["ncases"] = len(cases)
    save("ops/unpatchify.safetensors", tensors, meta)


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    export_rope()
    export_timestep_embedding()
    export_pos_embed_2d()
    export_conv2d()
    export_groupnorm()
    export_upsample()
    export_patchify()
    export_unpatchify()
