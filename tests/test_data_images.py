"""Image loading (design §9 modes, EXIF, bad files), resizing and fingerprints of `ldm_lab.data`."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ldm_lab.data import bicubic_downscale, dataset_fingerprint, load_image, load_mask, modcrop, to_tensor
from ldm_lab.data import fingerprint as fp
from ldm_lab.data.images import image_size, verify_image
from tests.conftest_data import noise, save, truncate


@pytest.fixture(autouse=True)
def _hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fp, "_MEMORY", {})


def pixel(path, xy=(0, 0)):
    return load_image(path).getpixel(xy)


# -- modes (design §9) ---------------------------------------------------------------------------------
def test_rgba_and_la_are_composited_over_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    path = save(tmp_path / "a.png", rgba)
    assert pixel(path) == (255, 255, 255)
    assert pixel(path, (1, 0)) == (10, 20, 30)
    assert pixel(path, (2, 0)) in {(127, 127, 127), (126, 126, 126)}
    la = save(tmp_path / "la.png", Image.new("LA", (2, 2), (0, 0)))
    assert pixel(la) == (255, 255, 255)


def test_palette_cmyk_grey_and_bilevel(tmp_path):
    pal = Image.new("P", (2, 2), 1)
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    assert pixel(save(tmp_path / "p.png", pal)) == (200, 100, 50)
    pal_t = save(tmp_path / "pt.png", pal, transparency=1)
    assert pixel(pal_t) == (255, 255, 255)
    assert pixel(save(tmp_path / "c.jpg", Image.new("CMYK", (8, 8), (0, 0, 0, 0)))) == (255, 255, 255)
    assert pixel(save(tmp_path / "l.png", Image.new("L", (2, 2), 77))) == (77, 77, 77)
    assert pixel(save(tmp_path / "1.png", Image.new("1", (2, 2), 1))) == (255, 255, 255)


def test_sixteen_bit_is_scaled_by_257_with_rounding(tmp_path):
    values = np.array([[0, 128, 129, 257 * 100, 65535]], dtype=np.uint16)
    path = save(tmp_path / "g16.png", Image.fromarray(values))
    assert Image.open(path).mode == "I;16"
    assert [load_image(path).getpixel((x, 0))[0] for x in range(5)] == [0, 0, 1, 100, 255]


def test_unsupported_mode_is_an_error_naming_the_file(tmp_path):
    path = save(tmp_path / "float.tif", Image.new("F", (4, 4), 0.5))
    with pytest.raises(ValueError, match=r"float\.tif: unsupported image mode 'F'"):
        load_image(path)


def test_exif_orientation_is_applied_to_pixels_and_header_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = save(tmp_path / "rot.jpg", noise(30, 20), exif=exif)
    assert Image.open(path).size == (30, 20)
    assert load_image(path).size == (20, 30)
    assert image_size(path) == (20, 30)


# -- bad files -------------------------------------------------------------------------------------------
def test_missing_undecodable_and_truncated_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match=r"junk\.png: not a readable image"):
        load_image(junk)
    cut = truncate(save(tmp_path / "cut.png", noise(64, 64)))
    assert verify_image(cut, full=False) is None  # the header still reads
    assert "cannot decode" in verify_image(cut, full=True)
    with pytest.raises(ValueError, match=r"cut\.png: cannot decode image"):
        load_image(cut)


def test_decompression_bomb_keeps_pil_protection_with_a_readable_message(tmp_path, monkeypatch):
    path = save(tmp_path / "big.png", noise(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(
        ValueError, match=r"big\.png: image is larger than PIL's decompression-bomb limit.*MAX_IMAGE_PIXELS"
    ):
        load_image(path)
    with pytest.raises(ValueError, match="decompression-bomb"):
        image_size(path)


# -- masks -----------------------------------------------------------------------------------------------
def test_mask_threshold_is_half_and_white_is_hole(tmp_path):
    grey = Image.fromarray(np.array([[0, 127, 128, 255]], dtype=np.uint8), "L")
    assert list(np.asarray(load_mask(save(tmp_path / "m.png", grey)))[0]) == [0, 0, 255, 255]
    sixteen = Image.fromarray(np.array([[128 * 257 - 200, 128 * 257]], dtype=np.uint16))
    assert list(np.asarray(load_mask(save(tmp_path / "m16.png", sixteen)))[0]) == [0, 255]
    rgba = Image.new("RGBA", (2, 1), (255, 255, 255, 0))  # alpha ignored, as the older scripts
    assert list(np.asarray(load_mask(save(tmp_path / "ma.png", rgba)))[0]) == [255, 255]


def test_to_tensor_shapes_and_range():
    image, mask = to_tensor(noise(5, 3)), to_tensor(Image.new("L", (5, 3), 255))
    assert image.shape == (3, 3, 5) and mask.shape == (1, 3, 5)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(mask.min()) == 1.0


# -- resizing --------------------------------------------------------------------------------------------
def _matlab_imresize_matrix(n_in: int, scale: int) -> np.ndarray:
    """MATLAB `imresize(..., 1/scale, 'bicubic')` weights along one axis (antialiased Keys cubic, mirror)."""
    s = 1.0 / scale

    def cubic(x):
        ax = np.abs(x)
        return (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1) + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * (
            (ax > 1) & (ax <= 2)
        )

    n_out = n_in // scale
    u = np.arange(1, n_out + 1) / s + 0.5 * (1 - 1 / s)
    left = np.floor(u - 2 / s)
    idx = left[:, None] + np.arange(int(np.ceil(4 / s)) + 2)[None, :]
    weights = s * cubic(s * (u[:, None] - idx))
    weights /= weights.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])
    matrix = np.zeros((n_out, n_in))
    for row in range(n_out):
        for col, w in zip(mirror[(idx[row].astype(int) - 1) % (2 * n_in)], weights[row], strict=True):
            matrix[row, col] += w
    return matrix


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_downscale_matches_matlab_imresize_in_the_interior(scale):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    base = 127 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    array = np.clip(base[..., None] + rng.normal(0, 10, (48, 64, 3)), 0, 255).astype(np.uint8)
    ours = np.asarray(bicubic_downscale(Image.fromarray(array), scale)).astype(float)
    rows, cols = _matlab_imresize_matrix(48, scale), _matlab_imresize_matrix(64, scale)
    ref = np.clip(np.rint(np.einsum("ij,jkc,lk->ilc", rows, array.astype(float), cols)), 0, 255)
    assert ours.shape == ref.shape == (48 // scale, 64 // scale, 3)
    border = 2
    assert np.abs(ours - ref)[border:-border, border:-border].max() <= 1


def test_modcrop_and_downscale_arguments():
    assert modcrop(noise(33, 22), 4).size == (32, 20)
    with pytest.raises(ValueError, match="not a multiple of scale 4"):
        bicubic_downscale(noise(33, 22), 4)
    with pytest.raises(ValueError, match="smaller than the scale factor"):
        modcrop(noise(3, 3), 4)


# -- fingerprints ----------------------------------------------------------------------------------------
def _folder(root):
    save(root / "a.png", noise(8, 8, 1))
    save(root / "sub" / "b.png", noise(8, 8, 2))
    return [root / "a.png", root / "sub" / "b.png"]


def test_fingerprint_depends_on_relative_paths_content_and_params(tmp_path):
    files = _folder(tmp_path / "one")
    first = dataset_fingerprint(tmp_path / "one", files)
    assert first == dataset_fingerprint(tmp_path / "one", ["sub/b.png", "a.png"])  # order, relative paths
    shutil.copytree(tmp_path / "one", tmp_path / "moved")
    assert dataset_fingerprint(tmp_path / "moved", ["a.png", "sub/b.png"]) == first
    assert dataset_fingerprint(tmp_path / "one", files, params={"scale": 4}) != first
    (tmp_path / "one" / "a.png").rename(tmp_path / "one" / "c.png")
    assert dataset_fingerprint(tmp_path / "one", ["c.png", "sub/b.png"]) != first
    data = bytearray((tmp_path / "moved" / "a.png").read_bytes())
    data[-20] ^= 0xFF  # same size, other content
    (tmp_path / "moved" / "a.png").write_bytes(bytes(data))
    assert dataset_fingerprint(tmp_path / "moved", ["a.png", "sub/b.png"]) != first
    with pytest.raises(ValueError, match="no files"):
        dataset_fingerprint(tmp_path, [])


def test_fingerprint_hashes_each_file_once_across_calls_and_processes(tmp_path, monkeypatch):
    files = _folder(tmp_path / "d")
    calls = []
    real = fp.sha256_of
    monkeypatch.setattr(fp, "sha256_of", lambda path: calls.append(path) or real(path))
    first = dataset_fingerprint(tmp_path / "d", files)
    assert len(calls) == 2
    assert dataset_fingerprint(tmp_path / "d", files) == first and len(calls) == 2  # memory cache
    monkeypatch.setattr(fp, "_MEMORY", {})  # a new process: the JSON cache answers
    assert dataset_fingerprint(tmp_path / "d", files) == first and len(calls) == 2
    assert (tmp_path / "cache" / fp.CACHE_FILE).is_file()
    stat = os.stat(files[0])
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: re-hash that file only
    assert dataset_fingerprint(tmp_path / "d", files) == first and len(calls) == 3
