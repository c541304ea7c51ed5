#!/usr/bin/env python3
"""export_ops_transformer.py - reference data for the transformer half of the CPU op library.

Writes tests/data/ops/<op>.safetensors for linear, layernorm, rmsnorm, modulate, gate_add, gelu,
silu, softmax, add and attention (three files: attention, attention_long, attention_longk). Each file
holds several cases with keys `caseN.<tensor>` and parameters in the metadata (`cases`, `caseN.eps`,
...). Inputs are seeded float32; every reference is computed in float64 by the torch function that
diffusers' DiT blocks call (F.linear, F.layer_norm, F.rms_norm, F.gelu, F.silu, torch.softmax,
F.scaled_dot_product_attention) from the float32 inputs, then stored as float32. Shapes are small
and odd (not multiples of 4/8/thread counts) so remainder paths are exercised.

Run: tools/.venv/bin/python tools/export_ops_transformer.py
"""
import torch
import torch.nn.functional as F

from refs_common import gen, randn, save


def f64(t):
    return t.to(torch.float64)


def export_linear():
    g = gen(101)
    t, meta = {}, {}
    # (leading dims of x, K, N, has_bias); weights scaled like nn.Linear init (1/sqrt(K))
    cases = [((13,), 67, 29, True), ((7, 11), 301, 193, True), ((3, 5), 9, 17, False), ((1,), 1, 1, True)]
    for i, (lead, k, n, has_bias) in enumerate(cases):
        x = randn(g, *lead, k)
        w = randn(g, n, k, scale=k ** -0.5)
        b = randn(g, n) if has_bias else None
        ref = F.linear(f64(x), f64(w), f64(b) if b is not None else None)
        t[f"case{i}.x"], t[f"case{i}.w"], t[f"case{i}.out"] = x, w, ref
        if b is not None:
            t[f"case{i}.b"] = b
        meta[f"case{i}.has_bias"] = int(has_bias)
    meta["cases"] = len(cases)
    save("ops/linear.safetensors", t, meta)


def export_layernorm():
    g = gen(102)
    t, meta = {}, {}
    # (shape, affine, eps, input offset/scale): case1 has a large mean to stress the statistics.
    cases = [((7, 37), True, 1e-5, 0.0, 1.0), ((2, 5, 64), False, 1e-6, 5.0, 3.0), ((3, 1, 129), True, 1e-6, 0.0, 1.0),
             ((4, 3), False, 1e-5, -2.0, 0.01)]
    for i, (shape, affine, eps, off, sc) in enumerate(cases):
        x = randn(g, *shape, scale=sc) + off
        d = shape[-1]
        w = randn(g, d, scale=0.5) + 1.0 if affine else None
        b = randn(g, d, scale=0.5) if affine else None
        ref = F.layer_norm(f64(x), (d,), f64(w) if affine else None, f64(b) if affine else None, eps)
        t[f"case{i}.x"], t[f"case{i}.out"] = x, ref
        if affine:
            t[f"case{i}.w"], t[f"case{i}.b"] = w, b
        meta[f"case{i}.affine"] = int(affine)
        meta[f"case{i}.eps"] = repr(eps)
    meta["cases"] = len(cases)
    save("ops/layernorm.safetensors", t, meta)


def export_rmsnorm():
    g = gen(103)
    t, meta = {}, {}
    cases = [((7, 37), True, 1e-6, 1.0), ((2, 5, 33), False, 1e-5, 2.0), ((3, 3, 128), True, 1e-6, 0.05)]
    for i, (shape, has_w, eps, sc) in enumerate(cases):
        x = randn(g, *shape, scale=sc)
        d = shape[-1]
        w = randn(g, d, scale=0.5) + 1.0 if has_w else None
        ref = F.rms_norm(f64(x), (d,), f64(w) if has_w else None, eps)
        t[f"case{i}.x"], t[f"case{i}.out"] = x, ref
        if has_w:
            t[f"case{i}.w"] = w
        meta[f"case{i}.has_weight"] = int(has_w)
        meta[f"case{i}.eps"] = repr(eps)
    meta["cases"] = len(cases)
    save("ops/rmsnorm.safetensors", t, meta)


