"""refs_common.py - shared helpers for the reference exporters in tools/.

Every exported file is a safetensors file of float32 tensors whose __metadata__ records the op
parameters (as strings) and the exact versions of python/torch/diffusers/numpy that produced it.
Inputs come from a seeded torch.Generator so a rerun reproduces the files bit for bit.
"""
import os
import platform
import sys

import numpy
import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")


def versions():
    import diffusers
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "numpy": numpy.__version__,
    }


def gen(seed):
    """A CPU torch.Generator seeded with `seed`."""
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def randn(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * scale


def to_u8(images):
    """diffusers' numpy_to_pil conversion of float images in [0, 1]."""
    return torch.from_numpy((images * 255).round().astype("uint8").astype(numpy.float32))


class StepRecorder:
    """Wraps scheduler.step to keep every step's prev_sample (first `keep` rows)."""

    def __init__(self, sched, keep):
        self.sched, self.keep, self.samples, self.inner = sched, keep, [], sched.step

    def __call__(self, *a, **k):
        out = self.inner(*a, **k)
        prev = out[0] if isinstance(out, tuple) else out.prev_sample
        self.samples.append(prev[: self.keep].clone())
        return out


def write_json(path, obj):
    """Write a diffusers-style JSON file (indent 2, sorted keys, trailing newline), creating its folder."""
    import json
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def _canonicalize_header(path):
    """Rewrite the JSON header with sorted keys (safetensors writes metadata in hash order), padded with
    spaces to a multiple of 8, so a rerun produces a byte-identical file. data_offsets are relative to the
    data buffer, so they do not change."""
    import json
    import struct
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob[8 + n:])


def save(relpath, tensors, meta):
    """Write tests/data/<relpath> with float32 contiguous tensors and string metadata."""
    path = os.path.join(DATA, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    out = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    md = {k: str(v) for k, v in meta.items()}
    md["generator"] = "tools/" + os.path.basename(sys.argv[0])
    md.update(versions())
    save_file(out, path, metadata=md)
    _canonicalize_header(path)
    print(f"wrote {relpath}: {len(out)} tensors, {os.path.getsize(path)} bytes")
