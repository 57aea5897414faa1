"""CLIP score with open_clip: per-sample cosine of image and caption embeddings.

Two scales are reported, always with the backbone named: `clip_cosine` (raw cosine in [-1, 1], the
older scripts' scale) and `clipscore` = 2.5 * max(cos, 0) (Hessel et al. 2021, CLIPScore, ViT-B/32).
The same function applied to the real images with their captions gives the baseline.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ldm_lab import weights
from ldm_lab.metrics.result import COL_CLIP_COSINE, COL_CLIPSCORE

CLIPSCORE_WEIGHT = 2.5  # Hessel et al. 2021, eq. 1
DEFAULT_MODEL, DEFAULT_PRETRAINED = "ViT-B-32", "openai"
# (open_clip model name, pretrained tag) -> weights registry name
REGISTERED = {("ViT-B-32", "openai"): "open_clip-ViT-B-32-openai"}


@dataclass
class CLIPModel:
    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    backbone: str
    weights_id: str

    @property
    def protocol(self) -> str:
        return f"open_clip-{importlib.metadata.version('open_clip_torch')}:{self.backbone},{self.weights_id}"


def build_clip(
    model_name: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    weights_path: str | os.PathLike | None = None,
    *,
    device="cpu",
    download: bool = False,
) -> CLIPModel:
    """open_clip model + preprocessing + tokenizer from a resolved weights file (tag only sets preprocessing)."""
    import open_clip

    if weights_path is None and (model_name, pretrained) not in REGISTERED:
        raise ValueError(
            f"no registered weights for open_clip {model_name}/{pretrained}; pass `weights_path` "
            f"or use one of {sorted(REGISTERED)}"
        )
    if weights_path is None:
        registry_name = REGISTERED[(model_name, pretrained)]
        path = weights.resolve(registry_name, download=download)
    else:
        registry_name, path = "file", Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"open_clip weights file does not exist: {path}")
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained) if pretrained else {}
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name,
        pretrained=str(path),
        device=device,
        force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),  # OpenAI weights were trained with QuickGELU
        image_mean=tag_cfg.get("mean"),
        image_std=tag_cfg.get("std"),
        image_interpolation=tag_cfg.get("interpolation"),
        image_resize_mode=tag_cfg.get("resize_mode"),
    )
    model.eval().requires_grad_(False)
    return CLIPModel(
        model,
        preprocess,
        open_clip.get_tokenizer(model_name),
        f"{model_name}/{pretrained or 'file'}",
        f"{registry_name}@sha256:{weights.sha256_of(path)[:16]}",
    )


@torch.no_grad()
def clip_cosine_per_sample(
    clip: CLIPModel, images: Sequence[np.ndarray], captions: Sequence[str], *, batch_size: int = 32
) -> np.ndarray:
    """Cosine similarity of each uint8 HxWx3 image with its caption."""
    from PIL import Image

    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images vs {len(captions)} captions")
    device = next(clip.model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        pixels = torch.stack(
            [
                clip.preprocess(Image.fromarray(np.asarray(im, np.uint8)))
                for im in images[start : start + batch_size]
            ]
        ).to(device)
        tokens = clip.tokenizer(list(captions[start : start + batch_size])).to(device)
        img = torch.nn.functional.normalize(clip.model.encode_image(pixels).double(), dim=-1)
        txt = torch.nn.functional.normalize(clip.model.encode_text(tokens).double(), dim=-1)
        out.append((img * txt).sum(dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def clipscore_from_cosine(cosine: np.ndarray) -> np.ndarray:
    """CLIPScore = 2.5 * max(cos, 0) per sample (Hessel et al. 2021)."""
    return CLIPSCORE_WEIGHT * np.maximum(np.asarray(cosine, np.float64), 0.0)


def clip_scores(
    clip: CLIPModel, images: Sequence[np.ndarray], captions: Sequence[str]
) -> dict[str, np.ndarray]:
    """{clip_cosine, clipscore} per sample; call it on the real images too for the baseline."""
    cosine = clip_cosine_per_sample(clip, images, captions)
    return {COL_CLIP_COSINE: cosine, COL_CLIPSCORE: clipscore_from_cosine(cosine)}