def export_modulate():
    """adaLN modulate with shift/scale taken as column chunks of an emb [B, 6·D] projection."""
    g = gen(104)
    t, meta = {}, {}
    # (B, N, D, chunks in emb, shift chunk, scale chunk)
    cases = [(2, 7, 37, 6, 0, 1), (3, 5, 19, 6, 3, 4), (1, 9, 13, 2, 0, 1)]
    for i, (b, n, d, k, ish, isc) in enumerate(cases):
        x = randn(g, b, n, d)
        emb = randn(g, b, k * d, scale=0.5)
        shift, scale = f64(emb[:, ish * d:(ish + 1) * d]), f64(emb[:, isc * d:(isc + 1) * d])
        ref = f64(x) * (1 + scale[:, None, :]) + shift[:, None, :]
        t[f"case{i}.x"], t[f"case{i}.emb"], t[f"case{i}.out"] = x, emb, ref
        meta[f"case{i}.shift_chunk"], meta[f"case{i}.scale_chunk"] = ish, isc
    meta["cases"] = len(cases)
    save("ops/modulate.safetensors", t, meta)


def export_gate_add():
    g = gen(105)
    t, meta = {}, {}
    # (B, N, D, chunks in emb, gate chunk or -1 for no gate)
    cases = [(2, 7, 37, 6, 2), (3, 5, 19, 6, 5), (2, 3, 21, 6, -1)]
    for i, (b, n, d, k, ig) in enumerate(cases):
        res = randn(g, b, n, d)
        x = randn(g, b, n, d)
        emb = randn(g, b, k * d, scale=0.5)
        if ig >= 0:
            gate = f64(emb[:, ig * d:(ig + 1) * d])
            ref = f64(res) + gate[:, None, :] * f64(x)
        else:
            ref = f64(res) + f64(x)
        t[f"case{i}.residual"], t[f"case{i}.x"], t[f"case{i}.emb"], t[f"case{i}.out"] = res, x, emb, ref
        meta[f"case{i}.gate_chunk"] = ig
    meta["cases"] = len(cases)
    save("ops/gate_add.safetensors", t, meta)


def special_inputs(g, rows, cols, scale):
    x = randn(g, rows, cols, scale=scale)
    extremes = torch.tensor([-30.0, -12.0, -9.0, -5.5, -3.0, -1e-3, -1e-20, 0.0, 1e-20, 1e-3, 3.0, 5.5, 9.0, 12.0, 30.0])
    x.view(-1)[: extremes.numel()] = extremes
    return x


def export_gelu():
    g = gen(106)
    t, meta = {}, {}
    cases = [("none", (7, 37), 3.0), ("tanh", (7, 37), 3.0), ("none", (3, 5, 11), 1.0), ("tanh", (3, 5, 11), 1.0)]
    for i, (approx, shape, sc) in enumerate(cases):
        x = special_inputs(g, shape[0], int(torch.tensor(shape[1:]).prod()), sc).reshape(shape)
        t[f"case{i}.x"], t[f"case{i}.out"] = x, F.gelu(f64(x), approximate=approx)
        meta[f"case{i}.kind"] = 0 if approx == "none" else 1  # ds_gelu_kind
    meta["cases"] = len(cases)
    save("ops/gelu.safetensors", t, meta)


def export_silu():
    g = gen(107)
    t = {}
    cases = [((7, 37), 4.0), ((2, 3, 13), 1.0)]
    for i, (shape, sc) in enumerate(cases):
        x = special_inputs(g, shape[0], int(torch.tensor(shape[1:]).prod()), sc).reshape(shape)
        t[f"case{i}.x"], t[f"case{i}.out"] = x, F.silu(f64(x))
    save("ops/silu.safetensors", t, {"cases": len(cases)})


