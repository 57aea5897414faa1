#!/usr/bin/env python
"""Train the demo models: the three tiny configs (`configs/tiny/`) on the CPU, from scikit-image's photos.

    .venv/bin/python scripts/train_demo_models.py                      # all three into models/demo/
    .venv/bin/python scripts/train_demo_models.py --family superres --steps-scale 0.05 --out /tmp/demo

Data: the photos bundled in scikit-image's wheel, read from the installed package (nothing is downloaded).
The inpainting and super-resolution models, autoencoders included, never see the demo's eight photos
(`ldm_lab.data.demo.PHOTOS`, the held-out evaluation set) nor `motorcycle_right.png` (the stereo twin of a
held-out photo): they learn from random crops of the other photos with scale jitter (crop side log-uniform
from the training size to the whole photo), flips, channel permutations and tints of the grey photos.
The text-to-image model learns the demo's eight photos with their sixteen captions (its demo asks whether a
caption brings back its photo), the caption replaced by "" 10% of the time for classifier-free guidance.

Objectives. Autoencoders: L1 + L2 reconstruction. VQ: a linear codec fitted and written exactly into the
architecture (see `write_linear_codec`), then a k-means codebook of its latents; KL: trained freely, with a
small KL term. The latent is then rescaled so that `scale_factor * z` has unit std; the rescale folds into quant_conv, the codebook
and post_quant_conv, so the configs stay as they are. Diffusion: the LDM paper's eps-prediction loss
E ||eps - eps_theta(z_t, t, c)||^2 with t uniform over the 1000 steps, the UNet's output path built so that
eps can carry a spatial mean and a t-gated linear function of its inputs (see `build_output_path`) and, for
inpainting, of the context's mean latent in the hole (see `build_context_mean_head`); the checkpoint holds
the EMA (0.999) of the UNet (and text encoder) weights.

One seeded torch.Generator drives every draw: the same seed, machine and thread count give the same bytes.
Writes `{family}.ckpt` ({"state_dict"} with CompVis names, network weights in float16, shared tensors
stored once) and `demo_models.json` (command, threads, seed, steps, losses, times, hashes).
"""

from __future__ import annotations

import argparse
import io
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ldm  # noqa: E402
from ldm.schedule import BUFFER_NAMES  # noqa: E402
from ldm.tokenizer import BertTokenizer  # noqa: E402
from ldm_lab.data.demo import PHOTOS, load_bundled_photo  # noqa: E402
from ldm_lab.data.files import write_bytes_atomic, write_json_atomic  # noqa: E402
from ldm_lab.data.masks import generate_mask  # noqa: E402
from ldm_lab.data.resize import bicubic_downscale  # noqa: E402
from ldm_lab.demo_models import add_released_extras  # noqa: E402
from ldm_lab.results import read_json  # noqa: E402
from ldm_lab.tasks.inpainting import inpainting_concat  # noqa: E402

CONFIGS = ROOT / "configs" / "tiny"
FAMILIES = ("inpainting", "superres", "txt2img")
# scikit-image photos the inpainting / super-resolution models learn from (none of the demo's eight).
TRAIN_FILES = ("brick.png", "cell.png", "chessboard_RGB.png", "clock_motion.png", "color.png", "grass.png",
               "gravel.png", "horse.png", "ihc.png", "logo.png", "microaneurysms.png", "moon.png", "page.png",
               "phantom.png", "retina.jpg", "text.png")
HELD_OUT = tuple(file for file, _, _ in PHOTOS) + ("motorcycle_right.png",)
# Per family: autoencoder steps, diffusion steps, crop size (the demo's working size: the GroupNorm layers
# make these small networks size-dependent), diffusion batch, lr, encoded crops in the bank, and the P2 weighting's
# gamma (see `timestep_distribution`; 0 or absent: t uniform).
PLAN = {
    "inpainting": {"ae_steps": 600, "unet_steps": 4500, "size": 128, "batch": 8, "lr": 5e-4, "bank": 2048, "p2": 3.0},
    "superres": {"ae_steps": 600, "unet_steps": 3000, "size": 128, "batch": 8, "lr": 5e-4, "bank": 2048},
    "txt2img": {"ae_steps": 1000, "unet_steps": 3000, "size": 64, "batch": 32, "lr": 5e-4, "bank": 2048},
}
AE_BATCH, AE_LR = 8, 1e-3
CAPTION_DROP, EMA_DECAY, KL_WEIGHT = 0.1, 0.999, 1e-4


