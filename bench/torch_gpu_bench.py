#!/usr/bin/env python3
"""torch_gpu_bench.py - the PyTorch/diffusers peer of bench/gpu_bench.c, run in the same device check
(tests/gpu/bench_hook.sh): the same shapes, the same timing method and the same FLOP count, printed as the same
`RESULT gpu_bench <case> key=value ... STATUS` lines with the case names prefixed `torch_`.

    python3 bench/torch_gpu_bench.py [--configs DIR] [--flux-blocks ND,NS|full] [--iters N] [--warmup N]
                                     [--gemm N] [--cases gemm,flux,dit] [--device cuda] [--dtype bfloat16]

Cases:
  torch_gemm_bf16  torch.matmul(x, w.t()) on M = N = K = --gemm bf16 matrices (x[M,K]·w[N,K]ᵀ as ds_cuda_linear):
                   the bf16 peak PyTorch's cuBLAS reaches on this card in this run; 10 products per timed batch.
  torch_flux_fwd   diffusers FluxTransformer2DModel from bench/configs/flux1-dev/transformer/config.json with
                   num_layers / num_single_layers = --flux-blocks (default 2,4 as gpu_bench; `full` = 19,38),
                   random init (constructed on the device in bf16), eager, PyTorch SDPA (diffusers' default
                   attention processor); 1024x1024: 4096 image tokens, 512 text tokens, batch 1, guidance 3.5,
                   timestep 0.5 (sigma; the model multiplies by 1000), position ids as FluxPipeline makes them.
  torch_dit_fwd    diffusers DiTTransformer2DModel from bench/configs/dit-xl-2-256 (the config keeps the legacy
                   Transformer2DModel class name; its keys are passed to DiTTransformer2DModel), batch 2,
                   timesteps 500, labels (207, 1000 = null class).

Timing: torch.cuda.synchronize(), perf_counter, the call, synchronize, perf_counter per iteration after --warmup
untimed calls, under torch.inference_mode(); the median of --iters. FLOPs as gpu_bench (models.md §10: every
linear 2·M·K·N, attention core 4·S²·D per block). Memory: torch.cuda.max_memory_allocated() from before the model
is built to after the timed forwards, minus what was allocated before (weights + activations + inputs, as
gpu_bench's cudaMemGetInfo delta). full_est_ms / full_mem_est_mb extrapolate a reduced FLUX to 19 + 38 blocks with
the per-block times of one forward timed block by block (hooks that synchronise) and the missing blocks' bytes.

Without torch, CUDA or diffusers it prints a SKIP line (RESULT gpu_bench torch_all ... SKIP) and exits 0; an
exception inside a case prints RESULT ... ERROR (the peer failing never fails the device check).
"""
import argparse
import inspect
import json
import math
import os
import statistics
import sys
import time

FULL_DOUBLE, FULL_SINGLE = 19, 38


def out(case, status, **kv):
    fields = " ".join(f"{k}={v}" for k, v in kv.items())
    print(f"RESULT gpu_bench torch_{case} {fields} {status}", flush=True)


def field(s):
    return "".join("_" if c in " =\t\n" else c for c in str(s))[:300]


def skip(reason):
    print(f"SKIP: {reason}", flush=True)
    print(f"RESULT gpu_bench torch_all ms=- tflops=- reason={field(reason)} SKIP", flush=True)
    sys.exit(0)


# ---- FLOP counts (models.md §10), identical to gpu_bench.c ------------------------------------------------------

def flux_flops(c, nd, ns, N, T, B):
    D = c["num_attention_heads"] * c["attention_head_dim"]
    M = 4 * D
    S = N + T
    dbl_gemm = 8.0 * S * D * D + 4.0 * S * D * M + 2.0 * (2.0 * D * 6.0 * D)
    sgl_gemm = 2.0 * S * D * (3.0 * D + M) + 2.0 * S * (D + M) * D + 2.0 * D * 3.0 * D
    att = 4.0 * S * S * D
    F = 256.0
    cin = c.get("in_channels", 64)
    cout = c.get("out_channels") or cin
    embed = (2.0 * N * cin * D + 2.0 * T * c.get("joint_attention_dim", 4096) * D + 2.0 * (F * D + D * D) +
             2.0 * (c.get("pooled_projection_dim", 768) * D + D * D))
    if c.get("guidance_embeds", False):
        embed += 2.0 * (F * D + D * D)
    fin = 2.0 * D * 2.0 * D + 2.0 * N * D * cout
    return B * (nd * dbl_gemm + ns * sgl_gemm + embed + fin), B * (nd + ns) * att


