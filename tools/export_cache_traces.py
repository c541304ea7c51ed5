"""export_cache_traces.py - cache-dit's own DBCache traces on the tiny DiT and FLUX checkpoints.

Runs **cache-dit itself** (cache_dit.enable_cache with DBCacheConfig / TaylorSeerCalibratorConfig objects that
cache_dit.load_cache_config builds from the flat JSON recorded in each file) on diffusers' DiTPipeline (DDIM,
batched CFG) and FluxPipeline (prompt_embeds, optional true CFG) from tests/data/ckpt/{dit-tiny,flux-tiny},
with injected initial noise, and exports per case (tests/data/cache/<case>.safetensors): the config (flat
JSON and cache-dit's name strings), the inputs, the cached step indices and every recorded residual diff per
context and CFG branch, the per-call decisions, the summary statistics (numpy percentiles as cache-dit's
summary() logs them) and the final latents / image. tests/data/cache/README.md documents the keys.

Each case runs in a fresh subprocess (cache-dit patches the pipeline *class*' __call__, so a second
enable_cache in one process would nest the wrappers), on a fresh pipeline, and the pipeline is called twice:
the second call must reproduce the first bit for bit (cache-dit re-creates every context at each pipeline
call), which shows that no state leaked between calls; the file holds the first call.

Usage: python tools/export_cache_traces.py            (all cases)
       python tools/export_cache_traces.py CASE ...   (selected cases, each in a subprocess)
       python tools/export_cache_traces.py --probe CASE  (print the per-step diffs with caching disabled
                                                          after warmup, to choose thresholds)
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch

from refs_common import ROOT, StepRecorder, gen, randn, save, to_u8

CKPT = os.path.join(ROOT, "tests", "data", "ckpt")

DIT = dict(model="dit", labels=[207, 1], steps=24, guidance=4.0, seed=31)
FLUX = dict(model="flux", height=32, width=32, steps=20, guidance=3.5, true_cfg=1.0, seed=41)
FLUX_CFG = dict(FLUX, true_cfg=2.0, seed=42)

# Each case: the flat cache-dit config (exactly the keys a cache-dit dict/YAML config takes under
# "cache_config"), the pipeline inputs, and `lists` for FLUX ("merged": cache-dit's default FLUX adapter,
# one 10-block list; "separate": a BlockAdapter over both lists, one context each).
# Thresholds were chosen from the --probe diffs so that each trace has cached and computed steps.
CASES = {
    # ---- DiT (10 blocks, CFG as one batch-4 call per step) ----
    "dit_defaults": dict(DIT, cache={}),
    "dit_F1B0_MC3": dict(DIT, cache={"Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "max_warmup_steps": 4,
                                     "max_continuous_cached_steps": 3, "residual_diff_threshold": 0.52}),
    "dit_F4B4": dict(DIT, cache={"Fn_compute_blocks": 4, "Bn_compute_blocks": 4, "max_warmup_steps": 4,
                                 "residual_diff_threshold": 0.5}),
    "dit_W4I2": dict(DIT, cache={"Fn_compute_blocks": 2, "max_warmup_steps": 4, "warmup_interval": 2,
                                 "residual_diff_threshold": 0.45}),
    "dit_max_cached": dict(DIT, cache={"Fn_compute_blocks": 2, "max_warmup_steps": 4, "max_cached_steps": 4,
                                       "residual_diff_threshold": 0.55}),
    "dit_acc_cap": dict(DIT, cache={"Fn_compute_blocks": 2, "max_warmup_steps": 4, "residual_diff_threshold": 0.55,
                                    "max_accumulated_residual_diff_threshold": 3.0}),
    "dit_mask_static": dict(DIT, cache={"Fn_compute_blocks": 2, "max_warmup_steps": 8,
                                        "steps_computation_mask": [1] * 6 + [0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0,
                                                                             0, 1, 1, 1],
                                        "steps_computation_policy": "static"}),
    "dit_mask_dynamic": dict(DIT, cache={"Fn_compute_blocks": 2, "max_warmup_steps": 8,
                                         "residual_diff_threshold": 0.48,
                                         "steps_computation_mask": [1] * 6 + [0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1,
                                                                              0, 0, 1, 1, 1],
                                         "steps_computation_policy": "dynamic"}),
    "dit_mask_fast": dict(DIT, cache={"Fn_compute_blocks": 2, "residual_diff_threshold": 0.48,
                                      "num_inference_steps": 24, "steps_computation_mask": "fast",
                                      "steps_computation_policy": "dynamic"}),
    "dit_taylor_o1": dict(DIT, cache={"Fn_compute_blocks": 1, "max_warmup_steps": 4, "residual_diff_threshold": 0.48,
                                      "max_continuous_cached_steps": 3, "enable_taylorseer": True,
                                      "enable_encoder_taylorseer": False, "taylorseer_cache_type": "residual",
                                      "taylorseer_order": 1}),
    "dit_taylor_o2": dict(DIT, cache={"Fn_compute_blocks": 1, "max_warmup_steps": 4, "residual_diff_threshold": 0.48,
                                      "max_continuous_cached_steps": 3, "enable_taylorseer": True,
                                      "enable_encoder_taylorseer": False, "taylorseer_cache_type": "residual",
                                      "taylorseer_order": 2}),
    "dit_thresh_ge1": dict(DIT, cache={"Fn_compute_blocks": 1, "max_warmup_steps": 4,
                                       "max_continuous_cached_steps": 2, "max_cached_steps": 12,
                                       "residual_diff_threshold": 1.0}),
    # ---- FLUX (4 double + 6 single blocks) ----
    "flux_defaults": dict(FLUX, lists="merged", cache={}),
    "flux_F1B0": dict(FLUX, lists="merged", cache={"Fn_compute_blocks": 1, "max_warmup_steps": 4,
                                                   "max_continuous_cached_steps": 3,
                                                   "residual_diff_threshold": 0.6}),
    "flux_F4B4": dict(FLUX, lists="merged", cache={"Fn_compute_blocks": 4, "Bn_compute_blocks": 4,
                                                   "max_warmup_steps": 4, "residual_diff_threshold": 0.55}),
    "flux_taylor_o2": dict(FLUX, lists="merged", cache={"Fn_compute_blocks": 1, "max_warmup_steps": 4,
                                                        "residual_diff_threshold": 0.6,
                                                        "max_continuous_cached_steps": 3, "enable_taylorseer": True,
                                                        "enable_encoder_taylorseer": True,
                                                        "taylorseer_cache_type": "residual", "taylorseer_order": 2}),
    "flux_thresh_ge1": dict(FLUX, lists="merged", cache={"Fn_compute_blocks": 1, "max_warmup_steps": 4,
                                                         "max_continuous_cached_steps": 3,
                                                         "residual_diff_threshold": 1.5}),
    "flux_cfg_separate": dict(FLUX_CFG, lists="merged", cache={"Fn_compute_blocks": 1, "max_warmup_steps": 4,
                                                               "residual_diff_threshold": 0.48,
                                                               "max_continuous_cached_steps": 3,
                                                               "enable_separate_cfg": True,
                                                               "cfg_compute_first": False,
                                                               "cfg_diff_compute_separate": True}),
    "flux_cfg_first_shared": dict(FLUX_CFG, lists="merged", cache={"Fn_compute_blocks": 1, "max_warmup_steps": 4,
                                                                   "residual_diff_threshold": 0.48,
                                                                   "max_continuous_cached_steps": 3,
                                                                   "enable_separate_cfg": True,
                                                                   "cfg_compute_first": True,
                                                                   "cfg_diff_compute_separate": False}),
    "flux_cfg_shared": dict(FLUX_CFG, lists="merged", cache={"Fn_compute_blocks": 1, "max_warmup_steps": 4,
                                                             "residual_diff_threshold": 0.48,
                                                             "max_continuous_cached_steps": 3,
                                                             "enable_separate_cfg": True,
                                                             "cfg_compute_first": False,
                                                             "cfg_diff_compute_separate": False}),
    "flux_lists_separate": dict(FLUX, lists="separate", cache={"Fn_compute_blocks": 1, "max_warmup_steps": 4,
                                                               "residual_diff_threshold": 0.65,
                                                               "max_continuous_cached_steps": 3}),
}


class Log:
    """Class-level wrappers around cache-dit's context/manager methods: every can_cache decision, every
    add_residual_diff call (accepted or not) and every context refresh, in call order."""

    def __init__(self):
        self.calls, self.diffs, self.refreshes = [], [], []

    def install(self):
        from cache_dit.caching.cache_contexts.cache_context import CachedContext
        from cache_dit.caching.cache_contexts.cache_manager import CachedContextManager
        log = self
        orig_can, orig_add, orig_ref = (CachedContextManager.can_cache, CachedContext.add_residual_diff,
                                        CachedContextManager.maybe_refresh)

        def can_cache(mgr, *a, **k):
            ctx = mgr.get_context()
            r = orig_can(mgr, *a, **k)
            log.calls.append((ctx.name, ctx.get_current_transformer_step(), ctx.get_current_step(),
                              int(ctx.is_separate_cfg_step()), int(bool(r))))
            return r

        def add_residual_diff(ctx, diff):
            d = diff.item() if isinstance(diff, torch.Tensor) else float(diff)
            step = str(ctx.get_current_step())
            cfg = ctx.is_separate_cfg_step()
            accepted = step not in (ctx.cfg_residual_diffs if cfg else ctx.residual_diffs)
            log.diffs.append((ctx.name, ctx.get_current_step(), int(cfg), d, int(accepted)))
            return orig_add(ctx, diff)

        def maybe_refresh(mgr, *a, **k):
            r = orig_ref(mgr, *a, **k)
            if r[0]:
                log.refreshes.append(r[1])
            return r

        CachedContextManager.can_cache = can_cache
        CachedContext.add_residual_diff = add_residual_diff
        CachedContextManager.maybe_refresh = maybe_refresh

    def clear(self):
        self.calls, self.diffs, self.refreshes = [], [], []


def build_configs(flat):
    """cache-dit's own loader on {"cache_config": flat} (expands a preset mask with num_inference_steps)."""
    import cache_dit
    cache_config, calibrator_config = cache_dit.load_cache_config({"cache_config": dict(flat)})
    return cache_config, calibrator_config


