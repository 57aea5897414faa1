"""Where a demo model loses quality: its x0 prediction at single noise levels.

For the eight held-out demo photos (128 px) and the task's conditioning as its runner builds it
(super-resolution: the x4 bicubic LR image; inpainting: the masked image's latent and the mask), noises the
first-stage latent z0 to x_t at t = 50 ... 999, asks the model for eps once, forms
x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) and prints the eps MSE, the error of eps's per-channel spatial
mean and the PSNR of decode(x0) against the photo (inpainting: in the hole, mean over images, and the squared
error of x0's hole-mean latent, beside that of the context's mean latent). Then the first
DDIM step as the sampler takes it (t = 801, x_t pure noise) and, for inpainting, that x0 with only its hole
mean moved to the photo's, and the constant fill with the context's mean colour:

    .venv/bin/python benchmarks/demo_x0.py --task superres          # a few seconds
    .venv/bin/python benchmarks/demo_x0.py --task inpainting --checkpoint /tmp/train/inpainting.ckpt
"""

from __future__ import annotations

import argparse
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
from ldm_lab.metrics.image_quality import psnr as psnr_of  # noqa: E402
from ldm_lab.tasks.inpainting import inpainting_concat  # noqa: E402

TIMESTEPS = (50, 200, 400, 600, 800, 999)
FIRST_DDIM_STEP = 801  # 5 DDIM steps: t = 801, 601, 401, 201, 1
SIZE = 128


def as_tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1) for im in images])


def load_task(task: str, model: ldm.LatentDiffusion, folder: Path):
    """(photos in [0, 1], the apply_model conditioning, the hole mask or None)."""
    if task == "superres":
        hr = [Image.open(p).convert("RGB") for p in sorted((folder / "X4" / "HIGH").glob("*.png"))]
        lr = as_tensor([bicubic_downscale(im, model.downsample_factor) for im in hr])
        return as_tensor(hr), {"concat": lr * 2 - 1}, None
    files = sorted((folder / "images").glob("*.png"))
    x = as_tensor([Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC) for p in files])
    masks = [Image.open(folder / "masks" / p.name).convert("L").resize((SIZE, SIZE), Image.NEAREST) for p in files]
    m = torch.stack([torch.from_numpy(np.asarray(im) > 127).float()[None] for im in masks])
    return x, {"concat": inpainting_concat(model.get_learned_conditioning, x, m)}, m


def masked_mean(a: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Per image and channel, the mean of a [N, C, H, W] over the pixels `where` [N, 1, H, W] weights."""
    return (a * where).sum((2, 3), keepdim=True) / where.sum((2, 3), keepdim=True)


def psnr(y: torch.Tensor, x: torch.Tensor, hole: torch.Tensor | None) -> float:
    """Mean over images of the PSNR (RGB, range 1; in the hole when given)."""
    values = []
    for i in range(len(x)):
        a, b = y[i].permute(1, 2, 0).numpy(), x[i].permute(1, 2, 0).numpy()
        if hole is not None:
            keep = hole[i, 0].numpy() > 0.5
            a, b = a[keep], b[keep]
        values.append(psnr_of(a, b, data_range=1.0))
    return float(np.mean(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("superres", "inpainting"), default="superres")
    parser.add_argument("--config", help="default: configs/tiny/TASK.yaml")
    parser.add_argument("--checkpoint", help="default: models/demo/TASK.ckpt")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = args.config or ROOT / "configs" / "tiny" / f"{args.task}.yaml"
    model = ldm.load(config, args.checkpoint or ROOT / "models" / "demo" / f"{args.task}.ckpt").eval()
    dataset = {"superres": "super-resolution_dataset", "inpainting": "inpainting_dataset"}[args.task]
    gen = torch.Generator().manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        x, cond, hole = load_task(args.task, model, prepare_demo(Path(tmp))[dataset])
        z0 = model.encode_first_stage(x * 2 - 1)

        def x0_at(t: int, zt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            abar = model.alphas_cumprod[t]
            pred = model.apply_model(zt, torch.full((len(x),), t), **cond)
            x0 = (zt - (1 - abar).sqrt() * pred) / abar.sqrt()
            return pred, (model.decode_first_stage(x0).clamp(-1, 1) + 1) / 2, x0

        label = "PSNR dB" if hole is None else "hole PSNR"
        if hole is not None:  # the hole in latent resolution; the masked image's latent (zero in the hole)
            latent_hole = torch.nn.functional.interpolate(hole, size=z0.shape[-2:])
            masked = cond["concat"][:, :z0.shape[1]]

            def hole_mean_error(zhat: torch.Tensor) -> float:
                return (masked_mean(zhat, latent_hole) - masked_mean(z0, latent_hole)).pow(2).mean().item()

            context_error = (masked_mean(masked, 1 - latent_hole) - masked_mean(z0, latent_hole)).pow(2).mean().item()
            label += f" {'hole-mean err (context mean: ' + f'{context_error:.4f})':>30s}"
        print(f"{'t':>4s} {'eps MSE':>8s} {'eps-mean err':>12s} {label:>9s}")
        for t in TIMESTEPS:
            eps = torch.randn(z0.shape, generator=gen)
            abar = model.alphas_cumprod[t]
            pred, y, zhat = x0_at(t, abar.sqrt() * z0 + (1 - abar).sqrt() * eps)
            eps_mean = (pred.mean((2, 3)) - eps.mean((2, 3))).abs().mean().item()
            extra = "" if hole is None else f" {hole_mean_error(zhat):30.4f}"
            print(f"{t:4d} {(pred - eps).pow(2).mean().item():8.4f} {eps_mean:12.4f} {psnr(y, x, hole):9.2f}{extra}")
        _, y, zhat = x0_at(FIRST_DDIM_STEP, torch.randn(z0.shape, generator=gen))
        extra = "" if hole is None else f", hole-mean err {hole_mean_error(zhat):.4f}"
        print(f"first DDIM step (t = {FIRST_DDIM_STEP}, x_t pure noise): x0 {psnr(y, x, hole):.2f} dB{extra}")
        if hole is not None:
            moved = y - masked_mean(y, hole) + masked_mean(x, hole)
            print(f"  the same x0 with its hole mean moved to the photo's: {psnr(moved, x, hole):.2f} dB")
            fill = masked_mean(x, 1 - hole).expand_as(x)
            print(f"  constant fill with the context's mean colour: {psnr(fill, x, hole):.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