# ----------------------------------------------------------------------------
# Photos and augmentation.
def photo_tensor(file: str) -> torch.Tensor:
    """A bundled photo as float [3, H, W] in [0, 1]."""
    array = np.asarray(load_bundled_photo(file), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _uniform(gen: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * torch.rand((), generator=gen).item()


def _randint(gen: torch.Generator, high: int) -> int:
    return int(torch.randint(high, (), generator=gen))


def random_crops(photos: list[torch.Tensor], n: int, size: int, gen: torch.Generator, *,
                 min_fraction: float = 0.0, colour: bool = True) -> torch.Tensor:
    """n crops [n, 3, size, size] in [0, 1]: random photo, square side log-uniform in [max(size, min_fraction *
    short side), short side], random place, antialiased resize, horizontal flip half the time; with `colour`,
    a random channel order and a random tint for grey photos."""
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        img = photos[_randint(gen, len(photos))]
        height, width = img.shape[-2:]
        short = min(height, width)
        low = max(size, min_fraction * short)
        side = min(short, round(math.exp(_uniform(gen, math.log(low), math.log(max(low, short))))))
        top, left = _randint(gen, height - side + 1), _randint(gen, width - side + 1)
        crop = img[:, top:top + side, left:left + side][None]
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        if _uniform(gen) < 0.5:
            crop = crop.flip(-1)
        if colour:
            if torch.equal(img[0], img[1]) and torch.equal(img[1], img[2]):
                crop = crop * (0.5 + 0.5 * torch.rand(3, 1, 1, generator=gen))
            crop = crop[torch.randperm(3, generator=gen)]
        out[i] = crop.clamp(0, 1)
    return out


def centre_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """The centre square of a [3, H, W] photo, antialiased to size x size."""
    height, width = img.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = img[:, top:top + side, left:left + side][None]
    return F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


# ----------------------------------------------------------------------------
# Autoencoders.
def reconstruction_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (y - x).abs().mean() + (y - x).pow(2).mean()


def nearest(points: torch.Tensor, centres: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """Index of the nearest centre of each point (L2), in chunks of points."""
    return torch.cat([torch.cdist(points[i:i + chunk], centres).argmin(dim=1) for i in range(0, len(points), chunk)])


def kmeans(points: torch.Tensor, k: int, gen: torch.Generator, iterations: int = 30) -> torch.Tensor:
    """Lloyd's k-means of [N, D] points from k distinct random points; an empty cluster restarts at a random point."""
    centres = points[torch.randperm(len(points), generator=gen)[:k]].clone()
    for _ in range(iterations):
        assign = nearest(points, centres)
        counts = torch.bincount(assign, minlength=k)
        centres = torch.zeros_like(centres).index_add_(0, assign, points) / counts.clamp(min=1)[:, None]
        empty = counts == 0
        centres[empty] = points[torch.randint(len(points), (int(empty.sum()),), generator=gen)]
    return centres


def train_kl_autoencoder(ae: ldm.Autoencoder, sample, steps: int, gen: torch.Generator, log) -> dict:
    """Train the KL autoencoder freely on crops from `sample(n)` (in [0, 1]): reconstruction + KL_WEIGHT * KL,
    Adam with cosine decay; returns the last losses."""
    params = list(ae.parameters())
    opt = torch.optim.Adam(params, lr=AE_LR)
    history = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = AE_LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        x = sample(AE_BATCH) * 2 - 1
        posterior = ae.encode(x)
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        rec = reconstruction_loss(ae.decoder(ae.post_quant_conv(z)), x)
        kl = 0.5 * (posterior.mean.pow(2) + posterior.std.pow(2) - 1 - posterior.logvar).mean()
        opt.zero_grad(set_to_none=True)
        (rec + KL_WEIGHT * kl).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        history.append(rec.item())
        if (step + 1) % 200 == 0 or step + 1 == steps:
            log(f"  autoencoder step {step + 1}/{steps}: reconstruction {np.mean(history[-200:]):.4f}")
    return {"reconstruction_loss": round(float(np.mean(history[-100:])), 5)}


# The VQ-f4 first stage as a learned linear codec. A free CompVis autoencoder this small does not learn
# absolute colour within a CPU budget: its GroupNorm(32) layers normalise each channel (or pair) over the
# image, removing the colour means (18 dB on held-out photos after 2,000 steps at 128 px). So the codec is
# fitted in a small parametrisation (3x3 kernels shared by the colours: encoder filter, two stride-2
# downsamplings, filter; decoder filter, two nearest-x2 + 3x3 upsamplings, filter: the architecture's
# conv_in / Downsample / conv_out and conv_in / Upsample / conv_out layers)
# and written into the architecture exactly: residual branches and attention outputs zero, each colour
# carried as a (+a, -a) channel pair at 1e-5 amplitude, so that GroupNorm (eps 1e-6) subtracts a zero mean
# and divides by ~sqrt(eps); after swish the pair difference restores a (swish(u) - swish(-u) = u).
PAIR_SCALE = 1e-5


def _depthwise(x: torch.Tensor, kernel: torch.Tensor, **kwargs) -> torch.Tensor:
    return F.conv2d(x, kernel.expand(3, 1, 3, 3), groups=3, **kwargs)


def codec_encode(x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 3, H/4, W/4]: 3x3 filter enc[0], twice pad (0, 1, 0, 1) + 3x3 stride-2 filter
    (enc[1], enc[2]), 3x3 filter enc[3] (zero padding, one kernel for the three colours)."""
    x = _depthwise(x, enc[0], padding=1)
    for kernel in enc[1:3]:
        x = _depthwise(F.pad(x, (0, 1, 0, 1)), kernel, stride=2)
    return _depthwise(x, enc[3], padding=1)


def codec_decode(z: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
    """[B, 3, h, w] -> [B, 3, 4h, 4w]: 3x3 filter dec[0], twice nearest x2 + 3x3 filter (dec[1], dec[2]), 3x3
    filter dec[3]."""
    z = _depthwise(z, dec[0], padding=1)
    for kernel in dec[1:3]:
        z = _depthwise(F.interpolate(z, scale_factor=2.0, mode="nearest"), kernel, padding=1)
    return _depthwise(z, dec[3], padding=1)


def fit_linear_codec(sample, steps: int, log) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Fit the codec's 8 kernels with L1 + L2 on crops in [-1, 1], from identity filters, 2x2 box downsampling
    and [1,2,1]^2/16 smoothing after each nearest upsampling."""
    delta, box = torch.zeros(3, 3), torch.zeros(3, 3)
    delta[1, 1] = 1.0
    box[:2, :2] = 0.25
    smooth = torch.outer(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])) / 16
    enc = torch.stack([delta, box, box, delta]).requires_grad_(True)
    dec = torch.stack([delta, smooth, smooth, delta]).requires_grad_(True)
    opt = torch.optim.Adam([enc, dec], lr=3e-3)
    history = []
    for step in range(steps):
        x = sample(AE_BATCH) * 2 - 1
        loss = reconstruction_loss(codec_decode(codec_encode(x, enc), dec), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item())
        if (step + 1) % 200 == 0 or step + 1 == steps:
            log(f"  linear codec step {step + 1}/{steps}: reconstruction {np.mean(history[-200:]):.4f}")
    return enc.detach(), dec.detach(), {"reconstruction_loss": round(float(np.mean(history[-100:])), 5)}


@torch.no_grad()
def write_linear_codec(ae: ldm.Autoencoder, enc_kernels: torch.Tensor, dec_kernels: torch.Tensor) -> None:
    """Set the VQ autoencoder's weights so that encode = codec_encode and decode (before snapping) = codec_decode."""
    enc, dec = ae.encoder, ae.decoder
    for name, module in ae.named_modules():  # residual branches and attention outputs contribute nothing
        if name.endswith(("conv2", "proj_out")):
            module.weight.zero_()
            module.bias.zero_()
    first = enc.down[0].block[0].nin_shortcut  # 32 -> 64 channels: colour k -> channels (2k, 2k+1) = (+a, -a)
    resampling = [(enc.down[0].downsample.conv, enc_kernels[1]), (enc.down[1].downsample.conv, enc_kernels[2]),
                  (dec.up[2].upsample.conv, dec_kernels[1]), (dec.up[1].upsample.conv, dec_kernels[2])]
    for conv in (enc.conv_in, enc.conv_out, dec.conv_in, dec.conv_out, ae.quant_conv, ae.post_quant_conv, first,
                 *(conv for conv, _ in resampling)):
        conv.weight.zero_()
        conv.bias.zero_()
    for k in range(3):
        ae.quant_conv.weight[k, k, 0, 0] = ae.post_quant_conv.weight[k, k, 0, 0] = 1.0
        enc.conv_in.weight[k, k] = enc_kernels[0]
        for sign, channel in ((1.0, 2 * k), (-1.0, 2 * k + 1)):
            first.weight[channel, k, 0, 0] = sign * PAIR_SCALE
            dec.conv_in.weight[channel, k] = sign * PAIR_SCALE * dec_kernels[0]
            enc.conv_out.weight[k, channel] = sign * enc_kernels[3]
            dec.conv_out.weight[k, channel] = sign * dec_kernels[3]
            for conv, kernel in resampling:
                conv.weight[channel, channel] = kernel
    for norm in (enc.norm_out, dec.norm_out):  # GroupNorm of a zero-mean pair: a / sqrt(eps); undo both factors
        norm.weight.fill_(math.sqrt(norm.eps) / PAIR_SCALE)
        norm.bias.zero_()


def train_vq_autoencoder(ae: ldm.Autoencoder, sample, steps: int, gen: torch.Generator, log) -> dict:
    """The linear codec fitted and written into `ae`, then a k-means codebook of its latents."""
    down, up, out = fit_linear_codec(sample, steps, log)
    write_linear_codec(ae, down, up)
    with torch.no_grad():
        z = torch.cat([ae.encode(sample(AE_BATCH) * 2 - 1) for _ in range(32)])
        points = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        ae.quantize.embedding.weight.copy_(kmeans(points, ae.config.n_embed, gen))
    return out


@torch.no_grad()
def normalise_latent(ae: ldm.Autoencoder, scale_factor: float, x: torch.Tensor) -> float:
    """Rescale the latent so that scale_factor * z has unit std on `x`; folded into quant_conv (mean part),
    the KL log-variance bias or the VQ codebook, and post_quant_conv: decoding is unchanged. Returns the gain."""
    out = ae.encode(x * 2 - 1)
    z = out if torch.is_tensor(out) else out.mean
    gain = 1.0 / (scale_factor * z.std().item())
    channels = ae.config.embed_dim
    ae.quant_conv.weight[:channels] *= gain
    ae.quant_conv.bias[:channels] *= gain
    if ae.config.kind == "vq":
        ae.quantize.embedding.weight *= gain
    else:
        ae.quant_conv.bias[channels:] += 2 * math.log(gain)
    ae.post_quant_conv.weight /= gain
    return gain


@torch.no_grad()
def psnr_reconstruction(ae: ldm.Autoencoder, x: torch.Tensor) -> float:
    """PSNR (dB, RGB in [0, 1]) of decode(encode(x)) through the inference path (VQ snapped, KL mode)."""
    out = ae.encode(x * 2 - 1)
    y = ae.decode(out if torch.is_tensor(out) else out.mean)
    mse = ((y.clamp(-1, 1) + 1) / 2 - x).pow(2).mean().item()
    return 10 * math.log10(1 / mse)


# ----------------------------------------------------------------------------
# Diffusion.
class Conditioner:
    """Training batches of one family: (z0, `apply_model` conditioning), built as the runners build them.

    Encoding crops is most of a step's cost, so a bank of `bank` crops is encoded once (inpainting: each with
    its own mask; txt2img: the posterior's mean and std, sampled afresh each time) and batches are drawn from it.
    """

    def __init__(self, model: ldm.LatentDiffusion, family: str, photos: list[torch.Tensor], size: int,
                 gen: torch.Generator, seed: int, bank: int):
        self.model, self.family, self.gen = model, family, gen
        chunks: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad():
            for start in range(0, bank, 64):
                for name, value in self._encode(photos, min(64, bank - start), size, seed, start).items():
                    chunks.setdefault(name, []).append(value)
        self.bank = {name: torch.cat(values) for name, values in chunks.items()}
        if family == "txt2img":
            self.tokenizer = BertTokenizer(CONFIGS / "vocab.txt", max_length=model.config.text_encoder.max_seq_len)
            self.captions = [captions for _, _, captions in PHOTOS]

    def _encode(self, photos: list[torch.Tensor], n: int, size: int, seed: int, first: int) -> dict[str, torch.Tensor]:
        model, gen = self.model, self.gen
        if self.family == "txt2img":  # mild crops of the whole photo, no colour change: the caption must still fit
            index = torch.randint(len(photos), (n,), generator=gen)
            x = torch.stack([random_crops([photos[i]], 1, size, gen, min_fraction=0.8, colour=False)[0] for i in index])
            posterior = model.first_stage_model.encode(x * 2 - 1)
            return {"mean": posterior.mean, "std": posterior.std, "photo": index}
        x = random_crops(photos, n, size, gen)
        z0 = model.encode_first_stage(x * 2 - 1)
        if self.family == "superres":  # the LR image itself, made as the demo data makes it
            from PIL import Image

            lr = [bicubic_downscale(Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)),
                                    model.downsample_factor) for img in x]
            lr = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1) for im in lr])
            return {"z0": z0, "concat": lr * 2 - 1}
        # inpainting: the runner's conditioning of random masks
        masks = [torch.from_numpy(np.asarray(generate_mask((size, size), seed=seed, index=first + i, hole_range=(0.05, 0.5)),
                                             dtype=np.float32) / 255)[None] for i in range(n)]
        mask = (torch.stack(masks) > 0.5).float()
        return {"z0": z0, "concat": inpainting_concat(model.get_learned_conditioning, x, mask)}

    def batch(self, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pick = torch.randint(len(next(iter(self.bank.values()))), (n,), generator=self.gen)
        if self.family != "txt2img":
            return self.bank["z0"][pick], {"concat": self.bank["concat"][pick]}
        mean, std = self.bank["mean"][pick], self.bank["std"][pick]
        z0 = self.model.config.scale_factor * (mean + std * torch.randn(mean.shape, generator=self.gen))
        prompts = ["" if _uniform(self.gen) < CAPTION_DROP else self.captions[i][_randint(self.gen, 2)]
                   for i in self.bank["photo"][pick].tolist()]
        return z0, {"context": self.model.cond_stage_model(self.tokenizer(prompts))}


# Why a tiny UNet needs help with eps's spatial mean. Its GroupNorm(32) layers normalise each group of
# channels over the latent, so a per-channel spatial mean (the image's colour) survives a norm only as a
# difference between the channels of a group, and the last norm, right before eps, removes it outright at
# one channel per group. The mean matters: the first DDIM step (t ~ 800) forms
# x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) and multiplies an eps-mean error by ~10 (a colour cast), and
# the right eps mean, (mean(x_t) - sqrt(abar) mean(z0)) / sqrt(1 - abar), weighs x_t and the conditioning
# with gains that depend on t.
#
# The output path is therefore built, and kept during training, in a form that carries means linearly
# (the configs use 64 channels at the output level, so the last norm's groups are pairs, and
# use_scale_shift_norm, so the timestep scales a normalised channel):
#   * a pair (+k a, -k a) at small amplitude k has a zero group mean and a GroupNorm variance k^2 mean(a^2)
#     far below eps (1e-5), so the norm gives ~ +-a k / sqrt(1e-5), mean included, and a convolution reading
#     the pair as (w, -w) after swish gets w (swish(u) - swish(-u) = u), exactly linear;
#   * the last output block writes its 32 outputs as such pairs, the output norm is the identity affine and
#     the output convolution reads pairs: eps = conv(w, v k / sqrt(k^2 mean(v^2) + 1e-5)) of the block's v;
#   * a linear path: the first convolution copies every UNet input channel (x_t and the concatenated
#     conditioning) into pairs at the end of the skip it hands the last block; that block's first
#     convolution reads them as pairs into hidden pairs, which its norm keeps and its timestep scale-shift
#     multiplies by 1 + s(t) (tied within a pair; shift antisymmetric), and its second convolution reads the
#     hidden pairs into v. So eps = sum_i g_i(t) (W_i * [x_t, c]) + the learned rest: for super-resolution,
#     where a linear map of the LR image predicts z0 about as well as the codec reconstructs it, the t-gated
#     linear part alone gives x0 = M * c.
# Training runs the real architecture through torch parametrisations (`Tied`); `bake` writes the plain weights.
PAIR_AMPLITUDE = 1e-3


class Tied(torch.nn.Module):
    """A weight with structure: rows in pairs (rows p, p + 1 with p + 1 = -p at `scale` times the free values,
    or p + 1 = p), columns read as antisymmetric pairs (at `col_scale` times the free values), and entries
    fixed to values. The scales keep the free values O(1), so AdamW's steps suit every part."""

    def __init__(self, shape, *, anti_rows=(), same_rows=(), anti_cols=(), scale: float = 1.0, col_scale: float = 1.0,
                 fixed=None):
        super().__init__()
        self.anti_rows, self.same_rows, self.anti_cols = list(anti_rows), list(same_rows), list(anti_cols)
        self.scale, self.col_scale = scale, col_scale
        mask, values = fixed if fixed is not None else (torch.zeros(shape, dtype=torch.bool), torch.zeros(shape))
        self.register_buffer("mask", mask)
        self.register_buffer("values", values)

    def forward(self, free: torch.Tensor) -> torch.Tensor:
        w = free
        if self.anti_cols:
            cols = torch.tensor(self.anti_cols)
            first = self.col_scale * w.index_select(1, cols)
            w = w.index_copy(1, cols, first).index_copy(1, cols + 1, -first)
        if self.anti_rows:
            rows = torch.tensor(self.anti_rows)
            first = self.scale * w.index_select(0, rows)
            w = w.index_copy(0, rows, first).index_copy(0, rows + 1, -first)
        if self.same_rows:
            rows = torch.tensor(self.same_rows)
            w = w.index_copy(0, rows + 1, w.index_select(0, rows))
        return torch.where(self.mask, self.values, w)

    def right_inverse(self, full: torch.Tensor) -> torch.Tensor:
        if self.anti_rows:
            rows = torch.tensor(self.anti_rows)
            full = full.index_copy(0, rows, full.index_select(0, rows) / self.scale)
        if self.anti_cols:
            cols = torch.tensor(self.anti_cols)
            full = full.index_copy(1, cols, full.index_select(1, cols) / self.col_scale)
        return full


def pairs_fit(unet: torch.nn.Module) -> bool:
    """Whether the UNet's output groups are channel pairs and its last block a scale-shift block with a
    convolutional skip."""
    last = unet.output_blocks[-1][0]
    return (unet.out[0].num_channels == 2 * unet.out[0].num_groups and last.use_scale_shift_norm
            and isinstance(last.skip_connection, torch.nn.Conv2d))


def _tie(module: torch.nn.Module, name: str, **kwargs) -> torch.Tensor:
    """Register a `Tied` parametrisation (the free values start at the initial ones); returns the free tensor."""
    from torch.nn.utils import parametrize

    tensor = getattr(module, name)
    with torch.no_grad():
        if kwargs.get("anti_rows"):
            rows = torch.tensor(kwargs["anti_rows"])
            tensor.index_copy_(0, rows, tensor.index_select(0, rows) * kwargs.get("scale", 1.0))
        if kwargs.get("anti_cols"):
            cols = torch.tensor(kwargs["anti_cols"])
            tensor.index_copy_(1, cols, tensor.index_select(1, cols) * kwargs.get("col_scale", 1.0))
    parametrize.register_parametrization(module, name, Tied(tensor.shape, **kwargs))
    return getattr(module.parametrizations, name).original


def _fixed(shape, entries: dict) -> tuple[torch.Tensor, torch.Tensor]:
    mask, values = torch.zeros(shape, dtype=torch.bool), torch.zeros(shape)
    for index, value in entries.items():
        mask[index], values[index] = True, value
    return mask, values


def _fix_channels(module: torch.nn.Module, channels, weight: float) -> None:
    """Tie output channels `channels` of a norm or convolution: weight (the whole row) fixed to `weight`, bias to 0
    (a norm passes them through with 1, a convolution writes nothing there with 0)."""
    _tie(module, "weight", fixed=_fixed(module.weight.shape, {(c,): weight for c in channels}))
    _tie(module, "bias", fixed=_fixed(module.bias.shape, {(c,): 0.0 for c in channels}))


def linear_channels(unet: torch.nn.Module, *, context_mean: bool = False) -> tuple[list[int], list[int]]:
    """First channels of the linear path's pairs: in the first convolution's output (the end of the skip the
    last block reads) and in the last block's hidden layer; one pair per UNet input channel, rounded up to an
    even count so that the pairs fill whole 4-channel groups of the last block's input norm. With
    `context_mean`, the hidden layer has one more pair per latent channel, after the inputs' (see
    `context_mean_channels`)."""
    first, last = unet.input_blocks[0][0], unet.output_blocks[-1][0]
    inputs = first.in_channels + first.in_channels % 2
    width, hidden = first.out_channels, last.in_layers[-1].out_channels
    pairs = inputs + (len(context_mean_channels(unet)) if context_mean else 0)
    return [width - 2 * inputs + 2 * i for i in range(inputs)], [hidden - 2 * pairs + 2 * i for i in range(pairs)]


def context_mean_channels(unet: torch.nn.Module) -> list[int]:
    """First channels of the context-mean pairs in the residual stream (one per latent channel), in a block of
    whole 4-channel groups right before the input pairs; the block and the input pairs are the stream's
    carried channels (see `build_context_mean_head`)."""
    lin_in, _ = linear_channels(unet)
    latent = unet.config.out_channels
    block = 4 * math.ceil(2 * latent / 4)
    return [lin_in[0] - block + 2 * j for j in range(latent)]


def build_output_path(unet: torch.nn.Module, k: float = PAIR_AMPLITUDE, *, context_mean: bool = False) -> None:
    """Parametrise the UNet as described above (call once, before training); `context_mean` (inpainting) adds
    the context-mean head (`build_context_mean_head`) and reads its pairs into the last block's linear path."""
    first, last = unet.input_blocks[0][0], unet.output_blocks[-1][0]
    lin_in, lin_hidden = linear_channels(unet, context_mean=context_mean)
    means = context_mean_channels(unet) if context_mean else []
    carried = list(range(means[0], lin_in[0])) if means else []  # the context-mean block: nothing else
    offset = last.in_layers[0].num_channels - first.out_channels  # the skip follows h in the block's input
    hidden = last.in_layers[-1].out_channels
    out_pairs = list(range(0, last.out_layers[-1].out_channels, 2))
    mask, values = _fixed(first.weight.shape, {})
    for i, row in enumerate(lin_in):  # whole rows fixed: input i's centre tap, +k and -k
        mask[row:row + 2] = True
        if i < first.in_channels:
            values[row, i, 1, 1], values[row + 1, i, 1, 1] = k, -k
    mask[carried] = True  # the context-mean block starts empty
    _tie(first, "weight", fixed=(mask, values))
    _tie(first, "bias", fixed=_fixed(first.bias.shape, {(r,): 0.0 for r in carried + [r + d for r in lin_in for d in (0, 1)]}))
    read = [offset + r + d for r in lin_in for d in (0, 1)] + carried  # columns of the last block's input
    norm = last.in_layers[0]
    _fix_channels(norm, read, 1.0)
    gain = k / math.sqrt(last.in_layers[0].eps)  # a norm maps a pair of amplitude k a to +-gain a
    conv1 = last.in_layers[-1]  # hidden pair i starts as a copy of its source (read as pairs), nothing else
    sources = [offset + r for r in lin_in] + means
    free = _tie(conv1, "weight", anti_rows=lin_hidden, anti_cols=sources, scale=k, col_scale=1 / gain)
    with torch.no_grad():
        free[lin_hidden[0]:] = 0
        for i, column in enumerate(sources):
            if i < first.in_channels or i >= len(lin_in):
                free[lin_hidden[i], column, 1, 1] = 1.0
    _tie(conv1, "bias", anti_rows=lin_hidden, scale=k)
    emb = last.emb_layers[-1]  # rows: scale (hidden) then shift (hidden)
    _tie(emb, "weight", same_rows=lin_hidden, anti_rows=[hidden + r for r in lin_hidden])
    _tie(emb, "bias", same_rows=lin_hidden, anti_rows=[hidden + r for r in lin_hidden])
    norm = last.out_layers[0]
    _fix_channels(norm, [r + d for r in lin_hidden for d in (0, 1)], 1.0)
    conv2 = last.out_layers[-1]
    _tie(conv2, "weight", anti_rows=out_pairs, anti_cols=lin_hidden, scale=k, col_scale=1 / gain)
    _tie(conv2, "bias", anti_rows=out_pairs, scale=k)
    _tie(last.skip_connection, "weight", anti_rows=out_pairs, scale=k)
    _tie(last.skip_connection, "bias", anti_rows=out_pairs, scale=k)
    for attention in unet.output_blocks[-1][1:]:  # an attention layer after it adds its output as pairs too
        _tie(attention.proj_out, "weight", anti_rows=out_pairs, scale=k)
        _tie(attention.proj_out, "bias", anti_rows=out_pairs, scale=k)
    norm = unet.out[0]
    _tie(norm, "weight", fixed=(torch.ones_like(norm.weight, dtype=torch.bool), torch.ones_like(norm.weight)))
    _tie(norm, "bias", fixed=(torch.ones_like(norm.bias, dtype=torch.bool), torch.zeros_like(norm.bias)))
    _tie(unet.out[-1], "weight", anti_cols=list(range(0, unet.out[-1].in_channels, 2)), col_scale=1 / gain)
    if context_mean:
        build_context_mean_head(unet, k)


# Why inpainting needs one more help: the colour of the hole. The first DDIM step (t = 801, x_t pure noise)
# takes its x0 almost entirely from eps, and in the hole that x0 must come from the context; the trained
# tiny UNet got the hole's mean colour wrong (12.2 dB in the hole, 15.4 dB with only its mean corrected,
# 14.6 dB for a constant fill with the context's mean colour). The linear path reaches 5x5 latent pixels,
# and the learned layers did not carry the context's colour across the hole within the CPU budget.
# So one attention head at the lowest resolution is written to do it, and its result reaches eps linearly:
#   * the residual stream keeps "carried" channels, all of them channel pairs: the input pairs of the first
#     convolution (x_t, the masked image's latent c, the mask m) and a block of context-mean pairs. Every
#     layer that writes into the stream writes nothing there (residual branches' last convolutions, the
#     other attention layers' proj_out), the 1x1 skip convolutions of the decoder copy them, and average
#     pooling, nearest upsampling and identity skips are linear;
#   * head 0 of the last encoder attention layer reads m and c from the pairs (its norm passes a pair
#     linearly, gain g = k / sqrt(1e-5)) and attends with logits LOGIT * m_key * (1 - 2 m_query): a query in
#     the hole attends the known keys uniformly, a known query the hole keys (where c is zero: the masked
#     image is zero there and the VQ encoder has no biases); its values are c, so a hole query gets the
#     context's mean latent. proj_out writes it into the context-mean pairs (learned, as pairs);
#   * the last block reads those pairs into hidden pairs beside the inputs' (`build_output_path`), so eps
#     gets a t-gated linear function of the context mean in the hole.
CONTEXT_LOGIT = 12.0


def build_context_mean_head(unet: torch.nn.Module, k: float = PAIR_AMPLITUDE) -> None:
    """Parametrise the carried channels and the context-mean head described above (`build_output_path` calls
    it, after its own ties)."""
    from ldm.unet import AttentionBlock, ResBlock

    lin_in, _ = linear_channels(unet)
    means = context_mean_channels(unet)
    width = unet.input_blocks[0][0].out_channels
    carried = list(range(means[0], width))
    latent = unet.config.out_channels
    if unet.config.in_channels != 2 * latent + 1:
        raise ValueError(f"the context-mean head needs the inpainting inputs (x_t, masked-image latent, mask: "
                         f"{2 * latent + 1} channels), not {unet.config.in_channels}")
    heads = [layer for block in unet.input_blocks for layer in block if isinstance(layer, AttentionBlock)]
    if not heads:
        raise ValueError("the context-mean head needs a self-attention layer in the UNet's encoder")
    head = heads[-1]

    for block in list(unet.input_blocks[1:]) + list(unet.output_blocks[:-1]):
        for layer in block:
            if isinstance(layer, ResBlock):
                _fix_channels(layer.out_layers[-1], carried, 0.0)  # writes nothing there
                skip = layer.skip_connection  # identity or, after the block's average pooling / nearest x2, a 1x1
                if isinstance(skip, torch.nn.Conv2d):  # the first decoder block takes them from its skip
                    source = skip.in_channels - width if block is unet.output_blocks[0] else 0
                    copy = {(r, c, 0, 0): float(c == source + r) for r in carried for c in range(skip.in_channels)}
                    _tie(skip, "weight", fixed=_fixed(skip.weight.shape, copy))
                    _tie(skip, "bias", fixed=_fixed(skip.bias.shape, {(r,): 0.0 for r in carried}))
            elif isinstance(layer, AttentionBlock) and layer is not head:
                _fix_channels(layer.proj_out, carried, 0.0)
            elif layer is not head:
                raise ValueError(f"the carried channels cannot pass a {type(layer).__name__}")
    norm = head.norm
    _fix_channels(norm, carried, 1.0)
    dim = width // head.num_heads
    rows = [[part * head.num_heads * dim + i for i in range(dim)] if head.new_order
            else [part * dim + i for i in range(dim)] for part in range(3)]  # head 0's q, k, v rows
    read = 1 / (2 * k / math.sqrt(norm.eps))  # the weight (+read, -read) on a pair gives its value a
    logit = CONTEXT_LOGIT * math.sqrt(dim)  # scaled_dot_product_attention divides by sqrt(dim)
    mask_pair, c_pairs = lin_in[2 * latent], lin_in[latent:2 * latent]
    weights = {(row,): 0.0 for part in rows for row in part}  # head 0 reads nothing else
    biases = dict(weights)
    q, key, v = rows
    biases[(q[0],)] = 1.0  # q = (1, m), k = (logit m, -2 logit m): q.k = logit m_key (1 - 2 m_query)
    for row, factor in ((q[1], 1.0), (key[0], logit), (key[1], -2 * logit)):
        weights[(row, mask_pair, 0)], weights[(row, mask_pair + 1, 0)] = factor * read, -factor * read
    for j, pair in enumerate(c_pairs):
        weights[(v[j], pair, 0)], weights[(v[j], pair + 1, 0)] = read, -read
    _tie(head.qkv, "weight", fixed=_fixed(head.qkv.weight.shape, weights))
    _tie(head.qkv, "bias", fixed=_fixed(head.qkv.bias.shape, biases))
    rest = [r for r in carried if r not in means and r - 1 not in means]
    out = head.proj_out  # context-mean pair j starts as head 0's value j (the output's channels 0 ... dim - 1)
    free = _tie(out, "weight", anti_rows=means, scale=k, fixed=_fixed(out.weight.shape, {(r,): 0.0 for r in rest}))
    with torch.no_grad():
        free[means] = 0
        for j, row in enumerate(means):
            free[row, j, 0] = 1.0
    free = _tie(out, "bias", anti_rows=means, scale=k, fixed=_fixed(out.bias.shape, {(r,): 0.0 for r in rest}))
    with torch.no_grad():
        free[means] = 0


def bake(module: torch.nn.Module) -> None:
    """Replace every parametrisation by the plain tensor it gives (the checkpoint's names and values)."""
    from torch.nn.utils import parametrize

    for sub in list(module.modules()):
        if parametrize.is_parametrized(sub):
            for name in list(sub.parametrizations):
                parametrize.remove_parametrizations(sub, name, leave_parametrized=True)


def timestep_distribution(model: ldm.LatentDiffusion, gamma: float) -> torch.Tensor:
    """P(t) proportional to the P2 weight (Choi et al. 2022, k = 1) lambda_t = (1 + SNR_t)^-gamma, SNR_t =
    abar_t / (1 - abar_t): drawing t from it gives the P2-weighted eps loss with the plain per-sample loss.
    It moves training from the nearly clean steps to the noisy ones, where a sampler's first steps decide the
    image's colours (gamma 1: P(t >= 600) 0.40 -> 0.54 on the LDM schedule)."""
    abar = model.alphas_cumprod.double()
    weight = (1 + abar / (1 - abar)) ** -gamma
    return (weight / weight.sum()).float()


def train_diffusion(model: ldm.LatentDiffusion, cond: Conditioner, steps: int, batch: int, lr: float,
                    gen: torch.Generator, log, *, p2_gamma: float = 0.0) -> dict:
    """eps-prediction training of the UNet (and the text encoder for txt2img), t uniform or, with `p2_gamma`,
    P2-weighted; leaves the EMA weights in the model (output pairs baked) and returns the losses."""
    modules = {"model.": model.model}
    if cond.family == "txt2img":
        modules["cond_stage_model."] = model.cond_stage_model
    paired = pairs_fit(model.unet)
    context_mean = paired and cond.family == "inpainting"
    if paired:
        build_output_path(model.unet, context_mean=context_mean)
    named = {prefix + n: p for prefix, module in modules.items() for n, p in module.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(list(named.values()), lr=lr, weight_decay=0.0)
    ema = {n: p.detach().clone() for n, p in named.items()}
    warmup, history = 200, []
    t_probs = timestep_distribution(model, p2_gamma) if p2_gamma else None
    for step in range(steps):
        for group in opt.param_groups:  # linear warm-up, then cosine to 10%
            progress = max(0.0, (step - warmup) / max(1, steps - warmup))
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        z0, kwargs = cond.batch(batch)
        if p2_gamma:
            t = torch.multinomial(t_probs, batch, replacement=True, generator=gen)
        else:
            t = torch.randint(model.config.timesteps, (batch,), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        zt = model.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1) * z0 + model.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1) * eps
        loss = F.mse_loss(model.apply_model(zt, t, **kwargs), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(named.values()), 1.0)
        opt.step()
        decay = min(EMA_DECAY, (1 + step) / (10 + step))  # LitEma's warm-up
        with torch.no_grad():
            for n, p in named.items():
                ema[n].lerp_(p.detach(), 1 - decay)
        history.append(loss.item())
        if (step + 1) % 500 == 0 or step + 1 == steps:
            log(f"  diffusion step {step + 1}/{steps}: eps loss {np.mean(history[-500:]):.4f}")
    with torch.no_grad():
        for n, p in named.items():
            p.copy_(ema[n])
    bake(model.unet)
    return {"eps_loss": round(float(np.mean(history[-500:])), 5), "linear_output_path": paired,
            "p2_gamma": p2_gamma, "context_mean_head": context_mean}


# ----------------------------------------------------------------------------
# Checkpoint.
def checkpoint_bytes(model: ldm.LatentDiffusion, steps: int) -> bytes:
    """{"state_dict"} in CompVis layout: network weights float16 (the loader casts), `model_ema.*` (configs
    that sample with EMA) and `cond_stage_model.*` (inpainting: the first stage again) share the model's
    tensors (the EMA weights, see `train_diffusion`), so each is stored once."""
    state = {}
    for name, value in model.state_dict().items():
        keep = name in BUFFER_NAMES or not value.is_floating_point()
        state[name] = value.clone() if keep else value.detach().to(torch.float16)
    add_released_extras(model.config, state, num_updates=steps, decay=EMA_DECAY, share_ema=True)
    buffer = io.BytesIO()
    torch.save({"state_dict": state, "global_step": steps}, buffer)
    return buffer.getvalue()


def train_family(family: str, seed: int, scale: float, log) -> tuple[bytes, dict]:
    plan = PLAN[family]
    ae_steps, unet_steps = max(1, round(plan["ae_steps"] * scale)), max(1, round(plan["unet_steps"] * scale))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # module initialisation
    cfg = ldm.load_config(CONFIGS / f"{family}.yaml")
    model = ldm.build_model(cfg)
    train = [photo_tensor(f) for f in TRAIN_FILES]
    demo = [photo_tensor(f) for f, _, _ in PHOTOS]
    photos = demo if family == "txt2img" else train
    ae_photos = train + demo if family == "txt2img" else train
    start = time.perf_counter()
    kind = cfg.first_stage.kind
    log(f"{family}: autoencoder ({kind}, {ae_steps} steps of {AE_BATCH} crops {plan['size']}px)")
    ae = model.first_stage_model
    fit = train_vq_autoencoder if kind == "vq" else train_kl_autoencoder
    ae_log = fit(ae, lambda n: random_crops(ae_photos, n, plan["size"], gen), ae_steps, gen, log)
    probe = random_crops(ae_photos, 64, plan["size"], gen)
    ae_log["latent_gain"] = round(normalise_latent(ae, cfg.scale_factor, probe), 5)
    held_out = torch.stack([centre_square(p, plan["size"]) for p in demo])
    ae_log[f"psnr_held_out_{plan['size']}px"] = round(psnr_reconstruction(ae, held_out), 2)
    ae_log["seconds"] = round(time.perf_counter() - start, 1)
    log(f"  autoencoder: {ae_log}")
    ae.requires_grad_(False)
    start = time.perf_counter()
    log(f"{family}: diffusion ({unet_steps} steps of {plan['batch']} crops {plan['size']}px)")
    bank = max(64, round(plan["bank"] * min(1.0, scale)))
    cond = Conditioner(model, family, photos, plan["size"], gen, seed, bank)
    log(f"  bank of {bank} encoded crops: {time.perf_counter() - start:.0f} s")
    unet_log = train_diffusion(model, cond, unet_steps, plan["batch"], plan["lr"], gen, log, p2_gamma=plan.get("p2", 0.0))
    unet_log["seconds"] = round(time.perf_counter() - start, 1)
    log(f"  diffusion: {unet_log}")
    entry = {"config": f"configs/tiny/{family}.yaml", "config_sha256": ldm.file_sha256(CONFIGS / f"{family}.yaml"),
             "seed": seed, "autoencoder_steps": ae_steps, "diffusion_steps": unet_steps, "batch": plan["batch"],
             "crop": plan["size"], "bank": bank, "autoencoder": ae_log, "diffusion": unet_log,
             "photos": [f for f, _, _ in PHOTOS] if family == "txt2img" else list(TRAIN_FILES)}
    return checkpoint_bytes(model, unet_steps), entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "models" / "demo"), help="folder for the checkpoints and demo_models.json")
    parser.add_argument("--family", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--seed", type=int, default=0, help="base seed; family i uses seed + i")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every step count (quick trials)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (results depend on it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp_path = out / "demo_models.json"
    stamp = read_json(stamp_path) if stamp_path.is_file() else {}
    given = list(argv if argv is not None else sys.argv[1:])
    if "--out" in given:  # the record lives in the output folder: the command names what else was chosen
        del given[given.index("--out"):given.index("--out") + 2]
    command = "scripts/train_demo_models.py " + " ".join(given)
    stamp.pop("threads", None)  # per family since families may be trained apart
    stamp.update({"version": 2, "trained": True, "torch": torch.__version__, "machine": platform.machine(),
                  "held_out_photos": list(HELD_OUT)})

    def log(message: str) -> None:
        print(message, flush=True)

    for family in args.family:
        seed = args.seed + FAMILIES.index(family)
        data, entry = train_family(family, seed, args.steps_scale, log)
        path = out / f"{family}.ckpt"
        write_bytes_atomic(path, data)
        entry.update({"command": command.strip(), "threads": args.threads, "checkpoint_sha256": ldm.file_sha256(path), "bytes": len(data)})
        stamp[family] = entry
        write_json_atomic(stamp_path, stamp)
        log(f"{family}: wrote {path} ({len(data) / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
