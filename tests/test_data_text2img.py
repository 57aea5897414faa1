"""Caption files (header variants, tricky quoting, Flickr30k results.csv) and Text2ImgDataset policies."""

from __future__ import annotations

import pytest

from ldm_lab.data import Text2ImgDataset
from ldm_lab.data import fingerprint as fp
from ldm_lab.data.captions import read_captions
from tests.conftest_data import make_text2img, noise, save


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fp, "_MEMORY", {})


TRICKY = (
    "\ufeffimage,caption\n"
    '1.jpg,"A dog, a cat, and a bird."\n'
    '1.jpg,"She said ""hello"" twice"\n'
    "\n"
    '2.jpg,"A caption that spans\ntwo lines"\n'
    "2.jpg,  plain caption with spaces  \n"
)


def test_comma_csv_with_bom_quotes_commas_and_line_breaks(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text(TRICKY, encoding="utf-8")
    rows, problems = read_captions(path)
    assert problems == []
    assert [(r.image, r.caption) for r in rows] == [
        ("1.jpg", "A dog, a cat, and a bird."),
        ("1.jpg", 'She said "hello" twice'),
        ("2.jpg", "A caption that spans\ntwo lines"),
        ("2.jpg", "plain caption with spaces"),
    ]
    assert [r.line for r in rows] == [2, 3, 5, 7]


def test_flickr30k_results_csv_pipe_format(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(
        "image_name| comment_number| comment\n"
        "1000092795.jpg| 0| Two young guys with shaggy hair , look at their hands .\n"
        '1000092795.jpg| 1| A man says "hi | there" .\n'
        "2199200615.jpg| 4 A dog runs across the grass .\n",
        encoding="utf-8",
    )
    rows, problems = read_captions(path)
    assert [r.caption for r in rows] == [
        "Two young guys with shaggy hair , look at their hands .",
        'A man says "hi | there" .',
    ]
    assert problems[0][0] == "results.csv line 4" and "comment_number" in problems[0][1]


def test_unquoted_comma_bad_header_and_empty_file(tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text("image_name,caption\n1.jpg,a dog, running\n1.jpg,\n", encoding="utf-8")
    rows, problems = read_captions(path)
    assert rows == []
    assert problems[0] == (
        "captions.txt line 2",
        "expected 2 fields (image, caption), got 3; quote captions that contain commas",
    )
    assert problems[1][0] == "captions.txt line 3"
    path.write_text("file,text\n1.jpg,x\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"captions\.txt: unrecognised header 'file,text'; expected image_name,caption"
    ):
        read_captions(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty caption file"):
        read_captions(path)


def test_policy_first_is_default_and_has_no_duplicate_images(tmp_path):
    ds = Text2ImgDataset(make_text2img(tmp_path / "t"))
    assert ds.ids == ["1", "2", "3"]
    assert ds.texts == ["caption 0 of 1.jpg", "caption 0 of 2.jpg", "caption 0 of 3.jpg"]
    sample = ds[2]
    assert sample.image.shape == (3, 30, 40) and sample.image_name == "3.jpg" and sample.text == ds.texts[2]


def test_policy_all_and_random_are_deterministic(tmp_path):
    root = make_text2img(tmp_path / "t")
    every = Text2ImgDataset(root, caption_policy="all")
    assert every.ids == ["1#0", "1#1", "2#0", "2#1", "3#0", "3#1"]
    picks = {Text2ImgDataset(root, caption_policy="random", seed=s).texts[0] for s in range(20)}
    assert picks == {"caption 0 of 1.jpg", "caption 1 of 1.jpg"}
    first = Text2ImgDataset(root, caption_policy="random", seed=5)
    assert first.texts == Text2ImgDataset(root, caption_policy="random", seed=5).texts
    with pytest.raises(ValueError, match="`caption_policy` must be one of"):
        Text2ImgDataset(root, caption_policy="longest")


def test_max_samples_is_a_seeded_subset_in_file_order(tmp_path):
    names = tuple(f"{i}.jpg" for i in range(10))
    root = make_text2img(tmp_path / "t", names=names)
    subset = Text2ImgDataset(root, max_samples=4, seed=1)
    assert len(subset) == 4 and subset.ids == sorted(subset.ids, key=int)
    assert subset.ids == Text2ImgDataset(root, max_samples=4, seed=1).ids
    others = {tuple(Text2ImgDataset(root, max_samples=4, seed=s).ids) for s in range(5)}
    assert len(others) > 1
    assert subset.fingerprint() != Text2ImgDataset(root, max_samples=4, seed=2).fingerprint()
    assert Text2ImgDataset(root).fingerprint() == Text2ImgDataset(root, seed=7).fingerprint()  # seed unused


def test_missing_image_is_an_error_or_skipped_and_recorded(tmp_path):
    root = make_text2img(tmp_path / "t")
    (root / "images" / "2.jpg").unlink()
    with pytest.raises(
        ValueError, match=r"images/2\.jpg: listed in captions\.txt line 4 but not found in images/"
    ):
        Text2ImgDataset(root)
    ds = Text2ImgDataset(root, skip_invalid=True, caption_policy="all")
    assert ds.ids == ["1#0", "1#1", "3#0", "3#1"]
    assert ds.skipped == [("images/2.jpg", "listed in captions.txt line 4 but not found in images/")]


def test_bad_rows_and_corrupt_images_are_all_named(tmp_path):
    root = make_text2img(tmp_path / "t", captions="image_name,caption\n1.jpg,ok\n2.jpg,a, b\n3.jpg,fine\n")
    (root / "images" / "3.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError) as err:
        Text2ImgDataset(root)
    assert "captions.txt line 3: expected 2 fields" in str(err.value)
    assert "images/3.jpg: not a readable image" in str(err.value)
    assert Text2ImgDataset(root, skip_invalid=True).ids == ["1"]


def test_layout_errors_and_stray_images(tmp_path):
    root = make_text2img(tmp_path / "t", names=("1.jpg",))
    save(root / "images" / "uncaptioned.png", noise(8, 8))
    assert Text2ImgDataset(root).stray == ["images/uncaptioned.png"]
    (root / "images").rename(root / "Images")
    with pytest.raises(
        FileNotFoundError, match="found .*Images; the layout needs lower-case images/.*prepare text2img"
    ):
        Text2ImgDataset(root)
    (root / "Images").rename(root / "images")
    (root / "captions.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no caption file .*captions.txt or results.csv"):
        Text2ImgDataset(root)
    (root / "captions.txt").write_text("image,caption\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no images found in"):
        Text2ImgDataset(root)


def test_results_csv_dataset_and_explicit_caption_file(tmp_path):
    root = tmp_path / "f"
    save(root / "images" / "1.jpg", noise(8, 8))
    (root / "results.csv").write_text("image_name| comment_number| comment\n1.jpg| 0| a b c\n1.jpg| 1| d\n")
    assert Text2ImgDataset(root).texts == ["a b c"]
    (tmp_path / "other.csv").write_text("image,caption\n1.jpg,other\n")
    assert Text2ImgDataset(root, caption_file=tmp_path / "other.csv").texts == ["other"]
