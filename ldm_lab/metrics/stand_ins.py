"""Random-weight stand-ins for offline tests and timing: same architectures, same loading paths.

The files written here go through exactly the loaders the real weights use (`feature_extractor_weights_path`
for torch-fidelity, the LPIPS backbone loader, open_clip's `pretrained=<file>`), so tests exercise the real
code without downloads. Numbers computed with them are meaningless as quality measures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import torch
import torchvision
from torch_fidelity import feature_extractor_inceptionv3 as tf_inception

# A tiny open_clip architecture (config schema of open_clip/model_configs/*.json).
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def save_random_inception_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """torch-fidelity Inception-v3 with He-normal convs (PyTorch's default init shrinks the pool features
    to ~1e-8, which makes float32 FID meaningless); loadable via `feature_extractor_weights_path`."""
    with (
        mock.patch.object(tf_inception, "load_state_dict_from_url", return_value={}),
        mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict"),
    ):
        model = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    torch.save(model.state_dict(), path)
    return Path(path)


def save_random_torchvision_weights(arch: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """torchvision `vgg16` or `alexnet` with its own random init (state dict as torchvision ships it)."""
    if arch not in ("vgg16", "alexnet"):
        raise ValueError(f"unknown arch {arch!r}; choose from ['alexnet', 'vgg16']")
    torch.manual_seed(seed)
    torch.save(getattr(torchvision.models, arch)(weights=None).state_dict(), path)
    return Path(path)


def save_tiny_open_clip(folder: str | os.PathLike, name: str = "ldm-lab-tiny-clip", seed: int = 0):
    """Register a tiny open_clip config as `name` and save random weights; returns (name, weights path)."""
    import open_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{name}.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    weights_path = folder / f"{name}.pt"
    torch.save(model.state_dict(), weights_path)
    return name, weights_path
