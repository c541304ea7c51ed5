"""train_demo.py - trains ditserve's demo model (assets/demo/) on the CPU and measures its quality.

The model is a class-conditional DiT over the latents of a small AutoencoderKL, in the diffusers DiTPipeline
layout, so it goes through exactly the loading and pipeline code that real checkpoints use. The data is made
here: the digits 0-9 rendered from the DejaVu fonts (Debian package fonts-dejavu-core), see render_glyph().

Train (deterministic given --seed; prints the time of every phase). The shipped model is the DiT phase of
    tools/.venv/bin/python tools/train_demo.py --out assets/demo --seed 0 --vae-from DIR
on the VAE of an earlier run with the same seed on the full recipe (--data full --vae-steps 2800: the VAE
phase; its DiT is discarded). One command from scratch, `--out assets/demo --seed 0`, trains both phases on
the defaults below (its VAE then sees the centered data only).
Quality (trains a small CNN classifier on freshly rendered data, reports its held-out accuracy, then runs
ditserve's C pipeline - not PyTorch - on >= 200 (seed, class) pairs and reports the share recognised as the
requested class; also writes the sample grid docs/demo_grid.png):
    tools/.venv/bin/python tools/train_demo.py --eval --model assets/demo --ditserve build/server/ditserve

Recipe (the defaults; docs/demo.md has the measured times and quality):
  data     64x64 RGB; a digit in one of 3 bold DejaVu faces; "centered" (the default, what the shipped DiT saw):
           38-50 px, rotated +-8 deg, centred within +-5 px, a dark background (luminance <= 100: a random
           colour or a 2-colour linear gradient) and a lighter glyph of random colour (gap >= 110/255);
           "full" (the VAE's data and the classifier's): 30-50 px, +-12 deg, anywhere, any colours with a
           luminance gap >= 90/255. 16000 training images (1600 per class), rendered once.
  VAE      AutoencoderKL, block_out_channels (16, 32, 32) (4x: 64x64x3 -> 16x16x4), 1 layer per block,
           8 groups, mid-block attention; loss = MSE + L1 + 1e-4 * KL / pixels; AdamW 1e-3, cosine; batch 32,
           2800 steps, random 32x32 crops for the first 75%, whole images after.
           scaling_factor = 1 / std of the training latents (posterior means).
  DiT      DiTTransformer2DModel, 10 blocks, D 96 (4 heads x 24), patch 4 on the 16x16x4 latents (16 tokens),
           ada_norm_zero, num_embeds_ada_norm 10 (class table 11 rows: row 10 is the null class),
           out_channels 4 (no learned sigma), one timestep/class embedder shared by all blocks; adaLN and output
           layers zero-initialised (DiT paper), class table N(0, 1); epsilon objective with diffusers'
           DDPMScheduler (linear betas 1e-4..0.02, 1000 steps), 10% of labels dropped to the null
           class for CFG; half of each batch's timesteps drawn from [500, 1000) (where the class decides the
           glyph), the other half uniform; AdamW 8e-4 (warm-up 200 steps, then constant), batch 64, 20000 steps,
           EMA 0.998 (the EMA weights are shipped, as F16). Sampled with a DDIMScheduler config.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONTS = ["DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf"]
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
GLYPHS = "0123456789"
RES = 64
T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------- data

class Renderer:
    def __init__(self):
        self.paths = [os.path.join(FONT_DIR, f) for f in FONTS]
        for p in self.paths:
            if not os.path.exists(p):
                sys.exit(f"train_demo: font {p} not found (apt-get install fonts-dejavu-core)")
        self.cache = {}

    def font(self, i, size):
        k = (i, size)
        if k not in self.cache:
            self.cache[k] = ImageFont.truetype(self.paths[i], size)
        return self.cache[k]

    @staticmethod
    def lum(c):
        return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]

    def render(self, rng, cls, recipe="full"):
        """One 64x64 RGB uint8 image of digit `cls`, every random choice from `rng` (numpy Generator).
        recipe "full": any colours, glyph 30-50 px anywhere, rotated +-12 deg. "centered": the same renderer
        narrowed so the class decides most of the pixels: a dark background (luminance <= 100), a lighter
        glyph (gap >= 110), 38-50 px, +-8 deg, centred within +-5 px."""
        easy = recipe == "centered"
        # background: solid or a linear gradient between two colours
        while True:
            c0 = rng.integers(0, 256, 3).astype(np.float32)
            if not easy or self.lum(c0) <= 100:
                break
        if rng.random() < 0.5:
            c1 = np.clip(c0 + rng.integers(-80, 81, 3), 0, 255).astype(np.float32)
            ang = rng.random() * 2 * math.pi
            yy, xx = np.mgrid[0:RES, 0:RES].astype(np.float32) / (RES - 1)
            u = (xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang) + 0.5
            u = np.clip(u, 0, 1)[..., None]
            bg = c0 * (1 - u) + c1 * u
        else:
            bg = np.broadcast_to(c0, (RES, RES, 3)).copy()
        bl = self.lum(bg.reshape(-1, 3).mean(0))
        while True:  # glyph colour with a luminance gap to the background
            fg = rng.integers(0, 256, 3).astype(np.float32)
            if (self.lum(fg) - bl >= 110) if easy else abs(self.lum(fg) - bl) >= 90:
                break
        # glyph mask
        fi = int(rng.integers(0, len(FONTS)))
        size = int(rng.integers(38, 51)) if easy else int(rng.integers(30, 51))
        font = self.font(fi, size)
        canvas = Image.new("L", (96, 96), 0)
        ImageDraw.Draw(canvas).text((48, 48), GLYPHS[cls], font=font, fill=255, anchor="mm")
        ang = float(rng.uniform(-8, 8)) if easy else float(rng.uniform(-12, 12))
        canvas = canvas.rotate(ang, resample=Image.BILINEAR)
        bbox = canvas.getbbox()
        glyph = canvas.crop(bbox)
        gw, gh = glyph.size
        if gw > RES - 4 or gh > RES - 4:
            s = (RES - 4) / max(gw, gh)
            glyph = glyph.resize((max(1, int(gw * s)), max(1, int(gh * s))), Image.BILINEAR)
            gw, gh = glyph.size
        if easy:
            cx, cy = (RES - gw) // 2, (RES - gh) // 2
            x = int(np.clip(cx + rng.integers(-5, 6), 2, RES - 2 - gw))
            y = int(np.clip(cy + rng.integers(-5, 6), 2, RES - 2 - gh))
        else:
            x = int(rng.integers(2, RES - 2 - gw + 1))
            y = int(rng.integers(2, RES - 2 - gh + 1))
        mask = np.zeros((RES, RES), np.float32)
        mask[y:y + gh, x:x + gw] = np.asarray(glyph, np.float32) / 255.0
        m = mask[..., None]
        img = bg * (1 - m) + fg * m
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def make_dataset(n, seed, recipe="full"):
    """n images, classes balanced and shuffled: (uint8 [n, 64, 64, 3], int64 [n]); recipe as Renderer.render."""
    rng = np.random.default_rng(seed)
    r = Renderer()
    labels = np.arange(n) % len(CLASSES)
    rng.shuffle(labels)
    imgs = np.empty((n, RES, RES, 3), np.uint8)
    for i in range(n):
        imgs[i] = r.render(rng, int(labels[i]), recipe)
    return imgs, labels.astype(np.int64)


def to_tensor(u8):
    """uint8 NHWC -> float NCHW in [-1, 1]."""
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# ------------------------------------------------------------------------------------------------ VAE

def make_vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                         block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8,
                         sample_size=RES, mid_block_add_attention=True)


def cosine_lr(opt, base, step, total, warm):
    lr = base * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total)))
    for g in opt.param_groups:
        g["lr"] = lr


def train_vae(imgs, args, g):
    vae = make_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    n = len(imgs)
    crop_steps = int(args.vae_crop_frac * args.vae_steps)
    t0 = time.time()
    for step in range(args.vae_steps):
        cosine_lr(opt, args.vae_lr, step, args.vae_steps, 100)
        idx = torch.randint(0, n, (args.vae_batch,), generator=g).numpy()
        x = to_tensor(imgs[idx])
        if step < crop_steps:  # 32x32 crops (4x cheaper); the last steps see whole images (GroupNorm statistics)
            c = args.vae_crop
            ox, oy = (torch.randint(0, RES - c + 1, (2,), generator=g) // 4 * 4).tolist()
            x = x[:, :, oy:oy + c, ox:ox + c].contiguous()
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        y = vae.decode(z).sample
        rec = F.mse_loss(y, x) + F.l1_loss(y, x)
        kl = post.kl().sum() / x.numel()
        loss = rec + args.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.vae_steps - 1:
            el = time.time() - t0
            log(f"vae step {step}/{args.vae_steps} rec {rec.item():.4f} kl/px {kl.item():.3f} "
                f"({(step + 1) * args.vae_batch / el:.0f} img/s, {el:.0f} s)")
    vae.eval()
    return vae


@torch.no_grad()
def encode_all(vae, imgs, bs=256):
    mus, stds = [], []
    for i in range(0, len(imgs), bs):
        post = vae.encode(to_tensor(imgs[i:i + bs])).latent_dist
        mus.append(post.mean)
        stds.append(post.std)
    return torch.cat(mus), torch.cat(stds)


# ------------------------------------------------------------------------------------------------ DiT

def make_dit(args, tie=True):
    """The DiT. With tie, every block shares block 0's timestep/class embedder (norm1.emb), as in the released
    DiT checkpoints (one conditioning embedding): ditserve computes it once and requires identical copies."""
    from diffusers import DiTTransformer2DModel
    m = DiTTransformer2DModel(num_attention_heads=args.heads, attention_head_dim=args.dim // args.heads,
                              in_channels=4, out_channels=4, num_layers=args.layers, patch_size=args.patch,
                              sample_size=RES // 4, num_embeds_ada_norm=len(CLASSES), norm_type="ada_norm_zero",
                              activation_fn="gelu-approximate", attention_bias=True)
    # DiT-paper init: xavier linears, zeroed adaLN modulation and output layers (blocks start as identity)
    for mod in m.modules():
        if isinstance(mod, nn.Linear):
            nn.init.xavier_uniform_(mod.weight)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
    for blk in m.transformer_blocks:
        # class table left at nn.Embedding's N(0, 1): with the DiT paper's std 0.02 the class signal is ~10x weaker
        # than the timestep embedding and a short CPU run never learns to use it (samples ignore the class)
        nn.init.normal_(blk.norm1.emb.timestep_embedder.linear_1.weight, std=0.02)
        nn.init.normal_(blk.norm1.emb.timestep_embedder.linear_2.weight, std=0.02)
        nn.init.zeros_(blk.norm1.linear.weight)
        nn.init.zeros_(blk.norm1.linear.bias)
    for lin in (m.proj_out_1, m.proj_out_2):
        nn.init.zeros_(lin.weight)
        nn.init.zeros_(lin.bias)
    if tie:
        for blk in m.transformer_blocks[1:]:
            blk.norm1.emb = m.transformer_blocks[0].norm1.emb
    return m


def untie(model, args):
    """A copy with every block's embedder its own tensors (same values), as safetensors wants no shared storage."""
    m = make_dit(args, tie=False)
    m.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()})
    return m


