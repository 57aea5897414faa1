"""PSNR/SSIM protocols, Y conversion, inpainting region metrics, edge metrics, bootstrap CIs, ratings."""

import math

import numpy as np
import pytest
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity

from ldm_lab.metrics.bootstrap import bootstrap_ci, bootstrap_ci_two_sample, summarize_per_sample
from ldm_lab.metrics.edges import (
    canny_edges,
    edge_consistency,
    edge_consistency_outer_ring,
    edge_iou,
    outer_ring,
    straddling_band,
)
from ldm_lab.metrics.fid import fid_from_features
from ldm_lab.metrics.image_quality import (
    crop_border,
    hole_bbox,
    inpainting_region_metrics,
    protocol_name,
    psnr,
    psnr_hole,
    psnr_ssim,
    rgb_to_y,
    ssim,
    ssim_hole_bbox,
)
from ldm_lab.metrics.ratings import rate
from ldm_lab.metrics.result import MetricUnavailable


def _image(seed, h=48, w=40, smooth=True):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    if smooth:  # natural-ish image: blurred noise plus a gradient
        k = np.ones((5, 5)) / 25
        img = np.stack([convolve2d(img[..., c], k, mode="same", boundary="symm") for c in range(3)], axis=2)
        img += np.linspace(0, 60, w)[None, :, None]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _noisy(img, seed, sigma=12.0):
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(np.round(img + noise), 0, 255).astype(np.uint8)


