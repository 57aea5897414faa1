"""`prepare superres|text2img|inpainting` on tiny local sources: zip, folder, parquet, arrow, save_to_disk."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from ldm_lab.cli import main
from ldm_lab.data import (
    InpaintingDataset,
    SuperResolutionDataset,
    Text2ImgDataset,
    bicubic_downscale,
    modcrop,
)
from ldm_lab.data import fingerprint as fp
from ldm_lab.data.prepare_files import prepare_superres, prepare_text2img
from tests.conftest_data import box_mask, noise, png_bytes, save, tree_bytes


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fp, "_MEMORY", {})


def make_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def urban_members(prefix="Urban 100/X{s} Urban100/X{s}"):
    members = {}
    for s in (2, 4):
        for i in (1, 2):
            hr = noise(32, 24, seed=i)
            members[f"{prefix.format(s=s)}/HIGH/img_00{i}_SRF_{s}_HR.png"] = png_bytes(hr)
            members[f"{prefix.format(s=s)}/LOW/img_00{i}_SRF_{s}_LR.png"] = png_bytes(
                hr.resize((32 // s, 24 // s))
            )
    members["__MACOSX/Urban 100/._img_001_SRF_2_HR.png"] = b"junk"
    members["Urban 100/readme.txt"] = b"Urban100"
    return members


# -- superres --------------------------------------------------------------------------------------------
def test_superres_from_urban100_zip_is_byte_exact_and_idempotent(tmp_path):
    members = urban_members()
    source = make_zip(tmp_path / "urban100.zip", members)
    result = prepare_superres(source, tmp_path / "out")
    assert result.written == 8 and result.ignored == ["Urban 100/readme.txt"]
    out = tmp_path / "out"
    assert (out / "X4/LOW/img_002_SRF_4_LR.png").read_bytes() == members[
        "Urban 100/X4 Urban100/X4/LOW/img_002_SRF_4_LR.png"
    ]
    assert len(SuperResolutionDataset(out, scale=2)) == 2
    again = prepare_superres(source, out)
    assert (again.written, again.unchanged) == (0, 8)
    members["Urban 100/X2 Urban100/X2/HIGH/img_001_SRF_2_HR.png"] = png_bytes(noise(32, 24, seed=7))
    changed = make_zip(tmp_path / "changed.zip", members)
    with pytest.raises(FileExistsError, match="img_001_SRF_2_HR.png exists with different content"):
        prepare_superres(changed, out)
    assert prepare_superres(changed, out, overwrite=True).written == 1


def test_superres_scale_selection_and_missing_scale(tmp_path):
    source = make_zip(tmp_path / "u.zip", urban_members())
    result = prepare_superres(source, tmp_path / "only4", scales=[4])
    assert result.written == 4 and not (tmp_path / "only4" / "X2").exists()
    members = {k: v for k, v in urban_members().items() if "X4" not in k}
    with pytest.raises(ValueError, match=r"no \*_SRF_\{s\}_HR/LR files for scale\(s\) \[4\]; pick"):
        prepare_superres(make_zip(tmp_path / "x2.zip", members), tmp_path / "o")
    with pytest.raises(ValueError, match=r"`scales` must be a non-empty subset of \(2, 4\)"):
        prepare_superres(source, tmp_path / "o", scales=[3])


def test_superres_from_hr_folder_derives_modcropped_pairs(tmp_path):
    save(tmp_path / "hr" / "photo.jpg", noise(35, 22))
    save(tmp_path / "hr" / "sub" / "second.png", noise(16, 16, seed=2))
    out = tmp_path / "out"
    assert main(["prepare", "superres", "--source", str(tmp_path / "hr"), "--out", str(out)]) == 0
    ds = SuperResolutionDataset(out, scale=4, as_tensor=False)
    assert ds.mode == "paired" and ds.ids == ["photo", "second"]
    from ldm_lab.data import load_image

    hr = modcrop(load_image(tmp_path / "hr" / "photo.jpg"), 4)
    assert np.array_equal(np.asarray(ds[0].hr), np.asarray(hr))
    assert np.array_equal(np.asarray(ds[0].lr), np.asarray(bicubic_downscale(hr, 4)))
    assert SuperResolutionDataset(out, scale=2)[0].hr.shape == (3, 22, 34)
    assert prepare_superres(tmp_path / "hr", out).written == 0


def test_superres_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="no images found in"):
        prepare_superres(make_zip(tmp_path / "e.zip", {"a.txt": b"x"}), tmp_path / "o")
    (tmp_path / "f.bin").write_bytes(b"plain")
    with pytest.raises(ValueError, match="neither a folder nor a zip archive"):
        prepare_superres(tmp_path / "f.bin", tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="source not found"):
        prepare_superres(tmp_path / "missing.zip", tmp_path / "o")
    clash = {"a/x.png": png_bytes(noise(8, 8, 1)), "b/x.png": png_bytes(noise(8, 8, 2))}
    with pytest.raises(ValueError, match="different files share a base name: a/x.png vs b/x.png"):
        prepare_superres(make_zip(tmp_path / "c.zip", clash), tmp_path / "o")


# -- text2img --------------------------------------------------------------------------------------------
CAPTIONS = 'image,caption\n1.jpg,"A dog, running"\n1.jpg,"The ""best"" dog"\n2.jpg,plain\n'


def test_text2img_from_kaggle_style_zip(tmp_path):
    members = {
        "flickr30k/Images/1.jpg": png_bytes(noise(20, 10, 1)),
        "flickr30k/Images/2.jpg": png_bytes(noise(20, 10, 2)),
        "flickr30k/captions.txt": CAPTIONS.encode(),
        "__MACOSX/flickr30k/._captions.txt": b"junk",
    }
    source = make_zip(tmp_path / "flickr.zip", members)
    result = prepare_text2img(source, tmp_path / "out")
    assert result.written == 3 and "3 captions, 2 images with captions" in str(result)
    ds = Text2ImgDataset(tmp_path / "out", caption_policy="all")
    assert ds.texts == ["A dog, running", 'The "best" dog', "plain"]
    assert (tmp_path / "out" / "images" / "1.jpg").read_bytes() == members["flickr30k/Images/1.jpg"]
    assert prepare_text2img(source, tmp_path / "out").unchanged == 3


def test_text2img_results_csv_with_malformed_row_and_missing_caption_file(tmp_path):
    src = tmp_path / "src"
    save(src / "flickr30k_images" / "1.jpg", noise(8, 8), format="PNG")
    (src / "results.csv").write_text(
        "image_name| comment_number| comment\n1.jpg| 0| a dog .\n1.jpg| 1 oops\n"
    )
    with pytest.raises(
        ValueError, match="results.csv line 3: expected `image_name| comment_number| comment`"
    ):
        prepare_text2img(src, tmp_path / "out")
    assert (
        main(["prepare", "text2img", "--source", str(src), "--out", str(tmp_path / "out"), "--skip-invalid"])
        == 0
    )
    assert Text2ImgDataset(tmp_path / "out", skip_invalid=True).texts == ["a dog ."]
    (src / "results.csv").unlink()
    with pytest.raises(FileNotFoundError, match="no caption file in .*captions.txt or results.csv"):
        prepare_text2img(src, tmp_path / "out2")


# -- inpainting (datasets library) -----------------------------------------------------------------------
@pytest.fixture
def hf(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    datasets.disable_progress_bars()
    return datasets


def rows_dataset(datasets, n=3, names=("image", "mask", "masked_image", "text"), with_mask=True):
    image, mask, masked, text = names
    columns, features = {image: [], text: []}, {image: datasets.Image(), text: datasets.Value("string")}
    if with_mask:
        columns.update({mask: [], masked: []})
        features.update({mask: datasets.Image(), masked: datasets.Image()})
    for i in range(n):
        columns[image].append(noise(24, 16, seed=i))
        columns[text].append(f"prompt {i}, with a comma" if i != 1 else None)
        if with_mask:
            columns[mask].append(box_mask(24, 16))
            columns[masked].append(noise(24, 16, seed=100 + i))
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def test_inpainting_from_parquet_with_all_columns(tmp_path, hf):
    rows_dataset(hf).to_parquet(str(tmp_path / "rows.parquet"))
    logs = []
    stats = prepare_inpainting_(tmp_path / "rows.parquet", tmp_path / "out", log=logs.append)
    assert "image: Image" in logs[0] and "text: Value" in logs[0]  # the schema is printed
    assert stats["total_samples"] == 3 and stats["hole_ratio"]["min"] == pytest.approx(0.25)
    ds = InpaintingDataset(tmp_path / "out", as_tensor=False)
    assert (
        ds.ids == ["00000", "00001", "00002"]
        and ds[0].text == "prompt 0, with a comma"
        and ds[1].text is None
    )
    assert np.array_equal(np.asarray(ds[2].masked_image), np.asarray(noise(24, 16, seed=102)))
    import json

    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta[2] == {
        "id": "00002",
        "source_index": 2,
        "image_size": [24, 16],
        "hole_ratio": 0.25,
        "text": "prompt 2, with a comma",
        "mask_source": "dataset",
    }


def prepare_inpainting_(source, out, **kwargs):
    from ldm_lab.data.prepare_inpainting import prepare_inpainting

    kwargs.setdefault("log", lambda *_: None)
    return prepare_inpainting(str(source), out, **kwargs)


def test_inpainting_generated_masks_are_seeded_resumable_and_settings_checked(tmp_path, hf):
    rows_dataset(hf, n=4, with_mask=False).to_parquet(str(tmp_path / "nomask.parquet"))
    source = tmp_path / "nomask.parquet"
    stats = prepare_inpainting_(source, tmp_path / "a", seed=3, hole_range=(0.2, 0.3))
    assert (
        stats["mask_generator"]["seed"] == 3
        and 0.2 <= stats["hole_ratio"]["min"] <= stats["hole_ratio"]["max"] <= 0.3
    )
    prepare_inpainting_(source, tmp_path / "b", seed=3, hole_range=(0.2, 0.3))
    assert tree_bytes(tmp_path / "a") != {} and _no_settings(tree_bytes(tmp_path / "a")) == _no_settings(
        tree_bytes(tmp_path / "b")
    )
    before = tree_bytes(tmp_path / "a")
    (tmp_path / "a" / "images" / "00002.png").unlink()  # an interrupted run
    (tmp_path / "a" / "metadata.json").unlink()
    prepare_inpainting_(source, tmp_path / "a", seed=3, hole_range=(0.2, 0.3))
    assert tree_bytes(tmp_path / "a") == before
    with pytest.raises(
        FileExistsError, match=r"prepared with other settings: mask_generator .*'seed': 3.*'seed': 4"
    ):
        prepare_inpainting_(source, tmp_path / "a", seed=4, hole_range=(0.2, 0.3))
    prepare_inpainting_(source, tmp_path / "a", seed=4, hole_range=(0.2, 0.3), overwrite=True, max_samples=2)
    assert len(InpaintingDataset(tmp_path / "a")) == 2


def _no_settings(tree):
    return {k: v for k, v in tree.items() if k not in ("prepare.json", "stats.json")}


def test_inpainting_column_options_and_errors(tmp_path, hf):
    names = ("photo", "hole", "holed", "prompt")
    rows_dataset(hf, names=names).to_parquet(str(tmp_path / "custom.parquet"))
    source = tmp_path / "custom.parquet"
    with pytest.raises(ValueError, match=r"column 'image' \(--image-column\) not in .*columns: \['photo'"):
        prepare_inpainting_(source, tmp_path / "x")
    assert (
        main(
            [
                "prepare",
                "inpainting",
                "--source",
                str(source),
                "--out",
                str(tmp_path / "o"),
                "--image-column",
                "photo",
                "--mask-column",
                "hole",
                "--masked-image-column",
                "holed",
                "--text-column",
                "prompt",
            ]
        )
        == 0
    )
    assert InpaintingDataset(tmp_path / "o")[0].text == "prompt 0, with a comma"
    with pytest.raises(ValueError, match=r"column 'nope' \(--mask-column\)"):
        prepare_inpainting_(source, tmp_path / "y", image_column="photo", mask_column="nope")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "images").mkdir()
    with pytest.raises(FileExistsError, match="not made by `prepare inpainting`"):
        prepare_inpainting_(source, tmp_path / "foreign", image_column="photo")


def test_inpainting_bad_rows_are_named_or_skipped(tmp_path, hf):
    table = rows_dataset(hf, n=3).cast_column("image", hf.Image(decode=False))
    table = table.map(
        lambda row, i: {"image": {"bytes": b"broken", "path": None}} if i == 1 else row, with_indices=True
    )
    table.to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(ValueError, match=r"row 1: row 1 column 'image': not a readable image"):
        prepare_inpainting_(tmp_path / "bad.parquet", tmp_path / "out")
    stats = prepare_inpainting_(tmp_path / "bad.parquet", tmp_path / "out", skip_invalid=True)
    assert stats["total_samples"] == 2 and stats["skipped"][0].startswith("row 1: ")
    assert InpaintingDataset(tmp_path / "out").ids == ["00000", "00002"]


def test_inpainting_from_save_to_disk_and_arrow(tmp_path, hf):
    hf.DatasetDict({"train": rows_dataset(hf, n=2)}).save_to_disk(str(tmp_path / "saved"))
    assert prepare_inpainting_(tmp_path / "saved", tmp_path / "o1")["total_samples"] == 2
    with pytest.raises(ValueError, match=r"split 'test' not in .*available: \['train'\]"):
        prepare_inpainting_(tmp_path / "saved", tmp_path / "o2", split="test")
    arrow = next((tmp_path / "saved" / "train").glob("*.arrow"))
    assert prepare_inpainting_(arrow, tmp_path / "o3")["total_samples"] == 2
    with pytest.raises(ValueError, match="expected a save_to_disk folder, a .parquet file"):
        prepare_inpainting_(save(tmp_path / "x.png", noise(4, 4)), tmp_path / "o4")


def test_inpainting_hf_source_offline_gives_a_clear_error(tmp_path, hf):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    code = (
        "from ldm_lab.cli import main; raise SystemExit(main(['prepare', 'inpainting', '--source', "
        f"'hf:Brvcket/sdxl-inpainting-lights', '--out', {str(tmp_path / 'o')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "ldm-lab: error: could not load hf:Brvcket/sdxl-inpainting-lights from the Hugging Face Hub"
    )
    assert "Offline?" in last and "Traceback" not in done.stderr