def train_dit(mu, std, labels, args, g, checkpoint=None):
    from diffusers import DDPMScheduler
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    model = make_dit(args)
    ema = make_dit(args)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"dit: {nparams / 1e6:.2f} M parameters")
    opt = torch.optim.AdamW(model.parameters(), lr=args.dit_lr, weight_decay=0.0)
    n = len(mu)
    null = len(CLASSES)
    labels_t = torch.from_numpy(labels)
    ep, mp = list(ema.parameters()), list(model.parameters())
    t0 = time.time()
    run = 0.0
    for step in range(args.dit_steps):
        lr = args.dit_lr * min(1.0, (step + 1) / 200)
        for gr in opt.param_groups:
            gr["lr"] = lr
        idx = torch.randint(0, n, (args.dit_batch,), generator=g)
        z0 = (mu[idx] + std[idx] * torch.randn(mu[idx].shape, generator=g)) * args.scale
        y = labels_t[idx].clone()
        y[torch.rand(len(y), generator=g) < args.class_dropout] = null
        t = torch.randint(0, 1000, (len(y),), generator=g)
        if args.t_high > 0:  # part of each batch at high noise, where the class decides the glyph's shape
            hi = torch.rand(len(y), generator=g) < args.t_high
            t = torch.where(hi, torch.randint(args.t_high_from, 1000, (len(y),), generator=g), t)
        eps = torch.randn(z0.shape, generator=g)
        zt = sched.add_noise(z0, eps, t)
        pred = model(zt, timestep=t, class_labels=y).sample
        loss = F.mse_loss(pred, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        d = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ep, d)
            torch._foreach_add_(ep, mp, alpha=1 - d)
        run = loss.item() if step == 0 else 0.98 * run + 0.02 * loss.item()
        if step % 100 == 0 or step == args.dit_steps - 1:
            el = time.time() - t0
            log(f"dit step {step}/{args.dit_steps} loss {run:.4f} "
                f"({(step + 1) * args.dit_batch / el:.0f} latents/s, {el:.0f} s)")
        if checkpoint and args.save_every and (step + 1) % args.save_every == 0 and step + 1 < args.dit_steps:
            checkpoint(ema, step + 1)
    return ema


