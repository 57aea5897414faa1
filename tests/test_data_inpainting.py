"""InpaintingDataset: pairing by stem, masks, optional folders, every bad input, fingerprint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldm_lab.data import InpaintingDataset
from ldm_lab.data import fingerprint as fp
from tests.conftest_data import box_mask, make_inpainting, noise, save, truncate


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fp, "_MEMORY", {})


def test_reads_tensors_derives_masked_image_and_texts(tmp_path):
    root = make_inpainting(tmp_path / "ds")
    ds = InpaintingDataset(root)
    assert len(ds) == 3 and ds.ids == ["a", "b", "c"]
    sample = ds[1]
    assert sample.id == "b" and sample.text == "text of b"
    assert sample.image.shape == (3, 24, 32) and sample.mask.shape == (1, 24, 32)
    assert set(torch.unique(sample.mask).tolist()) == {0.0, 1.0}
    assert torch.equal(sample.masked_image, sample.image * (1 - sample.mask))  # hole is black
    assert sample.hole_ratio == pytest.approx(float(sample.mask.mean()))
    assert [s.id for s in ds] == ds.ids


def test_pairs_by_stem_not_by_sorted_position(tmp_path):
    root = tmp_path / "ds"
    for stem, box in (("x1", (0, 0, 0.5, 0.5)), ("x2", (0.5, 0.5, 1, 1))):
        save(root / "images" / f"{stem}.png", noise(16, 16))
        save(root / "masks" / f"{stem}.png", box_mask(16, 16, box))
    save(root / "masks" / "extra.png", box_mask(16, 16))  # sorts first among masks: a stray
    ds = InpaintingDataset(root, as_tensor=False)
    assert np.asarray(ds[0].mask)[0, 0] == 255 and np.asarray(ds[1].mask)[15, 15] == 255
    assert ds.stray == ["masks/extra.png"]


def test_masked_images_folder_is_used_when_present_and_texts_optional(tmp_path):
    root = make_inpainting(tmp_path / "ds", stems=("a",), texts=False)
    save(root / "masked_images" / "a.png", noise(32, 24, seed=9))
    sample = InpaintingDataset(root, as_tensor=False)[0]
    assert sample.text is None
    assert np.array_equal(np.asarray(sample.masked_image), np.asarray(noise(32, 24, seed=9)))


def test_resolution_resizes_image_bicubic_and_mask_nearest(tmp_path):
    sample = InpaintingDataset(make_inpainting(tmp_path / "ds"), resolution=16)[0]
    assert sample.image.shape == (3, 16, 16) and sample.mask.shape == (1, 16, 16)
    assert set(torch.unique(sample.mask).tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="`resolution`"):
        InpaintingDataset(tmp_path / "ds", resolution=3)


def test_missing_mask_and_size_mismatch_name_the_files(tmp_path):
    root = make_inpainting(tmp_path / "ds")
    (root / "masks" / "b.png").unlink()
    save(root / "masks" / "c.png", box_mask(16, 16))
    with pytest.raises(ValueError) as err:
        InpaintingDataset(root)
    message = str(err.value)
    assert "2 problem(s)" in message
    assert "images/b.png: no mask masks/b.*" in message
    assert "images/c.png: is 32x24 but masks/c.png is 16x16" in message
    assert "--skip-invalid" in message


def test_skip_invalid_records_every_bad_file(tmp_path):
    root = make_inpainting(tmp_path / "ds", stems=("a", "b", "c", "d"))
    (root / "images" / "b.png").write_bytes(b"not a png")
    truncate(root / "masks" / "c.png", 0.3)
    with pytest.raises(ValueError, match=r"images/b\.png: not a readable image"):
        InpaintingDataset(root)
    with pytest.raises(ValueError, match=r"2 problem\(s\).*images/b\.png: .*; masks/c\.png: "):
        InpaintingDataset(root, verify="full")
    ds = InpaintingDataset(root, verify="full", skip_invalid=True)
    assert ds.ids == ["a", "d"]
    assert [name for name, _ in ds.skipped] == ["images/b.png", "masks/c.png"]


def test_truncated_file_found_lazily_with_header_verification(tmp_path):
    root = make_inpainting(tmp_path / "ds", stems=("a",))
    truncate(root / "images" / "a.png", 0.5)
    ds = InpaintingDataset(root)  # headers are fine
    with pytest.raises(ValueError, match=r"images/a\.png: cannot decode image"):
        ds[0]


def test_empty_and_ambiguous_and_missing_folders(tmp_path):
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "masks").mkdir()
    with pytest.raises(ValueError, match="no images found in .*e/images"):
        InpaintingDataset(tmp_path / "e")
    (tmp_path / "e" / "masks").rmdir()
    with pytest.raises(FileNotFoundError, match="masks folder not found: .*e/masks"):
        InpaintingDataset(tmp_path / "e")
    root = make_inpainting(tmp_path / "amb", stems=("a",))
    save(root / "images" / "a.jpg", noise(32, 24))
    with pytest.raises(ValueError, match="ambiguous stem 'a'"):
        InpaintingDataset(root)
    with pytest.raises(ValueError, match=r"`verify` must be one of"):
        InpaintingDataset(root, verify="pixels")


def test_warns_on_empty_and_near_full_masks(tmp_path):
    root = make_inpainting(tmp_path / "ds", stems=("a", "b"))
    save(root / "masks" / "a.png", box_mask(32, 24, (0, 0, 0, 0)))
    save(root / "masks" / "b.png", box_mask(32, 24, (0, 0, 1, 1)))
    ds = InpaintingDataset(root)
    with pytest.warns(UserWarning, match="mask is empty"):
        ds[0]
    with pytest.warns(UserWarning, match="near-full hole"):
        ds[1]


def test_max_samples_keeps_first_valid_sorted_and_fingerprint_tracks_selection(tmp_path):
    root = make_inpainting(tmp_path / "ds", stems=("c", "a", "b"))
    ds = InpaintingDataset(root, max_samples=2)
    assert ds.ids == ["a", "b"]
    before = ds.fingerprint()
    assert before == InpaintingDataset(root, max_samples=2).fingerprint()
    assert before != InpaintingDataset(root).fingerprint()
    (root / "texts" / "a.txt").write_text("changed", encoding="utf-8")
    assert InpaintingDataset(root, max_samples=2).fingerprint() != before
    with pytest.raises(ValueError, match="`max_samples`"):
        InpaintingDataset(root, max_samples=-1)


def test_full_decode_is_remembered_by_content_not_by_name(tmp_path, monkeypatch):
    from ldm_lab.data import base, decoded

    calls: list[str] = []
    real = base.verify_image
    monkeypatch.setattr(base, "verify_image", lambda path, full: calls.append(path.name) or real(path, full=full))
    fresh = lambda: monkeypatch.setattr(decoded, "_STATE", {"loaded": False, "ok": set(), "dirty": False})
    fresh()
    root = make_inpainting(tmp_path / "ds")
    InpaintingDataset(root, verify="full")
    assert sorted(calls) == ["a.png", "a.png", "b.png", "b.png", "c.png", "c.png"]  # images and masks
    calls.clear()
    fresh()  # a new process: the set is read back from $LDM_LAB_CACHE
    InpaintingDataset(root, verify="full")
    assert calls == []
    save(root / "images" / "b.png", noise(32, 24, seed=9))  # new content under an old name: decoded again
    InpaintingDataset(root, verify="full")
    assert calls == ["b.png"]
    truncate(root / "images" / "b.png")  # failures are never remembered: found on every check
    for _ in range(2):
        with pytest.raises(ValueError, match=r"images/b\.png: "):
            InpaintingDataset(root, verify="full")
    assert calls == ["b.png", "b.png", "b.png"]