def dit_flops(c, N, B):
    D = c["num_attention_heads"] * c["attention_head_dim"]
    Ff = 4.0 * D
    p2 = c["patch_size"] ** 2
    cout = c.get("out_channels") or c["in_channels"]
    blk = 8.0 * N * D * D + 4.0 * N * D * Ff + 2.0 * D * 6.0 * D
    embed = 2.0 * N * (c["in_channels"] * p2) * D + 2.0 * (256.0 * D + D * D)
    fin = 2.0 * D * 2.0 * D + 2.0 * N * D * p2 * cout
    return B * (c["num_layers"] * blk + embed + fin), B * c["num_layers"] * 4.0 * N * N * D


# ---- helpers ----------------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, torch, dev, dtype, warmup, iters):
        self.torch, self.dev, self.dtype, self.warmup, self.iters = torch, dev, dtype, warmup, iters
        self.cuda = dev.type == "cuda"
        self.peak_tflops = float("nan")

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.dev)

    def time_calls(self, fn):
        for _ in range(self.warmup):
            self.sync()
            fn()
        ms = []
        for _ in range(self.iters):
            self.sync()
            a = time.perf_counter()
            fn()
            self.sync()
            ms.append((time.perf_counter() - a) * 1e3)
        return statistics.median(ms), min(ms)

    def mem_begin(self):
        if not self.cuda:
            return 0
        self.torch.cuda.synchronize(self.dev)
        self.torch.cuda.empty_cache()
        self.torch.cuda.reset_peak_memory_stats(self.dev)
        return self.torch.cuda.memory_allocated(self.dev)

    def mem_peak_mb(self, base):
        if not self.cuda:
            return float("nan")
        return (self.torch.cuda.max_memory_allocated(self.dev) - base) / 2**20

    def build(self, cls, cfg):
        """cls(**cfg keys its __init__ takes), parameters created on the device in the bench dtype."""
        torch = self.torch
        params = inspect.signature(cls.__init__).parameters
        kw = {k: v for k, v in cfg.items() if k in params and not k.startswith("_")}
        prev = torch.get_default_dtype()
        torch.manual_seed(0)
        try:
            torch.set_default_dtype(self.dtype)
            with torch.device(self.dev):
                m = cls(**kw)
        finally:
            torch.set_default_dtype(prev)
        # as from_pretrained(torch_dtype=...): floating parameters and buffers (e.g. DiT's pos_embed) in the dtype
        return m.to(device=self.dev, dtype=self.dtype).eval()


def model_bytes(m):
    return sum(p.numel() * p.element_size() for p in m.parameters()) + sum(
        b.numel() * b.element_size() for b in m.buffers())


def load_cfg(configs, name):
    with open(os.path.join(configs, name, "transformer", "config.json")) as f:
        return json.load(f)


# ---- cases ------------------------------------------------------------------------------------------------------

def bench_gemm(b, n):
    torch = b.torch
    g = torch.Generator(device=b.dev).manual_seed(11)
    x = torch.randn(n, n, device=b.dev, dtype=b.dtype, generator=g)
    w = torch.randn(n, n, device=b.dev, dtype=b.dtype, generator=g) / math.sqrt(n)
    y = torch.empty(n, n, device=b.dev, dtype=b.dtype)
    wt = w.t()
    batch = 10
    with torch.inference_mode():
        for _ in range(3):
            torch.matmul(x, wt, out=y)
        ms = []
        for _ in range(b.iters):
            b.sync()
            a = time.perf_counter()
            for _ in range(batch):
                torch.matmul(x, wt, out=y)
            b.sync()
            ms.append((time.perf_counter() - a) * 1e3 / batch)
    med = statistics.median(ms)
    b.peak_tflops = 2.0 * n ** 3 / (med * 1e9)
    out("gemm_bf16", "INFO", ms=f"{med:.4f}", tflops=f"{b.peak_tflops:.1f}", m=n, n=n, k=n,
        iters=f"{b.iters}x{batch}", dtype=str(b.dtype).replace("torch.", ""))
    del x, w, y, wt


