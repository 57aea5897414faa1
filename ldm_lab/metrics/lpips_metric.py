"""LPIPS (Zhang et al. 2018) with the `lpips` package: AlexNet by default, VGG as an option.

Both parts of the network are loaded from resolved files, never downloaded implicitly: the ImageNet
backbone (torchvision's `alexnet-owt-7be5be79.pth` / `vgg16-397923af.pth`) and the linear heads
shipped with `lpips` (v0.1). Inputs are uint8 HxWx3 images mapped to [-1, 1]; values are per sample.
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from dataclasses import dataclass

import lpips
import numpy as np
import torch

from ldm_lab import weights
from ldm_lab.metrics.image_quality import check_uint8_pair, hole_bbox
from ldm_lab.metrics.result import MetricUnavailable

# net -> (backbone registry name, linear-heads registry name)
LPIPS_NETS = {"alex": ("alexnet", "lpips-alex-lin"), "vgg": ("vgg16", "lpips-vgg-lin")}
LPIPS_VERSION = "0.1"


@dataclass
class LPIPSModel:
    net: str
    module: lpips.LPIPS
    weights_id: str

    @property
    def protocol(self) -> str:
        return f"lpips-{importlib.metadata.version('lpips')}:{self.net}:v{LPIPS_VERSION},{self.weights_id},[-1,1]"


def build_lpips(
    net: str = "alex",
    backbone_path: str | os.PathLike | None = None,
    heads_path: str | os.PathLike | None = None,
    *,
    device="cpu",
    download: bool = False,
) -> LPIPSModel:
    """LPIPS network with its backbone and linear heads loaded strictly from resolved files."""
    if net not in LPIPS_NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose from {sorted(LPIPS_NETS)}")
    backbone_name, heads_name = LPIPS_NETS[net]
    backbone = weights.resolve(backbone_name, backbone_path, download=download)
    heads = weights.resolve(heads_name, heads_path, download=download)
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, version=LPIPS_VERSION, pretrained=False, pnet_rand=True, verbose=False)
    # torchvision `features.<i>.*` -> lpips `slice<k>.<i>.*` (lpips keeps torchvision's indices).
    tv_state = torch.load(backbone, map_location="cpu", weights_only=True)
    net_keys = model.net.state_dict().keys()
    by_index = {key.split(".", 1)[1]: key for key in net_keys}
    model.net.load_state_dict(
        {
            by_index[k[len("features.") :]]: v
            for k, v in tv_state.items()
            if k.startswith("features.") and k[len("features.") :] in by_index
        }
    )
    heads_state = torch.load(heads, map_location="cpu", weights_only=True)
    wanted = {
        k for k in model.state_dict() if k.startswith("lin") and not k.startswith("lins.")
    }  # lins.* alias lin*
    if set(heads_state) != wanted:
        raise ValueError(
            f"{heads} is not an LPIPS {net} v{LPIPS_VERSION} heads file: keys {sorted(heads_state)}, "
            f"expected {sorted(wanted)}"
        )
    model.load_state_dict(heads_state, strict=False)
    model.eval().requires_grad_(False).to(device)
    return LPIPSModel(
        net, model, f"{weights.weights_id(backbone_name, backbone)}+{weights.weights_id(heads_name, heads)}"
    )


def to_lpips_input(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 images -> Bx3xHxW float in [-1, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def lpips_per_sample(
    model: LPIPSModel, results: list[np.ndarray], references: list[np.ndarray], *, batch_size: int = 16
) -> np.ndarray:
    """LPIPS distance of each (result, reference) pair of equal-size uint8 images."""
    if len(results) != len(references):
        raise ValueError(f"{len(results)} results vs {len(references)} references")
    device = next(model.module.parameters()).device
    out = []
    for start in range(0, len(results), batch_size):
        a, b = results[start : start + batch_size], references[start : start + batch_size]
        for x, y in zip(a, b, strict=True):
            check_uint8_pair(x, y, names=("result", "reference"))
        if len({x.shape for x in a}) > 1:  # mixed sizes: one pair at a time
            out.extend(lpips_pair(model, x, y) for x, y in zip(a, b, strict=True))
            continue
        d = model.module(to_lpips_input(a).to(device), to_lpips_input(b).to(device))
        out.extend(d.flatten().cpu().double().tolist())
    return np.asarray(out, dtype=np.float64)


@torch.no_grad()
def lpips_pair(model: LPIPSModel, result: np.ndarray, reference: np.ndarray) -> float:
    """LPIPS of one pair; MetricUnavailable when the image is smaller than the network's receptive field."""
    check_uint8_pair(result, reference, names=("result", "reference"))
    device = next(model.module.parameters()).device
    try:
        d = model.module(to_lpips_input([result]).to(device), to_lpips_input([reference]).to(device))
    except RuntimeError as err:
        if "too small" not in str(err):
            raise
        raise MetricUnavailable(
            f"{result.shape[0]}x{result.shape[1]} is too small for LPIPS-{model.net}"
        ) from err
    return float(d.item())


def lpips_hole_bbox(model: LPIPSModel, result: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """LPIPS on the crop given by the hole's bounding box."""
    mask = np.asarray(mask)
    if mask.shape != result.shape[:2]:
        raise ValueError(f"`mask` must have shape {result.shape[:2]} (HxW), got {mask.shape}")
    rows, cols = hole_bbox(mask.astype(bool))
    return lpips_pair(model, result[rows, cols], reference[rows, cols])