def export_softmax():
    g = gen(108)
    t = {}
    x0 = randn(g, 7, 37, scale=3.0)
    x1 = randn(g, 3, 300, scale=10.0)
    x2 = randn(g, 2, 5, 19) + 80.0  # large common offset: needs the max subtraction
    x3 = randn(g, 5, 23)
    x3[0, 3:9] = float("-inf")  # partial -inf row (a masked softmax row)
    x3[2, :22] = float("-inf")  # only one finite entry
    for i, x in enumerate([x0, x1, x2, x3]):
        t[f"case{i}.x"], t[f"case{i}.out"] = x, torch.softmax(f64(x), dim=-1)
    save("ops/softmax.safetensors", t, {"cases": 4})


def export_add():
    g = gen(109)
    t = {}
    for i, shape in enumerate([(7, 37), (2, 3, 5, 7)]):
        a, b = randn(g, *shape), randn(g, *shape)
        t[f"case{i}.a"], t[f"case{i}.b"], t[f"case{i}.out"] = a, b, f64(a) + f64(b)
    save("ops/add.safetensors", t, {"cases": 2})


def sdpa_ref(q, k, v, mask, scale):
    """q [B, Nq, H, d], k/v [B, Nk, H, d] (the ditserve layout) -> out [B, Nq, H, d], in float64."""
    qt, kt, vt = (f64(a).transpose(1, 2) for a in (q, k, v))  # [B, H, N, d]
    o = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=f64(mask) if mask is not None else None,
                                       scale=scale if scale > 0 else None)
    return o.transpose(1, 2)


def export_attention(relpath, seed, cases):
    """cases: (B, Nq, Nk, H, d, mask shape as (Mb, Mh) or None, scale (0 = default), with -inf entries)."""
    g = gen(seed)
    t, meta = {}, {}
    for i, (b, nq, nk, h, d, mshape, scale, neg_inf) in enumerate(cases):
        q, k, v = randn(g, b, nq, h, d), randn(g, b, nk, h, d), randn(g, b, nk, h, d)
        mask = None
        if mshape is not None:
            mask = randn(g, mshape[0], mshape[1], nq, nk, scale=2.0)
            if neg_inf:
                drop = torch.rand(mask.shape, generator=g) < 0.3
                mask[drop] = float("-inf")
                mask[..., 1, :] = float("-inf")  # a fully masked query row: SDPA returns zeros there
            t[f"case{i}.mask"] = mask
        t[f"case{i}.q"], t[f"case{i}.k"], t[f"case{i}.v"] = q, k, v
        t[f"case{i}.out"] = sdpa_ref(q, k, v, mask, scale)
        meta[f"case{i}.scale"] = repr(scale)
        meta[f"case{i}.has_mask"] = int(mask is not None)
    meta["cases"] = len(cases)
    save(relpath, t, meta)


def main():
    torch.set_num_threads(1)
    export_linear()
    export_layernorm()
    export_rmsnorm()
    export_modulate()
    export_gate_add()
    export_gelu()
    export_silu()
    export_softmax()
    export_add()
    export_attention("ops/attention.safetensors", 110, [
        (2, 17, 23, 3, 24, None, 0.0, False),       # Nq != Nk, default scale, no mask
        (2, 19, 11, 3, 40, (2, 3), 0.3, False),     # full [B, H, Nq, Nk] mask, explicit scale
        (2, 13, 29, 3, 24, (1, 3), 0.0, False),     # mask broadcast over batch
        (2, 13, 29, 3, 40, (2, 1), 0.0, True),      # broadcast over heads, -inf entries, fully masked row
        (1, 5, 7, 3, 24, (1, 1), 0.0, False),       # one mask for every batch and head
        (2, 1, 1, 3, 40, None, 0.0, False),         # single query and key
    ])
    export_attention("ops/attention_long.safetensors", 111, [
        (1, 300, 257, 3, 24, None, 0.0, False),     # several query tiles, a remainder tile
    ])
    export_attention("ops/attention_longk.safetensors", 112, [
        (1, 9, 530, 3, 24, (1, 1), 0.0, False),     # more keys than one key block (512)
    ])


if __name__ == "__main__":
    main()