def bench_flux(b, configs, nd, ns):
    torch = b.torch
    from diffusers import FluxTransformer2DModel
    cfg = load_cfg(configs, "flux1-dev")
    cfg = dict(cfg, num_layers=nd, num_single_layers=ns)
    h2 = w2 = 64  # 1024x1024: latent 128x128, packed 2x2 -> 64x64 tokens
    N, T = h2 * w2, 512
    base = b.mem_begin()
    t0 = time.perf_counter()
    m = b.build(FluxTransformer2DModel, cfg)
    build_s = time.perf_counter() - t0
    c = m.config
    g = torch.Generator(device=b.dev).manual_seed(21)
    hidden = torch.randn(1, N, c.in_channels, device=b.dev, dtype=b.dtype, generator=g)
    enc = torch.randn(1, T, c.joint_attention_dim, device=b.dev, dtype=b.dtype, generator=g)
    pooled = torch.randn(1, c.pooled_projection_dim, device=b.dev, dtype=b.dtype, generator=g)
    ts = torch.full((1,), 0.5, device=b.dev, dtype=b.dtype)
    guid = torch.full((1,), 3.5, device=b.dev, dtype=b.dtype) if c.guidance_embeds else None
    img_ids = torch.zeros(h2, w2, 3, device=b.dev, dtype=b.dtype)  # FluxPipeline._prepare_latent_image_ids
    img_ids[..., 1] += torch.arange(h2, device=b.dev, dtype=b.dtype)[:, None]
    img_ids[..., 2] += torch.arange(w2, device=b.dev, dtype=b.dtype)[None, :]
    img_ids = img_ids.reshape(N, 3)
    txt_ids = torch.zeros(T, 3, device=b.dev, dtype=b.dtype)

    def fwd():
        return m(hidden_states=hidden, encoder_hidden_states=enc, pooled_projections=pooled, timestep=ts,
                 img_ids=img_ids, txt_ids=txt_ids, guidance=guid, return_dict=False)[0]

    with torch.inference_mode():
        med, mn = b.time_calls(fwd)
        mem = b.mem_peak_mb(base)
        # one forward timed block by block (synchronising hooks)
        acc = {"d": 0.0, "s": 0.0}
        handles = []

        def hooks(blocks, key):
            for blk in blocks:
                def pre(mod, args):
                    b.sync()
                    mod._bench_t0 = time.perf_counter()

                def post(mod, args, output, key=key):
                    b.sync()
                    acc[key] += (time.perf_counter() - mod._bench_t0) * 1e3
                handles.append(blk.register_forward_pre_hook(pre))
                handles.append(blk.register_forward_hook(post))

        hooks(m.transformer_blocks, "d")
        hooks(m.single_transformer_blocks, "s")
        b.sync()
        a = time.perf_counter()
        fwd()
        b.sync()
        total = (time.perf_counter() - a) * 1e3
        for h in handles:
            h.remove()
    t_dbl = acc["d"] / nd if nd else 0.0
    t_sgl = acc["s"] / ns if ns else 0.0
    gemm, attn = flux_flops(cfg, nd, ns, N, T, 1)
    fgemm, fattn = flux_flops(cfg, FULL_DOUBLE, FULL_SINGLE, N, T, 1)
    tfl = (gemm + attn) / (med * 1e9)
    full_ms = med + (FULL_DOUBLE - nd) * t_dbl + (FULL_SINGLE - ns) * t_sgl
    dbl_b = model_bytes(m.transformer_blocks[0]) if nd else 0
    sgl_b = model_bytes(m.single_transformer_blocks[0]) if ns else 0
    wmb = model_bytes(m) / 2**20
    full_mem = mem + ((FULL_DOUBLE - nd) * dbl_b + (FULL_SINGLE - ns) * sgl_b) / 2**20
    out("flux_fwd", "INFO", ms=f"{med:.2f}", tflops=f"{tfl:.1f}", frac_peak=f"{tfl / b.peak_tflops:.3f}",
        blocks=f"{nd}+{ns}", tokens=f"{N}+{T}", batch=1, min_ms=f"{mn:.2f}", gemm_tflop=f"{gemm / 1e12:.3f}",
        attn_tflop=f"{attn / 1e12:.3f}", mem_mb=f"{mem:.0f}", weights_mb=f"{wmb:.0f}",
        act_mb=f"{mem - wmb:.0f}", t_double_ms=f"{t_dbl:.3f}", t_single_ms=f"{t_sgl:.3f}",
        t_rest_ms=f"{total - acc['d'] - acc['s']:.3f}", full_est_ms=f"{full_ms:.1f}",
        full_est_tflops=f"{(fgemm + fattn) / (full_ms * 1e9):.1f}", full_tflop=f"{(fgemm + fattn) / 1e12:.2f}",
        full_mem_est_mb=f"{full_mem:.0f}", build_s=f"{build_s:.1f}")
    del m, hidden, enc, pooled