# ------------------------------------------------------------------------------------------------ save

def save_model(out, vae, dit, scale, args):
    from diffusers import DDIMScheduler
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    vae.register_to_config(scaling_factor=float(scale))
    vae.save_pretrained(os.path.join(out, "vae"), safe_serialization=True)
    untie(dit, args).half().save_pretrained(os.path.join(out, "transformer"), safe_serialization=True)
    DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                  clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                  prediction_type="epsilon").save_pretrained(os.path.join(out, "scheduler"))
    import diffusers
    index = {
        "_class_name": "DiTPipeline",
        "_diffusers_version": diffusers.__version__,
        "id2label": {str(i): f"{name}, digit {i}" for i, name in enumerate(CLASSES)},
        "scheduler": ["diffusers", "DDIMScheduler"],
        "transformer": ["diffusers", "DiTTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    with open(os.path.join(out, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    log(f"saved {out}: {total / 1e6:.2f} MB")


def save_grid(imgs, rows, path, pad=2):
    """imgs uint8 [rows*cols, H, W, 3] row-major -> one PNG with a `pad`-pixel white gutter."""
    n, h, w, _ = imgs.shape
    cols = n // rows
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = imgs[k]
    Image.fromarray(grid).save(path, optimize=True)


def train(args):
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    t = time.time()
    imgs, labels = make_dataset(args.n_images, args.seed, args.data)
    log(f"data ({args.data}): {len(imgs)} images rendered in {time.time() - t:.1f} s")
    t = time.time()
    if args.vae_from:  # the VAE of an earlier run with the same seed and VAE options: the DiT phase is identical
        from diffusers import AutoencoderKL
        vae = AutoencoderKL.from_pretrained(os.path.join(args.vae_from, "vae")).eval()
        log(f"vae loaded from {args.vae_from}")
    else:
        vae = train_vae(imgs, args, g)
    t_vae = time.time() - t
    log(f"vae trained in {t_vae:.0f} s")
    # the DiT phase has its own generators, so it does not depend on how the VAE was obtained
    torch.manual_seed(args.seed + 1)
    g = torch.Generator().manual_seed(args.seed + 1)
    t = time.time()
    mu, std = encode_all(vae, imgs)
    args.scale = float(1.0 / mu.std())
    log(f"encoded {len(mu)} latents in {time.time() - t:.1f} s: latent std {mu.std():.4f} -> scaling_factor "
        f"{args.scale:.5f}; posterior std mean {std.mean():.4f}")
    with torch.no_grad():
        x = to_tensor(imgs[:8])
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        log(f"vae reconstruction MAE on 8 training images: {(rec - x).abs().mean().item() * 127.5:.2f} / 255")
    t = time.time()
    dit = train_dit(mu, std, labels, args, g,
                    checkpoint=lambda m, k: (save_model(args.out, vae, m, args.scale, args), log(f"checkpoint at {k}")))
    t_dit = time.time() - t
    log(f"dit trained in {t_dit:.0f} s")
    save_model(args.out, vae, dit, args.scale, args)
    log(f"total training time {time.time() - T0:.0f} s wall (vae {t_vae:.0f} s, dit {t_dit:.0f} s); process CPU "
        f"time {time.process_time():.0f} s = {time.process_time() / args.threads:.0f} s on {args.threads} dedicated cores")


# ----------------------------------------------------------------------------------------------- eval

class Classifier(nn.Module):
    def __init__(self, n=len(CLASSES)):
        super().__init__()
        ch = [3, 32, 64, 96, 128]
        layers = []
        for a, b in zip(ch[:-1], ch[1:]):
            layers += [nn.Conv2d(a, b, 3, 2, 1), nn.BatchNorm2d(b), nn.ReLU()]
        self.f = nn.Sequential(*layers)
        self.fc = nn.Linear(ch[-1], n)

    def forward(self, x):
        return self.fc(self.f(x).mean((2, 3)))


def degrade(x, g):
    """Half of a batch blurred (Gaussian, sigma 0.5-1.5 px), tinted (+-0.15 per channel) and noised (std 0.03),
    so the classifier judges the digit's shape, not the crispness of the rendering (decoded images are softer)."""
    n = len(x)
    sel = torch.rand(n, generator=g) < 0.5
    r = torch.arange(-3, 4, dtype=torch.float32)
    out = x.clone()
    for i in torch.nonzero(sel).flatten().tolist():
        sig = 0.5 + torch.rand(1, generator=g).item()
        k = torch.exp(-r ** 2 / (2 * sig * sig))
        k = k / k.sum()
        y = F.conv2d(F.pad(x[i:i + 1], (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7).repeat(3, 1, 1, 1), groups=3)
        y = F.conv2d(F.pad(y, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1).repeat(3, 1, 1, 1), groups=3)
        tint = (torch.rand(1, 3, 1, 1, generator=g) - 0.5) * 0.3
        out[i:i + 1] = y + tint + 0.03 * torch.randn(y.shape, generator=g)
    return out.clamp(-1, 1)


def train_classifier(args, g):
    imgs, labels = make_dataset(args.clf_images, args.seed + 1000)
    test, tlabels = make_dataset(2000, args.seed + 2000)
    clf = Classifier()
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=1e-4)
    lab = torch.from_numpy(labels)
    t0 = time.time()
    for step in range(args.clf_steps):
        cosine_lr(opt, 2e-3, step, args.clf_steps, 50)
        idx = torch.randint(0, len(imgs), (64,), generator=g)
        loss = F.cross_entropy(clf(degrade(to_tensor(imgs[idx.numpy()]), g)), lab[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0:
            log(f"classifier step {step}/{args.clf_steps} loss {loss.item():.4f}")
    clf.eval()
    acc = (predict(clf, test) == tlabels).mean()
    log(f"classifier trained in {time.time() - t0:.0f} s: held-out accuracy {acc * 100:.2f}% on {len(test)} "
        f"freshly rendered images")
    return clf, acc, test, tlabels


@torch.no_grad()
def predict(clf, u8, bs=256):
    return np.concatenate([clf(to_tensor(u8[i:i + bs])).argmax(1).numpy() for i in range(0, len(u8), bs)])


def ditserve_generate(exe, model, classes, per, seed, steps, guidance, tmp, cache=None):
    """Images from the C pipeline: uint8 [len(classes)*per, H, W, 3], class-major, and the wall time.
    cache: a ditserve --cache config (cache-dit string or JSON), or None for no caching."""
    out = os.path.join(tmp, f"s{seed}.png")
    cmd = [exe, "generate", "--model", model, "--steps", str(steps), "--seed", str(seed), "--guidance",
           str(guidance), "--scheduler", "ddim", "--num-images", str(per), "--out", out]
    if cache:
        cmd += ["--cache", cache]
    for c in classes:
        cmd += ["--class", str(c)]
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.time() - t
    if r.returncode != 0:
        sys.exit(f"train_demo: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    paths = r.stdout.split()
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]), dt


def evaluate(args):
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    if args.clf_cache and os.path.exists(args.clf_cache):
        clf, acc = Classifier(), None
        clf.load_state_dict(torch.load(args.clf_cache))
        clf.eval()
        test, tlabels = make_dataset(2000, args.seed + 2000)
        acc = (predict(clf, test) == tlabels).mean()
        log(f"classifier from {args.clf_cache}: held-out accuracy {acc * 100:.2f}% on {len(test)} fresh images")
    else:
        clf, acc, test, tlabels = train_classifier(args, g)
        if args.clf_cache:
            torch.save(clf.state_dict(), args.clf_cache)
    # the VAE alone: how recognisable are reconstructions (the ceiling for generated images)
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_pretrained(os.path.join(args.model, "vae")).eval()
    with torch.no_grad():
        x = to_tensor(test[:500])
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
    rec8 = ((rec.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    vacc = (predict(clf, rec8) == tlabels[:500]).mean()
    log(f"VAE reconstructions recognised: {vacc * 100:.1f}% of 500 (MAE {(rec - x).abs().mean() * 127.5:.2f}/255)")
    exe = args.ditserve
    ncls = len(CLASSES)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # timing: one 25-step image (CFG on), best of 5 runs of the whole CLI process
        times = [ditserve_generate(exe, args.model, [3], 1, 100 + i, 25, args.guidance[0], tmp)[1] for i in range(5)]
        log(f"ditserve generate, 1 image, 25 DDIM steps, guidance {args.guidance[0]}: "
            f"best {min(times):.3f} s, median {sorted(times)[2]:.3f} s (whole process)")
        for gs in args.guidance:
            preds, want, first = [], [], None
            for s in range(args.eval_seeds):
                imgs, _ = ditserve_generate(exe, args.model, list(range(ncls)), args.per_class, 1000 + s, 25, gs, tmp)
                preds.append(predict(clf, imgs))
                want.append(np.repeat(np.arange(ncls), args.per_class))
                if first is None:
                    first = imgs
            p, w = np.concatenate(preds), np.concatenate(want)
            per_cls = [(p[w == c] == c).mean() * 100 for c in range(ncls)]
            results[gs] = (p == w).mean()
            log(f"guidance {gs}: {(p == w).sum()}/{len(p)} = {results[gs] * 100:.1f}% recognised as the requested "
                f"class; per class " + " ".join(f"{CLASSES[c]} {per_cls[c]:.0f}%" for c in range(ncls)))
            if gs == args.guidance[0] and args.grid:
                k = min(args.per_class, 8)
                rows = first.reshape(ncls, args.per_class, *first.shape[1:])[:, :k]
                save_grid(rows.reshape(-1, *first.shape[1:]), ncls, args.grid)
                log(f"wrote {args.grid} ({ncls} classes x {k} samples, seed 1000, guidance {gs})")
        # recognition with each cache config (guidance[0]), for docs/caching.md's quality table
        for cfg in args.cache:
            preds, want = [], []
            for s in range(args.eval_seeds):
                imgs, _ = ditserve_generate(exe, args.model, list(range(ncls)), args.per_class, 1000 + s, 25,
                                            args.guidance[0], tmp, cache=cfg)
                preds.append(predict(clf, imgs))
                want.append(np.repeat(np.arange(ncls), args.per_class))
            p, w = np.concatenate(preds), np.concatenate(want)
            log(f"cache {cfg}, guidance {args.guidance[0]}: {(p == w).sum()}/{len(p)} = {(p == w).mean() * 100:.1f}% "
                f"recognised as the requested class")
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is the fastest on a loaded shared host (OpenMP barriers stall)")
    ap.add_argument("--out", default=os.path.join(ROOT, "assets", "demo"))
    ap.add_argument("--smoke", action="store_true", help="a few-minute end-to-end run with tiny step counts")
    ap.add_argument("--n-images", type=int, default=16000)
    ap.add_argument("--data", choices=["full", "centered"], default="centered",
                    help="training data recipe (the classifier always trains on 'full', the harder superset)")
    ap.add_argument("--vae-steps", type=int, default=2800)
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--vae-crop", type=int, default=32, help="crop size of the first steps (4x cheaper per halving)")
    ap.add_argument("--vae-crop-frac", type=float, default=0.75, help="share of the VAE steps on crops")
    ap.add_argument("--kl-weight", type=float, default=1e-4)
    ap.add_argument("--vae-from", default=None, help="skip the VAE phase: take DIR/vae (trained with the same options)")
    ap.add_argument("--dit-steps", type=int, default=20000)
    ap.add_argument("--dit-batch", type=int, default=64)
    ap.add_argument("--dit-lr", type=float, default=8e-4)
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--t-high", type=float, default=0.5,
                    help="share of each DiT batch whose timestep is drawn from [--t-high-from, 1000)")
    ap.add_argument("--t-high-from", type=int, default=500)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--class-dropout", type=float, default=0.1)
    ap.add_argument("--save-every", type=int, default=500, help="write the EMA model to --out every N DiT steps")
    ap.add_argument("--eval", action="store_true", help="measure the shipped model through ditserve instead")
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "demo"))
    ap.add_argument("--ditserve", default=os.path.join(ROOT, "build", "server", "ditserve"))
    ap.add_argument("--guidance", type=float, nargs="+", default=[4.0], help="first one is used for the grid")
    ap.add_argument("--eval-seeds", type=int, default=4)
    ap.add_argument("--cache", nargs="*", default=[], help="--eval: also measure with these ditserve --cache configs")
    ap.add_argument("--per-class", type=int, default=5, help="images per class per seed")
    ap.add_argument("--clf-images", type=int, default=12000)
    ap.add_argument("--clf-steps", type=int, default=1500)
    ap.add_argument("--clf-cache", default=None, help="load the classifier from / save it to this file")
    ap.add_argument("--grid", default=None, help="write a class x sample grid PNG from ditserve's images")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if args.smoke:
        args.n_images, args.vae_steps, args.dit_steps, args.clf_images, args.clf_steps = 2000, 60, 60, 2000, 100
    if args.eval:
        evaluate(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