def make_pipe(case):
    from diffusers import DiTPipeline, FluxPipeline
    if case["model"] == "dit":
        return DiTPipeline.from_pretrained(os.path.join(CKPT, "dit-tiny"), torch_dtype=torch.float32)
    return FluxPipeline.from_pretrained(os.path.join(CKPT, "flux-tiny"), text_encoder=None, text_encoder_2=None,
                                        tokenizer=None, tokenizer_2=None, torch_dtype=torch.float32)


def enable(pipe, case, cache_config, calibrator_config):
    import cache_dit
    from cache_dit import BlockAdapter, ForwardPattern
    if case.get("lists") == "separate":
        t = pipe.transformer
        adapter = BlockAdapter(pipe=pipe, transformer=t, blocks=[t.transformer_blocks, t.single_transformer_blocks],
                               forward_pattern=[ForwardPattern.Pattern_1, ForwardPattern.Pattern_1],
                               check_forward_pattern=True)
        cache_dit.enable_cache(adapter, cache_config=cache_config, calibrator_config=calibrator_config)
        return adapter
    cache_dit.enable_cache(pipe, cache_config=cache_config, calibrator_config=calibrator_config)
    return pipe


def inputs(pipe, case):
    cfgt = pipe.transformer.config
    if case["model"] == "dit":
        labels = case["labels"]
        shape = (len(labels), cfgt.in_channels, cfgt.sample_size, cfgt.sample_size)
        return {"init_noise": torch.randn(shape, generator=gen(case["seed"]), dtype=torch.float32)}
    g = gen(case["seed"])
    T = 7
    t = {"prompt_embeds": randn(g, 1, T, cfgt.joint_attention_dim),
         "pooled_prompt_embeds": randn(g, 1, cfgt.pooled_projection_dim)}
    if case["true_cfg"] > 1:
        t["negative_prompt_embeds"] = randn(g, 1, T, cfgt.joint_attention_dim)
        t["negative_pooled_prompt_embeds"] = randn(g, 1, cfgt.pooled_projection_dim)
    vsf = pipe.vae_scale_factor
    h, w = 2 * (case["height"] // (vsf * 2)), 2 * (case["width"] // (vsf * 2))
    t["init_noise"] = randn(g, 1, cfgt.in_channels // 4, h, w)
    return t


def run_pipe(pipe, case, inp):
    """One pipeline call; returns (final latents, uint8 image, timesteps)."""
    n_keep = len(case["labels"]) if case["model"] == "dit" else 1
    rec = StepRecorder(pipe.scheduler, n_keep)
    pipe.scheduler.step = rec
    try:
        if case["model"] == "dit":
            out = pipe(class_labels=case["labels"], guidance_scale=case["guidance"],
                       num_inference_steps=case["steps"], generator=gen(case["seed"]), output_type="np")
            final = rec.samples[-1]
        else:
            noise = inp["init_noise"]
            _, c, h, w = noise.shape
            packed = pipe._pack_latents(noise, 1, c, h, w)
            out = pipe(prompt_embeds=inp["prompt_embeds"], pooled_prompt_embeds=inp["pooled_prompt_embeds"],
                       negative_prompt_embeds=inp.get("negative_prompt_embeds"),
                       negative_pooled_prompt_embeds=inp.get("negative_pooled_prompt_embeds"),
                       true_cfg_scale=case["true_cfg"], height=case["height"], width=case["width"],
                       num_inference_steps=case["steps"], guidance_scale=case["guidance"], latents=packed,
                       output_type="np")
            final = pipe._unpack_latents(rec.samples[-1], case["height"], case["width"], pipe.vae_scale_factor)
    finally:
        pipe.scheduler.step = rec.inner
    return final, to_u8(out.images), pipe.scheduler.timesteps.float()


def context_names(pipe):
    return list(pipe.transformer._context_names)


def snapshot(pipe):
    """Per-context state straight from cache-dit's contexts (they live in the manager until the next call)."""
    mgr = pipe._context_manager
    res = []
    for name in context_names(pipe):
        ctx = mgr.get_context(name)
        res.append({"name": name, "cache_config": ctx.cache_config, "calibrator_config": ctx.calibrator_config,
                    "cached_steps": list(ctx.cached_steps), "residual_diffs": dict(ctx.residual_diffs),
                    "cfg_cached_steps": list(ctx.cfg_cached_steps),
                    "cfg_residual_diffs": dict(ctx.cfg_residual_diffs),
                    "accumulated_cached_steps": ctx.accumulated_cached_steps,
                    "cfg_accumulated_cached_steps": ctx.cfg_accumulated_cached_steps,
                    "accumulated_executed_steps": ctx.accumulated_executed_steps,
                    "accumulated_transformer_executed_steps": ctx.accumulated_transformer_executed_steps,
                    "accumulated_residual_diff": ctx.accumulated_residual_diff,
                    "cfg_accumulated_residual_diff": ctx.cfg_accumulated_residual_diff})
    return res


def percentiles(values):
    """What cache-dit's summary() logs (numpy default linear rule, over all recorded values, sentinels too)."""
    if not values:
        return None
    v = list(values)
    return {"p00": float(np.percentile(v, 0)), "p25": float(np.percentile(v, 25)),
            "p50": float(np.percentile(v, 50)), "p75": float(np.percentile(v, 75)),
            "p95": float(np.percentile(v, 95)), "min": float(np.min(v)), "max": float(np.max(v))}


def jdump(x):
    return json.dumps(x, sort_keys=True, separators=(",", ":"))


def cfg_dict(c):
    if c is None:
        return None
    d = c.as_dict()
    return {k: (str(v) if k == "cache_type" else v) for k, v in d.items()}


def run_case(name, probe=False):
    import cache_dit
    torch.set_num_threads(1)
    case = CASES[name]
    flat = dict(case["cache"])
    if probe:  # never cache after warmup: every threshold-tested step records its diff against the last step
        flat["residual_diff_threshold"] = 1e-12
        flat.pop("max_accumulated_residual_diff_threshold", None)
        if flat.get("steps_computation_policy") == "static":
            flat["steps_computation_policy"] = "dynamic"
    log = Log()
    log.install()
    cache_config, calibrator_config = build_configs(flat)
    pipe = make_pipe(case)
    target = enable(pipe, case, cache_config, calibrator_config)
    inp = inputs(pipe, case)

    final, image, timesteps = run_pipe(pipe, case, inp)
    snap = snapshot(pipe)
    calls, diffs, refreshes = log.calls, log.diffs, log.refreshes
    stats = cache_dit.summary(target, details=False, logging=False)
    strify = cache_dit.strify(target)
    if probe:
        for c in snap:
            print(c["name"], "diffs:", {k: round(v, 4) for k, v in c["residual_diffs"].items()})
            if c["cfg_residual_diffs"]:
                print(c["name"], "cfg diffs:", {k: round(v, 4) for k, v in c["cfg_residual_diffs"].items()})
        return

    # second call on the same pipeline: must reproduce the first (fresh contexts per pipeline call)
    log.clear()
    final2, image2, _ = run_pipe(pipe, case, inp)
    snap2 = snapshot(pipe)
    strip = lambda s: [{k: v for k, v in c.items() if k not in ("cache_config", "calibrator_config")} for c in s]
    rerun_identical = bool(torch.equal(final, final2) and torch.equal(image, image2) and
                           strip(snap) == strip(snap2) and log.calls == calls and log.diffs == diffs)
    if not rerun_identical:
        raise SystemExit(f"{name}: the second pipeline call differs from the first")

    # summary() cross-check: its last entry is the transformer-level one (= the last context's stats)
    last = stats[-1]
    assert list(last.cached_steps) == snap[-1]["cached_steps"], "summary cached_steps"
    assert dict(last.residual_diffs) == snap[-1]["residual_diffs"], "summary residual_diffs"
    assert list(last.cfg_cached_steps) == snap[-1]["cfg_cached_steps"], "summary cfg_cached_steps"

    steps = case["steps"]
    tensors = dict(inp)
    tensors.update({"timesteps": timesteps, "final_latents": final, "image_u8": image})
    cc0 = snap[0]["cache_config"]
    meta = {"case": name, "model": case["model"], "steps": steps, "guidance_scale": case["guidance"],
            "seed": case["seed"], "cache_config_json": jdump(case["cache"]),
            "cache_config_resolved": jdump(cfg_dict(cc0)),
            "calibrator_config_resolved": jdump(cfg_dict(snap[0]["calibrator_config"])),
            "strify": strify, "config_strify": cc0.strify(),
            "calibrator_strify": (snap[0]["calibrator_config"].strify() if snap[0]["calibrator_config"]
                                  else "T0O0"),
            "enable_separate_cfg": int(bool(cc0.enable_separate_cfg)),
            "num_contexts": len(snap), "contexts": ",".join(c["name"].rsplit("_", 1)[0] for c in snap),
            "auto_refreshes": len(refreshes), "rerun_identical": int(rerun_identical),
            "cache_dit": cache_dit.__version__}
    if case["model"] == "dit":
        meta.update({"class_labels": ",".join(str(x) for x in case["labels"]), "scheduler": "ddim"})
    else:
        meta.update({"height": case["height"], "width": case["width"], "true_cfg_scale": case["true_cfg"],
                     "lists": case["lists"], "num_images": 1})
    # how close the nearest recorded diff came to the threshold (relative): a port whose diffs differ by
    # less than this reproduces every threshold decision
    thr = float(cc0.residual_diff_threshold)
    pos = [d for c in snap for br in ("", "cfg_") for d in c[f"{br}residual_diffs"].values() if d > 0]
    if pos and 0 < thr < 1:
        meta["min_threshold_margin"] = repr(min(abs(d - thr) / thr for d in pos))
    if isinstance(case["cache"].get("steps_computation_mask"), str):
        meta["steps_computation_mask_expanded"] = "".join(str(x) for x in cc0.steps_computation_mask)
    blocks = {"dit": [10], "flux": [10] if case.get("lists") == "merged" else [4, 6]}[case["model"]]
    for i, c in enumerate(snap):
        p = f"ctx{i}"
        meta[f"{p}.name"] = c["name"].rsplit("_", 1)[0]
        meta[f"{p}.num_blocks"] = blocks[i]
        meta[f"{p}.config_strify"] = c["cache_config"].strify()
        for br in ("", "cfg_"):
            cached = c[f"{br}cached_steps"]
            rd = c[f"{br}residual_diffs"]
            meta[f"{p}.{br}cached_steps"] = ",".join(str(s) for s in cached)
            meta[f"{p}.{br}num_cached"] = len(cached)
            meta[f"{p}.{br}num_diffs"] = len(rd)
            meta[f"{p}.{br}accumulated_residual_diff"] = repr(c[f"{br}accumulated_residual_diff"])
            mask = torch.zeros(steps)
            for s in cached:
                mask[s] = 1
            if br == "" or cc0.enable_separate_cfg:
                tensors[f"{p}.{br}step_cached"] = mask
            if rd:
                tensors[f"{p}.{br}residual_diffs"] = torch.tensor(list(rd.values()), dtype=torch.float64)
                tensors[f"{p}.{br}residual_diff_steps"] = torch.tensor([float(k) for k in rd.keys()])
                pc = percentiles(rd.values())
                for k, v in pc.items():
                    meta[f"{p}.{br}stats.{k}"] = repr(v)
        meta[f"{p}.accumulated_cached_steps"] = c["accumulated_cached_steps"]
        meta[f"{p}.cfg_accumulated_cached_steps"] = c["cfg_accumulated_cached_steps"]
        meta[f"{p}.accumulated_executed_steps"] = c["accumulated_executed_steps"]
        meta[f"{p}.accumulated_transformer_executed_steps"] = c["accumulated_transformer_executed_steps"]
        # every decision in call order: transformer_step, step, is_cfg, cached
        rows = [r[1:] for r in calls if r[0] == c["name"]]
        tensors[f"{p}.calls"] = torch.tensor(rows, dtype=torch.float32)
        # every add_residual_diff call in call order: step, is_cfg, diff, accepted
        drows = [r[1:] for r in diffs if r[0] == c["name"]]
        if drows:
            tensors[f"{p}.diff_log"] = torch.tensor(drows, dtype=torch.float64)
    save(f"cache/{name}.safetensors", tensors, meta)
    summary = "; ".join(
        f"{meta[f'ctx{i}.name']}: cached {meta[f'ctx{i}.cached_steps'] or '-'}"
        + (f" | cfg {meta[f'ctx{i}.cfg_cached_steps'] or '-'}" if cc0.enable_separate_cfg else "")
        for i in range(len(snap)))
    print(f"  {name}: {strify}: {summary}")


def main():
    args = sys.argv[1:]
    if args and args[0] == "--case":
        run_case(args[1])
        return
    if args and args[0] == "--probe":
        for n in args[1:]:
            print("==", n)
            run_case(n, probe=True)
        return
    names = args or list(CASES)
    for n in names:
        if n not in CASES:
            raise SystemExit(f"unknown case {n}")
    env = dict(os.environ, PYTHONHASHSEED="0")
    for n in names:
        subprocess.run([sys.executable, os.path.abspath(__file__), "--case", n], check=True, env=env)


if __name__ == "__main__":
    main()
