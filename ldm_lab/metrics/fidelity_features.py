"""Feature stage: torch-fidelity extractors (Inception-v3 FID weights, VGG16 for precision/recall).

Inputs are uint8 HxWx3 images (rounded once upstream), as torch-fidelity expects. Two resize modes:
- "tf1-bilinear": torch-fidelity's own resize inside the extractor (TF1 bilinear, no antialiasing) --
  what the LDM paper's numbers used;
- "clean": clean-fid style PIL bicubic antialiased resize to the extractor's input size (per channel
  in float), then rounded to uint8 because torch-fidelity extractors take uint8 (clean-fid keeps float).
Extraction is batched and streaming: memory holds one batch of images plus the feature matrix.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch_fidelity
from PIL import Image
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

from ldm_lab import weights

RESIZE_MODES = ("tf1-bilinear", "clean")
# kind -> (torch-fidelity class, registered name, feature layer, weights registry name)
EXTRACTORS = {
    "inception": (FeatureExtractorInceptionV3, "inception-v3-compat", "2048", "inception-fid"),
    "vgg16": (FeatureExtractorVGG16, "vgg16", "fc2_relu", "vgg16"),
}
BATCH_SIZE = 32


@dataclass
class FeatureExtractor:
    """A torch-fidelity extractor plus what identifies its features (for protocols and cache keys)."""

    kind: str
    module: torch.nn.Module
    layer: str
    weights_id: str

    @property
    def input_size(self) -> int:
        return self.module.INPUT_IMAGE_SIZE

    @property
    def id(self) -> str:
        return f"torch-fidelity-{torch_fidelity.__version__}:{self.module.get_name()}:{self.layer}"


def build_extractor(
    kind: str = "inception",
    weights_path: str | os.PathLike | None = None,
    *,
    device="cpu",
    download: bool = False,
) -> FeatureExtractor:
    """Build a torch-fidelity extractor from a resolved weights file (never downloads unless asked)."""
    if kind not in EXTRACTORS:
        raise ValueError(f"unknown extractor {kind!r}; choose from {sorted(EXTRACTORS)}")
    cls, name, layer, registry_name = EXTRACTORS[kind]
    path = weights.resolve(registry_name, weights_path, download=download)
    module = cls(name, [layer], feature_extractor_weights_path=str(path)).to(device)
    return FeatureExtractor(kind, module, layer, weights.weights_id(registry_name, path))


def resize_clean(image: np.ndarray, size: int) -> np.ndarray:
    """PIL bicubic (antialiased) resize of each channel in float, rounded to uint8 (clean-fid style)."""
    channels = [
        np.asarray(
            Image.fromarray(image[..., c].astype(np.float32), mode="F").resize((size, size), Image.BICUBIC)
        )
        for c in range(image.shape[2])
    ]
    return np.clip(np.round(np.stack(channels, axis=2)), 0, 255).astype(np.uint8)


def _batches(images: Iterable[np.ndarray], batch_size: int, resize_mode: str, size: int):
    """Consecutive images of equal shape grouped into uint8 Bx3xHxW tensors."""
    batch: list[np.ndarray] = []
    for image in images:
        if (
            not isinstance(image, np.ndarray)
            or image.dtype != np.uint8
            or image.ndim != 3
            or image.shape[2] != 3
        ):
            raise ValueError(
                f"images must be HxWx3 uint8 arrays, got {type(image).__name__} "
                f"{getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
            )
        if resize_mode == "clean":
            image = resize_clean(image, size)
        if batch and (len(batch) == batch_size or batch[0].shape != image.shape):
            yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
            batch = []
        batch.append(image)
    if batch:
        yield torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)


@torch.no_grad()
def extract_features(
    images: Iterable[np.ndarray],
    extractor: FeatureExtractor,
    *,
    resize_mode: str = "tf1-bilinear",
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """[N, D] float32 features of a stream of HxWx3 uint8 images."""
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize_mode {resize_mode!r}; choose from {list(RESIZE_MODES)}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
    device = next(extractor.module.parameters()).device
    chunks = []
    for batch in _batches(images, batch_size, resize_mode, extractor.input_size):
        (features,) = extractor.module(batch.contiguous().to(device))
        chunks.append(features.cpu().numpy().astype(np.float32, copy=False))
    if not chunks:
        raise ValueError("no images to extract features from")
    return np.concatenate(chunks)


def feature_protocol(extractor: FeatureExtractor, resize_mode: str) -> str:
    """Protocol string recorded with FID/KID/PR values."""
    return f"{extractor.id},{extractor.weights_id},uint8,resize={resize_mode}"
