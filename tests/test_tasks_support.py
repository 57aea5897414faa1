"""Shared helpers of the task-runner tests (imported by tests/test_tasks_*.py; holds no tests itself).

Everything is offline and small: the demo checkpoints (tiny configs, seeded random weights), the demo
datasets, and random-weight stand-ins of the metric networks made once per session.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
_SESSION = Path(tempfile.mkdtemp(prefix="ldm-lab-tasks-tests-"))
atexit.register(shutil.rmtree, _SESSION, ignore_errors=True)


@contextlib.contextmanager
def offline():
    """No real metric weights (empty models folder and torch hub), private caches, one CPU thread.

    One thread keeps these tiny models fast when other processes share the two cores (OpenMP threads
    then wait on each other and a 16x16 convolution takes 20 ms instead of 0.1 ms).
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LDM_LAB_WEIGHTS", str(_SESSION / "no-weights"))
        mp.setenv("TORCH_HOME", str(_SESSION / "no-torch-hub"))
        mp.setenv("LDM_LAB_CACHE", str(_SESSION / "cache"))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def offline_env():
    with offline():
        yield


@functools.cache
def demo_models() -> dict[str, tuple[Path, Path]]:
    from ldm_lab.demo_models import ensure_random_models

    return ensure_random_models(_SESSION / "models")


@functools.cache
def demo_data() -> dict[str, Path]:
    from ldm_lab.data import prepare_demo

    return prepare_demo(_SESSION / "data")


@functools.cache
def hr_folder(size: int = 64, n: int = 3) -> Path:
    """A generic SR folder: n HR images of size x size cut from the demo inpainting photos."""
    folder = _SESSION / f"hr{size}x{n}"
    folder.mkdir()
    photos = sorted((demo_data()["inpainting_dataset"] / "images").glob("*.png"))[:n]
    for path in photos:
        Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(folder / path.name)
    return folder


@functools.cache
def standin_weights() -> dict[str, str]:
    """Random-init Inception (FID/KID) and AlexNet (LPIPS) files, loaded through the real code paths."""
    from ldm_lab.metrics.stand_ins import save_random_inception_weights, save_random_torchvision_weights

    folder = _SESSION / "standins"
    folder.mkdir(exist_ok=True)
    return {"inception-fid": str(save_random_inception_weights(folder / "inception.pth")),
            "alexnet": str(save_random_torchvision_weights("alexnet", folder / "alexnet.pth"))}


@functools.cache
def tiny_clip() -> tuple[str, str]:
    """(open_clip model name, weights file) of a tiny random CLIP registered with open_clip."""
    from ldm_lab.metrics.stand_ins import save_tiny_open_clip

    name, path = save_tiny_open_clip(_SESSION / "clip")
    return name, str(path)


def tree(folder: Path, pattern: str = "**/*.png") -> dict[str, str]:
    """sha256 of every file matching `pattern` under `folder`, by relative path."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob(pattern)) if p.is_file()}


def read_text(path: Path) -> str:
    return Path(path).read_text(encoding="utf-8")


class Interrupt(Exception):
    """Raised by the test hook to interrupt a run after k images."""


def interrupt_after(monkeypatch, k: int) -> list[int]:
    """Make runs raise `Interrupt` once k images are written; returns the list of written indices."""
    from ldm_lab.tasks import run_dir

    written: list[int] = []

    def hook(index: int) -> None:
        written.append(index)
        if len(written) >= k:
            raise Interrupt(f"interrupted after {k} images")

    monkeypatch.setattr(run_dir, "after_image_hook", hook)
    return written


def image_std(path: Path) -> float:
    return float(np.asarray(Image.open(path), dtype=np.float64).std())
