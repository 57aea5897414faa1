"""Where the demo super-resolution model loses quality: its x0 prediction at single noise levels.

For the eight held-out demo photos (HR 128 px, LR by `bicubic_downscale`), noises the first-stage latent z0
to x_t at t = 50 ... 999, asks the model for eps once, forms x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
and prints the eps MSE, the error of eps's per-channel spatial mean, the error of x0's per-channel mean and
the PSNR (RGB) of decode(x0) against the photo:

    .venv/bin/python benchmarks/demo_sr_x0.py                  # a few seconds
    .venv/bin/python benchmarks/demo_sr_x0.py --checkpoint /tmp/train/superres.ckpt
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ldm  # noqa: E402
from ldm_lab.data import prepare_demo  # noqa: E402
from ldm_lab.data.resize import bicubic_downscale  # noqa: E402

TIMESTEPS = (50, 200, 400, 600, 800, 999)


def as_tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1) for im in images])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "tiny" / "superres.yaml"))
    parser.add_argument("--checkpoint", default=str(ROOT / "models" / "demo" / "superres.ckpt"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = ldm.load(args.config, args.checkpoint).eval()
    with tempfile.TemporaryDirectory() as tmp:
        folder = prepare_demo(Path(tmp))["super-resolution_dataset"] / "X4" / "HIGH"
        hr = [Image.open(p).convert("RGB") for p in sorted(folder.glob("*.png"))]
    x, lr = as_tensor(hr), as_tensor([bicubic_downscale(im, model.downsample_factor) for im in hr])
    gen = torch.Generator().manual_seed(args.seed)
    print(f"{'t':>4s} {'eps MSE':>8s} {'eps-mean err':>12s} {'x0-mean err':>11s} {'PSNR dB':>8s}")
    with torch.no_grad():
        z0 = model.encode_first_stage(x * 2 - 1)
        for t in TIMESTEPS:
            eps = torch.randn(z0.shape, generator=gen)
            abar = model.alphas_cumprod[t]
            zt = abar.sqrt() * z0 + (1 - abar).sqrt() * eps
            pred = model.apply_model(zt, torch.full((len(x),), t), concat=lr * 2 - 1)
            x0 = (zt - (1 - abar).sqrt() * pred) / abar.sqrt()
            y = (model.decode_first_stage(x0).clamp(-1, 1) + 1) / 2
            psnr = 10 * math.log10(1 / (y - x).pow(2).mean().item())
            eps_mean = (pred.mean((2, 3)) - eps.mean((2, 3))).abs().mean().item()
            x0_mean = (x0.mean((2, 3)) - z0.mean((2, 3))).abs().mean().item()
            print(f"{t:4d} {(pred - eps).pow(2).mean().item():8.4f} {eps_mean:12.4f} {x0_mean:11.4f} {psnr:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