def _wang_ssim_reference(a, b):
    """Literal Wang et al. (2004) SSIM, MATLAB ssim_index style: 11x11 Gaussian, sigma 1.5, 'valid' filtering."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    ax = np.arange(11) - 5
    g = np.exp(-(ax**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    f = lambda x: convolve2d(x, w, mode="valid")
    mu_a, mu_b = f(a), f(b)
    s_aa, s_bb, s_ab = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    return np.mean(
        ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    )


# ---- Y channel, PSNR, SSIM -----------------------------------------------------------------------


def test_y_uses_published_bt601_coefficients():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(
        rgb_to_y(rgb)[0],
        [16.0, 16 + 65.481 + 128.553 + 24.966, 16 + 65.481, 16 + 128.553, 16 + 24.966],
        rtol=0,
        atol=1e-12,
    )
    assert rgb_to_y(rgb)[0, 1] == pytest.approx(235.0)
    assert rgb_to_y(np.array([[[10, 20, 30]]], np.uint8), rounded=True)[0, 0] == np.round(
        16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255
    )


def test_psnr_known_values():
    a = np.zeros((8, 8, 3), np.uint8)
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255))  # MSE = 1
    b = a.copy()
    b[0, 0, 0] = 16  # MSE = 256 / 192
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (256 / 192)))
    assert psnr(a, a) == math.inf  # identical images: no cap at 100


def test_ssim_equals_skimage_gaussian_and_literal_wang_reference():
    a, b = _image(0), _image(1)
    b = _noisy(a, 2)
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    ref = structural_similarity(
        ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(ya, yb) == pytest.approx(ref, abs=1e-4)
    assert ssim(ya, yb) == pytest.approx(_wang_ssim_reference(ya, yb), abs=1e-4)
    assert ssim(ya, ya) == pytest.approx(1.0)


def test_sr_protocol_y_crop_and_rgb_variant():
    hr, sr = _image(3), _noisy(_image(3), 4)
    out = psnr_ssim(sr, hr, channel="y", border=4)
    crop = lambda x: crop_border(rgb_to_y(x), 4)
    assert out["psnr_y"] == pytest.approx(psnr(crop(sr), crop(hr)))
    assert out["ssim_y"] == pytest.approx(_wang_ssim_reference(crop(sr), crop(hr)), abs=1e-4)
    rgb = psnr_ssim(sr, hr, channel="rgb")
    assert set(rgb) == {"psnr_rgb", "ssim_rgb"} and rgb["psnr_rgb"] == pytest.approx(psnr(sr, hr))
    assert protocol_name(channel="y", border=4) == "y-bt601-float,crop4,range255,ssim-gauss11-s1.5"


def test_protocol_inputs_are_validated():
    a = _image(0)
    with pytest.raises(ValueError, match="uint8"):
        psnr_ssim(a.astype(np.float32), a)
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr_ssim(a, a[:-1])
    with pytest.raises(ValueError, match="unknown channel"):
        psnr_ssim(a, a, channel="yiq")
    with pytest.raises(ValueError, match="border"):
        psnr_ssim(a, a, border=40)


# ---- inpainting region metrics -------------------------------------------------------------------


def _hole_case():
    ref = _image(5, 64, 64)
    mask = np.zeros((64, 64), bool)
    mask[20:44, 16:40] = True
    result = ref.copy()
    result[mask] = _noisy(ref, 6, 30)[mask]
    return result, ref, mask


def test_masked_metrics_ignore_pixels_outside_the_hole():
    result, ref, mask = _hole_case()
    scrambled_ref, scrambled_res = ref.copy(), result.copy()
    scrambled_ref[~mask] = 0
    scrambled_res[~mask] = 255
    assert psnr_hole(result, ref, mask) == psnr_hole(scrambled_res, scrambled_ref, mask)
    assert psnr_hole(result, ref, mask) == pytest.approx(psnr(result[mask], ref[mask]))
    rows, cols = hole_bbox(mask)
    assert (rows, cols) == (slice(20, 44), slice(16, 40))
    assert ssim_hole_bbox(result, ref, mask) == pytest.approx(ssim(result[rows, cols], ref[rows, cols]))
    whole = psnr(result, ref)
    assert whole > psnr_hole(result, ref, mask)  # the pasted-back original inflates whole-image scores


def test_region_metrics_report_unavailable_with_reasons():
    result, ref, _ = _hole_case()
    empty = np.zeros((64, 64), bool)
    values, reasons = inpainting_region_metrics(result, ref, empty)
    assert values["psnr_hole"] is None and "no hole" in reasons["psnr_hole"]
    assert values["psnr_rgb"] == pytest.approx(psnr(result, ref))
    tiny = empty.copy()
    tiny[5:8, 5:9] = True
    values, reasons = inpainting_region_metrics(result, ref, tiny)
    assert values["ssim_hole_bbox"] is None and "SSIM window" in reasons["ssim_hole_bbox"]
    assert values["psnr_hole"] is not None


# ---- edges ---------------------------------------------------------------------------------------


def test_edge_consistency_is_one_for_identical_images_and_drops_for_a_seam():
    result, ref, mask = _hole_case()
    assert edge_consistency(ref, ref, mask) == 1.0
    seam = ref.copy()
    seam[mask] = np.clip(ref[mask].astype(int) + 80, 0, 255).astype(np.uint8)  # brightness jump at the border
    assert edge_consistency(seam, ref, mask) < 0.9
    assert edge_consistency(seam, ref, mask) < edge_consistency(result, ref, mask) <= 1.0
    # The older outer-ring variant sees the seam only through distance-1 pixels: it drops less.
    assert edge_consistency_outer_ring(seam, ref, mask) > edge_consistency(seam, ref, mask)


def test_edge_bands_follow_the_settled_conventions():
    mask = np.zeros((12, 12), bool)
    mask[4:8, 4:8] = True
    band = straddling_band(mask, 2)
    assert band[4:8, 4:8].all() and band[2, 2] and not band[1, 1]  # straddles: inside and outside the hole
    ring = outer_ring(mask)
    assert not (ring & mask).any() and ring[2, 2] and ring[2:10, 2:10].sum() == 64 - 16
    edge = np.zeros((12, 12), bool)
    edge[0:6, 0:6] = True  # hole touching the border: outside counts as not-hole, so the border is band
    assert straddling_band(edge, 2)[0, 0]
    with pytest.raises(MetricUnavailable, match="empty"):
        edge_consistency(_image(0, 12, 12), _image(0, 12, 12), np.zeros((12, 12), bool))


def test_edge_iou_uses_canny_on_y_scaled_to_unit_range():
    ref = np.zeros((48, 48, 3), np.uint8)
    ref[12:36, 12:36] = 200
    assert edge_iou(ref, ref) == 1.0
    shifted = np.roll(ref, 3, axis=1)
    assert 0.0 < edge_iou(shifted, ref) < 1.0
    assert canny_edges(ref).sum() > 0
    with pytest.raises(MetricUnavailable, match="Canny"):
        edge_iou(np.zeros_like(ref), np.zeros_like(ref))


# ---- bootstrap and ratings -----------------------------------------------------------------------


def test_bootstrap_ci_contains_the_mean_and_is_seeded():
    values = np.random.default_rng(0).normal(0.3, 0.1, 200)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high and high - low < 0.05
    assert bootstrap_ci(values, seed=0) == (low, high) and bootstrap_ci(values, seed=1) != (low, high)
    res = summarize_per_sample("lpips", [*values, None], protocol="p")
    assert res.n == 200 and res.extra["n_undefined"] == 1 and res.ci95 == (low, high)
    assert not summarize_per_sample("lpips", [None, None]).available
    inf = summarize_per_sample("psnr_y", [30.0, math.inf])
    assert inf.value == math.inf and inf.ci95 is None and inf.warnings


def test_two_sample_bootstrap_for_fid_is_seeded():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 4)), rng.normal(size=(60, 4)) + 0.5
    ci = bootstrap_ci_two_sample(fid_from_features, a, b, n_resamples=30)
    assert ci == bootstrap_ci_two_sample(fid_from_features, a, b, n_resamples=30) and ci[0] < ci[1]


def test_ratings_table():
    assert [rate("fid", v) for v in (10, 40, 80, 150, 500)] == [
        "excellent",
        "very good",
        "good",
        "fair",
        "poor",
    ]
    assert rate("lpips", 0.05) == "excellent" and rate("lpips", 0.1) == "good"  # strict <, as the scripts did
    assert rate("edge_consistency", 0.81) == "excellent" and rate("clip_cosine", 0.22) == "fair"
    assert rate("ssim_rgb", None) == "unavailable"
    with pytest.raises(ValueError, match="no rating table"):
        rate("psnr_y", 30)
