"""SuperResolutionDataset: Urban100 pairing by prefix, size checks, crop option, generic HR folders."""

from __future__ import annotations

import numpy as np
import pytest

from ldm_lab.data import SuperResolutionDataset, bicubic_downscale
from ldm_lab.data import fingerprint as fp
from tests.conftest_data import make_urban, noise, save


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fp, "_MEMORY", {})


def test_paired_reader_returns_hr_lr_tensors(tmp_path):
    root = make_urban(tmp_path / "sr", 4, prefixes=("img_001", "img_002"), hr=(32, 24))
    make_urban(root, 2, prefixes=("img_001",), hr=(32, 24))
    ds = SuperResolutionDataset(root, scale=4)
    assert ds.mode == "paired" and ds.ids == ["img_001", "img_002"]
    sample = ds[0]
    assert sample.hr.shape == (3, 24, 32) and sample.lr.shape == (3, 6, 8) and sample.scale == 4
    assert len(SuperResolutionDataset(root, scale=2)) == 1


def test_pairs_by_prefix_and_lists_every_missing_partner(tmp_path):
    root = make_urban(tmp_path / "sr", 4, prefixes=("img_001", "img_002", "img_003"))
    (root / "X4" / "LOW" / "img_002_SRF_4_LR.png").unlink()
    save(root / "X4" / "LOW" / "img_009_SRF_4_LR.png", noise(8, 6))
    with pytest.raises(ValueError) as err:
        SuperResolutionDataset(root, scale=4)
    message = str(err.value)
    assert "X4/HIGH/img_002_SRF_4_HR.png: no LR partner X4/LOW/img_002_SRF_4_LR.*" in message
    assert "X4/LOW/img_009_SRF_4_LR.png: no HR partner X4/HIGH/img_009_SRF_4_HR.*" in message
    ds = SuperResolutionDataset(root, scale=4, skip_invalid=True, as_tensor=False)
    assert ds.ids == ["img_001", "img_003"]
    assert np.array_equal(np.asarray(ds[1].hr), np.asarray(noise(32, 24, seed=2)))  # not mispaired


def test_size_mismatch_lists_offenders_and_crop_to_multiple_fixes_modcrop_cases(tmp_path):
    root = make_urban(tmp_path / "sr", 4, prefixes=("img_001",), hr=(34, 26), lr_size=(8, 6))
    make_urban(root, 4, prefixes=("img_002",), hr=(32, 24), lr_size=(7, 6))
    with pytest.raises(ValueError) as err:
        SuperResolutionDataset(root, scale=4)
    message = str(err.value)
    assert (
        "X4/HIGH/img_001_SRF_4_HR.png: is 34x26 but X4/LOW/img_001_SRF_4_LR.png is 8x6, x4 = 32x24" in message
    )
    assert "img_002_SRF_4_HR.png: is 32x24" in message and "--crop-to-multiple" in message
    ds = SuperResolutionDataset(root, scale=4, crop_to_multiple=True, skip_invalid=True)
    assert ds.ids == ["img_001"] and ds[0].hr.shape == (3, 24, 32)
    assert [name for name, _ in ds.skipped] == ["X4/HIGH/img_002_SRF_4_HR.png"]


def test_non_matching_files_are_ignored_and_listed(tmp_path):
    root = make_urban(tmp_path / "sr", 2, prefixes=("img_001",))
    save(root / "X2" / "HIGH" / "img_001_SRF_4_HR.png", noise(32, 24))
    (root / "X2" / "LOW" / "notes.txt").write_text("x")
    (root / "X2" / "LOW" / ".DS_Store").write_text("x")
    ds = SuperResolutionDataset(root, scale=2)
    assert len(ds) == 1
    assert sorted(ds.stray) == ["X2/HIGH/img_001_SRF_4_HR.png", "X2/LOW/notes.txt"]


def test_generic_hr_folder_makes_lr_by_bicubic_downscale_after_modcrop(tmp_path):
    save(tmp_path / "hr" / "b.png", noise(35, 22, seed=1))
    save(tmp_path / "hr" / "a.jpg", noise(16, 16, seed=2))
    ds = SuperResolutionDataset(tmp_path / "hr", scale=4, as_tensor=False)
    assert ds.mode == "generic" and ds.ids == ["a", "b"]
    sample = ds[1]
    assert sample.hr.size == (32, 20) and sample.lr.size == (8, 5)
    assert np.array_equal(np.asarray(sample.lr), np.asarray(bicubic_downscale(sample.hr, 4)))
    assert ds.selection_params()["lr_method"]
    assert ds.fingerprint() != SuperResolutionDataset(tmp_path / "hr", scale=2).fingerprint()


def test_bad_arguments_and_layouts(tmp_path):
    root = make_urban(tmp_path / "sr", 4)
    with pytest.raises(ValueError, match=r"`scale` must be one of \(2, 4\), got 3"):
        SuperResolutionDataset(root, scale=3)
    with pytest.raises(FileNotFoundError, match=r"scale 2 .*X2/HIGH and LOW \(found \['X4'\]"):
        SuperResolutionDataset(root, scale=2)
    (root / "X4" / "LOW").rename(root / "X4" / "low")
    with pytest.raises(FileNotFoundError, match="X4/LOW folder not found"):
        SuperResolutionDataset(root, scale=4)
    (tmp_path / "empty" / "X4" / "HIGH").mkdir(parents=True)
    (tmp_path / "empty" / "X4" / "LOW").mkdir()
    with pytest.raises(ValueError, match="no images found in .*empty/X4"):
        SuperResolutionDataset(tmp_path / "empty", scale=4)


def test_relative_root_fingerprint_is_cwd_independent(tmp_path, monkeypatch):
    from ldm_lab.data import SuperResolutionDataset, prepare_demo

    prepare_demo(tmp_path / "demo")
    absolute = SuperResolutionDataset(tmp_path / "demo" / "super-resolution_dataset", scale=4).fingerprint()
    monkeypatch.chdir(tmp_path)
    relative = SuperResolutionDataset("demo/super-resolution_dataset", scale=4).fingerprint()
    assert relative == absolute
