"""torch_dit_forward.py DIR [batch] [iters] - the PyTorch/diffusers peer of bench/dit_forward.c: one
DiTTransformer2DModel forward (fp32, CPU, eager, randomly initialised from DIR/transformer/config.json) on the
same shapes, printing the same JSON line."""
import json
import os
import resource
import sys
import time

import torch
from diffusers import DiTTransformer2DModel


def main():
    d = sys.argv[1]
    B = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    iters = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.manual_seed(0)
    with open(os.path.join(d, "transformer", "config.json")) as f:
        cfg = json.load(f)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    model = DiTTransformer2DModel(**{k: v for k, v in cfg.items() if k in DiTTransformer2DModel.__init__.__code__.co_varnames}).eval()
    S, C = model.config.sample_size, model.config.in_channels
    x = torch.randn(B, C, S, S)
    t = torch.full((B,), 500, dtype=torch.int64)
    y = torch.tensor([207 if b % 2 == 0 else 1000 for b in range(B)])
    ms = []
    with torch.inference_mode():
        for i in range(iters + 1):
            a = time.perf_counter()
            model(x, timestep=t, class_labels=y)
            if i:
                ms.append((time.perf_counter() - a) * 1e3)
    ms.sort()
    N = (S // model.config.patch_size) ** 2
    D = model.config.num_attention_heads * model.config.attention_head_dim
    flops = B * model.config.num_layers * (24.0 * N * D * D + 4.0 * N * N * D)
    med = ms[len(ms) // 2]
    print(json.dumps({"impl": f"diffusers-{__import__('diffusers').__version__}/torch-{torch.__version__}",
                      "batch": B, "tokens": N, "median_ms": round(med, 1), "gflops": round(flops / (med * 1e6), 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "threads":
                      torch.get_num_threads()}))


if __name__ == "__main__":
    main()