def bench_dit(b, configs):
    torch = b.torch
    from diffusers import DiTTransformer2DModel
    cfg = load_cfg(configs, "dit-xl-2-256")
    B = 2
    base = b.mem_begin()
    m = b.build(DiTTransformer2DModel, cfg)
    c = m.config
    S, C = c.sample_size, c.in_channels
    g = torch.Generator(device=b.dev).manual_seed(31)
    x = torch.randn(B, C, S, S, device=b.dev, dtype=b.dtype, generator=g)
    t = torch.full((B,), 500, device=b.dev, dtype=torch.int64)
    y = torch.tensor([207, c.num_embeds_ada_norm][:B], device=b.dev, dtype=torch.int64)

    def fwd():
        return m(x, timestep=t, class_labels=y, return_dict=False)[0]

    with torch.inference_mode():
        med, mn = b.time_calls(fwd)
        mem = b.mem_peak_mb(base)
    N = (S // c.patch_size) ** 2
    full = dict(cfg)
    full.update(num_layers=c.num_layers, out_channels=c.out_channels)
    gemm, attn = dit_flops(full, N, B)
    tfl = (gemm + attn) / (med * 1e9)
    wmb = model_bytes(m) / 2**20
    out("dit_fwd", "INFO", ms=f"{med:.3f}", tflops=f"{tfl:.1f}", frac_peak=f"{tfl / b.peak_tflops:.3f}", batch=B,
        tokens=N, layers=c.num_layers, min_ms=f"{mn:.3f}", gemm_tflop=f"{gemm / 1e12:.4f}",
        attn_tflop=f"{attn / 1e12:.4f}", mem_mb=f"{mem:.0f}", weights_mb=f"{wmb:.0f}", act_mb=f"{mem - wmb:.0f}")
    del m, x


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default=os.path.join(here, "configs"))
    ap.add_argument("--flux-blocks", default=os.environ.get("DS_BENCH_FLUX_BLOCKS") or "2,4")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--gemm", type=int, default=8192)
    ap.add_argument("--cases", default="gemm,flux,dit")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    a = ap.parse_args()
    if a.flux_blocks == "full":
        nd, ns = FULL_DOUBLE, FULL_SINGLE
    else:
        nd, ns = (int(v) for v in a.flux_blocks.split(","))
    if not (0 <= nd <= FULL_DOUBLE and 0 <= ns <= FULL_SINGLE and nd + ns >= 1 and 1 <= a.iters <= 100):
        ap.error("bad --flux-blocks or --iters")

    try:
        import torch
    except Exception as e:  # noqa: BLE001
        skip(f"torch not importable: {e}")
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        skip("torch.cuda.is_available() is False")
    try:
        import diffusers
    except Exception as e:  # noqa: BLE001
        skip(f"diffusers not importable ({type(e).__name__}: {e}); see tools/fetch_gpu_wheels.sh")
    try:
        from diffusers.utils import logging as dlogging
        dlogging.set_verbosity_error()
    except Exception:  # noqa: BLE001 - only quiets a cast notice
        pass
    dtype = getattr(torch, a.dtype)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"torch_gpu_bench: torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__}, "
          f"python {sys.version.split()[0]}, device {name}, {a.dtype}, FLUX blocks {nd}+{ns}, "
          f"iters {a.iters} after {a.warmup} warm-up", flush=True)
    out("versions", "INFO", torch=field(torch.__version__), diffusers=field(diffusers.__version__),
        device=field(name))
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    b = Bench(torch, dev, dtype, a.warmup, a.iters)
    cases = [("gemm", lambda: bench_gemm(b, a.gemm)), ("flux", lambda: bench_flux(b, a.configs, nd, ns)),
             ("dit", lambda: bench_dit(b, a.configs))]
    for key, fn in cases:
        if key not in a.cases:
            continue
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - the peer failing is reported, never fatal
            import traceback
            traceback.print_exc()
            case = {"gemm": "gemm_bf16", "flux": "flux_fwd", "dit": "dit_fwd"}[key]
            out(case, "ERROR", error=field(f"{type(e).__name__}: {e}"))
        if dev.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
