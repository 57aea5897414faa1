"""Layout detection, `data check`, `prepare demo` and the mask generator, through the API and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from ldm_lab.cli import main
from ldm_lab.data import check_dataset, detect_layout, generate_mask
from ldm_lab.data import fingerprint as fp
from ldm_lab.data.demo import prepare_demo
from ldm_lab.data.images import hole_ratio
from tests.conftest_data import make_inpainting, make_text2img, make_urban, noise, save, tree_bytes


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fp, "_MEMORY", {})


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return prepare_demo(tmp_path_factory.mktemp("demo") / "demo")


def test_detect_layout_for_each_layout_and_errors(tmp_path):
    assert detect_layout(make_inpainting(tmp_path / "i")) == "inpainting"
    assert detect_layout(make_text2img(tmp_path / "t")) == "text2img"
    assert detect_layout(make_urban(tmp_path / "s", 4)) == "super-resolution"
    assert detect_layout(save(tmp_path / "h" / "x.png", noise(8, 8)).parent) == "hr-folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^no images found in .*empty$"):
        detect_layout(tmp_path / "empty")
    (tmp_path / "odd" / "stuff").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images found in .*odd: unrecognised layout .*found stuff"):
        detect_layout(tmp_path / "odd")
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        detect_layout(tmp_path / "missing")


def test_check_summaries_for_each_layout(tmp_path):
    report = check_dataset(make_inpainting(tmp_path / "i"))
    text = str(report)
    assert report.layout == "inpainting" and report.n_samples == 3
    assert "image sizes: 32x24 (all 3)" in text and "hole ratio: min" in text and text.endswith("OK")
    sr = make_urban(tmp_path / "s", 4)
    make_urban(sr, 2)
    save(sr / "X2" / "LOW" / "readme.txt", noise(1, 1), format="PNG")
    text = str(check_dataset(sr))
    assert "x2: 2 pairs (paired)" in text and "x4: LR sizes: 8x6 (all 2)" in text
    assert "stray files (ignored): 1: X2/LOW/readme.txt" in text
    assert "scale(s) [4] not available" in _error(
        lambda: check_dataset(make_urban(tmp_path / "s2", 2), scales=[4])
    )
    text = str(check_dataset(make_text2img(tmp_path / "t")))
    assert "caption file: captions.txt (6 caption rows)" in text and "words per caption: min 4" in text
    text = str(check_dataset(save(tmp_path / "h" / "x.png", noise(33, 17)).parent, scales=[4]))
    assert "x4: 1 pairs (generic), HR sizes: 33x17" in text


def _error(call) -> str:
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        call()
    return str(err.value)


def test_check_fails_naming_truncated_files_unless_skip_invalid(tmp_path):
    root = make_inpainting(tmp_path / "i")
    data = (root / "images" / "b.png").read_bytes()
    (root / "images" / "b.png").write_bytes(data[: len(data) // 2])
    assert "images/b.png: cannot decode image" in _error(lambda: check_dataset(root))
    report = check_dataset(root, skip_invalid=True)
    assert report.n_samples == 2 and "skipped as invalid: 1: images/b.png" in str(report)
    assert str(report).endswith("OK with 1 skipped file(s)")


def test_cli_data_check_prints_summary_and_one_line_errors(tmp_path, capsys):
    root = make_text2img(tmp_path / "t")
    assert main(["data", "check", str(root)]) == 0
    assert "layout: text2img" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["data", "check", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip() == f"ldm-lab: error: no images found in {tmp_path / 'empty'}" and "Traceback" not in err
    )


def test_prepare_demo_is_deterministic_valid_and_idempotent(tmp_path, demo):
    again = prepare_demo(tmp_path / "demo2")
    for name, path in demo.items():
        assert tree_bytes(path) == tree_bytes(again[name]), name
    reports = {name: check_dataset(path) for name, path in demo.items()}
    assert reports["inpainting_dataset"].n_samples == 8
    assert reports["super-resolution_dataset"].n_samples == 16  # X2 and X4
    assert reports["text2img_dataset"].n_samples == 8
    mtime = (again["inpainting_dataset"] / "images" / "00000.png").stat().st_mtime_ns
    prepare_demo(tmp_path / "demo2")  # same version: nothing rewritten
    assert (again["inpainting_dataset"] / "images" / "00000.png").stat().st_mtime_ns == mtime


def test_prepare_demo_cli_refuses_foreign_folders_unless_overwrite(tmp_path, capsys):
    (tmp_path / "d" / "text2img_dataset").mkdir(parents=True)
    assert main(["prepare", "demo", "--out", str(tmp_path / "d")]) == 2
    assert "already exist and are not this version's demo data" in capsys.readouterr().err
    assert main(["prepare", "demo", "--out", str(tmp_path / "d"), "--overwrite"]) == 0
    assert (tmp_path / "d" / "text2img_dataset" / "captions.txt").is_file()


def test_generate_mask_is_seeded_and_within_the_hole_range():
    first = generate_mask((64, 48), seed=3, index=5, hole_range=(0.2, 0.3))
    assert first.mode == "L" and first.size == (64, 48)
    assert np.array_equal(
        np.asarray(first), np.asarray(generate_mask((64, 48), seed=3, index=5, hole_range=(0.2, 0.3)))
    )
    assert not np.array_equal(
        np.asarray(first), np.asarray(generate_mask((64, 48), seed=3, index=6, hole_range=(0.2, 0.3)))
    )
    ratios = [hole_ratio(generate_mask((64, 64), seed=0, index=i, hole_range=(0.1, 0.4))) for i in range(20)]
    assert all(0.1 <= r <= 0.4 for r in ratios) and len(set(ratios)) > 10
    assert set(np.unique(np.asarray(first))) <= {0, 255}
    with pytest.raises(ValueError, match="0 < low < high < 1"):
        generate_mask((64, 64), hole_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="widen `hole_range`"):
        generate_mask((64, 64), hole_range=(0.3, 0.3001), max_tries=2)


def test_cli_check_crop_option_and_group_help(tmp_path, capsys):
    root = make_urban(tmp_path / "s", 4, prefixes=("img_001",), hr=(34, 26), lr_size=(8, 6))
    assert main(["data", "check", str(root)]) == 2
    assert "--crop-to-multiple" in capsys.readouterr().err
    assert main(["data", "check", str(root), "--crop-to-multiple"]) == 0
    assert "x4: 1 pairs (paired), HR sizes: 34x26" in capsys.readouterr().out
    assert main(["data"]) == 2 and "check" in capsys.readouterr().out
    assert main(["prepare"]) == 2 and "inpainting" in capsys.readouterr().out
